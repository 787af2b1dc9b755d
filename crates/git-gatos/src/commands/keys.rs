//! `git gatos keys …`.

use gatos::Error;
use gatos::keys::Reason;

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
            for row in ctx.service()?.keys_list().map_err(super::api)?.keys {
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
            let id = key_arg(key)?;
            let added = g.keys().trust(&id)?;
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
                .map(|s| super::since_arg("--since", s, g.now()).map(super::Since::time))
                .transpose()?;
            let rev = g.keys().revoke(&key_arg(key)?, reason, since)?;
            out.row(&rev, |w| {
                write!(w, "revoked {} ({})", rev.key, reason.as_str())
            })
        }
    }
}

/// A key named on the command line: a key id, its hex, or a file holding either or a PEM
/// key (reading the file is the CLI's job; the library takes key ids only).
fn key_arg(arg: &str) -> Result<gatos_types::KeyId, Error> {
    if let Ok(k) = gatos::keys::key_id_from_text(arg) {
        return Ok(k);
    }
    let path = std::path::Path::new(arg.trim());
    if path.is_file() {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::new(
                gatos_types::ErrorCode::InvalidInput,
                format!("reading {}: {e}", path.display()),
            )
        })?;
        return gatos::keys::key_id_from_text(&text).map_err(|_| {
            Error::new(
                gatos_types::ErrorCode::InvalidInput,
                format!("{} holds no ed25519 key", path.display()),
            )
        });
    }
    Err(Error::new(
        gatos_types::ErrorCode::InvalidInput,
        format!("{arg:?} is not a key id (ed25519:<hex>), hex, or a key file"),
    ))
}
