//! Group commit (ADR 0011, ADR 0046): concurrent callers through one handle queue their
//! items; whichever thread takes the leader lock commits everything queued as one group and
//! answers each caller. Publishes to a topic and the job plane's actions use it.

use std::sync::mpsc::{SyncSender, TryRecvError, sync_channel};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Items waiting to be committed together, and the leader lock.
pub(crate) struct Combiner<T, R> {
    pending: Mutex<Vec<(T, SyncSender<R>)>>,
    leader: Mutex<()>,
}

impl<T, R> Default for Combiner<T, R> {
    fn default() -> Self {
        Combiner {
            pending: Mutex::new(Vec::new()),
            leader: Mutex::new(()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<T, R> Combiner<T, R> {
    /// Queues `item` and returns its answer once a group holding it was committed.
    ///
    /// The caller that takes the leader lock waits `window` (when not zero) for more items,
    /// then passes everything queued to `commit`, which returns one answer per item, in
    /// order. A lone caller is therefore delayed by at most `window`; with a zero window a
    /// group forms only from callers that queued while the previous group was committed.
    /// `None` when the group holding the item failed without answering it (its leader
    /// panicked).
    pub(crate) fn submit(
        &self,
        item: T,
        window: Duration,
        mut commit: impl FnMut(Vec<T>) -> Vec<R>,
    ) -> Option<R> {
        let (reply, answer) = sync_channel(1);
        lock(&self.pending).push((item, reply));
        loop {
            match answer.try_recv() {
                Ok(r) => return Some(r),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => {}
            }
            let _lead = lock(&self.leader);
            if !window.is_zero() && !lock(&self.pending).is_empty() {
                std::thread::sleep(window);
            }
            let waiting = std::mem::take(&mut *lock(&self.pending));
            if waiting.is_empty() {
                continue;
            }
            let (items, replies): (Vec<T>, Vec<SyncSender<R>>) = waiting.into_iter().unzip();
            let answers = commit(items);
            debug_assert_eq!(answers.len(), replies.len(), "one answer per item");
            for (a, r) in answers.into_iter().zip(replies) {
                let _ = r.send(a);
            }
        }
    }

    /// Commits `item` alone, at once, when no group is being committed; `None` (and
    /// `item` back) when one is: the caller would have to wait for it ([`crate::nowait`]).
    /// Items queued meanwhile by other callers are left to them.
    pub(crate) fn try_alone(
        &self,
        item: T,
        commit: impl FnOnce(Vec<T>) -> Vec<R>,
    ) -> Result<Option<R>, T> {
        let Ok(_lead) = self.leader.try_lock() else {
            return Err(item);
        };
        Ok(commit(vec![item]).pop())
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
