#!/usr/bin/env bash
# Cold starts of the four functions against two baselines (issue 16): release
# builds, stripped, each started COLDSTART_RUNS times (default 21) against a
# Lambda Runtime API stub. Prints size, init time (exec -> first
# GET /runtime/invocation/next) and peak RSS at that point, with ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
RUNS=${COLDSTART_RUNS:-21}
FUNCTIONS=(quota credits redemption usage-ingest)

"$CARGO" build --release --locked $(printf -- '-p %s ' "${FUNCTIONS[@]}")
"$CARGO" build --release --locked --manifest-path bench/coldstart/Cargo.toml

BENCH=bench/coldstart/target/release
args=("hello=$BENCH/hello" "hello-sdk=$BENCH/hello-sdk")
for f in "${FUNCTIONS[@]}"; do
    args+=("$f=target/release/$f")
done
exec "$BENCH/coldstart-probe" --runs "$RUNS" "${args[@]}"
