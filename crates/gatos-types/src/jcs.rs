//! RFC 8785 JSON Canonicalization Scheme (JCS).
//!
//! A document's identity is `blake3(JCS(document))`, so these bytes are a contract: object
//! members sorted by the UTF-16 code units of their names, no insignificant whitespace,
//! strings with the minimal ECMAScript escapes, and numbers as ECMAScript prints an IEEE-754
//! double. Integers beyond 2^53 therefore lose precision, as they do in every JCS
//! implementation: callers who need them exact send them as strings (I-JSON, RFC 7493).

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::digest::Digest;

/// The deepest nesting of arrays and objects accepted by [`parse`].
pub const MAX_DEPTH: usize = 64;

/// Why a document could not be parsed or canonicalized.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes are not JSON (or not I-JSON: duplicate names, too deep).
    #[error("invalid JSON: {0}")]
    Syntax(String),
    /// A value cannot be represented in JCS.
    #[error("cannot canonicalize: {0}")]
    Unrepresentable(String),
}

/// Returns the JCS bytes of a JSON value.
pub fn to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    write_value(&mut out, value);
    out
}

/// Returns the JCS text of a JSON value.
pub fn to_string(value: &Value) -> String {
    String::from_utf8(to_vec(value)).expect("JCS output is built from UTF-8 pieces")
}

/// Serialises any `Serialize` type to JCS bytes.
///
/// # Errors
/// Fails when the value does not serialise to JSON (a map with non-string keys, say).
pub fn to_vec_of<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, Error> {
    let v = serde_json::to_value(value).map_err(|e| Error::Unrepresentable(e.to_string()))?;
    Ok(to_vec(&v))
}

/// [`to_vec_of`] for a document written from what a user gave (a manifest, settings): it
/// must read back as given, so an integer beyond ±2^53 anywhere in it is refused (JCS
/// writes it as a double, which changes it, and an integer field no longer reads it).
/// Documents already stored are read and written again with [`to_vec_of`], as they are.
///
/// # Errors
/// As [`to_vec_of`]; [`Error::Unrepresentable`] (`InvalidInput`) naming the integer and
/// where it is (a JSON pointer).
pub fn to_vec_exact<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, Error> {
    let v = serde_json::to_value(value).map_err(|e| Error::Unrepresentable(e.to_string()))?;
    if let Some((at, n)) = inexact_integer(&v, &mut String::new()) {
        return Err(Error::Unrepresentable(format!(
            "the integer {n} at {at} is beyond ±2^53 (9007199254740992), the largest a JCS document holds exactly (a number in free-form JSON, such as a job's inputs, can be sent as a string)"
        )));
    }
    Ok(to_vec(&v))
}

/// Checks one integer a user gives for a typed document (a setting): at most 2^53, the
/// largest a JCS document holds exactly.
///
/// # Errors
/// [`Error::Unrepresentable`] (`InvalidInput`) naming `field`.
pub fn exact_u64(field: &str, v: u64) -> Result<(), Error> {
    if v > 1 << 53 {
        return Err(Error::Unrepresentable(format!(
            "{field} {v} is beyond 2^53 (9007199254740992), the largest a JCS document holds exactly"
        )));
    }
    Ok(())
}

/// The first integer beyond ±2^53 in `v`, with its JSON pointer (`/limits/max_messages`;
/// the root is `/`).
fn inexact_integer(v: &Value, at: &mut String) -> Option<(String, serde_json::Number)> {
    const EXACT: u64 = 1 << 53;
    let here = |at: &String| {
        if at.is_empty() {
            "/".to_owned()
        } else {
            at.clone()
        }
    };
    match v {
        Value::Number(n) => {
            let inexact = match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => i.unsigned_abs() > EXACT,
                (None, Some(u)) => u > EXACT,
                (None, None) => false,
            };
            inexact.then(|| (here(at), n.clone()))
        }
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let len = at.len();
            at.push_str(&format!("/{i}"));
            let found = inexact_integer(item, at);
            at.truncate(len);
            found
        }),
        Value::Object(map) => map.iter().find_map(|(name, member)| {
            let len = at.len();
            at.push('/');
            // RFC 6901: `~` and `/` escaped.
            at.push_str(&name.replace('~', "~0").replace('/', "~1"));
            let found = inexact_integer(member, at);
            at.truncate(len);
            found
        }),
        Value::Null | Value::Bool(_) | Value::String(_) => None,
    }
}

/// Returns `blake3:<hex>` of the JCS bytes of a value.
pub fn content_id(value: &Value) -> Digest {
    Digest::of(&to_vec(value))
}

/// Parses JSON strictly: I-JSON (no duplicate member names) and at most [`MAX_DEPTH`] levels.
///
/// # Errors
/// [`Error::Syntax`] names what is wrong and where.
pub fn parse(bytes: &[u8]) -> Result<Value, Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = StrictSeed { depth: 0 }
        .deserialize(&mut de)
        .map_err(|e| Error::Syntax(e.to_string()))?;
    de.end().map_err(|e| Error::Syntax(e.to_string()))?;
    Ok(value)
}

/// Reads a value from any serde format (a YAML manifest, say) under [`parse`]'s rules: no
/// duplicate member names, at most [`MAX_DEPTH`] levels.
///
/// # Errors
/// The format's error, naming the duplicate or the depth.
pub fn strict_value<'de, D: de::Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    StrictSeed { depth: 0 }.deserialize(d)
}

/// Parses JSON text strictly; see [`parse`].
///
/// # Errors
/// As [`parse`].
pub fn parse_str(text: &str) -> Result<Value, Error> {
    parse(text.as_bytes())
}

/// Canonicalizes JSON text: parse strictly, then print as JCS.
///
/// # Errors
/// As [`parse`].
pub fn canonicalize(bytes: &[u8]) -> Result<Vec<u8>, Error> {
    Ok(to_vec(&parse(bytes)?))
}

/// Appends a value's JCS bytes (for writers that put JCS values inside other JCS bytes).
pub fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            if in_utf16_order(map) {
                write_members(out, map.iter());
            } else {
                let mut members: Vec<(&String, &Value)> = map.iter().collect();
                // RFC 8785 §3.2.3: sort by the UTF-16 code units of the names.
                members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
                write_members(out, members.into_iter());
            }
            out.push(b'}');
        }
    }
}

fn write_members<'a>(out: &mut Vec<u8>, members: impl Iterator<Item = (&'a String, &'a Value)>) {
    for (i, (name, member)) in members.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(out, name);
        out.push(b':');
        write_value(out, member);
    }
}

/// Whether a map already iterates in JCS order, so writing it needs no sort. Names in
/// ascending UTF-8 byte order are in ascending code point order, which is their UTF-16
/// order unless a name holds a character from U+E000 up (UTF-16 puts the surrogates of
/// U+10000 and above before U+E000..U+FFFF): UTF-8 lead bytes 0xEE and above. The order is
/// checked, not assumed, as a map keeps insertion order when serde_json's
/// `preserve_order` is on.
fn in_utf16_order(map: &Map<String, Value>) -> bool {
    let mut prev: Option<&str> = None;
    for name in map.keys() {
        if name.bytes().any(|b| b >= 0xEE) || prev.is_some_and(|p| p >= name.as_str()) {
            return false;
        }
        prev = Some(name);
    }
    true
}

/// Appends a number as JCS writes it: an integer within ±2^53 as written, any other as
/// ECMAScript prints the IEEE-754 double (for writers of JCS over other value types).
pub fn write_number(out: &mut Vec<u8>, n: &serde_json::Number) {
    if let Some(i) = n.as_i64() {
        // Integers within ±2^53 print exactly as ECMAScript does; larger ones go through f64.
        if i.unsigned_abs() <= (1u64 << 53) {
            out.extend_from_slice(i.to_string().as_bytes());
            return;
        }
    } else if let Some(u) = n.as_u64()
        && u <= (1u64 << 53)
    {
        out.extend_from_slice(u.to_string().as_bytes());
        return;
    }
    let f = n.as_f64().unwrap_or(0.0);
    let mut buf = ryu_js::Buffer::new();
    out.extend_from_slice(buf.format_finite(f).as_bytes());
}

/// Appends a string as JCS writes it: quoted, with the minimal escapes (for writers of JCS
/// over other value types).
pub fn write_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\x08' => Some(b"\\b"),
            b'\x0c' => Some(b"\\f"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0..=0x1f => None,
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        match escape {
            Some(e) => out.extend_from_slice(e),
            None => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Deserialises a `Value` while refusing duplicate member names and excessive depth.
struct StrictSeed {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for StrictSeed {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor { depth: self.depth })
    }
}

struct StrictVisitor {
    depth: usize,
}

impl StrictVisitor {
    fn deeper<E: de::Error>(&self) -> Result<usize, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(format_args!(
                "nesting deeper than {MAX_DEPTH} levels"
            )));
        }
        Ok(self.depth + 1)
    }
}

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number is not finite"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let depth = self.deeper()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(StrictSeed { depth })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let depth = self.deeper()?;
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            let value = map.next_value_seed(StrictSeed { depth })?;
            if members.contains_key(&name) {
                return Err(de::Error::custom(format_args!(
                    "duplicate member name {name:?}"
                )));
            }
            members.insert(name, value);
        }
        Ok(Value::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use std::path::PathBuf;

    fn testdata() -> PathBuf {
        // RFC 8785's reference vectors, kept in the repository (their source and licence in
        // testdata/jcs/README.md).
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/jcs")
    }

    #[test]
    fn every_rfc8785_vector_canonicalizes_to_its_expected_bytes() {
        let dir = testdata();
        let mut seen = 0;
        for entry in std::fs::read_dir(dir.join("input")).expect("testdata/jcs/input") {
            let path = entry.expect("dir entry").path();
            let name = path.file_name().expect("file name").to_owned();
            let input = std::fs::read(&path).expect("input vector");
            let expected = std::fs::read(dir.join("output").join(&name)).expect("output vector");
            let got = canonicalize(&input).expect("vector parses");
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&expected),
                "vector {name:?}"
            );
            seen += 1;
        }
        assert!(seen >= 6, "expected every vector, saw {seen}");
    }

    #[test]
    fn numbers_follow_ecmascript() {
        let cases = [
            ("0", "0"),
            ("-0", "0"),
            ("-0.0", "0"),
            ("1.0", "1"),
            ("1e21", "1e+21"),
            ("1e20", "100000000000000000000"),
            ("0.000001", "0.000001"),
            ("1e-7", "1e-7"),
            ("9007199254740993", "9007199254740992"),
            ("-9007199254740992", "-9007199254740992"),
            ("18446744073709551615", "18446744073709552000"),
            ("123.456", "123.456"),
        ];
        for (input, want) in cases {
            assert_eq!(
                String::from_utf8(canonicalize(input.as_bytes()).expect("parses")).expect("utf8"),
                want,
                "{input}"
            );
        }
    }

    #[test]
    fn control_characters_use_lowercase_unicode_escapes() {
        let got = to_string(&Value::String("a\u{1}\u{1f}\u{7f}\t".into()));
        assert_eq!(got, "\"a\\u0001\\u001f\u{7f}\\t\"");
    }

    #[test]
    fn duplicate_names_and_deep_nesting_are_refused() {
        assert!(parse(br#"{"a":1,"a":2}"#).is_err());
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(parse(deep.as_bytes()).is_err());
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse(ok.as_bytes()).is_ok());
        assert!(parse(b"{} x").is_err());
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-(1i64 << 53)..=(1i64 << 53)).prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            ".*".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map(".*", inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Equality with numbers compared as the doubles JCS treats them as.
    fn same(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
            (Value::Array(x), Value::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
            }
            (Value::Object(x), Value::Object(y)) => {
                x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
            }
            _ => a == b,
        }
    }

    proptest! {
        #[test]
        fn canonicalization_is_idempotent(v in arb_json()) {
            let once = to_vec(&v);
            let twice = canonicalize(&once).expect("JCS output parses");
            prop_assert_eq!(&once, &twice);
        }

        #[test]
        fn output_parses_back_to_the_same_value(v in arb_json()) {
            let text = to_vec(&v);
            let back = parse(&text).expect("JCS output parses");
            prop_assert!(same(&back, &v), "{} vs {}", back, v);
        }
    }

    /// A typed document written from a user's input must read back as given: settings
    /// with `max_messages` of `u64::MAX` were written as a double and the topic no longer
    /// read (found by a black-box test).
    #[test]
    fn exact_documents_refuse_integers_jcs_cannot_hold() {
        let ok = json!({"a": 9_007_199_254_740_992_u64, "b": -9_007_199_254_740_992_i64, "c": 1.5});
        assert_eq!(to_vec_exact(&ok).expect("exact"), to_vec(&ok));
        for (v, at) in [
            (json!({"max": u64::MAX}), "/max"),
            (json!({"p": i64::MIN}), "/p"),
            (
                json!({"x": [1, {"a/b~": 9_007_199_254_740_993_u64}]}),
                "/x/1/a~1b~0",
            ),
            (json!(9_007_199_254_740_993_i64), "/"),
        ] {
            let e = to_vec_exact(&v).expect_err("inexact");
            assert!(e.to_string().contains(&format!(" at {at} ")), "{e}");
            assert!(to_vec_of(&v).is_ok(), "stored documents still write");
        }
    }
}
