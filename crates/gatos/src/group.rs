//! Group commit (ADR 0011, ADR 0046): concurrent callers through one handle queue their
//! items; whichever thread takes the leader lock commits everything queued as one group and
//! answers each caller. Publishes to a topic and the job plane's actions use it.
//!
//! A caller that must not wait ([`crate::nowait`]) and finds a group being committed may
//! *park* its item instead (ADR 0046, session 15): it is queued with a [`Parked`] answer,
//! which a future awaits, and the caller's thread goes on with other work. A thread that
//! lets go of the leader lock commits what was parked meanwhile, a few groups at most, and
//! hands back what is left (to be made again where waiting is fine); a thread that parks
//! when nobody leads does the same, so its own item is committed or handed back. So a
//! parked item is answered: committed, handed back, or, if the group holding it panicked,
//! failed.

use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc::{SyncSender, TryRecvError, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// Items waiting to be committed together, and the leader lock.
pub(crate) struct Combiner<T, R> {
    /// Items of callers that wait for their answer (and lead when they can).
    pending: Mutex<Vec<(T, SyncSender<R>)>>,
    /// Items of callers that went on with other work; any leader commits them.
    parked: Mutex<Vec<(T, Parker<R>)>>,
    leader: Mutex<()>,
}

impl<T, R> Default for Combiner<T, R> {
    fn default() -> Self {
        Combiner {
            pending: Mutex::new(Vec::new()),
            parked: Mutex::new(Vec::new()),
            leader: Mutex::new(()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How a parked item ended.
#[derive(Debug)]
pub(crate) enum Settled<R> {
    /// Committed (or failed) with its group: the item's answer.
    Done(R),
    /// It was handed back unwritten (its group would have waited, or the thread that took
    /// it had committed enough groups for others): to be made again where waiting is fine.
    WouldWait,
    /// Its group's leader failed without answering it (a panic, a bug).
    Lost,
}

/// The answer of a parked item, shared by its [`Parker`] and its [`Parked`].
struct Slot<R> {
    state: Mutex<(Option<Settled<R>>, Option<Waker>)>,
}

/// The leader's end of a parked item: answering it wakes whoever awaits it; dropping it
/// unanswered (a leader that panicked) answers [`Settled::Lost`].
struct Parker<R>(Option<Arc<Slot<R>>>);

impl<R> Parker<R> {
    fn settle(mut self, answer: Settled<R>) {
        if let Some(slot) = self.0.take() {
            let waker = {
                let mut s = lock(&slot.state);
                s.0 = Some(answer);
                s.1.take()
            };
            if let Some(w) = waker {
                w.wake();
            }
        }
    }
}

impl<R> Drop for Parker<R> {
    fn drop(&mut self) {
        if self.0.is_some() {
            Parker(self.0.take()).settle(Settled::Lost);
        }
    }
}

/// The caller's end of a parked item: a future of its [`Settled`] answer.
pub(crate) struct Parked<R>(Arc<Slot<R>>);

impl<R> Future for Parked<R> {
    type Output = Settled<R>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Settled<R>> {
        let mut s = lock(&self.0.state);
        match s.0.take() {
            Some(answer) => Poll::Ready(answer),
            None => {
                s.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// How many groups of parked items a caller that must not wait commits for others when it
/// lets go of the leader lock before it hands what is left back ([`Combiner::settle`]); a
/// caller that may wait commits one (each of its groups may wait for the topic's lock).
const SETTLE_ROUNDS: usize = 4;

/// The most items a group committed by a caller that must not wait holds (its own and
/// parked ones), and the most parked items a group committed in [`Combiner::settle`] takes.
const NOWAIT_GROUP: usize = 32;

fn parked<R>() -> (Parker<R>, Parked<R>) {
    let slot = Arc::new(Slot {
        state: Mutex::new((None, None)),
    });
    (Parker(Some(slot.clone())), Parked(slot))
}

/// Moves the oldest parked items, at most `max`, into `items` and returns their answers'
/// ends, in the same order.
fn drain<T, R>(
    parked: &Mutex<Vec<(T, Parker<R>)>>,
    items: &mut Vec<T>,
    max: usize,
) -> Vec<Parker<R>> {
    let mut queue = lock(parked);
    let n = queue.len().min(max);
    let mut parkers = Vec::with_capacity(n);
    for (item, parker) in queue.drain(..n) {
        items.push(item);
        parkers.push(parker);
    }
    parkers
}

/// Commits one group and answers its queued items (the waiting callers' first, then the
/// parked ones); returns the answer after theirs (the leader's own item's, when it had
/// one, else `None`), `None` when the group would have waited, or `commit`'s panic. A
/// missing answer (a bug in `commit`) leaves its item unanswered: [`Settled::Lost`], or
/// a waiting caller's `None`.
#[allow(clippy::type_complexity, reason = "a panic's payload, as std gives it")]
fn run_group<T, R>(
    commit: &mut dyn FnMut(Vec<T>) -> Option<Vec<R>>,
    items: Vec<T>,
    replies: Vec<SyncSender<R>>,
    parkers: Vec<Parker<R>>,
) -> std::thread::Result<Option<Option<R>>> {
    let answers = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| commit(items)))?;
    // (No assertion here: a panic outside `catch_unwind` would leave the lock's holder
    // without settling.)
    let Some(answers) = answers else {
        // Only a caller that must not wait gets no answers, and it has no waiting callers;
        // were there any, they would see their group fail (`None`).
        for p in parkers {
            p.settle(Settled::WouldWait);
        }
        return Ok(None);
    };
    let mut answers = answers.into_iter();
    for r in replies {
        if let Some(a) = answers.next() {
            let _ = r.send(a);
        }
    }
    for p in parkers {
        if let Some(a) = answers.next() {
            p.settle(Settled::Done(a));
        }
    }
    Ok(Some(answers.next()))
}

/// What [`Combiner::lead_or_park`] did with an item.
pub(crate) enum Led<T, R> {
    /// It was committed in a group this thread led: its answer (`None` if `commit` gave
    /// too few, a bug).
    Done(Option<R>),
    /// A group was being committed and parking was not allowed: the item back.
    Busy(T),
    /// It waits for a leader; the future gives its answer.
    Parked(Parked<R>),
    /// Its group would have waited (nothing was written).
    WouldWait,
}

impl<T, R> Combiner<T, R> {
    /// Queues `item` and returns its answer once a group holding it was committed.
    ///
    /// The caller that takes the leader lock waits `window` (when not zero) for more items,
    /// then passes everything queued (parked items too) to `commit`, which returns one
    /// answer per item, in order. A lone caller is therefore delayed by at most `window`;
    /// with a zero window a group forms only from callers that queued while the previous
    /// group was committed. `None` when the group holding the item failed without
    /// answering it (its leader panicked). A caller answered while it waited for the lock
    /// does not lead. Before it returns, the caller commits one group of what was parked
    /// meanwhile ([`Combiner::settle`]).
    pub(crate) fn submit(
        &self,
        item: T,
        window: Duration,
        mut commit: impl FnMut(Vec<T>) -> Vec<R>,
    ) -> Option<R> {
        let mut commit = |items: Vec<T>| Some(commit(items));
        let (reply, answer) = sync_channel(1);
        lock(&self.pending).push((item, reply));
        loop {
            match answer.try_recv() {
                Ok(r) => {
                    self.settle(&mut commit, 1);
                    return Some(r);
                }
                Err(TryRecvError::Disconnected) => {
                    self.settle(&mut commit, 1);
                    return None;
                }
                Err(TryRecvError::Empty) => {}
            }
            let lead = lock(&self.leader);
            // Answered while this caller waited for the lock: it does not lead (a group it
            // led that failed would fail it too, though its own item landed).
            match answer.try_recv() {
                Ok(r) => {
                    drop(lead);
                    self.settle(&mut commit, 1);
                    return Some(r);
                }
                Err(TryRecvError::Disconnected) => {
                    drop(lead);
                    self.settle(&mut commit, 1);
                    return None;
                }
                Err(TryRecvError::Empty) => {}
            }
            if !window.is_zero() && !lock(&self.pending).is_empty() {
                std::thread::sleep(window);
            }
            let mut items = Vec::new();
            let mut replies = Vec::new();
            for (item, reply) in std::mem::take(&mut *lock(&self.pending)) {
                items.push(item);
                replies.push(reply);
            }
            let parkers = drain(&self.parked, &mut items, usize::MAX);
            if items.is_empty() {
                continue;
            }
            if let Err(panic) = run_group(&mut commit, items, replies, parkers) {
                drop(lead);
                self.settle(&mut commit, 1);
                std::panic::resume_unwind(panic);
            }
        }
    }

    /// Commits `item` at once when no group is being committed, with items parked
    /// meanwhile (at most [`NOWAIT_GROUP`] in all); when one is, parks it (`park`) or hands
    /// it back.
    ///
    /// `commit` returns one answer per item, in order, or `None` when the group would have
    /// waited and wrote nothing ([`crate::nowait`]); the parked items of such a group are
    /// answered [`Settled::WouldWait`]. The caller never waits for another thread; after
    /// its own group, it commits what was parked meanwhile ([`Combiner::settle`], at most
    /// [`SETTLE_ROUNDS`] groups). If its own group panics, the panic goes on to the caller
    /// after that.
    pub(crate) fn lead_or_park(
        &self,
        item: T,
        park: bool,
        mut commit: impl FnMut(Vec<T>) -> Option<Vec<R>>,
    ) -> Led<T, R> {
        let lead = match self.try_lead() {
            Some(g) => g,
            None if !park => return Led::Busy(item),
            None => {
                let (parker, parked) = parked();
                lock(&self.parked).push((item, parker));
                // The leader may have let go before this item was queued: then nobody
                // looks for it but us.
                self.settle(&mut commit, SETTLE_ROUNDS);
                return Led::Parked(parked);
            }
        };
        // The items parked first: they have waited longest.
        let mut items = Vec::new();
        let parkers = drain(&self.parked, &mut items, NOWAIT_GROUP - 1);
        items.push(item);
        let out = run_group(&mut commit, items, Vec::new(), parkers);
        drop(lead);
        self.settle(&mut commit, SETTLE_ROUNDS);
        match out {
            Ok(Some(own)) => Led::Done(own),
            Ok(None) => Led::WouldWait,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// What every thread that held the leader lock does when it lets go: commits the items
    /// parked meanwhile, [`NOWAIT_GROUP`] at a time, unless another thread leads (which
    /// does the same when it lets go). After `rounds` groups it hands back what is still
    /// parked ([`Settled::WouldWait`]: made again where waiting is fine), so a caller is
    /// not kept committing for others for as long as they keep coming; it does so without
    /// the lock, so an item parked after that finds the lock free, or held by a thread
    /// that settles after it. A group here that panics (a bug) answers its items
    /// [`Settled::Lost`] and the caller goes on with its own outcome.
    fn settle(&self, commit: &mut dyn FnMut(Vec<T>) -> Option<Vec<R>>, rounds: usize) {
        for _ in 0..rounds {
            if lock(&self.parked).is_empty() {
                return;
            }
            let Some(lead) = self.try_lead() else {
                return;
            };
            let mut items = Vec::new();
            let parkers = drain(&self.parked, &mut items, NOWAIT_GROUP);
            if items.is_empty() {
                // Another leader took them between the look and the lock.
                continue;
            }
            let out = run_group(commit, items, Vec::new(), parkers);
            drop(lead);
            if out.is_err() {
                tracing::error!(
                    "a group commit of parked items panicked; they were answered as failed"
                );
            }
        }
        for p in drain(&self.parked, &mut Vec::new(), usize::MAX) {
            p.settle(Settled::WouldWait);
        }
    }

    /// The leader lock if no other thread holds it (a leader that panicked does not keep
    /// it from others).
    fn try_lead(&self) -> Option<MutexGuard<'_, ()>> {
        match self.leader.try_lock() {
            Ok(g) => Some(g),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// How many items are parked (tests).
    #[cfg(test)]
    fn parked_count(&self) -> usize {
        lock(&self.parked).len()
    }

    /// Takes the leader lock, so callers queue until the guard is dropped (tests).
    pub(crate) fn hold(&self) -> MutexGuard<'_, ()> {
        lock(&self.leader)
    }

    /// How many items are queued (tests).
    pub(crate) fn waiting(&self) -> usize {
        lock(&self.pending).len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::channel;

    use super::*;

    /// The answer of a parked item.
    fn block_on<R>(p: Parked<R>) -> Settled<R> {
        gatos_testutil::block_on(Duration::from_secs(30), p).expect("the parked item was answered")
    }

    fn done<R: std::fmt::Debug>(s: Settled<R>) -> R {
        match s {
            Settled::Done(r) => r,
            other => panic!("expected an answer, got {other:?}"),
        }
    }

    /// Waits until `cond` holds, for at most 30 s.
    fn until(cond: impl Fn() -> bool) {
        gatos_testutil::wait_for("the condition", Duration::from_secs(30), cond).expect("it held");
    }

    /// Parks `items` while the leader lock is held (by `hold`, which lets go without
    /// looking for parked items, so they stay parked).
    fn parked_while_held<const N: usize>(
        c: &Combiner<u32, u32>,
        items: [u32; N],
    ) -> [Parked<u32>; N] {
        let _held = c.hold();
        items.map(|i| match c.lead_or_park(i, true, |_| None) {
            Led::Parked(p) => p,
            _ => panic!("an item parks while the lock is held"),
        })
    }

    type Groups = Arc<Mutex<Vec<Vec<u32>>>>;

    /// A commit that records each group and answers each item with itself times ten.
    fn recording(groups: &Groups) -> impl FnMut(Vec<u32>) -> Option<Vec<u32>> + use<> {
        let groups = groups.clone();
        move |items: Vec<u32>| {
            lock(&groups).push(items.clone());
            Some(items.into_iter().map(|i| i * 10).collect())
        }
    }

    #[test]
    fn an_item_parked_behind_a_leader_is_committed_by_it_when_it_lets_go() {
        let c: Arc<Combiner<u32, u32>> = Arc::default();
        let groups = Groups::default();
        let (entered, in_commit) = channel();
        let (go, release) = channel::<()>();
        let leader = {
            let (c, groups) = (c.clone(), groups.clone());
            std::thread::spawn(move || {
                let mut first = true;
                let mut rec = recording(&groups);
                match c.lead_or_park(1, true, |items| {
                    if std::mem::take(&mut first) {
                        entered.send(()).unwrap();
                        release.recv().unwrap();
                    }
                    rec(items)
                }) {
                    Led::Done(r) => r,
                    _ => panic!("the first caller leads"),
                }
            })
        };
        in_commit.recv().unwrap();
        // A group is being committed: the second item parks, a third is handed back.
        let Led::Parked(p2) = c.lead_or_park(2, true, recording(&groups)) else {
            panic!("the second item parks");
        };
        assert!(matches!(
            c.lead_or_park(3, false, recording(&groups)),
            Led::Busy(3)
        ));
        assert_eq!(c.parked_count(), 1);
        go.send(()).unwrap();
        assert_eq!(leader.join().unwrap(), Some(10));
        assert_eq!(done(block_on(p2)), 20);
        assert_eq!(*lock(&groups), vec![vec![1], vec![2]]);
        assert_eq!(c.parked_count(), 0);
    }

    #[test]
    fn a_leader_takes_the_parked_items_into_its_group_first() {
        let c: Combiner<u32, u32> = Combiner::default();
        let groups = Groups::default();
        let parked = parked_while_held(&c, [1, 2]);
        // `hold` lets go without looking for parked items: the next leader takes them.
        assert!(matches!(
            c.lead_or_park(3, true, recording(&groups)),
            Led::Done(Some(30))
        ));
        let [a, b] = parked;
        assert_eq!((done(block_on(a)), done(block_on(b))), (10, 20));
        assert_eq!(*lock(&groups), vec![vec![1, 2, 3]]);
    }

    #[test]
    fn a_group_that_would_wait_hands_every_parked_item_back() {
        let c: Combiner<u32, u32> = Combiner::default();
        let [parked] = parked_while_held(&c, [1]);
        assert!(matches!(c.lead_or_park(2, true, |_| None), Led::WouldWait));
        assert!(matches!(block_on(parked), Settled::WouldWait));
    }

    #[test]
    fn a_leader_that_panics_leaves_its_parked_items_lost_not_waiting() {
        let c: Combiner<u32, u32> = Combiner::default();
        let [parked] = parked_while_held(&c, [1]);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            c.lead_or_park(2, true, |_| -> Option<Vec<u32>> {
                panic!("a bug in the commit")
            })
        }));
        assert!(panicked.is_err());
        assert!(matches!(block_on(parked), Settled::Lost));
        // The leader lock it held is no one's now.
        assert!(matches!(c.lead_or_park(3, true, Some), Led::Done(Some(3))));
    }

    #[test]
    fn a_caller_that_must_not_wait_commits_a_bounded_number_of_groups_for_others() {
        let c: Combiner<u32, u32> = Combiner::default();
        let groups = Groups::default();
        let mut rec = recording(&groups);
        let mut waiting = Vec::new();
        // Every group it commits finds a new item parked meanwhile, as under steady load.
        let out = c.lead_or_park(0, true, |items| {
            let (parker, parked) = parked();
            lock(&c.parked).push((1 + waiting.len() as u32, parker));
            waiting.push(parked);
            rec(items)
        });
        assert!(matches!(out, Led::Done(Some(0))));
        // Its own group and SETTLE_ROUNDS more; the item parked during the last is handed
        // back, not committed.
        assert_eq!(lock(&groups).len(), 1 + SETTLE_ROUNDS);
        assert_eq!(c.parked_count(), 0);
        let last = waiting.pop().expect("items were parked");
        assert!(matches!(block_on(last), Settled::WouldWait));
        for (i, p) in waiting.into_iter().enumerate() {
            assert_eq!(done(block_on(p)), 10 * (i as u32 + 1));
        }
    }

    #[test]
    fn a_group_committed_for_others_that_panics_fails_them_not_the_caller() {
        let c: Combiner<u32, u32> = Combiner::default();
        let mut waiting = None;
        let out = c.lead_or_park(1, true, |items| {
            if items != [1] {
                panic!("a bug in the parked items' group");
            }
            // Parked while the caller's own group is committed.
            let (parker, parked) = parked();
            lock(&c.parked).push((2, parker));
            waiting = Some(parked);
            Some(vec![10])
        });
        assert!(
            matches!(out, Led::Done(Some(10))),
            "the caller's item landed"
        );
        let parked = waiting.expect("an item was parked");
        assert!(matches!(block_on(parked), Settled::Lost));
        assert_eq!(c.parked_count(), 0);
    }

    #[test]
    fn a_waiting_leader_commits_the_parked_items_with_its_own() {
        let c: Arc<Combiner<u32, u32>> = Arc::default();
        let groups = Groups::default();
        let held = c.hold();
        let waiter = {
            let (c, groups) = (c.clone(), groups.clone());
            std::thread::spawn(move || {
                let mut rec = recording(&groups);
                c.submit(1, Duration::ZERO, |items| rec(items).unwrap_or_default())
            })
        };
        until(|| c.waiting() == 1);
        let Led::Parked(p) = c.lead_or_park(2, true, recording(&groups)) else {
            panic!("the item parks");
        };
        drop(held);
        assert_eq!(waiter.join().unwrap(), Some(10));
        assert_eq!(done(block_on(p)), 20);
        assert_eq!(*lock(&groups), vec![vec![1, 2]]);
    }
}
