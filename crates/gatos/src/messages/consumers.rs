//! Consumer groups' positions as the message plane reads them: a checkpoint commit's
//! document. Here, below [`crate::checkpoints`] (which moves checkpoints and re-exports
//! these), because the plane's own prune must know where each group stands.

use gatos_store::objects::Reader;
use gatos_types::wire::CheckpointDoc;
use gatos_types::{ErrorCode, Oid};

use crate::error::{Error, Result};

/// The file of a checkpoint commit.
pub const CHECKPOINT_PATH: &str = "checkpoint.json";

/// Reads a checkpoint commit's document.
///
/// # Errors
/// `InvalidEnvelope` when it does not parse.
pub(crate) fn read_doc(reader: &mut Reader<'_>, commit: Oid) -> Result<CheckpointDoc> {
    let c = reader.commit(commit)?;
    let bytes = reader.file(c.tree, CHECKPOINT_PATH)?.ok_or_else(|| {
        Error::new(
            ErrorCode::InvalidEnvelope,
            format!("checkpoint commit {commit} has no {CHECKPOINT_PATH}"),
        )
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::new(
            ErrorCode::InvalidEnvelope,
            format!("checkpoint commit {commit}: {e}"),
        )
    })
}
