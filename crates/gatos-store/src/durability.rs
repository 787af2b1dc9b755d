//! Durability for `gatos.fsync = true`: gix never fsyncs, so gatos does, objects before refs.
//!
//! Two methods (`gatos.fsyncMethod`):
//! * `syncfs` (the default on Linux): one `syncfs(2)` after the objects are in place and one
//!   after the ref moved. Each costs about one journal commit, against one per file and one
//!   per directory for `fsync` — a publish writes four objects in four directories, so
//!   this is 2 commits instead of about 10. It also flushes whatever else is dirty on that
//!   file system, so on a disk shared with heavy writers `fsync` can be the better choice.
//! * `fsync`: each file, then each directory between it and the repository (POSIX's recipe
//!   for a new name, also when the write created the directory).

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// How writes are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Not at all (like Git's default): a write survives a killed process, not a power cut.
    None,
    /// `syncfs(2)` of the repository's file system.
    Syncfs,
    /// `fsync(2)` of every file written and of its directory.
    Fsync,
    /// One `fsync(2)` per step, of the step's last file: on file systems that commit a
    /// step's metadata in order with its data (ext4 `data=ordered`, xfs, btrfs) that makes
    /// the whole step durable, as git's `core.fsyncMethod=batch` relies on.
    Batch,
    /// One `fsync(2)` per write, after the ref moved. Only correct where the file system
    /// journals metadata in order and writes a new file's data before committing its
    /// metadata (ext4 `data=ordered`, the default; btrfs) — there the ref can never be
    /// durable without the objects it names. Not on xfs.
    Ordered,
}

/// Which step of a write is being made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// New objects, before any ref names them.
    Objects,
    /// Ref changes, before the write is acknowledged.
    Refs,
}

impl Method {
    /// Reads `gatos.fsync` and `gatos.fsyncMethod`.
    ///
    /// # Errors
    /// For an unknown method name.
    pub fn from_config(fsync: bool, method: Option<&str>) -> Result<Method> {
        if !fsync {
            return Ok(Method::None);
        }
        match method.map(str::trim) {
            None | Some("") | Some("syncfs") if cfg!(target_os = "linux") => Ok(Method::Syncfs),
            None | Some("") | Some("fsync") => Ok(Method::Fsync),
            Some("batch") => Ok(Method::Batch),
            Some("ordered") => Ok(Method::Ordered),
            Some(other) => Err(Error::Unsupported(format!(
                "gatos.fsyncMethod must be syncfs, fsync, batch or ordered, not {other:?}"
            ))),
        }
    }
}

/// Makes `paths` (and their names) durable with `method`; `anchor` is the repository's
/// directory (the file system `syncfs` flushes, and where `fsync` stops climbing).
///
/// # Errors
/// When a sync fails.
pub fn sync(method: Method, step: Step, anchor: &Path, paths: &[PathBuf]) -> Result<()> {
    match method {
        Method::None => Ok(()),
        Method::Ordered if step == Step::Objects => Ok(()),
        Method::Syncfs => {
            let f = File::open(anchor)
                .map_err(|e| Error::io(format!("open {}", anchor.display()), e))?;
            rustix::fs::syncfs(&f)
                .map_err(|e| Error::io(format!("syncfs {}", anchor.display()), e.into()))
        }
        Method::Fsync => sync_files(anchor, paths),
        Method::Batch | Method::Ordered => match paths.last() {
            Some(p) => File::open(p)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io(format!("fsync {}", p.display()), e)),
            None => Ok(()),
        },
    }
}

/// Fsyncs each file, then every directory from its parent up to (not including) `root`,
/// deepest first, each once. A name is durable only when the directory holding it is
/// synced, and a write can create directories as well as files (a new `objects/xx/`, a
/// new `refs/gatos/messages/<topic>/`): their names live one level further up, so syncing
/// only the file's own directory can leave a synced file unreachable after a power cut
/// (found by scripts/crash_check.py). The extra syncs made a CLI publish with this method
/// about a fifth slower (ADR 0046); `syncfs`, the default, is unchanged. Paths outside
/// `root` get their parent directory only.
///
/// # Errors
/// When a file or directory cannot be opened or synced.
pub fn sync_files(root: &Path, paths: &[PathBuf]) -> Result<()> {
    let mut dirs: Vec<&Path> = Vec::new();
    for p in paths {
        if let Ok(f) = File::open(p) {
            f.sync_all()
                .map_err(|e| Error::io(format!("fsync {}", p.display()), e))?;
        }
        let mut d = p.parent();
        while let Some(dir) = d {
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
            if dir == root || !dir.starts_with(root) {
                break;
            }
            d = dir.parent().filter(|up| *up != root);
        }
    }
    // Deepest first: a directory's entry in its parent is synced after its own entries.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in dirs {
        sync_dir(d)?;
    }
    Ok(())
}

/// Fsyncs a directory, making the entries created or renamed in it durable.
///
/// # Errors
/// When the directory cannot be opened or synced.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let f = File::open(dir).map_err(|e| Error::io(format!("open {}", dir.display()), e))?;
    f.sync_all()
        .map_err(|e| Error::io(format!("fsync {}", dir.display()), e))
}
