//! The JSON-RPC 2.0 model of `gatosd`: JSONL framing, requests and batches, and error
//! objects. The methods themselves (names, params, results) are the operations of
//! `gatos-api`; this crate only carries them.
//!
//! No sockets and no runtime here: the daemon feeds bytes in and writes lines out, and the
//! fuzz targets drive the same code.
//!
//! ```
//! use gatos_rpc::{frame::{Decoder, Frame}, message};
//! let mut d = Decoder::new(1024);
//! let mut frames = Vec::new();
//! d.feed(br#"{"jsonrpc":"2.0","method":"gatos.version","id":1}"#, &mut frames);
//! d.feed(b"\n", &mut frames);
//! let Frame::Line(line) = &frames[0] else { unreachable!() };
//! assert!(matches!(message::parse(line)?, message::Incoming::Single(_)));
//! # Ok::<(), gatos_rpc::error::RpcError>(())
//! ```
#![deny(missing_docs)]

pub mod error;
pub mod frame;
pub mod message;

pub use error::RpcError;
