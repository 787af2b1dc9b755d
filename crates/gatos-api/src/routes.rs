//! The HTTP face's route table (ADR 0033): one route per operation offered on
//! [`Faces::HTTP`](crate::ops::Faces::HTTP), and the few routes of the face itself.
//!
//! The table is data: gatosd's HTTP face builds its router from it and the OpenAPI document
//! ([`crate::openapi`]) is rendered from it and [`crate::ops::OPS`], so the served routes and
//! the document cannot differ. The mapping rules, once for every row:
//!
//! - a path field `{name}` is the request's member `name` (its schema's property);
//! - [`Input::Query`]: the other members come from the query string, named as the members
//!   (`since_seq=4`, repeated `queues=a&queues=b` for an array); [`Input::Body`]: they are
//!   the JSON body, an object (an empty body is `{}`); a path field repeated in the body
//!   or the query is refused (`InvalidInput`);
//! - the answer is the operation's response, as JSON; the status is [`Route::status`], a
//!   `Location` is [`Route::location`], a next page's `Link` comes from [`Route::page`].

use serde_json::Value;

use crate::ops::names as n;

/// The prefix of the operations' routes.
pub const BASE: &str = "/api/v1";

/// An HTTP method the table uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Method {
    /// `GET`: reads; the request's members come from the query.
    Get,
    /// `POST`: creates or acts.
    Post,
    /// `PUT`: sets a named thing (a checkpoint, a manifest).
    Put,
    /// `DELETE`: removes a named thing (a snapshot); members come from the query.
    Delete,
}

impl Method {
    /// The method's name, as on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }

    /// The method's name in lower case, as an OpenAPI path item's key.
    pub const fn openapi_key(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Post => "post",
            Method::Put => "put",
            Method::Delete => "delete",
        }
    }
}

/// Where a request's members other than the path fields come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// The query string, each member a parameter of its own name.
    Query,
    /// The JSON body (`application/json` or `+json`), an object; empty means `{}`.
    Body,
}

/// The status of a successful answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Success {
    /// `200 OK`.
    Ok,
    /// `201 Created`.
    Created,
    /// `201 Created`, except `200 OK` when the answer's boolean `member` equals `value`
    /// (nothing new was made: a duplicate publish, a manifest stored unchanged).
    CreatedUnless {
        /// The answer's member.
        member: &'static str,
        /// Its value that means "nothing new".
        value: bool,
    },
    /// `200 OK`, or `204 No Content` with no body when the answer is null (`jobs.claim`
    /// with nothing to claim).
    OkOrNoContent,
}

impl Success {
    /// The statuses this may answer, for the document.
    pub fn statuses(self) -> &'static [u16] {
        match self {
            Success::Ok => &[200],
            Success::Created => &[201],
            Success::CreatedUnless { .. } => &[200, 201],
            Success::OkOrNoContent => &[200, 204],
        }
    }
}

/// How a route honours an `Idempotency-Key` header (ADR 0033; the store's rules are ADR
/// 0035's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    /// Not offered: the header is ignored (a naturally idempotent write, a read, or an
    /// answer that must not be stored, such as a claim's lease token).
    None,
    /// Mapped to the messages' own `headers.msg_id` deduplication (durable, across nodes).
    MsgId,
    /// Remembered in the node's idempotency store (durable on this node).
    Store,
}

/// A paged answer: how the face builds the next page's `Link: <…>; rel="next"` (RFC 8288)
/// from the same request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// The answer's member holding the next page's cursor (null: no next page).
    pub next: &'static str,
    /// The query parameter that takes it.
    pub param: &'static str,
    /// A boolean member of the answer that, when true, means this page is the last even
    /// though `next` has a value (`messages.read`'s `end`: its `next_since` is also where
    /// a later read resumes).
    pub last_when: Option<&'static str>,
}

impl Page {
    /// The next page's cursor, when the answer has a next page.
    pub fn next_cursor(&self, answer: &Value) -> Option<String> {
        if let Some(flag) = self.last_when
            && answer.get(flag).and_then(Value::as_bool) == Some(true)
        {
            return None;
        }
        match answer.get(self.next)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// One route of an operation.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// The method.
    pub method: Method,
    /// The path template (under [`BASE`], which it includes): `{name}` segments are the
    /// request's members of that name.
    pub path: &'static str,
    /// The operation's name (a row of [`crate::ops::OPS`]).
    pub op: &'static str,
    /// Where the other members come from.
    pub input: Input,
    /// The success status.
    pub success: Success,
    /// A `Location` to send with a `201`: a path whose `{member}` segments are filled from
    /// the answer's members (see [`Route::location`]).
    pub location: Option<&'static str>,
    /// How an `Idempotency-Key` is honoured.
    pub idempotency: Idempotency,
    /// Whether the answer is paged.
    pub page: Option<Page>,
    /// Whether the route answers a stream of server-sent events (`text/event-stream`, with
    /// `Last-Event-ID`) rather than one JSON answer: the operation's shape is
    /// [`Shape::Stream`](crate::ops::Shape::Stream).
    pub stream: bool,
}

impl Route {
    /// The path fields, in order: the `{name}` segments of the template.
    pub fn path_fields(&self) -> impl Iterator<Item = &'static str> {
        self.path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
    }

    /// The success status of this answer.
    pub fn status(&self, answer: &Value) -> u16 {
        match self.success {
            Success::Ok => 200,
            Success::Created => 201,
            Success::CreatedUnless { member, value } => {
                if answer.get(member).and_then(Value::as_bool) == Some(value) {
                    200
                } else {
                    201
                }
            }
            Success::OkOrNoContent => {
                if answer.is_null() {
                    204
                } else {
                    200
                }
            }
        }
    }

    /// The `Location` of a `201` answer: the template with each `{member}` replaced by the
    /// answer's member (a string or a number); none when the status is not 201 or a
    /// member is missing.
    pub fn location(&self, answer: &Value) -> Option<String> {
        let template = self.location?;
        if self.status(answer) != 201 {
            return None;
        }
        let mut out = String::with_capacity(template.len() + 32);
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let close = after.find('}')?;
            let value = match answer.get(&after[..close])? {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return None,
            };
            // Members that fill a Location are ids, names and numbers: never a character
            // that needs escaping in a path (`[a-z0-9._-]`, Crockford base32, digits).
            if !value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            {
                return None;
            }
            out.push_str(&value);
            rest = &after[close + 1..];
        }
        out.push_str(rest);
        Some(out)
    }
}

const fn get(path: &'static str, op: &'static str) -> Route {
    Route {
        method: Method::Get,
        path,
        op,
        input: Input::Query,
        success: Success::Ok,
        location: None,
        idempotency: Idempotency::None,
        page: None,
        stream: false,
    }
}

const fn post(path: &'static str, op: &'static str) -> Route {
    Route {
        method: Method::Post,
        input: Input::Body,
        ..get(path, op)
    }
}

const fn put(path: &'static str, op: &'static str) -> Route {
    Route {
        method: Method::Put,
        input: Input::Body,
        ..get(path, op)
    }
}

const fn delete(path: &'static str, op: &'static str) -> Route {
    Route {
        method: Method::Delete,
        ..get(path, op)
    }
}

impl Route {
    const fn success(mut self, s: Success) -> Route {
        self.success = s;
        self
    }
    const fn created_at(mut self, location: &'static str) -> Route {
        if matches!(self.success, Success::Ok) {
            self.success = Success::Created;
        }
        self.location = Some(location);
        self
    }
    const fn idempotency(mut self, i: Idempotency) -> Route {
        self.idempotency = i;
        self
    }
    const fn page(mut self, next: &'static str, param: &'static str) -> Route {
        self.page = Some(Page {
            next,
            param,
            last_when: None,
        });
        self
    }
    const fn page_until(
        mut self,
        next: &'static str,
        param: &'static str,
        last_when: &'static str,
    ) -> Route {
        self.page = Some(Page {
            next,
            param,
            last_when: Some(last_when),
        });
        self
    }
    const fn stream(mut self) -> Route {
        self.stream = true;
        self
    }
}

const JOB: &str = "/api/v1/jobs/{id}";

/// Every operation's route, in the order of the docs.
///
/// Whoever adds an operation offered on HTTP adds its row here (a test fails until then):
/// `jobs.follow` (`GET /api/v1/jobs/{id}/stream`, `.stream()`) comes with its operation.
/// `gatos.ready` is the one route outside [`BASE`]: `GET /readyz`, at the root with the
/// probes (`Success::Ok`; the face answers 503 `Unavailable` when not ready).
pub const ROUTES: &[Route] = &[
    // Topics and messages.
    get("/api/v1/topics", n::TOPICS_LIST),
    post("/api/v1/topics/{topic}/messages", n::MESSAGES_PUBLISH)
        .success(Success::CreatedUnless {
            member: "duplicate",
            value: true,
        })
        .idempotency(Idempotency::MsgId),
    post("/api/v1/topics/{topic}/batches", n::MESSAGES_PUBLISH_BATCH)
        .success(Success::Created)
        .idempotency(Idempotency::MsgId),
    get("/api/v1/topics/{topic}/messages", n::MESSAGES_READ).page_until(
        "next_since",
        "since",
        "end",
    ),
    get("/api/v1/topics/{topic}/stream", n::MESSAGES_SUBSCRIBE).stream(),
    get("/api/v1/topics/{topic}/consumers", n::CHECKPOINTS_LIST),
    get(
        "/api/v1/topics/{topic}/consumers/{group}",
        n::CHECKPOINTS_GET,
    ),
    put(
        "/api/v1/topics/{topic}/consumers/{group}",
        n::CHECKPOINTS_SET,
    ),
    post(
        "/api/v1/topics/{topic}/consumers/{group}/ack",
        n::MESSAGES_ACK,
    ),
    // Jobs.
    post("/api/v1/jobs", n::JOBS_ENQUEUE)
        .created_at(JOB)
        .idempotency(Idempotency::Store),
    get("/api/v1/jobs", n::JOBS_LIST).page("next_cursor", "cursor"),
    get(JOB, n::JOBS_GET),
    get("/api/v1/jobs/{id}/why", n::JOBS_WHY),
    get("/api/v1/jobs/{id}/attempts", n::JOBS_ATTEMPTS),
    post("/api/v1/jobs/{id}/cancel", n::JOBS_CANCEL),
    post("/api/v1/jobs/{id}/retry", n::JOBS_RETRY)
        .created_at(JOB)
        .idempotency(Idempotency::Store),
    get("/api/v1/jobs/{id}/logs", n::JOBS_LOGS),
    get("/api/v1/jobs/{id}/proof", n::JOBS_VERIFY),
    get("/api/v1/jobs/{id}/stream", n::JOBS_FOLLOW).stream(),
    get("/api/v1/events/jobs", n::JOBS_WATCH).stream(),
    // Workers.
    post("/api/v1/claims", n::JOBS_CLAIM).success(Success::OkOrNoContent),
    post(
        "/api/v1/jobs/{id}/attempts/{attempt}/heartbeat",
        n::JOBS_HEARTBEAT,
    ),
    post(
        "/api/v1/jobs/{id}/attempts/{attempt}/complete",
        n::JOBS_COMPLETE,
    ),
    post("/api/v1/jobs/{id}/attempts/{attempt}/fail", n::JOBS_FAIL),
    // Manifests.
    get("/api/v1/manifests", n::MANIFESTS_LIST),
    put("/api/v1/manifests/{name}", n::MANIFESTS_PUT)
        .success(Success::CreatedUnless {
            member: "changed",
            value: false,
        })
        .created_at("/api/v1/manifests/{name}?version={version}"),
    get("/api/v1/manifests/{name}", n::MANIFESTS_GET),
    get("/api/v1/manifests/{name}/versions", n::MANIFESTS_VERSIONS),
    post("/api/v1/manifests/{name}/runs", n::MANIFESTS_RUN)
        .created_at(JOB)
        .idempotency(Idempotency::Store),
    // The node.
    get("/api/v1/keys", n::KEYS_LIST),
    get("/api/v1/audit", n::AUDIT_READ).page("next_since", "since"),
    get("/api/v1/doctor", n::DOCTOR_CHECK),
    post("/api/v1/sync", n::SYNC_RUN),
    get("/api/v1/sync/rejections", n::SYNC_REJECTIONS),
    get("/api/v1/queues", n::QUEUES_LIST),
    get("/api/v1/state", n::STATE_RESOLVE),
    get("/api/v1/snapshots", n::SNAPSHOTS_LIST),
    post("/api/v1/snapshots", n::SNAPSHOTS_CREATE).success(Success::Created),
    delete("/api/v1/snapshots/{name}", n::SNAPSHOTS_DELETE),
    get("/api/v1/version", n::GATOS_VERSION),
    get("/api/v1/health", n::GATOS_HEALTH),
    get("/readyz", n::GATOS_READY),
];

/// A route of the face itself, not of an operation.
#[derive(Debug, Clone, Copy)]
pub struct FaceRoute {
    /// The method.
    pub method: Method,
    /// The path (absolute: probes are at the root).
    pub path: &'static str,
    /// One line for the document.
    pub summary: &'static str,
    /// Whether the bearer token is required.
    pub auth: bool,
}

/// The face's own routes (ADR 0033; `/metrics`, ADR 0040): `/readyz` is `gatos.ready`'s
/// route.
pub const FACE_ROUTES: &[FaceRoute] = &[
    FaceRoute {
        method: Method::Get,
        path: "/healthz",
        summary: "Liveness: the process answers (no token, no store read).",
        auth: false,
    },
    FaceRoute {
        method: Method::Get,
        path: "/api/v1/openapi.json",
        summary: "This document (OpenAPI 3.1), as committed in docs/openapi.json.",
        auth: true,
    },
    FaceRoute {
        method: Method::Post,
        path: "/api/v1/events/jobs/{stream}/follows",
        summary: "Starts a follow on job-event stream {stream} (named by its first event, `stream`): a body {job, since?, logs?} follows a job as /api/v1/jobs/{id}/stream does, {topic, since? | since_seq? | since_time?} tails a topic; its events come on that stream as `event: follow` {follow, event, id, data}. Only the stream's own actor may; answers {follow, cursor?} (docs/http.md, ADR 0045).",
        auth: true,
    },
    FaceRoute {
        method: Method::Delete,
        path: "/api/v1/events/jobs/{stream}/follows/{follow}",
        summary: "Ends follow {follow} of job-event stream {stream}: 204, or 404 NotFound for a follow or stream that is not there (or not this actor's).",
        auth: true,
    },
    FaceRoute {
        method: Method::Get,
        path: "/metrics",
        summary: "The daemon's metrics (docs/metrics.md): Prometheus text 0.0.4, or OpenMetrics 1.0 when Accept asks for it.",
        auth: true,
    },
];

/// The route of an operation.
pub fn route_of(op: &str) -> Option<&'static Route> {
    ROUTES.iter().find(|r| r.op == op)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn route(op: &str) -> &'static Route {
        route_of(op).expect("a route")
    }

    #[test]
    fn statuses_follow_the_answer() {
        let publish = route(n::MESSAGES_PUBLISH);
        assert_eq!(publish.status(&json!({"duplicate": false})), 201);
        assert_eq!(publish.status(&json!({"duplicate": true})), 200);
        let claim = route(n::JOBS_CLAIM);
        assert_eq!(claim.status(&Value::Null), 204);
        assert_eq!(claim.status(&json!({"id": "x"})), 200);
        let put = route(n::MANIFESTS_PUT);
        assert_eq!(put.status(&json!({"changed": false})), 200);
        assert_eq!(put.status(&json!({"changed": true})), 201);
        assert_eq!(route(n::JOBS_GET).status(&json!({})), 200);
    }

    #[test]
    fn locations_are_filled_from_the_answer_and_only_for_201() {
        let id = "01JEXAMPLE0000000000000001";
        assert_eq!(
            route(n::JOBS_ENQUEUE).location(&json!({"id": id})),
            Some(format!("/api/v1/jobs/{id}"))
        );
        let put = route(n::MANIFESTS_PUT);
        assert_eq!(
            put.location(&json!({"name": "build", "version": 3, "changed": true})),
            Some("/api/v1/manifests/build?version=3".to_owned())
        );
        assert_eq!(
            put.location(&json!({"name": "build", "version": 3, "changed": false})),
            None
        );
        assert_eq!(route(n::JOBS_ENQUEUE).location(&json!({})), None);
        assert_eq!(
            route(n::JOBS_ENQUEUE).location(&json!({"id": "a/../b"})),
            None
        );
        assert_eq!(route(n::JOBS_GET).location(&json!({"id": id})), None);
    }

    #[test]
    fn pages_name_their_cursor() {
        let read = route(n::MESSAGES_READ).page.expect("paged");
        assert_eq!(
            read.next_cursor(&json!({"next_since": "A", "end": false})),
            Some("A".into())
        );
        assert_eq!(
            read.next_cursor(&json!({"next_since": "A", "end": true})),
            None
        );
        let list = route(n::JOBS_LIST).page.expect("paged");
        assert_eq!(list.param, "cursor");
        assert_eq!(list.next_cursor(&json!({"next_cursor": null})), None);
        assert_eq!(
            list.next_cursor(&json!({"next_cursor": "B"})),
            Some("B".into())
        );
    }

    #[test]
    fn path_fields_come_from_the_template() {
        let hb = route(n::JOBS_HEARTBEAT);
        assert_eq!(hb.path_fields().collect::<Vec<_>>(), ["id", "attempt"]);
        assert_eq!(route(n::TOPICS_LIST).path_fields().count(), 0);
    }
}
