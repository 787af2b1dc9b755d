//! The message plane: topics of messages as commit chains under
//! `refs/gatos/messages/<topic>/` (DESIGN §2–4).
//!
//! * [`Messages::publish`] appends one message with one CAS of the topic head;
//!   [`Messages::publish_batch`] appends many, one pack and one CAS per chunk.
//! * [`Messages::read`] and [`Messages::scan`] read after a cursor in time proportional to
//!   the page, through the position index ([`index`]).
//! * [`Messages::follow`] waits for new messages, whoever writes them.
//! * Segments rotate at the topic's limits; [`Messages::prune`] drops old sealed segments
//!   behind a summary.

pub(crate) mod audit;
pub mod chain;
pub mod config;
pub(crate) mod consumers;
pub mod index;
pub(crate) mod journal;
pub(crate) mod prune;
pub(crate) mod publish;
mod read;
pub(crate) mod reappend;

use gatos_store::refs::names;
use gatos_types::trailers::keys;
use gatos_types::wire::{DamagedTopic, TopicConfig, TopicRow};
use gatos_types::{ErrorCode, Oid, Timestamp, Topic, Ulid};

pub use self::config::Change as ConfigChange;
pub use self::prune::{PruneError, PruneOptions};
pub use self::publish::{BatchItem, BatchOptions, DEFAULT_CHUNK, PublishOptions};
pub(crate) use self::read::wait_ref;
pub use self::read::{Cursor, DEFAULT_MAX_PAGE_BYTES, Follower, MessageView, ReadOptions, ScanEnd};
use crate::Gatos;
use crate::error::{Error, Result};

/// The default page size of a read (DESIGN §6).
pub const DEFAULT_PAGE: u64 = 128;
/// The largest page a single read returns (DESIGN §6).
pub const MAX_PAGE: u64 = 10_000;
/// The largest envelope a message may have, in bytes.
pub const MAX_ENVELOPE_BYTES: usize = 8 * 1024 * 1024;

/// The message plane of one repository.
#[derive(Debug, Clone, Copy)]
pub struct Messages<'g> {
    gatos: &'g Gatos,
}

/// A topic's summary state: its head commit and the last pruned seq.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Summary {
    pub at: Option<Oid>,
    pub through: u64,
}

fn forks_path(gatos: &Gatos, topic: &Topic) -> std::path::PathBuf {
    // Not under index/: the index may be dropped and rebuilt, the journal must not be.
    gatos.store().gatos_dir().join("forks").join(topic.as_str())
}

/// The length of a topic's fork journal (where sync records the positions it rewrote from).
pub(crate) fn forks_len(gatos: &Gatos, topic: &Topic) -> u64 {
    std::fs::metadata(forks_path(gatos, topic)).map_or(0, |m| m.len())
}

/// The lowest fork position recorded after byte `seen` of the journal, and its length now.
pub(crate) fn forks_since(gatos: &Gatos, topic: &Topic, seen: u64) -> (Option<u64>, u64) {
    let Ok(bytes) = std::fs::read(forks_path(gatos, topic)) else {
        return (None, 0);
    };
    let len = bytes.len() as u64;
    if len <= seen {
        return (None, len);
    }
    let from = usize::try_from(seen).unwrap_or(0);
    let fork = String::from_utf8_lossy(&bytes[from..])
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .min();
    (fork, len)
}

/// Records that a topic's sequence was rewritten after position `seq` (before the head
/// moves, so a follower never sees the new head without it).
pub(crate) fn record_fork(gatos: &Gatos, topic: &Topic, seq: u64) -> Result<()> {
    use std::io::Write as _;
    let path = forks_path(gatos, topic);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::new(ErrorCode::Internal, format!("fork journal: {e}")))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| Error::new(ErrorCode::Internal, format!("fork journal: {e}")))?;
    f.write_all(format!("{seq}\n").as_bytes())
        .map_err(|e| Error::new(ErrorCode::Internal, format!("fork journal: {e}")))
}

impl<'g> Messages<'g> {
    pub(crate) fn new(gatos: &'g Gatos) -> Messages<'g> {
        Messages { gatos }
    }

    pub(crate) fn summary(&self, topic: &Topic) -> Result<Summary> {
        let Some(at) = self
            .gatos
            .store()
            .read_ref(&names::message_summary(topic))?
        else {
            return Ok(Summary::default());
        };
        self.summary_at(topic, at)
    }

    /// The summary of a topic as `src` has it.
    pub(crate) fn summary_in(
        &self,
        src: &dyn crate::refs::RefSource,
        topic: &Topic,
    ) -> Result<Summary> {
        match src.read(names::message_summary(topic).as_str())? {
            None => Ok(Summary::default()),
            Some(at) => self.summary_at(topic, at),
        }
    }

    /// What is wrong with `topic` itself, `None` when nothing is (ADR 0047), with its head
    /// and summary refs at `head` and `summary`: the head is no message of this topic (no
    /// message at all, or another topic's), or the summary does not read. Read without
    /// making its journal commits (sync asks it of every topic it would push or adopt, with
    /// the refs its round listed).
    ///
    /// # Errors
    /// An object that cannot be read for another reason than the topic's damage.
    pub(crate) fn damage_at(
        &self,
        topic: &Topic,
        head: Option<Oid>,
        summary: Option<Oid>,
    ) -> Result<Option<Error>> {
        let damage = |e: Error| if is_damage(&e) { Ok(Some(e)) } else { Err(e) };
        if let Some(head) = head {
            let read = self
                .gatos
                .store()
                .reader()
                .commit(head)
                .map_err(Error::from)
                .and_then(|c| chain::meta_in(&c, topic).map(drop));
            if let Err(e) = read {
                return damage(e);
            }
        }
        if let Some(at) = summary
            && let Err(e) = self.summary_at(topic, at)
        {
            return damage(e);
        }
        Ok(None)
    }

    /// The summary at `at` of `topic`: a commit that says it is that topic's summary
    /// (`Gatos-Kind: summary`, `Topic`), with the last pruned position in `Seq`.
    ///
    /// # Errors
    /// `InvalidEnvelope` for a commit that is not its summary; a store failure.
    pub(crate) fn summary_at(&self, topic: &Topic, at: Oid) -> Result<Summary> {
        if let Some(through) = self.gatos.cached_summary(topic, at) {
            return Ok(Summary {
                at: Some(at),
                through,
            });
        }
        let c = self.gatos.store().reader().commit(at)?;
        // A commit of another kind or topic on the ref (a message has a `Seq` too) is no
        // summary: its `Seq` would be taken for the topic's pruned positions.
        let trailers = c.trailers();
        if trailers.get(keys::KIND) != Some("summary")
            || trailers.get(keys::TOPIC) != Some(topic.as_str())
        {
            return Err(Error::new(
                ErrorCode::InvalidEnvelope,
                format!("commit {at} on the summary ref of topic '{topic}' is not its summary"),
            ));
        }
        let through = trailers
            .get(keys::SEQ)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::InvalidEnvelope,
                    format!("summary commit {at} of topic '{topic}' has no Seq"),
                )
            })?;
        self.gatos.cache_summary(topic, at, through);
        Ok(Summary {
            at: Some(at),
            through,
        })
    }

    /// Opens the position index of a topic, matching the refs as they are now.
    pub(crate) fn view(&self, topic: &Topic) -> Result<Option<index::View>> {
        self.settle_topic(topic)?;
        let head = self.gatos.store().read_ref(&names::message_head(topic))?;
        let Some(head) = head else { return Ok(None) };
        let summary = self.summary(topic)?;
        let target = index::Target {
            head: Some(head),
            summary: summary.at,
            pruned_through: summary.through,
        };
        index::open(self.gatos.store(), topic, target, &[]).map(Some)
    }

    /// Runs `f` on the topic's position index as the refs are now (`None`: a topic with no
    /// messages).
    ///
    /// When the index is torn or unreadable ([`index::is_torn`]: opening it, or anything `f`
    /// reads through it), the index is dropped and `f` runs once more on a rebuilt one
    /// (ADR 0008); a second failure is returned as it is, so a real store problem is
    /// reported, never looped on. `f` may therefore run twice: it must act on nothing (pass
    /// nothing on, decide nothing) before it returns, or make its errors final first
    /// ([`index::settled`]: the index is still dropped, and the error returned).
    pub(crate) fn with_view<T>(
        &self,
        topic: &Topic,
        f: impl FnMut(Option<&index::View>) -> Result<T>,
    ) -> Result<T> {
        self.with_view_from(topic, || self.view(topic), f)
    }

    /// As [`Messages::with_view`], on the view `open` returns (for a writer that pins the
    /// head it read).
    pub(crate) fn with_view_from<T>(
        &self,
        topic: &Topic,
        mut open: impl FnMut() -> Result<Option<index::View>>,
        mut f: impl FnMut(Option<&index::View>) -> Result<T>,
    ) -> Result<T> {
        let (error, stale) = match open() {
            Ok(view) => match f(view.as_ref()) {
                Ok(out) => return Ok(out),
                // A generation that changed under the view is a rewrite (a sync) that a
                // lock-free read met half done, not damage: read again, keep the index.
                Err(e) => (e, view.as_ref().is_some_and(|v| !v.is_current())),
            },
            Err(e) => (e, false),
        };
        if !index::is_caused_by_torn(&error) {
            return Err(error);
        }
        if stale {
            tracing::debug!(%topic, %error, "position index rewritten during a read");
        } else {
            tracing::warn!(%topic, %error, "position index is torn or unreadable; rebuilding it");
            index::remove(self.gatos.store(), topic)?;
            // What a handle cached from the dropped index is read again from the new one.
            self.gatos.msgid_caches().remove(topic);
        }
        if !index::is_torn(&error) {
            // Made final by `f` (it passed messages on): the next read meets a good index.
            return Err(error);
        }
        let view = open()?;
        f(view.as_ref())
    }

    /// Tells whether a topic exists here in any form: a head, a sealed segment, a summary
    /// (everything pruned), or settings. A name with none of these was never published to
    /// on this node (nor arrived by sync).
    ///
    /// # Errors
    /// A store failure.
    pub fn known(&self, topic: &Topic) -> Result<bool> {
        self.settle_topic(topic)?;
        let store = self.gatos.store();
        Ok(!store.list_refs(&names::topic_prefix(topic))?.is_empty()
            || store.read_ref(&names::config_topic(topic))?.is_some())
    }

    /// Returns the topic's head commit (its last message), or `None` for a topic with none.
    ///
    /// # Errors
    /// A store failure.
    pub fn head_commit(&self, topic: &Topic) -> Result<Option<Oid>> {
        self.settle_topic(topic)?;
        Ok(self.gatos.store().read_ref(&names::message_head(topic))?)
    }

    /// Returns the commit at position `seq` of the topic as it is now, if retained.
    ///
    /// # Errors
    /// When the index cannot be read or rebuilt.
    pub fn commit_at(&self, topic: &Topic, seq: u64) -> Result<Option<Oid>> {
        self.with_view(topic, |view| {
            let Some(view) = view else { return Ok(None) };
            if view.retained() == 0 || seq < view.first_seq() || seq > view.last_seq() {
                return Ok(None);
            }
            Ok(Some(view.record(seq)?.commit))
        })
    }

    /// Returns a topic's settings.
    ///
    /// # Errors
    /// `InvalidEnvelope` when stored settings do not parse.
    pub fn config(&self, topic: &Topic) -> Result<TopicConfig> {
        self.gatos.topic_config(topic).map(|(c, _)| c)
    }

    /// [`Messages::config`] as the refs of `src` have it.
    ///
    /// # Errors
    /// As [`Messages::config`].
    pub fn config_in(
        &self,
        src: &dyn crate::refs::RefSource,
        topic: &Topic,
    ) -> Result<TopicConfig> {
        self.gatos.topic_config_in(src, topic).map(|(c, _)| c)
    }

    /// Changes a topic's settings and returns them (an empty change just reads them).
    ///
    /// # Errors
    /// `InvalidInput` for a zero size, `Conflict` for a concurrent change.
    pub fn configure(&self, topic: &Topic, change: &ConfigChange) -> Result<TopicConfig> {
        if change.is_empty() {
            return self.config(topic);
        }
        self.gatos
            .set_topic_config(topic, change)
            .map(|(c, _, _)| c)
    }

    /// Lists the topics that have messages (or had, before a prune); a topic whose refs do
    /// not read is left out ([`Messages::listing`] names it).
    ///
    /// # Errors
    /// When the refs or objects cannot be read (a store failure, not one damaged topic),
    /// or a journal cannot be made commits for another reason than its topic's damage.
    pub fn topics(&self) -> Result<Vec<TopicRow>> {
        Ok(self.listing()?.rows)
    }

    /// [`Messages::topics`], and the topics whose refs do not read.
    ///
    /// # Errors
    /// As [`Messages::topics`].
    pub fn listing(&self) -> Result<TopicListing> {
        // A topic whose journal cannot become commits because the topic itself is damaged
        // (its head moved outside gatos to no message) is named, and the others are read
        // from their commits; a journal that fails for another reason fails the listing.
        let stuck = self
            .settle_healthy()?
            .into_iter()
            .map(|(topic, e)| damage(topic, e))
            .collect::<Result<Vec<_>>>()?;
        if stuck.is_empty() {
            return self.listing_in(&crate::refs::Live(self.gatos));
        }
        let mut listing = self
            .gatos
            .committed_only(|| self.listing_in(&crate::refs::Live(self.gatos)))?;
        for d in stuck {
            listing.rows.retain(|r| r.topic != d.topic);
            if !listing.damaged.iter().any(|x| x.topic == d.topic) {
                listing.damaged.push(d);
            }
        }
        listing.damaged.sort_by(|a, b| a.topic.cmp(&b.topic));
        Ok(listing)
    }

    /// Each topic's first retained position from its summary alone (a pruned topic's
    /// `first_seq` in [`Messages::topics`], but for a topic emptied to its last message),
    /// topic by topic: one whose refs do not read is left out instead of failing the rest.
    /// What `doctor` falls back to when a topic's head is no message.
    ///
    /// # Errors
    /// When the topics' refs cannot be listed.
    pub(crate) fn first_positions(&self) -> Result<std::collections::BTreeMap<Topic, u64>> {
        let mut out = std::collections::BTreeMap::new();
        for (name, _) in self.gatos.store().list_refs(&names::messages_prefix())? {
            let topic = match names::RefKind::parse(name.as_str()) {
                Some(names::RefKind::MessageHead(t) | names::RefKind::MessageSummary(t)) => t,
                _ => continue,
            };
            if let Ok(s) = self.summary(&topic) {
                out.insert(topic, s.through + 1);
            }
        }
        Ok(out)
    }

    /// [`Messages::topics`] from the refs of `src`.
    ///
    /// # Errors
    /// As [`Messages::topics`].
    pub fn topics_in(&self, src: &dyn crate::refs::RefSource) -> Result<Vec<TopicRow>> {
        Ok(self.listing_in(src)?.rows)
    }

    /// [`Messages::listing`] from the refs of `src`.
    ///
    /// # Errors
    /// When the refs cannot be listed, or an object cannot be read (a store failure, not a
    /// topic whose head is no message: that one is listed as damaged).
    pub fn listing_in(&self, src: &dyn crate::refs::RefSource) -> Result<TopicListing> {
        let refs = src.list_after(&names::messages_prefix(), None, usize::MAX)?;
        let mut rows: Vec<TopicRow> = Vec::new();
        let mut heads: Vec<(Topic, Oid)> = Vec::new();
        let mut sealed: std::collections::HashMap<Topic, u64> = std::collections::HashMap::new();
        let mut summarised: Vec<Topic> = Vec::new();
        for (name, oid) in refs {
            match names::RefKind::parse(&name) {
                Some(names::RefKind::MessageHead(t)) => heads.push((t, oid)),
                Some(names::RefKind::MessageSealed(t, ..)) => *sealed.entry(t).or_default() += 1,
                Some(names::RefKind::MessageSummary(t)) => summarised.push(t),
                _ => {}
            }
        }
        let mut reader = self.gatos.store().reader();
        let mut damaged: Vec<DamagedTopic> = Vec::new();
        for (topic, head) in heads {
            let read = reader
                .commit(head)
                .map_err(Error::from)
                .and_then(|c| chain::meta_in(&c, &topic))
                .and_then(|meta| Ok((meta, self.summary_in(src, &topic)?)));
            let (meta, summary) = match read {
                Ok(r) => r,
                Err(e) => {
                    damaged.push(damage(topic, e)?);
                    continue;
                }
            };
            let first = summary.through + 1;
            rows.push(TopicRow {
                last_seq: meta.seq,
                first_seq: first.min(meta.seq),
                count: meta.seq.saturating_add(1).saturating_sub(first),
                segments: sealed.get(&topic).copied().unwrap_or(0) + 1,
                last_ulid: Some(meta.ulid),
                last_at: Some(ulid_time(meta.ulid)),
                topic,
            });
        }
        for topic in summarised {
            if !rows.iter().any(|r| r.topic == topic) && !damaged.iter().any(|d| d.topic == topic) {
                let s = match self.summary_in(src, &topic) {
                    Ok(s) => s,
                    Err(e) => {
                        damaged.push(damage(topic, e)?);
                        continue;
                    }
                };
                rows.push(TopicRow {
                    topic,
                    last_seq: s.through,
                    first_seq: s.through + 1,
                    count: 0,
                    segments: 0,
                    last_ulid: None,
                    last_at: None,
                });
            }
        }
        rows.sort_by(|a, b| a.topic.cmp(&b.topic));
        damaged.sort_by(|a, b| a.topic.cmp(&b.topic));
        Ok(TopicListing { rows, damaged })
    }

    /// Returns the last seq of a topic (0 when empty).
    ///
    /// # Errors
    /// When the head cannot be read.
    pub fn last_seq(&self, topic: &Topic) -> Result<u64> {
        self.settle_topic(topic)?;
        match self.gatos.store().read_ref(&names::message_head(topic))? {
            None => Ok(self.summary(topic)?.through),
            Some(h) => Ok(chain::meta_in(&self.gatos.store().reader().commit(h)?, topic)?.seq),
        }
    }

    /// [`Messages::last_seq`] as `src` has the topic.
    ///
    /// # Errors
    /// When the head cannot be read.
    pub fn last_seq_in(&self, src: &dyn crate::refs::RefSource, topic: &Topic) -> Result<u64> {
        match src.read(names::message_head(topic).as_str())? {
            None => Ok(self.summary_in(src, topic)?.through),
            Some(h) => Ok(chain::meta_in(&self.gatos.store().reader().commit(h)?, topic)?.seq),
        }
    }
}

/// Returns the time a ULID was made.
pub fn ulid_time(u: Ulid) -> Timestamp {
    Timestamp::from_millis(i64::try_from(u.timestamp_ms()).unwrap_or(i64::MAX))
}

/// Returns the sealed-segment ref date of a segment's first ULID.
pub(crate) fn segment_date(first: Ulid) -> String {
    ulid_time(first).utc_date()
}

/// The refs that fix what a conditional read answers, by name with their commits, sorted
/// by name: the input of a face's state tag (an `ETag`, ADR 0042).
pub type RefState = Vec<(String, Oid)>;

/// The topics of a listing ([`Messages::listing`]).
#[derive(Debug, Clone, Default)]
pub struct TopicListing {
    /// The topics that read, by name.
    pub rows: Vec<TopicRow>,
    /// The topics whose refs do not read, by name.
    pub damaged: Vec<DamagedTopic>,
}

/// Whether `e`, from reading a topic's or a checkpoint's refs, is damage of what was read
/// (ADR 0047: a commit that is not what its ref says, or an object that is not there), not
/// the store failing to read or a lock not had, which fail a listing as they are.
pub fn is_damage(e: &Error) -> bool {
    matches!(e.code(), ErrorCode::InvalidEnvelope | ErrorCode::NotFound)
}

/// A topic left out of a listing for `e`, unless `e` is no damage ([`is_damage`]).
fn damage(topic: Topic, e: Error) -> Result<DamagedTopic> {
    if !is_damage(&e) {
        return Err(e);
    }
    Ok(DamagedTopic {
        topic,
        code: e.code(),
        message: e.to_string(),
    })
}

impl Messages<'_> {
    /// The refs that fix what a read of `topic` answers: its head, sealed segments and
    /// summary (pruning moves the summary, not the head), and its settings. A topic whose
    /// name is a prefix of others' (`a` of `a/b`) takes theirs too: a tag that moves more
    /// often than it must, never less.
    ///
    /// # Errors
    /// A store failure.
    pub fn state(&self, topic: &Topic) -> Result<RefState> {
        self.settle_topic(topic)?;
        let store = self.gatos.store();
        let mut out: RefState = store
            .list_refs(&names::topic_prefix(topic))?
            .into_iter()
            .map(|(n, o)| (n.as_str().to_owned(), o))
            .collect();
        let config = names::config_topic(topic);
        if let Some(o) = store.read_ref(&config)? {
            out.push((config.as_str().to_owned(), o));
        }
        out.sort();
        Ok(out)
    }

    /// [`Messages::state`] of every topic (what a lag over any topic reads).
    ///
    /// # Errors
    /// A store failure.
    pub fn state_all(&self) -> Result<RefState> {
        // A damaged topic's journal is left (ADR 0047): its refs are taken as they stand.
        self.settle_healthy()?;
        let store = self.gatos.store();
        let mut out: RefState = store
            .list_refs(&names::messages_prefix())?
            .into_iter()
            .chain(store.list_refs(&names::config_prefix())?)
            .map(|(n, o)| (n.as_str().to_owned(), o))
            .collect();
        out.sort();
        Ok(out)
    }
}
