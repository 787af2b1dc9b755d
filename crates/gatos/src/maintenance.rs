//! Maintenance: archive finished jobs, then compact the repository — written once, for
//! `git gatos maintenance` (and the detached `--auto` run a CLI writer starts) and for the
//! daemon's maintenance thread.

pub use gatos_store::maintenance::{Debt, Report, Thresholds};

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

/// Archives finished jobs (if due, with `auto`), then compacts (if due, with `auto`).
pub fn run(gatos: &Gatos, opts: Options) -> Outcome {
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
