//! The node runtime: background sync with start and stop, maintenance when writers find it
//! due.

use std::time::{Duration, Instant};

use gatos::messages::PublishOptions;
use gatos::{Gatos, OpenOptions};
use gatos_api::{Node, NodeOptions};
use gatos_testutil::{TempRepo, TestResult, wait_for};
use serde_json::json;

fn open(repo: &TempRepo) -> TestResult<Gatos> {
    Ok(Gatos::open(
        repo.path(),
        OpenOptions {
            clock: None,
            seed: Some(7),
        },
    )?)
}

#[test]
fn a_node_syncs_every_interval_until_stopped() -> TestResult {
    let hub = TempRepo::bare()?;
    let repo = TempRepo::new()?;
    repo.git(&["remote", "add", "hub", &hub.path().to_string_lossy()])?;
    let g = open(&repo)?;
    let t = "node.sync".parse()?;
    let head = "refs/gatos/messages/node.sync/head";
    g.messages()
        .publish(&t, json!(1), &PublishOptions::default())?;
    let node = Node::start(
        &g,
        NodeOptions {
            sync_remote: Some("hub".into()),
            sync_interval: gatos_types::Dur::from_secs(1),
            ..NodeOptions::default()
        },
    );
    wait_for("the first sync", Duration::from_secs(20), || {
        hub.rev_parse(head).ok().flatten().is_some()
    })?;
    let second = g
        .messages()
        .publish(&t, json!(2), &PublishOptions::default())?;
    wait_for("a sync one interval later", Duration::from_secs(20), || {
        hub.rev_parse(head).ok().flatten() == Some(second.commit.to_string())
    })?;
    let started = Instant::now();
    node.stop();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "stop waits for one sync at most"
    );
    let third = g
        .messages()
        .publish(&t, json!(3), &PublishOptions::default())?;
    std::thread::sleep(Duration::from_millis(2500));
    assert_ne!(
        hub.rev_parse(head)?,
        Some(third.commit.to_string()),
        "no sync after stop"
    );
    Ok(())
}

#[test]
fn a_node_compacts_when_writers_find_it_due() -> TestResult {
    let repo = TempRepo::new()?;
    repo.git(&["config", "gatos.maintenance.looseObjects", "1"])?;
    let g = open(&repo)?;
    let node = Node::start(&g, NodeOptions::default());
    let t = "node.maintenance".parse()?;
    for i in 0..70 {
        g.messages()
            .publish(&t, json!(i), &PublishOptions::default())?;
    }
    let packs = repo.git_dir().join("objects").join("pack");
    wait_for("a pack from maintenance", Duration::from_secs(30), || {
        std::fs::read_dir(&packs).is_ok_and(|d| {
            d.filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().ends_with(".pack"))
        })
    })?;
    node.stop();
    repo.assert_fsck_strict()
}

#[test]
fn a_node_records_its_syncs_where_the_service_reports_readiness() -> TestResult {
    let hub = TempRepo::bare()?;
    let repo = TempRepo::new()?;
    let hub_path = hub.path().to_string_lossy().into_owned();
    repo.git(&["remote", "add", "hub", &hub_path])?;
    let g = open(&repo)?;
    let service = gatos_api::Service::new(g.clone(), gatos_api::Config::default());
    let alone = service.ready(false);
    assert!(alone.ready && alone.repository_readable && alone.sync.is_none());
    assert!(!alone.maintenance.enabled);
    assert!(alone.maintenance.debt.is_some());
    assert!(!service.ready(true).ready, "a draining face is not ready");
    let node = Node::start(
        &g,
        NodeOptions {
            sync_remote: Some("hub".into()),
            sync_interval: gatos_types::Dur::from_secs(1),
            status: service.node_status().clone(),
            ..NodeOptions::default()
        },
    );
    let svc = &service;
    let synced =
        move |ok: bool| move || svc.ready(false).sync.is_some_and(|s| s.last_ok == Some(ok));
    wait_for(
        "a sync that succeeded",
        Duration::from_secs(20),
        synced(true),
    )?;
    let r = service.ready(false);
    let s = r.sync.ok_or("a sync section")?;
    assert_eq!((s.remote.as_str(), s.interval_seconds), ("hub", 1));
    assert_eq!((s.consecutive_failures, s.rejected_total), (0, 0));
    assert!(r.maintenance.enabled);
    repo.git(&["remote", "set-url", "hub", "/nonexistent/hub.git"])?;
    wait_for("a sync that failed", Duration::from_secs(20), synced(false))?;
    let s = service.ready(false).sync.ok_or("a sync section")?;
    assert!(s.last_code.is_some() && s.last_error.is_some());
    assert!(s.consecutive_failures >= 1 && s.failures_total >= 1);
    assert!(
        service.ready(false).ready,
        "a failing sync leaves the node ready"
    );
    node.stop();
    assert!(!service.ready(false).maintenance.enabled);
    Ok(())
}
