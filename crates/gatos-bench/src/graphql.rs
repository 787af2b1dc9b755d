//! `scripts/bench.sh graphql` (issue #18 point 6): GraphQL pages against the JSON-RPC
//! reads of the same pages, alternating call by call in one process (A B B A), so both see
//! the same machine.
//!
//! `graphql <http-addr> <http-token> <socket> <rpc-token> <topic> <n>`:
//! - a page of 100 jobs (the fields of a `jobs.list` row) against `jobs.list {limit: 100}`,
//!   live with nothing written between calls (the last ref state is reused), live right
//!   after a write (both sides follow a publish: GraphQL mints), and pinned (`stateRef`);
//! - 1,000 messages as two GraphQL pages of 500 against one `messages.read {limit: 1000}`,
//!   and 500 against 500;
//! - the smallest live answer right after a write (a fresh ref state: two lists of the
//!   refs) against the same answer pinned: what a mint costs; and with nothing written
//!   (the state reused).

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{R, percentile};

struct Rpc {
    w: std::os::unix::net::UnixStream,
    r: BufReader<std::os::unix::net::UnixStream>,
    line: String,
    id: u64,
}

impl Rpc {
    fn call(&mut self, method: &str, params: Value) -> R<Value> {
        self.id += 1;
        let req = json!({"jsonrpc": "2.0", "id": self.id, "method": method, "params": params});
        super::send_line(&mut self.w, &req)?;
        loop {
            self.line.clear();
            if self.r.read_line(&mut self.line)? == 0 {
                return Err(format!("gatosd closed before answering {method}").into());
            }
            let v: Value = serde_json::from_str(&self.line)?;
            if v.get("id") == Some(&json!(self.id)) {
                if v.get("result").is_none() {
                    return Err(format!("{method}: {v}").into());
                }
                return Ok(v);
            }
        }
    }
}

struct Gql {
    agent: ureq::Agent,
    url: String,
    bearer: String,
}

impl Gql {
    fn post(&self, query: &str, variables: Value) -> R<Value> {
        let mut resp = self
            .agent
            .post(&self.url)
            .header("Authorization", &self.bearer)
            .header("Content-Type", "application/json")
            .send(json!({"query": query, "variables": variables}).to_string())?;
        let text = resp.body_mut().read_to_string()?;
        let v: Value = serde_json::from_str(&text)?;
        if v.get("errors").is_some() || !resp.status().is_success() {
            return Err(format!("GraphQL: {text}").into());
        }
        Ok(v)
    }
}

const JOBS: &str = "query($s: StateRef) { ledger(stateRef: $s) { jobs(first: 100) { edges { cursor node { id queue state attempt spec claim { worker workerKey attempt leaseUntil state } result { status exitCode commit } proof { key verified code } } } pageInfo { hasNextPage endCursor } } } }";
const MSGS: &str = "query($s: StateRef, $a: String, $t: String!) { ledger(stateRef: $s) { topic(name: $t) { messages(first: 500, after: $a) { edges { cursor node { ulid seq topic contentId commit payload headers } } pageInfo { hasNextPage endCursor } } } } }";

fn stats(v: &mut [Duration]) -> Value {
    v.sort();
    let mean = v.iter().map(Duration::as_secs_f64).sum::<f64>() / v.len().max(1) as f64 * 1e3;
    json!({"p50_ms": percentile(v, 0.5) / 1e3, "mean_ms": mean, "p99_ms": percentile(v, 0.99) / 1e3})
}

/// Times `a` and `b` alternately, `n` of each after five unmeasured, in A B B A order.
fn alternate(n: usize, a: impl FnMut() -> R, b: impl FnMut() -> R) -> R<(Value, Value)> {
    alternate_after(n, || Ok(()), a, b)
}

/// [`alternate`] with `setup` run, untimed, before every timed call (a write, so that a
/// live answer finds the refs moved).
fn alternate_after(
    n: usize,
    mut setup: impl FnMut() -> R,
    mut a: impl FnMut() -> R,
    mut b: impl FnMut() -> R,
) -> R<(Value, Value)> {
    let (mut ta, mut tb) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n + 5 {
        let mut time = |f: &mut dyn FnMut() -> R, into: &mut Vec<Duration>| -> R {
            setup()?;
            let t = Instant::now();
            f()?;
            if i >= 5 {
                into.push(t.elapsed());
            }
            Ok(())
        };
        if i % 2 == 0 {
            time(&mut a, &mut ta)?;
            time(&mut b, &mut tb)?;
        } else {
            time(&mut b, &mut tb)?;
            time(&mut a, &mut ta)?;
        }
    }
    Ok((stats(&mut ta), stats(&mut tb)))
}

fn arg<'a>(args: &'a [String], i: usize, what: &str) -> R<&'a str> {
    Ok(args
        .get(i)
        .ok_or_else(|| format!("{what} missing"))?
        .as_str())
}

/// The workload (see the module's doc).
pub fn run(args: &[String]) -> R {
    let addr = arg(args, 2, "http address")?;
    let http_token = arg(args, 3, "http token")?;
    let socket = arg(args, 4, "socket")?;
    let rpc_token = arg(args, 5, "rpc token")?;
    let topic = arg(args, 6, "topic")?;
    let n: usize = arg(args, 7, "n")?.parse()?;
    let gql = Gql {
        agent: ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_idle_connections_per_host(1)
            .build()
            .into(),
        url: format!("http://{addr}/api/v1/graphql"),
        bearer: format!("Bearer {http_token}"),
    };
    let s = std::os::unix::net::UnixStream::connect(socket)?;
    let mut rpc = Rpc {
        w: s.try_clone()?,
        r: BufReader::new(s),
        line: String::new(),
        id: 0,
    };
    rpc.call("gatos.auth", json!({"token": rpc_token}))?;
    let rpc = std::cell::RefCell::new(rpc);
    let msgs = MSGS;
    // The state every pinned call names.
    let state = gql.post(JOBS, json!({}))?["extensions"]["stateRefResolved"].clone();

    let (g_live, r_jobs) = alternate(
        n,
        || gql.post(JOBS, json!({})).map(drop),
        || {
            rpc.borrow_mut()
                .call("jobs.list", json!({"limit": 100}))
                .map(drop)
        },
    )?;
    // Live after a write: each call (both sides) follows a publish, so a live GraphQL
    // answer finds the refs moved and mints.
    let write = || -> R {
        rpc.borrow_mut()
            .call(
                "messages.publish",
                json!({"topic": "bench.side", "payload": {"n": 1}}),
            )
            .map(drop)
    };
    let (g_moved, r_moved) = alternate_after(
        n,
        write,
        || gql.post(JOBS, json!({})).map(drop),
        || {
            rpc.borrow_mut()
                .call("jobs.list", json!({"limit": 100}))
                .map(drop)
        },
    )?;
    let (g_pinned, r_jobs2) = alternate(
        n,
        || gql.post(JOBS, json!({"s": state})).map(drop),
        || {
            rpc.borrow_mut()
                .call("jobs.list", json!({"limit": 100}))
                .map(drop)
        },
    )?;
    let two_pages = || -> R {
        let first = gql.post(msgs, json!({"s": state, "t": topic}))?;
        let end = first
            .pointer("/data/ledger/topic/messages/pageInfo/endCursor")
            .cloned()
            .unwrap_or(Value::Null);
        gql.post(msgs, json!({"s": state, "t": topic, "a": end}))?;
        Ok(())
    };
    let (g_1000, r_1000) = alternate(n, two_pages, || {
        rpc.borrow_mut()
            .call("messages.read", json!({"topic": topic, "limit": 1000}))
            .map(drop)
    })?;
    let (g_500, r_500) = alternate(
        n,
        || gql.post(msgs, json!({"s": state, "t": topic})).map(drop),
        || {
            rpc.borrow_mut()
                .call("messages.read", json!({"topic": topic, "limit": 500}))
                .map(drop)
        },
    )?;
    // What a mint costs, seen from a client: the smallest live answer (`state` only) after
    // a write (a fresh ref state each time) against the same answer pinned; and the same
    // live answer when nothing moved (the last state reused).
    let (mint, pinned_state) = alternate_after(
        n,
        write,
        || {
            gql.post("{ ledger { state { refs } } }", json!({}))
                .map(drop)
        },
        || {
            gql.post(
                "query($s: StateRef) { ledger(stateRef: $s) { state { refs } } }",
                json!({"s": state}),
            )
            .map(drop)
        },
    )?;
    let (reused, pinned_state2) = alternate(
        n,
        || {
            gql.post("{ ledger { state { refs } } }", json!({}))
                .map(drop)
        },
        || {
            gql.post(
                "query($s: StateRef) { ledger(stateRef: $s) { state { refs } } }",
                json!({"s": state}),
            )
            .map(drop)
        },
    )?;
    println!(
        "{}",
        json!({"workload": "graphql", "calls": n,
               "state_only": {"live": mint, "pinned": pinned_state},
               "state_only_unmoved": {"live": reused, "pinned": pinned_state2},
               "jobs100": {"graphql_live": g_live, "rpc": r_jobs},
               "jobs100_moved": {"graphql_live": g_moved, "rpc": r_moved},
               "jobs100_pinned": {"graphql_pinned": g_pinned, "rpc": r_jobs2},
               "messages1000": {"graphql_two_pages": g_1000, "rpc": r_1000},
               "messages500": {"graphql": g_500, "rpc": r_500}})
    );
    Ok(())
}
