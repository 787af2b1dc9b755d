#!/usr/bin/env bash
# The message plane, step by step: publish, read, follow, consume, rotate, prune — and
# what it all looks like to plain git.
source "$(dirname "$0")/lib.sh"

say "A fresh repository, prepared for gatos (node id, identity, signing key)"
run git init -q "$demo_dir/repo"
cd "$demo_dir/repo"
run git gatos init

say "Publish: one message per call, or many with --batch (JSONL, one payload per line)"
run git gatos messages publish ci.events --data '{"build": 1, "status": "green"}'
run git gatos messages publish ci.events --data '{"build": 2, "status": "red"}' --msg-id build-2
say "A retry with the same --msg-id returns the first message (duplicate)"
run git gatos messages publish ci.events --data '{"build": 2, "status": "red"}' --msg-id build-2
for i in $(seq 3 12); do echo "{\"build\": $i, \"status\": \"green\"}"; done > "$demo_dir/builds.jsonl"
run git gatos messages publish ci.events --batch "$demo_dir/builds.jsonl" --quiet > /dev/null

say "Read from the start, or after a cursor (a ULID or a position)"
run git gatos messages read ci.events --limit 3
run git gatos messages read ci.events --since-seq 10 --json

say "Consumer groups: print a page, then advance the checkpoint (at-least-once)"
run git gatos messages consume dashboard ci.events --limit 4
run git gatos messages checkpoint get dashboard ci.events

say "Follow: a reader waits and prints new messages, whoever writes them"
git gatos messages read ci.events --follow --limit 1 > "$demo_dir/followed" &
follower=$!
# The follower starts at the end; publish until it has printed one message.
for _ in $(seq 1 100); do
  git gatos messages publish ci.events --data '{"build": 99, "status": "green"}' > /dev/null
  [ -s "$demo_dir/followed" ] && break
  sleep 0.1
done
wait "$follower"
run cat "$demo_dir/followed"

say "Segments rotate at the topic's limits (small here to show it)"
run git gatos messages config ci.events --max-messages 5 --retain-messages 5
for i in $(seq 100 110); do git gatos messages publish ci.events --data "{\"build\": $i}" > /dev/null; done
run git gatos messages topics
run git for-each-ref --format='%(refname)' refs/gatos/messages/ci.events/

say "Prune refuses to drop what a consumer group has not read..."
expect_failure "prune refuses while the group dashboard is behind" \
  "consumer group 'dashboard' (at seq 4) has not consumed" git gatos messages prune ci.events
run git gatos messages consume dashboard ci.events --limit 100 > /dev/null
say "...and once it has, drops old sealed segments behind a summary"
run git gatos messages prune ci.events
run git gatos messages read ci.events --since-seq 1 --limit 2 2> "$demo_dir/gap"
[ -n "${GATOS_DEMO_QUIET:-}" ] || cat "$demo_dir/gap"

say "Everything is plain git: commits with trailers, canonical JSON envelopes"
run git log -1 --format='%B' refs/gatos/messages/ci.events/head
run git cat-file -p refs/gatos/messages/ci.events/head:message/envelope.json
echo
run git fsck --strict --no-dangling
say "done"
