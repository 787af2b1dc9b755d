//! Every limit of the daemon, named (ADR 0011).

use std::time::Duration;

/// Limits of one server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest request line, in bytes; longer ones get `PayloadTooLarge` and are skipped.
    pub max_line: usize,
    /// Longest line a TCP client may send before it authenticated (`gatos.auth {token}`
    /// is short); a longer one closes the connection without being buffered.
    pub max_unauthenticated_line: usize,
    /// Open Unix-socket connections at once; more wait in the kernel's accept queue.
    /// Counted apart from TCP, so a TCP flood never keeps local clients out.
    pub max_unix_connections: usize,
    /// Open TCP connections at once (authenticated or not); more wait in the kernel's
    /// accept queue.
    pub max_tcp_connections: usize,
    /// Requests being processed per connection (batch entries count); more stop the
    /// connection's reader, so the client feels backpressure.
    pub max_in_flight: usize,
    /// Bytes queued for a client's socket; past it responses wait, and a subscription that
    /// cannot queue its next event within `lag_grace` is closed with `messages.lagged`.
    pub outbox_bytes: usize,
    /// Bytes queued for all JSON-RPC connections together (answers and notifications,
    /// also those built and waiting for room): past it the connection holding the most is
    /// closed (its reader reads least), so clients that never read cannot take the daemon's
    /// memory however many connections they open (ADR 0048).
    pub outbox_bytes_total: usize,
    /// How long a subscription may be blocked by a slow reader before it is closed.
    pub lag_grace: Duration,
    /// Entries in one batch.
    pub max_batch: usize,
    /// Subscriptions (`messages.subscribe` and `jobs.watch`) one connection may hold; past
    /// it, `TooManySubscriptions`.
    pub max_subscriptions: usize,
    /// Streams open at once on every face together (JSON-RPC subscriptions, server-sent
    /// event streams): past it, a new one is `TooManySubscriptions`, so no face can take
    /// the daemon's memory for streams however its own caps are set.
    pub max_streams: usize,
    /// Bytes queued for all HTTP event streams together: past it the stream holding the
    /// most ends with `event: lagged` (its reader reads least), so slow readers cannot take
    /// the daemon's memory however many streams they open.
    pub stream_bytes_total: usize,
    /// Bytes of messages in one page: a `messages.read` page ends once its messages reach
    /// it (`end: false`), and a subscription reads at most this much at a time.
    pub max_page_bytes: u64,
    /// Messages a subscription reads from the store at a time.
    pub subscription_batch: u64,
    /// How often watched topic heads are read (messages written by other processes reach
    /// subscribers within this, plus the time to read them).
    pub watch_poll: Duration,
    /// How often the head of a topic that has not moved for a while is read: a head
    /// that did not move is read half as often each time, from `watch_poll` down to this
    /// (idle subscriptions cost next to nothing; a write by another process to an idle
    /// topic reaches its subscribers within this).
    pub watch_idle_poll: Duration,
    /// Open HTTP connections at once; more wait in the kernel's accept queue (a cap of its
    /// own, as each transport has).
    pub max_http_connections: usize,
    /// How long an HTTP client has to send a request's headers (hyper's header timeout).
    pub http_header_timeout: Duration,
    /// How long an HTTP client has to send a request's body once its headers arrived; a
    /// slower one is answered `InvalidInput` and its connection closed (the header timeout
    /// does not cover the body).
    pub http_body_timeout: Duration,
    /// HTTP calls running at once (each holds a blocking-pool thread); more wait.
    pub max_http_calls: usize,
    /// HTTP calls that wait (`wait_ms`, up to 30 s) running at once: a pool of their own,
    /// so waiting calls never hold the slots of `max_http_calls`; more wait for a slot.
    pub max_http_waits: usize,
    /// Of them, calls one HTTP token may run at once (so one client cannot take them all).
    pub max_http_waits_per_token: usize,
    /// Large answers (pages: `op.large` rows) built at once over HTTP; more wait.
    pub max_http_large: usize,
    /// Requests per second per HTTP token (`--http-rate`); `None` is no limit.
    pub http_rate: Option<std::num::NonZeroU32>,
    /// Requests a token may send at once (`--http-burst`).
    pub http_burst: std::num::NonZeroU32,
    /// The GraphQL face's limits (`--graphql-max-depth`, `--graphql-max-complexity`,
    /// `--graphql-introspection`; ADR 0044).
    pub graphql: crate::http::graphql::Config,
    /// How long a ref state is kept after its last use (`--graphql-state-ttl`).
    pub graphql_state_ttl: Duration,
    /// The memory the kept ref states may take (`--graphql-state-memory`).
    pub graphql_state_memory: usize,
    /// How long a TCP client has to send `gatos.auth`.
    pub auth_timeout: Duration,
    /// How long shutdown waits for requests in flight.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: gatos_rpc::frame::DEFAULT_MAX_LINE,
            max_unauthenticated_line: 4096,
            max_unix_connections: 512,
            max_tcp_connections: 256,
            max_in_flight: 32,
            outbox_bytes: 16 * 1024 * 1024,
            outbox_bytes_total: 128 * 1024 * 1024,
            lag_grace: Duration::from_secs(5),
            max_batch: 10_000,
            max_subscriptions: 256,
            max_streams: 8192,
            stream_bytes_total: 128 * 1024 * 1024,
            max_page_bytes: gatos::messages::DEFAULT_MAX_PAGE_BYTES,
            subscription_batch: 256,
            watch_poll: Duration::from_millis(100),
            watch_idle_poll: Duration::from_secs(2),
            max_http_connections: 2048,
            http_header_timeout: Duration::from_secs(10),
            http_body_timeout: Duration::from_secs(30),
            max_http_calls: 64,
            max_http_waits: 64,
            max_http_waits_per_token: 16,
            max_http_large: 8,
            http_rate: std::num::NonZeroU32::new(crate::http::limit::DEFAULT_RATE),
            http_burst: std::num::NonZeroU32::new(crate::http::limit::DEFAULT_BURST)
                .unwrap_or(std::num::NonZeroU32::MIN),
            graphql: crate::http::graphql::Config::default(),
            graphql_state_ttl: gatos::state::DEFAULT_TTL,
            graphql_state_memory: gatos::state::DEFAULT_MAX_BYTES,
            auth_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(30),
        }
    }
}
