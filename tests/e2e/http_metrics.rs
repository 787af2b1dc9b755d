//! `GET /metrics` (issue #17 step 10, ADR 0040) with real parts: a real `gatosd --http`,
//! jobs enqueued by the CLI and run by a `git gatos worker` in other processes (every
//! writer counts, not only the daemon's requests), the scrape parsed by the Prometheus
//! project's own Python parser (`prometheus_client`), the cardinality budget, and the token.

use std::path::PathBuf;

use gatos_testutil::{TempRepo, TestResult};

use crate::support::gatos_ok;

const CI: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

use crate::support::HttpDaemon as Gatosd;

fn start(repo: &TempRepo, extra: &[&str]) -> TestResult<Gatosd> {
    Gatosd::start(repo, &format!("ci {CI}\n"), "gatosd", extra)
}

/// Runs a Python script with `BASE` (the daemon's root URL), `CI` (the token) and `DOC`
/// (docs/metrics.md) in its environment; returns its stdout.
fn python(d: &Gatosd, script: &str) -> TestResult<String> {
    let doc = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/metrics.md");
    d.python(
        script,
        &[
            ("BASE", &d.url("")),
            ("CI", CI),
            ("DOC", &doc.to_string_lossy()),
        ],
    )
}

const READY: &str = r##"
import os, requests
base, h = os.environ["BASE"], {"Authorization": "Bearer " + os.environ["CI"]}
r = requests.get(base + "/metrics")
assert r.status_code == 401, r.status_code
assert r.headers["content-type"] == "application/problem+json", r.headers
r = requests.get(base + "/metrics", headers=h)
assert r.status_code == 200, (r.status_code, r.text)
assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8", r.headers
print("ok")
"##;

const CHECK: &str = r##"
import os, re, time, requests
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families
base, h = os.environ["BASE"], {"Authorization": "Bearer " + os.environ["CI"]}

def scrape(accept=None):
    hh = dict(h)
    if accept:
        hh["Accept"] = accept
    r = requests.get(base + "/metrics", headers=hh)
    assert r.status_code == 200, (r.status_code, r.text)
    return r

def samples(text):
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out

def total(ss, name, **want):
    return sum(v for (l, v) in ss.get(name, []) if all(l.get(k) == x for k, x in want.items()))

# Every writer counts: the CLI enqueued and a worker process ran the jobs of `build`.
deadline = time.time() + 60
while True:
    r = scrape()
    ss = samples(r.text)
    done = total(ss, "gatos_jobs_events_total", queue="build", event="succeeded")
    if done >= 2 or time.time() > deadline:
        break
    time.sleep(0.2)
assert done == 2, ss.get("gatos_jobs_events_total")
assert total(ss, "gatos_jobs_events_total", queue="build", event="enqueued") == 2
assert total(ss, "gatos_jobs_events_total", queue="build", event="claimed") == 2
assert total(ss, "gatos_jobs_claim_latency_seconds_count", queue="build") == 2
assert total(ss, "gatos_jobs_duration_seconds_count", queue="build", outcome="succeeded") == 2

# The queue label's budget: 32 queues, the rest under _other (40 + build enqueued).
queues = {l["queue"] for (l, _) in ss["gatos_jobs_events_total"]}
assert len(queues) == 33 and "_other" in queues, sorted(queues)
assert total(ss, "gatos_jobs_events_total", event="enqueued") == 42

# Requests per face: this script's scrapes are HTTP responses; a call of the table counts
# under its operation, and a JSON-RPC call through the socket under rpc.
assert requests.get(base + "/api/v1/topics", headers=h).status_code == 200
ss = samples(scrape().text)
assert total(ss, "gatos_requests_total", face="http", op="topics.list", code="ok") == 1, ss.get("gatos_requests_total")
assert total(ss, "gatos_requests_total", face="rpc", op="gatos.health", code="ok") >= 1, ss.get("gatos_requests_total")
assert total(ss, "gatos_http_responses_total", route="/metrics", status="401") == 1
assert total(ss, "gatos_http_responses_total", route="/metrics", status="200") >= 2, ss.get("gatos_http_responses_total")
assert total(ss, "gatos_build_info") == 1

# Every documented family is in a scrape (the rate-limit counter has no series yet).
doc = open(os.environ["DOC"]).read()
names = set(re.findall(r"^# TYPE (\S+) ", doc, re.M))
seen = set()
for fam in text_string_to_metric_families(scrape().text):
    seen.add(fam.name + ("_total" if fam.type == "counter" else ""))
missing = names - seen - {"gatos_http_rate_limited_total"}
assert not missing, missing

# The budget: at most 2,000 series and 256 KiB.
r = scrape()
series = [l for l in r.text.splitlines() if l and not l.startswith("#")]
assert len(series) <= 2000 and len(r.content) <= 256 * 1024, (len(series), len(r.content))

# OpenMetrics when Accept asks for it, parsed by the OpenMetrics parser.
r = scrape("application/openmetrics-text; version=1.0.0")
assert r.headers["content-type"].startswith("application/openmetrics-text"), r.headers
assert r.text.endswith("# EOF\n")
assert any(f.name == "gatos_jobs_events" for f in om_families(r.text))
print(len(series), len(r.content))
"##;

#[test]
fn metrics_count_every_writers_jobs_within_the_budget() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init", "--json"])?;
    let d = start(&repo, &[])?;
    // A 200 scrape means the daemon serves, so its gatos.jobs follower has its start.
    assert_eq!(python(&d, READY)?.trim(), "ok");
    for _ in 0..2 {
        gatos_ok(
            &repo,
            &["jobs", "enqueue", "--queue", "build", "--", "true"],
        )?;
    }
    for i in 0..40 {
        let q = format!("q{i:02}");
        gatos_ok(&repo, &["jobs", "enqueue", "--queue", &q, "--", "true"])?;
    }
    gatos_ok(
        &repo,
        &["worker", "--drain", "--queue", "build", "--lease", "5s"],
    )?;
    // A JSON-RPC call on the Unix socket counts under face rpc.
    let mut sock = std::os::unix::net::UnixStream::connect(repo.root().join("gatosd.sock"))?;
    {
        use std::io::{BufRead, Write};
        sock.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"gatos.health\"}\n")?;
        let mut line = String::new();
        std::io::BufReader::new(&sock).read_line(&mut line)?;
        assert!(line.contains("\"result\""), "{line}");
    }
    let out = python(&d, CHECK)?;
    eprintln!("series and bytes: {out}");
    Ok(())
}

const LIMITED: &str = r##"
import os, requests
from prometheus_client.parser import text_string_to_metric_families
base, h = os.environ["BASE"], {"Authorization": "Bearer " + os.environ["CI"]}
codes = [requests.get(base + "/api/v1/topics", headers=h).status_code for _ in range(5)]
assert 429 in codes, codes
# The scrape itself may be refused too: ask until one is served (the rate refills).
import time
deadline = time.time() + 30
while True:
    r = requests.get(base + "/metrics", headers=h)
    if r.status_code == 200 or time.time() > deadline:
        break
    time.sleep(float(r.headers.get("Retry-After", "1")))
assert r.status_code == 200, r.status_code
n = sum(s.value for f in text_string_to_metric_families(r.text) for s in f.samples
        if s.name == "gatos_http_rate_limited_total" and s.labels.get("token") == "ci")
assert n >= codes.count(429), (n, codes)
print("ok")
"##;

#[test]
fn refusals_by_the_rate_count_per_token() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init", "--json"])?;
    let d = start(&repo, &["--http-rate", "1", "--http-burst", "2"])?;
    assert_eq!(python(&d, LIMITED)?.trim(), "ok");
    Ok(())
}

const STORE: &str = r##"
import os, json, socket, time, requests
from prometheus_client.parser import text_string_to_metric_families
base, h = os.environ["BASE"], {"Authorization": "Bearer " + os.environ["CI"]}

# Messages and checkpoints over the daemon's Unix socket (JSON-RPC, one call a line).
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(os.environ["SOCK"])
f = s.makefile("rw")
n = 0
def call(method, **params):
    global n
    n += 1
    f.write(json.dumps({"jsonrpc": "2.0", "id": n, "method": method, "params": params}) + "\n")
    f.flush()
    r = json.loads(f.readline())
    assert "result" in r, r
    return r["result"]

call("gatos.auth", token=os.environ["CI"])
orders = [call("messages.publish", topic="orders", payload={"i": i})["ulid"] for i in range(8)]
call("messages.ack", group="billing", topic="orders", ulid=orders[0])
# 60 topics of 1 to 3 messages, 30 groups one message into theirs (lag 0 to 2).
for i in range(60):
    first = None
    for j in range(i % 3 + 1):
        u = call("messages.publish", topic="t%02d" % i, payload={"j": j})["ulid"]
        first = first or u
    if i < 30:
        call("messages.ack", group="g%02d" % i, topic="t%02d" % i, ulid=first)

def samples():
    r = requests.get(base + "/metrics", headers=h)
    assert r.status_code == 200, (r.status_code, r.text)
    out = {}
    for fam in text_string_to_metric_families(r.text):
        for x in fam.samples:
            out.setdefault(x.name, []).append((x.labels, x.value))
    return r, out

def value(ss, name, **want):
    vs = [v for (l, v) in ss.get(name, []) if l == want]
    return vs[0] if vs else None

# The refresher runs every 5 s: poll the scrape until it has seen everything.
deadline = time.time() + 30
while True:
    r, ss = samples()
    ok = (value(ss, "gatos_jobs", queue="alpha", state="pending") == 3
          and value(ss, "gatos_jobs", queue="beta", state="pending") == 1
          and value(ss, "gatos_topic_last_seq", topic="orders") == 8
          and value(ss, "gatos_consumer_lag_messages", topic="orders", group="billing") == 7
          and len(ss.get("gatos_consumer_lag_messages", [])) == 21)
    if ok or time.time() > deadline:
        break
    time.sleep(0.25)
assert ok, {k: v for k, v in ss.items() if not k.startswith(("gatos_request", "gatos_http"))}
assert value(ss, "gatos_jobs", queue="alpha", state="running") == 0

# The budgets: 20 topics and 20 pairs, the rest summed under _other.
topics = ss["gatos_topic_last_seq"]
assert len(topics) == 21, topics
assert value(ss, "gatos_topic_last_seq", topic="_other") is not None, topics
lags = ss["gatos_consumer_lag_messages"]
assert value(ss, "gatos_consumer_lag_messages", topic="_other", group="_other") is not None, lags
# 31 pairs: billing's 7 and 30 of 0 to 2; what is not shown is in _other.
assert sum(v for (_, v) in lags) == 7 + sum(i % 3 for i in range(30)), lags
assert {l["kind"] for (l, _) in ss["gatos_maintenance_debt"]} == {"loose_objects", "packs", "kept_packs", "archivable_jobs"}
# This node does not sync: the sync counters have no series.
assert "gatos_sync_runs_total" not in ss, ss.get("gatos_sync_runs_total")
series = [l for l in r.text.splitlines() if l and not l.startswith("#")]
assert len(series) <= 2000 and len(r.content) <= 256 * 1024, (len(series), len(r.content))
print("ok")
"##;

#[test]
fn store_gauges_come_from_the_refreshers_snapshot_within_the_budget() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init", "--json"])?;
    let d = start(&repo, &[])?;
    for (q, n) in [("alpha", 3), ("beta", 1)] {
        for _ in 0..n {
            gatos_ok(&repo, &["jobs", "enqueue", "--queue", q, "--", "true"])?;
        }
    }
    let sock = repo.root().join("gatosd.sock");
    let doc = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/metrics.md");
    let out = d.python(
        STORE,
        &[
            ("BASE", &d.url("")),
            ("CI", CI),
            ("DOC", &doc.to_string_lossy()),
            ("SOCK", &sock.to_string_lossy()),
        ],
    )?;
    assert_eq!(out.trim(), "ok");
    Ok(())
}
