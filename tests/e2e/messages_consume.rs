//! `messages consume --follow`, `--ack manual` and `messages ack` across real processes:
//! what a signal, a closed output and racing acks leave the checkpoint at.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use gatos_testutil::{TempRepo, TestResult, wait_for};

use crate::support::{gatos, gatos_cmd, gatos_ok, json_lines};

/// How long any awaited condition may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(60);

/// A `consume --follow` process whose stdout lines arrive on a channel.
struct Follower {
    child: Child,
    lines: Receiver<String>,
}

impl Follower {
    fn start(repo: &TempRepo, args: &[&str]) -> TestResult<Follower> {
        let (mut child, stdout) = spawn(repo, args)?;
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        child.stdin.take();
        Ok(Follower { child, lines })
    }

    /// The next `n` rows (parsed), each within the deadline.
    fn rows(&self, n: usize) -> TestResult<Vec<serde_json::Value>> {
        let deadline = Instant::now() + DEADLINE;
        let mut rows = Vec::with_capacity(n);
        while rows.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .map_err(|e| format!("row {} of {n} did not come: {e}", rows.len() + 1))?;
            rows.push(serde_json::from_str(&line)?);
        }
        Ok(rows)
    }

    /// Sends a signal to exactly this process.
    fn signal(&self, sig: &str) -> TestResult {
        signal(&self.child, sig)
    }

    /// Waits for the process to end (within the deadline); returns its status and the
    /// rows it printed that were not taken yet.
    fn finish(mut self) -> TestResult<(ExitStatus, Vec<serde_json::Value>)> {
        let status = wait_exit(&mut self.child)?;
        // The reader thread ends at EOF, which follows the exit.
        let rest = self
            .lines
            .iter()
            .map(|l| serde_json::from_str(&l))
            .collect::<Result<_, _>>()?;
        Ok((status, rest))
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        // A test that failed half-way leaves no process behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(repo: &TempRepo, args: &[&str]) -> TestResult<(Child, ChildStdout)> {
    let mut child = gatos_cmd(repo, args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    Ok((child, stdout))
}

fn signal(child: &Child, sig: &str) -> TestResult {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()?;
    assert!(status.success(), "kill {sig} {}", child.id());
    Ok(())
}

fn wait_exit(child: &mut Child) -> TestResult<ExitStatus> {
    let mut status = None;
    wait_for("the consumer to exit", DEADLINE, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    })?;
    Ok(status.ok_or("no status")?)
}

/// Ended by SIGTERM after the page in hand (it dies of the signal it caught).
fn ended_by_term(status: ExitStatus) -> bool {
    status.signal() == Some(15) || status.success()
}

fn publish(repo: &TempRepo, topic: &str, payloads: impl IntoIterator<Item = String>) -> TestResult {
    let lines: String = payloads.into_iter().map(|p| p + "\n").collect();
    let batch = repo.root().join(format!("batch-{topic}.jsonl"));
    std::fs::write(&batch, lines)?;
    gatos_ok(
        repo,
        &[
            "messages",
            "publish",
            topic,
            "--batch",
            &batch.to_string_lossy(),
        ],
    )?;
    Ok(())
}

fn ulids(repo: &TempRepo, topic: &str) -> TestResult<Vec<String>> {
    let rows = json_lines(&gatos_ok(
        repo,
        &["messages", "read", topic, "--json", "--limit", "10000"],
    )?)?;
    Ok(rows
        .iter()
        .filter_map(|r| r["ulid"].as_str().map(ToOwned::to_owned))
        .collect())
}

/// The group's checkpoint seq (0 when it has none).
fn checkpoint(repo: &TempRepo, group: &str, topic: &str) -> TestResult<u64> {
    let row = json_lines(&gatos_ok(
        repo,
        &["messages", "checkpoint", "get", group, topic, "--json"],
    )?)?;
    Ok(row[0]["seq"].as_u64().ok_or("no seq")?)
}

fn seqs(rows: &[serde_json::Value]) -> Vec<u64> {
    rows.iter().filter_map(|r| r["seq"].as_u64()).collect()
}

#[test]
fn follow_receives_what_other_processes_publish_and_the_checkpoint_follows() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    // The topic does not exist yet: --follow waits for it.
    let f = Follower::start(
        &repo,
        &[
            "messages", "consume", "billing", "orders", "--follow", "--json", "--limit", "4",
        ],
    )?;
    for i in 0..3 {
        gatos_ok(
            &repo,
            &[
                "messages",
                "publish",
                "orders",
                "--data",
                &format!("{{\"n\":{i}}}"),
            ],
        )?;
    }
    let first = f.rows(3)?;
    assert_eq!(seqs(&first), vec![1, 2, 3]);
    wait_for("the checkpoint at seq 3", DEADLINE, || {
        checkpoint(&repo, "billing", "orders").is_ok_and(|s| s == 3)
    })?;
    // A burst larger than a page: several pages, the checkpoint after each.
    publish(&repo, "orders", (3..13).map(|i| format!("{{\"n\":{i}}}")))?;
    let more = f.rows(10)?;
    assert_eq!(seqs(&more), (4..=13).collect::<Vec<_>>());
    wait_for("the checkpoint at seq 13", DEADLINE, || {
        checkpoint(&repo, "billing", "orders").is_ok_and(|s| s == 13)
    })?;
    // Waiting on a quiet topic, a SIGTERM ends it.
    f.signal("-TERM")?;
    let (status, rest) = f.finish()?;
    assert!(ended_by_term(status), "{status}");
    assert!(rest.is_empty(), "nothing more was printed: {rest:?}");
    assert_eq!(checkpoint(&repo, "billing", "orders")?, 13);
    repo.assert_fsck_strict()
}

#[test]
fn sigterm_leaves_the_checkpoint_at_or_before_the_last_printed_message() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    publish(&repo, "orders", (0..3000).map(|i| format!("{{\"n\":{i}}}")))?;
    // Signalled after a few rows, and further in; each round goes on from the last.
    let mut printed_through = 0;
    for after in [1, 60, 400] {
        let group_at = checkpoint(&repo, "billing", "orders")?;
        assert!(group_at <= printed_through);
        let f = Follower::start(
            &repo,
            &[
                "messages", "consume", "billing", "orders", "--follow", "--json", "--limit", "7",
            ],
        )?;
        let before = f.rows(after)?;
        f.signal("-TERM")?;
        let (status, rest) = f.finish()?;
        assert!(ended_by_term(status), "{status}");
        let printed = seqs(&before.into_iter().chain(rest).collect::<Vec<_>>());
        // At-least-once: it starts at the checkpoint, with nothing skipped.
        assert_eq!(printed[0], group_at + 1);
        assert!(printed.windows(2).all(|w| w[1] == w[0] + 1), "in order");
        let last = *printed.last().ok_or("nothing printed")?;
        let at = checkpoint(&repo, "billing", "orders")?;
        assert!(
            at <= last,
            "checkpoint {at} is past the last printed message {last}"
        );
        printed_through = last;
    }
    repo.assert_fsck_strict()
}

#[test]
fn a_closed_output_does_not_advance_past_undelivered_messages() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    publish(&repo, "orders", (0..5).map(|i| format!("{{\"n\":{i}}}")))?;
    let (mut child, stdout) = spawn(
        &repo,
        &[
            "messages", "consume", "billing", "orders", "--follow", "--json",
        ],
    )?;
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    for _ in 0..5 {
        line.clear();
        reader.read_line(&mut line)?;
    }
    wait_for("the checkpoint at seq 5", DEADLINE, || {
        checkpoint(&repo, "billing", "orders").is_ok_and(|s| s == 5)
    })?;
    // The reader goes away; then more messages come, which cannot be delivered.
    drop(reader);
    publish(&repo, "orders", (5..8).map(|i| format!("{{\"n\":{i}}}")))?;
    let status = wait_exit(&mut child)?;
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .ok_or("no stderr")?
        .read_to_string(&mut stderr)?;
    assert!(
        status.success(),
        "EPIPE ends output quietly: {status} {stderr}"
    );
    assert!(!stderr.contains("error"), "{stderr}");
    assert_eq!(checkpoint(&repo, "billing", "orders")?, 5);
    // Delivered for real the next time.
    let next = json_lines(&gatos_ok(
        &repo,
        &["messages", "consume", "billing", "orders", "--json"],
    )?)?;
    assert_eq!(seqs(&next), vec![6, 7, 8]);
    repo.assert_fsck_strict()
}

#[test]
fn manual_ack_leaves_the_checkpoint_to_ack_which_moves_it_forward_only() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    publish(&repo, "orders", (0..5).map(|i| format!("{{\"n\":{i}}}")))?;
    publish(&repo, "other", ["\"x\"".to_owned()])?;
    let u = ulids(&repo, "orders")?;
    let cp_ref = "refs/gatos/consumers/billing/orders";
    let page = json_lines(&gatos_ok(
        &repo,
        &[
            "messages", "consume", "billing", "orders", "--ack", "manual", "--json",
        ],
    )?)?;
    assert_eq!(seqs(&page), vec![1, 2, 3, 4, 5]);
    assert_eq!(repo.rev_parse(cp_ref)?, None, "consume did not move it");
    let ack = |ulid: &str| -> TestResult<serde_json::Value> {
        let out = gatos_ok(
            &repo,
            &["messages", "ack", "billing", "orders", ulid, "--json"],
        )?;
        Ok(json_lines(&out)?.remove(0))
    };
    let moved = ack(&u[2])?;
    assert_eq!(moved["moved"], true);
    assert_eq!(
        (moved["seq"].as_u64(), moved["checkpoint"]["seq"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(moved["checkpoint"]["ulid"], u[2].as_str());
    let at3 = repo.rev_parse(cp_ref)?;
    // Backwards, or again: a no-op that says so, exit 0.
    for earlier in [&u[0], &u[2]] {
        let same = ack(earlier)?;
        assert_eq!(same["moved"], false);
        assert_eq!(same["checkpoint"]["seq"], 3);
    }
    let human = gatos_ok(&repo, &["messages", "ack", "billing", "orders", &u[0]])?;
    assert!(human.contains("unchanged"), "{human}");
    assert_eq!(repo.rev_parse(cp_ref)?, at3);
    // Not a message of the topic: NotFound, nothing changes.
    let unknown = "01ARZ3NDEKTSV4RRFFQ69G5FAV".to_owned();
    for stranger in [unknown, ulids(&repo, "other")?.remove(0)] {
        let out = gatos(
            &repo,
            &["messages", "ack", "billing", "orders", &stranger, "--json"],
        )?;
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("error[NotFound]"));
        let err = json_lines(&String::from_utf8(out.stdout)?)?;
        assert_eq!(err[0]["error"]["code"], "NotFound");
        assert_eq!(repo.rev_parse(cp_ref)?, at3);
    }
    // A manual consume starts at the checkpoint: what was not acknowledged comes again.
    let again = json_lines(&gatos_ok(
        &repo,
        &[
            "messages", "consume", "billing", "orders", "--ack", "manual", "--json",
        ],
    )?)?;
    assert_eq!(seqs(&again), vec![4, 5]);
    assert_eq!(repo.rev_parse(cp_ref)?, at3);
    repo.assert_fsck_strict()
}

#[test]
fn racing_ack_processes_end_at_the_greater_message() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    publish(&repo, "orders", (0..10).map(|i| format!("{{\"n\":{i}}}")))?;
    let u = ulids(&repo, "orders")?;
    for round in 0..4 {
        let group = format!("g{round}");
        let (a, b) = if round % 2 == 0 { (2, 7) } else { (7, 2) };
        let racers: Vec<Child> = [a, b]
            .into_iter()
            .map(|i| {
                gatos_cmd(
                    &repo,
                    &["messages", "ack", &group, "orders", &u[i], "--json"],
                )
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
            })
            .collect::<Result<_, _>>()?;
        for r in racers {
            let out = r.wait_with_output()?;
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let cp = json_lines(&gatos_ok(
            &repo,
            &["messages", "checkpoint", "get", &group, "orders", "--json"],
        )?)?;
        assert_eq!(cp[0]["seq"], 8, "round {round}");
        assert_eq!(cp[0]["ulid"], u[7].as_str());
    }
    repo.assert_fsck_strict()
}

#[test]
fn follow_with_manual_ack_goes_on_from_what_it_printed_and_waits_for_acks() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    publish(&repo, "orders", (0..10).map(|i| format!("{{\"n\":{i}}}")))?;
    let u = ulids(&repo, "orders")?;
    let cp_ref = "refs/gatos/consumers/billing/orders";
    let f = Follower::start(
        &repo,
        &[
            "messages",
            "consume",
            "billing",
            "orders",
            "--follow",
            "--ack",
            "manual",
            "--max-unacked",
            "3",
            "--limit",
            "2",
            "--json",
        ],
    )?;
    assert_eq!(seqs(&f.rows(3)?), vec![1, 2, 3]);
    // Three printed, none acknowledged: it holds back (a bounded look, not a sync point).
    match f.lines.recv_timeout(Duration::from_secs(1)) {
        Err(RecvTimeoutError::Timeout) => {}
        other => return Err(format!("printed past --max-unacked: {other:?}").into()),
    }
    assert_eq!(repo.rev_parse(cp_ref)?, None);
    // Acks free room; it goes on from what it printed, not from the checkpoint.
    gatos_ok(&repo, &["messages", "ack", "billing", "orders", &u[1]])?;
    assert_eq!(seqs(&f.rows(2)?), vec![4, 5]);
    gatos_ok(&repo, &["messages", "ack", "billing", "orders", &u[4]])?;
    assert_eq!(seqs(&f.rows(3)?), vec![6, 7, 8]);
    f.signal("-TERM")?;
    let (status, rest) = f.finish()?;
    assert!(ended_by_term(status), "{status}");
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(
        checkpoint(&repo, "billing", "orders")?,
        5,
        "only acks moved it"
    );
    repo.assert_fsck_strict()
}

/// The library says a move back needs a forced move (no flag names in its messages); the
/// CLI names its own flag in a hint.
#[test]
fn moving_a_checkpoint_back_is_refused_with_a_hint_naming_the_flag() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    publish(&repo, "orders", (0..3).map(|i| format!("{{\"n\":{i}}}")))?;
    let u = ulids(&repo, "orders")?;
    let set = |ulid: &str, force: bool| {
        let mut args = vec!["messages", "checkpoint", "set", "billing", "orders", ulid];
        if force {
            args.push("--force");
        }
        gatos(&repo, &args)
    };
    assert!(set(&u[2], false)?.status.success());
    let out = set(&u[0], false)?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let first = err.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("error[NotFastForward]")
            && first.contains("needs a forced move")
            && !first.contains("--"),
        "{err}"
    );
    assert!(
        err.contains("hint: --force moves a checkpoint back"),
        "{err}"
    );
    assert_eq!(checkpoint(&repo, "billing", "orders")?, 3);
    assert!(set(&u[0], true)?.status.success());
    assert_eq!(checkpoint(&repo, "billing", "orders")?, 1);
    Ok(())
}

/// A topic setting of 0: the library names the field, the CLI its flags in a hint.
#[test]
fn a_zero_segment_limit_is_refused_naming_the_field_and_the_flag() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    let out = gatos(
        &repo,
        &["messages", "config", "orders", "--max-messages", "0"],
    )?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("error[InvalidInput]: max_messages must be at least 1"),
        "{err}"
    );
    assert!(
        err.contains("hint: --max-messages and --max-bytes take at least 1"),
        "{err}"
    );
    Ok(())
}
