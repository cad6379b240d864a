#!/usr/bin/env bash
# Runs the end-to-end tests against containerd 1.7 (Debian trixie's package, unpacked under
# .work without touching the system's dpkg state), instead of the system's 1.6, with a
# private dockerd 26 (trixie's docker.io, docker-cli and docker-compose, unpacked the same
# way) on top of it for the Docker tests.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${WORK:-$here/../.work}
dest="$work/containerd-1.7"
docker_root="$work/docker-26"
apt_dir="$work/apt-trixie"
opts=(-o "Dir::Etc::sourcelist=$apt_dir/sources.list" -o Dir::Etc::sourceparts=/dev/null
      -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache")
# unpack PACKAGE DEST: downloads trixie's PACKAGE once and unpacks it into DEST.
unpack() {
  if ! ls "$apt_dir/$1"_*.deb >/dev/null 2>&1; then
    if [ ! -f "$apt_dir/lists/updated" ]; then
      mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
      echo "deb http://deb.debian.org/debian trixie main" >"$apt_dir/sources.list"
      apt-get "${opts[@]}" update -qq
      touch "$apt_dir/lists/updated"
    fi
    (cd "$apt_dir" && apt-get "${opts[@]}" download "$1" >/dev/null 2>&1)
  fi
  mkdir -p "$2"
  dpkg-deb -x "$apt_dir/$1"_*.deb "$2"
}
[ -x "$dest/usr/bin/containerd" ] || unpack containerd "$dest"
if [ ! -x "$docker_root/usr/bin/docker" ]; then
  for p in docker.io docker-cli docker-compose; do unpack "$p" "$docker_root"; done
fi
"$dest/usr/bin/containerd" --version
"$docker_root/usr/sbin/dockerd" --version
# Its ctr too: ctr unpacks images on the client side, and 1.6's refuses Wasm layers.
PATH="$dest/usr/bin:$PATH" CONTAINERD="$dest/usr/bin/containerd" DOCKER_ROOT="$docker_root" WORK="$work" \
  "$here/e2e.sh"
