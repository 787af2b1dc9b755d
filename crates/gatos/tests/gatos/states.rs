//! Ref states (ADR 0044 §1): the id anyone can recompute with git, and reads pinned at a
//! state that do not move when the refs do.

use gatos::jobs::catalog::Query;
use gatos::jobs::manifest;
use gatos::messages::{Cursor, PublishOptions, ReadOptions};
use gatos::state::{Retention, StateId, Window};
use gatos_testutil::{TempRepo, TestResult};
use gatos_types::{Dur, ErrorCode, Topic, Ulid};
use serde_json::json;

use crate::support::open_at;

const T0: &str = "2026-11-23T10:00:00Z";

fn enqueue(g: &gatos::Gatos, queue: &str) -> TestResult<Ulid> {
    let spec = manifest::normalize(
        manifest::from_value(json!({"command": ["true"], "queue": queue}))?,
        g.now(),
    )?;
    Ok(g.jobs().enqueue(spec)?.id)
}

#[test]
fn a_state_id_is_the_blake3_of_git_for_each_ref() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _clock) = open_at(&repo, T0)?;
    enqueue(&g, "q")?;
    g.messages()
        .publish(&"t.a".parse()?, json!(1), &PublishOptions::default())?;
    let w = Window::new(Retention::default());
    let at = w.mint(&g)?;
    let lines = repo.git(&[
        "for-each-ref",
        "--format=%(objectname) %(refname)",
        "refs/gatos/",
    ])?;
    let want = StateId(*blake3::hash(lines.as_bytes()).as_bytes());
    assert!(lines.lines().count() >= 3, "{lines}");
    assert_eq!(at.id()?, want);
    assert!(at.meta()?.exact);
    // Nothing moved: the same state.
    assert_eq!(w.mint(&g)?.id()?, want);
    Ok(())
}

#[test]
fn pinned_reads_do_not_move_when_the_refs_do() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, clock) = open_at(&repo, T0)?;
    let topic: Topic = "t.pin".parse()?;
    let mut jobs = Vec::new();
    for _ in 0..5 {
        jobs.push(enqueue(&g, "q")?);
        clock.advance(Dur::from_secs(1));
    }
    for i in 0..20 {
        g.messages()
            .publish(&topic, json!({"i": i}), &PublishOptions::default())?;
    }
    let w = Window::new(Retention::default());
    let at = w.mint(&g)?;
    let as_of = g.now();
    let page = |q: &Query| g.jobs().page_in(&at, q, as_of);
    let before_jobs = page(&Query::default())?;
    let read = |since| {
        g.messages()
            .read_in(&at, &topic, &ReadOptions { since, limit: 100 }, u64::MAX)
    };
    let before_msgs = read(Cursor::Start)?;
    let before_rec = g.jobs().record_in(&at, jobs[0])?;
    assert_eq!(before_jobs.jobs.len(), 5);
    assert_eq!(before_msgs.messages.len(), 20);
    assert!(before_msgs.end);
    // Writes after the pin: new jobs, a cancel, new messages.
    for _ in 0..3 {
        enqueue(&g, "q")?;
    }
    g.jobs().cancel(jobs[0], Some("test".to_owned()))?;
    for i in 20..30 {
        g.messages()
            .publish(&topic, json!({"i": i}), &PublishOptions::default())?;
    }
    let after_jobs = page(&Query::default())?;
    assert_eq!(
        serde_json::to_string(&after_jobs.jobs)?,
        serde_json::to_string(&before_jobs.jobs)?
    );
    let after_msgs = read(Cursor::Start)?;
    assert_eq!(
        serde_json::to_string(&after_msgs)?,
        serde_json::to_string(&before_msgs)?
    );
    // Paging at the pin stops at the pinned head.
    let first = g.messages().read_in(
        &at,
        &topic,
        &ReadOptions {
            since: Cursor::Start,
            limit: 15,
        },
        u64::MAX,
    )?;
    assert!(!first.end);
    let rest = read(Cursor::Seq(15))?;
    assert_eq!(rest.messages.len(), 5);
    assert!(rest.end);
    assert_eq!(
        g.jobs()
            .record_in(&at, jobs[0])?
            .map(|r| r.cancel.is_some()),
        before_rec.map(|r| r.cancel.is_some())
    );
    // The live view moved.
    assert_eq!(g.jobs().page(&Query::default())?.jobs.len(), 8);
    let now = w.mint(&g)?;
    assert_ne!(now.id()?, at.id()?);
    assert_eq!(
        g.messages()
            .read_in(
                &now,
                &topic,
                &ReadOptions {
                    since: Cursor::Start,
                    limit: 100
                },
                u64::MAX
            )?
            .messages
            .len(),
        30
    );
    // A topic with no head at the state reads as empty there.
    let later: Topic = "t.later".parse()?;
    g.messages()
        .publish(&later, json!(1), &PublishOptions::default())?;
    let empty = g.messages().read_in(
        &at,
        &later,
        &ReadOptions {
            since: Cursor::Start,
            limit: 10,
        },
        u64::MAX,
    )?;
    assert!(empty.messages.is_empty() && empty.end);
    let unknown = StateId([9; 32]);
    assert_eq!(w.get(&unknown).unwrap_err().code(), ErrorCode::NotFound);
    Ok(())
}

/// Callers minting at once share mints, but never one that started before they arrived:
/// every caller sees every write acknowledged before its call.
#[test]
fn concurrent_mints_see_every_write_made_before_them() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _clock) = open_at(&repo, T0)?;
    let topic: Topic = "t.race".parse()?;
    let w = Window::new(Retention::default());
    for round in 0..5 {
        g.messages().publish(
            &topic,
            json!({ "round": round }),
            &PublishOptions::default(),
        )?;
        let ids: Vec<StateId> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| w.mint(&g).and_then(|at| at.id())))
                .collect();
            hs.into_iter()
                .map(|h| h.join().expect("joined"))
                .collect::<Result<Vec<_>, _>>()
        })?;
        let lines = repo.git(&[
            "for-each-ref",
            "--format=%(objectname) %(refname)",
            "refs/gatos/",
        ])?;
        let want = StateId(*blake3::hash(lines.as_bytes()).as_bytes());
        assert!(
            ids.iter().all(|i| *i == want),
            "round {round}: {ids:?} vs {want:?}"
        );
    }
    Ok(())
}

/// A live mint reuses the last state while no gatos writer moved a ref (the refs'
/// generation), and every gatos write — another handle's enqueue, a journaled publish
/// left for others to materialize, a cancel — moves it; a plain git write is seen within
/// `STATE_RESCAN`.
#[test]
fn an_unmoved_live_state_is_reused_and_every_gatos_write_moves_it() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _clock) = open_at(&repo, T0)?;
    let (other, _other_clock) = open_at(&repo, T0)?;
    enqueue(&g, "q")?;
    let w = Window::new(Retention::default());
    let want = || -> TestResult<StateId> {
        let lines = repo.git(&[
            "for-each-ref",
            "--format=%(objectname) %(refname)",
            "refs/gatos/",
        ])?;
        Ok(StateId(*blake3::hash(lines.as_bytes()).as_bytes()))
    };
    let a = w.mint(&g)?;
    let b = w.mint(&g)?;
    assert_eq!(a.id()?, b.id()?);
    assert_eq!(
        w.stats().reused,
        1,
        "the second mint reused the first state"
    );
    assert_eq!(a.id()?, want()?);
    let topic: Topic = "t.gen".parse()?;
    for round in 0..3 {
        let id = enqueue(&other, "q")?;
        let at = w.mint(&g)?;
        assert_eq!(
            at.id()?,
            want()?,
            "round {round}: an enqueue by another handle"
        );
        other.messages().publish(
            &topic,
            json!({ "round": round }),
            &PublishOptions::default(),
        )?;
        let at = w.mint(&g)?;
        assert_eq!(at.id()?, want()?, "round {round}: a journaled publish");
        let page = g.messages().read_in(
            &at,
            &topic,
            &ReadOptions {
                since: Cursor::Start,
                limit: 100,
            },
            u64::MAX,
        )?;
        assert_eq!(
            page.messages.len(),
            round + 1,
            "round {round}: the publish is in the state"
        );
        other.jobs().cancel(id, Some("gen test".into()))?;
        let at = w.mint(&g)?;
        assert_eq!(at.id()?, want()?, "round {round}: a cancel");
        assert_eq!(w.mint(&g)?.id()?, at.id()?, "round {round}: unmoved again");
    }
    // A write gatos does not see coming (plain git) is in a state within STATE_RESCAN.
    let job_ref = repo.git(&[
        "for-each-ref",
        "--count=1",
        "--format=%(objectname)",
        "refs/gatos/jobs/",
    ])?;
    repo.git(&["update-ref", "refs/gatos/config/plain", job_ref.trim()])?;
    let deadline = std::time::Instant::now() + gatos::state::STATE_RESCAN * 10;
    loop {
        if w.mint(&g)?.id()? == want()? {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a plain git write is seen within STATE_RESCAN"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(())
}

/// A state kept from the store's two-part listing (loose refs, and `packed-refs` records
/// reused while the file is unchanged, with only the refs loose then or now compared to
/// the newest state) equals what git lists, after every kind of ref change: gatos writes,
/// plain `git update-ref` by another process (a loose ref over a packed one, a new ref, a
/// deletion from `packed-refs`, a deletion of a loose ref), and `git pack-refs`. Every
/// earlier state still lists what git listed when it was kept.
#[test]
fn a_state_kept_from_a_listing_equals_git_after_every_kind_of_ref_change() -> TestResult {
    use gatos::refs::RefSource as _;
    let repo = TempRepo::new()?;
    let (g, _clock) = open_at(&repo, T0)?;
    let topic: Topic = "t.listed".parse()?;
    let mut jobs = Vec::new();
    for _ in 0..5 {
        jobs.push(enqueue(&g, "q")?);
    }
    g.messages()
        .publish(&topic, json!({"n": 0}), &PublishOptions::default())?;
    let w = Window::new(Retention::default());
    let lines = || git_refs(&repo, "refs/gatos/");
    let listed = |at: &gatos::state::At| -> TestResult<String> {
        Ok(at
            .list_after("refs/gatos/", None, usize::MAX)?
            .iter()
            .map(|(n, o)| format!("{o} {n}\n"))
            .collect())
    };
    let mut cached = None;
    let mut kept: Vec<(gatos::state::At, String)> = Vec::new();
    let mut step = |what: &str, reused: Option<bool>| -> TestResult {
        let l = gatos::state::collect_listed(&g, cached.as_ref())?;
        if let Some(want) = reused {
            let same = match (&cached, &l.listing.packed) {
                (Some(a), Some(b)) => std::sync::Arc::ptr_eq(a, b),
                _ => false,
            };
            assert_eq!(same, want, "{what}: packed-refs records reused");
        }
        cached.clone_from(&l.listing.packed);
        assert!(l.exact, "{what}");
        let at = w.keep_listed(l, g.now(), std::time::Instant::now());
        let git = lines()?;
        assert_eq!(
            at.id()?,
            StateId(*blake3::hash(git.as_bytes()).as_bytes()),
            "{what}: the id is git's"
        );
        assert_eq!(listed(&at)?, git, "{what}: the state lists what git lists");
        kept.push((at, git));
        for (i, (old, then)) in kept.iter().enumerate() {
            assert_eq!(&listed(old)?, then, "{what}: state {i} unchanged");
        }
        Ok(())
    };
    step("loose refs only", None)?;
    repo.git(&["pack-refs", "--all"])?;
    step("after pack-refs", Some(false))?;
    g.messages()
        .publish(&topic, json!({"n": 1}), &PublishOptions::default())?;
    step("a gatos publish over a packed head", Some(true))?;
    jobs.push(enqueue(&g, "q")?);
    step("a gatos enqueue (new loose refs)", Some(true))?;
    let job_ref = format!("refs/gatos/jobs/{}/job", jobs[0]);
    let oid = repo.git(&["rev-parse", &job_ref])?;
    let oid = oid.trim();
    repo.git(&["update-ref", "refs/gatos/config/plain", oid])?;
    step("a plain git ref, new", Some(true))?;
    let other = format!("refs/gatos/jobs/{}/job", jobs[1]);
    repo.git(&["update-ref", &other, oid])?;
    step("a plain git write over a packed ref", Some(true))?;
    repo.git(&["update-ref", "-d", "refs/gatos/config/plain"])?;
    step("a plain git delete of a loose ref", Some(true))?;
    repo.git(&[
        "update-ref",
        "-d",
        &format!("refs/gatos/jobs/{}/job", jobs[2]),
    ])?;
    step("a plain git delete of a packed ref", Some(false))?;
    repo.git(&["pack-refs", "--all"])?;
    step("after pack-refs again", Some(false))?;
    step("nothing moved", Some(true))?;
    // The live mint (its own cache of the records) agrees.
    g.messages()
        .publish(&topic, json!({"n": 2}), &PublishOptions::default())?;
    let at = w.mint(&g)?;
    assert_eq!(
        at.id()?,
        StateId(*blake3::hash(lines()?.as_bytes()).as_bytes())
    );
    g.messages()
        .publish(&topic, json!({"n": 3}), &PublishOptions::default())?;
    let at = w.mint(&g)?;
    assert_eq!(listed(&at)?, lines()?);
    Ok(())
}

// ---- durable snapshots (`git gatos snapshot`, ADR 0044 §1) ----

use gatos::snapshot::saved;

fn git_refs(repo: &TempRepo, prefix: &str) -> TestResult<String> {
    repo.git(&["for-each-ref", "--format=%(objectname) %(refname)", prefix])
}

#[test]
fn a_snapshot_copies_the_state_and_survives_writes_and_gc() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _clock) = open_at(&repo, T0)?;
    let first = enqueue(&g, "q")?;
    g.messages()
        .publish(&"t.a".parse()?, json!(1), &PublishOptions::default())?;
    // Plain git sees journaled publishes once they are flushed (ADR 0046).
    g.flush_journals()?;
    let before = git_refs(&repo, "refs/gatos/")?;
    let doc = saved::create(&g.with_actor("cli:tester"), "before")?;
    let want = StateId(*blake3::hash(before.as_bytes()).as_bytes());
    assert_eq!(doc.state, want.to_string());
    assert_eq!(doc.refs, before.lines().count() as u64);
    assert_eq!(doc.actor, "cli:tester");
    assert!(doc.exact);
    // The copies are packed (one packed-refs rewrite), and name the same commits.
    let packed = std::fs::read_to_string(repo.git_dir().join("packed-refs"))?;
    let copies = packed
        .lines()
        .filter(|l| l.contains(" refs/gatos-snapshots/before/r/"))
        .count();
    assert_eq!(copies, before.lines().count(), "{packed}");
    let back: String = saved::refs(&g, &"before".parse()?)?
        .iter()
        .map(|(n, o)| format!("{o} {n}\n"))
        .collect();
    assert_eq!(back, before);
    // Later writes do not move it.
    enqueue(&g, "q")?;
    assert_eq!(saved::list(&g)?, vec![doc.clone()]);
    let (loaded, c) = saved::load(&g, &"before".parse()?)?;
    assert_eq!(loaded, doc);
    assert_eq!(StateId::of(&c.refs), want);
    // Its objects stay after a ref they were reachable from goes, and a gc.
    let job_commit = repo
        .rev_parse(&format!("refs/gatos/jobs/{first}/job"))?
        .ok_or("job ref")?;
    repo.git(&["update-ref", "-d", &format!("refs/gatos/jobs/{first}/job")])?;
    repo.git(&["gc", "--prune=now", "--quiet"])?;
    repo.git(&["cat-file", "-e", &job_commit])?;
    repo.assert_fsck_strict()?;
    // Delete: meta first, then the copies; audited.
    let gone = saved::delete(&g, "before")?;
    assert_eq!(gone, doc);
    assert_eq!(git_refs(&repo, "refs/gatos-snapshots/")?, "");
    assert!(saved::list(&g)?.is_empty());
    let mut actions = Vec::new();
    gatos::audit::list(&g, gatos::audit::Since::Start, |r| {
        actions.push((r.action.clone(), r.target.clone()));
        Ok(true)
    })?;
    assert!(
        actions.contains(&(json!("snapshots.delete"), json!("snapshot:before"))),
        "{actions:?}"
    );
    let e = saved::delete(&g, "before").expect_err("deleted twice");
    assert_eq!(e.code(), ErrorCode::NotFound);
    repo.assert_fsck_strict()?;
    Ok(())
}

#[test]
fn snapshot_copies_without_meta_are_invisible_and_cleaned() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _clock) = open_at(&repo, T0)?;
    let id = enqueue(&g, "q")?;
    let job = repo
        .rev_parse(&format!("refs/gatos/jobs/{id}/job"))?
        .ok_or("job ref")?;
    // A crash after the copies and before the meta: copies, no meta.
    repo.git(&[
        "update-ref",
        &format!("refs/gatos-snapshots/crashed/r/jobs/{id}/job"),
        &job,
    ])?;
    assert!(saved::list(&g)?.is_empty());
    assert_eq!(saved::orphans(&g)?, vec!["crashed".to_owned()]);
    let e = saved::load(&g, &"crashed".parse()?).expect_err("not a snapshot");
    assert_eq!(e.code(), ErrorCode::NotFound);
    // The next create cleans it.
    saved::create(&g, "next")?;
    assert!(saved::orphans(&g)?.is_empty());
    let left = git_refs(&repo, "refs/gatos-snapshots/")?;
    assert!(!left.contains("crashed"), "{left}");
    assert!(left.contains("refs/gatos-snapshots/next/meta"), "{left}");
    // A delete crashed after its meta went: cleaned by clean_orphans (doctor --fix).
    repo.git(&["update-ref", "-d", "refs/gatos-snapshots/next/meta"])?;
    assert!(saved::list(&g)?.is_empty());
    assert_eq!(saved::clean_orphans(&g)?, vec!["next".to_owned()]);
    assert_eq!(git_refs(&repo, "refs/gatos-snapshots/")?, "");
    repo.assert_fsck_strict()?;
    Ok(())
}

#[test]
fn snapshot_hostile_names_and_the_65th_change_nothing() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _clock) = open_at(&repo, T0)?;
    enqueue(&g, "q")?;
    saved::create(&g, "taken")?;
    let before = git_refs(&repo, "refs/")?;
    let long = "a".repeat(65);
    for bad in [
        "",
        "..",
        "a..b",
        "a/b",
        "../x",
        "a\u{1}b",
        "A",
        "a.lock",
        long.as_str(),
        "é",
    ] {
        let e = saved::create(&g, bad).expect_err(bad);
        assert_eq!(e.code(), ErrorCode::InvalidInput, "{bad:?}: {e}");
        assert_eq!(e.details()["argument"], json!("name"), "{bad:?}");
        let e = saved::delete(&g, bad).expect_err(bad);
        assert_eq!(e.code(), ErrorCode::InvalidInput, "{bad:?}: {e}");
    }
    let e = saved::create(&g, "taken").expect_err("taken");
    assert_eq!(e.code(), ErrorCode::Conflict);
    assert_eq!(e.details()["snapshot"], json!("taken"));
    assert_eq!(git_refs(&repo, "refs/")?, before);
    for i in 1..saved::MAX_SNAPSHOTS {
        saved::create(&g, &format!("s{i:02}"))?;
    }
    assert_eq!(saved::list(&g)?.len(), saved::MAX_SNAPSHOTS);
    let before = git_refs(&repo, "refs/")?;
    let e = saved::create(&g, "one-more").expect_err("65th");
    assert_eq!(e.code(), ErrorCode::InvalidInput);
    assert_eq!(e.details()["limit"], json!(64));
    assert_eq!(git_refs(&repo, "refs/")?, before);
    repo.assert_fsck_strict()?;
    Ok(())
}

#[test]
fn snapshots_taken_while_a_writer_publishes_hold_their_states() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _clock) = open_at(&repo, T0)?;
    let topic: Topic = "t.busy".parse()?;
    g.messages()
        .publish(&topic, json!(0), &PublishOptions::default())?;
    repo.git(&["pack-refs", "--all"])?;
    let writer = {
        let g = g.clone();
        let topic = topic.clone();
        std::thread::spawn(move || -> gatos::Result<()> {
            for i in 1..=200 {
                g.messages()
                    .publish(&topic, json!(i), &PublishOptions::default())?;
                if i % 50 == 0 {
                    enqueue(&g, "q")
                        .map_err(|e| gatos::Error::new(ErrorCode::Internal, e.to_string()))?;
                }
            }
            Ok(())
        })
    };
    let mut docs = Vec::new();
    for i in 0..5 {
        docs.push(saved::create(&g, &format!("busy{i}"))?);
    }
    writer.join().map_err(|_| "the writer panicked")??;
    for d in &docs {
        let (doc, c) = saved::load(&g, &d.name.parse()?)?;
        assert_eq!(&doc, d);
        assert_eq!(StateId::of(&c.refs).to_string(), d.state, "{}", d.name);
    }
    // Every message the writer acknowledged is still there: no packed-refs rewrite lost a
    // ref it wrote meanwhile.
    let page = g.messages().read(
        &topic,
        &ReadOptions {
            since: Cursor::Start,
            limit: 1000,
        },
    )?;
    assert_eq!(page.messages.len(), 201);
    repo.assert_fsck_strict()?;
    Ok(())
}

#[test]
fn the_snapshot_index_finds_states_and_follows_creates_and_deletes() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _clock) = open_at(&repo, T0)?;
    enqueue(&g, "q")?;
    let index = saved::Index::default();
    let a = saved::create(&g, "a")?;
    enqueue(&g, "q")?;
    let b = saved::create(&g, "b")?;
    let id = |d: &saved::SnapshotDoc| -> TestResult<StateId> { Ok(d.state.parse()?) };
    assert_eq!(
        index.find_state(&g, &id(&a)?)?.map(|d| d.name),
        Some("a".into())
    );
    assert_eq!(index.len(), 2, "both documents read once");
    assert_eq!(
        index.find_state(&g, &id(&b)?)?.map(|d| d.name),
        Some("b".into())
    );
    assert!(index.find_state(&g, &StateId([9; 32]))?.is_none());
    // Another handle (another process) deletes one and makes one: the next lookup sees it.
    let (other, _c) = open_at(&repo, T0)?;
    saved::delete(&other, "a")?;
    enqueue(&other, "q")?;
    let c = saved::create(&other, "c")?;
    assert!(index.find_state(&g, &id(&a)?)?.is_none(), "a deleted");
    assert_eq!(index.len(), 2, "a's document forgotten, c's read");
    assert_eq!(
        index.find_state(&g, &id(&c)?)?.map(|d| d.name),
        Some("c".into())
    );
    // The same answers as the reading that lists every document.
    for d in [&a, &b, &c] {
        assert_eq!(
            index.find_state(&g, &id(d)?)?.map(|x| x.name),
            saved::find_state(&g, &id(d)?)?.map(|x| x.name)
        );
    }
    Ok(())
}

/// A topic whose tail was rewritten after a state was taken (here: the head moved back
/// outside gatos and new messages appended, as a sync re-append leaves it) still reads at
/// that state, from the state's own chain: the same messages, by start, position, ULID and
/// time, while the live topic reads the new tail.
#[test]
fn a_rewritten_topic_reads_at_a_state_taken_before_from_its_own_chain() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _clock) = open_at(&repo, T0)?;
    let topic: Topic = "t.rewrite".parse()?;
    for i in 0..5 {
        g.messages()
            .publish(&topic, json!({ "old": i }), &PublishOptions::default())?;
    }
    g.flush_journals()?;
    let w = Window::new(Retention::default());
    let at = w.mint(&g)?;
    let opts = |since, limit| ReadOptions { since, limit };
    let before = g
        .messages()
        .read_in(&at, &topic, &opts(Cursor::Start, 100), u64::MAX)?;
    assert_eq!(before.messages.len(), 5);
    // Rewrite the tail: the head back to seq 3, then two new messages on it.
    let third = before.messages[2].commit.to_string();
    repo.git(&[
        "update-ref",
        &format!("refs/gatos/messages/{topic}/head"),
        &third,
    ])?;
    let (other, _c) = open_at(&repo, T0)?;
    for i in 0..2 {
        other
            .messages()
            .publish(&topic, json!({ "new": i }), &PublishOptions::default())?;
    }
    other.flush_journals()?;
    let live = g.messages().read(&topic, &opts(Cursor::Start, 100))?;
    let payloads = |p: &gatos_types::wire::ReadPage| -> Vec<String> {
        p.messages
            .iter()
            .map(|m| m.payload.get().to_owned())
            .collect()
    };
    assert_eq!(
        payloads(&live)[3..],
        [r#"{"new":0}"#.to_owned(), r#"{"new":1}"#.to_owned()],
        "{:?}",
        payloads(&live)
    );
    // At the state: the old chain, whole and paged.
    let again = g
        .messages()
        .read_in(&at, &topic, &opts(Cursor::Start, 100), u64::MAX)?;
    assert_eq!(payloads(&again), payloads(&before));
    assert_eq!(
        again
            .messages
            .iter()
            .map(|m| (m.seq, m.ulid, m.commit))
            .collect::<Vec<_>>(),
        before
            .messages
            .iter()
            .map(|m| (m.seq, m.ulid, m.commit))
            .collect::<Vec<_>>()
    );
    assert!(again.end);
    let page = g
        .messages()
        .read_in(&at, &topic, &opts(Cursor::Seq(2), 2), u64::MAX)?;
    assert_eq!(
        page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [3, 4]
    );
    assert!(!page.end);
    let page = g.messages().read_in(
        &at,
        &topic,
        &opts(Cursor::Ulid(before.messages[3].ulid), 10),
        u64::MAX,
    )?;
    assert_eq!(page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), [5]);
    assert!(page.end);
    // (The test clock stands still: every message has the same time.)
    let t = gatos::messages::ulid_time(before.messages[1].ulid);
    let page = g
        .messages()
        .read_in(&at, &topic, &opts(Cursor::Time(t), 10), u64::MAX)?;
    assert_eq!(
        page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    let later = gatos_types::Timestamp::from_millis(t.as_millis() + 1);
    let page = g
        .messages()
        .read_in(&at, &topic, &opts(Cursor::Time(later), 10), u64::MAX)?;
    assert!(page.messages.is_empty() && page.end);
    // A byte cap still ends a page early, with the same messages.
    let capped = g
        .messages()
        .read_in(&at, &topic, &opts(Cursor::Start, 100), 1)?;
    assert_eq!(capped.messages.len(), 1);
    assert!(!capped.end);
    Ok(())
}

/// A topic whose head was moved outside gatos to no message while a publish to it waited in
/// its journal cannot have that journal made commits; it does not keep a state from being
/// made (every GraphQL read mints one): the state holds the refs as they stand, and its
/// listings name the topic and a checkpoint on it (ADR 0047).
#[test]
fn a_damaged_topic_with_a_journaled_publish_does_not_keep_a_state_from_being_made() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _clock) = open_at(&repo, T0)?;
    let (good, bad): (Topic, Topic) = ("st.good".parse()?, "st.bad".parse()?);
    let group: gatos_types::Group = "readers".parse()?;
    for t in [&good, &bad] {
        let row = g
            .messages()
            .publish(t, json!(1), &PublishOptions::default())?;
        g.checkpoints().set(&group, t, row.ulid, false)?;
    }
    g.flush_journals()?;
    g.messages()
        .publish(&bad, json!(2), &PublishOptions::default())?;
    crate::support::move_head_to_no_message(&repo, "st.bad")?;
    assert_eq!(
        g.flush_journals()?,
        vec![bad.clone()],
        "the journal cannot become commits"
    );
    let w = Window::new(Retention::default());
    let at = w.mint(&g)?;
    let topics = g.messages().listing_in(&at)?;
    let names: Vec<String> = topics.rows.iter().map(|r| r.topic.to_string()).collect();
    assert_eq!(names, ["st.good"]);
    assert_eq!(topics.damaged.len(), 1);
    assert_eq!(topics.damaged[0].code, ErrorCode::InvalidEnvelope);
    let checkpoints = g.checkpoints().listing_in(&at, None, None)?;
    assert_eq!(checkpoints.rows.len(), 1);
    assert_eq!(checkpoints.damaged.len(), 1);
    assert_eq!(checkpoints.damaged[0].topic, bad);
    Ok(())
}

/// A journal that cannot become commits on a topic that reads (here its record says a
/// format version no gatos writes: a newer writer's record, say) is a fault of the journal,
/// not damage of the topic: making a state still fails, rather than answer without the
/// publish acknowledged from it.
#[test]
fn a_journal_fault_on_a_topic_that_reads_still_keeps_a_state_from_being_made() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _clock) = open_at(&repo, T0)?;
    let t: Topic = "st.fine".parse()?;
    g.messages()
        .publish(&t, json!(1), &PublishOptions::default())?;
    g.flush_journals()?;
    g.messages()
        .publish(&t, json!(2), &PublishOptions::default())?;
    crate::support::journal_of_an_unknown_version(&repo, "st.fine")?;
    let w = Window::new(Retention::default());
    let Err(e) = w.mint(&g) else {
        return Err("a state was made without the journaled publish".into());
    };
    assert_eq!(e.code(), ErrorCode::InvalidEnvelope, "{e}");
    assert!(e.to_string().contains("unknown version"), "{e}");
    Ok(())
}
