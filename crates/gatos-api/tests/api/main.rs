//! The operation table against the service, the docs and the schemas.
#![allow(clippy::unwrap_used, missing_docs, reason = "tests")]

mod node;
mod openapi;
mod routes;

use gatos_api::ops::{Access, Faces, OPS, Shape};
use gatos_api::{Actor, CallError, Config, Service};

fn repo_doc() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/rpc.md")
}

/// `docs/rpc.md`'s method list is the table's, rendered.
#[test]
fn rpc_doc_lists_the_table() {
    let path = repo_doc();
    let doc = std::fs::read_to_string(&path).unwrap();
    let (begin, end) = ("<!-- ops:begin -->\n", "<!-- ops:end -->");
    let a = doc
        .find(begin)
        .expect("docs/rpc.md has the ops:begin marker")
        + begin.len();
    let b = doc.find(end).expect("docs/rpc.md has the ops:end marker");
    let want = gatos_api::ops::markdown();
    if doc[a..b] != want {
        if std::env::var_os("GATOS_BLESS").is_some() {
            let fresh = format!("{}{want}{}", &doc[..a], &doc[b..]);
            std::fs::write(&path, fresh).unwrap();
            return;
        }
        panic!(
            "docs/rpc.md's method list is out of step with gatos_api::OPS; \
             run GATOS_BLESS=1 cargo test -p gatos-api --test api -- rpc_doc"
        );
    }
}

/// Names are unique, `<plane>.<verb>`, and every request schema refuses unknown members.
#[test]
fn the_table_is_well_formed() {
    let mut seen = std::collections::BTreeSet::new();
    for op in OPS {
        assert!(seen.insert(op.name), "{} twice", op.name);
        let (plane, verb) = op.name.split_once('.').unwrap();
        assert!(!plane.is_empty() && !verb.is_empty() && !verb.contains('.'));
        assert!(
            op.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_'),
            "{}",
            op.name
        );
        let req = serde_json::to_value(op.request_schema()).unwrap();
        assert_eq!(req["type"], "object", "{} request", op.name);
        assert_eq!(
            req["additionalProperties"],
            serde_json::json!(false),
            "{}: a request refuses unknown members",
            op.name
        );
        let _ = serde_json::to_value(op.response_schema()).unwrap();
        if op.shape != Shape::Unary {
            assert!(!op.faces.has(Faces::CLI) || op.shape == Shape::Unary);
        }
    }
}

/// Every unary row reaches an arm of the service (a missing arm would answer "no
/// operation"), and read-only mode refuses exactly the writes, before parsing params.
#[test]
fn every_unary_operation_has_an_arm_and_read_only_refuses_writes() {
    let repo = gatos_testutil::TempRepo::new().unwrap();
    let gatos = gatos::Gatos::open(repo.path(), gatos::OpenOptions::default()).unwrap();
    let open = Service::new(gatos.clone(), Config::default());
    let ro = Service::new(
        gatos,
        Config {
            read_only: true,
            ..Config::default()
        },
    );
    let actor = Actor::Cli("test".into());
    // A member no request has: every arm must parse (and refuse) it, not skip it.
    let mut bad = serde_json::Map::new();
    bad.insert("no_such_member".into(), serde_json::json!(1));
    for op in OPS.iter().filter(|o| o.shape == Shape::Unary) {
        match open.call(&actor, op.name, bad.clone()) {
            Err(CallError::InvalidParams(_)) => {}
            other => panic!("{}: {other:?}", op.name),
        }
        let r = ro.call(&actor, op.name, bad.clone());
        match (op.access, r) {
            (Access::Write, Err(CallError::Failed(e))) => {
                assert_eq!(e.code(), gatos_types::ErrorCode::Forbidden, "{}", op.name);
            }
            (Access::Read, Err(CallError::InvalidParams(_))) => {}
            (_, other) => panic!("{} in read-only mode: {other:?}", op.name),
        }
    }
    assert!(matches!(
        open.call(&actor, "no.such", serde_json::Map::new()),
        Err(CallError::UnknownOperation(_))
    ));
}

/// Every `Cache::State` row has an arm in `Service::state_tag` (a missing one is an
/// `Internal` error, never a silent `None`), every other row has no tag, and a tag is
/// stable while its refs stand and moves with its params.
#[test]
fn every_state_row_has_a_state_tag_arm() {
    use gatos_api::ops::Cache;
    let repo = gatos_testutil::TempRepo::new().unwrap();
    let gatos = gatos::Gatos::open(repo.path(), gatos::OpenOptions::default()).unwrap();
    let service = Service::new(gatos, Config::default());
    let mut params = serde_json::Map::new();
    params.insert("topic".into(), serde_json::json!("t"));
    params.insert("group".into(), serde_json::json!("g"));
    params.insert("name".into(), serde_json::json!("m"));
    for op in OPS {
        let one = |k: &str| {
            let mut m = serde_json::Map::new();
            if let Some(v) = params.get(k) {
                m.insert(k.into(), v.clone());
            }
            m
        };
        let p = match op.name {
            "messages.read" => one("topic"),
            "manifests.get" => one("name"),
            "checkpoints.get" => {
                let mut m = one("topic");
                m.extend(one("group"));
                m
            }
            _ => serde_json::Map::new(),
        };
        match (op.cache, service.state_tag(op.name, &p)) {
            (Cache::State, Ok(Some(tag))) => {
                assert!(tag.starts_with("g1-") && tag.len() == 29, "{tag}");
                assert_eq!(service.state_tag(op.name, &p).unwrap(), Some(tag));
            }
            (Cache::No, Ok(None)) => {}
            (c, other) => panic!("{} ({c:?}): {other:?}", op.name),
        }
    }
    let a = service.state_tag("messages.read", &{
        let mut m = serde_json::Map::new();
        m.insert("topic".into(), serde_json::json!("a"));
        m
    });
    let b = service.state_tag("messages.read", &{
        let mut m = serde_json::Map::new();
        m.insert("topic".into(), serde_json::json!("b"));
        m
    });
    assert_ne!(a.unwrap(), b.unwrap());
}

/// The guarded topics are the audit trail's, and a call naming one stands for
/// `audit.read` in policies and needs credentials, whatever operation carries it.
#[test]
fn the_audit_topic_is_guarded_whatever_operation_names_it() {
    use gatos_api::ops::{self, GUARDED_TOPICS, names as n};
    assert_eq!(GUARDED_TOPICS, [gatos::audit::AUDIT_TOPIC]);
    let audit = serde_json::json!({"topic": gatos::audit::AUDIT_TOPIC});
    let other = serde_json::json!({"topic": "ci.events"});
    let (audit, other) = (
        audit.as_object().cloned().unwrap_or_default(),
        other.as_object().cloned().unwrap_or_default(),
    );
    for name in [n::MESSAGES_READ, n::MESSAGES_SUBSCRIBE, n::CHECKPOINTS_GET] {
        let op = ops::find(name).expect("a row");
        assert!(op.call_needs_credentials(&audit), "{name}");
        assert_eq!(op.policy_name(&audit), n::AUDIT_READ, "{name}");
        assert_eq!(op.policy_name(&other), name);
    }
    let read = ops::find(n::MESSAGES_READ).expect("a row");
    assert!(!read.call_needs_credentials(&other));
}
