//! `git gatos jobs logs`.

use std::io::Write as _;
use std::time::{Duration, Instant};

use gatos::Error;
use gatos::jobs::logs::{FollowOptions, LogChunk, MAX_CHUNK, Options, Source, Stream};
use gatos_types::Ulid;

use super::super::{Ctx, parse};
use crate::cli::LogsArgs;
use crate::output::{Closed, Output};

/// Prints a job's logs: each stream as far as it is written now, or, with `--follow`, as
/// it is written until the job has ended.
pub fn run(ctx: &Ctx, out: &mut Output, a: &LogsArgs) -> Result<(), Error> {
    let id: Ulid = parse(&a.id)?;
    let stream = if a.stderr {
        "stderr"
    } else if a.stdout {
        "stdout"
    } else {
        a.stream.as_str()
    };
    let streams = match stream {
        "both" => Stream::BOTH.to_vec(),
        s => vec![parse::<Stream>(s)?],
    };
    let g = ctx.gatos()?;
    let mut printer = Printer::default();
    if a.follow {
        out.streaming = true;
        let mut follow = g.jobs().follow_logs(
            id,
            &FollowOptions {
                attempt: a.attempt,
                streams,
                max_bytes: MAX_CHUNK,
            },
        )?;
        let mut told_waiting = false;
        while !follow.is_ended() {
            match follow.next_before(Instant::now() + Duration::from_millis(500))? {
                Some(c) => printer.print(out, &c)?,
                None => {
                    if let Some(why) = follow.waiting_for()
                        && !told_waiting
                    {
                        out.hint(&format!("waiting: {why}"));
                        told_waiting = true;
                    }
                }
            }
        }
        return Ok(());
    }
    // Once through: every stream of one attempt (the latest when none is given, fixed at
    // the first chunk so both streams are of the same attempt).
    let mut attempt = a.attempt;
    for stream in streams {
        let mut from = 0;
        let mut printed = false;
        loop {
            let c = g.jobs().logs(
                id,
                &Options {
                    attempt,
                    stream,
                    from_offset: from,
                    max_bytes: MAX_CHUNK,
                },
            )?;
            attempt = Some(c.attempt);
            let moved = c.next_offset > from;
            from = c.next_offset;
            let last = c.done || !moved;
            // Chunks with bytes, and one that says where the stream ends (with --json: its
            // `done` and `next_offset`), unless the last chunk printed already said it.
            if !c.data.is_empty() || c.done || !printed {
                printer.print(out, &c)?;
                printed = true;
            }
            if last {
                break;
            }
        }
    }
    Ok(())
}

/// Human output: the job's standard output on ours, its standard error on ours, with a
/// hint where an attempt starts (when following several) or the spool stops at the cap.
/// `--json`: one chunk per line.
#[derive(Default)]
struct Printer {
    attempt: u32,
    told_truncated: Vec<(u32, Stream)>,
}

impl Printer {
    fn print(&mut self, out: &mut Output, c: &LogChunk) -> Result<(), Error> {
        if out.is_json() {
            return out.row(c, |_| Ok(()));
        }
        if self.attempt != 0 && self.attempt != c.attempt {
            out.hint(&format!("job {} attempt {}", c.job, c.attempt));
        }
        self.attempt = c.attempt;
        match c.stream {
            Stream::Stdout => {
                let mut stdout = std::io::stdout().lock();
                stdout
                    .write_all(&c.data)
                    .and_then(|()| stdout.flush())
                    .map_err(|e| match e.kind() {
                        std::io::ErrorKind::BrokenPipe => Error::from(Closed),
                        _ => Error::new(
                            gatos_types::ErrorCode::Internal,
                            format!("writing output: {e}"),
                        ),
                    })?;
            }
            Stream::Stderr => {
                let mut stderr = std::io::stderr().lock();
                let _ = stderr.write_all(&c.data).and_then(|()| stderr.flush());
            }
        }
        let key = (c.attempt, c.stream);
        if c.truncated && c.source == Source::Spool && !self.told_truncated.contains(&key) {
            self.told_truncated.push(key);
            out.hint(&format!(
                "the {} of attempt {} passed the worker's --log-cap: the rest is not kept, and the result says how much was written",
                c.stream, c.attempt
            ));
        }
        Ok(())
    }
}
