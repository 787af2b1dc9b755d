//! The OpenAPI document (ADR 0033): committed, built from the tables, and self-consistent.
//! (An independent validator checks it too: the e2e test `openapi`.)

use gatos_api::ops::{self, Cache};
use gatos_api::routes::{FACE_ROUTES, Idempotency, ROUTES};
use serde_json::Value;

fn committed() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json")
}

/// `docs/openapi.json` is the document, byte for byte.
#[test]
fn openapi_doc_is_the_generated_document() {
    let path = committed();
    let want = gatos_api::openapi::render().unwrap();
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    if have != want {
        if std::env::var_os("GATOS_BLESS").is_some() {
            std::fs::write(&path, want).unwrap();
            return;
        }
        panic!(
            "docs/openapi.json is out of step with gatos_api's tables; \
             run GATOS_BLESS=1 cargo test -p gatos-api --test api -- openapi_doc"
        );
    }
}

fn doc() -> Value {
    gatos_api::openapi::document().unwrap()
}

/// Follows a `$ref` into the document.
fn deref<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let target = doc
                .pointer(r.strip_prefix('#').unwrap())
                .unwrap_or_else(|| panic!("{r} resolves"));
            deref(doc, target)
        }
        None => v,
    }
}

/// Every `$ref` resolves, and every route of the tables is a path of the document with
/// the parameters and answers its row says.
#[test]
fn the_document_describes_every_route() {
    let doc = doc();
    let mut refs = Vec::new();
    collect(&doc, &mut refs);
    for r in &refs {
        assert!(
            doc.pointer(r.strip_prefix('#').unwrap()).is_some(),
            "{r} dangles"
        );
    }
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["security"], serde_json::json!([{"bearerAuth": []}]));
    for route in ROUTES {
        let op = ops::find(route.op).unwrap();
        let item = &doc["paths"][route.path][route.method.openapi_key()];
        assert_eq!(item["operationId"], route.op, "{} {}", route.op, route.path);
        let params: Vec<&Value> = item["parameters"]
            .as_array()
            .map(|a| a.iter().map(|p| deref(&doc, p)).collect())
            .unwrap_or_default();
        let named =
            |name: &str, at: &str| params.iter().any(|p| p["name"] == name && p["in"] == at);
        for f in route.path_fields() {
            assert!(named(f, "path"), "{}: path parameter {f}", route.op);
        }
        assert_eq!(
            named("Idempotency-Key", "header"),
            route.idempotency != Idempotency::None,
            "{}",
            route.op
        );
        assert_eq!(
            named("If-None-Match", "header"),
            op.cache == Cache::State,
            "{}",
            route.op
        );
        assert_eq!(
            named("Last-Event-ID", "header"),
            route.stream,
            "{}",
            route.op
        );
        for p in &params {
            if p["in"] == "query" {
                let schema = deref(&doc, &p["schema"]);
                assert_ne!(
                    schema["type"], "object",
                    "{}: the query parameter {} is an object",
                    route.op, p["name"]
                );
            }
            if p["in"] == "path" {
                assert_eq!(p["required"], true);
            }
        }
        for status in route.success.statuses() {
            assert!(
                item["responses"][status.to_string()].is_object(),
                "{}: {status}",
                route.op
            );
        }
        assert_eq!(
            item["responses"]["default"]["$ref"],
            "#/components/responses/Problem"
        );
        // A body never repeats a path field.
        if let Some(schema) = item["requestBody"]["content"]["application/json"].get("schema") {
            let schema = deref(&doc, schema);
            for f in route.path_fields() {
                assert!(
                    schema["properties"].get(f).is_none(),
                    "{}: the body repeats {f}",
                    route.op
                );
            }
        }
    }
    for face in FACE_ROUTES {
        let item = &doc["paths"][face.path][face.method.openapi_key()];
        assert!(item.is_object(), "{}", face.path);
        assert_eq!(item.get("security").is_some(), !face.auth, "{}", face.path);
    }
    let paths = doc["paths"].as_object().unwrap();
    let methods: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(methods, ROUTES.len() + FACE_ROUTES.len());
}

/// The problem component has RFC 9457's members and the taxonomy's code, and lists every
/// code.
#[test]
fn the_problem_component_carries_the_taxonomy() {
    let doc = doc();
    let problem = &doc["components"]["schemas"]["Problem"];
    for m in [
        "type", "title", "status", "detail", "code", "data", "instance",
    ] {
        assert!(problem["properties"].get(m).is_some(), "Problem.{m}");
    }
    let code = deref(&doc, &problem["properties"]["code"]);
    let text = code.to_string();
    for c in gatos_types::ErrorCode::ALL {
        assert!(text.contains(&format!("\"{c}\"")), "Problem.code lacks {c}");
        assert_eq!(
            gatos_api::openapi::problem_type(c),
            format!("urn:gatos:error:{c}")
        );
    }
}

fn collect(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                if k == "$ref" {
                    out.push(x.as_str().unwrap().to_owned());
                }
                collect(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
        _ => {}
    }
}
