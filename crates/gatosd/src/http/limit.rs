//! The HTTP face's fairness (ADR 0038): a rate per token, opt-in CORS, and the call slots
//! a long wait or a large answer takes.
//!
//! The rate is kept with governor's keyed GCRA limiter, checked in [`super::guard::check`]
//! once the token is known: the key is the token's name, so one client cannot spend
//! another's rate, and a request without a valid token is refused before it counts.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use axum::http::{Method, Request};
use axum::response::{IntoResponse, Response};
use gatos_types::ErrorCode;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

use super::problem::Problem;

/// The default rate per token, in requests per second.
pub const DEFAULT_RATE: u32 = 500;
/// The default burst per token (requests a token may send at once after a quiet time).
pub const DEFAULT_BURST: u32 = 1000;

/// `X-RateLimit-Limit`: the burst, the most requests a token may send at once.
pub static X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
/// `X-RateLimit-Remaining`: the requests the token may still send at once now.
pub static X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");

/// A rate per token: `per_second` requests a second, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests per second.
    pub per_second: NonZeroU32,
    /// Requests at once.
    pub burst: NonZeroU32,
}

/// The value of `--http-rate`: requests per second, or `None` for `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateFlag(pub Option<NonZeroU32>);

/// Reads `--http-rate`: a positive number of requests per second, or `off`.
///
/// # Errors
/// A message for the user.
pub fn parse_rate(v: &str) -> Result<RateFlag, String> {
    if v.eq_ignore_ascii_case("off") {
        return Ok(RateFlag(None));
    }
    v.parse::<NonZeroU32>()
        .map(|n| RateFlag(Some(n)))
        .map_err(|_| {
            format!("{v:?} is not a rate: give requests per second (a positive number) or off")
        })
}

type Keyed =
    RateLimiter<Arc<str>, HashMapStateStore<Arc<str>>, DefaultClock, StateInformationMiddleware>;

/// The rate limiter of the face, keyed on token names.
pub struct Limiter {
    keyed: Keyed,
    rate: Rate,
}

/// What the limiter says about one request.
pub enum Verdict {
    /// Served; the token may still send `remaining` requests at once.
    Served {
        /// The burst.
        limit: u32,
        /// What is left of it.
        remaining: u32,
    },
    /// Refused: the next request may come after `retry_after`.
    Refused {
        /// How long until one more request is allowed.
        retry_after: Duration,
    },
}

impl Limiter {
    /// A limiter of `rate` per token.
    pub fn new(rate: Rate) -> Limiter {
        let quota = Quota::per_second(rate.per_second).allow_burst(rate.burst);
        Limiter {
            keyed: RateLimiter::hashmap(quota).with_middleware::<StateInformationMiddleware>(),
            rate,
        }
    }

    /// Counts one request of the token `name`.
    pub fn check(&self, name: &str) -> Verdict {
        let key: Arc<str> = Arc::from(name);
        match self.keyed.check_key(&key) {
            Ok(snap) => Verdict::Served {
                limit: self.rate.burst.get(),
                remaining: snap.remaining_burst_capacity(),
            },
            Err(not_until) => Verdict::Refused {
                retry_after: not_until.wait_time_from(self.keyed.clock().now()),
            },
        }
    }

    /// The refusal: 429 `RateLimited` with `Retry-After` (whole seconds, at least 1) and
    /// `data.retry_after_seconds`, `limit`, `period_ms`.
    pub fn refusal(&self, name: &str, retry_after: Duration) -> Response {
        let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
        let period_ms = 1000 / u64::from(self.rate.per_second.get()).max(1);
        tracing::info!(
            code = "RateLimited",
            token = name,
            "refused a request over the token's rate"
        );
        let mut r = Problem::new(
            ErrorCode::RateLimited,
            format!(
                "the token {name:?} sent more than {} requests a second (burst {}); retry after {secs} s",
                self.rate.per_second, self.rate.burst
            ),
        )
        .with("retry_after_seconds", secs)
        .with("limit", self.rate.burst.get())
        .with("period_ms", period_ms)
        .header(RETRY_AFTER, HeaderValue::from(secs))
        .into_response();
        let h = r.headers_mut();
        h.insert(
            X_RATELIMIT_LIMIT.clone(),
            HeaderValue::from(self.rate.burst.get()),
        );
        h.insert(X_RATELIMIT_REMAINING.clone(), HeaderValue::from(0u32));
        r
    }
}

/// Adds `X-RateLimit-Limit` and `X-RateLimit-Remaining` to an answer.
pub fn annotate(r: &mut Response, limit: u32, remaining: u32) {
    let h = r.headers_mut();
    h.insert(X_RATELIMIT_LIMIT.clone(), HeaderValue::from(limit));
    h.insert(X_RATELIMIT_REMAINING.clone(), HeaderValue::from(remaining));
}

/// The call slots besides the unary pool: long waits have their own pool, so calls that
/// wait (`jobs.logs` with `wait_ms`) never take the slots other calls need, and one token
/// holds at most a few of them; large answers (`op.large` rows) are built a few at a time.
pub struct Slots {
    /// Calls that wait (`wait_ms` > 0) running at once.
    pub waits: Arc<Semaphore>,
    /// Large answers being built at once.
    pub large: Arc<Semaphore>,
    /// Waiting calls per token name (the names are the token file's: a bounded set).
    per_token: std::sync::Mutex<std::collections::HashMap<Arc<str>, Arc<Semaphore>>>,
    /// Waiting calls one token may run at once.
    waits_per_token: usize,
}

/// The two permits of a waiting call: its token's, then the pool's.
pub type WaitPermit = (
    tokio::sync::OwnedSemaphorePermit,
    tokio::sync::OwnedSemaphorePermit,
);

impl Slots {
    /// Slots of the daemon's limits.
    pub fn new(limits: &crate::limits::Limits) -> Slots {
        Slots {
            waits: Arc::new(Semaphore::new(limits.max_http_waits)),
            large: Arc::new(Semaphore::new(limits.max_http_large)),
            per_token: std::sync::Mutex::default(),
            waits_per_token: limits.max_http_waits_per_token,
        }
    }

    /// A slot for a waiting call of the token `name`: one of the token's own (so one token
    /// cannot take every wait slot), then one of the pool.
    ///
    /// # Errors
    /// When a semaphore was closed.
    pub async fn wait_slot(&self, name: &str) -> Result<WaitPermit, tokio::sync::AcquireError> {
        let own = {
            let mut map = self
                .per_token
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            map.entry(Arc::from(name))
                .or_insert_with(|| Arc::new(Semaphore::new(self.waits_per_token)))
                .clone()
        };
        let own = own.acquire_owned().await?;
        let pool = self.waits.clone().acquire_owned().await?;
        Ok((own, pool))
    }
}

/// Whether a call waits: its `wait_ms` member is a number above zero.
pub fn waits(params: &serde_json::Map<String, serde_json::Value>) -> bool {
    params
        .get("wait_ms")
        .and_then(serde_json::Value::as_u64)
        .is_some_and(|w| w > 0)
}

/// Reads `--http-cors-origin`: an exact origin (`scheme://host[:port]`), never `*`.
///
/// # Errors
/// A message for the user.
pub fn parse_origin(v: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "{v:?} is not an origin: give one exact origin like https://app.example or http://localhost:3000 (no *, no path)"
        )
    };
    let (scheme, rest) = v.split_once("://").ok_or_else(bad)?;
    if !matches!(scheme, "http" | "https")
        || rest.is_empty()
        || rest.contains(['/', '*', ' ', '@', '?', '#'])
        || HeaderValue::from_str(v).is_err()
    {
        return Err(bad());
    }
    Ok(v.to_owned())
}

/// The router with CORS for `origins` (none: the router as it is, no CORS header ever).
/// A request whose `Origin` is listed goes through tower-http's `CorsLayer` (a preflight
/// is answered there); any other request, a preflight included, reaches the router without
/// CORS, so it gets no CORS header.
pub fn with_cors(router: Router, origins: &[String]) -> Router {
    if origins.is_empty() {
        return router;
    }
    let listed: Arc<Vec<HeaderValue>> = Arc::new(
        origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect(),
    );
    let cors = tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::AllowOrigin::list(listed.iter().cloned()))
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers(
            [
                "authorization",
                "content-type",
                "idempotency-key",
                "if-none-match",
                "last-event-id",
            ]
            .map(HeaderName::from_static),
        )
        .expose_headers(
            [
                "etag",
                "gatos-state",
                "idempotent-replayed",
                "location",
                "link",
                "retry-after",
                "x-ratelimit-limit",
                "x-ratelimit-remaining",
                "x-request-id",
            ]
            .map(HeaderName::from_static),
        )
        .allow_credentials(false);
    let with = tower::Layer::layer(&cors, router.clone());
    let svc = tower::service_fn(move |req: Request<axum::body::Body>| {
        // A request carrying the dashboard's session cookie never gets CORS (ADR 0045).
        let listed_origin = req
            .headers()
            .get(axum::http::header::ORIGIN)
            .is_some_and(|o| listed.contains(o))
            && super::session::cookie_value(req.headers()).is_none();
        let (with, without) = (with.clone(), router.clone());
        async move {
            if listed_origin {
                with.oneshot(req).await
            } else {
                without.oneshot(req).await
            }
        }
    });
    Router::new().fallback_service(svc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_positive_numbers_or_off() {
        assert_eq!(parse_rate("500"), Ok(RateFlag(NonZeroU32::new(500))));
        assert_eq!(parse_rate("off"), Ok(RateFlag(None)));
        assert_eq!(parse_rate("OFF"), Ok(RateFlag(None)));
        for bad in ["0", "-1", "", "1.5", "fast"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn origins_are_exact() {
        for ok in [
            "https://app.example",
            "http://localhost:3000",
            "http://127.0.0.1:8080",
        ] {
            assert_eq!(parse_origin(ok).as_deref(), Ok(ok));
        }
        for bad in [
            "*",
            "https://*.example",
            "app.example",
            "https://app.example/",
            "https://app.example/x",
            "ftp://app.example",
            "https://",
            "null",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_rate_is_kept_per_token() {
        let l = Limiter::new(Rate {
            per_second: NonZeroU32::MIN,
            burst: NonZeroU32::new(3).unwrap_or(NonZeroU32::MIN),
        });
        for left in [2, 1, 0] {
            match l.check("a") {
                Verdict::Served { limit, remaining } => {
                    assert_eq!((limit, remaining), (3, left));
                }
                Verdict::Refused { .. } => panic!("refused within the burst"),
            }
        }
        match l.check("a") {
            Verdict::Refused { retry_after } => {
                assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(1));
            }
            Verdict::Served { .. } => panic!("served past the burst"),
        }
        assert!(matches!(l.check("b"), Verdict::Served { remaining: 2, .. }));
        let r = l.refusal("a", Duration::from_millis(300));
        assert_eq!(r.status(), axum::http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers().get(RETRY_AFTER), Some(&HeaderValue::from(1u64)));
    }

    #[tokio::test]
    async fn one_token_cannot_take_every_wait_slot() {
        let limits = crate::limits::Limits {
            max_http_waits: 3,
            max_http_waits_per_token: 2,
            ..crate::limits::Limits::default()
        };
        let slots = Slots::new(&limits);
        let a1 = slots.wait_slot("a").await;
        let a2 = slots.wait_slot("a").await;
        assert!(a1.is_ok() && a2.is_ok());
        let a3 = tokio::time::timeout(Duration::from_millis(50), slots.wait_slot("a")).await;
        assert!(a3.is_err(), "a third wait of one token got a slot");
        let b = tokio::time::timeout(Duration::from_secs(5), slots.wait_slot("b")).await;
        assert!(matches!(b, Ok(Ok(_))), "another token's wait got no slot");
        assert_eq!(slots.waits.available_permits(), 0);
    }

    #[test]
    fn only_waiting_calls_take_a_wait_slot() {
        let m = |v: serde_json::Value| v.as_object().cloned().unwrap_or_default();
        assert!(waits(&m(serde_json::json!({"wait_ms": 30000}))));
        assert!(!waits(&m(serde_json::json!({"wait_ms": 0}))));
        assert!(!waits(&m(serde_json::json!({"limit": 3}))));
    }
}
