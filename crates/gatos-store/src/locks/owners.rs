//! Owner records: how gatos tells its own leftover Git `.lock` files from anyone else's
//! (ADR 0020, superseding the age rule of ADR 0009).
//!
//! Before a ref transaction, a gatos writer creates a record in `<git-dir>/gatos/locks/
//! owners/`, holds its `flock` for the whole transaction, and writes into it the `.lock`
//! paths (relative to the common dir) the transaction may create: one per edited ref, and
//! `packed-refs.lock`. When the transaction ends it empties the record, which names nothing
//! from then on; the process keeps the empty record (open and flocked) for its next
//! transaction, so a write costs no file creation or removal here — only the rewrite of a
//! few bytes. A process that exits leaves its empty records unlocked, and the next census
//! retires them. So:
//!
//! - a record whose flock is free belongs to a writer that died mid-transaction;
//! - a `.lock` file is gatos's only when a record lists it and that record was written no
//!   later than the lock file (a writer names its locks before it creates them). Of the
//!   records that list it, the latest such one owns it;
//! - a `.lock` file no record owns is someone else's — plain `git`, another tool — and gatos
//!   never removes it on its own: a live `git update-ref --stdin` holds its locks for as long
//!   as it likes, however old the files look.
//!
//! A dead writer's lock is removed while its record's flock is held, so two recoverers never
//! both act on it; afterwards the record itself is removed.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::Error;

/// How long after writing its record a writer may still create the locks it names: its
/// transaction's lock wait (30 s by default) and more. A lock made later than this after a
/// dead writer's record is not that writer's.
pub const DEAD_WRITER_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// The records' directory under the lock directory.
pub const OWNERS_DIR: &str = "owners";

static NEXT: AtomicU64 = AtomicU64::new(0);

/// The owner records of one repository.
#[derive(Debug, Clone)]
pub struct Owners {
    dir: PathBuf,
}

/// A live record: removed (and its flock released) when dropped.
#[derive(Debug)]
pub struct Record {
    path: PathBuf,
    file: Option<File>,
    dir: PathBuf,
}

/// Records this process holds (open, flocked, empty) between transactions, by directory.
static IDLE: std::sync::Mutex<Vec<(PathBuf, PathBuf, File)>> = std::sync::Mutex::new(Vec::new());

/// Idle records kept per process; more concurrent transactions than this make and remove
/// records as before.
const MAX_IDLE: usize = 64;

impl Drop for Record {
    fn drop(&mut self) {
        let Some(file) = self.file.take() else {
            return; // abandoned
        };
        // Empty: from now on the record names no lock, and stays held for the next
        // transaction of this process.
        if file.set_len(0).is_ok() {
            let mut idle = IDLE
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if idle.len() < MAX_IDLE {
                idle.push((self.dir.clone(), self.path.clone(), file));
                return;
            }
        }
        // Unlink first, then the flock: a recoverer that opened the record before the
        // unlink finds it gone once it gets the flock.
        let _ = std::fs::remove_file(&self.path);
        release(&file);
    }
}

/// Releases a record's flock by unlocking it, not by closing the file. Closing is not
/// enough: a child another thread of this process forks (a `git` it runs, a job's
/// supervisor) holds a copy of every descriptor from its fork until its exec, and a flock
/// lives while any copy is open. A record let go by closing alone then looked live to the
/// next census for a moment: `doctor --fix` found a dead writer's lock and, a moment later,
/// did not remove it (seen in CI).
fn release(file: &File) {
    if let Err(e) = file.unlock() {
        tracing::warn!(error = %e, "could not unlock an owner record; closing it releases it");
    }
}

impl Record {
    /// The record's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Leaves the record behind as a writer killed mid-transaction does (its flock is
    /// released, its file stays). For tests of crash recovery.
    #[doc(hidden)]
    pub fn abandon(mut self) {
        if let Some(file) = self.file.take() {
            release(&file);
        }
    }
}

/// A record's file as a census opened it: the flock, if the census took it, is let go when
/// this is dropped, on every path (see [`release`]).
#[derive(Debug)]
struct Opened {
    file: File,
    held: bool,
}

impl Drop for Opened {
    fn drop(&mut self) {
        if self.held {
            release(&self.file);
        }
    }
}

/// A record whose writer is gone, held (its flock taken) while its locks are dealt with.
#[derive(Debug)]
pub struct Dead {
    path: PathBuf,
    _file: Opened,
    /// When the record was written.
    pub written: SystemTime,
    /// The lock paths it names, relative to the common dir.
    pub locks: Vec<String>,
}

impl Dead {
    /// Removes the record (its writer is gone and its locks are dealt with).
    pub fn retire(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Every record, read at one moment.
#[derive(Debug, Default)]
pub struct Census {
    /// Records whose writers are gone, held.
    pub dead: Vec<Dead>,
    /// Records of live writers: when written and what they name.
    pub live: Vec<(SystemTime, Vec<String>)>,
}

/// Who owns a `.lock` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// No record owns it: plain git or another tool.
    Foreign,
    /// A live gatos writer.
    Live,
    /// A gatos writer that died; the index of its record in [`Census::dead`].
    Dead(usize),
}

impl Census {
    /// Who owns the lock file `rel` (relative to the common dir) last modified at `mtime`:
    /// the latest record naming it that was written no later than the file.
    pub fn owner_of(&self, rel: &str, mtime: SystemTime) -> Owner {
        let mut best: Option<(SystemTime, Owner)> = None;
        let mut consider = |written: SystemTime, owner: Owner| {
            if written > mtime {
                return;
            }
            // Ties go to a live writer: never break a lock that might be live.
            let better = match best {
                None => true,
                Some((w, o)) => {
                    written > w || (written == w && owner == Owner::Live && o != Owner::Live)
                }
            };
            if better {
                best = Some((written, owner));
            }
        };
        for (i, d) in self.dead.iter().enumerate() {
            // A dead writer made its locks during its transaction, right after writing its
            // record: a lock made long after (a `git gc` that came later and takes
            // `packed-refs.lock`) is not its, however the record reads.
            let within = mtime
                .duration_since(d.written)
                .is_ok_and(|age| age <= DEAD_WRITER_WINDOW);
            if within && d.locks.iter().any(|l| l == rel) {
                consider(d.written, Owner::Dead(i));
            }
        }
        for (written, locks) in &self.live {
            if locks.iter().any(|l| l == rel) {
                consider(*written, Owner::Live);
            }
        }
        best.map_or(Owner::Foreign, |(_, o)| o)
    }
}

impl Owners {
    /// The records under `lock_dir` (`<git-dir>/gatos/locks`).
    pub fn new(lock_dir: &Path) -> Owners {
        Owners {
            dir: lock_dir.join(OWNERS_DIR),
        }
    }

    /// Writes a record naming `locks` (relative to the common dir) and holds it.
    ///
    /// # Errors
    /// When the record cannot be created, locked or written.
    pub fn record(&self, locks: &[String]) -> Result<Record, Error> {
        let io = |path: &Path, source| Error::Io {
            path: path.to_owned(),
            source,
        };
        let mut text = String::new();
        for l in locks {
            text.push_str(l);
            text.push('\n');
        }
        let reused = {
            let mut idle = IDLE
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            idle.iter()
                .position(|(d, _, _)| *d == self.dir)
                .map(|i| idle.swap_remove(i))
        };
        if let Some((dir, path, file)) = reused {
            // Held and empty since its last transaction: rewrite it in place (its mtime
            // becomes now, before any lock it names is created).
            use std::os::unix::fs::FileExt as _;
            file.write_all_at(text.as_bytes(), 0)
                .map_err(|e| io(&path, e))?;
            return Ok(Record {
                path,
                file: Some(file),
                dir,
            });
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| io(&self.dir, e))?;
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = self.dir.join(format!(
            "{}-{nanos}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let mut file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let _ = std::fs::remove_file(&path);
                return Err(io(&path, std::io::ErrorKind::WouldBlock.into()));
            }
            Err(TryLockError::Error(e)) => {
                let _ = std::fs::remove_file(&path);
                return Err(io(&path, e));
            }
        }
        file.write_all(text.as_bytes()).map_err(|e| io(&path, e))?;
        Ok(Record {
            path,
            file: Some(file),
            dir: self.dir.clone(),
        })
    }

    /// Reads every record but `except` (the caller's own): takes the flock of each dead
    /// one and keeps it, notes the live ones.
    ///
    /// # Errors
    /// When the directory cannot be read.
    pub fn census(&self, except: Option<&Path>) -> Result<Census, Error> {
        let mut census = Census::default();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(census),
            Err(source) => {
                return Err(Error::Io {
                    path: self.dir.clone(),
                    source,
                });
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if except.is_some_and(|e| e == path) {
                continue;
            }
            let Ok(file) = OpenOptions::new().read(true).write(true).open(&path) else {
                continue; // retired meanwhile
            };
            let held = match file.try_lock() {
                Ok(()) => true,
                Err(TryLockError::WouldBlock) => false,
                Err(TryLockError::Error(_)) => continue,
            };
            let mut opened = Opened { file, held };
            // Read after locking: a dead writer's record is complete; a live one's may be
            // being written, and a live record is only ever used to protect.
            let Ok(meta) = opened.file.metadata() else {
                continue;
            };
            let Ok(written) = meta.modified() else {
                continue;
            };
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut opened.file, &mut text);
            let locks: Vec<String> = text.lines().map(str::to_owned).collect();
            if held {
                // The record may have been retired between opening and locking it.
                let same = std::fs::metadata(&path).is_ok_and(|m| same_file(&m, &meta));
                if !same {
                    continue;
                }
                census.dead.push(Dead {
                    path,
                    _file: opened,
                    written,
                    locks,
                });
            } else {
                census.live.push((written, locks));
            }
        }
        Ok(census)
    }
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    a.len() == b.len() && a.modified().ok() == b.modified().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_record_is_live_an_abandoned_one_dead_a_dropped_one_names_nothing()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let owners = Owners::new(dir.path());
        let live = owners.record(&["refs/gatos/a.lock".into()])?;
        let census = owners.census(None)?;
        assert_eq!(census.dead.len(), 0);
        assert_eq!(census.live.len(), 1);
        assert!(owners.census(Some(live.path()))?.live.is_empty());
        drop(census);
        let gone = owners.record(&["refs/gatos/b.lock".into()])?;
        drop(gone);
        owners.record(&["refs/gatos/c.lock".into()])?.abandon();
        let census = owners.census(None)?;
        assert_eq!(census.live.len(), 1);
        assert_eq!(census.dead.len(), 1);
        assert_eq!(census.dead[0].locks, vec!["refs/gatos/c.lock"]);
        // A dead record is held by whoever took the census: nobody else sees it dead.
        let other = owners.census(None)?;
        assert!(other.dead.is_empty());
        assert_eq!(other.live.len(), 2);
        drop(other);
        let later = census.dead[0].written + std::time::Duration::from_secs(1);
        let earlier = census.dead[0].written - std::time::Duration::from_secs(1);
        assert_eq!(census.owner_of("refs/gatos/c.lock", later), Owner::Dead(0));
        // A lock made long after the dead writer's record is someone else's (a later git).
        let much_later = census.dead[0].written + DEAD_WRITER_WINDOW * 2;
        assert_eq!(
            census.owner_of("refs/gatos/c.lock", much_later),
            Owner::Foreign
        );
        assert_eq!(
            census.owner_of("refs/gatos/c.lock", earlier),
            Owner::Foreign
        );
        assert_eq!(census.owner_of("refs/gatos/a.lock", later), Owner::Live);
        assert_eq!(census.owner_of("packed-refs.lock", later), Owner::Foreign);
        for d in census.dead {
            d.retire();
        }
        assert!(owners.census(None)?.dead.is_empty());
        drop(live);
        // Kept, held and empty for this process's next transaction: it names no lock.
        let after = owners.census(None)?;
        assert!(after.dead.is_empty());
        assert!(
            after.live.iter().all(|(_, locks)| locks.is_empty()),
            "{after:?}"
        );
        assert_eq!(after.owner_of("refs/gatos/a.lock", later), Owner::Foreign);
        Ok(())
    }

    /// A child forked by another thread holds a copy of every descriptor until its exec; a
    /// census that let a dead record go by closing it left the record locked through that
    /// copy, and the next census took the dead writer for a live one (CI: `doctor --fix`
    /// found a dead writer's lock and then did not remove it). Here the copy is made on
    /// purpose and outlives the census: the record must still be seen dead.
    #[test]
    fn a_census_lets_a_dead_record_go_even_while_another_process_holds_its_descriptor()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let owners = Owners::new(dir.path());
        owners.record(&["refs/gatos/c.lock".into()])?.abandon();
        let census = owners.census(None)?;
        assert_eq!(census.dead.len(), 1);
        let copy = census.dead[0]._file.file.try_clone()?;
        let mut holder = std::process::Command::new("sleep")
            .arg("600")
            .stdin(copy)
            .spawn()?;
        drop(census);
        let again = owners.census(None);
        holder.kill()?;
        holder.wait()?;
        let again = again?;
        assert_eq!(again.dead.len(), 1, "{again:?}");
        assert!(again.live.is_empty(), "{again:?}");
        Ok(())
    }
}
