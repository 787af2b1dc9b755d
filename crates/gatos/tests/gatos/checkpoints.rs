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
