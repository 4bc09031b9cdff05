//! What an adjustment costs: DynamoDB requests per operation (counted by the
//! store's interceptor, the SDK's own retries counted apart as attempts), and
//! a hot account absorbing a burst without surfacing `conflict`.

use super::credits::{account, adjust, adjust_with_key, assert_chain};
use serde_json::json;
use spendguard_tests::TestEnv;
use std::sync::Arc;

/// Requests and attempts `op` sent through the store.
pub(crate) async fn cost<F: std::future::Future>(env: &TestEnv, op: F) -> (u64, u64, F::Output) {
    let stats = env.store.stats();
    let (requests, attempts) = (stats.requests(), stats.attempts());
    let out = op.await;
    (
        stats.requests() - requests,
        stats.attempts() - attempts,
        out,
    )
}

#[tokio::test]
async fn an_adjust_with_a_key_costs_two_requests() {
    let env = TestEnv::new().await;
    let body = json!({"delta": 50, "reason": "grant"});
    // A new account, then an existing one: one read (account and key
    // together) and one transaction each.
    for (key, current) in [("k-1", 50), ("k-2", 100)] {
        let (requests, attempts, res) =
            cost(&env, adjust_with_key(&env, "alice", key, &body)).await;
        res.assert_status(200);
        assert_eq!(res.body["current"], current);
        assert!(requests <= 2, "{key}: {requests} requests");
        assert_eq!(requests, attempts, "no SDK retries without faults");
    }
    // A replay is the read alone.
    let (requests, _, res) = cost(&env, adjust_with_key(&env, "alice", "k-1", &body)).await;
    res.assert_status(200);
    assert_eq!(res.headers["idempotent-replayed"], "true");
    assert_eq!(requests, 1);
    // A refused deduction: the read, then its failed-audit entry; the key is not taken.
    let deduct = json!({"delta": -1000, "reason": "too much"});
    let (requests, _, res) = cost(&env, adjust_with_key(&env, "alice", "k-3", &deduct)).await;
    res.assert_error(409, "insufficient_credits");
    assert!(requests <= 2, "{requests} requests");
    // check and dry_run only read.
    for mode in ["check", "dry_run"] {
        let body = json!({"mode": mode, "delta": 5, "reason": "r"});
        let (requests, _, res) = cost(&env, adjust_with_key(&env, "alice", "k-4", &body)).await;
        res.assert_status(200);
        assert_eq!(requests, 1, "{mode}");
    }
    // Without a key: the account read and the transaction.
    let (requests, _, res) = cost(&env, adjust(&env, "alice", body)).await;
    res.assert_status(200);
    assert!(requests <= 2, "{requests} requests");
    assert_eq!(env.available("alice").await, 150);
}

/// 200 adjustments of one account at once, each with its own key: every one
/// applies (the store re-plans its lost races itself; no 409 `conflict`),
/// the balance is exact and the ledger gap-free.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_adjusts_of_one_account_all_apply() {
    let env = Arc::new(TestEnv::new().await);
    let tasks: Vec<_> = (0..200i64)
        .map(|i| {
            let env = env.clone();
            tokio::spawn(async move {
                let body = match i % 4 {
                    3 => json!({"delta": -1, "reason": format!("deduct {i}"), "force": true}),
                    _ => json!({"delta": 10 + i, "reason": format!("grant {i}")}),
                };
                let key = format!("burst-{i}");
                let res = adjust_with_key(&env, "alice", &key, &body).await;
                (i, res)
            })
        })
        .collect();
    let started = std::time::Instant::now();
    let mut expected = 0;
    let mut failed = Vec::new();
    for task in tasks {
        let (i, res) = task.await.unwrap();
        if res.status != 200 {
            failed.push((i, res.text));
            continue;
        }
        expected += if i % 4 == 3 { -1 } else { 10 + i };
    }
    eprintln!("burst took {:?}", started.elapsed());
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        failed.first()
    );
    let stats = env.store.stats();
    eprintln!(
        "200 concurrent adjusts of one account: {} re-plans in all, the worst adjust re-planned {} times",
        stats.replans(),
        stats.most_replans()
    );
    let ledger = env.full_ledger("alice").await;
    assert_eq!(ledger.len(), 200);
    let account = account(&env, "alice").await;
    assert_eq!(account["available"], expected);
    assert_chain(&ledger, &account);
}
