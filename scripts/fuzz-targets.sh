#!/usr/bin/env bash
# Runs each cargo fuzz target of fuzz/ (the body and event parsers) for
# FUZZ_SECONDS (default 30) with libFuzzer; `make fuzz-targets` (and `make
# soak`) call it after installing cargo-fuzz into .tools/cargo.
#
# libFuzzer's instrumentation needs nightly compiler flags: the nightly
# toolchain if rustup has one, else the default toolchain with
# RUSTC_BOOTSTRAP=1. No sanitizer (`-s none`: the code under test is safe
# Rust, and ASan would need nightly's std rebuilt), but debug assertions and
# overflow checks on (`-a`): an arithmetic overflow is a crash.
#
# Corpus: target/fuzz-corpus/<target> (kept between runs, git-ignored), seeded
# from fuzz/seeds/<target>. A crash is written to target/fuzz-artifacts/<target>/
# and fails the run; reproduce with
#   cd fuzz && cargo +nightly fuzz run -s none -a <target> ../target/fuzz-artifacts/<target>/crash-...
#
#   FUZZ_SECONDS=300 scripts/fuzz-targets.sh            # every target
#   FUZZ_SECONDS=60 scripts/fuzz-targets.sh amounts     # one
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECONDS_EACH=${FUZZ_SECONDS:-30}
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(json_body amounts usage_event sqs_event)
fi
command -v cargo-fuzz >/dev/null || {
  echo "fuzz-targets: cargo-fuzz not on PATH (run through \`make fuzz-targets\`)" >&2
  exit 1
}
if rustup run nightly rustc --version >/dev/null 2>&1; then
  FUZZ=(cargo +nightly fuzz)
  echo "fuzz-targets: nightly toolchain ($(rustup run nightly rustc --version))"
else
  FUZZ=(env RUSTC_BOOTSTRAP=1 cargo fuzz)
  echo "fuzz-targets: no nightly toolchain; $(rustc --version) with RUSTC_BOOTSTRAP=1"
fi
BUILD=(-s none -a --target-dir "$ROOT/target/fuzz")

cd fuzz
"${FUZZ[@]}" build "${BUILD[@]}"
FAILED=()
for t in "${TARGETS[@]}"; do
  corpus="$ROOT/target/fuzz-corpus/$t"
  artifacts="$ROOT/target/fuzz-artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  seeds=()
  [ -d "seeds/$t" ] && seeds=("seeds/$t")
  echo
  echo "=== fuzz-targets: $t, ${SECONDS_EACH}s ==="
  if ! "${FUZZ[@]}" run "${BUILD[@]}" "$t" "$corpus" "${seeds[@]}" -- \
    -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -timeout=10 \
    -artifact_prefix="$artifacts/" -print_final_stats=1 2>"$ROOT/target/fuzz-$t.log"; then
    tail -40 "$ROOT/target/fuzz-$t.log" >&2
    FAILED+=("$t")
  else
    grep -E "^stat::number_of_executed_units|^stat::new_units_added|^#[0-9]+ +DONE" \
      "$ROOT/target/fuzz-$t.log" || tail -3 "$ROOT/target/fuzz-$t.log"
  fi
done
if [ ${#FAILED[@]} -gt 0 ]; then
  echo "fuzz-targets: FAILED: ${FAILED[*]} (inputs in target/fuzz-artifacts/)" >&2
  exit 1
fi
echo "fuzz-targets: OK (${TARGETS[*]}, ${SECONDS_EACH}s each)"
