#!/usr/bin/env bash
# The job plane in depth: manifests and the registry, secrets, routing, retries, cancel,
# timeouts, proofs (checked by gatos, by hand, and by Python's cryptography when present),
# keys, and archiving.
source "$(dirname "$0")/lib.sh"

run git init -q "$demo_dir/repo"
cd "$demo_dir/repo"
run git gatos init > /dev/null

say "A manifest in YAML, registered by name (versions 1, 2, ...)"
cat > build.yaml <<'YAML'
command: [sh, -c]
args: ['echo "building with token $REGISTRY_TOKEN"; mkdir -p dist; echo artifact > dist/app.txt']
timeout: 2m
queue: build
capabilities: [linux]
env:
  REGISTRY_TOKEN: secret://REGISTRY_TOKEN
outputs: [dist/app.txt]
YAML
run git gatos manifests put build build.yaml
run git gatos manifests put build build.yaml          # the same document: unchanged
run git gatos manifests get build --json

say "Raw secrets are refused, naming the field and never the value"
expect_failure "the secret scanner refuses a raw token" 'error[SecretDetected]' \
  git gatos jobs enqueue --env GITHUB_TOKEN=ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789 -- deploy

say "Run from the registry; only a worker that can resolve the secret claims it"
run git gatos manifests run build
run git gatos worker --drain --queue build --cap linux     # no secret: claims nothing
echo "REGISTRY_TOKEN=s3cr3t-demo-value" > "$demo_dir/secrets.env"
run git gatos worker --drain --queue build --cap linux --secrets "$demo_dir/secrets.env"
id=$(git gatos jobs ls --queue build --json | sed -E 's/.*"id":"([^"]+)".*/\1/' | head -n 1)
run git cat-file blob "refs/gatos/jobs/$id/result:logs/stdout"   # the value is redacted
run git cat-file blob "refs/gatos/jobs/$id/result:outputs/dist/app.txt"

say "Retries with backoff, a timeout, a cancel"
run git gatos jobs config default --backoff-base 1s --backoff-max 2s
run git gatos jobs enqueue --max-attempts 3 -- sh -c 'echo "attempt $GATOS_ATTEMPT"; [ "$GATOS_ATTEMPT" = 3 ]'
run git gatos jobs enqueue --timeout 1s --max-attempts 1 -- sleep 30
cancel=$(git gatos jobs enqueue --json -- touch never-created | sed -E 's/.*"id":"([^"]+)".*/\1/')
run git gatos jobs cancel "$cancel" --reason "not needed"
run git gatos worker --drain --grace 1s
run git gatos jobs ls --all

say "Proofs: gatos verifies every digest, the signature, the key and its trust"
run git gatos jobs verify --all
key=$(git gatos keys show --json | sed -E 's/.*"key":"([^"]+)".*/\1/')
R="refs/gatos/jobs/$id/result"
say "...and by hand: the envelope, the files it covers, the claim it closes"
run git ls-tree -r --name-only "$R"
run git cat-file blob "$R:result.json"
run git log --format='%s%n%(trailers)' -1 "$R^2"
if python3 -c 'import cryptography' 2>/dev/null; then
  run python3 "$root/scripts/verify_poe.py" --key "$key" "$R"
else
  say "(install Python's cryptography to check it without gatos: scripts/verify_poe.py)"
fi

say "Keys: trust is local; a revoked (compromised) key's proofs no longer verify"
run git gatos keys ls
run git gatos keys revoke "$key" --reason compromised --since 2000-01-01T00:00:00Z
expect_failure "the key is revoked as compromised: its proof no longer verifies" \
  'error[KeyRevoked]' git gatos jobs verify "$id"
run git gatos keys init --rotate

say "Archive finished jobs out of refs/gatos/jobs/ (normally after 7 days)"
run git gatos maintenance --archive-jobs --older-than 0s
run git for-each-ref --count 3 refs/gatos/jobs/ refs/gatos/archive/
run git gatos jobs show "$id"
run git fsck --strict --no-dangling
say "done"
