//! A hub that lies (ADR 0018): refs forged on a bare hub with plain git — `hash-object`,
//! `mktree`, `commit-tree`, `update-ref`, as anyone with push access could — then an
//! honest node syncs. After each attack the node still reads, exports, runs workers and
//! syncs; `git fsck --strict` is clean; `doctor` reports the rejection and nothing else new;
//! nothing the node had is lost, on the node or at the hub.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;

use gatos_types::Digest;

use super::*;

/// Writes a blob into a repository with plain git.
fn blob(repo: &TempRepo, data: &[u8]) -> TestResult<String> {
    let mut child = repo
        .git_cmd(&["hash-object", "-w", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    child.stdin.take().ok_or("stdin")?.write_all(data)?;
    let out = child.wait_with_output()?;
    assert!(out.status.success());
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// A tree of files, `dir/name` paths making subtrees.
fn tree(repo: &TempRepo, files: &[(&str, &[u8])]) -> TestResult<String> {
    let mut top: BTreeMap<String, Vec<(String, Vec<u8>)>> = BTreeMap::new();
    let mut lines = Vec::new();
    for (path, data) in files {
        match path.split_once('/') {
            Some((dir, rest)) => top
                .entry(dir.to_owned())
                .or_default()
                .push((rest.to_owned(), data.to_vec())),
            None => lines.push(format!("100644 blob {}\t{path}", blob(repo, data)?)),
        }
    }
    for (dir, inner) in top {
        let refs: Vec<(&str, &[u8])> = inner
            .iter()
            .map(|(p, d)| (p.as_str(), d.as_slice()))
            .collect();
        lines.push(format!("040000 tree {}\t{dir}", tree(repo, &refs)?));
    }
    let mut child = repo
        .git_cmd(&["mktree"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    child.stdin.take().ok_or("stdin")?.write_all(
        lines
            .iter()
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            .as_bytes(),
    )?;
    let out = child.wait_with_output()?;
    assert!(out.status.success());
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// A commit with `message` (trailers included) over `tree`.
fn commit(repo: &TempRepo, tree: &str, parents: &[&str], message: &str) -> TestResult<String> {
    let mut args = vec!["commit-tree", tree, "-m", message];
    for p in parents {
        args.push("-p");
        args.push(p);
    }
    Ok(repo.git(&args)?.trim().to_owned())
}

fn set(repo: &TempRepo, name: &str, oid: &str) -> TestResult {
    repo.git(&["update-ref", name, oid])?;
    Ok(())
}

/// A commit holding `files`, with `trailers` ("Key: value" lines).
fn doc_commit(
    repo: &TempRepo,
    files: &[(&str, &[u8])],
    parents: &[&str],
    trailers: &str,
) -> TestResult<String> {
    let t = tree(repo, files)?;
    commit(repo, &t, parents, &format!("forged\n\n{trailers}"))
}

/// The doctor's finding codes (errors and warnings).
fn doctor_codes(node: &TempRepo) -> TestResult<BTreeSet<String>> {
    let out = gatos(node, &["doctor", "--json"])?;
    Ok(json_lines(&String::from_utf8(out.stdout)?)?
        .into_iter()
        .filter_map(|f| f["code"].as_str().map(str::to_owned))
        .collect())
}

/// Everything a node does still works after an attack, and it lost nothing.
fn assert_unharmed(
    node: &TempRepo,
    baseline: &BTreeSet<String>,
    topics: &[(&str, usize)],
) -> TestResult {
    let listed = json_lines(&gatos_ok(node, &["messages", "topics", "--json"])?)?;
    for (t, n) in topics {
        assert_eq!(read_all(node, t)?.len(), *n, "topic {t} lost messages");
        let row = listed
            .iter()
            .find(|r| r["topic"] == json!(t))
            .ok_or("topic missing from the list")?;
        assert_eq!(row["count"], json!(n), "{row}");
    }
    gatos_ok(node, &["jobs", "ls", "--json"])?;
    gatos_ok(node, &["jobs", "verify", "--all"])?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("x.db");
    gatos_ok(
        node,
        &[
            "export",
            "--format",
            "sqlite",
            "--out",
            &db.to_string_lossy(),
        ],
    )?;
    let w = spawn_worker(node, &["--drain", "--id", "honest"])?.wait_with_output()?;
    assert!(w.status.success(), "{}", String::from_utf8_lossy(&w.stderr));
    gatos_ok(node, &["sync", "--json"])?;
    node.assert_fsck_strict()?;
    let codes = doctor_codes(node)?;
    let allowed: BTreeSet<String> = baseline
        .iter()
        .cloned()
        .chain(["sync-rejected".to_owned(), "result-conflict".to_owned()])
        .collect();
    assert!(
        codes.is_subset(&allowed),
        "doctor reports more than the rejection: {codes:?} (baseline {baseline:?})"
    );
    Ok(())
}

fn rejected(report: &Value) -> Vec<String> {
    report["rejected"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["ref"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The rejected refs of a sync report, with their codes.
fn rejected_codes(report: &Value) -> TestResult<BTreeMap<String, String>> {
    Ok(report["rejected"]
        .as_array()
        .ok_or("rejected")?
        .iter()
        .map(|r| {
            (
                r["ref"].as_str().unwrap_or("").to_owned(),
                r["code"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect())
}

/// The conflicts of a sync report, with their resolutions.
fn conflict_resolutions(report: &Value) -> TestResult<BTreeMap<String, String>> {
    Ok(report["conflicts"]
        .as_array()
        .ok_or("conflicts")?
        .iter()
        .map(|c| {
            (
                c["ref"].as_str().unwrap_or("").to_owned(),
                c["resolution"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect())
}

fn topic_config(node: &TempRepo, topic: &str, max: &str) -> TestResult {
    gatos_ok(node, &["messages", "config", topic, "--max-messages", max])?;
    Ok(())
}

#[test]
fn a_forged_summary_erases_nothing_through_a_git_daemon_hub() -> TestResult {
    let hub = TempRepo::bare()?;
    let base = hub.path().parent().ok_or("no parent")?.to_path_buf();
    let daemon = GitDaemon::start(&base)?;
    let url = format!("git://127.0.0.1:{}/repo.git", daemon.port);
    let net = Net::with_url(hub, &url, 2)?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    topic_config(a, "t", "3")?;
    for k in 0..10 {
        publish(a, "t", &format!("m{k}"))?;
    }
    net.sync(0)?;
    net.sync(1)?;
    let baseline = doctor_codes(b)?;
    let hub_sealed = sealed(&net.hub)?;
    assert!(hub_sealed >= 3);

    // One commit with a large Seq: the attack that erased history before.
    let empty = tree(&net.hub, &[])?;
    let forged = commit(
        &net.hub,
        &empty,
        &[],
        "summary\n\nGatos-Kind: summary\nTopic: t\nSeq: 1000000",
    )?;
    set(&net.hub, "refs/gatos/messages/t/summary", &forged)?;
    let report = net.sync(1)?;
    assert_eq!(
        rejected(&report),
        vec!["refs/gatos/messages/t/summary"],
        "{report}"
    );
    // Unsigned: from a remote, a summary counts only when a trusted key signed it.
    assert_eq!(report["rejected"][0]["code"], "Forbidden", "{report}");
    assert_eq!(sealed(b)?, hub_sealed, "segments deleted here");
    assert_eq!(sealed(&net.hub)?, hub_sealed, "segments deleted at the hub");
    assert_unharmed(b, &baseline, &[("t", 10)])?;

    // A well-formed one whose digest is not of this node's messages.
    let doc = json!({
        "topic": "t", "count": 6, "first_ulid": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "first_seq": 1,
        "last_ulid": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "last_seq": 6, "bytes": 100,
        "digest": Digest::of(b"lies").to_string(),
        "old_tip": "0000000000000000000000000000000000000001", "segments": []
    })
    .to_string();
    let forged = doc_commit(
        &net.hub,
        &[("summary.json", doc.as_bytes()), ("pruned/ulids", b"")],
        &[],
        &format!(
            "Gatos-Kind: summary\nTopic: t\nSeq: 6\nContent-Id: {}",
            Digest::of(doc.as_bytes())
        ),
    )?;
    set(&net.hub, "refs/gatos/messages/t/summary", &forged)?;
    // Even when unsigned history is accepted (a one-off bootstrap), content is checked.
    let report: Value = serde_json::from_str(
        gatos_ok(b, &["sync", "--json", "--accept-unsigned-history"])?.trim(),
    )?;
    assert_eq!(report["rejected"][0]["code"], "DigestMismatch", "{report}");
    assert_eq!(sealed(b)?, hub_sealed);
    assert_unharmed(b, &baseline, &[("t", 10)])?;
    // The rejection is audited once per sync and reported by doctor with its fix.
    let audit = json_lines(&gatos_ok(b, &["audit", "--json"])?)?;
    assert!(audit.iter().any(|r| r["action"] == "sync.rejected"));
    let doctor = json_lines(&String::from_utf8(gatos(b, &["doctor", "--json"])?.stdout)?)?;
    let finding = doctor
        .iter()
        .find(|f| f["code"] == "sync-rejected")
        .ok_or("no finding")?;
    assert!(
        finding["fix"]
            .as_str()
            .unwrap_or("")
            .contains("git push origin --delete refs/gatos/messages/t/summary"),
        "{finding}"
    );
    // The hub's owner puts the summary back as it was: the finding goes.
    net.hub
        .git(&["update-ref", "-d", "refs/gatos/messages/t/summary"])?;
    let report = net.sync(1)?;
    assert_eq!(report["rejected_count"], 0, "{report}");
    assert!(!doctor_codes(b)?.contains("sync-rejected"));
    // --strict turns a rejection into a failure.
    set(&net.hub, "refs/gatos/messages/t/summary", &forged)?;
    let out = gatos(b, &["sync", "--strict"])?;
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    Ok(())
}

#[test]
fn a_real_prune_waits_until_this_nodes_consumers_have_passed_it() -> TestResult {
    let net = Net::new(2)?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    topic_config(a, "t", "3")?;
    for k in 0..10 {
        publish(a, "t", &format!("m{k}"))?;
    }
    net.sync(0)?;
    net.sync(1)?;
    // b's consumer group has read only the first two messages.
    gatos_ok(b, &["messages", "consume", "slow", "t", "--limit", "2"])?;
    let before = sealed(b)?;
    gatos_ok(a, &["messages", "config", "t", "--retain-messages", "3"])?;
    gatos_ok(a, &["messages", "prune", "t"])?;
    net.sync(0)?;
    let report = net.sync(1)?;
    assert_eq!(
        rejected(&report),
        vec!["refs/gatos/messages/t/summary"],
        "{report}"
    );
    assert_eq!(report["rejected"][0]["code"], "Forbidden", "{report}");
    assert_eq!(sealed(b)?, before, "b dropped what its group has not read");
    assert_eq!(read_all(b, "t")?.len(), 10);
    // Nothing b kept goes back to the hub.
    assert_eq!(sealed(&net.hub)?, sealed(a)?);
    // Once the group has read everything, the prune is taken.
    assert_eq!(consume_all(b, "slow", "t")?.len(), 8);
    let report = net.sync(1)?;
    assert_eq!(report["rejected_count"], 0, "{report}");
    assert_eq!(sealed(b)?, sealed(a)?);
    assert_eq!(read_all(a, "t")?, read_all(b, "t")?);
    b.assert_fsck_strict()?;
    Ok(())
}

/// A node runs a job and syncs; returns the job id.
fn run_one_job(net: &Net, node: usize) -> TestResult<String> {
    let n = &net.nodes[node];
    let id = id_of(&gatos_ok(
        n,
        &["jobs", "enqueue", "--json", "--", "echo", "honest"],
    )?)?;
    // Workers here claim at the hub (`--remote`): the job goes there first.
    net.sync(node)?;
    let w = spawn_worker(n, &["--drain", "--id", "w1"])?.wait_with_output()?;
    assert!(w.status.success(), "{}", String::from_utf8_lossy(&w.stderr));
    net.sync(node)?;
    Ok(id)
}

fn claim_doc(state: &str, attempt: u32, id: &str, worker: &str) -> String {
    json!({
        "job": id, "attempt": attempt, "worker": worker, "worker_key": null, "state": state,
        "lease_until": "2026-01-01T00:00:30Z", "claimed_at": "2026-01-01T00:00:00Z"
    })
    .to_string()
}

fn claim_commit(hub: &TempRepo, id: &str, doc: &str, parents: &[&str]) -> TestResult<String> {
    let v: Value = serde_json::from_str(doc)?;
    doc_commit(
        hub,
        &[("claim.json", doc.as_bytes())],
        parents,
        &format!(
            "Gatos-Kind: claim\nJob: {id}\nAttempt: {}\nState: {}\nWorker: {}",
            v["attempt"],
            v["state"].as_str().unwrap_or(""),
            v["worker"].as_str().unwrap_or("")
        ),
    )
}

fn result_commit(hub: &TempRepo, id: &str, attempt: u32, parents: &[&str]) -> TestResult<String> {
    let doc = json!({"status": "succeeded", "exit_code": 0, "attempt": attempt}).to_string();
    doc_commit(
        hub,
        &[
            ("result.json", doc.as_bytes()),
            ("logs/stdout", b"forged\n"),
            ("logs/stderr", b""),
        ],
        parents,
        &format!("Gatos-Kind: result\nJob: {id}\nAttempt: {attempt}"),
    )
}

#[test]
fn a_forged_result_never_replaces_a_verified_one() -> TestResult {
    let net = Net::new(1)?;
    let a = &net.nodes[0];
    let id = run_one_job(&net, 0)?;
    let baseline = doctor_codes(a)?;
    let claim = format!("refs/gatos/jobs/{id}/claim");
    let result = format!("refs/gatos/jobs/{id}/result");
    let job = net
        .hub
        .rev_parse(&format!("refs/gatos/jobs/{id}/job"))?
        .ok_or("job")?;
    let closed = net.hub.rev_parse(&claim)?.ok_or("claim")?;
    let ours = a.rev_parse(&result)?.ok_or("result")?;

    // The claim chain continued after this node's `closed`, with a result by nobody.
    let running = claim_commit(
        &net.hub,
        &id,
        &claim_doc("running", 2, &id, "evil"),
        &[&closed],
    )?;
    let closed2 = claim_commit(
        &net.hub,
        &id,
        &claim_doc("closed", 2, &id, "evil"),
        &[&running],
    )?;
    let forged = result_commit(&net.hub, &id, 2, &[&job, &closed2])?;
    set(&net.hub, &claim, &closed2)?;
    set(&net.hub, &result, &forged)?;
    let report = net.sync(0)?;
    assert_eq!(rejected(&report), vec![claim.clone()], "{report}");
    assert_eq!(report["claims_abandoned"], 0);
    assert_eq!(a.rev_parse(&result)?.as_deref(), Some(ours.as_str()));
    assert_eq!(a.rev_parse(&claim)?.as_deref(), Some(closed.as_str()));
    let show: Value = serde_json::from_str(&gatos_ok(a, &["jobs", "show", &id, "--json"])?)?;
    assert_eq!(show["poe"]["verified"], true, "{show}");
    assert_unharmed(a, &baseline, &[])?;

    // A whole other history for the job (another claim, another result): both are kept,
    // reported, and resolved only by the operator.
    let other1 = claim_commit(&net.hub, &id, &claim_doc("running", 1, &id, "other"), &[])?;
    let other2 = claim_commit(
        &net.hub,
        &id,
        &claim_doc("closed", 1, &id, "other"),
        &[&other1],
    )?;
    let theirs = result_commit(&net.hub, &id, 1, &[&job, &other2])?;
    set(&net.hub, &claim, &other2)?;
    set(&net.hub, &result, &theirs)?;
    let report = net.sync(0)?;
    assert_eq!(report["rejected_count"], 0, "{report}");
    let conflict = &report["conflicts"][0];
    assert_eq!(conflict["ref"], json!(result), "{report}");
    assert_eq!(conflict["resolution"], "kept-local");
    assert_eq!(a.rev_parse(&result)?.as_deref(), Some(ours.as_str()));
    let show: Value = serde_json::from_str(&gatos_ok(a, &["jobs", "show", &id, "--json"])?)?;
    assert_eq!(show["conflicts"], json!([theirs]), "{show}");
    assert_eq!(show["poe"]["verified"], true, "{show}");
    assert!(doctor_codes(a)?.contains("result-conflict"));
    assert_unharmed(a, &baseline, &[])?;
    // The hub's result is still the hub's: sync never pushes over it.
    assert_eq!(
        net.hub.rev_parse(&result)?.as_deref(),
        Some(theirs.as_str())
    );
    let row: Value = serde_json::from_str(&gatos_ok(
        a,
        &["jobs", "resolve", &id, "--keep", "local", "--json"],
    )?)?;
    assert_eq!(row["kept"], json!(ours));
    assert_eq!(row["dropped"], json!([theirs]));
    assert!(!doctor_codes(a)?.contains("result-conflict"));
    let audit = json_lines(&gatos_ok(a, &["audit", "--json"])?)?;
    assert!(audit.iter().any(|r| r["action"] == "jobs.resolve"));
    assert!(audit.iter().any(|r| r["action"] == "sync.result_conflict"));
    // The choice sticks: the hub still holds the other result, and the next sync neither
    // reports it again nor loses it (it is set aside, still reachable).
    let report = net.sync(0)?;
    assert_eq!(report["conflicts"], json!([]), "{report}");
    assert!(!doctor_codes(a)?.contains("result-conflict"));
    assert_eq!(
        a.rev_parse(&format!(
            "refs/gatos-conflicts/set-aside/jobs/{id}/{theirs}"
        ))?
        .as_deref(),
        Some(theirs.as_str())
    );
    Ok(())
}

/// A claim document with the times given.
fn timed_claim(state: &str, attempt: u32, id: &str, claimed_at: &str, until: &str) -> String {
    json!({
        "job": id, "attempt": attempt, "worker": "ghost", "worker_key": null, "state": state,
        "lease_until": until, "claimed_at": claimed_at
    })
    .to_string()
}

#[test]
fn unsigned_claims_cannot_hold_a_job_forever_or_take_it_over_early() -> TestResult {
    let net = Net::new(1)?;
    let a = &net.nodes[0];
    let id = id_of(&gatos_ok(
        a,
        &["jobs", "enqueue", "--json", "--", "echo", "important"],
    )?)?;
    net.sync(0)?;
    let baseline = doctor_codes(a)?;
    let claim = format!("refs/gatos/jobs/{id}/claim");
    let t0 = "2026-01-01T00:00:00Z";
    let t30 = "2026-01-01T00:00:30Z";
    // 1. A claim whose lease ends in 9999, in a made-up worker's name: held forever.
    let forever = claim_commit(
        &net.hub,
        &id,
        &timed_claim("running", 1, &id, t0, "9999-12-31T23:59:59.999Z"),
        &[],
    )?;
    // 2. A takeover before the lease it takes over ran out.
    let first = claim_commit(&net.hub, &id, &timed_claim("running", 1, &id, t0, t30), &[])?;
    let early = claim_commit(
        &net.hub,
        &id,
        &timed_claim(
            "running",
            2,
            &id,
            "2026-01-01T00:00:10Z",
            "2026-01-01T00:00:40Z",
        ),
        &[&first],
    )?;
    for (what, tip) in [
        ("a lease until 9999", forever),
        ("a takeover within the lease", early),
    ] {
        set(&net.hub, &claim, &tip)?;
        let report = net.sync(0)?;
        let codes = rejected_codes(&report)?;
        assert_eq!(
            codes.get(&claim).map(String::as_str),
            Some("Conflict"),
            "{what}: {report}"
        );
        assert_eq!(a.rev_parse(&claim)?, None, "{what}: the claim was adopted");
        let show: Value = serde_json::from_str(&gatos_ok(a, &["jobs", "show", &id, "--json"])?)?;
        assert_eq!(show["state"], "pending", "{what}: {show}");
    }
    // The job still runs here (a hub can withhold, not end it this way).
    net.hub.git(&["update-ref", "-d", &claim])?;
    assert_unharmed(a, &baseline, &[])?;
    let show: Value = serde_json::from_str(&gatos_ok(a, &["jobs", "show", &id, "--json"])?)?;
    assert_eq!(show["state"], "succeeded", "{show}");
    Ok(())
}

#[test]
fn junk_at_every_kind_of_ref_is_rejected_and_harms_nothing() -> TestResult {
    let net = Net::new(2)?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    topic_config(a, "t", "3")?;
    for k in 0..7 {
        publish(a, "t", &format!("m{k}"))?;
    }
    gatos_ok(a, &["messages", "consume", "g", "t", "--limit", "2"])?;
    gatos_ok(a, &["jobs", "config", "default", "--backoff-base", "2"])?;
    let manifest = a.root().join("m.json");
    std::fs::write(&manifest, r#"{"command": ["true"]}"#)?;
    gatos_ok(a, &["manifests", "put", "m", &manifest.to_string_lossy()])?;
    let done = run_one_job(&net, 0)?;
    let pending = id_of(&gatos_ok(
        a,
        &[
            "jobs", "enqueue", "--json", "--queue", "other", "--", "true",
        ],
    )?)?;
    gatos_ok(a, &["jobs", "cancel", &pending])?;
    net.sync(0)?;
    net.sync(1)?;
    trust_each_other(&net)?;
    let baseline = doctor_codes(b)?;
    let key = json_lines(&gatos_ok(a, &["keys", "ls", "--json"])?)?
        .first()
        .and_then(|k| {
            k["key"]
                .as_str()
                .map(|s| s.trim_start_matches("ed25519:").to_owned())
        })
        .ok_or("no key")?;
    let sealed_name = net
        .hub
        .refs("refs/gatos/messages/t/")?
        .into_iter()
        .map(|(n, _)| n)
        .find(|n| !n.ends_with("/head") && !n.ends_with("/summary"))
        .ok_or("no sealed segment")?;
    let fresh = "01KBQ0000000000000000000ZZ";
    // Every kind, at a name the node holds and at a new one; each with the document file the
    // kind reads.
    let targets: Vec<(String, &str, &str)> = vec![
        (
            "refs/gatos/messages/t/head".into(),
            "message",
            "message/envelope.json",
        ),
        (sealed_name, "message", "message/envelope.json"),
        (
            "refs/gatos/messages/t/summary".into(),
            "summary",
            "summary.json",
        ),
        (
            "refs/gatos/messages/new/head".into(),
            "message",
            "message/envelope.json",
        ),
        (
            "refs/gatos/consumers/g/t".into(),
            "checkpoint",
            "checkpoint.json",
        ),
        ("refs/gatos/config/topics/t".into(), "config", "config.json"),
        (
            "refs/gatos/config/queues/default".into(),
            "config",
            "config.json",
        ),
        (format!("refs/gatos/jobs/{done}/job"), "job", "job.json"),
        (
            format!("refs/gatos/jobs/{done}/claim"),
            "claim",
            "claim.json",
        ),
        (
            format!("refs/gatos/jobs/{done}/result"),
            "result",
            "result.json",
        ),
        (
            format!("refs/gatos/jobs/{pending}/cancel"),
            "cancel",
            "cancel.json",
        ),
        (format!("refs/gatos/jobs/{fresh}/job"), "job", "job.json"),
        (
            format!("refs/gatos/jobs/{fresh}/claim"),
            "claim",
            "claim.json",
        ),
        ("refs/gatos/manifests/m".into(), "manifest", "manifest.json"),
        (
            "refs/gatos/archive/jobs/2026-01".into(),
            "archive",
            "index.json",
        ),
        (format!("refs/gatos/trust/keys/{key}"), "key", "key.json"),
        (
            format!("refs/gatos/trust/revoked/{key}"),
            "revocation",
            "revocation.json",
        ),
    ];
    let junk_blob = blob(&net.hub, b"junk")?;
    let junk_tree = tree(&net.hub, &[("x", b"junk")])?;
    for (name, kind, path) in &targets {
        let honest = net.hub.rev_parse(name)?;
        let local = b.rev_parse(name)?;
        let malformed = doc_commit(
            &net.hub,
            &[(path, br#"{"not": "a document"}"#)],
            &[],
            &format!("Gatos-Kind: {kind}\nTopic: t\nJob: {fresh}\nSeq: 9"),
        )?;
        for junk in [&junk_blob, &junk_tree, &malformed] {
            set(&net.hub, name, junk)?;
            let report = net.sync(1)?;
            assert!(
                rejected(&report).contains(name),
                "{name} at {junk} was not rejected: {report}"
            );
            assert_eq!(b.rev_parse(name)?, local, "{name} moved here");
            assert_eq!(net.hub.rev_parse(name)?.as_deref(), Some(junk.as_str()));
            assert_unharmed(b, &baseline, &[("t", 7)])?;
        }
        // The hub's owner repairs it: sync never pushes the junk back.
        match &honest {
            Some(h) => set(&net.hub, name, h)?,
            None => {
                net.hub.git(&["update-ref", "-d", name])?;
            }
        }
        let report = net.sync(1)?;
        assert_eq!(report["rejected_count"], 0, "{name}: {report}");
        assert_eq!(net.hub.rev_parse(name)?, honest, "{name}");
    }
    assert!(!doctor_codes(b)?.contains("sync-rejected"));
    Ok(())
}

#[test]
fn ten_thousand_hostile_refs_cost_one_bounded_report() -> TestResult {
    let net = Net::new(1)?;
    let b = &net.nodes[0];
    publish(b, "t", "m0")?;
    net.sync(0)?;
    let baseline = doctor_codes(b)?;
    let junk = blob(&net.hub, b"junk")?;
    let mut stdin = String::new();
    for k in 0..5_000u32 {
        stdin.push_str(&format!("create refs/gatos/unknown/r{k} {junk}\n"));
        stdin.push_str(&format!("create refs/gatos/jobs/01KBQ{k:021}/job {junk}\n"));
    }
    let mut child = net
        .hub
        .git_cmd(&["update-ref", "--stdin"])
        .stdin(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .ok_or("stdin")?
        .write_all(stdin.as_bytes())?;
    assert!(child.wait()?.success());
    let report = net.sync(0)?;
    assert_eq!(report["ignored"], 5_000, "ignored");
    assert_eq!(report["rejected_count"], 5_000);
    assert_eq!(report["rejected"].as_array().map(Vec::len), Some(1_000));
    assert!(b.refs("refs/gatos/jobs/")?.is_empty(), "junk adopted");
    assert!(b.refs("refs/gatos/unknown/")?.is_empty(), "junk adopted");
    let findings = json_lines(&String::from_utf8(gatos(b, &["doctor", "--json"])?.stdout)?)?;
    let rejections = findings
        .iter()
        .filter(|f| f["code"] == "sync-rejected")
        .count();
    assert!(rejections <= 11, "{rejections} doctor findings");
    let audit = json_lines(&gatos_ok(b, &["audit", "--json"])?)?;
    assert_eq!(
        audit
            .iter()
            .filter(|r| r["action"] == "sync.rejected")
            .count(),
        1,
        "one audit record per sync"
    );
    assert_unharmed(b, &baseline, &[("t", 1)])?;
    Ok(())
}

/// Plants one piece of junk at the hub, chosen by `pick`: at a name no gatos writes, at a
/// new topic, at a sealed-segment name of `t`, at a consumer group's checkpoint, at a job
/// or a revocation; as a blob, a tree or a commit whose document does not parse.
pub(super) fn plant_junk(hub: &TempRepo, pick: u64, k: usize) -> TestResult {
    let names = [
        format!("refs/gatos/unknown/x{k}"),
        format!("refs/gatos/messages/junk{k}/head"),
        format!("refs/gatos/messages/t/2026-01-01/01KBQ{k:021}"),
        "refs/gatos/consumers/g0/t".to_owned(),
        format!("refs/gatos/jobs/01KBQ{k:021}/job"),
        format!("refs/gatos/trust/revoked/{}", "ab".repeat(32)),
    ];
    let name = &names[(pick % names.len() as u64) as usize];
    let junk = match (pick / 8) % 3 {
        0 => blob(hub, format!("junk {k}").as_bytes())?,
        1 => tree(hub, &[("x", b"junk")])?,
        _ => doc_commit(
            hub,
            &[("checkpoint.json", b"{}"), ("job.json", b"{}")],
            &[],
            "Gatos-Kind: checkpoint",
        )?,
    };
    set(hub, name, &junk)
}

/// A job commit like `source`'s, under the id `id`, with its envelope or without it.
fn copied_job(hub: &TempRepo, source: &str, id: &str, with_envelope: bool) -> TestResult<String> {
    let doc = hub.git(&["show", &format!("{source}:job.json")])?;
    let env = hub.git(&["show", &format!("{source}:enqueue.json")])?;
    let key = hub.git(&[
        "log",
        "-1",
        "--format=%(trailers:key=Enqueuer-Key,valueonly)",
        source,
    ])?;
    let mut files: Vec<(&str, &[u8])> = vec![("job.json", doc.as_bytes())];
    if with_envelope {
        files.push(("enqueue.json", env.as_bytes()));
    }
    doc_commit(
        hub,
        &files,
        &[],
        &format!(
            "Gatos-Kind: job\nJob: {id}\nContent-Id: {}\nEnqueuer-Key: {}",
            Digest::of(doc.as_bytes()),
            key.trim()
        ),
    )
}

#[test]
fn jobs_count_only_when_a_trusted_key_enqueued_them() -> TestResult {
    let net = Net::new(2)?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    // b stops trusting a.
    let a_key: Value = serde_json::from_str(gatos_ok(a, &["keys", "show", "--json"])?.trim())?;
    let a_key = a_key["key"].as_str().ok_or("key")?.to_owned();
    b.git(&["config", "--unset-all", "gatos.trust", &a_key])?;
    let id = id_of(&gatos_ok(
        a,
        &["jobs", "enqueue", "--json", "--", "echo", "from-a"],
    )?)?;
    net.sync(0)?;
    let name = format!("refs/gatos/jobs/{id}/job");
    let report = net.sync(1)?;
    // The job, and a's `enqueued` event on gatos.jobs (a system topic: signed messages).
    assert_eq!(
        rejected(&report),
        vec![
            name.clone(),
            "refs/gatos/messages/gatos.jobs/head".to_owned()
        ],
        "{report}"
    );
    assert_eq!(report["rejected"][0]["code"], "UntrustedKey", "{report}");
    assert_eq!(report["rejected"][1]["code"], "UntrustedKey", "{report}");
    assert!(
        report["rejected"][0]["reason"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("git gatos keys trust {a_key}")),
        "{report}"
    );
    assert_eq!(b.rev_parse(&name)?, None, "an untrusted job was adopted");
    // Trusting the key later lets the same job in (nothing is remembered against it).
    gatos_ok(b, &["keys", "trust", &a_key])?;
    let report = net.sync(1)?;
    assert_eq!(report["rejected_count"], 0, "{report}");
    assert!(b.rev_parse(&name)?.is_some());

    // Forged at the hub: the same document without the envelope, and with a's envelope
    // replayed under another id.
    let source = net.hub.rev_parse(&name)?.ok_or("job")?;
    let unsigned_id = "01KBQ00000000000000000NSG1";
    let replay_id = "01KBQ00000000000000000REP1";
    let unsigned = copied_job(&net.hub, &source, unsigned_id, false)?;
    let replayed = copied_job(&net.hub, &source, replay_id, true)?;
    set(
        &net.hub,
        &format!("refs/gatos/jobs/{unsigned_id}/job"),
        &unsigned,
    )?;
    set(
        &net.hub,
        &format!("refs/gatos/jobs/{replay_id}/job"),
        &replayed,
    )?;
    let report = net.sync(1)?;
    let codes = rejected_codes(&report)?;
    assert_eq!(
        codes
            .get(&format!("refs/gatos/jobs/{unsigned_id}/job"))
            .map(String::as_str),
        Some("Forbidden"),
        "{report}"
    );
    assert_eq!(
        codes
            .get(&format!("refs/gatos/jobs/{replay_id}/job"))
            .map(String::as_str),
        Some("SignatureInvalid"),
        "{report}"
    );
    assert!(
        b.refs(&format!("refs/gatos/jobs/{unsigned_id}/"))?
            .is_empty()
    );
    assert!(b.refs(&format!("refs/gatos/jobs/{replay_id}/"))?.is_empty());
    // The worker runs the honest job only.
    let w = spawn_worker(b, &["--drain", "--id", "wb"])?.wait_with_output()?;
    assert!(w.status.success(), "{}", String::from_utf8_lossy(&w.stderr));
    assert_eq!(worker_rows(&w)?.len(), 1);
    Ok(())
}

#[test]
fn a_junk_revocation_at_the_hub_cannot_block_a_real_one() -> TestResult {
    let net = Net::new(2)?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    net.sync(0)?;
    net.sync(1)?;
    let key: Value = serde_json::from_str(gatos_ok(a, &["keys", "show", "--json"])?.trim())?;
    let key = key["key"].as_str().ok_or("key")?.to_owned();
    let hex = key.trim_start_matches("ed25519:").to_owned();
    // Junk in both layouts, before the owner revokes.
    let junk = blob(&net.hub, b"not a revocation")?;
    set(&net.hub, &format!("refs/gatos/trust/revoked/{hex}"), &junk)?;
    let fake = doc_commit(
        &net.hub,
        &[("revocation.json", br#"{"key":"x"}"#)],
        &[],
        "Gatos-Kind: revocation",
    )?;
    set(
        &net.hub,
        &format!("refs/gatos/trust/revocations/{hex}/{}", "0".repeat(64)),
        &fake,
    )?;
    let report = net.sync(0)?;
    assert_eq!(report["rejected_count"], 2, "{report}");
    let revoked = |n: &TempRepo| -> TestResult<Value> {
        Ok(json_lines(&gatos_ok(n, &["keys", "ls", "--json"])?)?
            .into_iter()
            .find(|k| k["key"] == json!(key))
            .ok_or("key not listed")?["revoked"]
            .clone())
    };
    assert_eq!(revoked(a)?, Value::Null);
    // The real revocation is written (no "already revoked"), reaches the hub and b.
    gatos_ok(a, &["keys", "revoke", &key, "--reason", "compromised"])?;
    assert_eq!(revoked(a)?, "compromised");
    net.sync(0)?;
    let at_hub = net
        .hub
        .refs(&format!("refs/gatos/trust/revocations/{hex}/"))?;
    assert_eq!(at_hub.len(), 2, "{at_hub:?}");
    let report = net.sync(1)?;
    assert_eq!(report["rejected_count"], 2, "{report}");
    assert_eq!(revoked(b)?, "compromised");
    Ok(())
}

#[test]
fn control_commits_by_a_key_this_node_does_not_trust_are_rejected() -> TestResult {
    let net = Net::new(2)?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    // mallory: a node with push access whose key a and b do not trust (it trusts a, so it
    // takes a's jobs).
    let mallory = TempRepo::new()?;
    gatos_ok(&mallory, &["init"])?;
    mallory.git(&["remote", "add", "origin", &net.hub.path().to_string_lossy()])?;
    let a_key: Value = serde_json::from_str(gatos_ok(a, &["keys", "show", "--json"])?.trim())?;
    gatos_ok(
        &mallory,
        &["keys", "trust", a_key["key"].as_str().ok_or("key")?],
    )?;
    publish(a, "t", "m0")?;
    // A user topic whose messages are signed (messages config --sign on).
    gatos_ok(a, &["messages", "config", "s", "--sign", "on"])?;
    publish(a, "s", "a0")?;
    let id = id_of(&gatos_ok(
        a,
        &["jobs", "enqueue", "--json", "--queue", "q", "--", "true"],
    )?)?;
    net.sync(0)?;
    net.sync(1)?;
    gatos_ok(&mallory, &["sync"])?;
    let baseline = doctor_codes(b)?;
    // mallory cancels a's job, registers a manifest, moves a consumer group and sets a
    // topic's and a queue's settings; all signed by its own key.
    // mallory archives a job of its own (before it cancels a's, which would fold that too)
    gatos_ok(&mallory, &["jobs", "enqueue", "--", "true"])?;
    let w = gatos_cmd(&mallory, &["worker", "--drain"]).output()?;
    assert!(w.status.success(), "{}", String::from_utf8_lossy(&w.stderr));
    gatos_ok(
        &mallory,
        &["maintenance", "--archive-jobs", "--older-than", "0s"],
    )?;
    let archive = mallory
        .refs("refs/gatos/archive/jobs/")?
        .first()
        .map(|(n, _)| n.clone())
        .ok_or("no archive")?;
    gatos_ok(&mallory, &["jobs", "cancel", &id])?;
    let manifest = mallory.root().join("m.json");
    std::fs::write(&manifest, r#"{"command": ["rm", "-rf", "/tmp/x"]}"#)?;
    gatos_ok(
        &mallory,
        &["manifests", "put", "evil", &manifest.to_string_lossy()],
    )?;
    gatos_ok(&mallory, &["messages", "consume", "g", "t"])?;
    gatos_ok(
        &mallory,
        &["messages", "config", "t", "--max-messages", "1"],
    )?;
    gatos_ok(&mallory, &["jobs", "config", "q", "--backoff-base", "1h"])?;
    publish(&mallory, "s", "evil")?;
    gatos_ok(&mallory, &["sync"])?;
    let report = net.sync(1)?;
    let codes = rejected_codes(&report)?;
    for name in [
        format!("refs/gatos/jobs/{id}/cancel"),
        "refs/gatos/manifests/evil".to_owned(),
        "refs/gatos/consumers/g/t".to_owned(),
        "refs/gatos/config/topics/t".to_owned(),
        "refs/gatos/config/queues/q".to_owned(),
        // mallory's audit records (cancel, manifest) on a system topic.
        "refs/gatos/messages/gatos.audit/head".to_owned(),
        // Its message on a signed user topic, and its archive.
        "refs/gatos/messages/s/head".to_owned(),
        archive,
    ] {
        assert_eq!(
            codes.get(&name).map(String::as_str),
            Some("UntrustedKey"),
            "{name}: {report}"
        );
        if !name.ends_with("/head") {
            assert_eq!(b.rev_parse(&name)?, None, "{name} adopted");
        }
    }
    let audit = json_lines(&gatos_ok(b, &["audit", "--json"])?)?;
    assert!(
        !audit.iter().any(|r| r["action"] == "jobs.cancel"),
        "mallory's audit record reached b: {audit:?}"
    );
    // b still runs the job mallory tried to cancel.
    let show: Value = serde_json::from_str(gatos_ok(b, &["jobs", "show", &id, "--json"])?.trim())?;
    assert_eq!(show["state"], "pending", "{show}");
    assert_unharmed(b, &baseline, &[("t", 1), ("s", 1)])?;
    // Once b trusts mallory's key, the same commits count.
    let m_key: Value =
        serde_json::from_str(gatos_ok(&mallory, &["keys", "show", "--json"])?.trim())?;
    gatos_ok(b, &["keys", "trust", m_key["key"].as_str().ok_or("key")?])?;
    let report = net.sync(1)?;
    assert_eq!(report["rejected_count"], 0, "{report}");
    assert!(b.rev_parse("refs/gatos/manifests/evil")?.is_some());
    Ok(())
}

#[test]
fn honest_refs_past_the_checking_bound_wait_for_the_next_sync() -> TestResult {
    let net = Net::new(2)?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    for k in 0..12 {
        gatos_ok(a, &["jobs", "enqueue", "--", "echo", &k.to_string()])?;
    }
    net.sync(0)?;
    b.git(&["config", "gatos.sync.maxCheckedRefs", "5"])?;
    let report = net.sync(1)?;
    assert_eq!(report["rejected_count"], 0, "{report}");
    assert!(
        !report["retry"].as_array().is_some_and(Vec::is_empty),
        "nothing deferred: {report}"
    );
    let mut rounds = 1;
    while b.refs("refs/gatos/jobs/")?.len() < 12 {
        let report = net.sync(1)?;
        assert_eq!(report["rejected_count"], 0, "{report}");
        rounds += 1;
        assert!(rounds <= 6, "the bound never let the rest through");
    }
    assert!(rounds >= 3, "the bound did not bound ({rounds} syncs)");
    b.assert_fsck_strict()?;
    Ok(())
}

#[test]
fn junk_at_the_hub_neither_stops_nor_hangs_a_worker_that_claims_there() -> TestResult {
    let net = Net::new(1)?;
    let a = &net.nodes[0];
    let id = id_of(&gatos_ok(
        a,
        &["jobs", "enqueue", "--json", "--", "echo", "x"],
    )?)?;
    net.sync(0)?;
    let junk = blob(&net.hub, b"junk")?;
    set(&net.hub, &format!("refs/gatos/jobs/{id}/claim"), &junk)?;
    // A job that never reached the hub, too.
    gatos_ok(a, &["jobs", "enqueue", "--", "echo", "y"])?;
    let mut w = spawn_worker(a, &["--drain", "--id", "w"])?;
    wait_for(
        "the draining worker to end",
        Duration::from_secs(60),
        || w.try_wait().ok().flatten().is_some(),
    )
    .inspect_err(|_| {
        let _ = w.kill();
    })?;
    let out = w.wait_with_output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(worker_rows(&out)?.is_empty());
    let show: Value = serde_json::from_str(gatos_ok(a, &["jobs", "show", &id, "--json"])?.trim())?;
    assert_eq!(show["state"], "pending");
    assert_eq!(a.rev_parse(&format!("refs/gatos/jobs/{id}/claim"))?, None);
    Ok(())
}

/// A hub whose head of a topic is no message has that head rejected, and gets no checkpoint
/// of that topic either: this node's newer messages were not pushed over the junk (the
/// topic's unit is frozen), so a checkpoint on them would stand on messages the hub does
/// not have. Before, only a head push that was lost kept its checkpoints back.
#[test]
fn a_checkpoint_is_not_pushed_over_a_rejected_head() -> TestResult {
    let net = Net::new(1)?;
    let a = &net.nodes[0];
    publish(a, "t", "m0")?;
    net.sync(0)?;
    let honest = net.hub_head("t")?.ok_or("t not pushed")?;
    let junk = commit(
        &net.hub,
        &format!("{honest}^{{tree}}"),
        &[],
        "not a message",
    )?;
    set(&net.hub, "refs/gatos/messages/t/head", &junk)?;
    publish(a, "t", "m1")?;
    gatos_ok(a, &["messages", "consume", "readers", "t"])?;
    assert!(a.rev_parse("refs/gatos/consumers/readers/t")?.is_some());
    let report = net.sync(0)?;
    assert_eq!(
        rejected(&report),
        ["refs/gatos/messages/t/head"],
        "{report}"
    );
    assert_eq!(
        report["pushed"], 0,
        "a checkpoint held back counted as pushed: {report}"
    );
    assert_eq!(net.hub_head("t")?, Some(junk), "pushed over the junk");
    assert_eq!(
        net.hub.rev_parse("refs/gatos/consumers/readers/t")?,
        None,
        "a checkpoint on messages the hub does not have"
    );
    Ok(())
}

/// Topic `t` in segments of three messages, `count` of them (`m0`, `m1`, …) published on
/// the first node and synced to the first two.
fn rotating_topic(net: &Net, count: usize) -> TestResult {
    topic_config(&net.nodes[0], "t", "3")?;
    for k in 0..count {
        publish(&net.nodes[0], "t", &format!("m{k}"))?;
    }
    net.sync(0)?;
    net.sync(1)?;
    Ok(())
}

/// A sealed segment's ref is create-only (never overwritten): only it keeps the segment's
/// messages reachable (the next segment names its last message by a trailer, which git
/// does not follow). A hub that moved one back inside its segment, put another node's
/// message there, or deleted it made every node behind it take that (reported as a plain
/// adoption) and leave the messages to the next `git gc`. Now a node keeps the value the
/// chain names as the segment's last, reports the hub's other value and puts its own back
/// there, whether its head is behind the hub's, the same or ahead; a node that holds
/// nothing of the topic rejects the head that follows a message no sealed ref holds,
/// naming that message, until the hub is mended.
#[test]
fn a_sealed_segment_moved_replaced_or_deleted_at_the_hub_is_not_taken() -> TestResult {
    let net = Net::new(4)?;
    let (a, b, c, d) = (&net.nodes[0], &net.nodes[1], &net.nodes[2], &net.nodes[3]);
    topic_config(a, "t", "3")?;
    for k in 0..5 {
        publish(a, "t", &format!("m{k}"))?;
    }
    net.sync(0)?;
    // `d` appends a message of its own to the second segment and never syncs again.
    net.sync(3)?;
    publish(d, "t", "x")?;
    let other = net.head(3, "t")?.ok_or("no head at d")?;
    for k in 5..7 {
        publish(a, "t", &format!("m{k}"))?;
    }
    net.sync(0)?;
    net.sync(1)?;
    let baseline = doctor_codes(b)?;
    let segments = sealed_refs(b)?;
    assert_eq!(segments, sealed_refs(&net.hub)?);
    assert_eq!(segments.len(), 2, "{segments:?}");
    let mut it = segments.iter();
    let (first, first_value) = it.next().ok_or("no segment")?;
    let (second, second_value) = it.next().ok_or("no second segment")?;
    let back = net
        .hub
        .git(&["rev-parse", &format!("{first_value}~1")])?
        .trim()
        .to_owned();

    // The hub's head moves on (an honest publish), so `b` is behind it; meanwhile the hub
    // moves the first segment back by a message and ends the second with `d`'s message.
    publish(a, "t", "m7")?;
    net.sync(0)?;
    set(&net.hub, first, &back)?;
    let hub_path = net.hub.path().to_string_lossy().into_owned();
    d.git(&["push", "-q", &hub_path, &format!("{other}:refs/heads/x")])?;
    net.hub.git(&["update-ref", "-d", "refs/heads/x"])?;
    set(&net.hub, second, &other)?;

    // A node that holds nothing of the topic rejects the head, naming the message the
    // third segment follows, which no ref at the hub reaches any more.
    let report = net.sync(2)?;
    let reason = report["rejected"]
        .as_array()
        .ok_or("rejected")?
        .iter()
        .find(|r| r["ref"] == json!("refs/gatos/messages/t/head"))
        .and_then(|r| r["reason"].as_str())
        .ok_or_else(|| format!("the head is not rejected: {report}"))?
        .to_owned();
    assert!(reason.contains(second_value.as_str()), "{reason}");
    assert_eq!(net.head(2, "t")?, None);
    // doctor does not advise deleting the honest head at the hub.
    let out = gatos(c, &["doctor", "--json"])?;
    let finding = json_lines(&String::from_utf8(out.stdout)?)?
        .into_iter()
        .find(|f| f["code"] == json!("sync-rejected"))
        .ok_or("no sync-rejected finding")?;
    let fix = finding["fix"].as_str().unwrap_or("");
    assert!(
        fix.starts_with("git gatos sync origin") && !fix.contains("--delete"),
        "{finding}"
    );

    // `b` takes the honest head, keeps both segments and puts them back at the hub.
    let report = net.sync(1)?;
    assert_eq!(net.head(1, "t")?, net.hub_head("t")?, "{report}");
    assert_eq!(sealed_refs(b)?, segments, "b kept its segments: {report}");
    assert_eq!(
        conflict_resolutions(&report)?,
        BTreeMap::from([
            (first.clone(), "kept-local".to_owned()),
            (second.clone(), "kept-local".to_owned()),
        ]),
        "{report}"
    );
    assert_eq!(sealed_refs(&net.hub)?, segments, "{report}");
    assert_unharmed(b, &baseline, &[("t", 8)])?;
    // The node that rejected the head takes the mended topic.
    net.sync(2)?;
    assert_eq!(read_all(c, "t")?.len(), 8);

    // The same with the heads the same, and with `b` ahead of the hub.
    set(&net.hub, first, &back)?;
    let report = net.sync(1)?;
    assert_eq!(
        conflict_resolutions(&report)?,
        BTreeMap::from([(first.clone(), "kept-local".to_owned())]),
        "{report}"
    );
    assert_eq!(sealed_refs(&net.hub)?, segments, "{report}");
    set(&net.hub, first, &back)?;
    publish(b, "t", "m8")?;
    let report = net.sync(1)?;
    assert_eq!(net.hub_head("t")?, net.head(1, "t")?, "{report}");
    assert_eq!(sealed_refs(&net.hub)?, segments, "{report}");

    // A segment deleted at the hub: a node behind it keeps its own (it was deleted here
    // before) and offers it back.
    publish(a, "t", "m9")?;
    net.sync(0)?;
    net.hub.git(&["update-ref", "-d", first])?;
    let report = net.sync(1)?;
    assert_eq!(net.head(1, "t")?, net.hub_head("t")?, "{report}");
    assert_eq!(sealed_refs(b)?.get(first), Some(first_value), "{report}");
    assert_eq!(
        sealed_refs(&net.hub)?.get(first),
        Some(first_value),
        "{report}"
    );
    assert_eq!(read_all(b, "t")?.len(), 10);
    Ok(())
}

/// An archive commit keeps its jobs' commits reachable through its parents; its signature
/// does not cover them. A hub that copies an honest archive commit without those parents
/// and deletes the jobs' live refs made every node drop its live refs for an archive that
/// keeps none of their commits (the check asked only whether the commits exist here):
/// lost at the next `git gc`. Now such an archive commit is rejected and the node keeps
/// its jobs.
#[test]
fn an_archive_commit_stripped_of_its_jobs_is_rejected() -> TestResult {
    let net = Net::new(2)?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    let ids = jobs_finished_by_the_second_node(&net, 2)?;
    let baseline = doctor_codes(b)?;
    let live = b.refs("refs/gatos/jobs/")?;
    assert_eq!(live.len(), 6, "{live:?}");

    // `a` archives, and the hub gets a copy of its archive commit with the prev link only.
    gatos_ok(
        a,
        &[
            "maintenance",
            "--archive-jobs",
            "--older-than",
            "0s",
            "--json",
        ],
    )?;
    let (name, honest) = a
        .refs("refs/gatos/archive/jobs/")?
        .into_iter()
        .next()
        .ok_or("no archive ref")?;
    let hub_path = net.hub.path().to_string_lossy().into_owned();
    a.git(&["push", "-q", &hub_path, &format!("{honest}:refs/heads/x")])?;
    let text = net.hub.git(&["cat-file", "commit", &honest])?;
    let stripped: String = text
        .lines()
        .filter(|l| !l.starts_with("parent "))
        .map(|l| format!("{l}\n"))
        .collect();
    let forged = copy_of_commit(&net.hub, &stripped)?;
    assert_ne!(forged, honest);
    net.hub.git(&["update-ref", "-d", "refs/heads/x"])?;
    set(&net.hub, &name, &forged)?;
    for (job_ref, _) in net.hub.refs("refs/gatos/jobs/")? {
        net.hub.git(&["update-ref", "-d", &job_ref])?;
    }

    let report = net.sync(1)?;
    assert_eq!(
        rejected_codes(&report)?.get(&name).map(String::as_str),
        Some("InvalidEnvelope"),
        "{report}"
    );
    assert_eq!(
        b.refs("refs/gatos/jobs/")?,
        live,
        "b kept its jobs: {report}"
    );
    for id in &ids {
        let shown: Value =
            serde_json::from_str(gatos_ok(b, &["jobs", "show", id, "--json"])?.trim())?;
        assert_eq!(shown["state"], "succeeded", "{shown}");
    }
    assert_unharmed(b, &baseline, &[])?;
    Ok(())
}

/// A job enqueued on the first of two nodes, synced to both and run on each offline (no
/// `--remote`): its id and the two nodes' results, which differ.
fn ran_offline_on_both(net: &Net) -> TestResult<(String, String, String)> {
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    let id = id_of(&gatos_ok(
        a,
        &["jobs", "enqueue", "--json", "--", "echo", "one"],
    )?)?;
    net.sync(0)?;
    net.sync(1)?;
    for (n, w) in [(a, "wa"), (b, "wb")] {
        let allow = jobs_shared(n).to_string_lossy().into_owned();
        gatos_ok(
            n,
            &[
                "worker",
                "--json",
                "--drain",
                "--id",
                w,
                "--sandbox-allow-write",
                &allow,
            ],
        )?;
    }
    let result = |n: &TempRepo| n.rev_parse(&format!("refs/gatos/jobs/{id}/result"));
    let (ra, rb) = (
        result(a)?.ok_or("no result at a")?,
        result(b)?.ok_or("no result at b")?,
    );
    assert_ne!(ra, rb);
    Ok((id, ra, rb))
}

/// Two nodes that ran one job offline and each archived its own result: when their
/// archive chains met, the fold kept the hub's entries and dropped this node's by job id
/// alone, leaving its result and claim chain to the next `git gc`. Now this node's
/// archive stays a parent of the fold (every commit of it reachable) and the conflict is
/// reported.
#[test]
fn a_job_archived_on_two_nodes_with_two_results_loses_neither() -> TestResult {
    let net = Net::new(2)?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    let (_, ra, rb) = ran_offline_on_both(&net)?;
    for n in [a, b] {
        gatos_ok(
            n,
            &[
                "maintenance",
                "--archive-jobs",
                "--older-than",
                "0s",
                "--json",
            ],
        )?;
    }
    net.sync(0)?;
    let report = net.sync(1)?;
    let (name, tip) = b
        .refs("refs/gatos/archive/jobs/")?
        .into_iter()
        .next()
        .ok_or("no archive at b")?;
    assert_eq!(
        conflict_resolutions(&report)?
            .get(&name)
            .map(String::as_str),
        Some("hub-wins"),
        "{report}"
    );
    let reachable = b.git(&["rev-list", &tip])?;
    for r in [&ra, &rb] {
        assert!(
            reachable.lines().any(|l| l == r.as_str()),
            "{r} not kept at b"
        );
    }
    b.assert_fsck_strict()?;
    // The fold went to the hub: both results are kept there too.
    let at_hub = net.hub.git(&["rev-list", &tip])?;
    assert!(at_hub.lines().any(|l| l == ra) && at_hub.lines().any(|l| l == rb));
    Ok(())
}

/// Two nodes ran a job offline; one archived it before syncing. The node that holds its
/// result live keeps the archived one beside it and reports it (`refs/gatos-conflicts`,
/// `jobs show`, `doctor`), as two live results are, and can resolve it; before, it reported
/// nothing. The archiving node reports the pair on its syncs (`kept-both`).
#[test]
fn two_results_of_a_job_archived_on_one_node_are_kept_and_reported() -> TestResult {
    let net = Net::new(2)?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    let (id, _, rb) = ran_offline_on_both(&net)?;
    gatos_ok(
        b,
        &[
            "maintenance",
            "--archive-jobs",
            "--older-than",
            "0s",
            "--json",
        ],
    )?;
    net.sync(1)?;
    net.sync(0)?;
    let report = net.sync(1)?;
    // The node that holds its result live keeps the archived one beside it, reported, and
    // resolvable there.
    let kept = a.rev_parse(&format!("refs/gatos-conflicts/jobs/{id}/{rb}"))?;
    assert_eq!(kept.as_deref(), Some(rb.as_str()), "the other result kept");
    let show: Value = serde_json::from_str(&gatos_ok(a, &["jobs", "show", &id, "--json"])?)?;
    assert_eq!(show["conflicts"], json!([rb]), "{show}");
    assert!(doctor_codes(a)?.contains("result-conflict"));
    gatos_ok(a, &["jobs", "resolve", &id, "--keep", "local"])?;
    assert!(!doctor_codes(a)?.contains("result-conflict"));
    // The node that archived it reports the pair on its syncs.
    assert_eq!(
        conflict_resolutions(&report)?
            .get(&format!("refs/gatos/jobs/{id}/job"))
            .map(String::as_str),
        Some("kept-both"),
        "{report}"
    );
    for n in [a, b] {
        n.assert_fsck_strict()?;
    }
    Ok(())
}

/// Writes a commit object with the raw text `text` (as `git cat-file commit` prints one) into
/// `repo`, moving no ref; returns its id.
fn copy_of_commit(repo: &TempRepo, text: &str) -> TestResult<String> {
    let mut hash = Command::new("git")
        .args(["hash-object", "-t", "commit", "-w", "--stdin"])
        .current_dir(repo.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    hash.stdin
        .take()
        .ok_or("stdin")?
        .write_all(text.as_bytes())?;
    Ok(String::from_utf8(hash.wait_with_output()?.stdout)?
        .trim()
        .to_owned())
}

/// A trailer's value in a commit message.
fn trailer(text: &str, key: &str) -> TestResult<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .map(str::to_owned)
        .ok_or_else(|| format!("no {key} in {text}").into())
}

/// When both sides appended, this node's messages the hub already holds (a push that
/// landed, its answer lost) are not appended twice. That was decided by ULID alone, so a
/// message at the hub with the ULID of one of this node's and other content (on a topic
/// whose messages are not signed, anyone who can push there can write one) made this node
/// drop its own: reported as nothing, lost at the next `git gc`. Now ULID and content id
/// must both match; this node's message is appended again and the clash reported.
#[test]
fn a_message_with_one_of_this_nodes_ulids_and_other_content_does_not_replace_it() -> TestResult {
    let net = Net::new(2)?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    publish(a, "t", "m0")?;
    publish(a, "t", "m1")?;
    net.sync(0)?;
    net.sync(1)?;
    publish(b, "t", "mine")?;
    let mine = net.head(1, "t")?.ok_or("no head at b")?;
    let ulid = trailer(&b.git(&["cat-file", "commit", &mine])?, "Message-Id")?;

    // The hub appends a message of its own making under that ULID.
    let h = net.hub_head("t")?.ok_or("no hub head")?;
    let top = net.hub.git(&["cat-file", "commit", &h])?;
    let envelope = format!(r#"{{"payload":{{"p":"forged"}},"topic":"t","ulid":"{ulid}"}}"#);
    let id = |k: &str| trailer(&top, k);
    let seq: u64 = id("Seq")?.parse()?;
    let segment_seq: u64 = id("Segment-Seq")?.parse()?;
    let segment_bytes: u64 = id("Segment-Bytes")?.parse()?;
    let tree_of = tree(&net.hub, &[("message/envelope.json", envelope.as_bytes())])?;
    let forged = commit(
        &net.hub,
        &tree_of,
        &[&h],
        &format!(
            "message t {n}\n\nGatos-Kind: message\nTopic: t\nMessage-Id: {ulid}\nContent-Id: {}\nSeq: {n}\nSegment-Seq: {}\nSegment-Bytes: {}\nSegment-Id: {}\nOrigin: {}",
            Digest::of(envelope.as_bytes()),
            segment_seq + 1,
            segment_bytes + envelope.len() as u64,
            id("Segment-Id")?,
            id("Origin")?,
            n = seq + 1,
        ),
    )?;
    set(&net.hub, "refs/gatos/messages/t/head", &forged)?;

    let report = net.sync(1)?;
    assert_eq!(
        conflict_resolutions(&report)?
            .get("refs/gatos/messages/t/head")
            .map(String::as_str),
        Some("kept-local"),
        "{report}"
    );
    let payloads: Vec<String> = read_all(b, "t")?.into_iter().map(|(_, p)| p).collect();
    assert_eq!(payloads, ["m0", "m1", "forged", "mine"], "{report}");
    assert_eq!(net.hub_head("t")?, net.head(1, "t")?);
    b.assert_fsck_strict()?;
    Ok(())
}

/// A message is in a topic once: a hub that appends a message again (the same envelope, so
/// the same signature on a signed topic; the signature covers the message, not its place)
/// is rejected, by a node that holds the first copy below it and by one that holds nothing
/// of the topic yet (a black-box test rebuilt a signed topic's chain in another order with a
/// message twice, and nodes adopted it).
#[test]
fn a_message_appended_again_at_the_hub_is_rejected() -> TestResult {
    let net = Net::new(2)?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    publish(a, "t", "m0")?;
    publish(a, "t", "m1")?;
    net.sync(0)?;
    let head = net.hub_head("t")?.ok_or("no hub head")?;
    let top = net.hub.git(&["cat-file", "commit", &head])?;
    let first = net.hub.git(&["rev-parse", &format!("{head}~1")])?;
    let first = first.trim();
    let old = net.hub.git(&["cat-file", "commit", first])?;
    let envelope = net.hub.git(&[
        "cat-file",
        "blob",
        &format!("{first}:message/envelope.json"),
    ])?;
    let id = |k: &str| trailer(&top, k);
    let seq: u64 = id("Seq")?.parse()?;
    let tree_of = net.hub.git(&["rev-parse", &format!("{first}^{{tree}}")])?;
    let again = commit(
        &net.hub,
        tree_of.trim(),
        &[&head],
        &format!(
            "message t {n}\n\nGatos-Kind: message\nTopic: t\nMessage-Id: {}\nContent-Id: {}\nSeq: {n}\nSegment-Seq: {}\nSegment-Bytes: {}\nSegment-Id: {}\nOrigin: {}",
            trailer(&old, "Message-Id")?,
            trailer(&old, "Content-Id")?,
            id("Segment-Seq")?.parse::<u64>()? + 1,
            id("Segment-Bytes")?.parse::<u64>()? + envelope.len() as u64,
            id("Segment-Id")?,
            trailer(&old, "Origin")?,
            n = seq + 1,
        ),
    )?;
    set(&net.hub, "refs/gatos/messages/t/head", &again)?;
    for (i, node) in [(0, a), (1, b)] {
        let report = net.sync(i)?;
        assert_eq!(
            rejected(&report),
            vec!["refs/gatos/messages/t/head".to_owned()],
            "node {i}: {report}"
        );
        let codes = rejected_codes(&report)?;
        assert_eq!(
            codes["refs/gatos/messages/t/head"], "InvalidEnvelope",
            "{report}"
        );
        assert!(
            report["rejected"][0]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("a message is in a topic once")),
            "node {i}: {report}"
        );
        assert_ne!(net.head(i, "t")?.as_deref(), Some(again.as_str()));
        node.assert_fsck_strict()?;
    }
    let payloads: Vec<String> = read_all(a, "t")?.into_iter().map(|(_, p)| p).collect();
    assert_eq!(payloads, ["m0", "m1"]);
    Ok(())
}

/// Where both sides appended after a segment ended at their last common message, the hub
/// deleting that segment's sealed ref made this node drop its own in the re-append (it
/// read the hub's newest message for its first after the fork). Now the ref stays here and
/// goes back to the hub.
#[test]
fn a_sealed_segment_deleted_at_the_hub_survives_a_reappend() -> TestResult {
    let net = Net::new(2)?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    rotating_topic(&net, 3)?;
    // Both go on from the full first segment: each seals it at m2.
    publish(b, "t", "x")?;
    publish(a, "t", "y")?;
    publish(a, "t", "z")?;
    net.sync(0)?;
    let segments = sealed_refs(&net.hub)?;
    let (first, value) = segments.iter().next().ok_or("no sealed segment")?;
    assert_eq!(sealed_refs(b)?.get(first), Some(value));
    net.hub.git(&["update-ref", "-d", first])?;

    let report = net.sync(1)?;
    assert_eq!(sealed_refs(b)?.get(first), Some(value), "{report}");
    assert_eq!(sealed_refs(&net.hub)?.get(first), Some(value), "{report}");
    let payloads: Vec<String> = read_all(b, "t")?.into_iter().map(|(_, p)| p).collect();
    assert_eq!(payloads, ["m0", "m1", "m2", "y", "z", "x"], "{report}");
    b.assert_fsck_strict()?;
    Ok(())
}

/// What a chain names as a segment's last counts only from the hub's head, once it
/// passed: a walk of one of the hub's sealed refs proves nothing about the chain this node
/// holds. A hub that moved the first segment back by a message and added a one-message
/// segment of its own making naming that earlier message as the one before it made a node
/// take the moved-back value (as the chain's word) and leave the first segment's last
/// message to `git gc`.
#[test]
fn a_made_up_segment_cannot_vouch_for_a_moved_back_one() -> TestResult {
    let net = Net::new(2)?;
    let b = &net.nodes[1];
    rotating_topic(&net, 7)?;
    let segments = sealed_refs(b)?;
    let mut it = segments.iter();
    let (first, first_value) = it.next().ok_or("no segment")?;
    let (second, second_value) = it.next().ok_or("no second segment")?;
    let back = net
        .hub
        .git(&["rev-parse", &format!("{first_value}~1")])?
        .trim()
        .to_owned();
    // The second segment's first message, made up again: its ULID, at the seq after
    // `back`, starting a segment that follows `back`.
    let start = net
        .hub
        .git(&["rev-list", "--max-parents=0", second_value])?
        .trim()
        .to_owned();
    let start_text = net.hub.git(&["cat-file", "commit", &start])?;
    let ulid = trailer(&start_text, "Message-Id")?;
    let seq: u64 = trailer(&net.hub.git(&["cat-file", "commit", &back])?, "Seq")?.parse()?;
    let envelope = format!(r#"{{"payload":{{"p":"made up"}},"topic":"t","ulid":"{ulid}"}}"#);
    let made_up = commit(
        &net.hub,
        &tree(&net.hub, &[("message/envelope.json", envelope.as_bytes())])?,
        &[],
        &format!(
            "message t {n}\n\nGatos-Kind: message\nTopic: t\nMessage-Id: {ulid}\nContent-Id: {}\nSeq: {n}\nSegment-Seq: 1\nSegment-Bytes: {}\nSegment-Id: {ulid}\nPrev-Segment: {back}\nOrigin: {}",
            Digest::of(envelope.as_bytes()),
            envelope.len(),
            trailer(&start_text, "Origin")?,
            n = seq + 1,
        ),
    )?;
    set(&net.hub, first, &back)?;
    set(&net.hub, second, &made_up)?;

    let report = net.sync(1)?;
    assert_eq!(sealed_refs(b)?, segments, "b kept its segments: {report}");
    assert_eq!(
        sealed_refs(&net.hub)?,
        segments,
        "put back at the hub: {report}"
    );
    assert_eq!(read_all(b, "t")?.len(), 7);
    b.assert_fsck_strict()?;
    Ok(())
}

/// The settings of topic `t`.
const SETTINGS_T: &str = "refs/gatos/config/topics/t";

/// The first node sets topic `t`'s settings, then turns signing on, and both nodes sync:
/// the first settings commit (signing off) and the second, as the second node holds it.
fn signing_turned_on(net: &Net) -> TestResult<(String, String)> {
    let a = &net.nodes[0];
    gatos_ok(a, &["messages", "config", "t", "--max-messages", "100"])?;
    let unsigned = a.rev_parse(SETTINGS_T)?.ok_or("no setting")?;
    gatos_ok(a, &["messages", "config", "t", "--sign", "on"])?;
    net.sync(0)?;
    net.sync(1)?;
    let signed = net.nodes[1]
        .rev_parse(SETTINGS_T)?
        .ok_or("no setting at b")?;
    Ok((unsigned, signed))
}

/// Topic `t`'s messages still need a trusted signature at `node`.
fn assert_signing_on(node: &TempRepo) -> TestResult {
    let shown: Value =
        serde_json::from_str(gatos_ok(node, &["messages", "config", "t", "--json"])?.trim())?;
    assert_eq!(shown["sign"], json!(true), "{shown}");
    Ok(())
}

/// A commit of a setting is signed over its content, its trailers and now its place on
/// the chain (`Version`), not its parents. Where both sides had changed a setting, the
/// hub's value won: so a hub could put an older signed value of a topic's settings on a
/// chain of its own (turning the topic's `sign` off again, after which its unsigned
/// messages pass) and every node took it. Now a value at an earlier place than this node's
/// does not win: this node's stands, is put back at the hub, and the conflict is reported.
#[test]
fn an_older_setting_put_back_at_the_hub_does_not_win() -> TestResult {
    let net = Net::new(2)?;
    let b = &net.nodes[1];
    let (unsigned, signed) = signing_turned_on(&net)?;
    // The hub puts the first value on a chain of its own (a copy: same tree, trailers and
    // signature, another committer time).
    let text = net.hub.git(&["cat-file", "commit", &unsigned])?;
    let copy: String = text
        .lines()
        .filter(|l| !l.starts_with("parent "))
        .map(|l| match l.strip_prefix("committer ") {
            Some(rest) => format!("committer {}\n", rest.replace(" +0000", "1 +0000")),
            None => format!("{l}\n"),
        })
        .collect();
    let copied = copy_of_commit(&net.hub, &copy)?;
    assert_ne!(copied, unsigned);
    set(&net.hub, SETTINGS_T, &copied)?;

    let report = net.sync(1)?;
    assert_eq!(
        conflict_resolutions(&report)?
            .get(SETTINGS_T)
            .map(String::as_str),
        Some("kept-local"),
        "{report}"
    );
    assert_eq!(b.rev_parse(SETTINGS_T)?, Some(signed.clone()), "{report}");
    assert_eq!(net.hub.rev_parse(SETTINGS_T)?, Some(signed), "{report}");
    assert_signing_on(b)
}

/// The rule above lets honest nodes settle: each side set values back and forth on its
/// own (one set back a value the other had replaced, and the other the reverse); the
/// value further along its chain stands (the hub's on a tie), and the next syncs report
/// nothing.
#[test]
fn settings_changed_back_and_forth_on_two_nodes_settle() -> TestResult {
    let net = Net::new(2)?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    let set_max =
        |n: &TempRepo, v: &str| gatos_ok(n, &["messages", "config", "t", "--max-messages", v]);
    set_max(a, "10")?;
    net.sync(0)?;
    net.sync(1)?;
    set_max(b, "20")?;
    net.sync(1)?;
    net.sync(0)?;
    // Offline: a sets 10 again; b sets 30, then 20 again.
    set_max(a, "10")?;
    set_max(b, "30")?;
    set_max(b, "20")?;
    net.sync(0)?;
    net.sync(1)?;
    net.sync(0)?;
    let value = a.rev_parse(SETTINGS_T)?;
    assert_eq!(b.rev_parse(SETTINGS_T)?, value);
    assert_eq!(net.hub.rev_parse(SETTINGS_T)?, value);
    for i in [0, 1, 0, 1] {
        let report = net.sync(i)?;
        assert_eq!(report["conflicts"], json!([]), "{report}");
    }
    let shown: Value =
        serde_json::from_str(gatos_ok(a, &["messages", "config", "t", "--json"])?.trim())?;
    assert_eq!(
        shown["max_messages"],
        json!(20),
        "b's value, further along: {shown}"
    );
    Ok(())
}

/// Nor can a hub put the copy of an older setting on this node's tip, as a fast-forward: it
/// keeps the place it was signed at, which does not follow the tip's, and is rejected.
#[test]
fn an_older_setting_put_on_this_nodes_tip_is_rejected() -> TestResult {
    let net = Net::new(2)?;
    let b = &net.nodes[1];
    let (unsigned, signed) = signing_turned_on(&net)?;
    let copy: String = net
        .hub
        .git(&["cat-file", "commit", &unsigned])?
        .lines()
        .map(|l| {
            if l.starts_with("tree ") {
                format!("{l}\nparent {signed}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let copied = copy_of_commit(&net.hub, &copy)?;
    set(&net.hub, SETTINGS_T, &copied)?;

    let report = net.sync(1)?;
    assert_eq!(
        rejected_codes(&report)?.get(SETTINGS_T).map(String::as_str),
        Some("InvalidEnvelope"),
        "{report}"
    );
    assert_eq!(b.rev_parse(SETTINGS_T)?, Some(signed), "{report}");
    assert_signing_on(b)
}

/// The commits of `name`'s first-parent chain in `repo`, newest first.
fn chain(repo: &TempRepo, name: &str) -> TestResult<Vec<String>> {
    Ok(repo
        .git(&["rev-list", "--first-parent", name])?
        .lines()
        .map(str::to_owned)
        .collect())
}

/// A worker killed when dropped: a test that fails on the way leaves none behind.
struct Worker(Option<Child>);

impl Worker {
    /// Waits for the worker to exit, with a deadline.
    fn finish(mut self) -> TestResult<Output> {
        finish(
            self.0.take().ok_or("no worker")?,
            "the worker to end",
            Duration::from_secs(60),
        )
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A job of the first node running `sh -c script`, synced to the hub; returns its id.
fn a_job_at_the_hub(net: &Net, script: &str) -> TestResult<String> {
    let id = id_of(&gatos_ok(
        &net.nodes[0],
        &["jobs", "enqueue", "--json", "--", "sh", "-c", script],
    )?)?;
    net.sync(0)?;
    Ok(id)
}

/// A job that runs until `go` exists, claimed at the hub by a worker of the first node whose
/// claim and two heartbeats are there. Returns the job's id, the `go` file, the worker and
/// the claim chain's first commit.
fn a_claim_at_the_hub(net: &Net) -> TestResult<(String, std::path::PathBuf, Worker, String)> {
    let a = &net.nodes[0];
    let go = jobs_shared(a).join("go");
    let id = a_job_at_the_hub(
        net,
        &format!("while [ ! -e {} ]; do sleep 0.05; done", go.display()),
    )?;
    let claim = format!("refs/gatos/jobs/{id}/claim");
    let w = Worker(Some(spawn_worker(
        a,
        &["--once", "--id", "w", "--lease", "3s"],
    )?));
    wait_for("two heartbeats at the hub", Duration::from_secs(60), || {
        chain(&net.hub, &claim).is_ok_and(|c| c.len() >= 3)
    })?;
    let first = chain(&net.hub, &claim)?.pop().ok_or("no claim")?;
    Ok((id, go, w, first))
}

/// Moves the hub's claim back to `first` by compare-and-swap on the value read (a heartbeat
/// landing meanwhile is not lost to the test); returns the chain moved back (newest first).
fn move_claim_back(net: &Net, claim: &str, first: &str) -> TestResult<Vec<String>> {
    let mut moved = Vec::new();
    wait_for(
        "the claim moved back at the hub",
        Duration::from_secs(60),
        || {
            let Ok(c) = chain(&net.hub, claim) else {
                return false;
            };
            let cas = net.hub.git_output(&["update-ref", claim, first, &c[0]]);
            if cas.is_ok_and(|o| o.status.success()) {
                moved = c;
            }
            !moved.is_empty()
        },
    )?;
    Ok(moved)
}

/// Installs a `pre-receive` hook at the hub.
fn hub_hook(net: &Net, script: &str) -> TestResult {
    let hook = net.hub.git_dir().join("hooks").join("pre-receive");
    std::fs::create_dir_all(hook.parent().ok_or("hooks")?)?;
    std::fs::write(&hook, format!("#!/bin/sh\n{script}"))?;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// The worker's `arbiter.claim_put_back` audit record of a job.
fn put_back_record(node: &TempRepo, id: &str) -> TestResult<Value> {
    let audit = json_lines(&gatos_ok(node, &["audit", "--json"])?)?;
    let rec = audit
        .into_iter()
        .find(|r| r["action"] == "arbiter.claim_put_back")
        .ok_or("no arbiter.claim_put_back record")?;
    assert_eq!(rec["target"], format!("job:{id}"), "{rec}");
    Ok(rec)
}

/// Asserts that every commit of `commits` is on `name`'s chain in `repo`.
fn assert_on_chain(repo: &TempRepo, name: &str, commits: &[String]) -> TestResult {
    let c = chain(repo, name)?;
    assert!(
        commits.iter().all(|x| c.contains(x)),
        "{c:?} lacks some of {commits:?}"
    );
    Ok(())
}

/// Lets the job of [`a_claim_at_the_hub`] end; asserts that its result landed and that the
/// claim's chain holds `kept`, on the first node and at the hub.
fn finish_keeping(
    net: &Net,
    go: std::path::PathBuf,
    w: Worker,
    claim: &str,
    kept: &[String],
) -> TestResult {
    std::fs::write(&go, b"")?;
    let row = only_row(&w.finish()?)?;
    assert!(row["commit"].is_string(), "{row}");
    assert_on_chain(&net.nodes[0], claim, kept)?;
    assert_on_chain(&net.hub, claim, kept)
}

/// A worker that claims at the hub (`--remote`) does not take back an earlier commit of its
/// claim that the hub was moved to (its heartbeats dropped there): it puts its own back
/// with a lease on the hub's value, as a sync does, audits that, and finishes the job on
/// top of it. Before, it took the hub's value and its heartbeats were lost everywhere.
#[test]
fn a_claim_moved_back_at_the_hub_is_put_back_by_the_worker_that_holds_it() -> TestResult {
    let net = Net::new(1)?;
    let a = &net.nodes[0];
    let (id, go, w, first) = a_claim_at_the_hub(&net)?;
    let claim = format!("refs/gatos/jobs/{id}/claim");
    let moved = move_claim_back(&net, &claim, &first)?;
    let dropped = &moved[0];
    // The worker's next heartbeat puts them back, and goes on from them.
    wait_for(
        "the dropped heartbeats back at the hub",
        Duration::from_secs(60),
        || chain(&net.hub, &claim).is_ok_and(|c| c.contains(dropped) && c[0] != *dropped),
    )?;
    // Nothing of the claim chain was lost, here or at the hub.
    finish_keeping(&net, go, w, &claim, &moved)?;
    assert_eq!(a.rev_parse(&claim)?, net.hub.rev_parse(&claim)?);
    let rec = put_back_record(a, &id)?;
    assert_eq!(rec["before"]["claim"], first.as_str(), "{rec}");
    assert_eq!(rec["after"]["claim"], dropped.as_str(), "{rec}");
    a.assert_fsck_strict()?;
    Ok(())
}

/// A hub that moved a claim back and refuses this node's commits back: the worker keeps its
/// claim here and stops the job when its lease ends, as with a hub it cannot reach.
#[test]
fn a_claim_moved_back_at_a_hub_that_refuses_it_back_is_kept_here() -> TestResult {
    let net = Net::new(1)?;
    let a = &net.nodes[0];
    let (id, _go, w, first) = a_claim_at_the_hub(&net)?;
    let claim = format!("refs/gatos/jobs/{id}/claim");
    // The hub refuses every update of the claim from its first commit: the heartbeats
    // before the move landed, the commits put back after it do not.
    hub_hook(
        &net,
        &format!(
            "while read old new name; do\n  if [ \"$old\" = {first} ]; then echo 'this claim is frozen here' >&2; exit 1; fi\ndone\n"
        ),
    )?;
    let moved = move_claim_back(&net, &claim, &first)?;
    let out = w.finish()?;
    assert!(only_row(&out)?["commit"].is_null());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refused this node's back"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_on_chain(a, &claim, &moved)?;
    assert_eq!(
        net.hub.rev_parse(&claim)?.as_deref(),
        Some(moved[moved.len() - 1].as_str())
    );
    a.assert_fsck_strict()?;
    Ok(())
}

/// The hub's claim moved back while a worker's heartbeat is on its way: the push's lease
/// fails at the hub (the hook moves the claim between the hub's advertisement and its
/// update, as a concurrent writer would); the worker puts its claim back, finds the hub
/// holding what the heartbeat was leased on, and pushes the heartbeat again. Before, the
/// heartbeat counted as a claim taken over and the job was stopped.
#[test]
fn a_claim_moved_back_during_a_heartbeat_is_put_back_and_the_heartbeat_made() -> TestResult {
    let net = Net::new(1)?;
    let a = &net.nodes[0];
    let (id, go, w, first) = a_claim_at_the_hub(&net)?;
    let claim = format!("refs/gatos/jobs/{id}/claim");
    let once = net.hub.git_dir().join("move-back-once");
    hub_hook(
        &net,
        &format!(
            "if [ -e {once} ]; then rm {once}; env -u GIT_QUARANTINE_PATH git update-ref {claim} {first}; fi\ncat >/dev/null\n",
            once = once.display()
        ),
    )?;
    let before = chain(&net.hub, &claim)?;
    std::fs::write(&once, b"")?;
    wait_for(
        "a heartbeat past the move-back at the hub",
        Duration::from_secs(60),
        || {
            !once.exists()
                && chain(&net.hub, &claim)
                    .is_ok_and(|c| c.len() > before.len() && before.iter().all(|x| c.contains(x)))
        },
    )?;
    finish_keeping(&net, go, w, &claim, &before)?;
    let rec = put_back_record(a, &id)?;
    assert_eq!(rec["before"]["claim"], first.as_str(), "{rec}");
    a.assert_fsck_strict()?;
    Ok(())
}

/// A worker through the hub never replaces a cancel this node holds with another one the hub
/// has (create-only, as a sync keeps it): the job stops for this node's cancel, whose actor
/// and reason stay here.
#[test]
fn a_cancel_held_here_is_not_replaced_by_the_hubs_when_a_worker_stops_the_job() -> TestResult {
    let net = Net::new(2)?;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    let started = jobs_shared(a).join("started");
    let id = a_job_at_the_hub(&net, &format!("touch {}; sleep 120", started.display()))?;
    net.sync(1)?;
    let cancel = format!("refs/gatos/jobs/{id}/cancel");
    // A heartbeat every 10 s: the worker, frozen right after its job started, holds no
    // lock while frozen, and its next heartbeat (which fetches the job's refs, then reads
    // the cancel) comes after both cancels.
    let w = Worker(Some(spawn_worker(
        a,
        &["--once", "--id", "w", "--lease", "30s"],
    )?));
    wait_for("the job to start", Duration::from_secs(60), || {
        started.exists()
    })?;
    // Frozen while both nodes cancel: b's cancel reaches the hub, a's stays here.
    let pid = w.0.as_ref().ok_or("no worker")?.id();
    signal(pid, "-STOP")?;
    let cancelled = (|| -> TestResult<String> {
        gatos_ok(b, &["jobs", "cancel", &id, "--reason", "on b"])?;
        net.sync(1)?;
        assert!(net.hub.rev_parse(&cancel)?.is_some());
        gatos_ok(a, &["jobs", "cancel", &id, "--reason", "on a"])?;
        Ok(a.rev_parse(&cancel)?.ok_or("no cancel on a")?)
    })();
    signal(pid, "-CONT")?;
    let ours = cancelled?;
    let out = w.finish()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(a.rev_parse(&cancel)?.as_deref(), Some(ours.as_str()));
    let show: Value = serde_json::from_str(gatos_ok(a, &["jobs", "show", &id, "--json"])?.trim())?;
    assert_eq!(show["state"], "cancelled", "{show}");
    let doc: Value = serde_json::from_str(&a.git(&["show", &format!("{cancel}:cancel.json")])?)?;
    assert_eq!(doc["reason"], "on a", "{doc}");
    // The next sync reports the two cancels, each side keeping its own.
    let report = net.sync(0)?;
    assert_eq!(
        conflict_resolutions(&report)?
            .get(cancel.as_str())
            .map(String::as_str),
        Some("kept-both"),
        "{report}"
    );
    a.assert_fsck_strict()?;
    Ok(())
}
