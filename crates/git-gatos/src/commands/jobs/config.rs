//! `git gatos jobs config`.

use gatos::Error;
use gatos::jobs::queues::{self, Change};
use gatos_types::jobs::QueueRow;
use gatos_types::{Dur, Queue};

use super::super::{Ctx, parse};
use crate::cli::QueueConfigArgs;
use crate::output::{Output, usage};

fn dur(flag: &str, v: &Option<String>) -> Result<Option<Option<u64>>, Error> {
    match v.as_deref() {
        None => Ok(None),
        Some("off" | "default") => Ok(Some(None)),
        Some(s) => Ok(Some(Some(
            Dur::parse(s)
                .map_err(|e| Error::from(e).context(format_args!("--{flag}")))?
                .as_secs(),
        ))),
    }
}

/// `--max-pending N|none`: `0`, `none` and `off` remove the limit.
fn limit(v: &Option<String>) -> Result<Option<Option<u64>>, Error> {
    match v.as_deref() {
        None => Ok(None),
        Some("none" | "off" | "0") => Ok(Some(None)),
        Some(s) => s.parse::<u64>().map(|n| Some(Some(n))).map_err(|_| {
            usage(format!(
                "--max-pending must be a whole number or `none`, not {s:?}"
            ))
        }),
    }
}

/// Shows or changes a queue's retry backoff and admission limit, with its depth; without a
/// queue, shows every queue.
pub fn run(ctx: &Ctx, out: &mut Output, a: &QueueConfigArgs) -> Result<(), Error> {
    let change = Change {
        backoff_base: dur("backoff-base", &a.backoff_base)?,
        backoff_max: dur("backoff-max", &a.backoff_max)?,
        max_pending: limit(&a.max_pending)?,
    };
    let g = ctx.gatos()?;
    let Some(queue) = &a.queue else {
        if !change.is_empty() {
            return Err(usage("name the QUEUE to change"));
        }
        for row in queues::rows(&g, None)? {
            show(out, &row)?;
        }
        return Ok(());
    };
    let queue: Queue = parse(queue)?;
    if !change.is_empty() {
        queues::change(&g, &queue, &change)?;
    }
    for row in queues::rows(&g, Some(&queue))? {
        show(out, &row)?;
    }
    Ok(())
}

fn show(out: &mut Output, row: &QueueRow) -> Result<(), Error> {
    let backoff = |v: Option<u64>, d: u64| Dur::from_secs(v.unwrap_or(d)).to_string();
    let limit = row
        .max_pending
        .map_or_else(|| "none".to_owned(), |n| n.to_string());
    out.row(row, |w| {
        write!(
            w,
            "{}: backoff-base {} backoff-max {} max-pending {} pending {}",
            row.queue,
            backoff(row.backoff_base, 1),
            backoff(row.backoff_max, 600),
            limit,
            row.pending
        )
    })
}
