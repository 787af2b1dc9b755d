//! `git gatos doctor`: is this repository healthy, and what to do when it is not.
//!
//! Each finding has a severity, a stable code, the ref or object concerned, a message and
//! the command that fixes it. Errors are broken invariants; expected states (expired leases
//! awaiting takeover, other nodes' untrusted keys, checkpoints behind a forced prune,
//! maintenance debt, a pending rotation, events a crash did not publish) are warnings.
//! `--fix` performs only safe fixes: maintenance, lock files a dead gatos writer left
//! (ADR 0020), and republishing job events and audit records (deduplicated by commit id)
//! of this node's own actions only (ADR 0028: another node's come by sync).
//! Git lock files gatos did not write are reported (`lock-foreign`) and removed only with
//! `--force`. The playbook for every code is in docs/operations.md.

use std::collections::{BTreeMap, HashSet};

use gatos_store::refs::names::{self, RefKind};
use gatos_types::envelope::EnvelopeRef;
use gatos_types::jobs::{CancelDoc, ClaimState, JobEventKind, JobState};
use gatos_types::trailers::keys;
use gatos_types::{Digest, ErrorCode, Oid, Topic, Ulid, jcs};
use serde::Serialize;
use serde_json::json;

use crate::Gatos;
use crate::error::Result;
use crate::jobs::records::{CANCEL_PATH, CLAIM_PATH, JobRecord, read_doc};
use crate::messages::Cursor;
use crate::messages::chain::{self, ENVELOPE_PATH};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// An expected state, or something to tidy.
    Warning,
    /// A broken invariant.
    Error,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Finding {
    /// `error` or `warning`.
    pub severity: Severity,
    /// A stable code (docs/operations.md has a playbook entry for each).
    pub code: FindingCode,
    /// The ref, object or file concerned.
    pub target: String,
    /// What is wrong.
    pub message: String,
    /// The command that fixes it.
    pub fix: String,
    /// True when `--fix` fixed it.
    pub fixed: bool,
}

/// A finding's stable code (docs/operations.md has a playbook entry for each), serialized
/// as its kebab-case name. Findings are made here and never read back, so the set is
/// closed: a new check adds a variant, and the exhaustive matches below decide its name and
/// severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FindingCode {
    /// A journal of acknowledged publishes or enqueues that could not be made commits
    /// (ADR 0046): gatos reads of its topic (or of jobs) fail until it is, and plain git,
    /// sync and snapshots do not have its writes.
    JournalStuck,
    /// An acknowledged enqueue set aside in `jobs.enqueued.rejected`: its job's ref holds
    /// another commit, or its record does not read (ADR 0046).
    JournalRejected,
    /// `git fsck --strict` found a missing, corrupt or malformed object (one finding per problem).
    Fsck,
    /// A ref under `refs/gatos/` that fits nowhere in the ref layout.
    RefUnknown,
    /// Debris in the loose ref directory: empty directories, or a file that is no ref.
    RefLeftover,
    /// A Git lock file a gatos writer that died left.
    LockStale,
    /// A Git lock file gatos did not write.
    LockForeign,
    /// A commit on a topic's chain cannot be read as a message.
    ChainInvalid,
    /// A topic's prune summary does not read (not a summary commit, or missing).
    SummaryInvalid,
    /// A message's `Content-Id` is not the blake3 of its envelope.
    ContentIdMismatch,
    /// An envelope is not canonical JSON, or names another message or topic.
    EnvelopeNotCanonical,
    /// Along a topic's chain, `Seq` does not grow by exactly one.
    SeqGap,
    /// A sealed segment ref is not on the chain from its topic's head, or names a message
    /// of its segment other than the last, or a segment of the chain has no sealed ref (its
    /// messages, or some of them, are then kept by no ref).
    SegmentDetached,
    /// A rotation wrote the sealed ref and stopped before moving the head.
    RotationUnfinished,
    /// A checkpoint names no message of its topic (or cannot be read).
    CheckpointOutsideTopic,
    /// A checkpoint stands before its topic's first retained message.
    CheckpointBehindPrune,
    /// A result commit that closes no claim.
    ResultWithoutClaim,
    /// A proof of execution does not verify (for a reason other than an untrusted key).
    ProofInvalid,
    /// A proof signed by a key this repository does not trust.
    ProofUntrustedKey,
    /// A running attempt's lease lapsed: the next worker takes it over.
    LeaseExpired,
    /// Maintenance debt crossed a threshold.
    MaintenanceDue,
    /// A `gatos.*` setting or a settings ref does not parse.
    ConfigInvalid,
    /// A job transition this node wrote (its commit's `Origin` is this node) has no event on
    /// `gatos.jobs`. Other nodes' actions, and actions of unknown origin, are theirs to
    /// publish: their events come by sync (ADR 0028).
    EventMissing,
    /// An audited commit has no record on `gatos.audit`.
    AuditMissing,
    /// The hub holds a ref this node rejected at its last sync.
    SyncRejected,
    /// A job's enqueuer signature is missing or from a key this node does not trust.
    JobEnqueuerUntrusted,
    /// Another node's result of a job, kept beside this node's own.
    ResultConflict,
    /// A job's documents do not parse, or are not a job gatos would write.
    JobMalformed,
    /// Copies of a durable snapshot without its `meta` commit point: a `snapshot create`
    /// or `rm` that stopped half-way (ADR 0044). Never served; `--fix` removes them.
    SnapshotOrphan,
    /// A ref of this node that is not what its name says (a commit of another kind, of
    /// another job, topic, group, queue or key; a chain that does not link): it fails the
    /// checks a sync makes before pushing this node's refs, so every sync holds it back,
    /// and every other node would refuse it.
    RefMismatch,
    /// A check stopped at something it could not read (a ref holding a blob, a commit of
    /// another kind): its findings are incomplete. The others still ran; `ref-mismatch`
    /// names the ref when the sync's checks catch it.
    CheckIncomplete,
}

impl FindingCode {
    /// Every code, in the order the checks run.
    pub const ALL: &[FindingCode] = &[
        FindingCode::JournalStuck,
        FindingCode::JournalRejected,
        FindingCode::Fsck,
        FindingCode::RefUnknown,
        FindingCode::RefLeftover,
        FindingCode::LockStale,
        FindingCode::LockForeign,
        FindingCode::ChainInvalid,
        FindingCode::SummaryInvalid,
        FindingCode::ContentIdMismatch,
        FindingCode::EnvelopeNotCanonical,
        FindingCode::SeqGap,
        FindingCode::SegmentDetached,
        FindingCode::RotationUnfinished,
        FindingCode::CheckpointOutsideTopic,
        FindingCode::CheckpointBehindPrune,
        FindingCode::ResultWithoutClaim,
        FindingCode::ProofInvalid,
        FindingCode::ProofUntrustedKey,
        FindingCode::LeaseExpired,
        FindingCode::MaintenanceDue,
        FindingCode::ConfigInvalid,
        FindingCode::EventMissing,
        FindingCode::AuditMissing,
        FindingCode::SyncRejected,
        FindingCode::JobEnqueuerUntrusted,
        FindingCode::ResultConflict,
        FindingCode::JobMalformed,
        FindingCode::SnapshotOrphan,
        FindingCode::RefMismatch,
        FindingCode::CheckIncomplete,
    ];

    /// Returns the code's name (its serialized form).
    pub fn as_str(self) -> &'static str {
        match self {
            FindingCode::JournalStuck => "journal-stuck",
            FindingCode::JournalRejected => "journal-rejected",
            FindingCode::Fsck => "fsck",
            FindingCode::RefUnknown => "ref-unknown",
            FindingCode::RefLeftover => "ref-leftover",
            FindingCode::LockStale => "lock-stale",
            FindingCode::LockForeign => "lock-foreign",
            FindingCode::ChainInvalid => "chain-invalid",
            FindingCode::SummaryInvalid => "summary-invalid",
            FindingCode::ContentIdMismatch => "content-id-mismatch",
            FindingCode::EnvelopeNotCanonical => "envelope-not-canonical",
            FindingCode::SeqGap => "seq-gap",
            FindingCode::SegmentDetached => "segment-detached",
            FindingCode::RotationUnfinished => "rotation-unfinished",
            FindingCode::CheckpointOutsideTopic => "checkpoint-outside-topic",
            FindingCode::CheckpointBehindPrune => "checkpoint-behind-prune",
            FindingCode::ResultWithoutClaim => "result-without-claim",
            FindingCode::ProofInvalid => "proof-invalid",
            FindingCode::ProofUntrustedKey => "proof-untrusted-key",
            FindingCode::LeaseExpired => "lease-expired",
            FindingCode::MaintenanceDue => "maintenance-due",
            FindingCode::ConfigInvalid => "config-invalid",
            FindingCode::EventMissing => "event-missing",
            FindingCode::AuditMissing => "audit-missing",
            FindingCode::SyncRejected => "sync-rejected",
            FindingCode::JobEnqueuerUntrusted => "job-enqueuer-untrusted",
            FindingCode::ResultConflict => "result-conflict",
            FindingCode::JobMalformed => "job-malformed",
            FindingCode::SnapshotOrphan => "snapshot-orphan",
            FindingCode::RefMismatch => "ref-mismatch",
            FindingCode::CheckIncomplete => "check-incomplete",
        }
    }

    /// Returns the code's severity: errors are broken invariants, warnings expected states
    /// or tidying (see the module docs).
    pub fn severity(self) -> Severity {
        match self {
            FindingCode::JournalStuck
            | FindingCode::JournalRejected
            | FindingCode::Fsck
            | FindingCode::ChainInvalid
            | FindingCode::SummaryInvalid
            | FindingCode::ContentIdMismatch
            | FindingCode::EnvelopeNotCanonical
            | FindingCode::SeqGap
            | FindingCode::SegmentDetached
            | FindingCode::CheckpointOutsideTopic
            | FindingCode::ResultWithoutClaim
            | FindingCode::ProofInvalid
            | FindingCode::ConfigInvalid
            | FindingCode::JobMalformed
            | FindingCode::RefMismatch
            | FindingCode::CheckIncomplete => Severity::Error,
            FindingCode::RefUnknown
            | FindingCode::RefLeftover
            | FindingCode::LockStale
            | FindingCode::LockForeign
            | FindingCode::RotationUnfinished
            | FindingCode::CheckpointBehindPrune
            | FindingCode::ProofUntrustedKey
            | FindingCode::LeaseExpired
            | FindingCode::MaintenanceDue
            | FindingCode::EventMissing
            | FindingCode::AuditMissing
            | FindingCode::SyncRejected
            | FindingCode::JobEnqueuerUntrusted
            | FindingCode::ResultConflict
            | FindingCode::SnapshotOrphan => Severity::Warning,
        }
    }
}

impl std::fmt::Display for FindingCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl schemars::JsonSchema for FindingCode {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "FindingCode".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let names: Vec<&str> = FindingCode::ALL.iter().map(|c| c.as_str()).collect();
        schemars::json_schema!({"type": "string", "enum": names})
    }
}

impl Serialize for FindingCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A name that is no finding code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no doctor finding has the code {0:?}")]
pub struct UnknownCode(String);

impl std::str::FromStr for FindingCode {
    type Err = UnknownCode;

    fn from_str(s: &str) -> std::result::Result<FindingCode, UnknownCode> {
        FindingCode::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownCode(s.to_owned()))
    }
}

#[derive(Default)]
struct Report {
    findings: Vec<Finding>,
}

impl Report {
    fn add(
        &mut self,
        code: FindingCode,
        target: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.findings.push(Finding {
            severity: code.severity(),
            code,
            target: target.into(),
            message: message.into(),
            fix: fix.into(),
            fixed: false,
        });
    }
}

/// Runs every check; with `fix`, performs the safe fixes and marks what it fixed.
///
/// # Errors
/// Only when the repository cannot be read at all; problems are findings.
pub fn run(gatos: &Gatos, fix: bool) -> Result<Vec<Finding>> {
    run_with(gatos, Options { fix, force: false })
}

/// What `doctor` may do.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Perform the safe fixes.
    pub fix: bool,
    /// With `fix`: also remove Git lock files gatos did not write (at least
    /// [`gatos_store::locks::STALE_LOCK_AGE`] old), on the operator's word that no git
    /// command holds them.
    pub force: bool,
}

/// Runs every check with `opts`; marks what it fixed.
///
/// # Errors
/// Only when the repository cannot be read at all; problems are findings.
pub fn run_with(gatos: &Gatos, opts: Options) -> Result<Vec<Finding>> {
    let mut r = Report::default();
    // Journaled publishes and enqueues become commits first, so the checks see them
    // (ADR 0046). When one cannot, the checks read what is committed (otherwise every
    // read of that topic, or of jobs, would fail on it again), and the events or audit
    // records still in a stuck journal are not taken for missing.
    let stuck = check_journals(gatos, &mut r);
    if stuck.any() {
        gatos.committed_only(|| run_checks(gatos, &mut r, opts, &stuck))?;
    } else {
        run_checks(gatos, &mut r, opts, &stuck)?;
    }
    r.findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.code.as_str().cmp(b.code.as_str()))
    });
    Ok(r.findings)
}

/// The journals [`check_journals`] could not make commits.
#[derive(Default)]
struct Stuck {
    /// The enqueue journal.
    jobs: bool,
    /// The topics whose journals.
    topics: HashSet<String>,
}

impl Stuck {
    fn any(&self) -> bool {
        self.jobs || !self.topics.is_empty()
    }
}

/// Every check after the journals'.
fn run_checks(gatos: &Gatos, r: &mut Report, opts: Options, stuck: &Stuck) -> Result<()> {
    let fix = opts.fix;
    check_fsck(gatos, r);
    check_refs(gatos, r)?;
    check_snapshots(gatos, r, fix)?;
    check_locks(gatos, r, opts)?;
    // Each topic's first retained seq: chains are checked down to it (a pruned segment's
    // commits stay in the object store until gc, but they are no longer the topic's).
    let first_seqs: BTreeMap<Topic, u64> = match gatos.messages().listing() {
        Ok(listing) => {
            let damaged = !listing.damaged.is_empty();
            let mut firsts: BTreeMap<Topic, u64> = listing
                .rows
                .into_iter()
                .map(|t| (t.topic, t.first_seq))
                .collect();
            if damaged {
                // A topic whose head is no message (check_topics reports it) is left out of
                // the listing: its first position comes from its summary alone.
                for (t, first) in gatos.messages().first_positions().unwrap_or_default() {
                    firsts.entry(t).or_insert(first);
                }
            }
            firsts
        }
        // The listing failed whole (a store failure): every topic's first position from
        // its summary, one by one.
        Err(_) => gatos.messages().first_positions().unwrap_or_default(),
    };
    // A check that stops at something it cannot read (a ref holding a blob, a commit of
    // another kind: hand-made damage) is a finding, and the other checks still run: one
    // bad ref must not switch the health check off (found by a black-box test). Any other
    // failure (the store, a fix that could not write) still stops doctor with its code.
    let topics = match check_topics(gatos, r, &first_seqs) {
        Ok(t) => Some(t),
        Err(e) => {
            incomplete(r, "topics", e)?;
            None
        }
    };
    // Without the topics' chains a checkpoint cannot be placed: every one would look
    // outside its topic. That check waits for the topics to read.
    if let Some(topics) = &topics
        && let Err(e) = check_checkpoints(gatos, r, topics, &first_seqs)
    {
        incomplete(r, "checkpoints", e)?;
    }
    if let Err(e) = check_config(gatos, r) {
        incomplete(r, "settings", e)?;
    }
    let events_stuck = stuck.topics.contains(crate::jobs::EVENTS_TOPIC);
    if let Err(e) = check_jobs(gatos, r, fix, events_stuck) {
        incomplete(r, "jobs", e)?;
    }
    if !stuck.topics.contains(crate::audit::AUDIT_TOPIC)
        && let Err(e) = check_audit(gatos, r, fix)
    {
        incomplete(r, "audit", e)?;
    }
    if let Err(e) = check_mismatched_refs(gatos, r) {
        incomplete(r, "refs", e)?;
    }
    if let Err(e) = check_sync(gatos, r) {
        incomplete(r, "sync", e)?;
    }
    if let Err(e) = check_maintenance(gatos, r, fix) {
        incomplete(r, "maintenance", e)?;
    }
    Ok(())
}

/// Reports that check `what` stopped at something it could not read (`InvalidEnvelope`,
/// `NotFound`: a ref holding what its name does not, a missing object); any other error
/// (the store failing, a fix that could not write) is given back to stop doctor.
fn incomplete(r: &mut Report, what: &str, e: crate::Error) -> Result<()> {
    if !matches!(e.code(), ErrorCode::InvalidEnvelope | ErrorCode::NotFound) {
        return Err(e);
    }
    r.add(
        FindingCode::CheckIncomplete,
        what,
        format!(
            "the {what} check stopped at something it could not read ({}): {e}; its findings are incomplete",
            e.code()
        ),
        format!(
            "a ref-mismatch finding names the ref when it is one; otherwise look under {} for a ref that holds what its name does not (git for-each-ref {} --format='%(objecttype) %(refname)'), mend or remove it, and run doctor again",
            names::GATOS_PREFIX,
            names::GATOS_PREFIX
        ),
    );
    Ok(())
}

/// This node's refs that are not what their names say, by the very checks a sync makes of
/// them before it pushes (`sync::refs_failing_checks`). The refs are listed one by one, so
/// a job that ends meanwhile can be seen half-moved (its old claim, its new result): a ref
/// is reported only if a second listing, made when the first found anything, fails it too.
/// A ref whose objects are missing is fsck's finding, not this one; a ref another check
/// already reported as an error is not reported twice; a job found so is not also reported
/// as waiting for a trusted enqueuer (running it would run another job's command).
fn check_mismatched_refs(gatos: &Gatos, r: &mut Report) -> Result<()> {
    let pass = || -> Result<Vec<crate::sync::RefFailure>> {
        let (failed, unchecked) = crate::sync::refs_failing_checks(gatos)?;
        if unchecked > 0 {
            tracing::warn!(
                unchecked,
                "refs left unchecked for ref-mismatch: the checks' bound on commits was reached"
            );
        }
        Ok(failed
            .into_iter()
            .filter(|(_, code, _)| *code != ErrorCode::NotFound)
            .collect())
    };
    let first = pass()?;
    if first.is_empty() {
        return Ok(());
    }
    let again: HashSet<String> = first.iter().map(|(n, _, _)| n.clone()).collect();
    let failed: Vec<_> = pass()?
        .into_iter()
        .filter(|(n, _, _)| again.contains(n))
        .collect();
    let mut mismatched = HashSet::new();
    for (name, code, reason) in failed {
        let known = r
            .findings
            .iter()
            .any(|f| f.target == name && f.severity == Severity::Error);
        if let Some(
            RefKind::Job(id)
            | RefKind::JobClaim(id)
            | RefKind::JobResult(id)
            | RefKind::JobCancel(id),
        ) = RefKind::parse(&name)
        {
            mismatched.insert(names::job(id).to_string());
        }
        if known {
            continue;
        }
        r.add(
            FindingCode::RefMismatch,
            name.clone(),
            format!(
                "not what its name says ({code}): {reason}; every sync holds it back (nothing of it is pushed, nothing of the hub's taken for it) and every other node would refuse it"
            ),
            format!(
                "git log -3 --format='%H%n%B' {name}   # inspect; then point it at the commit it should hold (git update-ref {name} COMMIT) or, if it is junk, remove it (git update-ref -d {name})"
            ),
        );
    }
    r.findings.retain(|f| {
        !(f.code == FindingCode::JobEnqueuerUntrusted && mismatched.contains(&f.target))
    });
    Ok(())
}

/// Materializes every journal; reports each that cannot be, and the enqueues set aside.
fn check_journals(gatos: &Gatos, r: &mut Report) -> Stuck {
    let dir = gatos.store().journal_dir();
    let mut stuck = Stuck::default();
    let mut report = |family: &str, e: &crate::Error| {
        let (what, unchecked) = match family.strip_prefix("messages.") {
            Some(t) if t == crate::jobs::EVENTS_TOPIC => (
                format!("a read of {t}"),
                "; job events are not checked (event-missing) until it is",
            ),
            Some(t) if t == crate::audit::AUDIT_TOPIC => (
                format!("a read of {t}"),
                "; audit records are not checked (audit-missing) until it is",
            ),
            Some(t) => (format!("a read of {t}"), ""),
            None if family == crate::jobs::journal::FAMILY => ("a read of jobs".to_owned(), ""),
            None => ("a read of the journals".to_owned(), ""),
        };
        r.add(
            FindingCode::JournalStuck,
            dir.join(family).display().to_string(),
            format!(
                "acknowledged writes wait in this journal and could not be made commits: {e}; {what} fails with this error until they are, and plain git, sync and snapshots do not have them{unchecked}"
            ),
            "remove the cause named, then: git gatos doctor   # it makes every journal commits first",
        );
    };
    match gatos.messages().settle_each() {
        Ok(failed) => {
            for (family, e) in &failed {
                report(family, e);
                if let Some(t) = family.strip_prefix("messages.") {
                    stuck.topics.insert(t.to_owned());
                }
            }
        }
        Err(e) => report("", &e),
    }
    if let Err(e) = crate::jobs::journal::settle(gatos) {
        report(crate::jobs::journal::FAMILY, &e);
        stuck.jobs = true;
    }
    let max = usize::try_from(MAX_REJECTION_FINDINGS).unwrap_or(usize::MAX);
    match crate::jobs::journal::set_aside(gatos, max) {
        Ok((path, first, count)) => {
            let path = path.display();
            for rec in &first {
                match rec.job {
                    Some((id, commit)) if rec.code == Some(ErrorCode::Conflict) => r.add(
                        FindingCode::JournalRejected,
                        names::job(id).to_string(),
                        format!(
                            "an acknowledged enqueue of job {id} (commit {}) did not become its ref and was set aside in {path}: {}",
                            commit.short(12),
                            rec.why
                        ),
                        format!(
                            "git gatos jobs show {id}; git cat-file -p {commit}   # the job that holds the id, and the one set aside; remove {path} once settled"
                        ),
                    ),
                    Some((id, commit)) => r.add(
                        FindingCode::JournalRejected,
                        names::job(id).to_string(),
                        format!(
                            "an acknowledged enqueue of job {id} (commit {}) was set aside in {path}, its job never made: {}",
                            commit.short(12),
                            rec.why
                        ),
                        format!("remove {path} once noted   # the record did not hold what its job needs"),
                    ),
                    None => r.add(
                        FindingCode::JournalRejected,
                        path.to_string(),
                        format!(
                            "a record of the enqueue journal that does not read was set aside: {}",
                            rec.why
                        ),
                        format!("inspect {path}; remove it once settled"),
                    ),
                }
            }
            if count > first.len() as u64 {
                r.add(
                    FindingCode::JournalRejected,
                    path.to_string(),
                    format!(
                        "{} more acknowledged enqueues were set aside",
                        count - first.len() as u64
                    ),
                    format!("inspect {path}; remove it once settled"),
                );
            }
        }
        Err(e) => r.add(
            FindingCode::JournalRejected,
            dir.join(format!("{}.rejected", crate::jobs::journal::FAMILY))
                .display()
                .to_string(),
            format!("the enqueues set aside cannot be read: {e}"),
            "check the file's permissions",
        ),
    }
    stuck
}

fn check_fsck(gatos: &Gatos, r: &mut Report) {
    // A failing fsck is the answer, not an error: the store hands back its problems.
    let outcome = match gatos
        .store()
        .fsck(gatos_store::fsck::Options { strict: true })
    {
        Ok(o) => o,
        Err(e) => {
            let cause = match e {
                gatos_store::Error::Subprocess { stderr, .. } => stderr,
                other => other.to_string(),
            };
            r.add(
                FindingCode::Fsck,
                "repository",
                format!("git fsck could not run: {cause}"),
                "git fsck --strict",
            );
            return;
        }
    };
    if outcome.clean {
        return;
    }
    for p in &outcome.problems {
        r.add(
            FindingCode::Fsck,
            p.object
                .map_or_else(|| "repository".to_owned(), |o| o.to_string()),
            p.message.clone(),
            "restore the objects from another node or a mirror (git fetch; see docs/operations.md#fsck)",
        );
    }
    if outcome.problems.is_empty() {
        r.add(
            FindingCode::Fsck,
            "repository",
            "git fsck --strict failed without saying why",
            "git fsck --strict",
        );
    }
}

fn check_refs(gatos: &Gatos, r: &mut Report) -> Result<()> {
    for (name, oid) in gatos.store().list_refs(names::GATOS_PREFIX)? {
        if name.kind().is_none() {
            r.add(
                FindingCode::RefUnknown,
                name.to_string(),
                format!("{name} ({}) fits no entry of the ref layout", oid.short(12)),
                format!("git update-ref -d {name}   # after checking nothing needs it"),
            );
        }
    }
    // Leftovers in the loose ref directory: empty directories, files that are not refs.
    let root = gatos.store().common_dir().join("refs").join("gatos");
    let mut stack = vec![root.clone()];
    let mut empty_dirs = Vec::new();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut empty = true;
        for e in entries.filter_map(std::result::Result::ok) {
            empty = false;
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() {
                stack.push(p);
            } else if !name.ends_with(".lock") {
                let body = std::fs::read_to_string(&p).unwrap_or_default();
                let body = body.trim();
                let is_ref = (body.len() == 40 && body.bytes().all(|b| b.is_ascii_hexdigit()))
                    || body.starts_with("ref: ");
                if !is_ref {
                    r.add(
                        FindingCode::RefLeftover,
                        p.display().to_string(),
                        "a file in the ref directory that is not a ref (a crash or a manual edit left it)",
                        format!("rm {}", p.display()),
                    );
                }
            }
        }
        if empty && dir != root {
            empty_dirs.push(dir);
        }
    }
    if let Some(first) = empty_dirs.first() {
        r.add(
            FindingCode::RefLeftover,
            first.display().to_string(),
            format!(
                "{} empty directories in the ref directory (the first is named)",
                empty_dirs.len()
            ),
            format!("find {} -mindepth 1 -type d -empty -delete", root.display()),
        );
    }
    Ok(())
}

/// Durable snapshots (ADR 0044): names under `refs/gatos-snapshots/` with copies and no
/// `meta` (a create or delete that stopped half-way) are findings; `--fix` removes their
/// copies. A snapshot write in progress (its lock held) is not reported.
fn check_snapshots(gatos: &Gatos, r: &mut Report, fix: bool) -> Result<()> {
    use crate::snapshot::saved;
    let found = saved::orphans_settled(gatos)?;
    let cleaned = if fix && !found.is_empty() {
        saved::clean_orphans(gatos)?
    } else {
        Vec::new()
    };
    for name in found {
        r.add(
            FindingCode::SnapshotOrphan,
            format!("{}{name}/", names::SNAPSHOTS_PREFIX),
            format!(
                "copies of snapshot {name:?} without its meta commit: a snapshot create or rm \
                 that stopped half-way; it is not a snapshot and is never served"
            ),
            "git gatos doctor --fix   # removes the copies",
        );
        if cleaned.contains(&name)
            && let Some(f) = r.findings.last_mut()
        {
            f.fixed = true;
        }
    }
    Ok(())
}

fn check_locks(gatos: &Gatos, r: &mut Report, opts: Options) -> Result<()> {
    use gatos_store::refs::LockOwner;
    let files = gatos.store().lock_files()?;
    if files.iter().all(|l| l.owner == LockOwner::GatosLive) {
        return Ok(());
    }
    let removed = if opts.fix {
        gatos.store().recover_stale_locks()?
    } else {
        Vec::new()
    };
    for l in files {
        let target = l.path.display().to_string();
        let age = l.age.as_secs();
        match l.owner {
            LockOwner::GatosLive => {}
            LockOwner::GatosDead => {
                r.add(
                    FindingCode::LockStale,
                    target,
                    format!("a lock file {age}s old, left by a gatos writer that died"),
                    "git gatos doctor --fix",
                );
                // Removed by the recovery, or by the family's next writer meanwhile (which
                // removes a dead writer's lock before its own transaction).
                if opts.fix
                    && (removed.contains(&l.path) || !l.path.exists())
                    && let Some(f) = r.findings.last_mut()
                {
                    f.fixed = true;
                }
            }
            // Younger ones are a git command at work.
            LockOwner::Foreign if l.age < gatos_store::locks::STALE_LOCK_AGE => {}
            LockOwner::Foreign if opts.fix && opts.force => {
                let gone = gatos.store().remove_foreign_lock(&l.path)?;
                r.add(
                    FindingCode::LockForeign,
                    target.clone(),
                    format!(
                        "a lock file {age}s old that gatos did not write; {} because forced removal was asked for",
                        if gone { "removed" } else { "already gone, not removed" }
                    ),
                    format!("rm '{target}'"),
                );
                if let Some(f) = r.findings.last_mut() {
                    f.fixed = gone;
                }
            }
            LockOwner::Foreign => r.add(
                FindingCode::LockForeign,
                target.clone(),
                format!(
                    "a lock file {age}s old that gatos did not write (plain git or another tool); a running git command may hold it however old it is, so gatos leaves it alone"
                ),
                format!(
                    "make sure no git command is running on this repository, then: rm '{target}'   # or: git gatos doctor --fix --force"
                ),
            ),
        }
    }
    Ok(())
}

/// The commits of each topic's retained chain, by topic.
type TopicCommits = BTreeMap<Topic, HashSet<Oid>>;

fn check_topics(
    gatos: &Gatos,
    r: &mut Report,
    first_seqs: &BTreeMap<Topic, u64>,
) -> Result<TopicCommits> {
    let store = gatos.store();
    let mut heads = BTreeMap::new();
    let mut sealed: Vec<(Topic, String, Ulid, Oid)> = Vec::new();
    let mut summaries: Vec<(Topic, String)> = Vec::new();
    for (name, oid) in store.list_refs(&names::messages_prefix())? {
        match name.kind() {
            Some(RefKind::MessageHead(t)) => {
                heads.insert(t, oid);
            }
            Some(RefKind::MessageSealed(t, _, first)) => {
                sealed.push((t, name.to_string(), first, oid));
            }
            Some(RefKind::MessageSummary(t)) => summaries.push((t, name.to_string())),
            _ => {}
        }
    }
    // A summary that does not read makes its topic's listings name it damaged (ADR 0047)
    // and its first position unknown; nothing else would say why.
    for (topic, name) in summaries {
        if let Err(e) = gatos.messages().summary(&topic)
            && crate::messages::is_damage(&e)
        {
            r.add(
                FindingCode::SummaryInvalid,
                name,
                format!("{topic}: {e}"),
                "see docs/operations.md#summary-invalid",
            );
        }
    }
    let mut out = TopicCommits::new();
    // Each walked segment's last message, by segment (in time order, so findings come in
    // one order): the head, and each message a segment's first one names by `Prev-Segment`.
    let mut tips: BTreeMap<Topic, BTreeMap<Ulid, Oid>> = BTreeMap::new();
    let mut reader = store.reader();
    for (topic, head) in &heads {
        let first = first_seqs.get(topic).copied().unwrap_or(0);
        let mut seen = HashSet::new();
        let tips = tips.entry(topic.clone()).or_default();
        let mut at = Some(*head);
        let mut at_tip = true;
        let mut next_seq: Option<u64> = None;
        let head_ref = names::message_head(topic).to_string();
        while let Some(oid) = at {
            if !reader.exists(oid) {
                // History below a prune: the summary chain accounts for it.
                break;
            }
            let c = match reader.commit(oid) {
                Ok(c) => c,
                Err(e) => {
                    r.add(
                        FindingCode::ChainInvalid,
                        oid.to_string(),
                        format!("{topic}: {e}"),
                        "see docs/operations.md#chain-invalid",
                    );
                    break;
                }
            };
            let meta = match chain::meta_in(&c, topic) {
                Ok(m) => m,
                Err(e) => {
                    r.add(
                        FindingCode::ChainInvalid,
                        oid.to_string(),
                        format!("{topic} (from {head_ref}): {e}"),
                        "see docs/operations.md#chain-invalid",
                    );
                    break;
                }
            };
            if meta.seq < first {
                // Below the prune summary: no longer part of the topic.
                break;
            }
            if let Some(want) = next_seq
                && meta.seq.checked_add(1) != Some(want)
            {
                r.add(
                    FindingCode::SeqGap,
                    oid.to_string(),
                    format!("{topic}: Seq {} is followed by Seq {want}", meta.seq),
                    "see docs/operations.md#seq-gap",
                );
            }
            match reader.file(c.tree, ENVELOPE_PATH) {
                Ok(Some(bytes)) => {
                    if Digest::of(&bytes) != meta.content_id {
                        r.add(
                            FindingCode::ContentIdMismatch,
                            oid.to_string(),
                            format!(
                                "{topic} seq {}: Content-Id is not blake3 of the envelope",
                                meta.seq
                            ),
                            "see docs/operations.md#content-id-mismatch",
                        );
                    }
                    let canonical = jcs::canonicalize(&bytes).is_ok_and(|c| c == bytes);
                    let parsed = EnvelopeRef::parse(&bytes);
                    let agrees = parsed
                        .as_ref()
                        .is_ok_and(|e| e.ulid == meta.ulid && e.topic == topic.as_str());
                    if !canonical || !agrees {
                        r.add(
                            FindingCode::EnvelopeNotCanonical,
                            oid.to_string(),
                            format!("{topic} seq {}: the envelope is not canonical JSON naming this message and topic", meta.seq),
                            "see docs/operations.md#envelope-not-canonical",
                        );
                    }
                }
                Ok(None) | Err(_) => {
                    r.add(
                        FindingCode::ChainInvalid,
                        oid.to_string(),
                        format!("{topic} seq {}: no readable {ENVELOPE_PATH}", meta.seq),
                        "see docs/operations.md#chain-invalid",
                    );
                }
            }
            seen.insert(oid);
            if at_tip {
                tips.insert(meta.segment_id, oid);
            }
            at_tip = meta.parent.is_none() && meta.prev_segment.is_some();
            next_seq = Some(meta.seq);
            at = meta.prev();
        }
        out.insert(topic.clone(), seen);
    }
    let sealed_of: HashSet<(&Topic, Ulid)> = sealed.iter().map(|(t, _, f, _)| (t, *f)).collect();
    for (topic, name, first, oid) in &sealed {
        let (topic, name, first, oid) = (topic.clone(), name.clone(), *first, *oid);
        let tip = tips.get(&topic).and_then(|m| m.get(&first)).copied();
        if heads.get(&topic) == Some(&oid) {
            r.add(
                FindingCode::RotationUnfinished,
                name,
                format!("{topic}: the sealed segment's tip is the head; the next publish starts the new segment"),
                format!("nothing to do (the next `git gatos messages publish {topic}` completes it)"),
            );
        } else if !out.get(&topic).is_some_and(|s| s.contains(&oid)) {
            r.add(
                FindingCode::SegmentDetached,
                name,
                format!("{topic}: a sealed segment not on the chain from the head"),
                "see docs/operations.md#segment-detached",
            );
        } else if let Some(tip) = tip
            && tip != oid
        {
            let message = if heads.get(&topic) == Some(&tip) {
                // The live segment: a sync stopped between moving the head and removing
                // the old sealed refs. Pointed at the head, it is an unfinished rotation.
                format!(
                    "{topic}: the sealed segment's ref names {oid}, inside the live segment whose last message is the head {tip}; pointed at the head, the next publish completes the rotation"
                )
            } else {
                // The next segment links to this one's last message by a trailer, which
                // git does not follow: only this ref keeps the messages after `oid`.
                format!(
                    "{topic}: the sealed segment's ref names {oid}, not its segment's last message {tip}: the messages after it are kept by no ref, so `git gc` may delete them and a push does not carry them"
                )
            };
            r.add(
                FindingCode::SegmentDetached,
                name.clone(),
                message,
                format!("git update-ref {name} {tip} {oid}"),
            );
        }
    }
    // A segment of the chain without its sealed ref: its messages are kept by no ref.
    for (topic, segments) in &tips {
        for (first, tip) in segments {
            if heads.get(topic) == Some(tip) || sealed_of.contains(&(topic, *first)) {
                continue;
            }
            let name = names::message_sealed(topic, &crate::messages::segment_date(*first), *first);
            r.add(
                FindingCode::SegmentDetached,
                name.to_string(),
                format!(
                    "{topic}: the segment that starts with {first} and ends with {tip} has no sealed ref: its messages are kept by no ref, so `git gc` may delete them and a push does not carry them"
                ),
                format!("git update-ref {name} {tip}"),
            );
        }
    }
    Ok(out)
}

fn check_checkpoints(
    gatos: &Gatos,
    r: &mut Report,
    topics: &TopicCommits,
    first_seqs: &BTreeMap<Topic, u64>,
) -> Result<()> {
    let mut reader = gatos.store().reader();
    for (name, oid) in gatos.store().list_refs(&names::consumers_prefix())? {
        let Some(RefKind::Consumer(group, topic)) = name.kind() else {
            continue;
        };
        let doc: serde_json::Value =
            match read_doc(&mut reader, oid, crate::checkpoints::CHECKPOINT_PATH) {
                Ok((d, _)) => d,
                Err(e) => {
                    r.add(
                        FindingCode::CheckpointOutsideTopic,
                        name.to_string(),
                        e.to_string(),
                        "see docs/operations.md#checkpoint-outside-topic",
                    );
                    continue;
                }
            };
        let commit = doc
            .get("commit")
            .and_then(|c| c.as_str())
            .and_then(|c| c.parse::<Oid>().ok());
        let seq = doc
            .get("seq")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        let on_chain = commit.is_some_and(|c| topics.get(&topic).is_some_and(|s| s.contains(&c)));
        if on_chain {
            continue;
        }
        let first = first_seqs.get(&topic).copied().unwrap_or(0);
        if seq < first {
            r.add(
                FindingCode::CheckpointBehindPrune,
                name.to_string(),
                format!("{group} stands at seq {seq} of {topic}, before its first retained message ({first}); a forced prune dropped what it had not read"),
                format!("git gatos messages consume {group} {topic}   # resumes at the first retained message"),
            );
        } else {
            r.add(
                FindingCode::CheckpointOutsideTopic,
                name.to_string(),
                format!("{group}'s checkpoint names a commit that is not a message of {topic}"),
                format!("git gatos messages checkpoint set {group} {topic} ULID --force"),
            );
        }
    }
    Ok(())
}

fn check_config(gatos: &Gatos, r: &mut Report) -> Result<()> {
    for (name, _) in gatos.store().list_refs(&names::config_prefix())? {
        let res = match name.kind() {
            Some(RefKind::ConfigTopic(t)) => gatos.messages().config(&t).map(|_| ()),
            Some(RefKind::ConfigQueue(q)) => crate::jobs::queues::config(gatos, &q).map(|_| ()),
            _ => Ok(()),
        };
        if let Err(e) = res {
            r.add(
                FindingCode::ConfigInvalid,
                name.to_string(),
                e.to_string(),
                "see docs/operations.md#config-invalid",
            );
        }
    }
    Ok(())
}

/// The `msg_id` headers on a topic.
fn msg_ids(gatos: &Gatos, topic: &Topic) -> Result<EventIds> {
    let mut ids = HashSet::new();
    let mut first = None;
    gatos.messages().scan(topic, &Cursor::Start, None, |m| {
        first.get_or_insert(crate::messages::ulid_time(m.ulid));
        if let Some(h) = m.headers
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(h.get())
            && let Some(id) = v.get("msg_id").and_then(|i| i.as_str())
        {
            ids.insert(id.to_owned());
        }
        Ok(true)
    })?;
    Ok((ids, first))
}

/// `events_stuck`: the events topic's journal could not be made commits, so events are
/// not checked (those in the journal would be taken for missing).
fn check_jobs(gatos: &Gatos, r: &mut Report, fix: bool, events_stuck: bool) -> Result<()> {
    check_jobs_reading(gatos, r, fix, events_stuck, &mut || {
        msg_ids(gatos, &crate::jobs::events::topic())
    })
}

/// The `gatos.jobs` events' `msg_id`s and the first event's time.
type EventIds = (HashSet<String>, Option<gatos_types::Timestamp>);

/// [`check_jobs`] with the events read by `read_events` (tests read them at a chosen
/// moment).
fn check_jobs_reading(
    gatos: &Gatos,
    r: &mut Report,
    fix: bool,
    events_stuck: bool,
    read_events: &mut dyn FnMut() -> Result<EventIds>,
) -> Result<()> {
    let now = gatos.now();
    let (events, first_event) = if events_stuck {
        (HashSet::new(), None)
    } else {
        // A chain that cannot be read is check_topics' finding; the events are then not
        // checked, rather than doctor stopping there.
        read_events().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "the job events cannot be read; event-missing is not checked");
            (HashSet::new(), None)
        })
    };
    // Jobs whose documents are malformed: listings and workers leave them out; say so here.
    for (id, refs) in crate::jobs::archive::live(gatos)? {
        if let Err(e) = gatos.job_record_at(id, refs, false)
            && e.code() == ErrorCode::InvalidEnvelope
        {
            r.add(
                FindingCode::JobMalformed,
                names::job(id).to_string(),
                format!("job {id} is left out of listings and never run: {e}"),
                format!(
                    "git cat-file -p {}:job.json   # inspect; if it is junk: git update-ref -d {}",
                    names::job(id),
                    names::job(id)
                ),
            );
        }
    }
    let mut unpublished: Vec<(JobRecord, Transition)> = Vec::new();
    for rec in gatos.jobs().records(true)? {
        let id = rec.id;
        let d = crate::jobs::state::derive(&rec, now, gatos.lease_skew());
        if d.state == JobState::Pending
            && !rec.archived
            && let Some(v) = crate::jobs::enqueuer::blocker(
                gatos,
                id,
                rec.job_commit,
                crate::jobs::enqueuer::allowed_by_config(gatos),
            )?
        {
            r.add(
                FindingCode::JobEnqueuerUntrusted,
                names::job(id).to_string(),
                format!(
                    "job {id} waits: {}",
                    v.reason().unwrap_or_default()
                ),
                match &v {
                    crate::jobs::enqueuer::Verdict::Untrusted(s) => {
                        format!("git gatos keys trust {}   # if you trust who enqueued it", s.enqueuer.key)
                    }
                    _ => format!("git gatos jobs cancel {id}   # or run it with git gatos worker --allow-untrusted-enqueuers"),
                },
            );
        }
        if let Some((result, _)) = &rec.result {
            match crate::jobs::lifecycle::closed_claim_of_result(gatos, *result) {
                Ok(Some(_)) => {}
                _ => r.add(
                    FindingCode::ResultWithoutClaim,
                    names::job_result(id).to_string(),
                    format!("job {id}: the result does not close a claim (no closed claim as its second parent)"),
                    "see docs/operations.md#result-without-claim",
                ),
            }
            let v = gatos.jobs().verify_record(&rec);
            if !v.verified {
                let lost = rec
                    .result
                    .as_ref()
                    .is_some_and(|(_, doc)| doc.reason.as_deref() == Some("lost"));
                match v.code {
                    Some(ErrorCode::NotFound) if lost => {}
                    Some(ErrorCode::UntrustedKey) => r.add(
                        FindingCode::ProofUntrustedKey,
                        names::job_result(id).to_string(),
                        format!("job {id}: {}", v.error.unwrap_or_default()),
                        format!(
                            "git gatos keys trust {}   # if you trust that node",
                            v.key.map(|k| k.to_string()).unwrap_or_default()
                        ),
                    ),
                    _ => r.add(
                        FindingCode::ProofInvalid,
                        names::job_result(id).to_string(),
                        format!("job {id}: {}", v.error.unwrap_or_default()),
                        format!("git gatos jobs verify {id}"),
                    ),
                }
            }
        }
        if let Some((_, claim)) = &rec.claim
            && d.state == JobState::Pending
            && matches!(claim.state, ClaimState::Running | ClaimState::Heartbeat)
            && rec.result.is_none()
            && rec.cancel.is_none()
        {
            r.add(
                FindingCode::LeaseExpired,
                names::job_claim(id).to_string(),
                format!("job {id}: attempt {} by {} lost its lease at {}; the next worker takes it over", claim.attempt, claim.worker, claim.lease_until),
                format!("git gatos worker --once --queue {}", rec.spec.queue),
            );
        }
        if !rec.archived && first_event.is_some_and(|t| crate::messages::ulid_time(id) >= t) {
            unpublished.extend(
                unpublished_events(gatos, &rec, &events)?
                    .into_iter()
                    .map(|t| (rec.clone(), t)),
            );
        }
    }
    if !unpublished.is_empty() {
        // The events were read before the jobs were listed: an action a running daemon or
        // worker took meanwhile is listed, and its event, published right after it, was
        // not read yet. Read them again: only what is still missing is a finding.
        let events = match read_events() {
            Ok((again, _)) => again,
            Err(e) => {
                // As when the first read fails: not a reason to stop doctor.
                tracing::warn!(error = %e, "the job events cannot be read again; reporting from the first read");
                events
            }
        };
        for (rec, t) in unpublished {
            if !events.contains(&t.3.to_string()) {
                report_missing_event(gatos, r, &rec, t, fix);
            }
        }
    }
    Ok(())
}

/// A job transition: `(event, attempt, worker, commit)`.
type Transition = (JobEventKind, u32, Option<gatos_types::WorkerId>, Oid);

/// The transitions a job's commits record.
fn transitions(gatos: &Gatos, rec: &JobRecord) -> Result<Vec<Transition>> {
    let mut out = vec![(JobEventKind::Enqueued, 0, None, rec.job_commit)];
    if let Some((tip, _)) = &rec.claim {
        let mut reader = gatos.store().reader();
        let mut at = Some(*tip);
        while let Some(c) = at {
            let (doc, _): (gatos_types::jobs::ClaimDoc, _) = read_doc(&mut reader, c, CLAIM_PATH)?;
            if doc.state == ClaimState::Running {
                out.push((
                    JobEventKind::Claimed,
                    doc.attempt,
                    Some(doc.worker.clone()),
                    c,
                ));
            }
            at = reader.commit(c)?.parents.first().copied();
        }
    }
    if let Some((c, doc)) = &rec.result {
        let ev = match doc.status {
            gatos_types::jobs::Status::Succeeded => JobEventKind::Succeeded,
            gatos_types::jobs::Status::Failed => JobEventKind::Failed,
        };
        let worker = rec.claim.as_ref().map(|(_, c)| c.worker.clone());
        out.push((ev, doc.attempt, worker, *c));
    } else if let Some((c, _)) = &rec.cancel {
        out.push((
            JobEventKind::Cancelled,
            rec.claim.as_ref().map_or(0, |(_, c)| c.attempt),
            None,
            *c,
        ));
    }
    Ok(out)
}

/// This node's actions on `rec` whose event is not among `events`.
fn unpublished_events(
    gatos: &Gatos,
    rec: &JobRecord,
    events: &HashSet<String>,
) -> Result<Vec<Transition>> {
    // Only this node's own actions: another node publishes its events on its own topic, and
    // they arrive by sync, maybe after its job refs (a worker with `--remote` lands its
    // claims and results at the hub at once, its events with its next sync). Republishing
    // them here would put a second copy on the topic, and an action of unknown origin (a
    // commit from before job-plane commits carried `Origin`) may be another node's (ADR 0028).
    let node = gatos.node_id()?;
    let mut reader = gatos.store().reader();
    let mut out = Vec::new();
    for t in transitions(gatos, rec)? {
        if events.contains(&t.3.to_string()) {
            continue;
        }
        if crate::jobs::records::origin(&reader.commit(t.3)?.trailers()) == Some(node) {
            out.push(t);
        }
    }
    Ok(out)
}

fn report_missing_event(
    gatos: &Gatos,
    r: &mut Report,
    rec: &JobRecord,
    (event, attempt, worker, commit): Transition,
    fix: bool,
) {
    r.add(
        FindingCode::EventMissing,
        commit.to_string(),
        format!("job {}: the `{event}` event was not published on gatos.jobs (a crash between the action and its event)", rec.id),
        "git gatos doctor --fix",
    );
    if fix {
        crate::jobs::events::emit(gatos, event, rec, attempt, worker.as_ref(), commit);
        if let Some(f) = r.findings.last_mut() {
            f.fixed = true;
        }
    }
}

/// Audited commits: cancels, manifest versions, settings changes, revocations, prune
/// summaries and forced checkpoint moves (checkpoint tips carrying an `Actor`).
fn audited_commits(gatos: &Gatos) -> Result<Vec<(Oid, String, String)>> {
    let store = gatos.store();
    let mut reader = store.reader();
    let mut out = Vec::new();
    for (name, oid) in store.list_refs(names::GATOS_PREFIX)? {
        let (action, target, walk) = match name.kind() {
            Some(RefKind::JobCancel(id)) => ("jobs.cancel", format!("job:{id}"), false),
            Some(RefKind::Manifest(m)) => ("manifests.put", format!("manifest:{m}"), true),
            Some(RefKind::ConfigTopic(t)) => ("config.topic", format!("topic:{t}"), true),
            Some(RefKind::ConfigQueue(q)) => ("config.queue", format!("queue:{q}"), true),
            Some(RefKind::MessageSummary(t)) => ("messages.prune", format!("topic:{t}"), true),
            Some(RefKind::Consumer(g, t)) => {
                ("checkpoint.force", format!("consumer:{g}/{t}"), false)
            }
            Some(RefKind::TrustRevoked(k) | RefKind::TrustRevocation(k, _)) => {
                ("keys.revoke", format!("key:{k}"), false)
            }
            _ => continue,
        };
        let mut at = Some(oid);
        while let Some(c) = at {
            let commit = reader.commit(c)?;
            if commit.trailers().get(keys::ACTOR).is_some() {
                out.push((c, action.to_owned(), target.clone()));
            }
            at = if walk {
                commit.parents.first().copied()
            } else {
                None
            };
        }
    }
    Ok(out)
}

fn check_audit(gatos: &Gatos, r: &mut Report, fix: bool) -> Result<()> {
    check_audit_reading(gatos, r, fix, &mut || {
        msg_ids(gatos, &crate::audit::topic())
    })
}

/// [`check_audit`] with the trail read by `read_trail` (tests read it at a chosen moment).
fn check_audit_reading(
    gatos: &Gatos,
    r: &mut Report,
    fix: bool,
    read_trail: &mut dyn FnMut() -> Result<EventIds>,
) -> Result<()> {
    // A chain that cannot be read is check_topics' finding (as for the job events).
    let (ids, first) = match read_trail() {
        Ok(read) => read,
        Err(e) => {
            tracing::warn!(error = %e, "the audit trail cannot be read; audit-missing is not checked");
            return Ok(());
        }
    };
    let mut reader = gatos.store().reader();
    let mut unrecorded = Vec::new();
    for (commit, action, target) in audited_commits(gatos)? {
        if ids.contains(&commit.to_string()) {
            continue;
        }
        let c = reader.commit(commit)?;
        // A commit naming another node as its `Origin` (a cancel) is that node's to record;
        // its record comes by sync (ADR 0028).
        if let Some(o) = crate::jobs::records::origin(&c.trailers())
            && o != gatos.node_id()?
        {
            continue;
        }
        // Actions older than the trail's first retained record were pruned with it.
        if first.is_some_and(|t| c.time.saturating_mul(1000) < t.as_millis() - 1000) {
            continue;
        }
        unrecorded.push((commit, action, target));
    }
    // The trail was read before the audited commits were listed: an action another writer
    // took meanwhile is listed, and its record, published right after it, was not read
    // yet. Read it again: only what is still missing is a finding (as for the job events).
    let ids = match unrecorded.is_empty() {
        true => ids,
        false => match read_trail() {
            Ok((again, _)) => again,
            Err(e) => {
                tracing::warn!(error = %e, "the audit trail cannot be read again; reporting from the first read");
                ids
            }
        },
    };
    for (commit, action, target) in unrecorded {
        if ids.contains(&commit.to_string()) {
            continue;
        }
        let c = reader.commit(commit)?;
        r.add(
            FindingCode::AuditMissing,
            commit.to_string(),
            format!("{action} on {target}: no audit record on gatos.audit (a crash between the action and its record)"),
            "git gatos doctor --fix",
        );
        if fix {
            let t = c.trailers();
            let mut after = json!({"commit": commit.to_string(), "recovered_by": "doctor"});
            // A cancel's record says why, as the one `jobs cancel` writes does (ADR 0029).
            if action == "jobs.cancel"
                && let Ok((doc, _)) = read_doc::<CancelDoc>(&mut reader, commit, CANCEL_PATH)
            {
                after["state"] = json!("cancelled");
                if let Some(reason) = doc.reason {
                    after["reason"] = json!(reason);
                }
            }
            let payload = json!({
                "actor": t.get(keys::ACTOR),
                "key": t.get(keys::ACTOR_KEY),
                "action": action,
                "target": target,
                "before": null,
                "after": after,
            });
            let opts = crate::messages::PublishOptions {
                headers: Some(json!({"msg_id": commit.to_string()})),
                expect_last_seq: None,
            };
            gatos
                .messages()
                .publish_system(&crate::audit::topic(), payload, &opts)?;
            if let Some(f) = r.findings.last_mut() {
                f.fixed = true;
            }
        }
    }
    Ok(())
}

/// Loose refs under `refs/gatos/` beyond which `pack-refs` is due.
const LOOSE_REFS_DUE: u64 = 10_000;

/// Rejected refs reported one by one, per remote; the rest in one finding.
const MAX_REJECTION_FINDINGS: u64 = 10;

/// What to do about a ref a remote holds that sync rejected. A topic's head rejected for a
/// segment whose last message no sealed ref holds is not the damage: the segment's ref
/// is (moved or deleted at the hub), and a node that still holds the segment puts it back
/// when it syncs (ADR 0018, 2026-12-07); deleting the head there would lose the topic.
fn rejection_fix(remote: &str, name: &str, tracking: &names::RefName, reason: &str) -> String {
    let head = matches!(
        names::RefName::from_repository(name.to_owned()).kind(),
        Some(names::RefKind::MessageHead(_))
    );
    if head && reason.contains(crate::sync::validate::NO_SEALED_REF) {
        format!(
            "git gatos sync {remote}   # run on a node that still holds this topic's history: it puts the segment's sealed ref back at the hub; then sync here again (do not delete {name})"
        )
    } else {
        format!(
            "git log -1 {tracking}   # inspect; if it is not honest history, remove it at the hub: git push {remote} --delete {name}"
        )
    }
}

/// Refs a remote still holds that sync rejected (ADR 0018), and results kept beside a
/// job's own.
fn check_sync(gatos: &Gatos, r: &mut Report) -> Result<()> {
    let mut seen: HashSet<(String, String)> = HashSet::new();
    let mut per_remote: BTreeMap<String, u64> = BTreeMap::new();
    for entry in crate::sync::validate::rejected_log(gatos).iter().rev() {
        let (Some(remote), Some(name), Some(value)) = (
            entry["remote"].as_str(),
            entry["ref"].as_str(),
            entry["remote_value"].as_str(),
        ) else {
            continue;
        };
        // A unit rejected for this node's own damage (ADR 0047) names no value of the
        // hub's: it must not hide an older rejection of what the hub still holds.
        if value.bytes().all(|b| b == b'0') {
            continue;
        }
        if !seen.insert((remote.to_owned(), name.to_owned())) {
            continue;
        }
        let Some(tracking) =
            names::tracking(remote, &names::RefName::from_repository(name.to_owned()))
        else {
            continue;
        };
        // Reported while the remote still holds what was rejected (as of the last fetch).
        let now = gatos.store().read_ref(&tracking)?;
        if now.map(|o| o.to_string()).as_deref() != Some(value) {
            continue;
        }
        let n = per_remote.entry(remote.to_owned()).or_default();
        *n += 1;
        if *n > MAX_REJECTION_FINDINGS {
            continue;
        }
        r.add(
            FindingCode::SyncRejected,
            name.to_owned(),
            format!(
                "{remote} holds {name} at {} which this node rejected [{}]: {}; it was neither adopted nor pushed, and this node kept its own",
                &value[..value.len().min(12)],
                entry["code"].as_str().unwrap_or("?"),
                entry["reason"].as_str().unwrap_or("")
            ),
            rejection_fix(remote, name, &tracking, entry["reason"].as_str().unwrap_or("")),
        );
    }
    for (remote, n) in per_remote {
        if n > MAX_REJECTION_FINDINGS {
            r.add(
                FindingCode::SyncRejected,
                format!("remote:{remote}"),
                format!(
                    "{remote} holds {} more refs this node rejected (listed by the next sync, and in {})",
                    n - MAX_REJECTION_FINDINGS,
                    crate::sync::validate::rejected_log_path(gatos).display()
                ),
                format!("git gatos sync {remote} --json   # the rejected list, each with its reason"),
            );
        }
    }
    for (name, oid) in gatos.store().list_refs(&names::result_conflicts_root())? {
        let job = name
            .as_str()
            .strip_prefix(&names::result_conflicts_root())
            .and_then(|rest| rest.split('/').next())
            .unwrap_or("?")
            .to_owned();
        r.add(
            FindingCode::ResultConflict,
            name.to_string(),
            format!(
                "job {job} has another node's result {} kept beside its own (two nodes finished it)",
                oid.short(12)
            ),
            format!("git gatos jobs show {job}; git gatos jobs resolve {job} --keep local|{oid}"),
        );
    }
    Ok(())
}

fn count_loose_refs(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(std::result::Result::ok)
        .map(|e| {
            let p = e.path();
            if p.is_dir() { count_loose_refs(&p) } else { 1 }
        })
        .sum()
}

fn check_maintenance(gatos: &Gatos, r: &mut Report, fix: bool) -> Result<()> {
    let store = gatos.store();
    let t = gatos.settings().maintenance;
    let debt = store.maintenance_debt();
    let loose_refs = count_loose_refs(&store.common_dir().join("refs").join("gatos"));
    let packs = debt.packs.saturating_sub(debt.kept_packs);
    if debt.loose_objects < t.loose_objects && packs < t.packs && loose_refs < LOOSE_REFS_DUE {
        return Ok(());
    }
    r.add(
        FindingCode::MaintenanceDue,
        "repository",
        {
            let s = |n: u64| if n == 1 { "" } else { "s" };
            format!(
                "about {} loose object{} (threshold {}), {packs} pack{} (threshold {}), {loose_refs} loose ref{} (threshold {LOOSE_REFS_DUE}); reads slow down",
                debt.loose_objects,
                s(debt.loose_objects),
                t.loose_objects,
                s(packs),
                t.packs,
                s(loose_refs)
            )
        },
        "git gatos maintenance",
    );
    if fix {
        let report = store.run_maintenance(None)?;
        if !report.skipped
            && let Some(f) = r.findings.last_mut()
        {
            f.fixed = true;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use gatos_testutil::TestResult;

    use super::*;

    /// A topic's `msg_id`s as a reader saw them before an action (the first read), then as
    /// they are (every later read).
    struct Reads<'g> {
        g: &'g Gatos,
        topic: Topic,
        before: EventIds,
        count: usize,
    }

    impl<'g> Reads<'g> {
        fn new(g: &'g Gatos, topic: Topic, before: &EventIds) -> Reads<'g> {
            Reads {
                g,
                topic,
                before: before.clone(),
                count: 0,
            }
        }

        fn next(&mut self) -> Result<EventIds> {
            self.count += 1;
            match self.count {
                1 => Ok(self.before.clone()),
                _ => msg_ids(self.g, &self.topic),
            }
        }
    }

    /// The findings of `code` in `r`, by target.
    fn targets(r: &Report, code: FindingCode) -> Vec<String> {
        r.findings
            .iter()
            .filter(|f| f.code == code)
            .map(|f| f.target.clone())
            .collect()
    }

    /// As the events' test, for the audit trail: a job cancelled after doctor read the
    /// trail and before it listed the audited commits is not reported; still missing at
    /// the second read, it is.
    #[test]
    fn an_audit_record_published_while_doctor_listed_the_commits_is_not_taken_for_missing()
    -> TestResult {
        let (_repo, g) = crate::test_node(None)?;
        g.keys().init(false)?;
        let spec = crate::jobs::manifest::normalize(
            crate::jobs::manifest::from_value(serde_json::json!({"command": ["true"]}))?,
            g.now(),
        )?;
        let first = g.jobs().enqueue(spec.clone())?.id;
        g.jobs().cancel(first, None)?;
        let topic = crate::audit::topic();
        let before = msg_ids(&g, &topic)?;
        let id = g.jobs().enqueue(spec)?.id;
        g.jobs().cancel(id, Some("while doctor ran".into()))?;
        let rec = g.jobs().record(id)?.ok_or("the job")?;
        let (cancel, _) = rec.cancel.ok_or("its cancel")?;
        let mut reads = Reads::new(&g, topic, &before);
        let mut r = Report::default();
        check_audit_reading(&g, &mut r, false, &mut || reads.next())?;
        assert_eq!(reads.count, 2, "the trail was read again");
        assert_eq!(targets(&r, FindingCode::AuditMissing), Vec::<String>::new());
        let mut r = Report::default();
        check_audit_reading(&g, &mut r, false, &mut || Ok(before.clone()))?;
        assert_eq!(
            targets(&r, FindingCode::AuditMissing),
            vec![cancel.to_string()]
        );
        Ok(())
    }

    /// A job claimed by another writer after doctor read the events, before it listed the
    /// jobs: its `claimed` event was published right after the claim, and doctor, reading
    /// the events again before it reports, does not take it for missing. An event that is
    /// still missing then is reported.
    #[test]
    fn an_event_published_while_doctor_listed_the_jobs_is_not_taken_for_missing() -> TestResult {
        let clock = std::sync::Arc::new(crate::clock::FixedClock::at(
            gatos_types::Timestamp::parse_rfc3339("2026-12-06T12:00:00Z")?,
        ));
        let (_repo, g) = crate::test_node(Some(clock.clone()))?;
        g.keys().init(false)?;
        let enqueue = || -> TestResult<gatos_types::Ulid> {
            let spec = crate::jobs::manifest::normalize(
                crate::jobs::manifest::from_value(serde_json::json!({"command": ["true"]}))?,
                g.now(),
            )?;
            Ok(g.jobs().enqueue(spec)?.id)
        };
        // Events are checked for the jobs enqueued after the first event: a job before.
        enqueue()?;
        clock.advance(gatos_types::Dur::from_secs(1));
        let id = enqueue()?;
        let topic = crate::jobs::events::topic();
        let before = msg_ids(&g, &topic)?;
        assert!(before.1.is_some(), "the enqueue's event is there");
        let opts = crate::jobs::ClaimOptions {
            worker: "w1".parse()?,
            worker_key: g.keys().current(),
            queues: Vec::new(),
            caps: Vec::new(),
            lease: gatos_types::Dur::from_secs(30),
            can_resolve: None,
            allow_untrusted_enqueuers: false,
        };
        let lease = g.jobs().claim(id, &opts)?;
        let missing = |r: &Report| targets(r, FindingCode::EventMissing);
        // Read before the claim, then again: nothing is missing.
        let mut reads = Reads::new(&g, topic, &before);
        let mut r = Report::default();
        check_jobs_reading(&g, &mut r, false, false, &mut || reads.next())?;
        assert_eq!(reads.count, 2, "the events were read again");
        assert_eq!(missing(&r), Vec::<String>::new());
        // Still missing at the second read: reported, for the claim's commit.
        let mut r = Report::default();
        check_jobs_reading(&g, &mut r, false, false, &mut || Ok(before.clone()))?;
        assert_eq!(missing(&r), vec![lease.claim_commit.to_string()]);
        Ok(())
    }
}
