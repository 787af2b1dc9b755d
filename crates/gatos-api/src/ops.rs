//! The operation table: every operation any face offers, once (ADR 0025).
//!
//! A face is a mapping of this table: gatosd's JSON-RPC dispatch looks an incoming method
//! up here, refuses what the table does not allow on its face or in read-only mode, and
//! hands the rest to [`crate::Service::call`]; `docs/rpc.md`'s method list is rendered
//! from it ([`markdown`]) and checked by a test. The HTTP face maps the rows offered on
//! [`Faces::HTTP`] through [`crate::routes::ROUTES`], and its OpenAPI document is built
//! from both ([`crate::openapi`]). Adding an operation means adding a row here, its request
//! and response types in [`crate::types`], its arm in the service, and, when HTTP offers it,
//! its route.

use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema};

/// Operation names, spelled here only.
pub mod names {
    /// `messages.publish`
    pub const MESSAGES_PUBLISH: &str = "messages.publish";
    /// `messages.publish_batch`
    pub const MESSAGES_PUBLISH_BATCH: &str = "messages.publish_batch";
    /// `messages.read`
    pub const MESSAGES_READ: &str = "messages.read";
    /// `messages.subscribe`
    pub const MESSAGES_SUBSCRIBE: &str = "messages.subscribe";
    /// `messages.unsubscribe`
    pub const MESSAGES_UNSUBSCRIBE: &str = "messages.unsubscribe";
    /// `messages.event` (a notification from the server)
    pub const MESSAGES_EVENT: &str = "messages.event";
    /// `messages.lagged` (a notification from the server: a subscription was dropped)
    pub const MESSAGES_LAGGED: &str = "messages.lagged";
    /// `messages.gap` (a notification: the subscription skipped pruned messages).
    pub const MESSAGES_GAP: &str = "messages.gap";
    /// `messages.ack`
    pub const MESSAGES_ACK: &str = "messages.ack";
    /// `checkpoints.get`
    pub const CHECKPOINTS_GET: &str = "checkpoints.get";
    /// `checkpoints.set`
    pub const CHECKPOINTS_SET: &str = "checkpoints.set";
    /// `checkpoints.list`
    pub const CHECKPOINTS_LIST: &str = "checkpoints.list";
    /// `topics.list`
    pub const TOPICS_LIST: &str = "topics.list";
    /// `gatos.health`
    pub const GATOS_HEALTH: &str = "gatos.health";
    /// `gatos.ready`
    pub const GATOS_READY: &str = "gatos.ready";
    /// `state.resolve`
    pub const STATE_RESOLVE: &str = "state.resolve";
    /// `snapshots.create`
    pub const SNAPSHOTS_CREATE: &str = "snapshots.create";
    /// `snapshots.list`
    pub const SNAPSHOTS_LIST: &str = "snapshots.list";
    /// `snapshots.delete`
    pub const SNAPSHOTS_DELETE: &str = "snapshots.delete";
    /// `queues.list`
    pub const QUEUES_LIST: &str = "queues.list";
    /// `jobs.attempts`
    pub const JOBS_ATTEMPTS: &str = "jobs.attempts";
    /// `manifests.versions`
    pub const MANIFESTS_VERSIONS: &str = "manifests.versions";
    /// `gatos.version`
    pub const GATOS_VERSION: &str = "gatos.version";
    /// `gatos.auth`
    pub const GATOS_AUTH: &str = "gatos.auth";
    /// `jobs.enqueue`
    pub const JOBS_ENQUEUE: &str = "jobs.enqueue";
    /// `jobs.get`
    pub const JOBS_GET: &str = "jobs.get";
    /// `jobs.list`
    pub const JOBS_LIST: &str = "jobs.list";
    /// `jobs.why`
    pub const JOBS_WHY: &str = "jobs.why";
    /// `jobs.claim`
    pub const JOBS_CLAIM: &str = "jobs.claim";
    /// `jobs.heartbeat`
    pub const JOBS_HEARTBEAT: &str = "jobs.heartbeat";
    /// `jobs.complete`
    pub const JOBS_COMPLETE: &str = "jobs.complete";
    /// `jobs.fail`
    pub const JOBS_FAIL: &str = "jobs.fail";
    /// `jobs.cancel`
    pub const JOBS_CANCEL: &str = "jobs.cancel";
    /// `jobs.retry`
    pub const JOBS_RETRY: &str = "jobs.retry";
    /// `jobs.logs`
    pub const JOBS_LOGS: &str = "jobs.logs";
    /// `jobs.verify`
    pub const JOBS_VERIFY: &str = "jobs.verify";
    /// `jobs.watch`
    pub const JOBS_WATCH: &str = "jobs.watch";
    /// `jobs.wait` (the MCP face's bounded wait for a job to end)
    pub const JOBS_WAIT: &str = "jobs.wait";
    /// `jobs.follow`
    pub const JOBS_FOLLOW: &str = "jobs.follow";
    /// `jobs.state` (a notification of `jobs.follow`: the job when the follow starts)
    pub const JOBS_STATE: &str = "jobs.state";
    /// `jobs.log` (a notification of `jobs.follow`: a chunk of the log)
    pub const JOBS_LOG: &str = "jobs.log";
    /// `jobs.end` (a notification of `jobs.follow`: the final job; the follow is over)
    pub const JOBS_END: &str = "jobs.end";
    /// `jobs.lagged` (a notification of `jobs.follow`: closed for a slow reader)
    pub const JOBS_LAGGED: &str = "jobs.lagged";
    /// `jobs.event` (a notification from the server)
    pub const JOBS_EVENT: &str = "jobs.event";
    /// `manifests.put`
    pub const MANIFESTS_PUT: &str = "manifests.put";
    /// `manifests.get`
    pub const MANIFESTS_GET: &str = "manifests.get";
    /// `manifests.list`
    pub const MANIFESTS_LIST: &str = "manifests.list";
    /// `manifests.run`
    pub const MANIFESTS_RUN: &str = "manifests.run";
    /// `keys.list`
    pub const KEYS_LIST: &str = "keys.list";
    /// `audit.read`
    pub const AUDIT_READ: &str = "audit.read";
    /// `doctor.check`
    pub const DOCTOR_CHECK: &str = "doctor.check";
    /// `sync.run`
    pub const SYNC_RUN: &str = "sync.run";
    /// `sync.rejections`
    pub const SYNC_REJECTIONS: &str = "sync.rejections";
    /// `dashboard.signin_code` (a single-use sign-in code for the dashboard; ADR 0045)
    pub const DASHBOARD_SIGNIN_CODE: &str = "dashboard.signin_code";
    /// `dashboard.sessions` (the live dashboard sessions)
    pub const DASHBOARD_SESSIONS: &str = "dashboard.sessions";
    /// `dashboard.revoke` (end dashboard sessions)
    pub const DASHBOARD_REVOKE: &str = "dashboard.revoke";
}

/// Topics whose messages are a guarded read (the audit trail, DESIGN §4): a call that names
/// one in its `topic` member (`messages.read`, `messages.subscribe`, `checkpoints.*`, …)
/// needs what `audit.read` needs.
pub const GUARDED_TOPICS: &[&str] = &["gatos.audit"];

/// Tells whether params name a guarded topic.
pub fn names_guarded_topic(params: &serde_json::Map<String, serde_json::Value>) -> bool {
    params
        .get("topic")
        .and_then(serde_json::Value::as_str)
        .is_some_and(|t| GUARDED_TOPICS.contains(&t))
}

/// What an operation does to the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads only, or touches only the caller's own session.
    Read,
    /// Writes refs, runs a sync or starts work. Refused in read-only mode, and on gatosd's
    /// Unix socket before `gatos.auth` (ADR 0023).
    Write,
}

/// How an operation answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One request, one answer: served by [`crate::Service::call`].
    Unary,
    /// An answer, then a stream of notifications until the caller ends it (the face runs
    /// the stream; the service provides the follower).
    Stream,
    /// Acts on the caller's session (authentication, ending a stream): the face's own.
    Face,
}

/// Whether a face may answer a repeated read from a validator (HTTP's `ETag` and
/// `If-None-Match`, ADR 0033).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cache {
    /// Every call runs: the answer depends on more than the refs (the clock: leases,
    /// `run_after`; trust configuration), or a validator would cost what it saves.
    No,
    /// The answer is fixed by the state of the refs it reads (and the params): a face may
    /// tag it with a validator of that state and answer a matching one without running it.
    State,
}

/// The faces an operation may be offered on (a set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Faces(u8);

impl Faces {
    /// `git gatos …`.
    pub const CLI: Faces = Faces(1);
    /// gatosd's JSON-RPC (stdio, Unix socket, TCP).
    pub const RPC: Faces = Faces(2);
    /// gatosd's HTTP face (REST and server-sent events under `/api/v1`, ADR 0033), through
    /// [`crate::routes::ROUTES`].
    pub const HTTP: Faces = Faces(4);
    /// gatosd's MCP face (`gatosd mcp --stdio`, ADR 0043): a tool per row that has it, set
    /// row by row with `.mcp()` (an agent gets the rows chosen for it, not every new one).
    pub const MCP: Faces = Faces(8);
    /// Every face that serves remote callers by the table's own protocol: RPC and HTTP.
    pub const REMOTE: Faces = Faces(2 | 4);
    /// The CLI, RPC and HTTP (MCP is added row by row).
    pub const ALL: Faces = Faces(1 | 2 | 4);

    /// Tells whether `face` is in the set.
    pub const fn has(self, face: Faces) -> bool {
        self.0 & face.0 == face.0
    }

    /// The set with `face` added.
    pub const fn with(self, face: Faces) -> Faces {
        Faces(self.0 | face.0)
    }
}

/// One row of the operation table.
#[derive(Debug, Clone, Copy)]
pub struct Op {
    /// `<plane>.<verb>`.
    pub name: &'static str,
    /// One line for the docs.
    pub summary: &'static str,
    /// Read or write.
    pub access: Access,
    /// A read that still needs the caller's credentials where reads are otherwise open
    /// (gatosd's Unix socket before `gatos.auth`): what it shows is not for any process of
    /// the user, a sandboxed job included — another job's live log, the audit trail, the
    /// keys, a whole-repository check.
    pub guarded: bool,
    /// Whether the operation's effect is recorded on `gatos.audit` (DESIGN §4: privileged
    /// or destructive actions; some only in one of their forms, e.g. a forced move).
    pub privileged: bool,
    /// How it answers.
    pub shape: Shape,
    /// Where it may be offered.
    pub faces: Faces,
    /// Whether a connection builds one such answer at a time (a page can be large).
    pub large: bool,
    /// Whether the answer is the point: a face does not run it for a caller that cannot
    /// receive the answer (a JSON-RPC notification).
    pub answer_required: bool,
    /// Whether the operation can be tried where waiting is refused ([`gatos::nowait`]): a
    /// face may run it on its event loop's thread, and must make the call again where
    /// waiting is fine when [`crate::Service::call_now`] says it would wait (ADR 0046,
    /// session 6). Only the journaled publish is quick.
    pub quick: bool,
    /// Whether a face may answer a repeated read from a validator of the refs' state.
    pub cache: Cache,
    /// The request's JSON Schema, generated into a [`SchemaGenerator`] (see
    /// [`Op::request_schema`] for a standalone document).
    pub request: SchemaFn,
    /// The response's JSON Schema, likewise ([`Op::response_schema`]).
    pub response: SchemaFn,
}

/// Generates a type's JSON Schema into a generator: a `$ref` into the generator's
/// definitions for a named type (so many schemas can share one set of definitions, as an
/// OpenAPI document's `components/schemas`), the schema itself for an inlined one.
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// The settings of every schema the table gives: JSON Schema 2020-12 (which OpenAPI 3.1's
/// Schema Object is), with named types under `definitions_path`.
fn settings(definitions_path: &'static str) -> SchemaSettings {
    SchemaSettings::draft2020_12().with(|s| {
        s.definitions_path = definitions_path.into();
    })
}

/// A generator for requests (what a face accepts: the `Deserialize` contract) whose named
/// types go to `definitions_path` (`/components/schemas` for OpenAPI, `/$defs` for a
/// standalone document); no `$schema` member.
pub fn request_generator(definitions_path: &'static str) -> SchemaGenerator {
    settings(definitions_path)
        .with(|s| s.meta_schema = None)
        .for_deserialize()
        .into_generator()
}

/// A generator for responses (what a face sends: the `Serialize` contract, so members
/// skipped when empty are optional and `into` conversions are described as sent).
pub fn response_generator(definitions_path: &'static str) -> SchemaGenerator {
    settings(definitions_path)
        .with(|s| s.meta_schema = None)
        .for_serialize()
        .into_generator()
}

/// `f`'s schema as a standalone JSON Schema 2020-12 document: the type's own schema at the
/// root, every named type it uses under `$defs`.
fn standalone(f: SchemaFn, mut g: SchemaGenerator) -> Schema {
    let top = f(&mut g);
    let defs = g.take_definitions(true);
    let named = top
        .get("$ref")
        .and_then(serde_json::Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
        .filter(|_| top.as_object().is_some_and(|o| o.len() == 1))
        .and_then(|name| defs.get(name))
        .and_then(|v| Schema::try_from(v.clone()).ok());
    let mut root = named.unwrap_or(top);
    let object = root.ensure_object();
    object.insert(
        "$schema".into(),
        schemars::consts::meta_schemas::DRAFT2020_12.into(),
    );
    if !defs.is_empty() {
        object.insert("$defs".into(), serde_json::Value::Object(defs));
    }
    root
}

use crate::types as t;
use gatos_types::jobs::{EnqueueRow, JobRow, ManifestRow, VerifyRow};
use gatos_types::wire::{CheckpointRow, PublishRow, ReadPage};
use names as n;

const fn op(
    name: &'static str,
    summary: &'static str,
    access: Access,
    request: SchemaFn,
    response: SchemaFn,
) -> Op {
    Op {
        name,
        summary,
        access,
        guarded: false,
        privileged: false,
        shape: Shape::Unary,
        faces: Faces::ALL,
        large: false,
        answer_required: false,
        quick: false,
        cache: Cache::No,
        request,
        response,
    }
}

impl Op {
    /// Whether a caller must present its credentials first: every write, and the guarded
    /// reads.
    pub const fn needs_credentials(&self) -> bool {
        matches!(self.access, Access::Write) || self.guarded
    }

    /// Whether this call needs the caller's credentials: [`Op::needs_credentials`], or a
    /// call naming a guarded topic ([`GUARDED_TOPICS`]: the audit trail), which reads what
    /// `audit.read` reads whatever operation carries it.
    pub fn call_needs_credentials(
        &self,
        params: &serde_json::Map<String, serde_json::Value>,
    ) -> bool {
        self.needs_credentials() || names_guarded_topic(params)
    }

    /// The operation a policy that names operations (MCP's `--allow-tools`/`--deny-tools`)
    /// must allow for this call: `audit.read` for a call naming a guarded topic, else this
    /// one.
    pub fn policy_name(&self, params: &serde_json::Map<String, serde_json::Value>) -> &'static str {
        if names_guarded_topic(params) {
            names::AUDIT_READ
        } else {
            self.name
        }
    }

    /// The request's JSON Schema as a standalone document (`$defs` inside).
    pub fn request_schema(&self) -> Schema {
        standalone(self.request, request_generator("/$defs"))
    }

    /// The response's JSON Schema as a standalone document (`$defs` inside).
    pub fn response_schema(&self) -> Schema {
        standalone(self.response, response_generator("/$defs"))
    }

    const fn quick(mut self) -> Op {
        self.quick = true;
        self
    }

    const fn guarded(mut self) -> Op {
        self.guarded = true;
        self
    }

    const fn privileged(mut self) -> Op {
        self.privileged = true;
        self
    }
    const fn shape(mut self, s: Shape) -> Op {
        self.shape = s;
        self
    }
    const fn large(mut self) -> Op {
        self.large = true;
        self
    }
    const fn answer_required(mut self) -> Op {
        self.answer_required = true;
        self
    }
    const fn faces(mut self, f: Faces) -> Op {
        self.faces = f;
        self
    }
    const fn cache(mut self, c: Cache) -> Op {
        self.cache = c;
        self
    }
    /// Offered as an MCP tool too.
    const fn mcp(mut self) -> Op {
        self.faces = self.faces.with(Faces::MCP);
        self
    }
}

/// MCP rows an agent gets only when the server is started with `--allow-tools NAME`
/// (ADR 0043): raw `jobs.enqueue` runs an arbitrary command, where a manifest's run
/// (`manifests.run`) runs only what was registered.
pub const MCP_OPT_IN: &[&str] = &[names::JOBS_ENQUEUE];

use Access::{Read, Write};

// A row's `cache` is `Cache::No` unless it says `.cache(Cache::State)` (ADR 0033: reads
// whose answer the refs' state fixes; the HTTP face may tag them with an `ETag`).

/// Every operation, in the order the docs list them.
pub const OPS: &[Op] = &[
    op(
        n::MESSAGES_PUBLISH,
        "Append one message to a topic.",
        Write,
        schema::<t::PublishParams>,
        schema::<PublishRow>,
    )
    .quick()
    .mcp(),
    op(
        n::MESSAGES_PUBLISH_BATCH,
        "Append many messages in chunks; says how many landed.",
        Write,
        schema::<t::PublishBatchParams>,
        schema::<t::PublishBatchResult>,
    ),
    op(
        n::MESSAGES_READ,
        "A page of a topic after a cursor.",
        Read,
        schema::<t::ReadParams>,
        schema::<ReadPage>,
    )
    .large()
    .cache(Cache::State)
    .mcp(),
    op(
        n::MESSAGES_SUBSCRIBE,
        "Follow a topic: an answer, then `messages.event` notifications.",
        Read,
        schema::<t::SubscribeParams>,
        schema::<t::SubscribeResult>,
    )
    .shape(Shape::Stream)
    .answer_required()
    .faces(Faces::REMOTE),
    op(
        n::MESSAGES_UNSUBSCRIBE,
        "End a subscription of this connection.",
        Read,
        schema::<t::UnsubscribeParams>,
        schema::<t::Unsubscribed>,
    )
    .shape(Shape::Face)
    .faces(Faces::RPC),
    op(
        n::MESSAGES_ACK,
        "Move a group's checkpoint forward to a processed message (never back).",
        Write,
        schema::<t::AckParams>,
        schema::<gatos::checkpoints::AckOutcome>,
    ),
    op(
        n::TOPICS_LIST,
        "Every topic with its last position.",
        Read,
        schema::<t::NoParams>,
        schema::<t::TopicsResult>,
    )
    .mcp(),
    op(
        n::CHECKPOINTS_GET,
        "A consumer group's checkpoint on a topic, with its lag.",
        Read,
        schema::<t::CheckpointGetParams>,
        schema::<CheckpointRow>,
    )
    .cache(Cache::State)
    .mcp(),
    op(
        n::CHECKPOINTS_SET,
        "Move a checkpoint (backwards only with force, which is audited).",
        Write,
        schema::<t::CheckpointSetParams>,
        schema::<CheckpointRow>,
    )
    .privileged(),
    op(
        n::CHECKPOINTS_LIST,
        "Every consumer group's checkpoint (or a topic's, or a group's), with its lag.",
        Read,
        schema::<t::CheckpointListParams>,
        schema::<t::CheckpointsResult>,
    )
    .large()
    .cache(Cache::State)
    .mcp(),
    op(
        n::JOBS_ENQUEUE,
        "Enqueue a job from a manifest and/or fields.",
        Write,
        schema::<t::EnqueueParams>,
        schema::<EnqueueRow>,
    )
    .mcp(),
    op(
        n::JOBS_GET,
        "One job with its claim, result and proof.",
        Read,
        schema::<t::JobIdParams>,
        schema::<JobRow>,
    )
    .mcp(),
    op(
        n::JOBS_WHY,
        "What a pending job waits for, checked against a worker's options.",
        Read,
        schema::<t::WhyParams>,
        schema::<t::WhyResult>,
    ),
    op(
        n::JOBS_LIST,
        "Jobs, oldest first, filtered.",
        Read,
        schema::<t::ListParams>,
        schema::<t::ListResult>,
    )
    .large()
    .mcp(),
    op(
        n::JOBS_CLAIM,
        "Claim the next claimable job (or a named one) for a worker.",
        Write,
        schema::<t::ClaimParams>,
        schema::<Option<t::ClaimResult>>,
    )
    .answer_required()
    .faces(Faces::REMOTE),
    op(
        n::JOBS_HEARTBEAT,
        "Extend a held lease; says whether the job was cancelled.",
        Write,
        schema::<t::HeartbeatParams>,
        schema::<t::HeartbeatResult>,
    )
    .faces(Faces::REMOTE),
    op(
        n::JOBS_COMPLETE,
        "Record a finished attempt with its signed proof of execution.",
        Write,
        schema::<t::FinishParams>,
        schema::<t::FinishResult>,
    )
    .faces(Faces::REMOTE),
    op(
        n::JOBS_FAIL,
        "Record a failed, timed-out, cancelled or abandoned attempt.",
        Write,
        schema::<t::FinishParams>,
        schema::<t::FinishResult>,
    )
    .faces(Faces::REMOTE),
    op(
        n::JOBS_CANCEL,
        "Cancel a job (audited).",
        Write,
        schema::<t::CancelParams>,
        schema::<JobRow>,
    )
    .privileged()
    .mcp(),
    op(
        n::JOBS_RETRY,
        "Enqueue a failed or cancelled job again, as a new job naming the old one.",
        Write,
        schema::<t::JobIdParams>,
        schema::<EnqueueRow>,
    ),
    op(
        n::JOBS_LOGS,
        "A piece of an attempt's log: live on the running node, then from the result.",
        Read,
        schema::<t::LogsParams>,
        schema::<gatos::jobs::logs::LogChunk>,
    )
    .guarded()
    .large()
    .mcp(),
    op(
        n::JOBS_VERIFY,
        "Verify a job's proof under this node's trust.",
        Read,
        schema::<t::JobIdParams>,
        schema::<VerifyRow>,
    )
    .guarded()
    .mcp(),
    op(
        n::JOBS_WAIT,
        "Wait (a bounded time) for a job to end; answers the job and whether it ended.",
        Read,
        schema::<t::WaitParams>,
        schema::<t::WaitResult>,
    )
    .shape(Shape::Face)
    .faces(Faces::MCP),
    op(
        n::JOBS_WATCH,
        "Follow job events: an answer, then `jobs.event` notifications.",
        Read,
        schema::<t::WatchParams>,
        schema::<t::SubscribeResult>,
    )
    .shape(Shape::Stream)
    .answer_required()
    .faces(Faces::REMOTE),
    op(
        n::JOBS_FOLLOW,
        "Follow one job: its state, its events and its live log, ending with its final state.",
        Read,
        schema::<t::FollowParams>,
        schema::<t::SubscribeResult>,
    )
    .guarded()
    .shape(Shape::Stream)
    .answer_required()
    .faces(Faces::REMOTE),
    op(
        n::MANIFESTS_PUT,
        "Store a new version of a manifest (audited).",
        Write,
        schema::<t::ManifestPutParams>,
        schema::<t::ManifestPutResult>,
    )
    .privileged(),
    op(
        n::MANIFESTS_GET,
        "A manifest's latest or named version.",
        Read,
        schema::<t::ManifestRefParams>,
        schema::<ManifestRow>,
    )
    .cache(Cache::State)
    .mcp(),
    op(
        n::MANIFESTS_LIST,
        "The latest version of every manifest.",
        Read,
        schema::<t::NoParams>,
        schema::<t::ManifestListResult>,
    )
    .large()
    .cache(Cache::State)
    .mcp(),
    op(
        n::MANIFESTS_RUN,
        "Enqueue a job from a stored manifest version.",
        Write,
        schema::<t::ManifestRefParams>,
        schema::<EnqueueRow>,
    )
    .mcp(),
    op(
        n::KEYS_LIST,
        "Every key this node knows, with trust, publication and revocation.",
        Read,
        schema::<t::NoParams>,
        schema::<t::KeysResult>,
    )
    .guarded(),
    op(
        n::AUDIT_READ,
        "A page of the audit trail (privileged actions), oldest first.",
        Read,
        schema::<t::AuditParams>,
        schema::<t::AuditResult>,
    )
    .guarded()
    .large()
    .cache(Cache::State)
    .mcp(),
    op(
        n::DOCTOR_CHECK,
        "Check the repository as git gatos doctor does, fixing nothing.",
        Read,
        schema::<t::NoParams>,
        schema::<t::DoctorResult>,
    )
    .guarded()
    .large()
    .mcp(),
    op(
        n::SYNC_RUN,
        "Sync with a remote now.",
        Write,
        schema::<t::SyncParams>,
        schema::<gatos_types::sync::SyncReport>,
    ),
    op(
        n::SYNC_REJECTIONS,
        "The refs sync rejected most recently (ref, code, reason, remote, time), newest first.",
        Read,
        schema::<t::SyncRejectionsParams>,
        schema::<t::SyncRejectionsResult>,
    ),
    op(
        n::GATOS_HEALTH,
        "The node, the repository and the daemon's counters.",
        Read,
        schema::<t::NoParams>,
        schema::<t::HealthResult>,
    )
    .shape(Shape::Face)
    .faces(Faces::REMOTE),
    op(
        n::GATOS_READY,
        "Whether the node should get requests, with its sync and maintenance state.",
        Read,
        schema::<t::NoParams>,
        schema::<t::ReadyResult>,
    )
    .shape(Shape::Face)
    .faces(Faces::REMOTE),
    // Reads the GraphQL face serves (ADR 0044), offered to the remote faces too.
    op(
        n::QUEUES_LIST,
        "Every queue with its settings (backoff, admission cap) and pending depth.",
        Read,
        schema::<t::NoParams>,
        schema::<t::QueuesResult>,
    )
    .faces(Faces::REMOTE),
    op(
        n::JOBS_ATTEMPTS,
        "A job's attempts, oldest first, each with its claim chain.",
        Read,
        schema::<t::JobIdParams>,
        schema::<t::AttemptsResult>,
    )
    .faces(Faces::REMOTE),
    op(
        n::MANIFESTS_VERSIONS,
        "A manifest's versions, newest first, a page at a time.",
        Read,
        schema::<t::ManifestVersionsParams>,
        schema::<t::ManifestVersionsResult>,
    )
    .faces(Faces::REMOTE),
    // A ref state lives in the daemon that keeps it (ADR 0044): no CLI form.
    op(
        n::STATE_RESOLVE,
        "Mint the current ref state, or resolve a kept one by id (GraphQL's states).",
        Read,
        schema::<t::StateParams>,
        schema::<t::StateRow>,
    )
    .faces(Faces::REMOTE),
    // Durable ref snapshots (ADR 0044): refs/gatos-snapshots/, local, never synced.
    op(
        n::SNAPSHOTS_CREATE,
        "Copy the refs now into a named durable snapshot (GraphQL's refPath snapshots/NAME).",
        Write,
        schema::<crate::snapshots::SnapshotNameParams>,
        schema::<gatos::snapshot::saved::SnapshotDoc>,
    )
    .mcp(),
    op(
        n::SNAPSHOTS_LIST,
        "Every durable snapshot: name, state, time, refs.",
        Read,
        schema::<t::NoParams>,
        schema::<crate::snapshots::SnapshotsResult>,
    )
    .mcp(),
    op(
        n::SNAPSHOTS_DELETE,
        "Delete a durable snapshot (audited).",
        Write,
        schema::<crate::snapshots::SnapshotNameParams>,
        schema::<gatos::snapshot::saved::SnapshotDoc>,
    )
    .privileged()
    .mcp(),
    op(
        n::GATOS_VERSION,
        "The gatos version.",
        Read,
        schema::<t::NoParams>,
        schema::<t::VersionResult>,
    ),
    op(
        n::GATOS_AUTH,
        "Present the daemon's token (opens writes on this connection).",
        Read,
        schema::<t::AuthParams>,
        schema::<t::Authenticated>,
    )
    .shape(Shape::Face)
    .answer_required()
    .faces(Faces::RPC),
    // The dashboard's sessions are the HTTP face's own state, handed out and ended over
    // the Unix socket with the node token (ADR 0045).
    op(
        n::DASHBOARD_SIGNIN_CODE,
        "A single-use dashboard sign-in code, valid 60 s (Unix socket, with the token).",
        Read,
        schema::<t::SigninCodeParams>,
        schema::<t::SigninCode>,
    )
    .guarded()
    .shape(Shape::Face)
    .answer_required()
    .faces(Faces::RPC),
    op(
        n::DASHBOARD_SESSIONS,
        "The live dashboard sessions (Unix socket, with the token).",
        Read,
        schema::<t::NoParams>,
        schema::<t::SessionsResult>,
    )
    .guarded()
    .shape(Shape::Face)
    .faces(Faces::RPC),
    op(
        n::DASHBOARD_REVOKE,
        "End one dashboard session, or all (audited; Unix socket, with the token).",
        Read,
        schema::<t::RevokeParams>,
        schema::<t::RevokeResult>,
    )
    .guarded()
    .privileged()
    .shape(Shape::Face)
    .faces(Faces::RPC),
];

/// Looks an operation up by name.
pub fn find(name: &str) -> Option<&'static Op> {
    OPS.iter().find(|o| o.name == name)
}

/// The method list of `docs/rpc.md`, rendered from [`OPS`] (a test keeps the file in step).
pub fn markdown() -> String {
    let mut s =
        String::from("| method | access | audited | answers | summary |\n|---|---|---|---|---|\n");
    for o in OPS.iter().filter(|o| o.faces.has(Faces::RPC)) {
        let access = match (o.access, o.guarded) {
            (Access::Read, false) => "read",
            (Access::Read, true) => "read (token)",
            (Access::Write, _) => "write",
        };
        let shape = match o.shape {
            Shape::Unary => "once",
            Shape::Stream => "stream",
            Shape::Face => "by the face",
        };
        let audited = if o.privileged { "yes" } else { "" };
        s.push_str(&format!(
            "| `{}` | {access} | {audited} | {shape} | {} |\n",
            o.name, o.summary
        ));
    }
    s
}
