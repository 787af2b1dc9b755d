//! What a connection sends: one writer task per connection, fed through a queue bounded in
//! bytes, so a client that stops reading stops being served instead of growing memory.

use std::sync::Arc;

use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// One line to write; its budget is released once written.
pub struct Outgoing {
    line: String,
    _permit: Option<OwnedSemaphorePermit>,
}

/// The sending side of a connection.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Outgoing>,
    budget: Arc<Semaphore>,
    max: usize,
}

/// Frames waiting in the channel, on top of the byte budget.
const QUEUE: usize = 1024;

impl Outbox {
    /// Makes an outbox with `bytes` of budget, and the receiving end for the writer.
    pub fn new(bytes: usize) -> (Outbox, mpsc::Receiver<Outgoing>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (
            Outbox {
                tx,
                budget: Arc::new(Semaphore::new(bytes)),
                max: bytes,
            },
            rx,
        )
    }

    /// What a line costs: its real bytes with the newline. A line larger than the whole
    /// budget takes all of it, so it waits until everything before it is written and
    /// nothing else is queued beside it.
    fn cost(&self, line: &str) -> u32 {
        u32::try_from(line.len().saturating_add(1).min(self.max)).unwrap_or(u32::MAX)
    }

    /// Queues a line, waiting for budget (backpressure). False when the connection is gone.
    pub async fn send(&self, line: String) -> bool {
        let Ok(permit) = self
            .budget
            .clone()
            .acquire_many_owned(self.cost(&line))
            .await
        else {
            return false;
        };
        self.tx
            .send(Outgoing {
                line,
                _permit: Some(permit),
            })
            .await
            .is_ok()
    }

    /// Queues a line if there is budget right now; gives the line back if not.
    pub fn try_send(&self, line: String) -> Result<(), String> {
        let Ok(permit) = self.budget.clone().try_acquire_many_owned(self.cost(&line)) else {
            return Err(line);
        };
        self.tx
            .try_send(Outgoing {
                line,
                _permit: Some(permit),
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(o) | mpsc::error::TrySendError::Closed(o) => o.line,
            })
    }

    /// Queues a small line regardless of the budget (errors and `lagged` notices).
    pub async fn send_small(&self, line: String) -> bool {
        self.tx
            .send(Outgoing {
                line,
                _permit: None,
            })
            .await
            .is_ok()
    }
}

/// Writes queued lines until every sender is gone; flushes whenever the queue runs dry.
pub async fn write_loop<W: AsyncWrite + Unpin>(writer: W, mut rx: mpsc::Receiver<Outgoing>) {
    let mut w = BufWriter::with_capacity(64 * 1024, writer);
    while let Some(out) = rx.recv().await {
        if w.write_all(out.line.as_bytes()).await.is_err() || w.write_all(b"\n").await.is_err() {
            break;
        }
        drop(out);
        if rx.is_empty() && w.flush().await.is_err() {
            break;
        }
    }
    let _ = w.flush().await;
    let _ = w.shutdown().await;
}
