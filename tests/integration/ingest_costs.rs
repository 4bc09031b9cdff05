//! What usage ingest costs, counted at the engine, and credits ingest under
//! concurrency and below zero.
//!
//! The request counts come from the fault proxy's log (every HTTP request that
//! reached the engine: SDK attempts included) and from the store's own counter
//! (requests, SDK retries not counted), so a retry can never hide in either.

use super::usage::{
    at, body, body_with_credits, credit_account, deliveries, env_at, grant, ingest, ingest_ok,
    usage, usd,
};
use serde_json::Value;
use spendguard_core::domain::Usd;
use spendguard_core::Clock;
use spendguard_tests::scenario::sqs_records;
use spendguard_tests::{FaultProxy, TestEnv};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// Requests the engine saw and requests the store sent while `f` ran.
async fn counted<T>(
    env: &TestEnv,
    proxy: &FaultProxy,
    f: impl std::future::Future<Output = T>,
) -> (T, usize, u64) {
    let (seen, sent) = (proxy.log().len(), env.store.stats().requests());
    let out = f.await;
    (
        out,
        proxy.log().len() - seen,
        env.store.stats().requests() - sent,
    )
}

/// The user's ledger is 1, 2, 3, ... without gaps, each entry starting where
/// the previous one ended, and ends at the account's balance. Returns the ids
/// of the `consume` entries.
fn assert_gap_free(ledger: &[Value], account: &Value) -> Vec<String> {
    let mut balance = 0i64;
    let mut consumed = Vec::new();
    for (i, e) in ledger.iter().enumerate() {
        assert_eq!(e["seq"].as_u64(), Some(i as u64 + 1), "gap at {i}: {e}");
        assert_eq!(e["balance_before"].as_i64(), Some(balance), "{e}");
        balance += e["amount"].as_i64().unwrap();
        assert_eq!(e["balance_after"].as_i64(), Some(balance), "{e}");
        if e["type"] == "consume" {
            consumed.push(e["id"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(account["available"].as_i64(), Some(balance), "{account}");
    consumed
}

#[tokio::test]
async fn usage_ingest_costs_what_the_issue_asks_counted_at_the_engine() {
    let clock = Clock::manual(at("2026-11-21T12:00:00Z"));
    let Some((env, proxy)) = TestEnv::with_faults(clock).await else {
        return;
    };
    let t = at("2026-11-21T11:00:00Z");
    // Warm-up: creates the quota item (a rollover from nothing).
    ingest_ok(&env, &[body("warm", "una", "openai", "1", t)]).await;

    // Steady state: one event, one request.
    let (report, seen, sent) = counted(
        &env,
        &proxy,
        ingest_ok(&env, &[body("one", "una", "openai", "0.5", t)]),
    )
    .await;
    assert_eq!((seen, sent), (1, 1), "{report:?}");
    assert_eq!(report.applied, 1);

    // Ten events of one user in one batch: one request (0.1 per event).
    let ten: Vec<String> = (0..10)
        .map(|i| body(&format!("ten-{i}"), "una", "openai", "0.25", t))
        .collect();
    let (report, seen, sent) = counted(&env, &proxy, ingest_ok(&env, &ten)).await;
    assert!(seen as f64 / 10.0 <= 0.1, "{seen} requests: {report:?}");
    assert_eq!((seen, sent), (1, 1));
    assert_eq!(report.applied, 10);

    // Ten events of one user WITH credits in one batch: one account read and
    // one write (0.2 per event; the target is 0.3).
    grant(&env, "una", 1000).await;
    let credits: Vec<String> = (0..10)
        .map(|i| body_with_credits(&format!("cr-{i}"), "una", "openai", "0.1", i + 1, t))
        .collect();
    let (report, seen, sent) = counted(&env, &proxy, ingest_ok(&env, &credits)).await;
    assert!(seen as f64 / 10.0 <= 0.3, "{seen} requests: {report:?}");
    assert_eq!((seen, sent), (2, 2), "{report:?}");
    let ops: Vec<String> = proxy.log()[proxy.log().len() - 2..]
        .iter()
        .map(|s| s.operation.clone())
        .collect();
    assert_eq!(ops, ["GetItem", "TransactWriteItems"]);
    assert_eq!(report.applied, 10);
    let account = credit_account(&env, "una").await;
    assert_eq!(account["available"], 1000 - 55);
    assert_eq!(account["used"], 55);
    let ledger = env.full_ledger("una").await;
    let consumed = assert_gap_free(&ledger, &account);
    let expected: Vec<String> = (0..10).map(|i| format!("cr-{i}")).collect();
    assert_eq!(consumed, expected, "one entry per event, in batch order");
    assert_eq!(
        usage(&env, "una", "openai").await,
        [usd("1") + usd("0.5") + usd("2.5") + usd("1"); 3]
    );

    // A Lambda batch of 120 events with credits: split at the 100-action
    // limit (49 per write), one read, three writes, and still one chain.
    let many: Vec<String> = (0..120)
        .map(|i| body_with_credits(&format!("many-{i}"), "una", "openai", "0.01", 1, t))
        .collect();
    let (report, seen, sent) = counted(&env, &proxy, ingest_ok(&env, &many)).await;
    assert_eq!((seen, sent), (4, 4), "{report:?}");
    let account = credit_account(&env, "una").await;
    assert_eq!(account["available"], 1000 - 55 - 120);
    let ledger = env.full_ledger("una").await;
    assert_eq!(assert_gap_free(&ledger, &account).len(), 130);
}

/// One concurrent round: every batch ingested, `tasks` at a time. Returns
/// the batches with a failed message (to deliver again) and the reports.
async fn deliver_concurrently(
    env: &Arc<TestEnv>,
    batches: &[Vec<String>],
    tasks: usize,
) -> (Vec<Vec<String>>, Vec<usage_ingest::BatchReport>) {
    let queue = Arc::new(std::sync::Mutex::new(batches.to_vec()));
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (env, queue) = (env.clone(), queue.clone());
        handles.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let next = queue.lock().unwrap().pop();
                let Some(batch) = next else { break };
                let (failed, report) = ingest(&env, deliveries(&batch)).await;
                out.push((batch, failed.is_empty(), report));
            }
            out
        }));
    }
    let (mut again, mut reports) = (Vec::new(), Vec::new());
    for h in handles {
        for (batch, ok, report) in h.await.unwrap() {
            if !ok {
                again.push(batch);
            }
            reports.push(report);
        }
    }
    (again, reports)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_credit_batches_of_one_user_keep_an_exact_gap_free_ledger() {
    let env = Arc::new(env_at("2026-11-21T12:00:00Z", "UTC").await);
    grant(&env, "vic", 5_000).await;
    let t = at("2026-11-21T11:00:00Z");
    // 400 events with credits (some on a second platform, some without
    // credits, some twice in their batch), batches of 10, 8 at a time.
    let mut expected_spent = 0i64;
    let mut expected_usage: HashMap<&str, Usd> = HashMap::new();
    let mut with_credits = BTreeSet::new();
    let mut bodies = Vec::new();
    for i in 0..400i64 {
        let platform = if i % 5 == 0 { "gemini" } else { "openai" };
        let id = format!("vic-{i}");
        let cost = Usd::from_atoms(i128::from(i + 1) * 1_000_000);
        *expected_usage.entry(platform).or_insert(Usd::ZERO) =
            expected_usage.get(platform).copied().unwrap_or(Usd::ZERO) + cost;
        if i % 7 == 3 {
            bodies.push(body(&id, "vic", platform, &cost.to_string(), t));
        } else {
            let credits = i % 13 + 1;
            expected_spent += credits;
            with_credits.insert(id.clone());
            bodies.push(body_with_credits(
                &id,
                "vic",
                platform,
                &cost.to_string(),
                credits,
                t,
            ));
        }
    }
    let mut batches: Vec<Vec<String>> = bodies.chunks(10).map(<[String]>::to_vec).collect();
    for (k, batch) in batches.iter_mut().enumerate().step_by(4) {
        // A duplicate within the batch: applied once.
        let twin = batch[k % batch.len()].clone();
        batch.push(twin);
    }

    let mut pending = batches.clone();
    let mut rounds = 0;
    while !pending.is_empty() {
        rounds += 1;
        assert!(rounds <= 20, "{} batches still failing", pending.len());
        pending = deliver_concurrently(&env, &pending, 8).await.0;
    }

    let check = || async {
        let account = credit_account(&env, "vic").await;
        assert_eq!(account["available"], 5_000 - expected_spent, "{account}");
        assert_eq!(account["used"], expected_spent, "{account}");
        let ledger = env.full_ledger("vic").await;
        let consumed = assert_gap_free(&ledger, &account);
        assert_eq!(ledger.len(), 1 + with_credits.len());
        let once: BTreeSet<String> = consumed.iter().cloned().collect();
        assert_eq!(once.len(), consumed.len(), "an event consumed twice");
        assert_eq!(once, with_credits, "each event with credits consumed once");
        for platform in ["openai", "gemini"] {
            assert_eq!(
                usage(&env, "vic", platform).await,
                [expected_usage[platform]; 3],
                "{platform}"
            );
        }
    };
    eprintln!(
        "{rounds} rounds, {} requests for {} batches",
        env.store.stats().requests(),
        batches.len()
    );
    check().await;

    // Everything delivered again, concurrently: nothing changes, every
    // delivery is acknowledged as a duplicate.
    let (failed, reports) = deliver_concurrently(&env, &batches, 8).await;
    assert!(
        failed.is_empty(),
        "{} redelivered batches failed",
        failed.len()
    );
    let applied: usize = reports.iter().map(|r| r.applied).sum();
    let duplicates: usize = reports.iter().map(|r| r.duplicates).sum();
    let messages: usize = batches.iter().map(Vec::len).sum();
    assert_eq!((applied, duplicates), (0, messages));
    check().await;
}

/// Usage is real spend: a batch of one user's events with credits takes the
/// balance below zero in one write, each entry where the previous ended. A
/// debit no 64-bit balance can hold fails alone (reported, nothing written
/// for it); the rest of its batch applies.
#[tokio::test]
async fn a_coalesced_batch_may_go_below_zero_and_an_impossible_debit_fails_alone() {
    let env = env_at("2026-11-21T12:00:00Z", "UTC").await;
    grant(&env, "wes", 15).await;
    let t = at("2026-11-21T11:00:00Z");
    let mut bodies: Vec<String> = (0..10)
        .map(|i| body_with_credits(&format!("w-{i}"), "wes", "openai", "0.1", 3, t))
        .collect();
    // After the ten the balance is -15: a debit of i64::MAX would leave 64 bits.
    bodies.push(body_with_credits(
        "w-huge",
        "wes",
        "openai",
        "0.1",
        i64::MAX,
        t,
    ));
    let messages: Vec<(String, String)> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| (format!("m-{i}"), b.clone()))
        .collect();
    let (failed, report) = ingest(&env, sqs_records(messages.clone())).await;
    assert_eq!(failed, ["m-10"], "{report:?}");
    assert_eq!(report.applied, 10);
    let account = credit_account(&env, "wes").await;
    assert_eq!(account["available"], 15 - 30);
    assert_eq!(account["used"], 30);
    let ledger = env.full_ledger("wes").await;
    assert_eq!(assert_gap_free(&ledger, &account).len(), 10);
    assert_eq!(ledger.last().unwrap()["balance_after"], -15);
    // Nothing was written for the refused event: its record is absent, so a
    // redelivery is judged afresh (and fails the same way).
    let (failed, _) = ingest(&env, sqs_records(messages[10..].to_vec())).await;
    assert_eq!(failed, ["m-10"]);
    assert_eq!(usage(&env, "wes", "openai").await, [usd("1"); 3]);
}
