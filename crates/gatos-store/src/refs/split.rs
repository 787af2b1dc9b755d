//! Listing refs in two parts (ADR 0044, "As built, third pass"): the loose refs, read
//! every time, and the `packed-refs` records, parsed once per `packed-refs` file and reused
//! while that file is still the one at the path.
//!
//! Why reusing the records is exact: git, gix and gatos never change `packed-refs` in
//! place; each writes `packed-refs.lock` and renames it over the old file, which gives the
//! path another inode. [`PackedRecords`] keeps the file it parsed open, so its inode
//! cannot be given to another file while the records are kept; a `packed-refs` whose
//! device and inode (and size and modification time) are the kept file's is that file,
//! with those bytes. A listing is still what [`Store::list_refs`] gives: loose refs over
//! packed ones, and a `packed-refs` that changed while the loose refs were walked makes it
//! list again.

use std::sync::Arc;

use gatos_types::Oid;

use crate::error::{Error, Result};
use crate::{Store, from_gix};

/// What identifies a `packed-refs` file: device, inode, size, modification time.
type Identity = (u64, u64, i64, i64, i64);

fn identity(st: &rustix::fs::Stat) -> Identity {
    (
        st.st_dev,
        st.st_ino,
        st.st_size,
        st.st_mtime,
        i64::try_from(st.st_mtime_nsec).unwrap_or(0),
    )
}

/// The records of one `packed-refs` file under a prefix, sorted by name.
pub struct PackedRecords {
    /// The parsed file, held open (see the module's doc).
    _file: std::fs::File,
    identity: Identity,
    prefix: String,
    /// `(full name, id)`, sorted by name.
    pub refs: Vec<(String, Oid)>,
}

impl std::fmt::Debug for PackedRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedRecords")
            .field("prefix", &self.prefix)
            .field("refs", &self.refs.len())
            .finish_non_exhaustive()
    }
}

/// The refs under a prefix as git resolves them: a loose ref over its packed record.
#[derive(Debug, Clone)]
pub struct SplitListing {
    /// `packed-refs`'s records under the prefix; `None` without a `packed-refs` file.
    pub packed: Option<Arc<PackedRecords>>,
    /// The loose refs under the prefix, sorted by name.
    pub loose: Vec<(String, Oid)>,
}

impl SplitListing {
    /// Whether both listings hold the same `packed-refs` records (the same parse).
    pub fn same_packed(&self, other: &SplitListing) -> bool {
        match (&self.packed, &other.packed) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// Whether both give the same refs.
    pub fn same_refs(&self, other: &SplitListing) -> bool {
        if self.same_packed(other) {
            return self.loose == other.loose;
        }
        self.merged().eq(other.merged())
    }

    /// The value of `name` (full): its loose ref, else its packed record.
    pub fn value(&self, name: &str) -> Option<Oid> {
        let find = |v: &[(String, Oid)]| {
            v.binary_search_by(|(n, _)| n.as_str().cmp(name))
                .ok()
                .map(|i| v[i].1)
        };
        find(&self.loose).or_else(|| self.packed.as_ref().and_then(|p| find(&p.refs)))
    }

    /// Every ref, sorted by name (a loose ref replaces its packed record).
    pub fn merged(&self) -> impl Iterator<Item = (&str, Oid)> + '_ {
        let packed: &[(String, Oid)] = self.packed.as_ref().map_or(&[], |p| &p.refs);
        Merged {
            packed: packed.iter().peekable(),
            loose: self.loose.iter().peekable(),
        }
    }
}

struct Merged<'a> {
    packed: std::iter::Peekable<std::slice::Iter<'a, (String, Oid)>>,
    loose: std::iter::Peekable<std::slice::Iter<'a, (String, Oid)>>,
}

impl<'a> Iterator for Merged<'a> {
    type Item = (&'a str, Oid);

    fn next(&mut self) -> Option<(&'a str, Oid)> {
        use std::cmp::Ordering;
        let order = match (self.packed.peek(), self.loose.peek()) {
            (None, None) => return None,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(p), Some(l)) => p.0.as_bytes().cmp(l.0.as_bytes()),
        };
        let (n, o) = match order {
            Ordering::Less => self.packed.next()?,
            Ordering::Greater => self.loose.next()?,
            Ordering::Equal => {
                // The loose ref wins over its packed record.
                self.packed.next();
                self.loose.next()?
            }
        };
        Some((n.as_str(), *o))
    }
}

impl Store {
    /// Lists the refs under `prefix` as [`Store::list_refs`] does, in two parts, reusing
    /// `cached` records when `packed-refs` is still the file they were parsed from (see the
    /// module's doc); the answer's records are to be passed as `cached` next time.
    ///
    /// # Errors
    /// [`Error::Git`] when the refs cannot be read.
    pub fn list_refs_split(
        &self,
        prefix: &str,
        cached: Option<&Arc<PackedRecords>>,
    ) -> Result<SplitListing> {
        self.before_listing(prefix)?;
        super::listed_again(prefix, || self.list_refs_split_once(prefix, cached))
    }

    fn list_refs_split_once(
        &self,
        prefix: &str,
        cached: Option<&Arc<PackedRecords>>,
    ) -> std::result::Result<SplitListing, (Error, bool)> {
        let failed = |context: String, message: String, vanished: bool| {
            (Error::Git { context, message }, vanished)
        };
        let path = self.common_dir().join("packed-refs");
        let stat = || rustix::fs::stat(&path).ok().map(|s| identity(&s));
        let before = stat();
        let mut loose = Vec::new();
        self.walk_loose(prefix, |name, id| {
            loose.push((String::from_utf8_lossy(name).into_owned(), id));
        })?;
        loose.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let packed = match before {
            None => None,
            Some(id) => match cached {
                Some(c) if c.identity == id && c.prefix == prefix => Some(c.clone()),
                _ => Some(Arc::new(
                    read_packed(&path, prefix, id)
                        .map_err(|(m, v)| failed("reading packed-refs".into(), m, v))?,
                )),
            },
        };
        if stat() != before {
            return Err(failed(
                format!("listing refs under {prefix}"),
                "packed-refs changed while listing".into(),
                true,
            ));
        }
        Ok(SplitListing { packed, loose })
    }
}

/// Parses the `packed-refs` at `path` (which must be the file `want` identifies) under
/// `prefix`. The error says whether the file changed meanwhile (list again).
fn read_packed(
    path: &std::path::Path,
    prefix: &str,
    want: Identity,
) -> std::result::Result<PackedRecords, (String, bool)> {
    use std::io::Read as _;
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(("packed-refs vanished while listing".into(), true));
        }
        Err(e) => return Err((e.to_string(), false)),
    };
    let st = rustix::fs::fstat(&file).map_err(|e| (e.to_string(), false))?;
    if identity(&st) != want {
        return Err(("packed-refs changed while listing".into(), true));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(st.st_size).unwrap_or(0));
    file.read_to_end(&mut bytes)
        .map_err(|e| (e.to_string(), false))?;
    let mut refs = Vec::new();
    if !bytes.is_empty() {
        let buffer = gix::refs::packed::Buffer::from_bytes(&bytes, gix::hash::Kind::Sha1)
            .map_err(|e| (e.to_string(), false))?;
        let records = buffer
            .iter_prefixed(prefix.into())
            .map_err(|e| (e.to_string(), false))?;
        for r in records {
            let r = r.map_err(|e| (e.to_string(), false))?;
            refs.push((r.name.as_bstr().to_string(), from_gix(&r.target())));
        }
    }
    // Byte order of the names (the file's order, checked rather than assumed).
    if !refs.is_sorted_by(|a, b| a.0.as_bytes() <= b.0.as_bytes()) {
        refs.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    }
    Ok(PackedRecords {
        _file: file,
        identity: want,
        prefix: prefix.to_owned(),
        refs,
    })
}
