//! `git gatos doctor`.

use gatos::Error;
use gatos::doctor::{self, Finding, FindingCode, Severity};
use gatos_types::ErrorCode;

use super::Ctx;
use crate::cli::DoctorArgs;
use crate::output::Output;

fn print(out: &mut Output, f: &Finding) -> Result<(), Error> {
    out.row(f, |w| {
        let sev = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            w,
            "{sev}[{}] {}: {}\n  {}: {}",
            f.code,
            f.target,
            f.message,
            if f.fixed { "fixed by" } else { "fix" },
            f.fix
        )
    })
}

/// Runs the checks; fails (exit 1) when an error-level finding remains.
pub fn run(ctx: &Ctx, out: &mut Output, a: &DoctorArgs) -> Result<(), Error> {
    let findings = match ctx.gatos() {
        // Fixing is the CLI's own (it acts on this node's files); checking is the
        // doctor.check operation every face offers.
        Ok(_) if !a.fix => ctx.service()?.doctor_check().map_err(super::api)?.findings,
        Ok(g) => doctor::run_with(
            &g,
            doctor::Options {
                fix: a.fix,
                force: a.force,
            },
        )?,
        // Invalid gatos settings stop the repository from opening at all.
        Err(e) if e.code() == ErrorCode::InvalidInput => vec![Finding {
            severity: Severity::Error,
            code: FindingCode::ConfigInvalid,
            target: "git config".to_owned(),
            message: e.to_string(),
            fix: "git config --unset KEY   # or set a valid value (docs/operations.md#config-invalid)"
                .to_owned(),
            fixed: false,
        }],
        Err(e) => return Err(e),
    };
    for f in &findings {
        print(out, f)?;
    }
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error && !f.fixed)
        .count();
    let warnings = findings.len() - errors;
    if !out.is_json() {
        out.row(&(), |w| {
            if findings.is_empty() {
                write!(w, "healthy: no findings")
            } else {
                write!(
                    w,
                    "{}, {}",
                    crate::output::count(errors, "error", "errors"),
                    crate::output::count(warnings, "warning", "warnings")
                )
            }
        })?;
    }
    // What durable snapshots pin (ADR 0044): their refs keep every object they reach.
    if !out.is_json()
        && let Ok(g) = ctx.gatos()
        && let Ok(c) = gatos::snapshot::saved::census(&g)
        && c.snapshots > 0
    {
        out.row(&(), |w| {
            write!(
                w,
                "{} holding {} (their objects are kept from gc; git gatos snapshot ls)",
                crate::output::count(c.snapshots, "snapshot", "snapshots"),
                crate::output::count(usize::try_from(c.refs).unwrap_or(usize::MAX), "ref", "refs"),
            )
        })?;
    }
    if errors > 0 {
        // InvalidEnvelope (exit 1): the repository holds data that breaks its invariants.
        return Err(Error::new(
            ErrorCode::InvalidEnvelope,
            format!("doctor found {errors} broken invariants (see above)"),
        ));
    }
    Ok(())
}
