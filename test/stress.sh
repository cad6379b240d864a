#!/usr/bin/env bash
# The stress run (`make stress`; not part of `make test`, whose stress suite is a short
# version of it): STRESS_CYCLES create/start/wait/delete cycles (default 1000) at
# STRESS_PARALLEL at once (default 10) through a private containerd with the CRI plugin,
# mixing a Wasm hello, a component, a wasi:http service started and stopped, a native
# container (via ctr) and CRI pods; before/after counts of what a container could leave
# behind; then the same loop of the Wasm hello alone and of runc's busybox `echo` for
# tasks/s side by side. STRESS_SOAK=SECONDS (e.g. 600) adds a soak of the mix that samples
# the anchor pod shim's RSS and fds every 10 s. Any failed cycle, leak or growth fails it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${WORK:-$here/../.work}
target=${TARGET:-$here/../target/release}
dir="$work/stress-containerd"
"$here/lib/containerd.sh" stop "$dir" || true
trap '"$here/lib/containerd.sh" stop "$dir"' EXIT
# The run's own compile cache, empty at the start.
export WASMPOD_CACHE_DIR="$work/stress-cache"
rm -rf "$WASMPOD_CACHE_DIR"
"$here/lib/containerd.sh" start "$dir" "$work/prefix/bin" cri >/dev/null
export WASMPOD_CONTAINERD_ADDRESS="$dir/containerd.sock"
export WASMPOD_NAMESPACE=stress
export WASMPOD_FIXTURES="$work/fixtures"
"$target/wasmpod-stress" --cycles "${STRESS_CYCLES:-1000}" --parallel "${STRESS_PARALLEL:-10}" \
  --soak "${STRESS_SOAK:-0}"
