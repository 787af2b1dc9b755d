//! Requests and responses (JSON-RPC 2.0), with the edge rules of DESIGN §6.
//!
//! * An `id` member (even `null`) makes a request; without one it is a notification,
//!   answered with nothing.
//! * A batch is an array; an empty one is an invalid request; a batch of notifications
//!   is answered with nothing; `[1,2,3]` is three invalid-request errors.
//! * `params` must be an object (positional params are -32602) or absent.

use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::{Map, Value};

use crate::error::RpcError;

/// A request id: a string, a number, or null.
#[derive(Debug, Clone, PartialEq)]
pub enum Id {
    /// `null`.
    Null,
    /// A number, as sent.
    Number(serde_json::Number),
    /// A string.
    String(String),
}

impl Serialize for Id {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Id::Null => s.serialize_unit(),
            Id::Number(n) => n.serialize(s),
            Id::String(v) => s.serialize_str(v),
        }
    }
}

impl Id {
    fn from_value(v: &Value) -> Option<Id> {
        match v {
            Value::Null => Some(Id::Null),
            Value::Number(n) => Some(Id::Number(n.clone())),
            Value::String(s) => Some(Id::String(s.clone())),
            _ => None,
        }
    }
}

/// A well-formed request or notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// `None` for a notification.
    pub id: Option<Id>,
    /// The method name.
    pub method: String,
    /// The params, as given.
    pub params: Params,
}

impl Request {
    /// Tells whether this is a notification (no answer).
    pub fn is_notification(&self) -> bool {
        self.id.is_none()
    }
}

/// The params member.
#[derive(Debug, Clone, PartialEq)]
pub enum Params {
    /// Absent.
    None,
    /// An object (named params).
    Object(Map<String, Value>),
    /// An array (positional params; refused by every gatos method).
    Array(Vec<Value>),
}

impl Params {
    /// The named params as an object (none: an empty one).
    ///
    /// # Errors
    /// -32602 for positional params.
    pub fn into_object(self) -> Result<Map<String, Value>, RpcError> {
        match self {
            Params::None => Ok(Map::new()),
            Params::Object(m) => Ok(m),
            Params::Array(_) => Err(RpcError::invalid_params(
                "positional params are not supported; send an object",
            )),
        }
    }

    /// Decodes named params into `T` (`deny_unknown_fields` structs report extra members).
    ///
    /// # Errors
    /// -32602 for positional params or members that do not fit `T`.
    pub fn parse<T: serde::de::DeserializeOwned>(self) -> Result<T, RpcError> {
        let obj = match self {
            Params::None => Map::new(),
            Params::Object(m) => m,
            Params::Array(_) => {
                return Err(RpcError::invalid_params(
                    "positional params are not supported; send an object",
                ));
            }
        };
        serde_json::from_value(Value::Object(obj)).map_err(RpcError::invalid_params)
    }
}

/// One element of what a line held: a request, or why it is not one.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// A request or notification.
    Request(Request),
    /// Not a request; answer with this error (id null when it could not be read).
    Invalid(Id, RpcError),
}

/// What a line held.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// One element.
    Single(Entry),
    /// A batch (non-empty).
    Batch(Vec<Entry>),
}

fn entry(v: Value) -> Entry {
    let Value::Object(mut m) = v else {
        return Entry::Invalid(Id::Null, RpcError::invalid_request("not an object"));
    };
    let id = match m.remove("id") {
        None => None,
        Some(v) => match Id::from_value(&v) {
            Some(id) => Some(id),
            None => {
                return Entry::Invalid(
                    Id::Null,
                    RpcError::invalid_request("id must be a string, a number or null"),
                );
            }
        },
    };
    let reply_id = id.clone().unwrap_or(Id::Null);
    if m.remove("jsonrpc") != Some(Value::String("2.0".into())) {
        return Entry::Invalid(
            reply_id,
            RpcError::invalid_request("jsonrpc must be \"2.0\""),
        );
    }
    let method = match m.remove("method") {
        Some(Value::String(s)) => s,
        _ => {
            return Entry::Invalid(
                reply_id,
                RpcError::invalid_request("method must be a string"),
            );
        }
    };
    let params = match m.remove("params") {
        None => Params::None,
        Some(Value::Object(o)) => Params::Object(o),
        Some(Value::Array(a)) => Params::Array(a),
        Some(_) => {
            return Entry::Invalid(
                reply_id,
                RpcError::invalid_request("params must be an object or an array"),
            );
        }
    };
    if let Some(extra) = m.keys().next() {
        return Entry::Invalid(
            reply_id,
            RpcError::invalid_request(format!("unknown member {extra:?}")),
        );
    }
    Entry::Request(Request { id, method, params })
}

/// Parses one line.
///
/// # Errors
/// -32700 for text that is not JSON (strict I-JSON: no duplicate names, at most 64 levels
/// deep), -32600 for an empty batch.
pub fn parse(line: &str) -> Result<Incoming, RpcError> {
    let v = gatos_types::jcs::parse_str(line).map_err(RpcError::parse_error)?;
    match v {
        Value::Array(items) if items.is_empty() => Err(RpcError::invalid_request("empty batch")),
        Value::Array(items) => Ok(Incoming::Batch(items.into_iter().map(entry).collect())),
        other => Ok(Incoming::Single(entry(other))),
    }
}

/// A response line.
#[derive(Debug, Clone)]
pub struct Response {
    /// The request's id (null when unknown).
    pub id: Id,
    /// The result (already serialised) or the error.
    pub outcome: Result<Box<serde_json::value::RawValue>, RpcError>,
}

/// Serialises a result once, for a [`Response`].
///
/// # Errors
/// -32603 when the value cannot be serialised (a map with non-string keys, say).
pub fn result<T: Serialize>(v: &T) -> Result<Box<serde_json::value::RawValue>, RpcError> {
    serde_json::value::to_raw_value(v).map_err(RpcError::internal)
}

impl Serialize for Response {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("jsonrpc", "2.0")?;
        m.serialize_entry("id", &self.id)?;
        match &self.outcome {
            Ok(v) => m.serialize_entry("result", v)?,
            Err(e) => m.serialize_entry("error", e)?,
        }
        m.end()
    }
}

/// A notification line from the server: `{"jsonrpc":"2.0","method":…,"params":…}`.
#[derive(Debug, Clone, Serialize)]
pub struct Notification<'a, P: Serialize> {
    /// Always "2.0".
    pub jsonrpc: &'static str,
    /// The method.
    pub method: &'a str,
    /// The params.
    pub params: P,
}

impl<'a, P: Serialize> Notification<'a, P> {
    /// Makes a notification.
    pub fn new(method: &'a str, params: P) -> Self {
        Notification {
            jsonrpc: "2.0",
            method,
            params,
        }
    }
}

/// Serialises a response as one line (without the newline).
pub fn to_line<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|e| {
        format!("{{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{{\"code\":-32603,\"message\":\"could not encode the response: {e}\"}}}}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_distinguish_null_from_absent() {
        let Ok(Incoming::Single(Entry::Request(r))) =
            parse(r#"{"jsonrpc":"2.0","method":"m","id":null}"#)
        else {
            panic!("a request")
        };
        assert_eq!(r.id, Some(Id::Null));
        let Ok(Incoming::Single(Entry::Request(r))) = parse(r#"{"jsonrpc":"2.0","method":"m"}"#)
        else {
            panic!("a notification")
        };
        assert!(r.is_notification());
    }

    #[test]
    fn the_specification_examples_parse_as_specified() {
        assert_eq!(
            parse(r#"{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]"#)
                .map_err(|e| e.code),
            Err(-32700)
        );
        assert!(matches!(
            parse(r#"{"jsonrpc": "2.0", "method": 1, "params": "bar"}"#),
            Ok(Incoming::Single(Entry::Invalid(Id::Null, e))) if e.code == -32600
        ));
        assert_eq!(parse("[]").map_err(|e| e.code), Err(-32600));
        assert!(matches!(parse("[1]"), Ok(Incoming::Batch(v)) if v.len() == 1));
        assert!(
            matches!(parse("[1,2,3]"), Ok(Incoming::Batch(v)) if v.len() == 3 && v.iter().all(|e| matches!(e, Entry::Invalid(Id::Null, _))))
        );
        assert_eq!(parse(r#"[{"jsonrpc":"2.0","method":"sum","params":[1,2,4],"id":"1"},{"jsonrpc":"2.0","method"]"#).map_err(|e| e.code), Err(-32700));
    }

    #[test]
    fn positional_params_are_invalid_params() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        struct P {
            #[allow(dead_code, reason = "parsed only")]
            a: u32,
        }
        assert_eq!(
            Params::Array(vec![])
                .parse::<P>()
                .map_err(|e| e.code)
                .unwrap_err(),
            -32602
        );
        let mut m = Map::new();
        m.insert("a".into(), Value::from(1));
        m.insert("b".into(), Value::from(1));
        assert_eq!(
            Params::Object(m)
                .parse::<P>()
                .map_err(|e| e.code)
                .unwrap_err(),
            -32602
        );
    }

    #[test]
    fn responses_serialise_as_the_spec_shows() {
        let r = Response {
            id: Id::Number(1.into()),
            outcome: result(&19),
        };
        assert_eq!(to_line(&r), r#"{"jsonrpc":"2.0","id":1,"result":19}"#);
        let e = Response {
            id: Id::Null,
            outcome: Err(RpcError::parse_error("x")),
        };
        assert!(to_line(&e).starts_with(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700"#));
    }
}
