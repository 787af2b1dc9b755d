use gatos::messages::{
    BatchItem, BatchOptions, ConfigChange, Cursor, PruneOptions, PublishOptions, ReadOptions,
};
use gatos_testutil::{TempRepo, TestResult};
use gatos_types::{ErrorCode, Topic, Ulid};
use serde_json::json;

use crate::support::{open, open_at};

fn topic(s: &str) -> Topic {
    s.parse().unwrap()
}

fn all(g: &gatos::Gatos, t: &Topic) -> TestResult<Vec<gatos_types::wire::MessageRow>> {
    let mut out = Vec::new();
    g.messages().scan(t, &Cursor::Start, None, |m| {
        out.push(m.to_row());
        Ok(true)
    })?;
    Ok(out)
}

#[test]
fn publish_then_read_round_trips_and_git_agrees() -> TestResult {
    let repo = TempRepo::new()?;
    let g = open(&repo)?;
    let t = topic("ci.events");
    let a = g.messages().publish(
        &t,
        json!({"n": 1, "b": [true, null]}),
        &PublishOptions::default(),
    )?;
    let b = g
        .messages()
        .publish(&t, json!("two"), &PublishOptions::default())?;
    assert_eq!((a.seq, b.seq), (1, 2));
    assert!(b.ulid > a.ulid);
    let page = g.messages().read(
        &t,
        &ReadOptions {
            since: Cursor::Start,
            limit: 10,
        },
    )?;
    assert_eq!(page.messages.len(), 2);
    assert!(page.end);
    assert_eq!(page.next_since, Some(b.ulid));
    assert_eq!(page.messages[0].payload.get(), r#"{"b":[true,null],"n":1}"#);

    // git sees a valid chain: envelope bytes are JCS, their blake3 is Content-Id.
    let head = repo
        .rev_parse("refs/gatos/messages/ci.events/head")?
        .unwrap();
    assert_eq!(head, b.commit.to_string());
    let env = repo.git(&[
        "cat-file",
        "blob",
        &format!("{}:message/envelope.json", a.commit),
    ])?;
    assert_eq!(
        env,
        format!(
            r#"{{"payload":{{"b":[true,null],"n":1}},"topic":"ci.events","ulid":"{}"}}"#,
            a.ulid
        )
    );
    assert_eq!(gatos_types::Digest::of(env.as_bytes()), a.content_id);
    let trailers = repo.git(&[
        "log",
        "-1",
        "--format=%(trailers:only,unfold)",
        &a.commit.to_string(),
    ])?;
    assert!(
        trailers.contains(&format!("Content-Id: {}", a.content_id)),
        "{trailers}"
    );
    assert!(trailers.contains("Seq: 1\n"));
    assert!(trailers.contains("Gatos-Kind: message"));
    let parents = repo.git(&["log", "--format=%P", "-1", &b.commit.to_string()])?;
    assert_eq!(parents.trim(), a.commit.to_string());
    repo.assert_fsck_strict()
}

#[test]
fn cursors_page_through_the_topic() -> TestResult {
    let repo = TempRepo::new()?;
    let g = open(&repo)?;
    let t = topic("pages");
    let mut rows = Vec::new();
    for i in 0..25 {
        rows.push(
            g.messages()
                .publish(&t, json!(i), &PublishOptions::default())?,
        );
    }
    let mut since = Cursor::Start;
    let mut seen = Vec::new();
    loop {
        let page = g.messages().read(&t, &ReadOptions { since, limit: 7 })?;
        seen.extend(page.messages.iter().map(|m| m.seq));
        if page.end {
            break;
        }
        since = Cursor::Ulid(page.next_since.unwrap());
    }
    assert_eq!(seen, (1..=25).collect::<Vec<_>>());
    let after10 = g.messages().read(
        &t,
        &ReadOptions {
            since: Cursor::Seq(10),
            limit: 3,
        },
    )?;
    assert_eq!(
        after10.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![11, 12, 13]
    );
    // The largest cursor there is reads nothing (it once wrapped to 0 and read 0, 1, 2).
    for far in [u64::MAX, u64::MAX - 1, 26, 1_000] {
        let page = g.messages().read(
            &t,
            &ReadOptions {
                since: Cursor::Seq(far),
                limit: 3,
            },
        )?;
        assert!(page.messages.is_empty(), "since_seq {far}");
        assert!(page.end, "since_seq {far}");
    }
    let at_end = g.messages().read(
        &t,
        &ReadOptions {
            since: Cursor::Ulid(rows[24].ulid),
            limit: 3,
        },
    )?;
    assert!(at_end.messages.is_empty() && at_end.end);
    assert_eq!(at_end.next_since, Some(rows[24].ulid));
    let unknown = Ulid::from_parts(1, 1);
    let err = g
        .messages()
        .read(
            &t,
            &ReadOptions {
                since: Cursor::Ulid(unknown),
                limit: 3,
            },
        )
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    let empty = g.messages().read(
        &topic("nothing"),
        &ReadOptions {
            since: Cursor::Start,
            limit: 3,
        },
    )?;
    assert!(empty.messages.is_empty() && empty.end);
    Ok(())
}

#[test]
fn segments_rotate_with_sealed_refs_and_prev_segment_links() -> TestResult {
    let repo = TempRepo::new()?;
    let g = open(&repo)?;
    let t = topic("rot");
    g.messages().configure(
        &t,
        &ConfigChange {
            max_messages: Some(3),
            ..Default::default()
        },
    )?;
    let mut rows = Vec::new();
    for i in 0..8 {
        rows.push(
            g.messages()
                .publish(&t, json!(i), &PublishOptions::default())?,
        );
    }
    let sealed: Vec<_> = repo
        .refs("refs/gatos/messages/rot/")?
        .into_iter()
        .filter(|(n, _)| !n.ends_with("/head"))
        .collect();
    assert_eq!(sealed.len(), 2, "{sealed:?}");
    assert_eq!(sealed[0].1, rows[2].commit.to_string());
    assert_eq!(sealed[1].1, rows[5].commit.to_string());
    assert!(sealed[0].0.ends_with(&rows[0].ulid.to_string()));
    // The 4th message is a root with Prev-Segment naming the 3rd.
    let parents = repo.git(&["log", "--format=%P", "-1", &rows[3].commit.to_string()])?;
    assert_eq!(parents.trim(), "");
    let tr = repo.git(&[
        "log",
        "-1",
        "--format=%(trailers:key=Prev-Segment,valueonly)",
        &rows[3].commit.to_string(),
    ])?;
    assert_eq!(tr.trim(), rows[2].commit.to_string());
    assert_eq!(
        all(&g, &t)?.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=8).collect::<Vec<_>>()
    );
    let topics = g.messages().topics()?;
    let row = topics.iter().find(|r| r.topic == t).unwrap();
    assert_eq!((row.last_seq, row.segments, row.count), (8, 3, 8));
    repo.assert_fsck_strict()
}

#[test]
fn an_unfinished_rotation_is_completed_by_the_next_writer() -> TestResult {
    let repo = TempRepo::new()?;
    let g = open(&repo)?;
    let t = topic("crash");
    g.messages().configure(
        &t,
        &ConfigChange {
            max_messages: Some(100),
            ..Default::default()
        },
    )?;
    let a = g
        .messages()
        .publish(&t, json!(1), &PublishOptions::default())?;
    g.flush_journals()?;
    // A crash after the sealed ref was created, before the head moved.
    let name = format!(
        "refs/gatos/messages/crash/{}/{}",
        gatos::messages::ulid_time(a.ulid).utc_date(),
        a.ulid
    );
    repo.git(&["update-ref", &name, &a.commit.to_string()])?;
    let b = g
        .messages()
        .publish(&t, json!(2), &PublishOptions::default())?;
    let parents = repo.git(&["log", "--format=%P", "-1", &b.commit.to_string()])?;
    assert_eq!(parents.trim(), "", "the next message starts a new segment");
    assert_eq!(all(&g, &t)?.len(), 2);
    repo.assert_fsck_strict()
}

#[test]
fn batches_cross_rotations_and_dedupe() -> TestResult {
    let repo = TempRepo::new()?;
    let g = open(&repo)?;
    let t = topic("batch");
    g.messages().configure(
        &t,
        &ConfigChange {
            max_messages: Some(10),
            ..Default::default()
        },
    )?;
    let items = (0..45).map(|i| {
        Ok(BatchItem {
            payload: json!({"i": i}),
            headers: (i % 5 == 0).then(|| json!({"msg_id": format!("m{i}")})),
        })
    });
    let mut rows = Vec::new();
    let landed = g.messages().publish_batch(
        &t,
        items,
        &BatchOptions {
            chunk: 16,
            expect_last_seq: Some(0),
        },
        |r| {
            rows.push(r.clone());
            Ok(())
        },
    )?;
    assert_eq!(landed, 45);
    assert_eq!(
        rows.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=45).collect::<Vec<_>>()
    );
    let sealed = repo.refs("refs/gatos/messages/batch/")?.len() - 1;
    assert_eq!(sealed, 4);
    // Re-sending with the same msg_ids returns the first ones.
    let again = g.messages().publish(
        &t,
        json!("x"),
        &PublishOptions {
            headers: Some(json!({"msg_id": "m20"})),
            expect_last_seq: None,
        },
    )?;
    assert!(again.duplicate);
    assert_eq!(again.seq, 21);
    assert_eq!(again.ulid, rows[20].ulid);
    // Within one batch too.
    let dup_items = vec![
        Ok(BatchItem {
            payload: json!(1),
            headers: Some(json!({"msg_id": "new"})),
        }),
        Ok(BatchItem {
            payload: json!(2),
            headers: Some(json!({"msg_id": "new"})),
        }),
    ];
    let mut dup_rows = Vec::new();
    g.messages()
        .publish_batch(&t, dup_items, &BatchOptions::default(), |r| {
            dup_rows.push(r.clone());
            Ok(())
        })?;
    assert!(!dup_rows[0].duplicate && dup_rows[1].duplicate);
    assert_eq!(dup_rows[0].ulid, dup_rows[1].ulid);
    assert_eq!(g.messages().last_seq(&t)?, 46);
    let read: Vec<u64> = all(&g, &t)?.iter().map(|m| m.seq).collect();
    assert_eq!(read, (1..=46).collect::<Vec<_>>());
    repo.assert_fsck_strict()
}

/// A packed chunk makes its envelopes, blobs and trees on several threads before its commits
/// (ADR 0046, session 7): the messages still land in order, with increasing ULIDs, across
/// rotations inside a chunk and with duplicates skipped, and git agrees.
#[test]
fn large_packed_batches_land_in_order_across_rotations() -> TestResult {
    let repo = TempRepo::new()?;
    let g = open(&repo)?;
    let t = topic("big");
    g.messages().configure(
        &t,
        &ConfigChange {
            max_messages: Some(300),
            ..Default::default()
        },
    )?;
    let items = (0..1_200).map(|i| {
        Ok(BatchItem {
            payload: json!({"i": i, "pad": "x".repeat(i % 50)}),
            // Item 700 repeats item 600's msg_id: a duplicate inside the chunk.
            headers: (i % 100 == 0)
                .then(|| json!({"msg_id": format!("m{}", if i == 700 { 600 } else { i })})),
        })
    });
    let mut rows = Vec::new();
    let landed = g.messages().publish_batch(
        &t,
        items,
        &BatchOptions {
            chunk: 600,
            expect_last_seq: None,
        },
        |r| {
            rows.push(r.clone());
            Ok(())
        },
    )?;
    assert_eq!(landed, 1_200);
    assert!(rows[700].duplicate && rows[700].ulid == rows[600].ulid);
    let fresh: Vec<_> = rows.iter().filter(|r| !r.duplicate).collect();
    assert_eq!(
        fresh.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=1_199).collect::<Vec<_>>()
    );
    assert!(fresh.windows(2).all(|w| w[0].ulid < w[1].ulid));
    let read = all(&g, &t)?;
    assert_eq!(read.len(), 1_199);
    for (m, r) in read.iter().zip(&fresh) {
        assert_eq!(
            (m.seq, m.ulid, &m.content_id),
            (r.seq, r.ulid, &r.content_id)
        );
    }
    assert_eq!(read[0].payload.get(), r#"{"i":0,"pad":""}"#);
    let last: serde_json::Value = serde_json::from_str(read[1_198].payload.get())?;
    assert_eq!(last["i"], json!(1_199));
    // Four segments of 300 and one of 299: three rotations, two of them inside a chunk.
    assert_eq!(repo.refs("refs/gatos/messages/big/")?.len() - 1, 3);
    // Each chunk's pack was written while its commits were made (ADR 0046, session 16):
    // its trees and envelopes come first, the commits after them.
    if std::thread::available_parallelism().is_ok_and(|n| n.get() > 1) {
        let dir = repo.git_dir().join("objects").join("pack");
        let mut packs = 0;
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "idx") {
                packs += 1;
                let listed = repo.git(&["verify-pack", "-v", &path.to_string_lossy()])?;
                let first = listed
                    .lines()
                    .filter_map(|l| {
                        let f: Vec<&str> = l.split_whitespace().collect();
                        let offset: u64 = f.get(4)?.parse().ok()?;
                        (f[0].len() == 40).then(|| (offset, f[1].to_owned()))
                    })
                    .min()
                    .ok_or("an empty pack")?;
                assert_ne!(first.1, "commit", "{}", path.display());
            }
        }
        assert_eq!(packs, 2, "one pack a chunk");
    }
    repo.assert_fsck_strict()
}

#[test]
fn a_bad_batch_item_reports_how_many_landed() -> TestResult {
    let repo = TempRepo::new()?;
    let g = open(&repo)?;
    let t = topic("partial");
    let items = (0..7).map(|i| {
        if i == 5 {
            Err(gatos::Error::new(
                ErrorCode::InvalidInput,
                "line 6: bad JSON",
            ))
        } else {
            Ok(BatchItem {
                payload: json!(i),
                headers: None,
            })
        }
    });
    let err = g
        .messages()
        .publish_batch(
            &t,
            items,
            &BatchOptions {
                chunk: 2,
                expect_last_seq: None,
            },
            |_| Ok(()),
        )
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidInput);
    assert_eq!(err.details().get("landed"), Some(&json!(4)));
    assert_eq!(g.messages().last_seq(&t)?, 4);
    Ok(())
}

#[test]
fn expect_last_seq_guards_appends() -> TestResult {
    let repo = TempRepo::new()?;
    let g = open(&repo)?;
    let t = topic("guarded");
    let opts = |n| PublishOptions {
        headers: None,
        expect_last_seq: Some(n),
    };
    g.messages().publish(&t, json!(1), &opts(0))?;
    g.messages().publish(&t, json!(2), &opts(1))?;
    let err = g.messages().publish(&t, json!(3), &opts(1)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::Conflict);
    assert_eq!(g.messages().last_seq(&t)?, 2);
    Ok(())
}

#[test]
fn bad_input_changes_nothing() -> TestResult {
    let repo = TempRepo::new()?;
    let g = open(&repo)?;
    let t = topic("bad");
    let err = g
        .messages()
        .publish(
            &t,
            json!(1),
            &PublishOptions {
                headers: Some(json!({"msg_id": 5})),
                expect_last_seq: None,
            },
        )
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidInput);
    let big = "x".repeat(gatos::messages::MAX_ENVELOPE_BYTES);
    let err = g
        .messages()
        .publish(&t, json!(big), &PublishOptions::default())
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::PayloadTooLarge);
    assert!(repo.refs("refs/gatos/messages/")?.is_empty());
    Ok(())
}

#[test]
fn the_index_is_never_trusted_over_the_refs() -> TestResult {
    let repo = TempRepo::new()?;
    let g = open(&repo)?;
    let t = topic("idx");
    let rows: Vec<_> = (0..10)
        .map(|i| {
            g.messages()
                .publish(&t, json!(i), &PublishOptions::default())
        })
        .collect::<Result<_, _>>()?;
    assert_eq!(all(&g, &t)?.len(), 10);
    // A foreign writer moves the head back (say, a fetch of another node's state).
    repo.git(&[
        "update-ref",
        "refs/gatos/messages/idx/head",
        &rows[5].commit.to_string(),
    ])?;
    assert_eq!(
        all(&g, &t)?.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=6).collect::<Vec<_>>()
    );
    // And writes diverge from there: the index follows the refs.
    let next = g
        .messages()
        .publish(&t, json!("new"), &PublishOptions::default())?;
    assert_eq!(next.seq, 7);
    let read = all(&g, &t)?;
    assert_eq!(read.len(), 7);
    assert_eq!(read[6].ulid, next.ulid);
    let err = g
        .messages()
        .read(
            &t,
            &ReadOptions {
                since: Cursor::Ulid(rows[8].ulid),
                limit: 1,
            },
        )
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    // A corrupt index is rebuilt.
    let idx = repo.git_dir().join("gatos/index/topics/idx/positions");
    let mut bytes = std::fs::read(&idx)?;
    let n = bytes.len();
    bytes[n - 30] ^= 0xff;
    std::fs::write(&idx, bytes)?;
    assert_eq!(all(&g, &t)?.len(), 7);
    std::fs::remove_dir_all(repo.git_dir().join("gatos/index"))?;
    assert_eq!(all(&g, &t)?.len(), 7);
    let page = g.messages().read(
        &t,
        &ReadOptions {
            since: Cursor::Ulid(rows[2].ulid),
            limit: 2,
        },
    )?;
    assert_eq!(
        page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![4, 5]
    );
    repo.assert_fsck_strict()
}

#[test]
fn prune_drops_old_segments_reports_gaps_and_respects_consumers() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _clock) = open_at(&repo, "2026-01-01T00:00:00Z")?;
    let t = topic("old");
    g.messages().configure(
        &t,
        &ConfigChange {
            max_messages: Some(4),
            retain_messages: Some(Some(5)),
            ..Default::default()
        },
    )?;
    let rows: Vec<_> = (0..14)
        .map(|i| {
            g.messages()
                .publish(&t, json!(i), &PublishOptions::default())
        })
        .collect::<Result<_, _>>()?;
    let group: gatos_types::Group = "slow".parse()?;
    g.checkpoints().set(&group, &t, rows[1].ulid, false)?;
    let err = g
        .messages()
        .prune(&t, &PruneOptions::default())
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Forbidden);
    let dry = g.messages().prune(
        &t,
        &PruneOptions {
            dry_run: true,
            force: true,
            ..Default::default()
        },
    )?;
    assert_eq!(dry.segments.len(), 2);
    assert_eq!(dry.messages, 8);
    assert!(repo.rev_parse("refs/gatos/messages/old/summary")?.is_none());
    let done = g.messages().prune(
        &t,
        &PruneOptions {
            force: true,
            ..Default::default()
        },
    )?;
    assert_eq!(done.messages, 8);
    assert_eq!(done.groups_behind, vec![group.clone()]);
    assert_eq!(
        repo.refs("refs/gatos/messages/old/")?.len(),
        3,
        "head, summary and one sealed segment"
    );
    let left = all(&g, &t)?;
    assert_eq!(left.first().map(|m| m.seq), Some(9));
    // A cursor in pruned history resumes with a gap; the checkpoint is behind.
    let page = g.messages().read(
        &t,
        &ReadOptions {
            since: Cursor::Ulid(rows[1].ulid),
            limit: 2,
        },
    )?;
    assert_eq!(
        page.gap,
        Some(gatos_types::wire::Gap {
            from_seq: 3,
            to_seq: 8
        })
    );
    assert_eq!(page.messages[0].seq, 9);
    let cp = g.checkpoints().get(&group, &t)?;
    assert_eq!(cp.lag, 6);
    let consumed = g.checkpoints().consume(&group, &t, 3, |_| Ok(true))?;
    assert_eq!(
        consumed.gap,
        Some(gatos_types::wire::Gap {
            from_seq: 3,
            to_seq: 8
        })
    );
    assert_eq!(consumed.checkpoint.seq, 11);
    // The summary records what went.
    let summary = repo.git(&[
        "cat-file",
        "blob",
        "refs/gatos/messages/old/summary:summary.json",
    ])?;
    let doc: serde_json::Value = serde_json::from_str(&summary)?;
    assert_eq!(doc["count"], json!(8));
    assert_eq!(doc["first_seq"], json!(1));
    assert_eq!(doc["last_seq"], json!(8));
    // The prune was audited.
    let audit = all(&g, &gatos::audit::topic())?;
    assert!(
        audit
            .iter()
            .any(|m| m.payload.get().contains("messages.prune.forced"))
    );
    repo.assert_fsck_strict()
}

#[test]
fn follow_sees_messages_from_another_handle() -> TestResult {
    let repo = TempRepo::new()?;
    let g = open(&repo)?;
    let t = topic("live");
    g.messages()
        .publish(&t, json!("old"), &PublishOptions::default())?;
    let mut f = g.messages().follow(&t, Cursor::End)?;
    let (n, _) = f.poll(10, |_| Ok(true))?;
    assert_eq!(n, 0);
    let other = open(&repo)?;
    let writer = std::thread::spawn(move || {
        other.messages().publish(
            &"live".parse().unwrap(),
            json!("new"),
            &PublishOptions::default(),
        )
    });
    assert!(f.wait(std::time::Duration::from_secs(20))?);
    writer.join().unwrap()?;
    let mut got = Vec::new();
    f.poll(10, |m| {
        got.push(m.payload.get().to_owned());
        Ok(true)
    })?;
    assert_eq!(got, vec![r#""new""#]);
    Ok(())
}

#[test]
fn ttl_retention_drops_only_segments_older_than_the_ttl() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, clock) = open_at(&repo, "2026-01-01T00:00:00Z")?;
    let t = topic("ttl");
    g.messages().configure(
        &t,
        &ConfigChange {
            max_messages: Some(2),
            ttl: Some(Some(3600)),
            ..Default::default()
        },
    )?;
    for i in 0..4 {
        g.messages()
            .publish(&t, json!(i), &PublishOptions::default())?;
    }
    clock.advance(gatos_types::Dur::from_secs(7200));
    for i in 4..7 {
        g.messages()
            .publish(&t, json!(i), &PublishOptions::default())?;
    }
    // Segments: [1,2] [3,4] old; [5,6] new; [7] live.
    let pruned = g.messages().prune(&t, &PruneOptions::default())?;
    assert_eq!((pruned.segments.len(), pruned.messages), (2, 4));
    let again = g.messages().prune(&t, &PruneOptions::default())?;
    assert!(again.segments.is_empty());
    // --older-than reaches further than the configured TTL.
    clock.advance(gatos_types::Dur::from_secs(60));
    let more = g.messages().prune(
        &t,
        &PruneOptions {
            older_than: Some(gatos_types::Dur::from_secs(30)),
            ..Default::default()
        },
    )?;
    assert_eq!(more.messages, 2);
    assert_eq!(
        all(&g, &t)?.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![7]
    );
    // Cursors into either summary still resolve.
    let page = g.messages().read(
        &t,
        &ReadOptions {
            since: Cursor::Seq(0),
            limit: 5,
        },
    )?;
    assert_eq!(
        page.gap,
        Some(gatos_types::wire::Gap {
            from_seq: 1,
            to_seq: 6
        })
    );
    repo.assert_fsck_strict()
}

#[test]
fn durable_mode_publishes_the_same_way() -> TestResult {
    let repo = TempRepo::new()?;
    repo.git(&["config", "gatos.fsync", "true"])?;
    let g = open(&repo)?;
    assert!(g.is_durable());
    let t = topic("durable");
    g.messages()
        .publish(&t, json!(1), &PublishOptions::default())?;
    let items = (0..40).map(|i| {
        Ok(BatchItem {
            payload: json!(i),
            headers: None,
        })
    });
    g.messages()
        .publish_batch(&t, items, &BatchOptions::default(), |_| Ok(()))?;
    assert_eq!(all(&g, &t)?.len(), 41);
    repo.assert_fsck_strict()
}

#[test]
fn prune_respects_consumer_groups_fetched_from_a_remote() -> TestResult {
    let repo = TempRepo::new()?;
    let (g, _clock) = open_at(&repo, "2026-01-01T00:00:00Z")?;
    let t = topic("old");
    g.messages().configure(
        &t,
        &ConfigChange {
            max_messages: Some(4),
            retain_messages: Some(Some(5)),
            ..Default::default()
        },
    )?;
    let rows: Vec<_> = (0..14)
        .map(|i| {
            g.messages()
                .publish(&t, json!(i), &PublishOptions::default())
        })
        .collect::<Result<_, _>>()?;
    // A group known only from a remote (its checkpoint fetched by sync), far behind.
    let group: gatos_types::Group = "far".parse()?;
    g.checkpoints().set(&group, &t, rows[1].ulid, false)?;
    let local = "refs/gatos/consumers/far/old";
    let oid = repo.git(&["rev-parse", local])?;
    repo.git(&[
        "update-ref",
        "refs/gatos-sync/origin/consumers/far/old",
        oid.trim(),
    ])?;
    repo.git(&["update-ref", "-d", local])?;
    let err = g
        .messages()
        .prune(&t, &PruneOptions::default())
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Forbidden);
    assert!(err.to_string().contains("'far'"), "{err}");
    let done = g.messages().prune(
        &t,
        &PruneOptions {
            force: true,
            ..Default::default()
        },
    )?;
    assert_eq!(done.groups_behind, vec![group]);
    repo.assert_fsck_strict()
}

/// A topic whose head is no message, or no commit at all (written with plain git), is named
/// in the listing as damaged, with why, also when a publish to it waits in its journal; the
/// other topics are listed as before, and the listing of rows alone leaves it out rather
/// than failing.
#[test]
fn a_listing_names_damaged_topics_and_lists_the_others() -> TestResult {
    let repo = TempRepo::new()?;
    let g = open(&repo)?;
    for t in ["a", "b", "c"] {
        g.messages()
            .publish(&topic(t), json!({ "t": t }), &PublishOptions::default())?;
    }
    g.flush_journals()?;
    // A publish to `b` still in its journal when its head is moved: the journal cannot
    // become commits on a head that is no message, and does not fail the listing either.
    g.messages().publish(
        &topic("b"),
        json!({ "t": "b2" }),
        &PublishOptions::default(),
    )?;
    crate::support::move_head_to_no_message(&repo, "b")?;
    crate::support::move_head_to_blob(&repo, "c")?;

    let listing = g.messages().listing()?;
    let names = |rows: &[gatos_types::wire::TopicRow]| -> Vec<String> {
        rows.iter().map(|r| r.topic.to_string()).collect()
    };
    assert_eq!(names(&listing.rows), ["a"]);
    let damaged: Vec<(String, ErrorCode)> = listing
        .damaged
        .iter()
        .map(|d| (d.topic.to_string(), d.code))
        .collect();
    assert_eq!(
        damaged,
        [
            ("b".to_owned(), ErrorCode::InvalidEnvelope),
            ("c".to_owned(), ErrorCode::InvalidEnvelope)
        ],
        "{:?}",
        listing.damaged
    );
    assert!(
        listing.damaged.iter().all(|d| !d.message.is_empty()),
        "{:?}",
        listing.damaged
    );
    assert_eq!(names(&g.messages().topics()?), ["a"]);
    Ok(())
}
