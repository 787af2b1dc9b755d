#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

step() { printf '\n== %s\n' "$*"; }

# What the independent checks need besides Rust and git: the sqlite3 tool (or Python's
# sqlite3 module) and the Python packages of scripts/requirements.txt. Missing packages are installed into target/pyenv
# (a virtual environment, put first on PATH for the tests); what cannot be installed
# stops the run here, in one line, with the command that installs it.
step "prerequisites"
command -v python3 > /dev/null \
  || { echo "missing: python3 (Debian: apt-get install python3 python3-venv)" >&2; exit 1; }
# The HTTP face's tests drive a live gatosd with the curl binary (and Python requests).
command -v curl > /dev/null \
  || { echo "missing: curl, the HTTP tests' client (Debian: apt-get install curl)" >&2; exit 1; }
# The export tests read exports back with the sqlite3 shell; where it is missing, Python's
# own sqlite3 module stands in for the two forms they use (scripts/sqlite3_shim.py).
if ! command -v sqlite3 > /dev/null; then
  python3 -c 'import sqlite3' 2> /dev/null \
    || { echo "missing: the sqlite3 tool, or Python's sqlite3 module, to read exports back (Debian: apt-get install sqlite3)" >&2; exit 1; }
  mkdir -p target/tools
  ln -sf ../../scripts/sqlite3_shim.py target/tools/sqlite3
  export PATH="$PWD/target/tools:$PATH"
  echo "no sqlite3 tool: using Python's sqlite3 module through scripts/sqlite3_shim.py"
fi
py_missing() { "$1" -c '
import importlib.util, sys
need = ["cryptography", "pyarrow", "blake3", "requests", "openapi_spec_validator", "prometheus_client", "mcp", "schemathesis", "selenium", "graphql"]
print(" ".join(m for m in need if importlib.util.find_spec(m) is None))'; }
missing=$(py_missing python3)
if [ -n "$missing" ]; then
  venv=target/pyenv
  if [ ! -x "$venv/bin/python3" ] || [ -n "$(py_missing "$venv/bin/python3")" ]; then
    echo "python3 lacks: $missing; installing scripts/requirements.txt into $venv"
    { python3 -m venv "$venv" && "$venv/bin/python3" -m pip install -q -r scripts/requirements.txt; } \
      || { echo "missing: Python packages $missing, and they could not be installed into $venv (needs python3-venv and network): run python3 -m pip install -r scripts/requirements.txt" >&2; exit 1; }
  fi
  export PATH="$PWD/$venv/bin:$PATH"
fi
# The dashboard's browser tests drive headless Chromium (Debian chromium and
# chromium-driver); installed here when missing and possible (root with apt-get), else
# those tests skip with a line saying so (and fail under CI=true).
if { ! command -v chromium > /dev/null || ! command -v chromedriver > /dev/null; } \
   && command -v apt-get > /dev/null && [ "$(id -u)" = 0 ]; then
  echo "installing chromium and chromium-driver for the dashboard's browser tests"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver > /dev/null) \
    || echo "warning: could not install chromium/chromium-driver; the dashboard's browser tests will not run" >&2
fi
# The crash tests (tests/e2e/crash.rs, scripts/crash_check.py) record gatos with strace;
# installed here when missing and possible, else they skip with a line (fail under CI=true).
if ! command -v strace > /dev/null && command -v apt-get > /dev/null && [ "$(id -u)" = 0 ]; then
  echo "installing strace for the crash tests"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace > /dev/null) \
    || echo "warning: could not install strace; the crash tests will not run" >&2
fi
echo "python3: $(command -v python3); sqlite3: $(command -v sqlite3); chromium: $(command -v chromium || echo none); strace: $(command -v strace || echo none)"

step "format"
cargo fmt --all -- --check
step "build (binaries first: the cross-process tests run them)"
cargo build --workspace --bins --locked
step "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "crate boundaries"
scripts/check-boundaries.sh
step "tests"
cargo test --workspace --locked
step "independent proof check (scripts/verify_poe.py, Python cryptography)"
scripts/check-verify-poe.sh
step "demos (smoke tests)"
for demo in demos/*.sh; do
  echo "-- $demo"
  GATOS_DEMO_QUIET=1 "$demo" > /dev/null
done
echo
echo "all checks passed"
