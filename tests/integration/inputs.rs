//! Input edges through the HTTP handlers: one JSON reader for every body
//! (duplicate keys, nulls), integer and USD amounts at their edges,
//! `Idempotency-Key` characters and empty list filters.

use super::redemption::one_code;
use serde_json::{json, Value};
use spendguard_tests::{TestEnv, TestResponse};

const ADJUST: &str = "/v1/admin/users/alice/credits/adjust";

async fn adjust_raw(env: &TestEnv, body: &str) -> TestResponse {
    env.post(ADJUST)
        .as_admin()
        .header("content-type", "application/json")
        .raw_body(body)
        .send()
        .await
}

#[tokio::test]
async fn a_duplicate_key_is_refused_on_every_route() {
    let env = TestEnv::new().await;
    let code = one_code(&env, 10, 5).await;
    let before = env.table_snapshot().await;
    let redeem = format!(r#"{{"code":"{code}","code":"{code}"}}"#);
    let routes: Vec<(&str, String, &str)> = vec![
        // serde_json alone kept the last key: this deducted a million.
        (
            "POST",
            ADJUST.into(),
            r#"{"delta":5,"delta":-1000000,"reason":"x","force":true}"#,
        ),
        (
            "POST",
            ADJUST.into(),
            r#"{"delta":5,"reason":"x","reason":"y"}"#,
        ),
        (
            "PUT",
            "/v1/admin/quota-defaults/system".into(),
            r#"{"openai":{},"openai":{}}"#,
        ),
        (
            "PUT",
            "/v1/admin/quota-defaults/sources/github".into(),
            r#"{"openai":{"daily_limit_usd":"1","daily_limit_usd":null}}"#,
        ),
        (
            "POST",
            "/v1/admin/users/alice/quotas/init".into(),
            r#"{"auth_source":"email","auth_source":"github"}"#,
        ),
        (
            "PUT",
            "/v1/admin/users/alice/quotas".into(),
            r#"{"quotas":[{"platform":"openai","daily_limit_usd":"1","daily_limit_usd":"2"}]}"#,
        ),
        (
            "POST",
            "/v1/admin/users/alice/quotas/openai/reset".into(),
            r#"{"window":"daily","window":"weekly"}"#,
        ),
        (
            "POST",
            "/v1/quota/check".into(),
            r#"{"user_id":"alice","platform":"openai","platform":"gemini"}"#,
        ),
        (
            "POST",
            "/v1/admin/redemption-codes".into(),
            r#"{"count":1,"credits":1,"max_uses":1,"max_uses":2}"#,
        ),
        (
            "POST",
            "/v1/admin/redemption-codes".into(),
            r#"{"count":1,"max_uses":1,"subscription":{"plan_id":"p","unit":"day","quantity":1,"unit":"year"}}"#,
        ),
        (
            "PATCH",
            format!("/v1/admin/redemption-codes/{code}"),
            r#"{"enabled":false,"enabled":true}"#,
        ),
        ("POST", "/v1/me/redemptions".into(), &redeem),
    ];
    for (method, path, body) in routes {
        let req = env.request(method, &path);
        let req = if path.starts_with("/v1/me/") {
            req.as_user("alice")
        } else {
            req.as_admin()
        };
        let res = req
            .header("content-type", "application/json")
            .raw_body(body)
            .send()
            .await;
        res.assert_error(400, "invalid_request");
        let message = res.body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("duplicate"),
            "{method} {path} {body}: {message}"
        );
    }
    assert_eq!(env.table_snapshot().await, before, "a refused body wrote");
}

#[tokio::test]
async fn adjust_integer_edges() {
    let env = TestEnv::new().await;
    // 1e400 was a malformed body (invalid_request); 1.0, 1e2 and -0 were
    // "out of range". JSON Schema's integer is any whole number, however spelled.
    for (value, says) in [
        ("1e400", "out of range"),
        ("-1e400", "out of range"),
        ("9223372036854775808", "out of range"),
        ("1.5", "must be a whole number"),
        ("1e-2", "must be a whole number"),
    ] {
        for field in ["delta", "target"] {
            let body = format!(r#"{{"{field}":{value},"reason":"edge"}}"#);
            let res = adjust_raw(&env, &body).await;
            res.assert_error(400, "invalid_amount");
            let message = res.body["error"]["message"].as_str().unwrap();
            assert!(message.contains(says), "{body}: {message}");
        }
    }
    for (value, adjustment) in [("1.0", 1), ("1e2", 100), ("-0", 0), ("-1.0E1", -10)] {
        let body = format!(r#"{{"delta":{value},"reason":"edge","mode":"dry_run","force":true}}"#);
        let res = adjust_raw(&env, &body).await;
        res.assert_status(200);
        assert_eq!(res.body["adjustment"], adjustment, "{body}");
    }
    // The whole 64-bit range is a balance.
    let res = adjust_raw(
        &env,
        r#"{"delta":-9223372036854775808,"reason":"edge","force":true,"mode":"dry_run"}"#,
    )
    .await;
    res.assert_status(200);
    assert_eq!(res.body["target"], i64::MIN);
    let res = adjust_raw(
        &env,
        r#"{"delta":-9223372036854775808,"reason":"edge","force":true}"#,
    )
    .await;
    res.assert_status(200);
    assert_eq!(
        (
            &res.body["previous"],
            &res.body["current"],
            &res.body["adjustment"]
        ),
        (&json!(0), &json!(i64::MIN), &json!(i64::MIN))
    );
    assert_eq!(env.available("alice").await, i64::MIN);
    let ledger = env.full_ledger("alice").await;
    assert_eq!(ledger.len(), 1);
    assert_eq!(
        (
            &ledger[0]["type"],
            &ledger[0]["amount"],
            &ledger[0]["balance_after"]
        ),
        (&json!("deduct"), &json!(i64::MIN), &json!(i64::MIN))
    );
    // Below that the balance cannot go: a refusal of the state (409, like
    // insufficient_credits), not of the input (a schema-valid delta).
    for body in [
        r#"{"delta":-1,"reason":"edge","force":true}"#,
        r#"{"delta":-1,"reason":"edge","force":true,"mode":"dry_run"}"#,
        r#"{"target":9223372036854775807,"reason":"edge"}"#,
    ] {
        adjust_raw(&env, body)
            .await
            .assert_error(409, "balance_overflow");
    }
    assert_eq!(env.available("alice").await, i64::MIN);
}

#[tokio::test]
async fn usd_strings_are_exactly_the_openapi_pattern() {
    let env = TestEnv::new().await;
    let replace = |limit: Value| {
        let env = &env;
        async move {
            env.put("/v1/admin/users/bob/quotas")
                .as_admin()
                .json(&json!({"quotas": [{"platform": "openai", "daily_limit_usd": limit}]}))
                .send()
                .await
        }
    };
    for bad in [
        " 1",
        "1 ",
        "+1",
        ".5",
        "5.",
        "1e2",
        "-1",
        "",
        "0.00000000001",
    ] {
        let res = replace(json!(bad)).await;
        res.assert_error(400, "invalid_amount");
        assert!(
            res.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("not a valid USD amount"),
            "{bad:?}: {}",
            res.text
        );
    }
    for (good, shown) in [
        (json!("1.25"), "1.25"),
        (json!("007"), "7"),
        (json!("0.0000000001"), "0.0000000001"),
        // A JSON number follows JSON's grammar: an exponent is a number.
        (json!(1e2), "100"),
        (json!(0.5), "0.5"),
    ] {
        let res = replace(good.clone()).await;
        res.assert_status(200);
        assert_eq!(res.body["quotas"][1]["daily"]["limit_usd"], shown, "{good}");
    }
}

#[tokio::test]
async fn idempotency_key_is_printable_ascii_with_spaces() {
    let env = TestEnv::new().await;
    let body = json!({"delta": 5, "reason": "key"});
    let send = |key: Vec<u8>| {
        let env = &env;
        let body = body.clone();
        async move {
            env.post(ADJUST)
                .as_admin()
                .header_bytes("idempotency-key", &key)
                .json(&body)
                .send()
                .await
        }
    };
    // A space inside, every printable character, and the longest key.
    let printable: Vec<u8> = (0x20..=0x7E).collect();
    for key in [b"order 42".to_vec(), printable, vec![b'k'; 255]] {
        let first = send(key.clone()).await;
        first.assert_status(200);
        let again = send(key.clone()).await;
        again.assert_status(200);
        assert_eq!(
            again
                .headers
                .get("idempotent-replayed")
                .map(|v| v.as_bytes()),
            Some(&b"true"[..]),
            "{:?}",
            String::from_utf8_lossy(&key)
        );
        assert_eq!(again.body, first.body);
    }
    assert_eq!(env.available("alice").await, 15);
    for bad in [
        b"tab\there".to_vec(),
        "caf\u{e9}".as_bytes().to_vec(),
        vec![0xFF],
        vec![b'k'; 256],
    ] {
        send(bad.clone())
            .await
            .assert_error(400, "invalid_idempotency_key");
    }
    // The same on the other routes that take a key.
    let code = one_code(&env, 10, 5).await;
    env.post("/v1/me/redemptions")
        .as_user("alice")
        .header("idempotency-key", "redeem 1")
        .json(&json!({ "code": code }))
        .send()
        .await
        .assert_status(201);
    env.post("/v1/me/redemptions")
        .as_user("alice")
        .header("idempotency-key", "redeem\t1")
        .json(&json!({ "code": code }))
        .send()
        .await
        .assert_error(400, "invalid_idempotency_key");
    env.post("/v1/admin/redemption-codes")
        .as_admin()
        .header("idempotency-key", "batch 1")
        .json(&json!({"count": 1, "credits": 1, "max_uses": 1}))
        .send()
        .await
        .assert_status(201);
    assert_eq!(env.available("alice").await, 25);
}

#[tokio::test]
async fn empty_list_filters_are_refused() {
    let env = TestEnv::new().await;
    for (path, code) in [
        ("/v1/admin/audit?user_id=", "invalid_id"),
        ("/v1/admin/redemption-codes?batch_id=", "invalid_id"),
        ("/v1/admin/redemption-codes?status=", "invalid_request"),
        ("/v1/admin/audit?cursor=", "invalid_request"),
        ("/v1/admin/alerts?user_id=", "invalid_id"),
        ("/v1/admin/alerts?type=", "invalid_request"),
        (
            "/v1/admin/users/alice/credits/transactions?cursor=",
            "invalid_request",
        ),
    ] {
        env.get(path)
            .as_admin()
            .send()
            .await
            .assert_error(400, code);
    }
    for path in [
        "/v1/admin/audit?user_id=alice",
        "/v1/admin/redemption-codes?status=active",
        "/v1/admin/audit?action=",
        "/v1/admin/alerts?type=low_balance",
    ] {
        env.get(path).as_admin().send().await.assert_status(200);
    }
}

#[tokio::test]
async fn null_is_refused_where_a_field_is_not_nullable() {
    let env = TestEnv::new().await;
    let before = env.table_snapshot().await;
    for (body, code) in [
        (r#"{"delta":null,"reason":"x"}"#, "invalid_amount"),
        (
            r#"{"target":null,"delta":1,"reason":"x"}"#,
            "invalid_amount",
        ),
        (r#"{"delta":1,"reason":null}"#, "invalid_request"),
        (r#"{"delta":1,"reason":"x","mode":null}"#, "invalid_request"),
        (
            r#"{"delta":1,"reason":"x","force":null}"#,
            "invalid_request",
        ),
    ] {
        adjust_raw(&env, body).await.assert_error(400, code);
    }
    for (body, code) in [
        (
            json!({"count": 1, "credits": 1, "max_uses": 1, "expires_at": null}),
            "invalid_request",
        ),
        (
            json!({"count": 1, "credits": 1, "max_uses": 1, "prefix": null}),
            "invalid_request",
        ),
        (
            json!({"count": 1, "credits": 1, "max_uses": 1, "batch_name": null}),
            "invalid_request",
        ),
        (
            json!({"count": 1, "credits": null, "max_uses": 1,
                   "subscription": {"plan_id": "p", "unit": "day", "quantity": 1}}),
            "invalid_amount",
        ),
        (
            json!({"count": 1, "credits": 1, "max_uses": 1, "subscription": null}),
            "invalid_request",
        ),
    ] {
        env.post("/v1/admin/redemption-codes")
            .as_admin()
            .json(&body)
            .send()
            .await
            .assert_error(400, code);
    }
    // A number no float holds is still an amount, and refused as one.
    env.post("/v1/admin/redemption-codes")
        .as_admin()
        .header("content-type", "application/json")
        .raw_body(r#"{"count": 1, "credits": 1e400, "max_uses": 1}"#)
        .send()
        .await
        .assert_error(400, "invalid_amount");
    assert_eq!(env.table_snapshot().await, before, "a refused body wrote");
    // Nullable fields stay nullable: a limit of null is "unlimited".
    env.put("/v1/admin/users/alice/quotas")
        .as_admin()
        .json(&json!({"quotas": [{"platform": "openai", "daily_limit_usd": null}]}))
        .send()
        .await
        .assert_status(200);
}

#[tokio::test]
async fn an_http_event_lambda_http_cannot_read_is_refused_not_a_crash() {
    let env = TestEnv::new().await;
    let base = json!({"version": "2.0", "requestContext": {"http": {"method": "GET"}}});
    for (field, value) in [
        ("isBase64Encoded", json!(true)),
        ("rawQueryString", json!("\u{1}%%")),
        // Without its leading slash the path is read as part of a host name.
        ("rawPath", json!("\u{800}")),
    ] {
        let mut event = base.clone();
        event[field] = value;
        if field == "isBase64Encoded" {
            event["body"] = json!("!!");
        }
        let res = env.invoke("quota", &event).await;
        // As in Lambda: the runtime fails the invocation (200 + the error).
        res.assert_status(200);
        assert_eq!(res.body["errorType"], "Runtime.ExitError", "{event}");
    }
    // A readable event still reaches the function.
    env.invoke("quota", &base).await.assert_status(200);
}

#[tokio::test]
async fn an_object_field_sent_as_an_array_is_refused() {
    let env = TestEnv::new().await;
    let before = env.table_snapshot().await;
    // serde_json alone fills a struct from an array of its fields in order.
    for (method, path, body) in [
        (
            "PUT",
            "/v1/admin/quota-defaults/system",
            json!({"antigravity": [null, "5"]}),
        ),
        (
            "PUT",
            "/v1/admin/users/alice/quotas",
            json!({"quotas": [["openai", "1"]]}),
        ),
        (
            "PUT",
            "/v1/admin/users/alice/quotas",
            json!([[{"platform": "openai"}]]),
        ),
        ("POST", "/v1/quota/check", json!(["alice", "openai"])),
        (
            "POST",
            "/v1/admin/redemption-codes",
            json!({"count": 1, "max_uses": 1, "subscription": ["p", "day", 1]}),
        ),
    ] {
        env.request(method, path)
            .as_admin()
            .json(&body)
            .send()
            .await
            .assert_error(400, "invalid_request");
    }
    assert_eq!(env.table_snapshot().await, before, "a refused body wrote");
}

/// An integer whose exponent is near i64::MAX used to overflow the integer
/// reader (a panic with overflow checks; in release, a wrapped length and an
/// attempt to build that many zeros): refused like any out-of-range integer,
/// in a request body and in a usage event.
#[tokio::test]
async fn integers_with_extreme_exponents_are_refused_not_a_crash() {
    let env = TestEnv::new().await;
    for number in ["1000.0e9223372036854775807", "1e9223372036854775807"] {
        let res = adjust_raw(&env, &format!(r#"{{"delta": {number}, "reason": "x"}}"#)).await;
        res.assert_error(400, "invalid_amount");
        let res = env
            .post("/v1/admin/redemption-codes")
            .as_admin()
            .header("content-type", "application/json")
            .raw_body(format!(
                r#"{{"count": {number}, "credits": 1, "max_uses": 1}}"#
            ))
            .send()
            .await;
        assert_eq!(res.status, 400, "{}", res.text);
    }
    let event = json!({
        "event_id": "extreme-1", "user_id": "alice", "platform": "openai",
        "cost_usd": "0.5", "occurred_at": chrono::Utc::now().to_rfc3339(),
    })
    .to_string()
    .replace('}', r#", "credits": 1e9223372036854775807}"#);
    let batch = serde_json::from_value(json!({"Records": [{
        "messageId": "m-extreme", "receiptHandle": "rh", "body": event,
        "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
        "eventSource": "aws:sqs", "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:spendguard-billing",
    }]}))
    .unwrap();
    let outcome = env.gateway.functions().usage_ingest.process(batch).await;
    let failed: Vec<&str> = outcome
        .response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, ["m-extreme"], "reported failed, not applied");
    assert_eq!(env.available("alice").await, 0);
}
