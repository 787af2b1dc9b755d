//! The ready index: the unfinished jobs, so finding the next claimable job never scans
//! every job ever run (DESIGN §4, ADR 0014).
//!
//! `<git-dir>/gatos/index/jobs/ready.log` is a journal of JSON lines, appended under the
//! `index.jobs` lock family by every gatos writer after its ref change: `put` (an unfinished
//! job with what routing needs: queue, priority, capabilities, secrets, when claimable,
//! lease end), `del` (a job that finished), `stamp` and `known` (see below). A handle keeps
//! the replayed state in memory and reads only what was appended since, so an enqueue costs
//! one short append and a claim a stat and a small read, however long the backlog; the
//! state is also kept in claim order (priority, then age), so a claim visits the jobs ahead
//! of the few it tries, not every unfinished job. The
//! journal is compacted (rewritten and renamed into place) when it has grown to twice what
//! it describes.
//!
//! Changes made outside that bookkeeping (a fetch, `git pack-refs`, a plain `git
//! update-ref`) are noticed through a stamp of the `refs/gatos/jobs` directory (mtime and
//! link count: one link per job directory) and of `packed-refs`; then the index catches up
//! from the refs, reading only jobs it has not seen (`known` holds the live ids seen, so
//! the finished jobs of the last week are not re-read). It is never trusted over the refs:
//! a worker re-reads a candidate's refs before claiming it, and a torn or unreadable
//! journal is rebuilt from them.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Seek as _, Write as _};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::PoisonError;

use gatos_store::refs::names;
use gatos_types::jobs::JobState;
use gatos_types::{Capability, ErrorCode, Queue, Timestamp, Ulid};
use serde::{Deserialize, Serialize};

use crate::Gatos;
use crate::error::{Error, Result};

const FAMILY: &str = "index.jobs";
const LOG: &str = "ready.log";

/// One unfinished job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The job.
    pub id: Ulid,
    /// Its queue.
    pub queue: Queue,
    /// Higher first.
    pub priority: i64,
    /// Required capabilities.
    pub caps: Vec<Capability>,
    /// Secret references the worker must resolve.
    pub secrets: Vec<String>,
    /// Not claimable before this.
    pub not_before: Timestamp,
    /// When running: the lease end last seen.
    #[serde(default)]
    pub lease_until: Option<Timestamp>,
}

/// A stamp of what outside writers could change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Stamp {
    dir_mtime_ns: i64,
    dir_nlink: u64,
    packed_mtime_ns: i64,
    packed_size: u64,
}

/// One journal line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Op {
    Put { entry: Entry },
    Del { id: Ulid },
    Stamp { stamp: Stamp },
    Known { ids: Vec<Ulid> },
}

/// The replayed journal, cached per handle.
#[derive(Debug, Default)]
pub(crate) struct State {
    file: Option<(u64, u64)>,
    /// The journal file `file` names, open for reading and appending: a sync that finds
    /// the same file at the path reads and appends through it (one `stat` instead of an
    /// open, a `stat` and a close, and one write instead of an open, a write and a close).
    /// Every writer holds the index's lock, so the file at the path cannot change between
    /// the sync that checked it and the append.
    open: Option<std::fs::File>,
    /// Whether `open` was opened for appending too (a user who may read the index but not
    /// write it reads through a read-only handle; an append then opens the file itself
    /// and fails as it always did).
    writable: bool,
    offset: u64,
    lines: u64,
    stamp: Option<Stamp>,
    jobs: Unfinished,
    known: BTreeSet<Ulid>,
}

/// The unfinished jobs by id, and in the order a claim tries them (higher priority first,
/// then the older id), so the best claimable ones are found without visiting the rest.
#[derive(Debug, Default)]
struct Unfinished {
    by_id: BTreeMap<Ulid, Entry>,
    order: BTreeSet<(std::cmp::Reverse<i64>, Ulid)>,
}

impl Unfinished {
    fn insert(&mut self, id: Ulid, entry: Entry) {
        let key = (std::cmp::Reverse(entry.priority), id);
        if let Some(old) = self.by_id.insert(id, entry) {
            self.order.remove(&(std::cmp::Reverse(old.priority), id));
        }
        self.order.insert(key);
    }

    fn remove(&mut self, id: &Ulid) {
        if let Some(old) = self.by_id.remove(id) {
            self.order.remove(&(std::cmp::Reverse(old.priority), *id));
        }
    }

    fn retain(&mut self, mut keep: impl FnMut(&Ulid) -> bool) {
        let order = &mut self.order;
        self.by_id.retain(|id, e| {
            let k = keep(id);
            if !k {
                order.remove(&(std::cmp::Reverse(e.priority), *id));
            }
            k
        });
    }

    fn get(&self, id: &Ulid) -> Option<&Entry> {
        self.by_id.get(id)
    }

    fn contains_key(&self, id: &Ulid) -> bool {
        self.by_id.contains_key(id)
    }

    fn len(&self) -> usize {
        self.by_id.len()
    }

    fn values(&self) -> impl Iterator<Item = &Entry> {
        self.by_id.values()
    }

    /// The entries best first, as a claim tries them.
    fn best_first(&self) -> impl Iterator<Item = &Entry> {
        self.order.iter().filter_map(|(_, id)| self.by_id.get(id))
    }
}

impl State {
    fn apply(&mut self, op: Op) {
        self.lines += 1;
        match op {
            Op::Put { entry } => {
                self.known.insert(entry.id);
                self.jobs.insert(entry.id, entry);
            }
            Op::Del { id } => {
                self.known.insert(id);
                self.jobs.remove(&id);
            }
            Op::Stamp { stamp } => self.stamp = Some(stamp),
            Op::Known { ids } => self.known = ids.into_iter().collect(),
        }
    }

    /// The lines that describe this state from scratch.
    fn snapshot(&self) -> Vec<Op> {
        let mut ops = vec![Op::Known {
            ids: self.known.iter().copied().collect(),
        }];
        ops.extend(self.jobs.values().map(|e| Op::Put { entry: e.clone() }));
        if let Some(stamp) = self.stamp {
            ops.push(Op::Stamp { stamp });
        }
        ops
    }
}

fn io(what: &str, e: std::io::Error) -> Error {
    Error::new(ErrorCode::Internal, format!("job ready index: {what}: {e}"))
}

fn line(op: &Op) -> Result<Vec<u8>> {
    let mut b =
        serde_json::to_vec(op).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
    b.push(b'\n');
    Ok(b)
}

/// The ready index of a repository.
pub(crate) struct Ready<'g> {
    gatos: &'g Gatos,
}

impl<'g> Ready<'g> {
    pub(crate) fn new(gatos: &'g Gatos) -> Ready<'g> {
        Ready { gatos }
    }

    fn dir(&self) -> PathBuf {
        self.gatos.store().gatos_dir().join("index").join("jobs")
    }

    /// Stamps the job refs directory and packed-refs as they are now.
    pub(crate) fn stamp(&self) -> Stamp {
        let common = self.gatos.store().common_dir();
        let mut s = Stamp::default();
        if let Ok(m) = std::fs::metadata(common.join(names::jobs_prefix().trim_end_matches('/'))) {
            s.dir_mtime_ns = m
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(m.mtime_nsec());
            s.dir_nlink = m.nlink();
        }
        if let Ok(m) = std::fs::metadata(common.join("packed-refs")) {
            s.packed_mtime_ns = m
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(m.mtime_nsec());
            s.packed_size = m.size();
        }
        s
    }

    /// Runs `f` on the state, brought up to date with the journal, under the lock.
    ///
    /// The thread is [`super::journal::Quiet`] meanwhile: the enqueue journal's
    /// materializer takes this lock after its own, so a listing of job refs here (a
    /// catch-up) must not materialize it; the catch-up keeps the jobs still journaled.
    fn with<T>(&self, f: impl FnOnce(&Self, &mut State) -> Result<T>) -> Result<T> {
        let _quiet = super::journal::Quiet::enter();
        let _g = self
            .gatos
            .store()
            .locks()
            .acquire(
                &[FAMILY.to_owned()],
                gatos_store::locks::DEFAULT_LOCK_TIMEOUT,
            )
            .map_err(gatos_store::Error::from)?;
        let mut guard = self
            .gatos
            .ready_state()
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let state = &mut *guard;
        if !self.sync(state)? {
            // Torn (a writer died mid-append) or unreadable: start again from the refs.
            tracing::info!(
                "the job ready index journal is unreadable; rebuilding it from the refs"
            );
            *state = State::default();
            self.catch_up(state, self.stamp())?;
        }
        f(self, state)
    }

    /// Reads what was appended since the state's offset. False when the journal cannot be
    /// trusted (a torn or malformed line).
    fn sync(&self, state: &mut State) -> Result<bool> {
        let path = self.dir().join(LOG);
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if state.file.is_some() || state.lines > 0 {
                    *state = State::default();
                }
                return Ok(true);
            }
            Err(e) => return Err(io("stat", e)),
        };
        let id = (meta.dev(), meta.ino());
        if state.file != Some(id) || meta.len() < state.offset || state.open.is_none() {
            let opened = std::fs::OpenOptions::new()
                .read(true)
                .append(true)
                .open(&path)
                .map(|f| (f, true));
            let opened = match opened {
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::PermissionDenied
                            | std::io::ErrorKind::ReadOnlyFilesystem
                    ) =>
                {
                    std::fs::File::open(&path).map(|f| (f, false))
                }
                other => other,
            };
            let (file, writable) = match opened {
                Ok(f) => f,
                // Replaced or removed since the stat: read it at the next use.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    *state = State::default();
                    return Ok(true);
                }
                Err(e) => return Err(io("open", e)),
            };
            let opened = file.metadata().map_err(|e| io("stat", e))?;
            let opened_id = (opened.dev(), opened.ino());
            if state.file != Some(opened_id) || opened.len() < state.offset {
                *state = State {
                    file: Some(opened_id),
                    ..State::default()
                };
            }
            state.open = Some(file);
            state.writable = writable;
            return self.read_from(state, opened.len());
        }
        self.read_from(state, meta.len())
    }

    /// Reads the lines of the open journal from the state's offset to its end; nothing
    /// when the file is `len` bytes long and all of them were read.
    fn read_from(&self, state: &mut State, len: u64) -> Result<bool> {
        if len == state.offset {
            return Ok(true);
        }
        let Some(file) = state.open.as_mut() else {
            return Ok(false);
        };
        file.seek(std::io::SeekFrom::Start(state.offset))
            .map_err(|e| io("seek", e))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf).map_err(|e| io("read", e))?;
        if buf.last() != Some(&b'\n') {
            return Ok(false);
        }
        for l in buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            match serde_json::from_slice::<Op>(l) {
                Ok(op) => state.apply(op),
                Err(_) => return Ok(false),
            }
        }
        state.offset += buf.len() as u64;
        Ok(true)
    }

    /// Appends ops (one write), compacting the journal when it has grown enough.
    fn append(&self, state: &mut State, ops: Vec<Op>) -> Result<()> {
        let mut bytes = Vec::new();
        for op in &ops {
            bytes.extend(line(op)?);
        }
        for op in ops {
            state.apply(op);
        }
        let described = (state.jobs.len() + state.known.len() / 64) as u64 + 2;
        if state.file.is_none() || state.lines > 2 * described + 1024 {
            return self.rewrite(state);
        }
        let written = match state.open.as_mut() {
            Some(f) if state.writable => f.write_all(&bytes),
            Some(_) => std::fs::OpenOptions::new()
                .append(true)
                .open(self.dir().join(LOG))
                .and_then(|mut f| f.write_all(&bytes)),
            None => return self.rewrite(state),
        };
        written.map_err(|e| io("append", e))?;
        state.offset += bytes.len() as u64;
        Ok(())
    }

    /// Writes the state as a fresh journal and renames it into place.
    fn rewrite(&self, state: &mut State) -> Result<()> {
        let dir = self.dir();
        std::fs::create_dir_all(&dir).map_err(|e| io("create", e))?;
        let ops = state.snapshot();
        let mut bytes = Vec::new();
        for op in &ops {
            bytes.extend(line(op)?);
        }
        let tmp = dir.join(format!("{LOG}.tmp"));
        // Kept open for the appends that follow, so opened to append (std's OpenOptions
        // refuses append with truncate: a temp file left by a crash is emptied by
        // `set_len`).
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&tmp)
            .map_err(|e| io("create", e))?;
        file.set_len(0).map_err(|e| io("truncate", e))?;
        file.write_all(&bytes).map_err(|e| io("write", e))?;
        let meta = file.metadata().map_err(|e| io("stat", e))?;
        std::fs::rename(&tmp, dir.join(LOG)).map_err(|e| io("rename", e))?;
        state.file = Some((meta.dev(), meta.ino()));
        state.open = Some(file);
        state.writable = true;
        state.offset = bytes.len() as u64;
        state.lines = ops.len() as u64;
        Ok(())
    }

    /// Runs `f` on the state once it is current: caught up with the refs first if outside
    /// writers changed them.
    fn current<T>(&self, f: impl FnOnce(&State) -> T) -> Result<T> {
        self.with(|me, state| {
            let now = me.stamp();
            if state.stamp != Some(now) {
                tracing::debug!(was = ?state.stamp, now = ?now, "the job refs changed outside the index");
                me.catch_up(state, now)?;
            }
            Ok(f(state))
        })
    }

    /// Returns the unfinished jobs, catching up with the refs first if outside writers
    /// changed them.
    pub(crate) fn entries(&self) -> Result<Vec<Entry>> {
        self.current(|state| state.jobs.values().cloned().collect())
    }

    /// What `pick` takes from each unfinished job, catching up with the refs first if
    /// outside writers changed them; nothing else is copied out of the index.
    pub(crate) fn select<T>(&self, mut pick: impl FnMut(&Entry) -> Option<T>) -> Result<Vec<T>> {
        self.current(|state| state.jobs.values().filter_map(&mut pick).collect())
    }

    /// What `pick` takes from the first `k` unfinished jobs it picks, best first (higher
    /// priority, then the older id), visiting only the entries before them: the jobs a
    /// claim tries, without copying or ordering the rest of the backlog.
    pub(crate) fn best<T>(
        &self,
        k: usize,
        mut pick: impl FnMut(&Entry) -> Option<T>,
    ) -> Result<Vec<T>> {
        self.current(|state| {
            state
                .jobs
                .best_first()
                .filter_map(&mut pick)
                .take(k)
                .collect()
        })
    }

    /// Counts the pending jobs of every queue that has an unfinished job (a queue whose
    /// jobs all run counts 0), as [`is_pending`] decides, without copying the entries.
    pub(crate) fn pending_by_queue(&self) -> Result<BTreeMap<Queue, u64>> {
        self.current(|state| {
            let mut out: BTreeMap<Queue, u64> = BTreeMap::new();
            for e in state.jobs.values() {
                *out.entry(e.queue.clone()).or_default() += u64::from(is_pending(e));
            }
            out
        })
    }

    /// Counts the pending jobs of one queue, as [`is_pending`] decides.
    pub(crate) fn pending_in(&self, queue: &Queue) -> Result<u64> {
        self.current(|state| {
            let n = state
                .jobs
                .values()
                .filter(|e| e.queue == *queue && is_pending(e))
                .count();
            u64::try_from(n).unwrap_or(u64::MAX)
        })
    }

    /// Re-reads the live job refs: adds jobs not seen yet, drops jobs gone from the refs,
    /// then rewrites the journal.
    fn catch_up(&self, state: &mut State, stamp: Stamp) -> Result<()> {
        // The journaled enqueues are read before the refs: one materialized meanwhile is
        // then a ref by the time they are listed. Their entries were put at their append.
        let journaled = super::journal::waiting_ids(self.gatos)?;
        let mut live = BTreeSet::new();
        for (name, _) in self.gatos.store().list_refs(&names::jobs_prefix())? {
            if let Some(names::RefKind::Job(id)) = name.kind() {
                live.insert(id);
            }
        }
        state
            .jobs
            .retain(|id| live.contains(id) || journaled.contains(id));
        let now = self.gatos.now();
        let mut added = 0usize;
        for id in &live {
            if state.known.contains(id) {
                continue;
            }
            let Some(rec) = super::readable(*id, self.gatos.jobs().record(*id))? else {
                continue;
            };
            if let Some(e) = entry_for(&rec, now, self.gatos.lease_skew()) {
                state.jobs.insert(*id, e);
                added += 1;
            }
        }
        state.known = live;
        state.known.extend(
            journaled
                .into_iter()
                .filter(|id| state.jobs.contains_key(id)),
        );
        state.stamp = Some(stamp);
        self.rewrite(state)?;
        tracing::debug!(
            live = state.known.len(),
            added,
            "job ready index caught up with the refs"
        );
        Ok(())
    }

    /// Adds or replaces a job's entry (or removes it when the job is finished).
    pub(crate) fn put(&self, id: Ulid, entry: Option<Entry>) -> Result<()> {
        self.with(|me, state| {
            if state.jobs.get(&id) == entry.as_ref()
                && (entry.is_some() || state.known.contains(&id))
            {
                return Ok(());
            }
            let op = match entry {
                Some(entry) => Op::Put { entry },
                None => Op::Del { id },
            };
            me.append(state, vec![op])
        })
    }

    /// Records a job this process just created: the stamp moves on only if our new job
    /// directory was the only change since `before` (one more link, nothing else).
    pub(crate) fn created(&self, entry: Entry, before: Stamp) -> Result<()> {
        self.with(|me, state| {
            let now = me.stamp();
            let mut ops = vec![Op::Put { entry }];
            if only_ours(state, before, now, 1) {
                ops.push(Op::Stamp { stamp: now });
            }
            me.append(state, ops)
        })
    }

    /// Records the job refs the enqueue journal's materializer just created (`made`,
    /// stamped `before` it created them): a job the index does not know yet (its entry was
    /// lost with a torn index) is read and put; the stamp moves on only if the new job
    /// directories were the only change, as for [`Ready::created`].
    pub(crate) fn materialized(&self, made: &[Ulid], before: Stamp) -> Result<()> {
        if made.is_empty() {
            return Ok(());
        }
        self.with(|me, state| {
            let now = me.stamp();
            let mut ops = Vec::new();
            let at = me.gatos.now();
            for id in made {
                if state.known.contains(id) {
                    continue;
                }
                let Some(rec) = super::readable(*id, me.gatos.jobs().record(*id))? else {
                    continue;
                };
                if let Some(entry) = entry_for(&rec, at, me.gatos.lease_skew()) {
                    ops.push(Op::Put { entry });
                }
            }
            if only_ours(state, before, now, made.len() as u64) {
                ops.push(Op::Stamp { stamp: now });
            }
            if ops.is_empty() {
                return Ok(());
            }
            me.append(state, ops)
        })
    }

    /// Forgets everything; the next use rebuilds from the refs.
    pub(crate) fn reset(&self) -> Result<()> {
        self.with(|me, state| {
            *state = State::default();
            for name in [LOG, "ready.json", "known"] {
                match std::fs::remove_file(me.dir().join(name)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io("remove", e)),
                }
            }
            Ok(())
        })
    }
}

/// Whether the index was current at `before` and the only change since is `k` new job
/// directories, this writer's own: then its stamp may move to `now` without a catch-up.
///
/// ext4 stops counting subdirectories past 65,000 (`dir_nlink`: the link count stays 1);
/// then new links cannot be checked and our own creations are taken as the only change
/// (an outside writer racing with them in this window is noticed at the next packed-refs
/// change or index reset; see ADR 0014).
fn only_ours(state: &State, before: Stamp, now: Stamp, k: u64) -> bool {
    let counted = before.dir_nlink > 1 && now.dir_nlink > 1;
    let links = if counted {
        now.dir_nlink == before.dir_nlink + k
    } else {
        now.dir_nlink <= 1
    };
    state.stamp == Some(before)
        && links
        && now.packed_mtime_ns == before.packed_mtime_ns
        && now.packed_size == before.packed_size
}

/// Whether an entry counts as pending for queue admission (ADR 0027): no claim recorded
/// since it was enqueued or released for a retry, whether or not it may be claimed yet
/// (`run_after`, a retry backoff). An entry with a lease end is a claimed job and does not
/// count, even once that lease has run out: heartbeats do not update the index, so an
/// old lease end says nothing about whether the job still runs. A worker's takeover or
/// release updates the entry.
pub(crate) fn is_pending(e: &Entry) -> bool {
    e.lease_until.is_none()
}

/// The ready entry of a job, or `None` when it is finished.
pub(crate) fn entry_for(
    rec: &super::records::JobRecord,
    now: Timestamp,
    skew: gatos_types::Dur,
) -> Option<Entry> {
    let d = super::state::derive(rec, now, skew);
    let lease_until = match d.state {
        JobState::Running => rec.claim.as_ref().map(|(_, c)| c.lease_until),
        JobState::Pending => None,
        _ if d.lost_final => None,
        _ => return None,
    };
    Some(Entry {
        id: rec.id,
        queue: rec.spec.queue.clone(),
        priority: rec.spec.priority,
        caps: rec.spec.required_capabilities.clone(),
        secrets: rec.spec.secret_refs.clone(),
        not_before: d.claimable_at.unwrap_or(now),
        lease_until,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_claim_order_follows_every_change() {
        let entry = |n: u64, priority: i64| Entry {
            id: Ulid::from_parts(1_795_000_000_000 + n, 1),
            queue: Queue::default_queue(),
            priority,
            caps: Vec::new(),
            secrets: Vec::new(),
            not_before: Timestamp::from_millis(0),
            lease_until: None,
        };
        let mut jobs = Unfinished::default();
        for (n, p) in [(1, 0), (2, 5), (3, 0), (4, 5), (5, -1)] {
            let e = entry(n, p);
            jobs.insert(e.id, e);
        }
        let order = |jobs: &Unfinished| -> Vec<u64> {
            jobs.best_first()
                .map(|e| e.id.timestamp_ms() - 1_795_000_000_000)
                .collect()
        };
        assert_eq!(order(&jobs), vec![2, 4, 1, 3, 5]);
        // A put again with another priority moves the job; a removal and a retain drop it
        // from both views.
        let e = entry(3, 9);
        jobs.insert(e.id, e);
        assert_eq!(order(&jobs), vec![3, 2, 4, 1, 5]);
        jobs.remove(&entry(2, 5).id);
        jobs.retain(|id| *id != entry(5, -1).id);
        assert_eq!(order(&jobs), vec![3, 4, 1]);
        assert_eq!((jobs.len(), jobs.order.len()), (3, 3));
    }

    #[test]
    fn every_journal_line_reads_back() {
        let stamp = Stamp {
            dir_mtime_ns: 1_795_000_000_123_456_789,
            dir_nlink: 7,
            packed_mtime_ns: 0,
            packed_size: 12,
        };
        let entry = Entry {
            id: Ulid::from_parts(1_795_000_000_000, 42),
            queue: Queue::default_queue(),
            priority: -3,
            caps: Vec::new(),
            secrets: vec!["TOKEN".into()],
            not_before: Timestamp::from_millis(1_795_000_000_000),
            lease_until: None,
        };
        for op in [
            Op::Put {
                entry: entry.clone(),
            },
            Op::Del { id: entry.id },
            Op::Stamp { stamp },
            Op::Known {
                ids: vec![entry.id],
            },
        ] {
            let bytes = line(&op).expect("encodes");
            let back: Op = serde_json::from_slice(&bytes).expect("decodes");
            assert_eq!(format!("{back:?}"), format!("{op:?}"));
        }
    }
}
