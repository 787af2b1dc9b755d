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

use super::guard::Credential;
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
    manager: Arc<LocalSessionManager>,
) -> StreamableHttpService<Server, LocalSessionManager> {
    let config = StreamableHttpServerConfig::default()
        .disable_allowed_hosts()
        .with_cancellation_token(stop)
        .with_max_request_body_bytes(shared.limits.max_line);
    // One count of resource watches per token over every session (a token's allowance,
    // not a session's).
    let watches = crate::mcp::Watches::default();
    StreamableHttpService::new(
        move || {
            Ok(Server::new(
                Face::new(shared.clone(), calls.clone())
                    .with_waits(waits.clone())
                    .with_watches(watches.clone()),
                policy.clone(),
                Via::Http(caller),
            ))
        },
        manager,
        config,
    )
}

/// `/mcp`: the [`service`] behind [`own_sessions`].
pub fn routes(
    shared: Arc<Shared>,
    policy: Arc<Policy>,
    stop: CancellationToken,
    calls: Arc<tokio::sync::Semaphore>,
    waits: Arc<super::limit::Slots>,
) -> axum::Router {
    let sessions = Arc::new(LocalSessionManager::default());
    let owners = Owners::new(sessions.clone(), shared.limits.max_line);
    axum::Router::new()
        .route_service(PATH, service(shared, policy, stop, calls, waits, sessions))
        .layer(axum::middleware::from_fn_with_state(owners, own_sessions))
}

/// Sessions one token may hold open at once on `/mcp`.
pub const MAX_SESSIONS_PER_TOKEN: usize = 64;
/// The largest `initialize` request (its client capabilities stay in memory for the
/// session's life).
pub const MAX_INITIALIZE_BYTES: usize = 64 * 1024;

/// The sessions of `/mcp` and what opened each: a session is used only with the
/// credential that opened it, and one credential holds at most
/// [`MAX_SESSIONS_PER_TOKEN`] (rmcp's sessions know neither).
pub struct Owners {
    manager: Arc<LocalSessionManager>,
    by_session: std::sync::Mutex<std::collections::HashMap<String, Credential>>,
    /// `initialize` requests under way, per credential: counted with its sessions, so
    /// concurrent ones cannot pass the cap together.
    opening: std::sync::Mutex<std::collections::HashMap<Credential, usize>>,
    /// The largest body read (`--max-line`, as rmcp's own limit).
    max_body: usize,
}

impl Owners {
    /// The owners of `manager`'s sessions.
    pub fn new(manager: Arc<LocalSessionManager>, max_body: usize) -> Arc<Owners> {
        Arc::new(Owners {
            manager,
            by_session: std::sync::Mutex::default(),
            opening: std::sync::Mutex::default(),
            max_body,
        })
    }

    fn opening(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<Credential, usize>> {
        self.opening
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Credential>> {
        self.by_session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forgets the sessions rmcp no longer holds (ended, or idle past its keep-alive);
    /// how many `credential` holds.
    async fn live_of(&self, credential: &Credential) -> usize {
        let live: std::collections::HashSet<String> = self
            .manager
            .sessions
            .read()
            .await
            .keys()
            .map(ToString::to_string)
            .collect();
        let mut map = self.lock();
        map.retain(|id, _| live.contains(id));
        map.values().filter(|c| *c == credential).count()
    }
}

/// The session header.
const SESSION_HEADER: &str = "mcp-session-id";

/// Before rmcp sees a request: a request on a session opened with another credential is
/// `Forbidden`; an `initialize` larger than [`MAX_INITIALIZE_BYTES`] is `PayloadTooLarge`,
/// and one past the credential's [`MAX_SESSIONS_PER_TOKEN`] `RateLimited`. After: a new
/// session is recorded as its credential's.
pub async fn own_sessions(
    axum::extract::State(owners): axum::extract::State<Arc<Owners>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    use gatos_types::ErrorCode;
    let Some(credential) = req
        .extensions()
        .get::<super::guard::Authed>()
        .map(|a| a.credential.clone())
    else {
        return next.run(req).await;
    };
    let session = req
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(id) = &session {
        let owner = owners.lock().get(id).cloned();
        if owner.is_some_and(|o| o != credential) {
            tracing::info!(
                code = "Forbidden",
                "an MCP session used with another credential"
            );
            return super::problem::Problem::new(
                ErrorCode::Forbidden,
                "this MCP session was opened with another token: open a session of your own",
            )
            .into_response();
        }
        let deleting = req.method() == axum::http::Method::DELETE;
        let r = next.run(req).await;
        if deleting && r.status().is_success() {
            owners.lock().remove(id);
        }
        return r;
    }
    // No session named: an `initialize` (a session to be) or a request of the 2026-07-28
    // era, which carries everything itself. Only the first opens a session.
    let mut opening_guard: Option<Opening> = None;
    let req = if req.method() == axum::http::Method::POST {
        let (parts, body) = req.into_parts();
        let bytes = match axum::body::to_bytes(body, owners.max_body).await {
            Ok(b) => b,
            Err(_) => {
                return super::problem::Problem::new(
                    ErrorCode::PayloadTooLarge,
                    format!(
                        "the request's body is larger than {} bytes, or could not be read",
                        owners.max_body
                    ),
                )
                .into_response();
            }
        };
        #[derive(serde::Deserialize)]
        struct Method {
            method: Option<String>,
        }
        let initialize = serde_json::from_slice::<Method>(&bytes)
            .ok()
            .and_then(|m| m.method)
            .is_some_and(|m| m == "initialize");
        if initialize {
            if bytes.len() > MAX_INITIALIZE_BYTES {
                return super::problem::Problem::new(
                    ErrorCode::PayloadTooLarge,
                    format!(
                        "an initialize request is {} bytes, more than {MAX_INITIALIZE_BYTES}",
                        bytes.len()
                    ),
                )
                .into_response();
            }
            let live = owners.live_of(&credential).await;
            let full = {
                let mut opening = owners.opening();
                let n = opening.entry(credential.clone()).or_insert(0);
                let full = live + *n >= MAX_SESSIONS_PER_TOKEN;
                if !full {
                    *n += 1;
                }
                full
            };
            // Given back when this request ends, answered or dropped.
            opening_guard = (!full).then(|| Opening {
                owners: owners.clone(),
                credential: credential.clone(),
            });
            if full {
                tracing::info!(code = "RateLimited", "MCP sessions per token at their cap");
                return super::problem::Problem::new(
                    ErrorCode::RateLimited,
                    format!(
                        "this token holds {MAX_SESSIONS_PER_TOKEN} MCP sessions, the most one \
                         token may: end one (DELETE /mcp with its Mcp-Session-Id) or let one \
                         idle for 5 minutes"
                    ),
                )
                .into_response();
            }
        }
        axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))
    } else {
        req
    };
    let r = next.run(req).await;
    if let Some(id) = r
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        owners.lock().insert(id.to_owned(), credential.clone());
    }
    drop(opening_guard);
    r
}

/// An `initialize` under way, counted in [`Owners::opening`] until dropped.
struct Opening {
    owners: Arc<Owners>,
    credential: Credential,
}

impl Drop for Opening {
    fn drop(&mut self) {
        let mut opening = self.owners.opening();
        if let Some(n) = opening.get_mut(&self.credential) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                opening.remove(&self.credential);
            }
        }
    }
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
            credential: Some(authed.credential.clone()),
        }),
        _ => None,
    }
}
