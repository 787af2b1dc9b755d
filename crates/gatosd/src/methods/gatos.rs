//! `gatos.health`, `gatos.ready` and `gatos.auth`: what the face answers itself (its
//! counters, its connection's authentication).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use gatos_api::types::{AuthParams, HealthResult, NoParams, ReadyResult};
use gatos_rpc::RpcError;
use gatos_rpc::message::{Params, result};
use serde_json::value::RawValue;

use crate::connection::{Auth, Conn};
use crate::shared::Shared;

/// `gatos.health {}`: the repository, uptime, connections, each queue's depth against its
/// limit; reads the store to prove it answers.
pub async fn health(conn: &Arc<Conn>, params: Params) -> Result<Box<RawValue>, RpcError> {
    let _: NoParams = params.parse()?;
    let h = health_of(&conn.shared)
        .await
        .map_err(|e| super::to_rpc(&e))?;
    result(&h)
}

/// The daemon's health, as `gatos.health` answers it on every face.
///
/// # Errors
/// What reading the store failed with.
pub async fn health_of(shared: &Arc<Shared>) -> Result<HealthResult, gatos::Error> {
    let service = shared.service.clone();
    let (node, last, queues) = match tokio::task::spawn_blocking(move || {
        let (node, last) = service.health_store().map_err(gatos::Error::from)?;
        let queues = service.health_queues().map_err(gatos::Error::from)?;
        Ok::<_, gatos::Error>((node, last, queues))
    })
    .await
    {
        Ok(r) => r?,
        Err(e) => {
            tracing::error!(error = %e, "a request task failed");
            return Err(gatos::Error::new(
                gatos_types::ErrorCode::Internal,
                "the request failed inside the daemon",
            ));
        }
    };
    Ok(HealthResult {
        status: "ok".into(),
        repository: shared.gatos.git_dir().display().to_string(),
        node,
        uptime_seconds: shared.started.elapsed().as_secs(),
        connections: shared.connections.load(Ordering::Relaxed),
        connections_total: shared.connections_total.load(Ordering::Relaxed),
        subscriptions: shared.subscriptions.load(Ordering::Relaxed),
        version: env!("CARGO_PKG_VERSION").into(),
        last_commit: last,
        queues,
    })
}

/// `gatos.ready {}`: whether the node should be sent requests, with its background sync
/// and maintenance. A draining daemon reads no new request on JSON-RPC, so this face never
/// answers `shutting_down`.
pub async fn ready(conn: &Arc<Conn>, params: Params) -> Result<Box<RawValue>, RpcError> {
    let _: NoParams = params.parse()?;
    let r = ready_of(&conn.shared, false)
        .await
        .map_err(|e| super::to_rpc(&e))?;
    result(&r)
}

/// The node's readiness, as `gatos.ready` answers it on every face
/// ([`gatos_api::Service::ready`]); `shutting_down` is the face's own fact.
///
/// # Errors
/// `Internal` when the blocking task failed (an unreadable repository is an answer).
pub async fn ready_of(
    shared: &Arc<Shared>,
    shutting_down: bool,
) -> Result<ReadyResult, gatos::Error> {
    let service = shared.service.clone();
    tokio::task::spawn_blocking(move || service.ready(shutting_down))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "a request task failed");
            gatos::Error::new(
                gatos_types::ErrorCode::Internal,
                "the request failed inside the daemon",
            )
        })
}

/// `gatos.auth {token}` after the first call of a TCP connection, or on the Unix socket
/// (where it opens the calls that write) or stdio (trusted: always accepted). Any token
/// of the set opens the connection (RPC actors stay `rpc:…`); one marked `ro` opens it for
/// reads only. A wrong
/// token is `Unauthorized` and changes nothing; the connection stays open.
pub fn auth_again(conn: &Arc<Conn>, params: Params) -> Result<Box<RawValue>, RpcError> {
    let p: AuthParams = params.parse()?;
    if conn.auth == Auth::Trusted {
        return result(&serde_json::json!({"authenticated": true}));
    }
    let Some(entry) = conn.shared.token_entry(p.token.as_bytes()) else {
        tracing::info!(code = "Unauthorized", "gatos.auth with a wrong token");
        return Err(RpcError::taxonomy(
            gatos_types::ErrorCode::Unauthorized,
            "wrong token",
            &serde_json::Map::new(),
        ));
    };
    conn.token_read_only
        .store(entry.read_only, Ordering::Release);
    conn.presented(&entry);
    conn.authenticated.store(true, Ordering::Release);
    result(&serde_json::json!({"authenticated": true}))
}
