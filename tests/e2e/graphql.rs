//! The GraphQL face (issue #18, ADR 0044), driven by an independent client
//! (`scripts/graphql_client.py`: graphql-core validates every query against the SDL the
//! daemon serves; requests sends it) against a real `gatosd --http 127.0.0.1:0`.

use gatos_testutil::{TempRepo, TestResult};
use serde_json::Value;

use crate::support::{HttpDaemon, enqueue, gatos_ok};

const TOKEN: &str = "5f0c2a9e8b7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a3928170605f4e3";

fn client_env<'a>(d: &HttpDaemon, url: &'a str) -> [(&'static str, &'a str); 3] {
    let _ = d;
    [
        ("GQL_URL", url),
        ("GQL_TOKEN", TOKEN),
        (
            "GQL_SCRIPTS",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts"),
        ),
    ]
}

const PRELUDE: &str = r#"
import json, os, sys
sys.dont_write_bytecode = True
sys.path.insert(0, os.environ["GQL_SCRIPTS"])
from graphql_client import Client, code_of
c = Client(os.environ["GQL_URL"], os.environ["GQL_TOKEN"])
def check(cond, what):
    if not cond:
        raise SystemExit("FAILED: " + what)
"#;

/// A repository with pending, succeeded, failed and cancelled jobs (with proofs) and a
/// topic of messages.
fn fixture() -> TestResult<(TempRepo, Vec<String>)> {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    for i in 0..6 {
        let data = format!(r#"{{"n":{i}}}"#);
        gatos_ok(&repo, &["messages", "publish", "t.events", "--data", &data])?;
    }
    gatos_ok(
        &repo,
        &["messages", "consume", "g1", "t.events", "--limit", "2"],
    )?;
    let ok = enqueue(&repo, &["--", "true"])?;
    let failed = enqueue(&repo, &["--max-attempts", "1", "--", "false"])?;
    gatos_ok(&repo, &["worker", "--drain", "--lease", "5s"])?;
    let cancelled = enqueue(&repo, &["--queue", "later", "--", "true"])?;
    gatos_ok(&repo, &["jobs", "cancel", &cancelled])?;
    let pending = enqueue(&repo, &["--queue", "later", "--", "true"])?;
    let out = crate::support::gatos_stdin(
        &repo,
        &["manifests", "put", "build", "-"],
        br#"{"command": ["make", "all"], "queue": "build"}"#,
    )?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((repo, vec![ok, failed, cancelled, pending]))
}

#[test]
fn every_type_a_pinned_state_caching_and_refusals() -> TestResult {
    let (repo, ids) = fixture()?;
    let d = HttpDaemon::start(&repo, &format!("t {TOKEN}\n"), "gatosd", &[])?;
    let url = d.url("");
    let script = format!(
        r#"{PRELUDE}
ids = {ids}
sdl = open(os.path.join(os.environ["GQL_SCRIPTS"], "..", "docs", "schema.graphql")).read()
check(c.sdl == sdl, "the SDL route serves docs/schema.graphql")

# Every type: Query, Ledger, State, JobConnection/JobEdge/PageInfo, Job, Claim, JobResult,
# Proof, Topic, MessageConnection/MessageEdge, Message, Node, JSON, UInt64.
Q = '''query($n: Int) {{
  node {{ version nodeId ready now sync {{ remote intervalSeconds lastAt lastOk lastCode consecutiveFailures }} }}
  ledger {{
    manifests {{ totalCount edges {{ cursor node {{ name version contentId spec }} }} pageInfo {{ hasNextPage }} }}
    keys {{ edges {{ node {{ id current trusted published revoked }} }} }}
    topics(first: 1) {{ totalCount edges {{ cursor node {{ name firstSeq lastSeq count }} }} pageInfo {{ hasNextPage endCursor }} }}
    consumerGroups {{ edges {{ node {{ name checkpoints {{ group topic seq ulid commit lag }} }} }} }}
    queues {{ name pending maxPending backoffBaseSeconds backoffMaxSeconds }}
    audit(first: 50, since: "2000-01-01T00:00:00Z") {{ edges {{ cursor node {{ ulid seq actor key action target before after }} }} pageInfo {{ hasNextPage }} }}
    state {{ ref takenAt refs exact }}
    jobs(first: $n) {{
      edges {{ cursor node {{ id queue state attempt spec claim {{ worker workerKey attempt leaseUntil state }}
                            result {{ status exitCode commit }} proof {{ key verified code }}
                            attempts {{ attempt worker workerKey claimedAt leaseUntil state outcome exitCode claimChain {{ commit state leaseUntil }} }}
                            files {{ path bytes digest }} }} }}
      pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }}
    }}
    job(id: "{first}") {{ id state }}
    topic(name: "t.events") {{ name messages(first: 4) {{
      edges {{ cursor node {{ ulid seq topic contentId commit payload headers }} }}
      pageInfo {{ hasNextPage endCursor }} }} }}
  }}
}}'''
data, ext = c.data(Q, {{"n": 10}})
state = ext["stateRefResolved"]
check(state.startswith("blake3:") and data["ledger"]["state"]["ref"] == state, "stateRefResolved")
check(ext["shapeRoot"].startswith("blake3:"), "shapeRoot")
jobs = [e["node"] for e in data["ledger"]["jobs"]["edges"]]
check([j["id"] for j in jobs] == ids, "the jobs in id order: %s" % jobs)
states = [j["state"] for j in jobs]
check(states == ["succeeded", "failed", "cancelled", "pending"], "states %s" % states)
check(jobs[0]["result"]["exitCode"] == 0 and jobs[0]["claim"]["attempt"] == 1, "result and claim")
check(jobs[0]["proof"] is not None and jobs[0]["proof"]["verified"], "proof verified: %s" % jobs[0]["proof"])
check(jobs[0]["spec"]["command"] == ["true"], "spec")
att = jobs[0]["attempts"]
check(len(att) == 1 and att[0]["attempt"] == 1 and len(att[0]["claimChain"]) >= 1 and att[0]["claimChain"][0]["commit"], "attempts: %s" % att)
check(jobs[3]["attempts"] == [] and jobs[3]["files"] == [], "a pending job has no attempt and no file")
paths = [f["path"] for f in jobs[0]["files"]]
check("logs/stdout" in paths and all(f["digest"].startswith("blake3:") for f in jobs[0]["files"]), "files: %s" % jobs[0]["files"])
check(data["ledger"]["job"]["id"] == ids[0], "job by id")
msgs = data["ledger"]["topic"]["messages"]
check([m["node"]["seq"] for m in msgs["edges"]] == ["1", "2", "3", "4"], "seqs")
check(msgs["edges"][0]["node"]["payload"] == {{"n": 0}}, "payload as JSON")
check(msgs["pageInfo"]["hasNextPage"], "more messages")
check(data["node"]["ready"] is True and data["node"]["sync"] is None, "node")
man = [e["node"] for e in data["ledger"]["manifests"]["edges"]]
check(data["ledger"]["manifests"]["totalCount"] == 1 and [(m["name"], m["version"]) for m in man] == [("build", "1")] and man[0]["spec"]["command"] == ["make", "all"], "manifests: %s" % man)
keys = [e["node"] for e in data["ledger"]["keys"]["edges"]]
check(any(k["current"] and k["trusted"] and k["id"].startswith("ed25519:") for k in keys), "keys: %s" % keys)
tc = data["ledger"]["topics"]
check(tc["totalCount"] >= 2 and tc["pageInfo"]["hasNextPage"] and len(tc["edges"]) == 1, "topics page 1: %s" % tc)
tn, _ = c.data('query($s: StateRef, $a: String) {{ ledger(stateRef: $s) {{ topics(first: 5, after: $a) {{ edges {{ node {{ name firstSeq lastSeq count }} }} pageInfo {{ hasNextPage }} }} }} }}', {{"s": state, "a": tc["pageInfo"]["endCursor"]}})
tall = [e["node"] for e in tc["edges"]] + [e["node"] for e in tn["ledger"]["topics"]["edges"]]
check(not tn["ledger"]["topics"]["pageInfo"]["hasNextPage"], "topics page 2 ends")
topics = {{t["name"]: (t["firstSeq"], t["lastSeq"], t["count"]) for t in tall}}
check(len(tall) == tc["totalCount"] and len(topics) == len(tall) and list(topics) == sorted(topics), "topics in name order, once each: %s" % topics)
check(topics.get("t.events") == ("1", "6", "6"), "topics: %s" % topics)
groups = [e["node"] for e in data["ledger"]["consumerGroups"]["edges"]]
check([(g["name"], [(c["topic"], c["seq"], c["lag"]) for c in g["checkpoints"]]) for g in groups] == [("g1", [("t.events", "2", "4")])], "consumer groups: %s" % groups)
queues = {{q["name"]: q["pending"] for q in data["ledger"]["queues"]}}
check(queues.get("later") == "1", "queues: %s" % queues)
audit = [e["node"] for e in data["ledger"]["audit"]["edges"]]
check(any("cancel" in (a["action"] or "") and a["actor"] for a in audit), "the audit trail holds the cancel: %s" % audit)

# Depth by state, heartbeat and chain times, log truncation flags, custom scalars.
X = '''query($s: StateRef) {{ ledger(stateRef: $s) {{ queues {{ name pending running }}
  keys {{ edges {{ node {{ id revoked revocation {{ reason }} }} }} }}
  jobs(first: 2) {{ edges {{ node {{ id claim {{ lastHeartbeatAt leaseUntil }} attempts {{ claimedAt claimChain {{ commit at leaseUntil }} }} files {{ path truncated digest }} }} }} }} }} }}'''
x, _ = c.data(X, {{"s": state}})
xq = {{q["name"]: (q["pending"], q["running"]) for q in x["ledger"]["queues"]}}
check(xq.get("later") == ("1", "0"), "depth by state: %s" % xq)
check(all(e["node"]["revocation"] is None and e["node"]["revoked"] is None for e in x["ledger"]["keys"]["edges"]), "no revocation yet")
j0 = x["ledger"]["jobs"]["edges"][0]["node"]
check(j0["claim"]["lastHeartbeatAt"] and j0["claim"]["lastHeartbeatAt"].endswith("Z"), "lastHeartbeatAt: %s" % j0["claim"])
chain = j0["attempts"][0]["claimChain"]
check(all(st["at"] and st["at"].endswith("Z") for st in chain) and chain[0]["at"] >= chain[-1]["at"], "chain times, newest first: %s" % chain)
check(chain[0]["at"] == j0["claim"]["lastHeartbeatAt"], "the last heartbeat is the newest chain commit's time: %s %s" % (chain, j0["claim"]))
logs = {{f["path"]: f["truncated"] for f in j0["files"]}}
check(logs.get("logs/stdout") is False and logs.get("logs/stderr") is False, "logs not truncated: %s" % j0["files"])
for bad_arg, what in [('job(id: "nope") {{ id }}', "a malformed Ulid"), ('jobs(filter: {{since: "yesterday"}}) {{ edges {{ cursor }} }}', "a malformed DateTime")]:
    r = c.post('{{ ledger {{ ' + bad_arg + ' }} }}')
    check(code_of(r) == "InvalidInput", "%s: %s" % (what, r.text))

# Jobs backward: the last ones, then before them; with a filter.
JB = 'query($s: StateRef, $b: String, $n: Int, $f: JobFilter) {{ ledger(stateRef: $s) {{ jobs(last: $n, before: $b, filter: $f) {{ edges {{ node {{ id }} }} pageInfo {{ hasNextPage hasPreviousPage startCursor }} }} }} }}'
jb, _ = c.data(JB, {{"s": state, "n": 2}})
jc = jb["ledger"]["jobs"]
check([e["node"]["id"] for e in jc["edges"]] == ids[2:] and jc["pageInfo"]["hasPreviousPage"] and not jc["pageInfo"]["hasNextPage"], "jobs(last: 2): %s" % jc)
jb, _ = c.data(JB, {{"s": state, "n": 5, "b": jc["pageInfo"]["startCursor"]}})
jc2 = jb["ledger"]["jobs"]
check([e["node"]["id"] for e in jc2["edges"]] == ids[:2] and not jc2["pageInfo"]["hasPreviousPage"] and jc2["pageInfo"]["hasNextPage"], "jobs(last: 5, before): %s" % jc2)
jb, _ = c.data(JB, {{"s": state, "n": 1, "f": {{"queue": "later"}}}})
jc3 = jb["ledger"]["jobs"]
check([e["node"]["id"] for e in jc3["edges"]] == ids[3:], "jobs(last: 1, queue later): %s" % jc3)
jb, _ = c.data(JB, {{"s": state, "n": 5, "b": jc3["pageInfo"]["startCursor"], "f": {{"queue": "later"}}}})
check([e["node"]["id"] for e in jb["ledger"]["jobs"]["edges"]] == ids[2:3], "jobs(last: 5, before, queue later): %s" % jb)
r = c.post(JB, {{"s": state, "n": 1, "b": jc["pageInfo"]["startCursor"], "f": {{"queue": "default"}}}})
check(code_of(r) == "InvalidInput", "a cursor of another filter: %s" % r.text)

# last/before, with the same cap and rules as first/after.
B = '''query($s: StateRef, $b: String, $n: Int) {{ ledger(stateRef: $s) {{
  topics(last: $n, before: $b) {{ totalCount edges {{ cursor node {{ name }} }} pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }} }} }} }}'''
names_all = sorted(t["name"] for t in tall)
b1, _ = c.data(B, {{"s": state, "n": 1}})
tb = b1["ledger"]["topics"]
check([e["node"]["name"] for e in tb["edges"]] == names_all[-1:] and tb["pageInfo"]["hasPreviousPage"] and not tb["pageInfo"]["hasNextPage"], "topics(last: 1): %s" % tb)
b2, _ = c.data(B, {{"s": state, "n": 5, "b": tb["pageInfo"]["startCursor"]}})
tb2 = b2["ledger"]["topics"]
check([e["node"]["name"] for e in tb2["edges"]] == names_all[:-1] and tb2["pageInfo"]["hasNextPage"] and not tb2["pageInfo"]["hasPreviousPage"], "topics(last: 5, before): %s" % tb2)
M = '''query($s: StateRef, $b: String, $n: Int) {{ ledger(stateRef: $s) {{ topic(name: "t.events") {{
  messages(last: $n, before: $b) {{ edges {{ node {{ seq }} }} pageInfo {{ hasNextPage hasPreviousPage startCursor }} }} }} }} }}'''
m1, _ = c.data(M, {{"s": state, "n": 4}})
mb = m1["ledger"]["topic"]["messages"]
check([e["node"]["seq"] for e in mb["edges"]] == ["3", "4", "5", "6"] and mb["pageInfo"]["hasPreviousPage"] and not mb["pageInfo"]["hasNextPage"], "messages(last: 4): %s" % mb)
m2, _ = c.data(M, {{"s": state, "n": 4, "b": mb["pageInfo"]["startCursor"]}})
mb2 = m2["ledger"]["topic"]["messages"]
check([e["node"]["seq"] for e in mb2["edges"]] == ["1", "2"] and not mb2["pageInfo"]["hasPreviousPage"] and mb2["pageInfo"]["hasNextPage"], "messages(last: 4, before): %s" % mb2)
a1, _ = c.data('query($s: StateRef) {{ ledger(stateRef: $s) {{ audit(last: 1) {{ edges {{ node {{ seq action }} }} }} }} }}', {{"s": state}})
check([e["node"]["seq"] for e in a1["ledger"]["audit"]["edges"]] == [audit[-1]["seq"]], "audit(last: 1): %s" % a1)
for q, what in [('jobs(last: 501) {{ edges {{ cursor }} }}', "jobs last: 501"), ('jobs(first: 2, before: "x") {{ edges {{ cursor }} }}', "jobs first and before"), ('topics(last: 501) {{ totalCount }}', "last: 501"), ('topics(last: 0) {{ totalCount }}', "last: 0"), ('topics(first: 1, last: 1) {{ totalCount }}', "first and last"), ('topic(name: "t.events") {{ messages(last: 1, fromSeq: "2") {{ edges {{ cursor }} }} }}', "last with fromSeq")]:
    r = c.post('{{ ledger {{ ' + q + ' }} }}')
    check(code_of(r) == "InvalidInput", "%s: %s" % (what, r.text))
    e = r.json()["errors"][0]["extensions"]
    check(e["data"]["argument"] in ("last", "before"), "%s names the argument: %s" % (what, e))
r = c.post('{{ ledger {{ topics(last: 501) {{ totalCount }} }} }}')
check(r.json()["errors"][0]["extensions"]["data"] == {{"argument": "last", "max": 500, "given": 501}}, "over the cap: %s" % r.text)

# The same states through the operation table: state.resolve (REST GET /api/v1/state).
r = c.session.get(c.base + "/api/v1/state", params={{"state_ref": state}})
check(r.status_code == 200 and r.json()["state"] == state and r.json()["exact"] is True, "state.resolve: %s" % r.text)
r = c.session.get(c.base + "/api/v1/state", params={{"state_ref": "blake3:" + "1" * 64}})
check(r.status_code == 404 and r.json()["code"] == "NotFound", "state.resolve of an unknown state: %s" % r.text)
r = c.session.get(c.base + "/api/v1/state", params={{"ref_path": "snapshots/nope"}})
check(r.status_code == 404 and r.json()["code"] == "NotFound", "state.resolve of a missing snapshot: %s" % r.text)
r = c.session.get(c.base + "/api/v1/state", params={{"ref_path": "elsewhere"}})
check(r.status_code == 400 and r.json()["code"] == "InvalidInput", "state.resolve of an unknown ref_path: %s" % r.text)
r = c.session.get(c.base + "/api/v1/state", params={{"ref_path": "live", "state_ref": state}})
check(r.status_code == 400 and r.json()["code"] == "InvalidInput", "state.resolve with both: %s" % r.text)

# The other reads the schema serves, as operations: queues.list, jobs.attempts, manifests.versions.
r = c.session.get(c.base + "/api/v1/queues")
check(r.status_code == 200 and any(q["queue"] == "later" and q["pending"] == 1 and q["running"] == 0 for q in r.json()["queues"]), "queues.list: %s" % r.text)
r = c.session.get(c.base + "/api/v1/jobs/%s/attempts" % ids[0])
a = r.json()["attempts"]
check(r.status_code == 200 and len(a) == 1 and a[0]["attempt"] == 1 and a[0]["chain"][0]["commit"] == jobs[0]["attempts"][0]["claimChain"][0]["commit"], "jobs.attempts: %s" % r.text)
r = c.session.get(c.base + "/api/v1/manifests/build/versions")
check(r.status_code == 200 and [v["version"] for v in r.json()["versions"]] == [1], "manifests.versions: %s" % r.text)
r = c.session.get(c.base + "/api/v1/manifests/build/versions", params={{"limit": 0}})
check(r.status_code == 400 and r.json()["code"] == "InvalidInput", "manifests.versions limit 0: %s" % r.text)

# By seq, by ULID, after a ULID, and a time range.
u = [e["node"]["ulid"] for e in msgs["edges"]]
T = 'query($s: StateRef, $u: Ulid) {{ ledger(stateRef: $s) {{ topic(name: "t.events") {{ settings a: message(seq: "3") {{ seq payload }} b: message(ulid: $u) {{ seq }} c: messages(afterUlid: $u, first: 2) {{ edges {{ node {{ seq }} }} }} d: messages(fromTime: "2000-01-01T00:00:00Z") {{ edges {{ node {{ seq }} }} }} e: messages(toTime: "2000-01-01T00:00:00Z") {{ edges {{ node {{ seq }} }} pageInfo {{ hasNextPage }} }} f: message(seq: "99") {{ seq }} }} }} }}'
t, _ = c.data(T, {{"s": state, "u": u[1]}})
t = t["ledger"]["topic"]
check(t["settings"]["topic"] == "t.events", "settings: %s" % t["settings"])
check(t["a"] == {{"seq": "3", "payload": {{"n": 2}}}} and t["b"] == {{"seq": "2"}} and t["f"] is None, "message(seq/ulid): %s" % t)
check([e["node"]["seq"] for e in t["c"]["edges"]] == ["3", "4"], "afterUlid: %s" % t["c"])
check(len(t["d"]["edges"]) == 6 and t["e"]["edges"] == [] and not t["e"]["pageInfo"]["hasNextPage"], "time range: %s" % t)
err_r = c.post('{{ ledger {{ topic(name: "t.events") {{ messages(fromSeq: "1", afterUlid: "x") {{ edges {{ cursor }} }} }} }} }}')
check(code_of(err_r) == "InvalidInput", "two starts: %s" % err_r.text)

# Paging on the pinned state: the rest of the messages.
P = 'query($s: StateRef, $a: String) {{ ledger(stateRef: $s) {{ topic(name: "t.events") {{ messages(first: 10, after: $a) {{ edges {{ node {{ seq }} }} pageInfo {{ hasNextPage }} }} }} }} }}'
d2, ext2 = c.data(P, {{"s": state, "a": msgs["pageInfo"]["endCursor"]}})
m2 = d2["ledger"]["topic"]["messages"]
check([e["node"]["seq"] for e in m2["edges"]] == ["5", "6"] and not m2["pageInfo"]["hasNextPage"], "page 2: %s" % m2)
check(ext2["stateRefResolved"] == state, "same state")

# A pinned GET: immutable, ETag = shapeRoot, 304 on If-None-Match, byte-identical later.
G = 'query($s: StateRef) {{ ledger(stateRef: $s) {{ state {{ ref refs }} manifests(first: 5) {{ edges {{ node {{ name version versions(first: 10) {{ totalCount edges {{ node {{ version contentId }} }} }} }} }} }} topics(first: 10) {{ edges {{ node {{ name lastSeq count checkpoints {{ group seq lag }} }} }} }} consumerGroups(first: 10) {{ edges {{ node {{ name checkpoints {{ lag }} }} }} }} audit(first: 100) {{ edges {{ node {{ seq }} }} }} topic(name: "t.events") {{ lastSeq messages(first: 100) {{ edges {{ node {{ seq ulid payload }} }} }} }} jobs(first: 100) {{ edges {{ node {{ id queue }} }} }} }} }}'
r1 = c.get(G, {{"s": state}})
check(r1.status_code == 200 and "errors" not in r1.json(), "pinned GET: %s" % r1.text)
check(r1.headers["Cache-Control"] == "private, max-age=31536000, immutable", "immutable: %s" % r1.headers)
etag = r1.headers["ETag"]
check(etag == '"%s"' % r1.json()["extensions"]["shapeRoot"], "ETag is the shapeRoot")
check(r1.headers["Gatos-State"] == state, "Gatos-State")
print(json.dumps({{"state": state, "etag": etag, "body": r1.text, "query": G}}))
"#,
        ids = serde_json::to_string(&ids)?,
        first = ids[0],
    );
    let env = client_env(&d, &url);
    let out = d.python(&script, &env)?;
    let first: Value = serde_json::from_str(out.trim())?;
    let state = first["state"].as_str().ok_or("state")?.to_owned();

    // Writes in other processes: the pinned answer does not move.
    for i in 0..3 {
        let data = format!(r#"{{"after":{i}}}"#);
        gatos_ok(&repo, &["messages", "publish", "t.events", "--data", &data])?;
    }
    enqueue(&repo, &["--", "true"])?;
    gatos_ok(&repo, &["jobs", "cancel", &ids[3]])?;
    // A job whose output is cut at the worker's cap, and a rotated (superseded) key.
    let noisy = enqueue(
        &repo,
        &[
            "--queue",
            "noisy",
            "--",
            "sh",
            "-c",
            "head -c 5000 /dev/zero",
        ],
    )?;
    gatos_ok(
        &repo,
        &[
            "worker",
            "--drain",
            "--queue",
            "noisy",
            "--log-cap",
            "100",
            "--lease",
            "5s",
        ],
    )?;
    gatos_ok(&repo, &["keys", "init", "--rotate"])?;
    let out = crate::support::gatos_stdin(
        &repo,
        &["manifests", "put", "build", "-"],
        br#"{"command": ["make", "all", "check"], "queue": "build"}"#,
    )?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let script = format!(
        r#"{PRELUDE}
first = json.loads(os.environ["FIRST"])
state, etag, G = first["state"], first["etag"], first["query"]
r2 = c.get(G, {{"s": state}})
check(r2.text == first["body"], "byte-identical after writes:\n%s\n%s" % (first["body"], r2.text))
check(r2.headers["ETag"] == etag, "same ETag")
r3 = c.get(G, {{"s": state}}, headers={{"If-None-Match": etag}})
check(r3.status_code == 304 and r3.text == "", "304: %d %s" % (r3.status_code, r3.text))
live, ext = c.data('{{ ledger {{ state {{ ref }} jobs(first: 100) {{ edges {{ node {{ id }} }} }} }} }}')
check(ext["stateRefResolved"] != state and len(live["ledger"]["jobs"]["edges"]) == 6, "live moved")
nz, _ = c.data('query($id: Ulid!) {{ ledger {{ job(id: $id) {{ state files {{ path bytes truncated }} }} }} }}', {{"id": os.environ["NOISY"]}})
files = {{f["path"]: f for f in nz["ledger"]["job"]["files"]}}
check(nz["ledger"]["job"]["state"] == "succeeded" and files["logs/stdout"]["truncated"] is True and files["logs/stderr"]["truncated"] is False, "a truncated log: %s" % nz)
kr, _ = c.data('{{ ledger {{ keys {{ edges {{ node {{ id current revoked revocation {{ reason revokedAt compromisedSince revokedBy }} }} }} }} }} }}')
revoked = [e["node"] for e in kr["ledger"]["keys"]["edges"] if e["node"]["revocation"]]
current = [e["node"]["id"] for e in kr["ledger"]["keys"]["edges"] if e["node"]["current"]]
check(len(revoked) == 1 and revoked[0]["revoked"] == "superseded" and revoked[0]["revocation"]["reason"] == "superseded" and revoked[0]["revocation"]["revokedAt"].endswith("Z") and revoked[0]["revocation"]["compromisedSince"] is None and revoked[0]["revocation"]["revokedBy"] in current + [revoked[0]["id"]], "revocation details: %s" % kr)
V = 'query($a: String) {{ ledger {{ manifests(first: 5) {{ edges {{ node {{ name versions(first: 1, after: $a) {{ totalCount edges {{ node {{ version spec }} }} pageInfo {{ hasNextPage endCursor }} }} }} }} }} }} }}'
v1, _ = c.data(V, {{"a": None}})
vc = v1["ledger"]["manifests"]["edges"][0]["node"]["versions"]
check(vc["totalCount"] == 2 and [e["node"]["version"] for e in vc["edges"]] == ["2"] and vc["pageInfo"]["hasNextPage"], "versions page 1: %s" % vc)
check(vc["edges"][0]["node"]["spec"]["command"] == ["make", "all", "check"], "the newest version first")
rl = c.get('{{ ledger {{ state {{ ref }} }} }}')
check(rl.headers["Cache-Control"] == "private, no-cache" and rl.headers.get("ETag"), "refPath answers are no-cache")
# The kept states on /metrics.
mt = c.session.get(c.base + "/metrics").text
series = {{l.split(" ")[0]: float(l.split(" ")[1]) for l in mt.splitlines() if l.startswith("gatos_graphql_")}}
check(series.get("gatos_graphql_states", 0) >= 2 and series.get("gatos_graphql_state_bytes", 0) > 0 and "gatos_graphql_states_inexact_total" in series and series.get("gatos_graphql_states_evicted_memory_total") == 0, "state metrics: %s" % series)

# Refusals: stable codes.
def err(r, code, what):
    got = code_of(r)
    check(r.status_code == 200 and got == code, "%s: want %s, got %d %s" % (what, code, r.status_code, r.text))
    e = r.json()["errors"][0]["extensions"]
    check(len(e["ref"]) == 26, "a ref ULID: %s" % e)
    return e
J = 'query($s: StateRef, $a: String) {{ ledger(stateRef: $s) {{ jobs(first: 2, after: $a) {{ edges {{ node {{ id }} }} pageInfo {{ endCursor }} }} }} }}'
d1, _ = c.data(J, {{"s": state}})
cur = d1["ledger"]["jobs"]["pageInfo"]["endCursor"]
i = len(cur) - 5
bad = cur[:i] + ("A" if cur[i] != "A" else "B") + cur[i + 1:]
e = err(c.post(J, {{"s": state, "a": bad}}), "InvalidInput", "a tampered cursor")
check(e["data"]["reason"] == "tampered", "reason tampered")
err(c.post(J, {{"a": cur}}), "InvalidInput", "a cursor of another state")
err(c.post('{{ ledger {{ jobs(first: 501) {{ edges {{ cursor }} }} }} }}'), "InvalidInput", "first: 501")
err(c.post('{{ ledger {{ jobs(first: 0) {{ edges {{ cursor }} }} }} }}'), "InvalidInput", "first: 0")
J500 = "jobs(first: 500) {{ edges {{ cursor node {{ id queue state attempt claim {{ worker attempt }} result {{ status commit }} }} }} }}"
e = err(c.post("query {{ ledger {{ a: " + J500 + " b: " + J500 + " }} }}"), "InvalidInput", "complexity over 10,000")
err(c.post("{{ __schema {{ types {{ name }} }} }}", check=False), "Forbidden", "introspection")
e = err(c.post('query($s: StateRef) {{ ledger(stateRef: $s) {{ state {{ ref }} }} }}', {{"s": "blake3:" + "0" * 64}}), "NotFound", "an unknown state")
check("blake3:" + "0" * 64 in c.post('query($s: StateRef) {{ ledger(stateRef: $s) {{ state {{ ref }} }} }}', {{"s": "blake3:" + "0" * 64}}).json()["errors"][0]["message"], "the error names the state")
err(c.post('query($s: StateRef) {{ ledger(stateRef: $s) {{ state {{ ref }} }} }}', {{"s": "nope"}}), "InvalidInput", "a malformed state")
r = c.session.post(c.url, json={{"query": "{{ __typename }}" + " " * 70000}})
check(r.status_code == 413 and r.json()["code"] == "PayloadTooLarge", "65 KiB document: %d %s" % (r.status_code, r.text))
r = c.session.post(c.url, json=[{{"query": "{{ __typename }}"}}])
check(r.status_code == 400 and r.json()["code"] == "InvalidInput", "a batch")
r = c.session.post(c.url, json={{"query": "{{ __typename }}"}}, headers={{"If-None-Match": etag}})
check(r.status_code == 400, "POST with If-None-Match")
r = c.session.post(c.url, json={{"query": "{{ ledger {{ nope }} }}"}})
e = r.json()["errors"][0]["extensions"]
check(e["code"] == "InvalidInput", "a validation error is InvalidInput")
print(e["ref"])
"#
    );
    let mut env = client_env(&d, &url).to_vec();
    let first_text = first.to_string();
    env.push(("FIRST", &first_text));
    env.push(("NOISY", &noisy));
    let out = d.python(&script, &env)?;
    let reference = out.trim();
    assert_eq!(reference.len(), 26, "{out}");
    let log = d.log();
    assert!(
        log.contains(reference),
        "extensions.ref {reference} is in gatosd's log:\n{log}"
    );
    // The If-None-Match GET of a known immutable answer was a 304 without executing.
    assert!(
        log.contains("GraphQL 304 from a known immutable answer, not executed"),
        "{log}"
    );
    let _ = state;
    Ok(())
}

#[test]
fn limits_are_configurable_and_the_rate_limit_is_the_rest_one() -> TestResult {
    let (repo, _) = fixture()?;
    let d = HttpDaemon::start(
        &repo,
        &format!("t {TOKEN}\n"),
        "gatosd",
        &[
            "--http-rate",
            "5",
            "--http-burst",
            "10",
            "--graphql-max-depth",
            "4",
            "--graphql-max-complexity",
            "50",
            "--graphql-introspection",
        ],
    )?;
    let url = d.url("");
    let script = format!(
        r#"{PRELUDE}
def err(r, code, what):
    check(r.status_code == 200 and code_of(r) == code, "%s: want %s, got %d %s" % (what, code, r.status_code, r.text))
# depth 5 > 4
err(c.post('{{ ledger {{ topic(name: "t.events") {{ messages(first: 1) {{ edges {{ node {{ seq }} }} }} }} }} }}'), "InvalidInput", "depth 5")
# 30 * 2 + 2 > 50
err(c.post('{{ ledger {{ jobs(first: 30) {{ edges {{ cursor }} }} }} }}'), "InvalidInput", "complexity 62")
r = c.post('{{ ledger {{ jobs(first: 2) {{ edges {{ cursor }} }} }} }}')
check(r.status_code == 200 and "errors" not in r.json(), "within the limits: %s" % r.text)
r = c.post('{{ __schema {{ queryType {{ name }} }} }}')
check(r.json()["data"]["__schema"]["queryType"]["name"] == "Query", "introspection served with the flag: %s" % r.text)
# A bounded load loop: the remaining count falls, then 429 RateLimited with Retry-After.
seen, limited = [], None
for i in range(30):
    r = c.session.post(c.url, json={{"query": "{{ __typename }}"}})
    if r.status_code == 429:
        limited = r
        break
    seen.append(int(r.headers["X-RateLimit-Remaining"]))
    check(r.headers["X-RateLimit-Limit"] == "10", "limit header %s" % r.headers)
check(limited is not None, "429 within 30 requests: %s" % seen)
check(seen == sorted(seen, reverse=True) and seen[0] > seen[-1], "remaining falls: %s" % seen)
check(limited.json()["code"] == "RateLimited" and int(limited.headers["Retry-After"]) >= 1, "RateLimited: %s" % limited.text)
print("ok")
"#
    );
    let out = d.python(&script, &client_env(&d, &url))?;
    assert_eq!(out.trim(), "ok");
    Ok(())
}

/// 10,000 jobs and 100,000 messages paged at 500 on a pinned state while a writer
/// enqueues and publishes: no duplicate and no gap.
#[test]
fn paging_a_pinned_state_while_writers_append_has_no_duplicate_or_gap() -> TestResult {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    const JOBS: usize = 10_000;
    const MESSAGES: u64 = 100_000;
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    repo.git(&["config", "gatos.fsync", "false"])?;
    let open = || {
        gatos::Gatos::open(
            repo.path(),
            gatos::OpenOptions {
                clock: None,
                seed: None,
            },
        )
    };
    let g = open()?;
    let spec = |g: &gatos::Gatos| -> TestResult<gatos_types::jobs::JobSpec> {
        Ok(gatos::jobs::manifest::normalize(
            gatos::jobs::manifest::from_value(serde_json::json!({"command": ["true"]}))?,
            g.now(),
        )?)
    };
    let mut seeded = Vec::with_capacity(JOBS);
    for _ in 0..JOBS {
        seeded.push(g.jobs().enqueue(spec(&g)?)?.id.to_string());
    }
    let topic: gatos_types::Topic = "t.big".parse()?;
    let items = (0..MESSAGES).map(|i| {
        Ok(gatos::messages::BatchItem {
            payload: serde_json::json!({ "i": i }),
            headers: None,
        })
    });
    g.messages().publish_batch(
        &topic,
        items,
        &gatos::messages::BatchOptions::default(),
        |_| Ok(()),
    )?;
    let d = HttpDaemon::start(
        &repo,
        &format!("t {TOKEN}\n"),
        "gatosd",
        &["--http-rate", "off"],
    )?;
    let url = d.url("");

    // The writer: jobs and messages until the pages are read.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let g = open()?;
        let topic = topic.clone();
        std::thread::spawn(move || -> Result<Vec<String>, String> {
            let mut ids = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let s = gatos::jobs::manifest::normalize(
                    gatos::jobs::manifest::from_value(serde_json::json!({"command": ["true"]}))
                        .map_err(|e| e.to_string())?,
                    g.now(),
                )
                .map_err(|e| e.to_string())?;
                ids.push(
                    g.jobs()
                        .enqueue(s)
                        .map_err(|e| e.to_string())?
                        .id
                        .to_string(),
                );
                g.messages()
                    .publish(
                        &topic,
                        serde_json::json!({ "w": n }),
                        &gatos::messages::PublishOptions::default(),
                    )
                    .map_err(|e| e.to_string())?;
                n += 1;
            }
            Ok(ids)
        })
    };
    let script = format!(
        r#"{PRELUDE}
J = 'query($s: StateRef, $a: String) {{ ledger(stateRef: $s) {{ jobs(first: 500, after: $a) {{ edges {{ node {{ id }} }} pageInfo {{ hasNextPage endCursor }} }} }} }}'
M = 'query($s: StateRef, $a: String) {{ ledger(stateRef: $s) {{ topic(name: "t.big") {{ messages(first: 500, after: $a) {{ edges {{ node {{ seq payload }} }} pageInfo {{ hasNextPage endCursor }} }} }} }} }}'
def page_all(q, get):
    state, after, out = None, None, []
    while True:
        data, ext = c.data(q, {{"s": state, "a": after}})
        if state is None:
            state = ext["stateRefResolved"]
        check(ext["stateRefResolved"] == state, "one state for every page")
        conn = get(data["ledger"])
        out.extend(e["node"] for e in conn["edges"])
        if not conn["pageInfo"]["hasNextPage"]:
            return state, out
        after = conn["pageInfo"]["endCursor"]
js, jobs = page_all(J, lambda l: l["jobs"])
ms, msgs = page_all(M, lambda l: l["topic"]["messages"])
# Backward at the same state: last: 500 before the previous page's start, to the beginning.
JB = 'query($s: StateRef, $b: String) {{ ledger(stateRef: $s) {{ jobs(last: 500, before: $b) {{ edges {{ node {{ id }} }} pageInfo {{ hasPreviousPage startCursor }} }} }} }}'
back, before = [], None
while True:
    data, ext = c.data(JB, {{"s": js, "b": before}})
    check(ext["stateRefResolved"] == js, "one state for every backward page")
    conn = data["ledger"]["jobs"]
    back = [e["node"]["id"] for e in conn["edges"]] + back
    if not conn["pageInfo"]["hasPreviousPage"]:
        break
    before = conn["pageInfo"]["startCursor"]
check(back == [j["id"] for j in jobs], "backward pages are the forward ones: %d vs %d" % (len(back), len(jobs)))
seqs = [int(m["node"]["seq"]) if "node" in m else int(m["seq"]) for m in msgs]
check(seqs == list(range(1, len(seqs) + 1)), "messages 1..N with no gap or duplicate")
check(all(m["payload"] == {{"i": k}} for k, m in enumerate(msgs[:{MESSAGES}])), "the seeded payloads in order")
print(json.dumps({{"jobs": [j["id"] for j in jobs], "messages": len(seqs)}}))
"#
    );
    let out = d.python(&script, &client_env(&d, &url));
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().map_err(|_| "the writer panicked")??;
    let out: Value = serde_json::from_str(out?.trim())?;
    let paged: Vec<String> = out["jobs"]
        .as_array()
        .ok_or("jobs")?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    let mut sorted = paged.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, paged, "jobs in id order, no duplicate");
    assert_eq!(&paged[..JOBS], &seeded[..], "every seeded job, in order");
    // The writer's jobs at the state are a prefix of what it wrote: no gap.
    let extra = &paged[JOBS..];
    assert_eq!(
        extra,
        &written[..extra.len()],
        "no gap among the writer's jobs"
    );
    let n = out["messages"].as_u64().ok_or("messages")?;
    assert!(n >= MESSAGES, "{n}");
    assert!(
        !written.is_empty(),
        "the writer wrote while the pages were read"
    );
    Ok(())
}

/// A cursor from before a restart is `Gone`; a pinned state survives a restart only when
/// nothing moved (its id is then the current one).
#[test]
fn a_restart_invalidates_cursors_but_not_an_unmoved_state() -> TestResult {
    let (repo, _) = fixture()?;
    let d = HttpDaemon::start(&repo, &format!("t {TOKEN}\n"), "gatosd", &[])?;
    let url = d.url("");
    let script = format!(
        r#"{PRELUDE}
d, ext = c.data('{{ ledger {{ jobs(first: 1) {{ pageInfo {{ endCursor }} }} }} }}')
print(json.dumps({{"state": ext["stateRefResolved"], "cursor": d["ledger"]["jobs"]["pageInfo"]["endCursor"]}}))
"#
    );
    let first: Value = serde_json::from_str(d.python(&script, &client_env(&d, &url))?.trim())?;
    drop(d);
    let d = HttpDaemon::start(&repo, &format!("t {TOKEN}\n"), "gatosd", &[])?;
    let url = d.url("");
    let script = format!(
        r#"{PRELUDE}
first = json.loads(os.environ["FIRST"])
J = 'query($s: StateRef, $a: String) {{ ledger(stateRef: $s) {{ state {{ ref }} jobs(first: 1, after: $a) {{ edges {{ cursor }} }} }} }}'
r = c.post(J, {{"s": first["state"], "a": first["cursor"]}})
check(code_of(r) == "Gone", "a cursor of an earlier run: %s" % r.text)
d, ext = c.data('query($s: StateRef) {{ ledger(stateRef: $s) {{ state {{ ref }} }} }}', {{"s": first["state"]}})
check(ext["stateRefResolved"] == first["state"], "the unmoved state is served after a restart")
print("ok")
"#
    );
    let text = first.to_string();
    let mut env = client_env(&d, &url).to_vec();
    env.push(("FIRST", &text));
    assert_eq!(d.python(&script, &env)?.trim(), "ok");
    Ok(())
}

/// A topic whose head is no message (plain git wrote it): `topics` lists the others,
/// `damagedTopics` names it with its code, and `topic(name:)` for it is an error with that
/// code, not an empty topic (ADR 0047).
#[test]
fn a_damaged_topic_is_named_not_shown_empty() -> TestResult {
    // A consumer group read both topics before the damage: its checkpoint on the damaged
    // one is named too, not listed with a lag it cannot tell.
    let repo = crate::support::a_damaged_topic_with_readers()?;
    let d = HttpDaemon::start(&repo, &format!("t {TOKEN}\n"), "gatosd", &[])?;
    let url = d.url("");
    let script = format!(
        r#"{PRELUDE}
d, _ = c.data('{{ ledger {{ topics(first: 10) {{ edges {{ node {{ name lastSeq }} }} }} damagedTopics {{ name code message }} }} }}')
names = [e["node"]["name"] for e in d["ledger"]["topics"]["edges"]]
check(names == ["good"], "the readable topics: %s" % names)
dmg = d["ledger"]["damagedTopics"]
check([(x["name"], x["code"]) for x in dmg] == [("bad", "InvalidEnvelope")], "damaged: %s" % dmg)
check(dmg[0]["message"] != "", "a message says what is wrong")
r = c.post('{{ ledger {{ topic(name: "bad") {{ lastSeq }} }} }}')
check(code_of(r) == "InvalidEnvelope", "topic(name:) of a damaged topic: %s" % r.text)
d, _ = c.data('{{ ledger {{ consumerGroups(first: 10) {{ edges {{ node {{ name checkpoints {{ topic seq lag }} }} }} }} damagedCheckpoints {{ group topic code message }} }} }}')
groups = [(e["node"]["name"], [x["topic"] for x in e["node"]["checkpoints"]]) for e in d["ledger"]["consumerGroups"]["edges"]]
check(groups == [("readers", ["good"])], "the checkpoints that read: %s" % groups)
dmg = d["ledger"]["damagedCheckpoints"]
check([(x["group"], x["topic"], x["code"]) for x in dmg] == [("readers", "bad", "InvalidEnvelope")], "damaged checkpoints: %s" % dmg)
print("ok")
"#
    );
    assert_eq!(d.python(&script, &client_env(&d, &url))?.trim(), "ok");
    Ok(())
}

const RO_TOKEN: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";

/// Durable snapshots (`git gatos snapshot`): taken by the CLI and over HTTP, listed by
/// REST and GraphQL, served by `stateRef` and `refPath: "snapshots/<name>"`, the same bytes
/// after more writes and a daemon restart (and a 304), deleted (audited); a read-only token
/// is refused, hostile names change nothing, copies without their `meta` are invisible
/// and cleaned.
#[test]
fn snapshots_by_cli_http_and_graphql_survive_writes_and_a_restart() -> TestResult {
    let (repo, _) = fixture()?;
    let out = gatos_ok(&repo, &["snapshot", "create", "pin", "--json"])?;
    let pin: Value = serde_json::from_str(out.trim())?;
    let state = pin["state"].as_str().ok_or("state")?.to_owned();
    let lines = repo.git(&[
        "for-each-ref",
        "--format=%(objectname) %(refname)",
        "refs/gatos/",
    ])?;
    let refs: Vec<(String, gatos_types::Oid)> = lines
        .lines()
        .filter_map(|l| {
            let (o, n) = l.split_once(' ')?;
            Some((n.to_owned(), o.parse().ok()?))
        })
        .collect();
    assert_eq!(
        state,
        gatos::state::StateId::of(&refs).to_string(),
        "the snapshot's state is the id of the refs"
    );
    // More writes after the pin.
    gatos_ok(
        &repo,
        &["messages", "publish", "t.events", "--data", "{\"n\":99}"],
    )?;
    enqueue(&repo, &["--", "true"])?;
    let tokens = format!("t {TOKEN}\nro {RO_TOKEN} ro\n");
    let d = HttpDaemon::start(&repo, &tokens, "gatosd", &[])?;
    let url = d.url("");
    let script = format!(
        r#"{PRELUDE}
state, ro = os.environ["STATE"], os.environ["RO"]
Q = 'query($s: StateRef) {{ ledger(stateRef: $s) {{ state {{ ref takenAt refs exact }} jobs(first: 20) {{ edges {{ node {{ id queue spec }} }} }} topic(name: "t.events") {{ lastSeq messages(first: 20) {{ edges {{ node {{ seq payload }} }} }} }} }} }}'

# REST: the CLI's snapshot is listed; create over HTTP; a read-only token may not write.
r = c.snapshots()
check(r.status_code == 200 and [(s["name"], s["state"]) for s in r.json()["snapshots"]] == [("pin", state)], "snapshots.list: %s" % r.text)
r = c.snapshot_create("second")
check(r.status_code == 201 and r.json()["name"] == "second" and r.json()["actor"] == "http:t", "snapshots.create: %s %s" % (r.status_code, r.text))
second = r.json()["state"]
check(second != state, "the second snapshot holds the later state")
r = c.snapshot_create("by-ro", token=ro)
check(r.status_code == 403 and r.json()["code"] == "Forbidden", "a read-only token: %s %s" % (r.status_code, r.text))
r = c.snapshot_delete("pin", token=ro)
check(r.status_code == 403, "a read-only token may not delete: %s" % r.text)
for bad in ["../x", "a..b", "A", "x" * 65, "a.lock", "a\x01b"]:
    r = c.snapshot_create(bad)
    check(r.status_code == 400 and r.json()["code"] == "InvalidInput", "hostile name %r: %s" % (bad, r.text))
r = c.snapshot_create("second")
check(r.status_code == 409 and r.json()["code"] == "Conflict", "a name taken: %s" % r.text)
names = [s["name"] for s in c.snapshots().json()["snapshots"]]
check(names == ["pin", "second"], "nothing else was made: %s" % names)

# GraphQL: the list (live), a snapshot by name (a moving name: no-cache) and by state.
r = c.post('{{ ledger {{ snapshots {{ name state takenAt refs exact actor }} }} }}')
snaps = r.json()["data"]["ledger"]["snapshots"]
check([(s["name"], s["state"]) for s in snaps] == [("pin", state), ("second", second)], "GraphQL snapshots: %s" % snaps)
check(r.headers["Cache-Control"] == "private, no-cache", "the list is live: %s" % r.headers)
r = c.post('{{ ledger(refPath: "snapshots/pin") {{ state {{ ref takenAt }} }} }}')
body = r.json()
check(body["extensions"]["stateRefResolved"] == state and body["data"]["ledger"]["state"]["takenAt"] == snaps[0]["takenAt"], "refPath snapshots/pin: %s" % r.text)
check(r.headers["Cache-Control"] == "private, no-cache", "refPath is a moving name: %s" % r.headers)
for path, code in [("snapshots/nope", "NotFound"), ("snapshots/../x", "InvalidInput"), ("elsewhere", "InvalidInput")]:
    r = c.post('query($p: String!) {{ ledger(refPath: $p) {{ state {{ ref }} }} }}', {{"p": path}})
    check(code_of(r) == code, "refPath %s: %s" % (path, r.text))
g = c.get(Q, {{"s": state}})
check(g.status_code == 200 and "immutable" in g.headers["Cache-Control"] and g.headers.get("ETag"), "a snapshot's state is immutable: %s %s" % (g.headers, g.text))
data = g.json()["data"]["ledger"]
check(data["state"]["ref"] == state and data["topic"]["lastSeq"] == "6", "the pinned topic: %s" % data)
check(len(data["jobs"]["edges"]) == 4, "the pinned jobs: %s" % data["jobs"])

# Delete (audited) and its refusals.
r = c.snapshot_delete("second")
check(r.status_code == 200 and r.json()["state"] == second, "snapshots.delete: %s" % r.text)
r = c.snapshot_delete("second")
check(r.status_code == 404 and r.json()["code"] == "NotFound", "deleted twice: %s" % r.text)
r = c.session.get(c.base + "/api/v1/audit", params={{"action": "snapshots.delete"}})
recs = r.json()["records"]
check(len(recs) == 1 and recs[0]["target"] == "snapshot:second" and recs[0]["actor"] == "http:t", "audited: %s" % r.text)
r = c.post('query($s: StateRef) {{ ledger(stateRef: $s) {{ state {{ ref }} }} }}', {{"s": second}})
check(r.json().get("data") and r.json()["extensions"]["stateRefResolved"] == second, "a deleted snapshot's state stays in the window: %s" % r.text)
print(json.dumps({{"body": g.text, "etag": g.headers["ETag"]}}))
"#
    );
    let mut env = client_env(&d, &url).to_vec();
    env.push(("STATE", &state));
    env.push(("RO", RO_TOKEN));
    let first: Value = serde_json::from_str(d.python(&script, &env)?.trim())?;
    assert!(
        repo.git(&["for-each-ref", "refs/gatos-snapshots/second/"])?
            .is_empty(),
        "a deleted snapshot leaves no ref"
    );
    // A crash between a create's copies and its meta: copies, no meta.
    let job = repo.git(&[
        "for-each-ref",
        "--count=1",
        "--format=%(objectname) %(refname)",
        "refs/gatos/jobs/",
    ])?;
    let (oid, name) = job.trim().split_once(' ').ok_or("a job ref")?;
    let rest = name
        .strip_prefix("refs/gatos/")
        .ok_or("under refs/gatos/")?;
    repo.git(&[
        "update-ref",
        &format!("refs/gatos-snapshots/crashed/r/{rest}"),
        oid,
    ])?;
    // More writes, and a restart.
    gatos_ok(
        &repo,
        &["messages", "publish", "t.events", "--data", "{\"n\":100}"],
    )?;
    drop(d);
    let d = HttpDaemon::start(&repo, &tokens, "gatosd", &[])?;
    let url = d.url("");
    let script = format!(
        r#"{PRELUDE}
state, first = os.environ["STATE"], json.loads(os.environ["FIRST"])
Q = 'query($s: StateRef) {{ ledger(stateRef: $s) {{ state {{ ref takenAt refs exact }} jobs(first: 20) {{ edges {{ node {{ id queue spec }} }} }} topic(name: "t.events") {{ lastSeq messages(first: 20) {{ edges {{ node {{ seq payload }} }} }} }} }} }}'
g = c.get(Q, {{"s": state}})
check(g.status_code == 200 and g.text == first["body"], "byte-identical after writes and a restart:\n%s\n%s" % (g.text, first["body"]))
check(g.headers["ETag"] == first["etag"] and "immutable" in g.headers["Cache-Control"], "the same tag: %s" % g.headers)
r = c.get(Q, {{"s": state}}, headers={{"If-None-Match": first["etag"]}})
check(r.status_code == 304 and r.text == "", "304: %s %s" % (r.status_code, r.text))
# The half-written snapshot is not one, and the next create cleans it.
names = [s["name"] for s in c.snapshots().json()["snapshots"]]
check(names == ["pin"], "copies without meta are not listed: %s" % names)
r = c.post('{{ ledger(refPath: "snapshots/crashed") {{ state {{ ref }} }} }}')
check(code_of(r) == "NotFound", "copies without meta are not served: %s" % r.text)
r = c.snapshot_create("third")
check(r.status_code == 201, "create: %s" % r.text)
print("ok")
"#
    );
    let text = first.to_string();
    let mut env = client_env(&d, &url).to_vec();
    env.push(("STATE", &state));
    env.push(("FIRST", &text));
    assert_eq!(d.python(&script, &env)?.trim(), "ok");
    let left = repo.git(&[
        "for-each-ref",
        "--format=%(refname)",
        "refs/gatos-snapshots/",
    ])?;
    assert!(!left.contains("crashed"), "the orphan was cleaned: {left}");
    assert!(
        left.contains("refs/gatos-snapshots/pin/meta")
            && left.contains("refs/gatos-snapshots/third/meta"),
        "{left}"
    );
    // The copies live in packed-refs (one rewrite per snapshot), and the repository is sound.
    let packed = std::fs::read_to_string(repo.git_dir().join("packed-refs"))?;
    assert!(packed.contains(" refs/gatos-snapshots/pin/r/"), "{packed}");
    repo.assert_fsck_strict()?;
    Ok(())
}

/// Sync never pushes or fetches `refs/gatos-snapshots/`: a snapshot stays on its node, and
/// a hub's snapshot refs (pushed there by hand) never arrive.
#[test]
fn snapshot_refs_are_never_synced() -> TestResult {
    let hub = TempRepo::bare()?;
    let node = TempRepo::new()?;
    let url = hub.path().to_str().ok_or("path")?;
    node.git(&["remote", "add", "origin", url])?;
    gatos_ok(&node, &["init"])?;
    gatos_ok(&node, &["messages", "publish", "t.s", "--data", "{}"])?;
    gatos_ok(&node, &["snapshot", "create", "local"])?;
    gatos_ok(&node, &["sync"])?;
    let remote = hub.git(&["for-each-ref", "--format=%(refname)"])?;
    assert!(remote.contains("refs/gatos/messages/t.s/head"), "{remote}");
    assert!(!remote.contains("gatos-snapshots"), "pushed: {remote}");
    // A snapshot ref at the hub (by hand) is not fetched.
    let head = node.git(&["rev-parse", "refs/gatos/messages/t.s/head"])?;
    hub.git(&[
        "update-ref",
        "refs/gatos-snapshots/theirs/meta",
        head.trim(),
    ])?;
    hub.git(&[
        "update-ref",
        "refs/gatos-snapshots/theirs/r/messages/t.s/head",
        head.trim(),
    ])?;
    gatos_ok(&node, &["sync"])?;
    let local = node.git(&["for-each-ref", "--format=%(refname)"])?;
    assert!(!local.contains("theirs"), "fetched: {local}");
    let out = gatos_ok(&node, &["snapshot", "ls", "--json"])?;
    let names: Vec<String> = crate::support::json_lines(&out)?
        .iter()
        .filter_map(|v| v["name"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(names, vec!["local".to_owned()]);
    node.assert_fsck_strict()?;
    Ok(())
}

/// `git gatos snapshot` refuses hostile names and the 65th snapshot with stable codes and
/// exit statuses, changing nothing.
#[test]
fn snapshot_cli_refuses_hostile_names_and_the_65th() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    gatos_ok(&repo, &["messages", "publish", "t.s", "--data", "{}"])?;
    gatos_ok(&repo, &["snapshot", "create", "taken"])?;
    let refs = || repo.git(&["for-each-ref", "--format=%(objectname) %(refname)"]);
    let before = refs()?;
    let long = "a".repeat(65);
    for (bad, code, status) in [
        ("..", "InvalidInput", 1),
        ("a/b", "InvalidInput", 1),
        ("a\u{7}b", "InvalidInput", 1),
        (long.as_str(), "InvalidInput", 1),
        ("taken", "Conflict", 3),
    ] {
        let out = crate::support::gatos(&repo, &["snapshot", "create", bad, "--json"])?;
        assert_eq!(out.status.code(), Some(status), "{bad:?}");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            text.contains(&format!("\"code\":\"{code}\"")),
            "{bad:?}: {text}"
        );
    }
    assert_eq!(refs()?, before, "a refusal changes nothing");
    for i in 1..64 {
        gatos_ok(&repo, &["snapshot", "create", &format!("s{i:02}")])?;
    }
    let before = refs()?;
    let out = crate::support::gatos(&repo, &["snapshot", "create", "one-more", "--json"])?;
    assert_eq!(out.status.code(), Some(1));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("\"code\":\"InvalidInput\"") && text.contains("\"limit\":64"),
        "{text}"
    );
    assert_eq!(refs()?, before, "the 65th changes nothing");
    let out = gatos_ok(&repo, &["snapshot", "ls", "--json"])?;
    assert_eq!(crate::support::json_lines(&out)?.len(), 64);
    repo.assert_fsck_strict()?;
    Ok(())
}

/// `gatosd generate graphql-schema` prints the committed SDL, byte for byte (the CI check:
/// `docs/schema.graphql` is what the binary serves; `GATOS_BLESS=1 cargo test -p gatosd
/// --lib graphql` rewrites it).
#[test]
fn the_generated_graphql_schema_is_the_committed_sdl() -> TestResult {
    let out = std::process::Command::new(gatos_testutil::bin("gatosd"))
        .args(["generate", "graphql-schema"])
        .stdin(std::process::Stdio::null())
        .output()?;
    assert!(
        out.status.success(),
        "gatosd generate graphql-schema: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let committed = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/schema.graphql"),
    )?;
    assert!(
        out.stdout == committed,
        "gatosd generate graphql-schema differs from docs/schema.graphql; \
         run GATOS_BLESS=1 cargo test -p gatosd --lib graphql"
    );
    Ok(())
}

/// Aliases repeat a field, so pages alone do not bound an answer: a 4 KiB query of 200
/// aliases of a 7 MiB message made gatosd build a 1.4 GB answer and abort (found by a
/// black-box test). Now the stored content one answer holds is at most four pages
/// (16 MiB): the fields past it fail with `PayloadTooLarge`, the rest of the answer
/// stands, and the daemon serves on.
#[test]
fn aliases_cannot_make_an_answer_larger_than_its_budget() -> TestResult {
    let repo = TempRepo::new()?;
    gatos_ok(&repo, &["init"])?;
    let payload = format!("{{\"blob\":\"{}\"}}", "a".repeat(1024 * 1024));
    let file = repo.root().join("big.json");
    std::fs::write(&file, &payload)?;
    gatos_ok(
        &repo,
        &[
            "messages",
            "publish",
            "t.big",
            "--file",
            &file.to_string_lossy(),
        ],
    )?;
    // Pages of 4 MiB: the answer's budget is 16 MiB, sixteen of these payloads.
    let d = HttpDaemon::start(&repo, &format!("t {TOKEN}\n"), "gatosd", &[])?;
    let url = d.url("");
    let script = format!(
        r#"{PRELUDE}
q = "fragment F on Ledger {{ topic(name: \"t.big\") {{ messages(first: 1) {{ edges {{ node {{ payload }} }} }} }} }} {{" + " ".join("a%d: ledger {{ ...F }}" % i for i in range(40)) + "}}"
r = c.post(q, check=False)
check(r.status_code == 200, "an answer: %d %s" % (r.status_code, r.text[:300]))
a = r.json()
check(len(r.content) < 20 * 1024 * 1024, "the answer is bounded: %d bytes" % len(r.content))
codes = set(e["extensions"]["code"] for e in a.get("errors", []))
check(codes == {{"PayloadTooLarge"}}, "the fields past the budget fail: %s" % codes)
held = [k for k, v in (a.get("data") or {{}}).items() if v and v["topic"] and v["topic"]["messages"]["edges"]]
check(12 <= len(held) <= 17, "the aliases within the budget are answered: %d" % len(held))
r = c.post('{{ ledger {{ topic(name: "t.big") {{ messages(first: 1) {{ edges {{ node {{ seq }} }} }} }} }} }}')
check(r.status_code == 200 and "errors" not in r.json(), "the daemon serves on: %s" % r.text[:300])
print("ok")
"#
    );
    let out = d.python(&script, &client_env(&d, &url))?;
    assert_eq!(out.trim(), "ok");
    Ok(())
}
