//! The message envelope, `message/envelope.json` = `{ulid, topic, payload, headers?}`.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::digest::Digest;
use crate::jcs;
use crate::name::Topic;
use crate::ulid::Ulid;

/// The header that deduplicates publishes.
pub const MSG_ID_HEADER: &str = "msg_id";

/// The longest `msg_id`, in bytes.
pub const MAX_MSG_ID_LEN: usize = 256;

/// Why an envelope is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The stored bytes are not an envelope.
    #[error("invalid envelope: {0}")]
    Invalid(String),
    /// `headers` is not an object or `msg_id` is not a short non-empty string.
    #[error("invalid headers: {0}")]
    Headers(&'static str),
}

/// An envelope about to be written: canonical bytes and their content id.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The JCS bytes stored as `message/envelope.json`.
    pub bytes: Vec<u8>,
    /// `blake3(bytes)`.
    pub content_id: Digest,
}

/// Checks the headers of a publish and returns the `msg_id`, if any.
///
/// # Errors
/// [`Error::Headers`] when headers are not an object of which `msg_id`, if present, is a
/// non-empty string of at most [`MAX_MSG_ID_LEN`] bytes.
pub fn check_headers(headers: Option<&Value>) -> Result<Option<&str>, Error> {
    let Some(h) = headers else { return Ok(None) };
    let Some(map) = h.as_object() else {
        return Err(Error::Headers("headers must be a JSON object"));
    };
    match map.get(MSG_ID_HEADER) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_MSG_ID_LEN => Ok(Some(s)),
        Some(_) => Err(Error::Headers(
            "msg_id must be a non-empty string of at most 256 bytes",
        )),
    }
}

/// Builds the canonical envelope of a message.
///
/// Written member by member in JCS order (`headers`, `payload`, `topic`, `ulid`) rather than
/// through an object holding a copy of the payload: the bytes are those of the object's JCS.
pub fn build(ulid: Ulid, topic: &Topic, payload: &Value, headers: Option<&Value>) -> Envelope {
    let mut bytes = Vec::with_capacity(128);
    bytes.push(b'{');
    if let Some(h) = headers {
        bytes.extend_from_slice(br#""headers":"#);
        jcs::write_value(&mut bytes, h);
        bytes.push(b',');
    }
    bytes.extend_from_slice(br#""payload":"#);
    jcs::write_value(&mut bytes, payload);
    bytes.extend_from_slice(br#","topic":"#);
    jcs::write_string(&mut bytes, topic.as_str());
    bytes.extend_from_slice(br#","ulid":"#);
    jcs::write_string(&mut bytes, &ulid.to_string());
    bytes.push(b'}');
    let content_id = Digest::of(&bytes);
    Envelope { bytes, content_id }
}

/// A stored envelope, borrowed from its bytes without re-parsing the payload.
#[derive(Debug, Deserialize)]
pub struct EnvelopeRef<'a> {
    /// The message ULID.
    pub ulid: Ulid,
    /// The topic.
    #[serde(borrow)]
    pub topic: &'a str,
    /// The payload text.
    #[serde(borrow)]
    pub payload: &'a RawValue,
    /// The headers text.
    #[serde(borrow, default)]
    pub headers: Option<&'a RawValue>,
}

impl<'a> EnvelopeRef<'a> {
    /// Parses stored envelope bytes.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the bytes are not an envelope.
    pub fn parse(bytes: &'a [u8]) -> Result<EnvelopeRef<'a>, Error> {
        serde_json::from_slice(bytes).map_err(|e| Error::Invalid(e.to_string()))
    }

    /// Returns the `msg_id` header, if any.
    pub fn msg_id(&self) -> Option<String> {
        let h = self.headers?;
        let v: Map<String, Value> = serde_json::from_str(h.get()).ok()?;
        v.get(MSG_ID_HEADER)
            .and_then(Value::as_str)
            .map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_are_canonical_and_parse_back() {
        let topic: Topic = "t".parse().expect("valid");
        let ulid: Ulid = "01ARZ3NDEKTSV4RRFFQ69G5FAV".parse().expect("valid");
        let headers = serde_json::json!({"msg_id": "x-1"});
        let e = build(
            ulid,
            &topic,
            &serde_json::json!({"b": 1, "a": [1.0]}),
            Some(&headers),
        );
        assert_eq!(
            String::from_utf8(e.bytes.clone()).expect("utf8"),
            r#"{"headers":{"msg_id":"x-1"},"payload":{"a":[1],"b":1},"topic":"t","ulid":"01ARZ3NDEKTSV4RRFFQ69G5FAV"}"#
        );
        let r = EnvelopeRef::parse(&e.bytes).expect("parses");
        assert_eq!(r.ulid, ulid);
        assert_eq!(r.payload.get(), r#"{"a":[1],"b":1}"#);
        assert_eq!(r.msg_id().as_deref(), Some("x-1"));
    }

    #[test]
    fn envelopes_are_the_jcs_of_their_object() {
        let topic: Topic = "jobs.a-b_c".parse().expect("valid");
        let ulid: Ulid = "01ARZ3NDEKTSV4RRFFQ69G5FAV".parse().expect("valid");
        let payloads = [
            serde_json::json!(null),
            serde_json::json!("a \"quoted\"\n\u{1} string \u{e9}\u{1f600}"),
            serde_json::json!([1, 2.5, 1e300, -0.0, true, {"z": 1, "a": {}}]),
            serde_json::json!({"\u{e000}": 1, "\u{1f600}": 2, "b": [], "a": {"y": 1, "x": null}}),
        ];
        let headers = [None, Some(serde_json::json!({"msg_id": "m", "z": [1]}))];
        for payload in &payloads {
            for h in &headers {
                let mut m = Map::new();
                m.insert("ulid".into(), Value::String(ulid.to_string()));
                m.insert("topic".into(), Value::String(topic.to_string()));
                m.insert("payload".into(), payload.clone());
                if let Some(h) = h {
                    m.insert("headers".into(), h.clone());
                }
                let want = jcs::to_vec(&Value::Object(m));
                let got = build(ulid, &topic, payload, h.as_ref());
                assert_eq!(got.bytes, want, "{payload}");
                assert_eq!(got.content_id, Digest::of(&want));
            }
        }
    }

    #[test]
    fn headers_are_checked() {
        assert!(check_headers(Some(&serde_json::json!([1]))).is_err());
        assert!(check_headers(Some(&serde_json::json!({"msg_id": 5}))).is_err());
        assert!(check_headers(Some(&serde_json::json!({"msg_id": ""}))).is_err());
        assert_eq!(
            check_headers(Some(&serde_json::json!({"msg_id": "a"}))),
            Ok(Some("a"))
        );
        assert_eq!(check_headers(None), Ok(None));
    }
}
