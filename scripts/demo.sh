#!/usr/bin/env bash
# Builds gatos and runs the end-to-end walk-through on a throw-away repository.
set -euo pipefail
cd "$(dirname "$0")/.."
# cargo shows its progress (a bar on a terminal, a line per crate otherwise): the first
# build compiles a few hundred crates.
echo "building gatos (the first build takes a few minutes)..."
cargo build --bins
printf '\nbuilt; the walk-through starts (demos/quickstart.sh)\n'
exec demos/quickstart.sh
