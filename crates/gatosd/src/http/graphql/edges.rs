//! The edges of a page of messages, resolved in one pass (ADR 0044, "As built, third
//! pass"): the selection under `edges` is read once into a plan, and each edge's value is
//! built from it directly, instead of async-graphql resolving an edge and a node of seven
//! fields per message, each through a boxed future and a context of its own.
//!
//! The value is the one async-graphql builds, member for member and in the same order:
//! fields in selection order with fragment spreads and inline fragments expanded where
//! they stand, `__typename`, aliases as response keys, and a response key selected twice
//! merged into its first place as async-graphql's `insert_value` merges it (the first
//! scalar wins; objects merge member by member). `@skip`/`@include` are removed from the
//! document before execution by async-graphql. Anything the plan does not know — a field
//! with a directive left on it, an unknown field or fragment — goes to async-graphql's own
//! list resolver, so such a query is answered (or refused) exactly as before. The schema
//! registers no extension (whose per-field hooks this pass would skip). A test compares
//! both resolvers on the same selections.

use std::borrow::Cow;

use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::{Field, Selection, SelectionSet};
use async_graphql::{ContextSelectionSet, Name, OutputType, Positioned, ServerResult, Value};

use super::schema::{Message, MessageEdge};

/// The edges of a page of messages (`[MessageEdge!]!` in the schema).
pub struct MessageEdges(pub Vec<MessageEdge>);

/// A scalar of an edge or its node.
#[derive(Debug, Clone, Copy)]
enum Leaf {
    Typename(&'static str),
    Cursor,
    Ulid,
    Seq,
    Topic,
    ContentId,
    Commit,
    Payload,
    Headers,
}

/// One selected field, under its response key.
#[derive(Debug)]
enum Item {
    Leaf(Name, Leaf),
    /// `MessageEdge.node`, with the message's selection.
    Node(Name, Vec<Item>),
}

const EDGE: &str = "MessageEdge";
const MESSAGE: &str = "Message";

/// Whether a fragment with this type condition applies to the object type `name` (as
/// async-graphql decides: no condition, the type itself, or an interface it implements).
fn applies(ctx: &ContextSelectionSet<'_>, condition: Option<&str>, name: &str) -> bool {
    condition.is_none_or(|c| {
        c == name
            || ctx
                .schema_env
                .registry
                .implements
                .get(name)
                .is_some_and(|i| i.contains(c))
    })
}

/// The plan of a selection on `MessageEdge` (`edge`) or `Message` (not `edge`), appended
/// to `out`; `None` for anything it does not know.
fn plan(
    ctx: &ContextSelectionSet<'_>,
    set: &SelectionSet,
    edge: bool,
    out: &mut Vec<Item>,
) -> Option<()> {
    let type_name = if edge { EDGE } else { MESSAGE };
    for selection in &set.items {
        match &selection.node {
            Selection::Field(f) => out.push(field(ctx, f, edge)?),
            Selection::FragmentSpread(spread) => {
                if !spread.node.directives.is_empty() {
                    return None;
                }
                let fragment = ctx
                    .query_env
                    .fragments
                    .get(&spread.node.fragment_name.node)?;
                let condition = fragment.node.type_condition.node.on.node.as_str();
                if applies(ctx, Some(condition), type_name) {
                    plan(ctx, &fragment.node.selection_set.node, edge, out)?;
                }
            }
            Selection::InlineFragment(inline) => {
                if !inline.node.directives.is_empty() {
                    return None;
                }
                let condition = inline
                    .node
                    .type_condition
                    .as_ref()
                    .map(|c| c.node.on.node.as_str());
                if applies(ctx, condition, type_name) {
                    plan(ctx, &inline.node.selection_set.node, edge, out)?;
                }
            }
        }
    }
    Some(())
}

fn field(ctx: &ContextSelectionSet<'_>, f: &Positioned<Field>, edge: bool) -> Option<Item> {
    let f = &f.node;
    if !f.directives.is_empty() || !f.arguments.is_empty() {
        return None;
    }
    let key = f.response_key().node.clone();
    let leaf = match (edge, f.name.node.as_str()) {
        (true, "__typename") => Leaf::Typename(EDGE),
        (false, "__typename") => Leaf::Typename(MESSAGE),
        (true, "cursor") => Leaf::Cursor,
        (true, "node") => {
            let mut node = Vec::new();
            plan(ctx, &f.selection_set.node, false, &mut node)?;
            return Some(Item::Node(key, node));
        }
        (false, "ulid") => Leaf::Ulid,
        (false, "seq") => Leaf::Seq,
        (false, "topic") => Leaf::Topic,
        (false, "contentId") => Leaf::ContentId,
        (false, "commit") => Leaf::Commit,
        (false, "payload") => Leaf::Payload,
        (false, "headers") => Leaf::Headers,
        _ => return None,
    };
    if !f.selection_set.node.items.is_empty() {
        return None;
    }
    Some(Item::Leaf(key, leaf))
}

/// async-graphql's `insert_value` (resolver_utils/container.rs, 7.2.1), which merges a
/// response key selected twice.
/// (One lookup per member: an entry, not a search then an insert.)
fn insert_value(target: &mut IndexMap<Name, Value>, name: Name, value: Value) {
    use async_graphql::indexmap::map::Entry;
    let prev = match target.entry(name) {
        Entry::Vacant(v) => {
            v.insert(value);
            return;
        }
        Entry::Occupied(o) => o.into_mut(),
    };
    if let Value::Object(target_map) = prev {
        if let Value::Object(obj) = value {
            for (k, v) in obj {
                insert_value(target_map, k, v);
            }
        }
    } else if let Value::List(target_list) = prev
        && let Value::List(list) = value
    {
        for (i, v) in list.into_iter().enumerate() {
            if let Some(Value::Object(target_map)) = target_list.get_mut(i)
                && let Value::Object(obj) = v
            {
                for (k, v) in obj {
                    insert_value(target_map, k, v);
                }
            }
        }
    }
}

fn leaf(l: Leaf, e: &MessageEdge) -> Value {
    use async_graphql::ScalarType as _;
    let m = &e.node;
    match l {
        Leaf::Typename(t) => Value::String(t.to_owned()),
        Leaf::Cursor => Value::String(e.cursor.clone()),
        Leaf::Ulid => m.ulid.to_value(),
        Leaf::Seq => m.seq.to_value(),
        Leaf::Topic => Value::String(m.topic.clone()),
        Leaf::ContentId => m.content_id.to_value(),
        Leaf::Commit => m.commit.to_value(),
        Leaf::Payload => m.payload.to_value(),
        Leaf::Headers => m.headers.as_ref().map_or(Value::Null, |h| h.to_value()),
    }
}

/// The value of one object (an edge, or its node) for the plan `items`.
fn object(items: &[Item], e: &MessageEdge) -> Value {
    let mut map = IndexMap::with_capacity(items.len());
    for item in items {
        match item {
            Item::Leaf(k, l) => insert_value(&mut map, k.clone(), leaf(*l, e)),
            Item::Node(k, sub) => insert_value(&mut map, k.clone(), object(sub, e)),
        }
    }
    // async-graphql answers an object with no member as null.
    if map.is_empty() {
        Value::Null
    } else {
        Value::Object(map)
    }
}

impl MessageEdges {
    /// The node of each edge (for `Topic.message`).
    pub fn into_nodes(self) -> impl Iterator<Item = Message> {
        self.0.into_iter().map(|e| e.node)
    }
}

/// Pages the plan left to async-graphql (tests check the fast pass was taken).
#[cfg(test)]
static FALLBACKS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl OutputType for MessageEdges {
    fn type_name() -> Cow<'static, str> {
        <Vec<MessageEdge> as OutputType>::type_name()
    }

    fn qualified_type_name() -> String {
        <Vec<MessageEdge> as OutputType>::qualified_type_name()
    }

    fn create_type_info(registry: &mut async_graphql::registry::Registry) -> String {
        <Vec<MessageEdge> as OutputType>::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        let mut items = Vec::new();
        if plan(ctx, &ctx.item.node, true, &mut items).is_none() {
            #[cfg(test)]
            FALLBACKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return OutputType::resolve(&self.0, ctx, field).await;
        }
        Ok(Value::List(
            self.0.iter().map(|e| object(&items, e)).collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};

    use super::*;
    use crate::http::graphql::schema::{DigestScalar, Json, OidScalar, UInt64, UlidScalar};

    fn sample_edges() -> Vec<MessageEdge> {
        let text = |t: &str| {
            Some(Json::Text(
                serde_json::value::RawValue::from_string(t.to_owned()).expect("json"),
            ))
        };
        (1..=3u64)
            .map(|i| MessageEdge {
                cursor: format!("c1.cursor-{i}"),
                node: Message {
                    ulid: UlidScalar(gatos_types::Ulid::from_parts(
                        1_700_000_000_000 + i,
                        u128::from(i),
                    )),
                    seq: UInt64(i),
                    topic: "t.events".to_owned(),
                    content_id: DigestScalar(gatos_types::Digest::of(&i.to_be_bytes())),
                    commit: OidScalar(gatos_types::Oid::from_bytes(
                        [u8::try_from(i).unwrap_or(0); 20],
                    )),
                    // The first is parsed (a fraction, a non-minimal escape), the others
                    // are canonical text carried as stored.
                    payload: text(&if i == 1 {
                        r#"{"a":[1,2.5,{"z":null,"y":"\u00e9\n"}],"s":"x\"y"}"#.to_owned()
                    } else {
                        format!(r#"{{"a":[1,{{"y":"é\n","z":null}}],"n":{i},"s":"x\"y"}}"#)
                    })
                    .expect("payload"),
                    headers: if i == 2 { None } else { text(r#"{"k":"v"}"#) },
                },
            })
            .collect()
    }

    /// The same edges through async-graphql's resolver (`stock`) and this one (`fast`).
    struct Q;

    #[Object]
    impl Q {
        async fn stock(&self) -> Vec<MessageEdge> {
            sample_edges()
        }

        async fn fast(&self) -> MessageEdges {
            MessageEdges(sample_edges())
        }
    }

    fn answer(schema: &Schema<Q, EmptyMutation, EmptySubscription>, q: &str) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let resp = rt.block_on(schema.execute(q));
        assert!(resp.errors.is_empty(), "{q}: {:?}", resp.errors);
        body(&resp.data)
    }

    /// The answer's bytes, as the face writes them; they are serde_json's bytes of the
    /// value with stored text parsed (what the face answered before stored text was
    /// carried as it stands).
    fn body(v: &Value) -> String {
        let mut out = Vec::new();
        crate::http::graphql::json::write(&mut out, v);
        let out = String::from_utf8(out).expect("utf-8");
        assert_eq!(out, serde_json::to_string(&parsed(v)).expect("encodes"));
        out
    }

    /// `v` with every stored text (binary data) parsed.
    fn parsed(v: &Value) -> Value {
        match v {
            Value::Binary(raw) => serde_json::from_slice(raw).expect("json"),
            Value::List(items) => Value::List(items.iter().map(parsed).collect()),
            Value::Object(m) => {
                Value::Object(m.iter().map(|(k, v)| (k.clone(), parsed(v))).collect())
            }
            other => other.clone(),
        }
    }

    #[test]
    fn every_selection_gives_the_bytes_async_graphql_gives() {
        let schema = Schema::build(Q, EmptyMutation, EmptySubscription).finish();
        let e = "fragment E on MessageEdge { cursor n: node { seq } }";
        let m = "fragment M on Message { payload headers ulid }";
        let both = &format!("{e} {m}");
        let cases: [(&str, &str); 14] = [
            (
                "cursor node { ulid seq topic contentId commit payload headers }",
                "",
            ),
            (
                "node { headers payload commit contentId topic seq ulid } cursor",
                "",
            ),
            (
                "__typename c: cursor node { __typename s: seq seq ulid }",
                "",
            ),
            (
                "node { seq } node { payload } cursor node { seq topic }",
                "",
            ),
            ("a: node { seq } a: node { ulid } b: cursor cursor", ""),
            ("...E node { ...M }", both),
            (
                "... on MessageEdge { cursor } node { ... on Message { seq } ... { ulid } }",
                "",
            ),
            ("...E ...E node { ...M seq ...M }", both),
            ("n: node { topic } ...E", e),
            (
                "cursor @skip(if: true) node { seq @include(if: false) ulid @include(if: true) }",
                "",
            ),
            ("... @skip(if: true) { cursor } node { seq }", ""),
            (
                "node { ... on Message @include(if: false) { seq } topic }",
                "",
            ),
            ("node { ...M @skip(if: true) headers }", m),
            ("node { headers }", ""),
        ];
        let mut raw_seen = false;
        for (sel, fragments) in cases {
            let stock = answer(&schema, &format!("{{ x: stock {{ {sel} }} }} {fragments}"));
            let fast = answer(&schema, &format!("{{ x: fast {{ {sel} }} }} {fragments}"));
            assert_eq!(stock, fast, "{sel}");
            raw_seen |= stock.contains(r#"{"a":[1,{"y":"é\n","z":null}]"#);
            assert!(stock.len() > 20, "{sel}: {stock}");
        }
        assert!(raw_seen, "canonical payloads were answered");
        // Variables in @skip/@include, as async-graphql applies them before execution.
        let q = |root: &str| {
            async_graphql::Request::new(format!(
                "query($no: Boolean!) {{ x: {root} {{ cursor @include(if: $no) node {{ seq @skip(if: $no) ulid }} }} }}"
            ))
            .variables(async_graphql::Variables::from_json(serde_json::json!({"no": false})))
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let stock = rt.block_on(schema.execute(q("stock")));
        let fast = rt.block_on(schema.execute(q("fast")));
        assert!(stock.errors.is_empty() && fast.errors.is_empty());
        assert_eq!(body(&stock.data), body(&fast.data));
        // Every page above took the one-pass plan.
        assert_eq!(FALLBACKS.load(std::sync::atomic::Ordering::Relaxed), 0);
        // The field keeps its SDL type.
        assert!(
            schema.sdl().contains("fast: [MessageEdge!]!"),
            "{}",
            schema.sdl()
        );
    }
}
