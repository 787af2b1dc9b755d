//! `git gatos messages checkpoint ls|get|set`.

use gatos::Error;
use gatos_types::wire::CheckpointRow;
use gatos_types::{Group, Topic, Ulid};

use super::super::{Ctx, api, parse};
use crate::cli::CheckpointCommand;
use crate::output::Output;
use gatos_api::types::{CheckpointGetParams, CheckpointListParams, CheckpointSetParams};

fn print(out: &mut Output, c: &CheckpointRow) -> Result<(), Error> {
    out.row(c, |w| {
        let ulid = c.ulid.map_or_else(|| "-".to_owned(), |u| u.to_string());
        write!(
            w,
            "{} {} seq {} {} lag {}",
            c.group, c.topic, c.seq, ulid, c.lag
        )
    })
}

/// Lists, gets or sets checkpoints.
pub fn run(ctx: &Ctx, out: &mut Output, cmd: &CheckpointCommand) -> Result<(), Error> {
    match cmd {
        CheckpointCommand::Ls { topic, group } => {
            let topic = topic.as_deref().map(parse::<Topic>).transpose()?;
            let group = group.as_deref().map(parse::<Group>).transpose()?;
            let listed = ctx
                .service()?
                .checkpoints_list(CheckpointListParams { topic, group })
                .map_err(api)?;
            for row in &listed.checkpoints {
                print(out, row)?;
            }
            // A checkpoint that does not read is named, and fails the command once the
            // others are listed (as `messages topics` does, ADR 0047).
            super::fail_on_damage(out, &listed.damaged, ("checkpoint", "checkpoints"), |d| {
                super::Damage {
                    named: format!("checkpoint of group '{}' on topic '{}'", d.group, d.topic),
                    short: format!("{} on {}", d.group, d.topic),
                    code: d.code,
                    message: &d.message,
                }
            })
        }
        CheckpointCommand::Get { group, topic } => {
            let (group, topic): (Group, Topic) = (parse(group)?, parse(topic)?);
            let row = ctx
                .service()?
                .checkpoints_get(CheckpointGetParams { group, topic })
                .map_err(api)?;
            print(out, &row)
        }
        CheckpointCommand::Set {
            group,
            topic,
            ulid,
            force,
        } => {
            let (group, topic, ulid): (Group, Topic, Ulid) =
                (parse(group)?, parse(topic)?, parse(ulid)?);
            let row = ctx
                .service()?
                .checkpoints_set(
                    &ctx.actor()?,
                    CheckpointSetParams {
                        group,
                        topic,
                        ulid,
                        force: *force,
                    },
                )
                .map_err(api)?;
            print(out, &row)
        }
    }
}
