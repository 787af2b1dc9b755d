//! "Why isn't my job running?" with real binaries: what `jobs show` lists for a pending
//! job, `jobs why` against a worker's options, a worker's start-up line, and what a
//! draining worker says when it finds nothing (or waits for a `run_after`).

use std::process::{Child, Output, Stdio};
use std::time::Duration;

use gatos_testutil::{TempRepo, TestResult, wait_for};
use serde_json::Value;

use crate::support::{enqueue, gatos, gatos_cmd, gatos_ok, json_lines};

fn init(repo: &TempRepo) -> TestResult {
    gatos_ok(repo, &["init", "--json"])?;
    Ok(())
}

fn show(repo: &TempRepo, id: &str) -> TestResult<Value> {
    Ok(json_lines(&gatos_ok(repo, &["jobs", "show", id, "--json"])?)?.remove(0))
}

fn condition<'v>(row: &'v Value, member: &str, kind: &str) -> Option<&'v Value> {
    row[member].as_array()?.iter().find(|c| c["kind"] == kind)
}

fn kinds(row: &Value, member: &str) -> Vec<String> {
    row[member]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c["kind"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs a worker to its end (with a deadline); returns its output.
fn worker(repo: &TempRepo, args: &[&str]) -> TestResult<Output> {
    let mut all = vec!["worker", "--sandbox", "off"];
    all.extend_from_slice(args);
    let mut child: Child = gatos_cmd(repo, &all)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut done = false;
    wait_for("the worker to exit", Duration::from_secs(120), || {
        done = matches!(child.try_wait(), Ok(Some(_)));
        done
    })
    .inspect_err(|_| {
        let _ = child.kill();
    })?;
    let out = child.wait_with_output()?;
    assert!(
        out.status.success(),
        "worker failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn show_lists_what_a_pending_job_waits_for() -> TestResult {
    let repo = TempRepo::new()?;
    init(&repo)?;
    let id = enqueue(
        &repo,
        &[
            "--queue",
            "build",
            "--cap",
            "gpu",
            "--run-after",
            "10m",
            "--env",
            "TOKEN=secret://API_TOKEN",
            "--no-checkout",
            "--",
            "true",
        ],
    )?;
    gatos_ok(&repo, &["jobs", "config", "build", "--max-pending", "5"])?;
    let row = show(&repo, &id)?;
    assert_eq!(
        kinds(&row, "waiting"),
        [
            "queue",
            "capabilities",
            "secrets",
            "enqueuer",
            "run_after",
            "admission"
        ],
        "{row}"
    );
    // What depends on the worker is left open; time and trust are decided here.
    for k in ["queue", "capabilities", "secrets"] {
        assert_eq!(
            condition(&row, "waiting", k).map(|c| &c["blocks"]),
            Some(&Value::Null),
            "{k}"
        );
    }
    let q = condition(&row, "waiting", "queue").ok_or("queue")?;
    assert_eq!(q["values"], serde_json::json!(["build"]));
    let caps = condition(&row, "waiting", "capabilities").ok_or("caps")?;
    assert!(caps["detail"].as_str().unwrap_or("").contains("--cap gpu"));
    let secrets = condition(&row, "waiting", "secrets").ok_or("secrets")?;
    assert_eq!(secrets["values"], serde_json::json!(["API_TOKEN"]));
    let ra = condition(&row, "waiting", "run_after").ok_or("run_after")?;
    assert_eq!(ra["blocks"], true);
    assert_eq!(ra["until"], row["manifest"]["run_after"]);
    assert!(
        ra["detail"].as_str().unwrap_or("").ends_with("(in 10m)"),
        "{ra}"
    );
    let en = condition(&row, "waiting", "enqueuer").ok_or("enqueuer")?;
    assert_eq!(en["blocks"], false);
    assert!(
        en["detail"]
            .as_str()
            .unwrap_or("")
            .contains("a key this node trusts")
    );
    let adm = condition(&row, "waiting", "admission").ok_or("admission")?;
    assert_eq!(adm["blocks"], false);
    assert!(
        adm["detail"]
            .as_str()
            .unwrap_or("")
            .contains("1 of at most 5 pending")
    );
    // The human report: one line per condition.
    let human = gatos_ok(&repo, &["jobs", "show", &id])?;
    assert!(
        human.lines().any(|l| l.starts_with("waiting  run_after")
            && l.contains("(in 10m)")
            && l.ends_with("[blocks]")),
        "{human}"
    );
    assert!(
        human
            .lines()
            .any(|l| l.starts_with("waiting  capabilities gpu")
                && l.ends_with("[depends on the worker]")),
        "{human}"
    );

    // A job that is not pending waits for nothing: no member at all (as before).
    let done = enqueue(&repo, &["--no-checkout", "--", "true"])?;
    worker(&repo, &["--drain", "-q"])?;
    let row = show(&repo, &done)?;
    assert_eq!(row["state"], "succeeded");
    assert!(row.get("waiting").is_none(), "{row}");

    // A job enqueued on another node, by a key this node does not trust.
    let other = TempRepo::new()?;
    init(&other)?;
    let foreign = enqueue(&other, &["--no-checkout", "--", "true"])?;
    repo.git(&[
        "fetch",
        "-q",
        &other.path().to_string_lossy(),
        "+refs/gatos/jobs/*:refs/gatos/jobs/*",
    ])?;
    let row = show(&repo, &foreign)?;
    let en = condition(&row, "waiting", "enqueuer").ok_or("enqueuer")?;
    assert_eq!(en["blocks"], true, "{row}");
    assert!(
        en["detail"]
            .as_str()
            .unwrap_or("")
            .contains("a key this node does not trust (git gatos keys trust ed25519:"),
        "{en}"
    );
    Ok(())
}

#[test]
fn why_checks_a_pending_job_against_a_worker_s_options() -> TestResult {
    let repo = TempRepo::new()?;
    init(&repo)?;
    let id = enqueue(
        &repo,
        &[
            "--queue",
            "build",
            "--cap",
            "gpu",
            "--env",
            "TOKEN=secret://API_TOKEN",
            "--no-checkout",
            "--",
            "true",
        ],
    )?;

    // A worker's defaults: queue default, no capabilities. Exit 0: the report is the answer.
    let out = gatos(&repo, &["jobs", "why", &id])?;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let human = text(&out.stdout);
    let lines: Vec<&str> = human.lines().collect();
    assert_eq!(
        lines,
        [
            "blocks   queue        build: this worker takes default",
            "blocks   capabilities gpu: this worker lacks gpu",
            "unknown  secrets      secret://API_TOKEN: not checked (give the worker's --secret NAME, --secrets FILE, --secrets-dir DIR or --secret-env NAME)",
        ],
        "{human}"
    );
    let r = json_lines(&gatos_ok(&repo, &["jobs", "why", &id, "--json"])?)?.remove(0);
    assert_eq!(r["claimable"], false);
    assert_eq!(r["queues"], serde_json::json!(["default"]));
    assert_eq!(
        condition(&r, "conditions", "queue").map(|c| &c["blocks"]),
        Some(&Value::Bool(true))
    );

    // A secret the worker's file does not hold blocks; only the names are read.
    let secrets = repo.root().join("why-secrets");
    std::fs::write(&secrets, "OTHER=x\n")?;
    let out = gatos_ok(
        &repo,
        &[
            "jobs",
            "why",
            &id,
            "--queue",
            "build",
            "--cap",
            "gpu",
            "--secrets",
            &secrets.to_string_lossy(),
        ],
    )?;
    assert_eq!(
        out.trim(),
        "blocks   secrets      secret://API_TOKEN: this worker cannot resolve API_TOKEN"
    );

    // Matching options: nothing blocks.
    let out = gatos_ok(
        &repo,
        &[
            "jobs",
            "why",
            &id,
            "--queue",
            "build",
            "--cap",
            "gpu",
            "--secret",
            "API_TOKEN",
        ],
    )?;
    assert_eq!(
        out.trim(),
        "nothing blocks: a worker with these options would claim it now"
    );
    let r = json_lines(&gatos_ok(
        &repo,
        &[
            "jobs",
            "why",
            &id,
            "--queue",
            "build",
            "--cap",
            "gpu",
            "--secret",
            "API_TOKEN",
            "--json",
        ],
    )?)?
    .remove(0);
    assert_eq!(r["claimable"], true);
    assert!(
        r["conditions"]
            .as_array()
            .is_some_and(|a| a.iter().all(|c| c["blocks"] == false)),
        "{r}"
    );

    // A run_after in the future blocks even a fitting worker.
    let later = enqueue(&repo, &["--run-after", "1h", "--no-checkout", "--", "true"])?;
    let out = gatos_ok(&repo, &["jobs", "why", &later])?;
    assert!(
        out.trim().starts_with("blocks   run_after") && out.trim().ends_with("(in 1h)"),
        "{out}"
    );

    // A job that is not pending: said so, exit 0.
    let done = enqueue(&repo, &["--no-checkout", "--", "true"])?;
    worker(&repo, &["--drain", "-q"])?;
    let out = gatos_ok(&repo, &["jobs", "why", &done])?;
    assert_eq!(
        out.trim(),
        format!(
            "job {done} is succeeded: the job has ended; nothing waits (git gatos jobs show {done})"
        )
    );
    let r = json_lines(&gatos_ok(&repo, &["jobs", "why", &done, "--json"])?)?.remove(0);
    assert_eq!(
        (r["state"].as_str(), r["claimable"].as_bool()),
        (Some("succeeded"), Some(false))
    );
    assert_eq!(r["conditions"], serde_json::json!([]));

    // An unknown job: NotFound, exit 1.
    let out = gatos(&repo, &["jobs", "why", "01KBQ0000000000000000NAN01"])?;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("error[NotFound]"),
        "{}",
        text(&out.stderr)
    );
    Ok(())
}

#[test]
fn a_worker_says_it_started_and_a_drain_that_finds_nothing_says_what_is_pending_elsewhere()
-> TestResult {
    let repo = TempRepo::new()?;
    init(&repo)?;
    for _ in 0..3 {
        enqueue(&repo, &["--queue", "build", "--no-checkout", "--", "true"])?;
    }
    for _ in 0..2 {
        enqueue(&repo, &["--cap", "gpu", "--no-checkout", "--", "true"])?;
    }
    let out = worker(&repo, &["--drain", "--id", "w1"])?;
    let err = text(&out.stderr);
    assert!(
        err.lines().any(|l| l.starts_with(
            "worker w1 started: queues default; capabilities none; concurrency 1; key ed25519:"
        ) && l.ends_with("; sandbox off; drains, then exits")),
        "{err}"
    );
    assert!(
        err.lines().any(|l| l
            == "nothing more to claim: 3 pending in queue build; this worker takes default; 2 pending jobs need capability gpu"),
        "{err}"
    );
    assert_eq!(text(&out.stdout), "", "nothing ran");

    // --json keeps stdout machine-clean: the lines stay on stderr.
    let out = worker(
        &repo,
        &["--drain", "--json", "--queue", "other", "--cap", "x"],
    )?;
    assert_eq!(text(&out.stdout), "");
    let err = text(&out.stderr);
    assert!(
        err.contains("started: queues other; capabilities x; concurrency 1"),
        "{err}"
    );
    assert!(
        err.contains(
            "nothing more to claim: 3 pending in queue build, 2 pending in queue default; this worker takes other"
        ),
        "{err}"
    );

    // -q: neither line.
    let out = worker(&repo, &["--drain", "-q"])?;
    let err = text(&out.stderr);
    assert!(
        !err.contains("started") && !err.contains("nothing more"),
        "{err}"
    );

    // Nothing pending at all in an empty repository: said so.
    let empty = TempRepo::new()?;
    init(&empty)?;
    let out = worker(&empty, &["--drain"])?;
    assert!(
        text(&out.stderr).contains("nothing to claim: no job is pending in default"),
        "{}",
        text(&out.stderr)
    );
    Ok(())
}

#[test]
fn a_drain_says_what_it_waits_for_and_what_it_does_not_wait_for() -> TestResult {
    let repo = TempRepo::new()?;
    init(&repo)?;
    let soon = enqueue(&repo, &["--run-after", "2s", "--no-checkout", "--", "true"])?;
    let out = worker(&repo, &["--drain", "--json"])?;
    let err = text(&out.stderr);
    assert!(
        err.lines().any(
            |l| l.starts_with(&format!("waiting for job {soon}: run_after "))
                && l.ends_with("; --drain waits at most 10m for a job")
        ),
        "{err}"
    );
    let rows = json_lines(&text(&out.stdout))?;
    assert_eq!(rows.len(), 1, "the job ran once claimable: {rows:?}");
    assert_eq!(rows[0]["id"], soon.as_str());

    let late = enqueue(&repo, &["--run-after", "2h", "--no-checkout", "--", "true"])?;
    let out = worker(&repo, &["--drain", "--json"])?;
    assert_eq!(text(&out.stdout), "", "it does not wait two hours");
    let err = text(&out.stderr);
    assert!(
        err.lines().any(
            |l| l.starts_with("nothing more to claim: 1 job becomes claimable from ")
                && l.ends_with("(in 2h); --drain waits at most 10m")
        ),
        "{err}"
    );
    assert_eq!(show(&repo, &late)?["state"], "pending");
    Ok(())
}

#[test]
fn a_failed_attempt_s_backoff_is_listed_and_a_short_one_is_waited_for() -> TestResult {
    let repo = TempRepo::new()?;
    init(&repo)?;
    // A long backoff: the drain leaves the job and says when it comes back.
    gatos_ok(
        &repo,
        &[
            "jobs",
            "config",
            "slow",
            "--backoff-base",
            "2h",
            "--backoff-max",
            "2h",
        ],
    )?;
    let id = enqueue(
        &repo,
        &[
            "--queue",
            "slow",
            "--max-attempts",
            "2",
            "--no-checkout",
            "--",
            "false",
        ],
    )?;
    let out = worker(&repo, &["--drain", "--json", "--queue", "slow"])?;
    assert_eq!(json_lines(&text(&out.stdout))?.len(), 1, "one attempt");
    let err = text(&out.stderr);
    assert!(
        err.contains("nothing more to claim: 1 job becomes claimable from "),
        "{err}"
    );
    let row = show(&repo, &id)?;
    assert_eq!(row["state"], "pending");
    let b = condition(&row, "waiting", "backoff").ok_or("backoff")?;
    assert_eq!(b["blocks"], true, "{row}");
    assert!(b["until"].is_string());
    let detail = b["detail"].as_str().unwrap_or("");
    assert!(
        detail.starts_with("attempt 1 ended (failed); retried from ") && detail.ends_with("h)"),
        "{detail}"
    );
    let why = gatos_ok(&repo, &["jobs", "why", &id, "--queue", "slow"])?;
    assert!(
        why.trim()
            .starts_with("blocks   backoff      attempt 1 ended (failed)"),
        "{why}"
    );

    // The default backoff (about a second): a drain waits for it and says so.
    let quick = enqueue(
        &repo,
        &["--max-attempts", "2", "--no-checkout", "--", "false"],
    )?;
    let out = worker(&repo, &["--drain", "--json"])?;
    assert_eq!(
        json_lines(&text(&out.stdout))?.len(),
        2,
        "both attempts ran"
    );
    let err = text(&out.stderr);
    assert!(
        err.lines().any(|l| l.starts_with(&format!(
            "waiting for job {quick}: backoff attempt 1 ended (failed); retried from "
        ))),
        "{err}"
    );
    Ok(())
}

#[test]
fn why_of_a_running_job_says_who_runs_it_and_that_nothing_waits() -> TestResult {
    let repo = TempRepo::new()?;
    init(&repo)?;
    let id = enqueue(&repo, &["--no-checkout", "--", "sleep", "60"])?;
    let mut child = gatos_cmd(
        &repo,
        &[
            "worker",
            "--sandbox",
            "off",
            "--drain",
            "-q",
            "--id",
            "w7",
            "--lease",
            "3s",
        ],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()?;
    let running = wait_for("the job to run", Duration::from_secs(60), || {
        show(&repo, &id).is_ok_and(|r| r["state"] == "running")
    });
    let answer = running.and_then(|()| gatos_ok(&repo, &["jobs", "why", &id]));
    // Stop the job whatever the answer, then wait for the worker to end.
    let _ = gatos(&repo, &["jobs", "cancel", &id]);
    let ended = wait_for("the worker to exit", Duration::from_secs(60), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if ended.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let answer = answer?;
    ended?;
    assert!(
        answer.starts_with(&format!(
            "job {id} is running: attempt 1 by w7, lease until "
        )) && answer.trim_end().ends_with("; nothing waits"),
        "{answer}"
    );
    Ok(())
}
