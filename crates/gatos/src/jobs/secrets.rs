//! The raw-secret scanner run on every string of a manifest (DESIGN §4).
//!
//! It refuses:
//! - known token shapes anywhere (PEM private keys, AWS access keys, GitHub, GitLab and
//!   Slack tokens, JWTs, AWS secret keys next to an `aws` hint);
//! - credentials in a URL of any scheme (`postgres://admin:pw@db`): a password part that is
//!   written out, not a `$VAR` or `${VAR}` for a shell to expand;
//! - credential headers: `Authorization:` / `Proxy-Authorization:` with a written-out value
//!   (`Bearer …`, `Basic …`, `token …`), and API-key style headers (`X-Api-Key:`,
//!   `X-Auth-Token:`, `Private-Token:`, `X-…-Key/Token/Secret:`) with a random-looking value;
//! - a secret-named flag followed by its value, as one argument (`--token=…`) or as two
//!   adjacent arguments (`--token …`, `--password …`, `--api-key …`, `--secret …`,
//!   `--client-secret …`, `--access-token …`); `--token-file PATH` and the like name files,
//!   not secrets, and `-p` is a port or `mkdir -p` far more often than a password, so it is
//!   not a secret flag;
//! - high-entropy values under secret-like names, where the word is anywhere in the name
//!   (`GITHUB_TOKEN`, `TOKEN_GITHUB`, `AUTH`, `dbPassword`, `API_KEY`, `x.secret.y`), in
//!   env, labels, inputs members and `NAME=VALUE` text inside any string — but not names
//!   that end in a word saying the value is a pointer to a secret (`…_FILE`, `…_PATH`,
//!   `…_URL`, `…_ID`, `…_NAME`, …);
//! - the same in env and label *keys* and inputs member names (a key that is itself a
//!   token), reported by position so the error never echoes it.
//!
//! ULIDs, `blake3:` digests and valid `secret://NAME` references pass; a string that starts
//! with `secret://` but names no valid secret is not a reference, and
//! [`invalid_secret_ref`] says so (normalization refuses it as `InvalidInput`).
//!
//! A finding names the field and the kind of secret, never the value, and carries
//! `blake3:` of the flagged string: an operator who judges it a false positive allows
//! exactly that string on this node with `git config --add gatos.secrets.allow
//! blake3:<hex>` ([`Allowlist`]). A manifest cannot allow anything itself.

use std::sync::LazyLock;

use regex::Regex;

/// The git config key (multi-valued, local repository) of strings allowed past the scanner.
pub const ALLOW_KEY: &str = "gatos.secrets.allow";

/// A raw secret found in a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Where: `env.GITHUB_TOKEN`, `args[2]`, `inputs.db.password`, `env (key #3)`, …
    pub field: String,
    /// What it looks like.
    pub kind: &'static str,
    /// `blake3:<hex>` of the whole flagged string: what [`ALLOW_KEY`] takes to allow it.
    pub digest: String,
}

impl Finding {
    fn new(field: &str, kind: &'static str, flagged: &str) -> Finding {
        Finding {
            field: field.to_owned(),
            kind,
            digest: digest_of(flagged),
        }
    }

    /// The command an operator runs to allow this string on this node.
    pub fn allow_command(&self) -> String {
        format!("git config --add {ALLOW_KEY} {}", self.digest)
    }
}

/// `blake3:<hex>` of a string, as [`ALLOW_KEY`] takes it.
pub fn digest_of(s: &str) -> String {
    format!("blake3:{}", blake3::hash(s.as_bytes()).to_hex())
}

/// Strings an operator allowed past the scanner (`gatos.secrets.allow`), by digest.
#[derive(Debug, Clone, Default)]
pub struct Allowlist {
    digests: std::collections::BTreeSet<String>,
}

impl Allowlist {
    /// Reads `gatos.secrets.allow` from the repository's local config file (never from
    /// the manifest, and never from another node: config is not replicated).
    pub fn of(gatos: &crate::Gatos) -> Allowlist {
        Allowlist::from_values(gatos.store().local_config_strings(ALLOW_KEY))
    }

    /// An allowlist of `blake3:<hex>` values (others are ignored; hex case does not
    /// matter).
    pub fn from_values(values: impl IntoIterator<Item = String>) -> Allowlist {
        Allowlist {
            digests: values
                .into_iter()
                .map(|v| v.trim().to_ascii_lowercase())
                .filter(|v| v.starts_with("blake3:"))
                .collect(),
        }
    }

    /// Whether the operator allowed the string of this finding.
    pub fn allows(&self, f: &Finding) -> bool {
        self.digests.contains(&f.digest)
    }
}

struct Shape {
    kind: &'static str,
    re: Regex,
}

#[expect(
    clippy::expect_used,
    reason = "the patterns are constants, checked by the unit tests"
)]
static SHAPES: LazyLock<Vec<Shape>> = LazyLock::new(|| {
    let shape = |kind, re: &str| Shape {
        kind,
        re: Regex::new(re).expect("a valid pattern"),
    };
    vec![
        shape(
            "PEM private key",
            r"-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY( BLOCK)?-----",
        ),
        shape(
            "AWS access key id",
            r"\b(AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b",
        ),
        shape("GitHub token", r"\bgh[pousr]_[A-Za-z0-9]{36}\b"),
        shape("GitHub token", r"\bgithub_pat_[A-Za-z0-9_]{22,}\b"),
        shape(
            "GitLab token",
            r"\bgl(pat|ptt|dt|rt|soat|cbt)-[A-Za-z0-9_-]{20,}",
        ),
        shape("Slack token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
        shape(
            "Slack webhook",
            r"https://hooks\.slack\.com/services/T[A-Za-z0-9]+/B[A-Za-z0-9]+/[A-Za-z0-9]+",
        ),
        shape(
            "JWT",
            r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
        ),
    ]
});

#[expect(clippy::expect_used, reason = "constant patterns")]
static AWS_SECRET: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)aws.{0,40}?\b([A-Za-z0-9/+]{40})\b").expect("a valid pattern")
});

/// `scheme://user:password@`: the password part (no `/`, `?`, `#`, `@` or space in it).
#[expect(clippy::expect_used, reason = "constant patterns")]
static URL_CREDENTIALS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b[a-z][a-z0-9+.-]*://[^\s/?#@:]*:([^\s/?#@]*)@").expect("a valid pattern")
});

/// `Authorization: [scheme] value` (also `Proxy-Authorization`).
#[expect(clippy::expect_used, reason = "constant patterns")]
static AUTH_HEADER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:proxy-)?authorization\s*:\s*(?:[a-z][a-z0-9-]*\s+)?(\S+)")
        .expect("a valid pattern")
});

/// API-key style headers: `X-Api-Key: value`, `Private-Token: value`, `X-Vault-Token: …`.
#[expect(clippy::expect_used, reason = "constant patterns")]
static KEY_HEADER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)(?:^|[\s'\x22])(x-[a-z0-9-]*(?:key|token|secret|auth)|api-?key|auth-?token|access-?token|private-token)\s*:\s*(\S+)",
    )
    .expect("a valid pattern")
});

/// Authorization schemes: the header's value when nothing follows them.
const AUTH_SCHEMES: &[&str] = &["bearer", "basic", "token", "digest", "negotiate"];

/// Words that make a name secret-like wherever they are in it.
const SECRET_WORDS: &[&str] = &[
    "token",
    "tokens",
    "secret",
    "secrets",
    "password",
    "passwords",
    "passwd",
    "passphrase",
    "pwd",
    "auth",
    "apikey",
    "credential",
    "credentials",
    "creds",
    "privatekey",
];

/// A last word that says the value points at a secret or describes it, not is it.
const POINTER_WORDS: &[&str] = &[
    "file", "path", "dir", "url", "uri", "endpoint", "host", "name", "id", "type", "mode", "env",
    "var", "header", "user", "username", "ttl", "len", "length", "size", "count", "enabled",
    "method", "ref",
];

/// Splits a name into lowercase words at non-alphanumerics and camelCase humps.
fn words(name: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_ascii_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        cur.push(c.to_ascii_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Tells whether a variable or member name says it holds a secret: a secret word anywhere
/// (`TOKEN_GITHUB`, `AUTH`, `dbPassword`), or `key` last (`API_KEY`, `deploy_key`), unless
/// the last word says it is a pointer (`TOKEN_FILE`, `PASSWORD_PATH`, `AUTH_URL`).
pub fn is_secret_name(name: &str) -> bool {
    let w = words(name);
    let Some(last) = w.last() else {
        return false;
    };
    if POINTER_WORDS.contains(&last.as_str()) {
        return false;
    }
    last == "key" || w.iter().any(|x| SECRET_WORDS.contains(&x.as_str()))
}

/// Tells whether a command-line flag takes a secret as its value: `--token`,
/// `--password`, `--api-key`, `--client-secret`, `--pass`; not `--token-file`, not `-p`.
pub fn is_secret_flag(flag: &str) -> bool {
    let Some(name) = flag.strip_prefix("--").or_else(|| {
        flag.strip_prefix('-')
            .filter(|n| n.len() > 1 && !n.starts_with('-'))
    }) else {
        return false;
    };
    let w = words(name);
    let Some(last) = w.last().map(String::as_str) else {
        return false;
    };
    if w.len() == 1 && last == "pass" {
        return true;
    }
    let before = w
        .len()
        .checked_sub(2)
        .and_then(|i| w.get(i))
        .map(String::as_str);
    matches!(
        last,
        "token" | "password" | "passwd" | "passphrase" | "secret" | "apikey"
    ) || (last == "key" && matches!(before, Some("api" | "access" | "secret" | "private")))
}

/// Tells whether a string is a `secret://NAME` reference; returns the name.
pub fn secret_ref(s: &str) -> Option<&str> {
    s.strip_prefix("secret://")
}

/// Checks a secret reference's name.
pub fn is_valid_secret_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 128
}

/// Tells whether a string starts with `secret://` but is not a valid reference (the name
/// is empty, holds other characters, or is followed by more text).
pub fn invalid_secret_ref(s: &str) -> bool {
    secret_ref(s).is_some_and(|name| !is_valid_secret_name(name))
}

fn is_valid_ref(s: &str) -> bool {
    secret_ref(s).is_some_and(is_valid_secret_name)
}

fn is_structured_non_secret(s: &str) -> bool {
    s.parse::<gatos_types::Ulid>().is_ok()
        || s.parse::<gatos_types::Digest>().is_ok()
        || is_valid_ref(s)
}

/// Shannon entropy in bits per character.
pub fn entropy(s: &str) -> f64 {
    let mut counts = std::collections::HashMap::new();
    let mut n = 0f64;
    for c in s.chars() {
        *counts.entry(c).or_insert(0f64) += 1.0;
        n += 1.0;
    }
    counts
        .values()
        .map(|&c| {
            let p = c / n;
            -p * p.log2()
        })
        .sum()
}

/// Looks like a random credential: long enough, varied enough.
fn high_entropy(s: &str) -> bool {
    s.len() >= 16 && !s.contains(char::is_whitespace) && entropy(s) >= 3.5
}

/// Strips the quotes and separators a shell line leaves around a value.
fn trim_value(v: &str) -> &str {
    v.trim_matches(|c: char| matches!(c, '\'' | '"' | '`' | ',' | ';' | ')' | '('))
}

/// A value written out, not a placeholder for something else to fill in: `$VAR`,
/// `${VAR}`, `$(cmd)`, `%s`, `{{ var }}`, `<token>`, `@file`, `-` (stdin), a reference,
/// or a mask such as `***` or `xxxx`.
fn is_literal(v: &str) -> bool {
    let v = trim_value(v);
    let mut chars = v.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    !(matches!(first, '$' | '@' | '<' | '-')
        || ["%s", "%(", "%{"].iter().any(|p| v.starts_with(p))
        || v.starts_with("{{")
        || is_structured_non_secret(v)
        || (v.len() >= 3 && v.chars().all(|c| c == first))
        || v.eq_ignore_ascii_case("xxxx"))
}

/// Looks like a path rather than a credential.
fn is_path_like(v: &str) -> bool {
    ["/", "./", "../", "~/"].iter().any(|p| v.starts_with(p))
}

/// A credential that could be random: no spaces, 8 or more characters, some variety,
/// and not a `key=value,…` list (`docker --secret id=npm,src=.npmrc`).
fn looks_random(v: &str) -> bool {
    let v = trim_value(v);
    v.len() >= 8
        && !v.contains(char::is_whitespace)
        && !v.contains(',')
        && !v.trim_end_matches('=').contains('=')
        && entropy(v) >= 2.5
}

/// Whether the value after a secret flag is a written-out secret.
fn is_flag_secret(flag: &str, value: &str) -> bool {
    let w = words(flag);
    let password = w
        .last()
        .is_some_and(|l| matches!(l.as_str(), "password" | "passwd" | "passphrase" | "pass"));
    is_literal(value)
        && !is_path_like(value)
        && if password {
            trim_value(value).len() >= 4 && !value.contains(char::is_whitespace)
        } else {
            looks_random(value)
        }
}

/// Scans one string value found at `field`, under the variable/member `name` if it has one.
pub fn scan_value(field: &str, name: Option<&str>, value: &str) -> Option<Finding> {
    if is_structured_non_secret(value) {
        return None;
    }
    let found = |kind| Some(Finding::new(field, kind, value));
    for s in SHAPES.iter() {
        if s.re.is_match(value) {
            return found(s.kind);
        }
    }
    if let Some(c) = AWS_SECRET.captures(value)
        && c.get(1).is_some_and(|m| high_entropy(m.as_str()))
    {
        return found("AWS secret access key");
    }
    for c in URL_CREDENTIALS.captures_iter(value) {
        if c.get(1).is_some_and(|m| is_literal(m.as_str())) {
            return found("credentials in a URL");
        }
    }
    for c in AUTH_HEADER.captures_iter(value) {
        if c.get(1).is_some_and(|m| {
            let v = m.as_str();
            is_literal(v)
                && looks_random(v)
                && !AUTH_SCHEMES.contains(&v.to_ascii_lowercase().as_str())
        }) {
            return found("Authorization header");
        }
    }
    for c in KEY_HEADER.captures_iter(value) {
        if c.get(2)
            .is_some_and(|m| is_literal(m.as_str()) && looks_random(m.as_str()))
        {
            return found("API key header");
        }
    }
    if name.is_some_and(is_secret_name) && !is_path_like(value) && high_entropy(value) {
        return found("high-entropy value of a secret-named variable");
    }
    // `NAME=VALUE` inside a string ("--env=GITHUB_TOKEN=…", "export AUTH=…", "?token=…"),
    // and `--flag=VALUE` for a secret flag.
    for (i, _) in value.match_indices('=') {
        let before = &value[..i];
        let start = before
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
            .map_or(0, |j| j + 1);
        let k = &before[start..];
        let rest = &value[i + 1..];
        let v = &rest[..rest
            .find(|c: char| c.is_whitespace() || matches!(c, '&' | ';' | '\'' | '"'))
            .unwrap_or(rest.len())];
        if k.starts_with('-') {
            if is_secret_flag(k) && is_flag_secret(k, v) {
                return found("value of a secret flag");
            }
        } else if is_secret_name(k) && is_literal(v) && !is_path_like(v) && high_entropy(v) {
            return found("high-entropy value of a secret-named variable");
        }
    }
    None
}

/// Scans a command line as a whole: each argument alone, and each secret flag with the
/// argument after it (`--token VALUE`). `argv` pairs each argument with its field name.
pub fn scan_argv(argv: &[(String, &str)]) -> Vec<Finding> {
    let mut out = Vec::new();
    for (i, (field, arg)) in argv.iter().enumerate() {
        if let Some(f) = scan_value(field, None, arg) {
            out.push(f);
            continue;
        }
        if i > 0 {
            let flag = argv[i - 1].1;
            if is_secret_flag(flag) && is_flag_secret(flag, arg) {
                out.push(Finding::new(field, "value of a secret flag", arg));
            }
        }
    }
    out
}

/// Scans a map's key (an env name, a label name, an inputs member name). The finding's
/// field is `{field} (key #{index})`, so the error never echoes the key.
pub fn scan_key(field: &str, index: usize, key: &str) -> Option<Finding> {
    scan_value(&format!("{field} (key #{index})"), None, key)
}

/// Scans a JSON value recursively (object members are names for the entropy rule, and
/// are scanned themselves).
pub fn scan_json(field: &str, name: Option<&str>, v: &serde_json::Value, out: &mut Vec<Finding>) {
    match v {
        serde_json::Value::String(s) => out.extend(scan_value(field, name, s)),
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                scan_json(&format!("{field}[{i}]"), name, x, out);
            }
        }
        serde_json::Value::Object(m) => {
            for (i, (k, x)) in m.iter().enumerate() {
                match scan_key(field, i, k) {
                    // A key that is itself a secret is never printed, not even as the
                    // path to its value.
                    Some(f) => {
                        out.push(f);
                        scan_json(&format!("{field} (key #{i})"), None, x, out);
                    }
                    None => scan_json(&format!("{field}.{k}"), Some(k), x, out),
                }
            }
        }
        _ => {}
    }
}

/// Every string of a value that starts with `secret://` but is not a valid reference,
/// with its field (a key is named by position).
pub fn invalid_refs_in_json(field: &str, v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) if invalid_secret_ref(s) => out.push(field.to_owned()),
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                invalid_refs_in_json(&format!("{field}[{i}]"), x, out);
            }
        }
        serde_json::Value::Object(m) => {
            for (i, (k, x)) in m.iter().enumerate() {
                if invalid_secret_ref(k) {
                    out.push(format!("{field} (key #{i})"));
                }
                invalid_refs_in_json(&format!("{field}.{k}"), x, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(name: Option<&str>, v: &str) -> Option<&'static str> {
        scan_value("f", name, v).map(|f| f.kind)
    }

    #[test]
    fn known_shapes_are_found_anywhere() {
        assert_eq!(
            found(None, "-----BEGIN OPENSSH PRIVATE KEY-----\nabc"),
            Some("PEM private key")
        );
        assert_eq!(
            found(None, "-----BEGIN RSA PRIVATE KEY-----"),
            Some("PEM private key")
        );
        assert_eq!(
            found(None, "key=AKIAIOSFODNN7EXAMPLE"),
            Some("AWS access key id")
        );
        assert_eq!(
            found(None, "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"),
            Some("GitHub token")
        );
        assert_eq!(
            found(None, "gho_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"),
            Some("GitHub token")
        );
        assert_eq!(
            found(None, "glpat-abcdefghij0123456789"),
            Some("GitLab token")
        );
        assert_eq!(
            found(None, "xoxb-123456789012-abcdefghij"),
            Some("Slack token")
        );
        assert_eq!(
            found(
                None,
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
            ),
            Some("JWT")
        );
        assert_eq!(
            found(
                None,
                "--aws-secret-access-key wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
            ),
            Some("AWS secret access key")
        );
    }

    #[test]
    fn secret_named_variables_with_random_values_are_found() {
        assert!(found(Some("API_TOKEN"), "q8Zr2LmP0xVt7WcN4bKs").is_some());
        assert!(found(Some("DB_PASSWORD"), "N9v#qL2m!xP7zR4t").is_some());
        assert!(found(Some("deploy_key"), "Zx81mQ0pLr7TwV3nB5cY").is_some());
        assert!(found(None, "--env=SERVICE_SECRET=q8Zr2LmP0xVt7WcN4bKs").is_some());
        // Low entropy, or a name that says nothing: not flagged.
        assert!(found(Some("API_TOKEN"), "changeme").is_none());
        assert!(found(Some("MODE"), "q8Zr2LmP0xVt7WcN4bKs").is_none());
        assert!(found(Some("KEYBOARD"), "q8Zr2LmP0xVt7WcN4bKs").is_none());
    }

    #[test]
    fn ulids_digests_and_references_pass() {
        assert!(found(Some("API_TOKEN"), "secret://API_TOKEN").is_none());
        assert!(found(Some("CACHE_KEY"), "01ARZ3NDEKTSV4RRFFQ69G5FAV").is_none());
        assert!(
            found(
                Some("ARTIFACT_KEY"),
                "blake3:6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
            )
            .is_none()
        );
        assert!(found(None, "cargo build --release").is_none());
    }

    #[test]
    fn json_members_are_scanned_with_their_names() {
        let mut out = Vec::new();
        let v = serde_json::json!({"db": {"password": "N9v#qL2m!xP7zR4tYu", "host": "db.internal"}, "list": ["ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"]});
        scan_json("inputs", None, &v, &mut out);
        let fields: Vec<&str> = out.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, vec!["inputs.db.password", "inputs.list[0]"]);
    }

    const RANDOM: &str = "q8Zr2LmP0xVt7WcN4bKs";

    #[test]
    fn url_credentials_of_any_scheme_are_found() {
        for v in [
            "postgres://admin:pw@db",
            "mysql://root:hunter2@127.0.0.1:3306/app",
            "redis://:s3cret@cache:6379",
            "https://deploy:q8Zr2LmP@example.com/repo.git",
            "DATABASE_URL=postgres://app:pw@db/app?sslmode=disable",
            "clone amqp://guest:guest@localhost and go",
        ] {
            assert_eq!(found(None, v), Some("credentials in a URL"), "{v}");
        }
        for v in [
            "https://example.com/path?a=b",
            "https://user@example.com/repo.git",
            "https://example.com:8443/a@b",
            "git@github.com:org/repo.git",
            "ssh://git@github.com:22/org/repo",
            "postgres://app:${DB_PASSWORD}@db/app",
            "postgres://app:$PW@db/app",
            "postgres://app:@db/app",
            "postgres://app:***@db/app",
        ] {
            assert_eq!(found(None, v), None, "{v}");
        }
    }

    #[test]
    fn authorization_and_api_key_headers_are_found() {
        for (v, kind) in [
            (
                "Authorization: Bearer q8Zr2LmP0xVt7WcN",
                "Authorization header",
            ),
            (
                "authorization:Basic YWRtaW46cHc9PQ==",
                "Authorization header",
            ),
            (
                "Proxy-Authorization: token 8f14e45fceea167a",
                "Authorization header",
            ),
            (
                "curl -H 'Authorization: Bearer abc123XYZ789' x",
                "Authorization header",
            ),
            ("X-Api-Key: 8f14e45fceea167a", "API key header"),
            ("X-Vault-Token: hvs.CAESIJ2x7kqL", "API key header"),
            ("Private-Token: a1b2c3d4e5f6g7h8", "API key header"),
        ] {
            assert_eq!(found(None, v), Some(kind), "{v}");
        }
        for v in [
            "Authorization: Bearer $TOKEN",
            "Authorization: Bearer ${TOKEN}",
            "Authorization: secret://API_TOKEN",
            "Authorization: Bearer secret://API_TOKEN",
            "Authorization: Bearer",
            "set the Authorization: header first",
            "Accept: application/json",
            "X-Request-Id: 01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "sort key: created_at",
        ] {
            assert_eq!(found(None, v), None, "{v}");
        }
    }

    #[test]
    fn secret_flags_are_told_from_their_lookalikes() {
        for f in [
            "--token",
            "--password",
            "--api-key",
            "--apikey",
            "--secret",
            "--client-secret",
            "--access-token",
            "--auth_token",
            "--pass",
            "-password",
            "--secret-key",
        ] {
            assert!(is_secret_flag(f), "{f}");
        }
        for f in [
            "--token-file",
            "--password-stdin",
            "--secret-id",
            "-p",
            "-t",
            "--key",
            "--sort-key",
            "--passes",
            "token",
            "--",
        ] {
            assert!(!is_secret_flag(f), "{f}");
        }
    }

    #[test]
    fn a_secret_flag_with_its_value_is_found_in_one_or_two_arguments() {
        let argv = |a: &[&str]| -> Vec<Option<&'static str>> {
            let v: Vec<(String, &str)> = a
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("args[{i}]"), *s))
                .collect();
            let found = scan_argv(&v);
            (0..a.len())
                .map(|i| {
                    found
                        .iter()
                        .find(|f| f.field == format!("args[{i}]"))
                        .map(|f| f.kind)
                })
                .collect()
        };
        let hit = Some("value of a secret flag");
        assert_eq!(argv(&["gh", "--token", RANDOM]), vec![None, None, hit]);
        assert_eq!(
            argv(&["psql", "--password", "hunter22"]),
            vec![None, None, hit]
        );
        assert_eq!(
            argv(&["x", "--api-key", "8f14e45fceea167a"]),
            vec![None, None, hit]
        );
        assert_eq!(
            argv(&["x", "--secret", "8f14e45fceea167a"]),
            vec![None, None, hit]
        );
        assert_eq!(found(None, "--token=q8Zr2LmP0xVt7WcN"), hit);
        assert_eq!(found(None, "--password=hunter22"), hit);
        for ok in [
            vec!["x", "--token-file", "/run/secrets/gh"],
            vec!["x", "--token", "$GH_TOKEN"],
            vec!["x", "--token", "secret://GH_TOKEN"],
            vec!["x", "--token", "-"],
            vec!["x", "--password", "--verbose"],
            vec!["x", "--password", "pw"],
            vec!["docker", "build", "--secret", "id=npmrc,src=.npmrc"],
            vec!["ssh", "-p", "2222", "host"],
            vec!["mkdir", "-p", RANDOM],
            vec!["x", "--secret", "/run/secrets/app.json"],
            vec!["x", "--token=$TOKEN"],
        ] {
            assert!(argv(&ok).iter().all(Option::is_none), "{ok:?}");
        }
    }

    #[test]
    fn secret_words_count_anywhere_in_a_name() {
        for n in [
            "AUTH",
            "TOKEN_GITHUB",
            "GITHUB_TOKEN",
            "dbPassword",
            "APIKey",
            "api.key",
            "x-secret-y",
            "MY_CREDENTIALS",
            "deploy_key",
        ] {
            assert!(is_secret_name(n), "{n}");
            assert!(found(Some(n), RANDOM).is_some(), "{n}");
        }
        for n in [
            "AUTHOR",
            "KEYBOARD",
            "MONKEY",
            "TOKEN_FILE",
            "PASSWORD_PATH",
            "AUTH_URL",
            "SECRET_NAME",
            "KEY_ID",
            "MODE",
        ] {
            assert!(!is_secret_name(n), "{n}");
        }
        assert!(found(None, &format!("export AUTH={RANDOM} && run")).is_some());
        assert!(found(None, &format!("TOKEN_GITHUB={RANDOM}")).is_some());
        assert!(found(None, &format!("https://x/cb?access_token={RANDOM}&a=1")).is_some());
        assert!(found(None, &format!("AUTHOR={RANDOM}")).is_none());
        assert!(found(None, "AUTH=changeme").is_none());
        assert!(found(Some("TOKEN_PATH"), "/var/run/secrets/kubernetes.io/token").is_none());
    }

    #[test]
    fn keys_are_scanned_and_reported_by_position() {
        let key = "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789";
        let f = scan_key("env", 3, key).expect("a token as a key");
        assert_eq!(f.field, "env (key #3)");
        assert_eq!(f.kind, "GitHub token");
        assert_eq!(f.digest, digest_of(key));
        assert!(scan_key("env", 0, "GITHUB_TOKEN").is_none());
        let mut out = Vec::new();
        scan_json(
            "inputs",
            None,
            &serde_json::json!({ key: {"password": "N9v#qL2m!xP7zR4tYu"} }),
            &mut out,
        );
        let fields: Vec<&str> = out.iter().map(|f| f.field.as_str()).collect();
        // The value under it is named through the key's position too.
        assert_eq!(fields, vec!["inputs (key #0)", "inputs (key #0).password"]);
    }

    #[test]
    fn references_are_valid_or_invalid_never_skipped() {
        assert!(!invalid_secret_ref("secret://CI_TOKEN"));
        assert!(!invalid_secret_ref("not a reference"));
        for s in [
            "secret://",
            "secret://bad name",
            "secret://a/b",
            "secret://1X",
            "secret://X Y",
        ] {
            assert!(invalid_secret_ref(s), "{s}");
        }
        // What follows `secret://` in an invalid one is scanned like any string.
        assert_eq!(
            found(None, "secret://x ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"),
            Some("GitHub token")
        );
    }

    #[test]
    fn the_allowlist_matches_by_digest_only() {
        let f = scan_value("args[0]", None, "postgres://app:pw@db").expect("found");
        assert_eq!(
            f.allow_command(),
            format!(
                "git config --add gatos.secrets.allow {}",
                digest_of("postgres://app:pw@db")
            )
        );
        assert!(Allowlist::from_values([digest_of("postgres://app:pw@db")]).allows(&f));
        assert!(!Allowlist::from_values(["postgres://app:pw@db".to_owned()]).allows(&f));
        assert!(!Allowlist::default().allows(&f));
    }
}
