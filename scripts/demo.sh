#!/usr/bin/env bash
# Builds gatos and runs the end-to-end walk-through on a throw-away repository.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --bins --quiet
exec demos/quickstart.sh
