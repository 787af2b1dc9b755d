use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use gatos_testutil::{TempRepo, TestResult, bin, hermetic, wait_for};

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

/// A token file holding `lines` (`NAME TOKEN [ro]` each), mode 0600: gatosd refuses a token
/// file others can read when it serves HTTP.
pub fn token_file(repo: &TempRepo, lines: &str) -> TestResult<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let f = repo.root().join("tokens");
    std::fs::write(&f, lines)?;
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

/// Starts `gatosd --http 127.0.0.1:0 --token-file TOKENS EXTRA…` on `repo`, its socket and
/// log beside the repository as `NAME.sock` and `NAME.log`, and waits (at most 30 s) for
/// the address it writes to `<git-dir>/gatos/gatosd/http-addr`. Returns the process, the
/// address (`127.0.0.1:PORT`) and the log's path; on failure the process is killed and
/// the error holds its log.
pub fn http_daemon(
    repo: &TempRepo,
    tokens: &Path,
    name: &str,
    extra: &[&str],
) -> TestResult<(std::process::Child, String, PathBuf)> {
    let addr_file = repo.git_dir().join("gatos/gatosd/http-addr");
    let _ = std::fs::remove_file(&addr_file);
    let log = repo.root().join(format!("{name}.log"));
    let mut cmd = Command::new(bin("gatosd"));
    cmd.arg("--socket")
        .arg(repo.root().join(format!("{name}.sock")))
        .args(["--http", "127.0.0.1:0", "--token-file"])
        .arg(tokens)
        .args(extra)
        .current_dir(repo.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?);
    hermetic(&mut cmd, &repo.home());
    let mut child = cmd.spawn()?;
    let mut addr = String::new();
    let waited = gatos_testutil::wait_for(
        "gatosd to write http-addr",
        std::time::Duration::from_secs(30),
        || match std::fs::read_to_string(&addr_file) {
            Ok(a) if a.ends_with('\n') => {
                addr = a.trim().to_owned();
                true
            }
            _ => matches!(child.try_wait(), Ok(Some(_))),
        },
    );
    if waited.is_err() || addr.is_empty() {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!(
            "gatosd did not serve HTTP: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
        .into());
    }
    Ok((child, addr, log))
}

/// A `gatosd --http` of [`http_daemon`] with the tokens `tokens` (token-file lines): its
/// address and log; killed and reaped when dropped.
pub struct HttpDaemon {
    /// The process.
    pub child: std::process::Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Its stderr.
    pub log: PathBuf,
}

impl HttpDaemon {
    /// Starts it on `repo` (see [`http_daemon`]).
    pub fn start(
        repo: &TempRepo,
        tokens: &str,
        name: &str,
        extra: &[&str],
    ) -> TestResult<HttpDaemon> {
        let file = token_file(repo, tokens)?;
        let (child, addr, log) = http_daemon(repo, &file, name, extra)?;
        Ok(HttpDaemon { child, addr, log })
    }

    /// `http://ADDR` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `python3 -c script` with `env`; its stdout, or an error with its stderr and the
    /// daemon's log.
    pub fn python(&self, script: &str, env: &[(&str, &str)]) -> TestResult<String> {
        let out = Command::new("python3")
            .args(["-c", script])
            .envs(env.iter().copied())
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "python failed:\n{}\n--- gatosd:\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.log()
            )
            .into());
        }
        Ok(String::from_utf8(out.stdout)?)
    }
}

impl Drop for HttpDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A repository with two topics, `good` and `bad`, whose `bad` head was moved with plain git
/// to a commit that is no message (ADR 0047).
pub fn a_damaged_topic() -> TestResult<TempRepo> {
    a_damaged_topic_with(|_| Ok(()))
}

/// As [`a_damaged_topic`], where the consumer group `readers` consumed both topics before
/// the damage: its checkpoint on `bad` cannot tell its lag.
pub fn a_damaged_topic_with_readers() -> TestResult<TempRepo> {
    a_damaged_topic_with(|repo| {
        for t in ["good", "bad"] {
            gatos_ok(repo, &["messages", "consume", "readers", t])?;
        }
        Ok(())
    })
}

/// As [`a_damaged_topic`], with `before` run after the two publishes and before the damage.
fn a_damaged_topic_with(before: impl FnOnce(&TempRepo) -> TestResult) -> TestResult<TempRepo> {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    gatos_ok(&repo, &["messages", "publish", "good", "--data", "1"])?;
    gatos_ok(&repo, &["messages", "publish", "bad", "--data", "1"])?;
    before(&repo)?;
    move_head_to_no_message(&repo, "bad")?;
    Ok(repo)
}

/// Moves `topic`'s head, outside gatos, to a commit of the same tree that is no message.
pub fn move_head_to_no_message(repo: &TempRepo, topic: &str) -> TestResult {
    let name = format!("refs/gatos/messages/{topic}/head");
    let head = repo.git(&["rev-parse", &name])?;
    let tree = format!("{}^{{tree}}", head.trim());
    let bogus = repo.git(&["commit-tree", &tree, "-m", "not a message"])?;
    repo.git(&["update-ref", &name, bogus.trim(), head.trim()])?;
    Ok(())
}

/// Waits for a child to exit, with a deadline (killed when it passes); returns its output.
pub fn finish(mut child: Child, what: &str, timeout: Duration) -> TestResult<Output> {
    wait_for(what, timeout, || matches!(child.try_wait(), Ok(Some(_)))).inspect_err(|_| {
        let _ = child.kill();
    })?;
    Ok(child.wait_with_output()?)
}
