//! Every gatos ref read at one moment, each classified by what it names, and the object
//! reads that go with it: what an exporter (or any reader of the whole repository) needs
//! without the store.
//!
//! A [`Snapshot`] is either taken from the repository ([`Snapshot::take`]) or rebuilt from
//! refs an export recorded ([`Snapshot::from_recorded`]); both classify every name with
//! the store's ref layout ([`RefKind`]), so a reader never parses ref names itself.

pub mod saved;

use std::collections::BTreeMap;

use gatos_store::objects::Reader;
use gatos_store::refs::names;
use gatos_types::{Group, Oid, Topic, Ulid};
use serde::de::DeserializeOwned;

pub use gatos_store::objects::Commit;
pub use gatos_store::refs::names::RefKind;

use crate::Gatos;
use crate::error::Result;
use crate::jobs::records::Refs;

/// One ref of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its full name (`refs/gatos/…`).
    pub name: String,
    /// The commit it pointed at.
    pub oid: Oid,
    /// What it names; `None` for a name that fits nowhere in the layout.
    pub kind: Option<RefKind>,
}

/// Every ref under `refs/gatos/` at one moment, sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    entries: Vec<Entry>,
}

impl Snapshot {
    /// Reads every gatos ref once.
    ///
    /// # Errors
    /// When the refs cannot be listed.
    pub fn take(gatos: &Gatos) -> Result<Snapshot> {
        // Journaled publishes and enqueues are part of the state (ADR 0046).
        gatos.flush_journals()?;
        Ok(Snapshot::from_recorded(
            gatos
                .store()
                .list_refs(names::GATOS_PREFIX)?
                .into_iter()
                .map(|(n, o)| (n.to_string(), o)),
        ))
    }

    /// Rebuilds a snapshot from recorded `(name, commit)` pairs (an export's manifest);
    /// names outside `refs/gatos/` are kept, with no kind.
    pub fn from_recorded(refs: impl IntoIterator<Item = (String, Oid)>) -> Snapshot {
        let map: BTreeMap<String, Oid> = refs.into_iter().collect();
        Snapshot {
            entries: map
                .into_iter()
                .map(|(name, oid)| Entry {
                    kind: RefKind::parse(&name),
                    name,
                    oid,
                })
                .collect(),
        }
    }

    /// Every ref, sorted by name.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Whether the snapshot holds a ref of `kind` at `oid`.
    pub fn holds(&self, kind: &RefKind, oid: Oid) -> bool {
        self.entries
            .iter()
            .any(|e| e.oid == oid && e.kind.as_ref() == Some(kind))
    }

    /// Topics' heads: `(topic, head commit)`, by topic name.
    pub fn topic_heads(&self) -> Vec<(Topic, Oid)> {
        self.entries
            .iter()
            .filter_map(|e| match &e.kind {
                Some(RefKind::MessageHead(t)) => Some((t.clone(), e.oid)),
                _ => None,
            })
            .collect()
    }

    /// Consumer checkpoints: `(ref name, group, topic, commit)`, by name.
    pub fn checkpoints(&self) -> Vec<(&str, Group, Topic, Oid)> {
        self.entries
            .iter()
            .filter_map(|e| match &e.kind {
                Some(RefKind::Consumer(g, t)) => {
                    Some((e.name.as_str(), g.clone(), t.clone(), e.oid))
                }
                _ => None,
            })
            .collect()
    }

    /// Live jobs' refs by id, and the archive months: `(month, tip)`, by month.
    pub fn jobs(&self) -> (BTreeMap<Ulid, Refs>, Vec<(String, Oid)>) {
        let mut live: BTreeMap<Ulid, Refs> = BTreeMap::new();
        let mut months = Vec::new();
        for e in &self.entries {
            match &e.kind {
                Some(RefKind::Job(id)) => set(&mut live, *id, |r| r.job = Some(e.oid)),
                Some(RefKind::JobClaim(id)) => set(&mut live, *id, |r| r.claim = Some(e.oid)),
                Some(RefKind::JobResult(id)) => set(&mut live, *id, |r| r.result = Some(e.oid)),
                Some(RefKind::JobCancel(id)) => set(&mut live, *id, |r| r.cancel = Some(e.oid)),
                Some(RefKind::ArchiveJobs(m)) => months.push((m.clone(), e.oid)),
                _ => {}
            }
        }
        (live, months)
    }
}

fn set(live: &mut BTreeMap<Ulid, Refs>, id: Ulid, f: impl FnOnce(&mut Refs)) {
    f(live.entry(id).or_insert(Refs {
        job: None,
        claim: None,
        result: None,
        cancel: None,
    }));
}

/// Reads commits, files and documents of this repository (one per thread: it keeps a
/// buffer).
pub struct Objects<'a> {
    reader: Reader<'a>,
}

impl std::fmt::Debug for Objects<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Objects").finish_non_exhaustive()
    }
}

impl Objects<'_> {
    /// Whether the object exists here.
    pub fn exists(&self, id: Oid) -> bool {
        self.reader.exists(id)
    }

    /// Reads a commit.
    ///
    /// # Errors
    /// `NotFound` when it is missing; when it is not a commit.
    pub fn commit(&mut self, id: Oid) -> Result<Commit> {
        Ok(self.reader.commit(id)?)
    }

    /// Reads the file at `path` of a commit's tree; `None` when there is none.
    ///
    /// # Errors
    /// When the tree cannot be read.
    pub fn file(&mut self, tree: Oid, path: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.reader.file(tree, path)?)
    }

    /// Reads and parses the JSON document at `path` of `commit`, with its bytes.
    ///
    /// # Errors
    /// `InvalidEnvelope` when it is missing or does not parse.
    pub fn doc<T: DeserializeOwned>(&mut self, commit: Oid, path: &str) -> Result<(T, Vec<u8>)> {
        crate::jobs::records::read_doc(&mut self.reader, commit, path)
    }
}

impl Gatos {
    /// Reads every gatos ref once (see [`Snapshot::take`]).
    ///
    /// # Errors
    /// When the refs cannot be listed.
    pub fn snapshot(&self) -> Result<Snapshot> {
        Snapshot::take(self)
    }

    /// Returns a reader of this repository's objects.
    pub fn objects(&self) -> Objects<'_> {
        Objects {
            reader: self.store().reader(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_refs_are_classified_by_kind() -> std::result::Result<(), Box<dyn std::error::Error>>
    {
        let o: Oid = "1111111111111111111111111111111111111111".parse()?;
        let id: Ulid = "01ARZ3NDEKTSV4RRFFQ69G5FAV".parse()?;
        let t: Topic = "ci.events".parse()?;
        let g: Group = "billing".parse()?;
        let s = Snapshot::from_recorded([
            (names::message_head(&t).to_string(), o),
            (names::consumer(&g, &t).to_string(), o),
            (names::job(id).to_string(), o),
            (names::job_result(id).to_string(), o),
            (names::archive_jobs("2026-11").to_string(), o),
            ("refs/gatos/unknown/x".to_owned(), o),
        ]);
        assert_eq!(s.entries().len(), 6);
        assert_eq!(s.topic_heads(), vec![(t.clone(), o)]);
        assert!(s.holds(&RefKind::MessageHead(t.clone()), o));
        assert_eq!(s.checkpoints().len(), 1);
        assert_eq!(s.checkpoints()[0].1, g);
        let (live, months) = s.jobs();
        let refs = live.get(&id).ok_or("job")?;
        assert_eq!(
            (refs.job, refs.claim, refs.result),
            (Some(o), None, Some(o))
        );
        assert_eq!(months, vec![("2026-11".to_owned(), o)]);
        assert!(
            s.entries()
                .iter()
                .any(|e| e.name == "refs/gatos/unknown/x" && e.kind.is_none())
        );
        Ok(())
    }
}
