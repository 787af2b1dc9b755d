#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

step() { printf '\n== %s\n' "$*"; }

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
