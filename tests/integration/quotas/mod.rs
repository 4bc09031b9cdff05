//! Issue 3, platform quotas: every route of the "Quotas" contract through the dev
//! gateway, on the real store.

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use spendguard_core::api::HttpFunction;
use spendguard_core::domain::audit::AuditEntry;
use spendguard_core::{Clock, Deps, DynamoStore};
use spendguard_tests::{sample_event, TestEnv, TestResponse};
use std::sync::Arc;

mod access;
mod admin;
mod check;
mod defaults;

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

/// Sends each `(path, raw body, error code)` as an admin `method`, asserting
/// a 400 with that code, then that the table is as it was: a refused request
/// writes nothing.
async fn assert_all_refused(
    env: &TestEnv,
    method: &str,
    cases: impl IntoIterator<Item = (String, String, &str)>,
) {
    let before = env.table_snapshot().await;
    for (path, body, code) in cases {
        let res = env
            .request(method, &path)
            .as_admin()
            .raw_body(body.clone())
            .send()
            .await;
        let shown: String = body.chars().take(80).collect();
        assert_eq!(
            (res.status, res.error_code()),
            (400, Some(code)),
            "{method} {path} {shown}: {}",
            res.text
        );
    }
    assert_eq!(
        env.table_snapshot().await,
        before,
        "a refused request wrote something"
    );
}
