//! The tables, their columns, logical types and canonical forms (DESIGN §9, ADR 0016).

use std::fmt::Write as _;

use gatos_types::Timestamp;
use serde_json::Value as Json;

/// A column's logical type: it fixes the canonical JSON form and the storage type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A signed 64-bit integer; canonical form a JSON integer.
    Int,
    /// UTF-8 text; canonical form a JSON string.
    Text,
    /// A boolean; canonical form `true`/`false`.
    Bool,
    /// A UTC instant in milliseconds; canonical form the string
    /// `YYYY-MM-DDTHH:MM:SS.mmmZ` (always with milliseconds).
    Time,
    /// A JSON document; canonical form a JSON string holding its JCS text.
    Json,
}

impl Kind {
    /// The name used in docs and errors.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Int => "integer",
            Kind::Text => "text",
            Kind::Bool => "boolean",
            Kind::Time => "time",
            Kind::Json => "json",
        }
    }

    /// Whether `<`, `<=`, `>`, `>=` make sense on it.
    pub fn is_ordered(self) -> bool {
        matches!(self, Kind::Int | Kind::Text | Kind::Time)
    }
}

/// One column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Its name.
    pub name: &'static str,
    /// Its logical type.
    pub kind: Kind,
}

const fn col(name: &'static str, kind: Kind) -> Column {
    Column { name, kind }
}

/// One table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table {
    /// Its name.
    pub name: &'static str,
    /// Its columns, in storage order.
    pub columns: &'static [Column],
    /// The column the time filters (`--since`, `--until`) apply to, if any.
    pub time_column: Option<&'static str>,
}

impl Table {
    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<(usize, Column)> {
        self.columns
            .iter()
            .enumerate()
            .find(|(_, c)| c.name == name)
            .map(|(i, c)| (i, *c))
    }
}

/// Every table, in name order (the order of the Explorer-Root).
pub const TABLES: &[Table] = &[
    Table {
        name: "attempts",
        columns: &[
            col("job", Kind::Text),
            col("attempt", Kind::Int),
            col("worker", Kind::Text),
            col("worker_key", Kind::Text),
            col("claimed_at", Kind::Time),
            col("lease_until", Kind::Time),
            col("outcome", Kind::Text),
        ],
        time_column: Some("claimed_at"),
    },
    Table {
        name: "checkpoints",
        columns: &[
            col("group", Kind::Text),
            col("topic", Kind::Text),
            col("seq", Kind::Int),
            col("ulid", Kind::Text),
        ],
        time_column: None,
    },
    Table {
        name: "jobs",
        columns: &[
            col("id", Kind::Text),
            col("queue", Kind::Text),
            col("state", Kind::Text),
            col("attempt", Kind::Int),
            col("priority", Kind::Int),
            col("created_at", Kind::Time),
            col("content_id", Kind::Text),
            col("manifest", Kind::Json),
        ],
        time_column: Some("created_at"),
    },
    Table {
        name: "messages",
        columns: &[
            col("topic", Kind::Text),
            col("seq", Kind::Int),
            col("ulid", Kind::Text),
            col("content_id", Kind::Text),
            col("commit", Kind::Text),
            col("published_at", Kind::Time),
            col("payload", Kind::Json),
        ],
        time_column: Some("published_at"),
    },
    Table {
        name: "results",
        columns: &[
            col("job", Kind::Text),
            col("attempt", Kind::Int),
            col("status", Kind::Text),
            col("exit_code", Kind::Int),
            col("started_at", Kind::Time),
            col("finished_at", Kind::Time),
            col("stdout_digest", Kind::Text),
            col("stderr_digest", Kind::Text),
            col("proof_verified", Kind::Bool),
            col("reason", Kind::Json),
        ],
        time_column: Some("finished_at"),
    },
];

/// The table named `name`.
pub fn table(name: &str) -> Option<&'static Table> {
    TABLES.iter().find(|t| t.name == name)
}

/// One cell.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cell {
    /// SQL NULL / JSON null.
    Null,
    /// An integer.
    Int(i64),
    /// Text (also JSON documents, as their JCS text).
    Text(String),
    /// A boolean.
    Bool(bool),
    /// Milliseconds since the epoch, UTC.
    Time(i64),
}

impl Cell {
    /// A text cell, or null.
    pub fn opt_text<T: ToString>(v: Option<T>) -> Cell {
        v.map_or(Cell::Null, |t| Cell::Text(t.to_string()))
    }

    /// A time cell.
    pub fn time(t: Timestamp) -> Cell {
        Cell::Time(t.as_millis())
    }
}

/// Formats a time in the canonical form `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_time(ms: i64) -> String {
    let mut s = String::with_capacity(24);
    push_time(&mut s, ms);
    s
}

/// Appends the canonical form of a time to `out` (every row has one: this is the fast
/// path for years 0 to 9999, the civil-from-days conversion of the proleptic Gregorian
/// calendar).
pub fn push_time(out: &mut String, ms: i64) {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if !(0..=9999).contains(&year) {
        out.push_str(&format_time_slow(ms));
        return;
    }
    let mut b = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: i64| {
        for i in (at..at + width).rev() {
            // `v` is in 0..10^width here, so each digit fits a byte.
            b[i] = b'0' + u8::try_from(v % 10).unwrap_or(0);
            v /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, sod / 3600);
    put(14, 2, sod / 60 % 60);
    put(17, 2, sod % 60);
    put(20, 3, ms.rem_euclid(1000));
    out.push_str(std::str::from_utf8(&b).unwrap_or_default());
}

/// [`format_time`] through [`Timestamp`]'s formatting (any year).
fn format_time_slow(ms: i64) -> String {
    let t = Timestamp::from_millis(ms.div_euclid(1000) * 1000).to_string();
    // `Timestamp` prints whole seconds as `…:SSZ`; add the milliseconds ourselves.
    let mut s = t.trim_end_matches('Z').to_owned();
    let _ = write!(s, ".{:03}Z", ms.rem_euclid(1000));
    s
}

/// Parses the canonical time form (and any RFC 3339 time) to milliseconds.
///
/// # Errors
/// When it is not an RFC 3339 time.
pub fn parse_time(s: &str) -> Result<i64, String> {
    Timestamp::parse_rfc3339(s)
        .map(Timestamp::as_millis)
        .map_err(|e| e.to_string())
}

/// Appends the canonical JSON of a cell to `out` (JCS: strings escaped per RFC 8785).
pub fn write_canonical(out: &mut String, kind: Kind, cell: &Cell) {
    match cell {
        Cell::Null => out.push_str("null"),
        Cell::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Cell::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Cell::Time(ms) => {
            // The canonical form needs no escaping.
            out.push('"');
            push_time(out, *ms);
            out.push('"');
        }
        Cell::Text(s) => {
            debug_assert!(kind != Kind::Time);
            write_string(out, s);
        }
    }
}

/// Writes a JSON string as JCS does (RFC 8785 §3.2.2.2: only `"`, `\`, and control
/// characters are escaped; `\b \t \n \f \r` by name, the rest as `\u00xx`).
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    // Runs of bytes that need no escape are copied whole.
    let mut rest = s;
    while let Some(at) = rest
        .bytes()
        .position(|b| b == b'"' || b == b'\\' || b < 0x20)
    {
        out.push_str(&rest[..at]);
        let (c, tail) = rest[at..].split_at(1);
        rest = tail;
        match c.chars().next().unwrap_or_default() {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push_str(rest);
    out.push('"');
}

/// The selected columns of a table, as indexes into `Table::columns`, sorted by column
/// name (the JCS member order).
#[derive(Debug, Clone)]
pub struct Projection {
    /// The table.
    pub table: &'static Table,
    /// Indexes of the selected columns, in storage order.
    pub columns: Vec<usize>,
    by_name: Vec<usize>,
}

impl Projection {
    /// Selects `columns` (indexes in storage order) of `table`.
    pub fn new(table: &'static Table, mut columns: Vec<usize>) -> Projection {
        columns.sort_unstable();
        columns.dedup();
        let mut by_name = columns.clone();
        by_name.sort_by_key(|&i| table.columns[i].name);
        Projection {
            table,
            columns,
            by_name,
        }
    }

    /// Every column of `table`.
    pub fn all(table: &'static Table) -> Projection {
        Projection::new(table, (0..table.columns.len()).collect())
    }

    /// The selected columns.
    pub fn selected(&self) -> impl Iterator<Item = Column> + '_ {
        self.columns.iter().map(|&i| self.table.columns[i])
    }

    /// The JCS text of a row: the selected cells of `full` (a full row, in storage order)
    /// as an object with members in name order.
    pub fn canonical(&self, full: &[Cell], out: &mut String) {
        out.clear();
        out.push('{');
        for (n, &i) in self.by_name.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            let c = self.table.columns[i];
            write_string(out, c.name);
            out.push(':');
            write_canonical(out, c.kind, &full[i]);
        }
        out.push('}');
    }

    /// The row digest: blake3 of the row's JCS text.
    pub fn digest(&self, full: &[Cell], buf: &mut String) -> [u8; 32] {
        self.canonical(full, buf);
        *blake3::hash(buf.as_bytes()).as_bytes()
    }
}

/// Canonical text of a JSON document (JCS).
pub fn json_text(v: &Json) -> String {
    gatos_types::jcs::to_string(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_time_form_is_the_general_one() {
        let mut ms: i64 = -62_167_219_200_000; // 0000-01-01T00:00:00Z
        let end: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
        let mut checked = 0;
        while ms <= end {
            assert_eq!(format_time(ms), format_time_slow(ms), "{ms}");
            // Steps that land on every month, leap days and millisecond values.
            ms += 86_400_000 * 29 + 3_600_000 * 5 + 61_001;
            checked += 1;
        }
        assert!(checked > 120_000);
        for ms in [
            0,
            -1,
            951_782_400_000,
            4_107_542_400_000,
            end,
            end + 1,
            -62_167_219_200_001,
        ] {
            assert_eq!(format_time(ms), format_time_slow(ms), "{ms}");
        }
    }

    #[test]
    fn strings_escape_as_jcs_does() {
        let mut out = String::new();
        for s in ["", "plain", "q\"uote\\", "tab\tnl\n\u{1}é€😀", "\u{1f}end"] {
            out.clear();
            write_string(&mut out, s);
            assert_eq!(
                out,
                gatos_types::jcs::to_string(&Json::String(s.to_owned())),
                "{s:?}"
            );
        }
    }
}
