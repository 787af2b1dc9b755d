//! The systems users would pick instead of gatos, driven by their own Rust clients with the
//! same payloads and the same concurrency (`scripts/bench.sh peers`, issue #21 point 6):
//! NATS JetStream (`async-nats`), Redis streams (`redis`) and a PostgreSQL job table
//! (`tokio-postgres`). Single operations are never pipelined: each client waits for the
//! answer to one before it sends the next. Each workload prints one JSON object like the
//! gatos workloads of `main.rs`, so the script compares them the same way.
//!
//! * `nats-publish <url> <n> <clients>`: acknowledged JetStream publishes, one at a time per
//!   client, into a fresh file-backed stream.
//! * `nats-batch <url> <n>`: n publishes sent without waiting for each acknowledgement (at
//!   most 4,000 outstanding), then every acknowledgement.
//! * `nats-read <url> <n>`: a fresh stream of n messages (untimed), then one pull consumer
//!   fetching it all in batches of 1,000.
//! * `redis-xadd <url> <n> <clients> <everysec|always>`: `XADD`s one at a time per client,
//!   with the AOF `appendfsync` set first.
//! * `redis-pipeline <url> <n>`: n `XADD`s in pipelines of 1,000.
//! * `redis-xrange <url> <n>`: a fresh stream of n entries (untimed), then `XRANGE` pages of
//!   1,000.
//! * `pg-insert <conninfo> <n>`: n jobs inserted one at a time (autocommit).
//! * `pg-claim <conninfo> <n> <workers> <none|spawn>`: n jobs inserted (untimed), then each
//!   worker claims the next with `FOR UPDATE SKIP LOCKED`, runs `true` when asked, and marks
//!   it done, until none is left.

use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::{Value, json};

use super::{R, payload, percentile};

const STREAM: &str = "GATOSBENCH";
const PAGE: usize = 1000;

fn arg<'a>(args: &'a [String], i: usize, what: &str) -> R<&'a str> {
    Ok(args
        .get(i)
        .ok_or_else(|| format!("{what} missing"))?
        .as_str())
}

fn num(args: &[String], i: usize, what: &str) -> R<u64> {
    Ok(arg(args, i, what)?.parse()?)
}

fn body(i: u64) -> Vec<u8> {
    payload(i).to_string().into_bytes()
}

fn summary(workload: &str, clients: u64, count: u64, secs: f64, mut lat: Vec<Duration>) -> Value {
    lat.sort();
    json!({"workload": workload, "clients": clients, "count": count, "seconds": secs,
           "rate": count as f64 / secs,
           "p50_us": percentile(&lat, 0.5), "p99_us": percentile(&lat, 0.99)})
}

fn runtime() -> R<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Runs one peer workload (`args[1]` names it) and prints its JSON line.
pub fn run(args: &[String]) -> R {
    let workload = arg(args, 1, "workload")?;
    let out = match workload {
        "nats-publish" | "nats-batch" | "nats-read" => runtime()?.block_on(nats(workload, args))?,
        "redis-xadd" => redis_xadd(args)?,
        "redis-pipeline" => redis_pipeline(args)?,
        "redis-xrange" => redis_xrange(args)?,
        "pg-insert" | "pg-claim" => runtime()?.block_on(postgres(workload, args))?,
        other => return Err(format!("unknown peer workload {other}").into()),
    };
    println!("{out}");
    Ok(())
}

// ---- NATS JetStream ------------------------------------------------------------------

async fn fresh_stream(
    js: &async_nats::jetstream::Context,
) -> R<async_nats::jetstream::stream::Stream> {
    use async_nats::jetstream::stream::{Config, StorageType};
    // A stream left by an earlier round may or may not exist; either way it goes.
    let _ = js.delete_stream(STREAM).await;
    Ok(js
        .create_stream(Config {
            name: STREAM.to_owned(),
            subjects: vec!["bench.>".to_owned()],
            storage: StorageType::File,
            ..Default::default()
        })
        .await?)
}

async fn nats(workload: &str, args: &[String]) -> R<Value> {
    let url = arg(args, 2, "url")?;
    let n = num(args, 3, "n")?;
    let client = async_nats::connect(url).await?;
    let js = async_nats::jetstream::new(client);
    let stream = fresh_stream(&js).await?;
    match workload {
        "nats-publish" => {
            let clients = num(args, 4, "clients")?;
            let start = Instant::now();
            let mut tasks = Vec::new();
            for k in 0..clients {
                // Each client is its own connection, as each gatosd client is.
                let js = async_nats::jetstream::new(async_nats::connect(url).await?);
                tasks.push(tokio::spawn(async move {
                    let mut lat = Vec::with_capacity(n as usize);
                    for i in 0..n {
                        let t = Instant::now();
                        js.publish("bench.t", body(k * n + i).into())
                            .await
                            .map_err(|e| e.to_string())?
                            .await
                            .map_err(|e| e.to_string())?;
                        lat.push(t.elapsed());
                    }
                    Ok::<_, String>(lat)
                }));
            }
            let mut lat = Vec::new();
            for t in tasks {
                lat.extend(t.await??);
            }
            let secs = start.elapsed().as_secs_f64();
            Ok(summary("nats-publish", clients, n * clients, secs, lat))
        }
        "nats-batch" => {
            let start = Instant::now();
            batch_fill(&js, n).await?;
            let secs = start.elapsed().as_secs_f64();
            Ok(summary("nats-batch", 1, n, secs, Vec::new()))
        }
        _ => {
            use async_nats::jetstream::consumer::{AckPolicy, pull};
            batch_fill(&js, n).await?;
            let consumer = stream
                .create_consumer(pull::Config {
                    ack_policy: AckPolicy::None,
                    ..Default::default()
                })
                .await?;
            let start = Instant::now();
            let mut count = 0u64;
            let mut bytes = 0usize;
            while count < n {
                let mut batch = consumer.fetch().max_messages(PAGE).messages().await?;
                let before = count;
                while let Some(m) = batch.next().await {
                    let m = m.map_err(|e| e.to_string())?;
                    // Parse as gatos's read does, so both deliver JSON values.
                    let v: Value = serde_json::from_slice(&m.payload)?;
                    bytes += v.to_string().len();
                    count += 1;
                }
                if count == before {
                    return Err(format!("the pull consumer stopped at {count} of {n}").into());
                }
            }
            let secs = start.elapsed().as_secs_f64();
            Ok(
                json!({"workload": "nats-read", "count": count, "seconds": secs,
                      "rate": count as f64 / secs, "payload_bytes": bytes}),
            )
        }
    }
}

/// Publishes n messages without waiting, keeping at most 4,000 acknowledgements
/// outstanding (async-nats lets 5,000 be in flight by default and then makes `publish` wait
/// for one to be collected: a larger window here would wait forever), then waits for the
/// rest.
async fn batch_fill(js: &async_nats::jetstream::Context, n: u64) -> R {
    let mut pending = std::collections::VecDeque::new();
    for i in 0..n {
        pending.push_back(js.publish("bench.t", body(i).into()).await?);
        if pending.len() >= 4_000
            && let Some(ack) = pending.pop_front()
        {
            ack.await?;
        }
    }
    for ack in pending {
        ack.await?;
    }
    Ok(())
}

// ---- Redis streams -------------------------------------------------------------------

fn redis_con(url: &str) -> R<redis::Connection> {
    Ok(redis::Client::open(url)?.get_connection()?)
}

fn redis_xadd(args: &[String]) -> R<Value> {
    let url = arg(args, 2, "url")?.to_owned();
    let n = num(args, 3, "n")?;
    let clients = num(args, 4, "clients")?;
    let fsync = arg(args, 5, "appendfsync")?;
    let mut con = redis_con(&url)?;
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("appendfsync")
        .arg(fsync)
        .query::<()>(&mut con)?;
    redis::cmd("DEL").arg("s").query::<()>(&mut con)?;
    let start = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|k| {
            let url = url.clone();
            std::thread::spawn(move || -> Result<Vec<Duration>, String> {
                let mut con = redis_con(&url).map_err(|e| e.to_string())?;
                let mut lat = Vec::with_capacity(n as usize);
                for i in 0..n {
                    let t = Instant::now();
                    redis::cmd("XADD")
                        .arg("s")
                        .arg("*")
                        .arg("payload")
                        .arg(body(k * n + i))
                        .query::<String>(&mut con)
                        .map_err(|e| e.to_string())?;
                    lat.push(t.elapsed());
                }
                Ok(lat)
            })
        })
        .collect();
    let mut lat = Vec::new();
    for h in handles {
        lat.extend(h.join().map_err(|_| "client thread panicked")??);
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(summary(
        &format!("redis-xadd {fsync}"),
        clients,
        n * clients,
        secs,
        lat,
    ))
}

fn redis_fill(con: &mut redis::Connection, n: u64) -> R {
    redis::cmd("DEL").arg("s").query::<()>(con)?;
    let mut i = 0;
    while i < n {
        let mut p = redis::pipe();
        for j in i..(i + PAGE as u64).min(n) {
            p.cmd("XADD")
                .arg("s")
                .arg("*")
                .arg("payload")
                .arg(body(j))
                .ignore();
        }
        p.query::<()>(con)?;
        i += PAGE as u64;
    }
    Ok(())
}

fn redis_pipeline(args: &[String]) -> R<Value> {
    let mut con = redis_con(arg(args, 2, "url")?)?;
    let n = num(args, 3, "n")?;
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("appendfsync")
        .arg("everysec")
        .query::<()>(&mut con)?;
    let start = Instant::now();
    redis_fill(&mut con, n)?;
    let secs = start.elapsed().as_secs_f64();
    Ok(summary("redis-pipeline", 1, n, secs, Vec::new()))
}

fn redis_xrange(args: &[String]) -> R<Value> {
    use redis::streams::StreamRangeReply;
    let mut con = redis_con(arg(args, 2, "url")?)?;
    let n = num(args, 3, "n")?;
    redis_fill(&mut con, n)?;
    let start = Instant::now();
    let mut from = "-".to_owned();
    let mut count = 0u64;
    let mut bytes = 0usize;
    loop {
        let page: StreamRangeReply = redis::cmd("XRANGE")
            .arg("s")
            .arg(&from)
            .arg("+")
            .arg("COUNT")
            .arg(PAGE)
            .query(&mut con)?;
        for id in &page.ids {
            let raw: Vec<u8> = id.get("payload").ok_or("an entry without payload")?;
            let v: Value = serde_json::from_slice(&raw)?;
            bytes += v.to_string().len();
            count += 1;
        }
        match page.ids.last() {
            Some(last) if page.ids.len() == PAGE => from = format!("({}", last.id),
            _ => break,
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if count != n {
        return Err(format!("XRANGE returned {count} of {n}").into());
    }
    Ok(
        json!({"workload": "redis-xrange", "count": count, "seconds": secs,
              "rate": count as f64 / secs, "payload_bytes": bytes}),
    )
}

// ---- PostgreSQL job table ------------------------------------------------------------

async fn pg_connect(conninfo: &str) -> R<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls).await?;
    // A broken connection shows as the error of the client's next query.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The job as gatos's bench enqueues it (`spec` in main.rs), as a row.
fn job_row(i: u64) -> String {
    json!({"command": ["true"], "labels": {"n": i.to_string()}}).to_string()
}

const SCHEMA: &str = "
DROP TABLE IF EXISTS jobs;
CREATE TABLE jobs (
  id bigserial PRIMARY KEY,
  queue text NOT NULL DEFAULT 'default',
  state text NOT NULL DEFAULT 'pending',
  spec jsonb NOT NULL,
  worker text,
  claimed_at timestamptz,
  finished_at timestamptz,
  exit_code int,
  enqueued_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jobs_pending ON jobs (queue, id) WHERE state = 'pending';
";

const INSERT: &str = "INSERT INTO jobs (spec) VALUES (($1::text)::jsonb) RETURNING id";
const CLAIM: &str = "UPDATE jobs SET state = 'running', worker = $1, claimed_at = now()
  WHERE id = (SELECT id FROM jobs WHERE state = 'pending' AND queue = 'default'
              ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1)
  RETURNING id, spec";
const DONE: &str = "UPDATE jobs SET state = 'succeeded', finished_at = now(), exit_code = $2
  WHERE id = $1 AND worker = $3";

async fn postgres(workload: &str, args: &[String]) -> R<Value> {
    let conninfo = arg(args, 2, "conninfo")?.to_owned();
    let n = num(args, 3, "n")?;
    let client = pg_connect(&conninfo).await?;
    client.batch_execute(SCHEMA).await?;
    let insert = client.prepare(INSERT).await?;
    if workload == "pg-insert" {
        let mut lat = Vec::with_capacity(n as usize);
        let start = Instant::now();
        for i in 0..n {
            let t = Instant::now();
            client.query_one(&insert, &[&job_row(i)]).await?;
            lat.push(t.elapsed());
        }
        let secs = start.elapsed().as_secs_f64();
        return Ok(summary("pg-insert", 1, n, secs, lat));
    }
    let workers = num(args, 4, "workers")?;
    let spawn = arg(args, 5, "none|spawn")? == "spawn";
    for i in 0..n {
        client.query_one(&insert, &[&job_row(i)]).await?;
    }
    client.batch_execute("VACUUM ANALYZE jobs").await?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let c = pg_connect(&conninfo).await?;
        tasks.push(tokio::spawn(async move {
            let run = async {
                let claim = c.prepare(CLAIM).await?;
                let done = c.prepare(DONE).await?;
                let me = format!("w{w}");
                let mut lat = Vec::new();
                loop {
                    let t = Instant::now();
                    let Some(row) = c.query_opt(&claim, &[&me]).await? else {
                        break;
                    };
                    let id: i64 = row.get(0);
                    let code = if spawn {
                        let status = tokio::process::Command::new("true").status().await?;
                        status.code().unwrap_or(-1)
                    } else {
                        0
                    };
                    c.execute(&done, &[&id, &code, &me]).await?;
                    lat.push(t.elapsed());
                }
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(lat)
            };
            run.await.map_err(|e| e.to_string())
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let secs = start.elapsed().as_secs_f64();
    let left: i64 = client
        .query_one("SELECT count(*) FROM jobs WHERE state <> 'succeeded'", &[])
        .await?
        .get(0);
    if left != 0 {
        return Err(format!("{left} jobs left unfinished").into());
    }
    Ok(summary(
        if spawn { "pg-claim-spawn" } else { "pg-claim" },
        workers,
        n,
        secs,
        lat,
    ))
}
