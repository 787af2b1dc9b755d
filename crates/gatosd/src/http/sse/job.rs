//! The job stream (issue #17, ADR 0039): `GET /api/v1/jobs/{id}/stream` (`jobs.follow`).
//!
//! `event: state` (the job as `jobs.get` returns it), then `event: job` (this job's events
//! from `gatos.jobs`, as `jobs.watch` sends them) and `event: log` (chunks as `jobs.logs`
//! returns them, attempt by attempt, from the library's log follower), and last `event: end`
//! (the final job, with its end reason); then the stream closes. Every event's id is the
//! cursor [`FollowCursor`] `<gatos.jobs ULID or 0>.<attempt>.<stdout>.<stderr>`, so
//! `Last-Event-ID` resumes both halves exactly.
//!
//! No blocking thread waits: each wake-up (a change of `gatos.jobs` from the shared
//! watchers, or a back-off pause of [`FOLLOW_POLL`] while a log may grow) is one short
//! look on the blocking pool, at the events and at the log without waiting.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use axum::response::Response;
use gatos::jobs::logs::{FOLLOW_POLL, Follow, FollowCursor, FollowOptions, LogChunk};
use gatos::messages::{Cursor, Follower};
use gatos_api::service::CallError;
use gatos_api::types::{FollowLagged, FollowParams, JobIdParams, WatchParams};
use gatos_rpc::message::{Notification, to_line};
use gatos_types::jobs::{JobEventKind, JobRow};
use gatos_types::{ErrorCode, Ulid};
use hyper::body::Bytes;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use super::{
    ConnStop, HttpState, Queue, RETRY, Slot, StreamBody, event_frame, invalid, query_params,
    request_schema, resume_frame,
};
use crate::http::guard::Authed;
use crate::http::problem::Problem;
use crate::outbox::Outbox;
use crate::shared::Shared;

/// How long a stream that saw the job running waits, once the job has ended, for the
/// ending event on `gatos.jobs` (published just after the ending commit) before it sends
/// `end` without it.
pub const END_EVENT_GRACE: Duration = Duration::from_secs(2);

/// The job stream's path.
pub const JOB_STREAM: &str = "/api/v1/jobs/{id}/stream";

fn cursor_of(req: &Request, since: Option<&str>) -> Result<Option<FollowCursor>, Problem> {
    let (text, field) = match req.headers().get("last-event-id") {
        Some(v) => (
            v.to_str()
                .map_err(|_| {
                    Problem::new(ErrorCode::InvalidInput, "Last-Event-ID is not text")
                        .with("field", "Last-Event-ID")
                })?
                .trim()
                .to_owned(),
            "Last-Event-ID",
        ),
        None => (since.unwrap_or("").trim().to_owned(), "since"),
    };
    if text.is_empty() {
        return Ok(None);
    }
    text.parse::<FollowCursor>()
        .map(Some)
        .map_err(|e| Problem::from_error(&e).with("field", field))
}

/// Opens a job stream: the job and the start resolved before the 200.
pub(super) async fn open(st: Arc<HttpState>, req: Request) -> Result<Response, Problem> {
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
    let seg = req
        .uri()
        .path()
        .strip_prefix("/api/v1/jobs/")
        .and_then(|s| s.strip_suffix("/stream"))
        .unwrap_or("")
        .to_owned();
    let schema = request_schema(gatos_api::ops::names::JOBS_FOLLOW);
    let params = query_params(&req, &schema, Some(("id", seg)))?;
    let p: FollowParams = serde_json::from_value(Value::Object(params)).map_err(|e| invalid(&e))?;
    let resume = cursor_of(&req, p.since.as_deref())?;
    let logs = p.logs.unwrap_or(true);
    let id = p.id;
    let slot = Slot::take(&st, authed.actor.to_string())?;
    let shared = st.shared.clone();
    let job = tokio::task::spawn_blocking(move || start(&shared, id, resume, logs, stop))
        .await
        .map_err(|_| Problem::new(ErrorCode::Internal, "the follow task failed"))?
        .map_err(Problem::from_call)?;
    let queue = st.streams.budget.queue(st.shared.limits.outbox_bytes);
    queue.push_now(Bytes::from(format!("retry: {}\n\n", RETRY.as_millis())));
    let sink = Sink::Sse(queue.clone());
    tokio::spawn(tracing::Instrument::in_current_span(async move {
        run(job, &sink).await;
        drop(slot);
        drop(stop_guard);
    }));
    let mut r = Response::new(Body::new(StreamBody::new(queue)));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(r)
}

/// A job stream ready to run: the job as it was, where it starts, its two followers.
pub(crate) struct Job {
    shared: Arc<Shared>,
    id: Ulid,
    row: JobRow,
    cursor: FollowCursor,
    follower: Follower,
    follow: Option<Follow>,
    changes: tokio::sync::watch::Receiver<crate::subscriptions::Head>,
    stop: CancellationToken,
}

impl Job {
    /// Where the stream starts (the answer of the JSON-RPC subscription).
    pub(crate) fn cursor(&self) -> FollowCursor {
        self.cursor
    }
}

/// Resolves a job stream's start, blocking (run it on the blocking pool): the job (an
/// unknown one is `NotFound` before anything else is read), the `gatos.jobs` follower after
/// the cursor's event (else only new events), the log follower at its position. `stop`
/// ends the stream (the connection's, or the subscription's).
///
/// # Errors
/// `NotFound` for an unknown job; a failed read.
pub(crate) fn start(
    shared: &Arc<Shared>,
    id: Ulid,
    resume: Option<FollowCursor>,
    logs: bool,
    stop: CancellationToken,
) -> Result<Job, CallError> {
    let gatos = &shared.gatos;
    let row = shared.service.jobs_get(JobIdParams { id })?;
    let since = match resume {
        Some(FollowCursor { event: Some(u), .. }) => Cursor::Ulid(u),
        // Resumed from a stream that had gone past no event: every event since.
        Some(FollowCursor { event: None, .. }) => Cursor::Start,
        None => Cursor::End,
    };
    let topic = gatos::jobs::events_topic();
    let follower = gatos
        .messages()
        .follow(&topic, since)
        .map_err(CallError::Failed)?;
    // Read again after the follower stands: an event the first read missed follows.
    let row = if resume.is_none() {
        shared.service.jobs_get(JobIdParams { id })?
    } else {
        row
    };
    let follow = if logs {
        let f = gatos
            .jobs()
            .follow_logs(id, &FollowOptions::default())
            .map_err(CallError::Failed)?;
        Some(f.resume(resume.map(|c| c.log).unwrap_or_default()))
    } else {
        None
    };
    let cursor = FollowCursor {
        event: follower.position().1,
        log: follow.as_ref().map(Follow::position).unwrap_or_default(),
    };
    let changes = shared.watchers.watch(&topic, follower.last_head());
    Ok(Job {
        shared: shared.clone(),
        id,
        row,
        cursor,
        follower,
        follow,
        changes,
        stop,
    })
}

/// Where a job stream's events go.
pub(crate) enum Sink {
    /// Server-sent events into a response body's queue.
    Sse(Arc<Queue>),
    /// `event: follow` frames of follow `follow` into a job-event stream's queue (ADR 0045).
    Mux {
        /// The job-event stream's queue.
        queue: Arc<Queue>,
        /// The follow's id.
        follow: String,
    },
    /// JSON-RPC notifications of subscription `subscription` into a connection's outbox.
    Rpc {
        /// The connection's outbox.
        outbox: Outbox,
        /// The subscription's id.
        subscription: String,
    },
}

/// The params of a `jobs.follow` notification: `{subscription, cursor, <key>: data}`, the
/// data already JSON.
struct NoticeWire<'a> {
    subscription: &'a str,
    cursor: &'a str,
    key: &'static str,
    data: &'a RawValue,
}

impl serde::Serialize for NoticeWire<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("subscription", self.subscription)?;
        m.serialize_entry("cursor", self.cursor)?;
        m.serialize_entry(self.key, self.data)?;
        m.end()
    }
}

/// The JSON-RPC notification of each event of a job stream, and its data's key.
fn method_of(event: &str) -> (&'static str, &'static str) {
    use gatos_api::ops::names as n;
    match event {
        "state" => (n::JOBS_STATE, "job"),
        "job" => (n::JOBS_EVENT, "event"),
        "log" => (n::JOBS_LOG, "chunk"),
        _ => (n::JOBS_END, "job"),
    }
}

impl Sink {
    /// Queues one event, waiting for room up to the lag grace.
    async fn send(
        &self,
        stop: &CancellationToken,
        grace: Duration,
        id: String,
        event: &'static str,
        data: String,
    ) -> Result<(), Ended> {
        match self {
            Sink::Sse(_) | Sink::Mux { .. } => {
                let (queue, frame, own) = match self {
                    Sink::Mux { queue, follow } => {
                        // No `id:`: the stream's own resume id stays its own.
                        (
                            queue,
                            super::mux::frame(follow, event, Some(&id), &data),
                            None,
                        )
                    }
                    Sink::Sse(queue) => (queue, event_frame(Some(&id), event, &data), Some(id)),
                    Sink::Rpc { .. } => return Err(Ended::Error),
                };
                let deadline = tokio::time::Instant::now() + grace;
                loop {
                    if queue.gone() {
                        return Err(Ended::Gone);
                    }
                    if queue.try_push(own.clone(), &frame).is_ok() {
                        return Ok(());
                    }
                    tokio::select! {
                        () = queue.room.notified() => {}
                        () = queue.gone.cancelled() => {}
                        () = tokio::time::sleep_until(deadline) => return Err(Ended::Lagged),
                        () = stop.cancelled() => return Err(Ended::Shutdown),
                    }
                }
            }
            Sink::Rpc {
                outbox,
                subscription,
            } => {
                let data = RawValue::from_string(data).map_err(|_| Ended::Error)?;
                let (method, key) = method_of(event);
                let line = to_line(&Notification::new(
                    method,
                    NoticeWire {
                        subscription,
                        cursor: &id,
                        key,
                        data: &data,
                    },
                ));
                let line = match outbox.try_send(line) {
                    Ok(()) => return Ok(()),
                    Err(line) => line,
                };
                tokio::select! {
                    sent = tokio::time::timeout(grace, outbox.send(line)) => match sent {
                        Ok(true) => Ok(()),
                        Ok(false) => Err(Ended::Gone),
                        Err(_) => Err(Ended::Lagged),
                    },
                    () = stop.cancelled() => Err(Ended::Gone),
                }
            }
        }
    }

    /// Resolves when the reader has gone (the SSE client; a subscription's end is its stop).
    async fn gone(&self) {
        match self {
            Sink::Sse(queue) | Sink::Mux { queue, .. } => queue.gone.cancelled().await,
            Sink::Rpc { .. } => std::future::pending().await,
        }
    }

    /// Ends the stream as `ended` says.
    async fn finish(&self, ended: Ended, last: Option<String>) {
        match self {
            // A follow ends alone: the stream and its other follows go on.
            Sink::Mux { queue, follow } => match ended {
                Ended::Done | Ended::Gone | Ended::Shutdown => {}
                Ended::Error => queue.push_now(super::mux::frame(follow, "error", None, "null")),
                Ended::Lagged => {
                    tracing::info!(follow = %follow, "SSE follow lagged; job follow ended");
                    let data = serde_json::json!({ "next_since": last }).to_string();
                    queue.push_now(super::mux::frame(follow, "lagged", None, &data));
                }
            },
            Sink::Sse(queue) => match ended {
                Ended::Done | Ended::Error => queue.close(),
                Ended::Gone => {}
                Ended::Lagged => {
                    let taken = queue.lock().taken.clone();
                    tracing::info!("SSE client lagged; job stream closed");
                    queue.replace_with_last(resume_frame("lagged", taken.as_deref()));
                }
                Ended::Shutdown => {
                    let id = {
                        let q = queue.lock();
                        q.frames
                            .iter()
                            .rev()
                            .find_map(|(id, _)| id.clone())
                            .or_else(|| q.taken.clone())
                    };
                    let frame = resume_frame("shutdown", id.as_deref());
                    queue.push_with(id, frame, true);
                }
            },
            Sink::Rpc {
                outbox,
                subscription,
            } => {
                if let Ended::Lagged = ended {
                    tracing::info!(subscription = %subscription, "subscriber lagged; job follow closed");
                    let notice = to_line(&Notification::new(
                        gatos_api::ops::names::JOBS_LAGGED,
                        FollowLagged {
                            subscription: subscription.clone(),
                            next_since: last,
                        },
                    ));
                    outbox.send_small(notice).await;
                }
            }
        }
    }
}

/// What one look found.
struct Look {
    /// Admitted events: the message's ULID and the event as `jobs.watch` sends it.
    events: Vec<(Ulid, JobEventKind, Value)>,
    /// Where the events follower stands afterwards.
    event_pos: Option<Ulid>,
    /// A full batch of `gatos.jobs` was read: more may wait, look again at once.
    more: bool,
    chunks: Vec<LogChunk>,
    /// The job, when it has ended and its log (if followed) has too.
    ended: Option<JobRow>,
}

fn look(
    shared: &Shared,
    id: Ulid,
    follower: &mut Follower,
    follow: Option<&mut Follow>,
) -> Result<Look, gatos::Error> {
    let limits = &shared.limits;
    let filter = WatchParams {
        job: Some(id),
        ..WatchParams::default()
    };
    let mut events = Vec::new();
    let (n, _gap) = follower.poll(limits.subscription_batch, |m| {
        if let Some(ev) = filter.admits(m.payload.get()) {
            let kind = ev.event.clone();
            let mut v = serde_json::to_value(&ev).unwrap_or_default();
            if let Some(obj) = v.as_object_mut() {
                obj.insert("ulid".into(), Value::String(m.ulid.to_string()));
            }
            events.push((m.ulid, kind, v));
        }
        Ok(true)
    })?;
    let mut chunks = Vec::new();
    let mut bytes = 0u64;
    let log_ended = match follow {
        Some(f) => {
            while bytes < limits.max_page_bytes {
                match f.next_before(Instant::now())? {
                    Some(c) => {
                        bytes += c.data.len() as u64;
                        if !c.data.is_empty() {
                            chunks.push(c);
                        }
                    }
                    None => break,
                }
            }
            f.is_ended()
        }
        None => true,
    };
    let more = n >= limits.subscription_batch;
    let ended = if log_ended && chunks.is_empty() && !more {
        let row = shared
            .service
            .jobs_get(JobIdParams { id })
            .map_err(|e| match e {
                gatos_api::service::CallError::Failed(e) => e,
                other => gatos::Error::new(ErrorCode::Internal, other.to_string()),
            })?;
        row.state.is_final().then_some(row)
    } else {
        None
    };
    Ok(Look {
        events,
        event_pos: follower.position().1,
        more,
        chunks,
        ended,
    })
}

enum Ended {
    Done,
    Gone,
    Lagged,
    Shutdown,
    Error,
}

fn json(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned())
}

/// Runs a job stream into `sink` until its end, the reader leaving, a lag, a stop or an
/// error.
pub(crate) async fn run(j: Job, sink: &Sink) {
    let Job {
        shared,
        id,
        row,
        mut cursor,
        follower,
        follow,
        mut changes,
        stop,
    } = j;
    let grace = shared.limits.lag_grace;
    // The id of the last event queued: where a lagged subscription resumes.
    let mut last: Option<String> = None;
    // A job seen running waits (a little) for its ending event before `end`.
    let seen_running = !row.state.is_final();
    let mut saw_end_event = false;
    let mut ended_at: Option<tokio::time::Instant> = None;
    let mut state = Some((follower, follow));
    let mut pause = FOLLOW_POLL.0;
    let ended = 'run: {
        let id0 = cursor.to_string();
        if let Err(e) = sink
            .send(&stop, grace, id0.clone(), "state", json(&row))
            .await
        {
            break 'run e;
        }
        last = Some(id0);
        loop {
            changes.borrow_and_update();
            let Some((mut follower, mut follow)) = state.take() else {
                break 'run Ended::Error;
            };
            let sh = shared.clone();
            let looked = tokio::task::spawn_blocking(move || {
                let r = look(&sh, id, &mut follower, follow.as_mut());
                (follower, follow, r)
            })
            .await;
            let Ok((follower, follow, result)) = looked else {
                break 'run Ended::Error;
            };
            // A log that may grow: the job has an attempt and the log has not ended. A
            // pending job is woken by its `claimed` event instead.
            let following = follow
                .as_ref()
                .is_some_and(|f| !f.is_ended() && f.attempt() > 0);
            state = Some((follower, follow));
            let look = match result {
                Ok(l) => l,
                Err(e) => {
                    tracing::info!(code = %e.code(), error = %e, "job stream ended by an error");
                    break 'run Ended::Error;
                }
            };
            let moved = look.more || !look.events.is_empty() || !look.chunks.is_empty();
            for (ulid, kind, ev) in look.events {
                saw_end_event |= matches!(
                    kind,
                    JobEventKind::Succeeded | JobEventKind::Failed | JobEventKind::Cancelled
                );
                cursor.event = Some(ulid);
                let cid = cursor.to_string();
                if let Err(e) = sink.send(&stop, grace, cid.clone(), "job", json(&ev)).await {
                    break 'run e;
                }
                last = Some(cid);
            }
            cursor.event = look.event_pos.or(cursor.event);
            for c in look.chunks {
                if c.attempt != cursor.log.attempt {
                    cursor.log = gatos::jobs::logs::Position {
                        attempt: c.attempt,
                        ..Default::default()
                    };
                }
                match c.stream {
                    gatos::jobs::logs::Stream::Stdout => cursor.log.stdout = c.next_offset,
                    gatos::jobs::logs::Stream::Stderr => cursor.log.stderr = c.next_offset,
                }
                let cid = cursor.to_string();
                if let Err(e) = sink.send(&stop, grace, cid.clone(), "log", json(&c)).await {
                    break 'run e;
                }
                last = Some(cid);
            }
            if let Some(row) = look.ended {
                let now = tokio::time::Instant::now();
                let since = *ended_at.get_or_insert(now);
                if !seen_running || saw_end_event || now >= since + END_EVENT_GRACE {
                    let cid = cursor.to_string();
                    if let Err(e) = sink.send(&stop, grace, cid, "end", json(&row)).await {
                        break 'run e;
                    }
                    break 'run Ended::Done;
                }
            }
            if moved {
                pause = FOLLOW_POLL.0;
                continue;
            }
            // Nothing new: wait for an event of gatos.jobs, or (while a log may grow, or
            // while the ending event is awaited) a pause that grows to FOLLOW_POLL.1.
            let timed = following || ended_at.is_some();
            let nap = tokio::time::sleep(pause);
            tokio::select! {
                () = stop.cancelled() => break 'run Ended::Shutdown,
                () = sink.gone() => break 'run Ended::Gone,
                changed = changes.changed() => if changed.is_err() { break 'run Ended::Error },
                () = nap, if timed => {}
            }
            pause = (pause * 2).min(FOLLOW_POLL.1);
        }
    };
    sink.finish(ended, last).await;
}
