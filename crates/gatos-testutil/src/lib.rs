//! Test helpers: real repositories in temp dirs, driven and checked with the real `git`.
//!
//! Every repository is hermetic: `HOME` inside the temp dir, no system or global Git
//! config, fixed author and committer, `LC_ALL=C`. Tests that write end with
//! [`TempRepo::assert_fsck_strict`].
#![allow(clippy::unwrap_used, reason = "test helpers fail loudly by design")]
#![allow(missing_docs, reason = "test-only crate")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The result type of tests.
pub type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// A hermetic environment for git and gatos processes.
pub fn hermetic(cmd: &mut Command, home: &Path) {
    cmd.env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Test Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.com")
        .env("GIT_COMMITTER_NAME", "Test Committer")
        .env("GIT_COMMITTER_EMAIL", "committer@example.com")
        .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
        .env("LC_ALL", "C")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GATOS_LOG")
        .env_remove("RUST_LOG");
}

/// A repository in a temp dir, removed when dropped.
pub struct TempRepo {
    dir: tempfile::TempDir,
    path: PathBuf,
    bare: bool,
}

impl TempRepo {
    /// `git init` of a work tree.
    pub fn new() -> TestResult<TempRepo> {
        Self::create(false)
    }

    /// `git init --bare`.
    pub fn bare() -> TestResult<TempRepo> {
        Self::create(true)
    }

    fn create(bare: bool) -> TestResult<TempRepo> {
        let dir = tempfile::Builder::new().prefix("gatos-test-").tempdir()?;
        let path = dir.path().join(if bare { "repo.git" } else { "repo" });
        std::fs::create_dir_all(dir.path().join("home"))?;
        let repo = TempRepo { dir, path, bare };
        let mut args = vec!["init", "-q", "-b", "main"];
        if bare {
            args.push("--bare");
        }
        let p = repo.path.to_string_lossy().into_owned();
        args.push(&p);
        repo.git_in(repo.dir.path(), &args)?;
        Ok(repo)
    }

    /// The work tree (or the bare repository).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The git dir.
    pub fn git_dir(&self) -> PathBuf {
        if self.bare {
            self.path.clone()
        } else {
            self.path.join(".git")
        }
    }

    /// The temp dir holding the repository (and `home/`).
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The hermetic `HOME`.
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// A `git` command in this repository, hermetic.
    pub fn git_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("git");
        cmd.current_dir(&self.path).args(args);
        hermetic(&mut cmd, &self.home());
        cmd
    }

    fn git_in(&self, dir: &Path, args: &[&str]) -> TestResult<String> {
        let mut cmd = Command::new("git");
        cmd.current_dir(dir).args(args);
        hermetic(&mut cmd, &self.home());
        run(cmd)
    }

    /// Runs git and returns its stdout; fails on a non-zero exit.
    pub fn git(&self, args: &[&str]) -> TestResult<String> {
        run(self.git_cmd(args))
    }

    /// Runs git and returns its raw output, whatever the exit status.
    pub fn git_output(&self, args: &[&str]) -> TestResult<Output> {
        Ok(self.git_cmd(args).stdin(Stdio::null()).output()?)
    }

    /// Asserts `git fsck --strict` passes (objects reachable from every ref).
    ///
    /// `git fsck` lists the objects before it reads the refs, so a gatosd flushing its
    /// journal meanwhile makes it report the commit it just wrote as `missing` (or a `broken
    /// link` to an object written after the scan passed its directory). When every problem
    /// is of that kind and every object named exists afterwards, fsck runs again from those
    /// objects (reading no ref) and must pass: an object really missing is still missing.
    /// `gatos_store::Store::fsck` has the same rule; this check does not call it, so that
    /// what the tests trust is git alone, not the code under test.
    pub fn assert_fsck_strict(&self) -> TestResult {
        const FSCK: [&str; 4] = ["fsck", "--strict", "--no-dangling", "--no-progress"];
        let mut out = self.git_output(&FSCK)?;
        if !out.status.success() {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if let Some(heads) = self.written_during_fsck(&text)? {
                let mut args: Vec<&str> = FSCK.to_vec();
                args.extend(heads.iter().map(String::as_str));
                out = self.git_output(&args)?;
            }
        }
        if !out.status.success()
            || !out.stderr.is_empty() && String::from_utf8_lossy(&out.stderr).contains("error")
        {
            return Err(format!(
                "git fsck --strict failed: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        Ok(())
    }

    /// The objects to run fsck from again when every problem in `report` is one a writer
    /// beside fsck causes and every object it names exists now; `None` otherwise.
    fn written_during_fsck(&self, report: &str) -> TestResult<Option<Vec<String>>> {
        let mut problems: Vec<String> = Vec::new();
        for l in report.lines() {
            let words = l.split_whitespace().collect::<Vec<_>>().join(" ");
            if words.is_empty() || words.starts_with("notice:") {
                continue;
            }
            match problems.last_mut() {
                Some(last) if l.starts_with(char::is_whitespace) => {
                    last.push(' ');
                    last.push_str(&words);
                }
                _ => problems.push(words),
            }
        }
        let mut heads = Vec::new();
        for p in &problems {
            let words: Vec<&str> = p.split_whitespace().collect();
            let (head, named) = match words.as_slice() {
                ["missing", _, id] => (*id, vec![*id]),
                ["broken", "link", "from", _, from, "to", _, to] => (*from, vec![*from, *to]),
                _ => return Ok(None),
            };
            for id in named {
                if !self.git_output(&["cat-file", "-e", id])?.status.success() {
                    return Ok(None);
                }
            }
            heads.push(head.to_owned());
        }
        Ok((!heads.is_empty()).then_some(heads))
    }

    /// Reads a ref with `git rev-parse --verify -q`; `None` when absent.
    pub fn rev_parse(&self, name: &str) -> TestResult<Option<String>> {
        let out = self.git_output(&["rev-parse", "--verify", "-q", name])?;
        Ok(out
            .status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned()))
    }

    /// Lists refs under a prefix as `(name, oid)`, with `git for-each-ref`.
    pub fn refs(&self, prefix: &str) -> TestResult<Vec<(String, String)>> {
        let out = self.git(&["for-each-ref", "--format=%(refname) %(objectname)", prefix])?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned())))
            .collect())
    }
}

fn run(mut cmd: Command) -> TestResult<String> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if !out.status.success() {
        return Err(format!(
            "{:?} failed ({}): {}",
            cmd,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// Finds a binary of this workspace next to the test executable (target/<profile>/).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let mut dir = exe.parent().unwrap().to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join(name)
}

/// Waits for `cond` with a deadline, polling; fails with `what` on timeout.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> TestResult {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if cond() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what}").into());
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Polls `f` on this thread until it is ready, the thread parked between polls until the
/// future wakes it; fails after `timeout`. For futures gatos gives without a runtime.
pub fn block_on<F: std::future::Future + Unpin>(
    timeout: Duration,
    mut f: F,
) -> TestResult<F::Output> {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};

    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let deadline = Instant::now() + timeout;
    loop {
        if let Poll::Ready(out) = std::pin::Pin::new(&mut f).poll(&mut cx) {
            return Ok(out);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("timed out after {timeout:?} waiting for a future").into());
        }
        std::thread::park_timeout(left);
    }
}
