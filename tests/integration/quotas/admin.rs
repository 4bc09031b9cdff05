//! An admin on one user's quotas: init from the defaults, replace-all, and window reset.

use super::*;

#[tokio::test]
async fn init_merges_source_over_system_and_fills_only_unset_limits() {
    let env = TestEnv::new().await;
    env.put("/v1/admin/quota-defaults/system")
        .as_admin()
        .json(&json!({
            "openai": {"daily_limit_usd": "10", "weekly_limit_usd": "50"},
            "anthropic": {"monthly_limit_usd": "100"},
        }))
        .send()
        .await
        .assert_status(200);
    env.put("/v1/admin/quota-defaults/sources/github")
        .as_admin()
        .json(&json!({
            "openai": {"daily_limit_usd": "20", "monthly_limit_usd": "200"},
            "gemini": {"daily_limit_usd": "0"},
        }))
        .send()
        .await
        .assert_status(200);

    // Per field: the source's value if set, else the system's.
    let res = init(&env, "alice", "github").await;
    assert_eq!(res.body["user_id"], "alice");
    assert_eq!(
        limits(&res.body, "openai"),
        [json!("20"), json!("50"), json!("200")]
    );
    assert_eq!(
        limits(&res.body, "anthropic"),
        [Value::Null, Value::Null, json!("100")]
    );
    assert_eq!(
        limits(&res.body, "gemini"),
        [json!("0"), Value::Null, Value::Null]
    );
    assert_eq!(
        limits(&res.body, "antigravity"),
        [Value::Null, Value::Null, Value::Null]
    );
    // A source without its own default gets the system default.
    let bob = init(&env, "bob", "email").await;
    assert_eq!(
        limits(&bob.body, "openai"),
        [json!("10"), json!("50"), Value::Null]
    );

    // Idempotent: the same init again changes nothing.
    let again = init(&env, "alice", "github").await;
    assert_eq!(again.body, res.body);

    // An admin-set limit survives a second init, even one from another source.
    replace(
        &env,
        "alice",
        json!([{"platform": "openai", "daily_limit_usd": "5", "weekly_limit_usd": "50", "monthly_limit_usd": "200"}]),
    )
    .await;
    let after = init(&env, "alice", "email").await;
    assert_eq!(
        limits(&after.body, "openai"),
        [json!("5"), json!("50"), json!("200")]
    );
    // The admin's replace made anthropic unlimited on purpose: init keeps that too.
    assert_eq!(
        limits(&after.body, "anthropic"),
        [Value::Null, Value::Null, Value::Null]
    );
    let stored = env
        .get("/v1/admin/users/alice/quotas")
        .as_admin()
        .send()
        .await;
    assert_eq!(stored.body, after.body);

    // Fill-only: a limit init left unset is filled by a later default; one it
    // already filled is not changed.
    env.put("/v1/admin/quota-defaults/system")
        .as_admin()
        .json(&json!({"openai": {"daily_limit_usd": "99", "weekly_limit_usd": "77", "monthly_limit_usd": "88"}}))
        .send()
        .await
        .assert_status(200);
    let bob = init(&env, "bob", "email").await;
    assert_eq!(
        limits(&bob.body, "openai"),
        [json!("10"), json!("50"), json!("88")]
    );

    // Bad input.
    let init_path = |user: &str| format!("/v1/admin/users/{user}/quotas/init");
    #[rustfmt::skip]
    let cases = [
        (init_path("alice"), r#"{"auth_source": "myspace"}"#, "unknown_auth_source"),
        (init_path("a%20b"), r#"{"auth_source": "email"}"#, "invalid_id"),
        (init_path("alice"), "{}", "invalid_request"),
    ];
    assert_all_refused(&env, "POST", cases.map(|(p, b, c)| (p, b.to_string(), c))).await;
}

#[tokio::test]
async fn init_fills_a_record_metering_created_and_keeps_its_usage() {
    let env = env_at("UTC", "2026-11-21T10:00:00Z").await;
    seed_usage(
        &env,
        "carol",
        "openai",
        "daily",
        "3.25",
        "2026-11-21T00:00:00Z",
    )
    .await;
    env.put("/v1/admin/quota-defaults/system")
        .as_admin()
        .json(&json!({"openai": {"daily_limit_usd": "3"}}))
        .send()
        .await
        .assert_status(200);
    let res = init(&env, "carol", "oidc").await;
    let openai = platform(&res.body, "openai");
    assert_eq!(openai["daily"]["limit_usd"], "3");
    assert_eq!(openai["daily"]["usage_usd"], "3.25");
    let c = env.check_mine("carol", "openai").await;
    assert_eq!(c["reason"], "daily_quota_exhausted", "{c}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_init_and_replace_never_lose_the_admin_value() {
    let env = Arc::new(TestEnv::new().await);
    env.put("/v1/admin/quota-defaults/system")
        .as_admin()
        .json(&json!({"openai": {"daily_limit_usd": "10", "weekly_limit_usd": "70"}}))
        .send()
        .await
        .assert_status(200);
    for round in 0..4 {
        let user = format!("user-{round}");
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..6 {
            let (env, user) = (env.clone(), user.clone());
            tasks.spawn(async move {
                if i == 3 {
                    env.put(&format!("/v1/admin/users/{user}/quotas"))
                        .as_admin()
                        .json(&json!({"quotas": [{"platform": "openai", "daily_limit_usd": "5"}]}))
                        .send()
                        .await
                } else {
                    env.post(&format!("/v1/admin/users/{user}/quotas/init"))
                        .as_admin()
                        .json(&json!({"auth_source": "email"}))
                        .send()
                        .await
                }
            });
        }
        while let Some(res) = tasks.join_next().await {
            res.unwrap().assert_status(200);
        }
        // Whichever order they committed in, the admin's value wins: before the
        // replace, init's fills are overwritten; after it, init fills nothing.
        let res = env
            .get(&format!("/v1/admin/users/{user}/quotas"))
            .as_admin()
            .send()
            .await;
        assert_eq!(limits(&res.body, "openai")[0], "5", "{}", res.text);
        // No two inits filled the same limit.
        let filled: usize = env
            .audit_entries(None, Some("ADMIN_INIT_USER_QUOTAS"))
            .await
            .iter()
            .filter(|e| e.target_user.as_ref().map(|u| u.as_str()) == Some(user.as_str()))
            .map(|e| e.details["filled"].as_array().unwrap().len())
            .sum();
        assert!(filled <= 2, "limits filled {filled} times");
    }
    env.assert_invariants().await;
}

#[tokio::test]
async fn replace_all_keeps_usage_and_unlisted_platforms_become_unlimited() {
    let env = env_at("UTC", "2026-11-21T10:00:00Z").await;
    replace(
        &env,
        "alice",
        json!([
            {"platform": "openai", "daily_limit_usd": "1", "weekly_limit_usd": "2", "monthly_limit_usd": "3"},
            {"platform": "anthropic", "weekly_limit_usd": "9"},
        ]),
    )
    .await;
    seed_usage(
        &env,
        "alice",
        "openai",
        "daily",
        "0.75",
        "2026-11-21T00:00:00Z",
    )
    .await;
    seed_usage(
        &env,
        "alice",
        "anthropic",
        "weekly",
        "2.5",
        "2026-11-16T00:00:00Z",
    )
    .await;

    let res = replace(
        &env,
        "alice",
        json!([{"platform": "openai", "daily_limit_usd": 10}]),
    )
    .await;
    let openai = platform(&res.body, "openai");
    assert_eq!(
        limits(&res.body, "openai"),
        [json!("10"), Value::Null, Value::Null]
    );
    assert_eq!(openai["daily"]["usage_usd"], "0.75");
    assert_eq!(openai["daily"]["window_start"], "2026-11-21T00:00:00Z");
    // Dropped from the list: unlimited, usage still visible.
    let anthropic = platform(&res.body, "anthropic");
    assert_eq!(
        limits(&res.body, "anthropic"),
        [Value::Null, Value::Null, Value::Null]
    );
    assert_eq!(anthropic["weekly"]["usage_usd"], "2.5");
    // What the store holds is what the response said.
    let stored = env.get("/v1/me/quotas").as_user("alice").send().await;
    assert_eq!(stored.body, res.body);
    assert_eq!(env.check_mine("alice", "anthropic").await["allowed"], true);

    // An empty list makes everything unlimited.
    let res = replace(&env, "alice", json!([])).await;
    assert_eq!(
        limits(&res.body, "openai"),
        [Value::Null, Value::Null, Value::Null]
    );
    assert_eq!(platform(&res.body, "openai")["daily"]["usage_usd"], "0.75");
}

#[tokio::test]
async fn bad_replace_is_refused_and_writes_nothing() {
    let env = TestEnv::new().await;
    replace(
        &env,
        "alice",
        json!([{"platform": "openai", "daily_limit_usd": "1"}]),
    )
    .await;
    #[rustfmt::skip]
    let cases: Vec<(&str, String, &str)> = vec![
        ("alice", r#"{"quotas": [{"platform": "openai"}, {"platform": "openai", "daily_limit_usd": "2"}]}"#.into(), "duplicate_platform"),
        ("alice", r#"{"quotas": [{"platform": "mistral"}]}"#.into(), "unknown_platform"),
        ("alice", r#"{"quotas": [{"platform": "openai", "daily_limit_usd": "-0.5"}]}"#.into(), "invalid_amount"),
        ("alice", r#"{"quotas": [{"platform": "openai", "monthly_limit_usd": "1.00000000001"}]}"#.into(), "invalid_amount"),
        ("alice", r#"{"quotas": [{"platform": "openai", "weekly_limit_usd": "NaN"}]}"#.into(), "invalid_amount"),
        ("alice", r#"{"quotas": [{"platform": "openai", "daily": "1"}]}"#.into(), "invalid_request"),
        ("alice", r#"{"quotas": {"platform": "openai"}}"#.into(), "invalid_request"),
        ("alice", r#"{"quota": []}"#.into(), "invalid_request"),
        ("alice", "{".into(), "invalid_request"),
        ("alice", format!(r#"{{"quotas": [], "pad": "{}"}}"#, "x".repeat(70_000)), "payload_too_large"),
        ("a%23b", r#"{"quotas": []}"#.into(), "invalid_id"),
    ];
    let cases = cases
        .into_iter()
        .map(|(user, body, code)| (format!("/v1/admin/users/{user}/quotas"), body, code));
    assert_all_refused(&env, "PUT", cases).await;
}

#[tokio::test]
async fn reset_zeroes_exactly_one_window() {
    let env = env_at("UTC", "2026-11-21T10:00:00Z").await;
    replace(
        &env,
        "alice",
        json!([{"platform": "openai", "daily_limit_usd": "3"}]),
    )
    .await;
    seed_usage(
        &env,
        "alice",
        "openai",
        "daily",
        "3",
        "2026-11-21T00:00:00Z",
    )
    .await;
    seed_usage(
        &env,
        "alice",
        "openai",
        "weekly",
        "4",
        "2026-11-16T00:00:00Z",
    )
    .await;
    assert_eq!(env.check_mine("alice", "openai").await["allowed"], false);

    let reset = |window: Value| {
        env.post("/v1/admin/users/alice/quotas/openai/reset")
            .as_admin()
            .json(&json!({ "window": window }))
            .send()
    };
    let res = reset(json!("daily")).await;
    res.assert_status(200);
    let openai = platform(&res.body, "openai");
    assert_eq!(openai["daily"]["usage_usd"], "0");
    assert_eq!(openai["daily"]["limit_usd"], "3");
    assert_eq!(openai["weekly"]["usage_usd"], "4");
    assert_eq!(env.check_mine("alice", "openai").await["allowed"], true);

    let reset_path = |platform: &str| format!("/v1/admin/users/alice/quotas/{platform}/reset");
    #[rustfmt::skip]
    let cases = [
        (reset_path("openai"), r#"{"window": "yearly"}"#, "invalid_window"),
        (reset_path("openai"), r#"{"window": "Daily"}"#, "invalid_window"),
        (reset_path("openai"), "{}", "invalid_window"),
        (reset_path("mistral"), r#"{"window": "daily"}"#, "unknown_platform"),
        (reset_path("openai"), "not json", "invalid_request"),
    ];
    assert_all_refused(&env, "POST", cases.map(|(p, b, c)| (p, b.to_string(), c))).await;

    // Resetting a user without a record just records zero usage.
    let res = env
        .post("/v1/admin/users/nobody/quotas/gemini/reset")
        .as_admin()
        .json(&json!({"window": "monthly"}))
        .send()
        .await;
    res.assert_status(200);
    assert_eq!(platform(&res.body, "gemini")["monthly"]["usage_usd"], "0");
}
