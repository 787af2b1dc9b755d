//! What a connection sends: one writer task per connection, fed through a queue bounded in
//! bytes, so a client that stops reading stops being served instead of growing memory.
//!
//! Every connection's queue is bounded on its own ([`Limits::outbox_bytes`]) and all of them
//! together ([`Limits::outbox_bytes_total`], a [`Budget`]): past the total, the connection
//! holding the most is closed (its memory back at once), whoever sends, so clients that
//! never read cannot take the daemon's memory however many connections they open
//! (ADR 0048).
//!
//! [`Limits::outbox_bytes`]: crate::limits::Limits::outbox_bytes
//! [`Limits::outbox_bytes_total`]: crate::limits::Limits::outbox_bytes_total

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

/// The bytes every connection's outbox holds together, and the connections holding them.
pub struct Budget {
    cap: usize,
    total: AtomicUsize,
    accounts: Mutex<Vec<Weak<Account>>>,
    /// Where the writers' clocks start ([`Account::writing_since`]).
    epoch: Instant,
}

/// A writer that made no progress for this long has a client that is not reading: such
/// connections are closed first.
const STALLED: Duration = Duration::from_millis(100);

impl Budget {
    /// At most `cap` bytes queued (or built and waiting to be) for all connections together.
    pub fn new(cap: usize) -> Arc<Budget> {
        Arc::new(Budget {
            cap,
            total: AtomicUsize::new(0),
            accounts: Mutex::default(),
            epoch: Instant::now(),
        })
    }

    /// The bytes held now, by every connection together.
    pub fn held(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    fn account(self: &Arc<Self>, semaphore: Arc<Semaphore>) -> Arc<Account> {
        let a = Arc::new(Account {
            held: Mutex::new(Held::default()),
            writing_since: AtomicU64::new(0),
            closed: CancellationToken::new(),
            semaphore,
            budget: self.clone(),
        });
        let mut accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        accounts.retain(|w| w.strong_count() > 0);
        accounts.push(Arc::downgrade(&a));
        a
    }

    /// Milliseconds since the epoch, at least 1 (0 is "not writing").
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Closes connections until the total is back under the cap: first those whose client
    /// is not reading, the one holding the most first, then (only if that was not enough)
    /// the ones holding the most.
    fn make_room(&self) {
        let over = || self.total.load(Ordering::Relaxed) > self.cap;
        if !over() {
            // The common case takes no lock.
            return;
        }
        let accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        let now = self.now_ms();
        let stalled_ms = u64::try_from(STALLED.as_millis()).unwrap_or(u64::MAX);
        while over() {
            let largest = accounts
                .iter()
                .filter_map(Weak::upgrade)
                .map(|a| {
                    let since = a.writing_since.load(Ordering::Relaxed);
                    let stalled = since != 0 && now.saturating_sub(since) >= stalled_ms;
                    ((stalled, a.held_now()), a)
                })
                .filter(|((_, held), _)| *held > 0)
                .max_by_key(|(key, _)| *key);
            let Some((_, a)) = largest else { return };
            a.close(true);
        }
    }
}

#[derive(Default)]
struct Held {
    bytes: usize,
    /// Closed: its bytes were given back at once, and what it still holds counts no more.
    closed: bool,
}

/// One connection's share of the [`Budget`].
struct Account {
    held: Mutex<Held>,
    /// When its writer last made progress on what it is writing ([`Budget::now_ms`]: the
    /// start of a line, or the socket taking bytes of it); 0 when idle.
    writing_since: AtomicU64,
    /// Cancelled when the connection is closed to make room (or its writer ended).
    closed: CancellationToken,
    /// The connection's own byte budget (closed with it, so whoever waits for room stops).
    semaphore: Arc<Semaphore>,
    budget: Arc<Budget>,
}

impl Account {
    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn held_now(&self) -> usize {
        let h = self.lock();
        if h.closed { 0 } else { h.bytes }
    }

    /// Counts `n` bytes, making room among all connections if the total goes past the cap;
    /// `None` when this connection is closed (already, or to make that room).
    fn charge(self: &Arc<Self>, n: usize) -> Option<Charge> {
        {
            let mut h = self.lock();
            if h.closed {
                return None;
            }
            h.bytes += n;
            self.budget.total.fetch_add(n, Ordering::Relaxed);
        }
        let charge = Charge {
            account: self.clone(),
            n,
        };
        self.budget.make_room();
        if self.closed.is_cancelled() {
            return None;
        }
        Some(charge)
    }

    /// Closes the connection's outbox: its bytes count no more, whoever waits for room
    /// stops, and the writer and reader end (`evicted`: to make room for others).
    fn close(&self, evicted: bool) {
        {
            let mut h = self.lock();
            if h.closed {
                return;
            }
            h.closed = true;
            self.budget.total.fetch_sub(h.bytes, Ordering::Relaxed);
            if evicted {
                tracing::info!(
                    bytes = h.bytes,
                    "connection closed: the daemon's output memory is full and it held the most unread"
                );
            }
            h.bytes = 0;
        }
        self.semaphore.close();
        self.closed.cancel();
    }
}

/// Bytes counted in the [`Budget`] until dropped.
struct Charge {
    account: Arc<Account>,
    n: usize,
}

impl Drop for Charge {
    fn drop(&mut self) {
        if self.n == 0 {
            return;
        }
        let mut h = self.account.lock();
        if !h.closed {
            h.bytes -= self.n;
            self.account
                .budget
                .total
                .fetch_sub(self.n, Ordering::Relaxed);
        }
    }
}

/// Room in a connection's outbox taken ahead of what will fill it (a subscription's next
/// batch, before it is read). It bounds the connection's own bytes; the daemon's total
/// counts only the lines written into it (room is not memory until it is filled, and a
/// reading client that merely asked for room must never look like one holding the most).
pub struct Room {
    permit: OwnedSemaphorePermit,
}

impl Room {
    /// The bytes still in it.
    pub fn left(&self) -> usize {
        self.permit.num_permits()
    }
}

/// One line to write; its budget is released once written.
pub struct Outgoing {
    line: String,
    _permit: Option<OwnedSemaphorePermit>,
    _charge: Option<Charge>,
}

/// The sending side of a connection.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Outgoing>,
    account: Arc<Account>,
    max: usize,
}

/// The writer's side of an outbox ([`write_loop`]).
pub struct Receiver {
    rx: mpsc::Receiver<Outgoing>,
    account: Arc<Account>,
}

/// Frames waiting in the channel, on top of the byte budget.
const QUEUE: usize = 1024;

impl Outbox {
    /// Makes an outbox with `bytes` of budget of its own, counted in `budget` with every
    /// other connection's, and the receiving end for the writer.
    pub fn new(bytes: usize, budget: &Arc<Budget>) -> (Outbox, Receiver) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let account = budget.account(Arc::new(Semaphore::new(bytes)));
        (
            Outbox {
                tx,
                account: account.clone(),
                max: bytes,
            },
            Receiver { rx, account },
        )
    }

    /// The outbox's own budget in bytes.
    pub fn capacity(&self) -> usize {
        self.max
    }

    /// Whether the connection's outbox was closed (to make room for others, or its writer
    /// ended): an answer built now would be dropped.
    pub fn is_closed(&self) -> bool {
        self.account.closed.is_cancelled()
    }

    /// Resolves when the connection's outbox was closed (to make room for others, or its
    /// writer ended): nothing more can be sent, stop reading the connection.
    pub async fn closed(&self) {
        self.account.closed.cancelled().await;
    }

    /// What a line costs of the connection's own budget: its real bytes with the newline.
    /// A line larger than the whole budget takes all of it, so it waits until everything
    /// before it is written and nothing else is queued beside it.
    fn cost(&self, line: &str) -> usize {
        line.len().saturating_add(1).min(self.max)
    }

    /// `n` bytes of the connection's budget (at most all of it), waiting for them; `None`
    /// when the connection is gone.
    async fn permit(&self, n: usize) -> Option<OwnedSemaphorePermit> {
        let n = u32::try_from(n.min(self.max)).unwrap_or(u32::MAX);
        self.account
            .semaphore
            .clone()
            .acquire_many_owned(n)
            .await
            .ok()
    }

    /// Takes `n` bytes of room (at most the outbox's budget) before what fills them exists,
    /// waiting for them; `None` when the connection is gone.
    pub async fn room(&self, n: usize) -> Option<Room> {
        let permit = self.permit(n).await?;
        Some(Room { permit })
    }

    /// The bytes of the connection's own budget free now.
    pub fn available(&self) -> usize {
        self.account.semaphore.available_permits()
    }

    /// Queues a line, waiting for budget (backpressure). False when the connection is gone.
    pub async fn send(&self, line: String) -> bool {
        // The line exists already: it counts in the daemon's total while it waits.
        let Some(charge) = self.account.charge(line.len().saturating_add(1)) else {
            return false;
        };
        let Some(permit) = self.permit(self.cost(&line)).await else {
            return false;
        };
        self.push(line, Some(permit), charge).await
    }

    /// Queues a line in `room` taken for it. A line larger than what is left of the room
    /// gives the rest of the room back and waits for its whole cost as any other line
    /// (holding part of the budget while waiting for more could starve the connection's
    /// other senders). False when the connection is gone.
    pub async fn send_in(&self, line: String, room: &mut Room) -> bool {
        let cost = self.cost(&line);
        if cost > room.left() {
            if let Some(rest) = room.permit.split(room.left()) {
                drop(rest);
            }
            return self.send(line).await;
        }
        let Some(permit) = room.permit.split(cost) else {
            return self.send(line).await;
        };
        let Some(charge) = self.account.charge(line.len().saturating_add(1)) else {
            return false;
        };
        self.push(line, Some(permit), charge).await
    }

    async fn push(
        &self,
        line: String,
        permit: Option<OwnedSemaphorePermit>,
        charge: Charge,
    ) -> bool {
        self.tx
            .send(Outgoing {
                line,
                _permit: permit,
                _charge: Some(charge),
            })
            .await
            .is_ok()
    }

    /// Queues a line if there is budget right now; gives the line back if not.
    pub fn try_send(&self, line: String) -> Result<(), String> {
        let n = u32::try_from(self.cost(&line)).unwrap_or(u32::MAX);
        let Ok(permit) = self.account.semaphore.clone().try_acquire_many_owned(n) else {
            return Err(line);
        };
        let Some(charge) = self.account.charge(line.len().saturating_add(1)) else {
            return Err(line);
        };
        self.tx
            .try_send(Outgoing {
                line,
                _permit: Some(permit),
                _charge: Some(charge),
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(o) | mpsc::error::TrySendError::Closed(o) => o.line,
            })
    }

    /// Queues a small line regardless of the connection's own budget (errors and `lagged`
    /// notices); it counts in the daemon's total.
    pub async fn send_small(&self, line: String) -> bool {
        let Some(charge) = self.account.charge(line.len().saturating_add(1)) else {
            return false;
        };
        self.push(line, None, charge).await
    }
}

/// Writes queued lines until every sender is gone, the client stops taking them, or the
/// connection is closed to make room for others; flushes whenever the queue runs dry.
pub async fn write_loop<W: AsyncWrite + Unpin>(writer: W, rx: Receiver) {
    let Receiver { mut rx, account } = rx;
    let writer = Clocked {
        inner: writer,
        account: account.clone(),
    };
    let mut w = BufWriter::with_capacity(64 * 1024, writer);
    let evicted = tokio::select! {
        () = account.closed.cancelled() => true,
        () = async {
            let clock = &account.writing_since;
            while let Some(out) = rx.recv().await {
                clock.store(account.budget.now_ms(), Ordering::Relaxed);
                if w.write_all(out.line.as_bytes()).await.is_err()
                    || w.write_all(b"\n").await.is_err()
                {
                    break;
                }
                drop(out);
                if rx.is_empty() {
                    if w.flush().await.is_err() {
                        break;
                    }
                    clock.store(0, Ordering::Relaxed);
                }
            }
        } => false,
    };
    // Nothing more will be written: what is still queued counts no more, and whoever
    // waits for room stops.
    account.close(false);
    rx.close();
    drop(rx);
    if !evicted {
        let _ = w.flush().await;
        let _ = w.shutdown().await;
    }
}

/// The connection's writer, noting each write that made progress: a client that reads a
/// long line slowly but steadily is not taken for one that stopped reading
/// ([`Account::writing_since`] is moved on by every byte the socket took).
struct Clocked<W> {
    inner: W,
    account: Arc<Account>,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Clocked<W> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = &r
            && *n > 0
            && self.account.writing_since.load(Ordering::Relaxed) != 0
        {
            let now = self.account.budget.now_ms();
            self.account.writing_since.store(now, Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
