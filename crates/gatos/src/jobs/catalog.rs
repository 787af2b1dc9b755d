//! The job catalog: what never changes about a job (queue, capabilities, labels, who
//! enqueued it), kept so `jobs.list` filters and pages without reading every job.
//!
//! `<git-dir>/gatos/index/jobs/catalog.jsonl` is an append-only journal of JSON lines, one
//! per job (two lines may name one job, the same facts; a reader keeps one), written under
//! the `index.jobs.catalog` lock family. A job document is immutable once its ref exists,
//! so a line is never rewritten: the journal only grows. A handle that enqueues appends its
//! jobs' lines itself (`Pending`): it signed them, so nothing is read back or checked. It
//! holds them and appends them together: a few hundred at a time, before it lists, and
//! when it is done ([`crate::Gatos::flush_catalog`]: the CLI as it exits, gatosd as it
//! stops; or when its last clone is dropped). A list that finds job ids the journal lacks
//! catches them up from the refs: jobs that came by sync or were archived elsewhere, jobs
//! another process still holds lines for, and jobs whose enqueuing process was killed
//! first. A handle remembers what it read (per process, by path) and reads only what was
//! appended since. A line that does not parse (a torn append after a crash) makes the
//! journal be rebuilt from the refs; it is never trusted over them: a listed job's row is
//! always read from its refs.
//!
//! What a list costs: the job refs from the cursor (or `since`) on, read a chunk at a
//! time until the page is full (a binary search into `packed-refs`, plus the loose refs
//! under `refs/gatos/jobs/`, few once maintenance packed them), the archive's index when
//! archived jobs are asked for (whole), a read of the journal's new lines, and one job
//! record per job it returns or whose state must be read to filter on it. Facts filter
//! without reading jobs; time ranges and id prefixes are ranges of ULIDs, the order of the
//! refs. So a page of a long history costs about what it costs in a short one, unless a
//! filter skips most of the jobs it passes over. The rows returned take their enqueuer
//! (key, actor, trusted) from the catalog: a job it lacks costs one check of its enqueue
//! signature, once, and a line appended.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read as _, Seek as _, Write as _};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use gatos_types::jobs::{JobRow, JobState};
use gatos_types::{Capability, ErrorCode, KeyId, Queue, Timestamp, Ulid};
use serde::{Deserialize, Serialize};

use super::records::Refs;
use super::{Jobs, archive, enqueuer, readable};
use crate::Gatos;
use crate::error::{Error, Result};
use crate::refs::{Live, RefSource};

const FAMILY: &str = "index.jobs.catalog";
const FILE: &str = "catalog.jsonl";

/// Lines of jobs a handle enqueued that it holds before appending them together.
const PENDING_MAX: usize = 256;

/// The facts of jobs this handle enqueued and has not appended yet: known at the enqueue
/// (the handle signed them), so no listing has to read those jobs back and check their
/// signatures. Appended together, PENDING_MAX at a time, before any listing of this
/// handle reads the catalog, and when the process is done with the handle
/// ([`crate::Gatos::flush_catalog`], or the last clone dropped). A process killed first
/// loses them: a listing catches those jobs up from their refs, as it does jobs that came
/// by sync.
#[derive(Default)]
pub(crate) struct Pending(Mutex<Vec<Facts>>);

/// Ids a page takes from the merged streams at a time (their facts are read together).
const BATCH: usize = 256;
/// Refs a live listing reads at a time (a job has at most four).
const CHUNK: usize = 1024;

/// The live jobs after a ref name, in id order: their refs read a chunk at a time from a
/// ref source ([`crate::refs::Live`]: the store's `list_refs_after`), so a page reads what
/// it passes over.
struct LiveJobs<'g> {
    src: &'g dyn RefSource,
    prefix: String,
    /// The name the next chunk starts after.
    after: Option<String>,
    ready: std::collections::VecDeque<(Ulid, Refs)>,
    done: bool,
}

impl<'g> LiveJobs<'g> {
    fn new(src: &'g dyn RefSource, after: Option<Ulid>) -> Self {
        let prefix = gatos_store::refs::names::jobs_prefix();
        LiveJobs {
            after: after.map(|id| past_job(&prefix, id)),
            src,
            prefix,
            ready: std::collections::VecDeque::new(),
            done: false,
        }
    }

    /// The next job, reading the next chunk of refs when needed.
    fn peek(&mut self) -> Result<Option<(Ulid, Refs)>> {
        while self.ready.is_empty() && !self.done {
            self.fill()?;
        }
        Ok(self.ready.front().copied())
    }

    /// Drops the job [`LiveJobs::peek`] returned.
    fn next(&mut self) {
        self.ready.pop_front();
    }

    fn fill(&mut self) -> Result<()> {
        use gatos_store::refs::names::RefKind;
        let refs = self
            .src
            .list_after(&self.prefix, self.after.as_deref(), CHUNK)?;
        let full = refs.len() == CHUNK;
        let last_name = refs.last().map(|(n, _)| n.clone());
        let mut jobs: Vec<(Ulid, Refs)> = Vec::new();
        for (name, oid) in refs {
            let (id, set): (Ulid, fn(&mut Refs, gatos_types::Oid)) = match RefKind::parse(&name) {
                Some(RefKind::Job(id)) => (id, |r, o| r.job = Some(o)),
                Some(RefKind::JobClaim(id)) => (id, |r, o| r.claim = Some(o)),
                Some(RefKind::JobResult(id)) => (id, |r, o| r.result = Some(o)),
                Some(RefKind::JobCancel(id)) => (id, |r, o| r.cancel = Some(o)),
                _ => continue,
            };
            if jobs.last().is_none_or(|(last, _)| *last != id) {
                jobs.push((
                    id,
                    Refs {
                        job: None,
                        claim: None,
                        result: None,
                        cancel: None,
                    },
                ));
            }
            if let Some((_, r)) = jobs.last_mut() {
                set(r, oid);
            }
        }
        if full {
            // The last job's refs may go on in the next chunk: it is read again there.
            if jobs.len() > 1 {
                jobs.pop();
                self.after = jobs.last().map(|(id, _)| past_job(&self.prefix, *id));
            } else {
                self.after = last_name;
            }
        } else {
            self.done = true;
        }
        self.ready.extend(jobs);
        Ok(())
    }
}

/// A name after every ref of job `id` and before those of any later job (DEL is in no ref
/// name, and ids are all 26 characters).
fn past_job(prefix: &str, id: Ulid) -> String {
    format!("{prefix}{id}/\u{7f}")
}

/// The most jobs one page returns.
pub const MAX_LIMIT: usize = 1_000;
/// A page's size when none is asked for.
pub const DEFAULT_LIMIT: usize = 100;

/// What never changes about a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Facts {
    /// The job.
    pub id: Ulid,
    /// Its queue.
    pub queue: Queue,
    /// The capabilities it needs.
    #[serde(default)]
    pub caps: Vec<Capability>,
    /// Its labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The key that signed its enqueue, when the signature verifies (trusted or not).
    #[serde(default)]
    pub key: Option<KeyId>,
    /// The actor that key's statement names.
    #[serde(default)]
    pub actor: Option<String>,
}

/// A `jobs.list` query: every filter is optional; they all must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Only this queue.
    pub queue: Option<Queue>,
    /// Only this state (a final state also searches the archive).
    pub state: Option<JobState>,
    /// Only jobs that need this capability.
    pub capability: Option<Capability>,
    /// Only jobs enqueued by this key (`ed25519:…`) or actor (`cli:alice`).
    pub enqueuer: Option<String>,
    /// Only jobs enqueued at or after this time.
    pub since: Option<Timestamp>,
    /// Only jobs enqueued before this time.
    pub until: Option<Timestamp>,
    /// Only jobs whose id starts with this (case-insensitive Crockford base32).
    pub id_prefix: Option<String>,
    /// Only jobs with this label: `KEY` (any value), or `KEY=PREFIX` (a value starting so).
    pub label: Option<String>,
    /// Include archived jobs.
    pub archived: bool,
    /// Start after this job (the `next_cursor` of the previous page).
    pub after: Option<Ulid>,
    /// At most this many (default 100, at most 1,000).
    pub limit: Option<usize>,
}

/// A page of jobs.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The jobs, oldest first.
    pub jobs: Vec<JobRow>,
    /// Pass it as `after` for the next page; `None` when this page is the last.
    pub next_cursor: Option<Ulid>,
}

struct Cached {
    /// The file read (device, inode): a rebuild renames a new file into place.
    file: (u64, u64),
    read: u64,
    /// Shared with the lists that read it: a page costs no copy of the catalog.
    facts: Arc<HashMap<Ulid, Facts>>,
}

fn cache() -> &'static Mutex<HashMap<PathBuf, Cached>> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, Cached>>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

fn io(what: &str, e: std::io::Error) -> Error {
    Error::new(ErrorCode::Internal, format!("{what}: {e}"))
}

/// The keys this node trusts, read once per page.
struct Trust {
    own: Option<KeyId>,
    trusted: Vec<KeyId>,
}

impl Facts {
    /// The enqueuer as a listed row shows it: the signing key and actor, whether this node
    /// trusts the key; `blocked` is left to `jobs show`.
    fn view(&self, trust: &Trust) -> gatos_types::jobs::EnqueuerView {
        gatos_types::jobs::EnqueuerView {
            key: self.key,
            actor: self.actor.clone(),
            trusted: self
                .key
                .is_some_and(|k| trust.own == Some(k) || trust.trusted.contains(&k)),
            blocked: None,
        }
    }

    fn matches(&self, q: &Query) -> bool {
        if q.queue.as_ref().is_some_and(|x| *x != self.queue) {
            return false;
        }
        if q.capability
            .as_ref()
            .is_some_and(|c| !self.caps.contains(c))
        {
            return false;
        }
        if let Some(who) = &q.enqueuer {
            let by_key = self.key.is_some_and(|k| k.to_string() == *who);
            let by_actor = self.actor.as_deref() == Some(who.as_str());
            if !by_key && !by_actor {
                return false;
            }
        }
        if let Some(l) = &q.label {
            let ok = match l.split_once('=') {
                Some((k, prefix)) => self.labels.get(k).is_some_and(|v| v.starts_with(prefix)),
                None => self.labels.contains_key(l.as_str()),
            };
            if !ok {
                return false;
            }
        }
        true
    }
}

impl Query {
    /// Checks the query before anything is read.
    ///
    /// # Errors
    /// `InvalidInput` for a limit of 0 or above 1,000, an id prefix that is not base32, or
    /// a time range that ends before it starts.
    pub fn check(&self) -> Result<()> {
        if let Some(n) = self.limit
            && (n == 0 || n > MAX_LIMIT)
        {
            return Err(Error::new(
                ErrorCode::InvalidInput,
                format!("limit must be 1 to {MAX_LIMIT}, not {n}"),
            ));
        }
        if let Some(p) = &self.id_prefix
            && (p.len() > 26
                || !p.chars().all(|c| {
                    c.is_ascii_alphanumeric()
                        && !matches!(c.to_ascii_uppercase(), 'I' | 'L' | 'O' | 'U')
                }))
        {
            return Err(Error::new(
                ErrorCode::InvalidInput,
                format!("id prefix {p:?} is not the start of a ULID"),
            ));
        }
        if let (Some(a), Some(b)) = (self.since, self.until)
            && b < a
        {
            return Err(Error::new(
                ErrorCode::InvalidInput,
                "the time range ends before it starts",
            ));
        }
        Ok(())
    }

    /// Whether a filter asks for what the catalog holds.
    fn needs_facts(&self) -> bool {
        self.queue.is_some()
            || self.capability.is_some()
            || self.enqueuer.is_some()
            || self.label.is_some()
    }

    fn wants_archive(&self) -> bool {
        self.archived || self.state.is_some_and(JobState::is_final)
    }

    /// The job the listing starts after: the cursor, or the last id before `since`.
    fn start_after(&self) -> Option<Ulid> {
        let since = self
            .since
            .and_then(|s| u64::try_from(s.as_millis()).ok())
            .filter(|ms| *ms > 0)
            .map(|ms| Ulid::from_parts(ms - 1, u128::MAX));
        self.after.max(since)
    }

    /// Tells whether an id and every later one are past the range (ids grow with time).
    fn past_range(&self, id: Ulid) -> bool {
        self.until
            .is_some_and(|u| crate::messages::ulid_time(id) >= u)
    }

    /// Tells whether an id is in the range the query names (time, prefix, cursor).
    fn id_in_range(&self, id: Ulid) -> bool {
        if self.after.is_some_and(|a| id <= a) {
            return false;
        }
        let t = crate::messages::ulid_time(id);
        if self.since.is_some_and(|s| t < s) || self.until.is_some_and(|u| t >= u) {
            return false;
        }
        if let Some(p) = &self.id_prefix
            && !id.to_string().starts_with(&p.to_ascii_uppercase())
        {
            return false;
        }
        true
    }
}

impl Jobs<'_> {
    /// Notes the facts of a job this handle just enqueued (its ref exists): `who` is the
    /// key and actor of the statement it signed, `None` when it signed none.
    pub(crate) fn catalog_enqueued(
        &self,
        spec: &gatos_types::jobs::JobSpec,
        id: Ulid,
        who: Option<(KeyId, String)>,
    ) {
        let (key, actor) = who.map_or((None, None), |(k, a)| (Some(k), Some(a)));
        let due = {
            let mut p = self
                .gatos
                .catalog_pending()
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            p.push(Facts {
                id,
                queue: spec.queue.clone(),
                caps: spec.required_capabilities.clone(),
                labels: spec.labels.clone(),
                key,
                actor,
            });
            p.len() >= PENDING_MAX
        };
        if due {
            self.flush_catalog();
        }
    }

    /// Appends the facts this handle holds ([`Pending`]). A process that read the catalog
    /// before (gatosd, once it listed) first reads what was appended since and leaves out
    /// the jobs a listing caught up meanwhile (a CLI `jobs ls` while gatosd holds lines);
    /// one that never read it (a CLI enqueue) does not read a whole catalog to spare a
    /// line: the same facts twice are harmless. A failure is logged, not returned: those
    /// jobs are caught up from their refs by the next listing.
    pub(crate) fn flush_catalog(&self) {
        let mut facts = std::mem::take(
            &mut *self
                .gatos
                .catalog_pending()
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        if facts.is_empty() {
            return;
        }
        let path = self.catalog_path();
        let read_before = cache()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(&path);
        if read_before {
            match self.read_catalog(&path) {
                Ok(have) => facts.retain(|f| !have.contains_key(&f.id)),
                Err(e) => {
                    tracing::debug!(error = %e, "could not read the job catalog before appending")
                }
            }
        }
        if facts.is_empty() {
            return;
        }
        if let Err(e) = self.append(&path, &facts) {
            tracing::warn!(
                error = %e,
                jobs = facts.len(),
                "could not append enqueued jobs to the job catalog; a listing will catch them up"
            );
        }
    }

    fn catalog_path(&self) -> PathBuf {
        self.gatos
            .store()
            .gatos_dir()
            .join("index")
            .join("jobs")
            .join(FILE)
    }

    /// `jobs.list`: a page of jobs matching `q`, oldest first, and the cursor of the next.
    ///
    /// # Errors
    /// `InvalidInput` for a bad query; when refs, commits or the catalog cannot be read.
    pub fn page(&self, q: &Query) -> Result<Page> {
        self.page_in(&Live(self.gatos), q, self.gatos.now())
    }

    /// [`Jobs::page`] on the refs of `src`, with job states derived at `as_of`.
    ///
    /// # Errors
    /// As [`Jobs::page`].
    pub fn page_in(&self, src: &dyn RefSource, q: &Query, as_of: Timestamp) -> Result<Page> {
        q.check()?;
        let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
        // Archived jobs, when asked (the archive's index, whole), and live ones streamed
        // from their refs in id order from the cursor: a page reads the refs of the jobs it
        // passes over, not of every job.
        let archived: BTreeMap<Ulid, archive::Archived> = if q.wants_archive() {
            archive::all_in(self.gatos, src)?
                .into_iter()
                .filter(|a| q.after.is_none_or(|c| a.id > c))
                .map(|a| (a.id, a))
                .collect()
        } else {
            BTreeMap::new()
        };
        let mut live = LiveJobs::new(src, q.start_after());
        let mut older = archived.keys().copied().peekable();
        let mut jobs = Vec::new();
        // The live refs of the jobs returned, for their enqueuers (read at the end).
        let mut listed: BTreeMap<Ulid, Refs> = BTreeMap::new();
        let mut last = None;
        let mut ended = false;
        while !ended {
            // The next ids in range, live and archived merged in order (a job both live
            // and archived is served from its live refs).
            let mut batch: Vec<(Ulid, Option<Refs>)> = Vec::new();
            while batch.len() < BATCH {
                let next = match (live.peek()?, older.peek().copied()) {
                    (Some((l, r)), a) if a.is_none_or(|a| l <= a) => {
                        live.next();
                        if a == Some(l) {
                            older.next();
                        }
                        Some((l, Some(r)))
                    }
                    (_, a) => {
                        older.next();
                        a.map(|a| (a, None))
                    }
                };
                let Some((id, refs)) = next else {
                    ended = true;
                    break;
                };
                if q.past_range(id) {
                    ended = true;
                    break;
                }
                if q.id_in_range(id) {
                    batch.push((id, refs));
                }
            }
            // The catalog is read (and caught up) only when a filter needs what it holds: a
            // plain listing reads the jobs it returns and nothing else.
            let facts = if q.needs_facts() && !batch.is_empty() {
                let ids: Vec<Ulid> = batch.iter().map(|(id, _)| *id).collect();
                let refs: BTreeMap<Ulid, Refs> = batch
                    .iter()
                    .filter_map(|(id, r)| r.map(|r| (*id, r)))
                    .collect();
                Some(self.catalog_facts(&ids, &refs, &archived)?)
            } else {
                None
            };
            for (id, refs) in batch {
                if jobs.len() == limit {
                    return Ok(Page {
                        jobs: self.with_enqueuers(jobs, &listed, &archived)?,
                        next_cursor: last,
                    });
                }
                last = Some(id);
                // A job without facts could not be read: listing goes on without it
                // (doctor reports it), as `jobs ls` always has.
                if let Some(facts) = &facts {
                    let Some(f) = facts.get(&id) else { continue };
                    if !f.matches(q) {
                        continue;
                    }
                }
                let rec = match (refs, archived.get(&id)) {
                    (Some(refs), _) => readable(id, self.gatos.job_record_at(id, refs, false))?,
                    (None, Some(a)) => {
                        if q.state.is_some_and(|s| s != a.state) {
                            continue;
                        }
                        readable(id, self.gatos.job_record_at(id, a.refs(), true))?
                    }
                    (None, None) => None,
                };
                let Some(rec) = rec else { continue };
                let row = self.row_at(&rec, as_of);
                if q.state.is_some_and(|s| s != row.state) {
                    continue;
                }
                if let Some(r) = refs {
                    listed.insert(id, r);
                }
                jobs.push(row);
            }
        }
        Ok(Page {
            jobs: self.with_enqueuers(jobs, &listed, &archived)?,
            next_cursor: None,
        })
    }

    /// Gives each row of a page its enqueuer (key, actor, trusted) from the catalog: a
    /// job it lacks is caught up once (its enqueue signature checked, a line appended);
    /// only the jobs returned are read, not those a filter passed over.
    fn with_enqueuers(
        &self,
        mut jobs: Vec<JobRow>,
        live: &BTreeMap<Ulid, Refs>,
        archived: &BTreeMap<Ulid, archive::Archived>,
    ) -> Result<Vec<JobRow>> {
        if jobs.is_empty() {
            return Ok(jobs);
        }
        let ids: Vec<Ulid> = jobs.iter().map(|j| j.id).collect();
        let facts = self.catalog_facts(&ids, live, archived)?;
        let keys = self.gatos.keys();
        let trust = Trust {
            own: keys.current(),
            trusted: keys.trusted(),
        };
        for row in &mut jobs {
            row.enqueuer = facts.get(&row.id).map(|f| f.view(&trust));
        }
        Ok(jobs)
    }

    /// The facts of `ids`, from the catalog, caught up from the refs for ids it lacks.
    fn catalog_facts(
        &self,
        ids: &[Ulid],
        live: &BTreeMap<Ulid, Refs>,
        archived: &BTreeMap<Ulid, archive::Archived>,
    ) -> Result<Arc<HashMap<Ulid, Facts>>> {
        self.flush_catalog();
        let path = self.catalog_path();
        let mut all = self.read_catalog(&path)?;
        let missing: Vec<Ulid> = ids
            .iter()
            .filter(|id| !all.contains_key(id))
            .copied()
            .collect();
        if !missing.is_empty() {
            let mut new = Vec::new();
            for id in missing {
                let refs = match (live.get(&id), archived.get(&id)) {
                    (Some(r), _) => *r,
                    (None, Some(a)) => a.refs(),
                    (None, None) => continue,
                };
                let Some(rec) = readable(id, self.gatos.job_record_at(id, refs, false))? else {
                    continue;
                };
                // A line is never rewritten: only what the job's commits say goes in (a
                // failure to read them is returned, not recorded as "no enqueuer").
                let (key, actor) = match enqueuer::check(self.gatos, id, rec.job_commit)? {
                    enqueuer::Verdict::Trusted(s) | enqueuer::Verdict::Untrusted(s) => {
                        (Some(s.enqueuer.key), Some(s.enqueuer.actor))
                    }
                    enqueuer::Verdict::Unsigned | enqueuer::Verdict::Invalid(_) => (None, None),
                };
                new.push(Facts {
                    id,
                    queue: rec.spec.queue.clone(),
                    caps: rec.spec.required_capabilities.clone(),
                    labels: rec.spec.labels.clone(),
                    key,
                    actor,
                });
            }
            self.append(&path, &new)?;
            let map = Arc::make_mut(&mut all);
            for f in new {
                map.insert(f.id, f);
            }
        }
        Ok(all)
    }

    /// Reads the catalog: what this process read before, plus what was appended since.
    fn read_catalog(&self, path: &PathBuf) -> Result<Arc<HashMap<Ulid, Facts>>> {
        let mut caches = cache().lock().unwrap_or_else(PoisonError::into_inner);
        let c = caches.entry(path.clone()).or_insert_with(|| Cached {
            file: (0, 0),
            read: 0,
            facts: Arc::default(),
        });
        let mut f = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                c.read = 0;
                c.facts = Arc::default();
                return Ok(Arc::default());
            }
            Err(e) => return Err(io("opening the job catalog", e)),
        };
        let meta = f.metadata().map_err(|e| io("reading the job catalog", e))?;
        let file = (
            std::os::unix::fs::MetadataExt::dev(&meta),
            std::os::unix::fs::MetadataExt::ino(&meta),
        );
        if file != c.file || meta.len() < c.read {
            // A new file (rebuilt by a process, ours or another): read it from the start.
            c.file = file;
            c.read = 0;
            c.facts = Arc::default();
        }
        f.seek(std::io::SeekFrom::Start(c.read))
            .map_err(|e| io("reading the job catalog", e))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)
            .map_err(|e| io("reading the job catalog", e))?;
        // Only whole lines: a line being appended is read next time.
        let whole = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        for line in buf[..whole]
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
        {
            match serde_json::from_slice::<Facts>(line) {
                Ok(facts) => {
                    Arc::make_mut(&mut c.facts).insert(facts.id, facts);
                }
                Err(e) => {
                    // A torn or foreign line: start again from the refs, with a new (empty)
                    // file renamed into place under the lock, so no appender writes into a
                    // file that is going away and every reader sees a new inode.
                    tracing::warn!(error = %e, "the job catalog has a bad line; rebuilding it");
                    drop(f);
                    self.restart(path, file)?;
                    c.file = (0, 0);
                    c.read = 0;
                    c.facts = Arc::default();
                    return Ok(Arc::default());
                }
            }
        }
        c.read += whole as u64;
        Ok(c.facts.clone())
    }

    /// Replaces the catalog with an empty one, unless another process did already (the file
    /// is no longer the one `seen` names).
    fn restart(&self, path: &PathBuf, seen: (u64, u64)) -> Result<()> {
        let _guard = self.gatos.hold(FAMILY)?;
        match std::fs::metadata(path) {
            Ok(m)
                if (
                    std::os::unix::fs::MetadataExt::dev(&m),
                    std::os::unix::fs::MetadataExt::ino(&m),
                ) == seen => {}
            // Gone, or already replaced: nothing to do.
            _ => return Ok(()),
        }
        let tmp = path.with_extension("jsonl.tmp");
        std::fs::write(&tmp, b"").map_err(|e| io("rebuilding the job catalog", e))?;
        std::fs::rename(&tmp, path).map_err(|e| io("rebuilding the job catalog", e))?;
        Ok(())
    }

    fn append(&self, path: &PathBuf, facts: &[Facts]) -> Result<()> {
        if facts.is_empty() {
            return Ok(());
        }
        let mut text = Vec::new();
        for f in facts {
            serde_json::to_writer(&mut text, f)
                .map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
            text.push(b'\n');
        }
        let _guard = self.gatos.hold(FAMILY)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io("creating the index directory", e))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| io("opening the job catalog", e))?;
        // A line left torn by a crash is completed by a newline first, so the next
        // reader sees one bad line (and rebuilds) rather than a merged one.
        let len = f
            .metadata()
            .map_err(|e| io("reading the job catalog", e))?
            .len();
        if len > 0 {
            let mut last = [0u8; 1];
            let mut r = std::fs::File::open(path).map_err(|e| io("reading the job catalog", e))?;
            r.seek(std::io::SeekFrom::Start(len - 1))
                .map_err(|e| io("reading the job catalog", e))?;
            r.read_exact(&mut last)
                .map_err(|e| io("reading the job catalog", e))?;
            if last[0] != b'\n' {
                text.insert(0, b'\n');
            }
        }
        f.write_all(&text)
            .map_err(|e| io("appending to the job catalog", e))?;
        Ok(())
    }
}

/// Tells whether the catalog has a line for `id` (tests).
#[doc(hidden)]
pub fn catalogued(gatos: &Gatos, id: Ulid) -> Result<bool> {
    let jobs = gatos.jobs();
    let path = jobs.catalog_path();
    Ok(jobs.read_catalog(&path)?.contains_key(&id))
}
