//! Credits: accounts, the ledger chain, admin adjustment (check / dry_run /
//! apply, force), Idempotency-Key semantics, the audit log and concurrency.

use serde_json::{json, Value};
use spendguard_core::domain::audit::{Actor, ADMIN_ADJUST_CREDITS};
use spendguard_core::domain::credits::{AdjustBy, AdjustMode, AdjustRequest, Change};
use spendguard_core::domain::UserId;
use spendguard_core::store::credits::{AdjustResult, CREDIT_BACKOFF};
use spendguard_core::store::{Claim, CreditStore, CreditTxn, Fingerprint};
use spendguard_core::Clock;
use spendguard_tests::{sample_event, TestEnv, TestResponse};
use std::sync::Arc;

mod adjust;
mod idempotency;
mod lists;
mod refusals;

const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

fn adjust_path(user: &str) -> String {
    format!("/v1/admin/users/{user}/credits/adjust")
}

pub(crate) async fn adjust(env: &TestEnv, user: &str, body: Value) -> TestResponse {
    env.post(&adjust_path(user))
        .as_admin()
        .json(&body)
        .send()
        .await
}

pub(crate) async fn adjust_with_key(
    env: &TestEnv,
    user: &str,
    key: &str,
    body: &Value,
) -> TestResponse {
    env.post(&adjust_path(user))
        .as_admin()
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
}

/// A test world whose clock only moves when the test moves it.
async fn manual_env() -> TestEnv {
    let at = chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 2, 3, 4, 5, 6).unwrap();
    TestEnv::build(|_| {}, Clock::manual(at)).await
}

pub(crate) async fn account(env: &TestEnv, user: &str) -> Value {
    let res = env
        .get(&format!("/v1/admin/users/{user}/credits"))
        .as_admin()
        .send()
        .await;
    res.assert_status(200);
    res.body
}

/// seq 1..N without gaps, each entry's balance_before the previous balance_after,
/// the first starting at 0, and the account equal to the ledger's sum.
pub(crate) fn assert_chain(entries: &[Value], account: &Value) {
    let mut balance = 0i64;
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e["seq"].as_u64(), Some(i as u64 + 1), "gap at {i}: {e}");
        assert_eq!(
            e["balance_before"].as_i64(),
            Some(balance),
            "chain broken at {e}"
        );
        let amount = e["amount"].as_i64().unwrap();
        balance += amount;
        assert_eq!(e["balance_after"].as_i64(), Some(balance), "{e}");
    }
    assert_eq!(account["available"].as_i64(), Some(balance));
    let sum: i64 = entries.iter().map(|e| e["amount"].as_i64().unwrap()).sum();
    assert_eq!(sum, balance);
    assert_eq!(account["seq"].as_u64(), Some(entries.len() as u64));
}
