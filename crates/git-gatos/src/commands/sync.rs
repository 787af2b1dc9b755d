//! `git gatos sync`.

use std::io::IsTerminal as _;

use gatos::Error;
use gatos::sync::SyncOptions;
use gatos_types::sync::{SyncReport, TopicAction};

use super::Ctx;
use crate::cli::SyncArgs;
use crate::output::{Output, count};

/// "1 message", "2 messages".
fn messages(n: u64) -> String {
    count(n, "message", "messages")
}

/// Human lines of a sync report: one per topic that moved (counting messages), then what
/// else happened, then the summary, which counts messages and the other refs apart.
fn describe(r: &SyncReport, w: &mut dyn std::io::Write) -> std::io::Result<()> {
    for t in &r.topics {
        let what = match t.action {
            TopicAction::InSync => "in sync".to_owned(),
            TopicAction::Adopted => format!("received {}", messages(t.received)),
            TopicAction::Pushed => format!("sent {}", messages(t.sent)),
            TopicAction::Reappended => format!(
                "received {}, sent {} appended after them (seq and commits are provisional until at the hub)",
                messages(t.received),
                t.sent
            ),
        };
        let dups = if t.duplicates > 0 {
            format!(
                "; {} not sent: the hub holds {} with the same msg_id",
                messages(t.duplicates),
                if t.duplicates == 1 { "it" } else { "them" }
            )
        } else {
            String::new()
        };
        let lost = if t.landed {
            ""
        } else {
            " (lost a race at the hub; the next sync retries)"
        };
        writeln!(w, "topic {}: {what}{dups}{lost}", t.topic)?;
    }
    for c in &r.conflicts {
        writeln!(w, "conflict {} ({}): {}", c.name, c.resolution, c.reason)?;
    }
    if r.claims_abandoned > 0 {
        writeln!(
            w,
            "{} lost to the hub's and abandoned",
            count(r.claims_abandoned, "local claim", "local claims")
        )?;
    }
    if r.checkpoints_moved_back > 0 {
        writeln!(
            w,
            "{} moved back to a fork point (their messages come again)",
            count(r.checkpoints_moved_back, "checkpoint", "checkpoints")
        )?;
    }
    for x in &r.rejected {
        writeln!(w, "rejected {} [{}]: {}", x.name, x.code.as_str(), x.reason)?;
    }
    if r.rejected_count > r.rejected.len() as u64 {
        writeln!(
            w,
            "… and {} more rejected (git gatos doctor; .git/gatos/sync/rejected.jsonl)",
            r.rejected_count - r.rejected.len() as u64
        )?;
    }
    for x in &r.retry {
        writeln!(w, "not yet at the hub: {x}")?;
    }
    let received: u64 = r.topics.iter().map(|t| t.received).sum();
    let sent: u64 = r.topics.iter().map(|t| t.sent).sum();
    // Messages are counted per message; everything else (jobs, claims, results,
    // checkpoints, settings, keys, sealed segments) per ref.
    write!(
        w,
        "synced with {}: {} received, {sent} sent; {} adopted, {} pushed, {} deleted here, {} deleted there; {}, {} rejected",
        r.remote,
        messages(received),
        count(r.adopted, "ref", "refs"),
        r.pushed,
        r.deleted_local,
        r.deleted_remote,
        count(r.conflicts.len() as u64, "conflict", "conflicts"),
        count(r.rejected_count, "ref", "refs"),
    )
}

/// Fetches, reconciles and pushes; with `--rejected`, lists the latest rejections instead.
pub fn run(ctx: &Ctx, out: &mut Output, a: &SyncArgs) -> Result<(), Error> {
    if a.rejected {
        return rejected(ctx, out, a);
    }
    let g = ctx.gatos()?;
    let report = g.sync(&SyncOptions {
        remote: a.remote.clone(),
        strict: a.strict,
        accept_unsigned: a.accept_unsigned_history,
        progress: out.progress_allowed() && std::io::stderr().is_terminal(),
    })?;
    // `-q`: nothing on success (errors, and `--strict` refusals, still go to stderr).
    if out.is_quiet() && !out.is_json() {
        return Ok(());
    }
    out.row(&report, |w| describe(&report, w))
}

/// `git gatos sync --rejected`: the `sync.rejections` operation, one line (or JSON row) per
/// rejection, newest first, then what was left out.
fn rejected(ctx: &Ctx, out: &mut Output, a: &SyncArgs) -> Result<(), Error> {
    let r = ctx
        .service()?
        .sync_rejections(gatos_api::types::SyncRejectionsParams {
            remote: a.remote.clone(),
            limit: Some(a.limit),
        })
        .map_err(super::api)?;
    for x in &r.rejections {
        out.row(x, |w| {
            write!(
                w,
                "{}  {}  {}  [{}] {}",
                x.at,
                x.remote,
                x.name,
                x.code.as_str(),
                x.reason
            )
        })?;
    }
    let mut notes = Vec::new();
    if r.more > 0 {
        notes.push(format!(
            "{} not shown",
            count(r.more, "older rejection", "older rejections")
        ));
    }
    if r.skipped > 0 {
        notes.push(format!(
            "{} of the log skipped",
            count(r.skipped, "unreadable line", "unreadable lines")
        ));
    }
    if !out.is_json() && !notes.is_empty() {
        out.row(&(), |w| write!(w, "… {}", notes.join("; ")))?;
    }
    Ok(())
}
