//! Job documents (DESIGN §3–4) and the rows `jobs … --json` prints and `jobs.*` returns.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::digest::{Digest, KeyId, Oid};
use crate::name::{Capability, ManifestName, Queue, WorkerId};
use crate::time::Timestamp;
use crate::ulid::Ulid;

// Where a job's commits keep their files (DESIGN §3): one path per document and captured
// stream in a commit's tree, shared by the job plane that writes them and the proofs that
// cover them.

/// The document of a job commit.
pub const JOB_PATH: &str = "job.json";
/// The document of a claim commit.
pub const CLAIM_PATH: &str = "claim.json";
/// The document of a result commit.
pub const RESULT_PATH: &str = "result.json";
/// The document of a cancel commit.
pub const CANCEL_PATH: &str = "cancel.json";
/// The proof of execution in result and released-claim commits.
pub const POE_PATH: &str = "poe.json";
/// Captured standard output.
pub const STDOUT_PATH: &str = "logs/stdout";
/// Captured standard error.
pub const STDERR_PATH: &str = "logs/stderr";
/// Where declared outputs go.
pub const OUTPUTS_DIR: &str = "outputs";

/// Where a job came from when it was run from the manifest registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ManifestSource {
    /// The manifest's name.
    pub name: ManifestName,
    /// Its version, from 1.
    pub version: u64,
    /// `blake3:` of its normalized document.
    pub content_id: Digest,
}

/// A normalized manifest: `job.json` of a job commit and `manifest.json` of a registry
/// version. Produced only by normalization, so every field is explicit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// The program and its fixed leading arguments.
    pub command: Vec<String>,
    /// Further arguments; argv = command ++ args.
    pub args: Vec<String>,
    /// Seconds before the process is stopped.
    pub timeout: u64,
    /// Environment; values may be `secret://NAME` references.
    pub env: BTreeMap<String, String>,
    /// Working directory, relative to the worker's base directory.
    pub cwd: String,
    /// Data handed to the job (in the file named by `GATOS_INPUTS`).
    pub inputs: Value,
    /// The queue.
    pub queue: Queue,
    /// Capabilities a worker must offer (sorted, unique).
    pub required_capabilities: Vec<Capability>,
    /// Names of the `secret://` references the job uses (sorted, unique).
    pub secret_refs: Vec<String>,
    /// Higher runs first.
    pub priority: i64,
    /// Attempts before the job fails for good.
    pub max_attempts: u32,
    /// Not before this time.
    pub run_after: Option<Timestamp>,
    /// Free-form labels.
    pub labels: BTreeMap<String, String>,
    /// Files (relative to `cwd`) collected into the result after a run.
    pub outputs: Vec<String>,
    /// The registry version this job was run from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ManifestSource>,
    /// The commit whose files the job runs in (ADR 0021); none: an empty directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkout: Option<crate::Oid>,
}

/// The state of a claim commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ClaimState {
    /// A first claim or a takeover (attempt + 1).
    Running,
    /// A lease extension.
    Heartbeat,
    /// An attempt ended without a final result; the job may run again.
    Released,
    /// The attempt ended with the job's result (written in the same change).
    Closed,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The process succeeded.
    Succeeded,
    /// The process exited non-zero (or by a signal).
    Failed,
    /// The process ran past its timeout.
    Timeout,
    /// The worker lost its lease.
    Lost,
    /// The job was cancelled while it ran.
    Cancelled,
}

impl Outcome {
    /// Returns the lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Timeout => "timeout",
            Outcome::Lost => "lost",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// `claim.json` of a claim commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimDoc {
    /// The job.
    pub job: Ulid,
    /// The attempt, from 1.
    pub attempt: u32,
    /// The worker holding it.
    pub worker: WorkerId,
    /// The key the worker signs proofs with.
    pub worker_key: Option<KeyId>,
    /// What this commit does.
    pub state: ClaimState,
    /// The lease ends at this time.
    pub lease_until: Timestamp,
    /// When the attempt started.
    pub claimed_at: Timestamp,
    /// Released: how the attempt ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// Released: the exit code, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Released: the signal the process died of (`SIGKILL`), as the worker saw it in the
    /// wait status (ADR 0029). Absent on claims written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// Released: the job may be claimed again from this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_at: Option<Timestamp>,
    /// `blake3:` of the attempt's lease token (ADR 0022): heartbeat, complete and fail
    /// must present the token. Absent on claims written before lease tokens existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_token_hash: Option<crate::Digest>,
}

/// The secret that proves a claim is held (ADR 0022): 256 random bits, handed to the
/// claimer once and stored only as its BLAKE3 hash. Written as 64 lowercase hex digits.
/// `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct LeaseToken([u8; 32]);

impl LeaseToken {
    /// Wraps 32 random bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> LeaseToken {
        LeaseToken(bytes)
    }

    /// The hash stored in the claim.
    pub fn hash(&self) -> crate::Digest {
        crate::Digest::of(&self.0)
    }

    /// Tells whether this token is the one `hash` was made from (constant time).
    pub fn matches(&self, hash: &crate::Digest) -> bool {
        blake3::hash(&self.0) == blake3::Hash::from_bytes(*hash.as_bytes())
    }

    /// The token's text form (what a client keeps and sends back).
    pub fn reveal(&self) -> String {
        crate::digest::to_hex(&self.0)
    }
}

impl std::fmt::Debug for LeaseToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LeaseToken(…)")
    }
}

impl std::str::FromStr for LeaseToken {
    type Err = crate::digest::ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let d: crate::Digest = format!("blake3:{s}").parse().map_err(|_| {
            crate::digest::ParseError::new("lease token", "…", "must be 64 lowercase hex digits")
        })?;
        Ok(LeaseToken(*d.as_bytes()))
    }
}

impl<'de> Deserialize<'de> for LeaseToken {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for LeaseToken {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "LeaseToken".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[0-9a-f]{64}$",
            "description": "the secret a claim's holder presents (64 lowercase hex digits)"
        })
    }
}

impl Serialize for LeaseToken {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.reveal())
    }
}

/// The final status of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The last attempt exited 0.
    Succeeded,
    /// The job failed for good.
    Failed,
}

/// `result.json` of a result commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResultDoc {
    /// The final status.
    pub status: Status,
    /// The last attempt's exit code, when there was one.
    pub exit_code: Option<i32>,
    /// The attempt that ended the job.
    pub attempt: u32,
    /// Why it failed without a process result (`lost`, `timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The signal the process died of (`SIGKILL`), as the worker saw it in the wait
    /// status (ADR 0029). Absent on results written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
}

/// `cancel.json` of a cancel commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelDoc {
    /// The job.
    pub job: Ulid,
    /// Who asked.
    pub actor: String,
    /// When.
    pub requested_at: Timestamp,
    /// Why, if said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Why an attempt, or a job, ended (ADR 0029): derived from the documents its writers
/// recorded (the result, the released or closed claim, the cancel), never stored as such.
/// Serialized with a `kind` tag: `{"kind":"timeout","limit_secs":30}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EndReason {
    /// The process exited by itself with this code (0: it succeeded).
    Exit {
        /// The exit code.
        code: i32,
    },
    /// The process died of a signal that gatos did not send for a timeout or a cancel
    /// (the worker saw it in the wait status).
    Signal {
        /// Its name (`SIGKILL`), or `SIG<n>` for a number without one.
        signal: String,
    },
    /// The worker stopped it at the job's timeout (TERM, then KILL after the grace).
    Timeout {
        /// The limit, in seconds (the manifest's `timeout`).
        limit_secs: u64,
    },
    /// The job was cancelled (`jobs cancel`); a running attempt was stopped.
    Cancelled {
        /// Who asked (the cancel document's `actor`), when the cancel is known here.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        /// Why (`--reason`), when said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// When it was asked.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<Timestamp>,
    },
    /// The attempt's worker lost its lease: it had no heartbeat before the lease ended
    /// (the job was taken over, or closed as failed on its last attempt), or the worker
    /// gave the job back while stopping.
    LeaseLost {
        /// When the last lease the attempt held ended.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lease_until: Option<Timestamp>,
        /// True when the worker itself gave the attempt back (it was stopping, or an
        /// earlier attempt still ran on its node).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        given_back: bool,
    },
    /// It ended without an exit code or a signal: the process did not start (why is on
    /// its standard error), or a worker that did not record signals wrote it.
    NoExit,
    /// A kind a newer node wrote (on an event it published): read, never a failed read.
    #[serde(other)]
    Other,
}

impl EndReason {
    /// The `kind` tag.
    pub fn kind(&self) -> &'static str {
        match self {
            EndReason::Exit { .. } => "exit",
            EndReason::Signal { .. } => "signal",
            EndReason::Timeout { .. } => "timeout",
            EndReason::Cancelled { .. } => "cancelled",
            EndReason::LeaseLost { .. } => "lease_lost",
            EndReason::NoExit => "no_exit",
            EndReason::Other => "other",
        }
    }

    /// How the attempt ended in one word, as the export's `attempts.outcome` says it
    /// (`gatos-export/3`): `succeeded`, `failed` (a non-zero exit, or none), `signal`,
    /// `timeout`, `cancelled`, `lost`.
    pub fn outcome(&self) -> &'static str {
        match self {
            EndReason::Exit { code: 0 } => "succeeded",
            EndReason::Exit { .. } | EndReason::NoExit | EndReason::Other => "failed",
            EndReason::Signal { .. } => "signal",
            EndReason::Timeout { .. } => "timeout",
            EndReason::Cancelled { .. } => "cancelled",
            EndReason::LeaseLost { .. } => "lost",
        }
    }
}

impl std::fmt::Display for EndReason {
    /// One short line: `exit 2`, `killed by SIGKILL`, `timeout after 30 s (limit)`,
    /// `cancelled by cli:alice: "wrong branch"`, `lease lost: no heartbeat before …`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndReason::Exit { code } => write!(f, "exit {code}"),
            EndReason::Signal { signal } => write!(f, "killed by {signal}"),
            EndReason::Timeout { limit_secs } => write!(f, "timeout after {limit_secs} s (limit)"),
            EndReason::Cancelled { by, reason, .. } => {
                f.write_str("cancelled")?;
                if let Some(by) = by {
                    write!(f, " by {by}")?;
                }
                match reason {
                    Some(r) => write!(f, ": {r:?}"),
                    None => Ok(()),
                }
            }
            EndReason::LeaseLost {
                given_back: true, ..
            } => f.write_str("lease lost: the worker gave the job back (it was stopping)"),
            EndReason::LeaseLost {
                lease_until: Some(t),
                ..
            } => write!(f, "lease lost: no heartbeat before its lease ended at {t}"),
            EndReason::LeaseLost { .. } => f.write_str("lease lost: no heartbeat"),
            EndReason::NoExit => f.write_str("no exit code (it did not start; see its stderr)"),
            EndReason::Other => f.write_str("a reason this version does not know"),
        }
    }
}

/// The name of a signal number as the worker's platform numbers it (`9` → `SIGKILL`),
/// `SIG<n>` for one without a name. Recorded by name: the numbers differ between systems.
pub fn signal_name(n: i32) -> String {
    const NAMES: [&str; 31] = [
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    usize::try_from(n)
        .ok()
        .and_then(|i| i.checked_sub(1))
        .and_then(|i| NAMES.get(i))
        .map_or_else(|| format!("SIG{n}"), |s| (*s).to_owned())
}

/// The derived state of a job (DESIGN §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for a worker.
    Pending,
    /// A worker holds a live lease.
    Running,
    /// Done, exit 0.
    Succeeded,
    /// Done, failed for good.
    Failed,
    /// Cancelled.
    Cancelled,
}

impl JobState {
    /// Every state.
    pub const ALL: [JobState; 5] = [
        JobState::Pending,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
    ];

    /// Returns the lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Tells whether nothing more will happen to the job.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

impl std::str::FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        JobState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!("unknown state {s:?} (pending, running, succeeded, failed, cancelled)")
            })
    }
}

/// What `jobs enqueue --json` and `manifests run --json` print.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EnqueueRow {
    /// The job id.
    pub id: Ulid,
    /// `blake3:` of `job.json`.
    pub content_id: Digest,
    /// The job commit.
    pub commit: Oid,
    /// Its state (pending).
    pub state: JobState,
    /// The job it retries (`jobs retry`; its `Retry-Of` trailer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<Ulid>,
}

/// The latest claim, as `jobs show` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ClaimView {
    /// The worker.
    pub worker: WorkerId,
    /// Its key.
    pub worker_key: Option<KeyId>,
    /// The attempt.
    pub attempt: u32,
    /// The lease end.
    pub lease_until: Timestamp,
    /// When the claim commit was written (its committer time, whole seconds): the
    /// attempt's last heartbeat — its claim before the first heartbeat, its end once it
    /// ended. Read with the claim document, no further read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat_at: Option<Timestamp>,
    /// The claim commit's state.
    pub state: ClaimState,
    /// How this attempt ended, once it has (ADR 0029); absent while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<EndReason>,
}

/// The result, as `jobs show` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ResultView {
    /// The status.
    pub status: Status,
    /// The exit code.
    pub exit_code: Option<i32>,
    /// The result commit.
    pub commit: Oid,
}

/// The proof, as `jobs show` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PoeView {
    /// The signing key.
    pub key: KeyId,
    /// Whether it verifies here (signature, trust, revocation, digests).
    pub verified: bool,
    /// Why it does not: `UntrustedKey` only for a proof sound in every other way (a valid
    /// signature by a key this node does not trust).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<crate::ErrorCode>,
    /// The reason, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One job as `jobs show --json` and `jobs ls --json` print it (DESIGN §8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct JobRow {
    /// The job id.
    pub id: Ulid,
    /// Its derived state.
    pub state: JobState,
    /// Attempts so far (0 before any claim).
    pub attempt: u32,
    /// Its queue.
    pub queue: Queue,
    /// The normalized manifest.
    pub manifest: JobSpec,
    /// The latest claim (also after the job ended), null if never claimed.
    pub claim: Option<ClaimView>,
    /// The result, null until there is one.
    pub result: Option<ResultView>,
    /// The proof, null until there is one.
    pub poe: Option<PoeView>,
    /// Why the job ended, once it has (ADR 0029); absent while it is pending or running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<EndReason>,
    /// Other results for this job that sync kept beside this node's own (ADR 0018), until
    /// `jobs resolve` chooses; only `jobs show` fills it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<Oid>,
    /// Who enqueued it and whether this node's workers run it (ADR 0019): `jobs show` fills
    /// it whole (a live job); `jobs list` fills `key`, `actor` and `trusted` from the job
    /// catalog, with `blocked` null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enqueuer: Option<EnqueuerView>,
    /// What a pending job waits for (queue, capabilities, secrets, `run_after`, backoff,
    /// enqueuer trust, admission), checked against no particular worker; only `jobs show`
    /// fills it, and only for a pending job.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting: Vec<WaitCondition>,
}

/// One thing a pending job waits for, as `jobs show` and `jobs why` report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WaitCondition {
    /// What it is about.
    pub kind: WaitKind,
    /// Whether it keeps the job from being claimed now: `true` or `false` where this node
    /// can tell, `null` where it depends on the worker (its queues, capabilities, secrets).
    pub blocks: Option<bool>,
    /// One line for people (times also relative to now: `in 4m`, `passed`).
    pub detail: String,
    /// When a wait in time ends (`run_after`, `backoff`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
    /// What it names: the queue, the capabilities or secret names needed (never a secret's
    /// value), the enqueuer's key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// The enqueuer of a job as `jobs show` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EnqueuerView {
    /// The key that signed the enqueue envelope (null: unsigned).
    pub key: Option<KeyId>,
    /// Who asked, as the enqueuing node recorded it.
    pub actor: Option<String>,
    /// Whether this node trusts the key (its own key always is).
    pub trusted: bool,
    /// Why a worker of this node does not run it, when it does not (without
    /// `--allow-untrusted-enqueuers`).
    pub blocked: Option<String>,
}

/// What `jobs resolve --json` prints: the result the job now has, and the results dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ResolveRow {
    /// The job.
    pub id: Ulid,
    /// Its result commit now.
    pub kept: Oid,
    /// Result commits that were set aside (this node's former one included, when another
    /// was chosen); each stays in the audit record.
    pub dropped: Vec<Oid>,
}

/// What `jobs verify --json` prints per job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VerifyRow {
    /// The job.
    pub id: Ulid,
    /// True when everything checked out.
    pub verified: bool,
    /// The signing key, when the proof named one.
    pub key: Option<KeyId>,
    /// The error code when it did not verify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<crate::ErrorCode>,
    /// Why it did not verify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The proof itself, as stored (`poe.json`): what `jobs verify ID` checked, so a
    /// client can check it again without gatos (ADR 0013). Absent when the job has no
    /// proof, when the stored one is not a DSSE envelope, and in `jobs verify --all`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poe: Option<DsseEnvelope>,
}

/// A DSSE envelope, as a proof of execution is stored (`poe.json`, ADR 0013): `payload` is
/// the base64 of the JCS bytes of an in-toto Statement v1, signed over DSSE's
/// pre-authentication encoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DsseEnvelope {
    /// Base64 (standard, padded) of the statement's JCS bytes.
    pub payload: String,
    /// `application/vnd.in-toto+json`.
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// The signatures (gatos writes one).
    pub signatures: Vec<DsseSignature>,
}

/// One signature of a [`DsseEnvelope`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DsseSignature {
    /// The signing key, `ed25519:<hex>`.
    pub keyid: String,
    /// Base64 of the ed25519 signature.
    pub sig: String,
}

impl DsseEnvelope {
    /// Reads a stored `poe.json`; `None` when it is not a DSSE envelope.
    pub fn parse(bytes: &[u8]) -> Option<DsseEnvelope> {
        serde_json::from_slice(bytes).ok()
    }
}

/// What `manifests get --json` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ManifestRow {
    /// The name.
    pub name: ManifestName,
    /// The version, from 1.
    pub version: u64,
    /// `blake3:` of the normalized document.
    pub content_id: Digest,
    /// The normalized document.
    pub manifest: JobSpec,
}

/// A name read from a document that is outside the closed set of this version (a newer
/// node wrote it). It is kept exactly as read, so the document round-trips unchanged, and
/// is made only by parsing: it is never one of the set's own names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnknownName(String);

impl UnknownName {
    /// Returns the name as read.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for UnknownName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A closed set of names read back from refs: the known names as variants, and
/// `Other(UnknownName)` for a name a newer node wrote, kept as read. Serialized as the name
/// (exactly the strings of the set), parsed without failing.
macro_rules! open_set {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A name this version does not know (written by a newer node), kept as read.
            Other(UnknownName),
        }

        impl $name {
            /// Every name this version knows, in the set's order.
            pub const KNOWN: &[$name] = &[$( $name::$variant ),+];

            /// Returns the name (the serialized form).
            pub fn as_str(&self) -> &str {
                match self {
                    $( $name::$variant => $text, )+
                    $name::Other(n) => n.as_str(),
                }
            }

            /// Reads a name: a known one gives its variant, any other `Other`.
            pub fn parse(s: &str) -> $name {
                match s {
                    $( $text => $name::$variant, )+
                    _ => $name::Other(UnknownName(s.to_owned())),
                }
            }

            /// True for a name of this version's set.
            pub fn is_known(&self) -> bool {
                !matches!(self, $name::Other(_))
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> $name {
                $name::parse(s)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Ok($name::parse(&s))
            }
        }

        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "string",
                    "description": concat!(
                        $what, ": one of ",
                        $( "`", $text, "` ", )+
                        "(a newer node may write others)"
                    ),
                    "examples": [$( $text ),+]
                })
            }
        }
    };
}

open_set! {
    /// What happened to a job, as its event on `gatos.jobs` says (DESIGN §4).
    ///
    /// The topic is read back (`jobs watch`, `jobs.watch`, the admission hint, doctor), and
    /// a newer node may publish events this version does not know: those parse as
    /// [`JobEventKind::Other`] and are shown as read, never a failed read or listing;
    /// readers that count particular events do not count them.
    pub enum JobEventKind ("what happened to the job") {
        /// The job was enqueued.
        Enqueued = "enqueued",
        /// A worker claimed an attempt.
        Claimed = "claimed",
        /// An attempt's worker lost its lease (taken over, or it fenced itself).
        HeartbeatLost = "heartbeat_lost",
        /// An attempt failed with attempts left: the job runs again after a backoff.
        RetryScheduled = "retry_scheduled",
        /// The job succeeded.
        Succeeded = "succeeded",
        /// The job failed (its last attempt).
        Failed = "failed",
        /// The job was cancelled.
        Cancelled = "cancelled",
    }
}

open_set! {
    /// How an attempt ended, as its proof's predicate says (`status`, DESIGN §4): an
    /// [`Outcome`]'s name.
    ///
    /// Proofs are read back from result commits that other nodes wrote; a status this
    /// version does not know parses as [`ProofStatus::Other`] (so the signed payload
    /// round-trips) and agrees only with a failed result, as any status but `succeeded`
    /// does — never a failed read.
    pub enum ProofStatus ("how the attempt ended") {
        /// The process succeeded.
        Succeeded = "succeeded",
        /// The process exited non-zero (or by a signal).
        Failed = "failed",
        /// The process ran past its timeout.
        Timeout = "timeout",
        /// The worker lost its lease.
        Lost = "lost",
        /// The job was cancelled while it ran.
        Cancelled = "cancelled",
    }
}

impl From<Outcome> for ProofStatus {
    fn from(o: Outcome) -> ProofStatus {
        match o {
            Outcome::Succeeded => ProofStatus::Succeeded,
            Outcome::Failed => ProofStatus::Failed,
            Outcome::Timeout => ProofStatus::Timeout,
            Outcome::Lost => ProofStatus::Lost,
            Outcome::Cancelled => ProofStatus::Cancelled,
        }
    }
}

open_set! {
    /// What a [`WaitCondition`] is about. A newer node may report kinds this version does not
    /// know: they read as [`WaitKind::Other`].
    pub enum WaitKind ("what a pending job waits for") {
        /// The job's queue: a worker must take it.
        Queue = "queue",
        /// The capabilities the job needs: a worker must offer them all.
        Capabilities = "capabilities",
        /// The `secret://` references the job uses: the claiming worker must resolve them.
        Secrets = "secrets",
        /// The job's `run_after`.
        RunAfter = "run_after",
        /// A failed attempt's retry delay (`available_at` of its released claim).
        Backoff = "backoff",
        /// Who enqueued it, and whether this node's workers run what that key enqueues
        /// (ADR 0019).
        Enqueuer = "enqueuer",
        /// The queue's admission limit (ADR 0027): it refuses new enqueues, never holds
        /// back a job already admitted.
        Admission = "admission",
    }
}

/// One event on the topic `gatos.jobs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct JobEvent {
    /// What happened.
    pub event: JobEventKind,
    /// The job.
    pub job: Ulid,
    /// The attempt (0 before any claim).
    pub attempt: u32,
    /// The queue.
    pub queue: Queue,
    /// The worker, when one acted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerId>,
    /// The commit of the action (also the event's `msg_id`).
    pub commit: Oid,
    /// When.
    pub at: Timestamp,
    /// Why the job (`succeeded`, `failed`, `cancelled`) or the attempt
    /// (`retry_scheduled`) ended (ADR 0029); absent on other events and on events written
    /// before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<EndReason>,
}

/// What `keys show --json` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct KeyRow {
    /// The key id.
    pub key: KeyId,
    /// Where the private key is.
    pub path: String,
}

/// What `keys ls --json` prints per key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct KeyListRow {
    /// The key id.
    pub key: KeyId,
    /// This repository's signing key.
    pub current: bool,
    /// Trusted here (local config).
    pub trusted: bool,
    /// A record is published under `refs/gatos/trust/keys/`.
    pub published: bool,
    /// The revocation reason, when revoked.
    pub revoked: Option<String>,
}

/// A queue's replicated settings (`config.json` of `refs/gatos/config/queues/<queue>`);
/// `jobs config --json` prints them with the queue's depth as a [`QueueRow`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// The queue.
    pub queue: Queue,
    /// The first retry delay in seconds (default 1).
    #[serde(default)]
    pub backoff_base: Option<u64>,
    /// The longest retry delay in seconds (default 600).
    #[serde(default)]
    pub backoff_max: Option<u64>,
    /// Admission: an enqueue is refused with `QueueFull` while this node counts this many
    /// pending jobs in the queue (ADR 0027); absent, no limit. Left out of the document
    /// when absent, so settings that never had a limit keep their bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending: Option<u64>,
}

impl QueueConfig {
    /// The settings of a queue nobody configured.
    pub fn defaults(queue: Queue) -> QueueConfig {
        QueueConfig {
            queue,
            backoff_base: None,
            backoff_max: None,
            max_pending: None,
        }
    }
}

/// A queue's depth against its limit, as this node sees it: a member of `gatos.health`'s
/// `queues` (ADR 0027).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct QueueDepth {
    /// The queue.
    pub queue: Queue,
    /// Its pending jobs in this node's ready index: enqueued or released for a retry and
    /// not claimed since, including those waiting for `run_after` or a retry backoff;
    /// running jobs are not counted.
    pub pending: u64,
    /// Its running jobs in this node's ready index: claimed and not finished (a lease that
    /// ran out with nobody taking over still counts, until the job is claimed again or
    /// ends). Not counted against the limit.
    #[serde(default)]
    pub running: u64,
    /// The limit (`null`: none).
    pub max_pending: Option<u64>,
}

/// One queue as `jobs config --json` prints it: its settings and its depth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct QueueRow {
    /// The queue.
    pub queue: Queue,
    /// The first retry delay in seconds (`null`: the default, 1).
    pub backoff_base: Option<u64>,
    /// The longest retry delay in seconds (`null`: the default, 600).
    pub backoff_max: Option<u64>,
    /// The admission limit (`null`: none).
    pub max_pending: Option<u64>,
    /// Pending jobs as [`QueueDepth::pending`] counts them.
    pub pending: u64,
    /// Running jobs as [`QueueDepth::running`] counts them: claimed and not finished, in
    /// this node's ready index.
    #[serde(default)]
    pub running: u64,
}

/// What `git gatos worker --json` prints per attempt it ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WorkerRow {
    /// The job.
    pub id: Ulid,
    /// The attempt.
    pub attempt: u32,
    /// How the attempt ended.
    pub outcome: Outcome,
    /// The process's exit code (null when it did not exit by itself).
    pub exit_code: Option<i32>,
    /// The signal the process died of (`SIGKILL`), when it did (ADR 0029).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// The job's state afterwards (null when the claim was lost).
    pub state: Option<JobState>,
    /// The commit written (result or released claim), null when nothing could be.
    pub commit: Option<Oid>,
    /// How long the process ran, in milliseconds.
    pub duration_ms: u64,
    /// Why nothing was written, when so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod open_set_tests {
    use super::*;

    #[test]
    fn known_names_round_trip_as_the_same_strings() {
        for k in JobEventKind::KNOWN {
            let json = serde_json::to_string(k).expect("a string");
            assert_eq!(json, format!("\"{}\"", k.as_str()));
            let back: JobEventKind = serde_json::from_str(&json).expect("a known name");
            assert_eq!(&back, k);
            assert!(back.is_known());
        }
        let names: Vec<&str> = JobEventKind::KNOWN
            .iter()
            .map(JobEventKind::as_str)
            .collect();
        assert_eq!(
            names,
            [
                "enqueued",
                "claimed",
                "heartbeat_lost",
                "retry_scheduled",
                "succeeded",
                "failed",
                "cancelled"
            ]
        );
        for o in [
            Outcome::Succeeded,
            Outcome::Failed,
            Outcome::Timeout,
            Outcome::Lost,
            Outcome::Cancelled,
        ] {
            assert_eq!(ProofStatus::from(o).as_str(), o.as_str());
            assert_eq!(ProofStatus::parse(o.as_str()), ProofStatus::from(o));
        }
    }

    #[test]
    fn an_event_a_newer_node_wrote_reads_and_round_trips() {
        let text = r#"{"event":"paused","job":"01J0000000000000000000000A","attempt":0,"queue":"default","commit":"0123456789abcdef0123456789abcdef01234567","at":"2026-12-04T10:00:00Z"}"#;
        let ev: JobEvent = serde_json::from_str(text).expect("an unknown event still reads");
        assert!(!ev.event.is_known());
        assert_eq!(ev.event.as_str(), "paused");
        assert_eq!(serde_json::to_string(&ev).expect("json"), text);
    }
}
