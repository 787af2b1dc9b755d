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
use crate::root::{self, EXPORTER_VERSION, TableDigest, TableEntry};
use crate::schema::Cell;
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
    if manifest.exporter != EXPORTER_VERSION {
        return Err(Error::new(
            ErrorCode::InvalidInput,
            format!(
                "made by {:?}; this is {EXPORTER_VERSION} (verify with the gatos that wrote it)",
                manifest.exporter
            ),
        ));
    }
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
    if filter.has_job_tables() != filter.as_of.is_some() {
        return Err(mismatch(
            "manifest: the filter spec's as_of is missing or extra",
        ));
    }
    for (t, src) in &manifest.topics {
        let name = format!("refs/gatos/messages/{t}/head");
        if !manifest
            .refs
            .iter()
            .any(|(n, o)| *n == name && *o == src.head)
        {
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
        let mut push = |full: Vec<Cell>| -> Result<(), Error> {
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
                format!("{rows} rows, the manifest says {}", entry.rows),
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
        EXPORTER_VERSION,
    );
    if root::parse_digest(&manifest.explorer_root) != Some(rt) {
        return Err(mismatch(format!(
            "manifest: explorer_root {} differs from the recomputed {}",
            manifest.explorer_root,
            root::digest_text(&rt)
        )));
    }

    if let Some(g) = repo {
        let from_repo = recompute(g, &manifest, &filter)?;
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

/// Recomputes `(rows, digest)` per table from the repository at the manifest's refs.
fn recompute(
    g: &Gatos,
    manifest: &Manifest,
    filter: &Filter,
) -> Result<BTreeMap<String, (u64, [u8; 32])>, Error> {
    let as_of = gatos_types::Timestamp::from_millis(filter.as_of.unwrap_or(0));
    let state: source::RefState = manifest.refs.iter().cloned().collect();
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
        for (name, oid) in source::checkpoint_refs(&state) {
            if let Some(row) = source::checkpoint_row(g, &name, oid)? {
                take("checkpoints", &row);
            }
        }
    }
    if ["jobs", "attempts", "results"]
        .iter()
        .any(|t| filter.table(t).is_some())
    {
        source::each_job(g, &state, |id, refs, archived| {
            let Some(rec) = g.job_record_at(id, refs, archived)? else {
                return Ok(());
            };
            let rows = source::job_rows(g, &rec, as_of, source::Need::of(filter))?;
            take("jobs", &rows.job);
            for a in &rows.attempts {
                take("attempts", a);
            }
            if let Some(r) = &rows.result {
                take("results", r);
            }
            Ok(())
        })?;
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
    let mut r = g.store().reader();
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
