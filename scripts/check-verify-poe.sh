#!/usr/bin/env bash
# Checks scripts/verify_poe.py, the independent proof verifier, against a real repository:
# a stored proof verifies; a tampered log, and another key, do not.
# Needs python3 with the `cryptography` package (scripts/test.sh installs it).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if ! python3 -c 'import cryptography.hazmat.primitives.asymmetric.ed25519' 2>/dev/null; then
  # A check that cannot run is a failure, never a skip (scripts/test.sh installs it first).
  echo "missing: python3 with the cryptography package" \
       "(python3 -m pip install -r scripts/requirements.txt, or apt-get install python3-cryptography)" >&2
  exit 1
fi
export PATH="$root/target/debug:$PATH"
work=$(mktemp -d "${TMPDIR:-/tmp}/gatos-poe.XXXXXX")
trap 'rm -rf "$work"' EXIT
export HOME="$work/home" GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
export GIT_AUTHOR_NAME=check GIT_AUTHOR_EMAIL=check@localhost GIT_COMMITTER_NAME=check GIT_COMMITTER_EMAIL=check@localhost
mkdir -p "$HOME"
git init -q "$work/repo" && cd "$work/repo"
git gatos init --quiet > /dev/null
id=$(git gatos jobs enqueue --json --output o.txt -- sh -c 'echo proof; echo x > o.txt' \
  | sed -E 's/.*"id":"([^"]+)".*/\1/')
git gatos worker --once --quiet > /dev/null
key=$(git gatos keys show --json | sed -E 's/.*"key":"([^"]+)".*/\1/')
R="refs/gatos/jobs/$id/result"
python3 "$root/scripts/verify_poe.py" --key "$key" "$R"

# Tamper with logs/stdout: same parents and message, another blob.
old=$(git rev-parse "$R")
export GIT_INDEX_FILE="$work/index"
git read-tree "$old"
blob=$(echo forged | git hash-object -w --stdin)
git update-index --cacheinfo "100644,$blob,logs/stdout"
tree=$(git write-tree)
new=$(git log -1 --format=%B "$old" | git commit-tree "$tree" -p "$old^1" -p "$old^2")
unset GIT_INDEX_FILE
git update-ref "$R" "$new" "$old"
if python3 "$root/scripts/verify_poe.py" --key "$key" "$R" 2> "$work/err"; then
  echo "verify_poe.py accepted a tampered log" >&2; exit 1
fi
grep -q "logs/stdout" "$work/err"
git update-ref "$R" "$old" "$new"
if python3 "$root/scripts/verify_poe.py" --key "ed25519:$(printf 'ab%.0s' {1..32})" "$R" 2> /dev/null; then
  echo "verify_poe.py accepted another key" >&2; exit 1
fi
echo "verify_poe.py: a stored proof verifies; a tampered log and another key are refused"
