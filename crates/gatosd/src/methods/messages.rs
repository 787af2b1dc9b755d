//! `messages.subscribe` and `messages.unsubscribe` (the unary `messages.*` operations are
//! the service's).

use std::sync::Arc;

use gatos::messages::Cursor;
use gatos_api::types::{SubscribeParams, SubscribeResult, UnsubscribeParams};
use gatos_rpc::RpcError;
use gatos_rpc::message::{Params, result};
use serde_json::value::RawValue;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::{After, blocking};
use crate::connection::Conn;
use crate::subscriptions::{self, JobFilter, Subscription};
use gatos_types::Topic;

fn cursor(
    since: Option<gatos_types::Ulid>,
    since_seq: Option<u64>,
    since_time: Option<gatos_types::Timestamp>,
    default: Cursor,
) -> Result<Cursor, RpcError> {
    gatos_api::service::cursor(since, since_seq, since_time, default).map_err(super::call_error)
}

/// `messages.subscribe {topic, since?, since_seq?}`: starts after the answer is queued.
pub async fn subscribe(
    conn: &Arc<Conn>,
    params: Params,
) -> Result<(Box<RawValue>, After), RpcError> {
    let p: SubscribeParams = params.parse()?;
    let since = cursor(p.since, p.since_seq, p.since_time, Cursor::End)?;
    subscribe_to(conn, p.topic, since, None).await
}

/// Starts a subscription to `topic` after `since` (messages, or job events with `jobs`):
/// answers `{subscription, since}`, then runs the subscription until it is cancelled.
pub(crate) async fn subscribe_to(
    conn: &Arc<Conn>,
    topic: Topic,
    since: Cursor,
    jobs: Option<JobFilter>,
) -> Result<(Box<RawValue>, After), RpcError> {
    // Take the slot first (under the registry's lock, so concurrent subscribes on one
    // connection cannot pass the cap together); give it back if the follow fails.
    let id = format!("s{}", conn.shared.next_id());
    let stop = conn.sub_stop.child_token();
    let slot = {
        let mut subs = conn
            .subs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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
    let gatos = conn.shared.gatos.clone();
    let t = topic.clone();
    let follower = match blocking(move || gatos.messages().follow(&t, since)).await {
        Ok(f) => f,
        Err(e) => {
            conn.subs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&id);
            return Err(e);
        }
    };
    let answer = result(&SubscribeResult {
        subscription: id.clone(),
        since: follower.position().1,
    })?;
    let (go, ready) = oneshot::channel();
    let sub = Subscription {
        id,
        changes: conn.shared.watchers.watch(&topic, follower.last_head()),
        follower,
        outbox: conn.outbox.clone(),
        stop,
        registry: conn.subs.clone(),
        shared: conn.shared.clone(),
        jobs,
        slot,
    };
    conn.sub_tasks
        .spawn(tracing::Instrument::in_current_span(subscriptions::run(
            sub, ready,
        )));
    Ok((answer, go))
}

/// `messages.unsubscribe {subscription}`.
pub fn unsubscribe(conn: &Arc<Conn>, params: Params) -> Result<Box<RawValue>, RpcError> {
    let p: UnsubscribeParams = params.parse()?;
    let token: Option<CancellationToken> = conn
        .subs
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(&p.subscription);
    match token {
        Some(t) => {
            t.cancel();
            result(&serde_json::json!({"unsubscribed": true}))
        }
        None => Err(RpcError::taxonomy(
            gatos_types::ErrorCode::NotFound,
            format!("no subscription {:?} on this connection", p.subscription),
            &serde_json::Map::new(),
        )),
    }
}
