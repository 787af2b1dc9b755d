//! Subscriptions: `messages.event` notifications for messages written by anyone.
//!
//! One watcher per topic reads the topic head every `watch_poll` (and is poked at once by
//! the daemon's own publishes), so messages written by the CLI, another daemon or a fetch
//! reach subscribers within that interval. Each subscription reads its own cursor through a
//! library `Follower` on the blocking pool, a bounded batch at a time, and queues events
//! into its connection's byte-bounded outbox. A subscriber that does not read for
//! `lag_grace` while its outbox is full gets `messages.lagged {subscription, next_since}`
//! and the subscription is closed: memory never grows with a slow reader, and the client
//! can resubscribe from `next_since` (ADR 0011).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use gatos::Gatos;
use gatos::messages::{Follower, MessageView};
use gatos_rpc::message::{Notification, to_line};
use gatos_rpc::methods::{JOBS_EVENT, JobEventNotice, Lagged, MESSAGES_EVENT, MESSAGES_LAGGED};
use gatos_types::{Oid, Topic, Ulid};
use serde::Serialize;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::outbox::Outbox;
use crate::shared::Shared;

/// Watched topic heads.
pub struct Watchers {
    gatos: Gatos,
    poll: Duration,
    map: Mutex<HashMap<Topic, watch::Sender<Head>>>,
}

/// What a watch carries: the topic head last seen, and a counter the daemon's own writes
/// bump so subscribers wake without waiting for the next poll.
pub type Head = (Option<Oid>, u64);

impl Watchers {
    /// No topic watched yet.
    pub fn new(gatos: Gatos, poll: Duration) -> Watchers {
        Watchers {
            gatos,
            poll,
            map: Mutex::default(),
        }
    }

    /// Returns a receiver that changes whenever the topic head moves. `seen` is the head
    /// the caller already read: a new watcher starts from it, so a write that lands before
    /// the watcher's first poll is still noticed.
    pub fn watch(self: &Arc<Self>, topic: &Topic, seen: Option<Oid>) -> watch::Receiver<Head> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = map.get(topic) {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel((seen, 0));
        map.insert(topic.clone(), tx.clone());
        tokio::spawn(poll_head(self.clone(), topic.clone(), tx));
        rx
    }

    /// Wakes the topic's subscribers now (after the daemon's own writes).
    pub fn poke(&self, topic: &Topic) {
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = map.get(topic) {
            tx.send_modify(|v| v.1 = v.1.wrapping_add(1));
        }
    }
}

async fn poll_head(w: Arc<Watchers>, topic: Topic, tx: watch::Sender<Head>) {
    let name = gatos_store_head(&topic);
    loop {
        tokio::time::sleep(w.poll).await;
        {
            let mut map = w.map.lock().unwrap_or_else(PoisonError::into_inner);
            if tx.receiver_count() == 0 {
                if map.get(&topic).is_some_and(|t| t.same_channel(&tx)) {
                    map.remove(&topic);
                }
                return;
            }
        }
        let gatos = w.gatos.clone();
        let name = name.clone();
        let head =
            tokio::task::spawn_blocking(move || gatos.store().read_ref_str(&name).ok().flatten())
                .await;
        let Ok(head) = head else { continue };
        tx.send_if_modified(|v| {
            let moved = v.0 != head;
            v.0 = head;
            moved
        });
    }
}

fn gatos_store_head(topic: &Topic) -> String {
    format!("refs/gatos/messages/{topic}/head")
}

/// The live subscriptions of one connection.
pub type Registry = Arc<Mutex<HashMap<String, CancellationToken>>>;

/// A subscription about to run.
pub struct Subscription {
    /// Its id.
    pub id: String,
    /// Its cursor.
    pub follower: Follower,
    /// Head changes of its topic.
    pub changes: watch::Receiver<Head>,
    /// Where events go.
    pub outbox: Outbox,
    /// Cancelled by unsubscribe or connection close.
    pub stop: CancellationToken,
    /// The connection's subscriptions (to remove itself when it ends).
    pub registry: Registry,
    /// The server.
    pub shared: Arc<Shared>,
    /// `Some` for a `jobs.watch`: deliver `jobs.event`s that pass the filter.
    pub jobs: Option<JobFilter>,
}

/// What a `jobs.watch` delivers.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Only this queue.
    pub queue: Option<gatos_types::Queue>,
    /// Only this job.
    pub job: Option<Ulid>,
}

impl JobFilter {
    /// The `jobs.event` line for a message of `gatos.jobs`, if it passes.
    fn line(&self, subscription: &str, m: &MessageView<'_>) -> Option<String> {
        let ev: gatos_types::jobs::JobEvent = serde_json::from_str(m.payload.get()).ok()?;
        if self.queue.as_ref().is_some_and(|q| *q != ev.queue)
            || self.job.is_some_and(|j| j != ev.job)
        {
            return None;
        }
        let mut event = serde_json::to_value(&ev).ok()?;
        if let Some(obj) = event.as_object_mut() {
            obj.insert("ulid".into(), serde_json::Value::String(m.ulid.to_string()));
        }
        Some(to_line(&Notification::new(
            JOBS_EVENT,
            JobEventNotice {
                subscription: subscription.to_owned(),
                event,
            },
        )))
    }
}

#[derive(Serialize)]
struct EventRef<'a> {
    subscription: &'a str,
    message: &'a MessageView<'a>,
}

/// Runs a subscription once `go` fires (after its `messages.subscribe` answer was queued).
pub async fn run(mut s: Subscription, go: oneshot::Receiver<()>) {
    if go.await.is_err() {
        s.registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&s.id);
        return;
    }
    s.shared.subscriptions.fetch_add(1, Ordering::Relaxed);
    let batch = s.shared.limits.subscription_batch;
    let max_bytes = s.shared.limits.max_page_bytes;
    let grace = s.shared.limits.lag_grace;
    // The resume point for `lagged`: where the subscription started, then each delivery.
    let mut delivered: Option<Ulid> = s.follower.position().1;
    let mut follower = Some(s.follower);
    'outer: loop {
        s.changes.borrow_and_update();
        let Some(mut f) = follower.take() else { break };
        let id = s.id.clone();
        let jobs = s.jobs.clone();
        let polled = tokio::task::spawn_blocking(move || {
            let mut events: Vec<(Ulid, String)> = Vec::new();
            // A batch ends once its events reach the page byte cap, as a page does.
            let mut bytes = 0u64;
            let mut full = false;
            let r = f.poll(batch, |m| {
                let line = match &jobs {
                    Some(filter) => match filter.line(&id, m) {
                        Some(l) => l,
                        None => return Ok(true),
                    },
                    None => to_line(&Notification::new(
                        MESSAGES_EVENT,
                        EventRef {
                            subscription: &id,
                            message: m,
                        },
                    )),
                };
                bytes = bytes.saturating_add(u64::try_from(line.len()).unwrap_or(u64::MAX));
                events.push((m.ulid, line));
                full = bytes >= max_bytes;
                Ok(!full)
            });
            (f, r.map(|(n, _gap)| (events, if full { batch } else { n })))
        })
        .await;
        let Ok((f, result)) = polled else { break };
        follower = Some(f);
        let (events, n) = match result {
            Ok(x) => x,
            Err(e) => {
                tracing::info!(subscription = %s.id, code = %e.code(), error = %e, "subscription ended by an error");
                break;
            }
        };
        for (ulid, line) in events {
            let line = match s.outbox.try_send(line) {
                Ok(()) => {
                    delivered = Some(ulid);
                    continue;
                }
                Err(line) => line,
            };
            // The client is not reading: wait a little, then give up on this subscription.
            tokio::select! {
                sent = tokio::time::timeout(grace, s.outbox.send(line)) => {
                    if sent == Ok(true) {
                        delivered = Some(ulid);
                        continue;
                    }
                }
                () = s.stop.cancelled() => break 'outer,
            }
            tracing::info!(subscription = %s.id, "subscriber lagged; subscription closed");
            let notice = to_line(&Notification::new(
                MESSAGES_LAGGED,
                Lagged {
                    subscription: s.id.clone(),
                    next_since: delivered,
                },
            ));
            s.outbox.send_small(notice).await;
            break 'outer;
        }
        if n >= batch {
            continue;
        }
        tokio::select! {
            () = s.stop.cancelled() => break,
            changed = s.changes.changed() => if changed.is_err() { break },
        }
    }
    s.registry
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&s.id);
    s.shared.subscriptions.fetch_sub(1, Ordering::Relaxed);
}
