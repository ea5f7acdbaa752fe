#!/usr/bin/env bash
# Event-driven copy latency: from PutObject into a bucket to a verified copy at the destination,
# through the real notification path — moto (server mode) delivers the bucket's
# s3:ObjectCreated:* notifications to its SQS queue, `dth serve` long-polls the queue, queues each
# change in the task's event run and a worker copies and verifies it into s3s-fs. BENCH_EVENTS
# uploads of 1 KiB are made at BENCH_EVENTS_RATE per second; a watcher lists the destination
# every 20 ms. There is no peer tool for this (rclone and skopeo have no event mode).
#
# Usage: bench/events.sh
#
# Environment (defaults in brackets):
#   BENCH_BUILD=0|1        build dth in release mode first [1]
#   DTH_BIN=PATH           the dth binary [target/release/dth, or $CARGO_TARGET_DIR/release/dth]
#   BENCH_EVENTS=N         uploads [1000]
#   BENCH_EVENTS_RATE=R    uploads per second [20]
#   BENCH_LOG_DIR          [target/bench/events-DATE]
# Output: the latency percentiles and a last line `RESULT events_p50_ms=… events_p99_ms=… …`.
# Exit 1 when an object was not copied, differs, or its item is not done and verified.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)

: "${BENCH_BUILD:=1}" "${BENCH_EVENTS:=1000}" "${BENCH_EVENTS_RATE:=20}"
: "${BENCH_LOG_DIR:=$ROOT/target/bench/events-$(date +%Y%m%d-%H%M%S)}"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
: "${DTH_BIN:=$TARGET/release/dth}"
TOOLS=${DTH_TOOLS_DIR:-$ROOT/.tools}
RCLONE=$TOOLS/venv/bin/rclone
L=$BENCH_LOG_DIR
mkdir -p "$L"
W=$(mktemp -d /tmp/dth-bench-events.XXXXXX)
source "$BENCH_DIR/lib.sh"

AK=benchaccess
SK=benchsecret0123456789
TOKEN=bench-events-token
trap 'stop_all; rm -rf "$W"' EXIT

"$ROOT/scripts/install-peers"
if [ "$BENCH_BUILD" = 1 ]; then
  log "building dth (release)"
  (cd "$ROOT" && cargo build --release -q -p dth --bin dth)
fi
[ -x "$DTH_BIN" ] || die "no dth binary at $DTH_BIN (set DTH_BIN or BENCH_BUILD=1)"
S3SFS=$TOOLS/bin/s3s-fs
PY=$TOOLS/venv/bin/python

moto_port=$(free_port)
env -u AWS_CA_BUNDLE "$TOOLS/venv/bin/moto_server" -H 127.0.0.1 -p "$moto_port" >"$L/moto.log" 2>&1 &
PIDS+=($!)
$HELPER waitport "$moto_port" 60 || die "moto_server did not start (see $L/moto.log)"
start_s3sfs dst "$W/dst"
hub_port=$(free_port)
env -u AWS_CA_BUNDLE DTH_API_TOKEN=$TOKEN DTH_LOG=warn "$DTH_BIN" serve --data-dir "$W/hub" \
  --listen "127.0.0.1:$hub_port" >"$L/hub.out" 2>"$L/hub.log" &
PIDS+=($!)
$HELPER waitport "$hub_port" 60 || die "dth serve did not start (see $L/hub.log)"

log "$BENCH_EVENTS uploads at $BENCH_EVENTS_RATE/s through moto SQS into dth"
set +e
env -u AWS_CA_BUNDLE "$PY" "$BENCH_DIR/eventshelper.py" "http://127.0.0.1:$moto_port" "$dst_EP" \
  "http://127.0.0.1:$hub_port" "$TOKEN" "$AK" "$SK" "$BENCH_EVENTS" "$BENCH_EVENTS_RATE" \
  | tee "$L/result.txt"
status=${PIPESTATUS[0]}
set -e
exit "$status"
