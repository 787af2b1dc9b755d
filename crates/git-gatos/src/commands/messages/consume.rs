//! `git gatos messages consume`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use gatos::Error;
use gatos::checkpoints::{AckMode, ConsumePage, Consumer, Delivery, FollowOptions};
use gatos_types::{ErrorCode, Group, Topic};

use super::super::{Ctx, parse};
use super::{print_message, warn_gap};
use crate::cli::ConsumeArgs;
use crate::output::Output;

/// How long a waiting follower goes without looking at the stop flag: the longest a
/// signal waits to be noticed while the topic is quiet.
const STOP_CHECK: Duration = Duration::from_millis(200);

/// Prints a page after the checkpoint, then advances it (unless `--ack manual`); with
/// `--follow`, keeps doing so until a signal or a closed output ends it.
pub fn run(ctx: &Ctx, out: &mut Output, a: &ConsumeArgs) -> Result<(), Error> {
    let (group, topic): (Group, Topic) = (parse(&a.group)?, parse(&a.topic)?);
    if a.limit == 0 || a.limit > gatos::messages::MAX_PAGE {
        return Err(Error::new(
            ErrorCode::InvalidInput,
            "--limit must be between 1 and 10000",
        ));
    }
    if a.max_unacked == 0 {
        return Err(Error::new(
            ErrorCode::InvalidInput,
            "--max-unacked must be at least 1",
        ));
    }
    let ack = if a.ack == "manual" {
        AckMode::Manual
    } else {
        AckMode::Auto
    };
    let g = ctx.gatos()?;
    super::check_topic(ctx, out, &topic, a.follow)?;
    if !a.follow && ack == AckMode::Auto {
        return once(&g, out, a, &group, &topic);
    }
    let opts = FollowOptions {
        ack,
        max_unacked: a.max_unacked,
    };
    let mut consumer = g.checkpoints().follow(&group, &topic, opts)?;
    if !a.follow {
        let done = page(out, &mut consumer, a)?;
        warn_gap(out, &topic, done.gap);
        if !out.is_json() {
            out.hint(&format!(
                "checkpoint of '{group}' at seq {} (lag {}); {} printed message(s) await `git gatos messages ack {group} {topic} ULID`",
                done.checkpoint.seq, done.checkpoint.lag, done.unacked
            ));
        }
        return Ok(());
    }
    follow(out, &mut consumer, a, &topic)
}

/// One page with automatic acknowledgement: print, flush, then advance.
fn once(
    g: &gatos::Gatos,
    out: &mut Output,
    a: &ConsumeArgs,
    group: &Group,
    topic: &Topic,
) -> Result<(), Error> {
    // The page must reach the reader before the checkpoint moves: it is flushed at the
    // end of the page, and only a successful flush lets the checkpoint advance.
    let mut bytes = 0u64;
    let done = g
        .checkpoints()
        .consume_delivered(group, topic, a.limit, |step| match step {
            Delivery::Message(m) => {
                print_message(out, m)?;
                bytes = bytes.saturating_add(m.page_bytes());
                Ok(bytes < a.max_page_bytes)
            }
            Delivery::End => out.flush().map(|()| true),
        })?;
    warn_gap(out, topic, done.gap);
    if !out.is_json() {
        out.hint(&format!(
            "checkpoint of '{group}' at seq {} (lag {})",
            done.checkpoint.seq, done.checkpoint.lag
        ));
    }
    Ok(())
}

/// Prints the consumer's next page and flushes it; the library moves the checkpoint
/// (with `--ack auto`) only after the flush succeeded.
fn page(out: &mut Output, consumer: &mut Consumer, a: &ConsumeArgs) -> Result<ConsumePage, Error> {
    let mut bytes = 0u64;
    consumer.next_page(a.limit, |step| match step {
        Delivery::Message(m) => {
            print_message(out, m)?;
            bytes = bytes.saturating_add(m.page_bytes());
            Ok(bytes < a.max_page_bytes)
        }
        Delivery::End => out.flush().map(|()| true),
    })
}

/// Consumes page after page, waiting on the topic head (or, held back by
/// `--max-unacked`, on the checkpoint) in between.
///
/// A signal ends it between pages: the page in hand is finished (printed, flushed and,
/// with `--ack auto`, acknowledged), then the process dies of the signal as if it had
/// not caught it (exit status 130 for SIGINT, ADR 0003). A closed output ends it with
/// the error that `main` turns into a quiet exit 0; the page that failed is not
/// acknowledged.
fn follow(
    out: &mut Output,
    consumer: &mut Consumer,
    a: &ConsumeArgs,
    topic: &Topic,
) -> Result<(), Error> {
    let stop = Stop::install()?;
    out.streaming = true;
    'pages: while !stop.requested() {
        let done = page(out, consumer, a)?;
        warn_gap(out, topic, done.gap);
        if done.blocked {
            tracing::debug!(unacked = done.unacked, "waiting for an ack");
        }
        if done.count > 0 {
            continue;
        }
        while !consumer.wait(STOP_CHECK)? {
            if stop.requested() {
                break 'pages;
            }
        }
    }
    out.flush()?;
    stop.reraise();
    Ok(())
}

/// SIGINT and SIGTERM, caught: the first asks the loop to stop after the page in hand;
/// a second one while it finishes kills the process as usual.
struct Stop {
    requested: Arc<AtomicBool>,
    signal: Arc<AtomicUsize>,
}

impl Stop {
    fn install() -> Result<Stop, Error> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let stop = Stop {
            requested: Arc::new(AtomicBool::new(false)),
            signal: Arc::new(AtomicUsize::new(0)),
        };
        for sig in [SIGINT, SIGTERM] {
            let installed =
                signal_hook::flag::register_conditional_default(sig, Arc::clone(&stop.requested))
                    .and_then(|_| signal_hook::flag::register(sig, Arc::clone(&stop.requested)))
                    .and_then(|_| {
                        let n = usize::try_from(sig).unwrap_or_default();
                        signal_hook::flag::register_usize(sig, Arc::clone(&stop.signal), n)
                    });
            installed.map_err(|e| {
                Error::new(
                    ErrorCode::Internal,
                    format!("installing signal handlers: {e}"),
                )
            })?;
        }
        Ok(stop)
    }

    fn requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// Dies of the signal that stopped the loop, with its default action.
    fn reraise(&self) {
        if let Ok(sig) = i32::try_from(self.signal.load(Ordering::SeqCst))
            && sig != 0
        {
            tracing::debug!(signal = sig, "stopped by a signal after the page in hand");
            let _ = signal_hook::low_level::emulate_default_handler(sig);
        }
    }
}
