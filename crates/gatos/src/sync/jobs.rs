//! Jobs and their archive (DESIGN §5): claims and results are won at the hub.

use std::collections::{BTreeMap, BTreeSet};

use gatos_store::refs::{RefName, names};
use gatos_types::{Oid, Ulid};

use super::Sync;
use crate::error::Result;
use crate::jobs::archive::{self, Archived};
use crate::jobs::records::Refs;

/// A job's refs on one side.
fn job_refs(side: &super::Refs, id: Ulid) -> Refs {
    let get = |n: RefName| side.get(n.as_str()).copied();
    Refs {
        job: get(names::job(id)),
        claim: get(names::job_claim(id)),
        result: get(names::job_result(id)),
        cancel: get(names::job_cancel(id)),
    }
}

fn same(a: &Archived, r: &Refs) -> bool {
    a.refs() == *r
}

impl Sync<'_> {
    /// Archive chains, one per month: fast-forward either way; when both folded jobs, what
    /// only this node folded is folded again on top of the hub's chain (so no job is in
    /// neither place).
    pub(super) fn archives(&mut self) -> Result<()> {
        for name in self.names_under(&names::archive_prefix()) {
            let Some(names::RefKind::ArchiveJobs(month)) =
                RefName::from_repository(name.clone()).kind()
            else {
                continue;
            };
            let (l, h) = (self.local.get(&name).copied(), self.hub.get(&name).copied());
            match (l, h) {
                (Some(l), Some(h)) if l == h => {}
                (Some(_), None) => {
                    self.push_ref(&name, l);
                    self.report.pushed += 1;
                }
                (None, Some(_)) => {
                    if self.set_local(&name, h)? {
                        self.report.adopted += 1;
                    }
                }
                (Some(lv), Some(hv)) => {
                    if self.on_archive_chain(hv, lv)? {
                        self.push_ref(&name, Some(lv));
                        self.report.pushed += 1;
                    } else if self.on_archive_chain(lv, hv)? {
                        if self.set_local(&name, Some(hv))? {
                            self.report.adopted += 1;
                        }
                    } else {
                        let theirs = archive::index_at(self.gatos, Some(hv))?;
                        let (mine, other): (Vec<Archived>, Vec<Archived>) =
                            archive::index_at(self.gatos, Some(lv))?
                                .into_values()
                                .filter(|a| theirs.get(&a.id).is_none_or(|t| t.refs() != a.refs()))
                                .partition(|a| !theirs.contains_key(&a.id));
                        // A job both sides archived with other commits (two results of
                        // offline claims, each archived where it was made): the hub's entry
                        // stands in the index, reported. This node's chain stays a parent
                        // of every fold, so none of its commits becomes unreachable (also
                        // when this fold's push is lost and the next one folds onto it).
                        if !other.is_empty() {
                            let jobs: Vec<String> =
                                other.iter().map(|a| a.id.to_string()).collect();
                            self.conflict(
                                &name,
                                "hub-wins",
                                format!(
                                    "the hub archived job(s) {} with other commits than this node; its entries stand, and this node's archive ({lv}) stays reachable from the fold",
                                    jobs.join(", ")
                                ),
                            );
                        }
                        let tip =
                            archive::archive_commit(self.gatos, &month, Some(hv), &mine, &[lv])?;
                        if self.set_local(&name, Some(tip))? {
                            self.push_ref(&name, Some(tip));
                            self.report.pushed += 1;
                        }
                    }
                }
                (None, None) => {}
            }
        }
        Ok(())
    }

    fn on_archive_chain(&self, ancestor: Oid, tip: Oid) -> Result<bool> {
        let mut at = Some(tip);
        while let Some(c) = at {
            if c == ancestor {
                return Ok(true);
            }
            at = archive::prev_of(self.gatos, c)?;
        }
        Ok(false)
    }

    /// The hub's archive of a month, as fetched (cached for the round).
    fn hub_archive(
        &self,
        cache: &mut BTreeMap<String, BTreeMap<Ulid, Archived>>,
        id: Ulid,
    ) -> Result<Option<Archived>> {
        let month = archive::month_of(id);
        if !cache.contains_key(&month) {
            let tip = self.hub.get(names::archive_jobs(&month).as_str()).copied();
            cache.insert(month.clone(), archive::index_at(self.gatos, tip)?);
        }
        Ok(cache.get(&month).and_then(|m| m.get(&id)).cloned())
    }

    /// Every job live on either side.
    pub(super) fn jobs(&mut self) -> Result<()> {
        let mut ids: BTreeSet<Ulid> = BTreeSet::new();
        for name in self.names_under(&names::jobs_prefix()) {
            if let Some(
                names::RefKind::Job(id)
                | names::RefKind::JobClaim(id)
                | names::RefKind::JobResult(id)
                | names::RefKind::JobCancel(id),
            ) = RefName::from_repository(name).kind()
            {
                ids.insert(id);
            }
        }
        let mut hub_archives = BTreeMap::new();
        let mut touched = Vec::new();
        for id in ids {
            let (l, h) = (job_refs(&self.local, id), job_refs(&self.hub, id));
            if l == h {
                continue;
            }
            // Archived on one side: the other side's live refs go, if they are what was
            // archived; otherwise they are a conflict to report.
            if l.job.is_none()
                && h.job.is_some()
                && let Some(archived_here) = archive::find(self.gatos, id)?
            {
                if archived_here != h {
                    // (Two results: the node that holds the other live keeps this one beside
                    // it and reports it; here the job is archived, and `jobs resolve` works
                    // on live jobs, so the pair is reported only.)
                    self.conflict(
                        names::job(id).as_str(),
                        "kept-both",
                        "archived here with other refs than the hub has live",
                    );
                } else if self.hub_archive(&mut hub_archives, id)?.is_some() {
                    for (name, _) in refs_named(id, &h) {
                        self.push_ref(&name, None);
                        self.report.deleted_remote += 1;
                    }
                } else {
                    // The hub gets the archive this round; the deletion follows.
                    self.again = true;
                }
                continue;
            }
            if h.job.is_none()
                && l.job.is_some()
                && let Some(a) = self.hub_archive(&mut hub_archives, id)?
            {
                if same(&a, &l) {
                    for (name, _) in refs_named(id, &l) {
                        if self.set_local(&name, None)? {
                            self.report.deleted_local += 1;
                        }
                    }
                } else {
                    self.conflict(
                        names::job(id).as_str(),
                        "kept-both",
                        "archived at the hub with other refs than this node has live",
                    );
                }
                continue;
            }
            // Live on both sides, and archived at the hub with another result (another
            // node ran it offline and archived it): that result is kept beside this node's
            // and reported, as a live one would be.
            if let Some(lr) = l.result
                && let Some(a) = self.hub_archive(&mut hub_archives, id)?
                && let Some(ar) = a.result
                && ar != lr
            {
                self.keep_result(id, lr, ar)?;
            }
            self.create_only(names::job(id).as_str())?;
            self.create_only(names::job_cancel(id).as_str())?;
            self.claim_and_result(id, l, h)?;
            touched.push(id);
        }
        // The ready index learns what changed under it.
        for id in touched {
            if let Ok(Some(rec)) = self.gatos.jobs().record(id) {
                let entry =
                    crate::jobs::ready::entry_for(&rec, self.gatos.now(), self.gatos.lease_skew());
                let _ = crate::jobs::ready::Ready::new(self.gatos).put(id, entry);
            }
        }
        Ok(())
    }

    /// Claims and results are won at the hub.
    fn claim_and_result(&mut self, id: Ulid, l: Refs, h: Refs) -> Result<()> {
        let claim = names::job_claim(id).to_string();
        let result = names::job_result(id).to_string();
        match (l.claim, h.claim) {
            (lc, hc) if lc == hc => {
                // Same claim: a result one side lacks is copied (it closes that claim).
                match (l.result, h.result) {
                    (Some(lr), None) => {
                        self.atomic.push(vec![self.push_entry(&result, Some(lr))]);
                        self.report.pushed += 1;
                    }
                    (None, Some(hr)) => {
                        let adopted = self.set_local(&result, Some(hr))?;
                        self.report.adopted += u64::from(adopted);
                    }
                    (Some(lr), Some(hr)) if lr != hr => self.keep_result(id, lr, hr)?,
                    _ => {}
                }
            }
            (Some(lc), None) => {
                // Claimed here only: offer the claim (and its result) to the hub, first come
                // first served.
                self.push_claim(&claim, &result, lc, l.result);
            }
            (None, Some(hc)) => {
                self.set_local(&claim, Some(hc))?;
                if h.result.is_some() {
                    self.set_local(&result, h.result)?;
                }
                self.report.adopted += 1;
            }
            (Some(lc), Some(hc)) => {
                if l.result.is_none() && self.on_chain(hc, lc)? {
                    // This node went on from the hub's claim (a heartbeat, a release, a
                    // result): push it, with the result in the same atomic push.
                    self.push_claim(&claim, &result, lc, l.result);
                } else if h.result.is_none() && l.result.is_some() && self.on_chain(hc, lc)? {
                    self.push_claim(&claim, &result, lc, l.result);
                } else if self.on_chain(lc, hc)? && l.result.is_none() {
                    self.set_local(&claim, Some(hc))?;
                    if h.result.is_some() {
                        self.set_local(&result, h.result)?;
                    }
                    self.report.adopted += 1;
                } else if let Some(lr) = l.result {
                    // A final result this node holds is never given up on the hub's word.
                    match h.result {
                        Some(hr) if hr != lr => self.keep_result(id, lr, hr)?,
                        _ => self.conflict(
                            &claim,
                            "kept-local",
                            "the hub's claim chain diverged from this node's finished one; this node keeps its result",
                        ),
                    }
                } else {
                    self.abandon(id, &l, &h)?;
                }
            }
            (None, None) => {}
        }
        Ok(())
    }

    fn push_claim(&mut self, claim: &str, result: &str, lc: Oid, lr: Option<Oid>) {
        let mut group = vec![self.push_entry(claim, Some(lc))];
        if let Some(r) = lr
            && self.hub.get(result) != Some(&r)
        {
            group.push(self.push_entry(result, Some(r)));
        }
        self.atomic.push(group);
        self.report.pushed += 1;
    }

    /// Both sides hold a result for the job and they differ: this node keeps its own; the
    /// hub's is kept beside it (`refs/gatos-conflicts/jobs/<id>/<commit>`, never
    /// replicated), reported by every sync, `jobs show` and `doctor` until an operator
    /// chooses with `git gatos jobs resolve` (ADR 0018).
    fn keep_result(&mut self, id: Ulid, local: Oid, remote: Oid) -> Result<()> {
        let name = names::job_result(id).to_string();
        // An operator already chose against this one (`jobs resolve`): nothing to report.
        if self
            .gatos
            .store()
            .read_ref(&names::result_set_aside(id, &remote.to_string()))?
            .is_some()
        {
            return Ok(());
        }
        let kept = names::result_conflict(id, &remote.to_string());
        let created = match self.gatos.store().update_refs(
            &[gatos_store::refs::Edit::create(kept, remote)],
            &gatos_store::refs::Options::default(),
        ) {
            Ok(a) => a.first() == Some(&gatos_store::refs::Applied::Changed),
            Err(gatos_store::Error::CasMismatch { .. }) => false,
            Err(e) => return Err(e.into()),
        };
        self.conflict(
            &name,
            "kept-local",
            format!(
                "the hub holds another result ({remote}); this node keeps its own until job {id} is resolved (keeping local or {remote})"
            ),
        );
        if created {
            tracing::info!(job = %id, %local, %remote, "two results for one job; kept both");
            crate::audit::record(
                self.gatos,
                "sync.result_conflict",
                &format!("job:{id}"),
                serde_json::json!({"result": local}),
                serde_json::json!({"result": local, "kept": remote, "remote": self.remote}),
                None,
            );
        }
        Ok(())
    }

    /// The hub's claim wins: this node's claim (and result) give way; its worker, if one
    /// runs here, loses its next heartbeat and stops. Audited.
    fn abandon(&mut self, id: Ulid, l: &Refs, h: &Refs) -> Result<()> {
        let claim = names::job_claim(id).to_string();
        let result = names::job_result(id).to_string();
        self.set_local(&claim, h.claim)?;
        self.set_local(&result, h.result)?;
        self.report.claims_abandoned += 1;
        tracing::warn!(job = %id, "this node's claim lost to the hub's; abandoned");
        crate::audit::record(
            self.gatos,
            "sync.claim_abandoned",
            &format!("job:{id}"),
            serde_json::json!({"claim": l.claim, "result": l.result}),
            serde_json::json!({"claim": h.claim, "result": h.result, "remote": self.remote}),
            None,
        );
        Ok(())
    }
}

/// The full names of the refs a job has.
fn refs_named(id: Ulid, r: &Refs) -> Vec<(String, Oid)> {
    [
        (names::job(id), r.job),
        (names::job_claim(id), r.claim),
        (names::job_result(id), r.result),
        (names::job_cancel(id), r.cancel),
    ]
    .into_iter()
    .filter_map(|(n, o)| o.map(|o| (n.to_string(), o)))
    .collect()
}
