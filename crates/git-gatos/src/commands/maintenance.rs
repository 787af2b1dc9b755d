//! `git gatos maintenance`.

use gatos::Error;
use gatos::jobs::archive::{self, Report};
use gatos_types::Dur;

use super::Ctx;
use crate::cli::MaintenanceArgs;
use crate::output::{Output, count};

fn archive_line(r: &Report) -> String {
    format!(
        "archived {} in {} ({} too recent, {} left for next time)",
        count(
            r.archived + r.finished_earlier_run,
            "finished job",
            "finished jobs"
        ),
        count(r.commits, "commit", "commits"),
        r.too_recent,
        r.moved
    )
}

/// Compacts the repository and archives finished jobs (or, with `--auto`, only what is
/// due; with `--archive-jobs`, only archives).
pub fn run(ctx: &Ctx, out: &mut Output, args: &MaintenanceArgs) -> Result<(), Error> {
    let g = ctx.gatos()?;
    if args.archive_jobs {
        let older = match &args.older_than {
            Some(s) => Dur::parse(s).map_err(|e| Error::from(e).context("--older-than"))?,
            None => g.settings().archive_after,
        };
        let r = archive::archive(&g, older)?;
        let row = serde_json::json!({"archive": r});
        return out.row(&row, |w| write!(w, "{}", archive_line(&r)));
    }
    let (archived, report) =
        gatos::maintenance::run(&g, gatos::maintenance::Options { auto: args.auto })
            .into_result()?;
    let row = serde_json::json!({
        "ran": !report.steps.is_empty(),
        "skipped": report.skipped,
        "steps": report.steps,
        "stale_keeps_removed": report.stale_keeps_removed.len(),
        "stale_temporaries_removed": report.stale_temporaries_removed.len(),
        "before": {"loose_objects": report.before.loose_objects, "packs": report.before.packs},
        "after": {"loose_objects": report.after.loose_objects, "packs": report.after.packs},
        "archive": archived,
    });
    out.row(&row, |w| {
        if let Some(r) = &archived {
            writeln!(w, "{}", archive_line(r))?;
        }
        if report.skipped {
            write!(w, "maintenance already running elsewhere; skipped")
        } else if report.steps.is_empty() {
            write!(
                w,
                "nothing to do ({}, {})",
                count(report.before.loose_objects, "loose object", "loose objects"),
                count(report.before.packs, "pack", "packs")
            )
        } else {
            write!(
                w,
                "compacted: {}, {} before; {}, {} after",
                count(report.before.loose_objects, "loose object", "loose objects"),
                count(report.before.packs, "pack", "packs"),
                count(report.after.loose_objects, "loose object", "loose objects"),
                count(report.after.packs, "pack", "packs")
            )
        }
    })
}
