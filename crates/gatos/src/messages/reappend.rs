//! Appending stored messages again, on another sequence: what sync does with this node's
//! messages when the hub's topic moved on meanwhile (DESIGN §5, ADR 0015).
//!
//! The envelopes keep their bytes — so their ULIDs, payloads and content ids — and their
//! `Origin` and time; the commits are new, with the `Seq` and segment trailers of their new
//! place, rotating segments by the topic's settings exactly as publishing does. Nothing
//! moves a ref here: the caller moves them, in a recoverable order.

use gatos_store::refs::{RefName, names};
use gatos_types::{Digest, ErrorCode, Oid, Timestamp, Topic, Ulid};

use super::chain::{self, ENVELOPE_PATH, Meta};
use super::{Messages, segment_date};
use crate::error::{Error, Result};

/// A stored message to append again.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    /// The envelope bytes, unchanged.
    pub envelope: Vec<u8>,
    /// Its ULID.
    pub ulid: Ulid,
    /// The node that first wrote it.
    pub origin: Ulid,
    /// When it was first written.
    pub time: Timestamp,
    /// Its first writer's `Signed-By` and `Signature`, when signed.
    pub signature: Option<(String, String)>,
}

/// What [`Messages::build_on`] wrote.
#[derive(Debug, Clone)]
pub(crate) struct Built {
    /// The new tip.
    pub tip: Oid,
    /// Segments sealed by the append: `(sealed ref, last commit)`, to create.
    pub sealed: Vec<(RefName, Oid)>,
}

impl Messages<'_> {
    /// Writes commits appending `items` after `base` (the tip of the sequence to extend,
    /// `None` for an empty topic after `through` pruned messages); `base_sealed` tells
    /// whether the base's segment is already sealed (then the first item starts a new one).
    ///
    /// # Errors
    /// When objects cannot be written, or an envelope does not parse.
    pub(crate) fn build_on(
        &self,
        topic: &Topic,
        base: Option<&Meta>,
        base_sealed: bool,
        through: u64,
        items: &[Stored],
    ) -> Result<Built> {
        let (config, _) = self.gatos.topic_config(topic)?;
        let store = self.gatos.store();
        let mut w = store.writer();
        let mut prev: Option<Meta> = base.cloned();
        let mut sealed = Vec::new();
        let mut first = true;
        for (next_seq, item) in (base.map_or(through, |m| m.seq) + 1..).zip(items) {
            let len = item.envelope.len() as u64;
            let content_id = Digest::of(&item.envelope);
            let rotate = match &prev {
                None => false,
                Some(p) => {
                    (first && base_sealed)
                        || p.segment_seq >= config.max_messages
                        || p.segment_bytes.saturating_add(len) > config.max_bytes
                }
            };
            if rotate
                && !(first && base_sealed)
                && let Some(p) = &prev
            {
                sealed.push((
                    names::message_sealed(topic, &segment_date(p.segment_id), p.segment_id),
                    p.commit,
                ));
            }
            let (meta, _) = chain::write_append(
                &mut w,
                prev.as_ref(),
                rotate,
                &chain::Append {
                    topic,
                    seq: next_seq,
                    ulid: item.ulid,
                    content_id,
                    origin: item.origin,
                    time: item.time,
                    signing: match &item.signature {
                        Some((by, sig)) => chain::Signing::Carry(by, sig),
                        None => chain::Signing::None,
                    },
                },
                &item.envelope,
            )?;
            prev = Some(meta);
            first = false;
        }
        w.finish()?;
        let tip = prev
            .map(|m| m.commit)
            .ok_or_else(|| Error::new(ErrorCode::Internal, "nothing to append"))?;
        Ok(Built { tip, sealed })
    }

    /// Reads what [`Messages::build_on`] needs of a stored message commit.
    ///
    /// # Errors
    /// `InvalidEnvelope` when the commit is not a message commit.
    pub(crate) fn stored(&self, commit: Oid) -> Result<Stored> {
        let mut r = self.gatos.store().reader();
        let c = r.commit(commit)?;
        let m = chain::meta(&c)?;
        let origin = c
            .trailers()
            .get(gatos_types::trailers::keys::ORIGIN)
            .and_then(|o| o.parse().ok())
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::InvalidEnvelope,
                    format!("message {commit} has no Origin"),
                )
            })?;
        let envelope = r.file(c.tree, ENVELOPE_PATH)?.ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidEnvelope,
                format!("message {commit} has no envelope"),
            )
        })?;
        let t = c.trailers();
        let signature = match (
            t.get(crate::signing::SIGNED_BY),
            t.get(crate::signing::SIGNATURE),
        ) {
            (Some(by), Some(sig)) => Some((by.to_owned(), sig.to_owned())),
            _ => None,
        };
        Ok(Stored {
            envelope,
            ulid: m.ulid,
            origin,
            signature,
            time: Timestamp::from_millis(c.time.saturating_mul(1000)),
        })
    }
}
