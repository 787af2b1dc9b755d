//! Storage errors, in storage terms: the planes decide what a mismatch means for them.

use gatos_types::{Coded, ErrorCode, Oid};

use crate::locks;

/// What a CAS edit expected to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The ref must not exist (create-only).
    Absent,
    /// The ref must point at this commit.
    Value(Oid),
    /// The ref must be absent or point at this commit.
    AbsentOr(Oid),
    /// Anything (used only for refs gatos owns outright, such as sync tracking refs).
    Any,
}

impl Expect {
    /// Tells whether a ref at `current` (`None`: absent) is what this expects.
    #[must_use]
    pub fn holds(self, current: Option<Oid>) -> bool {
        match self {
            Expect::Absent => current.is_none(),
            Expect::Value(o) => current == Some(o),
            Expect::AbsentOr(o) => current.is_none() || current == Some(o),
            Expect::Any => true,
        }
    }
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::Absent => f.write_str("no ref"),
            Expect::Value(o) => write!(f, "{o}"),
            Expect::AbsentOr(o) => write!(f, "no ref or {o}"),
            Expect::Any => f.write_str("any value"),
        }
    }
}

fn show(o: &Option<Oid>) -> String {
    o.map_or_else(|| "no ref".to_owned(), |o| o.to_string())
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No repository at or above the path.
    #[error("not a git repository: {path}")]
    NotARepository {
        /// Where we looked.
        path: String,
        /// What gix said.
        message: String,
    },
    /// The repository uses something gatos does not support (SHA-256, a symbolic gatos ref).
    #[error("unsupported repository: {0}")]
    Unsupported(String),
    /// A compare-and-swap found another value.
    #[error("ref {name} changed: expected {expected}, found {}", show(actual))]
    CasMismatch {
        /// The ref.
        name: String,
        /// What the edit expected.
        expected: Expect,
        /// What the ref holds (None: absent), when known.
        actual: Option<Oid>,
    },
    /// Another writer holds a `.lock` of this ref.
    #[error("ref {name} is locked by another writer")]
    Locked {
        /// The ref (or `packed-refs`).
        name: String,
    },
    /// A family lock could not be taken.
    #[error(transparent)]
    Lock(#[from] locks::Error),
    /// An object that should exist does not.
    #[error("object {id} is missing")]
    MissingObject {
        /// The object id.
        id: Oid,
    },
    /// A revision names no commit here.
    #[error("{rev:?} names no commit in this repository")]
    UnknownRevision {
        /// The revision as given.
        rev: String,
    },
    /// A path that cannot name an entry of a tree git accepts (`git fsck --strict`).
    #[error(transparent)]
    TreePath(#[from] crate::objects::TreePathError),
    /// An object is not what the reader expected.
    #[error("{what} is corrupt: {reason}")]
    Corrupt {
        /// What was being read.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// Bytes to be stored as an object carry a SHA-1 collision attack (collision detection
    /// found it): nothing is written under an id another object may share.
    #[error("refused: the bytes of this {kind} carry a SHA-1 collision attack")]
    CollisionAttack {
        /// The kind of object ("blob", "tree", "commit").
        kind: &'static str,
    },
    /// A file-system operation failed.
    #[error("{context}")]
    Io {
        /// What we were doing.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Any other gix failure, with its full chain as text.
    #[error("{context}: {message}")]
    Git {
        /// What we were doing.
        context: String,
        /// gix's message chain.
        message: String,
    },
    /// A remote could not be reached, or refused the whole exchange.
    #[error("{what}: {detail}")]
    Remote {
        /// What we were doing.
        what: String,
        /// What git said.
        detail: String,
    },
    /// What a reader of job refs runs first failed: the gatos crate's materialization of
    /// journaled enqueues ([`crate::Store::set_job_read_hook`], ADR 0046), with its code.
    #[error("{message}")]
    Hook {
        /// The code the hook's failure had.
        code: ErrorCode,
        /// Its message.
        message: String,
    },
    /// The `git` executable failed or could not run.
    #[error("`git {args}` failed ({status}): {stderr}")]
    Subprocess {
        /// The arguments, for the message.
        args: String,
        /// The exit status.
        status: String,
        /// The last lines git printed on stderr.
        stderr: String,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn git(context: impl Into<String>, e: &gix::Error) -> Error {
        if e.is_not_found()
            && let Some(missing) = missing_object_id(e)
        {
            return Error::MissingObject { id: missing };
        }
        Error::Git {
            context: context.into(),
            message: format!("{e:#}"),
        }
    }

    /// Tells whether this is a CAS mismatch (the plane then decides its code).
    pub fn is_cas_mismatch(&self) -> bool {
        matches!(self, Error::CasMismatch { .. })
    }
}

fn missing_object_id(e: &gix::Error) -> Option<Oid> {
    // "An object with id <hex> could not be found": the id is the first 40-hex word.
    let text = format!("{e:#}");
    text.split(|c: char| !c.is_ascii_hexdigit())
        .find(|w| w.len() == 40)
        .and_then(|w| w.parse().ok())
}

impl Coded for Error {
    fn code(&self) -> ErrorCode {
        match self {
            Error::NotARepository { .. } => ErrorCode::NotFound,
            Error::Unsupported(_) => ErrorCode::InvalidInput,
            Error::CasMismatch { .. } | Error::Locked { .. } => ErrorCode::Conflict,
            Error::Lock(locks::Error::Busy { .. }) => ErrorCode::Conflict,
            Error::Lock(locks::Error::Io { .. }) => ErrorCode::Internal,
            Error::MissingObject { .. } | Error::UnknownRevision { .. } => ErrorCode::NotFound,
            Error::Corrupt { .. } => ErrorCode::InvalidEnvelope,
            Error::TreePath(_) => ErrorCode::InvalidInput,
            Error::CollisionAttack { .. } => ErrorCode::InvalidInput,
            Error::Io { .. } | Error::Git { .. } => ErrorCode::Internal,
            Error::Subprocess { .. } | Error::Remote { .. } => ErrorCode::Unavailable,
            Error::Hook { code, .. } => *code,
        }
    }
}

/// A store result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
