//! `git gatos keys …`.

use gatos::Error;
use gatos::keys::Reason;
use gatos_types::time::parse_time;

use super::Ctx;
use crate::cli::KeysCommand;
use crate::output::Output;

/// Dispatches a keys verb.
pub fn run(ctx: &Ctx, out: &mut Output, cmd: &KeysCommand) -> Result<(), Error> {
    let g = ctx.gatos()?;
    match cmd {
        KeysCommand::Init { rotate } => {
            let (row, created) = g.keys().init(*rotate)?;
            let verb = match (created, rotate) {
                (true, true) => "rotated to",
                (true, false) => "created",
                (false, _) => "found",
            };
            out.row(&row, |w| write!(w, "{verb} {} at {}", row.key, row.path))
        }
        KeysCommand::Show => {
            let row = g.keys().show()?;
            out.row(&row, |w| write!(w, "{} {}", row.key, row.path))
        }
        KeysCommand::Ls => {
            for row in g.keys().list()? {
                out.row(&row, |w| {
                    let mut tags = Vec::new();
                    if row.current {
                        tags.push("signing".to_owned());
                    }
                    if row.trusted {
                        tags.push("trusted".to_owned());
                    }
                    if row.published {
                        tags.push("published".to_owned());
                    }
                    if let Some(r) = &row.revoked {
                        tags.push(format!("revoked ({r})"));
                    }
                    write!(w, "{} {}", row.key, tags.join(", "))
                })?;
            }
            Ok(())
        }
        KeysCommand::Trust { key } => {
            let (id, added) = g.keys().trust_spec(key)?;
            let row = serde_json::json!({"key": id, "trusted": true, "changed": added});
            out.row(&row, |w| {
                write!(
                    w,
                    "{} {id}",
                    if added { "trusted" } else { "already trusted" }
                )
            })
        }
        KeysCommand::Revoke { key, reason, since } => {
            let reason = if reason == "compromised" {
                Reason::Compromised
            } else {
                Reason::Superseded
            };
            let since = since
                .as_deref()
                .map(|s| parse_time(s, g.now()))
                .transpose()?;
            let rev = g.keys().revoke(key, reason, since)?;
            out.row(&rev, |w| {
                write!(w, "revoked {} ({})", rev.key, reason.as_str())
            })
        }
    }
}
