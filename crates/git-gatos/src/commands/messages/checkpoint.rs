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
            for d in &listed.damaged {
                out.warn(&format!(
                    "checkpoint of group '{}' on topic '{}' does not read: {}",
                    d.group, d.topic, d.message
                ));
            }
            match listed.damaged.first() {
                None => Ok(()),
                Some(first) => Err(Error::new(
                    first.code,
                    format!(
                        "{} ({}); git gatos doctor says more",
                        match listed.damaged.len() {
                            1 => "a checkpoint does not read".to_owned(),
                            n => format!("{n} checkpoints do not read"),
                        },
                        listed
                            .damaged
                            .iter()
                            .map(|d| format!("{} on {}", d.group, d.topic))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
                .with_detail(
                    "damaged",
                    serde_json::to_value(&listed.damaged).unwrap_or_default(),
                )),
            }
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
