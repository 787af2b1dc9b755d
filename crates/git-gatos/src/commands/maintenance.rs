//! `git gatos maintenance`.

use gatos::Error;

use super::Ctx;
use crate::cli::MaintenanceArgs;
use crate::output::Output;

/// Compacts the repository (or, with `--auto`, only when thresholds are crossed).
pub fn run(ctx: &Ctx, out: &mut Output, args: &MaintenanceArgs) -> Result<(), Error> {
    let g = ctx.gatos()?;
    let thresholds = args.auto.then_some(g.settings().maintenance);
    let report = g.store().run_maintenance(thresholds)?;
    let row = serde_json::json!({
        "ran": !report.steps.is_empty(),
        "skipped": report.skipped,
        "steps": report.steps,
        "stale_keeps_removed": report.stale_keeps_removed.len(),
        "before": {"loose_objects": report.before.loose_objects, "packs": report.before.packs},
        "after": {"loose_objects": report.after.loose_objects, "packs": report.after.packs},
    });
    out.row(&row, |w| {
        if report.skipped {
            write!(w, "maintenance already running elsewhere; skipped")
        } else if report.steps.is_empty() {
            write!(
                w,
                "nothing to do ({} loose objects, {} packs)",
                report.before.loose_objects, report.before.packs
            )
        } else {
            write!(
                w,
                "compacted: {} loose objects, {} packs before; {} loose objects, {} packs after",
                report.before.loose_objects,
                report.before.packs,
                report.after.loose_objects,
                report.after.packs
            )
        }
    })
}
