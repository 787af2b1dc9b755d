//! Every `refs/gatos/**` name, spelled in this file only (DESIGN §2).

use std::fmt;

use gatos_types::{Group, KeyId, ManifestName, Queue, SnapshotName, Topic, Ulid};

/// The namespace every gatos ref lives under.
pub const GATOS_PREFIX: &str = "refs/gatos/";
/// Where `sync` keeps what it fetched: `refs/gatos-sync/<remote>/…`.
pub const SYNC_PREFIX: &str = "refs/gatos-sync/";

/// A full ref name that was built from validated parts.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RefName(String);

impl RefName {
    /// Returns the full name, e.g. `refs/gatos/messages/ci.events/head`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Wraps a full name read back from the repository (already valid by construction).
    pub fn from_repository(name: String) -> RefName {
        RefName(name)
    }

    fn gatos(parts: &[&str]) -> RefName {
        let mut s = String::with_capacity(64);
        s.push_str(GATOS_PREFIX);
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                s.push('/');
            }
            s.push_str(p);
        }
        RefName(s)
    }

    /// Parses this name into what it names, when it is a gatos ref.
    pub fn kind(&self) -> Option<RefKind> {
        RefKind::parse(&self.0)
    }
}

impl fmt::Display for RefName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RefName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// `refs/gatos/messages/<topic>/head`.
pub fn message_head(t: &Topic) -> RefName {
    RefName::gatos(&["messages", t.as_str(), "head"])
}

/// `refs/gatos/messages/<topic>/<yyyy-mm-dd>/<ulid>`: a sealed segment.
pub fn message_sealed(t: &Topic, date: &str, first: Ulid) -> RefName {
    RefName::gatos(&["messages", t.as_str(), date, &first.to_string()])
}

/// `refs/gatos/messages/<topic>/summary`.
pub fn message_summary(t: &Topic) -> RefName {
    RefName::gatos(&["messages", t.as_str(), "summary"])
}

/// `refs/gatos/messages/<topic>/`: every ref of one topic.
pub fn topic_prefix(t: &Topic) -> String {
    format!("{GATOS_PREFIX}messages/{t}/")
}

/// `refs/gatos/messages/`: every topic's refs.
pub const MESSAGES_PREFIX: &str = "refs/gatos/messages/";

/// `refs/gatos/messages/`.
pub fn messages_prefix() -> String {
    MESSAGES_PREFIX.to_owned()
}

/// `refs/gatos/consumers/<group>/<topic>`.
pub fn consumer(g: &Group, t: &Topic) -> RefName {
    RefName::gatos(&["consumers", g.as_str(), t.as_str()])
}

/// `refs/gatos/consumers/`.
pub fn consumers_prefix() -> String {
    format!("{GATOS_PREFIX}consumers/")
}

/// `refs/gatos/config/topics/<topic>`.
pub fn config_topic(t: &Topic) -> RefName {
    RefName::gatos(&["config", "topics", t.as_str()])
}

/// `refs/gatos/config/queues/<queue>`.
pub fn config_queue(q: &Queue) -> RefName {
    RefName::gatos(&["config", "queues", q.as_str()])
}

/// `refs/gatos/config/`: every settings chain.
pub fn config_prefix() -> String {
    format!("{GATOS_PREFIX}config/")
}

/// `refs/gatos/config/queues/`.
pub fn config_queues_prefix() -> String {
    format!("{GATOS_PREFIX}config/queues/")
}

/// `refs/gatos/jobs/<id>/job`.
pub fn job(id: Ulid) -> RefName {
    RefName::gatos(&["jobs", &id.to_string(), "job"])
}

/// `refs/gatos/jobs/<id>/claim`.
pub fn job_claim(id: Ulid) -> RefName {
    RefName::gatos(&["jobs", &id.to_string(), "claim"])
}

/// `refs/gatos/jobs/<id>/result`.
pub fn job_result(id: Ulid) -> RefName {
    RefName::gatos(&["jobs", &id.to_string(), "result"])
}

/// `refs/gatos/jobs/<id>/cancel`.
pub fn job_cancel(id: Ulid) -> RefName {
    RefName::gatos(&["jobs", &id.to_string(), "cancel"])
}

/// `refs/gatos/jobs/`.
pub const JOBS_PREFIX: &str = "refs/gatos/jobs/";

/// `refs/gatos/jobs/`.
pub fn jobs_prefix() -> String {
    JOBS_PREFIX.to_owned()
}

/// `refs/gatos/jobs/<id>/`.
pub fn job_prefix(id: Ulid) -> String {
    format!("{GATOS_PREFIX}jobs/{id}/")
}

/// `refs/gatos/archive/jobs/<yyyy-mm>`.
pub fn archive_jobs(month: &str) -> RefName {
    RefName::gatos(&["archive", "jobs", month])
}

/// `refs/gatos/archive/jobs/`.
pub fn archive_prefix() -> String {
    format!("{GATOS_PREFIX}archive/jobs/")
}

/// `refs/gatos/manifests/<name>`.
pub fn manifest(n: &ManifestName) -> RefName {
    RefName::gatos(&["manifests", n.as_str()])
}

/// `refs/gatos/manifests/`.
pub fn manifests_prefix() -> String {
    format!("{GATOS_PREFIX}manifests/")
}

/// `refs/gatos/trust/keys/<hex>`.
pub fn trust_key(k: &KeyId) -> RefName {
    RefName::gatos(&["trust", "keys", &k.to_hex()])
}

/// `refs/gatos/trust/revoked/<hex>`.
pub fn trust_revoked(k: &KeyId) -> RefName {
    RefName::gatos(&["trust", "revoked", &k.to_hex()])
}

/// `refs/gatos/trust/revocations/<hex>/<digest-hex>`: one revocation record of a key,
/// named by the blake3 of its `revocation.json` (several per key merge; ADR 0018).
pub fn trust_revocation(k: &KeyId, digest_hex: &str) -> RefName {
    RefName::gatos(&["trust", "revocations", &k.to_hex(), digest_hex])
}

/// `refs/gatos/trust/revocations/<hex>/`.
pub fn trust_revocations_prefix(k: &KeyId) -> String {
    format!("{GATOS_PREFIX}trust/revocations/{}/", k.to_hex())
}

/// `refs/gatos/trust/`.
pub fn trust_prefix() -> String {
    format!("{GATOS_PREFIX}trust/")
}

/// Where a job's competing results are kept (outside `refs/gatos/`: never replicated):
/// `refs/gatos-conflicts/jobs/<id>/<commit>`.
pub const CONFLICTS_PREFIX: &str = "refs/gatos-conflicts/";

/// `refs/gatos-conflicts/jobs/<id>/<commit>`: a result for job `id` that another node holds
/// and this node did not take in place of its own (ADR 0018).
pub fn result_conflict(id: Ulid, commit: &str) -> RefName {
    RefName(format!("{CONFLICTS_PREFIX}jobs/{id}/{commit}"))
}

/// `refs/gatos-conflicts/jobs/<id>/`.
pub fn result_conflicts_prefix(id: Ulid) -> String {
    format!("{CONFLICTS_PREFIX}jobs/{id}/")
}

/// `refs/gatos-conflicts/jobs/`.
pub fn result_conflicts_root() -> String {
    format!("{CONFLICTS_PREFIX}jobs/")
}

/// `refs/gatos-conflicts/set-aside/jobs/<id>/<commit>`: a result `jobs resolve` did not
/// choose; kept (so nothing is lost) and not reported again when a remote still holds it.
pub fn result_set_aside(id: Ulid, commit: &str) -> RefName {
    RefName(format!("{CONFLICTS_PREFIX}set-aside/jobs/{id}/{commit}"))
}

/// Where durable ref snapshots live (outside `refs/gatos/`: never synced, not part of a
/// state): `refs/gatos-snapshots/<name>/meta` and `refs/gatos-snapshots/<name>/r/<rest>`.
pub const SNAPSHOTS_PREFIX: &str = "refs/gatos-snapshots/";

/// `refs/gatos-snapshots/<name>/`: everything of one snapshot.
pub fn snapshot_prefix(n: &SnapshotName) -> String {
    format!("{SNAPSHOTS_PREFIX}{n}/")
}

/// `refs/gatos-snapshots/<name>/r/`: the copies of one snapshot's refs.
pub fn snapshot_copies_prefix(n: &SnapshotName) -> String {
    format!("{SNAPSHOTS_PREFIX}{n}/r/")
}

/// `refs/gatos-snapshots/<name>/meta`: a snapshot's commit point, written last.
pub fn snapshot_meta(n: &SnapshotName) -> RefName {
    RefName(format!("{SNAPSHOTS_PREFIX}{n}/meta"))
}

/// The copy of gatos ref `name` in a snapshot: `refs/gatos/x` →
/// `refs/gatos-snapshots/<n>/r/x`.
pub fn snapshot_copy(n: &SnapshotName, name: &str) -> Option<String> {
    let rest = name.strip_prefix(GATOS_PREFIX)?;
    Some(format!("{SNAPSHOTS_PREFIX}{n}/r/{rest}"))
}

/// The gatos ref a snapshot's copy stands for: `refs/gatos-snapshots/<n>/r/x` →
/// `refs/gatos/x`.
pub fn snapshot_original(n: &SnapshotName, copy: &str) -> Option<String> {
    let rest = copy.strip_prefix(&snapshot_copies_prefix(n))?;
    Some(format!("{GATOS_PREFIX}{rest}"))
}

/// The tracking name of a gatos ref fetched from `remote`:
/// `refs/gatos/x` → `refs/gatos-sync/<remote>/x`.
pub fn tracking(remote: &str, name: &RefName) -> Option<RefName> {
    let rest = name.as_str().strip_prefix(GATOS_PREFIX)?;
    Some(RefName(format!("{SYNC_PREFIX}{remote}/{rest}")))
}

/// The gatos ref that a tracking ref mirrors: `refs/gatos-sync/<remote>/x` → `refs/gatos/x`.
pub fn untracked(remote: &str, tracking: &str) -> Option<RefName> {
    let rest = tracking
        .strip_prefix(SYNC_PREFIX)?
        .strip_prefix(remote)?
        .strip_prefix('/')?;
    Some(RefName(format!("{GATOS_PREFIX}{rest}")))
}

/// The gatos ref that a tracking ref of any remote mirrors, with that remote:
/// `refs/gatos-sync/<remote>/x` → (`<remote>`, `refs/gatos/x`) when `refs/gatos/x` fits
/// the layout (a remote's name may hold a `/`: the shortest name that fits is taken).
pub fn untracked_any(tracking: &str) -> Option<(&str, RefName)> {
    let rest = tracking.strip_prefix(SYNC_PREFIX)?;
    rest.match_indices('/').find_map(|(i, _)| {
        let name = format!("{GATOS_PREFIX}{}", &rest[i + 1..]);
        RefKind::parse(&name).map(|_| (&rest[..i], RefName(name)))
    })
}

/// What a gatos ref names, parsed from its full name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefKind {
    /// A topic's live head.
    MessageHead(Topic),
    /// A sealed segment: its date and first ULID.
    MessageSealed(Topic, String, Ulid),
    /// A topic's summary chain.
    MessageSummary(Topic),
    /// A consumer checkpoint.
    Consumer(Group, Topic),
    /// A topic's settings.
    ConfigTopic(Topic),
    /// A queue's settings.
    ConfigQueue(Queue),
    /// A job's manifest commit.
    Job(Ulid),
    /// A job's claim chain.
    JobClaim(Ulid),
    /// A job's result.
    JobResult(Ulid),
    /// A job's cancel request.
    JobCancel(Ulid),
    /// A month of archived jobs.
    ArchiveJobs(String),
    /// A manifest's version chain.
    Manifest(ManifestName),
    /// A published key record.
    TrustKey(KeyId),
    /// A key revocation in the first layout (one per key; still read).
    TrustRevoked(KeyId),
    /// One of a key's revocation records, by the blake3 hex of its document.
    TrustRevocation(KeyId, String),
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_month(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 7
        && b[4] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || c.is_ascii_digit())
}

impl RefKind {
    /// Parses a full ref name; `None` for anything that does not fit the layout.
    pub fn parse(full: &str) -> Option<RefKind> {
        let rest = full.strip_prefix(GATOS_PREFIX)?;
        let parts: Vec<&str> = rest.split('/').collect();
        Some(match parts.as_slice() {
            ["messages", t, "head"] => RefKind::MessageHead(t.parse().ok()?),
            ["messages", t, "summary"] => RefKind::MessageSummary(t.parse().ok()?),
            ["messages", t, date, ulid] if is_date(date) => {
                RefKind::MessageSealed(t.parse().ok()?, (*date).to_owned(), ulid.parse().ok()?)
            }
            ["consumers", g, t] => RefKind::Consumer(g.parse().ok()?, t.parse().ok()?),
            ["config", "topics", t] => RefKind::ConfigTopic(t.parse().ok()?),
            ["config", "queues", q] => RefKind::ConfigQueue(q.parse().ok()?),
            ["jobs", id, "job"] => RefKind::Job(id.parse().ok()?),
            ["jobs", id, "claim"] => RefKind::JobClaim(id.parse().ok()?),
            ["jobs", id, "result"] => RefKind::JobResult(id.parse().ok()?),
            ["jobs", id, "cancel"] => RefKind::JobCancel(id.parse().ok()?),
            ["archive", "jobs", m] if is_month(m) => RefKind::ArchiveJobs((*m).to_owned()),
            ["manifests", n] => RefKind::Manifest(n.parse().ok()?),
            ["trust", "keys", hex] => RefKind::TrustKey(KeyId::from_hex(hex).ok()?),
            ["trust", "revoked", hex] => RefKind::TrustRevoked(KeyId::from_hex(hex).ok()?),
            ["trust", "revocations", hex, d] if is_hex64(d) => {
                RefKind::TrustRevocation(KeyId::from_hex(hex).ok()?, (*d).to_owned())
            }
            _ => return None,
        })
    }

    /// The topic of a message ref (its head, a sealed segment, its summary); `None` for
    /// every other kind.
    pub fn message_topic(&self) -> Option<&Topic> {
        match self {
            RefKind::MessageHead(t)
            | RefKind::MessageSealed(t, ..)
            | RefKind::MessageSummary(t) => Some(t),
            _ => None,
        }
    }

    /// Returns the lock family whose flock guards this ref (DESIGN §3).
    pub fn lock_family(&self) -> String {
        match self {
            RefKind::MessageHead(t)
            | RefKind::MessageSealed(t, ..)
            | RefKind::MessageSummary(t) => {
                format!("messages.{t}")
            }
            RefKind::Consumer(g, _) => format!("consumers.{g}"),
            RefKind::ConfigTopic(_) | RefKind::ConfigQueue(_) => "config".to_owned(),
            RefKind::Job(id)
            | RefKind::JobClaim(id)
            | RefKind::JobResult(id)
            | RefKind::JobCancel(id) => job_lock_family(*id),
            RefKind::ArchiveJobs(_) => "archive".to_owned(),
            RefKind::Manifest(_) => "manifests".to_owned(),
            RefKind::TrustKey(_) | RefKind::TrustRevoked(_) | RefKind::TrustRevocation(..) => {
                "trust".to_owned()
            }
        }
    }
}

/// Jobs share 32 lock families, chosen by the last (random) character of the job ULID, so
/// the number of lock files stays bounded however many jobs run.
pub fn job_lock_family(id: Ulid) -> String {
    let s = id.to_string();
    format!("jobs.{}", &s[25..])
}

/// The lock family for any ref name: gatos refs by kind, everything else shared.
pub fn lock_family_of(full: &str) -> String {
    match RefKind::parse(full) {
        Some(k) => k.lock_family(),
        None if full.starts_with(SYNC_PREFIX) => "sync".to_owned(),
        None if full.starts_with(CONFLICTS_PREFIX) => "conflicts".to_owned(),
        None => "other".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_to_their_kind() -> Result<(), Box<dyn std::error::Error>> {
        let t: Topic = "ci.events".parse()?;
        let g: Group = "billing".parse()?;
        let u: Ulid = "01ARZ3NDEKTSV4RRFFQ69G5FAV".parse()?;
        assert_eq!(
            message_head(&t).as_str(),
            "refs/gatos/messages/ci.events/head"
        );
        assert_eq!(
            message_head(&t).kind(),
            Some(RefKind::MessageHead(t.clone()))
        );
        assert_eq!(
            message_sealed(&t, "2026-11-23", u).kind(),
            Some(RefKind::MessageSealed(t.clone(), "2026-11-23".into(), u))
        );
        assert_eq!(
            consumer(&g, &t).kind(),
            Some(RefKind::Consumer(g.clone(), t.clone()))
        );
        assert_eq!(job_claim(u).kind(), Some(RefKind::JobClaim(u)));
        assert_eq!(
            RefKind::parse("refs/gatos/messages/ci.events/2026-11-23"),
            None
        );
        assert_eq!(RefKind::parse("refs/gatos/unknown/x"), None);
        assert_eq!(RefKind::parse("refs/heads/main"), None);
        let tr = tracking("origin", &message_head(&t)).ok_or("tracking")?;
        assert_eq!(
            tr.as_str(),
            "refs/gatos-sync/origin/messages/ci.events/head"
        );
        assert_eq!(untracked("origin", tr.as_str()), Some(message_head(&t)));
        assert_eq!(
            untracked_any(tr.as_str()),
            Some(("origin", message_head(&t)))
        );
        let nested = tracking("a/b", &consumer(&g, &t)).ok_or("tracking")?;
        assert_eq!(
            untracked_any(nested.as_str()),
            Some(("a/b", consumer(&g, &t)))
        );
        assert_eq!(untracked_any("refs/gatos-sync/origin/unknown/x"), None);
        Ok(())
    }

    #[test]
    fn lock_families_are_bounded() -> Result<(), Box<dyn std::error::Error>> {
        let u: Ulid = "01ARZ3NDEKTSV4RRFFQ69G5FAV".parse()?;
        assert_eq!(lock_family_of(job(u).as_str()), "jobs.V");
        assert_eq!(lock_family_of(job_result(u).as_str()), "jobs.V");
        assert_eq!(lock_family_of("refs/gatos/messages/t/head"), "messages.t");
        assert_eq!(
            lock_family_of("refs/gatos/messages/t/2026-01-01/01ARZ3NDEKTSV4RRFFQ69G5FAV"),
            "messages.t"
        );
        Ok(())
    }
}
