//! `git gatos audit`.

use gatos::Error;
use gatos::audit::AuditRecord;
use gatos_api::types::AuditParams;
use serde_json::Value;

use super::{Ctx, Since, api};
use crate::cli::AuditArgs;
use crate::output::Output;

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// Lists the audit trail, oldest first: the `audit.read` operation, page after page.
pub fn run(ctx: &Ctx, out: &mut Output, a: &AuditArgs) -> Result<(), Error> {
    let svc = ctx.service()?;
    let now = svc.gatos().now();
    let (since, since_time) = match &a.since {
        None => (None, None),
        Some(s) => match super::since_arg("--since", s, now)? {
            Since::Ulid(u) => (Some(u), None),
            Since::Time(t) => (None, Some(t)),
        },
    };
    let mut p = AuditParams {
        since,
        since_time,
        action: a.action.clone(),
        limit: Some(1_000),
    };
    loop {
        let page = svc.audit_read(p.clone()).map_err(api)?;
        for r in &page.records {
            print(out, r)?;
        }
        match page.next_since {
            Some(next) => {
                p.since = Some(next);
                p.since_time = None;
            }
            None => return Ok(()),
        }
    }
}

fn print(out: &mut Output, r: &AuditRecord) -> Result<(), Error> {
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
    })
}
