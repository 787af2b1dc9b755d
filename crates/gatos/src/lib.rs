//! The gatos library: every rule about messages, checkpoints, jobs and refs.
//!
//! Both front doors — the `git gatos` command line and the `gatosd` daemon — are thin
//! layers over the [`Gatos`] handle: they parse, call and render. The API is blocking (like
//! gix underneath); the daemon calls it on its blocking pool. Every operation returns the
//! wire rows of `gatos-types` and a [`Error`] with a stable code.
//!
//! This crate never touches gix or runs `git` itself: that is `gatos-store`'s job.
//!
//! ```no_run
//! use gatos::{Gatos, messages::{Cursor, PublishOptions, ReadOptions}};
//! let gatos = Gatos::discover(std::path::Path::new("."), gatos::OpenOptions::default())?;
//! let topic = "ci.events".parse()?;
//! let row = gatos.messages().publish(&topic, serde_json::json!({"build": 42}), &PublishOptions::default())?;
//! let page = gatos.messages().read(&topic, &ReadOptions { since: Cursor::Start, limit: 10 })?;
//! assert_eq!(page.messages[0].ulid, row.ulid);
//! # Ok::<(), gatos::Error>(())
//! ```
#![deny(missing_docs)]

pub mod audit;
pub mod checkpoints;
pub mod clock;
mod codec;
pub mod doctor;
mod error;
mod group;
pub mod idempotency;
pub mod init;
pub mod jobs;
pub mod keys;
pub mod maintenance;
pub mod manifests;
pub mod messages;
pub mod nowait;
pub mod proofs;
pub mod refs;
mod signing;
pub mod snapshot;
pub mod state;
pub mod sync;
pub mod worker;

/// A repository and a handle on it for unit tests.
#[cfg(test)]
pub(crate) fn test_node(
    clock: Option<Arc<dyn Clock>>,
) -> Result<(gatos_testutil::TempRepo, Gatos), Box<dyn std::error::Error>> {
    let repo = gatos_testutil::TempRepo::new()?;
    let g = Gatos::open(
        repo.path(),
        OpenOptions {
            clock,
            seed: Some(7),
        },
    )?;
    Ok((repo, g))
}

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

pub use error::{Error, Result};
use gatos_store::Store;
use gatos_types::wire::TopicConfig;
use gatos_types::{ErrorCode, Oid, Timestamp, Topic, Ulid};

use crate::clock::{Clock, Entropy, SystemClock};

/// How to open a repository.
#[derive(Clone, Default)]
pub struct OpenOptions {
    /// The clock; the system clock by default.
    pub clock: Option<Arc<dyn Clock>>,
    /// A seed for every random choice; the OS's randomness by default.
    pub seed: Option<u64>,
}

impl std::fmt::Debug for OpenOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenOptions")
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

impl OpenOptions {
    /// Reads the hidden, test-only `GATOS_TEST_CLOCK` (RFC 3339 start time; the clock then
    /// advances in real time) and `GATOS_TEST_SEED`. The binaries call this; nothing else
    /// should.
    ///
    /// # Errors
    /// `InvalidInput` when a variable is set but malformed.
    pub fn from_test_env() -> Result<OpenOptions> {
        let mut o = OpenOptions::default();
        if let Ok(v) = std::env::var("GATOS_TEST_CLOCK") {
            let start = Timestamp::parse_rfc3339(&v)?;
            o.clock = Some(Arc::new(clock::OffsetClock::starting_at(start)));
        }
        if let Ok(v) = std::env::var("GATOS_TEST_SEED") {
            let seed = v.parse().map_err(|_| {
                Error::new(
                    ErrorCode::InvalidInput,
                    format!("GATOS_TEST_SEED must be a number, not {v:?}"),
                )
            })?;
            o.seed = Some(seed);
        }
        Ok(o)
    }
}

/// Settings read from Git configuration when the repository is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `gatos.dedupeWindow`: how many recent messages a `msg_id` is checked against.
    pub dedupe_window: u64,
    /// `gatos.maintenance.auto`: whether writers start compaction when it is due.
    pub auto_maintenance: bool,
    /// Thresholds of automatic maintenance.
    pub maintenance: maintenance::Thresholds,
    /// `gatos.lease.skew`: how long past `lease_until` a lease still counts (default 0).
    pub lease_skew: gatos_types::Dur,
    /// `gatos.jobs.archiveAfter`: finished jobs older than this are archived (default 7d).
    pub archive_after: gatos_types::Dur,
    /// `gatos.journal`: whether plain publishes are acknowledged after one append to the
    /// topic's journal (ADR 0046; default true).
    pub journal: bool,
    /// `gatos.journal.flushMs`: how long a journaled publish may wait before a handle's
    /// flusher makes it a commit (default 50).
    pub journal_flush: std::time::Duration,
    /// `gatos.group.jobs`: whether concurrent job actions are committed in groups (default
    /// false: on the project VM grouping measured slower with several clients; ADR 0046).
    pub group_jobs: bool,
    /// `gatos.group.windowUs`: how long the first of a group of concurrent job actions
    /// waits for others before committing (default 0: never; ADR 0046).
    pub group_window: std::time::Duration,
    /// `gatos.group.packObjects`: a group of job actions with at least this many objects
    /// writes them as one pack, a smaller one as loose objects (ADR 0046).
    pub group_pack_objects: u64,
    /// `gatos.jobs.readAhead`: how many of the next jobs a daemon keeps read ahead of the
    /// claims it serves (default 4, at most 64; 0: none; ADR 0046 session 20,
    /// [`jobs::readahead`]).
    pub read_ahead: u64,
}

impl Settings {
    /// The default dedupe window (DESIGN §4).
    pub const DEFAULT_DEDUPE_WINDOW: u64 = 100_000;
    /// The default of `gatos.jobs.archiveAfter`.
    pub const DEFAULT_ARCHIVE_AFTER: gatos_types::Dur = gatos_types::Dur::from_secs(7 * 86_400);
}

/// A held lock family (see [`Gatos::try_hold`]); released when dropped.
#[derive(Debug)]
pub struct Held(#[allow(dead_code, reason = "held for its Drop")] gatos_store::locks::Guard);

/// A maintenance starter: called by writers when compaction is due.
pub type MaintenanceHook = Arc<dyn Fn(&Gatos) + Send + Sync>;

/// An open gatos repository. Cheap to clone; share it between threads.
#[derive(Clone)]
pub struct Gatos {
    inner: Arc<Inner>,
    /// Who this handle acts for (`cli:<user>`, `rpc:<uid>`, …); `None`: the CLI's user.
    actor: Option<Arc<str>>,
}

pub(crate) struct Inner {
    store: Store,
    clock: Arc<dyn Clock>,
    entropy: Entropy,
    node: Mutex<Option<Ulid>>,
    settings: Settings,
    topic_configs: Mutex<HashMap<Topic, (Oid, TopicConfig)>>,
    summaries: Mutex<HashMap<Topic, (Oid, u64)>>,
    tails: Mutex<HashMap<Topic, messages::chain::Meta>>,
    msgids: Mutex<HashMap<Topic, messages::index::MsgIds>>,
    combiners: Mutex<HashMap<Topic, Arc<messages::publish::Combiner>>>,
    job_group: jobs::group::JobGroup,
    journals: messages::journal::Journals,
    journal_on: std::sync::atomic::AtomicBool,
    maintenance_hook: Mutex<Option<MaintenanceHook>>,
    writes: AtomicU64,
    last_job: Mutex<Option<Ulid>>,
    ready: Mutex<jobs::ready::State>,
    docs: jobs::records::DocCache,
    envelopes: jobs::enqueuer::EnvelopeCache,
    catalog: jobs::catalog::Pending,
    enqueue_journal: jobs::journal::Pending,
    arbiter: Mutex<Option<String>>,
}

impl Drop for Gatos {
    /// The last handle materializes what it journaled: plain `git` sees every publish once
    /// the handles are gone (a killed process leaves its journal to the next reader). It
    /// also appends the job catalog's lines of the jobs it enqueued.
    fn drop(&mut self) {
        if Arc::strong_count(&self.inner) == 1 {
            if !self.inner.journals.pending_topics().is_empty() {
                self.messages().flush_due(std::time::Duration::ZERO);
            }
            jobs::journal::flush_due(self, std::time::Duration::ZERO);
            self.jobs().flush_catalog();
        }
    }
}

impl std::fmt::Debug for Gatos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gatos")
            .field("store", &self.inner.store)
            .finish_non_exhaustive()
    }
}

/// Publishes between automatic maintenance checks.
const MAINTENANCE_CHECK_EVERY: u64 = 64;

fn config_dur(store: &Store, key: &str, default: gatos_types::Dur) -> Result<gatos_types::Dur> {
    match store.config_string(key) {
        None => Ok(default),
        Some(v) => gatos_types::Dur::parse(v.trim()).map_err(|e| {
            Error::new(
                ErrorCode::InvalidInput,
                format!("config {key} must be a duration (30s, 5m, 7d, PT30S): {e}"),
            )
        }),
    }
}

fn config_u64(store: &Store, key: &str, default: u64) -> Result<u64> {
    match store.config_string(key) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| {
            Error::new(
                ErrorCode::InvalidInput,
                format!("config {key} must be a whole number, not {v:?}"),
            )
        }),
    }
}

fn config_bool(store: &Store, key: &str, default: bool) -> Result<bool> {
    match store
        .config_string(key)
        .map(|v| v.trim().to_ascii_lowercase())
    {
        None => Ok(default),
        Some(v) if matches!(v.as_str(), "true" | "yes" | "on" | "1") => Ok(true),
        Some(v) if matches!(v.as_str(), "false" | "no" | "off" | "0") => Ok(false),
        Some(v) => Err(Error::new(
            ErrorCode::InvalidInput,
            format!("config {key} must be true or false, not {v:?}"),
        )),
    }
}

impl Gatos {
    /// Finds the repository containing `dir`, as Git does.
    ///
    /// # Errors
    /// `NotFound` when there is no repository; `InvalidInput` for bad gatos settings.
    pub fn discover(dir: &Path, opts: OpenOptions) -> Result<Gatos> {
        Gatos::from_store(Store::discover(dir)?, opts)
    }

    /// Opens the repository at `dir` (a work tree or a git dir) without searching upwards.
    ///
    /// # Errors
    /// As [`Gatos::discover`].
    pub fn open(dir: &Path, opts: OpenOptions) -> Result<Gatos> {
        Gatos::from_store(Store::open(dir)?, opts)
    }

    /// Wraps an opened store (crate-private, as [`Gatos::store`]: a face opens a repository
    /// by path).
    ///
    /// # Errors
    /// `InvalidInput` for malformed gatos settings.
    pub(crate) fn from_store(store: Store, opts: OpenOptions) -> Result<Gatos> {
        let defaults = gatos_store::maintenance::Thresholds::default();
        let settings = Settings {
            dedupe_window: config_u64(
                &store,
                "gatos.dedupeWindow",
                Settings::DEFAULT_DEDUPE_WINDOW,
            )?,
            auto_maintenance: store
                .config_string("gatos.maintenance.auto")
                .is_none_or(|v| !matches!(v.trim(), "false" | "no" | "off" | "0")),
            maintenance: gatos_store::maintenance::Thresholds {
                loose_objects: config_u64(
                    &store,
                    "gatos.maintenance.looseObjects",
                    defaults.loose_objects,
                )?,
                packs: config_u64(&store, "gatos.maintenance.packs", defaults.packs)?,
            },
            lease_skew: config_dur(&store, "gatos.lease.skew", gatos_types::Dur::from_secs(0))?,
            archive_after: config_dur(
                &store,
                "gatos.jobs.archiveAfter",
                Settings::DEFAULT_ARCHIVE_AFTER,
            )?,
            journal: config_bool(&store, "gatos.journal", true)?,
            journal_flush: std::time::Duration::from_millis(
                config_u64(&store, "gatos.journal.flushMs", 50)?.clamp(1, 60_000),
            ),
            group_jobs: config_bool(&store, "gatos.group.jobs", false)?,
            group_window: std::time::Duration::from_micros(
                config_u64(
                    &store,
                    "gatos.group.windowUs",
                    jobs::group::DEFAULT_WINDOW_US,
                )?
                .min(jobs::group::MAX_WINDOW_US),
            ),
            group_pack_objects: config_u64(
                &store,
                "gatos.group.packObjects",
                jobs::group::DEFAULT_PACK_OBJECTS,
            )?,
            read_ahead: config_u64(&store, "gatos.jobs.readAhead", 4)?.min(64),
        };
        let journal_on = settings.journal;
        let node = match store.config_string("gatos.node") {
            Some(v) => Some(v.trim().parse::<Ulid>().map_err(|e| {
                Error::new(ErrorCode::InvalidInput, format!("config gatos.node: {e}"))
            })?),
            None => None,
        };
        let entropy = opts.seed.map_or_else(Entropy::from_os, Entropy::seeded);
        let gatos = Gatos {
            actor: None,
            inner: Arc::new(Inner {
                store,
                clock: opts.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                entropy,
                node: Mutex::new(node),
                settings,
                topic_configs: Mutex::default(),
                summaries: Mutex::default(),
                tails: Mutex::default(),
                msgids: Mutex::default(),
                combiners: Mutex::default(),
                job_group: jobs::group::JobGroup::default(),
                journals: messages::journal::Journals::default(),
                journal_on: std::sync::atomic::AtomicBool::new(journal_on),
                maintenance_hook: Mutex::default(),
                writes: AtomicU64::new(0),
                last_job: Mutex::default(),
                ready: Mutex::default(),
                docs: jobs::records::DocCache::default(),
                envelopes: jobs::enqueuer::EnvelopeCache::default(),
                catalog: jobs::catalog::Pending::default(),
                enqueue_journal: jobs::journal::Pending::default(),
                arbiter: Mutex::default(),
            }),
        };
        // Every read of job refs through this store first makes the journaled enqueues
        // refs (ADR 0046). The hook holds the handle weakly: the store lives in it.
        let weak = Arc::downgrade(&gatos.inner);
        gatos.inner.store.set_job_read_hook(Box::new(move || {
            let Some(inner) = weak.upgrade() else {
                return Ok(());
            };
            jobs::journal::settle(&Gatos::from_inner(inner)).map_err(|e| (e.code(), e.to_string()))
        }));
        Ok(gatos)
    }

    /// Returns a handle on the same repository whose writes are made for `actor`: its
    /// name goes into the actor trailers of the commits they write, the `actor` of signed
    /// enqueues and cancels, and the audit records (`cli:<user>`, `rpc:<uid>`,
    /// `http:<token name>`, `mcp:<client>`; a face chooses it, the library records it).
    pub fn with_actor(&self, actor: &str) -> Gatos {
        Gatos {
            inner: self.inner.clone(),
            actor: Some(Arc::from(actor)),
        }
    }

    /// Who this handle acts for: what [`Gatos::with_actor`] set, else `cli:` and the
    /// repository's gatos identity.
    pub fn actor(&self) -> String {
        match &self.actor {
            Some(a) => a.to_string(),
            None => format!("cli:{}", self.inner.store.identity().name),
        }
    }

    /// Returns the store. Crate-private: faces and the exporter get purpose-built methods
    /// (ADR 0025, Boundary).
    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The repository's git directory.
    pub fn git_dir(&self) -> &Path {
        self.inner.store.git_dir()
    }

    /// `<common-dir>/gatos`: gatos's local files (keys, indexes, the daemon's socket and
    /// token).
    pub fn gatos_dir(&self) -> PathBuf {
        self.inner.store.gatos_dir()
    }

    /// The name of the identity gatos writes commits as (DESIGN §3).
    pub fn identity_name(&self) -> &str {
        &self.inner.store.identity().name
    }

    /// Whether writes are made durable (`gatos.fsync`).
    pub fn is_durable(&self) -> bool {
        self.inner.store.is_durable()
    }

    /// Removes the ref lock files that writers which died left (ADR 0020); returns their
    /// paths. A lock a live writer holds is never touched.
    ///
    /// # Errors
    /// When the lock owners cannot be read.
    pub fn recover_stale_locks(&self) -> Result<Vec<PathBuf>> {
        Ok(self.inner.store.recover_stale_locks()?)
    }

    /// The topics stamp (seconds, nanoseconds): it moves after every gatos write that
    /// moves a topic's ref, so a watcher can tell "nothing happened" from one `stat`
    /// (ADR 0023); `None` before the first topic write. Plain git writes do not move it.
    pub fn topics_stamp(&self) -> Option<(i64, i64)> {
        self.inner.store.topics_stamp()
    }

    /// Makes a remote the arbiter of this handle's claims (`git gatos worker --remote`):
    /// every claim, heartbeat, release and result is pushed there first, with a lease, and
    /// only mirrored here once the hub took it (ADR 0015). `None` claims locally.
    ///
    /// # Errors
    /// `NotFound` for an unknown remote, `InvalidInput` for an unusable name.
    pub fn set_job_arbiter(&self, remote: Option<&str>) -> Result<()> {
        let name = match remote {
            Some(r) => Some(sync::resolve_remote(self, Some(r))?),
            None => None,
        };
        *self
            .inner
            .arbiter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = name;
        Ok(())
    }

    /// Checks the hub's refs of one job as a sync would (ADR 0018), before the job arbiter
    /// takes them. Wired here, at the crate's root, which knows every plane: the job plane
    /// asks the handle, and does not depend on sync (which depends on it).
    ///
    /// # Errors
    /// `Conflict` naming the first rejected ref.
    pub(crate) fn check_job_at_hub(&self, remote: &str, id: Ulid) -> Result<()> {
        sync::check_job_at_hub(self, remote, id)
    }

    /// The remote that arbitrates claims, if any.
    pub(crate) fn job_arbiter(&self) -> Option<String> {
        self.inner
            .arbiter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Returns the settings read at open.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Returns `gatos.lease.skew`.
    pub fn lease_skew(&self) -> gatos_types::Dur {
        self.inner.settings.lease_skew
    }

    /// Returns the current time of the injected clock.
    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// Tells whether `ancestor` is on `tip`'s first-parent chain (the linear chains of
    /// claims, checkpoints, manifests, settings and summaries).
    pub(crate) fn on_chain(&self, ancestor: Oid, tip: Oid) -> Result<bool> {
        // Walked down from both ends in step: when `ancestor` is ahead of `tip` (the usual
        // "is the other side behind?" that answers no), the walk from `ancestor` meets `tip`
        // after as many commits as it is ahead, where the walk from `tip` alone went down to
        // the root of a chain that may be long (a checkpoint's grows with every move). That
        // second walk only shortens the answer: a commit it cannot read ends it.
        let mut r = self.store().reader();
        let (mut down, mut up) = (Some(tip), Some(ancestor));
        let mut steps = 0u64;
        while let Some(c) = down {
            if c == ancestor {
                return Ok(true);
            }
            if up == Some(tip) {
                return Ok(false);
            }
            steps += 1;
            if steps > 10_000_000 {
                return Ok(false);
            }
            down = r.commit(c)?.parents.first().copied();
            up = up
                .and_then(|u| r.commit(u).ok())
                .and_then(|u| u.parents.first().copied());
        }
        Ok(false)
    }

    /// The place (`Version`) of a new settings commit on `parent`: its parent's plus one
    /// ([`signing::chain_place`]).
    ///
    /// # Errors
    /// When the parent cannot be read.
    pub(crate) fn next_chain_place(&self, parent: Option<Oid>) -> Result<u64> {
        Ok(match parent {
            Some(p) => {
                signing::chain_place(&self.store().reader().commit(p)?.trailers()).saturating_add(1)
            }
            None => 1,
        })
    }

    /// Returns the injected randomness.
    pub fn entropy(&self) -> &Entropy {
        &self.inner.entropy
    }

    /// Returns a new job id, above every one this handle made before (so "oldest first"
    /// holds for jobs enqueued in the same millisecond).
    pub(crate) fn next_job_id(&self) -> Ulid {
        let mut last = self
            .inner
            .last_job
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let id = self.inner.entropy.ulid(self.now(), *last);
        *last = Some(id);
        id
    }

    /// The `msg_id` hashes of recent messages, per topic, as this handle read them.
    pub(crate) fn msgid_caches(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<Topic, messages::index::MsgIds>> {
        self.inner
            .msgids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The job ready index's state as this handle last read it.
    pub(crate) fn ready_state(&self) -> &Mutex<jobs::ready::State> {
        &self.inner.ready
    }

    /// The job documents this handle read, by commit (content-addressed, so never stale).
    pub(crate) fn doc_cache(&self) -> &jobs::records::DocCache {
        &self.inner.docs
    }

    /// The enqueue envelopes this handle checked, by job commit.
    pub(crate) fn envelope_cache(&self) -> &jobs::enqueuer::EnvelopeCache {
        &self.inner.envelopes
    }

    /// The catalog lines of jobs this handle enqueued, not appended yet.
    pub(crate) fn catalog_pending(&self) -> &jobs::catalog::Pending {
        &self.inner.catalog
    }

    /// Returns the message plane.
    pub fn messages(&self) -> messages::Messages<'_> {
        messages::Messages::new(self)
    }

    /// Returns the checkpoint plane.
    pub fn checkpoints(&self) -> checkpoints::Checkpoints<'_> {
        checkpoints::Checkpoints::new(self)
    }

    /// Resolves a revision of this repository to a commit (`jobs enqueue --checkout REV`).
    ///
    /// # Errors
    /// `NotFound` when it names no commit here.
    pub fn resolve_commit(&self, rev: &str) -> Result<Oid> {
        self.store().resolve_commit(rev).map_err(|e| {
            Error::new(
                ErrorCode::NotFound,
                format!("{e}; a checkout is HEAD, a branch, a tag or a commit id"),
            )
        })
    }

    /// The checkout a job enqueued here gets by default: `HEAD` of a work tree; none in a
    /// bare repository or on an unborn branch (ADR 0021).
    pub fn default_checkout(&self) -> Option<Oid> {
        self.store().work_dir()?;
        self.store().head_commit()
    }

    /// Returns this node's id, creating it (in local config) on first use.
    ///
    /// # Errors
    /// When the local configuration cannot be written.
    pub fn node_id(&self) -> Result<Ulid> {
        if let Some(n) = *self
            .inner
            .node
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
        {
            return Ok(n);
        }
        let _guard = self
            .store()
            .locks()
            .acquire(
                &["config".to_owned()],
                gatos_store::locks::DEFAULT_LOCK_TIMEOUT,
            )
            .map_err(gatos_store::Error::from)?;
        // Another process may have written it meanwhile: read the file again.
        let fresh = Store::open(self.store().git_dir())?.config_string("gatos.node");
        let node = match fresh.and_then(|v| v.trim().parse::<Ulid>().ok()) {
            Some(n) => n,
            None => {
                let n = self.entropy().ulid(self.now(), None);
                self.store()
                    .set_local_config(&[("gatos.node", vec![n.to_string()])])?;
                n
            }
        };
        *self
            .inner
            .node
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(node);
        Ok(node)
    }

    /// Takes a lock family for as long as the returned value lives, if it is free now
    /// (`gatosd` holds one per socket, so a live daemon's socket is never taken over).
    ///
    /// # Errors
    /// When the lock file cannot be used.
    pub fn try_hold(&self, family: &str) -> Result<Option<Held>> {
        let g = self
            .store()
            .locks()
            .try_acquire(family)
            .map_err(gatos_store::Error::from)?;
        Ok(g.map(Held))
    }

    /// Takes a lock family for as long as the returned value lives, waiting for it as every
    /// writer does (`DEFAULT_LOCK_TIMEOUT`).
    ///
    /// # Errors
    /// `Unavailable` when it stays taken; when the lock file cannot be used.
    pub(crate) fn hold(&self, family: &str) -> Result<Held> {
        let g = self
            .store()
            .locks()
            .acquire(
                &[family.to_owned()],
                gatos_store::locks::DEFAULT_LOCK_TIMEOUT,
            )
            .map_err(gatos_store::Error::from)?;
        Ok(Held(g))
    }

    /// Installs the function writers call when maintenance is due (the CLI starts a
    /// detached `git gatos maintenance --auto`; the daemon runs it on a thread).
    pub fn set_maintenance_hook(&self, hook: Option<MaintenanceHook>) {
        *self
            .inner
            .maintenance_hook
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = hook;
    }

    /// After a topic went from position `before` to `after`: every 64 positions, starts
    /// maintenance if it is due. By position, not per process, so one-shot CLI processes
    /// pay for the check once per 64 messages, not every time.
    pub(crate) fn after_append(&self, before: u64, after: u64) {
        self.inner
            .writes
            .fetch_add(after.saturating_sub(before), Ordering::Relaxed);
        if before / MAINTENANCE_CHECK_EVERY == after / MAINTENANCE_CHECK_EVERY {
            return;
        }
        self.maybe_maintain();
    }

    /// Starts maintenance if it is due and a hook is installed.
    pub(crate) fn maybe_maintain(&self) {
        if !self.inner.settings.auto_maintenance {
            return;
        }
        let hook = self
            .inner
            .maintenance_hook
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(hook) = hook
            && self
                .store()
                .maintenance_due(self.inner.settings.maintenance)
        {
            hook(self);
        }
    }

    pub(crate) fn cached_topic_config(&self, topic: &Topic, at: Oid) -> Option<TopicConfig> {
        let map = self
            .inner
            .topic_configs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(topic)
            .filter(|(o, _)| *o == at)
            .map(|(_, c)| c.clone())
    }

    pub(crate) fn cache_topic_config(&self, topic: &Topic, at: Oid, cfg: &TopicConfig) {
        let mut map = self
            .inner
            .topic_configs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.insert(topic.clone(), (at, cfg.clone()));
    }

    /// This handle's journals (ADR 0046).
    pub(crate) fn journals(&self) -> &messages::journal::Journals {
        &self.inner.journals
    }

    /// Whether plain publishes through this handle are journaled.
    pub(crate) fn journal_on(&self) -> bool {
        self.inner.journal_on.load(Ordering::Relaxed)
    }

    /// Turns journaling of plain publishes off (or back on, when `gatos.journal` allows)
    /// for every clone of this handle: a one-shot process (the CLI) writes directly, as
    /// its journal would be materialized before it exits anyway.
    pub fn set_journal(&self, on: bool) {
        self.inner
            .journal_on
            .store(on && self.inner.settings.journal, Ordering::Relaxed);
    }

    /// Makes every journaled publish and enqueue of this repository a commit now (any
    /// process's: the journals on disk, not only this handle's). What a face calls before
    /// it stops, and what a state, a snapshot, a sync and maintenance run first.
    ///
    /// The journal of a damaged topic (its head moved outside gatos to no message, or its
    /// summary does not read; ADR 0047) is left as it is, with a warning: its publishes
    /// stay acknowledged in it and become commits once the topic is repaired, and the
    /// topic's refs are read as they stand meanwhile. Returns the topics so left.
    ///
    /// # Errors
    /// The first journal that could not be materialized on a topic that is not damaged, or
    /// the enqueue journal's failure (the other journals still are materialized).
    pub fn flush_journals(&self) -> Result<Vec<Topic>> {
        let messages = self.messages().settle_healthy();
        let enqueues = jobs::journal::settle(self);
        let left = messages?;
        enqueues?;
        Ok(left.into_iter().map(|(t, _)| t).collect())
    }

    /// Runs `f` with this thread reading what is committed only: no journal of publishes
    /// or enqueues is materialized before its reads, so writes acknowledged from a journal
    /// and not yet commits are not seen (ADR 0046). For observers that must not wait on a
    /// journal nor make it commits: gatosd's metrics, and doctor's checks once a journal
    /// could not be materialized. `f` must not act on jobs (claim, finish, cancel): a job's
    /// lock is taken after its journaled enqueue became a ref, which this skips.
    pub fn committed_only<T>(&self, f: impl FnOnce() -> T) -> T {
        let _topics = messages::journal::Unsettled::enter();
        let _jobs = jobs::journal::Quiet::enter();
        f()
    }

    /// Materializes the enqueue journal if this handle's oldest record in it is at least
    /// `age` old (the journal flusher's turn).
    pub(crate) fn flush_enqueues_due(&self, age: std::time::Duration) {
        jobs::journal::flush_due(self, age);
    }

    /// What the job journal of this handle waits for (ADR 0046).
    pub(crate) fn enqueue_journal(&self) -> &jobs::journal::Pending {
        &self.inner.enqueue_journal
    }

    /// Whether this handle's journal flusher runs ([`Gatos::start_journal_flusher`]).
    pub(crate) fn journal_flusher_runs(&self) -> bool {
        *self
            .inner
            .journals
            .flusher
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends the job catalog's lines of the jobs this handle enqueued and still holds
    /// (they go in a few hundred at a time, before this handle lists, and when the last
    /// handle is dropped). A process that ends without dropping its handle calls it
    /// last; a failure is logged (a listing catches those jobs up from their refs).
    pub fn flush_catalog(&self) {
        self.jobs().flush_catalog();
    }

    /// Starts this handle's journal flusher, once: a thread that makes the publishes and
    /// enqueues this handle journaled commits and job refs every `gatos.journal.flushMs`
    /// (ADR 0046), so that plain `git` sees them within that bound while the process runs.
    /// Enqueues are journaled only by a handle whose flusher runs. A long-lived process
    /// calls it (gatosd, `git gatos worker`). Without it a journaled publish becomes a
    /// commit when a gatos reader or writer of its topic comes, when 4,096 records wait,
    /// or when the last handle is dropped. It stops when the last handle is dropped.
    pub fn start_journal_flusher(&self) {
        let mut started = self
            .inner
            .journals
            .flusher
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if *started {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        let flush = self.inner.settings.journal_flush;
        match std::thread::Builder::new()
            .name("gatos-journal".into())
            .spawn(move || messages::journal::run_flusher(weak, flush))
        {
            Ok(_) => *started = true,
            Err(e) => {
                tracing::warn!(error = %e, "could not start the journal flusher; readers materialize instead")
            }
        }
    }

    /// A handle on `inner` (the flusher's).
    pub(crate) fn from_inner(inner: Arc<Inner>) -> Gatos {
        Gatos { inner, actor: None }
    }

    pub(crate) fn combiner(&self, topic: &Topic) -> Arc<messages::publish::Combiner> {
        let mut map = self
            .inner
            .combiners
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.entry(topic.clone()).or_default().clone()
    }

    /// Returns the cached metadata of a topic's last message, if it is `head`.
    pub(crate) fn cached_tail(&self, topic: &Topic, head: Oid) -> Option<messages::chain::Meta> {
        let map = self
            .inner
            .tails
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(topic).filter(|m| m.commit == head).cloned()
    }

    pub(crate) fn cache_tail(&self, topic: &Topic, meta: messages::chain::Meta) {
        let mut map = self
            .inner
            .tails
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.insert(topic.clone(), meta);
    }

    pub(crate) fn cached_summary(&self, topic: &Topic, at: Oid) -> Option<u64> {
        let map = self
            .inner
            .summaries
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(topic).filter(|(o, _)| *o == at).map(|(_, s)| *s)
    }

    pub(crate) fn cache_summary(&self, topic: &Topic, at: Oid, through: u64) {
        let mut map = self
            .inner
            .summaries
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.insert(topic.clone(), (at, through));
    }
}
