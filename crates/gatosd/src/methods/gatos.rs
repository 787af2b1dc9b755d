//! `gatos.health` and `gatos.auth`: what the face answers itself (its counters, its
//! connection's authentication).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use gatos_api::types::{AuthParams, HealthResult, NoParams};
use gatos_rpc::RpcError;
use gatos_rpc::message::{Params, result};
use serde_json::value::RawValue;

use super::blocking;
use crate::connection::{Auth, Conn};

/// `gatos.health {}`: the repository, uptime, connections, each queue's depth against its
/// limit; reads the store to prove it answers.
pub async fn health(conn: &Arc<Conn>, params: Params) -> Result<Box<RawValue>, RpcError> {
    let _: NoParams = params.parse()?;
    let shared = conn.shared.clone();
    let service = shared.service.clone();
    let (node, last, queues) = blocking(move || {
        let (node, last) = service.health_store().map_err(gatos::Error::from)?;
        let queues = service.health_queues().map_err(gatos::Error::from)?;
        Ok::<_, gatos::Error>((node, last, queues))
    })
    .await?;
    result(&HealthResult {
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

/// `gatos.auth {token}` after the first call of a TCP connection, or on the Unix socket
/// (where it opens the calls that write) or stdio (trusted: always accepted). A wrong
/// token is `Unauthorized` and changes nothing; the connection stays open.
pub fn auth_again(conn: &Arc<Conn>, params: Params) -> Result<Box<RawValue>, RpcError> {
    let p: AuthParams = params.parse()?;
    if conn.auth == Auth::Trusted {
        return result(&serde_json::json!({"authenticated": true}));
    }
    let ok = conn
        .shared
        .token
        .as_ref()
        .is_some_and(|t| crate::transport::tcp::token_matches(&t.bytes, p.token.as_bytes()));
    if !ok {
        tracing::info!(code = "Unauthorized", "gatos.auth with a wrong token");
        return Err(RpcError::taxonomy(
            gatos_types::ErrorCode::Unauthorized,
            "wrong token",
            &serde_json::Map::new(),
        ));
    }
    conn.authenticated.store(true, Ordering::Release);
    result(&serde_json::json!({"authenticated": true}))
}
