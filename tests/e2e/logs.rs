//! `git gatos jobs logs` against a real worker (issue #15): a running job's log is read
//! from the worker's spool before the job ends, redacted; `--follow` prints the rest and
//! ends when the result lands; the spool is private to the worker (0600, out of the job's
//! sandbox) and goes with the result; a crashed worker's spool is removed by the next
//! worker.

use std::io::{BufRead as _, BufReader, Read as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use gatos_testutil::{TempRepo, TestResult, wait_for};
use serde_json::Value;

use crate::support::{enqueue, gatos, gatos_cmd, gatos_ok, jobs_shared, json_lines};

const SECRET: &str = "tok-4f9a1c2e7b-live-spool";

fn worker(repo: &TempRepo, args: &[&str]) -> TestResult<Child> {
    let allow = jobs_shared(repo).to_string_lossy().into_owned();
    let mut all = vec![
        "worker",
        "--json",
        "--sandbox",
        "required",
        "--sandbox-allow-write",
        &allow,
        "--secret-env",
        "TOK",
    ];
    all.extend_from_slice(args);
    Ok(gatos_cmd(repo, &all)
        .env("TOK", SECRET)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?)
}

fn spool(repo: &TempRepo, id: &str) -> PathBuf {
    repo.git_dir().join("gatos").join("logs").join(id)
}

fn mode(p: &Path) -> TestResult<u32> {
    Ok(std::fs::metadata(p)?.permissions().mode() & 0o777)
}

fn logs_json(repo: &TempRepo, id: &str, stream: &str) -> TestResult<Vec<Value>> {
    json_lines(&gatos_ok(
        repo,
        &["jobs", "logs", id, "--stream", stream, "--json"],
    )?)
}

/// A job that prints a line with a secret and one on stderr, tries to read its own spool,
/// then waits for `go` in the shared directory before its last line.
fn waiting_job(repo: &TempRepo) -> TestResult<(String, PathBuf)> {
    let go = jobs_shared(repo).join("go");
    let script = format!(
        r#"echo "token is $T"
echo to-stderr >&2
cat "{logs}/$GATOS_JOB/$GATOS_ATTEMPT.stdout" && echo READ-SPOOL
ls "{logs}" && echo LISTED-SPOOLS
while [ ! -e "{go}" ]; do sleep 0.05; done
echo after"#,
        logs = repo.git_dir().join("gatos").join("logs").display(),
        go = go.display()
    );
    let id = enqueue(
        repo,
        &[
            "--no-checkout",
            "--env",
            "T=secret://TOK",
            "--",
            "sh",
            "-c",
            &script,
        ],
    )?;
    Ok((id, go))
}

#[test]
fn a_running_jobs_log_is_read_live_and_follow_ends_when_the_result_lands() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    let (id, go) = waiting_job(&repo)?;
    let mut w = worker(&repo, &["--once"])?;
    let dir = spool(&repo, &id);
    let waited = wait_for(
        "the job's first lines in the live log",
        Duration::from_secs(60),
        || {
            gatos_ok(&repo, &["jobs", "logs", &id, "--stream", "stdout"])
                .is_ok_and(|out| out.contains("token is"))
                && std::fs::read_to_string(dir.join("1.stderr"))
                    .is_ok_and(|e| e.contains("Permission denied"))
        },
    );
    if waited.is_err() {
        let _ = w.kill();
    }
    waited?;
    // Read before the job ends, redacted, from the spool; private to the worker.
    let chunks = logs_json(&repo, &id, "stdout")?;
    assert_eq!(chunks[0]["source"], "spool", "{chunks:?}");
    assert_eq!(chunks[0]["done"], false, "{chunks:?}");
    assert_eq!(chunks[0]["data"], "token is [REDACTED:TOK]\n", "{chunks:?}");
    let on_disk = std::fs::read_to_string(dir.join("1.stdout"))?;
    assert_eq!(on_disk, "token is [REDACTED:TOK]\n");
    assert_eq!(mode(&dir)?, 0o700);
    for f in ["1.json", "1.stdout", "1.stderr"] {
        assert_eq!(mode(&dir.join(f))?, 0o600, "{f}");
    }
    let err = std::fs::read_to_string(dir.join("1.stderr"))?;
    assert!(
        err.contains("to-stderr") && !err.contains(SECRET),
        "the job could not read its spool: {err}"
    );

    // --follow prints what is there, then the rest, and ends when the result lands.
    let mut follow = gatos_cmd(&repo, &["jobs", "logs", &id, "--follow"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = follow.stdout.take().ok_or("no stdout")?;
    let (tx, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = lines.recv_timeout(Duration::from_secs(60));
    std::fs::write(&go, "")?;
    let ended = wait_for(
        "the follower to end with the result",
        Duration::from_secs(60),
        || matches!(follow.try_wait(), Ok(Some(_))),
    );
    if ended.is_err() {
        let _ = follow.kill();
        let _ = w.kill();
    }
    ended?;
    let status = follow.wait()?;
    let _ = reader.join();
    let mut rest: Vec<String> = lines.try_iter().collect();
    rest.insert(0, first?);
    let mut follow_err = String::new();
    follow
        .stderr
        .take()
        .ok_or("no stderr")?
        .read_to_string(&mut follow_err)?;
    assert!(status.success(), "{follow_err}");
    assert_eq!(rest, ["token is [REDACTED:TOK]", "after"], "{follow_err}");
    assert!(
        follow_err.contains("to-stderr") && !follow_err.contains(SECRET),
        "{follow_err}"
    );
    assert!(!follow_err.contains("READ-SPOOL") && !rest.iter().any(|l| l.contains("READ-SPOOL")));
    assert!(!rest.iter().any(|l| l.contains("LISTED-SPOOLS")));

    wait_for("the worker to finish", Duration::from_secs(60), || {
        matches!(w.try_wait(), Ok(Some(_)))
    })?;
    assert!(w.wait()?.success());
    assert!(
        !dir.exists(),
        "the spool goes once the result holds the log"
    );
    let chunks = logs_json(&repo, &id, "stdout")?;
    assert_eq!(chunks.len(), 1, "{chunks:?}");
    assert_eq!(chunks[0]["source"], "result");
    assert_eq!(chunks[0]["done"], true);
    assert_eq!(chunks[0]["data"], "token is [REDACTED:TOK]\nafter\n");
    let result = gatos_ok(&repo, &["jobs", "show", &id, "--json"])?;
    assert!(result.contains("\"succeeded\""), "{result}");
    repo.assert_fsck_strict()
}

#[test]
fn jobs_logs_says_what_it_cannot_show() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    let missing = gatos(&repo, &["jobs", "logs", "01J00000000000000000000000"])?;
    let why = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(1), "{why}");
    assert!(why.contains("error[NotFound]"), "{why}");
    let id = enqueue(&repo, &["--no-checkout", "--", "true"])?;
    let pending = gatos(&repo, &["jobs", "logs", &id, "--json"])?;
    let why = String::from_utf8_lossy(&pending.stderr);
    assert_eq!(pending.status.code(), Some(1), "{why}");
    assert!(
        why.contains("error[Unavailable]") && why.contains("--follow"),
        "{why}"
    );
    let body = json_lines(&String::from_utf8(pending.stdout)?)?;
    assert_eq!(body[0]["error"]["code"], "Unavailable");
    let bad = gatos(&repo, &["jobs", "logs", &id, "--stream", "stdin"])?;
    assert_eq!(bad.status.code(), Some(2));
    Ok(())
}

#[test]
fn a_crashed_workers_spool_is_removed_by_the_next_worker() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    let (id, _go) = waiting_job(&repo)?;
    let mut w = worker(&repo, &["--once"])?;
    let dir = spool(&repo, &id);
    let started = wait_for("the job's first line", Duration::from_secs(60), || {
        std::fs::read_to_string(dir.join("1.stdout")).is_ok_and(|s| s.contains("token is"))
    });
    w.kill()?; // SIGKILL: the worker cannot remove its spool
    let _ = w.wait();
    started?;
    assert!(dir.join("1.json").exists(), "a crash leaves the spool");
    // Its writer is gone: what it spooled is all there is, and it says so.
    let chunks = logs_json(&repo, &id, "stdout")?;
    assert_eq!(chunks[0]["source"], "spool", "{chunks:?}");
    assert_eq!(chunks[0]["done"], true, "{chunks:?}");
    // The next worker (its lease still holds the job: nothing to claim) sweeps it.
    let out = gatos(&repo, &["worker", "--once", "--sandbox", "required"])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.exists(), "the crashed worker's spool is gone");
    let gone = gatos(&repo, &["jobs", "logs", &id])?;
    let why = String::from_utf8_lossy(&gone.stderr);
    assert!(why.contains("error[Unavailable]"), "{why}");
    repo.assert_fsck_strict()
}

#[test]
fn past_the_log_cap_the_spool_says_so_and_the_result_gives_the_count() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    let go = jobs_shared(&repo).join("go");
    let script = format!(
        r#"printf '0123456789%.0s' 1 2 3 4 5 6 7 8 9 10
while [ ! -e "{go}" ]; do sleep 0.05; done"#,
        go = go.display()
    );
    let id = enqueue(&repo, &["--no-checkout", "--", "sh", "-c", &script])?;
    let mut w = worker(&repo, &["--once", "--log-cap", "25"])?;
    let file = spool(&repo, &id).join("1.stdout");
    let capped = wait_for(
        "the spool to reach the cap",
        Duration::from_secs(60),
        || std::fs::read_to_string(&file).is_ok_and(|s| s.contains("truncated")),
    );
    if capped.is_err() {
        let _ = w.kill();
    }
    capped?;
    let on_disk = std::fs::read_to_string(&file)?;
    assert_eq!(
        on_disk,
        "0123456789012345678901234\n[gatos: output truncated: 25 bytes kept so far; the result gives the total]\n"
    );
    let live = logs_json(&repo, &id, "stdout")?;
    assert_eq!(live[0]["data"], "0123456789012345678901234", "{live:?}");
    assert_eq!(live[0]["truncated"], true, "{live:?}");
    let human = gatos(&repo, &["jobs", "logs", &id, "--stream", "stdout"])?;
    assert!(
        String::from_utf8_lossy(&human.stderr).contains("--log-cap"),
        "a hint says the spool stopped at the cap"
    );
    std::fs::write(&go, "")?;
    wait_for("the worker to finish", Duration::from_secs(60), || {
        matches!(w.try_wait(), Ok(Some(_)))
    })?;
    // Read on from the end of the spool: the result's note follows, and nothing else.
    let rest = json_lines(&gatos_ok(
        &repo,
        &["jobs", "logs", &id, "--stream", "stdout", "--json"],
    )?)?;
    assert_eq!(
        rest[0]["data"],
        "0123456789012345678901234\n[gatos: output truncated: 25 of 100 bytes kept]\n"
    );
    repo.assert_fsck_strict()
}

#[test]
fn a_worker_refuses_a_tmpdir_inside_the_git_directory() -> TestResult {
    // Attempt directories are made in TMPDIR and granted to their jobs whole: inside the
    // git directory one would open part of it (the live logs sit next to it).
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    let tmp = repo.git_dir().join("tmp");
    std::fs::create_dir(&tmp)?;
    let out = gatos_cmd(&repo, &["worker", "--once"])
        .env("TMPDIR", &tmp)
        .stdin(Stdio::null())
        .output()?;
    let why = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{why}");
    assert!(
        why.contains("error[InvalidInput]") && why.contains("TMPDIR"),
        "{why}"
    );
    Ok(())
}
