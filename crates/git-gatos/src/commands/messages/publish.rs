//! `git gatos messages publish`.

use std::io::{BufRead, IsTerminal, Read};
use std::time::{Duration, Instant};

use gatos::Error;
use gatos::messages::{BatchItem, BatchOptions};
use gatos_types::wire::PublishRow;
use gatos_types::{ErrorCode, Topic, jcs};
use serde_json::Value;

use super::super::{Ctx, api, parse};
use crate::cli::PublishArgs;
use crate::output::{Output, usage};
use gatos_api::types::PublishParams;

fn read_payload(what: &str, bytes: &[u8]) -> Result<Value, Error> {
    jcs::parse(bytes).map_err(|e| Error::new(ErrorCode::InvalidInput, format!("{what}: {e}")))
}

fn print(out: &mut Output, r: &PublishRow) -> Result<(), Error> {
    out.row(r, |w| {
        let verb = if r.duplicate {
            "duplicate"
        } else {
            "published"
        };
        write!(w, "{verb} {} seq {} {}", r.topic, r.seq, r.ulid)
    })
}

/// Publishes one payload or a JSONL batch.
pub fn run(ctx: &Ctx, out: &mut Output, a: &PublishArgs) -> Result<(), Error> {
    let topic: Topic = parse(&a.topic)?;
    let mut headers = match &a.headers {
        Some(h) => Some(read_payload("--headers", h.as_bytes())?),
        None => None,
    };
    if let Some(id) = &a.msg_id {
        let map = headers.get_or_insert_with(|| Value::Object(serde_json::Map::new()));
        let obj = map
            .as_object_mut()
            .ok_or_else(|| usage("--headers must be a JSON object"))?;
        obj.insert("msg_id".into(), Value::String(id.clone()));
    }
    if let Some(path) = &a.batch {
        return batch(ctx, out, a, &topic, path, headers);
    }
    let payload = if let Some(d) = &a.data {
        read_payload("--data", d.as_bytes())?
    } else if let Some(f) = &a.file {
        let bytes = std::fs::read(f).map_err(|e| {
            Error::new(
                ErrorCode::InvalidInput,
                format!("reading {}: {e}", f.display()),
            )
        })?;
        read_payload(&f.display().to_string(), &bytes)?
    } else {
        if a.stdin.is_none() && std::io::stdin().is_terminal() {
            return Err(usage(
                "give the payload with --data JSON, --file F, --batch F.jsonl or - (stdin)",
            ));
        }
        let mut bytes = Vec::new();
        std::io::stdin()
            .take(gatos::messages::MAX_ENVELOPE_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::new(ErrorCode::InvalidInput, format!("reading stdin: {e}")))?;
        read_payload("stdin", &bytes)?
    };
    let row = ctx
        .service()?
        .messages_publish(
            &ctx.actor()?,
            PublishParams {
                topic,
                payload,
                headers,
                expect_last_seq: a.expect_last_seq,
            },
        )
        .map_err(api)?;
    print(out, &row)
}

fn batch(
    ctx: &Ctx,
    out: &mut Output,
    a: &PublishArgs,
    topic: &Topic,
    path: &std::path::Path,
    headers: Option<Value>,
) -> Result<(), Error> {
    let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        let f = std::fs::File::open(path).map_err(|e| {
            Error::new(
                ErrorCode::InvalidInput,
                format!("opening {}: {e}", path.display()),
            )
        })?;
        Box::new(std::io::BufReader::with_capacity(256 * 1024, f))
    };
    let g = ctx.gatos()?;
    // Item index → line number, so a failure can say which line to re-send from.
    let mut line_of: Vec<u64> = Vec::new();
    let line_numbers = std::cell::RefCell::new(&mut line_of);
    let items = reader.lines().enumerate().filter_map(|(i, line)| {
        let n = i as u64 + 1;
        let item = match line {
            Err(e) => Err(Error::new(
                ErrorCode::InvalidInput,
                format!("line {n}: {e}"),
            )),
            Ok(l) if l.trim().is_empty() => return None,
            Ok(l) => read_payload(&format!("line {n}"), l.as_bytes()).map(|payload| BatchItem {
                payload,
                headers: headers.clone(),
            }),
        };
        line_numbers.borrow_mut().push(n);
        Some(item)
    });
    let progress = out.progress_allowed();
    let started = Instant::now();
    let mut last_shown = started;
    let mut count = 0u64;
    let opts = BatchOptions {
        chunk: a.chunk,
        expect_last_seq: a.expect_last_seq,
    };
    let opts_chunk = a.chunk.max(1) as u64;
    let result = g.messages().publish_batch(topic, items, &opts, |r| {
        count += 1;
        if progress
            && started.elapsed() > Duration::from_secs(1)
            && last_shown.elapsed() > Duration::from_millis(250)
        {
            last_shown = Instant::now();
            eprint_progress(count);
        }
        print(out, r)?;
        // Rows arrive after their chunk landed: flush per chunk so readers of our output
        // see every acknowledged message promptly.
        if count.is_multiple_of(opts_chunk) {
            out.flush()
        } else {
            Ok(())
        }
    });
    if progress && started.elapsed() > Duration::from_secs(1) {
        eprint_progress(count);
        eprint_newline();
    }
    match result {
        Ok(_) => Ok(()),
        Err(e) => {
            let landed = e
                .details()
                .get("landed")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let through = landed
                .checked_sub(1)
                .and_then(|i| line_of.get(usize::try_from(i).ok()?))
                .copied();
            let resume = match through {
                Some(l) => format!(
                    "{} landed (through line {l}); re-send from line {}",
                    crate::output::count(landed, "message", "messages"),
                    l + 1
                ),
                None => "no message landed; re-send from line 1".to_owned(),
            };
            Err(e
                .context(resume)
                .with_detail("landed", landed)
                .with_detail("next_line", through.map_or(1, |l| l + 1)))
        }
    }
}

/// Progress on stderr (lost, never fatal, when stderr is closed).
fn eprint_progress(n: u64) {
    use std::io::Write as _;
    let n = crate::output::count(n, "message", "messages");
    let _ = write!(std::io::stderr(), "\rpublished {n}");
}

fn eprint_newline() {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr());
}
