//! Consumer checkpoints: `refs/gatos/consumers/<group>/<topic>`, a chain of commits that
//! only moves forward unless forced (DESIGN §2, §4).

use gatos_store::objects::{NewCommit, Objects, Reader};
use gatos_store::refs::{Edit, Options, names};
use gatos_types::trailers::{Trailers, keys};
use gatos_types::wire::{CheckpointDoc, CheckpointRow, Gap};
use gatos_types::{ErrorCode, Group, Oid, Topic, Ulid, jcs};

use crate::Gatos;
use crate::error::{Error, Result};
use crate::messages::{Cursor, MessageView};

/// The file of a checkpoint commit.
pub const CHECKPOINT_PATH: &str = "checkpoint.json";

/// The checkpoint plane.
#[derive(Debug, Clone, Copy)]
pub struct Checkpoints<'g> {
    gatos: &'g Gatos,
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

/// Reads a checkpoint commit's document.
///
/// # Errors
/// `InvalidEnvelope` when it does not parse.
pub(crate) fn read_doc(reader: &mut Reader<'_>, commit: Oid) -> Result<CheckpointDoc> {
    let c = reader.commit(commit)?;
    let bytes = reader.file(c.tree, CHECKPOINT_PATH)?.ok_or_else(|| {
        Error::new(
            ErrorCode::InvalidEnvelope,
            format!("checkpoint commit {commit} has no {CHECKPOINT_PATH}"),
        )
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::new(
            ErrorCode::InvalidEnvelope,
            format!("checkpoint commit {commit}: {e}"),
        )
    })
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
        let messages = self.gatos.messages();
        let last = messages.last_seq(&doc.topic)?;
        let pruned = messages.summary(&doc.topic)?.through;
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
            return Err(Error::new(
                ErrorCode::NotFound,
                format!("message {ulid} is not retained in topic '{topic}'"),
            ));
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
        let store = self.gatos.store();
        let (group, topic) = (doc.group.clone(), doc.topic.clone());
        let _guard = store
            .locks()
            .acquire(&[family(&group)], gatos_store::locks::DEFAULT_LOCK_TIMEOUT)
            .map_err(gatos_store::Error::from)?;
        let (at, old) = self.current(&group, &topic)?;
        if old.seq == doc.seq && old.ulid == doc.ulid {
            return Ok(old);
        }
        let backwards = doc.seq < old.seq;
        if backwards && !force {
            return Err(Error::new(
                ErrorCode::NotFastForward,
                format!(
                    "checkpoint of group '{group}' on topic '{topic}' is at seq {}; moving it back to seq {} needs --force",
                    old.seq, doc.seq
                ),
            ));
        }
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
                .with(keys::ACTOR, &store.identity().name);
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
                return Err(Error::new(
                    ErrorCode::Conflict,
                    format!(
                        "checkpoint of group '{group}' on topic '{topic}' changed meanwhile; try again"
                    ),
                ));
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
        Ok(doc)
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
        let cursor = match doc.ulid {
            Some(u) => Cursor::Ulid(u),
            None => Cursor::Seq(doc.seq),
        };
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
            (Some((seq, ulid)), Some(commit)) => self
                .advance(
                    CheckpointDoc {
                        group: group.clone(),
                        topic: topic.clone(),
                        ulid: Some(ulid),
                        seq,
                        commit: Some(commit),
                    },
                    false,
                )
                .or_else(|e| match e.code() {
                    // Another consumer of the group got further first: keep theirs.
                    ErrorCode::NotFastForward | ErrorCode::Conflict => {
                        self.current(group, topic).map(|(_, d)| d)
                    }
                    _ => Err(e),
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
