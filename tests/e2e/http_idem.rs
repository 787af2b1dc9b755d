//! `Idempotency-Key` on the HTTP face (issue #17 step 7, ADR 0039): a real `gatosd --http
//! 127.0.0.1:0` driven by Python `requests`, the ledger checked by the CLI in another
//! process.

use gatos_testutil::{TempRepo, TestResult};

use crate::support::{gatos_ok, json_lines};

const CI: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const OPS: &str = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";

struct Gatosd {
    d: crate::support::HttpDaemon,
    base: String,
}

impl Gatosd {
    /// `gatosd --http 127.0.0.1:0` with the tokens `ci` and `ops`; `name` keeps the socket
    /// and log of each start apart.
    fn start(repo: &TempRepo, name: &str) -> TestResult<Gatosd> {
        let d =
            crate::support::HttpDaemon::start(repo, &format!("ci {CI}\nops {OPS}\n"), name, &[])?;
        Ok(Gatosd {
            base: d.url("/api/v1"),
            d,
        })
    }

    /// Runs a Python script with `BASE`, `CI` and `OPS` set.
    fn python(&self, script: &str) -> TestResult<String> {
        self.d
            .python(script, &[("BASE", &self.base), ("CI", CI), ("OPS", OPS)])
    }
}

const PRELUDE: &str = r#"
import os, json, requests, threading
base = os.environ["BASE"]
h = {"Authorization": "Bearer " + os.environ["CI"]}
ops = {"Authorization": "Bearer " + os.environ["OPS"]}
def key(k, who=h):
    return {**who, "Idempotency-Key": k}
def problem(r, status, code):
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["Content-Type"] == "application/problem+json", r.headers
    p = r.json()
    assert p["code"] == code, p
    return p
"#;

#[test]
fn a_publish_with_a_key_lands_once_and_another_body_conflicts() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init", "--json"])?;
    let d = Gatosd::start(&repo, "d")?;
    d.python(&format!(
        "{PRELUDE}{}",
        r#"
url = base + "/topics/orders/messages"
a = requests.post(url, json={"payload": {"n": 1}}, headers=key("pub-1"))
assert a.status_code == 201, a.text
assert "Idempotent-Replayed" not in a.headers, a.headers
b = requests.post(url, json={"payload": {"n": 1}}, headers=key("pub-1"))
assert b.status_code == 201, b.text
assert b.headers["Idempotent-Replayed"] == "true", b.headers
assert b.json() == a.json() and b.json()["ulid"] == a.json()["ulid"], (a.text, b.text)
assert b.headers.get("Location") == a.headers.get("Location"), (a.headers, b.headers)
# The same key with another body: Conflict, naming the key.
p = problem(requests.post(url, json={"payload": {"n": 2}}, headers=key("pub-1")), 409, "Conflict")
assert p["data"]["idempotency_key"] == "pub-1", p
# Another path is another request too.
problem(requests.post(base + "/topics/other/messages", json={"payload": {"n": 1}}, headers=key("pub-1")), 409, "Conflict")
# Keys are the token's own: another token's same key is a new request.
c = requests.post(url, json={"payload": {"n": 1}}, headers=key("pub-1", ops))
assert c.status_code == 201 and "Idempotent-Replayed" not in c.headers, c.text
assert c.json()["ulid"] != a.json()["ulid"], c.text
# A route that offers no key ignores the header.
r = requests.get(url, headers=key("pub-1"))
assert r.status_code == 200, r.text
# A malformed key is refused.
problem(requests.post(url, json={"payload": 3}, headers=key("a b")), 400, "InvalidInput")
"#
    ))?;
    let rows = json_lines(&gatos_ok(&repo, &["messages", "read", "orders", "--json"])?)?;
    assert_eq!(rows.len(), 2, "one for ci's key, one for ops's: {rows:?}");
    assert!(repo.rev_parse("refs/gatos/messages/other/head")?.is_none());
    repo.assert_fsck_strict()
}

#[test]
fn an_enqueue_with_a_key_runs_once_and_survives_a_restart() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init", "--json"])?;
    let d = Gatosd::start(&repo, "first")?;
    let first = d.python(&format!(
        "{PRELUDE}{}",
        r#"
job = {"command": ["true"], "queue": "build"}
a = requests.post(base + "/jobs", json=job, headers=key("enq-1"))
assert a.status_code == 201, a.text
b = requests.post(base + "/jobs", json=job, headers=key("enq-1"))
assert b.status_code == 201 and b.headers["Idempotent-Replayed"] == "true", (b.status_code, b.headers)
assert b.json() == a.json(), (a.text, b.text)
assert b.headers["Location"] == a.headers["Location"] == "/api/v1/jobs/" + a.json()["id"], (a.headers, b.headers)
p = problem(requests.post(base + "/jobs", json={**job, "queue": "other"}, headers=key("enq-1")), 409, "Conflict")
assert p["data"]["idempotency_key"] == "enq-1", p
# A failed call is not remembered: the same key then works with a valid body.
problem(requests.post(base + "/jobs", json={"command": ["true"], "bogus": 1}, headers=key("enq-2")), 400, "InvalidInput")
r = requests.post(base + "/jobs", json=job, headers=key("enq-2"))
assert r.status_code == 201 and "Idempotent-Replayed" not in r.headers, r.text
print(a.json()["id"])
"#
    ))?;
    let id = first.trim().to_owned();
    let jobs = json_lines(&gatos_ok(&repo, &["jobs", "ls", "--json"])?)?;
    assert_eq!(jobs.len(), 2, "enq-1 once, enq-2 once: {jobs:?}");

    // Durable: a new daemon (the old one killed) still answers the key.
    drop(d);
    let d = Gatosd::start(&repo, "second")?;
    let again = d.python(&format!(
        "{PRELUDE}{}",
        r#"
b = requests.post(base + "/jobs", json={"command": ["true"], "queue": "build"}, headers=key("enq-1"))
assert b.status_code == 201 and b.headers["Idempotent-Replayed"] == "true", (b.status_code, b.headers, b.text)
print(b.json()["id"])
"#
    ))?;
    assert_eq!(
        again.trim(),
        id,
        "the first answer, from the first daemon's record"
    );
    let jobs = json_lines(&gatos_ok(&repo, &["jobs", "ls", "--json"])?)?;
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    // The records are the node's own files, readable by the owner only.
    let dir = repo.git_dir().join("gatos/idempotency");
    let mut records = 0;
    for shard in std::fs::read_dir(&dir)? {
        for f in std::fs::read_dir(shard?.path()).into_iter().flatten() {
            let f = f?;
            if f.path().extension().is_some_and(|x| x == "json") {
                use std::os::unix::fs::PermissionsExt;
                assert_eq!(f.metadata()?.permissions().mode() & 0o777, 0o600);
                records += 1;
            }
        }
    }
    assert_eq!(records, 2);
    repo.assert_fsck_strict()
}

#[test]
fn concurrent_requests_with_one_key_enqueue_one_job() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init", "--json"])?;
    let d = Gatosd::start(&repo, "d")?;
    d.python(&format!(
        "{PRELUDE}{}",
        r#"
job = {"command": ["true"], "queue": "race"}
answers = []
def go():
    answers.append(requests.post(base + "/jobs", json=job, headers=key("race-1")))
ts = [threading.Thread(target=go) for _ in range(8)]
for t in ts: t.start()
for t in ts: t.join()
fresh = [r for r in answers if r.status_code == 201 and "Idempotent-Replayed" not in r.headers]
replayed = [r for r in answers if r.status_code == 201 and r.headers.get("Idempotent-Replayed") == "true"]
busy = [r for r in answers if r.status_code == 409 and r.json()["data"].get("in_progress") is True]
assert len(fresh) == 1, [(r.status_code, r.text) for r in answers]
assert len(fresh) + len(replayed) + len(busy) == 8, [(r.status_code, r.text) for r in answers]
assert all(r.json() == fresh[0].json() for r in replayed)
# Once done, every retry replays.
r = requests.post(base + "/jobs", json=job, headers=key("race-1"))
assert r.headers["Idempotent-Replayed"] == "true" and r.json() == fresh[0].json(), r.text
"#
    ))?;
    let jobs = json_lines(&gatos_ok(&repo, &["jobs", "ls", "--json"])?)?;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    repo.assert_fsck_strict()
}
