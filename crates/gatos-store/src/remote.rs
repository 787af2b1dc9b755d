//! Talking to a Git remote with the `git` executable (gix has no push): fetching into the
//! tracking namespace and pushing with leases, parsing `--porcelain` output (DESIGN §5,
//! ADR 0005, ADR 0015).
//!
//! Transports and authentication are whatever `git` is configured with (ssh keys,
//! credential helpers, `git daemon`, HTTP). Nothing is ever written to `remote.*.fetch`:
//! refspecs are given on the command line.

use std::process::Stdio;

use gatos_types::Oid;

use crate::Store;
use crate::error::{Error, Expect, Result};
use crate::refs::names::{GATOS_PREFIX, SYNC_PREFIX};
use crate::subprocess::tail;

/// One ref to push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushRef {
    /// The remote ref (full name).
    pub name: String,
    /// What it must hold at the remote for the update to apply (the lease).
    pub expect: Expect,
    /// What it will hold; `None` deletes it.
    pub new: Option<Oid>,
}

/// How one pushed ref fared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushStatus {
    /// Updated (created, fast-forwarded, forced or deleted).
    Ok,
    /// The remote already held the new value.
    UpToDate,
    /// The lease did not hold: the remote ref is not what we expected.
    Stale,
    /// Refused for another reason (hook, atomic push failed, permissions, …).
    Rejected(String),
}

/// The answer to a push, ref by ref.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushReport {
    /// `(remote ref, status)` in the order git reported them.
    pub refs: Vec<(String, PushStatus)>,
}

impl PushReport {
    /// Returns the status of one ref.
    pub fn status(&self, name: &str) -> Option<&PushStatus> {
        self.refs.iter().find(|(n, _)| n == name).map(|(_, s)| s)
    }

    /// Tells whether every ref landed (or already held its value).
    pub fn all_ok(&self) -> bool {
        self.refs
            .iter()
            .all(|(_, s)| matches!(s, PushStatus::Ok | PushStatus::UpToDate))
    }
}

/// Tells whether a remote name can be used in the tracking namespace.
pub fn is_valid_remote_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !name.ends_with('.')
        && !name.ends_with(".lock")
        && !name.contains("..")
        && name.len() <= 64
}

/// Tells whether a directory tree holds any file.
fn has_files(dir: &std::path::Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| match e.file_type() {
        Ok(t) if t.is_dir() => has_files(&e.path()),
        Ok(_) => true,
        Err(_) => false,
    })
}

fn unavailable(what: impl Into<String>, stderr: &[u8]) -> Error {
    Error::Remote {
        what: what.into(),
        detail: tail(stderr),
    }
}

impl Store {
    /// Lists the configured remotes (`remote.<name>.url`), sorted.
    ///
    /// # Errors
    /// When `git remote` cannot run.
    pub fn remotes(&self) -> Result<Vec<String>> {
        let out = self.run_git(&["remote"])?;
        let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect();
        v.sort();
        Ok(v)
    }

    /// Fetches `refs/gatos/*` of `remote` into `refs/gatos-sync/<remote>/*` (forced, pruned
    /// within that namespace only), or only the gatos refs under the given prefixes (`only`,
    /// e.g. `refs/gatos/jobs/<id>/`) into their tracking names. With `progress`, git's
    /// progress goes to our stderr.
    ///
    /// # Errors
    /// [`Error::Remote`] when the remote cannot be reached or refuses.
    pub fn fetch_gatos(&self, remote: &str, only: Option<&[String]>, progress: bool) -> Result<()> {
        let mut args: Vec<String> = vec![
            "-c".into(),
            "fetch.writeCommitGraph=false".into(),
            // Objects are checked as they arrive (as `git fsck` would), before any ref of
            // ours can name them (ADR 0018).
            "-c".into(),
            "fetch.fsckObjects=true".into(),
            "fetch".into(),
            "--no-tags".into(),
            "--no-write-fetch-head".into(),
            "--no-auto-gc".into(),
            "--no-auto-maintenance".into(),
            "--no-recurse-submodules".into(),
        ];
        args.push(if progress { "--progress" } else { "--quiet" }.into());
        // Pruning applies to the destinations of the refspecs given: the tracking namespace.
        args.push("--prune".into());
        match only {
            None => {
                args.push(remote.into());
                args.push(format!("+{GATOS_PREFIX}*:{SYNC_PREFIX}{remote}/*"));
            }
            Some(names) => {
                args.push(remote.into());
                for n in names {
                    let rest = n
                        .strip_prefix(GATOS_PREFIX)
                        .ok_or_else(|| Error::Unsupported(format!("{n} is not a gatos ref")))?;
                    // A wildcard refspec: a ref the remote does not have is not an error.
                    args.push(format!("+{n}*:{SYNC_PREFIX}{remote}/{rest}*"));
                }
            }
        }
        let mut cmd = self.git_command(&args);
        cmd.stdout(Stdio::null()).stderr(if progress {
            Stdio::inherit()
        } else {
            Stdio::piped()
        });
        tracing::debug!(remote, refs = ?only.map(<[String]>::len), "fetching");
        let out = cmd.output().map_err(|e| Error::Remote {
            what: format!("running git fetch {remote}"),
            detail: e.to_string(),
        })?;
        if !out.status.success() {
            return Err(unavailable(
                format!("git fetch {remote} failed ({})", out.status),
                &out.stderr,
            ));
        }
        if only.is_none() {
            self.pack_tracking_refs(remote);
        }
        Ok(())
    }

    /// Packs the loose tracking refs of `remote` (DESIGN §5: tracking refs are packed, so a
    /// hub with many live refs costs one file, not thousands). Best effort: git before 2.42
    /// has no `pack-refs --include`, and maintenance packs them anyway.
    fn pack_tracking_refs(&self, remote: &str) {
        let dir = self.git_dir().join(format!("{SYNC_PREFIX}{remote}"));
        if !has_files(&dir) {
            return;
        }
        let Ok(_guard) = self.locks().acquire(
            &[crate::refs::PACKED_REFS_FAMILY.to_owned()],
            crate::locks::DEFAULT_LOCK_TIMEOUT,
        ) else {
            return;
        };
        let include = format!("--include={SYNC_PREFIX}{remote}/*");
        if let Err(e) = self.run_git(&["pack-refs", &include]) {
            tracing::debug!(error = %e, "could not pack the tracking refs; maintenance will");
        }
    }

    /// Pushes refs with leases, as one `git push --porcelain` (with `atomic`, all or
    /// nothing). A failed lease is [`PushStatus::Stale`] in the report, not an error.
    ///
    /// # Errors
    /// [`Error::Remote`] when the remote cannot be reached, or git reports no ref at all.
    pub fn push(&self, remote: &str, refs: &[PushRef], atomic: bool) -> Result<PushReport> {
        if refs.is_empty() {
            return Ok(PushReport::default());
        }
        let mut args: Vec<String> = vec![
            "push".into(),
            "--porcelain".into(),
            "--no-verify".into(),
            // No `--quiet`: it also silences the porcelain lines of refs that landed.
        ];
        if atomic {
            args.push("--atomic".into());
        }
        for r in refs {
            let lease = match r.expect {
                Expect::Absent => String::new(),
                Expect::Value(o) | Expect::AbsentOr(o) => o.to_string(),
                Expect::Any => continue,
            };
            args.push(format!("--force-with-lease={}:{lease}", r.name));
        }
        args.push(remote.into());
        for r in refs {
            let force = if r.expect == Expect::Any { "+" } else { "" };
            match r.new {
                Some(o) => args.push(format!("{force}{o}:{}", r.name)),
                None => args.push(format!(":{}", r.name)),
            }
        }
        let mut cmd = self.git_command(&args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        tracing::debug!(remote, refs = refs.len(), atomic, "pushing");
        let out = cmd.output().map_err(|e| Error::Remote {
            what: format!("running git push {remote}"),
            detail: e.to_string(),
        })?;
        let report = parse_porcelain(&String::from_utf8_lossy(&out.stdout));
        if report.refs.is_empty() {
            return Err(unavailable(
                format!("git push {remote} failed ({})", out.status),
                &out.stderr,
            ));
        }
        Ok(report)
    }
}

/// Parses `git push --porcelain` output: `<flag>\t<from>:<to>\t<summary> (<reason>)`.
pub fn parse_porcelain(text: &str) -> PushReport {
    let mut refs = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, '\t');
        let (Some(flag), Some(spec), summary) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let Some((_, to)) = spec.rsplit_once(':') else {
            continue;
        };
        let summary = summary.unwrap_or("");
        let status = match flag {
            " " | "+" | "-" | "*" => PushStatus::Ok,
            "=" => PushStatus::UpToDate,
            "!" if summary.contains("stale info") => PushStatus::Stale,
            "!" => PushStatus::Rejected(summary.to_owned()),
            _ => continue,
        };
        refs.push((to.to_owned(), status));
    }
    PushReport { refs }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn porcelain_lines_map_to_statuses() {
        let text = "To /tmp/hub.git\n\
            *\t0123:refs/gatos/jobs/A/claim\t[new reference]\n\
            !\t4567:refs/gatos/jobs/B/claim\t[rejected] (stale info)\n\
            =\t89ab:refs/gatos/messages/t/head\t[up to date]\n\
            !\tcdef:refs/gatos/jobs/C/result\t[rejected] (atomic push failed)\n\
            -\t:refs/gatos/jobs/D/job\t[deleted]\n\
            Done\n";
        let r = parse_porcelain(text);
        assert_eq!(r.status("refs/gatos/jobs/A/claim"), Some(&PushStatus::Ok));
        assert_eq!(
            r.status("refs/gatos/jobs/B/claim"),
            Some(&PushStatus::Stale)
        );
        assert_eq!(
            r.status("refs/gatos/messages/t/head"),
            Some(&PushStatus::UpToDate)
        );
        assert!(matches!(
            r.status("refs/gatos/jobs/C/result"),
            Some(PushStatus::Rejected(_))
        ));
        assert_eq!(r.status("refs/gatos/jobs/D/job"), Some(&PushStatus::Ok));
        assert!(!r.all_ok());
    }

    #[test]
    fn remote_names_fit_the_tracking_namespace() {
        assert!(is_valid_remote_name("origin"));
        assert!(is_valid_remote_name("hub-1.eu"));
        assert!(!is_valid_remote_name("a/b"));
        assert!(!is_valid_remote_name("x.lock"));
        assert!(!is_valid_remote_name("-x"));
        assert!(!is_valid_remote_name("a..b"));
    }
}
