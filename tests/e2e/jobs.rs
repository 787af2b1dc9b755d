//! The job plane with real processes: racing workers, a worker killed mid-job, heartbeats,
//! retries, timeouts, cancel, tampering, trust, secrets, the registry and the archive.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use gatos_testutil::{TempRepo, TestResult, wait_for};
use serde_json::Value;

use crate::support::{
    enqueue, finish, gatos, gatos_cmd, gatos_ok, jobs_shared, json_lines, path_with_bins,
};

fn init(repo: &TempRepo) -> TestResult<String> {
    let row = json_lines(&gatos_ok(repo, &["init", "--json"])?)?;
    Ok(row[0]["key"].as_str().unwrap().to_owned())
}

fn show(repo: &TempRepo, id: &str) -> TestResult<Value> {
    Ok(json_lines(&gatos_ok(repo, &["jobs", "show", id, "--json"])?)?.remove(0))
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

fn run_worker(repo: &TempRepo, args: &[&str]) -> TestResult<Vec<Value>> {
    let out = finish(
        spawn_worker(repo, args)?,
        "the worker to exit",
        Duration::from_secs(120),
    )?;
    assert!(out.status.success(), "worker failed: {}", stderr(&out));
    json_lines(&String::from_utf8(out.stdout)?)
}

fn alive(pid: i32) -> bool {
    // A zombie is dead for our purposes.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Kills what a test left behind (a job's process group).
fn kill_group(pid: i32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .status();
}

fn verify(repo: &TempRepo, id: &str) -> TestResult<Output> {
    gatos(repo, &["jobs", "verify", id])
}

fn result_ref(id: &str) -> String {
    format!("refs/gatos/jobs/{id}/result")
}

#[test]
fn four_workers_race_over_forty_jobs_and_each_job_runs_once() -> TestResult {
    let repo = TempRepo::new()?;
    init(&repo)?;
    let log = jobs_shared(&repo).join("runs.log");
    let script = format!(
        "echo \"$GATOS_JOB $GATOS_WORKER\" >> {}; sleep 0.1",
        log.display()
    );
    let mut ids = Vec::new();
    for _ in 0..40 {
        ids.push(enqueue(&repo, &["--", "sh", "-c", &script])?);
    }
    let workers: Vec<Child> = (0..4)
        .map(|i| spawn_worker(&repo, &["--drain", "--id", &format!("w{i}")]))
        .collect::<TestResult<_>>()?;
    let mut rows = Vec::new();
    for w in workers {
        let out = finish(w, "a racing worker to drain", Duration::from_secs(180))?;
        assert!(out.status.success(), "{}", stderr(&out));
        rows.extend(json_lines(&String::from_utf8(out.stdout)?)?);
    }
    assert_eq!(rows.len(), 40, "one attempt per job: {rows:?}");
    let mut ran: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    ran.sort_unstable();
    ran.dedup();
    assert_eq!(ran.len(), 40);
    let lines = std::fs::read_to_string(&log)?;
    let mut logged: Vec<&str> = lines
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    logged.sort_unstable();
    logged.dedup();
    assert_eq!(logged.len(), 40);
    assert_eq!(lines.lines().count(), 40, "no job ran twice");
    let mut by: Vec<&str> = lines
        .lines()
        .map(|l| l.split(' ').nth(1).unwrap())
        .collect();
    by.sort_unstable();
    by.dedup();
    assert!(by.len() >= 2, "only {by:?} did work");
    for id in &ids {
        let row = show(&repo, id)?;
        assert_eq!(row["state"], "succeeded");
        assert_eq!(row["attempt"], 1);
        assert!(repo.rev_parse(&result_ref(id))?.is_some());
    }
    gatos_ok(&repo, &["jobs", "verify", "--all"])?;
    repo.assert_fsck_strict()
}

/// The `git-gatos` child of a `git` process.
fn git_gatos_child_of(git: u32) -> Option<i32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let (head, tail) = stat.rsplit_once(')')?;
        let comm = head.split_once('(').map(|(_, c)| c).unwrap_or("");
        let ppid: u32 = tail.split_whitespace().nth(1)?.parse().ok()?;
        if ppid == git && comm == "git-gatos" {
            return Some(pid);
        }
    }
    None
}

#[test]
fn a_worker_killed_mid_job_loses_it_to_another_after_its_lease() -> TestResult {
    let repo = TempRepo::new()?;
    init(&repo)?;
    let pidfile = jobs_shared(&repo).join("attempt1.pid");
    let script = format!(
        "if [ \"$GATOS_ATTEMPT\" = 1 ]; then echo $$ > {}; exec sleep 60; fi; echo \"attempt $GATOS_ATTEMPT\"",
        pidfile.display()
    );
    let id = enqueue(&repo, &["--", "sh", "-c", &script])?;
    // `git gatos` runs git-gatos as a child of git: kill that child, the worker itself.
    let allow = jobs_shared(&repo).to_string_lossy().into_owned();
    let mut git = repo.git_cmd(&[
        "gatos",
        "worker",
        "--once",
        "--lease",
        "2s",
        "--id",
        "first",
        "--sandbox-allow-write",
        &allow,
    ]);
    git.env("PATH", path_with_bins())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut git = git.spawn()?;
    wait_for("the job to run", Duration::from_secs(60), || {
        read_pid(&pidfile).is_some() && state(&repo, &id) == "running"
    })?;
    let worker = git_gatos_child_of(git.id()).ok_or("no git-gatos child of git")?;
    Command::new("kill")
        .args(["-KILL", &worker.to_string()])
        .status()?;
    let _ = git.wait();
    let job_pid = read_pid(&pidfile).unwrap();
    // The lease lapses; the job becomes claimable again.
    wait_for("the lease to expire", Duration::from_secs(60), || {
        state(&repo, &id) == "pending"
    })?;
    let rows = run_worker(&repo, &["--once", "--id", "second"])?;
    kill_group(job_pid);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["attempt"], 2);
    let row = show(&repo, &id)?;
    assert_eq!(row["state"], "succeeded");
    assert_eq!(row["attempt"], 2);
    assert_eq!(row["claim"]["worker"], "second");
    let result = repo.rev_parse(&result_ref(&id))?.unwrap();
    assert_eq!(
        repo.git(&["cat-file", "blob", &format!("{result}:logs/stdout")])?,
        "attempt 2\n"
    );
    let events = gatos_ok(&repo, &["messages", "read", "gatos.jobs", "--json"])?;
    assert!(events.contains("\"heartbeat_lost\""));
    assert!(verify(&repo, &id)?.status.success());
    repo.assert_fsck_strict()
}

#[test]
fn a_long_job_with_a_short_lease_keeps_it_through_heartbeats() -> TestResult {
    let repo = TempRepo::new()?;
    init(&repo)?;
    let id = enqueue(&repo, &["--", "sleep", "5"])?;
    let rows = run_worker(&repo, &["--once", "--lease", "2s"])?;
    assert_eq!(rows[0]["outcome"], "succeeded");
    let row = show(&repo, &id)?;
    assert_eq!(
        (row["state"].as_str(), row["attempt"].as_u64()),
        (Some("succeeded"), Some(1))
    );
    let states = repo.git(&[
        "log",
        "--format=%(trailers:key=State,valueonly)",
        &format!("refs/gatos/jobs/{id}/claim"),
    ])?;
    let beats = states.lines().filter(|l| *l == "heartbeat").count();
    assert!(beats >= 3, "{beats} heartbeats in 5 s with a 2 s lease");
    repo.assert_fsck_strict()
}

#[test]
fn a_failing_job_ends_failed_after_max_attempts_and_the_worker_exits_zero() -> TestResult {
    let repo = TempRepo::new()?;
    init(&repo)?;
    let id = enqueue(
        &repo,
        &[
            "--max-attempts",
            "2",
            "--",
            "sh",
            "-c",
            "echo boom >&2; exit 3",
        ],
    )?;
    let rows = run_worker(&repo, &["--drain"])?;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["state"], "pending");
    assert_eq!(rows[1]["state"], "failed");
    let row = show(&repo, &id)?;
    assert_eq!(row["state"], "failed");
    assert_eq!(row["attempt"], 2);
    assert_eq!(row["result"]["exit_code"], 3);
    let result = repo.rev_parse(&result_ref(&id))?.unwrap();
    assert_eq!(
        repo.git(&["cat-file", "blob", &format!("{result}:logs/stderr")])?,
        "boom\n"
    );
    assert!(verify(&repo, &id)?.status.success());
    repo.assert_fsck_strict()
}

#[test]
fn a_timed_out_job_is_killed_even_when_it_ignores_term() -> TestResult {
    let repo = TempRepo::new()?;
    init(&repo)?;
    let pidfile = jobs_shared(&repo).join("job.pid");
    let script = format!(
        "trap '' TERM; echo $$ > {}; while :; do sleep 0.2; done",
        pidfile.display()
    );
    let id = enqueue(
        &repo,
        &[
            "--timeout",
            "1s",
            "--max-attempts",
            "1",
            "--",
            "sh",
            "-c",
            &script,
        ],
    )?;
    let rows = run_worker(&repo, &["--once", "--grace", "1s"])?;
    assert_eq!(rows[0]["outcome"], "timeout");
    let pid = read_pid(&pidfile).unwrap();
    wait_for(
        "the job's process to be gone",
        Duration::from_secs(10),
        || !alive(pid),
    )?;
    let row = show(&repo, &id)?;
    assert_eq!(row["state"], "failed");
    let result = repo.rev_parse(&result_ref(&id))?.unwrap();
    let doc: Value = serde_json::from_str(&repo.git(&[
        "cat-file",
        "blob",
        &format!("{result}:result.json"),
    ])?)?;
    assert_eq!(doc["reason"], "timeout");
    assert!(verify(&repo, &id)?.status.success());
    Ok(())
}

#[test]
fn a_cancelled_job_never_runs_and_a_running_one_is_stopped() -> TestResult {
    let repo = TempRepo::new()?;
    init(&repo)?;
    let marker = jobs_shared(&repo).join("ran");
    let pending = enqueue(&repo, &["--", "touch", &marker.to_string_lossy()])?;
    let out = json_lines(&gatos_ok(&repo, &["jobs", "cancel", &pending, "--json"])?)?;
    assert_eq!(out[0]["state"], "cancelled");
    let rows = run_worker(&repo, &["--drain"])?;
    assert!(rows.is_empty());
    assert!(!marker.exists());
    assert!(
        repo.rev_parse(&format!("refs/gatos/jobs/{pending}/claim"))?
            .is_none()
    );

    let pidfile = jobs_shared(&repo).join("running.pid");
    let script = format!("echo $$ > {}; exec sleep 60", pidfile.display());
    let running = enqueue(&repo, &["--", "sh", "-c", &script])?;
    let worker = spawn_worker(&repo, &["--once", "--lease", "1s"])?;
    wait_for("the job to run", Duration::from_secs(60), || {
        read_pid(&pidfile).is_some() && state(&repo, &running) == "running"
    })?;
    let pid = read_pid(&pidfile).unwrap();
    gatos_ok(
        &repo,
        &["jobs", "cancel", &running, "--reason", "changed my mind"],
    )?;
    let out = finish(
        worker,
        "the worker to stop the job",
        Duration::from_secs(60),
    )?;
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = json_lines(&String::from_utf8(out.stdout)?)?;
    assert_eq!(rows[0]["outcome"], "cancelled");
    assert!(!alive(pid), "the job's process was stopped");
    let row = show(&repo, &running)?;
    assert_eq!(row["state"], "cancelled");
    assert_eq!(row["claim"]["state"], "released");
    repo.assert_fsck_strict()
}

/// Replaces one file of the result commit (same parents and message) and moves the ref.
fn tamper(repo: &TempRepo, id: &str, path: &str, bytes: &[u8]) -> TestResult<(String, String)> {
    let old = repo.rev_parse(&result_ref(id))?.unwrap();
    let index = repo.root().join("tamper.index");
    let env = |cmd: &mut Command| {
        cmd.env("GIT_INDEX_FILE", &index);
    };
    let run = |args: &[&str], input: Option<&[u8]>| -> TestResult<String> {
        let mut cmd = repo.git_cmd(args);
        env(&mut cmd);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        if let Some(i) = input {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(i)?;
        }
        let out = child.wait_with_output()?;
        assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    };
    run(&["read-tree", &old], None)?;
    let blob = run(&["hash-object", "-w", "--stdin"], Some(bytes))?;
    run(
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("100644,{blob},{path}"),
        ],
        None,
    )?;
    let tree = run(&["write-tree"], None)?;
    let parents = run(&["rev-list", "--parents", "-n", "1", &old], None)?;
    let message = run(&["log", "-1", "--format=%B", &old], None)?;
    let mut args = vec!["commit-tree".to_owned(), tree];
    for p in parents.split(' ').skip(1) {
        args.push("-p".into());
        args.push(p.to_owned());
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let new = run(&argv, Some(message.as_bytes()))?;
    run(&["update-ref", &result_ref(id), &new, &old], None)?;
    std::fs::remove_file(&index)?;
    Ok((old, new))
}

fn restore(repo: &TempRepo, id: &str, (old, new): (String, String)) -> TestResult {
    repo.git(&["update-ref", &result_ref(id), &old, &new])?;
    Ok(())
}

fn verify_fails_with(repo: &TempRepo, id: &str, code: &str) -> TestResult {
    let out = verify(repo, id)?;
    assert!(!out.status.success(), "verify passed");
    assert!(
        stderr(&out).contains(&format!("error[{code}]")),
        "{}",
        stderr(&out)
    );
    Ok(())
}

#[test]
fn tampered_logs_results_and_proofs_fail_verification() -> TestResult {
    let repo = TempRepo::new()?;
    init(&repo)?;
    let id = enqueue(
        &repo,
        &[
            "--output",
            "out.txt",
            "--",
            "sh",
            "-c",
            "echo hello; echo data > out.txt",
        ],
    )?;
    run_worker(&repo, &["--once"])?;
    assert!(verify(&repo, &id)?.status.success());
    let result = repo.rev_parse(&result_ref(&id))?.unwrap();
    assert_eq!(
        repo.git(&["cat-file", "blob", &format!("{result}:outputs/out.txt")])?,
        "data\n"
    );

    let t = tamper(&repo, &id, "logs/stdout", b"goodbye\n")?;
    verify_fails_with(&repo, &id, "DigestMismatch")?;
    assert!(!gatos(&repo, &["jobs", "verify", "--all"])?.status.success());
    restore(&repo, &id, t)?;

    let t = tamper(&repo, &id, "outputs/out.txt", b"other\n")?;
    verify_fails_with(&repo, &id, "DigestMismatch")?;
    restore(&repo, &id, t)?;

    let doc = repo.git(&["cat-file", "blob", &format!("{result}:result.json")])?;
    let t = tamper(
        &repo,
        &id,
        "result.json",
        doc.replace("\"exit_code\":0", "\"exit_code\":7").as_bytes(),
    )?;
    verify_fails_with(&repo, &id, "DigestMismatch")?;
    restore(&repo, &id, t)?;

    let poe = repo.git(&["cat-file", "blob", &format!("{result}:poe.json")])?;
    let mut env: Value = serde_json::from_str(&poe)?;
    let sig = env["signatures"][0]["sig"].as_str().unwrap().to_owned();
    // Another first character: the signature no longer verifies.
    let flipped = match sig.strip_prefix('A') {
        Some(rest) => format!("B{rest}"),
        None => format!("A{}", &sig[1..]),
    };
    env["signatures"][0]["sig"] = Value::String(flipped);
    let t = tamper(&repo, &id, "poe.json", env.to_string().as_bytes())?;
    verify_fails_with(&repo, &id, "SignatureInvalid")?;
    restore(&repo, &id, t)?;

    assert!(verify(&repo, &id)?.status.success());
    repo.assert_fsck_strict()
}

#[test]
fn proofs_by_untrusted_or_revoked_keys_fail() -> TestResult {
    let repo = TempRepo::new()?;
    let key = init(&repo)?;
    let id = enqueue(&repo, &["--", "true"])?;
    run_worker(&repo, &["--once"])?;
    assert!(verify(&repo, &id)?.status.success());
    repo.git(&["config", "--unset-all", "gatos.trust"])?;
    verify_fails_with(&repo, &id, "UntrustedKey")?;
    let hex = key.strip_prefix("ed25519:").unwrap();
    let trusted = json_lines(&gatos_ok(&repo, &["keys", "trust", hex, "--json"])?)?;
    assert_eq!(trusted[0]["changed"], true);
    let again = json_lines(&gatos_ok(&repo, &["keys", "trust", &key, "--json"])?)?;
    assert_eq!(again[0]["changed"], false, "trust is idempotent");
    assert!(verify(&repo, &id)?.status.success());
    gatos_ok(
        &repo,
        &[
            "keys",
            "revoke",
            &key,
            "--reason",
            "compromised",
            "--since",
            "2020-01-01T00:00:00Z",
        ],
    )?;
    verify_fails_with(&repo, &id, "KeyRevoked")?;
    let keys = json_lines(&gatos_ok(&repo, &["keys", "ls", "--json"])?)?;
    assert_eq!(keys[0]["revoked"], "compromised");
    assert_eq!(
        repo.refs(&format!("refs/gatos/trust/revocations/{hex}/"))?
            .len(),
        1
    );
    // Revoking again adds a record; they merge (the earlier compromise wins).
    gatos_ok(&repo, &["keys", "revoke", &key, "--reason", "superseded"])?;
    assert_eq!(
        repo.refs(&format!("refs/gatos/trust/revocations/{hex}/"))?
            .len(),
        2
    );
    verify_fails_with(&repo, &id, "KeyRevoked")?;
    assert!(
        repo.rev_parse(&format!("refs/gatos/trust/keys/{hex}"))?
            .is_some()
    );
    repo.assert_fsck_strict()
}

#[test]
fn raw_secrets_are_refused_without_refs_and_references_resolve_only_in_the_worker() -> TestResult {
    let repo = TempRepo::new()?;
    init(&repo)?;
    let token = format!("ghp_{}", "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dF3hJ5");
    for args in [
        vec![
            "--env".to_owned(),
            format!("GITHUB_TOKEN={token}"),
            "--".into(),
            "true".into(),
        ],
        vec![
            "--".into(),
            "curl".into(),
            "-H".into(),
            format!("Authorization: token {token}"),
        ],
        vec![
            "--inputs".into(),
            r#"{"db":{"password":"N9v#qL2m!xP7zR4tYu"}}"#.into(),
            "--".into(),
            "true".into(),
        ],
    ] {
        let mut all = vec!["jobs", "enqueue"];
        all.extend(args.iter().map(String::as_str));
        let out = gatos(&repo, &all)?;
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(err.contains("error[SecretDetected]"), "{err}");
        assert!(
            !err.contains(&token) && !err.contains("N9v#"),
            "the value is never echoed: {err}"
        );
    }
    let manifest = repo.root().join("leaky.yaml");
    std::fs::write(
        &manifest,
        "command: [deploy]\nenv:\n  SLACK_TOKEN: xoxb-123456789012-abcdefghijklmnop\n",
    )?;
    let out = gatos(
        &repo,
        &["manifests", "put", "leaky", &manifest.to_string_lossy()],
    )?;
    assert!(
        stderr(&out).contains("error[SecretDetected]") && stderr(&out).contains("env.SLACK_TOKEN")
    );
    assert!(repo.refs("refs/gatos/jobs/")?.is_empty());
    assert!(repo.refs("refs/gatos/manifests/")?.is_empty());

    // A reference is fine; a worker that cannot resolve it does not claim the job.
    let secret = "s3cr3t-value-for-the-test";
    let id = enqueue(
        &repo,
        &[
            "--env",
            "TOKEN=secret://CI_TOKEN",
            "--",
            "sh",
            "-c",
            "echo \"token is $TOKEN\"",
        ],
    )?;
    let job = show(&repo, &id)?;
    assert_eq!(
        job["manifest"]["secret_refs"],
        serde_json::json!(["CI_TOKEN"])
    );
    assert!(run_worker(&repo, &["--drain"])?.is_empty());
    assert_eq!(state(&repo, &id), "pending");
    let file = repo.root().join("secrets.env");
    std::fs::write(&file, format!("# test secrets\nCI_TOKEN={secret}\n"))?;
    let rows = run_worker(&repo, &["--drain", "--secrets", &file.to_string_lossy()])?;
    assert_eq!(rows[0]["outcome"], "succeeded");
    let result = repo.rev_parse(&result_ref(&id))?.unwrap();
    assert_eq!(
        repo.git(&["cat-file", "blob", &format!("{result}:logs/stdout")])?,
        "token is [REDACTED:CI_TOKEN]\n"
    );
    let everything = repo.git_output(&["cat-file", "--batch-all-objects", "--batch"])?;
    assert!(
        !String::from_utf8_lossy(&everything.stdout).contains(secret),
        "the value is in the repository"
    );
    assert!(verify(&repo, &id)?.status.success());
    repo.assert_fsck_strict()
}

#[test]
fn archived_jobs_still_show_list_and_verify() -> TestResult {
    let repo = TempRepo::new()?;
    init(&repo)?;
    let ids: Vec<String> = (0..3)
        .map(|i| enqueue(&repo, &["--", "echo", &i.to_string()]))
        .collect::<TestResult<_>>()?;
    run_worker(&repo, &["--drain"])?;
    let kept = gatos_ok(&repo, &["maintenance", "--archive-jobs", "--json"])?;
    assert_eq!(
        json_lines(&kept)?[0]["archive"]["too_recent"],
        3,
        "archiveAfter is 7 days"
    );
    let r = json_lines(&gatos_ok(
        &repo,
        &[
            "maintenance",
            "--archive-jobs",
            "--older-than",
            "0s",
            "--json",
        ],
    )?)?;
    assert_eq!(r[0]["archive"]["archived"], 3);
    assert!(repo.refs("refs/gatos/jobs/")?.is_empty());
    assert_eq!(repo.refs("refs/gatos/archive/jobs/")?.len(), 1);
    for id in &ids {
        let row = show(&repo, id)?;
        assert_eq!(row["state"], "succeeded");
        assert_eq!(row["poe"]["verified"], true);
        assert!(verify(&repo, id)?.status.success());
    }
    let listed = json_lines(&gatos_ok(
        &repo,
        &["jobs", "ls", "--state", "succeeded", "--json"],
    )?)?;
    assert_eq!(listed.len(), 3);
    assert!(
        json_lines(&gatos_ok(&repo, &["jobs", "ls", "--json"])?)?.is_empty(),
        "live jobs only"
    );
    assert_eq!(
        json_lines(&gatos_ok(&repo, &["jobs", "ls", "--all", "--json"])?)?.len(),
        3
    );
    gatos_ok(&repo, &["jobs", "verify", "--all"])?;
    repo.git(&["gc", "--prune=now", "--quiet"])?;
    repo.assert_fsck_strict()?;
    gatos_ok(&repo, &["jobs", "verify", "--all"])?;
    Ok(())
}

#[test]
fn show_ls_and_watch_print_the_documented_shapes() -> TestResult {
    let repo = TempRepo::new()?;
    init(&repo)?;
    // High priority, but not before an hour from now: the worker takes the other one.
    let first = enqueue(
        &repo,
        &[
            "--queue",
            "build",
            "--cap",
            "linux",
            "--priority",
            "3",
            "--label",
            "team=ci",
            "--run-after",
            "1h",
            "--",
            "true",
        ],
    )?;
    let row = show(&repo, &first)?;
    for key in [
        "id", "state", "attempt", "queue", "manifest", "claim", "result", "poe",
    ] {
        assert!(row.get(key).is_some(), "missing {key}");
    }
    assert_eq!(row["claim"], Value::Null);
    assert_eq!(
        row["manifest"]["required_capabilities"],
        serde_json::json!(["linux"])
    );
    assert_eq!(row["manifest"]["labels"]["team"], "ci");
    let events = json_lines(&gatos_ok(
        &repo,
        &["messages", "read", "gatos.jobs", "--json"],
    )?)?;
    let since = events.last().unwrap()["ulid"].as_str().unwrap().to_owned();
    let watch = gatos_cmd(
        &repo,
        &[
            "jobs", "watch", "--json", "--queue", "build", "--since", &since, "--limit", "3",
        ],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()?;
    enqueue(&repo, &["--queue", "other", "--", "true"])?;
    let second = enqueue(&repo, &["--queue", "build", "--", "true"])?;
    let rows = run_worker(&repo, &["--once", "--queue", "build", "--cap", "linux"])?;
    assert_eq!(rows[0]["id"], second);
    let out = finish(
        watch,
        "jobs watch to see three events",
        Duration::from_secs(60),
    )?;
    let seen = json_lines(&String::from_utf8(out.stdout)?)?;
    let names: Vec<&str> = seen.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(names, ["enqueued", "claimed", "succeeded"]);
    assert!(
        seen.iter()
            .all(|e| e["queue"] == "build" && e["job"] == second)
    );
    let pending = json_lines(&gatos_ok(
        &repo,
        &[
            "jobs", "ls", "--state", "pending", "--queue", "build", "--json",
        ],
    )?)?;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0]["id"], first);
    let done = show(&repo, &second)?;
    for key in ["worker", "worker_key", "attempt", "lease_until", "state"] {
        assert!(done["claim"].get(key).is_some(), "claim lacks {key}");
    }
    assert_eq!(done["claim"]["state"], "closed");
    assert_eq!(done["result"]["status"], "succeeded");
    assert_eq!(done["poe"]["verified"], true);
    Ok(())
}

#[test]
fn manifests_are_versioned_by_name_and_run_from_the_registry() -> TestResult {
    let repo = TempRepo::new()?;
    init(&repo)?;
    let file = repo.root().join("build.yaml");
    std::fs::write(
        &file,
        "command: [sh, -c]\nargs: ['echo built > artifact.txt']\ntimeout: PT2M\noutputs: [artifact.txt]\n",
    )?;
    let f = file.to_string_lossy().into_owned();
    let v1 = json_lines(&gatos_ok(
        &repo,
        &["manifests", "put", "build", &f, "--json"],
    )?)?;
    assert_eq!(
        (
            v1[0]["version"].as_u64(),
            v1[0]["manifest"]["timeout"].as_u64()
        ),
        (Some(1), Some(120))
    );
    let same = json_lines(&gatos_ok(
        &repo,
        &["manifests", "put", "build", &f, "--json"],
    )?)?;
    assert_eq!(same[0]["version"], 1);
    std::fs::write(
        &file,
        "{\"command\": [\"sh\", \"-c\", \"echo v2 > artifact.txt\"], \"outputs\": [\"artifact.txt\"]}",
    )?;
    let v2 = json_lines(&gatos_ok(
        &repo,
        &["manifests", "put", "build", &f, "--json"],
    )?)?;
    assert_eq!(v2[0]["version"], 2);
    let got = json_lines(&gatos_ok(
        &repo,
        &["manifests", "get", "build", "--version", "1", "--json"],
    )?)?;
    for key in ["name", "version", "content_id", "manifest"] {
        assert!(got[0].get(key).is_some(), "missing {key}");
    }
    assert_eq!(got[0]["content_id"], v1[0]["content_id"]);
    assert_eq!(
        json_lines(&gatos_ok(&repo, &["manifests", "ls", "--json"])?)?.len(),
        1
    );
    let run = json_lines(&gatos_ok(&repo, &["manifests", "run", "build", "--json"])?)?;
    for key in ["id", "content_id", "commit", "state"] {
        assert!(run[0].get(key).is_some(), "missing {key}");
    }
    let id = run[0]["id"].as_str().unwrap();
    run_worker(&repo, &["--once"])?;
    let row = show(&repo, id)?;
    assert_eq!(row["manifest"]["source"]["version"], 2);
    assert_eq!(row["manifest"]["source"]["content_id"], v2[0]["content_id"]);
    let result = repo.rev_parse(&result_ref(id))?.unwrap();
    assert_eq!(
        repo.git(&[
            "cat-file",
            "blob",
            &format!("{result}:outputs/artifact.txt")
        ])?,
        "v2\n"
    );
    let missing = gatos(&repo, &["manifests", "get", "nope"])?;
    assert!(stderr(&missing).contains("error[NotFound]"));
    repo.assert_fsck_strict()
}

/// Verifies a stored proof the way an outside auditor would, with none of our code: DSSE's
/// PAE, an independent ed25519 implementation (`ed25519-compact`, not the `ed25519-dalek`
/// gatos signs with), and the subjects' sha256 and git blob ids recomputed from `git
/// cat-file`. `scripts/verify_poe.py` does the same with Python's `cryptography`.
fn independent_check(repo: &TempRepo, commit: &str, key: &str) -> Result<String, String> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let cat = |path: &str| -> Result<Vec<u8>, String> {
        let out = repo
            .git_output(&["cat-file", "blob", &format!("{commit}:{path}")])
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!("{path} is missing"));
        }
        Ok(out.stdout)
    };
    let env: Value = serde_json::from_slice(&cat("poe.json")?).map_err(|e| e.to_string())?;
    let payload_type = env["payloadType"].as_str().ok_or("no payloadType")?;
    if payload_type != "application/vnd.in-toto+json" {
        return Err(format!("payloadType {payload_type}"));
    }
    let body = b64
        .decode(env["payload"].as_str().ok_or("no payload")?)
        .map_err(|e| e.to_string())?;
    let sig = env["signatures"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["keyid"] == key))
        .ok_or("no signature by the key")?;
    let mut pae = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        body.len()
    )
    .into_bytes();
    pae.extend_from_slice(&body);
    let hex = key
        .strip_prefix("ed25519:")
        .ok_or("not an ed25519 key id")?;
    let raw: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let public = ed25519_compact::PublicKey::from_slice(&raw).map_err(|e| e.to_string())?;
    let signature = ed25519_compact::Signature::from_slice(
        &b64.decode(sig["sig"].as_str().ok_or("no sig")?)
            .map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    public
        .verify(&pae, &signature)
        .map_err(|_| "the signature does not verify".to_owned())?;
    let statement: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    if statement["_type"] != "https://in-toto.io/Statement/v1" {
        return Err("not an in-toto Statement v1".into());
    }
    let mut covered = Vec::new();
    for subject in statement["subject"].as_array().ok_or("no subjects")? {
        let name = subject["name"].as_str().ok_or("a subject without a name")?;
        let data = cat(name)?;
        let sha256: String = hmac_sha256::Hash::hash(&data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut sha1 = sha1_smol::Sha1::new();
        sha1.update(format!("blob {}\0", data.len()).as_bytes());
        sha1.update(&data);
        if subject["digest"]["sha256"] != sha256.as_str()
            || subject["digest"]["gitBlob"] != sha1.digest().to_string().as_str()
        {
            return Err(format!("{name} does not match its digest"));
        }
        covered.push(name.to_owned());
    }
    let files = repo
        .git(&["ls-tree", "-r", "--name-only", commit])
        .map_err(|e| e.to_string())?;
    for f in files
        .lines()
        .filter(|f| f.starts_with("logs/") || f.starts_with("outputs/"))
    {
        if !covered.iter().any(|c| c == f) {
            return Err(format!("{f} is not covered"));
        }
    }
    Ok(statement["predicate"]["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

#[test]
fn an_independent_dsse_ed25519_check_verifies_a_stored_proof() -> TestResult {
    let repo = TempRepo::new()?;
    let key = init(&repo)?;
    let id = enqueue(
        &repo,
        &[
            "--output",
            "o.txt",
            "--",
            "sh",
            "-c",
            "echo proof; echo x > o.txt",
        ],
    )?;
    run_worker(&repo, &["--once"])?;
    let result = result_ref(&id);
    assert_eq!(independent_check(&repo, &result, &key)?, "succeeded");
    let t = tamper(&repo, &id, "logs/stdout", b"forged\n")?;
    let err = independent_check(&repo, &result, &key).unwrap_err();
    assert!(err.contains("logs/stdout"), "{err}");
    restore(&repo, &id, t)?;
    let t = tamper(&repo, &id, "outputs/extra.txt", b"smuggled\n")?;
    assert!(
        independent_check(&repo, &result, &key)
            .unwrap_err()
            .contains("not covered")
    );
    restore(&repo, &id, t)?;
    let other = format!("ed25519:{}", "ab".repeat(32));
    assert!(
        independent_check(&repo, &result, &other).is_err(),
        "another key's proof"
    );
    Ok(())
}

/// Writes with plain git an unsigned copy of job `source` under a new id (as a job held
/// from before signed enqueues, or one slipped in by hand, would be).
fn unsigned_copy(repo: &TempRepo, source: &str, id: &str) -> TestResult {
    let job = repo
        .rev_parse(&format!("refs/gatos/jobs/{source}/job"))?
        .ok_or("job")?;
    let blob = repo.git(&["rev-parse", &format!("{job}:job.json")])?;
    let doc = repo.git(&["cat-file", "blob", blob.trim()])?;
    let cid = repo
        .git(&[
            "log",
            "-1",
            "--format=%(trailers:key=Content-Id,valueonly)",
            &job,
        ])?
        .trim()
        .to_owned();
    let mut mktree = repo
        .git_cmd(&["mktree"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    std::io::Write::write_all(
        &mut mktree.stdin.take().ok_or("stdin")?,
        format!("100644 blob {}\tjob.json\n", blob.trim()).as_bytes(),
    )?;
    let tree = String::from_utf8(mktree.wait_with_output()?.stdout)?;
    assert!(!doc.is_empty());
    let commit = repo.git(&[
        "commit-tree",
        tree.trim(),
        "-m",
        &format!(
            "job {id}\n\nGatos-Kind: job\nJob: {id}\nContent-Id: {cid}\nQueue: default\nPriority: 0"
        ),
    ])?;
    repo.git(&[
        "update-ref",
        &format!("refs/gatos/jobs/{id}/job"),
        commit.trim(),
    ])?;
    Ok(())
}

#[test]
fn workers_run_only_jobs_a_trusted_key_enqueued_or_held_from_before() -> TestResult {
    let repo = TempRepo::new()?;
    init(&repo)?;
    let signed = enqueue(&repo, &["--", "echo", "signed"])?;
    let show_signed = show(&repo, &signed)?;
    assert_eq!(show_signed["enqueuer"]["trusted"], true, "{show_signed}");
    assert!(
        show_signed["enqueuer"]["actor"]
            .as_str()
            .unwrap_or("")
            .starts_with("cli:")
    );
    let slipped = "01KBQ0000000000000000SKP01";
    unsigned_copy(&repo, &signed, slipped)?;
    let v = show(&repo, slipped)?;
    assert_eq!(v["state"], "pending");
    assert!(
        v["enqueuer"]["blocked"]
            .as_str()
            .unwrap_or("")
            .contains("no enqueuer signature"),
        "{v}"
    );
    let out = gatos(&repo, &["doctor", "--json"])?;
    let findings = json_lines(&String::from_utf8(out.stdout)?)?;
    assert!(
        findings
            .iter()
            .any(|f| f["code"] == "job-enqueuer-untrusted"
                && f["target"].as_str().unwrap_or("").contains(slipped)),
        "{findings:?}"
    );
    // A worker runs the signed job and leaves the other pending.
    let rows = run_worker(&repo, &["--drain"])?;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["id"], signed.as_str());
    assert_eq!(state(&repo, slipped), "pending");
    // Told to, it runs it.
    let rows = run_worker(&repo, &["--drain", "--allow-untrusted-enqueuers"])?;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(state(&repo, slipped), "succeeded");

    // Jobs held when the node first checked enqueuers (an upgrade) run unsigned.
    let repo = TempRepo::new()?;
    init(&repo)?;
    let signed = enqueue(&repo, &["--", "echo", "signed"])?;
    let held = "01KBQ0000000000000000HD001";
    unsigned_copy(&repo, &signed, held)?;
    std::fs::remove_file(repo.git_dir().join("gatos/jobs/legacy-unsigned"))?;
    let rows = run_worker(&repo, &["--drain"])?;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(state(&repo, held), "succeeded");
    Ok(())
}

/// The `blake3:<hex>` an error's allow line names.
fn allow_digest(err: &str) -> Option<String> {
    let at = err.find("gatos.secrets.allow blake3:")? + "gatos.secrets.allow ".len();
    let digest: String = err[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == ':')
        .collect();
    (digest.len() == "blake3:".len() + 64).then_some(digest)
}

#[test]
fn the_scanner_refuses_urls_headers_flags_and_keys_until_the_operator_allows_one() -> TestResult {
    let repo = TempRepo::new()?;
    init(&repo)?;
    let random = "q8Zr2LmP0xVt7WcN4bKs";
    let token_key = format!("ghp_{}", "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dF3hJ5");
    let cases: Vec<(Vec<String>, &str, &str)> = vec![
        (
            vec![
                "--".into(),
                "psql".into(),
                "postgres://admin:pw@db/app".into(),
            ],
            "args[0]",
            "pw@db",
        ),
        (
            vec![
                "--".into(),
                "curl".into(),
                "-H".into(),
                format!("Authorization: Bearer {random}"),
            ],
            "args[1]",
            random,
        ),
        (
            vec!["--".into(), "gh".into(), "--token".into(), random.into()],
            "args[1]",
            random,
        ),
        (
            vec![
                "--env".into(),
                format!("TOKEN_GITHUB={random}"),
                "--".into(),
                "true".into(),
            ],
            "env.TOKEN_GITHUB",
            random,
        ),
        (
            vec![
                "--label".into(),
                format!("{token_key}=x"),
                "--".into(),
                "true".into(),
            ],
            "labels (key #0)",
            &token_key,
        ),
    ];
    for (args, field, value) in &cases {
        let mut all = vec!["jobs", "enqueue"];
        all.extend(args.iter().map(String::as_str));
        let out = gatos(&repo, &all)?;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("error[SecretDetected]"), "{err}");
        assert!(err.contains(field), "{field}: {err}");
        assert!(!err.contains(value), "the value is never echoed: {err}");
        assert!(allow_digest(&err).is_some(), "the allow line: {err}");
    }
    assert!(repo.refs("refs/gatos/jobs/")?.is_empty());

    // A secret:// string that is no reference is invalid input, wherever it is.
    for args in [
        vec!["--env", "X=secret://bad name", "--", "true"],
        vec!["--label", "l=secret://", "--", "true"],
        vec!["--", "echo", "secret://X Y"],
    ] {
        let mut all = vec!["jobs", "enqueue"];
        all.extend(args.iter().copied());
        let out = gatos(&repo, &all)?;
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&out).contains("error[InvalidInput]"),
            "{}",
            stderr(&out)
        );
    }

    // Ordinary lookalikes pass.
    for args in [
        vec!["--", "gh", "--token-file", "/run/secrets/gh"],
        vec!["--", "git", "clone", "git@github.com:org/repo.git"],
        vec!["--", "curl", "https://example.com/a?b=c"],
        vec!["--", "curl", "-H", "Authorization: Bearer $TOKEN"],
    ] {
        enqueue(&repo, &args)?;
    }

    // The operator allows exactly one flagged string; the manifest could not.
    let out = gatos(
        &repo,
        &[
            "jobs",
            "enqueue",
            "--json",
            "--",
            "psql",
            "postgres://admin:pw@db/app",
        ],
    )?;
    let json = json_lines(&String::from_utf8_lossy(&out.stdout))?;
    assert_eq!(json[0]["error"]["code"], "SecretDetected");
    let digest = allow_digest(&stderr(&out)).ok_or("an allow line")?;
    repo.git(&["config", "--add", "gatos.secrets.allow", &digest])?;
    let id = enqueue(&repo, &["--", "psql", "postgres://admin:pw@db/app"])?;
    assert_eq!(state(&repo, &id), "pending");
    let other = gatos(
        &repo,
        &[
            "jobs",
            "enqueue",
            "--",
            "psql",
            "postgres://admin:pw2@db/app",
        ],
    )?;
    assert_eq!(
        other.status.code(),
        Some(1),
        "another string is still refused"
    );
    // And the registry honours it too.
    let manifest = repo.root().join("db.yaml");
    std::fs::write(
        &manifest,
        "command: [psql, \"postgres://admin:pw@db/app\"]\n",
    )?;
    gatos_ok(
        &repo,
        &["manifests", "put", "db", &manifest.to_string_lossy()],
    )?;
    repo.assert_fsck_strict()
}

/// Runs git with `input` on its stdin; returns its stdout.
fn git_stdin(repo: &TempRepo, args: &[&str], input: &str) -> TestResult<String> {
    use std::io::Write as _;
    let mut child = repo
        .git_cmd(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    assert!(out.status.success(), "git {args:?}");
    Ok(String::from_utf8(out.stdout)?)
}

#[test]
fn a_malformed_job_is_left_out_and_stops_no_other() -> TestResult {
    let repo = TempRepo::new()?;
    init(&repo)?;
    let good = enqueue(&repo, &["--no-checkout", "--", "true"])?;
    // A job written with plain git whose job.json gatos would never write.
    let bad = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    for doc in [r#"{"command":[]}"#, "not json"] {
        let blob = git_stdin(&repo, &["hash-object", "-w", "--stdin"], doc)?;
        let tree = git_stdin(
            &repo,
            &["mktree"],
            &format!("100644 blob {}\tjob.json\n", blob.trim()),
        )?;
        let commit = repo.git(&["commit-tree", tree.trim(), "-m", "job"])?;
        repo.git(&[
            "update-ref",
            &format!("refs/gatos/jobs/{bad}/job"),
            commit.trim(),
        ])?;
        let rows = json_lines(&gatos_ok(&repo, &["jobs", "ls", "--json"])?)?;
        assert!(
            rows.iter().all(|r| r["id"] != bad) && rows.iter().any(|r| r["id"] == good.as_str()),
            "{rows:?}"
        );
        let shown = gatos(&repo, &["jobs", "show", bad])?;
        assert!(String::from_utf8_lossy(&shown.stderr).contains("error[InvalidEnvelope]"));
        let doctor = gatos(&repo, &["doctor", "--json"])?;
        assert!(String::from_utf8_lossy(&doctor.stdout).contains("job-malformed"));
    }
    let rows = run_worker(&repo, &["--drain"])?;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["id"], good.as_str());
    assert_eq!(state(&repo, &good), "succeeded");
    Ok(())
}

/// A worker's option that cannot run: the library's message names the option, and the
/// CLI adds its flag in a hint; exit 1, nothing claimed.
#[test]
fn a_worker_option_that_cannot_run_is_refused_with_its_flag_in_a_hint() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    for (args, message, hint) in [
        (
            vec!["--concurrency", "0"],
            "concurrency must be between 1 and 256",
            "hint: --concurrency takes 1 to 256",
        ),
        (
            vec!["--workdir", "no-such-dir"],
            "is not a directory",
            "hint: --workdir DIR sets the work directory",
        ),
    ] {
        let mut all = vec!["worker", "--once"];
        all.extend(args);
        let out = gatos(&repo, &all)?;
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        let first = err
            .lines()
            .find(|l| l.starts_with("error["))
            .unwrap_or_default();
        assert!(
            first.starts_with("error[InvalidInput]") && first.contains(message),
            "{err}"
        );
        assert!(!first.contains("--"), "{err}");
        assert!(err.contains(hint), "{err}");
    }
    Ok(())
}

/// The process that enqueues writes the job's catalog line before it exits, so the first
/// listing checks no signature; a listing's line for a job is the one it would catch up
/// (issue #21).
#[test]
fn an_enqueuing_process_writes_the_catalog_line_before_it_exits() -> TestResult {
    let repo = TempRepo::new()?;
    init(&repo)?;
    let id = enqueue(
        &repo,
        &["--queue", "q", "--label", "team=infra", "--", "true"],
    )?;
    let path = repo.git_dir().join("gatos/index/jobs/catalog.jsonl");
    let text = std::fs::read_to_string(&path)?;
    let lines: Vec<Value> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), 1, "{text}");
    assert_eq!(lines[0]["id"], id.as_str());
    assert_eq!(lines[0]["queue"], "q");
    assert_eq!(lines[0]["labels"]["team"], "infra");
    assert!(
        lines[0]["key"]
            .as_str()
            .is_some_and(|k| k.starts_with("ed25519:")),
        "{text}"
    );
    // A listing finds it there and appends nothing.
    let rows = json_lines(&gatos_ok(&repo, &["jobs", "ls", "--queue", "q", "--json"])?)?;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["enqueuer"]["trusted"], true);
    assert_eq!(std::fs::read_to_string(&path)?, text);
    Ok(())
}
