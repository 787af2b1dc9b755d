//! Cross-process tests: real `git-gatos` (and `gatosd`) binaries on real repositories.
//!
//! The binaries are found next to the test executable; `cargo test --workspace` builds
//! them (and `.ci/run` builds `--bins` first to be sure).
#![allow(
    clippy::unwrap_used,
    clippy::print_stderr,
    missing_docs,
    reason = "tests"
)]

mod admission;
mod cli;
mod crash;
mod daemon;
mod dashboard;
mod dashboard_browser;
mod ended;
mod export;
mod graphql;
mod http;
mod http_etag;
mod http_idem;
mod http_jobstream;
mod http_limits;
mod http_metrics;
mod http_sse;
mod install;
mod isolation;
mod jobs;
mod logs;
mod mcp;
mod messages;
mod messages_consume;
mod mistakes;
mod openapi;
mod parity;
mod ready;
mod support;
mod sync;
mod why;
mod wording;
