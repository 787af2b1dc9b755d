//! Durable ref snapshots (`git gatos snapshot`, ADR 0044 §1).
//!
//! A snapshot copies one ref state — every ref under `refs/gatos/`, read by a double
//! collect ([`crate::state::collect`]) — to `refs/gatos-snapshots/<name>/r/<rest>`, in one
//! rewrite of `packed-refs`, and then writes its commit point
//! `refs/gatos-snapshots/<name>/meta`: a commit holding `snapshot.json`
//! (`{name, state, taken_at, refs, exact, actor}`). Only a name with a `meta` is a
//! snapshot. Deleting removes `meta` first, then the copies. A crash between the two
//! steps leaves copies without a `meta` (an *orphan*): never listed nor served, and removed
//! by the next create, delete or `doctor --fix`.
//!
//! The namespace is outside `refs/gatos/`: it is not part of any state and sync never
//! fetches or pushes it. Its refs keep every object of the state reachable, so maintenance
//! keeps them. Snapshot writes hold the lock family [`LOCK_FAMILY`].

use std::time::Duration;

use gatos_store::objects::{NewCommit, Objects as _};
use gatos_store::refs::names;
use gatos_store::refs::{Edit, Options};
use gatos_types::{ErrorCode, Oid, SnapshotName, Timestamp};
use serde::{Deserialize, Serialize};

use crate::Gatos;
use crate::error::{Error, Result};
use crate::state::{Collected, StateId};

/// Snapshots a repository holds at most.
pub const MAX_SNAPSHOTS: usize = 64;
/// The file of a snapshot's `meta` commit.
pub const META_PATH: &str = "snapshot.json";
/// The lock family snapshot writes hold (create, delete, orphan cleanup).
pub const LOCK_FAMILY: &str = "gatos-snapshots";
/// How long a snapshot write waits for the locks.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A snapshot, as its `meta` commit records it (`snapshot.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SnapshotDoc {
    /// Its name.
    pub name: String,
    /// The state it holds (`blake3:…`, the id of its refs).
    pub state: String,
    /// When it was taken.
    pub taken_at: Timestamp,
    /// How many refs it holds.
    pub refs: u64,
    /// Whether the state's double collect agreed.
    pub exact: bool,
    /// Who took it.
    pub actor: String,
}

/// A name checked against the name rule (`InvalidInput` with `data.argument` and
/// `data.reason` otherwise).
///
/// # Errors
/// As said.
pub fn name(s: &str) -> Result<SnapshotName> {
    s.parse::<SnapshotName>().map_err(|e| {
        Error::new(ErrorCode::InvalidInput, e.to_string())
            .with_detail("argument", "name")
            .with_detail("reason", e.reason)
    })
}

fn lock(gatos: &Gatos) -> Result<gatos_store::locks::Guard> {
    Ok(gatos
        .store()
        .locks()
        .acquire(&[LOCK_FAMILY.to_owned()], TIMEOUT)
        .map_err(gatos_store::Error::from)?)
}

/// Every name that has refs under `refs/gatos-snapshots/` (with or without a `meta`), in
/// byte order: one short listing per name, whatever the number of refs each holds.
///
/// # Errors
/// When the refs cannot be listed.
pub fn names_present(gatos: &Gatos) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    let mut after: Option<String> = None;
    // Each round lists one ref and skips every other ref of its name.
    for _ in 0..=(4 * MAX_SNAPSHOTS + 1024) {
        let page = gatos
            .store()
            .list_refs_after(names::SNAPSHOTS_PREFIX, after.as_deref(), 1)?;
        let Some((first, _)) = page.first() else {
            return Ok(out);
        };
        let rest = &first.as_str()[names::SNAPSHOTS_PREFIX.len()..];
        let n = rest.split('/').next().unwrap_or(rest).to_owned();
        let next = format!("{}{n}/{}", names::SNAPSHOTS_PREFIX, char::MAX);
        if after.as_ref().is_some_and(|a| *a >= next) {
            // A name no skip can pass (not a ref layout gatos writes): stop here.
            return Ok(out);
        }
        out.push(n);
        after = Some(next);
    }
    Ok(out)
}

/// A snapshot's `meta` commit and document, when it has one.
///
/// # Errors
/// When the ref or the commit cannot be read; `InvalidEnvelope` for a `meta` without a
/// readable `snapshot.json`.
pub fn get(gatos: &Gatos, n: &SnapshotName) -> Result<Option<(Oid, SnapshotDoc)>> {
    let Some(meta) = gatos.store().read_ref(&names::snapshot_meta(n))? else {
        return Ok(None);
    };
    Ok(doc_at(gatos, n, meta)?.map(|d| (meta, d)))
}

/// The document of snapshot `n`'s `meta` commit.
fn doc_at(gatos: &Gatos, n: &SnapshotName, meta: Oid) -> Result<Option<SnapshotDoc>> {
    let mut r = gatos.store().reader();
    let c = r.commit(meta)?;
    let bytes = r.file(c.tree, META_PATH)?.unwrap_or_default();
    let doc: SnapshotDoc = serde_json::from_slice(&bytes).map_err(|e| {
        Error::new(
            ErrorCode::InvalidEnvelope,
            format!("snapshot {n}: {META_PATH} of {meta} does not parse: {e}"),
        )
    })?;
    Ok(Some(doc))
}

/// Every snapshot (a name with a `meta`), by name.
///
/// # Errors
/// As [`get`].
pub fn list(gatos: &Gatos) -> Result<Vec<SnapshotDoc>> {
    let mut out = Vec::new();
    for raw in names_present(gatos)? {
        let Ok(n) = raw.parse::<SnapshotName>() else {
            continue;
        };
        if let Some((_, doc)) = get(gatos, &n)? {
            out.push(doc);
        }
    }
    Ok(out)
}

/// The snapshot holding state `id`, if any.
///
/// # Errors
/// As [`list`].
pub fn find_state(gatos: &Gatos, id: &StateId) -> Result<Option<SnapshotDoc>> {
    let want = id.to_string();
    Ok(list(gatos)?.into_iter().find(|d| d.state == want))
}

/// The snapshots' documents by their `meta` commit, kept in memory (a daemon's): finding
/// the snapshot of a state then reads the `meta` refs (one short listing per name and one
/// ref each) but only the documents of `meta` commits it has not read before. A `meta`
/// commit never changes, so a cached document is never stale; a snapshot made or deleted
/// by another process is seen at the next lookup, since the refs are read every time.
#[derive(Debug, Default)]
pub struct Index {
    docs: std::sync::Mutex<std::collections::HashMap<Oid, SnapshotDoc>>,
}

impl Index {
    /// [`find_state`], reading only the `meta` commits not read before.
    ///
    /// # Errors
    /// As [`find_state`].
    pub fn find_state(&self, gatos: &Gatos, id: &StateId) -> Result<Option<SnapshotDoc>> {
        let want = id.to_string();
        let mut metas: Vec<(SnapshotName, Oid)> = Vec::new();
        for raw in names_present(gatos)? {
            let Ok(n) = raw.parse::<SnapshotName>() else {
                continue;
            };
            if let Some(meta) = gatos.store().read_ref(&names::snapshot_meta(&n))? {
                metas.push((n, meta));
            }
        }
        let known = {
            let docs = self
                .docs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            metas
                .iter()
                .map(|(_, m)| docs.get(m).cloned())
                .collect::<Vec<_>>()
        };
        let mut now = std::collections::HashMap::with_capacity(metas.len());
        let mut found = None;
        for ((n, meta), doc) in metas.into_iter().zip(known) {
            let doc = match doc {
                Some(d) => d,
                None => match doc_at(gatos, &n, meta)? {
                    Some(d) => d,
                    None => continue,
                },
            };
            if doc.state == want && found.is_none() {
                found = Some(doc.clone());
            }
            now.insert(meta, doc);
        }
        // Forget deleted snapshots' documents.
        *self
            .docs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = now;
        Ok(found)
    }

    /// The documents held (tests).
    pub fn len(&self) -> usize {
        self.docs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Names with copies and no `meta`: what a crash between a create's two steps (or a
/// delete's) left. Not snapshots; [`clean_orphans`] removes them.
///
/// # Errors
/// When the refs cannot be listed.
pub fn orphans(gatos: &Gatos) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for raw in names_present(gatos)? {
        let meta = format!("{}{raw}/meta", names::SNAPSHOTS_PREFIX);
        if gatos.store().read_ref_str(&meta)?.is_none() {
            out.push(raw);
        }
    }
    Ok(out)
}

fn clean_locked(gatos: &Gatos) -> Result<Vec<String>> {
    let found = orphans(gatos)?;
    for raw in &found {
        let prefix = format!("{}{raw}/", names::SNAPSHOTS_PREFIX);
        let n = gatos.store().delete_refs_packed(&prefix, TIMEOUT)?;
        tracing::warn!(snapshot = %raw, refs = n, "removed the copies of an unfinished snapshot");
    }
    Ok(found)
}

/// Removes every orphan's copies (see [`orphans`]); returns their names.
///
/// # Errors
/// When the locks cannot be taken or the refs cannot be rewritten.
pub fn clean_orphans(gatos: &Gatos) -> Result<Vec<String>> {
    let _g = lock(gatos)?;
    clean_locked(gatos)
}

/// Orphans, unless a snapshot write holds the lock right now (its copies may be written
/// and its `meta` not yet): for a check that must not wait or report a write in progress.
///
/// # Errors
/// As [`orphans`].
pub fn orphans_settled(gatos: &Gatos) -> Result<Vec<String>> {
    match gatos
        .store()
        .locks()
        .try_acquire(LOCK_FAMILY)
        .map_err(gatos_store::Error::from)?
    {
        Some(_g) => orphans(gatos),
        None => Ok(Vec::new()),
    }
}

/// The refs a snapshot holds, under their own names (`refs/gatos/…`), sorted by name.
///
/// # Errors
/// When the refs cannot be listed.
pub fn refs(gatos: &Gatos, n: &SnapshotName) -> Result<Vec<(String, Oid)>> {
    let prefix = names::snapshot_copies_prefix(n);
    let mut out: Vec<(String, Oid)> = gatos
        .store()
        .list_refs(&prefix)?
        .into_iter()
        .filter_map(|(c, o)| names::snapshot_original(n, c.as_str()).map(|g| (g, o)))
        .collect();
    out.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(out)
}

/// A snapshot's refs as a collected state (for a window to keep), checked against the id
/// its `meta` records.
///
/// # Errors
/// `NotFound` for a name with no snapshot; `DigestMismatch` when the copies no longer
/// hash to the recorded state (edited by hand).
pub fn load(gatos: &Gatos, n: &SnapshotName) -> Result<(SnapshotDoc, Collected)> {
    let Some((_, doc)) = get(gatos, n)? else {
        return Err(not_found(n));
    };
    let refs = refs(gatos, n)?;
    let id = StateId::of(&refs).to_string();
    if id != doc.state {
        return Err(Error::new(
            ErrorCode::DigestMismatch,
            format!(
                "snapshot {n} records state {} but its refs hash to {id}",
                doc.state
            ),
        )
        .with_detail("snapshot", n.to_string()));
    }
    Ok((
        doc.clone(),
        Collected {
            refs,
            exact: doc.exact,
            lists: 0,
        },
    ))
}

fn not_found(n: &SnapshotName) -> Error {
    Error::new(ErrorCode::NotFound, format!("no snapshot named {n}"))
        .with_detail("snapshot", n.to_string())
}

/// Takes a snapshot named `name` of the refs now (a double collect), for `gatos`'s actor.
///
/// # Errors
/// `InvalidInput` for a name that breaks the name rule, or past [`MAX_SNAPSHOTS`]
/// (`data.limit`); `Conflict` when the name is taken (`data.snapshot`); when the refs
/// cannot be read or written. A refusal changes nothing.
pub fn create(gatos: &Gatos, name_text: &str) -> Result<SnapshotDoc> {
    let n = name(name_text)?;
    let _g = lock(gatos)?;
    clean_locked(gatos)?;
    if get(gatos, &n)?.is_some() {
        return Err(Error::new(
            ErrorCode::Conflict,
            format!("a snapshot named {n} exists; delete it first, or choose another name"),
        )
        .with_detail("snapshot", n.to_string()));
    }
    let count = list(gatos)?.len();
    if count >= MAX_SNAPSHOTS {
        return Err(Error::new(
            ErrorCode::InvalidInput,
            format!(
                "this repository holds {count} snapshots, the most it may ({MAX_SNAPSHOTS}); delete one first"
            ),
        )
        .with_detail("limit", MAX_SNAPSHOTS));
    }
    let c = crate::state::collect(gatos)?;
    let id = StateId::of(&c.refs);
    let copies: Vec<(String, Oid)> = c
        .refs
        .iter()
        .filter_map(|(g, o)| names::snapshot_copy(&n, g).map(|c| (c, *o)))
        .collect();
    let taken_at = gatos.now();
    let doc = SnapshotDoc {
        name: n.to_string(),
        state: id.to_string(),
        taken_at,
        refs: u64::try_from(c.refs.len()).unwrap_or(u64::MAX),
        exact: c.exact,
        actor: gatos.actor(),
    };
    gatos
        .store()
        .create_refs_packed(&names::snapshot_prefix(&n), &copies, TIMEOUT)?;
    // The commit point, written last.
    let json = serde_json::to_vec_pretty(&doc)
        .map_err(|e| Error::new(ErrorCode::Internal, format!("encoding {META_PATH}: {e}")))?;
    let mut w = gatos.store().writer();
    let blob = w.blob(&json)?;
    let tree = w.files(&[(META_PATH, blob)])?;
    let message = format!(
        "snapshot {n}\n\nGatos-Snapshot: {n}\nGatos-State: {}\nGatos-Actor: {}\n",
        doc.state, doc.actor
    );
    let commit = w.commit(&NewCommit {
        tree,
        parents: &[],
        message: &message,
        time: taken_at,
    })?;
    w.finish()?;
    gatos.store().update_refs(
        &[Edit::create(names::snapshot_meta(&n), commit)],
        &Options::default(),
    )?;
    Ok(doc)
}

/// Deletes the snapshot `name`: its `meta` first, then its copies. Audited
/// (`snapshots.delete`, target `snapshot:<name>`).
///
/// # Errors
/// `InvalidInput` for a name that breaks the name rule; `NotFound` for no such snapshot.
pub fn delete(gatos: &Gatos, name_text: &str) -> Result<SnapshotDoc> {
    let n = name(name_text)?;
    let _g = lock(gatos)?;
    let Some((meta, doc)) = get(gatos, &n)? else {
        return Err(not_found(&n));
    };
    gatos.store().update_refs(
        &[Edit::delete(names::snapshot_meta(&n), meta)],
        &Options::default(),
    )?;
    gatos
        .store()
        .delete_refs_packed(&names::snapshot_prefix(&n), TIMEOUT)?;
    clean_locked(gatos)?;
    crate::audit::record(
        gatos,
        "snapshots.delete",
        &format!("snapshot:{n}"),
        serde_json::json!({"state": doc.state, "refs": doc.refs, "taken_at": doc.taken_at}),
        serde_json::Value::Null,
        Some(meta),
    );
    Ok(doc)
}

/// What the snapshots pin, for `doctor`: how many there are, the refs they hold in all,
/// and the orphans found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Census {
    /// Snapshots (names with a `meta`).
    pub snapshots: usize,
    /// Refs their copies hold, in all.
    pub refs: u64,
    /// Names with copies and no `meta`.
    pub orphans: Vec<String>,
}

/// Counts the snapshots and what they pin (from their `meta` documents), and the settled
/// orphans.
///
/// # Errors
/// As [`list`].
pub fn census(gatos: &Gatos) -> Result<Census> {
    let docs = list(gatos)?;
    Ok(Census {
        snapshots: docs.len(),
        refs: docs.iter().map(|d| d.refs).sum(),
        orphans: orphans_settled(gatos)?,
    })
}
