//! Query strings to request fields: `?since_seq=4&queues=a&queues=b` becomes
//! `{"since_seq": 4, "queues": ["a", "b"]}`, each value coerced by the type its field has in
//! the operation's request schema (integer, number, boolean, array of those, else string),
//! so a GET's query means what the same fields mean in a JSON body. A name the request
//! does not have is kept as a string: the request type refuses it (400), as JSON-RPC does.

use serde_json::{Map, Value};

/// The JSON types a schema allows, resolving one `$ref` level into `$defs` and looking
/// through `anyOf`/`oneOf` (an optional field is `T | null`).
fn types(schema: &Value, root: &Value, depth: u8) -> Vec<String> {
    if depth > 8 {
        return Vec::new();
    }
    let mut out = Vec::new();
    if let Some(r) = schema.get("$ref").and_then(Value::as_str)
        && let Some(target) = r
            .strip_prefix("#/")
            .and_then(|p| root.pointer(&format!("/{p}")))
    {
        out.extend(types(target, root, depth + 1));
    }
    match schema.get("type") {
        Some(Value::String(t)) => out.push(t.clone()),
        Some(Value::Array(ts)) => {
            out.extend(ts.iter().filter_map(Value::as_str).map(str::to_owned))
        }
        _ => {}
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(alts)) = schema.get(key) {
            for a in alts {
                out.extend(types(a, root, depth + 1));
            }
        }
    }
    out
}

/// The schema of an array's items (through `$ref` and `T | null`).
fn items<'a>(schema: &'a Value, root: &'a Value, depth: u8) -> Option<&'a Value> {
    if depth > 8 {
        return None;
    }
    if let Some(i) = schema.get("items") {
        return Some(i);
    }
    if let Some(r) = schema.get("$ref").and_then(Value::as_str)
        && let Some(target) = r
            .strip_prefix("#/")
            .and_then(|p| root.pointer(&format!("/{p}")))
        && let Some(i) = items(target, root, depth + 1)
    {
        return Some(i);
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(alts)) = schema.get(key) {
            for a in alts {
                if let Some(i) = items(a, root, depth + 1) {
                    return Some(i);
                }
            }
        }
    }
    None
}

/// One value, as the first of `allowed` it fits: an integer or number, a boolean, else the
/// string itself.
fn scalar(v: &str, allowed: &[String]) -> Value {
    let has = |t: &str| allowed.iter().any(|a| a == t);
    if has("integer") || has("number") {
        if let Ok(n) = v.parse::<u64>() {
            return Value::from(n);
        }
        if let Ok(n) = v.parse::<i64>() {
            return Value::from(n);
        }
        if has("number")
            && let Some(n) = v.parse::<f64>().ok().and_then(serde_json::Number::from_f64)
        {
            return Value::Number(n);
        }
    }
    if has("boolean") && (v == "true" || v == "false") {
        return Value::Bool(v == "true");
    }
    Value::String(v.to_owned())
}

/// One field's value from text (a path segment), coerced by its type in `schema`.
pub fn field(name: &str, raw: &str, schema: &Value) -> Value {
    let allowed = schema
        .get("properties")
        .and_then(|p| p.get(name))
        .map(|p| types(p, schema, 0))
        .unwrap_or_default();
    scalar(raw, &allowed)
}

/// Decodes a query string into request fields, coerced by `schema` (the request's
/// standalone JSON Schema: `properties`, `$defs`).
pub fn fields(query: &str, schema: &Value) -> Map<String, Value> {
    let props = schema.get("properties");
    let mut out = Map::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let prop = props.and_then(|p| p.get(k.as_ref()));
        let allowed = prop.map(|p| types(p, schema, 0)).unwrap_or_default();
        if allowed.iter().any(|t| t == "array") {
            let item_types = prop
                .and_then(|p| items(p, schema, 0))
                .map(|i| types(i, schema, 0))
                .unwrap_or_default();
            let item = scalar(&v, &item_types);
            match out.get_mut(k.as_ref()) {
                Some(Value::Array(a)) => a.push(item),
                _ => {
                    out.insert(k.into_owned(), Value::Array(vec![item]));
                }
            }
        } else {
            // A repeated scalar: the last one wins would hide a mistake; keep both, so the
            // request type refuses an array where it wants one value.
            let value = scalar(&v, &allowed);
            match out.remove(k.as_ref()) {
                None => {
                    out.insert(k.into_owned(), value);
                }
                Some(Value::Array(mut a)) => {
                    a.push(value);
                    out.insert(k.into_owned(), Value::Array(a));
                }
                Some(first) => {
                    out.insert(k.into_owned(), Value::Array(vec![first, value]));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_take_the_types_of_their_fields() {
        let schema = json!({
            "type": "object",
            "properties": {
                "limit": {"type": ["integer", "null"], "format": "uint64"},
                "all": {"type": "boolean"},
                "queues": {"type": "array", "items": {"type": "string"}},
                "ids": {"anyOf": [{"$ref": "#/$defs/Nums"}, {"type": "null"}]},
                "topic": {"$ref": "#/$defs/Topic"},
                "since": {"anyOf": [{"$ref": "#/$defs/Ulid"}, {"type": "null"}]}
            },
            "$defs": {
                "Topic": {"type": "string"},
                "Ulid": {"type": "string"},
                "Nums": {"type": "array", "items": {"type": "integer"}}
            }
        });
        let f = fields(
            "limit=10&all=true&queues=a&queues=b%20c&ids=1&ids=2&topic=12&since=01J&x=1",
            &schema,
        );
        assert_eq!(
            Value::Object(f),
            json!({
                "limit": 10, "all": true, "queues": ["a", "b c"], "ids": [1, 2],
                "topic": "12", "since": "01J", "x": "1"
            })
        );
        // What does not fit stays a string, for the request type to refuse.
        let f = fields("limit=ten&all=yes&limit=3", &schema);
        assert_eq!(Value::Object(f), json!({"limit": ["ten", 3], "all": "yes"}));
    }
}
