//! Digests: rows, tables, the ref state and the Explorer-Root (DESIGN §9, ADR 0016).

use gatos_types::Oid;
use serde::{Deserialize, Serialize};

/// The exporter version: it enters the Explorer-Root, so a change of schema or canonical
/// forms changes every root.
pub const EXPORTER_VERSION: &str = "gatos-export/1";

/// Formats a digest as `blake3:<hex>`.
pub fn digest_text(d: &[u8; 32]) -> String {
    format!("blake3:{}", blake3::Hash::from_bytes(*d).to_hex())
}

/// Parses `blake3:<hex>`.
pub fn parse_digest(s: &str) -> Option<[u8; 32]> {
    let hex = s.strip_prefix("blake3:")?;
    blake3::Hash::from_hex(hex).ok().map(|h| *h.as_bytes())
}

/// A table digest in the making: the row digests, sorted at the end.
#[derive(Debug, Default, Clone)]
pub struct TableDigest {
    rows: Vec<[u8; 32]>,
}

impl TableDigest {
    /// Starts from earlier row digests (an incremental export).
    pub fn from_rows(rows: Vec<[u8; 32]>) -> TableDigest {
        TableDigest { rows }
    }

    /// Adds a row digest.
    pub fn push(&mut self, d: [u8; 32]) {
        self.rows.push(d);
    }

    /// Rows so far.
    pub fn len(&self) -> u64 {
        self.rows.len() as u64
    }

    /// True before the first row.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Removes one occurrence of each digest of `gone` (rows an incremental export
    /// replaces).
    pub fn remove(&mut self, gone: &[[u8; 32]]) {
        if gone.is_empty() {
            return;
        }
        let mut gone: Vec<[u8; 32]> = gone.to_vec();
        gone.sort_unstable();
        self.rows.sort_unstable();
        let mut out = Vec::with_capacity(self.rows.len());
        let mut g = gone.iter().peekable();
        for r in self.rows.drain(..) {
            while g.peek().is_some_and(|x| **x < r) {
                g.next();
            }
            if g.peek() == Some(&&r) {
                g.next();
                continue;
            }
            out.push(r);
        }
        self.rows = out;
    }

    /// The table digest: blake3 over the concatenated row digests in ascending byte order.
    pub fn finish(&mut self) -> [u8; 32] {
        self.rows.sort_unstable();
        let mut h = blake3::Hasher::new();
        for r in &self.rows {
            h.update(r);
        }
        *h.finalize().as_bytes()
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
    fn table_digest_is_order_independent_and_removal_is_exact() {
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
        assert_eq!(one.finish(), two.finish());
        one.remove(&[b]);
        let mut three = TableDigest::from_rows(vec![c, b, a]);
        assert_eq!(one.finish(), three.finish());
        assert_eq!(one.len(), 3);
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
