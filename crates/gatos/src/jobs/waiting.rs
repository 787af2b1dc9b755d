//! What a pending job waits for: `jobs show` (checked against no particular worker),
//! `jobs why` (against a worker's options) and a draining worker's last word (what is
//! pending that it does not take).
//!
//! The conditions are what a claim checks (DESIGN §4, ADR 0019): the job's queue, its
//! required capabilities, its `secret://` references, its `run_after`, a failed attempt's
//! retry delay, and its enqueuer's trust; the queue's admission limit (ADR 0027) is
//! reported too, although it only refuses new enqueues and never holds back an admitted
//! job. [`conditions`] is the pure rule; [`explain`] gathers the facts from the refs and
//! this node's trust.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use gatos_types::jobs::{ClaimState, JobState, Outcome, QueueDepth, WaitCondition, WaitKind};
use gatos_types::{Capability, Dur, ErrorCode, KeyId, Queue, Timestamp, Ulid};

use super::enqueuer::{self, Verdict};
use super::records::JobRecord;
use super::{admission, ready, state};
use crate::Gatos;
use crate::error::{Error, Result};

/// The options of a worker a job is checked against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerSpec {
    /// Queues it takes (empty: `default`, as a worker's own default).
    pub queues: Vec<Queue>,
    /// Capabilities it offers.
    pub caps: Vec<Capability>,
    /// Names of the secrets it resolves; `None`: not known, so not checked.
    pub secrets: Option<Vec<String>>,
    /// It runs jobs whatever their enqueuer (`--allow-untrusted-enqueuers`).
    pub allow_untrusted_enqueuers: bool,
}

impl WorkerSpec {
    /// The queues it takes, `default` when none were given.
    pub fn queues(&self) -> Vec<Queue> {
        if self.queues.is_empty() {
            vec![Queue::default_queue()]
        } else {
            self.queues.clone()
        }
    }

    fn takes(&self, queue: &Queue) -> bool {
        takes(&self.queues, queue)
    }

    fn lacks(&self, needed: &[Capability]) -> Vec<Capability> {
        lacks(&self.caps, needed).cloned().collect()
    }

    /// [`route`] for this worker; secrets it is not known to resolve are not checked.
    fn route(&self, queue: &Queue, needs: &[Capability], secrets: &[String]) -> Option<Miss> {
        let resolves = |s: &str| {
            self.secrets
                .as_ref()
                .is_none_or(|h| h.iter().any(|x| x == s))
        };
        route(&self.queues, &self.caps, &resolves, queue, needs, secrets)
    }

    /// The secrets of `needed` it cannot resolve; `None` when its secrets are not known.
    fn unresolved(&self, needed: &[String]) -> Option<Vec<String>> {
        self.secrets.as_ref().map(|have| {
            unresolved(&|s: &str| have.iter().any(|h| h == s), needed)
                .cloned()
                .collect()
        })
    }
}

// The routing rule of DESIGN §4, once: a worker claims only jobs of its queues (default
// `default`) whose required capabilities are a subset of its own and whose secrets it can
// resolve. The claim path (`lifecycle`) filters with [`route`]; the explanations here list
// every miss.

/// Whether a worker taking `queues` (empty: `default`) takes `queue`.
fn takes(queues: &[Queue], queue: &Queue) -> bool {
    if queues.is_empty() {
        *queue == Queue::default_queue()
    } else {
        queues.contains(queue)
    }
}

/// The capabilities of `needed` a worker offering `caps` lacks.
fn lacks<'a>(
    caps: &'a [Capability],
    needed: &'a [Capability],
) -> impl Iterator<Item = &'a Capability> {
    needed.iter().filter(|c| !caps.contains(c))
}

/// The secrets of `needed` that `resolves` cannot resolve.
pub(crate) fn unresolved<'a>(
    resolves: &'a dyn Fn(&str) -> bool,
    needed: &'a [String],
) -> impl Iterator<Item = &'a String> {
    needed.iter().filter(|s| !resolves(s))
}

/// Whether `resolves` resolves every secret of `needed` (the secrets part of [`route`]).
pub(crate) fn resolvable(resolves: &dyn Fn(&str) -> bool, needed: &[String]) -> bool {
    unresolved(resolves, needed).next().is_none()
}

/// Why a worker's routing passes a job over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    /// The job's queue is not one it takes.
    Queue,
    /// It lacks this capability (the first the job needs that it lacks).
    Capability(Capability),
    /// It cannot resolve this secret (the first).
    Secret(String),
}

/// The routing rule: the first reason a worker taking `queues` (empty: `default`),
/// offering `caps` and resolving secrets as `resolves` says passes over a job of `queue`
/// that needs `needs` and uses `secrets`; `None` when its routing takes the job.
pub fn route(
    queues: &[Queue],
    caps: &[Capability],
    resolves: &dyn Fn(&str) -> bool,
    queue: &Queue,
    needs: &[Capability],
    secrets: &[String],
) -> Option<Miss> {
    if !takes(queues, queue) {
        return Some(Miss::Queue);
    }
    if let Some(c) = lacks(caps, needs).next() {
        return Some(Miss::Capability(c.clone()));
    }
    unresolved(resolves, secrets)
        .next()
        .map(|s| Miss::Secret(s.clone()))
}

/// A failed attempt's retry delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The attempt that ended.
    pub attempt: u32,
    /// How it ended.
    pub outcome: Option<Outcome>,
    /// The job may be claimed again from this time.
    pub available_at: Timestamp,
}

/// A job's enqueuer as this node judges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnqueuerFacts {
    /// Who, and whether trusted here, in a few words.
    pub said: String,
    /// The key that signed the enqueue.
    pub key: Option<KeyId>,
    /// Why a worker that does not allow untrusted enqueuers does not run it.
    pub strict: Option<String>,
    /// Why even a worker that allows them does not (a bad signature).
    pub always: Option<String>,
    /// This node's config lets its workers run jobs whatever their enqueuer.
    pub allowed_by_config: bool,
}

/// What the refs and this node say about a pending job: the input of [`conditions`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// Now.
    pub now: Timestamp,
    /// The job's queue.
    pub queue: Queue,
    /// Its required capabilities.
    pub caps: Vec<Capability>,
    /// Its secret references' names.
    pub secrets: Vec<String>,
    /// Its `run_after`.
    pub run_after: Option<Timestamp>,
    /// The retry delay of its last attempt, when one failed with attempts left.
    pub backoff: Option<Backoff>,
    /// Its enqueuer (`None`: not checked).
    pub enqueuer: Option<EnqueuerFacts>,
    /// Its queue's admission limit and depth, when the queue has a limit.
    pub admission: Option<QueueDepth>,
}

/// "in 4m", or "passed" for a time not after `now`: seconds under a minute (rounded up,
/// so never "in 0s"), else the nearest whole minutes, hours (from 60 minutes) or days
/// (from 48 hours).
pub fn about(at: Timestamp, now: Timestamp) -> String {
    if at <= now {
        return "passed".to_owned();
    }
    let secs = (at.as_millis() - now.as_millis() + 999) / 1000;
    let nearest = |per: i64| (secs + per / 2) / per;
    if secs < 60 {
        format!("in {secs}s")
    } else if nearest(60) < 60 {
        format!("in {}m", nearest(60))
    } else if nearest(3600) < 48 {
        format!("in {}h", nearest(3600))
    } else {
        format!("in {}d", nearest(86_400))
    }
}

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn refs(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("secret://{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a pending job waits for, checked against worker `w`, or against no particular
/// worker (`None`: what depends on the worker has `blocks: null`). In the order queue,
/// capabilities, secrets, enqueuer, `run_after`, backoff, admission.
pub fn conditions(f: &Facts, w: Option<&WorkerSpec>) -> Vec<WaitCondition> {
    let mut out = Vec::new();
    let mut push = |kind, blocks, detail: String, until, values| {
        out.push(WaitCondition {
            kind,
            blocks,
            detail,
            until,
            values,
        });
    };
    let q = &f.queue;
    let (blocks, detail) = match w {
        None => (
            None,
            format!("{q}: claimed by a worker that takes it (git gatos worker --queue {q})"),
        ),
        Some(w) if w.takes(q) => (Some(false), format!("{q}: this worker takes it")),
        Some(w) => (
            Some(true),
            format!("{q}: this worker takes {}", list(&w.queues())),
        ),
    };
    push(WaitKind::Queue, blocks, detail, None, vec![q.to_string()]);

    if !f.caps.is_empty() {
        let needed = list(&f.caps);
        let (blocks, detail) = match w {
            None => {
                let flags: Vec<String> = f.caps.iter().map(|c| format!("--cap {c}")).collect();
                (
                    None,
                    format!(
                        "{needed}: a worker must offer them all (git gatos worker {})",
                        flags.join(" ")
                    ),
                )
            }
            Some(w) => {
                let lacks = w.lacks(&f.caps);
                if lacks.is_empty() {
                    (Some(false), format!("{needed}: this worker offers them"))
                } else {
                    (
                        Some(true),
                        format!("{needed}: this worker lacks {}", list(&lacks)),
                    )
                }
            }
        };
        let values = f.caps.iter().map(ToString::to_string).collect();
        push(WaitKind::Capabilities, blocks, detail, None, values);
    }

    if !f.secrets.is_empty() {
        let named = refs(&f.secrets);
        let (blocks, detail) = match w.map(|w| w.unresolved(&f.secrets)) {
            None => (
                None,
                format!(
                    "{named}: the claiming worker resolves them from its own sources (--secrets, --secrets-dir, --secret-env); this node cannot tell which worker can"
                ),
            ),
            Some(None) => (
                None,
                format!(
                    "{named}: not checked (give the worker's --secret NAME, --secrets FILE, --secrets-dir DIR or --secret-env NAME)"
                ),
            ),
            Some(Some(missing)) if missing.is_empty() => {
                (Some(false), format!("{named}: this worker resolves them"))
            }
            Some(Some(missing)) => (
                Some(true),
                format!("{named}: this worker cannot resolve {}", list(&missing)),
            ),
        };
        push(WaitKind::Secrets, blocks, detail, None, f.secrets.clone());
    }

    if let Some(e) = &f.enqueuer {
        let allow = e.allowed_by_config || w.is_some_and(|w| w.allow_untrusted_enqueuers);
        let reason = if allow { &e.always } else { &e.strict };
        let detail = match (reason, &e.strict) {
            (Some(r), _) => r.clone(),
            (None, Some(_)) => {
                let who = if w.is_some_and(|w| w.allow_untrusted_enqueuers) {
                    "this worker allows untrusted enqueuers"
                } else {
                    "this node's workers allow untrusted enqueuers (gatos.worker.allowUntrustedEnqueuers)"
                };
                format!("{}; run anyway: {who}", e.said)
            }
            (None, None) => e.said.clone(),
        };
        let values = e.key.iter().map(ToString::to_string).collect();
        push(
            WaitKind::Enqueuer,
            Some(reason.is_some()),
            detail,
            None,
            values,
        );
    }

    if let Some(at) = f.run_after {
        push(
            WaitKind::RunAfter,
            Some(at > f.now),
            format!("{at} ({})", about(at, f.now)),
            Some(at),
            Vec::new(),
        );
    }

    if let Some(b) = f.backoff {
        let how = b.outcome.map_or("released", Outcome::as_str);
        push(
            WaitKind::Backoff,
            Some(b.available_at > f.now),
            format!(
                "attempt {} ended ({how}); retried from {} ({})",
                b.attempt,
                b.available_at,
                about(b.available_at, f.now)
            ),
            Some(b.available_at),
            Vec::new(),
        );
    }

    if let Some(d) = &f.admission
        && let Some(max) = d.max_pending
    {
        let detail = if d.pending >= max {
            format!(
                "queue {} holds {}, its limit is {max}: new enqueues are refused (QueueFull); this job is admitted and waits for no slot",
                d.queue,
                plural(d.pending, "pending job", "pending jobs")
            )
        } else {
            format!(
                "queue {}: {} of at most {max} pending; the limit refuses new enqueues only",
                d.queue, d.pending
            )
        };
        push(
            WaitKind::Admission,
            Some(false),
            detail,
            None,
            vec![d.queue.to_string()],
        );
    }
    out
}

/// Why nothing waits for a job that is not pending (`None` for a pending one).
pub fn not_waiting(rec: &JobRecord, state: JobState, now: Timestamp) -> Option<String> {
    match state {
        JobState::Pending => None,
        JobState::Running => Some(match &rec.claim {
            Some((_, c)) => format!(
                "running: attempt {} by {}, lease until {} ({}); nothing waits",
                c.attempt,
                c.worker,
                c.lease_until,
                about(c.lease_until, now)
            ),
            None => "running; nothing waits".to_owned(),
        }),
        done => Some(format!(
            "{}: the job has ended; nothing waits (git gatos jobs show {})",
            done.as_str(),
            rec.id
        )),
    }
}

fn enqueuer_facts(gatos: &Gatos, rec: &JobRecord) -> Result<EnqueuerFacts> {
    let v = enqueuer::check(gatos, rec.id, rec.job_commit)?;
    let strict = enqueuer::blocker(gatos, rec.id, rec.job_commit, false)?.and_then(|b| b.reason());
    let always = match &v {
        Verdict::Invalid(_) => v.reason(),
        _ => None,
    };
    let (said, key) = match &v {
        Verdict::Trusted(s) => (
            format!(
                "enqueued by {} ({}), a key this node trusts",
                s.enqueuer.key, s.enqueuer.actor
            ),
            Some(s.enqueuer.key),
        ),
        Verdict::Untrusted(s) => (
            format!(
                "enqueued by {} ({}), a key this node does not trust",
                s.enqueuer.key, s.enqueuer.actor
            ),
            Some(s.enqueuer.key),
        ),
        Verdict::Unsigned if strict.is_none() => (
            "unsigned, held here before signed enqueues: it may run unsigned".to_owned(),
            None,
        ),
        Verdict::Unsigned => ("unsigned".to_owned(), None),
        Verdict::Invalid(why) => (format!("enqueuer signature invalid: {why}"), None),
    };
    Ok(EnqueuerFacts {
        said,
        key,
        strict,
        always,
        allowed_by_config: enqueuer::allowed_by_config(gatos),
    })
}

/// Gathers the facts of a job's record: its manifest, its last claim, its enqueuer's
/// trust here, its queue's admission limit.
///
/// # Errors
/// When the job commit, the trust record or the ready index cannot be read.
pub fn facts(gatos: &Gatos, rec: &JobRecord) -> Result<Facts> {
    let backoff = rec.claim.as_ref().and_then(|(_, c)| {
        (c.state == ClaimState::Released)
            .then_some(c.available_at)
            .flatten()
            .map(|available_at| Backoff {
                attempt: c.attempt,
                outcome: c.outcome,
                available_at,
            })
    });
    Ok(Facts {
        now: gatos.now(),
        queue: rec.spec.queue.clone(),
        caps: rec.spec.required_capabilities.clone(),
        secrets: rec.spec.secret_refs.clone(),
        run_after: rec.spec.run_after,
        backoff,
        enqueuer: if rec.archived {
            None
        } else {
            Some(enqueuer_facts(gatos, rec)?)
        },
        admission: admission::limited_depth(gatos, &rec.spec.queue)?,
    })
}

/// A job's state and what it waits for, checked against a worker (or none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The job.
    pub id: Ulid,
    /// Its state now.
    pub state: JobState,
    /// What it waits for (empty unless pending).
    pub conditions: Vec<WaitCondition>,
    /// Why nothing waits, when the job is not pending.
    pub note: Option<String>,
}

impl Explanation {
    /// Whether a condition keeps the job from being claimed now.
    pub fn is_blocked(&self) -> bool {
        self.conditions.iter().any(|c| c.blocks == Some(true))
    }
}

/// Explains job `id`: its state, and when pending what it waits for, checked against `w`.
///
/// # Errors
/// `NotFound` for an unknown job; a failure to read its refs.
pub fn explain(gatos: &Gatos, id: Ulid, w: Option<&WorkerSpec>) -> Result<Explanation> {
    let rec = gatos.jobs().record(id)?.ok_or_else(|| {
        Error::new(
            ErrorCode::NotFound,
            format!("job {id} does not exist (nor in the archive)"),
        )
    })?;
    let now = gatos.now();
    let d = state::derive(&rec, now, gatos.lease_skew());
    let conditions = if d.state == JobState::Pending {
        conditions(&facts(gatos, &rec)?, w)
    } else {
        Vec::new()
    };
    Ok(Explanation {
        id,
        state: d.state,
        conditions,
        note: not_waiting(&rec, d.state, now),
    })
}

/// What is pending that a worker does not claim: what a draining worker says when it
/// finds nothing more it may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdleReport {
    /// The queues the worker takes.
    pub takes: Vec<Queue>,
    /// Pending jobs in queues it does not take, by queue.
    pub other_queues: BTreeMap<Queue, u64>,
    /// Pending jobs of its queues that need a capability it lacks, by the first such one.
    pub missing_caps: BTreeMap<Capability, u64>,
    /// Pending jobs of its queues that use a secret it cannot resolve, by the first one.
    pub unresolved_secrets: BTreeMap<String, u64>,
    /// Pending jobs of its queues whose enqueuer it does not run, with the first of them.
    pub untrusted: Option<(u64, Ulid)>,
    /// Pending jobs it could run that become claimable only after it stops waiting: how
    /// many, and the earliest time.
    pub later: Option<(u64, Timestamp)>,
    /// How long the worker waits for a job that becomes claimable.
    pub horizon: Dur,
    /// When the report was made.
    pub now: Timestamp,
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl IdleReport {
    /// An empty report for a worker taking `takes`.
    pub fn new(takes: Vec<Queue>, horizon: Dur, now: Timestamp) -> IdleReport {
        IdleReport {
            takes,
            other_queues: BTreeMap::new(),
            missing_caps: BTreeMap::new(),
            unresolved_secrets: BTreeMap::new(),
            untrusted: None,
            later: None,
            horizon,
            now,
        }
    }

    /// Tells whether nothing is pending that the worker did not take.
    pub fn is_empty(&self) -> bool {
        self.other_queues.is_empty()
            && self.missing_caps.is_empty()
            && self.unresolved_secrets.is_empty()
            && self.untrusted.is_none()
            && self.later.is_none()
    }

    /// One line naming what is pending elsewhere, e.g. `3 pending in queue build; this
    /// worker takes default`; `None` when nothing is.
    pub fn line(&self) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        let mut parts = Vec::new();
        if !self.other_queues.is_empty() {
            let queues: Vec<String> = self
                .other_queues
                .iter()
                .map(|(q, n)| format!("{n} pending in queue {q}"))
                .collect();
            parts.push(queues.join(", "));
            parts.push(format!("this worker takes {}", list(&self.takes)));
        }
        for (c, n) in &self.missing_caps {
            parts.push(format!(
                "{} capability {c}",
                if *n == 1 {
                    "1 pending job needs".to_owned()
                } else {
                    format!("{n} pending jobs need")
                }
            ));
        }
        for (s, n) in &self.unresolved_secrets {
            parts.push(format!(
                "{} secret://{s}, which this worker cannot resolve",
                if *n == 1 {
                    "1 pending job uses".to_owned()
                } else {
                    format!("{n} pending jobs use")
                }
            ));
        }
        if let Some((n, first)) = self.untrusted {
            parts.push(format!(
                "{} enqueued by a key this node does not trust (git gatos jobs why {first})",
                plural(n, "pending job", "pending jobs")
            ));
        }
        if let Some((n, at)) = self.later {
            parts.push(format!(
                "{} claimable from {at} ({}); --drain waits at most {}",
                if n == 1 {
                    "1 job becomes".to_owned()
                } else {
                    format!("{n} jobs become")
                },
                about(at, self.now),
                self.horizon
            ));
        }
        let mut s = String::from("nothing more to claim: ");
        let _ = write!(s, "{}", parts.join("; "));
        Some(s)
    }

    /// What a draining worker that ran `ran` attempts says last: [`IdleReport::line`], or
    /// for one that ran nothing and found nothing pending, that no job is pending in its
    /// queues; `None` when there is nothing to say.
    pub fn last_word(&self, ran: u64) -> Option<String> {
        self.line().or_else(|| {
            (ran == 0).then(|| {
                format!(
                    "nothing to claim: no job is pending in {}",
                    list(&self.takes)
                )
            })
        })
    }
}

/// What is pending in the ready index that worker `w` would not claim now or within
/// `horizon` (jobs claimed by someone are left out).
///
/// # Errors
/// When the ready index or a job commit cannot be read.
pub fn idle_report(gatos: &Gatos, w: &WorkerSpec, horizon: Dur) -> Result<IdleReport> {
    let now = gatos.now();
    let until = now.plus(horizon);
    let allow = w.allow_untrusted_enqueuers || enqueuer::allowed_by_config(gatos);
    let mut r = IdleReport::new(w.queues(), horizon, now);
    for e in ready::Ready::new(gatos).entries()? {
        if !ready::is_pending(&e) {
            continue;
        }
        match w.route(&e.queue, &e.caps, &e.secrets) {
            Some(Miss::Queue) => {
                *r.other_queues.entry(e.queue.clone()).or_default() += 1;
                continue;
            }
            Some(Miss::Capability(c)) => {
                *r.missing_caps.entry(c).or_default() += 1;
                continue;
            }
            Some(Miss::Secret(s)) => {
                *r.unresolved_secrets.entry(s).or_default() += 1;
                continue;
            }
            None => {}
        }
        let commit = gatos
            .store()
            .read_ref(&gatos_store::refs::names::job(e.id))?;
        if let Some(commit) = commit
            && enqueuer::blocker(gatos, e.id, commit, allow)?.is_some()
        {
            let (n, first) = r.untrusted.unwrap_or((0, e.id));
            r.untrusted = Some((n + 1, first.min(e.id)));
            continue;
        }
        if e.not_before > until {
            let (n, at) = r.later.unwrap_or((0, e.not_before));
            r.later = Some((n + 1, at.min(e.not_before)));
        }
    }
    Ok(r)
}

/// The pending job a worker waits for when the next one it may run becomes claimable at
/// `at`: the job, and its conditions that block until then.
///
/// # Errors
/// When the ready index or the job's refs cannot be read.
pub fn next_wait(
    gatos: &Gatos,
    w: &WorkerSpec,
    at: Timestamp,
) -> Result<Option<(Ulid, Vec<WaitCondition>)>> {
    let entry = ready::Ready::new(gatos).entries()?.into_iter().find(|e| {
        ready::is_pending(e)
            && e.not_before == at
            && w.route(&e.queue, &e.caps, &e.secrets).is_none()
    });
    let Some(e) = entry else {
        return Ok(None);
    };
    let x = explain(gatos, e.id, Some(w))?;
    Ok(Some((
        e.id,
        x.conditions
            .into_iter()
            .filter(|c| c.blocks == Some(true) && c.until.is_some())
            .collect(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).expect("a valid time")
    }

    fn q(s: &str) -> Queue {
        s.parse().expect("a valid queue")
    }

    fn cap(s: &str) -> Capability {
        s.parse().expect("a valid capability")
    }

    fn facts() -> Facts {
        Facts {
            now: t("2026-12-04T10:00:00Z"),
            queue: q("build"),
            caps: vec![cap("gpu")],
            secrets: vec!["TOKEN".into()],
            run_after: Some(t("2026-12-04T10:04:00Z")),
            backoff: None,
            enqueuer: Some(EnqueuerFacts {
                said: "enqueued by k (cli:a), a key this node does not trust".into(),
                key: None,
                strict: Some("not trusted".into()),
                always: None,
                allowed_by_config: false,
            }),
            admission: None,
        }
    }

    fn by_kind(cs: &[WaitCondition], k: WaitKind) -> Option<&WaitCondition> {
        cs.iter().find(|c| c.kind == k)
    }

    #[test]
    fn routing_names_the_first_miss_queue_then_capability_then_secret() {
        let default = Queue::default_queue();
        let has_token = |s: &str| s == "TOKEN";
        let none = |_: &str| false;
        let needs = [cap("gpu"), cap("arm")];
        let secrets = ["TOKEN".to_owned()];
        // No queues given: `default` only.
        assert_eq!(route(&[], &[], &none, &default, &[], &[]), None);
        assert_eq!(
            route(&[], &[], &none, &q("build"), &[], &[]),
            Some(Miss::Queue)
        );
        assert_eq!(
            route(
                &[q("build")],
                &[cap("gpu")],
                &none,
                &q("build"),
                &needs,
                &secrets
            ),
            Some(Miss::Capability(cap("arm")))
        );
        let all = [cap("arm"), cap("gpu"), cap("x")];
        assert_eq!(
            route(&[q("build")], &all, &none, &q("build"), &needs, &secrets),
            Some(Miss::Secret("TOKEN".into()))
        );
        assert_eq!(
            route(
                &[q("build")],
                &all,
                &has_token,
                &q("build"),
                &needs,
                &secrets
            ),
            None
        );
    }

    #[test]
    fn relative_times_round_up_and_past_ones_have_passed() {
        let now = t("2026-12-04T10:00:00Z");
        assert_eq!(about(now, now), "passed");
        assert_eq!(about(t("2026-12-04T09:00:00Z"), now), "passed");
        assert_eq!(about(now.plus(Dur::from_millis(1)), now), "in 1s");
        assert_eq!(about(now.plus(Dur::from_secs(59)), now), "in 59s");
        assert_eq!(about(now.plus(Dur::from_secs(90)), now), "in 2m");
        assert_eq!(about(now.plus(Dur::from_secs(210)), now), "in 4m");
        assert_eq!(about(now.plus(Dur::from_millis(599_500)), now), "in 10m");
        assert_eq!(about(now.plus(Dur::from_millis(3_599_900)), now), "in 1h");
        assert_eq!(about(now.plus(Dur::from_secs(3 * 3600)), now), "in 3h");
        assert_eq!(about(now.plus(Dur::from_secs(3 * 86_400)), now), "in 3d");
    }

    #[test]
    fn without_a_worker_what_depends_on_it_is_open_and_time_and_trust_are_decided() {
        let cs = conditions(&facts(), None);
        let kinds: Vec<&str> = cs.iter().map(|c| c.kind.as_str()).collect();
        assert_eq!(
            kinds,
            ["queue", "capabilities", "secrets", "enqueuer", "run_after"]
        );
        for k in [WaitKind::Queue, WaitKind::Capabilities, WaitKind::Secrets] {
            assert_eq!(by_kind(&cs, k.clone()).map(|c| c.blocks), Some(None), "{k}");
        }
        let ra = by_kind(&cs, WaitKind::RunAfter).expect("run_after");
        assert_eq!(ra.blocks, Some(true));
        assert!(ra.detail.ends_with("(in 4m)"), "{}", ra.detail);
        assert_eq!(ra.until, Some(t("2026-12-04T10:04:00Z")));
        let en = by_kind(&cs, WaitKind::Enqueuer).expect("enqueuer");
        assert_eq!((en.blocks, en.detail.as_str()), (Some(true), "not trusted"));
        assert!(
            by_kind(&cs, WaitKind::Capabilities)
                .is_some_and(|c| c.detail.contains("--cap gpu") && c.values == ["gpu"])
        );
    }

    #[test]
    fn against_a_worker_each_condition_blocks_or_passes() {
        let f = facts();
        let lacking = WorkerSpec::default();
        let cs = conditions(&f, Some(&lacking));
        let blocks = |cs: &[WaitCondition], k| by_kind(cs, k).and_then(|c| c.blocks);
        assert_eq!(blocks(&cs, WaitKind::Queue), Some(true));
        assert!(
            by_kind(&cs, WaitKind::Queue)
                .is_some_and(|c| c.detail == "build: this worker takes default")
        );
        assert_eq!(blocks(&cs, WaitKind::Capabilities), Some(true));
        // Secrets not given: not checked.
        assert_eq!(blocks(&cs, WaitKind::Secrets), None);

        let fitting = WorkerSpec {
            queues: vec![q("build")],
            caps: vec![cap("gpu"), cap("docker")],
            secrets: Some(vec!["TOKEN".into()]),
            allow_untrusted_enqueuers: true,
        };
        let mut later = f.clone();
        later.now = t("2026-12-04T10:05:00Z");
        let cs = conditions(&later, Some(&fitting));
        assert!(cs.iter().all(|c| c.blocks == Some(false)), "{cs:#?}");
        assert!(by_kind(&cs, WaitKind::RunAfter).is_some_and(|c| c.detail.ends_with("(passed)")));
        assert!(
            by_kind(&cs, WaitKind::Enqueuer)
                .is_some_and(|c| c.detail.ends_with("this worker allows untrusted enqueuers"))
        );

        let no_secret = WorkerSpec {
            secrets: Some(Vec::new()),
            ..fitting
        };
        let cs = conditions(&later, Some(&no_secret));
        assert_eq!(blocks(&cs, WaitKind::Secrets), Some(true));
    }

    #[test]
    fn a_bad_signature_blocks_even_a_worker_that_allows_untrusted_enqueuers() {
        let mut f = facts();
        f.enqueuer = Some(EnqueuerFacts {
            said: "enqueuer signature invalid: x".into(),
            key: None,
            strict: Some("enqueuer signature invalid: x".into()),
            always: Some("enqueuer signature invalid: x".into()),
            allowed_by_config: true,
        });
        let w = WorkerSpec {
            allow_untrusted_enqueuers: true,
            ..WorkerSpec::default()
        };
        let cs = conditions(&f, Some(&w));
        assert_eq!(
            by_kind(&cs, WaitKind::Enqueuer).and_then(|c| c.blocks),
            Some(true)
        );
    }

    #[test]
    fn backoff_and_admission_are_reported_and_admission_never_blocks() {
        let mut f = facts();
        f.backoff = Some(Backoff {
            attempt: 1,
            outcome: Some(Outcome::Failed),
            available_at: t("2026-12-04T10:00:12Z"),
        });
        f.admission = Some(QueueDepth {
            queue: q("build"),
            pending: 5,
            running: 0,
            max_pending: Some(5),
        });
        let cs = conditions(&f, None);
        let b = by_kind(&cs, WaitKind::Backoff).expect("backoff");
        assert_eq!(b.blocks, Some(true));
        assert_eq!(
            b.detail,
            "attempt 1 ended (failed); retried from 2026-12-04T10:00:12Z (in 12s)"
        );
        let a = by_kind(&cs, WaitKind::Admission).expect("admission");
        assert_eq!(a.blocks, Some(false));
        assert!(
            a.detail.contains("5 pending jobs, its limit is 5"),
            "{}",
            a.detail
        );
    }

    #[test]
    fn the_idle_line_names_what_is_pending_elsewhere() {
        let now = t("2026-12-04T10:00:00Z");
        let mut r = IdleReport::new(vec![Queue::default_queue()], Dur::from_secs(600), now);
        assert_eq!(r.line(), None);
        assert_eq!(
            r.last_word(0).as_deref(),
            Some("nothing to claim: no job is pending in default")
        );
        assert_eq!(r.last_word(2), None);
        r.other_queues.insert(q("build"), 3);
        assert_eq!(
            r.line().as_deref(),
            Some("nothing more to claim: 3 pending in queue build; this worker takes default")
        );
        r.other_queues.insert(q("deploy"), 1);
        assert_eq!(
            r.line().as_deref(),
            Some(
                "nothing more to claim: 3 pending in queue build, 1 pending in queue deploy; this worker takes default"
            )
        );
        r.other_queues.clear();
        r.missing_caps.insert(cap("gpu"), 2);
        r.later = Some((1, t("2026-12-04T12:00:00Z")));
        assert_eq!(
            r.line().as_deref(),
            Some(
                "nothing more to claim: 2 pending jobs need capability gpu; 1 job becomes claimable from 2026-12-04T12:00:00Z (in 2h); --drain waits at most 10m"
            )
        );
        r.missing_caps.insert(cap("gpu"), 1);
        r.later = None;
        assert_eq!(
            r.line().as_deref(),
            Some("nothing more to claim: 1 pending job needs capability gpu")
        );
    }
}
