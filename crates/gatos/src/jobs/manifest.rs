//! Manifests: JSON or YAML in, a normalized [`JobSpec`] out (DESIGN §4).

use std::collections::BTreeMap;

use gatos_types::jobs::{JobSpec, ManifestSource};
use gatos_types::{Capability, Dur, ErrorCode, Queue, Timestamp, jcs};
use serde::Deserialize;
use serde_json::Value;

use super::secrets;
use crate::error::{Error, Result};

/// The default timeout: one hour.
pub const DEFAULT_TIMEOUT: Dur = Dur::from_secs(3600);
/// The longest timeout: thirty days.
pub const MAX_TIMEOUT: Dur = Dur::from_secs(30 * 86_400);
/// The default number of attempts.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// The most attempts a job may ask for.
pub const MAX_ATTEMPTS: u32 = 100;
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
}

/// Builds a manifest from a file's (or a request's) manifest and flags that override it.
///
/// # Errors
/// `InvalidInput` when both or neither give the command.
pub fn build(manifest: Option<Input>, o: Overrides) -> Result<Input> {
    let mut input = match (manifest, o.argv) {
        (Some(_), Some(_)) => {
            return Err(bad(
                "give the command either in the manifest or as the command line, not both",
            ));
        }
        (None, None) => {
            return Err(bad(
                "nothing to run: give a command (`-- CMD [ARG...]`) or a manifest",
            ));
        }
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
    Ok(input)
}

fn bad(msg: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidInput, msg)
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
                return Err(bad(format!("manifest: {json_err}")));
            }
            serde_yaml_ng::from_str::<Value>(text)
                .map_err(|e| bad(format!("manifest (YAML): {e}")))?
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
        return Err(bad("a manifest must be an object"));
    }
    serde_json::from_value(value).map_err(|e| bad(format!("manifest: {e}")))
}

fn check_relative(what: &str, p: &str) -> Result<String> {
    let path = std::path::Path::new(p);
    if p.is_empty() || path.is_absolute() || p.contains('\0') {
        return Err(bad(format!("{what} {p:?} must be a relative path")));
    }
    if path
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(bad(format!(
            "{what} {p:?} must not leave the working directory"
        )));
    }
    Ok(p.trim_end_matches('/').to_owned())
}

fn env_name_ok(k: &str) -> bool {
    let mut chars = k.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Normalizes a manifest: defaults, DUR and TIME, derived `required_capabilities` and
/// `secret_refs`, path checks; then scans every string for raw secrets.
///
/// # Errors
/// `InvalidInput` for a bad field, `SecretDetected` naming the field of a raw secret,
/// `PayloadTooLarge` over 1 MiB.
pub fn normalize(input: Input, now: Timestamp) -> Result<JobSpec> {
    if input.source.is_some() {
        return Err(bad(
            "source is set by the manifest registry, not by a manifest",
        ));
    }
    normalize_inner(input, now, None)
}

pub(crate) fn normalize_inner(
    input: Input,
    now: Timestamp,
    source: Option<ManifestSource>,
) -> Result<JobSpec> {
    if input.command.is_empty() || input.command[0].is_empty() {
        return Err(bad(
            "command must be a non-empty array, e.g. [\"make\", \"test\"]",
        ));
    }
    let timeout = match &input.timeout {
        None => DEFAULT_TIMEOUT,
        Some(Value::Number(n)) => Dur::from_secs(
            n.as_u64()
                .ok_or_else(|| bad("timeout must be whole seconds or a duration"))?,
        ),
        Some(Value::String(s)) => Dur::parse(s)?,
        Some(_) => {
            return Err(bad(
                "timeout must be seconds or a duration like 30s, 5m, PT30S",
            ));
        }
    };
    if timeout < Dur::from_secs(1) || timeout > MAX_TIMEOUT {
        return Err(bad("timeout must be between 1 second and 30 days"));
    }
    let max_attempts = input.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
    if !(1..=MAX_ATTEMPTS).contains(&max_attempts) {
        return Err(bad(format!(
            "max_attempts must be between 1 and {MAX_ATTEMPTS}"
        )));
    }
    for k in input.env.keys() {
        if !env_name_ok(k) {
            return Err(bad(format!("env name {k:?} is not a variable name")));
        }
        if k.starts_with("GATOS_") {
            return Err(bad(format!("env name {k:?} is reserved (GATOS_*)")));
        }
    }
    for (k, v) in &input.labels {
        if k.is_empty() || k.len() > 64 || v.len() > 1024 {
            return Err(bad(format!(
                "label {k:?}: names are 1-64 bytes, values at most 1024"
            )));
        }
    }
    let cwd = match &input.cwd {
        None => ".".to_owned(),
        Some(c) if c == "." => ".".to_owned(),
        Some(c) => check_relative("cwd", c)?,
    };
    let mut outputs = Vec::new();
    for o in &input.outputs {
        let o = check_relative("output", o)?;
        if !outputs.contains(&o) {
            outputs.push(o);
        }
    }
    let run_after = match &input.run_after {
        None => None,
        Some(t) => Some(gatos_types::time::parse_time(t, now)?),
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
    let strings = input
        .command
        .iter()
        .chain(&input.args)
        .chain(input.env.values());
    for s in strings {
        if let Some(name) = secrets::secret_ref(s) {
            if !secrets::is_valid_secret_name(name) {
                return Err(bad(format!(
                    "secret reference {s:?} must be secret://NAME with NAME a variable name"
                )));
            }
            if !secret_refs.iter().any(|r| r == name) {
                secret_refs.push(name.to_owned());
            }
        }
    }
    secret_refs.sort();
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
    };
    scan(&spec)?;
    let size = jcs::to_vec_of(&spec)?.len();
    if size > MAX_MANIFEST_BYTES {
        return Err(Error::new(
            ErrorCode::PayloadTooLarge,
            format!("manifest of {size} bytes is over the 1 MiB limit"),
        ));
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
    let wrong =
        |why: String| Error::new(ErrorCode::InvalidEnvelope, format!("job document: {why}"));
    if spec.command.is_empty() || spec.command[0].is_empty() {
        return Err(wrong("command is empty".into()));
    }
    if spec
        .command
        .iter()
        .chain(&spec.args)
        .chain(spec.env.values())
        .any(|s| s.contains('\0'))
    {
        return Err(wrong(
            "a string of command, args or env holds a NUL byte".into(),
        ));
    }
    if spec.timeout == 0 || spec.timeout > MAX_TIMEOUT.as_millis() / 1000 {
        return Err(wrong(format!("timeout {} is out of range", spec.timeout)));
    }
    if !(1..=MAX_ATTEMPTS).contains(&spec.max_attempts) {
        return Err(wrong(format!(
            "max_attempts {} is out of range",
            spec.max_attempts
        )));
    }
    for k in spec.env.keys() {
        if !env_name_ok(k) || k.starts_with("GATOS_") {
            return Err(wrong(format!("env name {k:?} is not allowed")));
        }
    }
    if spec.cwd != "." {
        check_relative("cwd", &spec.cwd).map_err(|e| wrong(e.to_string()))?;
    }
    for o in &spec.outputs {
        check_relative("output", o).map_err(|e| wrong(e.to_string()))?;
    }
    if spec
        .secret_refs
        .iter()
        .any(|r| !secrets::is_valid_secret_name(r))
    {
        return Err(wrong("secret_refs holds an invalid name".into()));
    }
    if spec.required_capabilities.windows(2).any(|w| w[0] >= w[1])
        || spec.secret_refs.windows(2).any(|w| w[0] >= w[1])
    {
        return Err(wrong(
            "required_capabilities and secret_refs must be sorted and unique".into(),
        ));
    }
    Ok(())
}

/// Scans every string of a normalized manifest for raw secrets.
///
/// # Errors
/// `SecretDetected` naming the first field found (and how many more there are).
pub fn scan(spec: &JobSpec) -> Result<()> {
    let mut found = Vec::new();
    for (i, s) in spec.command.iter().enumerate() {
        found.extend(secrets::scan_value(&format!("command[{i}]"), None, s));
    }
    for (i, s) in spec.args.iter().enumerate() {
        found.extend(secrets::scan_value(&format!("args[{i}]"), None, s));
    }
    for (k, v) in &spec.env {
        found.extend(secrets::scan_value(&format!("env.{k}"), Some(k), v));
    }
    found.extend(secrets::scan_value("cwd", None, &spec.cwd));
    for (k, v) in &spec.labels {
        found.extend(secrets::scan_value(&format!("labels.{k}"), Some(k), v));
    }
    for (i, o) in spec.outputs.iter().enumerate() {
        found.extend(secrets::scan_value(&format!("outputs[{i}]"), None, o));
    }
    secrets::scan_json("inputs", None, &spec.inputs, &mut found);
    match found.first() {
        None => Ok(()),
        Some(f) => {
            let more = if found.len() > 1 {
                format!(" (and {} more)", found.len() - 1)
            } else {
                String::new()
            };
            Err(Error::new(
                ErrorCode::SecretDetected,
                format!("{} looks like a raw secret ({}){more}; pass it as secret://NAME and give the value to the worker", f.field, f.kind),
            )
            .with_detail("field", f.field.clone()))
        }
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
            from_value(serde_json::to_value(&a).map_err(|e| bad(e.to_string()))?)?,
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
                "secret reference",
            ),
        ] {
            let e = parse_text(text)
                .and_then(|i| normalize(i, now()))
                .expect_err(text);
            assert!(e.to_string().contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn raw_secrets_are_refused_naming_the_field_never_the_value() {
        let text = r#"{"command":["deploy"],"env":{"GITHUB_TOKEN":"ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"}}"#;
        let e = normalize(parse_text(text).expect("parses"), now()).expect_err("a secret");
        assert_eq!(e.code(), ErrorCode::SecretDetected);
        assert!(e.to_string().contains("env.GITHUB_TOKEN"));
        assert!(!e.to_string().contains("ghp_"));
        let text = r#"{"command":["x"],"inputs":{"db":{"password":"N9v#qL2m!xP7zR4tYu"}}}"#;
        let e = normalize(parse_text(text).expect("parses"), now()).expect_err("a secret");
        assert!(e.to_string().contains("inputs.db.password"));
    }
}
