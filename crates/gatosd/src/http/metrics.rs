//! `GET /metrics` (ADR 0040): the registry of [`crate::metrics`] in Prometheus text 0.0.4,
//! or OpenMetrics 1.0 when `Accept` asks for `application/openmetrics-text`. Behind the
//! token like every route but `/healthz`. The answer encodes atomics only: it never reads
//! the store, so it runs on the async runtime.
//!
//! [`count`] counts every response of the face by route template and status.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use gatos_types::ErrorCode;

use super::HttpState;
use super::problem::Problem;

/// The route of the scrape.
pub const PATH: &str = "/metrics";

/// Whether `Accept` asks for OpenMetrics.
pub fn wants_openmetrics(accept: Option<&HeaderValue>) -> bool {
    accept.and_then(|v| v.to_str().ok()).is_some_and(|a| {
        a.to_ascii_lowercase()
            .contains("application/openmetrics-text")
    })
}

/// `GET /metrics`.
pub async fn scrape(State(st): State<Arc<HttpState>>, req: Request) -> Response {
    use std::sync::atomic::Ordering;
    let openmetrics = wants_openmetrics(req.headers().get(ACCEPT));
    let shared = &st.shared;
    match shared.metrics.encode(
        shared.connections.load(Ordering::Relaxed),
        shared.subscriptions.load(Ordering::Relaxed),
        openmetrics,
    ) {
        Ok((text, content_type)) => {
            let mut r = Response::new(Body::from(text));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            r.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => {
            Problem::new(ErrorCode::Internal, format!("encoding the metrics: {e}")).into_response()
        }
    }
}

/// Counts the response of every request by route template and status, and the requests
/// of table routes (unary and streams) per operation with their duration.
pub async fn count(State(st): State<Arc<HttpState>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let (route, op) = template(req.method().as_str(), req.uri().path());
    let r = next.run(req).await;
    let status = r.status().as_u16();
    st.shared.metrics.http_response(route, status);
    if let Some(op) = op {
        let code = r
            .extensions()
            .get::<ErrorCode>()
            .map_or(if status < 400 { "ok" } else { "_other" }, |c| c.as_str());
        st.shared
            .metrics
            .request("http", op, code, started.elapsed());
    }
    r
}

/// The route template `path` matches (a table route, else a face route) and the table
/// route's operation for `method`.
pub fn template(method: &str, path: &str) -> (Option<&'static str>, Option<&'static str>) {
    let mut found = None;
    for r in gatos_api::routes::ROUTES {
        if matches(r.path, path) {
            if r.method.as_str() == method {
                return (Some(r.path), Some(r.op));
            }
            found = found.or(Some(r.path));
        }
    }
    if found.is_none() {
        found = gatos_api::routes::FACE_ROUTES
            .iter()
            .find(|r| r.path == path)
            .map(|r| r.path);
    }
    // The MCP endpoint (its tool calls count per operation under face "mcp").
    if found.is_none() && path == super::mcp::PATH {
        found = Some(super::mcp::PATH);
    }
    (found, None)
}

/// Whether `path` fits `template` (`{name}` stands for one non-empty segment).
fn matches(template: &str, path: &str) -> bool {
    let mut t = template.split('/');
    let mut p = path.split('/');
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some(ts), Some(ps)) => {
                let var = ts.starts_with('{') && ts.ends_with('}');
                if !(var && !ps.is_empty() || ts == ps) {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_their_templates() {
        let (route, op) = template("POST", "/api/v1/topics/a.b/messages");
        assert_eq!(route, Some("/api/v1/topics/{topic}/messages"));
        assert_eq!(op, Some("messages.publish"));
        assert_eq!(template("GET", "/healthz"), (Some("/healthz"), None));
        assert_eq!(template("GET", "/nope/x"), (None, None));
        assert_eq!(template("GET", "/api/v1/topics//messages").0, None);
    }

    #[test]
    fn accept_picks_openmetrics() {
        let om = HeaderValue::from_static("application/openmetrics-text; version=1.0.0");
        assert!(wants_openmetrics(Some(&om)));
        assert!(!wants_openmetrics(Some(&HeaderValue::from_static(
            "text/plain"
        ))));
        assert!(!wants_openmetrics(None));
    }
}
