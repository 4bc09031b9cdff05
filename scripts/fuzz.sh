#!/usr/bin/env bash
# Schema-driven fuzzing of docs/openapi.yaml against a fresh local stack
# (`make fuzz`). Starts `spendguard-local serve` on a free port with a
# temporary data directory and runs schemathesis once per caller:
#
#   admin     /v1/admin/* and /v1/quota/*      (admin token)
#   user      /v1/me/*                         (user token)
#   service   /v1/quota/*                      (service token)
#   lambda    the Lambda Invoke API            (no token, as in AWS)
#
# Each run: positive and negative data, every check (`--checks all`: no 5xx,
# status codes, content types, headers and bodies as documented, valid data
# accepted, invalid data refused, auth enforced) but the two that want 405 for
# an undocumented method (the contract answers 404 `route_not_found`),
# phases examples, coverage and fuzzing, at most FUZZ_EXAMPLES cases per
# operation and phase, a fixed seed (FUZZ_SEED) so a failure reproduces.
# scripts/fuzz.toml sets the statuses a valid request may meet;
# scripts/fuzz_hooks.py keeps two rules no schema can state (a cursor comes
# from a previous page; a code's expires_at is in the future). Exits non-zero
# on any failure.
#
#   make fuzz                                # installs schemathesis (pinned) first
#   FUZZ_EXAMPLES=100 FUZZ_SEED=7 make fuzz
#   SPENDGUARD_LOCAL_BIN=path scripts/fuzz.sh   # schemathesis must be on PATH
set -euo pipefail
cd "$(dirname "$0")/.."

EXAMPLES=${FUZZ_EXAMPLES:-100}
SEED=${FUZZ_SEED:-20261}
BIN=${SPENDGUARD_LOCAL_BIN:-target/debug/spendguard-local}
if [ -z "${SPENDGUARD_LOCAL_BIN:-}" ]; then
  cargo build -q -p spendguard-local
fi
command -v schemathesis >/dev/null || {
  echo "fuzz: schemathesis not on PATH (run through \`make fuzz\`)" >&2
  exit 1
}

# shellcheck source=scripts/local-stack.sh
. scripts/local-stack.sh
local_stack_init fuzz
cleanup() {
  stop_local_stack
  if [ -n "${FUZZ_KEEP:-}" ]; then
    echo "fuzz: kept $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

start_local_stack fuzz
echo "fuzz: local stack on $BASE (data in $WORK), $EXAMPLES examples, seed $SEED"

FAILED=()
# run NAME TOKEN EXCLUDED FILTER...: one schemathesis run; TOKEN "" sends
# none; EXCLUDED: checks skipped besides the two 405 ones.
run() {
  local name=$1 tok=$2 excluded=unsupported_method,allow_header_conformance${3:+,$3}
  shift 3
  local args=(run docs/openapi.yaml --url "$BASE"
    --checks all --exclude-checks "$excluded"
    --mode all --phases examples,coverage,fuzzing
    --max-examples "$EXAMPLES" --seed "$SEED" --workers 1
    --generation-database none --request-timeout 30
    --report junit --report-dir "$WORK/reports/$name" "$@")
  [ -n "$tok" ] && args+=(-H "Authorization: Bearer $tok")
  echo
  echo "=== fuzz: $name ==="
  if ! SCHEMATHESIS_HOOKS=fuzz_hooks PYTHONPATH="$PWD/scripts${PYTHONPATH:+:$PYTHONPATH}" \
    schemathesis --config-file scripts/fuzz.toml "${args[@]}" --no-color; then
    FAILED+=("$name")
  fi
}

run admin "$(token fuzz-admin admin)" "" --include-path-regex '^/v1/(admin|quota)/'
run user "$(token fuzz-user user)" "" --include-path-regex '^/v1/me/'
run service "$(token fuzz-gateway service)" "" --include-path-regex '^/v1/quota/'
# Lambda validates no event: it invokes whatever the function's runtime can
# read into its AWS event type, and those types (aws_lambda_events, serde)
# accept more than a schema says (a struct given as an array of its fields,
# null for most fields). Negative data still runs (no 5xx, answers as
# documented); only "invalid data must be refused" does not apply here.
run lambda "" negative_data_rejection --include-tag lambda

if ! kill -0 "$SERVER_PID" 2>/dev/null; then
  echo "fuzz: the local stack died:" >&2
  tail -50 "$WORK/server.log" >&2
  exit 1
fi
if [ ${#FAILED[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${FAILED[*]}" >&2
  exit 1
fi
echo "fuzz: OK (admin, user, service, lambda)"
