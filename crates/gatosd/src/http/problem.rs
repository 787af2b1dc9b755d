//! RFC 9457 problem details: every error the HTTP face answers is an
//! `application/problem+json` body carrying the taxonomy's code (ADR 0026, ADR 0034).
//!
//! `type` is `urn:gatos:error:<Code>`, `title` the code's title, `status` the code's
//! `http_status()` (405 and 415 excepted: protocol errors outside the taxonomy carry
//! `InvalidInput` with their own status, as JSON-RPC's reserved integers do), `detail` the
//! message, `code` the code, `data` the error's details. `Retry-After` is set whenever the
//! details carry `retry_after_seconds`; a 401 carries `WWW-Authenticate`.

use axum::body::Body;
use axum::http::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{Response, StatusCode};
use axum::response::IntoResponse;
use gatos_api::CallError;
use gatos_types::ErrorCode;
use serde_json::{Map, Value};

/// The media type of a problem.
pub const PROBLEM_JSON: &str = gatos_api::openapi::PROBLEM_MEDIA_TYPE;

/// The challenge of a 401.
pub const CHALLENGE: &str = "Bearer realm=\"gatos\"";

/// One problem, before it is rendered.
#[derive(Debug)]
pub struct Problem {
    /// The taxonomy code.
    pub code: ErrorCode,
    /// The HTTP status (the code's, but for protocol errors outside the taxonomy).
    pub status: StatusCode,
    /// The message.
    pub detail: String,
    /// Machine-readable details.
    pub data: Map<String, Value>,
    /// Headers to add (`Allow`, a refined `WWW-Authenticate`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// The title of a code: one short sentence a person reads.
pub fn title(code: ErrorCode) -> &'static str {
    code.title()
}

impl Problem {
    /// A problem of `code` with its status.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Problem {
        let status =
            StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Problem {
            code,
            status,
            detail: detail.into(),
            data: Map::new(),
            headers: Vec::new(),
        }
    }

    /// The problem of a library error: its code, message and details.
    pub fn from_error(e: &gatos::Error) -> Problem {
        let mut p = Problem::new(e.code(), e.to_string());
        p.data = e.details().clone();
        p
    }

    /// The problem of a service call that did not run or failed.
    pub fn from_call(e: CallError) -> Problem {
        match e {
            CallError::Failed(e) => Problem::from_error(&e),
            CallError::InvalidParams(m) => Problem::new(ErrorCode::InvalidInput, m),
            // Routes come from the operation table: either is a wiring bug.
            other @ (CallError::NotUnary(_) | CallError::UnknownOperation(_)) => {
                tracing::error!(error = %other, "a route reached an operation it cannot run");
                Problem::new(ErrorCode::Internal, "the request failed inside the daemon")
            }
        }
    }

    /// Sets the status (for protocol errors outside the taxonomy: 405, 415).
    #[must_use]
    pub fn status(mut self, status: StatusCode) -> Problem {
        self.status = status;
        self
    }

    /// Adds a detail.
    #[must_use]
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Problem {
        self.data.insert(key.to_owned(), value.into());
        self
    }

    /// Adds a header.
    #[must_use]
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Problem {
        self.headers.push((name, value));
        self
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        serde_json::json!({
            "type": gatos_api::openapi::problem_type(self.code),
            "title": title(self.code),
            "status": self.status.as_u16(),
            "detail": self.detail,
            "code": self.code.as_str(),
            "data": self.data,
        })
    }
}

/// `Retry-After` in whole seconds (at least 1) from `data.retry_after_seconds`.
fn retry_after(data: &Map<String, Value>) -> Option<HeaderValue> {
    let v = data.get("retry_after_seconds")?;
    let secs = v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .map(|f| f.ceil() as u64)
    })?;
    HeaderValue::from_str(&secs.max(1).to_string()).ok()
}

impl IntoResponse for Problem {
    fn into_response(self) -> axum::response::Response {
        tracing::debug!(
            code = self.code.as_str(),
            status = self.status.as_u16(),
            "answered with a problem"
        );
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut r = Response::new(Body::from(body));
        *r.status_mut() = self.status;
        let h = r.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        h.insert(
            axum::http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
        if let Some(v) = retry_after(&self.data) {
            h.insert(RETRY_AFTER, v);
        }
        if self.status == StatusCode::UNAUTHORIZED && !h.contains_key(WWW_AUTHENTICATE) {
            h.insert(WWW_AUTHENTICATE, HeaderValue::from_static(CHALLENGE));
        }
        for (k, v) in self.headers {
            h.insert(k, v);
        }
        // The code, for the request metrics (`http::metrics::count`).
        r.extensions_mut().insert(self.code);
        r
    }
}

/// The code of an error response made outside the service (axum's rejections, the 404
/// and 405 of routing, a timeout, a panic), by its status.
fn code_of(status: StatusCode) -> ErrorCode {
    match status.as_u16() {
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        413 => ErrorCode::PayloadTooLarge,
        408 | 503 | 504 => ErrorCode::Unavailable,
        429 => ErrorCode::RateLimited,
        s if s >= 500 => ErrorCode::Internal,
        _ => ErrorCode::InvalidInput,
    }
}

/// The layer's function: any error response (status ≥ 400) that is not already a problem
/// becomes one, keeping its status where the taxonomy has no code of that status (405,
/// 415), and its `Allow` header.
pub async fn problemize(r: axum::response::Response) -> axum::response::Response {
    let status = r.status();
    let is_problem = r
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if status.as_u16() < 400 || is_problem {
        return r;
    }
    let (parts, body) = r.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let code = code_of(status);
    let detail = match (status.as_u16(), text.is_empty()) {
        (404, _) => "no such route (see /api/v1/openapi.json)".to_owned(),
        (405, _) => "this route does not take this method (see the Allow header)".to_owned(),
        (413, _) => "the request body is larger than the daemon's limit".to_owned(),
        (_, false) => text,
        (_, true) => status.canonical_reason().unwrap_or("error").to_owned(),
    };
    let mut p = Problem::new(code, detail);
    if p.status != status {
        p = p.status(status);
    }
    for name in [axum::http::header::ALLOW, WWW_AUTHENTICATE] {
        if let Some(v) = parts.headers.get(&name) {
            p = p.header(name, v.clone());
        }
    }
    p.into_response()
}

/// What a panicking handler answers (tower-http's catch-panic): `Internal`, the daemon
/// goes on.
pub fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    tracing::error!("an HTTP handler panicked");
    Problem::new(ErrorCode::Internal, "the request failed inside the daemon").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_renders_with_its_own_status_and_type() {
        for code in ErrorCode::ALL {
            let r = Problem::new(code, "x").into_response();
            assert_eq!(r.status().as_u16(), code.http_status(), "{code:?}");
            assert_eq!(
                r.headers().get(CONTENT_TYPE).map(HeaderValue::as_bytes),
                Some(PROBLEM_JSON.as_bytes())
            );
            let b = Problem::new(code, "x").body();
            assert_eq!(b["type"], format!("urn:gatos:error:{}", code.as_str()));
            assert_eq!(b["code"], code.as_str());
            assert_eq!(b["status"], code.http_status());
            assert!(!title(code).is_empty());
        }
    }

    #[test]
    fn a_retry_hint_becomes_retry_after_in_whole_seconds() {
        let r = Problem::new(ErrorCode::QueueFull, "full")
            .with("retry_after_seconds", 12)
            .into_response();
        assert_eq!(r.status().as_u16(), 429);
        assert_eq!(
            r.headers().get(RETRY_AFTER).map(HeaderValue::as_bytes),
            Some(&b"12"[..])
        );
        let r = Problem::new(ErrorCode::Unavailable, "x")
            .with("retry_after_seconds", 0.2)
            .into_response();
        assert_eq!(
            r.headers().get(RETRY_AFTER).map(HeaderValue::as_bytes),
            Some(&b"1"[..])
        );
        let r = Problem::new(ErrorCode::Unauthorized, "x").into_response();
        assert_eq!(
            r.headers().get(WWW_AUTHENTICATE).map(HeaderValue::as_bytes),
            Some(CHALLENGE.as_bytes())
        );
    }
}
