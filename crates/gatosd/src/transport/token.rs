//! The daemon's bearer token: what `gatos.auth {token}` must present — first on TCP, and
//! before any call that writes on the Unix socket (ADR 0023).
//!
//! A process running as the daemon's user can `connect()` to the Unix socket whatever
//! sandbox it is in (Landlock does not mediate connecting to a pathname socket), so the
//! socket's mode alone does not keep a job from acting as the node. The token lives in a
//! file the sandbox hides: `<git-dir>/gatos/gatosd/token` (mode 0600, in a mode-0700
//! directory), made at start when absent, unless `--token-file` names another.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::RngCore as _;

/// The token file's path relative to the gatos directory (`<git-dir>/gatos`).
pub const DEFAULT_RELATIVE: &str = "gatosd/token";

/// The token and where it came from (named in `Unauthorized` hints; never the token).
#[derive(Clone)]
pub struct Token {
    /// The token's bytes (the file's content without its trailing newline).
    pub bytes: Vec<u8>,
    /// The file it was read from.
    pub file: PathBuf,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself.
        f.debug_struct("Token").field("file", &self.file).finish()
    }
}

/// Returns the default token file of a repository whose gatos directory is `gatos_dir`.
pub fn default_path(gatos_dir: &Path) -> PathBuf {
    gatos_dir.join(DEFAULT_RELATIVE)
}

/// Reads the token file at `path`, first creating it with a fresh random 256-bit token
/// (64 hex digits) when it does not exist. Creation is atomic: the token is written to a
/// private temporary file and hard-linked into place, so a reader never sees a partial
/// token and two daemons starting at once agree on one token (the loser reads the
/// winner's).
///
/// # Errors
/// When the directory or file cannot be made or read, or the file is empty.
pub fn ensure(path: &Path) -> Result<Token, String> {
    if !path.exists() {
        create(path)?;
    }
    let bytes = crate::transport::tcp::read_token(path)?;
    Ok(Token {
        bytes,
        file: path.to_owned(),
    })
}

fn create(path: &Path) -> Result<(), String> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) => return Err(format!("creating {}: {e}", dir.display())),
    }
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = dir.join(format!(".token-{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        // The umask may only have narrowed the mode; make sure of 0600 anyway.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(hex.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("writing {}: {e}", tmp.display()));
    }
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            tracing::info!(path = %path.display(), "created the daemon's token file");
            Ok(())
        }
        // Another daemon made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("creating {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_token_is_made_private_and_random_and_then_kept()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let p = default_path(dir.path());
        let t = ensure(&p)?;
        assert_eq!(t.bytes.len(), 64);
        assert!(t.bytes.iter().all(u8::is_ascii_hexdigit));
        assert_eq!(std::fs::metadata(&p)?.permissions().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::metadata(p.parent().ok_or("parent")?)?
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        // A second start reads the same token; another directory gets another one.
        assert_eq!(ensure(&p)?.bytes, t.bytes);
        let other = tempfile::tempdir()?;
        assert_ne!(ensure(&default_path(other.path()))?.bytes, t.bytes);
        assert!(!format!("{t:?}").contains(std::str::from_utf8(&t.bytes)?));
        Ok(())
    }
}
