//! The raw-secret scanner run on every string of a manifest (DESIGN §4).
//!
//! It refuses known token shapes anywhere (PEM private keys, AWS access keys, GitHub,
//! GitLab and Slack tokens, JWTs, AWS secret keys next to an `aws` hint) and high-entropy
//! values of secret-named variables (`*_TOKEN`, `*_SECRET`, `*PASSWORD*`, `*_KEY`).
//! ULIDs, `blake3:` digests and `secret://NAME` references pass. The error names the field
//! and the kind of secret, never the value.

use std::sync::LazyLock;

use regex::Regex;

/// A raw secret found in a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Where: `env.GITHUB_TOKEN`, `args[2]`, `inputs.db.password`, …
    pub field: String,
    /// What it looks like.
    pub kind: &'static str,
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

#[expect(clippy::expect_used, reason = "constant patterns")]
static SECRET_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)(^|[_.-])(token|secret|key|apikey|api_key|private_key)$|password|passwd|passphrase",
    )
    .expect("a valid pattern")
});

/// Tells whether a variable or member name says it holds a secret.
pub fn is_secret_name(name: &str) -> bool {
    SECRET_NAME.is_match(name)
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

fn is_structured_non_secret(s: &str) -> bool {
    s.parse::<gatos_types::Ulid>().is_ok()
        || s.parse::<gatos_types::Digest>().is_ok()
        || secret_ref(s).is_some()
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

/// Scans one string value found at `field`, under the variable/member `name` if it has one.
pub fn scan_value(field: &str, name: Option<&str>, value: &str) -> Option<Finding> {
    if is_structured_non_secret(value) {
        return None;
    }
    for s in SHAPES.iter() {
        if s.re.is_match(value) {
            return Some(Finding {
                field: field.to_owned(),
                kind: s.kind,
            });
        }
    }
    if let Some(c) = AWS_SECRET.captures(value)
        && c.get(1).is_some_and(|m| high_entropy(m.as_str()))
    {
        return Some(Finding {
            field: field.to_owned(),
            kind: "AWS secret access key",
        });
    }
    if name.is_some_and(is_secret_name) && high_entropy(value) {
        return Some(Finding {
            field: field.to_owned(),
            kind: "high-entropy value of a secret-named variable",
        });
    }
    // `NAME=VALUE` inside a single argument ("--env=GITHUB_TOKEN=…", "API_KEY=…").
    if let Some((k, v)) = value.rsplit_once('=') {
        let k = k.rsplit(['-', ' ', '=']).next().unwrap_or(k);
        if is_secret_name(k) && !is_structured_non_secret(v) && high_entropy(v) {
            return Some(Finding {
                field: field.to_owned(),
                kind: "high-entropy value of a secret-named variable",
            });
        }
    }
    None
}

/// Scans a JSON value recursively (object members are names for the entropy rule).
pub fn scan_json(field: &str, name: Option<&str>, v: &serde_json::Value, out: &mut Vec<Finding>) {
    match v {
        serde_json::Value::String(s) => out.extend(scan_value(field, name, s)),
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                scan_json(&format!("{field}[{i}]"), name, x, out);
            }
        }
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                out.extend(scan_value(&format!("{field}.{k} (name)"), None, k));
                scan_json(&format!("{field}.{k}"), Some(k), x, out);
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
}
