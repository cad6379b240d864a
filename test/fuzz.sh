#!/usr/bin/env bash
# make fuzz: each fuzz target of test/fuzz (cargo-fuzz, libFuzzer) for FUZZ_SECONDS (default
# 60) from its seed corpus under test/fuzz/corpus. cargo-fuzz is installed under
# $WORK/cargo-fuzz the first time; it needs the nightly-only sanitizer flags, which this stable
# toolchain accepts with RUSTC_BOOTSTRAP=1. A crash fails the run; its input is kept under
# test/fuzz/artifacts/<target>/ (turn it into a regression test, then delete it).
set -euo pipefail
cd "$(dirname "$0")/.."
work=${WORK:?set WORK to the scratch directory, as make does}
seconds=${FUZZ_SECONDS:-60}
if [ ! -x "$work/cargo-fuzz/bin/cargo-fuzz" ]; then
  echo "installing cargo-fuzz into $work/cargo-fuzz"
  cargo install cargo-fuzz --locked --root "$work/cargo-fuzz"
fi
export PATH="$work/cargo-fuzz/bin:$PATH" RUSTC_BOOTSTRAP=1
# libFuzzer is C++: build it with the clang that setup installs.
export CXX=${CXX:-clang++-19} CC=${CC:-clang-19}
targets=${FUZZ_TARGETS:-$(cargo fuzz list --fuzz-dir test/fuzz)}
status=0
for t in $targets; do
  echo "== fuzz $t for ${seconds}s"
  # A scratch copy of the seed corpus grows as libFuzzer finds new inputs; the seeds stay.
  corpus="$work/fuzz-corpus/$t"
  mkdir -p "$corpus"
  cp -n test/fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null || true
  if ! cargo fuzz run --fuzz-dir test/fuzz "$t" "$corpus" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1; then
    echo "fuzz $t: FAILED (input under test/fuzz/artifacts/$t)"
    status=1
  fi
done
exit $status
