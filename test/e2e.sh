#!/usr/bin/env bash
# Runs the end-to-end tests against a private containerd that this script starts and always
# stops, with the locally installed shim (make install-local) first on containerd's PATH.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${WORK:-$here/../.work}
dir="$work/e2e-containerd"
"$here/lib/containerd.sh" stop "$dir" || true
trap '"$here/lib/containerd.sh" stop "$dir"' EXIT
# A compile cache of the tests' own, empty at the start (the shim inherits containerd's env).
export WASMPOD_CACHE_DIR="$work/e2e-cache"
rm -rf "$WASMPOD_CACHE_DIR"
"$here/lib/containerd.sh" start "$dir" "$work/prefix/bin" cri
export WASMPOD_CONTAINERD_ADDRESS="$dir/containerd.sock"
export WASMPOD_FIXTURES="$work/fixtures"
# The e2e tests share one containerd and count leaks: run them one at a time.
# --workspace, like the build, so no dependency is compiled again with other features.
${CARGO:-cargo} test --workspace ${CARGO_PROFILE_FLAG:-} --test '*' -- --test-threads=1
