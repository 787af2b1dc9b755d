//! `git gatos sync`.

use std::io::IsTerminal as _;

use gatos::Error;
use gatos::sync::SyncOptions;
use gatos_types::sync::{SyncReport, TopicAction};

use super::Ctx;
use crate::cli::SyncArgs;
use crate::output::Output;

/// Human lines of a sync report.
fn describe(r: &SyncReport, w: &mut dyn std::io::Write) -> std::io::Result<()> {
    for t in &r.topics {
        let what = match t.action {
            TopicAction::InSync => "in sync".to_owned(),
            TopicAction::Adopted => format!("received {}", t.received),
            TopicAction::Pushed => format!("sent {}", t.sent),
            TopicAction::Reappended => format!(
                "received {}, sent {} appended after them (seq and commits are provisional until at the hub)",
                t.received, t.sent
            ),
        };
        let lost = if t.landed {
            ""
        } else {
            " (lost a race at the hub; the next sync retries)"
        };
        writeln!(w, "topic {}: {what}{lost}", t.topic)?;
    }
    for c in &r.conflicts {
        writeln!(w, "conflict {} ({}): {}", c.name, c.resolution, c.reason)?;
    }
    if r.claims_abandoned > 0 {
        writeln!(
            w,
            "{} local claim(s) lost to the hub's and were abandoned",
            r.claims_abandoned
        )?;
    }
    if r.checkpoints_moved_back > 0 {
        writeln!(
            w,
            "{} checkpoint(s) moved back to a fork point (their messages come again)",
            r.checkpoints_moved_back
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
    write!(
        w,
        "synced with {}: {} adopted, {} pushed, {} deleted here, {} deleted there, {} conflict(s), {} rejected",
        r.remote,
        r.adopted,
        r.pushed,
        r.deleted_local,
        r.deleted_remote,
        r.conflicts.len(),
        r.rejected_count
    )
}

/// Fetches, reconciles and pushes.
pub fn run(ctx: &Ctx, out: &mut Output, a: &SyncArgs) -> Result<(), Error> {
    let g = ctx.gatos()?;
    let report = g.sync(&SyncOptions {
        remote: a.remote.clone(),
        strict: a.strict,
        accept_unsigned: a.accept_unsigned_history,
        progress: out.progress_allowed() && std::io::stderr().is_terminal(),
    })?;
    out.row(&report, |w| describe(&report, w))
}
