//! The JSON-RPC face of the operation table (`gatos_api::OPS`): unary operations run
//! through the service on the blocking pool; streams and the connection's own operations
//! (authentication, unsubscribe, health, readiness) are served here.

pub mod dashboard;
pub mod gatos;
pub mod jobs;
pub mod messages;

use gatos_api::ops::{self, Faces, Shape, names as n};
use gatos_api::{CallError, Now};
use gatos_rpc::RpcError;
use gatos_rpc::message::Params;
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use crate::connection::Conn;

/// Something to do once the response is queued (start a subscription).
pub type After = oneshot::Sender<()>;

/// What a method returns: the serialised result or an error, and an optional follow-up.
pub type Outcome = (Result<Box<RawValue>, RpcError>, Option<After>);

/// Maps a library error to its JSON-RPC error object (-32000, `data: {code, status, …}`).
pub fn to_rpc(e: &::gatos::Error) -> RpcError {
    RpcError::taxonomy(e.code(), e.to_string(), e.details())
}

/// Runs a blocking library call on the blocking pool.
///
/// # Errors
/// The call's error, or -32603 when the task panicked (the daemon goes on).
pub async fn blocking<T, F>(f: F) -> Result<T, RpcError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ::gatos::Error> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| to_rpc(&e)),
        Err(e) => {
            tracing::error!(error = %e, "a request task failed");
            Err(RpcError::internal("the request failed inside the daemon"))
        }
    }
}

/// Whether a method's answer can be large (a page): a connection builds one at a time
/// (ADR 0023).
pub fn large(method: &str) -> bool {
    ops::find(method).is_some_and(|o| o.large)
}

/// Whether a method's answer is the point: it is not run when sent as a notification.
pub fn answer_required(method: &str) -> bool {
    ops::find(method).is_some_and(|o| o.answer_required)
}

/// Maps a service error to its JSON-RPC error object.
pub fn call_error(e: CallError) -> RpcError {
    match e {
        CallError::UnknownOperation(name) => RpcError::method_not_found(&name),
        CallError::InvalidParams(msg) => RpcError::invalid_params(msg),
        CallError::Failed(e) => to_rpc(&e),
        CallError::NotUnary(name) => {
            RpcError::internal(format!("{name} reached the wrong handler"))
        }
    }
}

/// The `Unauthorized` answer to a write on the Unix socket before `gatos.auth`.
fn write_needs_token(conn: &Conn, method: &str) -> RpcError {
    let shown: String = method.chars().take(100).collect();
    needs_token(
        conn,
        &format!("{shown} writes, and writes on the Unix socket need the daemon's token"),
    )
}

/// The refusal of a subscription when every stream slot of the daemon is taken
/// (`Limits::max_streams`, shared by every face).
pub(crate) fn streams_full(shared: &crate::shared::Shared) -> RpcError {
    let mut details = serde_json::Map::new();
    details.insert(
        "max_streams".into(),
        serde_json::json!(shared.limits.max_streams),
    );
    RpcError::taxonomy(
        gatos_types::ErrorCode::TooManySubscriptions,
        shared.streams_full(),
        &details,
    )
}

/// The refusal of a guarded call before `gatos.auth`: `what` says why it is guarded.
fn needs_token(conn: &Conn, what: &str) -> RpcError {
    let mut details = serde_json::Map::new();
    let hint = match conn.shared.tokens() {
        Some(t) => {
            let file = t.file.display().to_string();
            details.insert("token_file".into(), serde_json::Value::String(file.clone()));
            format!("call gatos.auth {{token}} first, with the content of {file}")
        }
        None => "this daemon has no token; writes are served on stdio only".to_owned(),
    };
    RpcError::taxonomy(
        gatos_types::ErrorCode::Unauthorized,
        format!("{what}: {hint}"),
        &details,
    )
}

/// Calls a method: looks it up in the operation table, checks the connection may call it,
/// and runs it (unary operations through the service on the blocking pool; streams and
/// the connection's own operations here). Counted in the request metrics (ADR 0040).
/// `tried_now`: [`call_now`] was tried first and would have waited (or its parked group
/// would have); `since`: when that first try began, which the metrics time the call from.
pub async fn call(
    conn: &std::sync::Arc<Conn>,
    method: &str,
    params: Params,
    tried_now: bool,
    since: Option<std::time::Instant>,
) -> Outcome {
    // A call tried first without waiting is timed from its first try.
    let started = since.unwrap_or_else(std::time::Instant::now);
    let out = dispatch(conn, method, params, tried_now).await;
    record(conn, method, &out.0, started);
    out
}

/// What [`call_now`] made of a call.
pub enum Quick {
    /// The call's outcome.
    Answered(Result<Box<RawValue>, RpcError>),
    /// A publish parked for its topic's group commit (ADR 0046, session 15).
    Parked(Parked),
    /// A quick call that would have waited: nothing was done; it is made as any other
    /// call, timed from this first try.
    WouldWait,
}

/// [`call`] of a quick unary operation (a plain publish: one journal append, ADR 0046
/// session 6) or of `gatos.auth`, made on the connection's reader task with the same
/// checks and metrics: no request task is spawned for it. A publish that finds its topic's
/// group commit under way parks: the reader goes on once the call holds an in-flight
/// permit, and [`Parked::answer`] gives the
/// outcome once that group committed. `None` when it is not such a call, and
/// [`Quick::WouldWait`] when it would wait; then nothing was done and it is made as any
/// other call, with `tried_now` so that it is not tried without waiting a second time.
pub fn call_now(conn: &std::sync::Arc<Conn>, method: &str, params: &Params) -> Option<Quick> {
    let started = std::time::Instant::now();
    let op = ops::find(method).filter(|o| {
        o.faces.has(Faces::RPC) && ((o.quick && o.shape == Shape::Unary) || o.name == n::GATOS_AUTH)
    })?;
    let _span = tracing::debug_span!("request", method = %method).entered();
    let out = match admit(conn, method, Some(op), params) {
        Err(e) => Err(e),
        // Authentication runs where the calls after it are checked: a publish sent right
        // behind `gatos.auth` is checked after it, as the client means.
        Ok(op) if op.name == n::GATOS_AUTH => gatos::auth_again(conn, params.clone()),
        Ok(op) => {
            let empty = serde_json::Map::new();
            let map = match params {
                Params::Object(m) => m,
                Params::None => &empty,
                Params::Array(_) => return None,
            };
            match conn
                .shared
                .service
                .call_now_or_park(&conn.actor, op.name, map)
            {
                Now::Done(r) => answered(conn, r),
                Now::WouldWait => return Some(Quick::WouldWait),
                Now::Parked(call) => {
                    return Some(Quick::Parked(Parked {
                        call,
                        method: op.name,
                        started,
                    }));
                }
            }
        }
    };
    record(conn, method, &out, started);
    Some(Quick::Answered(out))
}

/// A publish parked for its topic's group commit.
pub struct Parked {
    call: gatos_api::ParkedCall,
    method: &'static str,
    started: std::time::Instant,
}

impl Parked {
    /// The method called.
    pub fn method(&self) -> &'static str {
        self.method
    }

    /// The call's outcome once its group committed, counted in the request metrics;
    /// `None` when the group would have waited: nothing was done, and the call is made as
    /// any other call, with `tried_now`.
    pub async fn answer(
        self,
        conn: &std::sync::Arc<Conn>,
    ) -> Option<Result<Box<RawValue>, RpcError>> {
        let out = answered(conn, self.call.await?);
        record(conn, self.method, &out, self.started);
        Some(out)
    }
}

/// A service answer as the RPC face gives it, with the followers of the topics it wrote
/// to woken.
fn answered(
    conn: &Conn,
    r: Result<gatos_api::Answer, CallError>,
) -> Result<Box<RawValue>, RpcError> {
    match r {
        Ok(answer) => {
            for t in &answer.touched {
                conn.shared.watchers.poke(t);
            }
            Ok(answer.result)
        }
        Err(e) => Err(call_error(e)),
    }
}

/// Counts a call in the request metrics.
fn record(
    conn: &Conn,
    method: &str,
    out: &Result<Box<RawValue>, RpcError>,
    started: std::time::Instant,
) {
    let code = match out {
        Ok(_) => "ok",
        Err(e) => e.taxonomy_code().unwrap_or("_other"),
    };
    conn.shared
        .metrics
        .request("rpc", method, code, started.elapsed());
}

/// Whether this connection may call `method` (its row `op`, if the RPC face has one) with
/// `params`: the row, the token it needs, a token marked read-only.
fn admit(
    conn: &Conn,
    method: &str,
    op: Option<&'static ops::Op>,
    params: &Params,
) -> Result<&'static ops::Op, RpcError> {
    // The token the connection presented, as the token file says now: one a re-read took
    // out authenticates nothing more (TCP: no call at all; the Unix socket: reads only, as
    // before `gatos.auth`), one now marked `ro` only reads.
    let now = conn.token_now();
    if now == Some(None)
        && conn.auth == crate::connection::Auth::First
        && op.is_none_or(|o| o.name != n::GATOS_AUTH)
    {
        return Err(needs_token(
            conn,
            "the token this connection presented is no longer in the token file",
        ));
    }
    let authenticated = conn
        .authenticated
        .load(std::sync::atomic::Ordering::Acquire)
        && now != Some(None);
    // A method without a row counts as a write: closed to unauthenticated clients rather
    // than telling them which names exist.
    if op.is_none_or(|o| o.needs_credentials()) && !authenticated {
        return Err(write_needs_token(conn, method));
    }
    let Some(op) = op else {
        return Err(RpcError::method_not_found(method));
    };
    // A read of the audit trail through the message operations is as guarded as
    // `audit.read` (gatos_api::ops::GUARDED_TOPICS).
    if let Params::Object(p) = params
        && op.call_needs_credentials(p)
        && !authenticated
    {
        return Err(needs_token(
            conn,
            &format!(
                "{} on a guarded topic reads the audit trail, and that needs the daemon's token",
                op.name
            ),
        ));
    }
    // `ro` as the token file says now; as at `gatos.auth` for a connection that presented
    // no recorded token.
    let read_only = match now {
        Some(Some(ro)) => ro,
        _ => conn
            .token_read_only
            .load(std::sync::atomic::Ordering::Acquire),
    };
    if op.access == ops::Access::Write && read_only {
        let mut details = serde_json::Map::new();
        details.insert("token_read_only".into(), serde_json::Value::Bool(true));
        return Err(RpcError::taxonomy(
            gatos_types::ErrorCode::Forbidden,
            format!(
                "{} writes, and this connection presented a token marked ro (reads only)",
                op.name
            ),
            &details,
        ));
    }
    Ok(op)
}

async fn dispatch(
    conn: &std::sync::Arc<Conn>,
    method: &str,
    params: Params,
    tried_now: bool,
) -> Outcome {
    let plain = |r: Result<Box<RawValue>, RpcError>| (r, None);
    let op = ops::find(method).filter(|o| o.faces.has(Faces::RPC));
    let op = match admit(conn, method, op, &params) {
        Ok(op) => op,
        Err(e) => return plain(Err(e)),
    };
    match op.shape {
        Shape::Unary => plain(unary(conn, op.name, params, tried_now).await),
        Shape::Stream => {
            let started = match op.name {
                n::MESSAGES_SUBSCRIBE => messages::subscribe(conn, params).await,
                n::JOBS_WATCH => jobs::watch(conn, params).await,
                n::JOBS_FOLLOW => jobs::follow(conn, params).await,
                other => Err(RpcError::method_not_found(other)),
            };
            match started {
                Ok((r, after)) => (Ok(r), Some(after)),
                Err(e) => (Err(e), None),
            }
        }
        Shape::Face => plain(match op.name {
            n::MESSAGES_UNSUBSCRIBE => messages::unsubscribe(conn, params),
            n::GATOS_HEALTH => gatos::health(conn, params).await,
            n::GATOS_READY => gatos::ready(conn, params).await,
            n::GATOS_AUTH => gatos::auth_again(conn, params),
            n::DASHBOARD_SIGNIN_CODE => dashboard::signin_code(conn, params),
            n::DASHBOARD_SESSIONS => dashboard::sessions(conn, params),
            n::DASHBOARD_REVOKE => dashboard::revoke(conn, params).await,
            other => Err(RpcError::method_not_found(other)),
        }),
    }
}

/// Runs a unary operation through the service, then wakes the followers of the topics it
/// wrote to.
async fn unary(
    conn: &std::sync::Arc<Conn>,
    name: &'static str,
    params: Params,
    tried_now: bool,
) -> Result<Box<RawValue>, RpcError> {
    let params = params.into_object()?;
    let service = conn.shared.service.clone();
    let actor = conn.actor.clone();
    // A quick operation (a plain publish: one journal append) runs here, on the runtime's
    // thread, unless it would wait: two thread hand-offs fewer per call (ADR 0046,
    // session 6). Whatever would wait goes to the blocking pool, as every call did; one
    // the connection's reader already tried (`call_now`) goes there at once.
    let now = if tried_now {
        None
    } else {
        service.call_now(&actor, name, &params)
    };
    let answer = match now {
        Some(r) => r.map_err(call_error)?,
        None => match tokio::task::spawn_blocking(move || service.call(&actor, name, params)).await
        {
            Ok(r) => r.map_err(call_error)?,
            Err(e) => {
                tracing::error!(error = %e, "a request task failed");
                return Err(RpcError::internal("the request failed inside the daemon"));
            }
        },
    };
    for t in &answer.touched {
        conn.shared.watchers.poke(t);
    }
    Ok(answer.result)
}
