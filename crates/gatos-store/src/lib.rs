//! The Git store of gatos: the only crate that touches gix or runs `git`.
//!
//! It writes blobs, trees and commits with trailers, reads them back, walks chains, and
//! changes refs by compare-and-swap under the lock families of DESIGN §3. It speaks in
//! storage terms (`CasMismatch`, `Locked`, `MissingObject`); the planes in the `gatos` crate
//! decide what those mean. gix types never appear in this crate's public API, so a gix
//! upgrade stops here.
//!
//! ```no_run
//! use gatos_store::{Store, refs::{Edit, names}};
//! use gatos_store::error::Expect;
//! let store = Store::discover(std::path::Path::new("."))?;
//! let blob = store.write_blob(b"{}")?;
//! let tree = store.write_files(&[("doc.json", blob)])?;
//! # let _ = tree;
//! # Ok::<(), gatos_store::Error>(())
//! ```
#![deny(missing_docs)]

mod big;
pub mod checkout;
pub mod durability;
pub mod error;
pub mod fsck;
pub mod group;
pub mod journal;
pub mod locks;
pub mod maintenance;
pub mod objects;
pub mod pack;
pub mod refs;
pub mod remote;
pub mod subprocess;
pub mod zlib;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

pub use error::{Error, Expect, Result};
use gatos_types::Oid;

/// The author and committer of every commit gatos writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The name.
    pub name: String,
    /// The e-mail address.
    pub email: String,
}

impl Identity {
    /// The identity a configured name and e-mail become, as git makes its own: the
    /// characters that would break a commit's author line (`<`, `>`, line feed) are dropped
    /// and "crud" (controls, spaces and `,:;<>"\'`) is trimmed from both ends
    /// (`strbuf_addstr_without_crud` in git's `ident.c`). What is left empty takes
    /// [`Identity::fallback`]'s part.
    pub fn from_config(name: Option<&str>, email: Option<&str>) -> Identity {
        fn without_crud(s: &str) -> String {
            let crud =
                |c: char| c <= ' ' || matches!(c, ',' | ':' | ';' | '<' | '>' | '"' | '\\' | '\'');
            s.trim_matches(crud)
                .chars()
                .filter(|c| !matches!(c, '\n' | '<' | '>'))
                .collect()
        }
        let fallback = Identity::fallback();
        let clean = |v: Option<&str>| v.map(without_crud).filter(|v| !v.is_empty());
        Identity {
            name: clean(name).unwrap_or(fallback.name),
            email: clean(email).unwrap_or(fallback.email),
        }
    }

    /// The identity used when neither gatos nor Git configures one.
    pub fn fallback() -> Identity {
        Identity {
            name: "gatos".to_owned(),
            email: "gatos@localhost".to_owned(),
        }
    }
}

/// A repository opened for gatos. Cheap to clone; shareable between threads.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    /// Where handles come from, with its object store's pack-index slots; replaced when
    /// they run short ([`Store::mind_slots`]).
    odb: Mutex<Odb>,
    /// Held by the one thread that compares the slots with the disk and opens again.
    reopening: Mutex<()>,
    /// Handles made since the store was opened (the slots are compared every so many).
    since_slot_check: std::sync::atomic::AtomicUsize,
    /// Packs written since then.
    packs_since_check: std::sync::atomic::AtomicUsize,
    git_dir: PathBuf,
    common_dir: PathBuf,
    work_dir: Option<PathBuf>,
    locks: locks::Locks,
    identity: Identity,
    durability: durability::Method,
    pool: Mutex<Pool>,
    /// The local config file as last parsed, with the stamp it had then.
    local_config: Mutex<Option<(FileStamp, Arc<gix::config::File>)>>,
    /// The big pack index for bulk readers, with the stamp of the pack directory then.
    big: Mutex<big::Cached>,
    /// What a reader of job refs runs first ([`Store::set_job_read_hook`]).
    job_read_hook: std::sync::OnceLock<JobReadHook>,
}

/// What a reader of job refs runs before it reads (ADR 0046): the gatos crate's
/// materialization of the enqueues journaled in this repository, so that a read finds
/// every acknowledged job. It fails with a code and a message.
pub type JobReadHook =
    Box<dyn Fn() -> std::result::Result<(), (gatos_types::ErrorCode, String)> + Send + Sync>;

/// What identifies a version of a file: its inode (a rename over it changes that), size
/// and modification time.
pub(crate) type FileStamp = (u64, u64, i64, i64);

pub(crate) fn file_stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.ino(), meta.size(), meta.mtime(), meta.mtime_nsec()))
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("git_dir", &self.inner.git_dir)
            .finish_non_exhaustive()
    }
}

/// Handles kept for reuse; more than this are dropped when returned.
const POOL_MAX: usize = 16;

/// The repository handles are made from, and the slots its object store has.
struct Odb {
    sync: gix::ThreadSafeRepository,
    slots: usize,
    /// The pack indexes counted on disk when it was opened again (0 at the first open): it
    /// is opened again only when there are more (the count includes indexes a multi-pack
    /// index covers, which gix does not give slots, so a count over the slots alone could
    /// ask again and again).
    reopened_at: usize,
}

/// The handles kept for reuse, all of the current object store (`generation`).
struct Pool {
    repos: Vec<gix::Repository>,
    /// Counts the object stores opened: a handle of an earlier one is not kept.
    generation: u64,
}

/// A gix handle borrowed from the store's pool, returned when dropped.
pub(crate) struct Handle<'a> {
    store: &'a Store,
    repo: Option<gix::Repository>,
    generation: u64,
}

impl std::ops::Deref for Handle<'_> {
    type Target = gix::Repository;
    fn deref(&self) -> &gix::Repository {
        self.repo
            .as_ref()
            .expect("a handle holds its repository until dropped")
    }
}

impl Drop for Handle<'_> {
    fn drop(&mut self) {
        if let Some(repo) = self.repo.take() {
            let mut pool = self
                .store
                .inner
                .pool
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if pool.generation == self.generation && pool.repos.len() < POOL_MAX {
                pool.repos.push(repo);
            }
        }
    }
}

impl Store {
    /// Finds the repository containing `start`, as Git does (`GIT_DIR` and `GIT_WORK_TREE`
    /// are honoured).
    ///
    /// # Errors
    /// [`Error::NotARepository`] when there is none; [`Error::Unsupported`] for SHA-256.
    pub fn discover(start: &Path) -> Result<Store> {
        let opts = open_options();
        let repo = gix::ThreadSafeRepository::discover_with_environment_overrides_opts(
            start,
            Default::default(),
            gix::sec::trust::Mapping {
                full: opts.clone(),
                reduced: opts,
            },
        )
        .map_err(|e| Error::NotARepository {
            path: start.display().to_string(),
            message: format!("{e:#}"),
        })?;
        Store::from_sync(repo)
    }

    /// Opens the repository at `path` (a work tree or a git dir), without searching upwards.
    ///
    /// # Errors
    /// As [`Store::discover`].
    pub fn open(path: &Path) -> Result<Store> {
        let repo = gix::ThreadSafeRepository::open_opts(path, open_options()).map_err(|e| {
            Error::NotARepository {
                path: path.display().to_string(),
                message: format!("{e:#}"),
            }
        })?;
        Store::from_sync(repo)
    }

    fn from_sync(sync: gix::ThreadSafeRepository) -> Result<Store> {
        let repo = sync.to_thread_local();
        if repo.object_hash() != gix::hash::Kind::Sha1 {
            return Err(Error::Unsupported(
                "only SHA-1 repositories are supported (this one uses SHA-256)".to_owned(),
            ));
        }
        let git_dir = repo.git_dir().to_owned();
        let common_dir = repo.common_dir().to_owned();
        let work_dir = repo.workdir().map(Path::to_owned);
        let cfg = repo.config_snapshot();
        let pick = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| cfg.string(*k).map(|v| v.to_string()))
                .filter(|v| !v.is_empty())
        };
        let identity = Identity::from_config(
            pick(&["gatos.name", "user.name"]).as_deref(),
            pick(&["gatos.email", "user.email"]).as_deref(),
        );
        let durability = durability::Method::from_config(
            cfg.boolean("gatos.fsync").unwrap_or(false),
            cfg.string("gatos.fsyncMethod")
                .map(|v| v.to_string())
                .as_deref(),
        )?;
        let locks = locks::Locks::new(&common_dir)?;
        let slots = slots_of(&repo);
        let store = Store {
            inner: Arc::new(Inner {
                odb: Mutex::new(Odb {
                    sync,
                    slots,
                    reopened_at: 0,
                }),
                reopening: Mutex::new(()),
                since_slot_check: std::sync::atomic::AtomicUsize::new(0),
                packs_since_check: std::sync::atomic::AtomicUsize::new(0),
                git_dir,
                common_dir,
                work_dir,
                locks,
                identity,
                durability,
                pool: Mutex::new(Pool {
                    repos: Vec::new(),
                    generation: 0,
                }),
                local_config: Mutex::new(None),
                big: Mutex::new(None),
                job_read_hook: std::sync::OnceLock::new(),
            }),
        };
        store
            .inner
            .pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .repos
            .push(prepare(repo));
        Ok(store)
    }

    pub(crate) fn handle(&self) -> Handle<'_> {
        self.mind_slots();
        let (pooled, generation) = {
            let mut pool = self
                .inner
                .pool
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            (pool.repos.pop(), pool.generation)
        };
        let repo = pooled.unwrap_or_else(|| prepare(self.thread_local()));
        Handle {
            store: self,
            repo: Some(repo),
            generation,
        }
    }

    /// A new handle of the current object store.
    fn thread_local(&self) -> gix::Repository {
        self.inner
            .odb
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sync
            .to_thread_local()
    }

    /// Every [`SLOT_CHECK_EVERY`] handles, compares the pack indexes on disk with the slots
    /// the object store opened with, and opens the object store again when they fill three
    /// quarters of them. gix sizes its slots when it opens a repository and, past them,
    /// fails every object read ("too few index slots"): a long-running process that writes
    /// packs faster than maintenance merges them (maintenance off, or failing) would
    /// otherwise stop reading objects until restarted. Handles of the earlier store finish
    /// what they do and are not kept.
    fn mind_slots(&self) {
        use std::sync::atomic::Ordering;
        let made = self.inner.since_slot_check.fetch_add(1, Ordering::Relaxed);
        if made % SLOT_CHECK_EVERY == SLOT_CHECK_EVERY - 1 {
            self.check_slots();
        }
    }

    /// Counts a pack this process wrote: every [`SLOT_CHECK_PACKS`] of them, the slots are
    /// compared with the packs on disk as [`Store::mind_slots`] does (a writer of many packs
    /// may make few handles).
    pub(crate) fn wrote_pack(&self) {
        use std::sync::atomic::Ordering;
        let written = self.inner.packs_since_check.fetch_add(1, Ordering::Relaxed);
        if written % SLOT_CHECK_PACKS == SLOT_CHECK_PACKS - 1 {
            self.check_slots();
        }
    }

    /// Opens the object store again when the pack indexes on disk (its own and its
    /// alternates') fill three quarters of its slots. One thread at a time; another that
    /// comes meanwhile goes on at once.
    fn check_slots(&self) {
        let Ok(_one) = self.inner.reopening.try_lock() else {
            return;
        };
        let indices = count_indices(&self.inner.common_dir);
        let (slots, reopened_at) = {
            let odb = self
                .inner
                .odb
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            (odb.slots, odb.reopened_at)
        };
        if indices.saturating_mul(4) < slots.saturating_mul(3) || indices <= reopened_at {
            return;
        }
        let reopened = match gix::ThreadSafeRepository::open_opts(
            &self.inner.git_dir,
            open_options(),
        ) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, indices, slots, "could not open the object store again for more pack slots");
                return;
            }
        };
        let now = slots_of(&reopened.to_thread_local());
        *self
            .inner
            .odb
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Odb {
            sync: reopened,
            slots: now,
            reopened_at: indices,
        };
        let mut pool = self
            .inner
            .pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        pool.generation += 1;
        pool.repos.clear();
        tracing::info!(
            indices,
            slots_before = slots,
            slots = now,
            "opened the object store again: its pack slots were filling (is maintenance running?)"
        );
    }

    /// Returns the git dir (`.git` of a work tree, or the bare repository).
    pub fn git_dir(&self) -> &Path {
        &self.inner.git_dir
    }

    /// Returns the common dir, where refs and objects live (differs in linked work trees).
    pub fn common_dir(&self) -> &Path {
        &self.inner.common_dir
    }

    /// Returns the work tree, if the repository has one.
    pub fn work_dir(&self) -> Option<&Path> {
        self.inner.work_dir.as_deref()
    }

    /// Returns `<common-dir>/gatos`, where gatos keeps its local files.
    pub fn gatos_dir(&self) -> PathBuf {
        self.inner.common_dir.join("gatos")
    }

    /// Returns the lock families of this repository.
    pub fn locks(&self) -> &locks::Locks {
        &self.inner.locks
    }

    /// Returns the commit identity.
    pub fn identity(&self) -> &Identity {
        &self.inner.identity
    }

    /// Tells whether writes are fsynced before they return (`gatos.fsync`).
    pub fn is_durable(&self) -> bool {
        self.inner.durability != durability::Method::None
    }

    /// Reads a configuration value as Git would (local, global and system files).
    pub fn config_string(&self, key: &str) -> Option<String> {
        let repo = self.handle();
        let cfg = repo.config_snapshot();
        cfg.string(key).map(|v| v.to_string())
    }

    /// Reads every value of a multi-valued configuration key, in order.
    pub fn config_strings(&self, key: &str) -> Vec<String> {
        let repo = self.handle();
        let cfg = repo.config_snapshot();
        cfg.strings(key)
            .map(|v| v.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default()
    }

    /// Reads every value of a key from the local configuration file as it is on disk now
    /// (not the snapshot taken at open): for settings this process may have just changed,
    /// such as trusted keys.
    pub fn local_config_strings(&self, key: &str) -> Vec<String> {
        let path = self.inner.common_dir.join("config");
        // Parsed again only when the file changed (it is rewritten by renaming a new one
        // over it, which changes its inode).
        let Some(stamp) = file_stamp(&path) else {
            return Vec::new();
        };
        let cached = {
            let c = self
                .inner
                .local_config
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            c.as_ref()
                .filter(|(s, _)| *s == stamp)
                .map(|(_, f)| Arc::clone(f))
        };
        let file = match cached {
            Some(f) => f,
            None => {
                let Ok(f) =
                    gix::config::File::from_path_no_includes(path, gix::config::Source::Local)
                else {
                    return Vec::new();
                };
                let f = Arc::new(f);
                *self
                    .inner
                    .local_config
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some((stamp, Arc::clone(&f)));
                f
            }
        };
        file.raw_values(key)
            .map(|v| v.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default()
    }

    /// Writes values into the repository's local configuration file (`.git/config`),
    /// replacing each key's values; an empty list removes the key.
    ///
    /// The file is locked and rewritten atomically. Handles opened earlier keep their
    /// snapshot; reopen the store to see the change.
    ///
    /// # Errors
    /// When the configuration file cannot be written.
    pub fn set_local_config(&self, values: &[(&str, Vec<String>)]) -> Result<()> {
        let repo = self.thread_local();
        let path = repo
            .config_path(gix::config::Source::Local)
            .map_err(|e| Error::git("locating the local config", &e))?;
        let mut file = repo
            .config_file_mut(&path)
            .map_err(|e| Error::git("opening the local config", &e))?;
        for (key, vals) in values {
            let (section, sub, name) = split_key(key)?;
            let cfg_err = |e: &dyn std::fmt::Display| Error::Git {
                context: format!("config {key}"),
                message: e.to_string(),
            };
            if let Ok(mut existing) = file.raw_values_mut(*key) {
                existing.delete_all();
            }
            for v in vals {
                let mut sec = file
                    .section_mut_or_create_new(section, sub.map(gix::bstr::BStr::new))
                    .map_err(|e| cfg_err(&e))?;
                sec.push(name, Some(gix::bstr::BStr::new(v.as_bytes())))
                    .map_err(|e| cfg_err(&e))?;
            }
        }
        file.commit()
            .map_err(|e| Error::git("writing the local config", &e))?;
        Ok(())
    }

    /// Fsyncs what a write produced, when `gatos.fsync` is on (objects before refs).
    pub(crate) fn fsync_paths(&self, step: durability::Step, paths: &[PathBuf]) -> Result<()> {
        durability::sync(self.inner.durability, step, &self.inner.common_dir, paths)
    }

    /// Returns the path of a loose object (whether or not it exists).
    pub(crate) fn loose_object_path(&self, id: Oid) -> PathBuf {
        let hex = id.to_string();
        self.inner
            .common_dir
            .join("objects")
            .join(&hex[..2])
            .join(&hex[2..])
    }

    /// Returns the path of a loose ref file.
    pub(crate) fn ref_path(&self, name: &str) -> PathBuf {
        self.inner.common_dir.join(name)
    }
}

/// Pack-index slots of the object database. gix sizes them from the packs on disk at open
/// and fails once more packs appear than slots; a long-running writer adds a pack per batch
/// chunk between compactions, so leave generous room (a slot is a few dozen bytes).
const OBJECT_STORE_SLOTS: usize = 1024;

/// How many handles a store makes between two looks at its pack slots
/// ([`Store::mind_slots`]): a listing of `objects/pack` per this many handles.
pub const SLOT_CHECK_EVERY: usize = 256;

/// How many packs a store writes between two looks at its pack slots
/// ([`Store::wrote_pack`]).
pub const SLOT_CHECK_PACKS: usize = 64;

/// The pack-index slots gix gave the object store of `repo` (it sizes them at open, as
/// [`open_options`] asks, from the indexes of the repository and its alternates).
fn slots_of(repo: &gix::Repository) -> usize {
    let m = repo.objects.store_ref().metrics();
    m.known_reachable_indices + m.unreachable_indices + m.unused_slots
}

/// The pack indexes (`pack/*.idx`, and a multi-pack index) of a repository's object
/// directory and of its alternates (`objects/info/alternates`, one level): what the
/// object store's slots hold.
fn count_indices(common_dir: &Path) -> usize {
    let in_dir = |objects: &Path| {
        let n = maintenance::count_dir(&objects.join("pack"), |n| {
            n.ends_with(".idx") || n == "multi-pack-index"
        });
        usize::try_from(n).unwrap_or(usize::MAX)
    };
    let objects = common_dir.join("objects");
    let alternates = std::fs::read_to_string(objects.join("info").join("alternates"))
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| in_dir(&objects.join(l)))
        .sum::<usize>();
    in_dir(&objects) + alternates
}

fn open_options() -> gix::open::Options {
    gix::open::Options::default().object_store_slots(
        gix::odb::store::init::Slots::AsNeededByDiskState {
            multiplier: 2.0,
            minimum: OBJECT_STORE_SLOTS,
        },
    )
}

/// The delta-base cache of each handle unless `core.deltaBaseCacheLimit` sets one.
///
/// gix's default keeps the last 64 bases only; our chains are many small, similar
/// commits, trees and blobs packed as long delta chains, and reading them through a
/// bounded byte-capped cache is 2x faster (ADR 0017).
pub const DELTA_BASE_CACHE_BYTES: usize = 1 << 20;

fn prepare(mut repo: gix::Repository) -> gix::Repository {
    // Reflogs of refs/gatos/* would grow without bound and duplicate the chains themselves.
    repo.refs.write_reflog = gix::refs::store::WriteReflog::Disable;
    if repo
        .config_snapshot()
        .string("core.deltaBaseCacheLimit")
        .is_none()
    {
        repo.objects.set_pack_cache(|| {
            Box::new(gix::odb::pack::cache::lru::MemoryCappedHashmap::new(
                DELTA_BASE_CACHE_BYTES,
            ))
        });
    }
    repo
}

fn split_key(key: &str) -> Result<(&str, Option<&str>, &str)> {
    let bad = || Error::Unsupported(format!("invalid config key {key:?}"));
    let (section, rest) = key.split_once('.').ok_or_else(bad)?;
    match rest.rsplit_once('.') {
        Some((sub, name)) => Ok((section, Some(sub), name)),
        None => Ok((section, None, rest)),
    }
}

pub(crate) fn to_gix(o: Oid) -> gix::ObjectId {
    gix::ObjectId::from_bytes_or_panic(o.as_bytes())
}

pub(crate) fn from_gix(o: &gix::oid) -> Oid {
    let mut b = [0u8; 20];
    b.copy_from_slice(o.as_bytes());
    Oid::from_bytes(b)
}
