//! The job plane: jobs whose whole life — enqueue, claim, heartbeats, release, result,
//! proof — is commits and compare-and-swap ref updates under `refs/gatos/jobs/<id>/`
//! (DESIGN §2–4, ADR 0012).
//!
//! Exactly one ref per job is contested: `claim`. A first claim creates it; a heartbeat,
//! a release, a takeover and the final `closed` commit each move it by CAS from the value
//! the writer read, so of two racing workers exactly one wins. The result is written in one
//! transaction with the `closed` claim commit, so a worker whose claim was taken over can
//! never write it.

pub mod admission;
mod arbiter;
pub mod archive;
pub mod catalog;
pub mod ended;
pub mod enqueuer;
pub(crate) mod events;
pub mod group;
pub(crate) mod journal;
pub(crate) use events::emit as emit_event;
pub use events::topic as events_topic;
pub mod lifecycle;
pub mod logs;
pub mod manifest;
pub mod queues;
pub mod readahead;
pub(crate) mod ready;
pub mod records;
pub mod redact;
pub mod secrets;
pub mod state;
pub mod waiting;

use gatos_store::refs::{Edit, Options, names};
use gatos_types::jobs::{
    CancelDoc, ClaimView, EnqueueRow, JobRow, JobSpec, JobState, PoeView, ResolveRow, ResultView,
    VerifyRow,
};
use gatos_types::trailers::{Trailers, keys};
use gatos_types::{Digest, ErrorCode, Oid, Queue, Ulid};

pub use self::lifecycle::{ClaimOptions, Finish, Lease};
use self::records::{CANCEL_PATH, JOB_PATH, JobRecord, doc_bytes};
use crate::Gatos;
use crate::error::{Error, Result};

/// The topic job events are published on.
pub const EVENTS_TOPIC: &str = "gatos.jobs";

/// The job plane of one repository.
#[derive(Debug, Clone, Copy)]
pub struct Jobs<'g> {
    gatos: &'g Gatos,
}

impl Gatos {
    /// Returns the job plane.
    pub fn jobs(&self) -> Jobs<'_> {
        Jobs { gatos: self }
    }
}

/// Filters of `jobs ls`.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Only this queue.
    pub queue: Option<Queue>,
    /// Only this state (finished states also search the archive).
    pub state: Option<JobState>,
    /// Include archived jobs.
    pub archived: bool,
}

fn family(id: Ulid) -> String {
    names::job_lock_family(id)
}

impl<'g> Jobs<'g> {
    fn not_found(id: Ulid) -> Error {
        Error::new(
            ErrorCode::NotFound,
            format!("job {id} does not exist (nor in the archive)"),
        )
    }

    /// Reads a job's record from its live refs, or from the archive.
    ///
    /// # Errors
    /// When its commits cannot be read.
    pub fn record(&self, id: Ulid) -> Result<Option<JobRecord>> {
        self.record_in(&crate::refs::Live(self.gatos), id)
    }

    /// [`Jobs::record`] from the refs of `src`.
    ///
    /// # Errors
    /// As [`Jobs::record`].
    pub fn record_in(
        &self,
        src: &dyn crate::refs::RefSource,
        id: Ulid,
    ) -> Result<Option<JobRecord>> {
        let refs = self.gatos.job_refs_in(src, id)?;
        if refs.job.is_some() {
            return self.gatos.job_record_at(id, refs, false);
        }
        match archive::find_in(self.gatos, src, id)? {
            Some(refs) => self.gatos.job_record_at(id, refs, true),
            None => Ok(None),
        }
    }

    /// Enqueues a normalized manifest; returns the new job.
    ///
    /// # Errors
    /// As [`Jobs::enqueue_as`].
    pub fn enqueue(&self, spec: JobSpec) -> Result<EnqueueRow> {
        let actor = self.gatos.actor();
        self.enqueue_as(spec, &actor)
    }

    /// Enqueues a normalized manifest for `actor` (recorded in the signed enqueue
    /// envelope, ADR 0019); returns the new job.
    ///
    /// A queue with a `max_pending` limit admits the job only while this node counts fewer
    /// pending jobs in it; the count and the job ref's creation happen under the queue's
    /// admission lock, so racing enqueues on this node never pass the limit together
    /// (see [`admission`], ADR 0027).
    ///
    /// # Errors
    /// `SecretDetected` for raw secrets (scanned again here, whatever the source);
    /// `QueueFull` when the queue is at its limit (nothing is written).
    pub fn enqueue_as(&self, spec: JobSpec, actor: &str) -> Result<EnqueueRow> {
        self.enqueue_with(spec, actor, None)
    }

    /// Enqueues again what a failed or cancelled job asked for: a new job with the same
    /// manifest (its `run_after` dropped: it runs as soon as a worker takes it), made for
    /// this handle's actor, whose job commit names the old one in a `Retry-Of` trailer.
    /// The old job is left as it is. Admission limits apply as to any enqueue.
    ///
    /// # Errors
    /// `NotFound` for an unknown job; `Conflict` for a job that is not failed or
    /// cancelled (pending, running, or succeeded); what an enqueue fails with.
    pub fn retry(&self, id: Ulid) -> Result<EnqueueRow> {
        let row = self.show(id)?;
        if !matches!(row.state, JobState::Failed | JobState::Cancelled) {
            return Err(Error::new(
                ErrorCode::Conflict,
                format!(
                    "job {id} is {}; only a failed or cancelled job is retried",
                    row.state.as_str()
                ),
            )
            .with_detail("state", row.state.as_str()));
        }
        let Some(rec) = self.record(id)? else {
            return Err(Error::new(ErrorCode::NotFound, format!("no job {id}")));
        };
        let mut spec = rec.spec;
        spec.run_after = None;
        let actor = self.gatos.actor();
        self.enqueue_with(spec, &actor, Some(id))
    }

    fn enqueue_with(
        &self,
        spec: JobSpec,
        actor: &str,
        retry_of: Option<Ulid>,
    ) -> Result<EnqueueRow> {
        manifest::scan(&spec, &secrets::Allowlist::of(self.gatos))?;
        // A stored spec run again (a registry version, a retry) may be an earlier
        // release's: what a new job may not hold is refused here too.
        manifest::check_outputs_written(&spec)?;
        let admitted = admission::admit(self.gatos, &spec.queue)?;
        let now = self.gatos.now();
        let id = self.gatos.next_job_id();
        let doc = doc_bytes(&spec)?;
        let content_id = Digest::of(&doc);
        let mut trailers = Trailers::new()
            .with(keys::KIND, "job")
            .with(keys::JOB, id)
            .with(keys::CONTENT_ID, content_id)
            .with("Queue", &spec.queue)
            .with("Priority", spec.priority);
        if let Some(old) = retry_of {
            trailers = trailers.with(keys::RETRY_OF, old);
        }
        if let Some(src) = &spec.source {
            trailers = trailers
                .with(keys::MANIFEST, &src.name)
                .with(keys::VERSION, src.version);
        }
        // The enqueuer signs what it asked for; a node without a key writes an unsigned
        // job, which workers run only when told to (ADR 0019).
        let signed = match self.gatos.keys().signing_key()? {
            Some(key) => {
                let key_id = gatos_types::KeyId::from_bytes(key.verifying_key().to_bytes());
                trailers = trailers.with(enqueuer::ENQUEUER_KEY, key_id);
                let st = enqueuer::Statement {
                    job: id,
                    content_id,
                    queue: spec.queue.clone(),
                    priority: spec.priority,
                    enqueuer: enqueuer::Enqueuer {
                        key: key_id,
                        actor: actor.to_owned(),
                    },
                    enqueued_at: now,
                };
                Some((enqueuer::sign(&key, &st)?, st))
            }
            None => None,
        };
        let mut files: Vec<(&str, &[u8])> = vec![(JOB_PATH, &doc)];
        if let Some((e, _)) = &signed {
            files.push((enqueuer::ENQUEUE_PATH, e));
        }
        let subject = format!("job {id}");
        let ready = ready::Ready::new(self.gatos);
        let before = ready.stamp();
        let journaled = journal::on(self.gatos);
        let commit = if journaled {
            // Acknowledged after one append; the job ref follows within the flush bound,
            // and every gatos reader of job refs materializes it first (ADR 0046).
            let mut w = self.gatos.store().collector();
            let commit =
                self.gatos
                    .job_commit_into(&mut w, &files, &[], &trailers, &subject, now)?;
            journal::append(self.gatos, id, commit, &w.objects)?;
            commit
        } else {
            let commit = self
                .gatos
                .write_job_commit(&files, &[], &trailers, &subject, now)?;
            self.gatos
                .store()
                .update_refs(&[Edit::create(names::job(id), commit)], &Options::default())?;
            commit
        };
        self.gatos.remember_doc(commit, JOB_PATH, &doc, now);
        let rec = JobRecord {
            id,
            job_commit: commit,
            content_id,
            spec,
            claim: None,
            claim_at: None,
            result: None,
            cancel: None,
            archived: false,
        };
        // A journaled job made no job directory yet: its entry goes in without a stamp
        // (the materializer stamps past the directories it makes).
        let told = match ready::entry_for(&rec, now, self.gatos.lease_skew()) {
            Some(e) if journaled => ready.put(id, Some(e)),
            Some(e) => ready.created(e, before),
            None => Ok(()),
        };
        if let Err(err) = told {
            tracing::warn!(job = %id, error = %err, "could not update the job ready index; it will catch up");
        }
        drop(admitted);
        // What a check of the envelope and a listing's catalog catch-up would find, known
        // here without reading the commit back or verifying the signature just made.
        let who = signed.map(|(_, st)| {
            let who = (st.enqueuer.key, st.enqueuer.actor.clone());
            enqueuer::remember(self.gatos, commit, st);
            who
        });
        self.catalog_enqueued(&rec.spec, id, who);
        events::emit(
            self.gatos,
            gatos_types::jobs::JobEventKind::Enqueued,
            &rec,
            0,
            None,
            commit,
        );
        self.gatos.maybe_maintain();
        Ok(EnqueueRow {
            id,
            content_id,
            commit,
            state: JobState::Pending,
            retry_of,
        })
    }

    /// `jobs show`: the job's state, latest claim, result and proof status.
    ///
    /// # Errors
    /// `NotFound` for an unknown job.
    pub fn show(&self, id: Ulid) -> Result<JobRow> {
        let rec = self.record(id)?.ok_or_else(|| Self::not_found(id))?;
        let mut row = self.row(&rec);
        row.conflicts = self.result_conflicts(id)?;
        if !rec.archived {
            let v = enqueuer::check(self.gatos, id, rec.job_commit)?;
            let blocked =
                enqueuer::blocker(self.gatos, id, rec.job_commit, false)?.and_then(|b| b.reason());
            let (key, actor) = match &v {
                enqueuer::Verdict::Trusted(s) | enqueuer::Verdict::Untrusted(s) => {
                    (Some(s.enqueuer.key), Some(s.enqueuer.actor.clone()))
                }
                _ => (None, None),
            };
            row.enqueuer = Some(gatos_types::jobs::EnqueuerView {
                key,
                actor,
                trusted: matches!(v, enqueuer::Verdict::Trusted(_)),
                blocked: blocked.filter(|_| !d_is_final(row.state)),
            });
        }
        Ok(row)
    }

    /// `jobs resolve`: ends a result conflict that sync kept (ADR 0018) by choosing which
    /// result the job has: this node's own (`None`) or one of the kept ones. The others are
    /// set aside (their ids stay in the audit record). Audited.
    ///
    /// # Errors
    /// `NotFound` when the job has no kept result (or not the one named); `Conflict` when
    /// the chosen result is not of this job commit, or the job's refs moved meanwhile.
    pub fn resolve(&self, id: Ulid, keep: Option<Oid>) -> Result<ResolveRow> {
        let kept = self.result_conflicts(id)?;
        if kept.is_empty() {
            return Err(Error::new(
                ErrorCode::NotFound,
                format!("job {id} has no other result to resolve"),
            ));
        }
        let _guard = self.lock(id)?;
        let refs = self.gatos.job_refs(id)?;
        let Some(local) = refs.result else {
            return Err(Error::new(
                ErrorCode::Conflict,
                format!("job {id} has no result of its own here"),
            ));
        };
        let chosen = keep.unwrap_or(local);
        if chosen != local {
            if !kept.contains(&chosen) {
                return Err(Error::new(
                    ErrorCode::NotFound,
                    format!("{chosen} is not a result kept for job {id}"),
                ));
            }
            let c = self.gatos.store().reader().commit(chosen)?;
            let [job, closed] = c.parents.as_slice() else {
                return Err(Error::new(
                    ErrorCode::InvalidEnvelope,
                    format!("{chosen} is not a result commit"),
                ));
            };
            if Some(*job) != refs.job {
                return Err(Error::new(
                    ErrorCode::Conflict,
                    format!("{chosen} is a result of another job commit"),
                ));
            }
            let edits = [
                Edit::update(names::job_claim(id), refs.claim, *closed),
                Edit::update(names::job_result(id), Some(local), chosen),
            ];
            self.gatos
                .store()
                .update_refs_locked(&edits, &Options::default(), false)
                .map_err(|e| match e {
                    gatos_store::Error::CasMismatch { .. } => Error::new(
                        ErrorCode::Conflict,
                        format!("the refs of job {id} moved meanwhile; try again"),
                    ),
                    other => other.into(),
                })?;
        }
        let mut dropped: Vec<Oid> = kept.iter().copied().filter(|o| *o != chosen).collect();
        if chosen != local {
            dropped.push(local);
        }
        // The results not chosen are set aside, not deleted: their commits stay reachable,
        // and a sync that meets them again at a remote does not report them again.
        for o in &dropped {
            let aside = Edit::create(names::result_set_aside(id, &o.to_string()), *o);
            match self
                .gatos
                .store()
                .update_refs(&[aside], &Options::default())
            {
                Ok(_) | Err(gatos_store::Error::CasMismatch { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let drops: Vec<Edit> = kept
            .iter()
            .map(|o| Edit::delete(names::result_conflict(id, &o.to_string()), *o))
            .collect();
        self.gatos
            .store()
            .update_refs(&drops, &Options::default())?;
        crate::audit::record(
            self.gatos,
            "jobs.resolve",
            &format!("job:{id}"),
            serde_json::json!({"result": local, "kept": dropped.iter().chain([&chosen]).filter(|o| **o != local).collect::<Vec<_>>()}),
            serde_json::json!({"result": chosen, "dropped": dropped}),
            None,
        );
        let _ = ready::Ready::new(self.gatos).put(id, None);
        Ok(ResolveRow {
            id,
            kept: chosen,
            dropped,
        })
    }

    /// The other results sync kept for a job (ADR 0018).
    ///
    /// # Errors
    /// When refs cannot be read.
    pub fn result_conflicts(&self, id: Ulid) -> Result<Vec<Oid>> {
        Ok(self
            .gatos
            .store()
            .list_refs(&names::result_conflicts_prefix(id))?
            .into_iter()
            .map(|(_, o)| o)
            .collect())
    }

    fn row(&self, rec: &JobRecord) -> JobRow {
        self.row_at(rec, self.gatos.now())
    }

    /// The row of a job, its state derived at `now`.
    pub fn row_at(&self, rec: &JobRecord, now: gatos_types::Timestamp) -> JobRow {
        let d = state::derive(rec, now, self.gatos.lease_skew());
        let claim = rec.claim.as_ref().map(|(_, c)| ClaimView {
            worker: c.worker.clone(),
            worker_key: c.worker_key,
            attempt: c.attempt,
            lease_until: c.lease_until,
            last_heartbeat_at: rec.claim_at,
            state: c.state,
            ended: ended::of_latest(rec, now, self.gatos.lease_skew()),
        });
        let result = rec.result.as_ref().map(|(commit, r)| ResultView {
            status: r.status,
            exit_code: r.exit_code,
            commit: *commit,
        });
        let poe = rec.result.as_ref().and_then(|_| {
            let v = self.verify_record(rec);
            v.key.map(|key| PoeView {
                key,
                verified: v.verified,
                code: v.code,
                error: v.error,
            })
        });
        JobRow {
            id: rec.id,
            state: d.state,
            attempt: d.attempt,
            queue: rec.spec.queue.clone(),
            manifest: rec.spec.clone(),
            claim,
            result,
            poe,
            ended: d
                .state
                .is_final()
                .then(|| ended::of_job(rec, self.gatos.now(), self.gatos.lease_skew()))
                .flatten(),
            conflicts: Vec::new(),
            enqueuer: None,
            waiting: Vec::new(),
        }
    }

    /// `jobs ls`: live jobs (and archived ones when asked, or when filtering on a final
    /// state), oldest first.
    ///
    /// # Errors
    /// When refs or commits cannot be read.
    pub fn list(&self, opts: &ListOptions) -> Result<Vec<JobRow>> {
        let with_archive = opts.archived || opts.state.is_some_and(JobState::is_final);
        let mut rows = Vec::new();
        for rec in self.records(with_archive)? {
            if opts.queue.as_ref().is_some_and(|q| *q != rec.spec.queue) {
                continue;
            }
            let row = self.row(&rec);
            if opts.state.is_some_and(|s| s != row.state) {
                continue;
            }
            rows.push(row);
        }
        Ok(rows)
    }

    /// Every job's record, oldest first: the live ones, and the archived ones (not also
    /// live) when asked. Reads the archive once, not once per job.
    ///
    /// # Errors
    /// When refs or commits cannot be read.
    pub fn records(&self, with_archive: bool) -> Result<Vec<JobRecord>> {
        let mut out = std::collections::BTreeMap::new();
        for (id, refs) in archive::live(self.gatos)? {
            if let Some(rec) = readable(id, self.gatos.job_record_at(id, refs, false))? {
                out.insert(id, rec);
            }
        }
        if with_archive {
            for a in archive::all(self.gatos)? {
                if out.contains_key(&a.id) {
                    continue;
                }
                if let Some(rec) = readable(a.id, self.gatos.job_record_at(a.id, a.refs(), true))? {
                    out.insert(a.id, rec);
                }
            }
        }
        Ok(out.into_values().collect())
    }

    /// `jobs cancel`: a pending job never runs; a running one is stopped by its worker.
    /// Idempotent for a cancelled job. Audited.
    ///
    /// # Errors
    /// `NotFound`; `Conflict` for a job that already finished.
    pub fn cancel(&self, id: Ulid, reason: Option<String>) -> Result<JobRow> {
        let _guard = self.lock(id)?;
        let rec = self.record(id)?.ok_or_else(|| Self::not_found(id))?;
        if rec.archived {
            return Err(Error::new(
                ErrorCode::Conflict,
                format!("job {id} is archived; it finished long ago"),
            ));
        }
        let d = state::derive(&rec, self.gatos.now(), self.gatos.lease_skew());
        match d.state {
            JobState::Cancelled => return Ok(self.row(&rec)),
            JobState::Succeeded | JobState::Failed => {
                return Err(Error::new(
                    ErrorCode::Conflict,
                    format!("job {id} already {}", d.state.as_str()),
                ));
            }
            JobState::Pending | JobState::Running => {}
        }
        let now = self.gatos.now();
        let doc = CancelDoc {
            job: id,
            actor: self.gatos.actor(),
            requested_at: now,
            reason,
        };
        let bytes = doc_bytes(&doc)?;
        let trailers = Trailers::new()
            .with(keys::KIND, "cancel")
            .with(keys::JOB, id)
            .with(keys::ACTOR, &doc.actor);
        let trailers = match self.gatos.keys().current() {
            Some(k) => trailers.with(keys::ACTOR_KEY, k),
            None => trailers,
        };
        let commit = self.gatos.write_job_commit(
            &[(CANCEL_PATH, &bytes)],
            &[rec.job_commit],
            &trailers,
            &format!("cancel {id}"),
            now,
        )?;
        self.gatos.store().update_refs_locked(
            &[Edit::create(names::job_cancel(id), commit)],
            &Options::default(),
            false,
        )?;
        drop(_guard);
        let _ = ready::Ready::new(self.gatos).put(id, None);
        let why = gatos_types::jobs::EndReason::Cancelled {
            by: Some(doc.actor.clone()),
            reason: doc.reason.clone(),
            at: Some(doc.requested_at),
        };
        events::emit_with(
            self.gatos,
            gatos_types::jobs::JobEventKind::Cancelled,
            &rec,
            d.attempt,
            None,
            commit,
            Some(why),
        );
        // The audit record says why (ADR 0029); its actor is who asked.
        let mut after = serde_json::json!({"state": "cancelled"});
        if let Some(r) = &doc.reason {
            after["reason"] = serde_json::Value::String(r.clone());
        }
        crate::audit::record(
            self.gatos,
            "jobs.cancel",
            &format!("job:{id}"),
            serde_json::json!({"state": d.state.as_str()}),
            after,
            Some(commit),
        );
        self.show(id)
    }

    /// `jobs verify`: checks the job's proof (see [`crate::proofs::verify`]) and that
    /// `result.json` agrees with it. The row carries the proof as stored (`poe`), so a
    /// reader can check it again itself.
    ///
    /// # Errors
    /// `NotFound` for an unknown job (a job without a result is reported, not an error).
    pub fn verify(&self, id: Ulid) -> Result<VerifyRow> {
        let rec = self.record(id)?.ok_or_else(|| Self::not_found(id))?;
        let files = rec
            .result
            .as_ref()
            .map(|(commit, _)| lifecycle::proof_files(self.gatos, *commit));
        let poe = files
            .as_ref()
            .and_then(|f| f.as_ref().ok())
            .and_then(|f| f.poe.as_deref())
            .and_then(gatos_types::jobs::DsseEnvelope::parse);
        let mut row = self.verify_record_with(&rec, files, None);
        row.poe = poe;
        Ok(row)
    }

    /// `jobs verify --all`: every job with a result, live and archived.
    ///
    /// # Errors
    /// When refs cannot be listed.
    pub fn verify_all(&self) -> Result<Vec<VerifyRow>> {
        Ok(self
            .records(true)?
            .iter()
            .filter(|r| r.result.is_some())
            .map(|r| self.verify_record(r))
            .collect())
    }

    /// Verifies the proof of a record read by [`Gatos::job_record_at`] (see [`Jobs::verify`]).
    pub fn verify_record(&self, rec: &JobRecord) -> VerifyRow {
        let files = rec
            .result
            .as_ref()
            .map(|(commit, _)| lifecycle::proof_files(self.gatos, *commit));
        self.verify_record_with(rec, files, None)
    }

    /// [`Jobs::verify_record`] with the result's proof files already read by
    /// [`lifecycle::proof_files`] (`None` when the record has no result).
    ///
    /// `chain`, the job's claim chain read by [`lifecycle::claim_chain`] from its claim
    /// ref, saves reading those commits again.
    pub fn verify_record_with(
        &self,
        rec: &JobRecord,
        files: Option<Result<lifecycle::ProofFiles>>,
        chain: Option<&[lifecycle::ClaimLink]>,
    ) -> VerifyRow {
        let failed = |code: ErrorCode, error: String, key| VerifyRow {
            id: rec.id,
            verified: false,
            key,
            code: Some(code),
            error: Some(error),
            poe: None,
        };
        let Some((result_commit, result)) = &rec.result else {
            let why = match &rec.cancel {
                Some((_, c)) => {
                    let by = format!(
                        "cancelled by {}{}",
                        c.actor,
                        c.reason
                            .as_deref()
                            .map_or_else(String::new, |r| format!(" ({r})"))
                    );
                    let d = state::derive(rec, self.gatos.now(), self.gatos.lease_skew());
                    if d.state == JobState::Cancelled {
                        // No attempt was running: no result will ever be written.
                        format!(
                            "job {} was {by} before it ran: it will never have a result or a proof",
                            rec.id
                        )
                    } else {
                        format!(
                            "job {} was {by} while an attempt ran; that attempt has not recorded its end yet",
                            rec.id
                        )
                    }
                }
                None => format!("job {} has no result yet", rec.id),
            };
            return failed(ErrorCode::NotFound, why, None);
        };
        match files.unwrap_or_else(|| lifecycle::proof_files(self.gatos, *result_commit)) {
            Err(e) => failed(e.code(), e.to_string(), None),
            Ok(files) => {
                let Some(poe) = &files.poe else {
                    if result.reason.as_deref() == Some("lost") && files.subjects.is_empty() {
                        // Nothing ran to completion: there is nothing to prove.
                        return failed(
                            ErrorCode::NotFound,
                            "no proof: the job failed because its last attempt lost its lease"
                                .into(),
                            None,
                        );
                    }
                    return failed(
                        ErrorCode::SignatureInvalid,
                        "the result has no proof (poe.json)".into(),
                        None,
                    );
                };
                let key = crate::proofs::key_of(poe);
                // The claim the result closes is its second parent; its key must sign.
                let known = files.parents.get(1).and_then(|closed| {
                    chain?
                        .iter()
                        .find(|l| l.commit == *closed)
                        .map(|l| (l.commit, l.doc.clone()))
                });
                let (closed, claim) = match known.map_or_else(
                    || lifecycle::closed_claim_of_result(self.gatos, *result_commit),
                    |c| Ok(Some(c)),
                ) {
                    Ok(Some(c)) => c,
                    Ok(None) => {
                        return failed(
                            ErrorCode::InvalidEnvelope,
                            "the result commit does not close a claim (no second parent)".into(),
                            key,
                        );
                    }
                    Err(e) => return failed(e.code(), e.to_string(), key),
                };
                let Some(expected) = claim.worker_key else {
                    return failed(
                        ErrorCode::SignatureInvalid,
                        "the claim names no worker key, so no proof can be its".into(),
                        key,
                    );
                };
                let subjects = crate::proofs::Subjects {
                    files: files
                        .subjects
                        .iter()
                        .map(|(p, b)| (p.clone(), b.as_slice()))
                        .collect(),
                };
                // Trust comes last, so that UntrustedKey means "sound in every other way".
                let checked = crate::proofs::verify_integrity(poe, Some(expected), &subjects)
                    .and_then(|v| {
                        crate::proofs::check_result(&v, rec.id, &rec.content_id, result)?;
                        // The proof names this attempt's claim, in the chain the result closes.
                        let running = match chain
                            .and_then(|c| lifecycle::running_in(c, closed, v.predicate.attempt))
                        {
                            Some(found) => found,
                            None => {
                                lifecycle::running_commit(self.gatos, closed, v.predicate.attempt)?
                            }
                        };
                        if running != Some(v.predicate.claim_commit) {
                            return Err(Error::new(
                                ErrorCode::DigestMismatch,
                                "the proof's claim_commit is not this attempt's claim",
                            ));
                        }
                        crate::proofs::check_trust(self.gatos, &v)?;
                        Ok(v)
                    });
                match checked {
                    Ok(v) => VerifyRow {
                        id: rec.id,
                        verified: true,
                        key: Some(v.key),
                        code: None,
                        error: None,
                        poe: None,
                    },
                    Err(e) => failed(e.code(), e.to_string(), key),
                }
            }
        }
    }

    /// Forgets the ready index; it is rebuilt from the refs on next use.
    ///
    /// # Errors
    /// When the index files cannot be removed.
    pub fn reset_ready_index(&self) -> Result<()> {
        ready::Ready::new(self.gatos).reset()
    }
}

fn d_is_final(s: JobState) -> bool {
    s.is_final()
}

/// One job of a listing: a job whose documents are malformed (`InvalidEnvelope`) is left
/// out with a warning — `git gatos doctor` and `jobs show ID` name the problem — so it can
/// never fail the listing, or the work, of every other job.
pub(crate) fn readable(id: Ulid, rec: Result<Option<JobRecord>>) -> Result<Option<JobRecord>> {
    match rec {
        Err(e) if e.code() == ErrorCode::InvalidEnvelope => {
            tracing::warn!(job = %id, error = %e, "a job whose documents are malformed is left out; see `git gatos jobs show` and `git gatos doctor`");
            Ok(None)
        }
        other => other,
    }
}
