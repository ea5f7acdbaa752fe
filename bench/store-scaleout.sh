# `dth worker` scale-out part of bench/store.sh (sourced): one `dth serve --no-workers` on a throwaway
# PostgreSQL, two s3s-fs on tmpfs, and for K = 1, 2, 4 a fresh one-time task of BENCH_SCALEOUT_OBJECTS
# small objects drained by K `dth worker` processes. Reports objects/s per K (task creation to DONE,
# so the finder is included) and checks that every object was copied and verified exactly once.
# Expects from store.sh: ROOT, W, L, BENCH_BUILD, and lib.sh's helpers.

: "${BENCH_SCALEOUT_OBJECTS:=4000}" "${BENCH_SCALEOUT_SIZE:=16384}" "${BENCH_SCALEOUT_WORKERS:=1 2 4}"

bench_worker_scaleout() {
  local n=$BENCH_SCALEOUT_OBJECTS size=$BENCH_SCALEOUT_SIZE
  if [ "$BENCH_BUILD" = 1 ]; then
    log "building dth and pg_server (release)"
    (cd "$ROOT" && cargo build --release -q -p dth && cargo build --release -q -p dth-testkit --example pg_server) \
      || die "build failed"
  fi
  local dth="$W/dth" pgbin="$W/pg_server"
  cp "$ROOT/target/release/dth" "$dth" && cp "$ROOT/target/release/examples/pg_server" "$pgbin" \
    || die "release binaries missing: run with BENCH_BUILD=1"
  S3SFS=${S3SFS:-$ROOT/.tools/bin/s3s-fs} AK=${AK:-bench-access} SK=${SK:-bench-secret-key}
  [ -x "$S3SFS" ] || die "$S3SFS missing: run scripts/install-peers"

  # PostgreSQL: the server lives as long as pg_server's stdin (a fifo we hold open).
  mkfifo "$W/pg.in"
  "$pgbin" <"$W/pg.in" >"$L/pg.out" 2>"$L/pg.err" &
  PIDS+=($!)
  exec 7>"$W/pg.in"
  local pg="" i
  for i in $(seq 1 120); do
    pg=$(sed -n 's/^URL //p' "$L/pg.out" 2>/dev/null || true)
    [ -n "$pg" ] && break
    sleep 0.5
  done
  [ -n "$pg" ] || die "PostgreSQL did not start (see $L/pg.err)"

  start_s3sfs SSRC "$W/ssrc"
  start_s3sfs SDST "$W/sdst"
  mkdir -p "$SSRC_DIR/src" "$SDST_DIR/dst"
  # s3s-fs serves plain files as objects: write the source directly.
  python3 - "$SSRC_DIR/src" "$n" "$size" <<'PY'
import os, sys
d, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    sub = os.path.join(d, f"p{i % 16:02d}")
    os.makedirs(sub, exist_ok=True)
    with open(os.path.join(sub, f"o{i:06d}"), "wb") as f:
        f.write(os.urandom(size))
PY

  local key token port api
  key=$(python3 -c 'import os; print(os.urandom(32).hex())')
  token=bench-token-$(python3 -c 'import os; print(os.urandom(8).hex())')
  port=$(free_port)
  api="http://127.0.0.1:$port"
  DTH_MASTER_KEY=$key DTH_API_TOKEN=$token "$dth" serve --store "$pg" --data-dir "$W/hub" \
    --listen "127.0.0.1:$port" --no-workers >"$L/serve.out" 2>"$L/serve.err" &
  PIDS+=($!)
  $HELPER waitport "$port" 60 || die "dth serve did not start (see $L/serve.err)"

  local results=() k
  for k in $BENCH_SCALEOUT_WORKERS; do
    clear_bucket "$SDST_DIR" dst
    local spec id t0 t1 status="" body workers=()
    spec=$(python3 - "$SSRC_EP" "$SDST_EP" "$AK" "$SK" "$k" <<'PY'
import json, sys
src, dst, ak, sk, k = sys.argv[1:]
side = lambda ep, b: {"provider": "other", "region": "us-east-1", "endpoint_url": ep, "bucket": b,
    "prefix": "", "credentials": {"kind": "static", "access_key_id": ak, "secret_access_key": sk}}
print(json.dumps({"name": f"scale-out {k}", "kind": "s3", "source": side(src, "src"),
    "destination": side(dst, "dst"), "schedule": "once", "options": {"server_side_copy": False}}))
PY
)
    t0=$(date +%s.%N)
    for i in $(seq 1 "$k"); do
      DTH_MASTER_KEY=$key "$dth" worker --store "$pg" --data-dir "$W/hub" --worker-id "w$k-$i" \
        --concurrency 32 >"$L/worker-$k-$i.out" 2>"$L/worker-$k-$i.err" &
      workers+=($!)
    done
    id=$(curl -sf -H "Authorization: Bearer $token" -H 'Content-Type: application/json' -d "$spec" \
      "$api/api/v1/tasks" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])') \
      || die "creating the task failed"
    for i in $(seq 1 1200); do
      body=$(curl -sf -H "Authorization: Bearer $token" "$api/api/v1/tasks/$id" || true)
      status=$(printf %s "$body" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])' 2>/dev/null || true)
      case "$status" in DONE | ERROR) break ;; esac
      sleep 0.25
    done
    t1=$(date +%s.%N)
    kill "${workers[@]}" 2>/dev/null || true
    wait "${workers[@]}" 2>/dev/null || true
    local copied dead secs rate
    read -r copied dead < <(printf %s "$body" | python3 -c '
import json,sys
c = json.load(sys.stdin)["latest_run"]["counters"]
print(c["copied"], c["dead"])')
    secs=$(python3 -c "print(f'{$t1 - $t0:.2f}')")
    rate=$(python3 -c "print(int($n / ($t1 - $t0)))")
    [ "$status" = DONE ] && [ "$copied" = "$n" ] && [ "$dead" = 0 ] \
      || fail "scale-out with $k workers: status $status, copied $copied of $n, dead $dead"
    [ "$(find "$SDST_DIR/dst" -type f | wc -l)" = "$n" ] || fail "scale-out with $k workers: destination incomplete"
    row "$n x $((size / 1024)) KiB, $k dth worker(s), PostgreSQL" "dth serve + $k x dth worker" "$secs" "$rate" \
      "objects/s" NA NA "create task -> DONE, finder included; copied $copied, dead $dead"
    results+=("worker_${k}_objects_per_s=$rate")
  done
  exec 7>&-
  SCALEOUT_RESULT="${results[*]}"
}
