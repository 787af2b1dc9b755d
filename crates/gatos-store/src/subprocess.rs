//! The `git` executable, for what gix cannot do (repack, pack-refs, commit-graph; later
//! push). Runs hermetically enough to parse: C locale, no prompts, no pager, stdin closed.

use std::ffi::OsStr;
use std::process::{Command, Output, Stdio};

use crate::Store;
use crate::error::{Error, Result};

/// The longest stderr tail kept in an error message, in bytes.
const STDERR_TAIL: usize = 2048;

impl Store {
    /// Builds a `git` command bound to this repository (crate-private: other crates get
    /// purpose-built methods such as [`Store::fsck`], never a raw command).
    pub(crate) fn git_command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(std::env::var_os("GATOS_GIT").unwrap_or_else(|| "git".into()));
        cmd.arg("--git-dir")
            .arg(self.common_dir())
            .args([
                "-c",
                "core.fsmonitor=false",
                "-c",
                "gc.auto=0",
                "-c",
                "maintenance.auto=false",
            ])
            .args(args)
            .env("LC_ALL", "C")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .env_remove("LANGUAGE")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `git` with `args` and returns its output; a non-zero exit is an error.
    ///
    /// # Errors
    /// [`Error::Subprocess`] with the tail of stderr.
    pub(crate) fn run_git(&self, args: &[&str]) -> Result<Output> {
        let mut cmd = self.git_command(args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        tracing::debug!(?args, "spawning git");
        let out = cmd.output().map_err(|e| Error::Subprocess {
            args: args.join(" "),
            status: "not started".into(),
            stderr: e.to_string(),
        })?;
        if !out.status.success() {
            return Err(Error::Subprocess {
                args: args.join(" "),
                status: out.status.to_string(),
                stderr: tail(&out.stderr),
            });
        }
        Ok(out)
    }
}

/// Returns the last [`STDERR_TAIL`] bytes of a subprocess's output, as text.
pub fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(STDERR_TAIL);
    String::from_utf8_lossy(&bytes[start..]).trim().to_owned()
}
