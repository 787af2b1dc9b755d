//! The GraphQL schema (ADR 0044 §5): resolvers map arguments to the service's params and
//! rows to objects; every rule stays in gatos-api ([`gatos_api::state`]).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};

use async_graphql::{
    Context, EmptyMutation, EmptySubscription, ErrorExtensions as _, InputObject, Object, Scalar,
    ScalarType, SimpleObject, Value,
};
use gatos::state::{At, Meta, StateId};
use gatos_api::Service;
use gatos_api::state::{Src, StateSel};
use gatos_api::types::{ListParams, ReadParams};
use gatos_types::jobs::JobRow;
use gatos_types::{ErrorCode, Timestamp, Topic, Ulid};

use super::cursor::{self, Codec, Kind};
use super::edges::MessageEdges;

/// The largest page (`first`) a connection serves; more is an error, never a clamp.
pub const MAX_PAGE: i32 = 500;
/// The page a connection serves without `first`.
pub const DEFAULT_PAGE: i32 = 100;

/// What an answer depended on besides the refs (ADR 0044 §2).
pub mod deps {
    /// The clock: a job's state without a result or a cancel.
    pub const CLOCK: u8 = 1;
    /// This node's trust: proof verification.
    pub const TRUST: u8 = 2;
    /// Local configuration.
    pub const CONFIG: u8 = 4;
    /// The live repository or process (`node`).
    pub const LIVE: u8 = 8;
}

/// The schema type.
pub type GatosSchema = async_graphql::Schema<Query, EmptyMutation, EmptySubscription>;

/// A state a request resolved (one per answer).
#[derive(Clone)]
pub struct Resolved {
    /// The kept state.
    pub at: At,
    /// What is known of it.
    pub meta: Meta,
    /// Named by `stateRef` (not a moving name).
    pub pinned: bool,
    /// The `refPath` it was resolved from, when not pinned (`live`, `snapshots/<name>`).
    pub path: String,
}

/// What one request's resolvers share.
pub struct RequestCtx {
    /// The service.
    pub service: Service,
    /// The cursor codec.
    pub codec: std::sync::Arc<Codec>,
    /// The one `as_of` every clock read uses.
    pub as_of: Timestamp,
    /// The state resolved by `ledger`.
    pub state: Mutex<Option<Resolved>>,
    /// [`deps`] flags set by the resolvers.
    pub deps: AtomicU8,
    /// The bytes of stored content (payloads, manifests) this answer may hold: aliases and
    /// fragments repeat a field, so pages alone do not bound an answer.
    pub budget: u64,
    /// The bytes of stored content read into the answer so far.
    pub spent: std::sync::atomic::AtomicU64,
}

impl RequestCtx {
    fn flag(&self, f: u8) {
        self.deps.fetch_or(f, Ordering::Relaxed);
    }

    /// Refuses to read more once the answer's budget is spent (checked before a read).
    fn within_budget(&self) -> async_graphql::Result<()> {
        if self.spent.load(Ordering::Relaxed) > self.budget {
            return Err(self.over_budget());
        }
        Ok(())
    }

    /// Counts `bytes` of stored content into the answer; over the budget the field fails
    /// with `PayloadTooLarge` (the rest of the answer stands).
    fn charge(&self, bytes: usize) -> async_graphql::Result<()> {
        let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
        let spent = self
            .spent
            .fetch_add(bytes, Ordering::Relaxed)
            .saturating_add(bytes);
        if spent > self.budget {
            return Err(self.over_budget());
        }
        Ok(())
    }

    fn over_budget(&self) -> async_graphql::Error {
        let mut data = serde_json::Map::new();
        data.insert("limit".into(), self.budget.into());
        coded(
            ErrorCode::PayloadTooLarge,
            format!(
                "the answer would hold more than {} bytes of payloads and manifests (each alias and fragment counts again): ask for fewer or smaller fields, or page",
                self.budget
            ),
            data,
        )
    }
}

/// About how many bytes a JSON value takes in an answer.
fn json_size(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::String(s) => s.len() + 2,
        serde_json::Value::Array(a) => a.iter().map(json_size).sum::<usize>() + 2,
        serde_json::Value::Object(o) => {
            o.iter()
                .map(|(k, v)| k.len() + 3 + json_size(v))
                .sum::<usize>()
                + 2
        }
        serde_json::Value::Null | serde_json::Value::Bool(_) | serde_json::Value::Number(_) => 8,
    }
}

/// A stored manifest as a `JSON` field, counted into the answer's budget.
fn charged_spec(rc: &RequestCtx, spec: &gatos_types::jobs::JobSpec) -> async_graphql::Result<Json> {
    charged_json(
        rc,
        serde_json::to_value(spec).unwrap_or(serde_json::Value::Null),
    )
}

/// A stored document as a `JSON` field, counted into the answer's budget.
fn charged_json(rc: &RequestCtx, v: serde_json::Value) -> async_graphql::Result<Json> {
    rc.charge(json_size(&v))?;
    Ok(Json::of(v))
}

/// An error with the taxonomy's code and status in `extensions` (the `ref` is added by the
/// face for every error of the answer).
pub fn coded(
    code: ErrorCode,
    message: impl Into<String>,
    data: serde_json::Map<String, serde_json::Value>,
) -> async_graphql::Error {
    async_graphql::Error::new(message.into()).extend_with(|_, e| {
        e.set("code", code.as_str());
        e.set("status", i32::from(code.status()));
        if !data.is_empty()
            && let Ok(v) = Value::from_json(serde_json::Value::Object(data))
        {
            e.set("data", v);
        }
    })
}

fn from_gatos(e: gatos::Error) -> async_graphql::Error {
    coded(e.code(), e.to_string(), e.details().clone())
}

fn from_call(e: gatos_api::CallError) -> async_graphql::Error {
    from_gatos(e.into())
}

fn invalid(argument: &str, message: impl Into<String>) -> async_graphql::Error {
    let mut data = serde_json::Map::new();
    data.insert("argument".into(), argument.into());
    coded(ErrorCode::InvalidInput, message, data)
}

fn refused(argument: &str, r: cursor::Refused) -> async_graphql::Error {
    let mut data = serde_json::Map::new();
    data.insert("argument".into(), argument.into());
    if r.code == ErrorCode::InvalidInput && r.state.is_none() {
        data.insert("reason".into(), "tampered".into());
    }
    if let Some(s) = r.state {
        data.insert("state".into(), s.into());
    }
    coded(r.code, r.message, data)
}

/// `first` checked against [1, 500] (an error, never a clamp).
fn page_size(first: Option<i32>) -> async_graphql::Result<usize> {
    size_of("first", first)
}

/// A page size argument (`first` or `last`) checked against [1, 500].
fn size_of(argument: &str, n: Option<i32>) -> async_graphql::Result<usize> {
    match n {
        None => Ok(usize::try_from(DEFAULT_PAGE).unwrap_or(100)),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(usize::try_from(n).unwrap_or(100)),
        Some(n) => {
            let mut data = serde_json::Map::new();
            data.insert("argument".into(), argument.into());
            data.insert("max".into(), MAX_PAGE.into());
            data.insert("given".into(), n.into());
            Err(coded(
                ErrorCode::InvalidInput,
                format!("{argument} must be between 1 and {MAX_PAGE} (given {n})"),
                data,
            ))
        }
    }
}

/// Which way a connection pages (Relay): the `first` items after `after`, or the `last`
/// items before `before` (the end of the list without it).
enum Dir {
    /// `first`/`after`.
    Forward { limit: usize, after: Option<String> },
    /// `last`/`before`.
    Backward {
        limit: usize,
        before: Option<String>,
    },
}

/// The direction the arguments ask for: `first`/`after` and `last`/`before` do not mix
/// (an error naming the argument), and each size is in [1, 500].
fn direction(
    first: Option<i32>,
    after: Option<String>,
    last: Option<i32>,
    before: Option<String>,
) -> async_graphql::Result<Dir> {
    let forward = first.is_some() || after.is_some();
    let backward = last.is_some() || before.is_some();
    if forward && backward {
        let argument = if last.is_some() { "last" } else { "before" };
        return Err(invalid(
            argument,
            "give first/after (forward) or last/before (backward), not both",
        ));
    }
    if backward {
        Ok(Dir::Backward {
            limit: size_of("last", last)?,
            before,
        })
    } else {
        Ok(Dir::Forward {
            limit: size_of("first", first)?,
            after,
        })
    }
}

fn enum_str<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// A 64-bit unsigned integer, as a decimal string (GraphQL's `Int` is 32-bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UInt64(pub u64);

#[Scalar]
impl ScalarType for UInt64 {
    fn parse(value: Value) -> async_graphql::InputValueResult<Self> {
        match &value {
            Value::String(s) => s
                .parse()
                .map(UInt64)
                .map_err(|_| async_graphql::InputValueError::custom("not a decimal u64")),
            Value::Number(n) => n
                .as_u64()
                .map(UInt64)
                .ok_or_else(|| async_graphql::InputValueError::custom("not a u64")),
            _ => Err(async_graphql::InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}

/// A scalar written as a string and parsed by its type's `FromStr` (ids, times, digests).
macro_rules! text_scalar {
    ($t:ident, $name:literal, $inner:ty, $what:literal) => {
        #[doc = concat!("The GraphQL scalar `", $name, "`: ", $what, ".")]
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $t(pub $inner);

        #[doc = concat!("A string: ", $what, ".")]
        #[Scalar(name = $name)]
        impl ScalarType for $t {
            fn parse(value: Value) -> async_graphql::InputValueResult<Self> {
                match &value {
                    Value::String(s) => s.parse::<$inner>().map($t).map_err(|e| {
                        async_graphql::InputValueError::custom(format!(
                            "{:?} is not {}: {e}",
                            s.chars().take(80).collect::<String>(),
                            $what
                        ))
                    }),
                    _ => Err(async_graphql::InputValueError::expected_type(value)),
                }
            }

            fn to_value(&self) -> Value {
                Value::String(self.0.to_string())
            }
        }
    };
}

text_scalar!(
    DateTime,
    "DateTime",
    Timestamp,
    "a time in RFC 3339 (written in UTC with milliseconds; any offset is read)"
);
text_scalar!(
    UlidScalar,
    "Ulid",
    Ulid,
    "a ULID (26 Crockford base32 characters): a message or job id"
);
text_scalar!(
    StateRef,
    "StateRef",
    StateId,
    "a ref state's id: `blake3:` and 64 lowercase hex digits"
);
text_scalar!(
    OidScalar,
    "Oid",
    gatos_types::Oid,
    "a Git object id (40 lowercase hex digits)"
);
text_scalar!(
    DigestScalar,
    "Digest",
    gatos_types::Digest,
    "a content digest (`blake3:` and 64 lowercase hex digits)"
);

/// Any JSON value (payloads, specs): a value, or JSON text as stored (a payload, headers),
/// parsed only when the field is resolved, straight into the answer's value.
#[derive(Debug, Clone)]
pub enum Json {
    /// A value.
    Value(Value),
    /// Stored JSON text (canonical JSON).
    Text(Box<serde_json::value::RawValue>),
}

impl Json {
    /// A JSON value.
    fn of(v: serde_json::Value) -> Json {
        Json::Value(Value::from_json(v).unwrap_or(Value::Null))
    }

    /// The value (stored text parsed now).
    fn value(&self) -> Value {
        match self {
            Json::Value(v) => v.clone(),
            Json::Text(t) => serde_json::from_str::<Value>(t.get()).unwrap_or(Value::Null),
        }
    }

    /// The value as the answer holds it: stored text already in the answer's canonical
    /// form is carried as it stands (binary data, which only the face's writers read; see
    /// [`super::json`]); other text is parsed now.
    fn answered(&self) -> Value {
        match self {
            Json::Text(t) if super::json::canonical(t.get()) => {
                Value::Binary(t.get().as_bytes().to_vec().into())
            }
            _ => self.value(),
        }
    }
}

#[Scalar(name = "JSON")]
impl ScalarType for Json {
    fn parse(value: Value) -> async_graphql::InputValueResult<Self> {
        Ok(Json::Value(value))
    }

    fn to_value(&self) -> Value {
        self.answered()
    }
}

/// The root.
pub struct Query;

#[Object]
impl Query {
    /// The ledger at one ref state: `stateRef` (an id from an earlier answer's
    /// `stateRefResolved`, or a durable snapshot's state: immutable), or `refPath` `"live"`
    /// (the refs now, minted for this answer) or `"snapshots/<name>"` (a durable snapshot
    /// by name: a moving name, so `no-cache`). One state per answer.
    async fn ledger(
        &self,
        ctx: &Context<'_>,
        state_ref: Option<StateRef>,
        #[graphql(default = "live")] ref_path: String,
    ) -> async_graphql::Result<Ledger> {
        let rc = ctx.data::<std::sync::Arc<RequestCtx>>()?;
        let sel = match &state_ref {
            // `refPath` has a default, so only one other than it can be told apart: that
            // one is refused, as REST's `/state` refuses both (it was silently ignored).
            Some(_) if ref_path != "live" => {
                return Err(invalid("refPath", "give stateRef or refPath, not both"));
            }
            Some(s) => StateSel::Ref(s.0),
            None => StateSel::path(&ref_path).map_err(from_gatos)?,
        };
        let mut slot = rc
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(r) = slot.as_ref() {
            let same = match &sel {
                StateSel::Ref(id) => *id == r.meta.id && r.pinned,
                StateSel::Live | StateSel::Snapshot(_) => !r.pinned && r.path == ref_path,
            };
            if !same {
                return Err(invalid(
                    "stateRef",
                    "one state per answer: every ledger field of a request must name the same state",
                ));
            }
            return Ok(Ledger(r.clone()));
        }
        let (at, meta) = rc.service.at(&sel).map_err(from_call)?;
        let r = Resolved {
            at,
            meta,
            pinned: state_ref.is_some(),
            path: ref_path,
        };
        *slot = Some(r.clone());
        Ok(Ledger(r))
    }

    /// This node, now (live: never cached).
    async fn node(&self, ctx: &Context<'_>) -> async_graphql::Result<Node> {
        let rc = ctx.data::<std::sync::Arc<RequestCtx>>()?;
        rc.flag(deps::LIVE | deps::CLOCK);
        let node_id = UlidScalar(rc.service.gatos().node_id().map_err(from_gatos)?);
        let ready = rc.service.ready(false);
        Ok(Node {
            version: Service::version().version,
            node_id,
            ready: ready.ready,
            now: DateTime(rc.as_of),
            sync: ready.sync.map(|s| SyncStatus {
                remote: s.remote,
                interval_seconds: UInt64(s.interval_seconds),
                last_at: s.last_at.map(DateTime),
                last_ok: s.last_ok,
                last_code: s.last_code.map(|c| c.as_str().to_owned()),
                consecutive_failures: UInt64(s.consecutive_failures),
            }),
        })
    }
}

/// This node.
#[derive(SimpleObject)]
pub struct Node {
    /// The gatos version.
    version: String,
    /// This node's id.
    node_id: UlidScalar,
    /// Whether it is ready (`gatos.ready`).
    ready: bool,
    /// The time of this answer.
    now: DateTime,
    /// The sync with the remote, when this node syncs.
    sync: Option<SyncStatus>,
}

/// A ref state.
#[derive(SimpleObject)]
pub struct State {
    /// Its id: `blake3:` of `git for-each-ref --format='%(objectname) %(refname)'
    /// refs/gatos/`.
    r#ref: StateRef,
    /// When it was first minted here (a durable snapshot's: when it was taken).
    taken_at: DateTime,
    /// Refs in it.
    refs: i32,
    /// Whether its mint was exact (a double collect that agreed).
    exact: bool,
}

/// The ledger at one state.
pub struct Ledger(Resolved);

/// A job filter: what `jobs.list` filters on.
#[derive(InputObject, Default)]
pub struct JobFilter {
    /// Only this queue.
    queue: Option<String>,
    /// Only this state (`pending`, `claimed`, `succeeded`, …).
    state: Option<String>,
    /// Only jobs needing this capability.
    capability: Option<String>,
    /// Only jobs enqueued by this key (`ed25519:…`) or actor.
    enqueuer: Option<String>,
    /// Enqueued at or after.
    since: Option<DateTime>,
    /// Enqueued before.
    until: Option<DateTime>,
    /// Ids starting so.
    id_prefix: Option<String>,
    /// `KEY` or `KEY=PREFIX`.
    label: Option<String>,
    /// Include archived jobs.
    archived: Option<bool>,
}

impl JobFilter {
    fn params(&self) -> async_graphql::Result<ListParams> {
        let v = serde_json::json!({
            "queue": self.queue, "state": self.state, "capability": self.capability,
            "enqueuer": self.enqueuer,
            "since": self.since.as_ref().map(|t| t.0), "until": self.until.as_ref().map(|t| t.0),
            "id_prefix": self.id_prefix, "label": self.label,
            "all": self.archived.unwrap_or(false),
        });
        serde_json::from_value(v).map_err(|e| invalid("filter", format!("filter: {e}")))
    }

    fn digest(&self) -> [u8; 16] {
        let since = self.since.as_ref().map(|t| t.0.to_string());
        let until = self.until.as_ref().map(|t| t.0.to_string());
        let parts = [
            self.queue.as_deref().unwrap_or("\u{0}"),
            self.state.as_deref().unwrap_or("\u{0}"),
            self.capability.as_deref().unwrap_or("\u{0}"),
            self.enqueuer.as_deref().unwrap_or("\u{0}"),
            since.as_deref().unwrap_or("\u{0}"),
            until.as_deref().unwrap_or("\u{0}"),
            self.id_prefix.as_deref().unwrap_or("\u{0}"),
            self.label.as_deref().unwrap_or("\u{0}"),
            if self.archived.unwrap_or(false) {
                "a"
            } else {
                "l"
            },
        ];
        cursor::args_digest(&parts)
    }
}

#[Object]
impl Ledger {
    /// The state this answer was computed on.
    async fn state(&self) -> State {
        let m = &self.0.meta;
        State {
            r#ref: StateRef(m.id),
            taken_at: DateTime(m.taken_at),
            refs: i32::try_from(m.refs).unwrap_or(i32::MAX),
            exact: m.exact,
        }
    }

    /// Jobs, oldest first, filtered as `jobs.list` filters: the `first` after a cursor, or
    /// the `last` before a cursor (`before`) or at the end.
    #[graphql(
        complexity = "first.or(last).map_or(100, |f| usize::try_from(f).unwrap_or(0)) * child_complexity + 1"
    )]
    async fn jobs(
        &self,
        ctx: &Context<'_>,
        filter: Option<JobFilter>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> async_graphql::Result<JobConnection> {
        let rc = ctx.data::<std::sync::Arc<RequestCtx>>()?;
        let dir = direction(first, after, last, before)?;
        let filter = filter.unwrap_or_default();
        let args = filter.digest();
        let mut p = filter.params()?;
        let state = self.0.meta.id;
        let id_at = |argument: &str, c: &str| -> async_graphql::Result<Ulid> {
            let pos = rc
                .codec
                .decode(c, &state, Kind::Jobs, &args)
                .map_err(|r| refused(argument, r))?;
            std::str::from_utf8(&pos)
                .ok()
                .and_then(|s| s.parse::<Ulid>().ok())
                .ok_or_else(|| invalid(argument, "the cursor holds no job id"))
        };
        let reads = rc.service.reads(Src::State(self.0.at.clone()));
        let (rows, next, prev) = match dir {
            Dir::Forward { limit, after } => {
                if let Some(a) = &after {
                    p.cursor = Some(id_at("after", a)?);
                }
                p.limit = Some(limit);
                let page = reads.jobs_list(p, rc.as_of).map_err(from_call)?;
                (page.jobs, page.next_cursor.is_some(), after.is_some())
            }
            Dir::Backward { limit, before } => {
                let upper = before.as_deref().map(|b| id_at("before", b)).transpose()?;
                let (rows, more) = reads
                    .jobs_before(p, upper, limit, rc.as_of)
                    .map_err(from_call)?;
                (rows, upper.is_some(), more)
            }
        };
        let edges: Vec<JobEdge> = rows
            .into_iter()
            .map(|row| JobEdge {
                cursor: rc
                    .codec
                    .encode(&state, Kind::Jobs, &args, row.id.to_string().as_bytes()),
                node: Job {
                    row,
                    at: self.0.at.clone(),
                },
            })
            .collect();
        Ok(JobConnection {
            page_info: PageInfo::of(&edges, next, prev, |e| &e.cursor),
            edges,
        })
    }

    /// One job (live or archived at this state).
    async fn job(&self, ctx: &Context<'_>, id: UlidScalar) -> async_graphql::Result<Option<Job>> {
        let rc = ctx.data::<std::sync::Arc<RequestCtx>>()?;
        let id = id.0;
        let row = rc
            .service
            .reads(Src::State(self.0.at.clone()))
            .job_row(id, rc.as_of)
            .map_err(from_call)?;
        Ok(row.map(|row| Job {
            row,
            at: self.0.at.clone(),
        }))
    }

    /// The audit trail at this state (the `gatos.audit` topic): records oldest first, from
    /// the first whose time is at or after `since` when given; or the `last` records before
    /// a cursor (`before`), or at the end.
    #[graphql(
        complexity = "first.or(last).map_or(100, |f| usize::try_from(f).unwrap_or(0)) * child_complexity + 1"
    )]
    async fn audit(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        since: Option<DateTime>,
    ) -> async_graphql::Result<AuditConnection> {
        let topic: Topic = AUDIT_TOPIC
            .parse()
            .map_err(|e| coded(ErrorCode::Internal, format!("{e}"), serde_json::Map::new()))?;
        let r = Range {
            first,
            after,
            last,
            before,
            from_time: since,
            ..Range::default()
        };
        let page = messages_page(ctx, &self.0, &topic, r)?;
        Ok(AuditConnection {
            edges: page
                .edges
                .0
                .into_iter()
                .map(|e| AuditEdge {
                    cursor: e.cursor,
                    node: AuditRecord::from(e.node),
                })
                .collect(),
            page_info: page.page_info,
        })
    }

    /// Consumer groups at this state, by name, with their checkpoints and lag (a checkpoint
    /// that does not read is left out: see `damagedCheckpoints`).
    #[graphql(
        complexity = "first.or(last).map_or(100, |f| usize::try_from(f).unwrap_or(0)) * child_complexity + 1"
    )]
    async fn consumer_groups(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> async_graphql::Result<ConsumerGroupConnection> {
        let rc = ctx.data::<std::sync::Arc<RequestCtx>>()?;
        let rows = checkpoint_listing(rc, &self.0, None)?.rows;
        let mut groups: std::collections::BTreeMap<String, Vec<Checkpoint>> =
            std::collections::BTreeMap::new();
        for r in rows {
            groups
                .entry(r.group.to_string())
                .or_default()
                .push(Checkpoint::from(r));
        }
        let items = groups
            .into_iter()
            .map(|(name, mut checkpoints)| {
                checkpoints.sort_by(|a, b| a.topic.cmp(&b.topic));
                (name.clone(), ConsumerGroup { name, checkpoints })
            })
            .collect();
        named_page(
            rc,
            &self.0,
            Kind::Groups,
            items,
            direction(first, after, last, before)?,
        )
        .map(Into::into)
    }

    /// Signing keys: published and revoked at this state; `trusted` and `current` are this
    /// node's configuration (an answer with keys is never immutable).
    #[graphql(
        complexity = "first.or(last).map_or(100, |f| usize::try_from(f).unwrap_or(0)) * child_complexity + 1"
    )]
    async fn keys(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> async_graphql::Result<KeyConnection> {
        let rc = ctx.data::<std::sync::Arc<RequestCtx>>()?;
        rc.flag(deps::TRUST | deps::CONFIG);
        let rows = rc
            .service
            .reads(Src::State(self.0.at.clone()))
            .keys_list()
            .map_err(from_call)?;
        let items = rows
            .into_iter()
            .map(|k| {
                let id = k.key.to_string();
                (
                    id.clone(),
                    Key {
                        id,
                        current: k.current,
                        trusted: k.trusted,
                        published: k.published,
                        revoked: k.revoked,
                        key: k.key,
                        at: self.0.at.clone(),
                    },
                )
            })
            .collect();
        named_page(
            rc,
            &self.0,
            Kind::Keys,
            items,
            direction(first, after, last, before)?,
        )
        .map(Into::into)
    }

    /// Registered manifests at this state: the latest version of each, by name.
    #[graphql(
        complexity = "first.or(last).map_or(100, |f| usize::try_from(f).unwrap_or(0)) * child_complexity + 1"
    )]
    async fn manifests(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> async_graphql::Result<ManifestConnection> {
        let rc = ctx.data::<std::sync::Arc<RequestCtx>>()?;
        let rows = rc
            .service
            .reads(Src::State(self.0.at.clone()))
            .manifests_list()
            .map_err(from_call)?;
        let items = rows
            .into_iter()
            .map(|m| {
                let name = m.name.to_string();
                Ok((
                    name.clone(),
                    Manifest {
                        name,
                        version: UInt64(m.version),
                        content_id: DigestScalar(m.content_id),
                        spec_doc: m.manifest,
                        state: Some(self.0.clone()),
                    },
                ))
            })
            .collect::<async_graphql::Result<_>>()?;
        named_page(
            rc,
            &self.0,
            Kind::Manifests,
            items,
            direction(first, after, last, before)?,
        )
        .map(Into::into)
    }

    /// The durable snapshots of this repository (`git gatos snapshot`), by name: each is a
    /// state to query by `stateRef` or by `refPath: "snapshots/<name>"`. Live (they are
    /// local refs outside every state; an answer with them is never immutable).
    async fn snapshots(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Snapshot>> {
        let rc = ctx.data::<std::sync::Arc<RequestCtx>>()?;
        rc.flag(deps::LIVE);
        let rows = rc.service.snapshots_list().map_err(from_call)?;
        Ok(rows
            .snapshots
            .into_iter()
            .map(|d| Snapshot {
                name: d.name,
                state: d.state,
                taken_at: DateTime(d.taken_at),
                refs: UInt64(d.refs),
                exact: d.exact,
                actor: d.actor,
            })
            .collect())
    }

    /// Queues: their depth by job state (pending, running), the admission cap and the retry
    /// backoff (live: the ready index and local configuration now, not the state; an answer
    /// with it is never immutable).
    async fn queues(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<QueueDepth>> {
        let rc = ctx.data::<std::sync::Arc<RequestCtx>>()?;
        rc.flag(deps::LIVE | deps::CONFIG);
        let rows = rc.service.queues_rows().map_err(from_call)?;
        Ok(rows
            .into_iter()
            .map(|q| QueueDepth {
                name: q.queue.to_string(),
                pending: UInt64(q.pending),
                running: UInt64(q.running),
                max_pending: q.max_pending.map(UInt64),
                backoff_base_seconds: q.backoff_base.map(UInt64),
                backoff_max_seconds: q.backoff_max.map(UInt64),
            })
            .collect())
    }

    /// Every topic with messages at this state (or whose messages were all pruned), by
    /// name.
    #[graphql(
        complexity = "first.or(last).map_or(100, |f| usize::try_from(f).unwrap_or(0)) * child_complexity + 1"
    )]
    async fn topics(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> async_graphql::Result<TopicConnection> {
        let rc = ctx.data::<std::sync::Arc<RequestCtx>>()?;
        let items = topic_listing(rc, &self.0)?
            .rows
            .into_iter()
            .map(|r| {
                (
                    r.topic.to_string(),
                    TopicAt {
                        state: self.0.clone(),
                        topic: r.topic.clone(),
                        row: Some(r),
                    },
                )
            })
            .collect();
        named_page(
            rc,
            &self.0,
            Kind::Topics,
            items,
            direction(first, after, last, before)?,
        )
        .map(Into::into)
    }

    /// The topics whose refs do not read at this state (a head that is no message, a
    /// summary that does not parse), left out of `topics` (ADR 0047); `git gatos doctor`
    /// says more.
    async fn damaged_topics(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<DamagedTopic>> {
        let rc = ctx.data::<std::sync::Arc<RequestCtx>>()?;
        Ok(topic_listing(rc, &self.0)?
            .damaged
            .into_iter()
            .map(|d| DamagedTopic {
                name: d.topic.to_string(),
                code: d.code.as_str().to_owned(),
                message: d.message,
            })
            .collect())
    }

    /// The consumer groups' checkpoints that do not read at this state (a document that is
    /// not a checkpoint, a topic whose head is no message so the lag cannot be told), left
    /// out of `consumerGroups` and the topics' `checkpoints` (ADR 0047); `git gatos doctor`
    /// says more.
    async fn damaged_checkpoints(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<DamagedCheckpoint>> {
        let rc = ctx.data::<std::sync::Arc<RequestCtx>>()?;
        Ok(checkpoint_listing(rc, &self.0, None)?
            .damaged
            .into_iter()
            .map(|d| DamagedCheckpoint {
                group: d.group.to_string(),
                topic: d.topic.to_string(),
                code: d.code.as_str().to_owned(),
                message: d.message,
            })
            .collect())
    }

    /// One topic (its counts are zero when it has no messages at this state; an error with
    /// the damage's code when its refs do not read, see `damagedTopics`).
    async fn topic(&self, ctx: &Context<'_>, name: String) -> async_graphql::Result<TopicAt> {
        let rc = ctx.data::<std::sync::Arc<RequestCtx>>()?;
        let topic: Topic = name
            .parse()
            .map_err(|e| invalid("name", format!("{name:?}: {e}")))?;
        let listing = topic_listing(rc, &self.0)?;
        if let Some(d) = listing.damaged.iter().find(|d| d.topic == topic) {
            return Err(coded(
                d.code,
                format!("topic '{topic}' does not read: {}", d.message),
                serde_json::Map::new(),
            ));
        }
        let row = listing.rows.into_iter().find(|r| r.topic == topic);
        Ok(TopicAt {
            state: self.0.clone(),
            topic,
            row,
        })
    }
}

/// Relay's page info.
#[derive(SimpleObject)]
pub struct PageInfo {
    /// More follow this page.
    has_next_page: bool,
    /// This page came after a cursor.
    has_previous_page: bool,
    /// The first edge's cursor.
    start_cursor: Option<String>,
    /// The last edge's cursor: pass it as `after` for the next page.
    end_cursor: Option<String>,
}

impl PageInfo {
    fn of<E>(edges: &[E], next: bool, prev: bool, cursor: impl Fn(&E) -> &String) -> PageInfo {
        PageInfo {
            has_next_page: next,
            has_previous_page: prev,
            start_cursor: edges.first().map(|e| cursor(e).clone()),
            end_cursor: edges.last().map(|e| cursor(e).clone()),
        }
    }
}

/// A Relay connection and edge of a list ordered by name.
macro_rules! named_connection {
    ($conn:ident, $edge:ident, $t:ty, $what:literal) => {
        #[doc = concat!("A page of ", $what, ", by name.")]
        #[derive(SimpleObject)]
        pub struct $conn {
            /// The items.
            edges: Vec<$edge>,
            /// Where the page is.
            page_info: PageInfo,
            /// Items in the whole list at this state (it is read whole: no extra scan).
            total_count: i32,
        }

        #[doc = concat!("One of the ", $what, " and its cursor.")]
        #[derive(SimpleObject)]
        pub struct $edge {
            /// Pass as `after` to go on after this item.
            cursor: String,
            /// The item.
            node: $t,
        }

        impl From<NamedPage<$t>> for $conn {
            fn from(p: NamedPage<$t>) -> $conn {
                $conn {
                    edges: p
                        .items
                        .into_iter()
                        .map(|(cursor, node)| $edge { cursor, node })
                        .collect(),
                    page_info: p.page_info,
                    total_count: p.total,
                }
            }
        }
    };
}

named_connection!(TopicConnection, TopicEdge, TopicAt, "topics");
named_connection!(
    ConsumerGroupConnection,
    ConsumerGroupEdge,
    ConsumerGroup,
    "consumer groups"
);
named_connection!(ManifestConnection, ManifestEdge, Manifest, "manifests");
named_connection!(KeyConnection, KeyEdge, Key, "keys");

/// A page of a list ordered by name, before it is a connection.
struct NamedPage<T> {
    items: Vec<(String, T)>,
    page_info: PageInfo,
    total: i32,
}

/// A page of `items` (sorted by name): the `first` after the cursor `after`, or the `last`
/// before the cursor `before` (or at the end).
fn named_page<T>(
    rc: &RequestCtx,
    state_at: &Resolved,
    kind: Kind,
    mut items: Vec<(String, T)>,
    dir: Dir,
) -> async_graphql::Result<NamedPage<T>> {
    let state = state_at.meta.id;
    let args = cursor::args_digest(&[]);
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let total = i32::try_from(items.len()).unwrap_or(i32::MAX);
    let name_at = |argument: &str, c: &str| -> async_graphql::Result<String> {
        let pos = rc
            .codec
            .decode(c, &state, kind, &args)
            .map_err(|e| refused(argument, e))?;
        String::from_utf8(pos).map_err(|_| invalid(argument, "the cursor holds no name"))
    };
    let (start, end, next, prev) = match &dir {
        Dir::Forward { limit, after } => {
            let start = match after {
                None => 0,
                Some(a) => {
                    let name = name_at("after", a)?;
                    items.partition_point(|(n, _)| *n <= name)
                }
            };
            let end = items.len().min(start + limit);
            (start, end, end < items.len(), after.is_some())
        }
        Dir::Backward { limit, before } => {
            let end = match before {
                None => items.len(),
                Some(b) => {
                    let name = name_at("before", b)?;
                    items.partition_point(|(n, _)| *n < name)
                }
            };
            let start = end.saturating_sub(*limit);
            (start, end, end < items.len(), start > 0)
        }
    };
    let items: Vec<(String, T)> = items
        .into_iter()
        .skip(start)
        .take(end - start)
        .map(|(name, node)| (rc.codec.encode(&state, kind, &args, name.as_bytes()), node))
        .collect();
    Ok(NamedPage {
        page_info: PageInfo::of(&items, next, prev, |e| &e.0),
        items,
        total,
    })
}

/// A page of jobs.
#[derive(SimpleObject)]
pub struct JobConnection {
    /// The jobs.
    edges: Vec<JobEdge>,
    /// Where the page is.
    page_info: PageInfo,
}

/// A job and its cursor.
#[derive(SimpleObject)]
pub struct JobEdge {
    /// Pass as `after` to go on after this job.
    cursor: String,
    /// The job.
    node: Job,
}

/// A job (its `jobs.list` row at the state).
pub struct Job {
    row: JobRow,
    at: At,
}

/// A job's latest claim.
#[derive(SimpleObject)]
pub struct Claim {
    /// The worker.
    worker: String,
    /// The worker's key, when it signs.
    worker_key: Option<String>,
    /// The attempt.
    attempt: i32,
    /// Until when the lease runs.
    lease_until: DateTime,
    /// When its claim commit was written (committer time, whole seconds): the last
    /// heartbeat, the claim before the first one, the end once it ended.
    last_heartbeat_at: Option<DateTime>,
    /// The claim's state.
    state: String,
}

/// A job's result.
#[derive(SimpleObject)]
pub struct JobResult {
    /// `succeeded`, `failed`, …
    status: String,
    /// The exit code, when the command ran.
    exit_code: Option<i32>,
    /// The result commit.
    commit: OidScalar,
}

/// One attempt of a job.
#[derive(SimpleObject)]
pub struct Attempt {
    /// Its number.
    attempt: i32,
    /// The worker that claimed it.
    worker: String,
    /// The worker's key, when it signs.
    worker_key: Option<String>,
    /// When it was claimed.
    claimed_at: DateTime,
    /// The lease at its last step.
    lease_until: DateTime,
    /// The claim's state at its last step.
    state: String,
    /// How it ended, when it did.
    outcome: Option<String>,
    /// The exit code, when the command ran.
    exit_code: Option<i32>,
    /// Its claim commits, newest first.
    claim_chain: Vec<ClaimStep>,
}

/// One commit of a claim chain.
#[derive(SimpleObject)]
pub struct ClaimStep {
    /// The claim commit.
    commit: OidScalar,
    /// The claim's state in it.
    state: String,
    /// The lease it set.
    lease_until: DateTime,
    /// When it was written (committer time, whole seconds): the claim, a heartbeat, the
    /// end.
    at: DateTime,
}

/// A file of a job's result.
#[derive(SimpleObject)]
pub struct FileMeta {
    /// Its path (`logs/stdout`, `logs/stderr`, `outputs/…`).
    path: String,
    /// Its size in bytes.
    bytes: UInt64,
    /// `blake3:` of its bytes.
    digest: DigestScalar,
    /// For a log: whether the process wrote more than was kept (the proof's `truncated`
    /// when the result has one, else whether the stored bytes end with the worker's
    /// truncation note). Null for an output.
    truncated: Option<bool>,
}

/// A result's proof and its verification under this node's trust.
#[derive(SimpleObject)]
pub struct Proof {
    /// The key that signed it.
    key: String,
    /// Whether it verifies under this node's trust now.
    verified: bool,
    /// Why not, as a taxonomy code.
    code: Option<String>,
}

#[Object]
impl Job {
    /// The job id.
    async fn id(&self) -> UlidScalar {
        UlidScalar(self.row.id)
    }

    /// Its queue.
    async fn queue(&self) -> String {
        self.row.queue.to_string()
    }

    /// Its state at the answer's `as_of` (clock-dependent until it has a result or a
    /// cancel).
    async fn state(&self, ctx: &Context<'_>) -> async_graphql::Result<String> {
        if self.row.result.is_none()
            && !matches!(self.row.state, gatos_types::jobs::JobState::Cancelled)
        {
            ctx.data::<std::sync::Arc<RequestCtx>>()?.flag(deps::CLOCK);
        }
        Ok(enum_str(&self.row.state))
    }

    /// The attempt number.
    async fn attempt(&self) -> i32 {
        i32::try_from(self.row.attempt).unwrap_or(i32::MAX)
    }

    /// The normalized manifest, as stored (secret references are names, never values).
    async fn spec(&self, ctx: &Context<'_>) -> async_graphql::Result<Json> {
        charged_spec(
            ctx.data::<std::sync::Arc<RequestCtx>>()?,
            &self.row.manifest,
        )
    }

    /// The latest claim.
    async fn claim(&self) -> Option<Claim> {
        self.row.claim.as_ref().map(|c| Claim {
            worker: c.worker.to_string(),
            worker_key: c.worker_key.map(|k| k.to_string()),
            attempt: i32::try_from(c.attempt).unwrap_or(i32::MAX),
            lease_until: DateTime(c.lease_until),
            last_heartbeat_at: c.last_heartbeat_at.map(DateTime),
            state: enum_str(&c.state),
        })
    }

    /// The result.
    async fn result(&self) -> Option<JobResult> {
        self.row.result.as_ref().map(|r| JobResult {
            status: enum_str(&r.status),
            exit_code: r.exit_code,
            commit: OidScalar(r.commit),
        })
    }

    /// The attempts, oldest first, each with its claim chain (newest step first).
    async fn attempts(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Attempt>> {
        let rc = ctx.data::<std::sync::Arc<RequestCtx>>()?;
        let attempts = rc
            .service
            .reads(Src::State(self.at.clone()))
            .job_attempts(self.row.id)
            .map_err(from_call)?;
        // A step of a claim chain (every heartbeat is one) takes about this much of the
        // answer: a long-running job's chain counts into the budget like a page.
        const STEP_BYTES: usize = 160;
        rc.charge(attempts.iter().map(|a| a.steps.len() * STEP_BYTES).sum())?;
        Ok(attempts
            .into_iter()
            .filter_map(|a| {
                let first = a.steps.last()?.doc.clone();
                let last = a.steps.first()?.doc.clone();
                Some(Attempt {
                    attempt: i32::try_from(a.attempt).unwrap_or(i32::MAX),
                    worker: first.worker.to_string(),
                    worker_key: first.worker_key.map(|k| k.to_string()),
                    claimed_at: DateTime(first.claimed_at),
                    lease_until: DateTime(last.lease_until),
                    state: enum_str(&last.state),
                    outcome: last.outcome.as_ref().map(enum_str),
                    exit_code: last.exit_code,
                    claim_chain: a
                        .steps
                        .iter()
                        .map(|l| ClaimStep {
                            commit: OidScalar(l.commit),
                            state: enum_str(&l.doc.state),
                            lease_until: DateTime(l.doc.lease_until),
                            at: DateTime(l.at),
                        })
                        .collect(),
                })
            })
            .collect())
    }

    /// The logs and outputs of its result (what the proof covers): path, size, digest.
    async fn files(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<FileMeta>> {
        let Some(result) = &self.row.result else {
            return Ok(Vec::new());
        };
        let rc = ctx.data::<std::sync::Arc<RequestCtx>>()?;
        let files = rc
            .service
            .reads(Src::State(self.at.clone()))
            .result_files(result.commit)
            .map_err(from_call)?;
        Ok(files
            .into_iter()
            .map(|f| FileMeta {
                path: f.path,
                bytes: UInt64(f.bytes),
                digest: DigestScalar(f.digest),
                truncated: f.truncated,
            })
            .collect())
    }

    /// The proof of execution, verified under this node's trust (not cacheable as
    /// immutable: the trust set may change).
    async fn proof(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Proof>> {
        ctx.data::<std::sync::Arc<RequestCtx>>()?.flag(deps::TRUST);
        Ok(self.row.poe.as_ref().map(|p| Proof {
            key: p.key.to_string(),
            verified: p.verified,
            code: p.code.map(|c| c.as_str().to_owned()),
        }))
    }
}

/// The topics at `state` (ADR 0047). A damaged topic can read again at the same state (an
/// object that was missing arrives): an answer made while one was damaged is never
/// immutable.
fn topic_listing(
    rc: &RequestCtx,
    state: &Resolved,
) -> async_graphql::Result<gatos::messages::TopicListing> {
    let listing = rc
        .service
        .reads(Src::State(state.at.clone()))
        .topics_list()
        .map_err(from_call)?;
    if !listing.damaged.is_empty() {
        rc.flag(deps::LIVE);
    }
    Ok(listing)
}

/// The checkpoints at `state`, or those on `topic` (ADR 0047): as [`topic_listing`], an
/// answer made while one did not read is never immutable.
fn checkpoint_listing(
    rc: &RequestCtx,
    state: &Resolved,
    topic: Option<&Topic>,
) -> async_graphql::Result<gatos::checkpoints::CheckpointListing> {
    let listing = rc
        .service
        .reads(Src::State(state.at.clone()))
        .checkpoints_list(topic)
        .map_err(from_call)?;
    if !listing.damaged.is_empty() {
        rc.flag(deps::LIVE);
    }
    Ok(listing)
}

/// A consumer group's checkpoint that does not read at the state.
#[derive(SimpleObject)]
pub struct DamagedCheckpoint {
    /// The consumer group.
    group: String,
    /// The topic.
    topic: String,
    /// Why it does not read: an error code of the taxonomy.
    code: String,
    /// What is wrong, for a person.
    message: String,
}

/// A topic whose refs do not read at the state.
#[derive(SimpleObject)]
pub struct DamagedTopic {
    /// Its name.
    name: String,
    /// Why it does not read: an error code of the taxonomy.
    code: String,
    /// What is wrong, for a person.
    message: String,
}

/// A topic at the state.
pub struct TopicAt {
    state: Resolved,
    topic: Topic,
    row: Option<gatos_types::wire::TopicRow>,
}

/// A topic at the state.
#[Object(name = "Topic")]
impl TopicAt {
    /// Its name.
    async fn name(&self) -> String {
        self.topic.to_string()
    }

    /// Its first retained position at this state.
    async fn first_seq(&self) -> UInt64 {
        UInt64(self.row.as_ref().map_or(1, |r| r.first_seq))
    }

    /// Its last position at this state (0: no messages).
    async fn last_seq(&self) -> UInt64 {
        UInt64(self.row.as_ref().map_or(0, |r| r.last_seq))
    }

    /// Its settings at this state (retention, limits; the defaults when it has none), as
    /// `messages config` shows them.
    async fn settings(&self, ctx: &Context<'_>) -> async_graphql::Result<Json> {
        let rc = ctx.data::<std::sync::Arc<RequestCtx>>()?;
        let cfg = rc
            .service
            .reads(Src::State(self.state.at.clone()))
            .topic_config(&self.topic)
            .map_err(from_call)?;
        Ok(Json::of(
            serde_json::to_value(&cfg).unwrap_or(serde_json::Value::Null),
        ))
    }

    /// The consumer groups' checkpoints on this topic at this state, by group (one whose
    /// document does not read is left out: see the ledger's `damagedCheckpoints`).
    async fn checkpoints(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Checkpoint>> {
        let rc = ctx.data::<std::sync::Arc<RequestCtx>>()?;
        let mut rows: Vec<Checkpoint> = checkpoint_listing(rc, &self.state, Some(&self.topic))?
            .rows
            .into_iter()
            .map(Checkpoint::from)
            .collect();
        rows.sort_by(|a, b| a.group.cmp(&b.group));
        Ok(rows)
    }

    /// Messages retained at this state (`lastSeq - firstSeq + 1`; no scan).
    async fn count(&self) -> UInt64 {
        UInt64(self.row.as_ref().map_or(0, |r| r.count))
    }

    /// Its messages in `seq` order, at most `first` (a page also stops at the daemon's byte
    /// cap). They start at the first retained one, or after a cursor (`after`), or at a
    /// position (`fromSeq`), or after a message (`afterUlid`), or at the first message
    /// whose ULID time is at or after `fromTime`; at most one of these. With `toTime`, the
    /// range ends before the first message whose ULID time is at or after it. Backward:
    /// the `last` messages before a cursor (`before`), or at the end (not with the other
    /// starts or `toTime`).
    #[graphql(
        complexity = "first.or(last).map_or(100, |f| usize::try_from(f).unwrap_or(0)) * child_complexity + 1"
    )]
    #[allow(clippy::too_many_arguments, reason = "the connection's arguments")]
    async fn messages(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        from_seq: Option<UInt64>,
        after_ulid: Option<UlidScalar>,
        from_time: Option<DateTime>,
        to_time: Option<DateTime>,
    ) -> async_graphql::Result<MessageConnection> {
        let r = Range {
            first,
            after,
            last,
            before,
            from_seq,
            after_ulid,
            from_time,
            to_time,
        };
        messages_page(ctx, &self.state, &self.topic, r)
    }

    /// One message at this state: by position, or by ULID.
    async fn message(
        &self,
        ctx: &Context<'_>,
        seq: Option<UInt64>,
        ulid: Option<UlidScalar>,
    ) -> async_graphql::Result<Option<Message>> {
        let r = match (seq, ulid) {
            (Some(s), None) => Range {
                first: Some(1),
                from_seq: Some(s),
                ..Range::default()
            },
            (None, Some(u)) => {
                let rc = ctx.data::<std::sync::Arc<RequestCtx>>()?;
                let id = u.0;
                let Some(seq) = rc
                    .service
                    .reads(Src::State(self.state.at.clone()))
                    .message_seq(&self.topic, id)
                    .map_err(from_call)?
                else {
                    return Ok(None);
                };
                Range {
                    first: Some(1),
                    from_seq: Some(UInt64(seq)),
                    ..Range::default()
                }
            }
            _ => return Err(invalid("seq", "give seq or ulid")),
        };
        let want = r.from_seq.map(|s| s.0);
        let page = messages_page(ctx, &self.state, &self.topic, r)?;
        Ok(page.edges.into_nodes().find(|m| Some(m.seq.0) == want))
    }
}

/// Where a page of messages starts and ends.
#[derive(Default)]
struct Range {
    first: Option<i32>,
    after: Option<String>,
    last: Option<i32>,
    before: Option<String>,
    from_seq: Option<UInt64>,
    after_ulid: Option<UlidScalar>,
    from_time: Option<DateTime>,
    to_time: Option<DateTime>,
}

fn messages_page(
    ctx: &Context<'_>,
    state_at: &Resolved,
    topic: &Topic,
    r: Range,
) -> async_graphql::Result<MessageConnection> {
    let rc = ctx.data::<std::sync::Arc<RequestCtx>>()?;
    let until = r.to_time.as_ref().map(|t| t.0);
    let to_time = until.map(|t| t.to_string()).unwrap_or_default();
    let args = cursor::args_digest(&[topic.as_str(), &to_time]);
    let state = state_at.meta.id;
    let starts = [
        r.after.is_some(),
        r.from_seq.is_some(),
        r.after_ulid.is_some(),
        r.from_time.is_some(),
    ];
    let backward = r.last.is_some() || r.before.is_some();
    if backward && (starts.iter().any(|s| *s) || r.first.is_some() || until.is_some()) {
        let argument = if r.last.is_some() { "last" } else { "before" };
        return Err(invalid(
            argument,
            "last/before page back from a cursor or the end: give them without first, after, fromSeq, afterUlid, fromTime and toTime",
        ));
    }
    if starts.iter().filter(|s| **s).count() > 1 {
        return Err(invalid(
            "after",
            "give at most one of after, fromSeq, afterUlid and fromTime",
        ));
    }
    let position = |argument: &str, c: &str| -> async_graphql::Result<u64> {
        let pos = rc
            .codec
            .decode(c, &state, Kind::Messages, &args)
            .map_err(|e| refused(argument, e))?;
        let b: [u8; 8] = pos
            .as_slice()
            .try_into()
            .map_err(|_| invalid(argument, "the cursor holds no position"))?;
        Ok(u64::from_be_bytes(b))
    };
    let reads = rc.service.reads(Src::State(state_at.at.clone()));
    let read = |since_seq: Option<u64>,
                since: Option<Ulid>,
                since_time: Option<Timestamp>,
                limit: usize|
     -> async_graphql::Result<gatos_types::wire::ReadPage> {
        let p = ReadParams {
            topic: topic.clone(),
            since,
            since_seq,
            since_time,
            limit: Some(u64::try_from(limit).unwrap_or(100)),
        };
        rc.within_budget()?;
        reads.messages_read_until(p, until).map_err(from_call)
    };
    let (messages, next, prev) = if backward {
        let limit = size_of("last", r.last)?;
        // The page ends just before the cursor, or at the topic's end at this state.
        let end = match &r.before {
            Some(b) => position("before", b)?.saturating_sub(1),
            None => reads.topic_last_seq(topic).map_err(from_call)?,
        };
        let mut start = end.saturating_sub(u64::try_from(limit).unwrap_or(100));
        let mut got = Vec::new();
        // A page stops at the byte cap: then the messages just before the end are read
        // again from later on, until the page reaches the end (each round is shorter).
        for _ in 0..=limit {
            if start >= end {
                break;
            }
            let page = read(
                Some(start),
                None,
                None,
                usize::try_from(end - start).unwrap_or(limit),
            )?;
            let reached = page.messages.last().map_or(start, |m| m.seq);
            got = page.messages;
            got.retain(|m| m.seq <= end);
            if reached >= end || page.end || got.is_empty() {
                break;
            }
            start += end - reached;
        }
        let prev = got.first().is_some_and(|m| m.seq > 1);
        (got, r.before.is_some(), prev)
    } else {
        let limit = page_size(r.first)?;
        let since_seq = match (&r.after, r.from_seq) {
            (Some(a), _) => Some(position("after", a)?),
            (None, Some(s)) => Some(s.0.saturating_sub(1)),
            (None, None) => None,
        };
        let page = read(
            since_seq,
            r.after_ulid.as_ref().map(|u| u.0),
            r.from_time.as_ref().map(|t| t.0),
            limit,
        )?;
        (page.messages, !page.end, r.after.is_some())
    };
    // The page kept is what the answer holds (a backward page's earlier rounds are not).
    rc.charge(
        messages
            .iter()
            .map(|m| m.payload.get().len() + m.headers.as_ref().map_or(0, |h| h.get().len()))
            .sum(),
    )?;
    let edges: Vec<MessageEdge> = messages
        .into_iter()
        .map(|m| MessageEdge {
            cursor: rc
                .codec
                .encode(&state, Kind::Messages, &args, &m.seq.to_be_bytes()),
            node: Message {
                ulid: UlidScalar(m.ulid),
                seq: UInt64(m.seq),
                topic: m.topic.to_string(),
                content_id: DigestScalar(m.content_id),
                commit: OidScalar(m.commit),
                payload: Json::Text(m.payload),
                headers: m.headers.map(Json::Text),
            },
        })
        .collect();
    Ok(MessageConnection {
        page_info: PageInfo::of(&edges, next, prev, |e| &e.cursor),
        edges: MessageEdges(edges),
    })
}

/// A page of the audit trail, oldest first.
#[derive(SimpleObject)]
pub struct AuditConnection {
    /// The records.
    edges: Vec<AuditEdge>,
    /// Where the page is.
    page_info: PageInfo,
}

/// An audit record and its cursor.
#[derive(SimpleObject)]
pub struct AuditEdge {
    /// Pass as `after` to go on after this record.
    cursor: String,
    /// The record.
    node: AuditRecord,
}

/// One audited action: a message of `gatos.audit`, its payload read as a record.
#[derive(SimpleObject)]
pub struct AuditRecord {
    /// The message's ULID.
    ulid: UlidScalar,
    /// Its position in the trail.
    seq: UInt64,
    /// Who acted (`cli:…`, `http:…`, …).
    actor: Option<String>,
    /// The acting node's signing key, when it has one.
    key: Option<String>,
    /// What was done (`jobs.cancel`, `config.queue`, …).
    action: Option<String>,
    /// What it was done to.
    target: Option<String>,
    /// The state before.
    before: Option<Json>,
    /// The state after.
    after: Option<Json>,
}

impl From<Message> for AuditRecord {
    fn from(m: Message) -> AuditRecord {
        let payload = m.payload.value();
        let field = |k: &str| match &payload {
            Value::Object(o) => o.get(k).cloned(),
            _ => None,
        };
        let text = |k: &str| match field(k) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        };
        AuditRecord {
            actor: text("actor"),
            key: text("key"),
            action: text("action"),
            target: text("target"),
            before: field("before").map(Json::Value),
            after: field("after").map(Json::Value),
            ulid: m.ulid,
            seq: m.seq,
        }
    }
}

/// The topic of the audit trail.
const AUDIT_TOPIC: &str = "gatos.audit";

/// A registered manifest (its latest version at the state).
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Manifest {
    /// Its name.
    name: String,
    /// Its latest version.
    version: UInt64,
    /// `blake3:` of the version's document.
    content_id: DigestScalar,
    #[graphql(skip)]
    spec_doc: gatos_types::jobs::JobSpec,
    #[graphql(skip)]
    state: Option<Resolved>,
}

/// One version of a manifest.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct ManifestVersion {
    /// Its number.
    version: UInt64,
    /// `blake3:` of its document.
    content_id: DigestScalar,
    #[graphql(skip)]
    spec_doc: gatos_types::jobs::JobSpec,
}

#[async_graphql::ComplexObject]
impl ManifestVersion {
    /// The job spec it enqueues.
    async fn spec(&self, ctx: &Context<'_>) -> async_graphql::Result<Json> {
        charged_spec(ctx.data::<std::sync::Arc<RequestCtx>>()?, &self.spec_doc)
    }
}

/// A page of a manifest's versions, newest first.
#[derive(SimpleObject)]
pub struct ManifestVersionConnection {
    /// The versions.
    edges: Vec<ManifestVersionEdge>,
    /// Where the page is.
    page_info: PageInfo,
    /// Versions of the manifest at this state (the latest's number: no scan).
    total_count: i32,
}

/// A version and its cursor.
#[derive(SimpleObject)]
pub struct ManifestVersionEdge {
    /// Pass as `after` to go on with older versions.
    cursor: String,
    /// The version.
    node: ManifestVersion,
}

#[async_graphql::ComplexObject]
impl Manifest {
    /// The job spec it enqueues.
    async fn spec(&self, ctx: &Context<'_>) -> async_graphql::Result<Json> {
        charged_spec(ctx.data::<std::sync::Arc<RequestCtx>>()?, &self.spec_doc)
    }

    /// Its versions at this state, newest first.
    #[graphql(
        complexity = "first.or(last).map_or(100, |f| usize::try_from(f).unwrap_or(0)) * child_complexity + 1"
    )]
    async fn versions(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> async_graphql::Result<ManifestVersionConnection> {
        let rc = ctx.data::<std::sync::Arc<RequestCtx>>()?;
        let Some(state_at) = &self.state else {
            return Err(coded(
                ErrorCode::Internal,
                "a manifest without its state",
                serde_json::Map::new(),
            ));
        };
        let dir = direction(first, after, last, before)?;
        let state = state_at.meta.id;
        let args = cursor::args_digest(&[self.name.as_str()]);
        let version_at = |argument: &str, c: &str| -> async_graphql::Result<u64> {
            let pos = rc
                .codec
                .decode(c, &state, Kind::Versions, &args)
                .map_err(|e| refused(argument, e))?;
            let b: [u8; 8] = pos
                .as_slice()
                .try_into()
                .map_err(|_| invalid(argument, "the cursor holds no version"))?;
            Ok(u64::from_be_bytes(b))
        };
        let name: gatos_types::ManifestName = self
            .name
            .parse()
            .map_err(|e| invalid("name", format!("{e}")))?;
        let reads = rc.service.reads(Src::State(state_at.at.clone()));
        let latest = self.version.0;
        let (rows, next, prev) = match dir {
            Dir::Forward { limit, after } => {
                let below = after
                    .as_deref()
                    .map(|a| version_at("after", a))
                    .transpose()?;
                // One more than the page, to know whether more follow.
                let mut rows = reads
                    .manifest_versions(&name, below, limit + 1)
                    .map_err(from_call)?;
                let more = rows.len() > limit;
                rows.truncate(limit);
                (rows, more, after.is_some())
            }
            Dir::Backward { limit, before } => {
                // Newest first: the `last` versions before the cursor are the ones just
                // newer than it (without it, the oldest ones).
                let above = before
                    .as_deref()
                    .map(|b| version_at("before", b))
                    .transpose()?
                    .unwrap_or(0);
                let span = usize::try_from(latest.saturating_sub(above)).unwrap_or(usize::MAX);
                let mut rows = reads
                    .manifest_versions(&name, None, span.max(1))
                    .map_err(from_call)?;
                rows.retain(|m| m.version > above);
                let cut = rows.len().saturating_sub(limit);
                let rows: Vec<_> = rows.split_off(cut);
                let prev = rows.first().is_some_and(|m| m.version < latest);
                (rows, above > 0, prev)
            }
        };
        let edges: Vec<ManifestVersionEdge> = rows
            .into_iter()
            .map(|m| {
                Ok(ManifestVersionEdge {
                    cursor: rc.codec.encode(
                        &state,
                        Kind::Versions,
                        &args,
                        &m.version.to_be_bytes(),
                    ),
                    node: ManifestVersion {
                        version: UInt64(m.version),
                        content_id: DigestScalar(m.content_id),
                        spec_doc: m.manifest,
                    },
                })
            })
            .collect::<async_graphql::Result<_>>()?;
        Ok(ManifestVersionConnection {
            page_info: PageInfo::of(&edges, next, prev, |e| &e.cursor),
            edges,
            total_count: i32::try_from(self.version.0).unwrap_or(i32::MAX),
        })
    }
}

/// A consumer group.
#[derive(SimpleObject)]
pub struct ConsumerGroup {
    /// Its name.
    name: String,
    /// Its checkpoints, by topic.
    checkpoints: Vec<Checkpoint>,
}

/// A group's checkpoint on a topic.
#[derive(SimpleObject)]
pub struct Checkpoint {
    /// The group.
    group: String,
    /// The topic.
    topic: String,
    /// The position consumed through (0: nothing).
    seq: UInt64,
    /// The message consumed last.
    ulid: Option<UlidScalar>,
    /// Its commit.
    commit: Option<OidScalar>,
    /// Messages after it at the state.
    lag: UInt64,
}

impl From<gatos_types::wire::CheckpointRow> for Checkpoint {
    fn from(r: gatos_types::wire::CheckpointRow) -> Checkpoint {
        Checkpoint {
            group: r.group.to_string(),
            topic: r.topic.to_string(),
            seq: UInt64(r.seq),
            ulid: r.ulid.map(UlidScalar),
            commit: r.commit.map(OidScalar),
            lag: UInt64(r.lag),
        }
    }
}

/// A signing key.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Key {
    /// `ed25519:<hex>`.
    id: String,
    /// This node's own key.
    current: bool,
    /// This node trusts it.
    trusted: bool,
    /// Published under the trust refs at this state.
    published: bool,
    /// Revoked at this state: `superseded` or `compromised`.
    revoked: Option<String>,
    #[graphql(skip)]
    key: gatos_types::KeyId,
    #[graphql(skip)]
    at: At,
}

/// A key's revocation at the state, as it counts on this node: the records signed by the
/// key itself or by a key trusted here, merged (`compromised` beats `superseded`; the
/// earliest effective time wins).
#[derive(SimpleObject)]
pub struct Revocation {
    /// `superseded` (proofs made before `revokedAt` stay valid) or `compromised`.
    reason: String,
    /// When it was revoked.
    revoked_at: DateTime,
    /// For a compromise: from when its proofs are invalid (none: every proof by the key).
    compromised_since: Option<DateTime>,
    /// The key that signed the revocation.
    revoked_by: String,
}

#[async_graphql::ComplexObject]
impl Key {
    /// Its revocation at this state, with the details (`revoked` names only the reason).
    async fn revocation(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Revocation>> {
        let rc = ctx.data::<std::sync::Arc<RequestCtx>>()?;
        let r = rc
            .service
            .reads(Src::State(self.at.clone()))
            .key_revocation(&self.key)
            .map_err(from_call)?;
        Ok(r.map(|r| Revocation {
            reason: r.reason.as_str().to_owned(),
            revoked_at: DateTime(r.revoked_at),
            compromised_since: r.compromised_since.map(DateTime),
            revoked_by: r.revoked_by.to_string(),
        }))
    }
}

/// A durable snapshot (`git gatos snapshot`).
#[derive(SimpleObject)]
pub struct Snapshot {
    /// Its name (`refPath: "snapshots/<name>"`).
    name: String,
    /// The state it holds (a `stateRef`).
    state: String,
    /// When it was taken.
    taken_at: DateTime,
    /// Refs it holds.
    refs: UInt64,
    /// Whether its double collect agreed.
    exact: bool,
    /// Who took it.
    actor: String,
}

/// A queue's depth by job state, its admission cap and its backoff (live).
#[derive(SimpleObject)]
pub struct QueueDepth {
    /// Its name.
    name: String,
    /// Jobs pending in it now (waiting to be claimed, including those waiting for
    /// `run_after` or a retry backoff): what the admission cap counts.
    pending: UInt64,
    /// Jobs running in it now: claimed and not finished, in this node's ready index (a
    /// lease that ran out with nobody taking over still counts until the job is claimed
    /// again or ends). Not counted against the cap.
    running: UInt64,
    /// Its admission cap (`max_pending`), when set.
    max_pending: Option<UInt64>,
    /// Its first retry delay in seconds, when set (default 1).
    backoff_base_seconds: Option<UInt64>,
    /// Its longest retry delay in seconds, when set.
    backoff_max_seconds: Option<UInt64>,
}

/// This node's sync with its remote (live).
#[derive(SimpleObject)]
pub struct SyncStatus {
    /// The remote.
    remote: String,
    /// Seconds between syncs.
    interval_seconds: UInt64,
    /// When the last sync ended.
    last_at: Option<DateTime>,
    /// Whether it succeeded.
    last_ok: Option<bool>,
    /// Its error code, when it failed.
    last_code: Option<String>,
    /// Failures in a row.
    consecutive_failures: UInt64,
}

/// A page of messages.
#[derive(SimpleObject)]
pub struct MessageConnection {
    /// The messages.
    edges: MessageEdges,
    /// Where the page is.
    page_info: PageInfo,
}

/// A message and its cursor.
#[derive(SimpleObject)]
pub struct MessageEdge {
    /// Pass as `after` to go on after this message.
    pub(super) cursor: String,
    /// The message.
    pub(super) node: Message,
}

/// A message.
#[derive(SimpleObject)]
pub struct Message {
    /// Its ULID.
    pub(super) ulid: UlidScalar,
    /// Its position in the topic.
    pub(super) seq: UInt64,
    /// Its topic.
    pub(super) topic: String,
    /// `blake3:` of its envelope.
    pub(super) content_id: DigestScalar,
    /// Its commit.
    pub(super) commit: OidScalar,
    /// Its payload.
    pub(super) payload: Json,
    /// Its headers, when it has some.
    pub(super) headers: Option<Json>,
}

/// Builds the schema with the face's limits. It registers no extension: the message edges
/// are resolved without the executor's per-field hooks ([`super::edges`]), which an
/// extension would expect to see.
pub fn build(max_depth: usize, max_complexity: usize, introspection: bool) -> GatosSchema {
    let mut b = async_graphql::Schema::build(Query, EmptyMutation, EmptySubscription)
        .limit_depth(max_depth)
        .limit_complexity(max_complexity)
        .limit_recursive_depth(32)
        .limit_directives(16)
        .disable_suggestions();
    if !introspection {
        b = b.disable_introspection();
    }
    b.finish()
}
