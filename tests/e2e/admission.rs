//! Queue admission (ADR 0027) with real binaries: `jobs config --max-pending`, `QueueFull`
//! from `jobs enqueue` and `manifests run`, racing enqueuers, the audit record.

use std::process::{Output, Stdio};

use gatos_testutil::{TempRepo, TestResult};
use serde_json::Value;

use crate::support::{enqueue, gatos, gatos_cmd, gatos_ok, jobs_shared, json_lines};

fn init(repo: &TempRepo) -> TestResult {
    gatos_ok(repo, &["init", "--json"])?;
    Ok(())
}

/// The job ids that have a `job` ref.
fn job_refs(repo: &TempRepo) -> TestResult<Vec<String>> {
    Ok(repo
        .refs("refs/gatos/jobs/")?
        .into_iter()
        .filter_map(|(name, _)| name.strip_suffix("/job").map(str::to_owned))
        .collect())
}

fn limit(repo: &TempRepo, queue: &str, n: &str) -> TestResult<Value> {
    let out = gatos_ok(
        repo,
        &["jobs", "config", queue, "--max-pending", n, "--json"],
    )?;
    Ok(json_lines(&out)?.remove(0))
}

fn queue_row(repo: &TempRepo, queue: &str) -> TestResult<Value> {
    Ok(json_lines(&gatos_ok(repo, &["jobs", "config", queue, "--json"])?)?.remove(0))
}

/// `jobs enqueue --json` that is expected to be refused: returns the error object.
fn refused(out: &Output) -> TestResult<Value> {
    assert_eq!(
        out.status.code(),
        Some(4),
        "QueueFull exits 4: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error[QueueFull]: queue '"), "{stderr}");
    let mut lines = json_lines(&String::from_utf8(out.stdout.clone())?)?;
    assert_eq!(lines.len(), 1, "one error line");
    Ok(lines.remove(0)["error"].take())
}

fn loose_objects(repo: &TempRepo) -> TestResult<String> {
    repo.git(&["count-objects", "-v"])
}

fn admission_records(repo: &TempRepo) -> TestResult<Vec<Value>> {
    Ok(json_lines(&gatos_ok(repo, &["audit", "--json"])?)?
        .into_iter()
        .filter(|r| r["action"] == "jobs.admission.refused")
        .collect())
}

#[test]
fn an_enqueue_over_the_limit_is_queue_full_writes_nothing_and_a_claim_frees_a_slot() -> TestResult {
    let repo = TempRepo::new()?;
    init(&repo)?;
    let row = limit(&repo, "build", "2")?;
    assert_eq!(
        (row["max_pending"].as_u64(), row["pending"].as_u64()),
        (Some(2), Some(0))
    );
    let first = enqueue(&repo, &["--queue", "build", "--no-checkout", "--", "true"])?;
    enqueue(&repo, &["--queue", "build", "--no-checkout", "--", "true"])?;
    // Another queue is not limited by this one's limit.
    enqueue(&repo, &["--no-checkout", "--", "true"])?;
    assert_eq!(job_refs(&repo)?.len(), 3);

    let args = [
        "jobs",
        "enqueue",
        "--json",
        "--queue",
        "build",
        "--no-checkout",
        "--",
        "true",
    ];
    let e = refused(&gatos(&repo, &args)?)?;
    assert_eq!(e["code"], "QueueFull");
    assert_eq!(e["status"], 429);
    assert_eq!(e["queue"], "build");
    assert_eq!(e["max_pending"], 2);
    assert_eq!(e["pending"], 2);
    // No claim was ever seen in this queue: the documented default hint.
    assert_eq!(e["retry_after_seconds"], 30);
    assert_eq!(
        job_refs(&repo)?.len(),
        3,
        "a refused enqueue makes no job ref"
    );
    // A second refusal in the same minute is not audited again, so it writes nothing at
    // all: not even an object.
    let before = loose_objects(&repo)?;
    refused(&gatos(&repo, &args)?)?;
    assert_eq!(loose_objects(&repo)?, before, "a refusal writes no object");
    assert_eq!(job_refs(&repo)?.len(), 3);
    // Without --json: the human error on stderr, the same exit status.
    let human: Vec<&str> = args[..2].iter().chain(&args[3..]).copied().collect();
    let out = gatos(&repo, &human)?;
    assert_eq!(out.status.code(), Some(4));
    assert!(out.stdout.is_empty());

    // A worker claims one (and runs it): a slot opens, and only one.
    let allow = jobs_shared(&repo).to_string_lossy().into_owned();
    let worker = gatos_cmd(
        &repo,
        &[
            "worker",
            "--json",
            "--once",
            "--queue",
            "build",
            "--sandbox-allow-write",
            &allow,
        ],
    )
    .stdin(Stdio::null())
    .output()?;
    assert!(
        worker.status.success(),
        "{}",
        String::from_utf8_lossy(&worker.stderr)
    );
    let ran = json_lines(&String::from_utf8(worker.stdout)?)?;
    assert_eq!(ran[0]["id"], first.as_str());
    assert_eq!(queue_row(&repo, "build")?["pending"], 1);
    enqueue(&repo, &["--queue", "build", "--no-checkout", "--", "true"])?;
    let e = refused(&gatos(&repo, &args)?)?;
    assert_eq!(e["pending"], 2);
    // The queue has seen a claim now: the hint comes from its claim rate, within bounds.
    let hint = e["retry_after_seconds"].as_u64().unwrap();
    assert!((1..=600).contains(&hint), "{hint}");

    // Lowering the limit below the depth refuses with the depth as it is.
    limit(&repo, "build", "1")?;
    let e = refused(&gatos(&repo, &args)?)?;
    assert_eq!(
        (e["pending"].as_u64(), e["max_pending"].as_u64()),
        (Some(2), Some(1))
    );
    // `none` (like 0) removes the limit.
    let row = limit(&repo, "build", "none")?;
    assert!(row["max_pending"].is_null(), "{row}");
    enqueue(&repo, &["--queue", "build", "--no-checkout", "--", "true"])?;
    limit(&repo, "build", "5")?;
    assert!(limit(&repo, "build", "0")?["max_pending"].is_null());

    // `jobs config` without a queue lists every queue with its depth.
    let all = json_lines(&gatos_ok(&repo, &["jobs", "config", "--json"])?)?;
    let names: Vec<&str> = all.iter().filter_map(|r| r["queue"].as_str()).collect();
    assert_eq!(names, ["build", "default"]);
    assert_eq!(all[0]["pending"], 3);
    assert_eq!(all[1]["pending"], 1);
    repo.assert_fsck_strict()?;
    Ok(())
}

#[test]
fn manifests_run_obeys_the_limit() -> TestResult {
    let repo = TempRepo::new()?;
    init(&repo)?;
    let file = repo.root().join("nightly.json");
    std::fs::write(&file, r#"{"command": ["true"], "queue": "nightly"}"#)?;
    gatos_ok(
        &repo,
        &["manifests", "put", "nightly", &file.to_string_lossy()],
    )?;
    limit(&repo, "nightly", "1")?;
    gatos_ok(&repo, &["manifests", "run", "nightly", "--json"])?;
    let e = refused(&gatos(&repo, &["manifests", "run", "nightly", "--json"])?)?;
    assert_eq!(e["code"], "QueueFull");
    assert_eq!(e["queue"], "nightly");
    assert_eq!(
        (e["pending"].as_u64(), e["max_pending"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(job_refs(&repo)?.len(), 1);
    repo.assert_fsck_strict()?;
    Ok(())
}

#[test]
fn processes_racing_to_enqueue_with_a_limit_of_one_land_exactly_one_job() -> TestResult {
    const RACERS: usize = 8;
    let repo = TempRepo::new()?;
    init(&repo)?;
    for round in ["race-a", "race-b", "race-c"] {
        limit(&repo, round, "1")?;
        let children = (0..RACERS)
            .map(|_| {
                gatos_cmd(
                    &repo,
                    &[
                        "jobs",
                        "enqueue",
                        "--json",
                        "--queue",
                        round,
                        "--no-checkout",
                        "--",
                        "true",
                    ],
                )
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let outs = children
            .into_iter()
            .map(std::process::Child::wait_with_output)
            .collect::<Result<Vec<_>, _>>()?;
        let landed = outs.iter().filter(|o| o.status.success()).count();
        for o in outs.iter().filter(|o| !o.status.success()) {
            assert_eq!(refused(o)?["code"], "QueueFull");
        }
        assert_eq!(landed, 1, "round {round}: exactly one enqueue lands");
        assert_eq!(queue_row(&repo, round)?["pending"], 1);
    }
    assert_eq!(job_refs(&repo)?.len(), 3);
    repo.assert_fsck_strict()?;
    Ok(())
}

#[test]
fn refusals_are_audited_once_per_queue_per_minute() -> TestResult {
    let repo = TempRepo::new()?;
    init(&repo)?;
    limit(&repo, "build", "1")?;
    limit(&repo, "deploy", "1")?;
    // Each process's clock starts at the time given (and runs on in real time), so these
    // refusals fall in the minute 12:00 and the later ones in 12:02.
    let at = |repo: &TempRepo, time: &str, queue: &str| -> TestResult<Output> {
        Ok(gatos_cmd(
            repo,
            &[
                "jobs",
                "enqueue",
                "--json",
                "--queue",
                queue,
                "--no-checkout",
                "--",
                "true",
            ],
        )
        .env("GATOS_TEST_CLOCK", time)
        .stdin(Stdio::null())
        .output()?)
    };
    for queue in ["build", "deploy"] {
        assert!(at(&repo, "2030-01-01T12:00:00Z", queue)?.status.success());
    }
    for _ in 0..5 {
        refused(&at(&repo, "2030-01-01T12:00:00Z", "build")?)?;
    }
    refused(&at(&repo, "2030-01-01T12:00:00Z", "deploy")?)?;
    let records = admission_records(&repo)?;
    assert_eq!(records.len(), 2, "one per queue in the minute: {records:?}");
    let build = records
        .iter()
        .find(|r| r["target"] == "queue:build")
        .ok_or("no record of queue build")?;
    assert_eq!(build["before"]["pending"], 1);
    assert_eq!(build["before"]["max_pending"], 1);
    assert_eq!(build["after"]["window_seconds"], 60);
    assert!(build["actor"].as_str().unwrap().starts_with("cli:"));
    // Another minute: one more for the queue refused in it.
    for _ in 0..3 {
        refused(&at(&repo, "2030-01-01T12:02:00Z", "build")?)?;
    }
    let records = admission_records(&repo)?;
    assert_eq!(records.len(), 3, "{records:?}");
    assert_eq!(
        records
            .iter()
            .filter(|r| r["target"] == "queue:build")
            .count(),
        2
    );
    repo.assert_fsck_strict()?;
    Ok(())
}
