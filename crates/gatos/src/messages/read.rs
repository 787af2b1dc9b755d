//! Reading after a cursor, in time proportional to the page (DESIGN §4).

use std::sync::Arc;
use std::time::{Duration, Instant};

use gatos_store::refs::names;
use gatos_types::envelope::EnvelopeRef;
use gatos_types::wire::{Gap, MessageRow, ReadPage};
use gatos_types::{Digest, ErrorCode, Oid, Timestamp, Topic, Ulid};
use serde::Serialize;
use serde_json::value::RawValue;

use super::index::{self, View};
use super::{MAX_PAGE, Messages};
use crate::error::{Error, Result};

/// Where a read starts: after a message, after a position, at the start or at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// From the first retained message.
    Start,
    /// After the last message (only new messages; for follow and subscribe).
    End,
    /// After the message with this ULID.
    Ulid(Ulid),
    /// After this position (0: from the start, reporting a gap if the start was pruned).
    Seq(u64),
    /// From the first message, in `Seq` order, whose ULID time is at or after this time;
    /// everything after it follows in `Seq` order. ULID times are not monotonic along
    /// `Seq` across nodes (a message synced from a node that was offline keeps its older
    /// time), so nothing made at or after the time is missed, while some made before it
    /// may follow.
    Time(Timestamp),
}

/// Options of one page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    /// Where to start.
    pub since: Cursor,
    /// At most this many messages (1 to 10,000).
    pub limit: u64,
}

/// One message as read, borrowed from the read buffer (serialises exactly as
/// [`MessageRow`]).
#[derive(Debug, Serialize)]
pub struct MessageView<'a> {
    /// The message ULID.
    pub ulid: Ulid,
    /// Its position.
    pub seq: u64,
    /// Its topic.
    pub topic: &'a Topic,
    /// `blake3:` of its envelope.
    pub content_id: Digest,
    /// Its commit.
    pub commit: Oid,
    /// Its payload, canonical JSON.
    pub payload: &'a RawValue,
    /// Its headers, when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<&'a RawValue>,
}

impl MessageView<'_> {
    /// Returns what the message counts against a page's byte cap: its payload and headers
    /// as they are written out, plus the fixed fields of a row.
    pub fn page_bytes(&self) -> u64 {
        let own = self.payload.get().len() + self.headers.map_or(0, |h| h.get().len());
        u64::try_from(own)
            .unwrap_or(u64::MAX)
            .saturating_add(ROW_OVERHEAD)
    }

    /// Copies the view into an owned row.
    pub fn to_row(&self) -> MessageRow {
        MessageRow {
            ulid: self.ulid,
            seq: self.seq,
            topic: self.topic.clone(),
            content_id: self.content_id,
            commit: self.commit,
            payload: self.payload.to_owned(),
            headers: self.headers.map(ToOwned::to_owned),
        }
    }
}

/// How a scan ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanEnd {
    /// The last message passed to the callback.
    pub last: Option<(u64, Ulid)>,
    /// Messages passed to the callback.
    pub count: u64,
    /// True when the scan reached the topic's last message.
    pub end: bool,
    /// Pruned positions the cursor skipped.
    pub gap: Option<Gap>,
    /// The cursor to resume from.
    pub next_since: Option<Ulid>,
    /// The topic head the scan read.
    pub head: Option<Oid>,
    /// The topic's last seq when the scan started.
    pub last_seq: u64,
}

/// One message of a walked chain.
#[derive(Debug, Clone, Copy)]
struct Link {
    seq: u64,
    commit: Oid,
    ulid: Ulid,
}

/// Chains walked at pinned states, kept at most (ADR 0044 §1: an LRU of 4).
const PINNED_CHAINS: usize = 4;

/// The chains walked at pinned states: `(git dir, head) → links`, newest last.
type Chains = std::collections::VecDeque<((std::path::PathBuf, Oid), Arc<Vec<Link>>)>;
static CHAINS: std::sync::Mutex<Chains> = std::sync::Mutex::new(Chains::new());

/// Messages read per index access.
const RECORDS_PER_READ: u64 = 512;

/// The bytes of a row besides its payload and headers (ULID, seq, topic, content id,
/// commit, names and punctuation), rounded up.
const ROW_OVERHEAD: u64 = 256;

/// The default byte cap of a page: a page ends once its messages reach it (the message
/// that crosses it is the page's last, so a page always makes progress), with `end:
/// false` when more messages follow.
pub const DEFAULT_MAX_PAGE_BYTES: u64 = 4 * 1024 * 1024;

struct Start {
    after: u64,
    gap: Option<Gap>,
    cursor_ulid: Option<Ulid>,
}

/// A page being read: its rows until their bytes reach the cap (the row that crosses it is
/// the page's last), for the live and the pinned read alike.
struct Page {
    messages: Vec<MessageRow>,
    bytes: u64,
    max_bytes: u64,
}

impl Page {
    /// An empty page, after checking the limit (1 to [`MAX_PAGE`]).
    fn new(opts: &ReadOptions, max_bytes: u64) -> Result<Page> {
        if opts.limit == 0 || opts.limit > MAX_PAGE {
            return Err(Error::new(
                ErrorCode::InvalidInput,
                format!("limit must be between 1 and {MAX_PAGE}"),
            ));
        }
        Ok(Page {
            messages: Vec::with_capacity(usize::try_from(opts.limit.min(1024)).unwrap_or(1024)),
            bytes: 0,
            max_bytes,
        })
    }

    /// Adds a message; false once the page is full by bytes.
    fn push(&mut self, m: &MessageView<'_>) -> bool {
        self.messages.push(m.to_row());
        self.bytes = self.bytes.saturating_add(m.page_bytes());
        self.bytes < self.max_bytes
    }

    fn finish(self, end: &ScanEnd) -> ReadPage {
        ReadPage {
            messages: self.messages,
            next_since: end.next_since,
            end: end.end,
            gap: end.gap,
        }
    }
}

impl Messages<'_> {
    /// Reads one page (at most 10,000 messages).
    ///
    /// # Errors
    /// `NotFound` for a ULID that is neither in the topic nor in its pruned history;
    /// `InvalidInput` for a limit of 0 or over 10,000.
    pub fn read(&self, topic: &Topic, opts: &ReadOptions) -> Result<ReadPage> {
        self.read_capped(topic, opts, DEFAULT_MAX_PAGE_BYTES)
    }

    /// Reads one page of at most `opts.limit` messages that ends once its messages reach
    /// `max_bytes` (see [`MessageView::page_bytes`]; the message that crosses the cap is
    /// the page's last, so a page holds at least one message when one follows the
    /// cursor). A page that ended early has `end: false`.
    ///
    /// # Errors
    /// As [`Messages::read`].
    pub fn read_capped(
        &self,
        topic: &Topic,
        opts: &ReadOptions,
        max_bytes: u64,
    ) -> Result<ReadPage> {
        let mut page = Page::new(opts, max_bytes)?;
        let end = self.scan(topic, &opts.since, Some(opts.limit), |m| Ok(page.push(m)))?;
        Ok(page.finish(&end))
    }

    /// Returns the position of a ULID among the retained messages of a topic.
    ///
    /// # Errors
    /// When the index cannot be read.
    pub fn position(&self, topic: &Topic, ulid: Ulid) -> Result<Option<(u64, Oid)>> {
        self.with_view(topic, |view| {
            let Some(view) = view else { return Ok(None) };
            match view.find(ulid)? {
                Some(seq) => Ok(Some((seq, view.record(seq)?.commit))),
                None => Ok(None),
            }
        })
    }

    fn resolve(&self, topic: &Topic, view: Option<&View>, since: &Cursor) -> Result<Start> {
        let (first, last) = view.map_or((1, 0), |v| (v.first_seq(), v.last_seq()));
        let first = first.max(self.summary(topic)?.through.saturating_add(1));
        // Checked arithmetic: a cursor is client input, and `u64::MAX` is a valid one.
        let gap_from = |after: u64| {
            after
                .checked_add(1)
                .filter(|from| *from < first)
                .map(|from| Gap {
                    from_seq: from,
                    to_seq: first - 1,
                })
        };
        Ok(match *since {
            Cursor::Start => Start {
                after: first - 1,
                gap: None,
                cursor_ulid: None,
            },
            Cursor::End => Start {
                after: last.max(first - 1),
                gap: None,
                cursor_ulid: match view {
                    Some(v) if last >= first => Some(v.record(last)?.ulid),
                    _ => None,
                },
            },
            Cursor::Seq(n) => {
                let cursor_ulid = match view {
                    Some(v) if n >= first && n <= last => Some(v.record(n)?.ulid),
                    _ => None,
                };
                let gap = gap_from(n);
                Start {
                    after: n.max(first - 1),
                    gap,
                    cursor_ulid,
                }
            }
            Cursor::Time(t) => {
                let min = Ulid::from_parts(u64::try_from(t.as_millis()).unwrap_or(0), 0);
                // A pruned message at or after the time is a gap: it can no longer be read.
                let pruned = self.pruned_from(topic, min)?;
                match (
                    pruned,
                    view.map(|v| v.first_from(min)).transpose()?.flatten(),
                ) {
                    (Some(from), _) => Start {
                        after: first - 1,
                        gap: gap_from(from.saturating_sub(1)),
                        cursor_ulid: None,
                    },
                    (None, Some(seq)) => Start {
                        after: seq.saturating_sub(1).max(first - 1),
                        gap: None,
                        cursor_ulid: None,
                    },
                    (None, None) => Start {
                        after: last.max(first - 1),
                        gap: None,
                        cursor_ulid: None,
                    },
                }
            }
            Cursor::Ulid(u) => {
                if let Some(seq) = view.map(|v| v.find(u)).transpose()?.flatten() {
                    Start {
                        after: seq,
                        gap: None,
                        cursor_ulid: Some(u),
                    }
                } else if let Some(seq) = self.pruned_position(topic, u)? {
                    Start {
                        after: first - 1,
                        gap: gap_from(seq),
                        cursor_ulid: Some(u),
                    }
                } else {
                    return Err(Error::new(
                        ErrorCode::NotFound,
                        format!(
                            "message {u} is not in topic '{topic}' (nor in its pruned history)"
                        ),
                    ));
                }
            }
        })
    }

    /// Calls `f` for each message after the cursor, oldest first, until `limit` messages,
    /// the end of the topic, or `f` returns `false`.
    ///
    /// Memory stays flat however long the topic: one envelope at a time, or a few chunks
    /// of them when a second thread reads ahead (more than 1,024 messages to read).
    ///
    /// # Errors
    /// As [`Messages::read`], plus whatever `f` returns.
    pub fn scan(
        &self,
        topic: &Topic,
        since: &Cursor,
        limit: Option<u64>,
        mut f: impl FnMut(&MessageView<'_>) -> Result<bool>,
    ) -> Result<ScanEnd> {
        // A torn index met before the first message is passed on is rebuilt and the scan
        // starts again; after that, `scan_view` makes it final.
        self.with_view(topic, |view| {
            self.scan_view(topic, view, since, limit, None, &mut f)
        })
    }

    /// [`Messages::read_capped`] at the refs of `src` (ADR 0044): the messages up to the
    /// topic's head there. The position index is opened as a live read opens it (caught up
    /// to the current head, at or past the pinned one) and capped at the pinned head's
    /// position. When the tail was rewritten since (a sync re-append), the pinned head is
    /// no longer on the index: the state's own chain is walked from its head instead (its
    /// commits: parents and `Prev-Segment`, down to the positions pruned at the state),
    /// once per head for the last four heads, and read from there.
    ///
    /// # Errors
    /// As [`Messages::read`]; `NotFound` for a ULID cursor not in the chain at the state.
    pub fn read_in(
        &self,
        src: &dyn crate::refs::RefSource,
        topic: &Topic,
        opts: &ReadOptions,
        max_bytes: u64,
    ) -> Result<ReadPage> {
        let mut page = Page::new(opts, max_bytes)?;
        let Some(pinned) = src.read(names::message_head(topic).as_str())? else {
            return Ok(ReadPage {
                messages: Vec::new(),
                next_since: None,
                end: true,
                gap: None,
            });
        };
        let cap = self.seq_of(topic, pinned)?;
        let end = self.with_view(topic, |view| {
            page.messages.clear();
            page.bytes = 0;
            let on_index = match view {
                Some(v) if v.last_seq() >= cap => v.record(cap)?.commit == pinned,
                _ => false,
            };
            if !on_index {
                return Ok(None);
            }
            self.scan_view(
                topic,
                view,
                &opts.since,
                Some(opts.limit),
                Some(cap),
                &mut |m| Ok(page.push(m)),
            )
            .map(Some)
        })?;
        let end = match end {
            Some(end) => end,
            None => {
                // The tail was rewritten after the state was taken (a sync re-append):
                // the state's own chain, walked from its head (ADR 0044 §1).
                page.messages.clear();
                page.bytes = 0;
                let floor = self.summary_in(src, topic)?.through;
                let chain = self.pinned_chain(topic, pinned, floor)?;
                self.scan_chain(topic, &chain, &opts.since, opts.limit, &mut |m| {
                    Ok(page.push(m))
                })?
            }
        };
        Ok(page.finish(&end))
    }

    /// The messages of the chain ending at `pinned`, oldest first, down to the first
    /// after `floor` (the positions pruned at the state) or the first whose commit can
    /// no longer be read. Kept for the last [`PINNED_CHAINS`] heads walked, process-wide,
    /// so paging a rewritten topic at a state walks it once.
    fn pinned_chain(&self, topic: &Topic, pinned: Oid, floor: u64) -> Result<Arc<Vec<Link>>> {
        let key = (self.gatos.git_dir().to_path_buf(), pinned);
        {
            let chains = CHAINS
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((_, c)) = chains.iter().find(|(k, _)| *k == key) {
                return Ok(c.clone());
            }
        }
        let mut reader = self.gatos.store().reader();
        let mut out: Vec<Link> = Vec::new();
        let mut next = Some(pinned);
        while let Some(commit) = next {
            let Ok(c) = reader.commit(commit) else {
                // Pruned and collected: the chain at the state starts after it.
                break;
            };
            let meta = super::chain::meta(&c)?;
            if meta.seq <= floor {
                break;
            }
            out.push(Link {
                seq: meta.seq,
                commit,
                ulid: meta.ulid,
            });
            next = meta.prev();
        }
        out.reverse();
        tracing::debug!(%topic, %pinned, messages = out.len(), "walked a rewritten topic's chain at a pinned state");
        let chain = Arc::new(out);
        let mut chains = CHAINS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        chains.push_back((key, chain.clone()));
        while chains.len() > PINNED_CHAINS {
            chains.pop_front();
        }
        Ok(chain)
    }

    /// [`Messages::scan_view`] over a walked chain (oldest first): after `since`, at most
    /// `limit`, ending at the chain's head.
    fn scan_chain(
        &self,
        topic: &Topic,
        chain: &[Link],
        since: &Cursor,
        limit: u64,
        f: &mut impl FnMut(&MessageView<'_>) -> Result<bool>,
    ) -> Result<ScanEnd> {
        let first = chain.first().map_or(1, |l| l.seq);
        let last = chain.last().map_or(0, |l| l.seq);
        // The index in `chain` of the first message to return.
        let from = match *since {
            Cursor::Start => 0,
            Cursor::End => chain.len(),
            Cursor::Seq(n) => chain.partition_point(|l| l.seq <= n),
            Cursor::Ulid(u) => match chain.iter().position(|l| l.ulid == u) {
                Some(i) => i + 1,
                None => {
                    return Err(Error::new(
                        ErrorCode::NotFound,
                        format!("no message {u} in topic '{topic}' at this state"),
                    )
                    .with_detail("topic", topic.as_str()));
                }
            },
            Cursor::Time(t) => {
                let min = Ulid::from_parts(u64::try_from(t.as_millis()).unwrap_or(0), 0);
                chain
                    .iter()
                    .position(|l| l.ulid >= min)
                    .unwrap_or(chain.len())
            }
        };
        let gap = match *since {
            Cursor::Seq(n) if n.saturating_add(1) < first && first > 1 => Some(Gap {
                from_seq: n.saturating_add(1),
                to_seq: first - 1,
            }),
            _ => None,
        };
        let mut out = ScanEnd {
            last: None,
            count: 0,
            end: from >= chain.len(),
            gap,
            next_since: from
                .checked_sub(1)
                .and_then(|i| chain.get(i))
                .map(|l| l.ulid),
            head: chain.last().map(|l| l.commit),
            last_seq: last,
        };
        let mut reader = self.gatos.store().bulk_reader();
        for l in chain
            .iter()
            .skip(from)
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
        {
            let c = reader.commit(l.commit)?;
            let buf = reader
                .file(c.tree, super::chain::ENVELOPE_PATH)?
                .ok_or_else(|| {
                    Error::new(
                        ErrorCode::InvalidEnvelope,
                        format!("message commit {} has no envelope", l.commit),
                    )
                })?;
            let env = EnvelopeRef::parse(&buf)?;
            let m = MessageView {
                ulid: l.ulid,
                seq: l.seq,
                topic,
                content_id: Digest::of(&buf),
                commit: l.commit,
                payload: env.payload,
                headers: env.headers,
            };
            let go_on = f(&m)?;
            out.count += 1;
            out.last = Some((l.seq, l.ulid));
            out.next_since = Some(l.ulid);
            out.end = l.seq >= last;
            if !go_on {
                break;
            }
        }
        Ok(out)
    }

    /// The position of a topic's message commit (its `Seq` trailer).
    fn seq_of(&self, topic: &Topic, commit: Oid) -> Result<u64> {
        let c = self.gatos.store().reader().commit(commit)?;
        c.trailers()
            .get(gatos_types::trailers::keys::SEQ)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::InvalidEnvelope,
                    format!("head commit {commit} of topic '{topic}' has no Seq"),
                )
            })
    }

    fn scan_view(
        &self,
        topic: &Topic,
        view: Option<&View>,
        since: &Cursor,
        limit: Option<u64>,
        cap: Option<u64>,
        f: &mut impl FnMut(&MessageView<'_>) -> Result<bool>,
    ) -> Result<ScanEnd> {
        let store = self.gatos.store();
        // The view describes the head as it was read (none: no messages).
        let head = view.and_then(View::tip);
        let start = self.resolve(topic, view, since)?;
        // A pinned read ends at the pinned head's position.
        let last = view.map_or(0, View::last_seq).min(cap.unwrap_or(u64::MAX));
        let stop = match limit {
            Some(l) => last.min(start.after.saturating_add(l)),
            None => last,
        };
        let mut out = ScanEnd {
            last: None,
            count: 0,
            end: start.after >= last,
            gap: start.gap,
            next_since: start.cursor_ulid,
            head,
            last_seq: last,
        };
        let Some(view) = view else { return Ok(out) };
        // Nothing comes after the last position there can be.
        let Some(mut seq) = start.after.checked_add(1) else {
            return Ok(out);
        };
        let ahead = if stop >= seq && stop - seq >= READ_AHEAD_FROM {
            Helper::take()
        } else {
            None
        };
        // A thread that cannot be started (`None`: nothing was read) leaves the loop below.
        let ahead = match ahead {
            Some(_helper) => self.scan_ahead(topic, view, seq, stop, &mut out, f)?,
            None => None,
        };
        if let Some(went_on) = ahead {
            if !went_on {
                return Ok(out);
            }
        } else {
            let mut reader = store.bulk_reader();
            let mut buf = Vec::with_capacity(1024);
            while seq <= stop {
                let n = RECORDS_PER_READ.min(stop - seq + 1);
                let records = view
                    .records(seq, n)
                    .map_err(|e| index::settled(e, out.count))?;
                if records.is_empty() {
                    break;
                }
                for rec in records {
                    reader.blob_into(rec.blob, &mut buf)?;
                    let id = Digest::of(&buf);
                    if !deliver(topic, &mut out, seq, &rec, &buf, id, f)? {
                        return Ok(out);
                    }
                    seq += 1;
                }
            }
        }
        if out.count > 0 && !view.is_current() {
            // A sync rewrote the tail while we read: what we returned was true of the head
            // we started from; the next read starts from the rewritten tail.
            tracing::debug!(%topic, "index generation changed during a read");
        }
        Ok(out)
    }

    /// The loop of [`Messages::scan_view`] from `seq` to `stop` with a second thread
    /// reading ahead: it reads the index and looks up each envelope, a chunk at a time
    /// and at most [`AHEAD_CHUNKS`] chunks ahead, while this thread hashes, parses,
    /// checks and hands over the messages in order, as the loop does.
    ///
    /// The messages, their order and what `out` says are the loop's. An envelope that
    /// cannot be read or is not the one the index names fails the scan at that message,
    /// as in the loop; an index that cannot be read fails it after the messages of the
    /// index reads before (of up to [`AHEAD_MOST`] records; the loop's are runs of
    /// [`RECORDS_PER_READ`]), and the first read is at least such a run. What the
    /// helper read past the message where `f` stopped is dropped (it stops at the next
    /// envelope). Returns `Some(false)` when `f` stopped, `None` when the thread could not
    /// be started (nothing was read).
    fn scan_ahead(
        &self,
        topic: &Topic,
        view: &View,
        mut seq: u64,
        stop: u64,
        out: &mut ScanEnd,
        f: &mut impl FnMut(&MessageView<'_>) -> Result<bool>,
    ) -> Result<Option<bool>> {
        let store = self.gatos.store();
        let from = seq;
        let gone = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::sync_channel(AHEAD_CHUNKS);
            // Chunks handed over go back to the helper, which fills them again.
            let (back, spent) = std::sync::mpsc::channel();
            let gone = &gone;
            let helper = std::thread::Builder::new()
                .name("gatos-read-ahead".to_owned())
                .spawn_scoped(s, move || {
                    read_ahead(store, view, from, stop, &tx, &spent, gone);
                });
            if helper.is_err() {
                return Ok(None);
            }
            // However this closure is left (a return, an error, a panic in `f`), the helper
            // stops at its next envelope, and its next send fails since `rx` is dropped.
            let _stop = Stop(gone);
            for ahead in rx {
                let mut chunk = match ahead {
                    Ahead::Read(chunk) => chunk,
                    Ahead::Records(e) => return Err(index::settled(e, out.count)),
                    Ahead::Blob(e) => return Err(e),
                };
                for (i, rec) in chunk.records.iter().enumerate() {
                    let buf = &chunk.bytes[chunk.ends[i]..chunk.ends[i + 1]];
                    if !deliver(topic, out, seq, rec, buf, Digest::of(buf), f)? {
                        return Ok(Some(false));
                    }
                    seq += 1;
                }
                chunk.bytes.clear();
                chunk.ends.clear();
                let _ = back.send(chunk);
            }
            Ok(Some(true))
        })
    }
}

/// Tells the reading-ahead thread, when dropped, that its reader is gone.
struct Stop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Messages left to read from which a read of the index goes on with a second thread
/// reading ahead: below two chunks, starting the thread costs more than it saves.
const READ_AHEAD_FROM: u64 = 2 * RECORDS_PER_READ;

/// Chunks the reading-ahead thread may have read and not yet handed over.
const AHEAD_CHUNKS: usize = 2;

/// Messages in the reading-ahead thread's first chunk; each next one is twice as large,
/// up to [`AHEAD_MOST`]: the first messages come soon, and later hand-overs, each of which
/// may wake the other thread, are fewer.
const AHEAD_FIRST: u64 = 256;

/// Messages in a chunk at most.
const AHEAD_MOST: u64 = 1024;

/// Bytes of envelopes in a chunk at most (a chunk holds at least one message, however
/// large): what the helper reads ahead is at most about `AHEAD_CHUNKS + 2` times this, or
/// as many of the largest envelopes when they are larger.
/// Measured on the project VM, chunks of at most 256 KiB read 100,000 messages faster
/// than chunks of 1 MiB (likely because a chunk is still in the CPU's cache when the
/// reader takes it), with 6 MiB less resident memory.
const AHEAD_BYTES: usize = 1 << 18;

/// A read's right to a reading-ahead thread. With more than one CPU to run on, there are
/// at most as many as CPUs, for all reads of the process together: more would not read
/// faster, and each holds up to a few chunks in memory (in gatosd, per concurrent read).
/// A read that gets none reads on its own thread.
struct Helper;

/// Reading-ahead threads running in this process.
static HELPERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Helper {
    fn take() -> Option<Helper> {
        use std::sync::atomic::Ordering;
        static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        let cpus =
            *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from));
        HELPERS
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (cpus > 1 && n < cpus).then_some(n + 1)
            })
            .ok()
            .map(|_| Helper)
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        HELPERS.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// What the reading-ahead thread hands over, in order.
enum Ahead {
    /// The next messages.
    Read(Chunk),
    /// The index failed at the next message (`view.records`'s error).
    Records(Error),
    /// The next message's envelope could not be read.
    Blob(Error),
}

/// Consecutive messages read ahead: envelope `i` is `bytes[ends[i]..ends[i + 1]]`.
struct Chunk {
    records: Vec<index::Record>,
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

/// The reading-ahead thread of [`Messages::scan_ahead`]: reads the index and the
/// envelopes from `seq` to `stop` into chunks (taken back from `spent` when there are
/// some), until done, failed, or the reader is gone.
fn read_ahead(
    store: &gatos_store::Store,
    view: &View,
    mut seq: u64,
    stop: u64,
    tx: &std::sync::mpsc::SyncSender<Ahead>,
    spent: &std::sync::mpsc::Receiver<Chunk>,
    gone: &std::sync::atomic::AtomicBool,
) {
    let mut reader = store.bulk_reader();
    let mut buf = Vec::with_capacity(1024);
    let mut size = AHEAD_FIRST;
    // Records read from the index and not yet in a chunk, and the next position to read.
    let mut carry: Vec<index::Record> = Vec::new();
    while !carry.is_empty() || seq <= stop {
        if carry.is_empty() {
            // At least a run of the loop's size: damage in the first run is met before any
            // message went out, so the read is retried on a rebuilt index, as in the loop.
            let n = size.max(RECORDS_PER_READ).min(stop - seq + 1);
            match view.records(seq, n) {
                Ok(records) if records.is_empty() => return,
                Ok(records) => {
                    seq += records.len() as u64;
                    carry = records;
                }
                Err(e) => {
                    let _ = tx.send(Ahead::Records(e));
                    return;
                }
            }
        }
        // The next chunk: `size` messages, at most AHEAD_BYTES of envelopes (at least one).
        let mut bytes = 0;
        let take = carry
            .iter()
            .take(usize::try_from(size).unwrap_or(usize::MAX))
            .position(|r| {
                bytes += r.len as usize;
                bytes > AHEAD_BYTES
            })
            .map_or_else(
                || carry.len().min(usize::try_from(size).unwrap_or(usize::MAX)),
                |over| over.max(1),
            );
        let rest = carry.split_off(take);
        let records = std::mem::replace(&mut carry, rest);
        size = (size * 2).min(AHEAD_MOST);
        // Room for the envelopes' lengths as the index gives them, but no more than a
        // chunk's bytes: a damaged length (its record checksummed all the same) must not
        // make a huge allocation; the envelopes' real bytes grow the buffer as they come.
        let bytes = records
            .iter()
            .map(|r| r.len as usize)
            .fold(0, usize::saturating_add)
            .min(AHEAD_BYTES);
        let mut chunk = spent.try_recv().unwrap_or_else(|_| Chunk {
            records: Vec::new(),
            bytes: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(records.len() + 1),
        });
        chunk.records.clear();
        chunk.records.reserve(records.len());
        chunk.bytes.reserve(bytes);
        chunk.ends.push(0);
        let mut failed = None;
        for rec in records {
            if gone.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            if let Err(e) = reader.blob_into(rec.blob, &mut buf) {
                failed = Some(Error::from(e));
                break;
            }
            chunk.bytes.extend_from_slice(&buf);
            chunk.ends.push(chunk.bytes.len());
            chunk.records.push(rec);
        }
        if tx.send(Ahead::Read(chunk)).is_err() {
            return;
        }
        if let Some(e) = failed {
            let _ = tx.send(Ahead::Blob(e));
            return;
        }
    }
}

/// Hands the message at `seq` to `f` and notes it in `out`, after checking that the
/// envelope is the one the index names; returns whether `f` wants more.
fn deliver(
    topic: &Topic,
    out: &mut ScanEnd,
    seq: u64,
    rec: &index::Record,
    buf: &[u8],
    content_id: Digest,
    f: &mut impl FnMut(&MessageView<'_>) -> Result<bool>,
) -> Result<bool> {
    let env = EnvelopeRef::parse(buf)?;
    if env.ulid != rec.ulid || env.topic != topic.as_str() {
        // Rebuilt like a torn record (ADR 0008), unless messages went out.
        let e = index::corrupt(
            topic,
            format_args!("seq {seq} points at a different message"),
        );
        return Err(index::settled(e, out.count));
    }
    let m = MessageView {
        ulid: rec.ulid,
        seq,
        topic,
        content_id,
        commit: rec.commit,
        payload: env.payload,
        headers: env.headers,
    };
    // `f` has seen the message: whatever it returns is final.
    let go_on = f(&m).map_err(|e| index::settled(e, out.count + 1))?;
    out.count += 1;
    out.last = Some((seq, rec.ulid));
    out.next_since = Some(rec.ulid);
    out.end = seq >= out.last_seq;
    Ok(go_on)
}

impl Messages<'_> {
    /// Starts following a topic after `since` (`Cursor::End` for only new messages).
    ///
    /// # Errors
    /// `NotFound` for an unknown ULID.
    pub fn follow(&self, topic: &Topic, since: Cursor) -> Result<Follower> {
        let (start, last_head) = self.with_view(topic, |view| {
            Ok((self.resolve(topic, view, &since)?, view.and_then(View::tip)))
        })?;
        Ok(Follower {
            gatos: self.gatos.clone(),
            topic: topic.clone(),
            after_seq: start.after,
            after_ulid: start.cursor_ulid,
            last_head,
            pending_gap: start.gap,
            forks_seen: super::forks_len(self.gatos, topic),
        })
    }
}

/// Follows a topic: [`Follower::poll`] returns what is new, [`Follower::wait`] blocks until
/// the topic head moves (whoever moved it: this process, another one, a fetch).
#[derive(Debug)]
pub struct Follower {
    gatos: crate::Gatos,
    topic: Topic,
    after_seq: u64,
    after_ulid: Option<Ulid>,
    last_head: Option<Oid>,
    pending_gap: Option<Gap>,
    /// How much of the topic's fork journal this follower has taken into account.
    forks_seen: u64,
}

/// How often a waiting follower looks at the topic head.
pub const FOLLOW_POLL: Duration = Duration::from_millis(50);

/// Blocks until the ref `name` differs from `last`, or `timeout` passes, looking at it
/// every [`FOLLOW_POLL`]. Returns true when it moved.
///
/// A follower waits on a topic head with it, and a consumer that waits for an ack on its
/// group's checkpoint.
pub(crate) fn wait_ref(
    gatos: &crate::Gatos,
    name: &gatos_store::refs::RefName,
    last: Option<Oid>,
    timeout: Duration,
) -> Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        if gatos.store().read_ref(name)? != last {
            return Ok(true);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        std::thread::sleep(left.min(FOLLOW_POLL));
    }
}

impl Follower {
    /// Passes up to `max` new messages to `f`; returns how many, and a gap if the cursor
    /// fell into pruned history.
    ///
    /// # Errors
    /// As [`Messages::scan`].
    pub fn poll(
        &mut self,
        max: u64,
        f: impl FnMut(&MessageView<'_>) -> Result<bool>,
    ) -> Result<(u64, Option<Gap>)> {
        // A sync that re-appended this node's messages after the hub's rewrote the tail
        // from a fork point: resume there, so no message that arrived before ours is
        // skipped (at-least-once; readers dedupe by ULID).
        let (fork, len) = super::forks_since(&self.gatos, &self.topic, self.forks_seen);
        self.forks_seen = len;
        if let Some(fork) = fork
            && fork < self.after_seq
        {
            self.after_seq = fork;
            self.after_ulid = None;
        }
        let cursor = match self.after_ulid {
            Some(u) => Cursor::Ulid(u),
            None => Cursor::Seq(self.after_seq),
        };
        let messages = self.gatos.messages();
        let end = match messages.scan(&self.topic, &cursor, Some(max), f) {
            Err(e) if e.code() == ErrorCode::NotFound && self.after_ulid.is_some() => {
                // The message we stood after was rewritten away (a sync re-appended the
                // tail): resume by position, at-least-once.
                self.after_ulid = None;
                let back = self.after_seq.min(messages.last_seq(&self.topic)?);
                self.after_seq = back;
                return Ok((0, None));
            }
            other => other?,
        };
        self.last_head = end.head;
        if let Some((seq, ulid)) = end.last {
            self.after_seq = seq;
            self.after_ulid = Some(ulid);
        }
        let gap = self.pending_gap.take().or(end.gap);
        Ok((end.count, gap))
    }

    /// Blocks until the topic head differs from the one last read, or `timeout` passes.
    /// Returns true when it moved.
    ///
    /// # Errors
    /// When the ref cannot be read.
    pub fn wait(&mut self, timeout: Duration) -> Result<bool> {
        // A journaled publish (ADR 0046) counts as a move: the poll that follows
        // materializes it before reading.
        let store = self.gatos.store();
        let head = names::message_head(&self.topic);
        let family = super::journal::family(&self.topic);
        let deadline = Instant::now() + timeout;
        loop {
            if store.journal_len(&family)? > 0 || store.read_ref(&head)? != self.last_head {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            std::thread::sleep(left.min(FOLLOW_POLL));
        }
    }

    /// As [`Follower::wait`], but for commits only: a journaled publish wakes it once a
    /// flusher made it a commit (within `gatos.journal.flushMs`), not at once. For a
    /// follower whose lag does not matter (gatosd's metrics of `gatos.jobs`), so that it
    /// does not make every journaled record a commit the moment it is appended.
    ///
    /// # Errors
    /// When the ref cannot be read.
    pub fn wait_committed(&mut self, timeout: Duration) -> Result<bool> {
        wait_ref(
            &self.gatos,
            &names::message_head(&self.topic),
            self.last_head,
            timeout,
        )
    }

    /// Moves the follower to stand after position `seq` (the message `ulid` when known):
    /// a consumer group's checkpoint, which the next [`Follower::poll`] resumes from.
    pub(crate) fn seek(&mut self, seq: u64, ulid: Option<Ulid>) {
        self.after_seq = seq;
        self.after_ulid = ulid;
    }

    /// Returns the topic.
    pub fn topic(&self) -> &Topic {
        &self.topic
    }

    /// Returns the head the follower last read (to compare with a watched head).
    pub fn last_head(&self) -> Option<Oid> {
        self.last_head
    }

    /// Returns the position the follower stands after.
    pub fn position(&self) -> (u64, Option<Ulid>) {
        (self.after_seq, self.after_ulid)
    }
}
