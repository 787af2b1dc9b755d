//! Time and randomness, injected so tests repeat.
//!
//! The binaries read the hidden, test-only variables `GATOS_TEST_CLOCK` (an RFC 3339 time
//! the clock starts at; it then advances with real time) and `GATOS_TEST_SEED` (a number
//! seeding every random choice) through [`crate::OpenOptions::from_test_env`].

use std::sync::Mutex;
use std::time::Instant;

use gatos_types::{Timestamp, Ulid};
use rand::{Rng, RngCore, SeedableRng};

/// A source of the current time.
pub trait Clock: Send + Sync {
    /// Returns now.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp::from_millis(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A clock that starts at a fixed time and advances with real elapsed time.
#[derive(Debug)]
pub struct OffsetClock {
    start: Timestamp,
    since: Instant,
}

impl OffsetClock {
    /// Starts at `start`.
    pub fn starting_at(start: Timestamp) -> OffsetClock {
        OffsetClock {
            start,
            since: Instant::now(),
        }
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> Timestamp {
        let ms = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.start.plus(gatos_types::Dur::from_millis(ms))
    }
}

/// A clock that stands still unless moved (unit tests).
#[derive(Debug)]
pub struct FixedClock(Mutex<Timestamp>);

impl FixedClock {
    /// Stands at `t`.
    pub fn at(t: Timestamp) -> FixedClock {
        FixedClock(Mutex::new(t))
    }
    /// Moves the clock forward.
    pub fn advance(&self, d: gatos_types::Dur) {
        let mut t = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *t = t.plus(d);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Randomness: the OS's, or a seeded generator for tests.
#[derive(Debug)]
pub struct Entropy(Mutex<rand::rngs::StdRng>);

impl Entropy {
    /// Seeds from the operating system.
    pub fn from_os() -> Entropy {
        Entropy(Mutex::new(rand::rngs::StdRng::from_entropy()))
    }
    /// Seeds deterministically.
    pub fn seeded(seed: u64) -> Entropy {
        Entropy(Mutex::new(rand::rngs::StdRng::seed_from_u64(seed)))
    }
    fn with<T>(&self, f: impl FnOnce(&mut rand::rngs::StdRng) -> T) -> T {
        let mut rng = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut rng)
    }
    /// Returns 80 random bits.
    pub fn random80(&self) -> u128 {
        self.with(|r| (u128::from(r.next_u64()) << 16) ^ u128::from(r.next_u32() & 0xffff))
    }
    /// Returns a random float in `[lo, hi)`.
    pub fn uniform(&self, lo: f64, hi: f64) -> f64 {
        self.with(|r| r.gen_range(lo..hi))
    }
    /// Fills a buffer.
    pub fn fill(&self, buf: &mut [u8]) {
        self.with(|r| r.fill_bytes(buf));
    }
    /// Makes a new ULID strictly above `floor` when given ("monotonic where the clock allows").
    pub fn ulid(&self, now: Timestamp, floor: Option<Ulid>) -> Ulid {
        let ms = u64::try_from(now.as_millis()).unwrap_or(0);
        let fresh = Ulid::from_parts(ms, self.random80());
        match floor {
            Some(f) if fresh <= f => f.successor().unwrap_or(fresh),
            _ => fresh,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulids_are_monotonic_even_when_the_clock_stands_still() {
        let e = Entropy::seeded(7);
        let now = Timestamp::from_millis(1_700_000_000_000);
        let mut last = e.ulid(now, None);
        for _ in 0..1000 {
            let next = e.ulid(now, Some(last));
            assert!(next > last);
            last = next;
        }
        // A clock that goes backwards still gives ULIDs above the floor.
        let earlier = e.ulid(Timestamp::from_millis(1_600_000_000_000), Some(last));
        assert!(earlier > last);
    }

    #[test]
    fn seeded_entropy_repeats() {
        assert_eq!(Entropy::seeded(1).random80(), Entropy::seeded(1).random80());
    }
}
