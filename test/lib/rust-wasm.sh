#!/usr/bin/env bash
# Installs a Rust toolchain that builds for wasm32-wasip1 (what Spin's Rust templates target)
# under DEST, from Debian alone: bookworm-security's rustc-web, its cargo and its standard
# library sources, unpacked into DEST without touching the system's rustc, with Debian's LLVM
# lld as rust-lld and Debian's wasi-libc as the target's C runtime. The standard library is
# built from source for the target (-Zbuild-std), so no rustup target is needed.
#
#   rust-wasm.sh DEST      install (once); prints nothing when DEST is ready
#
# Use it as:  DEST/env cargo build --release --target wasm32-wasip1 -Zbuild-std=std,panic_abort
set -euo pipefail
dest=${1:?usage: rust-wasm.sh DEST}
here=$(cd "$(dirname "$0")" && pwd)
[ -x "$dest/env" ] && exit 0
# The versioned standard library (libstd-rust-web-1.96 today) and the LLVM it links
# (libllvm22): the linker must be that LLVM's lld.
libstd=$(apt-cache depends libstd-rust-web-dev | awk '/Depends: libstd-rust-web-[0-9]/ {print $2; exit}')
llvm=$(apt-cache depends "${libstd:?no libstd-rust-web-N package}" | awk '/Depends: libllvm[0-9]/ {sub("libllvm", "", $2); print $2; exit}')
"$here/apt-install.sh" "libllvm${llvm:?no libllvmN dependency}" "lld-$llvm" libgit2-1.5 libssh2-1 wasi-libc
debs="$dest/debs"
mkdir -p "$debs"
echo "installing Debian's rustc-web for wasm32-wasip1 into $dest"
(cd "$debs" && apt-get download rustc-web cargo-web rust-web-src "$libstd" \
  libstd-rust-web-dev >/dev/null 2>&1)
for d in "$debs"/*.deb; do dpkg-deb -x "$d" "$dest/root"; done
usr="$dest/root/usr"
mkdir -p "$usr/lib/rustlib/x86_64-unknown-linux-gnu/bin" "$usr/lib/rustlib/wasm32-wasip1/lib/self-contained"
ln -sf "/usr/lib/llvm-$llvm/bin/lld" "$usr/lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-lld"
cp /usr/lib/wasm32-wasi/crt1-command.o /usr/lib/wasm32-wasi/crt1-reactor.o /usr/lib/wasm32-wasi/libc.a \
  "$usr/lib/rustlib/wasm32-wasip1/lib/self-contained/"
rm -rf "$debs"
cat >"$dest/env" <<ENV
#!/usr/bin/env bash
# Runs a command with the wasm32-wasip1 Rust toolchain of $dest first on PATH.
export PATH="$usr/bin:\$PATH"
export LD_LIBRARY_PATH="$usr/lib/x86_64-linux-gnu\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export RUSTC="$usr/bin/rustc"
# -Zbuild-std on a stable toolchain.
export RUSTC_BOOTSTRAP=1
exec "\$@"
ENV
chmod +x "$dest/env"
"$dest/env" rustc --version
