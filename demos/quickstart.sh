#!/usr/bin/env bash
# The main path end to end on a throw-away repository: messages (publish, read, consume),
# jobs (enqueue, a worker runs them, each result carries a signed proof) and verification.
source "$(dirname "$0")/lib.sh"

say "Prepare a repository"
run git init -q "$demo_dir/repo"
cd "$demo_dir/repo"
run git gatos init

say "Messages: publish, read, consume"
run git gatos messages publish deploys --data '{"service": "api", "version": "1.4.2"}'
run git gatos messages publish deploys --data '{"service": "web", "version": "2.0.0"}'
run git gatos messages read deploys --json
run git gatos messages consume auditors deploys
run git gatos messages checkpoint get auditors deploys

say "Jobs: enqueue two, let a worker drain the queue"
id=$(run git gatos jobs enqueue --json -- sh -c 'echo "building in $PWD"; echo "job $GATOS_JOB attempt $GATOS_ATTEMPT"' \
  | sed -E 's/.*"id":"([^"]+)".*/\1/')
[ -n "${GATOS_DEMO_QUIET:-}" ] || echo "enqueued $id"
run git gatos jobs enqueue --max-attempts 2 -- sh -c 'echo "flaky test" >&2; exit 1'
run git gatos jobs ls
run git gatos worker --drain
run git gatos jobs ls

say "Every result carries a signed proof of execution; verify them"
run git gatos jobs show "$id"
run git gatos jobs verify --all
run git cat-file blob "refs/gatos/jobs/$id/result:logs/stdout"

say "Every transition is an event on gatos.jobs"
run git gatos messages read gatos.jobs

say "It is all in git"
run git log --oneline refs/gatos/messages/deploys/head
run git log --oneline "refs/gatos/jobs/$id/claim"
run git fsck --strict --no-dangling
say "done"
