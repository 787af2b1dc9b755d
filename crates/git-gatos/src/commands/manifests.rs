//! `git gatos manifests …`.

use gatos::Error;
use gatos_types::ManifestName;
use gatos_types::jobs::ManifestRow;

use super::jobs::{print_enqueued, read_manifest};
use super::{Ctx, parse};
use crate::cli::ManifestsCommand;
use crate::output::Output;

fn print(out: &mut Output, row: &ManifestRow, verb: &str) -> Result<(), Error> {
    out.row(row, |w| {
        write!(w, "{verb}{} v{} {}", row.name, row.version, row.content_id)
    })
}

/// Dispatches a manifest-registry verb.
pub fn run(ctx: &Ctx, out: &mut Output, cmd: &ManifestsCommand) -> Result<(), Error> {
    let g = ctx.gatos()?;
    match cmd {
        ManifestsCommand::Put { name, file } => {
            let name: ManifestName = parse(name)?;
            let put = g.manifests().put(&name, read_manifest(file)?)?;
            print(
                out,
                &put.row,
                if put.changed {
                    "registered "
                } else {
                    "unchanged "
                },
            )
        }
        ManifestsCommand::Get { name, version } => {
            let row = g.manifests().get(&parse(name)?, *version)?;
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
            for row in g.manifests().list()? {
                print(out, &row, "")?;
            }
            Ok(())
        }
        ManifestsCommand::Run { name, version } => {
            let row = g.manifests().run(&parse(name)?, *version)?;
            print_enqueued(out, &row)
        }
    }
}
