//! The routes of `gatos_api::routes::ROUTES`, served by one generic handler: the request's
//! members from the path, the query (coerced by the request's schema) or the JSON body;
//! the call through `Service::call` on the blocking pool as the token's actor; the answer
//! with the route's status, `Location` and `Link`. The rules (read-only mode, validation,
//! the writes' actor) are the service's; this maps.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, ETAG, HeaderValue, IF_NONE_MATCH, LINK, LOCATION,
};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter};
use gatos_api::ops::{self, Access, Op, Shape, names as n};
use gatos_api::routes::{Input, Method, ROUTES, Route};
use gatos_types::ErrorCode;
use serde_json::{Map, Value};

use super::HttpState;
use super::guard::Authed;
use super::problem::Problem;
use super::query;

/// A JSON answer with `status`.
fn json_response(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // Answers are read behind a token: no cache keeps them, but for the reads fixed by ref
    // state, which carry an ETag (`validated`).
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The routes of the table's unary operations, `gatos.health`, `gatos.ready` and the
/// OpenAPI document. Stream routes are `sse`'s.
pub fn routes(state: Arc<HttpState>) -> Router {
    let mut by_path: BTreeMap<&'static str, MethodRouter> = BTreeMap::new();
    for route in ROUTES {
        let Some(op) = ops::find(route.op) else {
            tracing::error!(op = route.op, "a route names no operation; not served");
            continue;
        };
        let filter = match route.method {
            Method::Get => MethodFilter::GET,
            Method::Post => MethodFilter::POST,
            Method::Put => MethodFilter::PUT,
            Method::Delete => MethodFilter::DELETE,
        };
        let st = state.clone();
        let handler = match (op.shape, op.name) {
            // Server-sent events are served by `sse::routes`.
            _ if route.stream => continue,
            (Shape::Unary, _) => {
                let schema =
                    Arc::new(serde_json::to_value(op.request_schema()).unwrap_or_default());
                let h = move |req: Request| {
                    let (st, schema) = (st.clone(), schema.clone());
                    async move {
                        match unary(&st, route, op, &schema, req).await {
                            Ok(r) => r,
                            Err(p) => p.into_response(),
                        }
                    }
                };
                MethodRouter::new().on(filter, h)
            }
            (Shape::Face, n::GATOS_HEALTH) => MethodRouter::new().on(filter, move || {
                let st = st.clone();
                async move {
                    match crate::methods::gatos::health_of(&st.shared).await {
                        Ok(h) => match serde_json::to_vec(&h) {
                            Ok(b) => json_response(StatusCode::OK, b),
                            Err(e) => {
                                Problem::new(ErrorCode::Internal, e.to_string()).into_response()
                            }
                        },
                        Err(e) => Problem::from_error(&e).into_response(),
                    }
                }
            }),
            (Shape::Face, n::GATOS_READY) => MethodRouter::new().on(filter, move || {
                let st = st.clone();
                async move { ready(&st).await }
            }),
            _ => {
                tracing::debug!(op = op.name, "a route of the face's own is not served yet");
                continue;
            }
        };
        let merged = match by_path.remove(route.path) {
            Some(existing) => existing.merge(handler),
            None => handler,
        };
        by_path.insert(route.path, merged);
    }
    let mut router = Router::new();
    for (path, mr) in by_path {
        router = router.route(path, mr);
    }
    let doc = Arc::new(gatos_api::openapi::render());
    router.route(
        "/api/v1/openapi.json",
        axum::routing::get(move || {
            let doc = doc.clone();
            async move {
                match doc.as_ref() {
                    Ok(text) => json_response(StatusCode::OK, text.clone()),
                    Err(e) => Problem::new(ErrorCode::Internal, e.to_string()).into_response(),
                }
            }
        }),
    )
}

/// `GET /readyz` (`gatos.ready`): 200 with the `ReadyResult` when the node should get
/// requests, else 503 `Unavailable` whose `data` is the `ReadyResult` (a probe reads the
/// status; a person reads why).
async fn ready(st: &Arc<HttpState>) -> Response {
    let r = match crate::methods::gatos::ready_of(&st.shared, false).await {
        Ok(r) => r,
        Err(e) => return Problem::from_error(&e).into_response(),
    };
    let value = match serde_json::to_value(&r) {
        Ok(v) => v,
        Err(e) => return Problem::new(ErrorCode::Internal, e.to_string()).into_response(),
    };
    if r.ready {
        return json_response(StatusCode::OK, value.to_string());
    }
    let mut p = Problem::new(
        ErrorCode::Unavailable,
        "the node is not ready: see data (repository_readable, shutting_down)",
    );
    if let Value::Object(m) = value {
        p.data = m;
    }
    p.into_response()
}

/// The `{name}` segments of the route's template and their percent-decoded values in
/// `path` (the router matched them, so the segments line up).
fn path_fields(route: &'static Route, path: &str) -> Result<Vec<(&'static str, String)>, Problem> {
    let mut out = Vec::new();
    for (t, seg) in route.path.split('/').zip(path.split('/')) {
        if let Some(name) = t.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let value = percent_encoding::percent_decode_str(seg)
                .decode_utf8()
                .map_err(|_| {
                    Problem::new(
                        ErrorCode::InvalidInput,
                        format!("the path's {name} is not UTF-8"),
                    )
                    .with("field", name)
                })?;
            out.push((name, value.into_owned()));
        }
    }
    Ok(out)
}

/// Whether a `Content-Type` is JSON (`application/json` or `…+json`).
pub(super) fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|m| {
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        })
}

/// Reads a body of at most `limit` bytes; larger is `PayloadTooLarge` (refused from its
/// `Content-Length` before a byte is read when it has one).
pub(super) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    flag: Option<&str>,
    deadline: std::time::Duration,
) -> Result<axum::body::Bytes, Problem> {
    let too_large = || {
        Problem::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "the request body is larger than the limit of {limit} bytes{}",
                flag.map(|f| format!(" ({f})")).unwrap_or_default()
            ),
        )
        .with("limit", limit)
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let Ok(read) = tokio::time::timeout(deadline, axum::body::to_bytes(body, limit)).await else {
        tracing::info!(
            code = "InvalidInput",
            "an HTTP request body did not arrive in time"
        );
        return Err(Problem::new(
            ErrorCode::InvalidInput,
            format!(
                "the request body did not arrive within {} s of its headers",
                deadline.as_secs_f64()
            ),
        )
        .header(
            axum::http::header::CONNECTION,
            HeaderValue::from_static("close"),
        ));
    };
    read.map_err(|e| {
        if e.to_string().contains("length limit") {
            too_large()
        } else {
            Problem::new(
                ErrorCode::InvalidInput,
                format!("the request body could not be read: {e}"),
            )
        }
    })
}

/// The `Link` of the next page: the same path and query, the cursor parameter (and its
/// `_seq`/`_time` variants) replaced by the answer's cursor.
fn next_link(path: &str, query: Option<&str>, param: &str, cursor: &str) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let is_cursor = k == param || k.strip_prefix(param).is_some_and(|r| r.starts_with('_'));
        if !is_cursor {
            q.append_pair(&k, &v);
        }
    }
    q.append_pair(param, cursor);
    format!("<{path}?{}>; rel=\"next\"", q.finish())
}

async fn unary(
    st: &Arc<HttpState>,
    route: &'static Route,
    op: &'static Op,
    schema: &Value,
    req: Request,
) -> Result<Response, Problem> {
    let authed = req
        .extensions()
        .get::<Authed>()
        .cloned()
        .ok_or_else(|| Problem::new(ErrorCode::Unauthorized, "this route needs a token"))?;
    if authed.read_only && op.access == Access::Write {
        return Err(Problem::new(
            ErrorCode::Forbidden,
            format!(
                "{} writes, and the token of {} may only read (it is marked ro in the token file)",
                op.name, authed.actor
            ),
        )
        .with("token_read_only", true));
    }
    // A creating route's Idempotency-Key (ADR 0041); elsewhere the header is ignored.
    let idem_key = super::idem::key(route, req.headers())?;
    let (parts, body) = req.into_parts();
    let mut params = Map::new();
    for (name, raw) in path_fields(route, parts.uri.path())? {
        params.insert(name.to_owned(), query::field(name, &raw, schema));
    }
    let repeated = |k: &str| {
        Problem::new(
            ErrorCode::InvalidInput,
            format!("{k} is given by the path; do not repeat it"),
        )
        .with("field", k)
    };
    match route.input {
        Input::Query => {
            for (k, v) in query::fields(parts.uri.query().unwrap_or(""), schema) {
                if params.contains_key(&k) {
                    return Err(repeated(&k));
                }
                params.insert(k, v);
            }
        }
        Input::Body => {
            if parts.uri.query().is_some_and(|q| !q.is_empty()) {
                return Err(Problem::new(
                    ErrorCode::InvalidInput,
                    format!(
                        "{} {} takes its members in a JSON body, not in the query",
                        route.method.as_str(),
                        route.path
                    ),
                ));
            }
            let limits = &st.shared.limits;
            let bytes = read_body(
                &parts.headers,
                body,
                limits.max_line,
                Some("--max-line"),
                limits.http_body_timeout,
            )
            .await?;
            if !bytes.is_empty() {
                if !is_json(&parts.headers) {
                    return Err(Problem::new(
                        ErrorCode::InvalidInput,
                        "the body must be JSON: send Content-Type: application/json",
                    )
                    .status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
                }
                let text = std::str::from_utf8(&bytes)
                    .map_err(|_| Problem::new(ErrorCode::InvalidInput, "the body is not UTF-8"))?;
                let value = gatos_types::jcs::parse_str(text).map_err(|e| {
                    Problem::new(
                        ErrorCode::InvalidInput,
                        format!("the body is not valid JSON: {e}"),
                    )
                })?;
                let Value::Object(members) = value else {
                    return Err(Problem::new(
                        ErrorCode::InvalidInput,
                        "the body must be a JSON object of the request's members",
                    ));
                };
                for (k, v) in members {
                    if params.contains_key(&k) {
                        return Err(repeated(&k));
                    }
                    params.insert(k, v);
                }
            }
        }
    }
    // A call that waits (up to 30 s) takes a slot of its own pool (and one of its token's
    // few), so waiting calls never hold the slots other clients' reads and writes need
    // (nor the large-answer slots: its answer is one piece); another call with a large
    // answer also takes one of the few large-answer slots (ADR 0038).
    let closed = |_| Problem::new(ErrorCode::Unavailable, "the daemon is shutting down");
    let waiting = super::limit::waits(&params);
    let _large = match op.large && !waiting {
        true => Some(
            st.slots
                .large
                .clone()
                .acquire_owned()
                .await
                .map_err(closed)?,
        ),
        false => None,
    };
    let _permits = match waiting {
        true => {
            let (own, pool) = st
                .slots
                .wait_slot(&authed.actor.to_string())
                .await
                .map_err(closed)?;
            (Some(own), pool)
        }
        false => (
            None,
            st.calls.clone().acquire_owned().await.map_err(closed)?,
        ),
    };
    // A read fixed by ref state (ADR 0042): its tag first, from the refs as they stand
    // before the call, so an answer is never older than its tag. A tag that cannot be
    // computed (params that do not fit) leaves the call to answer the error.
    let tag = match op.cache {
        ops::Cache::State => {
            let (service, p) = (st.shared.service.clone(), params.clone());
            tokio::task::spawn_blocking(move || service.state_tag(op.name, &p))
                .await
                .ok()
                .and_then(Result::ok)
                .flatten()
                .map(|t| format!("\"{t}\""))
        }
        ops::Cache::No => None,
    };
    // Only a tag the client holds answers 304 before the call; `*` ("any current
    // representation", RFC 9110 §13.1.2) only once the call says there is one, so that an
    // error or a missing resource is never hidden behind a 304.
    if let Some(t) = &tag
        && names_tag(&parts.headers, t)
    {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        validated(&mut r, t);
        return Ok(r);
    }
    let service = st.shared.service.clone();
    let gatos_dir = st.shared.gatos.gatos_dir();
    let actor = authed.actor.clone();
    let name = op.name;
    tracing::debug!(op = name, actor = %actor, "HTTP call");
    // A quick operation without an idempotency key (whose store may wait) is first tried
    // here, where waiting is refused, as on the JSON-RPC socket (ADR 0046, sessions 6 and
    // 15: a publish behind its topic's group commit parks, and is awaited here).
    let now = match idem_key {
        None => {
            service
                .call_now_or_park(&actor, name, &params)
                .settled()
                .await
        }
        Some(_) => None,
    };
    if let Some(r) = now {
        return finish(
            st,
            route,
            &parts,
            tag.as_deref(),
            r.map_err(Problem::from_call)?,
        );
    }
    let call = move || {
        super::idem::call(
            &service,
            &gatos_dir,
            route,
            &actor,
            name,
            params,
            idem_key.as_deref(),
        )
    };
    let answer = match tokio::task::spawn_blocking(call).await {
        Ok(Ok(super::idem::Answered::Ran(a))) => a,
        Ok(Ok(super::idem::Answered::Replayed(done))) => return Ok(replayed(done)),
        Ok(Err(p)) => return Err(p),
        Err(e) => {
            tracing::error!(error = %e, "a request task failed");
            return Err(Problem::new(
                ErrorCode::Internal,
                "the request failed inside the daemon",
            ));
        }
    };
    finish(st, route, &parts, tag.as_deref(), answer)
}

/// Wakes the followers of what the call wrote and makes its answer the response.
fn finish(
    st: &HttpState,
    route: &Route,
    parts: &axum::http::request::Parts,
    tag: Option<&str>,
    answer: gatos_api::Answer,
) -> Result<Response, Problem> {
    let uri = &parts.uri;
    for t in &answer.touched {
        st.shared.watchers.poke(t);
    }
    let value: Value = serde_json::from_str(answer.result.get()).unwrap_or(Value::Null);
    let status = StatusCode::from_u16(route.status(&value)).unwrap_or(StatusCode::OK);
    if status == StatusCode::NO_CONTENT {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = status;
        return Ok(r);
    }
    let mut r = json_response(status, answer.result.get().to_owned());
    if let Some(loc) = route
        .location(&value)
        .and_then(|l| HeaderValue::from_str(&l).ok())
    {
        r.headers_mut().insert(LOCATION, loc);
    }
    if let Some(page) = route.page
        && let Some(cursor) = page.next_cursor(&value)
        && let Ok(link) =
            HeaderValue::from_str(&next_link(uri.path(), uri.query(), page.param, &cursor))
    {
        r.headers_mut().insert(LINK, link);
    }
    // An answer the service says is not fixed by the refs (one that names damage, ADR
    // 0047) carries no tag, so no cache keeps it.
    if let Some(t) = tag
        && status == StatusCode::OK
        && !answer.unfixed
    {
        if if_none_match(&parts.headers, t) {
            // `*`: the resource exists, and the client asked only for a change.
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            validated(&mut r, t);
            return Ok(r);
        }
        validated(&mut r, t);
    }
    Ok(r)
}

/// An answer with its state tag: `ETag` and `Cache-Control: private, no-cache` (a cache
/// may keep it, and asks again with `If-None-Match` before each use).
fn validated(r: &mut Response, tag: &str) {
    if let Ok(v) = HeaderValue::from_str(tag) {
        r.headers_mut().insert(ETAG, v);
        r.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    }
}

/// Whether `If-None-Match` names `tag` itself (not `*`): weak comparison.
fn names_tag(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t.strip_prefix("W/").unwrap_or(t) == tag)
}

/// Whether `If-None-Match` names `tag` (quoted) or is `*`: weak comparison, as RFC 9110
/// §13.1.2 says for this header (`W/"x"` matches `"x"`). Several headers, lists, and
/// garbage (which matches nothing) are all read.
pub(super) fn if_none_match(headers: &HeaderMap, tag: &str) -> bool {
    names_tag(headers, tag) || names_tag(headers, "*")
}

/// The first answer of an `Idempotency-Key`, again, marked `Idempotent-Replayed: true`.
fn replayed(done: gatos::idempotency::Done) -> Response {
    let status = StatusCode::from_u16(done.status).unwrap_or(StatusCode::OK);
    let mut r = if status == StatusCode::NO_CONTENT {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = status;
        r
    } else {
        json_response(status, done.answer)
    };
    if let Some(loc) = done.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        r.headers_mut().insert(LOCATION, loc);
    }
    r.headers_mut()
        .insert(super::idem::REPLAYED, HeaderValue::from_static("true"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_link_replaces_every_form_of_the_cursor() {
        assert_eq!(
            next_link(
                "/api/v1/topics/t/messages",
                Some("since_seq=0&limit=2"),
                "since",
                "01J"
            ),
            "</api/v1/topics/t/messages?limit=2&since=01J>; rel=\"next\""
        );
        assert_eq!(
            next_link("/api/v1/jobs", Some("cursor=A&queue=b%20c"), "cursor", "B"),
            "</api/v1/jobs?queue=b+c&cursor=B>; rel=\"next\""
        );
        assert_eq!(
            next_link("/api/v1/audit", None, "since", "X"),
            "</api/v1/audit?since=X>; rel=\"next\""
        );
    }

    #[test]
    fn if_none_match_lists_weak_tags_and_star() {
        let h = |v: &'static str| {
            let mut m = HeaderMap::new();
            m.insert(IF_NONE_MATCH, HeaderValue::from_static(v));
            if_none_match(&m, "\"g1-a\"")
        };
        assert!(h("\"g1-a\""));
        assert!(h("W/\"g1-a\""));
        assert!(h("\"x\", \"g1-a\""));
        assert!(h("*"));
        assert!(!h("\"g1-b\""));
        assert!(!h("g1-a"));
        assert!(!h("garbage,,,"));
        assert!(!if_none_match(&HeaderMap::new(), "\"g1-a\""));
    }

    #[test]
    fn json_media_types_are_recognised() {
        let h = |v: &'static str| {
            let mut m = HeaderMap::new();
            m.insert(CONTENT_TYPE, HeaderValue::from_static(v));
            is_json(&m)
        };
        assert!(h("application/json"));
        assert!(h("Application/JSON; charset=utf-8"));
        assert!(h("application/merge-patch+json"));
        assert!(!h("text/plain"));
        assert!(!h("application/x-www-form-urlencoded"));
        assert!(!is_json(&HeaderMap::new()));
    }
}
