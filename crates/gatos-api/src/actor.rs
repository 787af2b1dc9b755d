//! Who a call acts for.

use std::fmt;

/// The party a call acts for, recorded with every write it makes (the actor trailer of its
/// commits, the `actor` of signed enqueues and cancels, and audit records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// `git gatos` run by a local user (the repository's gatos identity).
    Cli(String),
    /// A gatosd JSON-RPC client: the peer's uid on the Unix socket, `stdio`, or `tcp`.
    Rpc(String),
    /// An HTTP client, by the name of its token.
    Http(String),
    /// An MCP client, by the name it gave.
    Mcp(String),
    /// A dashboard session of the HTTP face, by its public id (ADR 0045).
    Web(String),
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (face, who) = match self {
            Actor::Cli(w) => ("cli", w),
            Actor::Rpc(w) => ("rpc", w),
            Actor::Http(w) => ("http", w),
            Actor::Mcp(w) => ("mcp", w),
            Actor::Web(w) => ("web", w),
        };
        // A name given by a client is shown, never trusted as structure: no newlines or
        // control characters reach a trailer, and it stays short.
        let clean: String = who.chars().filter(|c| !c.is_control()).take(64).collect();
        write!(f, "{face}:{clean}")
    }
}
