//! Consumer checkpoints: `refs/gatos/consumers/<group>/<topic>`, a chain of commits that
//! only moves forward unless forced (DESIGN §2, §4).

use std::time::Duration;

use gatos_store::objects::{NewCommit, Objects};
use gatos_store::refs::{Edit, Options, names};
use gatos_types::trailers::{Trailers, keys};
use gatos_types::wire::{CheckpointDoc, CheckpointRow, DamagedCheckpoint, Gap};
use gatos_types::{ErrorCode, Group, Oid, Topic, Ulid, jcs};
use serde::{Deserialize, Serialize};

use crate::Gatos;
use crate::error::{Error, Result};
use crate::messages::{Cursor, Follower, MAX_PAGE, MessageView, wait_ref};

/// Why a checkpoint did not move (`set`, `ack`).
#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    /// The message is not (or no longer) retained in the topic.
    #[error("message {ulid} is not retained in topic '{topic}'")]
    NotRetained {
        /// The message.
        ulid: Ulid,
        /// The topic.
        topic: Topic,
    },
    /// An ack of a pruned message the checkpoint had not passed.
    #[error("message {ulid} of topic '{topic}' was pruned")]
    Pruned {
        /// The message.
        ulid: Ulid,
        /// The topic.
        topic: Topic,
    },
    /// An ack of a message that is not the topic's.
    #[error("message {ulid} is not in topic '{topic}'")]
    NotInTopic {
        /// The message.
        ulid: Ulid,
        /// The topic.
        topic: Topic,
    },
    /// A writer that does not take the group's lock changed the checkpoint meanwhile.
    #[error("checkpoint of group '{group}' on topic '{topic}' changed meanwhile; try again")]
    Raced {
        /// The group.
        group: Group,
        /// The topic.
        topic: Topic,
    },
    /// A move back, which only a forced move makes (and audits).
    #[error(
        "checkpoint of group '{group}' on topic '{topic}' is at seq {at}; moving it back to seq {to} needs a forced move"
    )]
    Backwards {
        /// The group.
        group: Group,
        /// The topic.
        topic: Topic,
        /// Where the checkpoint is.
        at: u64,
        /// Where it was asked to go.
        to: u64,
    },
}

impl gatos_types::Coded for MoveError {
    fn code(&self) -> ErrorCode {
        match self {
            MoveError::NotRetained { .. }
            | MoveError::Pruned { .. }
            | MoveError::NotInTopic { .. } => ErrorCode::NotFound,
            MoveError::Raced { .. } => ErrorCode::Conflict,
            MoveError::Backwards { .. } => ErrorCode::NotFastForward,
        }
    }
}

pub use crate::messages::consumers::CHECKPOINT_PATH;
pub(crate) use crate::messages::consumers::read_doc;

/// The checkpoint plane.
#[derive(Debug, Clone, Copy)]
pub struct Checkpoints<'g> {
    gatos: &'g Gatos,
}

/// The checkpoints of a listing ([`Checkpoints::listing`]).
#[derive(Debug, Clone, Default)]
pub struct CheckpointListing {
    /// The checkpoints that read, by group, then topic, each with its lag.
    pub rows: Vec<CheckpointRow>,
    /// The checkpoints that do not read, by group, then topic.
    pub damaged: Vec<DamagedCheckpoint>,
}

/// What a consume did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    /// Messages passed to the callback.
    pub count: u64,
    /// The checkpoint afterwards.
    pub checkpoint: CheckpointRow,
    /// Pruned positions skipped because the checkpoint was behind a prune.
    pub gap: Option<Gap>,
}

fn family(group: &Group) -> String {
    format!("consumers.{group}")
}

impl<'g> Checkpoints<'g> {
    pub(crate) fn new(gatos: &'g Gatos) -> Checkpoints<'g> {
        Checkpoints { gatos }
    }

    fn current(&self, group: &Group, topic: &Topic) -> Result<(Option<Oid>, CheckpointDoc)> {
        let at = self
            .gatos
            .store()
            .read_ref(&names::consumer(group, topic))?;
        let doc = match at {
            Some(c) => read_doc(&mut self.gatos.store().reader(), c)?,
            None => CheckpointDoc {
                group: group.clone(),
                topic: topic.clone(),
                ulid: None,
                seq: 0,
                commit: None,
            },
        };
        Ok((at, doc))
    }

    fn row(&self, doc: CheckpointDoc) -> Result<CheckpointRow> {
        self.row_in(&crate::refs::Live(self.gatos), doc)
    }

    fn row_in(
        &self,
        src: &dyn crate::refs::RefSource,
        doc: CheckpointDoc,
    ) -> Result<CheckpointRow> {
        let messages = self.gatos.messages();
        let last = messages.last_seq_in(src, &doc.topic)?;
        let pruned = messages.summary_in(src, &doc.topic)?.through;
        let lag = last.saturating_sub(doc.seq.max(pruned));
        Ok(CheckpointRow {
            group: doc.group,
            topic: doc.topic,
            ulid: doc.ulid,
            seq: doc.seq,
            commit: doc.commit,
            lag,
        })
    }

    /// Returns a group's checkpoint on a topic (seq 0 when it has consumed nothing) and
    /// its lag.
    ///
    /// # Errors
    /// When the checkpoint or topic cannot be read.
    pub fn get(&self, group: &Group, topic: &Topic) -> Result<CheckpointRow> {
        let (_, doc) = self.current(group, topic)?;
        self.row(doc)
    }

    /// Lists the consumer groups' checkpoints — every one, or those on `topic`, or those of
    /// `group` — ordered by group, then topic, each with its lag (as [`Checkpoints::get`]).
    /// One listing of the consumer refs and one read per checkpoint: a group that has
    /// never moved its checkpoint on a topic has no ref, so it is not listed. A checkpoint
    /// that does not read (its document is not one, or its topic's head is no message) is
    /// left out with a warning (`git gatos doctor` names it; [`Checkpoints::listing`]
    /// names it to the caller), so it never fails the listing of the others.
    ///
    /// # Errors
    /// When the refs cannot be listed or the store does not read (a checkpoint or topic
    /// that does not read is left out, as said).
    pub fn list(&self, topic: Option<&Topic>, group: Option<&Group>) -> Result<Vec<CheckpointRow>> {
        self.list_in(&crate::refs::Live(self.gatos), topic, group)
    }

    /// [`Checkpoints::list`] from the refs of `src` (the lag against the topic there).
    ///
    /// # Errors
    /// As [`Checkpoints::list`].
    pub fn list_in(
        &self,
        src: &dyn crate::refs::RefSource,
        topic: Option<&Topic>,
        group: Option<&Group>,
    ) -> Result<Vec<CheckpointRow>> {
        let listing = self.listing_in(src, topic, group)?;
        for d in &listing.damaged {
            tracing::warn!(group = %d.group, topic = %d.topic, error = %d.message, "a checkpoint that does not read is left out; see `git gatos doctor`");
        }
        Ok(listing.rows)
    }

    /// [`Checkpoints::list`], and the checkpoints that do not read (ADR 0047): a document
    /// that is not a checkpoint, or a topic whose head is no message (or whose summary does
    /// not parse), so that its lag cannot be told. Any other failure (the store not
    /// reading) fails the listing.
    ///
    /// # Errors
    /// When the refs cannot be listed, or an object cannot be read for another reason than
    /// a checkpoint's or its topic's damage.
    pub fn listing(
        &self,
        topic: Option<&Topic>,
        group: Option<&Group>,
    ) -> Result<CheckpointListing> {
        self.listing_in(&crate::refs::Live(self.gatos), topic, group)
    }

    /// [`Checkpoints::listing`] from the refs of `src`.
    ///
    /// # Errors
    /// As [`Checkpoints::listing`].
    pub fn listing_in(
        &self,
        src: &dyn crate::refs::RefSource,
        topic: Option<&Topic>,
        group: Option<&Group>,
    ) -> Result<CheckpointListing> {
        let store = self.gatos.store();
        let mut reader = store.reader();
        let mut listing = CheckpointListing::default();
        for (name, commit) in src.list_after(&names::consumers_prefix(), None, usize::MAX)? {
            let Some(names::RefKind::Consumer(g, t)) = names::RefKind::parse(&name) else {
                continue;
            };
            if topic.is_some_and(|x| *x != t) || group.is_some_and(|x| *x != g) {
                continue;
            }
            match read_doc(&mut reader, commit).and_then(|doc| self.row_in(src, doc)) {
                Ok(row) => listing.rows.push(row),
                Err(e) if crate::messages::is_damage(&e) => {
                    listing.damaged.push(DamagedCheckpoint {
                        group: g,
                        topic: t,
                        code: e.code(),
                        message: e.to_string(),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        // By group, then topic (the refs' order differs where a name is another's prefix
        // followed by a character that sorts before `/`).
        listing
            .rows
            .sort_by(|a, b| (&a.group, &a.topic).cmp(&(&b.group, &b.topic)));
        listing
            .damaged
            .sort_by(|a, b| (&a.group, &a.topic).cmp(&(&b.group, &b.topic)));
        Ok(listing)
    }

    /// Moves a group's checkpoint to the message with `ulid`.
    ///
    /// Forward only: moving back needs `force` (and is audited). Setting it where it is
    /// changes nothing.
    ///
    /// # Errors
    /// `NotFound` for a ULID not retained in the topic, `NotFastForward` for a backward
    /// move without `force`, `Conflict` for a concurrent forced change.
    pub fn set(
        &self,
        group: &Group,
        topic: &Topic,
        ulid: Ulid,
        force: bool,
    ) -> Result<CheckpointRow> {
        let Some((seq, commit)) = self.gatos.messages().position(topic, ulid)? else {
            return Err(MoveError::NotRetained {
                ulid,
                topic: topic.clone(),
            }
            .into());
        };
        let doc = CheckpointDoc {
            group: group.clone(),
            topic: topic.clone(),
            ulid: Some(ulid),
            seq,
            commit: Some(commit),
        };
        let doc = self.advance(doc, force)?;
        self.row(doc)
    }

    /// Writes `doc` as the group's new checkpoint if it is ahead (or `force`), returning
    /// the checkpoint as it ends up.
    pub(crate) fn advance(&self, doc: CheckpointDoc, force: bool) -> Result<CheckpointDoc> {
        self.advance_with(doc, force, "checkpoint.force")
    }

    /// As [`Checkpoints::advance`], naming the audited action of a backward move.
    pub(crate) fn advance_with(
        &self,
        doc: CheckpointDoc,
        force: bool,
        action: &str,
    ) -> Result<CheckpointDoc> {
        let back = if force {
            Backwards::Force(action)
        } else {
            Backwards::Refuse
        };
        match self.move_to(doc, back)? {
            Moved::Yes(doc) | Moved::No(doc) => Ok(doc),
        }
    }

    /// Writes `doc` as the group's new checkpoint, under the group's lock and by CAS, if it
    /// is ahead of the checkpoint; a target behind it is treated as `back` says.
    fn move_to(&self, doc: CheckpointDoc, back: Backwards<'_>) -> Result<Moved> {
        let store = self.gatos.store();
        let (group, topic) = (doc.group.clone(), doc.topic.clone());
        let _guard = store
            .locks()
            .acquire(&[family(&group)], gatos_store::locks::DEFAULT_LOCK_TIMEOUT)
            .map_err(gatos_store::Error::from)?;
        let (at, old) = self.current(&group, &topic)?;
        if old.seq == doc.seq && old.ulid == doc.ulid {
            return Ok(Moved::No(old));
        }
        let backwards = doc.seq < old.seq;
        let action = match back {
            Backwards::Stay if doc.seq <= old.seq => return Ok(Moved::No(old)),
            Backwards::Refuse if backwards => {
                return Err(MoveError::Backwards {
                    group: group.clone(),
                    topic: topic.clone(),
                    at: old.seq,
                    to: doc.seq,
                }
                .into());
            }
            Backwards::Force(action) => action,
            // Forward: nothing is audited.
            Backwards::Stay | Backwards::Refuse => "checkpoint.force",
        };
        let bytes = jcs::to_vec_of(&doc)?;
        let mut w = store.writer();
        let blob = w.blob(&bytes)?;
        let tree = w.files(&[(CHECKPOINT_PATH, blob)])?;
        let mut trailers = Trailers::new()
            .with(keys::KIND, "checkpoint")
            .with(keys::GROUP, &group)
            .with(keys::TOPIC, &topic)
            .with(keys::SEQ, doc.seq);
        if let Some(u) = doc.ulid {
            trailers = trailers.with(keys::MESSAGE_ID, u);
        }
        if backwards {
            trailers = trailers
                .with(keys::FORCED, "true")
                .with(keys::ACTOR, self.gatos.actor());
        }
        let trailers = self.gatos.signed_if_control(tree, trailers)?;
        let parents: Vec<Oid> = at.into_iter().collect();
        let commit = w.commit(&NewCommit {
            tree,
            parents: &parents,
            message: &trailers.to_message(&format!("checkpoint {group} {topic} {}", doc.seq)),
            time: self.gatos.now(),
        })?;
        w.finish()?;
        let edit = Edit::update(names::consumer(&group, &topic), at, commit);
        match store.update_refs_locked(&[edit], &Options::default(), false) {
            Ok(_) => {}
            Err(gatos_store::Error::CasMismatch { .. }) => {
                return Err(MoveError::Raced {
                    group: group.clone(),
                    topic: topic.clone(),
                }
                .into());
            }
            Err(e) => return Err(e.into()),
        }
        if backwards {
            crate::audit::record(
                self.gatos,
                action,
                &format!("consumer:{group}/{topic}"),
                serde_json::to_value(&old).unwrap_or_default(),
                serde_json::to_value(&doc).unwrap_or_default(),
                Some(commit),
            );
        }
        Ok(Moved::Yes(doc))
    }

    /// Advances the checkpoint after a delivered page. A consumer of the group that got
    /// further first keeps its checkpoint (the checkpoint never moves back).
    fn advance_consumed(&self, doc: CheckpointDoc) -> Result<CheckpointDoc> {
        let (group, topic) = (doc.group.clone(), doc.topic.clone());
        self.advance(doc, false).or_else(|e| match e.code() {
            ErrorCode::NotFastForward | ErrorCode::Conflict => {
                self.current(&group, &topic).map(|(_, d)| d)
            }
            _ => Err(e),
        })
    }

    /// Acknowledges a message: moves the group's checkpoint forward to it, after the
    /// consumer has processed everything up to it (as a Kafka consumer commits an offset
    /// after processing; `consume --ack manual` delivers without moving the checkpoint).
    ///
    /// Forward only: an ack of a message at or before the checkpoint changes nothing and
    /// says so (`moved: false`), so acks may come late, twice or out of order. The move is
    /// one CAS under the group's lock: of two racing acks the greater one wins, whatever
    /// their order.
    ///
    /// # Errors
    /// `NotFound` when `ulid` is not a message of the topic (nothing changes; an ack of a
    /// pruned message the checkpoint has passed is a no-op), `Conflict` when the
    /// checkpoint was changed meanwhile by a writer that does not take the group's lock.
    pub fn ack(&self, group: &Group, topic: &Topic, ulid: Ulid) -> Result<AckOutcome> {
        let messages = self.gatos.messages();
        let Some((seq, commit)) = messages.position(topic, ulid)? else {
            // A message pruned after the checkpoint passed it was acknowledged already.
            if let Some(seq) = messages.pruned_position(topic, ulid)? {
                let (_, doc) = self.current(group, topic)?;
                if doc.seq >= seq {
                    return Ok(AckOutcome {
                        ulid,
                        seq,
                        moved: false,
                        checkpoint: self.row(doc)?,
                    });
                }
                return Err(MoveError::Pruned {
                    ulid,
                    topic: topic.clone(),
                }
                .into());
            }
            return Err(MoveError::NotInTopic {
                ulid,
                topic: topic.clone(),
            }
            .into());
        };
        let doc = CheckpointDoc {
            group: group.clone(),
            topic: topic.clone(),
            ulid: Some(ulid),
            seq,
            commit: Some(commit),
        };
        let (moved, doc) = match self.move_to(doc, Backwards::Stay)? {
            Moved::Yes(doc) => (true, doc),
            Moved::No(doc) => (false, doc),
        };
        tracing::debug!(%group, %topic, %ulid, seq, moved, "ack");
        Ok(AckOutcome {
            ulid,
            seq,
            moved,
            checkpoint: self.row(doc)?,
        })
    }

    /// Starts a following consumer of `topic` for `group`, at the group's checkpoint:
    /// [`Consumer::next_page`] delivers what follows, [`Consumer::wait`] blocks until
    /// there may be more. A topic with no messages yet is waited on like any other.
    ///
    /// # Errors
    /// `InvalidInput` for a `max_unacked` of 0; when the checkpoint or the topic cannot
    /// be read.
    pub fn follow(&self, group: &Group, topic: &Topic, opts: FollowOptions) -> Result<Consumer> {
        if opts.max_unacked == 0 {
            return Err(Error::new(
                ErrorCode::InvalidInput,
                "max_unacked must be at least 1",
            ));
        }
        let (at, doc) = self.current(group, topic)?;
        let messages = self.gatos.messages();
        let follower = match messages.follow(topic, cursor_of(&doc)) {
            Err(e) if e.code() == ErrorCode::NotFound && doc.ulid.is_some() => {
                tracing::warn!(%group, %topic, seq = doc.seq, "checkpoint message not found; resuming by position");
                messages.follow(topic, Cursor::Seq(doc.seq))?
            }
            other => other?,
        };
        Ok(Consumer {
            gatos: self.gatos.clone(),
            group: group.clone(),
            topic: topic.clone(),
            opts,
            follower,
            checkpoint_at: at,
            blocked: false,
        })
    }

    /// Consumes a page: passes up to `limit` messages after the checkpoint to `f`, then
    /// advances the checkpoint to the last one (at-least-once: a crash between the two
    /// delivers the page again; two consumers of one group may both get it; the checkpoint
    /// never moves back).
    ///
    /// # Errors
    /// As [`crate::messages::Messages::scan`] and [`Checkpoints::set`].
    pub fn consume(
        &self,
        group: &Group,
        topic: &Topic,
        limit: u64,
        mut f: impl FnMut(&MessageView<'_>) -> Result<bool>,
    ) -> Result<Consumed> {
        self.consume_delivered(group, topic, limit, |step| match step {
            Delivery::Message(m) => f(m),
            Delivery::End => Ok(true),
        })
    }

    /// As [`Checkpoints::consume`], and once the page has gone to `f` it gets
    /// [`Delivery::End`]: the place to flush what was written. The checkpoint moves only
    /// after that succeeds, so a page that did not reach its reader (a full disk, a closed
    /// pipe) is delivered again (DESIGN §4: print, flush, then advance).
    ///
    /// # Errors
    /// As [`Checkpoints::consume`], and whatever `f` returns for the end.
    pub fn consume_delivered(
        &self,
        group: &Group,
        topic: &Topic,
        limit: u64,
        mut f: impl FnMut(Delivery<'_, '_>) -> Result<bool>,
    ) -> Result<Consumed> {
        let (_, doc) = self.current(group, topic)?;
        let messages = self.gatos.messages();
        let cursor = cursor_of(&doc);
        let mut last_commit = None;
        let scan = |cursor: Cursor,
                    last_commit: &mut Option<Oid>,
                    f: &mut dyn FnMut(Delivery<'_, '_>) -> Result<bool>| {
            messages.scan(topic, &cursor, Some(limit), |m| {
                *last_commit = Some(m.commit);
                f(Delivery::Message(m))
            })
        };
        let end = match scan(cursor, &mut last_commit, &mut f) {
            Err(e) if e.code() == ErrorCode::NotFound && doc.ulid.is_some() => {
                tracing::warn!(%group, %topic, seq = doc.seq, "checkpoint message not found; resuming by position");
                scan(Cursor::Seq(doc.seq), &mut last_commit, &mut f)?
            }
            other => other?,
        };
        // Delivered (flushed) before the checkpoint moves.
        f(Delivery::End)?;
        let doc = match (end.last, last_commit) {
            (Some((seq, ulid)), Some(commit)) => self.advance_consumed(CheckpointDoc {
                group: group.clone(),
                topic: topic.clone(),
                ulid: Some(ulid),
                seq,
                commit: Some(commit),
            })?,
            _ => doc,
        };
        Ok(Consumed {
            count: end.count,
            checkpoint: self.row(doc)?,
            gap: end.gap,
        })
    }
}

/// What [`Checkpoints::consume_delivered`] hands its consumer.
#[derive(Debug)]
pub enum Delivery<'a, 'b> {
    /// The next message of the page.
    Message(&'a MessageView<'b>),
    /// The page is complete: deliver it (flush) now; the checkpoint moves after.
    End,
}

fn cursor_of(doc: &CheckpointDoc) -> Cursor {
    match doc.ulid {
        Some(u) => Cursor::Ulid(u),
        None => Cursor::Seq(doc.seq),
    }
}

/// How [`Checkpoints::move_to`] treats a target behind the checkpoint.
enum Backwards<'a> {
    /// Refuse it with `NotFastForward`.
    Refuse,
    /// Leave the checkpoint where it is (an ack of a message already passed).
    Stay,
    /// Move back, audited as this action.
    Force(&'a str),
}

/// Where [`Checkpoints::move_to`] left the checkpoint.
enum Moved {
    /// It moved to this.
    Yes(CheckpointDoc),
    /// It stayed here.
    No(CheckpointDoc),
}

/// What [`Checkpoints::ack`] did (`messages ack --json` prints it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AckOutcome {
    /// The acknowledged message.
    pub ulid: Ulid,
    /// Its position in the topic.
    pub seq: u64,
    /// True when the checkpoint moved to it; false when the checkpoint already stood at
    /// it or after it (nothing changed).
    pub moved: bool,
    /// The checkpoint afterwards.
    pub checkpoint: CheckpointRow,
}

/// Who moves a following consumer's checkpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckMode {
    /// The consumer: after each page is delivered (flushed), the checkpoint advances to
    /// its last message.
    #[default]
    Auto,
    /// Only [`Checkpoints::ack`]: the consumer delivers and never moves the checkpoint.
    Manual,
}

/// The default of [`FollowOptions::max_unacked`]: how many messages a manual-ack
/// consumer delivers past the checkpoint before it waits for an ack.
pub const DEFAULT_MAX_UNACKED: u64 = 1_000;

/// Options of [`Checkpoints::follow`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowOptions {
    /// Who moves the checkpoint.
    pub ack: AckMode,
    /// With [`AckMode::Manual`]: at most this many messages are delivered past the
    /// checkpoint; then the consumer waits until acks move the checkpoint (at least 1).
    pub max_unacked: u64,
}

impl Default for FollowOptions {
    fn default() -> FollowOptions {
        FollowOptions {
            ack: AckMode::Auto,
            max_unacked: DEFAULT_MAX_UNACKED,
        }
    }
}

/// What one [`Consumer::next_page`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumePage {
    /// Messages delivered.
    pub count: u64,
    /// The checkpoint afterwards (with [`AckMode::Auto`], advanced past the page).
    pub checkpoint: CheckpointRow,
    /// Messages delivered past the checkpoint and not acknowledged yet (0 with
    /// [`AckMode::Auto`]).
    pub unacked: u64,
    /// True when nothing was delivered because `max_unacked` messages await an ack.
    pub blocked: bool,
    /// Pruned positions skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap: Option<Gap>,
}

/// A consumer that follows a topic for a group (from [`Checkpoints::follow`]).
///
/// Each [`Consumer::next_page`] is deliver, then [`Delivery::End`] (flush), then — with
/// [`AckMode::Auto`] — advance the checkpoint: at-least-once, as
/// [`Checkpoints::consume_delivered`]. With [`AckMode::Auto`] every page starts at the
/// checkpoint as it is then (another consumer of the group, or a forced move, counts);
/// with [`AckMode::Manual`] the consumer goes on from what it delivered (in memory), and
/// the checkpoint bounds how far ahead it may get.
///
/// It owns its handle, so it can live on another thread (the daemon's blocking pool).
#[derive(Debug)]
pub struct Consumer {
    gatos: Gatos,
    group: Group,
    topic: Topic,
    opts: FollowOptions,
    follower: Follower,
    /// The checkpoint ref as the last page read it (what a blocked consumer waits on).
    checkpoint_at: Option<Oid>,
    /// True when the last page was held back by `max_unacked`.
    blocked: bool,
}

impl Consumer {
    /// Delivers the next page: up to `limit` messages to `f` (fewer if `f` returns false,
    /// or, with [`AckMode::Manual`], if `max_unacked` would be passed), then
    /// [`Delivery::End`], then with [`AckMode::Auto`] advances the checkpoint to the last
    /// message delivered. A page with nothing new delivers no message (and still ends).
    ///
    /// # Errors
    /// `InvalidInput` for a limit of 0 or over 10,000; as [`Checkpoints::consume_delivered`]
    /// (whatever `f` returns leaves the checkpoint where it was).
    pub fn next_page(
        &mut self,
        limit: u64,
        mut f: impl FnMut(Delivery<'_, '_>) -> Result<bool>,
    ) -> Result<ConsumePage> {
        if limit == 0 || limit > MAX_PAGE {
            return Err(Error::new(
                ErrorCode::InvalidInput,
                format!("limit must be between 1 and {MAX_PAGE}"),
            ));
        }
        let checkpoints = self.gatos.checkpoints();
        let (at, doc) = checkpoints.current(&self.group, &self.topic)?;
        self.checkpoint_at = at;
        let max = match self.opts.ack {
            AckMode::Auto => {
                // The checkpoint is the truth: resume from it.
                self.follower.seek(doc.seq, doc.ulid);
                limit
            }
            AckMode::Manual => {
                let unacked = self.unacked(&doc);
                let room = self.opts.max_unacked.saturating_sub(unacked);
                self.blocked = room == 0;
                if self.blocked {
                    return Ok(ConsumePage {
                        count: 0,
                        checkpoint: checkpoints.row(doc)?,
                        unacked,
                        blocked: true,
                        gap: None,
                    });
                }
                limit.min(room)
            }
        };
        let mut last_commit = None;
        let mut deliver = |m: &MessageView<'_>| {
            last_commit = Some(m.commit);
            f(Delivery::Message(m))
        };
        let before = self.follower.position();
        let (mut count, mut gap) = self.follower.poll(max, &mut deliver)?;
        if count == 0 && self.follower.position() != before {
            // The message it stood after was rewritten away (a sync): it now stands at a
            // position instead; read from there at once rather than wait for a new head.
            (count, gap) = self.follower.poll(max, &mut deliver)?;
        }
        // Delivered (flushed) before the checkpoint moves.
        f(Delivery::End)?;
        let doc = match (self.opts.ack, self.follower.position(), last_commit) {
            (AckMode::Auto, (seq, Some(ulid)), Some(commit)) if count > 0 => checkpoints
                .advance_consumed(CheckpointDoc {
                    group: self.group.clone(),
                    topic: self.topic.clone(),
                    ulid: Some(ulid),
                    seq,
                    commit: Some(commit),
                })?,
            _ => doc,
        };
        let unacked = match self.opts.ack {
            AckMode::Auto => 0,
            AckMode::Manual => self.unacked(&doc),
        };
        Ok(ConsumePage {
            count,
            checkpoint: checkpoints.row(doc)?,
            unacked,
            blocked: false,
            gap,
        })
    }

    /// Blocks until there may be more to deliver, or `timeout` passes; returns true when
    /// something moved. That is the topic head, or — when the last page was held back by
    /// `max_unacked` — the group's checkpoint (an ack). No message is read while waiting:
    /// the ref is looked at every 50 ms, as a [`Follower`] does.
    ///
    /// # Errors
    /// When the ref cannot be read.
    pub fn wait(&mut self, timeout: Duration) -> Result<bool> {
        if self.blocked {
            wait_ref(
                &self.gatos,
                &names::consumer(&self.group, &self.topic),
                self.checkpoint_at,
                timeout,
            )
        } else {
            self.follower.wait(timeout)
        }
    }

    /// Returns the position the consumer stands after: the last message it delivered,
    /// or where it started.
    pub fn position(&self) -> (u64, Option<Ulid>) {
        self.follower.position()
    }

    /// Returns its options.
    pub fn options(&self) -> FollowOptions {
        self.opts
    }

    fn unacked(&self, checkpoint: &CheckpointDoc) -> u64 {
        self.follower.position().0.saturating_sub(checkpoint.seq)
    }
}

impl Checkpoints<'_> {
    /// The refs that fix `get(group, topic)`: the consumer's ref and the topic's
    /// ([`crate::messages::Messages::state`]: its lag), for a face's state tag (ADR 0042).
    ///
    /// # Errors
    /// A store failure.
    pub fn state(&self, group: &Group, topic: &Topic) -> Result<crate::messages::RefState> {
        let mut out = self.gatos.messages().state(topic)?;
        let name = names::consumer(group, topic);
        if let Some(o) = self.gatos.store().read_ref(&name)? {
            out.push((name.as_str().to_owned(), o));
        }
        out.sort();
        Ok(out)
    }

    /// The refs that fix `list(..)`: every consumer's ref and every topic's.
    ///
    /// # Errors
    /// A store failure.
    pub fn state_all(&self) -> Result<crate::messages::RefState> {
        let mut out = self.gatos.messages().state_all()?;
        for (n, o) in self.gatos.store().list_refs(&names::consumers_prefix())? {
            out.push((n.as_str().to_owned(), o));
        }
        out.sort();
        Ok(out)
    }
}
