//! `git gatos messages read`.

use std::time::Duration;

use gatos::Error;
use gatos::messages::Cursor;
use gatos_types::Topic;

use super::super::{Ctx, Since, parse, since_arg};
use super::{print_message, warn_gap};
use crate::cli::ReadArgs;
use crate::output::Output;

/// Messages a follower takes per poll.
const FOLLOW_BATCH: u64 = 1000;

/// Streams messages after the cursor; with `--follow`, keeps waiting for more.
pub fn run(ctx: &Ctx, out: &mut Output, a: &ReadArgs) -> Result<(), Error> {
    let topic: Topic = parse(&a.topic)?;
    let g = ctx.gatos()?;
    let cursor = match (&a.since, a.since_seq) {
        (Some(s), _) => match since_arg("--since", s, g.now())? {
            Since::Ulid(u) => Cursor::Ulid(u),
            Since::Time(t) => Cursor::Time(t),
        },
        (None, Some(n)) => Cursor::Seq(n),
        (None, None) if a.follow => Cursor::End,
        (None, None) => Cursor::Start,
    };
    super::check_topic(ctx, out, &topic, a.follow)?;
    if !a.follow {
        // With --limit this is a page: it also ends at the page byte cap.
        let cap = a.limit.map_or(u64::MAX, |_| a.max_page_bytes);
        let mut bytes = 0u64;
        let end = g.messages().scan(&topic, &cursor, a.limit, |m| {
            print_message(out, m)?;
            bytes = bytes.saturating_add(m.page_bytes());
            Ok(bytes < cap)
        })?;
        warn_gap(out, &topic, end.gap);
        return Ok(());
    }
    out.streaming = true;
    let mut follower = g.messages().follow(&topic, cursor)?;
    let mut left = a.limit.unwrap_or(u64::MAX);
    while left > 0 {
        let (n, gap) = follower.poll(left.min(FOLLOW_BATCH), |m| {
            print_message(out, m).map(|()| true)
        })?;
        warn_gap(out, &topic, gap);
        left -= n.min(left);
        if n == 0 {
            follower.wait(Duration::from_secs(60))?;
        }
    }
    Ok(())
}
