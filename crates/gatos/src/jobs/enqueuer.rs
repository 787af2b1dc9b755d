//! Who enqueued a job, signed (ADR 0019): a DSSE envelope `enqueue.json` beside `job.json`
//! in the job commit, over the JCS of `{job, content_id, queue, priority, enqueuer,
//! enqueued_at}`.
//!
//! A worker runs a job only when the envelope names the job it sits in, agrees with the job
//! document and its trailers, and is signed by a key this node trusts (its own key always
//! is). Jobs this node held before it learnt this rule (recorded once, at the first check)
//! may still run unsigned; `worker --allow-untrusted-enqueuers` (or
//! `gatos.worker.allowUntrustedEnqueuers`) opts out for open setups.

use std::collections::BTreeSet;

use base64::Engine as _;
use ed25519_dalek::SigningKey;
use gatos_store::refs::names::{self, RefKind};
use gatos_types::trailers::keys as tk;
use gatos_types::{Digest, ErrorCode, KeyId, Oid, Queue, Timestamp, Ulid, jcs};
use serde::{Deserialize, Serialize};

use super::records::JOB_PATH;
use crate::Gatos;
use crate::error::{Error, Result};

/// The envelope's path in a job commit.
pub const ENQUEUE_PATH: &str = "enqueue.json";
/// The DSSE payload type of an enqueue statement.
pub const PAYLOAD_TYPE: &str = "application/vnd.gatos.enqueue+json";
/// The trailer naming the enqueuer's key.
pub const ENQUEUER_KEY: &str = "Enqueuer-Key";
/// Git config key: run jobs whatever their enqueuer (open setups).
pub const ALLOW_UNTRUSTED_KEY: &str = "gatos.worker.allowUntrustedEnqueuers";

/// Who asked for the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enqueuer {
    /// The key that signed the envelope.
    pub key: KeyId,
    /// Who asked, as the node saw it (`cli:<user>`, `rpc:<transport>`).
    pub actor: String,
}

/// The signed statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    /// The job: must be the ULID of the ref the commit sits under.
    pub job: Ulid,
    /// `blake3:` of `job.json`.
    pub content_id: Digest,
    /// The job's queue.
    pub queue: Queue,
    /// The job's priority.
    pub priority: i64,
    /// Who asked.
    pub enqueuer: Enqueuer,
    /// When.
    pub enqueued_at: Timestamp,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    #[serde(rename = "payloadType")]
    payload_type: String,
    payload: String,
    signatures: Vec<Signature>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Signature {
    keyid: KeyId,
    sig: String,
}

/// Signs a statement; returns the envelope's JCS bytes.
///
/// # Errors
/// When the statement cannot be serialised.
pub fn sign(key: &SigningKey, st: &Statement) -> Result<Vec<u8>> {
    let payload = jcs::to_vec_of(st)?;
    let sig = crate::keys::sign_b64(key, &crate::proofs::pae(PAYLOAD_TYPE, &payload));
    let env = Envelope {
        payload_type: PAYLOAD_TYPE.to_owned(),
        payload: base64::engine::general_purpose::STANDARD.encode(&payload),
        signatures: vec![Signature {
            keyid: st.enqueuer.key,
            sig,
        }],
    };
    Ok(jcs::to_vec_of(&env)?)
}

/// What a job commit says about who enqueued it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Signed by a key this node trusts.
    Trusted(Statement),
    /// A valid signature by a key this node does not trust.
    Untrusted(Statement),
    /// No envelope (a job from before signed enqueues, or from a node without a key).
    Unsigned,
    /// An envelope that does not verify or does not match the job.
    Invalid(String),
}

impl Verdict {
    /// The code a refusal based on this verdict carries.
    pub fn code(&self) -> ErrorCode {
        match self {
            Verdict::Trusted(_) => ErrorCode::Internal,
            Verdict::Untrusted(_) => ErrorCode::UntrustedKey,
            Verdict::Unsigned => ErrorCode::Forbidden,
            Verdict::Invalid(_) => ErrorCode::SignatureInvalid,
        }
    }

    /// Why a worker does not run it (`None` when trusted).
    pub fn reason(&self) -> Option<String> {
        match self {
            Verdict::Trusted(_) => None,
            Verdict::Untrusted(s) => Some(format!(
                "enqueued by {} ({}), a key this node does not trust (git gatos keys trust {})",
                s.enqueuer.key, s.enqueuer.actor, s.enqueuer.key
            )),
            Verdict::Unsigned => Some(
                "no enqueuer signature (only jobs held before signed enqueues may run unsigned; a worker that allows untrusted enqueuers runs it anyway)".to_owned(),
            ),
            Verdict::Invalid(why) => Some(format!("enqueuer signature invalid: {why}")),
        }
    }
}

/// What a job commit's envelope says before trust is asked: signed (and matching) by
/// the statement's key, unsigned, or invalid. It depends on the commit's content only.
#[derive(Debug, Clone)]
enum Signed {
    By(Statement),
    Unsigned,
    Invalid(String),
}

/// The envelopes a handle checked, by job and job commit (issue #21): a worker checks a
/// job's envelope when it picks it and again when it claims it, each time reading three
/// objects and verifying a signature. The commit names its content, so an entry is never
/// stale; whether its key is trusted is asked afresh each time. Bounded: emptied when it
/// holds [`EnvelopeCache::MAX`] entries.
#[derive(Debug, Default)]
pub(crate) struct EnvelopeCache {
    checked: std::sync::Mutex<std::collections::HashMap<(Ulid, Oid), Signed>>,
}

impl EnvelopeCache {
    /// Entries held at most.
    pub(crate) const MAX: usize = 20_000;
}

/// Checks the envelope of job `id` in `job_commit`.
///
/// # Errors
/// When the commit cannot be read.
pub fn check(gatos: &Gatos, id: Ulid, job_commit: Oid) -> Result<Verdict> {
    let signed = checked(gatos, id, job_commit)?;
    Ok(match signed {
        Signed::Unsigned => Verdict::Unsigned,
        Signed::Invalid(why) => Verdict::Invalid(why),
        Signed::By(st) => {
            let keys = gatos.keys();
            if keys.current() == Some(st.enqueuer.key) || keys.is_trusted(&st.enqueuer.key) {
                Verdict::Trusted(st)
            } else {
                Verdict::Untrusted(st)
            }
        }
    })
}

/// What the envelope of job `id` in `job_commit` says before trust is asked, from this
/// handle's cache, read and verified on a miss and kept.
fn checked(gatos: &Gatos, id: Ulid, job_commit: Oid) -> Result<Signed> {
    let cache = gatos.envelope_cache();
    let hit = cache
        .checked
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&(id, job_commit))
        .cloned();
    if let Some(s) = hit {
        return Ok(s);
    }
    let s = signed(gatos, id, job_commit)?;
    let mut checked = cache
        .checked
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if checked.len() >= EnvelopeCache::MAX {
        checked.clear();
    }
    checked.insert((id, job_commit), s.clone());
    Ok(s)
}

/// Reads and verifies the envelope of job `id` in `job_commit` into this handle's cache
/// without asking about trust (a daemon's read-ahead of claims, ADR 0046 session 20): the
/// claim's [`check`] then reads nothing and asks only whether the key is trusted.
///
/// # Errors
/// When the commit cannot be read.
pub(crate) fn prime(gatos: &Gatos, id: Ulid, job_commit: Oid) -> Result<()> {
    checked(gatos, id, job_commit).map(|_| ())
}

/// Whether this handle holds the check of job `id`'s envelope in `job_commit` (read by a
/// claim, an enqueue of this handle, or a daemon's read-ahead).
pub fn is_checked(gatos: &Gatos, id: Ulid, job_commit: Oid) -> bool {
    gatos
        .envelope_cache()
        .checked
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .contains_key(&(id, job_commit))
}

/// Records the statement a job commit this handle just wrote carries (signed by this
/// handle's key over that commit's own document): the next check of that commit in this
/// process reads nothing back. Only an enqueue calls it, after the job's ref exists.
pub(crate) fn remember(gatos: &Gatos, job_commit: Oid, st: Statement) {
    let mut checked = gatos
        .envelope_cache()
        .checked
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if checked.len() >= EnvelopeCache::MAX {
        checked.clear();
    }
    checked.insert((st.job, job_commit), Signed::By(st));
}

/// The content part of [`check`]: reads and verifies the envelope. The commit's tree is
/// read once; `job.json` comes from the handle's document cache when a job record read it.
fn signed(gatos: &Gatos, id: Ulid, job_commit: Oid) -> Result<Signed> {
    let mut r = gatos.store().reader();
    let c = r.commit(job_commit)?;
    let entries = r.tree(c.tree)?;
    let blob = |name: &str| {
        entries
            .iter()
            .find(|e| e.name == name && !e.is_tree)
            .map(|e| e.oid)
    };
    let Some(env_id) = blob(ENQUEUE_PATH) else {
        return Ok(Signed::Unsigned);
    };
    let env_bytes = r.blob(env_id)?;
    let doc: std::sync::Arc<[u8]> = match gatos.cached_doc_bytes(job_commit, JOB_PATH) {
        Some(d) => d,
        None => match blob(JOB_PATH) {
            Some(d) => r.blob(d)?.into(),
            None => std::sync::Arc::default(),
        },
    };
    let invalid = |why: &str| Ok(Signed::Invalid(why.to_owned()));
    let Ok(env) = serde_json::from_slice::<Envelope>(&env_bytes) else {
        return invalid("enqueue.json is not a DSSE envelope");
    };
    if env.payload_type != PAYLOAD_TYPE {
        return invalid("wrong payloadType");
    }
    let Ok(payload) = base64::engine::general_purpose::STANDARD.decode(&env.payload) else {
        return invalid("payload is not base64");
    };
    let Ok(st) = serde_json::from_slice::<Statement>(&payload) else {
        return invalid("payload is not an enqueue statement");
    };
    let [sig] = env.signatures.as_slice() else {
        return invalid("not exactly one signature");
    };
    if sig.keyid != st.enqueuer.key
        || !crate::keys::verify_b64(
            &sig.keyid,
            &crate::proofs::pae(PAYLOAD_TYPE, &payload),
            &sig.sig,
        )
    {
        return invalid("the signature does not verify");
    }
    // A replayed envelope names another job, or another document.
    let t = c.trailers();
    let spec: Option<gatos_types::jobs::JobSpec> = serde_json::from_slice(&doc).ok();
    let matches = st.job == id
        && st.content_id == Digest::of(&doc)
        && t.get(tk::JOB) == Some(id.to_string().as_str())
        && t.get(tk::CONTENT_ID) == Some(st.content_id.to_string().as_str())
        && t.get(ENQUEUER_KEY) == Some(st.enqueuer.key.to_string().as_str())
        && spec.is_some_and(|s| s.queue == st.queue && s.priority == st.priority);
    if !matches {
        return invalid("the envelope is of another job, or does not match this job's document");
    }
    Ok(Signed::By(st))
}

fn legacy_path(gatos: &Gatos) -> std::path::PathBuf {
    gatos
        .store()
        .gatos_dir()
        .join("jobs")
        .join("legacy-unsigned")
}

/// The unsigned jobs this node held when it first checked enqueuers (recorded then, once):
/// only those may run unsigned.
///
/// # Errors
/// When the record cannot be read or made.
pub fn legacy_unsigned(gatos: &Gatos) -> Result<BTreeSet<Ulid>> {
    let path = legacy_path(gatos);
    let io =
        |e: std::io::Error| Error::new(ErrorCode::Internal, format!("{}: {e}", path.display()));
    match std::fs::read_to_string(&path) {
        Ok(text) => return Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let mut ids = BTreeSet::new();
    let mut r = gatos.store().reader();
    for (name, commit) in gatos.store().list_refs(&names::jobs_prefix())? {
        if let Some(RefKind::Job(id)) = name.kind()
            && let Ok(c) = r.commit(commit)
            && r.lookup(c.tree, ENQUEUE_PATH)?.is_none()
        {
            ids.insert(id);
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let text: String = ids.iter().map(|i| format!("{i}\n")).collect();
    let tmp = path.with_extension(format!("{}", std::process::id()));
    std::fs::write(&tmp, text).map_err(io)?;
    // Whoever records first wins; a later writer's list is the same or newer.
    if !path.exists() {
        std::fs::rename(&tmp, &path).map_err(io)?;
    } else {
        let _ = std::fs::remove_file(&tmp);
        return legacy_unsigned(gatos);
    }
    if !ids.is_empty() {
        tracing::info!(
            jobs = ids.len(),
            "recorded the unsigned jobs held before signed enqueues"
        );
    }
    Ok(ids)
}

/// Whether a worker may run job `id`, and why not: `Ok(None)` to run it.
///
/// # Errors
/// When the job commit or the legacy record cannot be read.
pub fn blocker(
    gatos: &Gatos,
    id: Ulid,
    job_commit: Oid,
    allow_untrusted: bool,
) -> Result<Option<Verdict>> {
    let v = check(gatos, id, job_commit)?;
    Ok(match v {
        Verdict::Trusted(_) => None,
        // A bad signature is never waved through.
        Verdict::Invalid(_) => Some(v),
        _ if allow_untrusted => None,
        Verdict::Unsigned if legacy_unsigned(gatos)?.contains(&id) => None,
        other => Some(other),
    })
}

/// Whether the repository's config lets workers run jobs whatever their enqueuer.
pub fn allowed_by_config(gatos: &Gatos) -> bool {
    gatos
        .store()
        .config_string(ALLOW_UNTRUSTED_KEY)
        .is_some_and(|v| matches!(v.as_str(), "true" | "yes" | "on" | "1"))
}
