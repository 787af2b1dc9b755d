//! Sync and doctor across nodes (ADR 0028, #16 point 6): job-plane commits name their
//! node (`Origin`), `doctor` republishes only this node's own events, a sync does not append
//! a message whose `msg_id` the hub already holds, and the sync summary says what it counts.

use super::*;
use crate::support::enqueue;

/// `git gatos doctor [--fix] --json` rows (doctor may exit 1 on errors; rows either way).
fn doctor_rows(node: &TempRepo, fix: bool) -> TestResult<Vec<Value>> {
    let mut args = vec!["doctor", "--json"];
    if fix {
        args.push("--fix");
    }
    let out = gatos(node, &args)?;
    Ok(json_lines(&String::from_utf8_lossy(&out.stdout))?
        .into_iter()
        .filter(|r| r.get("code").is_some())
        .collect())
}

/// The events on `gatos.jobs`: `(msg_id, job, event)`.
fn job_events(node: &TempRepo) -> TestResult<Vec<(String, String, String)>> {
    let out = gatos_ok(node, &["messages", "read", "gatos.jobs", "--json"])?;
    Ok(json_lines(&out)?
        .into_iter()
        .map(|m| {
            (
                m["headers"]["msg_id"].as_str().unwrap_or("").to_owned(),
                m["payload"]["job"].as_str().unwrap_or("").to_owned(),
                m["payload"]["event"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect())
}

fn node_id(node: &TempRepo) -> TestResult<String> {
    Ok(node.git(&["config", "gatos.node"])?.trim().to_owned())
}

#[test]
fn job_events_are_once_on_both_nodes_after_doctor_fix_and_sync() -> TestResult {
    let net = Net::new(2)?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    let ok = enqueue(a, &["--", "true"])?;
    let bad = enqueue(a, &["--max-attempts", "1", "--", "false"])?;
    net.sync(0)?;
    // A's worker lands its claims and results at the hub at once; their events stay on A
    // until A's next sync.
    let w = spawn_worker(a, &["--drain", "--id", "wa"])?.wait_with_output()?;
    assert!(w.status.success(), "{}", String::from_utf8_lossy(&w.stderr));
    net.sync(1)?;
    // B holds A's claims and results without their events: not B's to republish.
    let rows = doctor_rows(b, false)?;
    assert!(
        !rows.iter().any(|r| r["code"] == "event-missing"),
        "B reports A's actions: {rows:?}"
    );
    doctor_rows(b, true)?;
    doctor_rows(a, true)?;
    net.sync(0)?;
    net.sync(1)?;
    net.sync(0)?;
    let mut seen: Vec<BTreeSet<(String, String, String)>> = Vec::new();
    for node in [a, b] {
        let events = job_events(node)?;
        let ids: HashSet<&str> = events.iter().map(|(m, _, _)| m.as_str()).collect();
        assert_eq!(ids.len(), events.len(), "an event twice: {events:#?}");
        let kinds: BTreeSet<(&str, &str)> = events
            .iter()
            .map(|(_, j, e)| (j.as_str(), e.as_str()))
            .collect();
        for want in [
            (ok.as_str(), "enqueued"),
            (ok.as_str(), "claimed"),
            (ok.as_str(), "succeeded"),
            (bad.as_str(), "enqueued"),
            (bad.as_str(), "claimed"),
            (bad.as_str(), "failed"),
        ] {
            assert!(kinds.contains(&want), "{want:?} missing: {events:#?}");
        }
        seen.push(events.into_iter().collect());
        let rows = doctor_rows(node, false)?;
        assert!(
            !rows.iter().any(|r| r["code"] == "event-missing"),
            "{rows:?}"
        );
        node.assert_fsck_strict()?;
    }
    assert_eq!(seen[0], seen[1], "the nodes disagree on gatos.jobs");
    Ok(())
}

#[test]
fn a_message_whose_msg_id_the_hub_holds_is_not_appended_again_by_sync() -> TestResult {
    let net = Net::new(2)?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    let with_id = |node: &TempRepo, p: &str| -> TestResult {
        gatos_ok(
            node,
            &[
                "messages",
                "publish",
                "ci.events",
                "--msg-id",
                "build-42",
                "--data",
                &json!({ "p": p }).to_string(),
            ],
        )?;
        Ok(())
    };
    with_id(a, "a")?;
    publish(a, "ci.events", "a2")?;
    with_id(b, "b")?;
    publish(b, "ci.events", "b2")?;
    // B's group read B's copy before the sync: it goes back to the fork point and reads
    // A's copy (at-least-once: same msg_id, another ULID).
    assert_eq!(consume_all(b, "g", "ci.events")?, ["b", "b2"]);
    net.sync(0)?;
    let report = net.sync(1)?;
    let t = &report["topics"][0];
    assert_eq!(t["action"], "reappended", "{report}");
    assert_eq!(
        (t["received"].as_u64(), t["sent"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(t["duplicates"], 1, "{report}");
    net.sync(0)?;
    for node in [a, b] {
        let payloads: Vec<String> = read_all(node, "ci.events")?
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        assert_eq!(payloads, ["a", "a2", "b2"], "{}", node.path().display());
        node.assert_fsck_strict()?;
    }
    assert_eq!(consume_all(b, "g", "ci.events")?, ["a", "a2", "b2"]);
    Ok(())
}

#[test]
fn every_job_plane_commit_names_the_node_that_wrote_it() -> TestResult {
    let net = Net::new(1)?;
    let a = &net.nodes[0];
    let node = node_id(a)?;
    // Two attempts that each outlive a heartbeat (lease 1s: one every third of a second),
    // the first released for a retry, the second closed with a failed result.
    let failed = enqueue(
        a,
        &["--max-attempts", "2", "--", "sh", "-c", "sleep 1.2; exit 1"],
    )?;
    let out = gatos(a, &["worker", "--drain", "--lease", "1s", "--id", "w"])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    gatos_ok(a, &["jobs", "retry", &failed])?;
    let cancelled = enqueue(a, &["--queue", "nobody", "--", "true"])?;
    gatos_ok(a, &["jobs", "cancel", &cancelled])?;
    // Every commit reachable from a job ref, as plain git shows it.
    let log = a.git(&[
        "log",
        "--glob=refs/gatos/jobs",
        "--format=%H %(trailers:key=Gatos-Kind,valueonly,separator=) %(trailers:key=State,valueonly,separator=) %(trailers:key=Retry-Of,valueonly,separator=) %(trailers:key=Origin,valueonly,separator=)",
    ])?;
    let mut kinds = BTreeSet::new();
    for line in log.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let [commit, kind, state, retry_of, origin] = f.as_slice() else {
            return Err(format!("unexpected line {line:?}").into());
        };
        assert_eq!(
            *origin, node,
            "{commit} ({kind} {state}) has no Origin of this node"
        );
        kinds.insert(match (*kind, *state, *retry_of) {
            ("job", _, "") => "job".to_owned(),
            ("job", _, _) => "job retried".to_owned(),
            (k, "", _) => k.to_owned(),
            (k, s, _) => format!("{k} {s}"),
        });
    }
    let want: BTreeSet<String> = [
        "job",
        "job retried",
        "claim running",
        "claim heartbeat",
        "claim released",
        "claim closed",
        "result",
        "cancel",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(kinds, want, "{log}");
    a.assert_fsck_strict()
}

#[test]
fn a_job_commit_without_origin_stays_valid_and_is_of_unknown_origin() -> TestResult {
    let net = Net::new(2)?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    let id = enqueue(a, &["--", "true"])?;
    // The job commit as a gatos from before Origin wrote it: the same commit without the
    // trailer, made with plain git.
    let name = format!("refs/gatos/jobs/{id}/job");
    let old = a.rev_parse(&name)?.ok_or("no job ref")?;
    let raw = a.git(&["cat-file", "commit", &old])?;
    let stripped: String = raw
        .lines()
        .filter(|l| !l.starts_with("Origin: "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(stripped.len(), raw.len(), "{raw}");
    let mut child = a
        .git_cmd(&["hash-object", "-t", "commit", "-w", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .ok_or("stdin")?
        .write_all(stripped.as_bytes())?;
    let out = child.wait_with_output()?;
    assert!(out.status.success());
    let new = String::from_utf8(out.stdout)?.trim().to_owned();
    a.git(&["update-ref", &name, &new, &old])?;
    let origin = a.git(&["log", "-1", "--format=%(trailers:key=Origin)", &new])?;
    assert_eq!(origin.trim(), "", "{origin}");
    // Its enqueued event names the old commit: the new one has none, but its origin is
    // unknown, so it is not this node's to recover.
    let rows = doctor_rows(a, false)?;
    assert!(
        !rows.iter().any(|r| r["code"] == "event-missing"),
        "{rows:?}"
    );
    // It runs, replicates and verifies like any job.
    let w = gatos(a, &["worker", "--drain"])?;
    assert!(w.status.success(), "{}", String::from_utf8_lossy(&w.stderr));
    net.sync(0)?;
    let report = net.sync(1)?;
    assert_eq!(report["rejected_count"], 0, "{report}");
    for node in [a, b] {
        let show: Value =
            serde_json::from_str(gatos_ok(node, &["jobs", "show", &id, "--json"])?.trim())?;
        assert_eq!(show["state"], "succeeded", "{show}");
        let rows = doctor_rows(node, false)?;
        assert!(
            !rows.iter().any(|r| r["code"] == "event-missing"),
            "{rows:?}"
        );
        node.assert_fsck_strict()?;
    }
    Ok(())
}

#[test]
fn the_sync_summary_names_what_it_counts_and_quiet_prints_nothing() -> TestResult {
    let net = Net::new(2)?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    publish(a, "ci.events", "one")?;
    publish(a, "ci.events", "two")?;
    let out = gatos_ok(a, &["sync"])?;
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.contains(&"topic ci.events: sent 2 messages"), "{out}");
    let last = lines.last().copied().unwrap_or("");
    assert!(
        last.starts_with("synced with origin: 0 messages received, 2 sent; ")
            && last
                .contains(" pushed, 0 deleted here, 0 deleted there; 0 conflicts, 0 refs rejected")
            && (last.contains(" refs adopted, ") || last.contains(" ref adopted, ")),
        "{out}"
    );
    // -q: nothing on stdout or stderr, and the sync happened.
    let q = gatos(b, &["sync", "-q"])?;
    assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stderr));
    assert_eq!(String::from_utf8_lossy(&q.stdout), "");
    assert_eq!(String::from_utf8_lossy(&q.stderr), "");
    assert_eq!(read_all(b, "ci.events")?.len(), 2);
    let out = gatos_ok(b, &["sync"])?;
    assert!(
        out.trim_end()
            .ends_with("0 deleted there; 0 conflicts, 0 refs rejected")
            && out.contains(
                "synced with origin: 0 messages received, 0 sent; 0 refs adopted, 0 pushed"
            ),
        "{out}"
    );
    // -q still reports a failure, on stderr.
    b.git(&["remote", "add", "gone", "/nonexistent/hub.git"])?;
    let q = gatos(b, &["sync", "gone", "-q"])?;
    assert!(!q.status.success());
    assert_eq!(String::from_utf8_lossy(&q.stdout), "");
    assert!(
        String::from_utf8_lossy(&q.stderr).contains("error[Unavailable]"),
        "{}",
        String::from_utf8_lossy(&q.stderr)
    );
    Ok(())
}
