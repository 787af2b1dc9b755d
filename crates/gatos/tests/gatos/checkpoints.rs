use gatos::messages::PublishOptions;
use gatos_testutil::{TempRepo, TestResult};
use gatos_types::{ErrorCode, Group, Topic};
use serde_json::json;

use crate::support::open;

#[test]
fn checkpoints_move_forward_only_unless_forced() -> TestResult {
    let repo = TempRepo::new()?;
    let g = open(&repo)?;
    let t: Topic = "cp".parse()?;
    let group: Group = "workers".parse()?;
    let rows: Vec<_> = (0..5)
        .map(|i| {
            g.messages()
                .publish(&t, json!(i), &PublishOptions::default())
        })
        .collect::<Result<_, _>>()?;
    let fresh = g.checkpoints().get(&group, &t)?;
    assert_eq!((fresh.seq, fresh.lag, fresh.ulid), (0, 5, None));
    let at3 = g.checkpoints().set(&group, &t, rows[2].ulid, false)?;
    assert_eq!((at3.seq, at3.lag), (3, 2));
    assert_eq!(at3.commit, Some(rows[2].commit));
    let err = g
        .checkpoints()
        .set(&group, &t, rows[0].ulid, false)
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFastForward);
    assert!(
        matches!(
            err.inner().downcast_ref::<gatos::checkpoints::MoveError>(),
            Some(gatos::checkpoints::MoveError::Backwards { at: 3, to: 1, .. })
        ),
        "{err:?}"
    );
    assert!(err.to_string().ends_with("needs a forced move"), "{err}");
    let unknown: gatos_types::Ulid = "01ARZ3NDEKTSV4RRFFQ69G5FAV".parse()?;
    let err = g.checkpoints().set(&group, &t, unknown, false).unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    assert!(
        matches!(
            err.inner().downcast_ref::<gatos::checkpoints::MoveError>(),
            Some(gatos::checkpoints::MoveError::NotRetained { ulid, .. }) if *ulid == unknown
        ),
        "{err:?}"
    );
    let same = g.checkpoints().set(&group, &t, rows[2].ulid, false)?;
    assert_eq!(same.seq, 3);
    let back = g.checkpoints().set(&group, &t, rows[0].ulid, true)?;
    assert_eq!(back.seq, 1);
    let chain = repo.git(&["rev-list", "--count", "refs/gatos/consumers/workers/cp"])?;
    assert_eq!(chain.trim(), "2");
    let doc = repo.git(&[
        "cat-file",
        "blob",
        "refs/gatos/consumers/workers/cp:checkpoint.json",
    ])?;
    assert_eq!(
        doc,
        format!(
            r#"{{"commit":"{}","group":"workers","seq":1,"topic":"cp","ulid":"{}"}}"#,
            rows[0].commit, rows[0].ulid
        )
    );
    let err = g
        .checkpoints()
        .set(&group, &t, gatos_types::Ulid::from_parts(5, 5), false)
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    repo.assert_fsck_strict()
}

#[test]
fn consume_prints_then_advances() -> TestResult {
    let repo = TempRepo::new()?;
    let g = open(&repo)?;
    let t: Topic = "jobs".parse()?;
    let group: Group = "g".parse()?;
    for i in 0..5 {
        g.messages()
            .publish(&t, json!(i), &PublishOptions::default())?;
    }
    let mut seen = Vec::new();
    let c = g.checkpoints().consume(&group, &t, 3, |m| {
        seen.push(m.seq);
        Ok(true)
    })?;
    assert_eq!((c.count, c.checkpoint.seq, c.checkpoint.lag), (3, 3, 2));
    let c = g.checkpoints().consume(&group, &t, 3, |m| {
        seen.push(m.seq);
        Ok(true)
    })?;
    assert_eq!((c.count, c.checkpoint.seq), (2, 5));
    let c = g.checkpoints().consume(&group, &t, 3, |_| Ok(true))?;
    assert_eq!(c.count, 0);
    assert_eq!(seen, vec![1, 2, 3, 4, 5]);
    // A failing consumer callback leaves the checkpoint where it was (at-least-once).
    g.messages()
        .publish(&t, json!(6), &PublishOptions::default())?;
    let err = g
        .checkpoints()
        .consume(&group, &t, 3, |_| {
            Err(gatos::Error::new(ErrorCode::Unavailable, "stdout closed"))
        })
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Unavailable);
    assert_eq!(g.checkpoints().get(&group, &t)?.seq, 5);
    // Every message handed over but the delivery (the flush) failing: still not consumed.
    let mut handed = 0;
    let err = g
        .checkpoints()
        .consume_delivered(&group, &t, 3, |step| match step {
            gatos::checkpoints::Delivery::Message(_) => {
                handed += 1;
                Ok(true)
            }
            gatos::checkpoints::Delivery::End => {
                Err(gatos::Error::new(ErrorCode::Unavailable, "disk full"))
            }
        })
        .unwrap_err();
    assert_eq!((handed, err.code()), (1, ErrorCode::Unavailable));
    assert_eq!(g.checkpoints().get(&group, &t)?.seq, 5);
    repo.assert_fsck_strict()
}

#[test]
fn ack_moves_the_checkpoint_forward_only_and_only_to_a_message_of_the_topic() -> TestResult {
    let repo = TempRepo::new()?;
    let g = open(&repo)?;
    let t: Topic = "orders".parse()?;
    let other: Topic = "other".parse()?;
    let group: Group = "billing".parse()?;
    let rows: Vec<_> = (0..5)
        .map(|i| {
            g.messages()
                .publish(&t, json!(i), &PublishOptions::default())
        })
        .collect::<Result<_, _>>()?;
    let elsewhere = g
        .messages()
        .publish(&other, json!("x"), &PublishOptions::default())?;
    let ack = g.checkpoints().ack(&group, &t, rows[2].ulid)?;
    assert!(ack.moved);
    assert_eq!((ack.ulid, ack.seq), (rows[2].ulid, 3));
    assert_eq!((ack.checkpoint.seq, ack.checkpoint.lag), (3, 2));
    assert_eq!(ack.checkpoint.commit, Some(rows[2].commit));
    // Backwards, or where it already is: a no-op that says so.
    for earlier in [0, 2] {
        let ack = g.checkpoints().ack(&group, &t, rows[earlier].ulid)?;
        assert!(!ack.moved);
        assert_eq!(ack.seq, earlier as u64 + 1);
        assert_eq!(ack.checkpoint.seq, 3);
    }
    let chain = || repo.git(&["rev-list", "--count", "refs/gatos/consumers/billing/orders"]);
    assert_eq!(chain()?.trim(), "1", "no-op acks write nothing");
    // Not a message of the topic: NotFound, and nothing changes.
    for stranger in [gatos_types::Ulid::from_parts(5, 5), elsewhere.ulid] {
        let err = g.checkpoints().ack(&group, &t, stranger).unwrap_err();
        assert_eq!(err.code(), ErrorCode::NotFound);
    }
    let fresh: Group = "fresh".parse()?;
    let err = g.checkpoints().ack(&fresh, &t, elsewhere.ulid).unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    assert_eq!(repo.rev_parse("refs/gatos/consumers/fresh/orders")?, None);
    assert_eq!(chain()?.trim(), "1");
    assert_eq!(g.checkpoints().get(&group, &t)?.seq, 3);
    let ack = g.checkpoints().ack(&group, &t, rows[4].ulid)?;
    assert!(ack.moved);
    assert_eq!((ack.checkpoint.seq, ack.checkpoint.lag), (5, 0));
    // The outcome is a plain serde type (what a service layer returns).
    let back: gatos::checkpoints::AckOutcome = serde_json::from_value(serde_json::to_value(&ack)?)?;
    assert_eq!(back, ack);
    repo.assert_fsck_strict()
}

#[test]
fn racing_acks_end_at_the_greater_message() -> TestResult {
    let repo = TempRepo::new()?;
    let g = open(&repo)?;
    let t: Topic = "orders".parse()?;
    let rows: Vec<_> = (0..6)
        .map(|i| {
            g.messages()
                .publish(&t, json!(i), &PublishOptions::default())
        })
        .collect::<Result<_, _>>()?;
    for round in 0..8 {
        let group: Group = format!("g{round}").parse()?;
        // Alternate which of the two starts first.
        let (a, b) = if round % 2 == 0 { (1, 4) } else { (4, 1) };
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let racers: Vec<_> = [a, b]
            .into_iter()
            .map(|i| {
                let (path, ulid, group, t) = (
                    repo.path().to_owned(),
                    rows[i].ulid,
                    group.clone(),
                    t.clone(),
                );
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let g = gatos::Gatos::open(&path, gatos::OpenOptions::default())?;
                    barrier.wait();
                    g.checkpoints().ack(&group, &t, ulid)
                })
            })
            .collect();
        for r in racers {
            r.join().map_err(|_| "an ack thread panicked")??;
        }
        let cp = g.checkpoints().get(&group, &t)?;
        assert_eq!((cp.seq, cp.ulid), (5, Some(rows[4].ulid)), "round {round}");
    }
    repo.assert_fsck_strict()
}

#[test]
fn a_manual_ack_consumer_delivers_without_moving_the_checkpoint_and_waits_for_acks() -> TestResult {
    use gatos::checkpoints::{AckMode, Delivery, FollowOptions};
    use std::time::Duration;
    let repo = TempRepo::new()?;
    let g = open(&repo)?;
    let t: Topic = "orders".parse()?;
    let group: Group = "billing".parse()?;
    let rows: Vec<_> = (0..6)
        .map(|i| {
            g.messages()
                .publish(&t, json!(i), &PublishOptions::default())
        })
        .collect::<Result<_, _>>()?;
    let opts = FollowOptions {
        ack: AckMode::Manual,
        max_unacked: 3,
    };
    let mut consumer = g.checkpoints().follow(&group, &t, opts)?;
    let mut seen = Vec::new();
    let mut page = |c: &mut gatos::checkpoints::Consumer| {
        c.next_page(2, |step| {
            if let Delivery::Message(m) = step {
                seen.push(m.seq);
            }
            Ok(true)
        })
    };
    let p = page(&mut consumer)?;
    assert_eq!(
        (p.count, p.unacked, p.blocked, p.checkpoint.seq),
        (2, 2, false, 0)
    );
    // The window has room for one more.
    let p = page(&mut consumer)?;
    assert_eq!((p.count, p.unacked, p.checkpoint.seq), (1, 3, 0));
    let p = page(&mut consumer)?;
    assert_eq!((p.count, p.unacked, p.blocked), (0, 3, true));
    assert!(
        !consumer.wait(Duration::from_millis(100))?,
        "nothing moves the checkpoint"
    );
    assert_eq!(repo.rev_parse("refs/gatos/consumers/billing/orders")?, None);
    // An ack (from another handle, as from another process) frees room.
    let other = open(&repo)?;
    other.checkpoints().ack(&group, &t, rows[1].ulid)?;
    assert!(consumer.wait(Duration::from_secs(30))?, "the ack is seen");
    let p = page(&mut consumer)?;
    assert_eq!((p.count, p.unacked, p.checkpoint.seq), (2, 3, 2));
    assert_eq!(seen, vec![1, 2, 3, 4, 5]);
    assert_eq!(consumer.position(), (5, Some(rows[4].ulid)));
    // A fresh manual consumer starts again at the checkpoint: at-least-once.
    let mut again = g.checkpoints().follow(&group, &t, opts)?;
    let mut first = None;
    again.next_page(1, |step| {
        if let Delivery::Message(m) = step {
            first = Some(m.seq);
        }
        Ok(true)
    })?;
    assert_eq!(first, Some(3));
    assert_eq!(g.checkpoints().get(&group, &t)?.seq, 2);
    repo.assert_fsck_strict()
}

#[test]
fn an_auto_ack_consumer_waits_on_an_empty_topic_and_advances_after_each_delivered_page()
-> TestResult {
    use gatos::checkpoints::{Delivery, FollowOptions};
    use std::time::Duration;
    let repo = TempRepo::new()?;
    let g = open(&repo)?;
    let t: Topic = "later".parse()?;
    let group: Group = "g".parse()?;
    let mut consumer = g
        .checkpoints()
        .follow(&group, &t, FollowOptions::default())?;
    let p = consumer.next_page(10, |_| Ok(true))?;
    assert_eq!((p.count, p.checkpoint.seq), (0, 0));
    let other = open(&repo)?;
    let sent = other
        .messages()
        .publish(&t, json!("first"), &PublishOptions::default())?;
    assert!(
        consumer.wait(Duration::from_secs(30))?,
        "the publish is seen"
    );
    let p = consumer.next_page(10, |_| Ok(true))?;
    assert_eq!(
        (p.count, p.checkpoint.seq, p.checkpoint.ulid),
        (1, 1, Some(sent.ulid))
    );
    // A page whose delivery fails (the flush) leaves the checkpoint.
    other
        .messages()
        .publish(&t, json!("second"), &PublishOptions::default())?;
    let err = consumer
        .next_page(10, |step| match step {
            Delivery::Message(_) => Ok(true),
            Delivery::End => Err(gatos::Error::new(ErrorCode::Unavailable, "closed")),
        })
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Unavailable);
    assert_eq!(g.checkpoints().get(&group, &t)?.seq, 1);
    // Auto mode resumes at the checkpoint, so the failed page comes again.
    let mut got = Vec::new();
    let p = consumer.next_page(10, |step| {
        if let Delivery::Message(m) = step {
            got.push(m.seq);
        }
        Ok(true)
    })?;
    assert_eq!((got, p.checkpoint.seq), (vec![2], 2));
    assert_eq!(
        g.checkpoints()
            .follow(
                &group,
                &t,
                FollowOptions {
                    max_unacked: 0,
                    ..FollowOptions::default()
                }
            )
            .unwrap_err()
            .code(),
        ErrorCode::InvalidInput
    );
    repo.assert_fsck_strict()
}

#[test]
fn list_gives_every_checkpoint_with_its_lag_by_group_then_topic() -> TestResult {
    let repo = TempRepo::new()?;
    let g = open(&repo)?;
    let (a, b): (Topic, Topic) = ("list.a".parse()?, "list.b".parse()?);
    let (early, late): (Group, Group) = ("early".parse()?, "late".parse()?);
    let mut rows = Vec::new();
    for i in 0..4 {
        rows.push(
            g.messages()
                .publish(&a, json!(i), &PublishOptions::default())?,
        );
        g.messages()
            .publish(&b, json!(i), &PublishOptions::default())?;
    }
    assert!(g.checkpoints().list(None, None)?.is_empty());
    g.checkpoints().set(&late, &a, rows[3].ulid, false)?;
    g.checkpoints().set(&early, &a, rows[1].ulid, false)?;
    g.checkpoints().consume(&early, &b, 1, |_| Ok(true))?;
    let all = g.checkpoints().list(None, None)?;
    let seen: Vec<(String, String, u64, u64)> = all
        .iter()
        .map(|c| (c.group.to_string(), c.topic.to_string(), c.seq, c.lag))
        .collect();
    assert_eq!(
        seen,
        [
            ("early".into(), "list.a".into(), 2, 2),
            ("early".into(), "list.b".into(), 1, 3),
            ("late".into(), "list.a".into(), 4, 0),
        ]
    );
    assert_eq!(all[0], g.checkpoints().get(&early, &a)?);
    let on_a = g.checkpoints().list(Some(&a), None)?;
    assert_eq!(on_a.len(), 2);
    assert!(on_a.iter().all(|c| c.topic == a));
    let early_on_b = g.checkpoints().list(Some(&b), Some(&early))?;
    assert_eq!(early_on_b.len(), 1);
    assert_eq!(early_on_b[0].seq, 1);
    let nobody: Group = "nobody".parse()?;
    assert!(g.checkpoints().list(None, Some(&nobody))?.is_empty());
    // A checkpoint whose document is not one is left out; the others are listed.
    let head = repo.git(&["rev-parse", "refs/gatos/messages/list.a/head"])?;
    repo.git(&[
        "update-ref",
        "refs/gatos/consumers/broken/list.a",
        head.trim(),
    ])?;
    assert_eq!(g.checkpoints().list(Some(&a), None)?.len(), 2);
    Ok(())
}

/// A checkpoint whose topic does not read (its head moved outside gatos to a commit that
/// is no message, or to a blob) cannot tell its lag, and one whose document is not a
/// checkpoint cannot tell its place: a listing names each with its code and lists the
/// others (ADR 0047), also when a publish to the damaged topic waits in its journal; the
/// listing of rows alone leaves them out instead of failing.
#[test]
fn a_listing_names_checkpoints_that_do_not_read_and_lists_the_others() -> TestResult {
    let repo = TempRepo::new()?;
    let g = open(&repo)?;
    let group: Group = "readers".parse()?;
    for t in ["cp.a", "cp.b", "cp.c"] {
        let t: Topic = t.parse()?;
        let row =
            g.messages()
                .publish(&t, json!({ "t": t.as_str() }), &PublishOptions::default())?;
        g.checkpoints().set(&group, &t, row.ulid, false)?;
    }
    g.flush_journals()?;
    // A publish to `cp.b` still in its journal when its head is moved.
    g.messages().publish(
        &"cp.b".parse()?,
        json!({ "t": "b2" }),
        &PublishOptions::default(),
    )?;
    crate::support::move_head_to_no_message(&repo, "cp.b")?;
    crate::support::move_head_to_blob(&repo, "cp.c")?;
    // Another group's checkpoint that is no checkpoint (a message commit).
    let a_head = repo.git(&["rev-parse", "refs/gatos/messages/cp.a/head"])?;
    repo.git(&[
        "update-ref",
        "refs/gatos/consumers/broken/cp.a",
        a_head.trim(),
    ])?;

    let listing = g.checkpoints().listing(None, None)?;
    let rows: Vec<(String, String, u64)> = listing
        .rows
        .iter()
        .map(|c| (c.group.to_string(), c.topic.to_string(), c.lag))
        .collect();
    assert_eq!(rows, [("readers".to_owned(), "cp.a".to_owned(), 0)]);
    let damaged: Vec<(String, String, ErrorCode)> = listing
        .damaged
        .iter()
        .map(|d| (d.group.to_string(), d.topic.to_string(), d.code))
        .collect();
    assert_eq!(
        damaged,
        [
            (
                "broken".to_owned(),
                "cp.a".to_owned(),
                ErrorCode::InvalidEnvelope
            ),
            (
                "readers".to_owned(),
                "cp.b".to_owned(),
                ErrorCode::InvalidEnvelope
            ),
            (
                "readers".to_owned(),
                "cp.c".to_owned(),
                ErrorCode::InvalidEnvelope
            ),
        ],
        "{:?}",
        listing.damaged
    );
    assert!(listing.damaged.iter().all(|d| !d.message.is_empty()));
    assert_eq!(g.checkpoints().list(None, None)?, listing.rows);
    let only_b = g.checkpoints().listing(Some(&"cp.b".parse()?), None)?;
    assert!(only_b.rows.is_empty());
    assert_eq!(only_b.damaged.len(), 1);
    Ok(())
}
