//! Crash tests of the write paths (issue #21 point 2; ADR 0046): `scripts/crash_check.py`
//! records a real `git-gatos` or `gatosd` under strace (a publish, a batch, enqueues, a
//! consumer's checkpoint, a worker running a job, the daemon publishing and enqueueing) and checks every state a crash can leave — each
//! prefix of its calls (a killed process), the minimum a power cut keeps at each
//! acknowledgement (with `gatos.fsync = true`), and a real SIGKILL at every changing call —
//! with `git fsck --strict`, `git gatos doctor` and the acknowledged writes.
//!
//! They need strace (Debian: `apt-get install strace`; `.ci/run` installs it). Without it
//! they skip with a line, except under `CI=true`, where they fail.

use std::path::Path;
use std::process::Command;

use gatos_testutil::TestResult;

use crate::support::git_gatos_bin;

/// True when strace runs; false (with a line) when it is missing outside CI.
fn can_run(test: &str) -> TestResult<bool> {
    let ok = Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Ok(true);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        return Err(
            format!("{test}: CI=true and strace is missing (apt-get install strace)").into(),
        );
    }
    eprintln!("SKIPPED {test}: strace is missing (Debian: apt-get install strace)");
    Ok(false)
}

/// Runs the checker; returns its last line, or an error with everything it printed.
fn check(args: &[&str]) -> TestResult<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/crash_check.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(git_gatos_bin())
        .args(args)
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        return Err(format!("crash_check.py {args:?}: {}\n{text}", out.status).into());
    }
    Ok(text.trim().lines().last().unwrap_or("").to_owned())
}

#[test]
fn every_crash_state_of_a_single_publish_is_sound() -> TestResult {
    if !can_run("single publish")? {
        return Ok(());
    }
    let line = check(&["publish"])?;
    assert!(line.starts_with("ok publish"), "{line}");
    assert!(line.contains("real kills"), "{line}");
    Ok(())
}

#[test]
fn every_crash_state_of_a_batch_enqueues_and_a_checkpoint_is_sound() -> TestResult {
    if !can_run("batch, enqueue and consume")? {
        return Ok(());
    }
    // `batch-packed`: two chunks, each written as one pack on a thread of its own while its
    // commits are made (ADR 0046, session 16).
    for s in ["batch", "batch-packed", "enqueue", "consume"] {
        let line = check(&[s])?;
        assert!(line.starts_with(&format!("ok {s}")), "{line}");
    }
    Ok(())
}

/// gatosd itself, publishing for its socket's clients one at a time and four at once: every
/// prefix of the daemon's calls (its threads' calls in the order they returned) holds every
/// publish it had answered.
#[test]
fn every_crash_state_of_the_daemon_publishing_is_sound() -> TestResult {
    if !can_run("daemon")? {
        return Ok(());
    }
    let line = check(&["daemon"])?;
    assert!(line.starts_with("ok daemon"), "{line}");
    assert!(line.contains("7 acknowledgements"), "{line}");
    // gatosd killed at its journal's appends and truncations and the head's renames.
    assert!(!line.contains(" 0 real kills"), "{line}");
    Ok(())
}

/// gatosd answering enqueues from the enqueue journal (ADR 0046), one at a time and four at
/// once: every prefix of its calls holds every job it had answered, and so does a real kill
/// at each append to and truncation of the journal and at each rename.
#[test]
fn every_crash_state_of_the_daemon_enqueueing_is_sound() -> TestResult {
    if !can_run("daemon-enqueue")? {
        return Ok(());
    }
    let line = check(&["daemon-enqueue"])?;
    assert!(line.starts_with("ok daemon-enqueue"), "{line}");
    assert!(line.contains("7 acknowledgements"), "{line}");
    assert!(!line.contains(" 0 real kills"), "{line}");
    Ok(())
}

/// gatosd serving four connections that claim, heartbeat and complete at once with the
/// group commit of job actions on (ADR 0046): every state a crash can leave, and a real
/// kill at each rename and unlink, holds every claim, heartbeat and end it had answered.
#[test]
fn every_crash_state_of_the_daemon_grouping_job_actions_is_sound() -> TestResult {
    if !can_run("daemon-jobs")? {
        return Ok(());
    }
    let line = check(&["daemon-jobs"])?;
    assert!(line.starts_with("ok daemon-jobs"), "{line}");
    assert!(line.contains("12 acknowledgements"), "{line}");
    assert!(!line.contains(" 0 real kills"), "{line}");
    Ok(())
}

#[test]
fn every_crash_state_of_a_worker_running_a_job_is_sound() -> TestResult {
    if !can_run("worker")? {
        return Ok(());
    }
    let line = check(&["worker"])?;
    assert!(line.starts_with("ok worker"), "{line}");
    Ok(())
}

/// With `gatos.fsync = true`, by both methods that promise a power cut on any POSIX file
/// system: what the syncs forced before each acknowledgement holds the write. (`batch` and
/// `ordered` rely on ext4's ordering, which this POSIX model does not grant; see
/// docs/PERFORMANCE.md.) This caught `fsync` leaving a new `objects/xx/` unnamed.
#[test]
fn an_acknowledged_durable_write_survives_a_power_cut() -> TestResult {
    if !can_run("power cut")? {
        return Ok(());
    }
    for (s, method) in [
        ("publish", "fsync"),
        ("publish", "syncfs"),
        ("batch", "fsync"),
        ("batch-packed", "fsync"),
        ("enqueue", "fsync"),
        ("consume", "fsync"),
        ("worker", "fsync"),
        ("daemon", "fsync"),
    ] {
        let line = check(&[s, "--fsync", method, "--no-kills"])?;
        assert!(line.starts_with(&format!("ok {s}")), "{line}");
        assert!(!line.contains(" 0 power-cut states"), "{line}");
    }
    Ok(())
}

/// The controls: a writer that moves a ref before writing the objects it names, and one
/// whose ref update is lost while it still acknowledges, must both be caught, or the checks
/// above prove nothing.
#[test]
fn the_checker_catches_a_misordered_or_lost_ref_update() -> TestResult {
    if !can_run("controls")? {
        return Ok(());
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/crash_check.py");
    for (control, expected) in [
        ("ref-first", "invalid sha1 pointer"),
        ("rename-first", "is missing"),
    ] {
        let out = Command::new("python3")
            .arg(&script)
            .arg(git_gatos_bin())
            .args(["publish", "--no-kills", "--break-order", control])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !out.status.success(),
            "the control {control} passed: {text}"
        );
        assert!(text.starts_with("FAIL publish"), "{control}: {text}");
        assert!(text.contains(expected), "{control}: {text}");
    }
    Ok(())
}
