//! A job's logs while it runs and after: the worker's live spool on this node, then the
//! logs its attempt committed (`jobs logs`; issue #15, ADR 0021 amendment, docs/jobs.md
//! "Logs").
//!
//! **The spool.** While a worker runs attempt *n* of a job it writes, under the git
//! directory (which no sandbox rule ever grants, so no job can read it):
//!
//! ```text
//! <git-dir>/gatos/logs/<job>/            0700
//!     <n>.json     0600  {job, attempt, worker, cap}; the worker holds a flock on it
//!     <n>.stdout   0600  the job's standard output, redacted, at most `cap` bytes
//!     <n>.stderr   0600  the same for standard error
//! ```
//!
//! Each stream file holds exactly the bytes the attempt's commit will keep under
//! `logs/<stream>`, as far as they are known: the same redaction (a
//! [`super::redact::StreamRedactor`] over the same secrets) and the same cap (the worker's
//! `--log-cap`). A stream that passes the cap ends its file with
//! [`spool_note`]; the result then ends with the count, as before. So an offset into the
//! spool is an offset into the committed log, and a reader that follows a job across the
//! moment its result lands loses nothing and repeats nothing.
//!
//! The worker creates the spool when it has claimed the attempt and removes it once the
//! attempt's commit (the result, or the claim that released the attempt) is written; its
//! flock tells readers whether the writer is still there. A worker that starts removes the
//! spools whose writer is gone (a crashed worker's, [`sweep`]).
//!
//! **Reading.** [`Jobs::logs`] returns one chunk of one stream of one attempt: from the
//! attempt's commit when it has one ([`Source::Result`]), else from the spool on this node
//! ([`Source::Spool`]); a job running on another node has no log here until its result
//! arrives (`Unavailable`). [`Jobs::follow_logs`] waits for more, attempt after attempt,
//! until the job has ended.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{
    DirBuilderExt as _, FileExt as _, OpenOptionsExt as _, PermissionsExt as _,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gatos_types::jobs::{ClaimDoc, ClaimState};
use gatos_types::{Coded, ErrorCode, Oid, Ulid, WorkerId};
use serde::{Deserialize, Serialize};

use super::Jobs;
use super::records::{CLAIM_PATH, JobRecord, STDERR_PATH, STDOUT_PATH, read_doc};
use crate::Gatos;

/// The spool's directory under `<git-dir>/gatos/`.
pub const DIR: &str = "logs";
/// Bytes a chunk holds when the caller does not say.
pub const DEFAULT_MAX_BYTES: usize = 64 * 1024;
/// The most bytes one chunk holds (a larger `max_bytes` is lowered to this).
pub const MAX_CHUNK: usize = 1024 * 1024;
/// The shortest and longest pause of a waiting follower: it looks again after the
/// shortest when something just arrived, and backs off to the longest while nothing does.
pub const FOLLOW_POLL: (Duration, Duration) =
    (Duration::from_millis(10), Duration::from_millis(100));

/// One of a job's two captured streams.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Standard output.
    #[default]
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// Both streams, standard output first.
    pub const BOTH: [Stream; 2] = [Stream::Stdout, Stream::Stderr];

    /// Returns `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    /// Its path in a result or released claim commit.
    fn commit_path(self) -> &'static str {
        match self {
            Stream::Stdout => STDOUT_PATH,
            Stream::Stderr => STDERR_PATH,
        }
    }
}

impl std::fmt::Display for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Stream {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Stream> {
        match s {
            "stdout" => Ok(Stream::Stdout),
            "stderr" => Ok(Stream::Stderr),
            _ => Err(crate::Error::new(
                ErrorCode::InvalidInput,
                format!("a log stream is stdout or stderr, not {s:?}"),
            )),
        }
    }
}

/// Where a chunk was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The live spool of a worker on this node (or what a crashed one left).
    Spool,
    /// The attempt's commit: the result, or the claim that released the attempt.
    Result,
}

/// What to read (`jobs.logs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Options {
    /// The attempt, from 1; `None`: the latest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// The stream.
    #[serde(default)]
    pub stream: Stream,
    /// The first byte to return.
    #[serde(default)]
    pub from_offset: u64,
    /// The most bytes to return (at most [`MAX_CHUNK`]).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
}

fn default_max_bytes() -> usize {
    DEFAULT_MAX_BYTES
}

impl Default for Options {
    fn default() -> Options {
        Options {
            attempt: None,
            stream: Stream::Stdout,
            from_offset: 0,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// Bytes of one stream of one attempt, and where to go on from.
///
/// As JSON (`jobs logs --json`, `jobs.logs`): `{job, attempt, stream, offset, next_offset,
/// done, source, truncated, encoding, data}`, where `data` is the bytes as text when they
/// are UTF-8 (`encoding: "utf-8"`) and base64 otherwise (`encoding: "base64"`). Offsets
/// count bytes of the log, whatever the encoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "ChunkWire", try_from = "ChunkWire")]
pub struct LogChunk {
    /// The job.
    pub job: Ulid,
    /// The attempt.
    pub attempt: u32,
    /// The stream.
    pub stream: Stream,
    /// The offset of the first byte of `data`.
    pub offset: u64,
    /// The bytes.
    pub data: Vec<u8>,
    /// Where the next read starts.
    pub next_offset: u64,
    /// Nothing will follow `next_offset` in this attempt's stream: it has its commit and
    /// this is its end, or its worker went away without writing one.
    pub done: bool,
    /// Where the bytes were read.
    pub source: Source,
    /// The spool reached the worker's cap: what follows it arrives only with the result
    /// (the truncation note with the count).
    pub truncated: bool,
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
struct ChunkWire {
    job: Ulid,
    attempt: u32,
    stream: Stream,
    offset: u64,
    next_offset: u64,
    done: bool,
    source: Source,
    truncated: bool,
    encoding: Encoding,
    data: String,
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
enum Encoding {
    #[serde(rename = "utf-8")]
    Utf8,
    #[serde(rename = "base64")]
    Base64,
}

impl schemars::JsonSchema for LogChunk {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "LogChunk".into()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        // The wire form is the schema's (data as text or base64, with its encoding).
        ChunkWire::json_schema(g)
    }
}

impl From<LogChunk> for ChunkWire {
    fn from(c: LogChunk) -> ChunkWire {
        use base64::Engine as _;
        let (encoding, data) = match String::from_utf8(c.data) {
            Ok(s) => (Encoding::Utf8, s),
            Err(e) => (
                Encoding::Base64,
                base64::engine::general_purpose::STANDARD.encode(e.as_bytes()),
            ),
        };
        ChunkWire {
            job: c.job,
            attempt: c.attempt,
            stream: c.stream,
            offset: c.offset,
            next_offset: c.next_offset,
            done: c.done,
            source: c.source,
            truncated: c.truncated,
            encoding,
            data,
        }
    }
}

impl TryFrom<ChunkWire> for LogChunk {
    type Error = String;
    fn try_from(w: ChunkWire) -> std::result::Result<LogChunk, String> {
        use base64::Engine as _;
        let data = match w.encoding {
            Encoding::Utf8 => w.data.into_bytes(),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(w.data.as_bytes())
                .map_err(|e| format!("data: {e}"))?,
        };
        Ok(LogChunk {
            job: w.job,
            attempt: w.attempt,
            stream: w.stream,
            offset: w.offset,
            data,
            next_offset: w.next_offset,
            done: w.done,
            source: w.source,
            truncated: w.truncated,
        })
    }
}

/// Why a log cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such job, live or archived.
    #[error("job {job} does not exist (nor in the archive)")]
    NoSuchJob {
        /// The job.
        job: Ulid,
    },
    /// The attempt has not happened.
    #[error("job {job} has had {attempts} attempt(s), not {attempt}")]
    NoSuchAttempt {
        /// The job.
        job: Ulid,
        /// The attempt asked for.
        attempt: u32,
        /// Attempts so far.
        attempts: u32,
    },
    /// Attempt 0, or a chunk of 0 bytes.
    #[error("{0}")]
    BadOptions(&'static str),
    /// Nobody has claimed the job yet.
    #[error("job {job} has not started: nothing is logged yet (following the log waits for it)")]
    NotStarted {
        /// The job.
        job: Ulid,
    },
    /// The attempt runs, but not on this node: its log arrives with its result.
    #[error(
        "no log of job {job} attempt {attempt} is available on this node yet: no worker here runs it (worker {worker} holds it); its logs arrive with its result (a sync brings them; following the log waits for it)"
    )]
    Elsewhere {
        /// The job.
        job: Ulid,
        /// The attempt.
        attempt: u32,
        /// The worker holding the claim.
        worker: WorkerId,
    },
    /// The attempt ended without a commit and left no spool here (its worker lost the
    /// claim, or crashed on another node).
    #[error(
        "attempt {attempt} of job {job} left no log: it ended without writing one (its worker lost the claim)"
    )]
    NoLog {
        /// The job.
        job: Ulid,
        /// The attempt.
        attempt: u32,
    },
    /// The spool could not be read.
    #[error("reading the log spool {}", path.display())]
    Spool {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The repository could not be read.
    #[error(transparent)]
    Read(#[from] crate::Error),
}

impl Coded for Error {
    fn code(&self) -> ErrorCode {
        match self {
            Error::NoSuchJob { .. } | Error::NoSuchAttempt { .. } | Error::NoLog { .. } => {
                ErrorCode::NotFound
            }
            Error::BadOptions(_) => ErrorCode::InvalidInput,
            Error::NotStarted { .. } | Error::Elsewhere { .. } => ErrorCode::Unavailable,
            Error::Spool { .. } => ErrorCode::Internal,
            Error::Read(e) => e.code(),
        }
    }
}

type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The public error, without wrapping a repository error twice.
    fn public(self) -> crate::Error {
        match self {
            Error::Read(e) => e,
            other => other.into(),
        }
    }
}

/// The line a spool stream ends with once it reaches the cap.
pub fn spool_note(cap: usize) -> String {
    format!("\n[gatos: output truncated: {cap} bytes kept so far; the result gives the total]\n")
}

/// What a spool's `<attempt>.json` says.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Header {
    job: Ulid,
    attempt: u32,
    worker: WorkerId,
    cap: u64,
}

fn job_dir(gatos: &Gatos, job: Ulid) -> PathBuf {
    gatos.store().gatos_dir().join(DIR).join(job.to_string())
}

fn header_path(dir: &Path, attempt: u32) -> PathBuf {
    dir.join(format!("{attempt}.json"))
}

fn stream_path(dir: &Path, attempt: u32, stream: Stream) -> PathBuf {
    dir.join(format!("{attempt}.{stream}"))
}

/// Opens a file for writing with mode 0600, whatever it had before.
fn private_file(path: &Path, create_new: bool) -> std::io::Result<File> {
    let f = OpenOptions::new()
        .write(true)
        .create(!create_new)
        .create_new(create_new)
        .truncate(!create_new)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

/// One attempt's spool, as its worker holds it: removed when dropped.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    attempt: u32,
    cap: usize,
    /// `<attempt>.json`, flocked while the spool lives.
    _header: File,
}

impl Spool {
    /// Creates the spool of an attempt this worker has claimed: the header first (renamed
    /// into place already locked, so no reader or sweeper ever sees it unlocked while its
    /// writer lives), then the two empty stream files. `cap` is the worker's `--log-cap`.
    ///
    /// # Errors
    /// When the files cannot be made (the attempt then runs without a spool).
    pub fn create(
        gatos: &Gatos,
        job: Ulid,
        attempt: u32,
        worker: &WorkerId,
        cap: usize,
    ) -> std::io::Result<Spool> {
        let dir = job_dir(gatos, job);
        let mut tries = 0;
        loop {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)?;
            match Self::create_in(&dir, job, attempt, worker, cap) {
                // A sweeper removed the (empty) job directory in between: once more.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries == 0 => tries += 1,
                other => return other,
            }
        }
    }

    fn create_in(
        dir: &Path,
        job: Ulid,
        attempt: u32,
        worker: &WorkerId,
        cap: usize,
    ) -> std::io::Result<Spool> {
        let mut nonce = [0u8; 8];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
        let tmp = dir.join(format!(
            ".{attempt}.{}.tmp",
            gatos_types::digest::to_hex(&nonce)
        ));
        let mut header = private_file(&tmp, true)?;
        let made = (|| {
            header.try_lock().map_err(std::io::Error::other)?;
            let doc = Header {
                job,
                attempt,
                worker: worker.clone(),
                cap: cap as u64,
            };
            header.write_all(&serde_json::to_vec(&doc).map_err(std::io::Error::other)?)?;
            std::fs::rename(&tmp, header_path(dir, attempt))
        })();
        if let Err(e) = made {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let spool = Spool {
            dir: dir.to_owned(),
            attempt,
            cap,
            _header: header,
        };
        for s in Stream::BOTH {
            private_file(&stream_path(dir, attempt, s), false)?;
        }
        Ok(spool)
    }

    /// Opens a stream of the spool for appending.
    ///
    /// # Errors
    /// When the file cannot be opened.
    pub fn writer(&self, stream: Stream) -> std::io::Result<SpoolWriter> {
        let path = stream_path(&self.dir, self.attempt, stream);
        let file = OpenOptions::new().append(true).open(&path)?;
        Ok(SpoolWriter {
            file,
            path,
            cap: self.cap,
            written: 0,
            noted: false,
            failed: false,
        })
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        for s in Stream::BOTH {
            let _ = std::fs::remove_file(stream_path(&self.dir, self.attempt, s));
        }
        // The header last: a stream file without one is a leftover to any sweeper. Its
        // flock is let go after the files are gone, by unlocking (a forked child's copy of
        // the descriptor would keep it past the close).
        let _ = std::fs::remove_file(header_path(&self.dir, self.attempt));
        let _ = self._header.unlock();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Appends one stream of a spool, up to the cap, then the [`spool_note`].
#[derive(Debug)]
pub struct SpoolWriter {
    file: File,
    path: PathBuf,
    cap: usize,
    written: usize,
    noted: bool,
    failed: bool,
}

impl SpoolWriter {
    /// Appends redacted bytes; past the cap, writes the note once and drops the rest. A
    /// write that fails stops the spool of this stream (the committed log is unaffected).
    pub fn append(&mut self, bytes: &[u8]) {
        if self.failed || self.noted {
            return;
        }
        let room = self.cap - self.written;
        let part = &bytes[..bytes.len().min(room)];
        let mut res = self.file.write_all(part);
        self.written += part.len();
        if res.is_ok() && bytes.len() > room {
            self.noted = true;
            res = self.file.write_all(spool_note(self.cap).as_bytes());
        }
        if let Err(e) = res {
            self.failed = true;
            tracing::warn!(path = %self.path.display(), error = %e, "cannot write the live log spool; the job's log is still committed with its result");
        }
    }
}

/// At worker start: removes the spools whose writer is gone (a crashed worker's), and
/// leftovers of a spool being made or removed. Returns how many attempts' spools went.
pub fn sweep(gatos: &Gatos) -> usize {
    let root = gatos.store().gatos_dir().join(DIR);
    let Ok(jobs) = std::fs::read_dir(&root) else {
        return 0;
    };
    let mut removed = 0;
    for job in jobs.flatten() {
        let dir = job.path();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        // A header (or one being made) whose flock is free has no writer. The probe's own
        // flock is unlocked, not only closed: a child another thread forks holds a copy of
        // the descriptor until its exec, and the flock with it.
        let unlocked = |name: &str| {
            File::open(dir.join(name)).is_ok_and(|f| f.try_lock().is_ok() && f.unlock().is_ok())
        };
        let mut live: Vec<&str> = Vec::new();
        for name in &names {
            if name.starts_with('.') {
                if unlocked(name) {
                    let _ = std::fs::remove_file(dir.join(name));
                }
                continue;
            }
            let Some(attempt) = name.strip_suffix(".json") else {
                continue;
            };
            if unlocked(name) {
                for s in Stream::BOTH {
                    let _ = std::fs::remove_file(dir.join(format!("{attempt}.{s}")));
                }
                let _ = std::fs::remove_file(dir.join(name));
                removed += 1;
            } else {
                live.push(attempt);
            }
        }
        // Stream files whose header is gone: a removal that stopped half-way.
        for name in &names {
            if let Some((attempt, _)) = name.split_once('.')
                && !name.starts_with('.')
                && !name.ends_with(".json")
                && !live.contains(&attempt)
                && !names.contains(&format!("{attempt}.json"))
            {
                let _ = std::fs::remove_file(dir.join(name));
            }
        }
        let _ = std::fs::remove_dir(&dir);
    }
    if removed > 0 {
        tracing::info!(
            spools = removed,
            "removed the log spools of workers that are gone"
        );
    }
    removed
}

/// What a spool holds of one stream.
struct SpoolRead {
    data: Vec<u8>,
    next: u64,
    /// Its writer still holds it.
    live: bool,
    /// Where its data ends now (the cap, or less).
    end: u64,
    truncated: bool,
}

/// Reads a stream of an attempt's spool on this node; `None` when there is none.
fn read_spool(
    gatos: &Gatos,
    job: Ulid,
    attempt: u32,
    stream: Stream,
    from: u64,
    max: usize,
) -> Result<Option<SpoolRead>> {
    let dir = job_dir(gatos, job);
    let hpath = header_path(&dir, attempt);
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Spool { path, source }
    };
    let header = match File::open(&hpath) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&hpath)(e)),
    };
    // The writer's flock first, the bytes after: a writer seen gone has written all.
    // The shared flock, once taken, is kept while the spool is read: `sweep` cannot remove
    // a dead writer's files under a reader.
    let live = match header.try_lock_shared() {
        Ok(()) => false,
        Err(std::fs::TryLockError::WouldBlock) => true,
        Err(std::fs::TryLockError::Error(e)) => return Err(io(&hpath)(e)),
    };
    let mut text = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(&header, 4096), &mut text)
        .map_err(io(&hpath))?;
    let Ok(doc) = serde_json::from_slice::<Header>(&text) else {
        // Not a header a worker wrote (they are renamed into place whole).
        return Ok(None);
    };
    let spath = stream_path(&dir, attempt, stream);
    let file = match File::open(&spath) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(&spath)(e)),
    };
    let len = match &file {
        Some(f) => f.metadata().map_err(io(&spath))?.len(),
        None => 0,
    };
    let end = len.min(doc.cap);
    let mut data = Vec::new();
    if let Some(f) = &file
        && from < end
    {
        let want = usize::try_from((end - from).min(max as u64)).unwrap_or(max);
        data.resize(want, 0);
        let mut got = 0;
        while got < want {
            match f.read_at(&mut data[got..], from + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io(&spath)(e)),
            }
        }
        data.truncate(got);
    }
    let next = from + data.len() as u64;
    if live || next < end {
        trim_partial_char(&mut data);
    }
    Ok(Some(SpoolRead {
        next: from + data.len() as u64,
        data,
        live,
        end,
        truncated: len > doc.cap,
    }))
}

/// Drops an incomplete UTF-8 sequence at the end of `data` (its rest comes with the next
/// chunk), unless nothing else is left.
fn trim_partial_char(data: &mut Vec<u8>) {
    let n = data.len();
    for back in 1..=3.min(n) {
        let b = data[n - back];
        if b & 0xC0 == 0x80 {
            continue; // a continuation byte: look further back for the lead
        }
        let need = if b & 0xE0 == 0xC0 {
            2
        } else if b & 0xF0 == 0xE0 {
            3
        } else if b & 0xF8 == 0xF0 {
            4
        } else {
            1
        };
        if need > back && n > back {
            data.truncate(n - back);
        }
        return;
    }
}

/// The commit that keeps attempt `n`'s logs: the result, or the claim that released it.
fn committed(gatos: &Gatos, rec: &JobRecord, n: u32) -> crate::Result<Option<Oid>> {
    if let Some((commit, doc)) = &rec.result
        && doc.attempt == n
    {
        return Ok(Some(*commit));
    }
    let Some((tip, doc)) = &rec.claim else {
        return Ok(None);
    };
    if doc.attempt == n {
        return Ok((doc.state == ClaimState::Released).then_some(*tip));
    }
    if doc.attempt < n {
        return Ok(None);
    }
    // An earlier attempt: back along the chain (over the later attempts' heartbeats).
    let mut r = gatos.store().reader();
    let mut at = r.commit(*tip)?.parents.first().copied();
    while let Some(c) = at {
        let (d, _): (ClaimDoc, _) = read_doc(&mut r, c, CLAIM_PATH)?;
        if d.attempt < n {
            return Ok(None);
        }
        if d.attempt == n && d.state == ClaimState::Released {
            return Ok(Some(c));
        }
        at = r.commit(c)?.parents.first().copied();
    }
    Ok(None)
}

/// Committed logs already read, by attempt and stream (they never change).
type Cache = Vec<((u32, Stream), Vec<u8>)>;

/// Whether the claim says attempt `n` still runs (its lease is live).
fn still_held(gatos: &Gatos, rec: &JobRecord, n: u32) -> Option<WorkerId> {
    let (_, c) = rec.claim.as_ref()?;
    let running = matches!(c.state, ClaimState::Running | ClaimState::Heartbeat);
    (c.attempt == n && running && gatos.now() <= c.lease_until.plus(gatos.lease_skew()))
        .then(|| c.worker.clone())
}

impl Jobs<'_> {
    fn record_or_not_found(&self, id: Ulid) -> Result<JobRecord> {
        self.record(id)?.ok_or(Error::NoSuchJob { job: id })
    }

    /// Returns a chunk of one stream of a job's attempt: from the attempt's commit (the
    /// result, or the claim that released it) when it has one, else from the live spool a
    /// worker on this node writes while it runs the attempt. An offset into the spool is
    /// an offset into the committed log, so a reader can go on across the moment the result
    /// lands (docs/jobs.md "Logs").
    ///
    /// # Errors
    /// `NotFound` for an unknown job or attempt, or an attempt that ended without a log
    /// (its worker lost the claim); `Unavailable` before the job started, or while it runs
    /// on another node (its log arrives with its result); `InvalidInput` for attempt 0 or
    /// `max_bytes` 0.
    pub fn logs(&self, id: Ulid, opts: &Options) -> crate::Result<LogChunk> {
        self.logs_with(id, opts, None).map_err(Error::public)
    }

    fn logs_with(&self, id: Ulid, opts: &Options, cache: Option<&mut Cache>) -> Result<LogChunk> {
        if opts.attempt == Some(0) {
            return Err(Error::BadOptions("attempts are numbered from 1"));
        }
        if opts.max_bytes == 0 {
            return Err(Error::BadOptions("max_bytes must be at least 1"));
        }
        let rec = self.record_or_not_found(id)?;
        let attempts =
            super::state::derive(&rec, self.gatos.now(), self.gatos.lease_skew()).attempt;
        let n = opts.attempt.unwrap_or(attempts);
        if n == 0 {
            return Err(Error::NotStarted { job: id });
        }
        if n > attempts {
            return Err(Error::NoSuchAttempt {
                job: id,
                attempt: n,
                attempts,
            });
        }
        self.chunk(&rec, n, opts, cache)
    }

    /// Reads attempt `n`'s stream: committed, else spooled here.
    fn chunk(
        &self,
        rec: &JobRecord,
        n: u32,
        opts: &Options,
        cache: Option<&mut Cache>,
    ) -> Result<LogChunk> {
        let max = opts.max_bytes.min(MAX_CHUNK);
        if let Some(commit) = committed(self.gatos, rec, n)? {
            return self.committed_chunk(rec.id, commit, n, opts, max, cache);
        }
        let spooled = match read_spool(self.gatos, rec.id, n, opts.stream, opts.from_offset, max)? {
            Some(s) if s.live => return Ok(self.spool_chunk(rec.id, n, opts, s)),
            other => other,
        };
        // The writer is gone, or was never here: its commit may have landed just now.
        let rec = self.record_or_not_found(rec.id)?;
        if let Some(commit) = committed(self.gatos, &rec, n)? {
            return self.committed_chunk(rec.id, commit, n, opts, max, cache);
        }
        match spooled {
            // A worker that died without a commit: what it spooled is all there is here.
            Some(s) => Ok(self.spool_chunk(rec.id, n, opts, s)),
            None => match still_held(self.gatos, &rec, n) {
                Some(worker) => Err(Error::Elsewhere {
                    job: rec.id,
                    attempt: n,
                    worker,
                }),
                None => Err(Error::NoLog {
                    job: rec.id,
                    attempt: n,
                }),
            },
        }
    }

    fn spool_chunk(&self, job: Ulid, n: u32, opts: &Options, s: SpoolRead) -> LogChunk {
        LogChunk {
            job,
            attempt: n,
            stream: opts.stream,
            offset: opts.from_offset,
            next_offset: s.next,
            done: !s.live && s.next >= s.end,
            source: Source::Spool,
            truncated: s.truncated,
            data: s.data,
        }
    }

    fn committed_chunk(
        &self,
        job: Ulid,
        commit: Oid,
        n: u32,
        opts: &Options,
        max: usize,
        cache: Option<&mut Cache>,
    ) -> Result<LogChunk> {
        let key = (n, opts.stream);
        let read = || -> crate::Result<Vec<u8>> {
            let mut r = self.gatos.store().reader();
            let tree = r.commit(commit)?.tree;
            Ok(r.file(tree, opts.stream.commit_path())?.unwrap_or_default())
        };
        let owned;
        let bytes: &[u8] = match cache {
            Some(cache) => {
                if !cache.iter().any(|(k, _)| *k == key) {
                    cache.push((key, read()?));
                }
                cache
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map_or(&[][..], |(_, b)| b.as_slice())
            }
            None => {
                owned = read()?;
                &owned
            }
        };
        let len = bytes.len() as u64;
        let start = opts.from_offset.min(len);
        let end = start.saturating_add(max as u64).min(len);
        let range = usize::try_from(start).unwrap_or(usize::MAX)
            ..usize::try_from(end).unwrap_or(usize::MAX);
        let mut data = bytes.get(range).map(<[u8]>::to_vec).unwrap_or_default();
        if end < len {
            trim_partial_char(&mut data);
        }
        let next = start + data.len() as u64;
        Ok(LogChunk {
            job,
            attempt: n,
            stream: opts.stream,
            offset: opts.from_offset,
            next_offset: next.max(opts.from_offset),
            done: next >= len,
            source: Source::Result,
            truncated: false,
            data,
        })
    }

    /// Follows a job's logs: the chunks of each stream asked for as they are written, in
    /// order, on this node's spool and then from the attempt's commit; without an
    /// attempt, from the latest attempt on through every later one until the job has
    /// ended. The iterator blocks (polling the spool and the job's refs with short
    /// pauses, [`FOLLOW_POLL`]); [`Follow::next_before`] waits with a deadline.
    ///
    /// # Errors
    /// As [`Jobs::logs`], except that `Unavailable` (not started, or running on another
    /// node) is waited through.
    pub fn follow_logs(&self, id: Ulid, opts: &FollowOptions) -> crate::Result<Follow> {
        if opts.attempt == Some(0) {
            return Err(Error::BadOptions("attempts are numbered from 1").public());
        }
        if opts.max_bytes == 0 {
            return Err(Error::BadOptions("max_bytes must be at least 1").public());
        }
        self.record_or_not_found(id).map_err(Error::public)?;
        let mut streams = opts.streams.clone();
        streams.sort();
        streams.dedup();
        if streams.is_empty() {
            streams = Stream::BOTH.to_vec();
        }
        Ok(Follow {
            gatos: self.gatos.clone(),
            id,
            pinned: opts.attempt,
            attempt: 0,
            cursors: streams
                .into_iter()
                .map(|stream| Cursor {
                    stream,
                    offset: 0,
                    done: false,
                })
                .collect(),
            max_bytes: opts.max_bytes.min(MAX_CHUNK),
            cache: Vec::new(),
            ended: false,
            waiting: None,
        })
    }
}

/// What to follow (`jobs logs --follow`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowOptions {
    /// Only this attempt; `None`: the latest, then each later one until the job ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// The streams (empty: both).
    #[serde(default)]
    pub streams: Vec<Stream>,
    /// The most bytes of one chunk (at most [`MAX_CHUNK`]).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
}

impl Default for FollowOptions {
    fn default() -> FollowOptions {
        FollowOptions {
            attempt: None,
            streams: Stream::BOTH.to_vec(),
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

#[derive(Debug)]
struct Cursor {
    stream: Stream,
    offset: u64,
    done: bool,
}

/// A job's logs as they are written ([`Jobs::follow_logs`]). It owns its handle on the
/// repository, so a daemon can keep it between calls.
pub struct Follow {
    gatos: Gatos,
    id: Ulid,
    pinned: Option<u32>,
    /// The attempt being read; 0 before it is known.
    attempt: u32,
    cursors: Vec<Cursor>,
    max_bytes: usize,
    cache: Cache,
    ended: bool,
    waiting: Option<String>,
}

impl std::fmt::Debug for Follow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follow")
            .field("job", &self.id)
            .field("attempt", &self.attempt)
            .field("cursors", &self.cursors)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

/// Where a follow of a job stands: the attempt being read and the offsets reached in its
/// two streams (a stream not followed stays at 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// The attempt (0: none yet).
    pub attempt: u32,
    /// Bytes of standard output returned.
    pub stdout: u64,
    /// Bytes of standard error returned.
    pub stderr: u64,
}

/// The cursor of a job stream (`jobs.follow`, ADR 0039): the last `gatos.jobs` message it
/// went past and its log [`Position`], written
/// `<ULID or 0>.<attempt>.<stdout offset>.<stderr offset>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FollowCursor {
    /// The last job event message gone past (`None`: the stream starts with new events).
    pub event: Option<Ulid>,
    /// The log's position.
    pub log: Position,
}

impl std::fmt::Display for FollowCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.event {
            Some(u) => write!(f, "{u}")?,
            None => f.write_str("0")?,
        }
        write!(
            f,
            ".{}.{}.{}",
            self.log.attempt, self.log.stdout, self.log.stderr
        )
    }
}

impl std::str::FromStr for FollowCursor {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<FollowCursor> {
        let bad = || {
            crate::Error::new(
                ErrorCode::InvalidInput,
                format!(
                    "a job stream cursor is <ULID or 0>.<attempt>.<stdout offset>.<stderr offset>, not {:?}",
                    s.chars().take(80).collect::<String>()
                ),
            )
        };
        let mut parts = s.split('.');
        let (Some(ev), Some(a), Some(o), Some(e), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(bad());
        };
        let event = match ev {
            "0" => None,
            u => Some(u.parse::<Ulid>().map_err(|_| bad())?),
        };
        let num = |t: &str| -> crate::Result<u64> {
            if t.is_empty() || t.len() > 20 || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            t.parse::<u64>().map_err(|_| bad())
        };
        let attempt = u32::try_from(num(a)?).map_err(|_| bad())?;
        let (stdout, stderr) = (num(o)?, num(e)?);
        if attempt == 0 && (stdout > 0 || stderr > 0) {
            return Err(bad());
        }
        Ok(FollowCursor {
            event,
            log: Position {
                attempt,
                stdout,
                stderr,
            },
        })
    }
}

impl Follow {
    /// Resumes where an earlier follow of the same job stood ([`Follow::position`]): at
    /// that attempt and those offsets, so nothing it returned comes twice and nothing
    /// after it is missed. A position of attempt 0 changes nothing. Ignored once this
    /// follow has returned anything.
    #[must_use]
    pub fn resume(mut self, at: Position) -> Follow {
        if at.attempt == 0 || self.attempt != 0 {
            return self;
        }
        if let Some(p) = self.pinned
            && p != at.attempt
        {
            return self;
        }
        self.attempt = at.attempt;
        for c in &mut self.cursors {
            c.offset = match c.stream {
                Stream::Stdout => at.stdout,
                Stream::Stderr => at.stderr,
            };
        }
        self
    }

    /// Where this follow stands: the attempt and the offset reached in each stream.
    pub fn position(&self) -> Position {
        let at = |s: Stream| {
            self.cursors
                .iter()
                .find(|c| c.stream == s)
                .map_or(0, |c| c.offset)
        };
        Position {
            attempt: self.attempt,
            stdout: at(Stream::Stdout),
            stderr: at(Stream::Stderr),
        }
    }

    /// Tells whether everything has been returned: the job has ended and so has the log
    /// of its last attempt (or of the attempt asked for).
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Why the last look found nothing to read here yet (the job has not started, or runs
    /// on another node), if that was the reason.
    pub fn waiting_for(&self) -> Option<&str> {
        self.waiting.as_deref()
    }

    /// The attempt being followed (0 before the job has one).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Returns the next chunk with bytes in it, or the one that ends a stream, waiting
    /// until `deadline` at most. `Ok(None)`: the deadline passed first, or the follow has
    /// ended ([`Follow::is_ended`]).
    ///
    /// # Errors
    /// As [`Jobs::logs`] (`Unavailable` excepted: it is waited through).
    pub fn next_before(&mut self, deadline: Instant) -> crate::Result<Option<LogChunk>> {
        let mut pause = FOLLOW_POLL.0;
        loop {
            if self.ended {
                return Ok(None);
            }
            if let Some(c) = self.look().map_err(Error::public)? {
                return Ok(Some(c));
            }
            if self.ended {
                return Ok(None);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(FOLLOW_POLL.1);
        }
    }

    /// One look, without waiting.
    fn look(&mut self) -> Result<Option<LogChunk>> {
        let jobs = self.gatos.jobs();
        loop {
            let rec = jobs.record_or_not_found(self.id)?;
            let d = super::state::derive(&rec, jobs.gatos.now(), jobs.gatos.lease_skew());
            if self.attempt == 0 {
                match self.pinned {
                    Some(n) if n <= d.attempt => self.attempt = n,
                    Some(n) if d.state.is_final() => {
                        return Err(Error::NoSuchAttempt {
                            job: self.id,
                            attempt: n,
                            attempts: d.attempt,
                        });
                    }
                    Some(_) => {
                        self.waiting =
                            Some(format!("job {} has not reached that attempt", self.id));
                        return Ok(None);
                    }
                    None if d.attempt > 0 => self.attempt = d.attempt,
                    None if d.state.is_final() => {
                        // Cancelled before it ever ran.
                        self.ended = true;
                        return Ok(None);
                    }
                    None => {
                        self.waiting = Some(Error::NotStarted { job: self.id }.to_string());
                        return Ok(None);
                    }
                }
            }
            for i in 0..self.cursors.len() {
                if self.cursors[i].done {
                    continue;
                }
                let opts = Options {
                    attempt: Some(self.attempt),
                    stream: self.cursors[i].stream,
                    from_offset: self.cursors[i].offset,
                    max_bytes: self.max_bytes,
                };
                match jobs.chunk(&rec, self.attempt, &opts, Some(&mut self.cache)) {
                    Ok(c) => {
                        self.waiting = None;
                        let cursor = &mut self.cursors[i];
                        cursor.offset = c.next_offset;
                        cursor.done = c.done;
                        if !c.data.is_empty() || c.done {
                            return Ok(Some(c));
                        }
                    }
                    Err(e @ (Error::Elsewhere { .. } | Error::NotStarted { .. })) => {
                        self.waiting = Some(e.to_string());
                    }
                    Err(Error::NoLog { .. }) => self.cursors[i].done = true,
                    Err(e) => return Err(e),
                }
            }
            if !self.cursors.iter().all(|c| c.done) {
                return Ok(None);
            }
            if self.pinned.is_some() || (d.state.is_final() && d.attempt <= self.attempt) {
                self.ended = true;
                return Ok(None);
            }
            if d.attempt <= self.attempt {
                self.waiting = Some(format!(
                    "attempt {} of job {} has ended; waiting for the next",
                    self.attempt, self.id
                ));
                return Ok(None);
            }
            // On to the next attempt, from its start.
            self.attempt += 1;
            for c in &mut self.cursors {
                c.offset = 0;
                c.done = false;
            }
        }
    }
}

impl Iterator for Follow {
    type Item = crate::Result<LogChunk>;

    /// Blocks until the next chunk, or returns `None` once the follow has ended (or after
    /// an error).
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.ended {
                return None;
            }
            match self.next_before(Instant::now() + Duration::from_secs(3600)) {
                Ok(Some(c)) => return Some(Ok(c)),
                Ok(None) => {}
                Err(e) => {
                    self.ended = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_character_waits_for_the_next_chunk() {
        let mut d = "aé".as_bytes().to_vec();
        d.pop();
        trim_partial_char(&mut d);
        assert_eq!(d, b"a");
        let mut whole = "aé€😀".as_bytes().to_vec();
        let copy = whole.clone();
        trim_partial_char(&mut whole);
        assert_eq!(whole, copy, "complete characters stay");
        let mut lone = vec![0xE2, 0x82];
        trim_partial_char(&mut lone);
        assert_eq!(lone, vec![0xE2, 0x82], "never trimmed to nothing");
        for cut in 1..4 {
            let mut d = "x😀".as_bytes()[..1 + cut].to_vec();
            trim_partial_char(&mut d);
            assert_eq!(d, b"x");
        }
    }

    #[test]
    fn a_chunk_is_text_when_it_can_be_and_base64_otherwise()
    -> std::result::Result<(), Box<dyn std::error::Error>> {
        let job: Ulid = "01J00000000000000000000000".parse()?;
        let mut c = LogChunk {
            job,
            attempt: 1,
            stream: Stream::Stderr,
            offset: 3,
            data: "héllo\n".as_bytes().to_vec(),
            next_offset: 10,
            done: false,
            source: Source::Spool,
            truncated: false,
        };
        let v = serde_json::to_value(&c)?;
        assert_eq!(v["encoding"], "utf-8");
        assert_eq!(v["data"], "héllo\n");
        assert_eq!(v["stream"], "stderr");
        assert_eq!(v["source"], "spool");
        assert_eq!(serde_json::from_value::<LogChunk>(v)?, c);
        c.data = vec![0xff, 0x00, b'a'];
        let v = serde_json::to_value(&c)?;
        assert_eq!(v["encoding"], "base64");
        assert_eq!(v["data"], "/wBh");
        assert_eq!(serde_json::from_value::<LogChunk>(v)?, c);
        Ok(())
    }

    #[test]
    fn options_default_when_absent() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let o: Options = serde_json::from_str("{}")?;
        assert_eq!(o, Options::default());
        let o: Options =
            serde_json::from_str(r#"{"attempt":2,"stream":"stderr","from_offset":5}"#)?;
        assert_eq!(o.attempt, Some(2));
        assert_eq!(o.stream, Stream::Stderr);
        assert_eq!(o.max_bytes, DEFAULT_MAX_BYTES);
        Ok(())
    }

    #[test]
    fn a_follow_cursor_round_trips_and_refuses_junk()
    -> std::result::Result<(), Box<dyn std::error::Error>> {
        let c: FollowCursor = "01J00000000000000000000000.2.10.3".parse()?;
        assert_eq!(c.event, Some("01J00000000000000000000000".parse()?));
        assert_eq!(
            c.log,
            Position {
                attempt: 2,
                stdout: 10,
                stderr: 3
            }
        );
        assert_eq!(c.to_string(), "01J00000000000000000000000.2.10.3");
        let z: FollowCursor = "0.0.0.0".parse()?;
        assert_eq!(z, FollowCursor::default());
        assert_eq!(z.to_string(), "0.0.0.0");
        for bad in [
            "",
            "0",
            "0.0.0",
            "0.0.0.0.0",
            "x.1.0.0",
            "0.-1.0.0",
            "0.1.+1.0",
            "0.0.5.0",
            "0.1.99999999999999999999999.0",
            "0.4294967296.0.0",
            "0.1. 1.0",
        ] {
            assert!(bad.parse::<FollowCursor>().is_err(), "{bad:?}");
        }
        Ok(())
    }

    #[test]
    fn the_spool_note_says_the_cap() {
        assert!(spool_note(10).contains("10 bytes kept so far"));
    }
}
