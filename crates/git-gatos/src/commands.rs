//! Dispatch: one module per plane, one file per verb.

mod audit;
mod doctor;
mod export;
mod init;
mod jobs;
mod keys;
mod maintenance;
mod manifests;
mod messages;
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

/// A point in time given on the command line: an RFC 3339 TIME, or a DUR meaning that long
/// before `now` (`1h`: the last hour). `flag` names the option in the error.
///
/// # Errors
/// `InvalidInput` for neither form.
pub fn time_or_ago(
    flag: &str,
    s: &str,
    now: gatos_types::Timestamp,
) -> Result<gatos_types::Timestamp, Error> {
    match gatos_types::Dur::parse(s) {
        Ok(d) => Ok(now.minus(d)),
        Err(_) => gatos_types::time::parse_time(s, now)
            .map_err(|e| Error::from(e).context(format_args!("{flag} (a TIME or a DUR ago)"))),
    }
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
    }
    out.flush()?;
    // The process ends here: tearing down gix's object store (slots, caches, maps) is work
    // the kernel does for free at exit. Every lock guard is already released by now.
    std::mem::forget(ctx);
    Ok(())
}
