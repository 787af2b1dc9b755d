#!/usr/bin/env bash
# Runs sections of scripts/bench.sh for an older build and for this tree, interleaved in
# the same run, and compares every figure they record (issue #21 point 7: every figure
# within 10% of the older build, or better).
#
#   scripts/bench_compare.sh REV SECTION...     e.g. scripts/bench_compare.sh 65309ac jobs daemon
#
# REV is built once, in a worktree under target/compare/ with its own target directory
# (GATOS_BASE_BIN=dir uses binaries built elsewhere instead). Each section runs ROUNDS
# times per build (default 2), in the order old, new, new, old, ... so that a drift of the
# machine during the run falls on both. Both builds run this tree's scripts/bench.sh, and
# the clients that drive gatosd are this tree's (GATOS_BIN_DIR, scripts/bench.sh): the
# builds differ only in what is measured. The sizes are bench.sh's (its N_* variables).
#
# A section that fails for a build stops the run, unless KEEP_GOING=1: then the section is
# left out of the comparison (the report names it, with the failing build's error line),
# the next one runs, and the script exits 1 at the end. For sections an older build cannot
# run (its binaries lack a command the section calls).
#
# Results: target/compare/<section>/{old,new}.<k>.json and the table printed at the end
# (also target/compare/report.txt): per figure, the median of each build, new/old, and
# "WORSE" where the new build is more than 10% worse in the figure's direction (rates:
# higher is better; seconds, latencies and sizes: lower is better).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -lt 2 ]; then
  echo "usage: scripts/bench_compare.sh REV SECTION..." >&2
  exit 2
fi
rev=$1
shift
ROUNDS=${ROUNDS:-2}
KEEP_GOING=${KEEP_GOING:-0}
out="$here/target/compare"
mkdir -p "$out"
if [ -n "${GATOS_BASE_BIN:-}" ]; then
  old_bin=$GATOS_BASE_BIN
else
  short=$(git -C "$here" rev-parse --short "$rev^{commit}")
  tree="$out/$short"
  if [ ! -d "$tree" ]; then
    git -C "$here" worktree add --detach "$tree" "$short" > /dev/null
  fi
  echo "building $short in $tree (once)" >&2
  (cd "$tree" && cargo build --release --quiet -p git-gatos -p gatos-bench -p gatosd)
  old_bin="$tree/target/release"
fi
for b in git-gatos gatos-bench gatosd; do
  [ -x "$old_bin/$b" ] || { echo "no $old_bin/$b" >&2; exit 2; }
done
# This tree's build (bench.sh would build it too; once here keeps the rounds even).
(cd "$here" && cargo build --release --quiet -p git-gatos -p gatos-bench -p gatosd)

run_side() { # run_side SECTION SIDE K
  local dest="$out/$1/$2.$3.json" log="$out/$1/$2.$3.log"
  echo "$(date -u +%H:%M:%S) $1: $2 build, round $3" >&2
  local vars=()
  [ "$2" = old ] && vars+=(GATOS_BIN_DIR="$old_bin")
  [ "$keep" = 1 ] && vars+=(GATOS_BENCH_KEEP=1)
  if ! env "${vars[@]}" GATOS_BENCH_DIR="$work" GATOS_BENCH_OUT="$out/$1/$2.$3" \
    "$here/scripts/bench.sh" "$1" > "$log" 2>&1; then
    echo "bench_compare: scripts/bench.sh $1 failed for the $2 build (round $3); its last lines (all of them in $log):" >&2
    tail -n 5 "$log" >&2
    [ "$KEEP_GOING" = 1 ] || exit 1
    local why
    why=$(grep -m 1 -E '^(error|bench:)' "$log" || tail -n 1 "$log")
    printf 'the %s build failed in round %s: %s\n' "$2" "$3" "$why" > "$out/$1/failed"
    return 1
  fi
  mv "$out/$1/$2.$3/results.json" "$dest"
  rm -rf "${out:?}/$1/$2.$3"
}

# On a disk, every run's repositories stay until the end: on ext4 without a journal, files
# created soon after many deletions are slower to create (scripts/bench.sh,
# docs/PERFORMANCE.md), and a run right after another's clean-up would pay for it. On a
# tmpfs (GATOS_BENCH_DIR=/dev/shm) there is no such cost, and keeping them would fill
# memory: each run removes its own.
work=$(mktemp -d "${GATOS_BENCH_DIR:-/tmp}/gatos-compare.XXXXXX")
trap 'rm -rf "$work"' EXIT
keep=1
[ "$(stat -f -c %T "$work")" = tmpfs ] && keep=0

for section in "$@"; do
  rm -rf "${out:?}/$section"
  mkdir -p "$out/$section"
  for ((k = 1; k <= ROUNDS; k++)); do
    if ((k % 2)); then
      run_side "$section" old "$k" && run_side "$section" new "$k" || break
    else
      run_side "$section" new "$k" && run_side "$section" old "$k" || break
    fi
  done
done

python3 - "$out" "$@" <<'PY' | tee "$out/report.txt"
import json, re, statistics, sys
from pathlib import Path

out, sections = Path(sys.argv[1]), sys.argv[2:]
LOWER = re.compile(r"(second|_s$|_us|_ms|latenc|p50|p99|rss|kib|bytes|_mb|mb_|size|startup|elapsed)", re.I)
HIGHER = re.compile(r"(rate|per_s|throughput|msgs_s|jobs_s)", re.I)

def leaves(v, path=""):
    if isinstance(v, bool):
        return
    if isinstance(v, (int, float)):
        yield path, float(v)
    elif isinstance(v, dict):
        for k, x in v.items():
            yield from leaves(x, f"{path}.{k}" if path else k)
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from leaves(x, f"{path}[{i}]")

worse = 0
failed = 0
for section in sections:
    if (out / section / "failed").exists():
        failed += 1
        print(f"\n## {section}: not compared: {(out / section / 'failed').read_text().strip()}")
        continue
    sides = {"old": {}, "new": {}}
    for side in sides:
        for f in sorted((out / section).glob(f"{side}.*.json")):
            for k, x in leaves(json.loads(f.read_text())):
                sides[side].setdefault(k, []).append(x)
    print(f"\n## {section}: median of {len(list((out / section).glob('new.*.json')))} rounds per build")
    print(f"{'figure':64} {'old':>14} {'new':>14} {'new/old':>8}")
    for key in sorted(set(sides["old"]) & set(sides["new"])):
        o, n = statistics.median(sides["old"][key]), statistics.median(sides["new"][key])
        if "[" in key:
            continue  # the single runs behind a median the run records too
        last = key.rsplit(".", 1)[-1]
        lower = bool(LOWER.search(last) or "memory" in key) and not HIGHER.search(last)
        higher = bool(HIGHER.search(last))
        if o == n and not (lower or higher):
            continue  # a size or a count of the run, the same on both sides
        r = n / o if o else float("inf")
        mark = ""
        if "baseline" in last or key.startswith(("shell", "fast_import")):
            mark = "(baseline)"  # git or the shell, measured beside gatos: not gatos's figure
        elif higher and r < 0.9:
            mark = "WORSE"
        elif lower and r > 1 / 0.9:
            mark = "WORSE"
        worse += mark == "WORSE"
        print(f"{key[:64]:64} {o:14.4g} {n:14.4g} {r:8.3f} {mark}")
    only = sorted(set(sides["new"]) - set(sides["old"]))
    if only:
        print(f"(only the new build records: {', '.join(only[:12])}{' ...' if len(only) > 12 else ''})")
print(f"\n{worse} figure(s) more than 10% worse in the new build")
if failed:
    print(f"{failed} section(s) not compared")
    sys.exit(1)
PY
