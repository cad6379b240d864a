#!/usr/bin/env bash
# The demo: a private containerd, a Spin app (Rust SDK: hello and a key-value counter) run as
# the Spin shim runs it, Wasm images
# written by wasmpod's image builder, Wasm containers run through all three runtime names,
# and a wasi:http service.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${WORK:-$here/../.work}
target=${TARGET:-$here/../target/debug}
dir="$work/demo-containerd"
"$here/lib/containerd.sh" stop "$dir" || true
trap '"$here/lib/containerd.sh" stop "$dir"' EXIT
"$here/lib/containerd.sh" start "$dir" "$work/prefix/bin"
ctr="ctr --address $dir/containerd.sock --namespace demo"
step() { printf '\n\033[1m== %s\033[0m\n$ %s\n' "$1" "$2"; }

export WASMPOD_FIXTURES="$work/fixtures"

"$target/wasmpod-testkit" spin-rust-image "$work/spin-rust.tar" docker.io/wasmpod/spin-rust:demo
$ctr images import --all-platforms "$work/spin-rust.tar" >/dev/null
step "A Spin app (Spin's Rust SDK, wasm32-wasip1, /spin.toml in the image) under io.containerd.spin.v2, on port 18481" \
  "ctr run -d --net-host --env SPIN_HTTP_LISTEN_ADDR=127.0.0.1:18481 ... spin /"
$ctr run -d --net-host --env SPIN_HTTP_LISTEN_ADDR=127.0.0.1:18481 \
  --runtime io.containerd.spin.v2 docker.io/wasmpod/spin-rust:demo spin /
for _ in $(seq 1 600); do curl -sf -o /dev/null http://127.0.0.1:18481/.well-known/spin/health && break; sleep 0.1; done
for path in / /count /count /.well-known/spin/health /.well-known/spin/info; do
  echo "GET $path -> $(curl -s -w ' [%{http_code}]' "http://127.0.0.1:18481$path" | tr -d '\n')"
done
$ctr tasks kill spin
while [ "$($ctr tasks ls | awk '$1=="spin"{print $3}')" != STOPPED ]; do sleep 0.05; done
echo "stopped: $($ctr tasks delete spin 2>&1 | grep -o 'exit code [0-9]*' || echo 'exit code 0')"
$ctr containers rm spin
"$target/wasmpod-testkit" hello-image "$work/hello.tar" docker.io/wasmpod/hello:demo
"$target/wasmpod-testkit" probe-image "$work/probe.tar" docker.io/wasmpod/probe:demo
step "Import two Wasm images (os=wasi, architecture=wasm)" "ctr images import --all-platforms hello.tar probe.tar"
$ctr images import --all-platforms "$work/hello.tar" >/dev/null
$ctr images import --all-platforms "$work/probe.tar" >/dev/null
$ctr images ls -q

for rt in io.containerd.wasmpod.v1 io.containerd.spin.v2 io.containerd.wasmtime.v1; do
  step "Run the hello module with --runtime $rt" "ctr run --rm --runtime $rt docker.io/wasmpod/hello:demo hello"
  start=$(date +%s%N)
  $ctr run --rm --runtime "$rt" docker.io/wasmpod/hello:demo "hello-${rt//./-}"
  echo "(took $(( ($(date +%s%N) - start) / 1000000 )) ms)"
done

step "A C program compiled to WASI: arguments, environment, exit code" \
  "ctr run --rm --env GREETING=hi ... /probe.wasm env GREETING; exit 3"
$ctr run --rm --runtime io.containerd.wasmpod.v1 --env GREETING=hi docker.io/wasmpod/probe:demo env1 /probe.wasm env GREETING
set +e
$ctr run --rm --runtime io.containerd.wasmpod.v1 docker.io/wasmpod/probe:demo exit1 /probe.wasm exit 3
echo "exit code: $?"
set -e

step "A sleeping guest runs inside its container's cgroup; SIGTERM stops it at once" \
  "ctr run -d ... /probe.wasm sleep 300; ctr task ps; ctr task kill"
$ctr run -d --runtime io.containerd.wasmpod.v1 docker.io/wasmpod/probe:demo sleeper /probe.wasm sleep 300
sleep 0.5
$ctr tasks ls
pid=$($ctr tasks ps sleeper | awk 'NR==2{print $1}')
echo "guest pid $pid is in /sys/fs/cgroup/memory/demo/sleeper/cgroup.procs: $(grep -c "^$pid$" /sys/fs/cgroup/memory/demo/sleeper/cgroup.procs)"
$ctr tasks metrics sleeper | grep -E "memory.usage_in_bytes|pids.current"
start=$(date +%s%N)
$ctr tasks kill sleeper
while [ "$($ctr tasks ls | awk '$1=="sleeper"{print $3}')" != STOPPED ]; do sleep 0.01; done
echo "stopped in $(( ($(date +%s%N) - start) / 1000000 )) ms: $($ctr tasks delete sleeper 2>&1 | grep -o 'exit code [0-9]*' || echo 'exit code 0')"
$ctr containers rm sleeper

"$target/wasmpod-testkit" c-proxy-image "$work/c-proxy.tar" docker.io/wasmpod/c-proxy:demo
$ctr images import --all-platforms "$work/c-proxy.tar" >/dev/null
step "A wasi:http component is served (here on the host network, port 18480); SIGTERM drains it" \
  "ctr run -d --net-host --env WASMTIME_HTTP_PROXY_SOCKET_ADDR=127.0.0.1:18480 ... web; curl; ctr task kill"
$ctr run -d --net-host --env WASMTIME_HTTP_PROXY_SOCKET_ADDR=127.0.0.1:18480 \
  --runtime io.containerd.wasmpod.v1 docker.io/wasmpod/c-proxy:demo web
for _ in $(seq 1 100); do curl -sf -o /dev/null http://127.0.0.1:18480/hello && break; sleep 0.1; done
echo "GET /hello -> $(curl -s -w ' [%{http_code}]' http://127.0.0.1:18480/hello | tr -d '\n')"
echo "GET /trap  -> $(curl -s -w ' [%{http_code}]' http://127.0.0.1:18480/trap | tr -d '\n') (the handler trapped; the server serves on)"
echo "GET /hello -> $(curl -s -w ' [%{http_code}]' http://127.0.0.1:18480/hello | tr -d '\n')"
curl -s -o /tmp/wasmpod-demo-slow.txt http://127.0.0.1:18480/slow?1000 &
slow=$!
sleep 0.3
$ctr tasks kill web
wait "$slow" || true
echo "a request in flight during SIGTERM got: $(cat /tmp/wasmpod-demo-slow.txt)"
rm -f /tmp/wasmpod-demo-slow.txt
while [ "$($ctr tasks ls | awk '$1=="web"{print $3}')" != STOPPED ]; do sleep 0.05; done
echo "then the service stopped: $($ctr tasks delete web 2>&1 | grep -o 'exit code [0-9]*' || echo 'exit code 0')"
$ctr containers rm web
echo; echo "Demo done: the private containerd is stopped and cleaned up."
