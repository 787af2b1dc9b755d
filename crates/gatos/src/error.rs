//! The one error type of the public API: a stable code plus the precise error inside.

use std::fmt;

use gatos_types::{Coded, ErrorBody, ErrorCode};

/// A failure of any gatos operation.
///
/// `Display` shows the inner error's message; `source()` continues with the inner error's
/// own source, so a chain never prints a message twice. `details` carries machine-readable
/// extras (for example `landed` for a partly written batch) that both front doors render.
pub struct Error {
    code: ErrorCode,
    inner: Box<dyn std::error::Error + Send + Sync>,
    details: serde_json::Map<String, serde_json::Value>,
}

impl Error {
    /// Makes an error from a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Error {
        Error {
            code,
            inner: Box::new(Message(message.into())),
            details: serde_json::Map::new(),
        }
    }

    /// Returns the stable code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// Returns the HTTP-like status of the code.
    pub fn status(&self) -> u16 {
        self.code.status()
    }

    /// Adds a machine-readable detail.
    #[must_use]
    pub fn with_detail(mut self, key: &str, value: impl Into<serde_json::Value>) -> Error {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    /// Returns the details.
    pub fn details(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.details
    }

    /// Returns the error as its JSON body (`{code, status, message}`).
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code,
            status: self.code.status(),
            message: self.to_string(),
        }
    }

    /// Returns the inner error, to downcast.
    pub fn inner(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.inner
    }

    /// Prefixes the message with context, keeping the code, the details and the cause
    /// (as the error's `source`).
    #[must_use]
    pub fn context(self, what: impl fmt::Display) -> Error {
        let message = format!("{what}: {self}");
        Error {
            code: self.code,
            inner: Box::new(Context {
                message,
                source: self.inner,
            }),
            details: self.details,
        }
    }
}

/// Keeps the error as the inner one (to downcast, and whose source continues the chain),
/// with its code and its details ([`Coded::details`]).
impl<E: Coded + Send + Sync + 'static> From<E> for Error {
    fn from(e: E) -> Error {
        Error {
            code: e.code(),
            details: e.details(),
            inner: Box::new(e),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error[{}]: {:?}", self.code, self.inner)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner.source()
    }
}

/// A plain message error, for codes decided on the spot.
#[derive(Debug)]
struct Message(String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}

/// A result of the public API.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A message with context before it, and the error it explains as its source.
#[derive(Debug)]
struct Context {
    message: String,
    source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Context {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keeps_the_code_the_details_and_the_cause() {
        let e = Error {
            code: ErrorCode::Internal,
            inner: Box::new(std::io::Error::other("disk full")),
            details: serde_json::Map::new(),
        }
        .with_detail("landed", 3)
        .context("3 messages landed");
        assert_eq!(e.to_string(), "3 messages landed: disk full");
        assert_eq!(e.details().get("landed"), Some(&serde_json::json!(3)));
        let cause = std::error::Error::source(e.inner()).map(ToString::to_string);
        assert_eq!(cause.as_deref(), Some("disk full"));
    }
}
