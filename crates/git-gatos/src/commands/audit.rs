//! `git gatos audit`.

use gatos::Error;
use gatos::audit::{self, AuditRecord, Since};
use gatos_types::Ulid;
use serde_json::Value;

use super::Ctx;
use crate::cli::AuditArgs;
use crate::output::Output;

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// Lists the audit trail, oldest first.
pub fn run(ctx: &Ctx, out: &mut Output, a: &AuditArgs) -> Result<(), Error> {
    let g = ctx.gatos()?;
    let since = match &a.since {
        None => Since::Start,
        Some(s) => match s.parse::<Ulid>() {
            Ok(u) => Since::After(u),
            // A DUR means that long ago: a window ending now.
            Err(_) => Since::Time(match gatos_types::Dur::parse(s) {
                Ok(d) => g.now().minus(d),
                Err(_) => gatos_types::time::parse_time(s, g.now())
                    .map_err(|e| Error::from(e).context("--since (a ULID, a TIME or a DUR ago)"))?,
            }),
        },
    };
    audit::list(&g, since, |r: &AuditRecord| {
        if a.action.as_deref().is_some_and(|want| r.action != want) {
            return Ok(true);
        }
        out.row(r, |w| {
            write!(
                w,
                "{}  {}  {:<24} {}  {} -> {}",
                gatos::messages::ulid_time(r.ulid),
                text(&r.actor),
                text(&r.action),
                text(&r.target),
                text(&r.before),
                text(&r.after)
            )
        })?;
        Ok(true)
    })
}
