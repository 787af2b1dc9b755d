//! Pure data for gatos: identifiers, names, canonical JSON, documents, wire rows and the
//! error taxonomy.
//!
//! This crate does no I/O and never reads the clock: values are validated once when they
//! are parsed and are typed afterwards, so a bad name can never reach a ref and a digest can
//! never be compared as a string.
//!
//! ```
//! use gatos_types::{jcs, name::Topic};
//! let topic: Topic = "ci.events".parse()?;
//! let bytes = jcs::canonicalize(br#"{"b": 2, "a": 1}"#)?;
//! assert_eq!(bytes, br#"{"a":1,"b":2}"#);
//! assert!("CI events".parse::<Topic>().is_err());
//! # let _ = topic;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod digest;
pub mod envelope;
pub mod error;
pub mod jcs;
pub mod jobs;
pub mod name;
pub mod sync;
pub mod time;
pub mod trailers;
pub mod ulid;
pub mod wire;

pub use digest::{Digest, KeyId, Oid};
pub use error::{Coded, ErrorBody, ErrorCode};
pub use name::{Capability, Group, ManifestName, Queue, SnapshotName, Topic, WorkerId};
pub use time::{Dur, Timestamp};
pub use ulid::Ulid;
