#!/usr/bin/env bash
# Runs the end-to-end tests against a private containerd that this script starts and always
# stops, with the locally installed shim (make install-local) first on containerd's PATH.
# With DOCKER_ROOT (unpacked dockerd 26 debs, see with-containerd-1.7.sh) it also starts a
# private dockerd on that containerd for the Docker tests, which skip without it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${WORK:-$here/../.work}
dir="$work/e2e-containerd"
docker_dir="$work/e2e-dockerd"
registry_dir="$work/e2e-registry"
export TEST_REGISTRY=127.0.0.1:5055
stop_all() {
  "$here/lib/dockerd.sh" stop "$docker_dir" || true
  "$here/lib/registry.sh" stop "$registry_dir" || true
  "$here/lib/containerd.sh" stop "$dir"
}
stop_all || true
trap stop_all EXIT
# A compile cache of the tests' own, empty at the start (the shim inherits containerd's env).
export WASMPOD_CACHE_DIR="$work/e2e-cache"
rm -rf "$WASMPOD_CACHE_DIR"
"$here/lib/containerd.sh" start "$dir" "$work/prefix/bin" cri
# A registry the tests push to with skopeo and pull from through CRI.
"$here/lib/registry.sh" start "$registry_dir" "$TEST_REGISTRY"
export WASMPOD_REGISTRY="$TEST_REGISTRY"
export WASMPOD_CONTAINERD_ADDRESS="$dir/containerd.sock"
export WASMPOD_E2E_DOCKER=off
if [ -n "${DOCKER_ROOT:-}" ]; then
  WASMPOD_E2E_DOCKER=on
  "$here/lib/dockerd.sh" start "$docker_dir" "$dir/containerd.sock" "$work/prefix/bin" "$DOCKER_ROOT"
  export WASMPOD_DOCKER_HOST="unix://$docker_dir/docker.sock"
  export WASMPOD_DOCKER_CLI="$DOCKER_ROOT/usr/bin/docker"
fi
export WASMPOD_FIXTURES="$work/fixtures"
# The e2e tests share one containerd and count leaks: run them one at a time. E2E_FILTER
# (a test name or part of one) runs only the tests that match.
# --workspace, like the build, so no dependency is compiled again with other features.
# Tests that do not run here are listed at the end (see test/src/skip.rs). E2E_TESTS names
# the suites (test files) to run, all by default.
export WASMPOD_SKIP_LOG="$work/e2e-skipped.txt"
rm -f "$WASMPOD_SKIP_LOG"
status=0
suites=(--test '*')
if [ -n "${E2E_TESTS:-}" ]; then
  suites=()
  for t in $E2E_TESTS; do suites+=(--test "$t"); done
fi
${CARGO:-cargo} test --workspace ${CARGO_PROFILE_FLAG:-} "${suites[@]}" -- --test-threads=1 ${E2E_FILTER:-} || status=$?
if [ -n "${E2E_TESTS:-}" ]; then
  echo "== e2e suites run against $("${CONTAINERD:-containerd}" --version | awk '{print $3}'): $E2E_TESTS (by design; the others run on the other versions)"
fi
if [ -s "$WASMPOD_SKIP_LOG" ]; then
  echo "== e2e tests that did not run against $("${CONTAINERD:-containerd}" --version | awk '{print $3}'):"
  cat "$WASMPOD_SKIP_LOG"
fi
exit "$status"
