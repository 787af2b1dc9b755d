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

fn topics(ctx: &Ctx, out: &mut Output) -> Result<(), Error> {
    let g = ctx.gatos()?;
    let listing = g.messages().listing()?;
    for t in listing.rows {
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
    // A topic whose refs do not read is named, and fails the command once the others
    // are listed (as `ls` does with what it cannot read).
    for d in &listing.damaged {
        out.warn(&format!("topic '{}' does not read: {}", d.topic, d.message));
    }
    let damaged = serde_json::to_value(&listing.damaged).unwrap_or_default();
    match listing.damaged.first() {
        None => Ok(()),
        Some(first) => Err(gatos::Error::new(
            first.code,
            format!(
                "{} ({}); git gatos doctor says more",
                match listing.damaged.len() {
                    1 => "a topic does not read".to_owned(),
                    n => format!("{n} topics do not read"),
                },
                listing
                    .damaged
                    .iter()
                    .map(|d| d.topic.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .with_detail("damaged", damaged)),
    }
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
