#!/usr/bin/env bash
# A private dockerd 26 for wasmpod's tests, on top of the private containerd that
# containerd.sh starts: its own data-root, exec-root, socket and bridge, the containerd image
# store (so `docker load` keeps OCI images as they are), nothing touching the host's
# iptables or forwarding (published ports go through docker-proxy, which needs neither), and
# the built shim first on its PATH.
#
#   dockerd.sh start DIR CONTAINERD_SOCKET SHIM_DIR DOCKER_ROOT   start it (DOCKER_ROOT: the
#                                                  unpacked docker.io/docker-cli debs)
#   dockerd.sh stop DIR                            stop it and remove its networks
set -euo pipefail

cmd=${1:?usage: dockerd.sh start|stop DIR ...}
dir=${2:?directory}
# A bridge of our own on a test subnet; compose networks come from another /16.
bridge=wasmpoddk0
bridge_addr=198.19.7.1/24

case "$cmd" in
start)
  containerd_socket=${3:?containerd socket}
  shim_dir=${4:?shim directory}
  root=${5:?unpacked docker debs}
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ -f "$dir/dockerd.pid" ] && kill -0 "$(cat "$dir/dockerd.pid")" 2>/dev/null; then
    echo "dockerd already runs for $dir" >&2
    exit 0
  fi
  ip link show "$bridge" >/dev/null 2>&1 || ip link add "$bridge" type bridge
  ip addr replace "$bridge_addr" dev "$bridge"
  ip link set "$bridge" up
  cat >"$dir/daemon.json" <<JSON
{
  "data-root": "$dir/data",
  "exec-root": "$dir/exec",
  "pidfile": "$dir/dockerd.pid",
  "hosts": ["unix://$dir/docker.sock"],
  "containerd": "$containerd_socket",
  "features": {"containerd-snapshotter": true},
  "storage-driver": "overlayfs",
  "iptables": false,
  "ip6tables": false,
  "ip-forward": false,
  "ip-masq": false,
  "userland-proxy": true,
  "userland-proxy-path": "$root/usr/sbin/docker-proxy",
  "bridge": "$bridge",
  "default-address-pools": [{"base": "198.19.128.0/17", "size": 24}]
}
JSON
  PATH="$shim_dir:$root/usr/sbin:$root/usr/bin:$PATH" setsid "$root/usr/sbin/dockerd" \
    --config-file "$dir/daemon.json" >"$dir/dockerd.log" 2>&1 &
  for _ in $(seq 1 100); do
    if "$root/usr/bin/docker" -H "unix://$dir/docker.sock" version >/dev/null 2>&1; then
      echo "dockerd ready at $dir/docker.sock (pid $(cat "$dir/dockerd.pid"))"
      exit 0
    fi
    sleep 0.2
  done
  echo "dockerd did not start; its log:" >&2
  tail -n 30 "$dir/dockerd.log" >&2
  exit 1
  ;;
stop)
  [ -d "$dir" ] || exit 0
  dir=$(cd "$dir" && pwd)
  if [ -f "$dir/dockerd.pid" ]; then
    pid=$(cat "$dir/dockerd.pid")
    if kill -0 "$pid" 2>/dev/null; then
      docker=$(dirname "$(readlink -f "/proc/$pid/exe")")/../bin/docker
      if [ -x "$docker" ]; then
        "$docker" -H "unix://$dir/docker.sock" ps -aq 2>/dev/null | xargs -r "$docker" -H "unix://$dir/docker.sock" rm -f >/dev/null 2>&1 || true
        "$docker" -H "unix://$dir/docker.sock" network prune -f >/dev/null 2>&1 || true
      fi
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/dockerd.pid"
  fi
  ip link del "$bridge" 2>/dev/null || true
  { grep -o " $dir/[^ ]*" /proc/self/mounts 2>/dev/null || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  ;;
*)
  echo "unknown command $cmd" >&2
  exit 2
  ;;
esac
