//! Bad input and wrong roles: a clear 4xx, and nothing written.

use super::*;

#[tokio::test]
async fn bad_input_is_400_and_writes_nothing() {
    let env = TestEnv::new().await;
    adjust(
        &env,
        "alice",
        json!({"target": i64::MAX - 5, "reason": "big"}),
    )
    .await
    .assert_status(200);
    let before = env.table_snapshot().await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"reason": "r"}), "invalid_request"),
        (
            json!({"target": 1, "delta": 1, "reason": "r"}),
            "invalid_request",
        ),
        (json!({"target": 1.5, "reason": "r"}), "invalid_amount"),
        (json!({"target": "12", "reason": "r"}), "invalid_amount"),
        (json!({"target": -1, "reason": "r"}), "invalid_amount"),
        (json!({"delta": "x", "reason": "r"}), "invalid_amount"),
        (json!({"target": 1}), "invalid_request"),
        (json!({"target": 1, "reason": ""}), "invalid_request"),
        (
            json!({"target": 1, "reason": "x".repeat(501)}),
            "invalid_request",
        ),
        (
            json!({"target": 1, "reason": "r", "mode": "later"}),
            "invalid_request",
        ),
        (
            json!({"target": 1, "reason": "r", "force": "yes"}),
            "invalid_request",
        ),
        // Does not fit in 64 bits.
        (
            json!({"delta": 9_223_372_036_854_775_808u64, "reason": "r"}),
            "invalid_amount",
        ),
        (json!([]), "invalid_request"),
    ];
    for (body, code) in cases {
        let res = adjust_with_key(&env, "alice", "bad-input-key", &body).await;
        assert_eq!(res.status, 400, "{body}: {}", res.text);
        assert_eq!(res.error_code(), Some(code), "{body}: {}", res.text);
    }
    // Fits, but the balance would overflow: refused by the state, as a
    // deduction below zero is.
    for body in [
        json!({"delta": 10, "reason": "r"}),
        json!({"delta": 10, "reason": "r", "mode": "dry_run"}),
    ] {
        adjust_with_key(&env, "alice", "bad-input-key", &body)
            .await
            .assert_error(409, "balance_overflow");
    }
    for raw in ["", "{", "not json"] {
        let res = env
            .post(&adjust_path("alice"))
            .as_admin()
            .raw_body(raw)
            .send()
            .await;
        res.assert_error(400, "invalid_request");
    }
    adjust(&env, "a%20b", json!({"target": 1, "reason": "r"}))
        .await
        .assert_error(400, "invalid_id");
    env.get("/v1/admin/users/a%23b/credits")
        .as_admin()
        .send()
        .await
        .assert_error(400, "invalid_id");
    env.get("/v1/admin/users/alice/credits/transactions?limit=0")
        .as_admin()
        .send()
        .await
        .assert_error(400, "invalid_request");
    env.get("/v1/admin/users/alice/credits/transactions?cursor=zzz")
        .as_admin()
        .send()
        .await
        .assert_error(400, "invalid_request");
    let long_key = "k".repeat(256);
    adjust_with_key(
        &env,
        "alice",
        &long_key,
        &json!({"delta": 1, "reason": "r"}),
    )
    .await
    .assert_error(400, "invalid_idempotency_key");
    assert_eq!(
        env.table_snapshot().await,
        before,
        "bad input wrote something"
    );
    // The key used by the bad requests is still free for a good one.
    adjust_with_key(
        &env,
        "alice",
        "bad-input-key",
        &json!({"delta": -1, "reason": "r"}),
    )
    .await
    .assert_status(200);
}

#[tokio::test]
async fn roles_are_enforced() {
    let env = TestEnv::new().await;
    for path in [
        "/v1/admin/users/alice/credits",
        "/v1/admin/users/alice/credits/transactions",
        "/v1/admin/audit",
    ] {
        env.get(path)
            .as_user("alice")
            .send()
            .await
            .assert_error(403, "forbidden");
    }
    env.post(&adjust_path("alice"))
        .as_user("alice")
        .json(&json!({"delta": 5, "reason": "self service"}))
        .send()
        .await
        .assert_error(403, "forbidden");
    env.get("/v1/me/credits")
        .as_service()
        .send()
        .await
        .assert_status(200);
    env.get("/v1/me/credits")
        .send()
        .await
        .assert_error(401, "unauthorized");
}
