#!/usr/bin/env bash
# The demo: a private containerd, a Wasm image written by wasmpod's image builder, and Wasm
# containers run through all three runtime names.
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
echo; echo "Demo done: the private containerd is stopped and cleaned up."
