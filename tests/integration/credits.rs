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

#[tokio::test]
async fn my_account_reads_zeros_without_an_account() {
    let env = TestEnv::new().await;
    let res = env.get("/v1/me/credits").as_user("alice").send().await;
    res.assert_status(200);
    assert_eq!(res.body["user_id"], "alice");
    assert_eq!(res.body["available"], 0);
    assert_eq!(res.body["total"], 0);
    assert_eq!(res.body["used"], 0);
    assert_eq!(res.body["updated_at"], Value::Null);
    let res = env
        .get("/v1/me/credits/transactions")
        .as_user("alice")
        .send()
        .await;
    res.assert_status(200);
    assert_eq!(res.body, json!({"items": [], "next_cursor": null}));
}

#[tokio::test]
async fn apply_target_and_delta_write_ledger_and_audit() {
    let env = TestEnv::new().await;
    let res = adjust(&env, "alice", json!({"target": 5000, "reason": "welcome"})).await;
    res.assert_status(200);
    assert_eq!(res.body["mode"], "apply");
    assert_eq!(res.body["previous"], 0);
    assert_eq!(res.body["current"], 5000);
    assert_eq!(res.body["adjustment"], 5000);
    let grant_id = res.body["transaction_id"].as_str().unwrap().to_string();
    assert!(res.headers.get(IDEMPOTENT_REPLAYED).is_none());

    let res = adjust(
        &env,
        "alice",
        json!({"delta": -1200, "reason": "refund clawback"}),
    )
    .await;
    res.assert_status(200);
    assert_eq!(
        (
            res.body["previous"].as_i64(),
            res.body["current"].as_i64(),
            res.body["adjustment"].as_i64()
        ),
        (Some(5000), Some(3800), Some(-1200))
    );

    let res = adjust(
        &env,
        "alice",
        json!({"target": 10000, "reason": "top up", "mode": "apply"}),
    )
    .await;
    assert_eq!(res.body["adjustment"], 6200);

    // A grant raises available and total; a deduction lowers available only.
    let me = env.get("/v1/me/credits").as_user("alice").send().await;
    me.assert_status(200);
    assert_eq!(me.body["available"], 10000);
    assert_eq!(me.body["total"], 11200);
    assert_eq!(me.body["used"], 0);
    assert!(me.body["updated_at"].as_str().unwrap().ends_with('Z'));

    let mine = env
        .get("/v1/me/credits/transactions")
        .as_user("alice")
        .send()
        .await;
    let items = mine.body["items"].as_array().unwrap();
    let types: Vec<&str> = items.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["grant", "deduct", "grant"], "newest first");
    assert_eq!(items[2]["id"], grant_id.as_str());
    assert_eq!(items[1]["description"], "refund clawback");
    assert_eq!(items[1]["category"], "admin_adjust");
    for key in [
        "id",
        "seq",
        "type",
        "amount",
        "balance_before",
        "balance_after",
        "category",
        "description",
        "created_at",
    ] {
        assert!(items[0].get(key).is_some(), "ledger entry lacks {key}");
    }
    assert_chain(
        &env.full_ledger("alice").await,
        &account(&env, "alice").await,
    );

    // Another user sees only their own (empty) ledger.
    let bob = env
        .get("/v1/me/credits/transactions")
        .as_user("bob")
        .send()
        .await;
    assert_eq!(bob.body["items"], json!([]));

    let audit = env
        .get(&format!(
            "/v1/admin/audit?user_id=alice&action={ADMIN_ADJUST_CREDITS}"
        ))
        .as_admin()
        .header("user-agent", "ops-console/1.0")
        .send()
        .await;
    audit.assert_status(200);
    let entries = audit.body["items"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    let newest = &entries[0];
    assert_eq!(newest["action"], ADMIN_ADJUST_CREDITS);
    assert_eq!(newest["actor"], "admin-1");
    assert_eq!(newest["target_user"], "alice");
    assert_eq!(newest["success"], true);
    assert_eq!(newest["source_ip"], "203.0.113.9");
    assert_eq!(newest["details"]["reason"], "top up");
    assert_eq!(newest["details"]["previous"], 3800);
    assert_eq!(newest["details"]["current"], 10000);
    assert_eq!(newest["details"]["force"], false);
    for key in [
        "id",
        "actor",
        "action",
        "target_user",
        "source_ip",
        "user_agent",
        "success",
        "details",
        "created_at",
    ] {
        assert!(newest.get(key).is_some(), "audit entry lacks {key}");
    }
}

#[tokio::test]
async fn audit_records_the_user_agent_and_filters_by_user_and_action() {
    let env = TestEnv::new().await;
    env.post(&adjust_path("alice"))
        .as_admin()
        .header("user-agent", "ops-console/1.0")
        .json(&json!({"delta": 5, "reason": "r"}))
        .send()
        .await
        .assert_status(200);
    adjust(&env, "bob", json!({"delta": 7, "reason": "r"}))
        .await
        .assert_status(200);
    let all = env.get("/v1/admin/audit").as_admin().send().await;
    assert_eq!(all.body["items"].as_array().unwrap().len(), 2);
    let alice = env
        .get("/v1/admin/audit?user_id=alice")
        .as_admin()
        .send()
        .await;
    let items = alice.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["user_agent"], "ops-console/1.0");
    let other = env
        .get("/v1/admin/audit?action=ADMIN_RESET_QUOTA_WINDOW")
        .as_admin()
        .send()
        .await;
    assert_eq!(other.body["items"], json!([]));
    env.get("/v1/admin/audit?user_id=a%20b")
        .as_admin()
        .send()
        .await
        .assert_error(400, "invalid_id");
    env.get("/v1/admin/audit")
        .as_user("alice")
        .send()
        .await
        .assert_error(403, "forbidden");
}

#[tokio::test]
async fn adjustment_of_zero_writes_no_ledger_entry() {
    let env = TestEnv::new().await;
    adjust(&env, "alice", json!({"target": 300, "reason": "r"}))
        .await
        .assert_status(200);
    let res = adjust(&env, "alice", json!({"target": 300, "reason": "again"})).await;
    res.assert_status(200);
    assert_eq!(res.body["adjustment"], 0);
    assert_eq!(res.body["transaction_id"], Value::Null);
    let res = adjust(&env, "alice", json!({"delta": 0, "reason": "nothing"})).await;
    res.assert_status(200);
    assert_eq!(env.full_ledger("alice").await.len(), 1);
    assert_eq!(account(&env, "alice").await["seq"], 1);
}

#[tokio::test]
async fn deduction_below_zero_needs_force() {
    let env = TestEnv::new().await;
    adjust(&env, "alice", json!({"target": 100, "reason": "r"}))
        .await
        .assert_status(200);
    let before = env.table_snapshot().await;
    adjust(&env, "alice", json!({"delta": -150, "reason": "too much"}))
        .await
        .assert_error(409, "insufficient_credits");
    // Dry run predicts the same refusal.
    adjust(
        &env,
        "alice",
        json!({"delta": -150, "reason": "too much", "mode": "dry_run"}),
    )
    .await
    .assert_error(409, "insufficient_credits");
    // The refusal changes no balance and no ledger: only a failed audit entry is added.
    let after = env.table_snapshot().await;
    let added: Vec<_> = after
        .iter()
        .filter(|(key, item)| before.get(*key) != Some(item))
        .collect();
    assert_eq!(added.len(), 1, "{added:?}");
    let ((pk, _), item) = added[0];
    assert_eq!(pk, "AUDIT");
    assert!(item.contains(r#""success": Bool(false)"#), "{item}");
    assert!(before
        .iter()
        .all(|(key, item)| after.get(key) == Some(item)));

    let res = adjust(
        &env,
        "alice",
        json!({"delta": -150, "reason": "forced", "force": true}),
    )
    .await;
    res.assert_status(200);
    assert_eq!(res.body["current"], -50);
    assert_eq!(account(&env, "alice").await["available"], -50);
    let audit = env
        .get("/v1/admin/audit?user_id=alice")
        .as_admin()
        .send()
        .await;
    let items = audit.body["items"].as_array().unwrap();
    assert_eq!(items[0]["details"]["force"], true);
    assert_eq!(items[0]["details"]["negative_balance"], true);
    assert_eq!(items[0]["success"], true);
    assert_eq!(items[1]["success"], false);
    assert_eq!(items[1]["details"]["error"], "insufficient_credits");
    // From a negative balance, a target always works (it is a grant).
    let res = adjust(&env, "alice", json!({"target": 0, "reason": "reset"})).await;
    assert_eq!(res.body["adjustment"], 50);
}

/// Only a deduction below zero needs force: once a user is in debt, a grant
/// (delta or target) and a redemption grant apply without it.
#[tokio::test]
async fn a_grant_onto_a_negative_balance_applies_without_force() {
    let env = TestEnv::new().await;
    for user in ["alice", "bob"] {
        adjust(
            &env,
            user,
            json!({"delta": -1000, "reason": "debt", "force": true}),
        )
        .await
        .assert_status(200);
    }
    let res = adjust(&env, "alice", json!({"delta": 10, "reason": "top up"})).await;
    res.assert_status(200);
    assert_eq!(res.body["previous"], -1000);
    assert_eq!(res.body["current"], -990);
    // A further deduction still needs force, however small.
    adjust(&env, "alice", json!({"delta": -1, "reason": "more"}))
        .await
        .assert_error(409, "insufficient_credits");
    let res = adjust(&env, "alice", json!({"target": 5, "reason": "reset"})).await;
    res.assert_status(200);
    assert_eq!(res.body["adjustment"], 995);
    let entries = env.full_ledger("alice").await;
    assert_eq!(entries.len(), 3);
    assert_chain(&entries, &account(&env, "alice").await);

    let batch = env
        .post("/v1/admin/redemption-codes")
        .as_admin()
        .json(&json!({"count": 1, "credits": 100, "max_uses": 1}))
        .send()
        .await;
    batch.assert_status(201);
    let code = batch.body["codes"][0].as_str().unwrap();
    let res = env
        .post("/v1/me/redemptions")
        .as_user("bob")
        .json(&json!({ "code": code }))
        .send()
        .await;
    res.assert_status(201);
    assert_eq!(res.body["credits_granted"], 100);
    assert_eq!(res.body["balance_after"], -900);
    assert_eq!(env.available("bob").await, -900);
}

#[tokio::test]
async fn dry_run_and_check_leave_the_table_unchanged() {
    let env = TestEnv::new().await;
    adjust(&env, "alice", json!({"target": 700, "reason": "r"}))
        .await
        .assert_status(200);
    let before = env.table_snapshot().await;
    assert!(!before.is_empty());
    let res = env
        .post(&adjust_path("alice"))
        .as_admin()
        .header("idempotency-key", "dry-1")
        .json(&json!({"target": 1000, "reason": "plan", "mode": "dry_run"}))
        .send()
        .await;
    res.assert_status(200);
    assert_eq!(
        res.body,
        json!({"mode": "dry_run", "user_id": "alice", "previous": 700, "target": 1000, "adjustment": 300, "force": false})
    );
    let res = adjust(
        &env,
        "alice",
        json!({"delta": -100, "reason": "plan", "mode": "dry_run"}),
    )
    .await;
    assert_eq!(
        (res.body["target"].as_i64(), res.body["adjustment"].as_i64()),
        (Some(600), Some(-100))
    );
    let res = env
        .post(&adjust_path("alice"))
        .as_admin()
        .header("idempotency-key", "check-1")
        .json(&json!({"mode": "check", "reason": "look"}))
        .send()
        .await;
    res.assert_status(200);
    assert_eq!(res.body["mode"], "check");
    assert_eq!(res.body["account"]["available"], 700);
    assert_eq!(res.body["account"]["user_id"], "alice");
    let res = adjust(&env, "nobody", json!({"mode": "check"})).await;
    assert_eq!(res.body["account"]["available"], 0);
    assert_eq!(
        env.table_snapshot().await,
        before,
        "check / dry_run wrote something"
    );
}

#[tokio::test]
async fn bad_input_is_400_and_writes_nothing() {
    let env = TestEnv::new().await;
    adjust(
        &env,
        "alice",
        json!({"target": i64::MAX - 5, "reason": "big"}),
    )
    .await
    .assert_status(200);
    let before = env.table_snapshot().await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"reason": "r"}), "invalid_request"),
        (
            json!({"target": 1, "delta": 1, "reason": "r"}),
            "invalid_request",
        ),
        (json!({"target": 1.5, "reason": "r"}), "invalid_amount"),
        (json!({"target": "12", "reason": "r"}), "invalid_amount"),
        (json!({"target": -1, "reason": "r"}), "invalid_amount"),
        (json!({"delta": "x", "reason": "r"}), "invalid_amount"),
        (json!({"target": 1}), "invalid_request"),
        (json!({"target": 1, "reason": ""}), "invalid_request"),
        (
            json!({"target": 1, "reason": "x".repeat(501)}),
            "invalid_request",
        ),
        (
            json!({"target": 1, "reason": "r", "mode": "later"}),
            "invalid_request",
        ),
        (
            json!({"target": 1, "reason": "r", "force": "yes"}),
            "invalid_request",
        ),
        // Does not fit in 64 bits.
        (
            json!({"delta": 9_223_372_036_854_775_808u64, "reason": "r"}),
            "invalid_amount",
        ),
        (json!([]), "invalid_request"),
    ];
    for (body, code) in cases {
        let res = adjust_with_key(&env, "alice", "bad-input-key", &body).await;
        assert_eq!(res.status, 400, "{body}: {}", res.text);
        assert_eq!(res.error_code(), Some(code), "{body}: {}", res.text);
    }
    // Fits, but the balance would overflow: refused by the state, as a
    // deduction below zero is.
    for body in [
        json!({"delta": 10, "reason": "r"}),
        json!({"delta": 10, "reason": "r", "mode": "dry_run"}),
    ] {
        adjust_with_key(&env, "alice", "bad-input-key", &body)
            .await
            .assert_error(409, "balance_overflow");
    }
    for raw in ["", "{", "not json"] {
        let res = env
            .post(&adjust_path("alice"))
            .as_admin()
            .raw_body(raw)
            .send()
            .await;
        res.assert_error(400, "invalid_request");
    }
    adjust(&env, "a%20b", json!({"target": 1, "reason": "r"}))
        .await
        .assert_error(400, "invalid_id");
    env.get("/v1/admin/users/a%23b/credits")
        .as_admin()
        .send()
        .await
        .assert_error(400, "invalid_id");
    env.get("/v1/admin/users/alice/credits/transactions?limit=0")
        .as_admin()
        .send()
        .await
        .assert_error(400, "invalid_request");
    env.get("/v1/admin/users/alice/credits/transactions?cursor=zzz")
        .as_admin()
        .send()
        .await
        .assert_error(400, "invalid_request");
    let long_key = "k".repeat(256);
    adjust_with_key(
        &env,
        "alice",
        &long_key,
        &json!({"delta": 1, "reason": "r"}),
    )
    .await
    .assert_error(400, "invalid_idempotency_key");
    assert_eq!(
        env.table_snapshot().await,
        before,
        "bad input wrote something"
    );
    // The key used by the bad requests is still free for a good one.
    adjust_with_key(
        &env,
        "alice",
        "bad-input-key",
        &json!({"delta": -1, "reason": "r"}),
    )
    .await
    .assert_status(200);
}

#[tokio::test]
async fn roles_are_enforced() {
    let env = TestEnv::new().await;
    for path in [
        "/v1/admin/users/alice/credits",
        "/v1/admin/users/alice/credits/transactions",
        "/v1/admin/audit",
    ] {
        env.get(path)
            .as_user("alice")
            .send()
            .await
            .assert_error(403, "forbidden");
    }
    env.post(&adjust_path("alice"))
        .as_user("alice")
        .json(&json!({"delta": 5, "reason": "self service"}))
        .send()
        .await
        .assert_error(403, "forbidden");
    env.get("/v1/me/credits")
        .as_service()
        .send()
        .await
        .assert_status(200);
    env.get("/v1/me/credits")
        .send()
        .await
        .assert_error(401, "unauthorized");
}

#[tokio::test]
async fn ledger_pages_newest_first_with_cursor() {
    let env = TestEnv::new().await;
    for i in 1..=5 {
        adjust(
            &env,
            "alice",
            json!({"delta": i, "reason": format!("r{i}")}),
        )
        .await
        .assert_status(200);
    }
    let first = env
        .get("/v1/me/credits/transactions?limit=2")
        .as_user("alice")
        .send()
        .await;
    let seqs = |r: &TestResponse| -> Vec<u64> {
        r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(seqs(&first), [5, 4]);
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let second = env
        .get(&format!(
            "/v1/me/credits/transactions?limit=2&cursor={cursor}"
        ))
        .as_user("alice")
        .send()
        .await;
    assert_eq!(seqs(&second), [3, 2]);
    let cursor = second.body["next_cursor"].as_str().unwrap();
    let third = env
        .get(&format!(
            "/v1/me/credits/transactions?limit=2&cursor={cursor}"
        ))
        .as_user("alice")
        .send()
        .await;
    assert_eq!(seqs(&third), [1]);
    assert_eq!(third.body["next_cursor"], Value::Null);
    // A cursor of alice's list is no key into bob's.
    env.get(&format!(
        "/v1/me/credits/transactions?limit=2&cursor={cursor}"
    ))
    .as_user("bob")
    .send()
    .await
    .assert_error(400, "invalid_request");
}

#[tokio::test]
async fn idempotency_key_replays_and_refuses_a_different_body() {
    let env = TestEnv::new().await;
    let body = json!({"delta": 250, "reason": "promo"});
    let first = adjust_with_key(&env, "alice", "key-1", &body).await;
    first.assert_status(200);
    assert!(first.headers.get(IDEMPOTENT_REPLAYED).is_none());
    // The same body with other key order and spacing is the same request.
    let same = env
        .post(&adjust_path("alice"))
        .as_admin()
        .header("idempotency-key", "key-1")
        .raw_body(r#"{ "reason": "promo",  "delta": 250 }"#)
        .send()
        .await;
    same.assert_status(200);
    assert_eq!(same.headers[IDEMPOTENT_REPLAYED], "true");
    assert_eq!(same.body, first.body);
    adjust_with_key(
        &env,
        "alice",
        "key-1",
        &json!({"delta": 251, "reason": "promo"}),
    )
    .await
    .assert_error(422, "idempotency_key_mismatch");
    // Same body, other user: a different request.
    adjust_with_key(&env, "bob", "key-1", &body)
        .await
        .assert_error(422, "idempotency_key_mismatch");
    // Another key is another adjustment.
    adjust_with_key(&env, "alice", "key-2", &body)
        .await
        .assert_status(200);
    assert_eq!(account(&env, "alice").await["available"], 500);
    assert_eq!(env.full_ledger("alice").await.len(), 2);
    // Keys are per admin: another admin's "key-1" is a fresh key.
    let other_admin = env
        .post(&adjust_path("alice"))
        .as_role("admin-2", spendguard_tests::Role::Admin)
        .header("idempotency-key", "key-1")
        .json(&json!({"delta": 1, "reason": "other admin"}))
        .send()
        .await;
    other_admin.assert_status(200);
    assert!(other_admin.headers.get(IDEMPOTENT_REPLAYED).is_none());
}

#[tokio::test]
async fn a_refused_request_releases_its_key() {
    let env = TestEnv::new().await;
    let body = json!({"delta": -10, "reason": "r"});
    adjust_with_key(&env, "alice", "k", &body)
        .await
        .assert_error(409, "insufficient_credits");
    adjust(&env, "alice", json!({"delta": 10, "reason": "r"}))
        .await
        .assert_status(200);
    let res = adjust_with_key(&env, "alice", "k", &body).await;
    res.assert_status(200);
    assert!(res.headers.get(IDEMPOTENT_REPLAYED).is_none());
    assert_eq!(account(&env, "alice").await["available"], 0);
}

/// The manual clock decides the 30 s lease: nothing here races the wall clock.
#[tokio::test]
async fn in_progress_key_is_409_until_its_expiry() {
    let env = manual_env().await;
    let body = json!({"delta": 40, "reason": "r"});
    let path = adjust_path("alice");
    let fingerprint = Fingerprint::of("POST", &path, body.to_string().as_bytes());
    let scope = "credits-adjust:admin-1";
    // A request that is still running holds the key.
    let claim = env
        .store
        .claim_idempotency(scope, "live", &fingerprint, env.clock.now())
        .await
        .unwrap();
    assert!(matches!(claim, Claim::Acquired(_)));
    adjust_with_key(&env, "alice", "live", &body)
        .await
        .assert_error(409, "idempotency_key_in_use");
    adjust_with_key(&env, "alice", "live", &json!({"delta": 41, "reason": "r"}))
        .await
        .assert_error(422, "idempotency_key_mismatch");

    // A request that crashed a minute ago no longer blocks its key ...
    let crashed_at = env.clock.now() - chrono::Duration::seconds(60);
    let Claim::Acquired(stale) = env
        .store
        .claim_idempotency(scope, "crashed", &fingerprint, crashed_at)
        .await
        .unwrap()
    else {
        panic!("fresh key")
    };
    let res = adjust_with_key(&env, "alice", "crashed", &body).await;
    res.assert_status(200);
    assert!(res.headers.get(IDEMPOTENT_REPLAYED).is_none());
    // ... and if it wakes up, it cannot apply a second time: it gets the replay.
    let request =
        AdjustRequest::new(Some(AdjustBy::Delta(40)), "r", AdjustMode::Apply, false).unwrap();
    let actor = Actor {
        id: "admin-1".into(),
        ..Actor::default()
    };
    let alice = UserId::parse("alice").unwrap();
    let late = env
        .store
        .apply_adjustment(&alice, &request, &actor, &env.clock, Some(&stale))
        .await
        .unwrap();
    match late {
        AdjustResult::Replayed(stored) => {
            let replayed: Value = serde_json::from_str(&stored.body).unwrap();
            assert_eq!(replayed, res.body);
        }
        AdjustResult::Applied(outcome) => panic!("applied twice: {outcome:?}"),
    }
    assert_eq!(account(&env, "alice").await["available"], 40);
    assert_eq!(env.full_ledger("alice").await.len(), 1);
}

/// On the manual clock no request's 30 s lease can run out mid-test (a slow
/// machine would otherwise let a late request take the key over).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn same_idempotency_key_twenty_times_concurrently_applies_once() {
    let env = Arc::new(manual_env().await);
    let body = json!({"delta": 75, "reason": "concurrent retry"});
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let env = env.clone();
            let body = body.clone();
            tokio::spawn(async move { adjust_with_key(&env, "alice", "same-key", &body).await })
        })
        .collect();
    let mut applied = 0;
    let mut replayed = 0;
    let mut in_use = 0;
    let mut first_body = None;
    for task in tasks {
        let res = task.await.unwrap();
        match (res.status, res.headers.get(IDEMPOTENT_REPLAYED)) {
            (200, None) => {
                applied += 1;
                first_body = Some(res.body.clone());
            }
            (200, Some(_)) => replayed += 1,
            (409, _) => {
                assert_eq!(
                    res.error_code(),
                    Some("idempotency_key_in_use"),
                    "{}",
                    res.text
                );
                in_use += 1;
            }
            other => panic!("unexpected answer {other:?}: {}", res.text),
        }
    }
    assert_eq!(applied, 1, "replayed {replayed}, in use {in_use}");
    assert_eq!(replayed + in_use, 19);
    let ledger = env.full_ledger("alice").await;
    assert_eq!(ledger.len(), 1);
    assert_eq!(account(&env, "alice").await["available"], 75);
    // Afterwards, every retry is a replay of the one effect.
    let again = adjust_with_key(&env, "alice", "same-key", &body).await;
    assert_eq!(again.headers[IDEMPOTENT_REPLAYED], "true");
    assert_eq!(Some(again.body), first_body);
    env.assert_invariants().await;
}

/// 250 writers on one account. Under contention a writer may exhaust its
/// bounded retries and answer 409 `conflict` (busy, nothing written): how
/// many do depends on the machine's speed, not on the code, so the test
/// asserts what every answer says, not that none was busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_adjusts_and_usage_debits_keep_a_gap_free_chain() {
    let env = Arc::new(TestEnv::new().await);
    adjust(
        &env,
        "alice",
        json!({"target": 10_000, "reason": "opening balance"}),
    )
    .await
    .assert_status(200);
    let alice = UserId::parse("alice").unwrap();
    let mut adjusts = Vec::new();
    for i in 0..50i64 {
        let env = env.clone();
        adjusts.push(tokio::spawn(async move {
            // Deltas both ways, and some targets that must be recomputed on conflict.
            let body = match i % 5 {
                0 => json!({"target": 20_000 + i, "reason": format!("set {i}")}),
                1 | 2 => json!({"delta": 100 + i, "reason": format!("grant {i}")}),
                _ => json!({"delta": -(1 + i), "reason": format!("deduct {i}")}),
            };
            adjust(&env, "alice", body).await
        }));
    }
    let mut debits = Vec::new();
    for i in 0..200i64 {
        let env = env.clone();
        let alice = alice.clone();
        debits.push(tokio::spawn(async move {
            let credits = 1 + i % 7;
            env.store
                .commit_credits(&alice, &CREDIT_BACKOFF, |account| {
                    let change = Change::consume(credits, "usage", &format!("event {i}"))
                        .with_reference(format!("evt-{i}"));
                    Ok(CreditTxn {
                        applied: Some(account.apply(&change, chrono::Utc::now())?),
                        extra: Vec::new(),
                        output: credits,
                    })
                })
                .await
                .map(|credits| (i, credits))
        }));
    }
    let mut written = 1;
    let mut busy = 0;
    for task in adjusts {
        let res = task.await.unwrap();
        if res.status == 409 {
            res.assert_error(409, "conflict");
            busy += 1;
            continue;
        }
        res.assert_status(200);
        if !res.body["transaction_id"].is_null() {
            written += 1;
        }
    }
    let mut consumed = 0;
    let mut debited = std::collections::BTreeSet::new();
    for task in debits {
        match task.await.unwrap() {
            Ok((i, credits)) => {
                consumed += credits;
                debited.insert(format!("evt-{i}"));
                written += 1;
            }
            Err(e) => {
                assert_eq!(spendguard_core::Error::from(e).code(), "conflict");
                busy += 1;
            }
        }
    }
    assert!(busy < 250, "no writer got through");
    let ledger = env.full_ledger("alice").await;
    assert_eq!(ledger.len(), written, "{busy} busy");
    let acct = account(&env, "alice").await;
    assert_chain(&ledger, &acct);
    assert_eq!(acct["used"].as_i64(), Some(consumed));
    // Exactly the debits that answered success are in the ledger, once each.
    let consume_refs: Vec<&str> = ledger
        .iter()
        .filter(|e| e["type"] == "consume")
        .map(|e| e["reference"].as_str().unwrap())
        .collect();
    assert_eq!(consume_refs.len(), debited.len());
    assert!(consume_refs.iter().all(|r| debited.contains(*r)));
    let granted: i64 = ledger
        .iter()
        .filter(|e| e["type"] == "grant")
        .map(|e| e["amount"].as_i64().unwrap())
        .sum();
    assert_eq!(acct["total"].as_i64(), Some(granted));
    let direct = env.store.credit_account(&alice).await.unwrap();
    assert_eq!(direct.available, acct["available"].as_i64().unwrap());
    // The debits were written straight through the store, without usage
    // event records: every other invariant holds.
    let violations: Vec<_> = env
        .check_invariants()
        .await
        .into_iter()
        .filter(|v| v.kind != spendguard_tests::invariants::Kind::EventCredits)
        .collect();
    assert!(
        violations.is_empty(),
        "{}",
        spendguard_tests::invariants::report(&violations)
    );
}

#[tokio::test]
async fn sample_events_invoke_the_credits_function() {
    let env = TestEnv::new().await;
    let res = env
        .invoke("credits", &sample_event("credits-adjust.json"))
        .await;
    res.assert_status(200);
    assert_eq!(res.body["statusCode"], 200, "{}", res.text);
    let adjusted: Value = serde_json::from_str(res.body["body"].as_str().unwrap()).unwrap();
    assert_eq!(adjusted["mode"], "apply");
    assert_eq!(adjusted["current"], 1000);
    // The same event again is the same Idempotency-Key: a replay.
    let again = env
        .invoke("credits", &sample_event("credits-adjust.json"))
        .await;
    assert_eq!(again.body["headers"]["idempotent-replayed"], "true");
    assert_eq!(again.body["body"], res.body["body"]);

    for (file, check) in [
        ("credits-get-my-credits.json", "available"),
        ("credits-get-my-transactions.json", "items"),
        ("credits-get-user-credits.json", "available"),
        ("credits-get-user-transactions.json", "items"),
        ("credits-list-audit.json", "items"),
    ] {
        let res = env.invoke("credits", &sample_event(file)).await;
        assert_eq!(res.body["statusCode"], 200, "{file}: {}", res.text);
        let body: Value = serde_json::from_str(res.body["body"].as_str().unwrap()).unwrap();
        assert!(body.get(check).is_some(), "{file}: {body}");
    }
    let mine = env
        .invoke("credits", &sample_event("credits-get-my-credits.json"))
        .await;
    let body: Value = serde_json::from_str(mine.body["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["user_id"], "alice");
    assert_eq!(body["available"], 1000);
    let dry = env
        .invoke("credits", &sample_event("credits-adjust-dry-run.json"))
        .await;
    let body: Value = serde_json::from_str(dry.body["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["mode"], "dry_run");
    assert_eq!(body["previous"], 1000);
}

/// Every page of an audit query at `limit`.
async fn audit_pages(env: &TestEnv, query: &str, limit: usize) -> Vec<Vec<Value>> {
    env.admin_pages(&format!("/v1/admin/audit?{query}&limit={limit}"))
        .await
}

#[tokio::test]
async fn audit_pages_are_full_and_the_last_says_next_cursor_null() {
    let env = TestEnv::new().await;
    // 3 adjustments of alice between 4 quota writes of bob, newest first:
    // the action filter must fill its pages across the entries it skips.
    for i in 0..4 {
        env.put("/v1/admin/users/bob/quotas")
            .as_admin()
            .json(&json!({"quotas": []}))
            .send()
            .await
            .assert_status(200);
        if i < 3 {
            adjust(&env, "alice", json!({"delta": 1, "reason": "r"}))
                .await
                .assert_status(200);
        }
    }
    for (query, total) in [
        ("", 7),
        ("action=ADMIN_ADJUST_CREDITS", 3),
        ("user_id=alice", 3),
        ("user_id=bob&action=ADMIN_REPLACE_USER_QUOTAS", 4),
    ] {
        let one_page = audit_pages(&env, query, total).await;
        assert_eq!(one_page.len(), 1, "{query} limit {total}: {one_page:?}");
        assert_eq!(one_page[0].len(), total, "{query}");
        for limit in [1, 2] {
            let pages = audit_pages(&env, query, limit).await;
            assert_eq!(pages.len(), total.div_ceil(limit), "{query} limit {limit}");
            let flat: Vec<&Value> = pages.iter().flatten().collect();
            assert_eq!(flat.len(), total, "{query} limit {limit}");
            for (page_no, page) in pages.iter().enumerate() {
                let expected = limit.min(total - page_no * limit);
                assert_eq!(page.len(), expected, "{query} limit {limit} page {page_no}");
            }
            let ids: std::collections::BTreeSet<&str> =
                flat.iter().map(|e| e["id"].as_str().unwrap()).collect();
            assert_eq!(ids.len(), total, "{query}: repeated entries");
        }
    }
}

#[tokio::test]
async fn forged_audit_cursors_are_400_never_5xx() {
    use spendguard_core::api::Cursor;
    let env = TestEnv::new().await;
    adjust(&env, "alice", json!({"delta": 1, "reason": "r"}))
        .await
        .assert_status(200);
    let forged: Vec<Vec<(&str, &str)>> = vec![
        vec![],
        vec![("x", "y")],
        vec![("pk", "AUDIT")],
        vec![("pk", "USER#alice"), ("sk", "x")],
        vec![("pk", "AUDIT"), ("sk", "")],
        vec![("pk", "AUDIT"), ("sk", "x"), ("extra", "1")],
        vec![
            ("gsi1pk", "AUDIT_USER#bob"),
            ("gsi1sk", "x"),
            ("pk", "AUDIT"),
            ("sk", "x"),
        ],
    ];
    for query in ["", "user_id=alice&", "action=ADMIN_ADJUST_CREDITS&"] {
        for keys in &forged {
            let cursor = Cursor(
                keys.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
            .encode();
            let res = env
                .get(&format!("/v1/admin/audit?{query}cursor={cursor}"))
                .as_admin()
                .send()
                .await;
            assert_eq!(
                (res.status, res.error_code()),
                (400, Some("invalid_request")),
                "{query} {keys:?}: {}",
                res.text
            );
        }
        env.get(&format!("/v1/admin/audit?{query}cursor=not-base64!"))
            .as_admin()
            .send()
            .await
            .assert_error(400, "invalid_request");
    }
}

#[tokio::test]
async fn an_applied_adjustment_answers_the_timestamps_later_reads_show() {
    // The system clock: no digit of the response may differ from the stored item.
    let env = TestEnv::new().await;
    let res = adjust(&env, "alice", json!({"delta": 5, "reason": "r"})).await;
    res.assert_status(200);
    let read = account(&env, "alice").await;
    assert_eq!(res.body["account"]["updated_at"], read["updated_at"]);
    let ledger = env.full_ledger("alice").await;
    assert_eq!(ledger[0]["created_at"], read["updated_at"]);
}
