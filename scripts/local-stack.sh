# Sourced by scripts/smoke.sh and scripts/fuzz.sh: one throwaway local stack
# on a free port, with a fresh data directory, the embedded engine and the
# default platforms and time zone whatever the caller's environment says (the
# assertions and the OpenAPI document's platform enum assume the defaults).
#
#   local_stack_init NAME   sets WORK, PORT, BASE and a dev JWT secret of this run
#   start_local_stack NAME  starts "$BIN serve", sets SERVER_PID, waits for it
#   stop_local_stack        stops it (call from the EXIT trap)
#   token USER ROLE         a dev token for this stack

local_stack_init() {
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/spendguard-$1.XXXXXX")
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  BASE="http://127.0.0.1:$PORT"
  # A secret of this run only, for the stack and the tokens alike.
  export SPENDGUARD_DEV_JWT_SECRET="$1-$$-$RANDOM"
  SERVER_PID=""
}

start_local_stack() {
  env -u AWS_ENDPOINT_URL_DYNAMODB -u AWS_ENDPOINT_URL \
    -u SPENDGUARD_PLATFORMS -u SPENDGUARD_TZ -u SPENDGUARD_TABLE \
    SPENDGUARD_LOCAL_ADDR="127.0.0.1:$PORT" SPENDGUARD_ENGINE_PORT=0 \
    SPENDGUARD_LOCAL_DATA="$WORK/data" RUST_LOG="${RUST_LOG:-warn}" \
    "$BIN" serve >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 300); do
    if curl -s -o /dev/null "$BASE/"; then return 0; fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "$1: the local stack did not start:" >&2
  cat "$WORK/server.log" >&2
  exit 1
}

stop_local_stack() {
  if [ -n "${SERVER_PID:-}" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
}

token() { "$BIN" token --user "$1" --role "$2"; }
