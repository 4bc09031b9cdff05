"""schemathesis hooks of `make fuzz` (scripts/fuzz.sh sets SCHEMATHESIS_HOOKS).

Two rules of docs/openapi.yaml that a JSON Schema cannot state, applied to
positive (schema-valid) cases only, so that they stay valid:

- `cursor` is the `next_cursor` of a previous page: any other string is 400
  `invalid_request`. Positive cases send none (negative ones keep theirs,
  e.g. the empty cursor).
- A redemption code's `expires_at` must be in the future when the batch is
  created: a generated date-time in the past is moved to the year 2999.
"""

from datetime import datetime, timezone

import schemathesis

CREATE_CODES = ("POST", "/v1/admin/redemption-codes")


def _future(value):
    if not isinstance(value, str):
        return value
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return value
    if at.tzinfo is None or at > datetime.now(timezone.utc):
        return value
    try:
        later = at.replace(year=2999)
    except ValueError:  # 29 February
        later = at.replace(year=2999, day=28)
    return later.isoformat().replace("+00:00", "Z")


def _positive(case):
    meta = getattr(case, "meta", None)
    return meta is None or meta.generation.mode.is_positive


@schemathesis.hook
def map_case(context, case):
    operation = context.operation
    if operation is None or not _positive(case):
        return case
    if isinstance(case.query, dict) and "cursor" in case.query:
        case.query = {k: v for k, v in case.query.items() if k != "cursor"}
    if (operation.method.upper(), operation.path) == CREATE_CODES:
        if isinstance(case.body, dict) and "expires_at" in case.body:
            case.body = {**case.body, "expires_at": _future(case.body["expires_at"])}
    return case
