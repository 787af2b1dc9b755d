//! The writer of the audit trail, the topic `gatos.audit` (DESIGN §4): here, in the
//! message plane it is a topic of, so that the plane's own privileged actions (forced
//! prunes, settings changes) are audited without the plane depending on the planes above
//! it. [`crate::audit`] reads the trail and re-exports this writer.

use gatos_types::{Oid, Topic};
use serde_json::{Value, json};

use super::PublishOptions;
use crate::Gatos;

/// The audit topic.
pub const AUDIT_TOPIC: &str = "gatos.audit";

/// Returns the audit topic name.
pub fn topic() -> Topic {
    AUDIT_TOPIC.parse().expect("the audit topic name is valid")
}

/// Records an action; failures are logged, never returned (the action itself happened).
pub fn record(
    gatos: &Gatos,
    action: &str,
    target: &str,
    before: Value,
    after: Value,
    commit: Option<Oid>,
) {
    let msg_id = match commit {
        Some(c) => c.to_string(),
        None => gatos.entropy().ulid(gatos.now(), None).to_string(),
    };
    publish(gatos, action, target, before, after, &msg_id);
}

/// Records an action that writes no commit, once per `key`: a record whose `key` (its
/// `msg_id`) is already among the audit topic's last `gatos.dedupeWindow` messages is not
/// appended again. Failures are logged, never returned.
pub(crate) fn record_once(
    gatos: &Gatos,
    action: &str,
    target: &str,
    before: Value,
    after: Value,
    key: &str,
) {
    publish(gatos, action, target, before, after, key);
}

fn publish(gatos: &Gatos, action: &str, target: &str, before: Value, after: Value, msg_id: &str) {
    let key = gatos.keys().current().map(|k| k.to_string());
    let payload = json!({
        "actor": gatos.actor(),
        "key": key,
        "action": action,
        "target": target,
        "before": before,
        "after": after,
    });
    let opts = PublishOptions {
        headers: Some(json!({ "msg_id": msg_id })),
        expect_last_seq: None,
    };
    if let Err(e) = gatos.messages().publish_system(&topic(), payload, &opts) {
        tracing::warn!(action, target, error = %e, "could not record an audit message; `git gatos doctor --fix` republishes it");
    }
}
