//! Dispatch: one module per plane, one file per verb.

mod audit;
mod dashboard;
mod doctor;
mod export;
pub mod generate;
mod init;
mod jobs;
mod keys;
mod maintenance;
mod manifests;
mod messages;
mod snapshot;
mod sync;
mod worker;

use std::path::PathBuf;

use gatos::{Error, Gatos, OpenOptions};
use gatos_types::ErrorCode;

use crate::cli::{Cli, Command};
use crate::output::Output;

/// What every command needs.
pub struct Ctx {
    /// Where the command runs.
    pub cwd: PathBuf,
    /// Options for opening the repository (test clock and seed).
    pub open: OpenOptions,
    opened: std::cell::OnceCell<Gatos>,
}

/// The CLI as a face of the service: a request error is a usage error (exit 2); the rest
/// keep their taxonomy code.
pub fn api(e: gatos_api::CallError) -> Error {
    match e {
        gatos_api::CallError::InvalidParams(m) => crate::output::usage(m),
        other => other.into(),
    }
}

impl Ctx {
    /// Opens the repository containing the working directory.
    ///
    /// # Errors
    /// `NotFound` outside a repository.
    pub fn gatos(&self) -> Result<Gatos, Error> {
        if let Some(g) = self.opened.get() {
            return Ok(g.clone());
        }
        let g = Gatos::discover(&self.cwd, self.open.clone())?;
        g.set_maintenance_hook(Some(std::sync::Arc::new(spawn_maintenance)));
        // A one-shot process writes directly: its journal would be materialized before it
        // exits anyway (ADR 0046).
        g.set_journal(false);
        Ok(self.opened.get_or_init(|| g).clone())
    }

    /// The service over the repository, as the CLI configures it: a job enqueued without a
    /// checkout choice runs in `HEAD` of the work tree.
    ///
    /// # Errors
    /// As [`Ctx::gatos`].
    pub fn service(&self) -> Result<gatos_api::Service, Error> {
        Ok(gatos_api::Service::new(
            self.gatos()?,
            gatos_api::Config {
                checkout_head_by_default: true,
                ..gatos_api::Config::default()
            },
        ))
    }

    /// Who the CLI acts for: the repository's gatos identity (`cli:<name>`).
    ///
    /// # Errors
    /// As [`Ctx::gatos`].
    pub fn actor(&self) -> Result<gatos_api::Actor, Error> {
        Ok(gatos_api::Actor::Cli(
            self.gatos()?.identity_name().to_owned(),
        ))
    }
}

/// Starts `git gatos maintenance --auto` detached, so compaction never blocks the writer
/// that noticed it was due.
fn spawn_maintenance(gatos: &Gatos) {
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["maintenance", "--auto", "--quiet"])
        .current_dir(gatos.git_dir())
        .env("GIT_DIR", gatos.git_dir())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    match cmd.spawn() {
        Ok(child) => tracing::info!(pid = child.id(), "started background maintenance"),
        Err(e) => tracing::warn!(error = %e, "could not start background maintenance"),
    }
}

/// What a `--since` names: a record by its ULID (26 characters), or a point in time (an
/// RFC 3339 TIME, or a DUR that long before now). Every command with `--since` takes all
/// three; a command whose records are not ULID-named reads a ULID as the time it carries.
#[derive(Debug, Clone, Copy)]
pub enum Since {
    /// After the record with this ULID.
    Ulid(gatos_types::Ulid),
    /// At or after this time.
    Time(gatos_types::Timestamp),
}

impl Since {
    /// The time this stands for: a ULID's own time (millisecond precision).
    pub fn time(self) -> gatos_types::Timestamp {
        match self {
            Since::Ulid(u) => gatos::messages::ulid_time(u),
            Since::Time(t) => t,
        }
    }
}

/// Parses a `--since` (or `--until`): a ULID, a TIME or a DUR ago.
///
/// # Errors
/// `InvalidInput` for none of the three, naming `flag`.
pub fn since_arg(flag: &str, s: &str, now: gatos_types::Timestamp) -> Result<Since, Error> {
    if s.len() == 26
        && let Ok(u) = s.parse::<gatos_types::Ulid>()
    {
        return Ok(Since::Ulid(u));
    }
    if let Ok(d) = gatos_types::Dur::parse(s) {
        return Ok(Since::Time(now.minus(d)));
    }
    gatos_types::Timestamp::parse_rfc3339(s)
        .map(Since::Time)
        .map_err(|_| {
            Error::new(
                ErrorCode::InvalidInput,
                format!(
                    "{flag}: {s:?} is not a ULID (26 characters), an RFC 3339 time \
                 (2026-12-04T10:00:00Z) or a duration meaning that long ago (90s, 15m, 1h, 2d)"
                ),
            )
        })
}

/// Parses a validated name, mapping the error to `InvalidInput`.
pub fn parse<T>(s: &str) -> Result<T, Error>
where
    T: std::str::FromStr,
    T::Err: Into<Error>,
{
    s.parse::<T>().map_err(Into::into)
}

/// Runs the parsed command line.
///
/// # Errors
/// Whatever the command fails with.
pub fn run(cli: &Cli, out: &mut Output) -> Result<(), Error> {
    let cwd = std::env::current_dir()
        .map_err(|e| Error::new(ErrorCode::Internal, format!("no working directory: {e}")))?;
    let ctx = Ctx {
        cwd,
        open: OpenOptions::from_test_env()?,
        opened: std::cell::OnceCell::new(),
    };
    let _span = tracing::info_span!("command").entered();
    match &cli.command {
        Command::Init => init::run(&ctx, out)?,
        Command::Messages(m) => messages::run(&ctx, out, m)?,
        Command::Jobs(j) => jobs::run(&ctx, out, j)?,
        Command::Worker(a) => worker::run(&ctx, out, a)?,
        Command::Manifests(m) => manifests::run(&ctx, out, m)?,
        Command::Keys(k) => keys::run(&ctx, out, k)?,
        Command::Sync(a) => sync::run(&ctx, out, a)?,
        Command::Maintenance(a) => maintenance::run(&ctx, out, a)?,
        Command::Audit(a) => audit::run(&ctx, out, a)?,
        Command::Export(a) => export::run(&ctx, out, a)?,
        Command::Doctor(a) => doctor::run(&ctx, out, a)?,
        Command::Snapshot(a) => snapshot::run(&ctx, out, a)?,
        Command::Dashboard(a) => dashboard::run(&ctx, out, a)?,
    }
    // What the handle holds back for the disk (the job catalog's lines of the jobs it
    // enqueued) goes before the last output, so a script that reads an enqueued job's id
    // and lists at once finds its line.
    if let Some(g) = ctx.opened.get() {
        g.flush_catalog();
    }
    out.flush()?;
    // The process ends here: tearing down gix's object store (slots, caches, maps) is work
    // the kernel does for free at exit. Every lock guard is already released by now.
    std::mem::forget(ctx);
    Ok(())
}
