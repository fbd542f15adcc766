#!/usr/bin/env bash
# `npm run demo`: brings up the local stack, applies migrations, starts the
# pipeline (capture, warehouse consumers, CLV API) in the background, writes
# generated shop traffic into the source and waits until the warehouse has
# caught up, then prints what it built. `npm run demo -- stop` stops the
# pipeline processes (the stack keeps running; `npm run stack:down` stops it).
#
# Run twice, it does not add a second batch of data: when the source already
# holds customers it skips generation and says so; `npm run demo -- --add`
# (or DEMO_ADD=1) generates another batch on top. A pipeline process that
# dies makes the demo stop at once with the last lines of its log.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# A throw-away stack (STACK_STATE and STACK_*_PORT, docs/stack.md) gets its own
# pipeline too: logs go under its state, and the processes find its ports
# through the STACK_*_PORT defaults of loadStackConfig (src/config/index.ts).
APP="${STACK_STATE:-$ROOT/.stack}/app"
mkdir -p "$APP"
API_PORT=${API_PORT:-58080}
export API_PORT

PSQL_SRC=(psql -X -q -t -A -h 127.0.0.1 -p "${STACK_PG_PORT:-55432}" -U postgres -d shop)
PSQL_WH=(psql -X -q -t -A -h 127.0.0.1 -p "${STACK_PG_PORT:-55432}" -U postgres -d warehouse)

stop_app() {
  for name in api clickstream consumers capture; do
    local pidfile="$APP/$name.pid"
    if [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      kill -TERM "$(cat "$pidfile")" || true
      for _ in $(seq 1 100); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.1; done
      echo "stopped $name"
    fi
    rm -f "$pidfile"
  done
}

APPS=()
# Fails the demo when a started process is gone, with the end of its log.
check_alive() {
  local name
  for name in "${APPS[@]}"; do
    local pidfile="$APP/$name.pid"
    if [[ ! -f $pidfile ]] || ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo >&2
      echo "ERROR: $name exited (see $APP/$name.log); its last lines:" >&2
      local from=0
      [[ -f $APP/$name.logstart ]] && from=$(cat "$APP/$name.logstart")
      tail -c +$((from + 1)) "$APP/$name.log" | tail -n 30 >&2 || true
      echo >&2
      echo "The other processes keep running; stop them with: npm run demo -- stop" >&2
      exit 1
    fi
  done
}

# Waits until the named processes logged "ready" (a dead one, of any started, fails the demo at once).
wait_ready() {
  local name deadline=$((SECONDS + ${DEMO_READY_TIMEOUT:-180}))
  for name in "$@"; do
    local from=0
    [[ -f $APP/$name.logstart ]] && from=$(cat "$APP/$name.logstart")
    until tail -c +$((from + 1)) "$APP/$name.log" 2>/dev/null | grep -q '"msg":"ready"'; do
      check_alive
      if (( SECONDS > deadline )); then
        echo "WARNING: $name has not logged ready yet (see $APP/$name.log); going on" >&2
        break
      fi
      sleep 0.5
    done
  done
  echo "pipeline ready $((SECONDS - T0)) s after the demo started"
}

start_app() {
  local name=$1; shift
  local pidfile="$APP/$name.pid"
  if [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "$name already running (pid $(cat "$pidfile"))"
    APPS+=("$name")
    return
  fi
  APPS+=("$name")
  stat -c %s "$APP/$name.log" 2>/dev/null >"$APP/$name.logstart" || echo 0 >"$APP/$name.logstart"
  nohup node --import tsx "$@" >>"$APP/$name.log" 2>&1 &
  echo $! >"$pidfile"
  echo "started $name (pid $!, log ${APP#"$ROOT"/}/$name.log)"
}

if [[ ${1:-} == stop ]]; then
  stop_app
  exit 0
fi
ADD=${DEMO_ADD:-0}
[[ ${1:-} == --add ]] && ADD=1

T0=$SECONDS
if [[ ! -s ${STACK_STATE:-.stack}/kafka/classpath.txt && ! -s .stack/kafka/classpath.txt ]]; then
  echo "First run: the stack installs what is missing (PostgreSQL, Redis, Java and Maven packages) and"
  echo "resolves Kafka's jars from Maven Central (~60 MB into ~/.m2); this takes a few minutes, later runs ~1 min."
fi
bash scripts/stack.sh up
npx tsx src/cli/migrate.ts all

start_app capture src/cli/capture.ts
start_app consumers consumers/warehouse/main.ts
start_app clickstream consumers/clickstream/main.ts
start_app api src/api/main.ts
# The warehouse consumer gets ready once the capture has created the topics
# (with the first changes), so it is only watched for dying here.
wait_ready capture clickstream api

existing=$("${PSQL_SRC[@]}" -c "SELECT count(*) FROM customers" 2>/dev/null || echo 0)
if [[ $existing -gt 0 && $ADD != 1 ]]; then
  echo "The source already holds $existing customers from an earlier demo run: not generating more"
  echo "(npm run demo -- --add, or DEMO_ADD=1, generates another batch on top)."
else
  npx tsx src/cli/generate.ts --customers "${DEMO_CUSTOMERS:-1000}" --products "${DEMO_PRODUCTS:-200}" --orders "${DEMO_ORDERS:-3000}"
  check_alive
  # Visitors browse the catalogue the source now holds and place its orders.
  npx tsx src/generator/clickstream-cli.ts --from-source --visitors "${DEMO_VISITORS:-500}"
fi

echo "waiting for the warehouse to catch up with the source..."
deadline=$((SECONDS + ${DEMO_TIMEOUT:-300}))
while :; do
  src=$("${PSQL_SRC[@]}" -c "SELECT (SELECT count(*) FROM customers) || '/' || (SELECT count(*) FROM orders) || '/' || (SELECT count(*) FROM order_items)")
  wh=$("${PSQL_WH[@]}" -c "SELECT (SELECT count(*) FROM staging.stg_customers) || '/' || (SELECT count(*) FROM staging.stg_orders) || '/' || (SELECT count(*) FROM staging.stg_order_items)" 2>/dev/null || echo "-")
  echo "  source customers/orders/lines $src   warehouse $wh"
  check_alive
  [[ $src == "$wh" ]] && break
  if (( SECONDS > deadline )); then
    echo "the warehouse did not catch up in time; see ${APP#"$ROOT"/}/*.log" >&2
    exit 1
  fi
  sleep 2
done

echo "caught up $((SECONDS - T0)) s after the demo started"
echo
echo "top customers by lifetime value (analytics.customer_lifetime_value):"
psql -X -h 127.0.0.1 -p "${STACK_PG_PORT:-55432}" -U postgres -d warehouse -c \
  "SELECT customer_id, customer_segment, total_orders, total_revenue, avg_order_value, value_segment, frequency_segment
     FROM analytics.customer_lifetime_value ORDER BY total_revenue DESC LIMIT 5"
top=$("${PSQL_WH[@]}" -c "SELECT customer_id FROM analytics.customer_lifetime_value ORDER BY total_revenue DESC LIMIT 1")
echo "clickstream (analytics.mart_cart_value):"
psql -X -h 127.0.0.1 -p "${STACK_PG_PORT:-55432}" -U postgres -d warehouse -c \
  "SELECT date_day, sessions, sessions_with_cart, converted_sessions, abandoned_cart_value, conversion_rate
     FROM analytics.mart_cart_value ORDER BY date_day DESC LIMIT 3" || true
if [[ -n $top ]]; then
  echo "GET http://127.0.0.1:$API_PORT/customers/$top/clv"
  # Redis follows Postgres within about a second (the outbox flush).
  for _ in $(seq 1 30); do curl -sf "http://127.0.0.1:$API_PORT/customers/$top/clv" && echo && break; sleep 0.5; done
fi
echo
echo "The pipeline keeps running: change rows in the shop database and watch the warehouse follow."
echo "  npm run generate -- --orders 0 --rate 50 --duration 60   # steady traffic"
echo "  npm run demo -- stop                                     # stop capture, consumers, API"
echo "  npm run stack:down                                       # stop the servers"
