//! A job's commits: reading its refs and documents, writing job, claim, result and cancel
//! commits (DESIGN §2–3).

use gatos_store::objects::{NewCommit, Objects, Reader};
use gatos_store::refs::names;
use gatos_types::jobs::{CancelDoc, ClaimDoc, JobSpec, ResultDoc};
use gatos_types::trailers::{Trailers, keys};
use gatos_types::{Digest, ErrorCode, Oid, Timestamp, Ulid, jcs};
use serde::de::DeserializeOwned;

use crate::Gatos;
use crate::error::{Error, Result};

/// The files of a job's commits (their paths are spelled in `gatos_types::jobs`, which the
/// proofs covering them share).
pub use gatos_types::jobs::{
    CANCEL_PATH, CLAIM_PATH, JOB_PATH, OUTPUTS_DIR, POE_PATH, RESULT_PATH, STDERR_PATH, STDOUT_PATH,
};

/// Everything the refs say about one job.
#[derive(Debug, Clone)]
pub struct JobRecord {
    /// The job id.
    pub id: Ulid,
    /// The job commit.
    pub job_commit: Oid,
    /// `blake3:` of `job.json`.
    pub content_id: Digest,
    /// The normalized manifest.
    pub spec: JobSpec,
    /// The latest claim commit and its document.
    pub claim: Option<(Oid, ClaimDoc)>,
    /// When the latest claim commit was written (its committer time, whole seconds): the
    /// attempt's last heartbeat, or its claim before the first one, or its end.
    pub claim_at: Option<Timestamp>,
    /// The result commit and its document.
    pub result: Option<(Oid, ResultDoc)>,
    /// The cancel commit and its document.
    pub cancel: Option<(Oid, CancelDoc)>,
    /// True when the job was found in the archive, not under `refs/gatos/jobs/`.
    pub archived: bool,
}

fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::InvalidEnvelope, what.to_string())
}

/// Reads a JSON document at `path` of a commit.
///
/// # Errors
/// `InvalidEnvelope` when missing or malformed.
pub fn read_doc<T: DeserializeOwned>(
    r: &mut Reader<'_>,
    commit: Oid,
    path: &str,
) -> Result<(T, Vec<u8>)> {
    read_doc_at(r, commit, path).map(|(doc, bytes, _)| (doc, bytes))
}

/// [`read_doc`], with the commit's committer time (whole seconds), read from the same
/// commit object.
///
/// # Errors
/// `InvalidEnvelope` when missing or malformed.
pub fn read_doc_at<T: DeserializeOwned>(
    r: &mut Reader<'_>,
    commit: Oid,
    path: &str,
) -> Result<(T, Vec<u8>, Timestamp)> {
    let c = r.commit(commit)?;
    let bytes = r
        .file(c.tree, path)?
        .ok_or_else(|| corrupt(format_args!("commit {commit} has no {path}")))?;
    let doc = serde_json::from_slice(&bytes)
        .map_err(|e| corrupt(format_args!("{path} of {commit}: {e}")))?;
    Ok((doc, bytes, commit_time(c.time)))
}

/// The documents of job-plane commits a handle has read, by commit and path, with the
/// commit's time (issue #21): a claim, heartbeat or complete reads the same job and claim
/// commits several times, each a commit, a tree and a blob. A commit id names its content,
/// so an entry is never stale; only what a ref points at is read again each time. Bounded:
/// emptied when it holds [`DocCache::MAX`] documents.
#[derive(Debug, Default)]
pub(crate) struct DocCache {
    docs: std::sync::Mutex<std::collections::HashMap<(Oid, &'static str), CachedDoc>>,
}

type CachedDoc = (std::sync::Arc<[u8]>, Timestamp);

impl DocCache {
    /// Documents held at most.
    pub(crate) const MAX: usize = 20_000;

    fn get(&self, commit: Oid, path: &'static str) -> Option<CachedDoc> {
        self.docs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(commit, path))
            .cloned()
    }

    fn put(&self, commit: Oid, path: &'static str, doc: CachedDoc) {
        let mut docs = self
            .docs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if docs.len() >= Self::MAX {
            docs.clear();
        }
        docs.insert((commit, path), doc);
    }
}

impl Gatos {
    /// The bytes of a document in this handle's [`DocCache`], if it holds them.
    pub(crate) fn cached_doc_bytes(
        &self,
        commit: Oid,
        path: &'static str,
    ) -> Option<std::sync::Arc<[u8]>> {
        self.doc_cache().get(commit, path).map(|(b, _)| b)
    }

    /// Puts a document this handle just wrote into its [`DocCache`] (`time` as given to
    /// the commit, which keeps whole seconds), so the next step of the same job does not
    /// read it back.
    pub(crate) fn remember_doc(
        &self,
        commit: Oid,
        path: &'static str,
        bytes: &[u8],
        time: Timestamp,
    ) {
        self.doc_cache()
            .put(commit, path, (bytes.into(), commit_time(time.as_secs())));
    }

    /// [`read_doc_at`] through the handle's [`DocCache`].
    ///
    /// # Errors
    /// `InvalidEnvelope` when missing or malformed.
    pub(crate) fn cached_doc_at<T: DeserializeOwned>(
        &self,
        r: &mut Reader<'_>,
        commit: Oid,
        path: &'static str,
    ) -> Result<(T, std::sync::Arc<[u8]>, Timestamp)> {
        let cache = self.doc_cache();
        let (bytes, at) = match cache.get(commit, path) {
            Some(hit) => hit,
            None => {
                let c = r.commit(commit)?;
                let bytes: std::sync::Arc<[u8]> = r
                    .file(c.tree, path)?
                    .ok_or_else(|| corrupt(format_args!("commit {commit} has no {path}")))?
                    .into();
                let at = commit_time(c.time);
                cache.put(commit, path, (bytes.clone(), at));
                (bytes, at)
            }
        };
        let doc = serde_json::from_slice(&bytes)
            .map_err(|e| corrupt(format_args!("{path} of {commit}: {e}")))?;
        Ok((doc, bytes, at))
    }
}

/// A committer time (seconds since the epoch) as a timestamp.
pub fn commit_time(secs: i64) -> Timestamp {
    Timestamp::from_millis(secs.saturating_mul(1000))
}

/// The refs of a live job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refs {
    /// `jobs/<id>/job`.
    pub job: Option<Oid>,
    /// `jobs/<id>/claim`.
    pub claim: Option<Oid>,
    /// `jobs/<id>/result`.
    pub result: Option<Oid>,
    /// `jobs/<id>/cancel`.
    pub cancel: Option<Oid>,
}

impl Gatos {
    /// Signs the trailers of a commit over `tree` with this node's key when its kind is one
    /// of [`crate::keys::SIGNED_KINDS`] and the node has a key (ADR 0018).
    pub(crate) fn signed_if_control(&self, tree: Oid, trailers: Trailers) -> Result<Trailers> {
        let signed = trailers
            .get(keys::KIND)
            .is_some_and(|k| crate::keys::SIGNED_KINDS.contains(&k));
        if !signed {
            return Ok(trailers);
        }
        Ok(match self.keys().signing_key()? {
            Some(key) => crate::keys::sign_trailers(&key, tree, trailers),
            None => trailers,
        })
    }

    /// A job's refs as `src` has them.
    pub(crate) fn job_refs_in(&self, src: &dyn crate::refs::RefSource, id: Ulid) -> Result<Refs> {
        Ok(Refs {
            job: src.read(names::job(id).as_str())?,
            claim: src.read(names::job_claim(id).as_str())?,
            result: src.read(names::job_result(id).as_str())?,
            cancel: src.read(names::job_cancel(id).as_str())?,
        })
    }

    pub(crate) fn job_refs(&self, id: Ulid) -> Result<Refs> {
        let [job, claim, result, cancel] = self.store().read_refs_str([
            names::job(id).as_str(),
            names::job_claim(id).as_str(),
            names::job_result(id).as_str(),
            names::job_cancel(id).as_str(),
        ])?;
        Ok(Refs {
            job,
            claim,
            result,
            cancel,
        })
    }

    /// Reads a job from its commits.
    pub fn job_record_at(&self, id: Ulid, refs: Refs, archived: bool) -> Result<Option<JobRecord>> {
        let Some(job_commit) = refs.job else {
            return Ok(None);
        };
        let mut r = self.store().reader();
        let (spec, bytes, _): (JobSpec, _, _) = self.cached_doc_at(&mut r, job_commit, JOB_PATH)?;
        // A job document that parses is not yet a job gatos would write: check it as sync
        // does, so a bad one is a coded error naming the job, never a panic further on.
        super::manifest::check_spec(&spec).map_err(|e| e.context(format_args!("job {id}")))?;
        let (claim, claim_at) = match refs.claim {
            Some(c) => {
                let (doc, _, at) = self.cached_doc_at::<ClaimDoc>(&mut r, c, CLAIM_PATH)?;
                // A claim ref moved onto another job's chain is not this job's claim:
                // reading it as one would run, or end, the other job under this name.
                if doc.job != id {
                    return Err(corrupt(format_args!(
                        "job {id}: its claim ref holds a claim of job {}",
                        doc.job
                    )));
                }
                (Some((c, doc)), Some(at))
            }
            None => (None, None),
        };
        let result = match refs.result {
            Some(c) => Some((
                c,
                self.cached_doc_at::<ResultDoc>(&mut r, c, RESULT_PATH)?.0,
            )),
            None => None,
        };
        let cancel = match refs.cancel {
            Some(c) => {
                let doc = self.cached_doc_at::<CancelDoc>(&mut r, c, CANCEL_PATH)?.0;
                if doc.job != id {
                    return Err(corrupt(format_args!(
                        "job {id}: its cancel ref holds a cancel of job {}",
                        doc.job
                    )));
                }
                Some((c, doc))
            }
            None => None,
        };
        Ok(Some(JobRecord {
            id,
            job_commit,
            content_id: Digest::of(&bytes),
            spec,
            claim,
            claim_at,
            result,
            cancel,
            archived,
        }))
    }

    /// Writes a commit holding `files` (documents and blobs) with the given trailers.
    pub(crate) fn write_job_commit(
        &self,
        files: &[(&str, &[u8])],
        parents: &[Oid],
        trailers: &Trailers,
        subject: &str,
        time: Timestamp,
    ) -> Result<Oid> {
        let mut w = self.store().writer();
        let commit = self.job_commit_into(&mut w, files, parents, trailers, subject, time)?;
        w.finish()?;
        Ok(commit)
    }

    /// [`Gatos::write_job_commit`] into `w` (a job action's writer, [`Gatos::job_writer`]:
    /// loose objects written at once, or a collector whose objects a group commit writes
    /// later, ADR 0046).
    pub(crate) fn job_commit_into(
        &self,
        w: &mut dyn Objects,
        files: &[(&str, &[u8])],
        parents: &[Oid],
        trailers: &Trailers,
        subject: &str,
        time: Timestamp,
    ) -> Result<Oid> {
        let mut entries = Vec::with_capacity(files.len());
        for (path, bytes) in files {
            entries.push((*path, w.blob(bytes)?));
        }
        let tree = w.files(&entries)?;
        let trailers = self.signed_if_control(tree, self.with_origin(trailers)?)?;
        Ok(w.commit(&NewCommit {
            tree,
            parents,
            message: &trailers.to_message(subject),
            time,
        })?)
    }

    /// A job-plane commit's trailers with `Origin`, this node's id, added (ADR 0028): so a
    /// node tells its own actions from those sync brought, and `doctor` republishes only
    /// the events of its own.
    ///
    /// # Errors
    /// When the node id cannot be read or written.
    pub(crate) fn with_origin(&self, trailers: &Trailers) -> Result<Trailers> {
        if trailers.get(keys::ORIGIN).is_some() {
            return Ok(trailers.clone());
        }
        Ok(trailers.clone().with(keys::ORIGIN, self.node_id()?))
    }
}

/// The node that wrote a job-plane commit, from its `Origin` trailer; `None` for commits
/// written before job-plane commits carried it (unknown origin, ADR 0028).
pub fn origin(trailers: &Trailers) -> Option<Ulid> {
    trailers.get(keys::ORIGIN).and_then(|o| o.parse().ok())
}

/// Trailers of a claim commit.
pub fn claim_trailers(doc: &ClaimDoc) -> Trailers {
    let state = serde_json::to_value(doc.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    Trailers::new()
        .with(keys::KIND, "claim")
        .with(keys::JOB, doc.job)
        .with(keys::ATTEMPT, doc.attempt)
        .with(keys::STATE, state)
        .with(keys::WORKER, &doc.worker)
}

/// Encodes a document as JCS.
///
/// # Errors
/// `InvalidInput` when it cannot be serialised.
pub fn doc_bytes<T: serde::Serialize>(doc: &T) -> Result<Vec<u8>> {
    Ok(jcs::to_vec_of(doc)?)
}
