//! The check API: the limit semantics table (unset, 0, cap) per window, its one-request cost, failing closed, bad input, and window boundaries.

use super::*;

#[tokio::test]
async fn limit_semantics_table_through_the_check_api() {
    // Saturday 10:00 UTC: the day resets in 14 h, the week in 38 h.
    let env = env_at("UTC", "2026-11-21T10:00:00Z").await;
    replace(
        &env,
        "alice",
        json!([
            {"platform": "anthropic", "daily_limit_usd": "0"},
            {"platform": "gemini", "daily_limit_usd": "10", "weekly_limit_usd": 100},
            {"platform": "antigravity", "monthly_limit_usd": "5"},
        ]),
    )
    .await;
    seed_usage(
        &env,
        "alice",
        "openai",
        "daily",
        "1000",
        "2026-11-21T00:00:00Z",
    )
    .await;
    seed_usage(
        &env,
        "alice",
        "gemini",
        "daily",
        "10",
        "2026-11-21T00:00:00Z",
    )
    .await;
    seed_usage(
        &env,
        "alice",
        "antigravity",
        "monthly",
        "4.9999999999",
        "2026-11-01T00:00:00Z",
    )
    .await;

    // Unset: any usage is allowed.
    let c = env.check_mine("alice", "openai").await;
    assert_eq!(c["allowed"], true, "{c}");
    assert_eq!(c["reason"], Value::Null);
    assert_eq!(c["retry_after_seconds"], Value::Null);
    assert_eq!(c["windows"]["daily"]["usage_usd"], "1000");
    assert_eq!(c["windows"]["daily"]["remaining_usd"], Value::Null);

    // 0: disabled even at zero usage, and waiting does not help.
    let c = env.check_mine("alice", "anthropic").await;
    assert_eq!(c["allowed"], false, "{c}");
    assert_eq!(c["reason"], "platform_disabled");
    assert_eq!(c["retry_after_seconds"], Value::Null);
    assert_eq!(c["windows"]["daily"]["usage_usd"], "0");

    // Cap reached: denied with the window's reason until its reset.
    let c = env.check_mine("alice", "gemini").await;
    assert_eq!(c["allowed"], false, "{c}");
    assert_eq!(c["reason"], "daily_quota_exhausted");
    assert_eq!(c["retry_after_seconds"], 14 * 3600);
    assert_eq!(c["windows"]["daily"]["remaining_usd"], "0");
    assert_eq!(c["windows"]["weekly"]["remaining_usd"], "100");
    assert_eq!(c["windows"]["daily"]["resets_at"], "2026-11-22T00:00:00Z");

    // Just below the cap: allowed, with the exact remainder.
    let c = env.check_mine("alice", "antigravity").await;
    assert_eq!(c["allowed"], true, "{c}");
    assert_eq!(c["windows"]["monthly"]["remaining_usd"], "0.0000000001");

    // At the monthly cap: denied until the 1st.
    seed_usage(
        &env,
        "alice",
        "antigravity",
        "monthly",
        "5",
        "2026-11-01T00:00:00Z",
    )
    .await;
    let c = env.check_mine("alice", "antigravity").await;
    assert_eq!(c["reason"], "monthly_quota_exhausted", "{c}");
    assert_eq!(
        c["retry_after_seconds"],
        (at("2026-12-01T00:00:00Z") - at("2026-11-21T10:00:00Z")).num_seconds()
    );

    // Two exhausted windows: the retry waits for the later reset.
    seed_usage(
        &env,
        "alice",
        "gemini",
        "weekly",
        "100.5",
        "2026-11-16T00:00:00Z",
    )
    .await;
    let c = env.check_mine("alice", "gemini").await;
    assert_eq!(c["reason"], "weekly_quota_exhausted", "{c}");
    assert_eq!(c["retry_after_seconds"], 38 * 3600);
    assert_eq!(c["windows"]["weekly"]["remaining_usd"], "0");

    // The service check answers the same.
    let res = env
        .post("/v1/quota/check")
        .as_service()
        .json(&json!({"user_id": "alice", "platform": "gemini"}))
        .send()
        .await;
    res.assert_status(200);
    assert_eq!(res.body, c);
}

#[tokio::test]
async fn a_check_costs_exactly_one_dynamodb_request() {
    let env = TestEnv::new().await;
    replace(
        &env,
        "alice",
        json!([{"platform": "openai", "daily_limit_usd": "1"}]),
    )
    .await;
    let before = env.store.stats().requests();
    env.check_mine("alice", "openai").await;
    assert_eq!(env.store.stats().requests() - before, 1);

    let before = env.store.stats().requests();
    env.post("/v1/quota/check")
        .as_service()
        .json(&json!({"user_id": "bob", "platform": "gemini"}))
        .send()
        .await
        .assert_status(200);
    assert_eq!(env.store.stats().requests() - before, 1);
}

/// Runs the quota function on `store` with a sample event.
async fn run_with_store(env: &TestEnv, store: DynamoStore, event: &str) -> TestResponse {
    let app = quota::App::new(Deps {
        store,
        ..env.deps()
    });
    let req = lambda_http::request::from_str(&sample_event(event).to_string()).unwrap();
    TestResponse::from(app.handle(req).await)
}

#[tokio::test]
async fn the_check_fails_closed_when_the_store_is_unavailable() {
    let env = TestEnv::new().await;
    let missing_table = env.store.with_table("no-such-table");
    let unreachable = DynamoStore::for_local_endpoint("http://127.0.0.1:9", "spendguard");
    for store in [missing_table, unreachable] {
        for event in ["quota-check-my-quota.json", "quota-check.json"] {
            let res = run_with_store(&env, store.clone(), event).await;
            res.assert_error(503, "store_unavailable");
            assert!(res.body.get("allowed").is_none(), "{}", res.text);
        }
    }
}

#[tokio::test]
async fn check_refuses_bad_input() {
    let env = TestEnv::new().await;
    env.get("/v1/me/quotas/mistral/check")
        .as_user("alice")
        .send()
        .await
        .assert_error(400, "unknown_platform");
    let post = |body: &str| {
        env.post("/v1/quota/check")
            .as_service()
            .raw_body(body.to_string())
    };
    post(r#"{"user_id": "a b", "platform": "openai"}"#)
        .send()
        .await
        .assert_error(400, "invalid_id");
    post(r#"{"user_id": "alice", "platform": "mistral"}"#)
        .send()
        .await
        .assert_error(400, "unknown_platform");
    post(r#"{"user_id": "alice""#)
        .send()
        .await
        .assert_error(400, "invalid_request");
    post(r#"{"platform": "openai"}"#)
        .send()
        .await
        .assert_error(400, "invalid_request");
}

#[tokio::test]
async fn window_boundaries_through_the_api() {
    for &(zone, window, last, first, start) in BOUNDARIES {
        let case = format!("{zone} {window} {last}");
        let env = env_at(zone, last).await;
        let mut entry = json!({"platform": "openai"});
        entry[format!("{window}_limit_usd")] = json!("1");
        replace(&env, "alice", json!([entry])).await;
        seed_usage(&env, "alice", "openai", window, "1", start).await;

        // The last second still belongs to the exhausted window.
        let c = env.check_mine("alice", "openai").await;
        assert_eq!(c["allowed"], false, "{case}: {c}");
        assert_eq!(c["reason"], format!("{window}_quota_exhausted"), "{case}");
        assert_eq!(c["retry_after_seconds"], 1, "{case}");
        assert_eq!(c["windows"][window]["window_start"], start, "{case}");
        assert_eq!(c["windows"][window]["resets_at"], first, "{case}");

        // The first second of the next window reads as usage 0, without a write.
        env.clock.set(at(first));
        let before = env.table_snapshot().await;
        let c = env.check_mine("alice", "openai").await;
        assert_eq!(c["allowed"], true, "{case}: {c}");
        assert_eq!(c["windows"][window]["usage_usd"], "0", "{case}");
        assert_eq!(c["windows"][window]["window_start"], first, "{case}");
        let view = env.get("/v1/me/quotas").as_user("alice").send().await;
        let w = &platform(&view.body, "openai")[window];
        assert_eq!(w["usage_usd"], "0", "{case}");
        assert_eq!(w["window_start"], first, "{case}");
        assert!(w["resets_at"].as_str().unwrap() > first, "{case}");
        assert_eq!(
            env.table_snapshot().await,
            before,
            "{case}: reading wrote something"
        );
    }
}
