//! The Unix socket, created safely (DESIGN §6).
//!
//! `bind(2)` honours the umask, so a socket chmod-ed after binding is briefly accessible to
//! others. We bind inside a fresh mode-0700 directory next to the final path, chmod the
//! socket to 0600 there, and rename it into place: at its final path it is never
//! world-accessible. One daemon per socket path: the `gatosd.<hash>` lock family is held for
//! the daemon's life, so a socket file found at start-up whose lock is free belongs to a
//! crashed daemon and is replaced, while a live daemon's is never touched. On a clean
//! shutdown the socket is removed only if the path still holds the one we made.

use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use gatos::Gatos;

/// The longest socket path we bind directly (`sun_path` holds 108 bytes with its NUL).
pub const MAX_SOCKET_PATH: usize = 100;

/// The longest path `bind(2)` takes (`sun_path` is 108 bytes with its NUL).
pub const MAX_BIND_PATH: usize = 107;

/// Makes a fresh mode-0700 directory in `parent` whose name has at most `max` bytes, for
/// staging the socket at `path`. An existing entry is never reused nor removed.
fn make_private_dir(parent: &Path, path: &Path, max: usize) -> Result<PathBuf, String> {
    let mut last = None;
    for attempt in 0u32..16 {
        let seed = format!("{}:{}:{attempt}", std::process::id(), path.display());
        let hex = blake3::hash(seed.as_bytes()).to_hex();
        let name = format!(".{}", &hex[..max.clamp(2, 17) - 1]);
        let dir = parent.join(&name);
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(dir),
            Err(e) => return Err(format!("creating {}: {e}", dir.display())),
        }
    }
    Err(format!(
        "could not make a private directory next to {} (last tried {}); pass another --socket",
        path.display(),
        last.map(|d| d.display().to_string()).unwrap_or_default()
    ))
}

/// A bound socket; removes its file when dropped, if the file is still ours.
#[derive(Debug)]
pub struct Endpoint {
    /// The socket path.
    pub path: PathBuf,
    listener: Option<tokio::net::UnixListener>,
    identity: (u64, u64),
    _lock: gatos::Held,
}

impl Endpoint {
    /// Takes the listener (once).
    pub fn take_listener(&mut self) -> Option<tokio::net::UnixListener> {
        self.listener.take()
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if (m.dev(), m.ino()) == self.identity => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    tracing::warn!(path = %self.path.display(), error = %e, "could not remove the socket");
                }
            }
            _ => {
                tracing::warn!(path = %self.path.display(), "the socket path no longer holds our socket; left alone")
            }
        }
    }
}

fn short_hash(p: &Path) -> String {
    let h = blake3::hash(p.as_os_str().as_encoded_bytes());
    h.to_hex()[..16].to_owned()
}

/// Returns the socket path: `<git-dir>/gatos/gatosd.sock`, or a shorter one under
/// `$XDG_RUNTIME_DIR` (else a private `/tmp/gatos-<uid>/`) when that is too long.
///
/// # Errors
/// When the fallback directory cannot be made private.
pub fn default_path(gatos: &Gatos) -> Result<PathBuf, String> {
    let preferred = gatos.gatos_dir().join("gatosd.sock");
    if preferred.as_os_str().len() <= MAX_SOCKET_PATH {
        return Ok(preferred);
    }
    let name = format!("gatos-{}.sock", short_hash(&preferred));
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
    {
        return Ok(dir.join(name));
    }
    let uid = std::fs::metadata(gatos.git_dir())
        .map(|m| m.uid())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("gatos-{uid}"));
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("creating {}: {e}", dir.display())),
    }
    let meta = std::fs::symlink_metadata(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !meta.is_dir() || meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "{} is not a private directory; pass --socket",
            dir.display()
        ));
    }
    Ok(dir.join(name))
}

/// Binds the socket at `path` (see the module docs).
///
/// # Errors
/// When another daemon serves the path, the path holds something else, or binding fails.
pub fn bind(gatos: &Gatos, path: &Path) -> Result<Endpoint, String> {
    let len = path.as_os_str().len();
    if len > MAX_BIND_PATH {
        return Err(format!(
            "socket path {} is {len} bytes, longer than a Unix socket allows ({MAX_BIND_PATH}); pass a shorter --socket",
            path.display()
        ));
    }
    let name_len = path.file_name().map_or(0, |n| n.len());
    if name_len < 4 {
        return Err(format!(
            "socket path {}: the file name must have at least 4 characters (it is staged in a private directory no longer than it); pass another --socket",
            path.display()
        ));
    }
    let family = format!("gatosd.{}", short_hash(path));
    let lock = gatos
        .try_hold(&family)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("another gatosd is serving {}", path.display()))?;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            tracing::warn!(path = %path.display(), "replacing the socket of a daemon that did not shut down cleanly");
            std::fs::remove_file(path)
                .map_err(|e| format!("removing stale {}: {e}", path.display()))?;
        }
        Ok(_) => return Err(format!("{} exists and is not a socket", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{}: {e}", path.display())),
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
    // The private directory's name is no longer than the socket's file name less two
    // ("/s"), so the staged path is never longer than the final one: a path that fits
    // the socket limit can always be bound (ADR 0023).
    let private = make_private_dir(parent, path, name_len - 2)?;
    let staged = private.join("s");
    let result = (|| {
        let listener = std::os::unix::net::UnixListener::bind(&staged)
            .map_err(|e| format!("binding {}: {e}", staged.display()))?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("chmod {}: {e}", staged.display()))?;
        std::fs::rename(&staged, path)
            .map_err(|e| format!("moving the socket to {}: {e}", path.display()))?;
        Ok::<_, String>(listener)
    })();
    let _ = std::fs::remove_dir_all(&private);
    let listener = result?;
    let meta = std::fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let listener = tokio::net::UnixListener::from_std(listener).map_err(|e| e.to_string())?;
    Ok(Endpoint {
        path: path.to_owned(),
        listener: Some(listener),
        identity: (meta.dev(), meta.ino()),
        _lock: lock,
    })
}
