#!/usr/bin/env bash
# Portal benchmark: how long the hub takes to answer the portal's heaviest pages at size, on the
# embedded SQLite store (a file on disk): the overview (every task's latest run) and the task list
# with 1,000 tasks (first, middle and a
# searched page; each row shows its latest run's counters) and the task page showing the items of
# a run of 1,000,000 items (first page, a later page by cursor, only the dead items, a key prefix;
# with the run's counters, history, charts and events around them). Each URL is asked
# BENCH_PORTAL_REPEAT times over loopback with a signed-in session; the table shows the median
# and the slowest answer (time to the last byte, as curl measures it), and the JSON API's answer
# for the same data beside it.
#
# Usage: bench/portal.sh
#
# Environment (defaults in brackets):
#   BENCH_BUILD=0|1          build dth and the seeding example in release mode first [1]
#   BENCH_PORTAL_TASKS=N     tasks in the store [1000]
#   BENCH_PORTAL_ITEMS=M     items of the big run [1000000]
#   BENCH_PORTAL_REPEAT=R    answers timed per URL [20]
#   BENCH_DISK=/var/tmp      where the SQLite file lives
#   BENCH_LOG_DIR            [target/bench/portal-DATE]
# Output: one table and a last line `RESULT tasks_page_ms=… items_page_ms=… …` (medians).
# Target: every portal page's median under 200 ms. Exit 1 when one is not.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)

: "${BENCH_BUILD:=1}" "${BENCH_PORTAL_TASKS:=1000}" "${BENCH_PORTAL_ITEMS:=1000000}"
: "${BENCH_PORTAL_REPEAT:=20}" "${BENCH_DISK:=/var/tmp}"
: "${BENCH_LOG_DIR:=$ROOT/target/bench/portal-$(date +%Y%m%d-%H%M%S)}"
TARGET_MS=200

L=$BENCH_LOG_DIR
mkdir -p "$L" "$BENCH_DISK"
W=$(mktemp -d "$BENCH_DISK/dth-bench-portal.XXXXXX")
SERVE_PID=
cleanup() {
  [ -n "$SERVE_PID" ] && kill "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
if [ "$BENCH_BUILD" = 1 ]; then
  log "building dth and the seeding example (release)"
  (cd "$ROOT" && cargo build --release -q -p dth --bin dth && cargo build --release -q -p dth-store --example portal_seed)
fi
DTH=${DTH:-$TARGET_DIR/release/dth}
SEED=${SEED:-$TARGET_DIR/release/examples/portal_seed}
[ -x "$DTH" ] || die "no $DTH (BENCH_BUILD=1 builds it)"
[ -x "$SEED" ] || die "no $SEED (BENCH_BUILD=1 builds it)"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"
DATA="$W/data"

serve() {
  "$DTH" serve --no-workers --data-dir "$DATA" --listen "127.0.0.1:$PORT" >>"$L/serve.out" 2>>"$L/serve.err" &
  SERVE_PID=$!
  for _ in $(seq 1 100); do
    curl -fs "$BASE/health" >/dev/null 2>&1 && return 0
    kill -0 "$SERVE_PID" 2>/dev/null || die "dth serve exited (see $L/serve.err)"
    python3 -c 'import time; time.sleep(0.1)'
  done
  die "dth serve did not answer /health"
}
stop_serve() { kill "$SERVE_PID"; wait "$SERVE_PID" 2>/dev/null || true; SERVE_PID=; }

log "first start: the admin account and the store's tables"
serve
PASSWORD=$(sed -n 's/.*temporary password (shown once): //p' "$L/serve.out" | head -1)
[ -n "$PASSWORD" ] || die "no temporary password on dth serve's stdout"
stop_serve

log "seeding $BENCH_PORTAL_TASKS tasks and a run of $BENCH_PORTAL_ITEMS items"
SEEDED=$( { /usr/bin/time -f "%e" "$SEED" "sqlite://$DATA/dth.db" "$BENCH_PORTAL_TASKS" "$BENCH_PORTAL_ITEMS"; } 2>"$L/seed.err")
TASK=$(sed -n 's/^task=\([^ ]*\) .*/\1/p' <<<"$SEEDED")
RUN=$(sed -n 's/.* run=\([0-9]*\)$/\1/p' <<<"$SEEDED")
[ -n "$TASK" ] && [ -n "$RUN" ] || die "seeding printed no task and run: $SEEDED"
log "seeded in $(tail -1 "$L/seed.err") s: task $TASK, run $RUN"

serve
JAR="$W/cookies"
NEW_PASSWORD='Bench-Portal-42!'
session() {
  curl -fs -c "$JAR" -b "$JAR" -H "Origin: $BASE" -H 'Content-Type: application/json' "$@"
}
CSRF=$(session -X POST "$BASE/api/v1/session" -d "{\"email\":\"admin@localhost\",\"password\":\"$PASSWORD\"}" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["csrf_token"])')
CSRF=$(session -X PUT -H "X-CSRF-Token: $CSRF" "$BASE/api/v1/me/password" \
  -d "{\"current_password\":\"$PASSWORD\",\"new_password\":\"$NEW_PASSWORD\"}" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["csrf_token"])')
[ -n "$CSRF" ] || die "could not sign in"

# A later page of the big run's items: its items were inserted first, so ids run from 1.
MID_ID=$((BENCH_PORTAL_ITEMS / 2))

# time_url NAME URL: R answers; prints "NAME median_ms max_ms status bytes".
time_url() {
  local name=$1 url=$2 i status
  : >"$L/$name.times"
  for i in $(seq 1 "$BENCH_PORTAL_REPEAT"); do
    curl -s -o "$L/$name.body" -b "$JAR" -w '%{http_code} %{time_total}\n' "$url" >>"$L/$name.times"
  done
  status=$(awk '{print $1}' "$L/$name.times" | sort -u | tr '\n' ',' | sed 's/,$//')
  awk -v n="$name" -v s="$status" -v b="$(wc -c <"$L/$name.body")" '{print $2 * 1000}' "$L/$name.times" |
    sort -n | awk -v n="$name" -v s="$status" -v b="$(wc -c <"$L/$name.body")" \
      '{v[NR]=$1} END {printf "%s %.1f %.1f %s %s\n", n, v[int((NR+1)/2)], v[NR], s, b}'
}

log "timing $BENCH_PORTAL_REPEAT answers per URL"
MIDDLE_PAGE=$(( (BENCH_PORTAL_TASKS / 25 + 1) / 2 ))
{
  time_url overview "$BASE/"
  time_url tasks_page "$BASE/tasks"
  time_url tasks_middle_page "$BASE/tasks?page=$MIDDLE_PAGE"
  time_url tasks_search "$BASE/tasks?q=task%200999"
  time_url api_tasks "$BASE/api/v1/tasks"
  time_url items_page "$BASE/tasks/$TASK?run=$RUN"
  time_url items_later_page "$BASE/tasks/$TASK?run=$RUN&after=$MID_ID"
  time_url items_dead "$BASE/tasks/$TASK?run=$RUN&state=dead"
  time_url items_prefix "$BASE/tasks/$TASK?run=$RUN&prefix=photos/500/"
  time_url api_items "$BASE/api/v1/runs/$RUN/items?limit=100"
} >"$L/rows.txt"

printf '\n%-20s %10s %10s %8s %10s\n' "page" "median ms" "max ms" "status" "bytes"
awk '{printf "%-20s %10s %10s %8s %10s\n", $1, $2, $3, $4, $5}' "$L/rows.txt"
printf '\ntasks=%s items=%s repeat=%s store=sqlite (%s); target: portal pages under %s ms (median)\n' \
  "$BENCH_PORTAL_TASKS" "$BENCH_PORTAL_ITEMS" "$BENCH_PORTAL_REPEAT" "$BENCH_DISK" "$TARGET_MS"

result="RESULT"
slow=0
while read -r name median _max status _bytes; do
  result+=" ${name}_ms=$median"
  [ "$status" = 200 ] || { log "CHECK FAILED: $name answered $status"; slow=1; }
  case $name in
    api_*) ;;
    *) awk -v m="$median" -v t="$TARGET_MS" 'BEGIN {exit !(m >= t)}' && { log "$name: ${median} ms is not under $TARGET_MS ms"; slow=1; } ;;
  esac
done <"$L/rows.txt"
echo "$result"
exit "$slow"
