//! fsync helpers for `gatos.fsync = true`: gix never fsyncs, so gatos does it by path.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Fsyncs each file and then each distinct parent directory (so the names are durable too).
///
/// # Errors
/// When a file or directory cannot be opened or synced.
pub fn sync_files(paths: &[PathBuf]) -> Result<()> {
    let mut dirs: Vec<&Path> = Vec::new();
    for p in paths {
        if let Ok(f) = File::open(p) {
            f.sync_all()
                .map_err(|e| Error::io(format!("fsync {}", p.display()), e))?;
        }
        if let Some(d) = p.parent()
            && !dirs.contains(&d)
        {
            dirs.push(d);
        }
    }
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
