#!/usr/bin/env bash
# Export: the ledger as SQLite and Parquet, queried with SQL; the Explorer-Root of both
# formats; verify against the repository; --incremental; and verify catching a changed cell.
source "$(dirname "$0")/lib.sh"

# SQL on an export: the sqlite3 shell, or Python's sqlite3 module where the shell is missing.
sql() {
  if command -v sqlite3 > /dev/null; then run sqlite3 -header -column "$@"
  else run python3 -c 'import sqlite3, sys
c = sqlite3.connect(sys.argv[1]); cur = c.execute(sys.argv[2]); c.commit()
if cur.description: print("|".join(d[0] for d in cur.description))
for r in cur: print("|".join("" if v is None else str(v) for v in r))' "$@"
  fi
}
# The explorer_root of a `--json` line.
root_of() { sed -E 's/.*"explorer_root":"([^"]+)".*/\1/'; }
run git init -q "$demo_dir/repo"
cd "$demo_dir/repo"
run git gatos init > /dev/null

say "Messages on two topics, a consumer group, and jobs a worker runs"
run git gatos messages publish deploys --data '{"service": "api", "version": "1.4.2"}' > /dev/null
run git gatos messages publish deploys --data '{"service": "web", "version": "2.0.0"}' > /dev/null
run git gatos messages publish alerts --data '{"level": "warn", "text": "disk 81% full"}' > /dev/null
run git gatos messages consume dashboard deploys --quiet > /dev/null
run git gatos jobs enqueue --queue build -- sh -c 'echo built' > /dev/null
run git gatos jobs enqueue --queue build --max-attempts 2 -- sh -c 'echo flaky >&2; exit 1' > /dev/null
run git gatos jobs enqueue --queue nightly -- true > /dev/null   # no worker serves it
run git gatos worker --drain --queue build

say "Export everything to one SQLite file"
run git gatos export --format sqlite --out ../ledger.sqlite

say "...and ask it questions in SQL"
sql ../ledger.sqlite "SELECT state, count(*) AS jobs FROM jobs GROUP BY state ORDER BY state"
sql ../ledger.sqlite "SELECT topic, count(*) AS messages, max(published_at) AS last FROM messages GROUP BY topic ORDER BY topic"
sql ../ledger.sqlite "SELECT a.job, a.attempt, a.outcome, r.exit_code, r.proof_verified
  FROM attempts a LEFT JOIN results r ON r.job = a.job AND r.attempt = a.attempt ORDER BY a.job, a.attempt"
sql ../ledger.sqlite "SELECT seq, json_extract(payload, '$.service') AS service FROM messages WHERE topic = 'deploys'"

say "The same export as Parquet: every table has the same rows and digest"
run git gatos export --format parquet --out ../ledger.parquet
run ls ../ledger.parquet
sqlite_tables=$(git gatos export verify ../ledger.sqlite | grep -v '^ok:')
parquet_tables=$(git gatos export verify ../ledger.parquet | grep -v '^ok:')
if [ "$sqlite_tables" != "$parquet_tables" ]; then
  printf 'demo failed: the table digests differ\n%s\n%s\n' "$sqlite_tables" "$parquet_tables" >&2
  exit 1
fi
[ -n "${GATOS_DEMO_QUIET:-}" ] || printf '%s\n' "$parquet_tables"
say "Their roots differ only because job states are derived at the moment of export (as_of)"
sql ../ledger.sqlite "SELECT json_extract(json, '$.filter.as_of') AS as_of FROM _gatos_manifest"
run grep '"as_of"' ../ledger.parquet/manifest.json

say "Without job tables there is no as_of: both formats give the same Explorer-Root"
a=$(run git gatos export --json --format sqlite --out ../events.sqlite --tables messages,checkpoints | root_of)
b=$(run git gatos export --json --format parquet --out ../events.parquet --tables messages,checkpoints | root_of)
[ -n "${GATOS_DEMO_QUIET:-}" ] || printf 'sqlite  %s\nparquet %s\n' "$a" "$b"
if [ "$a" != "$b" ] || [ -z "$a" ]; then echo "demo failed: the roots differ" >&2; exit 1; fi

say "Verify: the digests and the root, then the rows against the repository"
run git gatos export verify ../ledger.sqlite --repo .
run git gatos export verify ../ledger.parquet --repo .
if python3 -c 'import blake3' 2> /dev/null; then
  say "...and without gatos: Python recomputes the root from the SQLite file"
  out=$(run python3 "$root/scripts/explorer_root.py" ../ledger.sqlite)
  [ -n "${GATOS_DEMO_QUIET:-}" ] || printf '%s\n' "$out"
  mine=$(printf '%s\n' "$out" | tail -n 1 | awk '{print $2}')
  theirs=$(git gatos export verify ../ledger.sqlite --json | root_of)
  if [ "$mine" != "$theirs" ]; then echo "demo failed: Python says $mine, gatos $theirs" >&2; exit 1; fi
else
  say "(pip install blake3 to recompute the root without gatos: scripts/explorer_root.py)"
fi

say "More work, then --incremental extends the SQLite export with what is new"
run git gatos messages publish alerts --data '{"level": "info", "text": "disk cleaned"}' > /dev/null
run git gatos jobs enqueue --queue build -- sh -c 'echo built again' > /dev/null
run git gatos worker --drain --queue build > /dev/null
run git gatos export --format sqlite --out ../ledger.sqlite --incremental
run git gatos export verify ../ledger.sqlite --repo .

say "Change one cell: verify fails and names the table"
run cp ../ledger.sqlite ../changed.sqlite
sql ../changed.sqlite "UPDATE jobs SET state = 'succeeded' WHERE state = 'pending'"
expect_failure "verify finds the changed cell" \
  'error[DigestMismatch]: table jobs: digest' git gatos export verify ../changed.sqlite

say "Drop a row: the count no longer matches"
n=$(git gatos export verify ../ledger.sqlite --json | sed -E 's/.*"messages":\{"rows":([0-9]+).*/\1/')
run cp ../ledger.sqlite ../short.sqlite
sql ../short.sqlite "DELETE FROM messages WHERE topic = 'alerts' AND seq = 1"
expect_failure "verify finds the missing row" \
  "error[DigestMismatch]: table messages: $((n - 1)) rows, the manifest says $n" \
  git gatos export verify ../short.sqlite
say "done"
