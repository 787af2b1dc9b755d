//! Claims arbitrated by a hub (`git gatos worker --remote`, DESIGN §5, ADR 0015).
//!
//! With an arbiter set, every change of a job's claim plane is first an atomic push to the
//! hub whose lease expects each ref absent or at the value this node last saw there; only
//! when the hub took it is it mirrored here. Before deciding anything the worker fetches
//! the refs of that one job (never the whole namespace), so it decides on the hub's state.

use gatos_store::Expect;
use gatos_store::refs::{Edit, Options, RefName, names};
use gatos_store::remote::{PushRef, PushStatus};
use gatos_types::{ErrorCode, Ulid};

use crate::Gatos;
use crate::error::{Error, Result};

/// The refs of one job, as names.
fn job_ref_names(id: Ulid) -> [RefName; 4] {
    [
        names::job(id),
        names::job_claim(id),
        names::job_result(id),
        names::job_cancel(id),
    ]
}

/// Fetches the job's refs from the hub, checks them as a sync would, and takes the hub's
/// value of every ref it has (the hub is the arbiter), except the claim and result of a job
/// that already has its result here. The caller holds the job's lock. Returns whether the
/// hub has the job at all.
///
/// # Errors
/// `Unavailable` when the hub cannot be reached; the rejection's code when the hub's refs
/// of the job fail a check.
pub(crate) fn refresh(gatos: &Gatos, remote: &str, id: Ulid) -> Result<bool> {
    let store = gatos.store();
    store.fetch_gatos(remote, Some(&[names::job_prefix(id)]), false)?;
    // What the hub holds is checked first (ADR 0018); a final result held here is never
    // replaced by the hub's.
    gatos.check_job_at_hub(remote, id)?;
    let has_result = store.read_ref(&names::job_result(id))?.is_some();
    let mut edits = Vec::new();
    let mut has_job = false;
    for name in job_ref_names(id) {
        if has_result && (name == names::job_claim(id) || name == names::job_result(id)) {
            continue;
        }
        let Some(t) = names::tracking(remote, &name) else {
            continue;
        };
        let Some(hub) = store.read_ref(&t)? else {
            continue;
        };
        if name == names::job(id) {
            has_job = true;
        }
        if store.read_ref(&name)? != Some(hub) {
            edits.push(Edit {
                name,
                expect: Expect::Any,
                new: Some(hub),
            });
        }
    }
    if !edits.is_empty() {
        tracing::debug!(job = %id, refs = edits.len(), "taking the hub's refs of a job");
        store.update_refs_locked(&edits, &Options::default(), false)?;
    }
    Ok(has_job)
}

/// Pushes claim-plane edits to the hub atomically, leases from the edits' expectations,
/// then mirrors them here. Returns `false` when a lease did not hold (another node moved a
/// ref first); the local refs then take the hub's values.
///
/// # Errors
/// `Unavailable` when the hub cannot be reached or refuses for another reason.
pub(crate) fn push(gatos: &Gatos, remote: &str, id: Ulid, edits: &[Edit]) -> Result<bool> {
    let store = gatos.store();
    let refs: Vec<PushRef> = edits
        .iter()
        .map(|e| PushRef {
            name: e.name.as_str().to_owned(),
            expect: e.expect,
            new: e.new,
        })
        .collect();
    let report = store.push(remote, &refs, true)?;
    if !report.all_ok() {
        let stale = report.refs.iter().any(|(_, s)| {
            matches!(s, PushStatus::Stale)
                || matches!(s, PushStatus::Rejected(w) if w.contains("atomic"))
        });
        if !stale {
            let why = report
                .refs
                .iter()
                .find_map(|(n, s)| match s {
                    PushStatus::Rejected(w) => Some(format!("{n}: {w}")),
                    _ => None,
                })
                .unwrap_or_default();
            return Err(Error::new(
                ErrorCode::Unavailable,
                format!("the hub {remote} refused the update of job {id}: {why}"),
            ));
        }
        tracing::info!(job = %id, "lost a claim race at the hub");
        refresh(gatos, remote, id)?;
        return Ok(false);
    }
    // The hub took it: mirror it here, then (best effort: a concurrent fetch may hold
    // them, and the next fetch corrects them) in the tracking refs.
    let mirror: Vec<Edit> = edits
        .iter()
        .map(|e| Edit {
            name: e.name.clone(),
            expect: Expect::Any,
            new: e.new,
        })
        .collect();
    store.update_refs_locked(&mirror, &Options::default(), false)?;
    let tracking: Vec<Edit> = edits
        .iter()
        .filter_map(|e| {
            names::tracking(remote, &e.name).map(|t| Edit {
                name: t,
                expect: Expect::Any,
                new: e.new,
            })
        })
        .collect();
    if let Err(e) = store.update_refs(&tracking, &Options::default()) {
        tracing::debug!(job = %id, error = %e, "tracking refs not updated; the next fetch will");
    }
    Ok(true)
}

impl Gatos {
    /// Applies a job's claim-plane edits (the caller holds the job's lock): locally by CAS,
    /// or at the arbiter first. Returns `false` when a CAS or lease did not hold.
    pub(crate) fn apply_job_edits(&self, id: Ulid, edits: &[Edit]) -> Result<bool> {
        if let Some(remote) = self.job_arbiter() {
            return push(self, &remote, id, edits);
        }
        match self
            .store()
            .update_refs_locked(edits, &Options::default(), false)
        {
            Ok(_) => Ok(true),
            Err(gatos_store::Error::CasMismatch { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// With an arbiter: refreshes the job's refs from the hub (the caller holds the job's
    /// lock). `Conflict` when the hub does not have the job (sync first).
    pub(crate) fn refresh_job(&self, id: Ulid) -> Result<()> {
        let Some(remote) = self.job_arbiter() else {
            return Ok(());
        };
        if !refresh(self, &remote, id)? {
            return Err(Error::new(
                ErrorCode::Conflict,
                format!(
                    "job {id} is not at {remote} (run git gatos sync first, or it was archived there)"
                ),
            ));
        }
        Ok(())
    }
}
