//! The dashboard's security model against a real `gatosd --http` (issue #19, ADR 0045):
//! `git gatos dashboard` mints a code over the Unix socket, the page's sign-in answers a
//! strict cookie, and every refusal of the acceptance rule — another origin, another port
//! of 127.0.0.1, a foreign `Host`, a cookie with a token, a reused code, a logged-out or
//! revoked session, a read-only daemon or session — holds and changes nothing. Raw HTTP
//! over a TCP stream, so every header is the test's.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use gatos_testutil::{TempRepo, TestResult};
use serde_json::{Value, json};

use crate::support::{HttpDaemon, enqueue, gatos_ok, json_lines};

const OPS: &str = "2b0f4c9d7e8a1f3b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b";
const VIEW: &str = "8c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d";

/// One answer: status, headers (lower-case names), body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
    fn reason(&self) -> Option<String> {
        self.json()
            .pointer("/data/reason")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }
}

/// Sends one request with exactly `headers` (plus `Connection: close` and a length).
fn send(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> TestResult<Answer> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no header end")?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .ok_or("no status")?
        .parse()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Answer {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// `git gatos dashboard --json` against the daemon: the `SigninCode` row.
fn mint(repo: &TempRepo, extra: &[&str]) -> TestResult<Value> {
    let sock = repo.root().join("dash.sock");
    let tokens = repo.root().join("tokens");
    let mut args = vec![
        "dashboard",
        "--json",
        "--socket",
        sock.to_str().ok_or("path")?,
        "--token-file",
        tokens.to_str().ok_or("path")?,
    ];
    args.extend_from_slice(extra);
    let rows = json_lines(&gatos_ok(repo, &args)?)?;
    Ok(rows.first().cloned().ok_or("no row")?)
}

/// Signs in from the served origin: the cookie's `name=value`.
fn sign_in(d: &HttpDaemon, code: &str) -> TestResult<(String, Value)> {
    let a = send(
        &d.addr,
        "POST",
        "/dashboard/signin",
        &[("Sec-Fetch-Site", "same-origin")],
        &json!({ "code": code }).to_string(),
    )?;
    assert_eq!(a.status, 200, "{}", a.body);
    let set = a.header("set-cookie").ok_or("no Set-Cookie")?.to_owned();
    let pair = set.split(';').next().ok_or("cookie")?.trim().to_owned();
    Ok((pair, a.json()))
}

fn start(repo: &TempRepo, extra: &[&str]) -> TestResult<HttpDaemon> {
    HttpDaemon::start(
        repo,
        &format!("ops {OPS}\nviewer {VIEW} ro\n"),
        "dash",
        extra,
    )
}

#[test]
fn sign_in_cookie_acceptance_rule_logout_and_revocation() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init", "--json"])?;
    let job = enqueue(&repo, &["--no-checkout", "--", "true"])?;
    let d = start(&repo, &["--http-cors-origin", "http://app.example"])?;
    let origin = format!("http://{}", d.addr);

    // The shell: no data, no credentials, strict headers on it and on every answer.
    let shell = send(&d.addr, "GET", "/", &[], "")?;
    assert_eq!(shell.status, 200);
    let csp = shell.header("content-security-policy").ok_or("no CSP")?;
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(shell.header("x-frame-options"), Some("DENY"));
    assert_eq!(shell.header("x-content-type-options"), Some("nosniff"));
    assert!(!shell.body.contains("<script>"), "no inline script");
    let api = send(
        &d.addr,
        "GET",
        "/api/v1/jobs",
        &[("Authorization", &format!("Bearer {OPS}"))],
        "",
    )?;
    assert_eq!(api.status, 200, "{}", api.body);
    assert_eq!(api.header("x-frame-options"), Some("DENY"));
    assert!(api.header("content-security-policy").is_some());

    // A code, from the Unix socket with the token: in the URL's fragment only.
    let minted = mint(&repo, &[])?;
    let code = minted["code"].as_str().ok_or("code")?.to_owned();
    let url = minted["url"].as_str().ok_or("url")?;
    assert_eq!(url, format!("{origin}/#code={code}"));
    assert!(!url.contains('?'));
    assert_eq!(minted["expires_in_seconds"], 60);

    // A sign-in from another origin (another port of 127.0.0.1 is same-site, not
    // same-origin) is refused and does not use the code.
    for headers in [
        vec![
            ("Sec-Fetch-Site", "same-site"),
            ("Origin", "http://127.0.0.1:1"),
        ],
        vec![
            ("Sec-Fetch-Site", "cross-site"),
            ("Origin", "http://evil.example"),
        ],
        vec![("Origin", "http://127.0.0.1:1")],
        vec![],
    ] {
        let a = send(
            &d.addr,
            "POST",
            "/dashboard/signin",
            &headers,
            &json!({"code": code}).to_string(),
        )?;
        assert_eq!(a.status, 403, "{headers:?}: {}", a.body);
        assert_eq!(a.reason().as_deref(), Some("cross_origin"));
        assert!(a.header("set-cookie").is_none());
    }
    // An Origin equal to the served origin stands in for a missing Sec-Fetch-Site.
    let a = send(
        &d.addr,
        "POST",
        "/dashboard/signin",
        &[("Origin", &origin)],
        &json!({"code": code}).to_string(),
    )?;
    assert_eq!(a.status, 200, "{}", a.body);
    let set = a.header("set-cookie").ok_or("Set-Cookie")?;
    for part in [
        "gatos_session=",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=28800",
    ] {
        assert!(set.contains(part), "{set}");
    }
    let cookie = set.split(';').next().ok_or("cookie")?.trim().to_owned();
    let session = a.json();
    let sid = session["id"].as_str().ok_or("id")?.to_owned();
    assert_eq!(session["actor"], format!("web:{sid}"));
    assert_eq!(session["read_only"], false);

    // An oversized sign-in body is refused before it is read whole.
    let big = format!("{{\"code\":\"{}\"}}", "x".repeat(5000));
    let huge = send(
        &d.addr,
        "POST",
        "/dashboard/signin",
        &[("Sec-Fetch-Site", "same-origin")],
        &big,
    )?;
    assert_eq!(huge.status, 413, "{}", huge.body);

    // The code is single-use.
    let again = send(
        &d.addr,
        "POST",
        "/dashboard/signin",
        &[("Sec-Fetch-Site", "same-origin")],
        &json!({"code": code}).to_string(),
    )?;
    assert_eq!(again.status, 401, "{}", again.body);
    let bogus = send(
        &d.addr,
        "POST",
        "/dashboard/signin",
        &[("Sec-Fetch-Site", "same-origin")],
        r#"{"code":"nope"}"#,
    )?;
    assert_eq!(bogus.status, 401);

    // The acceptance rule for cookie requests.
    let ok = |extra: &[(&str, &str)]| -> TestResult<Answer> {
        let mut h = vec![("Cookie", cookie.as_str())];
        h.extend_from_slice(extra);
        send(&d.addr, "GET", "/dashboard/session", &h, "")
    };
    assert_eq!(ok(&[("Sec-Fetch-Site", "same-origin")])?.status, 200);
    assert_eq!(ok(&[("Origin", &origin)])?.status, 200);
    for (extra, reason) in [
        (vec![("Sec-Fetch-Site", "same-site")], "cross_origin"),
        (vec![("Sec-Fetch-Site", "cross-site")], "cross_origin"),
        (vec![("Sec-Fetch-Site", "none")], "cross_origin"),
        (
            vec![("Sec-Fetch-Site", "same-site"), ("Origin", origin.as_str())],
            "cross_origin",
        ),
        (vec![("Origin", "http://127.0.0.1:1")], "cross_origin"),
        (vec![], "cross_origin"),
    ] {
        let a = ok(&extra)?;
        assert_eq!(a.status, 403, "{extra:?}: {}", a.body);
        assert_eq!(a.reason().as_deref(), Some(reason));
    }
    let bearer = format!("Bearer {OPS}");
    let both = ok(&[
        ("Sec-Fetch-Site", "same-origin"),
        ("Authorization", &bearer),
    ])?;
    assert_eq!(both.status, 403);
    assert_eq!(both.reason().as_deref(), Some("both_credentials"));
    // A foreign Host is refused first, cookie or not (DNS rebinding).
    let foreign = ok(&[("Sec-Fetch-Site", "same-origin"), ("Host", "evil.example")])?;
    assert_eq!(foreign.status, 403);
    assert_eq!(foreign.json()["data"]["host"], "evil.example");
    let shell_foreign = send(&d.addr, "GET", "/", &[("Host", "evil.example:80")], "")?;
    assert_eq!(shell_foreign.status, 403);
    // No CORS for a cookie, even from a listed origin.
    let cors = ok(&[("Origin", "http://app.example")])?;
    assert_eq!(cors.status, 403);
    assert!(
        cors.header("access-control-allow-origin").is_none(),
        "{:?}",
        cors.headers
    );

    // A cross-origin write with the cookie changes nothing; the same from the origin acts
    // as web:<id> and lands on the audit trail.
    let cancel = format!("/api/v1/jobs/{job}/cancel");
    let forged = send(
        &d.addr,
        "POST",
        &cancel,
        &[
            ("Cookie", &cookie),
            ("Sec-Fetch-Site", "same-site"),
            ("Origin", "http://127.0.0.1:1"),
        ],
        "{}",
    )?;
    assert_eq!(forged.status, 403, "{}", forged.body);
    let still = send(
        &d.addr,
        "GET",
        &format!("/api/v1/jobs/{job}"),
        &[("Authorization", &bearer)],
        "",
    )?;
    assert_eq!(still.json()["state"], "pending", "{}", still.body);
    let done = send(
        &d.addr,
        "POST",
        &cancel,
        &[("Cookie", &cookie), ("Sec-Fetch-Site", "same-origin")],
        "{}",
    )?;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.json()["state"], "cancelled");
    let audit = send(
        &d.addr,
        "GET",
        "/api/v1/audit?action=jobs.cancel",
        &[("Cookie", &cookie), ("Sec-Fetch-Site", "same-origin")],
        "",
    )?;
    assert_eq!(audit.status, 200, "{}", audit.body);
    let records = audit.json()["records"].clone();
    assert_eq!(records[0]["actor"], format!("web:{sid}"), "{records}");
    let signins = send(
        &d.addr,
        "GET",
        "/api/v1/audit?action=dashboard.signin",
        &[("Authorization", &bearer)],
        "",
    )?;
    assert_eq!(signins.json()["records"][0]["target"], format!("web:{sid}"));

    // Logout ends the session and clears the cookie.
    let out = send(
        &d.addr,
        "POST",
        "/dashboard/logout",
        &[("Cookie", &cookie), ("Sec-Fetch-Site", "same-origin")],
        "",
    )?;
    assert_eq!(out.status, 200);
    assert!(
        out.header("set-cookie")
            .is_some_and(|c| c.contains("Max-Age=0"))
    );
    let gone = ok(&[("Sec-Fetch-Site", "same-origin")])?;
    assert_eq!(gone.status, 401, "{}", gone.body);

    // Revocation over the Unix socket, by id and all.
    let (c2, s2) = sign_in(&d, mint(&repo, &[])?["code"].as_str().ok_or("code")?)?;
    let (c3, _) = sign_in(&d, mint(&repo, &[])?["code"].as_str().ok_or("code")?)?;
    let sock = repo.root().join("dash.sock");
    let tokens = repo.root().join("tokens");
    let common = [
        "--socket",
        sock.to_str().ok_or("p")?,
        "--token-file",
        tokens.to_str().ok_or("p")?,
    ];
    let mut list = vec!["dashboard", "sessions", "--json"];
    list.extend_from_slice(&common);
    let listed = json_lines(&gatos_ok(&repo, &list)?)?;
    assert_eq!(listed.len(), 2, "{listed:?}");
    let id2 = s2["id"].as_str().ok_or("id")?;
    let mut revoke = vec!["dashboard", "revoke", id2, "--json"];
    revoke.extend_from_slice(&common);
    let r = json_lines(&gatos_ok(&repo, &revoke)?)?;
    assert_eq!(r[0]["revoked"], json!([id2]));
    let use2 = send(
        &d.addr,
        "GET",
        "/dashboard/session",
        &[("Cookie", &c2), ("Sec-Fetch-Site", "same-origin")],
        "",
    )?;
    assert_eq!(use2.status, 401);
    let use3 = send(
        &d.addr,
        "GET",
        "/dashboard/session",
        &[("Cookie", &c3), ("Sec-Fetch-Site", "same-origin")],
        "",
    )?;
    assert_eq!(use3.status, 200);
    let mut all = vec!["dashboard", "revoke", "--all"];
    all.extend_from_slice(&common);
    gatos_ok(&repo, &all)?;
    let use3 = send(
        &d.addr,
        "GET",
        "/dashboard/session",
        &[("Cookie", &c3), ("Sec-Fetch-Site", "same-origin")],
        "",
    )?;
    assert_eq!(use3.status, 401);

    // Nothing secret reached the log.
    let log = d.log();
    for secret in [code.as_str(), cookie.split('=').nth(1).ok_or("v")?, OPS] {
        assert!(!log.contains(secret), "a secret in the log");
    }
    Ok(())
}

#[test]
fn sign_in_codes_need_the_token_on_the_unix_socket() -> TestResult {
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixStream;
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init", "--json"])?;
    let d = start(&repo, &[])?;
    let s = UnixStream::connect(repo.root().join("dash.sock"))?;
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    let mut call = |line: Value| -> TestResult<Value> {
        writeln!(w, "{line}")?;
        let mut a = String::new();
        r.read_line(&mut a)?;
        Ok(serde_json::from_str(&a)?)
    };
    let before =
        call(json!({"jsonrpc":"2.0","id":1,"method":"dashboard.signin_code","params":{}}))?;
    assert_eq!(before["error"]["data"]["code"], "Unauthorized", "{before}");
    let list = call(json!({"jsonrpc":"2.0","id":2,"method":"dashboard.sessions","params":{}}))?;
    assert_eq!(list["error"]["data"]["code"], "Unauthorized", "{list}");
    call(json!({"jsonrpc":"2.0","id":3,"method":"gatos.auth","params":{"token": VIEW}}))?;
    let ro = call(json!({"jsonrpc":"2.0","id":4,"method":"dashboard.signin_code","params":{}}))?;
    assert_eq!(
        ro["result"]["read_only"], true,
        "an ro token opens read-only sessions: {ro}"
    );
    let bad = call(
        json!({"jsonrpc":"2.0","id":5,"method":"dashboard.revoke","params":{"id":"x","all":true}}),
    )?;
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
    let missing =
        call(json!({"jsonrpc":"2.0","id":6,"method":"dashboard.revoke","params":{"id":"0000"}}))?;
    assert_eq!(missing["error"]["data"]["code"], "NotFound", "{missing}");
    // The ro session may read, not act.
    let job = enqueue(&repo, &["--no-checkout", "--", "true"])?;
    let (cookie, s) = sign_in(&d, ro["result"]["code"].as_str().ok_or("code")?)?;
    assert_eq!(s["read_only"], true);
    let refused = send(
        &d.addr,
        "POST",
        &format!("/api/v1/jobs/{job}/cancel"),
        &[("Cookie", &cookie), ("Sec-Fetch-Site", "same-origin")],
        "{}",
    )?;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(refused.json()["data"]["token_read_only"], true);
    Ok(())
}

#[test]
fn a_read_only_daemon_refuses_the_dashboards_actions() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init", "--json"])?;
    let job = enqueue(&repo, &["--no-checkout", "--", "true"])?;
    let d = start(&repo, &["--read-only"])?;
    let minted = mint(&repo, &[])?;
    assert_eq!(minted["read_only"], true);
    let (cookie, s) = sign_in(&d, minted["code"].as_str().ok_or("code")?)?;
    assert_eq!(s["read_only"], true);
    let h = [
        ("Cookie", cookie.as_str()),
        ("Sec-Fetch-Site", "same-origin"),
    ];
    let who = send(&d.addr, "GET", "/dashboard/session", &h, "")?;
    assert_eq!(who.json()["read_only"], true, "{}", who.body);
    assert_eq!(who.json()["daemon_read_only"], true);
    let refused = send(
        &d.addr,
        "POST",
        &format!("/api/v1/jobs/{job}/cancel"),
        &h,
        "{}",
    )?;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let reads = send(&d.addr, "GET", &format!("/api/v1/jobs/{job}"), &h, "")?;
    assert_eq!(reads.json()["state"], "pending");
    Ok(())
}

/// Waits until the wall clock is past `t` (RFC 3339), so a commit made now has a later
/// committer time (whole seconds).
fn past_second(t: &str) -> TestResult {
    let then = rfc3339_secs(t)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        <= then
    {
        if std::time::Instant::now() > deadline {
            return Err("the clock did not move".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SS` (UTC).
pub(crate) fn rfc3339_secs(t: &str) -> TestResult<u64> {
    let n = |a: usize, b: usize| -> TestResult<i64> { Ok(t.get(a..b).ok_or("a time")?.parse()?) };
    let (y, m, d) = (n(0, 4)?, n(5, 7)?, n(8, 10)?);
    let (hh, mm, ss) = (n(11, 13)?, n(14, 16)?, n(17, 19)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss)?)
}

/// What the overview and the job page read (issue #19): a running job's row carries its last
/// heartbeat, which moves with each heartbeat; `jobs.attempts` gives every attempt's claim
/// chain with each commit's time — the claim, the heartbeats, and the takeover by another
/// worker after the first let its lease expire; `sync.rejections` names the refs a sync
/// rejected, newest first, and skips garbled lines of the log with a count; a listed row
/// names its enqueuer.
#[test]
fn the_claims_heartbeats_takeovers_and_rejected_refs_the_pages_read() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init", "--json"])?;
    // A hub holding a ref no node wrote: a job whose commit has no job document.
    let hub = TempRepo::bare()?;
    let empty = hub.git(&["hash-object", "-t", "tree", "-w", "/dev/null"])?;
    let junk = hub.git(&["commit-tree", empty.trim(), "-m", "forged"])?;
    let bad_ref = "refs/gatos/jobs/01KBQ0000000000000000000ZZ/job";
    hub.git(&["update-ref", bad_ref, junk.trim()])?;
    repo.git(&["remote", "add", "hub", &hub.path().to_string_lossy()])?;
    let report: Value = serde_json::from_str(gatos_ok(&repo, &["sync", "hub", "--json"])?.trim())?;
    assert_eq!(report["rejected"][0]["ref"], bad_ref, "{report}");
    let key = serde_json::from_str::<Value>(gatos_ok(&repo, &["keys", "show", "--json"])?.trim())?
        ["key"]
        .as_str()
        .ok_or("no key")?
        .to_owned();
    let job = enqueue(
        &repo,
        &["--no-checkout", "--max-attempts", "3", "--", "true"],
    )?;
    let d = start(&repo, &[])?;
    let (cookie, _) = sign_in(&d, mint(&repo, &[])?["code"].as_str().ok_or("code")?)?;
    let web = [
        ("Cookie", cookie.as_str()),
        ("Sec-Fetch-Site", "same-origin"),
    ];
    let bearer = format!("Bearer {OPS}");
    let worker = [("Authorization", bearer.as_str())];
    let get = |path: &str| -> TestResult<Value> {
        let a = send(&d.addr, "GET", path, &web, "")?;
        assert_eq!(a.status, 200, "{path}: {}", a.body);
        Ok(a.json())
    };

    // The rejected ref, by name, through the cookie.
    let r = get("/api/v1/sync/rejections")?;
    assert_eq!(r["rejections"][0]["ref"], bad_ref, "{r}");
    assert_eq!(r["rejections"][0]["remote"], "hub", "{r}");
    assert_eq!(r["rejections"][0]["code"], "InvalidEnvelope", "{r}");
    assert_eq!(r["skipped"], 0, "{r}");
    // Garbled and hostile lines in the log are skipped and counted; the op still answers.
    let log = repo.git_dir().join("gatos/sync/rejected.jsonl");
    let mut text = std::fs::read_to_string(&log)?;
    text.push_str("garbage\n{\"ref\":\"<img src=x onerror=alert(1)>\"}\n\u{1b}[31m\n");
    std::fs::write(&log, text)?;
    let r = get("/api/v1/sync/rejections?limit=10")?;
    assert_eq!(r["skipped"], 3, "{r}");
    assert_eq!(r["rejections"].as_array().map(Vec::len), Some(1), "{r}");
    assert_eq!(
        get("/api/v1/sync/rejections?remote=other")?["rejections"],
        json!([])
    );
    let bad = send(&d.addr, "GET", "/api/v1/sync/rejections?limit=0", &web, "")?;
    assert_eq!(bad.status, 400, "{}", bad.body);

    // A listed row names its enqueuer (from the job catalog).
    let listed = get("/api/v1/jobs")?;
    let who = &listed["jobs"][0]["enqueuer"];
    assert_eq!(who["actor"], "cli:gatos", "{listed}");
    assert_eq!(who["key"], key.as_str(), "{listed}");
    assert_eq!(who["trusted"], true, "{listed}");

    // Worker a claims with a short lease and sends a heartbeat a second later.
    let claim = |name: &str, lease: &str| -> TestResult<Value> {
        let a = send(
            &d.addr,
            "POST",
            "/api/v1/claims",
            &worker,
            &json!({"worker": name, "worker_key": key, "id": job, "lease": lease}).to_string(),
        )?;
        assert_eq!(a.status, 200, "{}", a.body);
        Ok(a.json())
    };
    let a = claim("worker-a", "3s")?;
    let running = get("/api/v1/jobs?state=running")?;
    let first = running["jobs"][0]["claim"]["last_heartbeat_at"]
        .as_str()
        .ok_or("no last_heartbeat_at")?
        .to_owned();
    assert_eq!(running["jobs"][0]["claim"]["worker"], "worker-a");
    past_second(&first)?;
    let hb = send(
        &d.addr,
        "POST",
        &format!("/api/v1/jobs/{job}/attempts/1/heartbeat"),
        &worker,
        &json!({"worker": "worker-a", "lease_token": a["lease_token"], "lease": "1s"}).to_string(),
    )?;
    assert_eq!(hb.status, 200, "{}", hb.body);
    let running = get("/api/v1/jobs?state=running")?;
    let second = running["jobs"][0]["claim"]["last_heartbeat_at"]
        .as_str()
        .ok_or("no last_heartbeat_at")?
        .to_owned();
    assert!(second > first, "{first} -> {second}");
    assert_eq!(
        get(&format!("/api/v1/jobs/{job}"))?["claim"]["last_heartbeat_at"],
        second.as_str()
    );

    // a lets its lease run out; b takes over with attempt 2.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while get(&format!("/api/v1/jobs/{job}"))?["state"] == "running" {
        assert!(
            std::time::Instant::now() < deadline,
            "the lease never ran out"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let b = claim("worker-b", "30s")?;
    assert_eq!(b["attempt"], 2, "{b}");
    let attempts = get(&format!("/api/v1/jobs/{job}/attempts"))?;
    let list = attempts["attempts"].as_array().ok_or("attempts")?;
    assert_eq!(list.len(), 2, "{attempts}");
    assert_eq!(
        (list[0]["attempt"].clone(), list[0]["worker"].clone()),
        (json!(1), json!("worker-a"))
    );
    assert_eq!(
        (list[1]["attempt"].clone(), list[1]["worker"].clone()),
        (json!(2), json!("worker-b"))
    );
    // Newest first within an attempt: a's heartbeat, then its claim, each with its time.
    let states: Vec<&str> = list[0]["chain"]
        .as_array()
        .ok_or("chain")?
        .iter()
        .filter_map(|s| s["state"].as_str())
        .collect();
    assert_eq!(states, ["heartbeat", "running"], "{attempts}");
    assert_eq!(list[0]["chain"][0]["at"], second.as_str());
    assert_eq!(list[0]["chain"][1]["at"], first.as_str());
    // The takeover: a's last lease ended before b's claim.
    let a_end = list[0]["chain"][0]["lease_until"].as_str().ok_or("lease")?;
    let b_at = list[1]["chain"][0]["at"].as_str().ok_or("at")?;
    assert_eq!(list[1]["chain"][0]["state"], "running");
    assert!(
        rfc3339_secs(a_end)? <= rfc3339_secs(b_at)?,
        "{a_end} {b_at}"
    );
    Ok(())
}

/// Heartbeats are not events on gatos.jobs: the daemon says on the job-event stream when
/// live claims changed (`event: changed`, ADR 0045), so a page reads them again then and
/// never on a timer.
#[test]
fn the_job_event_stream_says_when_live_claims_change() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init", "--json"])?;
    let key = serde_json::from_str::<Value>(gatos_ok(&repo, &["keys", "show", "--json"])?.trim())?
        ["key"]
        .as_str()
        .ok_or("no key")?
        .to_owned();
    let job = enqueue(&repo, &["--no-checkout", "--", "true"])?;
    let d = start(&repo, &[])?;
    let cookie = session_cookie(&repo, &d)?;
    let web = same_origin(&cookie);
    let mut ev = Events::open(&d.addr, &web)?;
    let bearer = format!("Bearer {OPS}");
    let worker = [("Authorization", bearer.as_str())];
    let a = send(
        &d.addr,
        "POST",
        "/api/v1/claims",
        &worker,
        &json!({"worker": "w", "worker_key": key, "id": job, "lease": "60s"}).to_string(),
    )?;
    assert_eq!(a.status, 200, "{}", a.body);
    // The overview's queue table: depth by state (pending, running) against the limit.
    let health = send(&d.addr, "GET", "/api/v1/health", &web, "")?.json();
    assert_eq!(
        (
            health["queues"][0]["pending"].clone(),
            health["queues"][0]["running"].clone()
        ),
        (json!(0), json!(1)),
        "{health}"
    );
    // The stream opens with the node's fingerprints: a client's baseline.
    let changed = |f: &str| f.lines().any(|l| l == "event: changed");
    let c = data_of(&ev.next("the first changed", changed)?).ok_or("no data")?;
    for part in [
        "claims",
        "sync",
        "topics",
        "groups",
        "manifests",
        "keys",
        "audit",
        "maintenance",
    ] {
        assert!(c[part].is_u64(), "{part}: {c}");
    }
    // The claim moves the claims fingerprint; then a heartbeat moves it again.
    let moved_from = |was: Value| {
        move |f: &str| {
            changed(f) && data_of(f).is_some_and(|d| d["claims"].is_u64() && d["claims"] != was)
        }
    };
    let c1 = data_of(&ev.next("the claim", moved_from(c["claims"].clone()))?).ok_or("no data")?;
    let hb = send(
        &d.addr,
        "POST",
        &format!("/api/v1/jobs/{job}/attempts/1/heartbeat"),
        &worker,
        &json!({"worker": "w", "lease_token": a.json()["lease_token"], "lease": "60s"}).to_string(),
    )?;
    assert_eq!(hb.status, 200, "{}", hb.body);
    let c2 =
        data_of(&ev.next("the heartbeat", moved_from(c1["claims"].clone()))?).ok_or("no data")?;
    assert_ne!(c1["claims"], c2["claims"], "{c1} {c2}");
    Ok(())
}

/// A dashboard session's cookie: a code minted over the Unix socket, signed in.
fn session_cookie(repo: &TempRepo, d: &HttpDaemon) -> TestResult<String> {
    Ok(sign_in(d, mint(repo, &[])?["code"].as_str().ok_or("code")?)?.0)
}

/// The headers of a same-origin request of that session.
fn same_origin(cookie: &str) -> [(&'static str, &str); 2] {
    [("Cookie", cookie), ("Sec-Fetch-Site", "same-origin")]
}

/// An open SSE response: frames read as they come, kept until taken.
struct Events {
    s: TcpStream,
    text: String,
    /// Whole frames read and not yet taken.
    frames: Vec<String>,
}

impl Events {
    fn open(addr: &str, headers: &[(&str, &str)]) -> TestResult<Events> {
        let mut s = TcpStream::connect(addr)?;
        let mut req = format!(
            "GET /api/v1/events/jobs HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n"
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes())?;
        s.set_read_timeout(Some(Duration::from_millis(200)))?;
        Ok(Events {
            s,
            text: String::new(),
            frames: Vec::new(),
        })
    }

    /// The first frame that `want` accepts, taken (the others stay), within 30 s.
    fn next(&mut self, what: &str, want: impl Fn(&str) -> bool) -> TestResult<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut buf = [0u8; 4096];
        loop {
            while let Some(end) = self.text.find("\n\n") {
                let frame: String = self.text.drain(..end + 2).collect();
                self.frames.push(frame);
            }
            if let Some(i) = self.frames.iter().position(|f| want(f)) {
                return Ok(self.frames.remove(i));
            }
            if std::time::Instant::now() > deadline {
                return Err(format!("no {what} in 30 s; last: {}", self.text).into());
            }
            match self.s.read(&mut buf) {
                Ok(0) => return Err(format!("the stream ended waiting for {what}").into()),
                Ok(n) => self.text.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The data of the next `event: follow` of follow `f` with inner event `event`.
    fn follow(&mut self, f: &str, event: &str) -> TestResult<Value> {
        let frame = self.next(&format!("{event} of {f}"), |fr| {
            fr.lines().any(|l| l == "event: follow")
                && data_of(fr).is_some_and(|d| d["follow"] == f && d["event"] == event)
        })?;
        assert!(
            !frame.lines().any(|l| l.starts_with("id:")),
            "a follow's frame has no id of its own: {frame}"
        );
        data_of(&frame).ok_or_else(|| "no data".into())
    }
}

fn data_of(frame: &str) -> Option<Value> {
    frame
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .and_then(|d| serde_json::from_str(d).ok())
}

/// ADR 0045's follows: a job's stream and a topic's tail ride on the job-event stream, so a
/// browser needs one connection; only the stream's own actor may add or end them; bad
/// requests are refused with a stable code and start nothing.
#[test]
fn follows_ride_on_the_job_event_stream() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init", "--json"])?;
    gatos_ok(&repo, &["messages", "publish", "t", "--data", r#"{"n":1}"#])?;
    let job = enqueue(&repo, &["--no-checkout", "--", "true"])?;
    let d = start(&repo, &[])?;
    let cookie = session_cookie(&repo, &d)?;
    let web = same_origin(&cookie);
    let mut ev = Events::open(&d.addr, &web)?;
    let first = ev.next("the stream's name", |f| f.contains("event: stream"))?;
    let stream = data_of(&first).ok_or("no data")?["stream"]
        .as_str()
        .ok_or("no stream id")?
        .to_owned();
    assert_eq!(stream.len(), 32, "{stream}");
    let follows = format!("/api/v1/events/jobs/{stream}/follows");

    // A topic's tail from its start, then what another process publishes.
    let a = send(
        &d.addr,
        "POST",
        &follows,
        &web,
        r#"{"topic":"t","since_seq":0}"#,
    )?;
    assert_eq!(a.status, 200, "{}", a.body);
    let tail = a.json()["follow"].as_str().ok_or("no follow")?.to_owned();
    assert_eq!(ev.follow(&tail, "message")?["data"]["seq"], 1);
    gatos_ok(&repo, &["messages", "publish", "t", "--data", r#"{"n":2}"#])?;
    let m2 = ev.follow(&tail, "message")?;
    assert_eq!(m2["data"]["seq"], 2);
    assert_eq!(m2["id"], m2["data"]["ulid"]);

    // A job's stream: its state first, with the cursor as the id.
    let j = send(
        &d.addr,
        "POST",
        &follows,
        &web,
        &json!({"job": job}).to_string(),
    )?;
    assert_eq!(j.status, 200, "{}", j.body);
    let jf = j.json()["follow"].as_str().ok_or("no follow")?.to_owned();
    assert_ne!(jf, tail);
    let state = ev.follow(&jf, "state")?;
    assert_eq!(state["data"]["id"], json!(job));
    assert_eq!(state["id"], j.json()["cursor"]);

    // Ended: nothing more of it comes, and ending it twice is NotFound.
    let del = send(&d.addr, "DELETE", &format!("{follows}/{tail}"), &web, "")?;
    assert_eq!(del.status, 204, "{}", del.body);
    let again = send(&d.addr, "DELETE", &format!("{follows}/{tail}"), &web, "")?;
    assert_eq!(
        (again.status, again.json()["code"].clone()),
        (404, json!("NotFound"))
    );

    // Another actor (a token, another session) cannot see or use the stream: the same
    // NotFound as for a stream that never was.
    let bearer = format!("Bearer {OPS}");
    let other = send(
        &d.addr,
        "POST",
        &follows,
        &[("Authorization", bearer.as_str())],
        r#"{"topic":"t"}"#,
    )?;
    assert_eq!(
        (other.status, other.json()["code"].clone()),
        (404, json!("NotFound")),
        "{}",
        other.body
    );
    let none = send(
        &d.addr,
        "POST",
        "/api/v1/events/jobs/00000000000000000000000000000000/follows",
        &web,
        r#"{"topic":"t"}"#,
    )?;
    assert_eq!(none.status, 404, "{}", none.body);
    // Without credentials: refused before anything.
    let anon = send(&d.addr, "POST", &follows, &[], r#"{"topic":"t"}"#)?;
    assert_eq!(anon.status, 401, "{}", anon.body);

    // Hostile bodies: a stable InvalidInput (or NotFound for an unknown job), nothing started.
    for (body, code) in [
        ("not json", "InvalidInput"),
        ("[]", "InvalidInput"),
        (r#"{}"#, "InvalidInput"),
        (
            r#"{"job":"01KBQ0000000000000000000ZZ","topic":"t"}"#,
            "InvalidInput",
        ),
        (r#"{"topic":"t","bogus":1}"#, "InvalidInput"),
        (r#"{"topic":"../x"}"#, "InvalidInput"),
        (r#"{"job":"nope"}"#, "InvalidInput"),
        (r#"{"job":"01KBQ0000000000000000000ZZ"}"#, "NotFound"),
        (
            r#"{"job":"01KBQ0000000000000000000ZZ","since":"garbage"}"#,
            "InvalidInput",
        ),
    ] {
        let r = send(&d.addr, "POST", &follows, &web, body)?;
        assert_eq!(
            r.json()["code"],
            json!(code),
            "{body}: {} {}",
            r.status,
            r.body
        );
    }
    let huge = format!(r#"{{"topic":"{}"}}"#, "x".repeat(20_000));
    let r = send(&d.addr, "POST", &follows, &web, &huge)?;
    assert_eq!(r.json()["code"], json!("InvalidInput"), "{}", r.status);

    // The stream itself goes on: a job event still arrives, with its id.
    gatos_ok(&repo, &["jobs", "cancel", &job])?;
    let frame = ev.next("the cancel's job event", |f| f.contains("event: job"))?;
    assert!(frame.lines().any(|l| l.starts_with("id: ")), "{frame}");
    // The job follow saw its end too.
    let t0 = std::time::Instant::now();
    let _ = ev.follow(&jf, "job")?;
    eprintln!("JOB after {:?}", t0.elapsed());
    let end = ev.follow(&jf, "end")?;
    eprintln!("END after {:?}", t0.elapsed());
    assert_eq!(end["data"]["state"], "cancelled");
    Ok(())
}

/// A dashboard session's open event stream ends when the session is revoked (found by a
/// black-box test of the token file: a withdrawn credential's stream kept delivering).
#[test]
fn a_revoked_sessions_event_stream_ends() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init", "--json"])?;
    let d = start(&repo, &[])?;
    let cookie = session_cookie(&repo, &d)?;
    let web = same_origin(&cookie);
    let mut ev = Events::open(&d.addr, &web)?;
    ev.next("the first changed", |f| {
        f.lines().any(|l| l == "event: changed")
    })?;
    let sock = repo.root().join("dash.sock");
    let tokens = repo.root().join("tokens");
    gatos_ok(
        &repo,
        &[
            "dashboard",
            "revoke",
            "--all",
            "--socket",
            sock.to_str().ok_or("path")?,
            "--token-file",
            tokens.to_str().ok_or("path")?,
        ],
    )?;
    ev.next("the end of the stream", |f| {
        f.lines().any(|l| l == "event: shutdown")
    })?;
    let again = send(&d.addr, "GET", "/api/v1/events/jobs", &web, "")?;
    assert_eq!(again.status, 401, "{}", again.body);
    Ok(())
}

/// A dashboard session lives as long as the token that minted its code stays in the
/// token file, and may only read once that token is marked `ro` (a black-box test found a
/// session of a withdrawn token still cancelling jobs for its 8 hours).
#[test]
fn a_session_follows_the_token_that_minted_it() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init", "--json"])?;
    let d = start(&repo, &[])?;
    let cookie = session_cookie(&repo, &d)?;
    let web = same_origin(&cookie);
    let listed = json_lines(&gatos_ok(
        &repo,
        &[
            "dashboard",
            "sessions",
            "--json",
            "--socket",
            repo.root().join("dash.sock").to_str().ok_or("path")?,
            "--token-file",
            repo.root().join("tokens").to_str().ok_or("path")?,
        ],
    )?)?;
    assert_eq!(listed[0]["minted_by"], "ops", "{listed:?}");
    let job = enqueue(&repo, &["--queue", "later", "--", "true"])?;
    let session = |_: ()| -> TestResult<Value> {
        Ok(send(&d.addr, "GET", "/dashboard/session", &web, "")?.json())
    };
    assert_eq!(session(())?["read_only"], false);
    let hup = || -> TestResult {
        let st = std::process::Command::new("kill")
            .args(["-HUP", &d.child.id().to_string()])
            .status()?;
        assert!(st.success());
        Ok(())
    };
    // The token becomes read-only: so does the session.
    let tokens = repo.root().join("tokens");
    std::fs::write(&tokens, format!("ops {OPS} ro\nviewer {VIEW} ro\n"))?;
    hup()?;
    gatos_testutil::wait_for(
        "the session to become read-only",
        Duration::from_secs(30),
        || session(()).is_ok_and(|s| s["read_only"] == true),
    )?;
    let cancel = send(
        &d.addr,
        "POST",
        &format!("/api/v1/jobs/{job}/cancel"),
        &web,
        "{}",
    )?;
    assert_eq!(cancel.status, 403, "{}", cancel.body);
    // The token leaves the file: the session ends, its event stream with it.
    let mut ev = Events::open(&d.addr, &web)?;
    ev.next("the first changed", |f| {
        f.lines().any(|l| l == "event: changed")
    })?;
    std::fs::write(&tokens, format!("viewer {VIEW} ro\n"))?;
    hup()?;
    ev.next("the end of the stream", |f| {
        f.lines().any(|l| l == "event: shutdown")
    })?;
    let again = send(&d.addr, "GET", "/dashboard/session", &web, "")?;
    assert_eq!(again.status, 401, "{}", again.body);
    let show = json_lines(&gatos_ok(&repo, &["jobs", "show", &job, "--json"])?)?;
    assert_eq!(show[0]["state"], "pending", "the job was never cancelled");
    Ok(())
}
