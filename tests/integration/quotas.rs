//! Issue 3, platform quotas: every route of the "Quotas" contract through the dev
//! gateway, on the real store.

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use spendguard_core::api::{HttpFunction, PageRequest};
use spendguard_core::domain::audit::AuditEntry;
use spendguard_core::store::{AuditFilter, AuditStore};
use spendguard_core::{Clock, Deps, DynamoStore};
use spendguard_tests::{sample_event, TestEnv, TestResponse};
use std::sync::Arc;

const SOURCE_IP: &str = "203.0.113.9";

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

async fn env_at(zone: &str, now: &str) -> TestEnv {
    let zone = zone.parse().unwrap();
    TestEnv::build(|c| c.timezone = zone, Clock::manual(at(now))).await
}

/// Usage as the metering feature stores it: `{window}_usage` for the window
/// starting at `{window}_start`.
async fn seed_usage(
    env: &TestEnv,
    user: &str,
    platform: &str,
    window: &str,
    usd: &str,
    start: &str,
) {
    env.store
        .client()
        .update_item()
        .table_name(env.store.table())
        .key("pk", AttributeValue::S(format!("USER#{user}")))
        .key("sk", AttributeValue::S(format!("QUOTA#{platform}")))
        .update_expression(format!("SET {window}_usage = :u, {window}_start = :s"))
        .expression_attribute_values(":u", AttributeValue::N(usd.into()))
        .expression_attribute_values(":s", AttributeValue::N(at(start).timestamp().to_string()))
        .send()
        .await
        .unwrap();
}

/// Every item of the test's table, to prove a refused request wrote nothing.
async fn audit(env: &TestEnv, action: &str) -> Vec<AuditEntry> {
    let filter = AuditFilter {
        user_id: None,
        action: Some(action.to_string()),
    };
    let page = PageRequest {
        limit: 100,
        cursor: None,
    };
    env.store.list_audit(&filter, &page).await.unwrap().items
}

/// One platform of a `UserQuotas` body.
fn platform<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["quotas"]
        .as_array()
        .unwrap_or_else(|| panic!("not UserQuotas: {body}"))
        .iter()
        .find(|q| q["platform"] == name)
        .unwrap_or_else(|| panic!("no {name} in {body}"))
}

fn limits(body: &Value, name: &str) -> [Value; 3] {
    let p = platform(body, name);
    ["daily", "weekly", "monthly"].map(|w| p[w]["limit_usd"].clone())
}

async fn replace(env: &TestEnv, user: &str, quotas: Value) -> TestResponse {
    let res = env
        .put(&format!("/v1/admin/users/{user}/quotas"))
        .as_admin()
        .json(&json!({ "quotas": quotas }))
        .send()
        .await;
    res.assert_status(200);
    res
}

async fn init(env: &TestEnv, user: &str, source: &str) -> TestResponse {
    let res = env
        .post(&format!("/v1/admin/users/{user}/quotas/init"))
        .as_admin()
        .json(&json!({ "auth_source": source }))
        .send()
        .await;
    res.assert_status(200);
    res
}

// --- the limit semantics table ---

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

// --- the configuration layer ---

#[tokio::test]
async fn defaults_are_whole_replaced_and_cleared() {
    let env = TestEnv::new().await;
    let get = || env.get("/v1/admin/quota-defaults").as_admin().send();
    let res = get().await;
    res.assert_status(200);
    assert_eq!(res.body["system"], json!({}));
    let sources = res.body["sources"].as_object().unwrap();
    assert_eq!(sources.len(), 7);
    assert!(sources.values().all(Value::is_null));

    // Numbers are read exactly from their text, and answered as strings.
    let res = env
        .put("/v1/admin/quota-defaults/system")
        .as_admin()
        .raw_body(
            r#"{"openai": {"daily_limit_usd": 123456789.0123456789, "weekly_limit_usd": "10"}}"#,
        )
        .send()
        .await;
    res.assert_status(200);
    let expected = json!({"openai": {"daily_limit_usd": "123456789.0123456789", "weekly_limit_usd": "10", "monthly_limit_usd": null}});
    assert_eq!(res.body, expected);
    assert_eq!(get().await.body["system"], expected);

    // Whole replace: openai is gone.
    env.put("/v1/admin/quota-defaults/system")
        .as_admin()
        .json(&json!({"anthropic": {"monthly_limit_usd": "0"}}))
        .send()
        .await
        .assert_status(200);
    assert_eq!(
        get().await.body["system"],
        json!({"anthropic": {"daily_limit_usd": null, "weekly_limit_usd": null, "monthly_limit_usd": "0"}})
    );

    let put_source = |source: &str, body: Value| {
        env.put(&format!("/v1/admin/quota-defaults/sources/{source}"))
            .as_admin()
            .json(&body)
            .send()
    };
    put_source(
        "github",
        json!({"openai": {"daily_limit_usd": "0.0000000001"}}),
    )
    .await
    .assert_status(200);
    let body = get().await.body;
    assert_eq!(
        body["sources"]["github"]["openai"]["daily_limit_usd"],
        "0.0000000001"
    );
    assert_eq!(body["sources"]["email"], Value::Null);

    let res = put_source("github", json!({})).await;
    res.assert_status(200);
    assert_eq!(res.body, json!({}));
    assert_eq!(get().await.body["sources"]["github"], Value::Null);

    // The system default cleared reads as {}.
    env.put("/v1/admin/quota-defaults/system")
        .as_admin()
        .json(&json!({}))
        .send()
        .await
        .assert_status(200);
    assert_eq!(get().await.body["system"], json!({}));
}

#[tokio::test]
async fn bad_defaults_are_refused_and_write_nothing() {
    let env = TestEnv::new().await;
    env.put("/v1/admin/quota-defaults/system")
        .as_admin()
        .json(&json!({"openai": {"daily_limit_usd": "1"}}))
        .send()
        .await
        .assert_status(200);
    let before = env.table_snapshot().await;
    let huge = format!(
        r#"{{"openai": {{"daily_limit_usd": "1"}}, "pad": "{}"}}"#,
        "x".repeat(64 * 1024)
    );
    #[rustfmt::skip]
    let cases: Vec<(&str, String, &str)> = vec![
        ("system", r#"{"mistral": {}}"#.into(), "unknown_platform"),
        ("system", r#"{"openai": {"daily_limit_usd": "-1"}}"#.into(), "invalid_amount"),
        ("system", r#"{"openai": {"daily_limit_usd": -1}}"#.into(), "invalid_amount"),
        ("system", r#"{"openai": {"daily_limit_usd": "NaN"}}"#.into(), "invalid_amount"),
        ("system", r#"{"openai": {"daily_limit_usd": "Infinity"}}"#.into(), "invalid_amount"),
        ("system", r#"{"openai": {"daily_limit_usd": 0.00000000001}}"#.into(), "invalid_amount"),
        ("system", r#"{"openai": {"daily_limit_usd": 1e400}}"#.into(), "invalid_amount"),
        ("system", r#"{"openai": {"daily_limit_usd": true}}"#.into(), "invalid_amount"),
        // A JSON object with a key twice is malformed (the one JSON reader).
        ("system", r#"{"openai": {}, "openai": {}}"#.into(), "invalid_request"),
        ("system", r#"{"openai": {"daily_limit": "1"}}"#.into(), "invalid_request"),
        ("system", r#"{"openai": "#.into(), "invalid_request"),
        ("system", "[]".into(), "invalid_request"),
        ("system", "".into(), "invalid_request"),
        ("system", huge.clone(), "payload_too_large"),
        ("sources/github", r#"{"openai": {"weekly_limit_usd": "1.5e-11"}}"#.into(), "invalid_amount"),
        ("sources/myspace", "{}".into(), "unknown_auth_source"),
        ("sources/github", huge, "payload_too_large"),
    ];
    for (path, body, code) in cases {
        let res = env
            .put(&format!("/v1/admin/quota-defaults/{path}"))
            .as_admin()
            .raw_body(body.clone())
            .send()
            .await;
        assert_eq!(
            (res.status, res.error_code()),
            (400, Some(code)),
            "{path} {}: {}",
            &body[..body.len().min(80)],
            res.text
        );
    }
    assert_eq!(
        env.table_snapshot().await,
        before,
        "a refused request wrote something"
    );
}

// --- init ---

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
    env.post("/v1/admin/users/alice/quotas/init")
        .as_admin()
        .json(&json!({"auth_source": "myspace"}))
        .send()
        .await
        .assert_error(400, "unknown_auth_source");
    env.post("/v1/admin/users/a%20b/quotas/init")
        .as_admin()
        .json(&json!({"auth_source": "email"}))
        .send()
        .await
        .assert_error(400, "invalid_id");
    env.post("/v1/admin/users/alice/quotas/init")
        .as_admin()
        .json(&json!({}))
        .send()
        .await
        .assert_error(400, "invalid_request");
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
        let filled: usize = audit(&env, "ADMIN_INIT_USER_QUOTAS")
            .await
            .iter()
            .filter(|e| e.target_user.as_ref().map(|u| u.as_str()) == Some(user.as_str()))
            .map(|e| e.details["filled"].as_array().unwrap().len())
            .sum();
        assert!(filled <= 2, "limits filled {filled} times");
    }
    env.assert_invariants().await;
}

// --- replace-all ---

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
    let before = env.table_snapshot().await;
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
    for (user, body, code) in cases {
        let res = env
            .put(&format!("/v1/admin/users/{user}/quotas"))
            .as_admin()
            .raw_body(body.clone())
            .send()
            .await;
        assert_eq!(
            (res.status, res.error_code()),
            (400, Some(code)),
            "{}: {}",
            &body[..body.len().min(80)],
            res.text
        );
    }
    assert_eq!(
        env.table_snapshot().await,
        before,
        "a refused request wrote something"
    );
}

// --- reset ---

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

    let before = env.table_snapshot().await;
    reset(json!("yearly"))
        .await
        .assert_error(400, "invalid_window");
    reset(json!("Daily"))
        .await
        .assert_error(400, "invalid_window");
    env.post("/v1/admin/users/alice/quotas/openai/reset")
        .as_admin()
        .json(&json!({}))
        .send()
        .await
        .assert_error(400, "invalid_window");
    env.post("/v1/admin/users/alice/quotas/mistral/reset")
        .as_admin()
        .json(&json!({"window": "daily"}))
        .send()
        .await
        .assert_error(400, "unknown_platform");
    env.post("/v1/admin/users/alice/quotas/openai/reset")
        .as_admin()
        .raw_body("not json")
        .send()
        .await
        .assert_error(400, "invalid_request");
    assert_eq!(
        env.table_snapshot().await,
        before,
        "a refused reset wrote something"
    );

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

// --- windows ---

/// (zone, window, last second of a window, first second of the next, start of
/// the window holding the last second)
#[rustfmt::skip]
const BOUNDARIES: &[(&str, &str, &str, &str, &str)] = &[
    ("UTC", "daily", "2026-11-21T23:59:59Z", "2026-11-22T00:00:00Z", "2026-11-21T00:00:00Z"),
    ("UTC", "weekly", "2026-11-22T23:59:59Z", "2026-11-23T00:00:00Z", "2026-11-16T00:00:00Z"),
    ("UTC", "monthly", "2026-12-31T23:59:59Z", "2027-01-01T00:00:00Z", "2026-12-01T00:00:00Z"),
    ("Asia/Shanghai", "daily", "2026-11-21T15:59:59Z", "2026-11-21T16:00:00Z", "2026-11-20T16:00:00Z"),
    ("Asia/Shanghai", "weekly", "2026-11-22T15:59:59Z", "2026-11-22T16:00:00Z", "2026-11-15T16:00:00Z"),
    ("Asia/Shanghai", "monthly", "2026-11-30T15:59:59Z", "2026-11-30T16:00:00Z", "2026-10-31T16:00:00Z"),
    // New York: DST starts 2026-03-08 (a 23-hour day) ...
    ("America/New_York", "daily", "2026-03-09T03:59:59Z", "2026-03-09T04:00:00Z", "2026-03-08T05:00:00Z"),
    ("America/New_York", "weekly", "2026-03-09T03:59:59Z", "2026-03-09T04:00:00Z", "2026-03-02T05:00:00Z"),
    ("America/New_York", "monthly", "2026-04-01T03:59:59Z", "2026-04-01T04:00:00Z", "2026-03-01T05:00:00Z"),
    // ... and ends 2026-11-01 (a 25-hour day).
    ("America/New_York", "daily", "2026-11-02T04:59:59Z", "2026-11-02T05:00:00Z", "2026-11-01T04:00:00Z"),
    ("America/New_York", "weekly", "2026-11-02T04:59:59Z", "2026-11-02T05:00:00Z", "2026-10-26T04:00:00Z"),
    ("America/New_York", "monthly", "2026-12-01T04:59:59Z", "2026-12-01T05:00:00Z", "2026-11-01T04:00:00Z"),
];

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

// --- access ---

#[tokio::test]
async fn users_see_only_their_own_quotas() {
    let env = TestEnv::new().await;
    replace(
        &env,
        "alice",
        json!([{"platform": "openai", "daily_limit_usd": "1"}]),
    )
    .await;
    replace(
        &env,
        "bob",
        json!([{"platform": "openai", "daily_limit_usd": "0"}]),
    )
    .await;

    let alice = env.get("/v1/me/quotas").as_user("alice").send().await;
    assert_eq!(alice.body["user_id"], "alice");
    assert_eq!(platform(&alice.body, "openai")["daily"]["limit_usd"], "1");
    let bob = env.get("/v1/me/quotas").as_user("bob").send().await;
    assert_eq!(bob.body["user_id"], "bob");
    assert_eq!(platform(&bob.body, "openai")["daily"]["limit_usd"], "0");

    assert_eq!(env.check_mine("alice", "openai").await["allowed"], true);
    assert_eq!(env.check_mine("bob", "openai").await["allowed"], false);

    // No way for a user to name another user.
    env.get("/v1/admin/users/bob/quotas")
        .as_user("alice")
        .send()
        .await
        .assert_error(403, "forbidden");
    env.post("/v1/quota/check")
        .as_user("alice")
        .json(&json!({"user_id": "bob", "platform": "openai"}))
        .send()
        .await
        .assert_error(403, "forbidden");
}

#[tokio::test]
async fn every_admin_route_refuses_a_user_token() {
    let env = TestEnv::new().await;
    let before = env.table_snapshot().await;
    let routes: [(&str, &str, Value); 7] = [
        ("GET", "/v1/admin/quota-defaults", Value::Null),
        ("PUT", "/v1/admin/quota-defaults/system", json!({})),
        ("PUT", "/v1/admin/quota-defaults/sources/github", json!({})),
        (
            "POST",
            "/v1/admin/users/alice/quotas/init",
            json!({"auth_source": "email"}),
        ),
        ("GET", "/v1/admin/users/alice/quotas", Value::Null),
        ("PUT", "/v1/admin/users/alice/quotas", json!({"quotas": []})),
        (
            "POST",
            "/v1/admin/users/alice/quotas/openai/reset",
            json!({"window": "daily"}),
        ),
    ];
    for (method, path, body) in routes {
        for role in [
            spendguard_tests::Role::User,
            spendguard_tests::Role::Service,
        ] {
            let mut req = env.request(method, path).as_role("alice", role);
            if !body.is_null() {
                req = req.json(&body);
            }
            let res = req.send().await;
            assert_eq!(
                (res.status, res.error_code()),
                (403, Some("forbidden")),
                "{method} {path} as {role:?}: {}",
                res.text
            );
        }
        // Without a token at all: 401.
        env.request(method, path)
            .send()
            .await
            .assert_error(401, "unauthorized");
    }
    assert_eq!(env.table_snapshot().await, before);
}

#[tokio::test]
async fn admin_reads_of_a_user_validate_the_id() {
    let env = TestEnv::new().await;
    env.get("/v1/admin/users/a%20b/quotas")
        .as_admin()
        .send()
        .await
        .assert_error(400, "invalid_id");
    let long = "x".repeat(129);
    env.get(&format!("/v1/admin/users/{long}/quotas"))
        .as_admin()
        .send()
        .await
        .assert_error(400, "invalid_id");
    let res = env
        .get("/v1/admin/users/nobody/quotas")
        .as_admin()
        .send()
        .await;
    res.assert_status(200);
    assert_eq!(res.body["quotas"].as_array().unwrap().len(), 4);
}

// --- audit ---

#[tokio::test]
async fn every_admin_write_is_audited_with_before_and_after() {
    let env = env_at("UTC", "2026-11-21T10:00:00Z").await;
    let admin = |method: &str, path: &str, body: Value| {
        env.request(method, path)
            .as_admin()
            .header("user-agent", "quota-tests/1.0")
            .json(&body)
            .send()
    };
    let expect_entry = |entries: &[AuditEntry], target: Option<&str>| -> AuditEntry {
        assert_eq!(entries.len(), 1, "{entries:?}");
        let e = entries[0].clone();
        assert_eq!(e.actor, "admin-1");
        assert_eq!(e.target_user.as_ref().map(|u| u.as_str()), target);
        assert_eq!(e.source_ip.as_deref(), Some(SOURCE_IP));
        assert_eq!(e.user_agent.as_deref(), Some("quota-tests/1.0"));
        assert!(e.success);
        assert_eq!(e.created_at, at("2026-11-21T10:00:00Z"));
        e
    };

    admin(
        "PUT",
        "/v1/admin/quota-defaults/system",
        json!({"openai": {"daily_limit_usd": "2"}}),
    )
    .await
    .assert_status(200);
    let e = expect_entry(&audit(&env, "ADMIN_SET_SYSTEM_QUOTA_DEFAULTS").await, None);
    assert_eq!(e.details["before"], Value::Null);
    assert_eq!(e.details["after"]["openai"]["daily_limit_usd"], "2");

    admin(
        "PUT",
        "/v1/admin/quota-defaults/sources/wechat",
        json!({"gemini": {"weekly_limit_usd": "4"}}),
    )
    .await
    .assert_status(200);
    admin("PUT", "/v1/admin/quota-defaults/sources/wechat", json!({}))
        .await
        .assert_status(200);
    let entries = audit(&env, "ADMIN_SET_SOURCE_QUOTA_DEFAULTS").await;
    assert_eq!(entries.len(), 2);
    // Same instant on the manual clock: find the clearing by its content.
    let cleared = entries
        .iter()
        .find(|e| e.details["after"].is_null())
        .unwrap_or_else(|| panic!("no clearing entry: {entries:?}"));
    assert_eq!(cleared.details["scope"], "source:wechat");
    assert_eq!(cleared.details["before"]["gemini"]["weekly_limit_usd"], "4");

    admin(
        "POST",
        "/v1/admin/users/alice/quotas/init",
        json!({"auth_source": "wechat"}),
    )
    .await
    .assert_status(200);
    let e = expect_entry(&audit(&env, "ADMIN_INIT_USER_QUOTAS").await, Some("alice"));
    assert_eq!(e.details["auth_source"], "wechat");
    assert_eq!(
        e.details["before"]["openai"]["daily_limit_usd"],
        Value::Null
    );
    assert_eq!(e.details["after"]["openai"]["daily_limit_usd"], "2");
    assert_eq!(
        e.details["filled"],
        json!([{"platform": "openai", "window": "daily", "limit_usd": "2"}])
    );

    admin(
        "PUT",
        "/v1/admin/users/alice/quotas",
        json!({"quotas": [{"platform": "openai", "daily_limit_usd": "7"}]}),
    )
    .await
    .assert_status(200);
    let e = expect_entry(
        &audit(&env, "ADMIN_REPLACE_USER_QUOTAS").await,
        Some("alice"),
    );
    assert_eq!(e.details["before"]["openai"]["daily_limit_usd"], "2");
    assert_eq!(e.details["after"]["openai"]["daily_limit_usd"], "7");

    seed_usage(
        &env,
        "alice",
        "openai",
        "daily",
        "1.5",
        "2026-11-21T00:00:00Z",
    )
    .await;
    admin(
        "POST",
        "/v1/admin/users/alice/quotas/openai/reset",
        json!({"window": "daily"}),
    )
    .await
    .assert_status(200);
    let e = expect_entry(
        &audit(&env, "ADMIN_RESET_QUOTA_WINDOW").await,
        Some("alice"),
    );
    assert_eq!(e.details["platform"], "openai");
    assert_eq!(e.details["window"], "daily");
    assert_eq!(e.details["before"]["usage_usd"], "1.5");
    assert_eq!(e.details["after"]["usage_usd"], "0");

    // The per-user index finds the three user writes.
    let by_user = env
        .store
        .list_audit(
            &AuditFilter {
                user_id: Some(spendguard_core::domain::UserId::parse("alice").unwrap()),
                action: None,
            },
            &PageRequest {
                limit: 100,
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(by_user.items.len(), 3);
}

// --- sample events ---

#[tokio::test]
async fn every_quota_sample_event_runs_through_the_invoke_api() {
    let env = TestEnv::new().await;
    let dir = format!("{}/../events", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("quota-") && n.ends_with(".json"))
        .collect();
    names.sort();
    // One per route of the quota function (but the reservations' own).
    assert_eq!(names.len(), 13, "{names:?}");
    for name in names {
        let res = env.invoke("quota", &sample_event(&name)).await;
        res.assert_status(200);
        assert_eq!(res.body["statusCode"], 200, "{name}: {}", res.text);
    }
}
