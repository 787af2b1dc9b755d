//! `git gatos snapshot create NAME | ls | rm NAME` (ADR 0044): the `snapshots.*`
//! operations.

use gatos::Error;
use gatos::snapshot::saved::SnapshotDoc;
use gatos_api::snapshots::SnapshotNameParams;

use super::{Ctx, api};
use crate::cli::SnapshotCommand;
use crate::output::Output;

fn print(out: &mut Output, doc: &SnapshotDoc, verb: &str) -> Result<(), Error> {
    out.row(doc, |w| {
        write!(
            w,
            "{verb}{} {} {} refs={}{}",
            doc.name,
            doc.state,
            doc.taken_at,
            doc.refs,
            if doc.exact { "" } else { " inexact" }
        )
    })
}

/// Dispatches a snapshot verb.
pub fn run(ctx: &Ctx, out: &mut Output, cmd: &SnapshotCommand) -> Result<(), Error> {
    let svc = ctx.service()?;
    match cmd {
        SnapshotCommand::Create { name } => {
            let doc = svc
                .snapshots_create(&ctx.actor()?, SnapshotNameParams { name: name.clone() })
                .map_err(api)?;
            print(out, &doc, "created ")
        }
        SnapshotCommand::Ls => {
            for doc in svc.snapshots_list().map_err(api)?.snapshots {
                print(out, &doc, "")?;
            }
            Ok(())
        }
        SnapshotCommand::Rm { name } => {
            let doc = svc
                .snapshots_delete(&ctx.actor()?, SnapshotNameParams { name: name.clone() })
                .map_err(api)?;
            print(out, &doc, "deleted ")
        }
    }
}
