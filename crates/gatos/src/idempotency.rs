//! The node's idempotency store (issue #17, ADR 0041): the answers of creating calls made
//! with an `Idempotency-Key`, kept so that a retry with the same key and the same request
//! gets the first answer again instead of acting twice.
//!
//! One file per (actor, key) under `<gatos-dir>/idempotency/<2 hex>/<64 hex>.json`, mode
//! 0600. The protocol: [`Store::begin`] creates a `started` record exclusively (written to
//! a temporary file, then hard-linked into place, so a record is never seen half written);
//! the caller runs the call; [`Pending::finish`] replaces the record by a `done` record
//! (temporary file + rename) holding the answer; an error or a dropped [`Pending`] removes
//! the record, so only successes are remembered.
//!
//! What is guaranteed is per node: another node never sees these records. A crash between
//! the call's commit and [`Pending::finish`] leaves a `started` record of a process that is
//! gone; a retry then gets `Conflict` with `outcome: "unknown"` until the record expires
//! (the window is one commit long). Records expire after [`TTL`]; [`Store::sweep`] removes
//! the expired ones and the oldest beyond [`MAX_RECORDS`]; `begin` sweeps at most once per
//! [`SWEEP_EVERY`] (a marker file's age says when the last one ran).

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gatos_types::ErrorCode;
use serde::{Deserialize, Serialize};

use crate::Error;

/// How long a record is kept.
pub const TTL: Duration = Duration::from_secs(24 * 3600);

/// The most records kept; beyond it the oldest go first.
pub const MAX_RECORDS: usize = 100_000;

/// Answers larger than this are not stored (the call still succeeds; a retry acts again).
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// The longest key.
pub const MAX_KEY_LEN: usize = 255;

/// How often `begin` sweeps.
pub const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// The file whose modification time says when the last sweep ran.
const SWEEP_MARKER: &str = ".swept";

/// Checks a key: 1 to 255 visible ASCII characters.
pub fn check_key(key: &str) -> Result<(), Error> {
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::new(
            ErrorCode::InvalidInput,
            format!("an idempotency key is 1 to {MAX_KEY_LEN} visible ASCII characters"),
        )
        .with_detail("field", "Idempotency-Key"));
    }
    Ok(())
}

/// The fingerprint of a request: BLAKE3 of the JCS form of `{op, params}` (the path's and
/// the body's members), in hex.
pub fn fingerprint(op: &str, params: &serde_json::Value) -> String {
    let v = serde_json::json!({"op": op, "params": params});
    blake3::hash(&gatos_types::jcs::to_vec(&v))
        .to_hex()
        .to_string()
}

/// The first answer of a key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    /// The HTTP status.
    pub status: u16,
    /// The answer's JSON text.
    pub answer: String,
    /// The `Location`, if the answer had one.
    pub location: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Record {
    Started {
        fingerprint: String,
        boot: String,
        at_ms: u64,
    },
    Done {
        fingerprint: String,
        at_ms: u64,
        #[serde(flatten)]
        done: Done,
    },
}

impl Record {
    fn at_ms(&self) -> u64 {
        match self {
            Record::Started { at_ms, .. } | Record::Done { at_ms, .. } => *at_ms,
        }
    }
}

/// What [`Store::begin`] found.
#[derive(Debug)]
pub enum Begin {
    /// The key is new: run the call, then [`Pending::finish`].
    Fresh(Pending),
    /// The key's first call succeeded with the same request: its answer.
    Replay(Done),
}

/// A `started` record this process owns; removed when dropped unless finished.
#[derive(Debug)]
pub struct Pending {
    path: PathBuf,
    fingerprint: String,
    done: bool,
}

impl Pending {
    /// Replaces the `started` record by the answer (not kept when over
    /// [`MAX_ANSWER_BYTES`]: the record is removed).
    pub fn finish(mut self, done: Done, now: SystemTime) -> Result<(), Error> {
        if done.answer.len() > MAX_ANSWER_BYTES {
            return Ok(()); // dropped: the record is removed
        }
        let record = Record::Done {
            fingerprint: self.fingerprint.clone(),
            at_ms: millis(now),
            done,
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let tmp = write_tmp(dir, &record)?;
        tmp.persist(&self.path)
            .map_err(|e| io_error("keep an idempotent answer", e.error))?;
        self.done = true;
        Ok(())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The store of one node.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
    ttl: Duration,
    max_records: usize,
}

impl Store {
    /// The store under a gatos directory (`<gatos-dir>/idempotency`), with the default
    /// limits.
    pub fn open(gatos_dir: &Path) -> Store {
        Store {
            dir: gatos_dir.join("idempotency"),
            ttl: TTL,
            max_records: MAX_RECORDS,
        }
    }

    /// Sets the limits (tests and configuration).
    #[must_use]
    pub fn with_limits(mut self, ttl: Duration, max_records: usize) -> Store {
        self.ttl = ttl;
        self.max_records = max_records.max(1);
        self
    }

    fn path_of(&self, actor: &str, key: &str) -> PathBuf {
        let mut h = blake3::Hasher::new();
        h.update(actor.as_bytes());
        h.update(&[0]);
        h.update(key.as_bytes());
        let hex = h.finalize().to_hex().to_string();
        self.dir.join(&hex[..2]).join(format!("{hex}.json"))
    }

    /// Starts a call of `actor` with `key` and the request's `fingerprint`: the first
    /// answer when the key's first call succeeded with the same request; `Conflict` when
    /// the key was used with another request (`idempotency_key`), while the first call is
    /// running (`in_progress: true`), or when a process that is gone started it
    /// (`outcome: "unknown"`); else a [`Pending`] record.
    pub fn begin(
        &self,
        actor: &str,
        key: &str,
        fingerprint: &str,
        now: SystemTime,
    ) -> Result<Begin, Error> {
        check_key(key)?;
        if self.sweep_due(now)
            && let Err(e) = self.sweep(now)
        {
            tracing::warn!(error = %e, "sweeping the idempotency store failed");
        }
        let path = self.path_of(actor, key);
        let dir = path.parent().unwrap_or(Path::new("."));
        create_dir(dir)?;
        for _ in 0..3 {
            let record = Record::Started {
                fingerprint: fingerprint.to_owned(),
                boot: boot_id().to_owned(),
                at_ms: millis(now),
            };
            let tmp = write_tmp(dir, &record)?;
            match fs::hard_link(tmp.path(), &path) {
                Ok(()) => {
                    return Ok(Begin::Fresh(Pending {
                        path,
                        fingerprint: fingerprint.to_owned(),
                        done: false,
                    }));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_error("record an idempotency key", e)),
            }
            drop(tmp);
            let existing = match read_record(&path) {
                Ok(Some(r)) => r,
                Ok(None) => continue, // removed meanwhile: try again
                Err(e) => return Err(e),
            };
            if self.expired(existing.at_ms(), now) {
                let _ = fs::remove_file(&path);
                continue;
            }
            let conflict = |message: &str| {
                Error::new(ErrorCode::Conflict, message.to_owned())
                    .with_detail("idempotency_key", key)
            };
            return match existing {
                Record::Done {
                    fingerprint: f,
                    done,
                    ..
                } if f == fingerprint => Ok(Begin::Replay(done)),
                Record::Started {
                    fingerprint: f,
                    boot,
                    ..
                } if f == fingerprint => {
                    Err(if boot == boot_id() {
                        conflict("the first request with this Idempotency-Key is still running; retry later")
                        .with_detail("in_progress", true)
                    } else {
                        conflict("the first request with this Idempotency-Key was cut off by a restart; whether it acted is unknown (the record expires after 24 h)")
                        .with_detail("outcome", "unknown")
                    })
                }
                _ => Err(conflict(
                    "this Idempotency-Key was used with another request (operation, path or body)",
                )),
            };
        }
        Err(Error::new(
            ErrorCode::Conflict,
            "the idempotency record kept changing; retry",
        )
        .with_detail("idempotency_key", key)
        .with_detail("in_progress", true))
    }

    fn expired(&self, at_ms: u64, now: SystemTime) -> bool {
        millis(now).saturating_sub(at_ms) > self.ttl.as_millis() as u64
    }

    fn sweep_due(&self, now: SystemTime) -> bool {
        match fs::metadata(self.dir.join(SWEEP_MARKER)).and_then(|m| m.modified()) {
            Ok(t) => now.duration_since(t).unwrap_or_default() >= SWEEP_EVERY,
            Err(_) => true,
        }
    }

    /// Removes the expired records (and leftover temporary files), then the oldest beyond
    /// the bound. Returns how many were removed.
    pub fn sweep(&self, now: SystemTime) -> Result<usize, Error> {
        create_dir(&self.dir)?;
        let marker = self.dir.join(SWEEP_MARKER);
        fs::write(&marker, b"").map_err(|e| io_error("mark the idempotency sweep", e))?;
        let mut removed = 0;
        let mut kept: Vec<(u64, PathBuf)> = Vec::new();
        let Ok(shards) = fs::read_dir(&self.dir) else {
            return Ok(0);
        };
        for shard in shards.flatten() {
            let Ok(files) = fs::read_dir(shard.path()) else {
                continue;
            };
            for f in files.flatten() {
                let p = f.path();
                let is_record = p.extension().is_some_and(|x| x == "json");
                let at_ms = if is_record {
                    read_record(&p).ok().flatten().map(|r| r.at_ms())
                } else {
                    None
                };
                // A temporary file older than the TTL is a crash's leftover; an unreadable
                // record too.
                let at_ms = at_ms.unwrap_or_else(|| {
                    f.metadata()
                        .and_then(|m| m.modified())
                        .map(millis)
                        .unwrap_or(0)
                });
                if self.expired(at_ms, now) || (is_record && read_record(&p).is_err()) {
                    if fs::remove_file(&p).is_ok() {
                        removed += 1;
                    }
                } else if is_record {
                    kept.push((at_ms, p));
                }
            }
        }
        if kept.len() > self.max_records {
            kept.sort();
            let over = kept.len() - self.max_records;
            for (_, p) in kept.into_iter().take(over) {
                if fs::remove_file(&p).is_ok() {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// This process's id for its `started` records (a record of another id is a dead one's).
fn boot_id() -> &'static str {
    static BOOT: OnceLock<String> = OnceLock::new();
    BOOT.get_or_init(|| {
        let n: u128 = rand::random();
        format!("{n:032x}")
    })
}

fn io_error(what: &str, e: std::io::Error) -> Error {
    Error::new(ErrorCode::Internal, format!("could not {what}: {e}"))
}

fn create_dir(dir: &Path) -> Result<(), Error> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
        .map_err(|e| io_error("create the idempotency store", e))
}

/// Writes a record to a new temporary file (0600) in `dir`, synced.
fn write_tmp(dir: &Path, record: &Record) -> Result<tempfile::NamedTempFile, Error> {
    let bytes = serde_json::to_vec(record)
        .map_err(|e| Error::new(ErrorCode::Internal, format!("an idempotency record: {e}")))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| io_error("write an idempotency record", e))?;
    tmp.write_all(&bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| io_error("write an idempotency record", e))?;
    Ok(tmp)
}

/// The record at `path`; `None` when there is none. A record is at most a stored answer
/// and its envelope.
fn read_record(path: &Path) -> Result<Option<Record>, Error> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("read an idempotency record", e)),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        Error::new(
            ErrorCode::Internal,
            format!("an idempotency record is damaged: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(n: u16) -> Done {
        Done {
            status: n,
            answer: format!("{{\"n\":{n}}}"),
            location: Some("/x".into()),
        }
    }

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn fresh(b: Result<Begin, Error>) -> Pending {
        match b {
            Ok(Begin::Fresh(p)) => p,
            other => panic!("not fresh: {other:?}"),
        }
    }

    #[test]
    fn a_finished_key_replays_and_another_request_conflicts() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path());
        let p = fresh(s.begin("alice", "k1", "fp", t(0)));
        // While it runs: in progress.
        let e = s.begin("alice", "k1", "fp", t(1)).unwrap_err();
        assert_eq!(e.code(), ErrorCode::Conflict);
        assert_eq!(e.details()["in_progress"], true);
        p.finish(done(201), t(2)).unwrap();
        match s.begin("alice", "k1", "fp", t(3)).unwrap() {
            Begin::Replay(d) => assert_eq!(d, done(201)),
            other => panic!("{other:?}"),
        }
        let e = s.begin("alice", "k1", "other", t(3)).unwrap_err();
        assert_eq!(e.code(), ErrorCode::Conflict);
        assert_eq!(e.details()["idempotency_key"], "k1");
        // Scoped by actor.
        drop(fresh(s.begin("bob", "k1", "other", t(3))));
    }

    #[test]
    fn a_failed_call_is_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path());
        drop(fresh(s.begin("a", "k", "fp", t(0))));
        drop(fresh(s.begin("a", "k", "other", t(1))));
    }

    #[test]
    fn records_expire_and_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).with_limits(Duration::from_secs(100), 2);
        fresh(s.begin("a", "k", "fp", t(0)))
            .finish(done(200), t(0))
            .unwrap();
        // Expired: the key is new again.
        fresh(s.begin("a", "k", "fp2", t(200)))
            .finish(done(200), t(200))
            .unwrap();
        for (i, k) in ["x", "y", "z"].iter().enumerate() {
            fresh(s.begin("a", k, "fp", t(201 + i as u64)))
                .finish(done(200), t(201 + i as u64))
                .unwrap();
        }
        // Four live records over a bound of two: the two oldest go.
        assert_eq!(s.sweep(t(210)).unwrap(), 2);
        drop(fresh(s.begin("a", "k", "fp3", t(211))));
        assert!(matches!(
            s.begin("a", "z", "fp", t(211)).unwrap(),
            Begin::Replay(_)
        ));
        // All expire.
        assert_eq!(s.sweep(t(1000)).unwrap(), 2);
    }

    #[test]
    fn a_dead_process_record_is_unknown_and_leftovers_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).with_limits(Duration::from_secs(100), 10);
        let path = s.path_of("a", "k");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let rec = Record::Started {
            fingerprint: "fp".into(),
            boot: "gone".into(),
            at_ms: millis(t(0)),
        };
        fs::write(&path, serde_json::to_vec(&rec).unwrap()).unwrap();
        fs::write(path.parent().unwrap().join(".tmp-left"), b"x").unwrap();
        let e = s.begin("a", "k", "fp", t(1)).unwrap_err();
        assert_eq!(e.details()["outcome"], "unknown");
        // A damaged record is swept; an old temporary file too (its mtime is now, so it
        // goes when the clock passes the TTL).
        let bad = s.path_of("a", "bad");
        fs::create_dir_all(bad.parent().unwrap()).unwrap();
        fs::write(&bad, b"{").unwrap();
        assert_eq!(s.sweep(t(2)).unwrap(), 1);
        assert!(
            s.sweep(SystemTime::now() + Duration::from_secs(1000))
                .unwrap()
                >= 2
        );
        drop(fresh(s.begin("a", "k", "fp", t(3))));
    }

    #[test]
    fn keys_are_checked() {
        assert!(check_key("").is_err());
        assert!(check_key("a b").is_err());
        assert!(check_key(&"a".repeat(256)).is_err());
        assert!(check_key("retry-1_ok.~").is_ok());
    }
}
