//! What an export selects: tables, columns, a time window and `--where` predicates, and
//! the canonical filter spec the Explorer-Root covers.
//!
//! Predicate grammar (conjunctions only; each `--where` is one more conjunct):
//!
//! ```text
//! where  := term { ("AND" | "and" | "&&" | ",") term }
//! term   := [table "."] column op value
//! op     := "=" | "==" | "<" | "<=" | ">" | ">="
//! value  := 'single-quoted' | "double-quoted" | bare   (bare: up to the next blank)
//! ```
//!
//! An unqualified column applies to every exported table that has it. Anything else —
//! `OR`, `NOT`, `!=`, `LIKE`, unknown tables or columns, a range on a JSON or boolean
//! column, a value of the wrong type — is refused with `InvalidInput` naming the part.

use std::collections::BTreeMap;

use gatos::Error;
use gatos_types::ErrorCode;
use serde_json::{Value as Json, json};

use crate::schema::{self, Cell, Kind, Projection, TABLES, Table};

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    /// `=`
    Eq,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Op {
    /// Its canonical spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }

    fn holds(self, o: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::{Equal, Greater, Less};
        match self {
            Op::Eq => o == Equal,
            Op::Lt => o == Less,
            Op::Le => o != Greater,
            Op::Gt => o == Greater,
            Op::Ge => o != Less,
        }
    }
}

/// One conjunct on one table's column.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pred {
    /// The column's index in its table.
    pub column: usize,
    /// The comparison.
    pub op: Op,
    /// The value (typed by the column).
    pub value: Cell,
}

impl Pred {
    /// Whether a row (full, in storage order) satisfies it. NULL satisfies nothing.
    pub fn matches(&self, row: &[Cell]) -> bool {
        let cell = &row[self.column];
        match (cell, &self.value) {
            (Cell::Null, _) => false,
            (Cell::Int(a), Cell::Int(b)) => self.op.holds(a.cmp(b)),
            (Cell::Time(a), Cell::Time(b)) => self.op.holds(a.cmp(b)),
            (Cell::Text(a), Cell::Text(b)) => self.op.holds(a.as_str().cmp(b.as_str())),
            (Cell::Bool(a), Cell::Bool(b)) => self.op.holds(a.cmp(b)),
            _ => false,
        }
    }
}

/// The selection of one table.
#[derive(Debug, Clone)]
pub struct TableSpec {
    /// The columns exported.
    pub projection: Projection,
    /// Conjuncts (the time window included, on the table's time column).
    pub preds: Vec<Pred>,
}

impl TableSpec {
    /// The table.
    pub fn table(&self) -> &'static Table {
        self.projection.table
    }

    /// Whether a full row is exported.
    pub fn matches(&self, row: &[Cell]) -> bool {
        self.preds.iter().all(|p| p.matches(row))
    }

    /// The tightest bounds the predicates put on an integer or time column:
    /// `(lowest allowed, highest allowed)`, inclusive.
    pub fn int_bounds(&self, column: &str) -> (Option<i64>, Option<i64>) {
        let Some((i, _)) = self.table().column(column) else {
            return (None, None);
        };
        let (mut lo, mut hi): (Option<i64>, Option<i64>) = (None, None);
        for p in self.preds.iter().filter(|p| p.column == i) {
            let v = match p.value {
                Cell::Int(v) | Cell::Time(v) => v,
                _ => continue,
            };
            let (l, h) = match p.op {
                Op::Eq => (Some(v), Some(v)),
                Op::Ge => (Some(v), None),
                Op::Gt => (Some(v.saturating_add(1)), None),
                Op::Le => (None, Some(v)),
                Op::Lt => (None, Some(v.saturating_sub(1))),
            };
            // `None` sorts below every `Some`, so `max` keeps the tighter lower bound.
            lo = lo.max(l);
            hi = match (hi, h) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        (lo, hi)
    }

    /// Whether a text value of `column` could be exported (false when an equality or range
    /// on it excludes it). Used to skip whole topics or jobs before reading them.
    pub fn admits_text(&self, column: &str, value: &str) -> bool {
        let Some((i, _)) = self.table().column(column) else {
            return true;
        };
        self.preds
            .iter()
            .filter(|p| p.column == i)
            .all(|p| match &p.value {
                Cell::Text(v) => p.op.holds(value.cmp(v.as_str())),
                _ => true,
            })
    }
}

/// Everything an export selects.
#[derive(Debug, Clone)]
pub struct Filter {
    /// `--since`, milliseconds (inclusive).
    pub since: Option<i64>,
    /// `--until`, milliseconds (exclusive).
    pub until: Option<i64>,
    /// The exported tables, in name order.
    pub tables: Vec<TableSpec>,
    /// The time job states were derived at (leases expire with time), milliseconds, when
    /// it is part of the spec: in `gatos-export/2`, when an exported job has neither a
    /// result nor a cancel (ADR 0024); in `gatos-export/1`, when a job table is exported.
    pub as_of: Option<i64>,
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidInput, msg)
}

/// What the command line gave, before checking.
#[derive(Debug, Clone, Default)]
pub struct FilterArgs {
    /// `--since`, already resolved to milliseconds.
    pub since: Option<i64>,
    /// `--until`, already resolved to milliseconds.
    pub until: Option<i64>,
    /// `--tables` (comma-separated names; repeatable). Empty: every table.
    pub tables: Vec<String>,
    /// `--columns TABLE:c1,c2` (repeatable).
    pub columns: Vec<String>,
    /// `--where` (repeatable).
    pub wheres: Vec<String>,
}

/// A parsed term, before it is bound to tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    /// The table, when qualified.
    pub table: Option<String>,
    /// The column.
    pub column: String,
    /// The comparison.
    pub op: Op,
    /// The value as written (quotes removed).
    pub value: String,
}

/// Splits a `--where` into terms.
///
/// # Errors
/// `InvalidInput` naming the offending part.
pub fn parse_where(text: &str) -> Result<Vec<Term>, Error> {
    let toks = tokenize(text)?;
    let mut terms = Vec::new();
    let mut i = 0;
    if toks.is_empty() {
        return Err(invalid("--where is empty"));
    }
    loop {
        let Some(Tok::Word(lhs)) = toks.get(i) else {
            return Err(invalid(format!(
                "--where {text:?}: expected a column at {}",
                describe(toks.get(i))
            )));
        };
        refuse_keyword(text, lhs)?;
        let op = match toks.get(i + 1) {
            Some(Tok::Op(op)) => *op,
            other => {
                return Err(invalid(format!(
                    "--where {text:?}: expected one of = < <= > >= after {lhs:?}, found {}",
                    describe(other)
                )));
            }
        };
        let value = match toks.get(i + 2) {
            Some(Tok::Word(v)) => {
                refuse_keyword(text, v)?;
                v.clone()
            }
            Some(Tok::Quoted(v)) => v.clone(),
            other => {
                return Err(invalid(format!(
                    "--where {text:?}: expected a value after {lhs:?} {}, found {}",
                    op.as_str(),
                    describe(other)
                )));
            }
        };
        let (table, column) = match lhs.split_once('.') {
            Some((t, c)) => (Some(t.to_owned()), c.to_owned()),
            None => (None, lhs.clone()),
        };
        terms.push(Term {
            table,
            column,
            op,
            value,
        });
        i += 3;
        match toks.get(i) {
            None => return Ok(terms),
            Some(Tok::And) => i += 1,
            other => {
                return Err(invalid(format!(
                    "--where {text:?}: only AND joins terms; found {}",
                    describe(other)
                )));
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Quoted(String),
    Op(Op),
    And,
}

fn describe(t: Option<&Tok>) -> String {
    match t {
        None => "the end".to_owned(),
        Some(Tok::Word(w)) => format!("{w:?}"),
        Some(Tok::Quoted(w)) => format!("'{w}'"),
        Some(Tok::Op(o)) => format!("{:?}", o.as_str()),
        Some(Tok::And) => "AND".to_owned(),
    }
}

fn refuse_keyword(text: &str, w: &str) -> Result<(), Error> {
    let upper = w.to_ascii_uppercase();
    if ["OR", "NOT", "LIKE", "IN", "IS", "BETWEEN", "NULL"].contains(&upper.as_str()) {
        return Err(invalid(format!(
            "--where {text:?}: {w:?} is not supported (only AND-joined =, <, <=, >, >= terms)"
        )));
    }
    Ok(())
}

fn tokenize(text: &str) -> Result<Vec<Tok>, Error> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == ',' {
            out.push(Tok::And);
            i += 1;
        } else if c == '&' {
            if chars.get(i + 1) == Some(&'&') {
                out.push(Tok::And);
                i += 2;
            } else {
                return Err(invalid(format!("--where {text:?}: stray '&' (use AND)")));
            }
        } else if c == '|' {
            return Err(invalid(format!(
                "--where {text:?}: '|' (OR) is not supported; only AND-joined terms"
            )));
        } else if c == '!' {
            return Err(invalid(format!(
                "--where {text:?}: '!' (negation, !=) is not supported"
            )));
        } else if c == '=' {
            i += if chars.get(i + 1) == Some(&'=') { 2 } else { 1 };
            out.push(Tok::Op(Op::Eq));
        } else if c == '<' || c == '>' {
            if c == '<' && chars.get(i + 1) == Some(&'>') {
                return Err(invalid(format!("--where {text:?}: '<>' is not supported")));
            }
            let eq = chars.get(i + 1) == Some(&'=');
            out.push(Tok::Op(match (c, eq) {
                ('<', false) => Op::Lt,
                ('<', true) => Op::Le,
                ('>', false) => Op::Gt,
                _ => Op::Ge,
            }));
            i += if eq { 2 } else { 1 };
        } else if c == '\'' || c == '"' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => {
                        return Err(invalid(format!(
                            "--where {text:?}: unterminated {c}quote{c}"
                        )));
                    }
                    // A doubled quote inside quotes is one quote (SQL style).
                    Some(&q) if q == c && chars.get(i + 1) == Some(&c) => {
                        s.push(c);
                        i += 2;
                    }
                    Some(&q) if q == c => {
                        i += 1;
                        break;
                    }
                    Some(&q) => {
                        s.push(q);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Quoted(s));
        } else {
            let start = i;
            while i < chars.len()
                && !chars[i].is_whitespace()
                && !matches!(
                    chars[i],
                    '=' | '<' | '>' | '!' | ',' | '&' | '|' | '\'' | '"'
                )
            {
                i += 1;
            }
            let w: String = chars[start..i].iter().collect();
            if w.eq_ignore_ascii_case("AND") {
                out.push(Tok::And);
            } else {
                out.push(Tok::Word(w));
            }
        }
    }
    Ok(out)
}

/// Types a value written for `column`.
///
/// # Errors
/// `InvalidInput` when it does not fit the column's type.
pub fn typed_value(table: &Table, column: schema::Column, op: Op, v: &str) -> Result<Cell, Error> {
    let bad = |why: &str| {
        invalid(format!(
            "--where {}.{} {} {v:?}: {why}",
            table.name,
            column.name,
            op.as_str()
        ))
    };
    if op != Op::Eq && !column.kind.is_ordered() {
        return Err(bad(&format!(
            "a {} column takes only =",
            column.kind.name()
        )));
    }
    match column.kind {
        Kind::Int => v
            .parse::<i64>()
            .map(Cell::Int)
            .map_err(|_| bad("not an integer")),
        Kind::Text => Ok(Cell::Text(v.to_owned())),
        Kind::Bool => match v {
            "true" | "1" => Ok(Cell::Bool(true)),
            "false" | "0" => Ok(Cell::Bool(false)),
            _ => Err(bad("not a boolean (true or false)")),
        },
        Kind::Time => schema::parse_time(v)
            .map(Cell::Time)
            .map_err(|e| bad(&format!("not an RFC 3339 time ({e})"))),
        Kind::Json => Err(bad(
            "JSON columns cannot be filtered on (filter on their table's other columns)",
        )),
    }
}

impl Filter {
    /// Checks and binds the command line's selection.
    ///
    /// # Errors
    /// `InvalidInput` naming the offending table, column or term.
    pub fn build(args: &FilterArgs) -> Result<Filter, Error> {
        if let (Some(s), Some(u)) = (args.since, args.until)
            && s >= u
        {
            return Err(invalid("--since must be before --until"));
        }
        let mut names: Vec<&'static Table> = Vec::new();
        for part in args.tables.iter().flat_map(|t| t.split(',')) {
            let part = part.trim();
            let t = schema::table(part).ok_or_else(|| {
                invalid(format!(
                    "--tables: unknown table {part:?} (tables: {})",
                    TABLES.iter().map(|t| t.name).collect::<Vec<_>>().join(", ")
                ))
            })?;
            if !names.contains(&t) {
                names.push(t);
            }
        }
        if names.is_empty() {
            names = TABLES.iter().collect();
        }
        names.sort_by_key(|t| t.name);
        let mut columns: BTreeMap<&'static str, Vec<usize>> = BTreeMap::new();
        for spec in &args.columns {
            let (t, cols) = spec.split_once(':').ok_or_else(|| {
                invalid(format!("--columns {spec:?}: expected TABLE:COLUMN,COLUMN…"))
            })?;
            let table = schema::table(t.trim())
                .ok_or_else(|| invalid(format!("--columns {spec:?}: unknown table {t:?}")))?;
            if !names.contains(&table) {
                return Err(invalid(format!(
                    "--columns {spec:?}: table {t:?} is not exported (see --tables)"
                )));
            }
            let entry = columns.entry(table.name).or_default();
            for c in cols.split(',') {
                let c = c.trim();
                let (i, _) = table.column(c).ok_or_else(|| {
                    invalid(format!(
                        "--columns {spec:?}: {t} has no column {c:?} (columns: {})",
                        table
                            .columns
                            .iter()
                            .map(|c| c.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
                entry.push(i);
            }
        }
        let mut tables: Vec<TableSpec> = names
            .iter()
            .map(|t| TableSpec {
                projection: match columns.remove(t.name) {
                    Some(c) => Projection::new(t, c),
                    None => Projection::all(t),
                },
                preds: Vec::new(),
            })
            .collect();
        for text in &args.wheres {
            for term in parse_where(text)? {
                bind(&mut tables, &term, text)?;
            }
        }
        for ts in &mut tables {
            if let Some(tc) = ts.table().time_column {
                let (i, _) = ts
                    .table()
                    .column(tc)
                    .ok_or_else(|| invalid("schema: missing time column"))?;
                if let Some(s) = args.since {
                    ts.preds.push(Pred {
                        column: i,
                        op: Op::Ge,
                        value: Cell::Time(s),
                    });
                }
                if let Some(u) = args.until {
                    ts.preds.push(Pred {
                        column: i,
                        op: Op::Lt,
                        value: Cell::Time(u),
                    });
                }
            }
            ts.preds.sort();
            ts.preds.dedup();
        }
        Ok(Filter {
            since: args.since,
            until: args.until,
            tables,
            as_of: None,
        })
    }

    /// Whether a job table (jobs, attempts, results) is exported.
    pub fn has_job_tables(&self) -> bool {
        ["jobs", "attempts", "results"]
            .iter()
            .any(|t| self.table(t).is_some())
    }

    /// The table spec of `name`, if exported.
    pub fn table(&self, name: &str) -> Option<&TableSpec> {
        self.tables.iter().find(|t| t.table().name == name)
    }

    /// The canonical filter spec (DESIGN §9): a JSON document whose JCS bytes enter the
    /// Explorer-Root. `since`/`until` in the canonical time form; per table its columns in
    /// name order and its conjuncts sorted by (column, op, value).
    pub fn spec(&self) -> Json {
        let time = |t: Option<i64>| t.map_or(Json::Null, |ms| Json::from(schema::format_time(ms)));
        let mut tables = serde_json::Map::new();
        for ts in &self.tables {
            let t = ts.table();
            let mut cols: Vec<&str> = ts.projection.selected().map(|c| c.name).collect();
            cols.sort_unstable();
            let mut preds: Vec<(String, &str, String)> = ts
                .preds
                .iter()
                .map(|p| {
                    let c = t.columns[p.column];
                    let mut v = String::new();
                    schema::write_canonical(&mut v, c.kind, &p.value);
                    (c.name.to_owned(), p.op.as_str(), v)
                })
                .collect();
            preds.sort();
            let preds: Vec<Json> = preds
                .into_iter()
                .map(|(c, op, v)| {
                    json!({"column": c, "op": op,
                           "value": serde_json::from_str::<Json>(&v).unwrap_or(Json::Null)})
                })
                .collect();
            tables.insert(t.name.to_owned(), json!({"columns": cols, "where": preds}));
        }
        let mut spec =
            json!({"since": time(self.since), "until": time(self.until), "tables": tables});
        if let Some(t) = self.as_of {
            spec["as_of"] = Json::from(schema::format_time(t));
        }
        spec
    }

    /// Rebuilds a filter from its canonical spec (the manifest of an earlier export).
    ///
    /// # Errors
    /// `InvalidInput` when the spec is malformed.
    pub fn from_spec(spec: &Json) -> Result<Filter, Error> {
        let bad = |what: &str| invalid(format!("manifest filter spec: {what}"));
        let time = |k: &str| -> Result<Option<i64>, Error> {
            match spec.get(k) {
                None | Some(Json::Null) => Ok(None),
                Some(Json::String(s)) => schema::parse_time(s).map(Some).map_err(|e| bad(&e)),
                Some(_) => Err(bad(k)),
            }
        };
        let tables = spec
            .get("tables")
            .and_then(Json::as_object)
            .ok_or_else(|| bad("no tables"))?;
        let mut out = Vec::new();
        for (name, t) in tables {
            let table = schema::table(name).ok_or_else(|| bad(&format!("table {name:?}")))?;
            let mut cols = Vec::new();
            for c in t
                .get("columns")
                .and_then(Json::as_array)
                .ok_or_else(|| bad("columns"))?
            {
                let c = c.as_str().ok_or_else(|| bad("column name"))?;
                cols.push(
                    table
                        .column(c)
                        .ok_or_else(|| bad(&format!("column {name}.{c}")))?
                        .0,
                );
            }
            let mut preds = Vec::new();
            for p in t
                .get("where")
                .and_then(Json::as_array)
                .ok_or_else(|| bad("where"))?
            {
                let c = p
                    .get("column")
                    .and_then(Json::as_str)
                    .ok_or_else(|| bad("where column"))?;
                let (i, column) = table.column(c).ok_or_else(|| bad(&format!("column {c}")))?;
                let op = match p.get("op").and_then(Json::as_str) {
                    Some("=") => Op::Eq,
                    Some("<") => Op::Lt,
                    Some("<=") => Op::Le,
                    Some(">") => Op::Gt,
                    Some(">=") => Op::Ge,
                    _ => return Err(bad("op")),
                };
                let value = match (column.kind, p.get("value")) {
                    (Kind::Int, Some(v)) => Cell::Int(v.as_i64().ok_or_else(|| bad("value"))?),
                    (Kind::Bool, Some(v)) => Cell::Bool(v.as_bool().ok_or_else(|| bad("value"))?),
                    (Kind::Text, Some(Json::String(s))) => Cell::Text(s.clone()),
                    (Kind::Time, Some(Json::String(s))) => {
                        Cell::Time(schema::parse_time(s).map_err(|e| bad(&e))?)
                    }
                    _ => return Err(bad("value")),
                };
                preds.push(Pred {
                    column: i,
                    op,
                    value,
                });
            }
            preds.sort();
            out.push(TableSpec {
                projection: Projection::new(table, cols),
                preds,
            });
        }
        out.sort_by_key(|t| t.table().name);
        Ok(Filter {
            since: time("since")?,
            until: time("until")?,
            tables: out,
            as_of: time("as_of")?,
        })
    }
}

fn bind(tables: &mut [TableSpec], term: &Term, text: &str) -> Result<(), Error> {
    let mut bound = 0;
    if let Some(t) = &term.table {
        let table = schema::table(t)
            .ok_or_else(|| invalid(format!("--where {text:?}: unknown table {t:?}")))?;
        let ts = tables
            .iter_mut()
            .find(|ts| ts.table().name == table.name)
            .ok_or_else(|| {
                invalid(format!(
                    "--where {text:?}: table {t:?} is not exported (see --tables)"
                ))
            })?;
        let (i, c) = table.column(&term.column).ok_or_else(|| {
            invalid(format!(
                "--where {text:?}: {t} has no column {:?}",
                term.column
            ))
        })?;
        let value = typed_value(table, c, term.op, &term.value)?;
        ts.preds.push(Pred {
            column: i,
            op: term.op,
            value,
        });
        return Ok(());
    }
    for ts in tables.iter_mut() {
        let table = ts.table();
        if let Some((i, c)) = table.column(&term.column) {
            let value = typed_value(table, c, term.op, &term.value)?;
            ts.preds.push(Pred {
                column: i,
                op: term.op,
                value,
            });
            bound += 1;
        }
    }
    if bound == 0 {
        return Err(invalid(format!(
            "--where {text:?}: no exported table has a column {:?}",
            term.column
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn op_text(op: Op) -> &'static str {
        op.as_str()
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            Just(Op::Eq),
            Just(Op::Lt),
            Just(Op::Le),
            Just(Op::Gt),
            Just(Op::Ge)
        ]
    }

    proptest! {
        /// Any text: a result, never a panic.
        #[test]
        fn never_panics(text in "\\PC{0,60}") {
            let _ = parse_where(&text);
        }

        /// Generated conjunctions parse back term by term, whatever the joiner and quoting.
        #[test]
        fn conjunctions_round_trip(
            terms in proptest::collection::vec(("[a-z_]{1,10}", arb_op(), "[a-zA-Z0-9 .:'-]{0,12}"), 1..5),
            joiner in prop_oneof![Just(" AND "), Just(" and "), Just(","), Just(" && ")],
        ) {
            let text = terms
                .iter()
                .map(|(c, op, v)| format!("{c} {} '{}'", op_text(*op), v.replace('\'', "''")))
                .collect::<Vec<_>>()
                .join(joiner);
            let parsed = parse_where(&text);
            let keywords = ["or", "not", "like", "in", "is", "between", "null", "and"];
            if terms.iter().any(|(c, _, _)| keywords.contains(&c.as_str())) {
                return Ok(());
            }
            let parsed = parsed.map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(parsed.len(), terms.len());
            for (p, (c, op, v)) in parsed.iter().zip(&terms) {
                prop_assert_eq!(&p.column, c);
                prop_assert_eq!(p.op, *op);
                prop_assert_eq!(&p.value, v);
                prop_assert_eq!(p.table.as_deref(), None);
            }
        }

        /// Integer ranges bind to typed values and bounds are the tightest.
        #[test]
        fn bounds_are_tightest(a in -1000i64..1000, b in -1000i64..1000) {
            let args = FilterArgs {
                tables: vec!["messages".into()],
                wheres: vec![format!("seq >= {a} AND seq >= {b} AND seq < 5000")],
                ..FilterArgs::default()
            };
            let f = Filter::build(&args).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let ts = f.table("messages").ok_or_else(|| TestCaseError::fail("no table"))?;
            prop_assert_eq!(ts.int_bounds("seq"), (Some(a.max(b)), Some(4999)));
            // The spec survives a round trip.
            let again = Filter::from_spec(&f.spec()).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(again.spec(), f.spec());
        }
    }

    #[test]
    fn refusals_name_the_part() {
        for (text, part) in [
            ("a = 1 OR b = 2", "OR"),
            ("a | b", "|"),
            ("a != 1", "!"),
            ("a <> 1", "<>"),
            ("a = 'x", "unterminated"),
            ("a LIKE 'x'", "expected one of"),
            ("= 1", "expected a column"),
            ("a =", "expected a value"),
        ] {
            let e = parse_where(text)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains(part), "{text}: {e}");
        }
    }
}
