//! Reads at a ref state (ADR 0044 §5): `Service::at` resolves what a request names (a
//! `stateRef`, or the live refs, minted now), and [`Reads`] serves the read operations
//! on that one source. The live operations (`jobs.list`, `messages.read`) are the same
//! functions on [`Src::Live`], so every rule is written once.

use gatos::jobs::records::JobRecord;
use gatos::messages::{Cursor, ReadOptions};
use gatos::refs::{Live, RefSource};
use gatos::state::{At, Meta, StateId};
use gatos_types::wire::ReadPage;
use gatos_types::{ErrorCode, Timestamp, Ulid};

use crate::service::{CallError, Service, cursor};
use crate::types::{ListParams, ListResult, ReadParams};

type R<T> = Result<T, CallError>;

/// What a request reads.
#[derive(Debug, Clone)]
pub enum StateSel {
    /// A state by its id (`stateRef`).
    Ref(StateId),
    /// The live refs, minted now (`refPath: "live"`).
    Live,
    /// A durable snapshot by name (`refPath: "snapshots/<name>"`): its refs, loaded into
    /// the window unless its state is kept there already.
    Snapshot(gatos_types::SnapshotName),
}

impl StateSel {
    /// What a `refPath` names: `live`, or `snapshots/<name>`.
    ///
    /// # Errors
    /// `InvalidInput` (`data.argument: "refPath"`) for anything else, or a snapshot name
    /// that breaks the name rule.
    pub fn path(p: &str) -> Result<StateSel, gatos::Error> {
        if p == "live" {
            return Ok(StateSel::Live);
        }
        if let Some(name) = p.strip_prefix("snapshots/") {
            return gatos::snapshot::saved::name(name)
                .map(StateSel::Snapshot)
                .map_err(|e| e.with_detail("argument", "refPath"));
        }
        Err(gatos::Error::new(
            ErrorCode::InvalidInput,
            format!(
                "unknown refPath {:?}: this daemon serves \"live\" and \"snapshots/<name>\"",
                p.chars().take(80).collect::<String>()
            ),
        )
        .with_detail("argument", "refPath"))
    }
}

/// Where reads take their refs from.
#[derive(Debug, Clone)]
pub enum Src {
    /// The store as it is at each read (the plain operations).
    Live,
    /// One kept state.
    State(At),
}

/// The read operations on one source.
pub struct Reads<'s> {
    service: &'s Service,
    src: Src,
}

impl std::fmt::Debug for Reads<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reads").field("src", &self.src).finish()
    }
}

impl Service {
    /// Reads on `src`.
    pub fn reads(&self, src: Src) -> Reads<'_> {
        Reads { service: self, src }
    }

    /// The state a request names: a kept one by id (`Gone` when evicted, `NotFound` when
    /// never kept here), or the live refs minted now (a mint that starts after the call
    /// did, so the answer includes every write acknowledged before it).
    ///
    /// # Errors
    /// As said; when the refs cannot be listed.
    pub fn at(&self, sel: &StateSel) -> R<(At, Meta)> {
        let at = match sel {
            // In ADR 0044's order: the window, a durable snapshot holding that state, the
            // current state (a pin survives a restart when nothing moved since), then
            // `Gone` for an evicted state, `NotFound` for one never kept.
            StateSel::Ref(id) => match self.window().get(id) {
                Ok(at) => at,
                Err(e) if matches!(e.code(), ErrorCode::NotFound | ErrorCode::Gone) => {
                    if let Some(doc) = self.snapshot_index().find_state(self.gatos(), id)?
                        && let Ok(n) = doc.name.parse::<gatos_types::SnapshotName>()
                    {
                        self.snapshot_state(&n)?
                    } else {
                        let now = self.window().mint(self.gatos())?;
                        if now.id()? == *id {
                            now
                        } else {
                            return Err(e.into());
                        }
                    }
                }
                Err(e) => return Err(e.into()),
            },
            StateSel::Live => self.window().mint(self.gatos())?,
            StateSel::Snapshot(n) => self.snapshot_state(n)?,
        };
        let meta = at.meta()?;
        Ok((at, meta))
    }
}

impl Service {
    /// A durable snapshot's state: the kept one when the window holds its id, else its
    /// refs loaded into the window (with the snapshot's time).
    fn snapshot_state(&self, n: &gatos_types::SnapshotName) -> R<At> {
        let Some((_, doc)) = gatos::snapshot::saved::get(self.gatos(), n)? else {
            return Err(
                gatos::Error::new(ErrorCode::NotFound, format!("no snapshot named {n}"))
                    .with_detail("snapshot", n.to_string())
                    .into(),
            );
        };
        if let Ok(id) = doc.state.parse::<StateId>()
            && let Ok(at) = self.window().get(&id)
        {
            return Ok(at);
        }
        let (doc, c) = gatos::snapshot::saved::load(self.gatos(), n)?;
        Ok(self.window().keep_taken(
            c,
            doc.taken_at,
            self.gatos().now(),
            std::time::Instant::now(),
        ))
    }
}

impl Service {
    /// `state.resolve`: the live refs minted now, a kept state by id (`Gone` when evicted,
    /// `NotFound` when never kept here, `InvalidInput` for a malformed id), or a durable
    /// snapshot's state by `ref_path` (`snapshots/<name>`; `NotFound` when there is none).
    ///
    /// # Errors
    /// As said.
    pub fn state_resolve(&self, p: crate::types::StateParams) -> R<crate::types::StateRow> {
        let sel = match (p.state_ref, p.ref_path) {
            (Some(_), Some(_)) => {
                return Err(gatos::Error::new(
                    ErrorCode::InvalidInput,
                    "give state_ref or ref_path, not both",
                )
                .with_detail("argument", "ref_path")
                .into());
            }
            (Some(s), None) => StateSel::Ref(s.parse::<StateId>()?),
            (None, Some(p)) => StateSel::path(&p)?,
            (None, None) => StateSel::Live,
        };
        let (_, m) = self.at(&sel)?;
        Ok(crate::types::StateRow {
            state: m.id.to_string(),
            taken_at: m.taken_at,
            refs: u64::try_from(m.refs).unwrap_or(u64::MAX),
            exact: m.exact,
            kept_until: m.kept_until,
        })
    }
}

impl Reads<'_> {
    fn source(&self) -> Box<dyn RefSource + '_> {
        match &self.src {
            Src::Live => Box::new(Live(self.service.gatos())),
            Src::State(at) => Box::new(at.clone()),
        }
    }

    /// `jobs.list` at the source, job states derived at `as_of`.
    ///
    /// # Errors
    /// As [`Service::jobs_list`].
    pub fn jobs_list(&self, p: ListParams, as_of: Timestamp) -> R<ListResult> {
        let src = self.source();
        let page = self.service.gatos().jobs().page_in(
            src.as_ref(),
            &gatos::jobs::catalog::Query {
                queue: p.queue,
                state: p.state,
                capability: p.capability,
                enqueuer: p.enqueuer,
                since: p.since,
                until: p.until,
                id_prefix: p.id_prefix,
                label: p.label,
                archived: p.all,
                after: p.cursor,
                limit: p.limit,
            },
            as_of,
        )?;
        Ok(ListResult {
            jobs: page.jobs,
            next_cursor: page.next_cursor,
        })
    }

    /// `jobs.list` backward at a kept state: the `last` jobs before `before` (the end
    /// without it) that pass the filter, oldest first, and whether more may come before
    /// them. Candidates are walked back through the state's job refs (and the archive
    /// there when the filter reads it) in doubling chunks; each chunk is listed forward by
    /// the same catalog code as `jobs.list`, bounded by the chunk's upper id (its
    /// millisecond, through `until`), so a selective filter reads the jobs it passes and
    /// not the rest.
    ///
    /// # Errors
    /// `InvalidInput` on the live source (a backward walk needs a kept state); as
    /// [`Reads::jobs_list`].
    pub fn jobs_before(
        &self,
        p: ListParams,
        before: Option<Ulid>,
        last: usize,
        as_of: Timestamp,
    ) -> R<(Vec<gatos_types::jobs::JobRow>, bool)> {
        let Src::State(at) = &self.src else {
            return Err(gatos::Error::new(
                ErrorCode::InvalidInput,
                "jobs are paged backward at a ref state only",
            )
            .into());
        };
        let archive = p.all || p.state.is_some_and(gatos_types::jobs::JobState::is_final);
        let mut archived: Vec<Ulid> = if archive {
            gatos::jobs::archive::all_in(self.service.gatos(), at)?
                .into_iter()
                .map(|a| a.id)
                .collect()
        } else {
            Vec::new()
        };
        archived.sort_unstable();
        let mut upper = before;
        let mut chunk = last.max(32);
        let mut got: Vec<gatos_types::jobs::JobRow> = Vec::new();
        loop {
            // The `chunk` candidate ids just below `upper`, newest first.
            let mut cands: Vec<Ulid> = at.job_ids_before(upper, chunk)?;
            let cut = upper.map_or(archived.len(), |u| archived.partition_point(|a| *a < u));
            let lo = cut.saturating_sub(chunk);
            cands.extend(archived[lo..cut].iter().rev());
            cands.sort_unstable_by(|a, b| b.cmp(a));
            cands.dedup();
            let exhausted = cands.len() < chunk;
            cands.truncate(chunk);
            let Some(low) = cands.last().copied() else {
                break;
            };
            // Every match in [low, upper), oldest first, by the forward listing.
            let mut q = p.clone();
            q.cursor = low.to_u128().checked_sub(1).map(Ulid::from_u128);
            if let Some(u) = upper {
                let bound = Timestamp::from_millis(
                    gatos::messages::ulid_time(u).as_millis().saturating_add(1),
                );
                q.until = Some(q.until.map_or(bound, |t| t.min(bound)));
            }
            q.limit = Some((cands.len() + 64).min(gatos::jobs::catalog::MAX_LIMIT));
            let mut rows = self.jobs_list(q, as_of)?.jobs;
            rows.retain(|r| upper.is_none_or(|u| r.id < u));
            rows.append(&mut got);
            got = rows;
            if got.len() >= last || exhausted {
                let more = got.len() > last || !exhausted;
                let start = got.len().saturating_sub(last);
                return Ok((got.split_off(start), more));
            }
            upper = Some(low);
            chunk = (chunk * 2).min(4096);
        }
        Ok((got, false))
    }

    /// One job's record at the source (live refs, else the archive there).
    ///
    /// # Errors
    /// When its commits cannot be read.
    pub fn job_record(&self, id: Ulid) -> R<Option<JobRecord>> {
        let src = self.source();
        Ok(self.service.gatos().jobs().record_in(src.as_ref(), id)?)
    }

    /// `messages.read` at the source.
    ///
    /// # Errors
    /// As [`Service::messages_read`]; `Gone` at a state whose topic was rewritten since.
    pub fn messages_read(&self, p: ReadParams) -> R<ReadPage> {
        let since = cursor(p.since, p.since_seq, p.since_time, Cursor::Start)?;
        let limit = p.limit.unwrap_or(gatos::messages::DEFAULT_PAGE);
        let opts = ReadOptions { since, limit };
        let max = match self.service.config().max_page_bytes {
            0 => gatos::messages::DEFAULT_MAX_PAGE_BYTES,
            n => n,
        };
        let m = self.service.gatos().messages();
        Ok(match &self.src {
            Src::Live => m.read_capped(&p.topic, &opts, max)?,
            Src::State(at) => m.read_in(at, &p.topic, &opts, max)?,
        })
    }
}

impl Reads<'_> {
    /// One job's `jobs.get` row at the source, its state derived at `as_of` (without the
    /// live parts of `jobs.get`: `waiting`, the enqueuer's trust, kept result conflicts).
    ///
    /// # Errors
    /// When its commits cannot be read.
    pub fn job_row(&self, id: Ulid, as_of: Timestamp) -> R<Option<gatos_types::jobs::JobRow>> {
        Ok(self
            .job_record(id)?
            .map(|rec| self.service.gatos().jobs().row_at(&rec, as_of)))
    }
}

impl Reads<'_> {
    /// `manifests.list` at the source.
    ///
    /// # Errors
    /// When the manifests cannot be read.
    pub fn manifests_list(&self) -> R<Vec<gatos_types::jobs::ManifestRow>> {
        let src = self.source();
        Ok(self.service.gatos().manifests().list_in(src.as_ref())?)
    }
}

impl Reads<'_> {
    /// `topics.list` at the source: every topic with messages (or pruned ones), by name,
    /// and the topics whose refs do not read there (ADR 0047).
    ///
    /// # Errors
    /// When refs or head commits cannot be read (a store failure, not a damaged topic).
    pub fn topics_list(&self) -> R<gatos::messages::TopicListing> {
        let src = self.source();
        Ok(self.service.gatos().messages().listing_in(src.as_ref())?)
    }
}

impl Reads<'_> {
    /// `keys.list` at the source: keys and revocations published there; which keys this
    /// node trusts, and its own, from its configuration.
    ///
    /// # Errors
    /// When the refs or revocations cannot be read.
    pub fn keys_list(&self) -> R<Vec<gatos_types::jobs::KeyListRow>> {
        let src = self.source();
        Ok(self.service.gatos().keys().list_in(src.as_ref())?)
    }
}

impl Reads<'_> {
    /// `checkpoints.list` at the source: every consumer group's checkpoint, or those on
    /// `topic`, with the lag against the topic there, and those that do not read there
    /// (ADR 0047).
    ///
    /// # Errors
    /// When the refs cannot be listed or the store does not read (a checkpoint or topic
    /// that does not read is listed as damaged).
    pub fn checkpoints_list(
        &self,
        topic: Option<&gatos_types::Topic>,
    ) -> R<gatos::checkpoints::CheckpointListing> {
        let src = self.source();
        Ok(self
            .service
            .gatos()
            .checkpoints()
            .listing_in(src.as_ref(), topic, None)?)
    }
}

/// One attempt of a job: its claim commits, newest first.
#[derive(Debug, Clone)]
pub struct AttemptSteps {
    /// The attempt number.
    pub attempt: u32,
    /// Its claim commits and documents, newest first (claimed, heartbeats, the end).
    pub steps: Vec<gatos::jobs::lifecycle::ClaimLink>,
}

/// A file a job's result holds (a log or an output), described, not read out.
#[derive(Debug, Clone)]
pub struct FileMeta {
    /// Its path in the result commit (`logs/stdout`, `outputs/…`).
    pub path: String,
    /// Its size.
    pub bytes: u64,
    /// `blake3:` of its bytes.
    pub digest: gatos_types::Digest,
    /// For a log (`logs/stdout`, `logs/stderr`): whether the process wrote more than was
    /// kept (the proof's `truncated` when the result has one, else whether the stored
    /// bytes end with the worker's truncation note). `None` for an output.
    pub truncated: Option<bool>,
}

impl Reads<'_> {
    /// A job's attempts at the source, oldest first, from its claim chain.
    ///
    /// # Errors
    /// When the job's commits cannot be read.
    pub fn job_attempts(&self, id: Ulid) -> R<Vec<AttemptSteps>> {
        let Some(rec) = self.job_record(id)? else {
            return Ok(Vec::new());
        };
        let Some((tip, doc)) = &rec.claim else {
            return Ok(Vec::new());
        };
        let chain = gatos::jobs::lifecycle::claim_chain(self.service.gatos(), *tip, Some(doc))?;
        let mut out: Vec<AttemptSteps> = Vec::new();
        for link in chain.into_iter().rev() {
            match out.last_mut() {
                Some(a) if a.attempt == link.doc.attempt => a.steps.push(link),
                _ => out.push(AttemptSteps {
                    attempt: link.doc.attempt,
                    steps: vec![link],
                }),
            }
        }
        // Each attempt's steps newest first (pushed oldest first: one pass, not a shift per
        // step of a long chain).
        for a in &mut out {
            a.steps.reverse();
        }
        Ok(out)
    }

    /// The logs and outputs a job's result commit holds (what its proof covers).
    ///
    /// # Errors
    /// When the commit cannot be read.
    pub fn result_files(&self, result: gatos_types::Oid) -> R<Vec<FileMeta>> {
        let files = gatos::jobs::lifecycle::proof_files(self.service.gatos(), result)?;
        let predicate = files.poe.as_deref().and_then(gatos::proofs::predicate_of);
        Ok(files
            .subjects
            .into_iter()
            .map(|(path, bytes)| {
                let stream = match path.as_str() {
                    gatos_types::jobs::STDOUT_PATH => Some(predicate.as_ref().map(|p| &p.stdout)),
                    gatos_types::jobs::STDERR_PATH => Some(predicate.as_ref().map(|p| &p.stderr)),
                    _ => None,
                };
                let truncated = stream.map(|s| match s {
                    Some(info) => info.truncated,
                    None => ends_with_truncation_note(&bytes),
                });
                FileMeta {
                    bytes: u64::try_from(bytes.len()).unwrap_or(u64::MAX),
                    digest: gatos_types::Digest::of(&bytes),
                    path,
                    truncated,
                }
            })
            .collect())
    }
}

/// Whether a stored log ends with the worker's truncation note, `[gatos: output
/// truncated: KEPT of TOTAL bytes kept]` (a result without a proof records nothing else).
fn ends_with_truncation_note(bytes: &[u8]) -> bool {
    let Some(body) = bytes.strip_suffix(b" bytes kept]\n") else {
        return false;
    };
    let Some(start) = body
        .windows(27)
        .rposition(|w| w == b"\n[gatos: output truncated: ")
    else {
        return false;
    };
    let mid = &body[start + 27..];
    let text = String::from_utf8_lossy(mid);
    let mut parts = text.split(" of ");
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(kept), Some(total), None)
            if kept.parse::<u64>().is_ok() && total.parse::<u64>().is_ok()
    )
}

impl Reads<'_> {
    /// A topic's last position at the source (0: no messages).
    ///
    /// # Errors
    /// When its head cannot be read.
    pub fn topic_last_seq(&self, topic: &gatos_types::Topic) -> R<u64> {
        let src = self.source();
        Ok(self
            .service
            .gatos()
            .messages()
            .last_seq_in(src.as_ref(), topic)?)
    }
}

impl Reads<'_> {
    /// A key's revocation at the source, as it counts on this node (signed by the key
    /// itself or a key trusted here; merged as `keys` does).
    ///
    /// # Errors
    /// When the revocation commits cannot be read.
    pub fn key_revocation(&self, key: &gatos_types::KeyId) -> R<Option<gatos::keys::Revocation>> {
        let src = self.source();
        Ok(self
            .service
            .gatos()
            .keys()
            .revocation_in(src.as_ref(), key)?)
    }
}

impl Reads<'_> {
    /// [`Reads::messages_read`] that also stops before the first message whose ULID time
    /// is at or after `until` (in `seq` order): the page then ends the range (`end: true`).
    ///
    /// # Errors
    /// As [`Reads::messages_read`].
    pub fn messages_read_until(&self, p: ReadParams, until: Option<Timestamp>) -> R<ReadPage> {
        let mut page = self.messages_read(p)?;
        if let Some(until) = until
            && let Some(cut) = page
                .messages
                .iter()
                .position(|m| gatos::messages::ulid_time(m.ulid) >= until)
        {
            page.messages.truncate(cut);
            page.end = true;
            page.next_since = page.messages.last().map(|m| m.ulid);
        }
        Ok(page)
    }
}

impl Reads<'_> {
    /// The position of a retained message by its ULID (`None`: not in the topic). Reading
    /// that position at a state then says whether the state holds it.
    ///
    /// # Errors
    /// When the index cannot be read.
    pub fn message_seq(&self, topic: &gatos_types::Topic, ulid: Ulid) -> R<Option<u64>> {
        Ok(self
            .service
            .gatos()
            .messages()
            .position(topic, ulid)?
            .map(|(seq, _)| seq))
    }
}

impl Reads<'_> {
    /// A manifest's versions at the source, newest first: below `before` (all without
    /// it), at most `limit`.
    ///
    /// # Errors
    /// When commits cannot be read.
    pub fn manifest_versions(
        &self,
        name: &gatos_types::ManifestName,
        before: Option<u64>,
        limit: usize,
    ) -> R<Vec<gatos_types::jobs::ManifestRow>> {
        let src = self.source();
        Ok(self
            .service
            .gatos()
            .manifests()
            .versions_in(src.as_ref(), name, before, limit)?)
    }
}

impl Service {
    /// Every queue this node knows of, with its settings (backoff, admission cap) and its
    /// pending depth: local configuration and the ready index now, not a ref state.
    ///
    /// # Errors
    /// When settings do not parse, or the index cannot be read.
    pub fn queues_rows(&self) -> R<Vec<gatos_types::jobs::QueueRow>> {
        Ok(gatos::jobs::queues::rows(self.gatos(), None)?)
    }
}

impl Service {
    /// `queues.list`.
    ///
    /// # Errors
    /// As [`Service::queues_rows`].
    pub fn queues_list(&self) -> R<crate::types::QueuesResult> {
        Ok(crate::types::QueuesResult {
            queues: self.queues_rows()?,
        })
    }

    /// `jobs.attempts`: a job's attempts from its live claim chain.
    ///
    /// # Errors
    /// When the job's commits cannot be read.
    pub fn jobs_attempts(&self, p: crate::types::JobIdParams) -> R<crate::types::AttemptsResult> {
        let attempts = self.reads(Src::Live).job_attempts(p.id)?;
        Ok(crate::types::AttemptsResult {
            attempts: attempts
                .into_iter()
                .filter_map(|a| {
                    let first = a.steps.last()?.doc.clone();
                    let last = a.steps.first()?.doc.clone();
                    Some(crate::types::AttemptRow {
                        attempt: a.attempt,
                        worker: first.worker.to_string(),
                        claimed_at: first.claimed_at,
                        outcome: last.outcome,
                        exit_code: last.exit_code,
                        chain: a
                            .steps
                            .iter()
                            .map(|l| crate::types::ClaimStepRow {
                                commit: l.commit,
                                state: l.doc.state,
                                lease_until: l.doc.lease_until,
                                at: l.at,
                            })
                            .collect(),
                    })
                })
                .collect(),
        })
    }

    /// `manifests.versions`: a page of a manifest's versions, newest first.
    ///
    /// # Errors
    /// `InvalidInput` for a limit of 0 or above 1,000; when commits cannot be read.
    pub fn manifests_versions(
        &self,
        p: crate::types::ManifestVersionsParams,
    ) -> R<crate::types::ManifestVersionsResult> {
        let limit = p.limit.unwrap_or(100);
        if limit == 0 || limit > 1000 {
            return Err(CallError::Failed(gatos::Error::new(
                ErrorCode::InvalidInput,
                "limit must be between 1 and 1000",
            )));
        }
        Ok(crate::types::ManifestVersionsResult {
            versions: self
                .reads(Src::Live)
                .manifest_versions(&p.name, p.before, limit)?,
        })
    }
}

impl Reads<'_> {
    /// A topic's settings at the source (the defaults when it has none).
    ///
    /// # Errors
    /// `InvalidEnvelope` when stored settings do not parse.
    pub fn topic_config(&self, topic: &gatos_types::Topic) -> R<gatos_types::wire::TopicConfig> {
        let src = self.source();
        Ok(self
            .service
            .gatos()
            .messages()
            .config_in(src.as_ref(), topic)?)
    }
}

#[cfg(test)]
mod tests {
    use super::ends_with_truncation_note;

    #[test]
    fn the_worker_truncation_note_is_recognized_only_at_the_end() {
        assert!(ends_with_truncation_note(
            b"xxxx\n[gatos: output truncated: 100 of 5000 bytes kept]\n"
        ));
        assert!(!ends_with_truncation_note(b"all of it\n"));
        assert!(!ends_with_truncation_note(b""));
        assert!(!ends_with_truncation_note(
            b"\n[gatos: output truncated: 100 of 5000 bytes kept]\nmore\n"
        ));
        assert!(!ends_with_truncation_note(
            b"\n[gatos: output truncated: many of 5000 bytes kept]\n"
        ));
    }
}
