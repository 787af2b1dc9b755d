//! Reads long enough (more than 1,024 messages) that a second thread reads ahead: they give
//! what short pages give, stop where the caller stops, and meet damage where a page would.

use std::path::PathBuf;

use gatos::Gatos;
use gatos::messages::{BatchItem, BatchOptions, Cursor, ReadOptions, ScanEnd};
use gatos_testutil::{TempRepo, TestResult};
use gatos_types::wire::MessageRow;
use gatos_types::{Digest, ErrorCode, Topic};
use serde_json::{Value, json};

use crate::support::open;

const MESSAGES: u64 = 6_000;

/// Messages 3,000 to 3,011 carry about 300 KiB each: more than a chunk's bytes.
fn big(i: u64) -> bool {
    (3_000..3_012).contains(&i)
}

/// A topic of [`MESSAGES`] messages of many sizes, some with headers.
fn long_topic() -> TestResult<(TempRepo, Gatos, Topic)> {
    let repo = TempRepo::new()?;
    let g = open(&repo)?;
    let t: Topic = "long.reads".parse()?;
    let items = (1..=MESSAGES).map(|i| {
        let pad = if big(i) { 300_000 } else { (i % 700) as usize };
        Ok(BatchItem {
            payload: json!({"i": i, "pad": "x".repeat(pad)}),
            headers: (i % 7 == 0).then(|| json!({"kind": format!("k{i}")})),
        })
    });
    let landed = g.messages().publish_batch(
        &t,
        items,
        &BatchOptions {
            chunk: 1_000,
            expect_last_seq: None,
        },
        |_| Ok(()),
    )?;
    assert_eq!(landed, MESSAGES);
    Ok((repo, g, t))
}

/// Every message, by pages of 500 (each one read without reading ahead).
fn by_pages(g: &Gatos, t: &Topic) -> TestResult<Vec<MessageRow>> {
    let mut rows = Vec::new();
    let mut since = Cursor::Start;
    loop {
        let page = g.messages().read(t, &ReadOptions { since, limit: 500 })?;
        rows.extend(page.messages);
        if page.end {
            return Ok(rows);
        }
        since = Cursor::Ulid(page.next_since.ok_or("a page without a cursor")?);
    }
}

/// Scans, stopping after `stop_after` messages (never: `u64::MAX`).
fn scan(
    g: &Gatos,
    t: &Topic,
    since: &Cursor,
    limit: Option<u64>,
    stop_after: u64,
) -> gatos::Result<(Vec<MessageRow>, ScanEnd)> {
    let mut rows = Vec::new();
    let end = g.messages().scan(t, since, limit, |m| {
        rows.push(m.to_row());
        Ok((rows.len() as u64) < stop_after)
    })?;
    Ok((rows, end))
}

/// Scans from the start a topic whose scan must fail: the positions passed on, and the
/// error.
fn scan_to_error(g: &Gatos, t: &Topic) -> (Vec<u64>, gatos::Error) {
    let mut seen = Vec::new();
    let e = g
        .messages()
        .scan(t, &Cursor::Start, None, |m| {
            seen.push(m.seq);
            Ok(true)
        })
        .expect_err("the scan should fail");
    (seen, e)
}

fn json_of(rows: &[MessageRow]) -> TestResult<Value> {
    Ok(serde_json::to_value(rows)?)
}

#[test]
fn long_scans_give_what_short_pages_give() -> TestResult {
    let (repo, g, t) = long_topic()?;
    let pages = by_pages(&g, &t)?;
    assert_eq!(pages.len() as u64, MESSAGES);
    assert_eq!(
        pages.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=MESSAGES).collect::<Vec<_>>()
    );

    let (rows, end) = scan(&g, &t, &Cursor::Start, None, u64::MAX)?;
    assert_eq!(json_of(&rows)?, json_of(&pages)?);
    assert_eq!(
        (end.count, end.end, end.last, end.next_since, end.last_seq),
        (
            MESSAGES,
            true,
            Some((MESSAGES, pages[5_999].ulid)),
            Some(pages[5_999].ulid),
            MESSAGES
        )
    );
    // The content ids are those of the envelopes git holds.
    for r in [&rows[0], &rows[3_001], &rows[5_999]] {
        let env = repo.git(&[
            "cat-file",
            "blob",
            &format!("{}:message/envelope.json", r.commit),
        ])?;
        assert_eq!(Digest::of(env.as_bytes()), r.content_id);
    }
    let payload: Value = serde_json::from_str(rows[3_005].payload.get())?;
    assert_eq!(payload["pad"].as_str().map(str::len), Some(300_000));

    // From a position, from a ULID, and with a limit.
    let (rows, end) = scan(&g, &t, &Cursor::Seq(1_500), Some(3_000), u64::MAX)?;
    assert_eq!(json_of(&rows)?, json_of(&pages[1_500..4_500])?);
    assert!(!end.end);
    assert_eq!(end.next_since, Some(pages[4_499].ulid));
    let (rows, _) = scan(&g, &t, &Cursor::Ulid(pages[9].ulid), None, u64::MAX)?;
    assert_eq!(json_of(&rows)?, json_of(&pages[10..])?);

    // A page of 10,000 with the default byte cap ends at the message that crosses it.
    let page = g.messages().read(
        &t,
        &ReadOptions {
            since: Cursor::Seq(2_000),
            limit: 10_000,
        },
    )?;
    assert!(!page.end);
    assert!(page.messages.len() > 1_000 && page.messages.len() < 1_100);
    assert_eq!(
        json_of(&page.messages)?,
        json_of(&pages[2_000..2_000 + page.messages.len()])?
    );
    Ok(())
}

#[test]
fn a_long_scan_stops_at_the_message_where_its_caller_stops() -> TestResult {
    let (_repo, g, t) = long_topic()?;
    let pages = by_pages(&g, &t)?;
    for stop in [1, 255, 256, 257, 2_600, 3_005, 5_999, 6_000] {
        let (rows, end) = scan(&g, &t, &Cursor::Start, None, stop)?;
        let at = usize::try_from(stop)? - 1;
        assert_eq!(rows.len(), at + 1, "stopped after {stop}");
        assert_eq!(json_of(&rows)?, json_of(&pages[..=at])?);
        assert_eq!(end.count, stop);
        assert_eq!(end.last, Some((stop, pages[at].ulid)));
        assert_eq!(end.next_since, Some(pages[at].ulid));
        assert_eq!(end.end, stop == MESSAGES, "stopped after {stop}");
        // The cursor it gives resumes at the next message.
        let (rest, _) = scan(&g, &t, &Cursor::Ulid(pages[at].ulid), None, u64::MAX)?;
        assert_eq!(
            rest.first().map(|r| r.seq),
            (stop < MESSAGES).then_some(stop + 1)
        );
    }
    // An error of the caller's ends the scan with that error, after that message only.
    let mut seen = 0;
    let e = g
        .messages()
        .scan(&t, &Cursor::Start, None, |m| {
            seen += 1;
            if m.seq == 4_321 {
                return Err(gatos::Error::new(ErrorCode::Conflict, "the caller's own"));
            }
            Ok(true)
        })
        .unwrap_err();
    assert_eq!((e.code(), seen), (ErrorCode::Conflict, 4_321));
    Ok(())
}

fn positions(repo: &TempRepo, t: &Topic) -> PathBuf {
    repo.git_dir()
        .join("gatos/index/topics")
        .join(t.as_str())
        .join("positions")
}

/// Where the record of `seq` starts in the positions file (ADR 0008).
fn record_at(seq: u64) -> usize {
    128 + (usize::try_from(seq).unwrap() - 1) * 64
}

/// Rewrites the record of `seq` with `f` and puts a valid checksum on it.
fn rewrite_record(repo: &TempRepo, t: &Topic, seq: u64, f: impl Fn(&mut [u8])) -> TestResult {
    let path = positions(repo, t);
    let mut bytes = std::fs::read(&path)?;
    let r = &mut bytes[record_at(seq)..record_at(seq) + 64];
    f(r);
    let sum = Digest::of(&r[..60]);
    r[60..].copy_from_slice(&sum.as_bytes()[..4]);
    std::fs::write(&path, bytes)?;
    Ok(())
}

#[test]
fn a_damaged_index_ends_a_long_scan_after_the_messages_before_the_damage() -> TestResult {
    let (repo, g, t) = long_topic()?;
    let pages = by_pages(&g, &t)?;
    let everything = json_of(&pages)?;

    // A record torn deep in the scan: the index is read a run of records at a time, so
    // the messages before that run are passed on, in order, then the error, which says
    // how many were; the index is rebuilt for the next read.
    let path = positions(&repo, &t);
    let mut bytes = std::fs::read(&path)?;
    bytes[record_at(3_500) + 45] ^= 0x5a;
    std::fs::write(&path, &bytes)?;
    let (seen, e) = scan_to_error(&g, &t);
    // Index reads of 512 then 1,024 records: the one of 2,561-3,584 meets it (on one
    // thread, runs of 512: 3,073-3,584).
    let passed = seen.len() as u64;
    assert!([2_560, 3_072].contains(&passed), "{passed}");
    assert_eq!(seen, (1..=passed).collect::<Vec<_>>());
    assert!(
        e.to_string()
            .contains(&format!("after {passed} messages were read")),
        "{e}"
    );
    let (rows, _) = scan(&g, &t, &Cursor::Start, None, u64::MAX)?;
    assert_eq!(json_of(&rows)?, everything);

    // A torn record among the large envelopes, where chunks are cut by their bytes.
    let mut bytes = std::fs::read(&path)?;
    bytes[record_at(3_005) + 45] ^= 0x5a;
    std::fs::write(&path, &bytes)?;
    let (seen, _) = scan_to_error(&g, &t);
    assert!(
        [2_560, 3_072].contains(&(seen.len() as u64)),
        "{}",
        seen.len()
    );
    let (rows, _) = scan(&g, &t, &Cursor::Start, None, u64::MAX)?;
    assert_eq!(json_of(&rows)?, everything);

    // Torn records before the first message passed on, in the first run of 512 records:
    // rebuilt, and the scan goes on.
    let mut bytes = std::fs::read(&path)?;
    bytes[record_at(400) + 3] ^= 0x5a;
    std::fs::write(&path, &bytes)?;
    let (rows, _) = scan(&g, &t, &Cursor::Start, None, u64::MAX)?;
    assert_eq!(json_of(&rows)?, everything);
    let mut bytes = std::fs::read(&path)?;
    bytes[record_at(1) + 3] ^= 0x5a;
    std::fs::write(&path, &bytes)?;
    let (rows, _) = scan(&g, &t, &Cursor::Start, None, u64::MAX)?;
    assert_eq!(json_of(&rows)?, everything);

    // A record whose checksum holds but that names another message's envelope.
    let next_blob = {
        let b = std::fs::read(&path)?;
        b[record_at(4_001) + 20..record_at(4_001) + 40].to_vec()
    };
    rewrite_record(&repo, &t, 4_000, |r| r[20..40].copy_from_slice(&next_blob))?;
    let (seen, e) = scan_to_error(&g, &t);
    let count = seen.len();
    assert_eq!(count, 3_999);
    assert!(
        e.to_string()
            .contains("seq 4000 points at a different message"),
        "{e}"
    );
    let (rows, _) = scan(&g, &t, &Cursor::Start, None, u64::MAX)?;
    assert_eq!(json_of(&rows)?, everything);
    Ok(())
}

#[test]
fn a_missing_envelope_ends_a_long_scan_at_that_message() -> TestResult {
    let repo = TempRepo::new()?;
    let g = open(&repo)?;
    let t: Topic = "loose.reads".parse()?;
    // Chunks of 8 messages are written as loose objects.
    let items = (1..=3_000).map(|i| {
        Ok(BatchItem {
            payload: json!({ "i": i }),
            headers: None,
        })
    });
    g.messages().publish_batch(
        &t,
        items,
        &BatchOptions {
            chunk: 8,
            expect_last_seq: None,
        },
        |_| Ok(()),
    )?;
    let pages = by_pages(&g, &t)?;
    let blob = repo.git(&[
        "rev-parse",
        &format!("{}:message/envelope.json", pages[2_199].commit),
    ])?;
    let blob = blob.trim();
    let loose = repo
        .git_dir()
        .join("objects")
        .join(&blob[..2])
        .join(&blob[2..]);
    assert!(loose.is_file(), "{} is not loose", loose.display());
    std::fs::remove_file(&loose)?;

    let (seen, e) = scan_to_error(&g, &t);
    let count = seen.len();
    assert_eq!(count, 2_199);
    // What a short page meets at that message.
    let short = g
        .messages()
        .read(
            &t,
            &ReadOptions {
                since: Cursor::Seq(2_199),
                limit: 10,
            },
        )
        .unwrap_err();
    assert_eq!(e.code(), short.code());
    assert_eq!(e.to_string(), short.to_string());
    // Nothing was changed: the messages after it are still read.
    let (rows, _) = scan(&g, &t, &Cursor::Seq(2_200), None, u64::MAX)?;
    assert_eq!(json_of(&rows)?, json_of(&pages[2_200..])?);
    Ok(())
}

#[test]
fn concurrent_long_scans_each_give_every_message() -> TestResult {
    // Six scans at once: on a machine with fewer than six CPUs, more than there may be
    // reading-ahead threads, so some read alone.
    let (_repo, g, t) = long_topic()?;
    let pages = json_of(&by_pages(&g, &t)?)?;
    let scans: Vec<gatos::Result<Value>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    let (rows, _) = scan(&g, &t, &Cursor::Start, None, u64::MAX)?;
                    Ok(serde_json::to_value(rows).expect("rows serialize"))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a scan thread panicked"))
            .collect()
    });
    for rows in scans {
        assert_eq!(rows?, pages);
    }
    Ok(())
}

#[test]
fn a_panic_in_the_caller_of_a_long_scan_is_its_own_and_leaves_reads_working() -> TestResult {
    let (_repo, g, t) = long_topic()?;
    let pages = json_of(&by_pages(&g, &t)?)?;
    for at in [1_u64, 700, 2_999] {
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            g.messages().scan(&t, &Cursor::Start, None, |m| {
                assert!(m.seq < at, "the caller's own panic at {at}");
                Ok(true)
            })
        }));
        assert!(panicked.is_err(), "the scan did not reach {at}");
    }
    // Nothing was held: every reading-ahead thread was given back, and scans read all.
    let (rows, _) = scan(&g, &t, &Cursor::Start, None, u64::MAX)?;
    assert_eq!(json_of(&rows)?, pages);
    Ok(())
}
