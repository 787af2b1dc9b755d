//! Journaled enqueues (ADR 0046): a handle whose journal flusher runs acknowledges an
//! enqueue after one append; every gatos reader of job refs (another handle, as another
//! process would be) sees the job at once, plain git after a flush; the ready index keeps
//! the job through a catch-up from the refs; a torn record, or one whose job exists with
//! another commit, costs nothing else.

use gatos::Gatos;
use gatos::jobs::lifecycle::ClaimOptions;
use gatos::jobs::manifest;
use gatos_testutil::{TempRepo, TestResult};
use gatos_types::{Dur, WorkerId};
use serde_json::json;

use super::support::open;

/// A handle that journals its enqueues: its flusher runs, with a flush bound long enough
/// that only the test's own steps materialize the journal.
fn journaling(repo: &TempRepo) -> TestResult<Gatos> {
    repo.git(&["config", "gatos.journal.flushMs", "60000"])?;
    let g = open(repo)?;
    g.keys().init(false)?;
    g.start_journal_flusher();
    Ok(g)
}

fn enqueue(g: &Gatos, n: i64) -> TestResult<gatos_types::jobs::EnqueueRow> {
    let spec = manifest::normalize(
        manifest::from_value(json!({"command": ["true"], "env": {"N": n.to_string()}}))?,
        g.now(),
    )?;
    Ok(g.jobs().enqueue(spec)?)
}

fn journal_len(repo: &TempRepo) -> u64 {
    std::fs::metadata(repo.git_dir().join("gatos/journal/jobs.enqueued")).map_or(0, |m| m.len())
}

/// The job refs plain git lists.
fn git_jobs(repo: &TempRepo) -> TestResult<Vec<String>> {
    Ok(repo
        .git(&[
            "for-each-ref",
            "--format=%(refname) %(objectname)",
            "refs/gatos/jobs/",
        ])?
        .lines()
        .map(str::to_owned)
        .collect())
}

fn worker(g: &Gatos) -> TestResult<ClaimOptions> {
    Ok(ClaimOptions {
        worker: "w1".parse::<WorkerId>()?,
        worker_key: g.keys().current(),
        queues: Vec::new(),
        caps: Vec::new(),
        lease: Dur::from_secs(30),
        can_resolve: None,
        allow_untrusted_enqueuers: false,
    })
}

#[test]
fn a_journaled_enqueue_is_seen_by_every_gatos_reader_and_is_a_ref_after_a_flush() -> TestResult {
    let repo = TempRepo::new()?;
    let g = journaling(&repo)?;
    let rows: Vec<_> = (0..3).map(|i| enqueue(&g, i)).collect::<TestResult<_>>()?;
    assert!(journal_len(&repo) > 0, "acknowledged from the journal");
    assert!(git_jobs(&repo)?.is_empty(), "not yet refs for plain git");
    // Another handle reads each job at once: its first read materializes the journal.
    let other = open(&repo)?;
    for r in &rows {
        let row = other.jobs().show(r.id)?;
        assert_eq!(row.id, r.id);
    }
    assert_eq!(journal_len(&repo), 0);
    // The commits acknowledged are the ones git shows, and the repository is sound.
    let listed = git_jobs(&repo)?;
    for r in &rows {
        let line = format!("refs/gatos/jobs/{}/job {}", r.id, r.commit);
        assert!(listed.contains(&line), "{line} in {listed:?}");
    }
    // A listing through another fresh handle finds them too (the listing's own hook).
    let g2 = journaling(&repo)?;
    let more = enqueue(&g2, 3)?;
    let third = open(&repo)?;
    let ids: Vec<_> = third
        .jobs()
        .list(&gatos::jobs::ListOptions::default())?
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert!(ids.contains(&more.id), "{ids:?}");
    repo.assert_fsck_strict()
}

#[test]
fn a_journaled_job_is_claimed_and_the_ready_index_stays_stamped() -> TestResult {
    let repo = TempRepo::new()?;
    let g = journaling(&repo)?;
    let a = enqueue(&g, 1)?;
    // Another handle's worker finds it through the ready index (its entry was put at the
    // append) and claims it: taking the job's lock materializes the journal first.
    let other = open(&repo)?;
    let lease = other.jobs().claim_next(&worker(&other)?)?.ok_or("no job")?;
    assert_eq!(lease.id, a.id);
    assert_eq!(journal_len(&repo), 0);
    let b = enqueue(&g, 2)?;
    g.flush_journals()?;
    assert_eq!(
        other.jobs().claim_next(&worker(&other)?)?.map(|l| l.id),
        Some(b.id)
    );
    // Once the index is stamped (the first job directory made it catch up once, as a
    // direct enqueue does), the materializer moves its stamp past the new job directory:
    // the index's last word after the next enqueue's flush is a stamp, no catch-up needed.
    let c = enqueue(&g, 3)?;
    g.flush_journals()?;
    let log = std::fs::read_to_string(repo.git_dir().join("gatos/index/jobs/ready.log"))?;
    let last = log.lines().last().ok_or("empty ready log")?;
    assert!(last.contains("\"op\":\"stamp\""), "{log}");
    assert!(!last.contains("\"dir_nlink\":0"), "{log}");
    assert_eq!(
        other.jobs().claim_next(&worker(&other)?)?.map(|l| l.id),
        Some(c.id)
    );
    repo.assert_fsck_strict()
}

#[test]
fn the_ready_index_keeps_journaled_jobs_through_a_catch_up() -> TestResult {
    let repo = TempRepo::new()?;
    let g = journaling(&repo)?;
    let q: gatos_types::Queue = "build".parse()?;
    gatos::jobs::queues::change(
        &g,
        &q,
        &gatos::jobs::queues::Change {
            max_pending: Some(Some(2)),
            ..Default::default()
        },
    )?;
    let build = |g: &Gatos| -> TestResult<gatos_types::jobs::JobSpec> {
        Ok(manifest::normalize(
            manifest::from_value(json!({"command": ["make"], "queue": "build"}))?,
            g.now(),
        )?)
    };
    // One job as a ref, so that packing the refs changes packed-refs.
    enqueue(&g, 0)?;
    g.flush_journals()?;
    let a = g.jobs().enqueue(build(&g)?)?;
    let b = g.jobs().enqueue(build(&g)?)?;
    assert!(journal_len(&repo) > 0);
    // An outside writer (git pack-refs) makes the index catch up from the refs while the
    // two jobs are only in the journal. The admission count (which reads the index, not
    // the refs) must still see both: the queue is full.
    repo.git(&["pack-refs", "--all"])?;
    let refused = g
        .jobs()
        .enqueue(build(&g)?)
        .err()
        .ok_or("admitted past the limit")?;
    assert_eq!(refused.code(), gatos_types::ErrorCode::QueueFull);
    assert!(
        journal_len(&repo) > 0,
        "the count did not materialize the journal"
    );
    // And a worker of that queue claims them.
    let mut w = worker(&g)?;
    w.queues = vec![q];
    let mut got = vec![
        g.jobs().claim_next(&w)?.ok_or("no job")?.id,
        g.jobs().claim_next(&w)?.ok_or("no second job")?.id,
    ];
    got.sort();
    let mut want = vec![a.id, b.id];
    want.sort();
    assert_eq!(got, want);
    repo.assert_fsck_strict()
}

#[test]
fn a_torn_record_is_cut_and_the_records_before_it_become_jobs() -> TestResult {
    let repo = TempRepo::new()?;
    let g = journaling(&repo)?;
    let rows: Vec<_> = (0..2).map(|i| enqueue(&g, i)).collect::<TestResult<_>>()?;
    // A writer killed in the middle of its append: a frame that ends early.
    let path = repo.git_dir().join("gatos/journal/jobs.enqueued");
    let mut bytes = std::fs::read(&path)?;
    bytes.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3]);
    std::fs::write(&path, &bytes)?;
    let other = open(&repo)?;
    for r in &rows {
        assert_eq!(other.jobs().show(r.id)?.id, r.id);
    }
    assert_eq!(journal_len(&repo), 0, "the torn tail is cut with the rest");
    // The first handle appends again after the cut.
    let c = enqueue(&g, 2)?;
    assert_eq!(other.jobs().show(c.id)?.id, c.id);
    repo.assert_fsck_strict()
}

#[test]
fn a_record_whose_job_exists_with_another_commit_is_set_aside() -> TestResult {
    let repo = TempRepo::new()?;
    let g = journaling(&repo)?;
    let a = enqueue(&g, 1)?;
    let b = enqueue(&g, 2)?;
    // Someone creates job a's ref with another commit before the journal is materialized.
    let empty = repo.git(&["mktree"])?;
    let other_commit = repo.git(&["commit-tree", empty.trim(), "-m", "not a job"])?;
    repo.git(&[
        "update-ref",
        &format!("refs/gatos/jobs/{}/job", a.id),
        other_commit.trim(),
    ])?;
    let other = open(&repo)?;
    other.flush_journals()?;
    assert_eq!(journal_len(&repo), 0);
    // Job b became a job; job a's record is set aside with its reason.
    assert_eq!(other.jobs().show(b.id)?.id, b.id);
    let rejected =
        std::fs::read_to_string(repo.git_dir().join("gatos/journal/jobs.enqueued.rejected"))?;
    assert!(
        rejected.contains(&format!("job {} already exists", a.id)),
        "{rejected}"
    );
    let listed = git_jobs(&repo)?;
    assert!(listed.contains(&format!(
        "refs/gatos/jobs/{}/job {}",
        a.id,
        other_commit.trim()
    )));
    Ok(())
}

#[test]
fn the_last_handle_makes_its_journaled_enqueues_refs() -> TestResult {
    let repo = TempRepo::new()?;
    let g = journaling(&repo)?;
    let a = enqueue(&g, 1)?;
    assert!(git_jobs(&repo)?.is_empty());
    drop(g);
    assert_eq!(
        git_jobs(&repo)?,
        vec![format!("refs/gatos/jobs/{}/job {}", a.id, a.commit)]
    );
    repo.assert_fsck_strict()
}

#[test]
fn a_handle_without_a_flusher_writes_its_enqueues_directly() -> TestResult {
    let repo = TempRepo::new()?;
    let g = open(&repo)?;
    g.keys().init(false)?;
    let a = enqueue(&g, 1)?;
    assert_eq!(journal_len(&repo), 0);
    assert_eq!(
        git_jobs(&repo)?,
        vec![format!("refs/gatos/jobs/{}/job {}", a.id, a.commit)]
    );
    Ok(())
}

/// Another process emptied the journal and a third died mid-append, leaving exactly as many
/// bytes as this handle last saw: the handle must not take them for its own record and
/// append after the torn one (a reader would stop there and drop its job).
#[test]
fn a_journal_refilled_to_the_same_length_is_checked_before_an_append() -> TestResult {
    let repo = TempRepo::new()?;
    let g = journaling(&repo)?;
    enqueue(&g, 1)?;
    let path = repo.git_dir().join("gatos/journal/jobs.enqueued");
    let len = journal_len(&repo);
    open(&repo)?.flush_journals()?;
    assert_eq!(journal_len(&repo), 0);
    // A torn frame of the same length: its length field claims more than is there.
    let mut torn = vec![0u8; usize::try_from(len)?];
    torn[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(&path, &torn)?;
    let b = enqueue(&g, 2)?;
    let other = open(&repo)?;
    assert_eq!(other.jobs().show(b.id)?.id, b.id);
    assert_eq!(journal_len(&repo), 0);
    repo.assert_fsck_strict()
}
