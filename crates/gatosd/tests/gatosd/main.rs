//! gatosd in process: real sockets, real repositories, a shutdown the test controls.
#![allow(clippy::unwrap_used, missing_docs, reason = "tests")]

mod admission;
mod harness;
mod hostile;
mod http;
mod jobs;
mod protocol;
mod robustness;
mod subscriptions;
mod transports;
