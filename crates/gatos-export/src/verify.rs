//! `export verify`: recompute every table digest and the Explorer-Root from the exported
//! data, and, given the repository, from the commits the recorded refs name.

use std::collections::BTreeMap;
use std::path::Path;

use gatos::messages::chain::{self, ENVELOPE_PATH};
use gatos::{Error, Gatos};
use gatos_types::envelope::EnvelopeRef;
use gatos_types::{Digest, ErrorCode, Oid, Topic};
use serde::Serialize;

use crate::filter::{Filter, TableSpec};
use crate::manifest::Manifest;
use crate::parquet_sink::{self, MANIFEST_FILE};
use crate::root::{self, EXPORTER_VERSION, TableDigest, TableEntry, Version};
use crate::schema::{self, Cell};
use crate::source;
use crate::sqlite;

/// What `export verify --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// True when everything checked out (a failure is an error, so always true here).
    pub ok: bool,
    /// The recomputed Explorer-Root.
    pub explorer_root: String,
    /// Per table, rows and recomputed digest.
    pub tables: BTreeMap<String, TableEntry>,
    /// True when the rows were also checked against a repository.
    pub repository_checked: bool,
    /// The file format.
    pub format: String,
}

fn mismatch(what: impl Into<String>) -> Error {
    Error::new(ErrorCode::DigestMismatch, what)
}

fn table_mismatch(table: &str, why: impl std::fmt::Display) -> Error {
    mismatch(format!("table {table}: {why}"))
}

/// Verifies the export at `path` (a SQLite file or a Parquet directory).
///
/// # Errors
/// `DigestMismatch` naming the table (or `manifest`) that does not check out; `NotFound`
/// when the path or a recorded object is missing.
pub fn verify(path: &Path, repo: Option<&Gatos>) -> Result<VerifyReport, Error> {
    let parquet = path.is_dir();
    let (manifest, conn) = if parquet {
        let m = path.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&m).map_err(|e| {
            Error::new(
                ErrorCode::NotFound,
                format!("{}: no Parquet export manifest ({e})", m.display()),
            )
        })?;
        (Manifest::parse(&text)?, None)
    } else {
        let (c, m) = sqlite::open_read(path)?;
        (m, Some(c))
    };
    let Some(version) = Version::parse(&manifest.exporter) else {
        return Err(Error::new(
            ErrorCode::InvalidInput,
            format!(
                "made by {:?}; this is {EXPORTER_VERSION}, which verifies {} (verify with the gatos that wrote it)",
                manifest.exporter,
                Version::ALL.map(|v| format!("{:?}", v.as_str())).join(", ")
            ),
        ));
    };
    let filter = Filter::from_spec(&manifest.filter).map_err(|e| mismatch(e.to_string()))?;
    if filter.spec() != manifest.filter {
        return Err(mismatch(
            "manifest: the filter spec is not in canonical form",
        ));
    }
    if manifest.format != if parquet { "parquet" } else { "sqlite" } {
        return Err(mismatch(format!(
            "manifest: says format {:?}, but this is {}",
            manifest.format,
            if parquet {
                "a Parquet directory"
            } else {
                "a SQLite file"
            }
        )));
    }
    // gatos-export/1 has as_of exactly with a job table; gatos-export/2 only with one
    // (whether an exported job is unfinished is checked below, as far as the rows tell).
    let as_of_allowed = match version {
        Version::V1 => filter.has_job_tables() == filter.as_of.is_some(),
        Version::V2 | Version::V3 => filter.has_job_tables() || filter.as_of.is_none(),
    };
    if !as_of_allowed {
        return Err(mismatch(
            "manifest: the filter spec's as_of is missing or extra",
        ));
    }
    let recorded = source::RefState::from_recorded(manifest.refs.iter().cloned());
    for (t, src) in &manifest.topics {
        let head = t
            .parse()
            .map(gatos::snapshot::RefKind::MessageHead)
            .is_ok_and(|k| recorded.holds(&k, src.head));
        if !head {
            return Err(mismatch(format!(
                "manifest: topic {t}'s head is not among the recorded refs"
            )));
        }
    }
    let listed: Vec<&str> = manifest.tables.keys().map(String::as_str).collect();
    let specified: Vec<&str> = filter.tables.iter().map(|t| t.table().name).collect();
    if listed != specified {
        return Err(mismatch(format!(
            "manifest: tables {listed:?} differ from the filter's {specified:?}"
        )));
    }

    // The data as stored.
    let mut computed: BTreeMap<String, (u64, [u8; 32])> = BTreeMap::new();
    for ts in &filter.tables {
        let name = ts.table().name;
        let mut td = TableDigest::default();
        let mut buf = String::new();
        // Without as_of (gatos-export/2) no exported job may be in a state that holds only
        // at some moments.
        let momentary = (version != Version::V1 && filter.as_of.is_none() && name == "jobs")
            .then(jobs_state)
            .flatten();
        let mut push = |full: Vec<Cell>| -> Result<(), Error> {
            if let Some(i) = momentary
                && let Some(Cell::Text(state)) = full.get(i)
                && (state == "pending" || state == "running")
            {
                return Err(mismatch(format!(
                    "manifest: the filter spec's as_of is missing (an exported job is {state}, which holds only at some moments)"
                )));
            }
            td.push(ts.projection.digest(&full, &mut buf));
            Ok(())
        };
        match &conn {
            Some(c) => read_sqlite(c, ts, &mut push)?,
            None => parquet_sink::read_rows(path, &ts.projection, &mut push)?,
        }
        let (rows, digest) = td.finish().map_err(crate::sort_error(name))?;
        let entry = &manifest.tables[name];
        if entry.rows != rows {
            return Err(table_mismatch(
                name,
                format!(
                    "{rows} {}, the manifest says {}",
                    if rows == 1 { "row" } else { "rows" },
                    entry.rows
                ),
            ));
        }
        if root::parse_digest(&entry.digest) != Some(digest) {
            return Err(table_mismatch(
                name,
                format!(
                    "digest {} differs from the manifest's {}",
                    root::digest_text(&digest),
                    entry.digest
                ),
            ));
        }
        computed.insert(name.to_owned(), (rows, digest));
    }

    // The manifest's own fields.
    let ref_state = root::ref_state_digest(&manifest.refs);
    if root::parse_digest(&manifest.ref_state) != Some(ref_state) {
        return Err(mismatch("manifest: ref_state does not match its refs"));
    }
    let tables: Vec<(String, u64, [u8; 32])> = computed
        .iter()
        .map(|(t, (r, d))| (t.clone(), *r, *d))
        .collect();
    let rt = root::explorer_root(
        &ref_state,
        gatos_types::jcs::to_string(&manifest.filter).as_bytes(),
        &tables,
        version.as_str(),
    );
    if root::parse_digest(&manifest.explorer_root) != Some(rt) {
        return Err(mismatch(format!(
            "manifest: explorer_root {} differs from the recomputed {}",
            manifest.explorer_root,
            root::digest_text(&rt)
        )));
    }

    if let Some(g) = repo {
        let from_repo = recompute(g, &manifest, &filter, version)?;
        for (name, (rows, digest)) in &computed {
            let Some((r, d)) = from_repo.get(name) else {
                continue;
            };
            if r != rows || d != digest {
                return Err(table_mismatch(
                    name,
                    format!(
                        "the exported rows are not what the repository holds at the recorded refs ({rows} exported, {r} in the repository)"
                    ),
                ));
            }
        }
    }

    Ok(VerifyReport {
        ok: true,
        explorer_root: root::digest_text(&rt),
        tables: computed
            .into_iter()
            .map(|(t, (rows, d))| {
                (
                    t,
                    TableEntry {
                        rows,
                        digest: root::digest_text(&d),
                    },
                )
            })
            .collect(),
        repository_checked: repo.is_some(),
        format: manifest.format.clone(),
    })
}

fn read_sqlite(
    c: &rusqlite::Connection,
    ts: &TableSpec,
    f: &mut dyn FnMut(Vec<Cell>) -> Result<(), Error>,
) -> Result<(), Error> {
    let t = ts.table();
    let cols: Vec<String> = ts
        .projection
        .selected()
        .map(|c| sqlite::ident(c.name))
        .collect();
    let sql = format!("SELECT {} FROM {}", cols.join(", "), sqlite::ident(t.name));
    let mut st = c
        .prepare(&sql)
        .map_err(|e| table_mismatch(t.name, format!("cannot be read ({e})")))?;
    let mut rows = st
        .query([])
        .map_err(|e| table_mismatch(t.name, format!("cannot be read ({e})")))?;
    let width = t.columns.len();
    while let Some(r) = rows
        .next()
        .map_err(|e| table_mismatch(t.name, format!("cannot be read ({e})")))?
    {
        let mut full = vec![Cell::Null; width];
        for (n, &i) in ts.projection.columns.iter().enumerate() {
            let col = t.columns[i];
            let v = r
                .get_ref(n)
                .map_err(|e| table_mismatch(t.name, e.to_string()))?;
            full[i] = sqlite::from_sql(col.kind, v).ok_or_else(|| {
                table_mismatch(
                    t.name,
                    format!(
                        "column {} holds a value that is not a {}",
                        col.name,
                        col.kind.name()
                    ),
                )
            })?;
        }
        f(full)?;
    }
    Ok(())
}

/// The index of `jobs.state` in a full row.
fn jobs_state() -> Option<usize> {
    schema::table("jobs")?.column("state").map(|(i, _)| i)
}

/// A moment after every lease (9999-12-31T23:59:59.999Z): a job without a result or a
/// cancel is derived here and at the epoch, before every lease ends, to see both states
/// its `jobs` row can take.
const AFTER_EVERY_LEASE: i64 = 253_402_300_799_999;

/// Recomputes `(rows, digest)` per table from the repository at the manifest's refs, and
/// checks that `as_of` is in the spec when `version` says it must be.
fn recompute(
    g: &Gatos,
    manifest: &Manifest,
    filter: &Filter,
    version: Version,
) -> Result<BTreeMap<String, (u64, [u8; 32])>, Error> {
    // Without as_of every exported job is finished, and a finished job's rows are the
    // same at every moment: the epoch serves.
    let as_of = gatos_types::Timestamp::from_millis(filter.as_of.unwrap_or(0));
    let state = source::RefState::from_recorded(manifest.refs.iter().cloned());
    let mut digests: BTreeMap<&'static str, TableDigest> = filter
        .tables
        .iter()
        .map(|t| (t.table().name, TableDigest::default()))
        .collect();
    let mut buf = String::new();
    let mut take = |table: &'static str, full: &[Cell]| {
        if let (Some(ts), Some(td)) = (filter.table(table), digests.get_mut(table))
            && ts.matches(full)
        {
            td.push(ts.projection.digest(full, &mut buf));
        }
    };
    if let Some(ts) = filter.table("messages") {
        let (lo, hi) = ts.int_bounds("seq");
        let lo = u64::try_from(lo.unwrap_or(1).max(1)).unwrap_or(1);
        let hi = hi.map_or(u64::MAX, |h| u64::try_from(h).unwrap_or(0));
        for (topic, src) in &manifest.topics {
            let topic: Topic = topic
                .parse()
                .map_err(|_| mismatch(format!("manifest: bad topic {topic:?}")))?;
            walk_topic(g, &topic, src.head, src.first_seq.max(lo), |seq, row| {
                if seq <= hi {
                    take("messages", &row);
                }
            })?;
        }
    }
    if filter.table("checkpoints").is_some() {
        for (_, group, topic, oid) in source::checkpoint_refs(&state) {
            take(
                "checkpoints",
                &source::checkpoint_row(g, &group, &topic, oid)?,
            );
        }
    }
    if filter.has_job_tables() {
        let admits =
            |table: &str, full: &[Cell]| filter.table(table).is_some_and(|ts| ts.matches(full));
        let exported = |job: &[Cell], rows: &source::JobRows| {
            admits("jobs", job)
                || rows.attempts.iter().any(|a| admits("attempts", a))
                || rows.result.as_ref().is_some_and(|r| admits("results", r))
        };
        let mut unfinished_exported = false;
        source::each_job(g, &state, |id, refs, archived| {
            let Some(rec) = g.job_record_at(id, refs, archived)? else {
                return Ok(());
            };
            let need = source::Need {
                legacy_outcomes: version != Version::V3,
                ..source::Need::of(filter)
            };
            let rows = source::job_rows(g, &rec, as_of, need)?;
            if version != Version::V1 && !rows.finished {
                if filter.as_of.is_some() {
                    unfinished_exported |= exported(&rows.job, &rows);
                } else {
                    // Derived at the epoch, while every lease runs; after every lease its
                    // state is the other one it can take.
                    let mut late = rows.job.clone();
                    if let Some(i) = jobs_state() {
                        let at = gatos_types::Timestamp::from_millis(AFTER_EVERY_LEASE);
                        let d = gatos::jobs::state::derive(&rec, at, g.lease_skew());
                        late[i] = Cell::Text(d.state.as_str().to_owned());
                    }
                    if exported(&rows.job, &rows) && exported(&late, &rows) {
                        return Err(mismatch(format!(
                            "manifest: the filter spec's as_of is missing (job {id} has neither a result nor a cancel, and rows of it are exported at every moment)"
                        )));
                    }
                    // At some moment none of its rows is exported: an export made then
                    // holds none, and needs no as_of.
                    return Ok(());
                }
            }
            take("jobs", &rows.job);
            for a in &rows.attempts {
                take("attempts", a);
            }
            if let Some(r) = &rows.result {
                take("results", r);
            }
            Ok(())
        })?;
        if version != Version::V1 && filter.as_of.is_some() && !unfinished_exported {
            return Err(mismatch(
                "manifest: the filter spec's as_of is extra (every exported job has a result or a cancel)",
            ));
        }
    }
    let mut out = BTreeMap::new();
    for (t, d) in &mut digests {
        let done = d.finish().map_err(crate::sort_error(t))?;
        out.insert((*t).to_owned(), done);
    }
    Ok(out)
}

/// Walks a topic's chain back from `head` to `first_seq`, reading each message from its
/// commit (not through the position index: an independent path).
fn walk_topic(
    g: &Gatos,
    topic: &Topic,
    head: Oid,
    first_seq: u64,
    mut f: impl FnMut(u64, Vec<Cell>),
) -> Result<(), Error> {
    let mut r = g.objects();
    let mut at = Some(head);
    while let Some(oid) = at {
        let c = r.commit(oid)?;
        let meta = chain::meta(&c)?;
        if meta.seq < first_seq {
            break;
        }
        let bytes = r
            .file(c.tree, ENVELOPE_PATH)?
            .ok_or_else(|| mismatch(format!("message commit {oid} has no {ENVELOPE_PATH}")))?;
        let env = EnvelopeRef::parse(&bytes).map_err(|e| mismatch(e.to_string()))?;
        f(
            meta.seq,
            source::message_row(
                topic.as_str(),
                meta.seq,
                meta.ulid,
                &Digest::of(&bytes).to_string(),
                oid,
                env.payload.get(),
            ),
        );
        if meta.seq <= first_seq {
            break;
        }
        at = meta.prev();
    }
    Ok(())
}
