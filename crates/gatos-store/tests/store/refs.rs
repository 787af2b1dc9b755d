use gatos_store::Expect;
use gatos_store::Store;
use gatos_store::refs::{Applied, Edit, LockOwner, Options, RefName};
use gatos_testutil::{TempRepo, TestResult};

use crate::{commit, store};

fn name(s: &str) -> RefName {
    RefName::from_repository(s.to_owned())
}

#[test]
fn create_only_and_cas_report_what_they_found() -> TestResult {
    let repo = TempRepo::new()?;
    let s = store(&repo)?;
    let (a, b) = (commit(&s, "a")?, commit(&s, "b")?);
    let r = name("refs/gatos/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV/claim");
    assert_eq!(
        s.update_refs(&[Edit::create(r.clone(), a)], &Options::default())?,
        vec![Applied::Changed]
    );
    assert_eq!(
        s.update_refs(&[Edit::create(r.clone(), a)], &Options::default())?,
        vec![Applied::AlreadyThere]
    );
    let err = s
        .update_refs(&[Edit::create(r.clone(), b)], &Options::default())
        .unwrap_err();
    match err {
        gatos_store::Error::CasMismatch {
            actual, expected, ..
        } => {
            assert_eq!(actual, Some(a));
            assert_eq!(expected, Expect::Absent);
        }
        other => panic!("expected a CAS mismatch, got {other:?}"),
    }
    let err = s
        .update_refs(&[Edit::update(r.clone(), Some(b), a)], &Options::default())
        .unwrap_err();
    assert!(err.is_cas_mismatch());
    s.update_refs(&[Edit::update(r.clone(), Some(a), b)], &Options::default())?;
    assert_eq!(repo.rev_parse(r.as_str())?, Some(b.to_string()));
    let missing = name("refs/gatos/nothing");
    let err = s
        .update_refs(&[Edit::update(missing, Some(a), b)], &Options::default())
        .unwrap_err();
    assert!(matches!(
        err,
        gatos_store::Error::CasMismatch { actual: None, .. }
    ));
    repo.assert_fsck_strict()
}

#[test]
fn a_multi_ref_change_applies_all_or_nothing() -> TestResult {
    let repo = TempRepo::new()?;
    let s = store(&repo)?;
    let (a, b) = (commit(&s, "a")?, commit(&s, "b")?);
    s.update_refs(
        &[Edit::create(name("refs/gatos/x"), a)],
        &Options::default(),
    )?;
    let edits = [
        Edit::create(name("refs/gatos/y"), b),
        Edit::update(name("refs/gatos/x"), Some(b), b),
    ];
    assert!(s.update_refs(&edits, &Options::default()).is_err());
    assert_eq!(repo.rev_parse("refs/gatos/y")?, None, "nothing applied");
    s.update_refs(
        &[
            Edit::create(name("refs/gatos/y"), b),
            Edit::update(name("refs/gatos/x"), Some(a), b),
        ],
        &Options::default(),
    )?;
    assert_eq!(repo.rev_parse("refs/gatos/x")?, Some(b.to_string()));
    // Deletes expect their value, also for packed refs; reads find packed refs exactly.
    repo.git(&["pack-refs", "--all"])?;
    assert_eq!(s.read_ref(&name("refs/gatos/x"))?, Some(b));
    assert_eq!(s.read_ref(&name("refs/gatos/y"))?, Some(b));
    assert_eq!(s.read_ref(&name("refs/gatos/nothing"))?, None);
    assert_eq!(
        s.read_ref(&name("refs/gatos"))?,
        None,
        "a directory is not a ref"
    );
    assert!(
        s.update_refs(
            &[Edit::delete(name("refs/gatos/y"), a)],
            &Options::default()
        )
        .is_err()
    );
    s.update_refs(
        &[Edit::delete(name("refs/gatos/y"), b)],
        &Options::default(),
    )?;
    assert_eq!(repo.rev_parse("refs/gatos/y")?, None);
    assert_eq!(s.list_refs("refs/gatos/")?.len(), 1);
    repo.assert_fsck_strict()
}

fn age_file(path: &std::path::Path, secs: u64) -> TestResult {
    let f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(secs))?;
    Ok(())
}

/// Leaves what a gatos writer killed mid-transaction leaves: its owner record and the
/// lock files it names (written after the record).
fn dead_gatos_writer(s: &Store, repo: &TempRepo, rels: &[&str]) -> TestResult {
    let record = s
        .locks()
        .owners()
        .record(&rels.iter().map(|r| (*r).to_owned()).collect::<Vec<_>>())?;
    for rel in rels {
        std::fs::write(repo.git_dir().join(rel), "garbage")?;
    }
    record.abandon();
    Ok(())
}

fn quick() -> Options {
    Options {
        timeout: std::time::Duration::from_millis(300),
        ..Options::default()
    }
}

#[test]
fn a_dead_gatos_writers_locks_are_removed_by_the_next_writer() -> TestResult {
    let repo = TempRepo::new()?;
    let s = store(&repo)?;
    let (a, b) = (commit(&s, "a")?, commit(&s, "b")?);
    let r = name("refs/gatos/messages/t/head");
    s.update_refs(&[Edit::create(r.clone(), a)], &Options::default())?;
    let lock = repo.git_dir().join("refs/gatos/messages/t/head.lock");
    let packed = repo.git_dir().join("packed-refs.lock");
    // Young or old, a dead gatos writer's locks are removed at once: its record proves it.
    dead_gatos_writer(&s, &repo, &["refs/gatos/messages/t/head.lock"])?;
    s.update_refs(&[Edit::update(r.clone(), Some(a), b)], &Options::default())?;
    assert!(!lock.exists());
    dead_gatos_writer(
        &s,
        &repo,
        &["refs/gatos/messages/t/head.lock", "packed-refs.lock"],
    )?;
    age_file(&lock, 3600)?; // older than its record: not provably gatos's
    assert!(
        s.update_refs(&[Edit::update(r.clone(), Some(b), a)], &quick())
            .is_err(),
        "a lock older than every record naming it is foreign"
    );
    std::fs::remove_file(&lock)?;
    s.update_refs(&[Edit::update(r.clone(), Some(b), a)], &Options::default())?;
    assert!(
        !packed.exists(),
        "the dead writer's packed-refs.lock went too"
    );
    assert_eq!(repo.rev_parse(r.as_str())?, Some(a.to_string()));
    // Records are retired once their locks are gone.
    assert!(s.locks().owners().census(None)?.dead.is_empty());
    repo.assert_fsck_strict()
}

#[test]
fn a_foreign_lock_is_never_removed_however_old() -> TestResult {
    let repo = TempRepo::new()?;
    let s = store(&repo)?;
    let (a, b) = (commit(&s, "a")?, commit(&s, "b")?);
    let r = name("refs/gatos/messages/t/head");
    s.update_refs(&[Edit::create(r.clone(), a)], &Options::default())?;
    for rel in ["refs/gatos/messages/t/head.lock", "packed-refs.lock"] {
        let lock = repo.git_dir().join(rel);
        std::fs::write(&lock, "plain git's")?;
        age_file(&lock, 3600)?;
        let err = s
            .update_refs(&[Edit::update(r.clone(), Some(a), b)], &quick())
            .unwrap_err();
        assert!(matches!(err, gatos_store::Error::Locked { .. }), "{err:?}");
        assert!(lock.exists(), "{rel} stays");
        assert!(s.recover_stale_locks()?.is_empty());
        let listed = s.lock_files()?;
        assert!(
            listed
                .iter()
                .any(|l| l.path == lock && l.owner == LockOwner::Foreign),
            "{listed:?}"
        );
        // Only on the operator's word.
        assert!(s.remove_foreign_lock(&lock)?);
        assert!(!lock.exists());
    }
    s.update_refs(&[Edit::update(r, Some(a), b)], &Options::default())?;
    assert!(s.remove_foreign_lock(&repo.git_dir().join("HEAD")).is_err());
    Ok(())
}

#[test]
fn a_live_writers_lock_is_never_broken() -> TestResult {
    let repo = TempRepo::new()?;
    let s = store(&repo)?;
    let (a, b) = (commit(&s, "a")?, commit(&s, "b")?);
    let r = name("refs/gatos/messages/t/head");
    s.update_refs(&[Edit::create(r.clone(), a)], &Options::default())?;
    // Another "process" (its own Locks) holds the family and its record while its .lock is
    // old. (Waited for, not tried once: while another test's thread forks a `git` child,
    // the child holds a copy of every open descriptor until it execs, our just-released
    // family lock among them, for as long as a loaded machine takes to get to the exec.)
    let other = gatos_store::locks::Locks::new(&repo.git_dir())?;
    let held = other.acquire(
        &["messages.t".to_owned()],
        std::time::Duration::from_secs(30),
    )?;
    let record = other
        .owners()
        .record(&["refs/gatos/messages/t/head.lock".to_owned()])?;
    let lock = repo.git_dir().join("refs/gatos/messages/t/head.lock");
    std::fs::write(&lock, "live")?;
    let err = s
        .update_refs(&[Edit::update(r.clone(), Some(a), b)], &quick())
        .unwrap_err();
    assert!(matches!(err, gatos_store::Error::Lock(_)), "{err:?}");
    assert!(lock.exists(), "a live writer's lock stays");
    assert!(s.recover_stale_locks()?.is_empty());
    assert!(
        s.lock_files()?
            .iter()
            .any(|l| l.path == lock && l.owner == LockOwner::GatosLive)
    );
    // The writer dies: its record stays, its flocks go. Recovery removes its lock (once no
    // forked child of another test still holds a copy of the family's descriptor).
    record.abandon();
    drop(held);
    let mut recovered = Vec::new();
    gatos_testutil::wait_for(
        "recovery to see the writer dead",
        std::time::Duration::from_secs(30),
        || {
            recovered = s.recover_stale_locks().unwrap_or_default();
            !recovered.is_empty()
        },
    )?;
    assert_eq!(recovered, vec![lock.clone()]);
    s.update_refs(&[Edit::update(r, Some(a), b)], &Options::default())?;
    Ok(())
}

#[test]
fn recovery_waits_for_a_live_writer_of_the_dead_writers_family() -> TestResult {
    let repo = TempRepo::new()?;
    let s = store(&repo)?;
    let a = commit(&s, "a")?;
    let r = name("refs/gatos/messages/t/head");
    s.update_refs(&[Edit::create(r, a)], &Options::default())?;
    // A writer takes the family and writes its record and its .lock, then dies.
    let family = vec!["messages.t".to_owned()];
    let dead = gatos_store::locks::Locks::new(&repo.git_dir())?;
    let held = dead.acquire(&family, std::time::Duration::from_secs(30))?;
    let record = dead
        .owners()
        .record(&["refs/gatos/messages/t/head.lock".to_owned()])?;
    let lock = repo.git_dir().join("refs/gatos/messages/t/head.lock");
    std::fs::write(&lock, "dead")?;
    record.abandon();
    drop(held);
    gatos_testutil::wait_for(
        "the writer to read as dead",
        std::time::Duration::from_secs(30),
        || {
            s.lock_files().is_ok_and(|l| {
                l.iter()
                    .any(|l| l.path == lock && l.owner == LockOwner::GatosDead)
            })
        },
    )?;
    // A live writer of the family holds its lock for a moment when recovery starts:
    // recovery waits for it rather than leave the dead writer's lock.
    let live = gatos_store::locks::Locks::new(&repo.git_dir())?;
    let busy = live.acquire(&family, std::time::Duration::from_secs(30))?;
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(200));
        drop(busy);
    });
    let recovered = s.recover_stale_locks()?;
    releaser
        .join()
        .map_err(|_| "the releasing thread panicked")?;
    assert_eq!(recovered, vec![lock.clone()]);
    assert!(!lock.exists());
    Ok(())
}

#[test]
fn listing_refs_while_git_pack_refs_deletes_them_sees_them_all() -> TestResult {
    let repo = TempRepo::new()?;
    let s = store(&repo)?;
    let c = commit(&s, "x")?;
    // Many loose refs in many directories, as live jobs are.
    let mut input = String::new();
    for i in 0..1500 {
        input.push_str(&format!(
            "create refs/gatos/jobs/01ARZ3NDEKTSV4RRFFQ69G{i:04}/job {c}\n"
        ));
    }
    let mut rounds = 0;
    while rounds < 3 {
        let mut update = repo.git_cmd(&["update-ref", "--stdin"]);
        update.stdin(std::process::Stdio::piped());
        let mut child = update.spawn()?;
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.as_bytes())?;
        drop(child.stdin.take());
        assert!(child.wait()?.success());
        let mut pack = repo.git_cmd(&["pack-refs", "--all", "--prune"]).spawn()?;
        // List while pack-refs writes packed-refs and deletes the loose files.
        while pack.try_wait()?.is_none() {
            let seen = s.list_refs("refs/gatos/jobs/")?.len();
            assert_eq!(seen, 1500, "round {rounds}, while pack-refs ran");
        }
        let seen = s.list_refs("refs/gatos/jobs/")?.len();
        assert_eq!(seen, 1500, "round {rounds}, after pack-refs");
        repo.git(&[
            "for-each-ref",
            "--format=delete %(refname)",
            "refs/gatos/jobs/",
        ])
        .and_then(|list| {
            let mut del = repo.git_cmd(&["update-ref", "--stdin"]);
            del.stdin(std::process::Stdio::piped());
            let mut child = del.spawn()?;
            std::io::Write::write_all(child.stdin.as_mut().unwrap(), list.as_bytes())?;
            drop(child.stdin.take());
            assert!(child.wait()?.success());
            Ok(())
        })?;
        rounds += 1;
    }
    Ok(())
}

#[test]
fn the_topics_stamp_moves_with_topic_refs_only() -> TestResult {
    let repo = TempRepo::new()?;
    let s = store(&repo)?;
    let (a, b) = (commit(&s, "a")?, commit(&s, "b")?);
    assert_eq!(s.topics_stamp(), None, "no topic written yet");
    let job = name("refs/gatos/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV/claim");
    s.update_refs(&[Edit::create(job, a)], &Options::default())?;
    assert_eq!(s.topics_stamp(), None, "a job ref is not a topic");
    let head = name("refs/gatos/messages/orders/head");
    s.update_refs(&[Edit::create(head.clone(), a)], &Options::default())?;
    let first = s.topics_stamp().ok_or("a topic write makes the stamp")?;
    // Age the stamp so the next write's time is surely different (mtimes are coarse).
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    std::fs::File::options()
        .append(true)
        .open(s.topics_stamp_path())?
        .set_modified(old)?;
    let aged = s.topics_stamp().ok_or("still there")?;
    assert_ne!(aged, first);
    s.update_refs(&[Edit::update(head, Some(a), b)], &Options::default())?;
    let moved = s.topics_stamp().ok_or("still there")?;
    assert!(
        moved > aged,
        "a topic write moves the stamp: {aged:?} -> {moved:?}"
    );
    Ok(())
}

#[test]
fn the_refs_generation_moves_after_every_gatos_transaction_only() -> TestResult {
    let repo = TempRepo::new()?;
    let s = store(&repo)?;
    let (a, b) = (commit(&s, "a")?, commit(&s, "b")?);
    let outside = name("refs/gatos-snapshots/x/meta");
    s.update_refs(&[Edit::create(outside, a)], &Options::default())?;
    assert_eq!(
        s.refs_generation(),
        None,
        "outside refs/gatos/: no generation"
    );
    let job = name("refs/gatos/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV/claim");
    s.update_refs(&[Edit::create(job.clone(), a)], &Options::default())?;
    let g1 = s.refs_generation().ok_or("a gatos write makes the file")?;
    assert_eq!(s.refs_generation(), Some(g1), "a reading is stable");
    // A failed transaction (a CAS mismatch) moves nothing.
    assert!(
        s.update_refs(
            &[Edit::update(job.clone(), Some(b), a)],
            &Options::default()
        )
        .is_err()
    );
    assert_eq!(s.refs_generation(), Some(g1));
    s.update_refs(
        &[Edit::update(job.clone(), Some(a), b)],
        &Options::default(),
    )?;
    let g2 = s.refs_generation().ok_or("still there")?;
    assert_ne!(g1, g2, "an update moves it");
    s.update_refs(&[Edit::delete(job, b)], &Options::default())?;
    assert_ne!(s.refs_generation(), Some(g2), "a delete moves it");
    // Past the bound the writer empties it: still a different reading.
    std::fs::write(
        s.refs_changed_path(),
        vec![b'+'; usize::try_from(gatos_store::refs::REFS_CHANGED_MAX)?],
    )?;
    let full = s.refs_generation().ok_or("still there")?;
    let c = name("refs/gatos/messages/t/head");
    s.update_refs(&[Edit::create(c, a)], &Options::default())?;
    let emptied = s.refs_generation().ok_or("still there")?;
    assert_eq!(emptied.len, 0, "emptied past the bound");
    assert_ne!(emptied, full);
    Ok(())
}

/// Writes refs with `git update-ref --stdin`.
fn git_update_refs(repo: &TempRepo, input: &str) -> TestResult {
    let mut update = repo.git_cmd(&["update-ref", "--stdin"]);
    update.stdin(std::process::Stdio::piped());
    let mut child = update.spawn()?;
    std::io::Write::write_all(child.stdin.as_mut().ok_or("no stdin")?, input.as_bytes())?;
    drop(child.stdin.take());
    assert!(child.wait()?.success());
    Ok(())
}

/// The job id `i` of the listing fixtures (ids sort as their numbers).
fn fixture_id(i: usize) -> String {
    format!("01ARZ3NDEKTSV4RRFFQ69G{i:04}")
}

/// A fixture of the listing tests: `n` jobs with a `job` ref and every third a `claim`,
/// neighbours on both sides of `refs/gatos/jobs/` and an annotated tag, all packed; then
/// every seventh `job` loose again over its packed copy, and 20 more jobs' loose `result`
/// refs after them. Returns the two commits the refs point at.
fn loose_and_packed_job_refs(
    repo: &TempRepo,
    s: &Store,
    n: usize,
) -> TestResult<(gatos_types::Oid, gatos_types::Oid)> {
    let (c, d) = (commit(s, "c")?, commit(s, "d")?);
    let mut input = String::new();
    for i in 0..n {
        input.push_str(&format!(
            "create refs/gatos/jobs/{}/job {c}\n",
            fixture_id(i)
        ));
        if i % 3 == 0 {
            input.push_str(&format!(
                "create refs/gatos/jobs/{}/claim {c}\n",
                fixture_id(i)
            ));
        }
    }
    // Neighbours on both sides of the prefix, and an annotated tag (a peeled `^` line).
    input.push_str(&format!(
        "create refs/gatos/jobr {c}\ncreate refs/gatos/jobs0/x {c}\n"
    ));
    input.push_str(&format!(
        "create refs/gatos/a/b {c}\ncreate refs/gatos/z/y {c}\n"
    ));
    git_update_refs(repo, &input)?;
    repo.git(&["tag", "-a", "-m", "t", "v1", &c.to_string()])?;
    assert!(
        repo.git_cmd(&["pack-refs", "--all", "--prune"])
            .status()?
            .success()
    );
    // Some loose again: new ones between packed ones, and loose copies moved elsewhere.
    let mut input = String::new();
    for i in (0..n).step_by(7) {
        input.push_str(&format!(
            "update refs/gatos/jobs/{}/job {d}\n",
            fixture_id(i)
        ));
    }
    for i in n..n + 20 {
        input.push_str(&format!(
            "create refs/gatos/jobs/{}/result {d}\n",
            fixture_id(i)
        ));
    }
    git_update_refs(repo, &input)?;
    Ok((c, d))
}

/// `list_refs_before` lists exactly what `list_refs` lists before a name, in order, whether
/// the refs are packed, loose, or some of each (a loose ref over its packed copy wins),
/// whatever the bound (before, inside and after the prefix, a directory's own name, between
/// two refs); neighbours of the prefix, `.lock` files and files that are not refs never
/// leak in.
#[test]
fn listing_before_a_name_lists_the_oldest_part_of_loose_and_packed_refs() -> TestResult {
    let repo = TempRepo::new()?;
    let s = store(&repo)?;
    let (c, _) = loose_and_packed_job_refs(&repo, &s, 120)?;
    let id = fixture_id;
    let jobs = repo.git_dir().join("refs/gatos/jobs");
    std::fs::write(jobs.join(id(7)).join("job.lock"), b"partial")?;
    std::fs::write(jobs.join(id(14)).join("notes"), b"not a ref\n")?;

    let prefix = "refs/gatos/jobs/";
    let all = s.list_refs(prefix)?;
    assert_eq!(all.len(), 120 + 40 + 20);
    let before = |until: &str| -> Vec<_> {
        all.iter()
            .filter(|(n, _)| n.as_str() < until)
            .cloned()
            .collect()
    };
    let mut bounds: Vec<String> = vec![
        "refs/gatos/a".into(),
        "refs/gatos/jobs/".into(),
        "refs/gatos/jobs/~".into(),
        "refs/gatos/z".into(),
        format!("refs/gatos/jobs/{}", id(50)),
        format!("refs/gatos/jobs/{}/joa", id(9)),
        format!("refs/gatos/jobs/{}/job", id(9)),
        format!("refs/gatos/jobs/{}/k", id(130)),
    ];
    bounds.extend(
        (0..140)
            .step_by(11)
            .map(|i| format!("refs/gatos/jobs/{}/", id(i))),
    );
    for until in &bounds {
        assert_eq!(
            s.list_refs_before(prefix, until)?,
            before(until),
            "before {until}"
        );
    }
    assert!(s.list_refs_before("refs/gatos/none/", "refs/~")?.is_empty());
    assert!(matches!(
        s.list_refs_before("objects/", "objects/~"),
        Err(gatos_store::Error::Unsupported(_))
    ));
    // A loose symbolic ref hides its packed copy and a dotfile is no ref, as for
    // `list_refs`.
    let packed_only = all
        .iter()
        .find(|(n, _)| !jobs.join(&n.as_str()["refs/gatos/jobs/".len()..]).exists())
        .map(|(n, _)| n.as_str().to_owned())
        .ok_or("a packed-only ref")?;
    let file = repo.git_dir().join(&packed_only);
    std::fs::create_dir_all(file.parent().ok_or("a parent")?)?;
    std::fs::write(&file, b"ref: refs/gatos/a/b\n")?;
    std::fs::write(jobs.join(id(7)).join(".hidden"), format!("{c}\n"))?;
    let all = s.list_refs(prefix)?;
    assert!(all.iter().all(|(n, _)| n.as_str() != packed_only));
    for until in &bounds {
        let want: Vec<_> = all
            .iter()
            .filter(|(n, _)| n.as_str() < until.as_str())
            .cloned()
            .collect();
        assert_eq!(
            s.list_refs_before(prefix, until)?,
            want,
            "symbolic, before {until}"
        );
    }
    std::fs::remove_file(&file)?;
    std::fs::remove_file(jobs.join(id(7)).join(".hidden"))?;
    // Everything packed again: the same lists.
    std::fs::remove_file(jobs.join(id(7)).join("job.lock"))?;
    std::fs::remove_file(jobs.join(id(14)).join("notes"))?;
    assert!(
        repo.git_cmd(&["pack-refs", "--all", "--prune"])
            .status()?
            .success()
    );
    for until in &bounds {
        assert_eq!(
            s.list_refs_before(prefix, until)?,
            before(until),
            "packed, before {until}"
        );
    }
    Ok(())
}

/// Pages through `prefix` with `list_refs_after` in pages of `max`.
fn pages(s: &Store, prefix: &str, max: usize) -> TestResult<Vec<(RefName, gatos_types::Oid)>> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = s.list_refs_after(prefix, after.as_deref(), max)?;
        assert!(page.len() <= max);
        let Some(last) = page.last() else { break };
        after = Some(last.0.as_str().to_owned());
        let full = page.len() == max;
        all.extend(page);
        if !full {
            break;
        }
    }
    Ok(all)
}

/// Paging with `list_refs_after` gives exactly what `list_refs` lists, in order, whether
/// the refs are packed, loose, or some of each (a loose ref over its packed copy wins), for
/// any page size and start; refs outside the prefix (before and after it in packed-refs)
/// never leak in.
#[test]
fn listing_after_a_name_pages_through_loose_and_packed_refs() -> TestResult {
    let repo = TempRepo::new()?;
    let s = store(&repo)?;
    let (c, _) = loose_and_packed_job_refs(&repo, &s, 300)?;
    let id = fixture_id;

    let prefix = "refs/gatos/jobs/";
    let want = s.list_refs(prefix)?;
    assert_eq!(want.len(), 300 + 100 + 20);
    for max in [1, 2, 3, 7, 64, 1000] {
        assert_eq!(pages(&s, prefix, max)?, want, "pages of {max}");
    }
    // From any start, the next refs in order, none at or before it.
    for (k, (start, _)) in want.iter().enumerate().step_by(13) {
        let got = s.list_refs_after(prefix, Some(start.as_str()), 5)?;
        let expect: Vec<_> = want.iter().skip(k + 1).take(5).cloned().collect();
        assert_eq!(got, expect, "after {start}");
    }
    // A start before the prefix, between two refs, and past the end.
    assert_eq!(
        s.list_refs_after(prefix, Some("refs/gatos/a"), 2)?,
        want[..2].to_vec()
    );
    let between = format!("refs/gatos/jobs/{}/joa", id(5));
    let k = want
        .iter()
        .position(|(n, _)| n.as_str() > between.as_str())
        .ok_or("none")?;
    assert_eq!(
        s.list_refs_after(prefix, Some(&between), 1)?,
        want[k..=k].to_vec()
    );
    assert!(
        s.list_refs_after(prefix, Some("refs/gatos/jobs/~"), 10)?
            .is_empty()
    );
    assert!(s.list_refs_after("refs/gatos/none/", None, 10)?.is_empty());
    // Everything packed again: the same pages.
    assert!(
        repo.git_cmd(&["pack-refs", "--all", "--prune"])
            .status()?
            .success()
    );
    assert_eq!(pages(&s, prefix, 10)?, want);
    // While pack-refs moves loose refs into packed-refs, a page never misses one.
    let mut input = String::new();
    for i in 400..1400 {
        input.push_str(&format!("create refs/gatos/jobs/{}/job {c}\n", id(i)));
    }
    git_update_refs(&repo, &input)?;
    let want = s.list_refs(prefix)?;
    let mut pack = repo.git_cmd(&["pack-refs", "--all", "--prune"]).spawn()?;
    while pack.try_wait()?.is_none() {
        assert_eq!(pages(&s, prefix, 250)?, want, "while pack-refs ran");
    }
    assert_eq!(pages(&s, prefix, 250)?, want);
    Ok(())
}
