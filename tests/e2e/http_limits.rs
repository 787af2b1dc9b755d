//! The HTTP face's fairness with real clients (issue #17, ADR 0038): per-token rates,
//! opt-in CORS and the slots of long waits, against a real `gatosd --http 127.0.0.1:0`
//! driven by `curl` and Python `requests`.

use std::process::Command;

use gatos_testutil::{TempRepo, TestResult};

use crate::support::gatos_ok;

const ALICE: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
const BOB: &str = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0";

struct Gatosd(crate::support::HttpDaemon);

impl Gatosd {
    /// `gatosd --http 127.0.0.1:0` with the tokens `alice` and `bob`, plus `extra`.
    fn start(repo: &TempRepo, extra: &[&str]) -> TestResult<Gatosd> {
        let tokens = format!("alice {ALICE}\nbob {BOB}\n");
        crate::support::HttpDaemon::start(repo, &tokens, "gatosd", extra).map(Gatosd)
    }

    fn url(&self, path: &str) -> String {
        self.0.url(path)
    }

    /// Runs a Python script with `BASE` (the face's root), `ALICE` and `BOB` set.
    fn python(&self, script: &str) -> TestResult<String> {
        self.0.python(
            script,
            &[("BASE", &self.url("")), ("ALICE", ALICE), ("BOB", BOB)],
        )
    }
}

/// `curl -sS -i ARGS`: the status and the lowercased header lines.
fn curl_head(args: &[&str]) -> TestResult<(u16, Vec<String>)> {
    let out = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "30"])
        .args(args)
        .output()?;
    if !out.status.success() {
        return Err(format!("curl {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let text = String::from_utf8(out.stdout)?;
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or("no status line")?;
    Ok((status, lines.map(str::to_ascii_lowercase).collect()))
}

fn cors_headers(headers: &[String]) -> Vec<&String> {
    headers
        .iter()
        .filter(|h| h.starts_with("access-control-"))
        .collect()
}

#[test]
fn a_token_over_its_rate_is_refused_while_another_is_served() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init", "--json"])?;
    // One request a second, three at once: the fourth of a quick run is refused.
    let d = Gatosd::start(&repo, &["--http-rate", "1", "--http-burst", "3"])?;
    let out = d.python(
        r#"
import os, requests
base = os.environ["BASE"]
a = {"Authorization": "Bearer " + os.environ["ALICE"]}
b = {"Authorization": "Bearer " + os.environ["BOB"]}
s = requests.Session()
left = []
for _ in range(3):
    r = s.get(base + "/api/v1/health", headers=a)
    assert r.status_code == 200, (r.status_code, r.text)
    assert r.headers["X-RateLimit-Limit"] == "3", r.headers
    left.append(int(r.headers["X-RateLimit-Remaining"]))
assert left == [2, 1, 0], left
r = s.get(base + "/api/v1/health", headers=a)
assert r.status_code == 429, (r.status_code, r.text)
assert r.headers["Content-Type"] == "application/problem+json", r.headers
p = r.json()
assert p["code"] == "RateLimited" and p["status"] == 429, p
assert p["data"]["retry_after_seconds"] >= 1, p
assert int(r.headers["Retry-After"]) >= 1, r.headers
assert r.headers["X-RateLimit-Remaining"] == "0", r.headers
# Another token is still served; liveness is never limited; no token is refused
# before it counts (401, not 429).
r = s.get(base + "/api/v1/health", headers=b)
assert r.status_code == 200 and r.headers["X-RateLimit-Remaining"] == "2", (r.status_code, r.headers)
for _ in range(20):
    r = s.get(base + "/healthz")
    assert r.status_code == 200 and "X-RateLimit-Limit" not in r.headers, r.headers
assert s.get(base + "/api/v1/health").status_code == 401
print("ok")
"#,
    )?;
    assert_eq!(out.trim(), "ok");
    // curl sees the same refusal and its Retry-After.
    let (status, headers) = curl_head(&[
        "-H",
        &format!("Authorization: Bearer {ALICE}"),
        &d.url("/api/v1/health"),
    ])?;
    assert_eq!(status, 429, "{headers:?}");
    assert!(
        headers.iter().any(|h| h.starts_with("retry-after: ")),
        "{headers:?}"
    );
    Ok(())
}

#[test]
fn http_rate_off_never_limits() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init", "--json"])?;
    let d = Gatosd::start(&repo, &["--http-rate", "off", "--http-burst", "1"])?;
    let out = d.python(
        r#"
import os, requests
base = os.environ["BASE"]
a = {"Authorization": "Bearer " + os.environ["ALICE"]}
s = requests.Session()
for _ in range(50):
    r = s.get(base + "/api/v1/health", headers=a)
    assert r.status_code == 200, (r.status_code, r.text)
    assert "X-RateLimit-Limit" not in r.headers, r.headers
print("ok")
"#,
    )?;
    assert_eq!(out.trim(), "ok");
    Ok(())
}

#[test]
fn cors_is_off_by_default_and_answers_only_listed_origins() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init", "--json"])?;
    let auth = format!("Authorization: Bearer {ALICE}");
    let preflight = |d: &Gatosd, origin: &str| {
        curl_head(&[
            "-X",
            "OPTIONS",
            "-H",
            &format!("Origin: {origin}"),
            "-H",
            "Access-Control-Request-Method: POST",
            "-H",
            "Access-Control-Request-Headers: authorization, content-type",
            &d.url("/api/v1/topics/t/messages"),
        ])
    };
    let simple = |d: &Gatosd, origin: &str| {
        curl_head(&[
            "-H",
            &auth,
            "-H",
            &format!("Origin: {origin}"),
            &d.url("/api/v1/health"),
        ])
    };

    // Without the flag: no CORS header, whatever the origin.
    {
        let repo = TempRepo::new()?;
        gatos_ok(&repo, &["init", "--json"])?;
        let d = Gatosd::start(&repo, &[])?;
        let (_, h) = preflight(&d, "https://app.example")?;
        assert!(cors_headers(&h).is_empty(), "{h:?}");
        let (status, h) = simple(&d, "https://app.example")?;
        assert_eq!(status, 200, "{h:?}");
        assert!(cors_headers(&h).is_empty(), "{h:?}");
    }

    let d = Gatosd::start(
        &repo,
        &[
            "--http-cors-origin",
            "https://app.example",
            "--http-cors-origin",
            "http://localhost:3000",
        ],
    )?;
    // A listed origin: the preflight is answered with the methods and headers, the
    // answer names the origin and exposes the rate headers; no credentials.
    let (status, h) = preflight(&d, "https://app.example")?;
    assert!((200..300).contains(&status), "{status} {h:?}");
    assert!(
        h.contains(&"access-control-allow-origin: https://app.example".to_owned()),
        "{h:?}"
    );
    let methods = h
        .iter()
        .find(|l| l.starts_with("access-control-allow-methods:"))
        .ok_or(format!("no allow-methods: {h:?}"))?;
    for m in ["get", "post", "put"] {
        assert!(methods.contains(m), "{methods}");
    }
    let allowed = h
        .iter()
        .find(|l| l.starts_with("access-control-allow-headers:"))
        .ok_or(format!("no allow-headers: {h:?}"))?;
    assert!(allowed.contains("authorization") && allowed.contains("content-type"));
    assert!(
        !h.iter()
            .any(|l| l.starts_with("access-control-allow-credentials")),
        "{h:?}"
    );
    let (status, h) = simple(&d, "http://localhost:3000")?;
    assert_eq!(status, 200, "{h:?}");
    assert!(
        h.contains(&"access-control-allow-origin: http://localhost:3000".to_owned()),
        "{h:?}"
    );
    let exposed = h
        .iter()
        .find(|l| l.starts_with("access-control-expose-headers:"))
        .ok_or(format!("no expose-headers: {h:?}"))?;
    assert!(exposed.contains("x-ratelimit-remaining"), "{exposed}");
    // The GraphQL face's state (ADR 0044).
    assert!(exposed.contains("gatos-state"), "{exposed}");

    // Another origin (a prefix, another port, another scheme): no CORS header at all.
    for other in [
        "https://evil.example",
        "https://app.example.evil.example",
        "http://localhost:3001",
        "http://app.example",
    ] {
        let (_, h) = preflight(&d, other)?;
        assert!(cors_headers(&h).is_empty(), "{other}: {h:?}");
        let (_, h) = simple(&d, other)?;
        assert!(cors_headers(&h).is_empty(), "{other}: {h:?}");
    }
    Ok(())
}

#[test]
fn long_log_waits_do_not_block_another_clients_publish() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init", "--json"])?;
    let d = Gatosd::start(&repo, &[])?;
    // 70 calls that wait 30 s for the log of a job nobody claims (more than the 64 call
    // slots), then, once they are all connected, a publish by another token must be
    // answered well before any wait ends.
    let out = d.python(
        r#"
import os, threading, time, requests
base = os.environ["BASE"]
a = {"Authorization": "Bearer " + os.environ["ALICE"]}
b = {"Authorization": "Bearer " + os.environ["BOB"]}
r = requests.post(base + "/api/v1/jobs", json={"command": ["true"], "queue": "idle"}, headers=a)
assert r.status_code == 201, (r.status_code, r.text)
job = r.json()["id"]
# A short wait first: the route waits, then answers as it would at once.
started = time.monotonic()
r = requests.get(base + "/api/v1/jobs/" + job + "/logs", params={"wait_ms": 300}, headers=a)
assert time.monotonic() - started >= 0.3, (r.status_code, r.text)
def wait_log():
    try:
        requests.get(base + "/api/v1/jobs/" + job + "/logs",
                     params={"wait_ms": 30000}, headers=a, timeout=60)
    except Exception:
        pass
waiters = [threading.Thread(target=wait_log, daemon=True) for _ in range(70)]
for t in waiters:
    t.start()
deadline = time.monotonic() + 20
while True:
    r = requests.get(base + "/api/v1/health", headers=b)
    assert r.status_code == 200, (r.status_code, r.text)
    if r.json()["connections"] >= 71:
        break
    assert time.monotonic() < deadline, r.json()
    time.sleep(0.05)  # the poll's pace, not a synchronization
started = time.monotonic()
r = requests.post(base + "/api/v1/topics/t/messages", json={"payload": {"n": 1}}, headers=b, timeout=20)
took = time.monotonic() - started
assert r.status_code == 201, (r.status_code, r.text)
assert took < 10, took
assert all(t.is_alive() for t in waiters), "a wait ended early"
print("ok")
"#,
    )?;
    assert_eq!(out.trim(), "ok");
    Ok(())
}
