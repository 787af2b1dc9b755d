//! `git gatos messages …`.

mod ack;
mod checkpoint;
mod config;
mod consume;
mod prune;
mod publish;
mod read;

use std::io::Write;

use gatos::Error;
use gatos::messages::MessageView;

use super::Ctx;
use crate::cli::MessagesCommand;
use crate::output::Output;

/// Dispatches a message-plane verb.
pub fn run(ctx: &Ctx, out: &mut Output, cmd: &MessagesCommand) -> Result<(), Error> {
    match cmd {
        MessagesCommand::Publish(a) => publish::run(ctx, out, a),
        MessagesCommand::Read(a) => read::run(ctx, out, a),
        MessagesCommand::Topics => topics(ctx, out),
        MessagesCommand::Checkpoint(c) => checkpoint::run(ctx, out, c),
        MessagesCommand::Consume(a) => consume::run(ctx, out, a),
        MessagesCommand::Ack(a) => ack::run(ctx, out, a),
        MessagesCommand::Config(a) => config::run(ctx, out, a),
        MessagesCommand::Prune(a) => prune::run(ctx, out, a),
    }
}

/// Prints one message: its row with `--json`, else `SEQ ULID PAYLOAD`.
pub fn print_message(out: &mut Output, m: &MessageView<'_>) -> Result<(), Error> {
    out.row(m, |w: &mut dyn Write| {
        write!(w, "{} {} {}", m.seq, m.ulid, m.payload.get())
    })
}

/// Prints a pruned-history gap as a warning.
pub fn warn_gap(out: &Output, topic: &gatos_types::Topic, gap: Option<gatos_types::wire::Gap>) {
    if let Some(g) = gap {
        out.warn(&format!(
            "messages {}..{} of topic '{topic}' were pruned; resuming at seq {}",
            g.from_seq,
            g.to_seq,
            g.to_seq + 1
        ));
    }
}

/// `topics.list`, as every face answers it (the service's listing, ADR 0047's `damaged`).
fn topics(ctx: &Ctx, out: &mut Output) -> Result<(), Error> {
    let listing = ctx.service()?.topics_list().map_err(super::api)?;
    for t in listing.topics {
        out.row(&t, |w| {
            write!(
                w,
                "{} seq {}..{} ({}, {})",
                t.topic,
                t.first_seq,
                t.last_seq,
                crate::output::count(t.count, "message", "messages"),
                crate::output::count(t.segments, "segment", "segments")
            )
        })?;
    }
    fail_on_damage(out, &listing.damaged, ("topic", "topics"), |d| Damage {
        named: format!("topic '{}'", d.topic),
        short: d.topic.to_string(),
        code: d.code,
        message: &d.message,
    })
}

/// One part of a listing that does not read (ADR 0047), as [`fail_on_damage`] says it.
struct Damage<'a> {
    /// How stderr names it (`topic 'x'`).
    named: String,
    /// How the error lists it (`x`).
    short: String,
    code: gatos_types::ErrorCode,
    message: &'a str,
}

/// Names on stderr each part of a listing that does not read, then fails with the first
/// one's code and every one in `details.damaged`, once the rest is listed (as `ls` does
/// with what it cannot read). `(one, many)` name the part, one and more than one.
fn fail_on_damage<D: serde::Serialize>(
    out: &mut Output,
    damaged: &[D],
    (one, many): (&str, &str),
    damage: impl Fn(&D) -> Damage<'_>,
) -> Result<(), Error> {
    for d in damaged {
        let d = damage(d);
        out.warn(&format!("{} does not read: {}", d.named, d.message));
    }
    let Some(first) = damaged.first() else {
        return Ok(());
    };
    let said = match damaged.len() {
        1 => format!("a {one} does not read"),
        n => format!("{n} {many} do not read"),
    };
    let shorts: Vec<String> = damaged.iter().map(|d| damage(d).short).collect();
    Err(Error::new(
        damage(first).code,
        format!("{said} ({}); git gatos doctor says more", shorts.join(", ")),
    )
    .with_detail("damaged", serde_json::to_value(damaged).unwrap_or_default()))
}

/// A read of a topic this node has never seen: without `--follow` it is `NotFound` (with
/// the closest names); with it, the command says on stderr that it waits (DESIGN §4).
fn check_topic(
    ctx: &Ctx,
    out: &Output,
    topic: &gatos_types::Topic,
    follow: bool,
) -> Result<(), Error> {
    match ctx.service()?.require_topic(topic) {
        Ok(()) => Ok(()),
        Err(gatos_api::CallError::Failed(e))
            if follow && e.code() == gatos_types::ErrorCode::NotFound =>
        {
            out.hint(&format!(
                "nothing was published to '{topic}' on this node yet; waiting for its first message"
            ));
            Ok(())
        }
        Err(e) => Err(super::api(e)),
    }
}
