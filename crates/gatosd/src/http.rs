//! The HTTP face (issue #17, ADR 0035): REST over the operation table, on the daemon's
//! runtime, limits, read-only mode and shutdown.
//!
//! axum, hyper and tower-http are named under this module only
//! (`scripts/check-boundaries.sh`). The accept loop is the daemon's own
//! (`server::run`): a connection slot is taken before `accept`, as on the other
//! transports, and each connection is served by hyper's HTTP/1.1 connection with a header
//! timeout and a graceful shutdown tied to the daemon's.
//!
//! Every request passes, outside in: catch-panic → problemize (any error response becomes
//! `application/problem+json`) → [`guard::check`] (`Host`, then the bearer token, then
//! the token's rate) → the route. With `--http-cors-origin`, a request from a listed
//! origin passes tower-http's `CorsLayer` first ([`limit::with_cors`]).

pub mod dashboard;
pub mod graphql;
pub mod guard;
pub mod idem;
pub mod limit;
pub mod mcp;
pub mod metrics;
pub mod problem;
pub mod query;
pub mod session;
pub mod sse;
pub mod tls;
pub mod unary;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use crate::shared::Shared;

/// The address `--http` serves when given without one.
pub const DEFAULT_ADDR: &str = "127.0.0.1:6767";

/// The file, under the gatos directory, that holds the bound address (so local clients
/// and tests can use port 0).
pub const ADDR_RELATIVE: &str = "gatosd/http-addr";

/// What the face is configured with.
#[derive(Clone, Default)]
pub struct Options {
    /// `--http-allowed-host` values: host names (with an optional port) accepted in `Host`
    /// besides IP literals and `localhost`.
    pub allowed_hosts: Vec<String>,
    /// TLS (`--tls-cert`, `--tls-key`): every connection does the handshake first.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// `--http-cors-origin` values: the exact origins CORS answers (none: no CORS).
    pub cors_origins: Vec<String>,
    /// What `/mcp` offers (`--mcp-allow-tools`, `--mcp-deny-tools`; ADR 0043).
    pub mcp: crate::mcp::Policy,
}

/// The HTTP listener and where its address was written.
pub struct Endpoint {
    /// The bound listener.
    pub listener: tokio::net::TcpListener,
    /// The face's options.
    pub options: Options,
    /// The `http-addr` file, removed when the endpoint is dropped.
    pub addr_file: Option<PathBuf>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if let Some(f) = &self.addr_file {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// What the routes share.
pub struct HttpState {
    /// The daemon's shared state (service, tokens, counters, watchers, limits).
    pub shared: Arc<Shared>,
    /// The face's options.
    pub options: Options,
    /// Unary calls running at once (each holds a blocking-pool thread).
    pub calls: Arc<Semaphore>,
    /// The rate per token (`None` with `--http-rate off`).
    pub limiter: Option<limit::Limiter>,
    /// The slots of waiting calls and large answers (shared with `/mcp`'s waiting calls).
    pub slots: Arc<limit::Slots>,
    /// Server-sent event streams open, per token name.
    pub streams: sse::Streams,
}

/// Binds `addr` and writes the bound address to `<gatos-dir>/gatosd/http-addr` (mode
/// 0600), when `gatos_dir` is given.
///
/// # Errors
/// A message when the address cannot be bound or the file written.
pub async fn bind(
    addr: SocketAddr,
    options: Options,
    gatos_dir: Option<&Path>,
) -> Result<Endpoint, String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("listening on {addr} (HTTP): {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("the address of the HTTP listener: {e}"))?;
    let addr_file = match gatos_dir {
        Some(d) => {
            let f = d.join(ADDR_RELATIVE);
            write_private(&f, &format!("{bound}\n"))?;
            Some(f)
        }
        None => None,
    };
    Ok(Endpoint {
        listener,
        options,
        addr_file,
    })
}

fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        std::fs::rename(&tmp, path)
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("writing {}: {e}", path.display())
    })
}

/// The origin a browser reaches the face at, from its bound address (an unspecified
/// address is reached on loopback).
pub fn origin_of(addr: SocketAddr, tls: bool) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v) if v.is_unspecified() => {
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        }
        std::net::IpAddr::V6(v) if v.is_unspecified() => {
            std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
        }
        ip => ip,
    };
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{}", SocketAddr::new(ip, addr.port()))
}

/// The router of the face.
pub fn router(shared: Arc<Shared>, options: Options) -> Router {
    router_until(shared, options, CancellationToken::new())
}

/// The router of the face, whose long-lived sessions (`/mcp`) end when `stop` is cancelled.
pub fn router_until(shared: Arc<Shared>, options: Options, stop: CancellationToken) -> Router {
    let calls = Arc::new(Semaphore::new(shared.limits.max_http_calls));
    let limiter = shared.limits.http_rate.map(|per_second| {
        limit::Limiter::new(limit::Rate {
            per_second,
            burst: shared.limits.http_burst,
        })
    });
    let slots = Arc::new(limit::Slots::new(&shared.limits));
    let cors = options.cors_origins.clone();
    // The MCP endpoint offers what --mcp-allow-tools/--mcp-deny-tools say, reads only in
    // read-only mode; the opt-in tools (jobs.enqueue) only when allowed by name (ADR 0043).
    let mcp_policy = Arc::new(crate::mcp::Policy {
        read_only: options.mcp.read_only || shared.service.config().read_only,
        ..options.mcp.clone()
    });
    let mcp = mcp::routes(
        shared.clone(),
        mcp_policy,
        stop,
        calls.clone(),
        slots.clone(),
    );
    let streams = sse::Streams::new(shared.limits.stream_bytes_total);
    let state = Arc::new(HttpState {
        shared,
        options,
        calls,
        limiter,
        slots,
        streams,
    });
    let router = unary::routes(state.clone())
        .merge(sse::routes(state.clone()))
        .merge(graphql::routes(state.clone()))
        .merge(dashboard::routes(state.clone()))
        .route("/healthz", get(healthz))
        .merge(mcp)
        .route(
            metrics::PATH,
            get(metrics::scrape).with_state(state.clone()),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::check,
        ))
        .layer(axum::middleware::map_response(problem::problemize))
        .layer(axum::middleware::map_response(dashboard::secure_headers))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            problem::panicked,
        ))
        .layer(axum::middleware::from_fn_with_state(state, metrics::count));
    limit::with_cors(router, &cors)
}

/// `GET /healthz`: the process answers (no token, no store read).
async fn healthz() -> axum::response::Response {
    let mut r = axum::response::Response::new(axum::body::Body::from(r#"{"status":"ok"}"#));
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    r
}

/// Serves one accepted connection (HTTP/1.1, keep-alive; after the TLS handshake when
/// `tls` is set) until the client closes it, an error, or `stop`: then requests in flight
/// are answered and the connection closes.
pub async fn serve_connection(
    stream: TcpStream,
    addr: String,
    router: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    use std::sync::atomic::Ordering;
    let _ = stream.set_nodelay(true);
    shared.connections.fetch_add(1, Ordering::Relaxed);
    shared.connections_total.fetch_add(1, Ordering::Relaxed);
    match tls {
        None => serve_io(TokioIo::new(stream), addr, router, &shared, stop).await,
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(shared.limits.http_header_timeout, acceptor.accept(stream));
            let stopped = stop.clone();
            tokio::select! {
                r = handshake => match r {
                    Ok(Ok(s)) => serve_io(TokioIo::new(s), addr, router, &shared, stop).await,
                    Ok(Err(e)) => tracing::debug!(peer = %addr, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(peer = %addr, "TLS handshake timed out"),
                },
                () = stopped.cancelled() => {}
            }
        }
    }
    shared.connections.fetch_sub(1, Ordering::Relaxed);
}

async fn serve_io<I>(
    io: TokioIo<I>,
    addr: String,
    router: Router,
    shared: &Arc<Shared>,
    stop: CancellationToken,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let id = shared.next_id();
    let span = tracing::debug_span!("conn", conn = id, transport = "http", peer = %addr);
    // A stream ends with `event: shutdown` when its connection is told to stop.
    let conn_stop = sse::ConnStop(stop.clone());
    let svc = hyper::service::service_fn(move |mut req: axum::http::Request<Incoming>| {
        req.extensions_mut().insert(conn_stop.clone());
        router.clone().oneshot(req)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.limits.http_header_timeout)
        .max_buf_size(64 * 1024)
        .keep_alive(true);
    let conn = builder.serve_connection(io, svc);
    let drain = shared.limits.drain_timeout;
    let served = async move {
        tokio::pin!(conn);
        let r = tokio::select! {
            r = conn.as_mut() => r,
            () = stop.cancelled() => {
                conn.as_mut().graceful_shutdown();
                match tokio::time::timeout(drain, conn.as_mut()).await {
                    Ok(r) => r,
                    Err(_) => {
                        tracing::warn!("an HTTP request still running after the drain timeout");
                        Ok(())
                    }
                }
            }
        };
        if let Err(e) = r {
            tracing::debug!(error = %e, "HTTP connection ended with an error");
        }
    };
    tracing::Instrument::instrument(served, span).await;
}
