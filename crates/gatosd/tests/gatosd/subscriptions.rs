//! Subscriptions: events for writes by anyone, unsubscribe, and slow subscribers.

use std::time::Duration;

use gatos::messages::PublishOptions;
use gatos_testutil::TestResult;
use gatosd::limits::Limits;
use serde_json::json;

use crate::harness::{DEADLINE, Daemon};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_see_writes_from_other_processes_and_connections() -> TestResult {
    let d = Daemon::start().await?;
    let mut sub = d.client().await?;
    sub.ok("messages.publish", json!({"topic": "ev", "payload": "old"}))
        .await?;
    let s = sub.ok("messages.subscribe", json!({"topic": "ev"})).await?;
    let id = s["subscription"].clone();
    // Another connection.
    let mut other = d.client().await?;
    other
        .ok(
            "messages.publish",
            json!({"topic": "ev", "payload": "from-rpc"}),
        )
        .await?;
    let e = sub.notification("messages.event").await?;
    assert_eq!(e["params"]["subscription"], id);
    assert_eq!(e["params"]["message"]["payload"], "from-rpc");
    assert_eq!(e["params"]["message"]["seq"], 2);
    // Another writer on the same repository (standing for another process or a fetch).
    let writer = gatos::Gatos::open(d.repo.path(), gatos::OpenOptions::default())?;
    writer.messages().publish(
        &"ev".parse()?,
        json!("from-outside"),
        &PublishOptions::default(),
    )?;
    let e = sub.notification("messages.event").await?;
    assert_eq!(e["params"]["message"]["payload"], "from-outside");
    // Replay from the start.
    let all = sub
        .ok("messages.subscribe", json!({"topic": "ev", "since_seq": 0}))
        .await?;
    assert_eq!(all["since"], json!(null));
    let mut payloads = Vec::new();
    for _ in 0..3 {
        let e = sub.notification("messages.event").await?;
        if e["params"]["subscription"] == all["subscription"] {
            payloads.push(e["params"]["message"]["payload"].clone());
        } else {
            sub.pending.push(e);
        }
    }
    assert_eq!(
        payloads,
        vec![json!("old"), json!("from-rpc"), json!("from-outside")]
    );
    // Unsubscribe stops events; an unknown id is NotFound.
    assert_eq!(
        sub.ok("messages.unsubscribe", json!({"subscription": id}))
            .await?["unsubscribed"],
        true
    );
    let r = sub
        .call("messages.unsubscribe", json!({"subscription": id}))
        .await?;
    assert_eq!(r["error"]["data"]["code"], "NotFound");
    d.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_is_told_it_lagged_and_memory_stays_bounded() -> TestResult {
    let limits = Limits {
        outbox_bytes: 8 * 1024,
        lag_grace: Duration::from_millis(200),
        ..Limits::default()
    };
    let d = Daemon::start_with(limits, None).await?;
    let mut slow = d.client().await?;
    let s = slow
        .ok("messages.subscribe", json!({"topic": "flood"}))
        .await?;
    // The subscriber stops reading while 300 messages of ~1 KiB are published.
    let mut pub_client = d.client().await?;
    let body = "y".repeat(1000);
    let messages: Vec<_> = (0..300)
        .map(|i| json!({"payload": {"i": i, "body": body}}))
        .collect();
    pub_client
        .ok(
            "messages.publish_batch",
            json!({"topic": "flood", "messages": messages}),
        )
        .await?;
    // Wait until the daemon gave up on the subscription.
    let mut gone = false;
    for _ in 0..300 {
        if pub_client.ok("gatos.health", json!({})).await?["subscriptions"] == 0 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the lagging subscription was closed");
    // Now read: some events, then the lagged notice naming where to resume.
    let notice = slow.notification("messages.lagged").await?;
    assert_eq!(notice["params"]["subscription"], s["subscription"]);
    let events = slow
        .pending
        .iter()
        .filter(|v| v["method"] == "messages.event")
        .count();
    assert!(
        events < 300,
        "not everything was buffered ({events} events)"
    );
    let resume = notice["params"]["next_since"].clone();
    if events > 0 {
        let last = slow
            .pending
            .iter()
            .rev()
            .find(|v| v["method"] == "messages.event")
            .unwrap();
        assert_eq!(last["params"]["message"]["ulid"], resume);
    }
    // The connection is still usable, and a new subscription resumes from there.
    let again = slow
        .ok(
            "messages.subscribe",
            json!({"topic": "flood", "since": resume}),
        )
        .await?;
    assert_eq!(again["since"], resume);
    d.stop().await?;
    Ok(())
}

/// A subscription that starts before messages pruned from the topic is told so first
/// (`messages.gap`, as the HTTP stream's `gap` event), then gets what is left, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_over_pruned_messages_says_the_gap_first() -> TestResult {
    let d = Daemon::start().await?;
    let g = d.shared.gatos.clone();
    let topic: gatos_types::Topic = "g".parse()?;
    g.messages().configure(
        &topic,
        &gatos::messages::ConfigChange {
            max_messages: Some(3),
            ..Default::default()
        },
    )?;
    let mut c = d.client().await?;
    let mut sent = Vec::new();
    for i in 0..8 {
        let r = c
            .ok("messages.publish", json!({"topic": "g", "payload": i}))
            .await?;
        sent.push(r["ulid"].as_str().ok_or("no ulid")?.to_owned());
    }
    g.messages().prune(
        &topic,
        &gatos::messages::PruneOptions {
            older_than: Some(gatos_types::Dur::from_secs(0)),
            dry_run: false,
            force: true,
        },
    )?;
    let s = c
        .ok(
            "messages.subscribe",
            json!({"topic": "g", "since": sent[1]}),
        )
        .await?;
    // In order: the gap, then the messages after it.
    let gap = c.recv().await?.ok_or("closed")?;
    assert_eq!(gap["method"], "messages.gap", "{gap}");
    assert_eq!(
        gap["params"],
        json!({"subscription": s["subscription"], "from_seq": 3, "to_seq": 6}),
        "{gap}"
    );
    for want in &sent[6..] {
        let e = c.recv().await?.ok_or("closed")?;
        assert_eq!(e["method"], "messages.event", "{e}");
        assert_eq!(e["params"]["message"]["ulid"], json!(want), "{e}");
    }
    d.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_cannot_take_the_daemons_memory() -> TestResult {
    use std::io::Write as _;
    const CAP: usize = 4 << 20;
    let limits = Limits {
        outbox_bytes: 512 << 10,
        outbox_bytes_total: CAP,
        lag_grace: Duration::from_secs(120),
        ..Limits::default()
    };
    let d = Daemon::start_with(limits, None).await?;
    let mut c = d.client().await?;
    let body = "z".repeat(64 << 10);
    let messages: Vec<_> = (0..32)
        .map(|i| json!({"payload": {"i": i, "body": body}}))
        .collect();
    c.ok(
        "messages.publish_batch",
        json!({"topic": "big", "messages": messages}),
    )
    .await?;
    // Twelve connections that never read: half subscribe four times from the start, half
    // ask for four pages; each wants 8 MiB, the daemon may hold 4 MiB for all together.
    let mut slow = Vec::new();
    for k in 0..12 {
        let s = std::os::unix::net::UnixStream::connect(&d.socket)?;
        let mut lines = String::new();
        for i in 0..4 {
            let req = match k % 2 {
                0 => json!({"jsonrpc": "2.0", "id": i, "method": "messages.subscribe",
                            "params": {"topic": "big", "since_seq": 0}}),
                _ => json!({"jsonrpc": "2.0", "id": i, "method": "messages.read",
                            "params": {"topic": "big"}}),
            };
            lines.push_str(&req.to_string());
            lines.push('\n');
        }
        (&s).write_all(lines.as_bytes())?;
        slow.push(s);
    }
    // The connections holding the most are closed until the rest fit.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let open = c.ok("gatos.health", json!({})).await?["connections"]
            .as_u64()
            .unwrap_or(u64::MAX);
        if open <= 7 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {open} connections open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let held = d.shared.outboxes.held();
    assert!(held <= CAP, "{held} bytes held for clients, past {CAP}");
    // A client that reads is served as before, subscriptions included.
    let page = c
        .ok("messages.read", json!({"topic": "big", "limit": 4}))
        .await?;
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(4));
    let mut reader = d.anon_client().await?;
    reader
        .ok(
            "messages.subscribe",
            json!({"topic": "big", "since_seq": 0}),
        )
        .await?;
    for _ in 0..32 {
        reader.notification("messages.event").await?;
    }
    // Their connections gone, nothing stays counted.
    drop(slow);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while d.shared.outboxes.held() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} bytes still counted after every slow client left",
            d.shared.outboxes.held()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(reader);
    d.stop().await?;
    Ok(())
}
