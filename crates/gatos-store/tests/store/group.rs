//! Group commits (`Store::commit_group`): one object write and one ref transaction for
//! several writers; a compare-and-swap loser retried alone without failing the rest.

use gatos_store::group::{Member, Written};
use gatos_store::objects::{NewCommit, Objects};
use gatos_store::refs::{Edit, RefName};
use gatos_store::{Error, Store};
use gatos_testutil::{TempRepo, TestResult};
use gatos_types::{Oid, Timestamp};

use crate::{commit, store};

fn claim_ref(i: usize) -> RefName {
    RefName::from_repository(format!(
        "refs/gatos/jobs/01ARZ3NDEKTSV4RRFFQ69G5F{i:02}/claim"
    ))
}

/// A member moving `name` from `prev` to a new commit (its own blob, tree and commit,
/// collected in memory, not written).
fn member(s: &Store, name: RefName, prev: Option<Oid>, text: &str) -> TestResult<(Member, Oid)> {
    let mut w = s.collector();
    let blob = w.blob(text.as_bytes())?;
    let tree = w.files(&[("claim.json", blob)])?;
    let parents: Vec<Oid> = prev.into_iter().collect();
    let c = w.commit(&NewCommit {
        tree,
        parents: &parents,
        message: &format!("{text}\n"),
        time: Timestamp::from_millis(0),
    })?;
    Ok((
        Member {
            objects: w.objects,
            edits: vec![Edit::update(name, prev, c)],
        },
        c,
    ))
}

fn count_objects(repo: &TempRepo) -> TestResult<(u64, u64)> {
    let out = repo.git(&["count-objects", "-v"])?;
    let field = |k: &str| -> u64 {
        out.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(u64::MAX)
    };
    Ok((field("count:"), field("packs:")))
}

/// Refs at their first commits, made one by one as plain writes.
fn seeded(repo: &TempRepo, s: &Store, n: usize) -> TestResult<Vec<Oid>> {
    let mut heads = Vec::new();
    for i in 0..n {
        let c = commit(s, &format!("first {i}"))?;
        repo.git(&["update-ref", claim_ref(i).as_str(), &c.to_string()])?;
        heads.push(c);
    }
    Ok(heads)
}

#[test]
fn a_group_is_one_transaction_and_one_pack() -> TestResult {
    let repo = TempRepo::new()?;
    // git logs every ref update here; gatos writes no reflog (refs/gatos/** are its own
    // history), so each ref's log keeps only git's own seeding entry.
    repo.git(&["config", "core.logAllRefUpdates", "always"])?;
    let s = store(&repo)?;
    let heads = seeded(&repo, &s, 4)?;
    let (loose_before, packs_before) = count_objects(&repo)?;
    let mut members = Vec::new();
    let mut news = Vec::new();
    for (i, h) in heads.iter().enumerate() {
        let (m, c) = member(&s, claim_ref(i), Some(*h), &format!("second {i}"))?;
        members.push(m);
        news.push(c);
    }
    let done = s.commit_group(&members, 1)?;
    assert_eq!(done.transactions, 1, "one ref transaction for the group");
    assert_eq!(done.written, Some(Written::Pack));
    assert!(done.members.iter().all(Result::is_ok), "{:?}", done.members);
    for (i, c) in news.iter().enumerate() {
        assert_eq!(repo.rev_parse(claim_ref(i).as_str())?, Some(c.to_string()));
        let log = repo.git(&["reflog", "show", "--format=%H", claim_ref(i).as_str()])?;
        assert_eq!(log.lines().collect::<Vec<_>>(), vec![heads[i].to_string()]);
    }
    // The group's twelve objects are one pack, no loose object was added, and its .keep
    // is gone once the refs moved.
    assert_eq!(count_objects(&repo)?, (loose_before, packs_before + 1));
    let keeps = std::fs::read_dir(repo.git_dir().join("objects/pack"))?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".keep"))
        .count();
    assert_eq!(keeps, 0);
    repo.git(&["reflog", "expire", "--dry-run", "--all"])?;
    repo.assert_fsck_strict()
}

#[test]
fn a_cas_loser_is_retried_alone_and_the_rest_commit() -> TestResult {
    let repo = TempRepo::new()?;
    let s = store(&repo)?;
    let heads = seeded(&repo, &s, 4)?;
    let mut members = Vec::new();
    let mut news = Vec::new();
    for (i, h) in heads.iter().enumerate() {
        let (m, c) = member(&s, claim_ref(i), Some(*h), &format!("second {i}"))?;
        members.push(m);
        news.push(c);
    }
    // Another writer (plain git) moves member 2's ref after it decided: its CAS must lose.
    let other = commit(&s, "elsewhere")?;
    repo.git(&["update-ref", claim_ref(2).as_str(), &other.to_string()])?;
    // And a member that creates a ref, in the same group.
    let fresh =
        RefName::from_repository("refs/gatos/jobs/01ARZ3NDEKTSV4RRFFQ69G5F99/result".into());
    let (mut m, c) = member(&s, fresh.clone(), None, "result")?;
    m.edits = vec![Edit::create(fresh.clone(), c)];
    members.push(m);
    let (loose_before, _) = count_objects(&repo)?;
    let done = s.commit_group(&members, 1000)?;
    assert_eq!(done.written, Some(Written::Loose));
    // The group (5) failed on member 2's CAS; the other four went through together, then
    // member 2 alone, which lost again.
    assert_eq!(done.transactions, 3);
    for (i, r) in done.members.iter().enumerate() {
        if i == 2 {
            assert!(
                matches!(r, Err(Error::CasMismatch { actual: Some(a), .. }) if *a == other),
                "{r:?}"
            );
        } else {
            assert!(r.is_ok(), "member {i}: {r:?}");
        }
    }
    for i in [0, 1, 3] {
        assert_eq!(
            repo.rev_parse(claim_ref(i).as_str())?,
            Some(news[i].to_string())
        );
    }
    assert_eq!(
        repo.rev_parse(claim_ref(2).as_str())?,
        Some(other.to_string())
    );
    assert_eq!(repo.rev_parse(fresh.as_str())?, Some(c.to_string()));
    // Written once each, as loose objects: 5 members of 3 objects.
    assert_eq!(count_objects(&repo)?.0, loose_before + 15);
    repo.assert_fsck_strict()?;
    // The loser, retried by its writer against the value it now finds, commits alone.
    let (m, c2) = member(&s, claim_ref(2), Some(other), "third 2")?;
    let again = s.commit_group(&[m], 32)?;
    assert_eq!(again.transactions, 1);
    assert!(again.members[0].is_ok());
    assert_eq!(repo.rev_parse(claim_ref(2).as_str())?, Some(c2.to_string()));
    repo.assert_fsck_strict()
}

#[test]
fn a_group_refuses_deletes_and_writes_nothing() -> TestResult {
    let repo = TempRepo::new()?;
    let s = store(&repo)?;
    let heads = seeded(&repo, &s, 1)?;
    let m = Member {
        objects: Vec::new(),
        edits: vec![Edit {
            name: claim_ref(0),
            expect: gatos_store::Expect::Value(heads[0]),
            new: None,
        }],
    };
    assert!(s.commit_group(&[m], 32).is_err());
    assert_eq!(
        repo.rev_parse(claim_ref(0).as_str())?,
        Some(heads[0].to_string())
    );
    Ok(())
}
