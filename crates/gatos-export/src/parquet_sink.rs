//! The Parquet format: a directory with one `<table>.parquet` per exported table and
//! `manifest.json`. Integers are INT64, booleans BOOLEAN, times INT64
//! TIMESTAMP(MILLIS, UTC), text and JSON documents BYTE_ARRAY (STRING); every column is
//! OPTIONAL (null is a value). Row groups hold at most [`ROW_GROUP_ROWS`] rows or about
//! [`ROW_GROUP_BYTES`] bytes, so memory stays bounded however large the export.
//!
//! The directory is written as `<out>.tmp-<pid>` and renamed into place when complete.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gatos::Error;
use gatos_types::ErrorCode;
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;

use crate::Sink;
use crate::manifest::Manifest;
use crate::root::TableDigest;
use crate::schema::{Cell, Kind, Projection};

/// Rows per row group at most.
pub const ROW_GROUP_ROWS: usize = 16_384;
/// Buffered bytes per row group at most (about).
pub const ROW_GROUP_BYTES: usize = 8 << 20;

/// The manifest's file name in the directory.
pub const MANIFEST_FILE: &str = "manifest.json";

fn pq(e: parquet::errors::ParquetError) -> Error {
    Error::new(ErrorCode::Internal, format!("parquet: {e}"))
}

/// The Parquet message type of a projection.
pub fn message_type(p: &Projection) -> String {
    let mut s = format!("message {} {{\n", p.table.name);
    for c in p.selected() {
        let (ty, ann) = match c.kind {
            Kind::Int => ("INT64", ""),
            Kind::Bool => ("BOOLEAN", ""),
            Kind::Time => ("INT64", "(TIMESTAMP(MILLIS,true))"),
            Kind::Text | Kind::Json => ("BYTE_ARRAY", "(STRING)"),
        };
        s.push_str(&format!("  OPTIONAL {ty} {} {ann};\n", c.name));
    }
    s.push('}');
    s
}

enum Values {
    I64(Vec<i64>),
    Bool(Vec<bool>),
    Bytes(Vec<ByteArray>),
}

struct ColBuf {
    index: usize,
    values: Values,
    defs: Vec<i16>,
}

struct TableWriter {
    writer: SerializedFileWriter<File>,
    cols: Vec<ColBuf>,
    rows: usize,
    bytes: usize,
}

impl TableWriter {
    fn push(&mut self, full: &[Cell]) {
        for c in &mut self.cols {
            let cell = &full[c.index];
            if matches!(cell, Cell::Null) {
                c.defs.push(0);
                continue;
            }
            c.defs.push(1);
            match (&mut c.values, cell) {
                (Values::I64(v), Cell::Int(i) | Cell::Time(i)) => v.push(*i),
                (Values::Bool(v), Cell::Bool(b)) => v.push(*b),
                (Values::Bytes(v), Cell::Text(s)) => {
                    self.bytes += s.len();
                    v.push(ByteArray::from(s.as_bytes().to_vec()));
                }
                _ => {
                    // A cell of another type than its column cannot come from the source
                    // readers; store null rather than a wrong value.
                    if let Some(d) = c.defs.last_mut() {
                        *d = 0;
                    }
                }
            }
        }
        self.rows += 1;
    }

    fn flush(&mut self) -> Result<(), Error> {
        if self.rows == 0 {
            return Ok(());
        }
        let mut rg = self.writer.next_row_group().map_err(pq)?;
        for c in &mut self.cols {
            let mut cw = rg.next_column().map_err(pq)?.ok_or_else(|| {
                Error::new(
                    ErrorCode::Internal,
                    "parquet: fewer columns than the schema",
                )
            })?;
            match &mut c.values {
                Values::I64(v) => {
                    cw.typed::<Int64Type>()
                        .write_batch(v, Some(&c.defs), None)
                        .map_err(pq)?;
                    v.clear();
                }
                Values::Bool(v) => {
                    cw.typed::<BoolType>()
                        .write_batch(v, Some(&c.defs), None)
                        .map_err(pq)?;
                    v.clear();
                }
                Values::Bytes(v) => {
                    cw.typed::<ByteArrayType>()
                        .write_batch(v, Some(&c.defs), None)
                        .map_err(pq)?;
                    v.clear();
                }
            }
            c.defs.clear();
            cw.close().map_err(pq)?;
        }
        rg.close().map_err(pq)?;
        self.rows = 0;
        self.bytes = 0;
        Ok(())
    }
}

/// A Parquet export being written.
pub struct ParquetSink {
    work: PathBuf,
    out: PathBuf,
    tables: BTreeMap<String, TableWriter>,
    finished: bool,
}

impl ParquetSink {
    /// Starts an export into the directory `out`.
    ///
    /// # Errors
    /// `Conflict` when `out` exists and is not a gatos export.
    pub fn create(out: &Path) -> Result<ParquetSink, Error> {
        if out.exists() && !out.join(MANIFEST_FILE).is_file() {
            return Err(Error::new(
                ErrorCode::InvalidInput,
                format!(
                    "{} exists and is not a gatos Parquet export; choose another --out or remove it",
                    out.display()
                ),
            ));
        }
        let work = crate::work_path(out);
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).map_err(|e| crate::io_error("cannot create", &work, e))?;
        Ok(ParquetSink {
            work,
            out: out.to_owned(),
            tables: BTreeMap::new(),
            finished: false,
        })
    }
}

impl Sink for ParquetSink {
    fn begin(&mut self, p: &Projection) -> Result<(), Error> {
        let schema =
            Arc::new(parquet::schema::parser::parse_message_type(&message_type(p)).map_err(pq)?);
        let props = Arc::new(
            WriterProperties::builder()
                .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
                .build(),
        );
        let path = self.work.join(format!("{}.parquet", p.table.name));
        let file = File::create(&path).map_err(|e| crate::io_error("cannot create", &path, e))?;
        let writer = SerializedFileWriter::new(file, schema, props).map_err(pq)?;
        let cols = p
            .columns
            .iter()
            .map(|&i| {
                let column = p.table.columns[i];
                ColBuf {
                    index: i,
                    values: match column.kind {
                        Kind::Int | Kind::Time => Values::I64(Vec::new()),
                        Kind::Bool => Values::Bool(Vec::new()),
                        Kind::Text | Kind::Json => Values::Bytes(Vec::new()),
                    },
                    defs: Vec::new(),
                }
            })
            .collect();
        self.tables.insert(
            p.table.name.to_owned(),
            TableWriter {
                writer,
                cols,
                rows: 0,
                bytes: 0,
            },
        );
        Ok(())
    }

    fn row(
        &mut self,
        table: &str,
        full: &[Cell],
        _unit: Option<&str>,
        _digest: &[u8; 32],
    ) -> Result<(), Error> {
        let t = self
            .tables
            .get_mut(table)
            .ok_or_else(|| Error::new(ErrorCode::Internal, format!("table {table} not begun")))?;
        t.push(full);
        if t.rows >= ROW_GROUP_ROWS || t.bytes >= ROW_GROUP_BYTES {
            t.flush()?;
        }
        Ok(())
    }

    fn table_digest(
        &mut self,
        table: &str,
        td: &mut TableDigest,
    ) -> Result<(u64, [u8; 32]), Error> {
        td.finish().map_err(crate::sort_error(table))
    }

    fn remove_unit(&mut self, _unit: &str) -> Result<Vec<(String, [u8; 32])>, Error> {
        Ok(Vec::new())
    }

    fn set_unit(&mut self, _unit: &str, _fp: &str, _is_final: bool) -> Result<(), Error> {
        Ok(())
    }

    fn finish(mut self: Box<Self>, manifest: &Manifest) -> Result<(), Error> {
        for (_, mut t) in std::mem::take(&mut self.tables) {
            t.flush()?;
            t.writer.close().map_err(pq)?;
        }
        let m = self.work.join(MANIFEST_FILE);
        std::fs::write(&m, manifest.to_text())
            .map_err(|e| crate::io_error("cannot write", &m, e))?;
        for entry in std::fs::read_dir(&self.work)
            .map_err(|e| crate::io_error("cannot list", &self.work, e))?
        {
            let p = entry
                .map_err(|e| crate::io_error("cannot list", &self.work, e))?
                .path();
            File::open(&p)
                .and_then(|f| f.sync_all())
                .map_err(|e| crate::io_error("cannot sync", &p, e))?;
        }
        if self.out.exists() {
            std::fs::remove_dir_all(&self.out)
                .map_err(|e| crate::io_error("cannot replace", &self.out, e))?;
        }
        std::fs::rename(&self.work, &self.out)
            .map_err(|e| crate::io_error("cannot rename into place", &self.out, e))?;
        self.finished = true;
        Ok(())
    }
}

impl Drop for ParquetSink {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_dir_all(&self.work);
        }
    }
}

/// Reads one table's file back as full rows (nulls in columns not exported).
///
/// # Errors
/// `DigestMismatch` when the file does not fit the table's schema.
pub fn read_rows(
    dir: &Path,
    p: &Projection,
    mut f: impl FnMut(Vec<Cell>) -> Result<(), Error>,
) -> Result<(), Error> {
    use parquet::file::reader::FileReader;
    use parquet::record::Field;
    let name = p.table.name;
    let mismatch =
        |what: String| Error::new(ErrorCode::DigestMismatch, format!("table {name}: {what}"));
    let path = dir.join(format!("{name}.parquet"));
    let file = File::open(&path).map_err(|e| mismatch(format!("{}: {e}", path.display())))?;
    let reader = parquet::file::serialized_reader::SerializedFileReader::new(file)
        .map_err(|e| mismatch(format!("not a Parquet file ({e})")))?;
    let iter = reader
        .get_row_iter(None)
        .map_err(|e| mismatch(e.to_string()))?;
    let width = p.table.columns.len();
    for row in iter {
        let row = row.map_err(|e| mismatch(e.to_string()))?;
        let mut full = vec![Cell::Null; width];
        let mut seen = 0;
        for (name, field) in row.get_column_iter() {
            let (i, c) = p
                .table
                .column(name)
                .ok_or_else(|| mismatch(format!("unexpected column {name:?}")))?;
            full[i] = match (c.kind, field) {
                (_, Field::Null) => Cell::Null,
                (Kind::Int, Field::Long(v)) => Cell::Int(*v),
                (Kind::Time, Field::TimestampMillis(v)) => Cell::Time(*v),
                (Kind::Bool, Field::Bool(b)) => Cell::Bool(*b),
                (Kind::Text | Kind::Json, Field::Str(s)) => Cell::Text(s.clone()),
                (k, other) => {
                    return Err(mismatch(format!(
                        "column {name} holds {other:?}, not a {}",
                        k.name()
                    )));
                }
            };
            seen += 1;
        }
        if seen != p.columns.len() {
            return Err(mismatch(
                "a row has other columns than the manifest's".to_owned(),
            ));
        }
        f(full)?;
    }
    Ok(())
}
