//! Maintenance: archive finished jobs, then compact the repository — written once, for
//! `git gatos maintenance` (and the detached `--auto` run a CLI writer starts) and for the
//! daemon's maintenance thread.

pub use gatos_store::maintenance::{Debt, Report, Thresholds};

use serde::{Deserialize, Serialize};

use crate::Gatos;
use crate::error::Result;
use crate::jobs::archive;

/// What to run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Only what is due: archive when the last automatic archive is long enough ago
    /// ([`archive::archive_if_due`]), compact when the settings' thresholds are crossed.
    /// Otherwise archive with `gatos.jobs.archiveAfter` and compact whatever the debt.
    pub auto: bool,
}

/// What a run did. Compaction runs even when archiving failed (they are independent:
/// a job archive that keeps changing must not stop the object store's upkeep).
#[derive(Debug)]
pub struct Outcome {
    /// The archive's report (`None`: not due).
    pub archive: Result<Option<archive::Report>>,
    /// Compaction's report.
    pub compaction: Result<Report>,
}

impl Outcome {
    /// Both reports, or the first failure.
    ///
    /// # Errors
    /// Archiving's error, else compaction's.
    pub fn into_result(self) -> Result<(Option<archive::Report>, Report)> {
        let archived = self.archive?;
        Ok((archived, self.compaction?))
    }
}

/// What maintenance owes now, against what makes it due (`gatos.ready`; the same rule the
/// automatic run applies, [`Debt::is_due`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DebtReport {
    /// Loose objects, estimated from 16 of the 256 fan-out directories.
    pub loose_objects: u64,
    /// Pack files.
    pub packs: u64,
    /// Packs kept by a `.keep` (a batch whose ref update has not happened yet, or a
    /// crash's leftover); compaction leaves them alone.
    pub kept_packs: u64,
    /// Compaction is due at this many loose objects (`gatos.maintenance.looseObjects`).
    pub loose_objects_threshold: u64,
    /// … or at this many packs not kept (`gatos.maintenance.packs`).
    pub packs_threshold: u64,
    /// True when a threshold is crossed: the next automatic maintenance compacts.
    pub compaction_due: bool,
    /// Live jobs that have ended (a result, or a cancel) and were enqueued longer than
    /// `archive_after_seconds` ago: an estimate, from the job refs' names only, of what the
    /// next archive folds (the archive itself checks each job's state and finish time).
    pub archivable_jobs: u64,
    /// `gatos.jobs.archiveAfter`, in seconds: finished jobs older than this are archived.
    pub archive_after_seconds: u64,
}

/// Measures the maintenance debt: two directory listings and a listing of the refs of the
/// jobs old enough to be archived, reading no object (cheap enough for a readiness probe
/// and the metrics' refresh, however many younger jobs there are).
///
/// # Errors
/// When the job refs cannot be listed.
pub fn debt(gatos: &Gatos) -> Result<DebtReport> {
    let settings = gatos.settings();
    let thresholds = settings.maintenance;
    let d = gatos.store().maintenance_debt();
    let cutoff = gatos.now().minus(settings.archive_after).as_millis();
    let archivable = archive::live_until(gatos, cutoff)?
        .iter()
        .filter(|(id, refs)| {
            (refs.result.is_some() || refs.cancel.is_some())
                && i64::try_from(id.timestamp_ms()).is_ok_and(|t| t <= cutoff)
        })
        .count();
    Ok(DebtReport {
        loose_objects: d.loose_objects,
        packs: d.packs,
        kept_packs: d.kept_packs,
        loose_objects_threshold: thresholds.loose_objects,
        packs_threshold: thresholds.packs,
        compaction_due: d.is_due(thresholds),
        archivable_jobs: archivable as u64,
        archive_after_seconds: settings.archive_after.as_millis() / 1000,
    })
}

/// Archives finished jobs (if due, with `auto`), then compacts (if due, with `auto`).
pub fn run(gatos: &Gatos, opts: Options) -> Outcome {
    if let Err(e) = gatos.flush_journals() {
        tracing::warn!(error = %e, "could not materialize every journal before maintenance");
    }
    let archive = if opts.auto {
        archive::archive_if_due(gatos)
    } else {
        archive::archive(gatos, gatos.settings().archive_after).map(Some)
    };
    let thresholds = opts.auto.then_some(gatos.settings().maintenance);
    let compaction = gatos
        .store()
        .run_maintenance(thresholds)
        .map_err(crate::Error::from);
    Outcome {
        archive,
        compaction,
    }
}
