//! Hostile clients, made as an attacker would with real sockets and real processes: a job
//! that connects to the Unix socket, floods of unauthenticated TCP connections, too many
//! subscriptions, pages of big messages nobody reads (ADR 0023).

use std::time::Duration;

use gatos_testutil::TestResult;
use gatosd::limits::Limits;
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
        // Reads that are not for any process of the user (a sandboxed job can connect):
        // another job's live log, proofs, keys, the audit trail, a whole-repository check.
        (
            "jobs.logs",
            json!({"id": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "wait_ms": 1000}),
        ),
        ("jobs.verify", json!({"id": "01ARZ3NDEKTSV4RRFFQ69G5FAV"})),
        ("keys.list", json!({})),
        ("audit.read", json!({})),
        ("doctor.check", json!({})),
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

/// Polls `cond` until it holds or `DEADLINE` passes (a condition, never a bare sleep).
async fn until<F, Fut>(what: &str, mut cond: F) -> TestResult
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !cond().await {
        if tokio::time::Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unauthenticated_tcp_connections_sending_mibs_keeps_the_unix_socket_served()
-> TestResult {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let limits = Limits {
        max_tcp_connections: 16,
        ..Limits::default()
    };
    let d = Daemon::start_with(limits, Some("s3cret")).await?;
    let addr = d.tcp.ok_or("no tcp")?;
    // First, idle connections that take every TCP slot (they hold one until the auth
    // timeout); a shared cap would now keep Unix-socket clients out.
    let mut idle = Vec::new();
    for _ in 0..24 {
        idle.push(tokio::net::TcpStream::connect(addr).await?);
    }
    let shared = d.shared.clone();
    until("the idle connections to take every TCP slot", || {
        let open = shared
            .connections
            .load(std::sync::atomic::Ordering::Relaxed);
        async move { open >= 16 }
    })
    .await?;
    // 48 connections (three times the TCP cap), each sending 4 MiB without a newline and
    // never authenticating. Writes that the daemon stops reading just fail or block.
    let mut flood = Vec::new();
    for _ in 0..48 {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        flood.push(tokio::spawn(async move {
            let chunk = vec![b'x'; 64 * 1024];
            for _ in 0..64 {
                if s.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            // What came back: an Unauthorized answer, then the end.
            let mut answer = Vec::new();
            let _ = tokio::time::timeout(DEADLINE, s.read_to_end(&mut answer)).await;
            String::from_utf8_lossy(&answer).into_owned()
        }));
    }
    // Meanwhile the Unix socket answers, and writes there work (for the token holder).
    let mut c = d.client().await?;
    for i in 0..5 {
        assert_eq!(c.ok("gatos.health", json!({})).await?["status"], "ok");
        c.ok("messages.publish", json!({"topic": "t", "payload": i}))
            .await?;
    }
    // Every flooding connection is refused (the pre-auth line cap) and closed.
    for f in flood {
        let answer = f.await?;
        assert!(
            answer.is_empty() || answer.contains("Unauthorized"),
            "{answer}"
        );
    }
    drop(idle);
    until("the flood's connections to close", || {
        let open = shared
            .connections
            .load(std::sync::atomic::Ordering::Relaxed);
        async move { open <= 1 }
    })
    .await?;
    // TCP serves an honest client again.
    let mut t = d.tcp_client().await?;
    t.ok("gatos.auth", json!({"token": "s3cret"})).await?;
    assert_eq!(t.ok("gatos.health", json!({})).await?["status"], "ok");
    d.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthenticated_tcp_line_is_capped_at_a_few_kib() -> TestResult {
    let d = Daemon::start_with(Limits::default(), Some("s3cret")).await?;
    // A gatos.auth padded past the pre-auth cap is refused without being read to its end.
    let mut c = d.tcp_client().await?;
    let padded = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"gatos.auth","params":{{"token":"s3cret","pad":"{}"}}}}"#,
        "x".repeat(8 * 1024)
    );
    c.send_raw(format!("{padded}\n").as_bytes()).await?;
    let r = c.recv().await?.ok_or("closed without an answer")?;
    assert_eq!(r["error"]["data"]["code"], "Unauthorized");
    assert!(c.recv().await?.is_none());
    // Authentication followed at once (in the same write) by a line longer than the
    // pre-auth cap: the cap ends with authentication.
    let mut c = d.tcp_client().await?;
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":2,"method":"messages.publish","params":{{"topic":"t","payload":"{}"}}}}"#,
        "y".repeat(64 * 1024)
    );
    c.send_raw(
        format!("{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"gatos.auth\",\"params\":{{\"token\":\"s3cret\"}}}}\n{big}\n")
            .as_bytes(),
    )
    .await?;
    assert_eq!(
        c.recv().await?.ok_or("closed")?["result"]["authenticated"],
        true
    );
    let r = c.recv().await?.ok_or("closed")?;
    assert_eq!(r["result"]["seq"], 1, "{r}");
    d.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_per_connection_are_capped() -> TestResult {
    let d = Daemon::start_with(
        Limits {
            max_subscriptions: 4,
            ..Limits::default()
        },
        None,
    )
    .await?;
    let mut c = d.anon_client().await?;
    let mut ids = Vec::new();
    for i in 0..3 {
        let s = c
            .ok("messages.subscribe", json!({"topic": format!("t{i}")}))
            .await?;
        ids.push(s["subscription"].clone());
    }
    c.ok("jobs.watch", json!({})).await?;
    for method in ["messages.subscribe", "jobs.watch"] {
        let params = if method == "jobs.watch" {
            json!({})
        } else {
            json!({"topic": "one.more"})
        };
        let r = c.call(method, params).await?;
        assert_eq!(r["error"]["code"], -32000, "{r}");
        assert_eq!(r["error"]["data"]["code"], "TooManySubscriptions", "{r}");
        assert_eq!(r["error"]["data"]["status"], 429);
        assert_eq!(r["error"]["data"]["max_subscriptions"], 4);
    }
    // Another connection has its own allowance; an unsubscribe frees a slot.
    let mut other = d.anon_client().await?;
    other
        .ok("messages.subscribe", json!({"topic": "t0"}))
        .await?;
    c.ok("messages.unsubscribe", json!({"subscription": ids[0]}))
        .await?;
    c.ok("messages.subscribe", json!({"topic": "again"}))
        .await?;
    d.stop().await?;
    Ok(())
}

/// The daemon's stream slots are shared by every connection (and face): past
/// `max_streams`, a subscription on a fresh connection is refused too, the health counts
/// them, and a slot comes back when a stream ends (unsubscribe, or its connection closes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_capped_across_connections() -> TestResult {
    let d = Daemon::start_with(
        Limits {
            max_streams: 3,
            ..Limits::default()
        },
        None,
    )
    .await?;
    let mut a = d.anon_client().await?;
    let mut b = d.anon_client().await?;
    let s0 = a.ok("messages.subscribe", json!({"topic": "t0"})).await?;
    a.ok("jobs.watch", json!({})).await?;
    b.ok("messages.subscribe", json!({"topic": "t1"})).await?;
    let mut c = d.anon_client().await?;
    for method in ["messages.subscribe", "jobs.watch"] {
        let params = if method == "jobs.watch" {
            json!({})
        } else {
            json!({"topic": "one.more"})
        };
        let r = c.call(method, params).await?;
        assert_eq!(r["error"]["data"]["code"], "TooManySubscriptions", "{r}");
        assert_eq!(r["error"]["data"]["status"], 429, "{r}");
        assert_eq!(r["error"]["data"]["max_streams"], 3, "{r}");
    }
    let health = c.ok("gatos.health", json!({})).await?;
    assert_eq!(health["subscriptions"], 3, "{health}");
    // An unsubscribe gives its slot back.
    a.ok(
        "messages.unsubscribe",
        json!({"subscription": s0["subscription"]}),
    )
    .await?;
    c.ok("messages.subscribe", json!({"topic": "t2"})).await?;
    // So does a connection that closes: b's stream ends with it.
    drop(b);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let r = c.call("messages.subscribe", json!({"topic": "t3"})).await?;
        if r.get("result").is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "b's slot never came back: {r}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    d.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_ends_at_its_byte_cap_and_a_batch_answer_at_the_outbox() -> TestResult {
    let d = Daemon::start_with(
        Limits {
            max_page_bytes: 1024 * 1024,
            outbox_bytes: 2 * 1024 * 1024,
            ..Limits::default()
        },
        None,
    )
    .await?;
    let mut c = d.client().await?;
    let big = "z".repeat(300 * 1024);
    for i in 0..6 {
        c.ok(
            "messages.publish",
            json!({"topic": "big", "payload": {"i": i, "pad": big}}),
        )
        .await?;
    }
    // 300 KiB each: the fourth message crosses 1 MiB and ends the page.
    let page = c
        .ok("messages.read", json!({"topic": "big", "limit": 100}))
        .await?;
    let got = page["messages"].as_array().ok_or("no messages")?;
    assert_eq!(got.len(), 4);
    assert_eq!(page["end"], false);
    assert_eq!(page["next_since"], got[3]["ulid"]);
    let rest = c
        .ok(
            "messages.read",
            json!({"topic": "big", "limit": 100, "since": page["next_since"]}),
        )
        .await?;
    assert_eq!(rest["messages"].as_array().map(Vec::len), Some(2));
    assert_eq!(rest["end"], true);
    // One message larger than the cap still makes a page (progress), and says more follow.
    let one = c
        .ok("messages.read", json!({"topic": "big", "limit": 1}))
        .await?;
    assert_eq!(one["messages"].as_array().map(Vec::len), Some(1));
    // A batch of reads: its answer stops at the outbox's 2 MiB; the entries left are not
    // run and say so.
    let reads: Vec<_> = (0..6)
        .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "messages.read", "params": {"topic": "big", "limit": 100}}))
        .collect();
    c.send(&json!(reads)).await?;
    let answer = c.recv().await?.ok_or("closed")?;
    let answer = answer.as_array().ok_or("not a batch answer")?;
    assert_eq!(answer.len(), 6);
    let ran = answer.iter().filter(|a| a["result"].is_object()).count();
    assert_eq!(ran, 2, "each page is about 1.2 MiB");
    for a in answer.iter().filter(|a| a["result"].is_null()) {
        assert_eq!(a["error"]["data"]["code"], "PayloadTooLarge", "{a}");
    }
    d.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_read_big_messages_a_page_at_a_time() -> TestResult {
    let d = Daemon::start_with(
        Limits {
            max_page_bytes: 512 * 1024,
            ..Limits::default()
        },
        None,
    )
    .await?;
    let mut c = d.client().await?;
    let big = "q".repeat(200 * 1024);
    for i in 0..8 {
        c.ok(
            "messages.publish",
            json!({"topic": "b", "payload": {"i": i, "pad": big}}),
        )
        .await?;
    }
    c.ok("messages.subscribe", json!({"topic": "b", "since_seq": 0}))
        .await?;
    // Every message arrives although each poll stops at the byte cap.
    for i in 0..8 {
        let e = c.notification("messages.event").await?;
        assert_eq!(e["params"]["message"]["payload"]["i"], i);
    }
    d.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_path_that_fits_binds_and_a_longer_one_is_a_clear_error() -> TestResult {
    let repo = gatos_testutil::TempRepo::new()?;
    let g = gatos::Gatos::open(repo.path(), gatos::OpenOptions::default())?;
    // A directory deep enough that the socket path is exactly the longest bind takes
    // (107 bytes): the staging path next to it must not be longer.
    let base = repo.root().to_path_buf();
    let name = "gatosd.sock";
    let room = gatosd::transport::unix::MAX_BIND_PATH
        .checked_sub(base.as_os_str().len() + 2 + name.len())
        .ok_or("temporary directory too deep for this test")?;
    let dir = base.join("d".repeat(room.max(1)));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(name);
    assert_eq!(
        path.as_os_str().len(),
        gatosd::transport::unix::MAX_BIND_PATH
    );
    let ep = gatosd::transport::unix::bind(&g, &path)?;
    tokio::net::UnixStream::connect(&path).await?;
    drop(ep);
    // One byte more: refused before anything is made, naming --socket.
    let longer = dir.join(format!("x{name}"));
    let err = gatosd::transport::unix::bind(&g, &longer).unwrap_err();
    assert!(
        err.contains("--socket") && err.contains("108 bytes"),
        "{err}"
    );
    assert!(!longer.exists());
    // Nothing was left in the directory.
    assert_eq!(std::fs::read_dir(&dir)?.count(), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_are_shared_per_topic_and_idle_ones_still_see_outside_writes() -> TestResult {
    let d = Daemon::start_with(
        Limits {
            watch_idle_poll: Duration::from_millis(400),
            ..Limits::default()
        },
        None,
    )
    .await?;
    let mut a = d.anon_client().await?;
    let mut b = d.anon_client().await?;
    let mut ids = Vec::new();
    for i in 0..40 {
        let s = a
            .ok("messages.subscribe", json!({"topic": format!("w{i}")}))
            .await?;
        ids.push(s["subscription"].clone());
    }
    // Another connection on a topic already watched shares its watch.
    b.ok("messages.subscribe", json!({"topic": "w7"})).await?;
    assert_eq!(d.shared.watchers.len(), 40);
    // Let the watches go idle (read at the slow rate), then write from outside the daemon.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let writer = gatos::Gatos::open(d.repo.path(), gatos::OpenOptions::default())?;
    writer.messages().publish(
        &"w7".parse()?,
        json!("outside"),
        &gatos::messages::PublishOptions::default(),
    )?;
    for c in [&mut a, &mut b] {
        let e = c.notification("messages.event").await?;
        assert_eq!(e["params"]["message"]["payload"], "outside");
    }
    // Watches end with their last subscription.
    for id in ids {
        a.ok("messages.unsubscribe", json!({"subscription": id}))
            .await?;
    }
    drop(b);
    let watchers = d.shared.watchers.clone();
    until("the watches to end", || {
        let n = watchers.len();
        async move { n == 0 }
    })
    .await?;
    d.stop().await?;
    Ok(())
}
