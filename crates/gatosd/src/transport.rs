//! Where the daemon listens: a Unix socket, TCP, or stdin/stdout.

pub mod tcp;
pub mod token;
pub mod unix;
