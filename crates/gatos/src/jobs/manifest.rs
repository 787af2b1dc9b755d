//! Manifests: JSON or YAML in, a normalized [`JobSpec`] out (DESIGN §4).

use std::collections::BTreeMap;

use gatos_types::jobs::{JobSpec, ManifestSource};
use gatos_types::{Capability, Dur, ErrorCode, Oid, Queue, Timestamp, jcs};
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
        Some(_) => {
            return Err(bad(
                "checkout is a revision (\"HEAD\", a branch, a tag, a commit id) or false",
            ));
        }
    };
    input.checkout = commit.map(|c| Value::String(c.to_string()));
    Ok(())
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
    if o.checkout.is_some() {
        input.checkout = o.checkout;
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
    for (field, s) in argv_fields(&input.command, &input.args).into_iter().chain(
        input
            .env
            .iter()
            .map(|(k, v)| (format!("env.{k}"), v.as_str())),
    ) {
        if let Some(name) = secrets::secret_ref(s) {
            if !secrets::is_valid_secret_name(name) {
                return Err(invalid_reference(&field));
            }
            if !secret_refs.iter().any(|r| r == name) {
                secret_refs.push(name.to_owned());
            }
        }
    }
    secret_refs.sort();
    let checkout = match &input.checkout {
        None | Some(Value::Bool(false)) => None,
        Some(Value::String(s)) => Some(s.parse::<Oid>().map_err(|_| {
            bad(format!(
                "checkout {s:?} is not a commit id; name a revision where the repository can resolve it (git gatos jobs enqueue --checkout REV)"
            ))
        })?),
        Some(_) => return Err(bad("checkout is a commit id or false")),
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
        return Err(wrong(
            "a secret:// string of command, args or env is not a reference in secret_refs".into(),
        ));
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

fn invalid_reference(field: &str) -> Error {
    bad(format!(
        "{field} starts with secret:// but is not a reference: write secret://NAME, NAME a \
         variable name (letters, digits, _), and nothing else in the string"
    ))
    .with_detail("field", field.to_owned())
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
    match bad_fields.first() {
        None => Ok(()),
        Some(f) => Err(invalid_reference(f)),
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
        Some(f) => {
            let more = if found.len() > 1 {
                format!(" (and {} more)", found.len() - 1)
            } else {
                String::new()
            };
            Err(Error::new(
                ErrorCode::SecretDetected,
                format!(
                    "{} looks like a raw secret ({}){more}; pass it as secret://NAME and give \
                     the value to the worker; if it is not a secret, an operator can allow \
                     exactly this string on this node: {}",
                    f.field,
                    f.kind,
                    f.allow_command()
                ),
            )
            .with_detail("field", f.field.clone())
            .with_detail("kind", f.kind.to_owned())
            .with_detail("allow", f.digest.clone()))
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
                "env.T starts with secret:// but is not a reference",
            ),
        ] {
            let e = parse_text(text)
                .and_then(|i| normalize(i, now()))
                .expect_err(text);
            assert!(e.to_string().contains(want), "{text}: {e}");
        }
    }

    fn scanned(text: &str, allow: &secrets::Allowlist) -> Result<()> {
        scan(&normalize(parse_text(text)?, now())?, allow)
    }

    fn refused(text: &str) -> Error {
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
