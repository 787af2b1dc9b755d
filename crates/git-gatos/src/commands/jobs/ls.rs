//! `git gatos jobs ls`.

use gatos::Error;
use gatos::jobs::ListOptions;
use gatos_types::ErrorCode;
use gatos_types::jobs::JobState;

use super::super::{Ctx, parse};
use super::print_row;
use crate::cli::LsArgs;
use crate::output::Output;

/// Lists jobs, oldest first.
pub fn run(ctx: &Ctx, out: &mut Output, a: &LsArgs) -> Result<(), Error> {
    let state = match &a.state {
        Some(s) => Some(
            s.parse::<JobState>()
                .map_err(|e| Error::new(ErrorCode::InvalidInput, e))?,
        ),
        None => None,
    };
    let opts = ListOptions {
        queue: a.queue.as_deref().map(parse).transpose()?,
        state,
        archived: a.all,
    };
    for row in ctx.gatos()?.jobs().list(&opts)? {
        print_row(out, &row)?;
    }
    Ok(())
}
