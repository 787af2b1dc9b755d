//! Nothing a remote sends is believed before it is checked (DESIGN §5, ADR 0018).
//!
//! After each fetch, every tracking ref whose value differs from the local one is checked
//! before any local ref moves: its name fits the layout (other names are ignored), its
//! object is a commit of the right kind, its document parses into its type and is
//! canonical where it is hashed, and its chain links correctly (`Seq` contiguous, segment
//! and summary links, claim chains that follow the claim state machine). Only the commits
//! this node does not already hold are read: a topic's walk stops at the first message the
//! node has at that position, a chain's walk at the node's own value.
//!
//! A ref that fails is *rejected*: the hub's view of its unit (a topic, a job, or the ref
//! alone) is replaced by the local one for the rest of the sync, so nothing is adopted
//! from it, nothing derived from it is pushed, and the node keeps what it had. A remote
//! summary is its own unit: rejecting it keeps this node's segments (and keeps serving
//! them) while the topic's messages still sync.
//!
//! This node's own refs that differ from the hub's pass the same rules before anything of
//! them is pushed ([`Sync::check_here`]): one that fails is rejected as this node's fault,
//! with no remote value, and its unit is neither pushed nor adopted.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use gatos_store::refs::names::{self, RefKind};
use gatos_types::envelope::EnvelopeRef;
use gatos_types::jobs::{CancelDoc, ClaimDoc, ClaimState, JobSpec, QueueConfig, ResultDoc};
use gatos_types::sync::{MAX_LISTED_REJECTIONS, SyncRejection};
use gatos_types::trailers::keys;
use gatos_types::wire::{CheckpointDoc, SummaryDoc, TopicConfig};
use gatos_types::{Digest, ErrorCode, Group, KeyId, ManifestName, Oid, Topic, Ulid, jcs};
use serde::de::DeserializeOwned;

use super::Sync;
use crate::error::Result;
use crate::messages::chain::{self, ENVELOPE_PATH, Meta};

/// Refs one sync checks at most, the remote's and this node's own before a push together;
/// the others wait for the next sync (listed in `retry`, never rejected).
/// `gatos.sync.maxCheckedRefs` sets another bound.
pub const MAX_CHECKED_REFS: usize = 20_000;

/// The git config key that changes [`MAX_CHECKED_REFS`].
pub const MAX_CHECKED_REFS_KEY: &str = "gatos.sync.maxCheckedRefs";

/// Remote commits one sync reads at most while checking; past it, as above.
pub const MAX_CHECKED_COMMITS: u64 = 2_000_000;

/// Message metadata kept from the checks for the reconciliation (about 40 MB at most);
/// past it, the reconciliation reads the commits again.
const MAX_KEPT_METAS: usize = 200_000;

/// Rejections kept in `<git-dir>/gatos/sync/rejected.jsonl` (the oldest go first).
pub const MAX_LOGGED_REJECTIONS: usize = 1_000;

/// Why a remote ref was not believed.
#[derive(Debug, Clone)]
pub(crate) enum Bad {
    /// It failed a check.
    Invalid {
        /// The taxonomy code.
        code: ErrorCode,
        /// Why.
        reason: String,
    },
    /// This sync's checking bound was reached first.
    Budget,
}

type Check = std::result::Result<(), Bad>;

fn bad(code: ErrorCode, reason: impl Into<String>) -> Bad {
    Bad::Invalid {
        code,
        reason: reason.into(),
    }
}

fn envelope(reason: impl Into<String>) -> Bad {
    bad(ErrorCode::InvalidEnvelope, reason)
}

impl From<crate::Error> for Bad {
    fn from(e: crate::Error) -> Bad {
        bad(e.code(), e.to_string())
    }
}

impl From<gatos_store::Error> for Bad {
    fn from(e: gatos_store::Error) -> Bad {
        Bad::from(crate::Error::from(e))
    }
}

/// In the reason a topic's head is rejected with when it follows a segment whose last
/// message no sealed ref holds: doctor tells that case by it (its fix differs).
pub(crate) const NO_SEALED_REF: &str = "no sealed ref";

/// The unit a ref belongs to: a topic's head with every ref of the topic, every ref of a
/// job together, anything else alone (a bad sealed ref alone is not adopted; a head whose
/// chain needs it is then rejected for want of it). A unit prefix ends with `/`.
fn unit_of(name: &str, kind: &RefKind) -> String {
    match kind {
        RefKind::MessageHead(t) => names::topic_prefix(t),
        RefKind::Job(id)
        | RefKind::JobClaim(id)
        | RefKind::JobResult(id)
        | RefKind::JobCancel(id) => names::job_prefix(*id),
        _ => name.to_owned(),
    }
}

/// Where a ref comes in the order a sync checks refs (a stable sort keeps name order
/// within each): revocations first, then key records, within the sync's bound whatever
/// else there is (refs that sort before `trust/` cannot keep a revocation out; anyone can
/// make key records for keys of their own); then summaries (a topic's walk stops at what a
/// valid summary pruned); then the rest.
fn check_order(kind: &RefKind) -> u8 {
    match kind {
        RefKind::TrustRevoked(_) | RefKind::TrustRevocation(..) => 0,
        RefKind::TrustKey(_) => 1,
        RefKind::MessageSummary(_) => 2,
        _ => 3,
    }
}

/// The names of `refs` that start with `prefix`, from a range of the sorted map.
fn under<'a>(refs: &'a super::Refs, prefix: &'a str) -> impl Iterator<Item = &'a String> + 'a {
    refs.range::<str, _>((
        std::ops::Bound::Included(prefix),
        std::ops::Bound::Unbounded,
    ))
    .map(|(n, _)| n)
    .take_while(move |n| n.starts_with(prefix))
}

/// What one sync learnt from its checks, kept across its rounds.
#[derive(Default)]
pub(crate) struct Checks {
    /// Verdicts by ref: the value checked and what was found.
    verdicts: HashMap<String, (Oid, Option<Bad>)>,
    /// Commits that passed.
    valid: HashSet<Oid>,
    walked: u64,
    refs_checked: usize,
    /// Topics whose remote summary was rejected: their local sealed segments are neither
    /// deleted nor offered back to the hub that dropped them.
    pub(crate) summary_rejected: BTreeSet<Topic>,
    /// Everything rejected, by ref.
    pub(crate) rejected: BTreeMap<String, SyncRejection>,
    /// Take unsigned control-plane commits (history written before signatures, once, by
    /// an operator's `sync --accept-unsigned-history`); bad or untrusted signatures still
    /// fail.
    pub(crate) accept_unsigned: bool,
    /// Take any signer, and unsigned commits, while checking this node's own refs before a
    /// push ([`Sync::check_here`]): whom to trust is each receiving node's own decision; a
    /// signature that does not verify still fails.
    any_signer: bool,
    /// Refs past the bound, for the next sync.
    pub(crate) deferred: BTreeSet<String>,
    /// Commits of one chain read at most from its tip (doctor's checks, which have no hub
    /// value to stop at); `None`, as a sync checks, down to where the other side stands.
    pub(crate) chain_depth: Option<u64>,
    /// What the checked message commits say, so that reconciling them reads none again.
    pub(crate) metas: HashMap<Oid, Meta>,
    /// By sealed segment ref: the message the hub's head names as that segment's last (the
    /// next segment's `Prev-Segment`), where the walk of the head's new messages crossed it
    /// and the head passed; `None` when two heads seen in one sync name different ones.
    pub(crate) followed: HashMap<String, Option<Oid>>,
    /// By topic, the hub's new messages walked so far this sync (ULID and content id to
    /// commit): a message twice in a topic is caught across its refs' walks too (a sealed
    /// segment's and the head's).
    hub_messages: HashMap<Topic, HashMap<(Ulid, Digest), Oid>>,
}

/// Whose signatures a check takes ([`Checks::signers`]).
#[derive(Clone, Copy)]
struct Signers {
    accept_unsigned: bool,
    any: bool,
}

impl Checks {
    fn signers(&self) -> Signers {
        Signers {
            accept_unsigned: self.accept_unsigned,
            any: self.any_signer,
        }
    }

    fn step(&mut self) -> Check {
        self.walked += 1;
        if self.walked > MAX_CHECKED_COMMITS {
            return Err(Bad::Budget);
        }
        Ok(())
    }
}

/// Reads a JSON document at `path` of a commit's tree; it must be canonical (JCS) when
/// `canonical`.
fn doc<T: DeserializeOwned>(
    r: &mut gatos_store::objects::Reader<'_>,
    tree: Oid,
    path: &str,
    canonical: bool,
) -> std::result::Result<(T, Vec<u8>), Bad> {
    let bytes = r
        .file(tree, path)?
        .ok_or_else(|| envelope(format!("no {path}")))?;
    let value: T = serde_json::from_slice(&bytes).map_err(|e| envelope(format!("{path}: {e}")))?;
    if canonical {
        let c = jcs::canonicalize(&bytes).map_err(|e| envelope(format!("{path}: {e}")))?;
        if c != bytes {
            return Err(envelope(format!("{path} is not canonical JSON (RFC 8785)")));
        }
    }
    Ok((value, bytes))
}

/// A control-plane commit from a remote counts only when a key this node trusts signed it
/// (ADR 0018).
fn signed_by_trusted(
    gatos: &crate::Gatos,
    c: &gatos_store::objects::Commit,
    signers: Signers,
) -> Check {
    let t = c.trailers();
    let kind = t.get(keys::KIND).unwrap_or("?").to_owned();
    match crate::keys::commit_signer(c.tree, &t) {
        Err(e) => Err(bad(
            ErrorCode::SignatureInvalid,
            format!("{kind} commit {}: {e}", c.id),
        )),
        Ok(None) if signers.accept_unsigned || signers.any => Ok(()),
        Ok(None) => Err(bad(
            ErrorCode::Forbidden,
            format!(
                "{kind} commit {} is not signed (from a remote it counts only when a key this node trusts signed it; history from before signatures is accepted by a sync that accepts unsigned history)",
                c.id
            ),
        )),
        Ok(Some(k))
            if signers.any || gatos.keys().current() == Some(k) || gatos.keys().is_trusted(&k) =>
        {
            Ok(())
        }
        Ok(Some(k)) => Err(bad(
            ErrorCode::UntrustedKey,
            format!(
                "{kind} commit {} is signed by {k}, which this node does not trust (git gatos keys trust {k})",
                c.id
            ),
        )),
    }
}

/// A settings or manifest commit's place (`Version`) counts one up from its actual
/// parent's (0 for a parent written without one), the lowest new commit's included (its
/// parent is this node's tip): a copy of a signed value keeps its place, so it can neither
/// be put on this node's chain as a child of its tip nor pass for a later value. A settings
/// commit without one (written by an earlier release; `required` is false for settings)
/// passes only where its parent has none: after a versioned commit it would reset the
/// places.
fn follows_parent_place(
    r: &mut gatos_store::objects::Reader<'_>,
    c: &gatos_store::objects::Commit,
    required: bool,
) -> Check {
    let parent = match c.parents.first() {
        Some(p) => crate::signing::chain_place(&r.commit(*p)?.trailers()),
        None => 0,
    };
    let trailers = c.trailers();
    if trailers.get(keys::VERSION).is_none() {
        if required {
            return Err(envelope(format!("commit {} has no Version", c.id)));
        }
        if parent == 0 {
            return Ok(());
        }
    }
    let place = crate::signing::chain_place(&trailers);
    if parent.checked_add(1) != Some(place) {
        return Err(envelope(format!(
            "commit {} is at place (Version) {place} after one at {parent}",
            c.id
        )));
    }
    Ok(())
}

/// What a sealed segment's ref must hold, as far as its own commit tells: a message of its
/// topic whose segment starts at `first` on `date` (that it is the segment's last message
/// is not checked here).
fn sealed_tip(gatos: &crate::Gatos, t: &Topic, date: &str, first: Ulid, value: Oid) -> Check {
    let m = chain::meta_in(&gatos.store().reader().commit(value)?, t)?;
    if m.segment_id != first || crate::messages::segment_date(first) != date {
        return Err(envelope(format!(
            "sealed segment {value} starts with {}, not {date}/{first}",
            m.segment_id
        )));
    }
    Ok(())
}

fn kind_is(c: &gatos_store::objects::Commit, want: &str) -> Check {
    let t = c.trailers();
    match t.get(keys::KIND) {
        Some(k) if k == want => Ok(()),
        Some(k) => Err(envelope(format!(
            "commit {} is a {k} commit, not a {want}",
            c.id
        ))),
        None => Err(envelope(format!(
            "commit {} has no Gatos-Kind trailer",
            c.id
        ))),
    }
}

fn trailer_is(c: &gatos_store::objects::Commit, key: &str, want: &str) -> Check {
    match c.trailers().get(key) {
        Some(v) if v == want => Ok(()),
        other => Err(envelope(format!(
            "commit {}: trailer {key} is {other:?}, expected {want:?}",
            c.id
        ))),
    }
}

impl Sync<'_> {
    /// Checks the hub's refs of this round (see the module documentation); rejected and
    /// deferred units are made to look like the local side for the rest of the round.
    pub(super) fn check_hub(&mut self) -> Result<()> {
        let hub = std::mem::take(&mut self.hub);
        let mut kinds: BTreeMap<String, RefKind> = BTreeMap::new();
        let mut ignored = 0u64;
        for (name, oid) in hub {
            match RefKind::parse(&name) {
                Some(k) => {
                    kinds.insert(name.clone(), k);
                    self.hub.insert(name, oid);
                }
                None => ignored += 1,
            }
        }
        if ignored > 0 {
            tracing::debug!(
                ignored,
                "remote refs that fit no entry of the layout were ignored"
            );
        }
        self.report.ignored = ignored;
        let mut ordered: Vec<_> = kinds.iter().collect();
        ordered.sort_by_key(|(_, k)| check_order(k));
        let mut frozen: BTreeSet<String> = BTreeSet::new();
        // A topic damaged here is rejected as this node's fault, and none of the hub's refs
        // of it (messages, summary, segments, checkpoints) is checked, adopted or pushed
        // over: what the hub holds of it was not found wrong.
        let damaged: Vec<(Topic, ErrorCode, String)> = self
            .damaged_here
            .iter()
            .map(|(t, e)| (t.clone(), e.code(), e.to_string()))
            .collect();
        for (t, code, why) in damaged {
            frozen.insert(names::topic_prefix(&t));
            self.reject_here(&t, code, &why);
        }
        for (name, kind) in ordered {
            let Some(&value) = self.hub.get(name) else {
                continue;
            };
            let topic = match kind {
                RefKind::Consumer(_, t) => Some(t),
                other => other.message_topic(),
            };
            if topic.is_some_and(|t| self.damaged_here.contains_key(t)) {
                if matches!(kind, RefKind::Consumer(..)) {
                    frozen.insert(name.clone());
                }
                continue;
            }
            if self.local.get(name) == Some(&value) {
                continue;
            }
            let unit = unit_of(name, kind);
            if frozen.contains(&unit) {
                continue;
            }
            match self.verdict(name, kind, value) {
                None => {}
                Some(Bad::Budget) => {
                    self.checks.deferred.insert(name.clone());
                    frozen.insert(unit);
                }
                Some(Bad::Invalid { code, reason }) => {
                    self.reject(name, value, code, reason);
                    if let RefKind::MessageSummary(t) = kind {
                        self.checks.summary_rejected.insert(t.clone());
                    }
                    frozen.insert(unit);
                }
            }
        }
        for unit in &frozen {
            self.freeze(unit);
        }
        Ok(())
    }

    /// This node's refs that differ from the hub's and fail the checks a hub's would, at
    /// most `bound` of them checked, the first of each unit: `(unit, the name it fails
    /// under, the ref that failed, why)` (see
    /// [`Sync::check_here`]). Also what `doctor` reports of this node's refs, with no hub.
    pub(crate) fn own_failures(&mut self, bound: usize) -> Vec<(String, String, String, Bad)> {
        let mut candidates: Vec<(String, RefKind, Oid)> = self
            .local
            .iter()
            .filter(|(n, v)| self.hub.get(*n) != Some(*v))
            .filter_map(|(n, v)| RefKind::parse(n).map(|k| (n.clone(), k, *v)))
            .filter(|(_, k, _)| !matches!(k, RefKind::MessageHead(_) | RefKind::MessageSummary(_)))
            .collect();
        // In the order the hub's are checked (heads and summaries are not among them).
        candidates.sort_by_key(|(_, k, _)| check_order(k));
        if candidates.is_empty() {
            return Vec::new();
        }
        // (unit, the name it is rejected or deferred under, the ref that failed, why)
        let mut failed: Vec<(String, String, String, Bad)> = Vec::new();
        let mut failed_units: HashSet<String> = HashSet::new();
        // The rules read "this node's value" as what a chain walks down to and the hub's as
        // what a result must close: for this node's refs the two sides trade places. Whom
        // to trust is for the receiving nodes: here any signer (or none) passes, and a
        // signature that does not verify fails.
        std::mem::swap(&mut self.local, &mut self.hub);
        self.checks.any_signer = true;
        for (name, kind, value) in candidates {
            let topic = match &kind {
                RefKind::Consumer(_, t) => Some(t),
                other => other.message_topic(),
            };
            if topic.is_some_and(|t| self.damaged_here.contains_key(t)) {
                continue;
            }
            // A bad sealed segment holds back its whole topic, rejected under its head's
            // name (so its checkpoints are held back too).
            let (unit, under) = match &kind {
                RefKind::MessageSealed(t, _, _) => {
                    (names::topic_prefix(t), names::message_head(t).to_string())
                }
                other => (unit_of(&name, other), name.clone()),
            };
            if failed_units.contains(&unit) {
                continue;
            }
            if self.checks.refs_checked >= bound {
                failed_units.insert(unit.clone());
                failed.push((unit, under, name, Bad::Budget));
                continue;
            }
            self.checks.refs_checked += 1;
            let outcome = match &kind {
                RefKind::MessageSealed(t, date, first) => {
                    sealed_tip(self.gatos, t, date, *first, value)
                }
                _ => self.check(&kind, value),
            };
            if outcome.is_err() {
                failed_units.insert(unit.clone());
            }
            match outcome {
                Ok(()) => {}
                Err(Bad::Budget) => failed.push((unit, under, name, Bad::Budget)),
                Err(Bad::Invalid { code, reason }) => {
                    let reason = if under == name {
                        reason
                    } else {
                        format!("{name}: {reason}")
                    };
                    failed.push((unit, under, name, Bad::Invalid { code, reason }));
                }
            }
        }
        self.checks.any_signer = false;
        std::mem::swap(&mut self.local, &mut self.hub);
        failed
    }

    /// Checks this node's own refs that differ from the hub's as the hub's are checked
    /// (the same rules: kind, trailers, documents, chains, signatures that verify; not whom
    /// this node trusts, which is each receiving node's decision), from their value down to
    /// the hub's (ADR 0047, session 18): a ref moved
    /// here by hand or by a tool onto a commit that is not what its name says would be
    /// handed to the hub, where every other node would reject it. A ref that fails is
    /// rejected as this node's fault (no remote value), and its unit (a job, a topic with
    /// its sealed segments and checkpoints, or the ref alone) is neither pushed nor adopted
    /// until it is repaired. Topic heads and summaries are not walked here: a head or
    /// summary that does not read was found before ([`Sync::damaged_here`]), and a topic's
    /// messages are this node's own writes, checked by their readers; a sealed segment's
    /// ref is read at its tip.
    pub(super) fn check_here(&mut self) {
        let bound = self.refs_bound();
        let failed = self.own_failures(bound);
        for (unit, name, _, why) in failed {
            let topic = RefKind::parse(&name).and_then(|k| k.message_topic().cloned());
            match why {
                Bad::Budget => {
                    self.checks.deferred.insert(name);
                }
                Bad::Invalid { code, reason } => self.reject(
                    &name,
                    Oid::NULL,
                    code,
                    format!(
                        "this node's own value of it does not pass the checks a hub's would, so nothing of it is pushed or taken from the hub until it is repaired here (git gatos doctor; reset the ref to a good commit or remove it): {reason}"
                    ),
                ),
            }
            // A topic held back keeps its checkpoints here and at the hub as they are: none
            // is pushed ahead of its messages, none adopted onto messages not taken.
            if let Some(t) = topic {
                let prefix = names::consumers_prefix();
                let checkpoints: Vec<String> = under(&self.local, &prefix)
                    .chain(under(&self.hub, &prefix))
                    .filter(
                        |n| matches!(RefKind::parse(n), Some(RefKind::Consumer(_, ct)) if ct == t),
                    )
                    .cloned()
                    .collect();
                for c in checkpoints {
                    self.freeze(&c);
                }
            }
            self.freeze(&unit);
        }
    }

    /// Refs one sync checks at most (`gatos.sync.maxCheckedRefs`).
    fn refs_bound(&self) -> usize {
        self.gatos
            .store()
            .config_string(MAX_CHECKED_REFS_KEY)
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(MAX_CHECKED_REFS)
    }

    /// Makes the hub's view of a unit the local one: nothing is adopted from it and
    /// nothing is pushed over it this round.
    fn freeze(&mut self, unit: &str) {
        // A prefix's names are a range of each side's sorted map, not a scan of both.
        let names: Vec<String> = if unit.ends_with('/') {
            under(&self.hub, unit)
                .chain(under(&self.local, unit))
                .cloned()
                .collect()
        } else {
            vec![unit.to_owned()]
        };
        for n in names {
            match self.local.get(&n) {
                Some(v) => self.hub.insert(n, *v),
                None => self.hub.remove(&n),
            };
        }
    }

    /// Records a rejection of `name` (the first of a sync stands) and logs it.
    fn reject(&mut self, name: &str, value: Oid, code: ErrorCode, reason: String) {
        if self.checks.rejected.contains_key(name) {
            return;
        }
        // `value` is all zeros when the hub holds none, or the fault is this node's own.
        tracing::info!(r#ref = name, remote = %value, code = code.as_str(), reason = %reason, "rejected a ref");
        self.checks.rejected.insert(
            name.to_owned(),
            SyncRejection {
                name: name.to_owned(),
                remote: value,
                code,
                reason,
            },
        );
    }

    /// Rejects a topic whose own refs on this node do not read ([`Sync::damaged_here`]),
    /// under its head's name: nothing of it is adopted or pushed until it is repaired. Its
    /// remote value is all zeros, since nothing the hub holds was found wrong (so doctor
    /// does not advise removing the hub's ref; it reports the damage here).
    fn reject_here(&mut self, topic: &Topic, code: ErrorCode, why: &str) {
        let reason = format!(
            "this node's own refs of it do not read, and nothing of it is synced until they are repaired (git gatos doctor): {why}"
        );
        self.reject(
            &names::message_head(topic).to_string(),
            Oid::NULL,
            code,
            reason,
        );
    }

    /// Rejects, under `under`, a unit this node cannot push because `missing`, an object its
    /// ref `name` needs, is missing or unreadable here ([`Sync::push_checked`]): as this
    /// node's fault, with no remote value.
    pub(super) fn reject_missing(&mut self, under: &str, name: &str, missing: Oid) {
        let reason = format!(
            "this node's own objects of it do not read: object {missing}, which {name} needs, is missing or unreadable here, so nothing of it is pushed until it is found again (git gatos doctor; git fsck)"
        );
        self.reject(under, Oid::NULL, ErrorCode::NotFound, reason);
    }

    /// Rejects a unit whose reconciliation failed on what the remote sent (a last line of
    /// defence: the checks above should have caught it).
    pub(super) fn reject_unit(&mut self, name: &str, err: &crate::Error) {
        let value = self.hub.get(name).copied().unwrap_or(Oid::NULL);
        self.reject(name, value, err.code(), err.to_string());
    }

    /// The verdict on one remote ref (memoized for the sync): `None` when it passed.
    fn verdict(&mut self, name: &str, kind: &RefKind, value: Oid) -> Option<Bad> {
        if let Some((v, verdict)) = self.checks.verdicts.get(name)
            && *v == value
        {
            return verdict.clone();
        }
        if self.checks.refs_checked >= self.refs_bound() {
            return Some(Bad::Budget);
        }
        self.checks.refs_checked += 1;
        let outcome = self.check(kind, value).err();
        if !matches!(outcome, Some(Bad::Budget)) {
            self.checks
                .verdicts
                .insert(name.to_owned(), (value, outcome.clone()));
        }
        outcome
    }

    fn check(&mut self, kind: &RefKind, value: Oid) -> Check {
        match kind {
            RefKind::MessageHead(t) => {
                // What a head's chain names as each crossed segment's last counts only once
                // the whole chain passed (a sealed ref's walk is not the chain this node
                // takes, and proves nothing about it).
                let mut crossed = Vec::new();
                self.check_messages(t, value, Some(&mut crossed))?;
                for (sealed, c) in crossed {
                    match self.checks.followed.get(&sealed) {
                        None => {
                            self.checks.followed.insert(sealed, Some(c));
                        }
                        Some(Some(f)) if *f != c => {
                            self.checks.followed.insert(sealed, None);
                        }
                        Some(_) => {}
                    }
                }
                Ok(())
            }
            RefKind::MessageSealed(t, date, first) => {
                self.check_messages(t, value, None)?;
                sealed_tip(self.gatos, t, date, *first, value)
            }
            RefKind::MessageSummary(t) => self.check_summary(t, value),
            RefKind::Consumer(g, t) => self.check_checkpoints(g, t, value),
            RefKind::ConfigTopic(t) => self.check_chain(kind, value, |s, r, c| {
                kind_is(c, "config")?;
                signed_by_trusted(s.gatos, c, s.checks.signers())?;
                let (cfg, _): (TopicConfig, _) = doc(r, c.tree, "config.json", false)?;
                if cfg.topic != *t {
                    return Err(envelope(format!("settings of {} under {t}", cfg.topic)));
                }
                follows_parent_place(r, c, false)?;
                Ok(c.parents.first().copied())
            }),
            RefKind::ConfigQueue(q) => self.check_chain(kind, value, |s, r, c| {
                kind_is(c, "config")?;
                signed_by_trusted(s.gatos, c, s.checks.signers())?;
                let (cfg, _): (QueueConfig, _) = doc(r, c.tree, "config.json", false)?;
                if cfg.queue != *q {
                    return Err(envelope(format!("settings of {} under {q}", cfg.queue)));
                }
                follows_parent_place(r, c, false)?;
                Ok(c.parents.first().copied())
            }),
            RefKind::Manifest(n) => self.check_manifests(n, value),
            RefKind::ArchiveJobs(month) => self.check_archive(month, value),
            RefKind::Job(id) => self.check_job(*id, value),
            RefKind::JobClaim(id) => self.check_claims(*id, value),
            RefKind::JobResult(id) => self.check_result(*id, value),
            RefKind::JobCancel(id) => {
                let mut r = self.gatos.store().reader();
                let c = r.commit(value)?;
                kind_is(&c, "cancel")?;
                signed_by_trusted(self.gatos, &c, self.checks.signers())?;
                trailer_is(&c, keys::JOB, &id.to_string())?;
                let (d, _): (CancelDoc, _) = doc(&mut r, c.tree, "cancel.json", true)?;
                if d.job != *id {
                    return Err(envelope(format!("cancel of job {} under {id}", d.job)));
                }
                Ok(())
            }
            RefKind::TrustKey(k) => self.check_key(k, value),
            RefKind::TrustRevoked(k) => self.check_revocation(k, value),
            RefKind::TrustRevocation(k, digest) => {
                self.check_revocation(k, value)?;
                let mut r = self.gatos.store().reader();
                let c = r.commit(value)?;
                let doc = r.file(c.tree, "revocation.json")?.unwrap_or_default();
                if Digest::of(&doc).to_string() != format!("blake3:{digest}") {
                    return Err(envelope(format!(
                        "revocation {value} is not the record its name says"
                    )));
                }
                Ok(())
            }
        }
    }

    /// What the sealed segment refs of `t` hold, here and at the hub.
    fn sealed_values(&self, t: &Topic) -> HashSet<Oid> {
        let prefix = names::topic_prefix(t);
        [&self.hub, &self.local]
            .into_iter()
            .flat_map(|refs| {
                refs.range::<str, _>((
                    std::ops::Bound::Included(prefix.as_str()),
                    std::ops::Bound::Unbounded,
                ))
                .take_while(|(n, _)| n.starts_with(&prefix))
                .filter(|(n, _)| matches!(RefKind::parse(n), Some(RefKind::MessageSealed(..))))
                .map(|(_, v)| *v)
            })
            .collect()
    }

    /// A topic's chain from `tip` down to the first message this node holds at that
    /// position (or the first retained one).
    /// `crossed` (a head's walk) receives, for each segment end the walk crossed, the
    /// sealed ref's name and the message the next segment names as that segment's last.
    fn check_messages(
        &mut self,
        t: &Topic,
        tip: Oid,
        mut crossed: Option<&mut Vec<(String, Oid)>>,
    ) -> Check {
        let local_through = self.gatos.messages().summary(t)?.through;
        let through = if self.checks.summary_rejected.contains(t) {
            local_through
        } else {
            let hub_summary = self.hub.get(names::message_summary(t).as_str()).copied();
            local_through.max(self.through_of(t, hub_summary).unwrap_or(0))
        };
        let view = self.gatos.messages().view(t).ok().flatten();
        // The system topics, and topics whose settings here say so, need signed messages.
        let signed =
            chain::is_signed_topic(t) || self.gatos.topic_config(t).is_ok_and(|(c, _)| c.sign);
        let known = |seq: u64, c: Oid| -> bool {
            view.as_ref().is_some_and(|v| {
                v.retained() > 0
                    && seq >= v.first_seq()
                    && seq <= v.last_seq()
                    && v.record(seq).is_ok_and(|r| r.commit == c)
            })
        };
        let store = self.gatos.store();
        let mut r = store.reader();
        let topic = t.to_string();
        // 1. Walk the new commits (each read once), checking what their commits say.
        let mut walked: Vec<(Meta, Oid)> = Vec::new();
        let mut boundary: Option<Meta> = None;
        let mut at = Some(tip);
        let mut sealed_values: Option<HashSet<Oid>> = None;
        while let Some(c) = at {
            // A segment's last message is fetched only through a sealed ref that holds it:
            // one that none holds is named here, not reported as a missing object.
            if let Some((ch, _)) = walked.last()
                && ch.prev_segment == Some(c)
                && !sealed_values
                    .get_or_insert_with(|| self.sealed_values(t))
                    .contains(&c)
            {
                return Err(envelope(format!(
                    "message {} follows {c}, the last message of the segment before it, which {NO_SEALED_REF} of {topic} holds (here or at the hub)",
                    ch.commit
                )));
            }
            let commit = r.commit(c)?;
            let tr = commit.trailers();
            let m = chain::meta_with(&commit, &tr)?;
            if let Some((ch, _)) = walked.last()
                && ch.prev_segment == Some(c)
            {
                // A segment boundary: the segment below must be anchored by its sealed ref
                // (Prev-Segment is a trailer, not a parent, so only that ref keeps it).
                let sealed = names::message_sealed(
                    t,
                    &crate::messages::segment_date(m.segment_id),
                    m.segment_id,
                )
                .to_string();
                if self.hub.get(&sealed) != Some(&c) && self.local.get(&sealed) != Some(&c) {
                    return Err(envelope(format!(
                        "message {} follows a segment that {NO_SEALED_REF} holds ({sealed})",
                        ch.commit
                    )));
                }
                if let Some(x) = crossed.as_mut() {
                    x.push((sealed, c));
                }
            }
            // Before the shortcut below: a message that passed in another topic's walk is
            // not this topic's.
            if tr.get(keys::TOPIC) != Some(topic.as_str()) {
                return Err(envelope(format!("message {c} is not of topic {topic}")));
            }
            if self.checks.valid.contains(&c) || known(m.seq, c) {
                boundary = Some(m);
                break;
            }
            self.checks.step()?;
            if signed {
                signed_by_trusted(self.gatos, &commit, self.checks.signers())?;
            }
            if m.prev().is_none() && m.seq != 1 && m.seq > through.saturating_add(1) {
                return Err(envelope(format!(
                    "message {c} at seq {} has no previous message",
                    m.seq
                )));
            }
            let stop = m.seq <= through.saturating_add(1);
            at = m.prev();
            walked.push((m, commit.tree));
            if stop {
                break;
            }
        }
        drop(r);
        // A message is in a topic once: a chain that carries one message twice (a signed
        // message replayed, or a chain rebuilt from its signed commits; the signature covers
        // the message, not its place) is not taken. Checked among the new messages, and
        // against the messages below them, which are the hub's as well as this node's. (The
        // same ULID with other content is a clash, which a sync resolves by appending this
        // node's again: docs/sync.md.)
        let mut seen: HashSet<(Ulid, Digest)> = HashSet::with_capacity(walked.len());
        for (m, _) in &walked {
            if !seen.insert((m.ulid, m.content_id)) {
                return Err(envelope(format!(
                    "message {} is message {} again: a message is in a topic once",
                    m.commit, m.ulid
                )));
            }
        }
        if !self.checks.any_signer {
            let known = self.checks.hub_messages.entry(t.clone()).or_default();
            for (m, _) in &walked {
                match known.insert((m.ulid, m.content_id), m.commit) {
                    Some(other) if other != m.commit => {
                        return Err(envelope(format!(
                            "message {} is message {} again (as {other}): a message is in a \
                             topic once",
                            m.commit, m.ulid
                        )));
                    }
                    _ => {}
                }
            }
        }
        if let (Some(b), Some(v)) = (&boundary, &view) {
            let ulids: Vec<Ulid> = walked.iter().map(|(m, _)| m.ulid).collect();
            let below = v.find_all(&ulids, b.seq).map_err(Bad::from)?;
            if !below.is_empty() {
                let mut by_ulid: HashMap<Ulid, Vec<&(Meta, Oid)>> = HashMap::new();
                for w in &walked {
                    by_ulid.entry(w.0.ulid).or_default().push(w);
                }
                let mut r = store.reader();
                for rec in below {
                    for (m, tree) in by_ulid.get(&rec.ulid).into_iter().flatten() {
                        let blob = r.lookup(*tree, ENVELOPE_PATH)?.map(|e| e.oid);
                        if blob == Some(rec.blob) {
                            return Err(envelope(format!(
                                "message {} is message {} again, which {topic} holds below it: \
                                 a message is in a topic once",
                                m.commit, m.ulid
                            )));
                        }
                    }
                }
            }
        }
        // 2. Their envelopes, on every core (the bulk of the work: trees, blobs, hashes).
        let lens = check_envelopes(store, &topic, &walked)?;
        // 3. The links, now that every envelope's length is known.
        for (i, (m, _)) in walked.iter().enumerate() {
            let len = lens[i];
            if m.segment_seq == 1 && (m.segment_id != m.ulid || m.segment_bytes != len) {
                return Err(envelope(format!(
                    "message {}: a segment's first message names another segment",
                    m.commit
                )));
            }
            let below = walked.get(i + 1).map(|(b, _)| b).or(boundary.as_ref());
            if let Some(b) = below
                && (walked.get(i + 1).is_some() || m.seq > through.saturating_add(1))
            {
                link(m, len, b)?;
            }
        }
        for (m, _) in walked {
            self.checks.valid.insert(m.commit);
            if self.checks.metas.len() < MAX_KEPT_METAS {
                self.checks.metas.insert(m.commit, m);
            }
        }
        Ok(())
    }

    /// A remote summary chain: well formed, linked, and — for what it prunes beyond this
    /// node's own summary — matching this node's messages, past every local consumer group.
    fn check_summary(&mut self, t: &Topic, tip: Oid) -> Check {
        let local = self.local.get(names::message_summary(t).as_str()).copied();
        let local_through = self.gatos.messages().summary(t)?.through;
        let mut r = self.gatos.store().reader();
        let mut docs: Vec<(Oid, SummaryDoc)> = Vec::new();
        let mut at = Some(tip);
        while let Some(c) = at {
            if Some(c) == local {
                break;
            }
            self.checks.step()?;
            let commit = r.commit(c)?;
            kind_is(&commit, "summary")?;
            signed_by_trusted(self.gatos, &commit, self.checks.signers())?;
            trailer_is(&commit, keys::TOPIC, t.as_str())?;
            if commit.parents.len() > 1 {
                return Err(envelope(format!("summary {c} has more than one parent")));
            }
            let (d, bytes): (SummaryDoc, _) = doc(
                &mut r,
                commit.tree,
                crate::messages::prune::SUMMARY_PATH,
                true,
            )?;
            trailer_is(&commit, keys::SEQ, &d.last_seq.to_string())?;
            trailer_is(&commit, keys::CONTENT_ID, &Digest::of(&bytes).to_string())?;
            if d.topic != *t
                || d.first_seq == 0
                || d.last_seq < d.first_seq
                || d.count != d.last_seq - d.first_seq + 1
            {
                return Err(envelope(format!("summary {c}: inconsistent range")));
            }
            if let Some((_, newer)) = docs.last()
                && d.last_seq.checked_add(1) != Some(newer.first_seq)
            {
                return Err(envelope(format!(
                    "summary {c}: the next summary does not follow it"
                )));
            }
            if commit.parents.is_empty() && d.first_seq != 1 {
                return Err(envelope(format!(
                    "summary {c}: the first summary starts at seq {}",
                    d.first_seq
                )));
            }
            at = commit.parents.first().copied();
            docs.push((c, d));
        }
        drop(r);
        // What it prunes beyond this node's summary must be this node's history, and every
        // local consumer group must be past it.
        /// What this node holds of a summary's range.
        enum Held {
            Nothing,
            Same,
            Other(String),
        }
        let messages = self.gatos.messages();
        for (c, d) in docs.iter().rev() {
            if d.last_seq <= local_through {
                continue;
            }
            // Through the index, read again from a rebuilt one when it is torn.
            let held = messages.with_view(t, |view| {
                let Some(view) = view else {
                    return Ok(Held::Nothing);
                };
                if view.retained() == 0
                    || view.first_seq() > d.last_seq
                    || view.last_seq() < d.first_seq
                {
                    return Ok(Held::Nothing);
                }
                let from = d.first_seq.max(view.first_seq());
                let to = d.last_seq.min(view.last_seq());
                let mut r = self.gatos.store().reader();
                if from == d.first_seq && to == d.last_seq {
                    if crate::messages::prune::range_digest(view, &mut r, from, to, |_, _| {})?
                        != d.digest
                    {
                        return Ok(Held::Other(format!(
                            "summary {c} prunes seq {}..{} but its digest does not match this node's messages there",
                            d.first_seq, d.last_seq
                        )));
                    }
                } else {
                    let commit = r.commit(*c)?;
                    let table = r
                        .file(commit.tree, crate::messages::prune::PRUNED_ULIDS_PATH)?
                        .unwrap_or_default();
                    let mut seq = from;
                    while seq <= to {
                        for rec in view.records(seq, 4096.min(to + 1 - seq))? {
                            if crate::messages::prune::pruned_seq(&table, rec.ulid) != Some(seq) {
                                return Ok(Held::Other(format!(
                                    "summary {c} prunes seq {seq}, where this node holds another message ({})",
                                    rec.ulid
                                )));
                            }
                            seq += 1;
                        }
                    }
                }
                Ok(Held::Same)
            })?;
            match held {
                Held::Nothing => continue,
                Held::Same => {}
                Held::Other(reason) => return Err(bad(ErrorCode::DigestMismatch, reason)),
            }
            for (group, at) in self.local_groups(t)? {
                if at < d.last_seq {
                    return Err(bad(
                        ErrorCode::Forbidden,
                        format!(
                            "summary {c} prunes through seq {}, which consumer group '{group}' of this node has not passed (at seq {at})",
                            d.last_seq
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The local consumer groups of a topic and their positions.
    fn local_groups(&self, t: &Topic) -> std::result::Result<Vec<(Group, u64)>, Bad> {
        let mut out = Vec::new();
        let mut r = self.gatos.store().reader();
        for (name, at) in &self.local {
            if let Some(RefKind::Consumer(g, topic)) = RefKind::parse(name)
                && topic == *t
            {
                let seq = crate::checkpoints::read_doc(&mut r, *at).map_or(0, |d| d.seq);
                out.push((g, seq));
            }
        }
        Ok(out)
    }

    /// A chain from `tip` down to this node's value of the same ref (or its root), each
    /// commit checked by `each`, which returns the next one (the first parent, for all but
    /// archives). A remote value that is on the local chain (the
    /// hub is behind) is this node's own history and passes.
    fn check_chain(
        &mut self,
        kind: &RefKind,
        tip: Oid,
        mut each: impl FnMut(
            &mut Self,
            &mut gatos_store::objects::Reader<'_>,
            &gatos_store::objects::Commit,
        ) -> std::result::Result<Option<Oid>, Bad>,
    ) -> Check {
        let name = local_name(kind);
        let local = self.local.get(&name).copied();
        if let Some(l) = local
            && self.on_chain(tip, l)?
        {
            return Ok(());
        }
        let store = self.gatos.store();
        let mut r = store.reader();
        let mut at = Some(tip);
        let mut read = 0u64;
        while let Some(c) = at {
            // A commit that passed under another ref is not taken as this ref's tip unread:
            // the tip is always checked as what this ref's name says.
            if Some(c) == local || (c != tip && self.checks.valid.contains(&c)) {
                break;
            }
            if self.checks.chain_depth.is_some_and(|d| read >= d) {
                break;
            }
            read += 1;
            self.checks.step()?;
            let commit = r.commit(c)?;
            // Archive commits also name the job commits they fold; the chain is their first
            // parent (checked against the index's `prev`).
            if commit.parents.len() > 1 && !matches!(kind, RefKind::ArchiveJobs(_)) {
                return Err(envelope(format!("commit {c} has more than one parent")));
            }
            at = each(self, &mut r, &commit)?;
            self.checks.valid.insert(c);
        }
        Ok(())
    }

    fn check_checkpoints(&mut self, g: &Group, t: &Topic, tip: Oid) -> Check {
        let kind = RefKind::Consumer(g.clone(), t.clone());
        self.check_chain(&kind, tip, |s, r, c| {
            kind_is(c, "checkpoint")?;
            signed_by_trusted(s.gatos, c, s.checks.signers())?;
            let (d, _): (CheckpointDoc, _) =
                doc(r, c.tree, crate::checkpoints::CHECKPOINT_PATH, true)?;
            if d.group != *g || d.topic != *t {
                return Err(envelope(format!(
                    "checkpoint {} is of {}/{}",
                    c.id, d.group, d.topic
                )));
            }
            if d.seq > 0 && (d.ulid.is_none() || d.commit.is_none()) {
                return Err(envelope(format!(
                    "checkpoint {} at seq {} names no message",
                    c.id, d.seq
                )));
            }
            Ok(c.parents.first().copied())
        })
    }

    fn check_manifests(&mut self, n: &ManifestName, tip: Oid) -> Check {
        let kind = RefKind::Manifest(n.clone());
        self.check_chain(&kind, tip, |s, r, c| {
            kind_is(c, "manifest")?;
            signed_by_trusted(s.gatos, c, s.checks.signers())?;
            trailer_is(c, keys::MANIFEST, n.as_str())?;
            let (spec, bytes): (JobSpec, _) =
                doc(r, c.tree, crate::manifests::MANIFEST_PATH, true)?;
            trailer_is(c, keys::CONTENT_ID, &Digest::of(&bytes).to_string())?;
            crate::jobs::manifest::check_spec(&spec).map_err(Bad::from)?;
            follows_parent_place(r, c, true)?;
            Ok(c.parents.first().copied())
        })
    }

    fn check_archive(&mut self, month: &str, tip: Oid) -> Check {
        let kind = RefKind::ArchiveJobs(month.to_owned());
        let gatos = self.gatos;
        let signers = self.checks.signers();
        self.check_chain(&kind, tip, |_, _, c| {
            kind_is(c, "archive")?;
            signed_by_trusted(gatos, c, signers)?;
            crate::jobs::archive::check_commit(gatos, c, month).map_err(Bad::from)
        })
    }

    fn check_job(&mut self, id: Ulid, value: Oid) -> Check {
        let mut r = self.gatos.store().reader();
        let c = r.commit(value)?;
        kind_is(&c, "job")?;
        trailer_is(&c, keys::JOB, &id.to_string())?;
        if !c.parents.is_empty() {
            return Err(envelope(format!("job commit {value} has parents")));
        }
        let (spec, bytes): (JobSpec, _) =
            doc(&mut r, c.tree, crate::jobs::records::JOB_PATH, true)?;
        trailer_is(&c, keys::CONTENT_ID, &Digest::of(&bytes).to_string())?;
        crate::jobs::manifest::check_spec(&spec).map_err(Bad::from)?;
        // A job from a remote counts only when a key this node trusts asked for it (ADR
        // 0019): anyone who can push to the hub could otherwise make workers run anything.
        let verdict = crate::jobs::enqueuer::check(self.gatos, id, value)?;
        let signature_only = self.checks.any_signer
            && matches!(
                verdict,
                crate::jobs::enqueuer::Verdict::Untrusted(_)
                    | crate::jobs::enqueuer::Verdict::Unsigned
            );
        if let Some(why) = verdict.reason()
            && !signature_only
        {
            return Err(bad(verdict.code(), why));
        }
        Ok(())
    }

    /// A claim chain follows the claim state machine, down to this node's claim; nothing
    /// comes after `closed`.
    fn check_claims(&mut self, id: Ulid, tip: Oid) -> Check {
        let local = self.local.get(names::job_claim(id).as_str()).copied();
        if let Some(l) = local
            && self.on_chain(tip, l)?
        {
            return Ok(());
        }
        let mut r = self.gatos.store().reader();
        let mut newer: Option<ClaimDoc> = None;
        let mut at = Some(tip);
        let id_text = id.to_string();
        let mut read = 0u64;
        while let Some(c) = at {
            if self.checks.chain_depth.is_some_and(|d| read >= d) {
                break;
            }
            read += 1;
            self.checks.step()?;
            let commit = r.commit(c)?;
            let known = Some(c) == local || self.checks.valid.contains(&c);
            let (d, _): (ClaimDoc, _) = if known {
                let (d, b) = doc(&mut r, commit.tree, crate::jobs::records::CLAIM_PATH, false)?;
                (d, b)
            } else {
                kind_is(&commit, "claim")?;
                trailer_is(&commit, keys::JOB, &id_text)?;
                if commit.parents.len() > 1 {
                    return Err(envelope(format!("claim {c} has more than one parent")));
                }
                doc(&mut r, commit.tree, crate::jobs::records::CLAIM_PATH, true)?
            };
            if d.job != id || d.attempt == 0 {
                return Err(envelope(format!("claim {c} is not a claim of job {id}")));
            }
            if !known {
                claim_times(c, &d, self.gatos.now())?;
            }
            if let Some(n) = &newer {
                claim_step(c, &d, n)?;
            }
            if known {
                break;
            }
            if commit.parents.is_empty() && (d.state != ClaimState::Running || d.attempt != 1) {
                return Err(bad(
                    ErrorCode::Conflict,
                    format!("claim chain of job {id} does not start with a first claim"),
                ));
            }
            self.checks.valid.insert(c);
            at = commit.parents.first().copied();
            newer = Some(d);
        }
        Ok(())
    }

    /// A result closes the claim chain the hub holds for its job, and is the child of the
    /// job commit and that `closed` claim.
    fn check_result(&mut self, id: Ulid, value: Oid) -> Check {
        let mut r = self.gatos.store().reader();
        let c = r.commit(value)?;
        kind_is(&c, "result")?;
        trailer_is(&c, keys::JOB, &id.to_string())?;
        let (d, _): (ResultDoc, _) = doc(&mut r, c.tree, crate::jobs::records::RESULT_PATH, true)?;
        let [job, closed] = c.parents.as_slice() else {
            return Err(envelope(format!(
                "result {value} does not have a job and a claim as parents"
            )));
        };
        let hub_job = self.hub.get(names::job(id).as_str()).copied();
        let local_job = self.local.get(names::job(id).as_str()).copied();
        if Some(*job) != hub_job && Some(*job) != local_job {
            return Err(envelope(format!(
                "result {value} is not of the job commit of {id}"
            )));
        }
        if self.hub.get(names::job_claim(id).as_str()) != Some(closed) {
            return Err(bad(
                ErrorCode::Conflict,
                format!("result {value} does not close the claim chain held for {id}"),
            ));
        }
        let cc = r.commit(*closed)?;
        let (cd, _): (ClaimDoc, _) = doc(&mut r, cc.tree, crate::jobs::records::CLAIM_PATH, false)?;
        if cd.state != ClaimState::Closed || cd.job != id || cd.attempt != d.attempt {
            return Err(envelope(format!(
                "result {value} does not follow a closed claim of its attempt"
            )));
        }
        Ok(())
    }

    fn check_key(&mut self, k: &KeyId, value: Oid) -> Check {
        let mut r = self.gatos.store().reader();
        let c = r.commit(value)?;
        kind_is(&c, "key")?;
        let (rec, bytes): (crate::keys::KeyRecord, _) = doc(&mut r, c.tree, "key.json", false)?;
        let sig = r.file(c.tree, "key.sig")?.unwrap_or_default();
        if rec.key != *k || !crate::keys::verify_b64(k, &bytes, &String::from_utf8_lossy(&sig)) {
            return Err(bad(
                ErrorCode::SignatureInvalid,
                format!("key record {value} is not signed by {k}"),
            ));
        }
        Ok(())
    }

    fn check_revocation(&mut self, k: &KeyId, value: Oid) -> Check {
        let mut r = self.gatos.store().reader();
        let c = r.commit(value)?;
        kind_is(&c, "revocation")?;
        let (rev, bytes): (crate::keys::Revocation, _) =
            doc(&mut r, c.tree, "revocation.json", false)?;
        let sig = r.file(c.tree, "revocation.sig")?.unwrap_or_default();
        if rev.key != *k {
            return Err(envelope(format!("revocation {value} revokes {}", rev.key)));
        }
        // As for any signed commit, this node's own key counts as trusted (a revocation it
        // made must reach the hub even where its key is not listed in `gatos.trust`).
        let keys = self.gatos.keys();
        if rev.revoked_by != *k
            && !self.checks.any_signer
            && keys.current() != Some(rev.revoked_by)
            && !keys.is_trusted(&rev.revoked_by)
        {
            return Err(bad(
                ErrorCode::UntrustedKey,
                format!(
                    "revocation {value} is signed by {}, which this node does not trust",
                    rev.revoked_by
                ),
            ));
        }
        if !crate::keys::verify_b64(&rev.revoked_by, &bytes, &String::from_utf8_lossy(&sig)) {
            return Err(bad(
                ErrorCode::SignatureInvalid,
                format!("revocation {value}: the signature does not verify"),
            ));
        }
        Ok(())
    }

    /// Lists this sync's rejections in the report, logs them (bounded) and audits them
    /// once.
    pub(super) fn settle_rejections(&mut self) {
        let all: Vec<SyncRejection> = self.checks.rejected.values().cloned().collect();
        self.report.rejected_count = all.len() as u64;
        self.report.rejected = all.iter().take(MAX_LISTED_REJECTIONS).cloned().collect();
        for d in &self.checks.deferred {
            if !self.report.retry.contains(d) {
                self.report.retry.push(d.clone());
            }
        }
        if all.is_empty() {
            return;
        }
        if let Err(e) = log_rejections(self.gatos, &self.remote, &all) {
            tracing::warn!(error = %e, "could not write the local log of rejected refs");
        }
        crate::audit::record(
            self.gatos,
            "sync.rejected",
            &format!("remote:{}", self.remote),
            serde_json::Value::Null,
            serde_json::json!({
                "count": all.len(),
                "refs": all.iter().take(20).map(|x| serde_json::json!({"ref": x.name, "remote": x.remote, "code": x.code})).collect::<Vec<_>>(),
            }),
            None,
        );
    }
}

/// The local name of a ref kind (the chain kinds).
fn local_name(kind: &RefKind) -> String {
    match kind {
        RefKind::Consumer(g, t) => names::consumer(g, t).to_string(),
        RefKind::ConfigTopic(t) => names::config_topic(t).to_string(),
        RefKind::ConfigQueue(q) => names::config_queue(q).to_string(),
        RefKind::Manifest(n) => names::manifest(n).to_string(),
        RefKind::ArchiveJobs(m) => names::archive_jobs(m).to_string(),
        RefKind::MessageSummary(t) => names::message_summary(t).to_string(),
        RefKind::MessageHead(t) => names::message_head(t).to_string(),
        RefKind::MessageSealed(t, d, u) => names::message_sealed(t, d, *u).to_string(),
        RefKind::Job(id) => names::job(*id).to_string(),
        RefKind::JobClaim(id) => names::job_claim(*id).to_string(),
        RefKind::JobResult(id) => names::job_result(*id).to_string(),
        RefKind::JobCancel(id) => names::job_cancel(*id).to_string(),
        RefKind::TrustKey(k) => names::trust_key(k).to_string(),
        RefKind::TrustRevoked(k) => names::trust_revoked(k).to_string(),
        RefKind::TrustRevocation(k, d) => names::trust_revocation(k, d).to_string(),
    }
}

/// Checks each walked message's envelope — canonical JCS whose blake3 is its `Content-Id`,
/// naming its ULID and `topic` — on up to two threads; returns the envelopes' lengths in
/// the order given.
fn check_envelopes(
    store: &gatos_store::Store,
    topic: &str,
    walked: &[(Meta, Oid)],
) -> std::result::Result<Vec<u64>, Bad> {
    let one = |part: &[(Meta, Oid)]| -> std::result::Result<Vec<u64>, Bad> {
        let mut r = store.reader();
        let mut blob = Vec::new();
        let mut lens = Vec::with_capacity(part.len());
        for (m, tree) in part {
            let c = m.commit;
            let e = r
                .lookup(*tree, ENVELOPE_PATH)?
                .filter(|e| !e.is_tree)
                .ok_or_else(|| envelope(format!("message {c} has no {ENVELOPE_PATH}")))?;
            r.blob_into(e.oid, &mut blob)?;
            if Digest::of(&blob) != m.content_id {
                return Err(bad(
                    ErrorCode::DigestMismatch,
                    format!("message {c}: Content-Id does not match its envelope"),
                ));
            }
            let env =
                EnvelopeRef::parse(&blob).map_err(|e| envelope(format!("message {c}: {e}")))?;
            if env.ulid != m.ulid || env.topic != topic {
                return Err(envelope(format!(
                    "message {c}: its envelope names another message or topic"
                )));
            }
            if jcs::canonicalize(&blob).ok().as_deref() != Some(blob.as_slice()) {
                return Err(envelope(format!("message {c}: envelope is not canonical")));
            }
            lens.push(blob.len() as u64);
        }
        Ok(lens)
    };
    if walked.len() < 512 {
        return one(walked);
    }
    let (first, second) = walked.split_at(walked.len() / 2);
    let (a, b) = std::thread::scope(|s| {
        let h = s.spawn(|| one(second));
        (one(first), h.join())
    });
    let b = b.map_err(|_| bad(ErrorCode::Internal, "an envelope check thread panicked"))?;
    let mut lens = a?;
    lens.extend(b?);
    Ok(lens)
}

/// Checks the link from message `m` to the next one, `child` (whose envelope is `len`
/// bytes).
fn link(child: &Meta, len: u64, m: &Meta) -> Check {
    // Checked: these numbers come from a remote.
    let ok = m.seq.checked_add(1) == Some(child.seq)
        && if child.parent == Some(m.commit) {
            m.segment_seq.checked_add(1) == Some(child.segment_seq)
                && child.segment_id == m.segment_id
                && child.segment_bytes == m.segment_bytes.saturating_add(len)
        } else {
            child.prev_segment == Some(m.commit) && child.segment_seq == 1
        };
    if ok {
        Ok(())
    } else {
        Err(envelope(format!(
            "message {} does not follow {} (Seq or segment trailers)",
            child.commit, m.commit
        )))
    }
}

/// How far ahead of this node's clock a remote claim's times may be (clock skew between
/// nodes).
const CLOCK_SKEW: gatos_types::Dur = gatos_types::Dur::from_secs(24 * 3600);

/// The times of one claim commit are ones a gatos writer could have written: a claim not in
/// the future, a lease that ends at most [`MAX_LEASE`](crate::jobs::lifecycle::MAX_LEASE)
/// from now (measured from now, not from the claim: releases before 2026-12-07 took longer
/// leases, which pass once they are that close to their end).
fn claim_times(c: Oid, d: &ClaimDoc, now: gatos_types::Timestamp) -> Check {
    let max = crate::jobs::lifecycle::MAX_LEASE;
    let latest = now.plus(CLOCK_SKEW);
    let ok = d.claimed_at <= latest && d.lease_until <= latest.plus(max);
    if ok {
        Ok(())
    } else {
        Err(bad(
            ErrorCode::Conflict,
            format!(
                "claim {c} of job {}: claimed at {} with a lease until {}, which no worker \
                 asks (a lease ends at most 30 days from now, a claim is not in the future)",
                d.job, d.claimed_at, d.lease_until
            ),
        ))
    }
}

/// One step of the claim state machine, from `older` (commit `c`) to `newer`.
fn claim_step(c: Oid, older: &ClaimDoc, newer: &ClaimDoc) -> Check {
    // A takeover happens once the lease it takes over has lapsed, by the taker's clock,
    // which is the clock of its `claimed_at`.
    if matches!(older.state, ClaimState::Running | ClaimState::Heartbeat)
        && newer.state == ClaimState::Running
        && newer.claimed_at < older.lease_until
    {
        return Err(bad(
            ErrorCode::Conflict,
            format!(
                "claim chain of job {}: attempt {} was claimed at {}, before the lease of \
                 attempt {} ran out ({}, {c})",
                older.job, newer.attempt, newer.claimed_at, older.attempt, older.lease_until
            ),
        ));
    }
    let ok = match (older.state, newer.state) {
        (ClaimState::Closed, _) => false,
        (_, ClaimState::Running) => newer.attempt == older.attempt + 1,
        (
            ClaimState::Running | ClaimState::Heartbeat,
            ClaimState::Heartbeat | ClaimState::Released,
        ) => newer.attempt == older.attempt,
        (_, ClaimState::Closed) => newer.attempt == older.attempt,
        (ClaimState::Released, ClaimState::Heartbeat | ClaimState::Released) => false,
    };
    // Within one attempt the holder, its key and its lease token never change (ADR 0022).
    let same_holder = newer.state == ClaimState::Running
        || (newer.worker == older.worker
            && newer.worker_key == older.worker_key
            && newer.lease_token_hash == older.lease_token_hash);
    let ok = ok && same_holder;
    if ok {
        Ok(())
    } else {
        Err(bad(
            ErrorCode::Conflict,
            format!(
                "claim chain of job {}: {:?} attempt {} cannot follow {:?} attempt {} ({c})",
                older.job, newer.state, newer.attempt, older.state, older.attempt
            ),
        ))
    }
}

/// The local log of rejected refs: `<git-dir>/gatos/sync/rejected.jsonl`, one line per
/// rejection (`{at, remote, ref, code, reason}`), at most [`MAX_LOGGED_REJECTIONS`].
pub fn rejected_log_path(gatos: &crate::Gatos) -> std::path::PathBuf {
    gatos
        .store()
        .gatos_dir()
        .join("sync")
        .join("rejected.jsonl")
}

fn log_rejections(gatos: &crate::Gatos, remote: &str, new: &[SyncRejection]) -> Result<()> {
    let path = rejected_log_path(gatos);
    let io = |e: std::io::Error| {
        crate::Error::new(ErrorCode::Internal, format!("{}: {e}", path.display()))
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let at = gatos.now().to_string();
    let mut lines: Vec<String> = old.lines().map(str::to_owned).collect();
    for x in new {
        lines.push(
            serde_json::json!({"at": at, "remote": remote, "ref": x.name, "remote_value": x.remote, "code": x.code, "reason": x.reason})
                .to_string(),
        );
    }
    let skip = lines.len().saturating_sub(MAX_LOGGED_REJECTIONS);
    let mut text = lines[skip..].join("\n");
    text.push('\n');
    let tmp = path.with_extension(format!("jsonl.{}", std::process::id()));
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)
}

/// The most rejections [`recent_rejections`] returns at once.
pub const MAX_RECENT_REJECTIONS: usize = 1_000;

/// Bytes of the log [`recent_rejections`] reads, from its end: the writer keeps
/// [`MAX_LOGGED_REJECTIONS`] lines; a file grown past this by another hand is read only in
/// its newest part.
pub const MAX_REJECTION_LOG_READ: u64 = 4 << 20;

/// Lines of the log longer than this are skipped unread.
const MAX_REJECTION_LINE: usize = 64 << 10;

/// The newest rejections of the local log, and how many lines were skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecentRejections {
    /// Newest first, at most the limit asked for.
    pub rejections: Vec<gatos_types::sync::LoggedRejection>,
    /// Well-formed lines (of the remote asked for, when one is) beyond those returned.
    pub more: u64,
    /// Lines that are not a rejection as gatos writes them (garbled, foreign, too long,
    /// cut by the read window): skipped.
    pub skipped: u64,
}

/// The newest `limit` rejections of the local log (of `remote` only, when given), newest
/// first. The log is a local file anyone with the repository can write: a line that does
/// not parse, or is too long, is skipped and counted, never an error; only the newest
/// [`MAX_REJECTION_LOG_READ`] bytes are read.
///
/// # Errors
/// When the log exists but cannot be read.
pub fn recent_rejections(
    gatos: &crate::Gatos,
    remote: Option<&str>,
    limit: usize,
) -> Result<RecentRejections> {
    use std::io::{Read as _, Seek as _};
    let path = rejected_log_path(gatos);
    let io = |e: std::io::Error| {
        crate::Error::new(ErrorCode::Internal, format!("{}: {e}", path.display()))
    };
    let mut f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(RecentRejections::default());
        }
        Err(e) => return Err(io(e)),
    };
    let len = f.metadata().map_err(io)?.len();
    let start = len.saturating_sub(MAX_REJECTION_LOG_READ);
    f.seek(std::io::SeekFrom::Start(start)).map_err(io)?;
    let mut buf = Vec::new();
    f.take(MAX_REJECTION_LOG_READ)
        .read_to_end(&mut buf)
        .map_err(io)?;
    let mut out = RecentRejections::default();
    let mut lines: Vec<&[u8]> = buf.split(|b| *b == b'\n').collect();
    if start > 0 && !lines.is_empty() {
        // The window starts inside a line.
        lines.remove(0);
        out.skipped += 1;
    }
    for line in lines.into_iter().rev() {
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        let parsed = (line.len() <= MAX_REJECTION_LINE)
            .then(|| serde_json::from_slice::<gatos_types::sync::LoggedRejection>(line).ok())
            .flatten();
        let Some(r) = parsed else {
            out.skipped += 1;
            continue;
        };
        if remote.is_some_and(|want| want != r.remote) {
            continue;
        }
        if out.rejections.len() < limit {
            out.rejections.push(r);
        } else {
            out.more += 1;
        }
    }
    Ok(out)
}

/// Reads the local log of rejected refs (newest last).
pub fn rejected_log(gatos: &crate::Gatos) -> Vec<serde_json::Value> {
    std::fs::read_to_string(rejected_log_path(gatos))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(state: ClaimState, attempt: u32) -> ClaimDoc {
        ClaimDoc {
            job: "01ARZ3NDEKTSV4RRFFQ69G5FAV".parse().expect("ulid"),
            attempt,
            worker: "w".parse().expect("worker"),
            worker_key: None,
            state,
            lease_until: gatos_types::Timestamp::from_millis(0),
            claimed_at: gatos_types::Timestamp::from_millis(0),
            outcome: None,
            exit_code: None,
            signal: None,
            available_at: None,
            lease_token_hash: None,
        }
    }

    #[test]
    fn claim_chains_follow_the_state_machine() {
        use ClaimState::*;
        let ok = [
            (Running, 1, Heartbeat, 1),
            (Heartbeat, 1, Heartbeat, 1),
            (Running, 1, Released, 1),
            (Released, 1, Running, 2),
            (Heartbeat, 1, Running, 2),
            (Running, 2, Closed, 2),
            (Released, 3, Closed, 3),
        ];
        for (a, n, b, m) in ok {
            assert!(
                claim_step(Oid::NULL, &claim(a, n), &claim(b, m)).is_ok(),
                "{a:?}{n}->{b:?}{m}"
            );
        }
        let refused = [
            (Closed, 1, Running, 2),
            (Closed, 1, Heartbeat, 1),
            (Closed, 1, Closed, 1),
            (Running, 1, Running, 1),
            (Running, 1, Running, 3),
            (Released, 1, Heartbeat, 1),
            (Running, 1, Heartbeat, 2),
            (Running, 1, Closed, 2),
        ];
        for (a, n, b, m) in refused {
            assert!(
                claim_step(Oid::NULL, &claim(a, n), &claim(b, m)).is_err(),
                "{a:?}{n}->{b:?}{m}"
            );
        }
    }

    #[test]
    fn pruned_seqs_are_found_by_binary_search() {
        let a: Ulid = "01ARZ3NDEKTSV4RRFFQ69G5FAV".parse().expect("ulid");
        let b: Ulid = "01ARZ3NDEKTSV4RRFFQ69G5FAW".parse().expect("ulid");
        let mut table = Vec::new();
        for (u, s) in [(a, 7u64), (b, 3u64)] {
            table.extend_from_slice(&u.to_bytes());
            table.extend_from_slice(&s.to_be_bytes());
        }
        let pruned_seq = crate::messages::prune::pruned_seq;
        assert_eq!(pruned_seq(&table, a), Some(7));
        assert_eq!(pruned_seq(&table, b), Some(3));
        let c: Ulid = "01ARZ3NDEKTSV4RRFFQ69G5FAX".parse().expect("ulid");
        assert_eq!(pruned_seq(&table, c), None);
    }
}
