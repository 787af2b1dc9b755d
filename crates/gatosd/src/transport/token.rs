//! The daemon's bearer tokens: what `gatos.auth {token}` must present — first on TCP, and
//! before any call that writes on the Unix socket (ADR 0023) — and what an HTTP client
//! sends as `Authorization: Bearer …` (ADR 0034).
//!
//! A process running as the daemon's user can `connect()` to the Unix socket whatever
//! sandbox it is in (Landlock does not mediate connecting to a pathname socket), so the
//! socket's mode alone does not keep a job from acting as the node. The tokens live in a
//! file the sandbox hides: `<git-dir>/gatos/gatosd/token` (mode 0600, in a mode-0700
//! directory), made at start when absent, unless `--token-file` names another.
//!
//! The file holds either one bare token (the form gatosd makes; it is named `default`) or
//! named tokens, one `NAME TOKEN [ro]` a line, `#` comments and blank lines ignored. A
//! token marked `ro` may call operations that only read.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::RngCore as _;

/// The token file's path relative to the gatos directory (`<git-dir>/gatos`).
pub const DEFAULT_RELATIVE: &str = "gatosd/token";

/// The name of the token of a file in the legacy form (one bare token).
pub const DEFAULT_NAME: &str = "default";

/// The shortest named token accepted, in characters.
pub const MIN_NAMED_TOKEN: usize = 32;

/// One token as read from a file (the legacy form of one bare token; tests make one).
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

/// One entry of the set: its name, the BLAKE3 hash of the token (the token itself is not
/// kept), and whether it may only read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The name: the actor of its HTTP calls is `http:<name>`.
    pub name: String,
    /// The token may call operations that only read.
    pub read_only: bool,
    hash: [u8; 32],
}

impl Entry {
    /// The BLAKE3 hash of the token (what is kept of it by those it opened: a dashboard
    /// session, a stream).
    pub fn hash(&self) -> [u8; 32] {
        self.hash
    }
}

/// The set of tokens of one file.
#[derive(Clone)]
pub struct Tokens {
    /// The file they were read from (named in `Unauthorized` hints; never a token).
    pub file: PathBuf,
    /// Whether the file is readable by its group or by others (an error with `--http`).
    pub open_mode: bool,
    entries: Vec<Entry>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.entries.iter().map(|e| e.name.as_str()).collect();
        f.debug_struct("Tokens")
            .field("file", &self.file)
            .field("names", &names)
            .finish()
    }
}

impl From<Token> for Tokens {
    /// One bare token, named `default`.
    fn from(t: Token) -> Tokens {
        Tokens {
            entries: vec![Entry {
                name: DEFAULT_NAME.to_owned(),
                read_only: false,
                hash: *blake3::hash(&t.bytes).as_bytes(),
            }],
            file: t.file,
            open_mode: false,
        }
    }
}

fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-".contains(c))
}

impl Tokens {
    /// Parses the content of a token file (`file` is named in errors; no error ever shows a
    /// token).
    ///
    /// # Errors
    /// A message naming the line: an empty set, a bad name, a short token, an unknown
    /// third field, a bare token among named ones, a repeated name or token.
    pub fn parse(text: &str, file: &Path) -> Result<Tokens, String> {
        let at = |n: usize, what: &str| format!("token file {} line {n}: {what}", file.display());
        let lines: Vec<(usize, &str)> = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
            .collect();
        let mut entries: Vec<Entry> = Vec::new();
        if let [(_, only)] = lines.as_slice()
            && only.split_whitespace().count() == 1
        {
            // The legacy form: the whole file is one token.
            entries.push(Entry {
                name: DEFAULT_NAME.to_owned(),
                read_only: false,
                hash: *blake3::hash(only.as_bytes()).as_bytes(),
            });
        }
        if entries.is_empty() {
            for (n, line) in &lines {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let (name, token, read_only) = match fields.as_slice() {
                    [name, token] => (*name, *token, false),
                    [name, token, "ro"] => (*name, *token, true),
                    [_, _, other] => {
                        let shown: String = other.chars().take(20).collect();
                        return Err(at(*n, &format!("unknown mode {shown:?} (only ro)")));
                    }
                    [_] => {
                        return Err(at(
                            *n,
                            "a bare token among named ones (write NAME TOKEN on every line)",
                        ));
                    }
                    _ => return Err(at(*n, "expected NAME TOKEN [ro]")),
                };
                if !valid_name(name) {
                    return Err(at(
                        *n,
                        "a name is 1 to 64 of a-z, 0-9, '.', '_' and '-', starting with a letter or digit",
                    ));
                }
                if token.chars().count() < MIN_NAMED_TOKEN || !token.is_ascii() {
                    return Err(at(
                        *n,
                        &format!(
                            "the token of {name} must be at least {MIN_NAMED_TOKEN} ASCII characters"
                        ),
                    ));
                }
                let hash = *blake3::hash(token.as_bytes()).as_bytes();
                if entries.iter().any(|e| e.name == name) {
                    return Err(at(*n, &format!("the name {name} is given twice")));
                }
                if entries.iter().any(|e| e.hash == hash) {
                    return Err(at(*n, "this token is given twice"));
                }
                entries.push(Entry {
                    name: name.to_owned(),
                    read_only,
                    hash,
                });
            }
        }
        if entries.is_empty() {
            return Err(format!("token file {} holds no token", file.display()));
        }
        Ok(Tokens {
            file: file.to_owned(),
            open_mode: false,
            entries,
        })
    }

    /// Reads the token file at `path`.
    ///
    /// # Errors
    /// When the file cannot be read, is not UTF-8, or does not parse.
    pub fn load(path: &Path) -> Result<Tokens, String> {
        let bytes = std::fs::read(path)
            .map_err(|e| format!("reading token file {}: {e}", path.display()))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| format!("token file {} is not UTF-8", path.display()))?;
        let mut tokens = Tokens::parse(&text, path)?;
        tokens.open_mode =
            std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0);
        if tokens.open_mode {
            tracing::warn!(path = %path.display(), "the token file is readable by others");
        }
        Ok(tokens)
    }

    /// The entry whose token is `presented`, if any. Every entry is compared, in constant
    /// time (hashes, so not even the length leaks through timing), with no early exit.
    pub fn find(&self, presented: &[u8]) -> Option<&Entry> {
        let h = blake3::hash(presented);
        let mut found = None;
        for e in &self.entries {
            let diff = e
                .hash
                .iter()
                .zip(h.as_bytes())
                .fold(0u8, |acc, (x, y)| acc | (x ^ y));
            if diff == 0 && found.is_none() {
                found = Some(e);
            }
        }
        found
    }

    /// Tells whether `presented` is one of the tokens.
    pub fn matches(&self, presented: &[u8]) -> bool {
        self.find(presented).is_some()
    }

    /// The entry whose token's BLAKE3 hash is `hash`, if any (every entry compared).
    pub fn by_hash(&self, hash: &[u8; 32]) -> Option<&Entry> {
        let mut found = None;
        for e in &self.entries {
            let diff = e
                .hash
                .iter()
                .zip(hash)
                .fold(0u8, |acc, (x, y)| acc | (x ^ y));
            if diff == 0 && found.is_none() {
                found = Some(e);
            }
        }
        found
    }

    /// Whether a token whose BLAKE3 hash is `hash` is one of these (an HTTP stream keeps
    /// the hash of what it presented, never the token).
    pub fn holds_hash(&self, hash: &[u8; 32]) -> bool {
        self.by_hash(hash).is_some()
    }

    /// The names, in file order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.name.as_str())
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

/// As [`ensure`], then reads the file as a set of tokens (a file gatosd made holds one,
/// `default`; the operator may have rewritten it with named ones).
///
/// # Errors
/// As [`ensure`] and [`Tokens::load`].
pub fn ensure_set(path: &Path) -> Result<Tokens, String> {
    if !path.exists() {
        create(path)?;
    }
    Tokens::load(path)
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

    const A: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    const B: &str = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";

    fn parse(text: &str) -> Result<Tokens, String> {
        Tokens::parse(text, Path::new("/f"))
    }

    #[test]
    fn a_bare_token_is_the_legacy_form_named_default() -> Result<(), String> {
        let t = parse("abc\n")?;
        let e = t.find(b"abc").ok_or("no match")?;
        assert_eq!((e.name.as_str(), e.read_only), ("default", false));
        assert!(t.find(b"abc ").is_none() && t.find(b"ab").is_none());
        // Comments and blank lines around it change nothing.
        assert!(parse("# mine\n\n  abc  \n")?.matches(b"abc"));
        Ok(())
    }

    #[test]
    fn named_tokens_name_their_actor_and_may_be_read_only() -> Result<(), String> {
        let t = parse(&format!("# gatosd tokens\nci {A}\n\ndashboard {B} ro\n"))?;
        let ci = t.find(A.as_bytes()).ok_or("ci")?;
        assert_eq!((ci.name.as_str(), ci.read_only), ("ci", false));
        let d = t.find(B.as_bytes()).ok_or("dashboard")?;
        assert_eq!((d.name.as_str(), d.read_only), ("dashboard", true));
        assert!(t.find(b"ci").is_none());
        assert_eq!(t.names().collect::<Vec<_>>(), ["ci", "dashboard"]);
        assert!(!format!("{t:?}").contains(A));
        Ok(())
    }

    #[test]
    fn bad_files_are_refused_naming_the_line_never_the_token() {
        for (text, says) in [
            ("", "holds no token"),
            ("# only a comment\n", "holds no token"),
            (
                &format!("ci {A}\nbare\n") as &str,
                "line 2: a bare token among named ones",
            ),
            (
                &format!("ci {A}\nci {B}\n"),
                "line 2: the name ci is given twice",
            ),
            (
                &format!("ci {A}\nweb {A}\n"),
                "line 2: this token is given twice",
            ),
            ("ci short\n", "line 1: the token of ci must be at least 32"),
            (&format!("CI {A}\n"), "line 1: a name is"),
            (&format!("ci {A} rw\n"), "line 1: unknown mode \"rw\""),
            (
                &format!("ci {A} ro x\n"),
                "line 1: expected NAME TOKEN [ro]",
            ),
        ] {
            match parse(text) {
                Ok(t) => panic!("{text:?} parsed: {t:?}"),
                Err(e) => {
                    assert!(e.contains(says), "{text:?}: {e}");
                    assert!(!e.contains(A) && !e.contains(B), "{e}");
                }
            }
        }
    }

    #[test]
    fn a_file_readable_by_others_is_flagged() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("t");
        std::fs::write(&p, format!("ci {A}\n"))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
        assert!(!Tokens::load(&p)?.open_mode);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640))?;
        assert!(Tokens::load(&p)?.open_mode);
        Ok(())
    }

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
