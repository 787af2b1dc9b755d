//! The MCP face's line transport (ADR 0043): newline-delimited JSON-RPC under rmcp, with the
//! daemon's framing rules instead of rmcp's own line reader.
//!
//! rmcp's reader drops a line that is not JSON without a word (rust-sdk issue 938); gatos
//! answers it, as its JSON-RPC face does (DESIGN §6): `-32700` for a line that is not
//! JSON, `-32600` for JSON that is no MCP message (a batch included; MCP has none since
//! 2025-06-18), `-32600` with `data.code = PayloadTooLarge` for a line past the cap, whose
//! bytes are skipped to the next newline. The stream goes on after each. Everything else
//! (the lifecycle, both protocol eras, dispatch) is rmcp's.

use std::future::Future;
use std::io;
use std::sync::Arc;

use gatos_rpc::RpcError;
use gatos_rpc::frame::{Decoder, Frame};
use gatos_types::ErrorCode;
use rmcp::RoleServer;
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::Mutex;

/// The most bytes read from the input at once.
const READ_CHUNK: usize = 64 * 1024;

/// Requests read and not answered yet: past it, no more input is read until an answer is
/// written, so a client that does not read its answers stops being served instead of
/// growing the daemon's memory. (So at most 64 calls of one stdio session run at once: with
/// 64 long waits running, the next line, a cancel included, is read when one ends.)
pub const MAX_UNANSWERED: usize = 64;

/// The requests read and not yet answered, by id (a cancelled one counts no more).
#[derive(Default)]
struct Unanswered {
    ids: std::sync::Mutex<std::collections::HashSet<String>>,
    answered: tokio::sync::Notify,
}

impl Unanswered {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn remove(&self, id: &str) {
        if self.lock().remove(id) {
            self.answered.notify_one();
        }
    }

    /// Waits until fewer than [`MAX_UNANSWERED`] requests wait for their answer.
    async fn room(&self) {
        loop {
            let notified = self.answered.notified();
            if self.lock().len() < MAX_UNANSWERED {
                return;
            }
            notified.await;
        }
    }
}

/// An id as the key of [`Unanswered`].
fn key(id: &rmcp::model::RequestId) -> String {
    serde_json::to_string(id).unwrap_or_default()
}

/// A JSON-RPC line transport over a reader and a writer (stdin and stdout for
/// `gatosd mcp --stdio`; any pair in tests).
pub struct Lines<R, W> {
    read: R,
    write: Arc<Mutex<W>>,
    decoder: Decoder,
    frames: std::collections::VecDeque<Frame>,
    eof: bool,
    unanswered: Arc<Unanswered>,
    /// A request came: the session started. Before it, a notification or a response
    /// means nothing (no session to notify, no request answered) and is skipped, instead of
    /// ending the session before it began.
    started: bool,
}

impl<R, W> Lines<R, W>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    /// A transport reading lines of at most `max_line` bytes from `read`, writing to
    /// `write`.
    pub fn new(read: R, write: W, max_line: usize) -> Lines<R, W> {
        Lines {
            read,
            write: Arc::new(Mutex::new(write)),
            decoder: Decoder::new(max_line),
            frames: std::collections::VecDeque::new(),
            eof: false,
            unanswered: Arc::default(),
            started: false,
        }
    }

    /// The next frame, reading more input when none is decoded; `None` at the end.
    async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = self.frames.pop_front() {
                return Some(f);
            }
            if self.eof {
                return None;
            }
            let mut chunk = vec![0u8; READ_CHUNK];
            let mut out = Vec::new();
            match self.read.read(&mut chunk).await {
                Ok(0) => {
                    self.eof = true;
                    self.decoder.finish(&mut out);
                }
                Ok(n) => self.decoder.feed(&chunk[..n], &mut out),
                Err(e) => {
                    tracing::debug!(error = %e, "reading the MCP input failed");
                    self.eof = true;
                }
            }
            self.frames.extend(out);
        }
    }
}

/// Writes one protocol error line (`id` null unless the message had one).
async fn refuse<W: AsyncWrite + Unpin>(write: Arc<Mutex<W>>, id: Value, e: RpcError) {
    tracing::debug!(code = e.code, message = %e.message, "MCP input refused");
    let line = json!({"jsonrpc": "2.0", "id": id, "error": e});
    let _ = write_line(&write, &line).await;
}

async fn write_line<W, T>(write: &Mutex<W>, item: &T) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
    T: serde::Serialize,
{
    let mut line = serde_json::to_vec(item).map_err(io::Error::other)?;
    line.push(b'\n');
    let mut w = write.lock().await;
    w.write_all(&line).await?;
    w.flush().await
}

/// The id of a message that is no MCP message, when it has a usable one.
fn id_of(v: &Value) -> Value {
    match v.get("id") {
        Some(id @ (Value::String(_) | Value::Number(_))) => id.clone(),
        _ => Value::Null,
    }
}

impl<R, W> rmcp::transport::Transport<RoleServer> for Lines<R, W>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    type Error = io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let write = self.write.clone();
        let unanswered = self.unanswered.clone();
        async move {
            let answered = match &item {
                rmcp::model::JsonRpcMessage::Response(r) => Some(key(&r.id)),
                rmcp::model::JsonRpcMessage::Error(e) => e.id.as_ref().map(key),
                _ => None,
            };
            let r = write_line(&write, &item).await;
            if let Some(id) = answered {
                unanswered.remove(&id);
            }
            r
        }
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        self.unanswered.room().await;
        loop {
            let line = match self.next_frame().await? {
                Frame::Line(l) => l,
                Frame::TooLong => {
                    let e = RpcError::taxonomy(
                        ErrorCode::PayloadTooLarge,
                        "the line is longer than the daemon's --max-line; it was skipped",
                        &serde_json::Map::new(),
                    );
                    let e = RpcError {
                        code: gatos_rpc::error::INVALID_REQUEST,
                        ..e
                    };
                    refuse(self.write.clone(), Value::Null, e).await;
                    continue;
                }
                Frame::NotUtf8 => {
                    refuse(
                        self.write.clone(),
                        Value::Null,
                        RpcError::parse_error("the line is not UTF-8"),
                    )
                    .await;
                    continue;
                }
            };
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let value: Value = match serde_json::from_str(line) {
                Ok(v) => v,
                Err(e) => {
                    refuse(self.write.clone(), Value::Null, RpcError::parse_error(e)).await;
                    continue;
                }
            };
            if value.is_array() {
                refuse(
                    self.write.clone(),
                    Value::Null,
                    RpcError::invalid_request("MCP has no batches: send one message a line"),
                )
                .await;
                continue;
            }
            let id = id_of(&value);
            match serde_json::from_value::<RxJsonRpcMessage<RoleServer>>(value) {
                Ok(m) if !self.started && !matches!(m, rmcp::model::JsonRpcMessage::Request(_)) => {
                    tracing::debug!("an MCP message before the first request: skipped");
                }
                Ok(m) => {
                    self.started = true;
                    match &m {
                        // A listen is answered only when it ends: it waits for no answer
                        // (its notifications count in the watches' own caps).
                        rmcp::model::JsonRpcMessage::Request(r)
                            if !matches!(
                                r.request,
                                rmcp::model::ClientRequest::SubscriptionsListenRequest(_)
                            ) =>
                        {
                            self.unanswered.lock().insert(key(&r.id));
                        }
                        rmcp::model::JsonRpcMessage::Notification(n) => {
                            // A cancelled request may get no answer: it waits no more.
                            if let rmcp::model::ClientNotification::CancelledNotification(c) =
                                &n.notification
                                && let Some(id) = &c.params.request_id
                            {
                                self.unanswered.remove(&key(id));
                            }
                        }
                        _ => {}
                    }
                    return Some(m);
                }
                Err(e) => refuse(self.write.clone(), id, RpcError::invalid_request(e)).await,
            }
        }
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        let write = self.write.clone();
        async move { write.lock().await.flush().await }
    }
}
