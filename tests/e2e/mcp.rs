//! The MCP face (issue #20, ADR 0043): `gatosd mcp --stdio` driven by the official Python
//! MCP SDK (`scripts/mcp_client.py`, `mcp` pinned in scripts/requirements.txt) in both
//! protocol eras, and a recorded transcript of raw JSON-RPC lines (both eras, hostile
//! input included) compared against `tests/fixtures/mcp/transcript.txt`, volatile values
//! normalized. Re-record with `GATOS_BLESS=1 cargo test -p gatos-e2e --test e2e -- mcp::`.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use gatos_testutil::{TempRepo, TestResult, bin, hermetic};
use serde_json::{Value, json};

use crate::support::gatos_ok;

/// How long one answer may take.
const ANSWER: Duration = Duration::from_secs(20);

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// A repository with gatos initialised and a manifest `nightly` registered.
fn ledger() -> TestResult<TempRepo> {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    let file = repo.root().join("nightly.json");
    std::fs::write(&file, r#"{"command": ["true"], "queue": "nightly"}"#)?;
    gatos_ok(
        &repo,
        &["manifests", "put", "nightly", &file.to_string_lossy()],
    )?;
    Ok(repo)
}

/// The Python SDK's own client drives every tool, the resources and a subscription, for
/// `legacy` (initialize, 2025-11-25), `auto` (server/discover, which picks 2026-07-28) and
/// `2026-07-28` (per-request `_meta`, no handshake).
#[test]
fn the_python_sdk_drives_every_tool_in_both_protocol_eras() -> TestResult {
    for mode in ["legacy", "auto", "2026-07-28"] {
        let repo = ledger()?;
        let mut cmd = Command::new("python3");
        cmd.arg(repo_file("scripts/mcp_client.py"))
            .arg(bin("gatosd"))
            .arg(repo.path())
            .args([mode, "nightly"]);
        hermetic(&mut cmd, &repo.home());
        let out = cmd.stdin(Stdio::null()).output()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || stdout.lines().last() != Some("ok") {
            return Err(format!(
                "mcp_client.py {mode} failed (pip install -r scripts/requirements.txt provides mcp):\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        let facts: Value = serde_json::from_str(stdout.lines().next().ok_or("no facts")?)?;
        assert_eq!(facts["actor"], "mcp:py-sdk-test@stdio", "{mode}");
        assert_eq!(facts["enqueue_refused"], "Forbidden", "{mode}");
        assert_eq!(facts["ro_publish"], "Forbidden", "{mode}");
        assert_eq!(facts["ro_denied"], "Forbidden", "{mode}");
        assert_eq!(facts["job_update"], true, "{mode}");
        assert_eq!(facts["topic_update"], true, "{mode}");
        let tools: Vec<&str> = facts["tools"]
            .as_array()
            .ok_or("tools")?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let table: Vec<&str> = gatos_api::OPS
            .iter()
            .filter(|o| {
                o.faces.has(gatos_api::ops::Faces::MCP)
                    && !gatos_api::ops::MCP_OPT_IN.contains(&o.name)
            })
            .map(|o| o.name)
            .collect();
        assert_eq!(
            tools, table,
            "{mode}: the tools are the table's MCP rows, in order"
        );
        repo.assert_fsck_strict()?;
    }
    Ok(())
}

const RW: &str = "5f2b3c9d1e0a4b6c8d7e9f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e";
const RO: &str = "0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b";

/// One HTTP/1.1 exchange on a fresh connection; returns the status code.
fn http_status(addr: &str, head: &str, body: &str) -> TestResult<u16> {
    use std::io::Read as _;
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(ANSWER))?;
    write!(
        s,
        "POST /mcp HTTP/1.1\r\n{head}Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out.split(' ').nth(1).ok_or("no status line")?;
    Ok(status.parse()?)
}

/// `/mcp` on `gatosd --http`: the same script over the SDK's Streamable HTTP client, in
/// both eras, behind the bearer token (a token marked `ro` gets read tools only) and the
/// `Host` check; calls act as `mcp:<client>@token:<name>`.
#[test]
fn the_python_sdk_drives_mcp_over_streamable_http_behind_the_token() -> TestResult {
    for mode in ["legacy", "2026-07-28"] {
        let repo = ledger()?;
        let tokens = crate::support::token_file(&repo, &format!("ci {RW}\nreader {RO} ro\n"))?;
        let (mut child, addr, log) = crate::support::http_daemon(
            &repo,
            &tokens,
            "mcp",
            &["--mcp-deny-tools", "doctor.check"],
        )?;
        let run = (|| -> TestResult {
            let url = format!("http://{addr}/mcp");
            let mut cmd = Command::new("python3");
            cmd.arg(repo_file("scripts/mcp_client.py"))
                .arg(bin("gatosd"))
                .arg(repo.path())
                .args([mode, "nightly", &url, RW, RO]);
            hermetic(&mut cmd, &repo.home());
            let out = cmd.stdin(Stdio::null()).output()?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            if !out.status.success() || stdout.lines().last() != Some("ok") {
                return Err(format!(
                    "mcp_client.py {mode} over HTTP failed:\n{stdout}\n{}\n--- gatosd:\n{}",
                    String::from_utf8_lossy(&out.stderr),
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
                .into());
            }
            let facts: Value = serde_json::from_str(stdout.lines().next().ok_or("no facts")?)?;
            assert_eq!(facts["actor"], "mcp:py-sdk-test@token:ci", "{mode}");
            assert_eq!(facts["ro_publish"], "Forbidden", "{mode}");
            assert_eq!(
                facts["doctor_refused"], "Forbidden",
                "{mode}: --mcp-deny-tools"
            );
            assert_eq!(facts["topic_update"], true, "{mode}");
            assert_eq!(facts["job_update"], true, "{mode}");
            // The guard stands before /mcp: no token, a wrong one, another host name.
            let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
            let host = format!("Host: {addr}\r\n");
            assert_eq!(http_status(&addr, &host, ping)?, 401);
            let wrong = format!("{host}Authorization: Bearer {RO}x\r\n");
            assert_eq!(http_status(&addr, &wrong, ping)?, 401);
            let rebound = format!("Host: evil.example\r\nAuthorization: Bearer {RW}\r\n");
            assert_eq!(http_status(&addr, &rebound, ping)?, 403);
            // Tool calls count in the request metrics, face "mcp", with their gatos code.
            let scrape = Command::new("curl")
                .args(["-sS", "--max-time", "30", "-H"])
                .arg(format!("Authorization: Bearer {RW}"))
                .arg(format!("http://{addr}/metrics"))
                .output()?;
            let text = String::from_utf8_lossy(&scrape.stdout);
            for series in [
                r#"gatos_requests_total{face="mcp",op="messages.read",code="ok"}"#,
                r#"gatos_requests_total{face="mcp",op="doctor.check",code="Forbidden"}"#,
                r#"gatos_http_responses_total{route="/mcp",status="200"}"#,
            ] {
                assert!(
                    text.contains(series),
                    "{mode}: no {series} in\n{text}{}",
                    String::from_utf8_lossy(&scrape.stderr)
                );
            }
            Ok(())
        })();
        let _ = child.kill();
        let _ = child.wait();
        run?;
        repo.assert_fsck_strict()?;
    }
    Ok(())
}

/// A `gatosd mcp --stdio` child: lines in, lines out (read by a thread, so every wait has a
/// deadline).
struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr: PathBuf,
}

impl Session {
    fn start(repo: &TempRepo, flags: &[&str]) -> TestResult<Session> {
        let stderr = repo.root().join(format!("mcp-{}.log", flags.len()));
        let mut cmd = Command::new(bin("gatosd"));
        cmd.args(["mcp", "--stdio", "--max-line", "2048"])
            .args(flags)
            .current_dir(repo.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr)?);
        hermetic(&mut cmd, &repo.home());
        let mut child = cmd.spawn()?;
        let stdin = child.stdin.take();
        let out = child.stdout.take().ok_or("no stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(Session {
            child,
            stdin,
            lines,
            stderr,
        })
    }

    fn send(&mut self, line: &str) -> TestResult {
        let stdin = self.stdin.as_mut().ok_or("stdin closed")?;
        stdin.write_all(line.as_bytes())?;
        stdin.write_all(b"\n")?;
        stdin.flush()?;
        Ok(())
    }

    fn next(&self) -> TestResult<Value> {
        let line = self
            .lines
            .recv_timeout(ANSWER)
            .map_err(|e| format!("no answer ({e}); gatosd said:\n{}", self.log()))?;
        Ok(serde_json::from_str(&line)?)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Closes stdin and waits (with a deadline) for a clean exit.
    fn finish(mut self) -> TestResult<String> {
        drop(self.stdin.take());
        let deadline = std::time::Instant::now() + ANSWER;
        loop {
            if let Some(status) = self.child.try_wait()? {
                assert!(
                    status.success(),
                    "gatosd mcp exited {status}: {}",
                    self.log()
                );
                break;
            }
            if std::time::Instant::now() > deadline {
                return Err(format!("gatosd mcp did not exit: {}", self.log()).into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = self.log();
        assert!(!log.contains("panicked"), "{log}");
        Ok(log)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Replaces what changes from run to run: ULIDs, object ids, digests, times, the version.
fn normalize(s: &str) -> String {
    let version = env!("CARGO_PKG_VERSION");
    let s = s.replace(&format!("\"{version}\""), "\"<VERSION>\"");
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let word = |c: u8| c.is_ascii_alphanumeric();
    while i < b.len() {
        if let Some(n) = time_len(&b[i..]) {
            out.push_str("<TIME>");
            i += n;
            continue;
        }
        if word(b[i]) && (i == 0 || !word(b[i - 1])) {
            let end = (i..b.len()).find(|&j| !word(b[j])).unwrap_or(b.len());
            let w = &s[i..end];
            let hex = w
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
            let ulid = w.len() == 26
                && w.bytes()
                    .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
                && w.bytes().any(|c| c.is_ascii_uppercase());
            let rep = match (w.len(), hex, ulid) {
                (26, _, true) => Some("<ULID>"),
                (40, true, _) => Some("<OID>"),
                (64, true, _) => Some("<DIGEST>"),
                _ => None,
            };
            out.push_str(rep.unwrap_or(w));
            i = end;
            continue;
        }
        let ch = s[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// The length of an RFC 3339 UTC time at the start of `b` (`2026-12-04T20:37:13.95Z`).
fn time_len(b: &[u8]) -> Option<usize> {
    let shape = b"dddd-dd-ddTdd:dd:dd";
    if b.len() < shape.len() {
        return None;
    }
    for (c, s) in b.iter().zip(shape) {
        let fits = if *s == b'd' {
            c.is_ascii_digit()
        } else {
            c == s
        };
        if !fits {
            return None;
        }
    }
    let mut n = shape.len();
    if b.get(n) == Some(&b'.') {
        n += 1;
        while b.get(n).is_some_and(u8::is_ascii_digit) {
            n += 1;
        }
    }
    (b.get(n) == Some(&b'Z')).then_some(n + 1)
}

/// Replaces the tool schemas (the Python SDK validates answers against them) with a mark,
/// so the transcript shows the tools, their order and their annotations.
fn without_schemas(mut v: Value) -> Value {
    if let Some(tools) = v.pointer_mut("/result/tools").and_then(Value::as_array_mut) {
        for t in tools {
            for k in ["inputSchema", "outputSchema"] {
                if let Some(s) = t.get_mut(k) {
                    *s = json!("<schema>");
                }
            }
        }
    }
    v
}

/// What one transcript step sends and how many lines it waits for (an answer, or none for
/// a notification).
enum Step {
    /// A line and the number of lines it answers with.
    Line(String, usize),
}

impl Step {
    fn line(self) -> String {
        let Step::Line(l, _) = self;
        l
    }
}

fn rpc(id: u64, method: &str, params: Value) -> Step {
    let line = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    Step::Line(line.to_string(), 1)
}

fn raw(line: &str, answers: usize) -> Step {
    Step::Line(line.to_owned(), answers)
}

/// The `_meta` a 2026-07-28 request carries.
fn meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "transcript", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}
    })
}

fn with_meta(mut params: Value) -> Value {
    if let Some(o) = params.as_object_mut() {
        o.insert("_meta".into(), meta());
    }
    params
}

/// Plays `steps` against a session, recording `> line` and `< answer` (normalized).
fn play(s: &mut Session, steps: Vec<Step>, out: &mut String) -> TestResult {
    for Step::Line(line, answers) in steps {
        let shown = if line.len() > 1000 {
            format!("<{} bytes>", line.len())
        } else {
            line.clone()
        };
        out.push_str(&format!("> {shown}\n"));
        s.send(&line)?;
        // Several lines (an answer and a notification) may come in either order: recorded
        // sorted, so the transcript does not depend on it.
        let mut got = Vec::new();
        for _ in 0..answers {
            let v = without_schemas(s.next()?);
            got.push(normalize(&serde_json::to_string(&v)?));
        }
        got.sort();
        for g in got {
            out.push_str(&format!("< {g}\n"));
        }
    }
    Ok(())
}

/// A recorded session in each era, hostile lines included, against the committed
/// transcript: every answer the same but for ULIDs, object ids, digests and times.
#[test]
fn a_recorded_transcript_of_both_eras_and_hostile_input() -> TestResult {
    let repo = ledger()?;
    let before_refs = |r: &TempRepo| r.git(&["for-each-ref", "refs/gatos/"]);
    let mut out = String::new();

    out.push_str("# 2025-11-25: initialize\n");
    let mut s = Session::start(&repo, &[])?;
    let init = json!({"protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "transcript", "version": "1"}});
    let call = |id, name: &str, args: Value| {
        rpc(id, "tools/call", json!({"name": name, "arguments": args}))
    };
    play(
        &mut s,
        vec![
            rpc(1, "initialize", init),
            raw(
                r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
                0,
            ),
            rpc(2, "tools/list", json!({})),
            call(
                3,
                "messages.publish",
                json!({"topic": "t", "payload": {"n": 1}, "headers": {"msg_id": "k"}}),
            ),
            call(
                4,
                "messages.publish",
                json!({"topic": "t", "payload": {"n": 1}, "headers": {"msg_id": "k"}}),
            ),
            call(5, "messages.read", json!({"topic": "t"})),
            call(6, "manifests.run", json!({"name": "nightly"})),
            call(7, "topics.list", json!({})),
            rpc(8, "resources/templates/list", json!({})),
            rpc(9, "resources/read", json!({"uri": "gatos://topics/t"})),
            rpc(
                10,
                "resources/subscribe",
                json!({"uri": "gatos://topics/t"}),
            ),
            // The answer, and notifications/resources/updated for the new message.
            Step::Line(
                call(
                    11,
                    "messages.publish",
                    json!({"topic": "t", "payload": {"n": 2}}),
                )
                .line(),
                2,
            ),
            rpc(
                12,
                "resources/unsubscribe",
                json!({"uri": "gatos://topics/t"}),
            ),
        ],
        &mut out,
    )?;
    out.push_str("# hostile input: each answered, nothing written\n");
    // The publishes and the job above were answered after their journal appends; their
    // commits (the job's ref and its events) land within gatos.journal.flushMs. A reader
    // of every topic and a reader of the jobs make them commits now, so the refs compared
    // below move only for hostile input.
    gatos_ok(&repo, &["messages", "topics"])?;
    gatos_ok(&repo, &["jobs", "ls"])?;
    let refs = before_refs(&repo)?;
    let long = format!(
        r#"{{"jsonrpc":"2.0","id":99,"method":"ping","params":{{"pad":"{}"}}}}"#,
        "x".repeat(3000)
    );
    play(
        &mut s,
        vec![
            raw("this is not json", 1),
            raw("[1, 2]", 1),
            raw(r#"{"jsonrpc":"2.0","id":20}"#, 1),
            raw(&long, 1),
            call(21, "no.such.tool", json!({})),
            call(22, "messages.publish", json!({"topic": 5, "payload": {}})),
            call(23, "topics.list", json!({"path": "/etc/passwd"})),
            call(24, "jobs.enqueue", json!({"command": ["sh", "-c", "id"]})),
            call(25, "jobs.get", json!({"id": "not-a-ulid"})),
            rpc(26, "resources/read", json!({"uri": "file:///etc/passwd"})),
            rpc(27, "no/such/method", json!({})),
            rpc(28, "ping", json!({})),
        ],
        &mut out,
    )?;
    assert_eq!(before_refs(&repo)?, refs, "hostile input wrote nothing");
    s.finish()?;

    out.push_str("# --read-only --deny-tools doctor.check\n");
    let mut s = Session::start(&repo, &["--read-only", "--deny-tools", "doctor.check"])?;
    let init = json!({"protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "transcript", "version": "1"}});
    let refs = before_refs(&repo)?;
    play(
        &mut s,
        vec![
            rpc(1, "initialize", init),
            raw(
                r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
                0,
            ),
            call(2, "messages.publish", json!({"topic": "t", "payload": {}})),
            call(3, "doctor.check", json!({})),
            call(4, "manifests.run", json!({"name": "nightly"})),
        ],
        &mut out,
    )?;
    assert_eq!(before_refs(&repo)?, refs, "read-only wrote nothing");
    s.finish()?;

    out.push_str("# 2026-07-28: server/discover, _meta on every request\n");
    let mut s = Session::start(&repo, &[])?;
    let mcall = |id, name: &str, args: Value| {
        rpc(
            id,
            "tools/call",
            with_meta(json!({"name": name, "arguments": args})),
        )
    };
    play(
        &mut s,
        vec![
            rpc(1, "server/discover", with_meta(json!({}))),
            mcall(2, "messages.read", json!({"topic": "t", "limit": 100000})),
            mcall(3, "jobs.list", json!({"state": "pending"})),
            rpc(4, "resources/templates/list", with_meta(json!({}))),
            rpc(
                5,
                "resources/read",
                with_meta(json!({"uri": "gatos://nothing"})),
            ),
            rpc(
                6,
                "tools/call",
                json!({"name": "topics.list", "arguments": {}}),
            ),
            mcall(7, "messages.publish", json!({"topic": "t", "payload": "x"})),
            // subscriptions/listen: acknowledged, then an update for the new message.
            Step::Line(
                rpc(
                    8,
                    "subscriptions/listen",
                    with_meta(
                        json!({"notifications": {"resourceSubscriptions": ["gatos://topics/t"]}}),
                    ),
                )
                .line(),
                1,
            ),
            Step::Line(
                mcall(9, "messages.publish", json!({"topic": "t", "payload": "y"})).line(),
                2,
            ),
        ],
        &mut out,
    )?;
    s.finish()?;
    repo.assert_fsck_strict()?;

    let golden = repo_file("tests/fixtures/mcp/transcript.txt");
    if std::env::var_os("GATOS_BLESS").is_some() {
        std::fs::create_dir_all(golden.parent().ok_or("no parent")?)?;
        std::fs::write(&golden, &out)?;
    }
    let want = std::fs::read_to_string(&golden).unwrap_or_default();
    if want != out {
        let first = want
            .lines()
            .zip(out.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(want.lines().count().min(out.lines().count()));
        return Err(format!(
            "the MCP transcript differs from {} at line {} (re-record with GATOS_BLESS=1 after checking):\nwant: {}\ngot:  {}",
            golden.display(),
            first + 1,
            want.lines().nth(first).unwrap_or("<end>"),
            out.lines().nth(first).unwrap_or("<end>"),
        )
        .into());
    }
    Ok(())
}

#[test]
fn normalize_replaces_volatile_values_only() {
    let s = r#"{"id":"01M91CCYG7A1TZQY76XNEEFP2E","commit":"169ced709b39e5c77bd64fe35a9d9fa3483afeb0","at":"2026-12-04T20:37:13.950Z","c":"blake3:85ea61a490065289dda8ab009457e1f6beb05eadcc1eab6847271635e0baaf9a","n":"messages.read"}"#;
    assert_eq!(
        normalize(s),
        r#"{"id":"<ULID>","commit":"<OID>","at":"<TIME>","c":"blake3:<DIGEST>","n":"messages.read"}"#
    );
}

/// The audit trail is `audit.read`'s whatever carries it: with `--deny-tools audit.read`,
/// neither `messages.read` of its topic nor the resource `gatos://topics/gatos.audit`
/// reads it, while other topics stay readable.
#[test]
fn a_denied_audit_read_is_not_reached_through_its_topic() -> TestResult {
    let repo = ledger()?;
    let mut s = Session::start(&repo, &["--deny-tools", "audit.read"])?;
    s.send(
        &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "audit-probe", "version": "1"}}})
        .to_string(),
    )?;
    assert!(s.next()?.get("result").is_some());
    s.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)?;
    let call = |id: u64, topic: &str| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
               "params": {"name": "messages.read", "arguments": {"topic": topic}}})
        .to_string()
    };
    s.send(&call(2, "gatos.audit"))?;
    let a = s.next()?;
    assert_eq!(a["result"]["isError"], true, "{a}");
    assert_eq!(
        a["result"]["structuredContent"]["error"]["code"], "Forbidden",
        "{a}"
    );
    s.send(&call(3, "t"))?;
    let b = s.next()?;
    assert!(b["result"]["isError"] != true, "{b}");
    s.send(
        &json!({"jsonrpc": "2.0", "id": 4, "method": "resources/read",
                "params": {"uri": "gatos://topics/gatos.audit"}})
        .to_string(),
    )?;
    let c = s.next()?;
    assert_eq!(c["error"]["data"]["code"], "Forbidden", "{c}");
    s.finish()?;
    Ok(())
}

/// A resource is refused past the tools' 1 MiB answer cap (PayloadTooLarge, with a hint),
/// as a tool's answer is; a smaller one reads.
#[test]
fn a_resource_past_the_answer_cap_is_refused() -> TestResult {
    let repo = ledger()?;
    let pad = "x".repeat(500 * 1024);
    let batch = repo.root().join("big.jsonl");
    std::fs::write(
        &batch,
        (0..3)
            .map(|i| format!("{{\"i\":{i},\"pad\":\"{pad}\"}}\n"))
            .collect::<String>(),
    )?;
    gatos_ok(
        &repo,
        &[
            "messages",
            "publish",
            "big",
            "--batch",
            &batch.to_string_lossy(),
        ],
    )?;
    let one = repo.root().join("small.jsonl");
    std::fs::write(&one, "{\"n\":1}\n")?;
    gatos_ok(
        &repo,
        &[
            "messages",
            "publish",
            "small",
            "--batch",
            &one.to_string_lossy(),
        ],
    )?;
    let mut s = Session::start(&repo, &[])?;
    s.send(
        &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "cap-probe", "version": "1"}}})
        .to_string(),
    )?;
    assert!(s.next()?.get("result").is_some());
    s.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)?;
    let read = |id: u64, uri: &str| {
        json!({"jsonrpc": "2.0", "id": id, "method": "resources/read", "params": {"uri": uri}})
            .to_string()
    };
    s.send(&read(2, "gatos://topics/big"))?;
    let big = s.next()?;
    assert_eq!(big["error"]["data"]["code"], "PayloadTooLarge", "{big}");
    assert!(big["error"]["data"]["hint"].is_string(), "{big}");
    s.send(&read(3, "gatos://topics/small"))?;
    let small = s.next()?;
    let text = small["result"]["contents"][0]["text"]
        .as_str()
        .ok_or(format!("no text: {small}"))?;
    assert!(text.contains("\"n\":1"), "{small}");
    s.finish()?;
    Ok(())
}

/// One `/mcp` exchange on a fresh connection: the status, the head's lines and the body.
fn mcp_exchange(
    addr: &str,
    token: &str,
    session: Option<&str>,
    body: &str,
) -> TestResult<(u16, String, String)> {
    use std::io::Read as _;
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(ANSWER))?;
    let sid = session.map_or(String::new(), |id| format!("Mcp-Session-Id: {id}\r\n"));
    write!(
        s,
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n{sid}Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let (head, rest) = out.split_once("\r\n\r\n").ok_or("no header end")?;
    let status = head.split(' ').nth(1).ok_or("no status line")?.parse()?;
    Ok((status, head.to_ascii_lowercase(), rest.to_owned()))
}

fn initialize(extra: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-11-25","capabilities":{{{extra}}},"clientInfo":{{"name":"t","version":"1"}}}}}}"#
    )
}

/// Opens a session with `token`: its id.
fn open_session(addr: &str, token: &str) -> TestResult<String> {
    let (status, head, body) = mcp_exchange(addr, token, None, &initialize(""))?;
    assert_eq!(status, 200, "{head}\n{body}");
    let id = head
        .lines()
        .find_map(|l| l.strip_prefix("mcp-session-id:"))
        .ok_or("no session id")?
        .trim()
        .to_owned();
    let (status, _, body) = mcp_exchange(
        addr,
        token,
        Some(&id),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )?;
    assert!(status < 300, "{body}");
    Ok(id)
}

/// A token's MCP sessions are its own and bounded, and so are its resource watches over
/// all of them; they end when the token is withdrawn (black-box findings: one read-only
/// token took all 8,192 of the daemon's streams through sessions of 64 watches each, used
/// another token's session, and kept every initialize in memory).
#[test]
fn a_tokens_mcp_sessions_and_watches_are_its_own_and_bounded() -> TestResult {
    let repo = ledger()?;
    let tokens = crate::support::token_file(&repo, &format!("ci {RW}\nreader {RO} ro\n"))?;
    let (mut child, addr, log) = crate::support::http_daemon(&repo, &tokens, "mcp", &[])?;
    let run = (|| -> TestResult {
        let first = open_session(&addr, RO)?;
        // Another token cannot use it.
        let (status, _, body) = mcp_exchange(
            &addr,
            RW,
            Some(&first),
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
        )?;
        assert_eq!(status, 403, "{body}");
        // An initialize carrying 100 KB of capabilities is refused.
        let big = format!(
            r#""experimental":{{"x":{{"y":"{}"}}}}"#,
            "z".repeat(100_000)
        );
        let (status, _, body) = mcp_exchange(&addr, RO, None, &initialize(&big))?;
        assert_eq!(status, 413, "{body}");
        // 256 watches for the token over five sessions, then no more.
        let mut sessions = vec![first];
        for _ in 0..4 {
            sessions.push(open_session(&addr, RO)?);
        }
        let mut refused = None;
        for n in 0..257 {
            let session = &sessions[n / 64];
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":{},"method":"resources/subscribe","params":{{"uri":"gatos://topics/w{n}"}}}}"#,
                n + 10
            );
            let (status, _, answer) = mcp_exchange(&addr, RO, Some(session), &body)?;
            assert_eq!(status, 200, "{answer}");
            if answer.contains("\"error\"") {
                refused = Some((n, answer));
                break;
            }
        }
        let (n, answer) = refused.ok_or("257 watches for one token")?;
        assert_eq!(n, 256, "{answer}");
        assert!(answer.contains("the most one caller may"), "{answer}");
        let health = |token: &str| -> TestResult<Value> {
            let out = Command::new("curl")
                .args(["-s", "-H", &format!("Authorization: Bearer {token}")])
                .arg(format!("http://{addr}/api/v1/health"))
                .output()?;
            Ok(serde_json::from_slice(&out.stdout)?)
        };
        assert_eq!(health(RW)?["subscriptions"], 256);
        // Sessions past 64 for one token are refused (five are open).
        for _ in 5..64 {
            open_session(&addr, RO)?;
        }
        let (status, _, body) = mcp_exchange(&addr, RO, None, &initialize(""))?;
        assert_eq!(status, 429, "{body}");
        // The token leaves the file: its watches end.
        std::fs::write(&tokens, format!("ci {RW}\n"))?;
        let st = Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()?;
        assert!(st.success());
        gatos_testutil::wait_for("the withdrawn token's watches to end", ANSWER, || {
            health(RW).is_ok_and(|h| h["subscriptions"] == 0)
        })?;
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    run.map_err(|e| {
        format!(
            "{e}\n--- gatosd:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
        .into()
    })
}

/// `gatosd mcp --stdio` on `repo`, its stdin and stdout piped.
fn stdio_server(repo: &TempRepo) -> TestResult<Child> {
    let mut cmd = Command::new(bin("gatosd"));
    cmd.args(["mcp", "--stdio"]).current_dir(repo.path());
    hermetic(&mut cmd, &repo.home());
    Ok(cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?)
}

/// A notification or a response before the first request means nothing and is skipped:
/// the session goes on (it ended the process before, `expect initialized request`).
#[test]
fn stdio_skips_what_comes_before_the_first_request() -> TestResult {
    let repo = ledger()?;
    let mut child = stdio_server(&repo)?;
    let mut stdin = child.stdin.take().ok_or("stdin")?;
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#
    )?;
    writeln!(stdin, r#"{{"jsonrpc":"2.0","id":98,"result":{{}}}}"#)?;
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","id":2,"method":"ping","params":{}}}"#,
        json!({"_meta": meta()})
    )?;
    drop(stdin);
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let answer: Value = serde_json::from_str(text.lines().next().ok_or("no answer")?)?;
    assert_eq!(answer["id"], 2, "{text}");
    assert_eq!(answer["result"], json!({}), "{text}");
    assert!(out.status.success(), "{:?}", out.status);
    Ok(())
}

/// A stdio client that sends many requests before it reads any answer: the daemon stops
/// reading at 64 unanswered requests (its memory stays bounded: 2 GB before for 1,000 reads
/// of a 530 KB message, docs/PERFORMANCE.md) and every request is answered once the client
/// reads; a cancelled request stops counting.
#[test]
fn stdio_answers_every_request_of_a_client_that_reads_late() -> TestResult {
    let repo = ledger()?;
    gatos_ok(&repo, &["messages", "publish", "t", "--data", r#"{"n":1}"#])?;
    let mut child = stdio_server(&repo)?;
    let mut stdin = child.stdin.take().ok_or("stdin")?;
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        // A cancel of a request that is never sent counts nothing.
        writeln!(
            stdin,
            r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":9999}}}}"#
        )?;
        for i in 0..300 {
            let req = json!({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {
                "name": "messages.read", "arguments": {"topic": "t"}, "_meta": meta()}});
            writeln!(stdin, "{req}")?;
        }
        Ok(())
    });
    let stdout = child.stdout.take().ok_or("stdout")?;
    let mut ids = std::collections::BTreeSet::new();
    for line in BufReader::new(stdout).lines() {
        let v: Value = serde_json::from_str(&line?)?;
        if let Some(i) = v["id"].as_u64() {
            assert!(v["result"]["isError"] == false, "{v}");
            ids.insert(i);
        }
        if ids.len() == 300 {
            break;
        }
    }
    writer.join().map_err(|_| "writer")??;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(ids.len(), 300);
    Ok(())
}

/// A `jobs.wait` the client cancels (`notifications/cancelled`) ends at once, and with it
/// the wait slot of its token (a black-box test found 16 cancelled waits holding all of a
/// token's slots until their own timeout, 28 s later).
#[test]
fn a_cancelled_wait_ends_and_gives_its_slot_back() -> TestResult {
    let repo = ledger()?;
    let id = crate::support::enqueue(&repo, &["--queue", "never", "--", "true"])?;
    let tokens = crate::support::token_file(&repo, &format!("ci {RW}\n"))?;
    let (mut child, addr, log) = crate::support::http_daemon(&repo, &tokens, "mcp", &[])?;
    let run = (|| -> TestResult {
        let session = open_session(&addr, RW)?;
        let waits: Vec<_> = (0..16)
            .map(|i| {
                let (addr, session, id) = (addr.clone(), session.clone(), id.clone());
                std::thread::spawn(move || {
                    let body = format!(
                        r#"{{"jsonrpc":"2.0","id":{},"method":"tools/call","params":{{"name":"jobs.wait","arguments":{{"id":"{id}","timeout_ms":30000}}}}}}"#,
                        400 + i
                    );
                    mcp_exchange(&addr, RW, Some(&session), &body)
                        .map(|(s, _, _)| s)
                        .map_err(|e| e.to_string())
                })
            })
            .collect();
        // A cancel that comes before its wait started is lost: cancel again until the log
        // has seen every wait cancelled.
        gatos_testutil::wait_for("16 waits cancelled", ANSWER, || {
            for i in 0..16 {
                let _ = mcp_exchange(
                    &addr,
                    RW,
                    Some(&session),
                    &format!(
                        r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{}}}}}"#,
                        400 + i
                    ),
                );
            }
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .matches("MCP call cancelled by its client")
                .count()
                >= 16
        })?;
        for w in waits {
            w.join()
                .map_err(|_| "wait thread")?
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    run
}
