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
