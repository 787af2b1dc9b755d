//! `doctor` on real repositories: a healthy one reports nothing, and each finding code is
//! made for real — by the library, by plain git the way an operator or a crash would, by a
//! child process that dies holding a lock, by a second node and a hub — and reported with
//! its code, its severity, a target, a message and a fix.

use std::collections::BTreeSet;
use std::io::{BufRead as _, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use gatos::Gatos;
use gatos::clock::FixedClock;
use gatos::doctor::{self, Finding, FindingCode, Severity};
use gatos::jobs::Lease;
use gatos::jobs::lifecycle::{ClaimOptions, Finish};
use gatos::messages::{ConfigChange, PruneOptions, PublishOptions};
use gatos::proofs::{self, Attempt};
use gatos::sync::SyncOptions;
use gatos_testutil::{TempRepo, TestResult};
use gatos_types::jobs::{JobState, Outcome};
use gatos_types::{Dur, Group, Topic, Ulid};
use serde_json::json;

use crate::support::open_at;

const T0: &str = "2026-11-23T10:00:00Z";

/// Every code doctor reports, with the severity the design gives it: errors are broken
/// invariants, warnings expected states or tidying (see the module docs of `doctor`).
const EXPECTED: &[(&str, Severity)] = &[
    ("journal-stuck", Severity::Error),
    ("journal-rejected", Severity::Error),
    ("fsck", Severity::Error),
    ("ref-unknown", Severity::Warning),
    ("ref-leftover", Severity::Warning),
    ("lock-stale", Severity::Warning),
    ("lock-foreign", Severity::Warning),
    ("chain-invalid", Severity::Error),
    ("summary-invalid", Severity::Error),
    ("content-id-mismatch", Severity::Error),
    ("envelope-not-canonical", Severity::Error),
    ("seq-gap", Severity::Error),
    ("segment-detached", Severity::Error),
    ("rotation-unfinished", Severity::Warning),
    ("checkpoint-outside-topic", Severity::Error),
    ("checkpoint-behind-prune", Severity::Warning),
    ("result-without-claim", Severity::Error),
    ("proof-invalid", Severity::Error),
    ("proof-untrusted-key", Severity::Warning),
    ("lease-expired", Severity::Warning),
    ("maintenance-due", Severity::Warning),
    ("config-invalid", Severity::Error),
    ("event-missing", Severity::Warning),
    ("audit-missing", Severity::Warning),
    ("sync-rejected", Severity::Warning),
    ("job-enqueuer-untrusted", Severity::Warning),
    ("result-conflict", Severity::Warning),
    ("job-malformed", Severity::Error),
    ("snapshot-orphan", Severity::Warning),
    ("ref-mismatch", Severity::Error),
    ("check-incomplete", Severity::Error),
];

#[test]
fn every_code_has_its_severity_and_a_test_here() -> TestResult {
    let table: Vec<(&str, Severity)> = FindingCode::ALL
        .iter()
        .map(|c| (c.as_str(), c.severity()))
        .collect();
    assert_eq!(
        table, EXPECTED,
        "FindingCode changed: add a test here for a new code, and a playbook entry"
    );
    for (code, sev) in EXPECTED {
        let parsed: FindingCode = code.parse()?;
        assert_eq!(parsed.as_str(), *code);
        assert_eq!(parsed.severity(), *sev, "{code}");
        // Serialized as the same string as before it was an enum.
        assert_eq!(serde_json::to_value(parsed)?, json!(code));
    }
    // Each code appears in one test below: the list is kept in step by hand, checked here.
    let tested: BTreeSet<&str> = TESTED.iter().copied().collect();
    let all: BTreeSet<&str> = EXPECTED.iter().map(|(c, _)| *c).collect();
    assert_eq!(
        tested, all,
        "every code is made for real in a test of this file"
    );
    assert!("no-such-code".parse::<FindingCode>().is_err());
    Ok(())
}

/// The codes the tests below make (see [`every_code_has_its_severity_and_a_test_here`]).
const TESTED: &[&str] = &[
    // refs_and_locks_made_with_plain_git
    "ref-unknown",
    "ref-leftover",
    "lock-foreign",
    "fsck",
    // a_dead_writers_lock_is_stale_and_fix_removes_it
    "lock-stale",
    // broken_topics_made_with_plain_git
    "chain-invalid",
    // a_summary_that_does_not_read
    "summary-invalid",
    "content-id-mismatch",
    "envelope-not-canonical",
    "seq-gap",
    "segment-detached",
    "rotation-unfinished",
    // checkpoints_off_their_topic_or_behind_a_prune
    "checkpoint-outside-topic",
    "checkpoint-behind-prune",
    // broken_results_and_lapsed_leases
    "result-without-claim",
    "proof-invalid",
    "proof-untrusted-key",
    "lease-expired",
    "job-malformed",
    // settings_maintenance_and_lost_records
    "config-invalid",
    "maintenance-due",
    "event-missing",
    "audit-missing",
    // what_a_hub_and_a_second_node_bring
    "sync-rejected",
    "result-conflict",
    "job-enqueuer-untrusted",
    // a_half_written_snapshot_is_found_and_fix_removes_it
    "snapshot-orphan",
    // refs_that_are_not_what_their_names_say
    "ref-mismatch",
    // a_stuck_journal_and_a_set_aside_enqueue_are_reported
    "journal-stuck",
    "journal-rejected",
    // refs_holding_a_blob_are_named_and_the_other_checks_run
    "check-incomplete",
];

// ---- helpers ----

fn start(repo: &TempRepo) -> TestResult<(Gatos, Arc<FixedClock>)> {
    let (g, clock) = open_at(repo, T0)?;
    g.keys().init(false)?;
    Ok((g, clock))
}

fn topic(s: &str) -> Topic {
    s.parse().unwrap()
}

/// A topic whose segments hold three messages each (a rotation every third publish).
fn segmented(g: &Gatos, name: &str) -> TestResult<Topic> {
    let t = topic(name);
    g.messages().configure(
        &t,
        &ConfigChange {
            max_messages: Some(3),
            ..ConfigChange::default()
        },
    )?;
    Ok(t)
}

fn publish(g: &Gatos, t: &Topic, n: u64) -> TestResult<Vec<gatos_types::wire::PublishRow>> {
    let mut rows = Vec::new();
    for i in 0..n {
        rows.push(
            g.messages()
                .publish(t, json!({ "n": i }), &PublishOptions::default())?,
        );
    }
    // These tests then work on the refs with plain git: make the journaled publishes
    // commits first (ADR 0046).
    g.flush_journals()?;
    Ok(rows)
}

fn worker(g: &Gatos, name: &str) -> TestResult<ClaimOptions> {
    Ok(ClaimOptions {
        worker: name.parse()?,
        worker_key: g.keys().current(),
        queues: Vec::new(),
        caps: Vec::new(),
        lease: Dur::from_secs(30),
        can_resolve: None,
        allow_untrusted_enqueuers: false,
    })
}

fn enqueue(g: &Gatos, max_attempts: u32) -> TestResult<Ulid> {
    let spec = gatos::jobs::manifest::normalize(
        gatos::jobs::manifest::from_value(json!({
            "command": ["make"],
            "args": ["test"],
            "max_attempts": max_attempts,
        }))?,
        g.now(),
    )?;
    Ok(g.jobs().enqueue(spec)?.id)
}

/// Ends an attempt as a worker does: signs the proof of what "ran" and finishes.
fn finish(g: &Gatos, lease: &Lease, outcome: Outcome, code: Option<i32>) -> TestResult {
    let key = g.keys().signing_key()?.ok_or("a signing key")?;
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
    )?;
    Ok(())
}

/// Runs a job to `outcome` on its one attempt; returns its id.
fn run_job(g: &Gatos, outcome: Outcome) -> TestResult<Ulid> {
    let id = enqueue(g, 1)?;
    let lease = g.jobs().claim(id, &worker(g, "w1")?)?;
    let code = if outcome == Outcome::Succeeded { 0 } else { 2 };
    finish(g, &lease, outcome, Some(code))?;
    Ok(id)
}

fn run(g: &Gatos) -> TestResult<Vec<Finding>> {
    Ok(doctor::run(g, false)?)
}

/// The findings with `code`, each checked for the fields every finding carries.
fn with_code<'a>(findings: &'a [Finding], code: &str) -> Vec<&'a Finding> {
    let out: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.code.as_str() == code)
        .collect();
    for f in &out {
        let want = EXPECTED
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, s)| *s)
            .expect("a known code");
        assert_eq!(f.severity, want, "{f:?}");
        assert!(!f.target.is_empty(), "a target: {f:?}");
        assert!(!f.message.is_empty(), "a message: {f:?}");
        assert!(!f.fix.trim().is_empty(), "a fix: {f:?}");
    }
    out
}

/// Asserts a finding with `code` whose target contains `target`; returns it.
#[track_caller]
fn found<'a>(findings: &'a [Finding], code: &str, target: &str) -> &'a Finding {
    with_code(findings, code)
        .into_iter()
        .find(|f| f.target.contains(target))
        .unwrap_or_else(|| panic!("no {code} finding on {target}: {findings:#?}"))
}

#[track_caller]
fn not_found(findings: &[Finding], code: &str) {
    assert!(
        with_code(findings, code).is_empty(),
        "unexpected {code}: {findings:#?}"
    );
}

/// Writes an object of type `kind` with plain git; returns its id.
fn write_object(repo: &TempRepo, kind: &str, bytes: &[u8]) -> TestResult<String> {
    let mut child = repo
        .git_cmd(&["hash-object", "-t", kind, "-w", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    child.stdin.take().ok_or("stdin")?.write_all(bytes)?;
    let out = child.wait_with_output()?;
    assert!(out.status.success(), "hash-object -t {kind}");
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// Writes a copy of commit `oid` whose text lines `edit` changed; returns its id.
fn rewrite(repo: &TempRepo, oid: &str, edit: impl FnOnce(&mut Vec<String>)) -> TestResult<String> {
    let body = repo.git(&["cat-file", "commit", oid])?;
    let mut lines: Vec<String> = body.lines().map(str::to_owned).collect();
    edit(&mut lines);
    write_object(repo, "commit", (lines.join("\n") + "\n").as_bytes())
}

/// Writes a copy of commit `oid` with the file at `path` holding `bytes` instead.
fn rewrite_file(repo: &TempRepo, oid: &str, path: &str, bytes: &[u8]) -> TestResult<String> {
    let blob = write_object(repo, "blob", bytes)?;
    let index = repo.root().join("scratch.index");
    let git = |args: &[&str]| -> TestResult<String> {
        let out = repo.git_cmd(args).env("GIT_INDEX_FILE", &index).output()?;
        assert!(out.status.success(), "git {args:?}");
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    };
    git(&["read-tree", &format!("{oid}^{{tree}}")])?;
    git(&[
        "update-index",
        "--cacheinfo",
        &format!("100644,{blob},{path}"),
    ])?;
    let tree = git(&["write-tree"])?;
    std::fs::remove_file(&index)?;
    rewrite(repo, oid, |lines| lines[0] = format!("tree {tree}"))
}

fn head_of(repo: &TempRepo, name: &str) -> TestResult<String> {
    Ok(repo
        .rev_parse(name)?
        .ok_or_else(|| format!("{name} exists"))?)
}

/// Moves a ref with plain git, expecting its old value.
fn move_ref(repo: &TempRepo, name: &str, to: &str, from: &str) -> TestResult {
    repo.git(&["update-ref", name, to, from])?;
    Ok(())
}

/// Sets a file's modification time an hour back (what an old lock looks like).
fn age_hour(path: &Path) -> TestResult {
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(path)?
        .set_modified(old)?;
    Ok(())
}

// ---- tests ----

#[test]
fn a_healthy_repository_has_no_findings() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _clock) = start(&repo)?;
    assert_eq!(run(&g)?, Vec::<Finding>::new(), "a new repository");
    // Topics across segments, a consumer, settings, every kind of finished job, a job
    // still pending, a cancel and a registered manifest.
    let t = segmented(&g, "ci.events")?;
    let rows = publish(&g, &t, 7)?;
    g.checkpoints()
        .set(&"readers".parse::<Group>()?, &t, rows[4].ulid, false)?;
    run_job(&g, Outcome::Succeeded)?;
    run_job(&g, Outcome::Failed)?;
    let pending = enqueue(&g, 3)?;
    let cancelled = enqueue(&g, 3)?;
    g.jobs().cancel(cancelled, None)?;
    g.manifests().put(
        &"nightly".parse()?,
        gatos::jobs::manifest::from_value(json!({"command": ["make", "nightly"]}))?,
    )?;
    // A durable snapshot is no finding.
    gatos::snapshot::saved::create(&g, "healthy")?;
    let findings = run(&g)?;
    assert_eq!(findings, Vec::<Finding>::new());
    assert_eq!(g.jobs().show(pending)?.state, JobState::Pending);
    // --fix on a healthy repository changes nothing.
    let before = repo.refs("refs/")?;
    assert_eq!(doctor::run(&g, true)?, Vec::<Finding>::new());
    assert_eq!(repo.refs("refs/")?, before);
    repo.assert_fsck_strict()
}

#[test]
fn refs_and_locks_made_with_plain_git() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _clock) = start(&repo)?;
    let t = topic("ci.events");
    publish(&g, &t, 2)?;
    let head = head_of(&repo, "refs/gatos/messages/ci.events/head")?;
    // A ref the layout does not know, a file that is not a ref, an empty directory.
    repo.git(&["update-ref", "refs/gatos/bogus/thing", &head])?;
    std::fs::write(repo.git_dir().join("refs/gatos/junk"), "not a ref\n")?;
    std::fs::create_dir_all(repo.git_dir().join("refs/gatos/empty/dir"))?;
    // A lock file nobody's record names: plain git's. Young, it is git at work.
    let lock = repo.git_dir().join("refs/gatos/jobs.lock");
    std::fs::create_dir_all(lock.parent().ok_or("a parent")?)?;
    std::fs::write(&lock, "")?;
    let findings = run(&g)?;
    found(&findings, "ref-unknown", "refs/gatos/bogus/thing");
    found(&findings, "ref-leftover", "junk");
    found(&findings, "ref-leftover", "empty");
    not_found(&findings, "lock-foreign");
    // Old, it is reported, left alone by --fix, removed by --fix --force.
    age_hour(&lock)?;
    let findings = run(&g)?;
    let f = found(&findings, "lock-foreign", "jobs.lock");
    assert!(f.fix.contains("--force"), "{f:?}");
    let findings = doctor::run(&g, true)?;
    assert!(!found(&findings, "lock-foreign", "jobs.lock").fixed);
    assert!(
        lock.exists(),
        "--fix never removes a lock gatos did not write"
    );
    let findings = doctor::run_with(
        &g,
        doctor::Options {
            fix: true,
            force: true,
        },
    )?;
    assert!(found(&findings, "lock-foreign", "jobs.lock").fixed);
    assert!(!lock.exists());
    // A commit whose tree is missing, on a branch: git fsck says so.
    let missing = "1111111111111111111111111111111111111111";
    let broken = write_object(
        &repo,
        "commit",
        format!(
            "tree {missing}\nauthor A <a@example.com> 1700000000 +0000\n\
             committer A <a@example.com> 1700000000 +0000\n\nbroken\n"
        )
        .as_bytes(),
    )?;
    repo.git(&["update-ref", "refs/heads/broken", &broken])?;
    let findings = run(&g)?;
    let f = found(&findings, "fsck", missing);
    assert_eq!(f.message, format!("missing tree {missing}"));
    // git's two-line "broken link" is one finding, on the commit that has it.
    let f = found(&findings, "fsck", &broken);
    assert_eq!(
        f.message,
        format!("broken link from commit {broken} to tree {missing}")
    );
    assert!(
        with_code(&findings, "fsck")
            .iter()
            .all(|f| !f.message.starts_with("to ")),
        "{findings:#?}"
    );
    assert_eq!(findings[0].severity, Severity::Error, "errors come first");
    Ok(())
}

/// Not a test of its own: the child process [`a_dead_writers_lock_is_stale_and_fix_removes_it`]
/// starts. It writes its owner record and takes the lock a ref transaction would (as a gatos
/// writer does, ADR 0020), says so on stdout, and waits on stdin to be killed. Without the
/// variables it does nothing.
#[test]
fn child_gatos_writer() -> TestResult {
    let (Ok(dir), Ok(rel)) = (
        std::env::var("GATOS_TEST_CHILD_REPO"),
        std::env::var("GATOS_TEST_CHILD_LOCK"),
    ) else {
        return Ok(());
    };
    let store = gatos_store::Store::open(Path::new(&dir))?;
    let record = store.locks().owners().record(std::slice::from_ref(&rel))?;
    std::fs::write(
        store.common_dir().join(&rel),
        "0000000000000000000000000000000000000000\n",
    )?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "gatos-child-writer-ready")?;
    out.flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    drop(record);
    Ok(())
}

/// A child process playing a gatos writer, and its output (kept open: the child's test
/// harness still writes after its marker).
struct Writer {
    child: std::process::Child,
    _stdout: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

/// Starts [`child_gatos_writer`] holding `rel` in `repo`; returns once it holds it.
fn start_writer(repo: &TempRepo, rel: &str) -> TestResult<Writer> {
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "doctor::child_gatos_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("GATOS_TEST_CHILD_REPO", repo.path())
        .env("GATOS_TEST_CHILD_LOCK", rel)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("stdout")?;
    let mut lines = std::io::BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        if line?.contains("gatos-child-writer-ready") {
            return Ok(Writer {
                child,
                _stdout: lines,
            });
        }
    }
    let status = child.wait()?;
    Err(format!("the child writer ended ({status}) before taking its lock").into())
}

#[test]
fn a_dead_writers_lock_is_stale_and_fix_removes_it() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _clock) = start(&repo)?;
    let t = topic("ci.events");
    publish(&g, &t, 1)?;
    let rel = "refs/gatos/messages/ci.events/head.lock";
    let lock = repo.git_dir().join(rel);
    let mut writer = start_writer(&repo, rel)?;
    // Alive, however old its record and lock look: neither reported nor removed.
    let owners = repo.git_dir().join("gatos/locks/owners");
    // Records are named `<pid>-…`; this process keeps idle ones of its own.
    let mine = format!("{}-", writer.child.id());
    let records: Vec<_> = std::fs::read_dir(&owners)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&mine))
        })
        .collect();
    assert_eq!(records.len(), 1, "the child's record: {records:?}");
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for p in [&records[0], &lock] {
        std::fs::File::options()
            .write(true)
            .open(p)?
            .set_modified(old)?;
    }
    let findings = doctor::run(&g, true)?;
    assert!(
        !findings
            .iter()
            .any(|f| f.target == lock.display().to_string()),
        "a live writer's lock: {findings:#?}"
    );
    assert!(lock.exists());
    // Killed mid-transaction (SIGKILL: no destructor runs), its record's flock goes.
    writer.child.kill()?;
    writer.child.wait()?;
    let findings = run(&g)?;
    let f = found(&findings, "lock-stale", "head.lock");
    assert!(!f.fixed);
    assert!(lock.exists(), "doctor without --fix changes nothing");
    let findings = doctor::run(&g, true)?;
    assert!(found(&findings, "lock-stale", "head.lock").fixed);
    assert!(!lock.exists());
    // Gone for good, and the topic takes writes again.
    not_found(&run(&g)?, "lock-stale");
    publish(&g, &t, 1)?;
    repo.assert_fsck_strict()
}

#[test]
fn broken_topics_made_with_plain_git() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _clock) = start(&repo)?;
    let t = topic("other");
    let rows = publish(&g, &t, 4)?;
    let name = "refs/gatos/messages/other/head";
    let head = head_of(&repo, name)?;

    // A commit on a topic that is not a message.
    let bogus = repo.git(&[
        "commit-tree",
        &format!("{head}^{{tree}}"),
        "-p",
        &head,
        "-m",
        "not a message",
    ])?;
    move_ref(&repo, name, bogus.trim(), &head)?;
    found(&run(&g)?, "chain-invalid", bogus.trim());
    move_ref(&repo, name, &head, bogus.trim())?;

    // A message whose Content-Id is not the hash of its envelope.
    let lying = rewrite(&repo, &head, |lines| {
        for l in lines {
            if let Some(rest) = l.strip_prefix("Content-Id: blake3:") {
                *l = format!("Content-Id: blake3:{}", "0".repeat(rest.len()));
            }
        }
    })?;
    move_ref(&repo, name, &lying, &head)?;
    found(&run(&g)?, "content-id-mismatch", &lying);
    move_ref(&repo, name, &head, &lying)?;

    // An envelope that is not canonical JSON any more.
    let path = "message/envelope.json";
    let envelope = repo.git(&["cat-file", "blob", &format!("{head}:{path}")])?;
    let padded = rewrite_file(&repo, &head, path, format!("{envelope} ").as_bytes())?;
    move_ref(&repo, name, &padded, &head)?;
    let findings = run(&g)?;
    found(&findings, "envelope-not-canonical", &padded);
    move_ref(&repo, name, &head, &padded)?;

    // A message dropped from the middle.
    let grandparent = repo.git(&["rev-parse", &format!("{head}~2")])?;
    let skipped = rewrite(&repo, &head, |lines| {
        for l in lines.iter_mut().filter(|l| l.starts_with("parent ")) {
            *l = format!("parent {}", grandparent.trim());
        }
    })?;
    move_ref(&repo, name, &skipped, &head)?;
    found(&run(&g)?, "seq-gap", grandparent.trim());
    move_ref(&repo, name, &head, &skipped)?;

    // A sealed segment whose tip is the head (a rotation a crash interrupted): a warning.
    let day = gatos::messages::ulid_time(rows[0].ulid).utc_date();
    let sealed = format!("refs/gatos/messages/other/{day}/{}", rows[0].ulid);
    repo.git(&["update-ref", &sealed, &head])?;
    let findings = run(&g)?;
    found(&findings, "rotation-unfinished", &sealed);
    assert!(
        findings.iter().all(|f| f.severity == Severity::Warning),
        "{findings:#?}"
    );
    // A sealed segment off the chain.
    repo.git(&["update-ref", &sealed, &lying])?;
    found(&run(&g)?, "segment-detached", &sealed);
    repo.git(&["update-ref", "-d", &sealed])?;

    // Repaired: nothing left.
    assert_eq!(run(&g)?, Vec::<Finding>::new());
    Ok(())
}

/// A sealed segment's ref moved back inside its segment, then removed: the messages after
/// it, then the whole segment, are kept by no ref (the next segment names its predecessor
/// by a trailer, which git does not follow).
#[test]
fn a_sealed_ref_that_names_a_message_inside_its_segment() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _clock) = start(&repo)?;
    let t = segmented(&g, "rot")?;
    let rows = publish(&g, &t, 5)?;
    let sealed: Vec<(String, String)> = repo
        .refs("refs/gatos/messages/rot/")?
        .into_iter()
        .filter(|(n, _)| !n.ends_with("/head"))
        .collect();
    let [(name, tip)] = sealed.as_slice() else {
        return Err(format!("one sealed segment: {sealed:?}").into());
    };
    assert_eq!(*tip, rows[2].commit.to_string());
    assert_eq!(run(&g)?, Vec::<Finding>::new());

    let inside = rows[1].commit.to_string();
    move_ref(&repo, name, &inside, tip)?;
    let findings = run(&g)?;
    let f = found(&findings, "segment-detached", name);
    assert!(f.message.contains(tip.as_str()), "{f:#?}");
    // A message of the segment its name says: nothing else is wrong with it.
    not_found(&findings, "ref-mismatch");
    assert_eq!(findings.len(), 1, "{findings:#?}");
    // Its fix puts it back.
    assert_eq!(f.fix, format!("git update-ref {name} {tip} {inside}"));
    move_ref(&repo, name, tip, &inside)?;
    assert_eq!(run(&g)?, Vec::<Finding>::new());

    // Removed, its whole segment is kept by no ref: named by the ref that should exist.
    repo.git(&["update-ref", "-d", name])?;
    let findings = run(&g)?;
    let f = found(&findings, "segment-detached", name);
    assert_eq!(&f.target, name);
    assert_eq!(f.fix, format!("git update-ref {name} {tip}"));
    assert_eq!(findings.len(), 1, "{findings:#?}");
    repo.git(&["update-ref", name, tip])?;
    assert_eq!(run(&g)?, Vec::<Finding>::new());
    Ok(())
}

/// A topic's prune summary moved outside gatos to a commit that is no summary (a message):
/// the topic's listings name it damaged (ADR 0047), and doctor says why. A topic with a
/// summary that reads (one pruned by gatos) is no finding.
#[test]
fn a_summary_that_does_not_read() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _clock) = start(&repo)?;
    let (kept, broken) = (topic("kept"), topic("broken"));
    g.messages().configure(
        &kept,
        &ConfigChange {
            max_messages: Some(2),
            retain_messages: Some(Some(2)),
            ..ConfigChange::default()
        },
    )?;
    publish(&g, &kept, 7)?;
    publish(&g, &broken, 2)?;
    let pruned = g.messages().prune(&kept, &PruneOptions::default())?;
    assert!(pruned.summary.is_some(), "{pruned:?}");
    assert!(
        repo.rev_parse("refs/gatos/messages/kept/summary")?
            .is_some()
    );
    not_found(&run(&g)?, "summary-invalid");
    let name = "refs/gatos/messages/broken/summary";
    let message = head_of(&repo, "refs/gatos/messages/broken/head")?;
    repo.git(&["update-ref", name, &message])?;
    let findings = run(&g)?;
    let f = found(&findings, "summary-invalid", name);
    assert!(f.message.contains("broken"), "{f:?}");
    assert_eq!(with_code(&findings, "summary-invalid").len(), 1);
    let listing = g.messages().listing()?;
    assert_eq!(listing.damaged.len(), 1);
    assert_eq!(listing.damaged[0].topic, broken);
    // A publish to that topic is refused, with the same code.
    let Err(e) = g
        .messages()
        .publish(&broken, json!({ "n": 9 }), &PublishOptions::default())
    else {
        return Err("a publish on a summary that does not read was taken".into());
    };
    assert_eq!(e.code(), gatos_types::ErrorCode::InvalidEnvelope, "{e}");
    // One acknowledged before the summary moved is made commits all the same (its head
    // reads): the position index is left for readers to rebuild, and the journal is not
    // reported stuck.
    repo.git(&["update-ref", "-d", name])?;
    g.messages()
        .publish(&broken, json!({ "n": 9 }), &PublishOptions::default())?;
    repo.git(&["update-ref", name, &message])?;
    g.flush_journals()?;
    let findings = run(&g)?;
    found(&findings, "summary-invalid", name);
    not_found(&findings, "journal-stuck");
    assert_eq!(
        repo.git(&["rev-list", "--count", "refs/gatos/messages/broken/head"])?
            .trim(),
        "3"
    );
    Ok(())
}

#[test]
fn checkpoints_off_their_topic_or_behind_a_prune() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _clock) = start(&repo)?;
    let (a, b) = (topic("a"), topic("b"));
    let rows_a = publish(&g, &a, 2)?;
    let rows_b = publish(&g, &b, 2)?;
    let (g1, g2): (Group, Group) = ("g1".parse()?, "g2".parse()?);
    g.checkpoints().set(&g1, &a, rows_a[0].ulid, false)?;
    g.checkpoints().set(&g2, &b, rows_b[1].ulid, false)?;
    assert_eq!(run(&g)?, Vec::<Finding>::new());
    // g1's checkpoint on `a` replaced with g2's commit on `b`.
    let foreign = head_of(&repo, "refs/gatos/consumers/g2/b")?;
    let own = head_of(&repo, "refs/gatos/consumers/g1/a")?;
    move_ref(&repo, "refs/gatos/consumers/g1/a", &foreign, &own)?;
    found(
        &run(&g)?,
        "checkpoint-outside-topic",
        "refs/gatos/consumers/g1/a",
    );
    move_ref(&repo, "refs/gatos/consumers/g1/a", &own, &foreign)?;

    // A forced prune past a group's checkpoint: a warning, and no broken chain.
    let c = topic("c");
    g.messages().configure(
        &c,
        &ConfigChange {
            max_messages: Some(2),
            retain_messages: Some(Some(2)),
            ..ConfigChange::default()
        },
    )?;
    let rows_c = publish(&g, &c, 7)?;
    g.checkpoints().set(&g1, &c, rows_c[0].ulid, false)?;
    let pruned = g.messages().prune(
        &c,
        &PruneOptions {
            force: true,
            ..PruneOptions::default()
        },
    )?;
    assert!(pruned.messages > 0, "{pruned:?}");
    let findings = run(&g)?;
    found(
        &findings,
        "checkpoint-behind-prune",
        "refs/gatos/consumers/g1/c",
    );
    assert!(
        findings.iter().all(|f| f.severity == Severity::Warning),
        "a prune breaks no chain: {findings:#?}"
    );
    // Another topic's head moved by hand to a commit that is no message: that topic's
    // chain is invalid, and the pruned topic is still judged by its summary.
    let findings = head_to_no_message(&repo, &g, "a")?;
    // (g1's checkpoint on `a` can no longer be found on a's chain: reported, as it should.)
    assert!(
        with_code(&findings, "checkpoint-outside-topic")
            .iter()
            .all(|f| f.target == "refs/gatos/consumers/g1/a"),
        "{findings:#?}"
    );
    // The pruned topic's own head moved to no message: its first position still comes
    // from its summary, so g1's checkpoint is still behind the prune, not outside it.
    head_to_no_message(&repo, &g, "c")?;
    Ok(())
}

/// Moves topic `t`'s head to a commit that is no message and runs doctor: the chain is
/// invalid, and g1's checkpoint on the pruned topic `c` is still behind its prune.
fn head_to_no_message(repo: &TempRepo, g: &Gatos, t: &str) -> TestResult<Vec<Finding>> {
    let name = format!("refs/gatos/messages/{t}/head");
    let head = head_of(repo, &name)?;
    let bogus = no_message_on(repo, &head)?;
    move_ref(repo, &name, bogus.trim(), &head)?;
    let findings = run(g)?;
    found(&findings, "chain-invalid", bogus.trim());
    found(
        &findings,
        "checkpoint-behind-prune",
        "refs/gatos/consumers/g1/c",
    );
    Ok(findings)
}

#[test]
fn broken_results_and_lapsed_leases() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _clock) = start(&repo)?;
    let failed = run_job(&g, Outcome::Failed)?;
    let succeeded = run_job(&g, Outcome::Succeeded)?;
    let other = run_job(&g, Outcome::Succeeded)?;
    assert_eq!(run(&g)?, Vec::<Finding>::new());

    // The failed job's result no longer closes its claim (its second parent is gone).
    let name = format!("refs/gatos/jobs/{failed}/result");
    let result = head_of(&repo, &name)?;
    let orphan = rewrite(&repo, &result, |lines| {
        let mut parents = 0;
        lines.retain(|l| {
            if l.starts_with("parent ") {
                parents += 1;
                return parents == 1;
            }
            true
        });
    })?;
    move_ref(&repo, &name, &orphan, &result)?;
    // The succeeded job's stdout changed after its proof was signed.
    let name2 = format!("refs/gatos/jobs/{succeeded}/result");
    let result2 = head_of(&repo, &name2)?;
    let forged = rewrite_file(&repo, &result2, "logs/stdout", b"forged\n")?;
    move_ref(&repo, &name2, &forged, &result2)?;
    // Another job's document replaced by one whose command is empty.
    let job_ref = format!("refs/gatos/jobs/{other}/job");
    let job = head_of(&repo, &job_ref)?;
    let doc = repo.git(&["cat-file", "blob", &format!("{job}:job.json")])?;
    let mut v: serde_json::Value = serde_json::from_str(&doc)?;
    v["command"] = json!([]);
    let bad = rewrite_file(&repo, &job, "job.json", v.to_string().as_bytes())?;
    move_ref(&repo, &job_ref, &bad, &job)?;
    let findings = run(&g)?;
    found(&findings, "result-without-claim", &name);
    found(&findings, "proof-invalid", &name2);
    found(&findings, "job-malformed", &job_ref);

    // Nobody trusts the key that signed the proofs: a warning, not a bad proof.
    let repo2 = TempRepo::new()?;
    let (g2, clock2) = start(&repo2)?;
    let id = run_job(&g2, Outcome::Succeeded)?;
    repo2.git(&["config", "--unset-all", "gatos.trust"])?;
    let findings = run(&g2)?;
    found(&findings, "proof-untrusted-key", &id.to_string());
    not_found(&findings, "proof-invalid");

    // A claim whose worker stopped heartbeating: a warning once the lease lapses.
    let id = enqueue(&g2, 3)?;
    let _lease = g2.jobs().claim(id, &worker(&g2, "w2")?)?;
    not_found(&run(&g2)?, "lease-expired");
    clock2.advance(Dur::from_secs(30));
    not_found(&run(&g2)?, "lease-expired");
    clock2.advance(Dur::from_millis(1));
    let findings = run(&g2)?;
    let f = found(
        &findings,
        "lease-expired",
        &format!("refs/gatos/jobs/{id}/claim"),
    );
    assert!(f.message.contains("w2"), "{f:?}");
    Ok(())
}

/// Refs of this node moved by plain git onto commits that are not theirs: what a sync would
/// refuse to push (ADR 0047) is an error here too, named by its ref, whatever else reads it.
#[test]
fn refs_that_are_not_what_their_names_say() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _clock) = start(&repo)?;
    let (a, b, c, d) = (
        enqueue(&g, 3)?,
        enqueue(&g, 3)?,
        enqueue(&g, 3)?,
        enqueue(&g, 3)?,
    );
    g.jobs().claim(c, &worker(&g, "w1")?)?;
    g.jobs().claim(d, &worker(&g, "w1")?)?;
    let t = topic("a");
    let rows = publish(&g, &t, 2)?;
    let (g1, g2): (Group, Group) = ("g1".parse()?, "g2".parse()?);
    g.checkpoints().set(&g1, &t, rows[0].ulid, false)?;
    g.checkpoints().set(&g2, &t, rows[1].ulid, false)?;
    assert_eq!(run(&g)?, Vec::<Finding>::new());

    // a's job ref onto b's job commit: a well-formed job, of another id.
    let job_a = format!("refs/gatos/jobs/{a}/job");
    let (was_a, b_commit) = (
        head_of(&repo, &job_a)?,
        head_of(&repo, &format!("refs/gatos/jobs/{b}/job"))?,
    );
    move_ref(&repo, &job_a, &b_commit, &was_a)?;
    // c's claim ref onto d's claim chain.
    let claim_c = format!("refs/gatos/jobs/{c}/claim");
    let (was_c, d_claim) = (
        head_of(&repo, &claim_c)?,
        head_of(&repo, &format!("refs/gatos/jobs/{d}/claim"))?,
    );
    move_ref(&repo, &claim_c, &d_claim, &was_c)?;
    // g1's checkpoint onto g2's: a checkpoint of the same topic, of another group.
    let cp = "refs/gatos/consumers/g1/a";
    let (was_cp, g2_cp) = (
        head_of(&repo, cp)?,
        head_of(&repo, "refs/gatos/consumers/g2/a")?,
    );
    move_ref(&repo, cp, &g2_cp, &was_cp)?;
    // A sealed segment's ref under a date that is not its segment's.
    let sealed = format!("refs/gatos/messages/a/2020-01-01/{}", rows[0].ulid);
    repo.git(&[
        "update-ref",
        &sealed,
        &head_of(&repo, "refs/gatos/messages/a/head")?,
    ])?;

    let findings = run(&g)?;
    let f = found(&findings, "ref-mismatch", &job_a);
    assert!(f.message.contains(&b.to_string()), "{f:#?}");
    assert!(f.fix.contains("git update-ref"), "{f:#?}");
    // Not reported as a job waiting for a trusted enqueuer, whose fix would be to run it
    // anyway: that would run b's command under a's name.
    assert!(
        !findings
            .iter()
            .any(|f| f.code == FindingCode::JobEnqueuerUntrusted),
        "{findings:#?}"
    );
    found(&findings, "ref-mismatch", &claim_c);
    // The job whose claim ref holds another job's claim does not read as a job at all:
    // left out of listings and never run, as any malformed job.
    found(
        &findings,
        "job-malformed",
        &format!("refs/gatos/jobs/{c}/job"),
    );
    assert!(
        g.jobs().records(false)?.iter().all(|r| r.id != c),
        "job {c} is not listed"
    );
    let f = found(&findings, "ref-mismatch", cp);
    assert!(f.message.contains("g2"), "{f:#?}");
    // Named by its own ref, not by its topic's head (which a sync holds back with it):
    // the fix must not point at a healthy head.
    let f = found(&findings, "ref-mismatch", &sealed);
    assert_eq!(f.target, sealed);
    assert!(!f.fix.contains("/head"), "{f:#?}");
    assert_eq!(
        with_code(&findings, "ref-mismatch").len(),
        4,
        "one finding per ref: {findings:#?}"
    );
    // A sync would hold back exactly these, and doctor exits as for any error.
    assert!(findings.iter().any(|f| f.severity == Severity::Error));

    // Put back, nothing is left to report.
    move_ref(&repo, &job_a, &was_a, &b_commit)?;
    move_ref(&repo, &claim_c, &was_c, &d_claim)?;
    move_ref(&repo, cp, &was_cp, &g2_cp)?;
    repo.git(&["update-ref", "-d", &sealed])?;
    assert_eq!(run(&g)?, Vec::<Finding>::new());
    Ok(())
}

#[test]
fn settings_maintenance_and_lost_records() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _clock) = start(&repo)?;
    publish(&g, &topic("t"), 2)?;
    // A topic's settings that do not parse.
    let blob = write_object(&repo, "blob", b"{\"max_messages\": \"many\"")?;
    let tree = {
        let mut child = repo
            .git_cmd(&["mktree"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .ok_or("stdin")?
            .write_all(format!("100644 blob {blob}\tconfig.json\n").as_bytes())?;
        let out = child.wait_with_output()?;
        String::from_utf8(out.stdout)?.trim().to_owned()
    };
    let commit = repo.git(&["commit-tree", &tree, "-m", "Gatos-Kind: config"])?;
    let cfg = "refs/gatos/config/topics/broken";
    repo.git(&["update-ref", cfg, commit.trim()])?;
    found(&run(&g)?, "config-invalid", cfg);
    repo.git(&["update-ref", "-d", cfg])?;

    // Maintenance debt over a threshold; --fix pays it.
    repo.git(&["config", "gatos.maintenance.looseObjects", "1"])?;
    repo.git(&["config", "gatos.maintenance.auto", "false"])?;
    let (g, _clock) = open_at(&repo, T0)?;
    let findings = run(&g)?;
    found(&findings, "maintenance-due", "repository");
    assert!(found(&doctor::run(&g, true)?, "maintenance-due", "repository").fixed);
    repo.git(&["config", "--unset", "gatos.maintenance.looseObjects"])?;

    // A crash between an action and its event, and between a cancel and its audit record:
    // warnings that --fix republishes (once: deduplicated by commit id).
    let (g, _clock) = open_at(&repo, T0)?;
    let id = enqueue(&g, 3)?;
    g.jobs().cancel(id, Some("not needed".into()))?;
    // The events and the audit record are journaled (ADR 0046): commits first, for git.
    g.flush_journals()?;
    for t in ["gatos.jobs", "gatos.audit"] {
        // The last record lost: the head moves back, or goes with the topic's only one.
        let name = format!("refs/gatos/messages/{t}/head");
        let head = head_of(&repo, &name)?;
        match repo.rev_parse(&format!("{head}~1"))? {
            Some(parent) => move_ref(&repo, &name, &parent, &head)?,
            None => {
                repo.git(&["update-ref", "-d", &name, &head])?;
            }
        }
    }
    let cancel = head_of(&repo, &format!("refs/gatos/jobs/{id}/cancel"))?;
    let findings = run(&g)?;
    found(&findings, "event-missing", &cancel);
    found(&findings, "audit-missing", &cancel);
    let fixed = doctor::run(&g, true)?;
    assert!(found(&fixed, "event-missing", &cancel).fixed);
    assert!(found(&fixed, "audit-missing", &cancel).fixed);
    // The recovered record says why, as the one `jobs cancel` writes does.
    let trail = g.messages().read(
        &"gatos.audit".parse()?,
        &gatos::messages::ReadOptions {
            since: gatos::messages::Cursor::Start,
            limit: 1_000,
        },
    )?;
    let last = trail.messages.last().ok_or("no audit record")?;
    let rec: serde_json::Value = serde_json::from_str(last.payload.get())?;
    assert_eq!(rec["after"]["recovered_by"], "doctor", "{rec}");
    assert_eq!(rec["after"]["reason"], "not needed", "{rec}");
    assert_eq!(rec["after"]["state"], "cancelled", "{rec}");
    let after = run(&g)?;
    not_found(&after, "event-missing");
    not_found(&after, "audit-missing");
    repo.assert_fsck_strict()
}

/// A node with its own key (from its own seed), a fixed clock and the bare repository
/// `hub` as its remote `hub`.
fn node(hub: &TempRepo, seed: u64) -> TestResult<(TempRepo, Gatos)> {
    let repo = TempRepo::new()?;
    repo.git(&["remote", "add", "hub", &hub.path().to_string_lossy()])?;
    let clock = Arc::new(FixedClock::at(gatos_types::Timestamp::parse_rfc3339(T0)?));
    let g = Gatos::open(
        repo.path(),
        gatos::OpenOptions {
            clock: Some(clock),
            seed: Some(seed),
        },
    )?;
    g.keys().init(false)?;
    Ok((repo, g))
}

fn sync(g: &Gatos) -> TestResult<gatos_types::sync::SyncReport> {
    Ok(g.sync(&SyncOptions {
        remote: Some("hub".into()),
        ..SyncOptions::default()
    })?)
}

fn trust(g: &Gatos, other: &Gatos) -> TestResult {
    let key = other.keys().current().ok_or("a key")?;
    g.keys().trust(&key)?;
    Ok(())
}

#[test]
fn what_a_hub_and_a_second_node_bring() -> TestResult {
    let hub = TempRepo::bare()?;
    let (repo_a, a) = node(&hub, 1)?;
    let (repo_b, b) = node(&hub, 2)?;
    assert_ne!(a.keys().current(), b.keys().current(), "two keys");
    trust(&a, &b)?;
    trust(&b, &a)?;

    // A ref at the hub that is not what its name says: rejected, and reported while the
    // hub still holds it.
    let empty = hub.git(&["mktree"])?;
    let junk = hub.git(&["commit-tree", empty.trim(), "-m", "junk"])?;
    let junk_ref = "refs/gatos/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV/job";
    hub.git(&["update-ref", junk_ref, junk.trim()])?;
    let report = sync(&a)?;
    assert_eq!(report.rejected_count, 1, "{report:?}");
    let findings = run(&a)?;
    let f = found(&findings, "sync-rejected", junk_ref);
    assert!(f.fix.contains("hub"), "{f:?}");
    hub.git(&["update-ref", "-d", junk_ref])?;
    sync(&a)?;
    not_found(&run(&a)?, "sync-rejected");

    // One job, run to a verified result on both nodes while apart: both results are
    // kept, and reported on the node that learns of the other.
    let id = enqueue(&a, 3)?;
    sync(&a)?;
    sync(&b)?;
    for (g, name) in [(&a, "on-a"), (&b, "on-b")] {
        let lease = g.jobs().claim(id, &worker(g, name)?)?;
        finish(g, &lease, Outcome::Succeeded, Some(0))?;
    }
    sync(&a)?;
    let report = sync(&b)?;
    assert_eq!(report.conflicts.len(), 1, "{report:?}");
    found(&run(&b)?, "result-conflict", &id.to_string());

    // A pending job whose enqueuer this node stopped trusting.
    let waiting = enqueue(&a, 3)?;
    sync(&a)?;
    sync(&b)?;
    not_found(&run(&b)?, "job-enqueuer-untrusted");
    let a_key = a.keys().current().ok_or("a key")?.to_string();
    repo_b.git(&["config", "--unset", "gatos.trust", &regex_literal(&a_key)])?;
    let findings = run(&b)?;
    let f = found(
        &findings,
        "job-enqueuer-untrusted",
        &format!("refs/gatos/jobs/{waiting}/job"),
    );
    assert!(
        f.fix.contains(&a_key),
        "the fix names the key to trust: {f:?}"
    );
    repo_a.assert_fsck_strict()?;
    repo_b.assert_fsck_strict()
}

/// A value as a `git config` value-pattern matching only itself.
fn regex_literal(s: &str) -> String {
    format!(
        "^{}$",
        s.chars()
            .map(|c| if c.is_ascii_alphanumeric() {
                c.to_string()
            } else {
                format!("\\{c}")
            })
            .collect::<String>()
    )
}

#[test]
fn a_half_written_snapshot_is_found_and_fix_removes_it() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _clock) = start(&repo)?;
    let id = enqueue(&g, 1)?;
    gatos::snapshot::saved::create(&g, "kept")?;
    let job = head_of(&repo, &format!("refs/gatos/jobs/{id}/job"))?;
    // What a crash between a create's copies and its meta leaves.
    repo.git(&[
        "update-ref",
        &format!("refs/gatos-snapshots/half/r/jobs/{id}/job"),
        &job,
    ])?;
    let findings = run(&g)?;
    let f = found(&findings, "snapshot-orphan", "refs/gatos-snapshots/half/");
    assert!(!f.fixed);
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let fixed = doctor::run(&g, true)?;
    assert!(
        found(&fixed, "snapshot-orphan", "refs/gatos-snapshots/half/").fixed,
        "{fixed:#?}"
    );
    assert_eq!(run(&g)?, Vec::<Finding>::new());
    let left = repo.git(&[
        "for-each-ref",
        "--format=%(refname)",
        "refs/gatos-snapshots/",
    ])?;
    assert!(!left.contains("half"), "{left}");
    assert!(left.contains("refs/gatos-snapshots/kept/meta"), "{left}");
    repo.assert_fsck_strict()
}

/// A commit on `parent` that is no message (an empty tree): what a hand moving a topic's
/// head leaves there.
fn no_message_on(repo: &TempRepo, parent: &str) -> TestResult<String> {
    let empty = repo.git(&["mktree"])?;
    Ok(repo
        .git(&[
            "commit-tree",
            empty.trim(),
            "-p",
            parent,
            "-m",
            "no message",
        ])?
        .trim()
        .to_owned())
}

/// A repository and a handle that journals its enqueues and publishes (its flusher runs,
/// with a flush bound longer than the test: only doctor materializes).
fn journaling() -> TestResult<(TempRepo, Gatos)> {
    let repo = TempRepo::new()?;
    repo.git(&["config", "gatos.journal.flushMs", "60000"])?;
    let (g, _clock) = start(&repo)?;
    g.start_journal_flusher();
    Ok((repo, g))
}

/// Journaled enqueues (ADR 0046) that cannot become refs: a job whose ref someone made by
/// hand with another commit is set aside, and a ref where a job's directory must go keeps
/// the journal from being made commits. Doctor names both as errors, and its other checks
/// still run on the refs as they are.
#[test]
fn a_stuck_journal_and_a_set_aside_enqueue_are_reported() -> TestResult {
    let (repo, g) = journaling()?;
    let hand = {
        let empty = repo.git(&["mktree"])?;
        repo.git(&["commit-tree", empty.trim(), "-m", "not a job"])?
    };
    let a = enqueue(&g, 1)?;
    repo.git(&[
        "update-ref",
        &format!("refs/gatos/jobs/{a}/job"),
        hand.trim(),
    ])?;
    let findings = run(&g)?;
    let f = found(
        &findings,
        "journal-rejected",
        &format!("refs/gatos/jobs/{a}/job"),
    );
    assert_eq!(f.severity, Severity::Error);
    assert!(f.message.contains("already exists"), "{f:#?}");
    assert!(f.fix.contains("jobs.enqueued.rejected"), "{f:#?}");
    // The advice for an id taken by another job (the record's code, Conflict): look at both.
    assert!(
        f.fix.contains(&format!("git gatos jobs show {a}")),
        "{f:#?}"
    );
    not_found(&findings, "journal-stuck");

    let b = enqueue(&g, 1)?;
    repo.git(&["update-ref", &format!("refs/gatos/jobs/{b}"), hand.trim()])?;
    let findings = run(&g)?;
    let f = found(&findings, "journal-stuck", "jobs.enqueued");
    assert_eq!(f.severity, Severity::Error);
    // The other checks ran: the stray ref is reported, the set-aside record still is.
    found(&findings, "ref-unknown", &format!("refs/gatos/jobs/{b}"));
    found(
        &findings,
        "journal-rejected",
        &format!("refs/gatos/jobs/{a}/job"),
    );

    // Once the stray ref is gone, the next doctor makes the journal commits.
    repo.git(&["update-ref", "-d", &format!("refs/gatos/jobs/{b}")])?;
    let findings = run(&g)?;
    not_found(&findings, "journal-stuck");
    assert!(
        repo.git(&["rev-parse", "--verify", &format!("refs/gatos/jobs/{b}/job")])
            .is_ok()
    );
    // Removing the set-aside file, once looked at, ends the last finding.
    std::fs::remove_file(repo.git_dir().join("gatos/journal/jobs.enqueued.rejected"))?;
    let left: Vec<_> = run(&g)?
        .into_iter()
        .filter(|f| f.code.as_str().starts_with("journal-"))
        .collect();
    assert!(left.is_empty(), "{left:#?}");
    repo.assert_fsck_strict()
}

/// A topic's journal that cannot be made commits (here `gatos.jobs`, where the job events
/// of a journaling handle wait): doctor names it, does not fail, reads the topic as
/// committed, and does not take the events waiting in it for missing.
#[test]
fn a_stuck_topic_journal_is_reported_and_its_events_are_not_taken_for_missing() -> TestResult {
    let (repo, g) = journaling()?;
    let id = enqueue(&g, 1)?;
    let journal = repo.git_dir().join("gatos/journal/messages.gatos.jobs");
    assert!(
        std::fs::metadata(&journal).map_or(0, |m| m.len()) > 0,
        "the job's event waits in the topic's journal"
    );
    // A ref where the topic's head must go: its first commit cannot be made.
    let hand = {
        let empty = repo.git(&["mktree"])?;
        repo.git(&["commit-tree", empty.trim(), "-m", "not a message"])?
    };
    let stray = "refs/gatos/messages/gatos.jobs/head/x";
    repo.git(&["update-ref", stray, hand.trim()])?;
    let findings = run(&g)?;
    let f = found(&findings, "journal-stuck", "messages.gatos.jobs");
    assert!(f.message.contains("event-missing"), "{f:#?}");
    not_found(&findings, "event-missing");
    found(&findings, "ref-unknown", stray);
    // The job itself was made a ref: its journal is another one.
    assert!(
        repo.git(&[
            "rev-parse",
            "--verify",
            &format!("refs/gatos/jobs/{id}/job")
        ])
        .is_ok()
    );
    // With the stray ref gone, the next doctor makes the event a commit; nothing missing.
    repo.git(&["update-ref", "-d", stray])?;
    let findings = run(&g)?;
    not_found(&findings, "journal-stuck");
    not_found(&findings, "event-missing");
    assert_eq!(std::fs::metadata(&journal).map_or(0, |m| m.len()), 0);

    // Now the topic has commits, and the next event waits in the journal while its head
    // is moved by hand to a commit that is no message: the journal cannot be appended
    // after it. Reading the topic's events would fail at that head, and the waiting
    // event would be missing: doctor checks no events and says why.
    let head_ref = "refs/gatos/messages/gatos.jobs/head";
    let head = head_of(&repo, head_ref)?;
    enqueue(&g, 1)?;
    assert!(std::fs::metadata(&journal).map_or(0, |m| m.len()) > 0);
    let bogus = no_message_on(&repo, &head)?;
    repo.git(&["update-ref", head_ref, bogus.trim()])?;
    let findings = run(&g)?;
    found(&findings, "journal-stuck", "messages.gatos.jobs");
    found(&findings, "chain-invalid", bogus.trim());
    not_found(&findings, "event-missing");
    // Put back, the journal is appended after the head and every event is there.
    repo.git(&["update-ref", head_ref, &head])?;
    let findings = run(&g)?;
    not_found(&findings, "journal-stuck");
    not_found(&findings, "event-missing");
    repo.assert_fsck_strict()
}

/// A ref holding a blob made doctor stop with one error naming no ref and no finding (found
/// by a black-box test): now every such ref is named by its own finding, a check that
/// stops on one is `check-incomplete`, and the other checks still run.
#[test]
fn refs_holding_a_blob_are_named_and_the_other_checks_run() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _clock) = start(&repo)?;
    let t = topic("ci.events");
    publish(&g, &t, 2)?;
    let blob = write_object(&repo, "blob", b"hello\n")?;
    for (name, code) in [
        (
            "refs/gatos/consumers/g/ci.events",
            "checkpoint-outside-topic",
        ),
        ("refs/gatos/config/topics/ci.events", "config-invalid"),
        ("refs/gatos/config/queues/default", "config-invalid"),
        ("refs/gatos/messages/ci.events/summary", "summary-invalid"),
        ("refs/gatos/manifests/m1", "ref-mismatch"),
        ("refs/gatos/archive/jobs/2026-12", "ref-mismatch"),
    ] {
        repo.git(&["update-ref", name, &blob])?;
        let findings = run(&g)?;
        found(&findings, code, name);
        repo.git(&["update-ref", "-d", name])?;
    }
    // A check that stops is itself a finding, and the checks after it still run.
    repo.git(&["update-ref", "refs/gatos/archive/jobs/2026-12", &blob])?;
    std::fs::write(repo.git_dir().join("refs/gatos/junk"), "not a ref\n")?;
    let findings = run(&g)?;
    let stopped = with_code(&findings, "check-incomplete");
    assert!(!stopped.is_empty(), "{findings:?}");
    assert!(
        stopped[0].message.contains("incomplete"),
        "{:?}",
        stopped[0]
    );
    found(&findings, "ref-leftover", "junk");
    found(&findings, "ref-mismatch", "refs/gatos/archive/jobs/2026-12");
    Ok(())
}
