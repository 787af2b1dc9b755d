//! A job's state, derived from its refs in the order DESIGN §4 gives.

use gatos_types::jobs::{ClaimState, JobState, ResultDoc, Status};
use gatos_types::{Dur, Timestamp};

use super::records::JobRecord;

/// What the refs say about a job now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Derived {
    /// The state.
    pub state: JobState,
    /// Attempts so far (0 before any claim).
    pub attempt: u32,
    /// Pending: when it may be claimed.
    pub claimable_at: Option<Timestamp>,
    /// Failed without a result because the last attempt lost its lease: the first worker
    /// that sees this writes the `closed` claim and a result with `reason: "lost"`.
    pub lost_final: bool,
}

/// Derives the state: a result gives succeeded or failed; else a cancel gives cancelled;
/// else a live lease gives running; else, with attempts left, pending; else failed.
pub fn derive(rec: &JobRecord, now: Timestamp, skew: Dur) -> Derived {
    let attempt = rec.claim.as_ref().map_or(0, |(_, c)| c.attempt);
    if let Some((_, r)) = &rec.result {
        let state = match r {
            ResultDoc {
                status: Status::Succeeded,
                ..
            } => JobState::Succeeded,
            ResultDoc {
                status: Status::Failed,
                ..
            } => JobState::Failed,
        };
        return Derived {
            state,
            attempt: r.attempt.max(attempt),
            claimable_at: None,
            lost_final: false,
        };
    }
    if rec.cancel.is_some() {
        return Derived {
            state: JobState::Cancelled,
            attempt,
            claimable_at: None,
            lost_final: false,
        };
    }
    let max = rec.spec.max_attempts;
    let not_before = rec.spec.run_after.unwrap_or(Timestamp::EPOCH);
    let Some((_, claim)) = &rec.claim else {
        return Derived {
            state: JobState::Pending,
            attempt: 0,
            claimable_at: Some(not_before),
            lost_final: false,
        };
    };
    match claim.state {
        ClaimState::Running | ClaimState::Heartbeat => {
            if now <= claim.lease_until.plus(skew) {
                Derived {
                    state: JobState::Running,
                    attempt,
                    claimable_at: None,
                    lost_final: false,
                }
            } else if attempt < max {
                // A lost lease is claimable at once.
                Derived {
                    state: JobState::Pending,
                    attempt,
                    claimable_at: Some(now.min(claim.lease_until)),
                    lost_final: false,
                }
            } else {
                Derived {
                    state: JobState::Failed,
                    attempt,
                    claimable_at: None,
                    lost_final: true,
                }
            }
        }
        ClaimState::Released => {
            if attempt < max {
                let at = claim
                    .available_at
                    .unwrap_or(claim.lease_until)
                    .max(not_before);
                Derived {
                    state: JobState::Pending,
                    attempt,
                    claimable_at: Some(at),
                    lost_final: false,
                }
            } else {
                Derived {
                    state: JobState::Failed,
                    attempt,
                    claimable_at: None,
                    lost_final: true,
                }
            }
        }
        // `closed` is written with the result; without one, a crash split the change.
        ClaimState::Closed => Derived {
            state: JobState::Failed,
            attempt,
            claimable_at: None,
            lost_final: true,
        },
    }
}

#[cfg(test)]
mod tests;
