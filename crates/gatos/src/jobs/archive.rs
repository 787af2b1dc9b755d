//! Archiving finished jobs out of `refs/gatos/jobs/` (DESIGN §2).
//!
//! Every push, fetch and ref listing costs in proportion to the live refs, so jobs that
//! finished longer ago than `gatos.jobs.archiveAfter` are folded into
//! `refs/gatos/archive/jobs/<yyyy-mm>` (the month of the job's ULID): each archive commit
//! has the previous archive commit as first parent, then the folded jobs' result, cancel
//! and claim tips (which reach the job commits), so every object stays reachable; its tree
//! holds `index.json` naming what it folded. Only then are the per-job refs deleted (two
//! steps, in that order: a crash between them leaves a job both live and archived, which
//! the next run finishes, never a job in neither place).
//!
//! Lookups go through a local cache per month (`<git-dir>/gatos/index/jobs/archive/`),
//! keyed by the month's tip and extended by walking only the new archive commits.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use gatos_store::refs::{Edit, Options, names};
use gatos_types::jobs::JobState;
use gatos_types::trailers::{Trailers, keys};
use gatos_types::{Dur, ErrorCode, Oid, Queue, Timestamp, Ulid, jcs};
use serde::{Deserialize, Serialize};

use super::records::{JobRecord, Refs, read_doc};
use super::state;
use crate::Gatos;
use crate::error::{Error, Result};

/// Jobs folded per archive commit (each adds up to two parents).
pub const JOBS_PER_COMMIT: usize = 200;
/// The document of an archive commit.
pub const INDEX_PATH: &str = "index.json";

/// One archived job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Archived {
    /// The job.
    pub id: Ulid,
    /// Its queue.
    pub queue: Queue,
    /// Its final state.
    pub state: JobState,
    /// The job commit.
    pub job: Oid,
    /// The claim chain's last commit.
    pub claim: Option<Oid>,
    /// The result commit.
    pub result: Option<Oid>,
    /// The cancel commit.
    pub cancel: Option<Oid>,
    /// When it finished.
    pub finished_at: Timestamp,
}

impl Archived {
    /// The refs the job had.
    pub fn refs(&self) -> Refs {
        Refs {
            job: Some(self.job),
            claim: self.claim,
            result: self.result,
            cancel: self.cancel,
        }
    }
}

/// `index.json` of an archive commit.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IndexDoc {
    month: String,
    /// The previous archive commit of the month (also the first parent), null for the first.
    prev: Option<Oid>,
    jobs: Vec<Archived>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct MonthCache {
    tip: Option<Oid>,
    jobs: BTreeMap<Ulid, Archived>,
}

/// What an archive run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Jobs folded into the archive (and removed from `refs/gatos/jobs/`).
    pub archived: u64,
    /// Jobs found already archived whose live refs were removed now.
    pub finished_earlier_run: u64,
    /// Finished jobs not old enough yet.
    pub too_recent: u64,
    /// Jobs left live because their refs moved while archiving (retried next run).
    pub moved: u64,
    /// Archive commits written.
    pub commits: u64,
    /// The months touched.
    pub months: Vec<String>,
}

/// Returns the month a job is archived under: that of its ULID's time.
pub fn month_of(id: Ulid) -> String {
    Timestamp::from_millis(i64::try_from(id.timestamp_ms()).unwrap_or(i64::MAX)).utc_month()
}

fn cache_dir(gatos: &Gatos) -> PathBuf {
    gatos
        .store()
        .gatos_dir()
        .join("index")
        .join("jobs")
        .join("archive")
}

fn io(what: &str, e: std::io::Error) -> Error {
    Error::new(
        ErrorCode::Internal,
        format!("job archive cache: {what}: {e}"),
    )
}

fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::InvalidEnvelope, what.to_string())
}

/// Returns the jobs of a month's archive as of the chain tip `tip` (an export's recorded
/// ref state), oldest first.
///
/// # Errors
/// When the chain cannot be read.
pub fn month_at(gatos: &Gatos, month: &str, tip: Oid) -> Result<Vec<Archived>> {
    Ok(month_from(gatos, month, Some(tip))?
        .jobs
        .into_values()
        .collect())
}

/// Reads a month's archive, from the cache and the commits added since.
fn month(gatos: &Gatos, month: &str) -> Result<MonthCache> {
    let tip = gatos.store().read_ref(&names::archive_jobs(month))?;
    month_from(gatos, month, tip)
}

fn month_from(gatos: &Gatos, month: &str, tip: Option<Oid>) -> Result<MonthCache> {
    let path = cache_dir(gatos).join(format!("{month}.json"));
    let mut cache: MonthCache = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    if cache.tip == tip {
        return Ok(cache);
    }
    // Walk back from the tip to the cached tip (or the root); the newest entry of a job
    // wins.
    let mut r = gatos.store().reader();
    let mut fresh: BTreeMap<Ulid, Archived> = BTreeMap::new();
    let mut at = tip;
    let mut reached_cache = false;
    while let Some(commit) = at {
        if Some(commit) == cache.tip {
            reached_cache = true;
            break;
        }
        let (doc, _): (IndexDoc, _) = read_doc(&mut r, commit, INDEX_PATH)?;
        if doc.month != month {
            return Err(corrupt(format_args!(
                "archive commit {commit} of {month} says it is of {}",
                doc.month
            )));
        }
        for a in doc.jobs {
            fresh.entry(a.id).or_insert(a);
        }
        at = doc.prev;
    }
    if !reached_cache {
        // The chain does not contain the cached tip (it was replaced): start over.
        cache.jobs.clear();
    }
    cache.jobs.extend(fresh);
    cache.tip = tip;
    if let Err(e) = save(gatos, month, &cache) {
        tracing::debug!(error = %e, "could not save the job archive cache");
    }
    Ok(cache)
}

fn save(gatos: &Gatos, month: &str, cache: &MonthCache) -> Result<()> {
    let dir = cache_dir(gatos);
    std::fs::create_dir_all(&dir).map_err(|e| io("create", e))?;
    let bytes =
        serde_json::to_vec(cache).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
    // Each writer renames its own file into place: whole caches, each true of its tip.
    let tmp = dir.join(format!(
        "{month}.json.{}.{}",
        std::process::id(),
        gatos.entropy().random80()
    ));
    std::fs::write(&tmp, bytes).map_err(|e| io("write", e))?;
    std::fs::rename(&tmp, dir.join(format!("{month}.json"))).map_err(|e| io("rename", e))
}

/// Writes an archive commit folding `entries` after `prev` (not moving any ref); `keep`
/// are further parents whose commits it keeps reachable without folding them (a chain of
/// this node's that a sync folds onto the hub's).
///
/// # Errors
/// When the commits cannot be read or written.
pub(crate) fn archive_commit(
    gatos: &Gatos,
    m: &str,
    prev: Option<Oid>,
    entries: &[Archived],
    keep: &[Oid],
) -> Result<Oid> {
    let mut parents: Vec<Oid> = prev.into_iter().collect();
    let mut r = gatos.store().reader();
    for a in entries {
        let mut tips: Vec<Oid> = Vec::new();
        if let Some(res) = a.result {
            tips.push(res);
            // The result reaches the job and its closed claim; anything else, too.
            let p = r.commit(res)?.parents;
            if let Some(c) = a.claim.filter(|c| !p.contains(c)) {
                tips.push(c);
            }
            // A cancel beside the result is a commit of its own (on the job).
            tips.extend(a.cancel);
        } else {
            tips.extend(a.cancel);
            tips.extend(a.claim);
            if a.cancel.is_none() {
                tips.push(a.job);
            }
        }
        for t in tips {
            if !parents.contains(&t) {
                parents.push(t);
            }
        }
    }
    for k in keep {
        if !parents.contains(k) {
            parents.push(*k);
        }
    }
    let doc = IndexDoc {
        month: m.to_owned(),
        prev,
        jobs: entries.to_vec(),
    };
    let bytes = jcs::to_vec_of(&doc)?;
    let trailers = Trailers::new()
        .with(keys::KIND, "archive")
        .with("Month", m)
        .with("Jobs", entries.len())
        .with(keys::CONTENT_ID, gatos_types::Digest::of(&bytes));
    gatos.write_job_commit(
        &[(INDEX_PATH, &bytes)],
        &parents,
        &trailers,
        &format!(
            "archive {} {} of {m}",
            entries.len(),
            if entries.len() == 1 { "job" } else { "jobs" }
        ),
        gatos.now(),
    )
}

/// Reads the archive chain from `tip` back (newest entry of a job wins), without the cache:
/// for chains fetched from a remote.
///
/// # Errors
/// When the archive commits cannot be read.
pub(crate) fn index_at(gatos: &Gatos, tip: Option<Oid>) -> Result<BTreeMap<Ulid, Archived>> {
    let mut r = gatos.store().reader();
    let mut out: BTreeMap<Ulid, Archived> = BTreeMap::new();
    let mut at = tip;
    while let Some(commit) = at {
        let (doc, _): (IndexDoc, _) = read_doc(&mut r, commit, INDEX_PATH)?;
        for a in doc.jobs {
            out.entry(a.id).or_insert(a);
        }
        at = doc.prev;
    }
    Ok(out)
}

/// Checks an archive commit that arrived from a remote: its index parses, names `month`,
/// links to its first parent, and folds only finished jobs of that month whose commits it
/// keeps reachable: each is one of its parents or a parent of one that is (a result's are
/// the job and the claim it closes, a cancel's the job), as [`archive_commit`] makes them.
/// That the commits merely exist here is not enough: a signature does not cover parents,
/// so a copy of an honest archive commit without them would make every node drop the
/// jobs' live refs for an archive that keeps none of their commits.
///
/// Returns the previous archive commit of the month.
///
/// # Errors
/// `InvalidEnvelope` naming what is wrong.
pub(crate) fn check_commit(
    gatos: &Gatos,
    c: &gatos_store::objects::Commit,
    month: &str,
) -> Result<Option<Oid>> {
    let mut r = gatos.store().reader();
    let (doc, _): (IndexDoc, _) = read_doc(&mut r, c.id, INDEX_PATH)?;
    if doc.month != month || doc.prev.is_some_and(|p| c.parents.first() != Some(&p)) {
        return Err(corrupt(format_args!(
            "archive commit {} does not continue the chain of {month}",
            c.id
        )));
    }
    let tips: HashSet<Oid> = c
        .parents
        .iter()
        .skip(usize::from(doc.prev.is_some()))
        .copied()
        .collect();
    for a in &doc.jobs {
        let finished = match a.state {
            JobState::Succeeded | JobState::Failed => a.result.is_some(),
            JobState::Cancelled => a.cancel.is_some() || a.result.is_some(),
            _ => false,
        };
        // A cancel beside a result (a commit of its own on the job): archives written
        // before it was kept did not keep it, and archiving removed its ref, so a node
        // that fetches such a month never has it; it is not asked for.
        let loose_cancel = a.cancel.filter(|_| a.result.is_some());
        let own: Vec<Oid> = [Some(a.job), a.claim, a.result, a.cancel]
            .into_iter()
            .flatten()
            .filter(|o| Some(*o) != loose_cancel)
            .collect();
        let mut reached: HashSet<Oid> = HashSet::new();
        for o in own.iter().filter(|o| tips.contains(o)) {
            reached.insert(*o);
            if let Ok(commit) = r.commit(*o) {
                reached.extend(commit.parents);
            }
        }
        let kept = own.iter().all(|o| reached.contains(o) && r.exists(*o));
        if month_of(a.id) != month || !finished || !kept {
            return Err(corrupt(format_args!(
                "archive commit {} folds job {} that is not a finished job of {month} it holds",
                c.id, a.id
            )));
        }
    }
    Ok(doc.prev)
}

/// The previous archive commit of an archive commit.
///
/// # Errors
/// When the commit cannot be read.
pub(crate) fn prev_of(gatos: &Gatos, commit: Oid) -> Result<Option<Oid>> {
    let mut r = gatos.store().reader();
    let (doc, _): (IndexDoc, _) = read_doc(&mut r, commit, INDEX_PATH)?;
    Ok(doc.prev)
}

/// Finds an archived job's refs.
///
/// # Errors
/// When the archive cannot be read.
pub fn find(gatos: &Gatos, id: Ulid) -> Result<Option<Refs>> {
    find_in(gatos, &crate::refs::Live(gatos), id)
}

/// [`find`] in the archive month of `src`.
///
/// # Errors
/// As [`find`].
pub fn find_in(gatos: &Gatos, src: &dyn crate::refs::RefSource, id: Ulid) -> Result<Option<Refs>> {
    let m = month_of(id);
    let Some(tip) = src.read(names::archive_jobs(&m).as_str())? else {
        return Ok(None);
    };
    Ok(month_from(gatos, &m, Some(tip))?
        .jobs
        .get(&id)
        .map(Archived::refs))
}

/// Returns every archived job, oldest first.
///
/// # Errors
/// When the archive cannot be read.
pub fn all(gatos: &Gatos) -> Result<Vec<Archived>> {
    all_in(gatos, &crate::refs::Live(gatos))
}

/// [`all`] from the archive months of `src`, each read at its tip there.
///
/// # Errors
/// As [`all`].
pub fn all_in(gatos: &Gatos, src: &dyn crate::refs::RefSource) -> Result<Vec<Archived>> {
    let mut out = Vec::new();
    let prefix = names::archive_prefix();
    for (name, tip) in src.list_after(&prefix, None, usize::MAX)? {
        if let Some(names::RefKind::ArchiveJobs(m)) = names::RefKind::parse(&name) {
            out.extend(month_from(gatos, &m, Some(tip))?.jobs.into_values());
        }
    }
    out.sort_by_key(|a| a.id);
    Ok(out)
}

/// When a finished job finished: its result's time, or for a cancelled job the later of
/// the cancel and its last claim commit.
fn finished_at(gatos: &Gatos, rec: &JobRecord) -> Result<Timestamp> {
    let mut r = gatos.store().reader();
    let mut t = i64::MIN;
    for c in [
        rec.result.as_ref().map(|(c, _)| *c),
        rec.cancel.as_ref().map(|(c, _)| *c),
        rec.claim.as_ref().map(|(c, _)| *c),
    ]
    .into_iter()
    .flatten()
    {
        t = t.max(r.commit(c)?.time);
    }
    Ok(Timestamp::from_millis(t.saturating_mul(1000)))
}

/// The live jobs, with their refs.
///
/// # Errors
/// When the refs cannot be listed.
pub fn live(gatos: &Gatos) -> Result<BTreeMap<Ulid, Refs>> {
    Ok(collect_live(
        gatos.store().list_refs(&names::jobs_prefix())?,
    ))
}

/// The jobs of a listing of job refs, with their refs.
fn collect_live(listed: Vec<(names::RefName, gatos_types::Oid)>) -> BTreeMap<Ulid, Refs> {
    let mut jobs: BTreeMap<Ulid, Refs> = BTreeMap::new();
    for (name, oid) in listed {
        let empty = Refs {
            job: None,
            claim: None,
            result: None,
            cancel: None,
        };
        match name.kind() {
            Some(names::RefKind::Job(id)) => jobs.entry(id).or_insert(empty).job = Some(oid),
            Some(names::RefKind::JobClaim(id)) => jobs.entry(id).or_insert(empty).claim = Some(oid),
            Some(names::RefKind::JobResult(id)) => {
                jobs.entry(id).or_insert(empty).result = Some(oid)
            }
            Some(names::RefKind::JobCancel(id)) => {
                jobs.entry(id).or_insert(empty).cancel = Some(oid)
            }
            _ => {}
        }
    }
    jobs
}

/// The live jobs enqueued at or before `cutoff_ms` (their ids' time), with their refs: the
/// only ones an archive after that cutoff can take, read without opening the refs of the
/// younger jobs.
///
/// # Errors
/// When the refs cannot be listed.
pub fn live_until(gatos: &Gatos, cutoff_ms: i64) -> Result<BTreeMap<Ulid, Refs>> {
    let Some(after) = u64::try_from(cutoff_ms).ok().and_then(|c| c.checked_add(1)) else {
        return Ok(BTreeMap::new());
    };
    // The least id of the next millisecond sorts after every id of `cutoff_ms` or before.
    let until = format!("{}{}", names::jobs_prefix(), Ulid::from_parts(after, 0));
    Ok(collect_live(
        gatos
            .store()
            .list_refs_before(&names::jobs_prefix(), &until)?,
    ))
}

fn deletes(id: Ulid, refs: &Refs) -> Vec<Edit> {
    [
        (names::job(id), refs.job),
        (names::job_claim(id), refs.claim),
        (names::job_result(id), refs.result),
        (names::job_cancel(id), refs.cancel),
    ]
    .into_iter()
    .filter_map(|(n, o)| o.map(|o| Edit::delete(n, o)))
    .collect()
}

/// Removes the live refs of jobs already in the archive. Jobs whose refs moved meanwhile
/// are left for the next run. Returns how many were removed.
fn remove_live(gatos: &Gatos, jobs: &[(Ulid, Refs)]) -> Result<(u64, u64)> {
    if jobs.is_empty() {
        return Ok((0, 0));
    }
    let all: Vec<Edit> = jobs
        .iter()
        .flat_map(|(id, refs)| deletes(*id, refs))
        .collect();
    match gatos.store().update_refs(&all, &Options::default()) {
        Ok(_) => return Ok((jobs.len() as u64, 0)),
        Err(gatos_store::Error::CasMismatch { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    // One moved: go job by job.
    let (mut removed, mut moved) = (0, 0);
    for (id, refs) in jobs {
        match gatos
            .store()
            .update_refs(&deletes(*id, refs), &Options::default())
        {
            Ok(_) => removed += 1,
            Err(gatos_store::Error::CasMismatch { .. }) => moved += 1,
            Err(e) => return Err(e.into()),
        }
    }
    Ok((removed, moved))
}

/// Folds jobs that finished at least `older_than` ago into the archive and removes their
/// refs from `refs/gatos/jobs/`. Safe to run concurrently with workers and with itself.
///
/// # Errors
/// When refs or commits cannot be read or written.
pub fn archive(gatos: &Gatos, older_than: Dur) -> Result<Report> {
    let now = gatos.now();
    let cutoff = now.minus(older_than);
    let skew = gatos.lease_skew();
    let mut report = Report::default();
    let mut by_month: BTreeMap<String, Vec<(Archived, Refs)>> = BTreeMap::new();
    for (id, refs) in live(gatos)? {
        if refs.job.is_none() {
            continue;
        }
        // A malformed job (doctor's job-malformed) is not archived and stops no other.
        let Some(mut rec) = super::readable(id, gatos.job_record_at(id, refs, false))? else {
            continue;
        };
        let mut refs = refs;
        let d = state::derive(&rec, now, skew);
        if d.lost_final {
            // Its last attempt lost its lease: write the result it is owed first.
            if gatos.jobs().close_if_lost(id)?.is_some() {
                refs = gatos.job_refs(id)?;
                rec = match super::readable(id, gatos.job_record_at(id, refs, false))? {
                    Some(r) => r,
                    None => continue,
                };
            }
        }
        let d = state::derive(&rec, now, skew);
        if !d.state.is_final() || d.lost_final {
            continue;
        }
        // A cancelled job whose worker still holds a live lease is still stopping.
        if let Some((_, c)) = &rec.claim
            && rec.result.is_none()
            && matches!(
                c.state,
                gatos_types::jobs::ClaimState::Running | gatos_types::jobs::ClaimState::Heartbeat
            )
            && now <= c.lease_until.plus(skew)
        {
            continue;
        }
        let at = finished_at(gatos, &rec)?;
        if at > cutoff {
            report.too_recent += 1;
            continue;
        }
        let a = Archived {
            id,
            queue: rec.spec.queue.clone(),
            state: d.state,
            job: rec.job_commit,
            claim: refs.claim,
            result: refs.result,
            cancel: refs.cancel,
            finished_at: at,
        };
        by_month.entry(month_of(id)).or_default().push((a, refs));
    }
    for (m, jobs) in by_month {
        for chunk in jobs.chunks(JOBS_PER_COMMIT) {
            fold(gatos, &m, chunk, &mut report)?;
        }
        report.months.push(m);
    }
    if report.archived + report.finished_earlier_run > 0 {
        tracing::info!(archived = report.archived, months = ?report.months, "archived finished jobs");
    }
    Ok(report)
}

/// Writes one archive commit for `chunk` (skipping jobs already archived), then removes
/// the jobs' live refs.
fn fold(gatos: &Gatos, m: &str, chunk: &[(Archived, Refs)], report: &mut Report) -> Result<()> {
    let name = names::archive_jobs(m);
    for _ in 0..8 {
        let cache = month(gatos, m)?;
        let (done, todo): (Vec<_>, Vec<_>) = chunk
            .iter()
            .partition(|(a, _)| cache.jobs.get(&a.id) == Some(a));
        let mut removable: Vec<(Ulid, Refs)> = done.iter().map(|(a, r)| (a.id, *r)).collect();
        if !todo.is_empty() {
            let entries: Vec<Archived> = todo.iter().map(|(a, _)| a.clone()).collect();
            let commit = archive_commit(gatos, m, cache.tip, &entries, &[])?;
            match gatos.store().update_refs(
                &[Edit::update(name.clone(), cache.tip, commit)],
                &Options::default(),
            ) {
                Ok(_) => {}
                // Another archiver moved the month on: read it again.
                Err(gatos_store::Error::CasMismatch { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
            report.commits += 1;
            report.archived += todo.len() as u64;
            removable.extend(todo.iter().map(|(a, r)| (a.id, *r)));
        }
        report.finished_earlier_run += done.len() as u64;
        let (_, moved) = remove_live(gatos, &removable)?;
        report.moved += moved;
        return Ok(());
    }
    Err(Error::new(
        ErrorCode::Conflict,
        format!("the archive of {m} kept changing; try again"),
    ))
}

/// Automatic maintenance archives at most this often (or every `archiveAfter`, if
/// shorter, but not more than once a minute).
pub const AUTO_INTERVAL: Dur = Dur::from_secs(3600);

/// Archives with `gatos.jobs.archiveAfter` if the last automatic run is long enough ago
/// (what `maintenance --auto` and the daemon's maintenance do). `None` when not due.
///
/// # Errors
/// As [`archive`].
pub fn archive_if_due(gatos: &Gatos) -> Result<Option<Report>> {
    let after = gatos.settings().archive_after;
    let every = Dur::from_millis(AUTO_INTERVAL.as_millis().min(after.as_millis()).max(60_000));
    let stamp = gatos
        .store()
        .gatos_dir()
        .join("index")
        .join("jobs")
        .join("archive-last");
    let now = gatos.now();
    let last = std::fs::read_to_string(&stamp)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .map(Timestamp::from_millis);
    if last.is_some_and(|t| now.since(t) < every && t <= now) {
        return Ok(None);
    }
    if let Some(dir) = stamp.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io("create", e))?;
    }
    std::fs::write(&stamp, now.as_millis().to_string()).map_err(|e| io("write", e))?;
    archive(gatos, after).map(Some)
}
