//! The per-topic position index: seq → (commit, envelope blob, ULID), kept under
//! `<git-dir>/gatos/index/topics/<topic>/`.
//!
//! A topic's chain links backwards, so without help "read 128 after X" walks from the head
//! back to X. This index answers "what is at seq N" with one positioned read, and "where is
//! ULID U" with a binary search per monotonic run of ULIDs, so a page costs its own size
//! plus a logarithm wherever it starts.
//!
//! **Never trusted over the refs.** The header records the head and summary commits it was
//! built for. A reader that finds either ref elsewhere (another process, a fetch, a sync
//! rewrite) catches the index up by walking back from the new head until it meets a commit
//! the index already holds at the same seq, rewriting what differs; a missing, torn or
//! corrupt index is rebuilt from the refs. Records carry checksums, and readers re-check the
//! ULID of every envelope they read against the record.
//!
//! Files (all integers little-endian):
//! * `positions`: a 128-byte header, then one 64-byte record per seq from `base_seq`.
//! * `msgids`: 8 bytes per record, the hash of the message's `msg_id` header (0: none), for
//!   the dedupe window scan.
//! * `breaks`: the seqs where a ULID is not above the previous one (sync re-appends), so
//!   ULID lookups binary-search each monotonic run; tagged with the header's generation.
//!
//! Writers append records, then rewrite the header (the commit point). A rewrite of
//! existing records first bumps the generation, so lock-free readers notice and retry.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use gatos_store::Store;
use gatos_store::objects::Reader;
use gatos_types::{Oid, Topic, Ulid};

use super::chain::{self, Meta};
use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"GATOSIX1";
const HEADER: u64 = 128;
const RECORD: u64 = 64;
/// The lock family that serialises index writers of one topic.
pub(crate) fn lock_family(topic: &Topic) -> String {
    format!("index.{topic}")
}

/// One message's place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// The message commit.
    pub commit: Oid,
    /// The `message/envelope.json` blob.
    pub blob: Oid,
    /// The message ULID.
    pub ulid: Ulid,
    /// The envelope's length in bytes.
    pub len: u32,
}

impl Record {
    fn encode(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[0..20].copy_from_slice(self.commit.as_bytes());
        b[20..40].copy_from_slice(self.blob.as_bytes());
        b[40..56].copy_from_slice(&self.ulid.to_bytes());
        b[56..60].copy_from_slice(&self.len.to_le_bytes());
        let sum = blake3::hash(&b[0..60]);
        b[60..64].copy_from_slice(&sum.as_bytes()[0..4]);
        b
    }

    fn decode(b: &[u8]) -> Option<Record> {
        if b.len() < RECORD as usize {
            return None;
        }
        let sum = blake3::hash(&b[0..60]);
        if b[60..64] != sum.as_bytes()[0..4] {
            return None;
        }
        let mut commit = [0u8; 20];
        commit.copy_from_slice(&b[0..20]);
        let mut blob = [0u8; 20];
        blob.copy_from_slice(&b[20..40]);
        let mut ulid = [0u8; 16];
        ulid.copy_from_slice(&b[40..56]);
        let mut len = [0u8; 4];
        len.copy_from_slice(&b[56..60]);
        Some(Record {
            commit: Oid::from_bytes(commit),
            blob: Oid::from_bytes(blob),
            ulid: Ulid::from_u128(u128::from_be_bytes(ulid)),
            len: u32::from_le_bytes(len),
        })
    }
}

/// The hash stored for a `msg_id` (never 0, which means "none").
pub fn msgid_hash(msg_id: &str) -> u64 {
    let h = blake3::hash(msg_id.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[0..8]);
    u64::from_le_bytes(b).max(1)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    base: u64,
    count: u64,
    first: u64,
    tip: Option<Oid>,
    summary: Option<Oid>,
    generation: u32,
}

impl Header {
    fn empty(base: u64) -> Header {
        Header {
            base,
            count: 0,
            first: base,
            tip: None,
            summary: None,
            generation: 0,
        }
    }
    fn last(&self) -> u64 {
        self.base + self.count - 1
    }
    fn encode(&self) -> [u8; HEADER as usize] {
        let mut b = [0u8; HEADER as usize];
        b[0..8].copy_from_slice(MAGIC);
        b[8..16].copy_from_slice(&self.base.to_le_bytes());
        b[16..24].copy_from_slice(&self.count.to_le_bytes());
        b[24..32].copy_from_slice(&self.first.to_le_bytes());
        b[32..36].copy_from_slice(&self.generation.to_le_bytes());
        if let Some(t) = self.tip {
            b[36] = 1;
            b[37..57].copy_from_slice(t.as_bytes());
        }
        if let Some(s) = self.summary {
            b[57] = 1;
            b[58..78].copy_from_slice(s.as_bytes());
        }
        let sum = blake3::hash(&b[0..120]);
        b[120..128].copy_from_slice(&sum.as_bytes()[0..8]);
        b
    }
    fn decode(b: &[u8]) -> Option<Header> {
        if b.len() < HEADER as usize || &b[0..8] != MAGIC {
            return None;
        }
        let sum = blake3::hash(&b[0..120]);
        if b[120..128] != sum.as_bytes()[0..8] {
            return None;
        }
        let u64_at = |i: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(x)
        };
        let oid_at = |flag: usize| {
            (b[flag] == 1).then(|| {
                let mut x = [0u8; 20];
                x.copy_from_slice(&b[flag + 1..flag + 21]);
                Oid::from_bytes(x)
            })
        };
        let mut g = [0u8; 4];
        g.copy_from_slice(&b[32..36]);
        let h = Header {
            base: u64_at(8),
            count: u64_at(16),
            first: u64_at(24),
            generation: u32::from_le_bytes(g),
            tip: oid_at(36),
            summary: oid_at(57),
        };
        // Seqs start at 1, the first retained one is within the records, and no offset or
        // seq computed from the header overflows (a checksum is no proof of sense).
        let end = h.base.checked_add(h.count)?;
        HEADER.checked_add(h.count.checked_mul(RECORD)?)?;
        (h.base >= 1 && h.first >= h.base && h.first <= end).then_some(h)
    }
}

/// A torn, cut or unreadable index file: the one failure readers answer by dropping the
/// index and reading again from a rebuilt one (`Messages::with_view`).
#[derive(Debug, thiserror::Error)]
#[error("position index of topic '{topic}': {why}")]
pub(crate) struct Torn {
    topic: Topic,
    why: String,
}

impl gatos_types::Coded for Torn {
    fn code(&self) -> gatos_types::ErrorCode {
        // A bug or an unexpected environment (a power cut, a disk), never bad input.
        gatos_types::ErrorCode::Internal
    }
}

/// An error that says the index of `topic` is torn (see [`is_torn`]).
pub(crate) fn corrupt(topic: &Topic, why: impl std::fmt::Display) -> Error {
    Error::from(Torn {
        topic: topic.clone(),
        why: why.to_string(),
    })
}

/// Tells whether `e` itself says a position index is torn or unreadable: a rebuild repairs
/// it, and the read that met it may run again on the rebuilt index.
pub(crate) fn is_torn(e: &Error) -> bool {
    e.inner().is::<Torn>()
}

/// Tells whether a torn index caused `e`, itself or as a cause made final ([`settled`]): the
/// index is rebuilt either way, so the next read does not meet it again.
pub(crate) fn is_caused_by_torn(e: &Error) -> bool {
    let mut at: Option<&(dyn std::error::Error + 'static)> = Some(e.inner());
    while let Some(cause) = at {
        if cause.is::<Torn>() {
            return true;
        }
        at = cause.source();
    }
    false
}

/// Makes a torn-index error final once a reader has passed `passed` messages on: a retry
/// would pass them on again, so it is returned (and the index still rebuilt); before that,
/// the error is returned as it is, to be retried.
pub(crate) fn settled(e: Error, passed: u64) -> Error {
    if passed > 0 && is_torn(&e) {
        let noun = if passed == 1 {
            "message was"
        } else {
            "messages were"
        };
        e.context(format_args!("after {passed} {noun} read"))
    } else {
        e
    }
}

fn io(topic: &Topic, what: &str, e: std::io::Error) -> Error {
    corrupt(topic, format_args!("{what}: {e}"))
}

/// The `msg_id` hashes of a topic's recent messages, as one handle read them (see
/// [`View::msgid_candidates`]).
#[derive(Debug, Default)]
pub struct MsgIds {
    generation: u32,
    base: u64,
    /// The last seq read.
    through: u64,
    entries: u64,
    by_hash: std::collections::HashMap<u64, Vec<u64>>,
}

/// A validated view of a topic's index, matching a given head and summary.
#[derive(Debug)]
pub struct View {
    topic: Topic,
    dir: PathBuf,
    positions: File,
    header: Header,
}

/// What the refs say the index must describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The topic head (None: empty topic).
    pub head: Option<Oid>,
    /// The summary head (None: nothing pruned).
    pub summary: Option<Oid>,
    /// The last pruned seq, from the summary (0: none).
    pub pruned_through: u64,
}

/// What a writer already knows about commits it just wrote, so catching up does not read
/// them back.
#[derive(Debug, Clone)]
pub struct Known {
    /// The commit's metadata.
    pub meta: Meta,
    /// Its record.
    pub record: Record,
    /// Its msg_id hash (0: none).
    pub msgid: u64,
}

impl View {
    /// Returns the first retained seq.
    pub fn first_seq(&self) -> u64 {
        self.header.first
    }

    /// Returns the last seq (0 when empty).
    pub fn last_seq(&self) -> u64 {
        if self.header.count == 0 {
            self.header.first.saturating_sub(1)
        } else {
            self.header.last()
        }
    }

    /// Returns the number of retained messages.
    pub fn retained(&self) -> u64 {
        self.last_seq() + 1 - self.header.first
    }

    /// Returns the head this view describes.
    pub fn tip(&self) -> Option<Oid> {
        self.header.tip
    }

    /// Reads the record at `seq` (which must be retained).
    ///
    /// # Errors
    /// `Internal` when the record is torn or the file unreadable (the caller rebuilds).
    pub fn record(&self, seq: u64) -> Result<Record> {
        // `records` clamps to the retained range; one seq outside it has no record.
        if seq < self.header.first {
            return Err(corrupt(
                &self.topic,
                format_args!("no record for seq {seq}"),
            ));
        }
        let mut v = self.records(seq, 1)?;
        v.pop()
            .ok_or_else(|| corrupt(&self.topic, format_args!("no record for seq {seq}")))
    }

    /// Reads `n` records from `from` (clamped to the retained range).
    ///
    /// # Errors
    /// As [`View::record`].
    pub fn records(&self, from: u64, n: u64) -> Result<Vec<Record>> {
        let from = from.max(self.header.first);
        let to = from.saturating_add(n).min(self.last_seq() + 1);
        if from >= to {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; usize::try_from((to - from) * RECORD).unwrap_or(0)];
        let off = HEADER + (from - self.header.base) * RECORD;
        self.positions
            .read_exact_at(&mut buf, off)
            .map_err(|e| io(&self.topic, "read", e))?;
        buf.chunks(RECORD as usize)
            .enumerate()
            .map(|(i, c)| {
                Record::decode(c).ok_or_else(|| {
                    corrupt(
                        &self.topic,
                        format_args!("torn record at seq {}", from + i as u64),
                    )
                })
            })
            .collect()
    }

    /// Finds the seq of a ULID among the retained messages.
    ///
    /// # Errors
    /// As [`View::record`].
    pub fn find(&self, ulid: Ulid) -> Result<Option<u64>> {
        if self.header.count == 0 {
            return Ok(None);
        }
        let (first, last) = (self.header.first, self.last_seq());
        let runs = match read_breaks(&self.dir, self.header.generation) {
            Some(breaks) => {
                let mut starts: Vec<u64> = vec![first];
                starts.extend(breaks.into_iter().filter(|b| *b > first && *b <= last));
                starts
            }
            None => return self.find_linear(ulid),
        };
        for (i, start) in runs.iter().enumerate() {
            let end = runs.get(i + 1).map_or(last, |n| n - 1);
            if let Some(seq) = self.search_run(*start, end, ulid)? {
                return Ok(Some(seq));
            }
        }
        Ok(None)
    }

    /// Those of `ulids` found among the retained messages at or below seq `upto`, with
    /// their records (the index's runs read once for all of them).
    ///
    /// # Errors
    /// As [`View::record`].
    pub fn find_all(&self, ulids: &[Ulid], upto: u64) -> Result<Vec<Record>> {
        let mut found = Vec::new();
        if self.header.count == 0 || ulids.is_empty() {
            return Ok(found);
        }
        let (first, last) = (self.header.first, self.last_seq().min(upto));
        if last < first {
            return Ok(found);
        }
        let starts: Option<Vec<u64>> = read_breaks(&self.dir, self.header.generation).map(|b| {
            let mut starts: Vec<u64> = vec![first];
            starts.extend(b.into_iter().filter(|b| *b > first && *b <= last));
            starts
        });
        // A binary search per ULID and run, unless that costs more than reading every
        // record once (many ULIDs, or an index of many runs).
        let searches = starts.as_ref().map(|s| {
            (ulids.len() as u64)
                .saturating_mul(s.len() as u64)
                .saturating_mul(2)
        });
        let Some(starts) = starts.filter(|_| searches.is_some_and(|n| n <= last - first + 1))
        else {
            let wanted: std::collections::HashSet<Ulid> = ulids.iter().copied().collect();
            const CHUNK: u64 = 4096;
            let mut seq = first;
            while seq <= last {
                for r in self.records(seq, CHUNK.min(last - seq + 1))? {
                    if wanted.contains(&r.ulid) {
                        found.push(r);
                    }
                }
                seq += CHUNK;
            }
            return Ok(found);
        };
        for &ulid in ulids {
            for (i, start) in starts.iter().enumerate() {
                let end = starts.get(i + 1).map_or(last, |n| n - 1);
                if let Some(seq) = self.search_run(*start, end, ulid)? {
                    found.push(self.record(seq)?);
                }
            }
        }
        Ok(found)
    }

    /// Finds the first retained position, in `Seq` order, whose ULID is at or after `min`.
    ///
    /// ULIDs increase within each run of the index (a run breaks where a sync placed an
    /// older ULID after a newer one), so every run before the answer lies wholly below
    /// `min`, and the answer is the lower bound inside the first run that reaches it.
    ///
    /// # Errors
    /// As [`View::record`].
    pub fn first_from(&self, min: Ulid) -> Result<Option<u64>> {
        if self.header.count == 0 {
            return Ok(None);
        }
        let (first, last) = (self.header.first, self.last_seq());
        let Some(breaks) = read_breaks(&self.dir, self.header.generation) else {
            return self.first_from_linear(min);
        };
        let mut starts: Vec<u64> = vec![first];
        starts.extend(breaks.into_iter().filter(|b| *b > first && *b <= last));
        for (i, start) in starts.iter().enumerate() {
            let end = starts.get(i + 1).map_or(last, |n| n - 1);
            if self.record(end)?.ulid < min {
                continue;
            }
            // Lower bound in [start, end]: the run's last record is at or after `min`.
            let (mut lo, mut hi) = (*start, end);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if self.record(mid)?.ulid < min {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            return Ok(Some(lo));
        }
        Ok(None)
    }

    fn first_from_linear(&self, min: Ulid) -> Result<Option<u64>> {
        const CHUNK: u64 = 4096;
        let mut seq = self.header.first;
        while seq <= self.last_seq() {
            for (i, r) in self.records(seq, CHUNK)?.iter().enumerate() {
                if r.ulid >= min {
                    return Ok(Some(seq + i as u64));
                }
            }
            seq += CHUNK;
        }
        Ok(None)
    }

    fn search_run(&self, mut lo: u64, mut hi: u64, ulid: Ulid) -> Result<Option<u64>> {
        // Bounds check first: most lookups miss whole runs.
        if self.record(lo)?.ulid > ulid || self.record(hi)?.ulid < ulid {
            return Ok(None);
        }
        while lo <= hi {
            let mid = lo + (hi - lo) / 2;
            let r = self.record(mid)?;
            match r.ulid.cmp(&ulid) {
                std::cmp::Ordering::Equal => return Ok(Some(mid)),
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => {
                    if mid == 0 {
                        break;
                    }
                    hi = mid - 1;
                }
            }
        }
        Ok(None)
    }

    fn find_linear(&self, ulid: Ulid) -> Result<Option<u64>> {
        const CHUNK: u64 = 4096;
        let mut seq = self.header.first;
        while seq <= self.last_seq() {
            for (i, r) in self.records(seq, CHUNK)?.iter().enumerate() {
                if r.ulid == ulid {
                    return Ok(Some(seq + i as u64));
                }
            }
            seq += CHUNK;
        }
        Ok(None)
    }

    /// Returns the seqs among the last `window` messages whose `msg_id` hash is `hash`.
    ///
    /// `cache` (kept per handle and topic) holds the hashes already read, so a long-lived
    /// writer reads only the messages appended since its last publish instead of the whole
    /// window (up to 800 KB at the default 100,000) every time.
    ///
    /// # Errors
    /// When the msgid file cannot be read.
    pub fn msgid_candidates(&self, cache: &mut MsgIds, hash: u64, window: u64) -> Result<Vec<u64>> {
        if self.header.count == 0 || window == 0 {
            return Ok(Vec::new());
        }
        let last = self.last_seq();
        let from = last.saturating_sub(window - 1).max(self.header.first);
        if cache.generation != self.header.generation
            || cache.base != self.header.base
            || cache.through > last
        {
            *cache = MsgIds {
                generation: self.header.generation,
                base: self.header.base,
                ..MsgIds::default()
            };
        }
        let start = cache.through.saturating_add(1).max(from);
        if start <= last {
            let path = self.dir.join("msgids");
            let f = match File::open(&path) {
                Ok(f) => f,
                Err(e) => return Err(io(&self.topic, "open msgids", e)),
            };
            let mut buf = vec![0u8; usize::try_from((last + 1 - start) * 8).unwrap_or(0)];
            f.read_exact_at(&mut buf, (start - self.header.base) * 8)
                .map_err(|e| io(&self.topic, "read msgids", e))?;
            for (i, c) in buf.chunks(8).enumerate() {
                let mut x = [0u8; 8];
                x.copy_from_slice(c);
                let h = u64::from_le_bytes(x);
                if h != 0 {
                    cache.by_hash.entry(h).or_default().push(start + i as u64);
                    cache.entries += 1;
                }
            }
        }
        cache.through = last;
        // Forget what fell out of the window once it is as large as the window again.
        if cache.entries > window.saturating_mul(2) {
            cache.by_hash.retain(|_, seqs| {
                seqs.retain(|s| *s >= from);
                !seqs.is_empty()
            });
            cache.entries = cache.by_hash.values().map(|v| v.len() as u64).sum();
        }
        Ok(cache
            .by_hash
            .get(&hash)
            .map(|seqs| seqs.iter().copied().filter(|s| *s >= from).collect())
            .unwrap_or_default())
    }

    /// Tells whether the index still has the generation this view was read with.
    pub fn is_current(&self) -> bool {
        let mut b = [0u8; HEADER as usize];
        self.positions.read_exact_at(&mut b, 0).is_ok()
            && Header::decode(&b).is_some_and(|h| h.generation == self.header.generation)
    }
}

fn topic_dir(store: &Store, topic: &Topic) -> PathBuf {
    store
        .gatos_dir()
        .join("index")
        .join("topics")
        .join(topic.as_str())
}

/// The header, when the file also holds every record it counts: a power cut can lose the
/// end of a file whose header reached the disk, and such an index is rebuilt.
fn read_header(f: &File) -> Option<Header> {
    let mut b = [0u8; HEADER as usize];
    f.read_exact_at(&mut b, 0).ok()?;
    let h = Header::decode(&b)?;
    // No overflow: `decode` refuses counts whose records do not fit in a u64 offset.
    let len = f.metadata().ok()?.len();
    (len >= HEADER + h.count * RECORD).then_some(h)
}

fn read_breaks(dir: &Path, generation: u32) -> Option<Vec<u64>> {
    let bytes = std::fs::read(dir.join("breaks")).ok()?;
    if bytes.len() < 8 || (bytes.len() - 8) % 8 != 0 {
        return None;
    }
    let mut g = [0u8; 4];
    g.copy_from_slice(&bytes[0..4]);
    if u32::from_le_bytes(g) != generation {
        return None;
    }
    Some(
        bytes[8..]
            .chunks(8)
            .map(|c| {
                let mut x = [0u8; 8];
                x.copy_from_slice(c);
                u64::from_le_bytes(x)
            })
            .collect(),
    )
}

fn write_breaks(dir: &Path, generation: u32, breaks: &[u64]) -> std::io::Result<()> {
    let mut bytes = Vec::with_capacity(8 + breaks.len() * 8);
    bytes.extend_from_slice(&generation.to_le_bytes());
    bytes.extend_from_slice(&[0u8; 4]);
    for b in breaks {
        bytes.extend_from_slice(&b.to_le_bytes());
    }
    let tmp = dir.join("breaks.tmp");
    std::fs::write(&tmp, &bytes)?;
    std::fs::rename(&tmp, dir.join("breaks"))
}

/// Opens the index of a topic for reading, catching it up to `target` first when needed.
///
/// # Errors
/// When the refs cannot be walked (a missing object in the live chain is `Internal`).
pub fn open(store: &Store, topic: &Topic, target: Target, known: &[Known]) -> Result<View> {
    let dir = topic_dir(store, topic);
    // Fast path: no lock when the header already matches the refs.
    if let Ok(f) = File::open(dir.join("positions"))
        && let Some(h) = read_header(&f)
        && h.tip == target.head
        && h.summary == target.summary
    {
        return Ok(View {
            topic: topic.clone(),
            dir,
            positions: f,
            header: h,
        });
    }
    let _guard = store
        .locks()
        .acquire(
            &[lock_family(topic)],
            gatos_store::locks::DEFAULT_LOCK_TIMEOUT,
        )
        .map_err(gatos_store::Error::from)?;
    let open_rw = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("positions"))
    };
    let f = match open_rw() {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&dir).map_err(|e| io(topic, "create index dir", e))?;
            open_rw().map_err(|e| io(topic, "open positions", e))?
        }
        Err(e) => return Err(io(topic, "open positions", e)),
    };
    let header = catch_up(store, topic, &dir, &f, target, known)?;
    Ok(View {
        topic: topic.clone(),
        dir,
        positions: f,
        header,
    })
}

/// Drops the index of a topic (it is rebuilt on next use).
///
/// # Errors
/// When the files cannot be removed.
pub fn remove(store: &Store, topic: &Topic) -> Result<()> {
    let dir = topic_dir(store, topic);
    let _guard = store
        .locks()
        .acquire(
            &[lock_family(topic)],
            gatos_store::locks::DEFAULT_LOCK_TIMEOUT,
        )
        .map_err(gatos_store::Error::from)?;
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(topic, "remove", e)),
    }
}

/// Records a catch-up buffers before writing them (256 KiB of positions).
const RUN: usize = 4096;

struct Writer<'a> {
    topic: &'a Topic,
    dir: &'a Path,
    positions: &'a File,
    msgids: Option<File>,
    header: Header,
    /// Records below this position held data before this catch-up started.
    high_water: u64,
    /// Set once existing records start being overwritten (the generation was bumped).
    rewriting: bool,
    /// The records put and not yet written: consecutive positions, highest first (the
    /// walk goes down from the head), written with one `pwrite` per file when the run
    /// breaks, fills or ends. A chunk of 1,000 messages made 2,000 writes before.
    run: Vec<([u8; RECORD as usize], u64)>,
    /// The position of the run's last (lowest) record.
    run_low: u64,
}

impl Writer<'_> {
    fn write_header(&self) -> Result<()> {
        self.positions
            .write_all_at(&self.header.encode(), 0)
            .map_err(|e| io(self.topic, "write header", e))
    }

    /// Marks the index as being rewritten: a new generation, no valid records, no tip, so
    /// lock-free readers of the old generation notice and retry.
    fn start_rewrite(&mut self) -> Result<()> {
        if !self.rewriting {
            self.rewriting = true;
            self.header.count = 0;
            self.header.generation = self.header.generation.wrapping_add(1);
            self.header.tip = None;
            self.write_header()?;
        }
        Ok(())
    }

    /// Puts a record in place: buffered while the positions go down one by one, written by
    /// [`Writer::flush`]. Records below the high water are overwritten only after the
    /// header says the generation is being rewritten, as before.
    fn put(&mut self, seq: u64, rec: &Record, msgid: u64) -> Result<()> {
        let pos = seq - self.header.base;
        if pos < self.high_water {
            self.start_rewrite()?;
        }
        if !self.run.is_empty() && (pos + 1 != self.run_low || self.run.len() == RUN) {
            self.flush()?;
        }
        self.run.push((rec.encode(), msgid));
        self.run_low = pos;
        Ok(())
    }

    /// Writes the buffered run: its records, then their msgids, each with one write.
    fn flush(&mut self) -> Result<()> {
        if self.run.is_empty() {
            return Ok(());
        }
        let low = self.run_low;
        let mut records = Vec::with_capacity(self.run.len() * RECORD as usize);
        let mut ids = Vec::with_capacity(self.run.len() * 8);
        for (rec, msgid) in self.run.drain(..).rev() {
            records.extend_from_slice(&rec);
            ids.extend_from_slice(&msgid.to_le_bytes());
        }
        self.positions
            .write_all_at(&records, HEADER + low * RECORD)
            .map_err(|e| io(self.topic, "write record", e))?;
        if self.msgids.is_none() {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(self.dir.join("msgids"))
                .map_err(|e| io(self.topic, "open msgids", e))?;
            self.msgids = Some(f);
        }
        if let Some(m) = &self.msgids {
            m.write_all_at(&ids, low * 8)
                .map_err(|e| io(self.topic, "write msgid", e))?;
        }
        Ok(())
    }
}

fn catch_up(
    store: &Store,
    topic: &Topic,
    dir: &Path,
    f: &File,
    target: Target,
    known: &[Known],
) -> Result<Header> {
    let existing = read_header(f);
    if let Some(h) = existing
        && h.tip == target.head
        && h.summary == target.summary
    {
        return Ok(h);
    }
    let base = target.pruned_through + 1;
    let next_generation = existing.map_or(0, |h| h.generation.wrapping_add(1));
    let Some(head) = target.head else {
        let h = Header {
            summary: target.summary,
            generation: next_generation,
            ..Header::empty(base)
        };
        f.set_len(HEADER).map_err(|e| io(topic, "truncate", e))?;
        f.write_all_at(&h.encode(), 0)
            .map_err(|e| io(topic, "write header", e))?;
        write_breaks(dir, h.generation, &[]).map_err(|e| io(topic, "write breaks", e))?;
        return Ok(h);
    };
    // Old content stays usable when its base is not above what is retained now.
    let header = match existing {
        Some(h) if h.base <= base => h,
        _ => Header {
            generation: next_generation,
            ..Header::empty(base)
        },
    };
    let start_generation = header.generation;
    let mut w = Writer {
        topic,
        dir,
        positions: f,
        msgids: None,
        high_water: header.count,
        header,
        rewriting: false,
        run: Vec::new(),
        run_low: 0,
    };
    // Walk back from the head, writing records in place, until a commit the index holds.
    let mut reader: Option<Reader<'_>> = None;
    let mut cur = Some(head);
    let mut head_seq = None;
    let mut lowest = None;
    let mut new_breaks: Vec<u64> = Vec::new();
    let mut above: Option<(u64, Ulid)> = None;
    let mut junction: Option<(u64, Ulid)> = None;
    // The seq `cur` must have, when known (the previous message of one we just walked).
    let mut expected: Option<u64> = None;
    let held_at = |seq: u64, high_water: u64, first: u64, base: u64| -> Option<Record> {
        let pos = seq.checked_sub(base)?;
        if pos >= high_water || seq < first {
            return None;
        }
        let mut b = [0u8; 64];
        f.read_exact_at(&mut b, HEADER + pos * RECORD)
            .ok()
            .and_then(|()| Record::decode(&b))
    };
    // What the writer knows, by commit: the walk looks each commit up once (a linear search
    // made a chunk of 1,000 messages cost a million comparisons).
    let known_at: std::collections::HashMap<Oid, &Known> =
        known.iter().map(|k| (k.meta.commit, k)).collect();
    while let Some(commit) = cur {
        // Positions below the current one are still the old content: compare in place,
        // before reading any object (the usual junction is the previous head).
        if let Some(seq) = expected
            && let Some(r) = held_at(seq, w.high_water, w.header.first, w.header.base)
            && r.commit == commit
        {
            junction = Some((seq, r.ulid));
            break;
        }
        let k = match known_at.get(&commit) {
            Some(k) => (*k).clone(),
            None => {
                let r = reader.get_or_insert_with(|| store.reader());
                if !r.exists(commit) {
                    // Shallow or partly pruned history without a summary: stop here.
                    break;
                }
                load_known(r, commit, topic)?
            }
        };
        let seq = k.meta.seq;
        if seq <= target.pruned_through || seq < w.header.base {
            break;
        }
        head_seq.get_or_insert(seq);
        if expected.is_none()
            && let Some(r) = held_at(seq, w.high_water, w.header.first, w.header.base)
            && r.commit == commit
        {
            junction = Some((seq, r.ulid));
            break;
        }
        if let Some((s_above, u_above)) = above
            && u_above <= k.record.ulid
        {
            new_breaks.push(s_above);
        }
        w.put(seq, &k.record, k.msgid)?;
        above = Some((seq, k.record.ulid));
        lowest = Some(seq);
        cur = k.meta.prev();
        expected = seq.checked_sub(1);
    }
    // Every record is written before anything below reads records or moves the header.
    w.flush()?;
    let Some(head_seq) = head_seq else {
        return Err(corrupt(
            topic,
            format_args!("head {head} is not a readable message commit"),
        ));
    };
    if let (Some((_, j_ulid)), Some((s_above, u_above))) = (junction, above)
        && u_above <= j_ulid
    {
        new_breaks.push(s_above);
    }
    let new_count = head_seq + 1 - w.header.base;
    if new_count < w.high_water {
        // The head moved back: records above it are dead, and later appends will reuse
        // their places, so readers of this generation must not trust them.
        w.start_rewrite()?;
    }
    let (junction_seq, first) = match junction {
        Some((j, _)) => (Some(j), w.header.first.max(base)),
        None => (None, lowest.unwrap_or(base).max(base)),
    };
    let generation_changed = w.header.generation != start_generation || w.rewriting;
    // The breaks file is rewritten only when it changes.
    if generation_changed || !new_breaks.is_empty() || junction_seq.is_none() {
        let mut breaks: Vec<u64> = match junction_seq {
            None => Vec::new(),
            Some(j) => match read_breaks(dir, start_generation) {
                Some(old) => old.into_iter().filter(|b| *b <= j).collect(),
                // Lost or stale: recompute the breaks below the junction from the records.
                None => scan_breaks(f, &w.header, first, j).map_err(|e| io(topic, "scan", e))?,
            },
        };
        breaks.extend(new_breaks);
        breaks.sort_unstable();
        breaks.dedup();
        write_breaks(dir, w.header.generation, &breaks)
            .map_err(|e| io(topic, "write breaks", e))?;
    }
    w.header.count = new_count;
    w.header.first = first;
    w.header.tip = Some(head);
    w.header.summary = target.summary;
    w.write_header()?;
    if junction.is_none() {
        tracing::debug!(%topic, records = new_count, "position index rebuilt");
    }
    Ok(w.header)
}

/// Recomputes the breaks among the records `first..=last` (a repair path: one sequential
/// read of the records).
fn scan_breaks(f: &File, h: &Header, first: u64, last: u64) -> std::io::Result<Vec<u64>> {
    const CHUNK: u64 = 4096;
    let mut out = Vec::new();
    let mut prev: Option<Ulid> = None;
    let mut seq = first;
    while seq <= last {
        let n = CHUNK.min(last + 1 - seq);
        let mut buf = vec![0u8; usize::try_from(n * RECORD).unwrap_or(0)];
        f.read_exact_at(&mut buf, HEADER + (seq - h.base) * RECORD)?;
        for (i, c) in buf.chunks(RECORD as usize).enumerate() {
            let Some(r) = Record::decode(c) else {
                return Err(std::io::Error::other("torn record"));
            };
            if prev.is_some_and(|p| r.ulid <= p) {
                out.push(seq + i as u64);
            }
            prev = Some(r.ulid);
        }
        seq += n;
    }
    Ok(out)
}

/// Reads what the index needs about one message commit.
pub(crate) fn load_known(r: &mut Reader<'_>, commit: Oid, topic: &Topic) -> Result<Known> {
    let c = r.commit(commit).map_err(Error::from)?;
    let meta = chain::meta(&c).map_err(|e| e.context(format_args!("topic '{topic}'")))?;
    let entry = r
        .lookup(c.tree, chain::ENVELOPE_PATH)
        .map_err(Error::from)?
        .filter(|e| !e.is_tree)
        .ok_or_else(|| {
            corrupt(
                topic,
                format_args!("commit {commit} has no {}", chain::ENVELOPE_PATH),
            )
        })?;
    let bytes = r.blob(entry.oid).map_err(Error::from)?;
    let env = gatos_types::envelope::EnvelopeRef::parse(&bytes)?;
    let msgid = env.msg_id().map_or(0, |m| msgid_hash(&m));
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    Ok(Known {
        record: Record {
            commit,
            blob: entry.oid,
            ulid: meta.ulid,
            len,
        },
        meta,
        msgid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_headers_round_trip_and_detect_damage() {
        let r = Record {
            commit: Oid::from_bytes([1; 20]),
            blob: Oid::from_bytes([2; 20]),
            ulid: Ulid::from_u128(12345),
            len: 77,
        };
        let mut b = r.encode();
        assert_eq!(Record::decode(&b), Some(r));
        b[3] ^= 1;
        assert_eq!(Record::decode(&b), None);
        let h = Header {
            base: 5,
            count: 10,
            first: 7,
            tip: Some(Oid::from_bytes([9; 20])),
            summary: None,
            generation: 3,
        };
        let mut hb = h.encode();
        assert_eq!(Header::decode(&hb), Some(h));
        hb[20] ^= 1;
        assert_eq!(Header::decode(&hb), None);
    }

    #[test]
    fn msgid_hashes_are_never_zero() {
        assert_ne!(msgid_hash(""), 0);
        assert_eq!(msgid_hash("a"), msgid_hash("a"));
        assert_ne!(msgid_hash("a"), msgid_hash("b"));
    }

    // ---- The file format (ADR 0008): round trips, damage, boundaries. ----

    use gatos_testutil::{TempRepo, TestResult};
    use gatos_types::ErrorCode;
    use proptest::prelude::*;

    use crate::Gatos;
    use crate::messages::{ConfigChange, PublishOptions};

    fn record(n: u8) -> Record {
        Record {
            commit: Oid::from_bytes([n; 20]),
            blob: Oid::from_bytes([n.wrapping_add(1); 20]),
            ulid: Ulid::from_u128((u128::from(n) << 80) | 0xabcdef),
            len: u32::from(n) * 1000 + 7,
        }
    }

    fn header() -> Header {
        Header {
            base: 3,
            count: 40,
            first: 9,
            tip: Some(Oid::from_bytes([7; 20])),
            summary: Some(Oid::from_bytes([8; 20])),
            generation: 11,
        }
    }

    /// Encodes `h` as a writer would, then lets `edit` change the bytes and seals them with a
    /// valid checksum again: damage the checksum cannot see.
    fn resealed(h: &Header, edit: impl FnOnce(&mut [u8])) -> Vec<u8> {
        let mut b = h.encode().to_vec();
        edit(&mut b);
        let sum = blake3::hash(&b[0..120]);
        b[120..128].copy_from_slice(&sum.as_bytes()[0..8]);
        b
    }

    #[test]
    fn records_round_trip_at_their_extremes() {
        for r in [
            Record {
                commit: Oid::from_bytes([0; 20]),
                blob: Oid::from_bytes([0; 20]),
                ulid: Ulid::from_u128(0),
                len: 0,
            },
            Record {
                commit: Oid::from_bytes([0xff; 20]),
                blob: Oid::from_bytes([0xff; 20]),
                ulid: Ulid::from_u128(u128::MAX >> 2),
                len: u32::MAX,
            },
            record(42),
        ] {
            assert_eq!(Record::decode(&r.encode()), Some(r));
        }
    }

    #[test]
    fn every_single_bit_flip_of_a_record_or_header_is_detected() {
        let good = record(5).encode();
        for bit in 0..good.len() * 8 {
            let mut b = good;
            b[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(Record::decode(&b), None, "record bit {bit}");
        }
        for h in [header(), Header::empty(1)] {
            let good = h.encode();
            for bit in 0..good.len() * 8 {
                let mut b = good;
                b[bit / 8] ^= 1 << (bit % 8);
                assert_eq!(Header::decode(&b), None, "header bit {bit} of {h:?}");
            }
        }
    }

    #[test]
    fn short_input_decodes_to_nothing_and_never_panics() {
        let r = record(9).encode();
        for n in 0..r.len() {
            assert_eq!(Record::decode(&r[..n]), None, "a record cut to {n} bytes");
        }
        let h = header().encode();
        for n in 0..h.len() {
            assert_eq!(Header::decode(&h[..n]), None, "a header cut to {n} bytes");
        }
        // Longer input: the header is the first 128 bytes (as a positioned read gives).
        let mut long = h.to_vec();
        long.extend_from_slice(&r);
        assert_eq!(Header::decode(&long), Some(header()));
    }

    #[test]
    fn another_format_version_or_an_impossible_header_is_refused_even_with_a_valid_checksum() {
        // Sanity: resealing without a change is the same header.
        assert_eq!(Header::decode(&resealed(&header(), |_| {})), Some(header()));
        // Another version of the format (the magic carries it), or no magic at all.
        for magic in [b"GATOSIX2", b"GATOSIX0", b"\0\0\0\0\0\0\0\0", b"gatosix1"] {
            let b = resealed(&header(), |b| b[0..8].copy_from_slice(magic));
            assert_eq!(Header::decode(&b), None, "{magic:?}");
        }
        // Seqs start at 1; the first retained one is within the records.
        let impossible = [
            Header {
                base: 0,
                ..header()
            },
            Header {
                first: 2,
                ..header()
            },
            Header {
                first: 3 + 40 + 1,
                ..header()
            },
            Header {
                count: u64::MAX,
                ..header()
            },
            Header {
                base: u64::MAX,
                first: u64::MAX,
                count: 2,
                ..header()
            },
        ];
        for h in impossible {
            assert_eq!(Header::decode(&h.encode()), None, "{h:?}");
        }
        // The edges of what is possible: nothing retained yet, or everything pruned.
        for h in [
            Header::empty(1),
            Header::empty(u64::MAX),
            Header {
                first: 3 + 40,
                ..header()
            },
            Header {
                first: 3,
                ..header()
            },
            Header {
                tip: None,
                summary: None,
                generation: u32::MAX,
                ..header()
            },
        ] {
            assert_eq!(Header::decode(&h.encode()), Some(h));
        }
        // A presence flag other than 0 or 1 reads as absent, never as garbage.
        let b = resealed(&header(), |b| b[36] = 2);
        assert_eq!(Header::decode(&b).map(|h| h.tip), Some(None));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn any_record_round_trips(
            commit in any::<[u8; 20]>(),
            blob in any::<[u8; 20]>(),
            ulid in any::<u128>(),
            len in any::<u32>(),
        ) {
            let r = Record {
                commit: Oid::from_bytes(commit),
                blob: Oid::from_bytes(blob),
                ulid: Ulid::from_u128(ulid),
                len,
            };
            prop_assert_eq!(Record::decode(&r.encode()), Some(r));
        }

        #[test]
        fn any_possible_header_round_trips(
            base in 1u64..u64::MAX / 2,
            count in 0u64..u64::MAX / 128,
            first_off in any::<u64>(),
            tip in proptest::option::of(any::<[u8; 20]>()),
            summary in proptest::option::of(any::<[u8; 20]>()),
            generation in any::<u32>(),
        ) {
            let h = Header {
                base,
                count,
                first: base + first_off % (count + 1),
                tip: tip.map(Oid::from_bytes),
                summary: summary.map(Oid::from_bytes),
                generation,
            };
            prop_assert_eq!(Header::decode(&h.encode()), Some(h));
        }

        /// Whatever bytes are on disk, decoding answers and never panics.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Header::decode(&bytes);
            let _ = Record::decode(&bytes);
        }
    }

    fn repo_with(
        messages: usize,
        max_messages: Option<u64>,
    ) -> TestResult<(TempRepo, Gatos, Topic)> {
        let (repo, g) = crate::test_node(None)?;
        let t: Topic = "idx".parse()?;
        if max_messages.is_some() {
            g.messages().configure(
                &t,
                &ConfigChange {
                    max_messages,
                    ..ConfigChange::default()
                },
            )?;
        }
        for i in 0..messages {
            g.messages()
                .publish(&t, serde_json::json!(i), &PublishOptions::default())?;
        }
        Ok((repo, g, t))
    }

    fn positions(g: &Gatos, t: &Topic) -> PathBuf {
        topic_dir(g.store(), t).join("positions")
    }

    #[test]
    fn an_empty_topic_has_an_empty_view() -> TestResult {
        let (_repo, g, t) = repo_with(0, None)?;
        let target = Target {
            head: None,
            summary: None,
            pruned_through: 0,
        };
        let v = open(g.store(), &t, target, &[])?;
        assert_eq!((v.first_seq(), v.last_seq(), v.retained()), (1, 0, 0));
        assert_eq!(v.tip(), None);
        assert!(v.records(0, u64::MAX)?.is_empty());
        assert!(v.records(1, 10)?.is_empty());
        assert_eq!(v.find(Ulid::from_u128(1))?, None);
        assert_eq!(
            v.record(1).map_err(|e| e.code()).err(),
            Some(ErrorCode::Internal)
        );
        assert_eq!(
            v.msgid_candidates(&mut MsgIds::default(), 1, 100)?,
            Vec::<u64>::new()
        );
        // On disk: a header and nothing else.
        assert_eq!(std::fs::metadata(positions(&g, &t))?.len(), HEADER);
        Ok(())
    }

    #[test]
    fn one_message_is_one_record_and_reads_past_it_are_empty_or_coded_errors() -> TestResult {
        let (_repo, g, t) = repo_with(1, None)?;
        let v = g.messages().view(&t)?.ok_or("the topic has a head")?;
        assert_eq!((v.first_seq(), v.last_seq(), v.retained()), (1, 1, 1));
        let r = v.record(1)?;
        assert_eq!(v.tip(), Some(r.commit));
        assert_eq!(v.records(0, 5)?, vec![r], "clamped to what is retained");
        assert_eq!(
            v.records(1, u64::MAX)?,
            vec![r],
            "a huge count is clamped too"
        );
        assert!(v.records(2, 1)?.is_empty());
        assert!(v.records(u64::MAX, u64::MAX)?.is_empty());
        for seq in [0, 2, u64::MAX] {
            assert_eq!(
                v.record(seq).map_err(|e| e.code()).err(),
                Some(ErrorCode::Internal),
                "seq {seq}"
            );
        }
        assert_eq!(v.find(r.ulid)?, Some(1));
        for other in [Ulid::from_u128(0), r.ulid.successor().ok_or("a successor")?] {
            assert_eq!(v.find(other)?, None);
        }
        assert_eq!(
            std::fs::metadata(positions(&g, &t))?.len(),
            HEADER + RECORD,
            "one 64-byte record after the 128-byte header"
        );
        Ok(())
    }

    #[test]
    fn records_across_segment_boundaries_follow_the_chain() -> TestResult {
        // Segments of 3: seqs 1-3, 4-6, 7 (a root commit starts each).
        let (_repo, g, t) = repo_with(7, Some(3))?;
        let rows = {
            let mut out = Vec::new();
            g.messages()
                .scan(&t, &crate::messages::Cursor::Start, None, |m| {
                    out.push((m.seq, m.commit, m.ulid));
                    Ok(true)
                })?;
            out
        };
        assert_eq!(rows.len(), 7);
        // Rebuilt from nothing: the walk crosses each Prev-Segment link.
        remove(g.store(), &t)?;
        let v = g.messages().view(&t)?.ok_or("a head")?;
        assert_eq!((v.first_seq(), v.last_seq()), (1, 7));
        let recs = v.records(1, 7)?;
        for ((seq, commit, ulid), r) in rows.iter().zip(&recs) {
            assert_eq!((r.commit, r.ulid), (*commit, *ulid), "seq {seq}");
            assert_eq!(v.find(*ulid)?, Some(*seq));
        }
        // Pages that start and end at each boundary.
        for (from, n) in [(3, 1), (3, 2), (4, 3), (6, 2), (7, 1), (6, 100)] {
            let got: Vec<u64> = v
                .records(from, n)?
                .iter()
                .filter_map(|r| rows.iter().find(|x| x.1 == r.commit).map(|x| x.0))
                .collect();
            let want: Vec<u64> = (from..(from + n).min(8)).collect();
            assert_eq!(got, want, "records({from}, {n})");
        }
        Ok(())
    }

    #[test]
    fn a_torn_or_truncated_positions_file_is_a_coded_error_never_a_panic() -> TestResult {
        let (_repo, g, t) = repo_with(5, Some(2))?;
        let v = g.messages().view(&t)?.ok_or("a head")?;
        let path = positions(&g, &t);
        let f = OpenOptions::new().write(true).open(&path)?;
        // A flipped byte inside record 3: that record, and any read covering it, fail.
        let mut b = [0u8; 1];
        v.positions
            .read_exact_at(&mut b, HEADER + 2 * RECORD + 10)?;
        f.write_all_at(&[b[0] ^ 0x40], HEADER + 2 * RECORD + 10)?;
        assert_eq!(v.records(1, 2)?.len(), 2, "records before it still read");
        for res in [v.record(3).map(|_| ()), v.records(1, 5).map(|_| ())] {
            assert_eq!(res.map_err(|e| e.code()).err(), Some(ErrorCode::Internal));
        }
        // Truncated in the middle of record 4, then to the header alone.
        for len in [HEADER + 3 * RECORD + 17, HEADER] {
            f.set_len(len)?;
            assert_eq!(
                v.records(4, 2).map_err(|e| e.code()).err(),
                Some(ErrorCode::Internal),
                "cut to {len} bytes"
            );
        }
        // A header cut short is not a header: the next open rebuilds from the refs.
        f.set_len(HEADER / 2)?;
        let again = g.messages().view(&t)?.ok_or("a head")?;
        assert_eq!((again.first_seq(), again.last_seq()), (1, 5));
        assert_eq!(again.records(1, 5)?.len(), 5);
        Ok(())
    }

    #[test]
    fn another_version_or_a_damaged_header_on_disk_is_rebuilt_from_the_refs() -> TestResult {
        let (_repo, g, t) = repo_with(4, None)?;
        let v = g.messages().view(&t)?.ok_or("a head")?;
        let want = v.records(1, 4)?;
        let path = positions(&g, &t);
        type Damage = (&'static str, Box<dyn Fn(&mut Vec<u8>)>);
        let damage: [Damage; 4] = [
            (
                "another version",
                Box::new(|b| b[0..8].copy_from_slice(b"GATOSIX2")),
            ),
            ("a flipped count", Box::new(|b| b[16] ^= 1)),
            ("a flipped checksum", Box::new(|b| b[127] ^= 0x80)),
            ("zeros", Box::new(|b| b[0..HEADER as usize].fill(0))),
        ];
        for (what, edit) in damage {
            let mut bytes = std::fs::read(&path)?;
            edit(&mut bytes);
            std::fs::write(&path, &bytes)?;
            let f = File::open(&path)?;
            assert_eq!(read_header(&f), None, "{what} is not a header");
            let again = g.messages().view(&t)?.ok_or("a head")?;
            assert_eq!(again.records(1, 4)?, want, "{what}: rebuilt");
        }
        Ok(())
    }

    // ---- Every reader rebuilds a torn index, once (`Messages::with_view`). ----

    /// Runs `f` and counts the warnings it logs (on this thread).
    fn warnings<T>(f: impl FnOnce() -> T) -> (T, usize) {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tracing::span::{Attributes, Id, Record as Values};
        struct Count(Arc<AtomicUsize>);
        impl tracing::Subscriber for Count {
            fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
                true
            }
            fn new_span(&self, _: &Attributes<'_>) -> Id {
                Id::from_u64(1)
            }
            fn record(&self, _: &Id, _: &Values<'_>) {}
            fn record_follows_from(&self, _: &Id, _: &Id) {}
            fn event(&self, e: &tracing::Event<'_>) {
                if *e.metadata().level() == tracing::Level::WARN {
                    self.0.fetch_add(1, Ordering::SeqCst);
                }
            }
            fn enter(&self, _: &Id) {}
            fn exit(&self, _: &Id) {}
        }
        let n = Arc::new(AtomicUsize::new(0));
        let out = tracing::subscriber::with_default(Count(Arc::clone(&n)), f);
        (out, n.load(Ordering::SeqCst))
    }

    /// Flips a byte inside the record of `seq` (the topic's base is 1): its checksum fails.
    fn tear(g: &Gatos, t: &Topic, seq: u64) -> TestResult {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(positions(g, t))?;
        let at = HEADER + (seq - 1) * RECORD + 5;
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, at)?;
        f.write_all_at(&[b[0] ^ 0x40], at)?;
        Ok(())
    }

    #[test]
    fn a_torn_index_is_rebuilt_and_read_again_once_with_a_warning() -> TestResult {
        let (_repo, g, t) = repo_with(3, None)?;
        let want = g.messages().view(&t)?.ok_or("a head")?.record(2)?;
        tear(&g, &t, 2)?;
        let read = |calls: &mut usize| {
            g.messages().with_view(&t, |v| {
                *calls += 1;
                v.map(|v| v.record(2)).transpose()
            })
        };
        let mut calls = 0;
        let (got, warned) = warnings(|| read(&mut calls));
        assert_eq!(got?, Some(want));
        assert_eq!(
            (calls, warned),
            (2, 1),
            "one retry, on a rebuilt index, said once"
        );
        // Rebuilt on disk: the next reader reads it at once.
        let mut calls = 0;
        assert_eq!(read(&mut calls)?, Some(want));
        assert_eq!(calls, 1);
        Ok(())
    }

    #[test]
    fn a_second_failure_or_another_error_is_returned_as_it_is() -> TestResult {
        type Case = (&'static str, fn(&Topic) -> Error, usize, usize);
        let (_repo, g, t) = repo_with(2, None)?;
        let cases: [Case; 3] = [
            // A real store problem: reported after one rebuild, never looped on.
            ("torn every time", |t| corrupt(t, "still torn"), 2, 1),
            (
                "not about the index",
                |_| Error::new(ErrorCode::NotFound, "no such thing"),
                1,
                0,
            ),
            // Messages went out: dropped for the next read, not read again.
            ("made final", |t| settled(corrupt(t, "torn"), 1), 1, 1),
        ];
        for (what, error, want_calls, want_warned) in cases {
            let mut calls = 0;
            let (got, warned) = warnings(|| {
                g.messages().with_view(&t, |_| -> Result<()> {
                    calls += 1;
                    Err(error(&t))
                })
            });
            let e = got.err().ok_or("an error")?;
            assert_eq!(
                (e.code(), e.to_string()),
                (error(&t).code(), error(&t).to_string()),
                "{what}"
            );
            assert_eq!((calls, warned), (want_calls, want_warned), "{what}");
        }
        Ok(())
    }

    #[test]
    fn a_view_whose_generation_moved_is_read_again_without_a_rebuild() -> TestResult {
        let (_repo, g, t) = repo_with(2, None)?;
        let internal = |e: std::io::Error| Error::new(ErrorCode::Internal, e.to_string());
        let mut generations = Vec::new();
        let (got, warned) = warnings(|| {
            g.messages().with_view(&t, |v| {
                let v = v.ok_or_else(|| Error::new(ErrorCode::Internal, "no view"))?;
                generations.push(v.header.generation);
                if generations.len() > 1 {
                    return Ok(());
                }
                // A writer rewrites the index (a sync) while this lock-free read runs, and
                // the read meets a record half written.
                let moved = Header {
                    generation: v.header.generation + 1,
                    ..v.header
                };
                OpenOptions::new()
                    .write(true)
                    .open(positions(&g, &t))
                    .and_then(|f| f.write_all_at(&moved.encode(), 0))
                    .map_err(internal)?;
                Err(corrupt(&t, "torn record at seq 1"))
            })
        });
        got?;
        assert_eq!(warned, 0, "not torn: nothing to warn about");
        // Kept: a rebuilt index would have started again at generation 0.
        assert_eq!(generations, [0, 1]);
        Ok(())
    }

    #[test]
    fn a_scan_that_passed_messages_on_returns_the_error_and_the_next_read_rebuilds() -> TestResult {
        let (_repo, g, t) = repo_with(4, None)?;
        let v = g.messages().view(&t)?.ok_or("a head")?;
        // Record 3 names another ULID than its envelope, behind a valid checksum.
        let wrong = Record {
            ulid: v.record(4)?.ulid,
            ..v.record(3)?
        };
        OpenOptions::new()
            .write(true)
            .open(positions(&g, &t))?
            .write_all_at(&wrong.encode(), HEADER + 2 * RECORD)?;
        let scan = |seen: &mut Vec<u64>| {
            g.messages()
                .scan(&t, &crate::messages::Cursor::Start, None, |m| {
                    seen.push(m.seq);
                    Ok(true)
                })
        };
        let mut seen = Vec::new();
        let (got, warned) = warnings(|| scan(&mut seen));
        assert_eq!(got.map_err(|e| e.code()).err(), Some(ErrorCode::Internal));
        assert_eq!(seen, [1, 2], "each message passed on once, never twice");
        assert_eq!(warned, 1, "the index was dropped");
        let mut seen = Vec::new();
        scan(&mut seen)?;
        assert_eq!(seen, [1, 2, 3, 4]);
        Ok(())
    }
}
