#!/usr/bin/env bash
# The GraphQL face: pin a ref state, write more, and the pinned answer is unchanged (the
# same bytes, and a 304 for If-None-Match) while the live answer moves; then pin one with
# `git gatos snapshot`, write more, restart gatosd, and the snapshot's answer is the same
# bytes. docs/graphql.md.
source "$(dirname "$0")/lib.sh"
command -v curl > /dev/null \
  || { echo "demos/graphql.sh needs curl (Debian: apt-get install curl)" >&2; exit 1; }
# JSON in and out with python3 (which the test suite needs anyway).
body() { python3 -c 'import json, sys; print(json.dumps({"query": sys.argv[1]}))' "$1"; }
pick() { python3 -c 'import json, sys; d = json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }

say "A repository with two jobs and three messages, and gatosd serving it over HTTP"
run git init -q "$demo_dir/repo"
cd "$demo_dir/repo"
run git gatos init > /dev/null
run git gatos jobs enqueue --queue build -- make > /dev/null
run git gatos jobs enqueue --queue build -- make test > /dev/null
for i in 1 2 3; do run git gatos messages publish orders --data "{\"order\":$i}" > /dev/null; done
token=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
printf 'demo %s\n' "$token" > "$demo_dir/tokens"
chmod 600 "$demo_dir/tokens"
daemon=
trap 'kill "$daemon" 2> /dev/null; wait "$daemon" 2> /dev/null; rm -rf "$demo_dir"' EXIT
start_gatosd() {
  rm -f .git/gatos/gatosd/http-addr
  gatosd --http 127.0.0.1:0 --token-file "$demo_dir/tokens" 2>> "$demo_dir/gatosd.log" &
  daemon=$!
  for _ in $(seq 1 100); do
    [ -s .git/gatos/gatosd/http-addr ] && break
    kill -0 "$daemon" 2> /dev/null || { cat "$demo_dir/gatosd.log" >&2; exit 1; }
    sleep 0.1
  done
  [ -s .git/gatos/gatosd/http-addr ] || { echo "gatosd did not start" >&2; cat "$demo_dir/gatosd.log" >&2; exit 1; }
  url="http://$(cat .git/gatos/gatosd/http-addr)/api/v1/graphql"
}
start_gatosd
auth="Authorization: Bearer $token"

say "The schema is served as SDL"
run curl -s -H "$auth" "$url/schema" > "$demo_dir/schema.graphql"
[ -n "${GATOS_DEMO_QUIET:-}" ] || grep -m 3 -E '^(type|scalar) ' "$demo_dir/schema.graphql"

say "A live query: the answer names the ref state it was computed on (stateRefResolved)"
query='query($s: StateRef) { ledger(stateRef: $s) { state { ref } jobs(first: 10) { edges { node { id queue } } } topic(name: "orders") { messages(first: 10) { edges { node { seq payload } } } } } }'
live=$(run curl -s -H "$auth" -H 'Content-Type: application/json' \
  --data "$(body "$query")" "$url")
[ -n "${GATOS_DEMO_QUIET:-}" ] || echo "$live" | python3 -m json.tool
state=$(echo "$live" | pick 'd["extensions"]["stateRefResolved"]')

say "The same query pinned to that state, with GET: immutable, ETag = shapeRoot"
get() { # get [HEADER...]: the pinned GET, headers to $demo_dir/h, body to stdout
  curl -s -G -D "$demo_dir/h" -H "$auth" "$@" --data-urlencode "query=$query" \
    --data-urlencode "variables={\"s\":\"$state\"}" "$url"
}
run get > "$demo_dir/pinned1"
[ -n "${GATOS_DEMO_QUIET:-}" ] || grep -iE '^(cache-control|etag|gatos-state):' "$demo_dir/h"
etag=$(tr -d '\r' < "$demo_dir/h" | awk 'tolower($1) == "etag:" { print $2 }')

say "More writes: a third job, two more messages"
run git gatos jobs enqueue --queue build -- make dist > /dev/null
run git gatos messages publish orders --data '{"order":4}' > /dev/null
run git gatos messages publish orders --data '{"order":5}' > /dev/null

say "The pinned answer is byte for byte the same, and If-None-Match gets a 304"
run get > "$demo_dir/pinned2"
cmp "$demo_dir/pinned1" "$demo_dir/pinned2" \
  || { echo "demo failed: the pinned answer changed" >&2; exit 1; }
[ -n "${GATOS_DEMO_QUIET:-}" ] || echo "identical: $(wc -c < "$demo_dir/pinned2") bytes"
run get -H "If-None-Match: $etag" > /dev/null
status=$(head -n 1 "$demo_dir/h" | tr -d '\r')
[ -n "${GATOS_DEMO_QUIET:-}" ] || echo "$status"
[[ "$status" == *" 304"* ]] || { echo "demo failed: no 304: $status" >&2; exit 1; }

say "The live answer moved: three jobs, five messages, another state"
live2=$(run curl -s -H "$auth" -H 'Content-Type: application/json' \
  --data "$(body "$query")" "$url")
[ -n "${GATOS_DEMO_QUIET:-}" ] || echo "$live2" | pick '{"state": d["extensions"]["stateRefResolved"], "jobs": len(d["data"]["ledger"]["jobs"]["edges"]), "messages": len(d["data"]["ledger"]["topic"]["messages"]["edges"])}'
[ "$(echo "$live2" | pick 'len(d["data"]["ledger"]["topic"]["messages"]["edges"])')" = 5 ] \
  || { echo "demo failed: the live answer did not move" >&2; exit 1; }

say "Errors carry the taxonomy's code: an over-large page"
run curl -s -H "$auth" -H 'Content-Type: application/json' \
  --data '{"query":"{ ledger { jobs(first: 501) { edges { cursor } } } }"}' "$url" \
  | pick '{k: d["errors"][0]["extensions"][k] for k in ("code", "status", "data")}'

say "A durable pin: git gatos snapshot copies the refs into refs/gatos-snapshots/"
snap=$(run git gatos snapshot create before-release --json)
[ -n "${GATOS_DEMO_QUIET:-}" ] || echo "$snap"
state=$(echo "$snap" | pick 'd["state"]')
run get > "$demo_dir/snap1"

say "More writes, then gatosd restarts (its in-memory states are gone)"
run git gatos messages publish orders --data '{"order":6}' > /dev/null
run git gatos jobs enqueue --queue build -- make release > /dev/null
kill "$daemon"; wait "$daemon" 2> /dev/null || true
start_gatosd

say "The snapshot's state answers the same bytes; refPath names it too"
run get > "$demo_dir/snap2"
cmp "$demo_dir/snap1" "$demo_dir/snap2" \
  || { echo "demo failed: the snapshot's answer changed" >&2; exit 1; }
[ -n "${GATOS_DEMO_QUIET:-}" ] || echo "identical after a restart: $(wc -c < "$demo_dir/snap2") bytes"
byname=$(run curl -s -H "$auth" -H 'Content-Type: application/json' \
  --data "$(body '{ ledger(refPath: "snapshots/before-release") { state { ref } snapshots { name refs } } }')" "$url")
[ "$(echo "$byname" | pick 'd["data"]["ledger"]["state"]["ref"]')" = "$state" ] \
  || { echo "demo failed: refPath snapshots/before-release: $byname" >&2; exit 1; }
[ -n "${GATOS_DEMO_QUIET:-}" ] || echo "$byname" | pick 'd["data"]'
run git gatos snapshot ls
run git gatos snapshot rm before-release > /dev/null
