//! Retention: dropping old sealed segments behind a summary commit (DESIGN §4).
//!
//! Order of the ref changes: the summary moves first (from then on readers stop at its
//! `Seq`), then the sealed refs are deleted. A crash between leaves sealed refs that the
//! summary already covers; the next prune deletes them.

use gatos_store::objects::{NewCommit, Objects};
use gatos_store::refs::{Edit, Options, PACKED_REFS_FAMILY, names};
use gatos_types::trailers::{Trailers, keys};
use gatos_types::wire::{PruneRow, SummaryDoc};
use gatos_types::{Digest, Dur, ErrorCode, Group, Oid, Topic, Ulid, jcs};

use super::chain::{self, Meta};
use super::{Messages, index, ulid_time};
use crate::error::{Error, Result};

/// Why a prune was refused.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    /// Consumer groups have not consumed what would be dropped; a forced prune drops it
    /// anyway (and audits it).
    #[error(
        "pruning topic '{topic}' through seq {through} would drop messages that consumer group {} has not consumed; a forced prune drops them anyway",
        groups_at(behind)
    )]
    GroupsBehind {
        /// The topic.
        topic: Topic,
        /// The last seq the prune would drop.
        through: u64,
        /// The groups behind, each with its checkpoint's seq.
        behind: Vec<(Group, u64)>,
    },
}

fn groups_at(behind: &[(Group, u64)]) -> String {
    behind
        .iter()
        .map(|(g, s)| format!("'{g}' (at seq {s})"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl gatos_types::Coded for PruneError {
    fn code(&self) -> ErrorCode {
        match self {
            PruneError::GroupsBehind { .. } => ErrorCode::Forbidden,
        }
    }
}

/// The file of a summary commit holding its document.
pub const SUMMARY_PATH: &str = "summary.json";
/// The file of a summary commit listing pruned ULIDs: sorted 24-byte entries, the ULID (16
/// bytes, big-endian) then its seq (8 bytes, big-endian), so a cursor into pruned history
/// can be answered with its position.
pub const PRUNED_ULIDS_PATH: &str = "pruned/ulids";

/// Options of a prune.
#[derive(Debug, Clone, Default)]
pub struct PruneOptions {
    /// Drop sealed segments whose last message is older than this (besides the topic's
    /// configured retention).
    pub older_than: Option<Dur>,
    /// Report what would be dropped, change nothing.
    pub dry_run: bool,
    /// Drop even what consumer groups have not passed.
    pub force: bool,
}

struct Segment {
    name: names::RefName,
    label: String,
    tip: Meta,
}

impl Segment {
    fn first_seq(&self) -> u64 {
        self.tip.seq + 1 - self.tip.segment_seq
    }
}

impl Messages<'_> {
    /// Prunes sealed segments past retention and returns what was (or would be) dropped.
    ///
    /// # Errors
    /// `Forbidden` when a consumer group has not passed what would be dropped (unless
    /// forced), `Conflict` for a concurrent change.
    pub fn prune(&self, topic: &Topic, opts: &PruneOptions) -> Result<PruneRow> {
        let store = self.gatos.store();
        let _guard = store
            .locks()
            .acquire(
                &[format!("messages.{topic}"), PACKED_REFS_FAMILY.to_owned()],
                gatos_store::locks::DEFAULT_LOCK_TIMEOUT,
            )
            .map_err(gatos_store::Error::from)?;
        self.materialize_locked(topic)?;
        let (config, _) = self.gatos.topic_config(topic)?;
        let summary = self.summary(topic)?;
        let mut row = PruneRow {
            topic: topic.clone(),
            segments: Vec::new(),
            messages: 0,
            bytes: 0,
            summary: None,
            dry_run: opts.dry_run,
            groups_behind: Vec::new(),
        };
        let Some(head) = store.read_ref(&names::message_head(topic))? else {
            return Ok(row);
        };
        let mut reader = store.reader();
        let head_meta = chain::meta_in(&reader.commit(head)?, topic)?;

        // The sealed segments, oldest first; leftovers already covered by the summary go.
        let mut segments = Vec::new();
        let mut leftovers = Vec::new();
        for (name, tip) in store.list_refs(&names::topic_prefix(topic))? {
            if let Some(names::RefKind::MessageSealed(_, date, first)) = name.kind() {
                let meta = chain::meta(&reader.commit(tip)?)?;
                if meta.seq <= summary.through {
                    leftovers.push(Edit::delete(name, tip));
                } else if meta.seq < head_meta.seq {
                    segments.push(Segment {
                        name,
                        label: format!("{date}/{first}"),
                        tip: meta,
                    });
                }
            }
        }
        segments.sort_by_key(|s| s.tip.seq);

        let now = self.gatos.now();
        let ages = [opts.older_than, config.ttl.map(Dur::from_secs)];
        let bytes_after = |i: usize| -> u64 {
            segments[i + 1..]
                .iter()
                .map(|s| s.tip.segment_bytes)
                .sum::<u64>()
                + head_meta.segment_bytes
        };
        let mut drop = 0;
        for (i, s) in segments.iter().enumerate() {
            let last_at = ulid_time(s.tip.ulid);
            let old = ages.iter().flatten().any(|age| last_at < now.minus(*age));
            let over_count = config
                .retain_messages
                .is_some_and(|keep| head_meta.seq - s.tip.seq >= keep);
            let over_bytes = config
                .retain_bytes
                .is_some_and(|keep| bytes_after(i) >= keep);
            if !(old || over_count || over_bytes) {
                break;
            }
            drop = i + 1;
        }
        let dropped = &segments[..drop];
        if dropped.is_empty() {
            if !leftovers.is_empty() && !opts.dry_run {
                store.update_refs_locked(&leftovers, &Options::default(), true)?;
            }
            return Ok(row);
        }
        let through = dropped[dropped.len() - 1].tip.seq;
        row.segments = dropped.iter().map(|s| s.label.clone()).collect();
        row.messages = through - summary.through.max(dropped[0].first_seq() - 1);
        row.bytes = dropped.iter().map(|s| s.tip.segment_bytes).sum();

        // Consumer groups, local and fetched from remotes, must have passed `through`.
        let mut behind: Vec<(Group, u64)> = Vec::new();
        for prefix in [names::consumers_prefix(), names::SYNC_PREFIX.to_owned()] {
            for (name, at) in store.list_refs(&prefix)? {
                let kind = if prefix == names::SYNC_PREFIX {
                    names::untracked_any(name.as_str()).and_then(|(_, n)| n.kind())
                } else {
                    name.kind()
                };
                if let Some(names::RefKind::Consumer(group, t)) = kind
                    && &t == topic
                {
                    let seq = super::consumers::read_doc(&mut reader, at)
                        .map(|d| d.seq)
                        .unwrap_or(0);
                    if seq < through && !behind.iter().any(|(g, _)| *g == group) {
                        behind.push((group, seq));
                    }
                }
            }
        }
        if !behind.is_empty() && !opts.force {
            return Err(PruneError::GroupsBehind {
                topic: topic.clone(),
                through,
                behind,
            }
            .into());
        }
        row.groups_behind = behind.into_iter().map(|(g, _)| g).collect();
        if opts.dry_run {
            return Ok(row);
        }

        // Summarise what goes: digest over the Content-Ids in Seq order, and the ULIDs.
        let from = summary.through.max(dropped[0].first_seq() - 1) + 1;
        let mut ulids: Vec<(Ulid, u64)> =
            Vec::with_capacity(usize::try_from(through + 1 - from).unwrap_or(0));
        let mut first_ulid = None;
        let mut last_ulid = None;
        // Run again from nothing on a rebuilt index when this one is torn.
        let digest = self.with_view(topic, |view| {
            let view = view.ok_or_else(|| {
                Error::new(
                    ErrorCode::Conflict,
                    format!("topic '{topic}' vanished while pruning"),
                )
            })?;
            ulids.clear();
            (first_ulid, last_ulid) = (None, None);
            range_digest(view, &mut reader, from, through, |ulid, seq| {
                ulids.push((ulid, seq));
                first_ulid.get_or_insert(ulid);
                last_ulid = Some(ulid);
            })
        })?;
        ulids.sort_unstable();
        let mut table = Vec::with_capacity(ulids.len() * 24);
        for (u, s) in &ulids {
            table.extend_from_slice(&u.to_bytes());
            table.extend_from_slice(&s.to_be_bytes());
        }
        let (Some(first_ulid), Some(last_ulid)) = (first_ulid, last_ulid) else {
            return Err(Error::new(ErrorCode::Internal, "nothing to summarise"));
        };
        let doc = SummaryDoc {
            topic: topic.clone(),
            count: through + 1 - from,
            first_ulid,
            first_seq: from,
            last_ulid,
            last_seq: through,
            bytes: row.bytes,
            digest,
            old_tip: dropped[dropped.len() - 1].tip.commit,
            segments: row.segments.clone(),
        };
        let doc_bytes = jcs::to_vec_of(&doc)?;
        let mut w = store.writer();
        let doc_blob = w.blob(&doc_bytes)?;
        let table_blob = w.blob(&table)?;
        let tree = w.files(&[(SUMMARY_PATH, doc_blob), (PRUNED_ULIDS_PATH, table_blob)])?;
        let trailers = Trailers::new()
            .with(keys::KIND, "summary")
            .with(keys::TOPIC, topic)
            .with(keys::SEQ, through)
            .with(keys::CONTENT_ID, Digest::of(&doc_bytes))
            .with(keys::ACTOR, self.gatos.actor())
            .with(keys::FORCED, !row.groups_behind.is_empty());
        let trailers = self.gatos.signed_if_control(tree, trailers)?;
        let parents: Vec<Oid> = summary.at.into_iter().collect();
        let commit = w.commit(&NewCommit {
            tree,
            parents: &parents,
            message: &trailers.to_message(&format!("summary {topic} {from}..{through}")),
            time: now,
        })?;
        w.finish()?;
        let opts_refs = Options {
            message: format!("gatos: prune {topic}"),
            ..Options::default()
        };
        store
            .update_refs_locked(
                &[Edit::update(
                    names::message_summary(topic),
                    summary.at,
                    commit,
                )],
                &opts_refs,
                true,
            )
            .map_err(|e| match e {
                gatos_store::Error::CasMismatch { .. } => Error::new(
                    ErrorCode::Conflict,
                    format!("the summary of topic '{topic}' changed while pruning"),
                ),
                other => other.into(),
            })?;
        let mut deletes: Vec<Edit> = dropped
            .iter()
            .map(|s| Edit::delete(s.name.clone(), s.tip.commit))
            .collect();
        deletes.extend(leftovers);
        store.update_refs_locked(&deletes, &opts_refs, true)?;
        self.gatos.cache_summary(topic, commit, through);
        row.summary = Some(commit);
        tracing::info!(%topic, segments = row.segments.len(), messages = row.messages, bytes = row.bytes, through, "pruned");
        // Bring the index's first position up now (readers would do it too).
        let target = index::Target {
            head: Some(head),
            summary: Some(commit),
            pruned_through: through,
        };
        if let Err(e) = index::open(store, topic, target, &[]) {
            tracing::warn!(%topic, error = %e, "could not update the position index after prune");
        }
        super::audit::record(
            self.gatos,
            if row.groups_behind.is_empty() {
                "messages.prune"
            } else {
                "messages.prune.forced"
            },
            &format!("topic:{topic}"),
            serde_json::json!({"first_seq": from}),
            serde_json::json!({"first_seq": through + 1, "segments": row.segments, "groups_behind": row.groups_behind}),
            Some(commit),
        );
        Ok(row)
    }

    /// Finds the position a ULID had in the pruned history of a topic.
    ///
    /// # Errors
    /// When a summary cannot be read.
    pub(crate) fn pruned_position(&self, topic: &Topic, ulid: Ulid) -> Result<Option<u64>> {
        let summary = self.summary(topic)?;
        let mut at = summary.at;
        let mut reader = self.gatos.store().reader();
        while let Some(commit) = at {
            let c = reader.commit(commit)?;
            if let Some(table) = reader.file(c.tree, PRUNED_ULIDS_PATH)?
                && let Some(seq) = pruned_seq(&table, ulid)
            {
                return Ok(Some(seq));
            }
            at = c.parents.first().copied();
        }
        Ok(None)
    }
}

impl Messages<'_> {
    /// The lowest position a pruned message at or after `min` had (by ULID), if any.
    pub(crate) fn pruned_from(&self, topic: &Topic, min: Ulid) -> Result<Option<u64>> {
        let mut at = self.summary(topic)?.at;
        let mut reader = self.gatos.store().reader();
        let mut lowest: Option<u64> = None;
        while let Some(commit) = at {
            let c = reader.commit(commit)?;
            if let Some(table) = reader.file(c.tree, PRUNED_ULIDS_PATH)?
                && let Some(seq) = pruned_seq_from(&table, min)
            {
                lowest = Some(lowest.map_or(seq, |l| l.min(seq)));
            }
            at = c.parents.first().copied();
        }
        Ok(lowest)
    }
}

/// The lowest seq among the entries of a `pruned/ulids` table at or after `min`: those
/// entries are the table's tail, as it is sorted by ULID.
pub(crate) fn pruned_seq_from(table: &[u8], min: Ulid) -> Option<u64> {
    let key = min.to_bytes();
    let n = table.len() / 24;
    let (mut lo, mut hi) = (0usize, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if table[mid * 24..mid * 24 + 16] < key[..] {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    pruned_entries(&table[lo * 24..n * 24])
        .map(|(_, seq)| seq)
        .min()
}

/// The `(ULID, seq)` entries of a `pruned/ulids` table (16 + 8 big-endian bytes each), in
/// ULID order.
pub(crate) fn pruned_entries(table: &[u8]) -> impl Iterator<Item = (Ulid, u64)> + '_ {
    table.chunks_exact(24).map(|e| {
        let mut u = [0u8; 16];
        u.copy_from_slice(&e[..16]);
        let mut s = [0u8; 8];
        s.copy_from_slice(&e[16..24]);
        (
            Ulid::from_u128(u128::from_be_bytes(u)),
            u64::from_be_bytes(s),
        )
    })
}

/// The seq a pruned ULID had, from a summary's `pruned/ulids` table (sorted `(ulid, seq)`
/// entries of 16 + 8 big-endian bytes), by binary search.
pub(crate) fn pruned_seq(table: &[u8], ulid: Ulid) -> Option<u64> {
    let key = ulid.to_bytes();
    let n = table.len() / 24;
    let (mut lo, mut hi) = (0usize, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        let entry = &table[mid * 24..mid * 24 + 24];
        match entry[..16].cmp(&key[..]) {
            std::cmp::Ordering::Equal => return pruned_entries(entry).next().map(|(_, seq)| seq),
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
        }
    }
    None
}

/// A summary's `digest` of positions `from..=to` of a topic: blake3 over the newline-joined
/// `Content-Id`s in `Seq` order (DESIGN §4), computed from the envelopes themselves; `each`
/// sees every message's ULID and seq.
///
/// # Errors
/// When the index or an envelope cannot be read.
pub(crate) fn range_digest(
    view: &index::View,
    reader: &mut gatos_store::objects::Reader<'_>,
    from: u64,
    to: u64,
    mut each: impl FnMut(Ulid, u64),
) -> Result<Digest> {
    let mut hasher = blake3::Hasher::new();
    let mut blob = Vec::new();
    let mut seq = from;
    while seq <= to {
        let records = view.records(seq, 4096.min(to + 1 - seq))?;
        if records.is_empty() {
            break;
        }
        for rec in records {
            reader.blob_into(rec.blob, &mut blob)?;
            if seq > from {
                hasher.update(b"\n");
            }
            hasher.update(Digest::of(&blob).to_string().as_bytes());
            each(rec.ulid, seq);
            seq += 1;
        }
    }
    Ok(Digest::from_bytes(*hasher.finalize().as_bytes()))
}
