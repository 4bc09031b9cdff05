#!/usr/bin/env bash
# Runs the integration suite, unchanged, against a second DynamoDB-compatible
# engine: moto's server (Python), installed into .tools/moto-venv and started on
# a free loopback port for the duration of the run.
set -euo pipefail
cd "$(dirname "$0")/.."

MOTO_VERSION=5.2.5
VENV=.tools/moto-venv
if [ ! -x "$VENV/bin/moto_server" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "moto[server,dynamodb]==$MOTO_VERSION"
fi

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# moto's own server handles requests on threads and does not isolate one
# TransactWriteItems from another; DynamoDB does. Serving one request at a time
# gives moto the isolation the conditions rely on.
"$VENV/bin/python" - "$PORT" >.tools/moto.log 2>&1 <<'PY' &
import sys
from werkzeug.serving import run_simple
from moto.server import DomainDispatcherApplication, create_backend_app
run_simple("127.0.0.1", int(sys.argv[1]), DomainDispatcherApplication(create_backend_app), threaded=False)
PY
MOTO_PID=$!
trap 'kill $MOTO_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do
  curl -s -o /dev/null "http://127.0.0.1:$PORT" && break
  sleep 0.2
done

echo "integration suite against moto (one request at a time) on http://127.0.0.1:$PORT"
# A one-request-at-a-time server is slow: run tests one after another, and the
# 100,000-event test at a smaller count unless the caller says otherwise.
export SPENDGUARD_TINY_EVENTS="${SPENDGUARD_TINY_EVENTS:-5000}"
SPENDGUARD_TEST_ENDPOINT="http://127.0.0.1:$PORT" \
  cargo test -p spendguard-tests --locked -- --test-threads=1 "$@"
