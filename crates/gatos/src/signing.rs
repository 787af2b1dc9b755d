//! Signing primitives: ed25519 signatures in base64, and the signed trailers of
//! control-plane commits (ADR 0018). Below every plane that signs or verifies (messages,
//! jobs, proofs) and below [`crate::keys`], which manages the keys and re-exports these, so
//! that signing a commit does not depend on the keys plane (which audits, which publishes).

use std::collections::BTreeMap;

use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use gatos_types::trailers::{Trailers, keys as tk};
use gatos_types::{ErrorCode, KeyId};

use crate::error::{Error, Result};

fn key_id(k: &VerifyingKey) -> KeyId {
    KeyId::from_bytes(k.to_bytes())
}

/// Returns the verifying key of a key id.
///
/// # Errors
/// `InvalidInput` when the bytes are not an ed25519 public key.
pub fn verifying_key(k: &KeyId) -> Result<VerifyingKey> {
    // Decompressing a point costs about as much as a third of a verification, and a
    // ledger has few keys signing many proofs: keep the last few hundred decoded.
    static DECODED: std::sync::Mutex<BTreeMap<KeyId, VerifyingKey>> =
        std::sync::Mutex::new(BTreeMap::new());
    let mut decoded = DECODED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(vk) = decoded.get(k) {
        return Ok(*vk);
    }
    let vk = VerifyingKey::from_bytes(k.as_bytes()).map_err(|_| {
        Error::new(
            ErrorCode::InvalidInput,
            format!("{k} is not an ed25519 public key"),
        )
    })?;
    if decoded.len() >= 256 {
        decoded.clear();
    }
    decoded.insert(*k, vk);
    Ok(vk)
}

/// Signs bytes, returning the base64 signature.
pub fn sign_b64(key: &SigningKey, bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(key.sign(bytes).to_bytes())
}

/// Verifies a base64 signature.
pub fn verify_b64(key: &KeyId, bytes: &[u8], sig: &str) -> bool {
    let Ok(vk) = verifying_key(key) else {
        return false;
    };
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(sig.trim()) else {
        return false;
    };
    let Ok(sig) = ed25519_dalek::Signature::from_slice(&raw) else {
        return false;
    };
    vk.verify(bytes, &sig).is_ok()
}

/// The trailer naming the key that signed a control-plane commit (ADR 0018).
pub const SIGNED_BY: &str = "Signed-By";
/// The trailer holding that signature (base64 ed25519), always the last one.
pub const SIGNATURE: &str = "Signature";

/// The `Gatos-Kind`s whose commits are signed by their writer and, from a remote, count
/// only when a key this node trusts signed them (jobs carry their own envelope, key records
/// and revocations their own signatures).
pub const SIGNED_KINDS: &[&str] = &[
    "cancel",
    "manifest",
    "archive",
    "config",
    "checkpoint",
    "summary",
];

/// Trailers that record a commit's position, not its content: left out of what a commit
/// signature covers, so that re-parenting a commit (sync re-appends, summary chains
/// replayed on the hub's) keeps its signature.
const POSITIONAL: &[&str] = &[
    tk::SEQ,
    tk::SEGMENT_SEQ,
    tk::SEGMENT_BYTES,
    tk::SEGMENT_ID,
    tk::PREV_SEGMENT,
    SIGNATURE,
];

/// What a commit signature covers: the tree and every trailer but the positional ones.
fn signed_bytes(tree: gatos_types::Oid, trailers: &Trailers) -> Vec<u8> {
    let mut v = format!("gatos-commit-signature-v1\ntree {tree}\n").into_bytes();
    for (k, val) in trailers.iter() {
        if !POSITIONAL.contains(&k) {
            v.extend_from_slice(k.as_bytes());
            v.extend_from_slice(b": ");
            v.extend_from_slice(val.as_bytes());
            v.push(b'\n');
        }
    }
    v
}

/// The place of a commit on its settings or manifest chain: its `Version` trailer, signed
/// with the rest (0 for a settings commit written before they carried one). Each commit
/// of such a chain counts one up from its parent's, so a signed value copied onto a chain
/// of a hub's own keeps the place it was signed at (ADR 0018, 2026-12-07).
pub(crate) fn chain_place(trailers: &Trailers) -> u64 {
    trailers
        .get(gatos_types::trailers::keys::VERSION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Adds `Signed-By` and `Signature` to the trailers of a commit over `tree`.
pub fn sign_trailers(key: &SigningKey, tree: gatos_types::Oid, trailers: Trailers) -> Trailers {
    let t = trailers.with(SIGNED_BY, key_id(&key.verifying_key()));
    let sig = sign_b64(key, &signed_bytes(tree, &t));
    t.with(SIGNATURE, sig)
}

/// A commit's signer, when its `Signature` verifies: `Ok(None)` for an unsigned commit.
///
/// # Errors
/// `SignatureInvalid` when it carries a signature that does not verify.
pub fn commit_signer(tree: gatos_types::Oid, trailers: &Trailers) -> Result<Option<KeyId>> {
    let (Some(by), Some(sig)) = (trailers.get(SIGNED_BY), trailers.get(SIGNATURE)) else {
        return Ok(None);
    };
    let bad = || {
        Error::new(
            ErrorCode::SignatureInvalid,
            "the commit's signature does not verify",
        )
    };
    let key: KeyId = by.parse().map_err(|_| bad())?;
    if !verify_b64(&key, &signed_bytes(tree, trailers), sig) {
        return Err(bad());
    }
    Ok(Some(key))
}
