//! Journaled enqueues (ADR 0046, "As built (2026-12-06, session 12): the journal for
//! enqueues"): an enqueue through a handle whose journal flusher runs (gatosd, the HTTP
//! node, a long-lived library handle) is acknowledged after one append to
//! `<git-dir>/gatos/journal/jobs.enqueued`, and its `refs/gatos/jobs/<id>/job` is created
//! when the journal is *materialized*: by the handle's flusher within
//! `gatos.journal.flushMs`, by the last handle's drop, by a writer when it appended 4,096
//! records or the journal holds 8 MiB, and by every gatos reader of job refs before it
//! reads.
//!
//! A record holds the job's id, its commit and every object of the commit (job document,
//! enqueue envelope, tree, commit), built exactly as the direct path builds them, so the
//! acknowledgement names the commit plain `git` later shows. Appending and materializing
//! run under the journal's own lock family ([`FAMILY`]).
//!
//! **Readers.** `gatos-store` runs [`settle`] before every listing whose prefix overlaps
//! `refs/gatos/jobs/` and before answering "absent" for a job's `…/job` ref
//! ([`gatos_store::Store::set_job_read_hook`]): one `statx` when the journal is empty. A
//! thread that holds a job's lock family or the ready index's lock does not settle (it
//! is [`Quiet`]): the materializer takes those after the journal's lock, and a job lock is
//! only taken after a settle ([`crate::jobs::Jobs`]'s `lock`), so the job it guards is
//! already a ref. The ready index learns a journaled job at its append (as before), and
//! its catch-up from the refs keeps the jobs still in the journal.
//!
//! **Materializing** writes the objects (loose, or one pack for a larger group), creates
//! the job refs in one transaction (a job already there with the same commit is a crash
//! after that transaction: nothing to do), moves the ready index's stamp past the new job
//! directories, and empties the journal. A job ref that exists with another commit cannot
//! be the same job; that record is reported and set aside in `jobs.enqueued.rejected`.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::io::Write as _;
use std::marker::PhantomData;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use gatos_store::objects::Kind;
use gatos_store::refs::{Applied, Edit, Options, names};
use gatos_types::{ErrorCode, Oid, Ulid};

use crate::Gatos;
use crate::codec::{self, Cur};
use crate::error::{Error, Result};

/// The lock family, and the journal's file name.
pub(crate) const FAMILY: &str = "jobs.enqueued";

/// The version byte every record body starts with.
const VERSION: u8 = 1;

/// Records, and bytes, waiting before the writer materializes them itself.
const MAX_PENDING: u64 = 4_096;
const MAX_PENDING_BYTES: u64 = 8 << 20;

/// Groups with fewer objects than this are written as loose objects, not as a pack.
const MIN_PACKED: usize = 32;

/// Bytes of objects materialized together: a chunk closes once it reaches this.
const CHUNK_BYTES: usize = 4 << 20;

thread_local! {
    static QUIET: Cell<u32> = const { Cell::new(0) };
}

/// While one lives, its thread does not materialize the journal before reading job refs:
/// the thread holds a lock the materializer takes after the journal's (a job's lock
/// family, the ready index's), or is the materializer. Not `Send`: it belongs to the
/// thread that made it.
pub(crate) struct Quiet {
    _thread: PhantomData<*const ()>,
}

impl Quiet {
    pub(crate) fn enter() -> Quiet {
        QUIET.with(|q| q.set(q.get() + 1));
        Quiet {
            _thread: PhantomData,
        }
    }
}

impl Drop for Quiet {
    fn drop(&mut self) {
        QUIET.with(|q| q.set(q.get().saturating_sub(1)));
    }
}

fn quiet() -> bool {
    QUIET.with(|q| q.get() > 0)
}

/// What a handle appended and has not seen materialized.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The journal's length after this handle's last append (0: nothing of ours waits).
    len: u64,
    /// The checksum of the record that ends at `len`: a journal of that length that ends
    /// otherwise was emptied and refilled by others meanwhile.
    sum: Option<gatos_store::journal::Checksum>,
    /// Records this handle appended since the journal was last emptied as it knows.
    records: u64,
    /// When the oldest of them was appended.
    since: Option<Instant>,
}

impl Pending {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// When this handle's oldest waiting record was appended.
    pub(crate) fn since(&self) -> Option<Instant> {
        self.state().since
    }
}

/// Whether an enqueue through this handle is journaled: journaling is on
/// (`gatos.journal`, and the handle did not turn it off, as the CLI does) and the
/// handle's flusher runs, so the job becomes a commit plain `git` sees within
/// `gatos.journal.flushMs`.
pub(crate) fn on(gatos: &Gatos) -> bool {
    gatos.journal_on() && gatos.journal_flusher_runs()
}

fn encode(id: Ulid, commit: Oid, objects: &[(Oid, Kind, Vec<u8>)]) -> Vec<u8> {
    let size: usize = objects.iter().map(|o| o.2.len() + 5).sum();
    let mut out = Vec::with_capacity(size + 48);
    out.push(VERSION);
    out.extend_from_slice(&id.to_bytes());
    out.extend_from_slice(commit.as_bytes());
    codec::put_objects(&mut out, objects);
    out
}

/// A decoded record.
#[derive(Debug)]
struct Rec {
    id: Ulid,
    commit: Oid,
    objects: Vec<(Kind, Vec<u8>)>,
}

fn bad_record(why: &str) -> Error {
    Error::new(
        ErrorCode::InvalidEnvelope,
        format!("a record of the enqueue journal does not decode: {why}"),
    )
}

/// Decodes a record; with `objects` false the objects are checked but not copied.
fn decode(body: &[u8], objects: bool) -> Result<Rec> {
    let mut c = Cur::new(body);
    if c.arr::<1>()?[0] != VERSION {
        return Err(bad_record("unknown version"));
    }
    let id = c.ulid()?;
    let commit = c.oid()?;
    let objs = codec::objects(&mut c, objects, 16)?;
    if !c.done() {
        return Err(bad_record("bytes after its objects"));
    }
    Ok(Rec {
        id,
        commit,
        objects: objs,
    })
}

fn lock(gatos: &Gatos) -> Result<gatos_store::locks::Guard> {
    Ok(gatos
        .store()
        .locks()
        .acquire(
            &[FAMILY.to_owned()],
            gatos_store::locks::DEFAULT_LOCK_TIMEOUT,
        )
        .map_err(gatos_store::Error::from)?)
}

/// Appends an enqueue: the job `id`, its `commit` and the commit's objects (collected,
/// not written). Returns once the record is in the journal (and, with `gatos.fsync`, on
/// the disk): the enqueue may then be acknowledged.
///
/// # Errors
/// When the journal cannot be written (nothing was acknowledged), or a torn tail left by
/// another process could not be materialized first.
pub(crate) fn append(
    gatos: &Gatos,
    id: Ulid,
    commit: Oid,
    objects: &[(Oid, Kind, Vec<u8>)],
) -> Result<()> {
    if !objects
        .iter()
        .any(|(o, kind, _)| *o == commit && *kind == Kind::Commit)
    {
        return Err(Error::new(
            ErrorCode::Internal,
            format!("journaling job {id}: its commit is not among its objects"),
        ));
    }
    let body = encode(id, commit, objects);
    let store = gatos.store();
    let _quiet = Quiet::enter();
    let _guard = lock(gatos)?;
    let mut journal = store.open_journal(FAMILY)?;
    let len = journal.file_len()?;
    let pending = gatos.enqueue_journal();
    let mut st = pending.state();
    let ours = len == st.len && (len == 0 || st.sum == Some(journal.checksum_at(len)?));
    if len > 0 && !ours && !whole(&journal, len)? {
        // Another process died in the middle of an append: its torn record must be cut
        // off before anything follows it, which materializing does.
        drop(st);
        materialize_locked(gatos)?;
        st = pending.state();
        journal = store.open_journal(FAMILY)?;
    }
    let sum = journal.append(&body)?;
    let after = journal.file_len()?;
    st.len = after;
    st.sum = Some(sum);
    st.records += 1;
    st.since.get_or_insert_with(Instant::now);
    if store.is_durable() {
        // Not acknowledged if this fails; the record is still materialized later (the
        // client may see the job although its enqueue reported an error).
        journal.sync()?;
    }
    let due = st.records >= MAX_PENDING || after >= MAX_PENDING_BYTES;
    drop(st);
    // The record is in: the enqueue is acknowledged whatever materializing does now (a
    // failure leaves the records for the next reader or flush; an error here would make a
    // client retry an enqueue that stands).
    if due && let Err(e) = materialize_locked(gatos) {
        tracing::warn!(error = %e, "could not materialize the enqueue journal; the next reader or flush will");
    }
    Ok(())
}

/// Whether the journal's first `len` bytes are whole records (another process appended
/// since this handle's last append, or emptied it and appended again).
fn whole(journal: &gatos_store::journal::Journal, len: u64) -> Result<bool> {
    let mut scan = journal.scan()?;
    while scan.next_record()?.is_some() {}
    Ok(scan.good_len() == len)
}

/// The jobs whose records wait in the journal now, read without its lock (appends are
/// whole `write`s; a record being written is not yet there). What the ready index's
/// catch-up keeps although the refs do not have them yet.
pub(crate) fn waiting_ids(gatos: &Gatos) -> Result<BTreeSet<Ulid>> {
    let store = gatos.store();
    let mut out = BTreeSet::new();
    if store.journal_len(FAMILY)? == 0 {
        return Ok(out);
    }
    let journal = store.open_journal(FAMILY)?;
    let mut scan = journal.scan()?;
    // A materializer may empty the journal meanwhile: a read that fails ends the scan
    // (those records are refs by the time the caller lists them).
    while let Ok(Some(body)) = scan.next_record() {
        if let Ok(rec) = decode(&body, false) {
            out.insert(rec.id);
        }
    }
    Ok(out)
}

/// Makes every enqueue waiting in the journal a job ref, before a read of job refs:
/// nothing but one `statx` when the journal is empty, and nothing at all on a [`Quiet`]
/// thread.
///
/// # Errors
/// When the journal cannot be materialized (see [`materialize_locked`]).
pub(crate) fn settle(gatos: &Gatos) -> Result<()> {
    if quiet() {
        return Ok(());
    }
    let store = gatos.store();
    if store.journal_len(FAMILY)? == 0 {
        return Ok(());
    }
    let _quiet = Quiet::enter();
    let _guard = lock(gatos)?;
    materialize_locked(gatos)
}

/// Materializes the journal if this handle's oldest waiting record is at least `age` old
/// (the flusher's turn; the last handle's drop with `age` zero).
pub(crate) fn flush_due(gatos: &Gatos, age: Duration) {
    let due = gatos
        .enqueue_journal()
        .since()
        .is_some_and(|s| s.elapsed() >= age);
    if !due {
        return;
    }
    {
        // Under the handle's state, which an append holds across its write: a record
        // appended after this check is not forgotten.
        let mut st = gatos.enqueue_journal().state();
        if gatos.store().journal_len(FAMILY).unwrap_or(1) == 0 {
            // Another process (a reader) materialized what this handle appended.
            *st = State::default();
            return;
        }
    }
    if let Err(e) = settle(gatos) {
        tracing::warn!(error = %e, "could not materialize the enqueue journal");
    }
}

/// Materializes the journal; the caller holds its lock and is [`Quiet`].
///
/// # Errors
/// A store failure (the journal is left as it was, for the next reader). A record that
/// does not decode, or whose job exists with another commit, is not an error: it is
/// reported and set aside.
fn materialize_locked(gatos: &Gatos) -> Result<()> {
    let store = gatos.store();
    let journal = store.open_journal(FAMILY)?;
    let mut scan = journal.scan()?;
    let mut chunks: Vec<Vec<Rec>> = Vec::new();
    let mut chunk = Vec::new();
    let mut bytes = 0usize;
    while let Some(body) = scan.next_record()? {
        match decode(&body, true) {
            Ok(rec) => {
                bytes += rec.objects.iter().map(|(_, d)| d.len()).sum::<usize>();
                chunk.push(rec);
                if bytes >= CHUNK_BYTES {
                    chunks.push(std::mem::take(&mut chunk));
                    bytes = 0;
                }
            }
            Err(e) => reject(gatos, &body, e.code(), &e.to_string()),
        }
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    if scan.good_len() < scan.file_len() {
        // A record torn by a crash during its write: it was never acknowledged.
        tracing::warn!(
            bytes = scan.file_len() - scan.good_len(),
            "cutting a torn record off the enqueue journal"
        );
    }
    let mut created = 0usize;
    for chunk in chunks {
        created += write_chunk(gatos, chunk)?;
    }
    journal.truncate(0)?;
    *gatos.enqueue_journal().state() = State::default();
    if created > 0 {
        gatos.maybe_maintain();
    }
    Ok(())
}

/// Writes one chunk's objects, then creates its job refs in one transaction. Returns how
/// many refs it created.
fn write_chunk(gatos: &Gatos, mut chunk: Vec<Rec>) -> Result<usize> {
    let store = gatos.store();
    let objects = chunk
        .iter_mut()
        .flat_map(|r| std::mem::take(&mut r.objects))
        .collect();
    let (wrote, keep) = store.write_objects(objects, MIN_PACKED)?;
    let mut edits = Vec::with_capacity(chunk.len());
    for r in &chunk {
        if wrote.contains(&r.commit) {
            edits.push((r.id, r.commit, Edit::create(names::job(r.id), r.commit)));
        } else {
            tracing::error!(job = %r.id, commit = %r.commit, "an enqueue journal record without its commit's object; set aside");
            reject(
                gatos,
                &encode(r.id, r.commit, &[]),
                ErrorCode::InvalidEnvelope,
                "its commit is not among its objects",
            );
        }
    }
    let ready = super::ready::Ready::new(gatos);
    let before = ready.stamp();
    let opts = Options {
        message: "gatos: enqueue (journal)".to_owned(),
        ..Options::default()
    };
    let all: Vec<Edit> = edits.iter().map(|(_, _, e)| e.clone()).collect();
    let mut made = Vec::new();
    match store.update_refs(&all, &opts) {
        Ok(applied) => {
            for ((id, _, _), a) in edits.iter().zip(applied) {
                if a == Applied::Changed {
                    made.push(*id);
                }
            }
        }
        Err(gatos_store::Error::CasMismatch { .. }) => {
            // One of them exists with another commit: create them one by one, so that
            // only that one is set aside.
            for (id, commit, edit) in &edits {
                match store.update_refs(std::slice::from_ref(edit), &opts) {
                    Ok(applied) => {
                        if applied.first() == Some(&Applied::Changed) {
                            made.push(*id);
                        }
                    }
                    Err(gatos_store::Error::CasMismatch { actual, .. }) => {
                        let why = format!(
                            "job {id} already exists with commit {}",
                            actual.map_or_else(|| "none".to_owned(), |a| a.to_string())
                        );
                        tracing::error!(job = %id, "{why}: its journaled enqueue is set aside");
                        reject(gatos, &encode(*id, *commit, &[]), ErrorCode::Conflict, &why);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Err(e) => return Err(e.into()),
    }
    drop(keep);
    if let Err(e) = ready.materialized(&made, before) {
        tracing::warn!(error = %e, "could not update the job ready index; it will catch up");
    }
    tracing::debug!(
        records = chunk.len(),
        created = made.len(),
        "enqueue journal materialized"
    );
    Ok(made.len())
}

/// Sets a record aside in `jobs.enqueued.rejected` (appended as one line: the reason's code,
/// `: `, the reason, a space, the body in hex) and logs it as an error. `Conflict`: the job's
/// id is taken by another job; any other code: the record did not hold what its job needs.
fn reject(gatos: &Gatos, body: &[u8], code: ErrorCode, why: &str) {
    tracing::error!(
        reason = why,
        "an enqueue journal record cannot be materialized; it is set aside in {FAMILY}.rejected"
    );
    let path = gatos
        .store()
        .journal_dir()
        .join(format!("{FAMILY}.rejected"));
    let line = format!(
        "{}: {} {}\n",
        code.as_str(),
        why.replace('\n', " "),
        body.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        tracing::error!(path = %path.display(), error = %e, "could not set the record aside");
    }
}

/// A record [`reject`] set aside, as `git gatos doctor` reports it.
#[derive(Debug)]
pub(crate) struct SetAside {
    /// The job and the commit the enqueue acknowledged, when the record still reads.
    pub(crate) job: Option<(Ulid, Oid)>,
    /// Why it was set aside: its code (`None` for a line written before codes were), and
    /// in words.
    pub(crate) code: Option<ErrorCode>,
    pub(crate) why: String,
}

/// The records set aside in `jobs.enqueued.rejected` (its path, the first `max` records
/// and how many there are in all). No file: none.
///
/// # Errors
/// The file exists and cannot be read.
pub(crate) fn set_aside(
    gatos: &Gatos,
    max: usize,
) -> std::io::Result<(std::path::PathBuf, Vec<SetAside>, u64)> {
    let path = gatos
        .store()
        .journal_dir()
        .join(format!("{FAMILY}.rejected"));
    let (first, count) = read_set_aside(&path, max)?;
    Ok((path, first, count))
}

/// [`set_aside`] of the file at `path`.
fn read_set_aside(path: &std::path::Path, max: usize) -> std::io::Result<(Vec<SetAside>, u64)> {
    use std::io::BufRead as _;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    let mut first = Vec::new();
    let mut count = 0u64;
    // A line holds a record's body in hex (up to twice the store's record cap): only the
    // lines reported are read whole. A last line without its newline is still being
    // written (or was cut by a crash): not counted.
    let mut reader = std::io::BufReader::new(file);
    let mut line = Vec::new();
    loop {
        let ended = if first.len() < max {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            line.last() == Some(&b'\n')
        } else {
            match skip_line(&mut reader)? {
                None => break,
                Some(ended) => ended,
            }
        };
        if !ended {
            break;
        }
        count += 1;
        if first.len() < max {
            first.push(parse_set_aside(&line));
        }
    }
    Ok((first, count))
}

/// Reads past one line without keeping it: `None` at the end of the file, else whether the
/// line ended with its newline.
fn skip_line(r: &mut impl std::io::BufRead) -> std::io::Result<Option<bool>> {
    let mut any = false;
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(any.then_some(false));
        }
        any = true;
        if let Some(i) = buf.iter().position(|&b| b == b'\n') {
            r.consume(i + 1);
            return Ok(Some(true));
        }
        let n = buf.len();
        r.consume(n);
    }
}

/// One line of `jobs.enqueued.rejected`: the reason's code and `: ` (lines written before
/// codes were have none), the reason, a space, the record's body in hex.
fn parse_set_aside(line: &[u8]) -> SetAside {
    let text = String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(line));
    let (why, hex) = text.rsplit_once(' ').unwrap_or((&text, ""));
    let (code, why) = match why.split_once(": ") {
        Some((c, rest)) => match c.parse::<ErrorCode>() {
            Ok(code) => (Some(code), rest),
            Err(_) => (None, why),
        },
        None => (None, why),
    };
    let body: Option<Vec<u8>> = (hex.len() % 2 == 0)
        .then(|| {
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect()
        })
        .flatten();
    let job = body
        .and_then(|b| decode(&b, false).ok())
        .map(|r| (r.id, r.commit));
    SetAside {
        job,
        code,
        why: why.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_set_aside_file_is_counted_past_the_lines_read_and_a_partial_last_line_is_not()
    -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("rejected");
        assert_eq!(read_set_aside(&path, 2)?.1, 0, "no file: none");
        std::fs::write(&path, "a 00\nb 01\nc 02\nd 03\ne 0")?;
        let (first, count) = read_set_aside(&path, 2)?;
        assert_eq!(count, 4);
        let whys: Vec<_> = first.iter().map(|r| r.why.as_str()).collect();
        assert_eq!(whys, ["a", "b"]);
        let (first, count) = read_set_aside(&path, 10)?;
        assert_eq!((first.len(), count), (4, 4));
        Ok(())
    }

    #[test]
    fn a_set_aside_line_names_its_job_when_its_record_reads() {
        let id = Ulid::from_parts(1_795_000_000_000, 9);
        let commit = Oid::from_bytes([4; 20]);
        let hex: String = encode(id, commit, &[])
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let rec = parse_set_aside(
            format!("Conflict: job {id} already exists with commit x {hex}\n").as_bytes(),
        );
        assert_eq!(rec.job, Some((id, commit)));
        assert_eq!(rec.code, Some(ErrorCode::Conflict));
        assert_eq!(rec.why, format!("job {id} already exists with commit x"));
        // A line written before codes were: its reason whole, no code.
        let old = parse_set_aside(format!("job {id}: already exists {hex}\n").as_bytes());
        assert_eq!(
            (old.code, old.why.as_str()),
            (None, &*format!("job {id}: already exists"))
        );
        assert_eq!(old.job, Some((id, commit)));
        // A body that does not decode, hex that is not hex, a line without a body.
        for line in [
            &b"bad version 0100\n"[..],
            b"odd abc\n",
            b"no body\n",
            b"\n",
            b"x \xff\xfe",
        ] {
            assert!(parse_set_aside(line).job.is_none(), "{line:?}");
        }
    }

    #[test]
    fn a_record_reads_back_and_a_damaged_one_does_not() {
        let id = Ulid::from_parts(1_795_000_000_000, 7);
        let commit = Oid::from_bytes([3; 20]);
        let objects = vec![
            (Oid::from_bytes([1; 20]), Kind::Blob, b"{}".to_vec()),
            (commit, Kind::Commit, b"tree x".to_vec()),
        ];
        let body = encode(id, commit, &objects);
        let rec = decode(&body, true).expect("decodes");
        assert_eq!((rec.id, rec.commit), (id, commit));
        assert_eq!(rec.objects.len(), 2);
        assert_eq!(rec.objects[1], (Kind::Commit, b"tree x".to_vec()));
        assert!(decode(&body[..body.len() - 1], true).is_err());
        let mut more = body.clone();
        more.push(0);
        assert!(decode(&more, true).is_err());
        let mut other = body;
        other[0] = 9;
        assert!(decode(&other, true).is_err());
    }
}
