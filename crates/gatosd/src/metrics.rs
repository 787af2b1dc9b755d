//! The daemon's metrics (issue #17 step 10, ADR 0040): one `prometheus-client` registry,
//! encoded by `GET /metrics`. Names and labels are a contract, listed in `docs/metrics.md`
//! (a test compares the `# HELP`/`# TYPE` lines with it).
//!
//! Request metrics are counted by both faces as they answer. Job metrics come from a
//! follower of `gatos.jobs` started with the daemon ([`follow_jobs`]), so every writer's
//! jobs count — the CLI, workers in other processes, other daemons, synced nodes — not only
//! this daemon's requests. Store-derived gauges (queue depths, topics, consumer lag,
//! maintenance debt, sync totals) are read every [`REFRESH`] by [`refresh_store`] into a
//! snapshot a collector encodes. A scrape only reads atomics and that snapshot: it never
//! reads the store.
//!
//! Cardinality is bounded (ADR 0040): `op` is a table name (or `_unknown`), `route` a route
//! template (or `_unmatched`), `token` a token-file name, and `queue` one of the first
//! [`MAX_QUEUES`] queues seen (the rest count under `_other`).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use gatos_types::jobs::{JobEvent, JobEventKind};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

/// Distinct `queue` label values; later queues count under [`OTHER`].
pub const MAX_QUEUES: usize = 32;
/// Distinct `route` label values of HTTP responses (the table has fewer routes).
pub const MAX_ROUTES: usize = 64;
/// Attempts remembered between their `claimed` event and their end (oldest forgotten
/// first; an end whose claim was forgotten or never seen is not timed).
pub const MAX_OPEN_ATTEMPTS: usize = 100_000;
/// The label value of everything past a label's budget.
pub const OTHER: &str = "_other";
/// How often the store-derived gauges are read ([`refresh_store`]).
pub const REFRESH: Duration = Duration::from_secs(5);
/// Queues of `gatos_jobs` (the deepest; the rest summed under [`OTHER`]).
pub const MAX_DEPTH_QUEUES: usize = 32;
/// Topics of `gatos_topic_last_seq` (the furthest; the rest summed under [`OTHER`]).
pub const MAX_TOPICS: usize = 20;
/// `(topic, group)` pairs of `gatos_consumer_lag_messages` (the furthest behind; the rest
/// summed under [`OTHER`], [`OTHER`]).
pub const MAX_LAGS: usize = 20;

/// `face`, `op`, `code` of a request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    face: &'static str,
    op: String,
    code: String,
}

/// `face`, `op` of a request's duration.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    face: &'static str,
    op: String,
}

/// `route`, `status` of an HTTP response.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    status: String,
}

/// `queue`, `event` of a job event.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobEventLabels {
    queue: String,
    event: String,
}

/// `queue` of a claim.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    queue: String,
}

/// `queue`, `outcome` of an attempt's end.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    queue: String,
    outcome: String,
}

/// `token` of a rate-limited request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    token: String,
}

/// `version` of the build.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// 0.5 ms to about 8 s, 15 buckets: request durations.
fn request_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

/// 10 ms to about 11 h, 16 buckets (×4): job latencies and durations.
fn job_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 4.0, 16))
}

/// Open attempts: `(job, attempt)` → claimed at (ms), bounded by [`MAX_OPEN_ATTEMPTS`].
#[derive(Default)]
struct OpenAttempts {
    at: HashMap<(gatos_types::Ulid, u32), i64>,
    order: VecDeque<(gatos_types::Ulid, u32)>,
}

impl OpenAttempts {
    fn insert(&mut self, key: (gatos_types::Ulid, u32), at_ms: i64) {
        if self.at.insert(key, at_ms).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > MAX_OPEN_ATTEMPTS {
            if let Some(old) = self.order.pop_front() {
                self.at.remove(&old);
            }
        }
    }

    fn take(&mut self, key: &(gatos_types::Ulid, u32)) -> Option<i64> {
        // The order queue keeps the key until it reaches the front; `at` is the truth.
        self.at.remove(key)
    }
}

/// The registry and its metrics.
pub struct Metrics {
    registry: Registry,
    started: Instant,
    requests: Family<RequestLabels, Counter>,
    request_duration: Histograms<OpLabels>,
    http_responses: Family<RouteLabels, Counter>,
    connections: Gauge,
    streams: Gauge,
    uptime: Gauge<f64, AtomicU64>,
    job_events: Family<JobEventLabels, Counter>,
    claim_latency: Histograms<QueueLabels>,
    job_duration: Histograms<OutcomeLabels>,
    rate_limited: Family<TokenLabels, Counter>,
    queues: Mutex<BTreeSet<String>>,
    routes: Mutex<BTreeSet<String>>,
    open: Mutex<OpenAttempts>,
    store: Arc<ArcSwap<StoreSnapshot>>,
    states: Arc<std::sync::OnceLock<Arc<gatos::state::Window>>>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// Makes the registry with every metric of the contract.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let request_duration: Histograms<OpLabels> =
            Family::new_with_constructor(request_buckets as fn() -> Histogram);
        let http_responses = Family::<RouteLabels, Counter>::default();
        let connections = Gauge::default();
        let streams = Gauge::default();
        let uptime = Gauge::<f64, AtomicU64>::default();
        let job_events = Family::<JobEventLabels, Counter>::default();
        let claim_latency: Histograms<QueueLabels> =
            Family::new_with_constructor(job_buckets as fn() -> Histogram);
        let job_duration: Histograms<OutcomeLabels> =
            Family::new_with_constructor(job_buckets as fn() -> Histogram);
        let rate_limited = Family::<TokenLabels, Counter>::default();
        let build = Family::<VersionLabels, Gauge>::default();
        build
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register(
            "gatos_requests",
            "Requests answered, by face (http, rpc, mcp), operation and result code (ok or the error code)",
            requests.clone(),
        );
        registry.register(
            "gatos_request_duration_seconds",
            "Time to answer a request, by face and operation",
            request_duration.clone(),
        );
        registry.register(
            "gatos_http_responses",
            "HTTP responses, by route template and status",
            http_responses.clone(),
        );
        registry.register(
            "gatos_connections",
            "Connections open, every transport",
            connections.clone(),
        );
        registry.register(
            "gatos_streams",
            "Subscriptions and event streams open, every face",
            streams.clone(),
        );
        registry.register(
            "gatos_jobs_events",
            "Events on gatos.jobs seen since the daemon started (every writer), by queue and event",
            job_events.clone(),
        );
        registry.register(
            "gatos_jobs_claim_latency_seconds",
            "From a job's enqueue (its ULID's time) to its first claim, by queue",
            claim_latency.clone(),
        );
        registry.register(
            "gatos_jobs_duration_seconds",
            "From an attempt's claim to its end, by queue and outcome",
            job_duration.clone(),
        );
        registry.register(
            "gatos_http_rate_limited",
            "HTTP requests refused by the per-token rate, by token name",
            rate_limited.clone(),
        );
        registry.register("gatos_build_info", "The daemon's version (always 1)", build);
        registry.register(
            "gatos_uptime_seconds",
            "Seconds since the daemon started",
            uptime.clone(),
        );
        let store = Arc::new(ArcSwap::from_pointee(StoreSnapshot::default()));
        registry.register_collector(Box::new(StoreGauges {
            snap: store.clone(),
        }));
        let states = Arc::new(std::sync::OnceLock::new());
        registry.register_collector(Box::new(StateGauges {
            window: states.clone(),
        }));
        Metrics {
            registry,
            started: Instant::now(),
            requests,
            request_duration,
            http_responses,
            connections,
            streams,
            uptime,
            job_events,
            claim_latency,
            job_duration,
            rate_limited,
            queues: Mutex::default(),
            routes: Mutex::default(),
            open: Mutex::default(),
            store,
            states,
        }
    }

    /// Reports the GraphQL face's kept ref states (ADR 0044) from `window` (the first call
    /// wins).
    pub fn watch_states(&self, window: Arc<gatos::state::Window>) {
        let _ = self.states.set(window);
    }

    /// Replaces the store-derived gauges' snapshot (what the next scrape encodes).
    pub fn set_store(&self, snap: StoreSnapshot) {
        self.store.store(Arc::new(snap));
    }

    /// Counts one request of `face` (`http`, `rpc`): `op` is a table name or `_unknown`,
    /// `code` is `ok` or the error code.
    pub fn request(&self, face: &'static str, op: &str, code: &str, took: Duration) {
        let op = if gatos_api::ops::find(op).is_some() {
            op
        } else {
            "_unknown"
        };
        let code = if code == "ok"
            || gatos_types::ErrorCode::ALL
                .iter()
                .any(|c| c.as_str() == code)
        {
            code
        } else {
            "_other"
        };
        self.requests
            .get_or_create(&RequestLabels {
                face,
                op: op.to_owned(),
                code: code.to_owned(),
            })
            .inc();
        self.request_duration
            .get_or_create(&OpLabels {
                face,
                op: op.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// Counts one HTTP response by its route template (`None`: no route matched).
    pub fn http_response(&self, route: Option<&str>, status: u16) {
        let route = match route {
            Some(r) => bounded(&self.routes, r, MAX_ROUTES),
            None => "_unmatched".to_owned(),
        };
        self.http_responses
            .get_or_create(&RouteLabels {
                route,
                status: status.to_string(),
            })
            .inc();
    }

    /// Counts a request refused by the per-token rate.
    pub fn rate_limited(&self, token: &str) {
        self.rate_limited
            .get_or_create(&TokenLabels {
                token: token.to_owned(),
            })
            .inc();
    }

    /// Counts one event of `gatos.jobs`, and times claims and attempts.
    pub fn job_event(&self, e: &JobEvent) {
        let queue = bounded(&self.queues, e.queue.as_str(), MAX_QUEUES);
        self.job_events
            .get_or_create(&JobEventLabels {
                queue: queue.clone(),
                event: e.event.as_str().to_owned(),
            })
            .inc();
        let at = e.at.as_millis();
        let Ok(mut open) = self.open.lock() else {
            return;
        };
        match e.event {
            JobEventKind::Claimed => {
                if e.attempt == 1 {
                    let enqueued = i64::try_from(e.job.timestamp_ms()).unwrap_or(i64::MAX);
                    self.claim_latency
                        .get_or_create(&QueueLabels {
                            queue: queue.clone(),
                        })
                        .observe(seconds(at - enqueued));
                }
                open.insert((e.job, e.attempt), at);
            }
            JobEventKind::Succeeded
            | JobEventKind::Failed
            | JobEventKind::Cancelled
            | JobEventKind::RetryScheduled
            | JobEventKind::HeartbeatLost => {
                if let Some(claimed) = open.take(&(e.job, e.attempt)) {
                    self.job_duration
                        .get_or_create(&OutcomeLabels {
                            queue,
                            outcome: e.event.as_str().to_owned(),
                        })
                        .observe(seconds(at - claimed));
                }
            }
            _ => {}
        }
    }

    /// Encodes the registry: Prometheus text 0.0.4, or OpenMetrics 1.0 when `openmetrics`.
    /// Returns the body and its content type.
    ///
    /// # Errors
    /// When the encoder fails (it writes to a `String`, so only on a bad label value).
    pub fn encode(
        &self,
        connections: u64,
        streams: u64,
        openmetrics: bool,
    ) -> Result<(String, &'static str), std::fmt::Error> {
        self.connections
            .set(i64::try_from(connections).unwrap_or(i64::MAX));
        self.streams.set(i64::try_from(streams).unwrap_or(i64::MAX));
        self.uptime.set(self.started.elapsed().as_secs_f64());
        let mut out = String::new();
        if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
            Ok((
                out,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ))
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
            Ok((
                out,
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            ))
        }
    }
}

/// Milliseconds as seconds (never negative: clocks of different writers may disagree).
fn seconds(ms: i64) -> f64 {
    #[expect(
        clippy::cast_precision_loss,
        reason = "a duration in ms fits an f64 exactly up to 2^53 ms"
    )]
    let s = ms.max(0) as f64 / 1000.0;
    s
}

/// `value` when it is already a label value or there is room for one more; else `_other`.
fn bounded(seen: &Mutex<BTreeSet<String>>, value: &str, max: usize) -> String {
    let Ok(mut seen) = seen.lock() else {
        return OTHER.to_owned();
    };
    if seen.contains(value) {
        return value.to_owned();
    }
    if seen.len() < max {
        seen.insert(value.to_owned());
        return value.to_owned();
    }
    OTHER.to_owned()
}

/// Follows `gatos.jobs` from its end on a thread of its own, counting every event into
/// `metrics`, until `stop`. A read error is logged and retried after a second.
///
/// The end is read before this returns (one ref read, at start), so every event published
/// once the daemon serves counts.
pub fn follow_jobs(gatos: gatos::Gatos, metrics: Arc<Metrics>, stop: CancellationToken) {
    let Ok(topic) = gatos::jobs::EVENTS_TOPIC.parse::<gatos_types::Topic>() else {
        return;
    };
    let mut follower = match gatos
        .messages()
        .follow(&topic, gatos::messages::Cursor::End)
    {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::debug!(error = %e, "metrics: following gatos.jobs");
            None
        }
    };
    let spawned = std::thread::Builder::new()
        .name("gatosd-metrics-jobs".into())
        .spawn(move || {
            while !stop.is_cancelled() {
                if follower.is_none() {
                    match gatos.committed_only(|| {
                        gatos
                            .messages()
                            .follow(&topic, gatos::messages::Cursor::End)
                    }) {
                        Ok(f) => follower = Some(f),
                        Err(e) => {
                            tracing::debug!(error = %e, "metrics: following gatos.jobs");
                            wait_or_stop(&stop, Duration::from_secs(1));
                            continue;
                        }
                    }
                }
                let Some(f) = follower.as_mut() else {
                    continue;
                };
                // Commits only, as the wait below (ADR 0046, session 13).
                let polled = gatos.committed_only(|| {
                    f.poll(1000, |m| {
                        if let Ok(e) = serde_json::from_str::<JobEvent>(m.payload.get()) {
                            metrics.job_event(&e);
                        }
                        Ok(true)
                    })
                });
                match polled {
                    Ok((n, _)) if n > 0 => continue,
                    Ok(_) => {
                        // Commits only: counting an event up to a flush interval
                        // late is fine, and waking on the journal would make every
                        // event a commit at once, defeating its batching (ADR 0046).
                        if let Err(e) = f.wait_committed(Duration::from_millis(500)) {
                            tracing::debug!(error = %e, "metrics: waiting on gatos.jobs");
                            wait_or_stop(&stop, Duration::from_secs(1));
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "metrics: reading gatos.jobs");
                        wait_or_stop(&stop, Duration::from_secs(1));
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "the gatos.jobs metrics follower did not start");
    }
}

/// The store-derived gauges as the refresher last read them: label values and numbers,
/// already within their budgets. A scrape encodes this; it never reads the store.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoreSnapshot {
    /// `(queue, state, jobs)`.
    pub jobs: Vec<(String, &'static str, u64)>,
    /// `(topic, last_seq)`.
    pub topics: Vec<(String, u64)>,
    /// `(topic, group, lag)`.
    pub lags: Vec<(String, String, u64)>,
    /// `(kind, amount)`.
    pub debt: Vec<(&'static str, u64)>,
    /// `(listing, count)`: topics and checkpoints that do not read (ADR 0047).
    pub damaged: Vec<(&'static str, u64)>,
    /// The background sync's totals since the node started: `(ok, failed, rejected refs)`;
    /// `None` when the node does not sync.
    pub sync: Option<(u64, u64, u64)>,
}

/// The `n` largest by `value` (ties keep their order), and the rest's values summed under `_other`.
fn top<T: Clone>(
    mut rows: Vec<T>,
    n: usize,
    value: impl Fn(&T) -> u64,
    other: impl FnOnce(u64) -> T,
) -> Vec<T> {
    rows.sort_by_key(|r| std::cmp::Reverse(value(r)));
    if rows.len() <= n {
        return rows;
    }
    let rest: u64 = rows[n..].iter().map(&value).sum();
    rows.truncate(n);
    rows.push(other(rest));
    rows
}

impl StoreSnapshot {
    /// Reads the facts: queue depths, topics, checkpoints with their lag, maintenance debt,
    /// the sync's totals. A part that fails to read is left empty (and logged), and its
    /// fingerprint in `prints` unset.
    pub fn read(
        gatos: &gatos::Gatos,
        node: &gatos_api::node::NodeStatus,
        prints: &mut Prints,
    ) -> StoreSnapshot {
        let mut snap = StoreSnapshot::default();
        match gatos::jobs::admission::states(gatos) {
            Ok(states) => {
                let rows: Vec<(String, u64, u64)> = states
                    .into_iter()
                    .map(|(q, (p, r))| (q.as_str().to_owned(), p, r))
                    .collect();
                let mut rows = rows;
                rows.sort_by_key(|r| std::cmp::Reverse(r.1 + r.2));
                if rows.len() > MAX_DEPTH_QUEUES {
                    let rest = rows.split_off(MAX_DEPTH_QUEUES);
                    let p = rest.iter().map(|r| r.1).sum();
                    let r = rest.iter().map(|r| r.2).sum();
                    rows.push((OTHER.to_owned(), p, r));
                }
                snap.jobs = rows
                    .into_iter()
                    .flat_map(|(q, p, r)| [(q.clone(), "pending", p), (q, "running", r)])
                    .collect();
            }
            Err(e) => tracing::debug!(error = %e, "metrics: reading queue depths"),
        }
        match gatos.messages().listing() {
            Ok(listing) => {
                prints.topics = Some(fingerprint(&(&listing.rows, &listing.damaged)));
                snap.damaged.push(("topics", listing.damaged.len() as u64));
                let rows = listing.rows;
                let audit = rows
                    .iter()
                    .find(|t| t.topic.as_str() == gatos::audit::AUDIT_TOPIC);
                prints.audit = Some(fingerprint(&audit));
                let rows = rows
                    .into_iter()
                    .map(|t| (t.topic.as_str().to_owned(), t.last_seq))
                    .collect();
                snap.topics = top(rows, MAX_TOPICS, |r| r.1, |n| (OTHER.to_owned(), n));
            }
            Err(e) => tracing::debug!(error = %e, "metrics: reading topics"),
        }
        // A checkpoint that does not read (ADR 0047) is left out without a warning at every
        // refresh: `checkpoints.list` and doctor name it.
        match gatos.checkpoints().listing(None, None) {
            Ok(listing) => {
                prints.groups = Some(fingerprint(&(&listing.rows, &listing.damaged)));
                snap.damaged
                    .push(("checkpoints", listing.damaged.len() as u64));
                let rows = listing.rows;
                let rows = rows
                    .into_iter()
                    .map(|c| {
                        (
                            c.topic.as_str().to_owned(),
                            c.group.as_str().to_owned(),
                            c.lag,
                        )
                    })
                    .collect();
                snap.lags = top(
                    rows,
                    MAX_LAGS,
                    |r| r.2,
                    |n| (OTHER.to_owned(), OTHER.to_owned(), n),
                );
            }
            Err(e) => tracing::debug!(error = %e, "metrics: reading checkpoints"),
        }
        match gatos::maintenance::debt(gatos) {
            Ok(d) => {
                prints.debt = Some(fingerprint(&d));
                snap.debt = vec![
                    ("loose_objects", d.loose_objects),
                    ("packs", d.packs),
                    ("kept_packs", d.kept_packs),
                    ("archivable_jobs", d.archivable_jobs),
                ];
            }
            Err(e) => tracing::debug!(error = %e, "metrics: reading maintenance debt"),
        }
        snap.sync = node.sync().map(|s| {
            (
                s.runs_total.saturating_sub(s.failures_total),
                s.failures_total,
                s.rejected_total,
            )
        });
        snap
    }
}

/// The fingerprints [`StoreSnapshot::read`] takes from what it reads anyway, for
/// [`crate::shared::NodeChanges`]; `None` for a part that could not be read.
#[derive(Clone, Copy, Debug, Default)]
pub struct Prints {
    topics: Option<u64>,
    audit: Option<u64>,
    groups: Option<u64>,
    debt: Option<u64>,
}

/// An opaque fingerprint of `v`'s JSON form (only whether it moved means anything).
fn fingerprint<T: serde::Serialize + ?Sized>(v: &T) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_vec(v).unwrap_or_default().hash(&mut h);
    h.finish()
}

/// The collector of the store-derived gauges: encodes the snapshot at scrape time.
#[derive(Debug)]
struct StoreGauges {
    snap: Arc<ArcSwap<StoreSnapshot>>,
}

/// A gauge of `n` (saturating).
fn gauge(n: u64) -> ConstGauge<i64> {
    ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX))
}

impl Collector for StoreGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snap = self.snap.load();
        {
            let mut fam = encoder.encode_descriptor(
                "gatos_jobs",
                "Unfinished jobs, by queue (the 32 deepest, the rest as _other) and state (pending, running).",
                None,
                MetricType::Gauge,
            )?;
            for (queue, state, n) in &snap.jobs {
                let l = [("queue", queue.as_str()), ("state", *state)];
                gauge(*n).encode(fam.encode_family(&l)?)?;
            }
        }
        {
            let mut fam = encoder.encode_descriptor(
                "gatos_topic_last_seq",
                "The position of a topic's last message, by topic (the 20 furthest, the rest summed as _other).",
                None,
                MetricType::Gauge,
            )?;
            for (topic, n) in &snap.topics {
                let l = [("topic", topic.as_str())];
                gauge(*n).encode(fam.encode_family(&l)?)?;
            }
        }
        {
            let mut fam = encoder.encode_descriptor(
                "gatos_consumer_lag_messages",
                "Messages a consumer group's checkpoint is behind its topic, by topic and group (the 20 furthest behind, the rest summed as _other).",
                None,
                MetricType::Gauge,
            )?;
            for (topic, group, n) in &snap.lags {
                let l = [("topic", topic.as_str()), ("group", group.as_str())];
                gauge(*n).encode(fam.encode_family(&l)?)?;
            }
        }
        {
            let mut fam = encoder.encode_descriptor(
                "gatos_maintenance_debt",
                "What maintenance owes, by kind (loose_objects, packs, kept_packs, archivable_jobs).",
                None,
                MetricType::Gauge,
            )?;
            for (kind, n) in &snap.debt {
                let l = [("kind", *kind)];
                gauge(*n).encode(fam.encode_family(&l)?)?;
            }
        }
        {
            let mut fam = encoder.encode_descriptor(
                "gatos_damaged",
                "Topics and consumer checkpoints whose refs do not read, left out of their listings and of the gauges above (ADR 0047), by listing (topics, checkpoints).",
                None,
                MetricType::Gauge,
            )?;
            for (listing, n) in &snap.damaged {
                let l = [("listing", *listing)];
                gauge(*n).encode(fam.encode_family(&l)?)?;
            }
        }
        {
            let mut fam = encoder.encode_descriptor(
                "gatos_sync_runs",
                "Background syncs ended since the node started, by result (ok, failed).",
                None,
                MetricType::Counter,
            )?;
            if let Some((ok, failed, _)) = snap.sync {
                for (result, n) in [("ok", ok), ("failed", failed)] {
                    let l = [("result", result)];
                    ConstCounter::new(n).encode(fam.encode_family(&l)?)?;
                }
            }
        }
        {
            let fam = encoder.encode_descriptor(
                "gatos_sync_rejected_refs",
                "Refs a remote sent that failed a check, summed over the syncs since the node started.",
                None,
                MetricType::Counter,
            )?;
            if let Some((_, _, rejected)) = snap.sync {
                ConstCounter::new(rejected).encode(fam)?;
            }
        }
        Ok(())
    }
}

/// The collector of the GraphQL face's kept ref states: read from the window (a lock
/// held for a copy of four numbers) at scrape time; nothing before the daemon sets it.
#[derive(Debug)]
struct StateGauges {
    window: Arc<std::sync::OnceLock<Arc<gatos::state::Window>>>,
}

impl Collector for StateGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(w) = self.window.get() else {
            return Ok(());
        };
        let s = w.stats();
        let bytes = u64::try_from(s.bytes).unwrap_or(u64::MAX);
        let states = u64::try_from(s.states).unwrap_or(u64::MAX);
        for (name, help, n) in [
            (
                "gatos_graphql_states",
                "Ref states the GraphQL face keeps (ADR 0044).",
                states,
            ),
            (
                "gatos_graphql_state_bytes",
                "Memory the kept ref states take, as the window counts it (bounded by --graphql-state-memory).",
                bytes,
            ),
        ] {
            let fam = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            gauge(n).encode(fam)?;
        }
        for (name, help, n) in [
            (
                "gatos_graphql_states_inexact",
                "Ref states minted inexact since the daemon started: the refs still moved after four lists (ADR 0044).",
                s.inexact,
            ),
            (
                "gatos_graphql_states_evicted_memory",
                "Ref states dropped before their time to stay within --graphql-state-memory, since the daemon started.",
                s.evicted_memory,
            ),
        ] {
            let fam = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(n).encode(fam)?;
        }
        Ok(())
    }
}

/// Reads the store-derived gauges every [`REFRESH`] on a thread of its own (the first
/// time at once), into `metrics`' snapshot, until `stop`.
pub fn refresh_store(
    gatos: gatos::Gatos,
    node: Arc<gatos_api::node::NodeStatus>,
    metrics: Arc<Metrics>,
    changes: Arc<tokio::sync::watch::Sender<crate::shared::NodeChanges>>,
    stop: CancellationToken,
) {
    let spawned = std::thread::Builder::new()
        .name("gatosd-metrics-store".into())
        .spawn(move || {
            while !stop.is_cancelled() {
                // What is committed: an observer every few seconds does not make the
                // journals commits (their flusher batches them; ADR 0046), and a
                // journal that cannot be made commits does not blank the gauges.
                let last = *changes.borrow();
                let now = gatos.committed_only(|| {
                    let mut prints = Prints::default();
                    metrics.set_store(StoreSnapshot::read(&gatos, &node, &mut prints));
                    read_changes(&gatos, &node, last, prints)
                });
                changes.send_if_modified(|c| {
                    let moved = *c != now;
                    *c = now;
                    moved
                });
                wait_or_stop(&stop, REFRESH);
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "the store metrics refresher did not start");
    }
}

/// The fingerprints of [`crate::shared::NodeChanges`] now, with `prints` from the gauges'
/// read; a part that cannot be read keeps its last value (an error is not a change).
fn read_changes(
    gatos: &gatos::Gatos,
    node: &gatos_api::node::NodeStatus,
    last: crate::shared::NodeChanges,
    prints: Prints,
) -> crate::shared::NodeChanges {
    use std::hash::{Hash, Hasher};
    let claims = gatos::jobs::admission::claims_fingerprint(gatos).unwrap_or_else(|e| {
        tracing::debug!(error = %e, "reading the live claims");
        last.claims
    });
    let manifests = gatos
        .manifests()
        .stamp()
        .map(|s| {
            fingerprint(
                &s.iter()
                    .map(|(r, o)| (r, o.to_string()))
                    .collect::<Vec<_>>(),
            )
        })
        .unwrap_or_else(|e| {
            tracing::debug!(error = %e, "reading the manifests' refs");
            last.manifests
        });
    let keys = gatos
        .keys()
        .list()
        .map(|k| fingerprint(&k))
        .unwrap_or_else(|e| {
            tracing::debug!(error = %e, "reading the keys");
            last.keys
        });
    // The status (running, last run) and the debt the gauges' read measured.
    let maintenance = match prints.debt {
        Some(debt) => {
            let mut m = node.maintenance();
            m.debt = None;
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (fingerprint(&m), debt).hash(&mut h);
            h.finish()
        }
        None => last.maintenance,
    };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    if let Some(s) = node.sync() {
        (s.runs_total, s.failures_total, s.rejected_total, s.last_ok).hash(&mut h);
        s.last_at.map(|t| t.to_string()).hash(&mut h);
    }
    // A sync run by hand (`git gatos sync`) that rejected refs grew the rejection log.
    if let Ok(m) = std::fs::metadata(gatos.gatos_dir().join("sync").join("rejected.jsonl")) {
        (m.len(), m.modified().ok()).hash(&mut h);
    }
    crate::shared::NodeChanges {
        claims,
        sync: h.finish(),
        topics: prints.topics.unwrap_or(last.topics),
        groups: prints.groups.unwrap_or(last.groups),
        manifests,
        keys,
        audit: prints.audit.unwrap_or(last.audit),
        maintenance,
    }
}

/// Blocks until `stop` or `d` passes (a follower's back-off).
fn wait_or_stop(stop: &CancellationToken, d: Duration) {
    let deadline = Instant::now() + d;
    while !stop.is_cancelled() && Instant::now() < deadline {
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_past_the_budget_count_as_other() {
        let seen = Mutex::default();
        for i in 0..MAX_QUEUES {
            assert_eq!(
                bounded(&seen, &format!("q{i}"), MAX_QUEUES),
                format!("q{i}")
            );
        }
        assert_eq!(bounded(&seen, "late", MAX_QUEUES), OTHER);
        assert_eq!(bounded(&seen, "q0", MAX_QUEUES), "q0");
    }

    #[test]
    fn past_the_top_the_rest_is_summed_as_other() {
        let rows: Vec<(String, u64)> = (0..60).map(|i| (format!("t{i}"), i)).collect();
        let got = top(rows, MAX_TOPICS, |r| r.1, |n| (OTHER.to_owned(), n));
        assert_eq!(got.len(), MAX_TOPICS + 1);
        assert_eq!(got[0], ("t59".to_owned(), 59));
        assert_eq!(got[MAX_TOPICS], (OTHER.to_owned(), (0..40).sum()));
        let few: Vec<(String, u64)> = vec![("a".into(), 1)];
        assert_eq!(top(few, 20, |r| r.1, |n| (OTHER.to_owned(), n)).len(), 1);
    }

    #[test]
    fn open_attempts_are_bounded() {
        let mut open = OpenAttempts::default();
        let job = gatos_types::Ulid::from_parts(1, 1);
        for a in 0..(MAX_OPEN_ATTEMPTS as u32 + 10) {
            open.insert((job, a), 1);
        }
        assert!(open.at.len() <= MAX_OPEN_ATTEMPTS);
        assert_eq!(open.take(&(job, 0)), None);
        assert_eq!(open.take(&(job, MAX_OPEN_ATTEMPTS as u32 + 9)), Some(1));
    }
}

#[cfg(test)]
mod contract {
    use super::*;

    /// The `# HELP` and `# TYPE` lines of a scrape, in order.
    fn descriptors(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|l| l.starts_with("# HELP ") || l.starts_with("# TYPE "))
            .collect()
    }

    /// The lines between the contract markers of `docs/metrics.md`.
    fn documented() -> Vec<String> {
        let doc = include_str!("../../../docs/metrics.md");
        doc.lines()
            .skip_while(|l| !l.starts_with("<!-- contract:begin"))
            .skip(2)
            .take_while(|l| !l.starts_with("```"))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn the_descriptors_are_the_documented_contract() -> Result<(), std::fmt::Error> {
        // A family is written once it has a series: give each one.
        let m = Metrics::new();
        m.watch_states(gatos::state::Window::new(gatos::state::Retention::default()));
        m.request("rpc", "messages.publish", "ok", Duration::from_millis(3));
        m.http_response(Some("/metrics"), 200);
        m.rate_limited("ci");
        let job = gatos_types::Ulid::from_parts(1_000, 7);
        let event = |event, at| -> Result<JobEvent, std::fmt::Error> {
            Ok(JobEvent {
                event,
                job,
                attempt: 1,
                queue: "q".parse().map_err(|_| std::fmt::Error)?,
                worker: None,
                commit: gatos_types::Oid::from_bytes([0; 20]),
                at: gatos_types::Timestamp::from_millis(at),
                reason: None,
            })
        };
        m.job_event(&event(JobEventKind::Claimed, 3_000)?);
        m.job_event(&event(JobEventKind::Succeeded, 5_000)?);
        m.set_store(StoreSnapshot {
            jobs: vec![("q".into(), "pending", 2)],
            topics: vec![("t".into(), 3)],
            lags: vec![("t".into(), "g".into(), 1)],
            debt: vec![("packs", 1)],
            damaged: vec![("topics", 0), ("checkpoints", 1)],
            sync: Some((1, 0, 0)),
        });
        let (text, ct) = m.encode(0, 0, false)?;
        assert!(text.contains("gatos_sync_runs_total{result=\"ok\"} 1"));
        assert!(text.contains("gatos_consumer_lag_messages{topic=\"t\",group=\"g\"} 1"));
        assert!(text.contains("gatos_damaged{listing=\"checkpoints\"} 1"));
        assert!(text.contains("gatos_jobs_claim_latency_seconds_sum{queue=\"q\"} 2.0"));
        assert!(
            text.contains("gatos_jobs_duration_seconds_sum{queue=\"q\",outcome=\"succeeded\"} 2.0")
        );
        assert!(ct.starts_with("text/plain; version=0.0.4"));
        let got = descriptors(&text);
        if std::env::var_os("GATOS_PRINT_METRICS").is_some() {
            eprintln!("{}", got.join("\n"));
        }
        assert_eq!(
            got,
            documented(),
            "docs/metrics.md's contract block differs from a scrape"
        );
        let (om, ct) = m.encode(0, 0, true)?;
        assert!(om.contains("gatos_jobs{queue=\"q\",state=\"pending\"} 2"));
        assert!(ct.starts_with("application/openmetrics-text"));
        assert!(om.ends_with("# EOF\n"));
        Ok(())
    }
}
