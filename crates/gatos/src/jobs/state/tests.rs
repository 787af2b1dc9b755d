//! Every branch of [`derive`], on records built by hand (DESIGN §4, ADR 0012), including
//! combinations gatos never writes but a crash, a sync or a hand edit can leave.

use gatos_types::jobs::{CancelDoc, ClaimDoc, ClaimState, JobState, Outcome, ResultDoc, Status};
use gatos_types::{Digest, Dur, Oid, Timestamp, Ulid};
use proptest::prelude::*;

use super::{Derived, derive};
use crate::jobs::manifest;
use crate::jobs::records::JobRecord;

const T0: i64 = 1_800_000_000_000;
const LEASE: Dur = Dur::from_secs(30);

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(T0 + ms)
}

fn id() -> Ulid {
    "01ARZ3NDEKTSV4RRFFQ69G5FAV".parse().expect("a valid ULID")
}

/// A job with `max_attempts` and, optionally, `run_after`; no claim, result or cancel.
fn job(max_attempts: u32, run_after: Option<Timestamp>) -> JobRecord {
    let mut input = manifest::from_value(serde_json::json!({
        "command": ["true"],
        "max_attempts": max_attempts,
    }))
    .expect("a valid manifest");
    input.run_after = run_after.map(|t| t.to_string());
    let spec = manifest::normalize(input, at(0)).expect("it normalizes");
    assert_eq!(spec.run_after, run_after, "run_after is kept as given");
    JobRecord {
        id: id(),
        job_commit: Oid::from_bytes([1; 20]),
        content_id: Digest::of(b"job"),
        spec,
        claim: None,
        claim_at: None,
        result: None,
        cancel: None,
        archived: false,
    }
}

fn claim_doc(state: ClaimState, attempt: u32, lease_until: Timestamp) -> ClaimDoc {
    ClaimDoc {
        job: id(),
        attempt,
        worker: "w1".parse().expect("a valid worker id"),
        worker_key: None,
        state,
        lease_until,
        claimed_at: lease_until.minus(LEASE),
        outcome: None,
        exit_code: None,
        signal: None,
        available_at: None,
        lease_token_hash: None,
    }
}

fn with_claim(mut rec: JobRecord, doc: ClaimDoc) -> JobRecord {
    rec.claim = Some((Oid::from_bytes([2; 20]), doc));
    rec
}

fn released(
    attempt: u32,
    lease_until: Timestamp,
    outcome: Outcome,
    available_at: Option<Timestamp>,
) -> ClaimDoc {
    ClaimDoc {
        outcome: Some(outcome),
        exit_code: Some(1),
        available_at,
        ..claim_doc(ClaimState::Released, attempt, lease_until)
    }
}

fn with_result(mut rec: JobRecord, status: Status, attempt: u32) -> JobRecord {
    rec.result = Some((
        Oid::from_bytes([3; 20]),
        ResultDoc {
            status,
            exit_code: Some(i32::from(status == Status::Failed)),
            attempt,
            reason: None,
            signal: None,
        },
    ));
    rec
}

fn with_cancel(mut rec: JobRecord) -> JobRecord {
    rec.cancel = Some((
        Oid::from_bytes([4; 20]),
        CancelDoc {
            job: id(),
            actor: "tester".into(),
            requested_at: at(0),
            reason: None,
        },
    ));
    rec
}

fn pending(attempt: u32, claimable_at: Timestamp) -> Derived {
    Derived {
        state: JobState::Pending,
        attempt,
        claimable_at: Some(claimable_at),
        lost_final: false,
    }
}

fn settled(state: JobState, attempt: u32) -> Derived {
    Derived {
        state,
        attempt,
        claimable_at: None,
        lost_final: false,
    }
}

fn lost(attempt: u32) -> Derived {
    Derived {
        state: JobState::Failed,
        attempt,
        claimable_at: None,
        lost_final: true,
    }
}

#[test]
fn a_new_job_is_pending_at_attempt_0_from_the_epoch_or_its_run_after() {
    assert_eq!(
        derive(&job(3, None), at(0), Dur::ZERO),
        pending(0, Timestamp::EPOCH)
    );
    let later = at(60_000);
    assert_eq!(
        derive(&job(3, Some(later)), at(0), Dur::ZERO),
        pending(0, later),
        "claimable only from run_after, but pending already"
    );
    assert_eq!(
        derive(&job(1, Some(later)), at(120_000), Dur::ZERO),
        pending(0, later)
    );
}

#[test]
fn a_result_decides_whatever_else_the_refs_say() {
    let live = claim_doc(ClaimState::Running, 1, at(30_000));
    for status in [Status::Succeeded, Status::Failed] {
        let want = if status == Status::Succeeded {
            JobState::Succeeded
        } else {
            JobState::Failed
        };
        // With the closed claim it was written with.
        let closed = with_claim(job(3, None), claim_doc(ClaimState::Closed, 1, at(0)));
        assert_eq!(
            derive(&with_result(closed, status, 1), at(0), Dur::ZERO),
            settled(want, 1)
        );
        // A result without any claim (an imported or hand-made one).
        assert_eq!(
            derive(&with_result(job(3, None), status, 2), at(0), Dur::ZERO),
            settled(want, 2)
        );
        // A live claim after a result: the result still decides, and the attempt is the
        // larger of the two.
        let rec = with_result(with_claim(job(3, None), live.clone()), status, 1);
        assert_eq!(derive(&rec, at(0), Dur::ZERO), settled(want, 1));
        let takeover = claim_doc(ClaimState::Running, 2, at(30_000));
        let rec = with_result(with_claim(job(3, None), takeover), status, 1);
        assert_eq!(derive(&rec, at(0), Dur::ZERO), settled(want, 2));
        // A cancel before or after the result changes nothing.
        let rec = with_cancel(with_result(
            with_claim(job(3, None), live.clone()),
            status,
            1,
        ));
        assert_eq!(derive(&rec, at(0), Dur::ZERO), settled(want, 1));
        // Attempts exhausted, lease long gone: still the result, never `lost_final`.
        let rec = with_result(
            with_claim(job(1, None), claim_doc(ClaimState::Heartbeat, 1, at(0))),
            status,
            1,
        );
        assert_eq!(derive(&rec, at(3_600_000), Dur::ZERO), settled(want, 1));
    }
}

#[test]
fn a_cancel_decides_when_there_is_no_result() {
    assert_eq!(
        derive(&with_cancel(job(3, None)), at(0), Dur::ZERO),
        settled(JobState::Cancelled, 0)
    );
    // Cancelled while running, the lease still live: cancelled, not running.
    let rec = with_cancel(with_claim(
        job(3, None),
        claim_doc(ClaimState::Heartbeat, 2, at(30_000)),
    ));
    assert_eq!(
        derive(&rec, at(0), Dur::ZERO),
        settled(JobState::Cancelled, 2)
    );
    // The worker noticed and released the attempt as cancelled.
    let rec = with_cancel(with_claim(
        job(3, None),
        released(2, at(0), Outcome::Cancelled, Some(at(0))),
    ));
    assert_eq!(
        derive(&rec, at(0), Dur::ZERO),
        settled(JobState::Cancelled, 2)
    );
    // The last attempt lost its lease: the cancel still wins over `lost_final`.
    let rec = with_cancel(with_claim(
        job(1, None),
        claim_doc(ClaimState::Running, 1, at(0)),
    ));
    assert_eq!(
        derive(&rec, at(3_600_000), Dur::ZERO),
        settled(JobState::Cancelled, 1)
    );
    // A `closed` claim without its result (a split final change) under a cancel.
    let rec = with_cancel(with_claim(
        job(3, None),
        claim_doc(ClaimState::Closed, 1, at(0)),
    ));
    assert_eq!(
        derive(&rec, at(0), Dur::ZERO),
        settled(JobState::Cancelled, 1)
    );
}

#[test]
fn a_lease_is_live_through_lease_until_plus_skew_inclusive() {
    for state in [ClaimState::Running, ClaimState::Heartbeat] {
        let until = at(30_000);
        let rec = with_claim(job(3, None), claim_doc(state, 1, until));
        let running = settled(JobState::Running, 1);
        assert_eq!(derive(&rec, at(0), Dur::ZERO), running);
        assert_eq!(
            derive(&rec, until, Dur::ZERO),
            running,
            "{state:?} at the end"
        );
        assert_eq!(
            derive(&rec, until.plus(Dur::from_millis(1)), Dur::ZERO),
            pending(1, until),
            "{state:?} one millisecond later: claimable since the lease ended"
        );
        // The skew widens the lease, inclusive too.
        let skew = Dur::from_secs(5);
        assert_eq!(derive(&rec, until.plus(skew), skew), running);
        assert_eq!(
            derive(&rec, until.plus(skew).plus(Dur::from_millis(1)), skew),
            pending(1, until)
        );
        // A clock behind the claim (another node's) sees it running.
        assert_eq!(derive(&rec, at(-3_600_000), Dur::ZERO), running);
    }
}

#[test]
fn an_expired_lease_is_claimable_at_once_while_attempts_remain_and_lost_after() {
    let until = at(30_000);
    let late = at(3_600_000);
    // Attempt 1 of 3 and 2 of 3: claimable at once (from when the lease ended), ignoring
    // any backoff — a lost lease is not a failure.
    for attempt in [1, 2] {
        let rec = with_claim(
            job(3, None),
            claim_doc(ClaimState::Heartbeat, attempt, until),
        );
        assert_eq!(derive(&rec, late, Dur::ZERO), pending(attempt, until));
    }
    // The last attempt: failed, and the first worker to see it writes the `lost` result.
    let rec = with_claim(job(3, None), claim_doc(ClaimState::Running, 3, until));
    assert_eq!(derive(&rec, late, Dur::ZERO), lost(3));
    // An attempt beyond max_attempts (a chain no honest writer makes): failed, not pending.
    let rec = with_claim(job(2, None), claim_doc(ClaimState::Running, 5, until));
    assert_eq!(derive(&rec, late, Dur::ZERO), lost(5));
    // ... but while its lease is live it is running like any other.
    assert_eq!(
        derive(&rec, at(0), Dur::ZERO),
        settled(JobState::Running, 5)
    );
    // The lease ended before run_after (a clock moved): claimable once it did end.
    let after = at(60_000);
    let rec = with_claim(
        job(3, Some(after)),
        claim_doc(ClaimState::Running, 1, until),
    );
    assert_eq!(derive(&rec, late, Dur::ZERO), pending(1, until));
}

#[test]
fn a_released_attempt_waits_for_its_backoff_and_run_after() {
    let until = at(30_000);
    let avail = at(40_000);
    for outcome in [Outcome::Failed, Outcome::Timeout, Outcome::Lost] {
        let rec = with_claim(job(3, None), released(1, until, outcome, Some(avail)));
        // Before, at and after available_at: pending, claimable from available_at; time
        // does not change the answer.
        for now in [at(0), avail, at(3_600_000)] {
            assert_eq!(
                derive(&rec, now, Dur::ZERO),
                pending(1, avail),
                "{outcome:?}"
            );
        }
    }
    // run_after later than available_at wins.
    let ra = at(50_000);
    let rec = with_claim(
        job(3, Some(ra)),
        released(1, until, Outcome::Failed, Some(avail)),
    );
    assert_eq!(derive(&rec, at(0), Dur::ZERO), pending(1, ra));
    // No available_at (an older writer): from the lease end.
    let rec = with_claim(job(3, None), released(2, until, Outcome::Failed, None));
    assert_eq!(derive(&rec, at(0), Dur::ZERO), pending(2, until));
    // A release with outcome `cancelled` but no cancel ref: pending again, at once.
    let rec = with_claim(
        job(3, None),
        released(1, until, Outcome::Cancelled, Some(until)),
    );
    assert_eq!(derive(&rec, at(0), Dur::ZERO), pending(1, until));
}

#[test]
fn a_release_of_the_last_attempt_is_failed_lost_final() {
    let until = at(30_000);
    let rec = with_claim(
        job(2, None),
        released(2, until, Outcome::Failed, Some(at(31_000))),
    );
    assert_eq!(derive(&rec, at(0), Dur::ZERO), lost(2));
    assert_eq!(derive(&rec, at(3_600_000), Dur::ZERO), lost(2));
    let rec = with_claim(job(1, None), released(1, until, Outcome::Lost, None));
    assert_eq!(derive(&rec, at(0), Dur::ZERO), lost(1));
}

#[test]
fn a_closed_claim_without_a_result_is_a_split_final_change() {
    // Whatever the attempts left and the time: failed, and the result is owed.
    for (max, attempt) in [(3, 1), (3, 3), (1, 1)] {
        let rec = with_claim(
            job(max, None),
            claim_doc(ClaimState::Closed, attempt, at(0)),
        );
        for now in [at(-1_000), at(0), at(3_600_000)] {
            assert_eq!(derive(&rec, now, Dur::ZERO), lost(attempt));
        }
    }
}

/// Any claim document a chain may end with, honest or not.
fn any_claim() -> impl Strategy<Value = ClaimDoc> {
    let state = prop_oneof![
        Just(ClaimState::Running),
        Just(ClaimState::Heartbeat),
        Just(ClaimState::Released),
        Just(ClaimState::Closed),
    ];
    let outcome = prop_oneof![
        Just(Outcome::Failed),
        Just(Outcome::Timeout),
        Just(Outcome::Lost),
        Just(Outcome::Cancelled),
    ];
    (
        state,
        1u32..6,
        -100_000i64..100_000,
        outcome,
        proptest::option::of(-100_000i64..100_000),
    )
        .prop_map(|(state, attempt, until, outcome, avail)| {
            let mut d = claim_doc(state, attempt, at(until));
            if state == ClaimState::Released {
                d.outcome = Some(outcome);
                d.available_at = avail.map(at);
            }
            d
        })
}

fn any_record() -> impl Strategy<Value = JobRecord> {
    (
        1u32..5,
        proptest::option::of(-100_000i64..100_000),
        proptest::option::of(any_claim()),
        proptest::option::of((any::<bool>(), 1u32..6)),
        any::<bool>(),
    )
        .prop_map(|(max, run_after, claim, result, cancel)| {
            let mut rec = job(max, run_after.map(at));
            if let Some(c) = claim {
                rec = with_claim(rec, c);
            }
            if let Some((ok, attempt)) = result {
                let status = if ok {
                    Status::Succeeded
                } else {
                    Status::Failed
                };
                rec = with_result(rec, status, attempt);
            }
            if cancel {
                rec = with_cancel(rec);
            }
            rec
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// The order of DESIGN §4, and the shape of what it returns, for any record at any
    /// time: the result, then the cancel, then the lease, then the attempts.
    #[test]
    fn derive_follows_the_design_order(
        rec in any_record(),
        now in -200_000i64..200_000,
        skew in 0u64..10_000,
    ) {
        let (now, skew) = (at(now), Dur::from_millis(skew));
        let d = derive(&rec, now, skew);
        prop_assert_eq!(d, derive(&rec, now, skew), "a function of its inputs");
        let claim_attempt = rec.claim.as_ref().map_or(0, |(_, c)| c.attempt);
        prop_assert!(d.attempt >= claim_attempt);
        prop_assert_eq!(d.claimable_at.is_some(), d.state == JobState::Pending);
        prop_assert!(!d.lost_final || (d.state == JobState::Failed && rec.result.is_none()));
        if let Some((_, r)) = &rec.result {
            let want = match r.status {
                Status::Succeeded => JobState::Succeeded,
                Status::Failed => JobState::Failed,
            };
            prop_assert_eq!(d.state, want);
            prop_assert_eq!(d.attempt, r.attempt.max(claim_attempt));
        } else if rec.cancel.is_some() {
            prop_assert_eq!(d.state, JobState::Cancelled);
        } else {
            prop_assert_eq!(d.attempt, claim_attempt);
            let live = rec.claim.as_ref().is_some_and(|(_, c)| {
                matches!(c.state, ClaimState::Running | ClaimState::Heartbeat)
                    && now <= c.lease_until.plus(skew)
            });
            prop_assert_eq!(d.state == JobState::Running, live);
            if d.state == JobState::Failed {
                prop_assert!(d.lost_final, "no result: only a lost last attempt fails");
            }
            if let Some((_, c)) = &rec.claim {
                if c.state == ClaimState::Closed {
                    prop_assert_eq!(d, lost(c.attempt));
                } else if !live {
                    prop_assert_eq!(
                        d.state == JobState::Pending,
                        c.attempt < rec.spec.max_attempts
                    );
                }
            }
        }
    }

    /// Once a job is not running, time changes nothing but a live lease ending: the answer
    /// at any later time is the same (a pending job's claimable time does not drift).
    #[test]
    fn derive_is_stable_once_no_lease_is_live(
        rec in any_record(),
        now in -200_000i64..200_000,
        later in 0i64..1_000_000,
        skew in 0u64..10_000,
    ) {
        let skew = Dur::from_millis(skew);
        let d = derive(&rec, at(now), skew);
        if d.state != JobState::Running {
            prop_assert_eq!(derive(&rec, at(now + later), skew), d);
        }
    }
}
