//! Calls that must not wait (ADR 0046, session 6): gatosd runs a plain publish on its
//! runtime's worker thread, where waiting for a lock would stall every connection that
//! worker serves. Inside [`run`], the publish path takes nothing it would have to wait
//! for: it tries the topic's lock, leads its topic's group only when no other thread does
//! (never waiting for another's), and neither materializes a journal nor syncs one. Where
//! it would wait it stops *before* writing anything and [`run`] returns `None`; the caller
//! then makes the same call where waiting is fine (gatosd: its blocking pool).
//!
//! Inside [`run_or_park`] a publish that finds its topic's group being committed by another
//! thread does not stop: it *parks* (ADR 0046, session 15), queued for that group's leader
//! to commit, and the call returns a [`Parked`] future of its answer; the caller's thread
//! goes on with other work meanwhile.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use gatos_types::wire::PublishRow;
use gatos_types::{ErrorCode, Topic};

use crate::error::Error;
use crate::group::Settled;

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Off,
    On,
    WouldWait,
}

thread_local! {
    static STATE: Cell<State> = const { Cell::new(State::Off) };
    /// Whether a call may park ([`run_or_park`]).
    static PARKING: Cell<bool> = const { Cell::new(false) };
    /// The parked publish of the call being made.
    static PARKED: RefCell<Option<Parked>> = const { RefCell::new(None) };
}

/// A parked publish's answer: `None` when it was handed back unwritten (its group would
/// have waited, or the thread that took it had committed enough for others): make the
/// call again where waiting is fine; else the publish's own result.
#[must_use = "a parked publish is answered through its future"]
pub struct Parked {
    answer: crate::group::Parked<crate::Result<PublishRow>>,
    topic: Topic,
}

impl Parked {
    pub(crate) fn new(
        answer: crate::group::Parked<crate::Result<PublishRow>>,
        topic: &Topic,
    ) -> Parked {
        Parked {
            answer,
            topic: topic.clone(),
        }
    }

    /// The topic the parked publish writes to.
    pub fn topic(&self) -> &Topic {
        &self.topic
    }
}

impl std::fmt::Debug for Parked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parked")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl Future for Parked {
    type Output = Option<crate::Result<PublishRow>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.answer).poll(cx).map(|s| match s {
            Settled::Done(r) => Some(r),
            Settled::WouldWait => None,
            Settled::Lost => Some(Err(Error::new(
                ErrorCode::Internal,
                "the publish group failed",
            ))),
        })
    }
}

/// What [`run_or_park`] made of a call.
#[derive(Debug)]
pub enum Now<T> {
    /// The call ran to its end: its result.
    Done(T),
    /// It would have waited and wrote nothing: make it again where waiting is fine.
    WouldWait,
    /// It parked: the future gives its answer.
    Parked(Parked),
}

/// As [`run`], and a publish that finds its topic's group being committed parks instead of
/// stopping (the call's own result is then dropped: the answer is the [`Parked`] one's).
pub fn run_or_park<T>(f: impl FnOnce() -> T) -> Now<T> {
    /// Drops a parked publish left behind by a call that panicked.
    struct Clear;
    impl Drop for Clear {
        fn drop(&mut self) {
            PARKED.with(|p| p.borrow_mut().take());
        }
    }
    let clear = Clear;
    let out = parking(true, || refusing(f));
    let parked = PARKED.with(|p| p.borrow_mut().take());
    drop(clear);
    match (parked, out) {
        (Some(p), _) => Now::Parked(p),
        (None, Some(out)) => Now::Done(out),
        (None, None) => Now::WouldWait,
    }
}

/// Whether a publish made now may park ([`run_or_park`]).
pub(crate) fn may_park() -> bool {
    PARKING.with(Cell::get) && active()
}

/// Records the call's parked publish and returns the error that unwinds the call; the
/// caller returns it at once.
pub(crate) fn park(p: Parked) -> Error {
    PARKED.with(|slot| *slot.borrow_mut() = Some(p));
    Error::new(
        ErrorCode::Unavailable,
        "this publish was parked for its topic's group commit",
    )
}

/// Runs `f` without waiting, as [`run`], for a group commit that may hold other callers'
/// parked publishes: `None` when it would have waited (and wrote nothing). Whether it
/// would have is the group's verdict, not that of the call whose thread leads it, and
/// nothing inside parks.
pub(crate) fn apart<T>(f: impl FnOnce() -> T) -> Option<T> {
    struct Restore(State);
    impl Drop for Restore {
        fn drop(&mut self) {
            STATE.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(STATE.with(|s| s.replace(State::On)));
    let out = parking(false, f);
    (STATE.with(Cell::get) != State::WouldWait).then_some(out)
}

/// Runs `f` on this thread with waiting refused; `None` when it would have waited, in
/// which case its own call wrote nothing and its result is dropped. (A publish that leads
/// its topic's group may commit items other callers parked, before and after its own:
/// those are theirs, answered through their [`Parked`] futures.) Nothing parks inside.
pub fn run<T>(f: impl FnOnce() -> T) -> Option<T> {
    parking(false, || refusing(f))
}

/// Runs `f` with parking allowed or not, the thread's setting put back after.
fn parking<T>(allowed: bool, f: impl FnOnce() -> T) -> T {
    /// Puts the thread's parking setting back, also when `f` panics.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            PARKING.with(|p| p.set(self.0));
        }
    }
    let _restore = Restore(PARKING.with(|p| p.replace(allowed)));
    f()
}

/// [`run`] without touching the parking setting.
fn refusing<T>(f: impl FnOnce() -> T) -> Option<T> {
    /// Puts the thread's state back, also when `f` panics (a runtime's worker thread
    /// outlives a task that panicked).
    struct Restore(State);
    impl Drop for Restore {
        fn drop(&mut self) {
            STATE.with(|s| {
                // An enclosing run learns that its call would have waited too.
                s.set(match (s.get(), self.0) {
                    (State::WouldWait, State::On | State::WouldWait) => State::WouldWait,
                    _ => self.0,
                });
            });
        }
    }
    let restore = Restore(STATE.with(|s| s.replace(State::On)));
    let out = f();
    let would_wait = STATE.with(Cell::get) == State::WouldWait;
    drop(restore);
    (!would_wait).then_some(out)
}

/// Whether this thread is inside [`run`].
pub(crate) fn active() -> bool {
    STATE.with(|s| s.get() != State::Off)
}

/// Marks the call as one that would wait and returns the error that unwinds it; the
/// caller returns it before writing anything.
pub(crate) fn would_wait(what: &str) -> Error {
    STATE.with(|s| s.set(State::WouldWait));
    Error::new(
        ErrorCode::Unavailable,
        format!("{what}: this call would wait, and it was made where it must not"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_reports_a_call_that_would_wait_and_restores_the_state() {
        assert!(!active());
        assert_eq!(run(active), Some(true));
        assert_eq!(run(|| would_wait("x").code()), None);
        assert!(!active());
        // Nested: the inner call's verdict is the outer one's.
        assert_eq!(run(|| run(|| 1)), Some(Some(1)));
        assert_eq!(run(|| run(|| would_wait("y")).is_none()), None);
        // A call that panics leaves the thread as it found it.
        let panicked = std::panic::catch_unwind(|| run(|| panic!("in the call")));
        assert!(panicked.is_err());
        assert!(!active());
    }

    #[test]
    fn work_apart_keeps_its_verdict_and_nothing_parks_in_a_plain_run() {
        // What would wait apart (a group for others) is its own verdict, not the call's.
        assert_eq!(run(|| apart(|| would_wait("x")).is_none()), Some(true));
        assert_eq!(run(|| apart(|| 1)), Some(Some(1)));
        // Parking is allowed only inside run_or_park, and not in a run nested in it.
        assert!(!may_park());
        assert!(matches!(run_or_park(may_park), Now::Done(true)));
        assert!(matches!(
            run_or_park(|| run(may_park)),
            Now::Done(Some(false))
        ));
        assert!(matches!(
            run_or_park(|| apart(may_park)),
            Now::Done(Some(false))
        ));
        assert!(matches!(run_or_park(|| would_wait("y")), Now::WouldWait));
        assert!(!may_park() && !active());
    }
}
