//! `git gatos jobs verify`.

use gatos::Error;
use gatos_api::types::JobIdParams;
use gatos_types::jobs::VerifyRow;
use gatos_types::{ErrorCode, Ulid};

use super::super::{Ctx, parse};
use crate::cli::VerifyArgs;
use crate::output::Output;

fn print(out: &mut Output, r: &VerifyRow) -> Result<(), Error> {
    out.row(r, |w| match (&r.key, r.verified) {
        (Some(k), true) => write!(w, "{} verified (key {k})", r.id),
        (_, _) => write!(
            w,
            "{} NOT verified: [{}] {}",
            r.id,
            r.code.map_or("?", |c| c.as_str()),
            r.error.as_deref().unwrap_or("")
        ),
    })
}

/// Verifies one job's proof (failing with its code), or every proof (failing if any
/// proof is bad; results with nothing to prove are listed, not failed).
pub fn run(ctx: &Ctx, out: &mut Output, a: &VerifyArgs) -> Result<(), Error> {
    if a.all {
        let rows = ctx.gatos()?.jobs().verify_all()?;
        let bad = rows
            .iter()
            .filter(|r| !r.verified && r.code != Some(ErrorCode::NotFound))
            .count();
        for r in &rows {
            print(out, r)?;
        }
        if bad > 0 {
            let first = rows
                .iter()
                .find(|r| !r.verified && r.code != Some(ErrorCode::NotFound));
            let code = first
                .and_then(|r| r.code)
                .unwrap_or(ErrorCode::SignatureInvalid);
            return Err(Error::new(
                code,
                format!(
                    "{bad} of {} did not verify",
                    crate::output::count(rows.len(), "proof", "proofs")
                ),
            ));
        }
        return Ok(());
    }
    let id =
        a.id.as_deref()
            .map(parse::<Ulid>)
            .transpose()?
            .ok_or_else(|| crate::output::usage("give a job id or --all"))?;
    let row = ctx
        .service()?
        .jobs_verify(JobIdParams { id })
        .map_err(super::super::api)?;
    // The answer is the operation's row (as over RPC) with --json; a person reads a
    // failure once, as the error.
    if row.verified || out.is_json() {
        print(out, &row)?;
    }
    if row.verified {
        return Ok(());
    }
    let mut e = Error::new(
        row.code.unwrap_or(ErrorCode::SignatureInvalid),
        row.error
            .unwrap_or_else(|| "the proof did not verify".into()),
    )
    .with_detail("id", row.id.to_string());
    if let Some(k) = row.key {
        e = e.with_detail("key", k.to_string());
    }
    Err(e)
}
