//! `git gatos manifests …`.

use gatos::Error;
use gatos_types::ManifestName;
use gatos_types::jobs::ManifestRow;

use super::jobs::{print_enqueued, read_manifest};
use super::{Ctx, api, parse};
use crate::cli::ManifestsCommand;
use crate::output::Output;
use gatos_api::types::ManifestRefParams;

fn print(out: &mut Output, row: &ManifestRow, verb: &str) -> Result<(), Error> {
    out.row(row, |w| {
        write!(w, "{verb}{} v{} {}", row.name, row.version, row.content_id)
    })
}

/// Dispatches a manifest-registry verb.
pub fn run(ctx: &Ctx, out: &mut Output, cmd: &ManifestsCommand) -> Result<(), Error> {
    let (svc, actor) = (ctx.service()?, ctx.actor()?);
    match cmd {
        ManifestsCommand::Put { name, file } => {
            let name: ManifestName = parse(name)?;
            let put = svc
                .manifests_put_input(&actor, &name, read_manifest(file)?)
                .map_err(api)?;
            // The answer of manifests.put, as every face gives it (`changed` included).
            let verb = if put.changed {
                "registered "
            } else {
                "unchanged "
            };
            let row = &put.row;
            out.row(&put, |w| {
                write!(w, "{verb}{} v{} {}", row.name, row.version, row.content_id)
            })
        }
        ManifestsCommand::Get { name, version } => {
            let row = svc
                .manifests_get(ManifestRefParams {
                    name: parse(name)?,
                    version: *version,
                })
                .map_err(api)?;
            if out.is_json() {
                return print(out, &row, "");
            }
            let doc = serde_json::to_string_pretty(&row.manifest).unwrap_or_default();
            out.row(&row, |w| {
                write!(
                    w,
                    "# {} v{} {}\n{doc}",
                    row.name, row.version, row.content_id
                )
            })
        }
        ManifestsCommand::Ls => {
            for row in svc.manifests_list().map_err(api)?.manifests {
                print(out, &row, "")?;
            }
            Ok(())
        }
        ManifestsCommand::Run { name, version } => {
            let row = svc
                .manifests_run(
                    &actor,
                    ManifestRefParams {
                        name: parse(name)?,
                        version: *version,
                    },
                )
                .map_err(api)?;
            print_enqueued(out, &row)
        }
    }
}
