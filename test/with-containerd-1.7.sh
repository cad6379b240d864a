#!/usr/bin/env bash
# Runs the end-to-end tests against containerd 1.7 (Debian trixie's package, unpacked under
# .work without touching the system's dpkg state), instead of the system's 1.6.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${WORK:-$here/../.work}
dest="$work/containerd-1.7"
if [ ! -x "$dest/usr/bin/containerd" ]; then
  apt_dir="$work/apt-trixie"
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$dest"
  echo "deb http://deb.debian.org/debian trixie main" >"$apt_dir/sources.list"
  opts=(-o "Dir::Etc::sourcelist=$apt_dir/sources.list" -o Dir::Etc::sourceparts=/dev/null
        -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache")
  apt-get "${opts[@]}" update -qq
  (cd "$apt_dir" && apt-get "${opts[@]}" download containerd >/dev/null 2>&1)
  dpkg-deb -x "$apt_dir"/containerd_*.deb "$dest"
fi
"$dest/usr/bin/containerd" --version
# Its ctr too: ctr unpacks images on the client side, and 1.6's refuses Wasm layers.
PATH="$dest/usr/bin:$PATH" CONTAINERD="$dest/usr/bin/containerd" WORK="$work" "$here/e2e.sh"
