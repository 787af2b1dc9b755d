# shellcheck shell=bash
# `scripts/bench.sh peers` (issue #21 point 6): gatos against the systems users would pick
# instead, on this machine, in one run: NATS JetStream, Redis streams and a PostgreSQL job
# table, each a Debian package started on loopback for the run and driven by its own Rust
# client (gatos-bench's `nats-*`, `redis-*`, `pg-*` workloads). Rounds are interleaved
# (every workload on every system, then the next round) and each figure is the median of
# 3 rounds. Sourced by scripts/bench.sh, whose helpers (newrepo, settle, record, ...) it uses.
#
# Sizes: N_PEER_PUB (2000) single publishes, N_PEER_PUB8 (2000) per client of eight,
# N_PEER_DURABLE (1000), N_PEER_BATCH (100000),
# N_PEER_ENQ (1000), N_PEER_CLAIM (1000), N_PEER_RUN (300) worker jobs, N_PEER_READ (100000).

# Installs what is missing when it can (root and apt-get), else says what to install.
peers_install() {
  local need=() pkg
  command -v nats-server > /dev/null || need+=(nats-server)
  command -v redis-server > /dev/null || need+=(redis-server)
  ls /usr/lib/postgresql/*/bin/initdb > /dev/null 2>&1 || need+=(postgresql)
  [ ${#need[@]} = 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    echo "installing ${need[*]} (Debian packages)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" > /dev/null) \
      || echo "could not install ${need[*]}" >&2
  fi
  for pkg in "${need[@]}"; do
    case $pkg in
      nats-server) command -v nats-server > /dev/null || echo "skip: NATS rows (nats-server missing; Debian: apt-get install nats-server)" ;;
      redis-server) command -v redis-server > /dev/null || echo "skip: Redis rows (redis-server missing; Debian: apt-get install redis-server)" ;;
      postgresql) ls /usr/lib/postgresql/*/bin/initdb > /dev/null 2>&1 || echo "skip: PostgreSQL rows (postgresql missing; Debian: apt-get install postgresql)" ;;
    esac
  done
}

# Waits up to 20 s for a TCP port on 127.0.0.1.
peers_wait_port() {
  local i
  for i in $(seq 1 400); do
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 0.2)" "$1" 2> /dev/null && return 0
    sleep 0.05
  done
  echo "bench: nothing listens on 127.0.0.1:$1" >&2
  return 1
}

PEER_PIDS=()
PG_DIR=""
PG_BIN=""
peers_stop() {
  local p
  for p in "${PEER_PIDS[@]}"; do kill -TERM "$p" 2> /dev/null || true; done
  for p in "${PEER_PIDS[@]}"; do wait "$p" 2> /dev/null || true; done
  PEER_PIDS=()
  if [ -n "$PG_DIR" ]; then
    pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop > /dev/null 2>&1 || true
    rm -rf "$PG_DIR"
    PG_DIR=""
  fi
}
# PostgreSQL refuses to run as root: as root, run its tools as the postgres user.
pg_as() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

NATS_URL="" REDIS_URL="" PG_INFO=""
peers_start() {
  trap 'peers_stop; rm -rf "$WORK"' EXIT
  if command -v nats-server > /dev/null; then
    mkdir -p "$WORK/nats"
    nats-server -js -sd "$WORK/nats" -a 127.0.0.1 -p 14222 > "$WORK/nats.log" 2>&1 &
    PEER_PIDS+=($!)
    peers_wait_port 14222 && NATS_URL=nats://127.0.0.1:14222
  fi
  if command -v redis-server > /dev/null; then
    mkdir -p "$WORK/redis"
    redis-server --port 16379 --bind 127.0.0.1 --dir "$WORK/redis" --save '' \
      --appendonly yes --appendfsync everysec --daemonize no > "$WORK/redis.log" 2>&1 &
    PEER_PIDS+=($!)
    peers_wait_port 16379 && REDIS_URL=redis://127.0.0.1:16379/
  fi
  PG_BIN=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb 2> /dev/null | sort -V | tail -1)" 2> /dev/null || true)
  if [ -n "$PG_BIN" ] && [ -x "$PG_BIN/initdb" ]; then
    # Outside $WORK (mode 700): the postgres user must reach it. Same file system.
    PG_DIR=$(mktemp -d "$BENCH_DIR/gatos-bench-pg.XXXXXX")
    mkdir -p "$PG_DIR/data" "$PG_DIR/sock"
    [ "$(id -u)" = 0 ] && chown -R postgres "$PG_DIR"
    pg_as "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U bench > "$WORK/pg-init.log" 2>&1
    pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/pg.log" -w \
      -o "-p 15432 -k $PG_DIR/sock -c listen_addresses=127.0.0.1" start > /dev/null
    PG_INFO="host=127.0.0.1 port=15432 user=bench dbname=postgres"
  fi
}

# peers_run KEY ROUND CMD...: runs one workload, records its JSON as peers.KEY.ROUND.
peers_run() {
  local key=$1 round=$2 out
  shift 2
  settle
  out=$("$@")
  record "peers.$key.$round" "$out"
}

# A gatosd on repository $1 with socket $2; its pid in GATOSD_PID.
peers_gatosd() {
  rm -f "$2"
  "$BIN/gatosd" --repo "$1" --socket "$2" 2> "$WORK/gatosd-peers.log" &
  GATOSD_PID=$!
  local i
  for i in $(seq 1 400); do [ -S "$2" ] && return 0; sleep 0.05; done
  echo "bench: gatosd did not start" >&2; return 1
}

peers_repo() { # a fresh repository with a node key, automatic maintenance off
  newrepo "$1"; git -C "$1" config gatos.maintenance.auto false
  GIT_DIR="$1" "$GG" init --quiet > /dev/null
}

bench_peers() {
  local n_pub=${N_PEER_PUB:-2000} n_dur=${N_PEER_DURABLE:-1000} n_batch=${N_PEER_BATCH:-100000}
  local n_enq=${N_PEER_ENQ:-1000} n_claim=${N_PEER_CLAIM:-1000} n_run=${N_PEER_RUN:-300}
  local n_read=${N_PEER_READ:-100000} k r s
  # Eight clients publish n_pub8 each (16,000 in all by default): at 250 each, as before
  # session 15, a round lasted about 0.1 s and its rate moved by half from round to round.
  local n_pub8=${N_PEER_PUB8:-2000}
  echo "== gatos against NATS JetStream, Redis and PostgreSQL (interleaved rounds, median of 3)"
  peers_install
  peers_start
  for k in 1 2 3; do
    echo "-- round $k"
    # Single publishes, acknowledged, one client.
    r="$WORK/p.git"; peers_repo "$r"
    peers_run gatos_publish "$k" "$GB" publish "$r" t "$n_pub"
    [ -n "$NATS_URL" ] && peers_run nats_publish "$k" "$GB" nats-publish "$NATS_URL" "$n_pub" 1
    [ -n "$REDIS_URL" ] && peers_run redis_publish "$k" "$GB" redis-xadd "$REDIS_URL" "$n_pub" 1 everysec
    # Through gatosd: one client, then eight.
    r="$WORK/d.git"; peers_repo "$r"; s="$WORK/p.sock"
    peers_gatosd "$r" "$s"
    peers_run gatosd_publish_1 "$k" "$GB" rpc "$s" t "$n_pub" 1 "$r/gatos/gatosd/token"
    peers_run gatosd_publish_8 "$k" "$GB" rpc "$s" t "$n_pub8" 8 "$r/gatos/gatosd/token"
    kill -TERM "$GATOSD_PID"; wait "$GATOSD_PID" || true
    [ -n "$NATS_URL" ] && peers_run nats_publish_8 "$k" "$GB" nats-publish "$NATS_URL" "$n_pub8" 8
    [ -n "$REDIS_URL" ] && peers_run redis_publish_8 "$k" "$GB" redis-xadd "$REDIS_URL" "$n_pub8" 8 everysec
    # Durable single publishes.
    r="$WORK/f.git"; peers_repo "$r"; git -C "$r" config gatos.fsync true
    peers_run gatos_durable "$k" "$GB" publish "$r" t "$n_dur"
    [ -n "$REDIS_URL" ] && peers_run redis_always "$k" "$GB" redis-xadd "$REDIS_URL" "$n_dur" 1 always
    # A batch.
    r="$WORK/b.git"; peers_repo "$r"
    peers_run gatos_batch "$k" "$GB" batch "$r" t "$n_batch" 1000
    [ -n "$NATS_URL" ] && peers_run nats_batch "$k" "$GB" nats-batch "$NATS_URL" "$n_batch"
    [ -n "$REDIS_URL" ] && peers_run redis_batch "$k" "$GB" redis-pipeline "$REDIS_URL" "$n_batch"
    # Enqueue.
    r="$WORK/e.git"; peers_repo "$r"
    peers_run gatos_enqueue "$k" "$GB" enqueue "$r" "$n_enq"
    [ -n "$PG_INFO" ] && peers_run pg_insert "$k" "$GB" pg-insert "$PG_INFO" "$n_enq"
    # Claim + complete with no process, through gatosd, 1 and 4 workers.
    local w
    for w in 1 4; do
      r="$WORK/c.git"; peers_repo "$r"; s="$WORK/c.sock"
      peers_gatosd "$r" "$s"
      peers_run "gatosd_claim_$w" "$k" "$GB" rpc-claim "$s" "$r/gatos/gatosd/token" "$r" "$n_claim" "$w"
      kill -TERM "$GATOSD_PID"; wait "$GATOSD_PID" || true
      [ -n "$PG_INFO" ] && peers_run "pg_claim_$w" "$k" "$GB" pg-claim "$PG_INFO" "$n_claim" "$w" none
      # The floor of the same work on the same disk: only the files a claim + complete
      # creates and renames, as loose objects and as a pack per action (gatos-bench
      # fsops claim, claim-pack), no gatos. A target above the better floor's ratio to the
      # peer cannot be met on this disk by anything that writes those files.
      # Moved aside, not removed (`discard`): an rm -rf of a floor's files made every file
      # the next rows created pay for them on a disk without a journal (bench.sh).
      peers_run "floor_claim_$w" "$k" "$GB" fsops "$WORK/floor" claim "$n_claim" "$w" 0
      discard "$WORK/floor"
      peers_run "floor_pack_claim_$w" "$k" "$GB" fsops "$WORK/floor" claim-pack "$n_claim" "$w" 0
      discard "$WORK/floor"
    done
    # A worker draining no-op jobs: git gatos worker against claim + spawn `true`.
    r="$WORK/w.git"; peers_repo "$r"
    "$GB" enqueue "$r" "$n_run" > /dev/null
    settle
    local t0 t1
    t0=$(now)
    GIT_DIR="$r" "$GG" worker --drain --quiet --id w0 > /dev/null
    t1=$(now)
    record "peers.gatos_worker.$k" "{\"count\": $n_run, \"seconds\": $(elapsed "$t0" "$t1"), \"rate\": $(python3 -c "print($n_run / ($t1 - $t0))")}"
    [ -n "$PG_INFO" ] && peers_run pg_worker "$k" "$GB" pg-claim "$PG_INFO" "$n_run" 1 spawn
    # Reads.
    r="$WORK/r.git"; peers_repo "$r"
    "$GB" batch "$r" t "$n_read" 1000 > /dev/null
    peers_run gatos_read "$k" "$GB" scan "$r" t
    [ -n "$NATS_URL" ] && peers_run nats_read "$k" "$GB" nats-read "$NATS_URL" "$n_read"
    [ -n "$REDIS_URL" ] && peers_run redis_read "$k" "$GB" redis-xrange "$REDIS_URL" "$n_read"
  done
  peers_stop
  if [ "$BENCH_DIR" = /tmp ]; then
    python3 "$here/scripts/peers_table.py" "$results" "$(machine)" "$here/docs/PERFORMANCE.md"
  else
    # Another file system (a tmpfs ceiling): the table goes to target/bench, not the docs.
    cp "$here/docs/PERFORMANCE.md" "$OUT/peers-table.md"
    python3 "$here/scripts/peers_table.py" "$results" "$(machine)" "$OUT/peers-table.md"
    echo "peers table on $(stat -f -c %T "$BENCH_DIR"): $OUT/peers-table.md"
  fi
}
