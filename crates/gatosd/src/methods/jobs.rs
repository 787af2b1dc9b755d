//! `jobs.watch`: job events as a stream, and `jobs.follow`: one job's state, events and log
//! (the unary `jobs.*` operations are the service's).

use std::sync::{Arc, PoisonError};

use gatos::jobs::events_topic;
use gatos::jobs::logs::FollowCursor;
use gatos_api::types::{FollowParams, WatchParams};
use gatos_rpc::RpcError;
use gatos_rpc::message::{Params, result};
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use super::After;
use crate::connection::Conn;
use crate::http::sse::job;

/// `jobs.watch {queue?, job?, since?}` → `{subscription, since}`, then `jobs.event`
/// notifications; end it with `messages.unsubscribe {subscription}`.
pub async fn watch(conn: &Arc<Conn>, params: Params) -> Result<(Box<RawValue>, After), RpcError> {
    let p: WatchParams = params.parse()?;
    let since =
        gatos_api::service::cursor(p.since, None, p.since_time, gatos::messages::Cursor::End)
            .map_err(super::call_error)?;
    super::messages::subscribe_to(conn, events_topic(), since, Some(p)).await
}

/// `jobs.follow {id, since?, logs?}` → `{subscription, since}` (the cursor the follow
/// starts at), then `jobs.state`, `jobs.event`, `jobs.log` and last `jobs.end`
/// notifications, each with the cursor to resume from (ADR 0039); the subscription ends
/// after `jobs.end`, or earlier with `messages.unsubscribe {subscription}`.
pub async fn follow(conn: &Arc<Conn>, params: Params) -> Result<(Box<RawValue>, After), RpcError> {
    let p: FollowParams = params.parse()?;
    let resume = match p.since.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(s) => Some(s.parse::<FollowCursor>().map_err(|e| super::to_rpc(&e))?),
    };
    let logs = p.logs.unwrap_or(true);
    let id = format!("s{}", conn.shared.next_id());
    let stop = conn.sub_stop.child_token();
    let slot = {
        let mut subs = conn.subs.lock().unwrap_or_else(PoisonError::into_inner);
        let max = conn.shared.limits.max_subscriptions;
        if subs.len() >= max {
            let mut details = serde_json::Map::new();
            details.insert("max_subscriptions".into(), serde_json::json!(max));
            return Err(RpcError::taxonomy(
                gatos_types::ErrorCode::TooManySubscriptions,
                format!(
                    "this connection holds {max} subscriptions, the most it may; unsubscribe or open another connection"
                ),
                &details,
            ));
        }
        let Some(slot) = conn.shared.stream_slot() else {
            return Err(super::streams_full(&conn.shared));
        };
        subs.insert(id.clone(), stop.clone());
        slot
    };
    let shared = conn.shared.clone();
    let s = stop.clone();
    let started = tokio::task::spawn_blocking(move || job::start(&shared, p.id, resume, logs, s))
        .await
        .map_err(|_| RpcError::internal("the follow task failed"))
        .and_then(|r| r.map_err(super::call_error));
    let job = match started {
        Ok(j) => j,
        Err(e) => {
            conn.subs
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
            return Err(e);
        }
    };
    let answer = result(&FollowAnswer {
        subscription: id.clone(),
        since: job.cursor().to_string(),
    })?;
    let (go, ready) = oneshot::channel::<()>();
    let sink = job::Sink::Rpc {
        outbox: conn.outbox.clone(),
        subscription: id.clone(),
    };
    let registry = conn.subs.clone();
    conn.sub_tasks
        .spawn(tracing::Instrument::in_current_span(async move {
            if ready.await.is_ok() {
                job::run(job, &sink).await;
            }
            drop(slot);
            registry
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
        }));
    Ok((answer, go))
}

/// The answer of `jobs.follow`.
#[derive(serde::Serialize)]
struct FollowAnswer {
    subscription: String,
    since: String,
}
