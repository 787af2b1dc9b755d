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

/// How many times a refresh fetches a job's refs when the hub's claim keeps moving while
/// this node puts its own back.
const PUT_BACK_TRIES: usize = 3;

/// Fetches the job's refs from the hub, checks them as a sync would, and takes the hub's
/// value of every ref it has (the hub is the arbiter), except the claim and result of a job
/// that already has its result here, a claim of which the hub holds only an earlier commit
/// (it is put back there, [`put_back_claim`]), and a cancel of other content than this
/// node's (create-only, as a sync keeps it). The caller holds the job's lock. Returns
/// whether the hub has the job at all.
///
/// # Errors
/// `Unavailable` when the hub cannot be reached; `Conflict` when it holds an earlier commit
/// of this node's claim and does not take this node's back, or holds another job under this
/// job's id (a claim skips the job; a heartbeat retries until the lease ends); the
/// rejection's code when the hub's refs of the job fail a check.
pub(crate) fn refresh(gatos: &Gatos, remote: &str, id: Ulid) -> Result<bool> {
    let store = gatos.store();
    let mut tries = 0;
    // Set when this node's claim was put back: the hub holds it now, whatever the tracking
    // ref (updated at best effort) still says.
    let mut put_back = false;
    let has_result = loop {
        store.fetch_gatos(remote, Some(&[names::job_prefix(id)]), false)?;
        // What the hub holds is checked first (ADR 0018); a final result held here is never
        // replaced by the hub's.
        gatos.check_job_at_hub(remote, id)?;
        let has_result = store.read_ref(&names::job_result(id))?.is_some();
        if has_result {
            break true;
        }
        tries += 1;
        match put_back_claim(gatos, remote, id)? {
            PutBack::Nothing => break false,
            PutBack::Done => {
                put_back = true;
                break false;
            }
            PutBack::HubMoved if tries < PUT_BACK_TRIES => {}
            PutBack::HubMoved => {
                return Err(Error::new(
                    ErrorCode::Conflict,
                    format!(
                        "the hub {remote} moved job {id}'s claim {tries} times while this node put back the commits it lacked there; this node keeps its claim"
                    ),
                ));
            }
        }
    };
    let mut edits = Vec::new();
    let mut has_job = false;
    for name in job_ref_names(id) {
        if has_result && (name == names::job_claim(id) || name == names::job_result(id)) {
            continue;
        }
        if put_back && name == names::job_claim(id) {
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
        let here = store.read_ref(&name)?;
        if let Some(here) = here
            && here != hub
            && (name == names::job(id) || name == names::job_cancel(id))
        {
            // Create-only refs (the job, its cancel), as a sync treats them: the hub's commit
            // of the same content is taken; one of other content never replaces this node's
            // (the sync reports both, `kept-both`). Another job under this id at the hub is
            // not this node's to run.
            let mut r = store.reader();
            if r.commit(here)?.tree != r.commit(hub)?.tree {
                if name == names::job(id) {
                    return Err(Error::new(
                        ErrorCode::Conflict,
                        format!(
                            "job {id} at {remote} is not this node's job {id} (other content under the same id); run git gatos sync to see the conflict"
                        ),
                    ));
                }
                continue;
            }
        }
        if here != Some(hub) {
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

/// What [`put_back_claim`] found.
enum PutBack {
    /// The hub's claim is this node's, ahead of it, or another chain: the hub's stands.
    Nothing,
    /// The hub held an earlier commit of this node's claim; it now holds this node's.
    Done,
    /// The hub's claim moved between the fetch and the push: fetch again.
    HubMoved,
}

/// When the hub holds an earlier commit of this node's claim chain than this node (commits
/// this node holds were lost or dropped there: heartbeats, a takeover, a release), this
/// node's claim is pushed back with a lease on the hub's value, as a sync does (ADR 0018):
/// a node never drops commits it holds on the hub's word. Audited
/// (`arbiter.claim_put_back`). The caller holds the job's lock and has just fetched.
///
/// # Errors
/// `Conflict` when the hub refuses the push for another reason than a moved ref: this node
/// then keeps its claim and the operation fails (a claim skips the job, as for any job the
/// hub's refs make unclaimable; a heartbeat retries until its lease ends, then stops the
/// job); `Unavailable` when the hub cannot be reached.
fn put_back_claim(gatos: &Gatos, remote: &str, id: Ulid) -> Result<PutBack> {
    let store = gatos.store();
    let name = names::job_claim(id);
    let Some(t) = names::tracking(remote, &name) else {
        return Ok(PutBack::Nothing);
    };
    let (Some(here), Some(hub)) = (store.read_ref(&name)?, store.read_ref(&t)?) else {
        return Ok(PutBack::Nothing);
    };
    if here == hub || !gatos.on_chain(hub, here)? {
        return Ok(PutBack::Nothing);
    }
    tracing::warn!(job = %id, hub = %hub, here = %here, "the hub holds an earlier commit of this node's claim; putting this node's back");
    let report = store.push(
        remote,
        &[PushRef {
            name: name.as_str().to_owned(),
            expect: Expect::Value(hub),
            new: Some(here),
        }],
        true,
    )?;
    if let Some(why) = report.refs.iter().find_map(|(_, s)| match s {
        PushStatus::Stale => None,
        PushStatus::Rejected(w) if !w.contains("atomic") => Some(w.clone()),
        _ => None,
    }) {
        return Err(Error::new(
            ErrorCode::Conflict,
            format!(
                "the hub {remote} holds an earlier commit of job {id}'s claim ({hub}) than this node ({here}) and refused this node's back: {why}; this node keeps its claim"
            ),
        ));
    }
    if !report.all_ok() {
        return Ok(PutBack::HubMoved);
    }
    if let Err(e) = store.update_refs(
        &[Edit {
            name: t,
            expect: Expect::Any,
            new: Some(here),
        }],
        &Options::default(),
    ) {
        tracing::debug!(job = %id, error = %e, "tracking ref not updated; the next fetch will");
    }
    crate::audit::record(
        gatos,
        "arbiter.claim_put_back",
        &format!("job:{id}"),
        serde_json::json!({"claim": hub, "remote": remote}),
        serde_json::json!({"claim": here}),
        None,
    );
    Ok(PutBack::Done)
}

/// Pushes claim-plane edits to the hub atomically, leases from the edits' expectations,
/// then mirrors them here. Returns `false` when a lease did not hold (another node moved a
/// ref first); the local refs then take the hub's values. When the refresh after a lease
/// that did not hold finds every edit's expectation met again (the hub had moved this
/// node's claim back, and took it back, [`put_back_claim`]), the edits are pushed again
/// ([`PUT_BACK_TRIES`] pushes in all at most): the hub holds what they were leased on.
///
/// # Errors
/// `Unavailable` when the hub cannot be reached or refuses for another reason; what
/// [`refresh`] returns after a failed lease (`Conflict` for a claim the hub will not take
/// back or another job under this id; a rejection's code).
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
    let mut tries = 0;
    loop {
        tries += 1;
        let report = store.push(remote, &refs, true)?;
        if report.all_ok() {
            break;
        }
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
        refresh(gatos, remote, id)?;
        if tries < PUT_BACK_TRIES && expectations_met(gatos, edits)? {
            tracing::info!(job = %id, "the hub holds again what the update expected; pushing it again");
            continue;
        }
        tracing::info!(job = %id, "lost a claim race at the hub");
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

/// Tells whether this node's refs, which a refresh has just set to the hub's, are what each
/// edit expects.
fn expectations_met(gatos: &Gatos, edits: &[Edit]) -> Result<bool> {
    for e in edits {
        if !e.expect.holds(gatos.store().read_ref(&e.name)?) {
            return Ok(false);
        }
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
