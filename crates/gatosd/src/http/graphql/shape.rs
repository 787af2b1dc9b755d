//! RFC 8785 (JCS) bytes of an answer's `data`, written straight from async-graphql's
//! `ConstValue` (ADR 0044 §2: `shapeRoot` digests `JCS(data)`), without converting the
//! answer to a `serde_json::Value` first. The rules are `gatos_types::jcs`'s, byte for byte
//! (its string and number writers are used; a test compares the whole): members sorted by
//! the UTF-16 code units of their names, the minimal escapes, integers within ±2^53 as
//! written, other numbers as ECMAScript prints a double. An enum is its name as a string;
//! binary data is stored JSON text already in its JCS form (`super::json`), written as it
//! stands.

use async_graphql::Value;

/// The JCS bytes of `v`, appended to `out`.
pub fn write(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Boolean(true) => out.extend_from_slice(b"true"),
        Value::Boolean(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => gatos_types::jcs::write_number(out, n),
        Value::String(s) => super::json::write_str(out, s),
        Value::Enum(name) => super::json::write_str(out, name.as_str()),
        // Stored JSON text already in its JCS form (`super::json::canonical`).
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
            // ASCII names (every field name, most payload keys) sort the same by bytes as
            // by UTF-16 code units; others are compared by their code units. A stored
            // payload is canonical JSON already: its members are in order, and are
            // written as they stand.
            let ascii = map.keys().all(|k| k.is_ascii());
            if ascii && map.keys().is_sorted_by(|a, b| a.as_str() <= b.as_str()) {
                write_members(out, map.iter().map(|(k, v)| (k.as_str(), v)));
            } else if ascii && map.len() <= SMALL {
                // A field selection (seven members of a message): sorted in place, on the
                // stack.
                let mut order = [0u8; SMALL];
                let order = &mut order[..map.len()];
                for (i, o) in order.iter_mut().enumerate() {
                    *o = u8::try_from(i).unwrap_or(u8::MAX);
                }
                let key = |i: u8| {
                    map.get_index(usize::from(i))
                        .map_or("", |(k, _)| k.as_str())
                };
                order.sort_unstable_by(|a, b| key(*a).cmp(key(*b)));
                write_members(
                    out,
                    order.iter().filter_map(|i| {
                        map.get_index(usize::from(*i)).map(|(k, v)| (k.as_str(), v))
                    }),
                );
            } else {
                let mut members: Vec<(&str, &Value)> =
                    map.iter().map(|(k, v)| (k.as_str(), v)).collect();
                if ascii {
                    members.sort_unstable_by(|a, b| a.0.cmp(b.0));
                } else {
                    members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
                }
                write_members(out, members.into_iter());
            }
        }
    }
}

/// Objects with at most this many members are sorted on the stack.
const SMALL: usize = 32;

fn write_members<'a>(out: &mut Vec<u8>, members: impl Iterator<Item = (&'a str, &'a Value)>) {
    out.push(b'{');
    for (i, (name, member)) in members.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        gatos_types::jcs::write_string(out, name);
        out.push(b':');
        write(out, member);
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jcs(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        write(&mut out, v);
        out
    }

    #[test]
    fn the_bytes_are_gatos_types_jcs_of_the_same_json() {
        let samples = [
            serde_json::json!(null),
            serde_json::json!({"b": 1, "a": [true, false, null], "": "empty"}),
            serde_json::json!({"é": 1, "e": 2, "\u{10000}": 3, "\u{e000}": 4, "Z": 5}),
            serde_json::json!([
                "quote \" backslash \\ nl \n tab \t cr \r bs \u{8} ff \u{c}",
                "\u{1}\u{1f}\u{7f}",
                "ünï €"
            ]),
            serde_json::json!([
                0,
                -0.0,
                1.5,
                -2,
                9007199254740992u64,
                9007199254740993u64,
                -9007199254740993i64,
                1e21,
                1e-7,
                123456789.125,
                u64::MAX
            ]),
            serde_json::json!({"nested": {"z": {"y": [{"b": 2, "a": 1}]}, "a": "x"}}),
        ];
        for s in samples {
            let v = Value::from_json(s.clone()).expect("converts");
            let want = gatos_types::jcs::to_vec(&v.clone().into_json().expect("to json"));
            assert_eq!(
                String::from_utf8_lossy(&jcs(&v)),
                String::from_utf8_lossy(&want),
                "{s}"
            );
        }
        // Members in any order (a selection's order, as async-graphql builds objects): few
        // (sorted on the stack), many, and with names beyond ASCII.
        for (n, tail) in [
            (7usize, ""),
            (32, ""),
            (33, ""),
            (40, ""),
            (7, "é"),
            (40, "é"),
        ] {
            let mut map = async_graphql::indexmap::IndexMap::new();
            for i in (0..n).rev() {
                // A permutation of 0..101 (37 is prime to 101): names in no order.
                let name = format!(
                    "k{:03}{}",
                    (i * 37 + 11) % 101,
                    if i % 3 == 0 { tail } else { "" }
                );
                map.insert(
                    async_graphql::Name::new(name),
                    Value::from(i32::try_from(i).unwrap_or(0)),
                );
            }
            assert_eq!(map.len(), n);
            let v = Value::Object(map);
            let want = gatos_types::jcs::to_vec(&v.clone().into_json().expect("to json"));
            assert_eq!(
                String::from_utf8_lossy(&jcs(&v)),
                String::from_utf8_lossy(&want),
                "{n} members {tail}"
            );
        }
        // An enum is its name; binary data (canonical JSON text) as it stands.
        let e = Value::Enum(async_graphql::Name::new("SUCCEEDED"));
        assert_eq!(jcs(&e), b"\"SUCCEEDED\"");
        let b = Value::Binary(br#"{"a":[1,"x"]}"#.to_vec().into());
        assert_eq!(jcs(&b), br#"{"a":[1,"x"]}"#);
    }
}
