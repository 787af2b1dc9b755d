//! The audit trail: privileged or destructive actions recorded on the topic `gatos.audit`
//! as `{actor, key, action, target, before, after}` (DESIGN §4).
//!
//! The action's own commit is the truth; the audit message follows it at-least-once,
//! deduplicated by that commit id (`msg_id`), so re-publishing after a crash is harmless.
//!
//! The trail is a topic, so its writer (`record`) lives in the message plane
//! (`messages::audit`), which audits its own actions (forced prunes, settings) through it;
//! this module reads the trail and re-exports the writer for the other planes.

use gatos_types::{Timestamp, Ulid};
use serde_json::Value;

use crate::Gatos;
use crate::messages::Cursor;

pub(crate) use crate::messages::audit::record_once;
pub use crate::messages::audit::{AUDIT_TOPIC, record, topic};

/// One audit record as `git gatos audit --json` prints it (DESIGN §8).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct AuditRecord {
    /// The audit message's ULID (its time is when the action was recorded).
    pub ulid: Ulid,
    /// Who acted (the gatos identity's name).
    pub actor: Value,
    /// The actor's signing key id, when the node has one.
    pub key: Value,
    /// What was done (`jobs.cancel`, `keys.trust`, `messages.prune.forced`, …).
    pub action: Value,
    /// What it was done to (`job:<id>`, `topic:<t>`, `key:<id>`, `manifest:<name>`, …).
    pub target: Value,
    /// The state before.
    pub before: Value,
    /// The state after.
    pub after: Value,
}

/// Where an audit listing starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// From the first retained record.
    Start,
    /// After the record with this ULID.
    After(Ulid),
    /// Records made at or after this time.
    Time(Timestamp),
}

/// Calls `f` with each audit record after `since`, oldest first (one at a time: memory
/// stays flat however long the trail). A message on the topic that is not an audit
/// record (someone published by hand) is passed with nulls where fields are missing.
///
/// # Errors
/// `NotFound` for an unknown ULID; whatever `f` returns.
pub fn list(
    gatos: &Gatos,
    since: Since,
    mut f: impl FnMut(&AuditRecord) -> crate::Result<bool>,
) -> crate::Result<()> {
    let cursor = match since {
        Since::Start | Since::Time(_) => Cursor::Start,
        Since::After(u) => Cursor::Ulid(u),
    };
    gatos.messages().scan(&topic(), &cursor, None, |m| {
        if let Since::Time(t) = since
            && crate::messages::ulid_time(m.ulid) < t
        {
            return Ok(true);
        }
        let payload: Value = serde_json::from_str(m.payload.get()).unwrap_or(Value::Null);
        let field = |k: &str| payload.get(k).cloned().unwrap_or(Value::Null);
        f(&AuditRecord {
            ulid: m.ulid,
            actor: field("actor"),
            key: field("key"),
            action: field("action"),
            target: field("target"),
            before: field("before"),
            after: field("after"),
        })
    })?;
    Ok(())
}
