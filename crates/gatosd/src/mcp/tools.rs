//! Tools: the rows of the operation table that carry [`Faces::MCP`], offered under the
//! server's flags, called through [`gatos_api::Service::call`] (ADR 0043).

use std::collections::BTreeSet;
use std::sync::Arc;

use gatos_api::ops::{self, Access, Faces, Op, names as n};
use gatos_api::{Actor, CallError};
use gatos_types::ErrorCode;
use rmcp::ErrorData as McpError;
use rmcp::model::{CallToolResult, JsonObject, Tool, ToolAnnotations};
use serde_json::{Map, Value, json};

use super::Face;

/// The most messages one `messages.read` call returns (the page also stops at the
/// daemon's page byte cap).
pub const MCP_MAX_READ_LIMIT: u64 = 256;
/// The most bytes one `jobs.logs` call returns.
pub const MCP_MAX_LOG_BYTES: u64 = 64 * 1024;
/// The longest a call waits (`jobs.wait`'s `timeout_ms`, `jobs.logs`' `wait_ms`), in ms.
pub const MCP_MAX_WAIT_MS: u64 = 60_000;
/// `jobs.wait`'s wait when the call names none, in ms.
pub const MCP_DEFAULT_WAIT_MS: u64 = 10_000;
/// The face's own member of `messages.read`: a bounded wait for a message.
const WAIT_MS: &str = "wait_ms";
/// The most bytes of a tool's serialized answer.
pub const MCP_MAX_TOOL_OUTPUT: usize = 1024 * 1024;

/// Which tools a server offers: `--read-only`, `--allow-tools`, `--deny-tools`.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Writes are refused (and not listed).
    pub read_only: bool,
    /// Only these, when given (and the only way to an opt-in row such as `jobs.enqueue`).
    pub allow: Option<BTreeSet<String>>,
    /// Never these.
    pub deny: BTreeSet<String>,
}

/// A refusal of a tool that exists but is not offered: `Forbidden`, with the flag to change.
#[derive(Debug)]
pub struct Refusal {
    /// What the agent reads.
    pub message: String,
    /// What would change it.
    pub hint: String,
}

impl Policy {
    /// Checks the names of `--allow-tools` and `--deny-tools`: each must be a tool.
    ///
    /// # Errors
    /// A message naming the first unknown name.
    pub fn check(&self) -> Result<(), String> {
        let all = self.allow.iter().flatten().chain(&self.deny);
        for name in all {
            if tool_op(name).is_none() {
                return Err(format!(
                    "{name:?} is not an MCP tool (docs/mcp.md lists them)"
                ));
            }
        }
        Ok(())
    }

    /// Whether `op` is offered, and why not.
    ///
    /// # Errors
    /// The refusal, naming the flag.
    pub fn offered(&self, op: &Op) -> Result<(), Refusal> {
        let name = op.name;
        if self.deny.contains(name) {
            return Err(Refusal {
                message: format!("the tool {name} is denied by this server (--deny-tools)"),
                hint: "use another tool, or ask the operator to restart gatosd mcp without --deny-tools for it".into(),
            });
        }
        let allowed = self.allow.as_ref().map(|a| a.contains(name));
        if allowed == Some(false) {
            return Err(Refusal {
                message: format!("the tool {name} is not in this server's --allow-tools"),
                hint: format!("ask the operator to add it: --allow-tools {name}"),
            });
        }
        if ops::MCP_OPT_IN.contains(&name) && allowed != Some(true) {
            return Err(Refusal {
                message: format!("the tool {name} runs arbitrary commands and is off by default"),
                hint: format!(
                    "run a registered manifest with manifests.run, or ask the operator to start the server with --allow-tools {name}"
                ),
            });
        }
        if self.read_only && op.access == Access::Write {
            return Err(Refusal {
                message: format!("the tool {name} writes, and this server is read-only"),
                hint: "use read tools only, or ask the operator to restart without --read-only"
                    .into(),
            });
        }
        Ok(())
    }
}

/// The row of an MCP tool name.
pub fn tool_op(name: &str) -> Option<&'static Op> {
    ops::find(name).filter(|o| o.faces.has(Faces::MCP))
}

/// Whether an answer schema describes a JSON object (MCP's `structuredContent` is one);
/// other answers are wrapped as `{"result": …}`.
fn is_object_schema(schema: &Value) -> bool {
    schema.get("type").and_then(Value::as_str) == Some("object")
}

fn as_object(v: Value) -> JsonObject {
    match v {
        Value::Object(m) => m,
        other => {
            let mut m = Map::new();
            m.insert("result".into(), other);
            m
        }
    }
}

/// The output schema of `op`: its response schema, wrapped as `{"result": …}` when the
/// answer is not an object.
fn output_schema(op: &Op) -> JsonObject {
    let schema = serde_json::to_value(op.response_schema()).unwrap_or(Value::Null);
    if is_object_schema(&schema) {
        return as_object(schema);
    }
    let mut inner = as_object(schema);
    let defs = inner.remove("$defs");
    let meta = inner.remove("$schema");
    let mut outer = Map::new();
    if let Some(m) = meta {
        outer.insert("$schema".into(), m);
    }
    outer.insert("type".into(), json!("object"));
    outer.insert("properties".into(), json!({"result": inner}));
    outer.insert("required".into(), json!(["result"]));
    if let Some(d) = defs {
        outer.insert("$defs".into(), d);
    }
    outer
}

/// A line on the caps a face puts on the row, appended to its description.
fn caps_note(op: &Op) -> Option<String> {
    match op.name {
        n::MESSAGES_PUBLISH => Some(
            "Idempotency key: headers.msg_id — a second publish with the same msg_id on the topic returns the first message instead of appending.".into(),
        ),
        n::MESSAGES_READ => Some(format!(
            "At most {MCP_MAX_READ_LIMIT} messages per call (limit), and at most the daemon's page byte cap; continue with since = next_since. With wait_ms, an empty page waits for a message, at most {MCP_MAX_WAIT_MS} ms."
        )),
        n::JOBS_LOGS => Some(format!(
            "At most {MCP_MAX_LOG_BYTES} bytes per call (max_bytes) and a wait of at most {} ms (wait_ms); continue with from_offset = next_offset.",
            gatos_api::service::LOGS_MAX_WAIT_MS
        )),
        n::JOBS_WAIT => Some(format!(
            "Waits at most {MCP_MAX_WAIT_MS} ms (timeout_ms, default {MCP_DEFAULT_WAIT_MS}); call again while done is false."
        )),
        _ => None,
    }
}

/// The tool of `op`.
pub fn tool(op: &Op) -> Tool {
    let mut input = serde_json::to_value(op.request_schema()).unwrap_or(Value::Null);
    if op.name == n::MESSAGES_READ
        && let Some(props) = input.get_mut("properties").and_then(Value::as_object_mut)
    {
        // The face's own member (a bounded wait), taken out before the service is called.
        props.insert(
            WAIT_MS.into(),
            json!({
                "description": format!("When the page is empty, wait up to this many milliseconds for a message (default 0: answer at once; at most {MCP_MAX_WAIT_MS})."),
                "type": ["integer", "null"],
                "minimum": 0,
                "maximum": MCP_MAX_WAIT_MS,
                "default": null,
            }),
        );
    }
    let description = match caps_note(op) {
        Some(note) => format!("{} {note}", op.summary),
        None => op.summary.to_owned(),
    };
    let read = op.access == Access::Read;
    let annotations = ToolAnnotations::new()
        .read_only(read)
        .destructive(!read && op.privileged)
        .idempotent(read || op.name == n::MESSAGES_PUBLISH)
        .open_world(false);
    Tool::new(op.name, description, Arc::new(as_object(input)))
        .with_raw_output_schema(Arc::new(output_schema(op)))
        .with_annotations(annotations)
}

/// The tools `policy` offers, in table order.
pub fn list(policy: &Policy) -> Vec<Tool> {
    ops::OPS
        .iter()
        .filter(|o| o.faces.has(Faces::MCP) && policy.offered(o).is_ok())
        .map(tool)
        .collect()
}

/// What an agent can do about an error of `code`.
pub fn hint(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::InvalidInput | ErrorCode::InvalidEnvelope => {
            "fix the arguments as the tool's inputSchema describes, then call again"
        }
        ErrorCode::NotFound => {
            "check the name or id: topics.list, jobs.list and manifests.list show what exists"
        }
        ErrorCode::Unauthorized | ErrorCode::Forbidden => {
            "this server does not allow it; use a read tool or ask the operator"
        }
        ErrorCode::NotFastForward
        | ErrorCode::AlreadyClaimed
        | ErrorCode::LeaseExpired
        | ErrorCode::Conflict => {
            "someone else wrote first: read the current state, then call again"
        }
        ErrorCode::PayloadTooLarge => {
            "ask for less (a smaller limit or max_bytes) or send a smaller payload"
        }
        ErrorCode::DigestMismatch
        | ErrorCode::SignatureInvalid
        | ErrorCode::UntrustedKey
        | ErrorCode::KeyRevoked => {
            "the proof or signature does not check under this node's trust; do not rely on this result"
        }
        ErrorCode::SecretDetected => "remove the secret from the payload and send it again",
        ErrorCode::Unavailable => "the repository is busy or unreachable: call again in a moment",
        ErrorCode::TooManySubscriptions => "end a subscription before starting another",
        ErrorCode::QueueFull | ErrorCode::RateLimited => {
            "too much at once: wait for the retry-after the details give, then call again"
        }
        ErrorCode::Gone => "what you named is no longer kept: start again from a fresh read",
        ErrorCode::Internal => "a bug in gatos: report it with the message",
    }
}

/// A tool result with `isError: true`: the taxonomy code, status, message, hint and
/// details, as structured content and as text.
pub fn error_result(
    code: ErrorCode,
    message: &str,
    hint: &str,
    details: &Map<String, Value>,
) -> CallToolResult {
    let body = json!({"error": {
        "code": code,
        "status": code.status(),
        "message": message,
        "hint": hint,
        "details": details,
    }});
    let mut r = CallToolResult::structured_error(body);
    r.content = vec![rmcp::model::ContentBlock::text(format!(
        "error[{}]: {message}\nhint: {hint}",
        code.as_str()
    ))];
    r
}

/// The refusal as a tool result.
pub fn refused(r: &Refusal) -> CallToolResult {
    error_result(ErrorCode::Forbidden, &r.message, &r.hint, &Map::new())
}

/// The JSON-RPC error of a malformed call (`-32602`, `data.code = InvalidInput`).
pub fn malformed(message: String) -> McpError {
    McpError::invalid_params(
        message,
        Some(json!({"code": ErrorCode::InvalidInput, "status": ErrorCode::InvalidInput.status()})),
    )
}

/// Caps what a call may ask for (ADR 0043): `messages.read`'s limit, `jobs.logs`' bytes
/// and wait. Values of the wrong type are left for the service to refuse.
fn cap(name: &str, args: &mut Map<String, Value>) {
    let mut at_most = |key: &str, max: u64, default: Option<u64>| match args.get(key) {
        Some(Value::Number(v)) if v.as_u64().is_some_and(|v| v > max) => {
            args.insert(key.into(), json!(max));
        }
        None => {
            if let Some(d) = default {
                args.insert(key.into(), json!(d));
            }
        }
        _ => {}
    };
    match name {
        n::MESSAGES_READ => at_most("limit", MCP_MAX_READ_LIMIT, Some(MCP_MAX_READ_LIMIT)),
        n::JOBS_LOGS => {
            at_most("max_bytes", MCP_MAX_LOG_BYTES, None);
            // The service's own bound (a larger wait is refused there, not clamped).
            at_most("wait_ms", gatos_api::service::LOGS_MAX_WAIT_MS, None);
        }
        _ => {}
    }
}

/// Turns a successful answer into a tool result, refusing one past the byte cap.
fn answered(raw: &serde_json::value::RawValue) -> Result<CallToolResult, McpError> {
    if raw.get().len() > MCP_MAX_TOOL_OUTPUT {
        let mut details = Map::new();
        details.insert("bytes".into(), json!(raw.get().len()));
        details.insert("max_bytes".into(), json!(MCP_MAX_TOOL_OUTPUT));
        return Ok(error_result(
            ErrorCode::PayloadTooLarge,
            &format!(
                "the answer is {} bytes, more than this server's {MCP_MAX_TOOL_OUTPUT}",
                raw.get().len()
            ),
            hint(ErrorCode::PayloadTooLarge),
            &details,
        ));
    }
    let v: Value = serde_json::from_str(raw.get())
        .map_err(|e| McpError::internal_error(format!("re-reading an answer: {e}"), None))?;
    Ok(CallToolResult::structured(Value::Object(as_object(v))))
}

/// The tool result of a failed call, or the JSON-RPC error of a malformed one.
pub fn failed(e: CallError) -> Result<CallToolResult, McpError> {
    match e {
        CallError::InvalidParams(m) => Err(malformed(format!("invalid arguments: {m}"))),
        CallError::UnknownOperation(m) => Err(malformed(format!("no tool {m:?}"))),
        CallError::Failed(e) => Ok(error_result(
            e.code(),
            &e.to_string(),
            hint(e.code()),
            e.details(),
        )),
        CallError::NotUnary(name) => Err(McpError::internal_error(
            format!("{name} reached the wrong handler"),
            None,
        )),
    }
}

/// The operation a policy must also offer for this call, when it is not the tool's own
/// (`audit.read` for a call naming a guarded topic).
fn tools_gate(op: &Op, args: &JsonObject) -> Option<&'static Op> {
    let name = op.policy_name(args);
    (name != op.name).then(|| tool_op(name)).flatten()
}

/// Calls a tool: looks it up, checks the policy, caps its arguments and runs it through
/// the service on the blocking pool (`jobs.wait` waits here, reading through the service).
pub async fn call(
    shared: &Face,
    policy: &Policy,
    actor: Actor,
    name: &str,
    args: Option<JsonObject>,
) -> Result<CallToolResult, McpError> {
    let Some(op) = tool_op(name) else {
        let shown: String = name.chars().take(100).collect();
        return Err(malformed(format!("no tool {shown:?}")));
    };
    if let Err(r) = policy.offered(op) {
        return Ok(refused(&r));
    }
    let mut args = args.unwrap_or_default();
    // A call naming the audit trail's topic reads what `audit.read` reads: it must be
    // offered too (gatos_api::ops::GUARDED_TOPICS).
    if let Some(gate) = tools_gate(op, &args)
        && let Err(r) = policy.offered(gate)
    {
        return Ok(refused(&r));
    }
    cap(op.name, &mut args);
    if op.name == n::JOBS_WAIT {
        return wait(shared, actor, args).await;
    }
    if op.name == n::MESSAGES_READ
        && let Some(w) = args.remove(WAIT_MS)
    {
        let ms = match w {
            Value::Null => 0,
            Value::Number(n) => n.as_u64().ok_or_else(|| {
                malformed("invalid arguments: wait_ms must be a whole number of ms".into())
            })?,
            _ => {
                return Err(malformed(
                    "invalid arguments: wait_ms must be a whole number of ms".into(),
                ));
            }
        };
        if ms > 0 {
            return read_waiting(shared, actor, args, ms.min(MCP_MAX_WAIT_MS)).await;
        }
    }
    let service = shared.service.clone();
    let op_name = op.name;
    // A call that waits (jobs.logs with wait_ms) holds a wait slot of its token on /mcp,
    // not one of the call slots REST clients need (ADR 0038).
    // A quick operation is first tried here, where waiting is refused (ADR 0046, sessions 6
    // and 15: a publish behind its topic's group commit parks, and is awaited here).
    let now = service
        .call_now_or_park(&actor, op_name, &args)
        .settled()
        .await;
    let r = if let Some(r) = now {
        Ok(r)
    } else if crate::http::limit::waits(&args) {
        let who = actor.clone();
        shared
            .blocking_wait(&who, move || service.call(&actor, op_name, args))
            .await
    } else {
        shared
            .blocking(move || service.call(&actor, op_name, args))
            .await
    };
    match r {
        Ok(Ok(answer)) => {
            for t in &answer.touched {
                shared.watchers.poke(t);
            }
            answered(&answer.result)
        }
        Ok(Err(e)) => failed(e),
        Err(e) => Err(e),
    }
}

/// `messages.read` with a wait: reads through the service, then again at each move of the
/// topic while the page is empty, until a message comes or `ms` have passed.
async fn read_waiting(
    shared: &Face,
    actor: Actor,
    args: Map<String, Value>,
    ms: u64,
) -> Result<CallToolResult, McpError> {
    // On /mcp the wait holds one of its token's wait slots (ADR 0038), so one token's
    // waits cannot take every connection.
    let _slot = shared.wait_slot(&actor).await?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(ms);
    // Watched before the first read, so a message landing between the read and the wait
    // wakes it. A topic that does not parse is left for the service to refuse.
    let topic = args
        .get("topic")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<gatos_types::Topic>().ok());
    let mut moves = topic.map(|t| shared.watchers.watch(&t, None));
    if let Some(m) = moves.as_mut() {
        m.mark_unchanged();
    }
    loop {
        let service = shared.service.clone();
        let (who, params) = (actor.clone(), args.clone());
        let r = shared
            .blocking(move || service.call(&who, n::MESSAGES_READ, params))
            .await;
        let answer = match r {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => return failed(e),
            Err(e) => return Err(e),
        };
        let empty = serde_json::from_str::<Value>(answer.result.get())
            .ok()
            .and_then(|v| v["messages"].as_array().map(Vec::is_empty))
            .unwrap_or(false);
        let Some(m) = moves.as_mut().filter(|_| empty) else {
            return answered(&answer.result);
        };
        if tokio::time::Instant::now() >= deadline {
            return answered(&answer.result);
        }
        tokio::select! {
            r = m.changed() => if r.is_err() { return answered(&answer.result) },
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// `jobs.wait`: reads the job through the service, then again at each move of
/// `gatos.jobs`, until it has ended or the wait is over.
async fn wait(
    shared: &Face,
    actor: Actor,
    args: Map<String, Value>,
) -> Result<CallToolResult, McpError> {
    let p: gatos_api::types::WaitParams = serde_json::from_value(Value::Object(args))
        .map_err(|e| malformed(format!("invalid arguments: {e}")))?;
    // As read_waiting: the whole wait under one of the token's wait slots on /mcp.
    let _slot = shared.wait_slot(&actor).await?;
    let ms = p
        .timeout_ms
        .unwrap_or(MCP_DEFAULT_WAIT_MS)
        .min(MCP_MAX_WAIT_MS);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(ms);
    let mut moves = shared.watchers.watch(&gatos::jobs::events_topic(), None);
    moves.mark_unchanged();
    let mut get = Map::new();
    get.insert("id".into(), json!(p.id));
    loop {
        let service = shared.service.clone();
        let (who, params) = (actor.clone(), get.clone());
        let r = shared
            .blocking(move || service.call(&who, n::JOBS_GET, params))
            .await;
        let answer = match r {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => return failed(e),
            Err(e) => return Err(e),
        };
        let job: gatos_types::jobs::JobRow = serde_json::from_str(answer.result.get())
            .map_err(|e| McpError::internal_error(format!("re-reading a job: {e}"), None))?;
        let done = job.state.is_final();
        if done || tokio::time::Instant::now() >= deadline {
            let result = gatos_api::types::WaitResult { job, done };
            let raw = serde_json::value::to_raw_value(&result)
                .map_err(|e| McpError::internal_error(format!("encoding: {e}"), None))?;
            return answered(&raw);
        }
        // A move of gatos.jobs, or the deadline; a closed watch (shutdown) ends the wait.
        tokio::select! {
            r = moves.changed() => if r.is_err() { return Err(McpError::internal_error("the daemon is stopping", None)) },
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_are_the_mcp_rows_in_table_order_with_objects_for_schemas() {
        let tools = list(&Policy::default());
        let names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
        assert!(names.contains(&"messages.publish".to_owned()));
        assert!(names.contains(&"jobs.wait".to_owned()));
        assert!(!names.contains(&"jobs.enqueue".to_owned()), "opt-in");
        assert!(!names.contains(&"jobs.claim".to_owned()));
        let order: Vec<_> = ops::OPS
            .iter()
            .filter(|o| names.iter().any(|n| n == o.name))
            .map(|o| o.name.to_owned())
            .collect();
        assert_eq!(names, order);
        for t in &tools {
            assert!(
                t.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            );
            assert_eq!(
                t.input_schema.get("type"),
                Some(&json!("object")),
                "{}",
                t.name
            );
            let out = t.output_schema.as_ref().expect("an output schema");
            assert_eq!(out.get("type"), Some(&json!("object")), "{}", t.name);
        }
        let ro = Policy {
            read_only: true,
            ..Policy::default()
        };
        assert!(
            list(&ro)
                .iter()
                .all(|t| t.annotations.as_ref().and_then(|a| a.read_only_hint) == Some(true))
        );
        let allow = Policy {
            allow: Some(["jobs.enqueue".to_owned(), "jobs.get".to_owned()].into()),
            ..Policy::default()
        };
        let names: Vec<_> = list(&allow).iter().map(|t| t.name.to_string()).collect();
        assert_eq!(names, ["jobs.enqueue", "jobs.get"]);
        assert!(
            Policy {
                deny: ["nope".to_owned()].into(),
                ..Policy::default()
            }
            .check()
            .is_err()
        );
    }
}
