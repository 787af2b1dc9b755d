//! The GraphQL face (issue #18, ADR 0044): `POST /api/v1/graphql` (and `GET` for simple
//! queries) and `GET /api/v1/graphql/schema` (the SDL), read-only, over the service.
//!
//! The routes sit behind the same guard as REST (`Host`, the bearer token, the token's
//! rate and `X-RateLimit-*`). A request is refused before it runs when its document is
//! over [`MAX_DOCUMENT`] (413), is a batch, or is a `POST` with `If-None-Match` (400; use
//! `GET`); those refusals are RFC 9457 problems, as on REST. Everything else is a GraphQL
//! answer (`200`, `application/json`), whose errors carry `extensions: {code, status,
//! ref, data}` with the taxonomy's code and one ULID per request that the daemon's log
//! line names too.
//!
//! An answer is computed on one ref state, named in `extensions.stateRefResolved` and the
//! `Gatos-State` header; `extensions.shapeRoot` digests the state, the request and the
//! data (ADR 0044 §2). Cache headers: `no-store` with errors; `immutable` with `ETag` =
//! `shapeRoot` for a `stateRef` answer whose fields depend on refs alone; otherwise
//! `no-cache` with an `ETag` that also covers the trust set, the configuration and the
//! clock when read. A `GET` whose `If-None-Match` names the answer's tag gets a 304.

pub mod cursor;
pub mod edges;
pub mod json;
pub mod schema;
pub mod shape;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, RawQuery, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse as _, Response};
use axum::routing::get;
use gatos_types::{ErrorCode, Ulid};
use serde_json::Value;

use super::HttpState;
use super::guard::Authed;
use super::problem::Problem;
use schema::{GatosSchema, RequestCtx, deps};

/// The endpoint.
pub const PATH: &str = "/api/v1/graphql";
/// The SDL.
pub const SCHEMA_PATH: &str = "/api/v1/graphql/schema";
/// The largest document (the query text) served.
pub const MAX_DOCUMENT: usize = 64 * 1024;
/// How many pages of `--max-page-bytes` the stored content (payloads, manifests) of one
/// answer may hold, over all its aliases and fragments.
pub const ANSWER_PAGES: u64 = 4;
/// The largest request body (the document and its variables).
const MAX_BODY: usize = 1024 * 1024;
/// The version tag of `shapeRoot`: changes whenever any rendering changes.
const SHAPE_VERSION: &str = "gatos-graphql/1";
const CTX_VERSION: &str = "gatos-graphql-ctx/1";

/// The face's limits (`--graphql-*`).
#[derive(Debug, Clone)]
pub struct Config {
    /// `--graphql-max-depth`.
    pub max_depth: usize,
    /// `--graphql-max-complexity`.
    pub max_complexity: usize,
    /// `--graphql-introspection`.
    pub introspection: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_depth: 12,
            max_complexity: 10_000,
            introspection: false,
        }
    }
}

/// The built schema, the cursor key and the SDL.
pub struct Face {
    schema: GatosSchema,
    codec: Arc<cursor::Codec>,
    introspection: bool,
    sdl: String,
    /// `(state, request digest, config) → shapeRoot` of immutable answers: a GET whose
    /// `If-None-Match` names it gets its 304 without executing (ADR 0044 §2).
    answered: std::sync::Mutex<Answered>,
}

/// The entries a face remembers at most.
const ANSWERED: usize = 4096;

/// A bounded map, oldest entries dropped first.
#[derive(Default)]
struct Answered {
    map: std::collections::HashMap<[u8; 32], String>,
    order: std::collections::VecDeque<[u8; 32]>,
}

impl Answered {
    fn get(&self, k: &[u8; 32]) -> Option<&String> {
        self.map.get(k)
    }

    fn put(&mut self, k: [u8; 32], root: String) {
        if self.map.insert(k, root).is_none() {
            self.order.push_back(k);
        }
        while self.order.len() > ANSWERED {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }
}

/// The `stateRef` the selected operation's `ledger` field names, before execution.
fn pinned_state(
    doc: &async_graphql::parser::types::ExecutableDocument,
    operation: Option<&str>,
    variables: &Value,
) -> Option<gatos::state::StateId> {
    use async_graphql::parser::types::Selection;
    let op = doc
        .operations
        .iter()
        .find(|(name, _)| operation.is_none() || name.map(|n| n.as_str()) == operation)?
        .1;
    op.node.selection_set.node.items.iter().find_map(|s| {
        let Selection::Field(f) = &s.node else {
            return None;
        };
        if f.node.name.node.as_str() != "ledger" {
            return None;
        }
        let value = f
            .node
            .get_argument("stateRef")?
            .node
            .clone()
            .into_const_with(|var| {
                variables
                    .get(var.as_str())
                    .and_then(|v| async_graphql::Value::from_json(v.clone()).ok())
                    .ok_or(())
            })
            .ok()?;
        match value {
            async_graphql::Value::String(t) => t.parse().ok(),
            _ => None,
        }
    })
}

/// The SDL of the schema (what `GET /api/v1/graphql/schema` serves, and
/// `docs/schema.graphql` holds).
pub fn sdl() -> String {
    schema::build(12, 10_000, true).sdl()
}

impl Face {
    fn new(c: &Config) -> Face {
        Face {
            schema: schema::build(c.max_depth, c.max_complexity, c.introspection),
            codec: Arc::new(cursor::Codec::new()),
            introspection: c.introspection,
            sdl: sdl(),
            answered: std::sync::Mutex::new(Answered::default()),
        }
    }
}

type St = (Arc<HttpState>, Arc<Face>);

/// The routes (merged before the guard layer, so they pass it).
pub fn routes(state: Arc<HttpState>) -> Router {
    let face = Arc::new(Face::new(&state.shared.limits.graphql));
    Router::new()
        .route(PATH, get(get_query).post(post_query))
        .route(SCHEMA_PATH, get(get_schema))
        .with_state((state, face))
}

async fn get_schema(State((_, face)): State<St>) -> Response {
    let mut r = Response::new(Body::from(face.sdl.clone()));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// One GraphQL request as sent.
struct Sent {
    query: String,
    operation: Option<String>,
    variables: Value,
}

fn bad(msg: impl Into<String>) -> Response {
    Problem::new(ErrorCode::InvalidInput, msg).into_response()
}

async fn post_query(
    State((st, face)): State<St>,
    Extension(authed): Extension<Authed>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if headers.contains_key(IF_NONE_MATCH) {
        return bad(
            "If-None-Match is not served on POST: send the query with GET to get a 304 when nothing changed",
        );
    }
    if !super::unary::is_json(&headers) {
        // As on REST: a body of another type is refused, not guessed at.
        return Problem::new(
            ErrorCode::InvalidInput,
            "the body must be JSON: send Content-Type: application/json",
        )
        .status(axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE)
        .into_response();
    }
    let bytes = match super::unary::read_body(
        &headers,
        body,
        MAX_BODY,
        None,
        st.shared.limits.http_body_timeout,
    )
    .await
    {
        Ok(b) => b,
        Err(p) => return p.into_response(),
    };
    let v: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => return bad(format!("the body is not JSON: {e}")),
    };
    let Value::Object(mut m) = v else {
        return bad(
            "the body must be one JSON object {query, operationName?, variables?}: batches are not served (an answer has one state)",
        );
    };
    let Some(Value::String(query)) = m.remove("query") else {
        return bad("the body has no query string");
    };
    let operation = match m.remove("operationName") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return bad("operationName must be a string"),
    };
    let variables = match m.remove("variables") {
        None | Some(Value::Null) => Value::Object(serde_json::Map::new()),
        Some(v @ Value::Object(_)) => v,
        Some(_) => return bad("variables must be an object"),
    };
    run(
        st,
        face,
        authed,
        Sent {
            query,
            operation,
            variables,
        },
        None,
    )
    .await
}

async fn get_query(
    State((st, face)): State<St>,
    Extension(authed): Extension<Authed>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let (mut query, mut operation, mut variables) = (None, None, None);
    for (k, v) in form_urlencoded::parse(q.unwrap_or_default().as_bytes()) {
        let slot = match &*k {
            "query" => &mut query,
            "operationName" => &mut operation,
            "variables" => &mut variables,
            other => return bad(format!("unknown parameter {other:?}")),
        };
        if slot.replace(v.into_owned()).is_some() {
            return bad(format!("the parameter {k} is given twice"));
        }
    }
    let Some(query) = query else {
        return bad("a GET needs ?query=");
    };
    let variables = match variables {
        None => Value::Object(serde_json::Map::new()),
        Some(t) => match serde_json::from_str::<Value>(&t) {
            Ok(v @ Value::Object(_)) => v,
            _ => return bad("variables must be a JSON object"),
        },
    };
    run(
        st,
        face,
        authed,
        Sent {
            query,
            operation,
            variables,
        },
        Some(headers),
    )
    .await
}

fn framed(h: &mut blake3::Hasher, bytes: &[u8]) {
    h.update(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
    h.update(bytes);
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

/// The first variable the operation requires (non-null, no default) that the request
/// does not give: a request error before anything runs (GraphQL, "Coercing Variable
/// Values"), not a field error with partial data. With several operations and no name,
/// async-graphql answers first (which one is meant).
fn missing_variable(
    doc: &async_graphql::parser::types::ExecutableDocument,
    operation: Option<&str>,
    variables: &Value,
) -> Option<String> {
    if operation.is_none() && doc.operations.iter().nth(1).is_some() {
        return None;
    }
    let op = doc
        .operations
        .iter()
        .find(|(name, _)| operation.is_none() || name.map(|n| n.as_str()) == operation)?
        .1;
    op.node.variable_definitions.iter().find_map(|d| {
        let d = &d.node;
        let given = variables
            .get(d.name.node.as_str())
            .is_some_and(|v| !v.is_null());
        (!d.var_type.node.nullable && d.default_value.is_none() && !given)
            .then(|| format!("${}: {}", d.name.node, d.var_type.node))
    })
}

/// Whether the document selects `__schema` or `__type` anywhere.
fn introspects(doc: &async_graphql::parser::types::ExecutableDocument) -> bool {
    use async_graphql::parser::types::{Selection, SelectionSet};
    fn walk(set: &SelectionSet) -> bool {
        set.items.iter().any(|s| match &s.node {
            Selection::Field(f) => {
                let n = f.node.name.node.as_str();
                n == "__schema" || n == "__type" || walk(&f.node.selection_set.node)
            }
            Selection::InlineFragment(i) => walk(&i.node.selection_set.node),
            Selection::FragmentSpread(_) => false,
        })
    }
    doc.operations
        .iter()
        .any(|(_, op)| walk(&op.node.selection_set.node))
        || doc
            .fragments
            .values()
            .any(|f| walk(&f.node.selection_set.node))
}

fn new_ref() -> Ulid {
    use rand::RngCore as _;
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
    let mut r = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut r);
    Ulid::from_parts(ms, u128::from_be_bytes(r) >> 48)
}

fn error_answer(
    code: ErrorCode,
    message: &str,
    data: serde_json::Map<String, Value>,
    r: Ulid,
) -> Response {
    let mut ext = serde_json::Map::new();
    ext.insert("code".into(), code.as_str().into());
    ext.insert("status".into(), code.status().into());
    ext.insert("ref".into(), r.to_string().into());
    if !data.is_empty() {
        ext.insert("data".into(), Value::Object(data));
    }
    let body = serde_json::json!({"errors": [{"message": message, "extensions": ext}]});
    json_response(body.to_string().into_bytes(), "no-store")
}

fn json_response(body: Vec<u8>, cache: &'static str) -> Response {
    let mut r = Response::new(Body::from(body));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}

async fn run(
    st: Arc<HttpState>,
    face: Arc<Face>,
    authed: Authed,
    sent: Sent,
    get_headers: Option<HeaderMap>,
) -> Response {
    let reference = new_ref();
    if sent.query.len() > MAX_DOCUMENT {
        return Problem::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "the GraphQL document is {} bytes; at most {MAX_DOCUMENT} are served",
                sent.query.len()
            ),
        )
        .with("limit", MAX_DOCUMENT)
        .into_response();
    }
    let request_digest = {
        let mut h = blake3::Hasher::new();
        framed(&mut h, sent.query.as_bytes());
        framed(&mut h, sent.operation.as_deref().unwrap_or("").as_bytes());
        framed(&mut h, &gatos_types::jcs::to_vec(&sent.variables));
        *h.finalize().as_bytes()
    };
    let variables_copy = sent.variables.clone();
    let op_name = sent.operation.clone();
    let mut req = async_graphql::Request::new(sent.query)
        .variables(async_graphql::Variables::from_json(sent.variables));
    if let Some(op) = sent.operation {
        req = req.operation_name(op);
    }
    if !face.introspection {
        req = req.disable_introspection();
    }
    match req.parsed_query() {
        Err(e) => {
            tracing::info!(r#ref = %reference, actor = %authed.actor, codes = "InvalidInput", "a GraphQL document that does not parse");
            return error_answer(
                ErrorCode::InvalidInput,
                &e.message,
                serde_json::Map::new(),
                reference,
            );
        }
        Ok(doc) if !face.introspection && introspects(doc) => {
            let mut data = serde_json::Map::new();
            data.insert("flag".into(), "--graphql-introspection".into());
            tracing::info!(r#ref = %reference, actor = %authed.actor, codes = "Forbidden", "a GraphQL introspection query refused");
            return error_answer(
                ErrorCode::Forbidden,
                "introspection is off on this daemon (start gatosd with --graphql-introspection); the SDL is served at /api/v1/graphql/schema",
                data,
                reference,
            );
        }
        Ok(doc) => {
            if let Some(var) = missing_variable(doc, op_name.as_deref(), &variables_copy) {
                tracing::info!(r#ref = %reference, actor = %authed.actor, codes = "InvalidInput", "a GraphQL request without a required variable");
                let mut data = serde_json::Map::new();
                data.insert("variable".into(), var.clone().into());
                return error_answer(
                    ErrorCode::InvalidInput,
                    &format!("the variable {var} is required and was not given"),
                    data,
                    reference,
                );
            }
        }
    }
    // A GET naming a state whose answer to this request is known immutable: its 304
    // without executing.
    let max_page = st.shared.service.config().max_page_bytes;
    let cache_key = match (&get_headers, req.parsed_query()) {
        (Some(_), Ok(doc)) => pinned_state(doc, op_name.as_deref(), &variables_copy).map(|state| {
            let mut h = blake3::Hasher::new();
            framed(&mut h, state.as_bytes());
            framed(&mut h, &request_digest);
            framed(&mut h, &max_page.to_be_bytes());
            *h.finalize().as_bytes()
        }),
        _ => None,
    };
    if let (Some(h), Some(k)) = (&get_headers, &cache_key) {
        let known = face
            .answered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(k)
            .cloned();
        if let Some(root) = known {
            let tag = format!("\"{root}\"");
            if super::unary::if_none_match(h, &tag) {
                tracing::info!(r#ref = %reference, actor = %authed.actor, "GraphQL 304 from a known immutable answer, not executed");
                let mut r = Response::new(Body::empty());
                *r.status_mut() = StatusCode::NOT_MODIFIED;
                if let Ok(v) = HeaderValue::from_str(&tag) {
                    r.headers_mut().insert(ETAG, v);
                }
                r.headers_mut().insert(
                    CACHE_CONTROL,
                    HeaderValue::from_static("private, max-age=31536000, immutable"),
                );
                return r;
            }
        }
    }
    let closed =
        |_| Problem::new(ErrorCode::Unavailable, "the daemon is shutting down").into_response();
    let _large = match st.slots.large.clone().acquire_owned().await {
        Ok(p) => p,
        Err(e) => return closed(e),
    };
    let _call = match st.calls.clone().acquire_owned().await {
        Ok(p) => p,
        Err(e) => return closed(e),
    };
    let service = st.shared.service.clone();
    let rc = Arc::new(RequestCtx {
        as_of: service.gatos().now(),
        service: service.clone(),
        codec: face.codec.clone(),
        state: std::sync::Mutex::new(None),
        deps: AtomicU8::new(0),
        budget: max_page.saturating_mul(ANSWER_PAGES),
        spent: std::sync::atomic::AtomicU64::new(0),
    });
    let req = req.data(rc.clone());
    let schema = face.schema.clone();
    let handle = tokio::runtime::Handle::current();
    let executed = tokio::task::spawn_blocking(move || handle.block_on(schema.execute(req))).await;
    let mut resp = match executed {
        Ok(r) => r,
        Err(_) => {
            return error_answer(
                ErrorCode::Internal,
                "the query failed inside the daemon",
                serde_json::Map::new(),
                reference,
            );
        }
    };
    let mut codes: Vec<&'static str> = Vec::new();
    for e in &mut resp.errors {
        let ext = e.extensions.get_or_insert_with(Default::default);
        let code = match ext.get("code") {
            Some(async_graphql::Value::String(s)) => {
                s.parse::<ErrorCode>().unwrap_or(ErrorCode::Internal)
            }
            _ => {
                // async-graphql's own: parse, validation, depth, complexity.
                ext.set("code", ErrorCode::InvalidInput.as_str());
                ext.set("status", i32::from(ErrorCode::InvalidInput.status()));
                ErrorCode::InvalidInput
            }
        };
        ext.set("ref", reference.to_string());
        codes.push(code.as_str());
    }
    let resolved = rc
        .state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let flags = rc.deps.load(Ordering::Relaxed);
    // shapeRoot: the state, the request and the data (JCS), framed.
    let mut data_jcs = Vec::with_capacity(64 * 1024);
    shape::write(&mut data_jcs, &resp.data);
    let shape = {
        let mut h = blake3::Hasher::new();
        framed(&mut h, SHAPE_VERSION.as_bytes());
        framed(
            &mut h,
            resolved
                .as_ref()
                .map_or(&[][..], |r| &r.meta.id.as_bytes()[..]),
        );
        framed(&mut h, &request_digest);
        framed(&mut h, &data_jcs);
        format!("blake3:{}", hex(h.finalize().as_bytes()))
    };
    tracing::info!(
        r#ref = %reference,
        actor = %authed.actor,
        state = %resolved.as_ref().map(|r| r.meta.id.to_string()).unwrap_or_default(),
        request_digest = %hex(&request_digest),
        codes = %codes.join(","),
        "GraphQL request"
    );
    let mut extensions = serde_json::Map::new();
    if let Some(r) = &resolved {
        extensions.insert("stateRefResolved".into(), r.meta.id.to_string().into());
    }
    extensions.insert("shapeRoot".into(), shape.clone().into());
    // The body is about as long as the canonical data: one allocation, no regrowth. It is
    // `{"data", "errors" (when there are), "extensions"}` as serde_json writes it, the data
    // by `json::write` (which writes stored canonical JSON text as it stands).
    let mut body = Vec::with_capacity(data_jcs.len() + data_jcs.len() / 8 + 1024);
    body.extend_from_slice(b"{\"data\":");
    json::write(&mut body, &resp.data);
    let mut encoded = Ok(());
    if !resp.errors.is_empty() {
        body.extend_from_slice(b",\"errors\":");
        encoded = serde_json::to_writer(&mut body, &resp.errors);
    }
    body.extend_from_slice(b",\"extensions\":");
    encoded = encoded.and_then(|()| serde_json::to_writer(&mut body, &extensions));
    body.push(b'}');
    drop(data_jcs);
    let body = match encoded {
        Ok(()) => body,
        Err(e) => {
            return error_answer(
                ErrorCode::Internal,
                &format!("encoding the answer: {e}"),
                serde_json::Map::new(),
                reference,
            );
        }
    };
    let pinned = resolved.as_ref().is_some_and(|r| r.pinned);
    let (cache, tag) = if !resp.errors.is_empty() {
        ("no-store", None)
    } else if pinned && flags == 0 {
        if let Some(k) = cache_key {
            face.answered
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .put(k, shape.clone());
        }
        ("private, max-age=31536000, immutable", Some(shape))
    } else {
        let mut h = blake3::Hasher::new();
        framed(&mut h, CTX_VERSION.as_bytes());
        framed(&mut h, shape.as_bytes());
        let trust = if flags & deps::TRUST != 0 {
            service
                .keys_list()
                .ok()
                .and_then(|k| serde_json::to_vec(&k).ok())
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        framed(&mut h, blake3::hash(&trust).as_bytes());
        framed(&mut h, &service.config().max_page_bytes.to_be_bytes());
        let clock = if flags & deps::CLOCK != 0 {
            rc.as_of.to_string()
        } else {
            String::new()
        };
        framed(&mut h, clock.as_bytes());
        (
            "private, no-cache",
            Some(format!("blake3:{}", hex(h.finalize().as_bytes()))),
        )
    };
    let tag = tag.map(|t| format!("\"{t}\""));
    if let (Some(h), Some(t)) = (&get_headers, &tag)
        && super::unary::if_none_match(h, t)
    {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        if let Ok(v) = HeaderValue::from_str(t) {
            r.headers_mut().insert(ETAG, v);
        }
        r.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static(cache));
        return r;
    }
    let mut r = json_response(body, cache);
    if let (Some(_), Some(t)) = (&get_headers, &tag)
        && let Ok(v) = HeaderValue::from_str(t)
    {
        r.headers_mut().insert(ETAG, v);
    }
    if let Some(s) = resolved
        .as_ref()
        .and_then(|r| HeaderValue::from_str(&r.meta.id.to_string()).ok())
    {
        r.headers_mut().insert("gatos-state", s);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/schema.graphql` is the schema's SDL, byte for byte (the contract of the face;
    /// `GATOS_BLESS=1` rewrites it).
    #[test]
    fn the_committed_sdl_is_the_schema() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/schema.graphql");
        let now = sdl();
        if std::env::var_os("GATOS_BLESS").is_some() {
            std::fs::write(&path, &now).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == now,
            "docs/schema.graphql differs from the schema: run GATOS_BLESS=1 cargo test -p gatosd --lib graphql"
        );
    }

    #[test]
    fn the_pinned_state_is_read_from_a_literal_or_a_variable_of_the_chosen_operation() {
        let id = format!("blake3:{}", "ab".repeat(32));
        let doc = |q: &str| async_graphql::parser::parse_query(q).unwrap();
        let none = serde_json::json!({});
        let lit = doc(&format!(
            "{{ ledger(stateRef: \"{id}\") {{ state {{ ref }} }} }}"
        ));
        assert_eq!(
            pinned_state(&lit, None, &none).map(|s| s.to_string()),
            Some(id.clone())
        );
        let var = doc(
            "query Q($s: String) { ledger(stateRef: $s) { state { ref } } } query R { node { now } }",
        );
        let vars = serde_json::json!({"s": id});
        assert_eq!(
            pinned_state(&var, Some("Q"), &vars).map(|s| s.to_string()),
            Some(id)
        );
        assert!(pinned_state(&var, Some("R"), &vars).is_none());
        assert!(pinned_state(&doc("{ ledger { state { ref } } }"), None, &none).is_none());
    }

    #[test]
    fn introspection_is_found_in_fields_fragments_and_inline_fragments() {
        let doc = |q: &str| async_graphql::parser::parse_query(q).unwrap();
        assert!(introspects(&doc("{ __schema { types { name } } }")));
        assert!(introspects(&doc(
            "{ ledger { ... on Ledger { x: __type(name: \"Job\") { name } } } }"
        )));
        assert!(introspects(&doc(
            "query { ...F } fragment F on Query { __schema { queryType { name } } }"
        )));
        assert!(!introspects(&doc(
            "{ __typename ledger { __typename state { ref } } }"
        )));
    }
}
