# shellcheck shell=bash
# `scripts/bench.sh graphql` (issue #18 point 6, ADR 0044 §7): the GraphQL face against the
# JSON-RPC reads of the same pages, in one run on one daemon, calls alternating A B B A in
# one process (gatos-bench's `graphql` workload), `--http-rate off`, on a repository of
# N_GQL_JOBS (10000) finished jobs and N_GQL_MESSAGES (100000) messages; N_GQL (200) calls
# of each. Sourced by scripts/bench.sh, whose helpers (newrepo, record, field, ratio, line)
# it uses.
bench_graphql() {
  local nj=${N_GQL_JOBS:-10000} nm=${N_GQL_MESSAGES:-100000} n=${N_GQL:-200}
  echo "== GraphQL face vs JSON-RPC: $nj finished jobs, $nm messages, $n calls of each"
  local r="$WORK/graphql.git" tf="$WORK/graphql-tokens" tok i
  newrepo "$r"; git -C "$r" config gatos.maintenance.auto false
  GIT_DIR="$r" "$GG" init --quiet > /dev/null
  "$GB" jobs-fill "$r" "$nj" > /dev/null
  for ((i = 0; i < nm; i++)); do payload "$i"; done > "$WORK/graphql.jsonl"
  GIT_DIR="$r" "$GG" messages publish t.big --batch "$WORK/graphql.jsonl" --chunk 1000 > /dev/null
  GIT_DIR="$r" "$GG" maintenance --quiet > /dev/null; quiesce "$r"
  settle; snapshot_timing "$r" graphql_repo
  tok=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
  ( umask 077; printf 'bench %s\n' "$tok" > "$tf" )
  rm -f "$r/gatos/gatosd/http-addr" "$WORK/g.sock"
  "$BIN/gatosd" --repo "$r" --socket "$WORK/g.sock" --http 127.0.0.1:0 --token-file "$tf" \
    --http-rate off 2> "$WORK/gatosd-graphql.log" &
  local pid=$!
  for _ in $(seq 1 400); do
    [ -s "$r/gatos/gatosd/http-addr" ] && [ -S "$WORK/g.sock" ] && break; sleep 0.05
  done
  settle
  local g; g=$("$GB" graphql "$(cat "$r/gatos/gatosd/http-addr")" "$tok" "$WORK/g.sock" "$tok" t.big "$n")
  kill -TERM "$pid"; wait "$pid" || true
  pick() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(d['$1']['$2']['p50_ms'])" "$g"; }
  local a b
  a=$(pick jobs100 rpc); b=$(pick jobs100 graphql_live)
  line "JSON-RPC jobs.list {limit: 100}" "p50 $(printf %.2f "$a") ms"
  line "GraphQL jobs(first: 100), live, nothing moved" "p50 $(printf %.2f "$b") ms ($(ratio "$b" "$a")x; target <= 2x)"
  a=$(pick jobs100_moved rpc); b=$(pick jobs100_moved graphql_live)
  line "GraphQL jobs(first: 100), live after a write (a mint)" "p50 $(printf %.2f "$b") ms ($(ratio "$b" "$a")x of JSON-RPC's $(printf %.2f "$a") ms after the same write)"
  a=$(pick jobs100_pinned rpc); b=$(pick jobs100_pinned graphql_pinned)
  line "GraphQL jobs(first: 100), pinned stateRef" "p50 $(printf %.2f "$b") ms ($(ratio "$b" "$a")x of JSON-RPC's $(printf %.2f "$a") ms)"
  a=$(pick messages1000 rpc); b=$(pick messages1000 graphql_two_pages)
  line "JSON-RPC messages.read {limit: 1000}" "p50 $(printf %.2f "$a") ms"
  line "GraphQL 2 pages of 500 messages, pinned" "p50 $(printf %.2f "$b") ms ($(ratio "$b" "$a")x; target <= 2x)"
  a=$(pick messages500 rpc); b=$(pick messages500 graphql)
  line "GraphQL 500 messages vs messages.read {limit: 500}" "p50 $(printf %.2f "$b") ms vs $(printf %.2f "$a") ms ($(ratio "$b" "$a")x)"
  a=$(pick state_only pinned); b=$(pick state_only live)
  line "GraphQL ledger { state } live after a write (a mint) vs pinned" "p50 $(printf %.2f "$b") ms vs $(printf %.2f "$a") ms"
  a=$(pick state_only_unmoved pinned); b=$(pick state_only_unmoved live)
  line "GraphQL ledger { state } live, nothing moved (reused) vs pinned" "p50 $(printf %.2f "$b") ms vs $(printf %.2f "$a") ms"
  record graphql "$g"
}

# `git gatos snapshot create` and `rm` on repository $1 (ADR 0044 §1: one packed-refs
# rewrite, so the cost follows the number of live refs): N_SNAP (5) of each, the median,
# with the live refs counted and the packed-refs bytes one snapshot adds.
snapshot_timing() {
  local r=$1 n=${N_SNAP:-5} i t0 t1 refs before after creates=() rms=()
  refs=$(git -C "$r" for-each-ref refs/gatos/ | wc -l)
  before=$(stat -c %s "$r/packed-refs" 2>/dev/null || echo 0)
  for ((i = 0; i < n; i++)); do
    t0=$(now); GIT_DIR="$r" "$GG" snapshot create "bench-$i" > /dev/null; t1=$(now)
    creates+=("$(elapsed "$t0" "$t1")")
  done
  after=$(stat -c %s "$r/packed-refs")
  for ((i = 0; i < n; i++)); do
    t0=$(now); GIT_DIR="$r" "$GG" snapshot rm "bench-$i" > /dev/null; t1=$(now)
    rms+=("$(elapsed "$t0" "$t1")")
  done
  local c m per
  c=$(python3 -c "import sys; v=sorted(float(x) for x in sys.argv[1:]); print(f'{v[len(v)//2]*1000:.1f}')" "${creates[@]}")
  m=$(python3 -c "import sys; v=sorted(float(x) for x in sys.argv[1:]); print(f'{v[len(v)//2]*1000:.1f}')" "${rms[@]}")
  per=$(python3 -c "print(f'{($after - $before) / $n / max($refs, 1):.0f}')")
  line "git gatos snapshot create, $refs live refs" "median $c ms (of $n; ~$per bytes of packed-refs per ref)"
  line "git gatos snapshot rm, $refs live refs" "median $m ms (of $n)"
  record "snapshot_$2" "{\"live_refs\": $refs, \"create_ms\": $c, \"rm_ms\": $m, \"bytes_per_ref\": $per, \"n\": $n}"
}

# `scripts/bench.sh snapshot`: snapshot_timing alone on N_GQL_JOBS (10000) finished jobs.
bench_snapshot() {
  local nj=${N_GQL_JOBS:-10000} r="$WORK/snapshot.git"
  echo "== git gatos snapshot: $nj finished jobs"
  newrepo "$r"; git -C "$r" config gatos.maintenance.auto false
  GIT_DIR="$r" "$GG" init --quiet > /dev/null
  "$GB" jobs-fill "$r" "$nj" > /dev/null
  GIT_DIR="$r" "$GG" maintenance --quiet > /dev/null; quiesce "$r"
  settle
  snapshot_timing "$r" "${nj}_jobs"
}
