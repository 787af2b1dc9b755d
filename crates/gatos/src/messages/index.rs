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
        (h.base >= 1 && h.first >= h.base).then_some(h)
    }
}

fn corrupt(topic: &Topic, why: impl std::fmt::Display) -> Error {
    Error::new(
        gatos_types::ErrorCode::Internal,
        format!("position index of topic '{topic}': {why}"),
    )
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
        let to = (from + n).min(self.last_seq() + 1);
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

fn read_header(f: &File) -> Option<Header> {
    let mut b = [0u8; HEADER as usize];
    f.read_exact_at(&mut b, 0).ok()?;
    Header::decode(&b)
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

    /// Writes a record in place.
    fn put(&mut self, seq: u64, rec: &Record, msgid: u64) -> Result<()> {
        let pos = seq - self.header.base;
        if pos < self.high_water {
            self.start_rewrite()?;
        }
        self.positions
            .write_all_at(&rec.encode(), HEADER + pos * RECORD)
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
            m.write_all_at(&msgid.to_le_bytes(), pos * 8)
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
        let k = match known.iter().find(|k| k.meta.commit == commit) {
            Some(k) => k.clone(),
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
}
