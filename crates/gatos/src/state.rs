//! Ref states (ADR 0044 §1): every ref under `refs/gatos/` read at one instant, named by a
//! digest, and kept for a while so a reader can answer at it again.
//!
//! - [`StateId`]: `blake3:<hex>` of the lines `"<oid hex> <refname>\n"`, sorted by name in
//!   byte order — the output of `git for-each-ref --format='%(objectname) %(refname)'
//!   refs/gatos/` — so anyone can recompute it with git and `b3sum`.
//! - [`collect`]: a *double collect*. The refs are listed twice in a row; equal lists
//!   mean every ref held its value over an interval spanning the end of the first list, so
//!   all held them at one instant (refs do not return to an old value: chains only move
//!   forward, create-only refs are never re-created). Unequal lists are listed again, up to
//!   [`MINT_TRIES`] times; then the last list is kept and the state marked inexact (each
//!   ref holds a value it really had during the mint, but one job's refs may mix, as every
//!   live reader sees them). A list is the store's two parts ([`collect_listed`]): the
//!   loose refs, walked every time, and the `packed-refs` records, parsed once per
//!   `packed-refs` file and reused while it is still that file.
//! - [`Window`]: one versioned map of refs (a version per change, not a map per state),
//!   the kept states, their ids, and tombstones of the evicted ones. A state is kept until
//!   `ttl` after its last use, at most `hard` after its mint, and at most `max_states`.
//! - [`At`]: one kept state, a [`RefSource`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use gatos_store::refs::{PackedRecords, SplitListing, names};
use gatos_types::{ErrorCode, Oid, Timestamp};

use crate::Gatos;
use crate::error::{Error, Result};
use crate::refs::RefSource;

/// Lists a mint takes at most before it keeps an inexact state.
pub const MINT_TRIES: usize = 4;
/// States kept at most.
pub const MAX_STATES: usize = 4096;
/// Ids of evicted states remembered (to answer `Gone` rather than `NotFound`).
pub const MAX_TOMBSTONES: usize = 65_536;
/// The default time a state is kept after its last use.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15 * 60);
/// The longest a state is kept after its mint, however often it is used.
pub const HARD_LIMIT: Duration = Duration::from_secs(60 * 60);
/// How long an unmoved live state is reused at most: writers that are not gatos (a plain
/// `git update-ref`) do not move the refs' generation, so a state is minted again at least
/// this often whatever the generation says.
pub const STATE_RESCAN: Duration = Duration::from_secs(1);
/// The default bound of the window's memory (`--graphql-state-memory`).
pub const DEFAULT_MAX_BYTES: usize = 256 * 1024 * 1024;
/// What the window counts for a ref name besides its bytes: the map's node share, the
/// boxed name and the versions' vector.
const NAME_COST: usize = 72;
/// What one version of a ref costs (`(u64, Option<Oid>)`).
const VERSION_COST: usize = 32;
/// What one kept state costs (its record and its id in the index).
const STATE_COST: usize = 160;

/// The id of a ref state: BLAKE3 of its `for-each-ref` lines.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StateId(pub [u8; 32]);

impl StateId {
    /// The id of refs given sorted by name (full names, `refs/gatos/…`).
    pub fn of(refs: &[(String, Oid)]) -> StateId {
        Self::of_sorted(refs.iter().map(|(n, o)| (n.as_str(), *o))).0
    }

    /// The id of refs given sorted by name, and how many there were. The lines are
    /// gathered into a buffer and hashed a buffer at a time (BLAKE3 hashes long inputs
    /// several chunks at once).
    pub fn of_sorted<'a>(refs: impl Iterator<Item = (&'a str, Oid)>) -> (StateId, usize) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        const FLUSH: usize = 64 * 1024;
        let mut h = blake3::Hasher::new();
        let mut buf: Vec<u8> = Vec::with_capacity(FLUSH + 4096);
        let mut count = 0usize;
        for (name, oid) in refs {
            for b in oid.as_bytes() {
                buf.push(HEX[usize::from(b >> 4)]);
                buf.push(HEX[usize::from(b & 0xf)]);
            }
            buf.push(b' ');
            buf.extend_from_slice(name.as_bytes());
            buf.push(b'\n');
            count += 1;
            if buf.len() >= FLUSH {
                h.update(&buf);
                buf.clear();
            }
        }
        h.update(&buf);
        (StateId(*h.finalize().as_bytes()), count)
    }

    /// The 32 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for StateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("blake3:")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for StateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for StateId {
    type Err = Error;

    fn from_str(s: &str) -> Result<StateId> {
        let bad = || {
            Error::new(
                ErrorCode::InvalidInput,
                format!(
                    "{:?} is not a state id (blake3: and 64 lowercase hex digits)",
                    s.chars().take(80).collect::<String>()
                ),
            )
            .with_detail("argument", "stateRef")
        };
        let hex = s.strip_prefix("blake3:").ok_or_else(bad)?;
        if hex.len() != 64 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
            let digit = |c: u8| match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                _ => None,
            };
            let (Some(hi), Some(lo)) = (digit(chunk[0]), digit(chunk[1])) else {
                return Err(bad());
            };
            out[i] = hi << 4 | lo;
        }
        Ok(StateId(out))
    }
}

/// What a mint read.
#[derive(Debug, Clone)]
pub struct Collected {
    /// Every ref under `refs/gatos/`, sorted by name.
    pub refs: Vec<(String, Oid)>,
    /// The last two lists were equal.
    pub exact: bool,
    /// Lists taken.
    pub lists: usize,
}

/// What a double collect read, as the store lists it: the loose refs and the
/// `packed-refs` records (see [`gatos_store::refs::SplitListing`]).
#[derive(Debug, Clone)]
pub struct Listed {
    /// The last list.
    pub listing: SplitListing,
    /// The last two lists were equal.
    pub exact: bool,
    /// Lists taken.
    pub lists: usize,
}

impl Listed {
    /// Every ref, sorted by name.
    pub fn into_collected(self) -> Collected {
        Collected {
            refs: self
                .listing
                .merged()
                .map(|(n, o)| (n.to_owned(), o))
                .collect(),
            exact: self.exact,
            lists: self.lists,
        }
    }
}

/// Reads every gatos ref by double collect (see the module's doc), materializing
/// journaled publishes first (they are part of the state, ADR 0046).
///
/// # Errors
/// When the refs cannot be listed.
pub fn collect(gatos: &Gatos) -> Result<Collected> {
    gatos.flush_journals()?;
    Ok(collect_listed(gatos, None)?.into_collected())
}

/// The double collect itself: lists the refs until two lists in a row are equal, at most
/// [`MINT_TRIES`] times. `cached` is the `packed-refs` records of an earlier listing:
/// while `packed-refs` is still that file they are reused, so a list costs a walk of the
/// loose refs and two `stat`s (the store checks the file; see
/// [`gatos_store::Store::list_refs_split`]). Two lists with the same records are compared
/// by their loose refs.
///
/// # Errors
/// When the refs cannot be listed.
pub fn collect_listed(gatos: &Gatos, cached: Option<&Arc<PackedRecords>>) -> Result<Listed> {
    let store = gatos.store();
    let mut last = store.list_refs_split(names::GATOS_PREFIX, cached)?;
    for lists in 2..=MINT_TRIES {
        let next = store.list_refs_split(names::GATOS_PREFIX, last.packed.as_ref())?;
        if next.same_refs(&last) {
            return Ok(Listed {
                listing: next,
                exact: true,
                lists,
            });
        }
        last = next;
    }
    Ok(Listed {
        listing: last,
        exact: false,
        lists: MINT_TRIES,
    })
}

/// What is known of a kept state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Its id.
    pub id: StateId,
    /// When it was first minted.
    pub taken_at: Timestamp,
    /// Refs in it.
    pub refs: usize,
    /// Whether its mint was exact.
    pub exact: bool,
    /// Until when it is kept if it is not used again (never before the hard limit).
    pub kept_until: Timestamp,
}

struct Kept {
    seq: u64,
    id: StateId,
    taken_at: Timestamp,
    /// The wall time at `minted` (differs from `taken_at` for a state loaded from a
    /// durable snapshot).
    minted_at: Timestamp,
    minted: Instant,
    last_used: Instant,
    refs: usize,
    exact: bool,
}

/// One ref's values over the kept states: `(from seq, value)`, oldest first.
type Versions = Vec<(u64, Option<Oid>)>;

#[derive(Default)]
struct Inner {
    refs: BTreeMap<Box<str>, Versions>,
    states: VecDeque<Kept>,
    by_id: HashMap<StateId, u64>,
    tombstones: HashMap<StateId, Evicted>,
    tombstone_order: VecDeque<StateId>,
    next_seq: u64,
    inexact: u64,
    versions: usize,
    /// What the names, versions and states take, as counted by the `*_COST`s.
    bytes: usize,
    /// States dropped to stay within the memory bound.
    evicted_memory: u64,
    /// Mints that reused the last state.
    reused: u64,
    /// The listing of the newest state when a mint kept it (the newest values in `refs`
    /// are its refs): the next mint compares only what can differ from it.
    base: Option<Base>,
}

/// The newest state's listing (see [`Inner::base`]).
struct Base {
    seq: u64,
    listing: SplitListing,
}

/// Why a state was evicted (what `Gone` says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Evicted {
    /// Past its retention.
    Expired,
    /// To stay within the memory bound.
    Memory,
}

/// How long states are kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// After the last use.
    pub ttl: Duration,
    /// After the mint, at most.
    pub hard: Duration,
    /// States kept at most.
    pub max_states: usize,
    /// The memory the window may take (names, versions and states, as counted): past it
    /// the oldest states go first, even within `ttl`. The newest state always stays.
    pub max_bytes: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            ttl: DEFAULT_TTL,
            hard: HARD_LIMIT,
            max_states: MAX_STATES,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// The kept ref states of a process (see the module's doc).
pub struct Window {
    inner: RwLock<Inner>,
    /// One mint at a time, and the last one: when it started and the state it kept.
    minting: Mutex<Minting>,
    retention: Retention,
    /// [`Retention::max_bytes`], settable after the window is made.
    max_bytes: std::sync::atomic::AtomicUsize,
}

impl fmt::Debug for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Window")
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

/// The last mint: when its collect started, the refs' generation read just before, and
/// the state it kept.
#[derive(Debug, Clone, Copy)]
struct LastMint {
    started: Instant,
    generation: Option<gatos_store::refs::RefsGeneration>,
    seq: u64,
}

/// What the mint lock guards: the last mint, and the `packed-refs` records it read (the
/// next mint reuses them while `packed-refs` is still that file).
#[derive(Default)]
struct Minting {
    last: Option<LastMint>,
    packed: Option<Arc<PackedRecords>>,
}

/// What the window holds, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// States kept.
    pub states: usize,
    /// Ref names held.
    pub names: usize,
    /// Versions held over all names.
    pub versions: usize,
    /// Inexact mints so far.
    pub inexact: u64,
    /// The memory the window takes, as it counts it (see [`Retention::max_bytes`]).
    pub bytes: usize,
    /// States evicted to stay within [`Retention::max_bytes`] so far.
    pub evicted_memory: u64,
    /// Mints answered with the last state because no gatos writer moved a ref since.
    pub reused: u64,
}

fn read_lock(l: &RwLock<Inner>) -> std::sync::RwLockReadGuard<'_, Inner> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write_lock(l: &RwLock<Inner>) -> std::sync::RwLockWriteGuard<'_, Inner> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

fn to_timestamp(now: Timestamp, at: Instant, then: Instant) -> Timestamp {
    let ms = if then >= at {
        i64::try_from(then.duration_since(at).as_millis()).unwrap_or(i64::MAX)
    } else {
        -i64::try_from(at.duration_since(then).as_millis()).unwrap_or(i64::MAX)
    };
    Timestamp::from_millis(now.as_millis().saturating_add(ms))
}

impl Window {
    /// An empty window.
    pub fn new(retention: Retention) -> Arc<Window> {
        Arc::new(Window {
            inner: RwLock::new(Inner::default()),
            minting: Mutex::new(Minting::default()),
            retention,
            max_bytes: std::sync::atomic::AtomicUsize::new(retention.max_bytes),
        })
    }

    /// Sets the memory bound (`--graphql-state-memory`); the next mint or lookup applies it.
    pub fn set_max_bytes(&self, max_bytes: usize) {
        self.max_bytes
            .store(max_bytes, std::sync::atomic::Ordering::Relaxed);
    }

    fn max_bytes(&self) -> usize {
        self.max_bytes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Mints the current state (a double collect) and keeps it; a state equal to a kept
    /// one is that one.
    ///
    /// The answer includes every write acknowledged before the call (read-your-writes),
    /// whoever made it. Journaled publishes waiting in a journal are materialized first;
    /// but for a topic that is itself damaged (its head moved outside gatos to no message,
    /// or its summary does not read: ADR 0047), whose journal cannot become commits, the
    /// state holds the refs as they stand, without the publishes waiting in that journal.
    /// Then, one mint running at a time:
    /// - the last state is reused when the refs' generation
    ///   ([`gatos_store::Store::refs_generation`]) is the one read just before that state's
    ///   collect began, and that was at most [`STATE_RESCAN`] ago: no gatos transaction
    ///   completed in between, so every gatos write acknowledged before the call was in the
    ///   refs when that collect began (writers that are not gatos are seen within
    ///   `STATE_RESCAN`);
    /// - a caller that waited for another's mint shares its state when that mint started
    ///   after the caller arrived, as its own mint would;
    /// - otherwise it mints.
    ///
    /// # Errors
    /// When the refs cannot be listed.
    pub fn mint(self: &Arc<Self>, gatos: &Gatos) -> Result<At> {
        let arrived = Instant::now();
        // A journaled publish or enqueue acknowledged before the call is in a journal or
        // already in the refs; settling moves the refs (and the generation) for the former.
        // A topic whose journal cannot become commits because the topic itself is damaged
        // (its head moved outside gatos to no message, ADR 0047; checked on the refs, not
        // taken from the journal's error) does not keep a state from being made: the state
        // holds its refs as they stand, without the publishes waiting in that journal, and
        // the listings name the topic. A journal that fails on a topic that reads still
        // fails the call.
        gatos.flush_journals()?;
        let generation = gatos.store().refs_generation();
        let mut minting = self.minting.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(m) = minting.last {
            let unmoved = m.generation == generation
                && arrived.saturating_duration_since(m.started) <= STATE_RESCAN;
            if unmoved || m.started >= arrived {
                let mut g = write_lock(&self.inner);
                if let Some(k) = g.states.iter_mut().find(|k| k.seq == m.seq) {
                    k.last_used = Instant::now();
                    if unmoved && m.started < arrived {
                        g.reused += 1;
                    }
                    return Ok(At {
                        window: self.clone(),
                        seq: m.seq,
                    });
                }
            }
        }
        // The generation before the collect: a transaction that completes after this
        // reading moves it, so the next call does not reuse a state that may miss it.
        let generation = gatos.store().refs_generation();
        let started = Instant::now();
        let listed = collect_listed(gatos, minting.packed.as_ref())?;
        minting.packed.clone_from(&listed.listing.packed);
        let at = self.keep_listed(listed, gatos.now(), started);
        minting.last = Some(LastMint {
            started,
            generation,
            seq: at.seq,
        });
        Ok(at)
    }

    /// Keeps what [`collect_listed`] read (a mint's second half, also for tests). When the
    /// newest kept state was kept from a listing with the same `packed-refs` records, only
    /// the refs loose in either listing can differ from it, and only those are compared;
    /// otherwise every ref is, as [`Window::keep`] does. The id is computed over every ref.
    pub fn keep_listed(self: &Arc<Self>, l: Listed, now: Timestamp, clock: Instant) -> At {
        let (id, count) = StateId::of_sorted(l.listing.merged());
        let mut g = write_lock(&self.inner);
        self.evict(&mut g, clock);
        if let Some(at) = self.same_state(&mut g, &id, l.exact, clock) {
            return at;
        }
        let seq = g.next_seq;
        g.next_seq += 1;
        let newest = g.states.back().map(|k| k.seq);
        let base = g
            .base
            .take()
            .filter(|b| Some(b.seq) == newest && b.listing.same_packed(&l.listing));
        let (added, name_bytes) = match &base {
            Some(b) => {
                // Names loose in either listing, each once, in order.
                let mut names: Vec<&str> = b
                    .listing
                    .loose
                    .iter()
                    .chain(&l.listing.loose)
                    .map(|(n, _)| n.as_str())
                    .collect();
                names.sort_unstable();
                names.dedup();
                diff_names(&mut g, seq, names.into_iter(), |n| l.listing.value(n))
            }
            None => diff_all(&mut g, seq, l.listing.merged()),
        };
        drop(base);
        g.base = Some(Base {
            seq,
            listing: l.listing,
        });
        self.push_state(
            &mut g,
            Kept {
                seq,
                id,
                taken_at: now,
                minted_at: now,
                minted: clock,
                last_used: clock,
                refs: count,
                exact: l.exact,
            },
            added,
            name_bytes,
        )
    }

    /// Keeps what a mint collected (the mint's second half, also for tests).
    pub fn keep(self: &Arc<Self>, c: Collected, now: Timestamp, clock: Instant) -> At {
        self.keep_taken(c, now, now, clock)
    }

    /// Keeps refs taken at `taken_at`, earlier than now (a durable snapshot's, loaded from
    /// its refs): the state answers with that time, and is kept as any other from `now`.
    pub fn keep_taken(
        self: &Arc<Self>,
        c: Collected,
        taken_at: Timestamp,
        now: Timestamp,
        clock: Instant,
    ) -> At {
        let id = StateId::of(&c.refs);
        let mut g = write_lock(&self.inner);
        self.evict(&mut g, clock);
        if let Some(at) = self.same_state(&mut g, &id, c.exact, clock) {
            return at;
        }
        let seq = g.next_seq;
        g.next_seq += 1;
        let (added, name_bytes) =
            diff_all(&mut g, seq, c.refs.iter().map(|(n, o)| (n.as_str(), *o)));
        // The newest values are no longer a mint's listing.
        g.base = None;
        self.push_state(
            &mut g,
            Kept {
                seq,
                id,
                taken_at,
                minted_at: now,
                minted: clock,
                last_used: clock,
                refs: c.refs.len(),
                exact: c.exact,
            },
            added,
            name_bytes,
        )
    }

    /// The kept state with this id, marked used, when there is one: the same refs are the
    /// same state.
    fn same_state(
        self: &Arc<Self>,
        g: &mut Inner,
        id: &StateId,
        exact: bool,
        clock: Instant,
    ) -> Option<At> {
        let seq = g.by_id.get(id).copied()?;
        let k = g.states.iter_mut().find(|k| k.seq == seq)?;
        k.last_used = clock;
        k.exact |= exact;
        Some(At {
            window: self.clone(),
            seq: k.seq,
        })
    }

    /// Records a new state whose versions were just pushed (`added` of them, `name_bytes`
    /// for new names), then evicts what is due.
    fn push_state(self: &Arc<Self>, g: &mut Inner, k: Kept, added: usize, name_bytes: usize) -> At {
        g.versions += added;
        g.bytes += name_bytes + added * VERSION_COST + STATE_COST;
        if !k.exact {
            g.inexact += 1;
        }
        g.by_id.insert(k.id, k.seq);
        g.tombstones.remove(&k.id);
        let (seq, clock) = (k.seq, k.minted);
        g.states.push_back(k);
        self.evict(g, clock);
        At {
            window: self.clone(),
            seq,
        }
    }

    /// A kept state by id, marked used: `Gone` for one evicted, `NotFound` for one never
    /// kept here.
    ///
    /// # Errors
    /// As said.
    pub fn get(self: &Arc<Self>, id: &StateId) -> Result<At> {
        self.get_at(id, Instant::now())
    }

    /// [`Window::get`] at a given instant (tests).
    ///
    /// # Errors
    /// As [`Window::get`].
    pub fn get_at(self: &Arc<Self>, id: &StateId, clock: Instant) -> Result<At> {
        let mut g = write_lock(&self.inner);
        self.evict(&mut g, clock);
        if let Some(seq) = g.by_id.get(id).copied() {
            if let Some(k) = g.states.iter_mut().find(|k| k.seq == seq) {
                k.last_used = clock;
            }
            return Ok(At {
                window: self.clone(),
                seq,
            });
        }
        match g.tombstones.get(id) {
            Some(Evicted::Expired) => {
                return Err(Error::new(
                    ErrorCode::Gone,
                    format!(
                        "ref state {id} is no longer kept by this daemon (states are kept {} s after their last use); start again from a fresh state, or make a durable one with `git gatos snapshot`",
                        self.retention.ttl.as_secs()
                    ),
                )
                .with_detail("state", id.to_string())
                .with_detail("reason", "expired"));
            }
            Some(Evicted::Memory) => {
                return Err(Error::new(
                    ErrorCode::Gone,
                    format!(
                        "ref state {id} is no longer kept by this daemon: it was dropped, oldest first, to keep the kept states within {} MiB (gatosd --graphql-state-memory); start again from a fresh state, or make a durable one with `git gatos snapshot`",
                        self.max_bytes() / (1024 * 1024)
                    ),
                )
                .with_detail("state", id.to_string())
                .with_detail("reason", "memory"));
            }
            None => {}
        }
        Err(Error::new(
            ErrorCode::NotFound,
            format!(
                "ref state {id} is not known to this daemon (it keeps the states it answered at, for a while, until it restarts)"
            ),
        )
        .with_detail("state", id.to_string()))
    }

    /// What the window holds.
    pub fn stats(&self) -> Stats {
        let g = read_lock(&self.inner);
        Stats {
            states: g.states.len(),
            names: g.refs.len(),
            versions: g.versions,
            inexact: g.inexact,
            bytes: g.bytes,
            evicted_memory: g.evicted_memory,
            reused: g.reused,
        }
    }

    fn evict(&self, g: &mut Inner, clock: Instant) {
        let r = self.retention;
        let expired = |k: &Kept| {
            clock.saturating_duration_since(k.last_used) > r.ttl
                || clock.saturating_duration_since(k.minted) > r.hard
        };
        let newest = g.states.back().map(|k| k.seq);
        let before = g.states.len();
        let mut keep = VecDeque::with_capacity(before);
        let mut over = before.saturating_sub(r.max_states);
        for k in std::mem::take(&mut g.states) {
            // The newest state stays: the map's newest values are its.
            let drop = Some(k.seq) != newest && (expired(&k) || over > 0);
            if drop {
                over = over.saturating_sub(1);
                Self::bury(g, k.id, Evicted::Expired);
            } else {
                keep.push_back(k);
            }
        }
        g.states = keep;
        if g.states.len() != before {
            Self::fold(g);
        }
        // The memory bound: the oldest states go first, the newest always stays.
        let mut dropped = 0u64;
        let max_bytes = self.max_bytes();
        while g.bytes > max_bytes && g.states.len() > 1 {
            let Some(k) = g.states.pop_front() else {
                break;
            };
            Self::bury(g, k.id, Evicted::Memory);
            dropped += 1;
            Self::fold(g);
        }
        if dropped > 0 {
            g.evicted_memory += dropped;
            tracing::warn!(
                states = dropped,
                kept = g.states.len(),
                bytes = g.bytes,
                max_bytes,
                "ref states dropped before their time to stay within --graphql-state-memory; a client paging on one gets Gone (reason memory)"
            );
        }
    }

    /// Remembers an evicted state's id (bounded), so it answers `Gone`.
    fn bury(g: &mut Inner, id: StateId, why: Evicted) {
        g.by_id.remove(&id);
        if g.tombstones.insert(id, why).is_none() {
            g.tombstone_order.push_back(id);
        }
        while g.tombstone_order.len() > MAX_TOMBSTONES {
            if let Some(old) = g.tombstone_order.pop_front() {
                g.tombstones.remove(&old);
            }
        }
    }

    /// Folds away the versions no kept state can see, and counts what is left.
    fn fold(g: &mut Inner) {
        let seqs: Vec<u64> = g.states.iter().map(|k| k.seq).collect();
        let mut versions = 0usize;
        let mut bytes = g.states.len() * STATE_COST;
        g.refs.retain(|name, vs| {
            let visible = |i: usize| {
                let from = vs[i].0;
                let until = vs.get(i + 1).map_or(u64::MAX, |n| n.0);
                // `seqs` ascends (states are kept in mint order).
                let i = seqs.partition_point(|s| *s < from);
                seqs.get(i).is_some_and(|s| *s < until)
            };
            let keep: Vec<bool> = (0..vs.len()).map(visible).collect();
            let mut i = 0;
            vs.retain(|_| {
                i += 1;
                keep[i - 1]
            });
            let live = !(vs.is_empty() || (vs.len() == 1 && vs[0].1.is_none()));
            if live {
                versions += vs.len();
                bytes += NAME_COST + name.len() + vs.len() * VERSION_COST;
            }
            live
        });
        g.versions = versions;
        g.bytes = bytes;
    }

    fn meta_of(&self, k: &Kept) -> Meta {
        let now = Instant::now();
        let until = (k.last_used + self.retention.ttl).min(k.minted + self.retention.hard);
        let base = k.minted_at;
        Meta {
            id: k.id,
            taken_at: k.taken_at,
            refs: k.refs,
            exact: k.exact,
            kept_until: to_timestamp(to_timestamp(base, k.minted, now), now, until.max(now)),
        }
    }
}

/// Pushes version `seq` of every ref whose newest value differs from `listed` (sorted
/// by name; a ref not listed is deleted at `seq`). Returns the versions added and the
/// bytes of the new names.
fn diff_all<'a>(
    g: &mut Inner,
    seq: u64,
    listed: impl Iterator<Item = (&'a str, Oid)>,
) -> (usize, usize) {
    let mut added = 0usize;
    let mut name_bytes = 0usize;
    let mut listed = listed.peekable();
    let mut new_names: Vec<(Box<str>, Oid)> = Vec::new();
    for (name, versions) in &mut g.refs {
        while let Some((n, o)) = listed.next_if(|(n, _)| *n < &**name) {
            new_names.push((n.into(), o));
        }
        let newest = versions.last().and_then(|(_, v)| *v);
        match listed.next_if(|(n, _)| *n == &**name) {
            Some((_, oid)) if newest != Some(oid) => {
                versions.push((seq, Some(oid)));
                added += 1;
            }
            Some(_) => {}
            None if newest.is_some() => {
                versions.push((seq, None));
                added += 1;
            }
            None => {}
        }
    }
    new_names.extend(listed.map(|(n, o)| (n.into(), o)));
    for (n, o) in new_names {
        name_bytes += NAME_COST + n.len();
        g.refs.insert(n, vec![(seq, Some(o))]);
        added += 1;
    }
    (added, name_bytes)
}

/// Pushes version `seq` of each ref in `names` whose newest value differs from
/// `value(name)` (`None`: deleted); every other ref keeps its newest value. Returns what
/// [`diff_all`] returns.
fn diff_names<'a>(
    g: &mut Inner,
    seq: u64,
    names: impl Iterator<Item = &'a str>,
    value: impl Fn(&str) -> Option<Oid>,
) -> (usize, usize) {
    let mut added = 0usize;
    let mut name_bytes = 0usize;
    for name in names {
        let now = value(name);
        match g.refs.get_mut(name) {
            Some(versions) => {
                if versions.last().and_then(|(_, v)| *v) != now {
                    versions.push((seq, now));
                    added += 1;
                }
            }
            None => {
                if let Some(o) = now {
                    name_bytes += NAME_COST + name.len();
                    g.refs.insert(name.into(), vec![(seq, Some(o))]);
                    added += 1;
                }
            }
        }
    }
    (added, name_bytes)
}

/// One kept state: a [`RefSource`] whose refs never move.
#[derive(Clone)]
pub struct At {
    window: Arc<Window>,
    seq: u64,
}

impl fmt::Debug for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("At").field("seq", &self.seq).finish()
    }
}

impl At {
    /// What is known of the state (`Gone` when it was evicted meanwhile).
    ///
    /// # Errors
    /// As said.
    pub fn meta(&self) -> Result<Meta> {
        let g = read_lock(&self.window.inner);
        g.states
            .iter()
            .find(|k| k.seq == self.seq)
            .map(|k| self.window.meta_of(k))
            .ok_or_else(evicted)
    }

    /// The state's id.
    ///
    /// # Errors
    /// `Gone` when it was evicted meanwhile.
    pub fn id(&self) -> Result<StateId> {
        self.meta().map(|m| m.id)
    }

    fn value(vs: &Versions, seq: u64) -> Option<Oid> {
        vs.iter()
            .rev()
            .find(|(from, _)| *from <= seq)
            .and_then(|v| v.1)
    }

    fn check(&self, g: &Inner) -> Result<()> {
        if g.states.iter().any(|k| k.seq == self.seq) {
            Ok(())
        } else {
            Err(evicted())
        }
    }
}

fn evicted() -> Error {
    Error::new(
        ErrorCode::Gone,
        "the ref state was evicted while it was being read; start again from a fresh state",
    )
}

impl At {
    /// The refs under `prefix` before `before` (all of them without it), by name, last
    /// first, at most `max`: a backward walk (the store has none; a kept state is a map).
    ///
    /// # Errors
    /// `Gone` when the state was evicted meanwhile.
    pub fn list_before(
        &self,
        prefix: &str,
        before: Option<&str>,
        max: usize,
    ) -> Result<Vec<(String, Oid)>> {
        use std::ops::Bound;
        let g = read_lock(&self.window.inner);
        self.check(&g)?;
        // Every name under `prefix` sorts before `prefix` with its last byte raised.
        let mut end_text = prefix.to_owned();
        let last = end_text.pop();
        let prefix_end = match last.and_then(|c| char::from_u32(u32::from(c) + 1)) {
            Some(c) => {
                end_text.push(c);
                Some(end_text)
            }
            None => None,
        };
        if before.is_some_and(|b| b <= prefix) {
            return Ok(Vec::new());
        }
        let end = match (before, prefix_end.as_deref()) {
            (Some(b), Some(e)) if b < e => Bound::Excluded(b),
            (Some(b), None) => Bound::Excluded(b),
            (_, Some(e)) => Bound::Excluded(e),
            (None, None) => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for (name, vs) in g.refs.range::<str, _>((Bound::Included(prefix), end)).rev() {
            if out.len() == max {
                break;
            }
            if !name.starts_with(prefix) {
                continue;
            }
            if let Some(oid) = At::value(vs, self.seq) {
                out.push((name.to_string(), oid));
            }
        }
        Ok(out)
    }
}

impl At {
    /// The ids of the jobs with live refs at this state below `before` (all without it),
    /// newest first, at most `max`: a backward walk of `refs/gatos/jobs/`.
    ///
    /// # Errors
    /// `Gone` when the state was evicted meanwhile.
    pub fn job_ids_before(
        &self,
        before: Option<gatos_types::Ulid>,
        max: usize,
    ) -> Result<Vec<gatos_types::Ulid>> {
        let prefix = names::jobs_prefix();
        let step = max.saturating_mul(4).max(16);
        let mut out: Vec<gatos_types::Ulid> = Vec::with_capacity(max);
        let mut below = before.map(|u| format!("{prefix}{u}"));
        loop {
            let page = self.list_before(&prefix, below.as_deref(), step)?;
            let full = page.len() == step;
            let Some((tail, _)) = page.last() else {
                return Ok(out);
            };
            let next_below = tail.clone();
            for (name, _) in &page {
                let id = name[prefix.len()..]
                    .split('/')
                    .next()
                    .and_then(|t| t.parse::<gatos_types::Ulid>().ok());
                if let Some(id) = id
                    && out.last() != Some(&id)
                {
                    if out.len() == max {
                        return Ok(out);
                    }
                    out.push(id);
                }
            }
            if !full {
                return Ok(out);
            }
            below = Some(next_below);
        }
    }
}

impl RefSource for At {
    fn read(&self, name: &str) -> Result<Option<Oid>> {
        let g = read_lock(&self.window.inner);
        self.check(&g)?;
        Ok(g.refs.get(name).and_then(|vs| At::value(vs, self.seq)))
    }

    fn list_after(
        &self,
        prefix: &str,
        after: Option<&str>,
        max: usize,
    ) -> Result<Vec<(String, Oid)>> {
        use std::ops::Bound;
        let g = read_lock(&self.window.inner);
        self.check(&g)?;
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ => Bound::Included(prefix),
        };
        let mut out = Vec::new();
        for (name, vs) in g.refs.range::<str, _>((start, Bound::Unbounded)) {
            if out.len() == max || !name.starts_with(prefix) {
                break;
            }
            if let Some(oid) = At::value(vs, self.seq) {
                out.push((name.to_string(), oid));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oid(n: u8) -> Oid {
        let mut b = [0u8; 20];
        b[19] = n;
        b[0] = 1;
        Oid::from_bytes(b)
    }

    fn refs(list: &[(&str, u8)]) -> Collected {
        let mut refs: Vec<(String, Oid)> = list
            .iter()
            .map(|(n, o)| (format!("refs/gatos/{n}"), oid(*o)))
            .collect();
        refs.sort();
        Collected {
            refs,
            exact: true,
            lists: 2,
        }
    }

    fn all(at: &At) -> Vec<(String, Oid)> {
        at.list_after("refs/gatos/", None, usize::MAX)
            .expect("listed")
    }

    #[test]
    fn each_state_sees_its_own_refs_and_versions_fold_away() {
        let w = Window::new(Retention {
            ttl: Duration::from_secs(60),
            hard: Duration::from_secs(600),
            max_states: 10,
            max_bytes: DEFAULT_MAX_BYTES,
        });
        let t0 = Instant::now();
        let now = Timestamp::from_millis(0);
        let a = w.keep(refs(&[("jobs/A/job", 1), ("jobs/B/job", 2)]), now, t0);
        let b = w.keep(
            refs(&[("jobs/A/job", 1), ("jobs/A/result", 3), ("jobs/C/job", 4)]),
            now,
            t0,
        );
        let c = w.keep(refs(&[("jobs/A/job", 5), ("jobs/0/job", 6)]), now, t0);
        assert_eq!(all(&a), refs(&[("jobs/A/job", 1), ("jobs/B/job", 2)]).refs);
        assert_eq!(
            all(&b),
            refs(&[("jobs/A/job", 1), ("jobs/A/result", 3), ("jobs/C/job", 4)]).refs
        );
        assert_eq!(all(&c), refs(&[("jobs/A/job", 5), ("jobs/0/job", 6)]).refs);
        assert_eq!(b.read("refs/gatos/jobs/B/job").expect("read"), None);
        assert_eq!(a.read("refs/gatos/jobs/B/job").expect("read"), Some(oid(2)));
        assert_eq!(
            b.list_after("refs/gatos/jobs/", Some("refs/gatos/jobs/A/job"), 1)
                .expect("listed"),
            vec![("refs/gatos/jobs/A/result".to_owned(), oid(3))]
        );
        // The same refs again are the same state.
        let c2 = w.keep(refs(&[("jobs/A/job", 5), ("jobs/0/job", 6)]), now, t0);
        assert_eq!(c2.id().expect("kept"), c.id().expect("kept"));
        assert_eq!(w.stats().states, 3);
        // a and b expire; c (the newest) stays; their versions fold away.
        let later = t0 + Duration::from_secs(120);
        let a_id = StateId::of(&refs(&[("jobs/A/job", 1), ("jobs/B/job", 2)]).refs);
        let err = w.get_at(&a_id, later).expect_err("evicted");
        assert_eq!(err.code(), ErrorCode::Gone);
        assert!(err.to_string().contains(&a_id.to_string()), "{err}");
        assert!(matches!(a.read("refs/gatos/jobs/A/job"), Err(e) if e.code() == ErrorCode::Gone));
        let s = w.stats();
        assert_eq!((s.states, s.names, s.versions), (1, 2, 2), "{s:?}");
        assert_eq!(all(&c), refs(&[("jobs/A/job", 5), ("jobs/0/job", 6)]).refs);
        let unknown = StateId([7; 32]);
        assert_eq!(
            w.get_at(&unknown, later).expect_err("unknown").code(),
            ErrorCode::NotFound
        );
    }

    #[test]
    fn at_most_max_states_are_kept() {
        let w = Window::new(Retention {
            ttl: Duration::from_secs(60),
            hard: Duration::from_secs(600),
            max_states: 3,
            max_bytes: DEFAULT_MAX_BYTES,
        });
        let t0 = Instant::now();
        let mut ats = Vec::new();
        for i in 0..6u8 {
            ats.push(w.keep(refs(&[("x", i)]), Timestamp::from_millis(0), t0));
        }
        assert_eq!(w.stats().states, 3);
        assert!(ats[0].meta().is_err());
        assert_eq!(all(&ats[5]), refs(&[("x", 5)]).refs);
        assert_eq!(all(&ats[3]), refs(&[("x", 3)]).refs);
    }

    #[test]
    fn past_the_memory_bound_the_oldest_states_go_first_and_answer_gone() {
        // Each state here changes every one of 50 refs: a version each (32 B), so a state
        // costs ~1.8 KB beyond the names. A bound of 12 KB keeps a few, never the oldest.
        let w = Window::new(Retention {
            ttl: Duration::from_secs(3600),
            hard: Duration::from_secs(3600),
            max_states: 100,
            max_bytes: 12_000,
        });
        let t0 = Instant::now();
        let names: Vec<String> = (0..50).map(|i| format!("jobs/{i:02}/job")).collect();
        let mut ats = Vec::new();
        for v in 0..20u8 {
            let list: Vec<(&str, u8)> = names.iter().map(|n| (n.as_str(), v)).collect();
            ats.push(w.keep(refs(&list), Timestamp::from_millis(0), t0));
        }
        let s = w.stats();
        assert!(s.bytes <= 12_000, "{s:?}");
        assert!(s.states >= 2 && s.states < 20, "{s:?}");
        assert_eq!(s.evicted_memory, 20 - s.states as u64, "{s:?}");
        // The kept ones are the newest, each still listing what its mint collected.
        for (v, at) in ats.iter().enumerate() {
            let kept = v >= 20 - s.states;
            assert_eq!(at.meta().is_ok(), kept, "state {v}");
            if kept {
                assert!(
                    all(at)
                        .iter()
                        .all(|(_, o)| *o == oid(u8::try_from(v).unwrap_or(0)))
                );
            }
        }
        let first_id =
            StateId::of(&refs(&names.iter().map(|n| (n.as_str(), 0)).collect::<Vec<_>>()).refs);
        let err = w.get_at(&first_id, t0).expect_err("dropped");
        assert_eq!(err.code(), ErrorCode::Gone);
        assert_eq!(
            err.details().get("reason").and_then(|v| v.as_str()),
            Some("memory"),
            "{err}"
        );
        assert!(err.to_string().contains("--graphql-state-memory"), "{err}");
        // A bound below one state keeps the newest anyway.
        let tiny = Window::new(Retention {
            max_bytes: 1,
            ..Retention::default()
        });
        let a = tiny.keep(refs(&[("x", 1)]), Timestamp::from_millis(0), t0);
        let b = tiny.keep(refs(&[("x", 2)]), Timestamp::from_millis(0), t0);
        assert!(a.meta().is_err() && b.meta().is_ok());
        assert_eq!(tiny.stats().states, 1);
    }

    #[test]
    fn the_counted_bytes_match_a_recount_after_every_change() {
        let w = Window::new(Retention::default());
        let t0 = Instant::now();
        for i in 0..30u8 {
            let a = format!("a/{i}");
            let list = vec![("keep", 1u8), (a.as_str(), i), ("moving", i)];
            w.keep(refs(&list), Timestamp::from_millis(0), t0);
            let counted = w.stats().bytes;
            let mut g = write_lock(&w.inner);
            Window::fold(&mut g);
            assert_eq!(g.bytes, counted, "after mint {i}");
        }
    }

    #[test]
    fn list_before_walks_a_prefix_backward() {
        let w = Window::new(Retention::default());
        let at = w.keep(
            refs(&[
                ("jobs/A/job", 1),
                ("jobs/A/result", 2),
                ("jobs/B/job", 3),
                ("jobsx", 4),
                ("a", 5),
            ]),
            Timestamp::from_millis(0),
            Instant::now(),
        );
        let names = |v: Vec<(String, Oid)>| v.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        assert_eq!(
            names(
                at.list_before("refs/gatos/jobs/", None, 10)
                    .expect("listed")
            ),
            [
                "refs/gatos/jobs/B/job",
                "refs/gatos/jobs/A/result",
                "refs/gatos/jobs/A/job"
            ]
        );
        assert_eq!(
            names(
                at.list_before("refs/gatos/jobs/", Some("refs/gatos/jobs/B"), 1)
                    .expect("listed")
            ),
            ["refs/gatos/jobs/A/result"]
        );
        assert!(
            at.list_before("refs/gatos/jobs/", Some("refs/gatos/a"), 10)
                .expect("listed")
                .is_empty()
        );
    }

    #[test]
    fn ids_parse_and_print() {
        let id = StateId::of(&refs(&[("x", 1)]).refs);
        let s = id.to_string();
        assert_eq!(s.parse::<StateId>().expect("parses"), id);
        for bad in ["", "blake3:", "sha256:00", &s[..70], &s.to_uppercase()] {
            assert!(bad.parse::<StateId>().is_err(), "{bad}");
        }
    }

    /// Random writes and deletions: every state lists exactly what its mint collected.
    #[test]
    fn every_state_lists_what_its_mint_collected() {
        use rand::{Rng as _, SeedableRng as _};
        let mut rng = rand::rngs::StdRng::seed_from_u64(18);
        let w = Window::new(Retention::default());
        let t0 = Instant::now();
        let mut cur: BTreeMap<String, u8> = BTreeMap::new();
        let mut minted = Vec::new();
        for _ in 0..200 {
            for _ in 0..rng.gen_range(0..5) {
                let name = format!("n/{}", rng.gen_range(0..30u8));
                if rng.gen_bool(0.3) {
                    cur.remove(&name);
                } else {
                    cur.insert(name, rng.r#gen());
                }
            }
            let list: Vec<(&str, u8)> = cur.iter().map(|(n, o)| (n.as_str(), *o)).collect();
            let c = refs(&list);
            let want = c.refs.clone();
            minted.push((w.keep(c, Timestamp::from_millis(0), t0), want));
        }
        for (at, want) in &minted {
            assert_eq!(&all(at), want);
            assert_eq!(at.id().expect("kept"), StateId::of(want));
        }
    }
}
