#!/usr/bin/env bash
# Image-sync benchmark: `dth image sync` side by side with `skopeo sync --all`, in one run, between
# loopback docker-registry instances (data on tmpfs). See bench/README.md.
#
# Fixture: 30 images in 10 repositories sharing three base images (4 of them multi-arch indexes),
# written as an OCI layout by imagehelper.py and pushed once with `skopeo copy --all`.
# Scenarios:
#   cold   into an empty registry: dth (one run, whole registry) vs skopeo sync --all (one run, YAML
#          source listing the 10 repositories; its blob-info cache is deleted first)
#   warm   the same again, nothing changed
# Requests are counted from the registries' access logs.
#
# Environment (defaults in brackets):
#   DTH=path          dth binary [target/release/dth]; BENCH_BUILD=1 builds it first [0]
#   BENCH_REPEAT=N    runs per (tool, scenario), fresh destination registries each time; medians [1]
#   BENCH_SHM=/dev/shm  BENCH_LOG_DIR [target/bench/images-DATE]  BENCH_KEEP=1 keeps the data
# Output: one table, the ratios, and a last line `RESULT key=value ...`. Exit 1 if a check failed.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
: "${BENCH_BUILD:=0}" "${BENCH_REPEAT:=1}" "${BENCH_SHM:=/dev/shm}" "${BENCH_KEEP:=0}"
: "${BENCH_LOG_DIR:=$ROOT/target/bench/images-$(date +%Y%m%d-%H%M%S)}"
: "${DTH:=$ROOT/target/release/dth}" "${RCLONE:=rclone}"
IMG="python3 $BENCH_DIR/imagehelper.py"

mkdir -p "$BENCH_LOG_DIR"
W=$(mktemp -d "$BENCH_SHM/dth-bench-images.XXXXXX")
L=$BENCH_LOG_DIR
source "$BENCH_DIR/lib.sh"
: >"$ROWS"
unset AWS_CA_BUNDLE

cleanup() {
  stop_all
  if [ "$BENCH_KEEP" = 1 ]; then log "data kept in $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

command -v docker-registry >/dev/null || die "docker-registry not found: run scripts/install-peers"
command -v skopeo >/dev/null || die "skopeo not found: run scripts/install-peers"
[ -x /usr/bin/time ] || die "/usr/bin/time not found (Debian package time)"
if [ "$BENCH_BUILD" = 1 ]; then (cd "$ROOT" && cargo build --release -p dth); fi
HAVE_DTH=1
"$DTH" image sync --help >/dev/null 2>&1 || { log "no usable dth at $DTH: peer only"; HAVE_DTH=0; }

# start_registry NAME -> ${NAME}_HOST, ${NAME}_LOG; data under $W/NAME
start_registry() {
  local name=$1 port dir=$W/$1
  rm -rf "$dir"
  mkdir -p "$dir/root"
  port=$(free_port)
  cat >"$dir/config.yml" <<YML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $dir/root
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$port
  secret: bench
YML
  docker-registry serve "$dir/config.yml" >"$L/$name.registry.log" 2>&1 &
  PIDS+=($!)
  printf -v "${name}_PID" %s "$!"
  $HELPER waitport "$port" 30 || die "registry $name did not start (see $L/$name.registry.log)"
  printf -v "${name}_HOST" %s "127.0.0.1:$port"
  printf -v "${name}_LOG" %s "$L/$name.registry.log"
}
stop_registry() { # NAME
  local pid_var="${1}_PID"
  kill "${!pid_var}" 2>/dev/null || true
  wait "${!pid_var}" 2>/dev/null || true
}
log_size() { $IMG size "$1"; }
# requests LOG OFFSET FIELD
requests() { $IMG requests "$1" "$2" | tr ' ' '\n' | awk -F= -v k="$3" '$1 == k { print $2 }'; }

log "fixture: 30 images in 10 repositories"
$IMG fixture "$W/layout" >"$W/refs.txt"
start_registry src
while read -r ref image; do
  skopeo copy --all --quiet --dest-tls-verify=false "oci:$W/layout:$ref" "docker://$src_HOST/$image"
done <"$W/refs.txt"
unique_mib=$(du -sm "$W/layout/blobs" | cut -f1)
log "pushed; $unique_mib MiB of unique blobs"

{
  echo "$src_HOST:"
  echo "  tls-verify: false"
  echo "  images:"
  for r in 0 1 2 3 4 5 6 7 8 9; do echo "    r$r: []"; done
} >"$W/skopeo-sync.yaml"

# check_copy HOST: every tag's manifest digest at HOST equals the source's
check_copy() {
  local host=$1 tool=$2 bad=0 ref image a b
  while read -r ref image; do
    a=$(skopeo inspect --raw --tls-verify=false "docker://$src_HOST/$image" | sha256sum | cut -c1-64)
    b=$(skopeo inspect --raw --tls-verify=false "docker://$host/$image" 2>/dev/null | sha256sum | cut -c1-64)
    [ "$a" = "$b" ] || bad=$((bad + 1))
  done <"$W/refs.txt"
  [ "$bad" = 0 ] || fail "$tool: $bad of 30 images differ from the source"
}

declare -A WALL RSS CPU REQ_SRC REQ_DST
run_tool() { # TOOL(dth|skopeo) SCENARIO(cold|warm) DST_HOST REPEAT
  local tool=$1 sc=$2 host=$3 i=$4 name="$1-$2-$4" so do
  so=$(log_size "$src_LOG"); do=$(log_size "$dst_LOG")
  if [ "$tool" = dth ]; then
    measure "$name" "$DTH" image sync "docker://$src_HOST" "docker://$host" \
      --src-tls-verify=false --dst-tls-verify=false --json
    [ "$M_RC" = 0 ] || fail "$name: dth exit $M_RC (see $L/$name.err)"
  else
    [ "$sc" = cold ] && rm -f /var/lib/containers/cache/blob-info-cache-v1.boltdb
    measure "$name" skopeo sync --all --src yaml --dest docker --dest-tls-verify=false \
      "$W/skopeo-sync.yaml" "$host"
    [ "$M_RC" = 0 ] || fail "$name: skopeo exit $M_RC (see $L/$name.err)"
  fi
  sleep 0.3
  WALL[$tool-$sc]+="$M_WALL "
  RSS[$tool-$sc]+="$M_RSS "
  CPU[$tool-$sc]+="$M_CPU "
  REQ_SRC[$tool-$sc]=$($IMG requests "$src_LOG" "$so")
  REQ_DST[$tool-$sc]=$($IMG requests "$dst_LOG" "$do")
}

for i in $(seq 1 "$BENCH_REPEAT"); do
  for tool in skopeo dth; do
    [ "$tool" = dth ] && [ "$HAVE_DTH" = 0 ] && continue
    start_registry dst
    log "$tool cold (run $i) into $dst_HOST"
    run_tool "$tool" cold "$dst_HOST" "$i"
    check_copy "$dst_HOST" "$tool"
    log "$tool warm (run $i)"
    run_tool "$tool" warm "$dst_HOST" "$i"
    stop_registry dst
  done
done

field() { printf '%s\n' "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k { print $2 }'; }
for key in skopeo-cold dth-cold skopeo-warm dth-warm; do
  tool=${key%-*} sc=${key#*-}
  [ -n "${WALL[$key]:-}" ] || continue
  # shellcheck disable=SC2086
  wall=$(median ${WALL[$key]}); rss=$(maxof ${RSS[$key]}); cpu=$(median ${CPU[$key]})
  s=${REQ_SRC[$key]} d=${REQ_DST[$key]}
  note="req src/dst $(field "$s" total)/$(field "$d" total); manifest GET $(field "$s" manifest_get)/$(field "$d" manifest_get), HEAD $(field "$s" manifest_head)/$(field "$d" manifest_head), PUT -/$(field "$d" manifest_put); blob GET $(field "$s" blob_get), uploads $(field "$d" upload) (mounts $(field "$d" mount), self-mount probes $(field "$d" mount_self))"
  row "$sc: 30 images, $unique_mib MiB unique" "$tool" "$wall" "$(rate 30 "$wall")" "img/s" "$rss" "$cpu" "$note"
done
print_table

cold_ratio=$(ratio "$(median ${WALL[skopeo-cold]})" "$(median ${WALL[dth-cold]:-NA})")
warm_ratio=$(ratio "$(median ${WALL[skopeo-warm]})" "$(median ${WALL[dth-warm]:-NA})")
dth_warm_dst_heads=$(field "${REQ_DST[dth-warm]:-}" manifest_head)
dth_warm_dst_total=$(field "${REQ_DST[dth-warm]:-}" total)
dth_cold_total=$(( $(field "${REQ_SRC[dth-cold]:-total=0}" total) + $(field "${REQ_DST[dth-cold]:-total=0}" total) ))
sk_cold_total=$(( $(field "${REQ_SRC[skopeo-cold]}" total) + $(field "${REQ_DST[skopeo-cold]}" total) ))
echo
echo "cold: skopeo / dth wall = $cold_ratio (target >= 3); warm no-op: skopeo / dth wall = $warm_ratio (target >= 10)"
echo "dth warm destination requests: $dth_warm_dst_total ($dth_warm_dst_heads manifest HEADs for 30 tags)"
if [ "${#FAILURES[@]}" -gt 0 ]; then
  echo "checks failed:"
  printf '  %s\n' "${FAILURES[@]}"
fi
echo "RESULT cold_ratio=$cold_ratio warm_ratio=$warm_ratio dth_cold_s=$(median ${WALL[dth-cold]:-NA}) skopeo_cold_s=$(median ${WALL[skopeo-cold]}) dth_warm_s=$(median ${WALL[dth-warm]:-NA}) skopeo_warm_s=$(median ${WALL[skopeo-warm]}) dth_cold_requests=$dth_cold_total skopeo_cold_requests=$sk_cold_total dth_warm_dst_heads=${dth_warm_dst_heads:-NA} checks_failed=${#FAILURES[@]}"
[ "${#FAILURES[@]}" = 0 ]
