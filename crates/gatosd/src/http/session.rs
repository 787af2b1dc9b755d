//! The dashboard's sign-in codes and sessions (ADR 0045): held in the daemon's memory,
//! only as BLAKE3 hashes of their secrets.
//!
//! A code is minted over the Unix socket (`dashboard.signin_code`), lives 60 s and is
//! removed at its first presentation, valid or not. A redeemed code opens a session whose
//! secret is the cookie's value; its public id names it everywhere else (`web:<id>`).
//! Every check takes `now` so the expiry rules are tested without waiting.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rand::RngCore as _;

/// How long a sign-in code stays valid.
pub const CODE_TTL: Duration = Duration::from_secs(60);
/// How long a session lasts (the cookie's `Max-Age`).
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// Codes waiting at once; minting another drops the oldest.
pub const MAX_CODES: usize = 16;
/// Sessions at once; opening another drops the least recently used.
pub const MAX_SESSIONS: usize = 256;
/// The cookie's name.
pub const COOKIE: &str = "gatos_session";

/// A minted code, as `dashboard.signin_code` answers it.
#[derive(Debug, Clone)]
pub struct Minted {
    /// The code (base64url of 32 random bytes).
    pub code: String,
    /// When it stops working.
    pub expires_at: SystemTime,
    /// The session it opens may only read.
    pub read_only: bool,
}

/// A live session, as the guard and `dashboard.sessions` see it (never its secret).
#[derive(Debug, Clone)]
pub struct Session {
    /// The public id.
    pub id: String,
    /// When it was opened.
    pub created_at: SystemTime,
    /// When it ends.
    pub expires_at: SystemTime,
    /// When it last made a request.
    pub last_used_at: SystemTime,
    /// It may only read.
    pub read_only: bool,
    /// The token name that minted its code.
    pub minted_by: String,
    /// The hash of that token: the session ends when the token leaves the file.
    token: Option<[u8; 32]>,
    expires: Instant,
    last_used: Instant,
}

/// A redeemed code: the cookie's secret and the session it names.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The cookie's value.
    pub secret: String,
    /// The session.
    pub session: Session,
}

struct Code {
    hash: [u8; 32],
    expires: Instant,
    read_only: bool,
    minted_by: String,
    token: Option<[u8; 32]>,
}

#[derive(Default)]
struct Inner {
    codes: Vec<Code>,
    sessions: HashMap<[u8; 32], Session>,
}

/// The daemon's codes and sessions.
#[derive(Default)]
pub struct Sessions {
    inner: Mutex<Inner>,
    origin: OnceLock<String>,
}

fn random_secret() -> String {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn hash(secret: &[u8]) -> [u8; 32] {
    *blake3::hash(secret).as_bytes()
}

/// The wall-clock time of the instant `at`, given that `now` is the present, for display.
fn wall(now: Instant, at: Instant) -> SystemTime {
    let wall_now = SystemTime::now();
    match at.checked_duration_since(now) {
        Some(ahead) => wall_now + ahead,
        None => wall_now - now.duration_since(at),
    }
}

/// RFC 3339 (UTC, milliseconds) of a wall-clock time.
pub fn rfc3339(t: SystemTime) -> String {
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    gatos_types::Timestamp::from_millis(ms).to_string()
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the origin the dashboard is served at (`http://127.0.0.1:6767`), once, when
    /// the HTTP face is bound.
    pub fn set_origin(&self, origin: String) {
        let _ = self.origin.set(origin);
    }

    /// The origin the dashboard is served at, when the daemon serves HTTP.
    pub fn origin(&self) -> Option<&str> {
        self.origin.get().map(String::as_str)
    }

    /// Mints a single-use code valid [`CODE_TTL`] from `now`.
    /// `token` is the hash of the token that asked for it (`None`: a trusted transport).
    pub fn mint(
        &self,
        read_only: bool,
        minted_by: &str,
        token: Option<[u8; 32]>,
        now: Instant,
    ) -> Minted {
        let code = random_secret();
        let mut inner = self.lock();
        inner.codes.retain(|c| c.expires > now);
        if inner.codes.len() >= MAX_CODES {
            inner.codes.remove(0);
        }
        inner.codes.push(Code {
            hash: hash(code.as_bytes()),
            expires: now + CODE_TTL,
            read_only,
            minted_by: minted_by.chars().take(64).collect(),
            token,
        });
        Minted {
            code,
            expires_at: wall(now, now + CODE_TTL),
            read_only,
        }
    }

    /// Redeems a code: `None` when it is unknown, was used, or expired. The code is
    /// removed whatever the answer, so it can never be presented twice.
    pub fn redeem(&self, code: &str, now: Instant) -> Option<Opened> {
        let h = hash(code.as_bytes());
        let mut inner = self.lock();
        let i = inner.codes.iter().position(|c| constant_eq(&c.hash, &h))?;
        let c = inner.codes.remove(i);
        if c.expires <= now {
            return None;
        }
        inner.sessions.retain(|_, s| s.expires > now);
        if inner.sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = inner
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| *k)
        {
            inner.sessions.remove(&oldest);
        }
        let secret = random_secret();
        let mut id_raw = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut id_raw);
        let id: String = id_raw.iter().map(|b| format!("{b:02x}")).collect();
        let created = wall(now, now);
        let session = Session {
            id,
            created_at: created,
            expires_at: wall(now, now + SESSION_TTL),
            last_used_at: created,
            read_only: c.read_only,
            minted_by: c.minted_by,
            token: c.token,
            expires: now + SESSION_TTL,
            last_used: now,
        };
        inner
            .sessions
            .insert(hash(secret.as_bytes()), session.clone());
        Some(Opened { secret, session })
    }

    /// The live session whose secret is `secret` (and marks it used), or `None`.
    pub fn check(&self, secret: &[u8], now: Instant) -> Option<Session> {
        let h = hash(secret);
        let mut inner = self.lock();
        let s = inner.sessions.get_mut(&h)?;
        if s.expires <= now {
            inner.sessions.remove(&h);
            return None;
        }
        s.last_used = now;
        s.last_used_at = wall(now, now);
        Some(s.clone())
    }

    /// Ends the session whose secret is `secret` (logout); its id when there was one.
    pub fn end(&self, secret: &[u8]) -> Option<String> {
        self.lock().sessions.remove(&hash(secret)).map(|s| s.id)
    }

    /// Ends the session `id`, or (`None`) every session and every waiting code; the ids
    /// ended.
    pub fn revoke(&self, id: Option<&str>) -> Vec<String> {
        let mut inner = self.lock();
        let mut ended = Vec::new();
        inner.sessions.retain(|_, s| {
            let hit = id.is_none_or(|i| i == s.id);
            if hit {
                ended.push(s.id.clone());
            }
            !hit
        });
        if id.is_none() {
            inner.codes.clear();
        }
        ended.sort();
        ended
    }

    /// Applies a re-read token file: codes and sessions whose token (`ro` says its
    /// `read_only` now; `None`: gone) left the file end, those whose token became `ro` may
    /// only read from now on. The ids of the sessions ended.
    pub fn follow_tokens(&self, ro: impl Fn(&[u8; 32]) -> Option<bool>) -> Vec<String> {
        let mut inner = self.lock();
        inner.codes.retain_mut(|c| match c.token.as_ref().map(&ro) {
            None => true,
            Some(None) => false,
            Some(Some(now_ro)) => {
                c.read_only |= now_ro;
                true
            }
        });
        let mut ended = Vec::new();
        inner
            .sessions
            .retain(|_, s| match s.token.as_ref().map(&ro) {
                None => true,
                Some(None) => {
                    ended.push(s.id.clone());
                    false
                }
                Some(Some(now_ro)) => {
                    s.read_only |= now_ro;
                    true
                }
            });
        ended.sort();
        ended
    }

    /// Whether the session `id` is live (not ended, revoked, evicted or expired).
    pub fn is_live(&self, id: &str, now: Instant) -> bool {
        self.lock()
            .sessions
            .values()
            .any(|s| s.id == id && s.expires > now)
    }

    /// The live sessions, oldest first.
    pub fn list(&self, now: Instant) -> Vec<Session> {
        let mut inner = self.lock();
        inner.sessions.retain(|_, s| s.expires > now);
        let mut v: Vec<Session> = inner.sessions.values().cloned().collect();
        v.sort_by_key(|s| s.created_at);
        v
    }
}

/// Compares two hashes without an early exit.
fn constant_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The session cookie's value in a `Cookie` header, if any.
pub fn cookie_value(headers: &axum::http::HeaderMap) -> Option<Vec<u8>> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim().as_bytes().to_vec())
}

/// The `Set-Cookie` value that gives the browser `secret`.
pub fn set_cookie(secret: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={secret}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        SESSION_TTL.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that removes the cookie.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_opens_one_session_once_and_only_within_its_minute() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let m = s.mint(false, "default", None, t0);
        let opened = s.redeem(&m.code, t0 + Duration::from_secs(59));
        assert!(opened.is_some(), "a fresh code opens a session");
        assert!(
            s.redeem(&m.code, t0 + Duration::from_secs(59)).is_none(),
            "a code is single-use"
        );
        let late = s.mint(false, "default", None, t0);
        assert!(
            s.redeem(&late.code, t0 + CODE_TTL).is_none(),
            "an expired code is refused"
        );
        assert!(
            s.redeem(&late.code, t0).is_none(),
            "and is gone after its refusal"
        );
        assert!(s.redeem("not-a-code", t0).is_none());
    }

    #[test]
    fn sessions_expire_end_on_logout_and_are_revoked_by_id_or_all() -> Result<(), String> {
        let s = Sessions::default();
        let t0 = Instant::now();
        let open = |ro| {
            let m = s.mint(ro, "ops", None, t0);
            s.redeem(&m.code, t0).ok_or("redeem")
        };
        let a = open(false)?;
        let b = open(true)?;
        let c = open(false)?;
        assert_ne!(a.secret, b.secret);
        assert_ne!(a.session.id, b.session.id);
        let seen = s.check(a.secret.as_bytes(), t0).ok_or("a is live")?;
        assert!(!seen.read_only);
        assert!(s.check(b.secret.as_bytes(), t0).ok_or("b")?.read_only);
        assert!(s.check(a.secret.as_bytes(), t0 + SESSION_TTL).is_none());
        assert!(
            s.check(a.secret.as_bytes(), t0).is_none(),
            "expired is gone"
        );
        assert_eq!(s.end(b.secret.as_bytes()), Some(b.session.id.clone()));
        assert!(s.check(b.secret.as_bytes(), t0).is_none());
        assert_eq!(s.revoke(Some(&c.session.id)), vec![c.session.id.clone()]);
        assert!(s.check(c.secret.as_bytes(), t0).is_none());
        let d = open(false)?;
        let waiting = s.mint(false, "ops", None, t0);
        assert_eq!(s.revoke(None), vec![d.session.id.clone()]);
        assert!(
            s.redeem(&waiting.code, t0).is_none(),
            "revoke all drops codes"
        );
        assert!(s.list(t0).is_empty());
        Ok(())
    }

    #[test]
    fn codes_and_sessions_are_capped() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let first = s.mint(false, "x", None, t0);
        for _ in 0..MAX_CODES {
            s.mint(false, "x", None, t0);
        }
        assert!(
            s.redeem(&first.code, t0).is_none(),
            "the oldest code was dropped"
        );
        for _ in 0..MAX_SESSIONS + 3 {
            let m = s.mint(false, "x", None, t0);
            assert!(s.redeem(&m.code, t0).is_some());
        }
        assert_eq!(s.list(t0).len(), MAX_SESSIONS);
    }

    #[test]
    fn the_cookie_is_found_among_others_and_set_strictly() {
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            axum::http::header::COOKIE,
            axum::http::HeaderValue::from_static("a=1; gatos_session=s3cret ; b=2"),
        );
        assert_eq!(cookie_value(&h), Some(b"s3cret".to_vec()));
        let set = set_cookie("v", false);
        for part in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800"] {
            assert!(set.contains(part), "{set}");
        }
        assert!(set_cookie("v", true).ends_with("; Secure"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
    }
}
