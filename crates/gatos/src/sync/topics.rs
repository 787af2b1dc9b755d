//! Topics, their sealed segments and summaries, and consumer checkpoints (DESIGN §5).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use gatos_store::objects::NewCommit;
use gatos_store::objects::Objects;
use gatos_store::refs::{RefName, names};
use gatos_types::sync::{TopicAction, TopicSync};
use gatos_types::trailers::keys;
use gatos_types::wire::CheckpointDoc;
use gatos_types::{Group, Oid, Topic, Ulid};

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

impl Sync<'_> {
    fn meta(&self, commit: Oid) -> Result<Meta> {
        if let Some(m) = self.checks.metas.get(&commit) {
            return Ok(m.clone());
        }
        chain::meta(&self.gatos.store().reader().commit(commit)?)
    }

    /// The previous message in the sequence, unless it is pruned (`through`).
    fn step(&self, m: &Meta, through: u64) -> Result<Option<Meta>> {
        if m.seq <= through.saturating_add(1) {
            return Ok(None);
        }
        match m.prev() {
            Some(p) => Ok(Some(self.meta(p)?)),
            None => Ok(None),
        }
    }

    /// Walks both sequences back to their fork point.
    fn relate(&self, local: Oid, hub: Oid, through: u64) -> Result<Relation> {
        if local == hub {
            return Ok(Relation::Same);
        }
        let mut a = Some(self.meta(local)?);
        let mut b = Some(self.meta(hub)?);
        let mut local_after = Vec::new();
        let mut hub_after = Vec::new();
        loop {
            match (a.take(), b.take()) {
                (Some(x), Some(y)) if x.commit == y.commit => {
                    a = Some(x);
                    break;
                }
                (Some(x), Some(y)) if x.seq > y.seq => {
                    a = self.step(&x, through)?;
                    local_after.push(x);
                    b = Some(y);
                }
                (Some(x), Some(y)) if y.seq > x.seq => {
                    b = self.step(&y, through)?;
                    hub_after.push(y);
                    a = Some(x);
                }
                (Some(x), Some(y)) => {
                    a = self.step(&x, through)?;
                    b = self.step(&y, through)?;
                    local_after.push(x);
                    hub_after.push(y);
                }
                (Some(x), None) => {
                    a = self.step(&x, through)?;
                    local_after.push(x);
                }
                (None, Some(y)) => {
                    b = self.step(&y, through)?;
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
        match (l, h) {
            (None, None) => return Ok(0),
            (Some(l), Some(h)) if l == h => return Ok(tl),
            (Some(_), None) => self.push_ref(&name, l),
            (None, Some(_)) => {
                self.set_local(&name, h)?;
            }
            (Some(lv), Some(hv)) => {
                if self.on_chain(hv, lv)? {
                    self.push_ref(&name, Some(lv));
                } else if self.on_chain(lv, hv)? || th >= tl {
                    // The hub's prunes as far or further: adopt it.
                    self.set_local(&name, Some(hv))?;
                } else {
                    // This node pruned further: its summaries beyond the hub's go on top.
                    let mut mine = Vec::new();
                    let mut r = self.gatos.store().reader();
                    let mut at = Some(lv);
                    while let Some(c) = at {
                        let commit = r.commit(c)?;
                        let seq: u64 = commit
                            .trailers()
                            .get(keys::SEQ)
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        if seq <= th {
                            break;
                        }
                        at = commit.parents.first().copied();
                        mine.push(commit);
                    }
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
                    if self.set_local(&name, Some(tip))? {
                        self.push_ref(&name, Some(tip));
                    }
                }
            }
        }
        Ok(tl.max(th))
    }

    fn topic(&mut self, t: &Topic) -> Result<()> {
        let through = self.summaries(t)?;
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
                for (name, c) in &local_sealed {
                    self.push_sealed(name, *c, hub_sealed.get(name).copied())?;
                }
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
            (Some(l), Some(h)) => match self.relate(l, h, through)? {
                Relation::Same => {}
                Relation::HubAhead { received } => {
                    self.adopt(t, &head, &local_sealed, &hub_sealed, Some(l), h)?;
                    self.record_topic(t, TopicAction::Adopted, received, 0, Some(h));
                }
                Relation::LocalAhead { sent } => {
                    // With the hub's summary rejected, the sealed segments it pruned stay
                    // here but are not offered back to it.
                    let hub_seq = if self.checks.summary_rejected.contains(t) {
                        self.meta(h)?.seq
                    } else {
                        0
                    };
                    for (name, c) in &local_sealed {
                        if hub_sealed.get(name) != Some(c) && self.meta(*c)?.seq >= hub_seq {
                            self.push_sealed(name, *c, hub_sealed.get(name).copied())?;
                        }
                    }
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
        self.take_sealed(local_sealed, hub_sealed, &HashSet::new())?;
        self.set_local_held(head, Some(h))?;
        // A sealed segment the hub no longer has was pruned there; it goes here only with
        // the hub's summary (never on a summary this node rejected).
        if !self.checks.summary_rejected.contains(t) {
            for name in local_sealed.keys() {
                if !hub_sealed.contains_key(name) {
                    self.set_local_held(name, None)?;
                }
            }
        }
        Ok(())
    }

    /// Takes the hub's sealed segments, under the topic's lock. Create-only (DESIGN,
    /// ADR 0015): a segment this node also holds at another message keeps this node's
    /// value unless [`Sync::reconcile_sealed`] finds the hub's a later message of it; only
    /// a value of this node's that is about to be appended again after the hub's messages
    /// (`rewritten`, a diverged topic) gives way to the hub's as before.
    fn take_sealed(
        &mut self,
        local_sealed: &BTreeMap<String, Oid>,
        hub_sealed: &BTreeMap<String, Oid>,
        rewritten: &HashSet<Oid>,
    ) -> Result<()> {
        for (name, hv) in hub_sealed {
            match local_sealed.get(name) {
                Some(lv) if lv != hv && !rewritten.contains(lv) => {
                    self.reconcile_sealed(name, *lv, *hv, true)?;
                }
                _ => {
                    self.set_local_held(name, Some(*hv))?;
                }
            }
        }
        Ok(())
    }

    /// Offers this node's sealed segment to the hub, which holds `hub` under that name
    /// (or nothing).
    fn push_sealed(&mut self, name: &str, local: Oid, hub: Option<Oid>) -> Result<()> {
        match hub {
            None => self.push_ref(name, Some(local)),
            Some(h) if h == local => {}
            Some(h) => self.reconcile_sealed(name, local, h, false)?,
        }
        Ok(())
    }

    /// One sealed segment held at different messages here (`local`) and at the hub. Only
    /// the sealed ref keeps a segment's messages reachable (the next segment names its
    /// last message by a trailer, which git does not follow), so a value that drops
    /// messages is never taken: the hub's replaces this node's only when it is a later
    /// message of the segment (this node's then named a message inside it, as an
    /// interrupted rotation leaves; nothing is lost); a hub's value that is an earlier
    /// message is a `kept-local` conflict, and this node's is put back at the hub; any
    /// other pair (two messages on different chains) is a `kept-both` conflict.
    fn reconcile_sealed(&mut self, name: &str, local: Oid, hub: Oid, held: bool) -> Result<()> {
        if self.on_chain(local, hub)? {
            if held {
                self.set_local_held(name, Some(hub))?;
            } else {
                self.set_local(name, Some(hub))?;
            }
        } else if self.on_chain(hub, local)? {
            self.conflict(
                name,
                "kept-local",
                "the hub's sealed segment names an earlier message of the segment, which would leave the messages after it reachable from no ref; this node's is kept and put back at the hub",
            );
            self.push_ref(name, Some(local));
        } else {
            self.conflict(
                name,
                "kept-both",
                "the hub's sealed segment names another message than this node's (sealed segments are create-only)",
            );
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
        // Messages the hub already has (a push that landed, its answer lost) are not sent
        // twice: decided by ULID.
        let at_hub: HashSet<Ulid> = hub_after.iter().map(|m| m.ulid).collect();
        let mine: Vec<&Meta> = local_after
            .iter()
            .filter(|m| !at_hub.contains(&m.ulid))
            .collect();
        let fork_seq = fork.as_ref().map_or(through, |m| m.seq);
        let moved: HashSet<Oid> = local_after.iter().map(|m| m.commit).collect();
        // Checkpoints on the messages about to be rewritten go back to the fork point.
        self.move_back_checkpoints(t, &moved, fork.as_ref())?;
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
        self.take_sealed(local_sealed, hub_sealed, &moved)?;
        for (name, c) in &new_sealed {
            self.set_local_held(name.as_str(), Some(*c))?;
        }
        if !self.set_local_held(head, Some(tip))? {
            return Ok(());
        }
        let keep: BTreeSet<&str> = hub_sealed
            .keys()
            .map(String::as_str)
            .chain(new_sealed.iter().map(|(n, _)| n.as_str()))
            .collect();
        let keep_pruned = self.checks.summary_rejected.contains(t);
        for (name, c) in local_sealed {
            // Rewritten segments (after the fork) go; with the hub's summary rejected, the
            // segments it pruned stay.
            if !keep.contains(name.as_str()) && (!keep_pruned || self.meta(*c)?.seq > fork_seq) {
                self.set_local_held(name, None)?;
            }
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

    fn move_back_checkpoints(
        &mut self,
        t: &Topic,
        moved: &HashSet<Oid>,
        fork: Option<&Meta>,
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
            if !doc.commit.is_some_and(|c| moved.contains(&c)) {
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
                && self.damaged_here.contains_key(&t)
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
