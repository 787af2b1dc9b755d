//! `git gatos worker`.

use std::io::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

use gatos::Error;
use gatos::worker::{self, Control, Mode, Notice, WorkerOptions};
use gatos_types::jobs::WorkerRow;
use gatos_types::{Dur, ErrorCode};

use super::{Ctx, parse};
use crate::cli::WorkerArgs;
use crate::output::Output;

fn dur(flag: &str, s: &str) -> Result<Dur, Error> {
    Dur::parse(s).map_err(|e| Error::from(e).context(format_args!("--{flag}")))
}

/// Stops claiming on the first SIGINT/SIGTERM, stops running jobs on the second.
fn install_signals(control: &Arc<Control>, out: &Output) -> Result<(), Error> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).map_err(|e| {
        Error::new(
            ErrorCode::Internal,
            format!("installing signal handlers: {e}"),
        )
    })?;
    let control = Arc::clone(control);
    let quiet = out.is_json();
    std::thread::Builder::new()
        .name("gatos-worker-signals".into())
        .spawn(move || {
            let mut seen = 0;
            for _ in signals.forever() {
                seen += 1;
                control.request_stop();
                if seen == 1 {
                    if !quiet {
                        tracing::warn!(
                            "stopping: running jobs finish first; signal again to stop them now"
                        );
                    }
                } else {
                    tracing::warn!("stopping running jobs now");
                }
            }
        })
        .map_err(|e| {
            Error::new(
                ErrorCode::Internal,
                format!("starting the signal thread: {e}"),
            )
        })?;
    Ok(())
}

/// Runs a worker until `--once`, `--drain` or a signal says to stop; exits 0 whatever
/// its jobs' outcomes.
pub fn run(ctx: &Ctx, out: &mut Output, a: &WorkerArgs) -> Result<(), Error> {
    let g = ctx.gatos()?;
    // A worker lives long: its job events are acknowledged from the journal and made
    // commits by its flusher, and at its exit (ADR 0046).
    g.set_journal(true);
    g.start_journal_flusher();
    g.set_job_arbiter(a.remote.as_deref())?;
    let mut opts = WorkerOptions::new(match &a.id {
        Some(id) => parse(id)?,
        None => worker::default_worker_id(),
    });
    opts.queues = a
        .claim
        .queues
        .iter()
        .map(|q| parse(q))
        .collect::<Result<_, _>>()?;
    opts.caps = a
        .claim
        .caps
        .iter()
        .map(|c| parse(c))
        .collect::<Result<_, _>>()?;
    opts.concurrency = a.concurrency;
    opts.lease = dur("lease", &a.lease)?;
    opts.grace = dur("grace", &a.grace)?.to_std();
    opts.mode = if a.once {
        Mode::Once
    } else if a.drain {
        Mode::Drain
    } else {
        Mode::Forever
    };
    opts.workdir = a.workdir.clone();
    opts.secrets_file = a.claim.secrets.clone();
    opts.secrets_dir = a.claim.secrets_dir.clone();
    opts.secret_env = a.claim.secret_env.clone();
    opts.sandbox = a
        .sandbox
        .parse()
        .map_err(|e: String| Error::new(ErrorCode::InvalidInput, e))?;
    opts.sandbox_read = a.sandbox_allow.clone();
    opts.sandbox_write = a.sandbox_allow_write.clone();
    opts.pass_env = a.pass_env.clone();
    opts.allow_untrusted_enqueuers = a.claim.allow_untrusted_enqueuers;
    opts.log_cap = a.log_cap;
    let control = Arc::new(Control::new());
    install_signals(&control, out)?;
    out.streaming = true;
    let printer = Mutex::new(&mut *out);
    let report = |row: &WorkerRow| {
        let mut o = printer.lock().unwrap_or_else(PoisonError::into_inner);
        // A closed stdout must not stop the worker.
        let _ = o.row(row, |w| write!(w, "{}", worker::describe(row)));
    };
    // Start-up and waiting lines go to stderr (stdout carries the rows), unless -q.
    let say = |n: &Notice| {
        let o = printer.lock().unwrap_or_else(PoisonError::into_inner);
        if !o.is_quiet() {
            let _ = writeln!(std::io::stderr(), "{n}");
        }
    };
    let summary = worker::run_with(&g, &opts, &control, &report, &say);
    // Its journaled events become commits before it exits, whatever else still holds a
    // handle (ADR 0046); a killed worker leaves them to the next reader.
    if let Err(e) = g.flush_journals() {
        tracing::warn!(error = %e, "could not make every journaled event a commit; the next reader will");
    }
    let summary = summary?;
    tracing::info!(
        attempts = summary.attempts,
        succeeded = summary.succeeded,
        "worker done"
    );
    // A drain that ran out of jobs says what is pending that it did not take.
    let o = printer.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(line) = summary.idle.and_then(|i| i.last_word(summary.attempts))
        && !o.is_quiet()
    {
        let _ = writeln!(std::io::stderr(), "{line}");
    }
    Ok(())
}
