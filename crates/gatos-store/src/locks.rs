//! Lock families: the advisory `flock`s of DESIGN §3.
//!
//! A writer holds the flock of `<git-dir>/gatos/locks/<family>` for as long as it holds Git
//! `.lock` files of that family, and names those files beforehand in an owner record
//! ([`owners`]). That makes a leftover `.lock` decidable: gatos's own when a dead writer's
//! record owns it (removed under the family's flock), someone else's otherwise — plain
//! `git` holds its locks without telling anyone, so gatos never removes those by age
//! (ADR 0020; only `doctor --fix --force` does, on the operator's word).
//!
//! Within one process an ordinary mutex per family queues threads first, so contending
//! threads wake at once instead of polling the kernel lock, and the family's lock file is
//! kept open between holds (up to [`MAX_KEPT`] families; one reopened when its file was
//! removed, which an `fstat` of the kept file tells): a lock costs an `fstat`, a `flock`
//! and an unlock instead of an `open`, a `flock`, an unlock and a `close`.

pub mod owners;

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// How old a foreign `.lock` must be before `doctor` reports it (and `--fix --force`
/// removes it): younger ones are a git command at work.
pub const STALE_LOCK_AGE: Duration = Duration::from_secs(2);

/// How long a writer waits for a family lock by default.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another writer held the family lock for longer than the timeout.
    #[error("lock family '{family}' is busy (waited {waited:?})")]
    Busy {
        /// The family.
        family: String,
        /// How long we waited.
        waited: Duration,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock {path}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The lock directory of one repository, with in-process queues per family.
#[derive(Debug, Clone)]
pub struct Locks {
    dir: PathBuf,
    local: Arc<Mutex<HashMap<String, Arc<LocalSlot>>>>,
    /// Lock files kept open by the slots, at most [`MAX_KEPT`].
    kept: Arc<AtomicUsize>,
}

/// Lock files a process keeps open between holds. A family per topic would otherwise keep
/// one descriptor per topic: past this many, a family's file is opened and closed at each
/// hold, as it always was.
const MAX_KEPT: usize = 256;

/// Held family locks; released when dropped.
#[derive(Debug)]
pub struct Guard {
    // Drop order: the kernel locks are released before the process-local slots.
    _files: Vec<Arc<File>>,
    _local: Vec<LocalHold>,
}

impl Drop for Guard {
    /// Unlocks each file while its slot is still held. Closing alone would not do even
    /// if the descriptor were closed: a child this process forks (a `git` it runs, a job's
    /// supervisor) holds a copy of every descriptor from its fork until its exec, and a
    /// flock lives while any copy is open. Another writer would then find the family busy
    /// after we let it go; doctor's `--fix` did, under load (a stale lock not removed).
    fn drop(&mut self) {
        for (f, hold) in self._files.iter().zip(&self._local) {
            if let Err(e) = f.unlock() {
                // Closing the descriptor releases it: the slot forgets it, and it is
                // closed with the last reference, this one.
                tracing::warn!(error = %e, "could not unlock a lock family; closing it releases it");
                hold.slot.forget();
            }
        }
    }
}

/// Process-local exclusion for one family: a busy flag and a condition variable, so that
/// threads of one process queue without polling, and a hold does not borrow the slot.
/// It keeps the family's lock file open between holds (while fewer than [`MAX_KEPT`] are):
/// the holder of the slot is the only thread that locks it, so one open file serves every
/// thread (an `fstat` instead of an `open` with its path walk and a `close`).
#[derive(Debug)]
struct LocalSlot {
    busy: Mutex<bool>,
    freed: Condvar,
    file: Mutex<Option<Arc<File>>>,
    /// The count of kept files of its [`Locks`].
    kept: Arc<AtomicUsize>,
}

#[derive(Debug)]
struct LocalHold {
    slot: Arc<LocalSlot>,
}

impl Drop for LocalHold {
    fn drop(&mut self) {
        *self
            .slot
            .busy
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = false;
        self.slot.freed.notify_one();
    }
}

impl LocalSlot {
    /// The family's lock file, opened when the slot has none, or when the one it kept
    /// was removed or replaced (its link count is 0: a flock on it would exclude no one
    /// who opens the path now). Only the slot's holder calls it.
    fn file(&self, open: impl FnOnce() -> Result<File, Error>) -> Result<Arc<File>, Error> {
        let mut kept = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(f) = kept.as_ref() {
            use std::os::unix::fs::MetadataExt as _;
            if f.metadata().is_ok_and(|m| m.nlink() > 0) {
                return Ok(f.clone());
            }
        }
        let f = Arc::new(open()?);
        if kept.is_some() {
            // The kept one was removed: this one takes its place.
            *kept = Some(f.clone());
        } else if self
            .kept
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_KEPT).then_some(n + 1)
            })
            .is_ok()
        {
            *kept = Some(f.clone());
        }
        Ok(f)
    }

    /// Drops the kept lock file (it is closed once no guard holds it).
    fn forget(&self) {
        if self
            .file
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .is_some()
        {
            self.kept.fetch_sub(1, Ordering::AcqRel);
        }
    }

    fn enter(self: Arc<Self>, deadline: Option<Instant>) -> Option<LocalHold> {
        let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        while *busy {
            let left = deadline?.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            busy = self
                .freed
                .wait_timeout(busy, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *busy = true;
        drop(busy);
        Some(LocalHold { slot: self })
    }
}

impl Locks {
    /// Uses `<git-dir>/gatos/locks`, creating it when missing.
    ///
    /// # Errors
    /// When the directory cannot be created.
    pub fn new(git_dir: &Path) -> Result<Locks, Error> {
        let dir = git_dir.join("gatos").join("locks");
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(Locks {
            dir,
            local: Arc::default(),
            kept: Arc::default(),
        })
    }

    /// The owner records kept beside the family locks (ADR 0020).
    pub fn owners(&self) -> owners::Owners {
        owners::Owners::new(&self.dir)
    }

    /// Returns the path of a family's lock file.
    pub fn path(&self, family: &str) -> PathBuf {
        self.dir.join(family)
    }

    fn slot(&self, family: &str) -> Arc<LocalSlot> {
        let mut map = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(family.to_owned())
            .or_insert_with(|| {
                Arc::new(LocalSlot {
                    busy: Mutex::new(false),
                    freed: Condvar::new(),
                    file: Mutex::new(None),
                    kept: self.kept.clone(),
                })
            })
            .clone()
    }

    fn open(&self, family: &str) -> Result<File, Error> {
        let path = self.path(family);
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|source| Error::Io { path, source })
    }

    /// Takes the locks of several families, in sorted order so that writers never deadlock.
    ///
    /// # Errors
    /// [`Error::Busy`] after `timeout`, [`Error::Io`] when a lock file cannot be used.
    pub fn acquire(&self, families: &[String], timeout: Duration) -> Result<Guard, Error> {
        let mut families: Vec<&String> = families.iter().collect();
        families.sort();
        families.dedup();
        let start = Instant::now();
        let deadline = start + timeout;
        let busy = |family: &str| Error::Busy {
            family: family.to_owned(),
            waited: start.elapsed(),
        };
        // Built as the families are taken, so that a failure part-way unlocks those
        // already locked (their files stay open in their slots: dropping ours does not
        // close them).
        let mut guard = Guard {
            _files: Vec::with_capacity(families.len()),
            _local: Vec::with_capacity(families.len()),
        };
        for family in families {
            let slot = self.slot(family);
            guard._local.push(
                slot.clone()
                    .enter(Some(deadline))
                    .ok_or_else(|| busy(family))?,
            );
            let file = slot.file(|| self.open(family))?;
            // Other processes: poll with a short exponential pause (flock has no timeout).
            let mut pause = Duration::from_micros(50);
            loop {
                match file.try_lock() {
                    Ok(()) => break,
                    Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                        std::thread::sleep(pause);
                        pause = (pause * 2).min(Duration::from_millis(2));
                    }
                    Err(TryLockError::WouldBlock) => return Err(busy(family)),
                    Err(TryLockError::Error(source)) => {
                        return Err(Error::Io {
                            path: self.path(family),
                            source,
                        });
                    }
                }
            }
            guard._files.push(file);
        }
        Ok(guard)
    }

    /// Takes one family's lock if it is free right now.
    ///
    /// # Errors
    /// [`Error::Io`] when the lock file cannot be used.
    pub fn try_acquire(&self, family: &str) -> Result<Option<Guard>, Error> {
        let slot = self.slot(family);
        let Some(hold) = slot.clone().enter(None) else {
            return Ok(None);
        };
        let file = slot.file(|| self.open(family))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Guard {
                _files: vec![file],
                _local: vec![hold],
            })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(source)) => Err(Error::Io {
                path: self.path(family),
                source,
            }),
        }
    }
}

/// Returns the age of a file, or `None` when it does not exist.
pub fn age_of(path: &Path) -> Option<Duration> {
    let meta = std::fs::metadata(path).ok()?;
    let modified = meta.modified().ok()?;
    Some(
        SystemTime::now()
            .duration_since(modified)
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_family_excludes_threads_and_is_released_on_drop() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let locks = Locks::new(dir.path())?;
        let held = locks.acquire(&["a".into()], DEFAULT_LOCK_TIMEOUT)?;
        assert!(locks.try_acquire("a")?.is_none());
        assert!(locks.try_acquire("b")?.is_some());
        let other = locks.clone();
        let err =
            std::thread::spawn(move || other.acquire(&["a".into()], Duration::from_millis(50)))
                .join()
                .map_err(|_| "thread panicked")?;
        assert!(matches!(err, Err(Error::Busy { .. })));
        drop(held);
        assert!(locks.try_acquire("a")?.is_some());
        Ok(())
    }

    #[test]
    fn a_released_family_is_free_while_a_copy_of_its_descriptor_is_open()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let locks = Locks::new(dir.path())?;
        let held = locks.acquire(&["a".into()], DEFAULT_LOCK_TIMEOUT)?;
        // What a child forked meanwhile holds until it execs: a copy of the descriptor.
        let copy = held._files[0].try_clone()?;
        drop(held);
        assert!(
            locks.try_acquire("a")?.is_some(),
            "released, whoever still has the descriptor open"
        );
        drop(copy);
        Ok(())
    }

    /// A lock directory and two `Locks` on it: this process's, and one standing for
    /// another process (its own slots and kept files).
    fn two_processes() -> Result<(tempfile::TempDir, Locks, Locks), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let locks = Locks::new(dir.path())?;
        let elsewhere = Locks::new(dir.path())?;
        Ok((dir, locks, elsewhere))
    }

    #[test]
    fn a_kept_lock_file_that_was_removed_is_opened_again() -> Result<(), Box<dyn std::error::Error>>
    {
        let (_dir, locks, elsewhere) = two_processes()?;
        drop(locks.acquire(&["fam".into()], DEFAULT_LOCK_TIMEOUT)?);
        // Someone removes the lock file; another process then locks the new one.
        std::fs::remove_file(locks.path("fam"))?;
        let theirs = elsewhere.acquire(&["fam".into()], DEFAULT_LOCK_TIMEOUT)?;
        assert!(
            locks.try_acquire("fam")?.is_none(),
            "the file kept from before is not the one the path names now"
        );
        drop(theirs);
        let ours = locks.try_acquire("fam")?.ok_or("free again")?;
        assert!(elsewhere.try_acquire("fam")?.is_none());
        drop(ours);
        Ok(())
    }

    #[test]
    fn past_the_kept_files_a_family_still_excludes_other_processes()
    -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, locks, elsewhere) = two_processes()?;
        let families: Vec<String> = (0..MAX_KEPT + 3).map(|i| format!("f{i}")).collect();
        for f in &families {
            drop(locks.acquire(std::slice::from_ref(f), DEFAULT_LOCK_TIMEOUT)?);
        }
        assert_eq!(locks.kept.load(Ordering::Acquire), MAX_KEPT);
        for f in [&families[0], &families[MAX_KEPT + 2]] {
            let held = locks.acquire(std::slice::from_ref(f), DEFAULT_LOCK_TIMEOUT)?;
            assert!(elsewhere.try_acquire(f)?.is_none(), "{f} held");
            drop(held);
            assert!(elsewhere.try_acquire(f)?.is_some(), "{f} released");
        }
        Ok(())
    }

    #[test]
    fn a_failed_acquire_of_several_families_releases_those_it_took()
    -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, locks, elsewhere) = two_processes()?;
        let held = elsewhere.acquire(&["b".into()], DEFAULT_LOCK_TIMEOUT)?;
        assert!(matches!(
            locks.acquire(&["a".into(), "b".into()], Duration::from_millis(20)),
            Err(Error::Busy { .. })
        ));
        // "a" was taken first, and let go with the failure (its file stays open here).
        assert!(elsewhere.try_acquire("a")?.is_some());
        drop(held);
        Ok(())
    }

    #[test]
    fn a_separate_open_file_sees_the_kernel_lock() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let locks = Locks::new(dir.path())?;
        let _held = locks.acquire(&["fam".into()], DEFAULT_LOCK_TIMEOUT)?;
        // A second Locks value stands for another process: it has its own local slots.
        let elsewhere = Locks::new(dir.path())?;
        assert!(elsewhere.try_acquire("fam")?.is_none());
        Ok(())
    }
}
