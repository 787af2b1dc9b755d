//! Subscriptions: `messages.event` notifications for messages written by anyone.
//!
//! One watch per topic, shared by its subscriptions; one poller. Every `watch_poll` it
//! stats the store's topics stamp, which every gatos writer (this daemon, the CLI, another
//! daemon, a sync) moves after writing a topic: while it has not moved, no head is read and
//! idle subscriptions cost nothing. When it moves, the watched heads are read, idle ones
//! less often down to `watch_idle_poll` (and the daemon's own publishes poke at once).
//! Refs written by plain git do not move the stamp: a read of every watched head each
//! [`SAFETY_POLL`] catches them. Each subscription reads its own cursor through a
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
use gatos_api::ops::names::{JOBS_EVENT, MESSAGES_EVENT, MESSAGES_GAP, MESSAGES_LAGGED};
use gatos_api::types::{JobEventNotice, Lagged};
use gatos_rpc::message::{Notification, to_line};
use gatos_types::{Oid, Topic, Ulid};
use serde::Serialize;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::outbox::Outbox;
use crate::shared::Shared;

/// Watched topic heads: one watch per topic, shared by its subscriptions, and one poller
/// task for all of them.
///
/// The poller reads the heads that are due in one blocking task. A head read every
/// `poll` that has not moved is read half as often each time, down to once per
/// `idle_poll`, so idle subscriptions cost next to nothing however many topics they
/// watch; a move (or a poke by the daemon's own writes) brings the topic back to `poll`.
pub struct Watchers {
    gatos: Gatos,
    poll: Duration,
    idle_poll: Duration,
    map: Mutex<HashMap<Topic, Watched>>,
    wake: tokio::sync::Notify,
    running: std::sync::atomic::AtomicBool,
}

struct Watched {
    tx: watch::Sender<Head>,
    every: Duration,
    due: tokio::time::Instant,
}

/// What a watch carries: the topic head last seen, and a counter the daemon's own writes
/// bump so subscribers wake without waiting for the next poll.
pub type Head = (Option<Oid>, u64);

impl Watchers {
    /// No topic watched yet; heads are read every `poll`, idle ones down to every
    /// `idle_poll`.
    pub fn new(gatos: Gatos, poll: Duration, idle_poll: Duration) -> Watchers {
        Watchers {
            gatos,
            poll,
            idle_poll: idle_poll.max(poll),
            map: Mutex::default(),
            wake: tokio::sync::Notify::new(),
            running: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Returns a receiver that changes whenever the topic head moves. `seen` is the head
    /// the caller already read: a new watch starts from it, so a write that lands before
    /// the first poll is still noticed.
    pub fn watch(self: &Arc<Self>, topic: &Topic, seen: Option<Oid>) -> watch::Receiver<Head> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(w) = map.get(topic) {
            return w.tx.subscribe();
        }
        let (tx, rx) = watch::channel((seen, 0));
        map.insert(
            topic.clone(),
            Watched {
                tx,
                every: self.poll,
                due: tokio::time::Instant::now() + self.poll,
            },
        );
        // Under the map's lock, as the poller decides to stop under it.
        if !self.running.swap(true, Ordering::AcqRel) {
            tokio::spawn(poll_heads(self.clone()));
        }
        rx
    }

    /// Wakes the topic's subscribers now (after the daemon's own writes), and reads its
    /// head at the fast rate again.
    pub fn poke(&self, topic: &Topic) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(w) = map.get_mut(topic) {
            w.tx.send_modify(|v| v.1 = v.1.wrapping_add(1));
            w.every = self.poll;
            w.due = w.due.min(tokio::time::Instant::now() + self.poll);
        }
        drop(map);
        self.wake.notify_one();
    }

    /// Topics watched now.
    pub fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Tells whether no topic is watched.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How often every watched head is read even when the topics stamp says nothing changed
/// (writes by plain git, which does not move the stamp).
pub const SAFETY_POLL: Duration = Duration::from_secs(30);

/// How long after the stamp last moved heads are still read: a file's modification time is
/// as coarse as the kernel's tick, so a second write within one tick leaves the same time.
const STAMP_GUARD: Duration = Duration::from_millis(100);

async fn poll_heads(w: Arc<Watchers>) {
    let mut stamp = w.gatos.topics_stamp();
    let mut hot_until = tokio::time::Instant::now() + STAMP_GUARD;
    let mut next_safety = tokio::time::Instant::now() + SAFETY_POLL;
    // A second full read after a move: a write in the same tick of the stamp's clock as
    // the one that moved it leaves no mark of its own.
    let mut sweep_at: Option<tokio::time::Instant> = None;
    loop {
        let now = tokio::time::Instant::now();
        let seen = w.gatos.topics_stamp();
        // The stamp says some topic moved, not which: every watched head is read, however
        // long its own back-off (an idle topic's is up to `idle_poll`, and waiting for it
        // would leave a write by another process unseen until the safety poll).
        let mut sweep = false;
        if seen != stamp {
            stamp = seen;
            hot_until = now + STAMP_GUARD.max(w.poll);
            sweep = true;
            sweep_at = Some(now + STAMP_GUARD);
        } else if sweep_at.is_some_and(|t| now >= t) {
            sweep = true;
            sweep_at = None;
        }
        let safety = now >= next_safety;
        if safety {
            next_safety = now + SAFETY_POLL;
        }
        let quiet = now > hot_until && !safety && !sweep;
        let (due, next) = {
            let mut map = w.map.lock().unwrap_or_else(PoisonError::into_inner);
            map.retain(|_, x| x.tx.receiver_count() > 0);
            if map.is_empty() {
                w.running.store(false, Ordering::Release);
                return;
            }
            let due: Vec<Topic> = if quiet {
                // Nothing was written since the heads were last read: read none, look at
                // the stamp again in one poll.
                Vec::new()
            } else {
                map.iter()
                    .filter(|(_, x)| x.due <= now || safety || sweep)
                    .map(|(t, _)| t.clone())
                    .collect()
            };
            let next = if quiet {
                now + w.poll
            } else {
                map.values()
                    .map(|x| x.due)
                    .min()
                    .unwrap_or(now + w.poll)
                    .min(now + w.poll)
            };
            let next = sweep_at.map_or(next, |t| next.min(t));
            (due, next)
        };
        if due.is_empty() {
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                () = w.wake.notified() => {}
            }
            continue;
        }
        let gatos = w.gatos.clone();
        let heads = tokio::task::spawn_blocking(move || {
            due.into_iter()
                .map(|t| {
                    let head = gatos.messages().head_commit(&t).ok().flatten();
                    (t, head)
                })
                .collect::<Vec<_>>()
        })
        .await;
        let Ok(heads) = heads else {
            tokio::time::sleep(w.poll).await;
            continue;
        };
        let now = tokio::time::Instant::now();
        let mut map = w.map.lock().unwrap_or_else(PoisonError::into_inner);
        for (topic, head) in heads {
            let Some(x) = map.get_mut(&topic) else {
                continue;
            };
            let moved = x.tx.send_if_modified(|v| {
                let moved = v.0 != head;
                v.0 = head;
                moved
            });
            x.every = if moved {
                w.poll
            } else {
                x.every.saturating_mul(2).min(w.idle_poll)
            };
            x.due = now + x.every;
        }
    }
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
    /// Its place among the daemon's streams, held until it ends.
    pub slot: crate::shared::StreamSlot,
}

/// What a `jobs.watch` delivers: the operation's own filter.
pub type JobFilter = gatos_api::types::WatchParams;

/// The `jobs.event` line of a watch.
trait EventLine {
    fn line(&self, subscription: &str, m: &MessageView<'_>) -> Option<String>;
}

impl EventLine for JobFilter {
    /// The `jobs.event` line for a message of `gatos.jobs`, if it passes.
    fn line(&self, subscription: &str, m: &MessageView<'_>) -> Option<String> {
        let ev = self.admits(m.payload.get())?;
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

/// The least room a subscription waits for before it reads (a batch then holds at least
/// one event, however large).
const ROOM_FLOOR: usize = 64 * 1024;

/// Runs a subscription once `go` fires (after its `messages.subscribe` answer was queued).
pub async fn run(mut s: Subscription, go: oneshot::Receiver<()>) {
    if go.await.is_err() {
        s.registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&s.id);
        return;
    }
    let batch = s.shared.limits.subscription_batch;
    let max_bytes = s.shared.limits.max_page_bytes;
    let grace = s.shared.limits.lag_grace;
    // The resume point for `lagged`: where the subscription started, then each delivery.
    let mut delivered: Option<Ulid> = s.follower.position().1;
    let mut follower = Some(s.follower);
    // What one batch may hold: the page cap, and never more than the outbox.
    let want = usize::try_from(max_bytes)
        .unwrap_or(usize::MAX)
        .min(s.outbox.capacity());
    'outer: loop {
        s.changes.borrow_and_update();
        // Room for the batch is taken before it is read: what waits for a slow reader is
        // what its outbox holds (counted in the daemon's total), never a batch read and
        // held beside it by each of its subscriptions (ADR 0048).
        // As much as is free now (the page cap at most), and never less than a small floor:
        // a client that reads gets its events as soon as that much is free.
        let ask = want.min(s.outbox.available().max(ROOM_FLOOR));
        let mut room = tokio::select! {
            room = tokio::time::timeout(grace, s.outbox.room(ask)) => match room {
                Ok(Some(room)) => room,
                Ok(None) => break,
                Err(_) => {
                    lagged(&s.outbox, &s.id, delivered).await;
                    break;
                }
            },
            () = s.stop.cancelled() => break,
        };
        let cap = u64::try_from(room.left()).unwrap_or(u64::MAX).max(1);
        let Some(mut f) = follower.take() else { break };
        let id = s.id.clone();
        let jobs = s.jobs.clone();
        let polled = tokio::task::spawn_blocking(move || {
            let mut events: Vec<(Ulid, String)> = Vec::new();
            // A batch ends once its events fill the room taken for it (the page byte cap
            // at most, as a page does).
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
                bytes = bytes.saturating_add(u64::try_from(line.len() + 1).unwrap_or(u64::MAX));
                events.push((m.ulid, line));
                full = bytes >= cap;
                Ok(!full)
            });
            (
                f,
                r.map(|(n, gap)| (events, gap, if full { batch } else { n })),
            )
        })
        .await;
        let Ok((f, result)) = polled else { break };
        follower = Some(f);
        let (events, gap, n) = match result {
            Ok(x) => x,
            Err(e) => {
                tracing::info!(subscription = %s.id, code = %e.code(), error = %e, "subscription ended by an error");
                break;
            }
        };
        // Pruned messages skipped: said before the events that follow them.
        if let Some(g) = gap {
            let notice = to_line(&Notification::new(
                MESSAGES_GAP,
                gatos_api::types::GapNotice {
                    subscription: s.id.clone(),
                    from_seq: g.from_seq,
                    to_seq: g.to_seq,
                },
            ));
            s.outbox.send_small(notice).await;
        }
        for (ulid, line) in events {
            // Only the last event of a batch can need more than the room left; the client
            // that does not read gets a little time, then this subscription ends.
            tokio::select! {
                sent = tokio::time::timeout(grace, s.outbox.send_in(line, &mut room)) => {
                    match sent {
                        Ok(true) => {
                            delivered = Some(ulid);
                            continue;
                        }
                        Ok(false) => break 'outer,
                        Err(_) => {}
                    }
                }
                () = s.stop.cancelled() => break 'outer,
            }
            lagged(&s.outbox, &s.id, delivered).await;
            break 'outer;
        }
        drop(room);
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
}

/// Tells the subscriber it lagged (it did not read for the lag grace), naming where to
/// resume; the subscription then ends.
async fn lagged(outbox: &Outbox, id: &str, delivered: Option<Ulid>) {
    tracing::info!(subscription = %id, "subscriber lagged; subscription closed");
    let notice = to_line(&Notification::new(
        MESSAGES_LAGGED,
        Lagged {
            subscription: id.to_owned(),
            next_since: delivered,
        },
    ));
    outbox.send_small(notice).await;
}
