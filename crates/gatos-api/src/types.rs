//! The request and response types of the operations (DESIGN §6), one pair per
//! operation, with their JSON Schema from the same derive.
//!
//! Requests refuse unknown members (a face answers them as invalid params), so a typo in a
//! client is an error, not a silently ignored option.

use std::collections::BTreeMap;

use gatos_types::jobs::{JobRow, JobSpec, JobState, LeaseToken, ManifestRow, Outcome};
use gatos_types::wire::{DamagedTopic, MessageRow, PublishRow, TopicRow};
use gatos_types::{
    Capability, Digest, Group, KeyId, ManifestName, Oid, Queue, Timestamp, Topic, Ulid, WorkerId,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `messages.publish` params.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishParams {
    /// The topic.
    pub topic: Topic,
    /// The payload (any JSON value).
    pub payload: Value,
    /// Headers; `msg_id` deduplicates.
    #[serde(default)]
    pub headers: Option<Value>,
    /// Append only if the topic's last seq is this.
    #[serde(default)]
    pub expect_last_seq: Option<u64>,
}

/// One message of `messages.publish_batch`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchMessage {
    /// The payload.
    pub payload: Value,
    /// Headers; `msg_id` deduplicates.
    #[serde(default)]
    pub headers: Option<Value>,
}

/// `messages.publish_batch` params.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishBatchParams {
    /// The topic.
    pub topic: Topic,
    /// The messages, in order.
    pub messages: Vec<BatchMessage>,
    /// Append the first chunk only if the topic's last seq is this.
    #[serde(default)]
    pub expect_last_seq: Option<u64>,
    /// Messages per chunk (default 1,000).
    #[serde(default)]
    pub chunk: Option<usize>,
}

/// `messages.publish_batch` result.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PublishBatchResult {
    /// One row per message, in order.
    pub results: Vec<PublishRow>,
    /// How many landed (all of them, on success).
    pub landed: u64,
}

/// `messages.read` params.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadParams {
    /// The topic.
    pub topic: Topic,
    /// Start after this message.
    #[serde(default)]
    pub since: Option<Ulid>,
    /// Start after this position.
    #[serde(default)]
    pub since_seq: Option<u64>,
    /// Start at the first message, in position order, made at or after this time (later
    /// ones may carry earlier times: ULID times are not monotonic across nodes).
    #[serde(default)]
    pub since_time: Option<Timestamp>,
    /// At most this many (default 128, at most 10,000).
    #[serde(default)]
    pub limit: Option<u64>,
}

/// `messages.subscribe` params.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscribeParams {
    /// The topic.
    pub topic: Topic,
    /// Start after this message (default: only new messages).
    #[serde(default)]
    pub since: Option<Ulid>,
    /// Start after this position.
    #[serde(default)]
    pub since_seq: Option<u64>,
    /// Start at the first message, in position order, made at or after this time.
    #[serde(default)]
    pub since_time: Option<Timestamp>,
}

/// `messages.subscribe` result.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SubscribeResult {
    /// The subscription id, named in every `messages.event`.
    pub subscription: String,
    /// The message the subscription starts after (null: the start of the topic).
    pub since: Option<Ulid>,
}

/// `messages.unsubscribe` params.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UnsubscribeParams {
    /// The subscription id.
    pub subscription: String,
}

/// `messages.event` notification params.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MessageEvent {
    /// The subscription.
    pub subscription: String,
    /// The message, as `messages.read` returns it.
    pub message: MessageRow,
}

/// `messages.lagged` notification params: the subscriber did not keep up and the
/// subscription was closed; resubscribe with `since: next_since`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Lagged {
    /// The subscription that was closed.
    pub subscription: String,
    /// The last message delivered (resume after it).
    pub next_since: Option<Ulid>,
}

/// `messages.gap` notification params: the subscription started (or went on) past
/// messages pruned from the topic; the events that follow come after them.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GapNotice {
    /// The subscription.
    pub subscription: String,
    /// The first position skipped.
    pub from_seq: u64,
    /// The last position skipped.
    pub to_seq: u64,
}

/// `checkpoints.get` params.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckpointGetParams {
    /// The consumer group.
    pub group: Group,
    /// The topic.
    pub topic: Topic,
}

/// `checkpoints.set` params.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSetParams {
    /// The consumer group.
    pub group: Group,
    /// The topic.
    pub topic: Topic,
    /// The message to stand after.
    pub ulid: Ulid,
    /// Allow moving backwards.
    #[serde(default)]
    pub force: bool,
}

/// `checkpoints.list` params: every checkpoint, or those on one topic, or of one group
/// (both: that one checkpoint, if it exists).
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckpointListParams {
    /// Only checkpoints on this topic.
    #[serde(default)]
    pub topic: Option<Topic>,
    /// Only this consumer group's checkpoints.
    #[serde(default)]
    pub group: Option<Group>,
}

/// `checkpoints.list` result.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CheckpointsResult {
    /// The checkpoints, by group, then topic, each with its lag.
    pub checkpoints: Vec<gatos_types::wire::CheckpointRow>,
    /// The checkpoints that do not read (a document that is not a checkpoint, a topic whose
    /// head is no message or whose summary does not parse, so that the lag cannot be told),
    /// left out of `checkpoints`; absent when there are none. `git gatos doctor` says more.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub damaged: Vec<gatos_types::wire::DamagedCheckpoint>,
}

/// Params of methods that take none.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// `topics.list` result.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TopicsResult {
    /// The topics.
    pub topics: Vec<TopicRow>,
    /// The topics whose refs do not read (a head that is no message, a summary that does
    /// not parse), left out of `topics`; absent when there are none. `git gatos doctor`
    /// says more.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub damaged: Vec<DamagedTopic>,
}

/// `sync.run` params.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncParams {
    /// The remote (default: the daemon's `--sync` remote, else the only one, else `origin`).
    #[serde(default)]
    pub remote: Option<String>,
    /// Fail with `Conflict` when a conflict was reported.
    #[serde(default)]
    pub strict: bool,
}

/// `sync.rejections` params.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncRejectionsParams {
    /// Only rejections of refs from this remote.
    #[serde(default)]
    pub remote: Option<String>,
    /// At most this many (default 50, at most 1,000).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// `sync.rejections` result: the newest rejections of this node's log of rejected refs
/// (`<git-dir>/gatos/sync/rejected.jsonl`, the last 1,000 kept).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SyncRejectionsResult {
    /// Newest first.
    pub rejections: Vec<gatos_types::sync::LoggedRejection>,
    /// Older rejections in the log (of the remote asked for) beyond these.
    pub more: u64,
    /// Lines of the log that are not a rejection as gatos writes it (garbled, foreign,
    /// too long): skipped.
    pub skipped: u64,
}

/// `gatos.auth` params.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthParams {
    /// The bearer token.
    pub token: String,
}

/// `dashboard.signin_code` params (ADR 0045).
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SigninCodeParams {
    /// The session the code opens may only read (a session is read-only anyway when the
    /// token is marked `ro` or the daemon runs `--read-only`).
    #[serde(default)]
    pub read_only: Option<bool>,
}

/// `dashboard.signin_code` result: the code travels only in the URL's fragment.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SigninCode {
    /// The single-use code (base64url).
    pub code: String,
    /// The dashboard's URL with the code in its fragment (`…/#code=CODE`).
    pub url: String,
    /// When the code stops working (RFC 3339, UTC).
    pub expires_at: String,
    /// Seconds it stays valid.
    pub expires_in_seconds: u64,
    /// The session it opens may only read.
    pub read_only: bool,
}

/// One live dashboard session (never its secret).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SessionRow {
    /// The public id (`web:<id>` is its actor).
    pub id: String,
    /// When it was opened (RFC 3339, UTC).
    pub created_at: String,
    /// When it ends (RFC 3339, UTC).
    pub expires_at: String,
    /// When it last made a request (RFC 3339, UTC).
    pub last_used_at: String,
    /// It may only read.
    pub read_only: bool,
    /// The token name that minted its code.
    pub minted_by: String,
}

/// `dashboard.sessions` result.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SessionsResult {
    /// Live sessions, oldest first.
    pub sessions: Vec<SessionRow>,
}

/// `dashboard.revoke` params: one session by id, or all of them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeParams {
    /// The session's id.
    #[serde(default)]
    pub id: Option<String>,
    /// End every session (and every code not yet used).
    #[serde(default)]
    pub all: Option<bool>,
}

/// `dashboard.revoke` result.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RevokeResult {
    /// The ids of the sessions ended.
    pub revoked: Vec<String>,
}

/// `gatos.version` result.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VersionResult {
    /// The gatos version.
    pub version: String,
    /// "2.0".
    pub jsonrpc: String,
}

/// `gatos.health` result.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HealthResult {
    /// "ok".
    pub status: String,
    /// The git dir served.
    pub repository: String,
    /// This node's id.
    pub node: Option<Ulid>,
    /// Seconds since start.
    pub uptime_seconds: u64,
    /// Open connections.
    pub connections: u64,
    /// Connections since start.
    pub connections_total: u64,
    /// Live subscriptions.
    pub subscriptions: u64,
    /// The gatos version.
    pub version: String,
    /// The head of the audit topic, as a liveness mark of the store.
    pub last_commit: Option<Oid>,
    /// Each queue's pending jobs against its `max_pending` (ADR 0027): the queues with
    /// settings and those with an unfinished job, by name.
    pub queues: Vec<gatos_types::jobs::QueueDepth>,
}

/// `gatos.ready` result: whether this node should be sent requests (a readiness probe),
/// and the state of what it runs in the background.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReadyResult {
    /// True when the repository answers and the node is not shutting down. A failing
    /// sync or maintenance debt does not make a node unready (it still serves its own
    /// repository); they are reported below for whoever watches them.
    pub ready: bool,
    /// Whether the repository answered (its refs and the audit topic were read).
    pub repository_readable: bool,
    /// Why it did not answer, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_error: Option<String>,
    /// Whether the face is draining (it then accepts no new work).
    pub shutting_down: bool,
    /// Background sync; null when this node does not sync (gatosd without `--sync`).
    pub sync: Option<SyncStatus>,
    /// Automatic maintenance.
    pub maintenance: MaintenanceStatus,
}

/// The background sync of a node, as `gatos.ready` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SyncStatus {
    /// The remote it syncs with.
    pub remote: String,
    /// The interval between syncs, in seconds.
    pub interval_seconds: u64,
    /// When the last sync ended; null before the first one ended.
    pub last_at: Option<Timestamp>,
    /// Whether it succeeded; null before the first one ended.
    pub last_ok: Option<bool>,
    /// The error code it failed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_code: Option<gatos_types::ErrorCode>,
    /// The error it failed with, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Syncs that failed in a row (0 after a success).
    pub consecutive_failures: u64,
    /// Syncs run since the node started.
    pub runs_total: u64,
    /// Syncs that failed since the node started.
    pub failures_total: u64,
    /// Refs the remote sent that failed a check (ADR 0018), summed over every sync since
    /// the node started.
    pub rejected_total: u64,
}

/// A node's automatic maintenance, as `gatos.ready` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MaintenanceStatus {
    /// Whether this node runs maintenance when writers find it due.
    pub enabled: bool,
    /// Whether a run is in progress.
    pub running: bool,
    /// When the last run ended; null before the first one (runs happen only when due).
    pub last_at: Option<Timestamp>,
    /// Whether it succeeded (archiving and compaction); null before the first one.
    pub last_ok: Option<bool>,
    /// The code of what failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_code: Option<gatos_types::ErrorCode>,
    /// What failed, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Runs that failed in a row (0 after a success).
    pub consecutive_failures: u64,
    /// What maintenance owes now; null when it could not be measured.
    pub debt: Option<gatos::maintenance::DebtReport>,
}

/// `jobs.enqueue` params: a manifest (as `jobs enqueue --manifest` takes, JSON form)
/// and/or the CLI's flags, which override it; `command` is the whole argv
/// (`-- CMD ARG…`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnqueueParams {
    /// A manifest object.
    #[serde(default)]
    pub manifest: Option<Value>,
    /// CMD ARG…
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// The queue.
    #[serde(default)]
    pub queue: Option<Queue>,
    /// Capabilities the job needs.
    #[serde(default)]
    pub caps: Vec<Capability>,
    /// Seconds or a DUR string.
    #[serde(default)]
    pub timeout: Option<Value>,
    /// Attempts.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Priority.
    #[serde(default)]
    pub priority: Option<i64>,
    /// Environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// TIME.
    #[serde(default)]
    pub run_after: Option<String>,
    /// Working directory.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Output files.
    #[serde(default)]
    pub outputs: Vec<String>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Inputs.
    #[serde(default)]
    pub inputs: Option<Value>,
    /// The commit whose files the job runs in: a revision of the daemon's repository, or
    /// false (the default: none).
    #[serde(default)]
    pub checkout: Option<Value>,
}

/// Params naming one job (`jobs.get`).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobIdParams {
    /// The job.
    pub id: Ulid,
}

/// `jobs.wait` params (the MCP face's bounded wait for a job to end, ADR 0043).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitParams {
    /// The job.
    pub id: Ulid,
    /// Wait at most this many milliseconds for the job to end (default 10,000; the face
    /// caps it, 60,000 on MCP); call again to wait longer.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// `jobs.wait` result: the job as it is when the wait ends.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WaitResult {
    /// The job (`jobs.get`).
    pub job: JobRow,
    /// Whether it has ended (succeeded, failed or cancelled); false: the wait timed out.
    pub done: bool,
}

/// `jobs.why` params: a job, and the options of the worker to check it against (those of
/// `git gatos worker`).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WhyParams {
    /// The job.
    pub id: Ulid,
    /// Queues the worker takes (default `default`, as a worker's).
    #[serde(default)]
    pub queues: Vec<Queue>,
    /// Capabilities it offers.
    #[serde(default)]
    pub caps: Vec<Capability>,
    /// Names of the secrets it resolves (never their values); absent: not checked.
    #[serde(default)]
    pub secrets: Option<Vec<String>>,
    /// It runs jobs whatever their enqueuer (`--allow-untrusted-enqueuers`).
    #[serde(default)]
    pub allow_untrusted_enqueuers: bool,
}

/// `jobs.why` result: what a job waits for, checked against a worker's options.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WhyResult {
    /// The job.
    pub id: Ulid,
    /// Its state now.
    pub state: JobState,
    /// The queues checked (the worker's, `default` when it named none).
    pub queues: Vec<Queue>,
    /// The capabilities checked.
    pub caps: Vec<Capability>,
    /// What the pending job waits for, each with whether it blocks this worker (`null`:
    /// not checked, the worker's secrets unknown); empty unless pending.
    pub conditions: Vec<gatos_types::jobs::WaitCondition>,
    /// True when the job is pending and nothing checked blocks: such a worker would claim
    /// it now (unless another worker claims it first, or a secret not checked is missing).
    pub claimable: bool,
    /// Why nothing waits, for a job that is not pending (running, or ended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `jobs.cancel` params.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelParams {
    /// The job.
    pub id: Ulid,
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `jobs.list` params: every filter is optional and they all must hold; pages are oldest
/// first, served from the job catalog (what never changes about a job) and the refs' order.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only this queue.
    #[serde(default)]
    pub queue: Option<Queue>,
    /// Only this state (a final state also searches the archive).
    #[serde(default)]
    pub state: Option<JobState>,
    /// Only jobs that need this capability.
    #[serde(default)]
    pub capability: Option<Capability>,
    /// Only jobs enqueued by this key (`ed25519:…`) or actor (`cli:alice`).
    #[serde(default)]
    pub enqueuer: Option<String>,
    /// Only jobs enqueued at or after this time (RFC 3339).
    #[serde(default)]
    pub since: Option<Timestamp>,
    /// Only jobs enqueued before this time (RFC 3339).
    #[serde(default)]
    pub until: Option<Timestamp>,
    /// Only jobs whose id starts with this.
    #[serde(default)]
    pub id_prefix: Option<String>,
    /// Only jobs with this label: `KEY`, or `KEY=PREFIX` for a value starting so.
    #[serde(default)]
    pub label: Option<String>,
    /// Include archived jobs.
    #[serde(default)]
    pub all: bool,
    /// Start after this job: the `next_cursor` of the previous page.
    #[serde(default)]
    pub cursor: Option<Ulid>,
    /// At most this many (default 100, at most 1,000).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// `jobs.list` result.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ListResult {
    /// The jobs, oldest first.
    pub jobs: Vec<JobRow>,
    /// The cursor of the next page; null when this page is the last.
    pub next_cursor: Option<Ulid>,
}

/// `jobs.claim` params.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimParams {
    /// The worker's name.
    pub worker: WorkerId,
    /// The key it will sign the proof with.
    pub worker_key: KeyId,
    /// Queues it serves (default `default`).
    #[serde(default)]
    pub queues: Vec<Queue>,
    /// Capabilities it offers.
    #[serde(default)]
    pub caps: Vec<Capability>,
    /// Secret names it can resolve.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Lease: seconds or a DUR string (default 30s).
    #[serde(default)]
    pub lease: Option<Value>,
    /// Claim this job rather than the next one.
    #[serde(default)]
    pub id: Option<Ulid>,
}

/// `jobs.claim` result (null when nothing is claimable).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ClaimResult {
    /// The job.
    pub id: Ulid,
    /// The attempt (name it in heartbeat, complete and fail).
    pub attempt: u32,
    /// The worker.
    pub worker: WorkerId,
    /// The key the proof must be signed with.
    pub worker_key: Option<KeyId>,
    /// When the lease ends unless extended.
    pub lease_until: Timestamp,
    /// The attempt's `running` claim commit (`claim_commit` of the proof).
    pub claim_commit: Oid,
    /// `blake3:` of `job.json` (`job_content_id` of the proof).
    pub job_content_id: Digest,
    /// The normalized manifest.
    pub manifest: JobSpec,
    /// The secret heartbeat, complete and fail must present (ADR 0022). Shown once; the
    /// ledger stores only its hash.
    pub lease_token: Option<LeaseToken>,
}

/// Params naming a held claim (`jobs.heartbeat`).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatParams {
    /// The job.
    pub id: Ulid,
    /// The attempt.
    pub attempt: u32,
    /// The worker.
    pub worker: WorkerId,
    /// The token `jobs.claim` returned.
    #[serde(default)]
    pub lease_token: Option<LeaseToken>,
    /// The new lease length (default: 30s).
    #[serde(default)]
    pub lease: Option<Value>,
}

/// `jobs.heartbeat` result.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HeartbeatResult {
    /// The new lease end.
    pub lease_until: Timestamp,
    /// True when the job was cancelled: stop the process and call `jobs.fail` with
    /// `outcome: "cancelled"`.
    pub cancelled: bool,
}

/// One output file of `jobs.complete` / `jobs.fail`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputParam {
    /// Its path relative to the job's working directory.
    pub path: String,
    /// Its bytes, base64.
    pub data_base64: String,
}

/// `jobs.complete` (and `jobs.fail`) params.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FinishParams {
    /// The job.
    pub id: Ulid,
    /// The attempt.
    pub attempt: u32,
    /// The worker.
    pub worker: WorkerId,
    /// The token `jobs.claim` returned.
    #[serde(default)]
    pub lease_token: Option<LeaseToken>,
    /// The exit code (null when the process did not exit by itself).
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// `jobs.complete`: `succeeded` (default when `exit_code` is 0) or `failed`;
    /// `jobs.fail`: `failed` (default), `timeout`, `cancelled` or `lost`.
    #[serde(default)]
    pub outcome: Option<Outcome>,
    /// Captured standard output, base64.
    #[serde(default)]
    pub stdout_base64: Option<String>,
    /// Captured standard error, base64.
    #[serde(default)]
    pub stderr_base64: Option<String>,
    /// Collected outputs.
    #[serde(default)]
    pub outputs: Vec<OutputParam>,
    /// The DSSE envelope signed by the worker's key (an object, or its JSON text).
    #[serde(default)]
    pub poe: Option<Value>,
}

/// `jobs.complete` / `jobs.fail` result.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FinishResult {
    /// The job's state afterwards.
    pub state: JobState,
    /// The commit written (result or released claim).
    pub commit: Oid,
}

/// `jobs.watch` params.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WatchParams {
    /// Only events of this queue.
    #[serde(default)]
    pub queue: Option<Queue>,
    /// Only events of this job.
    #[serde(default)]
    pub job: Option<Ulid>,
    /// Start after this event's ULID on `gatos.jobs` (default: only new events).
    #[serde(default)]
    pub since: Option<Ulid>,
    /// Start at the first event, in position order, made at or after this time.
    #[serde(default)]
    pub since_time: Option<Timestamp>,
}

impl WatchParams {
    /// The job-event filter every face applies to `gatos.jobs` (`jobs.watch`, `git gatos
    /// jobs watch`): the event of a message, if it is one and passes. A message that is not
    /// a job event (published there by hand) is skipped.
    pub fn admits(&self, payload: &str) -> Option<gatos_types::jobs::JobEvent> {
        let ev: gatos_types::jobs::JobEvent = serde_json::from_str(payload).ok()?;
        let passes = self.queue.as_ref().is_none_or(|q| *q == ev.queue)
            && self.job.is_none_or(|j| j == ev.job);
        passes.then_some(ev)
    }
}

/// `jobs.follow` params: one job's state, events and live log, ending with its final
/// state (ADR 0039).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FollowParams {
    /// The job.
    pub id: Ulid,
    /// Resume after this position: an event id of an earlier follow of the same job,
    /// `<last gatos.jobs ULID or 0>.<attempt>.<stdout offset>.<stderr offset>`.
    #[serde(default)]
    pub since: Option<String>,
    /// Send the job's log (default true); false: its state and events only.
    #[serde(default)]
    pub logs: Option<bool>,
}

/// `jobs.lagged` notification params: the follow was closed for a slow reader.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FollowLagged {
    /// The subscription that was closed.
    pub subscription: String,
    /// The cursor of the last notification queued (resume with it as `since`).
    pub next_since: Option<String>,
}

/// `jobs.event` notification params.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct JobEventNotice {
    /// The subscription.
    pub subscription: String,
    /// The event, with its message's `ulid`.
    pub event: Value,
}

/// `manifests.put` params.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ManifestPutParams {
    /// The name.
    pub name: ManifestName,
    /// The manifest object.
    pub manifest: Value,
}

/// `manifests.put` result.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ManifestPutResult {
    /// The version now current.
    #[serde(flatten)]
    pub row: ManifestRow,
    /// False when the same document was already the latest version.
    pub changed: bool,
}

/// `manifests.get` / `manifests.run` params.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ManifestRefParams {
    /// The name.
    pub name: ManifestName,
    /// The version (default: the latest).
    #[serde(default)]
    pub version: Option<u64>,
}

/// `manifests.list` result.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ManifestListResult {
    /// The latest version of each manifest.
    pub manifests: Vec<ManifestRow>,
}

/// `messages.unsubscribe` result.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Unsubscribed {
    /// Always true: the subscription is over.
    pub unsubscribed: bool,
}

/// `gatos.auth` result.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Authenticated {
    /// Always true: writes are open on this connection.
    pub authenticated: bool,
}

/// `jobs.logs` params: a piece of one stream of one attempt's log, live from this node's
/// spool while it runs, from the result once it has one.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogsParams {
    /// The job.
    pub id: Ulid,
    /// The attempt (default: the latest).
    #[serde(default)]
    pub attempt: Option<u32>,
    /// `stdout` (default) or `stderr`.
    #[serde(default)]
    pub stream: Option<gatos::jobs::logs::Stream>,
    /// The byte offset to read from (default 0; a follower passes the last `next_offset`).
    #[serde(default)]
    pub from_offset: Option<u64>,
    /// At most this many bytes (default 64 KiB, at most 1 MiB).
    #[serde(default)]
    pub max_bytes: Option<usize>,
    /// When nothing is there yet, wait up to this many milliseconds for bytes or the end
    /// (at most 30,000; default 0: answer at once).
    #[serde(default)]
    pub wait_ms: Option<u64>,
}

/// `messages.ack` params: move a consumer group's checkpoint forward to a message it has
/// processed (never backwards: an older message changes nothing).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AckParams {
    /// The consumer group.
    pub group: Group,
    /// The topic.
    pub topic: Topic,
    /// The message processed.
    pub ulid: Ulid,
}

/// `keys.list` result.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct KeysResult {
    /// Every key this node knows: its own, the trusted, the published and the revoked.
    pub keys: Vec<gatos_types::jobs::KeyListRow>,
}

/// `audit.read` params.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Start after this record (the `next_since` of the previous page).
    #[serde(default)]
    pub since: Option<Ulid>,
    /// Only records made at or after this time (RFC 3339).
    #[serde(default)]
    pub since_time: Option<Timestamp>,
    /// Only records of this action (`jobs.cancel`, `keys.trust`, …).
    #[serde(default)]
    pub action: Option<String>,
    /// At most this many (default 100, at most 1,000).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// `audit.read` result.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditResult {
    /// The records, oldest first.
    pub records: Vec<gatos::audit::AuditRecord>,
    /// Pass it as `since` for the next page; null when the trail ends here.
    pub next_since: Option<Ulid>,
}

/// `doctor.check` result: what `git gatos doctor` finds, without fixing anything.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct DoctorResult {
    /// The findings (none: healthy).
    pub findings: Vec<gatos::doctor::Finding>,
}

/// `state.resolve` params (ADR 0044).
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateParams {
    /// A ref state an earlier answer named (`blake3:` and 64 hex digits); without it, the
    /// live refs, minted now.
    #[serde(default)]
    pub state_ref: Option<String>,
    /// A moving name instead: `live` (the default) or `snapshots/<name>` (a durable
    /// snapshot, `git gatos snapshot`). At most one of `state_ref` and `ref_path`.
    #[serde(default)]
    pub ref_path: Option<String>,
}

/// `state.resolve` result: a ref state this daemon keeps (ADR 0044).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StateRow {
    /// Its id: `blake3:` of `git for-each-ref --format='%(objectname) %(refname)'
    /// refs/gatos/`.
    pub state: String,
    /// When it was first minted here.
    pub taken_at: Timestamp,
    /// Refs in it.
    pub refs: u64,
    /// Whether its mint was exact (two lists of the refs agreed).
    pub exact: bool,
    /// Until when it is kept unless used again.
    pub kept_until: Timestamp,
}

/// `queues.list` result: every queue this node knows of, with its settings and depth.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct QueuesResult {
    /// The queues, by name.
    pub queues: Vec<gatos_types::jobs::QueueRow>,
}

/// One commit of a claim chain (`jobs.attempts`).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ClaimStepRow {
    /// The claim commit.
    pub commit: Oid,
    /// The claim's state in it.
    pub state: gatos_types::jobs::ClaimState,
    /// The lease it set.
    pub lease_until: Timestamp,
    /// When it was written (its committer time, whole seconds): the claim, each
    /// heartbeat, the end.
    pub at: Timestamp,
}

/// One attempt of a job (`jobs.attempts`).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AttemptRow {
    /// Its number.
    pub attempt: u32,
    /// The worker that claimed it.
    pub worker: String,
    /// When it was claimed.
    pub claimed_at: Timestamp,
    /// How it ended, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<gatos_types::jobs::Outcome>,
    /// The exit code, when the command ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Its claim commits, newest first.
    pub chain: Vec<ClaimStepRow>,
}

/// `jobs.attempts` result.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AttemptsResult {
    /// The attempts, oldest first (none for a job never claimed, or unknown).
    pub attempts: Vec<AttemptRow>,
}

/// `manifests.versions` params.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ManifestVersionsParams {
    /// The manifest.
    pub name: ManifestName,
    /// Only versions below this one (the `version` of the previous page's last row).
    #[serde(default)]
    pub before: Option<u64>,
    /// At most this many (default 100, at most 1,000).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// `manifests.versions` result.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ManifestVersionsResult {
    /// The versions, newest first (none for an unknown manifest).
    pub versions: Vec<ManifestRow>,
}
