//! `git gatos messages consume`.

use gatos::Error;
use gatos::checkpoints::Delivery;
use gatos_types::{ErrorCode, Group, Topic};

use super::super::{Ctx, parse};
use super::{print_message, warn_gap};
use crate::cli::ConsumeArgs;
use crate::output::Output;

/// Prints a page after the checkpoint, then advances it.
pub fn run(ctx: &Ctx, out: &mut Output, a: &ConsumeArgs) -> Result<(), Error> {
    let (group, topic): (Group, Topic) = (parse(&a.group)?, parse(&a.topic)?);
    if a.limit == 0 || a.limit > gatos::messages::MAX_PAGE {
        return Err(Error::new(
            ErrorCode::InvalidInput,
            "--limit must be between 1 and 10000",
        ));
    }
    let g = ctx.gatos()?;
    // The page must reach the reader before the checkpoint moves: it is flushed at the
    // end of the page, and only a successful flush lets the checkpoint advance.
    let mut bytes = 0u64;
    let done = g
        .checkpoints()
        .consume_delivered(&group, &topic, a.limit, |step| match step {
            Delivery::Message(m) => {
                print_message(out, m)?;
                bytes = bytes.saturating_add(m.page_bytes());
                Ok(bytes < a.max_page_bytes)
            }
            Delivery::End => out.flush().map(|()| true),
        })?;
    warn_gap(out, &topic, done.gap);
    if !out.is_json() {
        out.hint(&format!(
            "checkpoint of '{group}' at seq {} (lag {})",
            done.checkpoint.seq, done.checkpoint.lag
        ));
    }
    Ok(())
}
