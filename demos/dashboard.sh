#!/usr/bin/env bash
# The dashboard's sign-in without a browser (docs/dashboard.md): gatosd --http, a single-use
# code from `git gatos dashboard` over the Unix socket, the page's sign-in answered with a
# strict cookie, an API call with that cookie, and the refusals: another origin, a reused
# code, a cookie with a token, a revoked session.
source "$(dirname "$0")/lib.sh"
command -v curl > /dev/null \
  || { echo "demos/dashboard.sh needs curl (Debian: apt-get install curl)" >&2; exit 1; }

say "A repository with a job, and gatosd serving HTTP on a free loopback port"
run git init -q "$demo_dir/repo"
cd "$demo_dir/repo"
run git gatos init > /dev/null
job=$(git gatos jobs enqueue --no-checkout --json -- echo hello | sed -n 's/.*"id":"\([0-9A-Z]*\)".*/\1/p')
token=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
printf 'ops %s\n' "$token" > "$demo_dir/tokens"
chmod 600 "$demo_dir/tokens"
sock="$demo_dir/gatosd.sock"
gatosd --socket "$sock" --http 127.0.0.1:0 --token-file "$demo_dir/tokens" 2> "$demo_dir/gatosd.log" &
daemon=$!
trap 'kill "$daemon" 2> /dev/null; wait "$daemon" 2> /dev/null; rm -rf "$demo_dir"' EXIT
for _ in $(seq 1 100); do
  [ -s .git/gatos/gatosd/http-addr ] && [ -S "$sock" ] && break
  kill -0 "$daemon" 2> /dev/null || { cat "$demo_dir/gatosd.log" >&2; exit 1; }
  sleep 0.1
done
[ -s .git/gatos/gatosd/http-addr ] || { echo "gatosd did not start" >&2; cat "$demo_dir/gatosd.log" >&2; exit 1; }
origin="http://$(cat .git/gatos/gatosd/http-addr)"
fail() { echo "demo failed: $*" >&2; exit 1; }

say "git gatos dashboard asks the daemon (Unix socket, node token) for a code valid 60 s, once"
url=$(run git gatos dashboard --socket "$sock" --token-file "$demo_dir/tokens")
[ -n "${GATOS_DEMO_QUIET:-}" ] || echo "$url"
case $url in "$origin/#code="*) ;; *) fail "unexpected URL $url" ;; esac
code=${url#*#code=}
# The code is in the fragment: a browser never sends it; the page POSTs it.

say "A sign-in from another origin (another port of 127.0.0.1: same site, not same origin) is refused"
run curl -s -o "$demo_dir/refused" -w '%{http_code}\n' -X POST -H 'Content-Type: application/json' \
  -H 'Sec-Fetch-Site: same-site' -H 'Origin: http://127.0.0.1:8000' --data "{\"code\":\"$code\"}" \
  "$origin/dashboard/signin" > "$demo_dir/status"
[ "$(cat "$demo_dir/status")" = 403 ] || fail "cross-origin sign-in answered $(cat "$demo_dir/status")"
[ -n "${GATOS_DEMO_QUIET:-}" ] || { cat "$demo_dir/status"; cat "$demo_dir/refused"; echo; }

say "The page's sign-in (same origin): an HttpOnly, SameSite=Strict cookie with an expiry"
run curl -s -D "$demo_dir/headers" -o "$demo_dir/session" -X POST -H 'Content-Type: application/json' \
  -H 'Sec-Fetch-Site: same-origin' --data "{\"code\":\"$code\"}" "$origin/dashboard/signin"
set_cookie=$(tr -d '\r' < "$demo_dir/headers" | awk 'tolower($1) == "set-cookie:" { $1 = ""; print substr($0, 2) }')
[ -n "${GATOS_DEMO_QUIET:-}" ] || { echo "Set-Cookie: ${set_cookie%%=*}=…;${set_cookie#*;}"; cat "$demo_dir/session"; echo; }
case $set_cookie in *HttpOnly*SameSite=Strict*Path=/*Max-Age=*) ;; *) fail "cookie $set_cookie" ;; esac
cookie=${set_cookie%%;*}
sid=$(sed -n 's/.*"id":"\([0-9a-f]*\)".*/\1/p' "$demo_dir/session")

say "The same code again: refused (single use)"
run curl -s -o /dev/null -w '%{http_code}\n' -X POST -H 'Content-Type: application/json' \
  -H 'Sec-Fetch-Site: same-origin' --data "{\"code\":\"$code\"}" "$origin/dashboard/signin" > "$demo_dir/status"
[ "$(cat "$demo_dir/status")" = 401 ] || fail "a reused code answered $(cat "$demo_dir/status")"

say "An API call with the cookie from the page's origin acts as web:<session>"
run curl -s -X POST -H "Cookie: $cookie" -H 'Sec-Fetch-Site: same-origin' -H 'Content-Type: application/json' \
  --data '{"reason":"from the dashboard demo"}' "$origin/api/v1/jobs/$job/cancel" > "$demo_dir/cancel"
grep -q '"state":"cancelled"' "$demo_dir/cancel" || fail "cancel: $(cat "$demo_dir/cancel")"
run git gatos audit --action jobs.cancel > "$demo_dir/audit"
[ -n "${GATOS_DEMO_QUIET:-}" ] || cat "$demo_dir/audit"
grep -q "web:$sid" "$demo_dir/audit" || fail "the audit record does not name web:$sid"

say "The same cookie from another origin, or with a token too: refused, nothing changes"
for h in 'Sec-Fetch-Site: cross-site' 'Origin: http://127.0.0.1:8000' "Authorization: Bearer $token"; do
  status=$(curl -s -o "$demo_dir/refused" -w '%{http_code}' -H "Cookie: $cookie" -H "$h" \
    "$origin/api/v1/jobs/$job")
  [ "$status" = 403 ] || fail "$h answered $status"
done
[ -n "${GATOS_DEMO_QUIET:-}" ] || { cat "$demo_dir/refused"; echo; }

say "Every answer forbids framing and inline script"
run curl -s -D - -o /dev/null "$origin/" | grep -iE '^(content-security-policy|x-frame-options):'

say "Revoke the session over the Unix socket: the cookie stops working at once"
run git gatos dashboard revoke "$sid" --socket "$sock" --token-file "$demo_dir/tokens"
status=$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $cookie" -H 'Sec-Fetch-Site: same-origin' \
  "$origin/dashboard/session")
[ "$status" = 401 ] || fail "a revoked session answered $status"
grep -q "$code" "$demo_dir/gatosd.log" && fail "the code is in the daemon's log"
say "Done: open the URL of git gatos dashboard --open in a browser for the pages themselves"
