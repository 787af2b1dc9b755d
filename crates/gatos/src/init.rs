//! Preparing a repository: node id, identity and the signing key (DESIGN §8 `init`).

use std::path::{Path, PathBuf};

use gatos_types::{ErrorCode, KeyId, Ulid};

use crate::error::{Error, Result};
use crate::{Gatos, OpenOptions};

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

/// Returns the key id of the signing key, if there is one.
pub fn current_key_id(gatos: &Gatos) -> Option<KeyId> {
    gatos.keys().current()
}

/// Prepares the repository containing `dir`: node id, signing key (created, trusted and
/// published if missing), the gatos directory. Idempotent.
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
    let (row, created_key) = gatos.keys().init(false)?;
    // Record the unsigned jobs held now (none, in a new repository): only those may ever
    // run without an enqueuer signature (ADR 0019).
    crate::jobs::enqueuer::legacy_unsigned(&gatos)?;
    // Reopen so the handle sees the configuration just written.
    let gatos = Gatos::open(gatos.store().git_dir(), opts)?;
    let id = gatos.store().identity().clone();
    let out = Initialized {
        git_dir: gatos.store().git_dir().to_owned(),
        node,
        name: id.name,
        email: id.email,
        key: row.key,
        key_path: PathBuf::from(row.path),
        created_key,
    };
    Ok((gatos, out))
}
