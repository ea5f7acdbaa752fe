#!/usr/bin/env bash
# The hub against the one-shot sync: the same small objects copied by `dth s3 sync` and by a one-time task of
# `dth serve` (SQLite), in one run, on two s3s-fs servers on tmpfs. See bench/README.md.
#
# Usage: bench/hub.sh                       (~2-4 min on 2 cores)
#        BENCH_HUB_N=20000 BENCH_REPEAT=3 bench/hub.sh
#
# Environment (defaults in brackets):
#   DTH=path              dth binary [$CARGO_TARGET_DIR/release/dth, else target/release/dth]
#   BENCH_BUILD=1         run `cargo build --release -p dth` first [0]
#   BENCH_HUB_N=5000      objects; BENCH_HUB_KIB=16 their size in KiB
#   BENCH_HUB_CONCURRENCY="64 default"   the hub's --concurrency per row ("default": the flag not given)
#   BENCH_HUB_STORE_ON=disk|shm   where the hub's SQLite directory lives [disk: $BENCH_DISK]
#   BENCH_REPEAT=1        runs per row; the table shows the median wall
#   BENCH_HUB_PERF=1      after the rows, one more (untimed) hub run at --concurrency 64 under `perf record`
#                         (flat samples: perf.data, the split by thread and the top symbols in perf.txt) [0]
#   BENCH_SHM=/dev/shm  BENCH_DISK=/var/tmp  BENCH_LOG_DIR [target/bench/hub-DATE]  BENCH_KEEP=1 (keep data)
#   S3SFS                 [.tools/bin/s3s-fs]
# Output: one table, the ratios and a last line `RESULT hub_vs_sync_64=… hub_vs_sync_default=… …`
# (sync wall / hub wall: 1 means the hub is as fast as the sync). Exit 1 if a check failed.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)

: "${BENCH_BUILD:=0}" "${BENCH_HUB_N:=5000}" "${BENCH_HUB_KIB:=16}" "${BENCH_HUB_CONCURRENCY:=64 default}"
: "${BENCH_HUB_STORE_ON:=disk}" "${BENCH_REPEAT:=1}" "${BENCH_KEEP:=0}" "${BENCH_HUB_PERF:=0}"
: "${BENCH_SHM:=/dev/shm}" "${BENCH_DISK:=/var/tmp}"
: "${BENCH_LOG_DIR:=$ROOT/target/bench/hub-$(date +%Y%m%d-%H%M%S)}"
: "${S3SFS:=$ROOT/.tools/bin/s3s-fs}" "${RCLONE:=rclone}"
: "${DTH:=${CARGO_TARGET_DIR:-$ROOT/target}/release/dth}"

AK=benchaccess
SK=benchsecret0123456789
export DTH_SRC_ACCESS_KEY_ID=$AK DTH_SRC_SECRET_ACCESS_KEY=$SK DTH_DST_ACCESS_KEY_ID=$AK DTH_DST_SECRET_ACCESS_KEY=$SK

mkdir -p "$BENCH_SHM" "$BENCH_LOG_DIR"
W=$(mktemp -d "$BENCH_SHM/dth-bench-hub.XXXXXX")   # objects on tmpfs
L=$BENCH_LOG_DIR
if [ "$BENCH_HUB_STORE_ON" = shm ]; then HUBW=$W/hubs; else HUBW=$(mktemp -d "$BENCH_DISK/dth-bench-hub.XXXXXX"); fi
source "$BENCH_DIR/lib.sh"
: >"$ROWS"

cleanup() {
  stop_all
  if [ "$BENCH_KEEP" = 1 ]; then log "data kept in $W $HUBW"; else rm -rf "$W" "$HUBW"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'log "error (exit $?) at line $LINENO: $BASH_COMMAND"' ERR

[ -x "$S3SFS" ] || die "s3s-fs not found at $S3SFS: run scripts/install-peers"
[ -x /usr/bin/time ] || die "/usr/bin/time not found: apt-get install -y time"
if [ "$BENCH_BUILD" = 1 ]; then
  log "building dth (release)"
  (cd "$ROOT" && cargo build --release -p dth) >"$L/build.log" 2>&1 || die "cargo build failed, see $L/build.log"
fi
[ -x "$DTH" ] && "$DTH" serve --help >/dev/null 2>&1 || die "dth not usable at $DTH (cargo build --release -p dth, or set DTH=)"
log "dth: $DTH ($(date -r "$DTH" '+built %F %T'), sha256 $(sha256sum "$DTH" | cut -c1-12))"
cp "$DTH" "$W/dth"   # others rebuild it while we run
DTH=$W/dth
HUB_TOKEN=bench-$(python3 -c 'import secrets; print(secrets.token_hex(16))')
log "logs: $L   objects: $W   hub stores: $HUBW"

# ------------------------------------------------------------------------------------------------ data
N=$BENCH_HUB_N
start_s3sfs SRC "$W/src"
start_s3sfs DST "$W/dst"
log "writing $N x $BENCH_HUB_KIB KiB objects into the source (files with their ETag sidecar, 16 prefixes)"
python3 - "$SRC_DIR" src "$N" "$((BENCH_HUB_KIB * 1024))" <<'PY'
import base64, hashlib, json, os, sys
root, bucket, n, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
enc = lambda s: base64.urlsafe_b64encode(s.encode()).decode().rstrip("=")
for i in range(n):
    key = f"p{i % 16:02d}/o{i:06d}"
    path = os.path.join(root, bucket, key)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = os.urandom(size)
    with open(path, "wb") as f:
        f.write(data)
    with open(os.path.join(root, f".bucket-{enc(bucket)}.object-{enc(key)}.internal.json"), "w") as f:
        json.dump({"e_tag": hashlib.md5(data).hexdigest()}, f)
PY
mkdir -p "$DST_DIR/dst"
SCEN="$N x $BENCH_HUB_KIB KiB"

SERVER_PIDS="$SRC_PID $DST_PID"

# ------------------------------------------------------------------------------------------------ the sync
declare -A SYNC_WALL=()
sync_row() { # LABEL ARGS...
  local label=$1
  shift
  run_case "$SCEN" "dth s3 sync $label" "$N" obj/s "clear_bucket $DST_DIR dst" \
    "check_dth \$NAME $SRC_DIR/src $DST_DIR/dst $DST_DIR copied=$N verified=$N" -- \
    "$DTH" s3 sync s3://src s3://dst --src-endpoint "$SRC_EP" --dst-endpoint "$DST_EP" --json "$@"
  [ "$RES_OK" = 1 ] && SYNC_WALL[$label]=$RES_WALL || SYNC_WALL[$label]=NA
}
sync_row defaults
sync_row "--transfers 64" --transfers 64

# ------------------------------------------------------------------------------------------------ the hub
# hub_once CONCURRENCY TAG : a fresh `dth serve` (SQLite in a new directory), one one-time task through the API,
# timed from the POST to the run's ended_at (polled every 250 ms). Sets H_WALL H_RUN H_FIND H_START H_CPU H_RSS
# H_OK H_NOTE.
hub_once() {
  local conc=$1 tag=$2 args=() spec out c0
  [ "$conc" = default ] || args=(--concurrency "$conc")
  clear_bucket "$DST_DIR" dst
  sync
  sleep 0.3
  start_hub HUB "$DTH" "$HUBW/$tag" "${args[@]}"
  spec=$(hub_s3_task_spec "hub bench $tag" "$SRC_EP" src "$DST_EP" dst)
  c0=$(servers_cpu $SERVER_PIDS)
  local rc=0 perf_pid=""
  if [ -n "${HUB_PERF_DATA:-}" ]; then
    # Flat samples: a release build has no frame pointers, and DWARF call graphs take many minutes to report.
    perf record -F 999 -p "$HUB_PID" -o "$HUB_PERF_DATA" >"$L/perf.record.log" 2>&1 &
    perf_pid=$!
    sleep 1
  fi
  out=$(HUB_TOKEN=$HUB_TOKEN python3 - "$HUB_API" "$HUB_PID" "$spec" "$L/hub-$tag.metrics" <<'PY'
import json, os, re, sys, time, urllib.request
api, pid, spec, metrics_file = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
auth = {"Authorization": "Bearer " + os.environ["HUB_TOKEN"]}
hz = os.sysconf("SC_CLK_TCK")
def cpu():
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / hz
def switches():
    # Context switches of all the hub's threads (its store's threads included): a hop to SQLite's
    # thread and back costs two.
    n = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        for l in open(f"/proc/{pid}/task/{t}/status"):
            if "ctxt_switches" in l:
                n += int(l.split()[1])
    return n
def get(path):
    with urllib.request.urlopen(urllib.request.Request(api + path, headers=auth), timeout=30) as r:
        return json.load(r)
c0, s0 = cpu(), switches()
t0 = time.time()
req = urllib.request.Request(api + "/api/v1/tasks", data=spec.encode(), method="POST",
                             headers={**auth, "Content-Type": "application/json"})
with urllib.request.urlopen(req, timeout=30) as r:
    task = json.load(r)["id"]
run = None
while time.time() - t0 < 1800:
    run = get(f"/api/v1/tasks/{task}").get("latest_run")
    if run and run["status"] in ("DONE", "FAILED", "STOPPED"):
        break
    time.sleep(0.25)
t1 = time.time()
# The run's own end (Unix ms, same clock) rather than when the poll saw it: polls cost the hub CPU (each
# reads the run's counters), so they are sparse.
end = (run or {}).get("ended_at")
wall = end / 1000 - t0 if end else t1 - t0
hwm = next(int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith("VmHWM"))
# The hub's own account of its store calls: count and seconds per call (dth_store_call_duration_seconds).
with urllib.request.urlopen(urllib.request.Request(api + "/metrics", headers=auth), timeout=30) as r:
    text = r.read().decode()
open(metrics_file, "w").write(text)
calls = {}
for m in re.finditer(r'^dth_store_call_duration_seconds_(sum|count)\{call="([^"]+)"\} (\S+)$', text, re.M):
    calls.setdefault(m.group(2), {})[m.group(1)] = float(m.group(3))
store = ",".join(f"{k}:{int(v.get('count', 0))}/{v.get('sum', 0):.2f}s"
                 for k, v in sorted(calls.items(), key=lambda kv: -kv[1].get("sum", 0)))
ms = lambda a, b: "NA" if a is None or b is None else f"{(b - a) / 1000:.2f}"
c = (run or {}).get("counters", {})
print(f"wall={wall:.2f} seen={t1 - t0:.2f} status={(run or {}).get('status')} run_s={ms(run and run['started_at'], run and run['ended_at'])} "
      f"find_s={ms(run and run['started_at'], run and run['found_at'])} start_s={ms(t0 * 1000, run and run['started_at'])} "
      f"copied={c.get('copied')} dead={c.get('dead')} cpu={cpu() - c0:.2f} switches={switches() - s0} rss_mib={hwm // 1024} store_calls={store}")
PY
) || rc=$?
  if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi
  H_SCPU=$(awk -v a="$c0" -v b="$(servers_cpu $SERVER_PIDS)" 'BEGIN { printf "%.1f", b - a }')
  stop_pid "$HUB_PID"
  log "  hub $tag: $out (servers cpu ${H_SCPU}s)"
  field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $out"; }
  H_WALL=$(field wall) H_RUN=$(field run_s) H_FIND=$(field find_s) H_START=$(field start_s)
  H_CPU=$(field cpu) H_RSS=$(field rss_mib) H_STORE=$(field store_calls)
  H_OK=1 H_NOTE=""
  if [ "$rc" != 0 ] || [ "$(field status)" != DONE ] || [ "$(field copied)" != "$N" ] || [ "$(field dead)" != 0 ]; then
    H_OK=0 H_NOTE="CHECK FAILED: rc=$rc $out"
  elif ! same_tree "$SRC_DIR/src" "$DST_DIR/dst"; then
    H_OK=0 H_NOTE="CHECK FAILED: destination differs from source in $(wc -l <"$L/diff.out") entries"
  elif [ "$(open_uploads "$DST_DIR")" != 0 ]; then
    H_OK=0 H_NOTE="CHECK FAILED: open multipart uploads"
  fi
  [ "$H_OK" = 1 ] || fail "hub $tag: $H_NOTE"
}

declare -A HUB_WALL=()
STORE_LINES=()
for conc in $BENCH_HUB_CONCURRENCY; do
  walls=() runs=() finds=() starts=() cpus=() rsss=() scpus=() ok=1 note=""
  for ((i = 1; i <= BENCH_REPEAT; i++)); do
    hub_once "$conc" "c$conc-$i"
    walls+=("$H_WALL") runs+=("$H_RUN") finds+=("$H_FIND") starts+=("$H_START") cpus+=("$H_CPU") rsss+=("$H_RSS")
    scpus+=("$H_SCPU")
    STORE_LINES+=("  --concurrency $conc, run $i: ${H_STORE//,/, }")
    [ "$H_OK" = 1 ] || { ok=0; note=$H_NOTE; }
  done
  wall=$(median "${walls[@]}")
  [ "$conc" = default ] && shown="(default $("$DTH" serve --help | sed -n 's/.*--concurrency.*\[default: \([0-9]*\)\].*/\1/p'))" || shown=$conc
  [ -n "$note" ] || note="run started ${starts[0]} s after the POST, finder $(median "${finds[@]}") s, run $(median "${runs[@]}") s; servers cpu $(median "${scpus[@]}") s"
  row "$SCEN" "dth serve --concurrency $shown" "$wall" "$(rate "$N" "$wall")" obj/s "$(maxof "${rsss[@]}")" \
    "$(median "${cpus[@]}")" "$note"
  [ "$ok" = 1 ] && HUB_WALL[$conc]=$wall || HUB_WALL[$conc]=NA
done

if [ "$BENCH_HUB_PERF" = 1 ]; then
  command -v perf >/dev/null || die "perf not found: apt-get install -y linux-perf (or BENCH_HUB_PERF=0)"
  log "profiling one more hub run (--concurrency 64) with perf"
  HUB_PERF_DATA=$L/perf.data hub_once 64 perf
  { echo "# by thread (tokio-rt-worker: the async code; sqlx-sqlite-wor: SQLite statements)"
    perf report -i "$L/perf.data" --sort comm --stdio 2>/dev/null | grep -E '^ +[0-9.]+%'
    echo "# by thread and symbol, >= 0.5 %"
    perf report -i "$L/perf.data" --sort comm,dso,symbol --percent-limit 0.5 --stdio 2>/dev/null | grep -E '^ +[0-9.]+%'
  } >"$L/perf.txt" || true
fi

stop_all

# ------------------------------------------------------------------------------------------------ report
print_table
echo
echo "hub wall: from POST /api/v1/tasks to the run's ended_at (DONE, polled every 250 ms); its cpu s: the hub process over"
echo "that time. sync wall and cpu s: the whole process. Both include listing both sides."
echo "the hubs' store calls (dth_store_call_duration_seconds: call:count/seconds summed over concurrent calls):"
printf '%s\n' "${STORE_LINES[@]}"
r64=$(ratio "${SYNC_WALL[--transfers 64]:-NA}" "${HUB_WALL[64]:-NA}")
rdef=$(ratio "${SYNC_WALL[defaults]:-NA}" "${HUB_WALL[default]:-NA}")
echo "ratios (sync wall / hub wall, target >= 0.9; measured in this run):"
echo "  hub_vs_sync_64      = sync --transfers 64 / serve --concurrency 64 = $r64"
echo "  hub_vs_sync_default = sync defaults / serve default concurrency    = $rdef"
if [ "$BENCH_HUB_PERF" = 1 ]; then echo "perf of the profiled run (by thread, then by symbol):"; head -4 "$L/perf.txt"; echo "  more: $L/perf.txt"; fi
report_end
echo "RESULT hub_vs_sync_64=$r64 hub_vs_sync_default=$rdef hub_64_s=${HUB_WALL[64]:-NA} hub_default_s=${HUB_WALL[default]:-NA} sync_64_s=${SYNC_WALL[--transfers 64]:-NA} sync_default_s=${SYNC_WALL[defaults]:-NA} checks_failed=${#FAILURES[@]}"
if [ "${#FAILURES[@]}" -gt 0 ]; then exit 1; fi
