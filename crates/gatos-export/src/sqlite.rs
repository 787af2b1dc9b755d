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
use rusqlite::{Connection, OpenFlags, params};

use crate::manifest::Manifest;
use crate::schema::{Cell, Kind, Projection};
use crate::{Previous, Sink};

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

/// Whether `path` is a gatos SQLite export.
pub fn is_export(path: &Path) -> bool {
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
    if !path.exists() {
        return Err(Error::new(
            ErrorCode::NotFound,
            format!("{} does not exist", path.display()),
        ));
    }
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
            let (_, manifest) = open_read(out)?;
            let conn = Connection::open(out).map_err(db)?;
            conn.execute_batch("PRAGMA synchronous = NORMAL; BEGIN IMMEDIATE;")
                .map_err(db)?;
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
        let mut name = out.file_name().unwrap_or_default().to_owned();
        name.push(format!(".tmp-{}", std::process::id()));
        let work = out.with_file_name(name);
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
        unit: &str,
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

    fn previous_digests(&mut self, f: &mut dyn FnMut(&str, [u8; 32])) -> Result<(), Error> {
        if !self.incremental {
            return Ok(());
        }
        let mut st = self
            .conn
            .prepare("SELECT tbl, digest FROM _gatos_digests")
            .map_err(db)?;
        let mut rows = st.query([]).map_err(db)?;
        while let Some(r) = rows.next().map_err(db)? {
            let t = r
                .get_ref(0)
                .map_err(db)?
                .as_str()
                .map_err(|e| db(e.into()))?;
            let d = r
                .get_ref(1)
                .map_err(db)?
                .as_blob()
                .map_err(|e| db(e.into()))?;
            let d: [u8; 32] = d.try_into().map_err(|_| {
                Error::new(
                    ErrorCode::DigestMismatch,
                    format!("{t}: a stored row digest is not 32 bytes"),
                )
            })?;
            f(t, d);
        }
        Ok(())
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
        self.conn.execute_batch(&sql).map_err(db)?;
        self.conn
            .execute(
                "INSERT INTO _gatos_manifest (json) VALUES (?)",
                [manifest.to_text()],
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
