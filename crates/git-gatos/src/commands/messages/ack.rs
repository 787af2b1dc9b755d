//! `git gatos messages ack`.

use gatos::Error;
use gatos_types::{Group, Topic, Ulid};

use super::super::{Ctx, api, parse};
use crate::cli::AckArgs;
use crate::output::Output;
use gatos_api::types::AckParams;

/// Moves a group's checkpoint forward to a processed message.
pub fn run(ctx: &Ctx, out: &mut Output, a: &AckArgs) -> Result<(), Error> {
    let (group, topic, ulid): (Group, Topic, Ulid) =
        (parse(&a.group)?, parse(&a.topic)?, parse(&a.ulid)?);
    let done = ctx
        .service()?
        .messages_ack(&ctx.actor()?, AckParams { group, topic, ulid })
        .map_err(api)?;
    let c = &done.checkpoint;
    out.row(&done, |w| {
        let at = c.ulid.map_or_else(|| "-".to_owned(), |u| u.to_string());
        write!(
            w,
            "{} {} seq {} {} lag {}",
            c.group, c.topic, c.seq, at, c.lag
        )?;
        if !done.moved {
            write!(
                w,
                " (unchanged: {ulid} at seq {} is at or behind the checkpoint)",
                done.seq
            )?;
        }
        Ok(())
    })
}
