//! Queue admission (ADR 0027) on a real repository with an injected clock: what counts as
//! pending, the refusal and its details, the retry-after hint, the audit window.

use std::sync::Arc;

use gatos::Gatos;
use gatos::clock::FixedClock;
use gatos::jobs::admission;
use gatos::jobs::lifecycle::{ClaimOptions, Finish};
use gatos::jobs::manifest;
use gatos::jobs::queues::{self, Change};
use gatos_testutil::{TempRepo, TestResult};
use gatos_types::jobs::{JobSpec, Outcome, QueueDepth};
use gatos_types::{Dur, ErrorCode, Queue, WorkerId};
use serde_json::json;

use crate::support::open_at;

const T0: &str = "2026-11-23T10:00:00Z";

fn start(repo: &TempRepo, max_pending: u64) -> TestResult<(Gatos, Arc<FixedClock>, Queue)> {
    let (g, clock) = open_at(repo, T0)?;
    g.keys().init(false)?;
    let q: Queue = "build".parse()?;
    queues::change(
        &g,
        &q,
        &Change {
            max_pending: Some(Some(max_pending)),
            ..Change::default()
        },
    )?;
    Ok((g, clock, q))
}

fn spec(g: &Gatos, v: serde_json::Value) -> TestResult<JobSpec> {
    Ok(manifest::normalize(manifest::from_value(v)?, g.now())?)
}

fn build(g: &Gatos) -> TestResult<JobSpec> {
    spec(g, json!({"command": ["make"], "queue": "build"}))
}

fn worker(g: &Gatos, q: &Queue) -> TestResult<ClaimOptions> {
    Ok(ClaimOptions {
        worker: "w".parse::<WorkerId>()?,
        worker_key: g.keys().current(),
        queues: vec![q.clone()],
        caps: Vec::new(),
        lease: Dur::from_secs(30),
        can_resolve: None,
        allow_untrusted_enqueuers: false,
    })
}

fn pending(g: &Gatos, q: &Queue) -> TestResult<u64> {
    let all = admission::depths(g)?;
    let d: &QueueDepth = all
        .iter()
        .find(|d| d.queue == *q)
        .ok_or("queue not listed")?;
    assert!(d.max_pending.is_some(), "the limit is shown with the depth");
    Ok(d.pending)
}

fn refusals(g: &Gatos) -> TestResult<usize> {
    let mut n = 0;
    gatos::audit::list(g, gatos::audit::Since::Start, |r| {
        if r.action == admission::REFUSED_ACTION {
            n += 1;
        }
        Ok(true)
    })?;
    Ok(n)
}

#[test]
fn pending_is_unclaimed_jobs_whether_claimable_yet_or_not() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, clock, q) = start(&repo, 3)?;
    let now = g.jobs().enqueue(build(&g)?)?;
    let later = g.jobs().enqueue(spec(
        &g,
        json!({"command": ["make"], "queue": "build", "run_after": "1h"}),
    )?)?;
    assert_eq!(pending(&g, &q)?, 2, "a job waiting for run_after counts");
    let w = worker(&g, &q)?;
    let lease = g.jobs().claim_next(&w)?.ok_or("claimable")?;
    assert_eq!(lease.id, now.id);
    assert_eq!(pending(&g, &q)?, 1, "a running job does not count");
    // Its lease runs out: the index still holds a claim, so it is not counted (heartbeats
    // do not reach the index, so a lease end there says nothing).
    clock.advance(Dur::from_secs(60));
    assert_eq!(pending(&g, &q)?, 1);
    let attempt = g.jobs().claim_next(&w)?.ok_or("a takeover")?;
    g.jobs().finish(
        &attempt,
        &Finish {
            outcome: Outcome::Failed,
            exit_code: Some(1),
            signal: None,
            stdout: Vec::new(),
            stderr: Vec::new(),
            outputs: Vec::new(),
            poe: None,
        },
    )?;
    assert_eq!(
        pending(&g, &q)?,
        2,
        "released for a retry, waiting for its backoff: counts again"
    );
    g.jobs().enqueue(build(&g)?)?;
    let err = g.jobs().enqueue(build(&g)?).expect_err("the queue is full");
    assert_eq!(err.code(), ErrorCode::QueueFull);
    assert_eq!(err.details()["pending"], 3);
    assert_eq!(err.details()["max_pending"], 3);
    assert_eq!(err.details()["queue"], "build");
    assert_eq!(
        g.jobs().list(&Default::default())?.len(),
        3,
        "no job written"
    );
    // Another queue is not limited.
    g.jobs().enqueue(spec(&g, json!({"command": ["make"]}))?)?;
    g.jobs().cancel(later.id, None)?;
    assert_eq!(pending(&g, &q)?, 2, "a cancelled job leaves");
    g.jobs().enqueue(build(&g)?)?;
    // No limit: nothing is refused.
    queues::change(
        &g,
        &q,
        &Change {
            max_pending: Some(None),
            ..Change::default()
        },
    )?;
    assert_eq!(queues::config(&g, &q)?.max_pending, None);
    g.jobs().enqueue(build(&g)?)?;
    repo.assert_fsck_strict()?;
    Ok(())
}

#[test]
fn the_hint_follows_the_queues_recent_claims_and_refusals_are_audited_once_a_minute() -> TestResult
{
    let repo = TempRepo::new()?;
    let (g, clock, q) = start(&repo, 1)?;
    // Leases outlast the test: every claim takes the newest job, never a takeover.
    let w = ClaimOptions {
        lease: Dur::from_secs(3600),
        ..worker(&g, &q)?
    };
    // A claim every 20 s.
    for _ in 0..3 {
        g.jobs().enqueue(build(&g)?)?;
        g.jobs().claim_next(&w)?.ok_or("claimable")?;
        clock.advance(Dur::from_secs(20));
    }
    g.jobs().enqueue(build(&g)?)?;
    let err = g.jobs().enqueue(build(&g)?).expect_err("full");
    assert_eq!(err.code(), ErrorCode::QueueFull);
    // Three claims in the 60 s since the first event: one slot every 20 s.
    assert_eq!(err.details()["retry_after_seconds"], 20);
    assert_eq!(refusals(&g)?, 1);
    clock.advance(Dur::from_secs(30));
    g.jobs().enqueue(build(&g)?).expect_err("still full");
    assert_eq!(refusals(&g)?, 1, "the same minute");
    clock.advance(Dur::from_secs(60));
    g.jobs().enqueue(build(&g)?).expect_err("still full");
    assert_eq!(refusals(&g)?, 2, "a new minute");
    repo.assert_fsck_strict()?;
    Ok(())
}

#[test]
fn unreadable_queue_settings_count_as_no_limit() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _clock, q) = start(&repo, 1)?;
    // Someone rewrites the settings by hand into a document that does not parse.
    let junk = repo.root().join("config.json");
    std::fs::write(&junk, r#"{"queue": "build", "max_pending": "many"}"#)?;
    let blob = repo.git(&["hash-object", "-w", &junk.to_string_lossy()])?;
    let index = repo.root().join("junk-index");
    let status = repo
        .git_cmd(&[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("100644,{},config.json", blob.trim()),
        ])
        .env("GIT_INDEX_FILE", &index)
        .status()?;
    assert!(status.success());
    let tree = repo
        .git_cmd(&["write-tree"])
        .env("GIT_INDEX_FILE", &index)
        .output()?;
    let tree = String::from_utf8(tree.stdout)?;
    let commit = repo.git(&["commit-tree", tree.trim(), "-m", "junk settings"])?;
    repo.git(&[
        "update-ref",
        "refs/gatos/config/queues/build",
        commit.trim(),
    ])?;
    assert_eq!(
        queues::config(&g, &q).map_err(|e| e.code()).err(),
        Some(ErrorCode::InvalidEnvelope)
    );
    // Enqueues go on as before limits existed, and the depth is still reported.
    g.jobs().enqueue(build(&g)?)?;
    g.jobs().enqueue(build(&g)?)?;
    let depths = admission::depths(&g)?;
    assert_eq!(
        depths,
        vec![QueueDepth {
            queue: q,
            pending: 2,
            running: 0,
            max_pending: None
        }]
    );
    Ok(())
}
