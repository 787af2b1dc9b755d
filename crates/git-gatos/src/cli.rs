//! The command line, as clap types. Doc comments are the help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// gatos: a Git-native ledger of jobs and messages.
///
/// Jobs, messages, consumer checkpoints, manifests and signed proofs of execution are
/// commits under refs/gatos/ of this repository. Run `git gatos init` once per clone.
#[derive(Debug, Parser)]
#[command(
    name = "git gatos",
    bin_name = "git gatos",
    version,
    propagate_version = true
)]
pub struct Cli {
    /// Options shared by every command.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The plane and verb.
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every command.
#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// Print machine output: one JSON object per line.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print less: no hints, no progress.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Print more: -v for info logs and error causes, -vv for debug logs.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// When to use colour (auto, always, never); NO_COLOR is respected.
    #[arg(long, global = true, default_value = "auto", value_parser = ["auto", "always", "never"])]
    pub color: String,
}

/// The planes.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Prepare this repository: node id, identity and signing key (idempotent).
    Init,
    /// Publish, read, follow and consume messages.
    #[command(subcommand)]
    Messages(MessagesCommand),
    /// Compact the repository: repack, pack refs, write the commit-graph.
    Maintenance(MaintenanceArgs),
}

/// The message plane's verbs.
#[derive(Debug, Subcommand)]
pub enum MessagesCommand {
    /// Publish one message (--data, --file or stdin), or many (--batch).
    Publish(PublishArgs),
    /// Read messages oldest first, after a cursor; --follow waits for more.
    Read(ReadArgs),
    /// List topics.
    Topics,
    /// Get or set a consumer group's checkpoint.
    #[command(subcommand)]
    Checkpoint(CheckpointCommand),
    /// Print a page after the group's checkpoint, then advance it (at-least-once).
    Consume(ConsumeArgs),
    /// Show or change a topic's segment and retention settings.
    Config(ConfigArgs),
    /// Drop sealed segments past retention, leaving a summary.
    Prune(PruneArgs),
}

/// `messages publish`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").args(["data", "file", "batch", "stdin"])))]
pub struct PublishArgs {
    /// The topic.
    pub topic: String,
    /// Read the payload from standard input.
    #[arg(value_name = "-", value_parser = ["-"])]
    pub stdin: Option<String>,
    /// The payload, as JSON.
    #[arg(long, value_name = "JSON")]
    pub data: Option<String>,
    /// Read the payload from a file.
    #[arg(long, value_name = "F")]
    pub file: Option<PathBuf>,
    /// Publish every line of a JSONL file (`-` for stdin) as one message.
    #[arg(long, value_name = "F.jsonl")]
    pub batch: Option<PathBuf>,
    /// Deduplicate: if a recent message has this msg_id, return it instead.
    #[arg(long, value_name = "ID", conflicts_with = "batch")]
    pub msg_id: Option<String>,
    /// Headers as a JSON object (msg_id among them deduplicates).
    #[arg(long, value_name = "JSON")]
    pub headers: Option<String>,
    /// Append only if the topic's last seq is N.
    #[arg(long, value_name = "N")]
    pub expect_last_seq: Option<u64>,
    /// Messages per commit-and-CAS chunk with --batch.
    #[arg(long, value_name = "N", default_value_t = 1000, requires = "batch")]
    pub chunk: usize,
}

/// `messages read`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("cursor").args(["since", "since_seq"])))]
pub struct ReadArgs {
    /// The topic.
    pub topic: String,
    /// Start after the message with this ULID.
    #[arg(long, value_name = "ULID")]
    pub since: Option<String>,
    /// Start after this position.
    #[arg(long, value_name = "N")]
    pub since_seq: Option<u64>,
    /// Print at most N messages.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Keep waiting for new messages (without a cursor: only new ones).
    #[arg(long)]
    pub follow: bool,
}

/// `messages checkpoint`.
#[derive(Debug, Subcommand)]
pub enum CheckpointCommand {
    /// Show a group's checkpoint and lag.
    Get {
        /// The consumer group.
        group: String,
        /// The topic.
        topic: String,
    },
    /// Move a group's checkpoint to a message.
    Set {
        /// The consumer group.
        group: String,
        /// The topic.
        topic: String,
        /// The message to stand after.
        ulid: String,
        /// Allow moving it backwards (audited).
        #[arg(long)]
        force: bool,
    },
}

/// `messages consume`.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// The consumer group.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// Messages per page.
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub limit: u64,
}

/// `messages config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The topic.
    pub topic: String,
    /// Messages per segment.
    #[arg(long, value_name = "N")]
    pub max_messages: Option<u64>,
    /// Envelope bytes per segment.
    #[arg(long, value_name = "N")]
    pub max_bytes: Option<u64>,
    /// Prune sealed segments older than this (DUR, or `off`).
    #[arg(long, value_name = "DUR")]
    pub ttl: Option<String>,
    /// Keep at least this many messages when pruning (or `off`).
    #[arg(long, value_name = "N")]
    pub retain_messages: Option<String>,
    /// Keep about this many envelope bytes when pruning (or `off`).
    #[arg(long, value_name = "N")]
    pub retain_bytes: Option<String>,
}

/// `messages prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// The topic.
    pub topic: String,
    /// Also drop sealed segments whose last message is older than this.
    #[arg(long, value_name = "DUR")]
    pub older_than: Option<String>,
    /// Show what would be dropped; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Drop even what consumer groups have not consumed (audited).
    #[arg(long)]
    pub force: bool,
}

/// `maintenance`.
#[derive(Debug, Args)]
pub struct MaintenanceArgs {
    /// Only if thresholds are crossed (what writers start on their own).
    #[arg(long)]
    pub auto: bool,
}
