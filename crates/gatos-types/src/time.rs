//! Timestamps and the DUR / TIME grammars of DESIGN §1.
//!
//! DUR: `30` (seconds), `30s`, `5m`, `2h`, `7d`, or ISO-8601 (`PT30S`, `P1DT2H`, `P2W`).
//! TIME: RFC 3339 (`2026-11-23T10:00:00Z`) or a DUR meaning "from now".

use std::fmt;
use std::str::FromStr;

use ::time::OffsetDateTime;
use ::time::format_description::well_known::Rfc3339;

/// A point in time: milliseconds since the Unix epoch, printed as RFC 3339 UTC.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(i64);

/// Why a time or duration did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {reason}")]
pub struct TimeError {
    /// "duration" or "time".
    pub kind: &'static str,
    /// The offending text.
    pub value: String,
    /// What is wrong.
    pub reason: &'static str,
}

impl TimeError {
    fn new(kind: &'static str, value: &str, reason: &'static str) -> TimeError {
        TimeError {
            kind,
            value: value.chars().take(80).collect(),
            reason,
        }
    }
}

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);
    /// The latest time RFC 3339 can write: `9999-12-31T23:59:59.999Z`. Later times are not
    /// representable in a document; [`Timestamp::plus`] stops here and
    /// [`Timestamp::checked_plus`] says so.
    pub const MAX: Timestamp = Timestamp(253_402_300_799_999);
    /// The earliest time RFC 3339 can write: `0000-01-01T00:00:00Z`.
    pub const MIN: Timestamp = Timestamp(-62_167_219_200_000);

    /// Wraps milliseconds since the epoch.
    pub fn from_millis(ms: i64) -> Timestamp {
        Timestamp(ms)
    }
    /// Returns milliseconds since the epoch.
    pub fn as_millis(self) -> i64 {
        self.0
    }
    /// Returns whole seconds since the epoch (floor).
    pub fn as_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }
    /// Returns this time plus a duration, at most [`Timestamp::MAX`].
    pub fn plus(self, d: Dur) -> Timestamp {
        self.checked_plus(d).unwrap_or(Timestamp::MAX.max(self))
    }
    /// Returns this time plus a duration, `None` past [`Timestamp::MAX`] (a time no
    /// document can hold).
    pub fn checked_plus(self, d: Dur) -> Option<Timestamp> {
        let t = self.0.checked_add(i64::try_from(d.as_millis()).ok()?)?;
        (t <= Timestamp::MAX.0).then_some(Timestamp(t))
    }
    /// Returns this time minus a duration, at least [`Timestamp::MIN`].
    pub fn minus(self, d: Dur) -> Timestamp {
        Timestamp(
            self.0
                .saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                .max(Timestamp::MIN.0.min(self.0)),
        )
    }
    /// Returns the time from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Dur {
        Dur::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }
    /// Returns the UTC calendar date as `yyyy-mm-dd`.
    pub fn utc_date(self) -> String {
        let dt = self.to_datetime();
        format!(
            "{:04}-{:02}-{:02}",
            dt.year(),
            u8::from(dt.month()),
            dt.day()
        )
    }
    /// Returns the UTC month as `yyyy-mm`.
    pub fn utc_month(self) -> String {
        let dt = self.to_datetime();
        format!("{:04}-{:02}", dt.year(), u8::from(dt.month()))
    }
    /// The calendar time, within what RFC 3339 writes: a time outside it (a hostile commit's,
    /// say) is shown as the nearest end, never as another time inside the range.
    fn to_datetime(self) -> OffsetDateTime {
        let ms = self.0.clamp(Timestamp::MIN.0, Timestamp::MAX.0);
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
    /// Parses RFC 3339 (any offset; fractions beyond milliseconds are truncated).
    ///
    /// # Errors
    /// When `s` is not RFC 3339.
    pub fn parse_rfc3339(s: &str) -> Result<Timestamp, TimeError> {
        let dt = OffsetDateTime::parse(s, &Rfc3339).map_err(|_| {
            TimeError::new("time", s, "expected RFC 3339, e.g. 2026-11-23T10:00:00Z")
        })?;
        let ms = dt.unix_timestamp_nanos().div_euclid(1_000_000);
        i64::try_from(ms)
            .ok()
            .filter(|ms| (Timestamp::MIN.0..=Timestamp::MAX.0).contains(ms))
            .map(Timestamp)
            .ok_or_else(|| {
                TimeError::new(
                    "time",
                    s,
                    "out of range: a time is from 0000-01-01 to 9999-12-31 UTC",
                )
            })
    }
}

impl fmt::Display for Timestamp {
    /// Prints RFC 3339 UTC with milliseconds only when they are not zero.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dt = self.to_datetime();
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            dt.year(),
            u8::from(dt.month()),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second()
        )?;
        let ms = self
            .0
            .clamp(Timestamp::MIN.0, Timestamp::MAX.0)
            .rem_euclid(1000);
        if ms != 0 {
            write!(f, ".{ms:03}")?;
        }
        f.write_str("Z")
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Timestamp {
    type Err = TimeError;
    fn from_str(s: &str) -> Result<Self, TimeError> {
        Timestamp::parse_rfc3339(s)
    }
}

crate::digest::string_serde!(Timestamp, "an RFC 3339 time");

/// A duration with millisecond resolution.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Dur(u64);

impl Dur {
    /// Zero.
    pub const ZERO: Dur = Dur(0);

    /// Wraps milliseconds.
    pub const fn from_millis(ms: u64) -> Dur {
        Dur(ms)
    }
    /// Wraps seconds.
    pub const fn from_secs(s: u64) -> Dur {
        Dur(s.saturating_mul(1000))
    }
    /// Returns milliseconds.
    pub fn as_millis(self) -> u64 {
        self.0
    }
    /// Returns whole seconds (floor).
    pub fn as_secs(self) -> u64 {
        self.0 / 1000
    }
    /// Returns seconds as a float, for documents that store seconds.
    pub fn as_secs_f64(self) -> f64 {
        // Millisecond values below 2^53 convert exactly.
        self.0 as f64 / 1000.0
    }
    /// Converts to `std::time::Duration`.
    pub fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0)
    }
    /// Parses the DUR grammar of DESIGN §1.
    ///
    /// # Errors
    /// When `s` is none of the accepted forms.
    pub fn parse(s: &str) -> Result<Dur, TimeError> {
        let bad = |reason| TimeError::new("duration", s, reason);
        let t = s.trim();
        if t.is_empty() {
            return Err(bad("must not be empty"));
        }
        if let Some(iso) = t.strip_prefix('P') {
            return parse_iso(iso).ok_or_else(|| {
                bad("expected ISO-8601 like PT30S, P1DT2H or P2W (no years or months)")
            });
        }
        let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
            Some(i) => t.split_at(i),
            None => (t, "s"),
        };
        if digits.is_empty() {
            return Err(bad("expected a number with an optional unit s, m, h or d"));
        }
        let n: u64 = digits.parse().map_err(|_| bad("number too large"))?;
        let per: u64 = match unit {
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad("unit must be s, m, h or d")),
        };
        n.checked_mul(per).map(Dur).ok_or_else(|| bad("too large"))
    }
}

fn parse_iso(rest: &str) -> Option<Dur> {
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => {
            if t.is_empty() {
                return None;
            }
            (d, Some(t))
        }
        None => (rest, None),
    };
    if date.is_empty() && time.is_none() {
        return None;
    }
    let mut total: u64 = 0;
    let mut take = |part: &str, units: &[(char, u64)]| -> Option<()> {
        let mut num = String::new();
        let mut idx = 0;
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                num.push(c);
                continue;
            }
            let pos = units.iter().position(|(u, _)| *u == c)?;
            if pos < idx || num.is_empty() {
                return None;
            }
            idx = pos + 1;
            let ms_per = units[pos].1;
            let ms = if let Some((whole, frac)) = num.split_once('.') {
                // Fractions only for seconds (PT0.5S); millisecond resolution.
                if c != 'S' || frac.is_empty() || whole.is_empty() {
                    return None;
                }
                let frac3: String = frac.chars().chain("000".chars()).take(3).collect();
                whole
                    .parse::<u64>()
                    .ok()?
                    .checked_mul(1000)?
                    .checked_add(frac3.parse().ok()?)?
            } else {
                num.parse::<u64>().ok()?.checked_mul(ms_per)?
            };
            total = total.checked_add(ms)?;
            num.clear();
        }
        if num.is_empty() { Some(()) } else { None }
    };
    if !date.is_empty() {
        take(date, &[('W', 604_800_000), ('D', 86_400_000)])?;
    }
    if let Some(t) = time {
        take(t, &[('H', 3_600_000), ('M', 60_000), ('S', 1_000)])?;
    }
    Some(Dur(total))
}

impl fmt::Display for Dur {
    /// Prints the shortest exact DUR form: `90s`, `5m`, `2h`, `7d`, or `1500ms` as `PT1.5S`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        if !ms.is_multiple_of(1000) {
            return write!(f, "PT{}.{:03}S", ms / 1000, ms % 1000);
        }
        let s = ms / 1000;
        if s != 0 && s.is_multiple_of(86_400) {
            write!(f, "{}d", s / 86_400)
        } else if s != 0 && s.is_multiple_of(3600) {
            write!(f, "{}h", s / 3600)
        } else if s != 0 && s.is_multiple_of(60) {
            write!(f, "{}m", s / 60)
        } else {
            write!(f, "{s}s")
        }
    }
}

impl fmt::Debug for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Dur {
    type Err = TimeError;
    fn from_str(s: &str) -> Result<Self, TimeError> {
        Dur::parse(s)
    }
}

/// Parses TIME: RFC 3339, or a DUR meaning "that long after `now`".
///
/// # Errors
/// When `s` is neither form.
pub fn parse_time(s: &str, now: Timestamp) -> Result<Timestamp, TimeError> {
    if s.contains(['-', ':']) {
        return Timestamp::parse_rfc3339(s);
    }
    let d = Dur::parse(s)
        .map_err(|_| TimeError::new("time", s, "expected RFC 3339 or a duration from now"))?;
    now.checked_plus(d).ok_or_else(|| {
        TimeError::new(
            "time",
            s,
            "too far ahead: a time ends at 9999-12-31T23:59:59.999Z",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dur_grammar() {
        let ok = [
            ("30", 30_000),
            ("30s", 30_000),
            ("5m", 300_000),
            ("2h", 7_200_000),
            ("7d", 604_800_000),
            ("PT30S", 30_000),
            ("PT0.5S", 500),
            ("P1DT2H", 93_600_000),
            ("P2W", 1_209_600_000),
            ("PT1H30M", 5_400_000),
            ("0", 0),
        ];
        for (s, ms) in ok {
            assert_eq!(Dur::parse(s).map(Dur::as_millis), Ok(ms), "{s}");
        }
        for bad in [
            "", "s", "5x", "-5", "1.5m", "P", "PT", "P1Y", "P1M", "PT5M5H", "5 m", "PTS",
        ] {
            assert!(Dur::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn dur_prints_and_reparses() {
        for ms in [0, 1_000, 90_000, 300_000, 7_200_000, 86_400_000, 1_500] {
            let d = Dur::from_millis(ms);
            assert_eq!(Dur::parse(&d.to_string()), Ok(d));
        }
    }

    #[test]
    fn timestamps_print_rfc3339_utc() {
        let t = Timestamp::parse_rfc3339("2026-11-23T10:00:00+01:00").expect("valid");
        assert_eq!(t.to_string(), "2026-11-23T09:00:00Z");
        assert_eq!(t.utc_date(), "2026-11-23");
        assert_eq!(
            Timestamp::from_millis(1_500).to_string(),
            "1970-01-01T00:00:01.500Z"
        );
        assert!(Timestamp::parse_rfc3339("yesterday").is_err());
    }

    #[test]
    fn time_is_rfc3339_or_a_duration_from_now() {
        let now = Timestamp::from_millis(1_000_000);
        assert_eq!(
            parse_time("30s", now),
            Ok(Timestamp::from_millis(1_030_000))
        );
        assert_eq!(
            parse_time("1970-01-01T00:00:10Z", now),
            Ok(Timestamp::from_millis(10_000))
        );
        assert!(parse_time("soon", now).is_err());
    }

    /// Issue found by a black-box test: `--run-after 99999999999d` saturated to the end of
    /// `i64`, which printed as 1970 and made a deferred job claimable at once. A time past
    /// what RFC 3339 writes is refused, and no arithmetic or printing leaves the range.
    #[test]
    fn times_stay_within_what_rfc3339_writes() {
        let now = Timestamp::parse_rfc3339("2026-12-07T00:00:00Z").expect("valid");
        let e = parse_time("99999999999d", now).expect_err("too far");
        assert!(e.reason.contains("9999-12-31"), "{e}");
        assert!(
            parse_time("P9999999W", now)
                .expect_err("past 9999")
                .reason
                .contains("9999-12-31")
        );
        assert_eq!(
            Timestamp::MAX.to_string(),
            "9999-12-31T23:59:59.999Z",
            "the end of the range"
        );
        assert_eq!(Timestamp::MIN.to_string(), "0000-01-01T00:00:00Z");
        assert_eq!(now.plus(Dur::from_millis(u64::MAX)), Timestamp::MAX);
        assert_eq!(now.checked_plus(Dur::from_millis(u64::MAX)), None);
        assert_eq!(Timestamp::MAX.checked_plus(Dur::ZERO), Some(Timestamp::MAX));
        assert_eq!(Timestamp::MAX.checked_plus(Dur::from_millis(1)), None);
        assert_eq!(now.minus(Dur::from_millis(u64::MAX)), Timestamp::MIN);
        // A time outside the range (a hostile commit's) prints as the nearest end.
        assert_eq!(
            Timestamp::from_millis(i64::MAX).to_string(),
            "9999-12-31T23:59:59.999Z"
        );
        assert_eq!(
            Timestamp::from_millis(i64::MIN).to_string(),
            "0000-01-01T00:00:00Z"
        );
        // An offset that moves a written time past the range is refused.
        assert!(Timestamp::parse_rfc3339("9999-12-31T23:00:00-05:00").is_err());
        assert!(Timestamp::parse_rfc3339("9999-12-31T23:00:00Z").is_ok());
        for t in [Timestamp::MIN, Timestamp::MAX, now] {
            assert_eq!(Timestamp::parse_rfc3339(&t.to_string()), Ok(t));
        }
    }
}
