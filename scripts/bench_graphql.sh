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
  line "GraphQL jobs(first: 100), live (a ref state minted)" "p50 $(printf %.2f "$b") ms ($(ratio "$b" "$a")x; target <= 2x)"
  a=$(pick jobs100_pinned rpc); b=$(pick jobs100_pinned graphql_pinned)
  line "GraphQL jobs(first: 100), pinned stateRef" "p50 $(printf %.2f "$b") ms ($(ratio "$b" "$a")x of JSON-RPC's $(printf %.2f "$a") ms)"
  a=$(pick messages1000 rpc); b=$(pick messages1000 graphql_two_pages)
  line "JSON-RPC messages.read {limit: 1000}" "p50 $(printf %.2f "$a") ms"
  line "GraphQL 2 pages of 500 messages, pinned" "p50 $(printf %.2f "$b") ms ($(ratio "$b" "$a")x; target <= 2x)"
  a=$(pick messages500 rpc); b=$(pick messages500 graphql)
  line "GraphQL 500 messages vs messages.read {limit: 500}" "p50 $(printf %.2f "$b") ms vs $(printf %.2f "$a") ms ($(ratio "$b" "$a")x)"
  a=$(pick state_only pinned); b=$(pick state_only live)
  line "GraphQL ledger { state } live (a mint) vs pinned" "p50 $(printf %.2f "$b") ms vs $(printf %.2f "$a") ms"
  record graphql "$g"
}
