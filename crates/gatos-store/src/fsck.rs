//! `git fsck`, run and parsed here so that no other crate spawns `git` (STYLE B0.2).
//!
//! gix has no equivalent of `git fsck --strict`, so the store runs the executable and hands
//! back what it found as typed problems: the planes never see a raw command or its text
//! format.

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
        let mut args = vec!["fsck"];
        if opts.strict {
            args.push("--strict");
        }
        args.extend(["--no-dangling", "--no-progress"]);
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
    fn at_most_max_problems() {
        let text = "bad\n".repeat(MAX_PROBLEMS + 10);
        assert_eq!(parse(&text).len(), MAX_PROBLEMS);
    }
}
