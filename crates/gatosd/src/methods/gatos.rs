//! `gatos.health`, `gatos.version`, `gatos.auth`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use gatos_rpc::RpcError;
use gatos_rpc::message::{Params, result};
use gatos_rpc::methods::{AuthParams, HealthResult, NoParams, SyncParams, VersionResult};
use serde_json::value::RawValue;

use super::blocking;
use crate::connection::Conn;

/// `gatos.health {}`: the repository, uptime, connections; reads the store to prove it
/// answers.
pub async fn health(conn: &Arc<Conn>, params: Params) -> Result<Box<RawValue>, RpcError> {
    let _: NoParams = params.parse()?;
    let shared = conn.shared.clone();
    let gatos = shared.gatos.clone();
    let (node, last) = blocking(move || {
        let audit = gatos
            .store()
            .read_ref_str("refs/gatos/messages/gatos.audit/head")?;
        Ok((gatos.node_id().ok(), audit))
    })
    .await?;
    result(&HealthResult {
        status: "ok".into(),
        repository: shared.gatos.store().git_dir().display().to_string(),
        node,
        uptime_seconds: shared.started.elapsed().as_secs(),
        connections: shared.connections.load(Ordering::Relaxed),
        connections_total: shared.connections_total.load(Ordering::Relaxed),
        subscriptions: shared.subscriptions.load(Ordering::Relaxed),
        version: env!("CARGO_PKG_VERSION").into(),
        last_commit: last,
    })
}

/// `sync.run {remote?, strict?}`: one sync now (the same as `git gatos sync`); the
/// report as `git gatos sync --json` prints it.
pub async fn sync_run(conn: &Arc<Conn>, params: Params) -> Result<Box<RawValue>, RpcError> {
    let p: SyncParams = params.parse()?;
    let gatos = conn.shared.gatos.clone();
    let remote = p.remote.or_else(|| conn.shared.sync_remote.clone());
    let report = blocking(move || {
        gatos.sync(&::gatos::sync::SyncOptions {
            remote,
            strict: p.strict,
            progress: false,
            accept_unsigned: false,
        })
    })
    .await?;
    result(&report)
}

/// `gatos.version {}`.
pub fn version(params: Params) -> Result<Box<RawValue>, RpcError> {
    let _: NoParams = params.parse()?;
    result(&VersionResult {
        version: env!("CARGO_PKG_VERSION").into(),
        jsonrpc: "2.0".into(),
    })
}

/// `gatos.auth {token}` once authenticated (or on transports without a token): accepted
/// when the token is right (or none is required).
pub fn auth_again(conn: &Arc<Conn>, params: Params) -> Result<Box<RawValue>, RpcError> {
    let p: AuthParams = params.parse()?;
    match &conn.shared.token {
        Some(t)
            if conn.needs_auth && !crate::transport::tcp::token_matches(t, p.token.as_bytes()) =>
        {
            Err(RpcError::taxonomy(
                gatos_types::ErrorCode::Unauthorized,
                "wrong token",
                &serde_json::Map::new(),
            ))
        }
        _ => result(&serde_json::json!({"authenticated": true})),
    }
}
