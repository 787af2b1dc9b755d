//! The HTTP face with real clients (issue #17, ADR 0035): a real `gatosd --http
//! 127.0.0.1:0`, driven by `curl` and Python `requests`; named tokens on TCP JSON-RPC.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gatos_testutil::{TempRepo, TestResult, bin, hermetic, wait_for};
use serde_json::{Value, json};

use crate::support::gatos_ok;

const CI: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const DASH: &str = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";

/// A token file of two named tokens, `ci` and the read-only `dash`, mode 0600.
fn named_tokens(repo: &TempRepo) -> TestResult<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let f = repo.root().join("tokens");
    std::fs::write(&f, format!("# gatosd tokens\nci {CI}\n\ndash {DASH} ro\n"))?;
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

struct Gatosd {
    child: Child,
    /// `127.0.0.1:PORT` of the HTTP face, read from `<git-dir>/gatos/gatosd/http-addr`.
    addr: String,
    stderr: PathBuf,
}

impl Gatosd {
    /// `gatosd --http 127.0.0.1:0 --token-file F` plus `extra`.
    fn start(repo: &TempRepo, token_file: &Path, extra: &[&str]) -> TestResult<Gatosd> {
        let (child, addr, stderr) = crate::support::http_daemon(repo, token_file, "gatosd", extra)?;
        Ok(Gatosd {
            child,
            addr,
            stderr,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn signal(&self, sig: &str) -> TestResult {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()?;
        assert!(status.success());
        Ok(())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Gatosd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An answer as curl saw it.
#[derive(Debug)]
struct Reply {
    status: u16,
    /// Header lines, lowercased names.
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> TestResult<Value> {
        serde_json::from_str(&self.body)
            .map_err(|e| format!("not JSON ({e}): {:?} {}", self.status, self.body).into())
    }

    /// The problem's code, after checking it is a problem of `status`.
    fn problem(&self, status: u16) -> TestResult<Value> {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{self:?}"
        );
        let p = self.json()?;
        assert_eq!(p["status"], status, "{p}");
        assert_eq!(
            p["type"],
            format!("urn:gatos:error:{}", p["code"].as_str().unwrap_or("")),
            "{p}"
        );
        assert!(p["title"].as_str().is_some_and(|t| !t.is_empty()), "{p}");
        assert!(p["detail"].as_str().is_some(), "{p}");
        assert!(p["data"].is_object(), "{p}");
        Ok(p)
    }
}

/// Runs `curl -sS -i ARGS` and splits its answer.
fn curl(args: &[&str]) -> TestResult<Reply> {
    let out = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "60"])
        .args(args)
        .output()?;
    if !out.status.success() {
        return Err(format!("curl {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let text = String::from_utf8(out.stdout)?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no header end")?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or("no status line")?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Reply {
        status,
        headers,
        body: body.to_owned(),
    })
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

#[test]
fn healthz_needs_no_token_and_every_other_route_does() -> TestResult {
    let repo = TempRepo::new()?;
    let tokens = named_tokens(&repo)?;
    let d = Gatosd::start(&repo, &tokens, &[])?;

    let r = curl(&[&d.url("/healthz")])?;
    assert_eq!(
        (r.status, r.json()?),
        (200, json!({"status": "ok"})),
        "{r:?}"
    );

    // No token, a wrong one, another scheme: 401 problems with the challenge.
    for extra in [
        vec![],
        vec!["-H".to_owned(), bearer("wrong")],
        vec!["-H".to_owned(), "Authorization: Basic Y2k6eA==".to_owned()],
    ] {
        let mut args: Vec<&str> = extra.iter().map(String::as_str).collect();
        let url = d.url("/api/v1/topics");
        args.push(&url);
        let r = curl(&args)?;
        let p = r.problem(401)?;
        assert_eq!(p["code"], "Unauthorized");
        assert!(
            r.header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer realm=\"gatos\"")),
            "{r:?}"
        );
        assert_eq!(p["data"]["token_file"], tokens.display().to_string(), "{p}");
        assert!(!r.body.contains(CI) && !r.body.contains(DASH));
    }

    // A rebinding page's host name is refused before anything else, /healthz included.
    for path in ["/healthz", "/api/v1/topics"] {
        let r = curl(&["-H", "Host: evil.example", "-H", &bearer(CI), &d.url(path)])?;
        let p = r.problem(403)?;
        assert_eq!(
            (p["code"].as_str(), p["data"]["host"].as_str()),
            (Some("Forbidden"), Some("evil.example"))
        );
        assert!(
            p["detail"]
                .as_str()
                .unwrap_or("")
                .contains("--http-allowed-host"),
            "{p}"
        );
    }
    let r = curl(&["-H", "Host: localhost:1", &d.url("/healthz")])?;
    assert_eq!(r.status, 200, "{r:?}");

    // Routing's own errors are problems too.
    let r = curl(&["-H", &bearer(CI), &d.url("/api/v1/nope")])?;
    assert_eq!(r.problem(404)?["code"], "NotFound");
    // A stream whose start is no message is refused before it opens (http_sse.rs has
    // the streams themselves).
    let r = curl(&[
        "-H",
        &bearer(CI),
        "-H",
        "Last-Event-ID: 01HAAAAAAAAAAAAAAAAAAAAAAA",
        &d.url("/api/v1/topics/t/stream"),
    ])?;
    assert_eq!(r.problem(404)?["code"], "NotFound");
    let r = curl(&["-X", "DELETE", &d.url("/healthz")])?;
    let p = r.problem(405)?;
    assert_eq!(p["code"], "InvalidInput");
    assert!(r.header("allow").is_some(), "{r:?}");
    Ok(())
}

#[test]
fn an_allowed_host_name_is_served_and_others_still_refused() -> TestResult {
    let repo = TempRepo::new()?;
    let tokens = named_tokens(&repo)?;
    let d = Gatosd::start(&repo, &tokens, &["--http-allowed-host", "gatos.lan"])?;
    let r = curl(&["-H", "Host: GATOS.lan:8080", &d.url("/healthz")])?;
    assert_eq!(r.status, 200, "{r:?}");
    let r = curl(&["-H", "Host: gatos.lan.evil.example", &d.url("/healthz")])?;
    r.problem(403)?;
    Ok(())
}

#[test]
fn a_token_file_others_can_read_and_a_non_loopback_address_are_start_errors() -> TestResult {
    use std::os::unix::fs::PermissionsExt;
    let repo = TempRepo::new()?;
    let tokens = named_tokens(&repo)?;
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o644))?;
    let run = |args: &[&str]| -> TestResult<std::process::Output> {
        let mut cmd = Command::new(bin("gatosd"));
        cmd.args(args).current_dir(repo.path()).stdin(Stdio::null());
        hermetic(&mut cmd, &repo.home());
        Ok(cmd.output()?)
    };
    let out = run(&[
        "--http",
        "127.0.0.1:0",
        "--token-file",
        &tokens.to_string_lossy(),
    ])?;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr)?;
    assert!(err.contains("chmod 600"), "{err}");
    let out = run(&["--http", "0.0.0.0:0"])?;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr)?;
    assert!(err.contains("--allow-insecure-non-loopback"), "{err}");
    Ok(())
}

/// A JSON-RPC client on TCP.
struct Rpc {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    next: u64,
}

impl Rpc {
    fn connect(addr: &str) -> TestResult<Rpc> {
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Rpc {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
            next: 1,
        })
    }

    /// The response, or `None` when the daemon closed the connection.
    fn call(&mut self, method: &str, params: Value) -> TestResult<Option<Value>> {
        let id = self.next;
        self.next += 1;
        let sent = writeln!(
            self.writer,
            "{}",
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
        );
        match sent {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(None),
            other => other?,
        }
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        Ok(Some(serde_json::from_str(&line)?))
    }
}

/// A free loopback port (bound, then released for gatosd to take).
fn free_port() -> TestResult<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_tcp(repo: &TempRepo, token_file: &Path, port: u16) -> TestResult<Child> {
    let mut cmd = Command::new(bin("gatosd"));
    cmd.args(["--socket", &repo.root().join("t.sock").to_string_lossy()])
        .args(["--listen", &format!("127.0.0.1:{port}"), "--token-file"])
        .arg(token_file)
        .current_dir(repo.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    hermetic(&mut cmd, &repo.home());
    let child = cmd.spawn()?;
    wait_for("gatosd to listen on TCP", Duration::from_secs(30), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    })?;
    Ok(child)
}

#[test]
fn json_rpc_on_tcp_takes_any_named_token_and_the_legacy_file_still_works() -> TestResult {
    let repo = TempRepo::new()?;
    let tokens = named_tokens(&repo)?;
    let port = free_port()?;
    let mut child = start_tcp(&repo, &tokens, port)?;
    let addr = format!("127.0.0.1:{port}");
    let mut c = Rpc::connect(&addr)?;
    let r = c
        .call("gatos.auth", json!({"token": CI}))?
        .ok_or("closed")?;
    assert_eq!(r["result"]["authenticated"], true, "{r}");
    let r = c
        .call("messages.publish", json!({"topic": "t", "payload": 1}))?
        .ok_or("closed")?;
    assert!(r["result"]["ulid"].is_string(), "{r}");
    // The ro token opens the connection for reads only.
    let mut c = Rpc::connect(&addr)?;
    let r = c
        .call("gatos.auth", json!({"token": DASH}))?
        .ok_or("closed")?;
    assert_eq!(r["result"]["authenticated"], true, "{r}");
    let r = c
        .call("messages.read", json!({"topic": "t"}))?
        .ok_or("closed")?;
    assert_eq!(r["result"]["messages"][0]["payload"], 1, "{r}");
    let r = c
        .call("messages.publish", json!({"topic": "t", "payload": 2}))?
        .ok_or("closed")?;
    assert_eq!(r["error"]["data"]["code"], "Forbidden", "{r}");
    assert_eq!(r["error"]["data"]["token_read_only"], true, "{r}");
    // A wrong token, or the name instead of the token, closes the connection.
    for token in ["ci", "wrong"] {
        let mut c = Rpc::connect(&addr)?;
        let r = c
            .call("gatos.auth", json!({"token": token}))?
            .ok_or("closed")?;
        assert_eq!(r["error"]["data"]["code"], "Unauthorized", "{r}");
        assert!(c.call("gatos.version", json!({}))?.is_none());
    }
    let _ = child.kill();
    let _ = child.wait();

    // The legacy file of one bare token (what gatosd makes) opens as before.
    let legacy = repo.root().join("legacy");
    std::fs::write(&legacy, "s3cret-legacy-token\n")?;
    let port = free_port()?;
    let mut child = start_tcp(&repo, &legacy, port)?;
    let mut c = Rpc::connect(&format!("127.0.0.1:{port}"))?;
    let r = c
        .call("gatos.auth", json!({"token": "s3cret-legacy-token"}))?
        .ok_or("closed")?;
    assert_eq!(r["result"]["authenticated"], true, "{r}");
    let _ = child.kill();
    let _ = child.wait();
    Ok(())
}

#[test]
fn sighup_rereads_the_token_file_and_a_bad_file_keeps_the_tokens_in_force() -> TestResult {
    let repo = TempRepo::new()?;
    let tokens = named_tokens(&repo)?;
    let d = Gatosd::start(&repo, &tokens, &[])?;
    let topics = d.url("/api/v1/topics");
    let status =
        |token: &str| -> TestResult<u16> { Ok(curl(&["-H", &bearer(token), &topics])?.status) };
    let third = "c".repeat(40);
    assert_eq!(status(&third)?, 401);
    std::fs::write(&tokens, format!("ci {CI}\nthird {third}\n"))?;
    d.signal("-HUP")?;
    wait_for("the new token to open", Duration::from_secs(30), || {
        status(&third).is_ok_and(|s| s != 401)
    })?;
    assert_eq!(status(DASH)?, 401, "dash was removed");
    // A file that does not parse: the tokens in force stay, and the log says why.
    std::fs::write(&tokens, "ci short\n")?;
    d.signal("-HUP")?;
    wait_for("the refusal to be logged", Duration::from_secs(30), || {
        d.log().contains("the token file was not re-read")
    })?;
    assert_ne!(status(&third)?, 401);
    Ok(())
}

/// Runs a Python script (with `requests`) against the daemon: `BASE`, `CI` and `DASH` in
/// its environment; returns its stdout, failing with its stderr.
fn python(d: &Gatosd, script: &str) -> TestResult<String> {
    let out = Command::new("python3")
        .args(["-c", script])
        .env("BASE", d.url("/api/v1"))
        .env("CI", CI)
        .env("DASH", DASH)
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "python failed:\n{}\n--- gatosd:\n{}",
            String::from_utf8_lossy(&out.stderr),
            d.log()
        )
        .into());
    }
    Ok(String::from_utf8(out.stdout)?)
}

#[test]
fn rest_publishes_reads_and_runs_a_job_as_the_tokens_actor() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init", "--json"])?;
    let tokens = named_tokens(&repo)?;
    let d = Gatosd::start(&repo, &tokens, &[])?;
    let auth = bearer(CI);

    // curl: publish (201), read it back.
    let r = curl(&[
        "-X",
        "POST",
        "-H",
        &auth,
        "-H",
        "Content-Type: application/json",
        "--data",
        r#"{"payload":{"n":1}}"#,
        &d.url("/api/v1/topics/orders/messages"),
    ])?;
    assert_eq!(r.status, 201, "{r:?}");
    let row = r.json()?;
    assert_eq!(row["seq"], 1, "{row}");
    let r = curl(&[
        "-H",
        &auth,
        &d.url("/api/v1/topics/orders/messages?since_seq=0&limit=10"),
    ])?;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.header("cache-control"),
        Some("private, no-cache"),
        "{r:?}"
    );
    let page = r.json()?;
    assert_eq!(page["messages"][0]["ulid"], row["ulid"], "{page}");

    // A page that is not the last links to the next one, with the answer's cursor.
    let r = curl(&[
        "-X",
        "POST",
        "-H",
        &auth,
        "-H",
        "Content-Type: application/json",
        "--data",
        r#"{"payload":{"n":2}}"#,
        &d.url("/api/v1/topics/orders/messages"),
    ])?;
    assert_eq!(r.status, 201, "{r:?}");
    let r = curl(&[
        "-H",
        &auth,
        &d.url("/api/v1/topics/orders/messages?since_seq=0&limit=1"),
    ])?;
    let link = r.header("link").ok_or("no Link")?.to_owned();
    let next = link
        .strip_prefix('<')
        .and_then(|l| l.split_once(">; rel=\"next\""))
        .map(|(u, _)| u.to_owned())
        .ok_or(format!("not a next link: {link}"))?;
    assert!(
        next.starts_with("/api/v1/topics/orders/messages?limit=1&since="),
        "{next}"
    );
    let r = curl(&["-H", &auth, &d.url(&next)])?;
    assert_eq!(
        r.json()?["messages"][0]["payload"],
        json!({"n": 2}),
        "{r:?}"
    );

    // The face's own answers: health with the daemon's counters, the OpenAPI document.
    let r = curl(&["-H", &auth, &d.url("/api/v1/health")])?;
    let h = r.json()?;
    assert_eq!(h["status"], "ok", "{h}");
    assert!(
        h["connections"].as_u64() >= Some(1),
        "this request's connection: {h}"
    );
    let r = curl(&["-H", &auth, &d.url("/readyz")])?;
    let ready = r.json()?;
    assert_eq!((r.status, &ready["ready"]), (200, &json!(true)), "{r:?}");
    assert_eq!(
        curl(&[&d.url("/readyz")])?.status,
        401,
        "readiness needs a token"
    );
    let r = curl(&["-H", &auth, &d.url("/api/v1/openapi.json")])?;
    let doc = r.json()?;
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{r:?}"
    );
    assert!(doc["paths"]["/api/v1/jobs"]["post"].is_object());

    // Python requests: enqueue → Location → get → cancel, and the audit names the actor.
    let out = python(
        &d,
        r#"
import os, json, requests
base, h = os.environ["BASE"], {"Authorization": "Bearer " + os.environ["CI"]}
r = requests.post(base + "/jobs", json={"command": ["true"], "queue": "build"}, headers=h)
assert r.status_code == 201, (r.status_code, r.text)
job = r.json()
loc = r.headers["Location"]
assert loc == "/api/v1/jobs/" + job["id"], loc
r = requests.get(base + loc[len("/api/v1"):], headers=h)
assert r.status_code == 200, r.text
assert r.json()["enqueuer"]["actor"] == "http:ci", r.json()
r = requests.post(base + loc[len("/api/v1"):] + "/cancel", json={"reason": "not needed"}, headers=h)
assert r.status_code == 200, r.text
assert r.json()["state"] == "cancelled", r.json()
r = requests.get(base + "/audit", params={"action": "jobs.cancel"}, headers=h)
assert r.status_code == 200, r.text
assert [x["actor"] for x in r.json()["records"]] == ["http:ci"], r.json()
r = requests.get(base + "/jobs", params={"queue": "build", "all": "true", "limit": 10}, headers=h)
assert r.status_code == 200, r.text
print(json.dumps([j["id"] for j in r.json()["jobs"]]))
"#,
    )?;
    let ids: Value = serde_json::from_str(out.trim())?;
    let id = match ids.as_array().map(Vec::as_slice) {
        Some([Value::String(id)]) => id.clone(),
        _ => return Err(format!("one job expected: {out}").into()),
    };
    // The cancel's commit carries the token's actor.
    let msg = repo.git(&["log", "--all", "--format=%B"])?;
    assert!(msg.contains(&format!("Job: {id}")), "{msg}");
    assert!(
        msg.contains("Actor: http:ci"),
        "the commits name the token's actor: {msg}"
    );
    repo.assert_fsck_strict()
}

#[test]
fn rest_errors_are_problems_with_the_taxonomys_status() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init", "--json"])?;
    gatos_ok(
        &repo,
        &["jobs", "config", "build", "--max-pending", "1", "--json"],
    )?;
    let tokens = named_tokens(&repo)?;
    let d = Gatosd::start(&repo, &tokens, &["--max-line", "4096"])?;
    let before = repo.git(&["for-each-ref", "refs/gatos/"])?;
    python(
        &d,
        r#"
import os, requests
base = os.environ["BASE"]
h = {"Authorization": "Bearer " + os.environ["CI"]}
ro = {"Authorization": "Bearer " + os.environ["DASH"]}
def problem(r, status, code):
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["Content-Type"] == "application/problem+json", r.headers
    p = r.json()
    assert p["code"] == code and p["status"] == status, p
    assert p["type"] == "urn:gatos:error:" + code, p
    return p
# NotFound: a job that does not exist.
problem(requests.get(base + "/jobs/01JZZZZZZZZZZZZZZZZZZZZZZZ", headers=h), 404, "NotFound")
# InvalidInput: a field the request does not have, a body that is not JSON, a bad id.
problem(requests.post(base + "/jobs", json={"command": ["true"], "bogus": 1}, headers=h), 400, "InvalidInput")
problem(requests.post(base + "/jobs", data="{not json", headers={**h, "Content-Type": "application/json"}), 400, "InvalidInput")
problem(requests.post(base + "/jobs", data="[]", headers={**h, "Content-Type": "application/json"}), 400, "InvalidInput")
problem(requests.get(base + "/jobs/not-a-ulid", headers=h), 400, "InvalidInput")
problem(requests.get(base + "/jobs", params={"limit": "ten"}, headers=h), 400, "InvalidInput")
p = problem(requests.post(base + "/jobs", data="{}", headers={**h, "Content-Type": "text/plain"}), 415, "InvalidInput")
# A malformed Idempotency-Key (over 255 characters) is refused (http_idem.rs has the rest).
p = problem(requests.post(base + "/jobs", json={"command": ["true"]}, headers={**h, "Idempotency-Key": "k" * 256}), 400, "InvalidInput")
assert p["data"]["field"] == "Idempotency-Key", p
# PayloadTooLarge: a body over --max-line, with and without a length.
problem(requests.post(base + "/topics/t/messages", json={"payload": "x" * 10000}, headers=h), 413, "PayloadTooLarge")
problem(requests.post(base + "/topics/t/messages", data=iter([b'{"payload":"', b"x" * 10000, b'"}']), headers={**h, "Content-Type": "application/json"}), 413, "PayloadTooLarge")
# A read-only token reads, and may not write.
assert requests.get(base + "/topics", headers=ro).status_code == 200
p = problem(requests.post(base + "/topics/t/messages", json={"payload": 1}, headers=ro), 403, "Forbidden")
assert p["data"]["token_read_only"] is True, p
"#,
    )?;
    assert_eq!(
        repo.git(&["for-each-ref", "refs/gatos/"])?,
        before,
        "refusals change nothing"
    );
    // QueueFull: 429 with Retry-After from the hint.
    python(
        &d,
        r#"
import os, requests
base, h = os.environ["BASE"], {"Authorization": "Bearer " + os.environ["CI"]}
r = requests.post(base + "/jobs", json={"command": ["true"], "queue": "build"}, headers=h)
assert r.status_code == 201, r.text
r = requests.post(base + "/jobs", json={"command": ["true"], "queue": "build"}, headers=h)
assert r.status_code == 429, r.text
p = r.json()
assert p["code"] == "QueueFull" and p["data"]["max_pending"] == 1, p
assert int(r.headers["Retry-After"]) >= 1, r.headers
assert int(r.headers["Retry-After"]) >= p["data"]["retry_after_seconds"], (r.headers, p)
"#,
    )?;
    // Hostile input never took the daemon down.
    assert_eq!(curl(&[&d.url("/healthz")])?.status, 200);
    repo.assert_fsck_strict()
}

#[test]
fn a_read_only_daemon_refuses_rest_writes() -> TestResult {
    let repo = TempRepo::new()?;
    let tokens = named_tokens(&repo)?;
    let d = Gatosd::start(&repo, &tokens, &["--read-only"])?;
    let r = curl(&[
        "-X",
        "POST",
        "-H",
        &bearer(CI),
        "-H",
        "Content-Type: application/json",
        "--data",
        r#"{"payload":1}"#,
        &d.url("/api/v1/topics/t/messages"),
    ])?;
    let p = r.problem(403)?;
    assert_eq!(
        (p["code"].as_str(), &p["data"]["read_only"]),
        (Some("Forbidden"), &json!(true)),
        "{p}"
    );
    let r = curl(&["-H", &bearer(CI), &d.url("/api/v1/topics")])?;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(repo.refs("refs/gatos/messages/")?.is_empty());
    Ok(())
}

#[test]
fn sigterm_answers_the_request_in_flight_then_exits() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init", "--json"])?;
    let tokens = named_tokens(&repo)?;
    let mut d = Gatosd::start(&repo, &tokens, &["--log-level", "gatosd=debug"])?;
    let r = curl(&[
        "-X",
        "POST",
        "-H",
        &bearer(CI),
        "-H",
        "Content-Type: application/json",
        "--data",
        r#"{"command":["true"]}"#,
        &d.url("/api/v1/jobs"),
    ])?;
    let id = r.json()?["id"].as_str().ok_or("id")?.to_owned();
    // A logs call that waits (the job is not claimed): in flight while the signal comes.
    let url = d.url(&format!("/api/v1/jobs/{id}/logs?wait_ms=2000"));
    let auth = bearer(CI);
    let waiting = std::thread::spawn(move || curl(&["-H", &auth, &url]).map_err(|e| e.to_string()));
    wait_for("the logs call to start", Duration::from_secs(30), || {
        d.log().contains("jobs.logs")
    })?;
    d.signal("-TERM")?;
    let r = waiting.join().map_err(|_| "the client thread panicked")??;
    assert!(
        r.status == 200 || r.status == 503,
        "answered, not cut: {r:?}"
    );
    r.json()?;
    let status = d.child.wait()?;
    assert!(status.success(), "{status}");
    assert!(!repo.git_dir().join("gatos/gatosd/http-addr").exists());
    Ok(())
}

#[test]
fn hostile_bytes_get_an_answer_or_a_close_and_the_daemon_goes_on() -> TestResult {
    use std::io::Read;
    let repo = TempRepo::new()?;
    let tokens = named_tokens(&repo)?;
    let d = Gatosd::start(&repo, &tokens, &[])?;
    let huge_header = format!(
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX: {}\r\n\r\n",
        "a".repeat(200_000)
    );
    let huge_path = format!(
        "GET /{} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "a".repeat(100_000)
    );
    let inputs: Vec<Vec<u8>> = vec![
        b"GARBAGE\r\n\r\n".to_vec(),
        b"\x00\xff\xfe\r\n\r\n".to_vec(),
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: x\r\n\r\n".to_vec(),
        b"POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
        huge_header.into_bytes(),
        huge_path.into_bytes(),
        format!("GET /api/v1/jobs/%FF%FE HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {CI}\r\n\r\n").into_bytes(),
        format!("GET /api/v1/jobs?limit=%FF&queue=%00 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {CI}\r\n\r\n").into_bytes(),
    ];
    for input in inputs {
        let mut s = TcpStream::connect(&d.addr)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        // The daemon may close before it read everything: a reset is an answer too.
        let _ = s.write_all(&input);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || text.starts_with("HTTP/1.1 4"),
            "{:?} -> {text}",
            String::from_utf8_lossy(&input[..input.len().min(60)])
        );
    }
    assert_eq!(curl(&[&d.url("/healthz")])?.status, 200);
    assert!(!d.log().contains("panicked"), "{}", d.log());
    Ok(())
}

#[test]
fn tls_serves_https_with_the_given_certificate() -> TestResult {
    let repo = TempRepo::new()?;
    let tokens = named_tokens(&repo)?;
    let (cert, key) = (repo.root().join("cert.pem"), repo.root().join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args([
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = Gatosd::start(
        &repo,
        &tokens,
        &[
            "--tls-cert",
            &cert.to_string_lossy(),
            "--tls-key",
            &key.to_string_lossy(),
        ],
    )?;
    let https = |path: &str| format!("https://{}{path}", d.addr);
    let ca = cert.to_string_lossy().into_owned();
    let r = curl(&["--cacert", &ca, &https("/healthz")])?;
    assert_eq!(r.status, 200, "{r:?}");
    let r = curl(&["--cacert", &ca, "-H", &bearer(CI), &https("/api/v1/topics")])?;
    assert_eq!(r.status, 200, "{r:?}");
    // Clear text to the TLS port gets no HTTP answer; an unknown CA is refused by curl.
    assert!(curl(&[&d.url("/healthz")]).is_err());
    assert!(curl(&[&https("/healthz")]).is_err());
    assert_eq!(curl(&["--cacert", &ca, &https("/healthz")])?.status, 200);

    // A key that is not a key: gatosd does not start, and says which file.
    let bad = repo.root().join("bad.pem");
    std::fs::write(&bad, "not a key\n")?;
    let mut cmd = Command::new(bin("gatosd"));
    cmd.args([
        "--http",
        "127.0.0.1:0",
        "--socket",
        &repo.root().join("b.sock").to_string_lossy(),
    ])
    .args([
        "--token-file",
        &tokens.to_string_lossy(),
        "--tls-cert",
        &ca,
        "--tls-key",
    ])
    .arg(&bad)
    .current_dir(repo.path())
    .stdin(Stdio::null());
    hermetic(&mut cmd, &repo.home());
    let out = cmd.output()?;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr)?;
    assert!(
        err.contains("--tls-key") && err.contains("bad.pem"),
        "{err}"
    );
    Ok(())
}
