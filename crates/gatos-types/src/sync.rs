//! What `git gatos sync --json` prints and `sync.run` returns (DESIGN §5).

use serde::{Deserialize, Serialize};

use crate::digest::Oid;
use crate::error::ErrorCode;

/// Rejections a sync report lists; the rest are counted in `rejected_count`.
pub const MAX_LISTED_REJECTIONS: usize = 1_000;

/// How a topic was reconciled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TopicAction {
    /// Both sides held the same messages.
    InSync,
    /// The hub was ahead: its messages were adopted here.
    Adopted,
    /// This node was ahead: its messages were pushed.
    Pushed,
    /// Both appended: this node's messages were appended again after the hub's, then
    /// pushed.
    Reappended,
}

/// One topic's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TopicSync {
    /// The topic.
    pub topic: String,
    /// What happened.
    pub action: TopicAction,
    /// Messages that arrived from the hub.
    pub received: u64,
    /// Messages sent to the hub (re-appended ones included).
    pub sent: u64,
    /// This node's messages not sent because the hub already holds one with the same
    /// `msg_id` (ADR 0028): the hub's copy stands for them.
    #[serde(default)]
    pub duplicates: u64,
    /// The topic head afterwards.
    pub head: Option<Oid>,
    /// Whether the hub accepted this node's head (false: lost a race; the next sync retries).
    pub landed: bool,
}

/// A ref both sides changed incompatibly (reported, never overwritten).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SyncConflict {
    /// The ref.
    #[serde(rename = "ref")]
    pub name: String,
    /// This node's value (kept, or replaced by the hub's as `resolution` says).
    pub local: Option<Oid>,
    /// The hub's value.
    pub remote: Option<Oid>,
    /// `kept-both` (create-only refs: both stay where they are), `kept-local` (this
    /// node's value stays and the hub's is not taken: a final result the hub holds another
    /// of; a sealed segment whose last message the hub's value is not, which is also put
    /// back there; on a topic's head, messages of this node's whose ULID the hub holds with
    /// other content, appended again), `hub-wins` (this node's value was replaced by the
    /// hub's, or folded under it for an archive; the local commit is named here so it can
    /// be recovered).
    pub resolution: String,
    /// Why.
    pub reason: String,
}

/// A ref the remote sent that failed a check (ADR 0018): not adopted, never pushed back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SyncRejection {
    /// The ref, by its gatos name (`refs/gatos/…`).
    #[serde(rename = "ref")]
    pub name: String,
    /// The value the remote holds; all zeros when it holds none, and for a topic rejected
    /// because this node's own refs of it do not read (nothing of the hub's was found
    /// wrong; the reason says so).
    pub remote: Oid,
    /// Why, as a taxonomy code (`InvalidEnvelope`, `SignatureInvalid`, `UntrustedKey`,
    /// `Conflict`, `Forbidden`, …).
    pub code: ErrorCode,
    /// Why, in words.
    pub reason: String,
}

/// A rejection as this node's log keeps it (`<git-dir>/gatos/sync/rejected.jsonl`):
/// what `sync.rejections` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LoggedRejection {
    /// When the sync that rejected it ran.
    pub at: crate::Timestamp,
    /// The remote it came from.
    pub remote: String,
    /// The ref, by its gatos name (`refs/gatos/…`).
    #[serde(rename = "ref")]
    pub name: String,
    /// The value the remote held.
    pub remote_value: Oid,
    /// Why, as a taxonomy code.
    pub code: ErrorCode,
    /// Why, in words.
    pub reason: String,
}

/// What a sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SyncReport {
    /// The remote.
    pub remote: String,
    /// Topics that changed on either side.
    pub topics: Vec<TopicSync>,
    /// Refs set here from the hub (other than topic heads).
    pub adopted: u64,
    /// Refs pushed to the hub (other than topic heads).
    pub pushed: u64,
    /// Refs deleted here because the hub pruned or archived what they named.
    pub deleted_local: u64,
    /// Refs deleted at the hub because this node pruned or archived what they named.
    pub deleted_remote: u64,
    /// Consumer checkpoints moved back to a fork point (their messages were re-appended).
    pub checkpoints_moved_back: u64,
    /// Local claims that lost to the hub's (their workers stop; audited).
    pub claims_abandoned: u64,
    /// Conflicts reported.
    pub conflicts: Vec<SyncConflict>,
    /// Refs the remote sent that failed a check (at most
    /// [`MAX_LISTED_REJECTIONS`]; `rejected_count` counts them all).
    #[serde(default)]
    pub rejected: Vec<SyncRejection>,
    /// How many refs were rejected.
    #[serde(default)]
    pub rejected_count: u64,
    /// Remote refs under `refs/gatos/` whose names fit no entry of the layout: ignored.
    #[serde(default)]
    pub ignored: u64,
    /// Refs whose push lost a race, or that were past this sync's checking bound, and will
    /// be retried by the next sync.
    pub retry: Vec<String>,
    /// Rounds of fetch, reconcile and push.
    pub rounds: u32,
}
