//! Export of a gatos ledger to SQLite or Parquet, with a verifiable Explorer-Root
//! (DESIGN §9, ADR 0016, ADR 0024, docs/exporter.md).
//!
//! An export reads one snapshot of `refs/gatos/**` (it never writes refs), streams rows
//! through the filter into a [`Sink`], and records a [`Manifest`]: the refs it read, the
//! canonical filter spec (with `as_of` only when an exported job has neither a result
//! nor a cancel), per table the row count and digest, and the Explorer-Root over all of
//! that. [`verify()`] recomputes every digest from the exported data and, given the
//! repository, from the commits the recorded refs name.
#![deny(missing_docs)]

pub mod filter;
pub mod manifest;
pub mod parquet_sink;
pub mod root;
pub mod schema;
pub mod source;
pub mod sqlite;
pub mod verify;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gatos::{Error, Gatos};
use gatos_types::{ErrorCode, Topic};

use crate::filter::TableSpec;
pub use crate::filter::{Filter, FilterArgs};
pub use crate::manifest::{Manifest, TopicSource};
use crate::root::TableDigest;
use crate::schema::{Cell, Projection};
pub use crate::verify::{VerifyReport, verify};

/// The file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One SQLite database file.
    Sqlite,
    /// A directory: one `<table>.parquet` per table and `manifest.json`.
    Parquet,
}

impl Format {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Sqlite => "sqlite",
            Format::Parquet => "parquet",
        }
    }
}

/// What to export and where.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The format.
    pub format: Format,
    /// The file (SQLite) or directory (Parquet).
    pub out: PathBuf,
    /// The selection (ignored with `incremental`: the earlier export's is reused).
    pub filter: FilterArgs,
    /// Extend the export at `out` with what is new since the refs it recorded.
    pub incremental: bool,
    /// The time job states are derived at (default: now), milliseconds.
    pub as_of: Option<i64>,
}

/// Where rows go. Rows arrive as full rows (every column of the table, in storage
/// order); a sink stores the projected columns.
pub trait Sink {
    /// Called once per exported table before its first row.
    ///
    /// # Errors
    /// When the store fails.
    fn begin(&mut self, spec: &Projection) -> Result<(), Error>;
    /// Stores one row; `unit` groups rows an incremental export replaces together (a
    /// job's rows, a checkpoint's; `None` for messages, which are only ever appended),
    /// `digest` is its row digest.
    ///
    /// # Errors
    /// When the store fails.
    fn row(
        &mut self,
        table: &str,
        full: &[Cell],
        unit: Option<&str>,
        digest: &[u8; 32],
    ) -> Result<(), Error>;
    /// The row count and digest of `table`: the digests `td` holds (this export's rows
    /// and removals) merged with those an earlier export stored. A sink that supports
    /// `--incremental` also stores them for the next one.
    ///
    /// # Errors
    /// When the store fails or the digests cannot be sorted.
    fn table_digest(&mut self, table: &str, td: &mut TableDigest)
    -> Result<(u64, [u8; 32]), Error>;
    /// Removes a unit's rows (incremental exports), returning their digests per table.
    ///
    /// # Errors
    /// When the store fails.
    fn remove_unit(&mut self, unit: &str) -> Result<Vec<(String, [u8; 32])>, Error>;
    /// Records a unit's fingerprint (its refs) and whether its rows are final.
    ///
    /// # Errors
    /// When the store fails.
    fn set_unit(&mut self, unit: &str, fingerprint: &str, is_final: bool) -> Result<(), Error>;
    /// Writes the manifest and makes the export visible.
    ///
    /// # Errors
    /// When the store fails.
    fn finish(self: Box<Self>, manifest: &Manifest) -> Result<(), Error>;
}

/// What an earlier export left for an incremental one.
#[derive(Debug, Default)]
pub struct Previous {
    /// Its manifest.
    pub manifest: Option<Manifest>,
    /// Unit fingerprints and finality.
    pub units: BTreeMap<String, (String, bool)>,
}

/// Reports progress: `(table, rows so far)`.
pub type Progress<'a> = &'a mut dyn FnMut(&str, u64);

fn check_out(out: &Path) -> Result<(), Error> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => return Ok(()),
    };
    if parent.is_dir() {
        Ok(())
    } else {
        Err(Error::new(
            ErrorCode::NotFound,
            format!("--out: the directory {} does not exist", parent.display()),
        ))
    }
}

/// Exports the repository. Returns the manifest written.
///
/// # Errors
/// `InvalidInput` for a bad selection or output path; `Conflict` when a topic was
/// rewritten by a sync since an incremental export's base (export again in full);
/// store errors.
pub fn export(
    gatos: &Gatos,
    opts: &ExportOptions,
    progress: Progress<'_>,
) -> Result<Manifest, Error> {
    check_out(&opts.out)?;
    let (mut sink, previous): (Box<dyn Sink>, Previous) = match opts.format {
        Format::Sqlite => {
            let (s, p) = sqlite::SqliteSink::open(&opts.out, opts.incremental)?;
            (Box::new(s), p)
        }
        Format::Parquet => {
            if opts.incremental {
                return Err(Error::new(
                    ErrorCode::InvalidInput,
                    "--incremental needs --format sqlite (Parquet files are immutable: export again, or export to SQLite)",
                ));
            }
            (
                Box::new(parquet_sink::ParquetSink::create(&opts.out)?),
                Previous::default(),
            )
        }
    };
    let mut filter = match &previous.manifest {
        Some(m) => Filter::from_spec(&m.filter)?,
        None => Filter::build(&opts.filter)?,
    };
    // `attempts.outcome` of `gatos-export/1` and `/2` says `failed` where `/3` says
    // `timeout`, `lost` or `signal` (ADR 0029): their rows cannot be extended as `/3`.
    if let Some(m) = &previous.manifest
        && m.exporter != root::EXPORTER_VERSION
        && filter.table("attempts").is_some()
    {
        return Err(Error::new(
            ErrorCode::InvalidInput,
            format!(
                "{} was made by {}, whose attempts.outcome differs from {}'s; export again without --incremental",
                opts.out.display(),
                m.exporter,
                root::EXPORTER_VERSION
            ),
        ));
    }
    let as_of = opts
        .as_of
        .map_or_else(|| gatos.now(), gatos_types::Timestamp::from_millis);
    // Job states are derived at `as_of`, but it enters the spec only when a row of a job
    // with neither a result nor a cancel is exported (ADR 0024): an increment decides
    // again, whatever the earlier export's spec held.
    filter.as_of = None;
    let unfinished = std::sync::atomic::AtomicBool::new(false);
    let state = source::snapshot(gatos)?;
    let mut digests: BTreeMap<&'static str, TableDigest> = BTreeMap::new();
    for ts in &filter.tables {
        sink.begin(&ts.projection)?;
        digests.insert(ts.table().name, TableDigest::default());
    }
    let mut out = Out {
        sink,
        digests,
        count: 0,
        progress,
    };

    // Messages and checkpoints (one reader: a topic is a chain) and jobs (two readers,
    // job by job) are read on their own threads while this one writes: rows travel in bounded batches,
    // so memory stays bounded. Rows of different jobs may interleave in any order.
    let previous_topics = previous
        .manifest
        .as_ref()
        .map(|m| m.topics.clone())
        .unwrap_or_default();
    let work = if filter.has_job_tables() {
        job_work(gatos, &filter, &state, &previous)?
    } else {
        Vec::new()
    };
    let next = std::sync::atomic::AtomicUsize::new(0);
    let (topics, exported_topics) = std::thread::scope(|s| {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Vec<Event>>(8);
        let messages = {
            let sender = sender.clone();
            let (filter, state, units) = (&filter, &state, &previous.units);
            s.spawn(move || {
                let mut tx = Tx::send(filter, sender);
                let done = read_messages(gatos, filter, state, previous_topics, &mut tx)?;
                read_checkpoints(gatos, filter, state, units, &mut tx)?;
                tx.flush()?;
                Ok::<_, Error>(done)
            })
        };
        let jobs = if filter.has_job_tables() {
            let mut readers = Vec::new();
            for _ in 0..JOB_READERS {
                let sender = sender.clone();
                let (filter, work, next, units) = (&filter, &work, &next, &previous.units);
                let unfinished = &unfinished;
                readers.push(s.spawn(move || {
                    let mut tx = Tx::send(filter, sender);
                    let jobs = Jobs {
                        work,
                        next,
                        units,
                        as_of,
                        unfinished,
                    };
                    read_jobs(gatos, filter, &jobs, &mut tx)?;
                    tx.flush()
                }));
            }
            readers
        } else {
            Vec::new()
        };
        drop(sender);
        let mut written = Ok(());
        for batch in &receiver {
            if let Err(e) = batch.into_iter().try_for_each(|e| out.apply(e)) {
                written = Err(e);
                break;
            }
        }
        // A failed write stops the readers: their next send fails.
        drop(receiver);
        let read = joined(messages);
        let mut jobs_read = Ok(());
        for r in jobs {
            let r = joined(r);
            if jobs_read.is_ok() {
                jobs_read = r;
            }
        }
        written?;
        let read = read?;
        jobs_read?;
        Ok::<_, Error>(read)
    })?;
    (out.progress)("rows", out.count);
    if unfinished.into_inner() {
        filter.as_of = Some(as_of.as_millis());
    }

    let mut tables = Vec::new();
    for (t, d) in &mut out.digests {
        let (rows, digest) = out.sink.table_digest(t, d)?;
        tables.push(((*t).to_owned(), rows, digest));
    }
    let table_names: Vec<&str> = filter.tables.iter().map(|t| t.table().name).collect();
    let refs = source::refs_for(&state, &table_names, &exported_topics);
    let manifest = Manifest::new(
        opts.format,
        &filter,
        refs,
        topics
            .into_iter()
            .filter(|(t, _)| exported_topics.iter().any(|x| x.as_str() == t))
            .collect(),
        tables,
        previous.manifest.as_ref().map_or(0, |m| m.increments + 1),
    );
    out.sink.finish(&manifest)?;
    Ok(manifest)
}

fn opt(o: Option<gatos_types::Oid>) -> String {
    o.map_or_else(|| "-".to_owned(), |o| o.to_string())
}

/// Job readers besides the messages reader and the writer.
const JOB_READERS: usize = 2;
/// Rows per batch sent to the writer.
const BATCH: usize = 256;

/// What readers send the writer, applied in the order sent.
enum Event {
    /// A row that passed the filter, with its row digest.
    Row {
        table: &'static str,
        full: Vec<Cell>,
        unit: Option<String>,
        digest: [u8; 32],
    },
    /// An incremental export replaces a unit's rows: remove the old ones first.
    Remove(String),
    /// A unit's fingerprint and finality.
    SetUnit {
        unit: String,
        fp: String,
        is_final: bool,
    },
}

/// A reader's side: filters and digests rows, batches them for the writer.
struct Tx<'f> {
    filter: &'f Filter,
    to: std::sync::mpsc::SyncSender<Vec<Event>>,
    batch: Vec<Event>,
    buf: String,
}

impl<'f> Tx<'f> {
    fn send(filter: &'f Filter, to: std::sync::mpsc::SyncSender<Vec<Event>>) -> Self {
        Tx {
            filter,
            to,
            batch: Vec::with_capacity(BATCH),
            buf: String::new(),
        }
    }

    /// Sends a row when its table is exported and the filter admits it; returns whether
    /// it did.
    fn emit(
        &mut self,
        table: &'static str,
        full: Vec<Cell>,
        unit: Option<&str>,
    ) -> Result<bool, Error> {
        let Some(ts) = self.filter.table(table) else {
            return Ok(false);
        };
        if !ts.matches(&full) {
            return Ok(false);
        }
        let digest = ts.projection.digest(&full, &mut self.buf);
        self.push(Event::Row {
            table,
            full,
            unit: unit.map(str::to_owned),
            digest,
        })?;
        Ok(true)
    }

    fn push(&mut self, e: Event) -> Result<(), Error> {
        self.batch.push(e);
        if self.batch.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Error> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        self.to
            .send(batch)
            .map_err(|_| Error::new(ErrorCode::Internal, "the export's writer stopped"))
    }
}

/// The writer's side: rows into the sink, digests, progress.
struct Out<'p> {
    sink: Box<dyn Sink>,
    digests: BTreeMap<&'static str, TableDigest>,
    count: u64,
    progress: Progress<'p>,
}

impl Out<'_> {
    fn apply(&mut self, e: Event) -> Result<(), Error> {
        match e {
            Event::Row {
                table,
                full,
                unit,
                digest,
            } => {
                self.sink.row(table, &full, unit.as_deref(), &digest)?;
                if let Some(td) = self.digests.get_mut(table) {
                    td.push(digest);
                }
                self.count += 1;
                if self.count.is_multiple_of(2048) {
                    (self.progress)(table, self.count);
                }
                Ok(())
            }
            Event::Remove(unit) => {
                let mut by_table: BTreeMap<String, Vec<[u8; 32]>> = BTreeMap::new();
                for (t, d) in self.sink.remove_unit(&unit)? {
                    by_table.entry(t).or_default().push(d);
                }
                for (t, gone) in by_table {
                    if let Some(td) = self.digests.get_mut(t.as_str()) {
                        td.remove(&gone);
                    }
                }
                Ok(())
            }
            Event::SetUnit { unit, fp, is_final } => self.sink.set_unit(&unit, &fp, is_final),
        }
    }
}

fn joined<T>(h: std::thread::ScopedJoinHandle<'_, Result<T, Error>>) -> Result<T, Error> {
    h.join()
        .unwrap_or_else(|_| Err(Error::new(ErrorCode::Internal, "an export reader panicked")))
}

/// Reads every wanted topic's messages, each from where an earlier export stopped.
/// Returns the topics' sources and the topics exported.
fn read_messages(
    gatos: &Gatos,
    filter: &Filter,
    state: &source::RefState,
    mut topics: BTreeMap<String, TopicSource>,
    tx: &mut Tx<'_>,
) -> Result<(BTreeMap<String, TopicSource>, Vec<Topic>), Error> {
    let mut exported_topics: Vec<Topic> = Vec::new();
    let Some(ts) = filter.table("messages") else {
        return Ok((topics, exported_topics));
    };
    let (lo, hi) = ts.int_bounds("seq");
    let lo = u64::try_from(lo.unwrap_or(1).max(1)).unwrap_or(1);
    let hi = hi.map_or(u64::MAX, |h| u64::try_from(h).unwrap_or(0));
    for (topic, head) in source::topic_heads(state) {
        if !ts.admits_text("topic", topic.as_str()) {
            continue;
        }
        exported_topics.push(topic.clone());
        // A topic whose refs do not read (ADR 0047) fails the export, named, with the ways
        // to export the rest.
        let damaged = |e: Error| {
            if !gatos::messages::is_damage(&e) {
                return e;
            }
            e.context(format_args!(
                "topic '{topic}' does not read (git gatos doctor names the repair; --tables without messages, or --where \"topic = NAME\", exports the rest)"
            ))
            .with_detail("topic", topic.as_str())
        };
        let head_seq = source::message_meta(gatos, head).map_err(damaged)?.seq;
        let from = match topics.get(topic.as_str()) {
            Some(prev) => {
                if gatos.messages().commit_at(&topic, prev.head_seq)? != Some(prev.head) {
                    return Err(Error::new(
                        ErrorCode::Conflict,
                        format!(
                            "topic '{topic}' was rewritten (a sync re-appended its tail, or it was pruned past seq {}) since the earlier export; export again without --incremental",
                            prev.head_seq
                        ),
                    ));
                }
                prev.head_seq + 1
            }
            None => lo,
        }
        .max(lo);
        let mut first = None;
        source::scan_topic(gatos, &topic, head, head_seq, from, hi, |seq, row| {
            first.get_or_insert(seq);
            tx.emit("messages", row, None).map(drop)
        })
        .map_err(damaged)?;
        let entry = topics.entry(topic.to_string()).or_insert(TopicSource {
            head,
            head_seq,
            first_seq: first.unwrap_or(from),
        });
        entry.head = head;
        entry.head_seq = head_seq;
    }
    Ok((topics, exported_topics))
}

/// Reads the checkpoints: few, each replaced whole when its ref moved.
fn read_checkpoints(
    gatos: &Gatos,
    filter: &Filter,
    state: &source::RefState,
    units: &BTreeMap<String, (String, bool)>,
    tx: &mut Tx<'_>,
) -> Result<(), Error> {
    if filter.table("checkpoints").is_none() {
        return Ok(());
    }
    for (name, group, topic, oid) in source::checkpoint_refs(state) {
        let unit = format!("c:{name}");
        let fp = oid.to_string();
        match units.get(&unit) {
            Some((f, _)) if *f == fp => continue,
            Some(_) => tx.push(Event::Remove(unit.clone()))?,
            None => {}
        }
        let row = source::checkpoint_row(gatos, &group, &topic, oid)?;
        tx.emit("checkpoints", row, Some(&unit))?;
        tx.push(Event::SetUnit {
            unit,
            fp,
            is_final: true,
        })?;
    }
    Ok(())
}

/// A job to read: its id, refs, whether it is archived, and its unit fingerprint.
type JobWork = (gatos_types::Ulid, gatos::jobs::records::Refs, bool, String);

/// The jobs an export reads: every job of the state some exported table can take, less
/// the final ones an earlier export already holds unchanged.
fn job_work(
    gatos: &Gatos,
    filter: &Filter,
    state: &source::RefState,
    previous: &Previous,
) -> Result<Vec<JobWork>, Error> {
    let pushdown: Vec<(&TableSpec, &str)> =
        [("jobs", "id"), ("attempts", "job"), ("results", "job")]
            .into_iter()
            .filter_map(|(t, c)| filter.table(t).map(|ts| (ts, c)))
            .collect();
    let mut work = Vec::new();
    source::each_job(gatos, state, |id, refs, archived| {
        let id_text = id.to_string();
        // A job no exported table can take is not read at all.
        if pushdown.iter().all(|(ts, c)| !ts.admits_text(c, &id_text)) {
            return Ok(());
        }
        let fp = format!(
            "{}.{}.{}.{}",
            opt(refs.job),
            opt(refs.claim),
            opt(refs.result),
            opt(refs.cancel)
        );
        if previous
            .units
            .get(&format!("j:{id}"))
            .is_some_and(|(f, fin)| *f == fp && *fin)
        {
            return Ok(());
        }
        work.push((id, refs, archived, fp));
        Ok(())
    })?;
    Ok(work)
}

/// What the job readers share.
struct Jobs<'a> {
    /// The jobs to read.
    work: &'a [JobWork],
    /// The index in `work` of the next job to read.
    next: &'a std::sync::atomic::AtomicUsize,
    /// Unit fingerprints and finality from an earlier export.
    units: &'a BTreeMap<String, (String, bool)>,
    /// The moment job states are derived at.
    as_of: gatos_types::Timestamp,
    /// Set once a row of a job with neither a result nor a cancel is exported: `as_of`
    /// then enters the filter spec.
    unfinished: &'a std::sync::atomic::AtomicBool,
}

/// Reads jobs of `work`, taking the next one from `next` until none is left.
fn read_jobs(
    gatos: &Gatos,
    filter: &Filter,
    jobs: &Jobs<'_>,
    tx: &mut Tx<'_>,
) -> Result<(), Error> {
    use std::sync::atomic::Ordering::Relaxed;
    let need = source::Need::of(filter);
    while let Some((id, refs, archived, fp)) = jobs.work.get(jobs.next.fetch_add(1, Relaxed)) {
        let unit = format!("j:{id}");
        if jobs.units.contains_key(&unit) {
            tx.push(Event::Remove(unit.clone()))?;
        }
        let Some(rec) = gatos.job_record_at(*id, *refs, *archived)? else {
            continue;
        };
        let rows = source::job_rows(gatos, &rec, jobs.as_of, need)?;
        let mut exported = tx.emit("jobs", rows.job, Some(&unit))?;
        for a in rows.attempts {
            exported |= tx.emit("attempts", a, Some(&unit))?;
        }
        if let Some(r) = rows.result {
            exported |= tx.emit("results", r, Some(&unit))?;
        }
        if exported && !rows.finished {
            jobs.unfinished.store(true, Relaxed);
        }
        tx.push(Event::SetUnit {
            unit,
            fp: fp.clone(),
            is_final: rows.is_final,
        })?;
    }
    Ok(())
}

/// The error of sorting a table's row digests (a temporary run could not be written or
/// read back, or a stored run is damaged).
pub(crate) fn sort_error(table: &str) -> impl Fn(std::io::Error) -> Error + Copy + '_ {
    move |e| {
        Error::new(
            ErrorCode::Internal,
            format!("sorting the {table} row digests: {e}"),
        )
    }
}

/// Where a full export is written before it is renamed to `out`: `<out>.tmp-<pid>`. The
/// work files of earlier exports to `out` whose process is gone (killed mid-run) are
/// removed first: each was a whole export's size, and nothing else would remove them.
pub(crate) fn work_path(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let prefix = format!("{name}.tmp-");
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    // Whether a process lives is asked of /proc: without it, nothing is removed.
    let proc_readable = Path::new("/proc/self").exists();
    if let Ok(entries) = std::fs::read_dir(&dir)
        && proc_readable
    {
        for e in entries.flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = file.strip_prefix(&prefix) else {
                continue;
            };
            // Exactly a work file's name: the prefix, then the pid and nothing else.
            if rest.is_empty() || !rest.chars().all(|c| c.is_ascii_digit()) {
                continue;
            }
            let Ok(pid) = rest.parse::<u32>() else {
                continue;
            };
            // A live process (another export running now) keeps its files.
            if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            let path = e.path();
            let removed = if e.file_type().is_ok_and(|t| t.is_dir()) {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            if removed.is_ok() {
                tracing::info!(path = %path.display(), "removed the work file of an export that did not finish");
            }
        }
    }
    let mut work = out.file_name().unwrap_or_default().to_owned();
    work.push(format!(".tmp-{}", std::process::id()));
    out.with_file_name(work)
}

/// Errors about the output path.
pub(crate) fn io_error(what: &str, path: &Path, e: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorCode::Internal,
        format!("{what} {}: {e}", path.display()),
    )
}

/// Resolves `--since`/`--until`: a TIME (RFC 3339, or a DUR meaning that long ago), or
/// a full commit id — a message commit stands for its message's time (its ULID), any
/// other commit for its committer time.
///
/// # Errors
/// `InvalidInput` for anything else; `NotFound` for an unknown commit.
pub fn resolve_bound(gatos: &Gatos, flag: &str, s: &str) -> Result<i64, Error> {
    let is_hex = !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    if is_hex && s.len() == 40 {
        let oid: gatos_types::Oid = s.parse().map_err(|_| {
            Error::new(
                ErrorCode::InvalidInput,
                format!("{flag}: bad commit id {s:?}"),
            )
        })?;
        let mut r = gatos.objects();
        if !r.exists(oid) {
            return Err(Error::new(
                ErrorCode::NotFound,
                format!("{flag}: no commit {oid} in this repository"),
            ));
        }
        let c = r.commit(oid)?;
        return Ok(match gatos::messages::chain::meta(&c) {
            Ok(m) => gatos::messages::ulid_time(m.ulid).as_millis(),
            Err(_) => c.time.saturating_mul(1000),
        });
    }
    if is_hex && s.len() >= 7 && s.len() < 40 {
        return Err(Error::new(
            ErrorCode::InvalidInput,
            format!("{flag}: give the full 40-hex commit id, not {s:?}"),
        ));
    }
    // A ULID (a message's or a job's) stands for the time it carries.
    if s.len() == 26
        && let Ok(u) = s.parse::<gatos_types::Ulid>()
    {
        return Ok(gatos::messages::ulid_time(u).as_millis());
    }
    // A DUR here means that long ago (a window ending now), unlike TIME elsewhere.
    if let Ok(d) = gatos_types::Dur::parse(s) {
        return Ok(gatos.now().minus(d).as_millis());
    }
    gatos_types::time::parse_time(s, gatos.now())
        .map(gatos_types::Timestamp::as_millis)
        .map_err(|e| {
            Error::from(e).context(format!("{flag} (a ULID, a TIME, a DUR ago or a commit id)"))
        })
}
