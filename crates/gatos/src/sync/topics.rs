//! Topics, their sealed segments and summaries, and consumer checkpoints (DESIGN §5).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use gatos_store::objects::NewCommit;
use gatos_store::objects::Objects;
use gatos_store::refs::{RefName, names};
use gatos_types::sync::{TopicAction, TopicSync};
use gatos_types::trailers::keys;
use gatos_types::wire::CheckpointDoc;
use gatos_types::{Digest, Group, Oid, Topic, Ulid};

use super::Sync;
use crate::error::Result;
use crate::messages::chain::{self, Meta};

/// How the two sides of a topic relate.
enum Relation {
    Same,
    HubAhead {
        received: u64,
    },
    LocalAhead {
        sent: u64,
    },
    Diverged {
        fork: Option<Meta>,
        /// This node's messages after the fork point, oldest first.
        local_after: Vec<Meta>,
        /// The hub's messages after the fork point.
        hub_after: Vec<Meta>,
    },
}

/// Where a sealed segment plan is made ([`Sync::sealed_plan`]).
enum Ctx<'a> {
    /// This node takes the hub's topic (its head is behind or absent).
    Adopt,
    /// Both appended: this node's messages after the fork (`rewritten`) go again after
    /// the hub's; `fork` is the last message both hold, `hub_next` the hub's first after it.
    Reappend {
        rewritten: &'a HashSet<Oid>,
        fork: Option<Oid>,
        hub_next: Option<&'a Meta>,
    },
    /// The heads are the same, or this node's is ahead (or the hub has none): a hub's
    /// segment value is taken only where the chain names it and not this node's (which
    /// then named a message inside its segment); this node's segments below `hub_seq` are
    /// not offered.
    Push { hub_seq: u64 },
}

impl Ctx<'_> {
    fn rewritten(&self, v: Oid) -> bool {
        matches!(self, Ctx::Reappend { rewritten, .. } if rewritten.contains(&v))
    }
}

/// What becomes of one sealed segment's ref.
enum Sealed {
    /// This node takes the hub's value.
    Take(Oid),
    /// The hub's value is not the segment's last message and this node's is: kept, put
    /// back at the hub, reported (`kept-local`).
    KeepLocal(Oid),
    /// Neither is shown to be the last: both stay, reported (`kept-both`).
    KeepBoth,
    /// The hub lacks a segment this node holds at its last message: offered to it.
    Offer(Oid),
    /// This node's ref goes: its messages are appended again, or it names a message
    /// inside its segment on the chain this node takes.
    Drop,
    /// Left as it is.
    Leave,
}

impl Sync<'_> {
    fn meta(&self, commit: Oid) -> Result<Meta> {
        if let Some(m) = self.checks.metas.get(&commit) {
            return Ok(m.clone());
        }
        chain::meta(&self.gatos.store().reader().commit(commit)?)
    }

    /// The previous message in the sequence, unless it is pruned (`through`). On this
    /// node's side (`mine`: its topic), a message below the first one its index retains (one
    /// it pruned itself) that `git gc` has removed ends the walk as `through` does; anywhere
    /// else a missing message is an error.
    fn step(&self, m: &Meta, through: u64, mine: Option<&Topic>) -> Result<Option<Meta>> {
        if m.seq <= through.saturating_add(1) {
            return Ok(None);
        }
        match m.prev() {
            Some(p) => match self.meta(p) {
                Ok(prev) => Ok(Some(prev)),
                Err(e)
                    if e.code() == gatos_types::ErrorCode::NotFound
                        && mine.is_some_and(|t| self.pruned_here_below(t, m.seq)) =>
                {
                    Ok(None)
                }
                Err(e) => Err(e),
            },
            None => Ok(None),
        }
    }

    /// Whether the message before `seq` is below the first one this node's index of `t`
    /// retains: one this node pruned itself (the summary it holds may be the hub's by now).
    fn pruned_here_below(&self, t: &Topic, seq: u64) -> bool {
        self.gatos
            .messages()
            .view(t)
            .ok()
            .flatten()
            .is_some_and(|v| v.retained() == 0 || seq <= v.first_seq())
    }

    /// Walks both sequences back to their fork point. A head at a seq the topic's summary
    /// pruned (`through`), recorded there as pruned, is behind the other side's head past
    /// it: that side went on from it, through messages pruned since (a node that pruned
    /// messages it had not synced yet; a node offline while the others pruned).
    fn relate(&self, t: &Topic, local: Oid, hub: Oid, through: u64) -> Result<Relation> {
        if local == hub {
            return Ok(Relation::Same);
        }
        let (lm, hm) = (self.meta(local)?, self.meta(hub)?);
        let pruned_here =
            |m: &Meta| -> Result<bool> {
                Ok(m.seq <= through
                    && self.gatos.messages().pruned_position(t, m.ulid)? == Some(m.seq))
            };
        match (lm.seq > through, hm.seq > through) {
            (true, false) if pruned_here(&hm)? => {
                return Ok(Relation::LocalAhead {
                    sent: lm.seq - through,
                });
            }
            (false, true) if pruned_here(&lm)? => {
                return Ok(Relation::HubAhead {
                    received: hm.seq - through,
                });
            }
            // Both heads among what was pruned (a summary pushed whose head was not):
            // nothing of either is left to move.
            (false, false) if pruned_here(&lm)? && pruned_here(&hm)? => {
                return Ok(Relation::Same);
            }
            _ => {}
        }
        let mut a = Some(lm);
        let mut b = Some(hm);
        let mut local_after = Vec::new();
        let mut hub_after = Vec::new();
        loop {
            match (a.take(), b.take()) {
                (Some(x), Some(y)) if x.commit == y.commit => {
                    a = Some(x);
                    break;
                }
                (Some(x), Some(y)) if x.seq > y.seq => {
                    a = self.step(&x, through, Some(t))?;
                    local_after.push(x);
                    b = Some(y);
                }
                (Some(x), Some(y)) if y.seq > x.seq => {
                    b = self.step(&y, through, None)?;
                    hub_after.push(y);
                    a = Some(x);
                }
                (Some(x), Some(y)) => {
                    a = self.step(&x, through, Some(t))?;
                    b = self.step(&y, through, None)?;
                    local_after.push(x);
                    hub_after.push(y);
                }
                (Some(x), None) => {
                    a = self.step(&x, through, Some(t))?;
                    local_after.push(x);
                }
                (None, Some(y)) => {
                    b = self.step(&y, through, None)?;
                    hub_after.push(y);
                }
                (None, None) => break,
            }
        }
        local_after.reverse();
        Ok(match (local_after.is_empty(), hub_after.is_empty()) {
            (true, true) => Relation::Same,
            (true, false) => Relation::HubAhead {
                received: hub_after.len() as u64,
            },
            (false, true) => Relation::LocalAhead {
                sent: local_after.len() as u64,
            },
            (false, false) => Relation::Diverged {
                fork: a,
                local_after,
                hub_after,
            },
        })
    }

    pub(super) fn topics(&mut self) -> Result<()> {
        let mut topics: BTreeSet<Topic> = BTreeSet::new();
        for name in self.names_under(names::MESSAGES_PREFIX) {
            if let Some(t) = RefName::from_repository(name)
                .kind()
                .as_ref()
                .and_then(names::RefKind::message_topic)
            {
                topics.insert(t.clone());
            }
        }
        for t in topics {
            if self.damaged_here.contains_key(&t) {
                continue;
            }
            let head = names::message_head(&t).to_string();
            self.guarded(&head, |s| s.topic(&t))?;
        }
        Ok(())
    }

    /// Finds the topics whose refs on this node do not read ([`Sync::damaged_here`]): a
    /// head moved outside gatos to no message, a summary that is not the topic's (ADR
    /// 0047). Asked of every topic with a head or a summary here, once a round.
    ///
    /// # Errors
    /// A store failure.
    pub(super) fn find_damaged_here(&mut self) -> Result<()> {
        self.damaged_here.clear();
        let mut topics: BTreeSet<Topic> = BTreeSet::new();
        for name in self.local.keys() {
            if let Some(names::RefKind::MessageHead(t) | names::RefKind::MessageSummary(t)) =
                names::RefKind::parse(name)
            {
                topics.insert(t);
            }
        }
        for t in topics {
            let head = self.local.get(names::message_head(&t).as_str()).copied();
            let summary = self.local.get(names::message_summary(&t).as_str()).copied();
            if let Some(e) = self.gatos.messages().damage_at(&t, head, summary)? {
                self.damaged_here.insert(t, e);
            }
        }
        Ok(())
    }

    fn record_topic(
        &mut self,
        t: &Topic,
        action: TopicAction,
        received: u64,
        sent: u64,
        head: Option<Oid>,
    ) {
        let mut entry = TopicSync {
            topic: t.to_string(),
            action,
            received,
            sent,
            duplicates: 0,
            head,
            landed: !matches!(action, TopicAction::Pushed | TopicAction::Reappended),
        };
        match self
            .report
            .topics
            .iter_mut()
            .find(|x| x.topic == entry.topic)
        {
            Some(x) => {
                // Duplicates left out in an earlier round stay counted.
                entry.duplicates = x.duplicates;
                *x = entry;
            }
            None => self.report.topics.push(entry),
        }
    }

    /// The sealed refs of a topic on each side: name → commit.
    fn sealed(&self, t: &Topic) -> (BTreeMap<String, Oid>, BTreeMap<String, Oid>) {
        let prefix = names::topic_prefix(t);
        let pick = |refs: &super::Refs| -> BTreeMap<String, Oid> {
            refs.range(prefix.clone()..)
                .take_while(|(n, _)| n.starts_with(&prefix))
                .filter(|(n, _)| {
                    matches!(
                        RefName::from_repository((*n).clone()).kind(),
                        Some(names::RefKind::MessageSealed(..))
                    )
                })
                .map(|(n, o)| (n.clone(), *o))
                .collect()
        };
        (pick(&self.local), pick(&self.hub))
    }

    /// The last pruned seq a summary commit of `topic` names. A commit that is not its
    /// summary (moved onto the ref outside gatos) is `InvalidEnvelope`: its `Seq` is never
    /// taken for pruned positions, which would delete segments on both sides.
    pub(super) fn through_of(&self, topic: &Topic, summary: Option<Oid>) -> Result<u64> {
        let Some(s) = summary else { return Ok(0) };
        Ok(self.gatos.messages().summary_at(topic, s)?.through)
    }

    /// Reconciles the summary chains; returns the pruned-through both sides agree on.
    fn summaries(&mut self, t: &Topic) -> Result<u64> {
        let name = names::message_summary(t).to_string();
        let (l, h) = (self.local.get(&name).copied(), self.hub.get(&name).copied());
        let (tl, th) = (self.through_of(t, l)?, self.through_of(t, h)?);
        // Whether a ref update of this topic's summary loses its CAS (or asks for another
        // round) is told apart from what earlier topics asked.
        let again_before = std::mem::replace(&mut self.again, false);
        match (l, h) {
            (None, None) => {
                self.again |= again_before;
                return Ok(0);
            }
            (Some(l), Some(h)) if l == h => {
                self.again |= again_before;
                return Ok(tl);
            }
            (Some(_), None) => self.push_ref(&name, l),
            (None, Some(_)) => {
                self.set_local(&name, h)?;
            }
            (Some(lv), Some(hv)) => {
                if self.on_chain(hv, lv)? {
                    self.push_ref(&name, Some(lv));
                } else if self.on_chain(lv, hv)? {
                    self.set_local(&name, Some(hv))?;
                } else if th >= tl {
                    // The hub's prunes as far or further: adopt it. A CAS chain replaced on
                    // divergence is reported (DESIGN §5) when this node's records of what it
                    // pruned say something the hub's do not (other messages at a seq); the
                    // same messages pruned in other steps are the same records.
                    let missing = self.not_recorded_in(lv, hv)?;
                    if self.set_local(&name, Some(hv))?
                        && let Some(c) = missing
                    {
                        self.conflict(
                            &name,
                            "hub-wins",
                            format!(
                                "both sides pruned; this node's summaries (through seq {tl}) were replaced by the hub's (through seq {th}), which do not record the messages this node's summary {c} pruned"
                            ),
                        );
                    }
                } else if !self.hub_agrees_past(t, th, tl)? {
                    // The hub holds other messages at seqs this node pruned past the hub's
                    // bound: the histories parted there, and the hub's summaries stand (this
                    // node's later messages are appended again after the hub's head). This
                    // round checked the hub's messages only past this node's bound: the
                    // heads wait for the next round, which checks them past the hub's.
                    self.deferred.insert(t.clone());
                    self.again = true;
                    if self.set_local(&name, Some(hv))? {
                        self.conflict(
                            &name,
                            "hub-wins",
                            format!(
                                "both sides pruned, this node further (through seq {tl}), but the hub holds other messages past its bound (seq {th}); the hub's summaries stand"
                            ),
                        );
                    }
                } else {
                    self.pruned_further(t, &name, lv, hv, th)?;
                }
            }
        }
        // A ref update that lost its CAS leaves the summary as it was: the heads wait for
        // the next round, as when the summary moved back.
        if self.again {
            self.deferred.insert(t.clone());
        }
        self.again |= again_before;
        Ok(tl.max(th))
    }

    /// Whether the hub's messages past its bound `th`, up to this node's `tl`, are those this
    /// node's summaries record there: the hub's message at the highest such seq, recorded by
    /// this node at that seq, tells (by its ULID) the history below it. True when the hub
    /// holds no message there.
    fn hub_agrees_past(&self, t: &Topic, th: u64, tl: u64) -> Result<bool> {
        let Some(h) = self.hub.get(&names::message_head(t).to_string()).copied() else {
            return Ok(true);
        };
        let mut m = self.meta(h)?;
        while m.seq > tl {
            match m.prev() {
                Some(p) => m = self.meta(p)?,
                None => return Ok(true),
            }
        }
        Ok(m.seq <= th || self.gatos.messages().pruned_position(t, m.ulid)? == Some(m.seq))
    }

    /// This node pruned further than the hub (`lv` through a later seq than `hv`, `th`).
    /// When this node's chain has a summary ending at `th`, its summaries beyond go on top of
    /// the hub's chain (both sides' records kept). Otherwise (this node pruned the hub's
    /// bound in one step with more) its summaries cannot follow the hub's, which would
    /// break the chain's contiguity for every node: this node's chain, which prunes further,
    /// is kept and put back at the hub. Either way a record of the side given up that the
    /// kept chain does not hold is reported.
    fn pruned_further(&mut self, t: &Topic, name: &str, lv: Oid, hv: Oid, th: u64) -> Result<()> {
        let mut mine = Vec::new();
        let mut r = self.gatos.store().reader();
        let mut at = Some(lv);
        let mut below = None;
        while let Some(c) = at {
            let commit = r.commit(c)?;
            if summary_seq(&commit) <= th {
                below = Some((c, summary_seq(&commit)));
                break;
            }
            at = commit.parents.first().copied();
            mine.push(commit);
        }
        drop(r);
        let Some((below, _)) = below.filter(|(_, seq)| *seq == th) else {
            let missing = self.not_recorded_in(hv, lv)?;
            if let Some(c) = missing {
                self.conflict(
                    name,
                    "kept-local",
                    format!(
                        "both sides pruned, this node further and past the hub's bound in one step; this node's summaries stand and are put back at the hub, whose summary {c} recorded other messages"
                    ),
                );
            }
            tracing::info!(topic = %t, "this node's summaries straddle the hub's bound; putting them back at the hub");
            self.push_ref(name, Some(lv));
            return Ok(());
        };
        let missing = self.not_recorded_in(below, hv)?;
        mine.reverse();
        let mut tip = hv;
        let mut w = self.gatos.store().writer();
        for c in mine {
            tip = w.commit(&NewCommit {
                tree: c.tree,
                parents: &[tip],
                message: &String::from_utf8_lossy(&c.message),
                time: gatos_types::Timestamp::from_millis(c.time.saturating_mul(1000)),
            })?;
        }
        w.finish()?;
        if self.set_local(name, Some(tip))? {
            if let Some(c) = missing {
                self.conflict(
                    name,
                    "hub-wins",
                    format!(
                        "both sides pruned; this node's summaries through seq {th} were replaced by the hub's, which do not record the messages this node's summary {c} pruned (this node's later summaries go on top)"
                    ),
                );
            }
            self.push_ref(name, Some(tip));
        }
        Ok(())
    }

    /// The newest summary commit of `from`'s chain (down to where it meets `chain`) that
    /// pruned a message `chain` does not record at the same seq (by their `pruned/ulids`
    /// tables), if any. Only the seqs `chain` covers are compared; one table of each side is
    /// held at a time.
    fn not_recorded_in(&self, from: Oid, chain: Oid) -> Result<Option<Oid>> {
        use crate::messages::prune::{PRUNED_ULIDS_PATH, pruned_entries, pruned_seq};
        let mut r = self.gatos.store().reader();
        // `chain`'s summaries, oldest first: (commit, tree, first seq, last seq).
        let mut theirs = Vec::new();
        let mut at = Some(chain);
        while let Some(c) = at {
            let commit = r.commit(c)?;
            theirs.push((c, commit.tree, summary_seq(&commit)));
            at = commit.parents.first().copied();
        }
        theirs.reverse();
        let ranges: Vec<(Oid, Oid, u64, u64)> = theirs
            .iter()
            .enumerate()
            .map(|(i, &(c, tree, last))| {
                let first = if i == 0 {
                    1
                } else {
                    theirs[i - 1].2.saturating_add(1)
                };
                (c, tree, first, last)
            })
            .collect();
        let on_chain: HashSet<Oid> = ranges.iter().map(|x| x.0).collect();
        let through = ranges.last().map_or(0, |x| x.3);
        let mut at = Some(from);
        while let Some(c) = at.filter(|c| !on_chain.contains(c)) {
            let commit = r.commit(c)?;
            let table = r.file(commit.tree, PRUNED_ULIDS_PATH)?.unwrap_or_default();
            let mut entries: Vec<(u64, Ulid)> = pruned_entries(&table)
                .map(|(ulid, seq)| (seq, ulid))
                .filter(|(seq, _)| *seq <= through)
                .collect();
            drop(table);
            entries.sort_unstable();
            let mut held: Option<(usize, Vec<u8>)> = None;
            for (seq, ulid) in entries {
                let i = ranges.partition_point(|x| x.3 < seq);
                if ranges.get(i).is_none_or(|x| x.2 > seq) {
                    return Ok(Some(c));
                }
                if held.as_ref().is_none_or(|(j, _)| *j != i) {
                    held = Some((
                        i,
                        r.file(ranges[i].1, PRUNED_ULIDS_PATH)?.unwrap_or_default(),
                    ));
                }
                let table = held.as_ref().map_or(&[][..], |(_, t)| t.as_slice());
                if pruned_seq(table, ulid) != Some(seq) {
                    return Ok(Some(c));
                }
            }
            at = commit.parents.first().copied();
        }
        Ok(None)
    }

    fn topic(&mut self, t: &Topic) -> Result<()> {
        let through = self.summaries(t)?;
        if self.deferred.contains(t) {
            return Ok(());
        }
        let (mut local_sealed, hub_sealed) = self.sealed(t);
        // Pruned segments are deleted on both sides and never adopted again.
        let mut r = self.gatos.store().reader();
        let mut pruned: BTreeSet<String> = BTreeSet::new();
        for (name, commit) in local_sealed.iter().chain(hub_sealed.iter()) {
            if pruned.contains(name) || !r.exists(*commit) {
                continue;
            }
            if chain::meta(&r.commit(*commit)?)?.seq <= through {
                pruned.insert(name.clone());
            }
        }
        drop(r);
        for name in &pruned {
            if local_sealed.contains_key(name) && self.set_local(name, None)? {
                self.report.deleted_local += 1;
            }
            if hub_sealed.contains_key(name) {
                self.push_ref(name, None);
                self.report.deleted_remote += 1;
            }
            local_sealed.remove(name);
        }
        let hub_sealed: BTreeMap<String, Oid> = hub_sealed
            .into_iter()
            .filter(|(n, _)| !pruned.contains(n))
            .collect();

        let head = names::message_head(t).to_string();
        let (l, h) = (self.local.get(&head).copied(), self.hub.get(&head).copied());
        match (l, h) {
            (None, None) => {}
            (Some(l), None) => {
                let plan =
                    self.sealed_plan(t, &local_sealed, &hub_sealed, &Ctx::Push { hub_seq: 0 })?;
                self.apply_sealed(plan, false)?;
                self.push_ref(&head, Some(l));
                self.head_pushes.push((t.to_string(), head.clone()));
                let sent = self.meta(l)?.seq.saturating_sub(through);
                self.record_topic(t, TopicAction::Pushed, 0, sent, Some(l));
            }
            (None, Some(h)) => {
                self.adopt(t, &head, &local_sealed, &hub_sealed, None, h)?;
                let received = self.meta(h)?.seq.saturating_sub(through);
                self.record_topic(t, TopicAction::Adopted, received, 0, Some(h));
            }
            (Some(l), Some(h)) => match self.relate(t, l, h, through)? {
                Relation::Same => {
                    // Nothing to move, but what the hub holds of the segments is compared:
                    // a quiet topic's segment moved or deleted at the hub is put back.
                    let hub_seq = self.hub_seq(t, h)?;
                    let plan =
                        self.sealed_plan(t, &local_sealed, &hub_sealed, &Ctx::Push { hub_seq })?;
                    self.apply_sealed(plan, false)?;
                }
                Relation::HubAhead { received } => {
                    self.adopt(t, &head, &local_sealed, &hub_sealed, Some(l), h)?;
                    self.record_topic(t, TopicAction::Adopted, received, 0, Some(h));
                }
                Relation::LocalAhead { sent } => {
                    let hub_seq = self.hub_seq(t, h)?;
                    let plan =
                        self.sealed_plan(t, &local_sealed, &hub_sealed, &Ctx::Push { hub_seq })?;
                    self.apply_sealed(plan, false)?;
                    self.push_ref(&head, Some(l));
                    self.head_pushes.push((t.to_string(), head.clone()));
                    self.record_topic(t, TopicAction::Pushed, 0, sent, Some(l));
                }
                Relation::Diverged {
                    fork,
                    local_after,
                    hub_after,
                } => {
                    self.reappend(
                        t,
                        &head,
                        through,
                        l,
                        h,
                        fork,
                        &local_after,
                        &hub_after,
                        &local_sealed,
                        &hub_sealed,
                    )?;
                }
            },
        }
        Ok(())
    }

    /// Makes this node's topic the hub's: sealed segments first, then the head.
    fn adopt(
        &mut self,
        t: &Topic,
        head: &str,
        local_sealed: &BTreeMap<String, Oid>,
        hub_sealed: &BTreeMap<String, Oid>,
        l: Option<Oid>,
        h: Oid,
    ) -> Result<()> {
        let _guard = self.topic_lock(t)?;
        if self.gatos.store().read_ref_str(head)? != l {
            self.again = true;
            return Ok(());
        }
        let plan = self.sealed_plan(t, local_sealed, hub_sealed, &Ctx::Adopt)?;
        let (before, after): (Vec<_>, Vec<_>) = plan
            .into_iter()
            .partition(|(_, s)| matches!(s, Sealed::Take(_)));
        self.apply_sealed(before, true)?;
        self.set_local_held(head, Some(h))?;
        self.apply_sealed(after, true)?;
        Ok(())
    }

    /// The seq below which this node's sealed segments are not offered to the hub: with
    /// the hub's summary rejected, the segments it pruned stay here but do not go back.
    fn hub_seq(&self, t: &Topic, h: Oid) -> Result<u64> {
        Ok(if self.checks.summary_rejected.contains(t) {
            self.meta(h)?.seq
        } else {
            0
        })
    }

    /// Whether `v` is the last message of its segment on this node's chain: the message
    /// after it in this node's index starts a segment that names `v` as the one before.
    fn ends_segment_here(&self, t: &Topic, v: Oid) -> Result<bool> {
        let next = self.meta(v)?.seq.saturating_add(1);
        let Some(view) = self.gatos.messages().view(t)? else {
            return Ok(false);
        };
        if view.retained() == 0 || next < view.first_seq() || next > view.last_seq() {
            return Ok(false);
        }
        let Ok(r) = view.record(next) else {
            return Ok(false);
        };
        Ok(self.meta(r.commit)?.prev_segment == Some(v))
    }

    /// Which of two values of one sealed segment the topic's chain follows (the next
    /// segment names its predecessor's last message by `Prev-Segment`): the hub's head,
    /// where this sync's walk of its new messages crossed the segment's end and the head
    /// passed, else this node's own chain (its index), which holds the part both sides
    /// share.
    fn followed(&self, t: &Topic, name: &str, local: Oid, hub: Oid) -> Result<Option<Oid>> {
        if let Some(Some(f)) = self.checks.followed.get(name)
            && (*f == local || *f == hub)
        {
            return Ok(Some(*f));
        }
        if self.ends_segment_here(t, local)? {
            return Ok(Some(local));
        }
        if self.ends_segment_here(t, hub)? {
            return Ok(Some(hub));
        }
        Ok(None)
    }

    /// What becomes of each sealed segment this node and the hub hold differently (see
    /// [`Sealed`]). Create-only (DESIGN, ADR 0015, ADR 0018's amendment): only a segment's
    /// sealed ref keeps its messages reachable, so a value is replaced or deleted only
    /// where the chain shows it is not the segment's last message, never on the hub's
    /// word alone. Decided before anything moves (this node's index is its chain as it
    /// stands).
    fn sealed_plan(
        &self,
        t: &Topic,
        local_sealed: &BTreeMap<String, Oid>,
        hub_sealed: &BTreeMap<String, Oid>,
        ctx: &Ctx<'_>,
    ) -> Result<Vec<(String, Sealed)>> {
        let rejected = self.checks.summary_rejected.contains(t);
        let mut plan = Vec::new();
        for (name, hv) in hub_sealed {
            let step = match local_sealed.get(name) {
                Some(lv) if lv == hv => continue,
                None if matches!(ctx, Ctx::Push { .. }) => continue,
                None => Sealed::Take(*hv),
                Some(lv) if ctx.rewritten(*lv) => Sealed::Take(*hv),
                Some(lv) => match self.followed(t, name, *lv, *hv)? {
                    Some(f) if f == *hv => Sealed::Take(*hv),
                    Some(_) => Sealed::KeepLocal(*lv),
                    None => Sealed::KeepBoth,
                },
            };
            plan.push((name.clone(), step));
        }
        for (name, lv) in local_sealed {
            if hub_sealed.contains_key(name) {
                continue;
            }
            let named = self.checks.followed.get(name) == Some(&Some(*lv));
            let step = match ctx {
                Ctx::Reappend { rewritten, .. } if rewritten.contains(lv) => Sealed::Drop,
                Ctx::Push { hub_seq } if self.meta(*lv)?.seq < *hub_seq => Sealed::Leave,
                // The hub pruned it by a summary this node rejected: kept, not offered.
                Ctx::Adopt | Ctx::Reappend { .. } if rejected => Sealed::Leave,
                // The hub's chain names it as its segment's last.
                _ if named => Sealed::Offer(*lv),
                // This node's last message in common with the hub: the hub's first after
                // it tells whether the segment ended there on the chain taken.
                Ctx::Reappend { fork, hub_next, .. } if *fork == Some(*lv) => {
                    if hub_next.is_some_and(|m| m.prev_segment == Some(*lv)) {
                        Sealed::Offer(*lv)
                    } else {
                        Sealed::Drop
                    }
                }
                _ if self.ends_segment_here(t, *lv)? => Sealed::Offer(*lv),
                // A ref inside its segment (an interrupted rotation leaves one): nothing is
                // lost without it, and it is not spread to the hub.
                Ctx::Push { .. } => Sealed::Leave,
                Ctx::Adopt | Ctx::Reappend { .. } => Sealed::Drop,
            };
            plan.push((name.clone(), step));
        }
        Ok(plan)
    }

    /// Carries out a [`Sealed`] plan (`held`: the caller holds the topic's lock).
    fn apply_sealed(&mut self, plan: Vec<(String, Sealed)>, held: bool) -> Result<()> {
        for (name, step) in plan {
            let set = match step {
                Sealed::Take(v) => Some(Some(v)),
                Sealed::Drop => Some(None),
                Sealed::KeepLocal(v) => {
                    self.conflict(
                        &name,
                        "kept-local",
                        "the hub's sealed segment ref does not name the segment's last message and this node's does; this node's is kept and put back at the hub",
                    );
                    self.push_ref(&name, Some(v));
                    None
                }
                Sealed::KeepBoth => {
                    self.conflict(
                        &name,
                        "kept-both",
                        "this node and the hub name different messages for this sealed segment and neither is shown to be its last (sealed segments are create-only)",
                    );
                    None
                }
                Sealed::Offer(v) => {
                    self.push_ref(&name, Some(v));
                    None
                }
                Sealed::Leave => None,
            };
            if let Some(new) = set {
                if held {
                    self.set_local_held(&name, new)?;
                } else {
                    self.set_local(&name, new)?;
                }
            }
        }
        Ok(())
    }

    fn topic_lock(&self, t: &Topic) -> Result<gatos_store::locks::Guard> {
        let guard = self
            .gatos
            .store()
            .locks()
            .acquire(
                &[
                    format!("messages.{t}"),
                    gatos_store::refs::PACKED_REFS_FAMILY.to_owned(),
                ],
                gatos_store::locks::DEFAULT_LOCK_TIMEOUT,
            )
            .map_err(gatos_store::Error::from)?;
        // Journaled publishes become commits before sync compares or moves the head.
        self.gatos.messages().materialize_locked(t)?;
        Ok(guard)
    }

    /// Both sides appended: append this node's messages again after the hub's, move the
    /// checkpoints that stood on them back to the fork point, then push.
    #[expect(clippy::too_many_arguments, reason = "the two sides of one topic")]
    fn reappend(
        &mut self,
        t: &Topic,
        head: &str,
        through: u64,
        l: Oid,
        h: Oid,
        fork: Option<Meta>,
        local_after: &[Meta],
        hub_after: &[Meta],
        local_sealed: &BTreeMap<String, Oid>,
        hub_sealed: &BTreeMap<String, Oid>,
    ) -> Result<()> {
        let guard = self.topic_lock(t)?;
        if self.gatos.store().read_ref_str(head)? != Some(l) {
            // A local publish landed meanwhile: next round.
            self.again = true;
            return Ok(());
        }
        let moved: HashSet<Oid> = local_after.iter().map(|m| m.commit).collect();
        let plan = self.sealed_plan(
            t,
            local_sealed,
            hub_sealed,
            &Ctx::Reappend {
                rewritten: &moved,
                fork: fork.as_ref().map(|m| m.commit),
                // `hub_after` is newest first.
                hub_next: hub_after.last(),
            },
        )?;
        // Messages the hub already has (a push that landed, its answer lost) are not sent
        // twice: decided by ULID and content id. The same ULID with other content at the
        // hub is not this node's message (on a topic whose messages are not signed anyone
        // who can push to the hub can write one): this node's is appended again, reported.
        let at_hub: HashMap<Ulid, Digest> =
            hub_after.iter().map(|m| (m.ulid, m.content_id)).collect();
        let mine: Vec<&Meta> = local_after
            .iter()
            .filter(|m| at_hub.get(&m.ulid) != Some(&m.content_id))
            .collect();
        let clashing: HashSet<Ulid> = mine
            .iter()
            .filter(|m| at_hub.contains_key(&m.ulid))
            .map(|m| m.ulid)
            .collect();
        let fork_seq = fork.as_ref().map_or(through, |m| m.seq);
        // Checkpoints on the messages about to be rewritten go back to the fork point.
        let kept: HashSet<Oid> = hub_after.iter().map(|m| m.commit).collect();
        self.move_back_checkpoints(t, &moved, fork.as_ref(), fork_seq, &kept)?;
        crate::messages::record_fork(self.gatos, t, fork_seq)?;
        let hub_meta = self.meta(h)?;
        let base_sealed = hub_sealed.values().any(|c| *c == h);
        let messages = self.gatos.messages();
        let mut stored: Vec<_> = mine
            .iter()
            .map(|m| messages.stored(m.commit))
            .collect::<Result<_>>()?;
        // Messages the hub holds under the same `msg_id` (another node published the same
        // thing: a job event keyed by its action's commit, an audit record) are not appended
        // again, as a publish with that `msg_id` would not be (ADR 0028).
        let before = stored.len();
        let ids: Vec<Option<String>> = stored.iter().map(|m| msg_id_of(&m.envelope)).collect();
        if ids.iter().any(Option::is_some) {
            let at_hub = self.hub_msg_ids(hub_after)?;
            let mut keep = ids
                .iter()
                .map(|id| id.as_ref().is_none_or(|i| !at_hub.contains(i)));
            stored.retain(|_| keep.next().unwrap_or(true));
        }
        let duplicates = (before - stored.len()) as u64;
        let (tip, new_sealed) = if stored.is_empty() {
            (h, Vec::new())
        } else {
            let built = messages.build_on(t, Some(&hub_meta), base_sealed, through, &stored)?;
            (built.tip, built.sealed)
        };
        // Segments the rebuild sealed are this node's new ones, whatever the plan said.
        let built: BTreeSet<&str> = new_sealed.iter().map(|(n, _)| n.as_str()).collect();
        let (before, after): (Vec<_>, Vec<_>) = plan
            .into_iter()
            .filter(|(n, _)| !built.contains(n.as_str()))
            .partition(|(_, s)| matches!(s, Sealed::Take(_)));
        self.apply_sealed(before, true)?;
        for (name, c) in &new_sealed {
            self.set_local_held(name.as_str(), Some(*c))?;
        }
        if !self.set_local_held(head, Some(tip))? {
            return Ok(());
        }
        self.apply_sealed(after, true)?;
        let clashed = stored.iter().filter(|m| clashing.contains(&m.ulid)).count();
        if clashed > 0 {
            self.conflict(
                head,
                "kept-local",
                format!(
                    "the hub holds {clashed} message(s) with the ULID of one of this node's and other content; this node's were appended again after the hub's (a lookup by that ULID finds the first)"
                ),
            );
        }
        drop(guard);
        for (name, c) in &new_sealed {
            self.push_ref(name.as_str(), Some(*c));
        }
        if tip != h {
            self.push_ref(head, Some(tip));
            self.head_pushes.push((t.to_string(), head.to_owned()));
        }
        tracing::info!(topic = %t, fork = fork_seq, received = hub_after.len(), reappended = stored.len(), duplicates, "both sides appended; this node's messages go after the hub's");
        let action = if stored.is_empty() {
            TopicAction::Adopted
        } else {
            TopicAction::Reappended
        };
        self.record_topic(
            t,
            action,
            hub_after.len() as u64,
            stored.len() as u64,
            Some(tip),
        );
        if let Some(x) = self
            .report
            .topics
            .iter_mut()
            .find(|x| x.topic == t.as_str())
        {
            x.duplicates += duplicates;
        }
        Ok(())
    }

    /// The `msg_id`s of the hub's messages after the fork point, newest first, at most
    /// `gatos.dedupeWindow` of them (the window a publish looks in).
    fn hub_msg_ids(&self, hub_after: &[Meta]) -> Result<HashSet<String>> {
        let window = usize::try_from(self.gatos.settings().dedupe_window).unwrap_or(usize::MAX);
        let mut r = self.gatos.store().reader();
        let mut ids = HashSet::new();
        for m in hub_after.iter().take(window) {
            let c = r.commit(m.commit)?;
            if let Some(id) = r
                .file(c.tree, chain::ENVELOPE_PATH)?
                .and_then(|e| msg_id_of(&e))
            {
                ids.insert(id);
            }
        }
        Ok(ids)
    }

    /// Moves back to the fork point the checkpoints on messages about to be rewritten, and
    /// those past the fork on none of the messages kept (a message this node pruned, gone
    /// since): a group never passes a message re-appended below its checkpoint.
    fn move_back_checkpoints(
        &mut self,
        t: &Topic,
        moved: &HashSet<Oid>,
        fork: Option<&Meta>,
        fork_seq: u64,
        kept: &HashSet<Oid>,
    ) -> Result<()> {
        let suffix = format!("/{t}");
        let names: Vec<String> = self
            .local
            .keys()
            .filter(|n| n.starts_with(&names::consumers_prefix()) && n.ends_with(&suffix))
            .cloned()
            .collect();
        for name in names {
            let Some(names::RefKind::Consumer(group, topic)) =
                RefName::from_repository(name.clone()).kind()
            else {
                continue;
            };
            if topic != *t {
                continue;
            }
            let Some(at) = self.gatos.store().read_ref_str(&name)? else {
                continue;
            };
            let doc = crate::checkpoints::read_doc(&mut self.gatos.store().reader(), at)?;
            let rewritten = doc.commit.is_some_and(|c| moved.contains(&c));
            let left_behind = doc.seq > fork_seq && !doc.commit.is_some_and(|c| kept.contains(&c));
            if !rewritten && !left_behind {
                continue;
            }
            let back = fork_doc(group, topic, fork);
            self.gatos
                .checkpoints()
                .advance_with(back, true, "sync.checkpoint_moved_back")?;
            if let Some(n) = self.gatos.store().read_ref_str(&name)? {
                self.local.insert(name, n);
            }
            self.report.checkpoints_moved_back += 1;
        }
        Ok(())
    }

    /// Consumer checkpoints: the furthest position wins.
    pub(super) fn checkpoints(&mut self) -> Result<()> {
        for name in self.names_under(&names::consumers_prefix()) {
            // Nothing of a topic damaged here is synced, its checkpoints included.
            if let Some(names::RefKind::Consumer(_, t)) = names::RefKind::parse(&name)
                && (self.damaged_here.contains_key(&t) || self.deferred.contains(&t))
            {
                continue;
            }
            self.guarded(&name, |s| s.checkpoint(&name))?;
        }
        Ok(())
    }

    fn checkpoint(&mut self, name: &str) -> Result<()> {
        let name = name.to_owned();
        let (l, h) = (self.local.get(&name).copied(), self.hub.get(&name).copied());
        match (l, h) {
            (Some(l), Some(h)) if l == h => {}
            (Some(lv), None) => {
                let topic = match RefName::from_repository(name.clone()).kind() {
                    Some(names::RefKind::Consumer(_, t)) => t,
                    _ => return Ok(()),
                };
                self.checkpoint_push(&name, &topic, lv);
            }
            (None, Some(hv)) => {
                let doc = crate::checkpoints::read_doc(&mut self.gatos.store().reader(), hv)?;
                if self.in_sequence(&doc)? && self.set_local(&name, h)? {
                    self.report.adopted += 1;
                }
            }
            (Some(lv), Some(hv)) => {
                let mut r = self.gatos.store().reader();
                let (ld, hd) = (
                    crate::checkpoints::read_doc(&mut r, lv)?,
                    crate::checkpoints::read_doc(&mut r, hv)?,
                );
                drop(r);
                // A hub checkpoint on a message that is no longer in the sequence (its
                // topic was re-appended after the checkpoint got there) does not count.
                let hub_valid = self.in_sequence(&hd)?;
                if ld.seq > hd.seq || !hub_valid {
                    self.checkpoint_push(&name, &ld.topic, lv);
                } else if self.set_local(&name, Some(hv))? {
                    self.report.adopted += 1;
                }
            }
            (None, None) => {}
        }
        Ok(())
    }
}

impl Sync<'_> {
    /// Tells whether a checkpoint stands on a message of the topic as this node has it now.
    fn in_sequence(&self, doc: &CheckpointDoc) -> Result<bool> {
        let (Some(commit), true) = (doc.commit, doc.seq > 0) else {
            return Ok(true);
        };
        Ok(self.gatos.messages().commit_at(&doc.topic, doc.seq)? == Some(commit))
    }

    /// Pushes a checkpoint only with (or after) its topic's messages: in the second push of
    /// the round, and only if the topic's head landed or needed no push.
    fn checkpoint_push(&mut self, name: &str, topic: &Topic, value: Oid) {
        let entry = self.push_entry(name, Some(value));
        self.checkpoint_pushes.push((topic.to_string(), entry));
        self.report.pushed += 1;
    }
}

/// The `msg_id` header of an envelope, if it has one.
fn msg_id_of(envelope: &[u8]) -> Option<String> {
    gatos_types::envelope::EnvelopeRef::parse(envelope)
        .ok()?
        .msg_id()
}

fn fork_doc(group: Group, topic: Topic, fork: Option<&Meta>) -> CheckpointDoc {
    CheckpointDoc {
        group,
        topic,
        ulid: fork.map(|m| m.ulid),
        seq: fork.map_or(0, |m| m.seq),
        commit: fork.map(|m| m.commit),
    }
}

/// The last seq a summary commit pruned (its `Seq` trailer; 0 when it has none).
fn summary_seq(commit: &gatos_store::objects::Commit) -> u64 {
    commit
        .trailers()
        .get(keys::SEQ)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
