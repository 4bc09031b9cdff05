//! Hot spots (issue 14, item 4), reservations: 50 concurrent reservations and
//! their settlements on one quota item. Each is admitted or refused with the
//! contract's answer (200 Check, `daily_quota_exhausted`); no caller sees
//! `conflict`, no settlement fails. The proxy in front of the engine injects
//! nothing: it only counts each write's sends, to report the worst retries.

use serde_json::{json, Value};
use spendguard_core::domain::Usd;
use spendguard_core::Clock;
use spendguard_tests::scenario::{sqs_batch, usage_event};
use spendguard_tests::TestEnv;
use std::collections::BTreeMap;
use std::sync::Arc;

const WRITERS: usize = 50;

/// The write a transaction belongs to, whatever its attempt: the
/// idempotency record (reserve) or the event record (settlement) it puts.
fn write_of(body: &Value) -> Option<String> {
    body["TransactItems"].as_array()?.iter().find_map(|action| {
        let pk = action["Put"]["Item"]["pk"]["S"].as_str()?;
        (pk.starts_with("IDEMPOTENCY#") || pk.starts_with("EVENT#")).then(|| pk.to_string())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_reservations_and_settlements_on_one_item_surface_no_conflict() {
    let Some((env, proxy)) = TestEnv::with_faults(Clock::system()).await else {
        return;
    };
    let env = Arc::new(env);
    env.put("/v1/admin/users/alice/quotas")
        .as_admin()
        .json(&json!({"quotas": [{"platform": "openai", "daily_limit_usd": "40"}]}))
        .send()
        .await
        .assert_status(200);
    env.post("/v1/admin/users/alice/credits/adjust")
        .as_admin()
        .json(&json!({"delta": 1000, "reason": "opening"}))
        .send()
        .await
        .assert_status(200);
    let from = proxy.seen("TransactWriteItems").len();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..WRITERS {
        let env = env.clone();
        tasks.spawn(async move {
            let res = env
                .post("/v1/quota/reservations")
                .as_service()
                .header("idempotency-key", &format!("hot-{i}"))
                .json(&json!({"user_id": "alice", "platform": "openai",
                              "estimate_usd": "1", "credits": 2}))
                .send()
                .await;
            match res.status {
                201 => {}
                200 => {
                    assert_eq!(res.body["allowed"], false, "{}", res.text);
                    assert_eq!(res.body["reason"], "daily_quota_exhausted", "{}", res.text);
                    return false;
                }
                _ => panic!("reserve {i}: {} {}", res.status, res.text),
            }
            let mut event = usage_event(
                &format!("hot-{i}"),
                "alice",
                "openai",
                "0.5",
                chrono::Utc::now(),
            );
            event["reservation_id"] = res.body["reservation_id"].clone();
            event["credits"] = json!(1);
            let outcome = env
                .gateway
                .functions()
                .usage_ingest
                .process(sqs_batch(&[event]))
                .await;
            assert!(
                outcome.response.batch_item_failures.is_empty(),
                "settlement {i} failed: {:?}",
                outcome.report
            );
            true
        });
    }
    let mut admitted = 0;
    while let Some(done) = tasks.join_next().await {
        admitted += usize::from(done.expect("writer"));
    }
    assert!(
        admitted >= 40,
        "only {admitted} admitted: 40 fit even without releases"
    );
    let sends: BTreeMap<String, usize> = proxy.seen("TransactWriteItems")[from..]
        .iter()
        .filter_map(|s| write_of(&s.body))
        .fold(BTreeMap::new(), |mut m, w| {
            *m.entry(w).or_default() += 1;
            m
        });
    let worst = |prefix: &str| {
        sends
            .iter()
            .filter(|(w, _)| w.starts_with(prefix))
            .map(|(_, n)| n - 1)
            .max()
            .unwrap_or(0)
    };
    let retried = sends.values().filter(|n| **n > 1).count();
    eprintln!(
        "{WRITERS} reservations ({admitted} admitted) and their settlements on one item: \
         {} writes, {retried} retried; worst retries: reserve {}, settlement {}",
        sends.len(),
        worst("IDEMPOTENCY#"),
        worst("EVENT#")
    );
    let daily = env.check_mine("alice", "openai").await["windows"]["daily"].clone();
    let spent = Usd::from_atoms(5_000_000_000 * admitted as i128);
    assert_eq!(daily["usage_usd"], spent.to_string(), "{daily}");
    assert_eq!(daily["reserved_usd"], "0", "{daily}");
    assert_eq!(env.available("alice").await, 1000 - admitted as i64);
    env.assert_invariants().await;
}
