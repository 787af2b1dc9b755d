//! The audit trail: privileged or destructive actions recorded on the topic `gatos.audit`
//! as `{actor, key, action, target, before, after}` (DESIGN §4).
//!
//! The action's own commit is the truth; the audit message follows it at-least-once,
//! deduplicated by that commit id (`msg_id`), so re-publishing after a crash is harmless.

use gatos_types::{Oid, Topic};
use serde_json::{Value, json};

use crate::Gatos;
use crate::messages::PublishOptions;

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
    let key = crate::init::current_key_id(gatos).map(|k| k.to_string());
    let payload = json!({
        "actor": gatos.store().identity().name,
        "key": key,
        "action": action,
        "target": target,
        "before": before,
        "after": after,
    });
    let msg_id = match commit {
        Some(c) => c.to_string(),
        None => gatos.entropy().ulid(gatos.now(), None).to_string(),
    };
    let opts = PublishOptions {
        headers: Some(json!({ "msg_id": msg_id })),
        expect_last_seq: None,
    };
    if let Err(e) = gatos.messages().publish(&topic(), payload, &opts) {
        tracing::warn!(action, target, error = %e, "could not record an audit message; `git gatos doctor --fix` republishes it");
    }
}
