//! Why did my job end? (issue #16 point 4, ADR 0029): the end reason — exit code, timeout
//! with its limit, cancel with who and why, a lost lease, a signal — in `jobs show` (human
//! and `--json`), on `gatos.jobs` events, in `git gatos audit` and in the export; and
//! `jobs logs --stderr`.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use gatos_testutil::{TempRepo, TestResult, wait_for};
use serde_json::{Value, json};

use crate::support::{enqueue, finish, gatos, gatos_cmd, gatos_ok, jobs_shared, json_lines};

fn init(repo: &TempRepo) -> TestResult {
    gatos_ok(repo, &["init"])?;
    Ok(())
}

fn show(repo: &TempRepo, id: &str) -> TestResult<Value> {
    Ok(json_lines(&gatos_ok(repo, &["jobs", "show", id, "--json"])?)?.remove(0))
}

/// The `ended` line of the human `jobs show`.
fn ended_line(repo: &TempRepo, id: &str) -> TestResult<String> {
    let text = gatos_ok(repo, &["jobs", "show", id])?;
    Ok(text
        .lines()
        .find(|l| l.starts_with("ended "))
        .ok_or_else(|| format!("no ended line in:\n{text}"))?
        .to_owned())
}

fn state(repo: &TempRepo, id: &str) -> String {
    show(repo, id)
        .map(|v| v["state"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn spawn_worker(repo: &TempRepo, args: &[&str]) -> TestResult<Child> {
    let allow = jobs_shared(repo).to_string_lossy().into_owned();
    let mut all = vec!["worker", "--json", "--sandbox-allow-write", &allow];
    all.extend_from_slice(args);
    Ok(gatos_cmd(repo, &all)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?)
}

fn drain(repo: &TempRepo) -> TestResult<Vec<Value>> {
    let out = finish(
        spawn_worker(repo, &["--drain", "--grace", "1s"])?,
        "the worker to drain",
        Duration::from_secs(120),
    )?;
    assert!(out.status.success(), "worker failed: {}", stderr(&out));
    json_lines(&String::from_utf8(out.stdout)?)
}

/// The events on `gatos.jobs` for one job.
fn events(repo: &TempRepo, id: &str) -> TestResult<Vec<Value>> {
    Ok(json_lines(&gatos_ok(
        repo,
        &["messages", "read", "gatos.jobs", "--json"],
    )?)?
    .into_iter()
    .map(|m| m["payload"].clone())
    .filter(|p| p["job"] == id)
    .collect())
}

fn event(repo: &TempRepo, id: &str, kind: &str) -> TestResult<Value> {
    events(repo, id)?
        .into_iter()
        .find(|e| e["event"] == kind)
        .ok_or_else(|| format!("no {kind} event for job {id}").into())
}

fn sqlite_json(db: &Path, sql: &str) -> TestResult<Vec<Value>> {
    let out = Command::new("sqlite3")
        .arg("-json")
        .arg(db)
        .arg(sql)
        .output()
        .map_err(|e| format!("the sqlite3 tool is needed (apt-get install sqlite3): {e}"))?;
    assert!(out.status.success(), "sqlite3: {}", stderr(&out));
    let text = String::from_utf8(out.stdout)?;
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    Ok(serde_json::from_str(&text)?)
}

#[test]
fn an_exit_code_a_timeout_and_a_signal_are_told_apart_everywhere() -> TestResult {
    let repo = TempRepo::new()?;
    init(&repo)?;
    let one = ["--max-attempts", "1"];
    let exit3 = enqueue(
        &repo,
        &[
            &one[..],
            &["--", "sh", "-c", "echo oops >&2; echo out; exit 3"],
        ]
        .concat(),
    )?;
    let timeout = enqueue(
        &repo,
        &[&one[..], &["--timeout", "1", "--", "sleep", "30"]].concat(),
    )?;
    let signal = enqueue(
        &repo,
        &[&one[..], &["--", "sh", "-c", "kill -9 $$"]].concat(),
    )?;
    let ok = enqueue(&repo, &[&one[..], &["--", "true"]].concat())?;
    let rows = drain(&repo)?;
    assert_eq!(rows.len(), 4, "{rows:?}");
    // The worker's own row says which signal, too.
    let killed = rows
        .iter()
        .find(|r| r["id"] == signal.as_str())
        .ok_or("no row")?;
    assert_eq!(killed["signal"], "SIGKILL", "{killed}");

    let expect = [
        (
            &exit3,
            "failed",
            json!({"kind": "exit", "code": 3}),
            "ended    exit 3",
        ),
        (
            &timeout,
            "failed",
            json!({"kind": "timeout", "limit_secs": 1}),
            "ended    timeout after 1 s (limit)",
        ),
        (
            &signal,
            "failed",
            json!({"kind": "signal", "signal": "SIGKILL"}),
            "ended    killed by SIGKILL",
        ),
        (
            &ok,
            "succeeded",
            json!({"kind": "exit", "code": 0}),
            "ended    exit 0",
        ),
    ];
    for (id, st, reason, line) in &expect {
        let row = show(&repo, id)?;
        assert_eq!(row["state"], *st, "{row}");
        assert_eq!(row["ended"], *reason, "{row}");
        assert_eq!(row["claim"]["ended"], *reason, "{row}");
        assert_eq!(ended_line(&repo, id)?, *line);
        let ev = event(&repo, id, st)?;
        assert_eq!(ev["reason"], *reason, "{ev}");
    }
    // The worker recorded the signal in the result (ADR 0029).
    let result = repo
        .rev_parse(&format!("refs/gatos/jobs/{signal}/result"))?
        .ok_or("no result")?;
    let doc: Value = serde_json::from_str(&repo.git(&[
        "cat-file",
        "blob",
        &format!("{result}:result.json"),
    ])?)?;
    assert_eq!(doc["signal"], "SIGKILL");
    assert_eq!(doc["exit_code"], Value::Null);
    // jobs watch says it on the ending event's line.
    let watched = gatos_ok(
        &repo,
        &[
            "jobs", "watch", "--job", &timeout, "--since", "1d", "--limit", "3",
        ],
    )?;
    let last = watched.lines().last().ok_or("no events watched")?;
    assert!(
        last.contains(" failed ") && last.ends_with(": timeout after 1 s (limit)"),
        "{watched}"
    );
    // An event of a job still running carries no reason.
    assert!(event(&repo, &ok, "claimed")?.get("reason").is_none());

    // The export: results.reason and attempts.outcome.
    let db = repo.root().join("ended.sqlite");
    let db_arg = db.to_string_lossy().into_owned();
    gatos_ok(&repo, &["export", "--format", "sqlite", "--out", &db_arg])?;
    for (id, _, reason, _) in &expect {
        let got = sqlite_json(
            &db,
            &format!("SELECT reason FROM results WHERE job = '{id}'"),
        )?;
        let stored: Value = serde_json::from_str(got[0]["reason"].as_str().ok_or("text")?)?;
        assert_eq!(stored, *reason);
    }
    let outcomes = sqlite_json(&db, "SELECT job, outcome FROM attempts")?;
    let outcome = |id: &str| {
        outcomes
            .iter()
            .find(|r| r["job"] == id)
            .map(|r| r["outcome"].clone())
    };
    assert_eq!(outcome(&exit3), Some(json!("failed")));
    assert_eq!(outcome(&timeout), Some(json!("timeout")));
    assert_eq!(outcome(&signal), Some(json!("signal")));
    assert_eq!(outcome(&ok), Some(json!("succeeded")));
    let verified = json_lines(&gatos_ok(
        &repo,
        &["export", "verify", &db_arg, "--repo", ".", "--json"],
    )?)?;
    assert_eq!(verified[0]["ok"], true);
    let manifest = sqlite_json(&db, "SELECT json FROM _gatos_manifest")?;
    let manifest: Value = serde_json::from_str(manifest[0]["json"].as_str().ok_or("text")?)?;
    assert_eq!(manifest["exporter"], "gatos-export/3");

    // jobs logs: --stderr and --stdout pick a stream; an attempt that does not exist is
    // NotFound; --stderr with --stream is a usage error.
    let out = gatos(&repo, &["jobs", "logs", &exit3, "--stderr"])?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "oops\n");
    assert!(out.stdout.is_empty());
    let out = gatos(&repo, &["jobs", "logs", &exit3, "--stdout"])?;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
    let out = gatos(&repo, &["jobs", "logs", &exit3, "--attempt", "9"])?;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("error[NotFound]"),
        "{}",
        stderr(&out)
    );
    let out = gatos(
        &repo,
        &["jobs", "logs", &exit3, "--stderr", "--stream", "stdout"],
    )?;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    repo.assert_fsck_strict()
}

#[test]
fn a_cancel_says_who_and_why_in_show_events_and_audit() -> TestResult {
    let repo = TempRepo::new()?;
    init(&repo)?;
    let pending = enqueue(&repo, &["--", "true"])?;
    gatos_ok(
        &repo,
        &["jobs", "cancel", &pending, "--reason", "wrong branch"],
    )?;
    let row = show(&repo, &pending)?;
    assert_eq!(row["ended"]["kind"], "cancelled", "{row}");
    assert_eq!(row["ended"]["reason"], "wrong branch");
    let who = row["ended"]["by"].as_str().ok_or("no by")?.to_owned();
    assert!(!who.is_empty());
    assert_eq!(
        ended_line(&repo, &pending)?,
        format!("ended    cancelled by {who}: \"wrong branch\"")
    );
    let ev = event(&repo, &pending, "cancelled")?;
    assert_eq!(ev["reason"], row["ended"], "{ev}");

    // The audit trail says who and why.
    let audit = json_lines(&gatos_ok(&repo, &["audit", "--json"])?)?;
    let rec = audit
        .iter()
        .find(|r| r["action"] == "jobs.cancel" && r["target"] == format!("job:{pending}"))
        .ok_or("no jobs.cancel record")?;
    assert_eq!(rec["actor"], who.as_str());
    assert_eq!(rec["after"]["reason"], "wrong branch");
    let human = gatos_ok(&repo, &["audit"])?;
    let line = human
        .lines()
        .find(|l| l.contains("jobs.cancel"))
        .ok_or("no human audit line")?;
    assert!(
        line.contains("wrong branch") && line.contains(&who),
        "{line}"
    );

    // A running job cancelled: its attempt ends cancelled too.
    let pidfile = jobs_shared(&repo).join("running.pid");
    let script = format!("echo $$ > {}; exec sleep 60", pidfile.display());
    let running = enqueue(&repo, &["--", "sh", "-c", &script])?;
    let worker = spawn_worker(&repo, &["--once", "--lease", "1s", "--grace", "1s"])?;
    wait_for("the job to run", Duration::from_secs(60), || {
        pidfile.exists() && state(&repo, &running) == "running"
    })?;
    gatos_ok(&repo, &["jobs", "cancel", &running, "--reason", "too slow"])?;
    let out = finish(
        worker,
        "the worker to stop the job",
        Duration::from_secs(60),
    )?;
    assert!(out.status.success(), "{}", stderr(&out));
    let row = show(&repo, &running)?;
    assert_eq!(row["state"], "cancelled");
    assert_eq!(row["ended"]["reason"], "too slow", "{row}");
    assert_eq!(row["claim"]["state"], "released");
    assert_eq!(row["claim"]["ended"], row["ended"], "{row}");
    repo.assert_fsck_strict()
}

#[test]
fn a_last_attempt_that_lost_its_lease_says_so() -> TestResult {
    let repo = TempRepo::new()?;
    init(&repo)?;
    let pidfile = jobs_shared(&repo).join("lost.pid");
    let script = format!("echo $$ > {}; exec sleep 60", pidfile.display());
    let id = enqueue(&repo, &["--max-attempts", "1", "--", "sh", "-c", &script])?;
    let mut worker = spawn_worker(&repo, &["--once", "--lease", "1s"])?;
    wait_for("the job to run", Duration::from_secs(60), || {
        pidfile.exists() && state(&repo, &id) == "running"
    })?;
    // The worker dies without a word: no heartbeat, no release.
    worker.kill()?;
    let _ = worker.wait();
    wait_for("the lease to lapse", Duration::from_secs(60), || {
        state(&repo, &id) == "failed"
    })?;
    let row = show(&repo, &id)?;
    assert_eq!(row["ended"]["kind"], "lease_lost", "{row}");
    assert!(row["ended"]["lease_until"].is_string(), "{row}");
    let line = ended_line(&repo, &id)?;
    assert!(
        line.starts_with("ended    lease lost: no heartbeat before its lease ended at "),
        "{line}"
    );
    // The next worker writes the result it is owed, and says why on gatos.jobs.
    drain(&repo)?;
    wait_for("the lost result", Duration::from_secs(30), || {
        repo.rev_parse(&format!("refs/gatos/jobs/{id}/result"))
            .is_ok_and(|r| r.is_some())
    })?;
    let row = show(&repo, &id)?;
    assert_eq!(row["ended"]["kind"], "lease_lost", "{row}");
    let ev = event(&repo, &id, "failed")?;
    assert_eq!(ev["reason"]["kind"], "lease_lost", "{ev}");
    repo.assert_fsck_strict()
}
