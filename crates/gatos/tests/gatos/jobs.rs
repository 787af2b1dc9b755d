//! The job plane on a real repository with an injected clock: claims, leases, takeover,
//! fencing, retries, routing, cancel, the ready index, archiving and the registry.

use std::sync::Arc;

use gatos::Gatos;
use gatos::clock::FixedClock;
use gatos::jobs::lifecycle::{ClaimError, ClaimOptions, Finish, SecretProbe};
use gatos::jobs::manifest::{self, Input};
use gatos::jobs::{Lease, ListOptions};
use gatos::proofs::{self, Attempt};
use gatos_testutil::{TempRepo, TestResult};
use gatos_types::jobs::{ClaimState, JobSpec, JobState, Outcome};
use gatos_types::{Dur, ErrorCode, Timestamp, Ulid, WorkerId};
use serde_json::json;

use crate::support::open_at;

const T0: &str = "2026-11-23T10:00:00Z";

fn start(repo: &TempRepo) -> TestResult<(Gatos, Arc<FixedClock>)> {
    let (g, clock) = open_at(repo, T0)?;
    g.keys().init(false)?;
    Ok((g, clock))
}

/// A second handle on the repository, as another process has: caches of its own, and job
/// ids from another seed than [`start`]'s.
fn other_handle(repo: &TempRepo) -> TestResult<Gatos> {
    Ok(Gatos::open(
        repo.path(),
        gatos::OpenOptions {
            clock: Some(Arc::new(FixedClock::at(Timestamp::parse_rfc3339(T0)?))),
            seed: Some(8),
        },
    )?)
}

fn spec(g: &Gatos, v: serde_json::Value) -> TestResult<JobSpec> {
    Ok(manifest::normalize(manifest::from_value(v)?, g.now())?)
}

fn worker(name: &str, g: &Gatos) -> TestResult<ClaimOptions> {
    Ok(ClaimOptions {
        worker: name.parse::<WorkerId>()?,
        worker_key: g.keys().current(),
        queues: Vec::new(),
        caps: Vec::new(),
        lease: Dur::from_secs(30),
        can_resolve: None,
        allow_untrusted_enqueuers: false,
    })
}

/// Enqueues `n` jobs of `priority` naming a secret no test worker can resolve.
fn secret_jobs(g: &Gatos, n: usize, priority: i64) -> TestResult {
    for i in 0..n {
        g.jobs().enqueue(spec(
            g,
            json!({"command": ["s", i.to_string()], "priority": priority,
                   "env": {"TOKEN": "secret://NOT_HERE"}}),
        )?)?;
    }
    Ok(())
}

/// Ends an attempt as a worker does: signs the proof of what "ran" and finishes.
fn finish(
    g: &Gatos,
    lease: &Lease,
    outcome: Outcome,
    code: Option<i32>,
) -> gatos::Result<gatos::jobs::lifecycle::Finished> {
    let key = g.keys().signing_key()?.unwrap();
    let stdout = format!("attempt {}\n", lease.attempt).into_bytes();
    let poe = proofs::attest(
        &key,
        lease,
        &Attempt {
            started_at: lease.claimed_at,
            finished_at: g.now(),
            outcome,
            exit_code: code,
            stdout: &stdout,
            stdout_truncated: false,
            stderr: b"",
            stderr_truncated: false,
            outputs: &[],
            runner: json!({"name": "test"}),
        },
    )?;
    g.jobs().finish(
        lease,
        &Finish {
            outcome,
            exit_code: code,
            signal: None,
            stdout,
            stderr: Vec::new(),
            outputs: Vec::new(),
            poe: Some(poe),
        },
    )
}

/// `(event, attempt, commit, msg_id)` of each event on `gatos.jobs`.
type EventRow = (String, u32, String, Option<String>);

fn events(g: &Gatos) -> TestResult<Vec<EventRow>> {
    let topic = gatos::jobs::EVENTS_TOPIC.parse()?;
    let page = g.messages().read(
        &topic,
        &gatos::messages::ReadOptions {
            since: gatos::messages::Cursor::Start,
            limit: 1000,
        },
    )?;
    Ok(page
        .messages
        .iter()
        .map(|m| {
            let p: serde_json::Value = serde_json::from_str(m.payload.get()).unwrap();
            let msg_id = m
                .headers
                .as_ref()
                .and_then(|h| serde_json::from_str::<serde_json::Value>(h.get()).ok())
                .and_then(|h| h["msg_id"].as_str().map(str::to_owned));
            (
                p["event"].as_str().unwrap().to_owned(),
                u32::try_from(p["attempt"].as_u64().unwrap()).unwrap(),
                p["commit"].as_str().unwrap().to_owned(),
                msg_id,
            )
        })
        .collect())
}

#[test]
fn a_claim_excludes_others_heartbeats_extend_it_and_a_takeover_fences_the_old_worker() -> TestResult
{
    let repo = TempRepo::new()?;
    let (g, clock) = start(&repo)?;
    let job = g
        .jobs()
        .enqueue(spec(&g, json!({"command": ["make"], "args": ["test"]}))?)?;
    assert_eq!(job.state, JobState::Pending);
    let a = worker("worker-a", &g)?;
    let b = worker("worker-b", &g)?;
    let mut la = g.jobs().claim_next(&a)?.expect("a claims it");
    assert_eq!((la.id, la.attempt), (job.id, 1));
    assert_eq!(g.jobs().claim_next(&b)?.map(|l| l.id), None);
    let refused = g.jobs().claim(job.id, &b).unwrap_err();
    assert_eq!(refused.code(), ErrorCode::AlreadyClaimed);
    assert!(
        matches!(
            refused.inner().downcast_ref::<ClaimError>(),
            Some(ClaimError::Running { job: j }) if *j == job.id
        ),
        "{refused:?}"
    );
    // Heartbeats keep it past the first lease end.
    for _ in 0..3 {
        clock.advance(Dur::from_secs(10));
        g.jobs().heartbeat(&mut la)?;
    }
    assert_eq!(g.jobs().show(job.id)?.state, JobState::Running);
    assert!(g.jobs().claim_next(&b)?.is_none());
    // A lease not extended expires; b takes over with attempt 2.
    clock.advance(Dur::from_secs(31));
    assert_eq!(g.jobs().show(job.id)?.state, JobState::Pending);
    let lb = g.jobs().claim_next(&b)?.expect("b takes over");
    assert_eq!((lb.id, lb.attempt), (job.id, 2));
    // a is fenced: no heartbeat, no result.
    assert_eq!(
        g.jobs().heartbeat(&mut la).unwrap_err().code(),
        ErrorCode::LeaseExpired
    );
    assert_eq!(
        finish(&g, &la, Outcome::Succeeded, Some(0))
            .unwrap_err()
            .code(),
        ErrorCode::LeaseExpired
    );
    assert!(
        repo.rev_parse(&format!("refs/gatos/jobs/{}/result", job.id))?
            .is_none()
    );
    let done = finish(&g, &lb, Outcome::Succeeded, Some(0))?;
    assert_eq!(done.state, JobState::Succeeded);
    let row = g.jobs().show(job.id)?;
    assert_eq!((row.state, row.attempt), (JobState::Succeeded, 2));
    let claim = row.claim.expect("the latest claim stays visible");
    assert_eq!(claim.state, ClaimState::Closed);
    assert_eq!(claim.worker.as_str(), "worker-b");
    assert_eq!(row.poe.map(|p| p.verified), Some(true));
    assert!(g.jobs().verify(job.id)?.verified);
    // The result's parents are the job commit and the closed claim.
    let parents = repo.git(&["rev-list", "--parents", "-n", "1", &done.commit.to_string()])?;
    assert!(parents.contains(&job.commit.to_string()));
    let closed = repo
        .rev_parse(&format!("refs/gatos/jobs/{}/claim", job.id))?
        .unwrap();
    assert!(parents.contains(&closed));
    // Every transition is on gatos.jobs, keyed by its commit.
    let evs = events(&g)?;
    let names: Vec<&str> = evs.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "enqueued",
            "claimed",
            "heartbeat_lost",
            "claimed",
            "succeeded"
        ]
    );
    for (name, _, commit, msg_id) in &evs {
        let want = if name == "heartbeat_lost" {
            format!("heartbeat_lost:{commit}")
        } else {
            commit.clone()
        };
        assert_eq!(msg_id.as_deref(), Some(want.as_str()));
        assert_eq!(repo.git(&["cat-file", "-t", commit])?.trim(), "commit");
    }
    let kinds = repo.git(&[
        "log",
        "--format=%(trailers:key=Gatos-Kind,valueonly)%(trailers:key=State,valueonly)",
        &format!("refs/gatos/jobs/{}/claim", job.id),
    ])?;
    let kinds: Vec<&str> = kinds.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(
        kinds,
        [
            "claim",
            "closed",
            "claim",
            "running",
            "claim",
            "heartbeat",
            "claim",
            "heartbeat",
            "claim",
            "heartbeat",
            "claim",
            "running"
        ]
    );
    repo.assert_fsck_strict()
}

/// A job row carries when its claim last moved (issue #19): the claim, then each heartbeat
/// (the claim commit's time, read with the claim itself); the claim chain's links carry
/// theirs.
#[test]
fn the_row_carries_the_last_heartbeat_and_the_chain_each_commits_time() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, clock) = start(&repo)?;
    let job = g.jobs().enqueue(spec(&g, json!({"command": ["true"]}))?)?;
    assert_eq!(g.jobs().show(job.id)?.claim, None);
    let mut la = g
        .jobs()
        .claim_next(&worker("worker-a", &g)?)?
        .expect("claimed");
    let t0 = Timestamp::parse_rfc3339(T0)?;
    let row = g.jobs().show(job.id)?;
    assert_eq!(row.claim.and_then(|c| c.last_heartbeat_at), Some(t0));
    clock.advance(Dur::from_secs(10));
    g.jobs().heartbeat(&mut la)?;
    clock.advance(Dur::from_millis(7_400));
    g.jobs().heartbeat(&mut la)?;
    // Whole seconds: a commit's time.
    let row = g.jobs().show(job.id)?;
    let claim = row.claim.expect("a claim");
    assert_eq!(claim.state, ClaimState::Heartbeat);
    assert_eq!(claim.last_heartbeat_at, Some(t0.plus(Dur::from_secs(17))));
    // The same in a page of jobs.list.
    let page = g.jobs().page(&gatos::jobs::catalog::Query {
        state: Some(JobState::Running),
        ..Default::default()
    })?;
    assert_eq!(
        page.jobs
            .iter()
            .map(|j| j.claim.as_ref().and_then(|c| c.last_heartbeat_at))
            .collect::<Vec<_>>(),
        [Some(t0.plus(Dur::from_secs(17)))]
    );
    let tip = repo
        .rev_parse(&format!("refs/gatos/jobs/{}/claim", job.id))?
        .expect("a claim ref")
        .parse()?;
    let chain = gatos::jobs::lifecycle::claim_chain(&g, tip, None)?;
    let times: Vec<Timestamp> = chain.iter().map(|l| l.at).collect();
    assert_eq!(
        times,
        [t0.plus(Dur::from_secs(17)), t0.plus(Dur::from_secs(10)), t0]
    );
    Ok(())
}

#[test]
fn failures_retry_with_backoff_until_max_attempts_then_fail() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, clock) = start(&repo)?;
    let job = g
        .jobs()
        .enqueue(spec(&g, json!({"command": ["false"], "max_attempts": 3}))?)?;
    let w = worker("w", &g)?;
    for attempt in 1..=3u32 {
        let l = g.jobs().claim_next(&w)?.expect("claimable");
        assert_eq!(l.attempt, attempt);
        let f = finish(&g, &l, Outcome::Failed, Some(1))?;
        if attempt < 3 {
            assert_eq!(f.state, JobState::Pending);
            // Not before the backoff: 1 s · 2^(attempt−1) ± 20 %.
            assert!(g.jobs().claim_next(&w)?.is_none());
            let base = 1000u64 << (attempt - 1);
            clock.advance(Dur::from_millis(base * 8 / 10 - 1));
            assert!(g.jobs().claim_next(&w)?.is_none());
            let claim = g.jobs().show(job.id)?.claim.unwrap();
            assert_eq!(claim.state, ClaimState::Released);
            clock.advance(Dur::from_millis(base * 4 / 10 + 2));
        } else {
            assert_eq!(f.state, JobState::Failed);
        }
    }
    let row = g.jobs().show(job.id)?;
    assert_eq!((row.state, row.attempt), (JobState::Failed, 3));
    assert_eq!(row.result.unwrap().exit_code, Some(1));
    // A released attempt keeps its logs and proof in the claim chain.
    let released = repo.git(&[
        "log",
        "--format=%H",
        "--grep=^release",
        &format!("refs/gatos/jobs/{}/claim", job.id),
    ])?;
    let first = released.lines().last().unwrap();
    assert_eq!(
        repo.git(&["cat-file", "blob", &format!("{first}:logs/stdout")])?,
        "attempt 1\n"
    );
    assert!(
        repo.git(&["cat-file", "-e", &format!("{first}:poe.json")])
            .is_ok()
    );
    let names: Vec<String> = events(&g)?.into_iter().map(|e| e.0).collect();
    assert_eq!(
        names,
        [
            "enqueued",
            "claimed",
            "retry_scheduled",
            "claimed",
            "retry_scheduled",
            "claimed",
            "failed"
        ]
    );
    repo.assert_fsck_strict()
}

#[test]
fn a_queue_may_override_the_backoff() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, clock) = start(&repo)?;
    let q = "slow".parse()?;
    gatos::jobs::queues::set(&g, &q, Some(Some(60)), Some(Some(120)))?;
    g.jobs()
        .enqueue(spec(&g, json!({"command": ["x"], "queue": "slow"}))?)?;
    let mut w = worker("w", &g)?;
    w.queues = vec![q];
    let l = g.jobs().claim_next(&w)?.unwrap();
    finish(&g, &l, Outcome::Failed, Some(2))?;
    clock.advance(Dur::from_secs(47));
    assert!(g.jobs().claim_next(&w)?.is_none(), "60 s − 20 % at least");
    clock.advance(Dur::from_secs(26));
    assert!(g.jobs().claim_next(&w)?.is_some(), "60 s + 20 % at most");
    Ok(())
}

#[test]
fn the_last_attempt_losing_its_lease_ends_failed_with_reason_lost() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, clock) = start(&repo)?;
    let job = g
        .jobs()
        .enqueue(spec(&g, json!({"command": ["x"], "max_attempts": 1}))?)?;
    let w = worker("w", &g)?;
    let _lost = g.jobs().claim_next(&w)?.unwrap();
    clock.advance(Dur::from_secs(31));
    assert_eq!(g.jobs().show(job.id)?.state, JobState::Failed);
    // The first worker that sees it writes the closed claim and the result.
    assert!(g.jobs().claim_next(&worker("other", &g)?)?.is_none());
    let row = g.jobs().show(job.id)?;
    assert_eq!(row.state, JobState::Failed);
    assert_eq!(row.claim.unwrap().state, ClaimState::Closed);
    let result = repo.git(&[
        "cat-file",
        "blob",
        &format!("refs/gatos/jobs/{}/result:result.json", job.id),
    ])?;
    assert_eq!(
        result,
        r#"{"attempt":1,"exit_code":null,"reason":"lost","status":"failed"}"#
    );
    let v = g.jobs().verify(job.id)?;
    assert!(!v.verified);
    assert_eq!(
        v.code,
        Some(ErrorCode::NotFound),
        "nothing to prove, not a bad proof"
    );
    repo.assert_fsck_strict()
}

#[test]
fn routing_follows_queues_capabilities_priority_time_and_secrets() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, clock) = start(&repo)?;
    let low = g.jobs().enqueue(spec(&g, json!({"command": ["low"]}))?)?;
    let high = g
        .jobs()
        .enqueue(spec(&g, json!({"command": ["high"], "priority": 5}))?)?;
    let gpu = g.jobs().enqueue(spec(
        &g,
        json!({"command": ["gpu"], "capabilities": ["gpu"]}),
    )?)?;
    let later = g
        .jobs()
        .enqueue(spec(&g, json!({"command": ["later"], "run_after": "1h"}))?)?;
    let other_queue = g
        .jobs()
        .enqueue(spec(&g, json!({"command": ["q"], "queue": "other"}))?)?;
    let secret = g.jobs().enqueue(spec(
        &g,
        json!({"command": ["deploy"], "env": {"TOKEN": "secret://DEPLOY_TOKEN"}}),
    )?)?;
    let mut plain = worker("plain", &g)?;
    plain.lease = Dur::from_secs(7200);
    let order: Vec<_> =
        std::iter::from_fn(|| g.jobs().claim_next(&plain).unwrap().map(|l| l.id)).collect();
    assert_eq!(order, vec![high.id, low.id], "priority first, then oldest");
    let mut capable = worker("capable", &g)?;
    capable.lease = Dur::from_secs(7200);
    capable.caps = vec!["gpu".parse()?];
    let probe: SecretProbe = Arc::new(|name: &str| name == "DEPLOY_TOKEN");
    capable.can_resolve = Some(probe);
    let got: Vec<_> =
        std::iter::from_fn(|| g.jobs().claim_next(&capable).unwrap().map(|l| l.id)).collect();
    assert_eq!(got, vec![gpu.id, secret.id]);
    let refused = g.jobs().claim(other_queue.id, &capable).unwrap_err();
    assert_eq!(refused.code(), ErrorCode::Forbidden);
    assert!(matches!(
        refused.inner().downcast_ref::<ClaimError>(),
        Some(ClaimError::OtherQueue { .. })
    ));
    let refused = g.jobs().claim(later.id, &capable).unwrap_err();
    assert_eq!(refused.code(), ErrorCode::Conflict);
    assert!(matches!(
        refused.inner().downcast_ref::<ClaimError>(),
        Some(ClaimError::NotYet { .. })
    ));
    clock.advance(Dur::from_secs(3601));
    assert_eq!(g.jobs().claim_next(&plain)?.map(|l| l.id), Some(later.id));
    let mut other = worker("other", &g)?;
    other.queues = vec!["other".parse()?];
    assert_eq!(
        g.jobs().claim_next(&other)?.map(|l| l.id),
        Some(other_queue.id)
    );
    Ok(())
}

/// The maintenance debt counts the finished jobs enqueued before `gatos.jobs.archiveAfter`,
/// reading only their refs (issue #21: the metrics read it every 5 s, a readiness probe at
/// each call): not the unfinished ones, not the younger ones, loose or packed refs alike.
#[test]
fn the_debt_counts_the_finished_jobs_old_enough_to_archive() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, clock) = start(&repo)?;
    let w = worker("w", &g)?;
    let run = |n: usize| -> TestResult<Vec<gatos_types::Ulid>> {
        let mut ids = Vec::new();
        for i in 0..n {
            ids.push(
                g.jobs()
                    .enqueue(spec(&g, json!({"command": ["j", i.to_string()]}))?)?
                    .id,
            );
        }
        Ok(ids)
    };
    let old = run(4)?;
    let lease = g.jobs().claim_next(&w)?.ok_or("a job")?;
    finish(&g, &lease, Outcome::Succeeded, Some(0))?;
    g.jobs().cancel(old[1], None)?;
    // Seven days and a minute later: two old jobs ended, two did not; younger ones ended.
    clock.advance(Dur::from_secs(7 * 86_400 + 60));
    let young = run(2)?;
    g.jobs().cancel(young[0], None)?;
    g.jobs().cancel(young[1], None)?;
    assert_eq!(gatos::maintenance::debt(&g)?.archivable_jobs, 2);
    assert!(
        repo.git_cmd(&["pack-refs", "--all", "--prune"])
            .status()?
            .success()
    );
    assert_eq!(gatos::maintenance::debt(&g)?.archivable_jobs, 2);
    clock.advance(Dur::from_secs(7 * 86_400));
    assert_eq!(gatos::maintenance::debt(&g)?.archivable_jobs, 4);
    Ok(())
}

/// Two handles (two processes, to the index) keep one ready index between them: whichever
/// appended to it, removed it or rebuilt it last, the other's counts of pending and running
/// jobs (which only the index's journal tells: a claim makes no new job directory, so the
/// index's stamp of the job refs stays) and its claims follow (issue #21: each handle now
/// keeps the index's file open between uses). A handle reading a file no longer at the path
/// would also find nothing new there, take it for a torn journal and rebuild from the refs:
/// this checks the answers, not which of the two paths gave them.
#[test]
fn two_handles_claim_through_one_ready_index_across_appends_and_rebuilds() -> TestResult {
    let repo = TempRepo::new()?;
    let (g1, _) = start(&repo)?;
    // Another seed: the two handles' job ids come from different streams.
    let g2 = other_handle(&repo)?;
    let w1 = worker("w1", &g1)?;
    let w2 = worker("w2", &g2)?;
    let claim = |g: &Gatos, w: &ClaimOptions| -> TestResult<Option<Ulid>> {
        Ok(g.jobs().claim_next(w)?.map(|l| l.id))
    };
    let counts = |g: &Gatos| -> TestResult<(u64, u64)> {
        Ok(gatos::jobs::admission::depths(g)?
            .iter()
            .fold((0, 0), |(p, r), q| (p + q.pending, r + q.running)))
    };
    let enqueue = |g: &Gatos, name: &str| -> TestResult<Ulid> {
        Ok(g.jobs().enqueue(spec(g, json!({"command": [name]}))?)?.id)
    };
    let j1 = enqueue(&g1, "one")?;
    let j2 = enqueue(&g1, "two")?;
    assert_eq!(counts(&g1)?, (2, 0));
    // An append by the other handle.
    assert_eq!(claim(&g2, &w2)?, Some(j1));
    assert_eq!(counts(&g1)?, (1, 1));
    // The other handle removes the index; its next use rebuilds it (a new file at the path).
    g2.jobs().reset_ready_index()?;
    assert_eq!(claim(&g2, &w2)?, Some(j2));
    assert_eq!(counts(&g1)?, (0, 2));
    // The same the other way round.
    g1.jobs().reset_ready_index()?;
    let j3 = enqueue(&g1, "three")?;
    assert_eq!(counts(&g2)?, (1, 2));
    assert_eq!(claim(&g2, &w2)?, Some(j3));
    assert_eq!(counts(&g1)?, (0, 3));
    assert_eq!(claim(&g1, &w1)?, None);
    // A third handle, reading the file from its start, agrees.
    let (g3, _) = open_at(&repo, T0)?;
    assert_eq!(counts(&g3)?, (0, 3));
    Ok(())
}

/// A daemon's read-ahead of claims (issue #21, ADR 0046 session 20) reads the best jobs a
/// worker's claim could take, in claim order, never further than its depth from the top
/// (the jobs it read before count, and are not read again), puts what it read in its
/// handle's caches, and decides nothing a claim decides: after it read them, a job whose
/// enqueuer is no longer trusted is passed over by the claim, a cancelled one is not
/// claimed, and a running one is not read.
#[test]
fn a_read_ahead_reads_the_next_jobs_and_decides_nothing_a_claim_decides() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _clock) = start(&repo)?;
    // The daemon's handle: caches of its own, as another process has.
    let d = other_handle(&repo)?;
    let enqueue = |name: &str, priority: i64| -> TestResult<Ulid> {
        Ok(g.jobs()
            .enqueue(spec(&g, json!({"command": [name], "priority": priority}))?)?
            .id)
    };
    // The first job's enqueuer is the node's first key, trusted while it is read ahead.
    let stranger = enqueue("stranger", 9)?;
    let old = g.keys().current().ok_or("a key")?.to_string();
    g.keys().init(true)?;
    g.keys().trust(&old.parse()?)?;
    let taken = enqueue("taken", 8)?;
    let a = enqueue("a", 5)?;
    let b = enqueue("b", 4)?;
    let c = enqueue("c", 3)?;
    let w = worker("w", &d)?;
    let job_commit = |id: Ulid| -> TestResult<gatos_types::Oid> {
        Ok(repo
            .rev_parse(&format!("refs/gatos/jobs/{id}/job"))?
            .ok_or("no job ref")?
            .parse()?)
    };
    let checked = |id: Ulid| -> TestResult<bool> {
        Ok(gatos::jobs::enqueuer::is_checked(&d, id, job_commit(id)?))
    };
    assert!(!checked(stranger)? && !checked(a)?);
    let mut read = std::collections::HashSet::new();
    // Best first, never more than `k` jobs from the top, the ones read before counted
    // but not read again.
    for (k, want) in [
        (2, vec![stranger, taken]),
        (2, vec![]),
        (4, vec![a, b]),
        (9, vec![c]),
        (9, vec![]),
    ] {
        let got = d.jobs().read_ahead(&w, k, &read)?;
        assert_eq!(got, want, "k = {k}");
        read.extend(got);
    }
    // What was read is in the daemon's caches: its claims verify no envelope again.
    for id in [stranger, taken, a, b, c] {
        assert!(checked(id)?, "{id} read ahead");
    }
    // Then: the first key no longer trusted, `taken` claimed by another handle (a job
    // running is not read ahead), `b` cancelled.
    let _ = repo.git(&["config", "--local", "--unset-all", "gatos.trust", &old]);
    let other = worker("other", &g)?;
    assert_eq!(g.jobs().claim_next(&other)?.map(|l| l.id), Some(taken));
    assert_eq!(
        d.jobs().read_ahead(&w, 2, &Default::default())?,
        vec![stranger, a]
    );
    g.jobs().cancel(b, None)?;
    let order: Vec<_> =
        std::iter::from_fn(|| d.jobs().claim_next(&w).unwrap().map(|l| l.id)).collect();
    assert_eq!(order, vec![a, c]);
    Ok(())
}

/// The read-ahead thread a daemon starts (`gatos.jobs.readAhead`, default 4): none for 0;
/// asked while it waits for the ready index's lock, it does not hold up the asker however
/// often it is asked (the requests it cannot take are dropped); then it reads the best
/// jobs into its handle's caches, the claims around it get every job once, and dropping it
/// stops it.
#[test]
fn the_read_ahead_thread_never_holds_up_a_claim_and_stops_when_dropped() -> TestResult {
    use gatos::jobs::readahead::ReadAhead;
    let repo = TempRepo::new()?;
    let (g, _clock) = start(&repo)?;
    assert_eq!(g.settings().read_ahead, 4);
    assert!(ReadAhead::start(&g, 0)?.is_none());
    let ids: Vec<Ulid> = (0..40)
        .map(|i| -> TestResult<Ulid> {
            Ok(g.jobs()
                .enqueue(spec(&g, json!({"command": ["n", i.to_string()]}))?)?
                .id)
        })
        .collect::<TestResult<_>>()?;
    // The daemon's handle: caches of its own (an enqueue remembers its own envelopes).
    let d = other_handle(&repo)?;
    let first: gatos_types::Oid = repo
        .rev_parse(&format!("refs/gatos/jobs/{}/job", ids[0]))?
        .ok_or("no job ref")?
        .parse()?;
    let ra = ReadAhead::start(&d, 4)?.ok_or("a read-ahead")?;
    let w = worker("w", &d)?;
    let index = d.try_hold("index.jobs")?.ok_or("the ready index's lock")?;
    for _ in 0..100 {
        ra.after_claim(&w);
    }
    assert!(!gatos::jobs::enqueuer::is_checked(&d, ids[0], first));
    drop(index);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !gatos::jobs::enqueuer::is_checked(&d, ids[0], first) {
        assert!(
            std::time::Instant::now() < deadline,
            "the best job was not read ahead"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let mut claimed = Vec::new();
    while let Some(l) = d.jobs().claim_next(&w)? {
        ra.after_claim(&w);
        claimed.push(l.id);
    }
    drop(ra);
    claimed.sort();
    let mut want = ids;
    want.sort();
    assert_eq!(claimed, want);
    Ok(())
}

/// A claim takes the best jobs a few at a time from the ready index's claim order (issue
/// #21): behind more jobs than one pass takes whose secrets the worker cannot resolve
/// (passed over after a pass), and jobs a pass leaves out at once (a capability it lacks,
/// a live lease, not yet due), it still finds the one it may run, and with none left says
/// so.
#[test]
fn a_claim_finds_the_one_job_it_may_run_behind_many_it_may_not() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _clock) = start(&repo)?;
    secret_jobs(&g, 12, 9)?;
    for i in 0..12 {
        g.jobs().enqueue(spec(
            &g,
            json!({"command": ["gpu", i.to_string()], "priority": 8, "capabilities": ["gpu"]}),
        )?)?;
        g.jobs().enqueue(spec(
            &g,
            json!({"command": ["later", i.to_string()], "priority": 7, "run_after": "1h"}),
        )?)?;
    }
    let mut holder = worker("holder", &g)?;
    holder.lease = Dur::from_secs(7200);
    holder.caps = vec!["gpu".parse()?];
    let held: Vec<_> = (0..12)
        .map(|_| g.jobs().claim_next(&holder).map(|l| l.map(|l| l.id)))
        .collect::<Result<_, _>>()?;
    assert!(held.iter().all(Option::is_some), "{held:?}");
    for i in 0..12 {
        g.jobs().enqueue(spec(
            &g,
            json!({"command": ["gpu2", i.to_string()], "priority": 6, "capabilities": ["gpu"]}),
        )?)?;
    }
    let plain_job = g.jobs().enqueue(spec(&g, json!({"command": ["plain"]}))?)?;
    let plain = worker("plain", &g)?;
    assert_eq!(
        g.jobs().claim_next(&plain)?.map(|l| l.id),
        Some(plain_job.id)
    );
    assert_eq!(g.jobs().claim_next(&plain)?.map(|l| l.id), None);
    Ok(())
}

/// A claim tries the backlog best first and passes over a job its worker may not run (an
/// enqueuer this node does not trust) without failing: the next best is claimed, and a
/// backlog of only such jobs has nothing claimable, now or later, for that worker; one
/// that allows untrusted enqueuers takes it (issue #21: a claim now asks about the
/// enqueuer of the jobs it tries, not of every job).
#[test]
fn a_claim_passes_over_the_best_job_when_its_enqueuer_is_not_trusted() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _clock) = start(&repo)?;
    let stranger = g
        .jobs()
        .enqueue(spec(&g, json!({"command": ["x"], "priority": 9}))?)?;
    let old = g.keys().current().ok_or("a key")?.to_string();
    g.keys().init(true)?;
    let _ = repo.git(&["config", "--local", "--unset-all", "gatos.trust", &old]);
    let low = g.jobs().enqueue(spec(&g, json!({"command": ["low"]}))?)?;
    let mid = g
        .jobs()
        .enqueue(spec(&g, json!({"command": ["mid"], "priority": 1}))?)?;
    let w = worker("w", &g)?;
    let order: Vec<_> =
        std::iter::from_fn(|| g.jobs().claim_next(&w).unwrap().map(|l| l.id)).collect();
    assert_eq!(order, vec![mid.id, low.id]);
    assert_eq!(g.jobs().next_claimable_at(&w)?, None);
    let mut open = worker("open", &g)?;
    open.allow_untrusted_enqueuers = true;
    assert!(g.jobs().next_claimable_at(&open)?.is_some());
    assert_eq!(g.jobs().claim_next(&open)?.map(|l| l.id), Some(stranger.id));
    Ok(())
}

#[test]
fn cancel_stops_pending_jobs_and_is_refused_for_finished_ones() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _clock) = start(&repo)?;
    let job = g.jobs().enqueue(spec(&g, json!({"command": ["x"]}))?)?;
    let row = g.jobs().cancel(job.id, Some("not needed".into()))?;
    assert_eq!(row.state, JobState::Cancelled);
    assert_eq!(g.jobs().cancel(job.id, None)?.state, JobState::Cancelled);
    let w = worker("w", &g)?;
    assert!(g.jobs().claim_next(&w)?.is_none());
    assert_eq!(
        g.jobs().claim(job.id, &w).unwrap_err().code(),
        ErrorCode::Conflict
    );
    let done = g.jobs().enqueue(spec(&g, json!({"command": ["y"]}))?)?;
    let l = g.jobs().claim_next(&w)?.unwrap();
    finish(&g, &l, Outcome::Succeeded, Some(0))?;
    assert_eq!(
        g.jobs().cancel(done.id, None).unwrap_err().code(),
        ErrorCode::Conflict
    );
    // A running job's cancel is seen by its worker, whose release keeps the state.
    let running = g.jobs().enqueue(spec(&g, json!({"command": ["z"]}))?)?;
    let l = g.jobs().claim_next(&w)?.unwrap();
    g.jobs().cancel(running.id, None)?;
    assert!(g.jobs().is_cancelled(running.id)?);
    let f = finish(&g, &l, Outcome::Cancelled, None)?;
    assert_eq!(f.state, JobState::Cancelled);
    assert_eq!(
        g.jobs().show(running.id)?.claim.unwrap().state,
        ClaimState::Released
    );
    // Cancels are audited.
    let audit = g.messages().read(
        &gatos::audit::topic(),
        &gatos::messages::ReadOptions {
            since: gatos::messages::Cursor::Start,
            limit: 100,
        },
    )?;
    let actions: Vec<String> = audit
        .messages
        .iter()
        .map(|m| {
            let p: serde_json::Value = serde_json::from_str(m.payload.get()).unwrap();
            p["action"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(actions.iter().filter(|a| *a == "jobs.cancel").count(), 2);
    repo.assert_fsck_strict()
}

#[test]
fn the_ready_index_is_rebuilt_from_the_refs_and_follows_outside_changes() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _clock) = start(&repo)?;
    let w = worker("w", &g)?;
    let jobs: Vec<_> = (0..5)
        .map(|i| {
            g.jobs()
                .enqueue(spec(&g, json!({"command": [format!("j{i}")]})).unwrap())
        })
        .collect::<Result<_, _>>()?;
    // Forgotten: rebuilt on next use.
    g.jobs().reset_ready_index()?;
    let first = g.jobs().claim_next(&w)?.unwrap();
    assert_eq!(first.id, jobs[0].id);
    // Packing refs, and a plain git deletion, are noticed.
    repo.git(&["pack-refs", "--all"])?;
    repo.git(&[
        "update-ref",
        "-d",
        &format!("refs/gatos/jobs/{}/job", jobs[1].id),
    ])?;
    let next = g.jobs().claim_next(&w)?.unwrap();
    assert_eq!(next.id, jobs[2].id);
    // A job created by another handle (another process) is seen.
    let (other, _) = open_at(&repo, "2026-11-23T10:00:01Z")?;
    let late = other
        .jobs()
        .enqueue(spec(&other, json!({"command": ["late"]}))?)?;
    let mut seen = Vec::new();
    while let Some(l) = g.jobs().claim_next(&w)? {
        seen.push(l.id);
    }
    assert_eq!(seen, vec![jobs[3].id, jobs[4].id, late.id]);
    Ok(())
}

#[test]
fn finished_jobs_are_archived_with_every_object_reachable_and_still_found() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, clock) = start(&repo)?;
    let w = worker("w", &g)?;
    let mut ids = Vec::new();
    for i in 0..7 {
        let j = g
            .jobs()
            .enqueue(spec(&g, json!({"command": [format!("j{i}")]}))?)?;
        ids.push(j.id);
        let l = g.jobs().claim_next(&w)?.unwrap();
        finish(&g, &l, Outcome::Succeeded, Some(0))?;
    }
    let cancelled = g.jobs().enqueue(spec(&g, json!({"command": ["c"]}))?)?;
    g.jobs().cancel(cancelled.id, None)?;
    let pending = g.jobs().enqueue(spec(&g, json!({"command": ["p"]}))?)?;
    // Too recent for the default of 7 days.
    let r = gatos::jobs::archive::archive(&g, g.settings().archive_after)?;
    assert_eq!((r.archived, r.too_recent), (0, 8));
    clock.advance(Dur::from_secs(8 * 86_400));
    let r = gatos::jobs::archive::archive(&g, g.settings().archive_after)?;
    assert_eq!(r.archived, 8);
    assert_eq!(r.commits, 1);
    let live = repo.refs("refs/gatos/jobs/")?;
    assert!(
        live.iter()
            .all(|(n, _)| n.contains(&pending.id.to_string())),
        "{live:?}"
    );
    assert_eq!(repo.refs("refs/gatos/archive/jobs/")?.len(), 1);
    // Still found: show, verify, ls with a final state.
    let row = g.jobs().show(ids[3])?;
    assert_eq!(row.state, JobState::Succeeded);
    assert_eq!(row.poe.map(|p| p.verified), Some(true));
    assert_eq!(g.jobs().show(cancelled.id)?.state, JobState::Cancelled);
    let done = g.jobs().list(&ListOptions {
        state: Some(JobState::Succeeded),
        ..ListOptions::default()
    })?;
    assert_eq!(done.iter().map(|r| r.id).collect::<Vec<_>>(), ids);
    let all = g.jobs().verify_all()?;
    assert_eq!(all.len(), 7);
    assert!(all.iter().all(|v| v.verified));
    // Idempotent; the pending job is untouched and claimable.
    let again = gatos::jobs::archive::archive(&g, Dur::from_secs(0))?;
    assert_eq!(again.archived, 0);
    assert_eq!(g.jobs().claim_next(&w)?.map(|l| l.id), Some(pending.id));
    // Every object stays reachable through the archive, even after an aggressive gc.
    repo.assert_fsck_strict()?;
    repo.git(&["gc", "--prune=now", "--quiet"])?;
    repo.assert_fsck_strict()?;
    let (fresh, _) = open_at(&repo, "2026-12-10T00:00:00Z")?;
    assert!(fresh.jobs().verify(ids[0])?.verified);
    Ok(())
}

#[test]
fn the_registry_numbers_versions_and_run_records_the_source() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _clock) = start(&repo)?;
    let name = "nightly-build".parse()?;
    let v1 = g.manifests().put(
        &name,
        manifest::parse_text("command: [make]\nargs: [all]\ntimeout: 10m\n")?,
    )?;
    assert_eq!((v1.row.version, v1.changed), (1, true));
    let same = g.manifests().put(
        &name,
        manifest::parse_text(r#"{"command":["make"],"args":["all"],"timeout":"PT10M"}"#)?,
    )?;
    assert_eq!((same.row.version, same.changed), (1, false));
    let v2 = g.manifests().put(
        &name,
        manifest::parse_text(r#"{"command":["make"],"args":["dist"]}"#)?,
    )?;
    assert_eq!(v2.row.version, 2);
    assert_eq!(g.manifests().get(&name, Some(1))?.manifest.timeout, 600);
    assert_eq!(g.manifests().get(&name, None)?.version, 2);
    assert_eq!(
        g.manifests().get(&name, Some(3)).unwrap_err().code(),
        ErrorCode::NotFound
    );
    assert_eq!(g.manifests().list()?.len(), 1);
    let job = g.manifests().run(&name, Some(1))?;
    let row = g.jobs().show(job.id)?;
    let src = row.manifest.source.unwrap();
    assert_eq!((src.name.as_str(), src.version), ("nightly-build", 1));
    assert_eq!(src.content_id, v1.row.content_id);
    assert_eq!(row.manifest.args, vec!["all"]);
    let trailers = repo.git(&[
        "log",
        "-1",
        "--format=%(trailers:key=Manifest,key=Version)",
        &format!("refs/gatos/jobs/{}/job", job.id),
    ])?;
    assert!(trailers.contains("Manifest: nightly-build") && trailers.contains("Version: 1"));
    // A raw secret is refused and leaves no ref.
    let err = g
        .manifests()
        .put(
            &"leaky".parse()?,
            Input {
                command: vec!["curl".into()],
                env: [(
                    "AWS_SECRET_ACCESS_KEY".to_owned(),
                    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned(),
                )]
                .into_iter()
                .collect(),
                ..Input::default()
            },
        )
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::SecretDetected);
    assert!(repo.rev_parse("refs/gatos/manifests/leaky")?.is_none());
    repo.assert_fsck_strict()
}

#[test]
fn revocations_follow_their_reason_and_rotation_keeps_old_proofs() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, clock) = start(&repo)?;
    let w = worker("w", &g)?;
    let run = |g: &Gatos| -> TestResult<gatos_types::Ulid> {
        let j = g.jobs().enqueue(spec(g, json!({"command": ["x"]}))?)?;
        let l = g.jobs().claim(
            j.id,
            &ClaimOptions {
                worker_key: g.keys().current(),
                ..w.clone()
            },
        )?;
        finish(g, &l, Outcome::Succeeded, Some(0))?;
        Ok(j.id)
    };
    let before = run(&g)?;
    let old = g.keys().current().unwrap();
    clock.advance(Dur::from_secs(60));
    // Rotation: the old key is revoked as superseded; its earlier proofs stay valid.
    let (new, created) = g.keys().init(true)?;
    assert!(created && new.key != old);
    assert!(g.jobs().verify(before)?.verified);
    let after = run(&g)?;
    assert!(g.jobs().verify(after)?.verified);
    // Compromised from a time before the proof: invalid.
    clock.advance(Dur::from_secs(60));
    g.keys().revoke(
        &new.key,
        gatos::keys::Reason::Compromised,
        Some(Timestamp::parse_rfc3339(T0)?),
    )?;
    let v = g.jobs().verify(after)?;
    assert_eq!(v.code, Some(ErrorCode::KeyRevoked));
    assert!(
        g.jobs().verify(before)?.verified,
        "made by the superseded key"
    );
    repo.assert_fsck_strict()
}

/// Worker options that cannot run are typed refusals (`worker::OptionsError`,
/// `InvalidInput`) whose messages name the option, never a CLI flag; nothing is claimed.
#[test]
fn worker_options_that_cannot_run_are_typed_refusals() -> TestResult {
    use gatos::worker::{self, Control, OptionsError, Secrets, WorkerOptions};
    let repo = TempRepo::new()?;
    let (g, _) = start(&repo)?;
    let id = g
        .jobs()
        .enqueue(spec(&g, json!({"command": ["true"]}))?)?
        .id;
    let typed = |e: &gatos::Error| {
        e.inner()
            .downcast_ref::<OptionsError>()
            .map(|o| format!("{o:?}"))
    };
    let refused = |opts: &WorkerOptions| -> TestResult<gatos::Error> {
        let e = worker::run(&g, opts, &Control::new(), &|_| {})
            .err()
            .ok_or("the worker ran")?;
        assert_eq!(e.code(), ErrorCode::InvalidInput, "{e}");
        assert!(!e.to_string().contains("--"), "{e}");
        Ok(e)
    };
    let mut opts = WorkerOptions::new("w1".parse()?);
    opts.concurrency = 0;
    let e = refused(&opts)?;
    assert!(
        matches!(
            e.inner().downcast_ref::<OptionsError>(),
            Some(OptionsError::Concurrency { concurrency: 0 })
        ),
        "{:?}",
        typed(&e)
    );
    opts.concurrency = 1;
    opts.workdir = Some(repo.path().join("no-such-dir"));
    let e = refused(&opts)?;
    assert!(
        matches!(
            e.inner().downcast_ref::<OptionsError>(),
            Some(OptionsError::WorkdirNotADirectory { .. })
        ),
        "{:?}",
        typed(&e)
    );
    opts.workdir = Some(repo.path().to_owned());
    let e = refused(&opts)?;
    assert!(
        matches!(
            e.inner().downcast_ref::<OptionsError>(),
            Some(OptionsError::WorkdirHoldsGitDir { .. })
        ),
        "{:?}",
        typed(&e)
    );
    assert_eq!(
        g.jobs().show(id)?.state,
        JobState::Pending,
        "nothing was claimed"
    );
    for (name, missing) in [
        ("not a name", false),
        ("GATOS_TEST_SURELY_UNSET_4711", true),
    ] {
        let e = Secrets::load(None, None, &[name.to_owned()])
            .err()
            .ok_or("loaded")?;
        assert_eq!(e.code(), ErrorCode::InvalidInput, "{e}");
        let o = e.inner().downcast_ref::<OptionsError>();
        if missing {
            assert!(
                matches!(o, Some(OptionsError::SecretEnvMissing { .. })),
                "{e}"
            );
        } else {
            assert!(matches!(o, Some(OptionsError::SecretEnvName { .. })), "{e}");
        }
    }
    // The operator's secret sources: a malformed line, a file named as no secret, a source
    // that is not there; the value is never in the message.
    let file = repo.path().join("secrets.env");
    std::fs::write(&file, "# ok\nA=1\nno equals sign here\n")?;
    let e = Secrets::load(Some(&file), None, &[])
        .err()
        .ok_or("loaded")?;
    assert_eq!(
        e.to_string(),
        format!(
            "secrets file {} line 3: expected NAME=VALUE",
            file.display()
        )
    );
    assert!(matches!(
        e.inner().downcast_ref::<OptionsError>(),
        Some(OptionsError::SecretsLine { line: 3, .. })
    ));
    let dir = repo.path().join("secrets.d");
    std::fs::create_dir(&dir)?;
    std::fs::write(dir.join("not-a-name"), "hunter2")?;
    let e = Secrets::load(None, Some(&dir), &[]).err().ok_or("loaded")?;
    assert!(!e.to_string().contains("hunter2"), "{e}");
    assert!(matches!(
        e.inner().downcast_ref::<OptionsError>(),
        Some(OptionsError::SecretsFileName { name, .. }) if name == "not-a-name"
    ));
    let e = Secrets::load(Some(&repo.path().join("absent")), None, &[])
        .err()
        .ok_or("loaded")?;
    assert_eq!(e.code(), ErrorCode::InvalidInput);
    assert!(matches!(
        e.inner().downcast_ref::<OptionsError>(),
        Some(OptionsError::SecretsUnreadable { .. })
    ));
    Ok(())
}

/// What the holder of a lease may not do is a typed `LeaseError`: a succeeded attempt with
/// a non-zero exit code (with the `exit_code` detail), a missing or wrong lease token, a
/// claim taken over.
#[test]
fn a_lease_holders_refusals_are_typed() -> TestResult {
    use gatos::jobs::lifecycle::{LeaseError, LostClaim};
    let repo = TempRepo::new()?;
    let (g, clock) = start(&repo)?;
    let id = g
        .jobs()
        .enqueue(spec(&g, json!({"command": ["true"]}))?)?
        .id;
    let lease = g.jobs().claim(id, &worker("w1", &g)?)?;
    let e = finish(&g, &lease, Outcome::Succeeded, Some(1)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidInput);
    assert_eq!(e.details().get("exit_code"), Some(&json!(1)));
    assert!(matches!(
        e.inner().downcast_ref::<LeaseError>(),
        Some(LeaseError::SucceededNonZero { exit_code: Some(1) })
    ));
    let mut tokenless = lease.clone();
    tokenless.token = None;
    let e = g.jobs().heartbeat(&mut tokenless).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Forbidden);
    assert!(matches!(
        e.inner().downcast_ref::<LeaseError>(),
        Some(LeaseError::Token { given: false, .. })
    ));
    clock.advance(Dur::from_secs(31));
    let taken = g.jobs().claim(id, &worker("w2", &g)?)?;
    assert_eq!(taken.attempt, 2);
    let mut old = lease;
    let e = g.jobs().heartbeat(&mut old).unwrap_err();
    assert_eq!(e.code(), ErrorCode::LeaseExpired);
    assert!(
        matches!(
            e.inner().downcast_ref::<LeaseError>(),
            Some(LeaseError::Lost {
                why: LostClaim::Moved { attempt: 2, .. },
                ..
            })
        ),
        "{e}"
    );
    Ok(())
}

/// `claim_next` as `SKIP LOCKED` (issue #21): a job whose lock another writer holds right
/// now is passed over for the next best one, and waited for only when nothing else is
/// claimable, so `None` still means nothing is — also when the next best one comes in a
/// later pass over the ready index than the busy one (behind jobs whose secrets the
/// worker cannot resolve).
#[test]
fn claim_next_passes_over_a_job_another_writer_holds_and_waits_for_it_last() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _clock) = start(&repo)?;
    let family = |id: gatos_types::Ulid| id.to_string()[25..].to_owned();
    let best = g
        .jobs()
        .enqueue(spec(&g, json!({"command": ["true"], "priority": 5}))?)?;
    secret_jobs(&g, 12, 4)?;
    // The next best, in another lock family than the best.
    let next = loop {
        let j = g.jobs().enqueue(spec(&g, json!({"command": ["true"]}))?)?;
        if family(j.id) != family(best.id) {
            break j;
        }
    };
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(
            repo.git_dir()
                .join(format!("gatos/locks/jobs.{}", family(best.id))),
        )?;
    lock_file.lock()?;
    let w = worker("w", &g)?;
    let first = g.jobs().claim_next(&w)?.ok_or("a job is claimable")?;
    assert_eq!(first.id, next.id, "the busy best job is passed over");
    // Only the busy one is left: claim_next waits for its lock rather than answer None.
    let holder = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(200));
        drop(lock_file);
    });
    let second = g.jobs().claim_next(&w)?.ok_or("the busy job, once free")?;
    assert_eq!(second.id, best.id);
    holder.join().map_err(|_| "the holder panicked")?;
    assert_eq!(g.jobs().claim_next(&w)?.map(|l| l.id), None);
    Ok(())
}

/// The handle's cache of checked enqueue envelopes keeps only what the commit says: once
/// the enqueuer's key is no longer trusted, a handle that checked the job before answers
/// as a fresh one does, and trusting the key again counts at once (issue #21).
#[test]
fn a_cached_envelope_check_follows_a_change_of_trust_as_a_fresh_handle_does() -> TestResult {
    use gatos::jobs::enqueuer::{Verdict, check};
    let repo = TempRepo::new()?;
    let (g, _clock) = start(&repo)?;
    let job = g.jobs().enqueue(spec(&g, json!({"command": ["true"]}))?)?;
    let commit: gatos_types::Oid = repo
        .rev_parse(&format!("refs/gatos/jobs/{}/job", job.id))?
        .ok_or("no job ref")?
        .parse()?;
    let Verdict::Trusted(st) = check(&g, job.id, commit)? else {
        return Err("the node's own enqueue is trusted".into());
    };
    let old = st.enqueuer.key.to_string();
    // A new node key, and the old one no longer in `gatos.trust`.
    g.keys().init(true)?;
    let _ = repo.git(&["config", "--local", "--unset-all", "gatos.trust", &old]);
    assert!(!g.keys().is_trusted(&st.enqueuer.key));
    let fresh = crate::support::open(&repo)?;
    let cached = check(&g, job.id, commit)?;
    assert!(matches!(cached, Verdict::Untrusted(_)), "{cached:?}");
    assert_eq!(cached, check(&fresh, job.id, commit)?);
    g.keys().trust(&st.enqueuer.key)?;
    assert!(matches!(check(&g, job.id, commit)?, Verdict::Trusted(_)));
    Ok(())
}

/// What an enqueue remembers of the statement it signed is what a fresh handle reads from
/// the commit and verifies (issue #21).
#[test]
fn an_enqueue_remembers_the_envelope_check_a_fresh_handle_makes() -> TestResult {
    use gatos::jobs::enqueuer::{Verdict, check};
    let repo = TempRepo::new()?;
    let (g, _clock) = start(&repo)?;
    let job = g
        .jobs()
        .enqueue(spec(&g, json!({"command": ["true"], "queue": "q"}))?)?;
    let fresh = crate::support::open(&repo)?;
    let read = check(&fresh, job.id, job.commit)?;
    let Verdict::Trusted(st) = &read else {
        return Err(format!("the node's own enqueue is trusted: {read:?}").into());
    };
    assert_eq!((st.job, st.content_id), (job.id, job.content_id));
    // Without its envelope on disk, only what the enqueue remembered can answer.
    let blob = repo
        .rev_parse(&format!("{}:enqueue.json", job.commit))?
        .ok_or("no envelope")?;
    std::fs::remove_file(
        repo.git_dir()
            .join("objects")
            .join(&blob[..2])
            .join(&blob[2..]),
    )?;
    assert_eq!(check(&g, job.id, job.commit)?, read);
    assert!(check(&crate::support::open(&repo)?, job.id, job.commit).is_err());
    Ok(())
}

/// Concurrent job actions through one handle share one group commit (ADR 0046): a claim, a
/// heartbeat and a complete commit together while a heartbeat whose claim ref another
/// writer moved meanwhile loses its compare-and-swap alone (issue #21).
#[test]
fn a_group_of_job_actions_commits_all_but_the_one_whose_cas_lost() -> TestResult {
    let repo = TempRepo::new()?;
    // Grouping is off by default (ADR 0046).
    repo.git(&["config", "gatos.group.jobs", "true"])?;
    let (g, _clock) = start(&repo)?;
    let family = |id: gatos_types::Ulid| id.to_string()[25..].to_owned();
    // Four jobs in four lock families: actions on jobs that share a family wait for each
    // other's lock and never meet in one group.
    let mut ids: Vec<gatos_types::Ulid> = Vec::new();
    while ids.len() < 4 {
        let j = g.jobs().enqueue(spec(&g, json!({"command": ["true"]}))?)?;
        if ids.iter().all(|i| family(*i) != family(j.id)) {
            ids.push(j.id);
        } else {
            g.jobs().cancel(j.id, None)?;
        }
    }
    let w = worker("w", &g)?;
    // Jobs 1, 2, 3 are claimed now; job 0 is claimed inside the group.
    let mut leases = Vec::new();
    for id in &ids[1..] {
        leases.push(g.jobs().claim(*id, &w)?);
    }
    // Job 3's claim moves on by one heartbeat; its `running` commit is what another
    // writer will put back while job 3's next heartbeat waits in the group.
    let running3 = leases[2].head;
    g.jobs().heartbeat(&mut leases[2])?;
    let claim3 = format!("refs/gatos/jobs/{}/claim", ids[3]);

    let hold = gatos::jobs::group::hold(&g);
    let mut threads = Vec::new();
    {
        let (g, w) = (g.clone(), w.clone());
        threads.push(std::thread::spawn(move || {
            g.jobs().claim_next(&w).map(|l| l.map(|l| (l.id, l.head)))
        }));
    }
    for mut lease in [leases[0].clone(), leases[2].clone()] {
        let g = g.clone();
        threads.push(std::thread::spawn(move || {
            g.jobs()
                .heartbeat(&mut lease)
                .map(|()| Some((lease.id, lease.head)))
        }));
    }
    {
        let (g, lease) = (g.clone(), leases[1].clone());
        threads.push(std::thread::spawn(move || {
            finish(&g, &lease, Outcome::Succeeded, Some(0)).map(|f| Some((lease.id, f.commit)))
        }));
    }
    gatos_testutil::wait_for(
        "four actions waiting in the group",
        std::time::Duration::from_secs(30),
        || gatos::jobs::group::waiting(&g) == 4,
    )?;
    repo.git(&["update-ref", &claim3, &running3.to_string()])?;
    drop(hold);
    let results: Vec<_> = threads
        .into_iter()
        .map(|t| t.join().map_err(|_| "an action panicked"))
        .collect::<Result<_, _>>()?;

    // The claim, job 1's heartbeat and job 2's complete committed; job 3's heartbeat lost.
    let claimed = results[0]
        .as_ref()
        .map_err(|e| e.to_string())?
        .ok_or("a job was claimed")?;
    assert_eq!(claimed.0, ids[0]);
    assert_eq!(
        repo.rev_parse(&format!("refs/gatos/jobs/{}/claim", ids[0]))?,
        Some(claimed.1.to_string())
    );
    let beat = results[1]
        .as_ref()
        .map_err(|e| e.to_string())?
        .ok_or("a heartbeat")?;
    assert_eq!(
        repo.rev_parse(&format!("refs/gatos/jobs/{}/claim", ids[1]))?,
        Some(beat.1.to_string())
    );
    let lost = results[2]
        .as_ref()
        .expect_err("job 3's heartbeat lost its CAS");
    assert_eq!(lost.code(), ErrorCode::LeaseExpired, "{lost}");
    assert_eq!(repo.rev_parse(&claim3)?, Some(running3.to_string()));
    let done = results[3]
        .as_ref()
        .map_err(|e| e.to_string())?
        .ok_or("a complete")?;
    assert_eq!(
        repo.rev_parse(&format!("refs/gatos/jobs/{}/result", ids[2]))?,
        Some(done.1.to_string())
    );
    assert_eq!(g.jobs().show(ids[2])?.state, JobState::Succeeded);
    assert_eq!(g.jobs().show(ids[0])?.state, JobState::Running);
    // The events of the actions that committed, and none of the one that lost.
    let evs = events(&g)?;
    assert!(
        evs.iter()
            .any(|e| e.0 == "claimed" && e.2 == claimed.1.to_string())
    );
    assert!(
        evs.iter()
            .any(|e| e.0 == "succeeded" && e.2 == done.1.to_string())
    );
    repo.assert_fsck_strict()
}

/// Without `gatos.group.jobs` (the default) a job action is written alone: it does not
/// wait for the handle's job group even while that group is held (ADR 0046).
#[test]
fn job_actions_are_written_alone_unless_grouping_is_on() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _clock) = start(&repo)?;
    assert!(!g.settings().group_jobs);
    let job = g.jobs().enqueue(spec(&g, json!({"command": ["true"]}))?)?;
    let w = worker("w", &g)?;
    let _hold = gatos::jobs::group::hold(&g);
    let mut lease = g.jobs().claim(job.id, &w)?;
    g.jobs().heartbeat(&mut lease)?;
    finish(&g, &lease, Outcome::Succeeded, Some(0))?;
    assert_eq!(gatos::jobs::group::waiting(&g), 0);
    assert_eq!(g.jobs().show(job.id)?.state, JobState::Succeeded);
    repo.assert_fsck_strict()
}
