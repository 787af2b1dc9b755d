#!/usr/bin/env bash
# Two nodes and a hub on one machine: the nodes trust each other's keys, diverged topics
# converge, a consumer group misses nothing, checkpoints travel, workers on both nodes share
# a queue through the hub, proofs verify on both nodes, and a job forged at the hub is
# rejected.
source "$(dirname "$0")/lib.sh"

run git init -q --bare "$demo_dir/hub.git"
for n in alice bob; do
  run git init -q "$demo_dir/$n"
  (cd "$demo_dir/$n" && run git gatos init > /dev/null && run git remote add origin "$demo_dir/hub.git")
done
alice() { (cd "$demo_dir/alice" && run git gatos "$@"); }
bob() { (cd "$demo_dir/bob" && run git gatos "$@"); }
key_of() { (cd "$demo_dir/$1" && git gatos keys show --json | sed -E 's/.*"key":"([^"]+)".*/\1/'); }

say "Each node trusts the other's key once: jobs, and proofs, count only from trusted keys"
alice keys trust "$(key_of bob)"
bob keys trust "$(key_of alice)"

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
(cd "$demo_dir/alice" && git gatos worker --remote origin --drain --id alice-w > "$demo_dir/alice.rows" 2> "$demo_dir/alice.err") &
alice_w=$!
(cd "$demo_dir/bob" && git gatos worker --remote origin --drain --id bob-w > "$demo_dir/bob.rows" 2> "$demo_dir/bob.err") &
bob_w=$!
rc=0; wait "$alice_w" || rc=$?; wait "$bob_w" || rc=$?
# Their notes (start-up lines) are shown after both ended, not interleaved; always on failure.
if [ "$rc" -ne 0 ] || [ -z "${GATOS_DEMO_QUIET:-}" ]; then cat "$demo_dir/alice.err" "$demo_dir/bob.err" >&2; fi
[ "$rc" -eq 0 ] || { echo "a worker failed (exit $rc)" >&2; exit "$rc"; }
echo "alice ran $(wc -l < "$demo_dir/alice.rows") job(s), bob ran $(wc -l < "$demo_dir/bob.rows"); every result is at the hub:"
run git --git-dir="$demo_dir/hub.git" for-each-ref --format='%(refname)' 'refs/gatos/jobs/*/result' | wc -l

say "After a sync, each node verifies every proof, whichever node ran the job"
alice sync > /dev/null
bob sync > /dev/null
alice sync > /dev/null
for n in alice bob; do
  (cd "$demo_dir/$n" && run git gatos jobs verify --all | tail -n 1)
done

say "A job that bob's key did not sign, forged at the hub, is rejected by alice's sync"
forged=$(git -c user.name=mallory -c user.email=m@example.invalid --git-dir="$demo_dir/hub.git" commit-tree "$(git --git-dir="$demo_dir/hub.git" mktree < /dev/null)" \
  -m "job" -m "Gatos-Kind: job
Job: 01KBQ000000000000000000F0G")
git --git-dir="$demo_dir/hub.git" update-ref refs/gatos/jobs/01KBQ000000000000000000F0G/job "$forged"
alice sync || true
git --git-dir="$demo_dir/hub.git" update-ref -d refs/gatos/jobs/01KBQ000000000000000000F0G/job

say "alice's log of the refs her syncs rejected, newest first, without syncing (sync.rejections)"
alice sync --rejected
alice sync --rejected --json | grep -q '"ref":"refs/gatos/jobs/01KBQ000000000000000000F0G/job"' \
  || { echo "demo failed: the rejected ref is not in alice's log" >&2; exit 1; }

say "The sync report, for machines"
bob sync --json
