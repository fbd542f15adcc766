#!/usr/bin/env bash
# The project's local stack of real servers, no Docker:
#   PostgreSQL 15 (Debian) 127.0.0.1:55432   Redis (Debian) 127.0.0.1:56379
#   Kafka 3.9.1 KRaft (Maven Central) 127.0.0.1:59092 (controller 59093)
#   our schema registry (src/registry/main.ts) http://127.0.0.1:58081
#
#   bash scripts/stack.sh up|down|status|restart [service]|logs [service]
#
# All state lives under $REPO/.stack/ (STACK_STATE=/some/dir moves it, for a
# second, throw-away stack beside the shared one; with the STACK_*_PORT
# overrides below). `up` is idempotent: what runs and
# answers is left alone, what is missing (apt packages, node_modules, the
# Kafka classpath, a cluster) is installed or created first. See docs/stack.md.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE="${STACK_STATE:-$REPO/.stack}"
if [ -n "${STACK_STATE:-}" ]; then
  mkdir -p "$STATE"
  STATE=$(cd "$STATE" && pwd)
  # As root the cluster runs as `postgres`, which must reach the data directory.
  chmod o+rx "$STATE"
fi
TPL="$REPO/stack"
# Names derived from the state directory (socket dir, postgres-home cluster) so two stacks never share them.
STATE_ID=$(printf '%s' "$STATE" | md5sum | cut -c1-12)
[ "$STATE" = "$REPO/.stack" ] && STATE_ID=$(printf '%s' "$REPO" | md5sum | cut -c1-12)

# STACK_KAFKA_BROKERS=3 runs three Kafka nodes and STACK_REDIS_CLUSTER=1 a
# six-node Redis Cluster in place of the single broker and Redis (see the
# sections below and docs/stack.md).
# Fixed by docs/CONVENTIONS.md; the STACK_* overrides exist only to run a
# second, throw-away stack beside the shared one (e.g. to test this script).
PG_PORT=${STACK_PG_PORT:-55432}
REDIS_PORT=${STACK_REDIS_PORT:-56379}
KAFKA_PORT=${STACK_KAFKA_PORT:-59092}
KAFKA_CONTROLLER_PORT=${STACK_KAFKA_CONTROLLER_PORT:-59093}
REGISTRY_PORT=${STACK_REGISTRY_PORT:-58081}
HOST=127.0.0.1

PG_BIN=/usr/lib/postgresql/15/bin
PG_DIR="$STATE/pg" # see pg_paths
PG_DATA="$PG_DIR/data"
PG_LOG="$PG_DIR/postgres.log"
REDIS_DIR="$STATE/redis"
KAFKA_DIR="$STATE/kafka"
REGISTRY_DIR="$STATE/registry"
REGISTRY_MAIN="$REPO/src/registry/main.ts"

# Seconds each service may take to answer after start.
PG_TIMEOUT=${STACK_PG_TIMEOUT:-60}
REDIS_TIMEOUT=${STACK_REDIS_TIMEOUT:-30}
KAFKA_TIMEOUT=${STACK_KAFKA_TIMEOUT:-120}
REGISTRY_TIMEOUT=${STACK_REGISTRY_TIMEOUT:-60}

DATABASES=(shop warehouse registry)

log() { printf '[stack] %s\n' "$*"; }
warn() { printf '[stack] WARNING: %s\n' "$*" >&2; }
die() { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

# --- installs ---------------------------------------------------------------

APT_UPDATED=0
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=()
  if ! is_root; then
    command -v sudo >/dev/null || die "need apt packages ${missing[*]} but am not root and have no sudo"
    sudo=(sudo -n)
  fi
  log "installing apt packages: ${missing[*]}"
  if [ "$APT_UPDATED" -eq 0 ]; then
    "${sudo[@]}" apt-get update -qq
    APT_UPDATED=1
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

ensure_tools() {
  local pkgs=()
  [ -x "$PG_BIN/postgres" ] || pkgs+=(postgresql-15)
  command -v redis-server >/dev/null || pkgs+=(redis-server)
  command -v redis-cli >/dev/null || pkgs+=(redis-tools)
  command -v java >/dev/null || pkgs+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null || pkgs+=(maven)
  command -v flock >/dev/null || pkgs+=(util-linux)
  [ ${#pkgs[@]} -eq 0 ] || apt_install "${pkgs[@]}"
  command -v node >/dev/null || die "node (>= 20.10) is not installed"
}

ensure_node_modules() {
  if [ ! -d "$REPO/node_modules/kafkajs" ] || [ ! -d "$REPO/node_modules/tsx" ]; then
    log "node_modules missing: npm ci"
    (cd "$REPO" && npm ci --no-audit --no-fund)
  fi
}

# --- helpers ------------------------------------------------------------------

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# Pid from a pidfile if that process is alive and its command line contains
# $2 (guards against a stale pidfile whose pid was reused); else nothing.
live_pid() {
  local file=$1 pattern=$2 pid
  [ -f "$file" ] || return 1
  pid=$(tr -dc '0-9' <"$file")
  [ -n "$pid" ] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$pattern" || return 1
  echo "$pid"
}

# Wait for pid to exit, SIGKILL after $2 seconds.
stop_pid() {
  local pid=$1 timeout=$2 name=$3 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < timeout * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  warn "$name (pid $pid) did not stop in ${timeout}s: SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
}

render() { # template output key=value...
  local tpl=$1 out=$2 expr=() kv
  shift 2
  for kv in "$@"; do expr+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
  sed "${expr[@]}" "$tpl" >"$out.tmp"
  mv "$out.tmp" "$out"
}

tail_log() { [ -f "$1" ] && { echo "----- last lines of $1 -----" >&2; tail -n "${2:-30}" "$1" >&2; } || true; }

now_ms() { date +%s%3N; }

# --- PostgreSQL -------------------------------------------------------------

# As root the cluster runs as `postgres`, which must be able to reach its
# data directory. A checkout under a private directory (/root/...) cannot
# give it that, so the cluster then lives in postgres's home, named after
# the checkout, with .stack/pg a symlink to it.
pg_paths() {
  if is_root && id postgres >/dev/null 2>&1 && [ ! -L "$STATE/pg" ] &&
    ! runuser -u postgres -- test -x "$REPO" 2>/dev/null; then
    local home
    home=$(getent passwd postgres | cut -d: -f6)
    PG_DIR="${home:-/var/lib/postgresql}/stack-$STATE_ID"
    warn "postgres: user postgres cannot reach $REPO; cluster in $PG_DIR (linked from .stack/pg)"
    # .stack/pg is gone but the cluster is not: the state was removed by hand.
    [ -f "$PG_DIR/data/PG_VERSION" ] &&
      warn "postgres: reusing the cluster an earlier $STATE left in $PG_DIR (its databases and replication slot included); for an empty one, stop the stack and remove that directory too"
    mkdir -p "$STATE" "$PG_DIR"
    [ -e "$STATE/pg" ] || ln -s "$PG_DIR" "$STATE/pg"
  elif [ -L "$STATE/pg" ]; then
    PG_DIR=$(readlink -f "$STATE/pg")
  fi
  PG_DATA="$PG_DIR/data"
  PG_LOG="$PG_DIR/postgres.log"
}

# The socket path must fit in sun_path (107 bytes); a deep checkout falls
# back to a directory under /tmp named after the checkout.
pg_sockdir() {
  local d="$PG_DIR/run"
  if [ $((${#d} + 20)) -gt 107 ]; then
    d="/tmp/stack-pg-$STATE_ID"
  fi
  echo "$d"
}

# Runs a command as the cluster's OS owner: initdb refuses root, so as root
# the cluster belongs to the `postgres` user that the Debian package creates.
as_pg() {
  # From /, as the checkout itself may be out of postgres's reach.
  if is_root; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

pg_query() { "$PG_BIN/psql" -X -q -h "$HOST" -p "$PG_PORT" -U postgres -d "${2:-postgres}" -tAc "$1"; }
pg_ready() { [ "$(pg_query 'select 1' 2>/dev/null)" = 1 ]; }
pg_running() { as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; }

pg_up() {
  local sock owner
  pg_paths
  sock=$(pg_sockdir)
  mkdir -p "$PG_DIR" "$sock"
  if is_root; then
    id postgres >/dev/null 2>&1 || die "OS user postgres missing (it comes with the postgresql-15 package)"
    owner=$(stat -c %U "$PG_DIR")
    [ "$owner" = postgres ] || chown -R postgres:postgres "$PG_DIR"
    chown postgres:postgres "$sock"
    runuser -u postgres -- test -x "$PG_DIR" ||
      die "user postgres cannot reach $PG_DIR: every parent directory needs o+x"
  fi
  if [ ! -f "$PG_DATA/PG_VERSION" ]; then
    log "postgres: initdb $PG_DATA"
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust \
      --encoding=UTF8 --locale=C.UTF-8 >"$PG_DIR/initdb.log" 2>&1 ||
      { tail_log "$PG_DIR/initdb.log"; die "initdb failed"; }
    echo "include 'stack.conf'" | as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null
  fi
  # Config comes from stack/postgres on every up, so a changed template takes
  # effect on the next restart.
  render "$TPL/postgres/postgresql.conf" "$PG_DATA/stack.conf" \
    "PORT=$PG_PORT" "SOCKDIR=$sock" "STATE=$STATE"
  cp "$TPL/postgres/pg_hba.conf" "$PG_DATA/pg_hba.conf"
  is_root && chown postgres:postgres "$PG_DATA/stack.conf" "$PG_DATA/pg_hba.conf"

  local deadline=$(($(date +%s) + PG_TIMEOUT))
  # A postmaster that is recovering, or whose children are still exiting
  # after a crash, is "running" but does not answer yet: wait for either.
  while pg_running && ! pg_ready; do
    [ "$(date +%s)" -lt "$deadline" ] ||
      { tail_log "$PG_LOG"; die "postgres runs (pidfile $PG_DATA/postmaster.pid) but does not answer on $HOST:$PG_PORT"; }
    sleep 0.3
  done
  if pg_running && pg_ready; then
    log "postgres: already up on $HOST:$PG_PORT"
  else
    port_open "$PG_PORT" && die "port $PG_PORT is taken by another process; not starting postgres"
    log "postgres: starting on $HOST:$PG_PORT"
    # pg_ctl removes a stale postmaster.pid by itself.
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$PG_TIMEOUT" start >/dev/null 9>&- ||
      { tail_log "$PG_LOG"; die "postgres did not start"; }
    deadline=$(($(date +%s) + PG_TIMEOUT))
    until pg_ready; do
      [ "$(date +%s)" -lt "$deadline" ] || { tail_log "$PG_LOG"; die "postgres did not answer in ${PG_TIMEOUT}s"; }
      sleep 0.2
    done
  fi
  local db
  for db in "${DATABASES[@]}"; do
    if [ "$(pg_query "select 1 from pg_database where datname = '$db'")" != 1 ]; then
      log "postgres: create database $db"
      pg_query "create database $db" >/dev/null
    fi
  done
  [ "$(pg_query 'show wal_level')" = logical ] || die "postgres wal_level is not logical (restart it: stack.sh restart postgres)"
}

pg_down() {
  pg_paths
  if [ -f "$PG_DATA/PG_VERSION" ] && pg_running; then
    log "postgres: stopping"
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >/dev/null
  else
    log "postgres: not running"
  fi
}

pg_status() {
  pg_paths
  if pg_ready; then
    local pid
    pid=$(head -1 "$PG_DATA/postmaster.pid" 2>/dev/null || echo '?')
    printf '%-9s up    %s:%s  pid %s  wal_level=%s  data %s\n' postgres "$HOST" "$PG_PORT" "$pid" \
      "$(pg_query 'show wal_level')" "${PG_DATA#"$REPO"/}"
  else
    printf '%-9s DOWN  %s:%s\n' postgres "$HOST" "$PG_PORT"
    return 1
  fi
}

# --- Redis ------------------------------------------------------------------

redis_ping() { [ "$(redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

redis_up() {
  mkdir -p "$REDIS_DIR"
  render "$TPL/redis/redis.conf" "$REDIS_DIR/redis.conf" "PORT=$REDIS_PORT" "STATE=$STATE"
  if live_pid "$REDIS_DIR/redis.pid" redis-server >/dev/null; then
    redis_ping || die "redis runs (pidfile $REDIS_DIR/redis.pid) but does not answer PING"
    log "redis: already up on $HOST:$REDIS_PORT"
    return
  fi
  rm -f "$REDIS_DIR/redis.pid"
  port_open "$REDIS_PORT" && die "port $REDIS_PORT is taken by another process; not starting redis"
  log "redis: starting on $HOST:$REDIS_PORT"
  redis-server "$REDIS_DIR/redis.conf" 9>&- || { tail_log "$REDIS_DIR/redis.log"; die "redis-server failed"; }
  local deadline=$(($(date +%s) + REDIS_TIMEOUT))
  until redis_ping; do
    [ "$(date +%s)" -lt "$deadline" ] || { tail_log "$REDIS_DIR/redis.log"; die "redis did not answer PING in ${REDIS_TIMEOUT}s"; }
    sleep 0.1
  done
}

redis_down() {
  local pid
  if pid=$(live_pid "$REDIS_DIR/redis.pid" redis-server); then
    log "redis: stopping"
    # SHUTDOWN flushes the append-only file before exiting.
    redis-cli -h "$HOST" -p "$REDIS_PORT" shutdown >/dev/null 2>&1 || true
    stop_pid "$pid" 30 redis
  else
    log "redis: not running"
  fi
  rm -f "$REDIS_DIR/redis.pid"
}

redis_status() {
  local pid
  if redis_ping; then
    pid=$(live_pid "$REDIS_DIR/redis.pid" redis-server || echo '?')
    printf '%-9s up    %s:%s  pid %s  dir %s\n' redis "$HOST" "$REDIS_PORT" "$pid" "${REDIS_DIR#"$REPO"/}"
  else
    printf '%-9s DOWN  %s:%s\n' redis "$HOST" "$REDIS_PORT"
    return 1
  fi
}

# --- Redis Cluster (STACK_REDIS_CLUSTER=1) ------------------------------------
# Six redis-server nodes in cluster mode on REDIS_PORT+1..+6 (bus ports +100),
# state under $STATE/redis-cluster/node-N; created once with
# `redis-cli --cluster create ... --cluster-replicas 1`, so three masters with
# one replica each. Replaces the single Redis while the setting is on.

REDIS_CLUSTER_DIR="$STATE/redis-cluster"
REDIS_CLUSTER_NODES=6
# Milliseconds until a silent master is failed over (cluster-node-timeout); a
# throw-away stack that kills masters may shorten it.
REDIS_CLUSTER_NODE_TIMEOUT=${STACK_REDIS_CLUSTER_NODE_TIMEOUT:-3000}
rc_port() { echo $((REDIS_PORT + $1)); }
rc_dir() { echo "$REDIS_CLUSTER_DIR/node-$1"; }
rc_cli() { redis-cli -h "$HOST" -p "$(rc_port "$1")" "${@:2}"; }
rc_info() { rc_cli "$1" cluster info 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p"; }
# Masters in node $1's view, as "all/with-slots". A node restarted after its
# replica took over still calls itself a master until gossip demotes it, with
# cluster_state ok all the while; "3/3" on every node means that has settled.
rc_masters() {
  rc_cli "$1" cluster nodes 2>/dev/null | tr -d '\r' |
    awk '$3 ~ /master/ && $3 !~ /fail/ { n++; if (NF > 8) s++ } END { printf "%d/%d", n, s }'
}

redis_cluster_up() {
  local i port dir
  for ((i = 1; i <= REDIS_CLUSTER_NODES; i++)); do
    port=$(rc_port "$i")
    dir=$(rc_dir "$i")
    mkdir -p "$dir"
    render "$TPL/redis/redis-cluster.conf" "$dir/redis.conf" "PORT=$port" "BUS_PORT=$((port + 100))" "DIR=$dir" \
      "NODE_TIMEOUT=$REDIS_CLUSTER_NODE_TIMEOUT"
    if live_pid "$dir/redis.pid" redis-server >/dev/null; then continue; fi
    rm -f "$dir/redis.pid"
    port_open "$port" && die "port $port is taken by another process; not starting redis cluster node $i"
    port_open $((port + 100)) && die "port $((port + 100)) is taken by another process; not starting redis cluster node $i"
    log "redis-cluster: starting node $i on $HOST:$port"
    redis-server "$dir/redis.conf" 9>&- || { tail_log "$dir/redis.log"; die "redis-server (cluster node $i) failed"; }
  done
  local deadline=$(($(date +%s) + REDIS_TIMEOUT))
  for ((i = 1; i <= REDIS_CLUSTER_NODES; i++)); do
    until [ "$(rc_cli "$i" ping 2>/dev/null)" = PONG ]; do
      [ "$(date +%s)" -lt "$deadline" ] || { tail_log "$(rc_dir "$i")/redis.log"; die "redis cluster node $i did not answer PING in ${REDIS_TIMEOUT}s"; }
      sleep 0.1
    done
  done
  # Created once: only when no node knows any other and no slot is assigned.
  local fresh=1 nodes=()
  for ((i = 1; i <= REDIS_CLUSTER_NODES; i++)); do
    nodes+=("$HOST:$(rc_port "$i")")
    [ "$(rc_info "$i" cluster_known_nodes)" = 1 ] && [ "$(rc_info "$i" cluster_slots_assigned)" = 0 ] || fresh=0
  done
  if [ "$fresh" -eq 1 ]; then
    log "redis-cluster: creating (3 masters, 3 replicas)"
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$REDIS_CLUSTER_DIR/create.log" 2>&1 ||
      { tail_log "$REDIS_CLUSTER_DIR/create.log"; die "redis-cli --cluster create failed"; }
  fi
  deadline=$(($(date +%s) + REDIS_TIMEOUT))
  for ((i = 1; i <= REDIS_CLUSTER_NODES; i++)); do
    until [ "$(rc_info "$i" cluster_state)" = ok ] && [ "$(rc_info "$i" cluster_known_nodes)" = "$REDIS_CLUSTER_NODES" ] &&
      [ "$(rc_masters "$i")" = "$((REDIS_CLUSTER_NODES / 2))/$((REDIS_CLUSTER_NODES / 2))" ]; do
      [ "$(date +%s)" -lt "$deadline" ] ||
        die "redis cluster node $i: cluster_state $(rc_info "$i" cluster_state), $(rc_info "$i" cluster_known_nodes) known nodes, masters/with slots $(rc_masters "$i") after ${REDIS_TIMEOUT}s (see $REDIS_CLUSTER_DIR)"
      sleep 0.2
    done
  done
  # A replica that has not synced with its master yet cannot take over from it.
  for ((i = 1; i <= REDIS_CLUSTER_NODES; i++)); do
    until [ "$(rc_cli "$i" role 2>/dev/null | head -1)" = master ] ||
      rc_cli "$i" info replication 2>/dev/null | tr -d '\r' | grep -qx 'master_link_status:up'; do
      [ "$(date +%s)" -lt "$deadline" ] || die "redis cluster node $i: replica not in sync with its master after ${REDIS_TIMEOUT}s"
      sleep 0.2
    done
  done
  log "redis-cluster: up on $HOST:$(rc_port 1)-$(rc_port "$REDIS_CLUSTER_NODES") (REDIS_CLUSTER_NODES=${nodes[0]},${nodes[1]},${nodes[2]})"
}

redis_cluster_down() {
  local i pid
  for ((i = REDIS_CLUSTER_NODES; i >= 1; i--)); do
    if pid=$(live_pid "$(rc_dir "$i")/redis.pid" redis-server); then
      log "redis-cluster: stopping node $i"
      rc_cli "$i" shutdown >/dev/null 2>&1 || true
      stop_pid "$pid" 30 "redis cluster node $i"
    fi
    rm -f "$(rc_dir "$i")/redis.pid"
  done
}

redis_cluster_status() {
  local i rc=0 pid role
  for ((i = 1; i <= REDIS_CLUSTER_NODES; i++)); do
    if [ "$(rc_cli "$i" ping 2>/dev/null)" = PONG ]; then
      pid=$(live_pid "$(rc_dir "$i")/redis.pid" redis-server || echo '?')
      role=$(rc_cli "$i" role 2>/dev/null | head -1)
      printf '%-9s up    %s:%s  pid %s  %s  cluster_state=%s\n' "redis-$i" "$HOST" "$(rc_port "$i")" "$pid" "$role" "$(rc_info "$i" cluster_state)"
    else
      printf '%-9s DOWN  %s:%s\n' "redis-$i" "$HOST" "$(rc_port "$i")"
      rc=1
    fi
  done
  return $rc
}

# --- Kafka ------------------------------------------------------------------

KAFKA_PID="$KAFKA_DIR/kafka.pid"
KAFKA_CP="$KAFKA_DIR/classpath.txt"

kafka_classpath() {
  mkdir -p "$KAFKA_DIR"
  local ok=1 jar
  if [ ! -s "$KAFKA_CP" ] || [ "$TPL/kafka/pom.xml" -nt "$KAFKA_CP" ]; then
    ok=0
  else
    # ~/.m2 may have been cleaned since the classpath was written.
    while IFS= read -r jar; do [ -f "$jar" ] || { ok=0; break; }; done < <(tr ':' '\n' <"$KAFKA_CP")
  fi
  [ "$ok" -eq 1 ] && return 0
  # A throw-away stack reuses the jars the repository's own stack resolved.
  local own="$REPO/.stack/kafka/classpath.txt"
  if [ "$KAFKA_CP" != "$own" ] && [ -s "$own" ]; then
    ok=1
    while IFS= read -r jar; do [ -f "$jar" ] || { ok=0; break; }; done < <(tr ':' '\n' <"$own")
    if [ "$ok" -eq 1 ]; then cp "$own" "$KAFKA_CP" && return 0; fi
  fi
  log "kafka: resolving classpath with maven (first run downloads ~60 MB into ~/.m2)"
  local mvn=(mvn -q -B -f "$TPL/kafka/pom.xml" dependency:build-classpath "-Dmdep.outputFile=$KAFKA_CP")
  # Offline first so that a warm ~/.m2 needs no network at all.
  "${mvn[@]}" -o >"$KAFKA_DIR/mvn.log" 2>&1 || "${mvn[@]}" >"$KAFKA_DIR/mvn.log" 2>&1 ||
    { tail_log "$KAFKA_DIR/mvn.log"; die "maven could not resolve the Kafka classpath"; }
  [ -s "$KAFKA_CP" ] || die "maven wrote no classpath to $KAFKA_CP"
}

# The JVM command line of kafka-run-class.sh, minus JMX.
# STACK_KAFKA_JVM_OPTS replaces the heap and GC options (a throw-away stack
# that restarts brokers often, the chaos suite, trades throughput for a
# faster start: C1 only and the serial GC).
KAFKA_JVM_OPTS_DEFAULT="-Xms256m -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent"
kafka_java() {
  local jvm_opts
  read -r -a jvm_opts <<<"${STACK_KAFKA_JVM_OPTS:-$KAFKA_JVM_OPTS_DEFAULT}"
  KAFKA_JAVA=(java "${jvm_opts[@]}"
    -Djava.awt.headless=true -Djava.net.preferIPv4Stack=true
    "-Dkafka.logs.dir=$KAFKA_DIR/logs"
    "-Dlog4j.configuration=file:$KAFKA_DIR/log4j.properties"
    -cp "$(cat "$KAFKA_CP")")
}

kafka_probe() { node "$TPL/probe.mjs" kafka "$HOST:$KAFKA_PORT"; }

# STACK_KAFKA_EXTRA_PROPERTIES: space-separated key=value lines appended to
# each broker's server.properties (a later key wins), e.g. a shorter
# broker.session.timeout.ms for a throw-away stack; none by default.
kafka_extra_properties() {
  [ -n "${STACK_KAFKA_EXTRA_PROPERTIES:-}" ] || return 0
  { echo "# STACK_KAFKA_EXTRA_PROPERTIES"; tr -s ' ' '\n' <<<"$STACK_KAFKA_EXTRA_PROPERTIES"; } >>"$1"
}

kafka_up() {
  kafka_classpath
  mkdir -p "$KAFKA_DIR/logs"
  render "$TPL/kafka/server.properties" "$KAFKA_DIR/server.properties" \
    "PORT=$KAFKA_PORT" "CONTROLLER_PORT=$KAFKA_CONTROLLER_PORT" "STATE=$STATE"
  kafka_extra_properties "$KAFKA_DIR/server.properties"
  cp "$TPL/kafka/log4j.properties" "$KAFKA_DIR/log4j.properties"
  kafka_java
  local pid
  if pid=$(live_pid "$KAFKA_PID" kafka.Kafka); then
    log "kafka: already running (pid $pid)"
  else
    rm -f "$KAFKA_PID"
    port_open "$KAFKA_PORT" && die "port $KAFKA_PORT is taken by another process; not starting kafka"
    port_open "$KAFKA_CONTROLLER_PORT" && die "port $KAFKA_CONTROLLER_PORT is taken by another process; not starting kafka"
    if [ ! -f "$KAFKA_DIR/data/meta.properties" ]; then
      [ -s "$KAFKA_DIR/cluster-id" ] ||
        head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' | sed 's/^-/A/' >"$KAFKA_DIR/cluster-id"
      log "kafka: formatting storage (cluster id $(cat "$KAFKA_DIR/cluster-id"))"
      "${KAFKA_JAVA[@]}" kafka.tools.StorageTool format --ignore-formatted \
        -t "$(cat "$KAFKA_DIR/cluster-id")" -c "$KAFKA_DIR/server.properties" \
        >"$KAFKA_DIR/format.log" 2>&1 || { tail_log "$KAFKA_DIR/format.log"; die "kafka storage format failed"; }
    fi
    log "kafka: starting on $HOST:$KAFKA_PORT (controller $KAFKA_CONTROLLER_PORT)"
    # setsid: the broker must outlive the shell (and the CI step) that started it.
    # fd 9 is the stack lock: no server may keep it open.
    # $! must be the JVM itself (setsid and nohup exec), so the background
    # job is a single command, not a list.
    (
      cd "$KAFKA_DIR" || exit 1
      setsid nohup "${KAFKA_JAVA[@]}" kafka.Kafka "$KAFKA_DIR/server.properties" \
        </dev/null >>"$KAFKA_DIR/kafka.out" 2>&1 9>&- &
      echo $! >"$KAFKA_PID"
    )
    pid=$(cat "$KAFKA_PID")
  fi
  local deadline=$(($(date +%s) + KAFKA_TIMEOUT)) err
  until err=$(kafka_probe 2>&1 >/dev/null); do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail_log "$KAFKA_DIR/kafka.out"
      tail_log "$KAFKA_DIR/logs/server.log"
      kafka_exit_reason "$KAFKA_DIR/logs/server.log"
      die "kafka exited during startup"
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      tail_log "$KAFKA_DIR/logs/server.log"
      die "kafka did not answer a metadata request on $HOST:$KAFKA_PORT in ${KAFKA_TIMEOUT}s (last error: $err)"
    fi
    sleep 0.5
  done
  log "kafka: up on $HOST:$KAFKA_PORT"
}

# The first ERROR or shutdown reason in server.log, since the tail shows only the shutdown sequence.
kafka_exit_reason() {
  local reason
  [ -f "$1" ] || return 0
  reason=$(grep -m1 -E 'ERROR|FATAL|Shutting down because' "$1" | cut -c1-400)
  [ -n "$reason" ] && echo "[stack] kafka: first error in $1: $reason" >&2
  return 0
}

kafka_down() {
  local pid
  if pid=$(live_pid "$KAFKA_PID" kafka.Kafka); then
    log "kafka: stopping (pid $pid)"
    stop_pid "$pid" 60 kafka
  else
    log "kafka: not running"
  fi
  rm -f "$KAFKA_PID"
}

kafka_status() {
  local info pid
  if info=$(kafka_probe 2>/dev/null); then
    pid=$(live_pid "$KAFKA_PID" kafka.Kafka || echo '?')
    printf '%-9s up    %s:%s  pid %s  %s\n' kafka "$HOST" "$KAFKA_PORT" "$pid" "$info"
  else
    printf '%-9s DOWN  %s:%s\n' kafka "$HOST" "$KAFKA_PORT"
    return 1
  fi
}

# --- Kafka cluster (STACK_KAFKA_BROKERS=N, N > 1) -------------------------------
# N nodes, each broker and controller (N controller voters: a quorum survives
# floor((N-1)/2) dead nodes), node i listening on KAFKA_PORT + 2(i-1) with its
# controller on the port after; state under $STATE/kafka-i. The jars are the
# single node's (kafka_classpath). Replaces the single broker while set.

KAFKA_BROKERS_N=${STACK_KAFKA_BROKERS:-1}
kc_port() { echo $((KAFKA_PORT + 2 * ($1 - 1))); }
kc_dir() { echo "$STATE/kafka-$1"; }
kc_voters() {
  local i v=()
  for ((i = 1; i <= KAFKA_BROKERS_N; i++)); do v+=("$i@$HOST:$(($(kc_port "$i") + 1))"); done
  (IFS=,; echo "${v[*]}")
}
kc_bootstrap() {
  local i b=()
  for ((i = 1; i <= KAFKA_BROKERS_N; i++)); do b+=("$HOST:$(kc_port "$i")"); done
  (IFS=,; echo "${b[*]}")
}

kafka_cluster_up() {
  kafka_classpath
  local i dir port pid cid_file="$STATE/kafka-cluster-id"
  [ -s "$cid_file" ] ||
    head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' | sed 's/^-/A/' >"$cid_file"
  local pids=() fmt=()
  for ((i = 1; i <= KAFKA_BROKERS_N; i++)); do
    dir=$(kc_dir "$i")
    port=$(kc_port "$i")
    mkdir -p "$dir/logs"
    render "$TPL/kafka/server-cluster.properties" "$dir/server.properties" \
      "NODE_ID=$i" "PORT=$port" "CONTROLLER_PORT=$((port + 1))" "VOTERS=$(kc_voters)" "DIR=$dir"
    kafka_extra_properties "$dir/server.properties"
    cp "$TPL/kafka/log4j.properties" "$dir/log4j.properties"
    if [ ! -f "$dir/data/meta.properties" ]; then
      log "kafka-$i: formatting storage (cluster id $(cat "$cid_file"))"
      KAFKA_DIR=$dir kafka_java
      # In parallel: one JVM start each.
      "${KAFKA_JAVA[@]}" kafka.tools.StorageTool format --ignore-formatted \
        -t "$(cat "$cid_file")" -c "$dir/server.properties" >"$dir/format.log" 2>&1 9>&- &
      fmt+=("$!:$i")
    fi
  done
  local f
  for f in "${fmt[@]}"; do
    wait "${f%%:*}" || { tail_log "$(kc_dir "${f#*:}")/format.log"; die "kafka-${f#*:} storage format failed"; }
  done
  for ((i = 1; i <= KAFKA_BROKERS_N; i++)); do
    dir=$(kc_dir "$i")
    port=$(kc_port "$i")
    KAFKA_DIR=$dir kafka_java
    if pid=$(live_pid "$dir/kafka.pid" "$dir/server.properties"); then
      pids+=("$pid")
      continue
    fi
    rm -f "$dir/kafka.pid"
    port_open "$port" && die "port $port is taken by another process; not starting kafka node $i"
    port_open $((port + 1)) && die "port $((port + 1)) is taken by another process; not starting kafka node $i"
    [ -f "$dir/data/meta.properties" ] || die "kafka-$i: storage not formatted"
    log "kafka-$i: starting on $HOST:$port (controller $((port + 1)))"
    (
      cd "$dir" || exit 1
      setsid nohup "${KAFKA_JAVA[@]}" kafka.Kafka "$dir/server.properties" \
        </dev/null >>"$dir/kafka.out" 2>&1 9>&- &
      echo $! >"$dir/kafka.pid"
    )
    pids+=("$(cat "$dir/kafka.pid")")
  done
  # Up when every broker answers and each sees all N in the cluster metadata.
  local deadline=$(($(date +%s) + KAFKA_TIMEOUT)) err info
  for ((i = 1; i <= KAFKA_BROKERS_N; i++)); do
    # The port first (cheap): a node probe is a Node.js start, CPU taken from the JVM still starting.
    until port_open "$(kc_port "$i")" && info=$(node "$TPL/probe.mjs" kafka "$HOST:$(kc_port "$i")" 2>&1) &&
      [ "$(grep -o "@$HOST:" <<<"$info" | wc -l)" -eq "$KAFKA_BROKERS_N" ]; do
      err=${info:-port $(kc_port "$i") not open yet}
      if ! kill -0 "${pids[$((i - 1))]}" 2>/dev/null; then
        tail_log "$(kc_dir "$i")/kafka.out"
        tail_log "$(kc_dir "$i")/logs/server.log"
        kafka_exit_reason "$(kc_dir "$i")/logs/server.log"
        die "kafka-$i exited during startup"
      fi
      if [ "$(date +%s)" -ge "$deadline" ]; then
        tail_log "$(kc_dir "$i")/logs/server.log"
        die "kafka-$i did not see all $KAFKA_BROKERS_N brokers on $HOST:$(kc_port "$i") in ${KAFKA_TIMEOUT}s (last: $err)"
      fi
      sleep 0.5
    done
  done
  log "kafka: $KAFKA_BROKERS_N brokers up (KAFKA_BROKERS=$(kc_bootstrap))"
}

kafka_cluster_down() {
  local i pid
  for ((i = KAFKA_BROKERS_N; i >= 1; i--)); do
    if pid=$(live_pid "$(kc_dir "$i")/kafka.pid" "$(kc_dir "$i")/server.properties"); then
      log "kafka-$i: stopping (pid $pid)"
      # Each in the background: a broker's controlled shutdown needs the others' quorum.
      stop_pid "$pid" 60 "kafka-$i" &
    fi
  done
  wait
  for ((i = 1; i <= KAFKA_BROKERS_N; i++)); do rm -f "$(kc_dir "$i")/kafka.pid"; done
}

kafka_cluster_status() {
  local i rc=0 info pid
  for ((i = 1; i <= KAFKA_BROKERS_N; i++)); do
    if info=$(node "$TPL/probe.mjs" kafka "$HOST:$(kc_port "$i")" 2>/dev/null); then
      pid=$(live_pid "$(kc_dir "$i")/kafka.pid" "$(kc_dir "$i")/server.properties" || echo '?')
      printf '%-9s up    %s:%s  pid %s  %s\n' "kafka-$i" "$HOST" "$(kc_port "$i")" "$pid" "$info"
    else
      printf '%-9s DOWN  %s:%s\n' "kafka-$i" "$HOST" "$(kc_port "$i")"
      rc=1
    fi
  done
  return $rc
}

# --- schema registry (ours) ---------------------------------------------------

REGISTRY_PID="$REGISTRY_DIR/registry.pid"
REGISTRY_URL="http://$HOST:$REGISTRY_PORT"
registry_probe() { node "$TPL/probe.mjs" http "$REGISTRY_URL/subjects"; }

registry_up() {
  if [ ! -f "$REGISTRY_MAIN" ]; then
    warn "registry: ${REGISTRY_MAIN#"$REPO"/} does not exist yet; not starting the schema registry"
    return 0
  fi
  mkdir -p "$REGISTRY_DIR"
  local pid
  if pid=$(live_pid "$REGISTRY_PID" src/registry/main.ts); then
    log "registry: already running (pid $pid)"
  else
    rm -f "$REGISTRY_PID"
    port_open "$REGISTRY_PORT" && die "port $REGISTRY_PORT is taken by another process; not starting the registry"
    log "registry: starting on $REGISTRY_URL"
    (
      cd "$REPO" || exit 1
      export REGISTRY_HOST="$HOST" REGISTRY_PORT="$REGISTRY_PORT" \
        REGISTRY_DATABASE_URL="${STACK_REGISTRY_DATABASE_URL:-postgres://postgres@$HOST:$PG_PORT/registry}"
      setsid nohup node --import tsx src/registry/main.ts </dev/null >>"$REGISTRY_DIR/registry.log" 2>&1 9>&- &
      echo $! >"$REGISTRY_PID"
    )
    pid=$(cat "$REGISTRY_PID")
  fi
  local deadline=$(($(date +%s) + REGISTRY_TIMEOUT)) err
  until err=$(registry_probe 2>&1 >/dev/null); do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail_log "$REGISTRY_DIR/registry.log"
      die "the schema registry exited during startup"
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      tail_log "$REGISTRY_DIR/registry.log"
      die "the schema registry did not answer GET /subjects in ${REGISTRY_TIMEOUT}s (last error: $err)"
    fi
    sleep 0.3
  done
  log "registry: up on $REGISTRY_URL"
}

registry_down() {
  local pid
  if pid=$(live_pid "$REGISTRY_PID" src/registry/main.ts); then
    log "registry: stopping (pid $pid)"
    stop_pid "$pid" 15 registry
  else
    log "registry: not running"
  fi
  rm -f "$REGISTRY_PID"
}

registry_status() {
  local pid
  if registry_probe >/dev/null 2>&1; then
    pid=$(live_pid "$REGISTRY_PID" src/registry/main.ts || echo '?')
    printf '%-9s up    %s  pid %s\n' registry "$REGISTRY_URL" "$pid"
  elif [ ! -f "$REGISTRY_MAIN" ]; then
    printf '%-9s n/a   %s  (src/registry/main.ts does not exist yet)\n' registry "$REGISTRY_URL"
  else
    printf '%-9s DOWN  %s\n' registry "$REGISTRY_URL"
    return 1
  fi
}

# --- commands -----------------------------------------------------------------

SERVICES=(postgres redis kafka registry)

svc_fn() { # service action
  case $1 in
  postgres) "pg_$2" ;;
  redis) if [ "${STACK_REDIS_CLUSTER:-0}" = 1 ]; then "redis_cluster_$2"; else "redis_$2"; fi ;;
  kafka) if [ "$KAFKA_BROKERS_N" -gt 1 ]; then "kafka_cluster_$2"; else "kafka_$2"; fi ;;
  registry) "$1_$2" ;;
  *) die "unknown service '$1' (one of: ${SERVICES[*]})" ;;
  esac
}

# STACK_LOCK_NAME gives a caller that restarts one service while another
# restarts (the chaos suite: a broker and a Redis node at once) a lock of
# its own per service; by default one lock for the whole stack.
lock() {
  local name=${STACK_LOCK_NAME:-stack}
  [[ $name =~ ^[a-z0-9-]+$ ]] || die "STACK_LOCK_NAME must be lowercase letters, digits and dashes"
  mkdir -p "$STATE"
  exec 9>"$STATE/$name.lock"
  flock -w 600 9 || die "another stack.sh holds $STATE/$name.lock"
}

cmd_up() {
  local t0 s
  t0=$(now_ms)
  ensure_tools
  lock
  ensure_node_modules
  for s in "${@:-${SERVICES[@]}}"; do svc_fn "$s" up; done
  log "stack up in $((($(now_ms) - t0) / 1000)).$(((($(now_ms) - t0) % 1000) / 100))s"
}

cmd_down() {
  lock
  local s i list=("${@:-${SERVICES[@]}}")
  # Reverse order: clients before the servers they use.
  for ((i = ${#list[@]} - 1; i >= 0; i--)); do svc_fn "${list[$i]}" down; done
}

cmd_status() {
  local s rc=0
  for s in "${@:-${SERVICES[@]}}"; do svc_fn "$s" status || rc=1; done
  return $rc
}

cmd_logs() {
  local s=${1:-}
  case $s in
  postgres) tail -n 50 "$PG_LOG" ;;
  redis)
    if [ "${STACK_REDIS_CLUSTER:-0}" = 1 ]; then tail -n 20 "$REDIS_CLUSTER_DIR"/node-*/redis.log; else tail -n 50 "$REDIS_DIR/redis.log"; fi ;;
  kafka)
    if [ "$KAFKA_BROKERS_N" -gt 1 ]; then tail -n 20 "$STATE"/kafka-*/logs/server.log; else tail -n 50 "$KAFKA_DIR/logs/server.log"; fi ;;
  registry) tail -n 50 "$REGISTRY_DIR/registry.log" ;;
  *) die "usage: stack.sh logs postgres|redis|kafka|registry" ;;
  esac
}

# What `npm test` needs beyond the servers: chromium for the status-page
# test, openssl for the secured end-to-end test, and node-rdkafka for the
# CAPTURE_PRODUCER=rdkafka tests. node-rdkafka is not in package.json: npm ci
# would compile librdkafka (minutes) for every user of the default kafkajs
# producer; here it is built once into node_modules, without touching the
# lockfile, and kept until the next npm ci.
NODE_RDKAFKA_VERSION=3.6.1
cmd_test_deps() {
  apt_install chromium openssl
  # Not for npm test: the C load generator of `npm run bench:lookup -- --generator wrk`.
  apt_install wrk
  # h2load, the paced C generator of `bench:lookup -- --generator h2load`; test/integration/bench-lookup-h2load.test.ts runs it.
  apt_install nghttp2-client
  if ! (cd "$REPO" && node -e "require('node-rdkafka')" >/dev/null 2>&1); then
    apt_install build-essential python3 libssl-dev zlib1g-dev
    log "building node-rdkafka $NODE_RDKAFKA_VERSION (librdkafka from its npm sources; a few minutes, once per npm ci)"
    (cd "$REPO" && npm install --no-save --no-audit --no-fund --loglevel=error "node-rdkafka@$NODE_RDKAFKA_VERSION") ||
      die "node-rdkafka did not build; the rdkafka producer tests will fail (see above)"
  fi
}

main() {
  local cmd=${1:-}
  [ $# -gt 0 ] && shift
  case $cmd in
  up) cmd_up "$@" ;;
  down) cmd_down "$@" ;;
  status) cmd_status "$@" ;;
  restart) (cmd_down "$@") && cmd_up "$@" ;;
  logs) cmd_logs "$@" ;;
  test-deps) cmd_test_deps ;;
  *)
    echo "usage: bash scripts/stack.sh up|down|status|restart [service...]|logs service|test-deps" >&2
    echo "services: ${SERVICES[*]}" >&2
    exit 2
    ;;
  esac
}

main "$@"
