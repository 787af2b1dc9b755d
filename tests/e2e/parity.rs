//! Parity of the faces: every operation the CLI and gatosd both offer, run through
//! `git gatos … --json` and through `gatosd --stdio` on the same repository, answers the
//! same (ADR 0025). Reads of one state are compared byte for byte; writes, which make new
//! ids and commits, are compared after masking those, and then read back through the
//! other face.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use gatos_api::ops::{Faces, OPS};
use gatos_testutil::{TempRepo, TestResult, bin, hermetic};
use serde_json::{Value, json};

use crate::support::{gatos_cmd, json_lines};

/// The fixed clock both faces run on. Each process starts at this instant, so each gets a
/// seed of its own (the daemon 1, CLI runs 2, 3, …): their ids differ but are reproducible.
const CLOCK: &str = "2026-01-02T03:04:05Z";

static SEED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(2);

fn seeded(mut cmd: Command) -> Command {
    let seed = SEED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    cmd.env("GATOS_TEST_CLOCK", CLOCK)
        .env("GATOS_TEST_SEED", seed.to_string());
    cmd
}

fn cli(repo: &TempRepo, args: &[&str]) -> TestResult<Vec<Value>> {
    let mut cmd = seeded(gatos_cmd(repo, args));
    cmd.stdin(Stdio::null());
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(format!(
            "git-gatos {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    json_lines(&String::from_utf8(out.stdout)?)
}

fn cli_one(repo: &TempRepo, args: &[&str]) -> TestResult<Value> {
    let mut rows = cli(repo, args)?;
    assert_eq!(rows.len(), 1, "{args:?} printed {rows:?}");
    Ok(rows.remove(0))
}

struct Daemon {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next: u64,
}

impl Daemon {
    fn start(repo: &TempRepo) -> TestResult<Daemon> {
        Daemon::start_with(repo, &[])
    }

    fn start_with(repo: &TempRepo, args: &[&str]) -> TestResult<Daemon> {
        let mut cmd = Command::new(bin("gatosd"));
        cmd.arg("--stdio")
            .args(args)
            .current_dir(repo.path())
            .env("GATOS_TEST_CLOCK", CLOCK)
            .env("GATOS_TEST_SEED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        hermetic(&mut cmd, &repo.home());
        let mut child = cmd.spawn()?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        Ok(Daemon {
            child,
            stdin,
            stdout,
            next: 1,
        })
    }

    fn call(&mut self, method: &str, params: Value) -> TestResult<Value> {
        let v = self.call_raw(method, params)?;
        if let Some(e) = v.get("error") {
            return Err(format!("{method}: {e}").into());
        }
        Ok(v["result"].clone())
    }

    /// The whole response, an error included.
    fn call_raw(&mut self, method: &str, params: Value) -> TestResult<Value> {
        let id = self.next;
        self.next += 1;
        let req = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        writeln!(self.stdin, "{req}")?;
        self.stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        Ok(serde_json::from_str(&line)?)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Replaces what differs between two writes of the same request: ids, commits, digests,
/// times, positions.
fn mask(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let volatile = matches!(
                        k.as_str(),
                        "ulid"
                            | "id"
                            | "commit"
                            | "content_id"
                            | "job_content_id"
                            | "seq"
                            | "created_at"
                            | "enqueued_at"
                            | "available_at"
                            | "run_after"
                            | "version"
                            | "since"
                            | "next_since"
                            | "landed"
                            | "actor"
                            | "by"
                            | "at"
                            | "retry_of"
                            | "next_cursor"
                    );
                    let masked = if volatile && !v.is_null() {
                        json!("<masked>")
                    } else {
                        mask(v)
                    };
                    (k.clone(), masked)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(mask).collect()),
        other => other.clone(),
    }
}

#[test]
fn every_operation_answers_the_same_through_the_cli_and_gatosd() -> TestResult {
    let repo = TempRepo::new()?;
    let hub = TempRepo::bare()?;
    crate::support::gatos_ok(&repo, &["init"])?;
    let hub_path = hub.path().to_string_lossy().into_owned();
    repo.git(&["remote", "add", "origin", &hub_path])?;
    let mut d = Daemon::start(&repo)?;
    let manifest = repo.root().join("m.json");
    std::fs::write(&manifest, r#"{"command": ["true"], "queue": "q"}"#)?;
    let batch = repo.root().join("b.jsonl");
    std::fs::write(&batch, "{\"n\": 1}\n{\"n\": 2}\n")?;
    let manifest_s = manifest.to_string_lossy().into_owned();
    let batch_s = batch.to_string_lossy().into_owned();

    let mut covered: Vec<&str> = Vec::new();

    // messages.publish
    let a = cli_one(
        &repo,
        &["messages", "publish", "t", "--data", r#"{"x":1}"#, "--json"],
    )?;
    let b = d.call(
        "messages.publish",
        json!({"topic": "t", "payload": {"x": 1}}),
    )?;
    assert_eq!(mask(&a), mask(&b), "messages.publish");
    covered.push("messages.publish");

    // messages.publish_batch: the CLI prints one row per message, the RPC the rows.
    let a = cli(
        &repo,
        &["messages", "publish", "t", "--batch", &batch_s, "--json"],
    )?;
    let b = d.call(
        "messages.publish_batch",
        json!({"topic": "t", "messages": [{"payload": {"n": 1}}, {"payload": {"n": 2}}]}),
    )?;
    assert_eq!(
        mask(&json!(a)),
        mask(&b["results"]),
        "messages.publish_batch"
    );
    assert_eq!(b["landed"], 2);
    covered.push("messages.publish_batch");

    // messages.read: rows of the same state, byte for byte.
    let a = cli(&repo, &["messages", "read", "t", "--json"])?;
    let b = d.call("messages.read", json!({"topic": "t"}))?;
    assert_eq!(json!(a), b["messages"], "messages.read");
    // From a time: the CLI's --since TIME is the operation's since_time.
    let a = cli(
        &repo,
        &[
            "messages",
            "read",
            "t",
            "--since",
            "2026-01-01T00:00:00Z",
            "--json",
        ],
    )?;
    let b = d.call(
        "messages.read",
        json!({"topic": "t", "since_time": "2026-01-01T00:00:00Z"}),
    )?;
    assert_eq!(json!(a), b["messages"], "messages.read since_time");
    let bad = d.call_raw(
        "messages.read",
        json!({"topic": "t", "since_seq": 1, "since_time": "2026-01-01T00:00:00Z"}),
    )?;
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
    covered.push("messages.read");

    // topics.list
    let a = cli(&repo, &["messages", "topics", "--json"])?;
    let b = d.call("topics.list", json!({}))?;
    assert_eq!(json!(a), b["topics"], "topics.list");
    covered.push("topics.list");

    // checkpoints.set / checkpoints.get
    let first = b["topics"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["topic"] == "t"))
        .ok_or("topic t listed")?
        .clone();
    assert!(first["last_seq"].as_u64().unwrap_or(0) >= 6, "{first}");
    let page = d.call("messages.read", json!({"topic": "t", "limit": 2}))?;
    let (u1, u2) = (
        page["messages"][0]["ulid"]
            .as_str()
            .ok_or("ulid")?
            .to_owned(),
        page["messages"][1]["ulid"]
            .as_str()
            .ok_or("ulid")?
            .to_owned(),
    );
    let a = cli_one(
        &repo,
        &["messages", "checkpoint", "set", "g1", "t", &u1, "--json"],
    )?;
    let b = d.call(
        "checkpoints.set",
        json!({"group": "g2", "topic": "t", "ulid": u1}),
    )?;
    let strip_group = |v: &Value| {
        let mut v = v.clone();
        v["group"] = json!("<group>");
        v["commit"] = json!("<commit>");
        v
    };
    assert_eq!(strip_group(&a), strip_group(&b), "checkpoints.set");
    covered.push("checkpoints.set");
    let a = cli_one(
        &repo,
        &["messages", "checkpoint", "get", "g1", "t", "--json"],
    )?;
    let b = d.call("checkpoints.get", json!({"group": "g1", "topic": "t"}))?;
    assert_eq!(a, b, "checkpoints.get");
    covered.push("checkpoints.get");
    // The other face reads what this one wrote.
    let b2 = d.call(
        "checkpoints.set",
        json!({"group": "g1", "topic": "t", "ulid": u2}),
    )?;
    let a2 = cli_one(
        &repo,
        &["messages", "checkpoint", "get", "g1", "t", "--json"],
    )?;
    assert_eq!(a2["ulid"], b2["ulid"]);

    // checkpoints.list: every checkpoint (by group, then topic), then one group's on a topic.
    let a = cli(&repo, &["messages", "checkpoint", "ls", "--json"])?;
    let b = d.call("checkpoints.list", json!({}))?;
    assert_eq!(json!(a), b["checkpoints"], "checkpoints.list");
    let groups: Vec<&Value> = a.iter().map(|r| &r["group"]).collect();
    assert_eq!(groups, [&json!("g1"), &json!("g2")], "{b}");
    let a = cli(
        &repo,
        &[
            "messages",
            "checkpoint",
            "ls",
            "t",
            "--group",
            "g2",
            "--json",
        ],
    )?;
    let b = d.call("checkpoints.list", json!({"topic": "t", "group": "g2"}))?;
    assert_eq!(
        json!(a),
        b["checkpoints"],
        "checkpoints.list of a group on a topic"
    );
    assert_eq!(b["checkpoints"].as_array().map(Vec::len), Some(1), "{b}");
    let none = d.call("checkpoints.list", json!({"topic": "other"}))?;
    assert_eq!(none["checkpoints"], json!([]));
    covered.push("checkpoints.list");

    // messages.ack: forward moves answer alike; the other face reads the result.
    let u3 = d.call("messages.read", json!({"topic": "t", "limit": 3}))?["messages"][2]["ulid"]
        .as_str()
        .ok_or("ulid")?
        .to_owned();
    let a = cli_one(&repo, &["messages", "ack", "g1", "t", &u3, "--json"])?;
    let b = d.call(
        "messages.ack",
        json!({"group": "g2", "topic": "t", "ulid": u3}),
    )?;
    let strip_cp = |v: &Value| {
        let mut v = v.clone();
        v["checkpoint"] = strip_group(&v["checkpoint"]);
        v
    };
    assert_eq!(strip_cp(&a), strip_cp(&b), "messages.ack");
    assert_eq!(a["moved"], true);
    covered.push("messages.ack");

    // jobs.enqueue (the daemon has no work tree of the caller's: no checkout on either)
    let a = cli_one(
        &repo,
        &[
            "jobs",
            "enqueue",
            "--json",
            "--queue",
            "q",
            "--no-checkout",
            "--",
            "true",
        ],
    )?;
    let b = d.call(
        "jobs.enqueue",
        json!({"queue": "q", "command": ["true"], "checkout": false}),
    )?;
    assert_eq!(mask(&a), mask(&b), "jobs.enqueue");
    covered.push("jobs.enqueue");
    let (ja, jb) = (
        a["id"].as_str().ok_or("id")?.to_owned(),
        b["id"].as_str().ok_or("id")?.to_owned(),
    );

    // jobs.get, across faces: each reads the job the other enqueued.
    let a = cli_one(&repo, &["jobs", "show", &jb, "--json"])?;
    let b = d.call("jobs.get", json!({"id": jb}))?;
    assert_eq!(a, b, "jobs.get");
    let b = d.call("jobs.get", json!({"id": ja}))?;
    let a = cli_one(&repo, &["jobs", "show", &ja, "--json"])?;
    assert_eq!(a, b, "jobs.get");
    covered.push("jobs.get");

    // jobs.why, against a worker's options: the same answer from both faces.
    let a = cli_one(
        &repo,
        &["jobs", "why", &jb, "--queue", "q", "--cap", "gpu", "--json"],
    )?;
    let b = d.call(
        "jobs.why",
        json!({"id": jb, "queues": ["q"], "caps": ["gpu"]}),
    )?;
    assert_eq!(a, b, "jobs.why");
    assert_eq!(b["claimable"], true, "{b}");
    let a = cli_one(&repo, &["jobs", "why", &ja, "--json"])?;
    let b = d.call("jobs.why", json!({"id": ja}))?;
    assert_eq!(a, b, "jobs.why");
    assert_eq!(b["claimable"], false, "queue q is not the default: {b}");
    covered.push("jobs.why");

    // jobs.list: all of a queue, then a page of one and the next from its cursor, and the
    // filters the catalog serves.
    let a = cli(&repo, &["jobs", "ls", "--json", "--queue", "q"])?;
    let b = d.call("jobs.list", json!({"queue": "q"}))?;
    assert_eq!(json!(a), b["jobs"], "jobs.list");
    assert_eq!(b["next_cursor"], Value::Null);
    let a = cli(
        &repo,
        &["jobs", "ls", "--json", "--queue", "q", "--limit", "1"],
    )?;
    let b = d.call("jobs.list", json!({"queue": "q", "limit": 1}))?;
    assert_eq!(json!(a[0]), b["jobs"][0], "jobs.list page");
    assert_eq!(a[1]["next_cursor"], b["next_cursor"], "jobs.list cursor");
    assert_eq!(b["next_cursor"], json!(ja));
    let a = cli(&repo, &["jobs", "ls", "--json", "--after", &ja])?;
    let b = d.call("jobs.list", json!({"cursor": ja}))?;
    assert_eq!(json!(a), b["jobs"], "jobs.list after a cursor");
    assert_eq!(b["jobs"][0]["id"], json!(jb));
    for (flag, value, member) in [
        ("--enqueuer", "cli:gatos", "enqueuer"),
        ("--id-prefix", &jb[..12], "id_prefix"),
        ("--cap", "nope", "capability"),
    ] {
        let a = cli(&repo, &["jobs", "ls", "--json", flag, value])?;
        let b = d.call("jobs.list", json!({ member: value }))?;
        assert_eq!(json!(a), b["jobs"], "jobs.list {member}");
    }
    let by_cli = d.call("jobs.list", json!({"enqueuer": "cli:gatos"}))?;
    assert!(
        by_cli["jobs"]
            .as_array()
            .is_some_and(|j| j.iter().all(|r| r["id"] != json!(jb))),
        "the daemon's job is not the CLI's: {by_cli}"
    );
    let bad = d.call_raw("jobs.list", json!({"limit": 0}))?;
    assert_eq!(bad["error"]["data"]["code"], "InvalidInput");
    covered.push("jobs.list");

    // jobs.verify of a job without a result: the same report (the CLI then exits 1 with
    // the report's error, as it does for every proof that does not verify).
    let out = seeded(gatos_cmd(&repo, &["jobs", "verify", &ja, "--json"]))
        .stdin(Stdio::null())
        .output()?;
    assert!(!out.status.success());
    let a = json_lines(&String::from_utf8(out.stdout)?)?;
    let b = d.call("jobs.verify", json!({"id": ja}))?;
    assert_eq!(a[0], b, "jobs.verify");
    assert_eq!(b["verified"], false);
    assert!(b.get("poe").is_none(), "no proof yet: {b}");
    assert_eq!(a[1]["error"]["code"], b["code"]);
    covered.push("jobs.verify");

    // jobs.cancel
    let a = cli_one(&repo, &["jobs", "cancel", &ja, "--reason", "r", "--json"])?;
    let b = d.call("jobs.cancel", json!({"id": jb, "reason": "r"}))?;
    assert_eq!(mask(&a), mask(&b), "jobs.cancel");
    // Each face records its own actor.
    assert_eq!(a["enqueuer"]["actor"], "cli:gatos");
    assert_eq!(b["enqueuer"]["actor"], "rpc:stdio");
    covered.push("jobs.cancel");

    // jobs.logs of a finished job (from its result): the CLI prints the chunk the
    // operation answers.
    let done = cli_one(
        &repo,
        &[
            "jobs",
            "enqueue",
            "--json",
            "--queue",
            "lq",
            "--no-checkout",
            "--",
            "echo",
            "hi",
        ],
    )?;
    let done = done["id"].as_str().ok_or("id")?.to_owned();
    crate::support::gatos_ok(
        &repo,
        &["worker", "--once", "--queue", "lq", "--sandbox", "auto"],
    )?;
    let a = cli(
        &repo,
        &["jobs", "logs", &done, "--stream", "stdout", "--json"],
    )?;
    let b = d.call("jobs.logs", json!({"id": done, "stream": "stdout"}))?;
    assert_eq!(a[0], b, "jobs.logs");
    assert_eq!(b["data"], "hi\n");
    assert_eq!(b["done"], true);
    covered.push("jobs.logs");

    // jobs.verify of a job with a proof: the same row on both faces, with the proof as
    // stored (poe.json), so a client can check it again itself.
    let a = cli_one(&repo, &["jobs", "verify", &done, "--json"])?;
    let b = d.call("jobs.verify", json!({"id": done}))?;
    assert_eq!(a, b, "jobs.verify with a proof");
    assert_eq!(b["verified"], true, "{b}");
    let stored: Value = serde_json::from_str(
        &repo.git(&["show", &format!("refs/gatos/jobs/{done}/result:poe.json")])?,
    )?;
    assert_eq!(b["poe"], stored, "the proof as stored");
    assert_eq!(b["poe"]["payloadType"], "application/vnd.in-toto+json");

    // jobs.retry of the two cancelled jobs: new jobs naming the old ones; a pending job
    // is refused alike.
    let a = cli_one(&repo, &["jobs", "retry", &ja, "--json"])?;
    let b = d.call("jobs.retry", json!({"id": jb}))?;
    assert_eq!(mask(&a), mask(&b), "jobs.retry");
    assert_eq!(
        (a["retry_of"].clone(), b["retry_of"].clone()),
        (json!(ja), json!(jb))
    );
    let pending = a["id"].as_str().ok_or("id")?.to_owned();
    let out = seeded(gatos_cmd(&repo, &["jobs", "retry", &pending, "--json"]))
        .stdin(Stdio::null())
        .output()?;
    assert_eq!(
        out.status.code(),
        Some(3),
        "Conflict is a lost race's status"
    );
    let cli_err: Value = serde_json::from_slice(&out.stdout)?;
    let rpc_err = d.call_raw("jobs.retry", json!({"id": pending}))?;
    assert_eq!(cli_err["error"]["code"], rpc_err["error"]["data"]["code"]);
    assert_eq!(cli_err["error"]["message"], rpc_err["error"]["message"]);
    assert_eq!(cli_err["error"]["code"], "Conflict");
    let commit = a["commit"].as_str().ok_or("commit")?;
    let msg = repo.git(&["log", "-1", "--format=%B", commit])?;
    assert!(msg.contains(&format!("Retry-Of: {ja}")), "{msg}");
    covered.push("jobs.retry");

    // manifests.put / get / list / run
    let a = cli_one(&repo, &["manifests", "put", "m1", &manifest_s, "--json"])?;
    let b = d.call(
        "manifests.put",
        json!({"name": "m2", "manifest": {"command": ["true"], "queue": "q"}}),
    )?;
    let strip_name = |v: &Value| {
        let mut v = v.clone();
        v["name"] = json!("<name>");
        v
    };
    assert_eq!(strip_name(&a), strip_name(&b), "manifests.put");
    covered.push("manifests.put");
    let a = cli_one(&repo, &["manifests", "get", "m2", "--json"])?;
    let b = d.call("manifests.get", json!({"name": "m1"}))?;
    assert_eq!(strip_name(&a), strip_name(&b), "manifests.get");
    covered.push("manifests.get");
    let a = cli(&repo, &["manifests", "ls", "--json"])?;
    let b = d.call("manifests.list", json!({}))?;
    assert_eq!(json!(a), b["manifests"], "manifests.list");
    covered.push("manifests.list");
    let a = cli_one(&repo, &["manifests", "run", "m1", "--json"])?;
    let b = d.call("manifests.run", json!({"name": "m1"}))?;
    assert_eq!(mask(&a), mask(&b), "manifests.run");
    covered.push("manifests.run");

    // sync.run against the same hub: the second finds nothing new to send.
    let a = cli_one(&repo, &["sync", "origin", "--json"])?;
    let b = d.call("sync.run", json!({"remote": "origin"}))?;
    assert_eq!(a["remote"], b["remote"]);
    let keys = |v: &Value| -> Vec<String> {
        v.as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    assert_eq!(keys(&a), keys(&b), "sync.run answers the same report");
    assert_eq!(b["pushed"], 0, "nothing new after the CLI's sync: {b}");
    covered.push("sync.run");

    // sync.rejections: the log of rejected refs (two as a sync writes them, one garbled),
    // newest first on both faces.
    let log = repo.git_dir().join("gatos/sync/rejected.jsonl");
    std::fs::create_dir_all(log.parent().ok_or("a parent")?)?;
    let mut text = std::fs::read_to_string(&log).unwrap_or_default();
    for (i, name) in ["refs/gatos/jobs/A/job", "refs/gatos/jobs/B/job"]
        .iter()
        .enumerate()
    {
        text.push_str(&format!(
            "{}\n",
            json!({"at": format!("2026-12-05T01:0{i}:00Z"), "remote": "origin", "ref": name,
                "remote_value": "0123456789012345678901234567890123456789",
                "code": "InvalidEnvelope", "reason": "forged"})
        ));
    }
    text.push_str("not a rejection\n");
    std::fs::write(&log, text)?;
    let a = cli(&repo, &["sync", "--rejected", "--json", "--limit", "5"])?;
    let b = d.call("sync.rejections", json!({"limit": 5}))?;
    assert_eq!(json!(a), b["rejections"], "sync.rejections");
    assert_eq!(b["rejections"][0]["ref"], "refs/gatos/jobs/B/job", "{b}");
    assert_eq!(b["skipped"], 1, "{b}");
    covered.push("sync.rejections");

    // keys.list
    let a = cli(&repo, &["keys", "ls", "--json"])?;
    let b = d.call("keys.list", json!({}))?;
    assert_eq!(json!(a), b["keys"], "keys.list");
    covered.push("keys.list");

    // audit.read: the whole trail (cancels and manifest puts of both faces), one action,
    // and a page with its cursor.
    let a = cli(&repo, &["audit", "--json"])?;
    let b = d.call("audit.read", json!({}))?;
    assert_eq!(json!(a), b["records"], "audit.read");
    let a = cli(&repo, &["audit", "--json", "--action", "jobs.cancel"])?;
    let b = d.call("audit.read", json!({"action": "jobs.cancel"}))?;
    assert_eq!(json!(a), b["records"], "audit.read of one action");
    let actors: Vec<&Value> = a.iter().map(|r| &r["actor"]).collect();
    assert_eq!(actors, vec![&json!("cli:gatos"), &json!("rpc:stdio")]);
    let first = d.call("audit.read", json!({"limit": 1}))?;
    let next = first["next_since"]
        .as_str()
        .ok_or("a next page")?
        .to_owned();
    let a = cli(&repo, &["audit", "--json", "--since", &next])?;
    let b = d.call("audit.read", json!({"since": next}))?;
    assert_eq!(json!(a), b["records"], "audit.read after a cursor");
    covered.push("audit.read");

    // doctor.check: a ref that fits nowhere is a finding, the same on both faces.
    let head = repo.git(&["rev-parse", "refs/gatos/messages/t/head"])?;
    repo.git(&["update-ref", "refs/gatos/stray", head.trim()])?;
    let out = seeded(gatos_cmd(&repo, &["doctor", "--json"]))
        .stdin(Stdio::null())
        .output()?;
    let a = json_lines(&String::from_utf8(out.stdout)?)?;
    let b = d.call("doctor.check", json!({}))?;
    let findings: Vec<Value> = a.into_iter().filter(|r| r.get("error").is_none()).collect();
    assert_eq!(json!(findings), b["findings"], "doctor.check");
    assert!(
        findings.iter().any(|f| f["target"] == "refs/gatos/stray"),
        "{findings:?}"
    );
    repo.git(&["update-ref", "-d", "refs/gatos/stray"])?;
    covered.push("doctor.check");

    // gatos.version
    let out = gatos_cmd(&repo, &["--version"]).output()?;
    let text = String::from_utf8(out.stdout)?;
    let b = d.call("gatos.version", json!({}))?;
    assert!(
        text.trim()
            .ends_with(b["version"].as_str().ok_or("version")?),
        "{text} vs {b}"
    );
    covered.push("gatos.version");

    // snapshots.create, .list, .delete: the same state taken by both faces (nothing moves
    // between them), the same list, and each face deletes the other's.
    let a = cli_one(&repo, &["snapshot", "create", "by-cli", "--json"])?;
    let b = d.call("snapshots.create", json!({"name": "by-rpc"}))?;
    for k in ["state", "refs", "exact"] {
        assert_eq!(a[k], b[k], "snapshots.create: {k}");
    }
    assert_eq!(b["actor"], "rpc:stdio", "{b}");
    let a = cli(&repo, &["snapshot", "ls", "--json"])?;
    let b = d.call("snapshots.list", json!({}))?;
    assert_eq!(json!(a), b["snapshots"], "snapshots.list");
    assert_eq!(a.len(), 2, "{a:?}");
    let a = cli_one(&repo, &["snapshot", "rm", "by-rpc", "--json"])?;
    let b = d.call("snapshots.delete", json!({"name": "by-cli"}))?;
    assert_eq!(a["state"], b["state"], "snapshots.delete");
    let e = d.call_raw("snapshots.delete", json!({"name": "by-cli"}))?;
    assert_eq!(e["error"]["data"]["code"], "NotFound", "{e}");
    assert!(cli(&repo, &["snapshot", "ls", "--json"])?.is_empty());
    covered.extend(["snapshots.create", "snapshots.list", "snapshots.delete"]);

    // Every operation both faces offer has a case above.
    for op in OPS
        .iter()
        .filter(|o| o.faces.has(Faces::CLI) && o.faces.has(Faces::RPC))
    {
        assert!(
            covered.contains(&op.name),
            "{} is offered by the CLI and gatosd but has no parity case",
            op.name
        );
    }
    Ok(())
}

/// `gatosd --read-only` refuses every operation the table marks as a write, whatever the
/// transport, and serves the reads; nothing is written.
#[test]
fn a_read_only_daemon_refuses_every_write_of_the_table() -> TestResult {
    let repo = TempRepo::new()?;
    crate::support::gatos_ok(&repo, &["init"])?;
    crate::support::gatos_ok(&repo, &["messages", "publish", "t", "--data", "{}"])?;
    let before = repo.git(&["for-each-ref", "refs/gatos/"])?;
    let mut d = Daemon::start_with(&repo, &["--read-only"])?;
    for op in OPS.iter().filter(|o| {
        o.faces.has(Faces::RPC)
            && o.access == gatos_api::ops::Access::Write
            && o.shape == gatos_api::ops::Shape::Unary
    }) {
        let r = d.call_raw(op.name, json!({}))?;
        assert_eq!(r["error"]["data"]["code"], "Forbidden", "{}: {r}", op.name);
        assert_eq!(r["error"]["data"]["read_only"], true, "{}", op.name);
    }
    let page = d.call("messages.read", json!({"topic": "t"}))?;
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(1));
    assert_eq!(repo.git(&["for-each-ref", "refs/gatos/"])?, before);
    Ok(())
}
