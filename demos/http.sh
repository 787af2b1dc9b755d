#!/usr/bin/env bash
# The HTTP face with curl: gatosd --http with a named token, publish and read, a stream
# resumed with Last-Event-ID, a job enqueued and shown, and errors as problem+json.
source "$(dirname "$0")/lib.sh"
command -v curl > /dev/null \
  || { echo "demos/http.sh needs curl (Debian: apt-get install curl)" >&2; exit 1; }

say "A repository, and gatosd serving it over HTTP on a free loopback port"
run git init -q "$demo_dir/repo"
cd "$demo_dir/repo"
run git gatos init > /dev/null
# A named token: calls made with it act as http:ci (docs/http.md, "Tokens").
token=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
printf 'ci %s\n' "$token" > "$demo_dir/tokens"
chmod 600 "$demo_dir/tokens"
gatosd --http 127.0.0.1:0 --token-file "$demo_dir/tokens" 2> "$demo_dir/gatosd.log" &
daemon=$!
trap 'kill "$daemon" 2> /dev/null; wait "$daemon" 2> /dev/null; rm -rf "$demo_dir"' EXIT
# gatosd writes the address it bound; wait for it (at most 10 s).
for _ in $(seq 1 100); do
  [ -s .git/gatos/gatosd/http-addr ] && break
  kill -0 "$daemon" 2> /dev/null || { cat "$demo_dir/gatosd.log" >&2; exit 1; }
  sleep 0.1
done
[ -s .git/gatos/gatosd/http-addr ] || { echo "gatosd did not start" >&2; cat "$demo_dir/gatosd.log" >&2; exit 1; }
addr=$(cat .git/gatos/gatosd/http-addr)
api="http://$addr/api/v1"
auth="Authorization: Bearer $token"
json="Content-Type: application/json"
# A stream never ends by itself: read it for a while into FILE (curl's exit 28), longer
# until it holds WANT (a loaded machine may be slow to answer).
stream() { # stream FILE WANT CURL_ARGS...
  local file=$1 want=$2 rc t
  shift 2
  if [ -z "${GATOS_DEMO_QUIET:-}" ]; then
    { printf '$ curl -s -N'; for a in "$@"; do quote "$a"; done; printf '\n'; } >&2
  fi
  for t in 1 2 4 8; do
    rc=0
    curl -s -N --max-time "$t" "$@" > "$file" || rc=$?
    [ "$rc" = 0 ] || [ "$rc" = 28 ] || { echo "demo failed: curl exit $rc" >&2; exit 1; }
    grep -q "$want" "$file" && return 0
  done
  echo "demo failed: the stream did not show $want: $(cat "$file")" >&2
  exit 1
}
run curl -s "http://$addr/healthz"
echo

say "Publish two messages, read them back (the answer's Link header names the next page)"
run curl -s -X POST -H "$auth" -H "$json" --data '{"payload":{"order":1}}' "$api/topics/orders/messages"
echo
run curl -s -X POST -H "$auth" -H "$json" --data '{"payload":{"order":2}}' "$api/topics/orders/messages"
echo
run curl -s -D - -o /dev/null -H "$auth" "$api/topics/orders/messages?since_seq=0&limit=1" | grep -i '^link:'
run curl -s -H "$auth" "$api/topics/orders/messages?since_seq=1"
echo

say "A stream of the topic from its start: server-sent events, the message ULID as the id"
stream "$demo_dir/stream" '"order":2' -H "$auth" "$api/topics/orders/stream?since_seq=0"
[ -n "${GATOS_DEMO_QUIET:-}" ] || grep -E '^(id|event):' "$demo_dir/stream"
first=$(grep -m1 '^id:' "$demo_dir/stream" | cut -d' ' -f2)
say "A reconnect with Last-Event-ID resumes exactly after that message"
stream "$demo_dir/resumed" '"order":2' -H "$auth" -H "Last-Event-ID: $first" "$api/topics/orders/stream"
[ -n "${GATOS_DEMO_QUIET:-}" ] || grep -E '^(id|data):' "$demo_dir/resumed"
grep -q '"order":2' "$demo_dir/resumed" && ! grep -q '"order":1' "$demo_dir/resumed" \
  || { echo "demo failed: the resumed stream is not the second message alone" >&2; exit 1; }

say "Enqueue a job (201 and its Location), read it back: the enqueuer is http:ci"
run curl -s -D "$demo_dir/headers" -X POST -H "$auth" -H "$json" \
  --data '{"command":["echo","hello"],"queue":"build"}' "$api/jobs" > "$demo_dir/job"
[ -n "${GATOS_DEMO_QUIET:-}" ] || { cat "$demo_dir/job"; echo; }
location=$(tr -d '\r' < "$demo_dir/headers" | awk 'tolower($1) == "location:" { print $2 }')
run curl -s -H "$auth" "http://$addr$location" > "$demo_dir/row"
grep -q '"actor":"http:ci"' "$demo_dir/row" \
  || { echo "demo failed: the job's enqueuer is not http:ci: $(cat "$demo_dir/row")" >&2; exit 1; }
[ -n "${GATOS_DEMO_QUIET:-}" ] || { head -c 300 "$demo_dir/row"; echo " …"; }

say "Errors are problem+json with the taxonomy's code: no token, an unknown job"
run curl -s -i "$api/topics" | grep -iE '^(HTTP|content-type)|"code"'
run curl -s -H "$auth" "$api/jobs/01JZZZZZZZZZZZZZZZZZZZZZZZ"
echo
say "done"
