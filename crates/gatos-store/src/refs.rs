//! Reading refs and changing them by compare-and-swap.
//!
//! Every edit carries its expected old value. A transaction holds the lock families of its
//! refs (see [`crate::locks`]) while gix holds the `.lock` files, and never waits inside gix:
//! a `.lock` it meets is handled by the rule of DESIGN §3 — if our family flock is held (by
//! us), the `.lock` belongs to a dead or foreign writer; once it is 2 s old it is removed,
//! younger ones are waited out.

pub mod names;
mod packed;
mod split;

use std::time::{Duration, Instant};

use gatos_types::Oid;
use gix::refs::transaction::{Change, LogChange, PreviousValue, RefEdit, RefLog};

use crate::error::{Error, Expect, Result};
use crate::locks;
use crate::locks::owners::{Census, Owner};
use crate::{Store, from_gix, to_gix};

pub use names::RefName;
pub use split::{PackedRecords, SplitListing};

/// One ref change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    /// The ref.
    pub name: RefName,
    /// What it must hold before.
    pub expect: Expect,
    /// What it will hold after; `None` deletes it.
    pub new: Option<Oid>,
}

impl Edit {
    /// A create-only edit.
    pub fn create(name: RefName, new: Oid) -> Edit {
        Edit {
            name,
            expect: Expect::Absent,
            new: Some(new),
        }
    }
    /// A compare-and-swap from `old` (or from nothing) to `new`.
    pub fn update(name: RefName, old: Option<Oid>, new: Oid) -> Edit {
        Edit {
            name,
            expect: old.map_or(Expect::Absent, Expect::Value),
            new: Some(new),
        }
    }
    /// A delete that expects `old`.
    pub fn delete(name: RefName, old: Oid) -> Edit {
        Edit {
            name,
            expect: Expect::Value(old),
            new: None,
        }
    }
}

/// What happened to one edit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The ref changed.
    Changed,
    /// A create-only edit found the ref already at the same value: nothing changed.
    AlreadyThere,
}

/// Options of a transaction.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long to wait for family locks and for stale `.lock` files to age.
    pub timeout: Duration,
    /// The reflog message (reflogs are off for gatos refs, but gix wants one).
    pub message: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout: locks::DEFAULT_LOCK_TIMEOUT,
            message: "gatos".to_owned(),
        }
    }
}

enum Failure {
    Cas { name: String, actual: Option<Oid> },
    Missing { name: Option<String> },
    LockHeld,
    Other(gix::Error),
}

fn classify(e: gix::Error) -> Failure {
    use gix::refs::file::transaction::prepare::{MustNotExist, ReferenceOutOfDate};
    if let Some(m) = e.downcast_any_ref::<MustNotExist>() {
        let actual = m.actual.try_id().map(from_gix);
        return Failure::Cas {
            name: m.full_name.to_string(),
            actual,
        };
    }
    if let Some(m) = e.downcast_any_ref::<ReferenceOutOfDate>() {
        let actual = m.actual.try_id().map(from_gix);
        return Failure::Cas {
            name: m.full_name.to_string(),
            actual,
        };
    }
    if e.is_retryable() {
        return Failure::LockHeld;
    }
    if crate::objects::is_vanished_dir(&e) {
        return Failure::Other(e);
    }
    if e.is_not_found() {
        return Failure::Missing { name: None };
    }
    Failure::Other(e)
}

fn to_edit(e: &Edit, message: &str) -> Result<RefEdit> {
    let name = gix::refs::FullName::try_from(e.name.as_str()).map_err(|err| Error::Corrupt {
        what: format!("ref name {:?}", e.name.as_str()),
        reason: err.to_string(),
    })?;
    let expected = match e.expect {
        Expect::Absent => PreviousValue::MustNotExist,
        Expect::Value(o) => PreviousValue::MustExistAndMatch(gix::refs::Target::Object(to_gix(o))),
        Expect::AbsentOr(o) => {
            PreviousValue::ExistingMustMatch(gix::refs::Target::Object(to_gix(o)))
        }
        Expect::Any => PreviousValue::Any,
    };
    let change = match e.new {
        Some(new) => Change::Update {
            log: LogChange {
                mode: RefLog::AndReference,
                force_create_reflog: false,
                message: message.into(),
            },
            expected,
            new: gix::refs::Target::Object(to_gix(new)),
        },
        None => {
            if matches!(e.expect, Expect::Absent) {
                return Err(Error::Corrupt {
                    what: format!("delete of {}", e.name),
                    reason: "a delete must expect a value".into(),
                });
            }
            Change::Delete {
                expected,
                log: RefLog::AndReference,
            }
        }
    };
    Ok(RefEdit {
        change,
        name,
        deref: false,
    })
}

/// How long stale-lock recovery waits for a family's lock held by a live writer.
pub const RECOVERY_WAIT: Duration = Duration::from_secs(2);

/// The length past which `refs-changed` is emptied by the writer that grew it.
pub const REFS_CHANGED_MAX: u64 = 1024 * 1024;

/// What [`Store::refs_generation`] reads: equal readings mean no gatos transaction moved
/// a ref under `refs/gatos/` in between (see there for the one exception).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefsGeneration {
    /// The file's device.
    pub dev: u64,
    /// Its inode.
    pub ino: u64,
    /// Its length.
    pub len: u64,
}

impl Store {
    /// `<git-dir>/gatos/topics-changed`: its modification time moves after every
    /// transaction that moves a message topic's ref, so a watcher can tell "nothing
    /// happened" from one `stat` instead of reading every watched head (ADR 0023). Writes
    /// by anything but gatos (plain git) do not move it.
    pub fn topics_stamp_path(&self) -> std::path::PathBuf {
        self.gatos_dir().join("topics-changed")
    }

    /// The stamp's modification time (seconds, nanoseconds); `None` before the first
    /// topic write.
    pub fn topics_stamp(&self) -> Option<(i64, i64)> {
        let st = rustix::fs::stat(self.topics_stamp_path()).ok()?;
        Some((st.st_mtime, i64::try_from(st.st_mtime_nsec).unwrap_or(0)))
    }

    fn stamp_topics_changed(&self) {
        let path = self.topics_stamp_path();
        let now = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_NOW,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_NOW,
            },
        };
        let touched =
            rustix::fs::utimensat(rustix::fs::CWD, &path, &now, rustix::fs::AtFlags::empty());
        if touched == Err(rustix::io::Errno::NOENT) {
            // First topic write: make the stamp (its creation is the change).
            let _ = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path);
        }
    }

    /// `<git-dir>/gatos/refs-changed`: one byte is appended to it after every transaction
    /// that moves a ref under `refs/gatos/` (ADR 0044: a reader that kept a state of the
    /// refs can tell from one `stat` that no gatos writer moved one since). Writes by
    /// anything but gatos (plain git) do not touch it.
    pub fn refs_changed_path(&self) -> std::path::PathBuf {
        self.gatos_dir().join("refs-changed")
    }

    /// The refs' generation: the `refs-changed` file's device, inode and length (`None`
    /// before the first gatos write). It differs after any gatos transaction that moved a
    /// ref under `refs/gatos/` and completed after the previous reading, except across a
    /// truncation (the file is emptied past [`REFS_CHANGED_MAX`] bytes), which can give a
    /// length seen before only after another `REFS_CHANGED_MAX` transactions.
    pub fn refs_generation(&self) -> Option<RefsGeneration> {
        let st = rustix::fs::stat(self.refs_changed_path()).ok()?;
        Some(RefsGeneration {
            dev: st.st_dev,
            ino: st.st_ino,
            len: u64::try_from(st.st_size).unwrap_or(0),
        })
    }

    /// Appends one byte to `refs-changed` (and empties it past [`REFS_CHANGED_MAX`]). A
    /// failure is logged: readers then rely on their own rescan bound.
    fn bump_refs_generation(&self) {
        use std::io::Write as _;
        let path = self.refs_changed_path();
        let bumped = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| {
                f.write_all(b"+")?;
                if f.metadata()?.len() > REFS_CHANGED_MAX {
                    f.set_len(0)?;
                }
                Ok(())
            });
        if let Err(e) = bumped {
            tracing::warn!(path = %path.display(), error = %e, "could not mark the refs changed; a daemon may answer a live GraphQL query from a state up to a second old");
        }
    }

    /// Reads a ref; `None` when it does not exist.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for a symbolic ref; [`Error::Git`] when the ref store fails.
    pub fn read_ref(&self, name: &RefName) -> Result<Option<Oid>> {
        self.read_ref_str(name.as_str())
    }

    /// Reads a ref by its full name, exactly: the loose file, else the packed entry.
    ///
    /// (gix treats a name as a partial one and probes `tags/`, `heads/`, `remotes/` and
    /// `…/HEAD` variants when it is missing — four wasted opens per lookup, three lookups
    /// per publish.)
    ///
    /// # Errors
    /// As [`Store::read_ref`]; [`Error::Corrupt`] for a loose file that is not an id.
    pub fn read_ref_str(&self, name: &str) -> Result<Option<Oid>> {
        let [found] = self.read_refs_str([name])?;
        Ok(found)
    }

    /// Reads several refs by their full names, as [`Store::read_ref_str`] reads each, but
    /// looks in `packed-refs` once for all the names without a loose file (each lookup of
    /// it checks the file's `stat`: a job's four refs, two or three of them missing, were
    /// two or three such checks).
    ///
    /// # Errors
    /// As [`Store::read_ref_str`].
    pub fn read_refs_str<const N: usize>(&self, names: [&str; N]) -> Result<[Option<Oid>; N]> {
        let found = self.read_refs_raw(names)?;
        // A job that is not there yet may be an acknowledged enqueue still in the journal.
        let missing_job = names
            .iter()
            .zip(&found)
            .any(|(name, f)| f.is_none() && is_job_ref(name));
        if missing_job && self.before_job_read()? {
            return self.read_refs_raw(names);
        }
        Ok(found)
    }

    fn read_refs_raw<const N: usize>(&self, names: [&str; N]) -> Result<[Option<Oid>; N]> {
        let mut found = [None; N];
        let mut missing = false;
        for (name, slot) in names.iter().zip(found.iter_mut()) {
            match self.read_loose_ref(name)? {
                Some(id) => *slot = Some(id),
                None => missing = true,
            }
        }
        if !missing {
            return Ok(found);
        }
        let repo = self.handle();
        let packed = repo
            .refs
            .cached_packed_buffer()
            .map_err(|e| Error::git("reading packed-refs", &e))?;
        let Some(packed) = packed else {
            return Ok(found);
        };
        for (name, slot) in names.iter().zip(found.iter_mut()) {
            if slot.is_none() {
                *slot = packed
                    .try_find(*name)
                    .map_err(|e| Error::git(format!("looking up {name} in packed-refs"), &e))?
                    .map(|r| from_gix(&r.target()));
            }
        }
        Ok(found)
    }

    /// A ref's loose file; `None` when there is none.
    fn read_loose_ref(&self, name: &str) -> Result<Option<Oid>> {
        let path = self.ref_path(name);
        let mut buf = [0u8; 128];
        match read_small(&path, &mut buf) {
            Ok(read) => parse_loose_ref(name, read.bytes(&buf)).map(Some),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound
                        | std::io::ErrorKind::NotADirectory
                        | std::io::ErrorKind::IsADirectory
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(Error::io(format!("reading ref {name}"), e)),
        }
    }

    /// Installs what a reader of job refs runs first (once per store; later calls are
    /// ignored and return false): [`Store::read_ref`] of a job's `…/job` ref that finds
    /// nothing (and [`Store::read_refs_str`] when any of its names is one: then all are read
    /// again), and every listing whose prefix overlaps `refs/gatos/jobs/`, run it and
    /// read again (ADR 0046: the gatos crate materializes the journaled enqueues there).
    /// The hook must not read job refs through this store in a way that runs it again.
    pub fn set_job_read_hook(&self, hook: crate::JobReadHook) -> bool {
        self.inner.job_read_hook.set(hook).is_ok()
    }

    /// Runs the job read hook, if one is installed. True when it ran.
    fn before_job_read(&self) -> Result<bool> {
        match self.inner.job_read_hook.get() {
            Some(hook) => {
                hook().map_err(|(code, message)| Error::Hook { code, message })?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Runs the job read hook before a listing under `prefix` when that may hold job refs.
    fn before_listing(&self, prefix: &str) -> Result<()> {
        let jobs = names::JOBS_PREFIX;
        if jobs.starts_with(prefix) || prefix.starts_with(jobs) {
            self.before_job_read()?;
        }
        Ok(())
    }

    /// [`Store::read_ref_str`] without the job read hook.
    pub(crate) fn read_ref_raw(&self, name: &str) -> Result<Option<Oid>> {
        let [found] = self.read_refs_raw([name])?;
        Ok(found)
    }

    /// Lists the refs whose full name starts with `prefix`, sorted by name.
    ///
    /// # Errors
    /// [`Error::Git`] when the ref store cannot be read.
    pub fn list_refs(&self, prefix: &str) -> Result<Vec<(RefName, Oid)>> {
        self.before_listing(prefix)?;
        // `git pack-refs` (maintenance) deletes loose ref files and directories while we walk
        // them: a file or directory that vanished mid-walk means "list again" (the refs are
        // in packed-refs by then), as git itself does.
        // Deleting thousands of loose refs takes a while on a slow disk: back off, for up
        // to the lock timeout.
        listed_again(prefix, || self.list_refs_once(prefix))
    }

    fn list_refs_once(
        &self,
        prefix: &str,
    ) -> std::result::Result<Vec<(RefName, Oid)>, (Error, bool)> {
        fn fail(context: String, e: &(dyn std::error::Error + 'static)) -> (Error, bool) {
            let mut vanished = false;
            let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
            while let Some(c) = cause {
                if c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
                {
                    vanished = true;
                }
                cause = c.source();
            }
            let chain = format!("{e:?}");
            vanished |= chain.contains("kind: NotFound") || chain.contains("No such file");
            (
                Error::Git {
                    context,
                    message: e.to_string(),
                },
                vanished,
            )
        }
        // gix reads packed-refs when the platform is made, then walks the loose files. A
        // `pack-refs --prune` that writes packed-refs and deletes a loose ref before the walk
        // reaches it would hide that ref from both views without any error. Git avoids this
        // by reading loose refs first; here, a packed-refs that changed during the listing
        // means "list again".
        let packed_before = self.packed_refs_stamp();
        let repo = self.handle();
        let platform = repo
            .references()
            .map_err(|e| fail("listing refs".into(), &e))?;
        let iter = platform
            .prefixed(prefix)
            .map_err(|e| fail(format!("listing refs under {prefix}"), &e))?;
        let mut out = Vec::new();
        for r in iter {
            let r = match r {
                Ok(r) => r,
                // A file in the ref directory that is not a ref (a crash or a manual edit
                // left it) must not hide every other ref: skip it; `doctor` reports it.
                Err(e) if is_undecodable(&e) => {
                    tracing::warn!(prefix, error = %e, "skipping a file that is not a ref");
                    continue;
                }
                Err(e) => return Err(fail(format!("listing refs under {prefix}"), &e)),
            };
            if let Some(id) = r.try_id() {
                out.push((
                    RefName::from_repository(r.name().as_bstr().to_string()),
                    from_gix(&id),
                ));
            }
        }
        if self.packed_refs_stamp() != packed_before {
            return Err(packed_refs_changed(prefix));
        }
        out.sort();
        Ok(out)
    }

    /// Lists, sorted by name, at most `max` refs whose full name starts with `prefix` and
    /// sorts after `after` (from the start of `prefix` when `None`): a page of a large
    /// namespace at the cost of the page once its refs are packed (a binary search in
    /// `packed-refs`, then as many records as the page needs), plus a walk of the loose
    /// refs under `prefix` (few once maintenance packed them). Loose refs are read before
    /// `packed-refs`, as git reads them, and a `packed-refs` that changed meanwhile makes it
    /// list again, as [`Store::list_refs`] does.
    ///
    /// # Errors
    /// [`Error::Git`] when the ref store cannot be read.
    pub fn list_refs_after(
        &self,
        prefix: &str,
        after: Option<&str>,
        max: usize,
    ) -> Result<Vec<(RefName, Oid)>> {
        self.before_listing(prefix)?;
        listed_again(prefix, || self.list_refs_after_once(prefix, after, max))
    }

    fn list_refs_after_once(
        &self,
        prefix: &str,
        after: Option<&str>,
        max: usize,
    ) -> std::result::Result<Vec<(RefName, Oid)>, (Error, bool)> {
        let failed = |context: String, message: String, vanished: bool| {
            (Error::Git { context, message }, vanished)
        };
        let wanted = |name: &[u8]| {
            name.starts_with(prefix.as_bytes()) && after.is_none_or(|a| name > a.as_bytes())
        };
        let packed_before = self.packed_refs_stamp();
        // Loose refs first, then packed-refs.
        let mut found: std::collections::BTreeMap<Vec<u8>, Oid> = std::collections::BTreeMap::new();
        self.walk_loose(prefix, |name, id| {
            if wanted(name) {
                found.insert(name.to_vec(), id);
            }
        })?;
        let repo = self.handle();
        // Then packed-refs, from the first record after `after` (or at `prefix`).
        let packed = repo
            .refs
            .cached_packed_buffer()
            .map_err(|e| failed("reading packed-refs".into(), e.to_string(), false))?;
        if let Some(packed) = packed {
            let bytes: &[u8] = packed.as_ref().as_ref();
            let start = match after {
                // The least name after `after` is `after` with a NUL (no ref name holds one).
                Some(a) if a.as_bytes() >= prefix.as_bytes() => {
                    lower_bound(bytes, &[a.as_bytes(), b"\0"].concat())
                }
                _ => lower_bound(bytes, prefix.as_bytes()),
            };
            let records = gix::refs::packed::Iter::new(&bytes[start..], gix::hash::Kind::Sha1)
                .map_err(|e| failed("reading packed-refs".into(), e.to_string(), false))?;
            for r in records.take(max) {
                let r =
                    r.map_err(|e| failed("reading packed-refs".into(), e.to_string(), false))?;
                let name = r.name.as_bstr();
                if !name.starts_with(prefix.as_bytes()) {
                    break;
                }
                // A loose ref wins over its packed copy.
                found
                    .entry(name.to_vec())
                    .or_insert_with(|| from_gix(&r.target()));
            }
        }
        if self.packed_refs_stamp() != packed_before {
            return Err(packed_refs_changed(prefix));
        }
        Ok(found
            .into_iter()
            .take(max)
            .map(|(name, oid)| {
                (
                    RefName::from_repository(String::from_utf8_lossy(&name).into_owned()),
                    oid,
                )
            })
            .collect())
    }

    /// Lists, sorted by name, the refs whose full name starts with `prefix` (under `refs/`)
    /// and sorts before `until`: a listing of the oldest part of a namespace whose names
    /// grow with time (job ids), at the cost of that part. A loose directory is entered only
    /// when a name under it can sort before `until`, a loose file at or after it is not
    /// opened, and `packed-refs` is read from `prefix` up to `until`. Loose refs are read
    /// before `packed-refs`, and a `packed-refs` that changed meanwhile makes it list again,
    /// as [`Store::list_refs`] does; a loose file that is not a ref (a symbolic ref, or
    /// damaged) is skipped as there, and hides its packed copy as there.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for a prefix outside `refs/`; [`Error::Git`] or [`Error::Io`]
    /// when the refs cannot be listed.
    pub fn list_refs_before(&self, prefix: &str, until: &str) -> Result<Vec<(RefName, Oid)>> {
        if !prefix.starts_with("refs/") {
            return Err(Error::Unsupported(format!(
                "listing refs before a name under {prefix}: only prefixes under refs/"
            )));
        }
        self.before_listing(prefix)?;
        listed_again(prefix, || self.list_refs_before_once(prefix, until))
    }

    fn list_refs_before_once(
        &self,
        prefix: &str,
        until: &str,
    ) -> std::result::Result<Vec<(RefName, Oid)>, (Error, bool)> {
        let packed_before = self.packed_refs_stamp();
        let mut found: std::collections::BTreeMap<String, Oid> = std::collections::BTreeMap::new();
        // Loose files that are not refs: their packed copies are hidden, as git hides them.
        let mut shadowed = std::collections::BTreeSet::new();
        // The loose refs: a directory is entered only when some name under it can sort
        // before `until`, that is when its path followed by `/` does.
        let (dir_part, _) = prefix.rsplit_once('/').unwrap_or(("", prefix));
        let mut pending = vec![dir_part.to_owned()];
        while let Some(rel) = pending.pop() {
            let entries = match std::fs::read_dir(self.ref_path(&rel)) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err((
                        Error::io(format!("listing loose refs under {rel}"), e),
                        false,
                    ));
                }
            };
            for entry in entries {
                let entry = entry.map_err(|e| {
                    let vanished = e.kind() == std::io::ErrorKind::NotFound;
                    (
                        Error::io(format!("listing loose refs under {rel}"), e),
                        vanished,
                    )
                })?;
                // No ref name has a component starting with `.` (git's rule): such files
                // are not refs, as for `list_refs`.
                let Some(file) = entry
                    .file_name()
                    .to_str()
                    .filter(|f| !f.starts_with('.'))
                    .map(str::to_owned)
                else {
                    continue;
                };
                let name = format!("{rel}/{file}");
                let under = name.starts_with(prefix) || prefix.starts_with(&name);
                if !under || (name.as_str() >= until && format!("{name}/").as_str() >= until) {
                    continue;
                }
                let kind = match entry.file_type() {
                    Ok(k) => k,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err((Error::io(format!("reading {name}"), e), false)),
                };
                if kind.is_dir() {
                    pending.push(name);
                } else if kind.is_file()
                    && name.starts_with(prefix)
                    && !name.ends_with(".lock")
                    && name.as_str() < until
                {
                    let mut buf = [0u8; 128];
                    match read_small(&self.ref_path(&name), &mut buf) {
                        Ok(read) => match parse_loose_ref(&name, read.bytes(&buf)) {
                            Ok(id) => {
                                found.insert(name, id);
                            }
                            // A symbolic ref names no object: left out, as `list_refs` does.
                            Err(Error::Unsupported(_)) => {
                                shadowed.insert(name);
                            }
                            Err(e) => {
                                tracing::warn!(name, error = %e, "skipping a file that is not a ref");
                                shadowed.insert(name);
                            }
                        },
                        // Packed and removed meanwhile: the packed-refs check says so.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err((Error::io(format!("reading {name}"), e), false)),
                    }
                }
            }
        }
        let repo = self.handle();
        let packed = repo.refs.cached_packed_buffer().map_err(|e| {
            (
                Error::Git {
                    context: "reading packed-refs".into(),
                    message: e.to_string(),
                },
                false,
            )
        })?;
        if let Some(packed) = packed {
            let bytes: &[u8] = packed.as_ref().as_ref();
            let start = lower_bound(bytes, prefix.as_bytes());
            let bad = |e: String| {
                (
                    Error::Git {
                        context: "reading packed-refs".into(),
                        message: e,
                    },
                    false,
                )
            };
            let records = gix::refs::packed::Iter::new(&bytes[start..], gix::hash::Kind::Sha1)
                .map_err(|e| bad(e.to_string()))?;
            for r in records {
                let r = r.map_err(|e| bad(e.to_string()))?;
                let name: &[u8] = r.name.as_bstr();
                if !name.starts_with(prefix.as_bytes()) || name >= until.as_bytes() {
                    break;
                }
                // A loose ref wins over its packed copy.
                let name = String::from_utf8_lossy(name).into_owned();
                if !shadowed.contains(&name) {
                    found.entry(name).or_insert_with(|| from_gix(&r.target()));
                }
            }
        }
        if self.packed_refs_stamp() != packed_before {
            return Err(packed_refs_changed(prefix));
        }
        Ok(found
            .into_iter()
            .map(|(name, oid)| (RefName::from_repository(name), oid))
            .collect())
    }

    /// Identifies the current `packed-refs` file: a rewrite (a rename over it) changes the
    /// inode, and an in-place change the size or mtime. `None` when there is none.
    fn packed_refs_stamp(&self) -> Option<crate::FileStamp> {
        crate::file_stamp(&self.common_dir().join("packed-refs"))
    }

    /// Applies edits as one transaction under their lock families.
    ///
    /// All edits are checked before any is applied; if one expectation fails, nothing
    /// changes. Over loose files the final renames are not crash-atomic (DESIGN §3), so
    /// callers that change several refs order them so that every prefix is recoverable, or
    /// use one edit per call.
    ///
    /// # Errors
    /// [`Error::CasMismatch`] naming the ref and what it holds, [`Error::Locked`] when a
    /// live foreign writer keeps a `.lock` past the timeout, [`Error::Lock`] when the family
    /// lock is busy.
    pub fn update_refs(&self, edits: &[Edit], opts: &Options) -> Result<Vec<Applied>> {
        if edits.is_empty() {
            return Ok(Vec::new());
        }
        let mut families: Vec<String> = edits
            .iter()
            .map(|e| names::lock_family_of(e.name.as_str()))
            .collect();
        let has_delete = edits.iter().any(|e| e.new.is_none());
        if has_delete {
            families.push(PACKED_REFS_FAMILY.to_owned());
        }
        let _guard = self.locks().acquire(&families, opts.timeout)?;
        self.update_refs_locked(edits, opts, has_delete)
    }

    /// Applies edits while the caller already holds their lock families (and
    /// `packed-refs` for deletes).
    ///
    /// # Errors
    /// As [`Store::update_refs`].
    pub fn update_refs_locked(
        &self,
        edits: &[Edit],
        opts: &Options,
        holds_packed: bool,
    ) -> Result<Vec<Applied>> {
        let gix_edits: Vec<RefEdit> = edits
            .iter()
            .map(|e| to_edit(e, &opts.message))
            .collect::<Result<_>>()?;
        let deadline = Instant::now() + opts.timeout;
        let mut vanished = 0;
        // Name the .lock files this transaction may create before gix creates them, so a
        // crash leaves proof that they are gatos's (ADR 0020).
        let mut lock_paths: Vec<String> = edits
            .iter()
            .map(|e| format!("{}.lock", e.name.as_str()))
            .collect();
        lock_paths.push(PACKED_REFS_LOCK.to_owned());
        let record = self.locks().owners().record(&lock_paths)?;
        loop {
            let repo = self.handle();
            let attempt = repo
                .refs
                .transaction()
                .prepare(
                    gix_edits.clone(),
                    gix::lock::acquire::Fail::Immediately,
                    // When packed-refs exists, gix holds packed-refs.lock during every
                    // transaction (to read current values consistently), so concurrent
                    // writers of unrelated refs meet there: wait for it briefly with
                    // gix's backoff; a lock still held after that is handled below (a
                    // dead writer's is removed once stale).
                    gix::lock::acquire::Fail::AfterDurationWithBackoff(PACKED_LOCK_WAIT),
                )
                .and_then(|tx| tx.commit(None));
            match attempt {
                Ok(done) => {
                    let applied = done
                        .iter()
                        .zip(edits)
                        .map(|(d, e)| match (&d.change, e.expect) {
                            (
                                Change::Update {
                                    expected: PreviousValue::MustExistAndMatch(_),
                                    ..
                                },
                                Expect::Absent,
                            ) => Applied::AlreadyThere,
                            _ => Applied::Changed,
                        })
                        .collect();
                    self.sync_refs(edits)?;
                    // Readers of ref states learn that refs moved (ADR 0044).
                    if edits
                        .iter()
                        .any(|e| e.name.as_str().starts_with(names::GATOS_PREFIX))
                    {
                        self.bump_refs_generation();
                    }
                    // A transaction touching a topic's refs moves the topics stamp.
                    if edits
                        .iter()
                        .any(|e| e.name.as_str().starts_with(names::MESSAGES_PREFIX))
                    {
                        self.stamp_topics_changed();
                    }
                    return Ok(applied);
                }
                Err(e) => match classify(e) {
                    Failure::Cas { name, actual } => {
                        let expected = edits
                            .iter()
                            .find(|e| e.name.as_str() == name)
                            .map_or(Expect::Any, |e| e.expect);
                        return Err(Error::CasMismatch {
                            name,
                            expected,
                            actual,
                        });
                    }
                    Failure::Missing { name } => {
                        // An edit expected a value and the ref is gone: find which one.
                        let first = edits.iter().find(|e| {
                            matches!(e.expect, Expect::Value(_))
                                && self.read_ref_raw(e.name.as_str()).ok().flatten().is_none()
                        });
                        let (name, expected) = match first {
                            Some(e) => (e.name.to_string(), e.expect),
                            None => (
                                name.unwrap_or_else(|| edits[0].name.to_string()),
                                edits[0].expect,
                            ),
                        };
                        return Err(Error::CasMismatch {
                            name,
                            expected,
                            actual: None,
                        });
                    }
                    Failure::LockHeld => {
                        drop(repo);
                        self.clear_stale_locks(edits, holds_packed, deadline, &record)?;
                    }
                    // `git pack-refs` removes empty ref directories, possibly between gix
                    // creating one and its lock file: retry, as git does.
                    Failure::Other(e)
                        if vanished < crate::objects::RACE_RETRIES
                            && crate::objects::is_vanished_dir(&e) =>
                    {
                        vanished += 1;
                    }
                    Failure::Other(e) => return Err(Error::git("updating refs", &e)),
                },
            }
        }
    }

    /// Deals with `.lock` files met by a transaction whose families we hold: removes the
    /// ones a dead gatos writer left (ADR 0020), waits a little for any other — a live gatos
    /// writer's `packed-refs.lock`, or a foreign one (plain `git`), which gatos never
    /// removes: after the deadline the write fails with [`Error::Locked`].
    fn clear_stale_locks(
        &self,
        edits: &[Edit],
        holds_packed: bool,
        deadline: Instant,
        own: &locks::owners::Record,
    ) -> Result<()> {
        let mut paths: Vec<(String, String, bool)> = edits
            .iter()
            .map(|e| {
                (
                    e.name.to_string(),
                    format!("{}.lock", e.name.as_str()),
                    true,
                )
            })
            .collect();
        paths.push((
            PACKED_REFS_FAMILY.to_owned(),
            PACKED_REFS_LOCK.to_owned(),
            holds_packed,
        ));
        let census = self.locks().owners().census(Some(own.path()))?;
        let mut waiting_for: Option<String> = None;
        for (name, rel, family_held) in paths {
            let path = self.common_dir().join(&rel);
            let Some(mtime) = mtime_of(&path) else {
                continue;
            };
            match census.owner_of(&rel, mtime) {
                Owner::Dead(_) => {
                    // packed-refs.lock: its family as well, when we do not hold it, so a
                    // `git pack-refs` run by gatos is never raced.
                    let _packed = if family_held {
                        None
                    } else {
                        match self.locks().try_acquire(PACKED_REFS_FAMILY)? {
                            Some(g) => Some(g),
                            None => {
                                waiting_for = Some(name);
                                continue;
                            }
                        }
                    };
                    tracing::warn!(lock = %path.display(), "removing a lock left by a dead gatos writer");
                    remove_lock(&path)?;
                }
                Owner::Live | Owner::Foreign => waiting_for = Some(name),
            }
        }
        self.retire_finished(census);
        if let Some(name) = waiting_for {
            if Instant::now() >= deadline {
                return Err(Error::Locked { name });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Removes the dead records none of whose locks remain.
    fn retire_finished(&self, census: Census) {
        let done: Vec<bool> = census
            .dead
            .iter()
            .enumerate()
            .map(|(i, d)| {
                d.locks.iter().all(|rel| {
                    mtime_of(&self.common_dir().join(rel))
                        .is_none_or(|m| census.owner_of(rel, m) != Owner::Dead(i))
                })
            })
            .collect();
        for (d, done) in census.dead.into_iter().zip(done) {
            if done {
                d.retire();
            }
        }
    }

    /// Fsyncs the ref files an edit wrote, when `gatos.fsync` is on.
    fn sync_refs(&self, edits: &[Edit]) -> Result<()> {
        if !self.is_durable() {
            return Ok(());
        }
        let mut paths: Vec<std::path::PathBuf> = edits
            .iter()
            .map(|e| self.ref_path(e.name.as_str()))
            .collect();
        if edits.iter().any(|e| e.new.is_none()) {
            paths.push(self.common_dir().join("packed-refs"));
        }
        self.fsync_paths(crate::durability::Step::Refs, &paths)
    }

    /// Removes the `.lock` files dead gatos writers left (daemon start, `doctor --fix`):
    /// those an owner record of a dead writer names and owns (ADR 0020), each under its
    /// family's flock, waited for up to [`RECOVERY_WAIT`] (a live writer of the family
    /// holds it for moments; tried once, recovery lost to such a writer now and then and
    /// left the lock). Any other lock file is left alone, however old; a dead writer's lock
    /// whose family stays busy longer is left for the next recovery.
    ///
    /// Returns the paths removed.
    ///
    /// # Errors
    /// When the records cannot be read or a lock cannot be removed.
    pub fn recover_stale_locks(&self) -> Result<Vec<std::path::PathBuf>> {
        let census = self.locks().owners().census(None)?;
        let mut removed = Vec::new();
        for (i, d) in census.dead.iter().enumerate() {
            for rel in &d.locks {
                let path = self.common_dir().join(rel);
                let Some(mtime) = mtime_of(&path) else {
                    continue;
                };
                if census.owner_of(rel, mtime) != Owner::Dead(i) {
                    continue;
                }
                let family = if rel == PACKED_REFS_LOCK {
                    PACKED_REFS_FAMILY.to_owned()
                } else {
                    names::lock_family_of(rel.strip_suffix(".lock").unwrap_or(rel))
                };
                let _g = match self
                    .locks()
                    .acquire(std::slice::from_ref(&family), RECOVERY_WAIT)
                {
                    Ok(g) => g,
                    Err(locks::Error::Busy { .. }) => {
                        tracing::info!(lock = %path.display(), %family, "a dead gatos writer's lock is left for now: its family stays busy");
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
                // Looked at again after the wait: the family's writer may have removed the
                // dead writer's lock meanwhile and a live one made its own in its place
                // (`packed-refs.lock` is taken by every transaction, not only under its
                // family's lock).
                if mtime_of(&path) != Some(mtime) {
                    continue;
                }
                tracing::warn!(lock = %path.display(), "removing a lock left by a dead gatos writer");
                if remove_lock(&path)? {
                    removed.push(path);
                }
            }
        }
        self.retire_finished(census);
        Ok(removed)
    }

    /// Lists the Git `.lock` files of the repository — under `refs/`, and those beside
    /// `packed-refs`, `config`, `index`, `HEAD` in the git dir — with their ages and who
    /// owns them.
    ///
    /// # Errors
    /// When a directory or the owner records cannot be read.
    pub fn lock_files(&self) -> Result<Vec<LockFile>> {
        let mut found = Vec::new();
        collect_locks(&self.common_dir().join("refs"), &mut found)?;
        let mut tops = vec![self.common_dir().to_owned()];
        if self.git_dir() != self.common_dir() {
            tops.push(self.git_dir().to_owned());
        }
        for dir in tops {
            let entries = std::fs::read_dir(&dir)
                .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
            for entry in entries.flatten() {
                let p = entry.path();
                if p.extension().is_some_and(|x| x == "lock") && p.is_file() {
                    found.push(p);
                }
            }
        }
        found.sort();
        found.dedup();
        let census = self.locks().owners().census(None)?;
        Ok(found
            .into_iter()
            .filter_map(|path| {
                let mtime = mtime_of(&path)?;
                let rel = path
                    .strip_prefix(self.common_dir())
                    .ok()
                    .map(|r| r.to_string_lossy().into_owned());
                let owner = match rel.map(|r| census.owner_of(&r, mtime)) {
                    Some(Owner::Dead(_)) => LockOwner::GatosDead,
                    Some(Owner::Live) => LockOwner::GatosLive,
                    Some(Owner::Foreign) | None => LockOwner::Foreign,
                };
                let age = std::time::SystemTime::now()
                    .duration_since(mtime)
                    .unwrap_or(Duration::ZERO);
                Some(LockFile { path, age, owner })
            })
            .collect())
    }

    /// Removes a lock file no gatos writer owns (`doctor --fix --force`): the operator has
    /// judged that no process holds it. Refuses anything but a `*.lock` file of this
    /// repository's git dir that is still not gatos's.
    ///
    /// Returns whether it was there to remove.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for a path that is not such a lock file; I/O errors.
    pub fn remove_foreign_lock(&self, path: &std::path::Path) -> Result<bool> {
        let inside = path.starts_with(self.common_dir()) || path.starts_with(self.git_dir());
        if !inside || path.extension().is_none_or(|x| x != "lock") {
            return Err(Error::Unsupported(format!(
                "{} is not a lock file of this repository",
                path.display()
            )));
        }
        let listed = self
            .lock_files()?
            .into_iter()
            .any(|l| l.path == path && l.owner == LockOwner::Foreign);
        if !listed {
            return Ok(false);
        }
        tracing::warn!(lock = %path.display(), "removing a foreign lock file (forced)");
        remove_lock(path)
    }
}

/// The name of packed-refs' lock file, relative to the common dir.
pub const PACKED_REFS_LOCK: &str = "packed-refs.lock";

/// Who owns a Git `.lock` file (ADR 0020).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockOwner {
    /// Not gatos: plain git or another tool, live or not — gatos cannot tell.
    Foreign,
    /// A gatos writer that is still running.
    GatosLive,
    /// A gatos writer that died; [`Store::recover_stale_locks`] removes it.
    GatosDead,
}

/// A `.lock` file found in the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockFile {
    /// Where.
    pub path: std::path::PathBuf,
    /// How long since it was last written.
    pub age: Duration,
    /// Whose.
    pub owner: LockOwner,
}

fn mtime_of(path: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).ok()?.modified().ok()
}

/// Removes a lock file; `false` when it was already gone.
fn remove_lock(path: &std::path::Path) -> Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
    }
}

/// What [`read_small`] read.
enum Small {
    /// The whole file, this many bytes at the start of the buffer.
    Fits(usize),
    /// A file larger than the buffer, whole.
    Larger(Vec<u8>),
}

impl Small {
    /// The file's bytes, given the buffer it was read into.
    fn bytes<'a>(&'a self, buf: &'a [u8]) -> &'a [u8] {
        match self {
            Small::Fits(n) => &buf[..*n],
            Small::Larger(all) => all,
        }
    }
}

/// Reads a small file into `buf` with an open, reads until the end and a close: no `stat`
/// for a size hint, which `std::fs::read` makes (a ref is read several times per job action).
fn read_small(path: &std::path::Path, buf: &mut [u8]) -> std::io::Result<Small> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)?;
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => return Ok(Small::Fits(n)),
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let mut all = buf.to_vec();
    file.read_to_end(&mut all)?;
    Ok(Small::Larger(all))
}

/// Whether `name` is a job's `refs/gatos/jobs/<id>/job`, the one ref an enqueue creates.
fn is_job_ref(name: &str) -> bool {
    name.strip_prefix(names::JOBS_PREFIX)
        .and_then(|rest| rest.strip_suffix("/job"))
        .is_some_and(|id| !id.contains('/'))
}

fn parse_loose_ref(name: &str, bytes: &[u8]) -> Result<Oid> {
    let text = std::str::from_utf8(bytes).unwrap_or("").trim();
    if text.starts_with("ref:") {
        return Err(Error::Unsupported(format!("{name} is a symbolic ref")));
    }
    text.parse().map_err(|_| Error::Corrupt {
        what: format!("ref {name}"),
        reason: "not an object id".into(),
    })
}

/// The lock family guarding `packed-refs` (deletes and `git pack-refs`).
pub const PACKED_REFS_FAMILY: &str = "packed-refs";

/// How long a transaction waits (with gix's backoff) for `packed-refs.lock`, which gix
/// takes for every transaction once `packed-refs` exists.
const PACKED_LOCK_WAIT: Duration = Duration::from_millis(500);

fn collect_locks(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
        let path = entry.path();
        let ft = entry
            .file_type()
            .map_err(|e| Error::io(format!("stat {}", path.display()), e))?;
        if ft.is_dir() {
            collect_locks(&path, out)?;
        } else if path.extension().is_some_and(|x| x == "lock") {
            out.push(path);
        }
    }
    Ok(())
}

/// Runs a listing, and again while it fails because a ref vanished under it (a
/// `pack-refs --prune` moving loose refs into `packed-refs`), backing off from 2 ms to
/// 100 ms, for up to the lock timeout.
fn listed_again<T>(
    prefix: &str,
    mut once: impl FnMut() -> std::result::Result<T, (Error, bool)>,
) -> Result<T> {
    let deadline = Instant::now() + locks::DEFAULT_LOCK_TIMEOUT;
    let mut pause = Duration::from_millis(2);
    loop {
        match once() {
            Err((e, vanished)) if vanished && Instant::now() < deadline => {
                tracing::debug!(prefix, error = %e, "a ref vanished while listing; listing again");
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err((e, _)) => return Err(e),
            Ok(v) => return Ok(v),
        }
    }
}

/// The offset of the first record of a sorted `packed-refs` body (its header left out)
/// whose name is not below `key`: a binary search over byte offsets, each probe moved back
/// to the start of its record (a `^` line is the peeled value of the record before it).
fn lower_bound(bytes: &[u8], key: &[u8]) -> usize {
    let line_start = |i: usize| {
        bytes[..i]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1)
    };
    let line_end = |i: usize| {
        bytes[i..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |p| i + p + 1)
    };
    let (mut lo, mut hi) = (0, bytes.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let mut start = line_start(mid);
        while start > lo && bytes.get(start) == Some(&b'^') {
            start = line_start(start - 1);
        }
        let mut end = line_end(start);
        while bytes.get(end) == Some(&b'^') {
            end = line_end(end);
        }
        let line = &bytes[start..line_end(start)];
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let name = line
            .iter()
            .position(|&b| b == b' ')
            .map_or(&line[..0], |p| &line[p + 1..]);
        if name < key {
            lo = end;
        } else {
            hi = start;
        }
    }
    lo
}

/// Tells whether a ref listing failed on one loose file whose contents are not a ref.
impl Store {
    /// Walks the loose refs under `prefix` (every one: a ref name sorts after its
    /// directory's, so a walk cannot start in the middle) and gives `each` the full name and
    /// id of every direct ref. A file that is not a ref is skipped (doctor reports it). An
    /// error says whether a file vanished during the walk (pack-refs pruned it: the caller
    /// lists again, [`listed_again`]).
    fn walk_loose(
        &self,
        prefix: &str,
        mut each: impl FnMut(&[u8], Oid),
    ) -> std::result::Result<(), (Error, bool)> {
        let failed = |context: String, message: String, vanished: bool| {
            (Error::Git { context, message }, vanished)
        };
        let repo = self.handle();
        let relative: &gix::path::RelativePath = prefix.try_into().map_err(|e| {
            failed(
                format!("listing refs under {prefix}"),
                format!("{e}"),
                false,
            )
        })?;
        match repo.refs.loose_iter_prefixed(relative) {
            Ok(iter) => {
                for r in iter {
                    let r = match r {
                        Ok(r) => r,
                        Err(e) if is_undecodable(&e) => {
                            tracing::warn!(prefix, error = %e, "skipping a file that is not a ref");
                            continue;
                        }
                        Err(e) => {
                            let text = format!("{e:?}");
                            let vanished =
                                text.contains("NotFound") || text.contains("No such file");
                            return Err(failed(
                                format!("listing loose refs under {prefix}"),
                                e.to_string(),
                                vanished,
                            ));
                        }
                    };
                    let name: &[u8] = r.name.as_bstr();
                    if let (true, Some(id)) =
                        (name.starts_with(prefix.as_bytes()), r.target.try_id())
                    {
                        each(name, from_gix(id));
                    }
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(failed(
                format!("listing loose refs under {prefix}"),
                e.to_string(),
                false,
            )),
        }
    }
}

/// The error of a listing of `prefix` during which `packed-refs` changed: list again
/// (the `true`, for [`listed_again`]).
fn packed_refs_changed(prefix: &str) -> (Error, bool) {
    (
        Error::Git {
            context: format!("listing refs under {prefix}"),
            message: "packed-refs changed while listing".into(),
        },
        true,
    )
}

fn is_undecodable(e: &gix::Error) -> bool {
    e.downcast_any_ref::<gix::refs::file::find::ReferenceDecode>()
        .is_some()
}
