# Shared by the demos: a throw-away repository and the workspace binaries on PATH.
# shellcheck shell=bash
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
profile=${GATOS_PROFILE:-debug}
if [ ! -x "$root/target/$profile/git-gatos" ]; then
  echo "building gatos ($profile)..." >&2
  if [ "$profile" = release ]; then cargo build --release --bins --quiet --manifest-path "$root/Cargo.toml"
  else cargo build --bins --quiet --manifest-path "$root/Cargo.toml"; fi
fi
export PATH="$root/target/$profile:$PATH"
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
  if [ -z "${GATOS_DEMO_QUIET:-}" ]; then { printf '$'; for a in "$@"; do quote "$a"; done; printf '\n'; } >&2; fi
  "$@"
}
