//! `git gatos messages prune`.

use gatos::Error;
use gatos::messages::PruneOptions;
use gatos_types::{Dur, Topic};

use super::super::{Ctx, parse};
use crate::cli::PruneArgs;
use crate::output::{Output, count};

/// Prunes sealed segments past retention.
pub fn run(ctx: &Ctx, out: &mut Output, a: &PruneArgs) -> Result<(), Error> {
    let topic: Topic = parse(&a.topic)?;
    let older_than = a.older_than.as_deref().map(Dur::parse).transpose()?;
    // A topic this node has never seen is `NotFound` (with the closest names), as for
    // `read`: a misspelt name must not pass for a quiet topic.
    ctx.service()?
        .require_topic(&topic)
        .map_err(super::super::api)?;
    let row = ctx.gatos()?.messages().prune(
        &topic,
        &PruneOptions {
            older_than,
            dry_run: a.dry_run,
            force: a.force,
        },
    )?;
    out.row(&row, |w| {
        if row.segments.is_empty() {
            return write!(w, "nothing to prune in {}", row.topic);
        }
        let verb = if row.dry_run { "would prune" } else { "pruned" };
        write!(
            w,
            "{verb} {} ({}) in {} of {}",
            count(row.messages, "message", "messages"),
            count(row.bytes, "byte", "bytes"),
            count(row.segments.len(), "segment", "segments"),
            row.topic
        )?;
        if let Some(s) = row.summary {
            write!(w, "; summary {s}")?;
        }
        if !row.groups_behind.is_empty() {
            let groups: Vec<String> = row.groups_behind.iter().map(ToString::to_string).collect();
            write!(w, "; groups behind: {}", groups.join(", "))?;
        }
        Ok(())
    })
}
