//! Ref states (ADR 0044 §1): the id anyone can recompute with git, and reads pinned at a
//! state that do not move when the refs do.

use gatos::jobs::catalog::Query;
use gatos::jobs::manifest;
use gatos::messages::{Cursor, PublishOptions, ReadOptions};
use gatos::state::{Retention, StateId, Window};
use gatos_testutil::{TempRepo, TestResult};
use gatos_types::{Dur, ErrorCode, Topic, Ulid};
use serde_json::json;

use crate::support::open_at;

const T0: &str = "2026-11-23T10:00:00Z";

fn enqueue(g: &gatos::Gatos, queue: &str) -> TestResult<Ulid> {
    let spec = manifest::normalize(
        manifest::from_value(json!({"command": ["true"], "queue": queue}))?,
        g.now(),
    )?;
    Ok(g.jobs().enqueue(spec)?.id)
}

#[test]
fn a_state_id_is_the_blake3_of_git_for_each_ref() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _clock) = open_at(&repo, T0)?;
    enqueue(&g, "q")?;
    g.messages()
        .publish(&"t.a".parse()?, json!(1), &PublishOptions::default())?;
    let w = Window::new(Retention::default());
    let at = w.mint(&g)?;
    let lines = repo.git(&[
        "for-each-ref",
        "--format=%(objectname) %(refname)",
        "refs/gatos/",
    ])?;
    let want = StateId(*blake3::hash(lines.as_bytes()).as_bytes());
    assert!(lines.lines().count() >= 3, "{lines}");
    assert_eq!(at.id()?, want);
    assert!(at.meta()?.exact);
    // Nothing moved: the same state.
    assert_eq!(w.mint(&g)?.id()?, want);
    Ok(())
}

#[test]
fn pinned_reads_do_not_move_when_the_refs_do() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, clock) = open_at(&repo, T0)?;
    let topic: Topic = "t.pin".parse()?;
    let mut jobs = Vec::new();
    for _ in 0..5 {
        jobs.push(enqueue(&g, "q")?);
        clock.advance(Dur::from_secs(1));
    }
    for i in 0..20 {
        g.messages()
            .publish(&topic, json!({"i": i}), &PublishOptions::default())?;
    }
    let w = Window::new(Retention::default());
    let at = w.mint(&g)?;
    let as_of = g.now();
    let page = |q: &Query| g.jobs().page_in(&at, q, as_of);
    let before_jobs = page(&Query::default())?;
    let read = |since| {
        g.messages()
            .read_in(&at, &topic, &ReadOptions { since, limit: 100 }, u64::MAX)
    };
    let before_msgs = read(Cursor::Start)?;
    let before_rec = g.jobs().record_in(&at, jobs[0])?;
    assert_eq!(before_jobs.jobs.len(), 5);
    assert_eq!(before_msgs.messages.len(), 20);
    assert!(before_msgs.end);
    // Writes after the pin: new jobs, a cancel, new messages.
    for _ in 0..3 {
        enqueue(&g, "q")?;
    }
    g.jobs().cancel(jobs[0], Some("test".to_owned()))?;
    for i in 20..30 {
        g.messages()
            .publish(&topic, json!({"i": i}), &PublishOptions::default())?;
    }
    let after_jobs = page(&Query::default())?;
    assert_eq!(
        serde_json::to_string(&after_jobs.jobs)?,
        serde_json::to_string(&before_jobs.jobs)?
    );
    let after_msgs = read(Cursor::Start)?;
    assert_eq!(
        serde_json::to_string(&after_msgs)?,
        serde_json::to_string(&before_msgs)?
    );
    // Paging at the pin stops at the pinned head.
    let first = g.messages().read_in(
        &at,
        &topic,
        &ReadOptions {
            since: Cursor::Start,
            limit: 15,
        },
        u64::MAX,
    )?;
    assert!(!first.end);
    let rest = read(Cursor::Seq(15))?;
    assert_eq!(rest.messages.len(), 5);
    assert!(rest.end);
    assert_eq!(
        g.jobs()
            .record_in(&at, jobs[0])?
            .map(|r| r.cancel.is_some()),
        before_rec.map(|r| r.cancel.is_some())
    );
    // The live view moved.
    assert_eq!(g.jobs().page(&Query::default())?.jobs.len(), 8);
    let now = w.mint(&g)?;
    assert_ne!(now.id()?, at.id()?);
    assert_eq!(
        g.messages()
            .read_in(
                &now,
                &topic,
                &ReadOptions {
                    since: Cursor::Start,
                    limit: 100
                },
                u64::MAX
            )?
            .messages
            .len(),
        30
    );
    // A topic with no head at the state reads as empty there.
    let later: Topic = "t.later".parse()?;
    g.messages()
        .publish(&later, json!(1), &PublishOptions::default())?;
    let empty = g.messages().read_in(
        &at,
        &later,
        &ReadOptions {
            since: Cursor::Start,
            limit: 10,
        },
        u64::MAX,
    )?;
    assert!(empty.messages.is_empty() && empty.end);
    let unknown = StateId([9; 32]);
    assert_eq!(w.get(&unknown).unwrap_err().code(), ErrorCode::NotFound);
    Ok(())
}

/// Callers minting at once share mints, but never one that started before they arrived:
/// every caller sees every write acknowledged before its call.
#[test]
fn concurrent_mints_see_every_write_made_before_them() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _clock) = open_at(&repo, T0)?;
    let topic: Topic = "t.race".parse()?;
    let w = Window::new(Retention::default());
    for round in 0..5 {
        g.messages().publish(
            &topic,
            json!({ "round": round }),
            &PublishOptions::default(),
        )?;
        let ids: Vec<StateId> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| w.mint(&g).and_then(|at| at.id())))
                .collect();
            hs.into_iter()
                .map(|h| h.join().expect("joined"))
                .collect::<Result<Vec<_>, _>>()
        })?;
        let lines = repo.git(&[
            "for-each-ref",
            "--format=%(objectname) %(refname)",
            "refs/gatos/",
        ])?;
        let want = StateId(*blake3::hash(lines.as_bytes()).as_bytes());
        assert!(
            ids.iter().all(|i| *i == want),
            "round {round}: {ids:?} vs {want:?}"
        );
    }
    Ok(())
}
