#!/usr/bin/env bash
# Enforces the crate boundaries of ADR 0002: gix only under gatos-store, tokio only under
# gatosd (and test helpers), clap only under git-gatos.
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
check tokio gatosd gatos-testutil gatos-e2e
check clap git-gatos
[ $fail -eq 0 ] && echo "crate boundaries hold"
exit $fail
