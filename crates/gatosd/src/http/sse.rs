//! Server-sent event streams (issue #17, ADR 0037): `GET /api/v1/topics/{topic}/stream`
//! (`messages.subscribe`) and `GET /api/v1/events/jobs` (`jobs.watch`); the job stream
//! `GET /api/v1/jobs/{id}/stream` (`jobs.follow`, ADR 0039) is in [`job`].
//!
//! The start cursor is resolved before the 200 (`Last-Event-ID` wins over the query's
//! `since*`; an unknown ULID is a 404 problem). Each stream has its own library
//! `Follower`, woken by the daemon's shared `Watchers` as an RPC subscription is (one store
//! read per stream per publish: the study's shared ring is a later step). Events go into
//! a queue bounded in bytes ([`Limits::outbox_bytes`](crate::limits::Limits)) that the
//! response body takes from as hyper writes it: a client that does not read for
//! `lag_grace` while the queue is full gets `event: lagged` (the id to resume from) and the
//! stream ends, its queue dropped. Shutdown ends a stream with `event: shutdown`.
//!
//! A stream does not hold one of the unary call slots; it takes one of the daemon's stream
//! slots (`Limits::max_streams`, shared with JSON-RPC subscriptions; counted in
//! `Shared::subscriptions`, so `gatos.health` shows it) and counts against
//! `max_subscriptions` per token name (the RPC per-connection number: one HTTP/1.1
//! connection carries one stream); past either it is a `TooManySubscriptions` 429 problem.

use std::collections::{HashMap, VecDeque};
use std::future::Future as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use gatos::messages::{Cursor, Follower, MessageView};
use gatos_api::types::{SubscribeParams, WatchParams};
use gatos_types::{ErrorCode, Ulid};
use hyper::body::{Bytes, Frame};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::HttpState;
use super::guard::Authed;
use super::problem::Problem;
use super::query;

pub(crate) mod job;
pub(crate) mod mux;

/// The `retry:` a stream opens with: how long an `EventSource` waits before reconnecting.
pub const RETRY: Duration = Duration::from_secs(2);

/// A comment line is sent after this long without an event, so proxies and clients see the
/// stream alive.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The topic stream's path.
pub const TOPIC_STREAM: &str = "/api/v1/topics/{topic}/stream";
/// The job events stream's path.
pub const JOB_EVENTS: &str = "/api/v1/events/jobs";

/// Streams open per token name, for the per-actor cap.
pub struct Streams {
    by_actor: Mutex<HashMap<String, usize>>,
    /// The job-event streams that take follows (ADR 0045).
    pub(crate) mux: mux::Registry,
    /// The bytes queued for every stream together.
    pub(crate) budget: Arc<Budget>,
}

impl Streams {
    /// No stream yet; `total` bytes may be queued for all of them together.
    pub fn new(total: usize) -> Streams {
        Streams {
            by_actor: Mutex::default(),
            mux: mux::Registry::default(),
            budget: Arc::new(Budget::new(total)),
        }
    }
}

/// The bytes queued for all streams together, and the queues that hold them: past the
/// cap, the queue holding the most is ended as lagged (memory back at once), whoever
/// pushes, so a slow reader is the one cut, not the fast one that pushes next.
pub(crate) struct Budget {
    cap: usize,
    total: std::sync::atomic::AtomicUsize,
    queues: Mutex<Vec<std::sync::Weak<Queue>>>,
}

impl Budget {
    pub(crate) fn new(cap: usize) -> Budget {
        Budget {
            cap,
            total: std::sync::atomic::AtomicUsize::new(0),
            queues: Mutex::default(),
        }
    }

    /// A queue of at most `cap` bytes, counted here.
    pub(crate) fn queue(self: &Arc<Self>, cap: usize) -> Arc<Queue> {
        let q = Arc::new(Queue::new(cap, self.clone()));
        let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        queues.retain(|w| w.strong_count() > 0);
        queues.push(Arc::downgrade(&q));
        q
    }

    fn add(&self, n: usize) {
        self.total
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    fn sub(&self, n: usize) {
        self.total
            .fetch_sub(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// Ends the queues holding the most until `more` bytes fit; whether they fit. A frame
    /// larger than the whole budget ends nobody (it fits only an empty queue's exception,
    /// which is not asked here).
    fn make_room(&self, more: usize) -> bool {
        let load = || self.total.load(std::sync::atomic::Ordering::Relaxed);
        if more > self.cap {
            return false;
        }
        if load().saturating_add(more) <= self.cap {
            // The common case takes no lock.
            return true;
        }
        let queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        while load().saturating_add(more) > self.cap {
            let largest = queues
                .iter()
                .filter_map(std::sync::Weak::upgrade)
                .filter_map(|q| {
                    let held = q.lock().evictable();
                    (held > 0).then_some((held, q))
                })
                .max_by_key(|(b, _)| *b);
            let Some((_, q)) = largest else {
                return false;
            };
            let before = load();
            q.evict();
            if load() >= before {
                // Nothing came back (a race with its reader): do not spin.
                return false;
            }
        }
        true
    }
}

/// The shutdown of the connection a request came on (put in its extensions by
/// `serve_io`): a stream ends with `event: shutdown` when it fires.
#[derive(Clone)]
pub struct ConnStop(pub CancellationToken);

/// The stream routes.
pub fn routes(state: Arc<HttpState>) -> Router {
    let (a, b, c) = (state.clone(), state.clone(), state.clone());
    let (d, e) = (state.clone(), state);
    Router::new()
        .route(
            TOPIC_STREAM,
            get(move |req: Request| {
                let st = a.clone();
                async move {
                    open(st, Kind::Topic, req)
                        .await
                        .unwrap_or_else(|p| p.into_response())
                }
            }),
        )
        .route(
            JOB_EVENTS,
            get(move |req: Request| {
                let st = b.clone();
                async move {
                    open(st, Kind::Jobs, req)
                        .await
                        .unwrap_or_else(|p| p.into_response())
                }
            }),
        )
        .route(
            mux::FOLLOWS,
            axum::routing::post(
                move |axum::extract::Path(stream): axum::extract::Path<String>, req: Request| {
                    let st = d.clone();
                    async move {
                        mux::add(st, stream, req)
                            .await
                            .unwrap_or_else(|p| p.into_response())
                    }
                },
            ),
        )
        .route(
            mux::FOLLOW,
            axum::routing::delete(
                move |path: axum::extract::Path<(String, String)>, req: Request| {
                    let st = e.clone();
                    async move {
                        mux::end(st, path, req)
                            .await
                            .unwrap_or_else(|p| p.into_response())
                    }
                },
            ),
        )
        .route(
            job::JOB_STREAM,
            get(move |req: Request| {
                let st = c.clone();
                async move {
                    job::open(st, req)
                        .await
                        .unwrap_or_else(|p| p.into_response())
                }
            }),
        )
}

#[derive(Clone, Copy)]
enum Kind {
    Topic,
    Jobs,
}

/// What a stream sends for each message: a topic's `MessageRow`, or a filtered job event.
enum Filter {
    Messages,
    Jobs(WatchParams),
}

impl Filter {
    /// The frame of `m`, if it passes: its own, or as an `event: follow` of follow `mux`
    /// on a job-event stream.
    fn frame(&self, m: &MessageView<'_>, mux: Option<&str>) -> Option<Bytes> {
        let (event, data) = match self {
            Filter::Messages => ("message", serde_json::to_string(m).ok()?),
            Filter::Jobs(p) => {
                let ev = p.admits(m.payload.get())?;
                let mut v = serde_json::to_value(&ev).ok()?;
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("ulid".into(), Value::String(m.ulid.to_string()));
                }
                ("job", v.to_string())
            }
        };
        let id = m.ulid.to_string();
        Some(match mux {
            Some(f) => mux::frame(f, event, Some(&id), &data),
            None => event_frame(Some(&id), event, &data),
        })
    }
}

/// One SSE event: `id` (when given), `event`, one `data` line (compact JSON has no newline).
fn event_frame(id: Option<&str>, event: &str, data: &str) -> Bytes {
    let mut s = String::with_capacity(data.len() + 64);
    if let Some(id) = id {
        s.push_str("id: ");
        s.push_str(id);
        s.push('\n');
    }
    s.push_str("event: ");
    s.push_str(event);
    s.push_str("\ndata: ");
    s.push_str(data);
    s.push_str("\n\n");
    Bytes::from(s)
}

/// `lagged` and `shutdown`: the id to resume from as the event's id and in the data.
fn resume_frame(event: &str, next: Option<&str>) -> Bytes {
    let data = serde_json::json!({ "next_since": next }).to_string();
    event_frame(next, event, &data)
}

fn query_params(
    req: &Request,
    schema: &Value,
    path: Option<(&str, String)>,
) -> Result<Map<String, Value>, Problem> {
    let mut params = Map::new();
    if let Some((k, v)) = path {
        params.insert(k.to_owned(), Value::String(v));
    }
    for (k, v) in query::fields(req.uri().query().unwrap_or(""), schema) {
        if params.contains_key(&k) {
            return Err(Problem::new(
                ErrorCode::InvalidInput,
                format!("{k} is given by the path; do not repeat it"),
            )
            .with("field", k));
        }
        params.insert(k, v);
    }
    Ok(params)
}

fn last_event_id(req: &Request) -> Result<Option<Ulid>, Problem> {
    let Some(v) = req.headers().get("last-event-id") else {
        return Ok(None);
    };
    let bad = || {
        Problem::new(
            ErrorCode::InvalidInput,
            "Last-Event-ID is not a message ULID (the id of an event of this stream)",
        )
        .with("field", "Last-Event-ID")
    };
    let s = v.to_str().map_err(|_| bad())?.trim();
    if s.is_empty() {
        return Ok(None);
    }
    s.parse::<Ulid>().map(Some).map_err(|_| bad())
}

/// The request schema of operation `name` (it drives the query's coercion).
fn request_schema(name: &str) -> Value {
    gatos_api::ops::find(name)
        .and_then(|op| serde_json::to_value(op.request_schema()).ok())
        .unwrap_or_default()
}

fn invalid(e: &serde_json::Error) -> Problem {
    Problem::new(ErrorCode::InvalidInput, format!("the query: {e}"))
}

/// Takes a stream slot of `actor`, or answers `TooManySubscriptions`.
struct Slot {
    state: Arc<HttpState>,
    actor: String,
    _daemon: crate::shared::StreamSlot,
}

impl Slot {
    fn take(state: &Arc<HttpState>, actor: String) -> Result<Slot, Problem> {
        let max = state.shared.limits.max_subscriptions;
        let mut map = state
            .streams
            .by_actor
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let n = map.entry(actor.clone()).or_insert(0);
        if *n >= max {
            return Err(Problem::new(
                ErrorCode::TooManySubscriptions,
                format!("{actor} holds {max} streams, the most a token may; close one first"),
            )
            .with("max_subscriptions", max));
        }
        let daemon = state.shared.stream_slot().ok_or_else(|| {
            Problem::new(ErrorCode::TooManySubscriptions, state.shared.streams_full())
                .with("max_streams", state.shared.limits.max_streams)
        })?;
        *n += 1;
        drop(map);
        Ok(Slot {
            state: state.clone(),
            actor,
            _daemon: daemon,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self
            .state
            .streams
            .by_actor
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.actor) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.actor);
            }
        }
    }
}

async fn open(st: Arc<HttpState>, kind: Kind, req: Request) -> Result<Response, Problem> {
    let authed = req
        .extensions()
        .get::<Authed>()
        .cloned()
        .ok_or_else(|| Problem::new(ErrorCode::Unauthorized, "this route needs a token"))?;
    // The stream also ends when its token or session is withdrawn.
    let conn = req
        .extensions()
        .get::<ConnStop>()
        .map_or_else(CancellationToken::new, |s| s.0.clone());
    let stop_guard = st.shared.stream_stop(authed.credential.clone(), &conn);
    let stop = stop_guard.token();
    let resume = last_event_id(&req)?;
    let (topic, filter, since) = match kind {
        Kind::Topic => {
            let schema = request_schema(gatos_api::ops::names::MESSAGES_SUBSCRIBE);
            let seg = req
                .uri()
                .path()
                .strip_prefix("/api/v1/topics/")
                .and_then(|s| s.strip_suffix("/stream"))
                .unwrap_or("");
            let topic = percent_encoding::percent_decode_str(seg)
                .decode_utf8()
                .map_err(|_| {
                    Problem::new(ErrorCode::InvalidInput, "the path's topic is not UTF-8")
                        .with("field", "topic")
                })?
                .into_owned();
            let params = query_params(&req, &schema, Some(("topic", topic)))?;
            let p: SubscribeParams =
                serde_json::from_value(Value::Object(params)).map_err(|e| invalid(&e))?;
            let since = gatos_api::service::cursor(p.since, p.since_seq, p.since_time, Cursor::End)
                .map_err(Problem::from_call)?;
            (p.topic, Filter::Messages, since)
        }
        Kind::Jobs => {
            let schema = request_schema(gatos_api::ops::names::JOBS_WATCH);
            let params = query_params(&req, &schema, None)?;
            let p: WatchParams =
                serde_json::from_value(Value::Object(params)).map_err(|e| invalid(&e))?;
            let since = gatos_api::service::cursor(p.since, None, p.since_time, Cursor::End)
                .map_err(Problem::from_call)?;
            (gatos::jobs::events_topic(), Filter::Jobs(p), since)
        }
    };
    let since = resume.map_or(since, Cursor::Ulid);
    let slot = Slot::take(&st, authed.actor.to_string())?;
    let gatos = st.shared.gatos.clone();
    let t = topic.clone();
    let follower = tokio::task::spawn_blocking(move || gatos.messages().follow(&t, since))
        .await
        .map_err(|_| Problem::new(ErrorCode::Internal, "the follow task failed"))?
        .map_err(|e| Problem::from_error(&e))?;
    let queue = st.streams.budget.queue(st.shared.limits.outbox_bytes);
    queue.push_now(Bytes::from(format!("retry: {}\n\n", RETRY.as_millis())));
    let changes = st.shared.watchers.watch(&topic, follower.last_head());
    // The job-event stream also says when a part of the node that no gatos.jobs event
    // covers moved (claims, sync, topics, groups, manifests, keys, audit, maintenance; ADR
    // 0045): the dashboard reads that part again then.
    let node = matches!(kind, Kind::Jobs).then(|| st.shared.changes.subscribe());
    // The job-event stream also carries follows (a job's stream, a topic's tail) so that a
    // browser needs no other connection: its first event names it (ADR 0045).
    let registered = match kind {
        Kind::Jobs => {
            let (id, reg) =
                mux::Registry::register(&st, authed.actor.to_string(), queue.clone(), stop.clone());
            let data = serde_json::json!({ "stream": id }).to_string();
            queue.push_now(event_frame(None, "stream", &data));
            Some(reg)
        }
        Kind::Topic => None,
    };
    let producer = Producer {
        st: st.clone(),
        follower,
        filter,
        changes,
        node,
        stop,
        queue: queue.clone(),
        mux: None,
    };
    tokio::spawn(tracing::Instrument::in_current_span(async move {
        produce(producer, slot).await;
        drop(registered);
        drop(stop_guard);
    }));
    let mut r = Response::new(Body::new(StreamBody::new(queue)));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(r)
}

/// The frames of one stream between its producer and its response body, bounded in bytes.
pub(crate) struct Queue {
    inner: Mutex<Inner>,
    /// Signalled when the body took a frame or went away.
    room: tokio::sync::Notify,
    /// Cancelled when the body is dropped (the client left), or the queue was ended to
    /// make room for others ([`Budget`]).
    gone: CancellationToken,
    cap: usize,
    budget: Arc<Budget>,
}

#[derive(Default)]
struct Inner {
    frames: VecDeque<(Option<String>, Bytes)>,
    bytes: usize,
    /// No frame follows the queued ones.
    closed: bool,
    /// The last event id the body handed to hyper.
    taken: Option<String>,
    /// Where the stream started (its resume point before the body took anything).
    start: Option<String>,
    /// Ended to make room ([`Budget`]): only its `lagged` frame is left.
    evicted: bool,
    waker: Option<Waker>,
}

impl Inner {
    /// The bytes an eviction would give back (none once evicted).
    fn evictable(&self) -> usize {
        if self.evicted { 0 } else { self.bytes }
    }
}

impl Queue {
    fn new(cap: usize, budget: Arc<Budget>) -> Queue {
        Queue {
            inner: Mutex::default(),
            room: tokio::sync::Notify::new(),
            gone: CancellationToken::new(),
            cap,
            budget,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a frame whatever the cap (a small control frame).
    fn push_now(&self, frame: Bytes) {
        self.push_with(None, frame, false);
    }

    fn push_with(&self, id: Option<String>, frame: Bytes, close: bool) {
        let mut q = self.lock();
        if q.closed {
            // Ended (lagged to make room, or closed): nothing follows its last frame.
            return;
        }
        q.bytes += frame.len();
        self.budget.add(frame.len());
        q.frames.push_back((id, frame));
        q.closed |= close;
        if let Some(w) = q.waker.take() {
            w.wake();
        }
    }

    /// Queues a frame if it fits (a frame always fits an empty queue), making room among
    /// all streams' queues first ([`Budget`]); `Err` when it does not fit, or the queue was
    /// ended to make room.
    fn try_push(&self, id: Option<String>, frame: &Bytes) -> Result<(), ()> {
        let fits = {
            let q = self.lock();
            !q.closed && (q.frames.is_empty() || q.bytes + frame.len() <= self.cap)
        };
        if !fits || !self.budget.make_room(frame.len()) || self.gone() {
            return Err(());
        }
        self.push_with(id, frame.clone(), false);
        Ok(())
    }

    /// Ends the stream as lagged to make room for the others: what is queued is dropped
    /// (memory back at once) for `event: lagged` naming the last event its client took
    /// (or where the stream started), and its producers see it gone. A stream that had
    /// ended with its last events unread is cut the same way.
    fn evict(&self) {
        let mut q = self.lock();
        if q.evicted {
            return;
        }
        q.evicted = true;
        let resume = q.taken.clone().or_else(|| q.start.clone());
        let frame = resume_frame("lagged", resume.as_deref());
        self.budget.sub(q.bytes);
        q.frames.clear();
        q.bytes = frame.len();
        self.budget.add(frame.len());
        q.frames.push_back((None, frame));
        q.closed = true;
        if let Some(w) = q.waker.take() {
            w.wake();
        }
        drop(q);
        tracing::info!(
            "SSE stream lagged: the daemon's stream memory is full and it held the most"
        );
        self.gone.cancel();
        // Every producer of the stream (its follows too) stops waiting for room.
        self.room.notify_waiters();
    }

    /// Records where the stream starts: the resume point of a `lagged` end before its
    /// client took anything.
    fn set_start(&self, start: Option<String>) {
        self.lock().start = start;
    }

    fn gone(&self) -> bool {
        self.gone.is_cancelled()
    }

    /// Drops what is queued and ends with `frame` (`lagged`): memory goes back at once.
    fn replace_with_last(&self, frame: Bytes) {
        let mut q = self.lock();
        if q.closed {
            return;
        }
        q.frames.clear();
        self.budget.sub(q.bytes);
        q.bytes = 0;
        drop(q);
        self.push_with(None, frame, true);
    }

    fn close(&self) {
        let mut q = self.lock();
        q.closed = true;
        if let Some(w) = q.waker.take() {
            w.wake();
        }
    }
}

/// The response body: frames from the queue as hyper asks, a comment every
/// [`KEEP_ALIVE`] without one.
struct StreamBody {
    queue: Arc<Queue>,
    keep_alive: Pin<Box<tokio::time::Sleep>>,
}

impl StreamBody {
    fn new(queue: Arc<Queue>) -> StreamBody {
        StreamBody {
            queue,
            keep_alive: Box::pin(tokio::time::sleep(KEEP_ALIVE)),
        }
    }
}

impl hyper::body::Body for StreamBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let popped = {
            let mut q = self.queue.lock();
            match q.frames.pop_front() {
                Some((id, frame)) => {
                    q.bytes = q.bytes.saturating_sub(frame.len());
                    self.queue.budget.sub(frame.len());
                    if id.is_some() {
                        q.taken = id;
                    }
                    Some(Some(frame))
                }
                None if q.closed => Some(None),
                None => {
                    q.waker = Some(cx.waker().clone());
                    None
                }
            }
        };
        match popped {
            Some(Some(frame)) => {
                self.queue.room.notify_one();
                let next = tokio::time::Instant::now() + KEEP_ALIVE;
                self.keep_alive.as_mut().reset(next);
                Poll::Ready(Some(Ok(Frame::data(frame))))
            }
            Some(None) => Poll::Ready(None),
            None => match self.keep_alive.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    let next = tokio::time::Instant::now() + KEEP_ALIVE;
                    self.keep_alive.as_mut().reset(next);
                    Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
                        b": keep-alive\n\n",
                    )))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        let q = self.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        self.budget.sub(q.bytes);
    }
}

impl Drop for StreamBody {
    fn drop(&mut self) {
        self.queue.gone.cancel();
        self.queue.room.notify_one();
    }
}

struct Producer {
    st: Arc<HttpState>,
    follower: Follower,
    filter: Filter,
    changes: tokio::sync::watch::Receiver<crate::subscriptions::Head>,
    /// On the job-event stream: the node's fingerprints (`event: changed`).
    node: Option<tokio::sync::watch::Receiver<crate::shared::NodeChanges>>,
    stop: CancellationToken,
    queue: Arc<Queue>,
    /// A follow on a job-event stream: its frames are `event: follow` of this id, with no
    /// `id:` of their own, and its end never ends the stream.
    mux: Option<String>,
}

enum Ended {
    Gone,
    Lagged,
    Shutdown,
    Error,
}

/// Reads the follower as the topic moves and queues its frames until the client leaves,
/// lags, the daemon stops, or a read fails.
async fn produce(p: Producer, slot: Slot) {
    let Producer {
        st,
        follower,
        filter,
        mut changes,
        mut node,
        stop,
        queue,
        mux,
    } = p;
    if let Some(n) = node.as_mut() {
        // The fingerprints now, first: a client compares later ones with these, and one
        // that reconnects sees at once what moved while it was away.
        let now = *n.borrow_and_update();
        let data = serde_json::to_string(&now).unwrap_or_default();
        queue.push_now(event_frame(None, "changed", &data));
    }
    let limits = &st.shared.limits;
    let (batch, max_bytes, grace) = (
        limits.subscription_batch,
        limits.max_page_bytes,
        limits.lag_grace,
    );
    let filter = Arc::new(filter);
    let mut follower = Some(follower);
    // Where the stream started, then the last message id queued: where a shutdown resumes.
    let start: Option<Ulid> = follower.as_ref().and_then(|f| f.position().1);
    if mux.is_none() {
        queue.set_start(start.map(|u| u.to_string()));
    }
    let mut queued = start;
    let ended = 'outer: loop {
        changes.borrow_and_update();
        let Some(mut f) = follower.take() else {
            break Ended::Error;
        };
        let flt = filter.clone();
        let fid = mux.clone();
        let polled = tokio::task::spawn_blocking(move || {
            let mut frames: Vec<(Ulid, Option<Bytes>)> = Vec::new();
            let mut bytes = 0usize;
            let mut full = false;
            let r = f.poll(batch, |m| {
                let frame = flt.frame(m, fid.as_deref());
                bytes += frame.as_ref().map_or(0, Bytes::len);
                frames.push((m.ulid, frame));
                full = u64::try_from(bytes).unwrap_or(u64::MAX) >= max_bytes;
                Ok(!full)
            });
            (
                f,
                r.map(|(n, gap)| (frames, gap, if full { batch } else { n })),
            )
        })
        .await;
        let Ok((f, result)) = polled else {
            break Ended::Error;
        };
        follower = Some(f);
        let (frames, gap, n) = match result {
            Ok(x) => x,
            Err(e) => {
                tracing::info!(code = %e.code(), error = %e, "stream ended by an error");
                break Ended::Error;
            }
        };
        if let Some(g) = gap {
            let data = serde_json::json!({ "from_seq": g.from_seq, "to_seq": g.to_seq });
            queue.push_now(match &mux {
                Some(f) => mux::frame(f, "gap", None, &data.to_string()),
                None => event_frame(None, "gap", &data.to_string()),
            });
        }
        for (ulid, frame) in frames {
            let Some(frame) = frame else {
                // Filtered out (a job stream): nothing to send, but a resume may start here.
                continue;
            };
            let deadline = tokio::time::Instant::now() + grace;
            loop {
                if queue.gone() {
                    break 'outer Ended::Gone;
                }
                // A follow's frames leave the stream's own resume id alone.
                let id = mux.is_none().then(|| ulid.to_string());
                if queue.try_push(id, &frame).is_ok() {
                    queued = Some(ulid);
                    break;
                }
                tokio::select! {
                    () = queue.room.notified() => {}
                    () = queue.gone.cancelled() => {}
                    () = tokio::time::sleep_until(deadline) => break 'outer Ended::Lagged,
                    () = stop.cancelled() => break 'outer Ended::Shutdown,
                }
            }
        }
        if n >= batch {
            continue;
        }
        tokio::select! {
            () = stop.cancelled() => break Ended::Shutdown,
            () = queue.gone.cancelled() => {}
            changed = changes.changed() => if changed.is_err() { break Ended::Error },
            moved = node_changed(node.as_mut()) => {
                if let Some(c) = moved {
                    let data = serde_json::to_string(&c).unwrap_or_default();
                    queue.push_now(event_frame(None, "changed", &data));
                }
            }
        }
        if queue.gone() {
            break Ended::Gone;
        }
    };
    if let Some(f) = &mux {
        // A follow ends alone: the stream and its other follows go on.
        match ended {
            Ended::Gone | Ended::Shutdown => {}
            Ended::Lagged => {
                let next = queued.map(|u| u.to_string());
                tracing::info!(follow = %f, "SSE follow lagged; follow ended");
                let data = serde_json::json!({ "next_since": next }).to_string();
                queue.push_now(mux::frame(f, "lagged", None, &data));
            }
            Ended::Error => queue.push_now(mux::frame(f, "error", None, "null")),
        }
        drop(slot);
        return;
    }
    match ended {
        Ended::Gone => {}
        Ended::Lagged => {
            let taken = queue
                .lock()
                .taken
                .clone()
                .or_else(|| start.map(|u| u.to_string()));
            tracing::info!("SSE client lagged; stream closed");
            queue.replace_with_last(resume_frame("lagged", taken.as_deref()));
        }
        Ended::Shutdown => {
            let id = queued.map(|u| u.to_string());
            let frame = resume_frame("shutdown", id.as_deref());
            queue.push_with(id, frame, true);
        }
        Ended::Error => queue.close(),
    }
    drop(slot);
}

/// The next change of the node's fingerprints; never, on a stream without
/// them (or once the daemon's sender is gone).
async fn node_changed(
    node: Option<&mut tokio::sync::watch::Receiver<crate::shared::NodeChanges>>,
) -> Option<crate::shared::NodeChanges> {
    let Some(n) = node else {
        return std::future::pending().await;
    };
    if n.changed().await.is_err() {
        return std::future::pending().await;
    }
    Some(*n.borrow_and_update())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_id_event_and_one_data_line() -> Result<(), Box<dyn std::error::Error>> {
        let u: Ulid = "01HAAAAAAAAAAAAAAAAAAAAAAA".parse()?;
        let f = event_frame(Some(&u.to_string()), "message", r#"{"a":1}"#);
        assert_eq!(
            f.as_ref(),
            format!("id: {u}\nevent: message\ndata: {{\"a\":1}}\n\n").as_bytes()
        );
        let l = resume_frame("lagged", None);
        assert_eq!(
            l.as_ref(),
            b"event: lagged\ndata: {\"next_since\":null}\n\n"
        );
        Ok(())
    }

    #[test]
    fn the_queue_is_bounded_in_bytes_but_takes_one_frame_when_empty() {
        let q = Arc::new(Budget::new(usize::MAX)).queue(10);
        let big = Bytes::from(vec![b'x'; 100]);
        assert!(q.try_push(None, &big).is_ok());
        assert!(q.try_push(None, &Bytes::from_static(b"y")).is_err());
        q.replace_with_last(Bytes::from_static(b"end"));
        let inner = q.lock();
        assert_eq!(inner.frames.len(), 1);
        assert!(inner.closed);
    }

    /// Slow readers cannot take the daemon's memory however many streams they open (found
    /// by a black-box test: 60 unread streams of 3 MiB messages held 1.7 GB): past the
    /// daemon-wide budget the queue holding the most ends as lagged, whoever pushes.
    #[test]
    fn past_the_budget_the_largest_queue_ends_as_lagged() {
        let budget = Arc::new(Budget::new(100));
        let frame = |n: usize| Bytes::from(vec![b'x'; n]);
        let slow = budget.queue(1000);
        for _ in 0..3 {
            assert!(slow.try_push(Some("01M9".into()), &frame(30)).is_ok());
        }
        slow.lock().taken = Some("01M8".into());
        let total = || budget.total.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(total(), 90);
        let fast = budget.queue(1000);
        assert!(
            fast.try_push(None, &frame(30)).is_ok(),
            "the fast one is served"
        );
        assert!(slow.gone(), "the slow one is ended");
        {
            let q = slow.lock();
            assert!(q.closed);
            assert_eq!(q.frames.len(), 1);
            let last = String::from_utf8_lossy(&q.frames[0].1).into_owned();
            assert!(
                last.contains("event: lagged") && last.contains("01M8"),
                "{last}"
            );
        }
        assert!(total() <= 100, "{}", total());
        assert!(
            slow.try_push(None, &frame(1)).is_err(),
            "nothing follows its end"
        );
        let held = slow.lock().bytes;
        drop(slow);
        assert_eq!(
            total(),
            30,
            "its last frame ({held} bytes) goes back with it"
        );
        drop(fast);
        assert_eq!(total(), 0);
    }

    /// A stream that ended with its last events unread is cut like any other (the budget
    /// looped on it before), and a frame larger than the whole budget ends nobody.
    #[test]
    fn an_ended_stream_is_cut_too_and_an_oversized_frame_ends_nobody() {
        let budget = Arc::new(Budget::new(100));
        let frame = |n: usize| Bytes::from(vec![b'x'; n]);
        let ended = budget.queue(1000);
        ended.set_start(Some("01M7".into()));
        for _ in 0..3 {
            assert!(ended.try_push(None, &frame(30)).is_ok());
        }
        ended.close();
        let other = budget.queue(1000);
        assert!(other.try_push(None, &frame(10)).is_ok());
        assert!(
            other.try_push(None, &frame(500)).is_err(),
            "over the whole budget"
        );
        assert!(!ended.gone() && !other.gone(), "nobody was cut for it");
        assert!(other.try_push(None, &frame(30)).is_ok(), "room made");
        assert!(ended.gone(), "the ended stream held the most");
        let last = String::from_utf8_lossy(&ended.lock().frames[0].1).into_owned();
        assert!(last.contains("01M7"), "it resumes where it started: {last}");
    }
}
