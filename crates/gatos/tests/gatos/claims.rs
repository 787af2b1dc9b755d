//! The claim state machine (ADR 0012, ADR 0022) as a property test.
//!
//! The transitions are not a pure function: they are the library's `claim`, `heartbeat`,
//! `finish` and `cancel` on a real repository, so each case is a temporary repository and a
//! fixed clock, driven by a random sequence of events — claims by three workers, heartbeats
//! and finishes with any lease the test ever held (stale, duplicated, out of order), forged
//! tokens and attempts, cancels, and clock moves that land on and just past lease ends. A
//! small reference model predicts what each call answers; after every event the refs are
//! read back and checked:
//! - each call answers what the model predicts, and a refusal writes nothing;
//! - the derived state is a function of the refs (the model's state, from this handle's
//!   record and from a fresh handle's);
//! - at most one result, never replaced, closing the claim chain's `closed` tip of its
//!   attempt;
//! - nothing is written after `closed`;
//! - the chain is linear, starts with attempt 1, attempts rise by exactly one per `running`
//!   commit and the holder never changes within an attempt;
//! - a takeover only after the lease expired (`claimed_at > lease_until + skew`), a retry
//!   only from its `available_at`.

use std::sync::Arc;

use gatos::Gatos;
use gatos::clock::FixedClock;
use gatos::jobs::lifecycle::{ClaimOptions, Finish, claim_chain, closed_claim_of_result};
use gatos::jobs::{Lease, state};
use gatos_testutil::{TempRepo, TestResult};
use gatos_types::jobs::{ClaimDoc, ClaimState, JobState, LeaseToken, Outcome, Status};
use gatos_types::{Dur, ErrorCode, Oid, Timestamp, Ulid, WorkerId};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::support::open_at;

const T0: &str = "2026-11-23T10:00:00Z";
const LEASE: Dur = Dur::from_secs(3);
const WORKERS: usize = 3;

/// One event of a job's life, as a worker, a client or time produces it.
#[derive(Debug, Clone)]
enum Event {
    /// Worker `n` tries to claim the job.
    Claim(usize),
    /// The holder of lease `n` (modulo the leases held so far) heartbeats.
    Heartbeat(usize),
    /// The holder of lease `n` ends its attempt.
    Finish(usize, Outcome),
    /// Someone cancels the job.
    Cancel,
    /// A heartbeat with lease `n`'s names but another (or no) token.
    ForgedToken(usize, bool),
    /// A heartbeat for the attempt after lease `n`'s, with its token.
    NextAttempt(usize),
    /// Time passes.
    Advance(Dur),
}

fn event() -> impl Strategy<Value = Event> {
    let outcome = prop_oneof![
        Just(Outcome::Succeeded),
        Just(Outcome::Failed),
        Just(Outcome::Timeout),
        Just(Outcome::Lost),
        Just(Outcome::Cancelled),
    ];
    // On and around the lease end (3 s), and past the longest backoff of a few attempts.
    let step = prop_oneof![
        Just(0u64),
        Just(1),
        Just(999),
        Just(1_000),
        Just(1_001),
        Just(2_999),
        Just(3_000),
        Just(3_001),
        Just(10_000),
        Just(700_000),
    ];
    prop_oneof![
        4 => (0..WORKERS).prop_map(Event::Claim),
        3 => any::<usize>().prop_map(Event::Heartbeat),
        3 => (any::<usize>(), outcome).prop_map(|(n, o)| Event::Finish(n, o)),
        1 => Just(Event::Cancel),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(n, none)| Event::ForgedToken(n, none)),
        1 => any::<usize>().prop_map(Event::NextAttempt),
        4 => step.prop_map(|ms| Event::Advance(Dur::from_millis(ms))),
    ]
}

/// The claim chain's tip, as the model sees it.
#[derive(Debug, Clone)]
struct Tip {
    attempt: u32,
    worker: WorkerId,
    state: ClaimState,
    lease_until: Timestamp,
    available_at: Option<Timestamp>,
    token: LeaseToken,
}

/// What the refs should say.
#[derive(Debug, Clone)]
struct Model {
    max_attempts: u32,
    tip: Option<Tip>,
    result: Option<Status>,
    cancelled: bool,
}

/// What the model derives (DESIGN §4, written out again from the design, not the code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Said {
    state: JobState,
    attempt: u32,
    lost_final: bool,
    claimable_at: Option<Timestamp>,
}

impl Model {
    fn derive(&self, now: Timestamp) -> Said {
        let attempt = self.tip.as_ref().map_or(0, |t| t.attempt);
        let said = |state, lost_final, claimable_at| Said {
            state,
            attempt,
            lost_final,
            claimable_at,
        };
        if let Some(s) = self.result {
            let state = match s {
                Status::Succeeded => JobState::Succeeded,
                Status::Failed => JobState::Failed,
            };
            return said(state, false, None);
        }
        if self.cancelled {
            return said(JobState::Cancelled, false, None);
        }
        let Some(t) = &self.tip else {
            return said(JobState::Pending, false, Some(Timestamp::EPOCH));
        };
        let left = t.attempt < self.max_attempts;
        match t.state {
            ClaimState::Running | ClaimState::Heartbeat if now <= t.lease_until => {
                said(JobState::Running, false, None)
            }
            ClaimState::Running | ClaimState::Heartbeat if left => {
                said(JobState::Pending, false, Some(t.lease_until))
            }
            ClaimState::Released if left => said(
                JobState::Pending,
                false,
                Some(t.available_at.unwrap_or(t.lease_until)),
            ),
            _ => said(JobState::Failed, true, None),
        }
    }

    /// What `heartbeat` and `finish` check first: the tip is this lease's live attempt,
    /// there is no result, and the token is the attempt's.
    fn own(&self, lease: &Lease) -> Result<&Tip, ErrorCode> {
        let tip = self.tip.as_ref().ok_or(ErrorCode::LeaseExpired)?;
        if tip.worker != lease.worker
            || tip.attempt != lease.attempt
            || !matches!(tip.state, ClaimState::Running | ClaimState::Heartbeat)
            || self.result.is_some()
        {
            return Err(ErrorCode::LeaseExpired);
        }
        if lease.token.as_ref() != Some(&tip.token) {
            return Err(ErrorCode::Forbidden);
        }
        Ok(tip)
    }

    /// The state the job is in after an attempt ends with `outcome`, and whether the claim
    /// is released (else closed with a result).
    fn ends(&self, attempt: u32, outcome: Outcome) -> bool {
        match outcome {
            Outcome::Succeeded => false,
            Outcome::Cancelled => true,
            Outcome::Failed | Outcome::Timeout | Outcome::Lost => attempt < self.max_attempts,
        }
    }
}

/// The refs of the job, read with git.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Refs {
    claim: Option<String>,
    result: Option<String>,
    cancel: Option<String>,
}

fn refs(repo: &TempRepo, id: Ulid) -> TestResult<Refs> {
    Ok(Refs {
        claim: repo.rev_parse(&format!("refs/gatos/jobs/{id}/claim"))?,
        result: repo.rev_parse(&format!("refs/gatos/jobs/{id}/result"))?,
        cancel: repo.rev_parse(&format!("refs/gatos/jobs/{id}/cancel"))?,
    })
}

struct Case {
    repo: TempRepo,
    g: Gatos,
    clock: Arc<FixedClock>,
    id: Ulid,
    model: Model,
    leases: Vec<Lease>,
    /// The result ref once written: it never changes.
    result: Option<String>,
    /// The claim ref once `closed`: it never moves again.
    closed: Option<String>,
}

fn worker(g: &Gatos, n: usize) -> TestResult<ClaimOptions> {
    Ok(ClaimOptions {
        worker: format!("worker-{n}").parse()?,
        worker_key: g.keys().current(),
        queues: Vec::new(),
        caps: Vec::new(),
        lease: LEASE,
        can_resolve: None,
        allow_untrusted_enqueuers: false,
    })
}

fn exit_code(outcome: Outcome) -> Option<i32> {
    match outcome {
        Outcome::Succeeded => Some(0),
        Outcome::Failed => Some(1),
        Outcome::Timeout | Outcome::Lost | Outcome::Cancelled => None,
    }
}

fn code<T>(r: &gatos::Result<T>) -> Result<(), ErrorCode> {
    r.as_ref().map(|_| ()).map_err(gatos::Error::code)
}

impl Case {
    fn new(max_attempts: u32) -> TestResult<Case> {
        let repo = TempRepo::new()?;
        let (g, clock) = open_at(&repo, T0)?;
        g.keys().init(false)?;
        let spec = gatos::jobs::manifest::normalize(
            gatos::jobs::manifest::from_value(serde_json::json!({
                "command": ["true"],
                "max_attempts": max_attempts,
            }))?,
            g.now(),
        )?;
        let id = g.jobs().enqueue(spec)?.id;
        Ok(Case {
            repo,
            g,
            clock,
            id,
            model: Model {
                max_attempts,
                tip: None,
                result: None,
                cancelled: false,
            },
            leases: Vec::new(),
            result: None,
            closed: None,
        })
    }

    fn lease(&self, n: usize) -> Option<Lease> {
        (!self.leases.is_empty()).then(|| self.leases[n % self.leases.len()].clone())
    }

    /// Reads the claim chain's tip document.
    fn tip_doc(&self) -> TestResult<Option<ClaimDoc>> {
        Ok(self
            .g
            .jobs()
            .record(self.id)?
            .and_then(|r| r.claim.map(|(_, d)| d)))
    }

    /// Runs one event; checks its answer against the model and moves the model on.
    fn step(&mut self, ev: &Event) -> TestResult {
        let now = self.g.now();
        let before = refs(&self.repo, self.id)?;
        // What the call answered, what the model predicted, and whether it wrote.
        let (got, want): (Result<(), ErrorCode>, Result<(), ErrorCode>);
        match ev {
            Event::Advance(d) => {
                self.clock.advance(*d);
                return Ok(());
            }
            Event::Claim(n) => {
                let said = self.model.derive(now);
                want = if self.model.result.is_some() || self.model.cancelled {
                    Err(ErrorCode::Conflict)
                } else if said.lost_final {
                    // The first to see a lost last attempt closes it with a `lost` result.
                    Err(ErrorCode::Conflict)
                } else if said.state == JobState::Running {
                    Err(ErrorCode::AlreadyClaimed)
                } else if said.claimable_at.is_some_and(|t| t > now) {
                    Err(ErrorCode::Conflict)
                } else {
                    Ok(())
                };
                let res = self.g.jobs().claim(self.id, &worker(&self.g, *n)?);
                got = code(&res);
                if let Ok(lease) = res {
                    assert_eq!(lease.attempt, said.attempt + 1, "a claim is attempt + 1");
                    assert_eq!(lease.lease_until, now.plus(LEASE));
                    self.model.tip = Some(Tip {
                        attempt: lease.attempt,
                        worker: lease.worker.clone(),
                        state: ClaimState::Running,
                        lease_until: lease.lease_until,
                        available_at: None,
                        token: lease.token.clone().ok_or("a new claim has a token")?,
                    });
                    self.leases.push(lease);
                } else if said.lost_final && want == got {
                    self.model.result = Some(Status::Failed);
                    if let Some(t) = self.model.tip.as_mut() {
                        t.state = ClaimState::Closed;
                    }
                }
            }
            Event::Heartbeat(n) | Event::ForgedToken(n, _) | Event::NextAttempt(n) => {
                let Some(mut lease) = self.lease(*n) else {
                    return Ok(());
                };
                match ev {
                    Event::ForgedToken(_, none) => {
                        lease.token = (!none).then(|| LeaseToken::from_bytes([7; 32]));
                    }
                    Event::NextAttempt(_) => lease.attempt += 1,
                    _ => {}
                }
                want = self.model.own(&lease).map(drop);
                let res = self.g.jobs().heartbeat(&mut lease);
                got = code(&res);
                if res.is_ok() {
                    assert_eq!(lease.lease_until, now.plus(LEASE));
                    let tip = self.model.tip.as_mut().ok_or("a tip")?;
                    tip.state = ClaimState::Heartbeat;
                    tip.lease_until = lease.lease_until;
                    if let Some(held) = self
                        .leases
                        .iter_mut()
                        .find(|l| l.attempt == lease.attempt && l.worker == lease.worker)
                    {
                        *held = lease;
                    }
                }
            }
            Event::Finish(n, outcome) => {
                let Some(lease) = self.lease(*n) else {
                    return Ok(());
                };
                want = match self.model.own(&lease).map(drop) {
                    // `cancelled` ends only a job a cancel names.
                    Ok(()) if *outcome == Outcome::Cancelled && !self.model.cancelled => {
                        Err(ErrorCode::Conflict)
                    }
                    w => w,
                };
                let res = self.g.jobs().finish(
                    &lease,
                    &Finish {
                        outcome: *outcome,
                        exit_code: exit_code(*outcome),
                        signal: None,
                        stdout: format!("attempt {}\n", lease.attempt).into_bytes(),
                        stderr: Vec::new(),
                        outputs: Vec::new(),
                        poe: None,
                    },
                );
                got = code(&res);
                if let Ok(finished) = &res {
                    let released = self.model.ends(lease.attempt, *outcome);
                    if released {
                        let doc = self.tip_doc()?.ok_or("a released claim")?;
                        assert_eq!(doc.state, ClaimState::Released);
                        assert_eq!(doc.outcome, Some(*outcome));
                        let at = doc.available_at.ok_or("a release says when")?;
                        if matches!(outcome, Outcome::Cancelled | Outcome::Lost) {
                            assert_eq!(at, now, "{outcome:?} is claimable at once");
                        } else {
                            // min(1 s · 2^(attempt−1), 10 min) ± 20 %.
                            let exp = lease.attempt.saturating_sub(1).min(30);
                            let raw = (1_000u64 << exp).min(600_000);
                            let wait = at.since(now).as_millis();
                            assert!(
                                wait >= raw * 8 / 10 && wait <= raw * 12 / 10,
                                "backoff {wait} ms after attempt {}",
                                lease.attempt
                            );
                        }
                        let tip = self.model.tip.as_mut().ok_or("a tip")?;
                        tip.state = ClaimState::Released;
                        tip.available_at = Some(at);
                    } else {
                        self.model.result = Some(if *outcome == Outcome::Succeeded {
                            Status::Succeeded
                        } else {
                            Status::Failed
                        });
                        self.model.tip.as_mut().ok_or("a tip")?.state = ClaimState::Closed;
                    }
                    assert_eq!(
                        finished.state,
                        self.model.derive(now).state,
                        "finish answers the state the refs now give ({outcome:?}, \
                         attempt {} of {}, cancelled: {})",
                        lease.attempt,
                        self.model.max_attempts,
                        self.model.cancelled
                    );
                }
            }
            Event::Cancel => {
                let said = self.model.derive(now);
                want = match said.state {
                    JobState::Succeeded | JobState::Failed => Err(ErrorCode::Conflict),
                    JobState::Pending | JobState::Running | JobState::Cancelled => Ok(()),
                };
                let res = self.g.jobs().cancel(self.id, None);
                got = code(&res);
                if res.is_ok() {
                    self.model.cancelled = true;
                }
            }
        }
        assert_eq!(got, want, "{ev:?} at {now}; model {:?}", self.model);
        let after = refs(&self.repo, self.id)?;
        let lost_close = matches!(ev, Event::Claim(_)) && self.model.result.is_some();
        if got.is_err() && !lost_close {
            assert_eq!(before, after, "the refused {ev:?} wrote nothing");
        }
        self.check(now)
    }

    /// The invariants, read back from the refs.
    fn check(&mut self, now: Timestamp) -> TestResult {
        let refs = refs(&self.repo, self.id)?;
        // At most one result, never replaced.
        if let Some(r) = &self.result {
            assert_eq!(refs.result.as_ref(), Some(r), "a result is never replaced");
        }
        self.result.clone_from(&refs.result);
        // Nothing after `closed`.
        if let Some(c) = &self.closed {
            assert_eq!(
                refs.claim.as_ref(),
                Some(c),
                "nothing moves the claim after closed"
            );
        }
        // The state is a function of the refs: the model's, and any handle's.
        let rec = self.g.jobs().record(self.id)?.ok_or("the job exists")?;
        let d = state::derive(&rec, now, self.g.lease_skew());
        let said = self.model.derive(now);
        assert_eq!(
            (d.state, d.attempt, d.lost_final),
            (said.state, said.attempt, said.lost_final),
            "derived from the refs vs the model {:?}",
            self.model
        );
        if d.state == JobState::Pending && self.model.tip.is_some() {
            assert_eq!(d.claimable_at, said.claimable_at);
        }
        assert_eq!(self.g.jobs().show(self.id)?.state, d.state);
        // The chain, oldest first.
        let Some((tip, tip_doc)) = &rec.claim else {
            assert!(rec.result.is_none(), "no result without a claim");
            return Ok(());
        };
        let mut chain = claim_chain(&self.g, *tip, None)?;
        chain.reverse();
        assert_eq!(&chain.last().ok_or("a chain")?.doc, tip_doc);
        let first = &chain[0];
        assert_eq!(
            (first.doc.state, first.doc.attempt, first.parent),
            (ClaimState::Running, 1, None),
            "the chain starts with a first claim"
        );
        for pair in chain.windows(2) {
            let (old, new) = (&pair[0], &pair[1]);
            assert_eq!(new.parent, Some(old.commit), "one linear chain");
            let (o, n) = (&old.doc, &new.doc);
            assert_ne!(o.state, ClaimState::Closed, "nothing after closed");
            if n.state == ClaimState::Running {
                assert_eq!(n.attempt, o.attempt + 1, "attempts rise by one");
                match o.state {
                    ClaimState::Running | ClaimState::Heartbeat => assert!(
                        n.claimed_at > o.lease_until.plus(self.g.lease_skew()),
                        "a takeover at {} of a lease live until {}",
                        n.claimed_at,
                        o.lease_until
                    ),
                    ClaimState::Released => assert!(
                        n.claimed_at >= o.available_at.unwrap_or(o.lease_until),
                        "a retry at {} before {:?}",
                        n.claimed_at,
                        o.available_at
                    ),
                    ClaimState::Closed => unreachable!("checked above"),
                }
            } else {
                assert_eq!(n.attempt, o.attempt, "{:?} stays in its attempt", n.state);
                assert_eq!(
                    (&n.worker, n.worker_key, &n.lease_token_hash),
                    (&o.worker, o.worker_key, &o.lease_token_hash),
                    "the holder never changes within an attempt"
                );
                let follows_release = o.state == ClaimState::Released;
                assert!(
                    !follows_release || n.state == ClaimState::Closed,
                    "only a takeover or a lost close follows a release, not {:?}",
                    n.state
                );
            }
        }
        if tip_doc.state == ClaimState::Closed {
            self.closed = Some(tip.to_string());
        }
        // A result closes the chain's tip, of its own attempt.
        if let Some((result, doc)) = &rec.result {
            let (closed, cdoc) =
                closed_claim_of_result(&self.g, *result)?.ok_or("the result closes a claim")?;
            assert_eq!(closed, *tip, "the result's claim is the chain's tip");
            assert_eq!(
                (cdoc.state, cdoc.attempt),
                (ClaimState::Closed, doc.attempt)
            );
        } else {
            assert_ne!(
                tip_doc.state,
                ClaimState::Closed,
                "closed comes with its result"
            );
        }
        Ok(())
    }

    /// At the end: a fresh handle (no caches) derives the same, and git is happy.
    fn finish(self) -> TestResult {
        let fresh = crate::support::open(&self.repo)?;
        let now = self.g.now();
        let rec = fresh.jobs().record(self.id)?.ok_or("the job exists")?;
        let d = state::derive(&rec, now, fresh.lease_skew());
        assert_eq!(
            d.state,
            self.model.derive(now).state,
            "a fresh handle agrees"
        );
        let oid: Option<Oid> = rec.claim.map(|(c, _)| c);
        assert_eq!(oid.map(|o| o.to_string()), refs(&self.repo, self.id)?.claim);
        // Every journaled event a commit first: git fsck must not race a flusher writing
        // (fsck lists objects before it reads refs, so a ref moved meanwhile names an
        // object it calls missing).
        self.g.flush_journals()?;
        drop(fresh);
        self.repo.assert_fsck_strict()?;
        Ok(())
    }
}

fn run(max_attempts: u32, events: &[Event]) -> TestResult {
    let mut case = Case::new(max_attempts)?;
    for ev in events {
        case.step(ev)?;
    }
    case.finish()
}

proptest! {
    #![proptest_config(ProptestConfig {
        // Each case is a repository and a few dozen ref transactions: keep a 2-core CI
        // in mind.
        cases: 64,
        max_shrink_iters: 512,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_claim_state_machine_keeps_its_invariants(
        max_attempts in 1u32..4,
        events in proptest::collection::vec(event(), 1..32),
    ) {
        // A failed assertion panics inside; proptest catches it and shrinks the events.
        run(max_attempts, &events).map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
}

/// The walks the property test may take a while to find, spelled out.
#[test]
fn fixed_walks_through_the_state_machine() -> TestResult {
    use Event::*;
    let s = |ms| Advance(Dur::from_millis(ms));
    let walks: Vec<(u32, Vec<Event>)> = vec![
        // Claim, heartbeat past the first lease, succeed; everything after is refused.
        (
            3,
            vec![
                Claim(0),
                s(2_000),
                Heartbeat(0),
                s(2_000),
                Finish(0, Outcome::Succeeded),
                Claim(1),
                Heartbeat(0),
                Finish(0, Outcome::Failed),
                Cancel,
            ],
        ),
        // Takeover exactly at the lease end is refused, a millisecond later allowed; the
        // old holder is fenced.
        (
            3,
            vec![
                Claim(0),
                s(3_000),
                Claim(1),
                s(1),
                Claim(1),
                Heartbeat(0),
                Finish(0, Outcome::Succeeded),
                Finish(1, Outcome::Succeeded),
            ],
        ),
        // Failures with backoff until attempts are exhausted.
        (
            2,
            vec![
                Claim(0),
                Finish(0, Outcome::Failed),
                Claim(1),
                s(700_000),
                Claim(1),
                Finish(1, Outcome::Timeout),
                Claim(2),
            ],
        ),
        // The last attempt loses its lease: the next claimer writes the lost result.
        (
            1,
            vec![Claim(0), s(3_001), Claim(1), Heartbeat(0), Claim(2)],
        ),
        // Forged tokens and attempts are refused and write nothing.
        (
            3,
            vec![
                Claim(0),
                ForgedToken(0, false),
                ForgedToken(0, true),
                NextAttempt(0),
                Heartbeat(0),
            ],
        ),
        // `finish` answers the state the refs give: a failure with attempts left under a
        // cancel is cancelled, not pending; an attempt ended as cancelled with no cancel
        // ref is refused (`Conflict`, ADR 0048) and the attempt goes on.
        (
            3,
            vec![Claim(0), Cancel, Finish(0, Outcome::Failed), Claim(1)],
        ),
        (3, vec![Claim(0), Finish(0, Outcome::Cancelled), Claim(1)]),
        (
            1,
            vec![Claim(0), Finish(0, Outcome::Cancelled), Cancel, Claim(1)],
        ),
        // Cancelled while running: the worker's release keeps it cancelled.
        (
            3,
            vec![
                Claim(0),
                Cancel,
                Heartbeat(0),
                Finish(0, Outcome::Cancelled),
                Claim(1),
            ],
        ),
    ];
    for (max, events) in walks {
        run(max, &events)?;
    }
    Ok(())
}
