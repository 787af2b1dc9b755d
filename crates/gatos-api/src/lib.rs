//! `gatos-api`: the service layer every face maps (ADR 0025).
//!
//! - [`types`]: one request and one response type per operation (`<plane>.<verb>`), with
//!   JSON Schema from the same derive as serde;
//! - [`ops::OPS`]: the operation table — name, types, read or write, audited or not,
//!   unary, stream or session, and which faces may offer it;
//! - [`Service`]: the rules and compositions (validation, defaults, the enqueue pipeline,
//!   the rules of `jobs.complete`, actors, read-only mode).
//! - [`Node`]: what a long-running face runs beside its requests — start-up lock recovery,
//!   maintenance when writers find it due, background sync — started and stopped together.
//! - [`routes::ROUTES`]: the HTTP face's route per operation, and [`openapi`]: its OpenAPI
//!   3.1 document, built from both tables (ADR 0033).
//!
//! The CLI calls the typed methods; gatosd looks a method up in the table and calls
//! [`Service::call`]. Neither owns a rule of its own.
#![deny(missing_docs)]

pub mod actor;
pub mod node;
pub mod openapi;
pub mod ops;
pub mod routes;
pub mod service;
pub mod snapshots;
pub mod state;
pub mod types;

pub use actor::Actor;
pub use node::{Node, NodeOptions};
pub use ops::{OPS, Op};
pub use service::{Answer, CallError, Config, Now, ParkedCall, Service};
