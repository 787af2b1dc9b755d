#!/usr/bin/env bash
# The main path end to end on a throw-away repository: init, publish, read, consume.
# (It grows as the job plane lands: enqueue, a worker, a signed proof, verify.)
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

say "It is all in git"
run git log --oneline refs/gatos/messages/deploys/head
run git fsck --strict --no-dangling
say "done"
