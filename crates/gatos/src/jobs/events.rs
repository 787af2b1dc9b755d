//! Job events on the topic `gatos.jobs`: published by the writer right after each
//! transition, at-least-once, with the action's commit id as `msg_id` (so a republish after
//! a crash, by `doctor --fix`, is deduplicated). The truth is the action's own commit.

use gatos_types::jobs::{EndReason, JobEvent, JobEventKind};
use gatos_types::{Oid, WorkerId};

use super::records::JobRecord;
use crate::Gatos;
use crate::messages::PublishOptions;

/// Returns the events topic (`gatos::jobs::events_topic`).
pub fn topic() -> gatos_types::Topic {
    super::EVENTS_TOPIC
        .parse()
        .expect("the events topic name is valid")
}

/// Publishes an event; a failure is logged, never returned (the action happened). A
/// `succeeded`, `failed` or `cancelled` event carries why the job ended as far as `rec`
/// tells (ADR 0029): a republish by `doctor --fix` passes the record as it is now.
pub fn emit(
    gatos: &Gatos,
    event: JobEventKind,
    rec: &JobRecord,
    attempt: u32,
    worker: Option<&WorkerId>,
    commit: Oid,
) {
    emit_with(gatos, event, rec, attempt, worker, commit, None);
}

/// [`emit`] with the reason the writer knows (`rec` read before its action); without
/// one, an ending event's reason is derived from `rec`.
pub fn emit_with(
    gatos: &Gatos,
    event: JobEventKind,
    rec: &JobRecord,
    attempt: u32,
    worker: Option<&WorkerId>,
    commit: Oid,
    reason: Option<EndReason>,
) {
    let reason = reason.or_else(|| match &event {
        JobEventKind::Succeeded | JobEventKind::Failed | JobEventKind::Cancelled => {
            super::ended::of_job(rec, gatos.now(), gatos.lease_skew())
        }
        _ => None,
    });
    let ev = JobEvent {
        event,
        job: rec.id,
        attempt,
        queue: rec.spec.queue.clone(),
        worker: worker.cloned(),
        commit,
        at: gatos.now(),
        reason,
    };
    let payload = serde_json::to_value(&ev).unwrap_or_default();
    // `heartbeat_lost` has no commit of its own: it names the lost attempt's last claim
    // commit, which may also be that attempt's `claimed` event; keep the two apart.
    let msg_id = match &ev.event {
        JobEventKind::HeartbeatLost => format!("heartbeat_lost:{commit}"),
        JobEventKind::Enqueued
        | JobEventKind::Claimed
        | JobEventKind::RetryScheduled
        | JobEventKind::Succeeded
        | JobEventKind::Failed
        | JobEventKind::Cancelled
        | JobEventKind::Other(_) => commit.to_string(),
    };
    let opts = PublishOptions {
        headers: Some(serde_json::json!({ "msg_id": msg_id })),
        expect_last_seq: None,
    };
    if let Err(e) = gatos.messages().publish_system(&topic(), payload, &opts) {
        tracing::warn!(job = %rec.id, event = %ev.event, error = %e, "could not publish a job event; `git gatos doctor --fix` republishes it");
    }
}
