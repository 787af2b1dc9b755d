#!/usr/bin/env bash
# Two nodes and a hub on one machine: diverged topics converge, a consumer group misses
# nothing, checkpoints travel, workers on both nodes share a queue through the hub, and
# proofs verify on both nodes once each trusts the other's key.
source "$(dirname "$0")/lib.sh"

run git init -q --bare "$demo_dir/hub.git"
for n in alice bob; do
  run git init -q "$demo_dir/$n"
  (cd "$demo_dir/$n" && run git gatos init > /dev/null && run git remote add origin "$demo_dir/hub.git")
done
alice() { (cd "$demo_dir/alice" && run git gatos "$@"); }
bob() { (cd "$demo_dir/bob" && run git gatos "$@"); }

say "Both nodes publish to the same topic while apart"
alice messages publish builds --data '{"from":"alice","n":1}' > /dev/null
alice messages publish builds --data '{"from":"alice","n":2}' > /dev/null
bob messages publish builds --data '{"from":"bob","n":1}' > /dev/null
bob messages consume ci builds       # bob's consumer group reads bob's message

say "alice syncs first; bob's message goes after hers (seq is provisional until at the hub)"
alice sync
bob sync
alice sync
alice messages read builds
bob messages read builds

say "bob's group was moved back to the fork point: it gets alice's messages and its own again"
bob messages consume ci builds
bob sync
alice sync
alice messages checkpoint get ci builds   # the checkpoint travelled

say "Jobs enqueued on alice, drained by workers on both nodes through the hub"
for i in 1 2 3 4 5 6; do
  (cd "$demo_dir/alice" && git gatos jobs enqueue --quiet -- sh -c "echo build $i" > /dev/null)
done
alice sync
bob sync
(cd "$demo_dir/alice" && git gatos worker --remote origin --drain --id alice-w > "$demo_dir/alice.rows") &
(cd "$demo_dir/bob" && git gatos worker --remote origin --drain --id bob-w > "$demo_dir/bob.rows") &
wait
echo "alice ran $(wc -l < "$demo_dir/alice.rows") job(s), bob ran $(wc -l < "$demo_dir/bob.rows"); every result is at the hub:"
run git --git-dir="$demo_dir/hub.git" for-each-ref --format='%(refname)' 'refs/gatos/jobs/*/result' | wc -l

say "After a sync, each node trusts the other's key and verifies every proof"
alice sync > /dev/null
bob sync > /dev/null
alice sync > /dev/null
for n in alice bob; do
  other=$(cd "$demo_dir/$n" && git gatos keys ls --json | grep '"trusted":false' | sed -E 's/.*"key":"([^"]+)".*/\1/')
  (cd "$demo_dir/$n" && run git gatos keys trust "$other" && run git gatos jobs verify --all | tail -n 1)
done

say "The sync report, for machines"
bob sync --json
