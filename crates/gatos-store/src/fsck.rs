//! `git fsck`, run and parsed here so that no other crate spawns `git` (STYLE B0.2).
//!
//! gix has no equivalent of `git fsck --strict`, so the store runs the executable and hands
//! back what it found as typed problems: the planes never see a raw command or its text
//! format.
//!
//! `git fsck` lists the objects before it reads the refs. A writer that adds objects and
//! moves a ref in between (a gatosd flushing its journal, a worker, a push) makes fsck
//! report the new commit as `missing`, or a `broken link` to an object written after fsck's
//! scan passed its directory. When every problem of a run is of that kind and every object
//! it names exists once the run is over, [`Store::fsck`] checks again from those objects
//! (`git fsck <object>…`, which reads no ref) and reports that run instead: an object
//! really missing is still missing then.

use std::process::Stdio;

use gatos_types::Oid;

use crate::Store;
use crate::error::{Error, Result};

/// The most problems one run reports (a corrupt repository can print thousands of lines).
pub const MAX_PROBLEMS: usize = 50;

/// What to check.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// `--strict`: also report objects Git accepts but should not write (the rule every
    /// gatos repository must pass, DESIGN §3).
    pub strict: bool,
}

/// One problem `git fsck` reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The first object the report names, if any.
    pub object: Option<Oid>,
    /// The report, on one line (git's continuation lines joined, spaces collapsed).
    pub message: String,
}

/// The outcome of one run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// Whether `git fsck` succeeded (nothing found).
    pub clean: bool,
    /// What it reported, at most [`MAX_PROBLEMS`]; empty with `clean` false when it failed
    /// without saying why.
    pub problems: Vec<Problem>,
}

impl Store {
    /// Runs `git fsck` (never dangling objects, never progress) and parses its findings.
    ///
    /// # Errors
    /// [`Error::Subprocess`] (status `not started`, the cause in `stderr`) when `git`
    /// cannot run; a failing fsck is an [`Outcome`], not an error.
    pub fn fsck(&self, opts: Options) -> Result<Outcome> {
        let first = self.run_fsck(opts, &[])?;
        // A report cut at MAX_PROBLEMS may hide problems of any kind past the cut.
        if first.clean || first.problems.len() >= MAX_PROBLEMS {
            return Ok(first);
        }
        let mut heads = Vec::new();
        let reader = self.reader();
        for p in &first.problems {
            match written_meanwhile(&p.message) {
                Some((head, named)) if named.iter().all(|&o| reader.exists(o)) => {
                    heads.push(head);
                }
                _ => return Ok(first),
            }
        }
        if heads.is_empty() {
            return Ok(first);
        }
        heads.sort_unstable();
        heads.dedup();
        tracing::debug!(
            objects = heads.len(),
            "fsck named objects written while it ran; checking from them"
        );
        self.run_fsck(opts, &heads)
    }

    /// One `git fsck`, from the refs or, with `heads`, from those objects only.
    fn run_fsck(&self, opts: Options, heads: &[Oid]) -> Result<Outcome> {
        let mut args = vec!["fsck".to_owned()];
        if opts.strict {
            args.push("--strict".into());
        }
        args.extend(["--no-dangling".into(), "--no-progress".into()]);
        args.extend(heads.iter().map(Oid::to_string));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = self.git_command(&args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        tracing::debug!(?args, "spawning git");
        let out = cmd.output().map_err(|e| Error::Subprocess {
            args: args.join(" "),
            status: "not started".into(),
            stderr: e.to_string(),
        })?;
        if out.status.success() {
            return Ok(Outcome {
                clean: true,
                problems: Vec::new(),
            });
        }
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(Outcome {
            clean: false,
            problems: parse(&text),
        })
    }
}

/// For a problem a writer running beside fsck can cause, the object to check again from and
/// the objects that must exist for it to be that: `missing <type> <id>` (a ref moved to a
/// commit written after the scan: the commit itself), and `broken link from <type> <a> to
/// <type> <b>` (`b` written after the scan passed its directory: `a`, and `b`).
fn written_meanwhile(message: &str) -> Option<(Oid, Vec<Oid>)> {
    let words: Vec<&str> = message.split_whitespace().collect();
    match words.as_slice() {
        ["missing", _, id] => {
            let id: Oid = id.parse().ok()?;
            Some((id, vec![id]))
        }
        ["broken", "link", "from", _, from, "to", _, to] => {
            let (from, to): (Oid, Oid) = (from.parse().ok()?, to.parse().ok()?);
            Some((from, vec![from, to]))
        }
        _ => None,
    }
}

/// Parses fsck's report: `notice:` lines (an unborn HEAD, say) are not problems; an
/// indented line continues the one before (git writes "broken link from  commit X" and
/// "to    tree Y" on two).
fn parse(text: &str) -> Vec<Problem> {
    let mut lines: Vec<String> = Vec::new();
    for l in text.lines() {
        let words = l.split_whitespace().collect::<Vec<_>>().join(" ");
        if words.is_empty() || words.starts_with("notice:") {
            continue;
        }
        if let (Some(last), true) = (lines.last_mut(), l.starts_with(char::is_whitespace)) {
            last.push(' ');
            last.push_str(&words);
        } else if lines.len() == MAX_PROBLEMS {
            break;
        } else {
            lines.push(words);
        }
    }
    lines
        .into_iter()
        .map(|line| Problem {
            object: line.split_whitespace().find_map(|w| {
                let w = w.trim_end_matches(':');
                (w.len() == 40 && w.bytes().all(|b| b.is_ascii_hexdigit()))
                    .then(|| w.parse().ok())
                    .flatten()
            }),
            message: line.trim().to_owned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_lines_join_and_notices_are_skipped() -> Result<(), Box<dyn std::error::Error>> {
        let a = "1111111111111111111111111111111111111111";
        let b = "2222222222222222222222222222222222222222";
        let text = format!(
            "notice: HEAD points to an unborn branch (main)\n\
             broken link from  commit {a}\n              to    tree {b}\n\
             missing blob {b}\n"
        );
        let p = parse(&text);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].object, Some(a.parse()?));
        assert_eq!(
            p[0].message,
            format!("broken link from commit {a} to tree {b}")
        );
        assert_eq!(p[1].object, Some(b.parse()?));
        assert_eq!(parse("error: something odd\n")[0].object, None);
        Ok(())
    }

    #[test]
    fn what_a_writer_beside_fsck_can_cause() -> Result<(), Box<dyn std::error::Error>> {
        let a: Oid = "1111111111111111111111111111111111111111".parse()?;
        let b: Oid = "2222222222222222222222222222222222222222".parse()?;
        assert_eq!(
            written_meanwhile(&format!("missing commit {a}")),
            Some((a, vec![a]))
        );
        assert_eq!(
            written_meanwhile(&format!("broken link from commit {a} to tree {b}")),
            Some((a, vec![a, b]))
        );
        assert_eq!(
            written_meanwhile(&format!("error: {a}: object corrupt")),
            None
        );
        assert_eq!(
            written_meanwhile(&format!("badTimezone: commit {a}: invalid author")),
            None
        );
        Ok(())
    }

    #[test]
    fn at_most_max_problems() {
        let text = "bad\n".repeat(MAX_PROBLEMS + 10);
        assert_eq!(parse(&text).len(), MAX_PROBLEMS);
    }
}
