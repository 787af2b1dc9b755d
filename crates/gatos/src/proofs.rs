//! Proofs of execution: a DSSE envelope around an in-toto Statement v1, signed with
//! ed25519 over DSSE's pre-authentication encoding (DESIGN §4, ADR 0013).
//!
//! A proof shows that a key this repository trusts attested these bytes (the logs and
//! outputs, by SHA-256 and git blob id) and this exit code for this attempt of this job.
//! It does not show that the process did what the logs say, nor that the worker ran the
//! command faithfully: it pins who vouched for what.

use base64::Engine as _;
use ed25519_dalek::SigningKey;
use gatos_types::jobs::{ProofStatus, ResultDoc, Status};
use gatos_types::{Digest, ErrorCode, KeyId, Oid, Timestamp, Ulid, WorkerId, jcs};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::Gatos;
use crate::error::{Error, Result};

/// The DSSE payload type of an in-toto statement.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The in-toto Statement v1 type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// Our predicate type (documented in docs/jobs.md).
pub const PREDICATE_TYPE: &str = "https://gatos.dev/attestations/proof-of-execution/v1";

/// DSSE's pre-authentication encoding: `DSSEv1 SP len(type) SP type SP len(body) SP body`.
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut v = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        body.len()
    )
    .into_bytes();
    v.extend_from_slice(body);
    v
}

/// One captured stream, as the predicate describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamInfo {
    /// `sha256` hex of the stored bytes.
    pub sha256: String,
    /// Bytes stored.
    pub bytes: u64,
    /// True when the process wrote more than was kept.
    pub truncated: bool,
}

/// One collected output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputInfo {
    /// Its path relative to the job's working directory.
    pub path: String,
    /// `sha256` hex.
    pub sha256: String,
    /// Bytes.
    pub bytes: u64,
}

/// The predicate (DESIGN §4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Predicate {
    /// The job.
    pub job: Ulid,
    /// `blake3:` of its `job.json`.
    pub job_content_id: Digest,
    /// The attempt.
    pub attempt: u32,
    /// The attempt's first claim commit.
    pub claim_commit: Oid,
    /// The worker.
    pub worker: WorkerId,
    /// The signing key.
    pub worker_key: KeyId,
    /// When the process started.
    pub started_at: Timestamp,
    /// When it ended.
    pub finished_at: Timestamp,
    /// Its exit code (null when killed by a signal).
    pub exit_code: Option<i32>,
    /// How the attempt ended: `succeeded`, `failed`, `timeout`, `lost` or `cancelled` (a
    /// status a newer node wrote reads as [`ProofStatus::Other`]).
    pub status: ProofStatus,
    /// Standard output.
    pub stdout: StreamInfo,
    /// Standard error.
    pub stderr: StreamInfo,
    /// Collected outputs.
    pub outputs: Vec<OutputInfo>,
    /// What ran the job.
    pub runner: Value,
}

/// What a proof covers: the files of the commit that carries it, by path.
pub struct Subjects<'a> {
    /// `(path in the commit tree, bytes)`.
    pub files: Vec<(String, &'a [u8])>,
}

fn sha256_hex(b: &[u8]) -> String {
    gatos_types::digest::to_hex(&sha2::Sha256::digest(b))
}

fn git_blob_hex(b: &[u8]) -> Result<String> {
    Ok(gatos_store::objects::hash(gatos_store::objects::Kind::Blob, b)?.to_string())
}

/// Builds and signs a proof; returns `poe.json` (JCS bytes of the DSSE envelope).
///
/// # Errors
/// `InvalidInput` when the statement cannot be encoded.
pub fn sign(key: &SigningKey, predicate: &Predicate, subjects: &Subjects<'_>) -> Result<Vec<u8>> {
    let subject: Vec<Value> = subjects
        .files
        .iter()
        .map(|(name, bytes)| Ok(json!({"name": name, "digest": {"sha256": sha256_hex(bytes), "gitBlob": git_blob_hex(bytes)?}})))
        .collect::<Result<_>>()?;
    let statement = json!({
        "_type": STATEMENT_TYPE,
        "subject": subject,
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate,
    });
    let body = jcs::to_vec(&statement);
    let sig = crate::signing::sign_b64(key, &pae(PAYLOAD_TYPE, &body));
    let keyid = KeyId::from_bytes(key.verifying_key().to_bytes());
    let envelope = json!({
        "payloadType": PAYLOAD_TYPE,
        "payload": base64::engine::general_purpose::STANDARD.encode(&body),
        "signatures": [{"keyid": keyid.to_string(), "sig": sig}],
    });
    Ok(jcs::to_vec(&envelope))
}

/// Returns the stream description of captured bytes.
pub fn stream_info(bytes: &[u8], truncated: bool) -> StreamInfo {
    StreamInfo {
        sha256: sha256_hex(bytes),
        bytes: bytes.len() as u64,
        truncated,
    }
}

/// Returns the description of an output.
pub fn output_info(path: &str, bytes: &[u8]) -> OutputInfo {
    OutputInfo {
        path: path.to_owned(),
        sha256: sha256_hex(bytes),
        bytes: bytes.len() as u64,
    }
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "payloadType")]
    payload_type: String,
    payload: String,
    signatures: Vec<Signature>,
}

#[derive(Deserialize)]
struct Signature {
    keyid: String,
    sig: String,
}

#[derive(Deserialize)]
struct Statement {
    #[serde(rename = "_type")]
    kind: String,
    subject: Vec<SubjectEntry>,
    #[serde(rename = "predicateType")]
    predicate_type: String,
    predicate: Predicate,
}

#[derive(Deserialize)]
struct SubjectEntry {
    name: String,
    digest: std::collections::BTreeMap<String, String>,
}

/// What a verified proof says.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The signing key.
    pub key: KeyId,
    /// The predicate.
    pub predicate: Predicate,
}

fn fail(code: ErrorCode, msg: impl Into<String>) -> Error {
    Error::new(code, msg)
}

/// Reads the predicate a proof carries, without verifying anything (an export shows it
/// next to whether the proof verified).
pub fn predicate_of(poe: &[u8]) -> Option<Predicate> {
    let env: Envelope = serde_json::from_slice(poe).ok()?;
    let body = base64::engine::general_purpose::STANDARD
        .decode(env.payload.as_bytes())
        .ok()?;
    let st: Statement = serde_json::from_slice(&body).ok()?;
    Some(st.predicate)
}

/// Reads the key a proof claims to be signed by, without verifying anything.
pub fn key_of(poe: &[u8]) -> Option<KeyId> {
    let env: Envelope = serde_json::from_slice(poe).ok()?;
    env.signatures.first()?.keyid.parse().ok()
}

/// Verifies a proof (DESIGN §4): [`verify_integrity`], then [`check_trust`].
///
/// # Errors
/// `SignatureInvalid`, `UntrustedKey`, `KeyRevoked`, `DigestMismatch`, `InvalidEnvelope`.
pub fn verify(
    gatos: &Gatos,
    poe: &[u8],
    expected_key: Option<KeyId>,
    subjects: &Subjects<'_>,
) -> Result<Verified> {
    let v = verify_integrity(poe, expected_key, subjects)?;
    check_trust(gatos, &v)?;
    Ok(v)
}

/// Checks that a proof's key is trusted here and was not revoked before the proof was
/// made. Kept apart from [`verify_integrity`] so that a proof that is sound in every other
/// way can be told apart from a broken one: "a valid signature by a key this node does
/// not trust" is a question of trust, not of the proof.
///
/// # Errors
/// `UntrustedKey`, `KeyRevoked`, or when the revocations cannot be read.
pub fn check_trust(gatos: &Gatos, v: &Verified) -> Result<()> {
    let key = v.key;
    if !gatos.keys().is_trusted(&key) {
        return Err(fail(
            ErrorCode::UntrustedKey,
            format!(
                "valid signature by {key}, a key this node does not trust (git gatos keys trust {key})"
            ),
        ));
    }
    if let Some(rev) = gatos.keys().revocation(&key)?
        && rev.invalidates(v.predicate.finished_at)
    {
        return Err(fail(
            ErrorCode::KeyRevoked,
            format!(
                "{key} was revoked ({}) before this proof was made",
                rev.reason.as_str()
            ),
        ));
    }
    Ok(())
}

/// Verifies everything a proof says by itself, whoever signed it: the signature over
/// DSSE's PAE, that the key is `expected_key` (the claim's `worker_key`), every subject's
/// digests against `subjects`, and that no file of `subjects` is left out. Trust is
/// [`check_trust`]'s.
///
/// # Errors
/// `SignatureInvalid`, `DigestMismatch`, `InvalidEnvelope`.
pub fn verify_integrity(
    poe: &[u8],
    expected_key: Option<KeyId>,
    subjects: &Subjects<'_>,
) -> Result<Verified> {
    let env: Envelope = serde_json::from_slice(poe).map_err(|e| {
        fail(
            ErrorCode::InvalidEnvelope,
            format!("poe.json is not a DSSE envelope: {e}"),
        )
    })?;
    if env.payload_type != PAYLOAD_TYPE {
        return Err(fail(
            ErrorCode::InvalidEnvelope,
            format!("payloadType is {:?}, not {PAYLOAD_TYPE}", env.payload_type),
        ));
    }
    let sig = env
        .signatures
        .first()
        .ok_or_else(|| fail(ErrorCode::SignatureInvalid, "the proof has no signature"))?;
    let key: KeyId = sig.keyid.parse().map_err(|_| {
        fail(
            ErrorCode::SignatureInvalid,
            format!("keyid {:?} is not an ed25519 key id", sig.keyid),
        )
    })?;
    let body = base64::engine::general_purpose::STANDARD
        .decode(env.payload.as_bytes())
        .map_err(|_| fail(ErrorCode::InvalidEnvelope, "payload is not base64"))?;
    if !crate::signing::verify_b64(&key, &pae(PAYLOAD_TYPE, &body), &sig.sig) {
        return Err(fail(
            ErrorCode::SignatureInvalid,
            format!("the signature by {key} does not verify"),
        ));
    }
    if let Some(expected) = expected_key
        && expected != key
    {
        return Err(fail(
            ErrorCode::SignatureInvalid,
            format!("signed by {key}, but the claim names {expected}"),
        ));
    }
    let st: Statement = serde_json::from_slice(&body).map_err(|e| {
        fail(
            ErrorCode::InvalidEnvelope,
            format!("the payload is not our statement: {e}"),
        )
    })?;
    if st.kind != STATEMENT_TYPE || st.predicate_type != PREDICATE_TYPE {
        return Err(fail(
            ErrorCode::InvalidEnvelope,
            "unknown statement or predicate type",
        ));
    }
    if st.predicate.worker_key != key {
        return Err(fail(
            ErrorCode::SignatureInvalid,
            "the predicate names another key than the signature",
        ));
    }
    for (name, bytes) in &subjects.files {
        let Some(entry) = st.subject.iter().find(|s| &s.name == name) else {
            return Err(fail(
                ErrorCode::DigestMismatch,
                format!("{name} is not covered by the proof"),
            ));
        };
        if entry.digest.get("sha256").map(String::as_str) != Some(sha256_hex(bytes).as_str())
            || entry.digest.get("gitBlob").map(String::as_str)
                != Some(git_blob_hex(bytes)?.as_str())
        {
            return Err(fail(
                ErrorCode::DigestMismatch,
                format!("{name} does not match the digest in the proof"),
            ));
        }
    }
    for s in &st.subject {
        if !subjects.files.iter().any(|(n, _)| *n == s.name) {
            return Err(fail(
                ErrorCode::DigestMismatch,
                format!("{} is in the proof but not in the commit", s.name),
            ));
        }
    }
    Ok(Verified {
        key,
        predicate: st.predicate,
    })
}

/// Checks that `result.json` says what the proof says.
///
/// # Errors
/// `DigestMismatch` naming the field that disagrees.
pub fn check_result(
    v: &Verified,
    job: Ulid,
    job_content_id: &Digest,
    result: &ResultDoc,
) -> Result<()> {
    let p = &v.predicate;
    // Only `succeeded` agrees with a succeeded result; every other status (one this
    // version does not know included) with a failed one.
    let proof_succeeded = match &p.status {
        ProofStatus::Succeeded => true,
        ProofStatus::Failed
        | ProofStatus::Timeout
        | ProofStatus::Lost
        | ProofStatus::Cancelled
        | ProofStatus::Other(_) => false,
    };
    let status_ok = match result.status {
        Status::Succeeded => proof_succeeded,
        Status::Failed => !proof_succeeded,
    };
    let mismatch = if p.job != job {
        Some("job")
    } else if &p.job_content_id != job_content_id {
        Some("job_content_id")
    } else if p.attempt != result.attempt {
        Some("attempt")
    } else if p.exit_code != result.exit_code {
        Some("exit_code")
    } else if !status_ok {
        Some("status")
    } else {
        None
    };
    match mismatch {
        Some(field) => Err(fail(
            ErrorCode::DigestMismatch,
            format!("result.json disagrees with the proof on {field}"),
        )),
        None => Ok(()),
    }
}

/// What an attempt produced, for [`attest`].
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    /// When the process started.
    pub started_at: Timestamp,
    /// When it ended.
    pub finished_at: Timestamp,
    /// How it ended.
    pub outcome: gatos_types::jobs::Outcome,
    /// Its exit code (null when killed by a signal).
    pub exit_code: Option<i32>,
    /// Stored standard output.
    pub stdout: &'a [u8],
    /// True when the process wrote more than was kept.
    pub stdout_truncated: bool,
    /// Stored standard error.
    pub stderr: &'a [u8],
    /// True when the process wrote more than was kept.
    pub stderr_truncated: bool,
    /// Collected outputs: path relative to the job's `cwd`, bytes.
    pub outputs: &'a [(String, Vec<u8>)],
    /// What ran it (free-form).
    pub runner: Value,
}

/// The claimed attempt a proof is for (a [`crate::jobs::Lease`] converts into it).
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    /// The job.
    pub job: Ulid,
    /// `blake3:` of its `job.json`.
    pub job_content_id: Digest,
    /// The attempt.
    pub attempt: u32,
    /// The attempt's first claim commit.
    pub claim_commit: Oid,
    /// The worker holding the claim.
    pub worker: &'a WorkerId,
}

/// Signs the proof of an attempt of a claimed job: what a worker does after the process
/// ends, and what an RPC client does before `jobs.complete`. The subjects are the files
/// the result (or released claim) commit will hold: `logs/stdout`, `logs/stderr` and
/// `outputs/<path>`.
///
/// # Errors
/// `InvalidInput` when the statement cannot be encoded.
pub fn attest<'a>(
    key: &SigningKey,
    claim: impl Into<Claim<'a>>,
    a: &Attempt<'_>,
) -> Result<Vec<u8>> {
    use gatos_types::jobs::{OUTPUTS_DIR, STDERR_PATH, STDOUT_PATH};
    let claim = claim.into();
    let predicate = Predicate {
        job: claim.job,
        job_content_id: claim.job_content_id,
        attempt: claim.attempt,
        claim_commit: claim.claim_commit,
        worker: claim.worker.clone(),
        worker_key: KeyId::from_bytes(key.verifying_key().to_bytes()),
        started_at: a.started_at,
        finished_at: a.finished_at,
        exit_code: a.exit_code,
        status: a.outcome.into(),
        stdout: stream_info(a.stdout, a.stdout_truncated),
        stderr: stream_info(a.stderr, a.stderr_truncated),
        outputs: a.outputs.iter().map(|(p, b)| output_info(p, b)).collect(),
        runner: a.runner.clone(),
    };
    let mut files: Vec<(String, &[u8])> = vec![
        (STDOUT_PATH.to_owned(), a.stdout),
        (STDERR_PATH.to_owned(), a.stderr),
    ];
    for (p, b) in a.outputs {
        files.push((format!("{OUTPUTS_DIR}/{p}"), b.as_slice()));
    }
    sign(key, &predicate, &Subjects { files })
}
