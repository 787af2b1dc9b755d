# Shared by the demos: a throw-away repository and the workspace binaries on PATH.
# shellcheck shell=bash
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
profile=${GATOS_PROFILE:-debug}
# GATOS_BIN_DIR: binaries built elsewhere (the tests' own); else this checkout's, built now
# if missing.
bin_dir=${GATOS_BIN_DIR:-$root/target/$profile}
if [ -z "${GATOS_BIN_DIR:-}" ] && [ ! -x "$bin_dir/git-gatos" ]; then
  # cargo shows its progress on stderr: the first build takes a few minutes.
  echo "building gatos ($profile; the first build takes a few minutes)..." >&2
  if [ "$profile" = release ]; then cargo build --release --bins --manifest-path "$root/Cargo.toml"
  else cargo build --bins --manifest-path "$root/Cargo.toml"; fi
fi
export PATH="$bin_dir:$PATH"
# Hermetic: the demo never reads or writes your own git configuration.
demo_dir=$(mktemp -d "${TMPDIR:-/tmp}/gatos-demo.XXXXXX")
trap 'rm -rf "$demo_dir"' EXIT
export HOME="$demo_dir/home" GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
mkdir -p "$HOME"
say() { [ -n "${GATOS_DEMO_QUIET:-}" ] || printf '\n\033[1m# %s\033[0m\n' "$*"; }
quote() { # prints an argument as you would type it
  if [[ "$1" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then printf ' %s' "$1"
  else printf " '%s'" "${1//\'/\'\\\'\'}"; fi
}
run() {
  # The command line goes to stderr, so `x=$(run …)` captures only the command's output.
  if [ -z "${GATOS_DEMO_QUIET:-}" ]; then
    { printf '$'; for a in "$@"; do quote "$a"; done; printf '\n'; } >&2
    "$@"
    return
  fi
  # Quiet (scripts/test.sh): a command's notes on stderr (a worker's start-up line, hints)
  # are shown only if it fails, with the command line.
  local rc=0
  "$@" 2> "$demo_dir/stderr" || rc=$?
  if [ "$rc" -ne 0 ]; then
    { printf 'failed ($?=%s):' "$rc"; for a in "$@"; do quote "$a"; done; printf '\n'; cat "$demo_dir/stderr"; } >&2
  fi
  return "$rc"
}
# Runs a command that must fail (exit 1) and print WANT. The demo says first that the failure
# is expected, then shows what it printed; under GATOS_DEMO_QUIET (scripts/test.sh) nothing
# is shown, so a passing run prints no error. Anything else ends the demo.
expect_failure() { # expect_failure WHY WANT CMD...
  local why=$1 want=$2 out status=0
  shift 2
  if [ -z "${GATOS_DEMO_QUIET:-}" ]; then { printf '$'; for a in "$@"; do quote "$a"; done; printf '\n'; } >&2; fi
  out=$("$@" 2>&1) || status=$?
  if [ -z "${GATOS_DEMO_QUIET:-}" ]; then
    printf 'expected: %s\n' "$why"
    printf '%s\n' "$out"
  fi
  if [ "$status" != 1 ] || [[ "$out" != *"$want"* ]]; then
    echo "demo failed: expected exit 1 and \"$want\", got exit $status: $out" >&2
    exit 1
  fi
}
