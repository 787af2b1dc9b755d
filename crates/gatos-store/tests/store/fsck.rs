use std::sync::atomic::{AtomicBool, Ordering};

use gatos_store::fsck::Options;
use gatos_store::refs::{Edit, Options as RefOptions, RefName};
use gatos_testutil::{TempRepo, TestResult};

use crate::{commit, store};

#[test]
fn fsck_beside_a_live_writer_reports_nothing_the_writer_added() -> TestResult {
    // git fsck lists the objects before it reads the refs: a commit written and made a
    // ref's value in between reads as missing. The store's fsck must not report it.
    let repo = TempRepo::new()?;
    let s = store(&repo)?;
    let name = RefName::from_repository("refs/gatos/live".to_owned());
    let first = commit(&s, "0")?;
    s.update_refs(&[Edit::create(name.clone(), first)], &RefOptions::default())?;
    let stop = AtomicBool::new(false);
    let runs = std::thread::scope(|scope| -> TestResult<Vec<_>> {
        let writer = scope.spawn(|| -> Result<u32, String> {
            let s = store(&repo).map_err(|e| e.to_string())?;
            let (mut tip, mut n) = (first, 0);
            // Bounded, so a check that never ends cannot fill the disk.
            while !stop.load(Ordering::Relaxed) && n < 4_000 {
                n += 1;
                let next = commit(&s, &n.to_string()).map_err(|e| e.to_string())?;
                s.update_refs(
                    &[Edit::update(name.clone(), Some(tip), next)],
                    &RefOptions::default(),
                )
                .map_err(|e| e.to_string())?;
                tip = next;
            }
            Ok(n)
        });
        let checked = (|| -> TestResult<Vec<_>> {
            let mut runs = Vec::new();
            for _ in 0..20 {
                runs.push(s.fsck(Options { strict: true })?);
                // The tests' own check, with git alone, has the same rule.
                repo.assert_fsck_strict()?;
            }
            Ok(runs)
        })();
        // Stopped on every path, or the scope would wait for the writer forever.
        stop.store(true, Ordering::Relaxed);
        let written = writer.join().map_err(|_| "the writer panicked")??;
        assert!(written > 20, "the writer wrote while fsck ran: {written}");
        checked
    })?;
    for o in &runs {
        assert!(o.clean, "{:?}", o.problems);
    }
    repo.assert_fsck_strict()
}

#[test]
fn a_missing_object_is_still_reported() -> TestResult {
    let repo = TempRepo::new()?;
    let s = store(&repo)?;
    let c = commit(&s, "lost")?;
    s.update_refs(
        &[Edit::create(
            RefName::from_repository("refs/gatos/lost".to_owned()),
            c,
        )],
        &RefOptions::default(),
    )?;
    let tree = repo.git(&["rev-parse", &format!("{c}^{{tree}}")])?;
    let tree = tree.trim();
    std::fs::remove_file(
        repo.git_dir()
            .join("objects")
            .join(&tree[..2])
            .join(&tree[2..]),
    )?;
    let o = s.fsck(Options { strict: true })?;
    assert!(!o.clean);
    assert!(
        o.problems
            .iter()
            .any(|p| p.object.map(|x| x.to_string()).as_deref() == Some(tree)),
        "{:?}",
        o.problems
    );
    Ok(())
}
