//! Validated names: topics, queues, consumer groups, worker ids, manifest and snapshot
//! names.
//!
//! DESIGN §1: `^[a-z][a-z0-9._-]{0,63}$`, and also a valid Git ref component (no `..`, not
//! ending in `.` or `.lock`). A name is checked once when parsed and is never a bare string
//! afterwards, so nothing unchecked can reach a ref name.

use std::fmt;
use std::str::FromStr;

/// The longest name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// [`check_name`] as a JSON Schema pattern (ECMA-262): a lowercase letter first, then up
/// to 63 of `a-z 0-9 . _ -`, no `..`, not ending in `.` or `.lock`.
pub const NAME_PATTERN: &str = r"^(?!.*\.\.)(?!.*\.$)(?!.*\.lock$)[a-z][a-z0-9._-]{0,63}$";

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {reason}")]
pub struct NameError {
    /// What kind of name ("topic", "queue", …).
    pub kind: &'static str,
    /// The offending text, shortened.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Checks a name against DESIGN §1 and returns what is wrong with it.
///
/// # Errors
/// The reason, as a short phrase.
pub fn check_name(s: &str) -> Result<(), &'static str> {
    let bytes = s.as_bytes();
    let Some(first) = bytes.first() else {
        return Err("must not be empty");
    };
    if bytes.len() > MAX_NAME_LEN {
        return Err("must be at most 64 characters");
    }
    if !first.is_ascii_lowercase() {
        return Err("must start with a lowercase letter a-z");
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("may contain only a-z, 0-9, '.', '_' and '-'");
    }
    if s.contains("..") {
        return Err("must not contain '..'");
    }
    if s.ends_with('.') {
        return Err("must not end with '.'");
    }
    if s.ends_with(".lock") {
        return Err("must not end with '.lock'");
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Returns the name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                check_name(s).map_err(|reason| NameError {
                    kind: $kind,
                    value: s.chars().take(80).collect(),
                    reason,
                })?;
                Ok($name(s.to_owned()))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        crate::digest::string_serde!(
            $name,
            concat!("a ", $kind, " name"),
            pattern = NAME_PATTERN
        );
    };
}

name_type!(
    /// A message topic, e.g. `ci.events`.
    Topic,
    "topic"
);
name_type!(
    /// A job queue; the default is `default`.
    Queue,
    "queue"
);
name_type!(
    /// A consumer group.
    Group,
    "consumer group"
);
name_type!(
    /// A worker id.
    WorkerId,
    "worker id"
);
name_type!(
    /// A registered manifest's name.
    ManifestName,
    "manifest name"
);
name_type!(
    /// A capability a job requires or a worker offers.
    Capability,
    "capability"
);
name_type!(
    /// A durable ref snapshot's name (`git gatos snapshot`, ADR 0044).
    SnapshotName,
    "snapshot name"
);

impl Queue {
    /// Returns the queue `default`.
    pub fn default_queue() -> Queue {
        Queue("default".to_owned())
    }
}

impl Default for Queue {
    fn default() -> Self {
        Queue::default_queue()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_and_refuses_as_designed() {
        for ok in ["a", "ci.events", "gatos.jobs", "a-b_c.d9", &"a".repeat(64)] {
            assert!(ok.parse::<Topic>().is_ok(), "{ok}");
        }
        for bad in [
            "",
            "A",
            "1a",
            ".a",
            "a..b",
            "a.",
            "a.lock",
            "a/b",
            "a b",
            "é",
            &"a".repeat(65),
            "-a",
        ] {
            assert!(bad.parse::<Topic>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_error_names_the_kind_and_value() {
        let e = "Bad".parse::<Queue>().expect_err("uppercase");
        assert_eq!(
            e.to_string(),
            "invalid queue \"Bad\": must start with a lowercase letter a-z"
        );
    }

    proptest! {
        /// Every accepted name is also a valid ref component by git's own rules.
        #[test]
        fn accepted_names_are_valid_ref_components(s in "[a-z][a-z0-9._-]{0,20}") {
            if check_name(&s).is_ok() {
                prop_assert!(!s.contains(".."));
                prop_assert!(!s.ends_with('.') && !s.ends_with(".lock"));
                prop_assert!(!s.starts_with('.'));
            }
        }
    }
}
