#!/usr/bin/env bash
# Runs the end-to-end tests against another Debian release's containerd, with that release's
# dockerd on top of it for the Docker tests, instead of the system's containerd 1.6. The
# packages are downloaded once and unpacked under .work, without touching the system's apt or
# dpkg state.
#
#   with-debian-containerd.sh trixie   containerd 1.7.24, dockerd 26.1.5: the suites whose
#                                      behaviour depends on the containerd or dockerd version
#                                      (cri, docker, node, faults); the ctr suite, which tests the
#                                      shim's task API, runs on 1.6 and 2.1, and the spin
#                                      suite, whose content-store tests need >= 1.7.7, on 2.1
#                                      (E2E_TESTS overrides)
#   with-debian-containerd.sh sid      containerd 2.1.9, dockerd 28.5.2, every suite (sid
#                                      moves: the versions are printed before the tests)
#
# runc is never taken from the other release: sid's needs a newer glibc than bookworm has, and
# containerd 2.x's runc shim would prefer it to the system's runc if it sat in the same tree.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${WORK:-$here/../.work}
release=${1:?usage: with-debian-containerd.sh trixie|sid}
case "$release" in
trixie | sid) ;;
*) echo "unknown release $release (trixie or sid)" >&2; exit 2 ;;
esac
dest="$work/containerd-$release"
docker_root="$work/docker-$release"
apt_dir="$work/apt-$release"
opts=(-o "Dir::Etc::sourcelist=$apt_dir/sources.list" -o Dir::Etc::sourceparts=/dev/null
      -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache")
# unpack PACKAGE DEST: downloads the release's PACKAGE once and unpacks it into DEST.
unpack() {
  if ! ls "$apt_dir/$1"_*.deb >/dev/null 2>&1; then
    if [ ! -f "$apt_dir/lists/updated" ]; then
      mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
      echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $release main" \
        >"$apt_dir/sources.list"
      apt-get "${opts[@]}" update -qq
      touch "$apt_dir/lists/updated"
    fi
    (cd "$apt_dir" && apt-get "${opts[@]}" download "$1" >/dev/null)
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
if [ "$release" = trixie ]; then
  export E2E_TESTS="${E2E_TESTS:-cri docker node faults}"
fi
PATH="$dest/usr/bin:$PATH" CONTAINERD="$dest/usr/bin/containerd" DOCKER_ROOT="$docker_root" WORK="$work" \
  "$here/e2e.sh"
