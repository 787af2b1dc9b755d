//! Resources and their subscriptions (ADR 0043): `gatos://topics/{topic}`,
//! `gatos://jobs/{id}`, `gatos://jobs/{id}/logs` and `gatos://audit`, each read through
//! [`gatos_api::Service::call`] under the same offer rules as the tool of its operation,
//! and watched through the daemon's shared topic watchers.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use gatos_api::Actor;
use gatos_api::ops::names as n;
use gatos_types::{ErrorCode, Topic};
use rmcp::ErrorData as McpError;
use rmcp::model::{Resource, ResourceContents, ResourceTemplate};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use super::Face;
use super::tools::{self, MCP_MAX_READ_LIMIT, Policy};

/// The most resources one session watches at once.
pub const MCP_MAX_SUBSCRIPTIONS: usize = 64;

/// The scheme of every gatos resource.
const SCHEME: &str = "gatos://";

/// What a resource URI names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `gatos://topics/{topic}`: the topic's last page.
    Topic(Topic),
    /// `gatos://jobs/{id}`: the job.
    Job(gatos_types::Ulid),
    /// `gatos://jobs/{id}/logs`: the latest attempt's stdout.
    Logs(gatos_types::Ulid),
    /// `gatos://audit`: the audit trail's first page.
    Audit,
}

impl Target {
    /// Parses a resource URI.
    ///
    /// # Errors
    /// A message when it names no gatos resource.
    pub fn parse(uri: &str) -> Result<Target, String> {
        let shown: String = uri.chars().take(200).collect();
        let rest = uri
            .strip_prefix(SCHEME)
            .ok_or_else(|| format!("{shown:?} is not a gatos:// resource"))?;
        let parts: Vec<&str> = rest.split('/').collect();
        let bad = || format!("{shown:?} names no gatos resource");
        match parts.as_slice() {
            ["audit"] => Ok(Target::Audit),
            ["topics", t] => {
                let t = percent_encoding::percent_decode_str(t)
                    .decode_utf8()
                    .map_err(|_| bad())?;
                Ok(Target::Topic(t.parse().map_err(|_| bad())?))
            }
            ["jobs", id] => Ok(Target::Job(id.parse().map_err(|_| bad())?)),
            ["jobs", id, "logs"] => Ok(Target::Logs(id.parse().map_err(|_| bad())?)),
            _ => Err(bad()),
        }
    }

    /// The operation whose tool decides whether the resource is offered.
    fn op(&self) -> &'static str {
        match self {
            // The audit trail's topic is `gatos://audit`'s, whatever URI names it.
            Target::Topic(t) if gatos_api::ops::GUARDED_TOPICS.contains(&t.as_str()) => {
                n::AUDIT_READ
            }
            Target::Topic(_) => n::MESSAGES_READ,
            Target::Job(_) => n::JOBS_GET,
            Target::Logs(_) => n::JOBS_LOGS,
            Target::Audit => n::AUDIT_READ,
        }
    }

    /// The topic whose moves may change it.
    fn topic(&self) -> Topic {
        match self {
            Target::Topic(t) => t.clone(),
            Target::Job(_) | Target::Logs(_) => gatos::jobs::events_topic(),
            Target::Audit => gatos::audit::topic(),
        }
    }
}

/// The resource templates.
pub fn templates() -> Vec<ResourceTemplate> {
    let t = |uri: &str, name: &str, what: &str| {
        ResourceTemplate::new(uri, name)
            .with_description(what)
            .with_mime_type("application/json")
    };
    vec![
        t(
            "gatos://topics/{topic}",
            "topic",
            "The last page of a topic (messages.read), newest last.",
        ),
        t("gatos://jobs/{id}", "job", "One job (jobs.get)."),
        t(
            "gatos://jobs/{id}/logs",
            "job-logs",
            "The start of the latest attempt's stdout (jobs.logs).",
        ),
    ]
}

/// Runs one operation through the service on the blocking pool.
async fn call(
    shared: &Face,
    actor: &Actor,
    op: &'static str,
    params: Map<String, Value>,
) -> Result<Value, McpError> {
    let service = shared.service.clone();
    let actor = actor.clone();
    let r = shared
        .blocking(move || service.call(&actor, op, params))
        .await;
    match r {
        Ok(Ok(a)) => serde_json::from_str(a.result.get())
            .map_err(|e| McpError::internal_error(format!("re-reading an answer: {e}"), None)),
        Ok(Err(gatos_api::CallError::Failed(e))) => Err(resource_error(&e)),
        Ok(Err(e)) => Err(tools::malformed(e.to_string())),
        Err(e) => Err(e),
    }
}

/// A taxonomy error of a resource read as a JSON-RPC error: `NotFound` is MCP's resource
/// not found, others keep the taxonomy's integer; `data` carries the code and a hint.
fn resource_error(e: &gatos::Error) -> McpError {
    let data =
        json!({"code": e.code(), "status": e.code().status(), "hint": tools::hint(e.code())});
    if e.code() == ErrorCode::NotFound {
        return McpError::resource_not_found(e.to_string(), Some(data));
    }
    McpError::new(
        rmcp::model::ErrorCode(i32::try_from(e.code().rpc_code()).unwrap_or(-32000)),
        e.to_string(),
        Some(data),
    )
}

fn params(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// The last position of `topic` (0 when it has none).
async fn last_seq(shared: &Face, actor: &Actor, topic: &Topic) -> Result<u64, McpError> {
    let topics = call(shared, actor, n::TOPICS_LIST, Map::new()).await?;
    Ok(topics["topics"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["topic"].as_str() == Some(topic.as_str()))
        .and_then(|t| t["last_seq"].as_u64())
        .unwrap_or(0))
}

/// Checks that the resource's operation is offered.
fn offered(policy: &Policy, target: &Target) -> Result<(), McpError> {
    let Some(op) = tools::tool_op(target.op()) else {
        return Err(McpError::internal_error("a resource without its row", None));
    };
    policy.offered(op).map_err(|r| {
        McpError::new(
            rmcp::model::ErrorCode(-32000),
            r.message,
            Some(json!({"code": ErrorCode::Forbidden, "status": 403, "hint": r.hint})),
        )
    })
}

/// Whether the resource's operation is offered under `policy`.
pub fn is_offered(policy: &Policy, target: &Target) -> bool {
    offered(policy, target).is_ok()
}

/// Reads a resource: its JSON, as text.
pub async fn read(
    shared: &Face,
    policy: &Policy,
    actor: &Actor,
    uri: &str,
) -> Result<ResourceContents, McpError> {
    let target = Target::parse(uri).map_err(|m| McpError::resource_not_found(m, None))?;
    offered(policy, &target)?;
    let v = match &target {
        Target::Topic(t) => {
            let last = last_seq(shared, actor, t).await?;
            let since = last.saturating_sub(MCP_MAX_READ_LIMIT);
            let p = params(&[
                ("topic", json!(t)),
                ("since_seq", json!(since)),
                ("limit", json!(MCP_MAX_READ_LIMIT)),
            ]);
            call(shared, actor, n::MESSAGES_READ, p).await?
        }
        Target::Job(id) => call(shared, actor, n::JOBS_GET, params(&[("id", json!(id))])).await?,
        Target::Logs(id) => {
            let p = params(&[
                ("id", json!(id)),
                ("max_bytes", json!(tools::MCP_MAX_LOG_BYTES)),
            ]);
            call(shared, actor, n::JOBS_LOGS, p).await?
        }
        Target::Audit => call(shared, actor, n::AUDIT_READ, Map::new()).await?,
    };
    // The same byte cap as a tool's answer.
    let text = v.to_string();
    if text.len() > tools::MCP_MAX_TOOL_OUTPUT {
        let code = ErrorCode::PayloadTooLarge;
        return Err(McpError::new(
            rmcp::model::ErrorCode(i32::try_from(code.rpc_code()).unwrap_or(-32000)),
            format!(
                "{uri} is {} bytes, more than this server's {}",
                text.len(),
                tools::MCP_MAX_TOOL_OUTPUT
            ),
            Some(json!({"code": code, "status": code.status(),
                        "hint": "read it in smaller pieces with its tool (messages.read with a smaller limit, jobs.logs with max_bytes)",
                        "bytes": text.len(), "max_bytes": tools::MCP_MAX_TOOL_OUTPUT})),
        ));
    }
    Ok(ResourceContents::TextResourceContents {
        uri: uri.to_owned(),
        mime_type: Some("application/json".into()),
        text,
        meta: None,
    })
}

/// The concrete resources: the audit trail and one per topic (at most
/// [`MCP_MAX_READ_LIMIT`] topics), as far as their tools are offered.
pub async fn list(
    shared: &Face,
    policy: &Policy,
    actor: &Actor,
) -> Result<Vec<Resource>, McpError> {
    let mut out = Vec::new();
    if offered(policy, &Target::Audit).is_ok() {
        out.push(
            Resource::new("gatos://audit", "audit")
                .with_description("The audit trail's first page (audit.read).")
                .with_mime_type("application/json"),
        );
    }
    let probe = Target::Topic(gatos::audit::topic());
    if offered(policy, &probe).is_ok() {
        let topics = call(shared, actor, n::TOPICS_LIST, Map::new()).await?;
        let names = topics["topics"].as_array().into_iter().flatten();
        for t in names
            .filter_map(|t| t["topic"].as_str())
            .take(MCP_MAX_READ_LIMIT as usize)
        {
            out.push(
                Resource::new(format!("gatos://topics/{t}"), format!("topic {t}"))
                    .with_mime_type("application/json"),
            );
        }
    }
    Ok(out)
}

/// What tells a resource changed: the topic's last position, or the job's row.
async fn fingerprint(shared: &Face, actor: &Actor, target: &Target) -> Option<String> {
    let r = match target {
        Target::Topic(t) => last_seq(shared, actor, t).await.map(|s| s.to_string()),
        Target::Audit => last_seq(shared, actor, &gatos::audit::topic())
            .await
            .map(|s| s.to_string()),
        Target::Job(id) | Target::Logs(id) => {
            call(shared, actor, n::JOBS_GET, params(&[("id", json!(id))]))
                .await
                .map(|v| v.to_string())
        }
    };
    r.ok()
}

/// Where an update goes: a legacy session's peer, or a `subscriptions/listen` stream.
#[derive(Clone)]
pub enum Sink {
    /// `resources/subscribe` (protocol 2025-11-25 and older).
    Peer(rmcp::Peer<rmcp::RoleServer>),
    /// `subscriptions/listen` (2026-07-28).
    Listen(rmcp::service::SubscriptionSink),
}

impl Sink {
    async fn updated(&self, uri: &str) -> bool {
        match self {
            Sink::Peer(p) => p
                .notify_resource_updated(rmcp::model::ResourceUpdatedNotificationParam::new(uri))
                .await
                .is_ok(),
            Sink::Listen(s) => s.notify_resource_updated(uri).await.is_ok(),
        }
    }
}

/// Where a subscription starts from: the watch of the resource's topic, taken before its
/// state is read, and that state. Taken before the subscription is acknowledged, so a
/// change the client makes right after the acknowledgement is never part of it.
/// A subscription holds one of the daemon's stream slots (shared by every face, counted in
/// `gatos.health`) while it runs.
pub struct Baseline {
    moves: tokio::sync::watch::Receiver<crate::subscriptions::Head>,
    last: Option<String>,
    _slot: crate::shared::StreamSlot,
}

/// Takes the baseline of `target`, or `None` when every stream slot of the daemon is taken.
pub async fn baseline(shared: &Face, actor: &Actor, target: &Target) -> Option<Baseline> {
    let slot = shared.shared.stream_slot()?;
    let moves = shared.watchers.watch(&target.topic(), None);
    let last = fingerprint(shared, actor, target).await;
    Some(Baseline {
        moves,
        last,
        _slot: slot,
    })
}

/// What [`baseline_now`] got.
pub enum Taken {
    /// The baseline.
    Now(Baseline),
    /// Every stream slot of the daemon is taken.
    Full,
    /// Not on a multi-threaded runtime: take it later, asynchronously.
    Later,
}

/// Takes the baseline of `target` from synchronous code running on the daemon's
/// (multi-threaded) runtime.
pub fn baseline_now(shared: &Face, actor: &Actor, target: &Target) -> Taken {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return Taken::Later;
    };
    if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
        return Taken::Later;
    }
    match tokio::task::block_in_place(|| handle.block_on(baseline(shared, actor, target))) {
        Some(b) => Taken::Now(b),
        None => Taken::Full,
    }
}

/// Watches one resource from `base` until `stop`: at each move of its topic, reads its
/// fingerprint and sends `notifications/resources/updated` when it changed.
pub async fn watch(
    shared: Face,
    actor: Actor,
    uri: String,
    target: Target,
    base: Baseline,
    sink: Sink,
    stop: CancellationToken,
) {
    let Baseline {
        mut moves,
        mut last,
        _slot,
    } = base;
    // The caller's allowance of watches (a legacy subscribe checked it before answering;
    // a `subscriptions/listen` past it leaves the extra resources unwatched).
    let _watch = match shared.take_watch(&actor) {
        Ok(w) => w,
        Err(why) => {
            tracing::info!(uri = %uri, reason = %why, "MCP resource not watched");
            return;
        }
    };
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            r = moves.changed() => if r.is_err() { return },
        }
        let now = fingerprint(&shared, &actor, &target).await;
        if now != last {
            last = now;
            tracing::debug!(uri = %uri, "MCP resource updated");
            if !sink.updated(&uri).await {
                return;
            }
        }
    }
}

/// The `TooManySubscriptions` answer.
fn too_many(message: &str) -> McpError {
    let code = ErrorCode::TooManySubscriptions;
    McpError::new(
        rmcp::model::ErrorCode(i32::try_from(code.rpc_code()).unwrap_or(-32000)),
        message.to_owned(),
        Some(json!({"code": code, "status": code.status(), "hint": tools::hint(code)})),
    )
}

/// The legacy subscriptions of one session (`resources/subscribe`), by URI.
#[derive(Default)]
pub struct Subscriptions {
    map: Mutex<HashMap<String, CancellationToken>>,
}

impl Subscriptions {
    /// Starts watching `uri` for the session of `peer` (a second subscribe is a no-op),
    /// from its state now (read before the subscription is answered).
    ///
    /// # Errors
    /// Not a resource, not offered, or too many subscriptions.
    pub async fn subscribe(
        &self,
        shared: &Face,
        policy: &Policy,
        actor: Actor,
        uri: &str,
        peer: rmcp::Peer<rmcp::RoleServer>,
        withdrawn: Option<crate::shared::StreamStop>,
    ) -> Result<(), McpError> {
        let target = Target::parse(uri).map_err(|m| McpError::resource_not_found(m, None))?;
        offered(policy, &target)?;
        if self.is_watched(uri) {
            return Ok(());
        }
        // Refused before it is acknowledged when the caller has no watch left (checked
        // again when the watch starts).
        drop(shared.take_watch(&actor).map_err(|m| too_many(&m))?);
        let Some(base) = baseline(shared, &actor, &target).await else {
            return Err(too_many(&shared.shared.streams_full()));
        };
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, stop| !stop.is_cancelled());
        if map.contains_key(uri) {
            return Ok(());
        }
        if map.len() >= MCP_MAX_SUBSCRIPTIONS {
            return Err(too_many(&format!(
                "at most {MCP_MAX_SUBSCRIPTIONS} resources are watched per session"
            )));
        }
        // Ends on unsubscribe, with the session, or when the token is withdrawn.
        let stop = withdrawn
            .as_ref()
            .map_or_else(CancellationToken::new, crate::shared::StreamStop::token);
        map.insert(uri.to_owned(), stop.clone());
        let (face, uri) = (shared.clone(), uri.to_owned());
        tokio::spawn(async move {
            let _withdrawn = withdrawn;
            watch(face, actor, uri, target, base, Sink::Peer(peer), stop).await;
        });
        Ok(())
    }

    /// Whether `uri` is watched now (a watch ended by its token's withdrawal is forgotten,
    /// so a later subscribe starts a new one).
    fn is_watched(&self, uri: &str) -> bool {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, stop| !stop.is_cancelled());
        map.contains_key(uri)
    }

    /// Stops watching `uri`.
    pub fn unsubscribe(&self, uri: &str) {
        let removed = self
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(uri);
        if let Some(stop) = removed {
            stop.cancel();
        }
    }
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        for stop in self
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
        {
            stop.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse_into_targets_and_others_are_refused() {
        let id = "01M91CCYG7A1TZQY76XNEEFP2E";
        assert_eq!(Target::parse("gatos://audit"), Ok(Target::Audit));
        assert!(
            matches!(Target::parse("gatos://topics/ci.events"), Ok(Target::Topic(t)) if t.as_str() == "ci.events")
        );
        assert!(matches!(
            Target::parse(&format!("gatos://jobs/{id}")),
            Ok(Target::Job(_))
        ));
        assert!(matches!(
            Target::parse(&format!("gatos://jobs/{id}/logs")),
            Ok(Target::Logs(_))
        ));
        for bad in [
            "file:///etc/passwd",
            "gatos://",
            "gatos://topics/",
            "gatos://topics/a/b",
            "gatos://jobs/not-a-ulid",
            "gatos://jobs/01M91CCYG7A1TZQY76XNEEFP2E/logs/x",
            "gatos://audit/",
            "gatos://topics/%FF",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
