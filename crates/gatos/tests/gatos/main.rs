//! Integration tests of the gatos library on real repositories, checked with real git.
#![allow(clippy::unwrap_used, clippy::print_stderr, reason = "tests")]

mod admission;
mod catalog;
mod checkpoints;
mod claims;
mod doctor;
mod enqueue_journal;
mod index;
mod jobs;
mod journal;
mod logs;
mod long_reads;
mod manifests;
mod messages;
mod states;
mod support;
mod sync_log;
