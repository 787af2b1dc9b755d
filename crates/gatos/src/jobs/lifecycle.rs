//! Claims and their life: claim (with takeover), heartbeat, release, complete (DESIGN §3–4,
//! ADR 0012).

use std::sync::Arc;

use gatos_store::objects::Objects;
use gatos_store::refs::{Edit, names};
use gatos_types::jobs::{
    ClaimDoc, ClaimState, JobEventKind, JobSpec, JobState, LeaseToken, Outcome, ProofStatus,
    ResultDoc, Status,
};
use gatos_types::trailers::{Trailers, keys};
use gatos_types::{
    Capability, Digest, Dur, ErrorCode, KeyId, Oid, Queue, Timestamp, Ulid, WorkerId,
};

use super::records::{
    CLAIM_PATH, JobRecord, OUTPUTS_DIR, POE_PATH, RESULT_PATH, STDERR_PATH, STDOUT_PATH,
    claim_trailers, doc_bytes, read_doc,
};
use super::{Jobs, events, family, ready, state};
use crate::Gatos;
use crate::error::{Error, Result};

/// The shortest lease (DESIGN §4).
pub const MIN_LEASE: Dur = Dur::from_secs(1);
/// The longest lease: thirty days, the longest timeout (ADR 0022's amendment of
/// 2026-12-07): a lease is how long a silent holder keeps a job, and its end must be a
/// time documents can hold.
pub const MAX_LEASE: Dur = crate::jobs::manifest::MAX_TIMEOUT;

/// Checks that every output of an attempt's end can be a file of the result's tree
/// (`outputs/<path>`, as `git fsck --strict` accepts it), before anything is checked or
/// written.
///
/// # Errors
/// `InvalidInput` naming the first output that cannot.
pub fn check_outputs(finish: &Finish) -> Result<()> {
    let mut paths: Vec<&str> = Vec::with_capacity(finish.outputs.len());
    for (p, _) in &finish.outputs {
        gatos_store::objects::check_tree_path(p).map_err(|e| {
            Error::new(
                ErrorCode::InvalidInput,
                format!("output {:?}: {}", e.path, e.reason),
            )
        })?;
        paths.push(p);
    }
    // One tree entry per name: an output given twice, or one that is a folder of another
    // (`a` and `a/b`, wherever `a-b` sorts), cannot both be files.
    let mut seen = std::collections::HashSet::with_capacity(paths.len());
    for p in &paths {
        if !seen.insert(*p) {
            return Err(Error::new(
                ErrorCode::InvalidInput,
                format!("output {p:?} is given twice"),
            ));
        }
    }
    for p in &paths {
        for (i, _) in p.match_indices('/') {
            if seen.contains(&p[..i]) {
                return Err(Error::new(
                    ErrorCode::InvalidInput,
                    format!("outputs {:?} and {p:?} cannot both be files", &p[..i]),
                ));
            }
        }
    }
    Ok(())
}

/// Whether two outputs would share a tree entry: the same path, or one a folder of the
/// other (`a` and `a/b`).
pub fn outputs_collide(a: &str, b: &str) -> bool {
    let under =
        |long: &str, short: &str| long.strip_prefix(short).is_some_and(|r| r.starts_with('/'));
    a == b || under(a, b) || under(b, a)
}

/// Checks a lease length asked for by a claim or a heartbeat.
///
/// # Errors
/// [`ClaimError::LeaseRange`] (`InvalidInput`) outside [`MIN_LEASE`] ..= [`MAX_LEASE`].
pub fn check_lease(lease: Dur) -> std::result::Result<(), ClaimError> {
    if (MIN_LEASE..=MAX_LEASE).contains(&lease) {
        Ok(())
    } else {
        Err(ClaimError::LeaseRange { lease })
    }
}
/// The default lease.
pub const DEFAULT_LEASE: Dur = Dur::from_secs(30);
/// Retry backoff: the first delay and the cap (DESIGN §4), unless the queue overrides them.
pub const BACKOFF_BASE: Dur = Dur::from_secs(1);
/// The longest backoff.
pub const BACKOFF_MAX: Dur = Dur::from_secs(600);

/// Tells whether a worker can resolve a secret reference by name.
pub type SecretProbe = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Who is claiming, and what it can run.
#[derive(Clone)]
pub struct ClaimOptions {
    /// The worker's id.
    pub worker: WorkerId,
    /// The key it signs proofs with.
    pub worker_key: Option<KeyId>,
    /// Queues it serves (empty: `default`).
    pub queues: Vec<Queue>,
    /// Capabilities it offers.
    pub caps: Vec<Capability>,
    /// Lease length.
    pub lease: Dur,
    /// Whether it can resolve a secret reference (a worker that cannot, does not claim).
    pub can_resolve: Option<SecretProbe>,
    /// Run jobs whatever their enqueuer (unsigned, or signed by a key this node does not
    /// trust); a bad signature still blocks (ADR 0019).
    pub allow_untrusted_enqueuers: bool,
}

impl std::fmt::Debug for ClaimOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimOptions")
            .field("worker", &self.worker)
            .field("queues", &self.queues)
            .finish_non_exhaustive()
    }
}

/// Why a claim was refused ([`Jobs::claim`]).
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// A lease outside [`MIN_LEASE`] ..= [`MAX_LEASE`].
    #[error("the lease must be between 1 second and 30 days, not {lease}")]
    LeaseRange {
        /// What was asked for.
        lease: Dur,
    },
    /// No such job.
    #[error("job {job} does not exist")]
    NoSuchJob {
        /// The job.
        job: Ulid,
    },
    /// Its last attempt lost its lease: this claim closed it as failed instead.
    #[error("job {job} failed: its last attempt lost its lease")]
    LostFinal {
        /// The job.
        job: Ulid,
    },
    /// Another worker holds a live lease.
    #[error("job {job} is running on another worker")]
    Running {
        /// The job.
        job: Ulid,
    },
    /// It succeeded, failed or was cancelled.
    #[error("job {job} is {}", state.as_str())]
    Ended {
        /// The job.
        job: Ulid,
        /// Its state.
        state: JobState,
    },
    /// Its enqueuer is not trusted here (or it is unsigned).
    #[error("job {job} is not run here: {reason}")]
    NotRunHere {
        /// The job.
        job: Ulid,
        /// Why.
        reason: String,
    },
    /// Not claimable yet (`run_after`, or a retry's backoff).
    #[error("job {job} is not claimable before {at}")]
    NotYet {
        /// The job.
        job: Ulid,
        /// When it is.
        at: Timestamp,
    },
    /// In a queue this worker does not serve.
    #[error("job {job} is in queue {queue}")]
    OtherQueue {
        /// The job.
        job: Ulid,
        /// Its queue.
        queue: Queue,
    },
    /// It needs capabilities this worker lacks.
    #[error("job {job} needs capabilities this worker lacks")]
    Capabilities {
        /// The job.
        job: Ulid,
    },
    /// It names a secret this worker cannot resolve.
    #[error("job {job} needs the secret {secret}, which this worker cannot resolve")]
    Secrets {
        /// The job.
        job: Ulid,
        /// The first secret it cannot resolve.
        secret: String,
    },
    /// Another worker's claim landed first.
    #[error("job {job} was claimed by another worker first")]
    Lost {
        /// The job.
        job: Ulid,
    },
}

impl gatos_types::Coded for ClaimError {
    fn code(&self) -> ErrorCode {
        match self {
            ClaimError::LeaseRange { .. } => ErrorCode::InvalidInput,
            ClaimError::NoSuchJob { .. } => ErrorCode::NotFound,
            ClaimError::Running { .. } | ClaimError::Lost { .. } => ErrorCode::AlreadyClaimed,
            ClaimError::LostFinal { .. } | ClaimError::Ended { .. } | ClaimError::NotYet { .. } => {
                ErrorCode::Conflict
            }
            ClaimError::NotRunHere { .. }
            | ClaimError::OtherQueue { .. }
            | ClaimError::Capabilities { .. }
            | ClaimError::Secrets { .. } => ErrorCode::Forbidden,
        }
    }
}

/// A claim held by a worker.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The job.
    pub id: Ulid,
    /// The attempt.
    pub attempt: u32,
    /// The worker.
    pub worker: WorkerId,
    /// Its key.
    pub worker_key: Option<KeyId>,
    /// The manifest.
    pub spec: JobSpec,
    /// The job commit.
    pub job_commit: Oid,
    /// `blake3:` of `job.json`.
    pub content_id: Digest,
    /// This attempt's `running` commit.
    pub claim_commit: Oid,
    /// The claim chain's current commit (ours).
    pub head: Oid,
    /// The lease length.
    pub lease: Dur,
    /// When the lease ends.
    pub lease_until: Timestamp,
    /// When the attempt started.
    pub claimed_at: Timestamp,
    /// The secret heartbeat, complete and fail present (ADR 0022); `None` only for a
    /// claim written before lease tokens existed.
    pub token: Option<LeaseToken>,
}

/// What a proof of this attempt names ([`crate::proofs::attest`]).
impl<'a> From<&'a Lease> for crate::proofs::Claim<'a> {
    fn from(lease: &'a Lease) -> crate::proofs::Claim<'a> {
        crate::proofs::Claim {
            job: lease.id,
            job_content_id: lease.content_id,
            attempt: lease.attempt,
            claim_commit: lease.claim_commit,
            worker: &lease.worker,
        }
    }
}

/// How an attempt ended, with what it produced.
#[derive(Debug, Clone)]
pub struct Finish {
    /// The outcome.
    pub outcome: Outcome,
    /// The exit code, when the process exited.
    pub exit_code: Option<i32>,
    /// The signal the process died of (`SIGKILL`), from the wait status (ADR 0029).
    pub signal: Option<String>,
    /// Captured standard output (redacted).
    pub stdout: Vec<u8>,
    /// Captured standard error (redacted).
    pub stderr: Vec<u8>,
    /// Declared outputs: path relative to `cwd`, bytes.
    pub outputs: Vec<(String, Vec<u8>)>,
    /// The signed proof (`poe.json`), when there is one.
    pub poe: Option<Vec<u8>>,
}

/// What a finish wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// The job's state afterwards.
    pub state: JobState,
    /// The commit written (the `released` claim, or the result).
    pub commit: Oid,
}

/// The files of a result or released claim commit that a proof covers, and the proof.
pub struct ProofFiles {
    /// `(path, bytes)` of logs and outputs.
    pub subjects: Vec<(String, Vec<u8>)>,
    /// `poe.json`.
    pub poe: Option<Vec<u8>>,
    /// The commit's parents (a result's second parent is the claim it closes).
    pub parents: Vec<Oid>,
}

/// One commit of a claim chain.
#[derive(Debug, Clone)]
pub struct ClaimLink {
    /// The claim commit.
    pub commit: Oid,
    /// Its document.
    pub doc: ClaimDoc,
    /// Its first parent: the claim commit before it, if any.
    pub parent: Option<Oid>,
    /// When it was written (its committer time, whole seconds).
    pub at: Timestamp,
}

/// Reads a claim chain from `tip` down to its first commit, newest first, each commit
/// once (`tip_doc`, when the caller has it, saves reading the tip's document).
///
/// # Errors
/// When the commits cannot be read.
pub fn claim_chain(gatos: &Gatos, tip: Oid, tip_doc: Option<&ClaimDoc>) -> Result<Vec<ClaimLink>> {
    let mut r = gatos.store().reader();
    let mut chain = Vec::new();
    let mut at = Some(tip);
    while let Some(commit) = at {
        let c = r.commit(commit)?;
        let doc = match tip_doc {
            Some(d) if commit == tip => d.clone(),
            _ => {
                let bytes = r.file(c.tree, CLAIM_PATH)?.ok_or_else(|| {
                    Error::new(
                        ErrorCode::InvalidEnvelope,
                        format!("commit {commit} has no {CLAIM_PATH}"),
                    )
                })?;
                serde_json::from_slice(&bytes).map_err(|e| {
                    Error::new(
                        ErrorCode::InvalidEnvelope,
                        format!("{CLAIM_PATH} of {commit}: {e}"),
                    )
                })?
            }
        };
        at = c.parents.first().copied();
        chain.push(ClaimLink {
            commit,
            doc,
            parent: at,
            at: super::records::commit_time(c.time),
        });
    }
    Ok(chain)
}

/// [`running_commit`] over a chain already read: `None` when `from` is not in it.
pub fn running_in(chain: &[ClaimLink], from: Oid, attempt: u32) -> Option<Option<Oid>> {
    let start = chain.iter().position(|l| l.commit == from)?;
    for l in &chain[start..] {
        if l.doc.attempt < attempt {
            return Some(None);
        }
        if l.doc.attempt == attempt && l.doc.state == ClaimState::Running {
            return Some(Some(l.commit));
        }
    }
    Some(None)
}

/// Reads the proof and what it covers from a result (or released claim) commit.
///
/// # Errors
/// When the commit cannot be read.
pub fn proof_files(gatos: &Gatos, commit: Oid) -> Result<ProofFiles> {
    let mut r = gatos.store().reader();
    let c = r.commit(commit)?;
    // The root tree and `logs/` are each read once.
    let root = r.tree(c.tree)?;
    let blob_at = |entries: &[gatos_store::objects::Entry], name: &str| {
        entries
            .iter()
            .find(|e| e.name == name && !e.is_tree)
            .map(|e| e.oid)
    };
    let mut subjects = Vec::new();
    if let Some(logs) = root.iter().find(|e| e.name == "logs" && e.is_tree) {
        let logs = r.tree(logs.oid)?;
        for path in [STDOUT_PATH, STDERR_PATH] {
            let name = path.strip_prefix("logs/").unwrap_or(path);
            if let Some(oid) = blob_at(&logs, name) {
                subjects.push((path.to_owned(), r.blob(oid)?));
            }
        }
    }
    if let Some(e) = root.iter().find(|e| e.name == OUTPUTS_DIR) {
        collect(&mut r, e.oid, OUTPUTS_DIR, &mut subjects)?;
    }
    let poe = match blob_at(&root, POE_PATH) {
        Some(oid) => Some(r.blob(oid)?),
        None => None,
    };
    Ok(ProofFiles {
        subjects,
        poe,
        parents: c.parents,
    })
}

fn collect(
    r: &mut gatos_store::objects::Reader<'_>,
    tree: Oid,
    prefix: &str,
    out: &mut Vec<(String, Vec<u8>)>,
) -> Result<()> {
    for e in r.tree(tree)? {
        let path = format!("{prefix}/{}", e.name);
        if e.is_tree {
            collect(r, e.oid, &path, out)?;
        } else {
            out.push((path, r.blob(e.oid)?));
        }
    }
    Ok(())
}

/// Finds the `running` commit that started `attempt`, walking the claim chain back from
/// `from` (over heartbeats, and over later attempts).
///
/// # Errors
/// When the commits cannot be read.
pub fn running_commit(gatos: &Gatos, from: Oid, attempt: u32) -> Result<Option<Oid>> {
    let mut r = gatos.store().reader();
    let mut at = Some(from);
    while let Some(c) = at {
        let (d, _, _): (ClaimDoc, _, _) = gatos.cached_doc_at(&mut r, c, CLAIM_PATH)?;
        if d.attempt < attempt {
            return Ok(None);
        }
        if d.attempt == attempt && d.state == ClaimState::Running {
            return Ok(Some(c));
        }
        at = r.commit(c)?.parents.first().copied();
    }
    Ok(None)
}

/// The `closed` claim a result commit closes (its second parent), with its document.
///
/// # Errors
/// When the commits cannot be read.
pub fn closed_claim_of_result(gatos: &Gatos, result: Oid) -> Result<Option<(Oid, ClaimDoc)>> {
    let mut r = gatos.store().reader();
    let c = r.commit(result)?;
    let Some(closed) = c.parents.get(1).copied() else {
        return Ok(None);
    };
    let (doc, _): (ClaimDoc, _) = read_doc(&mut r, closed, CLAIM_PATH)?;
    Ok(Some((closed, doc)))
}

/// Why a lease's holder may no longer extend or end its attempt (`heartbeat`, `finish`).
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The claim is no longer this lease's (the worker must stop the job).
    #[error("lost the claim on job {job}: {why}")]
    Lost {
        /// The job.
        job: Ulid,
        /// What happened to it.
        why: LostClaim,
    },
    /// The lease token is missing or wrong (ADR 0022).
    #[error(
        "job {job} attempt {attempt}: {} (only the holder of the claim, who got the token from jobs.claim, may extend or end it)",
        if *given { "the lease token does not match" } else { "a lease token is required" }
    )]
    Token {
        /// The job.
        job: Ulid,
        /// The attempt.
        attempt: u32,
        /// Whether a token was given.
        given: bool,
    },
    /// A `succeeded` attempt whose exit code is not 0 (the `exit_code` detail).
    #[error("a succeeded attempt has exit code 0")]
    SucceededNonZero {
        /// The exit code given.
        exit_code: Option<i32>,
    },
}

/// What happened to a claim its holder lost.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LostClaim {
    /// The job's refs are gone.
    #[error("the job is gone")]
    JobGone,
    /// The job has no claim.
    #[error("no claim")]
    NoClaim,
    /// Another attempt (or worker) holds the claim, or this one ended.
    #[error("the claim is now attempt {attempt} by {worker} ({state:?})")]
    Moved {
        /// The claim's attempt.
        attempt: u32,
        /// Its worker.
        worker: WorkerId,
        /// Its state.
        state: ClaimState,
    },
    /// The job has its result.
    #[error("the job already has a result")]
    HasResult,
    /// A takeover moved the claim while this write was made.
    #[error("taken over")]
    TakenOver,
    /// A takeover, or another result, won while the result was written.
    #[error("taken over, or a result exists")]
    TakenOverOrResult,
}

impl gatos_types::Coded for LeaseError {
    fn code(&self) -> ErrorCode {
        match self {
            LeaseError::Lost { .. } => ErrorCode::LeaseExpired,
            LeaseError::Token { .. } => ErrorCode::Forbidden,
            LeaseError::SucceededNonZero { .. } => ErrorCode::InvalidInput,
        }
    }

    fn details(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut d = serde_json::Map::new();
        match self {
            LeaseError::SucceededNonZero { exit_code } => {
                d.insert("exit_code".into(), (*exit_code).into());
            }
            LeaseError::Lost { .. } | LeaseError::Token { .. } => {}
        }
        d
    }
}

fn lease_lost(job: Ulid, why: LostClaim) -> Error {
    LeaseError::Lost { job, why }.into()
}

/// A job a claim may take, as far as the ready index tells: ordered best first (higher
/// priority, then the older id), as a claim tries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Candidate {
    priority: i64,
    /// Reversed: of two jobs of one priority the older (smaller id) is the greater.
    id: std::cmp::Reverse<Ulid>,
    not_before: Timestamp,
}

/// How many candidates a claim takes from the ready index at first
/// ([`Jobs::claim_next_skipping`]); each pass that claims none takes twice as many.
const FIRST_BATCH: usize = 8;

/// Whether a claim for `opts` may take the job of `e` as far as the ready index tells: not
/// refused, without a live lease, in the worker's queues with the capabilities it has.
fn routable(
    e: &ready::Entry,
    opts: &ClaimOptions,
    refused: &std::collections::BTreeSet<Ulid>,
    now: Timestamp,
    skew: gatos_types::Dur,
) -> bool {
    !refused.contains(&e.id)
        && e.lease_until.is_none_or(|l| now > l.plus(skew))
        && super::waiting::route(
            &opts.queues,
            &opts.caps,
            &|_| true,
            &e.queue,
            &e.caps,
            &e.secrets,
        )
        .is_none()
}

/// The candidate of a ready entry, with the secrets it names.
fn candidate(e: &ready::Entry) -> (Candidate, Vec<String>) {
    (
        Candidate {
            priority: e.priority,
            id: std::cmp::Reverse(e.id),
            not_before: e.not_before,
        },
        e.secrets.clone(),
    )
}

/// A job's lock family, held by this thread until dropped. The enqueue journal was
/// materialized just before it was taken, and is not while it is held (the thread is
/// [`super::journal::Quiet`]): the materializer takes job families after its own lock.
pub(crate) struct JobLock {
    _guard: gatos_store::locks::Guard,
    _quiet: super::journal::Quiet,
}

impl Jobs<'_> {
    /// The job's lock if no other writer holds it right now.
    fn try_lock(&self, id: Ulid) -> Result<Option<JobLock>> {
        self.settle_before_lock();
        let quiet = super::journal::Quiet::enter();
        Ok(self
            .gatos
            .store()
            .locks()
            .try_acquire(&family(id))
            .map_err(gatos_store::Error::from)?
            .map(|g| JobLock {
                _guard: g,
                _quiet: quiet,
            }))
    }

    /// Materializes the enqueue journal before a job's lock is taken (the job is then a
    /// ref). A failure (a store error, job families busy) is logged, not returned: the
    /// job locked is a ref already unless it was enqueued a moment ago, and ending or
    /// heartbeating a job must not depend on other jobs' enqueues.
    fn settle_before_lock(&self) {
        if let Err(e) = super::journal::settle(self.gatos) {
            tracing::warn!(error = %e, "could not materialize the enqueue journal before taking a job's lock");
        }
    }

    pub(super) fn lock(&self, id: Ulid) -> Result<JobLock> {
        self.settle_before_lock();
        let quiet = super::journal::Quiet::enter();
        let g = self
            .gatos
            .store()
            .locks()
            .acquire(&[family(id)], gatos_store::locks::DEFAULT_LOCK_TIMEOUT)
            .map_err(gatos_store::Error::from)?;
        Ok(JobLock {
            _guard: g,
            _quiet: quiet,
        })
    }

    /// Builds a claim commit into `w` ([`Gatos::job_writer`]: written at once when the
    /// action goes alone, else by the group commit that applies its ref edits,
    /// [`Gatos::commit_job_action`]).
    fn claim_commit(
        &self,
        w: &mut dyn Objects,
        doc: &ClaimDoc,
        parent: Option<Oid>,
        extra: &[(&str, &[u8])],
        subject: &str,
    ) -> Result<Oid> {
        let bytes = doc_bytes(doc)?;
        let mut files: Vec<(&str, &[u8])> = vec![(CLAIM_PATH, &bytes)];
        files.extend_from_slice(extra);
        let parents: Vec<Oid> = parent.into_iter().collect();
        let time = self.gatos.now();
        let commit =
            self.gatos
                .job_commit_into(w, &files, &parents, &claim_trailers(doc), subject, time)?;
        self.gatos.remember_doc(commit, CLAIM_PATH, &bytes, time);
        Ok(commit)
    }

    /// Claims the best claimable job for `opts`: its queues, a subset of its capabilities,
    /// secrets it can resolve; higher priority first, then oldest. `None` when there is
    /// none. Never scans finished jobs (the ready index).
    ///
    /// # Errors
    /// When refs cannot be read or written.
    pub fn claim_next(&self, opts: &ClaimOptions) -> Result<Option<Lease>> {
        self.claim_next_skipping(opts, &mut std::collections::BTreeSet::new())
    }

    /// As [`Jobs::claim_next`], leaving out the jobs in `refused` and adding to it the jobs
    /// it found it may not claim for a reason other than a lost race (a worker that drains
    /// stops waiting for those).
    ///
    /// # Errors
    /// As [`Jobs::claim_next`].
    pub fn claim_next_skipping(
        &self,
        opts: &ClaimOptions,
        refused: &mut std::collections::BTreeSet<Ulid>,
    ) -> Result<Option<Lease>> {
        // A bad lease is refused whether or not a job is there to claim.
        check_lease(opts.lease)?;
        // Best first (higher priority, then older), a few at a time from the ready index's
        // claim order: a claim visits the jobs before the ones it tries, not the backlog.
        // As `FOR UPDATE SKIP LOCKED`: a candidate whose job lock another writer holds
        // right now (most often another worker claiming the same best job) is passed over
        // at first, so concurrent workers spread over the backlog instead of queueing on
        // one job and losing the race in turn. Only when every free candidate is refused
        // are the busy ones tried again, waiting for their locks, so that `None` still
        // means nothing is claimable.
        let mut tried = std::collections::BTreeSet::new();
        let mut busy = Vec::new();
        let mut batch = FIRST_BATCH;
        // Whether the enqueuer lets this worker run a job is checked by the claim itself,
        // under the job's lock (`claim_locked`): a job it may not run is refused there and
        // passed over, so the common case reads the job's ref and checks its envelope once.
        loop {
            let Some(candidates) = self.best_eligible(opts, refused, &mut tried, batch)? else {
                break;
            };
            for c in candidates {
                let id = c.id.0;
                match self.try_lock(id)? {
                    Some(guard) => {
                        if let Some(lease) = self.claim_candidate(id, opts, guard, refused)? {
                            return Ok(Some(lease));
                        }
                    }
                    None => busy.push(id),
                }
            }
            // Each pass that found nothing takes twice as many: a backlog this worker may
            // not run costs a few passes over the index, not one per job.
            batch = batch.saturating_mul(2);
        }
        for id in busy {
            let guard = self.lock(id)?;
            if let Some(lease) = self.claim_candidate(id, opts, guard, refused)? {
                return Ok(Some(lease));
            }
        }
        Ok(None)
    }

    /// Reads ahead for the claims to come ([`super::readahead`], ADR 0046 session 20): of
    /// the best `k` jobs a claim for `opts` could take now, those not in `read`, each
    /// job's documents read and its enqueue envelope verified into this handle's caches.
    /// The jobs already read count among the `k`: the read-ahead stays within `k` jobs of
    /// the claims, however often it is asked. It reads the ready index as a claim does,
    /// takes no job's lock and writes nothing of a job; an enqueue still in the enqueue
    /// journal is left for a later read (it does not make the journal materialize), and a
    /// job that cannot be read is passed over (its claim says why). Returns the jobs read.
    ///
    /// Nothing a claim decides comes from here: the caches hold content by commit id, and
    /// the claim still reads the job's refs under its lock and asks afresh whether the
    /// enqueuer's key is trusted.
    ///
    /// # Errors
    /// When the ready index cannot be read.
    pub fn read_ahead(
        &self,
        opts: &ClaimOptions,
        k: usize,
        read: &std::collections::HashSet<Ulid>,
    ) -> Result<Vec<Ulid>> {
        // The candidates a claim's first pass takes, the same way.
        let best = self
            .best_eligible(opts, &Default::default(), &mut Default::default(), k)?
            .unwrap_or_default();
        let _quiet = super::journal::Quiet::enter();
        let mut done = Vec::new();
        for id in best.into_iter().map(|c| c.id.0) {
            if read.contains(&id) {
                continue;
            }
            let refs = match self.gatos.job_refs(id) {
                Ok(refs) if refs.job.is_some() => refs,
                Ok(_) => continue,
                Err(e) => {
                    tracing::debug!(job = %id, error = %e, "not read ahead");
                    continue;
                }
            };
            let primed = match self.gatos.job_record_at(id, refs, false) {
                Ok(Some(rec)) if rec.result.is_none() => {
                    super::enqueuer::prime(self.gatos, id, rec.job_commit)
                }
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            };
            if let Err(e) = primed {
                tracing::debug!(job = %id, error = %e, "not read ahead");
            }
            done.push(id);
        }
        Ok(done)
    }

    /// One candidate of [`Jobs::claim_next_skipping`], its lock held: the lease, or `None`
    /// when it could not be claimed (a lost race, or refused and added to `refused`).
    fn claim_candidate(
        &self,
        id: Ulid,
        opts: &ClaimOptions,
        guard: JobLock,
        refused: &mut std::collections::BTreeSet<Ulid>,
    ) -> Result<Option<Lease>> {
        match self.claim_locked(id, opts, guard) {
            Ok(lease) => Ok(Some(lease)),
            Err(e) => match e.code() {
                ErrorCode::AlreadyClaimed => {
                    tracing::debug!(job = %id, "claimed by another worker first");
                    Ok(None)
                }
                ErrorCode::Conflict | ErrorCode::NotFound | ErrorCode::Forbidden => {
                    tracing::debug!(job = %id, code = %e.code(), "not claimable after all");
                    refused.insert(id);
                    Ok(None)
                }
                // A malformed job is never run, and never stops the others.
                ErrorCode::InvalidEnvelope => {
                    tracing::warn!(job = %id, error = %e, "a job whose documents are malformed is not run");
                    refused.insert(id);
                    Ok(None)
                }
                _ => Err(e),
            },
        }
    }

    /// The unfinished jobs `opts` may route to (its queues, capabilities and secrets), from
    /// the ready index, not in `refused` and without a live lease, whenever they become
    /// claimable. Only their order and time are copied out of the index, under its lock;
    /// whether the enqueuer lets this worker run one is asked of the few a caller tries,
    /// not of the whole backlog.
    fn eligible(
        &self,
        opts: &ClaimOptions,
        refused: &std::collections::BTreeSet<Ulid>,
    ) -> Result<Vec<Candidate>> {
        let now = self.gatos.now();
        let skew = self.gatos.lease_skew();
        // The worker's probe of its secrets may look at files: it is asked after the
        // index's lock is released, of the jobs that name secrets.
        let routed = ready::Ready::new(self.gatos)
            .select(|e| routable(e, opts, refused, now, skew).then(|| candidate(e)))?;
        let resolves = |s: &str| opts.can_resolve.as_ref().is_some_and(|f| f(s));
        Ok(routed
            .into_iter()
            .filter(|(_, secrets)| super::waiting::resolvable(&resolves, secrets))
            .map(|(c, _)| c)
            .collect())
    }

    /// Of the best `k` jobs [`Jobs::claim_next_skipping`] may try now (as
    /// [`Jobs::eligible`], claimable now, not in `tried`), the ones whose secrets this worker
    /// can resolve, best first; all `k` are added to `tried`. `None` when there was none.
    fn best_eligible(
        &self,
        opts: &ClaimOptions,
        refused: &std::collections::BTreeSet<Ulid>,
        tried: &mut std::collections::BTreeSet<Ulid>,
        k: usize,
    ) -> Result<Option<Vec<Candidate>>> {
        let now = self.gatos.now();
        let skew = self.gatos.lease_skew();
        let routed = ready::Ready::new(self.gatos).best(k, |e| {
            (e.not_before <= now && !tried.contains(&e.id) && routable(e, opts, refused, now, skew))
                .then(|| candidate(e))
        })?;
        if routed.is_empty() {
            return Ok(None);
        }
        let resolves = |s: &str| opts.can_resolve.as_ref().is_some_and(|f| f(s));
        Ok(Some(
            routed
                .into_iter()
                .filter_map(|(c, secrets)| {
                    tried.insert(c.id.0);
                    super::waiting::resolvable(&resolves, &secrets).then_some(c)
                })
                .collect(),
        ))
    }

    /// Whether this worker may run the job as far as its enqueuer goes (ADR 0019): asked
    /// by [`Jobs::next_claimable_at_skipping`] of the candidates it looks at, each time
    /// (the envelope's check is cached by the handle, [`super::enqueuer::check`]; whether
    /// its key is trusted, and whether this worker allows untrusted enqueuers, are asked
    /// afresh).
    fn runnable(&self, id: Ulid, opts: &ClaimOptions) -> bool {
        let Ok(Some(commit)) = self.gatos.store().read_ref(&names::job(id)) else {
            return false;
        };
        match super::enqueuer::blocker(self.gatos, id, commit, opts.allow_untrusted_enqueuers) {
            Ok(None) => true,
            Ok(Some(v)) => {
                tracing::debug!(job = %id, reason = ?v.reason(), "not running this job");
                false
            }
            Err(e) => {
                tracing::debug!(job = %id, error = %e, "could not check the job's enqueuer");
                false
            }
        }
    }

    /// When the next job `opts` may run becomes claimable (now or later), not counting
    /// jobs other workers hold live leases on. `None` when there is no such job.
    ///
    /// # Errors
    /// When the ready index cannot be read.
    pub fn next_claimable_at(&self, opts: &ClaimOptions) -> Result<Option<Timestamp>> {
        self.next_claimable_at_skipping(opts, &std::collections::BTreeSet::new())
    }

    /// As [`Jobs::next_claimable_at`], leaving out the jobs in `refused`.
    ///
    /// # Errors
    /// As [`Jobs::next_claimable_at`].
    pub fn next_claimable_at_skipping(
        &self,
        opts: &ClaimOptions,
        refused: &std::collections::BTreeSet<Ulid>,
    ) -> Result<Option<Timestamp>> {
        let mut candidates = self.eligible(opts, refused)?;
        candidates.sort_unstable_by_key(|c| c.not_before);
        Ok(candidates
            .into_iter()
            .find(|c| self.runnable(c.id.0, opts))
            .map(|c| c.not_before))
    }

    /// Claims one job: a first claim creates the claim ref, a takeover (after a release or
    /// an expired lease) moves it by CAS with `attempt + 1`.
    ///
    /// # Errors
    /// `AlreadyClaimed` when another worker holds it or won the race, `Conflict` when it is
    /// not claimable (finished, cancelled, not yet available), `NotFound`.
    pub fn claim(&self, id: Ulid, opts: &ClaimOptions) -> Result<Lease> {
        check_lease(opts.lease)?;
        let guard = self.lock(id)?;
        self.claim_locked(id, opts, guard)
    }

    /// [`Jobs::claim`] with the job's lock already held (`guard`, released inside).
    fn claim_locked(&self, id: Ulid, opts: &ClaimOptions, guard: JobLock) -> Result<Lease> {
        check_lease(opts.lease)?;
        self.gatos.refresh_job(id)?;
        let refs = self.gatos.job_refs(id)?;
        let rec = self
            .gatos
            .job_record_at(id, refs, false)?
            .ok_or(ClaimError::NoSuchJob { job: id })?;
        let now = self.gatos.now();
        let d = state::derive(&rec, now, self.gatos.lease_skew());
        let ready = ready::Ready::new(self.gatos);
        if d.lost_final {
            let commit = self.close_lost(&rec)?;
            drop(guard);
            let _ = ready.put(id, None);
            self.emit_lost_final(&rec, d.attempt, commit);
            return Err(ClaimError::LostFinal { job: id }.into());
        }
        match d.state {
            JobState::Pending => {}
            JobState::Running => {
                // Keep the index's lease end current so workers stop trying it.
                let _ = ready.put(id, ready::entry_for(&rec, now, self.gatos.lease_skew()));
                return Err(ClaimError::Running { job: id }.into());
            }
            other => {
                let _ = ready.put(id, None);
                return Err(ClaimError::Ended {
                    job: id,
                    state: other,
                }
                .into());
            }
        }
        if let Some(v) = super::enqueuer::blocker(
            self.gatos,
            id,
            rec.job_commit,
            opts.allow_untrusted_enqueuers,
        )? {
            return Err(ClaimError::NotRunHere {
                job: id,
                reason: v.reason().unwrap_or_default(),
            }
            .into());
        }
        if let Some(at) = d.claimable_at.filter(|t| *t > now) {
            return Err(ClaimError::NotYet { job: id, at }.into());
        }
        let serves = if opts.queues.is_empty() {
            rec.spec.queue == Queue::default_queue()
        } else {
            opts.queues.contains(&rec.spec.queue)
        };
        if !serves {
            return Err(ClaimError::OtherQueue {
                job: id,
                queue: rec.spec.queue.clone(),
            }
            .into());
        }
        if !rec
            .spec
            .required_capabilities
            .iter()
            .all(|c| opts.caps.contains(c))
        {
            return Err(ClaimError::Capabilities { job: id }.into());
        }
        // As routing does: a worker that cannot resolve every secret the job names does not
        // claim it, by id either.
        let resolves = |s: &str| opts.can_resolve.as_ref().is_some_and(|f| f(s));
        if let Some(secret) = super::waiting::unresolved(&resolves, &rec.spec.secret_refs).next() {
            return Err(ClaimError::Secrets {
                job: id,
                secret: secret.to_owned(),
            }
            .into());
        }
        let prev = rec.claim.as_ref().map(|(c, _)| *c);
        let token = {
            // One call for the 32 bytes (`Rng::gen` of an array asks the system once per byte).
            let mut bytes = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
            LeaseToken::from_bytes(bytes)
        };
        let doc = ClaimDoc {
            job: id,
            attempt: d.attempt + 1,
            worker: opts.worker.clone(),
            worker_key: opts.worker_key,
            state: ClaimState::Running,
            lease_until: now.plus(opts.lease),
            claimed_at: now,
            outcome: None,
            exit_code: None,
            signal: None,
            available_at: None,
            lease_token_hash: Some(token.hash()),
        };
        let mut w = self.gatos.job_writer();
        let commit = self.claim_commit(
            &mut w,
            &doc,
            prev,
            &[],
            &format!("claim {id} attempt {}", doc.attempt),
        )?;
        let edit = Edit::update(names::job_claim(id), prev, commit);
        if !self.gatos.commit_job_action(id, w, vec![edit])? {
            return Err(ClaimError::Lost { job: id }.into());
        }
        drop(guard);
        let lease = Lease {
            id,
            attempt: doc.attempt,
            worker: doc.worker.clone(),
            worker_key: doc.worker_key,
            spec: rec.spec.clone(),
            job_commit: rec.job_commit,
            content_id: rec.content_id,
            claim_commit: commit,
            head: commit,
            lease: opts.lease,
            lease_until: doc.lease_until,
            claimed_at: now,
            token: Some(token),
        };
        let mut entry = ready::entry_for(&rec, now, self.gatos.lease_skew());
        if let Some(e) = entry.as_mut() {
            e.lease_until = Some(doc.lease_until);
        }
        let _ = ready.put(id, entry);
        if let Some((stale, c)) = &rec.claim
            && matches!(c.state, ClaimState::Running | ClaimState::Heartbeat)
        {
            // A takeover: the previous attempt's last heartbeat is the lost one.
            events::emit(
                self.gatos,
                JobEventKind::HeartbeatLost,
                &rec,
                c.attempt,
                Some(&c.worker),
                *stale,
            );
        }
        events::emit(
            self.gatos,
            JobEventKind::Claimed,
            &rec,
            doc.attempt,
            Some(&doc.worker),
            commit,
        );
        Ok(lease)
    }

    /// Reads the current claim and checks it is this lease's: the same worker and attempt
    /// (`LeaseExpired` otherwise) and the lease token (`Forbidden` otherwise; ADR 0022).
    fn own_claim(
        &self,
        id: Ulid,
        attempt: u32,
        worker: &WorkerId,
        token: Option<&LeaseToken>,
    ) -> Result<(Oid, ClaimDoc, JobRecord)> {
        let refs = self.gatos.job_refs(id)?;
        let rec = self
            .gatos
            .job_record_at(id, refs, false)?
            .ok_or_else(|| lease_lost(id, LostClaim::JobGone))?;
        let (head, doc) = rec
            .claim
            .clone()
            .ok_or_else(|| lease_lost(id, LostClaim::NoClaim))?;
        if doc.worker != *worker
            || doc.attempt != attempt
            || !matches!(doc.state, ClaimState::Running | ClaimState::Heartbeat)
        {
            return Err(lease_lost(
                id,
                LostClaim::Moved {
                    attempt: doc.attempt,
                    worker: doc.worker.clone(),
                    state: doc.state,
                },
            ));
        }
        if rec.result.is_some() {
            return Err(lease_lost(id, LostClaim::HasResult));
        }
        if let Some(hash) = &doc.lease_token_hash
            && !token.is_some_and(|t| t.matches(hash))
        {
            return Err(LeaseError::Token {
                job: id,
                attempt,
                given: token.is_some(),
            }
            .into());
        }
        Ok((head, doc, rec))
    }

    /// Extends a lease by `lease.lease` (a `heartbeat` commit, by CAS).
    ///
    /// # Errors
    /// `LeaseExpired` when the claim was taken over (the worker must stop the job).
    pub fn heartbeat(&self, lease: &mut Lease) -> Result<()> {
        check_lease(lease.lease)?;
        let guard = self.lock(lease.id)?;
        self.gatos.refresh_job(lease.id)?;
        let (head, doc, rec) =
            self.own_claim(lease.id, lease.attempt, &lease.worker, lease.token.as_ref())?;
        let now = self.gatos.now();
        let next = ClaimDoc {
            state: ClaimState::Heartbeat,
            lease_until: now.plus(lease.lease),
            ..doc
        };
        let mut w = self.gatos.job_writer();
        let commit = self.claim_commit(
            &mut w,
            &next,
            Some(head),
            &[],
            &format!("heartbeat {} attempt {}", lease.id, lease.attempt),
        )?;
        if !self.gatos.commit_job_action(
            lease.id,
            w,
            vec![Edit::update(names::job_claim(lease.id), Some(head), commit)],
        )? {
            return Err(lease_lost(lease.id, LostClaim::TakenOver));
        }
        drop(guard);
        lease.head = commit;
        lease.lease_until = next.lease_until;
        let _ = rec;
        Ok(())
    }

    /// Tells whether the job was cancelled (the worker checks at each heartbeat).
    ///
    /// # Errors
    /// When the ref cannot be read.
    pub fn is_cancelled(&self, id: Ulid) -> Result<bool> {
        Ok(self
            .gatos
            .store()
            .read_ref(&names::job_cancel(id))?
            .is_some())
    }

    /// Ends an attempt: `succeeded` (and final failures) write the result with the
    /// `closed` claim in one transaction; a failure or timeout with attempts left, and a
    /// cancelled run, write a `released` claim keeping the logs and proof. `lost` is a
    /// worker giving the job up (it is stopping): claimable again at once, or failed with
    /// `reason: "lost"` on the last attempt.
    ///
    /// # Errors
    /// `InvalidInput` for a `succeeded` attempt whose exit code is not 0; `LeaseExpired`
    /// when the claim was taken over. Either way nothing is written.
    pub fn finish(&self, lease: &Lease, finish: &Finish) -> Result<Finished> {
        check_outputs(finish)?;
        self.finish_checked(lease, finish)
    }

    /// [`Jobs::finish`] with the outputs already checked ([`check_outputs`]).
    fn finish_checked(&self, lease: &Lease, finish: &Finish) -> Result<Finished> {
        if finish.outcome == Outcome::Succeeded && finish.exit_code != Some(0) {
            return Err(LeaseError::SucceededNonZero {
                exit_code: finish.exit_code,
            }
            .into());
        }
        let guard = self.lock(lease.id)?;
        self.gatos.refresh_job(lease.id)?;
        let (head, doc, rec) =
            self.own_claim(lease.id, lease.attempt, &lease.worker, lease.token.as_ref())?;
        if finish.outcome == Outcome::Cancelled && rec.cancel.is_none() {
            // The end names why the job stopped: `cancelled` only where a cancel says so.
            return Err(Error::new(
                ErrorCode::Conflict,
                format!(
                    "job {} was not cancelled: end the attempt as failed, timeout or lost",
                    lease.id
                ),
            ));
        }
        let now = self.gatos.now();
        // An attempt given back with nothing run and nothing to prove (no proof, no log, no
        // output, no exit) records no files, as a lapsed lease's end does: `jobs verify`
        // lists it as unproven instead of a result missing its proof.
        let nothing = finish.outcome == Outcome::Lost
            && finish.poe.is_none()
            && finish.exit_code.is_none()
            && finish.stdout.is_empty()
            && finish.stderr.is_empty()
            && finish.outputs.is_empty();
        let mut files: Vec<(String, Vec<u8>)> = if nothing {
            Vec::new()
        } else {
            vec![
                (STDOUT_PATH.to_owned(), finish.stdout.clone()),
                (STDERR_PATH.to_owned(), finish.stderr.clone()),
            ]
        };
        for (p, b) in &finish.outputs {
            files.push((format!("{OUTPUTS_DIR}/{p}"), b.clone()));
        }
        if let Some(poe) = &finish.poe {
            files.push((POE_PATH.to_owned(), poe.clone()));
        }
        let attempts_left = lease.attempt < rec.spec.max_attempts;
        let release = match finish.outcome {
            Outcome::Succeeded => false,
            Outcome::Cancelled => true,
            Outcome::Failed | Outcome::Timeout | Outcome::Lost => attempts_left,
        };
        let (event, state, commit) = if release {
            let available_at = match finish.outcome {
                Outcome::Cancelled | Outcome::Lost => now,
                _ => now.plus(self.backoff(&rec.spec.queue, lease.attempt)),
            };
            let next = ClaimDoc {
                state: ClaimState::Released,
                outcome: Some(finish.outcome),
                exit_code: finish.exit_code,
                signal: finish.signal.clone(),
                available_at: Some(available_at),
                ..doc
            };
            let extra: Vec<(&str, &[u8])> = files
                .iter()
                .map(|(p, b)| (p.as_str(), b.as_slice()))
                .collect();
            let mut w = self.gatos.job_writer();
            let commit = self.claim_commit(
                &mut w,
                &next,
                Some(head),
                &extra,
                &format!("release {} attempt {}", lease.id, lease.attempt),
            )?;
            if !self.gatos.commit_job_action(
                lease.id,
                w,
                vec![Edit::update(names::job_claim(lease.id), Some(head), commit)],
            )? {
                return Err(lease_lost(lease.id, LostClaim::TakenOver));
            }
            // The state the refs now give (DESIGN §4): a cancel ref decides whatever the
            // outcome said (`cancel` published that transition); otherwise the job runs
            // again, or, on its last attempt, failed (the next claimer writes the `lost`
            // result).
            if rec.cancel.is_some() {
                (None, JobState::Cancelled, commit)
            } else if attempts_left {
                let why = super::ended::of_attempt(&rec, &next, false);
                (
                    Some((JobEventKind::RetryScheduled, why)),
                    JobState::Pending,
                    commit,
                )
            } else {
                (None, JobState::Failed, commit)
            }
        } else {
            let (status, reason) = match finish.outcome {
                Outcome::Succeeded => (Status::Succeeded, None),
                Outcome::Timeout => (Status::Failed, Some("timeout".to_owned())),
                Outcome::Lost => (Status::Failed, Some("lost".to_owned())),
                _ => (Status::Failed, None),
            };
            let result = ResultDoc {
                status,
                exit_code: finish.exit_code,
                attempt: lease.attempt,
                reason,
                signal: finish.signal.clone(),
            };
            let commit = self.write_final(&rec, head, doc.clone(), &result, &files)?;
            let why = super::ended::of_result(&rec, &result, Some(&doc));
            let event = Some((
                match status {
                    Status::Succeeded => JobEventKind::Succeeded,
                    Status::Failed => JobEventKind::Failed,
                },
                Some(why),
            ));
            (
                event,
                if status == Status::Succeeded {
                    JobState::Succeeded
                } else {
                    JobState::Failed
                },
                commit,
            )
        };
        drop(guard);
        let ready = ready::Ready::new(self.gatos);
        let entry = if release {
            self.record(lease.id)
                .ok()
                .flatten()
                .and_then(|r| ready::entry_for(&r, now, self.gatos.lease_skew()))
        } else {
            None
        };
        let _ = ready.put(lease.id, entry);
        if let Some((event, why)) = event {
            events::emit_with(
                self.gatos,
                event,
                &rec,
                lease.attempt,
                Some(&lease.worker),
                commit,
                why,
            );
        }
        Ok(Finished { state, commit })
    }

    /// Ends an attempt run by someone else (an RPC client): its proof must be signed by
    /// the key the claim names, trusted here and not revoked, cover exactly these logs and
    /// outputs, and name this job, attempt, claim, status and exit code. The daemon never
    /// signs for a process it did not run.
    ///
    /// # Errors
    /// `SignatureInvalid`, `UntrustedKey`, `KeyRevoked`, `DigestMismatch` for a bad proof
    /// (nothing is written); otherwise as [`Jobs::finish`].
    pub fn finish_verified(&self, lease: &Lease, finish: &Finish) -> Result<Finished> {
        check_outputs(finish)?;
        let poe = finish.poe.as_deref().ok_or_else(|| {
            Error::new(
                ErrorCode::SignatureInvalid,
                "a proof of execution (poe) is required",
            )
        })?;
        let key = lease.worker_key.ok_or_else(|| {
            Error::new(
                ErrorCode::SignatureInvalid,
                "the claim names no worker key to check the proof against",
            )
        })?;
        let mut files: Vec<(String, &[u8])> = vec![
            (STDOUT_PATH.to_owned(), finish.stdout.as_slice()),
            (STDERR_PATH.to_owned(), finish.stderr.as_slice()),
        ];
        for (p, b) in &finish.outputs {
            files.push((format!("{OUTPUTS_DIR}/{p}"), b.as_slice()));
        }
        let v = crate::proofs::verify(
            self.gatos,
            poe,
            Some(key),
            &crate::proofs::Subjects { files },
        )?;
        let p = &v.predicate;
        let mismatch = if p.job != lease.id {
            Some("job")
        } else if p.job_content_id != lease.content_id {
            Some("job_content_id")
        } else if p.attempt != lease.attempt {
            Some("attempt")
        } else if p.claim_commit != lease.claim_commit {
            Some("claim_commit")
        } else if p.worker != lease.worker {
            Some("worker")
        } else if p.exit_code != finish.exit_code {
            Some("exit_code")
        } else if p.status != ProofStatus::from(finish.outcome) {
            Some("status")
        } else {
            None
        };
        if let Some(field) = mismatch {
            return Err(Error::new(
                ErrorCode::DigestMismatch,
                format!("the proof's {field} does not match this attempt"),
            ));
        }
        self.finish_checked(lease, finish)
    }

    /// Writes the `closed` claim and the result in one transaction (CAS on the claim,
    /// create-only result). Returns the result commit.
    fn write_final(
        &self,
        rec: &JobRecord,
        head: Oid,
        doc: ClaimDoc,
        result: &ResultDoc,
        files: &[(String, Vec<u8>)],
    ) -> Result<Oid> {
        let now = self.gatos.now();
        let closed = ClaimDoc {
            state: ClaimState::Closed,
            outcome: None,
            exit_code: result.exit_code,
            available_at: None,
            lease_until: now.min(doc.lease_until),
            ..doc
        };
        let mut w = self.gatos.job_writer();
        let closed_commit = self.claim_commit(
            &mut w,
            &closed,
            Some(head),
            &[],
            &format!("close {} attempt {}", rec.id, closed.attempt),
        )?;
        let bytes = doc_bytes(result)?;
        let mut all: Vec<(&str, &[u8])> = vec![(RESULT_PATH, &bytes)];
        all.extend(files.iter().map(|(p, b)| (p.as_str(), b.as_slice())));
        let trailers = Trailers::new()
            .with(keys::KIND, "result")
            .with(keys::JOB, rec.id)
            .with(keys::ATTEMPT, result.attempt)
            .with(keys::CONTENT_ID, Digest::of(&bytes))
            .with(keys::WORKER, &closed.worker);
        let result_commit = self.gatos.job_commit_into(
            &mut w,
            &all,
            &[rec.job_commit, closed_commit],
            &trailers,
            &format!("result {} {:?}", rec.id, result.status).to_lowercase(),
            now,
        )?;
        let edits = vec![
            Edit::update(names::job_claim(rec.id), Some(head), closed_commit),
            Edit::create(names::job_result(rec.id), result_commit),
        ];
        if self.gatos.commit_job_action(rec.id, w, edits)? {
            Ok(result_commit)
        } else {
            Err(lease_lost(rec.id, LostClaim::TakenOverOrResult))
        }
    }

    /// Publishes what closing a job whose last attempt lost its lease did.
    fn emit_lost_final(&self, rec: &JobRecord, attempt: u32, commit: Oid) {
        if let Some((stale, c)) = &rec.claim
            && matches!(c.state, ClaimState::Running | ClaimState::Heartbeat)
        {
            events::emit(
                self.gatos,
                JobEventKind::HeartbeatLost,
                rec,
                c.attempt,
                Some(&c.worker),
                *stale,
            );
        }
        events::emit(self.gatos, JobEventKind::Failed, rec, attempt, None, commit);
    }

    /// Writes the result a job is owed when its last attempt lost its lease (see
    /// [`Jobs::claim`]); `None` when it is not in that state.
    ///
    /// # Errors
    /// When refs cannot be read or written.
    pub(crate) fn close_if_lost(&self, id: Ulid) -> Result<Option<Oid>> {
        let guard = self.lock(id)?;
        let Some(rec) = self
            .gatos
            .job_record_at(id, self.gatos.job_refs(id)?, false)?
        else {
            return Ok(None);
        };
        let d = state::derive(&rec, self.gatos.now(), self.gatos.lease_skew());
        if !d.lost_final {
            return Ok(None);
        }
        let commit = self.close_lost(&rec)?;
        drop(guard);
        let _ = ready::Ready::new(self.gatos).put(id, None);
        self.emit_lost_final(&rec, d.attempt, commit);
        Ok(Some(commit))
    }

    /// The first worker that sees a job whose last attempt lost its lease writes the
    /// `closed` claim and a result `failed`, `reason: "lost"` (DESIGN §4).
    fn close_lost(&self, rec: &JobRecord) -> Result<Oid> {
        let (head, doc) = rec
            .claim
            .clone()
            .ok_or_else(|| Error::new(ErrorCode::Internal, "lost without a claim"))?;
        let result = ResultDoc {
            status: Status::Failed,
            exit_code: doc.exit_code,
            attempt: doc.attempt,
            reason: Some("lost".into()),
            signal: None,
        };
        if doc.state == ClaimState::Closed {
            // A crash split the closing change: only the result is missing.
            let bytes = doc_bytes(&result)?;
            let trailers = Trailers::new()
                .with(keys::KIND, "result")
                .with(keys::JOB, rec.id)
                .with(keys::ATTEMPT, result.attempt);
            let commit = self.gatos.write_job_commit(
                &[(RESULT_PATH, &bytes)],
                &[rec.job_commit, head],
                &trailers,
                &format!("result {} failed", rec.id),
                self.gatos.now(),
            )?;
            if !self
                .gatos
                .apply_job_edits(rec.id, &[Edit::create(names::job_result(rec.id), commit)])?
            {
                return Err(Error::new(
                    ErrorCode::Conflict,
                    format!("job {} got a result meanwhile", rec.id),
                ));
            }
            return Ok(commit);
        }
        self.write_final(rec, head, doc, &result, &[])
    }

    /// Retry delay after attempt `n`: `min(base · 2^(n−1), max) ± 20 %`, with the queue's
    /// `config/queues/<queue>` overriding base and max.
    fn backoff(&self, queue: &Queue, attempt: u32) -> Dur {
        let (base, max) = match super::queues::config(self.gatos, queue) {
            Ok(c) => (
                c.backoff_base.map_or(BACKOFF_BASE, Dur::from_secs),
                c.backoff_max.map_or(BACKOFF_MAX, Dur::from_secs),
            ),
            Err(e) => {
                tracing::warn!(%queue, error = %e, "unreadable queue settings; using the default backoff");
                (BACKOFF_BASE, BACKOFF_MAX)
            }
        };
        let shift = attempt.saturating_sub(1).min(30);
        let raw = base
            .as_millis()
            .saturating_mul(1u64 << shift)
            .min(max.as_millis());
        let jitter = self.gatos.entropy().uniform(0.8, 1.2);
        Dur::from_millis((raw as f64 * jitter) as u64)
    }

    /// Rebuilds a lease for a claim this worker holds (RPC clients send `{id, attempt,
    /// worker, lease_token}` rather than keeping one).
    ///
    /// # Errors
    /// `LeaseExpired` when the claim is not theirs any more; `Forbidden` when the token
    /// is missing or wrong.
    pub fn lease_for(
        &self,
        id: Ulid,
        attempt: u32,
        worker: &WorkerId,
        token: Option<&LeaseToken>,
        lease: Dur,
    ) -> Result<Lease> {
        let (head, doc, rec) = self.own_claim(id, attempt, worker, token)?;
        let first = running_commit(self.gatos, head, attempt)?.ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidEnvelope,
                format!("the claim chain of job {id} has no running commit for attempt {attempt}"),
            )
        })?;
        Ok(Lease {
            id,
            attempt,
            worker: worker.clone(),
            worker_key: doc.worker_key,
            spec: rec.spec,
            job_commit: rec.job_commit,
            content_id: rec.content_id,
            claim_commit: first,
            head,
            lease,
            lease_until: doc.lease_until,
            claimed_at: doc.claimed_at,
            token: token.cloned(),
        })
    }
}
