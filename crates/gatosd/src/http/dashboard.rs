//! The dashboard (issue #19, ADR 0045): the embedded app at `/`, its sign-in and logout,
//! and the headers every answer of the face carries (a strict Content-Security-Policy, no
//! framing).
//!
//! The app is static files under `crates/gatosd/dashboard/`, embedded with rust-embed; it
//! holds no data, so its shell needs no credentials. Its data comes from the REST routes
//! with the session cookie, which the guard accepts only from the served origin.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_TYPE, ETAG, HeaderName, HeaderValue, IF_NONE_MATCH, SET_COOKIE,
};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gatos_types::ErrorCode;

use super::HttpState;
use super::guard::{Authed, from_same_origin};
use super::problem::Problem;
use super::session;

/// The app's files.
#[derive(rust_embed::RustEmbed)]
#[folder = "dashboard/"]
struct Assets;

/// The Content-Security-Policy of every answer: scripts, styles, connections and workers
/// from the face itself only, nothing inline, never framed.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; worker-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The pages of the app: the shell answers each of them (the app routes by path).
pub const PAGES: &[&str] = &[
    "/",
    "/overview",
    "/jobs",
    "/topics",
    "/manifests",
    "/keys",
    "/audit",
];

/// Prefixes of pages with a path parameter (`/jobs/ID`, `/topics/NAME`, `/manifests/NAME`).
const PAGE_PREFIXES: &[&str] = &["/jobs/", "/topics/", "/manifests/"];

/// The sign-in route (no credentials yet; the origin test applies).
pub const SIGNIN: &str = "/dashboard/signin";
/// The logout route.
pub const LOGOUT: &str = "/dashboard/logout";
/// Who the browser is signed in as.
pub const SESSION: &str = "/dashboard/session";
/// The largest sign-in body (`{"code": "…"}` is under 100 bytes).
pub const SIGNIN_MAX_BODY: usize = 4096;

/// Whether a request reaches its route without credentials: the app's shell and assets
/// (`GET`/`HEAD`), and the sign-in.
pub fn is_open(method: &Method, path: &str) -> bool {
    if method == Method::POST {
        return path == SIGNIN;
    }
    (method == Method::GET || method == Method::HEAD)
        && (PAGES.contains(&path)
            || path.starts_with("/assets/")
            || PAGE_PREFIXES
                .iter()
                .any(|p| path.strip_prefix(p).is_some_and(|rest| !rest.is_empty())))
}

/// The dashboard's routes.
pub fn routes(state: Arc<HttpState>) -> Router {
    let mut r = Router::new();
    for page in PAGES {
        r = r.route(page, get(shell));
    }
    for prefix in PAGE_PREFIXES {
        r = r.route(&format!("{prefix}{{*rest}}"), get(shell));
    }
    r.route("/assets/{*file}", get(asset))
        .route(SIGNIN, post(signin).with_state(state.clone()))
        .route(LOGOUT, post(logout).with_state(state.clone()))
        .route(SESSION, get(whoami).with_state(state))
}

/// Adds the security headers to every answer of the face.
pub async fn secure_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name: &'static str, value: &'static str| {
        h.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    };
    set(h, "content-security-policy", CSP);
    set(h, "x-frame-options", "DENY");
    set(h, "x-content-type-options", "nosniff");
    set(h, "referrer-policy", "no-referrer");
    set(h, "cross-origin-opener-policy", "same-origin");
    set(h, "cross-origin-resource-policy", "same-origin");
    r
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, e)| e) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn file(path: &str, req: &Request) -> Response {
    let Some(f) = Assets::get(path) else {
        return Problem::new(ErrorCode::NotFound, format!("no such file: {path}")).into_response();
    };
    let tag: String = f.metadata.sha256_hash()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let etag = format!("\"{tag}\"");
    let mut r = if req
        .headers()
        .get(IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = Response::new(Body::from(f.data.into_owned()));
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
        r
    };
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        r.headers_mut().insert(ETAG, v);
    }
    r
}

async fn shell(req: Request) -> Response {
    file("index.html", &req)
}

async fn asset(req: Request) -> Response {
    let path = req
        .uri()
        .path()
        .strip_prefix("/assets/")
        .unwrap_or("")
        .to_owned();
    if path
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Problem::new(ErrorCode::NotFound, "no such file").into_response();
    }
    file(&path, &req)
}

fn json(status: StatusCode, v: &serde_json::Value) -> Response {
    let mut r = Response::new(Body::from(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn session_json(s: &session::Session, daemon_read_only: bool) -> serde_json::Value {
    serde_json::json!({
        "id": s.id,
        "actor": format!("web:{}", s.id),
        "expires_at": session::rfc3339(s.expires_at),
        "read_only": s.read_only || daemon_read_only,
    })
}

/// `POST /dashboard/signin {"code": CODE}`: the code's session, as a cookie.
async fn signin(State(st): State<Arc<HttpState>>, req: Request) -> Response {
    if !from_same_origin(&st, req.headers()) {
        tracing::info!(code = "Forbidden", "refused a sign-in from another origin");
        return Problem::new(
            ErrorCode::Forbidden,
            "a sign-in is accepted only from the dashboard's own origin",
        )
        .with("reason", "cross_origin")
        .into_response();
    }
    // Before any credential: a small body, in the face's body time (ADR 0035).
    let read = axum::body::to_bytes(req.into_body(), SIGNIN_MAX_BODY);
    let bytes = match tokio::time::timeout(st.shared.limits.http_body_timeout, read).await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => {
            return Problem::new(
                ErrorCode::PayloadTooLarge,
                "a sign-in body is at most 4 KiB",
            )
            .with("limit", SIGNIN_MAX_BODY)
            .into_response();
        }
        Err(_) => {
            return Problem::new(
                ErrorCode::InvalidInput,
                "the sign-in body did not arrive in time",
            )
            .into_response();
        }
    };
    let code = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("code").and_then(|c| c.as_str()).map(str::to_owned));
    let Some(code) = code else {
        return Problem::new(ErrorCode::InvalidInput, "send {\"code\": CODE}").into_response();
    };
    let Some(opened) = st.shared.dashboard.redeem(&code, Instant::now()) else {
        tracing::info!(
            code = "Unauthorized",
            "refused an unknown, used or expired sign-in code"
        );
        return Problem::new(
            ErrorCode::Unauthorized,
            "this sign-in code is unknown, already used or expired (codes live 60 s): run git gatos dashboard again",
        )
        .into_response();
    };
    let read_only = st.shared.service.config().read_only;
    let actor = gatos_api::Actor::Web(opened.session.id.clone());
    tracing::info!(session = %opened.session.id, "dashboard session opened");
    if !read_only {
        let gatos = st.shared.gatos.with_actor(&actor.to_string());
        let (id, minted_by) = (opened.session.id.clone(), opened.session.minted_by.clone());
        let ro = opened.session.read_only;
        let _ = tokio::task::spawn_blocking(move || {
            gatos::audit::record(
                &gatos,
                "dashboard.signin",
                &format!("web:{id}"),
                serde_json::Value::Null,
                serde_json::json!({"session": id, "read_only": ro, "minted_by": minted_by}),
                None,
            );
        })
        .await;
    }
    let mut r = json(StatusCode::OK, &session_json(&opened.session, read_only));
    let secure = st.options.tls.is_some();
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(&opened.secret, secure)) {
        r.headers_mut().insert(SET_COOKIE, v);
    }
    r
}

/// `POST /dashboard/logout`: ends the cookie's session and clears the cookie (the guard
/// has checked the cookie and the origin).
async fn logout(State(st): State<Arc<HttpState>>, req: Request) -> Response {
    if let Some(secret) = session::cookie_value(req.headers())
        && let Some(id) = st.shared.dashboard.end(&secret)
    {
        tracing::info!(session = %id, "dashboard session ended (logout)");
        st.shared.end_withdrawn_streams();
    }
    let mut r = json(StatusCode::OK, &serde_json::json!({"signed_out": true}));
    if let Ok(v) = HeaderValue::from_str(&session::clear_cookie(st.options.tls.is_some())) {
        r.headers_mut().insert(SET_COOKIE, v);
    }
    r
}

/// `GET /dashboard/session`: who the request acts for and whether it may act.
async fn whoami(State(st): State<Arc<HttpState>>, req: Request) -> Response {
    let Some(authed) = req.extensions().get::<Authed>() else {
        return Problem::new(ErrorCode::Unauthorized, "not signed in").into_response();
    };
    let daemon_ro = st.shared.service.config().read_only;
    json(
        StatusCode::OK,
        &serde_json::json!({
            "actor": authed.actor.to_string(),
            "read_only": authed.read_only || daemon_ro,
            "daemon_read_only": daemon_ro,
            "version": env!("CARGO_PKG_VERSION"),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_shell_assets_and_signin_are_open() {
        assert!(is_open(&Method::GET, "/"));
        assert!(is_open(&Method::GET, "/jobs"));
        assert!(is_open(&Method::GET, "/jobs/01J"));
        assert!(is_open(&Method::GET, "/assets/app.js"));
        assert!(is_open(&Method::POST, SIGNIN));
        assert!(!is_open(&Method::POST, LOGOUT));
        assert!(!is_open(&Method::GET, SESSION));
        assert!(!is_open(&Method::GET, "/jobs/"));
        assert!(!is_open(&Method::POST, "/jobs"));
        assert!(!is_open(&Method::GET, "/api/v1/jobs"));
    }

    #[test]
    fn the_embedded_app_has_no_inline_script() {
        let index = Assets::get("index.html").map(|f| f.data.into_owned());
        let text = String::from_utf8(index.unwrap_or_default()).unwrap_or_default();
        assert!(text.contains("<script type=\"module\" src=\"/assets/app.js\">"));
        assert!(!text.contains("<script>"), "no inline script");
        assert!(!text.contains("style=\""), "no inline style");
        let handler = text.split(" on").skip(1).any(|rest| {
            let name: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
            !name.is_empty() && rest[name.len()..].starts_with('=')
        });
        assert!(!handler, "no inline event handler");
    }
}
