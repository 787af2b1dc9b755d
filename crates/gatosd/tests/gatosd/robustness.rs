//! Limits and bad input: errors with codes, never a panic, and the connection goes on.

use std::collections::HashSet;

use gatos_testutil::TestResult;
use gatosd::limits::Limits;
use serde_json::json;

use crate::harness::Daemon;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_lines_bad_utf8_and_deep_nesting_get_errors_and_the_connection_goes_on()
-> TestResult {
    let d = Daemon::start_with(
        Limits {
            max_line: 4096,
            ..Limits::default()
        },
        None,
    )
    .await?;
    let mut c = d.client().await?;
    let mut big =
        br#"{"jsonrpc":"2.0","method":"messages.publish","id":1,"params":{"topic":"t","payload":""#
            .to_vec();
    big.extend(std::iter::repeat_n(b'x', 100_000));
    big.extend(b"\"}}\n");
    c.send_raw(&big).await?;
    let r = c.recv().await?.unwrap();
    assert_eq!(r["error"]["code"], -32000);
    assert_eq!(
        r["error"]["data"],
        json!({"code": "PayloadTooLarge", "status": 413})
    );
    c.send_raw(b"\xff\xfe\xfd\n").await?;
    assert_eq!(c.recv().await?.unwrap()["error"]["code"], -32700);
    let deep = "[".repeat(5000) + &"]".repeat(5000);
    c.send_raw(format!("{deep}\n").as_bytes()).await?;
    assert!(c.recv().await?.unwrap()["error"]["code"].as_i64().is_some());
    let nested = format!(
        r#"{{"jsonrpc":"2.0","id":2,"method":"messages.publish","params":{{"topic":"t","payload":{}}}}}"#,
        "[".repeat(100) + &"]".repeat(100)
    );
    c.send_raw(format!("{nested}\n").as_bytes()).await?;
    assert_eq!(c.recv().await?.unwrap()["error"]["code"], -32700);
    // Still usable, and nothing was written.
    let page = c.ok("messages.read", json!({"topic": "t"})).await?;
    assert_eq!(page["messages"], json!([]));
    let repo = d.stop().await?;
    // (The node's published key record, from its init, is the only gatos ref.)
    let refs = repo.refs("refs/gatos/")?;
    assert!(
        refs.iter()
            .all(|(n, _)| n.starts_with("refs/gatos/trust/keys/")),
        "{refs:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_clients_publishing_200_each_lose_nothing() -> TestResult {
    let d = Daemon::start().await?;
    let mut tasks = Vec::new();
    for k in 0..8 {
        let mut c = d.client().await?;
        tasks.push(tokio::spawn(async move {
            let mut ulids = Vec::new();
            for i in 0..200 {
                let r = c
                    .ok(
                        "messages.publish",
                        json!({"topic": "load", "payload": {"k": k, "i": i}}),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                ulids.push(r["ulid"].as_str().unwrap_or_default().to_owned());
            }
            Ok::<_, String>(ulids)
        }));
    }
    let mut acked = HashSet::new();
    for t in tasks {
        acked.extend(t.await??);
    }
    assert_eq!(acked.len(), 1600);
    let mut c = d.client().await?;
    let mut seqs = Vec::new();
    let mut since = json!(null);
    loop {
        let params = if since.is_null() {
            json!({"topic": "load", "limit": 500})
        } else {
            json!({"topic": "load", "since": since, "limit": 500})
        };
        let page = c.ok("messages.read", params).await?;
        for m in page["messages"].as_array().unwrap() {
            seqs.push(m["seq"].as_u64().unwrap());
            assert!(acked.contains(m["ulid"].as_str().unwrap()));
        }
        if page["end"] == true {
            break;
        }
        since = page["next_since"].clone();
    }
    assert_eq!(seqs, (1..=1600).collect::<Vec<_>>());
    let repo = d.stop().await?;
    repo.assert_fsck_strict()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_past_the_in_flight_cap_are_all_answered() -> TestResult {
    let d = Daemon::start_with(
        Limits {
            max_in_flight: 2,
            ..Limits::default()
        },
        None,
    )
    .await?;
    let mut c = d.client().await?;
    let mut batch = Vec::new();
    for i in 0..50 {
        batch.extend(serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": i, "method": "messages.publish", "params": {"topic": "p", "payload": i}}))?);
        batch.push(b'\n');
    }
    c.send_raw(&batch).await?;
    let mut ids = HashSet::new();
    for _ in 0..50 {
        let r = c.recv().await?.unwrap();
        assert!(r["result"].is_object(), "{r}");
        ids.insert(r["id"].as_u64().unwrap());
    }
    assert_eq!(ids.len(), 50);
    // A batch bigger than the cap runs too.
    let big: Vec<_> = (0..10)
        .map(|i| json!({"jsonrpc": "2.0", "id": 100 + i, "method": "gatos.version"}))
        .collect();
    c.send(&json!(big)).await?;
    assert_eq!(c.recv().await?.unwrap().as_array().map(Vec::len), Some(10));
    d.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_what_it_accepted() -> TestResult {
    let d = Daemon::start().await?;
    let mut c = d.client().await?;
    let mut lines = Vec::new();
    for i in 0..20 {
        lines.extend(serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": i, "method": "messages.publish", "params": {"topic": "s", "payload": i}}))?);
        lines.push(b'\n');
    }
    c.send_raw(&lines).await?;
    // Wait until the daemon has read them (the first answer), then stop it.
    let first = c.recv().await?.unwrap();
    let read_rest = async {
        let mut answered = vec![first];
        while let Ok(Some(r)) = c.recv().await {
            answered.push(r);
        }
        answered
    };
    let (repo, answered) = tokio::join!(d.stop(), read_rest);
    let repo = repo?;
    // Every answered publish is in the repository; the connection closed cleanly.
    let log = repo.git(&[
        "log",
        "--format=%(trailers:key=Message-Id,valueonly,separator=)",
        "refs/gatos/messages/s/head",
    ])?;
    for r in &answered {
        assert!(
            log.contains(r["result"]["ulid"].as_str().unwrap()),
            "acknowledged message missing: {r}"
        );
    }
    assert!(
        !repo.root().join("d.sock").exists(),
        "the socket is removed on clean shutdown"
    );
    repo.assert_fsck_strict()
}
