#!/usr/bin/env bash
# Runs the cargo-fuzz targets for a bounded time each (default 60 s). Needs cargo-fuzz
# (`cargo install cargo-fuzz`) and a toolchain that accepts -Zsanitizer (nightly, or
# RUSTC_BOOTSTRAP=1). The same properties run as proptests in the test suite.
set -euo pipefail
cd "$(dirname "$0")/../crates/gatos-rpc"
secs=${1:-60}
for target in jsonl_frames rpc_request; do
  RUSTC_BOOTSTRAP=${RUSTC_BOOTSTRAP:-1} cargo fuzz run "$target" -- -max_total_time="$secs" -max_len=65536
done
