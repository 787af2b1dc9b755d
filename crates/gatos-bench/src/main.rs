//! `gatos-bench`: in-process measurements for `scripts/bench.sh`. Prints one JSON object.
//!
//! Usage: `gatos-bench <workload> <repo> [args]`, workloads:
//! * `publish <repo> <topic> <n>`: one publish (one CAS) per message; rate and latencies.
//! * `batch <repo> <topic> <n> <chunk>`: one batch publish in chunks.
//! * `scan <repo> <topic>`: read the whole topic, oldest first; rate and peak RssAnon.
//! * `follow <repo> <topic>`: follow from the start until caught up; peak RssAnon.
//! * `pages <repo> <topic> <page>`: read the topic page by page through `--since` cursors,
//!   with a fresh repository handle per page (a new process without its start-up).
//! * `auto <repo> <topic> <n> <git-gatos>`: n single publishes with automatic maintenance
//!   started as the CLI starts it.
//! * `rpc <socket> <topic> <n> <clients> [token-file]`: each of `clients` threads
//!   authenticates with the token in `token-file` (default: the socket's directory's
//!   `gatos/gatosd/token`, for a socket in the git directory), then publishes n messages
//!   over the daemon's Unix socket, one request at a time; rate and latencies.
//! * `enqueue <repo> <n>`: n jobs enqueued one by one; rate and latencies.
//! * `jobs-fill <repo> <n>`: n jobs enqueued, claimed and finished with a signed proof (to
//!   give a repository a history of finished jobs).
//! * `claim <repo> <n>`: n jobs enqueued (untimed), then n claims of the next job, each
//!   followed by an untimed finish; claim latencies and the pairs' rate. With
//!   `GATOS_BENCH_COLD=1` the claims go through a handle of their own and each finish checks
//!   its proof, as gatosd's do (`"cold": true` in the row).
//! * `claim-compare <n> <rounds> <repo>...`: as `claim` in each repository, interleaved in
//!   rounds (n / rounds claims per repository per round) so that every repository sees the
//!   same disk conditions; latencies per repository.
//! * `calls <rpc|http> <publish|enqueue> <endpoint> <token-file> <n> <clients> <topic>`,
//!   `sse <addr> <token-file> <topic> <subscribers> <n> <rate>`,
//!   `idle-sse <addr> <token-file> <topic> <n> <gatosd-pid>`, `get <addr> <token> <path>
//!   <rounds>`, `mcp <gatosd> <repo> <socket> <token-file> <topic> <n>`: gatosd's faces
//!   compared (see [`wire`]).
//! * `rpc-claim <socket> <token-file> <repo> <n> <clients>`: claim + complete over the
//!   socket with a signed proof and no process (see [`wire::rpc_claim`]).
//! * `fsops <dir> <loose|loose-trim|pack|journal|claim> <n> <group or workers> <fsync:0|1>`: the file-system
//!   floor of each write path of ADR 0045 (see [`fsops`]).
//! * `nats-*`, `redis-*`, `pg-*`: the same workloads on NATS JetStream, Redis and
//!   PostgreSQL (`scripts/bench.sh peers`; see [`peers`]).
#![allow(clippy::print_stdout, missing_docs, reason = "benchmark driver")]

use std::path::Path;
use std::time::{Duration, Instant};

use gatos::messages::{BatchItem, BatchOptions, Cursor, PublishOptions, ReadOptions};
use gatos::{Gatos, OpenOptions};
use serde_json::json;

mod fsops;
mod graphql;
mod peers;
mod wire;

type R<T = ()> = Result<T, Box<dyn std::error::Error>>;

fn rss_anon_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("RssAnon:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Writes one JSON-RPC line in a single `write` call, as the peers' clients write each
/// request. (`writeln!(stream, "{value}")` on an unbuffered stream sends each piece that
/// `Display` makes, often a byte, as its own system call, and gatosd wakes for each.)
fn send_line(w: &mut impl std::io::Write, value: &serde_json::Value) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(value)?;
    bytes.push(b'\n');
    w.write_all(&bytes)?;
    w.flush()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

fn payload(i: u64) -> serde_json::Value {
    json!({"n": i, "kind": "bench", "body": "the quick brown fox jumps over the lazy dog", "tags": ["a", "b", "c"]})
}

/// mimalloc rather than glibc's malloc: a publish allocates and frees many small buffers,
/// and glibc's allocator was 15–17% of a batch's time (ADR 0046, session 7).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> R {
    let args: Vec<String> = std::env::args().collect();
    let workload = args.get(1).map(String::as_str).unwrap_or("");
    if workload == "rpc" {
        return rpc(&args);
    }
    match workload {
        "calls" => return wire::calls(&args),
        "sse" => return wire::sse(&args),
        "idle-sse" => return wire::idle_sse(&args),
        "get" => return wire::get(&args),
        "mcp" => return wire::mcp(&args),
        "graphql" => return graphql::run(&args),
        "rpc-claim" => return wire::rpc_claim(&args),
        "fsops" => return fsops::run(&args),
        w if w.starts_with("nats-") || w.starts_with("redis-") || w.starts_with("pg-") => {
            return peers::run(&args);
        }
        _ => {}
    }
    if workload == "claim-compare" {
        return claim_compare(&args);
    }
    if workload == "sync-compare" {
        return sync_compare(&args);
    }
    if matches!(
        workload,
        "enqueue" | "enqueue-unsigned" | "jobs-fill" | "claim"
    ) {
        return jobs(&args);
    }
    let repo = Path::new(args.get(2).ok_or("repo missing")?);
    let topic: gatos_types::Topic = args.get(3).ok_or("topic missing")?.parse()?;
    let g = Gatos::open(repo, OpenOptions::default())?;
    // As a long-lived process would: its journal flusher's work is part of the run.
    g.start_journal_flusher();
    let out = match workload {
        "publish" => {
            let n: u64 = args.get(4).ok_or("n missing")?.parse()?;
            let mut lat = Vec::with_capacity(n as usize);
            let start = Instant::now();
            for i in 0..n {
                let t = Instant::now();
                g.messages()
                    .publish(&topic, payload(i), &PublishOptions::default())?;
                lat.push(t.elapsed());
            }
            let secs = start.elapsed().as_secs_f64();
            lat.sort();
            json!({"workload": "publish", "durable": g.is_durable(), "count": n, "seconds": secs,
                   "rate": n as f64 / secs, "p50_us": percentile(&lat, 0.5), "p99_us": percentile(&lat, 0.99)})
        }
        "threads" => {
            // n publishes from each of k threads sharing one handle (group commit).
            let n: u64 = args.get(4).ok_or("n missing")?.parse()?;
            let k: u64 = args.get(5).ok_or("threads missing")?.parse()?;
            let start = Instant::now();
            let lat: Vec<Duration> = std::thread::scope(|sc| {
                let hs: Vec<_> = (0..k)
                    .map(|t| {
                        let g = g.clone();
                        let topic = topic.clone();
                        sc.spawn(move || {
                            let mut lat = Vec::new();
                            for i in 0..n {
                                let s = Instant::now();
                                g.messages()
                                    .publish(&topic, payload(t * n + i), &PublishOptions::default())
                                    .map_err(|e| e.to_string())?;
                                lat.push(s.elapsed());
                            }
                            Ok::<_, String>(lat)
                        })
                    })
                    .collect();
                hs.into_iter()
                    .flat_map(|h| h.join().ok().and_then(Result::ok).unwrap_or_default())
                    .collect()
            });
            let secs = start.elapsed().as_secs_f64();
            let mut lat = lat;
            lat.sort();
            json!({"workload": "threads", "threads": k, "count": lat.len(), "seconds": secs,
                   "rate": lat.len() as f64 / secs, "p50_us": percentile(&lat, 0.5), "p99_us": percentile(&lat, 0.99)})
        }
        "batch" => {
            let n: u64 = args.get(4).ok_or("n missing")?.parse()?;
            let chunk: usize = args.get(5).ok_or("chunk missing")?.parse()?;
            let start = Instant::now();
            let items = (0..n).map(|i| {
                Ok(BatchItem {
                    payload: payload(i),
                    headers: None,
                })
            });
            let landed = g.messages().publish_batch(
                &topic,
                items,
                &BatchOptions {
                    chunk,
                    expect_last_seq: None,
                },
                |_| Ok(()),
            )?;
            let secs = start.elapsed().as_secs_f64();
            json!({"workload": "batch", "count": landed, "chunk": chunk, "seconds": secs, "rate": landed as f64 / secs,
                   "rss_anon_kib": rss_anon_kib()})
        }
        "scan" | "follow" => {
            let base = rss_anon_kib();
            let mut peak = base;
            let mut count = 0u64;
            let mut bytes = 0usize;
            let start = Instant::now();
            if workload == "scan" {
                g.messages().scan(&topic, &Cursor::Start, None, |m| {
                    count += 1;
                    bytes += m.payload.get().len();
                    if count.is_multiple_of(4096) {
                        peak = peak.max(rss_anon_kib());
                    }
                    Ok(true)
                })?;
            } else {
                let mut f = g.messages().follow(&topic, Cursor::Seq(0))?;
                loop {
                    let (n, _) = f.poll(1000, |m| {
                        count += 1;
                        bytes += m.payload.get().len();
                        Ok(true)
                    })?;
                    peak = peak.max(rss_anon_kib());
                    if n == 0 {
                        break;
                    }
                }
            }
            let secs = start.elapsed().as_secs_f64();
            json!({"workload": workload, "count": count, "seconds": secs, "rate": count as f64 / secs,
                   "rss_anon_kib_before": base, "rss_anon_kib_peak": peak.max(rss_anon_kib()), "payload_bytes": bytes})
        }
        "pages" => {
            let page: u64 = args.get(4).ok_or("page missing")?.parse()?;
            let mut since = Cursor::Start;
            let mut pages = 0u64;
            let mut count = 0u64;
            let mut times = Vec::new();
            loop {
                let t = Instant::now();
                let fresh = Gatos::open(repo, OpenOptions::default())?;
                let p = fresh
                    .messages()
                    .read(&topic, &ReadOptions { since, limit: page })?;
                times.push(t.elapsed());
                pages += 1;
                count += p.messages.len() as u64;
                if p.end {
                    break;
                }
                since = Cursor::Ulid(p.next_since.ok_or("no cursor")?);
            }
            let total: f64 = times.iter().map(Duration::as_secs_f64).sum();
            let first = times.first().map_or(0.0, Duration::as_secs_f64);
            let last = times.iter().rev().nth(1).map_or(0.0, Duration::as_secs_f64);
            json!({"workload": "pages", "pages": pages, "count": count, "seconds": total,
                   "first_page_ms": first * 1e3, "last_full_page_ms": last * 1e3})
        }
        "auto" => {
            let n: u64 = args.get(4).ok_or("n missing")?.parse()?;
            let exe = args.get(5).ok_or("git-gatos path missing")?.clone();
            g.set_maintenance_hook(Some(std::sync::Arc::new(move |gatos: &Gatos| {
                let _ = std::process::Command::new(&exe)
                    .args(["maintenance", "--auto", "--quiet"])
                    .env("GIT_DIR", gatos.git_dir())
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn();
            })));
            let start = Instant::now();
            for i in 0..n {
                g.messages()
                    .publish(&topic, payload(i), &PublishOptions::default())?;
            }
            let secs = start.elapsed().as_secs_f64();
            json!({"workload": "auto", "count": n, "seconds": secs, "rate": n as f64 / secs})
        }
        other => return Err(format!("unknown workload {other:?}").into()),
    };
    println!("{out}");
    Ok(())
}

fn rpc(args: &[String]) -> R {
    let socket = args.get(2).ok_or("socket missing")?;
    let topic = args.get(3).ok_or("topic missing")?;
    let n = args.get(4).ok_or("n missing")?;
    let clients = args.get(5).ok_or("clients missing")?;
    // Publishing writes: on the Unix socket it needs the daemon's token (ADR 0023).
    let token_file = match args.get(6) {
        Some(f) => f.clone(),
        None => std::path::Path::new(socket)
            .parent()
            .ok_or("socket has no directory")?
            .join("gatosd/token")
            .to_string_lossy()
            .into_owned(),
    };
    // The same clients as `calls rpc publish`.
    let call: Vec<String> = ["gatos-bench", "calls", "rpc", "publish"]
        .into_iter()
        .map(str::to_owned)
        .chain([
            socket.clone(),
            token_file,
            n.clone(),
            clients.clone(),
            topic.clone(),
        ])
        .collect();
    wire::calls(&call)
}

fn spec(i: u64) -> Result<gatos_types::jobs::JobSpec, gatos::Error> {
    let input = gatos::jobs::manifest::from_value(
        json!({"command": ["true"], "labels": {"n": i.to_string()}}),
    )?;
    gatos::jobs::manifest::normalize(input, gatos_types::Timestamp::from_millis(0))
}

fn claimer(g: &Gatos) -> Result<gatos::jobs::ClaimOptions, String> {
    Ok(gatos::jobs::ClaimOptions {
        worker: "bench".parse().map_err(|e| format!("worker id: {e}"))?,
        worker_key: g.keys().current(),
        queues: Vec::new(),
        caps: Vec::new(),
        lease: gatos_types::Dur::from_secs(60),
        can_resolve: None,
        allow_untrusted_enqueuers: false,
    })
}

/// What a proof says of a no-op run that exited 0 with no output.
fn noop_run<'a>(
    started_at: gatos_types::Timestamp,
    finished_at: gatos_types::Timestamp,
) -> gatos::proofs::Attempt<'a> {
    gatos::proofs::Attempt {
        started_at,
        finished_at,
        outcome: gatos_types::jobs::Outcome::Succeeded,
        exit_code: Some(0),
        stdout: b"",
        stdout_truncated: false,
        stderr: b"",
        stderr_truncated: false,
        outputs: &[],
        runner: json!({"name": "gatos-bench"}),
    }
}

/// A no-op run's finish with its signed proof.
fn noop_finish(
    g: &Gatos,
    key: &ed25519_dalek::SigningKey,
    lease: &gatos::jobs::Lease,
) -> Result<gatos::jobs::Finish, Box<dyn std::error::Error>> {
    use gatos_types::jobs::Outcome;
    let poe = gatos::proofs::attest(key, lease, &noop_run(lease.claimed_at, g.now()))?;
    Ok(gatos::jobs::Finish {
        outcome: Outcome::Succeeded,
        exit_code: Some(0),
        signal: None,
        stdout: Vec::new(),
        stderr: Vec::new(),
        outputs: Vec::new(),
        poe: Some(poe),
    })
}

/// Finishes a claimed job as a worker does (signed proof of a no-op run).
fn finish(g: &Gatos, key: &ed25519_dalek::SigningKey, lease: &gatos::jobs::Lease) -> R {
    g.jobs().finish(lease, &noop_finish(g, key, lease)?)?;
    Ok(())
}

/// The same, with the proof checked as gatosd checks a worker's (`finish_verified`).
fn finish_checked(g: &Gatos, key: &ed25519_dalek::SigningKey, lease: &gatos::jobs::Lease) -> R {
    g.jobs()
        .finish_verified(lease, &noop_finish(g, key, lease)?)?;
    Ok(())
}

fn jobs(args: &[String]) -> R {
    let workload = args[1].as_str();
    let repo = Path::new(args.get(2).ok_or("repo missing")?);
    let n: u64 = args.get(3).ok_or("n missing")?.parse()?;
    let g = Gatos::open(repo, OpenOptions::default())?;
    g.keys().init(false)?;
    let key = g.keys().signing_key()?.ok_or("no key")?;
    let opts = claimer(&g)?;
    if workload == "enqueue-unsigned" {
        // The same enqueues without a signing key: the difference is the cost of the
        // enqueue envelope (ADR 0019).
        std::fs::remove_file(g.keys().signing_key_path())?;
    }
    let out = match workload {
        "enqueue" | "enqueue-unsigned" => {
            // The signature alone, over a typical statement.
            let st = gatos::jobs::enqueuer::Statement {
                job: gatos_types::Ulid::from_parts(1, 1),
                content_id: gatos_types::Digest::of(b"x"),
                queue: gatos_types::Queue::default_queue(),
                priority: 0,
                enqueuer: gatos::jobs::enqueuer::Enqueuer {
                    key: gatos_types::KeyId::from_bytes(key.verifying_key().to_bytes()),
                    actor: "cli:bench".to_owned(),
                },
                enqueued_at: g.now(),
            };
            let t = Instant::now();
            for _ in 0..1000 {
                gatos::jobs::enqueuer::sign(&key, &st)?;
            }
            let sign_us = t.elapsed().as_secs_f64() * 1e6 / 1000.0;
            // As a long-lived process (gatosd) would: the flusher runs, so enqueues are
            // journaled (ADR 0046) and its materializations are part of the run.
            g.start_journal_flusher();
            let mut lat = Vec::with_capacity(n as usize);
            let start = Instant::now();
            for i in 0..n {
                let t = Instant::now();
                g.jobs().enqueue(spec(i)?)?;
                lat.push(t.elapsed());
            }
            let secs = start.elapsed().as_secs_f64();
            // What is still in the journal at the end becomes refs too: the rate with that
            // last materialization counted, beside the acknowledged rate.
            g.flush_journals()?;
            let all = start.elapsed().as_secs_f64();
            lat.sort();
            json!({"workload": workload, "count": n, "seconds": secs, "rate": n as f64 / secs,
                   "seconds_materialized": all, "rate_materialized": n as f64 / all,
                   "p50_us": percentile(&lat, 0.5), "p99_us": percentile(&lat, 0.99),
                   "sign_us": sign_us})
        }
        "jobs-fill" => {
            let start = Instant::now();
            for i in 0..n {
                g.jobs().enqueue(spec(i)?)?;
                let lease = g.jobs().claim_next(&opts)?.ok_or("nothing to claim")?;
                finish(&g, &key, &lease)?;
            }
            let secs = start.elapsed().as_secs_f64();
            json!({"workload": "jobs-fill", "count": n, "seconds": secs, "rate": n as f64 / secs})
        }
        _ => {
            for i in 0..n {
                g.jobs().enqueue(spec(i)?)?;
            }
            // `GATOS_BENCH_COLD=1`: claimed through a handle of its own, as gatosd claims
            // jobs another process enqueued (none of the enqueuer's caches), and finished
            // with the proof checked, as gatosd does: what is left between this rate and
            // `rpc-claim`'s is the daemon's own work.
            let cold = std::env::var("GATOS_BENCH_COLD").is_ok_and(|v| v == "1");
            let g = if cold {
                Gatos::open(repo, OpenOptions::default())?
            } else {
                g
            };
            let mut lat = Vec::with_capacity(n as usize);
            let start = Instant::now();
            for _ in 0..n {
                let t = Instant::now();
                let lease = g.jobs().claim_next(&opts)?.ok_or("nothing to claim")?;
                lat.push(t.elapsed());
                if cold {
                    finish_checked(&g, &key, &lease)?;
                } else {
                    finish(&g, &key, &lease)?;
                }
            }
            // Claim + complete in one process, no daemon: the rate beside gatosd's
            // (`rpc-claim`); with `cold`, what is left between the two is the daemon's share.
            let secs = start.elapsed().as_secs_f64();
            lat.sort();
            let mean = lat.iter().map(Duration::as_secs_f64).sum::<f64>() / n as f64 * 1e6;
            json!({"workload": "claim", "cold": cold, "count": n, "mean_us": mean,
                   "p50_us": percentile(&lat, 0.5), "p99_us": percentile(&lat, 0.99),
                   "pairs_seconds": secs, "pairs_rate": n as f64 / secs})
        }
    };
    println!("{out}");
    Ok(())
}

fn claim_compare(args: &[String]) -> R {
    let n: u64 = args.get(2).ok_or("n missing")?.parse()?;
    let rounds: u64 = args.get(3).ok_or("rounds missing")?.parse()?;
    let repos: Vec<&String> = args.iter().skip(4).collect();
    let mut setups = Vec::new();
    for r in &repos {
        let g = Gatos::open(Path::new(r.as_str()), OpenOptions::default())?;
        g.keys().init(false)?;
        let key = g.keys().signing_key()?.ok_or("no key")?;
        for i in 0..n {
            g.jobs().enqueue(spec(i)?)?;
        }
        let opts = claimer(&g)?;
        setups.push((g, key, opts, Vec::with_capacity(n as usize)));
    }
    let per = (n / rounds.max(1)).max(1);
    for _ in 0..rounds {
        for (g, key, opts, lat) in &mut setups {
            for _ in 0..per {
                let t = Instant::now();
                let lease = g.jobs().claim_next(opts)?.ok_or("nothing to claim")?;
                lat.push(t.elapsed());
                finish(g, key, &lease)?;
            }
        }
    }
    let mut out = Vec::new();
    for ((_, _, _, mut lat), r) in setups.into_iter().zip(&repos) {
        lat.sort();
        let mean = lat.iter().map(Duration::as_secs_f64).sum::<f64>() / lat.len() as f64 * 1e6;
        out.push(json!({"repo": r, "count": lat.len(), "mean_us": mean,
                        "p50_us": percentile(&lat, 0.5), "p99_us": percentile(&lat, 0.99)}));
    }
    println!("{}", json!({"workload": "claim-compare", "repos": out}));
    Ok(())
}

/// `sync-compare ROUNDS NODE…`: each node syncs with its `origin` (a hub); interleaved in
/// rounds, times a sync with nothing new and a claim through the hub (fetch of the job's
/// refs and an atomic push with a lease), after a sync that brought the job there.
fn sync_compare(args: &[String]) -> R {
    let rounds: u64 = args.get(2).ok_or("rounds missing")?.parse()?;
    let nodes: Vec<&String> = args.iter().skip(3).collect();
    let sync = |g: &Gatos| -> R {
        g.sync(&gatos::sync::SyncOptions::default())?;
        Ok(())
    };
    let mut setups = Vec::new();
    for n in &nodes {
        let g = Gatos::open(Path::new(n.as_str()), OpenOptions::default())?;
        g.keys().init(false)?;
        let key = g.keys().signing_key()?.ok_or("no key")?;
        sync(&g)?;
        setups.push((g, key, Vec::new(), Vec::new()));
    }
    for i in 0..rounds {
        for (g, key, noop, claim) in &mut setups {
            let t = Instant::now();
            sync(g)?;
            noop.push(t.elapsed());
            let id = g.jobs().enqueue(spec(i)?)?.id;
            sync(g)?;
            g.set_job_arbiter(Some("origin"))?;
            let t = Instant::now();
            let lease = g.jobs().claim(id, &claimer(g)?)?;
            claim.push(t.elapsed());
            finish(g, key, &lease)?;
            g.set_job_arbiter(None)?;
        }
    }
    let mut out = Vec::new();
    for ((_, _, mut noop, mut claim), n) in setups.into_iter().zip(&nodes) {
        noop.sort();
        claim.sort();
        let mean = |v: &[Duration]| {
            v.iter().map(Duration::as_secs_f64).sum::<f64>() / v.len() as f64 * 1e3
        };
        out.push(json!({"node": n, "rounds": rounds,
            "noop_sync_ms": {"mean": mean(&noop), "p50": percentile(&noop, 0.5) / 1e3},
            "claim_ms": {"mean": mean(&claim), "p50": percentile(&claim, 0.5) / 1e3}}));
    }
    println!("{}", json!({"workload": "sync-compare", "nodes": out}));
    Ok(())
}
