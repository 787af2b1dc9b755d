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
//! threads wake at once instead of polling the kernel lock.

pub mod owners;

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
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
}

/// Held family locks; released when dropped.
#[derive(Debug)]
pub struct Guard {
    // Drop order: the kernel locks are released before the process-local slots.
    _files: Vec<File>,
    _local: Vec<LocalHold>,
}

impl Drop for Guard {
    /// Unlocks each file before it is closed. Closing alone is not enough: a child this
    /// process forks (a `git` it runs, a job's supervisor) holds a copy of every
    /// descriptor from its fork until its exec, and a flock lives while any copy is open.
    /// Another writer would then find the family busy after we let it go; doctor's
    /// `--fix` did, under load (a stale lock not removed).
    fn drop(&mut self) {
        for f in &self._files {
            if let Err(e) = f.unlock() {
                tracing::warn!(error = %e, "could not unlock a lock family; closing it releases it");
            }
        }
    }
}

/// Process-local exclusion for one family: a busy flag and a condition variable, so that
/// threads of one process queue without polling, and a hold does not borrow the slot.
#[derive(Debug, Default)]
struct LocalSlot {
    busy: Mutex<bool>,
    freed: Condvar,
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
        map.entry(family.to_owned()).or_default().clone()
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
        let mut files = Vec::with_capacity(families.len());
        let mut local = Vec::with_capacity(families.len());
        for family in families {
            local.push(
                self.slot(family)
                    .enter(Some(deadline))
                    .ok_or_else(|| busy(family))?,
            );
            let file = self.open(family)?;
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
            files.push(file);
        }
        Ok(Guard {
            _files: files,
            _local: local,
        })
    }

    /// Takes one family's lock if it is free right now.
    ///
    /// # Errors
    /// [`Error::Io`] when the lock file cannot be used.
    pub fn try_acquire(&self, family: &str) -> Result<Option<Guard>, Error> {
        let Some(hold) = self.slot(family).enter(None) else {
            return Ok(None);
        };
        let file = self.open(family)?;
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
