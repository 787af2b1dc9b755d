//! Queue admission (ADR 0027): a queue whose settings carry `max_pending` refuses an
//! enqueue with `QueueFull` while this node counts that many pending jobs in it.
//!
//! **What counts.** A job is pending when the ready index holds it without a claim: it was
//! enqueued, or released for a retry, and no worker has claimed it since — whether or not
//! it may be claimed yet (`run_after`, a retry backoff). Running jobs do not count; nor
//! does a job whose worker died until a takeover or a release updates the index (the
//! index learns of claims, releases and results, not of heartbeats, so a lease end it holds
//! says nothing about whether the job still runs). The count is read from the ready index,
//! never from a scan of every job ref; the index catches up with the refs first when
//! another writer changed them.
//!
//! **What holds.** On one node the check and the job ref's creation happen under one
//! per-queue lock (the lock family `admission.<queue>`), so enqueues racing through any
//! number of processes and faces can never together pass the limit: with a limit of 1,
//! exactly one of them lands. Across nodes the limit is soft: each node counts the jobs it
//! knows, and jobs another node admitted arrive by sync whatever the count here.
//!
//! **What a refusal writes.** Nothing under `refs/gatos/jobs/` and no object; it answers
//! `QueueFull` with `queue`, `max_pending`, `pending` and `retry_after_seconds` in the
//! error's details, and records `jobs.admission.refused` on `gatos.audit` at most once per
//! queue per [`AUDIT_WINDOW_SECS`] on this node (a marker file under the lock decides, and
//! the record's `msg_id` names the window, so a flood of refusals cannot flood the audit
//! topic).

use std::collections::BTreeMap;
use std::path::PathBuf;

use gatos_types::jobs::{JobEvent, QueueDepth};
use gatos_types::{Coded, Dur, ErrorCode, Queue, Timestamp};

use super::ready::Ready;
use crate::Gatos;
use crate::error::Result;
use crate::messages::Cursor;

/// The audit action of a refused enqueue.
pub const REFUSED_ACTION: &str = "jobs.admission.refused";

/// A queue's refusals are audited at most once per this many seconds on a node.
pub const AUDIT_WINDOW_SECS: u64 = 60;

const AUDIT_WINDOW_MS: i64 = 1000 * AUDIT_WINDOW_SECS as i64;

/// The retry-after hint when the queue's recent claims say nothing (none were seen).
pub const DEFAULT_RETRY_AFTER_SECS: u64 = 30;

/// The longest retry-after hint.
pub const MAX_RETRY_AFTER_SECS: u64 = 600;

/// How many of the latest job events the hint reads at most.
const HINT_EVENTS: u64 = 256;

/// How far back the hint looks for claims.
const HINT_HORIZON: Dur = Dur::from_secs(600);

/// Why an enqueue was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The queue holds as many pending jobs as its limit allows.
    #[error(
        "queue '{queue}' is full: {pending} {} pending, its limit is {max_pending}; try again in about {retry_after_seconds} s",
        if *.pending == 1 { "job" } else { "jobs" }
    )]
    QueueFull {
        /// The queue.
        queue: Queue,
        /// Pending jobs counted.
        pending: u64,
        /// The queue's limit.
        max_pending: u64,
        /// When a retry may succeed, in seconds (a hint, see [`retry_after`]).
        retry_after_seconds: u64,
    },
}

impl Coded for Error {
    fn code(&self) -> ErrorCode {
        match self {
            Error::QueueFull { .. } => ErrorCode::QueueFull,
        }
    }
}

impl Error {
    /// The public error, with the refusal's facts as details, which both front doors
    /// render (`error.data` over RPC, the `--json` error object on the CLI).
    pub fn into_error(self) -> crate::Error {
        let Error::QueueFull {
            queue,
            pending,
            max_pending,
            retry_after_seconds,
        } = &self;
        let (queue, pending, max_pending, retry) = (
            queue.to_string(),
            *pending,
            *max_pending,
            *retry_after_seconds,
        );
        crate::Error::from(self)
            .with_detail("queue", queue)
            .with_detail("max_pending", max_pending)
            .with_detail("pending", pending)
            .with_detail("retry_after_seconds", retry)
    }
}

/// An admitted enqueue: holds the queue's admission lock (when it has a limit) until the
/// job's ref exists and the ready index knows it.
#[must_use]
pub(crate) struct Admitted {
    _guard: Option<gatos_store::locks::Guard>,
}

fn lock_family(queue: &Queue) -> String {
    format!("admission.{queue}")
}

/// The queue's limit. Settings that cannot be read (a local tampering: sync checks what it
/// adopts; `doctor` reports it) count as no limit, with a warning, as the retry backoff
/// falls back to its default: enqueues and health go on as before limits existed.
fn limit_of(gatos: &Gatos, queue: &Queue) -> Option<u64> {
    match super::queues::config(gatos, queue) {
        Ok(c) => c.max_pending,
        Err(e) => {
            tracing::warn!(%queue, error = %e, "unreadable queue settings; no admission limit");
            None
        }
    }
}

/// Admits an enqueue to `queue`, or refuses it with `QueueFull` (and an audit record at
/// most once per window). Hold the answer until the job's ref is created.
///
/// # Errors
/// `QueueFull`; `Unavailable` when the admission lock stays busy; an index failure.
pub(crate) fn admit(gatos: &Gatos, queue: &Queue) -> Result<Admitted> {
    let Some(max_pending) = limit_of(gatos, queue) else {
        return Ok(Admitted { _guard: None });
    };
    let guard = gatos
        .store()
        .locks()
        .acquire(
            &[lock_family(queue)],
            gatos_store::locks::DEFAULT_LOCK_TIMEOUT,
        )
        .map_err(gatos_store::Error::from)?;
    let pending = Ready::new(gatos).pending_in(queue)?;
    if pending < max_pending {
        return Ok(Admitted {
            _guard: Some(guard),
        });
    }
    let now = gatos.now();
    let window = now.as_millis().div_euclid(AUDIT_WINDOW_MS);
    let audit = first_refusal_in(gatos, queue, window);
    drop(guard);
    let retry_after_seconds = retry_after(gatos, queue, pending, max_pending, now);
    tracing::debug!(%queue, pending, max_pending, retry_after_seconds, "enqueue refused: the queue is full");
    if audit {
        let node = gatos
            .node_id()
            .map_or_else(|_| "local".to_owned(), |n| n.to_string());
        crate::audit::record_once(
            gatos,
            REFUSED_ACTION,
            &format!("queue:{queue}"),
            serde_json::json!({"pending": pending, "max_pending": max_pending}),
            serde_json::json!({
                "refused": true,
                "retry_after_seconds": retry_after_seconds,
                "window_seconds": AUDIT_WINDOW_SECS,
            }),
            &format!("{REFUSED_ACTION}:{node}:{queue}:{window}"),
        );
    }
    Err(Error::QueueFull {
        queue: queue.clone(),
        pending,
        max_pending,
        retry_after_seconds,
    }
    .into_error())
}

fn marker(gatos: &Gatos, queue: &Queue) -> PathBuf {
    gatos
        .store()
        .gatos_dir()
        .join("admission")
        .join(queue.as_str())
}

/// Whether this is the first refusal of `queue` in audit window `window` on this node;
/// records that it happened. Called under the queue's admission lock. A marker that cannot
/// be read or written answers yes (the record's `msg_id` still deduplicates).
fn first_refusal_in(gatos: &Gatos, queue: &Queue, window: i64) -> bool {
    let path = marker(gatos, queue);
    let last = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok());
    if last == Some(window) {
        return false;
    }
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&path, format!("{window}\n")));
    if let Err(e) = written {
        tracing::warn!(%queue, error = %e, "could not record the admission audit window");
    }
    true
}

/// The retry-after hint of a refusal, in seconds: how long the queue's recent claims say
/// it takes to free a slot for this caller.
///
/// The hint reads the queue's `claimed` events among the latest 256 on `gatos.jobs`, over
/// the last 10 minutes (or the shorter time since the oldest of those events): `k` claims in `t` seconds
/// free one slot every `t / k` seconds, and the caller needs `pending − max_pending + 1`
/// of them. Without a claim in that time it is [`DEFAULT_RETRY_AFTER_SECS`]; it is always
/// between 1 and [`MAX_RETRY_AFTER_SECS`]. It is a hint: another caller may take the slot.
pub fn retry_after(
    gatos: &Gatos,
    queue: &Queue,
    pending: u64,
    max_pending: u64,
    now: Timestamp,
) -> u64 {
    let per_claim = claim_interval(gatos, queue, now).unwrap_or_else(|e| {
        tracing::debug!(%queue, error = %e, "no retry-after hint from the job events");
        None
    });
    hint(per_claim, pending, max_pending)
}

/// The hint from the time one claim takes (`None`: unknown), in seconds.
fn hint(per_claim_ms: Option<u64>, pending: u64, max_pending: u64) -> u64 {
    let Some(per_claim) = per_claim_ms else {
        return DEFAULT_RETRY_AFTER_SECS;
    };
    let needed = pending.saturating_sub(max_pending).saturating_add(1);
    per_claim
        .saturating_mul(needed)
        .div_ceil(1000)
        .clamp(1, MAX_RETRY_AFTER_SECS)
}

/// The mean time between the queue's recent claims, in milliseconds, measured up to now;
/// `None` when no claim was seen.
fn claim_interval(gatos: &Gatos, queue: &Queue, now: Timestamp) -> Result<Option<u64>> {
    let topic = super::events::topic();
    let messages = gatos.messages();
    if messages.head_commit(&topic)?.is_none() {
        return Ok(None);
    }
    let last = messages.last_seq(&topic)?;
    let mut start = now.minus(HINT_HORIZON);
    let mut oldest: Option<Timestamp> = None;
    let mut claims = 0u64;
    messages.scan(
        &topic,
        &Cursor::Seq(last.saturating_sub(HINT_EVENTS)),
        Some(HINT_EVENTS),
        |m| {
            let at = crate::messages::ulid_time(m.ulid);
            oldest = Some(oldest.map_or(at, |o| o.min(at)));
            if let Ok(ev) = serde_json::from_str::<JobEvent>(m.payload.get())
                && ev.event == gatos_types::jobs::JobEventKind::Claimed
                && ev.queue == *queue
                && at >= start
                && at <= now
            {
                claims += 1;
            }
            Ok(true)
        },
    )?;
    // When the events read do not reach back over the whole horizon (a busy topic, or a
    // young one), the claims counted happened in the time they span.
    if let Some(o) = oldest {
        start = start.max(o);
    }
    if claims == 0 {
        return Ok(None);
    }
    let span = u64::try_from(now.as_millis() - start.as_millis()).unwrap_or(0);
    Ok(Some((span / claims).max(1)))
}

/// Every queue this node knows of — those with settings and those with an unfinished job
/// in the ready index — or only `queue`, with its pending jobs.
pub(crate) fn depths_of(gatos: &Gatos, queue: Option<&Queue>) -> Result<BTreeMap<Queue, u64>> {
    let mut all = Ready::new(gatos).pending_by_queue()?;
    if let Some(q) = queue {
        let n = all.remove(q).unwrap_or(0);
        return Ok(BTreeMap::from([(q.clone(), n)]));
    }
    for q in super::queues::configured(gatos)? {
        all.entry(q).or_insert(0);
    }
    Ok(all)
}

/// Each queue's unfinished jobs as `(pending, running)`, as this node's ready index sees
/// them (a claimed job — one with a lease end — counts as running), by name: what the
/// daemon's `gatos_jobs` gauge reports.
///
/// # Errors
/// A store or index failure.
pub fn states(gatos: &Gatos) -> Result<BTreeMap<Queue, (u64, u64)>> {
    let mut out: BTreeMap<Queue, (u64, u64)> = BTreeMap::new();
    for e in Ready::new(gatos).entries()? {
        let slot = out.entry(e.queue.clone()).or_default();
        if super::ready::is_pending(&e) {
            slot.0 += 1;
        } else {
            slot.1 += 1;
        }
    }
    Ok(out)
}

/// A fingerprint of the live claims this node knows: the running jobs of the ready index,
/// the commit each one's claim ref names now, and whether its lease has run out. A
/// heartbeat, a takeover, a new claim, an end or a lapsed lease changes it (gatosd pushes
/// that to the dashboard, ADR 0045). One ref read per running job.
///
/// # Errors
/// A store or index failure.
pub fn claims_fingerprint(gatos: &Gatos) -> Result<u64> {
    use std::hash::{Hash, Hasher};
    let now = gatos.now();
    let mut running: Vec<(gatos_types::Ulid, bool)> = Ready::new(gatos)
        .entries()?
        .into_iter()
        .filter_map(|e| e.lease_until.map(|l| (e.id, l <= now)))
        .collect();
    running.sort_unstable();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for (id, lapsed) in running {
        (id, lapsed).hash(&mut h);
        gatos
            .store()
            .read_ref(&gatos_store::refs::names::job_claim(id))?
            .hash(&mut h);
    }
    Ok(h.finish())
}

/// Each queue's depth against its limit, as this node sees it (`gatos.health`'s
/// `queues`): the queues with settings and those with an unfinished job, by name.
///
/// # Errors
/// A store or index failure.
pub fn depths(gatos: &Gatos) -> Result<Vec<QueueDepth>> {
    let by_state = states(gatos)?;
    Ok(depths_of(gatos, None)?
        .into_iter()
        .map(|(queue, pending)| {
            let max_pending = limit_of(gatos, &queue);
            let running = by_state.get(&queue).map_or(0, |s| s.1);
            QueueDepth {
                queue,
                pending,
                running,
                max_pending,
            }
        })
        .collect())
}

/// A limited queue's depth against its limit, as this node sees it (what `jobs show`
/// reports for a pending job's queue); `None` for a queue without a limit.
///
/// # Errors
/// A store or index failure.
pub fn limited_depth(gatos: &Gatos, queue: &Queue) -> Result<Option<QueueDepth>> {
    let Some(max_pending) = limit_of(gatos, queue) else {
        return Ok(None);
    };
    Ok(Some(QueueDepth {
        queue: queue.clone(),
        pending: Ready::new(gatos).pending_in(queue)?,
        running: states(gatos)?.get(queue).map_or(0, |s| s.1),
        max_pending: Some(max_pending),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hint_waits_for_as_many_claims_as_free_a_slot() {
        // Unknown rate: the documented default.
        assert_eq!(hint(None, 5, 5), DEFAULT_RETRY_AFTER_SECS);
        // One claim every 12 s; at the limit one claim frees a slot.
        assert_eq!(hint(Some(12_000), 5, 5), 12);
        // Over the limit (a limit lowered, or jobs that arrived by sync): three claims.
        assert_eq!(hint(Some(12_000), 7, 5), 36);
        // Rounded up to whole seconds, at least 1, at most the cap.
        assert_eq!(hint(Some(1_500), 1, 1), 2);
        assert_eq!(hint(Some(1), 1, 1), 1);
        assert_eq!(hint(Some(3_600_000), 1, 1), MAX_RETRY_AFTER_SECS);
        assert_eq!(hint(Some(u64::MAX), u64::MAX, 0), MAX_RETRY_AFTER_SECS);
    }

    #[test]
    fn a_refusal_carries_its_facts_as_details() {
        let e = Error::QueueFull {
            queue: "build".parse().expect("a valid queue name"),
            pending: 3,
            max_pending: 3,
            retry_after_seconds: 12,
        }
        .into_error();
        assert_eq!(e.code(), ErrorCode::QueueFull);
        assert_eq!(e.status(), 429);
        let d = e.details();
        assert_eq!(d["queue"], "build");
        assert_eq!(d["pending"], 3);
        assert_eq!(d["max_pending"], 3);
        assert_eq!(d["retry_after_seconds"], 12);
        assert_eq!(
            e.to_string(),
            "queue 'build' is full: 3 jobs pending, its limit is 3; try again in about 12 s"
        );
    }
}
