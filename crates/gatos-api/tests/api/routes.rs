//! The HTTP route table against the operation table (ADR 0033).

use std::collections::BTreeSet;

use gatos_api::ops::{self, Access, Faces, OPS, Shape};
use gatos_api::routes::{BASE, FACE_ROUTES, Idempotency, Input, Method, ROUTES, Success};
use serde_json::Value;

/// The members of an operation's request (its schema's properties).
fn request_members(op: &ops::Op) -> serde_json::Map<String, Value> {
    let schema = serde_json::to_value(op.request_schema()).unwrap();
    schema["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default()
}

fn response_members(op: &ops::Op) -> serde_json::Map<String, Value> {
    let schema = serde_json::to_value(op.response_schema()).unwrap();
    schema["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default()
}

/// Every operation offered on HTTP has exactly one route, and every route names such an
/// operation.
#[test]
fn every_http_operation_has_exactly_one_route() {
    for op in OPS {
        let n = ROUTES.iter().filter(|r| r.op == op.name).count();
        if op.faces.has(Faces::HTTP) {
            assert_eq!(n, 1, "{} is offered on HTTP: it needs one route", op.name);
        } else {
            assert_eq!(n, 0, "{} is not offered on HTTP but has a route", op.name);
        }
    }
    for r in ROUTES {
        let op = ops::find(r.op).unwrap_or_else(|| panic!("{} names no operation", r.path));
        assert!(op.faces.has(Faces::HTTP), "{}: not on HTTP", r.op);
    }
    // What the HTTP face replaces with its own means: the bearer header, closing a stream.
    for name in [ops::names::GATOS_AUTH, ops::names::MESSAGES_UNSUBSCRIBE] {
        let op = ops::find(name).unwrap();
        assert!(
            op.faces.has(Faces::RPC) && !op.faces.has(Faces::HTTP),
            "{name}"
        );
    }
}

/// No two routes (of operations or of the face) share a method and a path, nor a path
/// that differs only in the names of its fields.
#[test]
fn no_two_routes_share_a_method_and_path() {
    let mut seen = BTreeSet::new();
    let shape = |p: &str| {
        p.split('/')
            .map(|s| if s.starts_with('{') { "{}" } else { s })
            .collect::<Vec<_>>()
            .join("/")
    };
    for (m, p) in ROUTES
        .iter()
        .map(|r| (r.method, r.path))
        .chain(FACE_ROUTES.iter().map(|f| (f.method, f.path)))
    {
        assert!(seen.insert((m, shape(p))), "{} {p} twice", m.as_str());
    }
}

/// Path fields are members of the request; the rest of the request comes from the query
/// exactly for GET; a page's cursor is a request member and its next cursor a response
/// member; streams are the operations that stream; idempotency keys only on writes.
#[test]
fn routes_agree_with_their_operations() {
    for r in ROUTES {
        let op = ops::find(r.op).unwrap();
        let members = request_members(op);
        // The readiness probe sits at the root with the other probes (ADR 0033).
        assert!(
            r.path.starts_with(&format!("{BASE}/"))
                || (r.op == ops::names::GATOS_READY && r.path == "/readyz"),
            "{}: under {BASE}",
            r.path
        );
        let mut fields = BTreeSet::new();
        for f in r.path_fields() {
            assert!(
                members.contains_key(f),
                "{} {}: no member {f}",
                r.op,
                r.path
            );
            assert!(fields.insert(f), "{}: {f} twice", r.path);
        }
        assert_eq!(
            matches!(r.method, Method::Get | Method::Delete),
            r.input == Input::Query,
            "{}: GET and DELETE take the query, others a body",
            r.op
        );
        assert_eq!(
            r.method == Method::Get,
            op.access == Access::Read,
            "{}",
            r.op
        );
        assert_eq!(r.stream, op.shape == Shape::Stream, "{}", r.op);
        if let Some(page) = r.page {
            assert!(members.contains_key(page.param), "{}: {}", r.op, page.param);
            let answer = response_members(op);
            assert!(answer.contains_key(page.next), "{}: {}", r.op, page.next);
            if let Some(flag) = page.last_when {
                assert!(answer.contains_key(flag), "{}: {flag}", r.op);
            }
        }
        if r.idempotency != Idempotency::None {
            assert_eq!(op.access, Access::Write, "{}", r.op);
        }
        if r.location.is_some() {
            assert!(r.success.statuses().contains(&201), "{}", r.op);
        }
        if r.success == Success::OkOrNoContent || r.stream {
            assert!(op.answer_required, "{}", r.op);
        }
    }
}
