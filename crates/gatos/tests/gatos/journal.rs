//! Journaled publishes (ADR 0046): acknowledged after one append, seen at once by every
//! gatos reader, commits for plain git after a flush, and nothing acknowledged is lost to
//! a killed process, a torn record, a stale handle or a head moved outside gatos.

use gatos::messages::{Cursor, PublishOptions, ReadOptions};
use std::time::Duration;

use gatos_testutil::{TempRepo, TestResult, block_on, wait_for};
use gatos_types::Topic;
use serde_json::json;

use super::support::open;

fn publish(g: &gatos::Gatos, t: &Topic, n: i64) -> TestResult<gatos_types::wire::PublishRow> {
    Ok(g.messages()
        .publish(t, json!({ "n": n }), &PublishOptions::default())?)
}

fn journal(repo: &TempRepo, t: &Topic) -> std::path::PathBuf {
    repo.git_dir().join(format!("gatos/journal/messages.{t}"))
}

fn journal_len(repo: &TempRepo, t: &Topic) -> u64 {
    std::fs::metadata(journal(repo, t)).map_or(0, |m| m.len())
}

fn head(repo: &TempRepo, t: &Topic) -> TestResult<String> {
    Ok(repo
        .git(&[
            "rev-parse",
            "-q",
            "--verify",
            &format!("refs/gatos/messages/{t}/head"),
        ])
        .unwrap_or_default()
        .trim()
        .to_owned())
}

/// The `n` payload of every message of the topic, in order, read through `g`.
fn ns(g: &gatos::Gatos, t: &Topic) -> TestResult<Vec<i64>> {
    let page = g.messages().read(
        t,
        &ReadOptions {
            since: Cursor::Start,
            limit: 1_000,
        },
    )?;
    let mut out = Vec::new();
    for m in &page.messages {
        let v: serde_json::Value = serde_json::from_str(m.payload.get())?;
        out.push(v["n"].as_i64().ok_or("no n")?);
    }
    Ok(out)
}

#[test]
fn a_journaled_publish_is_read_at_once_and_is_a_commit_after_a_flush() -> TestResult {
    let repo = TempRepo::new()?;
    let t: Topic = "j.a".parse()?;
    let g = open(&repo)?;
    let rows: Vec<_> = (0..3)
        .map(|i| publish(&g, &t, i))
        .collect::<TestResult<_>>()?;
    assert!(journal_len(&repo, &t) > 0, "acknowledged from the journal");
    assert_eq!(head(&repo, &t)?, "", "not yet a commit for plain git");
    // Another handle (as another process would) reads them at once: it materializes.
    let other = open(&repo)?;
    assert_eq!(ns(&other, &t)?, vec![0, 1, 2]);
    assert_eq!(journal_len(&repo, &t), 0);
    // The acknowledged commit ids are what git shows.
    assert_eq!(head(&repo, &t)?, rows[2].commit.to_string());
    let parent = repo.git(&["rev-parse", &format!("{}^", rows[2].commit)])?;
    assert_eq!(parent.trim(), rows[1].commit.to_string());
    // The first handle goes on appending after what the other made commits.
    publish(&g, &t, 3)?;
    g.flush_journals()?;
    assert_eq!(ns(&g, &t)?, vec![0, 1, 2, 3]);
    repo.assert_fsck_strict()
}

#[test]
fn a_killed_writer_leaves_its_journal_to_the_next_reader() -> TestResult {
    let repo = TempRepo::new()?;
    let t: Topic = "j.kill".parse()?;
    let g = open(&repo)?;
    let rows: Vec<_> = (0..5)
        .map(|i| publish(&g, &t, i))
        .collect::<TestResult<_>>()?;
    // No destructor and no flusher turn: what `kill -9` leaves.
    std::mem::forget(g);
    assert_eq!(head(&repo, &t)?, "");
    let next = open(&repo)?;
    assert_eq!(ns(&next, &t)?, vec![0, 1, 2, 3, 4]);
    assert_eq!(head(&repo, &t)?, rows[4].commit.to_string());
    repo.assert_fsck_strict()
}

#[test]
fn a_torn_record_was_never_acknowledged_and_is_cut_off() -> TestResult {
    let repo = TempRepo::new()?;
    let t: Topic = "j.torn".parse()?;
    let g = open(&repo)?;
    publish(&g, &t, 0)?;
    publish(&g, &t, 1)?;
    std::mem::forget(g);
    // A third record torn by a crash in its write: a length and half a body.
    let path = journal(&repo, &t);
    let mut bytes = std::fs::read(&path)?;
    let good = bytes.len();
    bytes.extend_from_slice(&200u32.to_le_bytes());
    bytes.extend_from_slice(&[7u8; 50]);
    std::fs::write(&path, &bytes)?;
    let next = open(&repo)?;
    assert_eq!(ns(&next, &t)?, vec![0, 1]);
    assert_eq!(journal_len(&repo, &t), 0);
    assert!(good > 0);
    // A flipped bit in a record's body fails its checksum the same way.
    let g = open(&repo)?;
    publish(&g, &t, 2)?;
    std::mem::forget(g);
    let mut bytes = std::fs::read(&path)?;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&path, &bytes)?;
    let next = open(&repo)?;
    assert_eq!(ns(&next, &t)?, vec![0, 1]);
    repo.assert_fsck_strict()
}

#[test]
fn handles_that_journal_and_write_directly_interleave_in_order() -> TestResult {
    let repo = TempRepo::new()?;
    let t: Topic = "j.mix".parse()?;
    let a = open(&repo)?;
    let b = open(&repo)?;
    let direct = open(&repo)?;
    direct.set_journal(false);
    publish(&a, &t, 0)?;
    publish(&b, &t, 1)?; // finds a's record: follows it
    publish(&a, &t, 2)?; // finds its own record followed by b's: follows b's
    publish(&direct, &t, 3)?; // a direct writer materializes first
    publish(&a, &t, 4)?; // its record is gone with the rest: starts again from the refs
    publish(&b, &t, 5)?;
    assert_eq!(ns(&direct, &t)?, vec![0, 1, 2, 3, 4, 5]);
    let seqs: Vec<u64> = direct
        .messages()
        .read(
            &t,
            &ReadOptions {
                since: Cursor::Start,
                limit: 100,
            },
        )?
        .messages
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5, 6]);
    repo.assert_fsck_strict()
}

/// Handles that journal one topic by turns (as several workers emit `gatos.jobs` events)
/// follow each other's records instead of materializing the journal at each append: no
/// ref moves until something reads, and then every message is there in order, under the
/// commit ids each handle acknowledged. A torn record another writer left makes the next
/// append materialize, which cuts it off.
#[test]
fn handles_that_journal_by_turns_follow_each_others_records() -> TestResult {
    let repo = TempRepo::new()?;
    let t: Topic = "j.turns".parse()?;
    let handles = [open(&repo)?, open(&repo)?, open(&repo)?];
    let before = transactions(&repo);
    let mut rows = Vec::new();
    for n in 0..30 {
        rows.push(publish(&handles[n as usize % 3], &t, n)?);
    }
    assert_eq!(transactions(&repo), before, "nothing was materialized");
    assert_eq!(head(&repo, &t)?, "");
    let seqs: Vec<u64> = rows.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=30).collect::<Vec<u64>>());

    // A writer that died mid-append left a torn record.
    {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(journal(&repo, &t))?;
        // A whole frame (length, body) whose checksum does not hold.
        let mut torn = vec![10, 0, 0, 0];
        torn.extend_from_slice(&[7; 10]);
        torn.extend_from_slice(&[0; 16]);
        f.write_all(&torn)?;
    }
    rows.push(publish(&handles[1], &t, 30)?);
    assert!(
        transactions(&repo) > before,
        "the torn tail made it materialize"
    );

    // Again by turns: each handle's memory of the journal is stale now (it was emptied and
    // refilled, past where some of them last wrote).
    let again = transactions(&repo);
    for n in 31..61 {
        rows.push(publish(&handles[(n as usize + 2) % 3], &t, n)?);
    }
    assert!(
        transactions(&repo) <= again + 1,
        "at most one materialization (a stale handle finding the emptied journal)"
    );

    let reader = open(&repo)?;
    assert_eq!(ns(&reader, &t)?, (0..61).collect::<Vec<i64>>());
    let chain = repo.git(&[
        "rev-list",
        "--reverse",
        &format!("refs/gatos/messages/{t}/head"),
    ])?;
    let acknowledged: Vec<String> = rows.iter().map(|r| r.commit.to_string()).collect();
    assert_eq!(chain.lines().collect::<Vec<_>>(), acknowledged);
    assert_eq!(journal_len(&repo, &t), 0);
    repo.assert_fsck_strict()
}

#[test]
fn a_head_moved_outside_gatos_gets_the_journaled_messages_appended_after_it() -> TestResult {
    let repo = TempRepo::new()?;
    let t: Topic = "j.foreign".parse()?;
    let g = open(&repo)?;
    let first = publish(&g, &t, 0)?;
    publish(&g, &t, 1)?;
    g.flush_journals()?;
    let pending = publish(&g, &t, 2)?;
    std::mem::forget(g);
    // Someone rewinds the head with plain git while the publish waits in the journal.
    repo.git(&[
        "update-ref",
        &format!("refs/gatos/messages/{t}/head"),
        &first.commit.to_string(),
    ])?;
    let next = open(&repo)?;
    assert_eq!(
        ns(&next, &t)?,
        vec![0, 2],
        "the journaled message follows the new head"
    );
    let page = next.messages().read(
        &t,
        &ReadOptions {
            since: Cursor::Start,
            limit: 100,
        },
    )?;
    let last = page.messages.last().ok_or("no message")?;
    assert_eq!(last.ulid, pending.ulid, "same ULID");
    assert_ne!(last.commit, pending.commit, "a new commit");
    repo.assert_fsck_strict()
}

#[test]
fn durable_journaled_publishes_and_a_journal_off_config() -> TestResult {
    let repo = TempRepo::new()?;
    repo.git(&["config", "gatos.fsync", "true"])?;
    let t: Topic = "j.durable".parse()?;
    let g = open(&repo)?;
    publish(&g, &t, 0)?;
    assert!(journal_len(&repo, &t) > 0);
    drop(g);
    // The last handle's drop makes its publishes commits.
    assert_eq!(journal_len(&repo, &t), 0);
    assert_ne!(head(&repo, &t)?, "");
    repo.git(&["config", "gatos.journal", "false"])?;
    let g = open(&repo)?;
    publish(&g, &t, 1)?;
    assert_eq!(
        journal_len(&repo, &t),
        0,
        "gatos.journal = false writes directly"
    );
    repo.git(&["config", "gatos.journal", "maybe"])?;
    let err = open(&repo)
        .err()
        .ok_or("a bad gatos.journal must be refused")?;
    assert!(err.to_string().contains("gatos.journal"), "{err}");
    repo.assert_fsck_strict()
}

/// The length of `refs-changed`: one byte per ref transaction of a gatos writer.
fn transactions(repo: &TempRepo) -> u64 {
    std::fs::metadata(repo.git_dir().join("gatos/refs-changed")).map_or(0, |m| m.len())
}

/// A journal larger than one materialization chunk (8 MiB of objects) is applied chunk by
/// chunk: each chunk moves the head once (one ref transaction more per chunk than a short
/// journal takes), every message is there in order, and the repository is sound.
#[test]
fn a_long_journal_is_materialized_in_chunks() -> TestResult {
    let repo = TempRepo::new()?;
    let g = open(&repo)?;
    let pad = "x".repeat(1 << 20);
    let mut measured = Vec::new();
    for (name, count) in [("j.small", 3), ("j.big", 20)] {
        let t: Topic = name.parse()?;
        // 20 messages of about 1 MiB make at least three chunks.
        let rows: Vec<_> = (0..count)
            .map(|n| {
                Ok(g.messages().publish(
                    &t,
                    json!({ "n": n, "pad": pad }),
                    &PublishOptions::default(),
                )?)
            })
            .collect::<TestResult<_>>()?;
        assert!(
            journal_len(&repo, &t) > u64::try_from(count)? << 20,
            "all wait in the journal"
        );
        assert_eq!(head(&repo, &t)?, "");
        let before = transactions(&repo);
        let other = open(&repo)?;
        // Pages end at the page byte cap: read on after each one's last message.
        let mut got = Vec::new();
        let mut since = Cursor::Start;
        loop {
            let page = other.messages().read(
                &t,
                &ReadOptions {
                    since,
                    limit: 1_000,
                },
            )?;
            let Some(last) = page.messages.last() else {
                break;
            };
            since = Cursor::Ulid(last.ulid);
            for m in &page.messages {
                let v: serde_json::Value = serde_json::from_str(m.payload.get())?;
                got.push(v["n"].as_i64().ok_or("no n")?);
            }
        }
        assert_eq!(got, (0..count).collect::<Vec<_>>());
        measured.push(transactions(&repo) - before);
        assert_eq!(journal_len(&repo, &t), 0);
        let last = rows.last().ok_or("no rows")?;
        assert_eq!(head(&repo, &t)?, last.commit.to_string());
    }
    assert!(
        measured[1] >= measured[0] + 2,
        "ref transactions while materializing 3 and 20 MiB: {measured:?}"
    );
    repo.assert_fsck_strict()
}

/// Where waiting is refused (`gatos::nowait`, gatosd's event loop), a plain publish is a
/// journal append or nothing at all: with the topic's lock held elsewhere, or a publish
/// that is not journaled, it stops before writing anything; once nothing would wait, it
/// lands as any publish does.
#[test]
fn a_publish_that_would_wait_writes_nothing_where_waiting_is_refused() -> TestResult {
    let repo = TempRepo::new()?;
    let t: Topic = "j.nowait".parse()?;
    let g = open(&repo)?;
    let first = publish(&g, &t, 0)?;
    let len = journal_len(&repo, &t);
    let refs = repo.git(&["for-each-ref"])?;
    // Another process holds the topic's lock (a separate handle on the lock file: the
    // kernel's flock, as another process sees it).
    let other = gatos_store::locks::Locks::new(&repo.git_dir())?;
    let held = other
        .try_acquire(&format!("messages.{t}"))?
        .ok_or("the topic's lock is free")?;
    assert!(gatos::nowait::run(|| publish(&g, &t, 1)).is_none());
    drop(held);
    // Publishes that are not journaled: guarded, deduplicated.
    let guarded = PublishOptions {
        headers: None,
        expect_last_seq: Some(first.seq),
    };
    assert!(gatos::nowait::run(|| g.messages().publish(&t, json!({"n": 2}), &guarded)).is_none());
    let dedup = PublishOptions {
        headers: Some(json!({"msg_id": "k"})),
        expect_last_seq: None,
    };
    assert!(gatos::nowait::run(|| g.messages().publish(&t, json!({"n": 3}), &dedup)).is_none());
    assert_eq!(journal_len(&repo, &t), len, "nothing appended");
    assert_eq!(repo.git(&["for-each-ref"])?, refs, "no ref moved");
    // Nothing waits now: it lands.
    let row = gatos::nowait::run(|| publish(&g, &t, 4)).ok_or("it would wait")??;
    assert_eq!(row.seq, first.seq + 1);
    assert!(journal_len(&repo, &t) > len);
    assert_eq!(ns(&g, &t)?, vec![0, 4]);
    // With gatos.fsync, the append would wait for the disk.
    repo.git(&["config", "gatos.fsync", "true"])?;
    let durable = open(&repo)?;
    assert!(gatos::nowait::run(|| publish(&durable, &t, 5)).is_none());
    drop(durable);
    assert_eq!(ns(&g, &t)?, vec![0, 4]);
    g.flush_journals()?;
    repo.assert_fsck_strict()
}

/// Where a publish may park (`gatos::nowait::run_or_park`, gatosd's connections), one that
/// finds its topic's group being committed is queued for that group's leader instead of
/// stopping; the leader here waits for the topic's lock, held elsewhere, and once it gets it
/// commits its own group, then the parked publish (it looks for parked items when it lets
/// go of the leader lock). Where parking is not allowed, the same publish stops, writing
/// nothing.
#[test]
fn a_publish_parked_behind_a_waiting_group_lands_with_it() -> TestResult {
    let repo = TempRepo::new()?;
    let t: Topic = "j.park".parse()?;
    let g = open(&repo)?;
    let zero = publish(&g, &t, 0)?;
    let len = journal_len(&repo, &t);
    let other = gatos_store::locks::Locks::new(&repo.git_dir())?;
    let held = other
        .try_acquire(&format!("messages.{t}"))?
        .ok_or("the topic's lock is free")?;
    std::thread::scope(|s| -> TestResult {
        // A publish where waiting is fine leads its group and waits for the lock.
        let leader = s.spawn(|| publish(&g, &t, 1).map_err(|e| e.to_string()));
        // Until it leads, a publish made here would lead itself and would wait: nothing.
        let mut parked = None;
        wait_for("a group being committed", Duration::from_secs(30), || {
            match gatos::nowait::run_or_park(|| publish(&g, &t, 2)) {
                gatos::nowait::Now::Parked(p) => parked = Some(p),
                gatos::nowait::Now::WouldWait => {}
                gatos::nowait::Now::Done(r) => panic!("it landed with the lock held: {r:?}"),
            }
            parked.is_some()
        })?;
        let parked = parked.ok_or("nothing parked")?;
        assert_eq!(parked.topic(), &t);
        assert!(gatos::nowait::run(|| publish(&g, &t, 3)).is_none());
        assert_eq!(
            journal_len(&repo, &t),
            len,
            "nothing appended while the lock was held"
        );
        drop(held);
        let first = leader.join().map_err(|_| "the leader panicked")??;
        let second = block_on(Duration::from_secs(30), parked)?.ok_or("handed back")??;
        assert_eq!(
            (first.seq, second.seq),
            (zero.seq + 1, zero.seq + 2),
            "the leader's publish, then the parked one"
        );
        Ok(())
    })?;
    assert_eq!(ns(&g, &t)?, vec![0, 1, 2]);
    g.flush_journals()?;
    repo.assert_fsck_strict()
}

/// A record that does not follow the one before it (here a whole frame copied from another
/// topic's journal) is never built on: the next journaling publish fails, as materializing
/// the journal fails, and appends nothing.
#[test]
fn a_record_that_does_not_follow_the_one_before_it_is_not_built_on() -> TestResult {
    let repo = TempRepo::new()?;
    let t: Topic = "j.chain".parse()?;
    let u: Topic = "j.other".parse()?;
    let a = open(&repo)?;
    let b = open(&repo)?;
    publish(&a, &t, 0)?;
    publish(&a, &u, 0)?;
    publish(&a, &u, 1)?; // u's second record follows u's first message
    let other = std::fs::read(journal(&repo, &u))?;
    let first = u32::from_le_bytes(other[..4].try_into()?) as usize + 20;
    {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(journal(&repo, &t))?;
        f.write_all(&other[first..])?;
    }
    let len = journal_len(&repo, &t);
    assert!(
        publish(&b, &t, 1).is_err(),
        "a publish after a record that does not follow must fail"
    );
    assert_eq!(journal_len(&repo, &t), len, "nothing was appended");
    Ok(())
}

/// A topic whose head was moved outside gatos to no message while a publish to it waited in
/// its journal cannot have that journal made commits. That keeps no read of the whole
/// repository from answering (ADR 0047): flushing the journals, listing the topics, the
/// refs that fix a checkpoint listing, a snapshot taken or saved read the other topics and
/// take the damaged one's refs as they stand. The publish stays acknowledged in the
/// journal and becomes a commit once the head is put back.
#[test]
fn a_damaged_topics_journal_waits_until_the_topic_is_repaired() -> TestResult {
    let repo = TempRepo::new()?;
    let g = open(&repo)?;
    let (good, bad): (Topic, Topic) = ("j.good".parse()?, "j.bad".parse()?);
    publish(&g, &good, 1)?;
    publish(&g, &bad, 1)?;
    g.flush_journals()?;
    let before = head(&repo, &bad)?;
    publish(&g, &bad, 2)?;
    super::support::move_head_to_no_message(&repo, "j.bad")?;
    let damaged = head(&repo, &bad)?;
    let objects = repo.git(&["count-objects", "-v"])?;
    assert_eq!(
        g.flush_journals()?,
        vec![bad.clone()],
        "the damaged topic is left"
    );
    let waiting = journal_len(&repo, &bad);
    assert!(waiting > 0, "its publish waits in its journal");
    assert_eq!(
        repo.git(&["count-objects", "-v"])?,
        objects,
        "nothing written for a journal that cannot become commits"
    );
    // A publish to it now is refused before its append, as a direct one is.
    let refused = publish(&g, &bad, 3)
        .err()
        .ok_or("a publish to a damaged topic was acknowledged")?;
    assert!(
        refused.to_string().contains("not a message commit"),
        "{refused}"
    );
    assert_eq!(journal_len(&repo, &bad), waiting);
    publish(&g, &good, 2)?;
    g.flush_journals()?;
    assert_eq!(journal_len(&repo, &good), 0);
    assert_eq!(ns(&g, &good)?, vec![1, 2]);
    assert_eq!(
        head(&repo, &bad)?,
        damaged,
        "nothing appended to the damaged head"
    );
    let listing = g.messages().listing()?;
    let rows: Vec<String> = listing.rows.iter().map(|r| r.topic.to_string()).collect();
    assert_eq!(rows, ["j.good"]);
    assert_eq!(listing.damaged.len(), 1);
    assert_eq!(listing.damaged[0].topic, bad);
    let live: Vec<String> = gatos::refs::RefSource::list_after(
        &gatos::refs::Live(&g),
        "refs/gatos/messages/",
        None,
        100,
    )?
    .into_iter()
    .map(|(n, _)| n)
    .collect();
    assert!(
        live.contains(&"refs/gatos/messages/j.bad/head".to_owned()),
        "{live:?}"
    );
    let state = g.checkpoints().state_all()?;
    assert!(
        state
            .iter()
            .any(|(n, o)| n == "refs/gatos/messages/j.bad/head" && o.to_string() == damaged),
        "{state:?}"
    );
    let taken = g.snapshot()?;
    assert!(taken.entries().iter().any(|e| e.name.contains("j.good")));
    let saved = gatos::snapshot::saved::create(&g, "before-repair")?;
    assert!(saved.refs > 0);
    // The head put back: the waiting publish becomes its commit, after the message it
    // followed.
    repo.git(&[
        "update-ref",
        "refs/gatos/messages/j.bad/head",
        &before,
        &damaged,
    ])?;
    assert_eq!(g.flush_journals()?, Vec::<Topic>::new());
    assert_eq!(journal_len(&repo, &bad), 0);
    assert_eq!(ns(&g, &bad)?, vec![1, 2]);
    repo.assert_fsck_strict()
}

/// A journal that cannot become commits because a record says a format version no gatos
/// writes is a fault of the journal, not damage of its topic: flushing the journals, listing
/// the topics and taking a snapshot fail, naming it, rather than answer without the publish
/// acknowledged from it; and so they still do once the topic is damaged too (the records
/// are read before the head they follow).
#[test]
fn a_journal_fault_fails_what_reads_every_topic_whatever_the_topics_state() -> TestResult {
    let repo = TempRepo::new()?;
    let g = open(&repo)?;
    let t: Topic = "j.fine".parse()?;
    publish(&g, &t, 1)?;
    g.flush_journals()?;
    publish(&g, &t, 2)?;
    super::support::journal_of_an_unknown_version(&repo, "j.fine")?;
    for damaged in [false, true] {
        if damaged {
            super::support::move_head_to_no_message(&repo, "j.fine")?;
        }
        for (what, e) in [
            ("flush", g.flush_journals().err()),
            ("listing", g.messages().listing().err()),
            ("snapshot", g.snapshot().err()),
        ] {
            let e = e.ok_or(format!(
                "{what} answered without the journaled publish (damaged: {damaged})"
            ))?;
            assert!(e.to_string().contains("unknown version"), "{what}: {e}");
        }
    }
    Ok(())
}

/// A journal that reaches its bound of waiting records is made commits by the publish that
/// fills it; when that fails (the head was moved outside gatos to no message while they
/// waited), the publish is still acknowledged (its record is appended), and the next one
/// is refused before its append. Nothing acknowledged is lost: put back, the head gets every
/// message.
#[test]
fn a_full_journal_that_cannot_become_commits_still_acknowledges_its_last_publish() -> TestResult {
    let repo = TempRepo::new()?;
    let g = open(&repo)?;
    let t: Topic = "j.full".parse()?;
    publish(&g, &t, 0)?;
    g.flush_journals()?;
    let before = head(&repo, &t)?;
    publish(&g, &t, 1)?;
    super::support::move_head_to_no_message(&repo, "j.full")?;
    let damaged = head(&repo, &t)?;
    // 4,096 records wait in a journal before the writer makes it commits itself.
    for n in 2..=4_096 {
        publish(&g, &t, n)?;
    }
    assert!(journal_len(&repo, &t) > 0, "the full journal is left");
    let refused = publish(&g, &t, 4_097)
        .err()
        .ok_or("a publish after the failed materialization was acknowledged")?;
    assert!(
        refused.to_string().contains("not a message commit"),
        "{refused}"
    );
    repo.git(&[
        "update-ref",
        "refs/gatos/messages/j.full/head",
        &before,
        &damaged,
    ])?;
    assert_eq!(g.flush_journals()?, Vec::<Topic>::new());
    let rows = g.messages().topics()?;
    let row = rows.iter().find(|r| r.topic == t).ok_or("no row")?;
    assert_eq!(
        (row.count, row.last_seq),
        (4_097, 4_097),
        "every message is there"
    );
    Ok(())
}
