#!/usr/bin/env bash
# Benchmark: `ctr run --rm` of the hello Wasm module through wasmpod vs runc running busybox
# `echo hello`, interleaved, ROUNDS rounds each, on one private containerd. Prints the
# medians and the ratio (wasmpod / runc; lower is better). A benchmark, not a test.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${WORK:-$here/../.work}
target=${TARGET:-$here/../target/debug}
rounds=${ROUNDS:-20}
dir="$work/bench-containerd"
"$here/lib/containerd.sh" stop "$dir" || true
trap '"$here/lib/containerd.sh" stop "$dir"' EXIT
# The benchmark's own compile cache, empty, so the first start really compiles.
rm -rf "$work/bench-cache"
WASMPOD_CACHE_DIR="$work/bench-cache" "$here/lib/containerd.sh" start "$dir" "$work/prefix/bin" >/dev/null
ctr="ctr --address $dir/containerd.sock --namespace bench"

"$target/wasmpod-testkit" hello-image "$work/bench-hello.tar" docker.io/wasmpod/hello:bench
"$target/wasmpod-testkit" big-image "$work/bench-big.tar" docker.io/wasmpod/big:bench
"$target/wasmpod-testkit" busybox-image "$work/bench-busybox.tar" docker.io/wasmpod/busybox:bench
$ctr images import --all-platforms "$work/bench-hello.tar" >/dev/null
$ctr images import "$work/bench-busybox.tar" >/dev/null
$ctr images import --all-platforms "$work/bench-big.tar" >/dev/null

now_us() { echo $(( $(date +%s%N) / 1000 )); }
time_run() { # runtime image args...
  local rt=$1 image=$2; shift 2
  local id="b$RANDOM$RANDOM" t0 t1
  t0=$(now_us)
  $ctr run --rm --runtime "$rt" "$image" "$id" "$@" >/dev/null
  t1=$(now_us)
  echo $(( t1 - t0 ))
}
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print int((a[NR/2]+a[NR/2+1])/2)}'; }

# Warm-up: page cache, snapshots, first shim start.
time_run io.containerd.runc.v2 docker.io/wasmpod/busybox:bench /bin/busybox echo hello >/dev/null
time_run io.containerd.wasmpod.v1 docker.io/wasmpod/hello:bench >/dev/null

wasm_times=(); runc_times=()
for _ in $(seq 1 "$rounds"); do
  wasm_times+=("$(time_run io.containerd.wasmpod.v1 docker.io/wasmpod/hello:bench)")
  runc_times+=("$(time_run io.containerd.runc.v2 docker.io/wasmpod/busybox:bench /bin/busybox echo hello)")
done
# Compile cache: the first start of a large module compiles it; later ones map the result.
big_first=$(time_run io.containerd.wasmpod.v1 docker.io/wasmpod/big:bench)
big_times=()
for _ in 1 2 3 4 5; do big_times+=("$(time_run io.containerd.wasmpod.v1 docker.io/wasmpod/big:bench)"); done
big_cached=$(printf '%s\n' "${big_times[@]}" | median)

# Memory: PSS of one sleeping container, shim included.
pss_kb() { local t=0; for p in "$@"; do v=$(awk '/^Pss:/{print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0); t=$((t + ${v:-0})); done; echo "$t"; }
footprint() { # runtime image id args...
  local rt=$1 image=$2 id=$3; shift 3
  $ctr run -d --runtime "$rt" "$image" "$id" "$@" >/dev/null
  sleep 1
  local task_pids shim
  task_pids=$($ctr tasks ps "$id" | awk 'NR>1{print $1}')
  shim=$(pgrep -f -- "-id $id -address" | head -1)
  pss_kb $task_pids $shim
  $ctr tasks kill -s SIGKILL "$id" >/dev/null 2>&1; sleep 0.3
  $ctr tasks delete "$id" >/dev/null 2>&1; $ctr containers delete "$id" >/dev/null 2>&1
}
"$target/wasmpod-testkit" probe-image "$work/bench-probe.tar" docker.io/wasmpod/probe:bench
$ctr images import --all-platforms "$work/bench-probe.tar" >/dev/null
wasm_pss=$(footprint io.containerd.wasmpod.v1 docker.io/wasmpod/probe:bench pss-wasm /probe.wasm sleep 300)
runc_pss=$(footprint io.containerd.runc.v2 docker.io/wasmpod/busybox:bench pss-runc /bin/busybox sleep 300)

w=$(printf '%s\n' "${wasm_times[@]}" | median)
r=$(printf '%s\n' "${runc_times[@]}" | median)
awk -v w="$w" -v r="$r" -v n="$rounds" 'BEGIN {
  printf "\nctr run --rm, %d interleaved rounds (median)\n", n
  printf "  %-40s %8.1f ms\n", "wasmpod: hello.wasm", w / 1000
  printf "  %-40s %8.1f ms\n", "runc: busybox echo hello", r / 1000
  printf "  %-40s %8.2fx  (target: <= 0.50x)\n", "ratio wasmpod / runc", w / r
}'
awk -v f="$big_first" -v c="$big_cached" 'BEGIN {
  printf "\ncompile cache, 20,000-function module, ctr run --rm\n"
  printf "  %-40s %8.1f ms\n", "first start (compiles)", f / 1000
  printf "  %-40s %8.1f ms\n", "cached start (median of 5)", c / 1000
  printf "  %-40s %8.2fx\n", "ratio cached / first", c / f
}'
awk -v w="$wasm_pss" -v r="$runc_pss" 'BEGIN {
  printf "\nmemory of one sleeping container, shim included (PSS)\n"
  printf "  %-40s %8.1f MB\n", "wasmpod: sleeping Wasm guest", w / 1024
  printf "  %-40s %8.1f MB\n", "runc: busybox sleep", r / 1024
  printf "  %-40s %8.2fx  (target: wasmpod <= 8 MB)\n", "ratio wasmpod / runc", w / r
}'
