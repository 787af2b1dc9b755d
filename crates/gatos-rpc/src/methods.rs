//! Method names and their params and results, named as in the CLI (DESIGN §6).
//!
//! The method-name strings are spelled here only. Params structs refuse unknown members
//! (-32602), so a typo in a client is an error, not a silently ignored option.

use gatos_types::wire::{MessageRow, PublishRow, TopicRow};
use gatos_types::{Group, Oid, Topic, Ulid};
use serde::{Deserialize, Serialize};
use serde_json::Value;

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
/// `messages.event` (notification from the server)
pub const MESSAGES_EVENT: &str = "messages.event";
/// `messages.lagged` (notification from the server: a subscription was dropped)
pub const MESSAGES_LAGGED: &str = "messages.lagged";
/// `checkpoints.get`
pub const CHECKPOINTS_GET: &str = "checkpoints.get";
/// `checkpoints.set`
pub const CHECKPOINTS_SET: &str = "checkpoints.set";
/// `topics.list`
pub const TOPICS_LIST: &str = "topics.list";
/// `gatos.health`
pub const GATOS_HEALTH: &str = "gatos.health";
/// `gatos.version`
pub const GATOS_VERSION: &str = "gatos.version";
/// `gatos.auth`
pub const GATOS_AUTH: &str = "gatos.auth";
/// `jobs.claim` (the job plane; listed here for the notification rule)
pub const JOBS_CLAIM: &str = "jobs.claim";

/// Methods whose answer is the point: not run when sent as notifications (DESIGN §6).
pub const ANSWER_REQUIRED: &[&str] = &[JOBS_CLAIM, MESSAGES_SUBSCRIBE, GATOS_AUTH];

/// `messages.publish` params.
#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchMessage {
    /// The payload.
    pub payload: Value,
    /// Headers; `msg_id` deduplicates.
    #[serde(default)]
    pub headers: Option<Value>,
}

/// `messages.publish_batch` params.
#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublishBatchResult {
    /// One row per message, in order.
    pub results: Vec<PublishRow>,
    /// How many landed (all of them, on success).
    pub landed: u64,
}

/// `messages.read` params.
#[derive(Debug, Clone, Deserialize)]
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
    /// At most this many (default 128, at most 10,000).
    #[serde(default)]
    pub limit: Option<u64>,
}

/// `messages.subscribe` params.
#[derive(Debug, Clone, Deserialize)]
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
}

/// `messages.subscribe` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubscribeResult {
    /// The subscription id, named in every `messages.event`.
    pub subscription: String,
    /// The message the subscription starts after (null: the start of the topic).
    pub since: Option<Ulid>,
}

/// `messages.unsubscribe` params.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnsubscribeParams {
    /// The subscription id.
    pub subscription: String,
}

/// `messages.event` notification params.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageEvent {
    /// The subscription.
    pub subscription: String,
    /// The message, as `messages.read` returns it.
    pub message: MessageRow,
}

/// `messages.lagged` notification params: the subscriber did not keep up and the
/// subscription was closed; resubscribe with `since: next_since`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lagged {
    /// The subscription that was closed.
    pub subscription: String,
    /// The last message delivered (resume after it).
    pub next_since: Option<Ulid>,
}

/// `checkpoints.get` params.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointGetParams {
    /// The consumer group.
    pub group: Group,
    /// The topic.
    pub topic: Topic,
}

/// `checkpoints.set` params.
#[derive(Debug, Clone, Deserialize)]
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

/// Params of methods that take none.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// `topics.list` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopicsResult {
    /// The topics.
    pub topics: Vec<TopicRow>,
}

/// `gatos.auth` params.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthParams {
    /// The bearer token.
    pub token: String,
}

/// `gatos.version` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionResult {
    /// The gatos version.
    pub version: String,
    /// "2.0".
    pub jsonrpc: String,
}

/// `gatos.health` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
}
