//! `git gatos jobs watch`.

use std::time::Duration;

use gatos::Error;
use gatos::messages::{Cursor, MessageView};
use gatos_types::jobs::JobEvent;
use gatos_types::{Queue, Topic, Ulid};

use super::super::{Ctx, Since, parse, since_arg};
use crate::cli::WatchArgs;
use crate::output::Output;

/// One printed event: the event and its message's ULID (a `--since` cursor).
#[derive(serde::Serialize)]
struct Row<'a> {
    ulid: Ulid,
    #[serde(flatten)]
    event: &'a JobEvent,
}

/// Follows `gatos.jobs`, printing events as they come (only new ones unless `--since`).
pub fn run(ctx: &Ctx, out: &mut Output, a: &WatchArgs) -> Result<(), Error> {
    // The filter of the jobs.watch operation, as every face applies it.
    let filter = gatos_api::types::WatchParams {
        queue: a.queue.as_deref().map(parse::<Queue>).transpose()?,
        job: a.job.as_deref().map(parse::<Ulid>).transpose()?,
        since: None,
        since_time: None,
    };
    let topic: Topic = parse(gatos::jobs::EVENTS_TOPIC)?;
    let g = ctx.gatos()?;
    let cursor = match &a.since {
        Some(s) => match since_arg("--since", s, g.now())? {
            Since::Ulid(u) => Cursor::Ulid(u),
            Since::Time(t) => Cursor::Time(t),
        },
        None => Cursor::End,
    };
    out.streaming = true;
    let mut follower = g.messages().follow(&topic, cursor)?;
    let mut left = a.limit.unwrap_or(u64::MAX);
    while left > 0 {
        let mut printed = 0u64;
        let (n, _gap) = follower.poll(1000, |m: &MessageView<'_>| {
            let Some(ev) = filter.admits(m.payload.get()) else {
                return Ok(true);
            };
            if printed >= left {
                return Ok(false);
            }
            printed += 1;
            out.row(
                &Row {
                    ulid: m.ulid,
                    event: &ev,
                },
                |w| {
                    write!(
                        w,
                        "{} {:<15} job {} attempt {} queue {}",
                        ev.at, ev.event, ev.job, ev.attempt, ev.queue
                    )?;
                    if let Some(wk) = &ev.worker {
                        write!(w, " worker {wk}")?;
                    }
                    // Why the job or attempt ended (ADR 0029).
                    match &ev.reason {
                        Some(r) => write!(w, ": {r}"),
                        None => Ok(()),
                    }
                },
            )?;
            Ok(true)
        })?;
        left -= printed.min(left);
        if n == 0 && left > 0 {
            follower.wait(Duration::from_secs(60))?;
        }
    }
    Ok(())
}
