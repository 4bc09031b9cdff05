//! Reservations (issue 11): reserve → settle (usage event) / void / expire,
//! against the real engine through the harness.

use aws_lambda_events::event::sqs::SqsEvent;
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use spendguard_core::Clock;
use spendguard_tests::TestEnv;
use std::sync::Arc;

const USER: &str = "alice";
const PLATFORM: &str = "openai";

async fn set_daily_limit(env: &TestEnv, user: &str, limit: Value) {
    env.put(&format!("/v1/admin/users/{user}/quotas"))
        .as_admin()
        .json(&json!({"quotas": [{"platform": PLATFORM, "daily_limit_usd": limit}]}))
        .send()
        .await
        .assert_status(200);
}

async fn reserve(env: &TestEnv, body: Value) -> (u16, Value) {
    let r = env
        .post("/v1/quota/reservations")
        .as_service()
        .json(&body)
        .send()
        .await;
    (r.status, r.body)
}

fn reserve_body(user: &str, estimate: &str) -> Value {
    json!({"user_id": user, "platform": PLATFORM, "estimate_usd": estimate})
}

/// `n` concurrent reservations of `estimate`; the ids of those admitted.
async fn burst(env: &Arc<TestEnv>, user: &str, n: usize, estimate: &str) -> Vec<String> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (env, body) = (env.clone(), reserve_body(user, estimate));
        tasks.spawn(async move { reserve(&env, body).await });
    }
    let mut admitted = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (status, body) = done.unwrap();
        match status {
            201 => admitted.push(body["reservation_id"].as_str().unwrap().to_string()),
            200 => {
                assert_eq!(body["allowed"], false, "{body}");
                assert_eq!(body["reason"], "daily_quota_exhausted", "{body}");
            }
            other => panic!("reserve answered {other}: {body}"),
        }
    }
    admitted
}

fn sqs(bodies: &[Value]) -> SqsEvent {
    let records: Vec<Value> = bodies
        .iter()
        .map(|b| {
            let id = uuid::Uuid::new_v4().to_string();
            json!({
                "messageId": id,
                "receiptHandle": format!("rh-{id}"),
                "body": b.to_string(),
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:spendguard-billing",
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

fn event(id: &str, user: &str, cost: &str, at: DateTime<Utc>, reservation: Option<&str>) -> Value {
    let mut e = json!({
        "event_id": id, "user_id": user, "platform": PLATFORM,
        "cost_usd": cost, "occurred_at": at.to_rfc3339(),
    });
    if let Some(r) = reservation {
        e["reservation_id"] = json!(r);
    }
    e
}

/// Applies the events (one SQS batch); asserts none failed.
async fn ingest(env: &TestEnv, events: &[Value]) {
    let outcome = env
        .gateway
        .functions()
        .usage_ingest
        .process(sqs(events))
        .await;
    assert!(
        outcome.response.batch_item_failures.is_empty(),
        "failed: {:?}",
        outcome.response.batch_item_failures
    );
}

async fn daily(env: &TestEnv, user: &str) -> Value {
    let check = env
        .post("/v1/quota/check")
        .as_service()
        .json(&json!({"user_id": user, "platform": PLATFORM}))
        .send()
        .await;
    check.assert_status(200);
    check.body["windows"]["daily"].clone()
}

#[tokio::test]
async fn a_burst_of_500_reservations_admits_exactly_what_fits_and_settles_exactly() {
    let env = Arc::new(TestEnv::new().await);
    set_daily_limit(&env, USER, json!("10")).await;

    let admitted = burst(&env, USER, 500, "0.10").await;
    assert_eq!(admitted.len(), 100, "exactly $10 / $0.10 admitted");
    let d = daily(&env, USER).await;
    assert_eq!(
        (d["usage_usd"].as_str(), d["reserved_usd"].as_str()),
        (Some("0"), Some("10"))
    );
    assert_eq!(d["remaining_usd"], "0");

    // Settle each at $0.07 (one event per reservation, in batches of 10).
    let now = env.clock.now();
    let events: Vec<Value> = admitted
        .iter()
        .enumerate()
        .map(|(i, r)| event(&format!("e-{i}"), USER, "0.07", now, Some(r)))
        .collect();
    for chunk in events.chunks(10) {
        ingest(&env, chunk).await;
    }
    let d = daily(&env, USER).await;
    assert_eq!(d["usage_usd"], "7", "exactly $7.00");
    assert_eq!(d["reserved_usd"], "0");
    assert_eq!(d["remaining_usd"], "3");
    for r in admitted.iter().take(3) {
        let got = env
            .get(&format!("/v1/quota/reservations/{r}"))
            .as_service()
            .send()
            .await;
        got.assert_status(200);
        assert_eq!(got.body["status"], "settled");
        assert_eq!(got.body["settled_cost_usd"], "0.07");
        assert_eq!(got.body["overage_usd"], Value::Null);
    }

    // (10 - 7) / 0.07 = 42.86: exactly 42 more fit.
    let more = burst(&env, USER, 60, "0.07").await;
    assert_eq!(more.len(), 42);
}

#[tokio::test]
async fn the_same_burst_through_the_plain_check_overshoots_the_cap() {
    let env = Arc::new(TestEnv::new().await);
    set_daily_limit(&env, USER, json!("10")).await;
    // 500 gateway requests each check, and only then (after the upstream
    // call) send their usage event: every check sees the cap not yet reached.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..500 {
        let env = env.clone();
        tasks.spawn(async move {
            let c = env
                .post("/v1/quota/check")
                .as_service()
                .json(&json!({"user_id": USER, "platform": PLATFORM}))
                .send()
                .await;
            c.body["allowed"] == true
        });
    }
    let mut allowed = 0;
    while let Some(ok) = tasks.join_next().await {
        allowed += usize::from(ok.unwrap());
    }
    assert!(allowed > 100, "the plain check admitted only {allowed}");
    let now = env.clock.now();
    let events: Vec<Value> = (0..allowed)
        .map(|i| event(&format!("p-{i}"), USER, "0.10", now, None))
        .collect();
    for chunk in events.chunks(10) {
        ingest(&env, chunk).await;
    }
    let d = daily(&env, USER).await;
    let usage: f64 = d["usage_usd"].as_str().unwrap().parse().unwrap();
    assert!(usage > 10.0, "spend {usage} overshoots the $10 cap");
}

#[tokio::test]
async fn one_request_to_reserve() {
    let env = TestEnv::new().await;
    set_daily_limit(&env, USER, json!("10")).await;
    // The first reserve meets the window for the first time (the admin write
    // created the item without a start): a re-plan; then the steady state.
    reserve(&env, reserve_body(USER, "0.1")).await;
    let before = env.store.stats().requests();
    let (status, _) = reserve(&env, reserve_body(USER, "0.1")).await;
    assert_eq!(status, 201);
    assert_eq!(
        env.store.stats().requests() - before,
        1,
        "reserve: 1 request"
    );
}

#[allow(dead_code)]
fn unused(_: Duration, _: Clock) {}
