//! Rows from the repository, read as of a recorded ref state: messages by topic scan,
//! jobs (live and archived) with their attempts and results, checkpoints.
//!
//! Every reader streams: one message or one job at a time reaches the sink.

use std::collections::BTreeMap;

use gatos::jobs::archive;
use gatos::jobs::lifecycle::ClaimLink;
use gatos::jobs::records::{JobRecord, Refs, STDERR_PATH, STDOUT_PATH};
use gatos::messages::Cursor;
use gatos::snapshot::{RefKind, Snapshot};
use gatos::{Error, Gatos};
use gatos_types::jobs::{ClaimDoc, ClaimState, JobState, Status};
use gatos_types::{ErrorCode, Oid, Timestamp, Topic, Ulid};

use crate::schema::Cell;

/// The refs an export reads: every gatos ref at one moment, classified by kind.
pub type RefState = Snapshot;

/// Reads every gatos ref once: the state an export is of.
///
/// # Errors
/// When refs cannot be listed.
pub fn snapshot(gatos: &Gatos) -> Result<RefState, Error> {
    gatos.snapshot()
}

/// The topics' head refs of a state: `(topic, head)`, by topic.
pub fn topic_heads(state: &RefState) -> Vec<(Topic, Oid)> {
    state.topic_heads()
}

/// A consumer checkpoint ref: `(ref name, group, topic, commit)`.
pub type CheckpointRef = (String, String, String, Oid);

/// The consumer checkpoint refs of a state, by name.
pub fn checkpoint_refs(state: &RefState) -> Vec<CheckpointRef> {
    state
        .checkpoints()
        .into_iter()
        .map(|(n, g, t, o)| (n.to_owned(), g.to_string(), t.to_string(), o))
        .collect()
}

/// An archive month ref: `(month, tip)`.
pub type MonthRef = (String, Oid);

/// Live jobs' refs and archive month refs of a state.
pub fn job_refs(state: &RefState) -> (BTreeMap<Ulid, Refs>, Vec<MonthRef>) {
    state.jobs()
}

/// The refs each table reads (they enter the ref-state digest), by name.
pub fn refs_for(state: &RefState, tables: &[&str], topics: &[Topic]) -> Vec<(String, Oid)> {
    let wants_jobs = tables
        .iter()
        .any(|t| matches!(*t, "jobs" | "attempts" | "results"));
    let wants_trust = tables.contains(&"results");
    state
        .entries()
        .iter()
        .filter(|e| match &e.kind {
            Some(RefKind::MessageHead(t)) => tables.contains(&"messages") && topics.contains(t),
            Some(RefKind::Consumer(..)) => tables.contains(&"checkpoints"),
            Some(
                RefKind::Job(_)
                | RefKind::JobClaim(_)
                | RefKind::JobResult(_)
                | RefKind::JobCancel(_)
                | RefKind::ArchiveJobs(_),
            ) => wants_jobs,
            Some(
                RefKind::TrustKey(_) | RefKind::TrustRevoked(_) | RefKind::TrustRevocation(..),
            ) => wants_trust,
            _ => false,
        })
        .map(|e| (e.name.clone(), e.oid))
        .collect()
}

/// A message's row: topic, seq, ulid, content_id, commit, published_at, payload.
pub fn message_row(
    topic: &str,
    seq: u64,
    ulid: Ulid,
    content_id: &str,
    commit: Oid,
    payload_jcs: &str,
) -> Vec<Cell> {
    vec![
        Cell::Text(topic.to_owned()),
        Cell::Int(i64::try_from(seq).unwrap_or(i64::MAX)),
        Cell::Text(ulid.to_string()),
        Cell::Text(content_id.to_owned()),
        Cell::Text(commit.to_string()),
        Cell::time(gatos::messages::ulid_time(ulid)),
        Cell::Text(payload_jcs.to_owned()),
    ]
}

/// Reads a message commit's metadata.
///
/// # Errors
/// When it is not a message commit.
pub fn message_meta(gatos: &Gatos, commit: Oid) -> Result<gatos::messages::chain::Meta, Error> {
    let c = gatos.objects().commit(commit)?;
    gatos::messages::chain::meta(&c)
}

/// Streams a topic's messages with `lo <= seq <= hi`, oldest first, as of its head
/// commit `head` (whose seq is `head_seq`). Fails with `Conflict` when a sync rewrote the
/// topic below `head` while reading.
///
/// # Errors
/// When the topic cannot be read.
pub fn scan_topic(
    gatos: &Gatos,
    topic: &Topic,
    head: Oid,
    head_seq: u64,
    lo: u64,
    hi: u64,
    mut f: impl FnMut(u64, Vec<Cell>) -> Result<(), Error>,
) -> Result<(), Error> {
    let hi = hi.min(head_seq);
    if lo > hi {
        return Ok(());
    }
    let limit = hi - lo + 1;
    gatos.messages().scan(
        topic,
        &Cursor::Seq(lo.saturating_sub(1)),
        Some(limit),
        |m| {
            let row = message_row(
                topic.as_str(),
                m.seq,
                m.ulid,
                &m.content_id.to_string(),
                m.commit,
                m.payload.get(),
            );
            f(m.seq, row)?;
            Ok(true)
        },
    )?;
    // What we read must be the chain below the recorded head.
    if gatos.messages().commit_at(topic, head_seq)? != Some(head) {
        return Err(Error::new(
            ErrorCode::Conflict,
            format!(
                "topic '{topic}' was rewritten while exporting (a sync re-appended its tail); export again"
            ),
        ));
    }
    Ok(())
}

/// Which of a job's tables are wanted (the others are not read).
#[derive(Debug, Clone, Copy)]
pub struct Need {
    /// `attempts` rows (the claim chain).
    pub attempts: bool,
    /// The `results` row (result, logs, proof verification).
    pub results: bool,
    /// `attempts.outcome` as `gatos-export/1` and `/2` derived it (a final timeout or a
    /// signal is `failed`), to verify their exports against the repository.
    pub legacy_outcomes: bool,
}

impl Need {
    /// What the filter's tables need.
    pub fn of(filter: &crate::filter::Filter) -> Need {
        Need {
            attempts: filter.table("attempts").is_some(),
            results: filter.table("results").is_some(),
            legacy_outcomes: false,
        }
    }
}

/// The rows of one job.
#[derive(Debug, Default)]
pub struct JobRows {
    /// Its `jobs` row.
    pub job: Vec<Cell>,
    /// Its `attempts` rows.
    pub attempts: Vec<Vec<Cell>>,
    /// Its `results` row.
    pub result: Option<Vec<Cell>>,
    /// Whether its state is final (it cannot change without a ref moving).
    pub is_final: bool,
    /// Whether it has a result or a cancel: its rows are then the same at every moment,
    /// and none of them puts `as_of` in the filter spec (ADR 0024).
    pub finished: bool,
}

/// Derives a job's rows as of `as_of` (its state depends on the time: leases expire).
///
/// # Errors
/// When its commits cannot be read.
pub fn job_rows(
    gatos: &Gatos,
    rec: &JobRecord,
    as_of: Timestamp,
    need: Need,
) -> Result<JobRows, Error> {
    let d = gatos::jobs::state::derive(rec, as_of, gatos.lease_skew());
    let manifest = gatos_types::jcs::to_vec_of(&rec.spec)
        .map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
    let job = vec![
        Cell::Text(rec.id.to_string()),
        Cell::Text(rec.spec.queue.to_string()),
        Cell::Text(d.state.as_str().to_owned()),
        Cell::Int(i64::from(d.attempt)),
        Cell::Int(rec.spec.priority),
        Cell::time(gatos::messages::ulid_time(rec.id)),
        Cell::Text(rec.content_id.to_string()),
        Cell::Text(String::from_utf8_lossy(&manifest).into_owned()),
    ];
    // The claim chain is read once: for the attempts and for the proof's claim.
    let chain = match &rec.claim {
        Some((tip, doc)) if need.attempts || (need.results && rec.result.is_some()) => {
            gatos::jobs::lifecycle::claim_chain(gatos, *tip, Some(doc))?
        }
        _ => Vec::new(),
    };
    let attempts = if need.attempts && need.legacy_outcomes {
        legacy_attempt_rows(rec, &chain)
    } else if need.attempts {
        attempt_rows(rec, &chain)
    } else {
        Vec::new()
    };
    let result = match &rec.result {
        None => None,
        Some(_) if !need.results => None,
        Some((commit, doc)) => {
            // One read of the result's files serves the row and the proof's verification.
            let files = gatos::jobs::lifecycle::proof_files(gatos, *commit)?;
            let digest = |path: &str| {
                Cell::opt_text(
                    files
                        .subjects
                        .iter()
                        .find(|(p, _)| p == path)
                        .map(|(_, b)| gatos_types::Digest::of(b).to_string()),
                )
            };
            let stdout = digest(STDOUT_PATH);
            let stderr = digest(STDERR_PATH);
            let pred = files.poe.as_deref().and_then(gatos::proofs::predicate_of);
            let verified = gatos
                .jobs()
                .verify_record_with(rec, Some(Ok(files)), Some(&chain))
                .verified;
            // Why it ended (ADR 0029), from the result and the claim it closed.
            let closed = chain
                .iter()
                .find(|l| l.doc.attempt == doc.attempt && l.doc.state == ClaimState::Closed)
                .map(|l| &l.doc)
                .or(rec.claim.as_ref().map(|(_, c)| c));
            let reason = gatos::jobs::ended::of_result(rec, doc, closed);
            let reason = gatos_types::jcs::to_vec_of(&reason)
                .map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
            Some(vec![
                Cell::Text(rec.id.to_string()),
                Cell::Int(i64::from(doc.attempt)),
                Cell::Text(
                    match doc.status {
                        Status::Succeeded => "succeeded",
                        Status::Failed => "failed",
                    }
                    .to_owned(),
                ),
                doc.exit_code
                    .map_or(Cell::Null, |c| Cell::Int(i64::from(c))),
                pred.as_ref()
                    .map_or(Cell::Null, |p| Cell::time(p.started_at)),
                pred.as_ref()
                    .map_or(Cell::Null, |p| Cell::time(p.finished_at)),
                stdout,
                stderr,
                Cell::Bool(verified),
                Cell::Text(String::from_utf8_lossy(&reason).into_owned()),
            ])
        }
    };
    Ok(JobRows {
        job,
        attempts,
        result,
        is_final: matches!(
            d.state,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        ) && !d.lost_final,
        finished: rec.result.is_some() || rec.cancel.is_some(),
    })
}

/// One row per attempt, from the claim chain: who claimed it, with which key, when, the
/// last lease it held and how it ended, in one word of its end reason (ADR 0029):
/// `succeeded`, `failed`, `signal`, `timeout`, `lost`, `cancelled`; null while it runs.
fn attempt_rows(rec: &JobRecord, chain: &[ClaimLink]) -> Vec<Vec<Cell>> {
    rows_per_attempt(rec, chain, |_, last, superseded| {
        gatos::jobs::ended::of_attempt(rec, last, superseded).map(|r| r.outcome().to_owned())
    })
}

/// [`attempt_rows`] as `gatos-export/1` and `/2` derived `outcome`: the released claim's
/// outcome, else the result's status (so a final timeout or signal is `failed`).
fn legacy_attempt_rows(rec: &JobRecord, chain: &[ClaimLink]) -> Vec<Vec<Cell>> {
    rows_per_attempt(rec, chain, |attempt, last, superseded| match last.state {
        ClaimState::Released | ClaimState::Closed => match (last.outcome, &rec.result) {
            (Some(o), _) => Some(o.as_str().to_owned()),
            (None, Some((_, res))) if res.attempt == attempt => Some(
                match res.status {
                    Status::Succeeded => "succeeded",
                    Status::Failed => "failed",
                }
                .to_owned(),
            ),
            (None, _) => None,
        },
        // A later attempt took over without this one releasing: its lease was lost.
        ClaimState::Running | ClaimState::Heartbeat if superseded => Some("lost".to_owned()),
        ClaimState::Running | ClaimState::Heartbeat => None,
    })
}

/// The attempts rows of a claim chain, `outcome(attempt, its last claim, superseded by a
/// later attempt)` naming how each ended.
fn rows_per_attempt(
    rec: &JobRecord,
    chain: &[ClaimLink],
    outcome: impl Fn(u32, &ClaimDoc, bool) -> Option<String>,
) -> Vec<Vec<Cell>> {
    // Newest first: the first commit seen of an attempt is its last.
    let mut by_attempt: BTreeMap<u32, (&ClaimDoc, Option<&ClaimDoc>)> = BTreeMap::new();
    for link in chain {
        let doc = &link.doc;
        let e = by_attempt.entry(doc.attempt).or_insert((doc, None));
        if doc.state == ClaimState::Running {
            e.1 = Some(doc);
        }
    }
    let last_attempt = by_attempt.keys().next_back().copied().unwrap_or(0);
    by_attempt
        .into_iter()
        .map(|(attempt, (last, first))| {
            let start = first.unwrap_or(last);
            vec![
                Cell::Text(rec.id.to_string()),
                Cell::Int(i64::from(attempt)),
                Cell::Text(start.worker.to_string()),
                Cell::opt_text(start.worker_key),
                Cell::time(start.claimed_at),
                Cell::time(last.lease_until),
                Cell::opt_text(outcome(attempt, last, attempt < last_attempt)),
            ]
        })
        .collect()
}

/// Every job of a state: live ones from their refs, archived ones (not also live) from
/// the recorded archive tips, oldest first, one at a time.
///
/// # Errors
/// When refs or commits cannot be read, or `f` fails.
pub fn each_job(
    gatos: &Gatos,
    state: &RefState,
    mut f: impl FnMut(Ulid, Refs, bool) -> Result<(), Error>,
) -> Result<(), Error> {
    let (live, months) = job_refs(state);
    let mut archived: BTreeMap<Ulid, Refs> = BTreeMap::new();
    for (m, tip) in &months {
        for a in archive::month_at(gatos, m, *tip)? {
            if !live.contains_key(&a.id) {
                archived.insert(a.id, a.refs());
            }
        }
    }
    let mut l = live.into_iter().peekable();
    let mut a = archived.into_iter().peekable();
    loop {
        let take_live = match (l.peek(), a.peek()) {
            (None, None) => return Ok(()),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(x), Some(y)) => x.0 < y.0,
        };
        let (id, refs, is_archived) = if take_live {
            let (id, r) = l
                .next()
                .ok_or_else(|| Error::new(ErrorCode::Internal, "empty"))?;
            (id, r, false)
        } else {
            let (id, r) = a
                .next()
                .ok_or_else(|| Error::new(ErrorCode::Internal, "empty"))?;
            (id, r, true)
        };
        f(id, refs, is_archived)?;
    }
}

/// A checkpoint's row: group, topic, seq, ulid.
///
/// # Errors
/// When its commit cannot be read.
pub fn checkpoint_row(
    gatos: &Gatos,
    group: &str,
    topic: &str,
    oid: Oid,
) -> Result<Vec<Cell>, Error> {
    let (doc, _): (serde_json::Value, _) = gatos.objects().doc(oid, "checkpoint.json")?;
    Ok(vec![
        Cell::Text(group.to_owned()),
        Cell::Text(topic.to_owned()),
        doc.get("seq")
            .and_then(serde_json::Value::as_i64)
            .map_or(Cell::Null, Cell::Int),
        Cell::opt_text(doc.get("ulid").and_then(serde_json::Value::as_str)),
    ])
}
