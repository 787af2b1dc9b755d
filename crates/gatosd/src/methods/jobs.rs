//! `jobs.watch`: job events as a stream (the unary `jobs.*` operations are the service's).

use std::sync::Arc;

use gatos::jobs::events_topic;
use gatos_api::types::WatchParams;
use gatos_rpc::RpcError;
use gatos_rpc::message::Params;
use serde_json::value::RawValue;

use super::After;
use crate::connection::Conn;

/// `jobs.watch {queue?, job?, since?}` → `{subscription, since}`, then `jobs.event`
/// notifications; end it with `messages.unsubscribe {subscription}`.
pub async fn watch(conn: &Arc<Conn>, params: Params) -> Result<(Box<RawValue>, After), RpcError> {
    let p: WatchParams = params.parse()?;
    let since =
        gatos_api::service::cursor(p.since, None, p.since_time, gatos::messages::Cursor::End)
            .map_err(super::call_error)?;
    super::messages::subscribe_to(conn, events_topic(), since, Some(p)).await
}
