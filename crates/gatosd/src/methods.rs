//! The method table: one function per method, running library calls on the blocking pool.

pub mod checkpoints;
pub mod gatos;
pub mod jobs;
pub mod manifests;
pub mod messages;

use gatos_rpc::RpcError;
use gatos_rpc::message::Params;
use gatos_rpc::methods as m;
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

/// What a method does to the repository: the Unix socket serves reads to anyone who can
/// connect, and writes only after `gatos.auth {token}` (ADR 0023).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads only (or touches only the connection's own state).
    Read,
    /// Writes refs, runs a sync or starts work: needs the token on the Unix socket.
    Write,
}

/// The method table: every method the daemon serves and whether it writes. A method
/// missing here counts as [`Access::Write`], so a method added without a decision is
/// closed to unauthenticated clients rather than open.
pub const TABLE: &[(&str, Access)] = &[
    (m::MESSAGES_PUBLISH, Access::Write),
    (m::MESSAGES_PUBLISH_BATCH, Access::Write),
    (m::MESSAGES_READ, Access::Read),
    (m::MESSAGES_SUBSCRIBE, Access::Read),
    (m::MESSAGES_UNSUBSCRIBE, Access::Read),
    (m::CHECKPOINTS_GET, Access::Read),
    (m::CHECKPOINTS_SET, Access::Write),
    (m::TOPICS_LIST, Access::Read),
    (m::JOBS_ENQUEUE, Access::Write),
    (m::JOBS_GET, Access::Read),
    (m::JOBS_LIST, Access::Read),
    (m::JOBS_CLAIM, Access::Write),
    (m::JOBS_HEARTBEAT, Access::Write),
    (m::JOBS_COMPLETE, Access::Write),
    (m::JOBS_FAIL, Access::Write),
    (m::JOBS_CANCEL, Access::Write),
    (m::JOBS_WATCH, Access::Read),
    (m::MANIFESTS_PUT, Access::Write),
    (m::MANIFESTS_GET, Access::Read),
    (m::MANIFESTS_LIST, Access::Read),
    (m::MANIFESTS_RUN, Access::Write),
    (m::SYNC_RUN, Access::Write),
    (m::GATOS_HEALTH, Access::Read),
    (m::GATOS_VERSION, Access::Read),
    (m::GATOS_AUTH, Access::Read),
];

/// Methods whose answer can be large (a page of messages or jobs): a connection builds
/// one such answer at a time (ADR 0023).
pub const LARGE_ANSWERS: &[&str] = &[m::MESSAGES_READ, m::JOBS_LIST, m::MANIFESTS_LIST];

/// Returns whether `method` writes (unknown methods do, see [`TABLE`]).
pub fn access(method: &str) -> Access {
    TABLE
        .iter()
        .find(|(name, _)| *name == method)
        .map_or(Access::Write, |(_, a)| *a)
}

/// The `Unauthorized` answer to a write on the Unix socket before `gatos.auth`.
fn write_needs_token(conn: &Conn, method: &str) -> RpcError {
    let mut details = serde_json::Map::new();
    let hint = match &conn.shared.token {
        Some(t) => {
            let file = t.file.display().to_string();
            details.insert("token_file".into(), serde_json::Value::String(file.clone()));
            format!("call gatos.auth {{token}} first, with the content of {file}")
        }
        None => "this daemon has no token; writes are served on stdio only".to_owned(),
    };
    let shown: String = method.chars().take(100).collect();
    RpcError::taxonomy(
        gatos_types::ErrorCode::Unauthorized,
        format!("{shown} writes, and writes on the Unix socket need the daemon's token: {hint}"),
        &details,
    )
}

/// Calls a method.
pub async fn call(conn: &std::sync::Arc<Conn>, method: &str, params: Params) -> Outcome {
    let plain = |r: Result<Box<RawValue>, RpcError>| (r, None);
    if access(method) == Access::Write
        && !conn
            .authenticated
            .load(std::sync::atomic::Ordering::Acquire)
    {
        return plain(Err(write_needs_token(conn, method)));
    }
    match method {
        m::MESSAGES_PUBLISH => plain(messages::publish(conn, params).await),
        m::MESSAGES_PUBLISH_BATCH => plain(messages::publish_batch(conn, params).await),
        m::MESSAGES_READ => plain(messages::read(conn, params).await),
        m::MESSAGES_SUBSCRIBE => match messages::subscribe(conn, params).await {
            Ok((r, after)) => (Ok(r), Some(after)),
            Err(e) => (Err(e), None),
        },
        m::MESSAGES_UNSUBSCRIBE => plain(messages::unsubscribe(conn, params)),
        m::CHECKPOINTS_GET => plain(checkpoints::get(conn, params).await),
        m::CHECKPOINTS_SET => plain(checkpoints::set(conn, params).await),
        m::TOPICS_LIST => plain(messages::topics(conn, params).await),
        m::JOBS_ENQUEUE => plain(jobs::enqueue(conn, params).await),
        m::JOBS_GET => plain(jobs::get(conn, params).await),
        m::JOBS_LIST => plain(jobs::list(conn, params).await),
        m::JOBS_CLAIM => plain(jobs::claim(conn, params).await),
        m::JOBS_HEARTBEAT => plain(jobs::heartbeat(conn, params).await),
        m::JOBS_COMPLETE => plain(jobs::complete(conn, params).await),
        m::JOBS_FAIL => plain(jobs::fail(conn, params).await),
        m::JOBS_CANCEL => plain(jobs::cancel(conn, params).await),
        m::JOBS_WATCH => match jobs::watch(conn, params).await {
            Ok((r, after)) => (Ok(r), Some(after)),
            Err(e) => (Err(e), None),
        },
        m::MANIFESTS_PUT => plain(manifests::put(conn, params).await),
        m::MANIFESTS_GET => plain(manifests::get(conn, params).await),
        m::MANIFESTS_LIST => plain(manifests::list(conn, params).await),
        m::MANIFESTS_RUN => plain(manifests::run(conn, params).await),
        m::SYNC_RUN => plain(gatos::sync_run(conn, params).await),
        m::GATOS_HEALTH => plain(gatos::health(conn, params).await),
        m::GATOS_VERSION => plain(gatos::version(params)),
        m::GATOS_AUTH => plain(gatos::auth_again(conn, params)),
        other => plain(Err(RpcError::method_not_found(other))),
    }
}
