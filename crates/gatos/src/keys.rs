//! Keys: the signing key, local trust, published key records and signed revocations
//! (DESIGN §4).
//!
//! Trust is local: `gatos.trust` in this repository's own config (never replicated). A key
//! record under `refs/gatos/trust/keys/<hex>` only publishes a self-signed public key so
//! others can find it. A key may have several revocation records, each under
//! `refs/gatos/trust/revocations/<hex>/<blake3 of the record>` (and one in the first layout,
//! `refs/gatos/trust/revoked/<hex>`, still read); a record counts only when signed by the key
//! itself or by a key this repository trusts, and the records that count merge:
//! `compromised` beats `superseded`, the earliest effective time wins (ADR 0018), so a junk
//! record cannot block a real one. `superseded` keeps proofs made before the revocation
//! valid; `compromised` invalidates those made from `compromised_since` on, or every proof
//! by the key when it names no time.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use gatos_store::refs::{Edit, Options, names};
use gatos_types::jobs::{KeyListRow, KeyRow};
use gatos_types::trailers::{Trailers, keys as tk};
use gatos_types::{ErrorCode, KeyId, Timestamp, Ulid, jcs};
use serde::{Deserialize, Serialize};

use crate::Gatos;
use crate::error::Result;

/// The local config key listing trusted key ids (never replicated).
pub const TRUST_KEY: &str = "gatos.trust";
/// The file name of the active signing key under `<git-dir>/gatos/keys/`.
pub const SIGNING_KEY_FILE: &str = "signing.pem";

/// A published key record (`key.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    /// The key.
    pub key: KeyId,
    /// The node that made it.
    pub node: Option<Ulid>,
    /// Its owner's name.
    pub name: String,
    /// When it was made.
    pub created_at: Timestamp,
}

/// Why a key was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// Replaced by a new key; proofs made before stay valid.
    Superseded,
    /// Leaked; proofs made from `compromised_since` on are invalid.
    Compromised,
}

/// A revocation (`revocation.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// The revoked key.
    pub key: KeyId,
    /// Why.
    pub reason: Reason,
    /// When it was revoked.
    pub revoked_at: Timestamp,
    /// Compromised: from when proofs are invalid (none: every proof by the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compromised_since: Option<Timestamp>,
    /// The key that signed this revocation.
    pub revoked_by: KeyId,
}

impl Reason {
    /// Returns the lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Superseded => "superseded",
            Reason::Compromised => "compromised",
        }
    }
}

impl Revocation {
    /// Tells whether a proof made at `at` by the revoked key is invalid.
    pub fn invalidates(&self, at: Timestamp) -> bool {
        match self.reason {
            Reason::Superseded => at > self.revoked_at,
            Reason::Compromised => self.compromised_since.is_none_or(|since| at >= since),
        }
    }

    /// Merges the records that count for one key: `compromised` beats `superseded`; among
    /// records of the winning reason the earliest effective time wins (a compromise with no
    /// time beats any time).
    pub fn merge(records: impl IntoIterator<Item = Revocation>) -> Option<Revocation> {
        let mut best: Option<Revocation> = None;
        for r in records {
            best =
                Some(match best {
                    None => r,
                    Some(b) => {
                        match (b.reason, r.reason) {
                            (Reason::Superseded, Reason::Compromised) => r,
                            (Reason::Compromised, Reason::Superseded) => b,
                            (Reason::Superseded, Reason::Superseded) => {
                                if r.revoked_at < b.revoked_at { r } else { b }
                            }
                            (Reason::Compromised, Reason::Compromised) => {
                                match (b.compromised_since, r.compromised_since) {
                                    (None, _) => b,
                                    (_, None) => r,
                                    (Some(x), Some(y)) => {
                                        if y < x {
                                            r
                                        } else {
                                            b
                                        }
                                    }
                                }
                            }
                        }
                    }
                });
        }
        best
    }
}

fn key_id(k: &VerifyingKey) -> KeyId {
    KeyId::from_bytes(k.to_bytes())
}

/// Why a keys operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// There is no signing key (the operation needs one).
    #[error("no signing key; run `git gatos keys init` (or `git gatos init`)")]
    NoSigningKey,
    /// There is no signing key to sign a revocation with.
    #[error("no signing key to sign the revocation; run `git gatos keys init`")]
    NoKeyToRevoke,
    /// The signing key's file is not a PKCS#8 ed25519 key.
    #[error("signing key {}: {reason}", path.display())]
    BadKeyFile {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        reason: String,
    },
    /// Text that is no key id, hex or PEM key.
    #[error("not an ed25519 key: give a key id (ed25519:<hex>), its hex, or a PEM key")]
    NotAKey,
    /// A published key record that does not parse.
    #[error("{reason}")]
    RecordMalformed {
        /// What the parser said.
        reason: String,
    },
    /// A published key record that its key did not sign.
    #[error("the published record of {key} is not signed by it")]
    RecordNotSelfSigned {
        /// The key.
        key: KeyId,
    },
    /// The key file to write exists already (another writer made it), or cannot be made.
    #[error("creating {}: {error}", path.display())]
    Create {
        /// The file.
        path: PathBuf,
        /// Why (its text is in the message, so it is kept here, not as the source).
        error: std::io::Error,
    },
    /// Reading or writing the key's files failed (`reading <path>`, `keeping the old key`,
    /// …), or the key could not be encoded.
    #[error("{what}: {reason}")]
    Internal {
        /// What was being done.
        what: String,
        /// Why.
        reason: String,
    },
}

impl gatos_types::Coded for Error {
    fn code(&self) -> ErrorCode {
        match self {
            Error::NoSigningKey | Error::NoKeyToRevoke => ErrorCode::NotFound,
            Error::BadKeyFile { .. } | Error::NotAKey => ErrorCode::InvalidInput,
            Error::RecordMalformed { .. } => ErrorCode::InvalidEnvelope,
            Error::RecordNotSelfSigned { .. } => ErrorCode::SignatureInvalid,
            Error::Create { .. } => ErrorCode::Conflict,
            Error::Internal { .. } => ErrorCode::Internal,
        }
    }
}

fn internal(what: impl std::fmt::Display, reason: impl std::fmt::Display) -> crate::Error {
    Error::Internal {
        what: what.to_string(),
        reason: reason.to_string(),
    }
    .into()
}

pub use crate::signing::{
    SIGNATURE, SIGNED_BY, SIGNED_KINDS, commit_signer, sign_b64, sign_trailers, verify_b64,
    verifying_key,
};

/// The keys plane.
#[derive(Debug, Clone, Copy)]
pub struct Keys<'g> {
    gatos: &'g Gatos,
}

impl Gatos {
    /// Returns the keys plane.
    pub fn keys(&self) -> Keys<'_> {
        Keys { gatos: self }
    }
}

impl Keys<'_> {
    /// Returns where the signing key is: `gatos.signingKey`, else
    /// `<git-dir>/gatos/keys/signing.pem`.
    pub fn signing_key_path(&self) -> PathBuf {
        match self.gatos.store().config_string("gatos.signingKey") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => self
                .gatos
                .store()
                .gatos_dir()
                .join("keys")
                .join(SIGNING_KEY_FILE),
        }
    }

    /// Loads the signing key, if there is one.
    ///
    /// # Errors
    /// `InvalidInput` when the file exists but is not a PKCS#8 ed25519 key.
    pub fn signing_key(&self) -> Result<Option<SigningKey>> {
        // Enqueues, events and control commits all sign: keep the parsed key while the file
        // is the same one (path, inode, size, mtime), so a rotation is seen at once.
        type Cached = Option<(PathBuf, (u64, u64, std::time::SystemTime), SigningKey)>;
        static CACHE: std::sync::Mutex<Cached> = std::sync::Mutex::new(None);
        let path = self.signing_key_path();
        let stamp = match std::fs::metadata(&path) {
            Ok(m) => {
                use std::os::unix::fs::MetadataExt as _;
                (
                    m.ino(),
                    m.len(),
                    m.modified().unwrap_or(std::time::UNIX_EPOCH),
                )
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(internal(format_args!("reading {}", path.display()), e)),
        };
        if let Ok(c) = CACHE.lock()
            && let Some((p, s, k)) = c.as_ref()
            && *p == path
            && *s == stamp
        {
            return Ok(Some(k.clone()));
        }
        match std::fs::read_to_string(&path) {
            Ok(pem) => {
                let key = SigningKey::from_pkcs8_pem(&pem).map_err(|e| Error::BadKeyFile {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                if let Ok(mut c) = CACHE.lock() {
                    *c = Some((path, stamp, key.clone()));
                }
                Ok(Some(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(internal(format_args!("reading {}", path.display()), e)),
        }
    }

    /// Returns the signing key's id, if there is a key.
    pub fn current(&self) -> Option<KeyId> {
        self.signing_key()
            .ok()
            .flatten()
            .map(|k| key_id(&k.verifying_key()))
    }

    /// `keys show`: the signing key and where it is.
    ///
    /// # Errors
    /// `NotFound` when there is none (run `git gatos keys init`).
    pub fn show(&self) -> Result<KeyRow> {
        let key = self.current().ok_or(Error::NoSigningKey)?;
        Ok(KeyRow {
            key,
            path: self.signing_key_path().display().to_string(),
        })
    }

    /// `keys init`: creates the signing key if there is none, trusts it, publishes its
    /// record. With `rotate`, replaces an existing key: the old one is revoked as
    /// superseded (signed by itself), the new one trusted and published.
    ///
    /// # Errors
    /// When the key file or the refs cannot be written.
    pub fn init(&self, rotate: bool) -> Result<(KeyRow, bool)> {
        let old = self.signing_key()?;
        if let (Some(k), false) = (&old, rotate) {
            let row = KeyRow {
                key: key_id(&k.verifying_key()),
                path: self.signing_key_path().display().to_string(),
            };
            self.publish(k)?;
            return Ok((row, false));
        }
        let path = self.signing_key_path();
        let mut seed = [0u8; 32];
        self.gatos.entropy().fill(&mut seed);
        let key = SigningKey::from_bytes(&seed);
        let pem = key
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map_err(|e| internal("encoding the key", e))?;
        if let Some(old) = &old {
            let archived = path.with_file_name(format!(
                "ed25519-{}.pem",
                key_id(&old.verifying_key()).to_hex()
            ));
            std::fs::rename(&path, &archived).map_err(|e| internal("keeping the old key", e))?;
        }
        write_private(&path, &pem)?;
        let id = key_id(&key.verifying_key());
        self.trust_locally(&id)?;
        self.publish(&key)?;
        if let Some(old) = old {
            let old_id = key_id(&old.verifying_key());
            // Already revoked (say, as compromised): that revocation stands.
            if self.revocation(&old_id)?.is_none() {
                match self.revoke_with(&old, &old_id, Reason::Superseded, None) {
                    Ok(rev) => crate::audit::record(
                        self.gatos,
                        "keys.rotate",
                        &format!("key:{old_id}"),
                        serde_json::json!({"revoked": null}),
                        serde_json::to_value(&rev.0).unwrap_or_default(),
                        Some(rev.1),
                    ),
                    Err(e) if e.code() == ErrorCode::Conflict => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok((
            KeyRow {
                key: id,
                path: path.display().to_string(),
            },
            true,
        ))
    }

    /// Publishes the self-signed record of a key (idempotent).
    fn publish(&self, key: &SigningKey) -> Result<()> {
        let id = key_id(&key.verifying_key());
        let name = names::trust_key(&id);
        if self.gatos.store().read_ref(&name)?.is_some() {
            return Ok(());
        }
        let record = KeyRecord {
            key: id,
            node: self.gatos.node_id().ok(),
            name: self.gatos.store().identity().name.clone(),
            created_at: self.gatos.now(),
        };
        let doc = jcs::to_vec_of(&record)?;
        let sig = sign_b64(key, &doc);
        let trailers = Trailers::new().with(tk::KIND, "key").with(tk::KEY, id);
        let commit = self.gatos.write_job_commit(
            &[("key.json", &doc), ("key.sig", sig.as_bytes())],
            &[],
            &trailers,
            &format!("key {id}"),
            self.gatos.now(),
        )?;
        // Create-only: a record already there (same or another writer's) stays.
        match self
            .gatos
            .store()
            .update_refs(&[Edit::create(name, commit)], &Options::default())
        {
            Ok(_) | Err(gatos_store::Error::CasMismatch { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads a published key record and checks its self-signature.
    pub fn record(&self, key: &KeyId) -> Result<Option<KeyRecord>> {
        let Some(commit) = self.gatos.store().read_ref(&names::trust_key(key))? else {
            return Ok(None);
        };
        let mut r = self.gatos.store().reader();
        let c = r.commit(commit)?;
        let (Some(doc), Some(sig)) = (r.file(c.tree, "key.json")?, r.file(c.tree, "key.sig")?)
        else {
            return Ok(None);
        };
        let rec: KeyRecord = serde_json::from_slice(&doc).map_err(|e| Error::RecordMalformed {
            reason: e.to_string(),
        })?;
        if rec.key != *key || !verify_b64(key, &doc, &String::from_utf8_lossy(&sig)) {
            return Err(Error::RecordNotSelfSigned { key: *key }.into());
        }
        Ok(Some(rec))
    }

    /// Returns the keys this repository trusts.
    pub fn trusted(&self) -> Vec<KeyId> {
        self.gatos
            .store()
            .local_config_strings(TRUST_KEY)
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect()
    }

    /// Tells whether a key is trusted here.
    pub fn is_trusted(&self, key: &KeyId) -> bool {
        self.trusted().contains(key)
    }

    /// `keys trust`: trusts a key, named by its id (reading a key from a file is a face's
    /// job: see [`key_id_from_text`]). Idempotent; returns whether it was new. Audited.
    ///
    /// # Errors
    /// A store failure.
    pub fn trust(&self, key: &KeyId) -> Result<bool> {
        let added = self.trust_locally(key)?;
        if added {
            crate::audit::record(
                self.gatos,
                "keys.trust",
                &format!("key:{key}"),
                serde_json::json!({"trusted": false}),
                serde_json::json!({"trusted": true}),
                None,
            );
        }
        Ok(added)
    }

    fn trust_locally(&self, key: &KeyId) -> Result<bool> {
        // Read-modify-write of the local config: under the `config` family.
        let _guard = self
            .gatos
            .store()
            .locks()
            .acquire(
                &["config".to_owned()],
                gatos_store::locks::DEFAULT_LOCK_TIMEOUT,
            )
            .map_err(gatos_store::Error::from)?;
        let mut trusted = self.gatos.store().local_config_strings(TRUST_KEY);
        let id = key.to_string();
        if trusted.contains(&id) {
            return Ok(false);
        }
        trusted.push(id);
        self.gatos
            .store()
            .set_local_config(&[(TRUST_KEY, trusted)])?;
        Ok(true)
    }

    /// `keys revoke`: revokes a key, signed by this repository's signing key (or by the key
    /// itself when it is the signing key). Audited.
    ///
    /// # Errors
    /// `NotFound` without a signing key. Revoking again adds a record; the records merge.
    pub fn revoke(
        &self,
        key: &KeyId,
        reason: Reason,
        compromised_since: Option<Timestamp>,
    ) -> Result<Revocation> {
        let key = *key;
        let signer = self.signing_key()?.ok_or(Error::NoKeyToRevoke)?;
        let before = self.revocation(&key)?;
        let (rev, commit) = self.revoke_with(&signer, &key, reason, compromised_since)?;
        crate::audit::record(
            self.gatos,
            "keys.revoke",
            &format!("key:{key}"),
            serde_json::json!({"revoked": before}),
            serde_json::to_value(&rev).unwrap_or_default(),
            Some(commit),
        );
        Ok(rev)
    }

    fn revoke_with(
        &self,
        signer: &SigningKey,
        key: &KeyId,
        reason: Reason,
        since: Option<Timestamp>,
    ) -> Result<(Revocation, gatos_types::Oid)> {
        let rev = Revocation {
            key: *key,
            reason,
            revoked_at: self.gatos.now(),
            compromised_since: if reason == Reason::Compromised {
                since
            } else {
                None
            },
            revoked_by: key_id(&signer.verifying_key()),
        };
        let doc = jcs::to_vec_of(&rev)?;
        let sig = sign_b64(signer, &doc);
        let trailers = Trailers::new()
            .with(tk::KIND, "revocation")
            .with(tk::KEY, key)
            .with(tk::ACTOR, self.gatos.actor())
            .with(tk::ACTOR_KEY, rev.revoked_by);
        let commit = self.gatos.write_job_commit(
            &[
                ("revocation.json", &doc),
                ("revocation.sig", sig.as_bytes()),
            ],
            &[],
            &trailers,
            &format!("revoke {key}"),
            rev.revoked_at,
        )?;
        let digest = gatos_types::Digest::of(&doc).to_string();
        let hex = digest.strip_prefix("blake3:").unwrap_or(&digest).to_owned();
        match self.gatos.store().update_refs(
            &[Edit::create(names::trust_revocation(key, &hex), commit)],
            &Options::default(),
        ) {
            // The same record already there is the same revocation.
            Ok(_) | Err(gatos_store::Error::CasMismatch { .. }) => Ok((rev, commit)),
            Err(e) => Err(e.into()),
        }
    }

    /// Returns the revocation of a key, when one is published and signed by the key itself
    /// or by a trusted key (others are ignored).
    ///
    /// # Errors
    /// When the revocation commit cannot be read.
    pub fn revocation(&self, key: &KeyId) -> Result<Option<Revocation>> {
        self.revocation_in(&crate::refs::Live(self.gatos), key)
    }

    /// [`Keys::revocation`] from the refs of `src` (trust, as always, from this node).
    ///
    /// # Errors
    /// As [`Keys::revocation`].
    pub fn revocation_in(
        &self,
        src: &dyn crate::refs::RefSource,
        key: &KeyId,
    ) -> Result<Option<Revocation>> {
        let mut commits: Vec<gatos_types::Oid> = src
            .list_after(&names::trust_revocations_prefix(key), None, usize::MAX)?
            .into_iter()
            .map(|(_, o)| o)
            .collect();
        commits.extend(src.read(names::trust_revoked(key).as_str())?);
        let mut records = Vec::new();
        for commit in commits {
            match self.revocation_record(key, commit) {
                Ok(Some(rev)) => records.push(rev),
                Ok(None) => {
                    tracing::debug!(%key, %commit, "ignoring a revocation that is not signed by the key or a trusted key");
                }
                Err(e) => {
                    tracing::debug!(%key, %commit, error = %e, "ignoring an unreadable revocation")
                }
            }
        }
        Ok(Revocation::merge(records))
    }

    /// One revocation record, when it counts: it revokes `key` and is signed by the key
    /// itself or by a key this repository trusts.
    fn revocation_record(
        &self,
        key: &KeyId,
        commit: gatos_types::Oid,
    ) -> Result<Option<Revocation>> {
        let mut r = self.gatos.store().reader();
        let c = r.commit(commit)?;
        let (Some(doc), Some(sig)) = (
            r.file(c.tree, "revocation.json")?,
            r.file(c.tree, "revocation.sig")?,
        ) else {
            return Ok(None);
        };
        let Ok(rev) = serde_json::from_slice::<Revocation>(&doc) else {
            return Ok(None);
        };
        let authorised =
            rev.key == *key && (rev.revoked_by == *key || self.is_trusted(&rev.revoked_by));
        if !authorised || !verify_b64(&rev.revoked_by, &doc, &String::from_utf8_lossy(&sig)) {
            return Ok(None);
        }
        Ok(Some(rev))
    }

    /// `keys ls`: every key trusted, published or current, with its status.
    ///
    /// # Errors
    /// When refs cannot be read.
    pub fn list(&self) -> Result<Vec<KeyListRow>> {
        self.list_in(&crate::refs::Live(self.gatos))
    }

    /// [`Keys::list`] from the refs of `src`: published keys and revocations there; which
    /// keys this node trusts and its own key from its configuration.
    ///
    /// # Errors
    /// As [`Keys::list`].
    pub fn list_in(&self, src: &dyn crate::refs::RefSource) -> Result<Vec<KeyListRow>> {
        let mut all: Vec<KeyId> = self.trusted();
        for (name, _) in src.list_after(&names::trust_prefix(), None, usize::MAX)? {
            if let Some(
                names::RefKind::TrustKey(k)
                | names::RefKind::TrustRevoked(k)
                | names::RefKind::TrustRevocation(k, _),
            ) = names::RefKind::parse(&name)
            {
                all.push(k);
            }
        }
        let current = self.current();
        all.extend(current);
        all.sort();
        all.dedup();
        let mut rows = Vec::new();
        for k in all {
            rows.push(KeyListRow {
                key: k,
                current: current == Some(k),
                trusted: self.is_trusted(&k),
                published: src.read(names::trust_key(&k).as_str())?.is_some(),
                revoked: self.revocation_in(src, &k)?.map(|r| match r.reason {
                    Reason::Superseded => "superseded".to_owned(),
                    Reason::Compromised => "compromised".to_owned(),
                }),
            });
        }
        Ok(rows)
    }
}

/// Parses a key from text: `ed25519:<hex>`, bare hex, or a PEM key (public, or a PKCS#8
/// private key, of which only the public half is used). Never reads a file: a face that
/// takes a path reads it itself.
///
/// # Errors
/// `InvalidInput` when none of these fits.
pub fn key_id_from_text(text: &str) -> Result<KeyId> {
    let t = text.trim();
    if let Ok(k) = t.parse::<KeyId>().or_else(|_| KeyId::from_hex(t)) {
        return Ok(k);
    }
    if let Ok(vk) = VerifyingKey::from_public_key_pem(t) {
        return Ok(key_id(&vk));
    }
    if let Ok(sk) = SigningKey::from_pkcs8_pem(t) {
        return Ok(key_id(&sk.verifying_key()));
    }
    Err(Error::NotAKey.into())
}

fn write_private(path: &Path, pem: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| internal(format_args!("creating {}", dir.display()), e))?;
        if let Ok(meta) = std::fs::metadata(dir) {
            let mut perms = meta.permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o700);
            let _ = std::fs::set_permissions(dir, perms);
        }
    }
    // Created with mode 0600 from the start: the key is never readable by others.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|error| Error::Create {
            path: path.to_owned(),
            error,
        })?;
    f.write_all(pem.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| internal(format_args!("writing {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(reason: Reason, at: i64, since: Option<i64>) -> Revocation {
        let key = KeyId::from_bytes([7; 32]);
        Revocation {
            key,
            reason,
            revoked_at: Timestamp::from_millis(at),
            compromised_since: since.map(Timestamp::from_millis),
            revoked_by: key,
        }
    }

    #[test]
    fn refusals_are_typed_with_their_codes() {
        let e = key_id_from_text("not a key").expect_err("no key");
        assert_eq!(e.code(), ErrorCode::InvalidInput);
        assert!(matches!(
            e.inner().downcast_ref::<Error>(),
            Some(Error::NotAKey)
        ));
        let e = crate::Error::from(Error::NoSigningKey);
        assert_eq!(e.code(), ErrorCode::NotFound);
        assert_eq!(
            e.to_string(),
            "no signing key; run `git gatos keys init` (or `git gatos init`)"
        );
        let e = internal("reading x", "denied");
        assert_eq!(
            (e.code(), e.to_string()),
            (ErrorCode::Internal, "reading x: denied".into())
        );
    }

    #[test]
    fn revocations_merge_compromised_first_then_earliest() {
        use Reason::{Compromised, Superseded};
        let m = |v: Vec<Revocation>| {
            Revocation::merge(v).map(|r| {
                (
                    r.reason,
                    r.revoked_at.as_millis(),
                    r.compromised_since.map(|t| t.as_millis()),
                )
            })
        };
        assert_eq!(m(vec![]), None);
        assert_eq!(
            m(vec![rev(Superseded, 5, None), rev(Superseded, 3, None)]),
            Some((Superseded, 3, None))
        );
        assert_eq!(
            m(vec![rev(Superseded, 1, None), rev(Compromised, 9, Some(8))]),
            Some((Compromised, 9, Some(8)))
        );
        assert_eq!(
            m(vec![
                rev(Compromised, 9, Some(8)),
                rev(Compromised, 10, Some(2))
            ]),
            Some((Compromised, 10, Some(2)))
        );
        assert_eq!(
            m(vec![
                rev(Compromised, 9, Some(8)),
                rev(Compromised, 10, None)
            ]),
            Some((Compromised, 10, None))
        );
        assert_eq!(
            m(vec![rev(Compromised, 10, None), rev(Superseded, 1, None)]),
            Some((Compromised, 10, None))
        );
    }

    #[test]
    fn a_compromise_without_a_time_invalidates_every_proof() {
        let r = rev(Reason::Compromised, 1_000, None);
        assert!(r.invalidates(Timestamp::from_millis(0)));
        assert!(r.invalidates(Timestamp::from_millis(5_000)));
        let r = rev(Reason::Compromised, 1_000, Some(500));
        assert!(!r.invalidates(Timestamp::from_millis(499)));
        assert!(r.invalidates(Timestamp::from_millis(500)));
        let r = rev(Reason::Superseded, 1_000, None);
        assert!(!r.invalidates(Timestamp::from_millis(1_000)));
        assert!(r.invalidates(Timestamp::from_millis(1_001)));
    }
}
