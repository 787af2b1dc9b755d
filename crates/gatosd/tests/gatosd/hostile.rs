//! Hostile clients, made as an attacker would with real sockets and real processes: a job
//! that connects to the Unix socket, floods of unauthenticated TCP connections, too many
//! subscriptions, pages of big messages nobody reads (ADR 0023).

use std::time::Duration;

use gatos_testutil::TestResult;
use serde_json::json;

use crate::harness::{DEADLINE, Daemon};

/// Every gatos ref except the node's own key record (from its init).
fn written_refs(repo: &gatos_testutil::TempRepo) -> TestResult<Vec<(String, String)>> {
    Ok(repo
        .refs("refs/gatos/")?
        .into_iter()
        .filter(|(n, _)| !n.starts_with("refs/gatos/trust/keys/"))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthenticated_unix_client_reads_but_cannot_write() -> TestResult {
    let d = Daemon::start().await?;
    let mut c = d.anon_client().await?;
    let token_file = d.token_file.display().to_string();
    let writes = [
        ("messages.publish", json!({"topic": "t", "payload": 1})),
        (
            "messages.publish_batch",
            json!({"topic": "t", "messages": [{"payload": 1}]}),
        ),
        ("jobs.enqueue", json!({"command": ["true"]})),
        (
            "jobs.claim",
            json!({"worker": "w", "worker_key": "ed25519:0000000000000000000000000000000000000000000000000000000000000000"}),
        ),
        (
            "manifests.put",
            json!({"name": "m", "manifest": {"command": ["true"]}}),
        ),
        ("manifests.run", json!({"name": "m"})),
        (
            "checkpoints.set",
            json!({"group": "g", "topic": "t", "ulid": "01ARZ3NDEKTSV4RRFFQ69G5FAV"}),
        ),
        ("sync.run", json!({})),
        ("no.such.method", json!({})),
    ];
    for (method, params) in writes {
        let r = c.call(method, params).await?;
        assert_eq!(r["error"]["data"]["code"], "Unauthorized", "{method}: {r}");
        assert_eq!(r["error"]["data"]["status"], 401);
        assert_eq!(r["error"]["data"]["token_file"], token_file.as_str());
        assert!(
            r["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(&token_file)),
            "{r}"
        );
    }
    // In a batch, each write is refused on its own; reads in it are answered.
    c.send(&json!([
        {"jsonrpc": "2.0", "id": 100, "method": "messages.publish", "params": {"topic": "t", "payload": 1}},
        {"jsonrpc": "2.0", "id": 101, "method": "gatos.version"},
    ]))
    .await?;
    let answers = c.recv().await?.ok_or("closed")?;
    let answers = answers.as_array().ok_or("not a batch answer")?;
    assert_eq!(answers.len(), 2);
    for a in answers {
        match a["id"].as_u64() {
            Some(100) => assert_eq!(a["error"]["data"]["code"], "Unauthorized"),
            Some(101) => assert!(a["result"].is_object(), "{a}"),
            _ => return Err(format!("unexpected answer {a}").into()),
        }
    }
    // Reads are open.
    assert_eq!(c.ok("gatos.health", json!({})).await?["status"], "ok");
    assert_eq!(
        c.ok("messages.read", json!({"topic": "t"})).await?["messages"],
        json!([])
    );
    c.ok("topics.list", json!({})).await?;
    c.ok("jobs.list", json!({})).await?;
    // A wrong token is refused and the connection stays usable (and still cannot write).
    let r = c.call("gatos.auth", json!({"token": "guess"})).await?;
    assert_eq!(r["error"]["data"]["code"], "Unauthorized");
    let r = c
        .call("messages.publish", json!({"topic": "t", "payload": 2}))
        .await?;
    assert_eq!(r["error"]["data"]["code"], "Unauthorized");
    // Nothing was written.
    let repo = d.stop().await?;
    assert_eq!(written_refs(&repo)?, vec![]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_from_the_token_file_opens_writes_on_the_unix_socket() -> TestResult {
    let d = Daemon::start().await?;
    // The token file is private and sits in the git directory, where a sandbox hides it.
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&d.token_file)?.permissions().mode() & 0o777,
        0o600
    );
    assert!(d.token_file.starts_with(d.repo.git_dir()));
    let mut c = d.anon_client().await?;
    c.ok("gatos.auth", json!({"token": d.token})).await?;
    c.ok("messages.publish", json!({"topic": "t", "payload": 1}))
        .await?;
    c.ok("jobs.enqueue", json!({"command": ["true"]})).await?;
    // Another connection is not authenticated by this one.
    let mut other = d.anon_client().await?;
    let r = other
        .call("messages.publish", json!({"topic": "t", "payload": 2}))
        .await?;
    assert_eq!(r["error"]["data"]["code"], "Unauthorized");
    let repo = d.stop().await?;
    repo.assert_fsck_strict()
}

/// A job's view: a separate process (Python's standard library, as a job would use) that
/// can connect to the socket but cannot read the token file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_separate_process_without_the_token_cannot_publish_or_enqueue() -> TestResult {
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("python3 not found; skipped");
        return Ok(());
    }
    let d = Daemon::start().await?;
    let script = r#"
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(30)
s.connect(sys.argv[1])
f = s.makefile("rwb")
out = []
for i, (m, p) in enumerate([
    ("messages.publish", {"topic": "pwn", "payload": "x"}),
    ("jobs.enqueue", {"command": ["sh", "-c", "id"]}),
    ("gatos.auth", {"token": "0" * 64}),
    ("jobs.enqueue", {"command": ["sh", "-c", "id"]}),
    ("gatos.health", {}),
]):
    f.write((json.dumps({"jsonrpc": "2.0", "id": i, "method": m, "params": p}) + "\n").encode())
    f.flush()
    r = json.loads(f.readline())
    out.append(r.get("error", {}).get("data", {}).get("code") or r["result"].get("status", "ok"))
print(" ".join(out))
"#;
    let socket = d.socket.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&socket)
            .output()
    })
    .await??;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Unauthorized Unauthorized Unauthorized Unauthorized ok"
    );
    let repo = d.stop().await?;
    assert_eq!(written_refs(&repo)?, vec![]);
    Ok(())
}

#[allow(dead_code, reason = "used by the tests added below")]
const SHORT: Duration = Duration::from_millis(50);
#[allow(dead_code, reason = "used by the tests added below")]
const LONG: Duration = DEADLINE;
