//! The error taxonomy shared by the library, the CLI and the RPC (DESIGN §7).

use std::fmt;

/// A stable error code: the contract that callers branch on.
///
/// The string form (`as_str`) and the status number never change; changing a row is a
/// contract change that needs an ADR; `adr/0034-error-taxonomy-rate-limited-and-titles.md`
/// holds the table of every code with its HTTP status, JSON-RPC integer, exit status and
/// title (it supersedes the table of ADR 0026).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
pub enum ErrorCode {
    /// The input is malformed or violates a documented limit.
    InvalidInput,
    /// A stored or submitted document does not have the required shape.
    InvalidEnvelope,
    /// The named thing does not exist.
    NotFound,
    /// Authentication is missing or wrong.
    Unauthorized,
    /// The caller may not do this.
    Forbidden,
    /// A chain would move backwards or sideways.
    NotFastForward,
    /// Another worker holds the claim.
    AlreadyClaimed,
    /// The claim's lease ran out.
    LeaseExpired,
    /// A concurrent writer changed what this write expected.
    Conflict,
    /// The input is larger than the limit.
    PayloadTooLarge,
    /// A recomputed digest differs from the recorded one.
    DigestMismatch,
    /// A signature does not verify.
    SignatureInvalid,
    /// A signature is by a key this repository does not trust.
    UntrustedKey,
    /// A signature is by a revoked key.
    KeyRevoked,
    /// The input contains what looks like a raw secret.
    SecretDetected,
    /// A resource (remote, lock, repository) is unavailable right now.
    Unavailable,
    /// A bug or an unexpected environment.
    Internal,
    /// A connection holds as many subscriptions as it may (gatosd; ADR 0023).
    TooManySubscriptions,
    /// The queue holds as many pending jobs as its `max_pending` allows (ADR 0027); retry
    /// after `retry_after_seconds`.
    QueueFull,
    /// The caller sent more requests than its rate allows (a face's limit per actor, ADR
    /// 0033); retry after `retry_after_seconds`.
    RateLimited,
    /// What the request names existed here and is no longer kept: a ref state past its
    /// retention, a cursor from an earlier run of the daemon (ADR 0044). Not retryable:
    /// the client starts again from a fresh state.
    Gone,
}

impl ErrorCode {
    /// Every code, in table order.
    pub const ALL: [ErrorCode; 21] = [
        ErrorCode::InvalidInput,
        ErrorCode::InvalidEnvelope,
        ErrorCode::NotFound,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFastForward,
        ErrorCode::AlreadyClaimed,
        ErrorCode::LeaseExpired,
        ErrorCode::Conflict,
        ErrorCode::PayloadTooLarge,
        ErrorCode::DigestMismatch,
        ErrorCode::SignatureInvalid,
        ErrorCode::UntrustedKey,
        ErrorCode::KeyRevoked,
        ErrorCode::SecretDetected,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
        ErrorCode::TooManySubscriptions,
        ErrorCode::QueueFull,
        ErrorCode::RateLimited,
        ErrorCode::Gone,
    ];

    /// Returns the exact PascalCase string of the code.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidInput => "InvalidInput",
            ErrorCode::InvalidEnvelope => "InvalidEnvelope",
            ErrorCode::NotFound => "NotFound",
            ErrorCode::Unauthorized => "Unauthorized",
            ErrorCode::Forbidden => "Forbidden",
            ErrorCode::NotFastForward => "NotFastForward",
            ErrorCode::AlreadyClaimed => "AlreadyClaimed",
            ErrorCode::LeaseExpired => "LeaseExpired",
            ErrorCode::Conflict => "Conflict",
            ErrorCode::PayloadTooLarge => "PayloadTooLarge",
            ErrorCode::DigestMismatch => "DigestMismatch",
            ErrorCode::SignatureInvalid => "SignatureInvalid",
            ErrorCode::UntrustedKey => "UntrustedKey",
            ErrorCode::KeyRevoked => "KeyRevoked",
            ErrorCode::SecretDetected => "SecretDetected",
            ErrorCode::Unavailable => "Unavailable",
            ErrorCode::Internal => "Internal",
            ErrorCode::TooManySubscriptions => "TooManySubscriptions",
            ErrorCode::QueueFull => "QueueFull",
            ErrorCode::RateLimited => "RateLimited",
            ErrorCode::Gone => "Gone",
        }
    }

    /// Returns the HTTP-like status number of the code.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidInput | ErrorCode::InvalidEnvelope => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::NotFastForward
            | ErrorCode::AlreadyClaimed
            | ErrorCode::LeaseExpired
            | ErrorCode::Conflict => 409,
            ErrorCode::Gone => 410,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::TooManySubscriptions | ErrorCode::QueueFull | ErrorCode::RateLimited => 429,
            ErrorCode::DigestMismatch
            | ErrorCode::SignatureInvalid
            | ErrorCode::UntrustedKey
            | ErrorCode::KeyRevoked
            | ErrorCode::SecretDetected => 422,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
        }
    }

    /// Tells whether the same request may succeed later: the 409 family (a lost race,
    /// worth retrying at once), `QueueFull` and `RateLimited` (worth retrying after the
    /// hint in their details, ADRs 0027 and 0033). `TooManySubscriptions` is not: the
    /// connection must first unsubscribe.
    pub fn is_retryable(self) -> bool {
        self.status() == 409 || matches!(self, ErrorCode::QueueFull | ErrorCode::RateLimited)
    }

    /// A short human title of the code, the same for every occurrence: the `title` of an
    /// HTTP problem (RFC 9457; ADR 0033), where `detail` carries the occurrence's message.
    pub fn title(self) -> &'static str {
        match self {
            ErrorCode::InvalidInput => "Invalid input",
            ErrorCode::InvalidEnvelope => "Invalid document",
            ErrorCode::NotFound => "Not found",
            ErrorCode::Unauthorized => "Authentication required",
            ErrorCode::Forbidden => "Forbidden",
            ErrorCode::NotFastForward => "Not a fast-forward",
            ErrorCode::AlreadyClaimed => "Already claimed",
            ErrorCode::LeaseExpired => "Lease expired",
            ErrorCode::Conflict => "Conflict",
            ErrorCode::PayloadTooLarge => "Payload too large",
            ErrorCode::DigestMismatch => "Digest mismatch",
            ErrorCode::SignatureInvalid => "Invalid signature",
            ErrorCode::UntrustedKey => "Untrusted key",
            ErrorCode::KeyRevoked => "Revoked key",
            ErrorCode::SecretDetected => "Secret detected",
            ErrorCode::Unavailable => "Unavailable",
            ErrorCode::Internal => "Internal error",
            ErrorCode::TooManySubscriptions => "Too many subscriptions",
            ErrorCode::QueueFull => "Queue full",
            ErrorCode::RateLimited => "Rate limited",
            ErrorCode::Gone => "Gone",
        }
    }
}

impl ErrorCode {
    /// The HTTP status a face answers with (the same number as [`ErrorCode::status`]).
    pub fn http_status(self) -> u16 {
        self.status()
    }

    /// The JSON-RPC error integer: every taxonomy error is -32000, with the code in
    /// `error.data.code` (the reserved integers are for protocol errors; ADR 0026).
    pub fn rpc_code(self) -> i64 {
        -32000
    }

    /// The exit status of `git gatos` failing with this code (ADRs 0026, 0034): 3 for a
    /// lost race (retry at once), 4 for `QueueFull` and `RateLimited` (retry after
    /// `retry_after_seconds`), 1 for everything else. A usage error (exit 2) is not a code of its own: it is the CLI's
    /// `InvalidInput` found while reading its arguments.
    pub fn exit_status(self) -> u8 {
        match self {
            ErrorCode::QueueFull | ErrorCode::RateLimited => 4,
            ErrorCode::NotFastForward
            | ErrorCode::AlreadyClaimed
            | ErrorCode::LeaseExpired
            | ErrorCode::Conflict => 3,
            ErrorCode::InvalidInput
            | ErrorCode::InvalidEnvelope
            | ErrorCode::NotFound
            | ErrorCode::Unauthorized
            | ErrorCode::Forbidden
            | ErrorCode::PayloadTooLarge
            | ErrorCode::DigestMismatch
            | ErrorCode::SignatureInvalid
            | ErrorCode::UntrustedKey
            | ErrorCode::KeyRevoked
            | ErrorCode::SecretDetected
            | ErrorCode::Unavailable
            | ErrorCode::Internal
            | ErrorCode::TooManySubscriptions
            | ErrorCode::Gone => 1,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ErrorCode {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        ErrorCode::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or(())
    }
}

/// An error that knows its taxonomy code.
pub trait Coded: std::error::Error {
    /// Returns the stable code of this error.
    fn code(&self) -> ErrorCode;

    /// Returns the error's machine-readable facts (`field`, `retry_after_seconds`, …),
    /// which every face passes through unchanged (`error.data` in JSON-RPC, the `--json`
    /// error object); none unless the error has some.
    fn details(&self) -> serde_json::Map<String, serde_json::Value> {
        serde_json::Map::new()
    }
}

/// The JSON shape of an error, as `--json` prints it and RPC carries it in `data`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct ErrorBody {
    /// The stable code.
    pub code: ErrorCode,
    /// The HTTP-like status of `code`.
    pub status: u16,
    /// The human message.
    pub message: String,
}

macro_rules! coded {
    ($t:ty => $code:expr) => {
        impl Coded for $t {
            fn code(&self) -> ErrorCode {
                $code
            }
        }
    };
}

coded!(crate::name::NameError => ErrorCode::InvalidInput);
coded!(crate::digest::ParseError => ErrorCode::InvalidInput);
coded!(crate::time::TimeError => ErrorCode::InvalidInput);
coded!(crate::jcs::Error => ErrorCode::InvalidInput);
coded!(crate::trailers::Error => ErrorCode::InvalidInput);

impl Coded for crate::envelope::Error {
    fn code(&self) -> ErrorCode {
        match self {
            crate::envelope::Error::Invalid(_) => ErrorCode::InvalidEnvelope,
            crate::envelope::Error::Headers(_) => ErrorCode::InvalidInput,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The taxonomy table is the contract: ADR 0044's (which restates ADR 0034's table in
    /// full and adds `Gone`) lists every code, in order, with its HTTP status, JSON-RPC
    /// integer, exit status and title, exactly as the code maps them. ADR 0034's table
    /// (which added `RateLimited` and the titles) and ADR 0026's stay as they were
    /// accepted: the same rows, less the ones added since.
    #[test]
    fn the_taxonomy_adr_lists_every_code_as_the_code_maps_it() {
        let rows = |name: &str| -> Vec<Vec<String>> {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../adr")
                .join(name);
            let adr = std::fs::read_to_string(&path).expect("the taxonomy ADR");
            adr.lines()
                .filter(|l| l.starts_with("| `"))
                .map(|l| {
                    l.trim_matches('|')
                        .split('|')
                        .map(|c| c.trim().trim_matches('`').to_owned())
                        .collect()
                })
                .collect()
        };
        let want: Vec<Vec<String>> = ErrorCode::ALL
            .iter()
            .map(|c| {
                vec![
                    c.as_str().to_owned(),
                    c.http_status().to_string(),
                    c.rpc_code().to_string(),
                    c.exit_status().to_string(),
                    c.title().to_owned(),
                ]
            })
            .collect();
        // ADR 0044 has other tables too: the taxonomy's rows are those with a JSON-RPC integer.
        let now: Vec<Vec<String>> = rows("0044-graphql-gateway.md")
            .into_iter()
            .filter(|r| r.get(2).is_some_and(|c| c == "-32000"))
            .collect();
        let got: Vec<Vec<String>> = now.iter().map(|r| r[..5].to_vec()).collect();
        assert_eq!(
            got, want,
            "adr/0044-graphql-gateway.md's table differs from ErrorCode"
        );
        let before = rows("0034-error-taxonomy-rate-limited-and-titles.md");
        let got: Vec<Vec<String>> = before.iter().map(|r| r[..5].to_vec()).collect();
        assert!(
            !got.is_empty() && want.starts_with(&got),
            "adr/0034-error-taxonomy-rate-limited-and-titles.md's rows are no longer the start of ErrorCode's table"
        );
        let then = rows("0026-error-taxonomy.md");
        let got: Vec<Vec<String>> = then.iter().map(|r| r[..4].to_vec()).collect();
        let want: Vec<Vec<String>> = want.iter().map(|r| r[..4].to_vec()).collect();
        assert!(
            !got.is_empty() && want.starts_with(&got),
            "adr/0026-error-taxonomy.md's rows are no longer the start of ErrorCode's table"
        );
    }

    /// Titles are short, distinct and the same for every occurrence (a problem's `title`).
    #[test]
    fn every_code_has_a_short_distinct_title() {
        let mut seen = std::collections::BTreeSet::new();
        for c in ErrorCode::ALL {
            let t = c.title();
            assert!(!t.is_empty() && t.len() <= 40, "{c}: {t:?}");
            assert!(!t.ends_with('.'), "{c}: a title, not a sentence");
            assert!(seen.insert(t), "{c}: the title {t:?} twice");
        }
    }

    #[test]
    fn the_table_is_pinned() {
        let table: Vec<(&str, u16)> = ErrorCode::ALL
            .iter()
            .map(|c| (c.as_str(), c.status()))
            .collect();
        assert_eq!(
            table,
            vec![
                ("InvalidInput", 400),
                ("InvalidEnvelope", 400),
                ("NotFound", 404),
                ("Unauthorized", 401),
                ("Forbidden", 403),
                ("NotFastForward", 409),
                ("AlreadyClaimed", 409),
                ("LeaseExpired", 409),
                ("Conflict", 409),
                ("PayloadTooLarge", 413),
                ("DigestMismatch", 422),
                ("SignatureInvalid", 422),
                ("UntrustedKey", 422),
                ("KeyRevoked", 422),
                ("SecretDetected", 422),
                ("Unavailable", 503),
                ("Internal", 500),
                ("TooManySubscriptions", 429),
                ("QueueFull", 429),
                ("RateLimited", 429),
                ("Gone", 410),
            ]
        );
    }

    #[test]
    fn strings_round_trip_and_serialise_as_strings() {
        for c in ErrorCode::ALL {
            assert_eq!(c.as_str().parse::<ErrorCode>(), Ok(c));
            assert_eq!(
                serde_json::to_string(&c).expect("serialises"),
                format!("\"{}\"", c.as_str())
            );
        }
    }

    #[test]
    fn only_lost_races_a_full_queue_and_a_rate_limit_are_retryable() {
        let retryable: Vec<_> = ErrorCode::ALL
            .into_iter()
            .filter(|c| c.is_retryable())
            .collect();
        assert_eq!(
            retryable,
            vec![
                ErrorCode::NotFastForward,
                ErrorCode::AlreadyClaimed,
                ErrorCode::LeaseExpired,
                ErrorCode::Conflict,
                ErrorCode::QueueFull,
                ErrorCode::RateLimited
            ]
        );
    }
}
