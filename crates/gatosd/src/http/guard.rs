//! What every request passes before a route sees it (ADR 0035): the `Host` check against
//! DNS rebinding, then (on every route but `/healthz`) the bearer token, which names the
//! actor, then the token's rate (ADR 0038): a request without a valid token is refused
//! before it counts, and one token's requests never spend another's rate.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::http::header::{AUTHORIZATION, HOST, WWW_AUTHENTICATE};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use gatos_api::Actor;
use gatos_types::ErrorCode;

use super::HttpState;
use super::limit::Verdict;
use super::problem::Problem;

/// Who a request acts for: the name of its token (`http:<name>`), and whether the token
/// may only read.
#[derive(Debug, Clone)]
pub struct Authed {
    /// `Actor::Http(name)`.
    pub actor: Actor,
    /// The token is marked `ro`.
    pub read_only: bool,
    /// What it presented, so that a stream it opened ends when that is withdrawn.
    pub credential: Credential,
}

/// What a request presented: a token of the token file, or a dashboard session.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Credential {
    /// The BLAKE3 hash of the bearer token (to ask the token file in force whether it
    /// still holds it).
    Token([u8; 32]),
    /// The dashboard session's id.
    Session(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Token(_) => f.write_str("Token(…)"),
            Credential::Session(id) => write!(f, "Session({id})"),
        }
    }
}

/// The routes served without a token (liveness: no store read, nothing to protect).
pub const OPEN_PATHS: &[&str] = &["/healthz"];

/// Splits a `Host` value into its host and port parts (`[v6]:port`, `name:port`, `name`).
fn split_host(v: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = v.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        return match after {
            "" => Some((h, None)),
            p => Some((h, Some(p.strip_prefix(':')?))),
        };
    }
    match v.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h, Some(p))),
        Some(_) => None,
        None => Some((v, None)),
    }
}

/// Tells whether a `Host` value may reach the daemon: an IP literal (a rebinding page
/// cannot make a browser send one), `localhost`, or one of `allowed` (`NAME` matches any
/// port, `NAME:PORT` that port), case-insensitively.
pub fn host_allowed(value: &str, allowed: &[String]) -> bool {
    let Some((host, port)) = split_host(value.trim()) else {
        return false;
    };
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    if host.parse::<Ipv4Addr>().is_ok()
        || (value.trim().starts_with('[') && host.parse::<Ipv6Addr>().is_ok())
        || host.eq_ignore_ascii_case("localhost")
    {
        return true;
    }
    allowed.iter().any(|a| match split_host(a) {
        Some((ah, None)) => ah.eq_ignore_ascii_case(host),
        Some((ah, Some(ap))) => ah.eq_ignore_ascii_case(host) && port == Some(ap),
        None => false,
    })
}

/// The bearer token of an `Authorization` header, if it is one.
fn bearer(v: &HeaderValue) -> Option<&[u8]> {
    let b = v.as_bytes();
    let (scheme, rest) = b.split_at(b.iter().position(|c| *c == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// The middleware: `Host`, then the token or the dashboard's session; inserts [`Authed`]
/// for the routes.
pub async fn check(State(state): State<Arc<HttpState>>, req: Request, next: Next) -> Response {
    if req.headers().get_all(HOST).iter().nth(1).is_some() {
        // RFC 9112 §3.2: a request with more than one Host is answered 400.
        return Problem::new(
            ErrorCode::InvalidInput,
            "the request has more than one Host header",
        )
        .into_response();
    }
    // An absolute-form target (`GET http://name/…`) names the host itself, before Host
    // (RFC 9112 §3.2.2): that is the name checked.
    let host = match req.uri().authority() {
        Some(a) => Some(Ok(a.as_str().to_owned())),
        None => req
            .headers()
            .get(HOST)
            .map(|v| v.to_str().map(str::to_owned)),
    };
    match host {
        None => {
            return Problem::new(ErrorCode::InvalidInput, "the request has no Host header")
                .into_response();
        }
        Some(Err(_)) => {
            return Problem::new(ErrorCode::InvalidInput, "the Host header is not text")
                .into_response();
        }
        Some(Ok(h)) if !host_allowed(&h, &state.options.allowed_hosts) => {
            let shown: String = h.chars().take(100).collect();
            tracing::info!(code = "Forbidden", host = %shown, "refused a request for another host name");
            return Problem::new(
                ErrorCode::Forbidden,
                format!(
                    "this daemon does not serve the host name {shown:?} (it may be a DNS rebinding attack); use an IP address or localhost, or start gatosd with --http-allowed-host NAME"
                ),
            )
            .with("host", shown)
            .into_response();
        }
        Some(Ok(_)) => {}
    }
    if OPEN_PATHS.contains(&req.uri().path())
        || super::dashboard::is_open(req.method(), req.uri().path())
    {
        return next.run(req).await;
    }
    // The dashboard's session cookie (ADR 0045): only without a bearer token, only from
    // the served origin.
    if let Some(secret) = super::session::cookie_value(req.headers()) {
        let Some(authed) = cookie_session(&state, &req, &secret) else {
            return cookie_refusal(&state, &req);
        };
        let key = authed.actor.to_string();
        return run_counted(&state, authed, &key, req, next).await;
    }
    let tokens = state.shared.tokens();
    let file = tokens
        .as_ref()
        .map(|t| t.file.display().to_string())
        .unwrap_or_default();
    let refuse = |msg: String, challenge: &'static str| {
        tracing::info!(
            code = "Unauthorized",
            "refused an HTTP request without a valid token"
        );
        let mut p = Problem::new(ErrorCode::Unauthorized, msg)
            .header(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        if !file.is_empty() {
            p = p.with("token_file", file.clone());
        }
        p.into_response()
    };
    let Some(presented) = req.headers().get(AUTHORIZATION).and_then(bearer) else {
        return refuse(
            format!(
                "this route needs a token: send 'Authorization: Bearer TOKEN' with a token of {}",
                if file.is_empty() {
                    "the daemon's token file"
                } else {
                    &file
                }
            ),
            super::problem::CHALLENGE,
        );
    };
    let Some(entry) = tokens.as_ref().and_then(|t| t.find(presented)) else {
        return refuse(
            "wrong token".to_owned(),
            "Bearer realm=\"gatos\", error=\"invalid_token\"",
        );
    };
    let authed = Authed {
        actor: Actor::Http(entry.name.clone()),
        read_only: entry.read_only,
        credential: Credential::Token(*blake3::hash(presented).as_bytes()),
    };
    run_counted(&state, authed, &entry.name, req, next).await
}

/// Runs the route for `authed`, counted against `key`'s rate (ADR 0038).
async fn run_counted(
    state: &Arc<HttpState>,
    authed: Authed,
    key: &str,
    mut req: Request,
    next: Next,
) -> Response {
    let counted = match &state.limiter {
        None => None,
        Some(l) => match l.check(key) {
            Verdict::Served { limit, remaining } => Some((limit, remaining)),
            Verdict::Refused { retry_after } => {
                state.shared.metrics.rate_limited(key);
                return l.refusal(key, retry_after);
            }
        },
    };
    req.extensions_mut().insert(authed);
    let mut r = next.run(req).await;
    if let Some((limit, remaining)) = counted {
        super::limit::annotate(&mut r, limit, remaining);
    }
    r
}

/// The origin this face serves a request at: `http[s]://` and its `Host`.
pub fn served_origin(state: &HttpState, headers: &axum::http::HeaderMap) -> Option<String> {
    let host = headers.get(HOST)?.to_str().ok()?;
    let scheme = if state.options.tls.is_some() {
        "https"
    } else {
        "http"
    };
    Some(format!("{scheme}://{}", host.to_ascii_lowercase()))
}

/// Whether a browser sent the request from the served origin itself (ADR 0045):
/// `Sec-Fetch-Site: same-origin`, or, only when that header is absent, an `Origin` equal
/// to the served origin. Another port of the same host is the same site, not the same
/// origin, and is refused.
pub fn from_same_origin(state: &HttpState, headers: &axum::http::HeaderMap) -> bool {
    match headers.get("sec-fetch-site") {
        Some(v) => v.as_bytes() == b"same-origin",
        None => match (
            headers.get(axum::http::header::ORIGIN),
            served_origin(state, headers),
        ) {
            (Some(o), Some(served)) => o.to_str().is_ok_and(|o| o.eq_ignore_ascii_case(&served)),
            _ => false,
        },
    }
}

/// The session a cookie request acts for, when the request may use it.
fn cookie_session(state: &HttpState, req: &Request, secret: &[u8]) -> Option<Authed> {
    if req.headers().contains_key(AUTHORIZATION) || !from_same_origin(state, req.headers()) {
        return None;
    }
    let s = state
        .shared
        .dashboard
        .check(secret, std::time::Instant::now())?;
    Some(Authed {
        actor: Actor::Web(s.id.clone()),
        read_only: s.read_only || state.shared.service.config().read_only,
        credential: Credential::Session(s.id),
    })
}

/// Why a cookie request was refused: both credentials, another origin, or no live
/// session. Nothing of the cookie is logged.
fn cookie_refusal(state: &HttpState, req: &Request) -> Response {
    if req.headers().contains_key(AUTHORIZATION) {
        tracing::info!(
            code = "Forbidden",
            "refused a request with both a session cookie and a token"
        );
        return Problem::new(
            ErrorCode::Forbidden,
            "the request carries both the dashboard's session cookie and a bearer token; send one of them",
        )
        .with("reason", "both_credentials")
        .into_response();
    }
    if !from_same_origin(state, req.headers()) {
        tracing::info!(
            code = "Forbidden",
            "refused a session cookie sent from another origin"
        );
        return Problem::new(
            ErrorCode::Forbidden,
            "the dashboard's session cookie is accepted only from the dashboard's own origin (Sec-Fetch-Site: same-origin, or a matching Origin)",
        )
        .with("reason", "cross_origin")
        .into_response();
    }
    tracing::info!(
        code = "Unauthorized",
        "refused an unknown, expired or revoked dashboard session"
    );
    Problem::new(
        ErrorCode::Unauthorized,
        "the dashboard session is unknown, expired or revoked: sign in again with git gatos dashboard",
    )
    .with("reason", "session")
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_literals_and_localhost_pass_other_names_need_the_flag() {
        let none: Vec<String> = vec![];
        for ok in [
            "127.0.0.1:6767",
            "127.0.0.1",
            "10.1.2.3:80",
            "[::1]:6767",
            "[::1]",
            "localhost",
            "LOCALHOST:6767",
        ] {
            assert!(host_allowed(ok, &none), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:6767",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "::1",
            "[::1",
            "127.0.0.1:",
            "127.0.0.1:x",
            "",
        ] {
            assert!(!host_allowed(bad, &none), "{bad}");
        }
        let allowed = vec!["gatos.internal".to_owned(), "api.example:8443".to_owned()];
        assert!(host_allowed("GATOS.internal:6767", &allowed));
        assert!(host_allowed("gatos.internal", &allowed));
        assert!(host_allowed("api.example:8443", &allowed));
        assert!(!host_allowed("api.example:6767", &allowed));
        assert!(!host_allowed("api.example", &allowed));
        assert!(!host_allowed("evil.example", &allowed));
    }

    #[test]
    fn only_bearer_credentials_are_read() {
        let t = |s: &'static str| bearer(&HeaderValue::from_static(s)).map(<[u8]>::to_vec);
        assert_eq!(t("Bearer abc"), Some(b"abc".to_vec()));
        assert_eq!(t("bearer  abc "), Some(b"abc".to_vec()));
        assert_eq!(t("Basic abc"), None);
        assert_eq!(t("Bearer "), None);
        assert_eq!(t("Bearer"), None);
    }
}
