//! The real gatosd binary: stdio, the Unix socket, signals, kill -9 and restart.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gatos_testutil::{TempRepo, TestResult, bin, hermetic, wait_for};
use serde_json::{Value, json};

use crate::support::{gatos_ok, json_lines};

struct Gatosd {
    child: Child,
    socket: PathBuf,
    /// The token file gatosd makes in the git directory (writes on the socket need it).
    token_file: PathBuf,
}

impl Gatosd {
    fn start(repo: &TempRepo) -> TestResult<Gatosd> {
        let socket = repo.root().join("g.sock");
        let mut cmd = Command::new(bin("gatosd"));
        cmd.args(["--socket", &socket.to_string_lossy()])
            .current_dir(repo.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        hermetic(&mut cmd, &repo.home());
        let child = cmd.spawn()?;
        let d = Gatosd {
            child,
            socket,
            token_file: repo.git_dir().join("gatos/gatosd/token"),
        };
        wait_for(
            "gatosd to accept connections",
            Duration::from_secs(30),
            || UnixStream::connect(&d.socket).is_ok(),
        )?;
        Ok(d)
    }

    fn client(&self) -> TestResult<Client> {
        Client::connect(&self.socket, &self.token_file)
    }

    fn signal(&self, sig: &str) -> TestResult {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()?;
        assert!(status.success());
        Ok(())
    }
}

impl Drop for Gatosd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next: u64,
}

impl Client {
    /// Connects and authenticates with the token from `token_file`, as local clients do.
    fn connect(path: &Path, token_file: &Path) -> TestResult<Client> {
        let s = UnixStream::connect(path)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut c = Client {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
            next: 1,
        };
        let token = std::fs::read_to_string(token_file)?;
        let r = c.call("gatos.auth", json!({"token": token.trim_end()}))?;
        assert_eq!(r["result"]["authenticated"], true, "{r}");
        Ok(c)
    }

    fn call(&mut self, method: &str, params: Value) -> TestResult<Value> {
        let id = self.next;
        self.next += 1;
        writeln!(
            self.writer,
            "{}",
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
        )?;
        loop {
            let v = self.recv()?.ok_or("closed")?;
            if v["id"] == json!(id) {
                return Ok(v);
            }
        }
    }

    fn recv(&mut self) -> TestResult<Option<Value>> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        Ok(Some(serde_json::from_str(&line)?))
    }
}

#[test]
fn stdio_mode_speaks_json_rpc_on_stdout_and_logs_on_stderr() -> TestResult {
    let repo = TempRepo::new()?;
    let mut cmd = Command::new(bin("gatosd"));
    cmd.arg("--stdio")
        .current_dir(repo.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    hermetic(&mut cmd, &repo.home());
    let mut child = cmd.spawn()?;
    let mut stdin = child.stdin.take().ok_or("stdin")?;
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","id":1,"method":"messages.publish","params":{{"topic":"s","payload":{{"a":1}}}}}}"#
    )?;
    writeln!(stdin, "not json")?;
    writeln!(stdin, r#"[{{"jsonrpc":"2.0","method":"gatos.version"}}]"#)?;
    drop(stdin); // EOF: the daemon answers what it read, then exits
    let out = child.wait_with_output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l["id"] == 1 && l["result"]["seq"] == 1)
    );
    assert!(lines.iter().any(|l| l["error"]["code"] == -32700));
    assert!(String::from_utf8_lossy(&out.stderr).contains("connection opened"));
    assert_eq!(
        gatos_ok(&repo, &["messages", "read", "s", "--json"])?
            .lines()
            .count(),
        1
    );
    Ok(())
}

#[test]
fn a_subscription_receives_a_message_published_by_the_cli() -> TestResult {
    let repo = TempRepo::new()?;
    let d = Gatosd::start(&repo)?;
    let mut c = d.client()?;
    let s = c.call("messages.subscribe", json!({"topic": "cli"}))?;
    assert!(s["result"]["subscription"].is_string(), "{s}");
    gatos_ok(
        &repo,
        &["messages", "publish", "cli", "--data", r#"{"from":"cli"}"#],
    )?;
    let event = loop {
        let v = c.recv()?.ok_or("closed")?;
        if v["method"] == "messages.event" {
            break v;
        }
    };
    assert_eq!(
        event["params"]["message"]["payload"],
        json!({"from": "cli"})
    );
    assert_eq!(event["params"]["subscription"], s["result"]["subscription"]);
    Ok(())
}

#[test]
fn sigterm_drains_and_removes_the_socket() -> TestResult {
    let repo = TempRepo::new()?;
    let mut d = Gatosd::start(&repo)?;
    let mut c = d.client()?;
    c.call("messages.publish", json!({"topic": "t", "payload": 1}))?;
    d.signal("-TERM")?;
    let status = d.child.wait()?;
    assert!(status.success(), "{status}");
    assert!(!d.socket.exists());
    repo.assert_fsck_strict()
}

fn head(repo: &TempRepo, topic: &str) -> Option<String> {
    repo.git(&[
        "rev-parse",
        "-q",
        "--verify",
        &format!("refs/gatos/messages/{topic}/head"),
    ])
    .ok()
    .map(|s| s.trim().to_owned())
    .filter(|s| !s.is_empty())
}

/// ADR 0046: gatosd answers a plain publish after one append to the topic's journal; the
/// CLI reads it at once (it makes the journal commits first), plain git sees it within
/// `gatos.journal.flushMs`, and after a SIGTERM.
#[test]
fn a_journaled_publish_is_read_at_once_and_becomes_a_commit_for_git() -> TestResult {
    let repo = TempRepo::new()?;
    // A flush interval longer than the test: only readers and the stop make commits
    // (gatosd's metrics refresher reads what is committed and materializes nothing).
    repo.git(&["config", "gatos.journal.flushMs", "60000"])?;
    let mut d = Gatosd::start(&repo)?;
    let mut c = d.client()?;
    let r = c.call("messages.publish", json!({"topic": "j", "payload": 1}))?;
    let commit = r["result"]["commit"].as_str().ok_or("commit")?.to_owned();
    let journal = repo.git_dir().join("gatos/journal/messages.j");
    assert!(
        std::fs::metadata(&journal)?.len() > 0,
        "answered from the journal"
    );
    assert_eq!(head(&repo, "j"), None, "not yet a commit for plain git");
    let read = json_lines(&gatos_ok(&repo, &["messages", "read", "j", "--json"])?)?;
    assert_eq!(read.len(), 1);
    assert_eq!(read[0]["commit"], json!(commit));
    assert_eq!(
        head(&repo, "j"),
        Some(commit.clone()),
        "the CLI made it a commit"
    );
    // The next publish waits in the journal until gatosd stops.
    let r = c.call("messages.publish", json!({"topic": "j", "payload": 2}))?;
    let second = r["result"]["commit"].as_str().ok_or("commit")?.to_owned();
    assert_eq!(head(&repo, "j"), Some(commit));
    drop(c);
    d.signal("-TERM")?;
    assert!(d.child.wait()?.success());
    assert_eq!(head(&repo, "j"), Some(second));
    assert_eq!(std::fs::metadata(&journal)?.len(), 0);
    // With the default interval, the flusher makes it a commit on its own.
    repo.git(&["config", "--unset", "gatos.journal.flushMs"])?;
    let d = Gatosd::start(&repo)?;
    let mut c = d.client()?;
    let r = c.call("messages.publish", json!({"topic": "j", "payload": 3}))?;
    let third = r["result"]["commit"].as_str().ok_or("commit")?.to_owned();
    wait_for(
        "the flusher to make the publish a commit",
        Duration::from_secs(30),
        || head(&repo, "j").as_deref() == Some(third.as_str()),
    )?;
    drop(c);
    drop(d);
    repo.assert_fsck_strict()
}

fn job_ref(repo: &TempRepo, id: &str) -> Option<String> {
    repo.git(&[
        "rev-parse",
        "-q",
        "--verify",
        &format!("refs/gatos/jobs/{id}/job"),
    ])
    .ok()
    .map(|s| s.trim().to_owned())
    .filter(|s| !s.is_empty())
}

/// ADR 0046: gatosd answers an enqueue after one append to the enqueue journal; the CLI
/// shows and lists the job at once (it makes the journal job refs first), a CLI worker
/// claims it, plain git sees the ref within `gatos.journal.flushMs`, and one acknowledged
/// before a `kill -9` is there for the next CLI command.
#[test]
fn a_journaled_enqueue_is_seen_at_once_and_becomes_a_ref_for_git() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    // A flush interval longer than the test, and no automatic maintenance (a run starts by
    // making every journal commits and refs): only the test's own steps materialize
    // (gatosd's metrics refresher reads what is committed and materializes nothing).
    repo.git(&["config", "gatos.journal.flushMs", "60000"])?;
    repo.git(&["config", "gatos.maintenance.auto", "false"])?;
    let mut d = Gatosd::start(&repo)?;
    let mut c = d.client()?;
    let enqueue = |c: &mut Client| -> TestResult<(String, String)> {
        let r = c.call("jobs.enqueue", json!({"command": ["true"]}))?;
        Ok((
            r["result"]["id"].as_str().ok_or("id")?.to_owned(),
            r["result"]["commit"].as_str().ok_or("commit")?.to_owned(),
        ))
    };
    let (a, a_commit) = enqueue(&mut c)?;
    let journal = repo.git_dir().join("gatos/journal/jobs.enqueued");
    assert!(
        std::fs::metadata(&journal)?.len() > 0,
        "answered from the journal"
    );
    assert_eq!(job_ref(&repo, &a), None, "not yet a ref for plain git");
    let shown: Value = serde_json::from_str(&gatos_ok(&repo, &["jobs", "show", &a, "--json"])?)?;
    assert_eq!(shown["id"], json!(a));
    assert_eq!(job_ref(&repo, &a), Some(a_commit), "the CLI made it a ref");
    // The next one is listed by the CLI at once, and a CLI worker claims and runs both.
    let (b, _) = enqueue(&mut c)?;
    let listed = json_lines(&gatos_ok(&repo, &["jobs", "ls", "--json"])?)?;
    assert!(listed.iter().any(|r| r["id"] == json!(b)), "{listed:?}");
    let (e, _) = enqueue(&mut c)?;
    gatos_ok(
        &repo,
        &[
            "worker",
            "--drain",
            "--quiet",
            "--id",
            "w0",
            "--sandbox",
            "off",
        ],
    )?;
    for id in [&a, &b, &e] {
        let row: Value = serde_json::from_str(&gatos_ok(&repo, &["jobs", "show", id, "--json"])?)?;
        assert_eq!(row["state"], json!("succeeded"), "{row}");
    }
    // Acknowledged, then gatosd is killed: the next CLI command finds it.
    let (k, k_commit) = enqueue(&mut c)?;
    drop(c);
    d.signal("-KILL")?;
    let _ = d.child.wait()?;
    assert_eq!(job_ref(&repo, &k), None);
    let listed = json_lines(&gatos_ok(&repo, &["jobs", "ls", "--json"])?)?;
    assert!(listed.iter().any(|r| r["id"] == json!(k)), "{listed:?}");
    assert_eq!(job_ref(&repo, &k), Some(k_commit));
    // With the default interval the flusher makes it a ref on its own.
    repo.git(&["config", "--unset", "gatos.journal.flushMs"])?;
    let d = Gatosd::start(&repo)?;
    let mut c = d.client()?;
    let (f, f_commit) = enqueue(&mut c)?;
    wait_for(
        "the flusher to make the enqueue a ref",
        Duration::from_secs(30),
        || job_ref(&repo, &f).as_deref() == Some(f_commit.as_str()),
    )?;
    drop(c);
    drop(d);
    repo.assert_fsck_strict()
}

/// gatosd holds the job catalog's lines of the jobs it enqueued (issue #21): it appends
/// them before it lists and when it stops; a CLI listing meanwhile catches those jobs up
/// itself, and a gatosd that has read the catalog does not append those lines again.
#[test]
fn gatosd_appends_the_catalog_lines_it_holds_when_it_stops() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    let path = repo.git_dir().join("gatos/index/jobs/catalog.jsonl");
    let lines = || {
        std::fs::read_to_string(&path)
            .map(|t| t.lines().map(str::to_owned).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let mut d = Gatosd::start(&repo)?;
    let mut c = d.client()?;
    let mut ids = Vec::new();
    let enqueue = |c: &mut Client, q: &str| -> TestResult<String> {
        let r = c.call("jobs.enqueue", json!({"command": ["true"], "queue": q}))?;
        Ok(r["result"]["id"].as_str().ok_or("id")?.to_owned())
    };
    ids.push(enqueue(&mut c, "a")?);
    assert!(lines().is_empty(), "held by gatosd");
    let r = c.call("jobs.list", json!({}))?;
    assert_eq!(r["result"]["jobs"].as_array().map(Vec::len), Some(1), "{r}");
    assert_eq!(lines().len(), 1, "appended before gatosd listed");
    ids.push(enqueue(&mut c, "b")?);
    ids.push(enqueue(&mut c, "c")?);
    let listed = json_lines(&gatos_ok(&repo, &["jobs", "ls", "--queue", "b", "--json"])?)?;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], json!(ids[1]));
    let caught_up = lines();
    assert_eq!(caught_up.len(), 3, "the CLI caught up the jobs it read");
    drop(c);
    d.signal("-TERM")?;
    assert!(d.child.wait()?.success());
    assert_eq!(lines(), caught_up, "nothing appended twice");
    // Jobs no listing caught up are appended at the stop.
    let mut d = Gatosd::start(&repo)?;
    let mut c = d.client()?;
    let r = c.call("jobs.enqueue", json!({"command": ["true"], "queue": "d"}))?;
    let late = r["result"]["id"].as_str().ok_or("id")?.to_owned();
    drop(c);
    d.signal("-TERM")?;
    assert!(d.child.wait()?.success());
    let all = lines();
    assert_eq!(all.len(), 4);
    assert!(all[3].contains(&late), "{all:?}");
    Ok(())
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_message_and_blocks_no_restart() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(
        &repo,
        &["messages", "config", "crash", "--max-messages", "50"],
    )?;
    let mut acked: Vec<String> = Vec::new();
    for round in 0..3 {
        let d = Gatosd::start(&repo)?;
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let mut workers = Vec::new();
        for w in 0..4 {
            let socket = d.socket.clone();
            let token_file = d.token_file.clone();
            let tx = tx.clone();
            workers.push(std::thread::spawn(move || {
                let Ok(mut c) = Client::connect(&socket, &token_file) else {
                    return;
                };
                for i in 0.. {
                    match c.call(
                        "messages.publish",
                        json!({"topic": "crash", "payload": {"r": round, "w": w, "i": i}}),
                    ) {
                        Ok(r) => match r["result"]["ulid"].as_str() {
                            Some(u) => {
                                if tx.send(u.to_owned()).is_err() {
                                    return;
                                }
                            }
                            None => return,
                        },
                        Err(_) => return,
                    }
                }
            }));
        }
        drop(tx);
        // Let it run under load, then kill -9 mid-stream.
        let mut got = 0;
        while got < 60 + round * 20 {
            acked.push(rx.recv_timeout(Duration::from_secs(30))?);
            got += 1;
        }
        d.signal("-KILL")?;
        for w in workers {
            let _ = w.join();
        }
        acked.extend(rx.try_iter());
    }
    // A restart is not blocked (stale socket and locks), and everything acknowledged is there.
    let d = Gatosd::start(&repo)?;
    let mut c = d.client()?;
    let mut stored = std::collections::HashSet::new();
    let mut since = Value::Null;
    loop {
        let params = if since.is_null() {
            json!({"topic": "crash", "limit": 1000})
        } else {
            json!({"topic": "crash", "since": since, "limit": 1000})
        };
        let page = c.call("messages.read", params)?;
        let page = &page["result"];
        for m in page["messages"].as_array().ok_or("messages")? {
            stored.insert(m["ulid"].as_str().ok_or("ulid")?.to_owned());
        }
        if page["end"] == true {
            break;
        }
        since = page["next_since"].clone();
    }
    for u in &acked {
        assert!(stored.contains(u), "acknowledged message {u} is missing");
    }
    c.call(
        "messages.publish",
        json!({"topic": "crash", "payload": "after"}),
    )?;
    drop(c);
    drop(d);
    repo.assert_fsck_strict()
}

/// Runs requests through `gatosd --stdio` and returns the raw response lines.
fn stdio_session(repo: &TempRepo, requests: &[Value]) -> TestResult<Vec<String>> {
    let mut cmd = Command::new(bin("gatosd"));
    cmd.arg("--stdio")
        .current_dir(repo.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    hermetic(&mut cmd, &repo.home());
    let mut child = cmd.spawn()?;
    let mut stdin = child.stdin.take().ok_or("stdin")?;
    for r in requests {
        writeln!(stdin, "{r}")?;
    }
    drop(stdin);
    let out = child.wait_with_output()?;
    Ok(String::from_utf8(out.stdout)?
        .lines()
        .map(str::to_owned)
        .collect())
}

#[derive(serde::Deserialize)]
struct RawResponse<'a> {
    #[serde(borrow)]
    result: &'a serde_json::value::RawValue,
}

#[derive(serde::Deserialize)]
struct RawPage<'a> {
    #[serde(borrow)]
    messages: Vec<&'a serde_json::value::RawValue>,
}

#[derive(serde::Deserialize)]
struct RawTopics<'a> {
    #[serde(borrow)]
    topics: Vec<&'a serde_json::value::RawValue>,
}

#[test]
fn cli_json_and_rpc_results_are_the_same_bytes() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(
        &repo,
        &[
            "messages",
            "publish",
            "p",
            "--data",
            r#"{"z":1,"a":[1.5,"x"]}"#,
            "--headers",
            r#"{"msg_id":"m1"}"#,
        ],
    )?;
    gatos_ok(&repo, &["messages", "publish", "p", "--data", "\"two\""])?;
    gatos_ok(&repo, &["messages", "consume", "g", "p", "--limit", "1"])?;
    let responses = stdio_session(
        &repo,
        &[
            json!({"jsonrpc": "2.0", "id": 1, "method": "messages.read", "params": {"topic": "p"}}),
            json!({"jsonrpc": "2.0", "id": 2, "method": "topics.list"}),
            json!({"jsonrpc": "2.0", "id": 3, "method": "checkpoints.get", "params": {"group": "g", "topic": "p"}}),
        ],
    )?;
    let by_id = |id: u64| -> TestResult<&str> {
        Ok(responses
            .iter()
            .find(|l| l.starts_with(&format!(r#"{{"jsonrpc":"2.0","id":{id},"#)))
            .ok_or("missing response")?)
    };
    let read: RawResponse = serde_json::from_str(by_id(1)?)?;
    let page: RawPage = serde_json::from_str(read.result.get())?;
    let cli_rows = gatos_ok(&repo, &["messages", "read", "p", "--json"])?;
    let rpc_rows: Vec<&str> = page.messages.iter().map(|m| m.get()).collect();
    assert_eq!(cli_rows.lines().collect::<Vec<_>>(), rpc_rows);
    let topics: RawResponse = serde_json::from_str(by_id(2)?)?;
    let topics: RawTopics = serde_json::from_str(topics.result.get())?;
    let cli_topics = gatos_ok(&repo, &["messages", "topics", "--json"])?;
    assert_eq!(
        cli_topics.lines().collect::<Vec<_>>(),
        topics.topics.iter().map(|t| t.get()).collect::<Vec<_>>()
    );
    let cp: RawResponse = serde_json::from_str(by_id(3)?)?;
    let cli_cp = gatos_ok(
        &repo,
        &["messages", "checkpoint", "get", "g", "p", "--json"],
    )?;
    assert_eq!(cli_cp.trim_end(), cp.result.get());
    Ok(())
}

/// A topic whose head is no message (plain git wrote it) does not hide the others: the CLI
/// lists them, names the damaged one on stderr and fails after; `topics.list` answers the
/// readable topics and names the damaged one under `damaged`.
#[test]
fn a_damaged_topic_is_named_and_the_others_are_listed() -> TestResult {
    let repo = crate::support::a_damaged_topic()?;
    let out = crate::support::gatos(&repo, &["messages", "topics"])?;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_ne!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.starts_with("good seq 1..1"), "{stdout}");
    assert!(!stdout.contains("bad"), "{stdout}");
    assert!(stderr.contains("topic 'bad' does not read"), "{stderr}");
    assert!(stderr.contains("error[InvalidEnvelope]"), "{stderr}");
    // With --json: the rows, then the error object naming the damaged topics.
    let out = crate::support::gatos(&repo, &["messages", "topics", "--json"])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let row: serde_json::Value = serde_json::from_str(lines[0])?;
    assert_eq!(row["topic"], "good", "{stdout}");
    let err: serde_json::Value = serde_json::from_str(lines[1])?;
    assert_eq!(err["error"]["code"], "InvalidEnvelope", "{stdout}");
    assert_eq!(err["error"]["damaged"][0]["topic"], "bad", "{stdout}");
    let responses = stdio_session(
        &repo,
        &[json!({"jsonrpc": "2.0", "id": 1, "method": "topics.list"})],
    )?;
    let answer: serde_json::Value = serde_json::from_str(responses.first().ok_or("no response")?)?;
    let result = &answer["result"];
    assert_eq!(
        result["topics"].as_array().map(Vec::len),
        Some(1),
        "{answer}"
    );
    assert_eq!(result["topics"][0]["topic"], "good", "{answer}");
    assert_eq!(result["damaged"][0]["topic"], "bad", "{answer}");
    assert_eq!(result["damaged"][0]["code"], "InvalidEnvelope", "{answer}");
    assert!(result["damaged"][0]["message"].is_string(), "{answer}");
    Ok(())
}

/// A checkpoint on a topic whose head is no message cannot tell its lag: `checkpoint ls`
/// and `checkpoints.list` name it and list the others (ADR 0047), where both failed whole.
#[test]
fn a_checkpoint_on_a_damaged_topic_is_named_and_the_others_are_listed() -> TestResult {
    let repo = crate::support::a_damaged_topic_with_readers()?;
    let out = crate::support::gatos(&repo, &["messages", "checkpoint", "ls"])?;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_ne!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.starts_with("readers good seq 1 "), "{stdout}");
    assert!(!stdout.contains("bad"), "{stdout}");
    assert!(
        stderr.contains("checkpoint of group 'readers' on topic 'bad' does not read"),
        "{stderr}"
    );
    assert!(stderr.contains("error[InvalidEnvelope]"), "{stderr}");
    let out = crate::support::gatos(&repo, &["messages", "checkpoint", "ls", "--json"])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let err: serde_json::Value = serde_json::from_str(lines[1])?;
    assert_eq!(err["error"]["damaged"][0]["topic"], "bad", "{stdout}");
    assert_eq!(err["error"]["damaged"][0]["group"], "readers", "{stdout}");
    let responses = stdio_session(
        &repo,
        &[json!({"jsonrpc": "2.0", "id": 1, "method": "checkpoints.list"})],
    )?;
    let answer: serde_json::Value = serde_json::from_str(responses.first().ok_or("no response")?)?;
    let result = &answer["result"];
    assert_eq!(
        result["checkpoints"].as_array().map(Vec::len),
        Some(1),
        "{answer}"
    );
    assert_eq!(result["checkpoints"][0]["topic"], "good", "{answer}");
    assert_eq!(result["damaged"][0]["topic"], "bad", "{answer}");
    assert_eq!(result["damaged"][0]["group"], "readers", "{answer}");
    assert_eq!(result["damaged"][0]["code"], "InvalidEnvelope", "{answer}");
    Ok(())
}

#[test]
fn a_job_cannot_act_as_the_node_through_the_daemons_socket() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    let d = Gatosd::start(&repo)?;
    // The job knows where the socket and the token are, and tries both.
    let script = format!(
        r#"cat {token} && echo READ-TOKEN
perl -MIO::Socket::UNIX -e '
  my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or do {{ print "connect refused: $!\n"; exit 0 }};
  print $s qq({{"jsonrpc":"2.0","id":1,"method":"jobs.enqueue","params":{{"command":["touch","pwned"]}}}}\n);
  print $s qq({{"jsonrpc":"2.0","id":2,"method":"messages.publish","params":{{"topic":"t","data":{{"forged":true}}}}}}\n);
  for (1..2) {{ my $l = <$s>; print $l }}' {socket}
"#,
        token = d.token_file.display(),
        socket = d.socket.display(),
    );
    let row = json_lines(&gatos_ok(
        &repo,
        &[
            "jobs",
            "enqueue",
            "--json",
            "--no-checkout",
            "--",
            "sh",
            "-c",
            &script,
        ],
    )?)?;
    let id = row[0]["id"].as_str().unwrap_or_default().to_owned();
    let out = crate::support::gatos(
        &repo,
        &["worker", "--drain", "--json", "--sandbox", "required"],
    )?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result = repo
        .rev_parse(&format!("refs/gatos/jobs/{id}/result"))?
        .ok_or("no result")?;
    let stdout = repo.git(&["cat-file", "blob", &format!("{result}:logs/stdout")])?;
    let stderr = repo.git(&["cat-file", "blob", &format!("{result}:logs/stderr")])?;
    assert!(!stdout.contains("READ-TOKEN"), "{stdout}");
    assert!(stderr.contains("Permission denied"), "{stderr}");
    assert!(
        stdout.contains("connect refused") || stdout.matches("\"Unauthorized\"").count() == 2,
        "the daemon refused the job's writes: {stdout}"
    );
    // Nothing was written: one job (this one), no topic t.
    let jobs = gatos_ok(&repo, &["jobs", "ls", "--json"])?;
    assert_eq!(json_lines(&jobs)?.len(), 1, "{jobs}");
    assert!(repo.rev_parse("refs/gatos/messages/t/head")?.is_none());
    drop(d);
    repo.assert_fsck_strict()
}

/// Enqueues `n` jobs running `true` (one attempt each) through gatosd; their ids.
fn enqueue_true(d: &Gatosd, n: usize) -> TestResult<std::collections::BTreeSet<String>> {
    let mut c = d.client()?;
    let mut ids = std::collections::BTreeSet::new();
    for _ in 0..n {
        let r = c.call(
            "jobs.enqueue",
            json!({"command": ["true"], "max_attempts": 1}),
        )?;
        ids.insert(r["result"]["id"].as_str().ok_or("no id")?.to_owned());
    }
    Ok(ids)
}

/// Several clients claim through one gatosd at once (issue #21: a worker passes over a
/// job another is claiming, as `SKIP LOCKED`): every job is claimed exactly once, its
/// claim is a committed ref when the answer comes, and none is left behind.
#[test]
fn concurrent_clients_through_gatosd_claim_every_job_exactly_once() -> TestResult {
    const JOBS: usize = 24;
    const CLIENTS: usize = 4;
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    let d = Gatosd::start(&repo)?;
    let ids = enqueue_true(&d, JOBS)?;
    let git_dir = repo.git_dir();
    let start = std::sync::Arc::new(std::sync::Barrier::new(CLIENTS));
    let workers: Vec<_> = (0..CLIENTS)
        .map(|k| {
            let c = d.client().map_err(|e| e.to_string());
            let start = start.clone();
            let git_dir = git_dir.clone();
            std::thread::spawn(move || -> Result<Vec<String>, String> {
                let mut c = c?;
                start.wait();
                claim_until_none(&mut c, k, &git_dir).map_err(|e| e.to_string())
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for w in workers {
        claimed.extend(w.join().map_err(|_| "a client thread panicked")??);
    }
    let unique: std::collections::BTreeSet<String> = claimed.iter().cloned().collect();
    assert_eq!(unique.len(), claimed.len(), "a job was claimed twice");
    assert_eq!(unique, ids, "every job was claimed");
    let rows = json_lines(&gatos_ok(&repo, &["jobs", "ls", "--json"])?)?;
    assert!(
        rows.iter()
            .all(|r| r["state"] == "failed" && r["attempt"] == 1),
        "{rows:?}"
    );
    drop(d);
    repo.assert_fsck_strict()
}

/// One client of [`concurrent_clients_through_gatosd_claim_every_job_exactly_once`]:
/// claims and fails jobs until none is left; returns the jobs it claimed.
fn claim_until_none(c: &mut Client, k: usize, git_dir: &Path) -> TestResult<Vec<String>> {
    let worker = format!("w{k}");
    let key = format!("ed25519:{}", format!("{:02x}", k + 1).repeat(32));
    let mut mine = Vec::new();
    loop {
        let cl = c.call(
            "jobs.claim",
            json!({"worker": worker, "worker_key": key, "lease": "60s"}),
        )?;
        let cl = &cl["result"];
        if cl.is_null() {
            return Ok(mine);
        }
        let id = cl["id"].as_str().ok_or("no id")?.to_owned();
        assert_eq!(cl["attempt"], 1, "claimed twice: {cl}");
        // Acknowledged means committed: the claim ref already names it.
        let at = std::fs::read_to_string(git_dir.join(format!("refs/gatos/jobs/{id}/claim")))?;
        assert_eq!(at.trim_end(), cl["claim_commit"].as_str().unwrap_or(""));
        // Given back unrun: the one end without a proof (its jobs have one attempt).
        let done = c.call(
            "jobs.fail",
            json!({"id": id, "attempt": 1, "worker": worker,
                   "lease_token": cl["lease_token"], "outcome": "lost"}),
        )?;
        assert_eq!(done["result"]["state"], "failed", "{done}");
        mine.push(id);
    }
}

/// One client process of [`concurrent_client_processes_get_each_job_once_and_every_answer_is_a_committed_ref`]
/// (`python3 -c`; argv: socket, token file, git dir, worker, worker key). It claims,
/// heartbeats and ends jobs until none is left (every other one `jobs.complete` with a
/// proof, the rest `jobs.fail`), and after each answer reads the job's ref from the
/// repository and prints both. The test holds the worker key: the client asks it for each
/// proof on stdout (`sign CLAIM`) and reads it back on stdin.
const GROUP_CLIENT: &str = r#"
import json, os, socket, sys
sock, token_file, git_dir, worker, key = sys.argv[1:6]
s = socket.socket(socket.AF_UNIX)
s.connect(sock)
f = s.makefile("rwb")
n = 0
def call(method, params):
    global n
    n += 1
    f.write((json.dumps({"jsonrpc": "2.0", "id": n, "method": method, "params": params}) + "\n").encode())
    f.flush()
    while True:
        r = json.loads(f.readline())
        if r.get("id") == n:
            if "error" in r:
                raise SystemExit(f"{method}: {r['error']}")
            return r["result"]
def ref(job, name):
    with open(os.path.join(git_dir, "refs", "gatos", "jobs", job, name)) as fh:
        return fh.read().strip()
def say(*words):
    print(*words, flush=True)
call("gatos.auth", {"token": open(token_file).read().strip()})
done = 0
while True:
    c = call("jobs.claim", {"worker": worker, "worker_key": key, "lease": "60s"})
    if c is None:
        say("done")
        break
    job, lease = c["id"], {"id": c["id"], "attempt": c["attempt"], "worker": worker, "lease_token": c["lease_token"]}
    say("claimed", job, c["claim_commit"], ref(job, "claim"))
    call("jobs.heartbeat", lease)
    say("heartbeat", job, c["claim_commit"], ref(job, "claim"))
    done += 1
    # Every other one succeeds, the rest fail: both with the worker's proof.
    code = 0 if done % 2 else 1
    say("sign", code, json.dumps(c))
    poe = json.loads(sys.stdin.readline())
    if code == 0:
        r = call("jobs.complete", dict(lease, exit_code=0, poe=poe))
    else:
        r = call("jobs.fail", dict(lease, exit_code=1, poe=poe))
    say("ended", job, r["state"], r["commit"], ref(job, "result"))
"#;

/// Several client processes claim, heartbeat and end jobs through one gatosd at once, so
/// their writes meet in the daemon's group commits (ADR 0046): each job is claimed once,
/// every acknowledged claim, heartbeat and end is a committed ref when the answer comes,
/// and `git fsck --strict` is clean (issue #21).
#[test]
fn concurrent_client_processes_get_each_job_once_and_every_answer_is_a_committed_ref() -> TestResult
{
    const JOBS: usize = 32;
    const CLIENTS: usize = 4;
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    // Grouping is off by default (ADR 0046).
    repo.git(&["config", "gatos.group.jobs", "true"])?;
    let d = Gatosd::start(&repo)?;
    let ids = enqueue_true(&d, JOBS)?;
    let g = gatos::Gatos::open(repo.path(), gatos::OpenOptions::default())?;
    let key_id = g.keys().current().ok_or("no node key")?.to_string();
    let git_dir = repo.git_dir();
    let clients: Vec<Child> = (0..CLIENTS)
        .map(|k| {
            Command::new("python3")
                .arg("-c")
                .arg(GROUP_CLIENT)
                .arg(&d.socket)
                .arg(&d.token_file)
                .arg(&git_dir)
                .arg(format!("w{k}"))
                .arg(&key_id)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut child| {
            let g = g.clone();
            std::thread::spawn(move || -> Result<Vec<Vec<String>>, String> {
                let mut lines = Vec::new();
                let out = child.stdout.take().ok_or("no stdout")?;
                let mut stdin = child.stdin.take().ok_or("no stdin")?;
                for line in BufReader::new(out).lines() {
                    let line = line.map_err(|e| e.to_string())?;
                    if let Some((code, claim)) =
                        line.strip_prefix("sign ").and_then(|l| l.split_once(' '))
                    {
                        let poe = sign_noop(&g, claim, code == "0").map_err(|e| e.to_string())?;
                        writeln!(stdin, "{poe}").map_err(|e| e.to_string())?;
                        continue;
                    }
                    lines.push(line.split(' ').map(str::to_owned).collect());
                }
                let out = child.wait_with_output().map_err(|e| e.to_string())?;
                if !out.status.success() {
                    return Err(format!(
                        "a client failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
                Ok(lines)
            })
        })
        .collect();
    let mut claimed = Vec::new();
    let mut ended = 0;
    for r in readers {
        let lines = r.join().map_err(|_| "a reader panicked")??;
        assert_eq!(lines.last().map(|l| l[0].as_str()), Some("done"));
        for l in &lines {
            match l[0].as_str() {
                // Acknowledged means committed: the ref names what the answer named.
                "claimed" => {
                    assert_eq!(
                        l[2], l[3],
                        "claim of {} answered before its ref moved",
                        l[1]
                    );
                    claimed.push(l[1].clone());
                }
                // The heartbeat's commit follows the claim on the claim ref.
                "heartbeat" => assert_ne!(l[2], l[3], "heartbeat of {} not committed", l[1]),
                "ended" => {
                    assert_eq!(l[3], l[4], "end of {} answered before its result ref", l[1]);
                    assert!(l[2] == "succeeded" || l[2] == "failed", "{l:?}");
                    ended += 1;
                }
                "done" => {}
                other => return Err(format!("unexpected client line {other}").into()),
            }
        }
    }
    let unique: std::collections::BTreeSet<String> = claimed.iter().cloned().collect();
    assert_eq!(unique.len(), claimed.len(), "a job was claimed twice");
    assert_eq!(unique, ids, "every job was claimed");
    assert_eq!(ended, JOBS);
    let rows = json_lines(&gatos_ok(&repo, &["jobs", "ls", "--json"])?)?;
    let succeeded = rows.iter().filter(|r| r["state"] == "succeeded").count();
    assert!(
        rows.iter()
            .all(|r| (r["state"] == "succeeded" || r["state"] == "failed") && r["attempt"] == 1),
        "{rows:?}"
    );
    assert!(succeeded >= JOBS / 2, "{succeeded} of {JOBS} succeeded");
    // Every proof checks against its result, the failures' too.
    for r in &rows {
        gatos_ok(&repo, &["jobs", "verify", r["id"].as_str().ok_or("no id")?])?;
    }
    drop(d);
    repo.assert_fsck_strict()
}

/// The proof of a no-op run of the claim `claim` (a `jobs.claim` answer) that succeeded
/// (exit 0) or failed (exit 1), signed with the node's key, as JSON.
fn sign_noop(g: &gatos::Gatos, claim: &str, succeeded: bool) -> TestResult<String> {
    let c: Value = serde_json::from_str(claim)?;
    let field = |f: &str| c[f].as_str().ok_or(format!("no {f} in {c}"));
    let key = g.keys().signing_key()?.ok_or("no signing key")?;
    let worker: gatos_types::WorkerId = field("worker")?.parse()?;
    let now = g.now();
    let poe = gatos::proofs::attest(
        &key,
        gatos::proofs::Claim {
            job: field("id")?.parse()?,
            job_content_id: field("job_content_id")?.parse()?,
            attempt: u32::try_from(c["attempt"].as_u64().ok_or("no attempt")?)?,
            claim_commit: field("claim_commit")?.parse()?,
            worker: &worker,
        },
        &gatos::proofs::Attempt {
            started_at: now,
            finished_at: now,
            outcome: if succeeded {
                gatos_types::jobs::Outcome::Succeeded
            } else {
                gatos_types::jobs::Outcome::Failed
            },
            exit_code: Some(if succeeded { 0 } else { 1 }),
            stdout: b"",
            stdout_truncated: false,
            stderr: b"",
            stderr_truncated: false,
            outputs: &[],
            runner: json!({"name": "e2e"}),
        },
    )?;
    Ok(String::from_utf8(poe)?)
}

/// A publish runs on gatosd's event loop only when nothing makes it wait (ADR 0046,
/// session 6). Publishes that must wait for their topic's lock, held here by another
/// process (util-linux `flock`), wait on the blocking pool: with more of them in flight
/// than the runtime has threads, other connections are still answered, and once the lock
/// is free every one of them lands.
#[test]
fn publishes_waiting_for_their_topics_lock_do_not_stall_other_connections() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    let d = Gatosd::start(&repo)?;
    let mut probe = d.client()?;
    for t in ["held", "free"] {
        let r = probe.call("messages.publish", json!({"topic": t, "payload": 0}))?;
        assert!(r["result"]["seq"].is_u64(), "{r}");
    }
    // Another process takes the topic's lock and keeps it until its stdin closes.
    let lock = repo.git_dir().join("gatos/locks/messages.held");
    let mut holder = Command::new("flock")
        .arg(&lock)
        .args(["-c", "echo held; read _"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut said = String::new();
    BufReader::new(holder.stdout.take().ok_or("stdout")?).read_line(&mut said)?;
    assert_eq!(said.trim(), "held");
    let waiting: Vec<_> = (1..=4)
        .map(|n| {
            let mut c = d.client()?;
            Ok(std::thread::spawn(move || {
                c.call("messages.publish", json!({"topic": "held", "payload": n}))
                    .map_err(|e| e.to_string())
            }))
        })
        .collect::<TestResult<_>>()?;
    // Other topics are served meanwhile, writes (on the event loop) and reads alike.
    for n in 1..=20 {
        let r = probe.call("messages.publish", json!({"topic": "free", "payload": n}))?;
        assert_eq!(r["result"]["seq"], json!(n + 1), "{r}");
    }
    let r = probe.call("messages.read", json!({"topic": "free"}))?;
    assert_eq!(
        r["result"]["messages"].as_array().map(Vec::len),
        Some(21),
        "{r}"
    );
    drop(holder.stdin.take());
    holder.wait()?;
    for w in waiting {
        let r = w.join().map_err(|_| "a client thread panicked")??;
        assert!(r["result"]["seq"].is_u64(), "{r}");
    }
    let r = probe.call("messages.read", json!({"topic": "held"}))?;
    assert_eq!(
        r["result"]["messages"].as_array().map(Vec::len),
        Some(5),
        "{r}"
    );
    drop(probe);
    drop(d);
    repo.assert_fsck_strict()
}

/// A client's bad values for the job plane are refused with a stable code and change
/// nothing (found by black-box tests of the release binaries). Before: a lease of 10^15
/// seconds, on a claim or a heartbeat, ended in 1970 and another worker took the job at
/// once; a heartbeat's lease of 0 ended it now; a priority beyond 2^53 or a NUL in the argv
/// was acknowledged and the job never ran; a claim by id ignored the secrets the client
/// cannot resolve; `jobs.fail` wrote results `jobs verify --all` then failed on (no proof)
/// and `cancelled` ends of jobs nobody cancelled; an output `.git/config` gave a result
/// `git fsck --strict` rejects, and one with a NUL an `Internal` error.
#[test]
fn bad_values_for_the_job_plane_are_refused_and_change_nothing() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    let d = Gatosd::start(&repo)?;
    let mut c = d.client()?;
    let key = {
        let g = gatos::Gatos::open(repo.path(), gatos::OpenOptions::default())?;
        g.keys().current().ok_or("no node key")?.to_string()
    };
    let jobs_refs = || repo.git(&["for-each-ref", "refs/gatos/jobs"]);
    fn refused(c: &mut Client, method: &str, params: Value, code: &str, says: &str) -> TestResult {
        let r = c.call(method, params.clone())?;
        assert_eq!(r["error"]["data"]["code"], code, "{method} {params}: {r}");
        let message = r["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(says), "{method}: {message}");
        Ok(())
    }
    for (params, says) in [
        (
            json!({"command": ["true"], "priority": i64::MAX}),
            "priority",
        ),
        (
            json!({"command": ["true"], "priority": -9_007_199_254_740_993_i64}),
            "priority",
        ),
        (
            json!({"command": ["true"], "run_after": "9999999999d"}),
            "9999-12-31",
        ),
        (json!({"command": ["x\u{0}"]}), "NUL"),
        (json!({"command": ["true", "a\u{0}"]}), "NUL"),
        (json!({"command": ["true"], "env": {"A": "x\u{0}y"}}), "NUL"),
        (
            json!({"command": ["true"], "outputs": [".git/config"]}),
            "git reads",
        ),
    ] {
        refused(&mut c, "jobs.enqueue", params, "InvalidInput", says)?;
    }
    assert_eq!(jobs_refs()?, "");
    // Leases out of range, asked of an empty queue too.
    for lease in [json!("0s"), json!(1_000_000_000_000_000_u64), json!("31d")] {
        refused(
            &mut c,
            "jobs.claim",
            json!({"worker": "w", "worker_key": key, "lease": lease}),
            "InvalidInput",
            "between 1 second and 30 days",
        )?;
    }
    let id = |r: &Value| r["result"]["id"].as_str().unwrap_or("").to_owned();
    let secret = id(&c.call(
        "jobs.enqueue",
        json!({"command": ["true"], "env": {"T": "secret://TOKEN"}, "max_attempts": 1}),
    )?);
    refused(
        &mut c,
        "jobs.claim",
        json!({"worker": "w", "worker_key": key, "id": secret, "secrets": ["OTHER"]}),
        "Forbidden",
        "secret TOKEN",
    )?;
    assert!(
        repo.rev_parse(&format!("refs/gatos/jobs/{secret}/claim"))?
            .is_none()
    );
    c.call("jobs.cancel", json!({"id": secret}))?;

    let job = id(&c.call(
        "jobs.enqueue",
        json!({"command": ["true"], "max_attempts": 1}),
    )?);
    let cl = c.call(
        "jobs.claim",
        json!({"worker": "w", "worker_key": key, "id": job, "lease": "60s"}),
    )?["result"]
        .clone();
    let lease = json!({"id": job, "attempt": 1, "worker": "w", "lease_token": cl["lease_token"]});
    let with = |extra: Value| {
        let mut p = lease.clone();
        if let (Some(p), Some(e)) = (p.as_object_mut(), extra.as_object()) {
            p.extend(e.clone());
        }
        p
    };
    let claim = format!("refs/gatos/jobs/{job}/claim");
    let held = repo.rev_parse(&claim)?;
    for l in [
        json!(0),
        json!(10_000_000_000_000_u64),
        json!("9999999999d"),
    ] {
        refused(
            &mut c,
            "jobs.heartbeat",
            with(json!({"lease": l})),
            "InvalidInput",
            "lease",
        )?;
    }
    refused(
        &mut c,
        "jobs.fail",
        with(json!({"exit_code": 1})),
        "SignatureInvalid",
        "proof of execution",
    )?;
    refused(
        &mut c,
        "jobs.fail",
        with(json!({"outcome": "timeout"})),
        "SignatureInvalid",
        "proof of execution",
    )?;
    refused(
        &mut c,
        "jobs.fail",
        with(json!({"outcome": "lost", "stdout_base64": "aGkK"})),
        "SignatureInvalid",
        "proof of execution",
    )?;
    refused(
        &mut c,
        "jobs.fail",
        with(json!({"outcome": "cancelled"})),
        "Conflict",
        "was not cancelled",
    )?;
    for outputs in [
        json!([{"path": "a", "data_base64": ""}, {"path": "a-b", "data_base64": ""}, {"path": "a/b", "data_base64": ""}]),
        json!([{"path": "x", "data_base64": ""}, {"path": "x", "data_base64": ""}]),
    ] {
        refused(
            &mut c,
            "jobs.complete",
            with(json!({"exit_code": 0, "poe": {}, "outputs": outputs})),
            "InvalidInput",
            "output",
        )?;
    }
    for path in [".git/config", "a/.GIT/x", ".gitattributes", "a\u{0}b"] {
        refused(
            &mut c,
            "jobs.complete",
            with(
                json!({"exit_code": 0, "poe": {}, "outputs": [{"path": path, "data_base64": ""}]}),
            ),
            "InvalidInput",
            "output",
        )?;
    }
    assert_eq!(repo.rev_parse(&claim)?, held, "nothing moved the claim");
    // Given back unrun, the job fails on its last attempt with nothing to prove: `jobs
    // verify --all` lists it as unproven and passes.
    let r = c.call("jobs.fail", with(json!({"outcome": "lost"})))?;
    assert_eq!(r["result"]["state"], "failed", "{r}");
    let out = crate::support::gatos(&repo, &["jobs", "verify", "--all", "--json"])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = json_lines(&String::from_utf8(out.stdout)?)?;
    let row = rows
        .iter()
        .find(|r| r["id"] == job.as_str())
        .ok_or("no row")?;
    assert_eq!(row["code"], "NotFound", "{row}");
    repo.assert_fsck_strict()
}
