//! `Idempotency-Key` on the creating routes (issue #17, ADR 0041): the call runs through
//! the node's [`gatos::idempotency::Store`], so a retry with the same key and the same
//! request gets the first answer again, marked `Idempotent-Replayed: true`. The rules are
//! the library's; this maps the header and the answer.

use std::path::Path;
use std::time::SystemTime;

use axum::http::HeaderMap;
use gatos::idempotency::{Begin, Done, Store};
use gatos_api::Actor;
use gatos_api::routes::{Idempotency, Route};
use gatos_api::service::{Answer, Service};
use gatos_types::ErrorCode;
use serde_json::{Map, Value};

use super::problem::Problem;

/// The response header that marks a replayed answer.
pub const REPLAYED: &str = "idempotent-replayed";

/// The request's key on a route that offers one; `None` when the route does not (the
/// header is then ignored, as HTTP allows for a header a resource does not use) or the
/// request has none.
pub fn key(route: &Route, headers: &HeaderMap) -> Result<Option<String>, Problem> {
    if route.idempotency == Idempotency::None {
        return Ok(None);
    }
    let mut given = headers.get_all("idempotency-key").iter();
    let Some(v) = given.next() else {
        return Ok(None);
    };
    if given.next().is_some() {
        // Which one would the next request be matched by? Neither: one key per request.
        return Err(Problem::new(
            ErrorCode::InvalidInput,
            "Idempotency-Key is given more than once; give one key",
        )
        .with("header", "Idempotency-Key"));
    }
    let k = v.to_str().unwrap_or("\u{0}").to_owned();
    gatos::idempotency::check_key(&k).map_err(|e| Problem::from_error(&e))?;
    Ok(Some(k))
}

/// What a call with a key gave.
pub enum Answered {
    /// The call ran now.
    Ran(Answer),
    /// The key's first answer.
    Replayed(Done),
}

/// Runs `name` as `actor`, through the store when `key` is given: the first answer of a
/// key used with the same request, `Conflict` for another request or a first call still
/// running, else the call, whose success is remembered. Blocking.
pub fn call(
    service: &Service,
    gatos_dir: &Path,
    route: &Route,
    actor: &Actor,
    name: &str,
    params: Map<String, Value>,
    key: Option<&str>,
) -> Result<Answered, Problem> {
    let Some(key) = key else {
        return service
            .call(actor, name, params)
            .map(Answered::Ran)
            .map_err(Problem::from_call);
    };
    let store = Store::open(gatos_dir);
    let fingerprint = gatos::idempotency::fingerprint(name, &Value::Object(params.clone()));
    let pending = match store
        .begin(&actor.to_string(), key, &fingerprint, SystemTime::now())
        .map_err(|e| Problem::from_error(&e))?
    {
        Begin::Replay(done) => return Ok(Answered::Replayed(done)),
        Begin::Fresh(p) => p,
    };
    // On failure `pending` is dropped, which forgets the key.
    let answer = service
        .call(actor, name, params)
        .map_err(Problem::from_call)?;
    let value: Value = serde_json::from_str(answer.result.get()).unwrap_or(Value::Null);
    let done = Done {
        status: route.status(&value),
        answer: answer.result.get().to_owned(),
        location: route.location(&value),
    };
    if let Err(e) = pending.finish(done, SystemTime::now()) {
        // The call acted: answer it; a retry will be refused or act again.
        tracing::warn!(error = %e, "an idempotent answer could not be kept");
    }
    Ok(Answered::Ran(answer))
}
