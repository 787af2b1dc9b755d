//! `git gatos export` and `git gatos export verify`.

use std::io::Write as _;
use std::time::Instant;

use gatos::{Error, Gatos, OpenOptions};
use gatos_export::{ExportOptions, FilterArgs, Format};
use gatos_types::ErrorCode;

use super::Ctx;
use crate::cli::{ExportArgs, ExportCommand};
use crate::output::{Output, usage};

/// Exports, or verifies an export.
pub fn run(ctx: &Ctx, out: &mut Output, a: &ExportArgs) -> Result<(), Error> {
    if let Some(ExportCommand::Verify { path, repo }) = &a.command {
        let g = match repo {
            Some(dir) => Some(Gatos::discover(dir, OpenOptions::from_test_env()?)?),
            None => None,
        };
        let path = ctx.cwd.join(path);
        let report = gatos_export::verify(&path, g.as_ref())?;
        return out.row(&report, |w| {
            for (t, e) in &report.tables {
                writeln!(w, "{t:<12} {:>9} {:<4}  {}", e.rows, rows(e.rows), e.digest)?;
            }
            write!(
                w,
                "ok: explorer-root {}{}",
                report.explorer_root,
                if report.repository_checked {
                    " (rows match the repository)"
                } else {
                    " (internally consistent; pass --repo DIR to check the rows against a repository)"
                }
            )
        });
    }
    let format = match a.format.as_deref() {
        Some("sqlite") => Format::Sqlite,
        Some("parquet") => Format::Parquet,
        _ => {
            return Err(usage(
                "export needs --format sqlite|parquet (or `export verify PATH`)",
            ));
        }
    };
    let Some(path) = &a.out else {
        return Err(usage("export needs --out PATH"));
    };
    let g = ctx.gatos()?;
    let has_filter = a.since.is_some()
        || a.until.is_some()
        || !a.tables.is_empty()
        || !a.columns.is_empty()
        || !a.wheres.is_empty();
    if a.incremental && has_filter {
        return Err(Error::new(
            ErrorCode::InvalidInput,
            "--incremental reuses the earlier export's selection; drop --since/--until/--tables/--columns/--where",
        ));
    }
    let filter = FilterArgs {
        since: a
            .since
            .as_deref()
            .map(|s| gatos_export::resolve_bound(&g, "--since", s))
            .transpose()?,
        until: a
            .until
            .as_deref()
            .map(|s| gatos_export::resolve_bound(&g, "--until", s))
            .transpose()?,
        tables: a.tables.clone(),
        columns: a.columns.clone(),
        wheres: a.wheres.clone(),
    };
    let opts = ExportOptions {
        format,
        out: ctx.cwd.join(path),
        filter,
        incremental: a.incremental,
        as_of: a
            .as_of
            .as_deref()
            .map(|s| {
                gatos_types::Timestamp::parse_rfc3339(s)
                    .map(gatos_types::Timestamp::as_millis)
                    .map_err(|e| Error::from(e).context("--as-of (RFC 3339)"))
            })
            .transpose()?,
    };
    let show = out.progress_allowed();
    let started = Instant::now();
    let mut progress = |table: &str, rows: u64| {
        if show {
            let mut e = std::io::stderr().lock();
            let _ = write!(
                e,
                "\r\x1b[2Kexporting {table}: {} ({:.1}s)",
                crate::output::count(rows, "row", "rows"),
                started.elapsed().as_secs_f64()
            );
            let _ = e.flush();
        }
    };
    let manifest = gatos_export::export(&g, &opts, &mut progress)?;
    if show {
        let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
    }
    let shown = clean_path(&opts.out);
    let row = serde_json::json!({
        "out": shown,
        "format": manifest.format,
        "explorer_root": manifest.explorer_root,
        "increments": manifest.increments,
        "tables": manifest.tables,
    });
    out.row(&row, |w| {
        for (t, e) in &manifest.tables {
            writeln!(w, "{t:<12} {:>9} {:<4}  {}", e.rows, rows(e.rows), e.digest)?;
        }
        write!(
            w,
            "exported to {} ({}); explorer-root {}",
            shown.display(),
            manifest.format,
            manifest.explorer_root
        )
    })
}

/// The unit of a table line's count, in the singular for one (scripts/explorer_root.py
/// prints the same lines).
fn rows(n: u64) -> &'static str {
    if n == 1 { "row" } else { "rows" }
}

/// The absolute path of what was written, without the `..` a relative `--out` leaves after
/// the working directory (`/r/repo/../ledger.sqlite` is `/r/ledger.sqlite`): its directory
/// resolved by the file system, its own name as given.
fn clean_path(out: &std::path::Path) -> std::path::PathBuf {
    match (out.parent(), out.file_name()) {
        (Some(dir), Some(name)) => std::fs::canonicalize(dir)
            .map(|d| d.join(name))
            .unwrap_or_else(|_| out.to_path_buf()),
        _ => out.to_path_buf(),
    }
}
