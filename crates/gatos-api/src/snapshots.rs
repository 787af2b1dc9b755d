//! `snapshots.create`, `snapshots.list` and `snapshots.delete` (ADR 0044 §1): durable ref
//! snapshots in `refs/gatos-snapshots/`, taken, listed and deleted by every face through
//! these functions; the rules are the library's ([`gatos::snapshot::saved`]).

use gatos::snapshot::saved::{self, SnapshotDoc};
use serde::{Deserialize, Serialize};

use crate::actor::Actor;
use crate::service::{CallError, Service};

type R<T> = Result<T, CallError>;

/// `snapshots.create` and `snapshots.delete` params.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotNameParams {
    /// The snapshot's name: the name rule (`^[a-z][a-z0-9._-]{0,63}$`, no `..`, not ending
    /// in `.` or `.lock`). A name that breaks it is `InvalidInput` with `data.reason`.
    pub name: String,
}

/// `snapshots.list` result.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SnapshotsResult {
    /// Every snapshot, by name (at most 64).
    pub snapshots: Vec<SnapshotDoc>,
}

impl Service {
    /// `snapshots.create`: copies the refs now (a double collect) into
    /// `refs/gatos-snapshots/<name>/`, for `actor`.
    ///
    /// # Errors
    /// `InvalidInput` for a bad name or past 64 snapshots; `Conflict` for a name taken;
    /// what the store fails with. A refusal changes nothing.
    pub fn snapshots_create(&self, actor: &Actor, p: SnapshotNameParams) -> R<SnapshotDoc> {
        let g = self.gatos().with_actor(&actor.to_string());
        Ok(saved::create(&g, &p.name)?)
    }

    /// `snapshots.list`: every snapshot, by name.
    ///
    /// # Errors
    /// When the refs or a snapshot's `meta` cannot be read.
    pub fn snapshots_list(&self) -> R<SnapshotsResult> {
        Ok(SnapshotsResult {
            snapshots: saved::list(self.gatos())?,
        })
    }

    /// `snapshots.delete`: removes a snapshot (its `meta`, then its copies); audited.
    ///
    /// # Errors
    /// `InvalidInput` for a bad name; `NotFound` for no such snapshot.
    pub fn snapshots_delete(&self, actor: &Actor, p: SnapshotNameParams) -> R<SnapshotDoc> {
        let g = self.gatos().with_actor(&actor.to_string());
        Ok(saved::delete(&g, &p.name)?)
    }
}
