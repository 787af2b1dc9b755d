//! JSON-RPC error objects: the reserved integers for protocol errors, -32000 for the
//! taxonomy, and `data: {code, status, …}` always.

use gatos_types::ErrorCode;
use serde::Serialize;
use serde_json::{Map, Value, json};

/// -32700: the line is not JSON.
pub const PARSE_ERROR: i64 = -32700;
/// -32600: the JSON is not a request.
pub const INVALID_REQUEST: i64 = -32600;
/// -32601: no such method.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// -32602: the params do not fit the method.
pub const INVALID_PARAMS: i64 = -32602;
/// -32603: the server failed.
pub const INTERNAL_ERROR: i64 = -32603;
/// -32000: a taxonomy error (`data.code` says which).
pub const SERVER_ERROR: i64 = -32000;

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RpcError {
    /// The integer code.
    pub code: i64,
    /// A human message.
    pub message: String,
    /// `{code, status, …details}`.
    pub data: Value,
}

fn protocol(code: i64, message: impl Into<String>) -> RpcError {
    RpcError {
        code,
        message: message.into(),
        data: json!({"code": ErrorCode::InvalidInput, "status": ErrorCode::InvalidInput.status()}),
    }
}

impl RpcError {
    /// -32700.
    pub fn parse_error(detail: impl std::fmt::Display) -> RpcError {
        protocol(PARSE_ERROR, format!("parse error: {detail}"))
    }
    /// -32600.
    pub fn invalid_request(detail: impl std::fmt::Display) -> RpcError {
        protocol(INVALID_REQUEST, format!("invalid request: {detail}"))
    }
    /// -32601.
    pub fn method_not_found(method: &str) -> RpcError {
        let shown: String = method.chars().take(100).collect();
        protocol(METHOD_NOT_FOUND, format!("method not found: {shown:?}"))
    }
    /// -32602.
    pub fn invalid_params(detail: impl std::fmt::Display) -> RpcError {
        protocol(INVALID_PARAMS, format!("invalid params: {detail}"))
    }
    /// -32603, `data.code` Internal.
    pub fn internal(detail: impl std::fmt::Display) -> RpcError {
        RpcError {
            code: INTERNAL_ERROR,
            message: format!("internal error: {detail}"),
            data: json!({"code": ErrorCode::Internal, "status": 500}),
        }
    }
    /// -32000 with a taxonomy code and extra details merged into `data`.
    pub fn taxonomy(
        code: ErrorCode,
        message: impl Into<String>,
        details: &Map<String, Value>,
    ) -> RpcError {
        let mut data = Map::new();
        data.insert("code".into(), json!(code));
        data.insert("status".into(), json!(code.status()));
        for (k, v) in details {
            data.insert(k.clone(), v.clone());
        }
        RpcError {
            code: code.rpc_code(),
            message: message.into(),
            data: Value::Object(data),
        }
    }
    /// The `data.code` string, for logs and tests.
    pub fn taxonomy_code(&self) -> Option<&str> {
        self.data.get("code").and_then(Value::as_str)
    }
}
