//! The job catalog behind `jobs.list`: filters, pages, archived jobs, and a torn journal.

use gatos::jobs::catalog::{self, Query};
use gatos::jobs::manifest;
use gatos_testutil::{TempRepo, TestResult};
use gatos_types::jobs::JobState;
use gatos_types::{Dur, ErrorCode, Ulid};
use serde_json::json;

use crate::support::open_at;

const T0: &str = "2026-11-23T10:00:00Z";

fn enqueue(g: &gatos::Gatos, v: serde_json::Value) -> TestResult<Ulid> {
    let spec = manifest::normalize(manifest::from_value(v)?, g.now())?;
    Ok(g.jobs().enqueue(spec)?.id)
}

fn ids(p: &catalog::Page) -> Vec<Ulid> {
    p.jobs.iter().map(|r| r.id).collect()
}

#[test]
fn filters_and_pages_come_from_the_catalog_and_the_refs_order() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, clock) = open_at(&repo, T0)?;
    g.keys().init(false)?;
    let mut all = Vec::new();
    for i in 0..7 {
        let v = json!({
            "command": ["true"],
            "queue": if i % 2 == 0 { "even" } else { "odd" },
            "required_capabilities": if i == 3 { vec!["gpu"] } else { vec![] },
            "labels": {"n": format!("n{i}"), "team": if i < 4 { "infra" } else { "web" }},
        });
        all.push(enqueue(&g, v)?);
        clock.advance(Dur::from_secs(60));
    }
    let q = |q: Query| g.jobs().page(&q);
    assert_eq!(ids(&q(Query::default())?), all);
    let even = q(Query {
        queue: Some("even".parse()?),
        ..Query::default()
    })?;
    assert_eq!(ids(&even), vec![all[0], all[2], all[4], all[6]]);
    let gpu = q(Query {
        capability: Some("gpu".parse()?),
        ..Query::default()
    })?;
    assert_eq!(ids(&gpu), vec![all[3]]);
    let web = q(Query {
        label: Some("team=we".into()),
        ..Query::default()
    })?;
    assert_eq!(ids(&web), all[4..].to_vec());
    let by_actor = q(Query {
        enqueuer: Some(g.actor()),
        ..Query::default()
    })?;
    assert_eq!(by_actor.jobs.len(), 7);
    let key = g.keys().current().ok_or("a key")?.to_string();
    assert_eq!(
        q(Query {
            enqueuer: Some(key),
            ..Query::default()
        })?
        .jobs
        .len(),
        7
    );
    // A time window: the jobs enqueued in minutes 2 to 4.
    let t =
        |m: u64| gatos_types::Timestamp::parse_rfc3339(T0).map(|t| t.plus(Dur::from_secs(60 * m)));
    let window = q(Query {
        since: Some(t(2)?),
        until: Some(t(5)?),
        ..Query::default()
    })?;
    assert_eq!(ids(&window), all[2..5].to_vec());
    let prefix = all[5].to_string()[..20].to_owned();
    let by_prefix = q(Query {
        id_prefix: Some(prefix.to_lowercase()),
        ..Query::default()
    })?;
    assert!(ids(&by_prefix).contains(&all[5]));
    // Pages of 3: cursors walk the whole list once.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let p = q(Query {
            after,
            limit: Some(3),
            ..Query::default()
        })?;
        seen.extend(ids(&p));
        match p.next_cursor {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, all);
    // Bad queries change nothing and say why.
    for bad in [
        Query {
            limit: Some(0),
            ..Query::default()
        },
        Query {
            limit: Some(1001),
            ..Query::default()
        },
        Query {
            id_prefix: Some("not-a-ulid".into()),
            ..Query::default()
        },
        Query {
            since: Some(t(5)?),
            until: Some(t(1)?),
            ..Query::default()
        },
    ] {
        let e = q(bad).err().ok_or("refused")?;
        assert_eq!(e.code(), ErrorCode::InvalidInput);
    }
    Ok(())
}

#[test]
fn a_torn_catalog_is_rebuilt_and_jobs_from_elsewhere_are_caught_up() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _clock) = open_at(&repo, T0)?;
    let a = enqueue(&g, json!({"command": ["true"], "queue": "x"}))?;
    // A listing catalogs the jobs it returns (their enqueuer comes from the catalog); a
    // filter on a fact reads the catalog.
    let plain = g.jobs().page(&Query::default())?;
    assert_eq!(ids(&plain), vec![a]);
    assert!(catalog::catalogued(&g, a)?);
    let who = plain.jobs[0].enqueuer.clone().ok_or("an enqueuer")?;
    assert_eq!(
        (who.key, who.trusted, who.blocked),
        (None, false, None),
        "unsigned: no key"
    );
    let x = Query {
        queue: Some("x".parse()?),
        ..Query::default()
    };
    assert_eq!(ids(&g.jobs().page(&x)?), vec![a]);
    // A crash mid-append leaves half a line: the next list rebuilds from the refs.
    let path = repo.git_dir().join("gatos/index/jobs/catalog.jsonl");
    let mut text = std::fs::read(&path)?;
    text.extend_from_slice(b"{\"id\":\"01K");
    std::fs::write(&path, &text)?;
    let b = enqueue(&g, json!({"command": ["true"], "queue": "y"}))?;
    let y = g.jobs().page(&Query {
        queue: Some("y".parse()?),
        ..Query::default()
    })?;
    assert_eq!(ids(&y), vec![b]);
    // A garbage line is never trusted: rebuilt, and the answer is the refs'.
    std::fs::write(&path, b"not json\n")?;
    assert_eq!(ids(&g.jobs().page(&x)?), vec![a]);
    // Another handle (another process would do the same) sees what this one appended.
    let (g2, _) = open_at(&repo, T0)?;
    let y = Query {
        queue: Some("y".parse()?),
        ..Query::default()
    };
    assert_eq!(ids(&g2.jobs().page(&y)?), vec![b]);
    assert!(catalog::catalogued(&g2, a)? && catalog::catalogued(&g2, b)?);
    Ok(())
}

/// The handle that enqueues a job writes its catalog line (when it lists, and when the
/// last handle goes), and that line is the one a listing writes when it catches the job up
/// from its refs, checking its enqueue signature (issue #21).
#[test]
fn an_enqueuer_catalogs_its_jobs_as_a_catch_up_from_the_refs_would() -> TestResult {
    let repo = TempRepo::new()?;
    let path = repo.git_dir().join("gatos/index/jobs/catalog.jsonl");
    let (g, _clock) = open_at(&repo, T0)?;
    g.keys().init(false)?;
    let mut all = Vec::new();
    for (i, queue) in ["a", "b", "a"].into_iter().enumerate() {
        all.push(enqueue(
            &g,
            json!({
                "command": ["true"],
                "queue": queue,
                "required_capabilities": if i == 1 { vec!["gpu"] } else { vec![] },
                "labels": {"n": format!("n{i}")},
            }),
        )?);
    }
    // Held by the handle: nothing on disk yet, and nothing read back to know them.
    assert!(!path.exists());
    drop(g);
    let written = std::fs::read_to_string(&path)?;
    assert_eq!(written.lines().count(), 3, "{written}");
    let (g2, _) = open_at(&repo, T0)?;
    assert!(catalog::catalogued(&g2, all[0])? && catalog::catalogued(&g2, all[2])?);
    let from_enqueuer = g2.jobs().page(&Query::default())?;
    assert_eq!(ids(&from_enqueuer), all);
    assert_eq!(
        std::fs::read_to_string(&path)?,
        written,
        "nothing to catch up"
    );
    // The same jobs caught up from their refs: the same lines, the same rows.
    std::fs::remove_file(&path)?;
    let (g3, clock) = open_at(&repo, T0)?;
    let caught_up = g3.jobs().page(&Query::default())?;
    let mut a: Vec<&str> = written.lines().collect();
    let again = std::fs::read_to_string(&path)?;
    let mut b: Vec<&str> = again.lines().collect();
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, b);
    assert_eq!(caught_up, from_enqueuer);
    let who = caught_up.jobs[1].enqueuer.clone().ok_or("an enqueuer")?;
    assert_eq!((who.key, who.trusted), (g3.keys().current(), true));
    // A handle that lists appends what it holds first: a page of one older job does not
    // return `d`, so only the handle can have written its line.
    clock.advance(Dur::from_secs(60));
    let d = enqueue(&g3, json!({"command": ["true"], "queue": "other"}))?;
    let first = g3.jobs().page(&Query {
        limit: Some(1),
        ..Query::default()
    })?;
    assert_eq!(ids(&first), vec![all[0]]);
    assert!(catalog::catalogued(&g3, d)?);
    assert_eq!(std::fs::read_to_string(&path)?.lines().count(), 4);
    // Lines a listing of another handle caught up meanwhile are not appended again.
    clock.advance(Dur::from_secs(60));
    let e = enqueue(&g3, json!({"command": ["true"]}))?;
    let (g4, _) = open_at(&repo, T0)?;
    assert_eq!(ids(&g4.jobs().page(&Query::default())?).last(), Some(&e));
    assert_eq!(std::fs::read_to_string(&path)?.lines().count(), 5);
    drop(g3);
    assert_eq!(std::fs::read_to_string(&path)?.lines().count(), 5);
    Ok(())
}

#[test]
fn a_final_state_searches_the_archive() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, clock) = open_at(&repo, T0)?;
    let a = enqueue(&g, json!({"command": ["true"]}))?;
    let b = enqueue(&g, json!({"command": ["true"]}))?;
    g.jobs().cancel(a, None)?;
    clock.advance(Dur::from_secs(30 * 86_400));
    let r = gatos::jobs::archive::archive(&g, Dur::from_secs(86_400))?;
    assert_eq!(r.archived, 1);
    let live = g.jobs().page(&Query::default())?;
    assert_eq!(ids(&live), vec![b]);
    let cancelled = g.jobs().page(&Query {
        state: Some(JobState::Cancelled),
        ..Query::default()
    })?;
    assert_eq!(ids(&cancelled), vec![a]);
    let everything = g.jobs().page(&Query {
        archived: true,
        ..Query::default()
    })?;
    assert_eq!(ids(&everything), vec![a, b]);
    Ok(())
}

/// Pages over more refs than one read takes (the live jobs are read a chunk of refs at a
/// time from the cursor on): every job once, in order, across chunk ends inside a job's
/// refs, loose or packed, with a state filter, a queue filter, a time range, and archived
/// jobs merged in.
#[test]
fn pages_of_a_long_history_read_the_refs_a_chunk_at_a_time() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, clock) = open_at(&repo, T0)?;
    let mut all = Vec::new();
    for i in 0..700 {
        let queue = if i % 5 == 0 { "five" } else { "default" };
        all.push(enqueue(&g, json!({"command": ["true"], "queue": queue}))?);
        clock.advance(Dur::from_secs(1));
    }
    // Every other job cancelled: a job ref, a cancel ref and a result ref each, so the
    // 1,400+ refs straddle the 1,024-ref chunks at different places in a job.
    let cancelled: Vec<Ulid> = all.iter().copied().step_by(2).collect();
    for id in &cancelled {
        g.jobs().cancel(*id, None)?;
    }
    let walk = |q: Query| -> TestResult<Vec<Ulid>> {
        let mut out = Vec::new();
        let mut q = q;
        loop {
            let p = g.jobs().page(&q)?;
            out.extend(ids(&p));
            match p.next_cursor {
                Some(c) => q.after = Some(c),
                None => return Ok(out),
            }
        }
    };
    for round in ["loose", "packed"] {
        for limit in [1000, 100, 7] {
            let lim = Some(limit);
            assert_eq!(
                walk(Query {
                    limit: lim,
                    ..Query::default()
                })?,
                all,
                "{round} {limit}"
            );
            let pending: Vec<Ulid> = all.iter().copied().skip(1).step_by(2).collect();
            let q = Query {
                state: Some(JobState::Pending),
                limit: lim,
                ..Query::default()
            };
            assert_eq!(walk(q)?, pending, "{round} {limit}");
            let q = Query {
                state: Some(JobState::Cancelled),
                limit: lim,
                ..Query::default()
            };
            assert_eq!(walk(q)?, cancelled, "{round} {limit}");
            let five: Vec<Ulid> = all.iter().copied().step_by(5).collect();
            let q = Query {
                queue: Some("five".parse()?),
                limit: lim,
                ..Query::default()
            };
            assert_eq!(walk(q)?, five, "{round} {limit}");
        }
        // A time range: jobs 100..200 (one a second from T0).
        let t0: gatos_types::Timestamp = T0.parse()?;
        let at = |s: i64| gatos_types::Timestamp::from_millis(t0.as_millis() + s * 1000);
        let q = Query {
            since: Some(at(100)),
            until: Some(at(200)),
            limit: Some(30),
            ..Query::default()
        };
        assert_eq!(walk(q)?, all[100..200].to_vec(), "{round}");
        assert!(
            repo.git_cmd(&["pack-refs", "--all", "--prune"])
                .status()?
                .success()
        );
    }
    // The cancelled jobs archived: a final-state listing merges them back in order.
    clock.advance(Dur::from_secs(30 * 86_400));
    let r = gatos::jobs::archive::archive(&g, Dur::from_secs(86_400))?;
    assert_eq!(r.archived as usize, cancelled.len());
    let q = Query {
        state: Some(JobState::Cancelled),
        limit: Some(64),
        ..Query::default()
    };
    assert_eq!(walk(q)?, cancelled);
    let q = Query {
        archived: true,
        limit: Some(99),
        ..Query::default()
    };
    assert_eq!(walk(q)?, all);
    Ok(())
}
