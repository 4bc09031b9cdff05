#!/usr/bin/env bash
# Cold starts of the four functions against two baselines (issue 16): release
# builds, stripped, each started COLDSTART_RUNS times (default 21) against a
# Lambda Runtime API stub. Prints size, init time (exec -> first
# GET /runtime/invocation/next), peak RSS at that point, the first invocation
# (one sample event from events/, its DynamoDB calls answered by a stub) and
# the peak RSS after it, with ratios.
# COLDSTART_TSV=FILE also writes the medians there (make bench reads them).
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
RUNS=${COLDSTART_RUNS:-21}
FUNCTIONS=(quota credits redemption usage-ingest)
# The first invocation's event of each function.
declare -A EVENT=(
    [quota]=events/quota-check.json
    [credits]=events/credits-get-my-credits.json
    [redemption]=events/redemption-list-my-redemptions.json
    [usage-ingest]=events/sqs-usage-batch.json
)

"$CARGO" build --release --locked $(printf -- '-p %s ' "${FUNCTIONS[@]}")
"$CARGO" build --release --locked --manifest-path bench/coldstart/Cargo.toml

BENCH=bench/coldstart/target/release
args=("hello=$BENCH/hello" "hello-sdk=$BENCH/hello-sdk")
for f in "${FUNCTIONS[@]}"; do
    args+=("$f=target/release/$f@${EVENT[$f]}")
done
tsv=()
if [ -n "${COLDSTART_TSV:-}" ]; then
    mkdir -p "$(dirname "$COLDSTART_TSV")"
    tsv=(--tsv "$COLDSTART_TSV")
fi
exec "$BENCH/coldstart-probe" --runs "$RUNS" "${tsv[@]}" "${args[@]}"
