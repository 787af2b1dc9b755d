//! `jobs logs` on a real repository: the live spool a worker writes on this node, the
//! switch to the attempt's commit when it lands, the cap, a crashed worker's spool, and
//! following a job across attempts.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gatos::Gatos;
use gatos::clock::FixedClock;
use gatos::jobs::Lease;
use gatos::jobs::lifecycle::{ClaimOptions, Finish};
use gatos::jobs::logs::{FollowOptions, LogChunk, Options, Source, Spool, Stream, spool_note};
use gatos::jobs::manifest;
use gatos_testutil::{TempRepo, TestResult};
use gatos_types::jobs::Outcome;
use gatos_types::{Dur, ErrorCode, Ulid, WorkerId};
use serde_json::json;

use crate::support::open_at;

const T0: &str = "2026-11-23T10:00:00Z";

fn start(repo: &TempRepo) -> TestResult<(Gatos, Arc<FixedClock>)> {
    let (g, clock) = open_at(repo, T0)?;
    g.keys().init(false)?;
    Ok((g, clock))
}

fn enqueue(g: &Gatos, v: serde_json::Value) -> TestResult<Ulid> {
    let spec = manifest::normalize(manifest::from_value(v)?, g.now())?;
    Ok(g.jobs().enqueue(spec)?.id)
}

fn worker(g: &Gatos) -> TestResult<ClaimOptions> {
    Ok(ClaimOptions {
        worker: "w1".parse::<WorkerId>()?,
        worker_key: g.keys().current(),
        queues: Vec::new(),
        caps: Vec::new(),
        lease: Dur::from_secs(30),
        can_resolve: None,
        allow_untrusted_enqueuers: false,
    })
}

fn claim(g: &Gatos) -> TestResult<Lease> {
    Ok(g.jobs()
        .claim_next(&worker(g)?)?
        .ok_or("nothing to claim")?)
}

fn finish(g: &Gatos, lease: &Lease, outcome: Outcome, stdout: &[u8]) -> gatos::Result<()> {
    g.jobs().finish(
        lease,
        &Finish {
            outcome,
            exit_code: Some(i32::from(outcome != Outcome::Succeeded)),
            signal: None,
            stdout: stdout.to_vec(),
            stderr: Vec::new(),
            outputs: Vec::new(),
            poe: None,
        },
    )?;
    Ok(())
}

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn read(g: &Gatos, id: Ulid, from: u64) -> gatos::Result<LogChunk> {
    g.jobs().logs(
        id,
        &Options {
            from_offset: from,
            ..Options::default()
        },
    )
}

fn spool_dir(repo: &TempRepo, id: Ulid) -> PathBuf {
    repo.git_dir()
        .join("gatos")
        .join("logs")
        .join(id.to_string())
}

fn mode(p: &Path) -> TestResult<u32> {
    Ok(std::fs::metadata(p)?.permissions().mode() & 0o777)
}

#[test]
fn a_running_attempt_is_read_from_the_spool_then_from_its_commit_at_the_same_offsets() -> TestResult
{
    let repo = TempRepo::new()?;
    let (g, _clock) = start(&repo)?;
    let id = enqueue(&g, json!({"command": ["true"]}))?;
    let e = read(&g, id, 0).expect_err("not started");
    assert_eq!(e.code(), ErrorCode::Unavailable, "{e}");
    assert!(e.to_string().contains("has not started"), "{e}");
    let lease = claim(&g)?;
    // Claimed, but no worker of this node writes its spool: it runs elsewhere.
    let e = read(&g, id, 0).expect_err("no spool here");
    assert_eq!(e.code(), ErrorCode::Unavailable, "{e}");
    assert!(
        e.to_string().contains("is available on this node yet") && e.to_string().contains("w1"),
        "{e}"
    );

    let spool = Spool::create(&g, id, lease.attempt, &lease.worker, 1024)?;
    let dir = spool_dir(&repo, id);
    assert_eq!(mode(&dir)?, 0o700);
    for f in ["1.json", "1.stdout", "1.stderr"] {
        assert_eq!(mode(&dir.join(f))?, 0o600, "{f}");
    }
    let mut out = spool.writer(Stream::Stdout)?;
    out.append(b"hello ");
    let c = read(&g, id, 0)?;
    assert_eq!(
        (
            c.data.as_slice(),
            c.next_offset,
            c.done,
            c.source,
            c.attempt
        ),
        (&b"hello "[..], 6, false, Source::Spool, 1)
    );
    let c = read(&g, id, 6)?;
    assert!(c.data.is_empty() && !c.done, "{c:?}");

    // The result lands while the spool still exists: the commit is read first, from the
    // offset the reader reached.
    finish(&g, &lease, Outcome::Succeeded, b"hello world\n")?;
    let c = read(&g, id, 6)?;
    assert_eq!(
        (c.data.as_slice(), c.next_offset, c.done, c.source),
        (&b"world\n"[..], 12, true, Source::Result)
    );
    drop(out);
    drop(spool);
    assert!(!dir.exists(), "the spool is removed with its last attempt");
    assert_eq!(read(&g, id, 0)?.data, b"hello world\n");
    let err = g.jobs().logs(
        id,
        &Options {
            stream: Stream::Stderr,
            ..Options::default()
        },
    )?;
    assert!(err.data.is_empty() && err.done);

    for (opts, code) in [
        (
            Options {
                attempt: Some(2),
                ..Options::default()
            },
            ErrorCode::NotFound,
        ),
        (
            Options {
                attempt: Some(0),
                ..Options::default()
            },
            ErrorCode::InvalidInput,
        ),
        (
            Options {
                max_bytes: 0,
                ..Options::default()
            },
            ErrorCode::InvalidInput,
        ),
    ] {
        let e = g.jobs().logs(id, &opts).expect_err("refused");
        assert_eq!(e.code(), code, "{opts:?}: {e}");
    }
    let unknown: Ulid = "01J00000000000000000000000".parse()?;
    assert_eq!(
        read(&g, unknown, 0).expect_err("unknown").code(),
        ErrorCode::NotFound
    );
    repo.assert_fsck_strict()
}

#[test]
fn the_spool_keeps_the_cap_and_says_so() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _clock) = start(&repo)?;
    let id = enqueue(&g, json!({"command": ["true"]}))?;
    let lease = claim(&g)?;
    let spool = Spool::create(&g, id, lease.attempt, &lease.worker, 8)?;
    let mut out = spool.writer(Stream::Stdout)?;
    out.append(b"01234");
    out.append(b"56789");
    out.append(b"more, never spooled");
    let file = std::fs::read(spool_dir(&repo, id).join("1.stdout"))?;
    assert_eq!(file, [&b"01234567"[..], spool_note(8).as_bytes()].concat());
    let c = read(&g, id, 0)?;
    assert_eq!(c.data, b"01234567", "the note is not log data");
    assert!(c.truncated && !c.done);
    let c = read(&g, id, 8)?;
    assert!(c.data.is_empty() && c.truncated && !c.done, "{c:?}");
    // A small max_bytes pages through it.
    let c = g.jobs().logs(
        id,
        &Options {
            from_offset: 2,
            max_bytes: 3,
            ..Options::default()
        },
    )?;
    assert_eq!((c.data.as_slice(), c.next_offset), (&b"234"[..], 5));
    Ok(())
}

#[test]
fn a_crashed_workers_spool_reads_as_ended_and_the_next_worker_sweeps_it() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _clock) = start(&repo)?;
    let crashed = enqueue(&g, json!({"command": ["true"]}))?;
    let running = enqueue(&g, json!({"command": ["true"]}))?;
    let first = claim(&g)?;
    let second = claim(&g)?;
    assert_eq!(first.id, crashed);
    // What a worker killed with -9 leaves (docs/jobs.md "Logs"): the files, no flock.
    let dir = spool_dir(&repo, crashed);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("1.json"),
        json!({"job": crashed, "attempt": 1, "worker": "w1", "cap": 1024}).to_string(),
    )?;
    std::fs::write(dir.join("1.stdout"), "last words\n")?;
    std::fs::write(dir.join("1.stderr"), "")?;
    let live = Spool::create(&g, running, second.attempt, &second.worker, 1024)?;

    let c = read(&g, crashed, 0)?;
    assert_eq!(
        (c.data.as_slice(), c.done, c.source),
        (&b"last words\n"[..], true, Source::Spool),
        "its writer is gone: what it spooled is all there is"
    );
    // The read above took the dead writer's flock to see it free and dropped it; another
    // test thread's child, forked in that moment and not yet exec'd, can hold a copy of it
    // for a while (a sweep then counts the spool as live, and the next one removes it).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut swept = gatos::jobs::logs::sweep(&g);
    while dir.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
        swept += gatos::jobs::logs::sweep(&g);
    }
    assert_eq!(swept, 1);
    assert!(!dir.exists(), "the dead worker's spool is gone");
    assert!(
        spool_dir(&repo, running).join("1.json").exists(),
        "a live worker's spool stays"
    );
    // The claim is still live (by the clock), and nothing of it is here any more.
    assert_eq!(
        read(&g, crashed, 0).expect_err("gone").code(),
        ErrorCode::Unavailable
    );
    drop(live);
    Ok(())
}

/// `(attempt, stream, source, data)` of a chunk.
type Seen = (u32, Stream, Source, Vec<u8>);

/// Follows `id` until it ends, within a minute; returns `(attempt, stream, source, data)`
/// of each chunk.
fn follow_all(
    g: &Gatos,
    id: Ulid,
    opts: &FollowOptions,
    seen: &mpsc::Sender<usize>,
) -> TestResult<Vec<Seen>> {
    let mut f = g.jobs().follow_logs(id, opts)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut chunks = Vec::new();
    while !f.is_ended() {
        if Instant::now() >= deadline {
            return Err(format!("the follow did not end: {chunks:?}").into());
        }
        if let Some(c) = f.next_before(deadline)?
            && !c.data.is_empty()
        {
            chunks.push((c.attempt, c.stream, c.source, c.data));
            let _ = seen.send(chunks.len());
        }
    }
    Ok(chunks)
}

#[test]
fn a_follower_gets_every_byte_once_across_the_result_landing_and_ends() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _clock) = start(&repo)?;
    let id = enqueue(&g, json!({"command": ["true"]}))?;
    let (seen_tx, seen) = mpsc::channel();
    let writer = {
        let g = g.clone();
        std::thread::spawn(move || -> Result<(), String> {
            let lease = claim(&g).map_err(text)?;
            let spool = Spool::create(&g, id, lease.attempt, &lease.worker, 1024).map_err(text)?;
            let mut out = spool.writer(Stream::Stdout).map_err(text)?;
            out.append(b"one\n");
            // The follower has read it from the spool before the rest comes.
            seen.recv_timeout(Duration::from_secs(60)).map_err(text)?;
            out.append(b"two\n");
            // "three" only ever reaches the commit (a tail held back until the end).
            finish(&g, &lease, Outcome::Succeeded, b"one\ntwo\nthree\n").map_err(text)?;
            drop(spool);
            Ok(())
        })
    };
    let chunks = follow_all(&g, id, &FollowOptions::default(), &seen_tx)?;
    writer.join().map_err(|_| "the writer panicked")??;
    let stdout: Vec<u8> = chunks
        .iter()
        .filter(|c| c.1 == Stream::Stdout)
        .flat_map(|c| c.3.clone())
        .collect();
    assert_eq!(
        String::from_utf8(stdout)?,
        "one\ntwo\nthree\n",
        "{chunks:?}"
    );
    assert_eq!(chunks[0].2, Source::Spool, "{chunks:?}");
    assert_eq!(
        chunks.last().map(|c| c.2),
        Some(Source::Result),
        "{chunks:?}"
    );
    assert!(chunks.iter().all(|c| c.0 == 1 && c.1 == Stream::Stdout));
    repo.assert_fsck_strict()
}

#[test]
fn a_follower_goes_on_to_the_next_attempt_until_the_job_ends() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, clock) = start(&repo)?;
    let id = enqueue(&g, json!({"command": ["true"], "max_attempts": 2}))?;
    let first = claim(&g)?;
    finish(&g, &first, Outcome::Failed, b"attempt one failed\n")?;
    clock.advance(Dur::from_secs(600));
    let second = claim(&g)?;
    assert_eq!(second.attempt, 2);
    finish(&g, &second, Outcome::Failed, b"attempt two failed\n")?;
    // Attempt 1 on, through to the end (the job failed for good).
    let (tx, _rx) = mpsc::channel();
    let all = follow_all(
        &g,
        id,
        &FollowOptions {
            attempt: Some(1),
            ..FollowOptions::default()
        },
        &tx,
    )?;
    assert_eq!(all.len(), 1, "a pinned attempt only: {all:?}");
    assert_eq!(all[0].3, b"attempt one failed\n");
    // Without an attempt: the latest.
    let latest = follow_all(&g, id, &FollowOptions::default(), &tx)?;
    assert_eq!(latest.len(), 1, "{latest:?}");
    assert_eq!(
        (latest[0].0, latest[0].3.as_slice()),
        (2, &b"attempt two failed\n"[..])
    );
    // A released attempt is read from the claim that released it.
    let c = g.jobs().logs(
        id,
        &Options {
            attempt: Some(1),
            ..Options::default()
        },
    )?;
    assert_eq!((c.source, c.done), (Source::Result, true));
    repo.assert_fsck_strict()
}

#[test]
fn a_follower_started_before_the_claim_waits_and_moves_across_attempts() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, clock) = start(&repo)?;
    let id = enqueue(&g, json!({"command": ["true"], "max_attempts": 3}))?;
    let (seen_tx, seen) = mpsc::channel::<usize>();
    let runner = {
        let g = g.clone();
        std::thread::spawn(move || -> Result<(), String> {
            for (n, outcome) in [(1u32, Outcome::Failed), (2, Outcome::Succeeded)] {
                let lease = claim(&g).map_err(text)?;
                assert_eq!(lease.attempt, n);
                let spool = Spool::create(&g, id, n, &lease.worker, 1024).map_err(text)?;
                let line = format!("attempt {n}\n");
                spool
                    .writer(Stream::Stderr)
                    .map_err(text)?
                    .append(line.as_bytes());
                // Wait until the follower has this attempt's line from the spool.
                seen.recv_timeout(Duration::from_secs(60)).map_err(text)?;
                g.jobs()
                    .finish(
                        &lease,
                        &Finish {
                            outcome,
                            exit_code: Some(i32::from(outcome != Outcome::Succeeded)),
                            signal: None,
                            stdout: Vec::new(),
                            stderr: line.into_bytes(),
                            outputs: Vec::new(),
                            poe: None,
                        },
                    )
                    .map_err(text)?;
                drop(spool);
                clock.advance(Dur::from_secs(600));
            }
            Ok(())
        })
    };
    let chunks = follow_all(&g, id, &FollowOptions::default(), &seen_tx)?;
    runner.join().map_err(|_| "the runner panicked")??;
    let got: Vec<(u32, Stream, Source, String)> = chunks
        .into_iter()
        .map(|(a, s, src, d)| (a, s, src, String::from_utf8_lossy(&d).into_owned()))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, Stream::Stderr, Source::Spool, "attempt 1\n".to_owned()),
            (2, Stream::Stderr, Source::Spool, "attempt 2\n".to_owned()),
        ]
    );
    repo.assert_fsck_strict()
}
