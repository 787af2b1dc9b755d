//! Wire rows: the JSON shapes that `--json` prints and RPC returns (one struct per shape).
//!
//! Both front doors serialise these same structs, so they cannot drift apart. Field names
//! are snake_case and documented in `docs/rpc.md` and `docs/messages.md`.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::digest::{Digest, Oid};
use crate::name::{Group, Topic};
use crate::time::Timestamp;
use crate::ulid::Ulid;

/// A JSON value kept as its canonical text (no re-parsing on the read path).
pub type RawJson = Box<RawValue>;

/// Compares two raw JSON values by text (both are JCS, so equal values have equal text).
pub fn raw_eq(a: &RawValue, b: &RawValue) -> bool {
    a.get() == b.get()
}

/// One message as `messages read --json` prints it and `messages.read` returns it.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MessageRow {
    /// The message's identity within its topic.
    pub ulid: Ulid,
    /// Its position in the topic, from 1.
    pub seq: u64,
    /// Its topic.
    pub topic: Topic,
    /// `blake3:` of the envelope's JCS bytes.
    pub content_id: Digest,
    /// The message commit.
    pub commit: Oid,
    /// The payload, as canonical JSON.
    #[schemars(with = "serde_json::Value")]
    pub payload: RawJson,
    /// The headers, when the message has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<serde_json::Value>")]
    pub headers: Option<RawJson>,
}

impl PartialEq for MessageRow {
    fn eq(&self, o: &Self) -> bool {
        self.ulid == o.ulid
            && self.seq == o.seq
            && self.topic == o.topic
            && self.content_id == o.content_id
            && self.commit == o.commit
            && raw_eq(&self.payload, &o.payload)
            && match (&self.headers, &o.headers) {
                (None, None) => true,
                (Some(a), Some(b)) => raw_eq(a, b),
                _ => false,
            }
    }
}

/// The answer to a publish: what `messages publish --json` prints, one per message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PublishRow {
    /// The message's ULID (the first one's, for a duplicate).
    pub ulid: Ulid,
    /// Its position.
    pub seq: u64,
    /// Its topic.
    pub topic: Topic,
    /// `blake3:` of its envelope.
    pub content_id: Digest,
    /// Its commit.
    pub commit: Oid,
    /// True when `msg_id` matched an earlier message, which is returned instead.
    pub duplicate: bool,
}

/// A range of positions that a cursor skipped because it was pruned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Gap {
    /// The first skipped position.
    pub from_seq: u64,
    /// The last skipped position.
    pub to_seq: u64,
}

/// One page of a read: `messages.read`'s result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReadPage {
    /// The messages, oldest first.
    pub messages: Vec<MessageRow>,
    /// The cursor to resume from: the last returned ULID, else the cursor given.
    pub next_since: Option<Ulid>,
    /// True when the page reached the topic's last message.
    pub end: bool,
    /// Set when the cursor pointed into pruned history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap: Option<Gap>,
}

/// A consumer checkpoint as stored in `checkpoint.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CheckpointDoc {
    /// The consumer group.
    pub group: Group,
    /// The topic.
    pub topic: Topic,
    /// The last consumed message, or null at the start.
    pub ulid: Option<Ulid>,
    /// Its position, 0 at the start.
    pub seq: u64,
    /// Its commit, or null at the start.
    pub commit: Option<Oid>,
}

/// What `checkpoint get --json` prints and `checkpoints.get` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CheckpointRow {
    /// The consumer group.
    pub group: Group,
    /// The topic.
    pub topic: Topic,
    /// The last consumed message, or null when the group has consumed nothing.
    pub ulid: Option<Ulid>,
    /// Its position, 0 when nothing was consumed.
    pub seq: u64,
    /// Its commit, or null.
    pub commit: Option<Oid>,
    /// Messages after the checkpoint.
    pub lag: u64,
}

/// A consumer group's checkpoint that does not read (its document is not a checkpoint, or
/// its topic's head is no message, or a summary does not parse): a listing names it here
/// instead of failing for every checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DamagedCheckpoint {
    /// The consumer group.
    pub group: Group,
    /// The topic.
    pub topic: Topic,
    /// Why it does not read (a stable error code).
    pub code: crate::ErrorCode,
    /// What is wrong, for a person.
    pub message: String,
}

/// One topic as `messages topics --json` prints it and `topics.list` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TopicRow {
    /// The topic.
    pub topic: Topic,
    /// The position of its last message (0 when empty).
    pub last_seq: u64,
    /// The position of its first retained message (0 when empty).
    pub first_seq: u64,
    /// Retained messages.
    pub count: u64,
    /// Segments, the live one included.
    pub segments: u64,
    /// The ULID of the last message.
    pub last_ulid: Option<Ulid>,
    /// When the last message was published (from its ULID).
    pub last_at: Option<Timestamp>,
}

/// A topic whose refs do not read as a topic (its head is no message, its summary does not
/// parse): a listing names it here instead of failing for every topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DamagedTopic {
    /// The topic.
    pub topic: Topic,
    /// Why it does not read (a stable error code).
    pub code: crate::ErrorCode,
    /// What is wrong, for a person.
    pub message: String,
}

/// Per-topic settings stored in `refs/gatos/config/topics/<topic>` (DESIGN §4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    /// The topic.
    pub topic: Topic,
    /// A segment holds at most this many messages.
    pub max_messages: u64,
    /// A segment holds at most this many envelope bytes.
    pub max_bytes: u64,
    /// Sealed segments whose last message is older than this are pruned (seconds).
    #[serde(default)]
    pub ttl: Option<u64>,
    /// Keep at least this many recent messages; older sealed segments are pruned.
    #[serde(default)]
    pub retain_messages: Option<u64>,
    /// Keep at most about this many envelope bytes; older sealed segments are pruned.
    #[serde(default)]
    pub retain_bytes: Option<u64>,
    /// Messages are signed by their writer's node key and, from a remote, count only when
    /// a trusted key signed them (as on the `gatos.*` topics; ADR 0018). Absent: off.
    #[serde(default, skip_serializing_if = "is_false")]
    pub sign: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl TopicConfig {
    /// The default segment size in messages (DESIGN §4).
    pub const DEFAULT_MAX_MESSAGES: u64 = 100_000;
    /// The default segment size in envelope bytes: 192 MiB.
    pub const DEFAULT_MAX_BYTES: u64 = 192 * 1024 * 1024;

    /// Returns the defaults for a topic.
    pub fn defaults(topic: Topic) -> TopicConfig {
        TopicConfig {
            topic,
            max_messages: Self::DEFAULT_MAX_MESSAGES,
            max_bytes: Self::DEFAULT_MAX_BYTES,
            ttl: None,
            retain_messages: None,
            retain_bytes: None,
            sign: false,
        }
    }
}

/// The summary of pruned segments, stored as `summary.json` (DESIGN §4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SummaryDoc {
    /// The topic.
    pub topic: Topic,
    /// Messages this summary covers.
    pub count: u64,
    /// The first pruned message.
    pub first_ulid: Ulid,
    /// Its position.
    pub first_seq: u64,
    /// The last pruned message.
    pub last_ulid: Ulid,
    /// Its position.
    pub last_seq: u64,
    /// Envelope bytes pruned.
    pub bytes: u64,
    /// blake3 over the newline-joined `Content-Id`s in `Seq` order.
    pub digest: Digest,
    /// The commit of the last pruned message (the old tip).
    pub old_tip: Oid,
    /// The sealed segments pruned, by name (`<yyyy-mm-dd>/<ulid>`).
    pub segments: Vec<String>,
}

/// What `messages prune` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PruneRow {
    /// The topic.
    pub topic: Topic,
    /// Segments dropped (or that would be, with `--dry-run`).
    pub segments: Vec<String>,
    /// Messages dropped.
    pub messages: u64,
    /// Envelope bytes dropped.
    pub bytes: u64,
    /// The summary commit written (null for a dry run or when nothing was pruned).
    pub summary: Option<Oid>,
    /// True for `--dry-run`.
    pub dry_run: bool,
    /// Groups whose checkpoint was behind the pruned range (only with `--force`).
    pub groups_behind: Vec<Group>,
}
