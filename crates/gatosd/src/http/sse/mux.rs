//! Follows on the job-event stream (ADR 0045, issue #19): a client that holds
//! `GET /api/v1/events/jobs` may have a job's stream (`jobs.follow`: state, events, log) or
//! a topic's tail (`messages.subscribe`) sent on that same connection instead of opening
//! another. HTTP/1.1 gives a browser six connections per origin; a dashboard with a job page
//! and a topic page open in several tabs would use them all up, and every request of every
//! tab would wait.
//!
//! The stream's first event is `event: stream {"stream": ID}`. Then:
//! - `POST /api/v1/events/jobs/{stream}/follows` with `{"job": ID, "since"?, "logs"?}` (as
//!   `jobs.follow`) or `{"topic": T, "since"? | "since_seq"? | "since_time"?}` (as
//!   `messages.subscribe`) starts a follow and answers `{"follow": F}` (with the job
//!   stream's start `cursor`);
//! - its events come on the stream as `event: follow` with
//!   `{"follow": F, "event": E, "id": ID, "data": …}`: E and ID are what the follow's own
//!   stream would have sent as `event:` and `id:` (`state`, `job`, `log`, `end`;
//!   `message`, `gap`), and `lagged` (`data.next_since`) or `error` when the follow ended
//!   early; the stream's own `Last-Event-ID` is never touched by them;
//! - `DELETE /api/v1/events/jobs/{stream}/follows/{follow}` ends one.
//!
//! Only the actor that opened the stream may add or end its follows (any other actor is
//! told no such stream exists); each follow holds a stream slot of that actor, so the
//! per-token and per-daemon stream limits count it. Follows end with their stream: a
//! client that reconnects gets a new stream id and starts its follows again from the last
//! `id` each one delivered.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Path, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gatos::messages::Cursor;
use gatos_api::types::{FollowParams, SubscribeParams};
use gatos_types::ErrorCode;
use hyper::body::Bytes;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::{Filter, HttpState, Producer, Queue, Slot, event_frame, job, produce};
use crate::http::guard::Authed;
use crate::http::problem::Problem;

/// `POST` here starts a follow on stream `{stream}`.
pub const FOLLOWS: &str = "/api/v1/events/jobs/{stream}/follows";
/// `DELETE` here ends follow `{follow}` of stream `{stream}`.
pub const FOLLOW: &str = "/api/v1/events/jobs/{stream}/follows/{follow}";

/// The largest body of a follow request.
const MAX_BODY: usize = 16 * 1024;

/// The job-event streams that take follows, by id.
#[derive(Default)]
pub struct Registry {
    streams: Mutex<HashMap<String, Arc<Stream>>>,
}

/// One job-event stream: whose it is, where its frames go, its follows.
pub(crate) struct Stream {
    owner: String,
    pub(crate) queue: Arc<Queue>,
    /// The connection's stop: every follow's stop is a child of it.
    stop: CancellationToken,
    follows: Mutex<HashMap<String, CancellationToken>>,
    next: AtomicU64,
}

impl Stream {
    fn follows(&self) -> std::sync::MutexGuard<'_, HashMap<String, CancellationToken>> {
        self.follows.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A stream's place in the registry: dropping it (its producer ended) removes the stream
/// and ends its follows.
pub(crate) struct Registered {
    state: Arc<HttpState>,
    id: String,
    stream: Arc<Stream>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.state.streams.mux.lock().remove(&self.id);
        for (_, stop) in self.stream.follows().drain() {
            stop.cancel();
        }
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Stream>>> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers the stream of `owner` that writes into `queue`: its id (128 random bits,
    /// hex) and the guard that removes it.
    pub(crate) fn register(
        state: &Arc<HttpState>,
        owner: String,
        queue: Arc<Queue>,
        stop: CancellationToken,
    ) -> (String, Registered) {
        use rand::RngCore as _;
        let mut raw = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let stream = Arc::new(Stream {
            owner,
            queue,
            stop,
            follows: Mutex::default(),
            next: AtomicU64::new(1),
        });
        state.streams.mux.lock().insert(id.clone(), stream.clone());
        (
            id.clone(),
            Registered {
                state: state.clone(),
                id,
                stream,
            },
        )
    }

    /// The stream `id` if `actor` opened it; else the same `NotFound` whether it never
    /// existed, ended, or is someone else's.
    fn find(&self, id: &str, actor: &str) -> Result<Arc<Stream>, Problem> {
        self.lock()
            .get(id)
            .filter(|s| s.owner == actor)
            .cloned()
            .ok_or_else(|| {
                Problem::new(
                    ErrorCode::NotFound,
                    format!(
                        "no open job-event stream {id} of yours: it ended (open /api/v1/events/jobs again; its first event names the new one)"
                    ),
                )
                .with("stream", id.chars().take(64).collect::<String>())
            })
    }
}

/// The `event: follow` frame of follow `follow`: `{"follow", "event", "id", "data"}`, `data`
/// already JSON.
pub(crate) fn frame(follow: &str, event: &str, id: Option<&str>, data: &str) -> Bytes {
    let head = serde_json::json!({ "follow": follow, "event": event, "id": id }).to_string();
    // `head` is `{...}`: splice the data in before its closing brace, unparsed.
    let mut s = String::with_capacity(head.len() + data.len() + 10);
    s.push_str(&head[..head.len() - 1]);
    s.push_str(",\"data\":");
    s.push_str(data);
    s.push('}');
    event_frame(None, "follow", &s)
}

/// A `200` with a JSON body, not cached.
fn ok_json(v: &Value) -> Response {
    let mut r = Response::new(axum::body::Body::from(v.to_string()));
    let h = r.headers_mut();
    h.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    h.insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    r
}

fn authed(req: &Request) -> Result<Authed, Problem> {
    req.extensions()
        .get::<Authed>()
        .cloned()
        .ok_or_else(|| Problem::new(ErrorCode::Unauthorized, "this route needs a token"))
}

fn bad(msg: impl Into<String>) -> Problem {
    Problem::new(ErrorCode::InvalidInput, msg)
}

/// `POST /api/v1/events/jobs/{stream}/follows`.
pub(super) async fn add(
    st: Arc<HttpState>,
    stream_id: String,
    req: Request,
) -> Result<Response, Problem> {
    let who = authed(&req)?;
    let actor = who.actor.to_string();
    let stream = st.streams.mux.find(&stream_id, &actor)?;
    let body = axum::body::to_bytes(req.into_body(), MAX_BODY)
        .await
        .map_err(|_| {
            bad(format!(
                "a follow request is a JSON object of at most {MAX_BODY} bytes"
            ))
        })?;
    let mut obj: Map<String, Value> = serde_json::from_slice(&body)
        .map_err(|e| bad(format!("a follow request is a JSON object: {e}")))?;
    let job = obj.remove("job");
    let topic = obj.contains_key("topic");
    let fid = format!("f{}", stream.next.fetch_add(1, Ordering::Relaxed));
    let stop = stream.stop.child_token();
    match (job, topic) {
        (Some(id), false) => {
            obj.insert("id".into(), id);
            let p: FollowParams = serde_json::from_value(Value::Object(obj))
                .map_err(|e| bad(format!("a job follow: {e}")).with("field", "job"))?;
            let resume = match p.since.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(s) => Some(
                    s.parse::<gatos::jobs::logs::FollowCursor>()
                        .map_err(|e| Problem::from_error(&e).with("field", "since"))?,
                ),
            };
            let slot = Slot::take(&st, actor)?;
            let shared = st.shared.clone();
            let (logs, id, s2) = (p.logs.unwrap_or(true), p.id, stop.clone());
            let j = tokio::task::spawn_blocking(move || job::start(&shared, id, resume, logs, s2))
                .await
                .map_err(|_| Problem::new(ErrorCode::Internal, "the follow task failed"))?
                .map_err(Problem::from_call)?;
            let cursor = j.cursor().to_string();
            stream.follows().insert(fid.clone(), stop);
            let sink = job::Sink::Mux {
                queue: stream.queue.clone(),
                follow: fid.clone(),
            };
            let (s, f) = (stream.clone(), fid.clone());
            tokio::spawn(tracing::Instrument::in_current_span(async move {
                job::run(j, &sink).await;
                s.follows().remove(&f);
                drop(slot);
            }));
            Ok(ok_json(
                &serde_json::json!({ "follow": fid, "cursor": cursor }),
            ))
        }
        (None, true) => {
            let p: SubscribeParams = serde_json::from_value(Value::Object(obj))
                .map_err(|e| bad(format!("a topic follow: {e}")).with("field", "topic"))?;
            let since = gatos_api::service::cursor(p.since, p.since_seq, p.since_time, Cursor::End)
                .map_err(Problem::from_call)?;
            let slot = Slot::take(&st, actor)?;
            let gatos = st.shared.gatos.clone();
            let t = p.topic.clone();
            let follower = tokio::task::spawn_blocking(move || gatos.messages().follow(&t, since))
                .await
                .map_err(|_| Problem::new(ErrorCode::Internal, "the follow task failed"))?
                .map_err(|e| Problem::from_error(&e))?;
            let changes = st.shared.watchers.watch(&p.topic, follower.last_head());
            stream.follows().insert(fid.clone(), stop.clone());
            let producer = Producer {
                st: st.clone(),
                follower,
                filter: Filter::Messages,
                changes,
                node: None,
                stop,
                queue: stream.queue.clone(),
                mux: Some(fid.clone()),
            };
            let (s, f) = (stream.clone(), fid.clone());
            tokio::spawn(tracing::Instrument::in_current_span(async move {
                produce(producer, slot).await;
                s.follows().remove(&f);
            }));
            Ok(ok_json(&serde_json::json!({ "follow": fid })))
        }
        _ => Err(bad(
            "a follow names a job (\"job\") or a topic (\"topic\"), one of them",
        )),
    }
}

/// `DELETE /api/v1/events/jobs/{stream}/follows/{follow}`.
pub(super) async fn end(
    st: Arc<HttpState>,
    Path((stream_id, follow)): Path<(String, String)>,
    req: Request,
) -> Result<Response, Problem> {
    let who = authed(&req)?;
    let stream = st.streams.mux.find(&stream_id, &who.actor.to_string())?;
    let stop = stream.follows().remove(&follow).ok_or_else(|| {
        Problem::new(
            ErrorCode::NotFound,
            "no such follow on this stream (it ended, or was never started)",
        )
        .with("follow", follow.chars().take(64).collect::<String>())
    })?;
    stop.cancel();
    Ok(StatusCode::NO_CONTENT.into_response())
}
