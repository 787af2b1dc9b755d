//! Batches written as one pack: objects collected in memory, sorted (commits, trees, blobs,
//! then by id — unsorted input made gix-pack's memory use explode, BASELINE pitfall 2), and
//! indexed into `objects/pack/`.
//!
//! The pack keeps its `.keep` file until the [`PackGuard`] is dropped, which the caller does
//! after the ref update that makes its objects reachable: until then no repack may fold or
//! drop it (DESIGN §3). A `.keep` left by a crash names the process; maintenance removes it
//! once it is old (see [`crate::maintenance`]).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use gatos_types::Oid;

use crate::error::{Error, Result};
use crate::objects::{Kind, Objects, hash};
use crate::{Identity, Store, to_gix};

/// The first line of every `.keep` file gatos writes, so maintenance can tell ours apart.
pub const KEEP_MARKER: &str = "gatos batch";

/// Collects objects in memory for one pack.
pub struct PackWriter<'s> {
    store: &'s Store,
    objects: Vec<(Oid, Kind, Vec<u8>)>,
    bytes: usize,
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
}

impl Objects for PackWriter<'_> {
    fn put(&mut self, kind: Kind, data: &[u8]) -> Result<Oid> {
        let id = hash(kind, data);
        self.bytes += data.len();
        self.objects.push((id, kind, data.to_vec()));
        Ok(id)
    }

    fn identity(&self) -> &Identity {
        self.store.identity()
    }
}

impl PackWriter<'_> {
    /// [`Objects::put`] of bytes the caller gives up: they are kept without a copy.
    ///
    /// # Errors
    /// None today; the signature matches [`Objects::put`].
    pub fn put_owned(&mut self, kind: Kind, data: Vec<u8>) -> Result<Oid> {
        let id = hash(kind, &data);
        self.bytes += data.len();
        self.objects.push((id, kind, data));
        Ok(id)
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
        self.objects
            .sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
        self.objects.dedup_by(|a, b| a.0 == b.0);
        let count = self.objects.len();
        if count == 0 {
            return Ok(PackGuard {
                keep: None,
                pack: None,
                objects: 0,
            });
        }
        let hash_kind = gix::hash::Kind::Sha1;
        let git = |context: &str, e: gix::Error| Error::Git {
            context: context.into(),
            message: format!("{e:#}"),
        };
        let mut entries = Vec::with_capacity(count);
        for (id, kind, data) in &self.objects {
            let kind = match kind {
                Kind::Commit => gix::objs::Kind::Commit,
                Kind::Tree => gix::objs::Kind::Tree,
                Kind::Blob => gix::objs::Kind::Blob,
            };
            entries.push(gix_pack::data::output::Entry {
                id: to_gix(*id),
                kind: gix_pack::data::output::entry::Kind::Base(kind),
                decompressed_size: data.len(),
                compressed_data: crate::zlib::stored(data),
            });
        }
        // The raw objects are no longer needed once compressed; free them before indexing.
        self.objects = Vec::new();
        let mut pack = Vec::new();
        let num = u32::try_from(count).map_err(|_| Error::Corrupt {
            what: "pack".into(),
            reason: "more than 2^32 objects".into(),
        })?;
        {
            let mut out = gix_pack::data::output::bytes::FromEntriesIter::new(
                std::iter::once(Ok::<_, gix::Error>(entries)),
                &mut pack,
                num,
                gix_pack::data::Version::V2,
                hash_kind,
            );
            for written in &mut out {
                written.map_err(|e| git("writing pack data", e))?;
            }
        }
        let pack_dir = self.store.common_dir().join("objects").join("pack");
        std::fs::create_dir_all(&pack_dir).map_err(|e| Error::io("creating objects/pack", e))?;
        let interrupt = AtomicBool::new(false);
        let outcome = gix_pack::Bundle::write_to_directory(
            &mut &pack[..],
            Some(&pack_dir),
            &mut gix::progress::Discard,
            &interrupt,
            None::<gix::objs::find::Never>,
            hash_kind,
            gix_pack::bundle::write::Options {
                thread_limit: Some(1),
                ..Default::default()
            },
        )
        .map_err(|e| git("indexing a pack", e))?;
        if let Some(keep) = &outcome.keep_path {
            let marker = format!("{KEEP_MARKER} pid={}\n", std::process::id());
            std::fs::write(keep, marker).map_err(|e| Error::io("marking a pack .keep", e))?;
        }
        if self.store.is_durable() {
            let mut paths: Vec<PathBuf> = Vec::new();
            paths.extend(outcome.data_path.clone());
            paths.extend(outcome.index_path.clone());
            paths.extend(outcome.keep_path.clone());
            self.store
                .fsync_paths(crate::durability::Step::Objects, &paths)?;
        }
        Ok(PackGuard {
            keep: outcome.keep_path,
            pack: outcome.data_path,
            objects: count,
        })
    }
}
