//! State shared by every connection of one server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use gatos::Gatos;
use gatos_api::Service;

use crate::limits::Limits;
use crate::subscriptions::Watchers;
use crate::transport::token::{Token, Tokens};

/// A stream's stop (see [`Shared::stream_stop`]): stopped when dropped.
pub struct StreamStop(tokio_util::sync::CancellationToken);

impl StreamStop {
    /// The token the stream's tasks wait on.
    pub fn token(&self) -> tokio_util::sync::CancellationToken {
        self.0.clone()
    }
}

impl Drop for StreamStop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// What every connection shares.
pub struct Shared {
    /// The repository.
    pub gatos: Gatos,
    /// The service every operation goes through.
    pub service: Service,
    /// The limits.
    pub limits: Limits,
    /// When the server started.
    pub started: Instant,
    /// The tokens `gatos.auth` may present (first on TCP; before writes on the Unix
    /// socket) and HTTP clients send, and their file; re-read on SIGHUP. `None`: TCP,
    /// HTTP and Unix-socket writes are refused.
    pub tokens: Option<arc_swap::ArcSwap<Tokens>>,
    /// Whether the token file must be readable by its owner alone (`--http` serves the
    /// network): a `SIGHUP` re-read of a file others can read is refused, as at start.
    pub tokens_private: std::sync::atomic::AtomicBool,
    /// Open connections.
    pub connections: AtomicU64,
    /// Connections since start.
    pub connections_total: AtomicU64,
    /// Live subscriptions.
    pub subscriptions: AtomicU64,
    /// The bytes every JSON-RPC connection's outbox holds, together.
    pub outboxes: Arc<crate::outbox::Budget>,
    /// Watched topic heads.
    pub watchers: Arc<Watchers>,
    /// The remote of `--sync` (the default of `sync.run`).
    pub sync_remote: Option<String>,
    /// The metrics `GET /metrics` encodes (ADR 0040).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The dashboard's sign-in codes and sessions (ADR 0045).
    pub dashboard: crate::http::session::Sessions,
    /// The open HTTP streams with what they presented: [`Shared::end_withdrawn_streams`]
    /// stops those whose token or session is no longer in force.
    streams: Mutex<
        Vec<(
            crate::http::guard::Credential,
            tokio_util::sync::CancellationToken,
        )>,
    >,
    /// Fingerprints of what changes without a `gatos.jobs` event: live claims (heartbeats,
    /// takeovers), the daemon's sync, topics, consumer groups, manifests, keys, the audit
    /// trail and maintenance. The store refresher sets them; the job-event stream sends
    /// them as `event: changed` when it opens and whenever one moves (ADR 0045).
    pub changes: Arc<tokio::sync::watch::Sender<NodeChanges>>,
    next_id: AtomicU64,
}

/// See [`Shared::changes`]. Each field is an opaque fingerprint of one part of what the
/// dashboard shows: only whether it moved means anything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct NodeChanges {
    /// Of the live claims ([`gatos::jobs::admission::claims_fingerprint`]).
    pub claims: u64,
    /// Of the daemon's sync status (runs, failures, rejected refs).
    pub sync: u64,
    /// Of the topic list (each topic's first and last seq, count, last message).
    pub topics: u64,
    /// Of the consumer groups: each checkpoint and its lag.
    pub groups: u64,
    /// Of the manifests' refs (a new version of any).
    pub manifests: u64,
    /// Of the keys this node knows: published, trusted, revoked.
    pub keys: u64,
    /// Of the audit trail (its topic's last record).
    pub audit: u64,
    /// Of automatic maintenance: its status and its debt.
    pub maintenance: u64,
}

impl Shared {
    /// Makes the shared state.
    pub fn new(gatos: Gatos, limits: Limits, token: Option<Token>) -> Arc<Shared> {
        Shared::with_sync(gatos, limits, token.map(Tokens::from), None)
    }

    /// Makes the shared state of a daemon that syncs with `sync_remote`.
    pub fn with_sync(
        gatos: Gatos,
        limits: Limits,
        tokens: Option<Tokens>,
        sync_remote: Option<String>,
    ) -> Arc<Shared> {
        Shared::with_config(gatos, limits, tokens, sync_remote, false)
    }

    /// Makes the shared state: `sync_remote` is the default of `sync.run`, and
    /// `read_only` refuses every operation that writes.
    pub fn with_config(
        gatos: Gatos,
        limits: Limits,
        tokens: Option<Tokens>,
        sync_remote: Option<String>,
        read_only: bool,
    ) -> Arc<Shared> {
        let service = Service::new(
            gatos.clone(),
            gatos_api::Config {
                read_only,
                // Through the daemon a job has no sources unless the request names a
                // revision (the daemon has no work tree of the caller's).
                checkout_head_by_default: false,
                sync_remote: sync_remote.clone(),
                max_page_bytes: limits.max_page_bytes,
            },
        )
        .with_state_retention(gatos::state::Retention {
            ttl: limits.graphql_state_ttl,
            ..gatos::state::Retention::default()
        });
        // The jobs its workers claim next, read on a thread of its own (ADR 0046 session 20);
        // a daemon that cannot start it serves claims without it.
        let service = match service.clone().with_read_ahead() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "claims are served without read-ahead");
                service
            }
        };
        let watchers = Arc::new(Watchers::new(
            gatos.clone(),
            limits.watch_poll,
            limits.watch_idle_poll,
        ));
        let outboxes = crate::outbox::Budget::new(limits.outbox_bytes_total);
        Arc::new(Shared {
            gatos,
            service,
            limits,
            started: Instant::now(),
            tokens: tokens.map(arc_swap::ArcSwap::from_pointee),
            tokens_private: std::sync::atomic::AtomicBool::new(false),
            connections: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            subscriptions: AtomicU64::new(0),
            outboxes,
            watchers,
            changes: Arc::new(tokio::sync::watch::Sender::new(NodeChanges::default())),
            sync_remote,
            metrics: Arc::new(crate::metrics::Metrics::new()),
            dashboard: crate::http::session::Sessions::default(),
            streams: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
        })
    }

    /// The tokens in force (the file's content at start or at the last good SIGHUP).
    pub fn tokens(&self) -> Option<Arc<Tokens>> {
        self.tokens.as_ref().map(arc_swap::ArcSwap::load_full)
    }

    /// Tells whether `presented` is one of the tokens.
    pub fn token_matches(&self, presented: &[u8]) -> bool {
        self.tokens().is_some_and(|t| t.matches(presented))
    }

    /// The entry of the token `presented` (its name, whether it may only read).
    pub fn token_entry(&self, presented: &[u8]) -> Option<crate::transport::token::Entry> {
        self.tokens().and_then(|t| t.find(presented).cloned())
    }

    /// The stop of a stream opened with `credential` on a connection stopped by `conn`:
    /// also stopped when the credential is withdrawn (a token file re-read without the
    /// token, a dashboard session revoked, logged out, evicted or expired). Already
    /// stopped when the credential was withdrawn since the request was let in. Dropping
    /// the [`StreamStop`] (the stream's end, or an open that failed) stops it too, and the
    /// next registration forgets it.
    pub fn stream_stop(
        &self,
        credential: crate::http::guard::Credential,
        conn: &tokio_util::sync::CancellationToken,
    ) -> StreamStop {
        let stop = conn.child_token();
        // The streams' lock first, then the credentials': a withdrawal waits for this
        // registration, or this registration sees the withdrawal.
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        streams.retain(|(_, s)| !s.is_cancelled());
        if self.holds(&credential, Instant::now()) {
            streams.push((credential, stop.clone()));
        } else {
            stop.cancel();
        }
        StreamStop(stop)
    }

    /// Whether `credential` is still in force.
    fn holds(&self, credential: &crate::http::guard::Credential, now: Instant) -> bool {
        use crate::http::guard::Credential;
        match credential {
            Credential::Token(hash) => self.tokens().is_some_and(|t| t.holds_hash(hash)),
            Credential::Session(id) => self.dashboard.is_live(id, now),
        }
    }

    /// Stops the streams whose token or session is no longer in force; how many.
    pub fn end_withdrawn_streams(&self) -> usize {
        let now = Instant::now();
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        let mut ended = 0;
        streams.retain(|(c, stop)| {
            if stop.is_cancelled() {
                return false;
            }
            if self.holds(c, now) {
                return true;
            }
            stop.cancel();
            ended += 1;
            false
        });
        ended
    }

    /// Re-reads the token file (SIGHUP): a file that does not parse keeps the tokens in
    /// force and is logged.
    pub fn reload_tokens(&self) {
        let Some(current) = &self.tokens else {
            return;
        };
        let file = current.load().file.clone();
        match Tokens::load(&file) {
            Ok(t) if t.open_mode && self.tokens_private.load(Ordering::Relaxed) => {
                tracing::warn!(
                    path = %file.display(),
                    "the token file was not re-read: it is readable by its group or others, and --http serves it to the network (chmod 600 it); the tokens in force stay"
                );
            }
            Ok(t) => {
                tracing::info!(path = %file.display(), tokens = t.names().count(), "token file re-read");
                current.store(Arc::new(t));
                // Dashboard sessions follow the token that minted them.
                let tokens = current.load();
                let gone = self
                    .dashboard
                    .follow_tokens(|h| tokens.by_hash(h).map(|e| e.read_only));
                if !gone.is_empty() {
                    tracing::info!(
                        sessions = gone.len(),
                        "dashboard sessions of tokens no longer in the file ended"
                    );
                }
                let ended = self.end_withdrawn_streams();
                if ended > 0 {
                    tracing::info!(
                        streams = ended,
                        "streams of tokens no longer in the file ended"
                    );
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "the token file was not re-read; the tokens in force stay")
            }
        }
    }

    /// Takes one of the daemon's stream slots ([`Limits::max_streams`], shared by every
    /// face), or answers `None` when they are all taken. The slot counts in
    /// [`Shared::subscriptions`] until it is dropped.
    pub fn stream_slot(self: &Arc<Self>) -> Option<StreamSlot> {
        let max = self.limits.max_streams as u64;
        self.subscriptions
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| StreamSlot {
                shared: self.clone(),
            })
    }

    /// The message of a refused [`Shared::stream_slot`].
    pub fn streams_full(&self) -> String {
        format!(
            "gatosd holds {} streams on all its faces, the most it may; try again once some have closed",
            self.limits.max_streams
        )
    }

    /// Returns a fresh id (connections, subscriptions).
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// One of the daemon's stream slots ([`Shared::stream_slot`]): given back when dropped.
pub struct StreamSlot {
    shared: Arc<Shared>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.shared.subscriptions.fetch_sub(1, Ordering::AcqRel);
    }
}
