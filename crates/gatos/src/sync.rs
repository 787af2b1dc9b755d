//! Replication through a Git remote (DESIGN §5, ADR 0015).
//!
//! `sync` fetches the remote's `refs/gatos/*` into `refs/gatos-sync/<remote>/*`,
//! reconciles every kind of ref with the local one, changes the local refs (each by CAS,
//! in a recoverable order) and pushes what the hub lacks, with a lease on every ref it
//! pushes. A lost race at the hub is retried by another round (fetch, reconcile, push), up
//! to five, each topic on its own; what still fails is reported and retried by the next
//! sync. The remote is only ever written with `git push --force-with-lease`, so nothing
//! the hub gained meanwhile is overwritten.
//!
//! What wins, by kind:
//! * **topics**: fast-forward either way; when both appended, this node's messages after
//!   the fork point that the hub does not already have (by ULID) are appended again after
//!   the hub's, with the checkpoints that pointed at them moved back to the fork point;
//! * **summaries** (prune): the chain that prunes further wins, unless the hub holds other
//!   messages at seqs this node pruned past the hub's bound (then the hub's stands, and the
//!   heads wait for a round that checks the hub's messages past its bound); pruned sealed
//!   segments are deleted on both sides and never adopted again;
//! * **checkpoints**: the furthest position;
//! * **create-only refs** (jobs, cancels, sealed segments, keys, revocations): the same
//!   tree is the same thing (the hub's commit is adopted); a different tree is a conflict,
//!   reported and left alone;
//! * **CAS chains** (manifests, settings): fast-forward, else the hub's value and the local
//!   one reported; **archives** fold again what only this node folded;
//! * **claims and results**: the hub's; a local claim that lost is abandoned (its worker
//!   stops at its next heartbeat) and audited.

mod jobs;
mod topics;
pub mod validate;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use gatos_store::Expect;
use gatos_store::refs::{Edit, Options, RefName, names};
use gatos_store::remote::{PushRef, PushReport, PushStatus, is_valid_remote_name};
use gatos_types::sync::{SyncConflict, SyncReport, TopicAction};
use gatos_types::{ErrorCode, Oid, Topic};

use crate::Gatos;
use crate::error::Result;

/// Why a sync (or a remote's choice) failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No remote has this name.
    #[error("no remote named '{name}' (git remote add {name} URL)")]
    NoSuchRemote {
        /// The name asked for.
        name: String,
    },
    /// The repository has no remote.
    #[error("this repository has no remote to sync with (git remote add origin URL)")]
    NoRemote,
    /// Several remotes, none named `origin`, and none asked for.
    #[error("several remotes and none is origin: name one ({})", remotes.join(", "))]
    SeveralRemotes {
        /// The remotes.
        remotes: Vec<String>,
    },
    /// A remote name that cannot be part of a tracking ref.
    #[error("remote name '{name}' cannot be used for tracking refs (letters, digits, . _ -)")]
    BadRemoteName {
        /// The name.
        name: String,
    },
    /// A strict sync met conflicts or rejected refs (the whole report is the `report`
    /// detail).
    #[error(
        "{} conflict(s) and {} rejected ref(s) with {} (a strict sync): {}",
        report.conflicts.len(),
        report.rejected_count,
        report.remote,
        report
            .conflicts
            .iter()
            .map(|c| c.name.as_str())
            .chain(report.rejected.iter().map(|r| r.name.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    )]
    Strict {
        /// What the sync did.
        report: Box<SyncReport>,
    },
    /// A hub-arbitrated worker's check of the hub's refs of a job rejected one.
    #[error("the hub's {name} was rejected [{}]: {reason}", code.as_str())]
    HubRejected {
        /// The ref.
        name: String,
        /// Why, as a code.
        code: ErrorCode,
        /// Why.
        reason: String,
    },
}

impl gatos_types::Coded for Error {
    fn code(&self) -> ErrorCode {
        match self {
            Error::NoSuchRemote { .. } | Error::NoRemote => ErrorCode::NotFound,
            Error::SeveralRemotes { .. } | Error::BadRemoteName { .. } => ErrorCode::InvalidInput,
            Error::Strict { .. } | Error::HubRejected { .. } => ErrorCode::Conflict,
        }
    }

    fn details(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut d = serde_json::Map::new();
        match self {
            Error::Strict { report } => {
                d.insert(
                    "report".into(),
                    serde_json::to_value(report).unwrap_or_default(),
                );
            }
            Error::NoSuchRemote { .. }
            | Error::NoRemote
            | Error::SeveralRemotes { .. }
            | Error::BadRemoteName { .. }
            | Error::HubRejected { .. } => {}
        }
        d
    }
}

/// Rounds of fetch, reconcile and push before giving up on lost races (the next sync goes
/// on from there).
pub const MAX_ROUNDS: u32 = 5;

/// Options of a sync.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    /// The remote (default: the only one, or `origin`).
    pub remote: Option<String>,
    /// Fail (`Conflict`) when a conflict was reported.
    pub strict: bool,
    /// Let git show transfer progress on stderr.
    pub progress: bool,
    /// Take unsigned control-plane commits from the remote (history written before
    /// signatures; an operator's one-off decision, audited). Bad or untrusted signatures
    /// are still rejected.
    pub accept_unsigned: bool,
}

/// Resolves the remote to use.
///
/// # Errors
/// `NotFound` without a usable remote; `InvalidInput` for a name that cannot be used in
/// the tracking namespace.
pub fn resolve_remote(gatos: &Gatos, asked: Option<&str>) -> Result<String> {
    let remotes = gatos.store().remotes()?;
    let name = match asked {
        Some(n) => {
            if !remotes.iter().any(|r| r == n) {
                return Err(Error::NoSuchRemote { name: n.to_owned() }.into());
            }
            n.to_owned()
        }
        None => match remotes.as_slice() {
            [only] => only.clone(),
            _ if remotes.iter().any(|r| r == "origin") => "origin".to_owned(),
            [] => return Err(Error::NoRemote.into()),
            _ => return Err(Error::SeveralRemotes { remotes }.into()),
        },
    };
    if !is_valid_remote_name(&name) {
        return Err(Error::BadRemoteName { name }.into());
    }
    Ok(name)
}

impl Gatos {
    /// Syncs with a remote (see the module documentation).
    ///
    /// # Errors
    /// `Unavailable` when the remote cannot be reached (the local repository is left
    /// consistent; the next sync retries); `Conflict` with `strict` when conflicts were
    /// reported.
    pub fn sync(&self, opts: &SyncOptions) -> Result<SyncReport> {
        let remote = resolve_remote(self, opts.remote.as_deref())?;
        let _guard = self
            .store()
            .locks()
            .acquire(
                &[format!("sync.{remote}")],
                std::time::Duration::from_secs(600),
            )
            .map_err(gatos_store::Error::from)?;
        // Journaled publishes and enqueues are committed before anything is compared or
        // pushed.
        self.flush_journals()?;
        let mut s = Sync::new(self, remote, opts.progress);
        s.checks.accept_unsigned = opts.accept_unsigned;
        if opts.accept_unsigned {
            crate::audit::record(
                self,
                "sync.accept_unsigned",
                &format!("remote:{}", s.remote),
                serde_json::Value::Null,
                serde_json::json!({"accept_unsigned": true}),
                None,
            );
        }
        for round in 1..=MAX_ROUNDS {
            s.report.rounds = round;
            if let Err(e) = s.round() {
                // What the checks rejected before the failure (the hub's refs, this node's
                // damage, objects missing here) is logged and audited all the same.
                s.settle_rejections();
                return Err(e);
            }
            if !s.again {
                break;
            }
            tracing::debug!(
                round,
                "lost races at the hub, or a topic waits for a check; syncing again"
            );
        }
        let report = s.finish();
        if opts.strict && (!report.conflicts.is_empty() || report.rejected_count > 0) {
            return Err(Error::Strict {
                report: Box::new(report),
            }
            .into());
        }
        Ok(report)
    }
}

/// Checks the hub's refs of one job as a sync would (ADR 0018), for a hub-arbitrated
/// worker that is about to take them.
///
/// # Errors
/// `Conflict` naming the first rejected ref, its code and why.
pub(crate) fn check_job_at_hub(gatos: &Gatos, remote: &str, id: gatos_types::Ulid) -> Result<()> {
    let mut s = Sync::new(gatos, remote.to_owned(), false);
    for name in [
        names::job(id),
        names::job_claim(id),
        names::job_result(id),
        names::job_cancel(id),
    ] {
        if let Some(v) = gatos.store().read_ref(&name)? {
            s.local.insert(name.to_string(), v);
        }
        if let Some(t) = names::tracking(remote, &name)
            && let Some(v) = gatos.store().read_ref(&t)?
        {
            s.hub.insert(name.to_string(), v);
        }
    }
    s.check_hub()?;
    // `Conflict`, so a worker skips the job and goes on (a hub cannot stop a worker); the
    // next sync reports, logs and audits the rejection (a worker polling would repeat it).
    match s.checks.rejected.values().next() {
        None => Ok(()),
        Some(r) => {
            tracing::info!(r#ref = %r.name, code = r.code.as_str(), reason = %r.reason, "not taking the hub's refs of a job");
            Err(Error::HubRejected {
                name: r.name.to_string(),
                code: r.code,
                reason: r.reason.clone(),
            }
            .into())
        }
    }
}

/// A side's refs: full gatos name → commit.
pub(crate) type Refs = BTreeMap<String, Oid>;

/// One sync: its view of both sides, what to push, what happened.
pub(crate) struct Sync<'g> {
    pub(crate) gatos: &'g Gatos,
    pub(crate) remote: String,
    progress: bool,
    pub(crate) local: Refs,
    pub(crate) hub: Refs,
    /// Pushed without atomicity, each with its own lease.
    pub(crate) pushes: Vec<PushRef>,
    /// Pushed atomically per group (a claim with its result).
    pub(crate) atomic: Vec<Vec<PushRef>>,
    /// Topic heads pushed this round: `(topic, ref)`.
    pub(crate) head_pushes: Vec<(String, String)>,
    /// Checkpoints to push once their topic's head landed: `(topic, push)`.
    pub(crate) checkpoint_pushes: Vec<(String, PushRef)>,
    pub(crate) report: SyncReport,
    /// Set when another round is needed (a lost race, a local ref that moved meanwhile).
    pub(crate) again: bool,
    conflicts: BTreeMap<String, SyncConflict>,
    /// What the checks of the remote's refs found (ADR 0018), across rounds.
    pub(crate) checks: validate::Checks,
    /// Topics whose refs on this node do not read (ADR 0047), found at each round's start,
    /// with why: nothing of them (messages, summary, segments, checkpoints) is adopted or
    /// pushed, and each is rejected as this node's own fault.
    pub(crate) damaged_here: BTreeMap<Topic, crate::Error>,
    /// Topics whose heads (and checkpoints) wait for the next round: their summary moved
    /// back to the hub's, below what this round checked of the hub's messages.
    pub(crate) deferred: BTreeSet<Topic>,
    /// Units ([`push_unit`]) held back this round because an object they need is missing
    /// here ([`Sync::push_checked`]).
    held_back: BTreeSet<String>,
}

/// A ref that failed its checks: `(ref, code, why)`.
pub(crate) type RefFailure = (String, ErrorCode, String);

/// Commits of each chain (checkpoints, claims, settings, manifests, archives) that
/// [`refs_failing_checks`] reads from its tip: a ref moved onto another chain, or a commit
/// of another kind, shows at the tip, and a chain of every acknowledgement or heartbeat
/// ever made would otherwise make doctor's cost grow with all history.
pub const DOCTOR_CHAIN_DEPTH: u64 = 64;

/// This node's refs that are not what their names say, by the checks a sync makes of them
/// before it pushes anything of them ([`Sync::check_here`]), made with no hub: each ref is
/// checked from its value down, at most [`DOCTOR_CHAIN_DEPTH`] commits of a chain. For
/// `doctor`: one that fails is held back by every sync until it is repaired, and every
/// other node would refuse it.
///
/// Returns the first failing ref of each unit (a job's refs, a topic's sealed segments,
/// else the ref alone), and how many refs were left unchecked because the checks' bound on
/// commits was reached.
pub(crate) fn refs_failing_checks(gatos: &Gatos) -> Result<(Vec<RefFailure>, usize)> {
    let mut s = Sync::new(gatos, String::new(), false);
    s.checks.chain_depth = Some(DOCTOR_CHAIN_DEPTH);
    s.local = gatos
        .store()
        .list_refs(names::GATOS_PREFIX)?
        .into_iter()
        .map(|(n, o)| (n.to_string(), o))
        .collect();
    let mut failed = Vec::new();
    let mut unchecked = 0;
    for (_, _, name, why) in s.own_failures(usize::MAX) {
        match why {
            validate::Bad::Invalid { code, reason } => failed.push((name, code, reason)),
            validate::Bad::Budget => unchecked += 1,
        }
    }
    Ok((failed, unchecked))
}

/// One push per ref, the last queued for it (with the first's lease: the hub's value
/// this round saw): git refuses a push that names one ref twice, which would fail every
/// ref of that push.
fn last_of_each(pushes: Vec<PushRef>) -> Vec<PushRef> {
    let mut at: HashMap<String, usize> = HashMap::new();
    let mut out: Vec<PushRef> = Vec::with_capacity(pushes.len());
    for p in pushes {
        match at.get(&p.name) {
            Some(&i) => out[i].new = p.new,
            None => {
                at.insert(p.name.clone(), out.len());
                out.push(p);
            }
        }
    }
    out
}

impl<'g> Sync<'g> {
    fn new(gatos: &'g Gatos, remote: String, progress: bool) -> Sync<'g> {
        Sync {
            gatos,
            report: SyncReport {
                remote: remote.clone(),
                ..SyncReport::default()
            },
            remote,
            progress,
            local: Refs::new(),
            hub: Refs::new(),
            pushes: Vec::new(),
            atomic: Vec::new(),
            head_pushes: Vec::new(),
            checkpoint_pushes: Vec::new(),
            again: false,
            conflicts: BTreeMap::new(),
            checks: validate::Checks::default(),
            damaged_here: BTreeMap::new(),
            deferred: BTreeSet::new(),
            held_back: BTreeSet::new(),
        }
    }

    fn finish(mut self) -> SyncReport {
        self.settle_rejections();
        self.report.conflicts = self.conflicts.into_values().collect();
        self.report
    }

    /// One round: fetch, snapshot both sides, reconcile, push.
    fn round(&mut self) -> Result<()> {
        self.again = false;
        self.deferred.clear();
        self.pushes.clear();
        self.atomic.clear();
        self.head_pushes.clear();
        self.checkpoint_pushes.clear();
        self.report.retry.clear();
        self.gatos
            .store()
            .fetch_gatos(&self.remote, None, self.progress)?;
        self.snapshot()?;
        self.find_damaged_here()?;
        self.check_hub()?;
        self.check_here();
        self.create_only_kind(&names::trust_prefix())?;
        self.chains(&names::config_prefix())?;
        self.chains(&names::manifests_prefix())?;
        self.topics()?;
        self.checkpoints()?;
        self.archives()?;
        self.jobs()?;
        self.push()
    }

    /// Reads the local gatos refs and the tracking refs of the remote.
    fn snapshot(&mut self) -> Result<()> {
        let store = self.gatos.store();
        self.local = store
            .list_refs(names::GATOS_PREFIX)?
            .into_iter()
            .map(|(n, o)| (n.to_string(), o))
            .collect();
        let prefix = format!("{}{}/", names::SYNC_PREFIX, self.remote);
        self.hub = BTreeMap::new();
        for (n, o) in store.list_refs(&prefix)? {
            if let Some(g) = names::untracked(&self.remote, n.as_str()) {
                self.hub.insert(g.to_string(), o);
            }
        }
        Ok(())
    }

    /// Names under `prefix` (a `refs/gatos/…/` prefix of `names`) on either side.
    pub(crate) fn names_under(&self, prefix: &str) -> BTreeSet<String> {
        // Names that fit no entry of the layout are neither adopted nor pushed.
        self.local
            .keys()
            .chain(self.hub.keys())
            .filter(|n| n.starts_with(prefix) && names::RefKind::parse(n).is_some())
            .cloned()
            .collect()
    }

    /// Runs one unit's reconciliation. An error caused by what the remote sent (a document
    /// the checks let through, an object it lacks) rejects that unit instead of failing the
    /// sync, and nothing the unit queued for the hub before it failed is pushed: it was
    /// decided on refs that do not read. A remote that cannot be reached, or a lost race,
    /// still ends the round.
    pub(crate) fn guarded(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut Self) -> Result<()>,
    ) -> Result<()> {
        // What the unit queues for the hub, and the counts of it, to take back if it fails.
        let queued = (
            self.pushes.len(),
            self.atomic.len(),
            self.head_pushes.len(),
            self.checkpoint_pushes.len(),
            self.report.deleted_remote,
            self.report.pushed,
        );
        match f(self) {
            Ok(()) => Ok(()),
            Err(e) if e.code() == ErrorCode::Unavailable || e.code().is_retryable() => Err(e),
            Err(e) => {
                self.pushes.truncate(queued.0);
                self.atomic.truncate(queued.1);
                self.head_pushes.truncate(queued.2);
                self.checkpoint_pushes.truncate(queued.3);
                self.report.deleted_remote = queued.4;
                self.report.pushed = queued.5;
                self.reject_unit(name, &e);
                Ok(())
            }
        }
    }

    /// Sets a local ref by CAS from the value this round saw; a ref that moved meanwhile
    /// asks for another round. Returns whether it changed.
    pub(crate) fn set_local(&mut self, name: &str, new: Option<Oid>) -> Result<bool> {
        self.set_local_inner(name, new, false)
    }

    /// As [`Sync::set_local`], for a caller that holds the ref's lock family and
    /// `packed-refs` (see [`Sync::topic_lock`]).
    pub(crate) fn set_local_held(&mut self, name: &str, new: Option<Oid>) -> Result<bool> {
        self.set_local_inner(name, new, true)
    }

    fn set_local_inner(&mut self, name: &str, new: Option<Oid>, held: bool) -> Result<bool> {
        let old = self.local.get(name).copied();
        if old == new {
            return Ok(false);
        }
        let rn = RefName::from_repository(name.to_owned());
        let edit = match (old, new) {
            (None, Some(n)) => Edit::create(rn, n),
            (Some(o), Some(n)) => Edit::update(rn, Some(o), n),
            (Some(o), None) => Edit::delete(rn, o),
            (None, None) => return Ok(false),
        };
        let opts = Options {
            message: format!("gatos: sync with {}", self.remote),
            ..Options::default()
        };
        let applied = if held {
            self.gatos.store().update_refs_locked(&[edit], &opts, true)
        } else {
            self.gatos.store().update_refs(&[edit], &opts)
        };
        match applied {
            Ok(_) => {
                match new {
                    Some(n) => self.local.insert(name.to_owned(), n),
                    None => self.local.remove(name),
                };
                Ok(true)
            }
            Err(gatos_store::Error::CasMismatch { .. }) => {
                tracing::debug!(name, "a local ref moved during sync; another round");
                self.again = true;
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Queues a push of `name` to `new`, expecting the hub's value this round saw.
    pub(crate) fn push_ref(&mut self, name: &str, new: Option<Oid>) {
        let expect = match self.hub.get(name) {
            Some(o) => Expect::Value(*o),
            None => Expect::Absent,
        };
        self.pushes.push(PushRef {
            name: name.to_owned(),
            expect,
            new,
        });
    }

    /// A push entry expecting the hub's value this round saw.
    pub(crate) fn push_entry(&self, name: &str, new: Option<Oid>) -> PushRef {
        PushRef {
            name: name.to_owned(),
            expect: match self.hub.get(name) {
                Some(o) => Expect::Value(*o),
                None => Expect::Absent,
            },
            new,
        }
    }

    pub(crate) fn conflict(&mut self, name: &str, resolution: &str, reason: impl Into<String>) {
        let c = SyncConflict {
            name: name.to_owned(),
            local: self.local.get(name).copied(),
            remote: self.hub.get(name).copied(),
            resolution: resolution.to_owned(),
            reason: reason.into(),
        };
        tracing::warn!(r#ref = name, resolution, reason = %c.reason, "sync conflict");
        self.conflicts.insert(name.to_owned(), c);
    }

    /// The tree of a commit.
    pub(crate) fn tree_of(&self, commit: Oid) -> Result<Oid> {
        Ok(self.gatos.store().reader().commit(commit)?.tree)
    }

    /// Tells whether `ancestor` is on `tip`'s first-parent chain ([`Gatos::on_chain`]).
    pub(crate) fn on_chain(&self, ancestor: Oid, tip: Oid) -> Result<bool> {
        self.gatos.on_chain(ancestor, tip)
    }

    /// Create-only refs under `prefix`: copy what one side lacks; the same tree
    /// under two commits is the same thing (adopt the hub's); different trees conflict.
    fn create_only_kind(&mut self, prefix: &str) -> Result<()> {
        for name in self.names_under(prefix) {
            self.guarded(&name, |s| s.create_only(&name))?;
        }
        Ok(())
    }

    /// Handles a ref one side lacks (copied to it); returns both values when both sides
    /// hold different ones, for the caller's rule.
    fn one_sided(&mut self, name: &str) -> Result<Option<(Oid, Oid)>> {
        let (l, h) = (self.local.get(name).copied(), self.hub.get(name).copied());
        match (l, h) {
            (Some(l), Some(h)) if l != h => return Ok(Some((l, h))),
            (Some(_), None) => {
                self.push_ref(name, l);
                self.report.pushed += 1;
            }
            (None, Some(_)) => {
                let adopted = self.set_local(name, h)?;
                self.report.adopted += u64::from(adopted);
            }
            _ => {}
        }
        Ok(None)
    }

    pub(crate) fn create_only(&mut self, name: &str) -> Result<()> {
        let Some((l, h)) = self.one_sided(name)? else {
            return Ok(());
        };
        if self.tree_of(l)? == self.tree_of(h)? {
            if self.set_local(name, Some(h))? {
                self.report.adopted += 1;
            }
        } else {
            self.conflict(
                name,
                "kept-both",
                "create-only ref with different content on each side",
            );
        }
        Ok(())
    }

    /// CAS chains under `prefix`: fast-forward either way; on divergence the
    /// hub's value wins and the local one is reported.
    fn chains(&mut self, prefix: &str) -> Result<()> {
        for name in self.names_under(prefix) {
            self.guarded(&name, |s| s.chain(&name))?;
        }
        Ok(())
    }

    pub(crate) fn chain(&mut self, name: &str) -> Result<()> {
        let Some((l, h)) = self.one_sided(name)? else {
            return Ok(());
        };
        if self.on_chain(h, l)? {
            self.push_ref(name, Some(l));
            self.report.pushed += 1;
        } else if self.on_chain(l, h)? {
            if self.set_local(name, Some(h))? {
                self.report.adopted += 1;
            }
        } else if self.chain_place(h)? < self.chain_place(l)? {
            // Each commit of a settings or manifest chain is signed at its place (`Version`),
            // so a hub cannot put an older value on a chain of its own at a later place.
            self.conflict(
                name,
                "kept-local",
                format!(
                    "both sides changed it, and the hub's value {h} is at an earlier place of the chain than this node's {l}; this node's stands and is put back at the hub"
                ),
            );
            self.push_ref(name, Some(l));
            self.report.pushed += 1;
        } else {
            self.conflict(
                name,
                "hub-wins",
                format!("both sides changed it; the local value {l} was replaced by the hub's"),
            );
            self.set_local(name, Some(h))?;
        }
        Ok(())
    }

    /// The place of a settings or manifest commit ([`crate::signing::chain_place`]).
    fn chain_place(&self, commit: Oid) -> Result<u64> {
        Ok(crate::signing::chain_place(
            &self.gatos.store().reader().commit(commit)?.trailers(),
        ))
    }

    /// Pushes what this round queued: everything with its own lease in one push, then the
    /// claim/result pairs atomically (all at once, else one by one).
    fn push(&mut self) -> Result<()> {
        let store = self.gatos.store();
        let pushes = last_of_each(std::mem::take(&mut self.pushes));
        if !pushes.is_empty() {
            let (pushes, report) = self.push_checked(pushes)?;
            for p in &pushes {
                match report.status(&p.name) {
                    Some(PushStatus::Ok | PushStatus::UpToDate) => {
                        self.landed(p);
                    }
                    Some(PushStatus::Stale) => {
                        self.lost(&p.name);
                    }
                    Some(PushStatus::Rejected(why)) => {
                        tracing::warn!(r#ref = %p.name, why = %why, "the hub refused a ref");
                        self.lost(&p.name);
                    }
                    None => self.lost(&p.name),
                }
            }
        }
        // Checkpoints go second, and only for topics whose messages are at the hub: a
        // checkpoint must never stand on a message the hub does not have.
        // A topic whose head push was lost, or whose unit was rejected (its head push, if
        // any, taken back), has no checkpoint pushed either.
        let failed_topics: BTreeSet<String> = self
            .head_pushes
            .iter()
            .filter(|(_, r)| self.report.retry.iter().any(|x| x == r))
            .map(|(t, _)| t.clone())
            .chain(
                self.checkpoint_pushes
                    .iter()
                    .map(|(t, _)| t)
                    .filter(|t| {
                        t.parse::<Topic>().is_ok_and(|t| {
                            let head = names::message_head(&t).to_string();
                            self.checks.rejected.contains_key(&head)
                                || self.checks.deferred.contains(&head)
                        })
                    })
                    .cloned(),
            )
            .collect();
        let queued = std::mem::take(&mut self.checkpoint_pushes);
        let kept = queued.len();
        let checkpoints: Vec<PushRef> = queued
            .into_iter()
            .filter(|(t, _)| !failed_topics.contains(t))
            .map(|(_, p)| p)
            .collect();
        // Each was counted as pushed when it was queued.
        self.report.pushed = self
            .report
            .pushed
            .saturating_sub((kept - checkpoints.len()) as u64);
        if !checkpoints.is_empty() {
            let (checkpoints, report) = self.push_checked(checkpoints)?;
            for p in &checkpoints {
                match report.status(&p.name) {
                    Some(PushStatus::Ok | PushStatus::UpToDate) => self.landed(p),
                    _ => self.lost(&p.name),
                }
            }
        }
        // A claim with its result goes with its job: not at all when the job's unit was held
        // back for a missing object (each group was counted once as pushed).
        let queued = std::mem::take(&mut self.atomic);
        let before = queued.len();
        let groups: Vec<Vec<PushRef>> = queued
            .into_iter()
            .filter(|g| {
                g.first()
                    .is_none_or(|p| !self.held_back.contains(&push_unit(&p.name)))
            })
            .collect();
        self.report.pushed = self
            .report
            .pushed
            .saturating_sub((before - groups.len()) as u64);
        if !groups.is_empty() {
            let all: Vec<PushRef> = groups.iter().flatten().cloned().collect();
            let report = store.push(&self.remote, &all, true)?;
            if report.all_ok() {
                for p in &all {
                    self.landed(p);
                }
            } else {
                for g in groups {
                    let r = store.push(&self.remote, &g, true)?;
                    if r.all_ok() {
                        for p in &g {
                            self.landed(p);
                        }
                        continue;
                    }
                    // A group that fails alone for an object missing here is this node's
                    // fault, not a lost race: rejected, not retried at every round.
                    let at_hub: std::collections::HashSet<Oid> =
                        self.hub.values().copied().collect();
                    let mut seen = std::collections::HashSet::new();
                    let missing = g.iter().find_map(|p| {
                        p.new
                            .and_then(|n| self.missing_below(n, &at_hub, &mut seen))
                            .map(|m| (p.name.clone(), m))
                    });
                    match missing {
                        Some((name, m)) => {
                            self.report.pushed = self.report.pushed.saturating_sub(1);
                            self.reject_missing(&name, &name, m);
                        }
                        None => {
                            for p in &g {
                                self.lost(&p.name);
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Pushes `refs` in one `git push`. When objects that one of them needs are missing or
    /// unreadable here (a loose object lost to a `git gc --prune` racing a writer, a
    /// damaged disk), git sends nothing at all and every ref fails (`[remote rejected]
    /// (unpacker error)`, or no answer): each would be retried, and fail, at every sync,
    /// and one damaged ref would stop this node's replication. So when a push lands no ref
    /// (git sends one pack for all of them: a ref that landed means the pack arrived), each
    /// ref's objects are looked for ([`Sync::missing_below`]). A ref that lacks one takes
    /// its whole unit out of the push (a topic's head, segments, summary and the deletions
    /// of what it pruned; a job's refs), so the hub is never handed part of a unit; the unit
    /// is rejected as this node's fault, with the object named, and the rest is pushed
    /// again. Returns the refs pushed and the report of their push.
    ///
    /// # Errors
    /// A push that fails for another reason than missing objects (the hub unreachable).
    fn push_checked(&mut self, refs: Vec<PushRef>) -> Result<(Vec<PushRef>, PushReport)> {
        let store = self.gatos.store();
        let first = store
            .push(&self.remote, &refs, false)
            .map_err(crate::Error::from);
        // The pack arrived if an update (not a deletion, which needs none, nor a ref
        // already up to date, which git does not send) landed.
        let failed = match &first {
            Ok(r) => {
                r.refs
                    .iter()
                    .any(|(_, s)| matches!(s, PushStatus::Rejected(_)))
                    && !refs.iter().any(|p| {
                        p.new.is_some() && matches!(r.status(&p.name), Some(PushStatus::Ok))
                    })
            }
            Err(e) => e.code() == ErrorCode::Unavailable,
        };
        if !failed {
            return Ok((refs, first?));
        }
        let at_hub: std::collections::HashSet<Oid> = self.hub.values().copied().collect();
        let mut seen = std::collections::HashSet::new();
        let mut broken: BTreeMap<String, (String, Oid)> = BTreeMap::new();
        for p in &refs {
            let unit = push_unit(&p.name);
            if broken.contains_key(&unit) {
                continue;
            }
            if let Some(missing) = p
                .new
                .and_then(|n| self.missing_below(n, &at_hub, &mut seen))
            {
                broken.insert(unit, (p.name.clone(), missing));
            }
        }
        if broken.is_empty() {
            return Ok((refs, first?));
        }
        let mut kept = Vec::with_capacity(refs.len());
        for p in refs {
            if !broken.contains_key(&push_unit(&p.name)) {
                kept.push(p);
                continue;
            }
            // Taken out of the counts it was put in when it was queued (topic heads,
            // segments and summaries are counted as topics, not as pushed refs).
            let message =
                names::RefKind::parse(&p.name).is_some_and(|k| k.message_topic().is_some());
            if p.new.is_none() {
                self.report.deleted_remote = self.report.deleted_remote.saturating_sub(1);
            } else if !message {
                self.report.pushed = self.report.pushed.saturating_sub(1);
            }
        }
        for (unit, (name, missing)) in broken {
            let topic = names::RefKind::parse(&name).and_then(|k| k.message_topic().cloned());
            // A topic is rejected under its head's name (its checkpoints are then held
            // back too), with the ref that lacks the object named; it is no longer listed
            // as pushed.
            let under = match &topic {
                Some(t) => {
                    self.report.topics.retain(|x| {
                        x.topic != t.as_str() || !matches!(x.action, TopicAction::Pushed)
                    });
                    names::message_head(t).to_string()
                }
                None => name.clone(),
            };
            tracing::debug!(%unit, "taken out of the push: an object is missing here");
            self.reject_missing(&under, &name, missing);
            self.held_back.insert(unit);
        }
        let report = store.push(&self.remote, &kept, false)?;
        Ok((kept, report))
    }

    /// The first object missing or unreadable here of what pushing `tip` sends: the
    /// commits from `tip` down to commits the hub holds as a ref (`at_hub`), their trees
    /// and the blobs in them. `None` when every one reads. `seen` holds what the calls
    /// before found readable with all below it; a call that finds nothing missing adds
    /// what it walked.
    fn missing_below(
        &self,
        tip: Oid,
        at_hub: &std::collections::HashSet<Oid>,
        seen: &mut std::collections::HashSet<Oid>,
    ) -> Option<Oid> {
        let mut walked = std::collections::HashSet::new();
        let missing = self.walk_missing(tip, at_hub, seen, &mut walked);
        if missing.is_none() {
            seen.extend(walked);
        }
        missing
    }

    /// [`Sync::missing_below`]'s walk, marking what it visits in `walked`.
    fn walk_missing(
        &self,
        tip: Oid,
        at_hub: &std::collections::HashSet<Oid>,
        seen: &std::collections::HashSet<Oid>,
        walked: &mut std::collections::HashSet<Oid>,
    ) -> Option<Oid> {
        let mut r = self.gatos.store().reader();
        let mut commits = vec![tip];
        let known = |o: &Oid, walked: &std::collections::HashSet<Oid>| {
            seen.contains(o) || walked.contains(o)
        };
        while let Some(c) = commits.pop() {
            if at_hub.contains(&c) || known(&c, walked) {
                continue;
            }
            let Ok(commit) = r.commit(c) else {
                return Some(c);
            };
            let mut trees = vec![commit.tree];
            while let Some(t) = trees.pop() {
                if known(&t, walked) {
                    continue;
                }
                let Ok(entries) = r.tree(t) else {
                    return Some(t);
                };
                for e in entries {
                    if e.is_tree {
                        trees.push(e.oid);
                    } else if !known(&e.oid, walked) {
                        if r.blob(e.oid).is_err() {
                            return Some(e.oid);
                        }
                        walked.insert(e.oid);
                    }
                }
                walked.insert(t);
            }
            walked.insert(c);
            commits.extend(commit.parents);
        }
        None
    }

    fn landed(&mut self, p: &PushRef) {
        // Keep the tracking ref in step, so that a sync that stops here (or a worker
        // reading the hub's last known state) sees what the hub now holds.
        if let Some(t) = names::tracking(&self.remote, &RefName::from_repository(p.name.clone())) {
            let edit = match p.new {
                Some(n) => Edit {
                    name: t,
                    expect: Expect::Any,
                    new: Some(n),
                },
                None => Edit {
                    name: t,
                    expect: Expect::Any,
                    new: None,
                },
            };
            if let Err(e) = self.gatos.store().update_refs(&[edit], &Options::default()) {
                tracing::debug!(error = %e, "could not update a tracking ref; the next fetch will");
            }
        }
        if let Some(t) = self.report.topics.iter_mut().find(|t| {
            self.head_pushes
                .iter()
                .any(|(topic, r)| *r == p.name && *topic == t.topic)
        }) {
            t.landed = true;
        }
    }

    fn lost(&mut self, name: &str) {
        tracing::info!(r#ref = name, "lost a race at the hub");
        if !self.report.retry.iter().any(|r| r == name) {
            self.report.retry.push(name.to_owned());
        }
        self.again = true;
    }
}

/// What is pushed or held back together ([`Sync::push_checked`]): a topic's refs (head,
/// segments, summary), a job's refs, else the ref alone.
fn push_unit(name: &str) -> String {
    use names::RefKind;
    let kind = RefKind::parse(name);
    if let Some(t) = kind.as_ref().and_then(RefKind::message_topic) {
        return names::topic_prefix(t);
    }
    match kind {
        Some(
            RefKind::Job(id)
            | RefKind::JobClaim(id)
            | RefKind::JobResult(id)
            | RefKind::JobCancel(id),
        ) => names::job_prefix(id),
        _ => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A unit that fails takes back what it queued for the hub and its counts, and only
    /// that; a retryable failure ends the round and rejects nothing.
    #[test]
    fn a_unit_that_fails_takes_back_what_it_queued()
    -> std::result::Result<(), Box<dyn std::error::Error>> {
        let (_repo, g) = crate::test_node(None)?;
        let mut s = Sync::new(&g, "origin".into(), false);
        let before = "refs/gatos/messages/a/head";
        s.push_ref(before, Some(Oid::NULL));
        s.report.pushed = 1;
        let name = "refs/gatos/messages/t/head";
        s.guarded(name, |s| {
            s.push_ref(name, Some(Oid::NULL));
            s.head_pushes.push(("t".into(), name.into()));
            s.atomic.push(Vec::new());
            s.report.pushed += 2;
            s.report.deleted_remote += 1;
            Err(crate::Error::new(
                ErrorCode::InvalidEnvelope,
                "not a message commit",
            ))
        })?;
        let queued: Vec<&str> = s.pushes.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(queued, [before]);
        assert!(s.head_pushes.is_empty() && s.atomic.is_empty());
        assert_eq!((s.report.pushed, s.report.deleted_remote), (1, 0));
        assert!(s.checks.rejected.contains_key(name));
        let lost = s.guarded("refs/gatos/messages/u/head", |s| {
            s.push_ref("refs/gatos/messages/u/head", Some(Oid::NULL));
            Err(crate::Error::new(
                ErrorCode::Unavailable,
                "the hub went away",
            ))
        });
        assert!(lost.is_err());
        assert!(!s.checks.rejected.contains_key("refs/gatos/messages/u/head"));
        Ok(())
    }

    #[test]
    fn a_strict_failure_carries_its_report_as_a_detail() {
        let report = SyncReport {
            remote: "origin".into(),
            rejected_count: 2,
            ..SyncReport::default()
        };
        let e = crate::Error::from(Error::Strict {
            report: Box::new(report.clone()),
        });
        assert_eq!(e.code(), ErrorCode::Conflict);
        assert_eq!(
            e.to_string(),
            "0 conflict(s) and 2 rejected ref(s) with origin (a strict sync): "
        );
        assert_eq!(
            e.details().get("report"),
            Some(&serde_json::to_value(&report).expect("a report serializes"))
        );
        assert!(crate::Error::from(Error::NoRemote).details().is_empty());
    }
}
