//! The command line, as clap types. Doc comments are the help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// gatos: a Git-native ledger of jobs and messages.
///
/// Jobs, messages, consumer checkpoints, manifests and signed proofs of execution are
/// commits under refs/gatos/ of this repository. Run `git gatos init` once per clone.
#[derive(Debug, Parser)]
#[command(
    name = "git gatos",
    bin_name = "git gatos",
    version,
    propagate_version = true
)]
pub struct Cli {
    /// Options shared by every command.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The plane and verb.
    #[command(subcommand)]
    pub command: Command,
}

/// The heading of the options every command takes, so `-h` lists a command's own options
/// apart from them.
const GLOBAL: &str = "Global options";

/// Options shared by every command.
#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// Print machine output: one JSON object per line.
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,
    /// Print less: no hints, no progress.
    #[arg(short, long, global = true, help_heading = GLOBAL)]
    pub quiet: bool,
    /// Print more: -v for info logs and error causes, -vv for debug logs.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = GLOBAL)]
    pub verbose: u8,
    /// When to use colour (auto, always, never); NO_COLOR is respected.
    #[arg(long, global = true, default_value = "auto", value_parser = ["auto", "always", "never"], help_heading = GLOBAL)]
    pub color: String,
}

/// The planes.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Prepare this repository: node id, identity and signing key (idempotent).
    Init,
    /// Publish, read, follow and consume messages.
    #[command(subcommand)]
    Messages(MessagesCommand),
    /// Enqueue, list, show, watch, cancel and verify jobs.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Claim and run jobs: each in its own process group, with heartbeats and a proof.
    Worker(WorkerArgs),
    /// Register manifests by name (versions 1, 2, …) and enqueue jobs from them.
    #[command(subcommand)]
    Manifests(ManifestsCommand),
    /// The signing key, local trust, published keys and revocations.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Replicate with a Git remote: fetch, reconcile every kind of ref, push.
    Sync(SyncArgs),
    /// Compact the repository: repack, pack refs, write the commit-graph, archive jobs.
    Maintenance(MaintenanceArgs),
    /// List the audit trail: privileged and destructive actions (the topic gatos.audit).
    Audit(AuditArgs),
    /// Export to SQLite or Parquet with a verifiable Explorer-Root; `export verify PATH`.
    Export(ExportArgs),
    /// Check the repository's health; exit 1 when a broken invariant is found.
    Doctor(DoctorArgs),
    /// Durable ref snapshots: copy the refs now into refs/gatos-snapshots/NAME/ (local,
    /// never synced), for GraphQL's `refPath: "snapshots/NAME"` and its state id.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Sign in to the dashboard of the running gatosd --http: print (or --open) a URL with
    /// a single-use code valid 60 s; list and revoke its sessions.
    Dashboard(DashboardArgs),
}

/// `dashboard`.
#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// List or revoke sessions instead of signing in.
    #[command(subcommand)]
    pub command: Option<DashboardCommand>,
    /// Open the URL with xdg-open as well as printing it.
    #[arg(long)]
    pub open: bool,
    /// The session may only read (no cancel, retry or run).
    #[arg(long)]
    pub read_only: bool,
    /// gatosd's Unix socket (default <git-dir>/gatos/gatosd.sock).
    #[arg(long, value_name = "PATH", global = true)]
    pub socket: Option<PathBuf>,
    /// The daemon's token file (default <git-dir>/gatos/gatosd/token); its first token is
    /// presented.
    #[arg(long, value_name = "F", global = true)]
    pub token_file: Option<PathBuf>,
}

/// `dashboard`'s subcommands.
#[derive(Debug, Subcommand)]
pub enum DashboardCommand {
    /// The live dashboard sessions.
    Sessions,
    /// End a dashboard session at once (or all of them).
    Revoke {
        /// The session's id (from `git gatos dashboard sessions`).
        id: Option<String>,
        /// End every session and every unused code.
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
}

/// `git gatos generate` (hidden: dispatched before [`Cli`] is parsed, so neither `-h`, the
/// man pages nor the completions it makes offer it): what `scripts/install.sh` installs,
/// made from these definitions.
#[derive(Debug, Parser)]
#[command(name = "git gatos generate", version)]
pub struct GenerateCli {
    /// What to make.
    #[command(subcommand)]
    pub what: GenerateCommand,
}

/// `generate`'s subcommands.
#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// Write git-gatos.1 and one page per subcommand (git-gatos-jobs-enqueue.1, …) into DIR.
    Man {
        /// The directory (made if missing).
        dir: PathBuf,
    },
    /// Print the completion script of SHELL for `git-gatos` and `git gatos`.
    Completions {
        /// bash, zsh or fish.
        #[arg(value_parser = ["bash", "zsh", "fish"])]
        shell: String,
    },
}

/// `doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Perform the safe fixes: maintenance, locks left by dead gatos writers, lost job events
    /// and audit records.
    #[arg(long)]
    pub fix: bool,
    /// With --fix: also remove old Git lock files gatos did not write (packed-refs.lock,
    /// refs/**.lock, index.lock, config.lock, ...), naming each. Only when no git command
    /// is running on the repository: a live one may hold them however old they are.
    #[arg(long, requires = "fix")]
    pub force: bool,
}

/// `export`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ExportArgs {
    /// `verify PATH`.
    #[command(subcommand)]
    pub command: Option<ExportCommand>,
    /// sqlite (one file) or parquet (a directory of <table>.parquet and manifest.json).
    #[arg(long, value_parser = ["sqlite", "parquet"])]
    pub format: Option<String>,
    /// The file (sqlite) or directory (parquet) to write.
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
    /// Rows at or after this TIME, DUR ago, ULID (the time it carries) or full commit id
    /// (messages by published_at, jobs by created_at, attempts by claimed_at, results by
    /// finished_at).
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    /// Rows before this TIME, DUR ago, ULID or full commit id.
    #[arg(long, value_name = "T")]
    pub until: Option<String>,
    /// Only these tables (messages, jobs, attempts, results, checkpoints).
    #[arg(long, value_name = "T,..")]
    pub tables: Vec<String>,
    /// Only these columns of a table (repeatable): TABLE:C1,C2.
    #[arg(long, value_name = "TABLE:C,..")]
    pub columns: Vec<String>,
    /// AND-joined comparisons (= < <= > >=) on columns, e.g. "topic = ci.events AND seq >= 100"
    /// (repeatable; an unqualified column applies to every table that has it).
    #[arg(long = "where", value_name = "PRED")]
    pub wheres: Vec<String>,
    /// Extend the SQLite export at --out with what is new since the refs it recorded
    /// (its filters are reused).
    #[arg(long)]
    pub incremental: bool,
    /// Derive job states (leases expire) at this TIME instead of now; two exports of the
    /// same refs with the same --as-of have the same Explorer-Root.
    #[arg(long, value_name = "TIME")]
    pub as_of: Option<String>,
}

/// `export`'s subcommand.
#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Recompute every table digest and the Explorer-Root; with --repo, check the rows
    /// against the repository.
    Verify {
        /// The export: a SQLite file or a Parquet directory.
        path: PathBuf,
        /// The repository to check the rows against (at the refs the export recorded).
        #[arg(long, value_name = "DIR")]
        repo: Option<PathBuf>,
    },
}

/// `audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Start after the record with this ULID, or at this RFC 3339 TIME or DUR ago (1h).
    #[arg(long, value_name = "ULID|TIME|DUR")]
    pub since: Option<String>,
    /// Only records of this action (e.g. jobs.cancel, keys.trust, messages.prune.forced).
    #[arg(long, value_name = "ACTION")]
    pub action: Option<String>,
}

/// `sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The remote (default: the only one, or origin).
    pub remote: Option<String>,
    /// Fail when a conflict or a rejected ref is reported (by default they are reported,
    /// exit 0).
    #[arg(long)]
    pub strict: bool,
    /// Take unsigned cancels, manifests, checkpoints, summaries, archives and settings from
    /// the remote this once: history written before signatures (audited). Bad or untrusted
    /// signatures are still rejected.
    #[arg(long)]
    pub accept_unsigned_history: bool,
    /// Do not sync: list the refs sync rejected most recently (of REMOTE, when given),
    /// newest first, from this node's log (the `sync.rejections` operation).
    #[arg(long, conflicts_with_all = ["strict", "accept_unsigned_history"])]
    pub rejected: bool,
    /// With --rejected: at most this many (1 to 1000).
    #[arg(long, value_name = "N", default_value_t = 50, requires = "rejected")]
    pub limit: usize,
}

/// The job plane's verbs.
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Enqueue a job: `-- CMD ARG…` or `--manifest FILE` (JSON or YAML).
    Enqueue(Box<EnqueueArgs>),
    /// List jobs, oldest first (finished states include archived jobs).
    Ls(LsArgs),
    /// Show a job: state, attempt, manifest, latest claim, result and proof.
    Show {
        /// The job id.
        id: String,
    },
    /// Say what keeps a pending job from running: its conditions checked against a
    /// worker's options, one line per condition that blocks (exit 0 either way).
    Why(WhyArgs),
    /// Print what a job wrote: live from this node's worker while it runs, then from the
    /// attempt's commit.
    Logs(LogsArgs),
    /// Follow job events (the topic gatos.jobs) as they happen.
    Watch(WatchArgs),
    /// Cancel a job: a pending one never runs, a running one is stopped.
    Cancel {
        /// The job id.
        id: String,
        /// Why (recorded in the cancel commit and the audit trail).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Enqueue a failed or cancelled job again: a new job with the same manifest, whose
    /// commit names the old one (`Retry-Of`); the old job stays as it is.
    Retry {
        /// The failed or cancelled job.
        id: String,
    },
    /// Choose which result a job keeps when sync kept another node's beside this node's
    /// own (see `jobs show`); audited.
    Resolve {
        /// The job id.
        id: String,
        /// `local` (this node's result) or the commit id of a kept result.
        #[arg(long, value_name = "local|COMMIT")]
        keep: String,
    },
    /// Verify proofs of execution: digests, signature, key trust and revocation.
    Verify(VerifyArgs),
    /// Show or change a queue's retry backoff and admission limit (replicated settings),
    /// with its pending jobs; without QUEUE, show every queue.
    Config(QueueConfigArgs),
}

/// `jobs why`: the job, and the worker options to check it against (as `worker` takes
/// them).
#[derive(Debug, Args)]
pub struct WhyArgs {
    /// The job id.
    pub id: String,
    /// What the worker claims by (its options, as `worker` takes them).
    #[command(flatten)]
    pub claim: ClaimArgs,
    /// The name of a secret the worker resolves (repeatable). Secrets are checked only when
    /// this or one of the worker's secret sources is given.
    #[arg(long = "secret", value_name = "NAME")]
    pub secret: Vec<String>,
}

/// What a worker claims by: its queues, capabilities, secret sources and trust of
/// enqueuers (`worker` runs with them, `jobs why` checks a job against them).
#[derive(Debug, Args)]
pub struct ClaimArgs {
    /// A queue to serve (repeatable; default `default`).
    #[arg(long = "queue", value_name = "Q")]
    pub queues: Vec<String>,
    /// A capability the worker offers (repeatable).
    #[arg(long = "cap", value_name = "C")]
    pub caps: Vec<String>,
    /// A file of NAME=VALUE lines resolving secret://NAME.
    #[arg(long, value_name = "FILE")]
    pub secrets: Option<PathBuf>,
    /// A directory with one file per secret, named after it, holding its value.
    #[arg(long, value_name = "DIR")]
    pub secrets_dir: Option<PathBuf>,
    /// Let secret://NAME resolve from the worker's variable NAME (repeatable; nothing else
    /// of the worker's environment is reachable).
    #[arg(long = "secret-env", value_name = "NAME")]
    pub secret_env: Vec<String>,
    /// Run jobs whatever their enqueuer: unsigned, or signed by a key this node does not
    /// trust (open setups; also `git config gatos.worker.allowUntrustedEnqueuers true`).
    #[arg(long)]
    pub allow_untrusted_enqueuers: bool,
}

/// `jobs enqueue`.
#[derive(Debug, Args)]
pub struct EnqueueArgs {
    /// The manifest (JSON or YAML; `-` for stdin); flags given too override its fields.
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// The queue (default `default`).
    #[arg(long, value_name = "Q")]
    pub queue: Option<String>,
    /// A capability the worker must have (repeatable).
    #[arg(long = "cap", value_name = "C")]
    pub caps: Vec<String>,
    /// Stop the process after this long (DUR; default 1h).
    #[arg(long, value_name = "DUR")]
    pub timeout: Option<String>,
    /// Attempts before the job fails for good (default 3).
    #[arg(long, value_name = "N")]
    pub max_attempts: Option<u32>,
    /// Higher runs first (default 0).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub priority: Option<i64>,
    /// An environment variable (repeatable); VALUE may be `secret://NAME`.
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Not before this time (RFC 3339, or a DUR from now).
    #[arg(long, value_name = "TIME")]
    pub run_after: Option<String>,
    /// Working directory relative to the job's checkout (or its empty attempt directory).
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<String>,
    /// The commit whose files the job runs in (default: HEAD of the work tree; none in a
    /// bare repository).
    #[arg(long, value_name = "REV", conflicts_with = "no_checkout")]
    pub checkout: Option<String>,
    /// Run the job in an empty directory, without sources.
    #[arg(long)]
    pub no_checkout: bool,
    /// A file (relative to the working directory) to keep in the result (repeatable).
    #[arg(long = "output", value_name = "PATH")]
    pub outputs: Vec<String>,
    /// A label (repeatable).
    #[arg(long = "label", value_name = "K=V")]
    pub labels: Vec<String>,
    /// Data for the job, as JSON (the file named by GATOS_INPUTS).
    #[arg(long, value_name = "JSON")]
    pub inputs: Option<String>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// A hint for a usage error that clap cannot give: `jobs enqueue make test` (a command
/// without `--`) is answered with the command line that runs it.
pub fn usage_hint(e: &clap::Error, args: &[String]) -> Option<String> {
    if e.kind() != clap::error::ErrorKind::UnknownArgument {
        return None;
    }
    let bad = match e.get(clap::error::ContextKind::InvalidArg)? {
        clap::error::ContextValue::String(s) => s.clone(),
        _ => return None,
    };
    let jobs = args.iter().position(|a| a == "jobs")?;
    let enqueue = jobs + 1 + args[jobs + 1..].iter().position(|a| a == "enqueue")?;
    if bad.starts_with('-') || args.iter().any(|a| a == "--") {
        return None;
    }
    // The command starts at the first word clap did not take as an option's value.
    let at = enqueue + 1 + args[enqueue + 1..].iter().position(|a| *a == bad)?;
    let quote = |a: &String| {
        if !a.is_empty()
            && a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_./:=@%+,-".contains(&b))
        {
            a.clone()
        } else {
            format!("'{}'", a.replace('\'', "'\\''"))
        }
    };
    let mut line = vec!["git gatos".to_owned()];
    line.extend(args[..at].iter().map(quote));
    line.push("--".to_owned());
    line.extend(args[at..].iter().map(quote));
    Some(format!(
        "the command to run goes after `--`: {}",
        line.join(" ")
    ))
}

/// `jobs ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only this queue.
    #[arg(long, value_name = "Q")]
    pub queue: Option<String>,
    /// Only this state: pending, running, succeeded, failed, cancelled.
    #[arg(long, value_name = "STATE")]
    pub state: Option<String>,
    /// Include archived jobs whatever the state filter.
    #[arg(long)]
    pub all: bool,
    /// Only jobs that need this capability.
    #[arg(long, value_name = "CAP")]
    pub cap: Option<String>,
    /// Only jobs enqueued by this key (ed25519:…) or actor (cli:alice).
    #[arg(long, value_name = "WHO")]
    pub enqueuer: Option<String>,
    /// Only jobs enqueued at or after TIME (RFC 3339, a DUR ago like 1h, or a ULID such
    /// as a job id: the time it carries).
    #[arg(long, value_name = "ULID|TIME|DUR")]
    pub since: Option<String>,
    /// Only jobs enqueued before TIME (RFC 3339, a DUR ago like 1h, or a ULID).
    #[arg(long, value_name = "ULID|TIME|DUR")]
    pub until: Option<String>,
    /// Only jobs whose id starts with PREFIX.
    #[arg(long, value_name = "PREFIX")]
    pub id_prefix: Option<String>,
    /// Only jobs with this label: KEY, or KEY=PREFIX for a value starting so.
    #[arg(long, value_name = "KEY[=PREFIX]")]
    pub label: Option<String>,
    /// Start after this job (the cursor a previous `--limit` listing ended with).
    #[arg(long, value_name = "ID")]
    pub after: Option<String>,
    /// Print at most N jobs (1 to 1,000), then a last line `next: ID` (with --json,
    /// {"next_cursor": ID}) when more match; without it every match is printed.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

/// `jobs logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The job id.
    pub id: String,
    /// The attempt (default: the latest).
    #[arg(long, value_name = "N")]
    pub attempt: Option<u32>,
    /// Which stream: stdout, stderr or both (the job's standard output is printed on
    /// standard output, its standard error on standard error).
    #[arg(long, value_name = "STREAM", default_value = "both", value_parser = ["stdout", "stderr", "both"])]
    pub stream: String,
    /// Only the job's standard error (`--stream stderr`).
    #[arg(long, conflicts_with_all = ["stream", "stdout"])]
    pub stderr: bool,
    /// Only the job's standard output (`--stream stdout`).
    #[arg(long, conflicts_with_all = ["stream", "stderr"])]
    pub stdout: bool,
    /// Keep printing as the job writes, until it has ended (through later attempts unless
    /// --attempt is given); waits for a job that has not started or runs on another node.
    #[arg(long)]
    pub follow: bool,
}

/// `jobs watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Only events of this queue.
    #[arg(long, value_name = "Q")]
    pub queue: Option<String>,
    /// Only events of this job.
    #[arg(long, value_name = "ID")]
    pub job: Option<String>,
    /// Start after this event (its ULID on gatos.jobs), or at the first event made at or
    /// after this RFC 3339 TIME or DUR ago, instead of only new events.
    #[arg(long, value_name = "ULID|TIME|DUR")]
    pub since: Option<String>,
    /// Exit after N events.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
}

/// `jobs verify`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").args(["id", "all"]).required(true)))]
pub struct VerifyArgs {
    /// The job id.
    pub id: Option<String>,
    /// Every job with a result, live and archived.
    #[arg(long)]
    pub all: bool,
}

/// `jobs config`.
#[derive(Debug, Args)]
pub struct QueueConfigArgs {
    /// The queue (omitted: show every queue this node knows of).
    pub queue: Option<String>,
    /// The first retry delay (DUR, or `off` for the default 1s).
    #[arg(long, value_name = "DUR")]
    pub backoff_base: Option<String>,
    /// The longest retry delay (DUR, or `off` for the default 10m).
    #[arg(long, value_name = "DUR")]
    pub backoff_max: Option<String>,
    /// Refuse enqueues (QueueFull, exit 4) while this node counts N pending jobs in the
    /// queue; `0` or `none` removes the limit.
    #[arg(long, value_name = "N|none")]
    pub max_pending: Option<String>,
}

/// `worker`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("mode").args(["once", "drain"])))]
pub struct WorkerArgs {
    /// What this worker claims by.
    #[command(flatten)]
    pub claim: ClaimArgs,
    /// Jobs run at once.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub concurrency: usize,
    /// Lease length; heartbeats every third of it (DUR, at least 1s).
    #[arg(long, value_name = "DUR", default_value = "30s")]
    pub lease: String,
    /// Run at most one job, then exit.
    #[arg(long)]
    pub once: bool,
    /// Run until nothing this worker may claim is left, then exit.
    #[arg(long)]
    pub drain: bool,
    /// The worker's name in claims (default: host name and process id).
    #[arg(long, value_name = "NAME")]
    pub id: Option<String>,
    /// Base directory of jobs that name no checkout (default: an empty directory per
    /// attempt); must not contain the git directory.
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// Confine jobs with Landlock: required (refuse to start without it), auto (on where
    /// the kernel has it, a warning where not), off.
    #[arg(long, value_name = "MODE", default_value = "auto")]
    pub sandbox: String,
    /// A further directory jobs may read and execute (repeatable; never the git directory).
    #[arg(long = "sandbox-allow", value_name = "DIR")]
    pub sandbox_allow: Vec<PathBuf>,
    /// A further directory jobs may write (repeatable; never the git directory).
    #[arg(long = "sandbox-allow-write", value_name = "DIR")]
    pub sandbox_allow_write: Vec<PathBuf>,
    /// Also pass this variable through from the worker's environment (repeatable).
    #[arg(long = "pass-env", value_name = "NAME")]
    pub pass_env: Vec<String>,
    /// Bytes kept of each of stdout and stderr (truncation is marked).
    #[arg(long, value_name = "BYTES", default_value_t = gatos::worker::DEFAULT_LOG_CAP)]
    pub log_cap: usize,
    /// Time between TERM and KILL when stopping a job (DUR).
    #[arg(long, value_name = "DUR", default_value = "5s")]
    pub grace: String,
    /// Claim through this hub: claims, heartbeats, releases and results are atomic pushes
    /// with leases, and a result is at the hub before it is reported (jobs must have
    /// reached the hub by `git gatos sync`).
    #[arg(long, value_name = "REMOTE")]
    pub remote: Option<String>,
}

/// The manifest registry's verbs.
#[derive(Debug, Subcommand)]
pub enum ManifestsCommand {
    /// Register FILE (JSON or YAML; `-` for stdin) as the next version of NAME.
    Put {
        /// The manifest's name.
        name: String,
        /// The manifest file.
        file: PathBuf,
    },
    /// Print a version of a manifest (the latest by default).
    #[command(disable_version_flag = true)]
    Get {
        /// The manifest's name.
        name: String,
        /// The version.
        #[arg(long, value_name = "N")]
        version: Option<u64>,
    },
    /// List manifests with their latest versions.
    Ls,
    /// Enqueue a job from a stored version (the latest by default).
    #[command(disable_version_flag = true)]
    Run {
        /// The manifest's name.
        name: String,
        /// The version.
        #[arg(long, value_name = "N")]
        version: Option<u64>,
    },
}

/// `snapshot`'s verbs.
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Copy every ref under refs/gatos/ now into the snapshot NAME (at most 64; cost
    /// proportional to the number of live refs).
    Create {
        /// The snapshot's name (a-z first, then a-z 0-9 . _ -; at most 64).
        name: String,
    },
    /// List the snapshots: name, state, time, refs.
    Ls,
    /// Delete the snapshot NAME (audited).
    Rm {
        /// The snapshot's name.
        name: String,
    },
}

/// The keys plane's verbs.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create the signing key (trusted and published); --rotate replaces it.
    Init {
        /// Make a new key even if one exists (the old one stays trusted).
        #[arg(long)]
        rotate: bool,
    },
    /// Show the signing key's id and path.
    Show,
    /// List known keys: this node's, trusted, published and revoked ones.
    Ls,
    /// Trust a key here (a key id, a bare hex key or a key file); idempotent.
    Trust {
        /// The key.
        key: String,
    },
    /// Publish a signed revocation of a key.
    Revoke {
        /// The key.
        key: String,
        /// superseded (earlier proofs stay valid) or compromised.
        #[arg(long, value_name = "R", default_value = "superseded", value_parser = ["superseded", "compromised"])]
        reason: String,
        /// compromised: proofs from this time on are invalid (an RFC 3339 TIME, a DUR ago,
        /// or a ULID: the time it carries; without it, every proof by the key).
        #[arg(long, value_name = "ULID|TIME|DUR")]
        since: Option<String>,
    },
}

/// The message plane's verbs.
#[derive(Debug, Subcommand)]
pub enum MessagesCommand {
    /// Publish one message (--data, --file or stdin), or many (--batch).
    Publish(PublishArgs),
    /// Read messages oldest first, after a cursor; --follow waits for more.
    Read(ReadArgs),
    /// List topics.
    Topics,
    /// List, get or set consumer groups' checkpoints.
    #[command(subcommand)]
    Checkpoint(CheckpointCommand),
    /// Print a page after the group's checkpoint, then advance it (at-least-once).
    ///
    /// Delivery is at-least-once: a page is printed and flushed before the checkpoint
    /// moves, so a page that did not reach the reader (a full disk, a closed pipe, a
    /// crash or a signal before the move) comes again next time, and two consumers of
    /// one group may both get it; deduplicate by ULID. With --ack manual the checkpoint
    /// moves only when `git gatos messages ack` says so, after processing: delivery stays
    /// at-least-once, and everything after the checkpoint comes again after a restart.
    Consume(ConsumeArgs),
    /// Move a group's checkpoint forward to a processed message (after `consume --ack
    /// manual`).
    ///
    /// Forward only: an ack of a message at or behind the checkpoint changes nothing and
    /// says so (exit 0). The ULID must be a message of the topic (else NotFound). Two
    /// racing acks end at the greater one.
    Ack(AckArgs),
    /// Show or change a topic's segment and retention settings.
    Config(ConfigArgs),
    /// Drop sealed segments past retention, leaving a summary.
    Prune(PruneArgs),
}

/// `messages publish`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").args(["data", "file", "batch", "stdin"])))]
pub struct PublishArgs {
    /// The topic.
    pub topic: String,
    /// Read the payload from standard input.
    #[arg(value_name = "-", value_parser = ["-"])]
    pub stdin: Option<String>,
    /// The payload, as JSON.
    #[arg(long, value_name = "JSON")]
    pub data: Option<String>,
    /// Read the payload from a file.
    #[arg(long, value_name = "F")]
    pub file: Option<PathBuf>,
    /// Publish every line of a JSONL file (`-` for stdin) as one message.
    #[arg(long, value_name = "F.jsonl")]
    pub batch: Option<PathBuf>,
    /// Deduplicate: if a recent message has this msg_id, return it instead.
    #[arg(long, value_name = "ID", conflicts_with = "batch")]
    pub msg_id: Option<String>,
    /// Headers as a JSON object (msg_id among them deduplicates).
    #[arg(long, value_name = "JSON")]
    pub headers: Option<String>,
    /// Append only if the topic's last seq is N.
    #[arg(long, value_name = "N")]
    pub expect_last_seq: Option<u64>,
    /// Messages per commit-and-CAS chunk with --batch (1 to 100000).
    #[arg(long, value_name = "N", default_value_t = gatos::messages::DEFAULT_CHUNK, requires = "batch")]
    pub chunk: usize,
}

/// `messages read`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("cursor").args(["since", "since_seq"])))]
pub struct ReadArgs {
    /// The topic.
    pub topic: String,
    /// Start after the message with this ULID, or at the first message (in position
    /// order) made at or after this RFC 3339 TIME or DUR ago; later ones follow in
    /// position order even if made earlier (times are not monotonic across nodes).
    #[arg(long, value_name = "ULID|TIME|DUR")]
    pub since: Option<String>,
    /// Start after this position.
    #[arg(long, value_name = "N")]
    pub since_seq: Option<u64>,
    /// Print at most N messages.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// With --limit (a page, without --follow): end the page once its messages hold
    /// this many bytes (the message that crosses it is the last), as an RPC page does.
    #[arg(long, value_name = "BYTES", default_value_t = gatos::messages::DEFAULT_MAX_PAGE_BYTES)]
    pub max_page_bytes: u64,
    /// Keep waiting for new messages (without a cursor: only new ones).
    #[arg(long)]
    pub follow: bool,
}

/// `messages checkpoint`.
#[derive(Debug, Subcommand)]
pub enum CheckpointCommand {
    /// List consumer groups' checkpoints with their lag: all, a topic's, or a group's.
    Ls {
        /// Only checkpoints on this topic.
        topic: Option<String>,
        /// Only this consumer group's checkpoints.
        #[arg(long, value_name = "G")]
        group: Option<String>,
    },
    /// Show a group's checkpoint and lag.
    Get {
        /// The consumer group.
        group: String,
        /// The topic.
        topic: String,
    },
    /// Move a group's checkpoint to a message.
    Set {
        /// The consumer group.
        group: String,
        /// The topic.
        topic: String,
        /// The message to stand after.
        ulid: String,
        /// Allow moving it backwards (audited).
        #[arg(long)]
        force: bool,
    },
}

/// `messages consume`.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// The consumer group.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// Messages per page.
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub limit: u64,
    /// End the page once its messages hold this many bytes (the message that crosses it
    /// is the last, and the checkpoint advances to it), as an RPC page does.
    #[arg(long, value_name = "BYTES", default_value_t = gatos::messages::DEFAULT_MAX_PAGE_BYTES)]
    pub max_page_bytes: u64,
    /// Keep consuming as messages arrive, page by page (each printed, flushed, then
    /// acknowledged), until SIGINT or SIGTERM (which end it after the page in hand) or
    /// until the reader of the output goes away. An empty topic is waited on.
    #[arg(long)]
    pub follow: bool,
    /// Who moves the checkpoint: `auto` (after each page is delivered) or `manual` (only
    /// `git gatos messages ack`, after processing; consume never moves it, and with
    /// --follow goes on from what it printed).
    #[arg(long, value_name = "MODE", default_value = "auto", value_parser = ["auto", "manual"])]
    pub ack: String,
    /// With --follow --ack manual: stop printing when this many messages are printed
    /// but not acknowledged, and go on as acks move the checkpoint.
    #[arg(long, value_name = "N", default_value_t = gatos::checkpoints::DEFAULT_MAX_UNACKED)]
    pub max_unacked: u64,
}

/// `messages ack`.
#[derive(Debug, Args)]
pub struct AckArgs {
    /// The consumer group.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// The last message processed: the checkpoint moves to it if it is ahead.
    pub ulid: String,
}

/// `messages config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The topic.
    pub topic: String,
    /// Messages per segment.
    #[arg(long, value_name = "N")]
    pub max_messages: Option<u64>,
    /// Envelope bytes per segment.
    #[arg(long, value_name = "N")]
    pub max_bytes: Option<u64>,
    /// Prune sealed segments older than this (DUR, or `off`).
    #[arg(long, value_name = "DUR")]
    pub ttl: Option<String>,
    /// Keep at least this many messages when pruning (or `off`).
    #[arg(long, value_name = "N")]
    pub retain_messages: Option<String>,
    /// Keep about this many envelope bytes when pruning (or `off`).
    #[arg(long, value_name = "N")]
    pub retain_bytes: Option<String>,
    /// Sign this topic's messages with the node key, and take them from remotes only when
    /// a trusted key signed them (`on` or `off`; the gatos.* topics always are).
    #[arg(long, value_name = "on|off", value_parser = ["on", "off"])]
    pub sign: Option<String>,
}

/// `messages prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// The topic.
    pub topic: String,
    /// Also drop sealed segments whose last message is older than this.
    #[arg(long, value_name = "DUR")]
    pub older_than: Option<String>,
    /// Show what would be dropped; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Drop even what consumer groups have not consumed (audited).
    #[arg(long)]
    pub force: bool,
}

/// `maintenance`.
#[derive(Debug, Args)]
pub struct MaintenanceArgs {
    /// Only if thresholds are crossed (what writers start on their own).
    #[arg(long)]
    pub auto: bool,
    /// Archive finished jobs now (after gatos.jobs.archiveAfter, or --older-than).
    #[arg(long)]
    pub archive_jobs: bool,
    /// With --archive-jobs: archive jobs that finished longer ago than this (DUR).
    #[arg(long, value_name = "DUR", requires = "archive_jobs")]
    pub older_than: Option<String>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
        super::GenerateCli::command().debug_assert();
    }
}
