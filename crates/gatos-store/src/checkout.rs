//! Sources for a job: a commit's tree written out as plain files (ADR 0021).
//!
//! Not `git worktree add`: a linked worktree's `.git` file points into the repository's
//! git directory, which the job's sandbox hides, and a registered worktree outlives a
//! crashed worker. A job gets the files of the commit and nothing of the repository.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use gatos_types::Oid;
use gix::objs::FindExt as _;

use crate::error::{Error, Result};
use crate::{Store, from_gix, to_gix};

/// The most files a checkout writes (a tree that names one subtree many times could
/// otherwise expand without bound).
pub const MAX_FILES: u64 = 1_000_000;
/// The most bytes a checkout writes.
pub const MAX_BYTES: u64 = 16 << 30;

/// What a checkout wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// Entries written: files, symbolic links and directories.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

fn bad_name(name: &[u8]) -> bool {
    name.is_empty()
        || name == b"."
        || name == b".."
        || name.contains(&b'/')
        || name.contains(&0)
        || name.eq_ignore_ascii_case(b".git")
}

impl Store {
    /// Resolves `HEAD` to the commit it names (`None` on an unborn branch or a bare
    /// repository without one).
    pub fn head_commit(&self) -> Option<Oid> {
        let repo = self.handle();
        repo.head_id().ok().map(|id| from_gix(id.as_ref()))
    }

    /// Resolves a revision (`HEAD`, a branch, a tag, an abbreviated id, `main~2`, …) to a
    /// commit, as `git rev-parse` does.
    ///
    /// # Errors
    /// [`Error::UnknownRevision`] when it names no commit here.
    pub fn resolve_commit(&self, rev: &str) -> Result<Oid> {
        let unknown = || Error::UnknownRevision {
            rev: rev.chars().take(200).collect(),
        };
        if rev.starts_with('-') || rev.is_empty() || rev.len() > 1024 {
            return Err(unknown());
        }
        // A full commit id this repository holds needs no git process.
        if let Ok(id) = rev.parse::<Oid>()
            && self.has_commit(id)
        {
            return Ok(id);
        }
        let spec = format!("{rev}^{{commit}}");
        let out = self
            .run_git(&[
                "rev-parse",
                "--verify",
                "--quiet",
                "--end-of-options",
                &spec,
            ])
            .map_err(|_| unknown())?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim().parse().map_err(|_| unknown())
    }

    /// Tells whether `commit` is a commit this repository holds.
    pub fn has_commit(&self, commit: Oid) -> bool {
        let mut buf = Vec::new();
        self.handle()
            .objects
            .find_commit(&to_gix(commit), &mut buf)
            .is_ok()
    }

    /// Writes the tree of `commit` under `dest` (which must exist and be empty): files
    /// with their executable bit, symbolic links as links, submodules as empty
    /// directories. Entries git itself refuses (`..`, `.git`, names with `/`) are refused.
    ///
    /// # Errors
    /// [`Error::MissingObject`], [`Error::Corrupt`] for a refused entry, [`Error::Io`].
    pub fn write_commit_tree(&self, commit: Oid, dest: &Path) -> Result<Written> {
        let repo = self.handle();
        let mut buf = Vec::new();
        let tree = {
            let c = repo
                .objects
                .find_commit(&to_gix(commit), &mut buf)
                .map_err(|_| Error::MissingObject { id: commit })?;
            c.tree()
        };
        let mut written = Written::default();
        let mut stack = vec![(tree, dest.to_owned())];
        let io = |path: &Path, e: std::io::Error| Error::Io {
            context: format!("writing {}", path.display()),
            source: e,
        };
        while let Some((tree, dir)) = stack.pop() {
            let entries: Vec<(Vec<u8>, gix::objs::tree::EntryMode, gix::ObjectId)> = repo
                .objects
                .find_tree(&tree, &mut buf)
                .map_err(|_| Error::MissingObject {
                    id: from_gix(&tree),
                })?
                .entries
                .iter()
                .map(|e| (e.filename.to_vec(), e.mode, e.oid.to_owned()))
                .collect();
            for (name, mode, oid) in entries {
                if bad_name(&name) {
                    return Err(Error::Corrupt {
                        what: format!("the tree of commit {commit}"),
                        reason: format!(
                            "an entry named {:?} cannot be checked out",
                            String::from_utf8_lossy(&name)
                        ),
                    });
                }
                let path = dir.join(OsStr::from_bytes(&name));
                if mode.is_tree() {
                    written.files += 1;
                    if written.files > MAX_FILES {
                        return Err(Error::Corrupt {
                            what: format!("the tree of commit {commit}"),
                            reason: format!(
                                "more than {MAX_FILES} entries: too large to check out for a job"
                            ),
                        });
                    }
                    std::fs::create_dir(&path).map_err(|e| io(&path, e))?;
                    stack.push((oid, path));
                } else if mode.is_commit() {
                    std::fs::create_dir(&path).map_err(|e| io(&path, e))?;
                } else {
                    let blob = repo
                        .objects
                        .find_blob(&oid, &mut buf)
                        .map_err(|_| Error::MissingObject { id: from_gix(&oid) })?;
                    written.files += 1;
                    written.bytes += blob.data.len() as u64;
                    if written.files > MAX_FILES || written.bytes > MAX_BYTES {
                        return Err(Error::Corrupt {
                            what: format!("the tree of commit {commit}"),
                            reason: format!(
                                "more than {MAX_FILES} files or {} GiB: too large to check out for a job",
                                MAX_BYTES >> 30
                            ),
                        });
                    }
                    if mode.is_link() {
                        std::os::unix::fs::symlink(OsStr::from_bytes(blob.data), &path)
                            .map_err(|e| io(&path, e))?;
                    } else {
                        // create_new: never through a link or over a file a duplicate
                        // tree entry made first (git refuses such trees; gix reads them).
                        std::fs::OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .open(&path)
                            .and_then(|mut f| std::io::Write::write_all(&mut f, blob.data))
                            .map_err(|e| io(&path, e))?;
                        if mode.is_executable() {
                            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                                .map_err(|e| io(&path, e))?;
                        }
                    }
                }
            }
        }
        Ok(written)
    }
}
