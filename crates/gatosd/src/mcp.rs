//! The MCP face (issue #20, ADR 0043): the operation table's MCP rows as tools, the ledger
//! as resources, over the Model Context Protocol with the official Rust SDK (rmcp), for
//! both protocol eras (the `initialize` handshake of 2025-11-25 and older, and the
//! stateless 2026-07-28 revision with `server/discover` and per-request `_meta`).
//!
//! rmcp runs the protocol: lifecycle, version negotiation, the two eras' result shapes and
//! `subscriptions/listen`. This module only maps: tools are rows of
//! [`gatos_api::ops::OPS`] with [`Faces::MCP`](gatos_api::ops::Faces::MCP), called through
//! [`gatos_api::Service::call`] ([`tools`]); resources read through the same calls and are
//! watched with the daemon's shared watchers ([`resources`]); [`lines`] is the stdio
//! framing. rmcp is named under this module only.

pub mod lines;
pub mod resources;
pub mod tools;

use std::sync::Arc;

use gatos_api::Actor;
use rmcp::ErrorData as McpError;
use rmcp::model::{
    CacheScope, CallToolRequestParams, CallToolResponse, Implementation, InitializeResult,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, ServerCapabilities,
    ServerConfig, SubscribeRequestParams, SubscriptionFilter, UnsubscribeRequestParams,
};
use rmcp::service::{RequestContext, SubscriptionContext};
use rmcp::{RoleServer, ServerHandler};
use tokio_util::sync::CancellationToken;

use crate::shared::Shared;
pub use tools::Policy;

/// How long a client may keep the tool list and the resource templates: they change only
/// when the server restarts with other flags.
const LIST_TTL_MS: u64 = 60_000;

/// How the client reached the server: the half of the actor a client cannot choose.
#[derive(Debug, Clone, Copy)]
pub enum Via {
    /// `gatosd mcp --stdio`: the process that started us.
    Stdio,
    /// `/mcp` of the HTTP face: the caller is read from each request (its token).
    Http(fn(&rmcp::model::Extensions) -> Option<Caller>),
}

/// What the face's handlers share: the daemon's state, and the permits of the blocking
/// calls they make (each holds a blocking-pool thread): per session on stdio (the daemon's
/// requests-in-flight limit), the HTTP face's call slots on `/mcp`.
#[derive(Clone)]
pub struct Face {
    /// The daemon's shared state.
    pub shared: Arc<Shared>,
    calls: Arc<tokio::sync::Semaphore>,
    /// On `/mcp`: the HTTP face's slots of waiting calls (ADR 0038), so a call that waits
    /// holds one of its token's wait slots, not one of the call slots every REST client
    /// needs. `None` on stdio (one client: its calls are its own).
    waits: Option<Arc<crate::http::limit::Slots>>,
    /// Resource watches running, per caller (the transport half of the actor: a token's
    /// name, or `stdio`), across sessions and `subscriptions/listen` calls.
    watches: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
}

/// Resource watches running, per caller ([`Face::with_watches`]).
pub type Watches = Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>;

/// One resource watch of a caller ([`Face::take_watch`]), given back when dropped.
pub struct WatchSlot {
    watches: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    caller: String,
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut map = self
            .watches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.caller) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.caller);
            }
        }
    }
}

impl std::ops::Deref for Face {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.shared
    }
}

impl Face {
    /// The face over `shared`, its blocking calls bounded by `calls`.
    pub fn new(shared: Arc<Shared>, calls: Arc<tokio::sync::Semaphore>) -> Face {
        Face {
            shared,
            calls,
            waits: None,
            watches: Arc::default(),
        }
    }

    /// The face counting its callers' watches in `watches`, shared by every session of
    /// `/mcp` (a token's allowance is over all its sessions).
    pub fn with_watches(mut self, watches: Watches) -> Face {
        self.watches = watches;
        self
    }

    /// The face with the HTTP face's slots of waiting calls (`/mcp`).
    pub fn with_waits(mut self, waits: Arc<crate::http::limit::Slots>) -> Face {
        self.waits = Some(waits);
        self
    }

    /// A wait slot of `actor`'s token for a call that waits, on `/mcp` (`None` on stdio,
    /// where there is nothing to share). Held for the whole wait.
    ///
    /// # Errors
    /// `-32603` when the daemon is stopping.
    pub async fn wait_slot(
        &self,
        actor: &gatos_api::Actor,
    ) -> Result<Option<crate::http::limit::WaitPermit>, McpError> {
        let Some(slots) = &self.waits else {
            return Ok(None);
        };
        let whole = match actor {
            gatos_api::Actor::Mcp(s) => s.clone(),
            other => other.to_string(),
        };
        // The token's name: REST and MCP waits of one token share its allowance.
        let via = whole.rsplit_once('@').map_or(whole.as_str(), |(_, v)| v);
        let token = via.strip_prefix("token:").unwrap_or(via);
        slots
            .wait_slot(token)
            .await
            .map(Some)
            .map_err(|_| McpError::internal_error("the daemon is stopping", None))
    }

    /// Runs a blocking call that waits (`wait_ms`): on `/mcp` under a wait slot of the
    /// caller's token instead of a call slot; on stdio as [`Face::blocking`].
    ///
    /// # Errors
    /// As [`Face::blocking`].
    pub async fn blocking_wait<T, F>(&self, actor: &gatos_api::Actor, f: F) -> Result<T, McpError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        match self.wait_slot(actor).await? {
            Some(_slot) => tokio::task::spawn_blocking(f).await.map_err(|e| {
                tracing::error!(error = %e, "an MCP call failed inside the daemon");
                McpError::internal_error("the call failed inside the daemon", None)
            }),
            None => self.blocking(f).await,
        }
    }

    /// Takes one of the resource watches `actor`'s caller may run
    /// ([`Limits::max_subscriptions`](crate::limits::Limits), as one HTTP token's streams),
    /// or says why not. Keyed on the transport half of the actor (the token), not on the
    /// client's self-declared name: sessions a client abandoned with watches running cost
    /// its own token's allowance, never another's.
    pub fn take_watch(&self, actor: &gatos_api::Actor) -> Result<WatchSlot, String> {
        // The whole actor text (its display is shortened), transport half after the last @.
        let whole = match actor {
            gatos_api::Actor::Mcp(s) => s.clone(),
            other => other.to_string(),
        };
        let caller = whole
            .rsplit_once('@')
            .map_or(whole.as_str(), |(_, via)| via)
            .to_owned();
        let max = self.shared.limits.max_subscriptions;
        let mut map = self
            .watches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = map.entry(caller.clone()).or_insert(0);
        if *n >= max {
            return Err(format!(
                "{caller} watches {max} resources over MCP, the most one caller may; unsubscribe first"
            ));
        }
        *n += 1;
        Ok(WatchSlot {
            watches: self.watches.clone(),
            caller,
        })
    }

    /// Runs a blocking call (the service) on the blocking pool, with a permit.
    ///
    /// # Errors
    /// `-32603` when the daemon is stopping or the call panicked (the daemon goes on).
    pub async fn blocking<T, F>(&self, f: F) -> Result<T, McpError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let _permit = self
            .calls
            .acquire()
            .await
            .map_err(|_| McpError::internal_error("the daemon is stopping", None))?;
        tokio::task::spawn_blocking(f).await.map_err(|e| {
            tracing::error!(error = %e, "an MCP call failed inside the daemon");
            McpError::internal_error("the call failed inside the daemon", None)
        })
    }
}

/// The HTTP caller of a request: its bearer token's name, and whether the token is `ro`.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's name (`NAME TOKEN [ro]` in the token file).
    pub token: String,
    /// The token may only read.
    pub read_only: bool,
    /// What it presented: a watch it starts ends when that is withdrawn.
    pub credential: Option<crate::http::guard::Credential>,
}

/// One MCP session's server: the daemon's shared state, the offer policy, and the
/// session's legacy subscriptions.
pub struct Server {
    face: Face,
    policy: Arc<Policy>,
    via: Via,
    subscriptions: resources::Subscriptions,
    /// Baselines of `subscriptions/listen` URIs, taken before the acknowledgement and
    /// picked up by `listen`.
    baselines: std::sync::Mutex<std::collections::HashMap<String, resources::Baseline>>,
}

impl Server {
    /// A server over `shared`, offering what `policy` allows, for a client reached `via`.
    pub fn new(face: Face, policy: Arc<Policy>, via: Via) -> Server {
        Server {
            face,
            policy,
            via,
            subscriptions: resources::Subscriptions::default(),
            baselines: std::sync::Mutex::default(),
        }
    }

    /// The actor of a request: `mcp:<client>@stdio` or `mcp:<client>@token:<name>`, where
    /// the client's declared name is kept to `[A-Za-z0-9_.-]` (32 at most) and the
    /// transport half is what the server knows; and the policy for it (a token marked `ro`
    /// reads only; so does a request without a known caller).
    fn caller(&self, ctx: &RequestContext<RoleServer>) -> (Actor, Arc<Policy>) {
        let client = ctx.client_info().map(|i| i.name);
        match self.via {
            Via::Stdio => (actor_of(client, "stdio"), self.policy.clone()),
            Via::Http(find) => {
                let caller = find(&ctx.extensions);
                let token = caller.as_ref().map_or("unknown", |c| c.token.as_str());
                let actor = actor_of(client, &format!("token:{token}"));
                let ro = caller.as_ref().is_none_or(|c| c.read_only);
                if ro && !self.policy.read_only {
                    let policy = Policy {
                        read_only: true,
                        ..(*self.policy).clone()
                    };
                    (actor, Arc::new(policy))
                } else {
                    (actor, self.policy.clone())
                }
            }
        }
    }
}

impl Server {
    /// On `/mcp`: a stop for the watches a request starts that fires when the credential
    /// it presented is withdrawn (the token file re-read without it), as an HTTP stream's.
    fn withdrawal(&self, ctx: &RequestContext<RoleServer>) -> Option<crate::shared::StreamStop> {
        let Via::Http(find) = self.via else {
            return None;
        };
        let credential = find(&ctx.extensions)?.credential?;
        Some(
            self.face
                .shared
                .stream_stop(credential, &CancellationToken::new()),
        )
    }
}

/// Whether the request's protocol revision has cache hints on listings (`ttlMs`,
/// `cacheScope`: 2026-07-28 and later); older peers get the listing without them.
fn cache_hints(ctx: &RequestContext<RoleServer>) -> bool {
    ctx.protocol_version()
        .is_some_and(|v| v.as_str() >= rmcp::model::ProtocolVersion::V_2026_07_28.as_str())
}

/// The actor of a client that declared `name`, reached `via` (`stdio`, `token:NAME`).
pub fn actor_of(name: Option<String>, via: &str) -> Actor {
    // Short enough that `mcp:<client>@<via>` fits the 64 characters an actor shows (audit
    // records, commits), so the transport half is never cut.
    let room = 64usize.saturating_sub("mcp:@".len() + via.len()).min(32);
    let client: String = name
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "_.-".contains(*c))
        .take(room)
        .collect();
    let client = if client.is_empty() {
        "unknown".to_owned()
    } else {
        client
    };
    Actor::Mcp(format!("{client}@{via}"))
}

impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        let caps = ServerCapabilities::builder()
            .enable_tools()
            .enable_resources()
            .enable_resources_subscribe()
            .build();
        InitializeResult::new(caps)
            .with_server_info(Implementation::new("gatosd", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "gatos: a Git-native ledger. Tools publish and read topics, run registered \
                 manifests and watch their jobs, verify proofs and read the audit trail. \
                 A failed call answers isError with error.code (the gatos taxonomy) and \
                 error.hint (what to do).",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let list = ListToolsResult::with_all_items(tools::list(&self.caller(&context).1));
        Ok(match cache_hints(&context) {
            true => list
                .with_ttl_ms(LIST_TTL_MS)
                .with_cache_scope(CacheScope::Private),
            false => list,
        })
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let (actor, policy) = self.caller(&context);
        let name = request.name.to_string();
        let started = std::time::Instant::now();
        // A call the client cancelled (`notifications/cancelled`, or its request gone) stops
        // here: its wait, and the wait slot of its token that the wait holds, end with it.
        let r = tokio::select! {
            r = tools::call(&self.face, &policy, actor, &name, request.arguments) => r,
            () = context.ct.cancelled() => {
                tracing::info!(tool = %name, "MCP call cancelled by its client: its wait ended");
                Err(McpError::internal_error("the call was cancelled", None))
            }
        };
        // Counted as the other faces count (ADR 0040): the tool's operation (`_unknown`
        // for no such tool), `ok` or the gatos code of an `isError` answer, `_other` for a
        // malformed call.
        let code = match &r {
            Ok(res) if res.is_error == Some(true) => res
                .structured_content
                .as_ref()
                .and_then(|v| v.pointer("/error/code"))
                .and_then(serde_json::Value::as_str)
                .unwrap_or("_other"),
            Ok(_) => "ok",
            Err(_) => "_other",
        };
        self.face
            .metrics
            .request("mcp", &name, code, started.elapsed());
        r.map(CallToolResponse::Complete)
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let (actor, policy) = self.caller(&context);
        let list = ListResourcesResult::with_all_items(
            resources::list(&self.face, &policy, &actor).await?,
        );
        Ok(match cache_hints(&context) {
            true => list.with_ttl_ms(0).with_cache_scope(CacheScope::Private),
            false => list,
        })
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        let list = ListResourceTemplatesResult::with_all_items(resources::templates());
        Ok(match cache_hints(&context) {
            true => list
                .with_ttl_ms(LIST_TTL_MS)
                .with_cache_scope(CacheScope::Private),
            false => list,
        })
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let (actor, policy) = self.caller(&context);
        let contents = resources::read(&self.face, &policy, &actor, &request.uri).await?;
        Ok(ReadResourceResult::new(vec![contents]).into())
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        // The URIs this server watches, and where each starts: read now, before rmcp
        // acknowledges the subscription (a change after the acknowledgement is notified).
        let actor = actor_of(None, "listen");
        let mut uris = Vec::new();
        for uri in requested.resource_subscriptions.iter().flatten() {
            if uris.len() >= resources::MCP_MAX_SUBSCRIPTIONS {
                break;
            }
            if uris.contains(uri) {
                continue;
            }
            let Ok(target) = resources::Target::parse(uri) else {
                continue;
            };
            if !resources::is_offered(&self.policy, &target) {
                continue;
            }
            match resources::baseline_now(&self.face, &actor, &target) {
                resources::Taken::Now(base) => {
                    self.baselines
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(uri.clone(), base);
                }
                resources::Taken::Full => continue,
                resources::Taken::Later => {}
            }
            uris.push(uri.clone());
        }
        Some(
            SubscriptionFilter::builder()
                .resource_subscriptions(uris)
                .build(),
        )
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), McpError> {
        let (actor, _) = self.caller(context.request_context());
        // Ends with the call, or when the token it came with is withdrawn.
        let withdrawn = self.withdrawal(context.request_context());
        let stop = withdrawn
            .as_ref()
            .map_or_else(CancellationToken::new, crate::shared::StreamStop::token);
        let _stop_all = stop.clone().drop_guard();
        for uri in context.accepted().resource_subscriptions.iter().flatten() {
            let Ok(target) = resources::Target::parse(uri) else {
                continue;
            };
            let taken = self
                .baselines
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(uri);
            let base = match taken {
                Some(b) => b,
                None => match resources::baseline(&self.face, &actor, &target).await {
                    Some(b) => b,
                    None => continue,
                },
            };
            tokio::spawn(resources::watch(
                self.face.clone(),
                actor.clone(),
                uri.clone(),
                target,
                base,
                resources::Sink::Listen(context.sink().clone()),
                stop.child_token(),
            ));
        }
        tokio::select! {
            () = context.cancelled() => {}
            () = stop.cancelled() => {}
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let (actor, policy) = self.caller(&context);
        let withdrawn = self.withdrawal(&context);
        self.subscriptions
            .subscribe(
                &self.face,
                &policy,
                actor,
                &request.uri,
                context.peer.clone(),
                withdrawn,
            )
            .await
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.subscriptions.unsubscribe(&request.uri);
        Ok(())
    }
}

/// Serves one MCP session on `read`/`write` until the client closes it or `stop`.
///
/// # Errors
/// A message when the session could not start (the client closed before its first
/// request, or the transport failed).
pub async fn serve<R, W>(
    shared: Arc<Shared>,
    policy: Arc<Policy>,
    read: R,
    write: W,
    stop: CancellationToken,
) -> Result<(), String>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let max_line = shared.limits.max_line;
    let calls = Arc::new(tokio::sync::Semaphore::new(shared.limits.max_in_flight));
    let server = Server::new(Face::new(shared, calls), policy, Via::Stdio);
    let transport = lines::Lines::new(read, write, max_line);
    let running = match rmcp::ServiceExt::serve_with_ct(server, transport, stop).await {
        Ok(r) => r,
        // The client left, or a signal came, before the first request: nothing to serve.
        Err(
            rmcp::service::ServerInitializeError::ConnectionClosed(_)
            | rmcp::service::ServerInitializeError::Cancelled,
        ) => return Ok(()),
        Err(e) => return Err(format!("the MCP session did not start: {e}")),
    };
    running
        .waiting()
        .await
        .map(|_| ())
        .map_err(|e| format!("the MCP session failed: {e}"))
}

/// Serves one MCP session on the process's stdin and stdout (`gatosd mcp --stdio`).
///
/// # Errors
/// As [`serve`].
pub async fn serve_stdio(
    shared: Arc<Shared>,
    policy: Arc<Policy>,
    stop: CancellationToken,
) -> Result<(), String> {
    let (stdin, stdout) = rmcp::transport::stdio();
    // Journaled publishes become commits within gatos.journal.flushMs (ADR 0046).
    shared.gatos.start_journal_flusher();
    serve(shared, policy, stdin, stdout, stop).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_actor_keeps_the_declared_name_tame_and_the_transport_half() {
        let a = |n: Option<&str>, via| actor_of(n.map(str::to_owned), via).to_string();
        assert_eq!(a(Some("claude-code"), "stdio"), "mcp:claude-code@stdio");
        assert_eq!(a(None, "token:ci"), "mcp:unknown@token:ci");
        assert_eq!(
            a(Some("a@b\nActor: root"), "stdio"),
            "mcp:abActorroot@stdio"
        );
        assert_eq!(
            a(Some(&"x".repeat(100)), "stdio").len(),
            "mcp:@stdio".len() + 32
        );
        // A long token name keeps its whole transport half within the 64 shown.
        let long = format!("token:{}", "t".repeat(40));
        let shown = a(Some(&"x".repeat(100)), &long);
        assert!(shown.ends_with(&format!("@{long}")), "{shown}");
        assert!(shown.len() <= 64, "{shown}");
    }

    /// A caller's watches are counted on its token, whatever client name it declares;
    /// another token has its own allowance; a dropped watch comes back.
    #[test]
    fn watches_are_capped_per_token_not_per_declared_name() -> gatos_testutil::TestResult {
        let repo = gatos_testutil::TempRepo::new()?;
        let g = gatos::Gatos::open(repo.path(), gatos::OpenOptions::default())?;
        let limits = crate::limits::Limits {
            max_subscriptions: 2,
            ..crate::limits::Limits::default()
        };
        let face = Face::new(
            Shared::new(g, limits, None),
            Arc::new(tokio::sync::Semaphore::new(4)),
        );
        let one = face.take_watch(&actor_of(Some("a".into()), "token:ci"));
        let two = face.take_watch(&actor_of(Some("b".into()), "token:ci"));
        assert!(one.is_ok() && two.is_ok());
        let third = face.take_watch(&actor_of(Some("c".into()), "token:ci"));
        assert!(third.is_err_and(|m| m.contains("token:ci")));
        assert!(face.take_watch(&actor_of(None, "token:other")).is_ok());
        drop(one);
        assert!(
            face.take_watch(&actor_of(Some("d".into()), "token:ci"))
                .is_ok()
        );
        Ok(())
    }

    /// On /mcp a waiting call takes a wait slot of its token (the REST waits' pool), whatever
    /// client name it declares; on stdio there is none to take.
    #[tokio::test]
    async fn a_waiting_call_takes_its_tokens_wait_slot() -> gatos_testutil::TestResult {
        let repo = gatos_testutil::TempRepo::new()?;
        let g = gatos::Gatos::open(repo.path(), gatos::OpenOptions::default())?;
        let limits = crate::limits::Limits {
            max_http_waits_per_token: 1,
            ..crate::limits::Limits::default()
        };
        let slots = Arc::new(crate::http::limit::Slots::new(&limits));
        let shared = Shared::new(g, limits, None);
        let calls = Arc::new(tokio::sync::Semaphore::new(4));
        let face = Face::new(shared.clone(), calls.clone()).with_waits(slots);
        let held = face
            .wait_slot(&actor_of(Some("a".into()), "token:ci"))
            .await?;
        assert!(held.is_some());
        // The token's one slot is held: another call of it (any client name) waits for it.
        let b = actor_of(Some("b".into()), "token:ci");
        let again = face.wait_slot(&b);
        let waited = tokio::time::timeout(std::time::Duration::from_millis(200), again).await;
        assert!(waited.is_err(), "a second wait slot of token:ci was given");
        // Another token is not held up, and the call slots were never touched.
        assert!(
            face.wait_slot(&actor_of(None, "token:other"))
                .await?
                .is_some()
        );
        assert_eq!(calls.available_permits(), 4);
        drop(held);
        let after = face
            .wait_slot(&actor_of(Some("c".into()), "token:ci"))
            .await?;
        assert!(after.is_some());
        let stdio = Face::new(shared, calls);
        assert!(stdio.wait_slot(&actor_of(None, "stdio")).await?.is_none());
        Ok(())
    }
}
