//! `checkpoints.get|set`.

use std::sync::Arc;

use gatos_rpc::RpcError;
use gatos_rpc::message::{Params, result};
use gatos_rpc::methods::{CheckpointGetParams, CheckpointSetParams};
use serde_json::value::RawValue;

use super::blocking;
use crate::connection::Conn;

/// `checkpoints.get {group, topic}`.
pub async fn get(conn: &Arc<Conn>, params: Params) -> Result<Box<RawValue>, RpcError> {
    let p: CheckpointGetParams = params.parse()?;
    let gatos = conn.shared.gatos.clone();
    let row = blocking(move || gatos.checkpoints().get(&p.group, &p.topic)).await?;
    result(&row)
}

/// `checkpoints.set {group, topic, ulid, force?}`.
pub async fn set(conn: &Arc<Conn>, params: Params) -> Result<Box<RawValue>, RpcError> {
    let p: CheckpointSetParams = params.parse()?;
    let gatos = conn.shared.gatos.clone();
    let row =
        blocking(move || gatos.checkpoints().set(&p.group, &p.topic, p.ulid, p.force)).await?;
    result(&row)
}
