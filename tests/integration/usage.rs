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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousand_concurrent_events_sum_exactly_and_redelivery_changes_nothing() {
    let env = Arc::new(env_at("2026-11-20T12:00:00Z", "UTC").await);
    set_limits(&env, "alice", "openai", [Some("100000"), None, Some("0")]).await;
    let mut rng = rand::thread_rng();
    let mut total = Usd::ZERO;
    let mut bodies = Vec::new();
    for i in 0..1000 {
        let cost = random_cost(&mut rng);
        total = total + cost;
        let when = at("2026-11-20T00:00:00Z") + Duration::seconds(i * 40);
        bodies.push(body(
            &format!("evt-{i}"),
            "alice",
            "openai",
            &cost.to_string(),
            when,
        ));
    }
    // SQS batches of 10 from 50 concurrent invocations.
    let batches: Vec<Vec<String>> = bodies.chunks(10).map(<[String]>::to_vec).collect();
    let failed = ingest_concurrently(&env, batches, 50).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(usage(&env, "alice", "openai").await, [total; 3]);

    // Every event three more times, shuffled across batches (so some batches
    // carry the same event twice), again concurrently.
    let mut again: Vec<String> = bodies
        .iter()
        .flat_map(|b| [b.clone(), b.clone(), b.clone()])
        .collect();
    again.shuffle(&mut rng);
    let batches: Vec<Vec<String>> = again.chunks(10).map(<[String]>::to_vec).collect();
    let failed = ingest_concurrently(&env, batches, 50).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(usage(&env, "alice", "openai").await, [total; 3]);
    let c = env.check_mine("alice", "openai").await;
    let remaining = Usd::from_whole(100_000) - total;
    assert_eq!(
        c["windows"]["daily"]["remaining_usd"],
        remaining.to_string(),
        "{c}"
    );
    assert_eq!(c["windows"]["weekly"]["remaining_usd"], Value::Null, "{c}");
    assert_eq!(c["reason"], "platform_disabled", "{c}");
    // Nothing leaked to other platforms or users.
    assert_eq!(usage(&env, "alice", "gemini").await, [Usd::ZERO; 3]);
    assert_eq!(usage(&env, "bob", "openai").await, [Usd::ZERO; 3]);
    env.assert_invariants().await;
}

/// Events per run of the 100,000-event test; `SPENDGUARD_TINY_EVENTS` scales
/// it down for slow external endpoints (the default run does all of them).
fn tiny_event_count() -> usize {
    std::env::var("SPENDGUARD_TINY_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_thousand_tiny_events_sum_exactly() {
    let env = Arc::new(env_at("2026-11-20T12:00:00Z", "UTC").await);
    let count = tiny_event_count();
    let started = std::time::Instant::now();
    let requests_before = env.store.stats().requests();
    let bodies: Vec<String> = (0..count)
        .map(|i| {
            let when = at("2026-11-20T11:00:00Z") + Duration::milliseconds(i as i64);
            body(
                &format!("tiny-{i}"),
                "carol",
                "anthropic",
                "0.0000000001",
                when,
            )
        })
        .collect();
    // Lambda batches of 1,000 (an SQS event source allows up to 10,000 with a
    // batching window), four invocations at a time.
    let batches: Vec<Vec<String>> = bodies.chunks(1000).map(<[String]>::to_vec).collect();
    let failed = ingest_concurrently(&env, batches, 4).await;
    assert!(failed.is_empty(), "{} failed", failed.len());
    let expected = Usd::from_atoms(count as i128);
    assert_eq!(usage(&env, "carol", "anthropic").await, [expected; 3]);
    if count == 100_000 {
        assert_eq!(expected.to_string(), "0.00001");
    }
    let requests = env.store.stats().requests() - requests_before;
    eprintln!(
        "{count} tiny events in {:?}: {requests} DynamoDB requests ({:.4}/event)",
        started.elapsed(),
        requests as f64 / count as f64
    );
    assert!(
        requests as usize <= count,
        "{requests} requests for {count} events"
    );
    // Coalescing: one transaction per 99 events of a user and platform.
    assert!(
        requests as usize <= count / 50,
        "{requests} requests for {count} events"
    );
}

#[tokio::test]
async fn events_straddling_midnight_monday_and_the_first_land_in_their_windows() {
    // 2027-03-01 is a Monday: in Shanghai (UTC+8) day, week and month all begin
    // at 2027-02-28T16:00:00Z.
    let env = env_at("2027-02-28T15:59:59Z", "Asia/Shanghai").await;
    set_limits(&env, "dora", "gemini", [Some("3"), Some("10"), Some("2")]).await;
    let sunday_late = at("2027-02-28T15:59:59Z");
    ingest_ok(&env, &[body("s-1", "dora", "gemini", "1", sunday_late)]).await;
    assert_eq!(usage(&env, "dora", "gemini").await, [usd("1"); 3]);

    env.clock.set(at("2027-02-28T17:00:00Z"));
    // Before the first write of the new windows, they read as zero.
    assert_eq!(usage(&env, "dora", "gemini").await, [Usd::ZERO; 3]);
    // One batch: two events of Monday 1 March and a late one of Sunday.
    ingest_ok(
        &env,
        &[
            body("m-1", "dora", "gemini", "2", at("2027-02-28T16:00:00Z")),
            body("s-2", "dora", "gemini", "5", at("2027-02-28T10:00:00Z")),
            body("m-2", "dora", "gemini", "0.25", at("2027-02-28T16:30:00Z")),
        ],
    )
    .await;
    assert_eq!(usage(&env, "dora", "gemini").await, [usd("2.25"); 3]);
    // A late Sunday event on its own (after the rollover): recorded, counts nowhere.
    ingest_ok(
        &env,
        &[body(
            "s-3",
            "dora",
            "gemini",
            "7",
            at("2027-02-28T15:00:00Z"),
        )],
    )
    .await;
    assert_eq!(usage(&env, "dora", "gemini").await, [usd("2.25"); 3]);

    let c = env.check_mine("dora", "gemini").await;
    assert_eq!(c["allowed"], false, "{c}");
    assert_eq!(c["reason"], "monthly_quota_exhausted", "{c}");
    assert_eq!(c["windows"]["daily"]["remaining_usd"], "0.75", "{c}");
    assert_eq!(c["windows"]["weekly"]["remaining_usd"], "7.75", "{c}");
    assert_eq!(c["windows"]["monthly"]["remaining_usd"], "0", "{c}");
    assert_eq!(c["windows"]["daily"]["usage_usd"], "2.25", "{c}");
    assert_eq!(
        c["windows"]["daily"]["window_start"], "2027-02-28T16:00:00Z",
        "{c}"
    );

    // Tuesday 2 March local midnight: only the day rolls over.
    env.clock.set(at("2027-03-01T16:30:00Z"));
    ingest_ok(
        &env,
        &[
            body(
                "t-1",
                "dora",
                "gemini",
                "0.5",
                at("2027-03-01T15:59:59.999Z"),
            ),
            body("t-2", "dora", "gemini", "0.125", at("2027-03-01T16:00:00Z")),
        ],
    )
    .await;
    assert_eq!(
        usage(&env, "dora", "gemini").await,
        [usd("0.125"), usd("2.875"), usd("2.875")]
    );
    let c = env.check_mine("dora", "gemini").await;
    assert_eq!(c["windows"]["daily"]["remaining_usd"], "2.875", "{c}");
    assert_eq!(c["windows"]["weekly"]["remaining_usd"], "7.125", "{c}");
}

/// Issue 10, item 4: a producer clock running ahead stamps an event with the
/// next day; applied before midnight, it must not restart the day early.
#[tokio::test]
async fn a_future_dated_event_before_midnight_never_empties_the_ending_day() {
    let env = env_at("2026-11-22T23:58:00Z", "UTC").await;
    set_limits(&env, "fred", "openai", [Some("10"), None, None]).await;
    ingest_ok(
        &env,
        &[body(
            "d-1",
            "fred",
            "openai",
            "4",
            at("2026-11-22T12:00:00Z"),
        )],
    )
    .await;
    // Four minutes ahead: the next day, week (Monday 23 Nov) and the same month.
    ingest_ok(
        &env,
        &[body(
            "d-2",
            "fred",
            "openai",
            "5",
            at("2026-11-23T00:02:00Z"),
        )],
    )
    .await;
    assert_eq!(usage(&env, "fred", "openai").await, [usd("9"); 3]);
    let c = env.check_mine("fred", "openai").await;
    assert_eq!(c["windows"]["daily"]["usage_usd"], "9", "{c}");
    assert_eq!(c["windows"]["daily"]["remaining_usd"], "1", "{c}");
    assert_eq!(
        c["windows"]["daily"]["window_start"], "2026-11-22T00:00:00Z",
        "{c}"
    );
    // After midnight the new day starts empty; a redelivery changes nothing.
    env.clock.set(at("2026-11-23T00:03:00Z"));
    ingest_ok(
        &env,
        &[body(
            "d-2",
            "fred",
            "openai",
            "5",
            at("2026-11-23T00:02:00Z"),
        )],
    )
    .await;
    assert_eq!(
        usage(&env, "fred", "openai").await,
        [Usd::ZERO, Usd::ZERO, usd("9")]
    );
}

#[tokio::test]
async fn windows_follow_the_configured_zone_not_utc() {
    // UTC midnight of Wednesday 2026-11-25 is 08:00 in Shanghai: no boundary there,
    // while Shanghai's midnight (16:00 UTC) is one.
    let env = env_at("2026-11-25T17:00:00Z", "Asia/Shanghai").await;
    ingest_ok(
        &env,
        &[
            body("z-1", "erin", "openai", "1", at("2026-11-24T23:59:59Z")),
            body("z-2", "erin", "openai", "2", at("2026-11-25T00:00:00Z")),
            body("z-3", "erin", "openai", "4", at("2026-11-25T15:59:59Z")),
            body("z-4", "erin", "openai", "8", at("2026-11-25T16:00:00Z")),
        ],
    )
    .await;
    assert_eq!(
        usage(&env, "erin", "openai").await,
        [usd("8"), usd("15"), usd("15")]
    );
    // The same instants in UTC: the boundary is UTC midnight instead.
    let env = env_at("2026-11-25T17:00:00Z", "UTC").await;
    ingest_ok(
        &env,
        &[
            body("z-1", "erin", "openai", "1", at("2026-11-24T23:59:59Z")),
            body("z-2", "erin", "openai", "2", at("2026-11-25T00:00:00Z")),
            body("z-3", "erin", "openai", "4", at("2026-11-25T15:59:59Z")),
            body("z-4", "erin", "openai", "8", at("2026-11-25T16:00:00Z")),
        ],
    )
    .await;
    assert_eq!(
        usage(&env, "erin", "openai").await,
        [usd("14"), usd("15"), usd("15")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_events_across_midnight_roll_the_day_over_once() {
    // Tuesday 2026-11-24 → Wednesday in UTC: day rolls, week and month do not.
    let env = Arc::new(env_at("2026-11-25T00:10:00Z", "UTC").await);
    let mut rng = rand::thread_rng();
    let (mut before, mut after) = (Usd::ZERO, Usd::ZERO);
    let mut bodies = Vec::new();
    for i in 0..400 {
        let cost = random_cost(&mut rng);
        let when = if i % 2 == 0 {
            before = before + cost;
            at("2026-11-24T23:55:00Z") + Duration::seconds(i / 2)
        } else {
            after = after + cost;
            at("2026-11-25T00:00:00Z") + Duration::seconds(i / 2)
        };
        bodies.push(body(
            &format!("mid-{i}"),
            "fay",
            "openai",
            &cost.to_string(),
            when,
        ));
    }
    bodies.shuffle(&mut rng);
    let batches: Vec<Vec<String>> = bodies.chunks(3).map(<[String]>::to_vec).collect();
    let failed = ingest_concurrently(&env, batches, 20).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(
        usage(&env, "fay", "openai").await,
        [after, before + after, before + after]
    );
    env.assert_invariants().await;
}

#[tokio::test]
async fn bad_messages_fail_alone_and_good_ones_apply_once() {
    let env = env_at("2026-11-21T12:00:00Z", "UTC").await;
    let now = at("2026-11-21T12:00:00Z");
    let t = now - Duration::minutes(30);
    // An event applied in an earlier batch.
    ingest_ok(&env, &[body("old-1", "gus", "openai", "1", t)]).await;

    let good = [
        ("g1", body("good-1", "gus", "openai", "0.1", t)),
        ("g2", body("good-2", "gus", "openai", "0.02", t)),
        (
            "g3",
            body(
                "good-3",
                "gus",
                "openai",
                "0.003",
                now + Duration::minutes(5),
            ),
        ),
        ("g4", body("good-4", "gus", "anthropic", "4", t)),
        // The same payload as an applied event, spelled differently: acknowledged.
        (
            "dup-same",
            json!({"event_id": "old-1", "user_id": "gus", "platform": "openai",
                   "cost_usd": 1.0, "occurred_at": t.to_rfc3339(), "model": "m-1"})
            .to_string(),
        ),
        // A second delivery of good-1 in the same batch: acknowledged.
        ("g1-again", body("good-1", "gus", "openai", "0.1", t)),
    ];
    let bad = [
        ("malformed", "{\"event_id\": \"bad-1\", ".to_string()),
        ("negative", body("bad-2", "gus", "openai", "-0.5", t)),
        ("platform", body("bad-3", "gus", "mistral", "0.5", t)),
        (
            "future",
            body(
                "bad-4",
                "gus",
                "openai",
                "0.5",
                now + Duration::seconds(301),
            ),
        ),
        ("mismatch-old", body("old-1", "gus", "openai", "1.5", t)),
        (
            "mismatch-batch",
            body("good-2", "gus", "openai", "0.021", t),
        ),
        ("bad-id", body("bad 5", "gus", "openai", "0.5", t)),
        ("not-an-object", "[1, 2]".to_string()),
        ("empty", String::new()),
    ];
    let mut messages: Vec<(String, String)> = good
        .iter()
        .chain(bad.iter())
        .map(|(id, b)| (id.to_string(), b.clone()))
        .collect();
    messages.shuffle(&mut rand::thread_rng());
    // The batch-internal mismatch must come after the event it conflicts with.
    let pos = |m: &[(String, String)], id: &str| m.iter().position(|(i, _)| i == id).unwrap();
    if pos(&messages, "mismatch-batch") < pos(&messages, "g2") {
        let (a, b) = (pos(&messages, "mismatch-batch"), pos(&messages, "g2"));
        messages.swap(a, b);
    }
    let expected: HashSet<String> = bad.iter().map(|(id, _)| id.to_string()).collect();
    for round in 0..2 {
        let (failed, report) = ingest(&env, sqs_records(messages.clone())).await;
        let got: HashSet<String> = failed.iter().cloned().collect();
        assert_eq!(got, expected, "round {round}");
        assert_eq!(failed.len(), got.len(), "each failed id once: {failed:?}");
        assert_eq!(report.failed, bad.len());
        assert_eq!(report.applied + report.duplicates, good.len());
        assert_eq!(
            usage(&env, "gus", "openai").await,
            [usd("1.123"); 3],
            "round {round}"
        );
        assert_eq!(usage(&env, "gus", "anthropic").await, [usd("4"); 3]);
    }
}

#[tokio::test]
async fn sample_batch_fails_only_the_malformed_message() {
    // The sample: four events (one with credits, one delivered twice with the
    // payload spelled differently) and a malformed body.
    let env = env_at("2026-11-21T12:00:00Z", "UTC").await;
    let res = env
        .invoke("usage-ingest", &sample_event("sqs-usage-batch.json"))
        .await;
    res.assert_status(200);
    assert_eq!(
        res.body,
        json!({"batchItemFailures": [{"itemIdentifier": "0e3b8f2c-0000-4000-8000-000000000003"}]})
    );
    assert_eq!(usage(&env, "alice", "anthropic").await, [usd("0.0125"); 3]);
    assert_eq!(usage(&env, "alice", "openai").await, [usd("0.5"); 3]);
    assert_eq!(usage(&env, "bob", "gemini").await, [usd("0.0000000001"); 3]);
    assert_eq!(credit_account(&env, "alice").await["used"], 50);
}

#[tokio::test]
async fn steady_state_costs_at_most_one_request_per_event() {
    let env = env_at("2026-11-21T12:00:00Z", "UTC").await;
    let t = at("2026-11-21T11:00:00Z");
    // The first event creates the quota item (a rollover from nothing: two requests).
    let first = ingest_ok(&env, &[body("warm", "hal", "openai", "1", t)]).await;
    assert_eq!(first.writes.requests, 2, "{first:?}");

    // One event per batch: one request each.
    let before = env.store.stats().requests();
    let mut expected = usd("1");
    for i in 0..20 {
        let cost = Usd::from_atoms(i + 1);
        expected = expected + cost;
        let report = ingest_ok(
            &env,
            &[body(
                &format!("one-{i}"),
                "hal",
                "openai",
                &cost.to_string(),
                t,
            )],
        )
        .await;
        assert_eq!(report.writes.requests, 1, "{report:?}");
        assert_eq!(report.writes.transactions, 1);
        assert!(report.writes.write_units_tenths > 0, "{report:?}");
    }
    assert_eq!(env.store.stats().requests() - before, 20);

    // Batches of 10 (the SQS maximum), two users and two platforms: one request
    // per user and platform in the batch.
    let before = env.store.stats().requests();
    let mut events = 0;
    for b in 0..10 {
        let bodies: Vec<String> = (0..10)
            .map(|i| {
                let platform = if i % 2 == 0 { "openai" } else { "anthropic" };
                let user = if i < 5 { "hal" } else { "ivy" };
                body(&format!("b{b}-{i}"), user, platform, "0.5", t)
            })
            .collect();
        events += bodies.len();
        let report = ingest_ok(&env, &bodies).await;
        if b > 0 {
            // Every group's quota item exists after the first batch.
            assert_eq!(report.writes.requests, 4, "{report:?}");
        }
    }
    let requests = env.store.stats().requests() - before;
    assert!(
        requests as usize <= events,
        "{requests} requests for {events} events"
    );
    assert_eq!(
        requests,
        4 * 10 + 3,
        "three quota items created in the first batch"
    );
    assert_eq!(
        usage(&env, "hal", "openai").await,
        [expected + usd("15"); 3]
    );
}

#[tokio::test]
async fn a_user_without_quota_record_gets_an_unlimited_one() {
    let env = env_at("2026-11-21T12:00:00Z", "UTC").await;
    ingest_ok(
        &env,
        &[body(
            "n-1",
            "jan",
            "antigravity",
            "3.5",
            at("2026-11-21T11:00:00Z"),
        )],
    )
    .await;
    let res = env
        .get("/v1/admin/users/jan/quotas")
        .as_admin()
        .send()
        .await;
    res.assert_status(200);
    let q = res.body["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["platform"] == "antigravity")
        .unwrap()
        .clone();
    for w in ["daily", "weekly", "monthly"] {
        assert_eq!(q[w]["limit_usd"], Value::Null, "{q}");
        assert_eq!(q[w]["usage_usd"], "3.5", "{q}");
    }
    assert_eq!(env.check_mine("jan", "antigravity").await["allowed"], true);
}

#[tokio::test]
async fn event_records_expire_after_fifteen_days_but_expiry_never_reapplies() {
    let env = env_at("2026-11-21T12:00:00Z", "UTC").await;
    let t = at("2026-11-21T11:00:00Z");
    let event = body("ttl-1", "kim", "openai", "2", t);
    ingest_ok(&env, std::slice::from_ref(&event)).await;
    let key = |id: &str| {
        [
            (
                keys::PK.to_string(),
                aws_sdk_dynamodb::types::AttributeValue::S(keys::event_pk(id)),
            ),
            (
                keys::SK.to_string(),
                aws_sdk_dynamodb::types::AttributeValue::S(keys::EVENT_SK.into()),
            ),
        ]
        .into_iter()
        .collect::<std::collections::HashMap<_, _>>()
    };
    let item = env
        .store
        .client()
        .get_item()
        .table_name(env.store.table())
        .set_key(Some(key("ttl-1")))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("event record");
    let expires: i64 = item[keys::TTL].as_n().unwrap().parse().unwrap();
    assert!(expires >= (at("2026-11-21T12:00:00Z") + Duration::days(15)).timestamp());
    assert_eq!(item["cost_usd"].as_n().unwrap(), "2");

    // TTL deletes late: a record past its expiry still fences the event.
    env.store
        .client()
        .update_item()
        .table_name(env.store.table())
        .set_key(Some(key("ttl-1")))
        .update_expression("SET #ttl = :past")
        .expression_attribute_names("#ttl", keys::TTL)
        .expression_attribute_values(
            ":past",
            aws_sdk_dynamodb::types::AttributeValue::N("1".into()),
        )
        .send()
        .await
        .unwrap();
    env.clock.set(at("2026-12-10T12:00:00Z"));
    let report = ingest_ok(&env, &[event]).await;
    assert_eq!((report.applied, report.duplicates), (0, 1));
    env.clock.set(at("2026-11-21T12:00:00Z"));
    assert_eq!(usage(&env, "kim", "openai").await, [usd("2"); 3]);
}

// --- credits debit -----------------------------------------------------------

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn credits_are_debited_once_in_the_same_write_under_redelivery() {
    let env = Arc::new(env_at("2026-11-21T12:00:00Z", "UTC").await);
    grant(&env, "lee", 100).await;
    let mut rng = rand::thread_rng();
    let t = at("2026-11-21T11:00:00Z");
    let (mut spent, mut usage_openai, mut usage_gemini) = (0i64, Usd::ZERO, Usd::ZERO);
    let mut with_credits = HashSet::new();
    let mut bodies = Vec::new();
    for i in 0..80 {
        let cost = random_cost(&mut rng);
        let platform = if i % 3 == 0 { "gemini" } else { "openai" };
        if platform == "gemini" {
            usage_gemini = usage_gemini + cost;
        } else {
            usage_openai = usage_openai + cost;
        }
        let id = format!("cr-{i}");
        if i % 4 == 3 {
            bodies.push(body(&id, "lee", platform, &cost.to_string(), t));
        } else {
            let credits = rng.gen_range(1..=5);
            spent += credits;
            with_credits.insert(id.clone());
            bodies.push(body_with_credits(
                &id,
                "lee",
                platform,
                &cost.to_string(),
                credits,
                t,
            ));
        }
    }
    bodies.shuffle(&mut rng);
    let batches: Vec<Vec<String>> = bodies.chunks(10).map(<[String]>::to_vec).collect();
    assert!(ingest_concurrently(&env, batches, 8).await.is_empty());
    // Twice more, shuffled, concurrently.
    let mut again: Vec<String> = bodies.iter().flat_map(|b| [b.clone(), b.clone()]).collect();
    again.shuffle(&mut rng);
    let batches: Vec<Vec<String>> = again.chunks(10).map(<[String]>::to_vec).collect();
    assert!(ingest_concurrently(&env, batches, 8).await.is_empty());

    let acct = credit_account(&env, "lee").await;
    assert_eq!(acct["available"], 100 - spent, "{acct}");
    assert_eq!(acct["used"], spent, "{acct}");
    assert_eq!(acct["total"], 100, "{acct}");
    let entries = env.full_ledger("lee").await;
    assert_eq!(entries.len(), 1 + with_credits.len());
    let mut previous_after = 0;
    let mut consumed = HashSet::new();
    for (n, e) in entries.iter().enumerate() {
        assert_eq!(e["seq"], n as u64 + 1, "{e}");
        assert_eq!(e["balance_before"], previous_after, "{e}");
        previous_after = e["balance_after"].as_i64().unwrap();
        if n > 0 {
            assert_eq!(e["type"], "consume", "{e}");
            assert!(e["amount"].as_i64().unwrap() < 0, "{e}");
            assert!(
                consumed.insert(e["reference"].as_str().unwrap().to_string()),
                "{e}"
            );
        }
    }
    assert_eq!(previous_after, 100 - spent);
    assert_eq!(consumed, with_credits);
    assert_eq!(usage(&env, "lee", "openai").await, [usage_openai; 3]);
    assert_eq!(usage(&env, "lee", "gemini").await, [usage_gemini; 3]);
}

#[tokio::test]
async fn usage_credits_may_take_the_balance_below_zero() {
    let env = env_at("2026-11-21T12:00:00Z", "UTC").await;
    grant(&env, "max", 5).await;
    let t = at("2026-11-21T11:00:00Z");
    ingest_ok(
        &env,
        &[body_with_credits("neg-1", "max", "openai", "0.5", 7, t)],
    )
    .await;
    let acct = credit_account(&env, "max").await;
    assert_eq!(
        (acct["available"].as_i64(), acct["used"].as_i64()),
        (Some(-2), Some(7))
    );
    let entries = env.full_ledger("max").await;
    let last = entries.last().unwrap();
    assert_eq!(last["type"], "consume");
    assert_eq!(last["amount"], -7);
    assert_eq!(
        (
            last["balance_before"].as_i64(),
            last["balance_after"].as_i64()
        ),
        (Some(5), Some(-2))
    );
    assert_eq!(last["category"], "usage");
    // A user without any account: consumption creates it, below zero.
    ingest_ok(
        &env,
        &[body_with_credits("neg-2", "nia", "openai", "0.5", 3, t)],
    )
    .await;
    assert_eq!(credit_account(&env, "nia").await["available"], -3);
    // credits: 0 debits nothing and writes no ledger entry.
    ingest_ok(
        &env,
        &[body_with_credits("zero-1", "nia", "openai", "0.5", 0, t)],
    )
    .await;
    assert_eq!(env.full_ledger("nia").await.len(), 1);
    assert_eq!(usage(&env, "nia", "openai").await, [usd("1"); 3]);
}

#[tokio::test]
async fn credit_events_cost_at_most_two_requests_each() {
    let env = env_at("2026-11-21T12:00:00Z", "UTC").await;
    grant(&env, "olga", 1000).await;
    let t = at("2026-11-21T11:00:00Z");
    // Warm up: creates the quota item.
    ingest_ok(&env, &[body("warm-c", "olga", "openai", "1", t)]).await;
    let before = env.store.stats().requests();
    for i in 0..10 {
        let report = ingest_ok(
            &env,
            &[body_with_credits(
                &format!("c1-{i}"),
                "olga",
                "openai",
                "0.1",
                2,
                t,
            )],
        )
        .await;
        assert_eq!(report.writes.requests, 2, "{report:?}");
    }
    assert_eq!(env.store.stats().requests() - before, 20);
    // A batch of ten of one user: one account read, then one write with
    // every record, the quota item, the account and ten ledger entries.
    let before = env.store.stats().requests();
    let bodies: Vec<String> = (0..10)
        .map(|i| body_with_credits(&format!("c10-{i}"), "olga", "openai", "0.1", 1, t))
        .collect();
    let report = ingest_ok(&env, &bodies).await;
    let requests = env.store.stats().requests() - before;
    assert_eq!(requests, report.writes.requests);
    assert!(requests <= 20, "{requests}");
    assert_eq!(requests, 2, "{report:?}");
    assert_eq!(credit_account(&env, "olga").await["available"], 1000 - 30);
    assert_eq!(usage(&env, "olga", "openai").await, [usd("3"); 3]);
}

#[tokio::test]
async fn a_failed_message_without_id_is_never_dropped_silently() {
    let env = env_at("2026-11-21T12:00:00Z", "UTC").await;
    let t = at("2026-11-21T11:00:00Z");
    let event: SqsEvent = serde_json::from_value(json!({"Records": [
        {"body": "{not json"},
        {"messageId": "", "body": body("noid-1", "pat", "openai", "1", t)},
        {"messageId": "m-ok", "body": body("noid-2", "pat", "openai", "2", t)},
        {"messageId": "m-bad", "body": "{}"},
    ]}))
    .unwrap();
    let outcome = env.gateway.functions().usage_ingest.process(event).await;
    // Only real ids are named; the id-less failure makes the Lambda entry
    // point fail the invocation, so SQS delivers the whole batch again.
    let ids: Vec<&str> = outcome
        .response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(ids, ["m-bad"]);
    assert_eq!(outcome.unreportable, 1);
    assert_eq!((outcome.report.applied, outcome.report.failed), (2, 2));
    assert_eq!(usage(&env, "pat", "openai").await, [usd("3"); 3]);
}

#[tokio::test]
async fn a_batch_out_of_time_fails_its_unwritten_messages_and_redelivery_applies_them_once() {
    // The Lambda deadline bounds every retry: rather than being killed mid-batch
    // (the whole batch back on the queue, receive counts up for every message),
    // the function stops before the deadline and names what it did not write.
    let env = env_at("2026-11-21T12:00:00Z", "UTC").await;
    grant(&env, "lou", 10).await;
    let t = at("2026-11-21T11:00:00Z");
    let messages: Vec<(String, String)> = [
        ("m1", body("late-1", "lou", "openai", "0.5", t)),
        ("m2", body("late-2", "lou", "openai", "0.25", t)),
        (
            "m3",
            body_with_credits("late-3", "lou", "openai", "1", 4, t),
        ),
        ("m4", body("late-4", "kim", "gemini", "2", t)),
        ("m5", "{not json".to_string()),
    ]
    .iter()
    .map(|(id, b)| (id.to_string(), b.clone()))
    .collect();
    let app = &env.gateway.functions().usage_ingest;
    let outcome = app
        .process_until(
            sqs_records(messages.clone()),
            Some(tokio::time::Instant::now()),
        )
        .await;
    let failed: HashSet<&str> = outcome
        .response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, HashSet::from(["m1", "m2", "m3", "m4", "m5"]));
    assert_eq!((outcome.report.applied, outcome.report.failed), (0, 5));
    assert_eq!(usage(&env, "lou", "openai").await, [Usd::ZERO; 3]);
    assert_eq!(credit_account(&env, "lou").await["available"], 10);

    let (failed, report) = ingest(&env, sqs_records(messages)).await;
    assert_eq!(failed, ["m5"]);
    assert_eq!((report.applied, report.duplicates), (4, 0));
    assert_eq!(usage(&env, "lou", "openai").await, [usd("1.75"); 3]);
    assert_eq!(usage(&env, "kim", "gemini").await, [usd("2"); 3]);
    assert_eq!(credit_account(&env, "lou").await["available"], 6);
}

#[tokio::test]
async fn usage_summed_past_the_largest_input_amount_still_reads_and_resets() {
    // Each cost is a valid amount (below 10^18 USD); their stored sum is not
    // one. The quota item must stay readable: checks deny instead of failing,
    // and an admin can still reset the window.
    let env = env_at("2026-11-21T12:00:00Z", "UTC").await;
    set_limits(&env, "max", "openai", [Some("100"), None, None]).await;
    let t = at("2026-11-21T11:00:00Z");
    let huge = "600000000000000000";
    ingest_ok(&env, &[body("huge-1", "max", "openai", huge, t)]).await;
    ingest_ok(&env, &[body("huge-2", "max", "openai", huge, t)]).await;
    // Merged into one write, such events apply as they do one by one.
    let report = ingest_ok(
        &env,
        &[
            body("huge-3", "max", "gemini", huge, t),
            body("huge-4", "max", "gemini", huge, t),
        ],
    )
    .await;
    assert_eq!(report.applied, 2);
    let c = env.check_mine("max", "gemini").await;
    for w in ["daily", "weekly", "monthly"] {
        assert_eq!(c["windows"][w]["usage_usd"], "1200000000000000000", "{c}");
    }
    let res = env.get("/v1/me/quotas").as_user("max").send().await;
    res.assert_status(200);
    let c = env.check_mine("max", "openai").await;
    assert_eq!(c["allowed"], false, "{c}");
    assert_eq!(c["reason"], "daily_quota_exhausted", "{c}");
    assert_eq!(
        c["windows"]["daily"]["usage_usd"], "1200000000000000000",
        "{c}"
    );
    env.post("/v1/admin/users/max/quotas/openai/reset")
        .as_admin()
        .json(&json!({"window": "daily"}))
        .send()
        .await
        .assert_status(200);
    assert_eq!(env.check_mine("max", "openai").await["allowed"], true);
}
