# shellcheck shell=bash
# `scripts/bench.sh dashboard` (issue #19 point 4): the dashboard's jobs page on a history
# of N_DASH_SMALL (1,000) and of N_DASH_BIG (100,000) finished jobs, in one run. Both
# daemons run at once and the rounds alternate between them (small, big, small, …), so
# what the machine does meanwhile weighs on both alike. The page is what the browser
# fetches for /jobs after sign-in, over one keep-alive connection with the session cookie:
# the shell (GET /jobs), who is signed in (GET /dashboard/session) and the first page of
# the table (GET /api/v1/jobs?limit=50); also the filtered view (state=succeeded) and a page
# from the middle (cursor). Sourced by scripts/bench.sh, whose helpers it uses.

bench_dashboard() {
  echo "== the dashboard's jobs page: $((${N_DASH_SMALL:-1000})) vs $((${N_DASH_BIG:-100000})) finished jobs, alternating rounds"
  local small=${N_DASH_SMALL:-1000} big=${N_DASH_BIG:-100000} rounds=${N_DASH_ROUNDS:-60}
  local tf="$WORK/dash-tokens" n r f args=() sites=()
  ( umask 077; printf 'dash %s\n' "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" > "$tf" )
  local pids=()
  for n in "$small" "$big"; do
    r="$WORK/dash-$n.git"; newrepo "$r"; git -C "$r" config gatos.maintenance.auto false
    GIT_DIR="$r" "$GG" init --quiet > /dev/null
    f=$("$GB" jobs-fill "$r" "$n")
    line "  (filling $n finished jobs in-process)" "$(printf %.0f "$(field "$f" rate)") jobs/s"
    GIT_DIR="$r" "$GG" maintenance --quiet > /dev/null; quiesce "$r"
    local mid; mid=$(git --git-dir="$r" for-each-ref --format='%(refname)' refs/gatos/jobs/ \
      | sed -n 's|^refs/gatos/jobs/\([0-9A-Z]\{26\}\)/job$|\1|p' | sort | awk -v n="$n" 'NR == int(n / 2)')
    rm -f "$r/gatos/gatosd/http-addr" "$WORK/d$n.sock"
    "$BIN/gatosd" --repo "$r" --socket "$WORK/d$n.sock" --http 127.0.0.1:0 --token-file "$tf" \
      --http-rate off 2> "$WORK/gatosd-dash-$n.log" &
    pids+=($!)
    for _ in $(seq 1 400); do
      [ -s "$r/gatos/gatosd/http-addr" ] && [ -S "$WORK/d$n.sock" ] && break; sleep 0.05
    done
    sites+=("$n" "$r" "$mid")
  done
  settle
  # Sign-in codes live 60 s: minted once both daemons serve, just before the rounds.
  local i url
  for ((i = 0; i < ${#sites[@]}; i += 3)); do
    n=${sites[i]}; r=${sites[i + 1]}
    url=$(GIT_DIR="$r" "$GG" dashboard --json --quiet --socket "$WORK/d$n.sock" --token-file "$tf" \
      | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["url"])')
    args+=("$n" "$url" "${sites[i + 2]}")
  done
  local j; j=$(python3 - "$rounds" "${args[@]}" <<'PY'
import http.client, json, statistics, sys, time
from urllib.parse import urlsplit

rounds = int(sys.argv[1])
sites = [sys.argv[i:i + 3] for i in range(2, len(sys.argv), 3)]

class Site:
    def __init__(self, n, url, mid):
        u = urlsplit(url)
        self.n, self.host, self.mid = int(n), u.netloc, mid
        self.conn = http.client.HTTPConnection(self.host, timeout=60)
        self.conn.request("POST", "/dashboard/signin", json.dumps({"code": u.fragment.split("=", 1)[1]}),
                          {"Content-Type": "application/json", "Sec-Fetch-Site": "same-origin"})
        r = self.conn.getresponse(); r.read()
        assert r.status == 200, r.status
        self.cookie = r.getheader("Set-Cookie").split(";")[0]
        self.t = {"page": [], "filtered": [], "middle": []}

    def get(self, path):
        self.conn.request("GET", path, headers={"Cookie": self.cookie, "Sec-Fetch-Site": "same-origin"})
        r = self.conn.getresponse(); body = r.read()
        assert r.status == 200, (path, r.status, body[:200])
        return body

    def round(self, keep):
        t0 = time.perf_counter()
        self.get("/jobs"); self.get("/dashboard/session"); self.get("/api/v1/jobs?limit=50")
        t1 = time.perf_counter()
        self.get("/api/v1/jobs?state=succeeded&limit=50")
        t2 = time.perf_counter()
        self.get(f"/api/v1/jobs?state=succeeded&limit=50&cursor={self.mid}")
        t3 = time.perf_counter()
        if keep:
            self.t["page"].append((t1 - t0) * 1e3)
            self.t["filtered"].append((t2 - t1) * 1e3)
            self.t["middle"].append((t3 - t2) * 1e3)

s = [Site(*a) for a in sites]
for i in range(rounds + 5):
    for site in (s if i % 2 == 0 else reversed(s)):
        site.round(i >= 5)

def p(v, q):
    v = sorted(v); return v[min(len(v) - 1, int(q * len(v)))]
out = {"rounds": rounds}
for site in s:
    out[str(site.n)] = {k: {"p50_ms": statistics.median(v), "p99_ms": p(v, 0.99)} for k, v in site.t.items()}
print(json.dumps(out))
PY
)
  local pid; for pid in "${pids[@]}"; do kill -TERM "$pid"; wait "$pid" || true; done
  python3 - "$j" "$small" "$big" <<'PY'
import json, sys
d, small, big = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
for n in (small, big):
    for k, label in (("page", "jobs page (shell + session + first 50)"), ("filtered", "filtered: state=succeeded"), ("middle", "a page from the middle (cursor)")):
        v = d[n][k]
        print(f"{f'{label}, {n} finished':<58} p50 {v['p50_ms']:.1f} ms p99 {v['p99_ms']:.1f} ms")
r = {k: d[big][k]["p50_ms"] / d[small][k]["p50_ms"] for k in ("page", "filtered", "middle")}
print(f"{f'{big} vs {small} finished, p50':<58} page {r['page']:.2f}x, filtered {r['filtered']:.2f}x, middle {r['middle']:.2f}x (target <= 2x)")
PY
  record dashboard_jobs_page "$j"
}
