//! Measurements over gatosd's faces (`scripts/bench.sh http`, issue #17 point 9): the same
//! calls over JSON-RPC on the Unix socket and over HTTP/1.1 keep-alive, server-sent event
//! fan-out latency, the memory of idle streams, and the time of one GET.
//!
//! Each client is a thread with one connection, one request at a time, on both faces (an
//! HTTP client is a `ureq` agent: one kept-alive connection), so the two rates compare the
//! faces and not the clients.

use std::io::{BufRead, BufReader, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::{R, payload, percentile};

/// The token lines of a file: `NAME TOKEN` (an HTTP token file) or one bare token.
fn tokens(file: &str) -> R<Vec<String>> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("reading {file}: {e}"))?;
    let list: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            l.split_whitespace()
                .nth(if l.contains(' ') { 1 } else { 0 })
        })
        .map(str::to_owned)
        .collect();
    if list.is_empty() {
        return Err(format!("{file} holds no token").into());
    }
    Ok(list)
}

fn arg<'a>(args: &'a [String], i: usize, what: &str) -> R<&'a str> {
    Ok(args
        .get(i)
        .ok_or_else(|| format!("{what} missing"))?
        .as_str())
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_idle_connections_per_host(1)
        .build()
        .into()
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// The request of call `i` of client `k`: (JSON-RPC method and params, HTTP path and body).
fn request(op: &str, topic: &str, i: u64) -> R<(&'static str, Value, String, Value)> {
    match op {
        "publish" => Ok((
            "messages.publish",
            json!({"topic": topic, "payload": payload(i)}),
            format!("/api/v1/topics/{topic}/messages"),
            json!({"payload": payload(i)}),
        )),
        "enqueue" => {
            let body = json!({"command": ["true"], "labels": {"n": i.to_string()}});
            Ok(("jobs.enqueue", body.clone(), "/api/v1/jobs".into(), body))
        }
        _ => Err(format!("unknown call {op} (publish, enqueue)").into()),
    }
}

/// `calls <rpc|http> <publish|enqueue> <endpoint> <token-file> <n> <clients> <topic>`: each
/// of `clients` threads makes n calls one at a time: over the Unix socket `endpoint` after
/// `gatos.auth`, or over HTTP to `endpoint` (`HOST:PORT`) with the token of line
/// `k mod lines` of the token file (so each client can be its own actor).
pub fn calls(args: &[String]) -> R {
    let face = arg(args, 2, "face")?.to_owned();
    let op = arg(args, 3, "call")?.to_owned();
    let endpoint = arg(args, 4, "endpoint")?.to_owned();
    let toks = tokens(arg(args, 5, "token file")?)?;
    let n: u64 = arg(args, 6, "n")?.parse()?;
    let clients: u64 = arg(args, 7, "clients")?.parse()?;
    let topic = arg(args, 8, "topic")?.to_owned();
    let start = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|k| {
            let (face, op, endpoint, topic) =
                (face.clone(), op.clone(), endpoint.clone(), topic.clone());
            let token = toks[k as usize % toks.len()].clone();
            std::thread::spawn(move || -> Result<Vec<Duration>, String> {
                let calls =
                    (0..n).map(|i| request(&op, &topic, k * n + i).map_err(|e| e.to_string()));
                match face.as_str() {
                    "rpc" => rpc_calls(&endpoint, &token, calls),
                    "http" => http_calls(&endpoint, &token, calls),
                    other => Err(format!("unknown face {other} (rpc, http)")),
                }
            })
        })
        .collect();
    let mut lat = Vec::new();
    for h in handles {
        lat.extend(h.join().map_err(|_| "client thread panicked")??);
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    let total = n * clients;
    println!(
        "{}",
        json!({"workload": format!("{face} {op}"), "clients": clients, "count": total,
               "seconds": secs, "rate": total as f64 / secs,
               "p50_us": percentile(&lat, 0.5), "p99_us": percentile(&lat, 0.99)})
    );
    Ok(())
}

type Call = Result<(&'static str, Value, String, Value), String>;

/// One authenticated JSON-RPC connection over gatosd's Unix socket.
struct Rpc {
    w: std::os::unix::net::UnixStream,
    r: BufReader<std::os::unix::net::UnixStream>,
    line: String,
    next: u64,
}

impl Rpc {
    fn connect(socket: &str, token: &str) -> Result<Rpc, String> {
        let s = std::os::unix::net::UnixStream::connect(socket).map_err(|e| e.to_string())?;
        let w = s.try_clone().map_err(|e| e.to_string())?;
        let mut rpc = Rpc {
            w,
            r: BufReader::new(s),
            line: String::new(),
            next: 0,
        };
        rpc.send("gatos.auth", &json!({"token": token}))?;
        if !rpc.line.contains("\"authenticated\":true") {
            return Err(format!("gatos.auth failed: {}", rpc.line));
        }
        Ok(rpc)
    }

    /// Sends one request and reads its answer into `self.line`.
    fn send(&mut self, method: &str, params: &Value) -> Result<(), String> {
        self.next += 1;
        let req = json!({"jsonrpc": "2.0", "id": self.next, "method": method, "params": params});
        super::send_line(&mut self.w, &req).map_err(|e| e.to_string())?;
        self.line.clear();
        self.r
            .read_line(&mut self.line)
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Sends one request and returns its result.
    fn call(&mut self, method: &str, params: &Value) -> Result<Value, String> {
        self.send(method, params)?;
        let mut v: Value = serde_json::from_str(&self.line).map_err(|e| e.to_string())?;
        match v.get_mut("result") {
            Some(r) => Ok(r.take()),
            None => Err(format!("{method} failed: {}", self.line)),
        }
    }
}

fn rpc_calls(
    socket: &str,
    token: &str,
    calls: impl Iterator<Item = Call>,
) -> Result<Vec<Duration>, String> {
    let mut rpc = Rpc::connect(socket, token)?;
    let mut lat = Vec::new();
    for call in calls {
        let (method, params, _, _) = call?;
        let t = Instant::now();
        rpc.send(method, &params)?;
        lat.push(t.elapsed());
        if !rpc.line.contains("\"result\"") {
            return Err(format!("{method} failed: {}", rpc.line));
        }
    }
    Ok(lat)
}

/// `rpc-claim <socket> <token-file> <repo> <n> <clients>`: n jobs of `true` enqueued
/// in-process (untimed), then each of `clients` threads claims the next job over the
/// socket, signs a proof of a no-op run with its own key (trusted first) and completes it,
/// until nothing is left: claim + complete with no process, as a remote worker does.
pub fn rpc_claim(args: &[String]) -> R {
    let socket = arg(args, 2, "socket")?.to_owned();
    let token = tokens(arg(args, 3, "token file")?)?
        .into_iter()
        .next()
        .ok_or("no token")?;
    let repo = std::path::Path::new(arg(args, 4, "repo")?);
    let n: u64 = arg(args, 5, "n")?.parse()?;
    let clients: u64 = arg(args, 6, "clients")?.parse()?;
    let g = gatos::Gatos::open(repo, gatos::OpenOptions::default())?;
    let keys: Vec<ed25519_dalek::SigningKey> = (0..clients)
        .map(|k| ed25519_dalek::SigningKey::from_bytes(&[u8::try_from(k + 1).unwrap_or(1); 32]))
        .collect();
    for key in &keys {
        g.keys().trust(&gatos_types::KeyId::from_bytes(
            key.verifying_key().to_bytes(),
        ))?;
    }
    for i in 0..n {
        g.jobs().enqueue(super::spec(i)?)?;
    }
    hold_for_profiler()?;
    let start = Instant::now();
    let handles: Vec<_> = keys
        .into_iter()
        .enumerate()
        .map(|(k, key)| {
            let (socket, token) = (socket.clone(), token.clone());
            std::thread::spawn(move || claim_loop(&socket, &token, &format!("w{k}"), &key))
        })
        .collect();
    let mut lat = Vec::new();
    for h in handles {
        lat.extend(h.join().map_err(|_| "client thread panicked")??);
    }
    let secs = start.elapsed().as_secs_f64();
    if lat.len() as u64 != n {
        return Err(format!("{} of {n} jobs completed", lat.len()).into());
    }
    lat.sort();
    println!(
        "{}",
        json!({"workload": "rpc claim+complete", "clients": clients, "count": n,
               "seconds": secs, "rate": n as f64 / secs,
               "p50_us": percentile(&lat, 0.5), "p99_us": percentile(&lat, 0.99)})
    );
    Ok(())
}

/// With `GATOS_BENCH_HOLD=<file>`, makes the file once the set-up is done and waits until it
/// is removed: a profiler attached to gatosd then sees the measured part alone.
fn hold_for_profiler() -> R {
    let Some(file) = std::env::var_os("GATOS_BENCH_HOLD") else {
        return Ok(());
    };
    std::fs::write(&file, b"set up\n")?;
    while std::path::Path::new(&file).exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn claim_loop(
    socket: &str,
    token: &str,
    worker: &str,
    key: &ed25519_dalek::SigningKey,
) -> Result<Vec<Duration>, String> {
    use gatos::proofs::{Claim, attest};
    let mut rpc = Rpc::connect(socket, token)?;
    let key_id = gatos_types::KeyId::from_bytes(key.verifying_key().to_bytes());
    let who: gatos_types::WorkerId = worker.parse().map_err(|e| format!("{e}"))?;
    let field = |v: &Value, f: &str| -> Result<String, String> {
        v[f].as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("jobs.claim answer without {f}: {v}"))
    };
    let mut lat = Vec::new();
    loop {
        let t = Instant::now();
        let c = rpc.call(
            "jobs.claim",
            &json!({"worker": worker, "worker_key": key_id.to_string(), "lease": "60s"}),
        )?;
        if c.is_null() {
            return Ok(lat);
        }
        let now =
            gatos_types::Timestamp::from_millis(i64::try_from(now_ns() / 1_000_000).unwrap_or(0));
        let poe = attest(
            key,
            Claim {
                job: field(&c, "id")?.parse().map_err(|e| format!("{e}"))?,
                job_content_id: field(&c, "job_content_id")?
                    .parse()
                    .map_err(|e| format!("{e}"))?,
                attempt: c["attempt"]
                    .as_u64()
                    .and_then(|a| u32::try_from(a).ok())
                    .unwrap_or(0),
                claim_commit: field(&c, "claim_commit")?
                    .parse()
                    .map_err(|e| format!("{e}"))?,
                worker: &who,
            },
            &super::noop_run(now, now),
        )
        .map_err(|e| e.to_string())?;
        let poe: Value = serde_json::from_slice(&poe).map_err(|e| e.to_string())?;
        rpc.call(
            "jobs.complete",
            &json!({"id": c["id"], "attempt": c["attempt"], "worker": worker,
                    "lease_token": c["lease_token"], "exit_code": 0, "poe": poe}),
        )?;
        lat.push(t.elapsed());
    }
}

fn http_calls(
    addr: &str,
    token: &str,
    calls: impl Iterator<Item = Call>,
) -> Result<Vec<Duration>, String> {
    let agent = agent();
    let bearer = format!("Bearer {token}");
    let mut lat = Vec::new();
    for call in calls {
        let (_, _, path, body) = call?;
        let body = body.to_string();
        let t = Instant::now();
        let mut resp = agent
            .post(format!("http://{addr}{path}"))
            .header("Authorization", &bearer)
            .content_type("application/json")
            .send(body.as_bytes())
            .map_err(|e| e.to_string())?;
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        lat.push(t.elapsed());
        if !resp.status().is_success() {
            return Err(format!("POST {path}: {}: {text}", resp.status()));
        }
    }
    Ok(lat)
}

/// Opens the topic stream with `token` and calls `on_message` with each `message` event's
/// data until it returns false; `connected` is called once the stream's first line came.
fn stream(
    addr: &str,
    token: &str,
    topic: &str,
    connected: impl FnOnce(),
    mut on_message: impl FnMut(&Value) -> bool,
) -> Result<(), String> {
    let resp = agent()
        .get(format!("http://{addr}/api/v1/topics/{topic}/stream"))
        .header("Authorization", format!("Bearer {token}"))
        .header("Accept", "text/event-stream")
        .call()
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("stream: {}", resp.status()));
    }
    let lines = BufReader::new(resp.into_body().into_reader()).lines();
    let mut connected = Some(connected);
    let mut event = String::new();
    for line in lines {
        let line = line.map_err(|e| e.to_string())?;
        if let Some(c) = connected.take() {
            c();
        }
        if let Some(e) = line.strip_prefix("event: ") {
            event = e.to_owned();
        } else if let Some(d) = line.strip_prefix("data: ") {
            if event == "message" {
                let v: Value = serde_json::from_str(d).map_err(|e| e.to_string())?;
                if !on_message(&v) {
                    return Ok(());
                }
            } else if event == "lagged" || event == "shutdown" {
                return Err(format!("stream ended: {event} {d}"));
            }
        }
    }
    Err("stream closed".into())
}

/// Waits until `count` reaches `want` or `deadline` passes.
fn wait_for(count: &AtomicUsize, want: usize, deadline: Duration) -> R {
    let until = Instant::now() + deadline;
    while count.load(Ordering::SeqCst) < want {
        if Instant::now() > until {
            return Err(format!(
                "only {} of {want} streams connected within {deadline:?}",
                count.load(Ordering::SeqCst)
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn spawn_small<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> R<std::thread::JoinHandle<T>> {
    Ok(std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(f)?)
}

/// `sse <addr> <token-file> <topic> <subscribers> <n> <rate>`: `subscribers` streams on the
/// topic (tokens taken in turn from the file); once all are connected, one HTTP client
/// publishes n messages at `rate` a second, each carrying its send time; every stream
/// records publish-to-delivery latencies.
pub fn sse(args: &[String]) -> R {
    let addr = arg(args, 2, "address")?.to_owned();
    let toks = tokens(arg(args, 3, "token file")?)?;
    let topic = arg(args, 4, "topic")?.to_owned();
    let subs: usize = arg(args, 5, "subscribers")?.parse()?;
    let n: usize = arg(args, 6, "n")?.parse()?;
    let rate: f64 = arg(args, 7, "rate")?.parse()?;
    let connected = Arc::new(AtomicUsize::new(0));
    let all = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let mut handles = Vec::new();
    for k in 0..subs {
        let (addr, topic, token) = (addr.clone(), topic.clone(), toks[k % toks.len()].clone());
        let (connected, all) = (connected.clone(), all.clone());
        handles.push(spawn_small(move || -> Result<(), String> {
            let mut lat = Vec::with_capacity(n);
            let r = stream(
                &addr,
                &token,
                &topic,
                || {
                    connected.fetch_add(1, Ordering::SeqCst);
                },
                |v| {
                    if let Some(sent) = v.pointer("/payload/ts_ns").and_then(Value::as_u64) {
                        let d = now_ns().saturating_sub(u128::from(sent));
                        lat.push(Duration::from_nanos(d as u64));
                    }
                    lat.len() < n
                },
            );
            all.lock().map_err(|_| "poisoned")?.extend(lat);
            r
        })?);
    }
    wait_for(&connected, subs, Duration::from_secs(120))?;
    let publisher = agent();
    let bearer = format!("Bearer {}", toks[0]);
    let start = Instant::now();
    for i in 0..n {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        let body = json!({"payload": {"ts_ns": now_ns() as u64, "i": i}}).to_string();
        let resp = publisher
            .post(format!("http://{addr}/api/v1/topics/{topic}/messages"))
            .header("Authorization", &bearer)
            .content_type("application/json")
            .send(body.as_bytes())?;
        if !resp.status().is_success() {
            return Err(format!("publish: {}", resp.status()).into());
        }
    }
    let mut failed = 0;
    for h in handles {
        if h.join().map_err(|_| "subscriber panicked")?.is_err() {
            failed += 1;
        }
    }
    let mut lat = std::mem::take(&mut *all.lock().map_err(|_| "poisoned")?);
    lat.sort();
    println!(
        "{}",
        json!({"workload": "sse", "subscribers": subs, "messages": n, "rate": rate,
               "deliveries": lat.len(), "expected": subs * n, "failed_streams": failed,
               "p50_ms": percentile(&lat, 0.5) / 1e3, "p99_ms": percentile(&lat, 0.99) / 1e3,
               "max_ms": percentile(&lat, 1.0) / 1e3})
    );
    Ok(())
}

/// VmRSS and RssAnon of a process, in KiB.
fn rss(pid: &str) -> R<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("RssAnon:")))
}

/// `idle-sse <addr> <token-file> <topic> <n> <pid>`: the resident memory of process `pid`
/// (gatosd) before and with n idle streams open on the topic; then one message is
/// published and the time until every stream received it is measured.
pub fn idle_sse(args: &[String]) -> R {
    let addr = arg(args, 2, "address")?.to_owned();
    let toks = tokens(arg(args, 3, "token file")?)?;
    let topic = arg(args, 4, "topic")?.to_owned();
    let n: usize = arg(args, 5, "n")?.parse()?;
    let pid = arg(args, 6, "pid")?.to_owned();
    let (before, before_anon) = rss(&pid)?;
    let connected = Arc::new(AtomicUsize::new(0));
    let received = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for k in 0..n {
        let (addr, topic, token) = (addr.clone(), topic.clone(), toks[k % toks.len()].clone());
        let (connected, received) = (connected.clone(), received.clone());
        handles.push(spawn_small(move || {
            stream(
                &addr,
                &token,
                &topic,
                || {
                    connected.fetch_add(1, Ordering::SeqCst);
                },
                |_| {
                    received.fetch_add(1, Ordering::SeqCst);
                    false
                },
            )
        })?);
    }
    wait_for(&connected, n, Duration::from_secs(120))?;
    // The daemon's memory once every stream is open and idle: sampled until it stops
    // growing (the streams' tasks and buffers are all allocated by then).
    let mut with = rss(&pid)?;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let now = rss(&pid)?;
        if now.0 <= with.0 {
            with = now;
            break;
        }
        with = now;
    }
    let resp = agent()
        .post(format!("http://{addr}/api/v1/topics/{topic}/messages"))
        .header("Authorization", format!("Bearer {}", toks[0]))
        .content_type("application/json")
        .send(json!({"payload": {"wake": true}}).to_string().as_bytes())?;
    let t = Instant::now();
    if !resp.status().is_success() {
        return Err(format!("publish: {}", resp.status()).into());
    }
    wait_for(&received, n, Duration::from_secs(120))?;
    let fan_out = t.elapsed();
    let mut failed = 0;
    for h in handles {
        if h.join().map_err(|_| "stream thread panicked")?.is_err() {
            failed += 1;
        }
    }
    println!(
        "{}",
        json!({"workload": "idle-sse", "streams": n, "rss_before_kib": before,
               "rss_with_kib": with.0, "anon_before_kib": before_anon, "anon_with_kib": with.1,
               "kib_per_stream": (with.0.saturating_sub(before)) as f64 / n as f64,
               "fan_out_ms": fan_out.as_secs_f64() * 1e3, "failed_streams": failed})
    );
    Ok(())
}

/// `get <addr> <token> <path> <rounds>`: `rounds` GETs of `path` on one connection (after
/// three unmeasured), their latencies.
pub fn get(args: &[String]) -> R {
    let addr = arg(args, 2, "address")?;
    let token = arg(args, 3, "token")?;
    let path = arg(args, 4, "path")?;
    let rounds: usize = arg(args, 5, "rounds")?.parse()?;
    let agent = agent();
    let bearer = format!("Bearer {token}");
    let mut lat = Vec::with_capacity(rounds);
    let mut bytes = 0;
    for i in 0..rounds + 3 {
        let t = Instant::now();
        let mut resp = agent
            .get(format!("http://{addr}{path}"))
            .header("Authorization", &bearer)
            .call()?;
        let text = resp.body_mut().read_to_string()?;
        if i >= 3 {
            lat.push(t.elapsed());
        }
        if !resp.status().is_success() {
            return Err(format!("GET {path}: {}: {text}", resp.status()).into());
        }
        bytes = text.len();
    }
    lat.sort();
    let mean = lat.iter().map(Duration::as_secs_f64).sum::<f64>() / rounds.max(1) as f64;
    println!(
        "{}",
        json!({"workload": "get", "path": path, "rounds": rounds, "bytes": bytes,
               "mean_ms": mean * 1e3, "p50_ms": percentile(&lat, 0.5) / 1e3,
               "p99_ms": percentile(&lat, 0.99) / 1e3})
    );
    Ok(())
}

/// JSON-RPC lines to a process or socket, one call at a time.
struct Lines<W: Write, B: BufRead> {
    w: W,
    r: B,
    line: String,
}

impl<W: Write, B: BufRead> Lines<W, B> {
    /// Sends a request and returns the answer with its id (notifications are skipped).
    fn call(&mut self, id: usize, method: &str, params: Value) -> R<Value> {
        let req = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        super::send_line(&mut self.w, &req)?;
        loop {
            self.line.clear();
            if self.r.read_line(&mut self.line)? == 0 {
                return Err(format!("the other end closed before answering {method}").into());
            }
            let v: Value = serde_json::from_str(&self.line)?;
            if v.get("id") == Some(&json!(id)) {
                return Ok(v);
            }
        }
    }

    /// Sends a notification.
    fn notify(&mut self, method: &str) -> R {
        Ok(super::send_line(
            &mut self.w,
            &json!({"jsonrpc": "2.0", "method": method}),
        )?)
    }
}

/// `mcp <gatosd> <repo> <socket> <token-file> <topic> <n>`: a read tool call over MCP
/// (`gatosd mcp --stdio` as an agent starts it, after the `initialize` handshake) against
/// the same read over JSON-RPC on the Unix socket, n of each after ten unmeasured,
/// alternating one by one so both see the same machine: `messages.read {topic, limit: 10}`.
pub fn mcp(args: &[String]) -> R {
    use std::process::{Command, Stdio};
    let gatosd = arg(args, 2, "gatosd")?;
    let repo = arg(args, 3, "repo")?;
    let socket = arg(args, 4, "socket")?;
    let token = tokens(arg(args, 5, "token file")?)?.remove(0);
    let topic = arg(args, 6, "topic")?;
    let n: usize = arg(args, 7, "n")?.parse()?;
    let mut child = Command::new(gatosd)
        .args(["mcp", "--stdio", "--repo", repo])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let result = (|| -> R<Value> {
        let mut agent = Lines {
            w: child.stdin.take().ok_or("no stdin")?,
            r: BufReader::new(child.stdout.take().ok_or("no stdout")?),
            line: String::new(),
        };
        let init = agent.call(
            0,
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "gatos-bench", "version": "1"}}),
        )?;
        if init.get("result").is_none() {
            return Err(format!("initialize: {init}").into());
        }
        agent.notify("notifications/initialized")?;
        let s = std::os::unix::net::UnixStream::connect(socket)?;
        let mut rpc = Lines {
            w: s.try_clone()?,
            r: BufReader::new(s),
            line: String::new(),
        };
        let auth = rpc.call(0, "gatos.auth", json!({"token": token}))?;
        if auth.pointer("/result/authenticated") != Some(&json!(true)) {
            return Err(format!("gatos.auth: {auth}").into());
        }
        let params = json!({"topic": topic, "limit": 10});
        let (mut over_mcp, mut over_rpc) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for i in 1..=n + 10 {
            let t = Instant::now();
            let a = agent.call(
                i,
                "tools/call",
                json!({"name": "messages.read", "arguments": params}),
            )?;
            let dm = t.elapsed();
            if a.pointer("/result/isError") == Some(&json!(true)) || a.get("result").is_none() {
                return Err(format!("tools/call messages.read: {a}").into());
            }
            let t = Instant::now();
            let b = rpc.call(i, "messages.read", params.clone())?;
            let dr = t.elapsed();
            if b.get("result").is_none() {
                return Err(format!("messages.read: {b}").into());
            }
            if i > 10 {
                over_mcp.push(dm);
                over_rpc.push(dr);
            }
        }
        over_mcp.sort();
        over_rpc.sort();
        let mean = |v: &[Duration]| {
            v.iter().map(Duration::as_secs_f64).sum::<f64>() / v.len().max(1) as f64 * 1e6
        };
        Ok(json!({"workload": "mcp", "calls": n,
               "mcp_p50_us": percentile(&over_mcp, 0.5), "mcp_mean_us": mean(&over_mcp),
               "mcp_p99_us": percentile(&over_mcp, 0.99),
               "rpc_p50_us": percentile(&over_rpc, 0.5), "rpc_mean_us": mean(&over_rpc),
               "rpc_p99_us": percentile(&over_rpc, 0.99)}))
    })();
    // An agent ends the server by closing its input; kill it in case it does not.
    let _ = child.kill();
    child.wait()?;
    println!("{}", result?);
    Ok(())
}
