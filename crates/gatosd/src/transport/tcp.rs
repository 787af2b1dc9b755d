//! TCP with a bearer token: loopback only unless allowed; the first call must be
//! `gatos.auth {token}`, compared in constant time; the token is never logged.

use std::path::Path;

/// Reads the token: the file's content without its trailing newline.
///
/// # Errors
/// When the file cannot be read or the token is empty.
pub fn read_token(path: &Path) -> Result<Vec<u8>, String> {
    let mut bytes =
        std::fs::read(path).map_err(|e| format!("reading token file {}: {e}", path.display()))?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    if bytes.is_empty() {
        return Err(format!("token file {} is empty", path.display()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path)
            && m.permissions().mode() & 0o044 != 0
        {
            tracing::warn!(path = %path.display(), "the token file is readable by others");
        }
    }
    Ok(bytes)
}

/// Compares a presented token with the expected one in constant time (both are hashed
/// first, so not even the length leaks through timing).
pub fn token_matches(expected: &[u8], presented: &[u8]) -> bool {
    let a = blake3::hash(expected);
    let b = blake3::hash(presented);
    let diff = a
        .as_bytes()
        .iter()
        .zip(b.as_bytes())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_exactly() {
        assert!(token_matches(b"s3cret", b"s3cret"));
        assert!(!token_matches(b"s3cret", b"s3cre"));
        assert!(!token_matches(b"s3cret", b"s3cret "));
    }

    #[test]
    fn the_trailing_newline_is_not_part_of_the_token() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("t");
        std::fs::write(&p, "abc\n")?;
        assert_eq!(read_token(&p)?, b"abc");
        std::fs::write(&p, "\n")?;
        assert!(read_token(&p).is_err());
        Ok(())
    }
}
