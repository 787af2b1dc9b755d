//! Message commits: their trailers, written and read back (DESIGN §3).

use gatos_store::objects::Commit;
use gatos_types::trailers::{Trailers, keys};
use gatos_types::{Digest, ErrorCode, Oid, Topic, Ulid};

use crate::error::{Error, Result};

/// Where a message commit keeps its envelope.
pub const ENVELOPE_PATH: &str = "message/envelope.json";

/// The `Gatos-Kind` of message commits.
pub const KIND: &str = "message";

/// What a message commit says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// The commit.
    pub commit: Oid,
    /// The message ULID.
    pub ulid: Ulid,
    /// `blake3:` of the envelope.
    pub content_id: Digest,
    /// Position in the topic.
    pub seq: u64,
    /// Position in the segment, from 1.
    pub segment_seq: u64,
    /// Envelope bytes in the segment up to and including this message.
    pub segment_bytes: u64,
    /// The ULID of the segment's first message.
    pub segment_id: Ulid,
    /// The previous message of the segment.
    pub parent: Option<Oid>,
    /// On a segment root: the last message of the previous segment.
    pub prev_segment: Option<Oid>,
}

impl Meta {
    /// Returns the previous message of the topic, in this segment or the one before.
    pub fn prev(&self) -> Option<Oid> {
        self.parent.or(self.prev_segment)
    }
}

fn bad(commit: Oid, why: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorCode::InvalidEnvelope,
        format!("message commit {commit}: {why}"),
    )
}

fn field<'a>(t: &'a Trailers, commit: Oid, key: &str) -> Result<&'a str> {
    t.get(key)
        .ok_or_else(|| bad(commit, format_args!("missing trailer {key}")))
}

fn number(t: &Trailers, commit: Oid, key: &str) -> Result<u64> {
    field(t, commit, key)?
        .parse()
        .map_err(|_| bad(commit, format_args!("trailer {key} is not a number")))
}

/// Reads the metadata of a message commit.
///
/// # Errors
/// `InvalidEnvelope` when the commit is not a well-formed message commit.
pub fn meta(c: &Commit) -> Result<Meta> {
    meta_with(c, &c.trailers())
}

/// [`meta`] of a commit that must be a message of `topic` (its `Topic` trailer), as sync
/// checks a hub's messages: what a topic's head and chain are checked with where a message
/// of another topic would otherwise pass (sync's look at this node's topics, doctor).
///
/// # Errors
/// `InvalidEnvelope` when it is no message, or another topic's.
pub fn meta_in(c: &Commit, topic: &Topic) -> Result<Meta> {
    let t = c.trailers();
    let m = meta_with(c, &t)?;
    match t.get(keys::TOPIC) {
        Some(v) if v == topic.as_str() => Ok(m),
        Some(v) => Err(bad(
            c.id,
            format_args!("is a message of topic '{v}', not of '{topic}'"),
        )),
        None => Err(bad(c.id, format_args!("has no {} trailer", keys::TOPIC))),
    }
}

/// As [`meta`], with the commit's trailers already parsed.
///
/// # Errors
/// `InvalidEnvelope` when the commit is not a well-formed message commit.
pub fn meta_with(c: &Commit, t: &Trailers) -> Result<Meta> {
    if t.get(keys::KIND) != Some(KIND) {
        return Err(bad(c.id, "not a message commit"));
    }
    if c.parents.len() > 1 {
        return Err(bad(c.id, "has more than one parent"));
    }
    let ulid: Ulid = field(t, c.id, keys::MESSAGE_ID)?
        .parse()
        .map_err(|e| bad(c.id, format_args!("{e}")))?;
    let content_id: Digest = field(t, c.id, keys::CONTENT_ID)?
        .parse()
        .map_err(|e| bad(c.id, format_args!("{e}")))?;
    let segment_id: Ulid = field(t, c.id, keys::SEGMENT_ID)?
        .parse()
        .map_err(|e| bad(c.id, format_args!("{e}")))?;
    let prev_segment = match t.get(keys::PREV_SEGMENT) {
        Some(p) => Some(
            p.parse::<Oid>()
                .map_err(|e| bad(c.id, format_args!("{e}")))?,
        ),
        None => None,
    };
    let m = Meta {
        commit: c.id,
        ulid,
        content_id,
        seq: number(t, c.id, keys::SEQ)?,
        segment_seq: number(t, c.id, keys::SEGMENT_SEQ)?,
        segment_bytes: number(t, c.id, keys::SEGMENT_BYTES)?,
        segment_id,
        parent: c.parents.first().copied(),
        prev_segment,
    };
    if m.seq == 0 || m.segment_seq == 0 || m.segment_seq > m.seq {
        return Err(bad(c.id, "Seq and Segment-Seq must count from 1"));
    }
    if (m.segment_seq == 1) != m.parent.is_none() {
        return Err(bad(
            c.id,
            "a segment's first message, and only it, has no parent",
        ));
    }
    if m.parent.is_some() && m.prev_segment.is_some() {
        return Err(bad(c.id, "Prev-Segment on a message that has a parent"));
    }
    Ok(m)
}

/// Everything needed to write a message commit's message.
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    /// The topic.
    pub topic: &'a Topic,
    /// The ULID.
    pub ulid: Ulid,
    /// The envelope's content id.
    pub content_id: Digest,
    /// Position in the topic.
    pub seq: u64,
    /// Position in the segment.
    pub segment_seq: u64,
    /// Envelope bytes in the segment so far.
    pub segment_bytes: u64,
    /// The segment's first ULID.
    pub segment_id: Ulid,
    /// The previous segment's last message, for a segment root that has one.
    pub prev_segment: Option<Oid>,
    /// The node that wrote it.
    pub origin: Ulid,
}

/// Builds the commit message of a message commit (unsigned).
///
/// The same text as `trailers_of(m).to_message(..)`, written into one string: building the
/// trailers' list first was 7% of a batch's time.
pub fn commit_message(m: &NewMessage<'_>) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(400);
    // Writing to a String does not fail.
    let _ = write!(
        s,
        "message {topic} {seq}\n\n{kind_key}: {KIND}\n{topic_key}: {topic}\n{id_key}: {ulid}\n\
         {content_key}: {content}\n{seq_key}: {seq}\n{segment_seq_key}: {segment_seq}\n\
         {segment_bytes_key}: {segment_bytes}\n{segment_id_key}: {segment_id}\n",
        topic = m.topic,
        seq = m.seq,
        kind_key = keys::KIND,
        topic_key = keys::TOPIC,
        id_key = keys::MESSAGE_ID,
        ulid = m.ulid,
        content_key = keys::CONTENT_ID,
        content = m.content_id,
        seq_key = keys::SEQ,
        segment_seq_key = keys::SEGMENT_SEQ,
        segment_seq = m.segment_seq,
        segment_bytes_key = keys::SEGMENT_BYTES,
        segment_bytes = m.segment_bytes,
        segment_id_key = keys::SEGMENT_ID,
        segment_id = m.segment_id,
    );
    if let Some(p) = m.prev_segment {
        let _ = writeln!(s, "{}: {p}", keys::PREV_SEGMENT);
    }
    let _ = writeln!(s, "{}: {}", keys::ORIGIN, m.origin);
    s
}

fn trailers_of(m: &NewMessage<'_>) -> Trailers {
    let mut t = Trailers::new()
        .with(keys::KIND, KIND)
        .with(keys::TOPIC, m.topic)
        .with(keys::MESSAGE_ID, m.ulid)
        .with(keys::CONTENT_ID, m.content_id)
        .with(keys::SEQ, m.seq)
        .with(keys::SEGMENT_SEQ, m.segment_seq)
        .with(keys::SEGMENT_BYTES, m.segment_bytes)
        .with(keys::SEGMENT_ID, m.segment_id);
    if let Some(p) = m.prev_segment {
        t = t.with(keys::PREV_SEGMENT, p);
    }
    t.with(keys::ORIGIN, m.origin)
}

/// Whether a topic's messages are signed by their writer and, from a remote, count only
/// when a trusted key signed them: the system topics (`gatos.*`, ADR 0018).
pub fn is_signed_topic(t: &Topic) -> bool {
    t.as_str().starts_with("gatos.")
}

/// How a message commit is signed.
#[derive(Clone, Copy)]
pub(crate) enum Signing<'a> {
    /// Not signed.
    None,
    /// Signed now, with this key.
    Sign(&'a ed25519_dalek::SigningKey),
    /// Carries its first writer's `Signed-By` and `Signature` (a re-append: the signature
    /// covers no positional trailer, so it still verifies).
    Carry(&'a str, &'a str),
}

/// One message to append after a sequence's tip.
pub(crate) struct Append<'a> {
    /// The topic.
    pub topic: &'a Topic,
    /// Its position in the topic.
    pub seq: u64,
    /// Its ULID.
    pub ulid: Ulid,
    /// The content id of its canonical envelope.
    pub content_id: Digest,
    /// The node that wrote it.
    pub origin: Ulid,
    /// The commit time.
    pub time: gatos_types::Timestamp,
    /// Its signature.
    pub signing: Signing<'a>,
}

/// Writes the envelope blob (of the canonical `envelope`), tree and commit of a message
/// after `prev`: in `prev`'s segment, or starting a new one when `rotate` (or when there is
/// no `prev`). Returns its place and its envelope blob. Shared by publish and by sync's
/// re-append.
///
/// # Errors
/// When an object cannot be written.
pub(crate) fn write_append(
    w: &mut dyn gatos_store::objects::Objects,
    prev: Option<&Meta>,
    rotate: bool,
    a: &Append<'_>,
    envelope: &[u8],
) -> Result<(Meta, Oid)> {
    let blob = w.blob(envelope)?;
    let tree = envelope_tree(w, blob)?;
    write_commit(w, prev, rotate, a, blob, tree, envelope.len())
}

/// Writes the tree of a message whose envelope is the blob `blob`. It depends on the
/// envelope alone, so a batch may make it ahead of the commits, on other threads.
pub(crate) fn envelope_tree(w: &mut dyn gatos_store::objects::Objects, blob: Oid) -> Result<Oid> {
    Ok(w.files(&[(ENVELOPE_PATH, blob)])?)
}

/// As [`write_append`], with the envelope's tree already written ([`envelope_tree`]) and
/// its blob, of `len` bytes, written or to be written by the caller.
pub(crate) fn write_commit(
    w: &mut dyn gatos_store::objects::Objects,
    prev: Option<&Meta>,
    rotate: bool,
    a: &Append<'_>,
    blob: Oid,
    tree: Oid,
    len: usize,
) -> Result<(Meta, Oid)> {
    let len = len as u64;
    let (segment_seq, segment_bytes, segment_id, parent, prev_segment) = match prev {
        Some(p) if !rotate => (
            p.segment_seq + 1,
            p.segment_bytes + len,
            p.segment_id,
            Some(p.commit),
            None,
        ),
        Some(p) => (1, len, a.ulid, None, Some(p.commit)),
        None => (1, len, a.ulid, None, None),
    };
    let new = NewMessage {
        topic: a.topic,
        ulid: a.ulid,
        content_id: a.content_id,
        seq: a.seq,
        segment_seq,
        segment_bytes,
        segment_id,
        prev_segment,
        origin: a.origin,
    };
    let signed =
        |trailers: Trailers| trailers.to_message(&format!("message {} {}", a.topic, a.seq));
    let message = match a.signing {
        Signing::None => commit_message(&new),
        Signing::Sign(key) => signed(crate::signing::sign_trailers(key, tree, trailers_of(&new))),
        Signing::Carry(by, sig) => signed(
            trailers_of(&new)
                .with(crate::signing::SIGNED_BY, by)
                .with(crate::signing::SIGNATURE, sig),
        ),
    };
    let parents: Vec<Oid> = parent.into_iter().collect();
    let commit = w.commit(&gatos_store::objects::NewCommit {
        tree,
        parents: &parents,
        message: &message,
        time: a.time,
    })?;
    let meta = Meta {
        commit,
        ulid: a.ulid,
        content_id: a.content_id,
        seq: a.seq,
        segment_seq,
        segment_bytes,
        segment_id,
        parent,
        prev_segment,
    };
    Ok((meta, blob))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commit_message_is_the_one_its_trailers_make() {
        let topic: Topic = "orders.eu-1".parse().expect("valid");
        let ulid: Ulid = "01ARZ3NDEKTSV4RRFFQ69G5FAV".parse().expect("valid");
        let origin: Ulid = "01BX5ZZKBKACTAV9WEVGEMMVRZ".parse().expect("valid");
        for prev_segment in [None, Some(Oid::from_bytes([7; 20]))] {
            let m = NewMessage {
                topic: &topic,
                ulid,
                content_id: Digest::of(b"{}"),
                seq: 123_456,
                segment_seq: 17,
                segment_bytes: 99_999,
                segment_id: origin,
                prev_segment,
                origin,
            };
            assert_eq!(
                commit_message(&m),
                trailers_of(&m).to_message(&format!("message {} {}", m.topic, m.seq))
            );
        }
    }
}
