//! Usage-ingest throughput against the DynamoDB-compatible engine of the test
//! harness (in-process dynoxide by default; `SPENDGUARD_TEST_ENDPOINT` or
//! `AWS_ENDPOINT_URL_DYNAMODB` for another one).
//!
//! Run: `cargo bench -p spendguard-tests --bench ingest`.
//! `SPENDGUARD_BENCH_SCALE=0.1` runs a tenth of the events (slow endpoints);
//! `SPENDGUARD_BENCH_ONLY=<text>` only the scenarios whose name contains it.
//!
//! Figures are ratios where they can be: DynamoDB requests and write units per
//! event come from the store's request counter and `ConsumedCapacity`, so they
//! do not depend on the machine; events per second does.

use aws_lambda_events::event::sqs::SqsEvent;
use chrono::{DateTime, Duration, Utc};
use rand::seq::SliceRandom;
use serde_json::json;
use spendguard_core::Clock;
use spendguard_tests::TestEnv;
use std::sync::{Arc, Mutex};
use std::time::Instant;

const NOW: &str = "2026-11-20T12:00:00Z";

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

struct Scenario {
    name: &'static str,
    events: usize,
    users: usize,
    platforms: &'static [&'static str],
    batch: usize,
    /// Invocations running at once.
    concurrency: usize,
    credits: bool,
    /// Each event delivered this many times (shuffled).
    deliveries: usize,
}

struct Figures {
    deliveries: usize,
    requests: u64,
    write_units_tenths: u64,
    seconds: f64,
}

fn body(scenario: &Scenario, i: usize) -> String {
    let mut v = json!({
        "event_id": format!("{}-{i}", slug(scenario.name)),
        "user_id": format!("user-{}", i % scenario.users),
        "platform": scenario.platforms[(i / scenario.users) % scenario.platforms.len()],
        "cost_usd": "0.0000125",
        "occurred_at": (at(NOW) - Duration::minutes(30) + Duration::milliseconds(i as i64)).to_rfc3339(),
        "model": "bench-model",
    });
    if scenario.credits {
        v["credits"] = 1.into();
    }
    v.to_string()
}

/// The scenario name as id characters.
fn slug(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

fn sqs(bodies: &[String], offset: usize) -> SqsEvent {
    let records: Vec<serde_json::Value> = bodies
        .iter()
        .enumerate()
        .map(|(k, b)| json!({"messageId": format!("m-{}", offset + k), "body": b}))
        .collect();
    serde_json::from_value(json!({ "Records": records })).expect("SQS event")
}

async fn run(scenario: &Scenario) -> Figures {
    let env = Arc::new(TestEnv::build(|_| {}, Clock::manual(at(NOW))).await);
    let mut bodies: Vec<String> = (0..scenario.events).map(|i| body(scenario, i)).collect();
    // Warm-up: one event per user and platform creates the quota items (and
    // accounts), so the figures show the steady state.
    let warm: Vec<String> = (0..scenario.users * scenario.platforms.len())
        .map(|i| {
            let mut b: serde_json::Value = serde_json::from_str(&body(scenario, i)).unwrap();
            b["event_id"] = format!("warm-{i}").into();
            b.to_string()
        })
        .collect();
    env.gateway
        .functions()
        .usage_ingest
        .handle(sqs(&warm, 0))
        .await;
    if scenario.deliveries > 1 {
        bodies = bodies
            .iter()
            .flat_map(|b| std::iter::repeat_n(b.clone(), scenario.deliveries))
            .collect();
        bodies.shuffle(&mut rand::thread_rng());
    }
    let deliveries = bodies.len();
    let batches: Vec<Vec<String>> = bodies
        .chunks(scenario.batch)
        .map(<[String]>::to_vec)
        .collect();
    let queue = Arc::new(Mutex::new(
        batches.into_iter().enumerate().collect::<Vec<_>>(),
    ));
    let requests_before = env.store.stats().requests();
    let units_before = env.store.stats().write_units_tenths();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..scenario.concurrency {
        let (env, queue, batch) = (env.clone(), queue.clone(), scenario.batch);
        tasks.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().unwrap().pop();
                let Some((n, bodies)) = next else { break };
                let response = env
                    .gateway
                    .functions()
                    .usage_ingest
                    .handle(sqs(&bodies, n * batch))
                    .await;
                assert!(
                    response.batch_item_failures.is_empty(),
                    "{} benchmark events failed",
                    response.batch_item_failures.len()
                );
            }
        }));
    }
    for t in tasks {
        t.await.expect("bench task");
    }
    Figures {
        deliveries,
        requests: env.store.stats().requests() - requests_before,
        write_units_tenths: env.store.stats().write_units_tenths() - units_before,
        seconds: started.elapsed().as_secs_f64(),
    }
}

fn main() {
    // `RUST_LOG=warn` shows why an event failed.
    if std::env::var_os("RUST_LOG").is_some() {
        spendguard_core::telemetry::init_pretty();
    }
    let scale: f64 = std::env::var("SPENDGUARD_BENCH_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    let n = |events: usize| ((events as f64 * scale).round() as usize).max(10);
    let all = &["anthropic", "openai", "gemini", "antigravity"];
    let scenarios = [
        Scenario {
            name: "single-event batches",
            events: n(2_000),
            users: 1,
            platforms: &["openai"],
            batch: 1,
            concurrency: 4,
            credits: false,
            deliveries: 1,
        },
        Scenario {
            name: "SQS batches of 10, one user+platform",
            events: n(20_000),
            users: 1,
            platforms: &["openai"],
            batch: 10,
            concurrency: 4,
            credits: false,
            deliveries: 1,
        },
        Scenario {
            name: "batches of 10, 25 users x 4 platforms",
            events: n(20_000),
            users: 25,
            platforms: all,
            batch: 10,
            concurrency: 4,
            credits: false,
            deliveries: 1,
        },
        Scenario {
            name: "template batches of 25, 5 users x 4 platforms",
            events: n(20_000),
            users: 5,
            platforms: all,
            batch: 25,
            concurrency: 4,
            credits: false,
            deliveries: 1,
        },
        Scenario {
            name: "Lambda batches of 1000, one user+platform",
            events: n(100_000),
            users: 1,
            platforms: &["anthropic"],
            batch: 1_000,
            concurrency: 4,
            credits: false,
            deliveries: 1,
        },
        Scenario {
            name: "each event 3x, shuffled batches of 10",
            events: n(10_000),
            users: 1,
            platforms: &["openai"],
            batch: 10,
            concurrency: 4,
            credits: false,
            deliveries: 3,
        },
        Scenario {
            name: "with credits, batches of 10, 10 users",
            events: n(5_000),
            users: 10,
            platforms: &["openai"],
            batch: 10,
            concurrency: 4,
            credits: true,
            deliveries: 1,
        },
    ];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "usage-ingest against {}",
        spendguard_tests::engine_description()
    );
    println!(
        "{:<46} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "scenario", "messages", "requests", "req/msg", "msg/req", "WCU/msg", "msg/s", "vs single"
    );
    // `SPENDGUARD_BENCH_ONLY=credits` runs the scenarios whose name contains it.
    let only = std::env::var("SPENDGUARD_BENCH_ONLY").unwrap_or_default();
    let mut baseline: Option<f64> = None;
    for s in scenarios.iter().filter(|s| s.name.contains(only.as_str())) {
        let f = runtime.block_on(run(s));
        let per = f.requests as f64 / f.deliveries as f64;
        let rate = f.deliveries as f64 / f.seconds;
        let baseline = *baseline.get_or_insert(rate);
        println!(
            "{:<46} {:>8} {:>8} {:>8.4} {:>8.1} {:>8.3} {:>8.0} {:>8.1}x",
            s.name,
            f.deliveries,
            f.requests,
            per,
            1.0 / per,
            f.write_units_tenths as f64 / 10.0 / f.deliveries as f64,
            rate,
            rate / baseline,
        );
    }
}
