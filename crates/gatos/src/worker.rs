//! The worker: claims jobs, runs each attempt under a supervisor in a sandbox, heartbeats
//! while it runs, fences itself when it loses the claim, and writes the result with logs,
//! outputs and a signed proof of execution (DESIGN §4, ADR 0012, ADR 0021).
//!
//! One thread per slot (`concurrency`); each claims, runs and finishes one job at a time.
//! While a job runs, its slot thread supervises it: every lease/3 it heartbeats (and checks
//! for a cancel request), and it enforces the timeout.
//!
//! Each attempt gets its own directory (its `HOME`, `TMPDIR`, the inputs file and, when
//! the job names a commit, that commit's files as its sources) and a supervisor process,
//! `git-gatos __run-job` ([`supervisor`]), which confines itself with the Landlock sandbox
//! ([`sandbox`]), starts the job with an environment built from an allowlist (`PATH`,
//! `LANG`, `LC_ALL`, `TZ` and `--pass-env` names from the worker; the manifest's `env` with
//! `secret://` references resolved from the operator's sources; `HOME`, `TMPDIR`,
//! `GATOS_JOB`, `GATOS_ATTEMPT`, `GATOS_QUEUE`, `GATOS_WORKER`, `GATOS_INPUTS`,
//! `GATOS_RUN_ID`), and kills every process the job started when it ends or when the worker
//! dies. A worker that starts ends what a crashed worker left ([`leftovers`]).
//!
//! While the job runs, its output is redacted as it arrives and written, within the log
//! cap, to a spool under the git directory that `jobs logs` reads on this node
//! ([`crate::jobs::logs`]); the spool goes once the attempt's commit holds the same bytes.
//!
//! Stopping: TERM to the job (through the supervisor), then KILL after the grace period
//! (timeout, cancel, worker shutdown); KILL at once when the claim is lost (self-fencing:
//! another worker may already run the job).

pub mod leftovers;
pub mod sandbox;
pub mod supervisor;

use std::collections::BTreeMap;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use gatos_types::jobs::{JobState, Outcome, WorkerRow};
use gatos_types::{Capability, Dur, ErrorCode, Queue, Timestamp, Ulid, WorkerId};

use crate::Gatos;
use crate::error::{Error, Result};
use crate::jobs::lifecycle::{ClaimOptions, DEFAULT_LEASE, Finish, Lease, SecretProbe};
use crate::jobs::logs::{Spool, SpoolWriter, Stream};
use crate::jobs::redact::{Redactor, StreamRedactor};
use crate::jobs::secrets;
use crate::jobs::waiting::{IdleReport, WorkerSpec};
use crate::proofs;

/// The default cap on each captured stream.
pub const DEFAULT_LOG_CAP: usize = 4 * 1024 * 1024;
/// The cap on all outputs of one attempt together.
pub const OUTPUTS_CAP: u64 = 64 * 1024 * 1024;
/// How long a process has between TERM and KILL.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);
/// `--drain` waits for jobs that become claimable within this (retries, short delays).
pub const DRAIN_HORIZON: Dur = Dur::from_secs(600);
/// Variables passed through from the worker's environment (more with `--pass-env`).
pub const PASSED_ENV: &[&str] = &["PATH", "LANG", "LC_ALL", "TZ"];

/// When a worker stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Runs at most one job, then exits.
    Once,
    /// Runs until nothing it may claim is left (now or within [`DRAIN_HORIZON`]).
    Drain,
    /// Runs until told to stop.
    Forever,
}

/// A worker's settings.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Its id (recorded in claims).
    pub id: WorkerId,
    /// Queues it serves (empty: `default`).
    pub queues: Vec<Queue>,
    /// Capabilities it offers.
    pub caps: Vec<Capability>,
    /// Jobs run at once.
    pub concurrency: usize,
    /// Lease length (heartbeats every third of it).
    pub lease: Dur,
    /// When to stop.
    pub mode: Mode,
    /// The base directory of jobs that name no checkout (default: an empty directory per
    /// attempt). Refused when it contains the git directory.
    pub workdir: Option<PathBuf>,
    /// A file of `NAME=VALUE` lines resolving `secret://NAME`.
    pub secrets_file: Option<PathBuf>,
    /// A directory of files named after secrets, each holding one value.
    pub secrets_dir: Option<PathBuf>,
    /// Names of the worker's environment variables that `secret://NAME` may resolve.
    pub secret_env: Vec<String>,
    /// The sandbox (`--sandbox`).
    pub sandbox: sandbox::Mode,
    /// More directories jobs may read and execute.
    pub sandbox_read: Vec<PathBuf>,
    /// More directories jobs may write.
    pub sandbox_write: Vec<PathBuf>,
    /// The `git-gatos` executable that runs `__run-job` (default: this executable).
    pub supervisor: Option<PathBuf>,
    /// Bytes kept of each of stdout and stderr.
    pub log_cap: usize,
    /// TERM-to-KILL grace period.
    pub grace: Duration,
    /// Further variables passed through from the worker's environment.
    pub pass_env: Vec<String>,
    /// Longest wait between looks for new jobs when idle.
    pub idle_poll: Duration,
    /// Run jobs whatever their enqueuer (ADR 0019; also `gatos.worker.allowUntrustedEnqueuers`).
    pub allow_untrusted_enqueuers: bool,
}

impl WorkerOptions {
    /// Defaults for a worker named `id`.
    pub fn new(id: WorkerId) -> WorkerOptions {
        WorkerOptions {
            id,
            queues: Vec::new(),
            caps: Vec::new(),
            concurrency: 1,
            lease: DEFAULT_LEASE,
            mode: Mode::Forever,
            workdir: None,
            secrets_file: None,
            secrets_dir: None,
            secret_env: Vec::new(),
            sandbox: sandbox::Mode::Auto,
            sandbox_read: Vec::new(),
            sandbox_write: Vec::new(),
            supervisor: None,
            log_cap: DEFAULT_LOG_CAP,
            grace: DEFAULT_GRACE,
            pass_env: Vec::new(),
            idle_poll: Duration::from_millis(500),
            allow_untrusted_enqueuers: false,
        }
    }
}

/// Returns a default worker id: the host name (made a valid name) and the process id.
pub fn default_worker_id() -> WorkerId {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let mut clean: String = host
        .trim()
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    clean.truncate(40);
    let clean = clean.trim_matches('-');
    let candidate = if clean.starts_with(|c: char| c.is_ascii_lowercase()) {
        format!("{clean}-{}", std::process::id())
    } else {
        format!("worker-{}", std::process::id())
    };
    #[expect(clippy::expect_used, reason = "worker-<digits> is a valid name")]
    candidate.parse().unwrap_or_else(|_| {
        format!("worker-{}", std::process::id())
            .parse()
            .expect("worker-<digits> is a valid name")
    })
}

/// Asks a running worker to stop: the first request stops claiming (running jobs finish),
/// the second stops the running jobs (TERM, then KILL) and gives them up.
#[derive(Debug, Default)]
pub struct Control {
    level: AtomicU8,
}

impl Control {
    /// A control that has not been asked to stop.
    pub fn new() -> Control {
        Control::default()
    }

    /// Raises the stop level by one (what a signal handler calls).
    pub fn request_stop(&self) {
        let _ = self
            .level
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |l| {
                Some(l.saturating_add(1).min(2))
            });
    }

    /// Stops running jobs at once (second level).
    pub fn abort(&self) {
        self.level.store(2, Ordering::SeqCst);
    }

    fn draining(&self) -> bool {
        self.level.load(Ordering::SeqCst) >= 1
    }

    fn aborting(&self) -> bool {
        self.level.load(Ordering::SeqCst) >= 2
    }
}

/// The most attempts one worker runs at once.
pub const MAX_CONCURRENCY: usize = 256;

/// Which of the operator's secret sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretSource {
    /// [`WorkerOptions::secrets_file`].
    File,
    /// [`WorkerOptions::secrets_dir`].
    Directory,
}

impl std::fmt::Display for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SecretSource::File => "the secrets file",
            SecretSource::Directory => "the secrets directory",
        })
    }
}

/// Worker options that cannot run: the worker refuses to start (nothing is claimed).
/// Messages name the option by its meaning; a face adds its own flag.
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    /// [`WorkerOptions::concurrency`] outside 1 ..= [`MAX_CONCURRENCY`].
    #[error("concurrency must be between 1 and {MAX_CONCURRENCY}")]
    Concurrency {
        /// What was asked for.
        concurrency: usize,
    },
    /// [`WorkerOptions::lease`] outside the shortest and the longest lease.
    #[error("the lease must be between 1 second and 30 days")]
    Lease {
        /// What was asked for.
        lease: Dur,
    },
    /// [`WorkerOptions::workdir`] is not a directory.
    #[error("the work directory {} is not a directory", path.display())]
    WorkdirNotADirectory {
        /// The directory.
        path: PathBuf,
    },
    /// [`WorkerOptions::workdir`] holds (or is inside) the git directory, and so the key.
    #[error(
        "the work directory {} contains the repository's git directory, which holds the signing key; give a directory outside it (jobs get the sources as their manifest's checkout)",
        path.display()
    )]
    WorkdirHoldsGitDir {
        /// The directory.
        path: PathBuf,
    },
    /// The sandbox is required and the kernel has no Landlock.
    #[error(
        "the sandbox is required, and this kernel offers no Landlock (Linux 5.13 or later, with landlock in its lsm= list)"
    )]
    NoSandbox,
    /// A secret source lies where every job may read.
    #[error(
        "{which} {} lies in {}, which every job may read; keep secrets outside the sandbox's allowlist (for example in a 0700 directory under the worker user's home)",
        path.display(),
        open.display()
    )]
    SecretsReadable {
        /// Which source.
        which: SecretSource,
        /// Its path, as given.
        path: PathBuf,
        /// The readable directory it lies in.
        open: PathBuf,
    },
    /// A secret source (or one of its files) cannot be read.
    #[error("{what}: {error}")]
    SecretsUnreadable {
        /// What: `secrets file <path>`, `secrets directory <path>`, `secret <path>`.
        what: String,
        /// Why (its text is in the message, so it is kept here, not as the source).
        error: std::io::Error,
    },
    /// A line of the secrets file that is not `NAME=VALUE`.
    #[error("secrets file {} line {line}: expected NAME=VALUE", path.display())]
    SecretsLine {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
    },
    /// A line of the secrets file whose name is not a secret name (never its value).
    #[error("secrets file {} line {line}: {name:?} is not a secret name", path.display())]
    SecretsLineName {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// The name.
        name: String,
    },
    /// A file of the secrets directory whose name is not a secret name.
    #[error("secrets directory {}: {name:?} is not a secret name", dir.display())]
    SecretsFileName {
        /// The directory.
        dir: PathBuf,
        /// The file's name.
        name: String,
    },
    /// A secret of the directory that is not a regular file of at most 1 MiB.
    #[error("secret {}: not a file of at most 1 MiB", path.display())]
    SecretTooLarge {
        /// The file.
        path: PathBuf,
    },
    /// A name of [`WorkerOptions::secret_env`] that is not a secret name.
    #[error("the secret {name:?} to take from the environment is not a secret name")]
    SecretEnvName {
        /// The name.
        name: String,
    },
    /// A name of [`WorkerOptions::secret_env`] the worker's environment lacks.
    #[error(
        "the secret {name} to take from the environment: the worker's environment has no {name}"
    )]
    SecretEnvMissing {
        /// The name.
        name: String,
    },
}

impl gatos_types::Coded for OptionsError {
    fn code(&self) -> ErrorCode {
        match self {
            OptionsError::Concurrency { .. }
            | OptionsError::Lease { .. }
            | OptionsError::WorkdirNotADirectory { .. }
            | OptionsError::WorkdirHoldsGitDir { .. }
            | OptionsError::NoSandbox
            | OptionsError::SecretsReadable { .. }
            | OptionsError::SecretsUnreadable { .. }
            | OptionsError::SecretsLine { .. }
            | OptionsError::SecretsLineName { .. }
            | OptionsError::SecretsFileName { .. }
            | OptionsError::SecretTooLarge { .. }
            | OptionsError::SecretEnvName { .. }
            | OptionsError::SecretEnvMissing { .. } => ErrorCode::InvalidInput,
        }
    }
}

/// Secrets the worker can resolve: only from sources its operator gave it (a file, a
/// directory, named variables of its environment), never from anything else it happens to
/// hold.
#[derive(Clone, Default)]
pub struct Secrets {
    values: BTreeMap<String, String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The largest secret read from a file or directory.
const MAX_SECRET: u64 = 1024 * 1024;

impl Secrets {
    /// Loads the operator's sources: `file` holds `NAME=VALUE` lines (blank lines and `#`
    /// comments ignored); `dir` holds one file per secret, named after it, whose content
    /// (less one trailing newline) is the value; `env` names variables of the worker's
    /// environment. A name given twice takes the first source in that order.
    ///
    /// # Errors
    /// `InvalidInput` when a source cannot be read, a line is malformed or a name is not a
    /// secret name (messages name the line or file, never a value).
    pub fn load(file: Option<&Path>, dir: Option<&Path>, env: &[String]) -> Result<Secrets> {
        let mut values = BTreeMap::new();
        if let Some(path) = file {
            Self::load_file(path, &mut values)?;
        }
        if let Some(dir) = dir {
            Self::load_dir(dir, &mut values)?;
        }
        for name in env {
            if !secrets::is_valid_secret_name(name) {
                return Err(OptionsError::SecretEnvName { name: name.clone() }.into());
            }
            let Ok(v) = std::env::var(name) else {
                return Err(OptionsError::SecretEnvMissing { name: name.clone() }.into());
            };
            values.entry(name.clone()).or_insert(v);
        }
        Ok(Secrets { values })
    }

    fn load_file(path: &Path, values: &mut BTreeMap<String, String>) -> Result<()> {
        let text =
            std::fs::read_to_string(path).map_err(|error| OptionsError::SecretsUnreadable {
                what: format!("secrets file {}", path.display()),
                error,
            })?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err(OptionsError::SecretsLine {
                    path: path.to_owned(),
                    line: n + 1,
                }
                .into());
            };
            let k = k.trim();
            if !secrets::is_valid_secret_name(k) {
                return Err(OptionsError::SecretsLineName {
                    path: path.to_owned(),
                    line: n + 1,
                    name: k.to_owned(),
                }
                .into());
            }
            values.entry(k.to_owned()).or_insert_with(|| v.to_owned());
        }
        Ok(())
    }

    fn load_dir(dir: &Path, values: &mut BTreeMap<String, String>) -> Result<()> {
        let unreadable = |what: String| {
            move |error: std::io::Error| OptionsError::SecretsUnreadable { what, error }
        };
        let entries = std::fs::read_dir(dir)
            .map_err(unreadable(format!("secrets directory {}", dir.display())))?;
        for entry in entries {
            let entry =
                entry.map_err(unreadable(format!("secrets directory {}", dir.display())))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if !secrets::is_valid_secret_name(&name) {
                return Err(OptionsError::SecretsFileName {
                    dir: dir.to_owned(),
                    name,
                }
                .into());
            }
            let path = entry.path();
            let meta = std::fs::metadata(&path)
                .map_err(unreadable(format!("secret {}", path.display())))?;
            if !meta.is_file() || meta.len() > MAX_SECRET {
                return Err(OptionsError::SecretTooLarge { path }.into());
            }
            let mut v = std::fs::read_to_string(&path)
                .map_err(unreadable(format!("secret {}", path.display())))?;
            if v.ends_with('\n') {
                v.pop();
                if v.ends_with('\r') {
                    v.pop();
                }
            }
            values.entry(name).or_insert(v);
        }
        Ok(())
    }

    /// Resolves a secret by name.
    pub fn resolve(&self, name: &str) -> Option<String> {
        self.values.get(name).cloned()
    }

    /// The names it resolves (never the values): what `jobs why` checks a job against.
    pub fn names(&self) -> Vec<String> {
        self.values.keys().cloned().collect()
    }

    /// Every value, for redaction.
    pub fn all(&self) -> Vec<(String, String)> {
        self.values
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn probe(&self) -> SecretProbe {
        let me = self.clone();
        Arc::new(move |name: &str| me.resolve(name).is_some())
    }
}

/// What a worker run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Attempts run.
    pub attempts: u64,
    /// Attempts that succeeded.
    pub succeeded: u64,
    /// Attempts that did not.
    pub other: u64,
    /// A draining worker that ran out of jobs: what is pending that it did not take
    /// (other queues, capabilities it lacks, …); `None` for other modes, or when stopped.
    pub idle: Option<IdleReport>,
}

/// A worker about to claim: what a face says on start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// Its id.
    pub worker: WorkerId,
    /// The queues it takes (`default` when none were given).
    pub queues: Vec<Queue>,
    /// The capabilities it offers.
    pub caps: Vec<Capability>,
    /// Jobs run at once.
    pub concurrency: usize,
    /// The key its proofs are signed with.
    pub key: gatos_types::KeyId,
    /// The Landlock ABI jobs are confined with (`None`: no sandbox).
    pub sandbox: Option<u32>,
    /// When it stops.
    pub mode: Mode,
}

/// What a worker says as it goes, besides the rows of its attempts (a face prints these
/// on stderr: stdout carries the rows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// It passed its checks and starts claiming.
    Started(Started),
    /// A draining worker waits for a job that becomes claimable within [`DRAIN_HORIZON`]
    /// (said once per time waited for).
    Waiting {
        /// The job, when the ready index names one.
        job: Option<Ulid>,
        /// When it becomes claimable.
        until: Timestamp,
        /// What holds it until then (its `run_after`, a retry's backoff).
        why: Vec<gatos_types::jobs::WaitCondition>,
        /// When this was said.
        now: Timestamp,
    },
}

impl std::fmt::Display for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |v: &[String]| {
            if v.is_empty() {
                "none".to_owned()
            } else {
                v.join(", ")
            }
        };
        match self {
            Notice::Started(s) => {
                let queues: Vec<String> = s.queues.iter().map(ToString::to_string).collect();
                let caps: Vec<String> = s.caps.iter().map(ToString::to_string).collect();
                let sandbox = s
                    .sandbox
                    .map_or_else(|| "off".to_owned(), |abi| format!("Landlock ABI {abi}"));
                let mode = match s.mode {
                    Mode::Once => "; runs one job",
                    Mode::Drain => "; drains, then exits",
                    Mode::Forever => "",
                };
                write!(
                    f,
                    "worker {} started: queues {}; capabilities {}; concurrency {}; key {}; sandbox {sandbox}{mode}",
                    s.worker,
                    names(&queues),
                    names(&caps),
                    s.concurrency,
                    s.key
                )
            }
            Notice::Waiting {
                job,
                until,
                why,
                now,
            } => {
                let what = match job {
                    Some(id) => format!("job {id}"),
                    None => "the next job".to_owned(),
                };
                let held: Vec<String> = why
                    .iter()
                    .map(|c| format!("{} {}", c.kind.as_str(), c.detail))
                    .collect();
                let held = if held.is_empty() {
                    format!(
                        "claimable from {until} ({})",
                        crate::jobs::waiting::about(*until, *now)
                    )
                } else {
                    held.join("; ")
                };
                write!(
                    f,
                    "waiting for {what}: {held}; --drain waits at most {DRAIN_HORIZON} for a job"
                )
            }
        }
    }
}

struct Shared<'a> {
    gatos: &'a Gatos,
    opts: &'a WorkerOptions,
    claim: ClaimOptions,
    secrets: Secrets,
    key: ed25519_dalek::SigningKey,
    control: &'a Control,
    running: AtomicUsize,
    claims_left: AtomicUsize,
    summary: Mutex<Summary>,
    report: &'a (dyn Fn(&WorkerRow) + Sync),
    node: Option<String>,
    /// Jobs this worker found it may not claim (not a lost race): a draining worker stops
    /// waiting for them; a worker that runs on forgets them at each idle look.
    refused: Mutex<std::collections::BTreeSet<Ulid>>,
    /// The Landlock ABI jobs are confined with; `None`: no sandbox.
    sandbox: Option<u32>,
    /// The executable that runs `__run-job`.
    supervisor: PathBuf,
    /// The sandbox rules every attempt shares (with the worker's PATH), made once.
    base_rules: Option<sandbox::Rules>,
    /// The worker's options as `jobs why` checks them.
    spec: WorkerSpec,
    /// Says what the worker does besides its attempts.
    notice: &'a (dyn Fn(&Notice) + Sync),
    /// The time a draining worker last said it waits for.
    announced: Mutex<Option<Timestamp>>,
}

/// What jobs may write besides their own directory: the operator's additions and
/// `--workdir`.
fn sandbox_write(opts: &WorkerOptions) -> Vec<PathBuf> {
    let mut w = opts.sandbox_write.clone();
    w.extend(opts.workdir.iter().cloned());
    w
}

/// Runs a worker until its mode says to stop (or `control` does); `report` is called
/// after each attempt. Returns when every slot has stopped.
///
/// # Errors
/// `InvalidInput` for bad options or a missing signing key (`git gatos keys init`);
/// errors reading or writing the repository that persist.
pub fn run(
    gatos: &Gatos,
    opts: &WorkerOptions,
    control: &Control,
    report: &(dyn Fn(&WorkerRow) + Sync),
) -> Result<Summary> {
    run_with(gatos, opts, control, report, &|_| {})
}

/// As [`run`], with `notice` told what the worker does besides its attempts: that it
/// started (its queues, capabilities, concurrency, key), and what a draining worker waits
/// for. A draining worker that runs out of jobs returns what is pending that it did not
/// take ([`Summary::idle`]).
///
/// # Errors
/// As [`run`].
pub fn run_with(
    gatos: &Gatos,
    opts: &WorkerOptions,
    control: &Control,
    report: &(dyn Fn(&WorkerRow) + Sync),
    notice: &(dyn Fn(&Notice) + Sync),
) -> Result<Summary> {
    if opts.concurrency == 0 || opts.concurrency > MAX_CONCURRENCY {
        return Err(OptionsError::Concurrency {
            concurrency: opts.concurrency,
        }
        .into());
    }
    if crate::jobs::lifecycle::check_lease(opts.lease).is_err() {
        return Err(OptionsError::Lease { lease: opts.lease }.into());
    }
    let key = gatos.keys().signing_key()?.ok_or_else(|| {
        Error::new(
            ErrorCode::InvalidInput,
            "this repository has no signing key; run `git gatos keys init` (or `git gatos init`)",
        )
    })?;
    let key_id = gatos_types::KeyId::from_bytes(key.verifying_key().to_bytes());
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    let mut hidden = vec![
        canon(gatos.store().git_dir()),
        canon(gatos.store().common_dir()),
    ];
    hidden.dedup();
    if let Some(dir) = &opts.workdir {
        if !dir.is_dir() {
            return Err(OptionsError::WorkdirNotADirectory { path: dir.clone() }.into());
        }
        let d = canon(dir);
        if hidden.iter().any(|h| h.starts_with(&d) || d.starts_with(h)) {
            return Err(OptionsError::WorkdirHoldsGitDir { path: dir.clone() }.into());
        }
    }
    // Each attempt's directory is made under TMPDIR and granted to its job whole: inside
    // the git directory it would be the one rule that opens part of it.
    let tmp = canon(&std::env::temp_dir());
    if let Some(h) = hidden.iter().find(|h| tmp.starts_with(h)) {
        return Err(Error::new(
            ErrorCode::InvalidInput,
            format!(
                "TMPDIR {} lies in the git directory {}, which holds the signing key and the live logs; jobs' directories are made in TMPDIR: give a directory outside it",
                tmp.display(),
                h.display()
            ),
        ));
    }
    let sandbox = match opts.sandbox {
        sandbox::Mode::Off => {
            tracing::warn!(
                "the sandbox is off: jobs can read everything this user can, the signing key included"
            );
            None
        }
        mode => match sandbox::kernel_abi() {
            Some(abi) => Some(abi),
            None if mode == sandbox::Mode::Required => {
                return Err(OptionsError::NoSandbox.into());
            }
            None => {
                tracing::warn!(
                    "this kernel offers no Landlock: jobs run without a sandbox and can read everything this user can (a worker that requires the sandbox refuses to start instead)"
                );
                None
            }
        },
    };
    let supervisor = match &opts.supervisor {
        Some(p) => p.clone(),
        None => std::env::current_exe().map_err(|e| {
            Error::new(
                ErrorCode::Internal,
                format!("cannot find this executable to supervise jobs: {e}"),
            )
        })?,
    };
    // Non-dumpable: a job (without CAP_SYS_PTRACE, which its supervisor drops) cannot read
    // this process's environment or memory through /proc, where the operator's secrets and
    // the signing key live.
    if sandbox.is_some()
        && let Err(e) =
            rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
    {
        tracing::warn!(error = %e, "cannot make the worker non-dumpable; jobs may read its environment through /proc");
    }
    if rustix::process::geteuid().is_root() && sandbox.is_some() {
        tracing::warn!(
            "this worker runs as root: its jobs run as root too and can read the environment of every root process (this worker's and its parents' included) through /proc; run workers as an unprivileged user (docs/jobs.md, \"What a job can reach\")"
        );
    }
    let base_rules = sandbox.map(|_| {
        sandbox::Rules::base(
            std::env::var("PATH").ok().as_deref(),
            &opts.sandbox_read,
            &sandbox_write(opts),
            &hidden,
            opts.sandbox == sandbox::Mode::Required,
        )
    });
    // The operator's secrets must not lie where every job may read them (Landlock cannot
    // carve a file out of an allowed directory such as /etc or /run).
    if let Some(rules) = &base_rules {
        for (which, path) in [
            (SecretSource::File, opts.secrets_file.as_ref()),
            (SecretSource::Directory, opts.secrets_dir.as_ref()),
        ] {
            let Some(path) = path else { continue };
            let real = canon(path);
            if let Some(open) = rules
                .read
                .iter()
                .chain(&rules.write)
                .find(|p| real.starts_with(p))
            {
                return Err(OptionsError::SecretsReadable {
                    which,
                    path: path.clone(),
                    open: open.clone(),
                }
                .into());
            }
        }
    }
    let reaped = leftovers::reap_dead_workers(gatos);
    if reaped > 0 {
        tracing::warn!(
            attempts = reaped,
            "ended processes that crashed workers left running"
        );
    }
    // The live logs crashed workers left (their flock is free); the live ones stay.
    crate::jobs::logs::sweep(gatos);
    let secrets = Secrets::load(
        opts.secrets_file.as_deref(),
        opts.secrets_dir.as_deref(),
        &opts.secret_env,
    )?;
    let claim = ClaimOptions {
        worker: opts.id.clone(),
        worker_key: Some(key_id),
        queues: opts.queues.clone(),
        caps: opts.caps.clone(),
        lease: opts.lease,
        can_resolve: Some(secrets.probe()),
        allow_untrusted_enqueuers: opts.allow_untrusted_enqueuers
            || crate::jobs::enqueuer::allowed_by_config(gatos),
    };
    let slots = if opts.mode == Mode::Once {
        1
    } else {
        opts.concurrency
    };
    let spec = WorkerSpec {
        queues: claim.queues.clone(),
        caps: claim.caps.clone(),
        secrets: Some(secrets.names()),
        allow_untrusted_enqueuers: claim.allow_untrusted_enqueuers,
    };
    notice(&Notice::Started(Started {
        worker: opts.id.clone(),
        queues: spec.queues(),
        caps: opts.caps.clone(),
        concurrency: slots,
        key: key_id,
        sandbox,
        mode: opts.mode,
    }));
    let shared = Shared {
        gatos,
        opts,
        claim,
        secrets,
        key,
        control,
        running: AtomicUsize::new(0),
        claims_left: AtomicUsize::new(if opts.mode == Mode::Once {
            1
        } else {
            usize::MAX
        }),
        summary: Mutex::new(Summary::default()),
        report,
        node: gatos.node_id().ok().map(|n| n.to_string()),
        refused: Mutex::new(std::collections::BTreeSet::new()),
        base_rules,
        sandbox,
        supervisor,
        spec,
        notice,
        announced: Mutex::new(None),
    };
    tracing::info!(worker = %opts.id, slots, queues = ?opts.queues, caps = ?opts.caps, lease = %opts.lease, sandbox = ?shared.sandbox, "worker started");
    let errors: Vec<Error> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..slots)
            .map(|n| {
                s.spawn({
                    let shared = &shared;
                    move || slot(shared, n)
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| match h.join() {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(_) => Some(Error::new(ErrorCode::Internal, "a worker slot panicked")),
            })
            .collect()
    });
    let mut summary = shared
        .summary
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    if opts.mode == Mode::Drain && errors.is_empty() && !control.draining() {
        summary.idle = crate::jobs::waiting::idle_report(gatos, &shared.spec, DRAIN_HORIZON)
            .map_err(|e| tracing::warn!(error = %e, "cannot tell what is left pending"))
            .ok();
    }
    tracing::info!(worker = %opts.id, attempts = summary.attempts, "worker stopped");
    match errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(summary),
    }
}

/// Errors in a row before a slot gives up.
const MAX_CONSECUTIVE_ERRORS: u32 = 20;

fn slot(sh: &Shared<'_>, n: usize) -> Result<()> {
    let jobs = sh.gatos.jobs();
    let mut errors = 0u32;
    let mut idle = Duration::from_millis(50);
    loop {
        if sh.control.draining() {
            return Ok(());
        }
        if sh.claims_left.load(Ordering::SeqCst) == 0 {
            return Ok(());
        }
        // Count ourselves as running while claiming, so a draining sibling waits for us.
        sh.running.fetch_add(1, Ordering::SeqCst);
        let claimed = {
            let mut refused = sh
                .refused
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let r = jobs.claim_next_skipping(&sh.claim, &mut refused);
            sh.refused
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(refused);
            r
        };
        let lease = match claimed {
            Ok(Some(lease)) => {
                if sh
                    .claims_left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |l| l.checked_sub(1))
                    .is_err()
                {
                    // `--once` and a sibling claimed first: give this one back.
                    let _ = jobs.finish(&lease, &abandon());
                    sh.running.fetch_sub(1, Ordering::SeqCst);
                    return Ok(());
                }
                lease
            }
            Ok(None) => {
                sh.running.fetch_sub(1, Ordering::SeqCst);
                errors = 0;
                match sh.opts.mode {
                    Mode::Once => return Ok(()),
                    Mode::Drain => {
                        let refused = sh
                            .refused
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .clone();
                        let next = jobs.next_claimable_at_skipping(&sh.claim, &refused)?;
                        let horizon = sh.gatos.now().plus(DRAIN_HORIZON);
                        let busy = sh.running.load(Ordering::SeqCst) > 0;
                        if next.is_none_or(|t| t > horizon) && !busy {
                            return Ok(());
                        }
                        if let Some(t) = next.filter(|t| *t > sh.gatos.now() && *t <= horizon) {
                            announce_wait(sh, t);
                        }
                        wait(sh, next, &mut idle);
                    }
                    Mode::Forever => {
                        // What was refused may be claimable later (a key trusted, a hub
                        // repaired): look again each time.
                        sh.refused
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .clear();
                        let next = jobs.next_claimable_at(&sh.claim)?;
                        wait(sh, next, &mut idle);
                    }
                }
                continue;
            }
            Err(e) => {
                sh.running.fetch_sub(1, Ordering::SeqCst);
                errors += 1;
                tracing::warn!(slot = n, error = %e, "could not claim a job");
                if errors >= MAX_CONSECUTIVE_ERRORS {
                    return Err(e);
                }
                wait(sh, None, &mut idle);
                continue;
            }
        };
        idle = Duration::from_millis(50);
        errors = 0;
        let row = attempt(sh, lease);
        {
            let mut s = sh.summary.lock().unwrap_or_else(PoisonError::into_inner);
            s.attempts += 1;
            if row.outcome == Outcome::Succeeded && row.commit.is_some() {
                s.succeeded += 1;
            } else {
                s.other += 1;
            }
        }
        (sh.report)(&row);
        sh.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Says once per time waited for what a draining worker waits for.
fn announce_wait(sh: &Shared<'_>, until: Timestamp) {
    {
        let mut last = sh.announced.lock().unwrap_or_else(PoisonError::into_inner);
        if *last == Some(until) {
            return;
        }
        *last = Some(until);
    }
    let (job, why) = match crate::jobs::waiting::next_wait(sh.gatos, &sh.spec, until) {
        Ok(Some((id, why))) => (Some(id), why),
        Ok(None) => (None, Vec::new()),
        Err(e) => {
            tracing::debug!(error = %e, "cannot tell which job the worker waits for");
            (None, Vec::new())
        }
    };
    (sh.notice)(&Notice::Waiting {
        job,
        until,
        why,
        now: sh.gatos.now(),
    });
}

/// Sleeps until the next job may be claimable, at most the idle poll (backing off from
/// 50 ms), waking early when asked to stop.
fn wait(sh: &Shared<'_>, next: Option<Timestamp>, idle: &mut Duration) {
    let mut d = *idle;
    if let Some(t) = next {
        let until = Duration::from_millis(t.since(sh.gatos.now()).as_millis());
        d = d.min(until.max(Duration::from_millis(10)));
    }
    *idle = (*idle * 2).min(sh.opts.idle_poll);
    let deadline = Instant::now() + d;
    while Instant::now() < deadline {
        if sh.control.draining() {
            return;
        }
        std::thread::sleep(
            Duration::from_millis(20).min(deadline.saturating_duration_since(Instant::now())),
        );
    }
}

fn abandon() -> Finish {
    Finish {
        outcome: Outcome::Lost,
        exit_code: None,
        signal: None,
        stdout: Vec::new(),
        stderr: Vec::new(),
        outputs: Vec::new(),
        poe: None,
    }
}

/// A captured stream: its first `cap` bytes, redacted, and how much the job wrote.
struct Captured {
    /// Redacted, at most the cap.
    kept: Vec<u8>,
    /// Bytes the job wrote.
    total: u64,
    /// The redacted output went past the cap.
    over: bool,
}

/// Reads a stream to its end, redacting as it comes ([`StreamRedactor`]: the bytes are
/// those of redacting the whole stream at once), keeping the first `cap` bytes and
/// appending the same bytes to the live spool, so the spool is always a prefix of the log
/// the attempt commits.
fn capture(
    mut r: impl std::io::Read,
    cap: usize,
    redactor: Redactor,
    mut spool: Option<SpoolWriter>,
) -> Captured {
    let mut stream = StreamRedactor::new(redactor);
    let mut c = Captured {
        kept: Vec::new(),
        total: 0,
        over: false,
    };
    let mut keep = |out: &[u8], c: &mut Captured| {
        if let Some(s) = spool.as_mut() {
            s.append(out);
        }
        let room = cap - c.kept.len();
        c.kept.extend_from_slice(&out[..out.len().min(room)]);
        c.over = out.len() > room;
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                c.total += n as u64;
                // Past the cap the rest is only counted.
                if !c.over {
                    out.clear();
                    stream.push(&buf[..n], &mut out);
                    keep(&out, &mut c);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if !c.over {
        out.clear();
        stream.finish(&mut out);
        keep(&out, &mut c);
    }
    c
}

/// Marks truncation. Returns the bytes to store and whether they were truncated.
fn finish_stream(c: Captured, cap: usize) -> (Vec<u8>, bool) {
    let mut bytes = c.kept;
    let truncated = c.total > cap as u64 || c.over;
    if truncated {
        bytes.truncate(cap);
        bytes.extend_from_slice(
            format!(
                "\n[gatos: output truncated: {} of {} bytes kept]\n",
                cap, c.total
            )
            .as_bytes(),
        );
    }
    (bytes, truncated)
}

/// Replaces every occurrence of each secret value, and of its encoded forms (base64,
/// base64url, hex, URL encoding), with a `[REDACTED:NAME…]` mark (`jobs::redact`). This
/// guards against accidents, not against a job that wants to leak (docs/jobs.md).
pub fn redact(bytes: Vec<u8>, secrets: &[(String, String)]) -> Vec<u8> {
    if secrets.is_empty() {
        return bytes;
    }
    crate::jobs::redact::Redactor::new(secrets).redact(&bytes)
}

/// Why the supervisor stopped the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Timeout,
    Cancelled,
    Fenced,
    Shutdown,
}

fn signal_group(pid: rustix::process::Pid, sig: rustix::process::Signal) {
    if let Err(e) = rustix::process::kill_process_group(pid, sig)
        && e != rustix::io::Errno::SRCH
    {
        tracing::warn!(pid = pid.as_raw_nonzero().get(), error = %e, "could not signal a job's process group");
    }
}

/// Runs one claimed attempt to its end and records it.
fn attempt(sh: &Shared<'_>, mut lease: Lease) -> WorkerRow {
    let started = sh.gatos.now();
    let clock = Instant::now();
    let id = lease.id;
    tracing::info!(job = %id, attempt = lease.attempt, "running");
    // The live log, from now until the attempt's commit holds it (removed when dropped).
    let spool = Spool::create(sh.gatos, id, lease.attempt, &lease.worker, sh.opts.log_cap)
        .map_err(|e| tracing::warn!(job = %id, error = %e, "cannot create the live log spool; `jobs logs` will show this attempt only once it is recorded"))
        .ok();
    let prepared = prepare(sh, &lease);
    let (outcome, exit_code, stdout, stderr, outputs, truncation, note, signal) = match prepared {
        Err(why) => {
            // The job cannot start here (its cwd is missing, the program does not exist…):
            // a failed attempt, with the reason on stderr.
            (
                Outcome::Failed,
                None,
                Vec::new(),
                why.into_bytes(),
                Vec::new(),
                (false, false),
                None,
                None,
            )
        }
        Ok(p) => run_process(sh, &mut lease, p, spool.as_ref()),
    };
    let duration_ms = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
    if outcome == Outcome::Lost && note.is_some() {
        // Fenced: the claim is someone else's now; write nothing.
        return WorkerRow {
            id,
            attempt: lease.attempt,
            outcome,
            exit_code,
            signal,
            state: None,
            commit: None,
            duration_ms,
            error: note,
        };
    }
    let finished = sh.gatos.now();
    let poe = proofs::attest(
        &sh.key,
        &lease,
        &proofs::Attempt {
            started_at: started,
            finished_at: finished,
            outcome,
            exit_code,
            stdout: &stdout,
            stdout_truncated: truncation.0,
            stderr: &stderr,
            stderr_truncated: truncation.1,
            outputs: &outputs,
            runner: serde_json::json!({
                "name": "git-gatos worker",
                "version": env!("CARGO_PKG_VERSION"),
                "node": sh.node,
                // What the job ran under (ADR 0021): the Landlock ABI, or null unconfined;
                // the commit of its sources, or null.
                "sandbox": sh.sandbox.map(|abi| format!("landlock-v{abi}")),
                "checkout": lease.spec.checkout.map(|c| c.to_string()),
            }),
        },
    );
    let finish = Finish {
        outcome,
        exit_code,
        signal,
        stdout,
        stderr,
        outputs,
        poe: match poe {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(job = %id, error = %e, "could not sign the proof; the result will not verify");
                None
            }
        },
    };
    let finished = sh.gatos.jobs().finish(&lease, &finish);
    // The commit holds the log now (or nothing will): the spool has served.
    drop(spool);
    match finished {
        Ok(f) => {
            tracing::info!(job = %id, attempt = lease.attempt, outcome = outcome.as_str(), state = f.state.as_str(), "finished");
            WorkerRow {
                id,
                attempt: lease.attempt,
                outcome,
                exit_code,
                signal: finish.signal.clone(),
                state: Some(f.state),
                commit: Some(f.commit),
                duration_ms,
                error: None,
            }
        }
        Err(e) => {
            tracing::warn!(job = %id, attempt = lease.attempt, error = %e, "could not record the attempt");
            WorkerRow {
                id,
                attempt: lease.attempt,
                outcome,
                exit_code,
                signal: finish.signal.clone(),
                state: None,
                commit: None,
                duration_ms,
                error: Some(format!("{}: {e}", e.code())),
            }
        }
    }
}

/// A process ready to start.
struct Prepared {
    spec: supervisor::RunSpec,
    cwd: PathBuf,
    /// The directory outputs are read beneath (the attempt directory or `--workdir`).
    output_base: PathBuf,
    secrets: Vec<(String, String)>,
    run_id: String,
    _dir: tempfile::TempDir,
}

/// Resolves secrets, writes the attempt directory (checkout included), builds argv, env,
/// cwd and the sandbox. `Err` is a message for the job's stderr.
fn prepare(sh: &Shared<'_>, lease: &Lease) -> std::result::Result<Prepared, String> {
    let spec = &lease.spec;
    let mut used: Vec<(String, String)> = Vec::new();
    let mut resolve = |s: &str| -> std::result::Result<String, String> {
        match secrets::secret_ref(s) {
            None => Ok(s.to_owned()),
            Some(name) => {
                let v = sh.secrets.resolve(name).ok_or_else(|| {
                    format!("gatos: secret {name} cannot be resolved on this worker (give the worker a secrets file or directory that holds it, or {name} from its environment)\n")
                })?;
                if !used.iter().any(|(n, _)| n == name) {
                    used.push((name.to_owned(), v.clone()));
                }
                Ok(v)
            }
        }
    };
    let argv: Vec<String> = spec
        .command
        .iter()
        .chain(&spec.args)
        .map(|s| resolve(s))
        .collect::<std::result::Result<_, _>>()?;
    let mut job_env = Vec::new();
    for (k, v) in &spec.env {
        job_env.push((k.clone(), resolve(v)?));
    }
    let dir = tempfile::Builder::new()
        .prefix(&format!("gatos-{}-{}-", lease.id, lease.attempt))
        .tempdir()
        .map_err(|e| format!("gatos: cannot create the attempt's directory: {e}\n"))?;
    let root = std::fs::canonicalize(dir.path()).unwrap_or_else(|_| dir.path().to_owned());
    let mk = |name: &str| -> std::result::Result<PathBuf, String> {
        let d = root.join(name);
        std::fs::create_dir(&d)
            .map_err(|e| format!("gatos: cannot create {}: {e}\n", d.display()))?;
        Ok(d)
    };
    // The attempt directory is the job's HOME and TMPDIR (one directory: every directory
    // created and removed per attempt costs on a slow disk).
    let home = root.clone();
    let tmp = root.clone();
    let inputs = root.join("inputs.json");
    std::fs::write(&inputs, gatos_types::jcs::to_vec(&spec.inputs))
        .map_err(|e| format!("gatos: cannot write the inputs file: {e}\n"))?;
    let base = match (spec.checkout, &sh.opts.workdir) {
        (Some(commit), _) => {
            let src = mk("src")?;
            if !sh.gatos.store().has_commit(commit) {
                return Err(format!(
                    "gatos: the job runs in commit {commit}, which this repository does not have (fetch it here, e.g. git fetch origin {commit})\n"
                ));
            }
            sh.gatos
                .store()
                .write_commit_tree(commit, &src)
                .map_err(|e| format!("gatos: cannot check out {commit}: {e}\n"))?;
            src
        }
        (None, Some(d)) => std::fs::canonicalize(d).unwrap_or_else(|_| d.clone()),
        (None, None) => mk("work")?,
    };
    let cwd = if spec.cwd == "." {
        base
    } else {
        base.join(&spec.cwd)
    };
    if !cwd.is_dir() {
        return Err(format!(
            "gatos: working directory {} does not exist{}\n",
            spec.cwd,
            if spec.checkout.is_some() {
                " in the job's checkout"
            } else {
                " (the job names no checkout: it runs in an empty directory)"
            }
        ));
    }
    let mut env: Vec<(String, String)> = Vec::new();
    for name in PASSED_ENV
        .iter()
        .map(|s| (*s).to_owned())
        .chain(sh.opts.pass_env.iter().cloned())
    {
        if let Ok(v) = std::env::var(&name) {
            env.push((name, v));
        }
    }
    env.retain(|(k, _)| !spec.env.contains_key(k));
    env.extend(job_env);
    let run_id = {
        let mut b = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
        gatos_types::digest::to_hex(&b)
    };
    let set = |env: &mut Vec<(String, String)>, k: &str, v: String| {
        env.retain(|(n, _)| n != k);
        env.push((k.to_owned(), v));
    };
    set(&mut env, "HOME", home.display().to_string());
    set(&mut env, "TMPDIR", tmp.display().to_string());
    set(&mut env, "GATOS_JOB", lease.id.to_string());
    set(&mut env, "GATOS_ATTEMPT", lease.attempt.to_string());
    set(&mut env, "GATOS_QUEUE", spec.queue.to_string());
    set(&mut env, "GATOS_WORKER", lease.worker.to_string());
    set(&mut env, "GATOS_INPUTS", inputs.display().to_string());
    set(&mut env, "GATOS_RUN_ID", run_id.clone());
    // The worker's rules, whatever the job's own PATH says: what a job may read is the
    // operator's choice (the worker's PATH, --sandbox-allow), never the job author's (a
    // manifest's PATH naming the worker's home would open it, secrets and all).
    let rules = sh
        .base_rules
        .as_ref()
        .map(|base| base.clone().with_dir(&root));
    Ok(Prepared {
        spec: supervisor::RunSpec {
            argv,
            env,
            cwd: cwd.clone(),
            sandbox: rules,
            worker_pid: std::process::id(),
        },
        cwd,
        output_base: match (spec.checkout, &sh.opts.workdir) {
            (None, Some(d)) => std::fs::canonicalize(d).unwrap_or_else(|_| d.clone()),
            _ => root.clone(),
        },
        secrets: used,
        run_id,
        _dir: dir,
    })
}

/// outcome, exit code, stdout, stderr, outputs, truncation, why nothing is written, and
/// the signal the process died of (ADR 0029).
type Ran = (
    Outcome,
    Option<i32>,
    Vec<u8>,
    Vec<u8>,
    Vec<(String, Vec<u8>)>,
    (bool, bool),
    Option<String>,
    Option<String>,
);

/// The worker's end of a supervisor: requests go down its standard input.
struct Supervised {
    pid: rustix::process::Pid,
    control: Mutex<Option<std::process::ChildStdin>>,
}

impl Supervised {
    fn request(&self, what: &str) {
        use std::io::Write as _;
        let mut c = self.control.lock().unwrap_or_else(PoisonError::into_inner);
        let sent = c
            .as_mut()
            .is_some_and(|w| w.write_all(format!("{what}\n").as_bytes()).is_ok());
        if !sent && what == "kill" {
            // The supervisor is gone or stuck: its process group still holds the job.
            signal_group(self.pid, rustix::process::Signal::KILL);
        }
    }

    /// TERM to the job.
    fn term(&self) {
        self.request("term");
    }

    /// KILL to the job and everything it started.
    fn kill(&self) {
        self.request("kill");
    }

    /// Closes the control pipe (the supervisor has exited).
    fn close(&self) {
        self.control
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}

/// Starts the supervisor and watches the job: heartbeats, cancel, timeout, shutdown.
fn run_process(sh: &Shared<'_>, lease: &mut Lease, p: Prepared, spool: Option<&Spool>) -> Ran {
    let failed = |code: i32, msg: String| -> Ran {
        (
            Outcome::Failed,
            Some(code),
            Vec::new(),
            redact(msg.into_bytes(), &p.secrets),
            Vec::new(),
            (false, false),
            None,
            None,
        )
    };
    if !leftovers::end_earlier_attempts(sh.gatos, lease.id, lease.attempt) {
        // Never two attempts at once: give the job back rather than run beside the old one.
        return (
            Outcome::Lost,
            None,
            Vec::new(),
            b"gatos: an earlier attempt of this job still runs on this node and would not end; the job was given back\n".to_vec(),
            Vec::new(),
            (false, false),
            None,
            None,
        );
    }
    let mut cmd = Command::new(&sh.supervisor);
    cmd.arg(supervisor::SUBCOMMAND)
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return failed(
                126,
                format!(
                    "gatos: cannot start the supervisor {}: {e}\n",
                    sh.supervisor.display()
                ),
            );
        }
    };
    let pid = rustix::process::Pid::from_child(&child);
    let record = leftovers::write(
        sh.gatos,
        lease.id,
        lease.attempt,
        pid.as_raw_nonzero().get(),
        &p.run_id,
    )
    .map_err(|e| tracing::warn!(job = %lease.id, error = %e, "cannot record the running attempt; a crash of this worker would leave it to the supervisor alone"))
    .ok();
    let mut stdin = child.stdin.take();
    let spec_line = match serde_json::to_vec(&p.spec) {
        Ok(mut v) => {
            v.push(b'\n');
            v
        }
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return failed(125, format!("gatos: cannot encode the run spec: {e}\n"));
        }
    };
    if let Some(w) = stdin.as_mut() {
        use std::io::Write as _;
        // A supervisor that died at once says why on stderr; its status is reported below.
        let _ = w.write_all(&spec_line);
    }
    drop(spec_line);
    let sup = Supervised {
        pid,
        control: Mutex::new(stdin),
    };
    let cap = sh.opts.log_cap;
    let redactor = Redactor::new(&p.secrets);
    let spool_of = |stream: Stream| {
        spool.and_then(|s| {
            s.writer(stream)
                .map_err(|e| tracing::warn!(job = %lease.id, %stream, error = %e, "cannot open the live log spool"))
                .ok()
        })
    };
    let (tx_out, rx_out) = mpsc::channel();
    let (tx_err, rx_err) = mpsc::channel();
    if let Some(o) = child.stdout.take() {
        let (redactor, spool) = (redactor.clone(), spool_of(Stream::Stdout));
        std::thread::spawn(move || {
            let _ = tx_out.send(capture(o, cap, redactor, spool));
        });
    }
    if let Some(e) = child.stderr.take() {
        let spool = spool_of(Stream::Stderr);
        std::thread::spawn(move || {
            let _ = tx_err.send(capture(e, cap, redactor, spool));
        });
    }
    let (tx_exit, rx_exit) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx_exit.send(child.wait());
    });
    let (stop, status) = supervise(sh, lease, &sup, &rx_exit);
    sup.close();
    // The supervisor killed everything the job started; its process group is the last net.
    signal_group(pid, rustix::process::Signal::KILL);
    if let Some(r) = &record {
        // A supervisor that died of a signal may have been killed before it could end the
        // job's escaped processes: find them by the run id.
        if status.is_none_or(|s| s.signal().is_some()) && !leftovers::end_recorded(r) {
            tracing::warn!(job = %lease.id, "processes of this attempt would not end");
        }
        leftovers::forget(r);
    }
    let collect = |rx: mpsc::Receiver<Captured>| {
        rx.recv_timeout(sh.opts.grace.max(Duration::from_secs(1)))
            .unwrap_or(Captured {
                kept: b"[gatos: the stream was still held open by an escaped process]\n".to_vec(),
                total: 0,
                over: false,
            })
    };
    let (stdout, out_trunc) = finish_stream(collect(rx_out), cap);
    let (stderr, err_trunc) = finish_stream(collect(rx_err), cap);
    let exit_code = status.and_then(|s| s.code());
    // The supervisor dies of the job's signal (`supervisor::die_of`): record it by name.
    let signal = status
        .and_then(|s| s.signal())
        .map(gatos_types::jobs::signal_name);
    let outcome = match stop {
        Some(Stop::Timeout) => Outcome::Timeout,
        Some(Stop::Cancelled) => Outcome::Cancelled,
        Some(Stop::Fenced) => {
            return (
                Outcome::Lost,
                exit_code,
                stdout,
                stderr,
                Vec::new(),
                (out_trunc, err_trunc),
                Some("the claim was lost; the process was killed and nothing was written".into()),
                signal,
            );
        }
        Some(Stop::Shutdown) => Outcome::Lost,
        None => match status {
            Some(s) if s.success() => Outcome::Succeeded,
            _ => Outcome::Failed,
        },
    };
    let outputs = collect_outputs(&lease.spec.outputs, &p.output_base, &p.cwd);
    let signal_note = status
        .and_then(|s| s.signal())
        .map(|sig| format!("\n[gatos: the process ended by signal {sig}]\n"));
    let mut stderr = stderr;
    if let Some(n) = signal_note {
        stderr.extend_from_slice(n.as_bytes());
    }
    (
        outcome,
        exit_code,
        stdout,
        stderr,
        outputs,
        (out_trunc, err_trunc),
        None,
        signal,
    )
}

/// Reads declared outputs (files under `cwd`), within [`OUTPUTS_CAP`] in all. The worker
/// reads them outside the sandbox, and a process the job left could still be changing the
/// directory, so each is opened relative to `base` (the attempt directory or `--workdir`,
/// which the job cannot replace) with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`:
/// no symbolic link is followed and nothing outside `base` is reached, whatever the job
/// planted, and only a regular file is read (never a FIFO that would block the worker).
fn collect_outputs(declared: &[String], base: &Path, cwd: &Path) -> Vec<(String, Vec<u8>)> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let mut out = Vec::new();
    let Ok(rel_cwd) = cwd.strip_prefix(base) else {
        return out;
    };
    let Ok(dir) = rustix::fs::open(
        base,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return out;
    };
    let mut total = 0u64;
    for rel in declared {
        if let Err(e) = gatos_store::objects::check_tree_path(rel) {
            // Refused at enqueue now; a job an earlier release stored may still name one.
            tracing::warn!(output = %rel, reason = e.reason, "an output git would read as its own file is left out of the result");
            continue;
        }
        let path = rel_cwd.join(rel);
        let fd = match rustix::fs::openat2(
            &dir,
            &path,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => continue,
            Err(e) => {
                tracing::warn!(output = %rel, error = %e, "an output that is a link, or leads outside the job's directory, is left out");
                continue;
            }
        };
        let file = std::fs::File::from(fd);
        let Ok(meta) = file.metadata() else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        // A process still running can turn `a` from a file into a folder between two
        // opens: an output that would share a name with one taken is left out, so the
        // attempt's end is still recorded.
        if out
            .iter()
            .any(|(taken, _)| crate::jobs::lifecycle::outputs_collide(taken, rel))
        {
            tracing::warn!(output = %rel, "an output that would share a name with another is left out");
            continue;
        }
        if total + meta.len() > OUTPUTS_CAP {
            tracing::warn!(output = %rel, "outputs over 64 MiB in all; this one is left out");
            continue;
        }
        let mut bytes = Vec::new();
        let cap = OUTPUTS_CAP - total;
        if std::io::Read::read_to_end(&mut std::io::Read::take(&file, cap), &mut bytes).is_ok() {
            total += bytes.len() as u64;
            out.push((rel.clone(), bytes));
        }
    }
    out
}

/// Waits for the process, heartbeating every lease/3, and stops it on timeout, cancel,
/// lost claim or shutdown. Returns why it was stopped (if it was) and its exit status.
fn supervise(
    sh: &Shared<'_>,
    lease: &mut Lease,
    sup: &Supervised,
    exited: &mpsc::Receiver<std::io::Result<ExitStatus>>,
) -> (Option<Stop>, Option<ExitStatus>) {
    let jobs = sh.gatos.jobs();
    let started = Instant::now();
    let timeout = Duration::from_secs(lease.spec.timeout);
    let beat_every = Duration::from_millis((lease.lease.as_millis() / 3).max(100));
    let mut next_beat = started + beat_every;
    // The lease end last confirmed, as a local deadline; fence a beat before it.
    let mut lease_deadline = started + lease.lease.to_std();
    let mut stop: Option<Stop> = None;
    let mut kill_at: Option<Instant> = None;
    let id = lease.id;
    loop {
        let now = Instant::now();
        if stop.is_none() {
            if sh.control.aborting() {
                stop = Some(Stop::Shutdown);
            } else if now.duration_since(started) >= timeout {
                stop = Some(Stop::Timeout);
            }
            if let Some(s) = stop {
                tracing::info!(job = %id, why = ?s, "stopping the job's process (TERM)");
                sup.term();
                kill_at = Some(now + sh.opts.grace);
            }
        }
        if kill_at.is_some_and(|t| now >= t) {
            sup.kill();
            kill_at = None;
        }
        if stop != Some(Stop::Fenced) && now >= next_beat {
            next_beat = now + beat_every;
            match jobs.heartbeat(lease) {
                Ok(()) => {
                    lease_deadline = Instant::now() + lease.lease.to_std();
                    if stop.is_none() && jobs.is_cancelled(id).unwrap_or(false) {
                        tracing::info!(job = %id, "cancelled: stopping the job's process (TERM)");
                        stop = Some(Stop::Cancelled);
                        sup.term();
                        kill_at = Some(Instant::now() + sh.opts.grace);
                    }
                }
                Err(e) if e.code() == ErrorCode::LeaseExpired => {
                    fence(sh, lease, sup, &e.to_string());
                    stop = Some(Stop::Fenced);
                }
                Err(e) => {
                    tracing::warn!(job = %id, error = %e, "heartbeat failed; retrying");
                    next_beat = Instant::now() + Duration::from_millis(200).min(beat_every);
                }
            }
        }
        if stop != Some(Stop::Fenced) && Instant::now() + beat_every >= lease_deadline {
            fence(
                sh,
                lease,
                sup,
                "no heartbeat succeeded before the lease was about to end",
            );
            stop = Some(Stop::Fenced);
        }
        // Sleep until the next thing to do, or until the process exits.
        let mut until = next_beat
            .min(started + timeout)
            .min(Instant::now() + Duration::from_millis(100));
        if let Some(k) = kill_at {
            until = until.min(k);
        }
        match exited.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(Ok(status)) => return (stop, Some(status)),
            Ok(Err(e)) => {
                tracing::warn!(job = %id, error = %e, "could not wait for the job's process");
                return (stop, None);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return (stop, None),
        }
    }
}

/// Self-fencing: kills the process group at once, and says so on `gatos.jobs`.
fn fence(sh: &Shared<'_>, lease: &Lease, sup: &Supervised, why: &str) {
    tracing::warn!(job = %lease.id, attempt = lease.attempt, why, "lost the claim: killing the job's processes");
    sup.kill();
    if let Ok(Some(rec)) = sh.gatos.jobs().record(lease.id) {
        crate::jobs::emit_event(
            sh.gatos,
            gatos_types::jobs::JobEventKind::HeartbeatLost,
            &rec,
            lease.attempt,
            Some(&lease.worker),
            lease.head,
        );
    }
}

/// The state a finished attempt left the job in, for printing.
pub fn describe(row: &WorkerRow) -> String {
    let state = row.state.map_or("unrecorded", JobState::as_str);
    let code = match (&row.signal, row.exit_code) {
        (Some(s), _) => format!("killed by {s}"),
        (None, Some(c)) => format!("exit {c}"),
        (None, None) => "exit -".to_owned(),
    };
    format!(
        "job {} attempt {}: {} ({code}) in {:.1}s; job {state}",
        row.id,
        row.attempt,
        row.outcome.as_str(),
        row.duration_ms as f64 / 1000.0
    )
}
