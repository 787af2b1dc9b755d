//! `git gatos jobs ls`: the `jobs.list` operation, page after page.

use gatos::Error;
use gatos_api::types::ListParams;
use gatos_types::ErrorCode;
use gatos_types::jobs::JobState;

use super::super::{Ctx, api, parse};
use super::print_row;
use crate::cli::LsArgs;
use crate::output::Output;

/// Lists jobs, oldest first: every match, or `--limit` of them and where to go on.
pub fn run(ctx: &Ctx, out: &mut Output, a: &LsArgs) -> Result<(), Error> {
    let state = match &a.state {
        Some(s) => Some(
            s.parse::<JobState>()
                .map_err(|e| Error::new(ErrorCode::InvalidInput, e))?,
        ),
        None => None,
    };
    let svc = ctx.service()?;
    let now = svc.gatos().now();
    let time = |flag: &str, s: &Option<String>| {
        s.as_deref()
            .map(|s| super::super::since_arg(flag, s, now).map(super::super::Since::time))
            .transpose()
    };
    let mut p = ListParams {
        queue: a.queue.as_deref().map(parse).transpose()?,
        state,
        capability: a.cap.as_deref().map(parse).transpose()?,
        enqueuer: a.enqueuer.clone(),
        since: time("--since", &a.since)?,
        until: time("--until", &a.until)?,
        id_prefix: a.id_prefix.clone(),
        label: a.label.clone(),
        all: a.all,
        cursor: a.after.as_deref().map(parse).transpose()?,
        // Without --limit every match is printed, in the largest pages the operation
        // gives (each page lists the job refs once).
        limit: a.limit.or(Some(gatos::jobs::catalog::MAX_LIMIT)),
    };
    loop {
        let page = svc.jobs_list(p.clone()).map_err(api)?;
        for row in &page.jobs {
            print_row(out, row)?;
        }
        match (page.next_cursor, a.limit) {
            (None, _) => return Ok(()),
            (Some(next), Some(_)) => {
                let tail = serde_json::json!({ "next_cursor": next });
                return out.row(&tail, |w| write!(w, "next: {next} (--after {next})"));
            }
            (Some(next), None) => p.cursor = Some(next),
        }
    }
}
