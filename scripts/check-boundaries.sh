#!/usr/bin/env bash
# Enforces the crate boundaries of ADR 0002 and ADR 0025 (Boundary):
# - Cargo dependencies: gix only under gatos-store, tokio only under gatosd (and test
#   helpers and the benchmark driver), clap only under the two faces git-gatos and gatosd (ADR 0032), the HTTP stack
#   (axum, hyper, tower-http, tokio-rustls, governor) and async-graphql only under gatosd (ADR 0035,
#   0038, 0044);
# - source paths (a grep over non-test code, no build): gix named and git spawned only in
#   gatos-store; `gatos_store::` named only in gatos-store and gatos; `.store()` called
#   only inside the gatos crate; `refs/gatos` spelled only in gatos-store's refs/names.rs;
#   axum, hyper, tower_http, rustls, governor and async_graphql named only in gatosd's http module (src/http.rs,
#   src/http/); rmcp (the MCP SDK, ADR 0043) only under gatosd and named only in its mcp module
#   (src/mcp.rs, src/mcp/) and in the http module's /mcp (src/http/mcp.rs).
# Non-test code is crates/*/src/** up to a file's `#[cfg(test)]`, outside gatos-testutil.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
check() { # check DEP ALLOWED...
  local dep=$1; shift
  local users
  users=$(cargo tree --workspace --edges normal -i "$dep" --prefix none --format '{p}' 2>/dev/null \
    | awk '{print $1}' | grep -E '^(gatos|git-gatos)' | sort -u || true)
  for u in $users; do
    local ok=0
    for a in "$@"; do [ "$u" = "$a" ] && ok=1; done
    # Crates that reach the dependency only through an allowed crate are fine.
    if [ $ok -eq 0 ]; then
      if cargo tree -p "$u" --edges normal --depth 1 --prefix none --format '{p}' 2>/dev/null | awk '{print $1}' | grep -qx "$dep"; then
        echo "boundary violation: $u depends on $dep directly (allowed: $*)"
        fail=1
      fi
    fi
  done
}
check gix gatos-store
check gix-pack gatos-store
# gatos-bench drives the async clients of NATS and PostgreSQL for `scripts/bench.sh peers`
# (ADR 0046); it is a measuring tool, not part of the library.
check tokio gatosd gatos-testutil gatos-e2e gatos-bench
check clap git-gatos gatosd
check axum gatosd
check hyper gatosd
check tower-http gatosd
check tokio-rustls gatosd
check governor gatosd
check rmcp gatosd
check async-graphql gatosd

# Prints `file:line: text` for non-test, non-comment source lines matching a regex (ERE),
# in the crates given (directory names under crates/), minus excluded files.
code_lines() { # code_lines REGEX CRATE... [-- EXCLUDED_FILE...]
  local re=$1; shift
  local crates=() excluded=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do crates+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  excluded=("$@")
  local files
  files=$(for c in "${crates[@]}"; do find "crates/$c/src" -name '*.rs' 2>/dev/null; done | sort)
  for f in $files; do
    local skip=0
    for x in "${excluded[@]}"; do [ "$f" = "$x" ] && skip=1; done
    [ $skip -eq 1 ] && continue
    awk -v re="$re" -v f="$f" '
      /#\[cfg\(test\)\]/ { exit }
      /^[[:space:]]*\/\// { next }
      $0 ~ re { print f ":" FNR ": " $0 }' "$f"
  done
}
source_check() { # source_check WHAT LINES
  if [ -n "$2" ]; then
    echo "boundary violation: $1"
    echo "$2" | sed 's/^/  /'
    fail=1
  fi
}
all_crates=$(cd crates && for d in */; do d=${d%/}; [ "$d" = gatos-testutil ] || echo "$d"; done)
others() { for c in $all_crates; do
  local keep=1; for x in "$@"; do [ "$c" = "$x" ] && keep=0; done
  [ $keep -eq 1 ] && echo "$c"; done; }

# shellcheck disable=SC2046
source_check "gix named outside gatos-store" \
  "$(code_lines '(^|[^A-Za-z0-9_])gix(_[a-z_]+)?::' $(others gatos-store))"
# shellcheck disable=SC2046
source_check "git spawned outside gatos-store" \
  "$(code_lines 'Command::new\("git"\)|"GATOS_GIT"' $(others gatos-store))"
# shellcheck disable=SC2046
source_check "gatos_store:: named outside gatos-store and gatos (faces go through Gatos)" \
  "$(code_lines 'gatos_store::|use gatos_store' $(others gatos-store gatos))"
# shellcheck disable=SC2046
source_check ".store() called outside the gatos crate (Gatos::store is crate-private)" \
  "$(code_lines '\.store\(\)' $(others gatos gatos-store))"
# shellcheck disable=SC2046
source_check "refs/gatos spelled outside gatos-store's refs/names.rs" \
  "$(code_lines 'refs/gatos' $all_crates -- crates/gatos-store/src/refs/names.rs)"
http_module_lines() { # lines naming the HTTP stack in gatosd outside its http module
  local f
  for f in $(find crates/gatosd/src -name '*.rs' | sort); do
    case $f in crates/gatosd/src/http.rs | crates/gatosd/src/http/*) continue ;; esac
    awk -v f="$f" '
      /#\[cfg\(test\)\]/ { exit }
      /^[[:space:]]*\/\// { next }
      /(^|[^A-Za-z0-9_])(axum|hyper|hyper_util|tower_http|tokio_rustls|rustls|governor|async_graphql)::/ { print f ":" FNR ": " $0 }' "$f"
  done
}
# shellcheck disable=SC2046
source_check "axum, hyper, tower_http, rustls, governor or async_graphql named outside gatosd's http module" \
  "$(code_lines '(^|[^A-Za-z0-9_])(axum|hyper|hyper_util|tower_http|tokio_rustls|rustls|governor|async_graphql)::' $(others gatosd))$(http_module_lines)"
mcp_module_lines() { # lines naming rmcp in gatosd outside its mcp module
  local f
  for f in $(find crates/gatosd/src -name '*.rs' | sort); do
    case $f in crates/gatosd/src/mcp.rs | crates/gatosd/src/mcp/* | crates/gatosd/src/http/mcp.rs) continue ;; esac
    awk -v f="$f" '
      /#\[cfg\(test\)\]/ { exit }
      /^[[:space:]]*\/\// { next }
      /(^|[^A-Za-z0-9_])rmcp::/ { print f ":" FNR ": " $0 }' "$f"
  done
}
# shellcheck disable=SC2046
source_check "rmcp named outside gatosd's mcp module" \
  "$(code_lines '(^|[^A-Za-z0-9_])rmcp::' $(others gatosd))$(mcp_module_lines)"

# The gatos crate's top-level modules form no cycle through `crate::` paths (issue #15,
# point 3): a module's files name `crate::<other>` only down the layering, and what two
# modules share lives below both (e.g. `signing`, `messages::audit`). Edges come from
# non-test, non-comment lines of crates/gatos/src/<module>{.rs,/**}; `tsort` finds loops.
# The crate root (lib.rs, the `Gatos` handle) knows every plane and wires them, so it is
# not a node.
module_cycles_check() {
  local src=crates/gatos/src edges loops
  edges=$(find "$src" -name '*.rs' | sort | while read -r f; do
    local rel=${f#"$src"/} from
    from=${rel%%/*}; from=${from%.rs}
    case $from in lib | main) continue ;; esac
    awk -v from="$from" '
      /#\[cfg\(test\)\]/ { exit }
      /^[[:space:]]*\/\// { next }
      {
        line = $0
        sub(/\/\/.*/, "", line)
        while (match(line, /crate::[a-z_][a-z0-9_]*/)) {
          to = substr(line, RSTART + 7, RLENGTH - 7)
          if (to != from) print from, to
          line = substr(line, RSTART + RLENGTH)
        }
        if (match($0, /use crate::\{[^}]*\}/)) {
          n = split(substr($0, RSTART + 12, RLENGTH - 13), parts, ",")
          for (i = 1; i <= n; i++) {
            to = parts[i]; gsub(/^[[:space:]]+|[[:space:]]+$/, "", to); sub(/::.*/, "", to)
            if (to ~ /^[a-z_][a-z0-9_]*$/ && to != from) print from, to
          }
        }
      }' "$f"
  done | sort -u)
  loops=$(echo "$edges" | tsort 2>&1 >/dev/null | grep -v 'input contains a loop' | awk '!seen[$0]++' || true)
  if [ -n "$loops" ]; then
    echo "boundary violation: module cycle in the gatos crate (through crate:: paths)"
    echo "$loops" | sed 's/^tsort: /  /'
    echo "  edges: $(echo "$edges" | tr '\n' ';')"
    fail=1
  fi
}
module_cycles_check

[ $fail -eq 0 ] && echo "crate boundaries hold"
exit $fail
