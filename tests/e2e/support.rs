use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use gatos_testutil::{TempRepo, TestResult, bin, hermetic};

/// The `git-gatos` binary.
pub fn git_gatos_bin() -> PathBuf {
    bin("git-gatos")
}

/// A `git-gatos` command in `dir`, hermetic.
pub fn gatos_cmd(repo: &TempRepo, args: &[&str]) -> Command {
    let mut cmd = Command::new(git_gatos_bin());
    cmd.current_dir(repo.path()).args(args);
    hermetic(&mut cmd, &repo.home());
    cmd
}

/// Runs `git-gatos`; returns its output whatever the status.
pub fn gatos(repo: &TempRepo, args: &[&str]) -> TestResult<Output> {
    Ok(gatos_cmd(repo, args).stdin(Stdio::null()).output()?)
}

/// Runs `git-gatos` and insists on success; returns stdout.
pub fn gatos_ok(repo: &TempRepo, args: &[&str]) -> TestResult<String> {
    let out = gatos(repo, args)?;
    if !out.status.success() {
        return Err(format!(
            "git-gatos {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// Runs `git-gatos` with stdin.
pub fn gatos_stdin(repo: &TempRepo, args: &[&str], input: &[u8]) -> TestResult<Output> {
    use std::io::Write;
    let mut child = gatos_cmd(repo, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    // Feed stdin from a thread: the child's stdout must be drained at the same time.
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output()?;
    let _ = feeder.join();
    Ok(out)
}

/// Parses JSON lines.
pub fn json_lines(s: &str) -> TestResult<Vec<serde_json::Value>> {
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Ok(serde_json::from_str(l)?))
        .collect()
}

/// PATH with the workspace binaries first, so `git gatos` finds `git-gatos`.
pub fn path_with_bins() -> String {
    let bin = git_gatos_bin();
    let dir: &Path = bin.parent().unwrap();
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// A directory outside the repository that test jobs may write (the job sandbox hides the
/// repository; workers get it with `--sandbox-allow-write`): where jobs leave pid files and
/// logs for the test to read.
pub fn jobs_shared(repo: &TempRepo) -> PathBuf {
    let d = repo.root().join("jobs-shared");
    let _ = std::fs::create_dir_all(&d);
    d
}

/// `git gatos jobs enqueue --json ARGS…`; returns the job's id.
pub fn enqueue(repo: &TempRepo, args: &[&str]) -> TestResult<String> {
    let mut all = vec!["jobs", "enqueue", "--json"];
    all.extend_from_slice(args);
    let row = json_lines(&gatos_ok(repo, &all)?)?;
    Ok(row[0]["id"].as_str().ok_or("no id")?.to_owned())
}
