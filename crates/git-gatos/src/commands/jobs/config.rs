//! `git gatos jobs config`.

use gatos::Error;
use gatos_types::{Dur, Queue};

use super::super::{Ctx, parse};
use crate::cli::QueueConfigArgs;
use crate::output::Output;

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

/// Shows or changes a queue's retry backoff.
pub fn run(ctx: &Ctx, out: &mut Output, a: &QueueConfigArgs) -> Result<(), Error> {
    let queue: Queue = parse(&a.queue)?;
    let g = ctx.gatos()?;
    let base = dur("backoff-base", &a.backoff_base)?;
    let max = dur("backoff-max", &a.backoff_max)?;
    let cfg = if base.is_none() && max.is_none() {
        gatos::jobs::queues::config(&g, &queue)?
    } else {
        gatos::jobs::queues::set(&g, &queue, base, max)?.0
    };
    let show = |v: Option<u64>, d: u64| Dur::from_secs(v.unwrap_or(d)).to_string();
    out.row(&cfg, |w| {
        write!(
            w,
            "{}: backoff-base {} backoff-max {}",
            cfg.queue,
            show(cfg.backoff_base, 1),
            show(cfg.backoff_max, 600)
        )
    })
}
