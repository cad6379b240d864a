#!/usr/bin/env bash
# A private image registry for wasmpod's tests (Debian's docker-registry, plain HTTP on
# loopback, storage under DIR): the tests push images to it with skopeo and pull them the way
# kubelet does, through CRI PullImage.
#
#   registry.sh start DIR ADDR   start it on ADDR (host:port)
#   registry.sh stop DIR         stop it and drop its storage
set -euo pipefail

cmd=${1:?usage: registry.sh start|stop DIR [ADDR]}
dir=${2:?directory}

case "$cmd" in
start)
  addr=${3:?address}
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  cat >"$dir/config.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/data
http:
  addr: $addr
YAML
  setsid docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
  echo $! >"$dir/registry.pid"
  for _ in $(seq 1 50); do
    if curl -fsS "http://$addr/v2/" >/dev/null 2>&1; then
      echo "registry ready at $addr (pid $(cat "$dir/registry.pid"))"
      exit 0
    fi
    sleep 0.1
  done
  echo "the registry did not start; its log:" >&2
  tail -n 20 "$dir/registry.log" >&2
  exit 1
  ;;
stop)
  [ -d "$dir" ] || exit 0
  if [ -f "$dir/registry.pid" ]; then
    kill "$(cat "$dir/registry.pid")" 2>/dev/null || true
    rm -f "$dir/registry.pid"
  fi
  rm -rf "$dir/data"
  ;;
*)
  echo "unknown command $cmd" >&2
  exit 2
  ;;
esac
