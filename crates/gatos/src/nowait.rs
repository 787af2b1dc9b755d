//! Calls that must not wait (ADR 0046, session 6): gatosd runs a plain publish on its
//! runtime's worker thread, where waiting for a lock would stall every connection that
//! worker serves. Inside [`run`], the publish path takes nothing it would have to wait
//! for: it tries the topic's lock, commits alone instead of joining a group, and neither
//! materializes a journal nor syncs one. Where it would wait it stops *before* writing
//! anything and [`run`] returns `None`; the caller then makes the same call where waiting
//! is fine (gatosd: its blocking pool).

use std::cell::Cell;

use gatos_types::ErrorCode;

use crate::error::Error;

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Off,
    On,
    WouldWait,
}

thread_local! {
    static STATE: Cell<State> = const { Cell::new(State::Off) };
}

/// Runs `f` on this thread with waiting refused; `None` when it would have waited, in
/// which case it wrote nothing and its result is dropped.
pub fn run<T>(f: impl FnOnce() -> T) -> Option<T> {
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
}
