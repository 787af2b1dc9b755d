//! The message plane across processes: races, crashes, followers, maintenance.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use gatos_testutil::{TempRepo, TestResult, wait_for};

use crate::support::{gatos_cmd, gatos_ok, gatos_stdin, json_lines};

/// Reads the whole topic with git alone: each segment from its tip back to its root, then
/// on to the `Prev-Segment` the root names. Returns (Seq, Message-Id) oldest first.
fn seqs_and_ulids_by_git(repo: &TempRepo, topic: &str) -> TestResult<Vec<(u64, String)>> {
    let mut out: Vec<(u64, String)> = Vec::new();
    let mut tip = Some(format!("refs/gatos/messages/{topic}/head"));
    while let Some(t) = tip.take() {
        let log = repo.git(&[
            "log",
            "--format=%(trailers:key=Seq,valueonly,separator=)|%(trailers:key=Message-Id,valueonly,separator=)|%(trailers:key=Prev-Segment,valueonly,separator=)",
            &t,
        ])?;
        for l in log.lines().filter(|l| !l.is_empty()) {
            let mut parts = l.split('|');
            let seq = parts.next().unwrap().trim().parse()?;
            let ulid = parts.next().unwrap().trim().to_owned();
            let prev = parts.next().unwrap_or("").trim();
            out.push((seq, ulid));
            if !prev.is_empty() {
                tip = Some(prev.to_owned());
            }
        }
    }
    out.reverse();
    Ok(out)
}

#[test]
fn racing_publisher_processes_lose_nothing_and_leave_no_gaps() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    let procs = 4;
    let per = 40;
    let mut children = Vec::new();
    for p in 0..procs {
        let script = format!(
            "for i in $(seq 1 {per}); do \"$GG\" messages publish race --data \"{{\\\"p\\\":{p},\\\"i\\\":$i}}\" --json || exit 1; done"
        );
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", &script])
            .current_dir(repo.path())
            .env("GG", crate::support::git_gatos_bin())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        gatos_testutil::hermetic(&mut cmd, &repo.home());
        children.push(cmd.spawn()?);
    }
    let mut acked = HashSet::new();
    for c in children {
        let out = c.wait_with_output()?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for row in json_lines(&String::from_utf8(out.stdout)?)? {
            acked.insert(row["ulid"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(acked.len(), procs * per);
    let chain = seqs_and_ulids_by_git(&repo, "race")?;
    assert_eq!(
        chain.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (1..=(procs * per) as u64).collect::<Vec<_>>()
    );
    let ulids: HashSet<String> = chain.into_iter().map(|(_, u)| u).collect();
    assert_eq!(ulids, acked);
    repo.assert_fsck_strict()
}

#[test]
fn a_publisher_killed_mid_write_loses_no_acknowledged_message_and_blocks_nobody() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    gatos_ok(&repo, &["messages", "config", "k", "--max-messages", "7"])?;
    let mut acked: Vec<String> = Vec::new();
    for round in 0..6 {
        let mut child = gatos_cmd(
            &repo,
            &[
                "messages", "publish", "k", "--batch", "-", "--chunk", "3", "--json",
            ],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
        let mut stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let feeder = std::thread::spawn(move || {
            use std::io::Write;
            for i in 0..100_000 {
                if writeln!(stdin, "{{\"round\":{round},\"i\":{i}}}").is_err() {
                    break;
                }
            }
        });
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let kill_after = 5 + round * 7;
        let mut seen = 0;
        while seen < kill_after && reader.read_line(&mut line)? > 0 {
            let row: serde_json::Value = serde_json::from_str(&line)?;
            acked.push(row["ulid"].as_str().unwrap().to_owned());
            line.clear();
            seen += 1;
        }
        child.kill()?; // SIGKILL, mid-batch
        // Rows printed before the kill was noticed are acknowledged too.
        while reader.read_line(&mut line)? > 0 {
            if let Ok(row) = serde_json::from_str::<serde_json::Value>(&line) {
                let ulid = row["ulid"]
                    .as_str()
                    .ok_or_else(|| format!("not a row: {line}"))?;
                acked.push(ulid.to_owned());
            }
            line.clear();
        }
        child.wait()?;
        let _ = feeder.join();
        // The next writer must not be blocked by what the dead one left behind.
        let started = Instant::now();
        let row = gatos_ok(
            &repo,
            &["messages", "publish", "k", "--data", "\"after\"", "--json"],
        )?;
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "publish after a kill took {:?}",
            started.elapsed()
        );
        acked.push(json_lines(&row)?[0]["ulid"].as_str().unwrap().to_owned());
    }
    let chain = seqs_and_ulids_by_git(&repo, "k")?;
    let seqs: Vec<u64> = chain.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "Seq has no gaps"
    );
    let stored: HashSet<String> = chain.into_iter().map(|(_, u)| u).collect();
    for u in &acked {
        assert!(stored.contains(u), "acknowledged message {u} was lost");
    }
    let read = json_lines(&gatos_ok(&repo, &["messages", "read", "k", "--json"])?)?;
    assert_eq!(read.len(), stored.len());
    repo.assert_fsck_strict()
}

#[test]
fn follow_prints_messages_written_by_other_processes() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["messages", "publish", "f", "--data", "\"before\""])?;
    let mut child = gatos_cmd(&repo, &["messages", "read", "f", "--follow", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The follower starts at the end whenever it gets going: publish until it prints.
    let deadline = Instant::now() + Duration::from_secs(60);
    let line = loop {
        gatos_ok(&repo, &["messages", "publish", "f", "--data", "\"after\""])?;
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(line) => break line?,
            Err(_) if Instant::now() < deadline => continue,
            Err(e) => return Err(e.into()),
        }
    };
    let row: serde_json::Value = serde_json::from_str(&line)?;
    assert_eq!(row["payload"], "after");
    assert!(
        row["seq"].as_u64().unwrap() >= 2,
        "the old message is not replayed"
    );
    child.kill()?;
    child.wait()?;
    Ok(())
}

#[test]
fn maintenance_compacts_without_losing_anything() -> TestResult {
    let repo = TempRepo::new()?;
    for i in 0..30 {
        gatos_ok(
            &repo,
            &["messages", "publish", "m", "--data", &i.to_string()],
        )?;
    }
    let before = json_lines(&gatos_ok(&repo, &["messages", "read", "m", "--json"])?)?;
    let report = json_lines(&gatos_ok(&repo, &["maintenance", "--json"])?)?;
    assert_eq!(report[0]["ran"], true);
    let count = repo.git(&["count-objects", "-v"])?;
    assert!(
        count.contains("count: 0\n"),
        "loose objects remain: {count}"
    );
    assert!(repo.git_dir().join("packed-refs").exists());
    let after = json_lines(&gatos_ok(&repo, &["messages", "read", "m", "--json"])?)?;
    assert_eq!(before, after);
    gatos_ok(&repo, &["messages", "publish", "m", "--data", "30"])?;
    repo.assert_fsck_strict()
}

#[test]
fn automatic_maintenance_starts_on_its_own() -> TestResult {
    let repo = TempRepo::new()?;
    repo.git(&["config", "gatos.maintenance.looseObjects", "1"])?;
    let lines: String = (0..3).map(|i| format!("{i}\n")).collect();
    // Loose objects from single publishes cross the (tiny) threshold.
    for i in 0..70 {
        gatos_ok(
            &repo,
            &["messages", "publish", "auto", "--data", &i.to_string()],
        )?;
    }
    let _ = gatos_stdin(
        &repo,
        &["messages", "publish", "auto", "--batch", "-"],
        lines.as_bytes(),
    )?;
    wait_for(
        "a multi-pack index written by background maintenance",
        Duration::from_secs(60),
        || {
            repo.git_dir()
                .join("objects/pack/multi-pack-index")
                .exists()
        },
    )?;
    wait_for("maintenance to finish", Duration::from_secs(60), || {
        !repo
            .git_dir()
            .join("objects/pack/multi-pack-index.lock")
            .exists()
            && repo.git_dir().join("gatos/locks/maintenance").exists()
            && std::fs::File::open(repo.git_dir().join("gatos/locks/maintenance"))
                .map(|f| f.try_lock().is_ok())
                .unwrap_or(false)
    })?;
    assert_eq!(
        json_lines(&gatos_ok(&repo, &["messages", "read", "auto", "--json"])?)?.len(),
        73
    );
    repo.assert_fsck_strict()
}

#[test]
fn the_gatos_topics_are_written_by_gatos_alone() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    for topic in ["gatos.audit", "gatos.jobs", "gatos.anything"] {
        let out = gatos_cmd(
            &repo,
            &[
                "messages",
                "publish",
                topic,
                "--data",
                r#"{"action":"keys.trust"}"#,
            ],
        )
        .output()?;
        assert_eq!(out.status.code(), Some(1), "{topic}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("error[Forbidden]"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let batch = gatos_stdin(
            &repo,
            &["messages", "publish", topic, "--batch", "-"],
            b"1\n",
        )?;
        assert_eq!(batch.status.code(), Some(1), "{topic} --batch");
    }
    // gatos still writes them: a cancel is audited.
    let id = json_lines(&gatos_ok(
        &repo,
        &["jobs", "enqueue", "--json", "--", "true"],
    )?)?[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    gatos_ok(&repo, &["jobs", "cancel", &id])?;
    let audit = json_lines(&gatos_ok(&repo, &["audit", "--json"])?)?;
    assert!(audit.iter().any(|r| r["action"] == "jobs.cancel"));
    assert!(
        !audit
            .iter()
            .any(|r| r["action"] == "keys.trust" && r["key"].is_null())
    );
    Ok(())
}

/// `messages consume` and `messages read --limit` end a page at the page byte cap, as an
/// RPC page does (ADR 0023); consume's checkpoint advances to the page's last message.
#[test]
fn cli_pages_end_at_the_page_byte_cap() -> TestResult {
    let repo = TempRepo::new()?;
    let pad = "p".repeat(100 * 1024);
    let batch: String = (0..5)
        .map(|i| format!("{{\"i\":{i},\"pad\":\"{pad}\"}}\n"))
        .collect();
    let f = repo.root().join("big.jsonl");
    std::fs::write(&f, batch)?;
    gatos_ok(
        &repo,
        &[
            "messages",
            "publish",
            "big",
            "--batch",
            &f.to_string_lossy(),
        ],
    )?;
    // 100 KiB each: the third crosses 250,000 bytes and ends the page.
    let out = gatos_ok(
        &repo,
        &[
            "messages",
            "read",
            "big",
            "--limit",
            "10",
            "--max-page-bytes",
            "250000",
            "--json",
        ],
    )?;
    assert_eq!(json_lines(&out)?.len(), 3);
    // Without --limit, read streams everything.
    let out = gatos_ok(&repo, &["messages", "read", "big", "--json"])?;
    assert_eq!(json_lines(&out)?.len(), 5);
    let page = |repo: &TempRepo| -> TestResult<Vec<serde_json::Value>> {
        let out = gatos_ok(
            repo,
            &[
                "messages",
                "consume",
                "g",
                "big",
                "--limit",
                "10",
                "--max-page-bytes",
                "250000",
                "--json",
            ],
        )?;
        json_lines(&out)
    };
    let first = page(&repo)?;
    assert_eq!(first.len(), 3);
    let second = page(&repo)?;
    assert_eq!(
        second.iter().map(|m| m["seq"].clone()).collect::<Vec<_>>(),
        vec![serde_json::json!(4), serde_json::json!(5)]
    );
    repo.assert_fsck_strict()
}

#[test]
fn consume_moves_the_checkpoint_only_after_the_page_reached_its_reader() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    for i in 0..10 {
        gatos_ok(
            &repo,
            &[
                "messages",
                "publish",
                "orders",
                "--data",
                &format!("{{\"n\":{i}}}"),
            ],
        )?;
    }
    // A page that cannot be written (a full disk) is not consumed: exit non-zero, and
    // the checkpoint stays where it was.
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full")?;
    let out = gatos_cmd(
        &repo,
        &["messages", "consume", "billing", "orders", "--json"],
    )
    .stdout(Stdio::from(full))
    .stderr(Stdio::piped())
    .output()?;
    assert!(!out.status.success(), "a failed delivery is a failure");
    assert!(
        repo.rev_parse("refs/gatos/consumers/billing/orders")?
            .is_none(),
        "the checkpoint did not move"
    );
    // Delivered for real the next time: all ten, once.
    let got = json_lines(&gatos_ok(
        &repo,
        &["messages", "consume", "billing", "orders", "--json"],
    )?)?;
    let ns: Vec<u64> = got
        .iter()
        .filter_map(|m| m["payload"]["n"].as_u64())
        .collect();
    assert_eq!(ns, (0..10).collect::<Vec<u64>>());
    let again = gatos_ok(
        &repo,
        &["messages", "consume", "billing", "orders", "--json"],
    )?;
    assert!(
        json_lines(&again)?
            .iter()
            .all(|m| m.get("payload").is_none()),
        "{again}"
    );
    repo.assert_fsck_strict()
}

#[test]
fn a_batch_whose_output_fails_says_what_landed() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    let lines: String = (0..2500).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    let batch = repo.root().join("batch.jsonl");
    std::fs::write(&batch, lines)?;
    // Rows are printed as each chunk lands; the output (a full disk) fails at the first
    // flush, after the first chunk of 1,000 is in the topic.
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full")?;
    let out = gatos_cmd(
        &repo,
        &[
            "messages",
            "publish",
            "orders",
            "--batch",
            &batch.to_string_lossy(),
        ],
    )
    .stdout(Stdio::from(full))
    .stderr(Stdio::piped())
    .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let read = json_lines(&gatos_ok(
        &repo,
        &["messages", "read", "orders", "--json", "--limit", "10000"],
    )?)?;
    let in_topic = read.iter().filter(|m| m.get("payload").is_some()).count();
    assert_eq!(in_topic, 1000, "one chunk landed");
    assert!(
        err.contains("1000 messages landed (through line 1000); re-send from line 1001"),
        "the error says what landed: {err}"
    );
    repo.assert_fsck_strict()
}

/// A read or consume of a topic this node has never seen is `NotFound` naming the closest
/// topics (exit 1, nothing written); with `--follow` it says it waits, then prints what
/// arrives; a topic whose messages were all pruned is still a topic (DESIGN §4).
#[test]
fn reading_a_topic_that_does_not_exist_says_so_and_suggests_the_closest() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    gatos_ok(&repo, &["messages", "publish", "ci.events", "--data", "{}"])?;
    let before = repo.git(&["for-each-ref", "refs/gatos/"])?;
    for args in [
        vec!["messages", "read", "ci.event", "--json"],
        vec!["messages", "consume", "g", "ci.evnts", "--json"],
        vec![
            "messages", "consume", "g", "ci.evnts", "--ack", "manual", "--json",
        ],
    ] {
        let out = gatos_cmd(&repo, &args).stdin(Stdio::null()).output()?;
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = &json_lines(&String::from_utf8(out.stdout)?)?[0]["error"];
        assert_eq!(err["code"], "NotFound", "{args:?}");
        assert_eq!(
            err["did_you_mean"],
            serde_json::json!(["ci.events"]),
            "{args:?}"
        );
        let stderr = String::from_utf8(out.stderr)?;
        assert!(stderr.contains("did you mean 'ci.events'?"), "{stderr}");
    }
    // Nothing close: no suggestion, still NotFound.
    let out = gatos_cmd(&repo, &["messages", "read", "zzzzzzzz"])
        .stdin(Stdio::null())
        .output()?;
    assert_eq!(out.status.code(), Some(1));
    assert!(!String::from_utf8(out.stderr)?.contains("did you mean"));
    assert_eq!(repo.git(&["for-each-ref", "refs/gatos/"])?, before);
    // With --follow it waits, says so, and prints the first message when it comes.
    let mut child = gatos_cmd(
        &repo,
        &["messages", "read", "later", "--follow", "--limit", "1"],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()?;
    let mut err = BufReader::new(child.stderr.take().ok_or("stderr")?);
    let mut line = String::new();
    err.read_line(&mut line)?;
    assert!(line.contains("waiting for its first message"), "{line}");
    gatos_ok(
        &repo,
        &["messages", "publish", "later", "--data", "{\"n\":1}"],
    )?;
    let out = child.wait_with_output()?;
    assert!(out.status.success());
    assert!(String::from_utf8(out.stdout)?.contains("{\"n\":1}"));
    // A topic pruned down to nothing is still known: an empty read, exit 0.
    gatos_ok(
        &repo,
        &[
            "messages",
            "prune",
            "ci.events",
            "--older-than",
            "0s",
            "--force",
        ],
    )?;
    let out = gatos_cmd(&repo, &["messages", "read", "ci.events"])
        .stdin(Stdio::null())
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
