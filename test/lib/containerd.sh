#!/usr/bin/env bash
# A private containerd for wasmpod's tests and demo: its own root, state, sockets and config,
# all under one directory, with the built shim first on its PATH.
#
#   containerd.sh start DIR SHIM_DIR [cri]   start it (cri: with the CRI plugin and a CNI bridge)
#   containerd.sh stop DIR                    stop it, its shims, and clean up
#   containerd.sh env DIR                     print the variables the tests read
#   containerd.sh config DIR                  only write DIR/config.toml: CRI, runc as the only
#                                             handler (what a node has before wasmpod's installer)
# With CONTAINERD_CONFIG=FILE, start uses FILE (its paths under DIR) instead of writing one.
set -euo pipefail

cmd=${1:?usage: containerd.sh start|stop|env DIR [SHIM_DIR]}
dir=${2:?directory}
# Where the tests' registry listens (registry.sh); CRI pulls from it over plain HTTP.
TEST_REGISTRY=${TEST_REGISTRY:-127.0.0.1:5055}

# The config schema the containerd under test reads: version 3 on containerd 2.x (whose CRI
# plugin ignores the version-2 table paths), version 2 before.
config_version() {
  case "$("${CONTAINERD:-containerd}" --version | awk '{print $3}')" in
  v2.* | 2.*) echo 3 ;;
  *) echo 2 ;;
  esac
}

write_config() {
  local dir=$1 cri=$2 handlers=${3:-wasmpod} version
  version=$(config_version)
  local disabled='disabled_plugins = ["io.containerd.grpc.v1.cri"]'
  [ "$cri" = cri ] && disabled=''
  cat >"$dir/config.toml" <<TOML
version = $version
root = "$dir/root"
state = "$dir/state"
$disabled
[grpc]
  address = "$dir/containerd.sock"
[ttrpc]
  address = "$dir/containerd.sock.ttrpc"
[debug]
  address = "$dir/debug.sock"
  level = "debug"
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/opt"
TOML
  [ "$cri" = cri ] || return 0
  # The CRI plugin: a pause image imported by the tests, no OOM-score lowering (this VM
  # cannot), a CNI bridge on a test subnet that routes nothing off the host, and one
  # handler per wasmpod runtime name.
  local runtime images
  if [ "$version" = 3 ]; then
    runtime='plugins."io.containerd.cri.v1.runtime"'
    images='plugins."io.containerd.cri.v1.images"'
    cat >>"$dir/config.toml" <<TOML
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
[$images.pinned_images]
  sandbox = "docker.io/wasmpod/pause:e2e"
[$images.registry]
  config_path = "$dir/certs.d"
[$runtime]
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  enable_selinux = false
  [$runtime.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "$dir/cni"
TOML
  else
    runtime='plugins."io.containerd.grpc.v1.cri"'
    cat >>"$dir/config.toml" <<TOML
[$runtime]
  sandbox_image = "docker.io/wasmpod/pause:e2e"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true
  [$runtime.cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni"
  [$runtime.registry]
    config_path = "$dir/certs.d"
TOML
  fi
  local r="$runtime.containerd.runtimes"
  cat >>"$dir/config.toml" <<TOML
  [$runtime.containerd]
    default_runtime_name = "runc"
    [$r.runc]
      runtime_type = "io.containerd.runc.v2"
      [$r.runc.options]
        Root = "$dir/runc"
TOML
  if [ "$handlers" = wasmpod ]; then
    cat >>"$dir/config.toml" <<TOML
    [$r.wasmpod]
      runtime_type = "io.containerd.wasmpod.v1"
      # As the node installer writes it: pods' wasmpod.dev/ annotations reach the shim.
      pod_annotations = ["wasmpod.dev/*"]
    [$r.spin]
      runtime_type = "io.containerd.spin.v2"
    [$r.wasmtime]
      runtime_type = "io.containerd.wasmtime.v1"
    [$r.wasmpod-systemd]
      runtime_type = "io.containerd.wasmpod.v1"
      [$r.wasmpod-systemd.options]
        ConfigPath = "$dir/wasmpod-systemd.toml"
TOML
    echo 'SystemdCgroup = true' >"$dir/wasmpod-systemd.toml"
  fi
  # The tests' registry (registry.sh) speaks plain HTTP on loopback.
  mkdir -p "$dir/certs.d/$TEST_REGISTRY"
  cat >"$dir/certs.d/$TEST_REGISTRY/hosts.toml" <<TOML
server = "http://$TEST_REGISTRY"
[host."http://$TEST_REGISTRY"]
  capabilities = ["pull", "resolve"]
TOML
  mkdir -p "$dir/cni"
  cat >"$dir/cni/10-wasmpod-test.conflist" <<JSON
{
  "cniVersion": "0.4.0",
  "name": "wasmpod-test",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "wasmpodtest0",
      "isGateway": false,
      "ipMasq": false,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "198.18.7.0/24"}]],
        "dataDir": "$dir/cni-ipam"
      }
    }
  ]
}
JSON
}

case "$cmd" in
start)
  shim_dir=${3:?shim directory}
  mode=${4:-plain}
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ -f "$dir/containerd.pid" ] && kill -0 "$(cat "$dir/containerd.pid")" 2>/dev/null; then
    echo "containerd already runs for $dir" >&2
    exit 0
  fi
  config="${CONTAINERD_CONFIG:-$dir/config.toml}"
  [ -n "${CONTAINERD_CONFIG:-}" ] || write_config "$dir" "$mode"
  PATH="$shim_dir:$PATH" setsid "${CONTAINERD:-containerd}" --config "$config" >"$dir/containerd.log" 2>&1 &
  echo $! >"$dir/containerd.pid"
  for _ in $(seq 1 100); do
    if ctr --address "$dir/containerd.sock" version >/dev/null 2>&1; then
      echo "containerd ready at $dir/containerd.sock (pid $(cat "$dir/containerd.pid"))"
      exit 0
    fi
    sleep 0.1
  done
  echo "containerd did not start; its log:" >&2
  tail -n 30 "$dir/containerd.log" >&2
  exit 1
  ;;
stop)
  [ -d "$dir" ] || exit 0
  dir=$(cd "$dir" && pwd)
  addr="$dir/containerd.sock"
  namespaces="wasmpod-e2e"
  if [ -S "$addr" ]; then
    namespaces="$namespaces $(ctr --address "$addr" namespaces ls -q 2>/dev/null | tr '\n' ' ')"
    for ns in $(ctr --address "$addr" namespaces ls -q 2>/dev/null); do
      for t in $(ctr --address "$addr" -n "$ns" tasks ls -q 2>/dev/null); do
        ctr --address "$addr" -n "$ns" tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true
        ctr --address "$addr" -n "$ns" tasks delete -f "$t" >/dev/null 2>&1 || true
      done
      for c in $(ctr --address "$addr" -n "$ns" containers ls -q 2>/dev/null); do
        ctr --address "$addr" -n "$ns" containers delete "$c" >/dev/null 2>&1 || true
      done
    done
  fi
  if [ -f "$dir/containerd.pid" ]; then
    pid=$(cat "$dir/containerd.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/containerd.pid"
  fi
  # Shims of this containerd that are still alive (they were given its address).
  pkill -9 -f -- "-address $dir/containerd.sock" 2>/dev/null || true
  # Container processes that outlived their shims (containerd was stopped under them).
  for ns in $namespaces; do
    [ "$ns" = k8s.io ] && continue
    find "/sys/fs/cgroup/pids/$ns" -name cgroup.procs 2>/dev/null | xargs -r cat 2>/dev/null | xargs -r kill -9 2>/dev/null || true
  done
  # Cgroups the tests' pods and namespaces used (kubelet would own the pod ones), and the
  # empty per-namespace parents containers of this containerd were placed under.
  for c in /sys/fs/cgroup/*/wasmpod-e2e; do
    [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  for ns in $namespaces; do
    for c in /sys/fs/cgroup/*/"$ns"; do [ -d "$c" ] && rmdir "$c" 2>/dev/null || true; done
  done
  # The test bridge, if the CRI tests made one.
  if [ -f "$dir/cni/10-wasmpod-test.conflist" ]; then ip link del wasmpodtest0 2>/dev/null || true; fi
  # Pod network namespaces and mounts left under the private state directory.
  { grep -o " $dir/[^ ]*" /proc/self/mounts 2>/dev/null || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  ;;
config)
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  write_config "$dir" cri runc
  ;;
env)
  dir=$(cd "$dir" && pwd)
  echo "WASMPOD_CONTAINERD_ADDRESS=$dir/containerd.sock"
  ;;
*)
  echo "unknown command $cmd" >&2
  exit 2
  ;;
esac
