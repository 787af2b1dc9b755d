//! Many refs created or deleted in one rewrite of `packed-refs` (ADR 0044 §1, snapshots).
//!
//! A gix file transaction makes a `.lock` file per ref even when its value goes straight
//! to `packed-refs`: tens of thousands of files for a snapshot of a large ledger. Here the
//! whole change is one new `packed-refs`, written beside the old one as
//! `packed-refs.lock` and renamed over it: every ref appears (or disappears) at once, and
//! a crash leaves either the old file or the new one.
//!
//! Only namespaces gatos owns outright are written this way (`refs/gatos-snapshots/`),
//! under a prefix in which no ref exists (create) or every ref goes (delete).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::Duration;

use gatos_types::Oid;

use super::{PACKED_REFS_FAMILY, PACKED_REFS_LOCK};
use crate::Store;
use crate::error::{Error, Expect, Result};

/// The header git and gix write.
const HEADER: &[u8] = b"# pack-refs with: peeled fully-peeled sorted \n";

impl Store {
    /// Creates every ref of `refs` (full names, all under `prefix`, which ends in `/`) in
    /// one rewrite of `packed-refs`. Nothing may exist under `prefix` yet, loose or
    /// packed: otherwise nothing changes and the error names the ref found.
    ///
    /// # Errors
    /// [`Error::CasMismatch`] when a ref exists under `prefix`; [`Error::Corrupt`] for a
    /// name outside `prefix`; [`Error::Locked`] when `packed-refs.lock` stays held past
    /// `timeout`; I/O failures.
    pub fn create_refs_packed(
        &self,
        prefix: &str,
        refs: &[(String, Oid)],
        timeout: Duration,
    ) -> Result<()> {
        check_prefix(prefix)?;
        if let Some((n, _)) = refs.iter().find(|(n, _)| !n.starts_with(prefix)) {
            return Err(Error::Corrupt {
                what: format!("ref name {n:?}"),
                reason: format!("not under {prefix}"),
            });
        }
        self.rewrite_packed(prefix, timeout, |packed, loose| {
            if let Some((name, oid)) = loose.first() {
                return Err(Error::CasMismatch {
                    name: name.clone(),
                    expected: Expect::Absent,
                    actual: Some(*oid),
                });
            }
            let found = packed
                .range(prefix.as_bytes().to_vec()..)
                .next()
                .filter(|(n, _)| n.starts_with(prefix.as_bytes()))
                .map(|(n, (o, _))| (String::from_utf8_lossy(n).into_owned(), *o));
            if let Some((name, oid)) = found {
                return Err(Error::CasMismatch {
                    name,
                    expected: Expect::Absent,
                    actual: Some(oid),
                });
            }
            for (name, oid) in refs {
                packed.insert(name.as_bytes().to_vec(), (*oid, None));
            }
            Ok(false)
        })
    }

    /// Deletes every ref under `prefix` (which ends in `/`): its packed entries in one
    /// rewrite of `packed-refs`, then its loose files. Returns how many refs went.
    ///
    /// # Errors
    /// [`Error::Locked`] when `packed-refs.lock` stays held past `timeout`; I/O failures.
    pub fn delete_refs_packed(&self, prefix: &str, timeout: Duration) -> Result<usize> {
        check_prefix(prefix)?;
        let mut gone = 0usize;
        self.rewrite_packed(prefix, timeout, |packed, loose| {
            let before = packed.len();
            packed.retain(|n, _| !n.starts_with(prefix.as_bytes()));
            gone = before - packed.len() + loose.len();
            Ok(true)
        })?;
        Ok(gone)
    }

    /// Holds the `packed-refs` family and `packed-refs.lock`, reads `packed-refs` and the
    /// loose refs under `prefix`, lets `edit` change the records, writes the result, and
    /// (when `edit` says so) removes the loose refs under `prefix` once the new file is in
    /// place.
    fn rewrite_packed(
        &self,
        prefix: &str,
        timeout: Duration,
        edit: impl FnOnce(&mut Records, &[(String, Oid)]) -> Result<bool>,
    ) -> Result<()> {
        let _family = self
            .locks()
            .acquire(&[PACKED_REFS_FAMILY.to_owned()], timeout)?;
        let _record = self
            .locks()
            .owners()
            .record(&[PACKED_REFS_LOCK.to_owned()])?;
        let path = self.common_dir().join("packed-refs");
        let mut lock = gix::lock::File::acquire_to_update_resource(
            &path,
            gix::lock::acquire::Fail::AfterDurationWithBackoff(timeout),
            None,
            0,
        )
        .map_err(|_| Error::Locked {
            name: "packed-refs".to_owned(),
        })?;
        let mut records = match std::fs::read(&path) {
            Ok(bytes) => parse(&bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Records::new(),
            Err(e) => return Err(Error::io("reading packed-refs", e)),
        };
        let loose = self.loose_under(prefix)?;
        let remove_loose = edit(&mut records, &loose)?;
        let mut out = Vec::with_capacity(HEADER.len() + records.len() * 90);
        out.extend_from_slice(HEADER);
        for (name, (oid, peeled)) in &records {
            out.extend_from_slice(oid.to_string().as_bytes());
            out.push(b' ');
            out.extend_from_slice(name);
            out.push(b'\n');
            if let Some(p) = peeled {
                out.push(b'^');
                out.extend_from_slice(p.to_string().as_bytes());
                out.push(b'\n');
            }
        }
        let durable = self.is_durable();
        lock.with_mut(|f| {
            f.write_all(&out)?;
            if durable { f.sync_all() } else { Ok(()) }
        })
        .map_err(|e| Error::io("writing packed-refs.lock", e))?;
        lock.commit()
            .map_err(|e| Error::io("renaming packed-refs.lock", e.error))?;
        self.fsync_paths(crate::durability::Step::Refs, std::slice::from_ref(&path))?;
        if remove_loose {
            for (name, _) in &loose {
                match std::fs::remove_file(self.ref_path(name)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(format!("removing {name}"), e)),
                }
            }
            remove_empty_dirs(&self.ref_path(prefix.trim_end_matches('/')));
        }
        // gix caches packed-refs by its modification time, which two rewrites in one
        // clock tick can share.
        let _ = self.handle().refs.force_refresh_packed_buffer();
        Ok(())
    }

    /// The loose refs under `prefix` (files holding an object id; `.lock` files and
    /// anything else skipped).
    fn loose_under(&self, prefix: &str) -> Result<Vec<(String, Oid)>> {
        let mut out = Vec::new();
        let root = self.ref_path(prefix.trim_end_matches('/'));
        let mut stack = vec![(root, prefix.trim_end_matches('/').to_owned())];
        while let Some((dir, name)) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
            };
            for entry in entries {
                let entry =
                    entry.map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
                let Some(file) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                let full = format!("{name}/{file}");
                let path = entry.path();
                if path.is_dir() {
                    stack.push((path, full));
                } else if !file.ends_with(".lock")
                    && let Ok(bytes) = std::fs::read(&path)
                    && let Ok(oid) = std::str::from_utf8(&bytes).unwrap_or("").trim().parse()
                {
                    out.push((full, oid));
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

/// `packed-refs` records by name: the id and the peeled id.
type Records = BTreeMap<Vec<u8>, (Oid, Option<Oid>)>;

fn check_prefix(prefix: &str) -> Result<()> {
    if prefix.starts_with("refs/") && prefix.ends_with('/') && !prefix.contains("..") {
        Ok(())
    } else {
        Err(Error::Corrupt {
            what: format!("ref prefix {prefix:?}"),
            reason: "must start with refs/ and end with /".into(),
        })
    }
}

fn parse(bytes: &[u8]) -> Result<Records> {
    let bad = |line: &[u8]| Error::Corrupt {
        what: "packed-refs".into(),
        reason: format!("unreadable line {:?}", String::from_utf8_lossy(line)),
    };
    let mut out = Records::new();
    let mut last: Option<Vec<u8>> = None;
    for line in bytes.split(|&b| b == b'\n') {
        if line.is_empty() || line.starts_with(b"#") {
            continue;
        }
        let oid = |s: &[u8]| -> Option<Oid> { std::str::from_utf8(s).ok()?.parse().ok() };
        if let Some(p) = line.strip_prefix(b"^") {
            let peeled = oid(p).ok_or_else(|| bad(line))?;
            let name = last.as_ref().ok_or_else(|| bad(line))?;
            if let Some(rec) = out.get_mut(name) {
                rec.1 = Some(peeled);
            }
            continue;
        }
        let sp = line
            .iter()
            .position(|&b| b == b' ')
            .ok_or_else(|| bad(line))?;
        let id = oid(&line[..sp]).ok_or_else(|| bad(line))?;
        let name = line[sp + 1..].to_vec();
        out.insert(name.clone(), (id, None));
        last = Some(name);
    }
    Ok(out)
}

/// Removes `dir` and every directory under it that holds no file (best effort).
fn remove_empty_dirs(dir: &std::path::Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                remove_empty_dirs(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_keeps_peeled_lines_with_their_record() {
        let a = "1".repeat(40);
        let b = "2".repeat(40);
        let text = format!(
            "# pack-refs with: peeled fully-peeled sorted \n{a} refs/tags/v1\n^{b}\n{b} refs/x/y\n"
        );
        let r = parse(text.as_bytes()).expect("parse");
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[b"refs/tags/v1".as_slice()].1.map(|o| o.to_string()),
            Some(b.clone())
        );
        assert_eq!(r[b"refs/x/y".as_slice()].1, None);
    }

    #[test]
    fn prefixes_must_be_whole_namespaces() {
        assert!(check_prefix("refs/gatos-snapshots/a/").is_ok());
        assert!(check_prefix("refs/gatos-snapshots/a").is_err());
        assert!(check_prefix("refs/../x/").is_err());
    }
}
