//! `/mcp`: the MCP face on the HTTP face (issue #20, ADR 0043). rmcp's Streamable HTTP
//! service, mounted behind [`super::guard::check`] (the `Host` check, the bearer token and
//! its rate), serves both protocol eras: sessions (`Mcp-Session-Id`) for clients of
//! 2025-11-25 and older, single self-contained requests for 2026-07-28. A call acts as
//! `mcp:<client>@token:<token name>`; a token marked `ro` gets read tools only.
//!
//! rmcp is named here and under `crate::mcp` only (`scripts/check-boundaries.sh`).

use std::sync::Arc;

use gatos_api::Actor;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use crate::mcp::{Caller, Face, Policy, Server, Via};
use crate::shared::Shared;

/// The path of the MCP endpoint.
pub const PATH: &str = "/mcp";

/// The service of `/mcp`: a [`Server`] per session (or per stateless request), sessions
/// ended when `stop` is cancelled, blocking calls holding one of `calls` (the HTTP face's
/// call slots). rmcp's own `Host` check is off: the guard checks `Host`
/// against `--http-allowed-host` before a request gets here.
pub fn service(
    shared: Arc<Shared>,
    policy: Arc<Policy>,
    stop: CancellationToken,
    calls: Arc<tokio::sync::Semaphore>,
    waits: Arc<super::limit::Slots>,
) -> StreamableHttpService<Server, LocalSessionManager> {
    let config = StreamableHttpServerConfig::default()
        .disable_allowed_hosts()
        .with_cancellation_token(stop)
        .with_max_request_body_bytes(shared.limits.max_line);
    StreamableHttpService::new(
        move || {
            Ok(Server::new(
                Face::new(shared.clone(), calls.clone()).with_waits(waits.clone()),
                policy.clone(),
                Via::Http(caller),
            ))
        },
        Arc::new(LocalSessionManager::default()),
        config,
    )
}

/// Who sent a request: the token the guard accepted (rmcp hands the request's parts to the
/// handler in its extensions).
fn caller(extensions: &rmcp::model::Extensions) -> Option<Caller> {
    let parts = extensions.get::<axum::http::request::Parts>()?;
    let authed = parts.extensions.get::<super::guard::Authed>()?;
    match &authed.actor {
        Actor::Http(name) => Some(Caller {
            token: name.clone(),
            read_only: authed.read_only,
        }),
        _ => None,
    }
}
