//! One connection: a reader that frames and dispatches, a writer fed by a byte-bounded
//! outbox, a cap on requests in flight, the TCP auth gate, and a drain on close.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use gatos_api::ops::names::GATOS_AUTH;
use gatos_api::types::AuthParams;
use gatos_rpc::RpcError;
use gatos_rpc::frame::{Decoder, Frame};
use gatos_rpc::message::{self, Entry, Id, Incoming, Response, result, to_line};
use gatos_types::ErrorCode;
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::methods::Quick;
use crate::outbox::{self, Outbox};
use crate::shared::Shared;
use crate::subscriptions::Registry;

/// Who is on the other end.
#[derive(Debug, Clone)]
pub struct Peer {
    /// `stdio`, `unix` or `tcp`.
    pub transport: &'static str,
    /// The address, when there is one.
    pub addr: String,
    /// What the peer must do before it is served.
    pub auth: Auth,
    /// Who its calls act for (`rpc:<uid>` on the Unix socket, `rpc:stdio`, `rpc:tcp`).
    pub actor: gatos_api::Actor,
}

/// What a transport demands before serving a call (ADR 0023).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// stdio: its parent started the daemon, and is trusted.
    Trusted,
    /// The Unix socket: reads are open; a call that writes needs `gatos.auth {token}`
    /// first (any process of the user can connect, a sandboxed job too).
    Writes,
    /// TCP: the first call must be `gatos.auth {token}`, else the connection is closed.
    First,
}

/// A connection's state, shared with its request and subscription tasks.
pub struct Conn {
    /// The server.
    pub shared: Arc<Shared>,
    /// Where responses and notifications go.
    pub outbox: Outbox,
    /// Live subscriptions.
    pub subs: Registry,
    /// Cancels every subscription of the connection.
    pub sub_stop: CancellationToken,
    /// Subscription tasks.
    pub sub_tasks: TaskTracker,
    /// What this transport demands.
    pub auth: Auth,
    /// Whether the peer presented the token (always true on trusted transports).
    pub authenticated: AtomicBool,
    /// Whether the token it presented is marked `ro`: calls that write are refused.
    pub token_read_only: AtomicBool,
    /// The token it presented (its hash and name), once it did: a dashboard session minted
    /// here lives only as long as that token stays in the file.
    pub token: Mutex<Option<([u8; 32], String)>>,
    /// Who its calls act for.
    pub actor: gatos_api::Actor,
    in_flight: Arc<Semaphore>,
    /// One request with a large answer (a page) at a time: its answer is built and
    /// queued before the next one is read, so pages cost at most one at a time on top
    /// of the outbox.
    pages: Arc<Semaphore>,
    requests: TaskTracker,
    handled: AtomicU64,
}

impl Conn {
    /// Records the token the peer presented (`gatos.auth`).
    pub fn presented(&self, e: &crate::transport::token::Entry) {
        *self
            .token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((e.hash(), e.name.clone()));
    }

    /// Whether the token the peer presented is still in the token file, and whether it is
    /// marked `ro` there now: `None` when it presented none (stdio, an anonymous Unix-socket
    /// client), `Some(None)` when a re-read took it out.
    pub fn token_now(&self) -> Option<Option<bool>> {
        let hash = self
            .token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(|(h, _)| *h)?;
        Some(
            self.shared
                .tokens()
                .and_then(|t| t.by_hash(&hash).map(|e| e.read_only)),
        )
    }

    /// The token the peer presented, if it did.
    pub fn token(&self) -> Option<([u8; 32], String)> {
        self.token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

fn unauthorized(message: &str) -> RpcError {
    RpcError::taxonomy(ErrorCode::Unauthorized, message, &serde_json::Map::new())
}

/// Serves one connection until EOF, an I/O error, or `stop`; then drains requests in
/// flight (their answers are written) and closes.
pub async fn serve<R, W>(
    reader: R,
    writer: W,
    peer: Peer,
    shared: Arc<Shared>,
    stop: CancellationToken,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let id = shared.next_id();
    let span =
        tracing::info_span!("conn", conn = id, transport = peer.transport, peer = %peer.addr);
    async move {
        let started = Instant::now();
        shared.connections.fetch_add(1, Ordering::Relaxed);
        shared.connections_total.fetch_add(1, Ordering::Relaxed);
        tracing::info!("connection opened");
        let (outbox, rx) = Outbox::new(shared.limits.outbox_bytes, &shared.outboxes);
        let writer_task = tokio::spawn(outbox::write_loop(writer, rx));
        let conn = Arc::new(Conn {
            outbox,
            subs: Arc::new(Mutex::new(HashMap::new())),
            sub_stop: CancellationToken::new(),
            sub_tasks: TaskTracker::new(),
            auth: peer.auth,
            authenticated: AtomicBool::new(peer.auth == Auth::Trusted),
            token_read_only: AtomicBool::new(false),
            token: Mutex::new(None),
            actor: peer.actor.clone(),
            in_flight: Arc::new(Semaphore::new(shared.limits.max_in_flight)),
            pages: Arc::new(Semaphore::new(1)),
            requests: TaskTracker::new(),
            handled: AtomicU64::new(0),
            shared: shared.clone(),
        });
        read_loop(reader, &conn, &peer, &stop).await;
        conn.requests.close();
        if tokio::time::timeout(shared.limits.drain_timeout, conn.requests.wait())
            .await
            .is_err()
        {
            tracing::warn!("requests still running after the drain timeout; closing anyway");
        }
        conn.sub_stop.cancel();
        conn.sub_tasks.close();
        conn.sub_tasks.wait().await;
        let handled = conn.handled.load(Ordering::Relaxed);
        drop(conn);
        let _ = writer_task.await;
        shared.connections.fetch_sub(1, Ordering::Relaxed);
        tracing::info!(
            requests = handled,
            seconds = started.elapsed().as_secs_f64(),
            "connection closed"
        );
    }
    .instrument(span)
    .await;
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: R,
    conn: &Arc<Conn>,
    peer: &Peer,
    stop: &CancellationToken,
) {
    let limits = &conn.shared.limits;
    let mut authenticated = peer.auth != Auth::First;
    // Before authentication a TCP line is capped at a few KiB (`gatos.auth {token}` is
    // short): an unauthenticated client cannot make us hold megabytes (ADR 0023).
    let mut decoder = Decoder::new(if authenticated {
        limits.max_line
    } else {
        limits.max_unauthenticated_line
    });
    let mut buf = vec![
        0u8;
        if authenticated {
            READ_BUF
        } else {
            PRE_AUTH_READ_BUF
        }
    ];
    let mut frames = Vec::new();
    let auth_deadline = tokio::time::Instant::now() + limits.auth_timeout;
    loop {
        let read = tokio::select! {
            () = stop.cancelled() => return,
            // Closed to make room for others (it held the most unread), or its writer ended.
            () = conn.outbox.closed() => return,
            () = tokio::time::sleep_until(auth_deadline), if !authenticated => {
                let r = Response { id: Id::Null, outcome: Err(unauthorized("no gatos.auth in time")) };
                conn.outbox.send_small(to_line(&r)).await;
                return;
            }
            r = reader.read(&mut buf) => r,
        };
        let n = match read {
            Ok(0) => {
                decoder.finish(&mut frames);
                for frame in frames.drain(..) {
                    if !authenticated {
                        let _ = authenticate(conn, frame).await;
                        return;
                    }
                    on_frame(conn, frame).await;
                }
                return;
            }
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(error = %e, "read failed");
                return;
            }
        };
        // Before authentication, feed one line at a time: the bytes after the
        // `gatos.auth` line go to a decoder with the full cap.
        let mut start = 0;
        while start < n {
            let end = if authenticated {
                n
            } else {
                buf[start..n]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(n, |i| start + i + 1)
            };
            decoder.feed(&buf[start..end], &mut frames);
            start = end;
            for frame in frames.drain(..) {
                if !authenticated {
                    if !authenticate(conn, frame).await {
                        return;
                    }
                    authenticated = true;
                    conn.authenticated.store(true, Ordering::Release);
                    decoder = Decoder::new(limits.max_line);
                    continue;
                }
                on_frame(conn, frame).await;
            }
        }
        if authenticated && buf.len() < READ_BUF {
            buf.resize(READ_BUF, 0);
        }
    }
}

/// Bytes read at a time from an authenticated (or trusted) connection.
const READ_BUF: usize = 64 * 1024;
/// Bytes read at a time before authentication.
const PRE_AUTH_READ_BUF: usize = 4 * 1024;

/// Answers a frame of an authenticated (or trusted) connection.
async fn on_frame(conn: &Arc<Conn>, frame: Frame) {
    let limits = &conn.shared.limits;
    match frame {
        Frame::TooLong => {
            let e = RpcError::taxonomy(
                ErrorCode::PayloadTooLarge,
                format!(
                    "request line longer than {} bytes; skipped",
                    limits.max_line
                ),
                &serde_json::Map::new(),
            );
            tracing::info!(code = "PayloadTooLarge", "request refused");
            conn.outbox
                .send_small(to_line(&Response {
                    id: Id::Null,
                    outcome: Err(e),
                }))
                .await;
        }
        Frame::NotUtf8 => {
            let e = RpcError::parse_error("the line is not UTF-8");
            conn.outbox
                .send_small(to_line(&Response {
                    id: Id::Null,
                    outcome: Err(e),
                }))
                .await;
        }
        Frame::Line(line) => dispatch(conn, line).await,
    }
}

/// The first frame on TCP: `gatos.auth {token}` or the connection is closed.
async fn authenticate(conn: &Arc<Conn>, frame: Frame) -> bool {
    let mut reply_id = Id::Null;
    let ok = match frame {
        Frame::Line(line) => match message::parse(&line) {
            Ok(Incoming::Single(Entry::Request(req)))
                if req.method == GATOS_AUTH && req.id.is_some() =>
            {
                reply_id = req.id.clone().unwrap_or(Id::Null);
                match req.params.parse::<AuthParams>() {
                    Ok(p) => match conn.shared.token_entry(p.token.as_bytes()) {
                        Some(e) => {
                            conn.token_read_only.store(e.read_only, Ordering::Release);
                            conn.presented(&e);
                            true
                        }
                        None => false,
                    },
                    Err(_) => false,
                }
            }
            Ok(Incoming::Single(Entry::Request(req))) => {
                reply_id = req.id.unwrap_or(Id::Null);
                false
            }
            _ => false,
        },
        Frame::TooLong | Frame::NotUtf8 => false,
    };
    let outcome = if ok {
        result(&serde_json::json!({"authenticated": true}))
    } else {
        tracing::info!(
            code = "Unauthorized",
            "connection refused: the first call must be gatos.auth with the right token"
        );
        Err(unauthorized(
            "authentication required: the first call must be gatos.auth {token}",
        ))
    };
    conn.outbox
        .send_small(to_line(&Response {
            id: reply_id,
            outcome,
        }))
        .await;
    ok
}

/// Parses a line and runs what it holds on the connection's request tasks, under the
/// in-flight cap (batch entries count).
async fn dispatch(conn: &Arc<Conn>, line: String) {
    let incoming = match message::parse(&line) {
        Ok(i) => i,
        Err(e) => {
            conn.outbox
                .send_small(to_line(&Response {
                    id: Id::Null,
                    outcome: Err(e),
                }))
                .await;
            return;
        }
    };
    drop(line);
    let entries = match &incoming {
        Incoming::Single(_) => 1,
        Incoming::Batch(v) => v.len(),
    };
    if entries > conn.shared.limits.max_batch {
        let e = RpcError::invalid_request(format!(
            "a batch holds at most {} entries",
            conn.shared.limits.max_batch
        ));
        conn.outbox
            .send_small(to_line(&Response {
                id: Id::Null,
                outcome: Err(e),
            }))
            .await;
        return;
    }
    // A quick call (a plain publish) is answered here, on the reader's task: no request
    // task, no hand-off (ADR 0046, session 14). A publish that finds its topic's group
    // commit under way parks (session 15): its answer is awaited on a request task, which
    // takes an in-flight permit as every request does, and this task reads on once it has
    // one. Anything else, or one that would wait, goes on as every request does.
    let mut tried_now = false;
    let mut parked = None;
    // A quick call tried here first is timed from now, also when it is made again below (it
    // would have waited, or its parked group would have); any other from when it runs.
    let arrived = std::time::Instant::now();
    let mut since = None;
    if let Incoming::Single(Entry::Request(req)) = &incoming
        && let Some(id) = &req.id
    {
        tried_now = true;
        match crate::methods::call_now(conn, &req.method, &req.params) {
            Some(Quick::Answered(outcome)) => {
                answer_now(conn, id.clone(), &req.method, outcome).await;
                return;
            }
            Some(Quick::Parked(p)) => {
                parked = Some((p, id.clone()));
                since = Some(arrived);
            }
            Some(Quick::WouldWait) => since = Some(arrived),
            None => {}
        }
    }
    let want = u32::try_from(entries.min(conn.shared.limits.max_in_flight)).unwrap_or(1);
    let Ok(permit) = conn.in_flight.clone().acquire_many_owned(want).await else {
        return;
    };
    let task_conn = conn.clone();
    let task = async move {
        let _permit = permit;
        if let Some((p, id)) = parked {
            let method = p.method();
            if let Some(outcome) = p.answer(&task_conn).await {
                answer_now(&task_conn, id, method, outcome).await;
                return;
            }
            tracing::debug!(
                method,
                "a parked call's group would have waited: made again"
            );
        }
        let is_large =
            |e: &Entry| matches!(e, Entry::Request(r) if crate::methods::large(&r.method));
        match incoming {
            Incoming::Single(entry) => {
                let _page = match is_large(&entry) {
                    true => task_conn.pages.clone().acquire_owned().await.ok(),
                    false => None,
                };
                if task_conn.outbox.is_closed() {
                    // Closed to make room for others: nobody would get the answer.
                    return;
                }
                let (response, after) = handle(&task_conn, entry, tried_now, since).await;
                if let Some(r) = response {
                    task_conn.outbox.send(to_line(&r)).await;
                }
                if let Some(go) = after {
                    let _ = go.send(());
                }
            }
            Incoming::Batch(entries) => {
                let _page = match entries.iter().any(is_large) {
                    true => task_conn.pages.clone().acquire_owned().await.ok(),
                    false => None,
                };
                // A batch's answer is one line: once it holds the outbox's worth of
                // bytes, the entries left are not run and are answered PayloadTooLarge.
                let cap = task_conn.shared.limits.outbox_bytes;
                let mut answer = String::from("[");
                let mut starts = Vec::new();
                for entry in entries {
                    if task_conn.outbox.is_closed() {
                        return;
                    }
                    let response = if answer.len() >= cap {
                        skipped(entry, cap)
                    } else {
                        let (response, after) = handle(&task_conn, entry, false, None).await;
                        starts.extend(after);
                        response
                    };
                    if let Some(r) = response {
                        if answer.len() > 1 {
                            answer.push(',');
                        }
                        answer.push_str(&to_line(&r));
                    }
                }
                if answer.len() > 1 {
                    answer.push(']');
                    task_conn.outbox.send(answer).await;
                }
                for go in starts {
                    let _ = go.send(());
                }
            }
        }
    };
    conn.requests.spawn(task.in_current_span());
}

/// Sends the answer of a call made without a request task (`methods::call_now`).
async fn answer_now(conn: &Conn, id: Id, method: &str, outcome: Result<Box<RawValue>, RpcError>) {
    conn.handled.fetch_add(1, Ordering::Relaxed);
    if let Err(e) = &outcome {
        tracing::info!(method = %method, code = e.taxonomy_code().unwrap_or("-"), rpc = e.code, "request failed");
    }
    conn.outbox.send(to_line(&Response { id, outcome })).await;
}

/// The answer to a batch entry that was not run because the batch's answer was full.
fn skipped(entry: Entry, cap: usize) -> Option<Response> {
    match entry {
        Entry::Request(req) => req.id.map(|id| Response {
            id,
            outcome: Err(RpcError::taxonomy(
                ErrorCode::PayloadTooLarge,
                format!(
                    "the batch's answer reached {cap} bytes; this entry was not run (send it again)"
                ),
                &serde_json::Map::new(),
            )),
        }),
        Entry::Invalid(id, e) => Some(Response {
            id,
            outcome: Err(e),
        }),
    }
}

/// `tried_now`: the reader tried the call without waiting first (`methods::call_now`).
/// Runs one entry; `since` is when a call tried first on the reader's task arrived (its
/// request metrics time it from there).
async fn handle(
    conn: &Arc<Conn>,
    entry: Entry,
    tried_now: bool,
    since: Option<std::time::Instant>,
) -> (Option<Response>, Option<crate::methods::After>) {
    conn.handled.fetch_add(1, Ordering::Relaxed);
    let req = match entry {
        Entry::Request(r) => r,
        Entry::Invalid(id, e) => {
            return (
                Some(Response {
                    id,
                    outcome: Err(e),
                }),
                None,
            );
        }
    };
    if req.is_notification() && crate::methods::answer_required(&req.method) {
        tracing::debug!(method = %req.method, "notification of a method whose answer is the point; not run");
        return (None, None);
    }
    let span = tracing::debug_span!("request", method = %req.method);
    let (outcome, after) = crate::methods::call(conn, &req.method, req.params, tried_now, since)
        .instrument(span)
        .await;
    if let Err(e) = &outcome {
        tracing::info!(method = %req.method, code = e.taxonomy_code().unwrap_or("-"), rpc = e.code, "request failed");
    }
    match req.id {
        // A notification that was run: no answer (and nothing to start after one).
        None => (None, None),
        Some(id) => (Some(Response { id, outcome }), after),
    }
}
