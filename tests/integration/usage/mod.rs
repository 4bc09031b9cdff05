//! Usage metering (issue 5): SQS batches through the real `usage-ingest` App
//! against the DynamoDB-compatible engine; usage observed through the quota API.

use aws_lambda_events::event::sqs::SqsEvent;
use chrono::{DateTime, Duration, Utc};
use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{json, Value};
use spendguard_core::domain::Usd;
use spendguard_core::store::keys;
use spendguard_core::Clock;
use spendguard_tests::scenario::sqs_records;
use spendguard_tests::{sample_event, TestEnv};
use std::collections::HashSet;
use std::sync::Arc;
use usage_ingest::BatchReport;

mod batches;
mod credits;
mod sums;
mod windows;

pub(crate) fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

pub(crate) fn usd(s: &str) -> Usd {
    Usd::parse_non_negative(s).unwrap()
}

/// One event body as the AI gateway would send it.
pub(crate) fn body(
    id: &str,
    user: &str,
    platform: &str,
    cost: &str,
    occurred_at: DateTime<Utc>,
) -> String {
    json!({
        "event_id": id,
        "user_id": user,
        "platform": platform,
        "cost_usd": cost,
        "occurred_at": occurred_at.to_rfc3339(),
        "model": "m-1",
    })
    .to_string()
}

/// Bodies with fresh, unique message ids (as SQS gives every delivery).
pub(crate) fn deliveries(bodies: &[String]) -> SqsEvent {
    let messages: Vec<(String, String)> = bodies
        .iter()
        .map(|b| (uuid::Uuid::new_v4().to_string(), b.clone()))
        .collect();
    sqs_records(messages)
}

pub(crate) async fn ingest(env: &TestEnv, event: SqsEvent) -> (Vec<String>, BatchReport) {
    let outcome = env.gateway.functions().usage_ingest.process(event).await;
    assert_eq!(outcome.unreportable, 0);
    let failed = outcome
        .response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    (failed, outcome.report)
}

/// Ingests and asserts that nothing failed.
pub(crate) async fn ingest_ok(env: &TestEnv, bodies: &[String]) -> BatchReport {
    let (failed, report) = ingest(env, deliveries(bodies)).await;
    assert!(
        failed.is_empty(),
        "unexpected failures {failed:?}: {report:?}"
    );
    report
}

/// `[daily, weekly, monthly]` usage of `user` on `platform`, from `GET /v1/me/quotas`.
pub(crate) async fn usage(env: &TestEnv, user: &str, platform: &str) -> [Usd; 3] {
    let res = env.get("/v1/me/quotas").as_user(user).send().await;
    res.assert_status(200);
    let q = res.body["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["platform"] == platform)
        .unwrap_or_else(|| panic!("no {platform}: {}", res.text))
        .clone();
    ["daily", "weekly", "monthly"].map(|w| usd(q[w]["usage_usd"].as_str().unwrap()))
}

async fn set_limits(env: &TestEnv, user: &str, platform: &str, limits: [Option<&str>; 3]) {
    env.put(&format!("/v1/admin/users/{user}/quotas"))
        .as_admin()
        .json(&json!({"quotas": [{
            "platform": platform,
            "daily_limit_usd": limits[0],
            "weekly_limit_usd": limits[1],
            "monthly_limit_usd": limits[2],
        }]}))
        .send()
        .await
        .assert_status(200);
}

/// A random exact amount below 10 USD with up to 10 fractional digits.
fn random_cost(rng: &mut impl Rng) -> Usd {
    Usd::from_atoms(rng.gen_range(0..100_000_000_000))
}

pub(crate) async fn env_at(now: &str, tz: &str) -> TestEnv {
    let tz = tz.parse().unwrap();
    TestEnv::build(|c| c.timezone = tz, Clock::manual(at(now))).await
}

/// Sends `batches` from `tasks` concurrent tasks; returns every failed id.
pub(crate) async fn ingest_concurrently(
    env: &Arc<TestEnv>,
    batches: Vec<Vec<String>>,
    tasks: usize,
) -> Vec<String> {
    let queue = Arc::new(std::sync::Mutex::new(batches));
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (env, queue) = (env.clone(), queue.clone());
        handles.push(tokio::spawn(async move {
            let mut failed = Vec::new();
            loop {
                let next = queue.lock().unwrap().pop();
                let Some(batch) = next else { break };
                let (f, _) = ingest(&env, deliveries(&batch)).await;
                failed.extend(f);
            }
            failed
        }));
    }
    let mut failed = Vec::new();
    for h in handles {
        failed.extend(h.await.unwrap());
    }
    failed
}

pub(crate) fn body_with_credits(
    id: &str,
    user: &str,
    platform: &str,
    cost: &str,
    credits: i64,
    occurred_at: DateTime<Utc>,
) -> String {
    let mut v: Value = serde_json::from_str(&body(id, user, platform, cost, occurred_at)).unwrap();
    v["credits"] = credits.into();
    v.to_string()
}

pub(crate) async fn grant(env: &TestEnv, user: &str, credits: i64) {
    env.post(&format!("/v1/admin/users/{user}/credits/adjust"))
        .as_admin()
        .header("idempotency-key", &uuid::Uuid::new_v4().to_string())
        .json(&json!({"delta": credits, "reason": "seed"}))
        .send()
        .await
        .assert_status(200);
}

pub(crate) async fn credit_account(env: &TestEnv, user: &str) -> Value {
    let res = env.get("/v1/me/credits").as_user(user).send().await;
    res.assert_status(200);
    res.body
}
