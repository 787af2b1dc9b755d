//! `dashboard.signin_code`, `dashboard.sessions` and `dashboard.revoke` (ADR 0045): the
//! HTTP face's sessions, handed out and ended over the Unix socket with the node token.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use gatos_api::types::{
    NoParams, RevokeParams, RevokeResult, SessionRow, SessionsResult, SigninCode, SigninCodeParams,
};
use gatos_rpc::RpcError;
use gatos_rpc::message::{Params, result};
use gatos_types::ErrorCode;
use serde_json::value::RawValue;

use crate::connection::{Auth, Conn};
use crate::http::session::{CODE_TTL, rfc3339};

/// Refuses every transport but the Unix socket (the dispatch already asked for the token).
fn unix_only(conn: &Conn, what: &str) -> Result<(), RpcError> {
    if conn.auth == Auth::Writes {
        return Ok(());
    }
    Err(RpcError::taxonomy(
        ErrorCode::Forbidden,
        format!("{what} is served on gatosd's Unix socket only (git gatos dashboard)"),
        &serde_json::Map::new(),
    ))
}

/// `dashboard.signin_code {read_only?}`: a single-use code valid 60 s, and the URL that
/// carries it in its fragment.
pub fn signin_code(conn: &Arc<Conn>, params: Params) -> Result<Box<RawValue>, RpcError> {
    unix_only(conn, "dashboard.signin_code")?;
    let p: SigninCodeParams = params.parse()?;
    let shared = &conn.shared;
    let Some(origin) = shared.dashboard.origin().map(str::to_owned) else {
        return Err(RpcError::taxonomy(
            ErrorCode::Unavailable,
            "this daemon does not serve HTTP: start gatosd with --http to use the dashboard",
            &serde_json::Map::new(),
        ));
    };
    // The token as the file says now (the connection may have authenticated before a
    // re-read took it out, or marked it `ro`).
    let token = conn.token();
    let now_ro = match &token {
        Some((h, _)) => match shared
            .tokens()
            .and_then(|t| t.by_hash(h).map(|e| e.read_only))
        {
            Some(ro) => ro,
            None => {
                return Err(RpcError::taxonomy(
                    ErrorCode::Unauthorized,
                    "the token this connection presented is no longer in the token file",
                    &serde_json::Map::new(),
                ));
            }
        },
        None => conn.token_read_only.load(Ordering::Acquire),
    };
    let read_only = p.read_only.unwrap_or(false) || now_ro || shared.service.config().read_only;
    // The session lives as long as the token that asked for it stays in the file, and
    // becomes read-only when that token does (`Shared::reload_tokens`).
    let minted_by = token
        .as_ref()
        .map_or_else(|| conn.actor.to_string(), |(_, name)| name.clone());
    let m = shared
        .dashboard
        .mint(read_only, &minted_by, token.map(|(h, _)| h), Instant::now());
    tracing::info!(read_only, "dashboard sign-in code minted");
    result(&SigninCode {
        url: format!("{origin}/#code={}", m.code),
        code: m.code,
        expires_at: rfc3339(m.expires_at),
        expires_in_seconds: CODE_TTL.as_secs(),
        read_only: m.read_only,
    })
}

/// `dashboard.sessions {}`: the live sessions, oldest first.
pub fn sessions(conn: &Arc<Conn>, params: Params) -> Result<Box<RawValue>, RpcError> {
    unix_only(conn, "dashboard.sessions")?;
    let _: NoParams = params.parse()?;
    let daemon_ro = conn.shared.service.config().read_only;
    let sessions = conn
        .shared
        .dashboard
        .list(Instant::now())
        .into_iter()
        .map(|s| SessionRow {
            created_at: rfc3339(s.created_at),
            expires_at: rfc3339(s.expires_at),
            last_used_at: rfc3339(s.last_used_at),
            read_only: s.read_only || daemon_ro,
            minted_by: s.minted_by,
            id: s.id,
        })
        .collect();
    result(&SessionsResult { sessions })
}

/// `dashboard.revoke {id} | {all: true}`: ends sessions at once; recorded on the audit
/// trail (but on a read-only daemon, which writes nothing).
pub async fn revoke(conn: &Arc<Conn>, params: Params) -> Result<Box<RawValue>, RpcError> {
    unix_only(conn, "dashboard.revoke")?;
    let p: RevokeParams = params.parse()?;
    let all = p.all.unwrap_or(false);
    let target = match (&p.id, all) {
        (Some(id), false) => Some(id.clone()),
        (None, true) => None,
        _ => {
            return Err(RpcError::invalid_params(
                "give either id (one session) or all: true",
            ));
        }
    };
    let revoked = conn.shared.dashboard.revoke(target.as_deref());
    conn.shared.end_withdrawn_streams();
    if target.is_some() && revoked.is_empty() {
        let shown: String = p.id.unwrap_or_default().chars().take(64).collect();
        return Err(RpcError::taxonomy(
            ErrorCode::NotFound,
            format!("no live dashboard session {shown:?}"),
            &serde_json::Map::new(),
        ));
    }
    tracing::info!(sessions = revoked.len(), "dashboard sessions revoked");
    if !conn.shared.service.config().read_only {
        let gatos = conn.shared.gatos.with_actor(&conn.actor.to_string());
        let after = serde_json::json!({ "revoked": revoked });
        let target = target.map_or_else(|| "web:*".to_owned(), |id| format!("web:{id}"));
        let _ = tokio::task::spawn_blocking(move || {
            gatos::audit::record(
                &gatos,
                "dashboard.revoke",
                &target,
                serde_json::Value::Null,
                after,
                None,
            );
        })
        .await;
    }
    result(&RevokeResult { revoked })
}
