//! The Unix socket's safety rules and TCP authentication.

use std::os::unix::fs::PermissionsExt;

use gatos_testutil::TestResult;
use gatosd::limits::Limits;
use serde_json::json;

use crate::harness::Daemon;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_is_private_unique_and_cleaned_up() -> TestResult {
    let d = Daemon::start().await?;
    let mode = std::fs::metadata(&d.socket)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // A second daemon on the same path refuses to start and leaves the live socket alone.
    let g2 = gatos::Gatos::open(d.repo.path(), gatos::OpenOptions::default())?;
    let err = gatosd::transport::unix::bind(&g2, &d.socket).unwrap_err();
    assert!(err.contains("another gatosd"), "{err}");
    let mut c = d.client().await?;
    c.ok("gatos.version", json!({})).await?;
    drop(c);
    let socket = d.socket.clone();
    let repo = d.stop().await?;
    assert!(!socket.exists());
    // A stale socket (a crashed daemon's) is replaced.
    let stale = std::os::unix::net::UnixListener::bind(&socket)?;
    drop(stale);
    assert!(socket.exists());
    let d = Daemon::start_in(repo, Limits::default(), None).await?;
    d.client().await?.ok("gatos.version", json!({})).await?;
    // A regular file at the path is never removed.
    let repo = d.stop().await?;
    std::fs::write(&socket, "not a socket")?;
    let g3 = gatos::Gatos::open(repo.path(), gatos::OpenOptions::default())?;
    assert!(
        gatosd::transport::unix::bind(&g3, &socket)
            .unwrap_err()
            .contains("not a socket")
    );
    assert_eq!(std::fs::read_to_string(&socket)?, "not a socket");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_wants_the_token_first() -> TestResult {
    let d = Daemon::start_with(Limits::default(), Some("s3cret")).await?;
    // Anything else first: Unauthorized, then closed.
    let mut c = d.tcp_client().await?;
    let r = c.call("gatos.version", json!({})).await?;
    assert_eq!(r["error"]["data"]["code"], "Unauthorized");
    assert_eq!(r["error"]["data"]["status"], 401);
    assert!(c.recv().await?.is_none(), "closed after refusing");
    // A wrong token.
    let mut c = d.tcp_client().await?;
    let r = c.call("gatos.auth", json!({"token": "wrong"})).await?;
    assert_eq!(r["error"]["data"]["code"], "Unauthorized");
    assert!(c.recv().await?.is_none());
    // A batch first is refused too.
    let mut c = d.tcp_client().await?;
    c.send(&json!([{"jsonrpc": "2.0", "id": 1, "method": "gatos.auth", "params": {"token": "s3cret"}}])).await?;
    assert_eq!(
        c.recv().await?.unwrap()["error"]["data"]["code"],
        "Unauthorized"
    );
    assert!(c.recv().await?.is_none());
    // The right token, then business as usual.
    let mut c = d.tcp_client().await?;
    assert_eq!(
        c.ok("gatos.auth", json!({"token": "s3cret"})).await?["authenticated"],
        true
    );
    c.ok("messages.publish", json!({"topic": "tcp", "payload": 1}))
        .await?;
    assert_eq!(c.ok("gatos.health", json!({})).await?["status"], "ok");
    d.stop().await?;
    Ok(())
}

/// On the Unix socket before `gatos.auth`, reading the audit trail's topic through the
/// message operations is refused as `audit.read` is; other topics stay readable, and after
/// `gatos.auth` the audit topic reads too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_topic_needs_the_token_whatever_reads_it() -> TestResult {
    let d = crate::harness::Daemon::start().await?;
    let mut c = d.anon_client().await?;
    for (method, params) in [
        ("messages.read", serde_json::json!({"topic": "gatos.audit"})),
        (
            "messages.subscribe",
            serde_json::json!({"topic": "gatos.audit"}),
        ),
        ("audit.read", serde_json::json!({})),
    ] {
        let r = c.call(method, params).await?;
        assert_eq!(r["error"]["data"]["code"], "Unauthorized", "{method}: {r}");
    }
    c.ok("messages.read", json!({"topic": "t"})).await?;
    c.ok("gatos.auth", serde_json::json!({"token": d.token}))
        .await?;
    c.ok("messages.read", serde_json::json!({"topic": "gatos.audit"}))
        .await?;
    d.stop().await?;
    Ok(())
}

/// A connection that presented a token is held to the token file as it is now: a re-read
/// that marks the token `ro` stops its writes, one that takes it out stops its writes on the
/// Unix socket (reads stay open there) and every call on TCP but `gatos.auth`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_loses_what_its_withdrawn_token_allowed() -> TestResult {
    let d = Daemon::start_with(Limits::default(), None).await?;
    let token = std::fs::read_to_string(&d.token_file)?.trim().to_owned();
    let mut c = d.client().await?;
    c.ok("messages.publish", json!({"topic": "t", "payload": 1}))
        .await?;
    std::fs::write(&d.token_file, format!("ci {token} ro\n"))?;
    d.shared.reload_tokens();
    let r = c
        .call("messages.publish", json!({"topic": "t", "payload": 2}))
        .await?;
    assert_eq!(r["error"]["data"]["code"], "Forbidden", "{r}");
    let other = "7".repeat(64);
    std::fs::write(&d.token_file, format!("other {other}\n"))?;
    d.shared.reload_tokens();
    let r = c
        .call("messages.publish", json!({"topic": "t", "payload": 3}))
        .await?;
    assert_eq!(r["error"]["data"]["code"], "Unauthorized", "{r}");
    // Reads stay open on the Unix socket, and the new token opens writes again.
    let page = c.ok("messages.read", json!({"topic": "t"})).await?;
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(1));
    c.ok("gatos.auth", json!({"token": other})).await?;
    c.ok("messages.publish", json!({"topic": "t", "payload": 4}))
        .await?;
    d.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_connection_whose_token_is_withdrawn_is_served_nothing_more() -> TestResult {
    let d = Daemon::start_with(Limits::default(), Some("s3cret")).await?;
    let mut c = d.tcp_client().await?;
    c.ok("gatos.auth", json!({"token": "s3cret"})).await?;
    assert_eq!(c.ok("gatos.health", json!({})).await?["status"], "ok");
    let other = "8".repeat(64);
    std::fs::write(&d.token_file, format!("other {other}\n"))?;
    d.shared.reload_tokens();
    let r = c.call("gatos.health", json!({})).await?;
    assert_eq!(r["error"]["data"]["code"], "Unauthorized", "{r}");
    c.ok("gatos.auth", json!({"token": other})).await?;
    assert_eq!(c.ok("gatos.health", json!({})).await?["status"], "ok");
    d.stop().await?;
    Ok(())
}
