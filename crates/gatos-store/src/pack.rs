//! Batches written as one pack: objects collected in memory, sorted (commits, trees, blobs,
//! then by id; gix-pack, which wrote them until ADR 0046's session-5 amendment, needed
//! sorted input, BASELINE pitfall 2), and written with their index into `objects/pack/`.
//! Each object is hashed once, when collected: the index is made from the ids, offsets and
//! CRC32s known while the pack is encoded, not by reading the pack back (a test checks it
//! is byte for byte the index gix-pack builds that way).
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

/// Collects objects in memory for one pack.
pub struct PackWriter<'s> {
    store: &'s Store,
    objects: Vec<(Oid, Kind, Vec<u8>)>,
    bytes: usize,
}

/// Adds an object to those collected for a pack, and its length to their byte count.
fn collect(
    objects: &mut Vec<(Oid, Kind, Vec<u8>)>,
    bytes: &mut usize,
    id: Oid,
    kind: Kind,
    data: Vec<u8>,
) {
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
        collect(&mut self.objects, &mut self.bytes, id, kind, data);
        Ok(id)
    }

    /// [`PackWriter::put_owned`] of an object whose id the caller computed already
    /// ([`crate::objects::hash`] of the same kind and bytes).
    pub fn put_hashed(&mut self, kind: Kind, id: Oid, data: Vec<u8>) {
        debug_assert_eq!(
            hash(kind, &data).ok(),
            Some(id),
            "put_hashed with another id"
        );
        collect(&mut self.objects, &mut self.bytes, id, kind, data);
    }

    /// Adds objects collected by [`Store::hashed`], as if each had been put here.
    pub fn append(&mut self, hashed: Hashed<'_>) {
        self.bytes += hashed.bytes;
        self.objects.extend(hashed.objects);
    }

    /// Returns the number of objects collected.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Tells whether nothing was collected.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
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
        // Each object once, commits first, then trees, then blobs, each kind in the order
        // written (a sort by id cost a batch 5% of its time, and readers walk a topic in
        // its commits' order).
        let mut seen = std::collections::HashSet::with_capacity(self.objects.len());
        self.objects.retain(|o| seen.insert(o.0));
        drop(seen);
        self.objects.sort_by_key(|o| o.1);
        let count = self.objects.len();
        if count == 0 {
            return Ok(PackGuard {
                keep: None,
                pack: None,
                objects: 0,
            });
        }
        let objects = std::mem::take(&mut self.objects);
        let (mut pack, mut entries) = encode_pack(objects)?;
        let checksum = sha1(&pack);
        pack.extend_from_slice(&checksum);
        let index = encode_index(&mut entries, checksum)?;
        drop(entries);
        let pack_dir = self.store.common_dir().join("objects").join("pack");
        std::fs::create_dir_all(&pack_dir).map_err(|e| Error::io("creating objects/pack", e))?;
        // The pack's name is its checksum, in hex as an object id is.
        let name = Oid::from_bytes(checksum).to_string();
        let outcome = persist(&pack_dir, &pack, &index, &name)?;
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

/// One object's place in a pack, for its index.
struct Placed {
    id: Oid,
    offset: u64,
    crc32: u32,
}

/// Encodes a version 2 pack of `objects` (each whole, zlib-stored, in the order given) and
/// says where each one starts and the CRC32 of its bytes, as the index needs them: the
/// objects are hashed once, when collected, not read back from the pack.
fn encode_pack(objects: Vec<(Oid, Kind, Vec<u8>)>) -> Result<(Vec<u8>, Vec<Placed>)> {
    let count = u32::try_from(objects.len()).map_err(|_| Error::Corrupt {
        what: "pack".into(),
        reason: "more than 2^32 objects".into(),
    })?;
    let mut pack = Vec::with_capacity(
        12 + objects
            .iter()
            .map(|o| crate::zlib::stored_len(o.2.len()) + 10)
            .sum::<usize>()
            + 20,
    );
    pack.extend_from_slice(b"PACK");
    pack.extend_from_slice(&2u32.to_be_bytes());
    pack.extend_from_slice(&count.to_be_bytes());
    let mut placed = Vec::with_capacity(objects.len());
    for (id, kind, data) in objects {
        let offset = pack.len();
        // The entry header: the type in bits 4-6 of the first byte, then the size, four
        // bits there and seven in each byte after; a set top bit means another follows.
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
        crate::zlib::stored_into(&mut pack, &data);
        placed.push(Placed {
            id,
            offset: offset as u64,
            crc32: crc32fast::hash(&pack[offset..]),
        });
    }
    Ok((pack, placed))
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
fn encode_index(placed: &mut [Placed], checksum: [u8; 20]) -> Result<Vec<u8>> {
    placed.sort_by(|a, b| a.id.as_bytes().cmp(b.id.as_bytes()));
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

/// Puts a pack and its index into `dir` as git and gix do: each written to a temporary
/// file there, the `.keep` (naming this process) made before the pack is renamed into
/// place, and the index renamed last, which is what makes the pack visible. A pack that
/// is already there (the same bytes, the same name) is left alone, and so is its index.
fn persist(dir: &std::path::Path, pack: &[u8], index: &[u8], name: &str) -> Result<Persisted> {
    use gix::tempfile::{AutoRemove, ContainingDirectory};
    use std::io::Write as _;
    let temp = |bytes: &[u8],
                what: &str|
     -> Result<gix::tempfile::Handle<gix::tempfile::handle::Writable>> {
        let mut f = gix::tempfile::new(dir, ContainingDirectory::Exists, AutoRemove::Tempfile)
            .map_err(|e| Error::io(what, e))?;
        f.write_all(bytes).map_err(|e| Error::io(what, e))?;
        Ok(f)
    };
    let data = temp(pack, "writing a pack")?;
    let idx = temp(index, "writing a pack index")?;
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
