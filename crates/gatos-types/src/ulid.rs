//! ULIDs: 26 characters of Crockford base32, uppercase.

use std::fmt;
use std::str::FromStr;

use crate::digest::ParseError;

/// A ULID: 48 bits of milliseconds since the Unix epoch and 80 bits of randomness.
///
/// Only the canonical uppercase form parses (`^[0-9A-HJKMNP-TV-Z]{26}$`), so that every ULID
/// has exactly one spelling in refs, trailers and cursors.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ulid(u128);

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

impl Ulid {
    /// The largest millisecond value a ULID can hold.
    pub const MAX_MS: u64 = (1 << 48) - 1;

    /// Builds a ULID from a millisecond timestamp and 80 random bits.
    pub fn from_parts(ms: u64, random: u128) -> Ulid {
        let ms = u128::from(ms.min(Self::MAX_MS));
        let random = random & ((1u128 << 80) - 1);
        Ulid((ms << 80) | random)
    }
    /// Wraps the 128-bit value.
    pub fn from_u128(v: u128) -> Ulid {
        Ulid(v)
    }
    /// Returns the 128-bit value.
    pub fn to_u128(self) -> u128 {
        self.0
    }
    /// Returns the 16 bytes, big-endian.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }
    /// Returns the millisecond timestamp.
    pub fn timestamp_ms(self) -> u64 {
        u64::try_from(self.0 >> 80).expect("48 bits fit in u64")
    }
    /// Returns the next ULID in order, or `None` at the very end of the space.
    pub fn successor(self) -> Option<Ulid> {
        self.0.checked_add(1).map(Ulid)
    }
}

impl fmt::Display for Ulid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 26];
        let mut v = self.0;
        for slot in buf.iter_mut().rev() {
            *slot = ALPHABET[usize::try_from(v & 31).expect("5 bits")];
            v >>= 5;
        }
        f.write_str(std::str::from_utf8(&buf).expect("alphabet is ASCII"))
    }
}

impl fmt::Debug for Ulid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Ulid {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        if s.len() != 26 {
            return Err(ParseError::new("ULID", s, "must be 26 characters"));
        }
        let mut v: u128 = 0;
        for (i, b) in s.bytes().enumerate() {
            let digit = ALPHABET.iter().position(|&a| a == b).ok_or_else(|| {
                ParseError::new(
                    "ULID",
                    s,
                    "must be uppercase Crockford base32 (no I, L, O, U)",
                )
            })?;
            if i == 0 && digit > 7 {
                return Err(ParseError::new("ULID", s, "is larger than 128 bits"));
            }
            v = (v << 5) | u128::try_from(digit).expect("digit < 32");
        }
        Ok(Ulid(v))
    }
}

crate::digest::string_serde!(Ulid, "a ULID", pattern = "^[0-7][0-9A-HJKMNP-TV-Z]{25}$");

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn agrees_with_the_ulid_crate() {
        let u = Ulid::from_parts(1_700_000_000_000, 0x1234_5678_9abc_def0_1234);
        let theirs = ulid::Ulid::from_parts(1_700_000_000_000, 0x1234_5678_9abc_def0_1234);
        assert_eq!(u.to_string(), theirs.to_string());
        assert_eq!(u.timestamp_ms(), 1_700_000_000_000);
    }

    #[test]
    fn only_the_canonical_form_parses() {
        let s = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
        assert_eq!(s.parse::<Ulid>().expect("valid").to_string(), s);
        assert!(s.to_lowercase().parse::<Ulid>().is_err());
        assert!("01ARZ3NDEKTSV4RRFFQ69G5FAI".parse::<Ulid>().is_err());
        assert!("81ARZ3NDEKTSV4RRFFQ69G5FAV".parse::<Ulid>().is_err());
        assert!("01ARZ3NDEKTSV4RRFFQ69G5FA".parse::<Ulid>().is_err());
    }

    proptest! {
        #[test]
        fn text_round_trips_and_keeps_order(a in any::<u128>(), b in any::<u128>()) {
            let (x, y) = (Ulid::from_u128(a), Ulid::from_u128(b));
            prop_assert_eq!(x.to_string().parse::<Ulid>().expect("round trip"), x);
            prop_assert_eq!(x.cmp(&y), x.to_string().cmp(&y.to_string()));
        }
    }
}
