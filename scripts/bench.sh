#!/usr/bin/env bash
# Benchmarks of gatos against baselines measured on the same machine, in the same run.
#
#   scripts/bench.sh [messages|daemon|jobs|isolation|service|sync|export|gatosd-flood|http|mcp|graphql|snapshot|dashboard|peers|all]  (default: all;
#   peers, which installs and starts NATS, Redis and PostgreSQL, runs only when named)
#
# Prints a table of figures and ratios, and writes target/bench/results.json. Sizes can be
# lowered for a quick look: N_SHELL (1000), N_INPROC (10000), N_DURABLE (2000),
# N_BIG (100000), N_HUGE (1000000), N_AUTO (100000), N_JOBS (2000), N_RUN (500),
# N_FINISHED (10000), INODE_SETTLE (310), N_SYNC (10000), N_ARCHIVED (100000),
# SYNC_ROUNDS (30), N_EXPORT (100000), N_EXPORT_JOBS (10000), N_EXPORT_NEW (1000), N_HTTP_PUB (300), N_HTTP_ENQ (120), N_SSE (200),
# GATOS_BENCH_DIR (/tmp), N_IDLE (1000), N_PAGE_SMALL (1000), N_PAGE_BIG (100000), N_MCP (2000), N_DASH_SMALL (1000), N_DASH_BIG (100000), N_DASH_ROUNDS (60), N_GQL_JOBS (10000), N_GQL_MESSAGES (100000), N_GQL (200). Method and recorded figures:
# docs/PERFORMANCE.md. Nothing here asserts: it measures.
# GATOS_BIN_DIR: measure the binaries in that directory instead of this tree's (the clients
# that drive gatosd stay this tree's); GATOS_BENCH_OUT: where results.json goes;
# GATOS_BENCH_KEEP=1: the work directory is left in place. These are for
# scripts/bench_compare.sh, which runs two builds interleaved.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
what=${1:-all}
N_SHELL=${N_SHELL:-1000}
N_INPROC=${N_INPROC:-10000}
N_DURABLE=${N_DURABLE:-2000}
N_BIG=${N_BIG:-100000}
N_HUGE=${N_HUGE:-1000000}
N_AUTO=${N_AUTO:-100000}
N_JOBS=${N_JOBS:-2000}
N_RUN=${N_RUN:-500}
N_FINISHED=${N_FINISHED:-10000}
N_SYNC=${N_SYNC:-10000}
N_ARCHIVED=${N_ARCHIVED:-100000}

cd "$here"
REAL_HOME=$HOME
cargo build --release --quiet -p git-gatos -p gatos-bench -p gatosd 2>/dev/null \
  || cargo build --release --quiet -p git-gatos -p gatos-bench
BIN="$here/target/release"
# The client that drives gatosd over a socket, HTTP or MCP is always this tree's, so that
# two builds compared by scripts/bench_compare.sh differ only in what is measured.
GBC="$BIN/gatos-bench"
# GATOS_BIN_DIR: measure the git-gatos, gatosd and gatos-bench found there instead of this
# tree's (scripts/bench_compare.sh sets it to an older build).
if [ -n "${GATOS_BIN_DIR:-}" ]; then BIN=$GATOS_BIN_DIR; fi
GG="$BIN/git-gatos"
GB="$BIN/gatos-bench"
OUT="${GATOS_BENCH_OUT:-$here/target/bench}"
mkdir -p "$OUT"
# GATOS_BENCH_DIR: where the repositories (and the peers' data) live; /tmp by default. A
# tmpfs there (/dev/shm) measures each system without the disk: the ceiling beside the
# disk's figures (docs/PERFORMANCE.md). Then the peers table is not written into the docs.
BENCH_DIR=${GATOS_BENCH_DIR:-/tmp}
WORK=$(mktemp -d "$BENCH_DIR/gatos-bench.XXXXXX")
# GATOS_BENCH_KEEP=1 leaves the work directory for the caller to remove (bench_compare.sh
# removes them all at its end, so that no run starts right after another's deletions).
if [ -z "${GATOS_BENCH_KEEP:-}" ]; then trap 'rm -rf "$WORK"' EXIT; fi
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null HOME="$WORK/home" LC_ALL=C
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@localhost GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@localhost
mkdir -p "$HOME"
results="$OUT/results.json"
echo "{}" > "$results"

now() { echo "$EPOCHREALTIME"; }
elapsed() { python3 -c "print(f'{$2 - $1:.4f}')"; }
record() { # record KEY JSON
  python3 - "$results" "$1" "$2" <<'PY'
import json, sys
path, key, value = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
data = json.load(open(path))
data[key] = value
json.dump(data, open(path, "w"), indent=2, sort_keys=True)
PY
}
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
line() { printf '%-58s %s\n' "$1" "$2"; }
# Waits until no background maintenance (started by a writer) works on repository $1.
quiesce() { [ -d "$1/gatos/locks" ] || return 0; while ! flock -n "$1/gatos/locks/maintenance" true 2>/dev/null; do sleep 0.2; done; }
# A directory the run is done with is moved aside, and everything is removed at exit. On
# ext4 without a journal (this VM's disk) a file created within a minute (five while the
# inode table is dirty) of many deletions scans every inode freed meanwhile: an rm -rf of
# the last round's repository made the next round's writes 1.5-3x slower (docs/PERFORMANCE.md).
# The same holds for what ran before: start a run five minutes or more after large deletions
# (a test run, the exit of another bench run), or its first rounds pay for them.
discard() { local d; for d; do [ -e "$d" ] && mv "$d" "$(mktemp -d "$WORK/.discarded.XXXXXX")/"; done; return 0; }
newrepo() { quiesce "$1"; discard "$1"; git init -q --bare "$1"; }
# Write throughput on this machine depends on what the disk is still flushing (BASELINE):
# settle before each write workload, and take the median of three runs.
settle() { sync; sleep "${SETTLE:-3}"; }
median3() { python3 -c "import sys; v=sorted(float(x) for x in sys.argv[1:]); print(v[len(v)//2])" "$@"; }
median_json() { # median_json KEY JSON JSON JSON -> the JSON whose KEY is the median
  python3 - "$@" <<'PY'
import json, sys
key, docs = sys.argv[1], [json.loads(a) for a in sys.argv[2:]]
docs.sort(key=lambda d: d[key])
print(json.dumps(docs[len(docs) // 2]))
PY
}

payload() { # the payload every workload publishes (about the size of a small event)
  echo "{\"n\":$1,\"kind\":\"bench\",\"body\":\"the quick brown fox jumps over the lazy dog\",\"tags\":[\"a\",\"b\",\"c\"]}"
}
# The same, into a variable without forking (the shell producers below use this).
payload_var() { printf -v "$1" '{"n":%d,"kind":"bench","body":"the quick brown fox jumps over the lazy dog","tags":["a","b","c"]}' "$2"; }

machine() {
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r), $(git --version), work directory on $(stat -f -c %T "$BENCH_DIR")"
}

bench_messages() {
  echo "== message plane"
  # (a) the plain-git shell producer: 5 git processes per message.
  shell_once() {
    local r="$WORK/shell.git"; newrepo "$r"
    local old="" i blob sub root commit t0 t1 data
    t0=$(now)
    for ((i = 0; i < N_SHELL; i++)); do
      payload_var data "$i"
      blob=$(git -C "$r" hash-object -w --stdin <<< "$data")
      sub=$(printf '100644 blob %s\tenvelope.json\n' "$blob" | git -C "$r" mktree)
      root=$(printf '040000 tree %s\tmessage\n' "$sub" | git -C "$r" mktree)
      if [ -n "$old" ]; then
        commit=$(printf 'message t %s\n\nSeq: %s\n' "$i" "$i" | git -C "$r" commit-tree "$root" -p "$old")
      else
        commit=$(printf 'message t %s\n\nSeq: %s\n' "$i" "$i" | git -C "$r" commit-tree "$root")
      fi
      git -C "$r" update-ref refs/gatos/messages/t/head "$commit" "${old:-0000000000000000000000000000000000000000}"
      old=$commit
    done
    t1=$(now)
    elapsed "$t0" "$t1"
  }
  local runs=() k
  for k in 1 2 3; do settle; runs+=("$(shell_once)"); done
  local shell_s; shell_s=$(median3 "${runs[@]}")
  local shell_rate; shell_rate=$(python3 -c "print(f'{$N_SHELL / $shell_s:.1f}')")
  line "(a) shell producer, $N_SHELL messages (median of 3)" "$shell_rate msg/s"
  record shell "{\"count\": $N_SHELL, \"seconds\": $shell_s, \"rate\": $shell_rate, \"runs\": [$(IFS=,; echo "${runs[*]}")]}"

  # One git-gatos process per message.
  cli_once() {
    local r="$WORK/cli.git"; newrepo "$r"
    local i t0 t1 data
    t0=$(now)
    for ((i = 0; i < N_SHELL; i++)); do
      payload_var data "$i"
      GIT_DIR="$r" "$GG" messages publish t --data "$data" > /dev/null
    done
    t1=$(now)
    elapsed "$t0" "$t1"
  }
  runs=()
  for k in 1 2 3; do settle; runs+=("$(cli_once)"); done
  local cli_s; cli_s=$(median3 "${runs[@]}")
  local cli_rate; cli_rate=$(python3 -c "print(f'{$N_SHELL / $cli_s:.1f}')")
  line "git gatos messages publish, one process per message" "$cli_rate msg/s  ($(ratio "$cli_rate" "$shell_rate")x shell; target >= 3x)"
  record cli_publish "{\"count\": $N_SHELL, \"seconds\": $cli_s, \"rate\": $cli_rate, \"runs\": [$(IFS=,; echo "${runs[*]}")]}"

  # In-process publish, one CAS per message; then with gatos.fsync = true.
  local j js=()
  for k in 1 2 3; do r="$WORK/inproc.git"; newrepo "$r"; settle; js+=("$("$GB" publish "$r" t "$N_INPROC")"); done
  j=$(median_json rate "${js[@]}")
  local rate; rate=$(field "$j" rate)
  line "in-process publish, one CAS per message" "$(printf %.0f "$rate") msg/s  ($(ratio "$rate" "$shell_rate")x shell; target >= 20x) p50 $(printf %.0f "$(field "$j" p50_us)") us p99 $(printf %.0f "$(field "$j" p99_us)") us"
  record inproc_publish "$j"
  local method
  for method in syncfs ordered; do
    js=()
    for k in 1 2 3; do
      r="$WORK/durable.git"; newrepo "$r"; git -C "$r" config gatos.fsync true; git -C "$r" config gatos.fsyncMethod "$method"; settle
      js+=("$("$GB" publish "$r" t "$N_DURABLE")")
    done
    j=$(median_json rate "${js[@]}")
    rate=$(field "$j" rate)
    line "in-process publish, gatos.fsync = true ($method)" "$(printf %.0f "$rate") msg/s  ($(ratio "$rate" "$shell_rate")x shell; target >= 7x) p50 $(printf %.0f "$(field "$j" p50_us)") us p99 $(printf %.0f "$(field "$j" p99_us)") us"
    record "durable_publish_$method" "$j"
  done

  # (b) git fast-import writing the same N_BIG commits (stream made beforehand, not timed).
  r="$WORK/fastimport.git"; newrepo "$r"
  python3 - "$N_BIG" > "$WORK/stream.fi" <<'PY'
import sys
n = int(sys.argv[1])
out = sys.stdout
for i in range(n):
    data = ('{"n":%d,"kind":"bench","body":"the quick brown fox jumps over the lazy dog","tags":["a","b","c"]}' % i).encode()
    msg = ("message t %d\n\nGatos-Kind: message\nSeq: %d\n" % (i + 1, i + 1)).encode()
    out.write("commit refs/gatos/messages/t/head\ncommitter bench <bench@localhost> 1700000000 +0000\n")
    out.write("data %d\n" % len(msg)); out.flush(); sys.stdout.buffer.write(msg)
    out.write("\nM 100644 inline message/envelope.json\ndata %d\n" % len(data)); out.flush(); sys.stdout.buffer.write(data)
    out.write("\n\n")
PY
  settle; t0=$(now); git -C "$r" fast-import --quiet < "$WORK/stream.fi"; t1=$(now)
  local fi_s; fi_s=$(elapsed "$t0" "$t1")
  local fi_rate; fi_rate=$(python3 -c "print(f'{$N_BIG / $fi_s:.0f}')")
  line "(b) git fast-import, $N_BIG commits" "$fi_rate commits/s"
  record fast_import "{\"count\": $N_BIG, \"seconds\": $fi_s, \"rate\": $fi_rate}"

  # Batch publish of N_BIG messages in chunks of 1,000 (CLI, from a JSONL file).
  for ((i = 0; i < N_BIG; i++)); do payload "$i"; done > "$WORK/big.jsonl"
  r="$WORK/big.git"; newrepo "$r"
  settle; t0=$(now); GIT_DIR="$r" "$GG" messages publish big --batch "$WORK/big.jsonl" --chunk 1000 --json > /dev/null; t1=$(now)
  local batch_s; batch_s=$(elapsed "$t0" "$t1")
  local batch_rate; batch_rate=$(python3 -c "print(f'{$N_BIG / $batch_s:.0f}')")
  line "git gatos publish --batch, $N_BIG in chunks of 1,000" "$batch_rate msg/s  ($(ratio "$batch_rate" "$fi_rate")x fast-import; target >= 0.5x)"
  record batch_publish "{\"count\": $N_BIG, \"seconds\": $batch_s, \"rate\": $batch_rate}"

  # (c) sequential read from a packed repository, against git rev-list | cat-file --batch.
  git -C "$r" repack -a -d -q && git -C "$r" commit-graph write --reachable --no-progress
  local head; head=$(git -C "$r" rev-parse refs/gatos/messages/big/head)
  t0=$(now); git -C "$r" rev-list "$head" | sed 's|$|:message/envelope.json|' | git -C "$r" cat-file --batch > /dev/null; t1=$(now)
  local c_s; c_s=$(elapsed "$t0" "$t1")
  line "(c) git rev-list | git cat-file --batch, $N_BIG envelopes" "$c_s s"
  t0=$(now); GIT_DIR="$r" "$GG" messages read big --json > /dev/null; t1=$(now)
  local read_s; read_s=$(elapsed "$t0" "$t1")
  line "git gatos messages read --json, same topic" "$read_s s  ($(ratio "$c_s" "$read_s")x the speed of (c); target >= 1x)"
  record sequential_read "{\"count\": $N_BIG, \"seconds\": $read_s, \"baseline_seconds\": $c_s}"

  # Paging 1,000 at a time with --since: a fresh repository handle per page (a process
  # without its start-up), and also real processes minus their measured start-up.
  j=$("$GB" pages "$r" big 1000)
  local pages_s; pages_s=$(field "$j" seconds)
  line "paging by 1,000 with --since, fresh handle per page" "$pages_s s  ($(ratio "$pages_s" "$read_s")x one sequential read; target <= 3x) first page $(printf %.1f "$(field "$j" first_page_ms)") ms, last $(printf %.1f "$(field "$j" last_full_page_ms)") ms"
  record paging_inproc "$j"
  local since="" pages=0 t_pages=0 t_start=0 ulid tp0 tp1
  for ((k = 0; k < 5; k++)); do  # start-up: open the repository and print nothing
    tp0=$(now); GIT_DIR="$r" "$GG" messages read big --since-seq "$N_BIG" > /dev/null; tp1=$(now)
    t_start=$(python3 -c "print($t_start + $tp1 - $tp0)")
  done
  t_start=$(python3 -c "print($t_start / 5)")
  while :; do
    tp0=$(now)
    if [ -z "$since" ]; then
      ulid=$(GIT_DIR="$r" "$GG" messages read big --limit 1000 | tail -n 1 | cut -d' ' -f2)
    else
      ulid=$(GIT_DIR="$r" "$GG" messages read big --since "$since" --limit 1000 | tail -n 1 | cut -d' ' -f2)
    fi
    tp1=$(now)
    t_pages=$(python3 -c "print($t_pages + $tp1 - $tp0)")
    [ -n "$ulid" ] || break
    pages=$((pages + 1)); since=$ulid
  done
  local net; net=$(python3 -c "print(f'{$t_pages - ($pages + 1) * $t_start:.4f}')")
  line "paging by 1,000, one process per page, minus start-up" "$net s over $pages pages ($(ratio "$net" "$read_s")x one sequential read; start-up $(printf %.1f "$(python3 -c "print($t_start*1000)")") ms each)"
  record paging_cli "{\"pages\": $pages, \"seconds\": $t_pages, \"startup_seconds\": $t_start, \"net_seconds\": $net}"

  # Memory: reading and following a 1,000,000-message topic against a 10,000-message one.
  r="$WORK/huge.git"; newrepo "$r"
  "$GB" batch "$r" small 10000 1000 > /dev/null
  "$GB" batch "$r" huge "$N_HUGE" 1000 > /dev/null
  GIT_DIR="$r" "$GG" maintenance --quiet > /dev/null
  local s10 s1m f10 f1m
  s10=$("$GB" scan "$r" small); s1m=$("$GB" scan "$r" huge)
  f10=$("$GB" follow "$r" small); f1m=$("$GB" follow "$r" huge)
  line "RssAnon reading 10k / $N_HUGE messages" "$(field "$s10" rss_anon_kib_peak) / $(field "$s1m" rss_anon_kib_peak) KiB ($(ratio "$(field "$s1m" rss_anon_kib_peak)" "$(field "$s10" rss_anon_kib_peak)")x; target <= 1.5x) at $(printf %.0f "$(field "$s1m" rate)") msg/s"
  line "RssAnon following 10k / $N_HUGE messages" "$(field "$f10" rss_anon_kib_peak) / $(field "$f1m" rss_anon_kib_peak) KiB ($(ratio "$(field "$f1m" rss_anon_kib_peak)" "$(field "$f10" rss_anon_kib_peak)")x; target <= 1.5x)"
  record memory "{\"scan_10k\": $s10, \"scan_huge\": $s1m, \"follow_10k\": $f10, \"follow_huge\": $f1m}"

  # Reads after maintenance (issue #21 point 5, ADR 0046): a topic of N_BIG messages in
  # gatos's own packs, read before and after `git gatos maintenance`, and after the same
  # geometric repack with git's default delta search (what maintenance ran before).
  r="$WORK/maint.git"; newrepo "$r"; git -C "$r" config gatos.maintenance.auto false
  "$GB" batch "$r" t "$N_BIG" 1000 > /dev/null
  discard "$WORK/maint-delta.git" "$WORK/maint-plain.git"
  cp -a "$r" "$WORK/maint-delta.git"; cp -a "$r" "$WORK/maint-plain.git"
  GIT_DIR="$r" "$GG" maintenance --quiet > /dev/null
  git -C "$WORK/maint-delta.git" repack -d -l -q --geometric=2 --write-midx
  local before=() after=() delta=() sz_after sz_delta
  for k in 1 2 3; do
    before+=("$(field "$("$GB" scan "$WORK/maint-plain.git" t)" rate)")
    after+=("$(field "$("$GB" scan "$r" t)" rate)")
    delta+=("$(field "$("$GB" scan "$WORK/maint-delta.git" t)" rate)")
  done
  local b a d
  b=$(median3 "${before[@]}"); a=$(median3 "${after[@]}"); d=$(median3 "${delta[@]}")
  sz_after=$(du -sm "$r/objects" | cut -f1); sz_delta=$(du -sm "$WORK/maint-delta.git/objects" | cut -f1)
  line "read $N_BIG after maintenance / before (median of 3)" "$(printf %.0f "$a") / $(printf %.0f "$b") msg/s ($(ratio "$a" "$b")x; target >= 0.9x) ${sz_after} MB"
  line "same after a repack with git's delta search" "$(printf %.0f "$d") msg/s ($(ratio "$d" "$b")x) ${sz_delta} MB"
  record reads_after_maintenance "{\"before\": $b, \"after\": $a, \"after_deltas\": $d, \"mb_after\": $sz_after, \"mb_deltas\": $sz_delta}"

  # Automatic compaction: N_AUTO single publishes, maintenance started by the writer as
  # it comes due; then read, against (c) on a fully packed copy.
  r="$WORK/auto.git"; newrepo "$r"
  j=$("$GB" auto "$r" auto "$N_AUTO" "$GG")
  line "in-process publish with automatic maintenance, $N_AUTO" "$(printf %.0f "$(field "$j" rate)") msg/s"
  while ! flock -n "$r/gatos/locks/maintenance" true 2>/dev/null; do sleep 0.2; done
  local debt; debt="$(git -C "$r" count-objects -v | tr '\n' ' ')"
  t0=$(now); GIT_DIR="$r" "$GG" messages read auto --json > /dev/null; t1=$(now)
  local auto_s; auto_s=$(elapsed "$t0" "$t1")
  cp -a "$r" "$WORK/auto-packed.git"
  git -C "$WORK/auto-packed.git" repack -a -d -f -q && git -C "$WORK/auto-packed.git" commit-graph write --reachable --no-progress
  head=$(git -C "$WORK/auto-packed.git" rev-parse refs/gatos/messages/auto/head)
  t0=$(now); git -C "$WORK/auto-packed.git" rev-list "$head" | sed 's|$|:message/envelope.json|' | git -C "$WORK/auto-packed.git" cat-file --batch > /dev/null; t1=$(now)
  local auto_c; auto_c=$(elapsed "$t0" "$t1")
  line "read after automatic compaction vs (c) fully packed" "$auto_s s vs $auto_c s ($(ratio "$auto_c" "$auto_s")x the speed of (c); target >= 0.5x)"
  line "  object store after automatic compaction" "$debt"
  record auto_compaction "{\"publish\": $j, \"read_seconds\": $auto_s, \"baseline_seconds\": $auto_c}"
}

bench_daemon() {
  echo "== daemon (Unix socket) vs in-process, interleaved rounds; automatic maintenance off in both"
  local k n1=3000 n8=600 j ip one eight ratios=() p99s=()
  for k in 1 2 3; do
    local r="$WORK/dip.git"; newrepo "$r"; git -C "$r" config gatos.maintenance.auto false; settle
    ip=$("$GB" publish "$r" t $((n8 * 8)))
    r="$WORK/dd.git"; newrepo "$r"; git -C "$r" config gatos.maintenance.auto false
    "$BIN/gatosd" --repo "$r" --socket "$WORK/d.sock" 2> "$WORK/gatosd.log" &
    local pid=$!
    for _ in $(seq 1 200); do [ -S "$WORK/d.sock" ] && break; sleep 0.05; done
    settle
    one=$("$GBC" rpc "$WORK/d.sock" t "$n1" 1 "$r/gatos/gatosd/token")
    eight=$("$GBC" rpc "$WORK/d.sock" t "$n8" 8 "$r/gatos/gatosd/token")
    kill -TERM "$pid"; wait "$pid" || true
    line "round $k: in-process" "$(printf %.0f "$(field "$ip" rate)") msg/s p50 $(printf %.0f "$(field "$ip" p50_us)") us p99 $(printf %.0f "$(field "$ip" p99_us)") us"
    line "round $k: 1 client" "$(printf %.0f "$(field "$one" rate)") msg/s ($(ratio "$(field "$one" rate)" "$(field "$ip" rate)")x) p50 $(printf %.0f "$(field "$one" p50_us)") us p99 $(printf %.0f "$(field "$one" p99_us)") us"
    line "round $k: 8 clients" "$(printf %.0f "$(field "$eight" rate)") msg/s ($(ratio "$(field "$eight" rate)" "$(field "$ip" rate)")x; target >= 0.7x) p50 $(printf %.0f "$(field "$eight" p50_us)") us p99 $(printf %.0f "$(field "$eight" p99_us)") us (target < 5000)"
    ratios+=("$(ratio "$(field "$eight" rate)" "$(field "$ip" rate)")")
    p99s+=("$(field "$eight" p99_us)")
    record "daemon_round_$k" "{\"inproc\": $ip, \"one\": $one, \"eight\": $eight}"
  done
  line "median over rounds, 8 clients" "$(median3 "${ratios[@]}")x in-process, p99 $(printf %.0f "$(median3 "${p99s[@]}")") us"
}

bench_jobs() {
  echo "== job plane"
  local k j js=() r
  # Enqueue: in-process (job commit, ref, ready index, the gatos.jobs event), and the CLI.
  # Signed (the enqueue envelope, ADR 0019) and unsigned, interleaved.
  local us=() ju
  for k in 1 2 3; do
    r="$WORK/enq.git"; newrepo "$r"; settle; js+=("$("$GB" enqueue "$r" "$N_JOBS")")
    r="$WORK/enqu.git"; newrepo "$r"; settle; us+=("$("$GB" enqueue-unsigned "$r" "$N_JOBS")")
  done
  j=$(median_json rate "${js[@]}")
  ju=$(median_json rate "${us[@]}")
  line "enqueue, in-process, $N_JOBS jobs (median of 3)" "$(printf %.0f "$(field "$j" rate)") jobs/s p50 $(printf %.0f "$(field "$j" p50_us)") us p99 $(printf %.0f "$(field "$j" p99_us)") us"
  line "enqueue without the enqueuer signature (same run)" "$(printf %.0f "$(field "$ju" rate)") jobs/s ($(ratio "$(field "$j" rate)" "$(field "$ju" rate)")x with it); signing alone $(printf %.1f "$(field "$j" sign_us)") us"
  record jobs_enqueue "$j"
  record jobs_enqueue_unsigned "$ju"
  r="$WORK/enqcli.git"; newrepo "$r"; GIT_DIR="$r" "$GG" init --quiet > /dev/null; settle
  local t0 t1 i
  t0=$(now)
  for ((i = 0; i < N_RUN; i++)); do GIT_DIR="$r" "$GG" jobs enqueue -- true > /dev/null; done
  t1=$(now)
  local cli_s; cli_s=$(elapsed "$t0" "$t1")
  line "git gatos jobs enqueue, one process per job, $N_RUN" "$(python3 -c "print(f'{$N_RUN / $cli_s:.0f}')") jobs/s"
  record jobs_enqueue_cli "{\"count\": $N_RUN, \"seconds\": $cli_s}"

  # Claim to result for a no-op command (`true`): N_RUN jobs waiting, then workers drain
  # them (each attempt: claim, run the process, sign, result, events).
  local workers
  for workers in 1 4; do
    js=()
    for k in 1 2 3; do
      r="$WORK/run.git"; newrepo "$r"; GIT_DIR="$r" "$GG" init --quiet > /dev/null
      "$GB" enqueue "$r" "$N_RUN" > /dev/null
      settle
      t0=$(now)
      local pids=() w
      for ((w = 0; w < workers; w++)); do
        GIT_DIR="$r" "$GG" worker --drain --quiet --id "w$w" > /dev/null &
        pids+=($!)
      done
      wait "${pids[@]}"
      t1=$(now)
      quiesce "$r"
      js+=("$(elapsed "$t0" "$t1")")
      local left; left=$(GIT_DIR="$r" "$GG" jobs ls --state pending | wc -l)
      [ "$left" = 0 ] || { echo "bench: $left jobs left pending" >&2; exit 1; }
    done
    local s; s=$(median3 "${js[@]}")
    line "claim-to-result, no-op command, $workers worker(s), $N_RUN jobs" "$(python3 -c "print(f'{$N_RUN / $s:.0f}')") jobs/s (median of 3)"
    record "jobs_run_$workers" "{\"count\": $N_RUN, \"seconds\": $s, \"runs\": [$(IFS=,; echo "${js[*]}")]}"
  done

  # Claim latency with no history, with N_FINISHED finished jobs, and with them archived.
  # Each repository is compacted first (as maintenance leaves it); then 600 jobs are
  # enqueued in each and claimed one at a time, the three interleaved in rounds so that
  # they see the same disk conditions (this disk's ext4 has no journal: for minutes after
  # maintenance deleted thousands of files, every file creation scans for inodes not
  # recently deleted). Also on tmpfs, where only gatos's own work differs.
  claim_latency "$WORK" disk
  if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    local shm; shm=$(mktemp -d /dev/shm/gatos-bench.XXXXXX)
    claim_latency "$shm" tmpfs
    rm -rf "$shm"
  fi
}

claim_latency() { # claim_latency DIR LABEL
  local dir=$1 label=$2 r
  r="$dir/fresh.git"; newrepo "$r"; GIT_DIR="$r" "$GG" init --quiet > /dev/null
  r="$dir/history.git"; newrepo "$r"
  local fill; fill=$("$GB" jobs-fill "$r" "$N_FINISHED")
  GIT_DIR="$r" "$GG" maintenance --quiet > /dev/null
  cp -a "$r" "$dir/archived.git"
  r="$dir/archived.git"
  GIT_DIR="$r" "$GG" maintenance --archive-jobs --older-than 0s --quiet > /dev/null
  GIT_DIR="$r" "$GG" maintenance --quiet > /dev/null
  settle
  if [ "$label" = disk ]; then
    # ext4 without a journal skips inodes deleted in the last five minutes when it
    # allocates new ones, scanning past each: right after maintenance deleted thousands of
    # loose refs and objects, every file created in those directories costs more. That is
    # the file system, not gatos: wait it out (INODE_SETTLE seconds).
    sleep "${INODE_SETTLE:-310}"
  fi
  local j; j=$("$GB" claim-compare 600 6 "$dir/fresh.git" "$dir/history.git" "$dir/archived.git")
  local c0 c10 ca
  c0=$(python3 -c "import json,sys; print(json.dumps(json.loads(sys.argv[1])['repos'][0]))" "$j")
  c10=$(python3 -c "import json,sys; print(json.dumps(json.loads(sys.argv[1])['repos'][1]))" "$j")
  ca=$(python3 -c "import json,sys; print(json.dumps(json.loads(sys.argv[1])['repos'][2]))" "$j")
  line "claim latency ($label), no finished jobs" "mean $(printf %.0f "$(field "$c0" mean_us)") us p50 $(printf %.0f "$(field "$c0" p50_us)") us p99 $(printf %.0f "$(field "$c0" p99_us)") us"
  line "claim latency ($label), $N_FINISHED finished jobs" "mean $(printf %.0f "$(field "$c10" mean_us)") us p50 $(printf %.0f "$(field "$c10" p50_us)") us ($(ratio "$(field "$c10" mean_us)" "$(field "$c0" mean_us)")x; target <= 1.5x)"
  line "claim latency ($label), $N_FINISHED archived jobs" "mean $(printf %.0f "$(field "$ca" mean_us)") us p50 $(printf %.0f "$(field "$ca" p50_us)") us ($(ratio "$(field "$ca" mean_us)" "$(field "$c0" mean_us)")x)"
  line "  (filling $N_FINISHED finished jobs in-process, $label)" "$(printf %.0f "$(field "$fill" rate)") jobs/s"
  record "jobs_claim_latency_$label" "{\"none\": $c0, \"finished\": $c10, \"archived\": $ca, \"fill\": $fill}"
}

machine
# The git-gatos of BASE_REV (default: the last commit before sync checked what it adopts,
# issue #13), built once into target/bench-base, to measure what a change costs against the
# same workload in the same run.
BASE_REV=${BASE_REV:-1e64fe6}
base_gg() { # base_gg [REV]: the git-gatos of REV (default BASE_REV)
  local rev=${1:-$BASE_REV}
  local dir="$here/target/bench-base-$rev"
  if [ ! -x "$dir/git-gatos" ] || [ "$(cat "$dir/rev" 2>/dev/null)" != "$rev" ]; then
    mkdir -p "$dir"; rm -rf "$dir/src"
    git -C "$here" archive --format=tar --prefix=src/ "$rev" | tar -x -C "$dir"
    # rustup and cargo live under the real HOME (the bench runs with a throw-away one).
    (cd "$dir/src" && HOME="$REAL_HOME" cargo build --release --quiet -p git-gatos --target-dir "$dir/target") >&2 \
      || { echo "bench: could not build git-gatos at $rev" >&2; return 1; }
    cp "$dir/target/release/git-gatos" "$dir/git-gatos"; echo "$rev" > "$dir/rev"
  fi
  echo "$dir/git-gatos"
}

bench_sync() {
  echo "== replication"
  local k t0 t1 hub a b h2 b2 js=() base=() old=() OG hub3 a3 b3
  OG=$(base_gg) || exit 1
  # 10k new messages from node a to node b through a local hub: `git gatos sync` on a, then
  # on b, against a plain `git push` + `git fetch` of the same refs (another hub, another
  # receiving repository), in the same run, alternating which goes first.
  for k in 1 2 3; do
    hub="$WORK/hub.git"; newrepo "$hub"; h2="$WORK/hub2.git"; newrepo "$h2"
    a="$WORK/a.git"; newrepo "$a"; b="$WORK/b.git"; newrepo "$b"; b2="$WORK/b2.git"; newrepo "$b2"
    for r in "$a" "$b"; do GIT_DIR="$r" "$GG" init --quiet > /dev/null; git --git-dir="$r" remote add origin "$hub"; done
    "$GB" publish "$a" bench.sync "$N_SYNC" > /dev/null
    GIT_DIR="$a" "$GG" maintenance --quiet > /dev/null
    # The same for the binary without the checks (issue #13).
    hub3="$WORK/hub3.git"; newrepo "$hub3"; a3="$WORK/a3.git"; newrepo "$a3"; b3="$WORK/b3.git"; newrepo "$b3"
    for r in "$a3" "$b3"; do GIT_DIR="$r" "$OG" init --quiet > /dev/null; git --git-dir="$r" remote add origin "$hub3"; done
    "$GB" publish "$a3" bench.sync "$N_SYNC" > /dev/null
    GIT_DIR="$a3" "$OG" maintenance --quiet > /dev/null
    settle
    plain() {
      t0=$(now)
      git --git-dir="$a" push -q "$h2" 'refs/gatos/*:refs/gatos/*'
      git --git-dir="$b2" fetch -q "$h2" 'refs/gatos/*:refs/gatos/*'
      t1=$(now); base+=("$(elapsed "$t0" "$t1")")
    }
    ours() {
      t0=$(now)
      GIT_DIR="$a" "$GG" sync --quiet > /dev/null
      GIT_DIR="$b" "$GG" sync --quiet > /dev/null
      t1=$(now); js+=("$(elapsed "$t0" "$t1")")
    }
    unchecked() {
      t0=$(now)
      GIT_DIR="$a3" "$OG" sync --quiet > /dev/null
      GIT_DIR="$b3" "$OG" sync --quiet > /dev/null
      t1=$(now); old+=("$(elapsed "$t0" "$t1")")
    }
    case $k in 1) plain; ours; unchecked ;; 2) ours; unchecked; plain ;; *) unchecked; plain; ours ;; esac
    local got; got=$(GIT_DIR="$b" "$GG" messages topics --json | python3 -c "import json,sys; print(sum(json.loads(l)['count'] for l in sys.stdin if 'bench.sync' in l))")
    [ "$got" = "$N_SYNC" ] || { echo "bench: b holds $got messages, not $N_SYNC" >&2; exit 1; }
  done
  local s p u; s=$(median3 "${js[@]}"); p=$(median3 "${base[@]}"); u=$(median3 "${old[@]}")
  line "git push + git fetch of $N_SYNC messages (baseline)" "${p}s (median of 3)"
  line "git gatos sync a -> hub -> b, $N_SYNC messages" "${s}s ($(ratio "$s" "$p")x; target <= 1.5x)"
  line "the same sync without checks ($BASE_REV)" "${u}s (checks cost $(ratio "$s" "$u")x; target <= 1.25x)"
  record sync_messages "{\"count\": $N_SYNC, \"seconds\": $s, \"baseline_seconds\": $p, \"unchecked_seconds\": $u, \"base_rev\": \"$BASE_REV\", \"runs\": [$(IFS=,; echo "${js[*]}")], \"baseline_runs\": [$(IFS=,; echo "${base[*]}")], \"unchecked_runs\": [$(IFS=,; echo "${old[*]}")]}"

  # A no-op sync and a claim through the hub, against an empty hub and a hub holding
  # N_ARCHIVED archived jobs (filled in-process, archived, packed), interleaved.
  local fill big empty nb ne
  fill="$WORK/fill.git"; newrepo "$fill"
  local f; f=$("$GB" jobs-fill "$fill" "$N_ARCHIVED")
  GIT_DIR="$fill" "$GG" maintenance --archive-jobs --older-than 0s --quiet > /dev/null
  GIT_DIR="$fill" "$GG" maintenance --quiet > /dev/null
  big="$WORK/big-hub.git"; newrepo "$big"; empty="$WORK/empty-hub.git"; newrepo "$empty"
  git --git-dir="$fill" push -q "$big" 'refs/gatos/*:refs/gatos/*'
  nb="$WORK/node-big.git"; newrepo "$nb"; ne="$WORK/node-empty.git"; newrepo "$ne"
  git --git-dir="$nb" remote add origin "$big"; git --git-dir="$ne" remote add origin "$empty"
  for r in "$nb" "$ne"; do GIT_DIR="$r" "$GG" init --quiet > /dev/null; GIT_DIR="$r" "$GG" sync --quiet > /dev/null; GIT_DIR="$r" "$GG" maintenance --quiet > /dev/null; done
  settle
  local j; j=$("$GB" sync-compare "${SYNC_ROUNDS:-30}" "$ne" "$nb")
  local e x
  e=$(python3 -c "import json,sys; print(json.dumps(json.loads(sys.argv[1])['nodes'][0]))" "$j")
  x=$(python3 -c "import json,sys; print(json.dumps(json.loads(sys.argv[1])['nodes'][1]))" "$j")
  local en xn ec xc
  en=$(python3 -c "import json,sys; print(f\"{json.loads(sys.argv[1])['noop_sync_ms']['mean']:.1f}\")" "$e")
  xn=$(python3 -c "import json,sys; print(f\"{json.loads(sys.argv[1])['noop_sync_ms']['mean']:.1f}\")" "$x")
  ec=$(python3 -c "import json,sys; print(f\"{json.loads(sys.argv[1])['claim_ms']['mean']:.1f}\")" "$e")
  xc=$(python3 -c "import json,sys; print(f\"{json.loads(sys.argv[1])['claim_ms']['mean']:.1f}\")" "$x")
  line "no-op sync, empty hub" "mean ${en} ms"
  line "no-op sync, hub with $N_ARCHIVED archived jobs" "mean ${xn} ms ($(ratio "$xn" "$en")x; target <= 2x)"
  line "claim through the hub, empty hub" "mean ${ec} ms"
  line "claim through the hub, $N_ARCHIVED archived jobs" "mean ${xc} ms ($(ratio "$xc" "$ec")x; target <= 2x)"
  line "  (filling $N_ARCHIVED finished jobs in-process)" "$(printf %.0f "$(field "$f" rate)") jobs/s"
  record sync_hub_size "{\"empty\": $e, \"archived\": $x, \"archived_jobs\": $N_ARCHIVED}"
}

# The HTTP face (issue #17 point 9, docs/PERFORMANCE.md): one daemon serves both faces.
# Publish and enqueue over HTTP/1.1 keep-alive against the same calls over JSON-RPC on the
# Unix socket (8 clients each, one call at a time, 8 named tokens so each client is its own
# actor as 8 real clients are), 3 rounds, each face twice a round in ABBA order; SSE publish-to-delivery latency with
# N_SSE subscribers; the daemon's memory with N_IDLE idle streams; a page of 100 jobs from
# N_PAGE_SMALL and from N_PAGE_BIG finished jobs.
bench_http() {
  echo "== HTTP face vs JSON-RPC (Unix socket), one daemon, interleaved rounds; automatic maintenance off"
  local tf="$WORK/http-tokens" i k r p e rp hp re he
  local n_pub=${N_HTTP_PUB:-300} n_enq=${N_HTTP_ENQ:-120} n_sse=${N_SSE:-200} n_idle=${N_IDLE:-1000}
  local small=${N_PAGE_SMALL:-1000} big=${N_PAGE_BIG:-100000}
  ( umask 077; : > "$tf" )
  for i in $(seq 1 8); do
    printf 'c%s %s\n' "$i" "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" >> "$tf"
  done
  combine() { # combine JSON JSON: two runs of one workload as one (rate over both; the
    # worse p50 and p99)
    python3 - "$1" "$2" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
c, s = a["count"] + b["count"], a["seconds"] + b["seconds"]
print(json.dumps({"workload": a["workload"], "clients": a["clients"], "count": c, "seconds": s,
                  "rate": c / s, "p50_us": max(a["p50_us"], b["p50_us"]),
                  "p99_us": max(a["p99_us"], b["p99_us"]), "runs": [a, b]}))
PY
  }
  start_http() { # start_http REPO: gatosd on REPO with the socket and --http; sets HPID, HADDR
    rm -f "$1/gatos/gatosd/http-addr" "$WORK/h.sock"
    "$BIN/gatosd" --repo "$1" --socket "$WORK/h.sock" --http 127.0.0.1:0 --token-file "$tf" \
      2> "$WORK/gatosd-http.log" &
    HPID=$!
    for _ in $(seq 1 400); do
      [ -s "$1/gatos/gatosd/http-addr" ] && [ -S "$WORK/h.sock" ] && break; sleep 0.05
    done
    HADDR=$(cat "$1/gatos/gatosd/http-addr")
  }
  stop_http() { kill -TERM "$HPID"; wait "$HPID" || true; }
  local pr=() er=()
  for k in 1 2 3; do
    r="$WORK/http.git"; newrepo "$r"; git -C "$r" config gatos.maintenance.auto false
    GIT_DIR="$r" "$GG" init --quiet > /dev/null
    start_http "$r"
    # A warm-up on both faces (the first writes to a fresh repository are slower).
    "$GBC" calls rpc publish "$WORK/h.sock" "$tf" 50 8 t.warm > /dev/null
    "$GBC" calls http publish "$HADDR" "$tf" 50 8 t.warm > /dev/null
    settle
    # ABBA: each face runs twice, half the calls each time, in mirrored order (what the
    # disk is still flushing weighs on both alike).
    local a b
    a=$("$GBC" calls rpc publish "$WORK/h.sock" "$tf" $((n_pub / 2)) 8 t.rpc); settle
    b=$("$GBC" calls http publish "$HADDR" "$tf" $((n_pub / 2)) 8 t.http); settle
    hp=$(combine "$b" "$("$GBC" calls http publish "$HADDR" "$tf" $((n_pub / 2)) 8 t.http)"); settle
    rp=$(combine "$a" "$("$GBC" calls rpc publish "$WORK/h.sock" "$tf" $((n_pub / 2)) 8 t.rpc)"); settle
    a=$("$GBC" calls http enqueue "$HADDR" "$tf" $((n_enq / 2)) 8 -); settle
    b=$("$GBC" calls rpc enqueue "$WORK/h.sock" "$tf" $((n_enq / 2)) 8 -); settle
    re=$(combine "$b" "$("$GBC" calls rpc enqueue "$WORK/h.sock" "$tf" $((n_enq / 2)) 8 -)"); settle
    he=$(combine "$a" "$("$GBC" calls http enqueue "$HADDR" "$tf" $((n_enq / 2)) 8 -)")
    stop_http
    p=$(ratio "$(field "$hp" rate)" "$(field "$rp" rate)"); e=$(ratio "$(field "$he" rate)" "$(field "$re" rate)")
    line "round $k: publish, 8 clients, JSON-RPC" "$(printf %.0f "$(field "$rp" rate)") msg/s p50 $(printf %.0f "$(field "$rp" p50_us)") us p99 $(printf %.0f "$(field "$rp" p99_us)") us"
    line "round $k: publish, 8 clients, HTTP" "$(printf %.0f "$(field "$hp" rate)") msg/s (${p}x; target >= 0.7x) p50 $(printf %.0f "$(field "$hp" p50_us)") us p99 $(printf %.0f "$(field "$hp" p99_us)") us"
    line "round $k: enqueue, 8 clients, JSON-RPC" "$(printf %.0f "$(field "$re" rate)") jobs/s p50 $(printf %.0f "$(field "$re" p50_us)") us p99 $(printf %.0f "$(field "$re" p99_us)") us"
    line "round $k: enqueue, 8 clients, HTTP" "$(printf %.0f "$(field "$he" rate)") jobs/s (${e}x; target >= 0.7x) p50 $(printf %.0f "$(field "$he" p50_us)") us p99 $(printf %.0f "$(field "$he" p99_us)") us"
    pr+=("$p"); er+=("$e")
    record "http_round_$k" "{\"rpc_publish\": $rp, \"http_publish\": $hp, \"rpc_enqueue\": $re, \"http_enqueue\": $he}"
  done
  line "median over rounds: HTTP / JSON-RPC" "publish $(median3 "${pr[@]}")x, enqueue $(median3 "${er[@]}")x (target >= 0.7x)"

  r="$WORK/sse.git"; newrepo "$r"; git -C "$r" config gatos.maintenance.auto false
  GIT_DIR="$r" "$GG" init --quiet > /dev/null
  start_http "$r"; settle
  local s; s=$("$GBC" sse "$HADDR" "$tf" t.sse "$n_sse" 300 20)
  line "SSE: $n_sse subscribers, 300 messages at 20/s" "delivered $(field "$s" deliveries)/$(field "$s" expected), p50 $(printf %.1f "$(field "$s" p50_ms)") ms p99 $(printf %.1f "$(field "$s" p99_ms)") ms (target < 50) max $(printf %.1f "$(field "$s" max_ms)") ms"
  record http_sse "$s"
  local idle; idle=$("$GBC" idle-sse "$HADDR" "$tf" t.idle "$n_idle" "$HPID")
  line "SSE: $n_idle idle streams, gatosd RSS" "$(field "$idle" rss_before_kib) KiB -> $(field "$idle" rss_with_kib) KiB ($(printf %.1f "$(field "$idle" kib_per_stream)") KiB a stream); one message reached all in $(printf %.0f "$(field "$idle" fan_out_ms)") ms"
  record http_idle_sse "$idle"
  stop_http

  # A page of 100 jobs: the first page, and a page from the middle (cursor), of a history of
  # $small and of $big finished jobs (filled in-process: enqueued, claimed, finished).
  local pages=() n tok; tok=$(awk 'NR==1 {print $2}' "$tf")
  for n in "$small" "$big"; do
    r="$WORK/pages-$n.git"; newrepo "$r"; git -C "$r" config gatos.maintenance.auto false
    GIT_DIR="$r" "$GG" init --quiet > /dev/null
    local f; f=$("$GB" jobs-fill "$r" "$n")
    GIT_DIR="$r" "$GG" maintenance --quiet > /dev/null; quiesce "$r"
    local mid; mid=$(git --git-dir="$r" for-each-ref --format='%(refname)' refs/gatos/jobs/ \
      | sed -n 's|^refs/gatos/jobs/\([0-9A-Z]\{26\}\)/job$|\1|p' | sort | awk -v n="$n" 'NR == int(n / 2)')
    start_http "$r"; settle
    local first deep
    first=$("$GBC" get "$HADDR" "$tok" "/api/v1/jobs?state=succeeded&limit=100" 50)
    deep=$("$GBC" get "$HADDR" "$tok" "/api/v1/jobs?state=succeeded&limit=100&cursor=$mid" 50)
    stop_http
    line "GET a page of 100 jobs of $n finished (first page)" "p50 $(printf %.1f "$(field "$first" p50_ms)") ms p99 $(printf %.1f "$(field "$first" p99_ms)") ms, $(field "$first" bytes) bytes"
    line "GET a page of 100 jobs of $n finished (middle page)" "p50 $(printf %.1f "$(field "$deep" p50_ms)") ms p99 $(printf %.1f "$(field "$deep" p99_ms)") ms"
    line "  (filling $n finished jobs in-process)" "$(printf %.0f "$(field "$f" rate)") jobs/s"
    pages+=("$(field "$first" p50_ms)" "$(field "$deep" p50_ms)")
    record "http_pages_$n" "{\"jobs\": $n, \"first\": $first, \"middle\": $deep}"
  done
  line "page of 100 from $big vs from $small finished jobs" "first $(ratio "${pages[2]}" "${pages[0]}")x, middle $(ratio "${pages[3]}" "${pages[1]}")x (target <= 2x)"
}

# The MCP face (issue #20 point 6): a read tool call over `gatosd mcp --stdio` (as an agent
# runs it) against the same read over JSON-RPC on the Unix socket, alternating call by
# call in one process, N_MCP of each.
bench_mcp() {
  echo "== MCP face (stdio) vs JSON-RPC (Unix socket): messages.read of 10, alternating calls"
  local r="$WORK/mcp.git" m i
  newrepo "$r"; git -C "$r" config gatos.maintenance.auto false
  GIT_DIR="$r" "$GG" init --quiet > /dev/null
  for i in $(seq 1 20); do payload "$i"; done > "$WORK/mcp.jsonl"
  GIT_DIR="$r" "$GG" messages publish t.mcp --batch "$WORK/mcp.jsonl" > /dev/null
  rm -f "$WORK/m.sock"
  "$BIN/gatosd" --repo "$r" --socket "$WORK/m.sock" 2> "$WORK/gatosd-mcp.log" &
  local pid=$!
  for _ in $(seq 1 200); do [ -S "$WORK/m.sock" ] && break; sleep 0.05; done
  settle
  m=$("$GBC" mcp "$BIN/gatosd" "$r" "$WORK/m.sock" "$r/gatos/gatosd/token" t.mcp "${N_MCP:-2000}")
  kill -TERM "$pid"; wait "$pid" || true
  line "JSON-RPC messages.read (Unix socket)" "p50 $(printf %.0f "$(field "$m" rpc_p50_us)") us mean $(printf %.0f "$(field "$m" rpc_mean_us)") us p99 $(printf %.0f "$(field "$m" rpc_p99_us)") us"
  line "MCP tools/call messages.read (stdio)" "p50 $(printf %.0f "$(field "$m" mcp_p50_us)") us ($(ratio "$(field "$m" mcp_p50_us)" "$(field "$m" rpc_p50_us)")x; target <= 1.5x) mean $(printf %.0f "$(field "$m" mcp_mean_us)") us ($(ratio "$(field "$m" mcp_mean_us)" "$(field "$m" rpc_mean_us)")x) p99 $(printf %.0f "$(field "$m" mcp_p99_us)") us"
  record mcp_read "$m"
}

# Export: full SQLite and Parquet exports of N_EXPORT messages and N_EXPORT_JOBS finished
# jobs against `messages read --json` of the same messages, peak memory at a tenth of the
# size, and an incremental export of N_EXPORT_NEW new messages.
bench_export() {
  local n=${N_EXPORT:-100000} nj=${N_EXPORT_JOBS:-10000} nn=${N_EXPORT_NEW:-1000}
  fill_export() { # fill_export REPO MESSAGES JOBS
    newrepo "$1"
    GIT_DIR="$1" "$GG" init --quiet > /dev/null
    for ((i = 0; i < $2; i++)); do payload "$i"; done > "$WORK/export.jsonl"
    GIT_DIR="$1" "$GG" messages publish big --batch "$WORK/export.jsonl" --chunk 1000 --json > /dev/null
    "$GB" jobs-fill "$1" "$3" > /dev/null
    GIT_DIR="$1" "$GG" maintenance --quiet > /dev/null
    quiesce "$1"
  }
  peak() { # peak CMD...: runs it, prints its peak anonymous RSS in KiB (sampled every 5 ms;
    # file-backed pages of the mapped packs are page cache, not the export's memory)
    python3 - "$@" <<'PY'
import subprocess, sys, time
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
peak = 0
while p.poll() is None:
    try:
        for line in open(f"/proc/{p.pid}/status"):
            if line.startswith("RssAnon:"):
                peak = max(peak, int(line.split()[1]))
    except OSError:
        pass
    time.sleep(0.005)
print(peak)
PY
  }
  # Memory is compared at 10x the messages with the jobs fixed (the target is about
  # messages), and also with the jobs scaled too (every ref is listed in the manifest).
  local big="$WORK/export-big.git" small="$WORK/export-small.git" mid="$WORK/export-mid.git"
  fill_export "$big" "$n" "$nj"
  fill_export "$small" $((n / 10)) $((nj / 10))
  fill_export "$mid" "$n" $((nj / 10))
  settle
  local t0 t1 read_s all_s sq_s msg_s pq_s
  t0=$(now); GIT_DIR="$big" "$GG" messages read big --json > /dev/null; t1=$(now); read_s=$(elapsed "$t0" "$t1")
  # The export holds every topic's messages: the jobs' events (gatos.jobs) too.
  t0=$(now)
  GIT_DIR="$big" "$GG" messages read big --json > /dev/null
  GIT_DIR="$big" "$GG" messages read gatos.jobs --json > /dev/null
  t1=$(now); all_s=$(elapsed "$t0" "$t1")
  rm -f "$WORK/e.db"; t0=$(now); GIT_DIR="$big" "$GG" export --format sqlite --out "$WORK/e.db" --quiet > /dev/null; t1=$(now); sq_s=$(elapsed "$t0" "$t1")
  rm -f "$WORK/em.db"; t0=$(now); GIT_DIR="$big" "$GG" export --format sqlite --out "$WORK/em.db" --tables messages --quiet > /dev/null; t1=$(now); msg_s=$(elapsed "$t0" "$t1")
  t0=$(now); GIT_DIR="$big" "$GG" export --format parquet --out "$WORK/e.pq" --quiet > /dev/null; t1=$(now); pq_s=$(elapsed "$t0" "$t1")
  line "git gatos messages read --json, $n messages" "$read_s s"
  line "messages read --json of every topic ($n + the jobs' events)" "$all_s s"
  line "export --format sqlite, $n messages + $nj jobs" "$sq_s s ($(ratio "$sq_s" "$read_s")x the read of $n; $(ratio "$sq_s" "$all_s")x the read of every topic; target <= 2x)"
  line "export --format sqlite --tables messages" "$msg_s s ($(ratio "$msg_s" "$all_s")x the read of every topic)"
  line "export --format parquet, same" "$pq_s s ($(ratio "$pq_s" "$read_s")x the read of $n)"
  # The job tables against what a user would run for the same facts (issue #21): every
  # job listed, and every proof verified. Median of 3, interleaved.
  local jt=() jb=() k jt_s jb_s
  for k in 1 2 3; do
    rm -f "$WORK/ej.db"; t0=$(now)
    GIT_DIR="$big" "$GG" export --format sqlite --out "$WORK/ej.db" --tables jobs,attempts,results --quiet > /dev/null
    t1=$(now); jt+=("$(elapsed "$t0" "$t1")")
    t0=$(now)
    GIT_DIR="$big" "$GG" jobs ls --json > /dev/null
    GIT_DIR="$big" "$GG" jobs verify --all > /dev/null
    t1=$(now); jb+=("$(elapsed "$t0" "$t1")")
  done
  jt_s=$(median3 "${jt[@]}"); jb_s=$(median3 "${jb[@]}")
  line "export --tables jobs,attempts,results, $nj jobs" "$jt_s s ($(ratio "$jt_s" "$jb_s")x jobs ls --json + jobs verify --all, $jb_s s; target <= 1.5x)"
  record export_job_tables "{\"jobs\": $nj, \"export_seconds\": $jt_s, \"ls_verify_seconds\": $jb_s}"
  local m_small m_mid m_big
  m_small=$(GIT_DIR="$small" peak "$GG" export --format sqlite --out "$WORK/s.db" --quiet)
  m_mid=$(GIT_DIR="$mid" peak "$GG" export --format sqlite --out "$WORK/m.db" --quiet)
  m_big=$(GIT_DIR="$big" peak "$GG" export --format sqlite --out "$WORK/b.db" --quiet)
  line "peak RssAnon, sqlite export of $((n / 10)) vs $n messages ($((nj / 10)) jobs)" "$m_small KiB vs $m_mid KiB ($(ratio "$m_mid" "$m_small")x; target <= 1.5x)"
  line "peak RssAnon, sqlite export of $((n / 10)) + $((nj / 10)) jobs vs $n + $nj jobs" "$m_small KiB vs $m_big KiB ($(ratio "$m_big" "$m_small")x)"
  local p_small p_mid p_big
  p_small=$(GIT_DIR="$small" peak "$GG" export --format parquet --out "$WORK/s.pq" --quiet)
  p_mid=$(GIT_DIR="$mid" peak "$GG" export --format parquet --out "$WORK/m.pq" --quiet)
  p_big=$(GIT_DIR="$big" peak "$GG" export --format parquet --out "$WORK/b.pq" --quiet)
  line "peak RssAnon, parquet export of $((n / 10)) vs $n messages ($((nj / 10)) jobs)" "$p_small KiB vs $p_mid KiB ($(ratio "$p_mid" "$p_small")x)"
  line "peak RssAnon, parquet export of $((n / 10)) + $((nj / 10)) jobs vs $n + $nj jobs" "$p_small KiB vs $p_big KiB ($(ratio "$p_big" "$p_small")x)"
  for ((i = 0; i < nn; i++)); do payload "$((n + i))"; done > "$WORK/new.jsonl"
  GIT_DIR="$big" "$GG" messages publish big --batch "$WORK/new.jsonl" --chunk 1000 --json > /dev/null
  quiesce "$big"; settle
  # The median of three, each on a fresh copy of the full export (synced first, so that
  # the copy's dirty pages do not land in the export's fsync).
  local inc_s runs=()
  for _ in 1 2 3; do
    cp "$WORK/e.db" "$WORK/inc.db"; sync
    t0=$(now); GIT_DIR="$big" "$GG" export --format sqlite --out "$WORK/inc.db" --incremental --quiet > /dev/null; t1=$(now)
    runs+=("$(elapsed "$t0" "$t1")")
  done
  inc_s=$(printf '%s\n' "${runs[@]}" | sort -n | sed -n 2p)
  line "export --incremental, $nn new messages (median of 3: ${runs[*]})" "$inc_s s ($(python3 -c "print(f'{100 * $inc_s / $sq_s:.1f}')")% of the full export; target < 5%)"
  GIT_DIR="$big" "$GG" export verify "$WORK/inc.db" --repo "$big" --quiet > /dev/null
  record export "{\"messages\": $n, \"jobs\": $nj, \"read_seconds\": $read_s, \"read_all_seconds\": $all_s, \"sqlite_seconds\": $sq_s, \"sqlite_messages_seconds\": $msg_s, \"parquet_seconds\": $pq_s, \"peak_kib_small\": $m_small, \"peak_kib_mid\": $m_mid, \"peak_kib_big\": $m_big, \"parquet_peak_kib_small\": $p_small, \"parquet_peak_kib_mid\": $p_mid, \"parquet_peak_kib_big\": $p_big, \"incremental_new\": $nn, \"incremental_seconds\": $inc_s}"
}

bench_gatosd_flood() {
  echo "== gatosd under hostile clients (peak RSS from /proc/PID/status VmHWM; target < 256 MiB)"
  local r="$WORK/flood.git"; newrepo "$r"; git -C "$r" config gatos.maintenance.auto false
  # 30 messages of about 7 MiB (the envelope cap is 8 MiB), published before gatosd starts.
  python3 -c "
import json
for i in range(30): print(json.dumps({'i': i, 'pad': 'x' * (7 * 1024 * 1024)}))" > "$WORK/big8.jsonl"
  GIT_DIR="$r" "$GG" messages publish big --batch "$WORK/big8.jsonl" --chunk 5 > /dev/null
  local port; port=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
  "$BIN/gatosd" --repo "$r" --socket "$WORK/f.sock" --listen "127.0.0.1:$port" 2> "$WORK/gatosd-flood.log" &
  local pid=$!
  for _ in $(seq 1 200); do [ -S "$WORK/f.sock" ] && break; sleep 0.05; done
  local j
  j=$(python3 - "$pid" "$WORK/f.sock" "$port" "$r/gatos/gatosd/token" <<'PY'
import json, os, socket, sys, threading, time
pid, sock, port, token_file = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
token = open(token_file).read().strip()
def status(key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
def cpu_seconds():
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
def unix(auth=False):
    s = socket.socket(socket.AF_UNIX); s.settimeout(120); s.connect(sock)
    f = s.makefile("rwb")
    if auth:
        call(f, "gatos.auth", {"token": token})
    return s, f
def call(f, method, params, i=1):
    f.write((json.dumps({"jsonrpc": "2.0", "id": i, "method": method, "params": params}) + "\n").encode()); f.flush()
    while True:
        r = json.loads(f.readline())
        if r.get("id") == i:
            return r
def health_ms():
    s, f = unix(); t = time.monotonic(); call(f, "gatos.health", {}); ms = (time.monotonic() - t) * 1000; s.close(); return ms
out = {"start_kib": status("VmRSS")}
# (1) 64 unauthenticated TCP connections, each sending 8 MiB without a newline.
def flood():
    try:
        c = socket.create_connection(("127.0.0.1", port), timeout=60)
        chunk = b"x" * (1024 * 1024)
        for _ in range(8):
            c.sendall(chunk)
        c.recv(4096); c.close()
    except OSError:
        pass
ts = [threading.Thread(target=flood) for _ in range(64)]
[t.start() for t in ts]; h = health_ms(); [t.join() for t in ts]
out["tcp_8mib_flood"] = {"peak_kib": status("VmHWM"), "unix_health_ms": round(h, 1)}
# (2) 520 idle TCP connections, then a Unix-socket gatos.health.
idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(520)]
time.sleep(0.5)
out["tcp_520_idle"] = {"peak_kib": status("VmHWM"), "unix_health_ms": round(health_ms(), 1)}
[c.close() for c in idle]
# (3) 10,000 subscriptions to distinct topics (40 connections of 250; 256 is the cap),
# then idle: CPU over 10 s.
conns, subs = [], 0
for k in range(40):
    s, f = unix()
    for i in range(250):
        r = call(f, "messages.subscribe", {"topic": f"idle.{k}.{i}"}, i + 1)
        subs += "result" in r
    conns.append((s, f))
s, f = unix(); r = call(f, "messages.subscribe", {"topic": "x"}); capped = None
for i in range(300):
    r = call(f, "messages.subscribe", {"topic": f"cap.{i}"}, i + 2)
    if "error" in r:
        capped = r["error"]["data"]["code"]; break
s.close()
time.sleep(2); c0 = cpu_seconds(); time.sleep(10); c1 = cpu_seconds()
out["subscriptions_10k_idle"] = {"subscriptions": subs, "cores_idle": round((c1 - c0) / 10, 3), "peak_kib": status("VmHWM"), "past_cap": capped}
[s.close() for s, _ in conns]
# (4) four clients each asking for pages of 30 x 7 MiB messages, never reading the answers.
readers = []
for k in range(4):
    s, f = unix()
    for i in range(30):
        f.write((json.dumps({"jsonrpc": "2.0", "id": i, "method": "messages.read", "params": {"topic": "big", "limit": 30}}) + "\n").encode())
    f.flush(); readers.append((s, f))
time.sleep(15)
out["big_pages_unread"] = {"peak_kib": status("VmHWM"), "now_kib": status("VmRSS"), "unix_health_ms": round(health_ms(), 1)}
[s.close() for s, _ in readers]
time.sleep(1)
out["peak_kib"] = status("VmHWM")
print(json.dumps(out))
PY
)
  kill -TERM "$pid"; wait "$pid" || true
  line "gatosd RSS at start" "$(field "$j" start_kib) KiB"
  local k
  for k in tcp_8mib_flood tcp_520_idle subscriptions_10k_idle big_pages_unread; do
    line "  after $k" "$(python3 -c "import json,sys; d=json.loads(sys.argv[1])[sys.argv[2]]; print(', '.join(f'{a} {b}' for a, b in d.items()))" "$j" "$k")"
  done
  line "gatosd peak RSS (VmHWM) through the flood scenarios" "$(( $(field "$j" peak_kib) / 1024 )) MiB (target < 256 MiB)"
  record gatosd_flood "$j"
}

# What running each attempt under a supervisor in a Landlock sandbox costs (issue #14,
# ADR 0021): N_RUN no-op jobs drained by one worker, against the worker of ISO_BASE_REV (the
# last commit before the supervisor) in the same run, interleaved, median of 3. The
# checkout's cost is measured apart: the same jobs naming a commit of N_SRC files.
ISO_BASE_REV=${ISO_BASE_REV:-c9cf239}
N_SRC=${N_SRC:-200}
bench_isolation() {
  echo "== job isolation (supervisor, sandbox, checkout)"
  local base; base=$(base_gg "$ISO_BASE_REV")
  local src="$WORK/src"; discard "$src"; git init -q "$src"
  local i
  for ((i = 0; i < N_SRC; i++)); do printf 'file %d\n%.0s' "$i" {1..40} > "$src/f$i.txt"; done
  git -C "$src" add -A; git -C "$src" commit -q -m sources
  local commit; commit=$(git -C "$src" rev-parse HEAD)
  run_drain() { # run_drain GG SANDBOX CHECKOUT -> seconds
    local gg=$1 sandbox=$2 checkout=$3 r="$WORK/iso.git"
    newrepo "$r"; GIT_DIR="$r" "$GG" init --quiet > /dev/null
    if [ "$checkout" = yes ]; then
      git -C "$src" push -q "$r" HEAD:refs/heads/main
      for ((i = 0; i < N_RUN; i++)); do GIT_DIR="$r" "$GG" jobs enqueue --quiet --checkout "$commit" -- true > /dev/null; done
    else
      "$GB" enqueue "$r" "$N_RUN" > /dev/null
    fi
    settle
    local flags=()
    [ -n "$sandbox" ] && flags=(--sandbox "$sandbox")
    # The attempts' directories (and checkouts) are made under the worker's TMPDIR: on the
    # bench's own directory, so a run measures the file system it was given, not /tmp's.
    local tmp="$WORK/iso-tmp"; mkdir -p "$tmp"
    local t0 t1; t0=$(now)
    TMPDIR="$tmp" GIT_DIR="$r" "$gg" worker --drain --quiet --id w "${flags[@]}" > /dev/null
    t1=$(now)
    local left; left=$(GIT_DIR="$r" "$GG" jobs ls --state pending | wc -l)
    [ "$left" = 0 ] || { echo "bench: $left jobs left pending" >&2; exit 1; }
    elapsed "$t0" "$t1"
  }
  local b=() o=() a=() c=() k
  for k in 1 2 3; do
    b+=("$(run_drain "$base" "" no)")
    o+=("$(run_drain "$GG" off no)")
    a+=("$(run_drain "$GG" required no)")
    c+=("$(run_drain "$GG" required yes)")
  done
  local sb so sa sc
  sb=$(median3 "${b[@]}"); so=$(median3 "${o[@]}"); sa=$(median3 "${a[@]}"); sc=$(median3 "${c[@]}")
  rate() { python3 -c "print(f'{$N_RUN / $1:.0f}')"; }
  line "claim-to-result, no-op, before the supervisor ($ISO_BASE_REV)" "$(rate "$sb") jobs/s (median of 3)"
  line "  supervisor, --sandbox off, no checkout" "$(rate "$so") jobs/s ($(ratio "$so" "$sb")x the time)"
  line "  supervisor + Landlock sandbox, no checkout" "$(rate "$sa") jobs/s ($(ratio "$sa" "$sb")x the time; target <= 1.15x)"
  line "  supervisor + sandbox + checkout of $N_SRC files" "$(rate "$sc") jobs/s ($(ratio "$sc" "$sa")x the time of no checkout)"
  record jobs_isolation "{\"count\": $N_RUN, \"base_rev\": \"$ISO_BASE_REV\", \"base_seconds\": $sb, \"supervisor_seconds\": $so, \"sandbox_seconds\": $sa, \"checkout_seconds\": $sc, \"checkout_files\": $N_SRC, \"base_runs\": [$(IFS=,; echo "${b[*]}")], \"supervisor_runs\": [$(IFS=,; echo "${o[*]}")], \"sandbox_runs\": [$(IFS=,; echo "${a[*]}")], \"checkout_runs\": [$(IFS=,; echo "${c[*]}")]}"
}

# The service layer (issue #15, ADR 0025): the faces now go through gatos-api. The same
# workloads with the binaries of SVC_BASE_REV (the last commit before it) and of this tree,
# interleaved, median of 5 rounds: one CLI process per publish and per enqueue, `jobs ls`
# over N_LIST jobs, and publishes through gatosd (one client). Target: within 10%.
SVC_BASE_REV=${SVC_BASE_REV:-d6d2557}
N_LIST=${N_LIST:-2000}
base_gatosd() { # base_gatosd REV: the gatosd of REV, built beside base_gg's git-gatos
  local rev=$1 dir="$here/target/bench-base-$1"
  base_gg "$rev" > /dev/null || return 1
  if [ ! -x "$dir/gatosd" ]; then
    (cd "$dir/src" && HOME="$REAL_HOME" cargo build --release --quiet -p gatosd --target-dir "$dir/target") >&2 \
      || { echo "bench: could not build gatosd at $rev" >&2; return 1; }
    cp "$dir/target/release/gatosd" "$dir/gatosd"
  fi
  echo "$dir/gatosd"
}
bench_service() {
  echo "== the service layer: $SVC_BASE_REV against this tree, interleaved, median of 5"
  local OG OD; OG=$(base_gg "$SVC_BASE_REV") || exit 1; OD=$(base_gatosd "$SVC_BASE_REV") || exit 1
  local k i r t0 t1 side gg gd pid
  local -A runs=()
  cli_publish() { # cli_publish GG REPO -> seconds for N_RUN publishes, one process each
    local t0 t1 i; t0=$(now)
    for ((i = 0; i < N_RUN; i++)); do GIT_DIR="$2" "$1" messages publish t --data "{\"i\":$i}" > /dev/null; done
    t1=$(now); elapsed "$t0" "$t1"
  }
  cli_enqueue() {
    local t0 t1 i; t0=$(now)
    for ((i = 0; i < N_RUN; i++)); do GIT_DIR="$2" "$1" jobs enqueue --no-checkout -- true > /dev/null; done
    t1=$(now); elapsed "$t0" "$t1"
  }
  for k in 1 2 3 4 5; do
    # Which binary goes first alternates, so neither always runs on the disk the other
    # just filled.
    local order="old new"; [ $((k % 2)) -eq 0 ] && order="new old"
    for side in $order; do
      if [ "$side" = old ]; then gg=$OG; gd=$OD; else gg=$GG; gd="$BIN/gatosd"; fi
      r="$WORK/svc-$side.git"; newrepo "$r"; GIT_DIR="$r" "$gg" init --quiet > /dev/null
      git -C "$r" config gatos.maintenance.auto false; settle
      runs[publish_$side]+="$(cli_publish "$gg" "$r") "
      settle
      runs[enqueue_$side]+="$(cli_enqueue "$gg" "$r") "
      "$GB" enqueue "$r" "$N_LIST" > /dev/null
      t0=$(now); GIT_DIR="$r" "$gg" jobs ls --json > /dev/null; t1=$(now)
      runs[ls_first_$side]+="$(elapsed "$t0" "$t1") "
      t0=$(now); GIT_DIR="$r" "$gg" jobs ls --json > /dev/null; t1=$(now)
      runs[ls_$side]+="$(elapsed "$t0" "$t1") "
      r="$WORK/svcd-$side.git"; newrepo "$r"; git -C "$r" config gatos.maintenance.auto false
      "$gd" --repo "$r" --socket "$WORK/svc.sock" 2> "$WORK/gatosd-svc.log" &
      pid=$!
      for _ in $(seq 1 200); do [ -S "$WORK/svc.sock" ] && break; sleep 0.05; done
      settle
      runs[rpc_$side]+="$(field "$("$GBC" rpc "$WORK/svc.sock" t 2000 1 "$r/gatos/gatosd/token")" seconds) "
      kill -TERM "$pid"; wait "$pid" || true; rm -f "$WORK/svc.sock"
    done
  done
  local w o n json="{"
  for w in publish enqueue ls_first ls rpc; do
    # shellcheck disable=SC2086
    o=$(python3 -c "import sys,statistics; print(statistics.median(float(x) for x in sys.argv[1:]))" ${runs[${w}_old]})
    # shellcheck disable=SC2086
    n=$(python3 -c "import sys,statistics; print(statistics.median(float(x) for x in sys.argv[1:]))" ${runs[${w}_new]})
    line "$w: $SVC_BASE_REV ${o}s, this tree ${n}s" "$(ratio "$n" "$o")x the time (target <= 1.10x)"
    json+="\"$w\": {\"old_seconds\": $o, \"new_seconds\": $n, \"old_runs\": \"${runs[${w}_old]}\", \"new_runs\": \"${runs[${w}_new]}\"},"
  done
  json+="\"base_rev\": \"$SVC_BASE_REV\", \"n_run\": $N_RUN, \"n_list\": $N_LIST}"
  record service "$json"
}

case "$what" in
  service) bench_service ;;
  isolation) bench_isolation ;;
  messages) bench_messages ;;
  daemon) bench_daemon ;;
  jobs) bench_jobs ;;
  sync) bench_sync ;;
  export) bench_export ;;
  gatosd-flood) bench_gatosd_flood ;;
  http) bench_http ;;
  mcp) bench_mcp ;;
  graphql) . "$here/scripts/bench_graphql.sh"; bench_graphql ;;
  snapshot) . "$here/scripts/bench_graphql.sh"; bench_snapshot ;;
  peers) . "$here/scripts/bench_peers.sh"; bench_peers ;;
  dashboard) . "$here/scripts/bench_dashboard.sh"; bench_dashboard ;;
  all) bench_messages; bench_daemon; bench_jobs; bench_isolation; bench_service; bench_sync; bench_export; bench_gatosd_flood; bench_http; bench_mcp ;;
  *) echo "unknown benchmark set: $what" >&2; exit 2 ;;
esac
echo "results: $results"
