//! Manifests: JSON or YAML in, a normalized [`JobSpec`] out (DESIGN §4).
//!
//! What can go wrong is typed: [`Error`] for a manifest given to be enqueued or stored
//! (parsing, building, normalizing, the secret scan) and [`DocumentError`] for a job
//! document read back from a ref ([`check_spec`]). Each maps to its code by an exhaustive
//! match; the functions return [`crate::Error`] holding the typed error as its inner one
//! (downcast it to branch on the variant), with its details.

use std::collections::BTreeMap;

use gatos_types::jobs::{JobSpec, ManifestSource};
use gatos_types::time::TimeError;
use gatos_types::{Capability, Coded, Dur, ErrorCode, Oid, Queue, Timestamp, jcs};
use serde::Deserialize;
use serde_json::Value;

use super::secrets;
use crate::error::Result;

/// Why a manifest given to be enqueued or stored was refused.
///
/// Errors of a parser are kept in their variant but not given as the `source`: the message
/// already includes their text, and a chain prints each message once.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `checkout` is neither a revision nor a boolean.
    #[error("checkout is a revision (\"HEAD\", a branch, a tag, a commit id) or false")]
    CheckoutNotRevision,
    /// Both the manifest and the request's argv give the command.
    #[error("give the command either in the manifest or as the command, not both")]
    CommandTwice,
    /// Neither the manifest nor the request's argv gives a command.
    #[error("nothing to run: give a command or a manifest")]
    NothingToRun,
    /// Text that looks like JSON and does not parse.
    #[error("manifest: {0}")]
    Json(jcs::Error),
    /// Text that is neither JSON nor YAML.
    #[error("manifest (YAML): {0}")]
    Yaml(serde_yaml_ng::Error),
    /// A manifest that is not an object.
    #[error("a manifest must be an object")]
    NotAnObject,
    /// Unknown fields, or fields of the wrong type.
    #[error("manifest: {0}")]
    Shape(serde_json::Error),
    /// `source`, which only the registry sets.
    #[error("source is set by the manifest registry, not by a manifest")]
    SourceSet,
    /// No command, or an empty program name.
    #[error("command must be a non-empty array, e.g. [\"make\", \"test\"]")]
    EmptyCommand,
    /// A number of seconds that is not a whole non-negative number.
    #[error("timeout must be whole seconds or a duration")]
    TimeoutNotWhole,
    /// A timeout that is neither a number nor a string.
    #[error("timeout must be seconds or a duration like 30s, 5m, PT30S")]
    TimeoutType,
    /// A timeout outside 1 second ..= [`MAX_TIMEOUT`].
    #[error("timeout must be between 1 second and 30 days")]
    TimeoutRange,
    /// A DUR (`timeout`) or TIME (`run_after`) that does not parse.
    #[error(transparent)]
    Time(#[from] TimeError),
    /// `max_attempts` outside 1 ..= [`MAX_ATTEMPTS`].
    #[error("max_attempts must be between 1 and {MAX_ATTEMPTS}")]
    MaxAttempts {
        /// What was asked for.
        max_attempts: u32,
    },
    /// An env name that is not a variable name.
    #[error("env name {name:?} is not a variable name")]
    EnvName {
        /// The name.
        name: String,
    },
    /// An env name of the reserved `GATOS_*` family.
    #[error("env name {name:?} is reserved (GATOS_*)")]
    EnvReserved {
        /// The name.
        name: String,
    },
    /// A label whose name or value is too long (or whose name is empty).
    #[error("label {name:?}: names are 1-64 bytes, values at most 1024")]
    Label {
        /// The label's name.
        name: String,
    },
    /// `cwd` or an output that is not a relative path inside the working directory.
    #[error(transparent)]
    Path(#[from] PathError),
    /// A string that starts with `secret://` but is not a valid reference (its field is the
    /// `field` detail).
    #[error(
        "{field} starts with secret:// but is not a reference: write secret://NAME, NAME a \
         variable name (letters, digits, _), and nothing else in the string"
    )]
    InvalidReference {
        /// Where: `env.T`, `args[0]`, `labels (key #0)`, …
        field: String,
    },
    /// A `checkout` that is still a revision, not a commit id: revisions are resolved where
    /// the repository is, before normalization.
    #[error(
        "checkout {value:?} is not a commit id; give the revision in the enqueue request, where the repository resolves it"
    )]
    CheckoutNotCommit {
        /// What it says.
        value: String,
    },
    /// A resolved `checkout` that is neither a commit id nor false.
    #[error("checkout is a commit id or false")]
    CheckoutType,
    /// The manifest cannot be encoded as canonical JSON.
    #[error(transparent)]
    Encode(jcs::Error),
    /// The normalized manifest is over [`MAX_MANIFEST_BYTES`].
    #[error("manifest of {size} bytes is over the 1 MiB limit")]
    TooLarge {
        /// Its size in bytes.
        size: usize,
    },
    /// A priority beyond ±[`MAX_PRIORITY`], which canonical JSON cannot hold exactly.
    #[error("priority {priority} is out of range: at most {MAX_PRIORITY} either way")]
    Priority {
        /// What was asked for.
        priority: i64,
    },
    /// A NUL byte in a string of the argv or the environment (no process can be given it).
    #[error("{field} holds a NUL byte, which no program's arguments or environment can carry")]
    NulByte {
        /// Where: `command[0]`, `args[2]`, `env.T`.
        field: String,
    },
    /// An output that cannot name a file of the result's tree.
    #[error("output {path:?}: {reason}")]
    OutputName {
        /// The output.
        path: String,
        /// Why git would refuse it.
        reason: &'static str,
    },
    /// A normalized document a reader would refuse (every rule readers apply is checked
    /// before anything is written).
    #[error("the manifest would not read back: {0}")]
    Document(DocumentError),
    /// A raw secret (the details `field`, `kind` and `allow` say where, what it looks like
    /// and the digest an operator allows it by; never the value).
    #[error(
        "{field} looks like a raw secret ({kind}){}; pass it as secret://NAME and give \
         the value to the worker; if it is not a secret, an operator can allow exactly this \
         string on this node: {allow_command}",
        and_more(*.more)
    )]
    SecretDetected {
        /// Where the first one is.
        field: String,
        /// What it looks like.
        kind: &'static str,
        /// How many more were found.
        more: usize,
        /// `blake3:<hex>` of the flagged string ([`secrets::ALLOW_KEY`] takes it).
        allow: String,
        /// The command that allows it.
        allow_command: String,
    },
}

fn and_more(more: usize) -> String {
    if more > 0 {
        format!(" (and {more} more)")
    } else {
        String::new()
    }
}

impl Coded for Error {
    fn code(&self) -> ErrorCode {
        match self {
            Error::CheckoutNotRevision
            | Error::CommandTwice
            | Error::NothingToRun
            | Error::Json(_)
            | Error::Yaml(_)
            | Error::NotAnObject
            | Error::Shape(_)
            | Error::SourceSet
            | Error::EmptyCommand
            | Error::TimeoutNotWhole
            | Error::TimeoutType
            | Error::TimeoutRange
            | Error::MaxAttempts { .. }
            | Error::EnvName { .. }
            | Error::EnvReserved { .. }
            | Error::Label { .. }
            | Error::Path(_)
            | Error::InvalidReference { .. }
            | Error::CheckoutNotCommit { .. }
            | Error::CheckoutType
            | Error::NulByte { .. }
            | Error::Priority { .. }
            | Error::OutputName { .. }
            | Error::Document(_) => ErrorCode::InvalidInput,
            Error::Time(e) => e.code(),
            Error::Encode(e) => e.code(),
            Error::TooLarge { .. } => ErrorCode::PayloadTooLarge,
            Error::SecretDetected { .. } => ErrorCode::SecretDetected,
        }
    }

    fn details(&self) -> serde_json::Map<String, Value> {
        let mut d = serde_json::Map::new();
        match self {
            Error::InvalidReference { field } | Error::NulByte { field } => {
                d.insert("field".into(), field.clone().into());
            }
            Error::SecretDetected {
                field, kind, allow, ..
            } => {
                d.insert("field".into(), field.clone().into());
                d.insert("kind".into(), (*kind).into());
                d.insert("allow".into(), allow.clone().into());
            }
            Error::CheckoutNotRevision
            | Error::CommandTwice
            | Error::NothingToRun
            | Error::Json(_)
            | Error::Yaml(_)
            | Error::NotAnObject
            | Error::Shape(_)
            | Error::SourceSet
            | Error::EmptyCommand
            | Error::TimeoutNotWhole
            | Error::TimeoutType
            | Error::TimeoutRange
            | Error::Time(_)
            | Error::MaxAttempts { .. }
            | Error::EnvName { .. }
            | Error::EnvReserved { .. }
            | Error::Label { .. }
            | Error::Path(_)
            | Error::CheckoutNotCommit { .. }
            | Error::CheckoutType
            | Error::Priority { .. }
            | Error::OutputName { .. }
            | Error::Document(_)
            | Error::Encode(_)
            | Error::TooLarge { .. } => {}
        }
        d
    }
}

/// A path field (`cwd`, an output) that is not a relative path inside the working
/// directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Empty, absolute, or holding a NUL byte.
    #[error("{field} {path:?} must be a relative path")]
    NotRelative {
        /// `cwd` or `output`.
        field: &'static str,
        /// The path.
        path: String,
    },
    /// It climbs out with `..`.
    #[error("{field} {path:?} must not leave the working directory")]
    Escapes {
        /// `cwd` or `output`.
        field: &'static str,
        /// The path.
        path: String,
    },
}

/// What is wrong with a job document read back from a ref (a job commit or a registry
/// version, possibly written by another node): what normalization guarantees and the
/// document lacks. Always `InvalidEnvelope`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// No command, or an empty program name.
    #[error("job document: command is empty")]
    EmptyCommand,
    /// A NUL byte in the argv or the environment.
    #[error("job document: a string of command, args or env holds a NUL byte")]
    NulByte,
    /// A timeout of 0 or over [`MAX_TIMEOUT`].
    #[error("job document: timeout {timeout} is out of range")]
    Timeout {
        /// The timeout in seconds.
        timeout: u64,
    },
    /// `max_attempts` outside 1 ..= [`MAX_ATTEMPTS`].
    #[error("job document: max_attempts {max_attempts} is out of range")]
    MaxAttempts {
        /// What it says.
        max_attempts: u32,
    },
    /// A malformed or reserved env name.
    #[error("job document: env name {name:?} is not allowed")]
    EnvName {
        /// The name.
        name: String,
    },
    /// `cwd` or an output that is not a relative path inside the working directory.
    #[error("job document: {0}")]
    Path(PathError),
    /// A name in `secret_refs` that is not a secret name.
    #[error("job document: secret_refs holds an invalid name")]
    SecretRefName,
    /// A `secret://` string a worker would resolve that `secret_refs` does not list.
    #[error(
        "job document: a secret:// string of command, args or env is not a reference in secret_refs"
    )]
    UnlistedReference,
    /// Lists normalization sorts and dedupes that are not.
    #[error("job document: required_capabilities and secret_refs must be sorted and unique")]
    Unsorted,
}

impl Coded for DocumentError {
    fn code(&self) -> ErrorCode {
        match self {
            DocumentError::EmptyCommand
            | DocumentError::NulByte
            | DocumentError::Timeout { .. }
            | DocumentError::MaxAttempts { .. }
            | DocumentError::EnvName { .. }
            | DocumentError::Path(_)
            | DocumentError::SecretRefName
            | DocumentError::UnlistedReference
            | DocumentError::Unsorted => ErrorCode::InvalidEnvelope,
        }
    }
}

/// The default timeout: one hour.
pub const DEFAULT_TIMEOUT: Dur = Dur::from_secs(3600);
/// The longest timeout: thirty days.
pub const MAX_TIMEOUT: Dur = Dur::from_secs(30 * 86_400);
/// The default number of attempts.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// The most attempts a job may ask for.
pub const MAX_ATTEMPTS: u32 = 100;
/// The largest priority either way: 2^53, the last integer canonical JSON (JCS, whose
/// numbers are doubles) holds exactly.
pub const MAX_PRIORITY: i64 = 1 << 53;
/// The largest normalized manifest, in bytes.
pub const MAX_MANIFEST_BYTES: usize = 1024 * 1024;

/// A manifest as written by a person or a program (every field optional but `command`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// The program and its fixed arguments.
    #[serde(default)]
    pub command: Vec<String>,
    /// More arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Seconds (a number) or a DUR string.
    #[serde(default)]
    pub timeout: Option<Value>,
    /// Environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory (relative).
    #[serde(default)]
    pub cwd: Option<String>,
    /// Data for the job.
    #[serde(default)]
    pub inputs: Option<Value>,
    /// The queue (default `default`).
    #[serde(default)]
    pub queue: Option<Queue>,
    /// Capabilities the job needs.
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    /// Accepted so normalized documents read back; merged with `capabilities`.
    #[serde(default)]
    pub required_capabilities: Vec<Capability>,
    /// Accepted so normalized documents read back; always recomputed.
    #[serde(default)]
    pub secret_refs: Vec<String>,
    /// Higher first (default 0).
    #[serde(default)]
    pub priority: i64,
    /// Attempts (default 3).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// TIME: RFC 3339 or a DUR from now.
    #[serde(default)]
    pub run_after: Option<String>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Files to collect after the run (relative to `cwd`).
    #[serde(default)]
    pub outputs: Vec<String>,
    /// Set by the registry; refused from users.
    #[serde(default)]
    pub source: Option<ManifestSource>,
    /// The sources the job runs in: a revision (`HEAD`, a branch, a tag, a commit id),
    /// `true` for `HEAD`, `false` for none (ADR 0021). Resolved to a commit id by
    /// [`resolve_checkout`] before [`normalize`].
    #[serde(default)]
    pub checkout: Option<Value>,
}

/// What the command line's flags (and `jobs.enqueue`'s params) set on top of a manifest.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// The whole argv (`-- CMD ARG…`): `command: [CMD]`, `args: [ARG…]`.
    pub argv: Option<Vec<String>>,
    /// The queue.
    pub queue: Option<Queue>,
    /// Capabilities added.
    pub caps: Vec<Capability>,
    /// Seconds or a DUR string.
    pub timeout: Option<Value>,
    /// Attempts.
    pub max_attempts: Option<u32>,
    /// Priority.
    pub priority: Option<i64>,
    /// Variables set.
    pub env: BTreeMap<String, String>,
    /// TIME.
    pub run_after: Option<String>,
    /// Working directory.
    pub cwd: Option<String>,
    /// Outputs added.
    pub outputs: Vec<String>,
    /// Labels set.
    pub labels: BTreeMap<String, String>,
    /// Inputs.
    pub inputs: Option<Value>,
    /// `--checkout REV` (a string) or `--no-checkout` (`false`).
    pub checkout: Option<Value>,
}

/// Resolves `input.checkout` to a commit id: a revision through `resolve`, `true` as
/// `HEAD`, `false` as none, and no choice at all as `default` (the CLI passes `HEAD` of a
/// work tree; the daemon and bare repositories pass none).
///
/// # Errors
/// `InvalidInput` for a value that is neither a string nor a boolean; what `resolve`
/// says of a revision that names no commit.
pub fn resolve_checkout(
    input: &mut Input,
    default: Option<Oid>,
    resolve: impl Fn(&str) -> Result<Oid>,
) -> Result<()> {
    let commit = match input.checkout.take() {
        None => default,
        Some(Value::Bool(false)) => None,
        Some(Value::Bool(true)) => Some(resolve("HEAD")?),
        Some(Value::String(rev)) => Some(resolve(&rev)?),
        Some(_) => return Err(Error::CheckoutNotRevision.into()),
    };
    input.checkout = commit.map(|c| Value::String(c.to_string()));
    Ok(())
}

/// Builds a manifest from a file's (or a request's) manifest and flags that override it.
///
/// # Errors
/// `InvalidInput` when both or neither give the command ([`Error::CommandTwice`],
/// [`Error::NothingToRun`]).
pub fn build(manifest: Option<Input>, o: Overrides) -> Result<Input> {
    let mut input = match (manifest, o.argv) {
        (Some(_), Some(_)) => return Err(Error::CommandTwice.into()),
        (None, None) => return Err(Error::NothingToRun.into()),
        (Some(m), None) => m,
        (None, Some(argv)) => {
            let mut it = argv.into_iter();
            let command: Vec<String> = it.next().into_iter().collect();
            Input {
                command,
                args: it.collect(),
                ..Input::default()
            }
        }
    };
    if o.queue.is_some() {
        input.queue = o.queue;
    }
    input.capabilities.extend(o.caps);
    if o.timeout.is_some() {
        input.timeout = o.timeout;
    }
    if o.max_attempts.is_some() {
        input.max_attempts = o.max_attempts;
    }
    if let Some(p) = o.priority {
        input.priority = p;
    }
    input.env.extend(o.env);
    if o.run_after.is_some() {
        input.run_after = o.run_after;
    }
    if o.cwd.is_some() {
        input.cwd = o.cwd;
    }
    input.outputs.extend(o.outputs);
    input.labels.extend(o.labels);
    if o.inputs.is_some() {
        input.inputs = o.inputs;
    }
    if o.checkout.is_some() {
        input.checkout = o.checkout;
    }
    Ok(input)
}

/// Parses manifest text: JSON if it parses as JSON, else YAML.
///
/// # Errors
/// `InvalidInput` naming what does not parse or fit.
pub fn parse_text(text: &str) -> Result<Input> {
    let value: Value = match jcs::parse_str(text) {
        Ok(v) => v,
        Err(json_err) => {
            let trimmed = text.trim_start();
            if trimmed.starts_with('{') || trimmed.starts_with('[') {
                return Err(Error::Json(json_err).into());
            }
            // As strict as JSON: a key given twice is refused, not the last one taken.
            jcs::strict_value(serde_yaml_ng::Deserializer::from_str(text)).map_err(Error::Yaml)?
        }
    };
    from_value(value)
}

/// Reads a manifest from a JSON value.
///
/// # Errors
/// `InvalidInput` for unknown fields and wrong types.
pub fn from_value(value: Value) -> Result<Input> {
    if !value.is_object() {
        return Err(Error::NotAnObject.into());
    }
    Ok(serde_json::from_value(value).map_err(Error::Shape)?)
}

fn check_relative(field: &'static str, p: &str) -> std::result::Result<String, PathError> {
    let path = std::path::Path::new(p);
    if p.is_empty() || path.is_absolute() || p.contains('\0') {
        return Err(PathError::NotRelative {
            field,
            path: p.to_owned(),
        });
    }
    if path
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(PathError::Escapes {
            field,
            path: p.to_owned(),
        });
    }
    Ok(p.trim_end_matches('/').to_owned())
}

/// Refuses a spec about to become a new job whose outputs name a file git reads as its
/// own (what normalization refuses; a stored spec of an earlier release may hold one).
///
/// # Errors
/// `InvalidInput` naming the output.
pub fn check_outputs_written(spec: &JobSpec) -> Result<()> {
    for o in &spec.outputs {
        check_output_name(o).map_err(|reason| Error::OutputName {
            path: o.clone(),
            reason,
        })?;
    }
    Ok(())
}

/// Whether an output's place in the result's tree (`outputs/<path>`) is one git accepts
/// (`git fsck --strict`): not `.git`, `.gitmodules` or `.gitattributes` in any spelling.
fn check_output_name(o: &str) -> std::result::Result<(), &'static str> {
    gatos_store::objects::check_tree_path(o).map_err(|e| e.reason)
}

fn env_name_ok(k: &str) -> bool {
    let mut chars = k.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Normalizes a manifest: defaults, DUR and TIME, derived `required_capabilities` and
/// `secret_refs`, path checks, and no string anywhere that starts with `secret://` without
/// being a valid reference.
///
/// The raw-secret [`scan`] is not done here but where the document is written
/// ([`crate::jobs::Jobs::enqueue_as`], [`crate::manifests::Manifests::put`]): only there is
/// the operator's allowlist (`gatos.secrets.allow`) at hand.
///
/// # Errors
/// `InvalidInput` for a bad field, `PayloadTooLarge` over 1 MiB.
pub fn normalize(input: Input, now: Timestamp) -> Result<JobSpec> {
    if input.source.is_some() {
        return Err(Error::SourceSet.into());
    }
    normalize_inner(input, now, None)
}

pub(crate) fn normalize_inner(
    input: Input,
    now: Timestamp,
    source: Option<ManifestSource>,
) -> Result<JobSpec> {
    if input.command.is_empty() || input.command[0].is_empty() {
        return Err(Error::EmptyCommand.into());
    }
    let timeout = match &input.timeout {
        None => DEFAULT_TIMEOUT,
        Some(Value::Number(n)) => Dur::from_secs(n.as_u64().ok_or(Error::TimeoutNotWhole)?),
        Some(Value::String(s)) => Dur::parse(s).map_err(Error::Time)?,
        Some(_) => return Err(Error::TimeoutType.into()),
    };
    if timeout < Dur::from_secs(1) || timeout > MAX_TIMEOUT {
        return Err(Error::TimeoutRange.into());
    }
    if input.priority.unsigned_abs() > MAX_PRIORITY.unsigned_abs() {
        return Err(Error::Priority {
            priority: input.priority,
        }
        .into());
    }
    let max_attempts = input.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
    if !(1..=MAX_ATTEMPTS).contains(&max_attempts) {
        return Err(Error::MaxAttempts { max_attempts }.into());
    }
    for k in input.env.keys() {
        if !env_name_ok(k) {
            return Err(Error::EnvName { name: k.clone() }.into());
        }
        if k.starts_with("GATOS_") {
            return Err(Error::EnvReserved { name: k.clone() }.into());
        }
    }
    for (k, v) in &input.labels {
        if k.is_empty() || k.len() > 64 || v.len() > 1024 {
            return Err(Error::Label { name: k.clone() }.into());
        }
    }
    let cwd = match &input.cwd {
        None => ".".to_owned(),
        Some(c) if c == "." => ".".to_owned(),
        Some(c) => check_relative("cwd", c).map_err(Error::Path)?,
    };
    let mut outputs = Vec::new();
    for o in &input.outputs {
        let o = check_relative("output", o).map_err(Error::Path)?;
        check_output_name(&o).map_err(|reason| Error::OutputName {
            path: o.clone(),
            reason,
        })?;
        if !outputs.contains(&o) {
            outputs.push(o);
        }
    }
    if let Some((field, _)) = argv_fields(&input.command, &input.args)
        .into_iter()
        .chain(
            input
                .env
                .iter()
                .map(|(k, v)| (format!("env.{k}"), v.as_str())),
        )
        .find(|(_, s)| s.contains('\0'))
    {
        return Err(Error::NulByte { field }.into());
    }
    let run_after = match &input.run_after {
        None => None,
        Some(t) => Some(gatos_types::time::parse_time(t, now).map_err(Error::Time)?),
    };
    let mut caps: Vec<Capability> = input
        .capabilities
        .iter()
        .chain(&input.required_capabilities)
        .cloned()
        .collect();
    caps.sort();
    caps.dedup();
    // Secret references: whole strings `secret://NAME` in command, args and env values.
    let mut secret_refs: Vec<String> = Vec::new();
    for (field, s) in argv_fields(&input.command, &input.args).into_iter().chain(
        input
            .env
            .iter()
            .map(|(k, v)| (format!("env.{k}"), v.as_str())),
    ) {
        if let Some(name) = secrets::secret_ref(s) {
            if !secrets::is_valid_secret_name(name) {
                return Err(Error::InvalidReference { field }.into());
            }
            if !secret_refs.iter().any(|r| r == name) {
                secret_refs.push(name.to_owned());
            }
        }
    }
    secret_refs.sort();
    let checkout = match &input.checkout {
        None | Some(Value::Bool(false)) => None,
        Some(Value::String(s)) => Some(
            s.parse::<Oid>()
                .map_err(|_| Error::CheckoutNotCommit { value: s.clone() })?,
        ),
        Some(_) => return Err(Error::CheckoutType.into()),
    };
    let spec = JobSpec {
        command: input.command,
        args: input.args,
        timeout: timeout.as_millis().div_ceil(1000),
        env: input.env,
        cwd,
        inputs: input
            .inputs
            .unwrap_or_else(|| Value::Object(serde_json::Map::new())),
        queue: input.queue.unwrap_or_default(),
        required_capabilities: caps,
        secret_refs,
        priority: input.priority,
        max_attempts,
        run_after,
        labels: input.labels,
        outputs,
        source,
        checkout,
    };
    check_references(&spec)?;
    check_document(&spec).map_err(Error::Document)?;
    let size = jcs::to_vec_exact(&spec).map_err(Error::Encode)?.len();
    if size > MAX_MANIFEST_BYTES {
        return Err(Error::TooLarge { size }.into());
    }
    Ok(spec)
}

/// Checks that a normalized manifest read back from a ref (a job commit or a registry
/// version, possibly written by another node) has what normalization guarantees, so that
/// no reader or worker meets an empty command, an absolute or escaping path, a reserved or
/// malformed variable name, or limits out of range.
///
/// # Errors
/// `InvalidEnvelope` naming the first field that is wrong.
pub fn check_spec(spec: &JobSpec) -> Result<()> {
    Ok(check_document(spec)?)
}

fn check_document(spec: &JobSpec) -> std::result::Result<(), DocumentError> {
    if spec.command.is_empty() || spec.command[0].is_empty() {
        return Err(DocumentError::EmptyCommand);
    }
    if spec
        .command
        .iter()
        .chain(&spec.args)
        .chain(spec.env.values())
        .any(|s| s.contains('\0'))
    {
        return Err(DocumentError::NulByte);
    }
    if spec.timeout == 0 || spec.timeout > MAX_TIMEOUT.as_millis() / 1000 {
        return Err(DocumentError::Timeout {
            timeout: spec.timeout,
        });
    }
    if !(1..=MAX_ATTEMPTS).contains(&spec.max_attempts) {
        return Err(DocumentError::MaxAttempts {
            max_attempts: spec.max_attempts,
        });
    }
    for k in spec.env.keys() {
        if !env_name_ok(k) || k.starts_with("GATOS_") {
            return Err(DocumentError::EnvName { name: k.clone() });
        }
    }
    if spec.cwd != "." {
        check_relative("cwd", &spec.cwd).map_err(DocumentError::Path)?;
    }
    // The output names git reads as its own are refused where a manifest is written or a
    // job is made, not here: a job an earlier release stored with one still reads, runs
    // and ends (the worker leaves such an output out of the result and logs it).
    for o in &spec.outputs {
        check_relative("output", o).map_err(DocumentError::Path)?;
    }

    if spec
        .secret_refs
        .iter()
        .any(|r| !secrets::is_valid_secret_name(r))
    {
        return Err(DocumentError::SecretRefName);
    }
    // What a worker resolves (whole `secret://` strings of command, args and env values)
    // is what normalization listed: a valid reference named in secret_refs.
    if spec
        .command
        .iter()
        .chain(&spec.args)
        .chain(spec.env.values())
        .filter_map(|s| secrets::secret_ref(s))
        .any(|name| {
            !secrets::is_valid_secret_name(name) || !spec.secret_refs.iter().any(|r| r == name)
        })
    {
        return Err(DocumentError::UnlistedReference);
    }
    if spec.required_capabilities.windows(2).any(|w| w[0] >= w[1])
        || spec.secret_refs.windows(2).any(|w| w[0] >= w[1])
    {
        return Err(DocumentError::Unsorted);
    }
    Ok(())
}

/// The argv's strings with their field names (`command[i]`, `args[j]`), in order.
fn argv_fields<'a>(command: &'a [String], args: &'a [String]) -> Vec<(String, &'a str)> {
    command
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("command[{i}]"), s.as_str()))
        .chain(
            args.iter()
                .enumerate()
                .map(|(i, s)| (format!("args[{i}]"), s.as_str())),
        )
        .collect()
}

/// Refuses any string of a manifest — keys included — that starts with `secret://` but is
/// not a valid reference: it would be neither resolved nor scanned as a reference.
///
/// # Errors
/// `InvalidInput` naming the first such field (never its text).
pub fn check_references(spec: &JobSpec) -> Result<()> {
    let mut bad_fields: Vec<String> = Vec::new();
    for (field, s) in argv_fields(&spec.command, &spec.args) {
        if secrets::invalid_secret_ref(s) {
            bad_fields.push(field);
        }
    }
    for (what, map) in [("env", &spec.env), ("labels", &spec.labels)] {
        for (i, (k, v)) in map.iter().enumerate() {
            if secrets::invalid_secret_ref(k) {
                bad_fields.push(format!("{what} (key #{i})"));
            } else if secrets::invalid_secret_ref(v) {
                bad_fields.push(format!("{what}.{k}"));
            }
        }
    }
    if secrets::invalid_secret_ref(&spec.cwd) {
        bad_fields.push("cwd".into());
    }
    for (i, o) in spec.outputs.iter().enumerate() {
        if secrets::invalid_secret_ref(o) {
            bad_fields.push(format!("outputs[{i}]"));
        }
    }
    secrets::invalid_refs_in_json("inputs", &spec.inputs, &mut bad_fields);
    match bad_fields.into_iter().next() {
        None => Ok(()),
        Some(field) => Err(Error::InvalidReference { field }.into()),
    }
}

/// Scans every string of a normalized manifest — values, env and label keys, inputs
/// member names, and adjacent arguments (`--token VALUE`) — for raw secrets; what the
/// operator allowed passes.
///
/// # Errors
/// `InvalidInput` for a `secret://` string that is not a valid reference;
/// `SecretDetected` naming the first field found and its kind (and how many more there
/// are), with the `git config` line that would allow it — never the value.
pub fn scan(spec: &JobSpec, allow: &secrets::Allowlist) -> Result<()> {
    check_references(spec)?;
    let mut found = secrets::scan_argv(&argv_fields(&spec.command, &spec.args));
    for (what, map) in [("env", &spec.env), ("labels", &spec.labels)] {
        for (i, (k, v)) in map.iter().enumerate() {
            match secrets::scan_key(what, i, k) {
                // A key that is a secret is never printed, not even as its value's field.
                Some(f) => {
                    found.push(f);
                    found.extend(secrets::scan_value(&format!("{what} (key #{i})"), None, v));
                }
                None => found.extend(secrets::scan_value(&format!("{what}.{k}"), Some(k), v)),
            }
        }
    }
    found.extend(secrets::scan_value("cwd", None, &spec.cwd));
    for (i, o) in spec.outputs.iter().enumerate() {
        found.extend(secrets::scan_value(&format!("outputs[{i}]"), None, o));
    }
    secrets::scan_json("inputs", None, &spec.inputs, &mut found);
    found.retain(|f| !allow.allows(f));
    match found.first() {
        None => Ok(()),
        Some(f) => Err(Error::SecretDetected {
            field: f.field.clone(),
            kind: f.kind,
            more: found.len() - 1,
            allow: f.digest.clone(),
            allow_command: f.allow_command(),
        }
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::from_millis(1_700_000_000_000)
    }

    #[test]
    fn json_and_yaml_normalize_alike() -> Result<()> {
        let json = r#"{"command":["make"],"args":["test"],"timeout":"PT30S","env":{"TOKEN":"secret://CI_TOKEN"},"capabilities":["linux","gpu","linux"]}"#;
        let yaml = "command: [make]\nargs: [test]\ntimeout: 30s\nenv:\n  TOKEN: secret://CI_TOKEN\ncapabilities: [gpu, linux]\n";
        let a = normalize(parse_text(json)?, now())?;
        let b = normalize(parse_text(yaml)?, now())?;
        assert_eq!(a, b);
        assert_eq!(a.timeout, 30);
        assert_eq!(a.secret_refs, vec!["CI_TOKEN"]);
        assert_eq!(
            a.required_capabilities
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>(),
            vec!["gpu", "linux"]
        );
        assert_eq!(a.queue.as_str(), "default");
        assert_eq!(a.max_attempts, 3);
        // A normalized document reads back to itself.
        let again = normalize(
            from_value(serde_json::to_value(&a).map_err(Error::Shape)?)?,
            now(),
        )?;
        assert_eq!(again, a);
        Ok(())
    }

    #[test]
    fn bad_manifests_are_refused_with_the_field() {
        for (text, want) in [
            (r#"{"args":["x"]}"#, "command"),
            (r#"{"command":["x"],"timeout":"soon"}"#, "duration"),
            (r#"{"command":["x"],"cwd":"../etc"}"#, "cwd"),
            (r#"{"command":["x"],"env":{"GATOS_JOB":"1"}}"#, "reserved"),
            (r#"{"command":["x"],"bogus":1}"#, "bogus"),
            (r#"{"command":["x"],"max_attempts":0}"#, "max_attempts"),
            (
                r#"{"command":["x"],"env":{"T":"secret://bad name"}}"#,
                "env.T starts with secret:// but is not a reference",
            ),
        ] {
            let e = parse_text(text)
                .and_then(|i| normalize(i, now()))
                .expect_err(text);
            assert!(e.to_string().contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn refusals_are_typed_with_their_code_and_details() {
        let typed = |e: &crate::Error| format!("{:?}", e.inner().downcast_ref::<Error>());
        let e = parse_text(r#"{"command":["x"],"env":{"T":"secret://bad name"}}"#)
            .and_then(|i| normalize(i, now()))
            .expect_err("an invalid reference");
        assert_eq!(e.code(), ErrorCode::InvalidInput);
        assert!(
            matches!(
                e.inner().downcast_ref::<Error>(),
                Some(Error::InvalidReference { field }) if field == "env.T"
            ),
            "{}",
            typed(&e)
        );
        assert_eq!(e.details().get("field"), Some(&Value::from("env.T")));

        let e = refused(r#"{"command":["gh","ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"]}"#);
        assert_eq!(e.code(), ErrorCode::SecretDetected);
        assert!(
            matches!(
                e.inner().downcast_ref::<Error>(),
                Some(Error::SecretDetected { field, more: 0, .. }) if field == "command[1]"
            ),
            "{}",
            typed(&e)
        );
        assert_eq!(e.details().get("field"), Some(&Value::from("command[1]")));
        assert!(e.details().contains_key("kind") && e.details().contains_key("allow"));

        let big = "x".repeat(MAX_MANIFEST_BYTES);
        let e = normalize(
            from_value(serde_json::json!({"command": ["x"], "inputs": {"big": big}}))
                .expect("a manifest"),
            now(),
        )
        .expect_err("too large");
        assert_eq!(e.code(), ErrorCode::PayloadTooLarge);

        let e = parse_text(r#"{"command":["x"],"timeout":"soon"}"#)
            .and_then(|i| normalize(i, now()))
            .expect_err("a bad duration");
        assert!(matches!(
            e.inner().downcast_ref::<Error>(),
            Some(Error::Time(_))
        ));
        assert_eq!(e.code(), ErrorCode::InvalidInput);

        for (manifest, want) in [
            (None, Error::NothingToRun),
            (Some(Input::default()), Error::CommandTwice),
        ] {
            let argv = manifest.is_some().then(|| vec!["x".to_owned()]);
            let o = Overrides {
                argv,
                ..Overrides::default()
            };
            let e = build(manifest, o).expect_err("no command, or two");
            assert_eq!(e.to_string(), want.to_string());
            assert!(!e.to_string().contains("--"), "{e}");
        }
    }

    #[test]
    fn a_stored_document_that_breaks_a_rule_is_a_typed_invalid_envelope() -> Result<()> {
        let mut spec = normalize(parse_text(r#"{"command":["x"]}"#)?, now())?;
        spec.cwd = "../up".into();
        let e = check_spec(&spec).expect_err("an escaping cwd");
        assert_eq!(e.code(), ErrorCode::InvalidEnvelope);
        assert_eq!(
            e.to_string(),
            "job document: cwd \"../up\" must not leave the working directory"
        );
        assert!(matches!(
            e.inner().downcast_ref::<DocumentError>(),
            Some(DocumentError::Path(PathError::Escapes { field: "cwd", .. }))
        ));
        Ok(())
    }

    fn scanned(text: &str, allow: &secrets::Allowlist) -> Result<()> {
        scan(&normalize(parse_text(text)?, now())?, allow)
    }

    fn refused(text: &str) -> crate::Error {
        scanned(text, &secrets::Allowlist::default()).expect_err(text)
    }

    #[test]
    fn raw_secrets_are_refused_naming_the_field_never_the_value() {
        let text = r#"{"command":["deploy"],"env":{"GITHUB_TOKEN":"ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"}}"#;
        let e = refused(text);
        assert_eq!(e.code(), ErrorCode::SecretDetected);
        assert!(e.to_string().contains("env.GITHUB_TOKEN"));
        assert!(!e.to_string().contains("ghp_"));
        let e = refused(r#"{"command":["x"],"inputs":{"db":{"password":"N9v#qL2m!xP7zR4tYu"}}}"#);
        assert!(e.to_string().contains("inputs.db.password"));
    }

    #[test]
    fn a_secret_flag_and_its_value_in_two_arguments_are_refused_at_the_value() {
        let e = refused(r#"{"command":["cli","--token"],"args":["q8Zr2LmP0xVt7WcN4bKs"]}"#);
        assert_eq!(e.code(), ErrorCode::SecretDetected);
        assert!(e.to_string().contains("args[0]"), "{e}");
        let e = refused(r#"{"command":["psql"],"args":["--password","hunter22"]}"#);
        assert!(e.to_string().contains("args[1]"), "{e}");
        // Files, references and expansions pass.
        for ok in [
            r#"{"command":["cli","--token-file","/run/secrets/token"]}"#,
            r#"{"command":["cli","--token","secret://CI_TOKEN"]}"#,
            r#"{"command":["sh","-c","cli --token \"$CI_TOKEN\""]}"#,
            r#"{"command":["mkdir","-p","q8Zr2LmP0xVt7WcN4bKs"]}"#,
        ] {
            scanned(ok, &secrets::Allowlist::default()).expect(ok);
        }
    }

    #[test]
    fn secrets_in_env_and_label_keys_are_refused_without_echoing_the_key() {
        let key = "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789";
        for text in [
            format!(r#"{{"command":["x"],"env":{{"A":"1","{key}":"1"}}}}"#),
            format!(r#"{{"command":["x"],"labels":{{"{key}":"v"}}}}"#),
            format!(r#"{{"command":["x"],"inputs":{{"{key}":"v"}}}}"#),
        ] {
            let e = refused(&text);
            assert_eq!(e.code(), ErrorCode::SecretDetected, "{text}");
            assert!(e.to_string().contains("(key #"), "{e}");
            assert!(!e.to_string().contains("ghp_"), "{e}");
        }
    }

    #[test]
    fn a_secret_url_string_that_is_no_reference_is_invalid_anywhere() {
        for (text, field) in [
            (r#"{"command":["x","secret://bad name"]}"#, "command[1]"),
            (r#"{"command":["x"],"args":["secret://"]}"#, "args[0]"),
            (
                r#"{"command":["x"],"labels":{"l":"secret://a/b"}}"#,
                "labels.l",
            ),
            (
                r#"{"command":["x"],"labels":{"secret://x y":"v"}}"#,
                "labels (key #0)",
            ),
            (
                r#"{"command":["x"],"inputs":{"a":["secret://-x"]}}"#,
                "inputs.a[0]",
            ),
            (r#"{"command":["x"],"cwd":"secret://x:y"}"#, "cwd"),
        ] {
            let e = parse_text(text)
                .and_then(|i| normalize(i, now()))
                .expect_err(text);
            assert_eq!(e.code(), ErrorCode::InvalidInput, "{text}");
            assert!(e.to_string().starts_with(field), "{text}: {e}");
        }
        // A valid reference anywhere is fine (only command, args and env values resolve).
        scanned(
            r#"{"command":["x"],"labels":{"l":"secret://OK"},"inputs":{"a":"secret://OK"}}"#,
            &secrets::Allowlist::default(),
        )
        .expect("valid references");
    }

    #[test]
    fn the_operator_allowlist_lets_exactly_the_flagged_string_through() -> Result<()> {
        let text = r#"{"command":["curl","postgres://admin:hunter2@db/app"]}"#;
        let e = refused(text);
        assert_eq!(e.code(), ErrorCode::SecretDetected);
        let digest = secrets::digest_of("postgres://admin:hunter2@db/app");
        let msg = e.to_string();
        assert!(
            msg.contains("command[1]") && msg.contains("credentials in a URL"),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("git config --add gatos.secrets.allow {digest}")),
            "{msg}"
        );
        assert!(!msg.contains("hunter2"), "{msg}");
        let allow =
            secrets::Allowlist::from_values([digest.to_uppercase().replace("BLAKE3", "blake3")]);
        scanned(text, &allow)?;
        // Another string is still refused.
        let other = r#"{"command":["curl","postgres://admin:hunter3@db/app"]}"#;
        assert!(scanned(other, &allow).is_err());
        Ok(())
    }

    #[test]
    fn the_sync_check_does_not_scan_so_honest_old_jobs_stay_syncable() -> Result<()> {
        // A job another node wrote (maybe under its allowlist, maybe under an older
        // scanner) is checked for structure only; scanning is the writer's job.
        let spec = normalize(
            parse_text(r#"{"command":["curl","https://u:pw-long-enough@example.com"]}"#)?,
            now(),
        )?;
        check_spec(&spec)?;
        // But what a worker would resolve must be a listed, valid reference.
        let mut forged = spec.clone();
        forged.args = vec!["secret://NOT_LISTED".into()];
        assert_eq!(
            check_spec(&forged).map_err(|e| e.code()),
            Err(ErrorCode::InvalidEnvelope)
        );
        Ok(())
    }
}
