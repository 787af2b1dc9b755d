//! Batches written as one pack: objects collected in memory, each once, commits first, then
//! trees, then blobs, each kind in the order put (gix-pack, which wrote them until ADR
//! 0046's session-5 amendment, needed input sorted by id, BASELINE pitfall 2), and written
//! with their index into `objects/pack/`. A batch's pack may instead be written while its
//! commits are made, on a thread of its own, in the order put ([`PackWriter::write_ahead`],
//! ADR 0046 session 16). Each object is hashed once, when collected: the index is made
//! from the ids, offsets and CRC32s known while the pack is encoded, not by reading the
//! pack back (tests check it is byte for byte the index gix-pack builds that way).
//!
//! The pack keeps its `.keep` file until the [`PackGuard`] is dropped, which the caller does
//! after the ref update that makes its objects reachable: until then no repack may fold or
//! drop it (DESIGN §3). A `.keep` left by a crash names the process; maintenance removes it
//! once it is old (see [`crate::maintenance`]).

use gatos_types::Oid;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::objects::{Kind, Objects, hash};
use crate::{Identity, Store};

/// The first line of every `.keep` file gatos writes, so maintenance can tell ours apart.
pub const KEEP_MARKER: &str = "gatos batch";

/// An object for a pack: its id, kind and bytes.
type Object = (Oid, Kind, Vec<u8>);

/// Collects objects in memory for one pack.
pub struct PackWriter<'s> {
    store: &'s Store,
    objects: Vec<Object>,
    bytes: usize,
    /// The pack being written on a thread of its own ([`PackWriter::write_ahead`]);
    /// `objects` then holds what was put since the last part was passed on.
    ahead: Option<Ahead>,
}

/// A pack on its way ([`PackWriter::write_ahead`]).
struct Ahead {
    /// Objects passed on so far.
    sent: usize,
    /// Bytes of `objects` not passed on yet.
    waiting: usize,
    /// Where the parts go. Dropped before [`Part::End`], it tells the thread to give the
    /// objects back.
    parts: std::sync::mpsc::Sender<Part>,
    thread: std::thread::JoinHandle<Result<Written>>,
}

/// What a pack's thread is sent.
enum Part {
    /// Objects to write after those before.
    Objects(Vec<Object>),
    /// No more: finish the pack.
    End,
}

/// What the thread of a pack hands back.
enum Written {
    /// The whole pack, in a temporary file of `objects/pack`.
    Whole(Streamed),
    /// The pack was not finished: the count in its header did not hold (the objects, read
    /// back from what was written, in the order sent), or the writer was dropped (none).
    GivenUp(Vec<Object>),
}

/// A pack written to its temporary file by [`write_parts`].
struct Streamed {
    /// Its bytes, trailing checksum included.
    pack: Vec<u8>,
    data: gix::tempfile::Handle<gix::tempfile::handle::Writable>,
    checksum: [u8; 20],
    /// Its entries, in the order written.
    placed: Vec<Placed>,
}

impl Drop for PackWriter<'_> {
    fn drop(&mut self) {
        // A writer given up (its caller failed) stops its pack's thread, whose temporary
        // file goes with it.
        if let Some(ahead) = self.ahead.take() {
            drop(ahead.parts);
            let _ = ahead.thread.join();
        }
    }
}

/// Adds an object to those collected for a pack, and its length to their byte count.
fn collect(objects: &mut Vec<Object>, bytes: &mut usize, id: Oid, kind: Kind, data: Vec<u8>) {
    *bytes += data.len();
    objects.push((id, kind, data));
}

/// Holds a written pack's `.keep` until dropped.
#[derive(Debug)]
pub struct PackGuard {
    keep: Option<PathBuf>,
    /// The pack file, when one was written.
    pub pack: Option<PathBuf>,
    /// Objects in the pack.
    pub objects: usize,
}

impl Drop for PackGuard {
    fn drop(&mut self) {
        if let Some(k) = self.keep.take()
            && let Err(e) = std::fs::remove_file(&k)
        {
            tracing::warn!(path = %k.display(), error = %e, "could not remove a pack's .keep");
        }
    }
}

impl Store {
    /// Starts collecting objects for one pack.
    pub fn pack_writer(&self) -> PackWriter<'_> {
        PackWriter {
            store: self,
            objects: Vec::new(),
            bytes: 0,
            ahead: None,
        }
    }

    /// Writes a group of objects (a journal's materialization, ADR 0046): as loose objects
    /// when there are fewer than `min_packed`, else as one pack. Returns the ids written
    /// and, for a pack, the guard that keeps its `.keep` until the refs naming the objects
    /// are moved.
    ///
    /// # Errors
    /// When an object cannot be encoded or written.
    pub fn write_objects(
        &self,
        objects: Vec<(Kind, Vec<u8>)>,
        min_packed: usize,
    ) -> Result<(std::collections::HashSet<Oid>, Option<PackGuard>)> {
        let mut wrote = std::collections::HashSet::with_capacity(objects.len());
        if objects.len() >= min_packed {
            let mut w = self.pack_writer();
            for (kind, data) in objects {
                wrote.insert(w.put_owned(kind, data)?);
            }
            Ok((wrote, Some(w.finish()?)))
        } else {
            let mut w = self.writer();
            for (kind, data) in &objects {
                wrote.insert(w.put(*kind, data)?);
            }
            w.finish()?;
            Ok((wrote, None))
        }
    }
}

/// Objects hashed for a pack away from its writer (on another thread, while the writer is
/// busy), then added to it, in the order they were made, by [`PackWriter::append`].
pub struct Hashed<'s> {
    identity: &'s Identity,
    objects: Vec<(Oid, Kind, Vec<u8>)>,
    bytes: usize,
}

impl Store {
    /// Starts collecting objects to add to a [`PackWriter`] of this store later.
    pub fn hashed(&self) -> Hashed<'_> {
        Hashed {
            identity: self.identity(),
            objects: Vec::new(),
            bytes: 0,
        }
    }
}

impl Objects for Hashed<'_> {
    fn put(&mut self, kind: Kind, data: &[u8]) -> Result<Oid> {
        let id = hash(kind, data)?;
        collect(&mut self.objects, &mut self.bytes, id, kind, data.to_vec());
        Ok(id)
    }

    fn identity(&self) -> &Identity {
        self.identity
    }
}

impl Objects for PackWriter<'_> {
    fn put(&mut self, kind: Kind, data: &[u8]) -> Result<Oid> {
        self.put_owned(kind, data.to_vec())
    }

    fn identity(&self) -> &Identity {
        self.store.identity()
    }
}

impl PackWriter<'_> {
    /// [`Objects::put`] of bytes the caller gives up: they are kept without a copy.
    ///
    /// # Errors
    /// [`Error::CollisionAttack`](crate::Error::CollisionAttack), as [`Objects::put`].
    pub fn put_owned(&mut self, kind: Kind, data: Vec<u8>) -> Result<Oid> {
        let id = hash(kind, &data)?;
        self.keep(id, kind, data);
        Ok(id)
    }

    /// Collects an object; with the pack under way, passes what waits on to its thread
    /// once it is [`PART_BYTES`].
    fn keep(&mut self, id: Oid, kind: Kind, data: Vec<u8>) {
        let len = data.len();
        collect(&mut self.objects, &mut self.bytes, id, kind, data);
        if let Some(ahead) = &mut self.ahead {
            ahead.waiting += len;
            if ahead.waiting >= PART_BYTES {
                ahead.waiting = 0;
                let part = std::mem::take(&mut self.objects);
                ahead.sent += part.len();
                // A thread that stopped (it failed) says why when the pack is finished.
                let _ = ahead.parts.send(Part::Objects(part));
            }
        }
    }

    /// [`PackWriter::put_owned`] of an object whose id the caller computed already
    /// ([`crate::objects::hash`] of the same kind and bytes).
    pub fn put_hashed(&mut self, kind: Kind, id: Oid, data: Vec<u8>) {
        debug_assert_eq!(
            hash(kind, &data).ok(),
            Some(id),
            "put_hashed with another id"
        );
        self.keep(id, kind, data);
    }

    /// Adds objects collected by [`Store::hashed`], as if each had been put here.
    pub fn append(&mut self, hashed: Hashed<'_>) {
        for (id, kind, data) in hashed.objects {
            self.keep(id, kind, data);
        }
    }

    /// Returns the number of objects collected (the first part written ahead counted once
    /// per id, what was put after it as put).
    pub fn len(&self) -> usize {
        self.objects.len() + self.ahead.as_ref().map_or(0, |a| a.sent)
    }

    /// Tells whether nothing was collected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts writing the pack on a thread of its own, with the objects collected so far,
    /// while the caller makes the rest: `more` objects, none of them one collected before
    /// (each passed on to the thread as [`PART_BYTES`] of them wait). A batch's envelopes
    /// and trees are known before its commits, which chain and are made on one thread: the
    /// pack is encoded, checksummed and written out meanwhile (ADR 0046, session 16).
    ///
    /// The pack then holds its objects in the order put (each once) instead of by kind.
    /// Where what was collected is under [`AHEAD_FROM`] bytes, the machine has one CPU or
    /// no thread can be started, nothing changes. Should the objects differ from what
    /// was said (not `more` of them after this, or one put twice), [`PackWriter::finish`]
    /// reads them back from what was written and writes the pack itself: the header,
    /// written first, counts them.
    pub fn write_ahead(&mut self, more: usize) {
        if self.ahead.is_some()
            || self.bytes < AHEAD_FROM
            || !std::thread::available_parallelism().is_ok_and(|n| n.get() > 1)
        {
            return;
        }
        let objects = std::mem::take(&mut self.objects);
        let by_id = unique_by_id(&objects);
        let mut keep = vec![false; objects.len()];
        for &i in &by_id {
            keep[i] = true;
        }
        let first: Vec<Object> = objects
            .into_iter()
            .zip(keep)
            .filter_map(|(o, k)| k.then_some(o))
            .collect();
        let Ok(count) = u32::try_from(first.len() + more) else {
            self.objects = first;
            return;
        };
        let dir = self.store.common_dir().join("objects").join("pack");
        let (parts, arrive) = std::sync::mpsc::channel();
        let Ok(thread) = std::thread::Builder::new()
            .name("gatos-pack".into())
            .spawn(move || write_parts(&dir, count, &arrive))
        else {
            self.objects = first;
            return;
        };
        let sent = first.len();
        if let Err(std::sync::mpsc::SendError(Part::Objects(first))) =
            parts.send(Part::Objects(first))
        {
            // The thread ended before it took anything: the pack is written here.
            let _ = thread.join();
            self.objects = first;
            return;
        }
        self.ahead = Some(Ahead {
            sent,
            waiting: 0,
            parts,
            thread,
        });
    }

    /// Returns the bytes collected (uncompressed).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Writes the pack and its index, fsynced when `gatos.fsync` is on, and returns the guard
    /// of its `.keep`.
    ///
    /// # Errors
    /// When encoding or writing the pack fails.
    pub fn finish(mut self) -> Result<PackGuard> {
        let objects = std::mem::take(&mut self.objects);
        match self.ahead.take() {
            Some(ahead) => self.finish_ahead(ahead, objects),
            None => self.finish_here(objects),
        }
    }

    /// Finishes a pack being written on its own thread: passes on what waits and waits for
    /// the pack. When the count in its header did not hold, or an object is in it twice,
    /// the thread's objects and these are written here.
    fn finish_ahead(&self, ahead: Ahead, rest: Vec<Object>) -> Result<PackGuard> {
        let Ahead { parts, thread, .. } = ahead;
        // When the thread is gone (it failed), joining it says why.
        let _ = parts.send(Part::Objects(rest));
        let _ = parts.send(Part::End);
        drop(parts);
        let written = thread.join().unwrap_or_else(|_| {
            Err(Error::io(
                "writing a pack",
                std::io::Error::other("the thread writing it panicked"),
            ))
        })?;
        let streamed = match written {
            Written::Whole(streamed) => streamed,
            Written::GivenUp(all) => return self.finish_here(all),
        };
        let order = order_by_id(&streamed.placed, |p| &p.id);
        if order
            .windows(2)
            .any(|w| streamed.placed[w[0]].id == streamed.placed[w[1]].id)
        {
            let objects = read_back(&streamed.pack, &streamed.placed)?;
            // Its temporary file goes with it.
            drop(streamed);
            return self.finish_here(objects);
        }
        let Streamed {
            pack,
            data,
            checksum,
            placed,
        } = streamed;
        let entries: Vec<&Placed> = order.iter().map(|&i| &placed[i]).collect();
        let index = encode_index(&entries, checksum)?;
        drop(entries);
        let name = Oid::from_bytes(checksum).to_string();
        let dir = self.store.common_dir().join("objects").join("pack");
        let outcome = persist(&dir, data, &pack, &index, &name)?;
        self.landed(outcome, placed.len())
    }

    /// Writes a whole pack on this thread (its checksum on another, when large).
    fn finish_here(&self, mut objects: Vec<Object>) -> Result<PackGuard> {
        // Each object once (the first put of an id is kept), in the pack commits first, then
        // trees, then blobs, each kind in the order written (a sort by id cost a batch 5% of
        // its time, and readers walk a topic in its commits' order).
        let by_id = unique_by_id(&objects);
        let count = by_id.len();
        if count == 0 {
            return Ok(PackGuard {
                keep: None,
                pack: None,
                objects: 0,
            });
        }
        let mut order = by_id.clone();
        order.sort_unstable();
        order.sort_by_key(|&i| objects[i].1);
        let (mut pack, places) = encode_pack(&mut objects, &order)?;
        let placed: Vec<Placed> = by_id
            .iter()
            .map(|&i| Placed {
                id: objects[i].0,
                offset: places[i].0,
                crc32: places[i].1,
            })
            .collect();
        drop(objects);
        let pack_dir = self.store.common_dir().join("objects").join("pack");
        std::fs::create_dir_all(&pack_dir).map_err(|e| Error::io("creating objects/pack", e))?;
        // The pack's checksum is the one long step that needs all of it: a large pack is
        // hashed on another thread while this one writes its bytes out.
        let two = pack.len() >= HASH_APART_FROM
            && std::thread::available_parallelism().is_ok_and(|n| n.get() > 1);
        let (checksum, mut data) = if two {
            std::thread::scope(|s| {
                let hashing = std::thread::Builder::new()
                    .name("gatos-pack".into())
                    .spawn_scoped(s, || sha1(&pack));
                let data = temp_with(&pack_dir, &pack, "writing a pack");
                let checksum = match hashing {
                    Ok(h) => h.join().unwrap_or_else(|_| sha1(&pack)),
                    Err(_) => sha1(&pack),
                };
                data.map(|d| (checksum, d))
            })?
        } else {
            (sha1(&pack), temp_with(&pack_dir, &pack, "writing a pack")?)
        };
        {
            use std::io::Write as _;
            data.write_all(&checksum)
                .map_err(|e| Error::io("writing a pack", e))?;
        }
        pack.extend_from_slice(&checksum);
        let entries: Vec<&Placed> = placed.iter().collect();
        let index = encode_index(&entries, checksum)?;
        drop(entries);
        drop(placed);
        // The pack's name is its checksum, in hex as an object id is.
        let name = Oid::from_bytes(checksum).to_string();
        let outcome = persist(&pack_dir, data, &pack, &index, &name)?;
        self.landed(outcome, count)
    }

    /// Makes a pack put in place durable (with `gatos.fsync`) and counts it.
    fn landed(&self, outcome: Persisted, count: usize) -> Result<PackGuard> {
        if self.store.is_durable() {
            let mut paths: Vec<PathBuf> = vec![outcome.pack.clone(), outcome.index.clone()];
            paths.extend(outcome.keep.clone());
            self.store
                .fsync_paths(crate::durability::Step::Objects, &paths)?;
        }
        self.store.wrote_pack();
        Ok(PackGuard {
            keep: outcome.keep,
            pack: Some(outcome.pack),
            objects: count,
        })
    }
}

/// Packs from this size on have their checksum computed on a thread of their own (where
/// the machine has a second CPU): under it, starting a thread costs about what it saves.
const HASH_APART_FROM: usize = 256 * 1024;

/// A pack is written ahead on a thread of its own from this size of what was collected on
/// ([`PackWriter::write_ahead`]): a batch's chunk of 1,000 small messages has about 200 KiB
/// of envelopes and trees before its commits; under this, starting the thread costs about
/// what it saves.
const AHEAD_FROM: usize = 64 * 1024;

/// Objects put while a pack is written ahead are passed on to its thread in parts of about
/// this many bytes.
const PART_BYTES: usize = 64 * 1024;

/// The places in `objects` of each id once, ordered by id (the first put of an id is
/// kept): the index's order.
fn unique_by_id(objects: &[Object]) -> Vec<usize> {
    let mut sorted = order_by_id(objects, |o| &o.0);
    // Within a run of one id the first put comes first: it stays.
    sorted.dedup_by(|later, earlier| objects[*later].0 == objects[*earlier].0);
    sorted
}

/// The places in `items` ordered by `id`, a place before a later one of the same id. Ids
/// are hashes, so a counting sort on their first byte leaves buckets of a few each to sort
/// (a comparison sort of the whole list cost a batch 6%; a bucket that hostile payloads
/// fill is still sorted in O(n log n)).
fn order_by_id<T>(items: &[T], id: impl Fn(&T) -> &Oid) -> Vec<usize> {
    let first = |i: usize| usize::from(id(&items[i]).as_bytes()[0]);
    let mut starts = [0usize; 257];
    for i in 0..items.len() {
        starts[first(i) + 1] += 1;
    }
    for b in 0..256 {
        starts[b + 1] += starts[b];
    }
    let mut next = starts;
    let mut sorted = vec![0usize; items.len()];
    for i in 0..items.len() {
        let b = first(i);
        sorted[next[b]] = i;
        next[b] += 1;
    }
    for b in 0..256 {
        sorted[starts[b]..starts[b + 1]]
            .sort_unstable_by(|&x, &y| id(&items[x]).cmp(id(&items[y])).then(x.cmp(&y)));
    }
    sorted
}

/// Writes a pack's objects as they arrive on `parts` into a temporary file of `dir`, each
/// part encoded, checksummed and written while the caller makes the next, `count` objects
/// in all (the header's count, written first). When the parts end without [`Part::End`] or
/// with another count, the objects are handed back unwritten.
fn write_parts(
    dir: &std::path::Path,
    count: u32,
    parts: &std::sync::mpsc::Receiver<Part>,
) -> Result<Written> {
    use sha1::Digest as _;
    use std::io::Write as _;
    let mut pack = Vec::new();
    pack.extend_from_slice(b"PACK");
    pack.extend_from_slice(&2u32.to_be_bytes());
    pack.extend_from_slice(&count.to_be_bytes());
    let mut hasher = sha1::Sha1::new();
    let mut data = None;
    let mut placed = Vec::new();
    let mut from = 0;
    loop {
        match parts.recv() {
            Ok(Part::Objects(part)) => {
                pack.reserve(
                    part.iter()
                        .map(|o| crate::zlib::stored_len(o.2.len()) + 10)
                        .sum::<usize>(),
                );
                for (id, kind, bytes) in part {
                    placed.push(encode_entry(&mut pack, id, kind, &bytes));
                }
            }
            Ok(Part::End) => break,
            // The writer was dropped: nothing is wanted back.
            Err(_) => return Ok(Written::GivenUp(Vec::new())),
        }
        hasher.update(&pack[from..]);
        match &mut data {
            None => {
                std::fs::create_dir_all(dir).map_err(|e| Error::io("creating objects/pack", e))?;
                data = Some(temp_with(dir, &pack[from..], "writing a pack")?);
            }
            Some(d) => d
                .write_all(&pack[from..])
                .map_err(|e| Error::io("writing a pack", e))?,
        }
        from = pack.len();
    }
    let (Some(mut data), true) = (data, placed.len() == usize::try_from(count).unwrap_or(0)) else {
        return Ok(Written::GivenUp(read_back(&pack, &placed)?));
    };
    let checksum: [u8; 20] = hasher.finalize().into();
    pack.extend_from_slice(&checksum);
    data.write_all(&checksum)
        .map_err(|e| Error::io("writing a pack", e))?;
    Ok(Written::Whole(Streamed {
        pack,
        data,
        checksum,
        placed,
    }))
}

/// The objects of a pack being written here, read back from its bytes (`placed` names their
/// entries, each a whole object, in order) for a pack that has to be written again: the
/// objects are not kept beside the pack, which would hold a batch's bytes twice. Each is
/// checked against its id.
fn read_back(pack: &[u8], placed: &[Placed]) -> Result<Vec<Object>> {
    let mut objects = Vec::with_capacity(placed.len());
    for p in placed {
        let bad = || Error::Corrupt {
            what: "pack".into(),
            reason: format!("the entry at {} does not read back as {}", p.offset, p.id),
        };
        let mut at = usize::try_from(p.offset).map_err(|_| bad())?;
        let mut byte = *pack.get(at).ok_or_else(bad)?;
        let kind = match (byte >> 4) & 7 {
            1 => Kind::Commit,
            2 => Kind::Tree,
            3 => Kind::Blob,
            _ => return Err(bad()),
        };
        let mut size = u64::from(byte & 0x0f);
        let mut shift = 4;
        while byte & 0x80 != 0 {
            at += 1;
            byte = *pack.get(at).ok_or_else(bad)?;
            if shift > 57 {
                return Err(bad());
            }
            size |= u64::from(byte & 0x7f) << shift;
            shift += 7;
        }
        let mut data = vec![0u8; usize::try_from(size).map_err(|_| bad())?];
        let mut z = gix::zlib::Decompress::new();
        z.decompress(
            pack.get(at + 1..).ok_or_else(bad)?,
            &mut data,
            gix::zlib::FlushDecompress::Finish,
        )
        .map_err(|_| bad())?;
        if z.total_out() != size || hash(kind, &data)? != p.id {
            return Err(bad());
        }
        objects.push((p.id, kind, data));
    }
    Ok(objects)
}

/// Where an object's entry starts in a pack, and its CRC32.
type Place = (u64, u32);

/// One object's place in a pack, for its index.
struct Placed {
    id: Oid,
    offset: u64,
    crc32: u32,
}

/// Encodes a version 2 pack of the `objects` at the places `order` names (each whole,
/// zlib-stored, in that order) without its trailing checksum, and says where each one
/// starts and the CRC32 of its bytes, by its place in `objects`, as the index needs them:
/// the objects are hashed once, when collected, not read back from the pack. Each object's
/// bytes are freed once encoded (its id and kind stay), so the pack and the objects are
/// not held twice.
fn encode_pack(objects: &mut [Object], order: &[usize]) -> Result<(Vec<u8>, Vec<Place>)> {
    let count = u32::try_from(order.len()).map_err(|_| Error::Corrupt {
        what: "pack".into(),
        reason: "more than 2^32 objects".into(),
    })?;
    let mut pack = Vec::with_capacity(
        12 + order
            .iter()
            .map(|&i| crate::zlib::stored_len(objects[i].2.len()) + 10)
            .sum::<usize>()
            + 20,
    );
    pack.extend_from_slice(b"PACK");
    pack.extend_from_slice(&2u32.to_be_bytes());
    pack.extend_from_slice(&count.to_be_bytes());
    let mut places = vec![(0u64, 0u32); objects.len()];
    for &i in order {
        let data = std::mem::take(&mut objects[i].2);
        let p = encode_entry(&mut pack, objects[i].0, objects[i].1, &data);
        places[i] = (p.offset, p.crc32);
    }
    Ok((pack, places))
}

/// Appends one object's entry to `pack` (whole, zlib-stored) and says where it starts and
/// the CRC32 of its bytes.
fn encode_entry(pack: &mut Vec<u8>, id: Oid, kind: Kind, data: &[u8]) -> Placed {
    let offset = pack.len();
    // The entry header: the type in bits 4-6 of the first byte, then the size, four bits
    // there and seven in each byte after; a set top bit means another follows.
    let code: u8 = match kind {
        Kind::Commit => 1,
        Kind::Tree => 2,
        Kind::Blob => 3,
    };
    let mut size = data.len() as u64;
    let mut byte = (code << 4) | (size & 0x0f) as u8;
    size >>= 4;
    while size != 0 {
        pack.push(byte | 0x80);
        byte = (size & 0x7f) as u8;
        size >>= 7;
    }
    pack.push(byte);
    crate::zlib::stored_into(pack, data);
    Placed {
        id,
        offset: offset as u64,
        crc32: crc32fast::hash(&pack[offset..]),
    }
}

/// The trailing SHA-1 of a pack or of its index: a checksum of the file, not an object id.
///
/// Plain SHA-1 (the `sha1` crate), not SHA-1 with collision detection as for object ids,
/// as git does for the checksums of the files it writes since 2.48: detection makes every
/// byte of a batch's pack cost about twice as much to hash, and a collision here names no
/// object. It does name the pack; [`persist`] therefore never takes a pack already in
/// place for this one without comparing their bytes.
fn sha1(bytes: &[u8]) -> [u8; 20] {
    use sha1::Digest as _;
    sha1::Sha1::digest(bytes).into()
}

/// The version 2 index (git's `pack-format`) of the pack whose entries are `placed` and
/// whose trailing checksum is `checksum`: the fan-out table, the ids in order, their CRC32s, their offsets (those
/// from 2 GiB on in a table of 64-bit offsets), the pack's checksum and the index's own.
fn encode_index(placed: &[&Placed], checksum: [u8; 20]) -> Result<Vec<u8>> {
    let n = placed.len();
    let mut idx = Vec::with_capacity(8 + 256 * 4 + n * 28 + 40);
    idx.extend_from_slice(&[0xff, b't', b'O', b'c']);
    idx.extend_from_slice(&2u32.to_be_bytes());
    let mut fan = [0u32; 256];
    for p in placed.iter() {
        fan[usize::from(p.id.as_bytes()[0])] += 1;
    }
    let mut total = 0u32;
    for f in fan {
        total += f;
        idx.extend_from_slice(&total.to_be_bytes());
    }
    for p in placed.iter() {
        idx.extend_from_slice(p.id.as_bytes());
    }
    for p in placed.iter() {
        idx.extend_from_slice(&p.crc32.to_be_bytes());
    }
    let mut large: Vec<u64> = Vec::new();
    for p in placed.iter() {
        let small = match u32::try_from(p.offset) {
            Ok(o) if o < 0x8000_0000 => o,
            _ => {
                let at = u32::try_from(large.len()).map_err(|_| Error::Corrupt {
                    what: "pack".into(),
                    reason: "too many large offsets".into(),
                })?;
                large.push(p.offset);
                0x8000_0000 | at
            }
        };
        idx.extend_from_slice(&small.to_be_bytes());
    }
    for o in large {
        idx.extend_from_slice(&o.to_be_bytes());
    }
    idx.extend_from_slice(&checksum);
    let own = sha1(&idx);
    idx.extend_from_slice(&own);
    Ok(idx)
}

/// Where a pack was put.
struct Persisted {
    pack: PathBuf,
    index: PathBuf,
    keep: Option<PathBuf>,
}

/// A temporary file in `dir` (removed unless persisted) holding `bytes`.
fn temp_with(
    dir: &std::path::Path,
    bytes: &[u8],
    what: &str,
) -> Result<gix::tempfile::Handle<gix::tempfile::handle::Writable>> {
    use gix::tempfile::{AutoRemove, ContainingDirectory};
    use std::io::Write as _;
    let mut f = gix::tempfile::new(dir, ContainingDirectory::Exists, AutoRemove::Tempfile)
        .map_err(|e| Error::io(what, e))?;
    f.write_all(bytes).map_err(|e| Error::io(what, e))?;
    Ok(f)
}

/// Puts a pack (written to the temporary file `data` in `dir`; its bytes are `pack`) and
/// its index into `dir` as git and gix do: the index written to a temporary file there
/// too, the `.keep` (naming this process) made before the pack is renamed into place, and
/// the index renamed last, which is what makes the pack visible. A pack that is already
/// there (the same bytes, the same name) is left alone, and so is its index.
fn persist(
    dir: &std::path::Path,
    data: gix::tempfile::Handle<gix::tempfile::handle::Writable>,
    pack: &[u8],
    index: &[u8],
    name: &str,
) -> Result<Persisted> {
    let idx = temp_with(dir, index, "writing a pack index")?;
    let pack_path = dir.join(format!("pack-{name}.pack"));
    let index_path = pack_path.with_extension("idx");
    let keep = if pack_path.is_file() {
        // Same name, so the same checksum: the same pack, unless two packs collide. Then
        // this one's objects would not be written, so that is an error.
        let there = std::fs::read(&pack_path).map_err(|e| Error::io("reading a pack", e))?;
        if there != pack {
            return Err(Error::Corrupt {
                what: format!("pack {name}"),
                reason: "a different pack with the same checksum is already in place".into(),
            });
        }
        None
    } else {
        let keep = pack_path.with_extension("keep");
        let marker = format!("{KEEP_MARKER} pid={}\n", std::process::id());
        std::fs::write(&keep, marker).map_err(|e| Error::io("marking a pack .keep", e))?;
        data.persist(&pack_path)
            .map_err(|e| Error::io("moving a pack into place", e.error))?;
        Some(keep)
    };
    if !index_path.is_file() {
        idx.persist(&index_path)
            .map_err(|e| Error::io("moving a pack index into place", e.error))?;
    }
    Ok(Persisted {
        pack: pack_path,
        index: index_path,
        keep,
    })
}
