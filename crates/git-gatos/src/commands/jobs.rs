//! `git gatos jobs …`.

mod config;
mod enqueue;
mod logs;
mod ls;
mod verify;
mod watch;
mod why;

use gatos::Error;
use gatos_types::Ulid;
use gatos_types::jobs::{EnqueueRow, JobRow};

use super::{Ctx, api, parse};
use crate::cli::JobsCommand;
use crate::output::Output;
pub use enqueue::read_manifest;
use gatos_api::types::{CancelParams, JobIdParams};

/// Dispatches a job-plane verb.
pub fn run(ctx: &Ctx, out: &mut Output, cmd: &JobsCommand) -> Result<(), Error> {
    match cmd {
        JobsCommand::Enqueue(a) => enqueue::run(ctx, out, a),
        JobsCommand::Ls(a) => ls::run(ctx, out, a),
        JobsCommand::Show { id } => {
            let row = ctx
                .service()?
                .jobs_get(JobIdParams {
                    id: parse::<Ulid>(id)?,
                })
                .map_err(api)?;
            print_show(out, &row)
        }
        JobsCommand::Why(a) => why::run(ctx, out, a),
        JobsCommand::Logs(a) => logs::run(ctx, out, a),
        JobsCommand::Watch(a) => watch::run(ctx, out, a),
        JobsCommand::Cancel { id, reason } => {
            let row = ctx
                .service()?
                .jobs_cancel(
                    &ctx.actor()?,
                    CancelParams {
                        id: parse::<Ulid>(id)?,
                        reason: reason.clone(),
                    },
                )
                .map_err(api)?;
            out.row(&row, |w| write!(w, "job {} {}", row.id, row.state.as_str()))
        }
        JobsCommand::Retry { id } => {
            let row = ctx
                .service()?
                .jobs_retry(
                    &ctx.actor()?,
                    JobIdParams {
                        id: parse::<Ulid>(id)?,
                    },
                )
                .map_err(api)?;
            print_enqueued(out, &row)
        }
        JobsCommand::Resolve { id, keep } => {
            let keep = match keep.as_str() {
                "local" => None,
                other => Some(parse::<gatos_types::Oid>(other)?),
            };
            let row = ctx.gatos()?.jobs().resolve(parse::<Ulid>(id)?, keep)?;
            out.row(&row, |w| {
                write!(
                    w,
                    "job {} keeps result {} ({} set aside)",
                    row.id,
                    row.kept,
                    row.dropped.len()
                )
            })
        }
        JobsCommand::Verify(a) => verify::run(ctx, out, a),
        JobsCommand::Config(a) => config::run(ctx, out, a),
    }
}

/// Prints an enqueued job: its row with `--json`, else `enqueued ID`.
pub fn print_enqueued(out: &mut Output, row: &EnqueueRow) -> Result<(), Error> {
    out.row(row, |w| match row.retry_of {
        Some(old) => write!(w, "enqueued {} (retry of {old})", row.id),
        None => write!(w, "enqueued {}", row.id),
    })
}

/// One line per job: id, state, attempt, queue, command.
pub fn print_row(out: &mut Output, row: &JobRow) -> Result<(), Error> {
    out.row(row, |w| {
        write!(
            w,
            "{} {:<9} attempt {} queue {} {}",
            row.id,
            row.state.as_str(),
            row.attempt,
            row.queue,
            command_line(row)
        )
    })
}

fn command_line(row: &JobRow) -> String {
    // One line whatever the job author put in: a newline or escape sequence in an argument
    // is shown escaped (it could fake a line of this report).
    let argv: Vec<std::borrow::Cow<'_, str>> = row
        .manifest
        .command
        .iter()
        .chain(&row.manifest.args)
        .map(|a| crate::output::printable(a))
        .collect();
    let mut s = argv.join(" ");
    if s.chars().count() > 60 {
        s = s.chars().take(57).collect::<String>() + "...";
    }
    s
}

/// `jobs show`: the JSON row, or a short human report.
fn print_show(out: &mut Output, row: &JobRow) -> Result<(), Error> {
    out.row(row, |w| {
        writeln!(w, "job {}", row.id)?;
        writeln!(
            w,
            "state    {} (attempt {} of {})",
            row.state.as_str(),
            row.attempt,
            row.manifest.max_attempts
        )?;
        writeln!(
            w,
            "queue    {} priority {}",
            row.queue, row.manifest.priority
        )?;
        writeln!(w, "command  {}", command_line(row))?;
        if let Some(src) = &row.manifest.source {
            writeln!(
                w,
                "manifest {} v{} ({})",
                src.name, src.version, src.content_id
            )?;
        }
        match &row.claim {
            Some(c) => writeln!(
                w,
                "claim    {} by {} attempt {}, lease until {}",
                serde_json::to_value(c.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                crate::output::printable(c.worker.as_ref()),
                c.attempt,
                c.lease_until
            )?,
            None => writeln!(w, "claim    none")?,
        }
        match &row.result {
            Some(r) => writeln!(
                w,
                "result   {} exit {} ({})",
                serde_json::to_value(r.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                r.exit_code
                    .map_or_else(|| "-".to_owned(), |c| c.to_string()),
                r.commit
            )?,
            None => writeln!(w, "result   none")?,
        }
        // Why it ended (ADR 0029); an attempt that ended while the job goes on, too.
        let attempt_ended = row
            .claim
            .as_ref()
            .and_then(|c| Some((c.attempt, c.ended.as_ref()?)));
        match (&row.ended, attempt_ended) {
            (Some(e), _) => writeln!(w, "ended    {}", crate::output::printable(&e.to_string()))?,
            (None, Some((n, e))) => {
                let e = e.to_string();
                let e = crate::output::printable(&e);
                writeln!(w, "ended    attempt {n}: {e} (the job runs again)")?;
            }
            (None, None) => {}
        }
        if let Some(e) = &row.enqueuer {
            match (&e.key, &e.actor) {
                (Some(k), Some(a)) => writeln!(
                    w,
                    "enqueuer {a} ({k}, {})",
                    if e.trusted { "trusted" } else { "not trusted here" }
                )?,
                _ => writeln!(w, "enqueuer unsigned")?,
            }
            // A pending job's enqueuer condition below says the same.
            if let Some(b) = e.blocked.as_ref().filter(|_| row.waiting.is_empty()) {
                writeln!(w, "waiting  not run by this node's workers: {b}")?;
            }
        }
        // What a pending job waits for (gatos::jobs::waiting), one line each.
        for c in &row.waiting {
            let verdict = match c.blocks {
                Some(true) => "blocks",
                Some(false) => "passes",
                None => "depends on the worker",
            };
            writeln!(w, "waiting  {:<12} {} [{verdict}]", c.kind.as_str(), c.detail)?;
        }
        for c in &row.conflicts {
            writeln!(
                w,
                "conflict another node's result {c} was kept beside this one (git gatos jobs resolve {} --keep local|{c})",
                row.id
            )?;
        }
        match &row.poe {
            Some(p) if p.verified => write!(w, "proof    verified, signed by {}", p.key),
            Some(p) if p.code == Some(gatos_types::ErrorCode::UntrustedKey) => write!(
                w,
                "proof    valid signature by {k}, a key this node does not trust (git gatos keys trust {k})",
                k = p.key
            ),
            Some(p) => write!(
                w,
                "proof    does NOT verify ({}): {}",
                p.code.map_or("?", |c| c.as_str()),
                p.error.as_deref().unwrap_or("signed by another key")
            ),
            None => write!(w, "proof    none"),
        }
    })
}
