//! Preparing a repository: node id, identity and the signing key (DESIGN §8 `init`).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use gatos_types::{ErrorCode, KeyId, Ulid};

use crate::error::{Error, Result};
use crate::{Gatos, OpenOptions};

/// The local config key listing trusted key ids (never replicated).
pub const TRUST_KEY: &str = "gatos.trust";
/// The file name of the active signing key under `<git-dir>/gatos/keys/`.
pub const SIGNING_KEY_FILE: &str = "signing.pem";

/// What `init` found or created.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Initialized {
    /// The git dir.
    pub git_dir: PathBuf,
    /// The node id.
    pub node: Ulid,
    /// The commit author and committer name.
    pub name: String,
    /// The commit author and committer e-mail.
    pub email: String,
    /// The signing key id.
    pub key: KeyId,
    /// Where the private key is.
    pub key_path: PathBuf,
    /// True when this run created the key (false: it existed).
    pub created_key: bool,
}

/// Returns where the signing key is: `gatos.signingKey`, else `<git-dir>/gatos/keys/signing.pem`.
pub fn signing_key_path(gatos: &Gatos) -> PathBuf {
    match gatos.store().config_string("gatos.signingKey") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => gatos
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
pub fn load_signing_key(gatos: &Gatos) -> Result<Option<SigningKey>> {
    let path = signing_key_path(gatos);
    match std::fs::read_to_string(&path) {
        Ok(pem) => SigningKey::from_pkcs8_pem(&pem).map(Some).map_err(|e| {
            Error::new(
                ErrorCode::InvalidInput,
                format!("signing key {}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::new(
            ErrorCode::Internal,
            format!("reading {}: {e}", path.display()),
        )),
    }
}

/// Returns the key id of the signing key, if there is one.
pub fn current_key_id(gatos: &Gatos) -> Option<KeyId> {
    load_signing_key(gatos)
        .ok()
        .flatten()
        .map(|k| KeyId::from_bytes(k.verifying_key().to_bytes()))
}

fn write_private(path: &Path, pem: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::new(
                ErrorCode::Internal,
                format!("creating {}: {e}", dir.display()),
            )
        })?;
        let mut perms = std::fs::metadata(dir)
            .map_err(|e| Error::new(ErrorCode::Internal, format!("{}: {e}", dir.display())))?
            .permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o700);
        let _ = std::fs::set_permissions(dir, perms);
    }
    // Created with mode 0600 from the start: the key is never readable by others.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            Error::new(
                ErrorCode::Conflict,
                format!("creating {}: {e}", path.display()),
            )
        })?;
    f.write_all(pem.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| {
            Error::new(
                ErrorCode::Internal,
                format!("writing {}: {e}", path.display()),
            )
        })
}

/// Creates a signing key at the configured path, trusts it locally, and returns it.
///
/// # Errors
/// `Conflict` when a key file is already there.
pub fn create_signing_key(gatos: &Gatos) -> Result<SigningKey> {
    let mut seed = [0u8; 32];
    gatos.entropy().fill(&mut seed);
    let key = SigningKey::from_bytes(&seed);
    let pem = key
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| Error::new(ErrorCode::Internal, format!("encoding the key: {e}")))?;
    write_private(&signing_key_path(gatos), &pem)?;
    trust(gatos, KeyId::from_bytes(key.verifying_key().to_bytes()))?;
    Ok(key)
}

/// Adds a key id to this repository's trusted keys (local config; idempotent).
///
/// # Errors
/// When the local configuration cannot be written.
pub fn trust(gatos: &Gatos, key: KeyId) -> Result<bool> {
    let mut trusted = gatos.store().config_strings(TRUST_KEY);
    let id = key.to_string();
    if trusted.contains(&id) {
        return Ok(false);
    }
    trusted.push(id);
    gatos.store().set_local_config(&[(TRUST_KEY, trusted)])?;
    Ok(true)
}

/// Prepares the repository containing `dir`: node id, signing key (created and trusted if
/// missing), the gatos directory. Idempotent.
///
/// # Errors
/// `NotFound` outside a repository.
pub fn init(dir: &Path, opts: OpenOptions) -> Result<(Gatos, Initialized)> {
    let gatos = Gatos::discover(dir, opts.clone())?;
    std::fs::create_dir_all(gatos.store().gatos_dir()).map_err(|e| {
        Error::new(
            ErrorCode::Internal,
            format!("creating the gatos directory: {e}"),
        )
    })?;
    let node = gatos.node_id()?;
    let (key, created_key) = match load_signing_key(&gatos)? {
        Some(k) => (k, false),
        None => (create_signing_key(&gatos)?, true),
    };
    // Reopen so the handle sees the configuration just written.
    let gatos = Gatos::open(gatos.store().git_dir(), opts)?;
    let id = gatos.store().identity().clone();
    let out = Initialized {
        git_dir: gatos.store().git_dir().to_owned(),
        node,
        name: id.name,
        email: id.email,
        key: KeyId::from_bytes(key.verifying_key().to_bytes()),
        key_path: signing_key_path(&gatos),
        created_key,
    };
    Ok((gatos, out))
}
