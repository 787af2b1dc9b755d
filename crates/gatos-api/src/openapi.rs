//! The HTTP face's OpenAPI 3.1 document, built from [`OPS`](crate::ops::OPS) and
//! [`ROUTES`] (ADR 0033): the same table serves the routes and describes them, so the two
//! cannot differ. `gatosd generate openapi` prints [`render`]; `docs/openapi.json` is its
//! committed output, kept equal by a test.
//!
//! OpenAPI 3.1's Schema Object is JSON Schema 2020-12, what schemars generates: every
//! request and response type is generated into one of two generators (requests as they are
//! read, responses as they are written) whose named types go to `components/schemas`.
//! Path and query members are cut from the request's schema and become parameters with
//! their own schemas; the rest is the JSON body.

use serde_json::{Map, Value, json};

use crate::ops::{self, Access, Cache, Op, Shape};
use crate::routes::{FACE_ROUTES, Idempotency, Input, Method, ROUTES, Route, Success};

/// The `type` of every problem (RFC 9457) a face answers: this prefix and the code
/// (`urn:gatos:error:QueueFull`). A URN: stable, and nothing to fetch.
pub const PROBLEM_TYPE_PREFIX: &str = "urn:gatos:error:";

/// The media type of a problem.
pub const PROBLEM_MEDIA_TYPE: &str = "application/problem+json";

const SCHEMAS: &str = "/components/schemas";
const SCHEMA_REF: &str = "#/components/schemas/";

/// What keeps the document from being built: a wiring mistake in the tables, which the
/// tests catch before a release.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A route names no operation of the table.
    #[error("the route {method} {path} names {op}, which is not an operation")]
    UnknownOperation {
        /// The route's method.
        method: &'static str,
        /// The route's path.
        path: &'static str,
        /// The name it gives.
        op: &'static str,
    },
    /// A request's schema is not an object with properties.
    #[error("{op}'s request schema is not an object of named members")]
    NotAnObject {
        /// The operation.
        op: &'static str,
    },
    /// A path field is not a member of the request.
    #[error("{op}'s route has the path field {field}, which its request does not have")]
    NoSuchField {
        /// The operation.
        op: &'static str,
        /// The field.
        field: &'static str,
    },
    /// Two types generate different schemas under one name.
    #[error("two different schemas are named {0}")]
    SchemaClash(String),
}

impl gatos_types::Coded for Error {
    fn code(&self) -> gatos_types::ErrorCode {
        gatos_types::ErrorCode::Internal
    }
}

/// The problem `type` of a code.
pub fn problem_type(code: gatos_types::ErrorCode) -> String {
    format!("{PROBLEM_TYPE_PREFIX}{code}")
}

/// The document, as JSON text: pretty-printed, ending with a newline (what
/// `docs/openapi.json` holds).
///
/// # Errors
/// A wiring mistake in the tables ([`Error`]).
pub fn render() -> Result<String, Error> {
    let doc = document()?;
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    text.push('\n');
    Ok(text)
}

/// The document.
///
/// # Errors
/// A wiring mistake in the tables ([`Error`]).
pub fn document() -> Result<Value, Error> {
    let mut requests = ops::request_generator(SCHEMAS);
    let mut responses = ops::response_generator(SCHEMAS);
    let mut paths = Map::new();
    for route in ROUTES {
        let op = ops::find(route.op).ok_or(Error::UnknownOperation {
            method: route.method.as_str(),
            path: route.path,
            op: route.op,
        })?;
        let item = operation(route, op, &mut requests, &mut responses)?;
        insert_path(&mut paths, route.path, route.method.openapi_key(), item);
    }
    for face in FACE_ROUTES {
        let mut item = json!({
            "operationId": face.path.trim_start_matches('/').replace(['/', '.'], "_"),
            "summary": face.summary,
            "tags": ["face"],
            "responses": {
                "default": {"$ref": "#/components/responses/Problem"},
            },
        });
        let params: Vec<Value> = face
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|x| x.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if !params.is_empty() {
            item["parameters"] = Value::Array(params);
        }
        if face.path.ends_with("/follows") {
            item["requestBody"] = follow_request();
        }
        // An ending answers with no body.
        let ok = if matches!(face.method, Method::Delete) {
            ("204", json!({"description": "Done; no body."}))
        } else {
            ("200", face_answer(face.path))
        };
        item["responses"][ok.0] = ok.1;
        if face.auth {
            item["responses"]["429"] = json!({"$ref": "#/components/responses/TooManyRequests"});
        } else {
            item["security"] = json!([]);
        }
        insert_path(&mut paths, face.path, face.method.openapi_key(), item);
    }
    let code = responses.subschema_for::<gatos_types::ErrorCode>();
    let mut schemas = requests.take_definitions(true);
    for (name, schema) in responses.take_definitions(true) {
        match schemas.get(&name) {
            Some(have) if *have != schema => return Err(Error::SchemaClash(name)),
            Some(_) => {}
            None => {
                schemas.insert(name, schema);
            }
        }
    }
    if schemas.contains_key("Problem") {
        return Err(Error::SchemaClash("Problem".into()));
    }
    schemas.insert("Problem".into(), problem_schema(code));
    let paths = Value::Object(paths);
    keep_referenced(&mut schemas, &paths);
    Ok(json!({
        "openapi": "3.1.0",
        "info": {
            "title": "gatos",
            "version": env!("CARGO_PKG_VERSION"),
            "summary": "A Git-native ledger: messages, consumer checkpoints, jobs and manifests.",
            "description": "gatosd's HTTP face (ADR 0033): every route under /api/v1 is an \
                operation of the service's table, as JSON-RPC's methods are. Requests are the \
                operations' request types (path and query fields named as their members, the \
                rest as a JSON body); answers are their responses. Errors are RFC 9457 problems \
                (application/problem+json) whose code is the error taxonomy's and whose status \
                is its HTTP status. Every route but /healthz needs a bearer token.",
            "license": {"name": "MIT OR Apache-2.0", "identifier": "MIT OR Apache-2.0"},
        },
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": {
                "Problem": {
                    "description": "An error: the taxonomy's code and its HTTP status, the \
                        message as detail, the error's facts as data (RFC 9457).",
                    "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": format!("{SCHEMA_REF}Problem")}}},
                },
                "TooManyRequests": {
                    "description": "Refused for now, nothing done: RateLimited (the \
                        token's rate, ADR 0038), QueueFull (a queue's admission cap) or \
                        TooManySubscriptions (streams). Retry after \
                        Retry-After seconds where it is given.",
                    "headers": {
                        "Retry-After": {"$ref": "#/components/headers/RetryAfter"},
                        "X-RateLimit-Limit": {"$ref": "#/components/headers/XRateLimitLimit"},
                        "X-RateLimit-Remaining": {"$ref": "#/components/headers/XRateLimitRemaining"},
                    },
                    "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": format!("{SCHEMA_REF}Problem")}}},
                },
            },
            "headers": {
                "RetryAfter": {
                    "description": "Whole seconds to wait before trying again (at least 1).",
                    "schema": {"type": "integer", "minimum": 1},
                },
                "XRateLimitLimit": {
                    "description": "The token's burst: the most requests it may send at \
                        once (sent on every answer to a token while rates are limited: \
                        --http-rate, ADR 0038).",
                    "schema": {"type": "integer", "minimum": 1},
                },
                "XRateLimitRemaining": {
                    "description": "The requests the token may still send at once, now.",
                    "schema": {"type": "integer", "minimum": 0},
                },
            },
            "parameters": {
                "IdempotencyKey": {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": false,
                    "description": "Makes a retry of this request safe (ADR 0041): 1 to 255 \
                        visible ASCII characters, scoped to the token's actor. The same key \
                        and request (operation, path and body) give the first answer again \
                        (status, body, Location) with Idempotent-Replayed: true; another \
                        request with the key is 409 Conflict (data.idempotency_key), and so \
                        is a retry while the first is still running (data.in_progress) or \
                        cut off by a restart (data.outcome: unknown). Only successes are \
                        kept, for 24 h, on this node: a retry sent to another node acts \
                        again (a publish's headers.msg_id is deduplicated everywhere).",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                },
                "IfNoneMatch": {
                    "name": "If-None-Match",
                    "in": "header",
                    "required": false,
                    "description": "A conditional read (ADR 0042): ETags of earlier answers \
                        (a list; W/ tags compare as strong ones; * matches any). While the refs \
                        the tag was made from stand, the answer is 304 Not Modified with the \
                        ETag and no body, and the read does not run. Anything else, garbage \
                        included, gets the full answer.",
                    "schema": {"type": "string"},
                },
                "LastEventId": {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "required": false,
                    "description": "The id of the last event received: the stream resumes \
                        right after it (it wins over the query's cursor).",
                    "schema": {"type": "string"},
                },
            },
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token of gatosd's token file.",
                },
            },
        },
    }))
}

fn insert_path(paths: &mut Map<String, Value>, path: &str, method: &str, item: Value) {
    let entry = paths
        .entry(path.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(o) = entry.as_object_mut() {
        o.insert(method.to_owned(), item);
    }
}

/// The OpenAPI operation of a route.
fn operation(
    route: &Route,
    op: &Op,
    requests: &mut schemars::SchemaGenerator,
    responses: &mut schemars::SchemaGenerator,
) -> Result<Value, Error> {
    let request = (op.request)(requests).to_value();
    let object = resolve(&request, requests.definitions())
        .filter(|o| o.get("type") == Some(&json!("object")))
        .cloned()
        .ok_or(Error::NotAnObject { op: op.name })?;
    let properties = object
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let required: Vec<&str> = object
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();

    let mut parameters = Vec::new();
    let path_fields: Vec<&str> = route.path_fields().collect();
    for field in &path_fields {
        let Some(schema) = properties.get(*field) else {
            return Err(Error::NoSuchField { op: op.name, field });
        };
        parameters.push(parameter(field, "path", true, schema));
    }
    let mut body = None;
    match route.input {
        Input::Query => {
            for (name, schema) in &properties {
                if !path_fields.contains(&name.as_str()) {
                    let need = required.contains(&name.as_str());
                    parameters.push(parameter(name, "query", need, schema));
                }
            }
        }
        Input::Body => {
            let rest: Map<String, Value> = properties
                .iter()
                .filter(|(k, _)| !path_fields.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let rest_required: Vec<&str> = required
                .iter()
                .copied()
                .filter(|k| !path_fields.contains(k))
                .collect();
            if !rest.is_empty() {
                let schema = if path_fields.is_empty() {
                    request.clone()
                } else {
                    let mut cut = object.clone();
                    cut.insert("properties".into(), Value::Object(rest));
                    if rest_required.is_empty() {
                        cut.remove("required");
                    } else {
                        cut.insert("required".into(), json!(rest_required));
                    }
                    Value::Object(cut)
                };
                body = Some(json!({
                    "required": !rest_required.is_empty(),
                    "description": "A JSON object; an empty body is {} when no member is required.",
                    "content": {"application/json": {"schema": schema}},
                }));
            }
        }
    }
    if route.idempotency != Idempotency::None {
        parameters.push(json!({"$ref": "#/components/parameters/IdempotencyKey"}));
    }
    let validated = op.cache == Cache::State;
    if validated {
        parameters.push(json!({"$ref": "#/components/parameters/IfNoneMatch"}));
    }
    if route.stream {
        parameters.push(json!({"$ref": "#/components/parameters/LastEventId"}));
    }

    let mut answers = Map::new();
    if route.stream {
        answers.insert(
            "200".into(),
            json!({
                "description": stream_description(op),
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            }),
        );
    } else {
        let mut response = (op.response)(responses).to_value();
        if route.success == Success::OkOrNoContent {
            // A null answer is the 204; a 200 always has the value.
            response = non_null(response);
        }
        for status in route.success.statuses() {
            let answer = match *status {
                204 => json!({"description": "Nothing to answer: no body."}),
                _ => {
                    let mut headers = Map::new();
                    if *status == 201 && route.location.is_some() {
                        headers.insert(
                            "Location".into(),
                            json!({
                                "description": "Where the new thing is read.",
                                "schema": {"type": "string"},
                            }),
                        );
                    }
                    if route.idempotency != Idempotency::None {
                        headers.insert(
                            "Idempotent-Replayed".into(),
                            json!({
                                "description": "true when this is the first answer of the \
                                    request's Idempotency-Key, given again.",
                                "schema": {"type": "string", "enum": ["true"]},
                            }),
                        );
                    }
                    if *status == 200 && route.page.is_some() {
                        headers.insert(
                            "Link".into(),
                            json!({
                                "description": "The next page: <…>; rel=\"next\" (RFC 8288), \
                                    while there is one.",
                                "schema": {"type": "string"},
                            }),
                        );
                    }
                    rate_headers(&mut headers);
                    if validated {
                        headers.insert(
                            "ETag".into(),
                            json!({
                                "description": "\"g1-…\": a strong validator of the refs \
                                    that fix the answer, computed before the read (so the \
                                    answer is never older than it); send it as If-None-Match. \
                                    Such answers are Cache-Control: private, no-cache; all \
                                    others no-store.",
                                "schema": {"type": "string"},
                            }),
                        );
                    }
                    let mut a = json!({
                        "description": success_description(*status),
                        "content": {"application/json": {"schema": response.clone()}},
                    });
                    if !headers.is_empty() {
                        a["headers"] = Value::Object(headers);
                    }
                    a
                }
            };
            answers.insert(status.to_string(), answer);
        }
        if validated {
            answers.insert(
                "304".into(),
                json!({
                    "description": "Not modified: the If-None-Match validator is current; \
                        no body, and the read did not run.",
                    "headers": {"ETag": {
                        "description": "The current validator (the one matched).",
                        "schema": {"type": "string"},
                    }},
                }),
            );
        }
    }
    answers.insert(
        "429".into(),
        json!({"$ref": "#/components/responses/TooManyRequests"}),
    );
    answers.insert(
        "default".into(),
        json!({"$ref": "#/components/responses/Problem"}),
    );

    let plane = op.name.split('.').next().unwrap_or(op.name);
    let mut item = json!({
        "operationId": op.name,
        "summary": op.summary,
        "description": access_description(op),
        "tags": [plane],
        "responses": answers,
    });
    if !parameters.is_empty() {
        item["parameters"] = Value::Array(parameters);
    }
    if let Some(body) = body {
        item["requestBody"] = body;
    }
    Ok(item)
}

/// The rate headers every answer to a token carries while rates are limited.
fn rate_headers(headers: &mut Map<String, Value>) {
    headers.insert(
        "X-RateLimit-Limit".into(),
        json!({"$ref": "#/components/headers/XRateLimitLimit"}),
    );
    headers.insert(
        "X-RateLimit-Remaining".into(),
        json!({"$ref": "#/components/headers/XRateLimitRemaining"}),
    );
}

/// The object a `$ref` into the components names, or the schema itself.
fn resolve<'a>(schema: &'a Value, defs: &'a Map<String, Value>) -> Option<&'a Map<String, Value>> {
    match schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix(SCHEMA_REF))
    {
        Some(name) => defs.get(name)?.as_object(),
        None => schema.as_object(),
    }
}

/// A path or query parameter from a request member's schema: its description moves to the
/// parameter, and `null` (what an optional member may be in a body) is dropped, since a
/// parameter is either there or not.
fn parameter(name: &str, at: &str, required: bool, member: &Value) -> Value {
    let mut schema = member.as_object().cloned().unwrap_or_default();
    let description = schema.remove("description");
    if schema.get("default") == Some(&Value::Null) {
        schema.remove("default");
    }
    let schema = non_null(Value::Object(schema));
    let mut p = json!({"name": name, "in": at, "required": required, "schema": schema});
    if let Some(d) = description {
        p["description"] = d;
    }
    if schema_is_array(&p["schema"]) {
        p["style"] = json!("form");
        p["explode"] = json!(true);
    }
    p
}

fn schema_is_array(schema: &Value) -> bool {
    schema.get("type") == Some(&json!("array"))
}

/// A schema without its `null` alternative.
fn non_null(mut schema: Value) -> Value {
    let Some(o) = schema.as_object_mut() else {
        return schema;
    };
    if let Some(Value::Array(types)) = o.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let only = types.remove(0);
            o.insert("type".into(), only);
        }
    }
    for key in ["anyOf", "oneOf"] {
        let Some(Value::Array(alts)) = o.get_mut(key) else {
            continue;
        };
        alts.retain(|a| a != &json!({"type": "null"}));
        if alts.len() == 1 {
            let only = alts.remove(0);
            o.remove(key);
            if let Value::Object(inner) = only {
                for (k, v) in inner {
                    o.entry(k).or_insert(v);
                }
            }
        }
    }
    schema
}

fn success_description(status: u16) -> &'static str {
    match status {
        201 => "Created: the operation's answer.",
        _ => "The operation's answer.",
    }
}

fn access_description(op: &Op) -> String {
    let mut s = String::from(match op.access {
        Access::Read => "Reads.",
        Access::Write => "Writes (refused with 403 Forbidden on a read-only node).",
    });
    if op.privileged {
        s.push_str(" Audited on gatos.audit.");
    }
    s.push_str(&format!(
        " The operation {} of the service's table.",
        op.name
    ));
    s
}

fn stream_description(op: &Op) -> String {
    if op.name == ops::names::JOBS_FOLLOW {
        return "Server-sent events, after a first `retry:` field: `state` (the job as \
                jobs.get returns it), `job` (this job's events of gatos.jobs), `log` (log \
                chunks as jobs.logs returns them, attempt by attempt, unless logs=false), \
                then `end` (the final job, with its end reason) and the stream closes; \
                `lagged` and `shutdown` with next_since; comments as keep-alives. Each id \
                is the cursor `<gatos.jobs ULID or 0>.<attempt>.<stdout offset>.<stderr \
                offset>`: reconnect with Last-Event-ID to resume both halves exactly (ADR \
                0039)."
            .to_owned();
    }
    let events = match op.shape {
        Shape::Stream if op.name == ops::names::JOBS_WATCH => {
            "first `stream` ({stream}: the name that POST \
             /api/v1/events/jobs/{stream}/follows takes) and `changed` (the node's \
             fingerprints: claims, sync, topics, groups, manifests, keys, audit, \
             maintenance; again whenever one moves), then `job` events (the job events of \
             gatos.jobs, each with its message's ulid as the id) and `follow` events \
             ({follow, event, id, data}: the follows started on this stream, without an id \
             of their own)"
        }
        _ => "`message` events (each message as messages.read returns it, its ULID as the id)",
    };
    format!(
        "Server-sent events, after a first `retry:` field: {events}; `gap` \
         ({{from_seq, to_seq}}) when history was pruned; `lagged` (then the stream ends) when \
         the client fell too far behind, and `shutdown` when the daemon stops, each with \
         next_since, the id to resume from; comments as keep-alives. Reconnect with \
         Last-Event-ID to resume exactly (ADR 0037)."
    )
}

/// The body of `POST /api/v1/events/jobs/{stream}/follows`: a job's fields of
/// `jobs.follow`, or a topic's of `messages.subscribe`.
fn follow_request() -> Value {
    let text = json!({"type": "string"});
    json!({
        "required": true,
        "content": {"application/json": {"schema": {"oneOf": [
            {
                "type": "object",
                "description": "Follow a job, as GET /api/v1/jobs/{id}/stream.",
                "properties": {"job": text, "since": text, "logs": {"type": "boolean"}},
                "required": ["job"],
                "additionalProperties": false,
            },
            {
                "type": "object",
                "description": "Tail a topic, as GET /api/v1/topics/{topic}/stream.",
                "properties": {
                    "topic": text,
                    "since": text,
                    "since_seq": {"type": "integer", "minimum": 0},
                    "since_time": text,
                },
                "required": ["topic"],
                "additionalProperties": false,
            },
        ]}}},
    })
}

fn face_answer(path: &str) -> Value {
    if path == "/healthz" {
        json!({
            "description": "The process is up.",
            "content": {"application/json": {"schema": {
                "type": "object",
                "properties": {"status": {"const": "ok"}},
                "required": ["status"],
            }}},
        })
    } else if path.ends_with("/follows") {
        json!({
            "description": "The follow started: its id, and for a job follow its start cursor.",
            "content": {"application/json": {"schema": {
                "type": "object",
                "properties": {"follow": {"type": "string"}, "cursor": {"type": "string"}},
                "required": ["follow"],
            }}},
        })
    } else if path == "/metrics" {
        json!({
            "description": "The metrics; names and labels are the contract of docs/metrics.md \
                (ADR 0040): Prometheus text (version=0.0.4) unless Accept names \
                application/openmetrics-text (version=1.0.0).",
            "content": {
                "text/plain": {"schema": {"type": "string"}},
                "application/openmetrics-text": {"schema": {"type": "string"}},
            },
        })
    } else {
        json!({
            "description": "The document.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        })
    }
}

/// RFC 9457 problem details, with the taxonomy's code.
fn problem_schema(code: schemars::Schema) -> Value {
    let mut code = code.to_value();
    if let Some(o) = code.as_object_mut() {
        o.insert(
            "description".into(),
            json!("The taxonomy's code (ADR 0034): what a client branches on."),
        );
    }
    json!({
        "type": "object",
        "description": "An error (RFC 9457 problem details). Members other than these may be \
            added later; clients ignore what they do not know.",
        "required": ["type", "title", "status", "detail", "code", "data"],
        "properties": {
            "type": {
                "type": "string",
                "description": "urn:gatos:error: and the code.",
            },
            "title": {
                "type": "string",
                "description": "The code's short title (the same for every occurrence).",
            },
            "status": {
                "type": "integer",
                "minimum": 400,
                "maximum": 599,
                "description": "The HTTP status: the code's (ADR 0034), or 405/415 for a \
                    method or media type the route does not take (code InvalidInput).",
            },
            "detail": {"type": "string", "description": "The message of this occurrence."},
            "code": code,
            "data": {
                "type": "object",
                "description": "The error's facts (retry_after_seconds, landed, field, …); \
                    {} when it has none.",
            },
            "instance": {"type": "string", "description": "urn:gatos:request: and the request's id."},
        },
    })
}

/// Drops the components nothing reaches from the paths (request types whose members all
/// became parameters or were copied into a cut body).
fn keep_referenced(schemas: &mut Map<String, Value>, paths: &Value) {
    let mut reached = std::collections::BTreeSet::new();
    let mut todo = Vec::new();
    collect_refs(paths, &mut todo);
    todo.push("Problem".to_owned());
    while let Some(name) = todo.pop() {
        if reached.insert(name.clone())
            && let Some(s) = schemas.get(&name)
        {
            collect_refs(s, &mut todo);
        }
    }
    schemas.retain(|name, _| reached.contains(name));
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                if k == "$ref"
                    && let Some(name) = x.as_str().and_then(|r| r.strip_prefix(SCHEMA_REF))
                {
                    out.push(name.to_owned());
                }
                collect_refs(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}
