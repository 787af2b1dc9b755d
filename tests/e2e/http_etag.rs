//! Conditional reads on the HTTP face (issue #17, ADR 0042): a real `gatosd --http
//! 127.0.0.1:0`; the reads fixed by ref state carry an `ETag` computed from those refs
//! before the read, `If-None-Match` with it is a 304 with no body, and a write by the CLI
//! in another process moves it.

use std::process::Command;

use gatos_testutil::{TempRepo, TestResult};
use serde_json::Value;

use crate::support::gatos_ok;

const CI: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

use crate::support::HttpDaemon as Gatosd;

fn start(repo: &TempRepo) -> TestResult<Gatosd> {
    Gatosd::start(repo, &format!("ci {CI}\n"), "gatosd", &[])
}

#[derive(Debug)]
struct Reply {
    status: u16,
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
}

/// `curl -sS -i` GET of `path` with the token and `extra` headers.
fn get(d: &Gatosd, path: &str, extra: &[&str]) -> TestResult<Reply> {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-i", "--max-time", "60", "-H"])
        .arg(format!("Authorization: Bearer {CI}"));
    for h in extra {
        cmd.args(["-H", h]);
    }
    let out = cmd.arg(format!("http://{}{path}", d.addr)).output()?;
    if !out.status.success() {
        return Err(format!("curl {path}: {}", String::from_utf8_lossy(&out.stderr)).into());
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

/// A 200 with a strong `"g1-…"` tag and `private, no-cache`; its tag.
fn tagged(r: &Reply) -> TestResult<String> {
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.header("cache-control"),
        Some("private, no-cache"),
        "{r:?}"
    );
    let tag = r.header("etag").ok_or(format!("no ETag: {r:?}"))?;
    assert!(
        tag.starts_with("\"g1-") && tag.ends_with('"') && tag.len() == 31,
        "{tag}"
    );
    Ok(tag.to_owned())
}

fn not_modified(r: &Reply, tag: &str) {
    assert_eq!(r.status, 304, "{r:?}");
    assert!(r.body.is_empty(), "{r:?}");
    assert_eq!(r.header("etag"), Some(tag), "{r:?}");
}

fn publish(repo: &TempRepo, topic: &str, data: &str) -> TestResult<String> {
    let out = gatos_ok(
        repo,
        &["messages", "publish", topic, "--data", data, "--json"],
    )?;
    let v: Value = serde_json::from_str(out.lines().next().ok_or("no output")?)?;
    Ok(v["ulid"]
        .as_str()
        .ok_or(format!("no ulid: {v}"))?
        .to_owned())
}

#[test]
fn state_reads_carry_an_etag_that_moves_with_their_refs() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init", "--json"])?;
    let first = publish(&repo, "orders", "1")?;
    let d = start(&repo)?;
    let read = "/api/v1/topics/orders/messages?since_seq=0&limit=10";

    // The same read twice: the same tag; with it, 304 and no body (weak or in a list too).
    let a = tagged(&get(&d, read, &[])?)?;
    let b = tagged(&get(&d, read, &[])?)?;
    assert_eq!(a, b);
    not_modified(&get(&d, read, &[&format!("If-None-Match: {a}")])?, &a);
    not_modified(
        &get(&d, read, &[&format!("If-None-Match: \"x\", W/{a}")])?,
        &a,
    );
    not_modified(&get(&d, read, &["If-None-Match: *"])?, &a);
    // Other params are another answer, and another tag.
    let other = tagged(&get(
        &d,
        "/api/v1/topics/orders/messages?since_seq=0&limit=9",
        &[],
    )?)?;
    assert_ne!(other, a);
    // Garbage is no match: the answer.
    let r = get(&d, read, &["If-None-Match: not a tag,,"])?;
    assert_eq!(tagged(&r)?, a);
    assert!(r.body.contains(&first), "{r:?}");

    // A publish by the CLI in another process: the old tag no longer matches.
    let second = publish(&repo, "orders", "2")?;
    let r = get(&d, read, &[&format!("If-None-Match: {a}")])?;
    let c = tagged(&r)?;
    assert_ne!(c, a);
    assert!(r.body.contains(&second), "{r:?}");
    not_modified(&get(&d, read, &[&format!("If-None-Match: {c}")])?, &c);

    // checkpoints.get: the tag moves when the checkpoint moves (and when the topic does:
    // the lag).
    let cp = "/api/v1/topics/orders/consumers/billing";
    let c0 = tagged(&get(&d, cp, &[])?)?;
    not_modified(&get(&d, cp, &[&format!("If-None-Match: {c0}")])?, &c0);
    gatos_ok(&repo, &["messages", "ack", "billing", "orders", &first])?;
    let c1 = tagged(&get(&d, cp, &[&format!("If-None-Match: {c0}")])?)?;
    assert_ne!(c1, c0);
    publish(&repo, "orders", "3")?;
    let c2 = tagged(&get(&d, cp, &[&format!("If-None-Match: {c1}")])?)?;
    assert_ne!(c2, c1);
    let list = tagged(&get(&d, "/api/v1/topics/orders/consumers", &[])?)?;
    not_modified(
        &get(
            &d,
            "/api/v1/topics/orders/consumers",
            &[&format!("If-None-Match: {list}")],
        )?,
        &list,
    );

    // A job read is not fixed by refs alone (leases expire): no tag, no-store, and
    // If-None-Match is ignored.
    let out = gatos_ok(&repo, &["jobs", "enqueue", "--json", "--", "true"])?;
    let job: Value = serde_json::from_str(out.lines().next().ok_or("no output")?)?;
    let id = job["id"].as_str().ok_or(format!("no id: {job}"))?;
    let r = get(&d, &format!("/api/v1/jobs/{id}"), &["If-None-Match: *"])?;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("etag"), None, "{r:?}");
    assert_eq!(r.header("cache-control"), Some("no-store"), "{r:?}");

    // The audit read and the manifests list are tagged too.
    for path in ["/api/v1/audit", "/api/v1/manifests"] {
        let t = tagged(&get(&d, path, &[])?)?;
        not_modified(&get(&d, path, &[&format!("If-None-Match: {t}")])?, &t);
    }
    Ok(())
}

/// An answer that names damage (ADR 0047: a checkpoint on a topic whose head is no
/// message) carries no tag: an object that was missing may arrive with no ref moving, so no
/// cache may keep it. The same route on a topic without damage is tagged as before, and
/// `/metrics` counts what the listings leave out.
#[test]
fn an_answer_that_names_damage_carries_no_etag() -> TestResult {
    let repo = crate::support::a_damaged_topic_with_readers()?;
    let d = start(&repo)?;
    let r = get(&d, "/api/v1/topics/bad/consumers", &[])?;
    assert_eq!(r.status, 200, "{r:?}");
    let v: Value = serde_json::from_str(&r.body)?;
    assert_eq!(v["damaged"][0]["topic"], "bad", "{r:?}");
    assert_eq!(r.header("etag"), None, "{r:?}");
    tagged(&get(&d, "/api/v1/topics/good/consumers", &[])?)?;
    // The gauges that leave them out count them (read at the daemon's start, then every
    // 5 s).
    let mut last = String::new();
    let seen = gatos_testutil::wait_for(
        "gatos_damaged in /metrics",
        std::time::Duration::from_secs(30),
        || {
            last = get(&d, "/metrics", &[]).map(|r| r.body).unwrap_or_default();
            last.contains("gatos_damaged{listing=\"topics\"} 1")
                && last.contains("gatos_damaged{listing=\"checkpoints\"} 1")
        },
    );
    assert!(seen.is_ok(), "{last}");
    Ok(())
}

/// Headers a hostile or careless client sends (found by a black-box test): `If-None-Match:
/// *` hid an error or a missing resource behind a 304; two `Host` headers, or an
/// absolute-form target naming another host, passed the host check on the first `Host`;
/// two `Idempotency-Key`s recorded only the first; a token file made readable by others
/// and re-read on `SIGHUP` came into force; GraphQL took a `text/plain` body and ignored a
/// `refPath` given with a `stateRef`.
#[test]
fn hostile_headers_and_conditionals_are_answered_as_http_says() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    gatos_ok(&repo, &["messages", "publish", "orders", "--data", "{}"])?;
    let d = start(&repo)?;
    let script = format!(
        r#"
import json, os, socket, subprocess, sys, time
import requests
base, token, tokens = "http://{addr}", "{CI}", sys.argv[1] if len(sys.argv) > 1 else None
h = {{"Authorization": "Bearer " + token}}
def check(cond, what):
    if not cond:
        raise SystemExit("FAILED: " + what)
def code(r):
    try:
        return r.json().get("code")
    except Exception:
        return None
star = dict(h, **{{"If-None-Match": "*"}})
r = requests.get(base + "/api/v1/topics/orders/messages?limit=0", headers=star)
check(r.status_code == 400 and code(r) == "InvalidInput", "* does not hide a 400: %d %s" % (r.status_code, r.text))
r = requests.get(base + "/api/v1/manifests/nosuch", headers=star)
check(r.status_code == 404 and "ETag" not in r.headers, "* does not hide a 404: %d %s" % (r.status_code, r.headers))
r = requests.get(base + "/api/v1/topics/orders/messages?limit=1", headers=star)
check(r.status_code == 304 and r.headers.get("ETag"), "* matches what exists: %d" % r.status_code)
def raw(lines):
    s = socket.create_connection(("{host}", {port}))
    s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    data = s.recv(65536).decode(errors="replace")
    s.close()
    return int(data.split()[1])
auth = "Authorization: Bearer " + token
check(raw(["GET /api/v1/health HTTP/1.1", "Host: {addr}", "Host: evil.example", auth, "Connection: close"]) == 400, "two Host headers are 400")
check(raw(["GET http://evil.example/api/v1/health HTTP/1.1", "Host: {addr}", auth, "Connection: close"]) == 403, "an absolute-form target's host is the one checked")
check(raw(["GET http://{addr}/api/v1/health HTTP/1.1", "Host: {addr}", auth, "Connection: close"]) == 200, "an absolute-form target of this host is served")
r = requests.post(base + "/api/v1/topics/orders/messages", headers=dict(h, **{{"Idempotency-Key": "a1"}}), json={{"payload": {{}}}})
check(r.status_code == 201, "one key: %d %s" % (r.status_code, r.text))
# requests would join two headers of one name: they are sent by hand.
body = json.dumps({{"payload": {{}}}})
sk = socket.create_connection(("{host}", {port}))
sk.sendall(("POST /api/v1/topics/orders/messages HTTP/1.1\r\nHost: {addr}\r\n" + auth + "\r\nContent-Type: application/json\r\nIdempotency-Key: a2\r\nIdempotency-Key: a3\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)).encode())
reply = sk.recv(65536).decode(errors="replace")
sk.close()
check(reply.split()[1] == "400" and "Idempotency-Key" in reply, "two keys are 400: %s" % reply[:300])
g = base + "/api/v1/graphql"
r = requests.post(g, headers=dict(h, **{{"Content-Type": "text/plain"}}), data=json.dumps({{"query": "{{ __typename }}"}}))
check(r.status_code == 415, "GraphQL takes JSON only: %d %s" % (r.status_code, r.text))
r = requests.post(g, headers=h, json={{"query": '{{ ledger(stateRef: "blake3:' + "0" * 64 + '", refPath: "garbage") {{ state {{ ref }} }} }}'}})
errs = r.json().get("errors", [])
check(errs and errs[0]["extensions"]["code"] == "InvalidInput" and "not both" in errs[0]["message"], "stateRef with refPath: %s" % r.text)
r = requests.post(g, headers=h, json={{"query": "query($id: Ulid!) {{ ledger {{ job(id: $id) {{ id }} }} }}"}})
a = r.json()
check(a.get("data") is None and a["errors"][0]["extensions"]["code"] == "InvalidInput" and "$id" in a["errors"][0]["message"], "a required variable not given is a request error: %s" % r.text)
print("ok")
"#,
        addr = d.addr,
        host = d.addr.split(':').next().unwrap_or("127.0.0.1"),
        port = d.addr.rsplit(':').next().unwrap_or("0"),
    );
    let out = d.python(&script, &[])?;
    assert_eq!(out.trim(), "ok");

    // A token file made readable by others is not re-read on SIGHUP: the tokens in force stay.
    let tokens = repo.root().join("tokens");
    std::fs::write(&tokens, format!("ci {CI}\nother {}\n", "ab".repeat(32)))?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o644))?;
    let status = Command::new("kill")
        .args(["-HUP", &d.child.id().to_string()])
        .status()?;
    assert!(status.success());
    gatos_testutil::wait_for(
        "gatosd to log the refused re-read",
        std::time::Duration::from_secs(30),
        || d.log().contains("the token file was not re-read"),
    )?;
    assert!(d.log().contains("chmod 600"), "{}", d.log());
    let r = get(&d, "/api/v1/topics", &[])?;
    assert_eq!(r.status, 200, "the token in force stays: {r:?}");
    let other = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "60",
            "-H",
        ])
        .arg(format!("Authorization: Bearer {}", "ab".repeat(32)))
        .arg(format!("http://{}/api/v1/topics", d.addr))
        .output()?;
    assert_eq!(
        String::from_utf8(other.stdout)?,
        "401",
        "the file's new token is not in force"
    );
    Ok(())
}

/// A stream ends when its token is withdrawn: a `SIGHUP` re-read of a token file without it
/// stopped new requests, while a stream opened with it kept delivering (found by a
/// black-box test).
#[test]
fn a_stream_ends_when_its_token_is_withdrawn() -> TestResult {
    const OTHER: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    gatos_ok(&repo, &["messages", "publish", "orders", "--data", "{}"])?;
    let d = Gatosd::start(&repo, &format!("ci {CI}\nother {OTHER}\n"), "gatosd", &[])?;
    let tokens = repo.root().join("tokens");
    let script = format!(
        r#"
import os, requests, signal, sys
url = "http://{addr}/api/v1/topics/orders/stream?since_seq=0"
r = requests.get(url, headers={{"Authorization": "Bearer {OTHER}"}}, stream=True, timeout=60)
assert r.status_code == 200, r.text
lines = r.iter_lines(decode_unicode=True)
for line in lines:
    if line.startswith("data:"):
        break
# The stream is open and has delivered: take the token out of the file and re-read it.
with open("{tokens}", "w") as f:
    f.write("ci {CI}\n")
os.kill({pid}, signal.SIGHUP)
events = [l for l in lines if l.startswith("event:")]
assert events == ["event: shutdown"], events
again = requests.get(url, headers={{"Authorization": "Bearer {OTHER}"}}, timeout=60)
assert again.status_code == 401, again.status_code
print("ok")
"#,
        addr = d.addr,
        tokens = tokens.display(),
        pid = d.child.id(),
    );
    let out = d.python(&script, &[])?;
    assert_eq!(out.trim(), "ok");
    assert!(
        d.log()
            .contains("streams of tokens no longer in the file ended"),
        "{}",
        d.log()
    );
    Ok(())
}

/// Slow readers cannot fill the daemon's stream queues however many streams they open: 60
/// streams that never read, on a topic of 3 MiB messages, made gatosd hold 1.7 GB (found by
/// a black-box test). Now all streams together queue at most 128 MiB: past it the stream
/// holding the most ends as lagged, and a reader that reads is served whole. (The queues'
/// accounting is `sse::tests::past_the_budget_the_largest_queue_ends_as_lagged`; the memory
/// figures, release builds, are in docs/PERFORMANCE.md.)
#[test]
fn streams_that_never_read_cannot_take_the_daemons_memory() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    let file = repo.root().join("big.json");
    std::fs::write(&file, format!("{{\"blob\":\"{}\"}}", "a".repeat(3 << 20)))?;
    for _ in 0..8 {
        gatos_ok(
            &repo,
            &[
                "messages",
                "publish",
                "big",
                "--file",
                &file.to_string_lossy(),
            ],
        )?;
    }
    let d = start(&repo)?;
    let (host, port) = d.addr.rsplit_once(':').ok_or("addr")?;
    let script = format!(
        r#"
import socket, time, requests
socks = []
for i in range(60):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("{host}", {port}))
    s.sendall(b"GET /api/v1/topics/big/stream?since_seq=0 HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {CI}\r\n\r\n")
    socks.append(s)
deadline = time.time() + 120
while "the daemon's stream memory is full" not in open("{log}").read():
    if time.time() > deadline:
        raise SystemExit("FAILED: no stream was ended to make room")
    time.sleep(0.2)
for s in socks:
    s.close()
r = requests.get("http://{addr}/api/v1/topics/big/stream?since_seq=0", headers={{"Authorization": "Bearer {CI}"}}, stream=True, timeout=60)
n = 0
for line in r.iter_lines():
    if line.startswith(b"data:"):
        n += 1
        if n == 8:
            break
r.close()
if n != 8:
    raise SystemExit("FAILED: a reader got %d of 8" % n)
print("ok")
"#,
        addr = d.addr,
        log = d.log.display(),
    );
    let out = d.python(&script, &[])?;
    assert!(out.starts_with("ok"), "{out}");
    Ok(())
}
