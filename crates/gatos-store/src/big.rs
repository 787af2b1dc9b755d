//! Finding objects in the repository's largest pack index in one or two probes (issue
//! #21 point 5; ADR 0046, session 10).
//!
//! After `git gatos maintenance` most objects sit in one pack, found through one index (the
//! multi-pack index, or the pack's own) of hundreds of thousands of ids. gix finds an id
//! there by bisection: about twenty probes, the last ten or so cache misses at random
//! places in megabytes of ids. That lookup was half the work of reading a topic after
//! maintenance. Object ids are SHA-1 hashes, spread evenly, so:
//! - a table of where the ids of each leading 13 bits start (for 400,000 objects; fewer
//!   bits for fewer, at most 14) leaves 32 to 64 ids to search, side by side in a kilobyte
//!   or so (up to a million objects; more beyond: about 240 at four million). It is built in one pass over the ids once the index has served enough lookups
//!   to pay for it (a short read does not build it);
//! - before that, and within a bucket, interpolation places each probe where the id's
//!   value says it should be: three or four probes instead of twenty. On ids that are not
//!   spread evenly (ids can be chosen by whoever writes objects), the search bisects after
//!   six probes, so it takes at most those six beyond bisection (and a last run of eight
//!   ids read side by side).
//!
//! Only readers of many objects use it ([`crate::Store::bulk_reader`]), and only for blobs
//! in that one index: whole, or deltas on bases in their own pack, decoded as gix decodes
//! them with a cache of bases capped as the store caps gix's (reading a delta's bases
//! through gix after the big index found the delta would look the object up twice).
//! Anything else, and any object it does not find, is read through gix as before. The
//! files are mapped when first needed and kept while the index file is unchanged; an
//! object found in a mapping that a repack has since replaced is still that object (an id
//! names one content), and a pack that can no longer be opened makes the next bulk reader
//! open the index anew.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use gix::odb::pack::{cache, data, index, multi_index};

use crate::FileStamp;

/// Fewer objects than this are left to gix: their ids fit in a core's caches.
const BIG_MIN: u32 = 50_000;

/// Blobs stored whole and larger than this are left to gix.
const BLOB_MAX: u64 = 16 << 20;

/// No allocation made while decoding (a delta's result and its bases) may exceed this:
/// a damaged delta that claims a huge result fails here and is left to gix, whose
/// limit is the repository's (`GIT_ALLOC_LIMIT`).
const ALLOC_MAX: usize = 4 * (16 << 20);

/// The index searched, and the packs it names (mapped when first read).
pub(crate) struct Big {
    /// The index file opened, and its stamp then.
    source: (PathBuf, FileStamp),
    /// Set when a pack it names could not be opened (a repack removed it): the index is
    /// opened anew by the next bulk reader.
    stale: std::sync::atomic::AtomicBool,
    index: Index,
    packs: Vec<(PathBuf, OnceLock<Option<data::File>>)>,
    /// Lookups served before [`Big::buckets`] was built.
    lookups: AtomicU32,
    buckets: OnceLock<Buckets>,
}

/// Where the ids of each value of their leading `bits` bits start in the index; last, the
/// number of ids.
struct Buckets {
    bits: u32,
    starts: Vec<u32>,
}

impl Buckets {
    /// The buckets of `index`: 32 to 64 ids each up to 2^20 ids, at most 2^14 of them (64 KiB: a reader's
    /// memory is part of what gatos promises). With 2^16 buckets of 8 to 16 ids the reads
    /// were no faster within their spread and a 1,000,000-message read used 100 to 150 KiB
    /// more (ADR 0046, session 10).
    fn of(index: &Index) -> Buckets {
        let n = index.len();
        Self::build(n.max(1).ilog2().saturating_sub(5).clamp(8, 14), n, |at| {
            index.id(at)
        })
    }

    fn build<'a>(bits: u32, n: u32, id_at: impl Fn(u32) -> &'a [u8]) -> Buckets {
        let mut starts = vec![0u32; (1 << bits) + 1];
        for at in 0..n {
            starts[Self::bucket(bits, id_at(at)) + 1] += 1;
        }
        for b in 1..starts.len() {
            starts[b] = starts[b].saturating_add(starts[b - 1]);
        }
        Buckets { bits, starts }
    }

    fn bucket(bits: u32, id: &[u8]) -> usize {
        usize::try_from(key(id) >> (64 - bits)).unwrap_or(0)
    }

    /// Where to search for `id`: the positions, and bounds on the keys there.
    fn range(&self, id: &[u8]) -> (u32, u32, u64, u64) {
        let b = Self::bucket(self.bits, id);
        let shift = 64 - self.bits;
        let lo_key = (b as u64) << shift;
        let hi_key = lo_key | (u64::MAX >> self.bits);
        (self.starts[b], self.starts[b + 1], lo_key, hi_key)
    }
}

enum Index {
    Multi(multi_index::File),
    Single(index::File),
}

impl Index {
    fn len(&self) -> u32 {
        match self {
            Index::Multi(m) => m.num_objects(),
            Index::Single(i) => i.num_objects(),
        }
    }

    fn id(&self, at: u32) -> &[u8] {
        match self {
            Index::Multi(m) => m.oid_at_index(at).as_bytes(),
            Index::Single(i) => i.oid_at_index(at).as_bytes(),
        }
    }

    /// The pack (a place in [`Big::packs`]) and the offset in it of the entry at `at`.
    fn place(&self, at: u32) -> Option<(usize, u64)> {
        match self {
            Index::Multi(m) => {
                let (pack, offset) = m.pack_id_and_pack_offset_at_index(at).ok()?;
                Some((usize::try_from(pack).ok()?, offset))
            }
            Index::Single(i) => Some((0, i.pack_offset_at_index(at))),
        }
    }
}

/// The first eight bytes of an id, as a number that orders ids as their bytes do.
fn key(id: &[u8]) -> u64 {
    let mut k = [0; 8];
    k.copy_from_slice(&id[..8]);
    u64::from_be_bytes(k)
}

/// Probes placed by interpolation before the search falls back to bisection. Evenly
/// spread ids need three or four (the expected number grows as log log n); ids chosen to
/// cluster cannot make a search take more than this many probes beyond bisection's, plus
/// the reads of the last eight ids, side by side.
const INTERPOLATED: u32 = 6;

/// Where `id` is among the sorted ids at positions `lo..hi`, read with `id_at`, whose keys
/// lie within `lo_key..=hi_key`; `None` when it is not there (or the ids are not sorted
/// where the search went).
fn find<'a>(
    (mut lo, mut hi, mut lo_key, mut hi_key): (u32, u32, u64, u64),
    id_at: impl Fn(u32) -> &'a [u8],
    id: &[u8; 20],
) -> Option<u32> {
    let want = key(id);
    let mut probes = 0;
    while hi.saturating_sub(lo) > 8 {
        let mid = if probes < INTERPOLATED {
            if want < lo_key || want > hi_key {
                return None;
            }
            let span = u128::from(hi_key - lo_key) + 1;
            let off = u128::from(want - lo_key) * u128::from(hi - lo) / span;
            lo + u32::try_from(off).unwrap_or(u32::MAX).min(hi - lo - 1)
        } else {
            lo + (hi - lo) / 2
        };
        probes += 1;
        let at = id_at(mid);
        match at.cmp(&id[..]) {
            std::cmp::Ordering::Equal => return Some(mid),
            std::cmp::Ordering::Less => {
                lo = mid + 1;
                lo_key = key(at);
            }
            std::cmp::Ordering::Greater => {
                hi = mid;
                hi_key = key(at);
            }
        }
    }
    (lo..hi).find(|&at| id_at(at) == &id[..])
}

/// What a lookup in the big index found.
pub(crate) enum Found {
    /// The blob's content is in the buffer given.
    Blob,
    /// Not there, or not a whole blob: read it through gix.
    Elsewhere,
}

impl Big {
    /// Opens the big index of the pack directory `dir`, if it has one.
    pub(crate) fn open(dir: &Path) -> Option<Big> {
        let hash = gix::hash::Kind::Sha1;
        let midx = dir.join("multi-pack-index");
        if let Some(stamp) = crate::file_stamp(&midx) {
            let m = multi_index::File::at(&midx, None).ok()?;
            if m.num_objects() < BIG_MIN || m.object_hash() != hash {
                return None;
            }
            let packs = m
                .index_names()
                .iter()
                .map(|n| (dir.join(n).with_extension("pack"), OnceLock::new()))
                .collect();
            return Some(Big {
                source: (midx, stamp),
                stale: false.into(),
                index: Index::Multi(m),
                packs,
                lookups: AtomicU32::new(0),
                buckets: OnceLock::new(),
            });
        }
        // No multi-pack index: the largest pack's own, if it is big.
        let mut best: Option<(u64, PathBuf)> = None;
        for e in std::fs::read_dir(dir).ok()?.flatten() {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "idx") {
                let len = e.metadata().map_or(0, |m| m.len());
                if best.as_ref().is_none_or(|(l, _)| len > *l) {
                    best = Some((len, path));
                }
            }
        }
        let (_, path) = best?;
        let stamp = crate::file_stamp(&path)?;
        let i = index::File::at(&path, hash).ok()?;
        if i.num_objects() < BIG_MIN {
            return None;
        }
        let pack = path.with_extension("pack");
        Some(Big {
            source: (path, stamp),
            stale: false.into(),
            index: Index::Single(i),
            packs: vec![(pack, OnceLock::new())],
            lookups: AtomicU32::new(0),
            buckets: OnceLock::new(),
        })
    }

    /// The pack and offset of `id`, if the index has it.
    fn find(&self, id: &[u8; 20]) -> Option<(usize, u64)> {
        let index = &self.index;
        let range = match self.buckets.get() {
            Some(b) => b.range(id),
            // The buckets cost a pass over the ids: built once the lookups made without
            // them have cost about as much (a lookup's probes against a sequential read
            // of 64 ids).
            None if self.lookups.fetch_add(1, Ordering::Relaxed) >= index.len() / 64 => {
                self.buckets.get_or_init(|| Buckets::of(index)).range(id)
            }
            None => (0, index.len(), 0, u64::MAX),
        };
        let at = find(range, |at| index.id(at), id)?;
        index.place(at)
    }

    /// Reads blob `id` into `out` when the big index's packs hold it, whole or as a delta
    /// within its pack.
    pub(crate) fn blob(&self, id: &[u8; 20], scratch: &mut Scratch, out: &mut Vec<u8>) -> Found {
        use data::entry::Header;
        let Some((pack, offset)) = self.find(id) else {
            return Found::Elsewhere;
        };
        let Some((path, file)) = self.packs.get(pack) else {
            return Found::Elsewhere;
        };
        let Some(file) = file.get_or_init(|| open_pack(path, pack)).as_ref() else {
            self.stale.store(true, Ordering::Relaxed);
            return Found::Elsewhere;
        };
        let Ok(entry) = file.entry(offset) else {
            return Found::Elsewhere;
        };
        let mut never = cache::Never;
        let bases: &mut dyn cache::DecodeEntry = match entry.header {
            Header::Blob if entry.decompressed_size <= BLOB_MAX => &mut never,
            // As gix reads them: a cache of the bases decoded, capped in bytes.
            Header::OfsDelta { .. } | Header::RefDelta { .. } => {
                scratch.bases.get_or_insert_with(|| {
                    Box::new(cache::lru::MemoryCappedHashmap::new(
                        crate::DELTA_BASE_CACHE_BYTES,
                    ))
                })
            }
            _ => return Found::Elsewhere,
        };
        // A base named by id (not by offset in the pack) is left to gix.
        let inflate = scratch
            .inflate
            .get_or_insert_with(gix::zlib::Inflate::default);
        match file.decode_entry(entry, out, inflate, &|_, _| Ok(None), bases) {
            Ok(o) if o.kind == gix::objs::Kind::Blob => Found::Blob,
            _ => Found::Elsewhere,
        }
    }
}

/// Maps pack `path`, the `pack`th its index names, if it is the pack its name says (a
/// pack is named by its checksum).
fn open_pack(path: &Path, pack: usize) -> Option<data::File> {
    let mut file = data::File::at(path, gix::hash::Kind::Sha1)
        .ok()?
        .with_alloc_limit_bytes(Some(ALLOC_MAX));
    let name = path.file_stem()?.to_str()?.strip_prefix("pack-")?;
    if gix::ObjectId::from_hex(name.as_bytes()).ok()? != file.checksum() {
        return None;
    }
    // The delta bases' cache tells packs apart by this id (by default a checksum of the
    // path): the place in the index cannot collide.
    file.id = u32::try_from(pack).ok()?;
    Some(file)
}

/// A reader's own state for reading through the big index: its inflater, made at its first
/// read (a reader of a short page may read nothing there), and the cache of delta bases,
/// made when the first delta is read.
#[derive(Default)]
pub(crate) struct Scratch {
    inflate: Option<gix::zlib::Inflate>,
    bases: Option<Box<cache::lru::MemoryCappedHashmap>>,
}

/// The big index as last opened, with the stamp of the pack directory then.
pub(crate) type Cached = Option<(FileStamp, Option<Arc<Big>>)>;

/// The big index of `dir` now: `cached` while the directory is unchanged, or changed
/// without touching the index file it came from (a pack added beside it); else opened
/// anew (and cached). One whose pack could not be opened is opened anew.
pub(crate) fn current(dir: &Path, cached: &mut Cached) -> Option<Arc<Big>> {
    let stamp = crate::file_stamp(dir)?;
    if let Some((s, big)) = cached {
        let usable = big
            .as_ref()
            .is_none_or(|b| !b.stale.load(Ordering::Relaxed));
        if *s == stamp && usable {
            return big.clone();
        }
        if let Some(b) = big
            && usable
            && b.still_there(dir)
        {
            *s = stamp;
            return Some(b.clone());
        }
    }
    let big = Big::open(dir).map(Arc::new);
    *cached = Some((stamp, big.clone()));
    big
}

impl Big {
    /// Whether the index file it was opened from is still the one to use: unchanged, and
    /// for a pack's own index, no multi-pack index written since.
    fn still_there(&self, dir: &Path) -> bool {
        let (path, stamp) = &self.source;
        crate::file_stamp(path).as_ref() == Some(stamp)
            && (matches!(self.index, Index::Multi(_)) || !dir.join("multi-pack-index").exists())
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::cast_possible_truncation,
        reason = "tests"
    )]
    use std::cell::Cell;

    use super::*;

    fn sha1(n: u64) -> [u8; 20] {
        use sha1::Digest as _;
        sha1::Sha1::digest(n.to_le_bytes()).into()
    }

    /// Searches `ids` (sorted) as a big index is searched without buckets; returns the
    /// position found and the probes made.
    fn search(ids: &[[u8; 20]], id: &[u8; 20]) -> (Option<u32>, u32) {
        let probes = Cell::new(0);
        let at = find(
            (0, ids.len() as u32, 0, u64::MAX),
            |at| {
                probes.set(probes.get() + 1);
                &ids[at as usize][..]
            },
            id,
        );
        (at, probes.get())
    }

    #[test]
    fn evenly_spread_ids_are_found_in_a_few_probes_and_absent_ones_are_not() {
        let mut ids: Vec<[u8; 20]> = (0..200_000).map(sha1).collect();
        ids.sort_unstable();
        let mut total = 0u64;
        for (i, id) in ids.iter().enumerate() {
            let (at, probes) = search(&ids, id);
            assert_eq!(at, Some(i as u32));
            total += u64::from(probes);
        }
        // Bisection takes 18 probes here; interpolation three or four, then at most eight
        // side by side.
        let mean = total as f64 / ids.len() as f64;
        assert!(mean < 8.0, "{mean} probes on average");
        for n in 200_000..210_000 {
            assert_eq!(search(&ids, &sha1(n)).0, None);
        }
        assert_eq!(search(&ids, &[0; 20]).0, None);
        assert_eq!(search(&ids, &[0xff; 20]).0, None);
        assert_eq!(search(&[], &ids[0]).0, None);
        assert_eq!(search(&ids[..1], &ids[0]).0, Some(0));
    }

    /// Ids chosen to share their leading bytes (anyone who writes objects can grind for
    /// that) make interpolation useless; the search still ends within bisection's probes
    /// and a few more.
    #[test]
    fn clustered_ids_cost_at_most_a_few_probes_beyond_bisection() {
        for shared in [2usize, 8, 12] {
            let mut ids: Vec<[u8; 20]> = (0..100_000u64)
                .map(|n| {
                    let mut id = sha1(n);
                    id[..shared].fill(0x5a);
                    id
                })
                .collect();
            // A few outliers at both ends stretch the range interpolation works from.
            ids.push([0; 20]);
            ids.push([0xff; 20]);
            ids.sort_unstable();
            ids.dedup();
            let bound = INTERPOLATED + (ids.len() as f64).log2().ceil() as u32 + 9;
            for (i, id) in ids.iter().enumerate().step_by(7) {
                let (at, probes) = search(&ids, id);
                assert_eq!(at, Some(i as u32));
                assert!(
                    probes <= bound,
                    "{probes} probes with {shared} bytes shared"
                );
            }
        }
    }

    /// An index whose ids are out of order (damaged) never yields another id's position.
    #[test]
    fn an_unsorted_table_yields_no_wrong_position() {
        let ids: Vec<[u8; 20]> = (0..5_000).map(sha1).collect();
        for (i, id) in ids.iter().enumerate() {
            if let (Some(at), _) = search(&ids, id) {
                assert_eq!(at, i as u32);
            }
        }
    }

    #[test]
    fn buckets_cover_every_id() {
        let mut ids: Vec<[u8; 20]> = (0..70_000).map(sha1).collect();
        ids.sort_unstable();
        for bits in [8, 14, 18] {
            let buckets = Buckets::build(bits, ids.len() as u32, |at| &ids[at as usize][..]);
            for (i, id) in ids.iter().enumerate() {
                let range = buckets.range(id);
                assert!(range.0 <= i as u32 && (i as u32) < range.1);
                assert!(range.2 <= key(id) && key(id) <= range.3);
                assert_eq!(find(range, |at| &ids[at as usize][..], id), Some(i as u32));
            }
        }
    }

    /// Blob ids and their bytes.
    type Blobs = Vec<(gatos_types::Oid, Vec<u8>)>;

    /// A repository of `n` commits, each with a tree and a JSON blob much like the others,
    /// written by gatos as one pack, referenced by a branch and repacked by git with `args`.
    /// Returns the repository and each commit's blob id and bytes.
    fn repacked(
        n: u32,
        args: &[&str],
    ) -> gatos_testutil::TestResult<(gatos_testutil::TempRepo, Blobs)> {
        let repo = gatos_testutil::TempRepo::bare()?;
        let blobs = more_commits(&repo, 0, n)?;
        repo.git(args)?;
        Ok((repo, blobs))
    }

    /// Adds commits `from..to` (as [`repacked`] makes them) on top of the branch, as one
    /// pack written by gatos; returns their blobs.
    fn more_commits(
        repo: &gatos_testutil::TempRepo,
        from: u32,
        to: u32,
    ) -> gatos_testutil::TestResult<Blobs> {
        use crate::objects::{NewCommit, Objects as _};
        let store = crate::Store::open(repo.path())?;
        let mut tip = store.resolve_commit("refs/heads/main").ok();
        let mut w = store.pack_writer();
        let mut blobs = Vec::new();
        for i in from..to {
            let bytes = format!(
                "{{\"seq\":{i},\"topic\":\"orders\",\"payload\":\"{}\"}}",
                "order placed by a customer ".repeat(8)
            )
            .into_bytes();
            let b = w.blob(&bytes)?;
            let t = w.files(&[("envelope.json", b)])?;
            let parents: Vec<_> = tip.into_iter().collect();
            tip = Some(w.commit(&NewCommit {
                tree: t,
                parents: &parents,
                message: &format!("{i}\n"),
                time: gatos_types::Timestamp::from_millis(0),
            })?);
            blobs.push((b, bytes));
        }
        drop(w.finish()?);
        let tip = tip.ok_or("no commits")?.to_string();
        repo.git(&["update-ref", "refs/heads/main", &tip])?;
        Ok(blobs)
    }

    /// Reads every blob of `blobs` through `big`, requiring each found with its bytes;
    /// returns the packs (places in the index's list) they were found in.
    fn read_all(big: &Big, blobs: &Blobs) -> gatos_testutil::TestResult<Vec<usize>> {
        let mut scratch = Scratch::default();
        let mut out = Vec::new();
        let mut packs = Vec::new();
        for (i, (id, bytes)) in blobs.iter().enumerate() {
            let (pack, _) = big.find(id.as_bytes()).ok_or("not in the index")?;
            assert!(
                matches!(big.blob(id.as_bytes(), &mut scratch, &mut out), Found::Blob),
                "blob {i} {id} not read through the big index"
            );
            assert_eq!(&out, bytes, "blob {i}");
            if !packs.contains(&pack) {
                packs.push(pack);
            }
        }
        Ok(packs)
    }

    fn pack_dir(repo: &gatos_testutil::TempRepo) -> PathBuf {
        repo.git_dir().join("objects").join("pack")
    }

    /// After git packs everything whole into one pack (with a multi-pack index or
    /// without), every blob is found in the big index with its bytes; trees, commits
    /// and ids it does not hold are left to gix; the buckets come once enough lookups
    /// were made, and lookups give the same answers before and after.
    #[test]
    fn a_big_index_finds_every_whole_blob_and_leaves_the_rest() -> gatos_testutil::TestResult {
        for args in [
            &["repack", "-a", "-d", "-q", "--window=0", "--write-midx"][..],
            &["repack", "-a", "-d", "-q", "--window=0"][..],
        ] {
            let (repo, blobs) = repacked(17_000, args)?;
            let dir = pack_dir(&repo);
            assert_eq!(
                dir.join("multi-pack-index").exists(),
                args.contains(&"--write-midx")
            );
            let big = Big::open(&dir).ok_or("no big index after the repack")?;
            assert!(big.index.len() >= BIG_MIN, "{} objects", big.index.len());
            let mut scratch = Scratch::default();
            let mut out = Vec::new();
            for (i, (id, bytes)) in blobs.iter().enumerate() {
                assert!(
                    matches!(big.blob(id.as_bytes(), &mut scratch, &mut out), Found::Blob),
                    "blob {i} {id} not found whole ({args:?})"
                );
                assert_eq!(&out, bytes, "blob {i}");
            }
            assert!(big.buckets.get().is_some(), "the buckets were built");
            let store = crate::Store::open(repo.path())?;
            let mut reader = store.reader();
            let tip = store.resolve_commit("refs/heads/main")?;
            let c = reader.commit(tip)?;
            for other in [tip, c.tree] {
                assert!(matches!(
                    big.blob(other.as_bytes(), &mut scratch, &mut out),
                    Found::Elsewhere
                ));
            }
            for n in 0..1_000 {
                assert!(matches!(
                    big.blob(&sha1(n), &mut scratch, &mut out),
                    Found::Elsewhere
                ));
            }
        }
        Ok(())
    }

    /// Blobs git stored as deltas are read through the big index too (their bases in the
    /// same pack), and a bulk reader reads every blob as the plain reader does; it reports
    /// a missing object and an object of another kind as the plain reader does.
    #[test]
    fn a_bulk_reader_reads_what_the_reader_reads() -> gatos_testutil::TestResult {
        let (repo, blobs) = repacked(17_000, &["repack", "-a", "-d", "-f", "-q", "--write-midx"])?;
        let big = Big::open(&pack_dir(&repo)).ok_or("no big index after the repack")?;
        let mut scratch = Scratch::default();
        let mut out = Vec::new();
        let mut deltas = 0;
        for (id, bytes) in &blobs {
            let (pack, offset) = big.find(id.as_bytes()).ok_or("not in the index")?;
            assert!(matches!(
                big.blob(id.as_bytes(), &mut scratch, &mut out),
                Found::Blob
            ));
            assert_eq!(&out, bytes);
            let file = big.packs[pack]
                .1
                .get()
                .and_then(Option::as_ref)
                .ok_or("no pack")?;
            deltas += usize::from(!matches!(
                file.entry(offset)?.header,
                data::entry::Header::Blob
            ));
        }
        assert!(deltas > blobs.len() / 2, "git made {deltas} deltas");
        let store = crate::Store::open(repo.path())?;
        let mut bulk = store.bulk_reader();
        assert!(bulk.has_big_index(), "the bulk reader has no big index");
        let mut plain = store.reader();
        let mut a = Vec::new();
        let mut b = Vec::new();
        for (id, bytes) in &blobs {
            bulk.blob_into(*id, &mut a)?;
            plain.blob_into(*id, &mut b)?;
            assert_eq!(&a, bytes);
            assert_eq!(&b, bytes);
        }
        // An object written loose after the repack.
        let loose = store.write_blob(b"written after the repack")?;
        bulk.blob_into(loose, &mut a)?;
        assert_eq!(a, b"written after the repack");
        let missing = gatos_types::Oid::from_bytes(sha1(1 << 40));
        let tip = store.resolve_commit("refs/heads/main")?;
        for id in [missing, tip] {
            let (x, y) = (bulk.blob(id), plain.blob(id));
            assert!(x.is_err(), "{id} read as a blob");
            assert_eq!(format!("{x:?}"), format!("{y:?}"));
        }
        Ok(())
    }

    /// A pack directory with no big index gives none. The big index is kept while its file
    /// is unchanged, also when a pack is added beside it, and opened anew when a repack
    /// replaces it. A pack it had mapped still reads after the repack removed its files; a
    /// pack it had not mapped yet is left to gix, and the next bulk reader opens the
    /// index anew.
    #[test]
    fn the_big_index_follows_its_file() -> gatos_testutil::TestResult {
        let (repo, _) = repacked(2_000, &["repack", "-a", "-d", "-q", "--window=0"])?;
        let mut cached = None;
        assert!(
            current(&pack_dir(&repo), &mut cached).is_none(),
            "6,000 objects are not big"
        );
        let (repo, blobs) = repacked(17_000, &["repack", "-a", "-d", "-q", "--window=0"])?;
        let dir = pack_dir(&repo);
        let first = current(&dir, &mut cached).ok_or("no big index")?;
        let again = current(&dir, &mut cached).ok_or("no big index")?;
        assert!(
            Arc::ptr_eq(&first, &again),
            "opened again though nothing changed"
        );
        // A pack beside it (a batch publish) changes the directory, not the index.
        let more = more_commits(&repo, 17_000, 17_100)?;
        let beside = current(&dir, &mut cached).ok_or("no big index")?;
        assert!(
            Arc::ptr_eq(&first, &beside),
            "opened again for a pack beside it"
        );
        // Map the pack through `first`; `unmapped` opened the index but read nothing.
        read_all(&first, &blobs[..10].to_vec())?;
        let unmapped = Big::open(&dir).ok_or("no big index")?;
        let old_pack = first.packs[0].0.clone();
        repo.git(&["repack", "-a", "-d", "-q", "--window=0", "--write-midx"])?;
        assert!(!old_pack.exists(), "the repack kept {}", old_pack.display());
        // The mapping still answers; the index it came from is gone, so it is not reused.
        read_all(&first, &blobs[100..200].to_vec())?;
        let next = current(&dir, &mut cached).ok_or("no big index")?;
        assert!(
            !Arc::ptr_eq(&first, &next),
            "kept past the repack that replaced it"
        );
        assert!(matches!(next.index, Index::Multi(_)));
        read_all(&next, &more)?;
        // A pack that is gone before it was mapped: left to gix, and the index is stale.
        let mut scratch = Scratch::default();
        let mut out = Vec::new();
        let (id, _) = &blobs[5];
        assert!(matches!(
            unmapped.blob(id.as_bytes(), &mut scratch, &mut out),
            Found::Elsewhere
        ));
        assert!(unmapped.stale.load(Ordering::Relaxed));
        Ok(())
    }

    /// A multi-pack index over several packs: each blob is read from the pack the index
    /// names for it, with its bytes.
    #[test]
    fn a_multi_pack_index_over_several_packs_reads_from_each() -> gatos_testutil::TestResult {
        let (repo, mut blobs) = repacked(
            17_000,
            &["repack", "-a", "-d", "-q", "--window=0", "--write-midx"],
        )?;
        blobs.extend(more_commits(&repo, 17_000, 19_000)?);
        blobs.extend(more_commits(&repo, 19_000, 21_000)?);
        repo.git(&["multi-pack-index", "write"])?;
        let big = Big::open(&pack_dir(&repo)).ok_or("no big index")?;
        assert!(matches!(big.index, Index::Multi(_)));
        assert_eq!(
            big.packs.len(),
            3,
            "{:?}",
            big.packs.iter().map(|p| &p.0).collect::<Vec<_>>()
        );
        let mut packs = read_all(&big, &blobs)?;
        packs.sort_unstable();
        assert_eq!(packs, vec![0, 1, 2], "blobs were found in packs {packs:?}");
        Ok(())
    }
}
