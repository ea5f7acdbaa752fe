#!/usr/bin/env bash
# Store benchmark: item state changes per second through dth-store's queue protocol (batched claim with
# lease, batched ack) on SQLite (a file on disk) and PostgreSQL (a throwaway server from dth-testkit),
# what the items cost in space and WAL (PostgreSQL: items table, heap and index bytes per row after the
# enqueue, WAL bytes per item of the enqueue, the drain and the purge; SQLite: database bytes per item),
# the retention purge's rate, then `dth worker` scale-out throughput (bench/store-scaleout.sh).
# See bench/README.md for what is measured.
#
# Usage: bench/store.sh
#
# Environment (defaults in brackets):
#   BENCH_BUILD=0|1        build the bench binary first [1]
#   BENCH_STORE_ITEMS=N    items queued then drained per backend [20000]
#   BENCH_STORE_WORKERS=K  concurrent simulated workers (tokio tasks, one process) [4]
#   BENCH_STORE_BATCH=B    items per claim and per ack call [100]
#   BENCH_STORE_BACKENDS   comma-separated [sqlite,postgres]
#   BENCH_DISK=/var/tmp    where the SQLite file lives (on disk, not tmpfs)
#   BENCH_LOG_DIR          [target/bench/store-DATE]
#   BENCH_SCALEOUT=0|1     run the dth worker scale-out part [1] (bench/store-scaleout.sh:
#                          BENCH_SCALEOUT_OBJECTS [4000], BENCH_SCALEOUT_SIZE [16384], BENCH_SCALEOUT_WORKERS [1 2 4])
#   CARGO_TARGET_DIR       where cargo builds [target]
# Output: one table and a last line `RESULT sqlite_changes_per_s=… postgres_changes_per_s=… …
#   postgres_item_bytes=… postgres_heap_bytes=… postgres_index_bytes=… postgres_wal_enqueue_bytes=…
#   postgres_wal_drain_bytes=… postgres_wal_purge_bytes=… sqlite_item_bytes=… sqlite_purge_per_s=…
#   postgres_purge_per_s=… checks_failed=…` (bytes per item).
# Target: >= 5,000 state changes/s on SQLite. Exit 1 if a run failed its checks (every item done once,
# counters exact, run DONE) or SQLite is under the target.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)

: "${BENCH_BUILD:=1}" "${BENCH_STORE_ITEMS:=20000}" "${BENCH_STORE_WORKERS:=4}" "${BENCH_STORE_BATCH:=100}"
: "${BENCH_STORE_BACKENDS:=sqlite,postgres}" "${BENCH_DISK:=/var/tmp}" "${BENCH_SCALEOUT:=1}"
: "${BENCH_LOG_DIR:=$ROOT/target/bench/store-$(date +%Y%m%d-%H%M%S)}"
: "${BENCH_SHM:=/dev/shm}" "${RCLONE:=rclone}"   # lib.sh defines rclone helpers

mkdir -p "$BENCH_LOG_DIR" "$BENCH_DISK"
W=$(mktemp -d "$BENCH_SHM/dth-bench-store.XXXXXX")
L=$BENCH_LOG_DIR
source "$BENCH_DIR/lib.sh"
: >"$ROWS"

cleanup() { stop_all; rm -rf "$W"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/store_bench
if [ "$BENCH_BUILD" = 1 ]; then
  log "building store_bench (release)"
  (cd "$ROOT" && cargo build --release -q -p dth-store --example store_bench) || die "build failed"
fi
[ -x "$BIN" ] || die "$BIN missing: run with BENCH_BUILD=1"
# Others rebuild while we run: measure one copy of the binary.
cp "$BIN" "$W/store_bench"
BIN=$W/store_bench

declare -A CHANGES=([sqlite]=NA [postgres]=NA)
declare -A ITEM_BYTES=([sqlite]=NA [postgres]=NA) PURGE_RATE=([sqlite]=NA [postgres]=NA)
PG_HEAP=NA PG_INDEX=NA PG_WAL_ENQUEUE=NA PG_WAL_DRAIN=NA PG_WAL_PURGE=NA
N=$BENCH_STORE_ITEMS K=$BENCH_STORE_WORKERS B=$BENCH_STORE_BATCH
IFS=, read -ra BACKENDS <<<"$BENCH_STORE_BACKENDS"
for be in "${BACKENDS[@]}"; do
  log "$be: $N items, $K workers, batch $B"
  measure "store-$be" "$BIN" --backends "$be" --items "$N" --workers "$K" --batch "$B" --dir "$BENCH_DISK"
  if [ "$M_RC" != 0 ]; then
    fail "$be: store_bench exited $M_RC (see $L/store-$be.err)"
    row "queue $N items, $K workers, batch $B" "dth-store $be" "$M_WALL" NA "changes/s" "$M_RSS" "$M_CPU" "FAILED"
    continue
  fi
  read -r _ _ ins drain changes claim_ms ack_ms < <(grep '^ROW ' "$L/store-$be.out" | tail -1)
  CHANGES[$be]=$changes
  where="file in $BENCH_DISK"
  [ "$be" = postgres ] && where="local server, fsync=off; cpu includes the server"
  row "queue $N items, $K workers, batch $B" "dth-store $be ($where)" "$drain" "$changes" "changes/s" \
    "$M_RSS" "$M_CPU" "insert ${ins} items/s; claim ${claim_ms} ms, ack ${ack_ms} ms per call"
  read -r _ _ total heap index done_total wal_enq wal_drain wal_purge < <(grep '^SIZE ' "$L/store-$be.out" | tail -1)
  read -r _ _ purge_s purge_rate < <(grep '^PURGE ' "$L/store-$be.out" | tail -1)
  ITEM_BYTES[$be]=$total PURGE_RATE[$be]=$purge_rate
  if [ "$be" = postgres ]; then
    PG_HEAP=$heap PG_INDEX=$index PG_WAL_ENQUEUE=$wal_enq PG_WAL_DRAIN=$wal_drain PG_WAL_PURGE=$wal_purge
    row "space of $N items" "dth-store $be (items: heap + TOAST + indexes)" NA "$total" "B/item" "-" "-" \
      "heap $heap + indexes $index B/row after the enqueue; $done_total B/row after the drain (no vacuum yet)"
    row "WAL of $N items" "dth-store $be" NA "$((wal_enq + wal_drain))" "B/item" "-" "-" \
      "enqueue $wal_enq + drain $wal_drain B/item; purge $wal_purge B/item"
  else
    row "space of $N items" "dth-store $be (the database file)" NA "$total" "B/item" "-" "-" \
      "after the enqueue; $done_total B/item after the drain"
  fi
  row "purge $N items (batches of 10,000)" "dth-store $be" "$purge_s" "$purge_rate" "items/s" "-" "-" \
    "the run's items deleted as retention does; its counters checked after"
done

# ---- dth worker scale-out --------------------------------------------------------------------
SCALEOUT_RESULT="worker_1_objects_per_s=NA worker_2_objects_per_s=NA worker_4_objects_per_s=NA"
source "$BENCH_DIR/store-scaleout.sh"
if [ "$BENCH_SCALEOUT" = 1 ]; then bench_worker_scaleout; fi

print_table
echo
if [ "${CHANGES[sqlite]}" != NA ] && [ "${CHANGES[sqlite]}" -lt 5000 ]; then
  fail "sqlite: ${CHANGES[sqlite]} state changes/s is under the 5,000/s target"
fi
if [ "${#FAILURES[@]}" -gt 0 ]; then
  echo "FAILURES:"
  printf '  %s\n' "${FAILURES[@]}"
fi
echo "logs: $L"
echo "RESULT sqlite_changes_per_s=${CHANGES[sqlite]} postgres_changes_per_s=${CHANGES[postgres]} $SCALEOUT_RESULT" \
  "postgres_item_bytes=${ITEM_BYTES[postgres]} postgres_heap_bytes=$PG_HEAP postgres_index_bytes=$PG_INDEX" \
  "postgres_wal_enqueue_bytes=$PG_WAL_ENQUEUE postgres_wal_drain_bytes=$PG_WAL_DRAIN" \
  "postgres_wal_purge_bytes=$PG_WAL_PURGE sqlite_item_bytes=${ITEM_BYTES[sqlite]}" \
  "sqlite_purge_per_s=${PURGE_RATE[sqlite]} postgres_purge_per_s=${PURGE_RATE[postgres]} checks_failed=${#FAILURES[@]}"
if [ "${#FAILURES[@]}" -gt 0 ]; then exit 1; fi
