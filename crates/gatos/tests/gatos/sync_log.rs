//! The local log of rejected refs as `sync.rejections` reads it (issue #19): newest first,
//! bounded, and garbled lines skipped with a count, never an error.

use gatos::sync::validate::{MAX_REJECTION_LOG_READ, recent_rejections, rejected_log_path};
use gatos_testutil::{TempRepo, TestResult};

use crate::support::open;

fn line(i: usize, remote: &str) -> String {
    serde_json::json!({
        "at": format!("2026-12-05T01:00:{:02}Z", i % 60),
        "remote": remote,
        "ref": format!("refs/gatos/jobs/J{i}/result"),
        "remote_value": "0123456789012345678901234567890123456789",
        "code": "SignatureInvalid",
        "reason": format!("reason {i}"),
    })
    .to_string()
}

#[test]
fn rejections_come_newest_first_bounded_and_garbled_lines_are_skipped() -> TestResult {
    let repo = TempRepo::new()?;
    let g = open(&repo)?;
    // No log yet: nothing, no error.
    let none = recent_rejections(&g, None, 50)?;
    assert!(none.rejections.is_empty() && none.skipped == 0 && none.more == 0);
    let path = rejected_log_path(&g);
    std::fs::create_dir_all(path.parent().expect("a parent"))?;
    let mut text = String::new();
    for i in 0..60 {
        text.push_str(&line(i, if i % 2 == 0 { "hub" } else { "other" }));
        text.push('\n');
        if i == 30 {
            text.push_str("not json at all\n");
            text.push_str("{\"at\":\"yesterday\",\"ref\":\"<script>\"}\n");
            text.push_str("{\"at\":\"2026-12-05T01:00:00Z\",\"remote\":\"hub\",\"ref\":\"x\",\"remote_value\":\"zz\",\"code\":\"SignatureInvalid\",\"reason\":\"\"}\n");
            text.push_str(&format!("{}\n", "x".repeat(70 << 10)));
            text.push_str("\u{0}\u{1}\u{fffd}\n");
        }
    }
    std::fs::write(&path, text)?;
    let all = recent_rejections(&g, None, 50)?;
    assert_eq!(all.rejections.len(), 50);
    assert_eq!(all.more, 10);
    assert_eq!(all.skipped, 5);
    assert_eq!(all.rejections[0].name, "refs/gatos/jobs/J59/result");
    assert_eq!(all.rejections[1].name, "refs/gatos/jobs/J58/result");
    assert_eq!(all.rejections[0].remote, "other");
    assert_eq!(all.rejections[0].reason, "reason 59");
    let hub = recent_rejections(&g, Some("hub"), 5)?;
    let names: Vec<&str> = hub.rejections.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "refs/gatos/jobs/J58/result",
            "refs/gatos/jobs/J56/result",
            "refs/gatos/jobs/J54/result",
            "refs/gatos/jobs/J52/result",
            "refs/gatos/jobs/J50/result"
        ]
    );
    assert_eq!(hub.more, 25);
    // A log grown past the read window is read only in its newest part: the line cut by
    // the window is counted as skipped.
    let big = format!(
        "{}\n{}\n",
        "y".repeat(MAX_REJECTION_LOG_READ as usize),
        line(7, "hub")
    );
    std::fs::write(&path, big)?;
    let tail = recent_rejections(&g, None, 50)?;
    assert_eq!(tail.rejections.len(), 1);
    assert_eq!(tail.skipped, 1);
    Ok(())
}

/// A sync that fails after it has checked the hub's refs still logs what it rejected: the
/// push to a hub that cannot be written fails the sync, and the rejection stands in the log.
#[test]
fn a_sync_that_fails_after_its_checks_logs_what_it_rejected() -> TestResult {
    let hub = TempRepo::bare()?;
    let repo = TempRepo::new()?;
    repo.git(&["remote", "add", "hub", &hub.path().to_string_lossy()])?;
    // Fetched from the hub, pushed nowhere.
    let nowhere = repo.path().join("no-such-hub.git");
    repo.git(&[
        "remote",
        "set-url",
        "--push",
        "hub",
        &nowhere.to_string_lossy(),
    ])?;
    let g = open(&repo)?;
    g.keys().init(false)?;
    let empty = hub.git(&["mktree"])?;
    let junk = hub.git(&["commit-tree", empty.trim(), "-m", "junk"])?;
    let junk_ref = "refs/gatos/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV/job";
    hub.git(&["update-ref", junk_ref, junk.trim()])?;
    // Something to push, so that the push is tried.
    g.messages().publish(
        &"t".parse()?,
        serde_json::json!({"n": 1}),
        &gatos::messages::PublishOptions::default(),
    )?;
    let err = g
        .sync(&gatos::sync::SyncOptions {
            remote: Some("hub".into()),
            ..Default::default()
        })
        .expect_err("the push cannot land");
    let logged = recent_rejections(&g, Some("hub"), 10)?;
    let names: Vec<&str> = logged.rejections.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, [junk_ref], "after {err}");
    assert!(!nowhere.exists());
    Ok(())
}
