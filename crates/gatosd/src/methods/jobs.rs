//! `jobs.*`: the job plane over RPC. A client runs the process itself and signs its proof
//! with its own key; the daemon checks that proof and never signs for a process it did
//! not run.

use std::sync::Arc;

use base64::Engine as _;
use gatos::jobs::lifecycle::{ClaimOptions, DEFAULT_LEASE, Finish, SecretProbe};
use gatos::jobs::manifest::{self, Overrides};
use gatos::jobs::{ListOptions, events_topic};
use gatos_rpc::RpcError;
use gatos_rpc::message::{Params, result};
use gatos_rpc::methods::{
    CancelParams, ClaimParams, ClaimResult, EnqueueParams, FinishParams, FinishResult,
    HeartbeatParams, HeartbeatResult, JobIdParams, ListParams, ListResult, WatchParams,
};
use gatos_types::jobs::Outcome;
use gatos_types::{Dur, ErrorCode};
use serde_json::Value;
use serde_json::value::RawValue;

use super::{After, blocking};
use crate::connection::Conn;
use crate::subscriptions::JobFilter;

/// Wakes `jobs.watch` subscribers after a write by this daemon.
fn poke(conn: &Conn) {
    conn.shared.watchers.poke(&events_topic());
}

fn lease_of(v: Option<&Value>) -> Result<Dur, RpcError> {
    match v {
        None => Ok(DEFAULT_LEASE),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Dur::from_secs)
            .ok_or_else(|| RpcError::invalid_params("lease must be whole seconds or a duration")),
        Some(Value::String(s)) => {
            Dur::parse(s).map_err(|e| RpcError::invalid_params(format!("lease: {e}")))
        }
        Some(_) => Err(RpcError::invalid_params(
            "lease must be seconds or a duration like 30s",
        )),
    }
}

fn b64(field: &str, v: Option<&str>) -> Result<Vec<u8>, RpcError> {
    match v {
        None => Ok(Vec::new()),
        Some(s) => base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map_err(|_| RpcError::invalid_params(format!("{field} is not base64"))),
    }
}

/// `jobs.enqueue {manifest?, command?, queue?, caps?, timeout?, …}`.
pub async fn enqueue(conn: &Arc<Conn>, params: Params) -> Result<Box<RawValue>, RpcError> {
    let p: EnqueueParams = params.parse()?;
    let gatos = conn.shared.gatos.clone();
    let actor = "rpc".to_owned();
    let row = blocking(move || {
        let file = p.manifest.map(manifest::from_value).transpose()?;
        let o = Overrides {
            argv: p.command,
            queue: p.queue,
            caps: p.caps,
            timeout: p.timeout,
            max_attempts: p.max_attempts,
            priority: p.priority,
            env: p.env,
            run_after: p.run_after,
            cwd: p.cwd,
            outputs: p.outputs,
            labels: p.labels,
            inputs: p.inputs,
            checkout: p.checkout,
        };
        let mut input = manifest::build(file, o)?;
        // Through the daemon a job has no sources unless the request names a revision.
        manifest::resolve_checkout(&mut input, None, |rev| gatos.resolve_commit(rev))?;
        let spec = manifest::normalize(input, gatos.now())?;
        gatos.jobs().enqueue_as(spec, &actor)
    })
    .await?;
    poke(conn);
    result(&row)
}

/// `jobs.get {id}`.
pub async fn get(conn: &Arc<Conn>, params: Params) -> Result<Box<RawValue>, RpcError> {
    let p: JobIdParams = params.parse()?;
    let gatos = conn.shared.gatos.clone();
    let row = blocking(move || gatos.jobs().show(p.id)).await?;
    result(&row)
}

/// `jobs.list {queue?, state?, all?}`.
pub async fn list(conn: &Arc<Conn>, params: Params) -> Result<Box<RawValue>, RpcError> {
    let p: ListParams = params.parse()?;
    let gatos = conn.shared.gatos.clone();
    let jobs = blocking(move || {
        gatos.jobs().list(&ListOptions {
            queue: p.queue,
            state: p.state,
            archived: p.all,
        })
    })
    .await?;
    result(&ListResult { jobs })
}

/// `jobs.claim {worker, worker_key, queues?, caps?, secrets?, lease?, id?}` → the claim,
/// or null when nothing is claimable.
pub async fn claim(conn: &Arc<Conn>, params: Params) -> Result<Box<RawValue>, RpcError> {
    let p: ClaimParams = params.parse()?;
    let lease = lease_of(p.lease.as_ref())?;
    let secrets = p.secrets.clone();
    let probe: SecretProbe = Arc::new(move |name: &str| secrets.iter().any(|s| s == name));
    let opts = ClaimOptions {
        worker: p.worker,
        worker_key: Some(p.worker_key),
        queues: p.queues,
        caps: p.caps,
        lease,
        can_resolve: Some(probe),
        allow_untrusted_enqueuers: gatos::jobs::enqueuer::allowed_by_config(&conn.shared.gatos),
    };
    let gatos = conn.shared.gatos.clone();
    let id = p.id;
    let claimed = blocking(move || match id {
        Some(id) => gatos.jobs().claim(id, &opts).map(Some),
        None => gatos.jobs().claim_next(&opts),
    })
    .await?;
    poke(conn);
    match claimed {
        None => result(&Value::Null),
        Some(l) => result(&ClaimResult {
            id: l.id,
            attempt: l.attempt,
            worker: l.worker,
            worker_key: l.worker_key,
            lease_until: l.lease_until,
            claim_commit: l.claim_commit,
            job_content_id: l.content_id,
            manifest: l.spec,
            lease_token: l.token,
        }),
    }
}

/// `jobs.heartbeat {id, attempt, worker, lease_token, lease?}` → `{lease_until, cancelled}`.
pub async fn heartbeat(conn: &Arc<Conn>, params: Params) -> Result<Box<RawValue>, RpcError> {
    let p: HeartbeatParams = params.parse()?;
    let lease = lease_of(p.lease.as_ref())?;
    let gatos = conn.shared.gatos.clone();
    let out = blocking(move || {
        let jobs = gatos.jobs();
        let mut l = jobs.lease_for(p.id, p.attempt, &p.worker, p.lease_token.as_ref(), lease)?;
        jobs.heartbeat(&mut l)?;
        Ok(HeartbeatResult {
            lease_until: l.lease_until,
            cancelled: jobs.is_cancelled(p.id)?,
        })
    })
    .await?;
    result(&out)
}

fn finish_of(p: &FinishParams, default: Outcome) -> Result<Finish, RpcError> {
    let poe = match &p.poe {
        None => None,
        Some(Value::String(s)) => Some(s.as_bytes().to_vec()),
        Some(v @ Value::Object(_)) => Some(gatos_types::jcs::to_vec(v)),
        Some(_) => {
            return Err(RpcError::invalid_params(
                "poe must be the DSSE envelope (an object)",
            ));
        }
    };
    let mut outputs = Vec::new();
    for o in &p.outputs {
        outputs.push((
            o.path.clone(),
            b64("outputs[].data_base64", Some(&o.data_base64))?,
        ));
    }
    Ok(Finish {
        outcome: p.outcome.unwrap_or(default),
        exit_code: p.exit_code,
        stdout: b64("stdout_base64", p.stdout_base64.as_deref())?,
        stderr: b64("stderr_base64", p.stderr_base64.as_deref())?,
        outputs,
        poe,
    })
}

async fn finish(conn: &Arc<Conn>, p: FinishParams, f: Finish) -> Result<Box<RawValue>, RpcError> {
    let gatos = conn.shared.gatos.clone();
    let done = blocking(move || {
        let jobs = gatos.jobs();
        let lease = jobs.lease_for(
            p.id,
            p.attempt,
            &p.worker,
            p.lease_token.as_ref(),
            DEFAULT_LEASE,
        )?;
        // A proof, when given, must check out; `jobs.complete` requires one.
        if f.poe.is_some() {
            jobs.finish_verified(&lease, &f)
        } else {
            jobs.finish(&lease, &f)
        }
    })
    .await?;
    poke(conn);
    result(&FinishResult {
        state: done.state,
        commit: done.commit,
    })
}

/// `jobs.complete {id, attempt, worker, lease_token, exit_code, outcome?, stdout_base64?,
/// stderr_base64?, outputs?, poe}`: the proof is required and checked.
pub async fn complete(conn: &Arc<Conn>, params: Params) -> Result<Box<RawValue>, RpcError> {
    let p: FinishParams = params.parse()?;
    let default = if p.exit_code == Some(0) {
        Outcome::Succeeded
    } else {
        Outcome::Failed
    };
    let f = finish_of(&p, default)?;
    if !matches!(f.outcome, Outcome::Succeeded | Outcome::Failed) {
        return Err(RpcError::invalid_params(
            "jobs.complete takes outcome succeeded or failed; use jobs.fail for timeout, cancelled or lost",
        ));
    }
    if f.outcome == Outcome::Succeeded && f.exit_code != Some(0) {
        return Err(RpcError::invalid_params(
            "a succeeded attempt has exit_code 0",
        ));
    }
    if f.poe.is_none() {
        return Err(RpcError::taxonomy(
            ErrorCode::SignatureInvalid,
            "jobs.complete carries the proof of execution signed by the worker (poe)",
            &serde_json::Map::new(),
        ));
    }
    finish(conn, p, f).await
}

/// `jobs.fail {id, attempt, worker, lease_token, outcome?, exit_code?, stdout_base64?, stderr_base64?,
/// outputs?, poe?}`: a failed, timed-out, cancelled or abandoned (`lost`) attempt.
pub async fn fail(conn: &Arc<Conn>, params: Params) -> Result<Box<RawValue>, RpcError> {
    let p: FinishParams = params.parse()?;
    let f = finish_of(&p, Outcome::Failed)?;
    if f.outcome == Outcome::Succeeded {
        return Err(RpcError::invalid_params(
            "use jobs.complete for a succeeded attempt",
        ));
    }
    finish(conn, p, f).await
}

/// `jobs.cancel {id, reason?}`.
pub async fn cancel(conn: &Arc<Conn>, params: Params) -> Result<Box<RawValue>, RpcError> {
    let p: CancelParams = params.parse()?;
    let gatos = conn.shared.gatos.clone();
    let row = blocking(move || gatos.jobs().cancel(p.id, p.reason)).await?;
    poke(conn);
    result(&row)
}

/// `jobs.watch {queue?, job?, since?}` → `{subscription, since}`, then `jobs.event`
/// notifications; end it with `messages.unsubscribe {subscription}`.
pub async fn watch(conn: &Arc<Conn>, params: Params) -> Result<(Box<RawValue>, After), RpcError> {
    let p: WatchParams = params.parse()?;
    let since = match p.since {
        Some(u) => gatos::messages::Cursor::Ulid(u),
        None => gatos::messages::Cursor::End,
    };
    super::messages::subscribe_to(
        conn,
        events_topic(),
        since,
        Some(JobFilter {
            queue: p.queue,
            job: p.job,
        }),
    )
    .await
}
