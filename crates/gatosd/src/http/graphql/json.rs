//! The answer's JSON (ADR 0044, "As built, third pass"): the body's `data`, written
//! straight from async-graphql's value, byte for byte what `serde_json` writes for it, and
//! stored JSON text (a message's payload and headers) carried into the answer as it is
//! stored when that text is already exactly what the answer would hold.
//!
//! - [`write`] writes a value as `serde_json`'s compact serializer does (strings with the
//!   same escapes, numbers through `serde_json` itself, members in the value's order).
//! - [`canonical`] tells whether stored JSON text is in the one form that is at once
//!   `serde_json`'s output for the parsed value and its RFC 8785 (JCS) form: no
//!   whitespace; integers of at most 15 digits (no fraction, exponent, leading zero or
//!   `-0`); strings whose only escapes are the minimal ones (`\"`, `\\`, `\b`, `\f`, `\n`,
//!   `\r`, `\t`, and `\u00xx` in lowercase for the other control characters); member names
//!   of printable ASCII without escapes, in strictly increasing order (so no name repeats
//!   and the order is JCS's). Stored payloads are canonical JSON, so nearly all pass; any
//!   other text is parsed as before.
//! - Such text travels in the answer's value as [`Value::Binary`], which no resolver of
//!   this schema makes otherwise (JSON has no binary): [`write`] and `shape::write` write
//!   it as it stands. Every answer is written by [`write`], never by async-graphql's serde
//!   form (which would write the bytes as numbers).

use async_graphql::Value;

/// Nesting beyond this is left to the parser.
const MAX_DEPTH: usize = 64;

/// Writes `s` as a JSON string: `serde_json`'s escapes, which are JCS's
/// (`gatos_types::jcs::write_string`); a string with nothing to escape is copied at once.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    // No early exit: the loop is vectorized.
    let dirty = b
        .iter()
        .fold(false, |d, &c| d | (c < 0x20) | (c == b'"') | (c == b'\\'));
    if dirty {
        gatos_types::jcs::write_string(out, s);
    } else {
        out.reserve(b.len() + 2);
        out.push(b'"');
        out.extend_from_slice(b);
        out.push(b'"');
    }
}

/// Writes `v` as `serde_json::to_writer` writes it (compact), except that binary data is
/// canonical JSON text (see the module's doc) and is written as it stands.
pub fn write(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Boolean(true) => out.extend_from_slice(b"true"),
        Value::Boolean(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            // serde_json's own number writer (itoa, ryu), into a Vec: cannot fail.
            let _ = serde_json::to_writer(&mut *out, n);
        }
        Value::String(s) => write_str(out, s),
        Value::Enum(name) => write_str(out, name.as_str()),
        Value::Binary(raw) => out.extend_from_slice(raw),
        Value::List(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            for (i, (name, member)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, name.as_str());
                out.push(b':');
                write(out, member);
            }
            out.push(b'}');
        }
    }
}

/// Whether `text` (JSON) is in the canonical form the module's doc describes.
pub fn canonical(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    value(b, &mut i, 0) && i == b.len()
}

fn value(b: &[u8], i: &mut usize, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    match b.get(*i) {
        Some(b'{') => {
            *i += 1;
            if b.get(*i) == Some(&b'}') {
                *i += 1;
                return true;
            }
            let mut last: Option<&[u8]> = None;
            loop {
                let Some(name) = plain_name(b, i) else {
                    return false;
                };
                if last.is_some_and(|l| l >= name) {
                    return false;
                }
                last = Some(name);
                if b.get(*i) != Some(&b':') {
                    return false;
                }
                *i += 1;
                if !value(b, i, depth + 1) {
                    return false;
                }
                match b.get(*i) {
                    Some(b',') => *i += 1,
                    Some(b'}') => {
                        *i += 1;
                        return true;
                    }
                    _ => return false,
                }
            }
        }
        Some(b'[') => {
            *i += 1;
            if b.get(*i) == Some(&b']') {
                *i += 1;
                return true;
            }
            loop {
                if !value(b, i, depth + 1) {
                    return false;
                }
                match b.get(*i) {
                    Some(b',') => *i += 1,
                    Some(b']') => {
                        *i += 1;
                        return true;
                    }
                    _ => return false,
                }
            }
        }
        Some(b'"') => string(b, i),
        Some(b't') => literal(b, i, b"true"),
        Some(b'f') => literal(b, i, b"false"),
        Some(b'n') => literal(b, i, b"null"),
        Some(b'-' | b'0'..=b'9') => integer(b, i),
        _ => false,
    }
}

fn literal(b: &[u8], i: &mut usize, word: &[u8]) -> bool {
    if b[*i..].starts_with(word) {
        *i += word.len();
        true
    } else {
        false
    }
}

/// An integer of at most 15 digits, without a leading zero (but `0`), not `-0`.
fn integer(b: &[u8], i: &mut usize) -> bool {
    let negative = b.get(*i) == Some(&b'-');
    if negative {
        *i += 1;
    }
    let start = *i;
    while b.get(*i).is_some_and(u8::is_ascii_digit) {
        *i += 1;
    }
    let digits = &b[start..*i];
    let ok = match digits {
        [] => false,
        [b'0'] => !negative,
        [b'0', ..] => false,
        d => d.len() <= 15,
    };
    // A fraction or an exponent follows: not an integer.
    ok && !matches!(b.get(*i), Some(b'.' | b'e' | b'E'))
}

/// A string with minimal escapes only (the bytes are UTF-8: the text is a `str`).
fn string(b: &[u8], i: &mut usize) -> bool {
    *i += 1;
    loop {
        match b.get(*i) {
            None => return false,
            Some(b'"') => {
                *i += 1;
                return true;
            }
            Some(b'\\') => {
                match b.get(*i + 1) {
                    Some(b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't') => *i += 2,
                    Some(b'u') => {
                        // Only \u00xx, lowercase, for a control character without a short
                        // form.
                        let hex = b.get(*i + 2..*i + 6);
                        let Some([b'0', b'0', h, l]) = hex else {
                            return false;
                        };
                        let digit = |c: u8| match c {
                            b'0'..=b'9' => Some(c - b'0'),
                            b'a'..=b'f' => Some(c - b'a' + 10),
                            _ => None,
                        };
                        let (Some(h), Some(l)) = (digit(*h), digit(*l)) else {
                            return false;
                        };
                        let c = h << 4 | l;
                        if c >= 0x20 || matches!(c, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                            return false;
                        }
                        *i += 6;
                    }
                    _ => return false,
                }
            }
            Some(c) if *c < 0x20 => return false,
            Some(_) => *i += 1,
        }
    }
}

/// A member name of printable ASCII without escapes; its bytes.
fn plain_name<'a>(b: &'a [u8], i: &mut usize) -> Option<&'a [u8]> {
    if b.get(*i) != Some(&b'"') {
        return None;
    }
    let start = *i + 1;
    let mut j = start;
    loop {
        match b.get(j)? {
            b'"' => break,
            b'\\' => return None,
            c if (0x20..0x7f).contains(c) => j += 1,
            _ => return None,
        }
    }
    *i = j + 1;
    Some(&b[start..j])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde_bytes(v: &Value) -> Vec<u8> {
        serde_json::to_vec(v).expect("encodes")
    }

    /// Texts in the canonical form, and others that must be parsed.
    const TEXTS: &[(&str, bool)] = &[
        (
            r#"{"body":"the quick brown fox","kind":"bench","n":12,"tags":["a","b","c"]}"#,
            true,
        ),
        (
            r#"{"a":[1,-2,0,null,true,false,{},[]],"b":{"c":"\"\\\b\f\n\r\t\u0001\u001f\u007f"}}"#,
            false,
        ),
        (r#"{"a":"\u0001\u001f é € 𝄞 \u007f"}"#, false),
        (r#"{"a":"\u0001\u001f é € 𝄞"}"#, true),
        (r#"[1,2.5]"#, false),
        (r#"[1e3]"#, false),
        (r#"[1E3]"#, false),
        (r#"[-0]"#, false),
        (r#"[01]"#, false),
        (r#"[123456789012345]"#, true),
        (r#"[1234567890123456]"#, false),
        (r#"[-123456789012345]"#, true),
        (r#"{"b":1,"a":2}"#, false),
        (r#"{"a":1,"a":2}"#, false),
        (r#"{"é":1}"#, false),
        (r#"{"a\"":1}"#, false),
        (r#"{"a": 1}"#, false),
        (r#" 1"#, false),
        (r#""\/""#, false),
        (r#""\u00e9""#, false),
        (r#""\u000A""#, false),
        (r#""\u000a""#, false),
        (r#""\u001F""#, false),
        (r#""\u001f""#, true),
        (r#""""#, true),
        (r#"{}"#, true),
        (r#"[[[[{"a":[{"b":null}]}]]]]"#, true),
        (r#"{"A":1,"B":2,"a":3,"b":[{"z":0,"zz":1}]}"#, true),
        ("\"x\"", true),
        ("0", true),
        ("-1", true),
        ("true", true),
    ];

    #[test]
    fn canonical_text_is_what_serde_json_and_jcs_write_for_its_value() {
        for (text, want) in TEXTS {
            assert_eq!(canonical(text), *want, "{text}");
            let Ok(parsed) = serde_json::from_str::<Value>(text) else {
                continue;
            };
            if *want {
                // The body's bytes and shapeRoot's JCS bytes of the parsed value are the
                // text itself.
                assert_eq!(String::from_utf8_lossy(&serde_bytes(&parsed)), *text);
                let mut jcs = Vec::new();
                super::super::shape::write(&mut jcs, &parsed);
                assert_eq!(String::from_utf8_lossy(&jcs), *text);
                // As binary (raw) data, both writers give the same bytes as for the value.
                let raw = Value::Binary(text.as_bytes().to_vec().into());
                let mut body = Vec::new();
                write(&mut body, &raw);
                assert_eq!(body, text.as_bytes());
                let mut shaped = Vec::new();
                super::super::shape::write(&mut shaped, &raw);
                assert_eq!(shaped, text.as_bytes());
            }
        }
        // Deeper than the bound: left to the parser.
        let deep = format!("{}1{}", "[".repeat(70), "]".repeat(70));
        assert!(!canonical(&deep));
    }

    #[test]
    fn every_value_is_written_as_serde_json_writes_it() {
        let samples = [
            serde_json::json!(null),
            serde_json::json!({"b": 1, "a": [true, false, null], "": "empty"}),
            serde_json::json!({"é": 1, "e": 2, "\u{10000}": 3, "q\"": "\\ \n \u{1} \u{7f} ünï €"}),
            serde_json::json!([
                0,
                -0.0,
                1.5,
                -2,
                9007199254740993u64,
                -9007199254740993i64,
                1e21,
                1e-7,
                u64::MAX
            ]),
            serde_json::json!({"nested": {"z": {"y": [{"b": 2, "a": 1}]}, "a": "x"}}),
        ];
        for s in samples {
            let v = Value::from_json(s.clone()).expect("converts");
            let mut out = Vec::new();
            write(&mut out, &v);
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&serde_bytes(&v)),
                "{s}"
            );
        }
        let e = Value::Enum(async_graphql::Name::new("SUCCEEDED"));
        let mut out = Vec::new();
        write(&mut out, &e);
        assert_eq!(out, serde_bytes(&e));
    }
}
