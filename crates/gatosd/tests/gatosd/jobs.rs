//! `jobs.*` and `manifests.*`: a client claims, heartbeats and completes with a proof it
//! signed itself; the daemon checks the proof and never signs.

use base64::Engine as _;
use ed25519_dalek::SigningKey;
use gatos::proofs::{self, Predicate, Subjects};
use gatos_testutil::TestResult;
use gatos_types::KeyId;
use serde_json::{Value, json};

use crate::harness::{Client, Daemon};

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn key_id(k: &SigningKey) -> KeyId {
    KeyId::from_bytes(k.verifying_key().to_bytes())
}

/// What a client does after running a claimed job: describe it and sign.
fn proof(key: &SigningKey, claim: &Value, exit_code: i32, stdout: &[u8]) -> TestResult<Value> {
    let now = gatos_types::Timestamp::from_millis(1_800_000_000_000);
    let predicate = Predicate {
        job: claim["id"].as_str().unwrap().parse()?,
        job_content_id: claim["job_content_id"].as_str().unwrap().parse()?,
        attempt: u32::try_from(claim["attempt"].as_u64().unwrap())?,
        claim_commit: claim["claim_commit"].as_str().unwrap().parse()?,
        worker: claim["worker"].as_str().unwrap().parse()?,
        worker_key: key_id(key),
        started_at: now,
        finished_at: now,
        exit_code: Some(exit_code),
        status: if exit_code == 0 {
            "succeeded"
        } else {
            "failed"
        }
        .into(),
        stdout: proofs::stream_info(stdout, false),
        stderr: proofs::stream_info(b"", false),
        outputs: Vec::new(),
        runner: json!({"name": "rpc test client"}),
    };
    let files = vec![
        ("logs/stdout".to_owned(), stdout),
        ("logs/stderr".to_owned(), &b""[..]),
    ];
    let poe = proofs::sign(key, &predicate, &Subjects { files })?;
    Ok(serde_json::from_slice(&poe)?)
}

fn code(v: &Value) -> &str {
    v["error"]["data"]["code"].as_str().unwrap_or("")
}

async fn claim(c: &mut Client, worker: &str, key: &SigningKey) -> TestResult<Value> {
    c.ok(
        "jobs.claim",
        json!({"worker": worker, "worker_key": key_id(key).to_string(), "lease": "30s"}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_claims_heartbeats_and_completes_with_its_own_signed_proof() -> TestResult {
    let d = Daemon::start().await?;
    let g = gatos::Gatos::open(d.repo.path(), gatos::OpenOptions::default())?;
    let client_key = SigningKey::from_bytes(&[7u8; 32]);
    g.keys().trust(&key_id(&client_key))?;
    let mut c = d.client().await?;
    let watch = c.ok("jobs.watch", json!({})).await?;
    let job = c
        .ok(
            "jobs.enqueue",
            json!({"command": ["make", "test"], "priority": 2}),
        )
        .await?;
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(job["state"], "pending");
    // A claim sent as a notification is not run: its answer is the point.
    c.send(&json!({"jsonrpc": "2.0", "method": "jobs.claim",
        "params": {"worker": "ghost", "worker_key": key_id(&client_key).to_string()}}))
        .await?;
    let got = c.ok("jobs.get", json!({"id": id})).await?;
    assert_eq!(got["state"], "pending");
    let cl = claim(&mut c, "rpc-worker", &client_key).await?;
    assert_eq!(cl["id"], id.as_str());
    assert_eq!(cl["attempt"], 1);
    assert_eq!(cl["manifest"]["args"], json!(["test"]));
    let mut other = d.client().await?;
    assert_eq!(claim(&mut other, "other", &client_key).await?, Value::Null);
    let hb = c
        .ok(
            "jobs.heartbeat",
            json!({"id": id, "attempt": 1, "worker": "rpc-worker", "lease_token": cl["lease_token"]}),
        )
        .await?;
    assert_eq!(hb["cancelled"], false);
    // An impostor knows everything public (the worker's name and attempt from jobs.get,
    // the claim commit) but not the lease token: it can neither extend nor end the job.
    let public = c.ok("jobs.get", json!({"id": id})).await?;
    assert!(public.to_string().contains("rpc-worker"), "{public}");
    assert!(
        !public
            .to_string()
            .contains(cl["lease_token"].as_str().unwrap()),
        "the token is never shown again: {public}"
    );
    let stdout = b"all tests passed\n";
    let good = proof(&client_key, &cl, 0, stdout)?;
    let mut impostor = d.client().await?;
    for (method, params) in [
        (
            "jobs.fail",
            json!({"id": id, "attempt": 1, "worker": "rpc-worker", "outcome": "failed"}),
        ),
        (
            "jobs.heartbeat",
            json!({"id": id, "attempt": 1, "worker": "rpc-worker"}),
        ),
        (
            "jobs.fail",
            json!({"id": id, "attempt": 1, "worker": "rpc-worker",
            "lease_token": "00".repeat(32)}),
        ),
        (
            "jobs.complete",
            json!({"id": id, "attempt": 1, "worker": "rpc-worker", "exit_code": 0,
            "stdout_base64": b64(stdout), "poe": good,
            "lease_token": cl["claim_commit"].as_str().unwrap().repeat(2)[..64].to_owned()}),
        ),
    ] {
        let r = impostor.call(method, params).await?;
        assert_eq!(code(&r), "Forbidden", "{method}: {r}");
    }
    let bad = impostor
        .call(
            "jobs.fail",
            json!({"id": id, "attempt": 1, "worker": "rpc-worker", "lease_token": "not hex"}),
        )
        .await?;
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
    assert_eq!(
        c.ok("jobs.get", json!({"id": id})).await?["state"],
        "running"
    );
    // A wrong proof is refused and changes nothing.
    let lie = c
        .call(
            "jobs.complete",
            json!({"id": id, "attempt": 1, "worker": "rpc-worker", "lease_token": cl["lease_token"], "exit_code": 0,
                   "stdout_base64": b64(b"something else\n"), "poe": good}),
        )
        .await?;
    assert_eq!(code(&lie), "DigestMismatch", "{lie}");
    let unsigned = c
        .call(
            "jobs.complete",
            json!({"id": id, "attempt": 1, "worker": "rpc-worker", "lease_token": cl["lease_token"], "exit_code": 0}),
        )
        .await?;
    assert_eq!(code(&unsigned), "SignatureInvalid");
    let stranger = SigningKey::from_bytes(&[9u8; 32]);
    let forged = c
        .call(
            "jobs.complete",
            json!({"id": id, "attempt": 1, "worker": "rpc-worker", "lease_token": cl["lease_token"], "exit_code": 0,
                   "stdout_base64": b64(stdout), "poe": proof(&stranger, &cl, 0, stdout)?}),
        )
        .await?;
    assert_eq!(
        code(&forged),
        "SignatureInvalid",
        "not the claim's key: {forged}"
    );
    assert_eq!(
        c.ok("jobs.get", json!({"id": id})).await?["state"],
        "running"
    );
    let done = c
        .ok(
            "jobs.complete",
            json!({"id": id, "attempt": 1, "worker": "rpc-worker", "lease_token": cl["lease_token"], "exit_code": 0,
                   "stdout_base64": b64(stdout), "poe": good}),
        )
        .await?;
    assert_eq!(done["state"], "succeeded");
    let row = c.ok("jobs.get", json!({"id": id})).await?;
    assert_eq!(row["poe"]["verified"], true);
    assert_eq!(row["poe"]["key"], key_id(&client_key).to_string());
    assert!(g.jobs().verify(id.parse()?)?.verified);
    // Events reached the watcher, in order.
    let mut names = Vec::new();
    while names.len() < 3 {
        let e = c.notification("jobs.event").await?;
        assert_eq!(e["params"]["subscription"], watch["subscription"]);
        names.push(e["params"]["event"]["event"].as_str().unwrap().to_owned());
    }
    assert_eq!(names, ["enqueued", "claimed", "succeeded"]);
    d.stop().await?.assert_fsck_strict()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_cancel_list_and_untrusted_keys_over_rpc() -> TestResult {
    let d = Daemon::start().await?;
    let trusted = SigningKey::from_bytes(&[1u8; 32]);
    let untrusted = SigningKey::from_bytes(&[2u8; 32]);
    let g = gatos::Gatos::open(d.repo.path(), gatos::OpenOptions::default())?;
    g.keys().trust(&key_id(&trusted))?;
    let mut c = d.client().await?;
    let a = c
        .ok(
            "jobs.enqueue",
            json!({"manifest": {"command": ["a"], "max_attempts": 2}}),
        )
        .await?;
    let cl = claim(&mut c, "w", &trusted).await?;
    assert_eq!(cl["id"], a["id"]);
    // A failure is proven like a success: without its proof it is refused.
    let unproven = c
        .call(
            "jobs.fail",
            json!({"id": cl["id"], "attempt": 1, "worker": "w", "lease_token": cl["lease_token"], "exit_code": 2,
                   "stdout_base64": b64(b"no such target\n")}),
        )
        .await?;
    assert_eq!(code(&unproven), "SignatureInvalid", "{unproven}");
    let failed = c
        .ok(
            "jobs.fail",
            json!({"id": cl["id"], "attempt": 1, "worker": "w", "lease_token": cl["lease_token"], "exit_code": 2,
                   "stdout_base64": b64(b"no such target\n"),
                   "poe": proof(&trusted, &cl, 2, b"no such target\n")?}),
        )
        .await?;
    assert_eq!(failed["state"], "pending", "retried after the backoff");
    // A fenced client: its attempt is over, so its heartbeat and completion are refused.
    let late = c
        .call(
            "jobs.heartbeat",
            json!({"id": cl["id"], "attempt": 1, "worker": "w", "lease_token": cl["lease_token"]}),
        )
        .await?;
    assert_eq!(code(&late), "LeaseExpired");
    // Cancel, list.
    let b = c
        .ok("jobs.enqueue", json!({"command": ["b"], "queue": "other"}))
        .await?;
    let cancelled = c
        .ok("jobs.cancel", json!({"id": b["id"], "reason": "no"}))
        .await?;
    assert_eq!(cancelled["state"], "cancelled");
    let list = c.ok("jobs.list", json!({"state": "cancelled"})).await?;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 1);
    let list = c.ok("jobs.list", json!({"queue": "default"})).await?;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 1);
    // A proof by a key this repository does not trust is refused.
    let u = c
        .ok("jobs.enqueue", json!({"command": ["u"], "priority": 9}))
        .await?;
    let cl = claim(&mut c, "stranger", &untrusted).await?;
    assert_eq!(cl["id"], u["id"]);
    let refused = c
        .call(
            "jobs.complete",
            json!({"id": cl["id"], "attempt": 1, "worker": "stranger", "lease_token": cl["lease_token"], "exit_code": 0,
                   "stdout_base64": b64(b"ok\n"), "poe": proof(&untrusted, &cl, 0, b"ok\n")?}),
        )
        .await?;
    assert_eq!(code(&refused), "UntrustedKey");
    // Bad params are -32602; a bad manifest is InvalidInput; a raw secret SecretDetected.
    let bad = c
        .call("jobs.enqueue", json!({"command": ["x"], "bogus": 1}))
        .await?;
    assert_eq!(bad["error"]["code"], -32602);
    let none = c.call("jobs.enqueue", json!({})).await?;
    assert_eq!(code(&none), "InvalidInput");
    let leak = c
        .call(
            "jobs.enqueue",
            json!({"command": ["x"], "env": {"API_TOKEN": "Zx8vQ2mN7pL4kR9tW1yB6cJ3"}}),
        )
        .await?;
    assert_eq!(code(&leak), "SecretDetected");
    d.stop().await?.assert_fsck_strict()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manifest_registry_over_rpc() -> TestResult {
    let d = Daemon::start().await?;
    let mut c = d.client().await?;
    let manifest = json!({"command": ["make"], "args": ["release"], "timeout": "5m"});
    let v1 = c
        .ok(
            "manifests.put",
            json!({"name": "release", "manifest": manifest}),
        )
        .await?;
    assert_eq!(
        (v1["version"].as_u64(), v1["changed"].as_bool()),
        (Some(1), Some(true))
    );
    assert_eq!(v1["manifest"]["timeout"], 300);
    let again = c
        .ok(
            "manifests.put",
            json!({"name": "release", "manifest": manifest}),
        )
        .await?;
    assert_eq!(
        (again["version"].as_u64(), again["changed"].as_bool()),
        (Some(1), Some(false))
    );
    let got = c.ok("manifests.get", json!({"name": "release"})).await?;
    assert_eq!(got["content_id"], v1["content_id"]);
    let list = c.ok("manifests.list", json!({})).await?;
    assert_eq!(list["manifests"].as_array().unwrap().len(), 1);
    let job = c
        .ok("manifests.run", json!({"name": "release", "version": 1}))
        .await?;
    let row = c.ok("jobs.get", json!({"id": job["id"]})).await?;
    assert_eq!(row["manifest"]["source"]["name"], "release");
    let missing = c.call("manifests.run", json!({"name": "nope"})).await?;
    assert_eq!(code(&missing), "NotFound");
    d.stop().await?.assert_fsck_strict()
}
