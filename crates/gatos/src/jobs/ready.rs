//! The ready index: the unfinished jobs, so finding the next claimable job never scans
//! every job ever run (DESIGN §4).
//!
//! `<git-dir>/gatos/index/jobs/ready.json` lists pending and running jobs with what
//! routing needs (queue, priority, capabilities, secrets, when claimable, lease end);
//! `known` lists every live job id seen, to spot new ones. Every gatos writer keeps both up
//! to date under the `index.jobs` lock family. Changes made outside that bookkeeping (a
//! fetch, `git pack-refs`, a plain `git update-ref`) are noticed through a stamp of the
//! `refs/gatos/jobs` directory (mtime and link count: one link per job directory) and of
//! `packed-refs`; then the index catches up from the refs. It is never trusted over them:
//! a worker re-reads a candidate's refs before claiming it.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use gatos_store::refs::names;
use gatos_types::jobs::JobState;
use gatos_types::{Capability, ErrorCode, Queue, Timestamp, Ulid};
use serde::{Deserialize, Serialize};

use crate::Gatos;
use crate::error::{Error, Result};

const FAMILY: &str = "index.jobs";

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
    dir_mtime_ns: i128,
    dir_nlink: u64,
    packed_mtime_ns: i128,
    packed_size: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct ReadyFile {
    stamp: Option<Stamp>,
    jobs: Vec<Entry>,
}

fn io(what: &str, e: std::io::Error) -> Error {
    Error::new(ErrorCode::Internal, format!("job ready index: {what}: {e}"))
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
        if let Ok(m) = std::fs::metadata(common.join("refs/gatos/jobs")) {
            s.dir_mtime_ns = i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
            s.dir_nlink = m.nlink();
        }
        if let Ok(m) = std::fs::metadata(common.join("packed-refs")) {
            s.packed_mtime_ns = i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
            s.packed_size = m.size();
        }
        s
    }

    fn load(&self) -> ReadyFile {
        std::fs::read(self.dir().join("ready.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save(&self, f: &ReadyFile) -> Result<()> {
        let dir = self.dir();
        std::fs::create_dir_all(&dir).map_err(|e| io("create", e))?;
        let tmp = dir.join("ready.json.tmp");
        let bytes =
            serde_json::to_vec(f).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
        std::fs::write(&tmp, bytes).map_err(|e| io("write", e))?;
        std::fs::rename(&tmp, dir.join("ready.json")).map_err(|e| io("rename", e))
    }

    fn load_known(&self) -> Option<BTreeSet<Ulid>> {
        let bytes = std::fs::read(self.dir().join("known")).ok()?;
        if bytes.len() % 16 != 0 {
            return None;
        }
        Some(
            bytes
                .chunks(16)
                .map(|c| {
                    let mut b = [0u8; 16];
                    b.copy_from_slice(c);
                    Ulid::from_u128(u128::from_be_bytes(b))
                })
                .collect(),
        )
    }

    fn save_known(&self, known: &BTreeSet<Ulid>) -> Result<()> {
        let dir = self.dir();
        std::fs::create_dir_all(&dir).map_err(|e| io("create", e))?;
        let mut bytes = Vec::with_capacity(known.len() * 16);
        for id in known {
            bytes.extend_from_slice(&id.to_bytes());
        }
        let tmp = dir.join("known.tmp");
        std::fs::write(&tmp, bytes).map_err(|e| io("write", e))?;
        std::fs::rename(&tmp, dir.join("known")).map_err(|e| io("rename", e))
    }

    fn lock(&self) -> Result<gatos_store::locks::Guard> {
        Ok(self
            .gatos
            .store()
            .locks()
            .acquire(
                &[FAMILY.to_owned()],
                gatos_store::locks::DEFAULT_LOCK_TIMEOUT,
            )
            .map_err(gatos_store::Error::from)?)
    }

    /// Returns the unfinished jobs, catching up with the refs first if outside writers
    /// changed them.
    pub(crate) fn entries(&self) -> Result<Vec<Entry>> {
        let _g = self.lock()?;
        let mut f = self.load();
        let now_stamp = self.stamp();
        if f.stamp != Some(now_stamp) {
            self.catch_up(&mut f, now_stamp)?;
            self.save(&f)?;
        }
        Ok(f.jobs)
    }

    /// Re-reads the live job refs: adds jobs not seen yet, drops jobs gone from the refs.
    fn catch_up(&self, f: &mut ReadyFile, stamp: Stamp) -> Result<()> {
        let mut live = BTreeSet::new();
        for (name, _) in self.gatos.store().list_refs(&names::jobs_prefix())? {
            if let Some(names::RefKind::Job(id)) = name.kind() {
                live.insert(id);
            }
        }
        let known = self.load_known();
        let first_time = known.is_none() || f.stamp.is_none();
        let known = known.unwrap_or_default();
        f.jobs.retain(|e| live.contains(&e.id));
        let now = self.gatos.now();
        let mut added = 0usize;
        for id in &live {
            if !first_time && known.contains(id) {
                continue;
            }
            if f.jobs.iter().any(|e| e.id == *id) {
                continue;
            }
            let Some(rec) = self.gatos.jobs().record(*id)? else {
                continue;
            };
            if let Some(e) = entry_for(&rec, now, self.gatos.lease_skew()) {
                f.jobs.push(e);
                added += 1;
            }
        }
        f.jobs.sort_by_key(|e| e.id);
        self.save_known(&live)?;
        f.stamp = Some(stamp);
        tracing::debug!(
            live = live.len(),
            added,
            "job ready index caught up with the refs"
        );
        Ok(())
    }

    /// Adds or replaces a job's entry (or removes it when the job is finished).
    pub(crate) fn put(&self, id: Ulid, entry: Option<Entry>) -> Result<()> {
        let _g = self.lock()?;
        let mut f = self.load();
        f.jobs.retain(|e| e.id != id);
        if let Some(e) = entry {
            f.jobs.push(e);
            f.jobs.sort_by_key(|e| e.id);
        }
        self.save(&f)
    }

    /// Records a job this process just created: the stamp moves on only if our new job
    /// directory was the only change since `before` (one more link, nothing else).
    pub(crate) fn created(&self, entry: Entry, before: Stamp) -> Result<()> {
        let _g = self.lock()?;
        let mut f = self.load();
        let id = entry.id;
        f.jobs.retain(|e| e.id != id);
        f.jobs.push(entry);
        f.jobs.sort_by_key(|e| e.id);
        let now = self.stamp();
        if f.stamp == Some(before)
            && now.dir_nlink == before.dir_nlink + 1
            && now.packed_mtime_ns == before.packed_mtime_ns
            && now.packed_size == before.packed_size
        {
            let mut known = self.load_known().unwrap_or_default();
            known.insert(id);
            self.save_known(&known)?;
            f.stamp = Some(now);
        }
        self.save(&f)
    }

    /// Forgets everything; the next use rebuilds from the refs.
    pub(crate) fn reset(&self) -> Result<()> {
        let _g = self.lock()?;
        for name in ["ready.json", "known"] {
            match std::fs::remove_file(self.dir().join(name)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("remove", e)),
            }
        }
        Ok(())
    }
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
