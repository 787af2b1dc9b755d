//! Appending messages: one CAS of the topic head per publish, or per chunk of a batch.
//!
//! Writers of a topic serialise on its lock family (DESIGN §3), so local writers never lose
//! a CAS to each other; the CAS still guards against foreign writers (a `git fetch`, a
//! user's `git update-ref`). Order of every append: validate, build objects (harmless if
//! abandoned), make them durable when configured, then move refs — for a rotation the
//! sealed ref first and the head second, so a crash between the two leaves a sealed tip
//! equal to the head, which the next writer treats as "rotate now".

use std::collections::HashMap;
use std::time::{Duration, Instant};

use gatos_store::objects::Objects;
use gatos_store::refs::{Applied, Edit, Options, names};
use gatos_types::envelope::{self, EnvelopeRef};
use gatos_types::wire::PublishRow;
use gatos_types::{Digest, ErrorCode, Oid, Topic, Ulid};
use serde_json::Value;

use super::chain::{self, Meta};
use super::index::{self, Known, Record, msgid_hash};
use super::{MAX_ENVELOPE_BYTES, Messages, segment_date};
use crate::error::{Error, Result};
use crate::group::Led;

/// How long a publish without `expect_last_seq` keeps retrying lost races.
const RETRY_FOR: Duration = Duration::from_secs(10);

/// Chunks with fewer messages than this are written as loose objects, not as a pack.
const MIN_PACKED_BATCH: usize = 32;

/// Options of a single publish.
#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    /// Headers; `msg_id` among them deduplicates.
    pub headers: Option<Value>,
    /// Append only if the topic's last seq is this, else `Conflict`.
    pub expect_last_seq: Option<u64>,
}

/// One message of a batch.
#[derive(Debug, Clone)]
pub struct BatchItem {
    /// The payload.
    pub payload: Value,
    /// Headers; `msg_id` among them deduplicates.
    pub headers: Option<Value>,
}

/// Messages per chunk of a batch publish unless asked otherwise (every face's default).
pub const DEFAULT_CHUNK: usize = 1_000;
/// The largest chunk of a batch publish.
pub const MAX_CHUNK: usize = 100_000;

/// Options of a batch publish.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// Messages per chunk: one pack and one CAS each (more when a chunk crosses a rotation).
    pub chunk: usize,
    /// Append the first chunk only if the topic's last seq is this.
    pub expect_last_seq: Option<u64>,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            chunk: DEFAULT_CHUNK,
            expect_last_seq: None,
        }
    }
}

/// Publishes to one topic waiting to be committed together (see [`Messages::publish`]).
pub(crate) type Combiner = crate::group::Combiner<Prepared, Result<PublishRow>>;

pub(crate) struct Prepared {
    payload: Value,
    headers: Option<Value>,
    msg_id: Option<String>,
}

fn prepare(payload: Value, headers: Option<Value>) -> Result<Prepared> {
    let msg_id = envelope::check_headers(headers.as_ref())?.map(str::to_owned);
    Ok(Prepared {
        payload,
        headers,
        msg_id,
    })
}

/// One answer per item of a group: the rows, then an error for any item left without one.
fn answers(rows: impl Iterator<Item = Result<PublishRow>>, n: usize) -> Vec<Result<PublishRow>> {
    let mut out: Vec<Result<PublishRow>> = rows.take(n).collect();
    while out.len() < n {
        out.push(Err(Error::new(
            ErrorCode::Internal,
            "the publish group failed",
        )));
    }
    out
}

/// The head of a segment being extended.
#[derive(Debug, Clone, Copy)]
struct Prev {
    commit: Oid,
    segment_seq: u64,
    segment_bytes: u64,
    segment_id: Ulid,
}

impl From<&Meta> for Prev {
    fn from(m: &Meta) -> Prev {
        Prev {
            commit: m.commit,
            segment_seq: m.segment_seq,
            segment_bytes: m.segment_bytes,
            segment_id: m.segment_id,
        }
    }
}

/// A run of new commits moved onto the head with one CAS.
struct Part {
    rotate_from: Option<Prev>,
    tip: Oid,
    count: u64,
}

/// Why an append stopped.
struct Stopped {
    error: Error,
    landed: u64,
    retryable: bool,
    /// The rows of the items that landed (the first `landed`).
    rows: Vec<PublishRow>,
}

impl From<Error> for Stopped {
    fn from(error: Error) -> Stopped {
        Stopped {
            error,
            landed: 0,
            retryable: false,
            rows: Vec::new(),
        }
    }
}

impl From<gatos_store::Error> for Stopped {
    fn from(e: gatos_store::Error) -> Stopped {
        Stopped::from(Error::from(e))
    }
}

enum Sink<'s> {
    // Boxed: a loose writer holds a whole gix handle; one sink lives per append.
    Loose(Box<gatos_store::objects::LooseWriter<'s>>),
    Pack(gatos_store::pack::PackWriter<'s>),
}

impl Sink<'_> {
    fn objects(&mut self) -> &mut dyn Objects {
        match self {
            Sink::Loose(w) => w.as_mut(),
            Sink::Pack(w) => w,
        }
    }
}

impl Messages<'_> {
    /// Publishes one message and returns where it landed.
    ///
    /// With `headers.msg_id`, a message already among the topic's last `gatos.dedupeWindow`
    /// messages with that `msg_id` is returned instead, with `duplicate: true`.
    ///
    /// # Errors
    /// `InvalidInput` for bad headers, `PayloadTooLarge` over 8 MiB, `Conflict` when
    /// `expect_last_seq` does not hold or races kept being lost for 10 s.
    pub fn publish(
        &self,
        topic: &Topic,
        payload: Value,
        opts: &PublishOptions,
    ) -> Result<PublishRow> {
        refuse_reserved(topic)?;
        self.publish_system(topic, payload, opts)
    }

    /// As [`Messages::publish`], also on the reserved `gatos.*` topics: for gatos's own
    /// writers (job events, the audit trail).
    pub(crate) fn publish_system(
        &self,
        topic: &Topic,
        payload: Value,
        opts: &PublishOptions,
    ) -> Result<PublishRow> {
        let item = prepare(payload, opts.headers.clone())?;
        if crate::nowait::active() {
            // Only a journaled publish never waits: it leads its topic's group (with what
            // was parked behind the last one), parks, or stops.
            if opts.expect_last_seq.is_some() || item.msg_id.is_some() {
                return Err(crate::nowait::would_wait(
                    "a guarded or deduplicated publish",
                ));
            }
            // A group being committed: park behind it where the caller allows (its leader
            // commits this item too), else stop (ADR 0046, sessions 6 and 15).
            let combiner = self.gatos.combiner(topic);
            let led = combiner.lead_or_park(item, crate::nowait::may_park(), |items| {
                crate::nowait::apart(|| self.commit_group(topic, &items))
            });
            return match led {
                Led::Done(Some(r)) => r,
                Led::Done(None) => Err(Error::new(ErrorCode::Internal, "publish returned no row")),
                Led::Parked(p) => Err(crate::nowait::park(crate::nowait::Parked::new(p, topic))),
                Led::Busy(_) => Err(crate::nowait::would_wait("a publish group being committed")),
                Led::WouldWait => Err(crate::nowait::would_wait("the publish's group")),
            };
        }
        if opts.expect_last_seq.is_some() {
            // A guarded publish stands alone: its condition is about the topic as it is.
            return self
                .append(
                    topic,
                    std::slice::from_ref(&item),
                    opts.expect_last_seq,
                    false,
                )
                .map_err(|s| s.error)?
                .pop()
                .ok_or_else(|| Error::new(ErrorCode::Internal, "publish returned no row"));
        }
        // Group commit: concurrent publishes to one topic through this handle join one
        // append (one CAS). Whoever holds the leader lock commits everything pending; the
        // others wait for their row, each answered only after the ref update.
        self.gatos
            .combiner(topic)
            .submit(item, std::time::Duration::ZERO, |items| {
                self.commit_group(topic, &items)
            })
            .unwrap_or_else(|| Err(Error::new(ErrorCode::Internal, "the publish group failed")))
    }

    /// Commits a group of publishes as one append and answers each, in order; if the group
    /// fails, retries its members one by one so one bad message fails only its own publish.
    fn commit_group(&self, topic: &Topic, items: &[Prepared]) -> Vec<Result<PublishRow>> {
        tracing::trace!(%topic, size = items.len(), "group commit");
        if items.is_empty() {
            // Nothing to write: a journal record of no message is one no reader accepts.
            return Vec::new();
        }
        // Plain publishes are acknowledged after one journal append (ADR 0046). A msg_id
        // needs the dedupe window, which reads committed messages: such publishes go
        // direct, except gatos's own job events and audit records, whose msg_id is their
        // action's commit id, emitted once per action (a duplicate can only come from
        // doctor's republish racing the emit, which at-least-once events allow).
        if self.gatos.journal_on()
            && (chain::is_signed_topic(topic) || items.iter().all(|i| i.msg_id.is_none()))
        {
            let journaled: Vec<super::journal::Item<'_>> = items
                .iter()
                .map(|i| super::journal::Item {
                    payload: &i.payload,
                    headers: i.headers.as_ref(),
                    msg_id: i.msg_id.as_deref(),
                })
                .collect();
            match self.append_journaled(topic, &journaled) {
                Ok(Some(rows)) => return answers(rows.into_iter().map(Ok), items.len()),
                Ok(None) => {}
                Err(e) => {
                    return items
                        .iter()
                        .map(|_| Err(Error::new(e.code(), e.to_string())))
                        .collect();
                }
            }
        }
        match self.append(topic, items, None, false) {
            Ok(rows) => answers(rows.into_iter().map(Ok), items.len()),
            Err(s) if items.len() == 1 => vec![Err(s.error)],
            Err(s) => {
                let landed = usize::try_from(s.landed).unwrap_or(0).min(s.rows.len());
                let mut out: Vec<Result<PublishRow>> =
                    s.rows.into_iter().take(landed).map(Ok).collect();
                for item in items.iter().skip(out.len()) {
                    out.push(
                        self.append(topic, std::slice::from_ref(item), None, false)
                            .map_err(|s| s.error)
                            .and_then(|mut rows| {
                                rows.pop().ok_or_else(|| {
                                    Error::new(ErrorCode::Internal, "publish returned no row")
                                })
                            }),
                    );
                }
                out
            }
        }
    }

    /// Publishes a stream of messages in chunks and calls `on_row` for each, in order.
    ///
    /// Each chunk is one pack and one CAS (plus one per rotation it crosses). Returns how
    /// many items landed. On failure the error carries `landed` (items that are in the
    /// topic, counting duplicates) so the caller can re-send from there.
    ///
    /// # Errors
    /// As [`Messages::publish`], plus the items' own errors.
    pub fn publish_batch<I>(
        &self,
        topic: &Topic,
        items: I,
        opts: &BatchOptions,
        mut on_row: impl FnMut(&PublishRow) -> Result<()>,
    ) -> Result<u64>
    where
        I: IntoIterator<Item = Result<BatchItem>>,
    {
        refuse_reserved(topic)?;
        // Every face's chunk is checked here (it was clamped without a word).
        if !(1..=MAX_CHUNK).contains(&opts.chunk) {
            return Err(Error::new(
                ErrorCode::InvalidInput,
                format!(
                    "chunk must be 1 to {MAX_CHUNK} messages, not {}",
                    opts.chunk
                ),
            )
            .with_detail("landed", 0));
        }
        let chunk_size = opts.chunk;
        let mut landed: u64 = 0;
        let mut expect = opts.expect_last_seq;
        let mut iter = items.into_iter();
        let partial = |e: Error, landed: u64| -> Error {
            if landed == 0 {
                e.with_detail("landed", 0)
            } else {
                e.context(format_args!(
                    "{landed} {} landed before this failure; re-send from item {}",
                    if landed == 1 { "message" } else { "messages" },
                    landed + 1
                ))
                .with_detail("landed", landed)
            }
        };
        loop {
            let mut chunk = Vec::with_capacity(chunk_size);
            let mut failure = None;
            for item in iter.by_ref() {
                match item.and_then(|i| prepare(i.payload, i.headers)) {
                    Ok(p) => chunk.push(p),
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
                if chunk.len() == chunk_size {
                    break;
                }
            }
            if failure.is_some() {
                // An item is bad: nothing of this chunk is written, so the count stays exact.
                return Err(partial(
                    failure.unwrap_or_else(|| Error::new(ErrorCode::Internal, "")),
                    landed,
                ));
            }
            if chunk.is_empty() {
                return Ok(landed);
            }
            match self.append(topic, &chunk, expect.take(), true) {
                Ok(rows) => {
                    // The whole chunk is in the topic now, whatever happens to its rows'
                    // report: a failing `on_row` (an output that failed) says so.
                    let written = landed + rows.len() as u64;
                    for row in &rows {
                        if let Err(e) = on_row(row) {
                            return Err(partial(e, written));
                        }
                    }
                    landed = written;
                }
                Err(s) => return Err(partial(s.error, landed + s.landed)),
            }
        }
    }

    fn append(
        &self,
        topic: &Topic,
        items: &[Prepared],
        expect: Option<u64>,
        batch: bool,
    ) -> Result<Vec<PublishRow>, Stopped> {
        if crate::nowait::active() {
            // The direct path takes the topic's lock and writes objects: it may wait.
            return Err(crate::nowait::would_wait("a publish that is not journaled").into());
        }
        let store = self.gatos.store();
        let node = self.gatos.node_id()?;
        let _guard = store
            .locks()
            .acquire(
                &[format!("messages.{topic}")],
                gatos_store::locks::DEFAULT_LOCK_TIMEOUT,
            )
            .map_err(gatos_store::Error::from)?;
        // Journaled publishes of the topic come first (ADR 0046).
        self.materialize_locked(topic)?;
        let started = Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            match self.try_append(topic, items, expect, batch, node) {
                Err(s)
                    if s.retryable
                        && s.landed == 0
                        && expect.is_none()
                        && started.elapsed() < RETRY_FOR =>
                {
                    let jitter = self.gatos.entropy().uniform(0.5, 1.5);
                    std::thread::sleep(pause.mul_f64(jitter));
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                other => return other,
            }
        }
    }

    fn try_append(
        &self,
        topic: &Topic,
        items: &[Prepared],
        expect: Option<u64>,
        batch: bool,
        node: Ulid,
    ) -> Result<Vec<PublishRow>, Stopped> {
        let store = self.gatos.store();
        let head_ref = names::message_head(topic);
        let head = store.read_ref(&head_ref)?;
        let mut reader = store.reader();
        let tail = match head {
            Some(h) => match self.gatos.cached_tail(topic, h) {
                Some(m) => Some(m),
                None => Some(chain::meta_in(&reader.commit(h)?, topic)?),
            },
            None => None,
        };
        let summary = self.summary(topic)?;
        if let Some(want) = expect {
            let at = tail.as_ref().map_or(summary.through, |m| m.seq);
            if at != want {
                return Err(Error::new(
                    ErrorCode::Conflict,
                    format!("topic '{topic}' is at seq {at}, not {want} (expect_last_seq)"),
                )
                .into());
            }
        }
        let (config, _) = self.gatos.topic_config(topic)?;
        let now = self.gatos.now();

        // Deduplicate against the window (through the index) and within this call.
        let mut dup_of: Vec<Option<Dup>> = vec![None; items.len()];
        if head.is_some() && items.iter().any(|i| i.msg_id.is_some()) {
            let target = index::Target {
                head,
                summary: summary.at,
                pruned_through: summary.through,
            };
            let window = self.gatos.settings().dedupe_window;
            // The whole window is read again from a rebuilt index when this one is torn:
            // nothing is decided from a partial answer, so a retry cannot publish twice.
            dup_of = self.with_view_from(
                topic,
                || index::open(store, topic, target, &[]).map(Some),
                |view| {
                    let mut found: Vec<Option<Dup>> = vec![None; items.len()];
                    let Some(view) = view else { return Ok(found) };
                    let mut blob = Vec::new();
                    let mut caches = self.gatos.msgid_caches();
                    let cache = caches.entry(topic.clone()).or_default();
                    for (i, item) in items.iter().enumerate() {
                        let Some(id) = &item.msg_id else { continue };
                        for seq in view.msgid_candidates(cache, msgid_hash(id), window)? {
                            let rec = view.record(seq)?;
                            reader.blob_into(rec.blob, &mut blob)?;
                            if EnvelopeRef::parse(&blob)
                                .map_err(Error::from)?
                                .msg_id()
                                .as_deref()
                                == Some(id.as_str())
                            {
                                found[i] = Some(Dup::Stored(PublishRow {
                                    ulid: rec.ulid,
                                    seq,
                                    topic: topic.clone(),
                                    content_id: Digest::of(&blob),
                                    commit: rec.commit,
                                    duplicate: true,
                                }));
                                break;
                            }
                        }
                    }
                    Ok(found)
                },
            )?;
        }
        let mut first_with: HashMap<&str, usize> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            if let (Some(id), None) = (&item.msg_id, &dup_of[i]) {
                match first_with.get(id.as_str()) {
                    Some(&j) => dup_of[i] = Some(Dup::Earlier(j)),
                    None => {
                        first_with.insert(id, i);
                    }
                }
            }
        }

        // Build the commits.
        let sealed_now = match &tail {
            Some(m) => store
                .read_ref(&names::message_sealed(
                    topic,
                    &segment_date(m.segment_id),
                    m.segment_id,
                ))?
                .is_some(),
            None => false,
        };
        // A pack pays off for real batches; tiny chunks go loose (compaction packs them).
        let as_pack = batch && items.len() >= MIN_PACKED_BATCH;
        let mut sink = if as_pack {
            Sink::Pack(store.pack_writer())
        } else {
            Sink::Loose(Box::new(store.writer()))
        };
        // The system topics' messages are signed by this node's key (ADR 0018).
        let signer = if chain::is_signed_topic(topic) || config.sign {
            self.gatos.keys().signing_key()?
        } else {
            None
        };
        let mut prev: Option<Meta> = tail.clone();
        let mut next_seq = tail.as_ref().map_or(summary.through, |m| m.seq) + 1;
        let mut parts: Vec<Part> = Vec::new();
        let mut known: Vec<Known> = Vec::with_capacity(items.len());
        let mut rows: Vec<Option<PublishRow>> = vec![None; items.len()];
        // A packed chunk's envelopes, blobs and trees are made first, on several threads;
        // the commits, which chain, follow here in order.
        let mut made = match &mut sink {
            Sink::Pack(w) => {
                let mut last = tail.as_ref().map(|m| m.ulid);
                let todo: Vec<(&Prepared, Ulid)> = items
                    .iter()
                    .zip(&dup_of)
                    .filter(|(_, dup)| dup.is_none())
                    .map(|(item, _)| {
                        let ulid = self.gatos.entropy().ulid(now, last);
                        last = Some(ulid);
                        (item, ulid)
                    })
                    .collect();
                let envelopes = make_envelopes(store, topic, &todo, w)?;
                // Refused before anything is written out.
                if let Some(m) = envelopes
                    .iter()
                    .find(|m| m.env.bytes.len() > MAX_ENVELOPE_BYTES)
                {
                    return Err(too_large(m.env.bytes.len()).into());
                }
                let made: Vec<Ready> = envelopes
                    .into_iter()
                    .map(|m| {
                        let len = m.env.bytes.len();
                        // The envelope's bytes become its blob without a copy.
                        w.put_hashed(gatos_store::objects::Kind::Blob, m.blob, m.env.bytes);
                        Ready {
                            ulid: m.ulid,
                            content_id: m.env.content_id,
                            len,
                            blob: m.blob,
                            tree: m.tree,
                        }
                    })
                    .collect();
                // The envelopes and trees, most of the pack, are written out on another
                // thread while the commits, which chain, are made here.
                w.write_ahead(made.len());
                Some(made.into_iter())
            }
            Sink::Loose(_) => None,
        };
        for (i, item) in items.iter().enumerate() {
            if dup_of[i].is_some() {
                continue;
            }
            let (ulid, content_id, size, stored) = match made.as_mut() {
                Some(made) => {
                    let m = made.next().ok_or_else(|| {
                        Stopped::from(Error::new(ErrorCode::Internal, "an envelope went missing"))
                    })?;
                    (m.ulid, m.content_id, m.len, Stored::Made(m.blob, m.tree))
                }
                None => {
                    let ulid = self
                        .gatos
                        .entropy()
                        .ulid(now, prev.as_ref().map(|p| p.ulid));
                    let env = envelope::build(ulid, topic, &item.payload, item.headers.as_ref());
                    (
                        ulid,
                        env.content_id,
                        env.bytes.len(),
                        Stored::Here(env.bytes),
                    )
                }
            };
            let len = size as u64;
            if size > MAX_ENVELOPE_BYTES {
                return Err(too_large(size).into());
            }
            let rotate = match &prev {
                None => false,
                Some(p) => {
                    (known.is_empty() && sealed_now)
                        || p.segment_seq >= config.max_messages
                        || p.segment_bytes.saturating_add(len) > config.max_bytes
                }
            };
            let append = chain::Append {
                topic,
                seq: next_seq,
                ulid,
                content_id,
                origin: node,
                time: now,
                signing: match &signer {
                    Some(k) => chain::Signing::Sign(k),
                    None => chain::Signing::None,
                },
            };
            let (meta, blob) = match &stored {
                Stored::Made(blob, tree) => chain::write_commit(
                    sink.objects(),
                    prev.as_ref(),
                    rotate,
                    &append,
                    *blob,
                    *tree,
                    size,
                )?,
                Stored::Here(bytes) => {
                    chain::write_append(sink.objects(), prev.as_ref(), rotate, &append, bytes)?
                }
            };
            let commit = meta.commit;
            match parts.last_mut() {
                Some(part) if !rotate => {
                    part.tip = commit;
                    part.count += 1;
                }
                _ => parts.push(Part {
                    rotate_from: if rotate {
                        prev.as_ref().map(Prev::from)
                    } else {
                        None
                    },
                    tip: commit,
                    count: 1,
                }),
            }
            known.push(Known {
                record: Record {
                    commit,
                    blob,
                    ulid,
                    len: u32::try_from(len).unwrap_or(u32::MAX),
                },
                msgid: item.msg_id.as_deref().map_or(0, msgid_hash),
                meta: meta.clone(),
            });
            rows[i] = Some(PublishRow {
                ulid,
                seq: next_seq,
                topic: topic.clone(),
                content_id,
                commit,
                duplicate: false,
            });
            prev = Some(meta);
            next_seq += 1;
        }
        let _keep = match sink {
            Sink::Loose(w) => {
                w.finish()?;
                None
            }
            Sink::Pack(w) => Some(w.finish()?),
        };

        // Move the refs, one recoverable step at a time.
        let opts = Options {
            message: format!("gatos: publish to {topic}"),
            ..Options::default()
        };
        let mut current = head;
        let mut landed_new = 0u64;
        let fail = |error: Error, landed_new: u64, retryable: bool| {
            let landed = count_landed(&dup_of, landed_new);
            let rows = (0..usize::try_from(landed).unwrap_or(0))
                .filter_map(|i| resolve_row(&dup_of, &rows, i))
                .collect();
            Stopped {
                error,
                landed,
                retryable,
                rows,
            }
        };
        for part in &parts {
            if let Some(p) = part.rotate_from {
                let sealed =
                    names::message_sealed(topic, &segment_date(p.segment_id), p.segment_id);
                match store.update_refs_locked(
                    &[Edit::create(sealed.clone(), p.commit)],
                    &opts,
                    false,
                ) {
                    Ok(applied) => {
                        if applied.first() == Some(&Applied::Changed) {
                            tracing::info!(%topic, segment = %p.segment_id, messages = p.segment_seq, bytes = p.segment_bytes, "segment sealed");
                        }
                    }
                    Err(gatos_store::Error::CasMismatch { actual, .. }) => {
                        let e = Error::new(
                            ErrorCode::Conflict,
                            format!(
                                "sealed segment ref {sealed} points at {}, not at the topic head {}; run `git gatos doctor`",
                                actual.map_or_else(|| "nothing".to_owned(), |a| a.to_string()),
                                p.commit
                            ),
                        );
                        return Err(fail(e, landed_new, false));
                    }
                    Err(e) => return Err(fail(e.into(), landed_new, false)),
                }
            }
            match store.update_refs_locked(
                &[Edit::update(head_ref.clone(), current, part.tip)],
                &opts,
                false,
            ) {
                Ok(_) => {}
                Err(gatos_store::Error::CasMismatch { actual, .. }) => {
                    let e = Error::new(
                        ErrorCode::Conflict,
                        format!(
                            "topic '{topic}' head moved to {} while publishing (another writer outside gatos?)",
                            actual.map_or_else(|| "nothing".to_owned(), |a| a.to_string())
                        ),
                    );
                    return Err(fail(e, landed_new, true));
                }
                Err(e) => {
                    let retryable =
                        e.is_cas_mismatch() || matches!(e, gatos_store::Error::Locked { .. });
                    return Err(fail(e.into(), landed_new, retryable));
                }
            }
            current = Some(part.tip);
            landed_new += part.count;
        }
        drop(_keep);

        // Keep the position index in step (best effort: readers rebuild it if this fails).
        if current != head {
            let target = index::Target {
                head: current,
                summary: summary.at,
                pruned_through: summary.through,
            };
            if let Err(e) = index::open(store, topic, target, &known) {
                tracing::warn!(%topic, error = %e, "could not update the position index; readers will rebuild it");
            }
        }
        if let (Some(last), true) = (known.last(), current != head) {
            self.gatos.cache_tail(topic, last.meta.clone());
        }
        let seq_before = tail.as_ref().map_or(summary.through, |m| m.seq);
        self.gatos.after_append(seq_before, next_seq - 1);

        // Fill in duplicates now that every new row is known.
        let mut out = Vec::with_capacity(items.len());
        for i in 0..items.len() {
            let row = resolve_row(&dup_of, &rows, i).ok_or_else(|| {
                Stopped::from(Error::new(ErrorCode::Internal, "a batch row went missing"))
            })?;
            out.push(row);
        }
        Ok(out)
    }
}

/// A message's envelope, its blob's id and its tree (in a pack being written).
struct Made {
    ulid: Ulid,
    env: envelope::Envelope,
    blob: Oid,
    tree: Oid,
}

/// The error of a message whose envelope is `len` bytes, over the limit.
fn too_large(len: usize) -> Error {
    Error::new(
        ErrorCode::PayloadTooLarge,
        format!("message of {len} bytes is over the {MAX_ENVELOPE_BYTES}-byte limit"),
    )
}

/// A made message whose envelope is already its blob in the pack being written.
struct Ready {
    ulid: Ulid,
    content_id: Digest,
    /// The envelope's length in bytes.
    len: usize,
    blob: Oid,
    tree: Oid,
}

/// Where a message's envelope blob and tree come from.
enum Stored {
    /// Made ahead ([`Ready`]): the blob and the tree.
    Made(Oid, Oid),
    /// Written with its commit: the envelope's bytes.
    Here(Vec<u8>),
}

/// Chunks with fewer messages than this make their envelopes on the calling thread alone.
const PARALLEL_FROM: usize = 128;

/// Threads at most that make a chunk's envelopes.
const MAX_ENVELOPE_THREADS: usize = 4;

/// Makes the envelopes of `todo` (each message with its ULID), their blobs' ids and their
/// trees, adds the trees to `w` in `todo`'s order and returns the envelopes in that order
/// (the caller adds each envelope's bytes as its blob).
///
/// They depend on their message alone, so a large chunk is cut into one part per CPU (at
/// most [`MAX_ENVELOPE_THREADS`]): about a third of a batch's time, on a machine's other
/// cores. A thread that cannot be started leaves its part to this one.
fn make_envelopes(
    store: &gatos_store::Store,
    topic: &Topic,
    todo: &[(&Prepared, Ulid)],
    w: &mut gatos_store::pack::PackWriter<'_>,
) -> Result<Vec<Made>> {
    let run = |part: &[(&Prepared, Ulid)]| -> Result<(Vec<Made>, gatos_store::pack::Hashed<'_>)> {
        let mut hashed = store.hashed();
        let mut made = Vec::with_capacity(part.len());
        for &(item, ulid) in part {
            let env = envelope::build(ulid, topic, &item.payload, item.headers.as_ref());
            let blob = gatos_store::objects::hash(gatos_store::objects::Kind::Blob, &env.bytes)?;
            let tree = chain::envelope_tree(&mut hashed, blob)?;
            made.push(Made {
                ulid,
                env,
                blob,
                tree,
            });
        }
        Ok((made, hashed))
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(MAX_ENVELOPE_THREADS);
    let results = if threads < 2 || todo.len() < PARALLEL_FROM {
        vec![run(todo)]
    } else {
        std::thread::scope(|s| {
            let mut parts = todo.chunks(todo.len().div_ceil(threads));
            let mine = parts.next().unwrap_or(&[]);
            let others: Vec<_> = parts
                .map(|part| {
                    let spawned = std::thread::Builder::new()
                        .name("gatos-envelopes".into())
                        .spawn_scoped(s, || run(part));
                    (part, spawned)
                })
                .collect();
            let mut results = vec![run(mine)];
            for (part, spawned) in others {
                results.push(match spawned {
                    Ok(handle) => handle.join().unwrap_or_else(|_| {
                        Err(Error::new(
                            ErrorCode::Internal,
                            "a thread making envelopes failed",
                        ))
                    }),
                    Err(_) => run(part),
                });
            }
            results
        })
    };
    let mut all = Vec::with_capacity(todo.len());
    for r in results {
        let (made, hashed) = r?;
        w.append(hashed);
        all.extend(made);
    }
    Ok(all)
}

/// The row answering item `i`: its own, or the one it duplicates.
fn resolve_row(dups: &[Option<Dup>], rows: &[Option<PublishRow>], i: usize) -> Option<PublishRow> {
    match dups.get(i)? {
        None => rows.get(i)?.clone(),
        Some(Dup::Stored(r)) => Some(r.clone()),
        Some(Dup::Earlier(j)) => rows.get(*j)?.clone().map(|r| PublishRow {
            duplicate: true,
            ..r
        }),
    }
}

#[derive(Debug, Clone)]
enum Dup {
    /// Already in the topic.
    Stored(PublishRow),
    /// The same msg_id earlier in this call.
    Earlier(usize),
}

/// Items that landed when the first `landed_new` new messages did: the longest prefix of
/// items each of which is stored (a new message that landed, a duplicate of a stored one,
/// or a duplicate of an earlier item that landed).
fn count_landed(dups: &[Option<Dup>], landed_new: u64) -> u64 {
    let mut flags: Vec<bool> = Vec::with_capacity(dups.len());
    let mut k = 0u64;
    for d in dups {
        let ok = match d {
            Some(Dup::Stored(_)) => true,
            Some(Dup::Earlier(j)) => flags.get(*j).copied().unwrap_or(false),
            None => {
                k += 1;
                k <= landed_new
            }
        };
        flags.push(ok);
    }
    flags.iter().take_while(|x| **x).count() as u64
}

/// The `gatos.*` topics are written by gatos itself only (job events, the audit trail): a
/// publish from a user or a client could forge an audit record.
fn refuse_reserved(topic: &Topic) -> Result<()> {
    if chain::is_signed_topic(topic) {
        return Err(Error::new(
            ErrorCode::Forbidden,
            format!("topic '{topic}' is reserved: gatos.* topics are written by gatos itself"),
        ));
    }
    Ok(())
}
