//! Queue admission over RPC (ADR 0027): `QueueFull` as -32000 with the refusal's facts in
//! `error.data`, from `jobs.enqueue` and `manifests.run`; racing requests on several
//! connections; `gatos.health`'s `queues`.

use ed25519_dalek::SigningKey;
use gatos::jobs::queues::{self, Change};
use gatos_testutil::TestResult;
use gatos_types::KeyId;
use serde_json::{Value, json};

use crate::harness::Daemon;

fn limit(g: &gatos::Gatos, queue: &str, n: u64) -> TestResult {
    queues::change(
        g,
        &queue.parse()?,
        &Change {
            max_pending: Some(Some(n)),
            ..Change::default()
        },
    )?;
    Ok(())
}

fn depth(health: &Value, queue: &str) -> Value {
    health["queues"]
        .as_array()
        .and_then(|qs| qs.iter().find(|q| q["queue"] == queue))
        .cloned()
        .unwrap_or(Value::Null)
}

fn enqueue(queue: &str) -> Value {
    json!({"command": ["true"], "queue": queue})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueue_over_the_limit_is_queue_full_with_its_facts_and_health_shows_the_depth()
-> TestResult {
    let d = Daemon::start().await?;
    let g = gatos::Gatos::open(d.repo.path(), gatos::OpenOptions::default())?;
    limit(&g, "build", 2)?;
    let mut c = d.client().await?;
    let h = c.ok("gatos.health", json!({})).await?;
    assert_eq!(
        depth(&h, "build"),
        json!({"queue": "build", "pending": 0, "running": 0, "max_pending": 2})
    );
    c.ok("jobs.enqueue", enqueue("build")).await?;
    c.ok("jobs.enqueue", enqueue("build")).await?;
    c.ok("jobs.enqueue", enqueue("default")).await?;

    let r = c.call("jobs.enqueue", enqueue("build")).await?;
    let e = &r["error"];
    assert_eq!(e["code"], -32000, "{r}");
    assert_eq!(
        e["data"],
        json!({"code": "QueueFull", "status": 429, "queue": "build", "pending": 2,
               "max_pending": 2, "retry_after_seconds": 30}),
        "{r}"
    );
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .starts_with("queue 'build' is full"),
        "{r}"
    );
    // manifests.run enqueues through the same gate.
    c.ok(
        "manifests.put",
        json!({"name": "nightly", "manifest": {"command": ["true"], "queue": "build"}}),
    )
    .await?;
    let r = c.call("manifests.run", json!({"name": "nightly"})).await?;
    assert_eq!(r["error"]["data"]["code"], "QueueFull", "{r}");
    let listed = c.ok("jobs.list", json!({"queue": "build"})).await?;
    assert_eq!(
        listed["jobs"].as_array().map(Vec::len),
        Some(2),
        "nothing was written: {listed}"
    );
    let h = c.ok("gatos.health", json!({})).await?;
    assert_eq!(
        depth(&h, "build"),
        json!({"queue": "build", "pending": 2, "running": 0, "max_pending": 2})
    );
    assert_eq!(
        depth(&h, "default"),
        json!({"queue": "default", "pending": 1, "running": 0, "max_pending": null})
    );

    // A client claims one: a slot opens.
    let key = SigningKey::from_bytes(&[5u8; 32]);
    let key_id = KeyId::from_bytes(key.verifying_key().to_bytes()).to_string();
    g.keys().trust(&key_id.parse()?)?;
    let cl = c
        .ok(
            "jobs.claim",
            json!({"worker": "w", "worker_key": key_id, "queues": ["build"], "lease": "60s"}),
        )
        .await?;
    assert!(cl["id"].is_string(), "{cl}");
    let h = c.ok("gatos.health", json!({})).await?;
    assert_eq!(depth(&h, "build")["pending"], 1);
    c.ok("manifests.run", json!({"name": "nightly"})).await?;
    let r = c.call("jobs.enqueue", enqueue("build")).await?;
    assert_eq!(r["error"]["data"]["code"], "QueueFull", "{r}");
    d.stop().await?.assert_fsck_strict()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_racing_on_many_connections_land_one_job_under_a_limit_of_one() -> TestResult {
    const RACERS: usize = 8;
    let d = Daemon::start().await?;
    let g = gatos::Gatos::open(d.repo.path(), gatos::OpenOptions::default())?;
    limit(&g, "race", 1)?;
    let mut clients = Vec::new();
    for _ in 0..RACERS {
        clients.push(d.client().await?);
    }
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                c.call("jobs.enqueue", enqueue("race"))
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .collect();
    let mut landed = 0;
    for t in tasks {
        let r = t.await??;
        if r.get("result").is_some() {
            landed += 1;
        } else {
            assert_eq!(r["error"]["data"]["code"], "QueueFull", "{r}");
        }
    }
    assert_eq!(landed, 1);
    let mut c = d.client().await?;
    let listed = c.ok("jobs.list", json!({"queue": "race"})).await?;
    assert_eq!(listed["jobs"].as_array().map(Vec::len), Some(1));
    d.stop().await?.assert_fsck_strict()?;
    Ok(())
}
