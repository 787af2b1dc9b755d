//! The service: every rule and composition a face needs, once.
//!
//! Faces call [`Service::call`] with an operation's name and its JSON params (gatosd, and
//! later HTTP and MCP), or the typed method of the operation (the CLI). Either way the
//! same function runs: validation, defaults, the enqueue pipeline, the rules of
//! `jobs.complete`, the actor the writes are made for, and read-only mode.

use std::sync::Arc;

use base64::Engine as _;
use gatos::Gatos;
use gatos::jobs::lifecycle::{ClaimOptions, DEFAULT_LEASE, Finish, SecretProbe};
use gatos::jobs::manifest::{self, Input, Overrides};
use gatos::messages::{BatchItem, BatchOptions, Cursor, PublishOptions};
use gatos_types::jobs::{EnqueueRow, JobRow, ManifestRow, Outcome, VerifyRow};
use gatos_types::wire::{CheckpointRow, PublishRow, ReadPage};
use gatos_types::{Dur, ErrorCode, Oid, Topic};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::actor::Actor;
use crate::node::NodeStatus;
use crate::ops::{self, Access, Shape, names as n};
use crate::types::*;

/// Why a call did not run, or what it failed with.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No operation has this name (JSON-RPC -32601).
    #[error("no operation {0:?}")]
    UnknownOperation(String),
    /// The operation exists but this entry point does not run it: a stream or a session
    /// operation, which the face serves itself.
    #[error("{0} is served by the face, not by Service::call")]
    NotUnary(&'static str),
    /// The params do not fit the operation's request type (JSON-RPC -32602, HTTP 400).
    #[error("invalid params: {0}")]
    InvalidParams(String),
    /// The operation ran and failed with a taxonomy error.
    #[error(transparent)]
    Failed(#[from] gatos::Error),
}

/// How a face configures the service.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Refuse every write operation (`gatosd --read-only`) with `Forbidden`.
    pub read_only: bool,
    /// A job enqueued without a checkout choice runs in `HEAD` of the work tree (the CLI
    /// in a work tree). Off, it has no checkout unless the request names one (gatosd).
    pub checkout_head_by_default: bool,
    /// The remote `sync.run` uses when the request names none.
    pub sync_remote: Option<String>,
    /// The most bytes of messages one `messages.read` page carries (0: no cap beyond the
    /// library's own).
    pub max_page_bytes: u64,
}

/// A successful unary call: the JSON answer, and the topics it wrote to (a face wakes
/// their followers at once instead of waiting for its poll).
#[derive(Debug)]
pub struct Answer {
    /// The result, serialized.
    pub result: Box<RawValue>,
    /// Topics the call published on.
    pub touched: Vec<Topic>,
    /// True when the answer names damage (a listing's `damaged`, ADR 0047): it is not
    /// fixed by its operation's ref state (an object that was missing may arrive with no
    /// ref moving), so a face gives it no state tag and no cache keeps it.
    pub unfixed: bool,
}

/// What [`Service::call_now_or_park`] made of a call.
#[derive(Debug)]
pub enum Now {
    /// The call ran: its answer.
    Done(Result<Answer, CallError>),
    /// It would have waited, or is not quick: nothing was done; make it with
    /// [`Service::call`].
    WouldWait,
    /// A publish waiting for its topic's group commit: the future gives its answer.
    Parked(ParkedCall),
}

impl Now {
    /// The call's answer, a parked one awaited; `None` when it would have waited (nothing
    /// was done: make it with [`Service::call`]).
    pub async fn settled(self) -> Option<Result<Answer, CallError>> {
        match self {
            Now::Done(r) => Some(r),
            Now::WouldWait => None,
            Now::Parked(p) => p.await,
        }
    }
}

/// A parked publish's answer, as [`Service::call`] would have given it; `None` when it was
/// handed back unwritten (its group would have waited, or the thread that took it had
/// committed enough for others): make the call with [`Service::call`].
#[derive(Debug)]
#[must_use = "a parked call is answered through its future"]
pub struct ParkedCall(gatos::nowait::Parked);

impl std::future::Future for ParkedCall {
    type Output = Option<Result<Answer, CallError>>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let answer = std::task::ready!(std::pin::Pin::new(&mut self.0).poll(cx));
        std::task::Poll::Ready(answer.map(|row| {
            Ok(Answer {
                result: encode(&row?)?,
                touched: vec![self.0.topic().clone()],
                unfixed: false,
            })
        }))
    }
}

/// The longest `jobs.logs` may wait for new output (`wait_ms`), in ms.
pub const LOGS_MAX_WAIT_MS: u64 = 30_000;

/// The service over one repository. Cheap to clone.
#[derive(Clone)]
pub struct Service {
    gatos: Gatos,
    config: Arc<Config>,
    node: Arc<NodeStatus>,
    /// The ref states answered at, kept for a while (ADR 0044; [`crate::state`]).
    window: Arc<gatos::state::Window>,
    /// The durable snapshots' documents read so far, by `meta` commit (ADR 0044).
    snapshots: Arc<gatos::snapshot::saved::Index>,
    /// A daemon's read-ahead of the jobs its workers claim next (ADR 0046 session 20).
    read_ahead: Option<Arc<gatos::jobs::readahead::ReadAhead>>,
}

type R<T> = Result<T, CallError>;

/// A request that does not fit its operation (a face's usage error: JSON-RPC -32602, CLI
/// exit status 2).
fn invalid(msg: impl Into<String>) -> CallError {
    CallError::InvalidParams(msg.into())
}

impl From<CallError> for gatos::Error {
    /// For faces that speak the taxonomy only (the CLI's `--json` errors): request errors
    /// are `InvalidInput`.
    fn from(e: CallError) -> gatos::Error {
        match e {
            CallError::Failed(e) => e,
            CallError::InvalidParams(m) => gatos::Error::new(ErrorCode::InvalidInput, m),
            other => gatos::Error::new(ErrorCode::Internal, other.to_string()),
        }
    }
}

/// RFC 4648 base32, lower case, no padding.
fn base32(bytes: &[u8]) -> String {
    const A: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let (mut out, mut acc, mut bits) = (String::new(), 0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(A[((acc >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(A[((acc << (5 - bits)) & 31) as usize]));
    }
    out
}

fn decode<T: DeserializeOwned>(params: Map<String, Value>) -> Result<T, CallError> {
    serde_json::from_value(Value::Object(params))
        .map_err(|e| CallError::InvalidParams(e.to_string()))
}

fn encode<T: Serialize>(v: &T) -> Result<Box<RawValue>, CallError> {
    serde_json::value::to_raw_value(v).map_err(|e| {
        CallError::Failed(gatos::Error::new(
            ErrorCode::Internal,
            format!("encoding an answer: {e}"),
        ))
    })
}

/// A lease given as whole seconds or a duration string; default 30 s.
pub fn lease_of(v: Option<&Value>) -> R<Dur> {
    match v {
        None => Ok(DEFAULT_LEASE),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Dur::from_secs)
            .ok_or_else(|| invalid("lease must be whole seconds or a duration")),
        Some(Value::String(s)) => Dur::parse(s).map_err(|e| invalid(format!("lease: {e}"))),
        Some(_) => Err(invalid("lease must be seconds or a duration like 30s")),
    }
}

fn b64(field: &str, v: Option<&str>) -> R<Vec<u8>> {
    match v {
        None => Ok(Vec::new()),
        Some(s) => base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map_err(|_| invalid(format!("{field} is not base64"))),
    }
}

/// A read position: after a ULID, after a seq, or from a time — at most one of them.
///
/// # Errors
/// `InvalidParams` when more than one is given.
pub fn cursor(
    since: Option<gatos_types::Ulid>,
    since_seq: Option<u64>,
    since_time: Option<gatos_types::Timestamp>,
    default: Cursor,
) -> R<Cursor> {
    match (since, since_seq, since_time) {
        (Some(u), None, None) => Ok(Cursor::Ulid(u)),
        (None, Some(n), None) => Ok(Cursor::Seq(n)),
        (None, None, Some(t)) => Ok(Cursor::Time(t)),
        (None, None, None) => Ok(default),
        _ => Err(invalid("give one of since, since_seq and since_time")),
    }
}

impl Service {
    /// A service over `gatos`.
    pub fn new(gatos: Gatos, config: Config) -> Service {
        Service {
            gatos,
            config: Arc::new(config),
            node: Arc::default(),
            window: gatos::state::Window::new(gatos::state::Retention::default()),
            snapshots: Arc::default(),
            read_ahead: None,
        }
    }

    /// This service keeping the next `gatos.jobs.readAhead` jobs read ahead of the
    /// `jobs.claim` calls it answers, on a thread of its own (a daemon; ADR 0046 session
    /// 20); a read-only service, which answers no claim, does not. A CLI process, which
    /// claims once, does not ask for it.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn with_read_ahead(mut self) -> std::io::Result<Service> {
        if self.config.read_only {
            return Ok(self);
        }
        let depth = usize::try_from(self.gatos.settings().read_ahead).unwrap_or(0);
        self.read_ahead =
            gatos::jobs::readahead::ReadAhead::start(&self.gatos, depth)?.map(Arc::new);
        Ok(self)
    }

    /// The snapshots' documents read so far.
    pub fn snapshot_index(&self) -> &gatos::snapshot::saved::Index {
        &self.snapshots
    }

    /// This service keeping ref states as `retention` says (`--graphql-state-ttl`).
    #[must_use]
    pub fn with_state_retention(mut self, retention: gatos::state::Retention) -> Service {
        self.window = gatos::state::Window::new(retention);
        self
    }

    /// The kept ref states.
    pub fn window(&self) -> &Arc<gatos::state::Window> {
        &self.window
    }

    /// Where a [`crate::Node`] running beside this service records what its sync and
    /// maintenance did (pass it as [`crate::NodeOptions::status`]), for [`Service::ready`].
    pub fn node_status(&self) -> &Arc<NodeStatus> {
        &self.node
    }

    /// The repository (for what a face does besides operations: streams, health).
    pub fn gatos(&self) -> &Gatos {
        &self.gatos
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn as_actor(&self, actor: &Actor) -> Gatos {
        self.gatos.with_actor(&actor.to_string())
    }

    fn writable(&self, op: &str) -> R<()> {
        if self.config.read_only {
            return Err(gatos::Error::new(
                ErrorCode::Forbidden,
                format!("{op} writes, and this node serves reads only (read-only mode)"),
            )
            .with_detail("read_only", true)
            .into());
        }
        Ok(())
    }

    /// [`Service::call`] of a [quick](ops::Op::quick) operation where waiting is refused
    /// ([`gatos::nowait`]): `None` when the call would have waited, having written nothing;
    /// the caller then makes it with [`Service::call`] where waiting is fine. `None` also
    /// for an operation that is not quick.
    pub fn call_now(
        &self,
        actor: &Actor,
        name: &str,
        params: &Map<String, Value>,
    ) -> Option<Result<Answer, CallError>> {
        match self.quick(actor, name, params, false) {
            Now::Done(r) => Some(r),
            Now::WouldWait | Now::Parked(_) => None,
        }
    }

    /// As [`Service::call_now`], and a publish that finds its topic's group commit under
    /// way *parks* (ADR 0046, session 15): it is committed by that group's leader, and
    /// [`Now::Parked`]'s future gives its answer, or `None` when the group would have
    /// waited (then nothing was written and the call is made with [`Service::call`]). For
    /// a caller that can await the answer while its thread serves others (gatosd's
    /// connections).
    pub fn call_now_or_park(&self, actor: &Actor, name: &str, params: &Map<String, Value>) -> Now {
        self.quick(actor, name, params, true)
    }

    fn quick(&self, actor: &Actor, name: &str, params: &Map<String, Value>, park: bool) -> Now {
        if !ops::find(name).is_some_and(|o| o.quick) {
            return Now::WouldWait;
        }
        // A large payload is work for the caller's thread even when nothing waits (and a
        // copy of it here): it goes where the slow calls go.
        let mut budget = QUICK_PARAMS_BYTES;
        if !params.iter().all(|(k, v)| within(k.len(), v, &mut budget)) {
            return Now::WouldWait;
        }
        let call = || self.call(actor, name, params.clone());
        // The caller's thread is an event loop: a panic (a bug) is the call's Internal
        // error, as it is for a call that ran on a pool thread, not the loop's task's end.
        let now = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if park {
                gatos::nowait::run_or_park(call)
            } else {
                gatos::nowait::run(call)
                    .map_or(gatos::nowait::Now::WouldWait, gatos::nowait::Now::Done)
            }
        }))
        .unwrap_or_else(|_| {
            gatos::nowait::Now::Done(Err(CallError::Failed(gatos::Error::new(
                ErrorCode::Internal,
                "the call failed inside the daemon",
            ))))
        });
        match now {
            gatos::nowait::Now::Done(r) => Now::Done(r),
            gatos::nowait::Now::WouldWait => Now::WouldWait,
            gatos::nowait::Now::Parked(p) => {
                // Answered already (its own thread led for it because the leader had let go,
                // or another thread committed or handed it back meanwhile): answered here,
                // with no task to wake.
                let mut call = ParkedCall(p);
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                match std::pin::Pin::new(&mut call).poll(&mut cx) {
                    std::task::Poll::Ready(Some(r)) => Now::Done(r),
                    std::task::Poll::Ready(None) => Now::WouldWait,
                    std::task::Poll::Pending => Now::Parked(call),
                }
            }
        }
    }

    /// Runs the unary operation `name` with JSON `params` for `actor`.
    ///
    /// # Errors
    /// [`CallError`]: an unknown name, a stream or session operation, params that do not
    /// fit, a write in read-only mode, or what the operation failed with.
    pub fn call(
        &self,
        actor: &Actor,
        name: &str,
        params: Map<String, Value>,
    ) -> Result<Answer, CallError> {
        let op = ops::find(name).ok_or_else(|| CallError::UnknownOperation(name.to_owned()))?;
        if op.shape != Shape::Unary {
            return Err(CallError::NotUnary(op.name));
        }
        if op.access == Access::Write {
            self.writable(op.name)?;
        }
        let events = || vec![gatos::jobs::events_topic()];
        let mut unfixed = false;
        let (result, touched) = match op.name {
            n::MESSAGES_PUBLISH => {
                let p: PublishParams = decode(params)?;
                let topic = p.topic.clone();
                (encode(&self.messages_publish(actor, p)?)?, vec![topic])
            }
            n::MESSAGES_PUBLISH_BATCH => {
                let p: PublishBatchParams = decode(params)?;
                let topic = p.topic.clone();
                (
                    encode(&self.messages_publish_batch(actor, p)?)?,
                    vec![topic],
                )
            }
            n::MESSAGES_READ => (encode(&self.messages_read(decode(params)?)?)?, vec![]),
            n::MESSAGES_ACK => (encode(&self.messages_ack(actor, decode(params)?)?)?, vec![]),
            n::TOPICS_LIST => {
                let _: NoParams = decode(params)?;
                let listed = self.topics_list()?;
                unfixed = !listed.damaged.is_empty();
                (encode(&listed)?, vec![])
            }
            n::STATE_RESOLVE => (encode(&self.state_resolve(decode(params)?)?)?, vec![]),
            n::SNAPSHOTS_CREATE => (
                encode(&self.snapshots_create(actor, decode(params)?)?)?,
                vec![],
            ),
            n::SNAPSHOTS_LIST => {
                let _: NoParams = decode(params)?;
                (encode(&self.snapshots_list()?)?, vec![])
            }
            n::SNAPSHOTS_DELETE => (
                encode(&self.snapshots_delete(actor, decode(params)?)?)?,
                vec![gatos::audit::topic()],
            ),
            n::QUEUES_LIST => {
                let _: NoParams = decode(params)?;
                (encode(&self.queues_list()?)?, vec![])
            }
            n::JOBS_ATTEMPTS => (encode(&self.jobs_attempts(decode(params)?)?)?, vec![]),
            n::MANIFESTS_VERSIONS => (encode(&self.manifests_versions(decode(params)?)?)?, vec![]),
            n::CHECKPOINTS_GET => (encode(&self.checkpoints_get(decode(params)?)?)?, vec![]),
            n::CHECKPOINTS_LIST => {
                let listed = self.checkpoints_list(decode(params)?)?;
                unfixed = !listed.damaged.is_empty();
                (encode(&listed)?, vec![])
            }
            n::CHECKPOINTS_SET => (
                encode(&self.checkpoints_set(actor, decode(params)?)?)?,
                vec![],
            ),
            n::JOBS_ENQUEUE => (
                encode(&self.jobs_enqueue(actor, decode(params)?)?)?,
                events(),
            ),
            n::JOBS_GET => (encode(&self.jobs_get(decode(params)?)?)?, vec![]),
            n::JOBS_WHY => (encode(&self.jobs_why(decode(params)?)?)?, vec![]),
            n::JOBS_LIST => (encode(&self.jobs_list(decode(params)?)?)?, vec![]),
            n::JOBS_CLAIM => (encode(&self.jobs_claim(actor, decode(params)?)?)?, events()),
            n::JOBS_HEARTBEAT => (
                encode(&self.jobs_heartbeat(actor, decode(params)?)?)?,
                vec![],
            ),
            n::JOBS_COMPLETE => (
                encode(&self.jobs_complete(actor, decode(params)?)?)?,
                events(),
            ),
            n::JOBS_FAIL => (encode(&self.jobs_fail(actor, decode(params)?)?)?, events()),
            n::JOBS_CANCEL => (
                encode(&self.jobs_cancel(actor, decode(params)?)?)?,
                events(),
            ),
            n::JOBS_RETRY => (encode(&self.jobs_retry(actor, decode(params)?)?)?, events()),
            n::JOBS_LOGS => (encode(&self.jobs_logs(decode(params)?)?)?, vec![]),
            n::JOBS_VERIFY => (encode(&self.jobs_verify(decode(params)?)?)?, vec![]),
            n::MANIFESTS_PUT => (
                encode(&self.manifests_put(actor, decode(params)?)?)?,
                vec![],
            ),
            n::MANIFESTS_GET => (encode(&self.manifests_get(decode(params)?)?)?, vec![]),
            n::MANIFESTS_LIST => {
                let _: NoParams = decode(params)?;
                (encode(&self.manifests_list()?)?, vec![])
            }
            n::MANIFESTS_RUN => (
                encode(&self.manifests_run(actor, decode(params)?)?)?,
                events(),
            ),
            n::KEYS_LIST => {
                let _: NoParams = decode(params)?;
                (encode(&self.keys_list()?)?, vec![])
            }
            n::DOCTOR_CHECK => {
                let _: NoParams = decode(params)?;
                (encode(&self.doctor_check()?)?, vec![])
            }
            n::AUDIT_READ => (encode(&self.audit_read(decode(params)?)?)?, vec![]),
            n::SYNC_RUN => (encode(&self.sync_run(actor, decode(params)?)?)?, vec![]),
            n::SYNC_REJECTIONS => (encode(&self.sync_rejections(decode(params)?)?)?, vec![]),
            n::GATOS_VERSION => {
                let _: NoParams = decode(params)?;
                (encode(&Service::version())?, vec![])
            }
            n::GATOS_HEALTH | n::GATOS_READY => return Err(CallError::NotUnary(op.name)),
            other => return Err(CallError::UnknownOperation(other.to_owned())),
        };
        Ok(Answer {
            result,
            touched,
            unfixed,
        })
    }

    /// The state tag of a call of `name` with `params` (ADR 0042): `None` for an operation
    /// whose row is not `Cache::State`; else `g1-` and the base32 of 16 bytes of BLAKE3 over
    /// the gatos version, the answer-shaping config (`max_page_bytes`), the operation, its
    /// params (JCS) and exactly the refs that fix its answer. Computed *before* the call
    /// runs, so an answer is never older than its tag: a ref that moves between the two
    /// makes the next tag differ, and the client reads again.
    ///
    /// # Errors
    /// [`CallError`]: an unknown name, params that do not fit, a store failure.
    pub fn state_tag(
        &self,
        name: &str,
        params: &Map<String, Value>,
    ) -> Result<Option<String>, CallError> {
        let op = ops::find(name).ok_or_else(|| CallError::UnknownOperation(name.to_owned()))?;
        if op.cache != ops::Cache::State {
            return Ok(None);
        }
        let refs = match op.name {
            n::MESSAGES_READ => {
                let p: ReadParams = decode(params.clone())?;
                self.gatos.messages().state(&p.topic)?
            }
            n::AUDIT_READ => self.gatos.messages().state(&gatos::audit::topic())?,
            n::CHECKPOINTS_GET => {
                let p: CheckpointGetParams = decode(params.clone())?;
                self.gatos.checkpoints().state(&p.group, &p.topic)?
            }
            n::CHECKPOINTS_LIST => self.gatos.checkpoints().state_all()?,
            n::MANIFESTS_GET | n::MANIFESTS_LIST => self.gatos.manifests().stamp()?,
            other => {
                return Err(CallError::Failed(gatos::Error::new(
                    ErrorCode::Internal,
                    format!("{other} is cached by state and has no state tag"),
                )));
            }
        };
        let mut h = blake3::Hasher::new();
        let mut field = |b: &[u8]| {
            h.update(&(b.len() as u64).to_le_bytes());
            h.update(b);
        };
        field(env!("CARGO_PKG_VERSION").as_bytes());
        field(&self.config.max_page_bytes.to_le_bytes());
        field(op.name.as_bytes());
        field(&gatos_types::jcs::to_vec(&Value::Object(params.clone())));
        for (r, oid) in &refs {
            field(r.as_bytes());
            field(oid.to_string().as_bytes());
        }
        let digest = h.finalize();
        Ok(Some(format!("g1-{}", base32(&digest.as_bytes()[..16]))))
    }

    // ---- messages ----

    /// `messages.publish`.
    ///
    /// # Errors
    /// What the publish failed with.
    pub fn messages_publish(&self, actor: &Actor, p: PublishParams) -> R<PublishRow> {
        Ok(self.as_actor(actor).messages().publish(
            &p.topic,
            p.payload,
            &PublishOptions {
                headers: p.headers,
                expect_last_seq: p.expect_last_seq,
            },
        )?)
    }

    /// `messages.publish_batch`: on failure the error says how many landed (`landed`).
    ///
    /// # Errors
    /// What the batch failed with, with `landed`.
    pub fn messages_publish_batch(
        &self,
        actor: &Actor,
        p: PublishBatchParams,
    ) -> R<PublishBatchResult> {
        let mut rows = Vec::with_capacity(p.messages.len());
        let items = p.messages.into_iter().map(|m| {
            Ok(BatchItem {
                payload: m.payload,
                headers: m.headers,
            })
        });
        let opts = BatchOptions {
            chunk: p.chunk.unwrap_or(gatos::messages::DEFAULT_CHUNK),
            expect_last_seq: p.expect_last_seq,
        };
        let landed =
            self.as_actor(actor)
                .messages()
                .publish_batch(&p.topic, items, &opts, |r| {
                    rows.push(r.clone());
                    Ok(())
                })?;
        Ok(PublishBatchResult {
            results: rows,
            landed,
        })
    }

    /// `messages.read`, capped in bytes by [`Config::max_page_bytes`].
    ///
    /// # Errors
    /// `NotFound` for an unknown cursor; `InvalidInput` for a bad limit.
    pub fn messages_read(&self, p: ReadParams) -> R<ReadPage> {
        self.reads(crate::state::Src::Live).messages_read(p)
    }

    /// `messages.ack`: the checkpoint moves to `ulid` if that is forward (one CAS; of two
    /// racing acks the greater wins).
    ///
    /// # Errors
    /// `NotFound` for a ULID that is not a message of the topic (nothing changes).
    pub fn messages_ack(&self, actor: &Actor, p: AckParams) -> R<gatos::checkpoints::AckOutcome> {
        Ok(self
            .as_actor(actor)
            .checkpoints()
            .ack(&p.group, &p.topic, p.ulid)?)
    }

    /// `NotFound` for a topic that exists in no form on this node (no message, segment,
    /// summary or settings), naming the known topics closest to the name (`did_you_mean`).
    /// Faces that answer a read of such a topic with an error rather than an empty page
    /// (the CLI's `read` and `consume` without `--follow`, DESIGN §4) ask this first.
    ///
    /// # Errors
    /// The `NotFound` described; a store failure.
    pub fn require_topic(&self, topic: &Topic) -> R<()> {
        let messages = self.gatos.messages();
        if messages.known(topic)? {
            return Ok(());
        }
        let names: Vec<String> = messages
            .topics()?
            .into_iter()
            .map(|t| t.topic.as_str().to_owned())
            .collect();
        let close = closest(topic.as_str(), &names);
        let mut msg = format!("no topic '{topic}' on this node (nothing was published to it here)");
        if let Some(first) = close.first() {
            msg.push_str(&format!("; did you mean '{first}'?"));
        }
        Err(gatos::Error::new(ErrorCode::NotFound, msg)
            .with_detail("did_you_mean", close)
            .into())
    }

    /// `topics.list`.
    ///
    /// # Errors
    /// A store failure.
    pub fn topics_list(&self) -> R<TopicsResult> {
        let listing = self.gatos.messages().listing()?;
        Ok(TopicsResult {
            topics: listing.rows,
            damaged: listing.damaged,
        })
    }

    /// `checkpoints.get`.
    ///
    /// # Errors
    /// A store failure.
    pub fn checkpoints_get(&self, p: CheckpointGetParams) -> R<CheckpointRow> {
        Ok(self.gatos.checkpoints().get(&p.group, &p.topic)?)
    }

    /// `checkpoints.list`: every consumer group's checkpoint, or those on a topic or of a
    /// group, with their lag.
    ///
    /// # Errors
    /// A store failure.
    pub fn checkpoints_list(&self, p: CheckpointListParams) -> R<CheckpointsResult> {
        let listing = self
            .gatos
            .checkpoints()
            .listing(p.topic.as_ref(), p.group.as_ref())?;
        Ok(CheckpointsResult {
            checkpoints: listing.rows,
            damaged: listing.damaged,
        })
    }

    /// `checkpoints.set` (a backwards move needs `force` and is audited).
    ///
    /// # Errors
    /// `NotFastForward` backwards without force; `NotFound` for a ULID not in the topic.
    pub fn checkpoints_set(&self, actor: &Actor, p: CheckpointSetParams) -> R<CheckpointRow> {
        Ok(self
            .as_actor(actor)
            .checkpoints()
            .set(&p.group, &p.topic, p.ulid, p.force)?)
    }

    // ---- jobs ----

    /// `jobs.enqueue` from its request: the manifest member (a JSON object) and the fields
    /// that override it.
    ///
    /// # Errors
    /// As [`Service::jobs_enqueue_input`].
    pub fn jobs_enqueue(&self, actor: &Actor, p: EnqueueParams) -> R<EnqueueRow> {
        let file = p.manifest.map(manifest::from_value).transpose()?;
        let o = Overrides {
            argv: p.command,
            queue: p.queue,
            caps: p.caps,
            timeout: p.timeout,
            max_attempts: p.max_attempts,
            priority: p.priority,
            env: p.env,
            run_after: p.run_after,
            cwd: p.cwd,
            outputs: p.outputs,
            labels: p.labels,
            inputs: p.inputs,
            checkout: p.checkout,
        };
        self.jobs_enqueue_input(actor, file, o)
    }

    /// The enqueue pipeline every face runs: build the manifest from a document and the
    /// overriding fields, resolve the checkout (`HEAD` of the work tree by default when
    /// [`Config::checkout_head_by_default`]), normalize, scan, sign and enqueue.
    ///
    /// # Errors
    /// `InvalidInput` for a manifest that does not validate or names no command;
    /// `SecretDetected`; `NotFound` for a checkout revision this repository lacks.
    pub fn jobs_enqueue_input(
        &self,
        actor: &Actor,
        file: Option<Input>,
        o: Overrides,
    ) -> R<EnqueueRow> {
        if file.is_some() && o.argv.is_some() {
            return Err(invalid(
                "give the command either in the manifest or as the command, not both",
            ));
        }
        if file.is_none() && o.argv.is_none() {
            return Err(invalid("nothing to run: give a command or a manifest"));
        }
        let g = self.as_actor(actor);
        let mut input = manifest::build(file, o)?;
        let default = if self.config.checkout_head_by_default {
            g.default_checkout()
        } else {
            None
        };
        manifest::resolve_checkout(&mut input, default, |rev| g.resolve_commit(rev))?;
        let spec = manifest::normalize(input, g.now())?;
        let actor = g.actor();
        Ok(g.jobs().enqueue_as(spec, &actor)?)
    }

    /// `jobs.get`: with what a pending job waits for, checked against no particular
    /// worker (`waiting`).
    ///
    /// # Errors
    /// `NotFound`.
    pub fn jobs_get(&self, p: JobIdParams) -> R<JobRow> {
        let mut row = self.gatos.jobs().show(p.id)?;
        if row.state == gatos_types::jobs::JobState::Pending {
            row.waiting = gatos::jobs::waiting::explain(&self.gatos, p.id, None)?.conditions;
        }
        Ok(row)
    }

    /// `jobs.why`: what a job waits for, checked against a worker's options (its queues,
    /// `default` when none; its capabilities; its secrets' names when given; its trust of
    /// enqueuers), and whether such a worker would claim it now.
    ///
    /// # Errors
    /// `NotFound`; `InvalidInput` for a name that is not a secret name.
    pub fn jobs_why(&self, p: WhyParams) -> R<WhyResult> {
        if let Some(bad) = p
            .secrets
            .iter()
            .flatten()
            .find(|s| !gatos::jobs::secrets::is_valid_secret_name(s))
        {
            return Err(invalid(format!("{bad:?} is not a secret name")));
        }
        let w = gatos::jobs::waiting::WorkerSpec {
            queues: p.queues,
            caps: p.caps,
            secrets: p.secrets,
            allow_untrusted_enqueuers: p.allow_untrusted_enqueuers,
        };
        let x = gatos::jobs::waiting::explain(&self.gatos, p.id, Some(&w))?;
        Ok(WhyResult {
            id: x.id,
            claimable: x.state == gatos_types::jobs::JobState::Pending && !x.is_blocked(),
            state: x.state,
            queues: w.queues(),
            caps: w.caps,
            conditions: x.conditions,
            note: x.note,
        })
    }

    /// `jobs.list`: a page of jobs matching the filters, oldest first, with the cursor of
    /// the next page.
    ///
    /// # Errors
    /// `InvalidInput` for a limit of 0 or above 1,000, a bad id prefix or time range.
    pub fn jobs_list(&self, p: ListParams) -> R<ListResult> {
        let now = self.gatos.now();
        self.reads(crate::state::Src::Live).jobs_list(p, now)
    }

    /// `jobs.claim`: the claim, or `None` when nothing is claimable.
    ///
    /// # Errors
    /// `AlreadyClaimed` for a named job someone holds; `InvalidInput` for a bad lease.
    pub fn jobs_claim(&self, actor: &Actor, p: ClaimParams) -> R<Option<ClaimResult>> {
        let lease = lease_of(p.lease.as_ref())?;
        let secrets = p.secrets.clone();
        let probe: SecretProbe = Arc::new(move |name: &str| secrets.iter().any(|s| s == name));
        let g = self.as_actor(actor);
        let opts = ClaimOptions {
            worker: p.worker,
            worker_key: Some(p.worker_key),
            queues: p.queues,
            caps: p.caps,
            lease,
            can_resolve: Some(probe),
            allow_untrusted_enqueuers: gatos::jobs::enqueuer::allowed_by_config(&g),
        };
        let claimed = match p.id {
            Some(id) => g.jobs().claim(id, &opts).map(Some)?,
            None => g.jobs().claim_next(&opts)?,
        };
        if let (Some(ra), Some(_)) = (&self.read_ahead, &claimed) {
            ra.after_claim(&opts);
        }
        Ok(claimed.map(|l| ClaimResult {
            id: l.id,
            attempt: l.attempt,
            worker: l.worker,
            worker_key: l.worker_key,
            lease_until: l.lease_until,
            claim_commit: l.claim_commit,
            job_content_id: l.content_id,
            manifest: l.spec,
            lease_token: l.token,
        }))
    }

    /// `jobs.heartbeat`.
    ///
    /// # Errors
    /// `LeaseExpired` when the claim is no longer held with this token.
    pub fn jobs_heartbeat(&self, actor: &Actor, p: HeartbeatParams) -> R<HeartbeatResult> {
        let lease = lease_of(p.lease.as_ref())?;
        let g = self.as_actor(actor);
        let jobs = g.jobs();
        let mut l = jobs.lease_for(p.id, p.attempt, &p.worker, p.lease_token.as_ref(), lease)?;
        jobs.heartbeat(&mut l)?;
        Ok(HeartbeatResult {
            lease_until: l.lease_until,
            cancelled: jobs.is_cancelled(p.id)?,
        })
    }

    /// `jobs.complete`: `succeeded` (the default when `exit_code` is 0) or `failed`, with
    /// the worker's signed proof, which is checked. A succeeded attempt has exit code 0.
    ///
    /// # Errors
    /// `InvalidInput` for another outcome or a succeeded attempt with another exit code;
    /// `SignatureInvalid` without a proof or with one that does not verify.
    pub fn jobs_complete(&self, actor: &Actor, p: FinishParams) -> R<FinishResult> {
        let default = if p.exit_code == Some(0) {
            Outcome::Succeeded
        } else {
            Outcome::Failed
        };
        let f = finish_of(&p, default)?;
        if !matches!(f.outcome, Outcome::Succeeded | Outcome::Failed) {
            return Err(invalid(
                "jobs.complete takes outcome succeeded or failed; use jobs.fail for timeout, cancelled or lost",
            ));
        }
        if f.outcome == Outcome::Succeeded && f.exit_code != Some(0) {
            return Err(invalid("a succeeded attempt has exit_code 0"));
        }
        self.finish(
            actor,
            &p,
            &f,
            Some("jobs.complete carries the proof of execution signed by the worker (poe)"),
        )
    }

    /// `jobs.fail`: a failed (default), timed-out, cancelled or abandoned (`lost`) attempt.
    /// A failed or timed-out attempt, or a lost one that reports anything (an exit code,
    /// logs, outputs), carries the worker's proof, which is checked: a result anyone
    /// holding the lease could have written is not one `jobs verify` can check. A
    /// cancelled attempt (which ends in a release, never a result) and a lost one that
    /// reports nothing may come without one.
    ///
    /// # Errors
    /// `InvalidInput` for `succeeded`; `SignatureInvalid` without a proof where one is
    /// needed or with one that does not verify; `Conflict` for `cancelled` when the job
    /// was not cancelled; `LeaseExpired`.
    pub fn jobs_fail(&self, actor: &Actor, p: FinishParams) -> R<FinishResult> {
        let f = finish_of(&p, Outcome::Failed)?;
        if f.outcome == Outcome::Succeeded {
            return Err(invalid("use jobs.complete for a succeeded attempt"));
        }
        let reports = f.exit_code.is_some()
            || !f.stdout.is_empty()
            || !f.stderr.is_empty()
            || !f.outputs.is_empty();
        let needs_proof = match f.outcome {
            Outcome::Failed | Outcome::Timeout => true,
            Outcome::Lost => reports,
            Outcome::Cancelled | Outcome::Succeeded => false,
        };
        self.finish(
            actor,
            &p,
            &f,
            needs_proof.then_some(
                "jobs.fail of a failed or timed-out attempt, or of a lost one that reports an exit code, logs or outputs, carries the proof of execution signed by the worker (poe); give a job back unrun with outcome lost and nothing else",
            ),
        )
    }

    /// Ends the attempt `p` names (its token checked first, so that a caller without it
    /// learns nothing more), with its proof checked; without one only where `needs_proof`
    /// (the refusal's message) is `None`.
    fn finish(
        &self,
        actor: &Actor,
        p: &FinishParams,
        f: &Finish,
        needs_proof: Option<&'static str>,
    ) -> R<FinishResult> {
        let g = self.as_actor(actor);
        let jobs = g.jobs();
        let lease = jobs.lease_for(
            p.id,
            p.attempt,
            &p.worker,
            p.lease_token.as_ref(),
            DEFAULT_LEASE,
        )?;
        if let Some(why) = needs_proof
            && f.poe.is_none()
        {
            return Err(gatos::Error::new(ErrorCode::SignatureInvalid, why).into());
        }
        let done = if f.poe.is_some() {
            jobs.finish_verified(&lease, f)?
        } else {
            jobs.finish(&lease, f)?
        };
        Ok(FinishResult {
            state: done.state,
            commit: done.commit,
        })
    }

    /// `jobs.cancel` (audited).
    ///
    /// # Errors
    /// `NotFound`; `Conflict` for a job with a result.
    pub fn jobs_cancel(&self, actor: &Actor, p: CancelParams) -> R<JobRow> {
        Ok(self.as_actor(actor).jobs().cancel(p.id, p.reason)?)
    }

    /// `jobs.retry`: a new job from a failed or cancelled one's manifest, with a
    /// `Retry-Of` trailer naming it; admission applies.
    ///
    /// # Errors
    /// `NotFound`; `Conflict` for a job that is not failed or cancelled; `QueueFull`.
    pub fn jobs_retry(&self, actor: &Actor, p: JobIdParams) -> R<EnqueueRow> {
        Ok(self.as_actor(actor).jobs().retry(p.id)?)
    }

    /// `jobs.logs`: a piece of one stream of an attempt's log. With `wait_ms`, an empty
    /// answer (no bytes yet, not done, or the attempt not started yet) waits for bytes or
    /// the end, at most that long.
    ///
    /// # Errors
    /// `NotFound` for an unknown job or attempt; `Unavailable` while the job has not started
    /// or runs on another node (after the wait); `InvalidInput` for attempt 0 or
    /// `max_bytes` 0.
    pub fn jobs_logs(&self, p: LogsParams) -> R<gatos::jobs::logs::LogChunk> {
        use gatos::jobs::logs::{FOLLOW_POLL, Options};
        if p.wait_ms.is_some_and(|w| w > LOGS_MAX_WAIT_MS) {
            return Err(invalid(format!("wait_ms is at most {LOGS_MAX_WAIT_MS}")));
        }
        let defaults = Options::default();
        let opts = Options {
            attempt: p.attempt,
            stream: p.stream.unwrap_or_default(),
            from_offset: p.from_offset.unwrap_or(0),
            max_bytes: p.max_bytes.unwrap_or(defaults.max_bytes),
        };
        let deadline =
            std::time::Instant::now() + std::time::Duration::from_millis(p.wait_ms.unwrap_or(0));
        let mut pause = FOLLOW_POLL.0;
        loop {
            let r = self.gatos.jobs().logs(p.id, &opts);
            // Wait for bytes, the end, or the first claim; a job running on another node
            // gives nothing here before its result (after a sync): answer at once.
            let waitable = match &r {
                Ok(c) => c.data.is_empty() && !c.done,
                Err(e) => matches!(
                    e.inner().downcast_ref::<gatos::jobs::logs::Error>(),
                    Some(gatos::jobs::logs::Error::NotStarted { .. })
                ),
            };
            let now = std::time::Instant::now();
            if !waitable || now >= deadline {
                return Ok(r?);
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(FOLLOW_POLL.1);
        }
    }

    /// `jobs.verify`: the job's proof checked under this node's trust.
    ///
    /// # Errors
    /// `NotFound`.
    pub fn jobs_verify(&self, p: JobIdParams) -> R<VerifyRow> {
        Ok(self.gatos.jobs().verify(p.id)?)
    }

    // ---- manifests ----

    /// `manifests.put` (audited).
    ///
    /// # Errors
    /// `InvalidInput`, `SecretDetected`.
    pub fn manifests_put(&self, actor: &Actor, p: ManifestPutParams) -> R<ManifestPutResult> {
        self.manifests_put_input(actor, &p.name, manifest::from_value(p.manifest)?)
    }

    /// `manifests.put` of a parsed manifest (the CLI reads YAML or JSON files).
    ///
    /// # Errors
    /// As [`Service::manifests_put`].
    pub fn manifests_put_input(
        &self,
        actor: &Actor,
        name: &gatos_types::ManifestName,
        input: Input,
    ) -> R<ManifestPutResult> {
        let put = self.as_actor(actor).manifests().put(name, input)?;
        Ok(ManifestPutResult {
            row: put.row,
            changed: put.changed,
        })
    }

    /// `manifests.get`.
    ///
    /// # Errors
    /// `NotFound`.
    pub fn manifests_get(&self, p: ManifestRefParams) -> R<ManifestRow> {
        Ok(self.gatos.manifests().get(&p.name, p.version)?)
    }

    /// `manifests.list`.
    ///
    /// # Errors
    /// A store failure.
    pub fn manifests_list(&self) -> R<ManifestListResult> {
        Ok(ManifestListResult {
            manifests: self.gatos.manifests().list()?,
        })
    }

    /// `manifests.run`.
    ///
    /// # Errors
    /// `NotFound`, and what an enqueue fails with.
    pub fn manifests_run(&self, actor: &Actor, p: ManifestRefParams) -> R<EnqueueRow> {
        Ok(self.as_actor(actor).manifests().run(&p.name, p.version)?)
    }

    // ---- keys and audit ----

    /// `keys.list`.
    ///
    /// # Errors
    /// A store failure.
    pub fn keys_list(&self) -> R<KeysResult> {
        Ok(KeysResult {
            keys: self.gatos.keys().list()?,
        })
    }

    /// `audit.read`: a page of the audit trail after `since` (or from `since_time`), of
    /// one action when asked.
    ///
    /// # Errors
    /// `NotFound` for an unknown `since`; `InvalidInput` for a limit of 0 or above 1,000,
    /// or both `since` and `since_time`.
    pub fn audit_read(&self, p: AuditParams) -> R<AuditResult> {
        const MAX: usize = 1_000;
        let limit = p.limit.unwrap_or(100);
        if limit == 0 || limit > MAX {
            return Err(invalid(format!("limit must be 1 to {MAX}, not {limit}")));
        }
        let since = match (p.since, p.since_time) {
            (Some(_), Some(_)) => return Err(invalid("give since or since_time, not both")),
            (Some(u), None) => gatos::audit::Since::After(u),
            (None, Some(t)) => gatos::audit::Since::Time(t),
            (None, None) => gatos::audit::Since::Start,
        };
        let mut records = Vec::new();
        let mut more = false;
        gatos::audit::list(&self.gatos, since, |r| {
            if p.action.as_deref().is_some_and(|a| r.action != a) {
                return Ok(true);
            }
            if records.len() == limit {
                more = true;
                return Ok(false);
            }
            records.push(r.clone());
            Ok(true)
        })?;
        let next_since = if more {
            records.last().map(|r: &gatos::audit::AuditRecord| r.ulid)
        } else {
            None
        };
        Ok(AuditResult {
            records,
            next_since,
        })
    }

    /// `doctor.check`: every check of `git gatos doctor`, read-only (fixes are the CLI's,
    /// on the node's own files).
    ///
    /// # Errors
    /// When the repository cannot be read at all.
    pub fn doctor_check(&self) -> R<DoctorResult> {
        Ok(DoctorResult {
            findings: gatos::doctor::run(&self.gatos, false)?,
        })
    }

    // ---- node ----

    /// `sync.run`: the request's remote, else the configured one, else the library's
    /// default choice.
    ///
    /// # Errors
    /// What the sync failed with.
    pub fn sync_run(&self, actor: &Actor, p: SyncParams) -> R<gatos_types::sync::SyncReport> {
        Ok(self.as_actor(actor).sync(&gatos::sync::SyncOptions {
            remote: p.remote.or_else(|| self.config.sync_remote.clone()),
            strict: p.strict,
            progress: false,
            accept_unsigned: false,
        })?)
    }

    /// `sync.rejections`: the newest refs sync rejected, from this node's log, newest
    /// first; lines of the log that do not parse are skipped and counted.
    ///
    /// # Errors
    /// `InvalidInput` for a limit of 0 or above 1,000; when the log cannot be read.
    pub fn sync_rejections(
        &self,
        p: crate::types::SyncRejectionsParams,
    ) -> R<crate::types::SyncRejectionsResult> {
        let limit = p.limit.unwrap_or(50);
        if limit == 0 || limit > gatos::sync::validate::MAX_RECENT_REJECTIONS {
            return Err(invalid("limit must be between 1 and 1000"));
        }
        let r = gatos::sync::validate::recent_rejections(&self.gatos, p.remote.as_deref(), limit)?;
        Ok(crate::types::SyncRejectionsResult {
            rejections: r.rejections,
            more: r.more,
            skipped: r.skipped,
        })
    }

    /// `gatos.version`.
    pub fn version() -> VersionResult {
        VersionResult {
            version: env!("CARGO_PKG_VERSION").into(),
            jsonrpc: "2.0".into(),
        }
    }

    /// The store part of `gatos.health`: this node's id and the head of the audit topic
    /// (reading it proves the store answers).
    ///
    /// # Errors
    /// A store failure.
    pub fn health_store(&self) -> R<(Option<gatos_types::Ulid>, Option<Oid>)> {
        let last = self.gatos.messages().head_commit(&gatos::audit::topic())?;
        Ok((self.gatos.node_id().ok(), last))
    }

    /// `gatos.ready`: whether this node should be sent requests — the repository answers
    /// (its refs are read) and the face is not `shutting_down` (the face knows that) —
    /// with what its background sync and maintenance did last ([`Service::node_status`])
    /// and the maintenance debt now. Sync failures and debt are reported, and do not make
    /// the node unready: it still serves its own repository.
    pub fn ready(&self, shutting_down: bool) -> ReadyResult {
        let debt = self
            .health_store()
            .map_err(gatos::Error::from)
            .and_then(|_| gatos::maintenance::debt(&self.gatos));
        let mut maintenance = self.node.maintenance();
        let repository_error = match debt {
            Ok(d) => {
                maintenance.debt = Some(d);
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "the repository did not answer a readiness check");
                Some(e.to_string())
            }
        };
        let readable = repository_error.is_none();
        ReadyResult {
            ready: readable && !shutting_down,
            repository_readable: readable,
            repository_error,
            shutting_down,
            sync: self.node.sync(),
            maintenance,
        }
    }

    /// The queue part of `gatos.health`: each queue's depth against its limit, as this
    /// node sees it (ADR 0027).
    ///
    /// # Errors
    /// A store or index failure.
    pub fn health_queues(&self) -> R<Vec<gatos_types::jobs::QueueDepth>> {
        Ok(gatos::jobs::admission::depths(&self.gatos)?)
    }
}

fn finish_of(p: &FinishParams, default: Outcome) -> R<Finish> {
    let poe = match &p.poe {
        None => None,
        Some(Value::String(s)) => Some(s.as_bytes().to_vec()),
        Some(v @ Value::Object(_)) => Some(gatos_types::jcs::to_vec(v)),
        Some(_) => return Err(invalid("poe must be the DSSE envelope (an object)")),
    };
    let mut outputs = Vec::new();
    for o in &p.outputs {
        outputs.push((
            o.path.clone(),
            b64("outputs[].data_base64", Some(&o.data_base64))?,
        ));
    }
    Ok(Finish {
        outcome: p.outcome.unwrap_or(default),
        exit_code: p.exit_code,
        signal: None,
        stdout: b64("stdout_base64", p.stdout_base64.as_deref())?,
        stderr: b64("stderr_base64", p.stderr_base64.as_deref())?,
        outputs,
        poe,
    })
}

/// The names within an edit distance of 2 of `name` (or sharing a dotted prefix with it),
/// closest first, at most three.
fn closest(name: &str, known: &[String]) -> Vec<String> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                let sub = prev[j] + usize::from(ca != *cb);
                cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
            }
            prev = cur;
        }
        prev[b.len()]
    }
    let stem = |s: &str| s.split('.').next().unwrap_or(s).to_owned();
    let mut scored: Vec<(usize, &String)> = known
        .iter()
        .filter(|k| k.as_str() != name)
        .map(|k| (distance(name, k), k))
        .filter(|(d, k)| *d <= 2 || stem(k) == stem(name))
        .collect();
    scored.sort();
    scored.into_iter().take(3).map(|(_, k)| k.clone()).collect()
}

/// The most bytes of params [`Service::call_now`] takes (strings and keys counted, the
/// rest 8 bytes a value).
const QUICK_PARAMS_BYTES: usize = 64 * 1024;

/// Takes `key` and `v`'s size from `budget`; false once it runs out (and stops looking).
fn within(key: usize, v: &Value, budget: &mut usize) -> bool {
    let own = key
        + match v {
            Value::String(s) => s.len(),
            _ => 8,
        };
    let Some(left) = budget.checked_sub(own) else {
        return false;
    };
    *budget = left;
    match v {
        Value::Array(a) => a.iter().all(|x| within(0, x, budget)),
        Value::Object(o) => o.iter().all(|(k, x)| within(k.len(), x, budget)),
        _ => true,
    }
}
