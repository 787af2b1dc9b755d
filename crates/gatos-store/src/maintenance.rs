//! Compaction: keep reads fast as single-message writes pile up loose objects and batches
//! pile up packs, without ever deleting what a writer has not referenced yet.
//!
//! * `git repack -d -l --geometric=2 --write-midx --window=0` rolls loose objects
//!   (reachable or not: git includes loose objects regardless of reachability in a
//!   geometric roll-up) and small packs into a geometric progression of packs, with a
//!   multi-pack index. Packs with a `.keep` — batches whose ref update has not happened —
//!   are left alone. `--window=0` makes no new deltas: a ledger's objects are small JSON
//!   envelopes, trees and commits, which deltas barely shrink (a 50,000-message topic, 46
//!   MB without deltas against 29 MB with) but make every read resolve a chain (reads of
//!   it ran at 0.23× the speed of gatos's own packs after a default repack, and at 0.94×
//!   with no deltas; ADR 0046). Deltas already in a pack (one fetched from a remote) are
//!   kept.
//! * `git pack-refs --all` under the `packed-refs` lock family, so gatos writers wait for
//!   it instead of taking its `packed-refs.lock` for a dead writer's.
//! * `git commit-graph write --reachable --split` for fast walks.
//! * `.keep` files that gatos wrote and a crash left behind are removed after an hour, and
//!   so are the temporary files of packs and indexes being written (gix's `.tmpXXXXXX` in
//!   `objects/pack`; a batch's pack is written into one while its commits are made).
//!
//! Nothing here prunes unreachable objects: that is `git gc`'s business, with its own
//! two-week grace period (`gc.pruneExpire`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::Store;
use crate::error::{Error, Result};
use crate::pack::KEEP_MARKER;
use crate::refs::PACKED_REFS_FAMILY;

/// The lock family that makes maintenance runs exclusive.
pub const MAINTENANCE_FAMILY: &str = "maintenance";

/// A gatos `.keep` older than this is a crash leftover.
pub const STALE_KEEP_AGE: Duration = Duration::from_secs(3600);

/// When automatic maintenance runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Estimated loose objects (default 6,700, as `gc.auto`).
    pub loose_objects: u64,
    /// Packs (default 50, as `gc.autoPackLimit`).
    pub packs: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            loose_objects: 6_700,
            packs: 50,
        }
    }
}

/// What compaction would have to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Debt {
    /// Loose objects, estimated from 16 of the 256 fan-out directories.
    pub loose_objects: u64,
    /// Pack files.
    pub packs: u64,
    /// Packs kept by a `.keep`.
    pub kept_packs: u64,
}

/// What a maintenance run did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    /// The debt before.
    pub before: Debt,
    /// The debt after.
    pub after: Debt,
    /// Stale `.keep` files removed.
    pub stale_keeps_removed: Vec<PathBuf>,
    /// Stale temporary files of packs removed.
    pub stale_temporaries_removed: Vec<PathBuf>,
    /// Steps run, as git command lines.
    pub steps: Vec<String>,
    /// True when another maintenance run held the lock and this one did nothing.
    pub skipped: bool,
}

impl Debt {
    /// Tells whether this debt crosses the thresholds: automatic maintenance compacts
    /// (packs kept by a `.keep` do not count: compaction leaves them alone).
    pub fn is_due(&self, t: Thresholds) -> bool {
        self.loose_objects >= t.loose_objects
            || self.packs.saturating_sub(self.kept_packs) >= t.packs
    }
}

/// The entries of `dir` whose names `filter` takes (0 when it cannot be read).
pub(crate) fn count_dir(dir: &Path, filter: impl Fn(&str) -> bool) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(std::result::Result::ok)
                .filter(|e| e.file_name().to_str().is_some_and(&filter))
                .count() as u64
        })
        .unwrap_or(0)
}

impl Store {
    /// Estimates the maintenance debt (two directory listings; cheap).
    pub fn maintenance_debt(&self) -> Debt {
        let objects = self.common_dir().join("objects");
        // Git samples one directory (objects/17); sixteen keep small repositories, and low
        // thresholds in tests, from reading as empty.
        let sample: u64 = (0..16u8)
            .map(|i| count_dir(&objects.join(format!("{i:02x}")), |n| n.len() == 38))
            .sum();
        let pack_dir = objects.join("pack");
        Debt {
            loose_objects: sample * 16,
            packs: count_dir(&pack_dir, |n| n.ends_with(".pack")),
            kept_packs: count_dir(&pack_dir, |n| n.ends_with(".keep")),
        }
    }

    /// Tells whether automatic maintenance should run now.
    pub fn maintenance_due(&self, t: Thresholds) -> bool {
        self.maintenance_debt().is_due(t)
    }

    /// Runs maintenance: stale `.keep` and temporary file removal, geometric repack,
    /// pack-refs, commit-graph.
    ///
    /// With `only_if_due`, returns at once unless the thresholds are crossed. Runs are
    /// exclusive; a run that finds another one going reports `skipped`.
    ///
    /// # Errors
    /// When a git step fails.
    pub fn run_maintenance(&self, only_if_due: Option<Thresholds>) -> Result<Report> {
        let mut report = Report {
            before: self.maintenance_debt(),
            ..Report::default()
        };
        if let Some(t) = only_if_due
            && !self.maintenance_due(t)
        {
            report.after = report.before;
            return Ok(report);
        }
        let Some(_exclusive) = self.locks().try_acquire(MAINTENANCE_FAMILY)? else {
            report.skipped = true;
            report.after = report.before;
            return Ok(report);
        };
        report.stale_keeps_removed = self.remove_stale_keeps()?;
        report.stale_temporaries_removed = self.remove_stale_temporaries()?;
        let repack = [
            "repack",
            "-d",
            "-l",
            "-q",
            "--geometric=2",
            "--write-midx",
            "--window=0",
        ];
        self.run_git(&repack)?;
        report.steps.push(format!("git {}", repack.join(" ")));
        {
            let _packed = self.locks().acquire(
                &[PACKED_REFS_FAMILY.to_owned()],
                crate::locks::DEFAULT_LOCK_TIMEOUT,
            )?;
            let pack_refs = ["pack-refs", "--all"];
            self.run_git(&pack_refs)?;
            report.steps.push(format!("git {}", pack_refs.join(" ")));
        }
        let graph = [
            "commit-graph",
            "write",
            "--reachable",
            "--split",
            "--size-multiple=2",
            "--no-progress",
        ];
        self.run_git(&graph)?;
        report.steps.push(format!("git {}", graph.join(" ")));
        report.after = self.maintenance_debt();
        tracing::info!(
            loose_before = report.before.loose_objects,
            packs_before = report.before.packs,
            loose_after = report.after.loose_objects,
            packs_after = report.after.packs,
            "maintenance done"
        );
        Ok(report)
    }

    /// Removes `.keep` files that gatos wrote and that are older than an hour.
    ///
    /// # Errors
    /// When the pack directory cannot be read.
    pub fn remove_stale_keeps(&self) -> Result<Vec<PathBuf>> {
        self.remove_stale_in_pack_dir(|path, _| {
            path.extension().is_some_and(|x| x == "keep")
                && std::fs::read_to_string(path).is_ok_and(|s| s.starts_with(KEEP_MARKER))
        })
    }

    /// Removes the temporary files of packs and indexes that a gatos writer was writing
    /// when it crashed (gix names them `.tmp` and six letters or digits, in `objects/pack`)
    /// once they are older than an hour: a writer holds one for the time it takes to write
    /// a pack, never near that long. Git's own temporary files there (`tmp_pack_…`,
    /// `.tmp-<pid>-pack…`) are left to git.
    ///
    /// # Errors
    /// When the pack directory cannot be read.
    pub fn remove_stale_temporaries(&self) -> Result<Vec<PathBuf>> {
        self.remove_stale_in_pack_dir(|path, name| {
            name.strip_prefix(".tmp").is_some_and(|rest| {
                rest.len() == 6 && rest.bytes().all(|b| b.is_ascii_alphanumeric())
            }) && path.is_file()
        })
    }

    /// Removes the files of `objects/pack` that `leftover` (given the path and the name)
    /// says a crash of gatos left, once they are [`STALE_KEEP_AGE`] old; returns them.
    fn remove_stale_in_pack_dir(
        &self,
        leftover: impl Fn(&Path, &str) -> bool,
    ) -> Result<Vec<PathBuf>> {
        let pack_dir = self.common_dir().join("objects").join("pack");
        let entries = match std::fs::read_dir(&pack_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("reading objects/pack", e)),
        };
        let mut removed = Vec::new();
        for entry in entries.filter_map(std::result::Result::ok) {
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let old = || crate::locks::age_of(&path).is_some_and(|a| a >= STALE_KEEP_AGE);
            if leftover(&path, &name) && old() && std::fs::remove_file(&path).is_ok() {
                removed.push(path);
            }
        }
        Ok(removed)
    }
}
