//! The SQLite format: one database file with the exported tables, the manifest
//! (`_gatos_manifest`), row digests (`_gatos_digests`) and unit fingerprints
//! (`_gatos_units`) that let `--incremental` extend it.
//!
//! A full export writes `<out>.tmp-<pid>` and renames it over `<out>` when complete, so a
//! crash never leaves half a database under the name asked for; an incremental export
//! changes the file in one transaction.

use std::path::{Path, PathBuf};

use gatos::Error;
use gatos_types::ErrorCode;
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::manifest::Manifest;
use crate::root::{Sorted, TableDigest, digest_of, merge};
use crate::schema::{Cell, Kind, Projection};
use crate::{Previous, Sink};

/// Sorted runs of row digests, per table, in pages (what `--incremental` extends).
const SORTED_TABLE: &str = "CREATE TABLE _gatos_sorted (tbl TEXT NOT NULL, run INTEGER NOT NULL, removed INTEGER NOT NULL, page INTEGER NOT NULL, digests BLOB NOT NULL, PRIMARY KEY (tbl, run, page));";
/// The refs an export read (the manifest's `refs`).
const REFS_TABLE: &str =
    "CREATE TABLE _gatos_refs (name TEXT PRIMARY KEY, oid TEXT NOT NULL) WITHOUT ROWID;";
/// Digests per stored page of a sorted run (128 KiB).
const PAGE_DIGESTS: usize = 4096;
/// Stored runs (added and removed) per table beyond which an incremental export merges
/// them into one.
const MAX_RUNS: usize = 8;

/// The sorted runs of row digests stored for `table`: `(run, removed)`.
fn stored_runs(conn: &Connection, table: &str) -> Result<Vec<(i64, bool)>, Error> {
    let mut st = conn
        .prepare_cached(
            "SELECT DISTINCT run, removed FROM _gatos_sorted WHERE tbl = ?1 ORDER BY run",
        )
        .map_err(db)?;
    let runs = st
        .query_map([table], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? != 0)))
        .map_err(db)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db)?;
    Ok(runs)
}

/// Gives an export written before sorted runs were stored (`_gatos_sorted`) one run per
/// table, from the row digests it kept in `_gatos_digests`.
fn upgrade_sorted_runs(conn: &Connection) -> Result<(), Error> {
    let has: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = '_gatos_sorted'",
            [],
            |r| r.get(0),
        )
        .map_err(db)?;
    if has == 1 {
        return Ok(());
    }
    conn.execute_batch(SORTED_TABLE).map_err(db)?;
    let mut tables: std::collections::BTreeMap<String, TableDigest> =
        std::collections::BTreeMap::new();
    {
        let mut st = conn
            .prepare("SELECT tbl, digest FROM _gatos_digests")
            .map_err(db)?;
        let mut rows = st.query([]).map_err(db)?;
        while let Some(r) = rows.next().map_err(db)? {
            let t: String = r.get(0).map_err(db)?;
            let d: Vec<u8> = r.get(1).map_err(db)?;
            let d: [u8; 32] = d.try_into().map_err(|_| {
                Error::new(
                    ErrorCode::DigestMismatch,
                    format!("{t}: a stored row digest is not 32 bytes"),
                )
            })?;
            tables.entry(t).or_default().push(d);
        }
    }
    for (t, mut td) in tables {
        let io = crate::sort_error(&t);
        let mut w = RunWriter::new(conn, &t, 0, false);
        for d in td.take_added().map_err(io)? {
            w.push(&d.map_err(io)?).map_err(io)?;
        }
        w.flush().map_err(io)?;
    }
    Ok(())
}

/// Streams a stored run, one page in memory at a time.
fn read_stored_run<'c>(conn: &'c Connection, table: &str, run: i64) -> Sorted<'c> {
    let table = table.to_owned();
    let mut page = 0i64;
    let mut buf: Vec<u8> = Vec::new();
    let mut at = 0;
    Box::new(std::iter::from_fn(move || {
        if at == buf.len() {
            let next = conn
                .prepare_cached(
                    "SELECT digests FROM _gatos_sorted WHERE tbl = ?1 AND run = ?2 AND page = ?3",
                )
                .and_then(|mut st| {
                    st.query_row(params![table, run, page], |r| r.get::<_, Vec<u8>>(0))
                        .optional()
                });
            match next {
                Ok(Some(b)) if !b.is_empty() && b.len() % 32 == 0 => {
                    buf = b;
                    at = 0;
                    page += 1;
                }
                Ok(Some(_)) => {
                    return Some(Err(std::io::Error::other(format!(
                        "page {page} of stored run {run} is not whole digests"
                    ))));
                }
                Ok(None) => return None,
                Err(e) => return Some(Err(std::io::Error::other(e))),
            }
        }
        let mut d = [0u8; 32];
        d.copy_from_slice(&buf[at..at + 32]);
        at += 32;
        Some(Ok(d))
    }))
}

/// Writes a sorted run page by page.
struct RunWriter<'c> {
    conn: &'c Connection,
    table: String,
    run: i64,
    removed: bool,
    page: i64,
    buf: Vec<u8>,
}

impl<'c> RunWriter<'c> {
    fn new(conn: &'c Connection, table: &str, run: i64, removed: bool) -> Self {
        RunWriter {
            conn,
            table: table.to_owned(),
            run,
            removed,
            page: 0,
            buf: Vec::with_capacity(PAGE_DIGESTS * 32),
        }
    }

    fn push(&mut self, d: &[u8; 32]) -> std::io::Result<()> {
        self.buf.extend_from_slice(d);
        if self.buf.len() >= PAGE_DIGESTS * 32 {
            self.write_page()?;
        }
        Ok(())
    }

    fn write_page(&mut self) -> std::io::Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO _gatos_sorted (tbl, run, removed, page, digests) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    self.table,
                    self.run,
                    i64::from(self.removed),
                    self.page,
                    self.buf
                ])
            })
            .map_err(std::io::Error::other)?;
        self.page += 1;
        self.buf.clear();
        Ok(())
    }

    /// Writes the last page; tells whether the run has any digest.
    fn flush(&mut self) -> std::io::Result<bool> {
        if !self.buf.is_empty() {
            self.write_page()?;
        }
        Ok(self.page > 0)
    }
}

fn db(e: rusqlite::Error) -> Error {
    Error::new(ErrorCode::Internal, format!("sqlite: {e}"))
}

/// Quotes an identifier (`group` is a keyword).
pub fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn sql_type(k: Kind) -> &'static str {
    match k {
        Kind::Int | Kind::Bool => "INTEGER",
        Kind::Text | Kind::Time | Kind::Json => "TEXT",
    }
}

/// The storage value of a cell, borrowing its text (payloads are not copied).
pub fn to_sql(c: &Cell) -> ToSqlOutput<'_> {
    match c {
        Cell::Null => ToSqlOutput::Owned(Value::Null),
        Cell::Int(i) => ToSqlOutput::Owned(Value::Integer(*i)),
        Cell::Bool(b) => ToSqlOutput::Owned(Value::Integer(i64::from(*b))),
        Cell::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        Cell::Time(ms) => ToSqlOutput::Owned(Value::Text(crate::schema::format_time(*ms))),
    }
}

/// Reads a stored value back as a cell of `kind`; `None` when it cannot be one.
pub fn from_sql(kind: Kind, v: ValueRef<'_>) -> Option<Cell> {
    Some(match (kind, v) {
        (_, ValueRef::Null) => Cell::Null,
        (Kind::Int, ValueRef::Integer(i)) => Cell::Int(i),
        (Kind::Bool, ValueRef::Integer(0)) => Cell::Bool(false),
        (Kind::Bool, ValueRef::Integer(1)) => Cell::Bool(true),
        (Kind::Text | Kind::Json, ValueRef::Text(t)) => {
            Cell::Text(std::str::from_utf8(t).ok()?.to_owned())
        }
        (Kind::Time, ValueRef::Text(t)) => {
            // Only the canonical form: the stored text is what was hashed.
            let t = std::str::from_utf8(t).ok()?;
            let ms = crate::schema::parse_time(t).ok()?;
            if crate::schema::format_time(ms) != t {
                return None;
            }
            Cell::Time(ms)
        }
        _ => return None,
    })
}

/// Rolls back what an export killed mid-write left (a hot journal beside `path`): a
/// read-only open cannot, and would refuse the file. The file then holds the export as it
/// was before that write, as a failed export promises.
fn recover(path: &Path) {
    let mut journal = path.as_os_str().to_owned();
    journal.push("-journal");
    if std::fs::metadata(&journal).is_ok_and(|m| m.len() > 0)
        && let Ok(c) = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
    {
        // The first read takes the lock that makes SQLite roll the journal back.
        let _ = c.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        });
    }
}

/// Whether `path` is a gatos SQLite export.
pub fn is_export(path: &Path) -> bool {
    recover(path);
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| {
            c.query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = '_gatos_manifest'",
                [],
                |r| r.get::<_, i64>(0),
            )
        })
        .is_ok_and(|n| n == 1)
}

/// Opens an export read-only.
///
/// # Errors
/// `NotFound` when missing; `DigestMismatch` when it is not a gatos export.
pub fn open_read(path: &Path) -> Result<(Connection, Manifest), Error> {
    let (c, mut m) = open_manifest(path)?;
    if has_table(&c, "_gatos_refs")? {
        m.refs = read_refs(&c)?;
    }
    Ok((c, m))
}

fn has_table(c: &Connection, name: &str) -> Result<bool, Error> {
    let n: i64 = c
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [name],
            |r| r.get(0),
        )
        .map_err(db)?;
    Ok(n == 1)
}

/// The refs an export read, from `_gatos_refs` (the manifest's `refs`).
fn read_refs(c: &Connection) -> Result<Vec<(String, gatos_types::Oid)>, Error> {
    let mut st = c
        .prepare("SELECT name, oid FROM _gatos_refs ORDER BY name")
        .map_err(db)?;
    let mut rows = st.query([]).map_err(db)?;
    let mut refs = Vec::new();
    while let Some(r) = rows.next().map_err(db)? {
        let name: String = r.get(0).map_err(db)?;
        let oid: String = r.get(1).map_err(db)?;
        let oid = oid.parse().map_err(|_| {
            Error::new(
                ErrorCode::DigestMismatch,
                format!("manifest: _gatos_refs holds a bad oid {oid:?} for {name}"),
            )
        })?;
        refs.push((name, oid));
    }
    Ok(refs)
}

/// Makes `_gatos_refs` hold exactly `refs` (sorted by name), touching only what changed.
fn store_refs(c: &Connection, refs: &[(String, gatos_types::Oid)]) -> Result<(), Error> {
    let mut gone: Vec<String> = Vec::new();
    let mut put: Vec<(&str, String)> = Vec::new();
    {
        let mut st = c
            .prepare("SELECT name, oid FROM _gatos_refs ORDER BY name")
            .map_err(db)?;
        let mut rows = st.query([]).map_err(db)?;
        let mut new = refs.iter().peekable();
        while let Some(r) = rows.next().map_err(db)? {
            let name = r
                .get_ref(0)
                .map_err(db)?
                .as_str()
                .map_err(|e| db(e.into()))?;
            let oid = r
                .get_ref(1)
                .map_err(db)?
                .as_str()
                .map_err(|e| db(e.into()))?;
            while let Some((n, o)) = new.next_if(|(n, _)| n.as_bytes() < name.as_bytes()) {
                put.push((n, o.to_string()));
            }
            match new.next_if(|(n, _)| n == name) {
                Some((n, o)) => {
                    let o = o.to_string();
                    if o != oid {
                        put.push((n, o));
                    }
                }
                None => gone.push(name.to_owned()),
            }
        }
        put.extend(new.map(|(n, o)| (n.as_str(), o.to_string())));
    }
    for name in gone {
        c.prepare_cached("DELETE FROM _gatos_refs WHERE name = ?1")
            .and_then(|mut st| st.execute([name]))
            .map_err(db)?;
    }
    for (name, oid) in put {
        c.prepare_cached("INSERT OR REPLACE INTO _gatos_refs (name, oid) VALUES (?1, ?2)")
            .and_then(|mut st| st.execute([name, &oid]))
            .map_err(db)?;
    }
    Ok(())
}

/// Opens an export read-only and parses its manifest as stored (without `_gatos_refs`).
fn open_manifest(path: &Path) -> Result<(Connection, Manifest), Error> {
    if !path.exists() {
        return Err(Error::new(
            ErrorCode::NotFound,
            format!("{} does not exist", path.display()),
        ));
    }
    recover(path);
    let c = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(db)?;
    let text: String = c
        .query_row("SELECT json FROM _gatos_manifest", [], |r| r.get(0))
        .map_err(|e| {
            Error::new(
                ErrorCode::DigestMismatch,
                format!(
                    "manifest: {} has no readable gatos manifest ({e})",
                    path.display()
                ),
            )
        })?;
    Ok((c, Manifest::parse(&text)?))
}

/// A SQLite export being written.
pub struct SqliteSink {
    conn: Connection,
    /// Where the data goes now (a temporary file for a full export).
    work: PathBuf,
    /// Where it ends up.
    out: PathBuf,
    incremental: bool,
    finished: bool,
    inserts: std::collections::HashMap<String, (String, Vec<usize>)>,
}

impl SqliteSink {
    /// Starts a full export to `out`, or opens `out` to extend it.
    ///
    /// # Errors
    /// `NotFound` (incremental, no file), `Conflict` when `out` exists and is not a gatos
    /// export, store errors.
    pub fn open(out: &Path, incremental: bool) -> Result<(SqliteSink, Previous), Error> {
        if incremental {
            let (_, manifest) = open_manifest(out)?;
            let conn = Connection::open(out).map_err(db)?;
            conn.execute_batch("PRAGMA synchronous = NORMAL; BEGIN IMMEDIATE;")
                .map_err(db)?;
            upgrade_sorted_runs(&conn)?;
            let mut previous = Previous {
                manifest: Some(manifest),
                ..Previous::default()
            };
            {
                let mut st = conn
                    .prepare("SELECT unit, fp, final FROM _gatos_units")
                    .map_err(db)?;
                let mut rows = st.query([]).map_err(db)?;
                while let Some(r) = rows.next().map_err(db)? {
                    previous.units.insert(
                        r.get(0).map_err(db)?,
                        (r.get(1).map_err(db)?, r.get::<_, i64>(2).map_err(db)? != 0),
                    );
                }
            }
            let sink = SqliteSink {
                conn,
                work: out.to_owned(),
                out: out.to_owned(),
                incremental: true,
                finished: false,
                inserts: std::collections::HashMap::new(),
            };
            return Ok((sink, previous));
        }
        if out.exists() && !is_export(out) {
            return Err(Error::new(
                ErrorCode::InvalidInput,
                format!(
                    "{} exists and is not a gatos export; choose another --out or remove it",
                    out.display()
                ),
            ));
        }
        let work = crate::work_path(out);
        let _ = std::fs::remove_file(&work);
        let conn =
            Connection::open(&work).map_err(|e| crate::io_error("cannot create", &work, e))?;
        conn.execute_batch(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -2048;
             BEGIN;
             CREATE TABLE _gatos_manifest (json TEXT NOT NULL);
             CREATE TABLE _gatos_digests (tbl TEXT NOT NULL, row INTEGER NOT NULL, unit TEXT NOT NULL, digest BLOB NOT NULL);
             CREATE TABLE _gatos_units (unit TEXT PRIMARY KEY, fp TEXT NOT NULL, final INTEGER NOT NULL);",
        )
        .map_err(db)?;
        conn.execute_batch(SORTED_TABLE).map_err(db)?;
        conn.execute_batch(REFS_TABLE).map_err(db)?;
        let sink = SqliteSink {
            conn,
            work,
            out: out.to_owned(),
            incremental: false,
            finished: false,
            inserts: std::collections::HashMap::new(),
        };
        Ok((sink, Previous::default()))
    }
}

impl Sink for SqliteSink {
    fn begin(&mut self, p: &Projection) -> Result<(), Error> {
        let t = p.table.name;
        let cols: Vec<String> = p.selected().map(|c| ident(c.name)).collect();
        if !self.incremental {
            let defs: Vec<String> = p
                .selected()
                .map(|c| format!("{} {}", ident(c.name), sql_type(c.kind)))
                .collect();
            self.conn
                .execute_batch(&format!("CREATE TABLE {} ({});", ident(t), defs.join(", ")))
                .map_err(db)?;
        }
        let marks = vec!["?"; cols.len()].join(", ");
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({marks})",
            ident(t),
            cols.join(", ")
        );
        self.inserts.insert(t.to_owned(), (sql, p.columns.clone()));
        Ok(())
    }

    fn row(
        &mut self,
        table: &str,
        full: &[Cell],
        unit: Option<&str>,
        digest: &[u8; 32],
    ) -> Result<(), Error> {
        let (sql, cols) = self
            .inserts
            .get(table)
            .ok_or_else(|| Error::new(ErrorCode::Internal, format!("table {table} not begun")))?;
        let values: Vec<ToSqlOutput<'_>> = cols.iter().map(|&i| to_sql(&full[i])).collect();
        self.conn
            .prepare_cached(sql)
            .map_err(db)?
            .execute(rusqlite::params_from_iter(values))
            .map_err(db)?;
        // Only rows an incremental export may replace need their digest by unit.
        let Some(unit) = unit else { return Ok(()) };
        let row = self.conn.last_insert_rowid();
        self.conn
            .prepare_cached(
                "INSERT INTO _gatos_digests (tbl, row, unit, digest) VALUES (?, ?, ?, ?)",
            )
            .map_err(db)?
            .execute(params![table, row, unit, &digest[..]])
            .map_err(db)?;
        Ok(())
    }

    fn table_digest(
        &mut self,
        table: &str,
        td: &mut TableDigest,
    ) -> Result<(u64, [u8; 32]), Error> {
        let sorting = crate::sort_error(table);
        let conn = &self.conn;
        let prior = stored_runs(conn, table)?;
        let added = td.take_added().map_err(sorting)?;
        let removed = td.take_removed();
        let next_run = prior.iter().map(|r| r.0).max().map_or(0, |m| m + 1);
        let readers = |removed: bool, runs: &[(i64, bool)]| -> Vec<Sorted<'_>> {
            runs.iter()
                .filter(|r| r.1 == removed)
                .map(|r| read_stored_run(conn, table, r.0))
                .collect()
        };
        if !self.incremental || prior.len() + 2 > MAX_RUNS {
            // One run holding the table's digests replaces every stored one.
            let mut adds = readers(false, &prior);
            adds.push(added);
            let mut rems = readers(true, &prior);
            rems.push(Box::new(removed.into_iter().map(Ok)));
            let mut w = RunWriter::new(conn, table, next_run, false);
            let out = digest_of(merge(adds), merge(rems), &mut |d| w.push(d)).map_err(sorting)?;
            w.flush().map_err(sorting)?;
            conn.execute(
                "DELETE FROM _gatos_sorted WHERE tbl = ?1 AND run < ?2",
                params![table, next_run],
            )
            .map_err(db)?;
            return Ok(out);
        }
        // What this export added and removed become two more runs; all runs merge.
        let mut runs = prior;
        let mut w = RunWriter::new(conn, table, next_run, false);
        for d in added {
            w.push(&d.map_err(sorting)?).map_err(sorting)?;
        }
        if w.flush().map_err(sorting)? {
            runs.push((next_run, false));
        }
        let mut w = RunWriter::new(conn, table, next_run + 1, true);
        for d in &removed {
            w.push(d).map_err(sorting)?;
        }
        if w.flush().map_err(sorting)? {
            runs.push((next_run + 1, true));
        }
        digest_of(
            merge(readers(false, &runs)),
            merge(readers(true, &runs)),
            &mut |_| Ok(()),
        )
        .map_err(sorting)
    }

    fn remove_unit(&mut self, unit: &str) -> Result<Vec<(String, [u8; 32])>, Error> {
        let mut gone = Vec::new();
        {
            let mut st = self
                .conn
                .prepare_cached("SELECT tbl, row, digest FROM _gatos_digests WHERE unit = ?")
                .map_err(db)?;
            let mut rows = st.query([unit]).map_err(db)?;
            while let Some(r) = rows.next().map_err(db)? {
                let t: String = r.get(0).map_err(db)?;
                let row: i64 = r.get(1).map_err(db)?;
                let d: Vec<u8> = r.get(2).map_err(db)?;
                if let Ok(d) = <[u8; 32]>::try_from(d) {
                    gone.push((t, row, d));
                }
            }
        }
        for (t, row, _) in &gone {
            self.conn
                .execute(&format!("DELETE FROM {} WHERE rowid = ?", ident(t)), [row])
                .map_err(db)?;
        }
        self.conn
            .execute("DELETE FROM _gatos_digests WHERE unit = ?", [unit])
            .map_err(db)?;
        Ok(gone.into_iter().map(|(t, _, d)| (t, d)).collect())
    }

    fn set_unit(&mut self, unit: &str, fp: &str, is_final: bool) -> Result<(), Error> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO _gatos_units (unit, fp, final) VALUES (?, ?, ?)",
            )
            .map_err(db)?
            .execute(params![unit, fp, i64::from(is_final)])
            .map_err(db)?;
        Ok(())
    }

    fn finish(mut self: Box<Self>, manifest: &Manifest) -> Result<(), Error> {
        let mut sql = String::from("DELETE FROM _gatos_manifest;");
        if !self.incremental {
            sql.push_str("CREATE INDEX _gatos_digests_unit ON _gatos_digests (unit);");
            for (t, cols) in [
                ("messages", &["topic", "seq"][..]),
                ("jobs", &["id"][..]),
                ("attempts", &["job"][..]),
                ("results", &["job"][..]),
            ] {
                let Some(p) = self.inserts.get(t) else {
                    continue;
                };
                let schema = crate::schema::table(t)
                    .ok_or_else(|| Error::new(ErrorCode::Internal, format!("no table {t}")))?;
                let have: Vec<&str> = p.1.iter().map(|&i| schema.columns[i].name).collect();
                if cols.iter().all(|c| have.contains(c)) {
                    let list: Vec<String> = cols.iter().map(|c| ident(c)).collect();
                    sql.push_str(&format!(
                        "CREATE INDEX {} ON {} ({});",
                        ident(&format!("{t}_{}", cols.join("_"))),
                        ident(t),
                        list.join(", ")
                    ));
                }
            }
        }
        if !has_table(&self.conn, "_gatos_refs")? {
            // An export made before the refs had their own table.
            sql.push_str(REFS_TABLE);
        }
        self.conn.execute_batch(&sql).map_err(db)?;
        store_refs(&self.conn, &manifest.refs)?;
        self.conn
            .execute(
                "INSERT INTO _gatos_manifest (json) VALUES (?)",
                [manifest.to_text_without_refs()],
            )
            .map_err(db)?;
        self.conn.execute_batch("COMMIT;").map_err(db)?;
        if !self.incremental {
            let f = std::fs::File::open(&self.work)
                .map_err(|e| crate::io_error("cannot open", &self.work, e))?;
            f.sync_all()
                .map_err(|e| crate::io_error("cannot sync", &self.work, e))?;
            std::fs::rename(&self.work, &self.out)
                .map_err(|e| crate::io_error("cannot rename into place", &self.out, e))?;
        }
        self.finished = true;
        Ok(())
    }
}

impl Drop for SqliteSink {
    fn drop(&mut self) {
        if !self.finished && !self.incremental {
            let _ = std::fs::remove_file(&self.work);
        }
    }
}
