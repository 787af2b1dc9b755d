//! Why an attempt or a job ended (ADR 0029): an [`EndReason`] derived from what the writers
//! recorded — the result, the attempt's released or closed claim, the cancel — and from
//! the manifest (the timeout's limit). Nothing here reads more than the record holds.

use gatos_types::Timestamp;
use gatos_types::jobs::{ClaimDoc, ClaimState, EndReason, Outcome, ResultDoc, Status};

use super::records::JobRecord;
use super::state;

/// The cancel of a record as an end reason.
pub fn cancelled(rec: &JobRecord) -> EndReason {
    match &rec.cancel {
        Some((_, c)) => EndReason::Cancelled {
            by: Some(c.actor.clone()),
            reason: c.reason.clone(),
            at: Some(c.requested_at),
        },
        None => EndReason::Cancelled {
            by: None,
            reason: None,
            at: None,
        },
    }
}

/// What a process left: its signal, else its exit code, else nothing.
fn process(exit_code: Option<i32>, signal: Option<&str>) -> EndReason {
    match (signal, exit_code) {
        (Some(s), _) => EndReason::Signal {
            signal: s.to_owned(),
        },
        (None, Some(code)) => EndReason::Exit { code },
        (None, None) => EndReason::NoExit,
    }
}

/// Why the attempt that wrote `result` ended. `closed` is the claim it closed, when known
/// (its lease end says when a lost lease ended).
pub fn of_result(rec: &JobRecord, result: &ResultDoc, closed: Option<&ClaimDoc>) -> EndReason {
    match result.reason.as_deref() {
        Some("timeout") => EndReason::Timeout {
            limit_secs: rec.spec.timeout,
        },
        Some("lost") => EndReason::LeaseLost {
            lease_until: closed
                .filter(|c| c.attempt == result.attempt)
                .map(|c| c.lease_until),
            given_back: false,
        },
        _ if result.status == Status::Succeeded => EndReason::Exit {
            code: result.exit_code.unwrap_or(0),
        },
        _ => process(result.exit_code, result.signal.as_deref()),
    }
}

/// Why the job ended, once it has: its result, else its cancel, else a last attempt that
/// lost its lease (the next claimer writes that result). `None` while it is pending or
/// running.
pub fn of_job(rec: &JobRecord, now: Timestamp, skew: gatos_types::Dur) -> Option<EndReason> {
    if let Some((_, r)) = &rec.result {
        let closed = rec.claim.as_ref().map(|(_, c)| c);
        return Some(of_result(rec, r, closed));
    }
    if rec.cancel.is_some() {
        return Some(cancelled(rec));
    }
    let d = state::derive(rec, now, skew);
    if d.lost_final {
        return Some(EndReason::LeaseLost {
            lease_until: rec.claim.as_ref().map(|(_, c)| c.lease_until),
            given_back: false,
        });
    }
    None
}

/// Why one attempt ended, from its last claim commit `last` (`superseded`: a later
/// attempt exists). `None` while it runs.
pub fn of_attempt(rec: &JobRecord, last: &ClaimDoc, superseded: bool) -> Option<EndReason> {
    match last.state {
        ClaimState::Released => Some(match last.outcome {
            Some(Outcome::Timeout) => EndReason::Timeout {
                limit_secs: rec.spec.timeout,
            },
            Some(Outcome::Cancelled) => cancelled(rec),
            Some(Outcome::Lost) => EndReason::LeaseLost {
                lease_until: Some(last.lease_until),
                given_back: true,
            },
            Some(Outcome::Succeeded) => EndReason::Exit {
                code: last.exit_code.unwrap_or(0),
            },
            Some(Outcome::Failed) | None => process(last.exit_code, last.signal.as_deref()),
        }),
        ClaimState::Closed => match &rec.result {
            Some((_, r)) if r.attempt == last.attempt => Some(of_result(rec, r, Some(last))),
            // A closed claim whose result is missing (a crash split the change): the next
            // writer records it as lost.
            _ => Some(EndReason::LeaseLost {
                lease_until: Some(last.lease_until),
                given_back: false,
            }),
        },
        // A later attempt took over without this one releasing: its lease was lost.
        ClaimState::Running | ClaimState::Heartbeat if superseded => Some(EndReason::LeaseLost {
            lease_until: Some(last.lease_until),
            given_back: false,
        }),
        ClaimState::Running | ClaimState::Heartbeat => None,
    }
}

/// Why the latest claim's attempt ended (`jobs show`'s `claim.ended`): as [`of_attempt`],
/// and a live-looking claim of a job that ended is the job's own reason (its last attempt
/// lost its lease, or it was cancelled while it ran on another node).
pub fn of_latest(rec: &JobRecord, now: Timestamp, skew: gatos_types::Dur) -> Option<EndReason> {
    let (_, last) = rec.claim.as_ref()?;
    match of_attempt(rec, last, false) {
        Some(r) => Some(r),
        None => {
            let d = state::derive(rec, now, skew);
            d.lost_final.then_some(EndReason::LeaseLost {
                lease_until: Some(last.lease_until),
                given_back: false,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_as_their_lines() {
        let lines = [
            (EndReason::Exit { code: 2 }, "exit 2"),
            (
                EndReason::Signal {
                    signal: "SIGKILL".into(),
                },
                "killed by SIGKILL",
            ),
            (
                EndReason::Timeout { limit_secs: 30 },
                "timeout after 30 s (limit)",
            ),
            (
                EndReason::Cancelled {
                    by: Some("cli:alice".into()),
                    reason: Some("wrong branch".into()),
                    at: None,
                },
                "cancelled by cli:alice: \"wrong branch\"",
            ),
        ];
        let newer: EndReason =
            serde_json::from_str(r#"{"kind":"oom","limit_mib":512}"#).expect("still reads");
        assert_eq!(newer, EndReason::Other);
        for (r, line) in lines {
            assert_eq!(r.to_string(), line);
            let json = serde_json::to_value(&r).expect("json");
            assert_eq!(json["kind"], r.kind());
            let back: EndReason = serde_json::from_value(json).expect("reads back");
            assert_eq!(back, r);
        }
        assert_eq!(gatos_types::jobs::signal_name(9), "SIGKILL");
        assert_eq!(gatos_types::jobs::signal_name(15), "SIGTERM");
        assert_eq!(gatos_types::jobs::signal_name(40), "SIG40");
    }
}
