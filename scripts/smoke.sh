#!/usr/bin/env bash
# Black-box smoke test of the local stack: starts `spendguard-local serve` on a
# free port with a fresh data directory, walks every capability (quotas, usage
# ingest through the Lambda Invoke API, credits, redemption codes) with curl,
# asserts status codes and key fields, and exits non-zero on the first mismatch.
#
#   scripts/smoke.sh                      # builds spendguard-local if needed
#   SPENDGUARD_LOCAL_BIN=path scripts/smoke.sh
#
# Needs curl and python3 (for reading JSON); nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${SPENDGUARD_LOCAL_BIN:-target/debug/spendguard-local}
if [ ! -x "$BIN" ]; then
  cargo build -q -p spendguard-local
fi

# shellcheck source=scripts/local-stack.sh
. scripts/local-stack.sh
local_stack_init smoke
cleanup() {
  stop_local_stack
  rm -rf "$WORK"
}
trap cleanup EXIT
start_local_stack smoke

ADMIN=$(token smoke-admin admin)
ALICE=$(token alice user)
BOB=$(token bob user)
GATEWAY=$(token ai-gateway service)

STEPS=0
STATUS=""
BODY="$WORK/body.json"
HEADERS="$WORK/headers.txt"
LAST=""

fail() {
  echo "smoke: FAIL: $LAST: $*" >&2
  echo "--- response ($STATUS)" >&2
  cat "$HEADERS" "$BODY" >&2 || true
  echo >&2
  exit 1
}

# req METHOD PATH TOKEN [BODY [HEADER...]]: TOKEN "" sends none, BODY "" none.
req() {
  local method=$1 path=$2 tok=$3 body=${4-}
  shift 3
  if [ $# -gt 0 ]; then shift; fi
  local args=(-s -X "$method" -o "$BODY" -D "$HEADERS" -w '%{http_code}')
  [ -n "$tok" ] && args+=(-H "Authorization: Bearer $tok")
  [ -n "$body" ] && args+=(-H 'content-type: application/json' --data-binary "$body")
  for h in "$@"; do args+=(-H "$h"); done
  LAST="$method $path"
  STATUS=$(curl "${args[@]}" "$BASE$path")
  STEPS=$((STEPS + 1))
}

# expect STATUS [ERROR_CODE]: the status, and for errors the contract's shape.
expect() {
  [ "$STATUS" = "$1" ] || fail "status $STATUS, expected $1"
  if [ $# -gt 1 ]; then
    check "set(j) == {'error'} and j['error']['code'] == '$2' and isinstance(j['error']['message'], str)"
  fi
}

# check PYTHON_EXPR: true of the response body `j` (and `h`, lower-case headers).
check() {
  python3 - "$BODY" "$HEADERS" "$1" <<'PY' || fail "not true: $1"
import json, re, sys
body, headers, expr = sys.argv[1:]
j = json.load(open(body))
h = {}
for line in open(headers, encoding="latin-1"):
    if ":" in line:
        k, v = line.split(":", 1)
        h[k.strip().lower()] = v.strip()
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
ts = lambda v: isinstance(v, str) and bool(TS.match(v))
usd = lambda v: isinstance(v, str) and bool(re.match(r"^-?\d+(\.\d{1,10})?$", v))
page = lambda: set(j) >= {"items", "next_cursor"} and isinstance(j["items"], list)
sys.exit(0 if eval(expr) else 1)
PY
}

# value PYTHON_EXPR: prints an expression of the response body `j`.
value() {
  python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$BODY" "$1"
}

NOW=$(date -u +%Y-%m-%dT%H:%M:%SZ)
sqs() { # sqs ID BODY [ID BODY ...]: an SQS event of these messages
  python3 - "$@" <<'PY'
import json, sys
a = sys.argv[1:]
print(json.dumps({"Records": [
    {"messageId": a[i], "receiptHandle": "r", "body": a[i + 1], "attributes": {},
     "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
     "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:spendguard-billing",
     "awsRegion": "us-east-1"} for i in range(0, len(a), 2)]}))
PY
}

echo "smoke: local stack on $BASE"

# --- auth and routing -------------------------------------------------------
req GET /v1/me/quotas ""
expect 401 unauthorized
req GET /v1/me/quotas "not.a.token"
expect 401 unauthorized
req GET /v1/no-such-route "$ALICE"
expect 404
check "j['error']['code'] and j['error']['message']"
req GET /v1/admin/quota-defaults "$ALICE"
expect 403 forbidden
req POST /v1/quota/check "$ALICE" '{"user_id":"alice","platform":"openai"}'
expect 403 forbidden

# --- quotas -----------------------------------------------------------------
req PUT /v1/admin/quota-defaults/system "$ADMIN" '{"openai":{"daily_limit_usd":"1.50","weekly_limit_usd":10},"anthropic":{"monthly_limit_usd":"0"}}'
expect 200
check "j['openai'] == {'daily_limit_usd': '1.5', 'weekly_limit_usd': '10', 'monthly_limit_usd': None}"
req PUT /v1/admin/quota-defaults/sources/github "$ADMIN" '{"openai":{"daily_limit_usd":"2"}}'
expect 200
req PUT /v1/admin/quota-defaults/sources/email "$ADMIN" '{}'
expect 200
check "j == {}"
req PUT /v1/admin/quota-defaults/sources/myspace "$ADMIN" '{}'
expect 400 unknown_auth_source
req GET /v1/admin/quota-defaults "$ADMIN"
expect 200
check "j['sources']['email'] is None and j['sources']['github']['openai']['daily_limit_usd'] == '2' and j['system']['anthropic']['monthly_limit_usd'] == '0'"
check "set(j['sources']) == {'email','linuxdo','oidc','wechat','github','google','dingtalk'}"
req POST /v1/admin/users/alice/quotas/init "$ADMIN" '{"auth_source":"github"}'
expect 200
check "j['user_id'] == 'alice' and [q['platform'] for q in j['quotas']] == ['anthropic','openai','gemini','antigravity']"
check "j['quotas'][1]['daily']['limit_usd'] == '2' and j['quotas'][1]['weekly']['limit_usd'] == '10' and j['quotas'][0]['monthly']['limit_usd'] == '0'"
check "all(ts(q[w]['window_start']) and ts(q[w]['resets_at']) and usd(q[w]['usage_usd']) for q in j['quotas'] for w in ('daily','weekly','monthly'))"
req POST /v1/admin/users/alice/quotas/init "$ADMIN" '{"auth_source":"nope"}'
expect 400 unknown_auth_source
req PUT /v1/admin/users/bob/quotas "$ADMIN" '{"quotas":[{"platform":"gemini","daily_limit_usd":0.25}]}'
expect 200
check "[q['daily']['limit_usd'] for q in j['quotas']] == [None, None, '0.25', None]"
req PUT /v1/admin/users/bob/quotas "$ADMIN" '{"quotas":[{"platform":"gemini"},{"platform":"gemini"}]}'
expect 400
req PUT /v1/admin/users/bob/quotas "$ADMIN" '{"quotas":[{"platform":"myllm"}]}'
expect 400 unknown_platform
req PUT /v1/admin/users/bob/quotas "$ADMIN" '{"quotas":[{"platform":"gemini","daily_limit_usd":"0.12345678901"}]}'
expect 400 invalid_amount
req PUT /v1/admin/users/bob/quotas "$ADMIN" '{"quotas":[{"platform":"gemini","daily_limit_usd":-1}]}'
expect 400 invalid_amount
req GET "/v1/admin/users/a%20b/quotas" "$ADMIN"
expect 400 invalid_id
req GET /v1/admin/users/bob/quotas "$ADMIN"
expect 200
check "j['user_id'] == 'bob'"
req POST /v1/admin/users/alice/quotas/openai/reset "$ADMIN" '{"window":"daily"}'
expect 200
req POST /v1/admin/users/alice/quotas/openai/reset "$ADMIN" '{"window":"yearly"}'
expect 400
req GET /v1/me/quotas "$ALICE"
expect 200
check "j['user_id'] == 'alice' and len(j['quotas']) == 4"
req GET /v1/me/quotas/openai/check "$ALICE"
expect 200
check "j['allowed'] is True and j['reason'] is None and j['retry_after_seconds'] is None and j['windows']['daily']['remaining_usd'] == '2'"
req GET /v1/me/quotas/anthropic/check "$ALICE"
expect 200
check "j['allowed'] is False and j['reason'] == 'platform_disabled'"
req GET /v1/me/quotas/myllm/check "$ALICE"
expect 400 unknown_platform
req POST /v1/quota/check "$GATEWAY" '{"user_id":"alice","platform":"openai"}'
expect 200
check "j['allowed'] is True"
req POST /v1/quota/check "$ADMIN" '{"user_id":"alice","platform":"openai"}'
expect 200
req POST /v1/quota/check "$GATEWAY" '{"user_id":'
expect 400

# --- usage ingest (Lambda Invoke API) and the check that sees it ------------
EVENT="{\"event_id\":\"smoke-evt-1\",\"user_id\":\"alice\",\"platform\":\"openai\",\"cost_usd\":\"2\",\"occurred_at\":\"$NOW\",\"request_id\":\"r1\",\"model\":\"m\",\"credits\":3}"
BATCH=$(sqs msg-1 "$EVENT" msg-2 '{not json' msg-3 "{\"event_id\":\"smoke-evt-3\",\"user_id\":\"alice\",\"platform\":\"myllm\",\"cost_usd\":\"1\",\"occurred_at\":\"$NOW\"}")
req POST /2015-03-31/functions/usage-ingest/invocations "" "$BATCH"
expect 200
check "j == {'batchItemFailures': [{'itemIdentifier': 'msg-2'}, {'itemIdentifier': 'msg-3'}]}"
# Delivered again: exactly once.
req POST /2015-03-31/functions/usage-ingest/invocations "" "$(sqs msg-1b "$EVENT")"
expect 200
check "j == {'batchItemFailures': []}"
req POST /v1/quota/check "$GATEWAY" '{"user_id":"alice","platform":"openai"}'
expect 200
check "j['allowed'] is False and j['reason'] == 'daily_quota_exhausted' and isinstance(j['retry_after_seconds'], int) and j['retry_after_seconds'] > 0"
check "j['windows']['daily']['usage_usd'] == '2' and j['windows']['daily']['remaining_usd'] == '0' and j['windows']['weekly']['remaining_usd'] == '8' and j['windows']['monthly']['remaining_usd'] is None"
req POST /2015-03-31/functions/no-such-function/invocations "" '{}'
expect 404

# --- credits ----------------------------------------------------------------
req GET /v1/me/credits "$ALICE"
expect 200
check "j['user_id'] == 'alice' and (j['available'], j['total'], j['used']) == (-3, 0, 3) and ts(j['updated_at'])"
req GET /v1/me/credits/transactions "$ALICE"
expect 200
check "page() and j['next_cursor'] is None and j['items'][0]['type'] == 'consume' and j['items'][0]['amount'] == -3 and j['items'][0]['seq'] == 1"
req POST /v1/admin/users/alice/credits/adjust "$ADMIN" '{"mode":"check","reason":"look"}'
expect 200
check "j['mode'] == 'check' and j['account']['available'] == -3"
req POST /v1/admin/users/alice/credits/adjust "$ADMIN" '{"mode":"dry_run","target":100,"reason":"plan"}'
expect 200
check "j['mode'] == 'dry_run' and (j['previous'], j['target'], j['adjustment']) == (-3, 100, 103)"
req POST /v1/admin/users/alice/credits/adjust "$ADMIN" '{"delta":100,"reason":"welcome"}' "Idempotency-Key: smoke-grant-1"
expect 200
check "j['mode'] == 'apply' and (j['previous'], j['current'], j['adjustment']) == (-3, 97, 100) and isinstance(j['transaction_id'], str)"
check "'idempotent-replayed' not in h"
FIRST=$(cat "$BODY")
req POST /v1/admin/users/alice/credits/adjust "$ADMIN" '{"reason":"welcome","delta":100}' "Idempotency-Key: smoke-grant-1"
expect 200
check "h.get('idempotent-replayed') == 'true'"
[ "$(cat "$BODY")" = "$FIRST" ] || fail "the replay differs from the first response"
req POST /v1/admin/users/alice/credits/adjust "$ADMIN" '{"delta":101,"reason":"welcome"}' "Idempotency-Key: smoke-grant-1"
expect 422 idempotency_key_mismatch
req POST /v1/admin/users/alice/credits/adjust "$ADMIN" '{"delta":-1000,"reason":"too much"}'
expect 409 insufficient_credits
req POST /v1/admin/users/alice/credits/adjust "$ADMIN" '{"delta":1.5,"reason":"x"}'
expect 400 invalid_amount
req POST /v1/admin/users/alice/credits/adjust "$ADMIN" '{"delta":1,"target":1,"reason":"x"}'
expect 400
req POST /v1/admin/users/alice/credits/adjust "$ALICE" '{"delta":1,"reason":"x"}'
expect 403 forbidden
req GET /v1/admin/users/alice/credits "$ADMIN"
expect 200
check "(j['available'], j['total'], j['used']) == (97, 100, 3)"
req GET "/v1/admin/users/alice/credits/transactions?limit=1" "$ADMIN"
expect 200
check "page() and len(j['items']) == 1 and j['items'][0]['seq'] == 2 and j['items'][0]['type'] == 'grant' and isinstance(j['next_cursor'], str)"
CURSOR=$(value "j['next_cursor']")
req GET "/v1/admin/users/alice/credits/transactions?limit=1&cursor=$CURSOR" "$ADMIN"
expect 200
check "j['items'][0]['seq'] == 1 and j['next_cursor'] is None"
for bad in "limit=0" "limit=101" "limit=x" "cursor=garbage"; do
  req GET "/v1/admin/users/alice/credits/transactions?$bad" "$ADMIN"
  expect 400
done
req GET "/v1/admin/audit?action=ADMIN_ADJUST_CREDITS&user_id=alice" "$ADMIN"
expect 200
check "page() and len(j['items']) == 2 and j['next_cursor'] is None"
check "all(set(e) >= {'id','actor','action','target_user','source_ip','user_agent','success','details','created_at'} for e in j['items'])"
check "[e['success'] for e in j['items']] == [False, True] and j['items'][1]['actor'] == 'smoke-admin' and ts(j['items'][1]['created_at'])"
req GET /v1/admin/audit "$ALICE"
expect 403 forbidden

# --- redemption codes -------------------------------------------------------
req POST /v1/admin/redemption-codes "$ADMIN" '{"count":3,"prefix":"SMOKE","credits":50,"subscription":{"plan_id":"pro","unit":"month","quantity":1},"max_uses":2,"batch_name":"smoke"}' "Idempotency-Key: smoke-batch-1"
expect 201
check "isinstance(j['batch_id'], str) and len(j['codes']) == 3 and all(c.startswith('SMOKE-') for c in j['codes'])"
BATCH_ID=$(value "j['batch_id']")
CODE1=$(value "j['codes'][0]")
CODE2=$(value "j['codes'][1]")
FIRST=$(cat "$BODY")
req POST /v1/admin/redemption-codes "$ADMIN" '{"count":3,"prefix":"SMOKE","credits":50,"subscription":{"plan_id":"pro","unit":"month","quantity":1},"max_uses":2,"batch_name":"smoke"}' "Idempotency-Key: smoke-batch-1"
expect 201
check "h.get('idempotent-replayed') == 'true'"
[ "$(cat "$BODY")" = "$FIRST" ] || fail "the replay differs from the first response"
req POST /v1/admin/redemption-codes "$ADMIN" '{"count":0,"credits":1,"max_uses":1}'
expect 400
req POST /v1/admin/redemption-codes "$ALICE" '{"count":1,"credits":1,"max_uses":1}'
expect 403 forbidden
req GET "/v1/admin/redemption-codes?batch_id=$BATCH_ID" "$ADMIN"
expect 200
check "page() and len(j['items']) == 3 and j['next_cursor'] is None"
req GET "/v1/admin/redemption-codes?batch_id=$BATCH_ID&limit=3" "$ADMIN"
expect 200
check "len(j['items']) == 3 and j['next_cursor'] is None"
req GET "/v1/admin/redemption-codes/$CODE1" "$ADMIN"
expect 200
check "j['code'] == '$CODE1' and (j['used_count'], j['max_uses'], j['enabled'], j['expires_at']) == (0, 2, True, None)"
req PATCH "/v1/admin/redemption-codes/$CODE2" "$ADMIN" '{"enabled":false}'
expect 200
check "j['enabled'] is False"
req GET "/v1/admin/redemption-codes?status=disabled" "$ADMIN"
expect 200
check "[c['code'] for c in j['items']] == ['$CODE2']"
LOWER=$(echo "$CODE1" | tr 'A-Z' 'a-z')
req POST /v1/me/redemptions "$ALICE" "{\"code\":\"$LOWER\"}" "Idempotency-Key: smoke-redeem-1"
expect 201
check "j['code'] == '$CODE1' and j['credits_granted'] == 50 and j['balance_after'] == 147 and j['is_new'] is True and ts(j['redeemed_at'])"
check "j['subscription']['plan_id'] == 'pro' and ts(j['subscription']['expires_at'])"
FIRST=$(cat "$BODY")
req POST /v1/me/redemptions "$ALICE" "{\"code\":\"$LOWER\"}" "Idempotency-Key: smoke-redeem-1"
expect 201
check "h.get('idempotent-replayed') == 'true'"
[ "$(cat "$BODY")" = "$FIRST" ] || fail "the replay differs from the first response"
req POST /v1/me/redemptions "$ALICE" "{\"code\":\"$CODE1\"}"
expect 409 already_redeemed
req POST /v1/me/redemptions "$ALICE" "{\"code\":\"$CODE2\"}"
expect 403 code_disabled
req POST /v1/me/redemptions "$ALICE" '{"code":"SMOKE-NOPE-NOPE"}'
expect 404 code_not_found
req POST /v1/me/redemptions "$ALICE" '{"code":"bad code!"}'
expect 400 invalid_id
req POST /v1/me/redemptions "$BOB" "{\"code\":\"$CODE1\"}"
expect 201
check "j['is_new'] is True and j['balance_after'] == 50"
req POST /v1/me/redemptions "$(token carol user)" "{\"code\":\"$CODE1\"}"
expect 409 code_exhausted
req GET /v1/me/redemptions "$ALICE"
expect 200
check "page() and [r['code'] for r in j['items']] == ['$CODE1'] and j['next_cursor'] is None"
req GET /v1/me/subscriptions "$ALICE"
expect 200
check "page() and j['items'][0]['plan_id'] == 'pro' and ts(j['items'][0]['expires_at'])"
req GET "/v1/admin/redemption-codes/$CODE1/redemptions" "$ADMIN"
expect 200
check "page() and sorted(r['user_id'] for r in j['items']) == ['alice', 'bob'] and j['next_cursor'] is None"
req GET /v1/me/credits "$ALICE"
expect 200
check "(j['available'], j['total'], j['used']) == (147, 150, 3)"
req GET /v1/me/credits/transactions "$ALICE"
expect 200
check "[e['type'] for e in j['items']] == ['redeem', 'grant', 'consume'] and all(j['items'][i]['balance_before'] == j['items'][i + 1]['balance_after'] for i in range(2))"

echo "smoke: OK ($STEPS requests)"
