//! Digests: rows, tables, the ref state and the Explorer-Root (DESIGN §9, ADR 0016).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};

use gatos_types::Oid;
use serde::{Deserialize, Serialize};

/// The exporter version this exporter writes: it enters the Explorer-Root, so a change of
/// schema, canonical forms or what the filter spec holds changes every root.
pub const EXPORTER_VERSION: &str = Version::CURRENT.as_str();

/// The exporter versions this exporter verifies. They share the canonical forms and the
/// digests; they differ in when `as_of` is in the filter spec (1 and 2), and in the
/// `results.reason` column and what `attempts.outcome` says (2 and 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `gatos-export/1` (ADR 0016): `as_of` is in the spec exactly when a job table
    /// (`jobs`, `attempts`, `results`) is exported.
    V1,
    /// `gatos-export/2` (ADR 0024): `as_of` is in the spec exactly when an exported job
    /// has neither a result nor a cancel, so that the root of finished work does not
    /// depend on the moment of export.
    V2,
    /// `gatos-export/3` (ADR 0029): `as_of` as in 2; `results` has a `reason` column (the
    /// end reason as JSON), and `attempts.outcome` tells `timeout`, `lost`, `cancelled`
    /// and `signal` apart on every attempt (2 said `failed` for a last attempt's timeout,
    /// lost lease or signal).
    V3,
}

impl Version {
    /// The version new exports are written with.
    pub const CURRENT: Version = Version::V3;

    /// Every version this exporter verifies, oldest first.
    pub const ALL: [Version; 3] = [Version::V1, Version::V2, Version::V3];

    /// Its name, as the manifest's `exporter` and the root's last field spell it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Version::V1 => "gatos-export/1",
            Version::V2 => "gatos-export/2",
            Version::V3 => "gatos-export/3",
        }
    }

    /// Parses a manifest's `exporter`; `None` for a version this exporter does not know.
    pub fn parse(s: &str) -> Option<Version> {
        Version::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Formats a digest as `blake3:<hex>`.
pub fn digest_text(d: &[u8; 32]) -> String {
    format!("blake3:{}", blake3::Hash::from_bytes(*d).to_hex())
}

/// Parses `blake3:<hex>`.
pub fn parse_digest(s: &str) -> Option<[u8; 32]> {
    let hex = s.strip_prefix("blake3:")?;
    blake3::Hash::from_hex(hex).ok().map(|h| *h.as_bytes())
}

/// Row digests held in memory before a sorted run of them goes to a temporary file
/// (2 MiB): a table digest needs bounded memory however many rows the table has.
pub const RUN_ROWS: usize = 1 << 16;

/// Bytes of row digests hashed at a time.
const HASH_CHUNK: usize = 64 << 10;

/// A stream of row digests in ascending byte order.
pub type Sorted<'a> = Box<dyn Iterator<Item = io::Result<[u8; 32]>> + 'a>;

/// Reads a file of concatenated 32-byte digests from its start.
///
/// # Errors
/// When the file cannot be rewound.
pub fn read_run<'a>(mut f: File) -> io::Result<Sorted<'a>> {
    f.seek(SeekFrom::Start(0))?;
    let mut r = BufReader::with_capacity(64 << 10, f);
    Ok(Box::new(std::iter::from_fn(move || {
        let mut d = [0u8; 32];
        match r.read_exact(&mut d) {
            Ok(()) => Some(Ok(d)),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => None,
            Err(e) => Some(Err(e)),
        }
    })))
}

/// Merges sorted streams into one sorted stream (duplicates kept).
pub fn merge<'a>(sources: Vec<Sorted<'a>>) -> Sorted<'a> {
    let mut sources = sources;
    if sources.len() == 1
        && let Some(one) = sources.pop()
    {
        return one;
    }
    let mut heap: BinaryHeap<Reverse<([u8; 32], usize)>> = BinaryHeap::new();
    let mut failed: Option<io::Error> = None;
    for (i, s) in sources.iter_mut().enumerate() {
        match s.next() {
            Some(Ok(d)) => heap.push(Reverse((d, i))),
            Some(Err(e)) => failed = failed.or(Some(e)),
            None => {}
        }
    }
    Box::new(std::iter::from_fn(move || {
        if let Some(e) = failed.take() {
            return Some(Err(e));
        }
        let Reverse((d, i)) = heap.pop()?;
        match sources[i].next() {
            Some(Ok(n)) => heap.push(Reverse((n, i))),
            Some(Err(e)) => failed = Some(e),
            None => {}
        }
        Some(Ok(d))
    }))
}

/// The row count and table digest of the multiset `added` less `removed` (one occurrence
/// per removed digest; a digest never added is ignored): blake3 over the remaining row
/// digests in ascending byte order. `keep` sees each remaining digest in that order.
///
/// # Errors
/// When a source or `keep` fails.
pub fn digest_of(
    added: Sorted<'_>,
    removed: Sorted<'_>,
    keep: &mut dyn FnMut(&[u8; 32]) -> io::Result<()>,
) -> io::Result<(u64, [u8; 32])> {
    let mut gone = removed.peekable();
    let mut h = blake3::Hasher::new();
    // blake3 is several times faster fed in large pieces than 32 bytes at a time.
    let mut pending: Vec<u8> = Vec::with_capacity(HASH_CHUNK);
    let mut rows = 0u64;
    for d in added {
        let d = d?;
        loop {
            match gone.peek() {
                Some(Ok(g)) if *g < d => {
                    gone.next();
                }
                Some(Err(_)) => {
                    if let Some(Err(e)) = gone.next() {
                        return Err(e);
                    }
                }
                _ => break,
            }
        }
        if matches!(gone.peek(), Some(Ok(g)) if *g == d) {
            gone.next();
            continue;
        }
        pending.extend_from_slice(&d);
        if pending.len() >= HASH_CHUNK {
            h.update(&pending);
            pending.clear();
        }
        keep(&d)?;
        rows += 1;
    }
    h.update(&pending);
    Ok((rows, *h.finalize().as_bytes()))
}

/// A table digest in the making: the row digests, sorted at the end by an external merge
/// sort (sorted runs of [`RUN_ROWS`] in anonymous temporary files, merged when finished).
#[derive(Debug, Default)]
pub struct TableDigest {
    mem: Vec<[u8; 32]>,
    runs: Vec<File>,
    removed: Vec<[u8; 32]>,
    /// The first failure to write a run; the digests stay in memory then, and
    /// [`TableDigest::finish`] reports it.
    error: Option<io::Error>,
}

impl TableDigest {
    /// Adds a row digest.
    pub fn push(&mut self, d: [u8; 32]) {
        self.mem.push(d);
        if self.mem.len() >= RUN_ROWS
            && self.error.is_none()
            && let Err(e) = self.spill()
        {
            self.error = Some(e);
        }
    }

    fn spill(&mut self) -> io::Result<()> {
        self.mem.sort_unstable();
        let mut w = BufWriter::with_capacity(64 << 10, tempfile::tempfile()?);
        for d in &self.mem {
            w.write_all(d)?;
        }
        let f = w.into_inner().map_err(io::IntoInnerError::into_error)?;
        self.runs.push(f);
        self.mem.clear();
        Ok(())
    }

    /// Removes one occurrence of each digest of `gone` (rows an incremental export
    /// replaces); a digest that was never added is ignored.
    pub fn remove(&mut self, gone: &[[u8; 32]]) {
        self.removed.extend_from_slice(gone);
    }

    /// The digests added, sorted; consumes them.
    ///
    /// # Errors
    /// When a temporary run could not be written or read back.
    pub fn take_added(&mut self) -> io::Result<Sorted<'static>> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let mut mem = std::mem::take(&mut self.mem);
        mem.sort_unstable();
        let mut sources: Vec<Sorted<'static>> = Vec::new();
        for f in self.runs.drain(..) {
            sources.push(read_run(f)?);
        }
        sources.push(Box::new(mem.into_iter().map(Ok)));
        Ok(merge(sources))
    }

    /// The digests removed, sorted; consumes them.
    pub fn take_removed(&mut self) -> Vec<[u8; 32]> {
        let mut removed = std::mem::take(&mut self.removed);
        removed.sort_unstable();
        removed
    }

    /// The row count and the table digest: blake3 over the concatenated row digests in
    /// ascending byte order. Consumes what was added.
    ///
    /// # Errors
    /// When a temporary run could not be written or read back.
    pub fn finish(&mut self) -> io::Result<(u64, [u8; 32])> {
        let added = self.take_added()?;
        let removed = self.take_removed();
        digest_of(
            added,
            Box::new(removed.into_iter().map(Ok)),
            &mut |_| Ok(()),
        )
    }
}

/// The ref-state digest: blake3 over `name || raw oid` of every exported ref, sorted by
/// name (byte order).
pub fn ref_state_digest(refs: &[(String, Oid)]) -> [u8; 32] {
    let mut sorted: Vec<&(String, Oid)> = refs.iter().collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut h = blake3::Hasher::new();
    for (name, oid) in sorted {
        h.update(name.as_bytes());
        h.update(oid.as_bytes());
    }
    *h.finalize().as_bytes()
}

/// One table's entry in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableEntry {
    /// Rows exported.
    pub rows: u64,
    /// `blake3:` of the sorted row digests.
    pub digest: String,
}

fn field(h: &mut blake3::Hasher, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    h.update(&len.to_be_bytes());
    h.update(bytes);
}

/// The Explorer-Root: blake3 over `BE32(len) || bytes` fields, in order: the ref-state
/// digest (32 raw bytes), the JCS filter spec, then per table in name order its name, its
/// row count (decimal ASCII) and its digest (32 raw bytes), then the exporter version.
pub fn explorer_root(
    ref_state: &[u8; 32],
    filter_spec_jcs: &[u8],
    tables: &[(String, u64, [u8; 32])],
    exporter_version: &str,
) -> [u8; 32] {
    let mut sorted: Vec<&(String, u64, [u8; 32])> = tables.iter().collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut h = blake3::Hasher::new();
    field(&mut h, ref_state);
    field(&mut h, filter_spec_jcs);
    for (name, rows, digest) in sorted {
        field(&mut h, name.as_bytes());
        field(&mut h, rows.to_string().as_bytes());
        field(&mut h, digest);
    }
    field(&mut h, exporter_version.as_bytes());
    *h.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_digest_is_order_independent_and_removal_is_exact() -> io::Result<()> {
        let a = *blake3::hash(b"a").as_bytes();
        let b = *blake3::hash(b"b").as_bytes();
        let c = *blake3::hash(b"c").as_bytes();
        let mut one = TableDigest::default();
        for d in [a, b, c, b] {
            one.push(d);
        }
        let mut two = TableDigest::default();
        for d in [b, c, a] {
            two.push(d);
        }
        two.push(b);
        let (rows, digest) = two.finish()?;
        assert_eq!(rows, 4);
        one.remove(&[b, *blake3::hash(b"never added").as_bytes()]);
        let mut three = TableDigest::default();
        for d in [c, b, a] {
            three.push(d);
        }
        let removed = one.finish()?;
        assert_eq!(removed, three.finish()?);
        assert_eq!(removed.0, 3);
        assert_ne!(removed.1, digest);
        Ok(())
    }

    #[test]
    fn spilled_runs_digest_as_one_sorted_list() -> io::Result<()> {
        // Several runs on disk plus a partial one in memory, with duplicates across runs.
        let n = RUN_ROWS * 3 + 123;
        let row = |i: usize| *blake3::hash(&(i % (RUN_ROWS + 7)).to_le_bytes()).as_bytes();
        let mut spilled = TableDigest::default();
        for i in 0..n {
            spilled.push(row(i));
        }
        assert_eq!(spilled.runs.len(), 3);
        spilled.remove(&[row(5), row(5)]);
        let mut all: Vec<[u8; 32]> = (0..n).map(row).collect();
        all.sort_unstable();
        let five = all
            .binary_search(&row(5))
            .map_err(|_| io::ErrorKind::NotFound)?;
        all.remove(five);
        let five = all
            .binary_search(&row(5))
            .map_err(|_| io::ErrorKind::NotFound)?;
        all.remove(five);
        let mut h = blake3::Hasher::new();
        for d in &all {
            h.update(d);
        }
        assert_eq!(
            spilled.finish()?,
            (all.len() as u64, *h.finalize().as_bytes())
        );
        Ok(())
    }

    #[test]
    fn versions_round_trip_and_the_version_is_in_the_root() {
        for v in Version::ALL {
            assert_eq!(Version::parse(v.as_str()), Some(v));
        }
        assert_eq!(Version::parse("gatos-export/4"), None);
        assert_eq!(EXPORTER_VERSION, "gatos-export/3");
        let z = [0u8; 32];
        let t = [("jobs".to_owned(), 1, z)];
        assert_ne!(
            explorer_root(&z, b"{}", &t, Version::V1.as_str()),
            explorer_root(&z, b"{}", &t, Version::V2.as_str())
        );
    }

    #[test]
    fn the_root_frames_every_field() {
        let z = [0u8; 32];
        let r1 = explorer_root(&z, b"{}", &[("ab".into(), 1, z)], EXPORTER_VERSION);
        let r2 = explorer_root(&z, b"{}", &[("a".into(), 1, z)], EXPORTER_VERSION);
        assert_ne!(r1, r2);
        let d = parse_digest(&digest_text(&r1));
        assert_eq!(d, Some(r1));
    }
}
