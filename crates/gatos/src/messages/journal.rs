//! Journaled publishes (ADR 0046): a plain publish is acknowledged after one append to its
//! topic's journal, `<git-dir>/gatos/journal/messages.<topic>`, and becomes commits under
//! `refs/gatos/messages/` when the journal is *materialized*: by the handle's flusher
//! within `gatos.journal.flushMs` (a long-lived process starts one,
//! [`crate::Gatos::start_journal_flusher`]), by any writer of the topic that does not
//! journal before it writes (a journaling one appends after the last record, whoever wrote
//! it), by any gatos reader of the topic before it reads, and by the last handle's drop.
//! Everything here runs under the topic's lock family (`messages.<topic>`), the lock every
//! writer of the topic takes.
//!
//! A record holds everything the publishes wrote, built before the append exactly as the
//! direct path builds it: the encoded objects (blob, trees, commit of each message), the
//! head value they extend (`old`) and the last commit (`new`), and each message's
//! metadata for the position index. Commit ids depend only on the parent, the time and the
//! identity, so the acknowledgement names the commit plain `git` later shows.
//!
//! Materializing writes the objects (loose, or one pack for a large group), moves the head
//! with one CAS from the first pending record's `old` to the last record's `new`, updates
//! the position index and empties the journal. A crash after the CAS leaves a journal
//! whose records are already in the head: the next materializer finds the head at a
//! record's `new` and applies only what follows it. A head at no record boundary was
//! moved by a writer outside gatos (a `git fetch` or `update-ref` into the topic): the
//! records' messages are appended again after it, as sync does with a node's messages
//! after the hub's (ADR 0015): same envelopes and ULIDs, new commit ids.
//!
//! What is journaled: publishes without `msg_id` and without `expect_last_seq`, that do
//! not start a new segment, and gatos's own `gatos.jobs` events and `gatos.audit` records
//! (their `msg_id` is their action's commit id; they follow their action at-least-once
//! anyway). Everything else takes the direct path, which materializes the journal first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use gatos_store::journal::{Checksum, Journal};
use gatos_store::objects::{Kind, Objects};
use gatos_store::refs::{Edit, Options, names};
use gatos_types::envelope;
use gatos_types::wire::PublishRow;
use gatos_types::{Digest, ErrorCode, Oid, Topic};

use super::chain::{self, Meta};
use super::index::{self, Known, Record};
use super::{MAX_ENVELOPE_BYTES, Messages};
use crate::codec::{self, Cur};
use crate::error::{Error, Result};

thread_local! {
    static UNSETTLED: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// While one lives, its thread reads topics as committed: no topic's journal is
/// materialized before a read ([`crate::Gatos::committed_only`]). Not `Send`.
pub(crate) struct Unsettled {
    _thread: std::marker::PhantomData<*const ()>,
}

impl Unsettled {
    pub(crate) fn enter() -> Unsettled {
        UNSETTLED.with(|u| u.set(u.get() + 1));
        Unsettled {
            _thread: std::marker::PhantomData,
        }
    }

    fn active() -> bool {
        UNSETTLED.with(|u| u.get() > 0)
    }
}

impl Drop for Unsettled {
    fn drop(&mut self) {
        UNSETTLED.with(|u| u.set(u.get().saturating_sub(1)));
    }
}

/// Records waiting in one journal before the writer materializes them itself.
const MAX_PENDING: u64 = 4_096;

/// Bytes of other processes' records a publish on the event loop reads to append after
/// them ([`adopt_tail`]); past this it goes to a thread that may wait.
const MAX_NOWAIT_SCAN: u64 = 256 << 10;

/// Groups with fewer objects than this are materialized as loose objects, not as a pack.
const MIN_PACKED: usize = 32;

/// The version byte every record body starts with.
const VERSION: u8 = 1;

/// The lock family (and journal name) of a topic.
pub(crate) fn family(topic: &Topic) -> String {
    format!("messages.{topic}")
}

/// A handle's journals: per topic, what this handle appended and has not seen
/// materialized.
#[derive(Default)]
pub(crate) struct Journals {
    topics: Mutex<HashMap<Topic, Arc<Mutex<Open>>>>,
    pub(crate) flusher: Mutex<bool>,
    /// Damaged topics whose journals were left, with the head they were left at: a
    /// warning is logged once per topic and head, not at every read of every topic.
    left: Mutex<HashMap<Topic, Option<Oid>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One topic's journal as this handle left it.
struct Open {
    journal: Option<Journal>,
    /// The journal's length after this handle's last append, or after the records of
    /// other processes it last followed (0: nothing of ours pending).
    len: u64,
    /// The checksum of the record that ends at `len`.
    sum: Option<Checksum>,
    /// The last message journaled or committed: the next record's parent. `None` with
    /// `through`: the topic has no head.
    tail: Option<Meta>,
    /// The last pruned seq when the topic has no head.
    through: u64,
    /// Whether `tail`/`through` are known (read from the refs, or carried from a record).
    based: bool,
    /// Records pending in the journal as this handle knows it: its own, and those of other
    /// processes it followed (the `MAX_PENDING` bound is on the journal).
    records: u64,
    /// When the oldest of them was appended.
    since: Option<Instant>,
}

impl Open {
    fn new() -> Open {
        Open {
            journal: None,
            len: 0,
            sum: None,
            tail: None,
            through: 0,
            based: false,
            records: 0,
            since: None,
        }
    }

    /// Forgets what this handle appended (it was materialized) and closes the file: a
    /// daemon that publishes to many topics holds a descriptor only for those with
    /// records waiting.
    fn forget(&mut self) {
        self.journal = None;
        self.len = 0;
        self.sum = None;
        self.tail = None;
        self.through = 0;
        self.based = false;
        self.records = 0;
        self.since = None;
    }
}

impl Journals {
    fn open(&self, topic: &Topic) -> Arc<Mutex<Open>> {
        lock(&self.topics)
            .entry(topic.clone())
            .or_insert_with(|| Arc::new(Mutex::new(Open::new())))
            .clone()
    }

    /// Topics with records this handle appended.
    pub(crate) fn pending_topics(&self) -> Vec<Topic> {
        self.pending().into_iter().map(|(t, _)| t).collect()
    }

    /// Topics with records this handle appended, and since when.
    fn pending(&self) -> Vec<(Topic, Instant)> {
        lock(&self.topics)
            .iter()
            .filter_map(|(t, o)| lock(o).since.map(|s| (t.clone(), s)))
            .collect()
    }
}

/// One message of a record.
#[derive(Debug, Clone)]
struct Msg {
    meta: Meta,
    blob: Oid,
    len: u32,
    msgid: u64,
}

/// A decoded record.
#[derive(Debug)]
struct Rec {
    old: Option<Oid>,
    new: Oid,
    msgs: Vec<Msg>,
    objects: Vec<(Kind, Vec<u8>)>,
}

fn put_oid(out: &mut Vec<u8>, o: Option<Oid>) {
    match o {
        Some(o) => {
            out.push(1);
            out.extend_from_slice(o.as_bytes());
        }
        None => {
            out.push(0);
            out.extend_from_slice(&[0u8; 20]);
        }
    }
}

fn encode(old: Option<Oid>, msgs: &[Msg], objects: &[(Oid, Kind, Vec<u8>)]) -> Vec<u8> {
    let size: usize = objects.iter().map(|o| o.2.len() + 5).sum::<usize>() + msgs.len() * 240;
    let mut out = Vec::with_capacity(size + 64);
    out.push(VERSION);
    put_oid(&mut out, old);
    out.extend_from_slice(&u32::try_from(msgs.len()).unwrap_or(u32::MAX).to_le_bytes());
    for m in msgs {
        out.extend_from_slice(m.meta.commit.as_bytes());
        out.extend_from_slice(m.blob.as_bytes());
        out.extend_from_slice(&m.meta.ulid.to_bytes());
        out.extend_from_slice(&m.len.to_le_bytes());
        out.extend_from_slice(&m.msgid.to_le_bytes());
        out.extend_from_slice(&m.meta.seq.to_le_bytes());
        out.extend_from_slice(&m.meta.segment_seq.to_le_bytes());
        out.extend_from_slice(&m.meta.segment_bytes.to_le_bytes());
        out.extend_from_slice(&m.meta.segment_id.to_bytes());
        out.extend_from_slice(m.meta.content_id.as_bytes());
        put_oid(&mut out, m.meta.parent);
        put_oid(&mut out, m.meta.prev_segment);
    }
    codec::put_objects(&mut out, objects);
    out
}

fn bad_record(why: &str) -> Error {
    Error::new(
        ErrorCode::InvalidEnvelope,
        format!("a journal record does not decode: {why}"),
    )
}

/// Decodes a record; with `objects` false its objects are checked but not copied.
fn decode(body: &[u8], objects: bool) -> Result<Rec> {
    let mut c = Cur::new(body);
    if c.arr::<1>()?[0] != VERSION {
        return Err(bad_record("unknown version"));
    }
    let old = c.opt_oid()?;
    let n = c.u32()? as usize;
    let mut msgs = Vec::with_capacity(n.min(MAX_PENDING as usize));
    for _ in 0..n {
        let commit = c.oid()?;
        let blob = c.oid()?;
        let ulid = c.ulid()?;
        let len = c.u32()?;
        let msgid = c.u64()?;
        let seq = c.u64()?;
        let segment_seq = c.u64()?;
        let segment_bytes = c.u64()?;
        let segment_id = c.ulid()?;
        let content_id = Digest::from_bytes(c.arr()?);
        let parent = c.opt_oid()?;
        let prev_segment = c.opt_oid()?;
        msgs.push(Msg {
            meta: Meta {
                commit,
                ulid,
                content_id,
                seq,
                segment_seq,
                segment_bytes,
                segment_id,
                parent,
                prev_segment,
            },
            blob,
            len,
            msgid,
        });
    }
    let out = codec::objects(&mut c, objects, 3 * MAX_PENDING as usize)?;
    if !c.done() {
        return Err(bad_record("bytes after the objects"));
    }
    let new = msgs
        .last()
        .map(|m| m.meta.commit)
        .ok_or_else(|| bad_record("no message"))?;
    Ok(Rec {
        old,
        new,
        msgs,
        objects: out,
    })
}

/// What a materialization did.
enum Outcome {
    /// The journal held nothing to apply.
    Nothing,
    /// Its records now extend the head.
    Applied { known: Vec<Known>, head: Oid },
    /// The head moved outside gatos: these message commits (written, unreferenced) must
    /// be appended again after it.
    Foreign { commits: Vec<Oid> },
    /// The head moved outside gatos to something they cannot be appended after (no
    /// message; or the topic's summary does not read): the topic is damaged (ADR 0047).
    /// Nothing was written; the journal is left as it is.
    Damaged(Error),
}

/// What making a topic's journal commits came to.
pub(crate) enum Settled {
    /// The journal is commits (or held nothing).
    Done,
    /// The topic is damaged: its journal was left as it is, for this reason
    /// ([`Outcome::Damaged`]).
    Damaged(Error),
}

impl Settled {
    /// Done, or the topic's damage as an error (for a caller that must not go on).
    fn done(self) -> Result<()> {
        match self {
            Settled::Done => Ok(()),
            Settled::Damaged(e) => Err(e),
        }
    }
}

/// One prepared publish (payload and headers) to journal.
pub(crate) struct Item<'a> {
    pub payload: &'a serde_json::Value,
    pub headers: Option<&'a serde_json::Value>,
    /// Its `msg_id`, kept in the position index when the record is materialized.
    pub msg_id: Option<&'a str>,
}

impl Messages<'_> {
    /// Journals a group of plain publishes and returns their rows, or `None` when the
    /// group must take the direct path (a new segment is due, or a message is too large:
    /// the direct path reports that per message). Nothing is written in that case.
    pub(crate) fn append_journaled(
        &self,
        topic: &Topic,
        items: &[Item<'_>],
    ) -> Result<Option<Vec<PublishRow>>> {
        let store = self.gatos.store();
        let family = family(topic);
        let nowait = crate::nowait::active();
        let _guard = if nowait {
            // Syncing the record would wait for the disk.
            if store.is_durable() {
                return Err(crate::nowait::would_wait("a durable publish"));
            }
            store
                .locks()
                .try_acquire(&family)
                .map_err(gatos_store::Error::from)?
                .ok_or_else(|| crate::nowait::would_wait("the topic's lock"))?
        } else {
            lock_family(store, &family)?
        };
        let state = self.gatos.journals().open(topic);
        let mut open = if nowait {
            match state.try_lock() {
                Ok(o) => o,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {
                    return Err(crate::nowait::would_wait("the topic's journal"));
                }
            }
        } else {
            lock(&state)
        };
        if open.journal.is_none() {
            open.journal = Some(store.open_journal(&family)?);
        }
        // Another process may have emptied or extended the journal since this handle's
        // last append: then what this handle remembers is stale.
        let file_len = open.journal.as_ref().map_or(Ok(0), Journal::file_len)?;
        let ours = file_len == open.len
            && match (open.sum, open.journal.as_ref()) {
                (Some(sum), Some(j)) => j.checksum_at(file_len)? == sum,
                (None, _) => file_len == 0,
                (Some(_), None) => false,
            };
        // A journal this handle did not write (or forgot, after a materialization that
        // failed) is built on only when its first record follows the head as it stands:
        // otherwise the head moved outside gatos, and the materialization below appends
        // the records again after it, or refuses this publish when the topic is damaged.
        let head = || {
            store
                .read_ref(&names::message_head(topic))
                .map_err(Error::from)
        };
        if !ours && !adopt_tail(&mut open, file_len, nowait, head)? {
            if nowait {
                return Err(crate::nowait::would_wait(
                    "a journal another process changed",
                ));
            }
            drop(open);
            self.materialize_locked(topic)?;
            open = lock(&state);
            // Materializing closed it.
            if open.journal.is_none() {
                open.journal = Some(store.open_journal(&family)?);
            }
        }
        if open.records >= MAX_PENDING {
            // A journal at its bound that could not be made commits when it reached it (the
            // publish that filled it was acknowledged all the same) is made commits before
            // anything more is appended: a failure refuses this publish, so the journal
            // does not grow without bound while its topic cannot be read.
            if nowait {
                return Err(crate::nowait::would_wait("a full journal"));
            }
            drop(open);
            self.materialize_locked(topic)?;
            open = lock(&state);
            if open.journal.is_none() {
                open.journal = Some(store.open_journal(&family)?);
            }
        }
        if !open.based {
            let head = store.read_ref(&names::message_head(topic))?;
            let summary = self.summary(topic)?;
            let tail = match head {
                Some(h) => Some(match self.gatos.cached_tail(topic, h) {
                    Some(m) => m,
                    None => chain::meta_in(&store.reader().commit(h)?, topic)?,
                }),
                None => None,
            };
            if let Some(m) = &tail
                && store
                    .read_ref(&names::message_sealed(
                        topic,
                        &super::segment_date(m.segment_id),
                        m.segment_id,
                    ))?
                    .is_some()
            {
                // The head's segment is sealed: the next message starts a new one.
                return Ok(None);
            }
            open.tail = tail;
            open.through = summary.through;
            open.based = true;
        }
        let (config, _) = self.gatos.topic_config(topic)?;
        let signer = if config.sign || chain::is_signed_topic(topic) {
            self.gatos.keys().signing_key()?
        } else {
            None
        };
        let node = self.gatos.node_id()?;
        let now = self.gatos.now();
        let mut sink = store.collector();
        let mut prev = open.tail.clone();
        let seq_before = prev.as_ref().map_or(open.through, |m| m.seq);
        let mut next_seq = seq_before + 1;
        let mut msgs = Vec::with_capacity(items.len());
        let mut rows = Vec::with_capacity(items.len());
        for item in items {
            let ulid = self
                .gatos
                .entropy()
                .ulid(now, prev.as_ref().map(|p| p.ulid));
            let env = envelope::build(ulid, topic, item.payload, item.headers);
            let len = env.bytes.len() as u64;
            if env.bytes.len() > MAX_ENVELOPE_BYTES {
                return Ok(None);
            }
            if let Some(p) = &prev
                && (p.segment_seq >= config.max_messages
                    || p.segment_bytes.saturating_add(len) > config.max_bytes)
            {
                return Ok(None);
            }
            let (meta, blob) = chain::write_append(
                &mut sink,
                prev.as_ref(),
                false,
                &chain::Append {
                    topic,
                    seq: next_seq,
                    ulid,
                    content_id: env.content_id,
                    origin: node,
                    time: now,
                    signing: match &signer {
                        Some(k) => chain::Signing::Sign(k),
                        None => chain::Signing::None,
                    },
                },
                &env.bytes,
            )?;
            rows.push(PublishRow {
                ulid,
                seq: next_seq,
                topic: topic.clone(),
                content_id: env.content_id,
                commit: meta.commit,
                duplicate: false,
            });
            msgs.push(Msg {
                meta: meta.clone(),
                blob,
                len: u32::try_from(len).unwrap_or(u32::MAX),
                msgid: item.msg_id.map_or(0, index::msgid_hash),
            });
            prev = Some(meta);
            next_seq += 1;
        }
        if nowait && open.records + 1 >= MAX_PENDING {
            // This append would materialize the journal itself.
            return Err(crate::nowait::would_wait("a full journal"));
        }
        let body = encode(open.tail.as_ref().map(|m| m.commit), &msgs, &sink.objects);
        // The objects are in the body now: one copy of a large payload less while it is
        // appended.
        drop(sink);
        let journal = open
            .journal
            .as_mut()
            .ok_or_else(|| Error::new(ErrorCode::Internal, "journal not open"))?;
        let sum = journal.append(&body)?;
        if store.is_durable() {
            journal.sync()?;
        }
        open.len = file_len_after(open.len, &body);
        open.sum = Some(sum);
        open.tail = prev;
        open.records += 1;
        open.since.get_or_insert_with(Instant::now);
        let due = open.records >= MAX_PENDING;
        drop(open);
        // The record is appended (and synced with `gatos.fsync`): the publish is
        // acknowledged whatever making the journal commits now comes to. A failure is left
        // to the next reader, as the flusher's is; the next publish re-reads the head.
        if due && let Err(e) = self.materialize_locked(topic) {
            tracing::warn!(%topic, error = %e, "could not materialize a full journal; the publish is acknowledged from it");
        }
        drop(_guard);
        self.gatos.after_append(seq_before, next_seq - 1);
        Ok(Some(rows))
    }

    /// Materializes the topic's journal if it holds anything; the caller holds the topic's
    /// lock. A reader's cost when it is empty: one `statx`.
    ///
    /// # Errors
    /// A store failure, a record that does not decode, or the topic's damage
    /// ([`Settled::Damaged`]).
    pub(crate) fn materialize_locked(&self, topic: &Topic) -> Result<()> {
        self.materialize_settled(topic)?.done()
    }

    /// [`Messages::materialize_locked`], telling the topic's damage apart from a failure:
    /// the journal's records are decoded and checked first, and only then is the head they
    /// must follow read, so a journal that does not read is an error whatever the topic's
    /// state.
    ///
    /// # Errors
    /// A store failure, or a record that does not decode.
    pub(crate) fn materialize_settled(&self, topic: &Topic) -> Result<Settled> {
        let store = self.gatos.store();
        let family = family(topic);
        let state = self.gatos.journals().open(topic);
        let mut open = lock(&state);
        if open.records == 0 && store.journal_len(&family)? == 0 {
            open.forget();
            return Ok(Settled::Done);
        }
        if open.journal.is_none() {
            open.journal = Some(store.open_journal(&family)?);
        }
        let journal = open
            .journal
            .as_ref()
            .ok_or_else(|| Error::new(ErrorCode::Internal, "journal not open"))?;
        let outcome = apply(store, topic, journal, || self.base(topic).map(|_| ()));
        // Whatever happened, this handle re-reads the refs and the file next time.
        open.forget();
        match outcome? {
            Outcome::Nothing => Ok(Settled::Done),
            Outcome::Damaged(e) => Ok(Settled::Damaged(e)),
            Outcome::Applied { known, head } => {
                drop(open);
                // The journal is commits now: keeping the position index in step is best
                // effort (readers rebuild it), also when the summary does not read (ADR
                // 0047), which must not report the journal as stuck.
                let indexed = self.summary(topic).and_then(|summary| {
                    let target = index::Target {
                        head: Some(head),
                        summary: summary.at,
                        pruned_through: summary.through,
                    };
                    index::open(store, topic, target, &known)
                });
                if let Err(e) = indexed {
                    tracing::warn!(%topic, error = %e, "could not update the position index; readers will rebuild it");
                }
                if let Some(last) = known.last() {
                    self.gatos.cache_tail(topic, last.meta.clone());
                }
                if !known.is_empty() {
                    // Objects were written: maintenance may be due now (writers start it;
                    // the journaled appends themselves wrote none).
                    self.gatos.maybe_maintain();
                }
                Ok(Settled::Done)
            }
            Outcome::Foreign { commits } => {
                self.reparent(topic, &commits)?;
                store.open_journal(&family)?.truncate(0)?;
                Ok(Settled::Done)
            }
        }
    }

    /// What journaled messages are appended again after when the head moved outside gatos
    /// ([`Messages::reparent`]): the head's message (`None`: no head) and the topic's
    /// summary.
    ///
    /// # Errors
    /// `InvalidEnvelope` or `NotFound` when the head is no message or the summary does not
    /// read (the topic is damaged); a store failure.
    fn base(&self, topic: &Topic) -> Result<(Option<Meta>, super::Summary)> {
        let store = self.gatos.store();
        let summary = self.summary(topic)?;
        let base = match store.read_ref(&names::message_head(topic))? {
            Some(h) => Some(chain::meta_in(&store.reader().commit(h)?, topic)?),
            None => None,
        };
        Ok((base, summary))
    }

    /// Appends journaled messages again after a head that moved outside gatos: same
    /// envelopes (ULIDs, payloads, content ids), origin, time and signature; new commits.
    fn reparent(&self, topic: &Topic, commits: &[Oid]) -> Result<()> {
        let store = self.gatos.store();
        let head_ref = names::message_head(topic);
        let head = store.read_ref(&head_ref)?;
        let (base, summary) = self.base(topic)?;
        let base_sealed = match &base {
            Some(m) => store
                .read_ref(&names::message_sealed(
                    topic,
                    &super::segment_date(m.segment_id),
                    m.segment_id,
                ))?
                .is_some(),
            None => false,
        };
        let mut items = Vec::with_capacity(commits.len());
        for c in commits {
            items.push(self.stored(*c)?);
        }
        let built = self.build_on(topic, base.as_ref(), base_sealed, summary.through, &items)?;
        let opts = Options {
            message: format!("gatos: publish to {topic} (journal, after a foreign head)"),
            ..Options::default()
        };
        for (sealed, at) in &built.sealed {
            store.update_refs_locked(&[Edit::create(sealed.clone(), *at)], &opts, false)?;
        }
        store.update_refs_locked(&[Edit::update(head_ref, head, built.tip)], &opts, false)?;
        tracing::warn!(%topic, messages = commits.len(), "the topic head moved outside gatos while publishes were journaled: they were appended again after it, with new commit ids (same ULIDs)");
        Ok(())
    }

    /// Makes what the topic's journal holds visible in its refs before a read: nothing but
    /// one `statx` when it is empty. Takes the topic's lock when there is work.
    ///
    /// # Errors
    /// As [`Messages::materialize_locked`].
    pub(crate) fn settle_topic(&self, topic: &Topic) -> Result<()> {
        self.settle_topic_settled(topic)?.done()
    }

    /// [`Messages::settle_topic`], telling the topic's damage apart
    /// ([`Messages::materialize_settled`]).
    ///
    /// # Errors
    /// As [`Messages::materialize_settled`].
    fn settle_topic_settled(&self, topic: &Topic) -> Result<Settled> {
        if Unsettled::active() {
            return Ok(Settled::Done);
        }
        let store = self.gatos.store();
        let family = family(topic);
        if store.journal_len(&family)? == 0 {
            return Ok(Settled::Done);
        }
        let _guard = lock_family(store, &family)?;
        self.materialize_settled(topic)
    }

    /// [`Messages::settle_each`], leaving the journal of a damaged topic as it is: a topic
    /// whose head moved outside gatos to no message (or whose summary does not read, when
    /// the records must be appended again after a head that moved) cannot have its journal
    /// made commits, and that does not keep what reads every topic (a state, a listing, a
    /// snapshot, a sync) from reading the others (ADR 0047). The damage is what the journal's
    /// records must follow not reading, found on the refs after the records themselves were
    /// decoded and checked ([`Messages::materialize_settled`]): a journal that does not read,
    /// or fails for any other reason, fails the call, whatever the topic's state. What the
    /// damaged topic's journal holds stays there, acknowledged, and becomes commits once the
    /// topic is repaired; a warning names it once per topic and head. Returns each topic so
    /// left, with why, in name order.
    ///
    /// # Errors
    /// The first journal that could not be made commits for another reason than its topic's
    /// damage (the others are still settled); the journal directory cannot be read.
    pub(crate) fn settle_healthy(&self) -> Result<Vec<(Topic, Error)>> {
        if Unsettled::active() {
            // What is committed is read as it stands (Gatos::committed_only).
            return Ok(Vec::new());
        }
        let mut left = Vec::new();
        let mut failed = None;
        for topic in self.journaled_topics()? {
            match self.settle_topic_settled(&topic) {
                Ok(Settled::Done) => {
                    lock(&self.gatos.journals().left).remove(&topic);
                }
                Ok(Settled::Damaged(e)) => {
                    let head = self
                        .gatos
                        .store()
                        .read_ref(&names::message_head(&topic))
                        .ok()
                        .flatten();
                    if lock(&self.gatos.journals().left).insert(topic.clone(), head) != Some(head) {
                        tracing::warn!(%topic, error = %e, "the topic is damaged: its journaled publishes wait in its journal until it is repaired (git gatos doctor)");
                    }
                    left.push((topic, e));
                }
                Err(e) => {
                    tracing::warn!(%topic, error = %e, "could not materialize the journal");
                    failed.get_or_insert(e);
                }
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(left),
        }
    }

    /// The topics with a publish journal on disk, in name order.
    ///
    /// # Errors
    /// The journal directory cannot be read.
    fn journaled_topics(&self) -> Result<Vec<Topic>> {
        let mut out = Vec::new();
        for f in self.gatos.store().journal_families()? {
            let Some(name) = f.strip_prefix("messages.") else {
                continue;
            };
            match name.parse::<Topic>() {
                Ok(t) => out.push(t),
                Err(_) => {
                    tracing::warn!(journal = %f, "a journal whose name is not a topic; left alone");
                }
            }
        }
        Ok(out)
    }

    /// [`Messages::settle_topic`] for every topic with a journal that holds anything,
    /// returning each journal that could not be materialized (its family's name and why),
    /// in name order; the others are still settled.
    ///
    /// # Errors
    /// The journal directory cannot be read.
    pub(crate) fn settle_each(&self) -> Result<Vec<(String, Error)>> {
        let mut failed = Vec::new();
        for topic in self.journaled_topics()? {
            if let Err(e) = self.settle_topic(&topic) {
                tracing::warn!(%topic, error = %e, "could not materialize the journal");
                failed.push((family(&topic), e));
            }
        }
        Ok(failed)
    }

    /// Materializes this handle's journals whose oldest record is at least `age` old.
    pub(crate) fn flush_due(&self, age: Duration) {
        for (topic, since) in self.gatos.journals().pending() {
            if since.elapsed() < age {
                continue;
            }
            if let Err(e) = self.settle_topic(&topic) {
                tracing::warn!(%topic, error = %e, "could not materialize the journal");
            }
        }
    }
}

/// Another process appended to the journal since this handle's last append (the caller
/// holds the topic's lock): the next record follows the last of the journal's records, so
/// this handle takes its tail from there instead of materializing the journal. Without
/// this, processes that journal one topic by turns (several workers emitting
/// `gatos.jobs` events) materialized it at nearly every append. False, and nothing is
/// changed, when the journal holds no record that another process appended or ends in a
/// torn one: then the caller materializes it, which also cuts a torn tail.
fn adopt_tail(
    open: &mut Open,
    file_len: u64,
    nowait: bool,
    head: impl FnOnce() -> Result<Option<Oid>>,
) -> Result<bool> {
    let Some(journal) = open.journal.as_ref() else {
        return Ok(false);
    };
    // This handle's records are still there, followed by others': read only those.
    // Otherwise the journal was materialized (every record of ours with it) and holds
    // only others' records.
    let kept = open.len > 0
        && open.len < file_len
        && open
            .sum
            .is_some_and(|sum| journal.checksum_at(open.len).is_ok_and(|s| s == sum));
    let from = if kept { open.len } else { 0 };
    if nowait && file_len - from > MAX_NOWAIT_SCAN {
        // Reading that much is work for a thread that may wait, not for the event loop.
        return Ok(false);
    }
    let mut scan = journal.scan_from(from)?;
    // Each record must follow the one before it (the first one, this handle's last
    // record, when it is still there): a record that does not decode or does not follow
    // is not built on; the materialization the caller falls back to reports it.
    let mut prev = if kept {
        open.tail.as_ref().map(|m| m.commit)
    } else {
        None
    };
    let mut tail = None;
    let mut records = 0u64;
    // The head is read only for a journal that holds none of this handle's records.
    let mut head = Some(head);
    while let Some(body) = scan.next_record()? {
        let Ok(rec) = decode(&body, false) else {
            return Ok(false);
        };
        if (kept || records > 0) && rec.old != prev {
            return Ok(false);
        }
        if !kept
            && records == 0
            && let Some(read) = head.take()
            && rec.old != read()?
        {
            // The head moved outside gatos since these records were journaled.
            return Ok(false);
        }
        prev = Some(rec.new);
        tail = rec.msgs.last().map(|m| m.meta.clone());
        records += 1;
    }
    if scan.good_len() != file_len || scan.file_len() != file_len {
        return Ok(false);
    }
    let Some(tail) = tail else {
        return Ok(false);
    };
    let sum = journal.checksum_at(file_len)?;
    if !kept {
        open.records = 0;
        open.since = None;
    }
    open.len = file_len;
    open.sum = Some(sum);
    open.tail = Some(tail);
    open.based = true;
    open.records += records;
    Ok(true)
}

/// Takes a topic's lock family (the lock every writer of the topic takes).
fn lock_family(store: &gatos_store::Store, family: &str) -> Result<gatos_store::locks::Guard> {
    Ok(store
        .locks()
        .acquire(
            &[family.to_owned()],
            gatos_store::locks::DEFAULT_LOCK_TIMEOUT,
        )
        .map_err(gatos_store::Error::from)?)
}

fn file_len_after(len: u64, body: &[u8]) -> u64 {
    len + body.len() as u64 + 4 + 16
}

/// Applies the journal's records that the head does not have yet, then empties it.
///
/// It reads the journal twice, one record at a time: first what each record follows and
/// holds (no objects), then, from the first record the head lacks, the objects, in chunks
/// of about [`CHUNK_BYTES`]. Each chunk is written (one pack, or loose objects when small)
/// and the head moved to its last commit before the next is read, so what a
/// materialization holds in memory is one chunk, not the journal (24 journaled publishes of
/// 2 MiB once held several copies of all 48 MiB). A crash between chunks leaves the head on
/// a record's commit; the next materialization starts after it.
/// Makes the journal's records commits on the topic's head. `base` is asked, before
/// anything is written, when the head moved outside gatos: a damage (`InvalidEnvelope`,
/// `NotFound`) it answers is [`Outcome::Damaged`].
fn apply(
    store: &gatos_store::Store,
    topic: &Topic,
    journal: &Journal,
    base: impl FnOnce() -> Result<()>,
) -> Result<Outcome> {
    let mut scan = journal.scan()?;
    let mut recs = Vec::new();
    while let Some((at, body)) = scan.next_at()? {
        recs.push((at, decode(&body, false)?));
    }
    if scan.good_len() < scan.file_len() {
        // A record torn by a crash during its write: it was never acknowledged.
        tracing::warn!(%topic, bytes = scan.file_len() - scan.good_len(), "cutting a torn record off the journal");
        journal.truncate(scan.good_len())?;
    }
    if recs.is_empty() {
        if scan.good_len() > 0 {
            journal.truncate(0)?;
        }
        return Ok(Outcome::Nothing);
    }
    for w in recs.windows(2) {
        if w[1].1.old != Some(w[0].1.new) {
            return Err(bad_record("its records do not follow each other"));
        }
    }
    let head_ref = names::message_head(topic);
    let head = store.read_ref(&head_ref)?;
    let start = if head == recs[0].1.old {
        Some(0)
    } else {
        recs.iter()
            .position(|(_, r)| Some(r.new) == head)
            .map(|k| k + 1)
    };
    let Some(start) = start else {
        // The head was moved outside gatos (a fetch or update-ref into the topic) while
        // records waited: their objects are written, and the caller appends their
        // messages again after the new head (as sync does, ADR 0015), unless the new head
        // is nothing they can follow.
        match base() {
            Ok(()) => {}
            Err(e) if super::is_damage(&e) => return Ok(Outcome::Damaged(e)),
            Err(e) => return Err(e),
        }
        let mut w = store.writer();
        let mut again = journal.scan()?;
        for (_, want) in &recs {
            let rec = next_rec(&mut again, want)?;
            for (kind, data) in &rec.objects {
                w.put(*kind, data)?;
            }
        }
        w.finish()?;
        return Ok(Outcome::Foreign {
            commits: recs
                .iter()
                .flat_map(|(_, r)| r.msgs.iter().map(|m| m.meta.commit))
                .collect(),
        });
    };
    let mut known = Vec::new();
    let mut at = head;
    let mut chunks = 0usize;
    if let Some((from, _)) = recs.get(start) {
        let mut again = journal.scan_from(*from)?;
        let mut todo = recs[start..].iter().map(|(_, r)| r).peekable();
        while todo.peek().is_some() {
            let mut chunk = Vec::new();
            let mut bytes = 0usize;
            while bytes < CHUNK_BYTES
                && let Some(want) = todo.next()
            {
                let rec = next_rec(&mut again, want)?;
                bytes += rec.objects.iter().map(|(_, d)| d.len()).sum::<usize>();
                chunk.push(rec);
            }
            at = Some(write_chunk(store, topic, &head_ref, at, chunk, &mut known)?);
            chunks += 1;
        }
        tracing::debug!(%topic, records = recs.len() - start, chunks, messages = known.len(), "journal materialized");
    }
    journal.truncate(0)?;
    // A head already past every record (a crash after the last CAS) still counts as
    // applied, so the position index is brought up to it.
    Ok(match at {
        Some(head) => Outcome::Applied { known, head },
        None => Outcome::Nothing,
    })
}

/// Bytes of objects materialized together (see [`apply`]). A chunk closes once it reaches
/// this, so it holds at most this plus one record (itself at most 64 MiB).
const CHUNK_BYTES: usize = 4 << 20;

/// The next record of a second reading, with its objects; it must be the one the first
/// reading saw (the family's lock is held, so only a foreign hand could change it).
fn next_rec(scan: &mut gatos_store::journal::Scan<'_>, want: &Rec) -> Result<Rec> {
    let body = scan
        .next_record()?
        .ok_or_else(|| bad_record("it changed while it was applied"))?;
    let rec = decode(&body, true)?;
    if rec.old != want.old || rec.new != want.new {
        return Err(bad_record("it changed while it was applied"));
    }
    Ok(rec)
}

/// Writes one chunk's objects and moves the head from `head` to its last commit.
fn write_chunk(
    store: &gatos_store::Store,
    topic: &Topic,
    head_ref: &gatos_store::refs::RefName,
    head: Option<Oid>,
    mut chunk: Vec<Rec>,
    known: &mut Vec<Known>,
) -> Result<Oid> {
    let objects = chunk
        .iter_mut()
        .flat_map(|r| std::mem::take(&mut r.objects))
        .collect();
    let (wrote, keep) = store.write_objects(objects, MIN_PACKED)?;
    for r in &chunk {
        for m in &r.msgs {
            if !wrote.contains(&m.meta.commit) || !wrote.contains(&m.blob) {
                return Err(bad_record(
                    "a message's commit or blob is not among its objects",
                ));
            }
        }
    }
    let last = chunk
        .last()
        .map(|r| r.new)
        .ok_or_else(|| Error::new(ErrorCode::Internal, "an empty journal chunk"))?;
    // Never move the head to a commit the store does not have: the head's new commit
    // must be among the objects just written (and flushed, pack or loose). An object
    // lookup would say the same at a price: the new pack is unknown to the reader, so
    // the miss makes gix list and stat every pack of the repository again (60% of the
    // flusher's time with a few hundred packs).
    if !wrote.contains(&last) {
        return Err(Error::new(
            ErrorCode::Internal,
            format!(
                "materializing the journal of '{topic}': commit {last} is not among the objects written (head {}, {} record(s))",
                head.map_or_else(|| "none".to_owned(), |h| h.to_string()),
                chunk.len(),
            ),
        ));
    }
    let opts = Options {
        message: format!("gatos: publish to {topic} (journal)"),
        ..Options::default()
    };
    store.update_refs_locked(&[Edit::update(head_ref.clone(), head, last)], &opts, false)?;
    drop(keep);
    for r in chunk {
        for m in r.msgs {
            known.push(Known {
                record: Record {
                    commit: m.meta.commit,
                    blob: m.blob,
                    ulid: m.meta.ulid,
                    len: m.len,
                },
                msgid: m.msgid,
                meta: m.meta,
            });
        }
    }
    Ok(last)
}

/// The flusher of a handle: materializes its journals every `flush` while the handle
/// lives, and everything when the last other handle is gone.
pub(crate) fn run_flusher(inner: Weak<crate::Inner>, flush: Duration) {
    loop {
        std::thread::sleep(flush);
        let Some(inner) = inner.upgrade() else { return };
        // Dropped at the end of the turn: when it is the last handle, its drop
        // materializes everything left.
        let gatos = crate::Gatos::from_inner(inner);
        gatos.messages().flush_due(flush);
        // Every turn: a journaled enqueue becomes a ref within one interval.
        gatos.flush_enqueues_due(Duration::ZERO);
    }
}
