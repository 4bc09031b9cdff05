//! Redemption codes: batch creation (chunked, resumable, idempotent), admin
//! reads and enable/disable, the one-transaction redemption with its exact
//! refusals, the lease lock, the failed-attempt limit, Idempotency-Key replay,
//! concurrency, and calendar-correct subscription extension.

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{json, Value};
use spendguard_core::api::PageRequest;
use spendguard_core::domain::audit::{ADMIN_CREATE_REDEMPTION_CODES, ADMIN_UPDATE_REDEMPTION_CODE};
use spendguard_core::domain::redemption::CodeKey;
use spendguard_core::domain::UserId;
use spendguard_core::store::{CreditStore, RedeemOutcome, RedeemRequest};
use spendguard_core::Clock;
use spendguard_core::Error;
use spendguard_tests::{sample_event, TestEnv, TestResponse};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

const CODES: &str = "/v1/admin/redemption-codes";
const REDEEM: &str = "/v1/me/redemptions";
const REPLAYED: &str = "idempotent-replayed";

fn t(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
}

async fn manual_env(at: DateTime<Utc>) -> TestEnv {
    TestEnv::build(|_| {}, Clock::manual(at)).await
}

async fn create(env: &TestEnv, body: Value) -> Value {
    let res = env.post(CODES).as_admin().json(&body).send().await;
    res.assert_status(201);
    res.body.clone()
}

/// One code granting `credits` with `max_uses`; returns its printed form.
pub(crate) async fn one_code(env: &TestEnv, credits: i64, max_uses: i64) -> String {
    let batch = create(
        env,
        json!({"count": 1, "credits": credits, "max_uses": max_uses}),
    )
    .await;
    batch["codes"][0].as_str().unwrap().to_string()
}

pub(crate) async fn sub_code(env: &TestEnv, plan: &str, unit: &str, quantity: u32) -> String {
    let batch = create(
        env,
        json!({"count": 1, "max_uses": 10,
               "subscription": {"plan_id": plan, "unit": unit, "quantity": quantity}}),
    )
    .await;
    batch["codes"][0].as_str().unwrap().to_string()
}

async fn redeem(env: &TestEnv, user: &str, code: &str) -> TestResponse {
    env.post(REDEEM)
        .as_user(user)
        .json(&json!({ "code": code }))
        .send()
        .await
}

async fn get_code(env: &TestEnv, code: &str) -> Value {
    let res = env.get(&format!("{CODES}/{code}")).as_admin().send().await;
    res.assert_status(200);
    res.body.clone()
}

pub(crate) async fn used_count(env: &TestEnv, code: &str) -> i64 {
    get_code(env, code).await["used_count"].as_i64().unwrap()
}

async fn items(env: &TestEnv, user: &str, path: &str) -> Vec<Value> {
    let res = env.get(path).as_user(user).send().await;
    res.assert_status(200);
    res.body["items"].as_array().unwrap().clone()
}

/// The keys that differ between two scans.
fn changed_keys(
    before: &BTreeMap<(String, String), String>,
    after: &BTreeMap<(String, String), String>,
) -> Vec<(String, String)> {
    let keys: BTreeSet<_> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .cloned()
        .collect()
}

/// Asserts a refusal wrote nothing but the user's failed-attempt counter.
#[track_caller]
fn assert_only_failure_counter_changed(
    before: &BTreeMap<(String, String), String>,
    after: &BTreeMap<(String, String), String>,
    user: &str,
) {
    let changed = changed_keys(before, after);
    assert_eq!(changed.len(), 1, "changed: {changed:?}");
    assert_eq!(changed[0].0, format!("USER#{user}"));
    assert!(changed[0].1.starts_with("REDEEM_FAIL#"), "{changed:?}");
}

// ---------------------------------------------------------------------------
// Admin
// ---------------------------------------------------------------------------

#[tokio::test]
async fn admin_creates_a_batch_and_reads_every_code() {
    let env = TestEnv::new().await;
    let batch = create(
        &env,
        json!({"count": 5, "prefix": "vip", "credits": 250, "max_uses": 3,
               "expires_at": "2099-01-01T00:00:00Z", "batch_name": "launch",
               "subscription": {"plan_id": "pro", "unit": "quarter", "quantity": 2}}),
    )
    .await;
    let batch_id = batch["batch_id"].as_str().unwrap();
    let codes: Vec<&str> = batch["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(codes.len(), 5);
    assert_eq!(codes.iter().collect::<BTreeSet<_>>().len(), 5);
    for code in &codes {
        // PREFIX + 4 groups of 4 Crockford symbols (80 bits).
        assert!(code.starts_with("VIP-"), "{code}");
        let random: String = code[4..].chars().filter(|c| *c != '-').collect();
        assert_eq!(random.len(), 16, "{code}");
        assert!(random
            .chars()
            .all(|c| "0123456789ABCDEFGHJKMNPQRSTVWXYZ".contains(c)));
        let view = get_code(&env, code).await;
        assert_eq!(view["code"], *code);
        assert_eq!(view["batch_id"], batch_id);
        assert_eq!(view["batch_name"], "launch");
        assert_eq!(view["used_count"], 0);
        assert_eq!(view["max_uses"], 3);
        assert_eq!(view["enabled"], true);
        assert_eq!(view["status"], "active");
        assert_eq!(view["credits"], 250);
        assert_eq!(view["expires_at"], "2099-01-01T00:00:00Z");
        assert_eq!(
            view["subscription"],
            json!({"plan_id": "pro", "unit": "quarter", "quantity": 2})
        );
    }
    let listed = env
        .get(&format!("{CODES}?batch_id={batch_id}"))
        .as_admin()
        .send()
        .await;
    listed.assert_status(200);
    let listed: Vec<&str> = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_str().unwrap())
        .collect();
    assert_eq!(listed, codes, "generation order within a batch");

    // The creation is audited (without the secret codes).
    let audit = env
        .audit_entries(None, Some(ADMIN_CREATE_REDEMPTION_CODES))
        .await;
    assert_eq!(audit.len(), 1);
    let entry = &audit[0];
    assert_eq!(entry.actor, "admin-1");
    assert_eq!(entry.details["batch_id"], batch_id);
    assert_eq!(entry.details["count"], 5);
    assert!(!entry.details.to_string().contains(codes[0]));
}

#[tokio::test]
async fn a_thousand_codes_are_written_in_chunks_and_paged_with_cursors() {
    let env = TestEnv::new().await;
    let older = create(&env, json!({"count": 3, "credits": 1, "max_uses": 1})).await;
    let batch = create(&env, json!({"count": 1000, "credits": 1, "max_uses": 1})).await;
    let batch_id = batch["batch_id"].as_str().unwrap();
    let created: BTreeSet<String> = batch["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(created.len(), 1000);

    // One batch, paged.
    let mut seen = BTreeSet::new();
    let pages = env
        .admin_pages(&format!("{CODES}?batch_id={batch_id}&limit=100"))
        .await;
    for item in pages.concat() {
        assert!(seen.insert(item["code"].as_str().unwrap().to_string()));
    }
    assert_eq!(seen, created);

    // Every batch, newest first, across the batch boundary.
    let all: Vec<String> = env
        .admin_pages(&format!("{CODES}?limit=97"))
        .await
        .concat()
        .iter()
        .map(|i| i["batch_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(all.len(), 1003);
    assert!(all[..1000].iter().all(|b| b == batch_id));
    assert!(all[1000..].iter().all(|b| *b == older["batch_id"]));

    // A cursor of another list is refused, not passed on to the store.
    let forged = spendguard_core::api::Cursor(
        [
            ("pk".to_string(), "USER#alice".to_string()),
            ("sk".to_string(), "CREDITS".to_string()),
        ]
        .into(),
    )
    .encode();
    env.get(&format!("{CODES}?batch_id={batch_id}&cursor={forged}"))
        .as_admin()
        .send()
        .await
        .assert_error(400, "invalid_request");
    env.get(&format!("{CODES}?cursor={forged}"))
        .as_admin()
        .send()
        .await
        .assert_error(400, "invalid_request");
}

#[tokio::test]
async fn a_retried_create_with_the_same_key_finishes_the_same_batch() {
    let env = TestEnv::new().await;
    let body = json!({"count": 300, "credits": 5, "max_uses": 1, "prefix": "R"});
    let first = env
        .post(CODES)
        .as_admin()
        .header("idempotency-key", "batch-key-1")
        .json(&body)
        .send()
        .await;
    first.assert_status(201);
    assert!(first.headers.get(REPLAYED).is_none());
    let batch_id = first.body["batch_id"].as_str().unwrap().to_string();
    let codes: Vec<String> = first.body["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();

    // Simulate a crash after the first chunk: the batch records 97 codes
    // written, and the later codes are missing.
    let client = env.store.client();
    client
        .update_item()
        .table_name(env.store.table())
        .key("pk", AttributeValue::S(format!("CODE_BATCH#{batch_id}")))
        .key("sk", AttributeValue::S("BATCH".into()))
        .update_expression("SET #w = :w, #c = :f")
        .expression_attribute_names("#w", "written")
        .expression_attribute_names("#c", "complete")
        .expression_attribute_values(":w", AttributeValue::N("97".into()))
        .expression_attribute_values(":f", AttributeValue::Bool(false))
        .send()
        .await
        .unwrap();
    for code in &codes[97..] {
        let key: String = code.chars().filter(|c| *c != '-').collect();
        client
            .delete_item()
            .table_name(env.store.table())
            .key("pk", AttributeValue::S(format!("CODE#{key}")))
            .key("sk", AttributeValue::S("CODE".into()))
            .send()
            .await
            .unwrap();
    }
    env.get(&format!("{CODES}/{}", codes[299]))
        .as_admin()
        .send()
        .await
        .assert_error(404, "code_not_found");

    let retry = env
        .post(CODES)
        .as_admin()
        .header("idempotency-key", "batch-key-1")
        .json(&body)
        .send()
        .await;
    retry.assert_status(201);
    assert_eq!(retry.headers[REPLAYED], "true");
    assert_eq!(retry.body["batch_id"], batch_id.as_str());
    assert_eq!(retry.body["codes"], first.body["codes"]);
    for code in [&codes[0], &codes[97], &codes[299]] {
        assert_eq!(get_code(&env, code).await["batch_id"], batch_id.as_str());
    }
    let listed = env
        .get(&format!("{CODES}?batch_id={batch_id}&limit=100"))
        .as_admin()
        .send()
        .await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 100);

    // Same key, different request: refused, nothing created.
    env.post(CODES)
        .as_admin()
        .header("idempotency-key", "batch-key-1")
        .json(&json!({"count": 2, "credits": 5, "max_uses": 1}))
        .send()
        .await
        .assert_error(422, "idempotency_key_mismatch");
    // Another admin's identical key is another batch.
    let other = env
        .post(CODES)
        .as_role("admin-2", spendguard_tests::Role::Admin)
        .header("idempotency-key", "batch-key-1")
        .json(&body)
        .send()
        .await;
    other.assert_status(201);
    assert_ne!(other.body["batch_id"], batch_id.as_str());
    let audit = env
        .audit_entries(None, Some(ADMIN_CREATE_REDEMPTION_CODES))
        .await;
    assert_eq!(audit.len(), 2, "one audit entry per batch");
}

#[tokio::test]
async fn admin_disables_and_enables_a_code_with_audit() {
    let env = TestEnv::new().await;
    let code = one_code(&env, 10, 5).await;
    let res = env
        .patch(&format!("{CODES}/{code}"))
        .as_admin()
        .json(&json!({"enabled": false}))
        .send()
        .await;
    res.assert_status(200);
    assert_eq!(res.body["enabled"], false);
    assert_eq!(res.body["status"], "disabled");
    redeem(&env, "alice", &code)
        .await
        .assert_error(403, "code_disabled");
    let res = env
        .patch(&format!("{CODES}/{}", code.to_lowercase()))
        .as_admin()
        .json(&json!({"enabled": true}))
        .send()
        .await;
    res.assert_status(200);
    assert_eq!(res.body["status"], "active");
    redeem(&env, "alice", &code).await.assert_status(201);
    let audit = env
        .audit_entries(None, Some(ADMIN_UPDATE_REDEMPTION_CODE))
        .await;
    let flips: Vec<(bool, bool)> = audit
        .iter()
        .map(|e| {
            (
                e.details["enabled_before"].as_bool().unwrap(),
                e.details["enabled"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(flips, [(false, true), (true, false)], "newest first");

    for bad in [
        json!({}),
        json!({"enabled": "no"}),
        json!({"enabled": true, "x": 1}),
    ] {
        env.patch(&format!("{CODES}/{code}"))
            .as_admin()
            .json(&bad)
            .send()
            .await
            .assert_error(400, "invalid_request");
    }
    env.patch(&format!("{CODES}/NOPE-0000"))
        .as_admin()
        .json(&json!({"enabled": false}))
        .send()
        .await
        .assert_error(404, "code_not_found");
}

#[tokio::test]
async fn status_filter_lists_active_disabled_expired_and_exhausted() {
    let start = t(2026, 3, 1, 12);
    let env = manual_env(start).await;
    let active = one_code(&env, 1, 5).await;
    let disabled = one_code(&env, 1, 5).await;
    let exhausted = one_code(&env, 1, 1).await;
    let expiring = create(
        &env,
        json!({"count": 1, "credits": 1, "max_uses": 5, "expires_at": "2026-03-01T13:00:00Z"}),
    )
    .await["codes"][0]
        .as_str()
        .unwrap()
        .to_string();
    env.patch(&format!("{CODES}/{disabled}"))
        .as_admin()
        .json(&json!({"enabled": false}))
        .send()
        .await
        .assert_status(200);
    redeem(&env, "bob", &exhausted).await.assert_status(201);
    env.clock.set(start + Duration::hours(2));
    for (status, want) in [
        ("active", &active),
        ("disabled", &disabled),
        ("exhausted", &exhausted),
        ("expired", &expiring),
    ] {
        let res = env
            .get(&format!("{CODES}?status={status}"))
            .as_admin()
            .send()
            .await;
        res.assert_status(200);
        let codes: Vec<&str> = res.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["code"].as_str().unwrap())
            .collect();
        assert_eq!(codes, [want.as_str()], "{status}");
        assert_eq!(res.body["items"][0]["status"], status);
    }
    env.get(&format!("{CODES}?status=used"))
        .as_admin()
        .send()
        .await
        .assert_error(400, "invalid_request");
}

/// Pages every code of a list query, asserting no code appears twice.
async fn page_all(env: &TestEnv, query: &str, limit: usize) -> Vec<String> {
    let pages = env
        .admin_pages(&format!("{CODES}?{query}&limit={limit}"))
        .await;
    assert!(pages.iter().all(|page| page.len() <= limit));
    let codes: Vec<String> = pages
        .concat()
        .iter()
        .map(|c| c["code"].as_str().unwrap().to_string())
        .collect();
    let unique: BTreeSet<&String> = codes.iter().collect();
    assert_eq!(unique.len(), codes.len(), "repeated codes");
    codes
}

#[tokio::test]
async fn filtered_lists_page_without_gaps_or_repeats() {
    let env = TestEnv::new().await;
    let batch = create(&env, json!({"count": 30, "credits": 1, "max_uses": 2})).await;
    let batch_id = batch["batch_id"].as_str().unwrap();
    let codes: Vec<&str> = batch["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let disabled: Vec<String> = codes.iter().step_by(4).map(|c| c.to_string()).collect();
    for code in &disabled {
        env.patch(&format!("{CODES}/{code}"))
            .as_admin()
            .json(&json!({"enabled": false}))
            .send()
            .await
            .assert_status(200);
    }
    assert_eq!(disabled.len(), 8);
    for limit in [1, 3, 100] {
        let listed = page_all(&env, &format!("batch_id={batch_id}&status=disabled"), limit).await;
        assert_eq!(listed, disabled, "limit {limit}");
        let listed = page_all(&env, "status=disabled", limit).await;
        assert_eq!(listed, disabled, "all batches, limit {limit}");
    }
    let active = page_all(&env, &format!("batch_id={batch_id}&status=active"), 7).await;
    assert_eq!(active.len(), 22);
    assert!(active.iter().all(|c| !disabled.contains(c)));
}

#[tokio::test]
async fn bad_admin_requests_are_400_and_users_are_403() {
    let env = TestEnv::new().await;
    let sub = json!({"plan_id": "pro", "unit": "month", "quantity": 1});
    let cases = [
        (
            json!({"count": 0, "credits": 1, "max_uses": 1}),
            "invalid_request",
        ),
        (
            json!({"count": 1001, "credits": 1, "max_uses": 1}),
            "invalid_request",
        ),
        (
            json!({"count": "5", "credits": 1, "max_uses": 1}),
            "invalid_request",
        ),
        (
            json!({"count": 1, "credits": 1, "max_uses": 0}),
            "invalid_request",
        ),
        (json!({"count": 1, "max_uses": 1}), "invalid_request"),
        (
            json!({"count": 1, "credits": -5, "max_uses": 1}),
            "invalid_amount",
        ),
        (
            json!({"count": 1, "credits": 1.5, "max_uses": 1}),
            "invalid_amount",
        ),
        (
            json!({"count": 1, "credits": 1, "max_uses": 1, "prefix": "no-dash"}),
            "invalid_request",
        ),
        (
            json!({"count": 1, "credits": 1, "max_uses": 1, "prefix": "X".repeat(17)}),
            "invalid_request",
        ),
        (
            json!({"count": 1, "credits": 1, "max_uses": 1, "expires_at": "2001-01-01T00:00:00Z"}),
            "invalid_request",
        ),
        (
            json!({"count": 1, "max_uses": 1, "subscription": {"plan_id": "pro", "unit": "decade", "quantity": 1}}),
            "invalid_request",
        ),
        (
            json!({"count": 1, "max_uses": 1, "subscription": {"plan_id": "pro", "unit": "month", "quantity": 0}}),
            "invalid_request",
        ),
        (
            json!({"count": 1, "max_uses": 1, "subscription": {"plan_id": "p/x", "unit": "month", "quantity": 1}}),
            "invalid_id",
        ),
        (
            json!({"count": 1, "max_uses": 1, "subscription": sub, "maxuses": 3}),
            "invalid_request",
        ),
    ];
    for (body, code) in cases {
        env.post(CODES)
            .as_admin()
            .json(&body)
            .send()
            .await
            .assert_error(400, code);
    }
    env.post(CODES)
        .as_admin()
        .raw_body("{\"count\": 1,")
        .send()
        .await
        .assert_error(400, "invalid_request");
    env.get(&format!("{CODES}?batch_id=a%20b"))
        .as_admin()
        .send()
        .await
        .assert_error(400, "invalid_id");
    for (method, path) in [
        ("POST", CODES.to_string()),
        ("GET", CODES.to_string()),
        ("GET", format!("{CODES}/ABCD")),
        ("PATCH", format!("{CODES}/ABCD")),
        ("GET", format!("{CODES}/ABCD/redemptions")),
    ] {
        env.request(method, &path)
            .as_user("alice")
            .json(&json!({"enabled": true}))
            .send()
            .await
            .assert_error(403, "forbidden");
    }
    // Nothing was created by any of these.
    let listed = env.get(CODES).as_admin().send().await;
    assert_eq!(listed.body["items"], json!([]));
}

// ---------------------------------------------------------------------------
// Redeeming
// ---------------------------------------------------------------------------

#[tokio::test]
async fn redeem_grants_credits_and_subscription_in_one_go() {
    let now = t(2026, 5, 10, 8);
    let env = manual_env(now).await;
    let batch = create(
        &env,
        json!({"count": 2, "credits": 100, "max_uses": 10,
               "subscription": {"plan_id": "pro", "unit": "month", "quantity": 1}}),
    )
    .await;
    let code = batch["codes"][0].as_str().unwrap();
    let res = redeem(&env, "alice", code).await;
    res.assert_status(201);
    let body = &res.body;
    assert_eq!(body["code"], code);
    assert_eq!(body["credits_granted"], 100);
    assert_eq!(body["balance_after"], 100);
    assert_eq!(body["is_new"], true);
    assert_eq!(body["redeemed_at"], "2026-05-10T08:00:00Z");
    assert_eq!(
        body["subscription"],
        json!({"plan_id": "pro", "unit": "month", "quantity": 1,
               "previous_expires_at": null, "expires_at": "2026-06-10T08:00:00Z"})
    );
    assert_eq!(env.available("alice").await, 100);
    let ledger = env
        .store
        .credit_ledger(
            &UserId::parse("alice").unwrap(),
            &PageRequest {
                limit: 10,
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(ledger.items.len(), 1);
    assert_eq!(ledger.items[0].kind.as_str(), "redeem");
    assert_eq!(ledger.items[0].amount, 100);
    assert_eq!(
        Some(ledger.items[0].id.as_str()),
        body["transaction_id"].as_str()
    );
    assert_eq!(used_count(&env, code).await, 1);

    let mine = items(&env, "alice", REDEEM).await;
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["code"], code);
    let subs = items(&env, "alice", "/v1/me/subscriptions").await;
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0]["plan_id"], "pro");
    assert_eq!(subs[0]["expires_at"], "2026-06-10T08:00:00Z");
    assert_eq!(subs[0]["active"], true);

    // Case and separators do not matter; the second code is not the user's first.
    env.clock.set(now + Duration::hours(1));
    let second = batch["codes"][1].as_str().unwrap();
    let sloppy: String = second.to_lowercase().replace('-', "");
    let res = redeem(&env, "alice", &sloppy).await;
    res.assert_status(201);
    assert_eq!(res.body["code"], second);
    assert_eq!(res.body["is_new"], false);
    assert_eq!(res.body["balance_after"], 200);
    assert_eq!(
        res.body["subscription"]["previous_expires_at"],
        "2026-06-10T08:00:00Z"
    );
    assert_eq!(
        res.body["subscription"]["expires_at"],
        "2026-07-10T08:00:00Z"
    );
    let mine = items(&env, "alice", REDEEM).await;
    assert_eq!(mine[0]["code"], second, "newest first");
    assert_eq!(mine[1]["code"], code);
    // Another user's first redemption is new for them.
    let res = redeem(&env, "bob", code).await;
    res.assert_status(201);
    assert_eq!(res.body["is_new"], true);

    let records = env
        .get(&format!("{CODES}/{code}/redemptions"))
        .as_admin()
        .send()
        .await;
    records.assert_status(200);
    let users: Vec<&str> = records.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["alice", "bob"]);
    env.get(&format!("{CODES}/NOPE-1234/redemptions"))
        .as_admin()
        .send()
        .await
        .assert_error(404, "code_not_found");
}

#[tokio::test]
async fn subscription_only_codes_grant_no_credits() {
    let env = TestEnv::new().await;
    let code = sub_code(&env, "basic", "day", 3).await;
    let res = redeem(&env, "carol", &code).await;
    res.assert_status(201);
    assert_eq!(res.body["credits_granted"], 0);
    assert_eq!(res.body["balance_after"], 0);
    assert_eq!(res.body["transaction_id"], Value::Null);
    assert_eq!(env.full_ledger("carol").await.len(), 0);
    assert_eq!(items(&env, "carol", "/v1/me/subscriptions").await.len(), 1);
}

#[tokio::test]
async fn each_refusal_has_its_contract_code_and_writes_nothing_else() {
    let start = t(2026, 4, 1, 9);
    let env = manual_env(start).await;
    // Give alice history so "unchanged" is checked against non-zero state.
    let seed = one_code(&env, 7, 10).await;
    redeem(&env, "alice", &seed).await.assert_status(201);

    let disabled = one_code(&env, 50, 10).await;
    env.patch(&format!("{CODES}/{disabled}"))
        .as_admin()
        .json(&json!({"enabled": false}))
        .send()
        .await
        .assert_status(200);
    let expiring = create(
        &env,
        json!({"count": 1, "credits": 50, "max_uses": 10, "expires_at": "2026-04-01T10:00:00Z"}),
    )
    .await["codes"][0]
        .as_str()
        .unwrap()
        .to_string();
    let exhausted = one_code(&env, 50, 1).await;
    redeem(&env, "bob", &exhausted).await.assert_status(201);
    env.clock.set(start + Duration::hours(2));

    let cases: [(&str, u16, &str); 5] = [
        ("ZZZZ-ZZZZ-ZZZZ-ZZZZ", 404, "code_not_found"),
        (&disabled, 403, "code_disabled"),
        (&expiring, 410, "code_expired"),
        (&exhausted, 409, "code_exhausted"),
        (&seed, 409, "already_redeemed"),
    ];
    for (code, status, error) in cases {
        let before = env.table_snapshot().await;
        redeem(&env, "alice", code)
            .await
            .assert_error(status, error);
        let after = env.table_snapshot().await;
        assert_only_failure_counter_changed(&before, &after, "alice");
    }
    assert_eq!(env.available("alice").await, 7);
    assert_eq!(env.full_ledger("alice").await.len(), 1);
    assert_eq!(used_count(&env, &disabled).await, 0);
    assert_eq!(used_count(&env, &expiring).await, 0);
    assert_eq!(used_count(&env, &exhausted).await, 1);
    assert_eq!(used_count(&env, &seed).await, 1);
    assert_eq!(items(&env, "alice", REDEEM).await.len(), 1);

    // A code outside the id alphabet is a 400, not a lookup (and not counted).
    let before = env.table_snapshot().await;
    for bad in ["has space", "a/b", ""] {
        redeem(&env, "alice", bad)
            .await
            .assert_error(400, "invalid_id");
    }
    for bad in [json!({}), json!({"code": 5})] {
        env.post(REDEEM)
            .as_user("alice")
            .json(&bad)
            .send()
            .await
            .assert_error(400, "invalid_request");
    }
    assert!(changed_keys(&before, &env.table_snapshot().await).is_empty());
}

#[tokio::test]
async fn more_than_twenty_failures_an_hour_are_refused_with_429() {
    let start = t(2026, 6, 1, 10);
    let env = manual_env(start).await;
    let good = one_code(&env, 10, 5).await;
    for i in 0..20 {
        env.clock.set(start + Duration::seconds(i * 30));
        redeem(&env, "mallory", &format!("GUESS-{i:04}"))
            .await
            .assert_error(404, "code_not_found");
    }
    // The 21st attempt is refused before it touches the code, even a good one.
    env.clock.set(start + Duration::minutes(15));
    let before = env.table_snapshot().await;
    let res = redeem(&env, "mallory", &good).await;
    res.assert_error(429, "too_many_failed_attempts");
    // The first failure (at minute 0) leaves the window at minute 60.
    assert_eq!(res.body["error"]["retry_after_seconds"], 45 * 60);
    assert_eq!(res.headers["retry-after"], "2700");
    assert!(changed_keys(&before, &env.table_snapshot().await).is_empty());
    assert_eq!(used_count(&env, &good).await, 0);
    assert_eq!(env.available("mallory").await, 0);
    // Other users are not affected.
    redeem(&env, "alice", &good).await.assert_status(201);
    // An hour after the failures began, the oldest have left the window.
    env.clock.set(start + Duration::minutes(60));
    let res = redeem(&env, "mallory", &good).await;
    res.assert_status(201);
    assert_eq!(env.available("mallory").await, 10);
}

#[tokio::test]
async fn a_live_lock_answers_in_progress_and_a_stale_one_is_taken_over() {
    let start = t(2026, 7, 1, 0);
    let env = manual_env(start).await;
    let code = one_code(&env, 3, 5).await;
    let key: String = code.chars().filter(|c| *c != '-').collect();
    // Another attempt of dave's holds the lease (as a concurrent request would).
    let held = env
        .store
        .try_lock(&format!("redeem:dave:{key}"), Duration::seconds(10), start)
        .await
        .unwrap()
        .expect("free");
    let before = env.table_snapshot().await;
    redeem(&env, "dave", &code)
        .await
        .assert_error(409, "redemption_in_progress");
    assert!(changed_keys(&before, &env.table_snapshot().await).is_empty());
    // Other users and other codes are not blocked.
    redeem(&env, "erin", &code).await.assert_status(201);
    // The holder died: after its lease, the lock is taken over.
    env.clock.set(start + Duration::seconds(11));
    redeem(&env, "dave", &code).await.assert_status(201);
    // The dead holder's late release does not free the new owner's lock
    // (the redemption released it itself; the lock is gone either way).
    env.store.release_lock(&held).await.unwrap();
    assert_eq!(used_count(&env, &code).await, 2);
}

#[tokio::test]
async fn idempotency_key_replays_the_first_answer() {
    let env = TestEnv::new().await;
    let code = one_code(&env, 40, 10).await;
    let send = |key: &'static str, code: String| {
        let env = &env;
        async move {
            env.post(REDEEM)
                .as_user("frank")
                .header("idempotency-key", key)
                .json(&json!({ "code": code }))
                .send()
                .await
        }
    };
    let first = send("redeem-1", code.clone()).await;
    first.assert_status(201);
    assert!(first.headers.get(REPLAYED).is_none());
    let again = send("redeem-1", code.clone()).await;
    again.assert_status(201);
    assert_eq!(again.headers[REPLAYED], "true");
    assert_eq!(again.body, first.body);
    assert_eq!(env.available("frank").await, 40);
    assert_eq!(used_count(&env, &code).await, 1);
    // Same key, other body → 422.
    send("redeem-1", "OTHER-CODE".into())
        .await
        .assert_error(422, "idempotency_key_mismatch");
    // A new key for the same code: the once-per-user rule answers.
    send("redeem-2", code.clone())
        .await
        .assert_error(409, "already_redeemed");
    // A refusal is not stored: the key can be used again once the cause is gone.
    let later = one_code(&env, 5, 10).await;
    env.patch(&format!("{CODES}/{later}"))
        .as_admin()
        .json(&json!({"enabled": false}))
        .send()
        .await
        .assert_status(200);
    send("redeem-3", later.clone())
        .await
        .assert_error(403, "code_disabled");
    env.patch(&format!("{CODES}/{later}"))
        .as_admin()
        .json(&json!({"enabled": true}))
        .send()
        .await
        .assert_status(200);
    send("redeem-3", later).await.assert_status(201);
    assert_eq!(env.available("frank").await, 45);
}

// ---------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_users_race_for_fifty_uses() {
    let env = Arc::new(TestEnv::new().await);
    let code = one_code(&env, 25, 50).await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let env = env.clone();
        let code = code.clone();
        tasks.push(tokio::spawn(async move {
            let user = format!("racer-{i:03}");
            let res = redeem(&env, &user, &code).await;
            (user, res)
        }));
    }
    let mut winners = BTreeSet::new();
    let mut exhausted = 0;
    for task in tasks {
        let (user, res) = task.await.unwrap();
        match res.status {
            201 => {
                assert_eq!(res.body["credits_granted"], 25);
                assert!(winners.insert(user));
            }
            409 => {
                assert_eq!(res.error_code(), Some("code_exhausted"), "{}", res.text);
                exhausted += 1;
            }
            other => panic!("unexpected {other}: {}", res.text),
        }
    }
    assert_eq!(winners.len(), 50);
    assert_eq!(exhausted, 150);
    let view = get_code(&env, &code).await;
    assert_eq!(view["used_count"], 50);
    assert_eq!(view["status"], "exhausted");

    let mut ledger_entries = 0;
    for i in 0..200 {
        let user = format!("racer-{i:03}");
        let entries = env.full_ledger(&user).await.len();
        let expected = usize::from(winners.contains(&user));
        assert_eq!(entries, expected, "{user}");
        assert_eq!(env.available(&user).await, 25 * expected as i64, "{user}");
        ledger_entries += entries;
    }
    assert_eq!(ledger_entries, 50);

    let recorded: Vec<String> = env
        .admin_pages(&format!("{CODES}/{code}/redemptions?limit=30"))
        .await
        .concat()
        .iter()
        .map(|r| r["user_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(recorded.len(), 50, "no user redeemed twice");
    assert_eq!(recorded.into_iter().collect::<BTreeSet<_>>(), winners);
    env.assert_invariants().await;
}

/// On the manual clock neither the 10 s lock nor the 30 s key lease can run
/// out while the twenty requests are in flight, however slow the machine.
async fn one_user_many_times(with_key: bool) {
    let env = Arc::new(manual_env(t(2026, 7, 2, 0)).await);
    let code = one_code(&env, 9, 100).await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let env = env.clone();
        let code = code.clone();
        tasks.push(tokio::spawn(async move {
            let mut req = env
                .post(REDEEM)
                .as_user("gina")
                .json(&json!({ "code": code }));
            if with_key {
                req = req.header("idempotency-key", "same-key");
            }
            req.send().await
        }));
    }
    let mut originals = Vec::new();
    let mut replays = Vec::new();
    let mut outcomes = BTreeMap::new();
    for task in tasks {
        let res = task.await.unwrap();
        let label = match (res.status, res.headers.get(REPLAYED)) {
            (201, None) => {
                originals.push(res.body.clone());
                "created".to_string()
            }
            (201, Some(_)) => {
                replays.push(res.body.clone());
                "replayed".to_string()
            }
            (409, _) => res.error_code().unwrap().to_string(),
            _ => panic!("unexpected {}: {}", res.status, res.text),
        };
        *outcomes.entry(label).or_insert(0) += 1;
    }
    assert_eq!(originals.len(), 1, "{outcomes:?}");
    // With the key, a request that meets the first still running answers the
    // contract's 409 idempotency_key_in_use (redemption_in_progress only in the
    // instant before the first has taken the key).
    let allowed: &[&str] = if with_key {
        &[
            "created",
            "replayed",
            "idempotency_key_in_use",
            "redemption_in_progress",
        ]
    } else {
        &["created", "already_redeemed", "redemption_in_progress"]
    };
    for label in outcomes.keys() {
        assert!(allowed.contains(&label.as_str()), "{outcomes:?}");
    }
    for replay in &replays {
        assert_eq!(replay, &originals[0]);
    }
    assert_eq!(env.available("gina").await, 9);
    assert_eq!(env.full_ledger("gina").await.len(), 1);
    assert_eq!(used_count(&env, &code).await, 1);
    assert_eq!(items(&env, "gina", REDEEM).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_user_sends_the_same_code_twenty_times_at_once() {
    one_user_many_times(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_user_sends_the_same_code_and_key_twenty_times_at_once() {
    one_user_many_times(true).await;
}

/// Without the lease lock, the transaction alone keeps "once per user per
/// code": concurrent attempts of one user yield one redemption.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn correctness_never_depends_on_the_lock() {
    let env = Arc::new(TestEnv::new().await);
    let code = one_code(&env, 11, 100).await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let env = env.clone();
        let code = code.clone();
        tasks.push(tokio::spawn(async move {
            let user = UserId::parse("ivan").unwrap();
            let key = CodeKey::parse(&code).unwrap();
            let request = RedeemRequest {
                user: &user,
                code: &key,
                idempotency: None,
            };
            env.store.redeem_unlocked(request, &env.clock).await
        }));
    }
    let mut redeemed = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(RedeemOutcome::Redeemed(r)) => {
                assert_eq!(r.credits_granted, 11);
                redeemed += 1;
            }
            Err(Error::AlreadyRedeemed) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(redeemed, 1);
    assert_eq!(env.available("ivan").await, 11);
    assert_eq!(env.full_ledger("ivan").await.len(), 1);
    assert_eq!(used_count(&env, &code).await, 1);
}

/// One user redeeming different codes at once: every grant lands, the
/// subscription is extended by each (optimistic version), `is_new` holds once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_redemptions_of_one_user_all_count() {
    let env = Arc::new(manual_env(t(2026, 3, 15, 0)).await);
    let batch = create(
        &env,
        json!({"count": 5, "credits": 3, "max_uses": 1,
               "subscription": {"plan_id": "pro", "unit": "month", "quantity": 1}}),
    )
    .await;
    let mut tasks = Vec::new();
    for code in batch["codes"].as_array().unwrap() {
        let env = env.clone();
        let code = code.as_str().unwrap().to_string();
        tasks.push(tokio::spawn(
            async move { redeem(&env, "judy", &code).await },
        ));
    }
    let mut new_flags = 0;
    for task in tasks {
        let res = task.await.unwrap();
        res.assert_status(201);
        new_flags += usize::from(res.body["is_new"] == true);
    }
    assert_eq!(new_flags, 1);
    assert_eq!(env.available("judy").await, 15);
    assert_eq!(env.full_ledger("judy").await.len(), 5);
    let subs = items(&env, "judy", "/v1/me/subscriptions").await;
    assert_eq!(subs[0]["expires_at"], "2026-08-15T00:00:00Z");
    env.assert_invariants().await;
}

// ---------------------------------------------------------------------------
// Subscriptions
// ---------------------------------------------------------------------------

#[tokio::test]
async fn subscriptions_extend_calendar_correctly() {
    // Jan 31 + 1 month = Feb 28 (2026 is no leap year).
    let jan31 = t(2026, 1, 31, 10);
    let env = manual_env(jan31).await;
    let month = sub_code(&env, "pro", "month", 1).await;
    let res = redeem(&env, "hana", &month).await;
    res.assert_status(201);
    assert_eq!(
        res.body["subscription"]["expires_at"],
        "2026-02-28T10:00:00Z"
    );
    assert_eq!(res.body["subscription"]["previous_expires_at"], Value::Null);

    // Unexpired: extended from its expiry, not from now.
    env.clock.set(t(2026, 2, 10, 0));
    let another = sub_code(&env, "pro", "month", 1).await;
    let res = redeem(&env, "hana", &another).await;
    res.assert_status(201);
    assert_eq!(
        res.body["subscription"]["previous_expires_at"],
        "2026-02-28T10:00:00Z"
    );
    assert_eq!(
        res.body["subscription"]["expires_at"],
        "2026-03-28T10:00:00Z"
    );

    // Expired: extended from now.
    env.clock.set(t(2026, 6, 1, 12));
    let week = sub_code(&env, "pro", "week", 2).await;
    let res = redeem(&env, "hana", &week).await;
    res.assert_status(201);
    assert_eq!(
        res.body["subscription"]["expires_at"],
        "2026-06-15T12:00:00Z"
    );

    // Larger units: quarter from Nov 30 clamps to Feb 28; half_year and year.
    env.clock.set(t(2026, 11, 30, 0));
    for (plan, unit, want) in [
        ("q", "quarter", "2027-02-28T00:00:00Z"),
        ("h", "half_year", "2027-05-30T00:00:00Z"),
        ("y", "year", "2027-11-30T00:00:00Z"),
        ("d", "day", "2026-12-01T00:00:00Z"),
    ] {
        let code = sub_code(&env, plan, unit, 1).await;
        let res = redeem(&env, "hana", &code).await;
        res.assert_status(201);
        assert_eq!(res.body["subscription"]["expires_at"], want, "{unit}");
    }
    let subs = items(&env, "hana", "/v1/me/subscriptions").await;
    let by_plan: BTreeMap<&str, (&str, bool)> = subs
        .iter()
        .map(|s| {
            (
                s["plan_id"].as_str().unwrap(),
                (
                    s["expires_at"].as_str().unwrap(),
                    s["active"].as_bool().unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(by_plan["pro"], ("2026-06-15T12:00:00Z", false));
    assert_eq!(by_plan["q"], ("2027-02-28T00:00:00Z", true));
    assert_eq!(by_plan.len(), 5);
}

// ---------------------------------------------------------------------------
// Sample events
// ---------------------------------------------------------------------------

fn inner(res: &TestResponse) -> (u64, Value) {
    res.assert_status(200);
    let status = res.body["statusCode"].as_u64().unwrap();
    let body = serde_json::from_str(res.body["body"].as_str().unwrap()).unwrap();
    (status, body)
}

#[tokio::test]
async fn sample_events_invoke_the_redemption_function() {
    let env = TestEnv::new().await;
    // The sample code does not exist: a clean 404 and nothing else.
    let (status, body) = inner(
        &env.invoke("redemption", &sample_event("redemption-redeem.json"))
            .await,
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("code_not_found"))
    );
    for file in [
        "redemption-get-code.json",
        "redemption-disable-code.json",
        "redemption-list-code-redemptions.json",
    ] {
        let (status, body) = inner(&env.invoke("redemption", &sample_event(file)).await);
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (404, Some("code_not_found")),
            "{file}"
        );
    }

    let (status, created) = inner(
        &env.invoke("redemption", &sample_event("redemption-create-codes.json"))
            .await,
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["codes"].as_array().unwrap().len(), 3);
    let code = created["codes"][0].as_str().unwrap();

    // The redeem event, pointed at a real code.
    let mut event = sample_event("redemption-redeem.json");
    event["body"] = json!(json!({ "code": code }).to_string());
    let (status, redeemed) = inner(&env.invoke("redemption", &event).await);
    assert_eq!(status, 201, "{redeemed}");
    assert_eq!(redeemed["credits_granted"], 500);
    assert_eq!(redeemed["subscription"]["plan_id"], "pro");

    for (file, count) in [
        ("redemption-list-my-redemptions.json", 1),
        ("redemption-list-my-subscriptions.json", 1),
        ("redemption-list-user-subscriptions.json", 1),
        ("redemption-list-codes.json", 2),
    ] {
        let (status, body) = inner(&env.invoke("redemption", &sample_event(file)).await);
        assert_eq!(status, 200, "{file}: {body}");
        assert_eq!(
            body["items"].as_array().unwrap().len(),
            count,
            "{file}: {body}"
        );
    }
    for file in [
        "redemption-get-code.json",
        "redemption-disable-code.json",
        "redemption-list-code-redemptions.json",
    ] {
        let mut event = sample_event(file);
        event["pathParameters"]["code"] = json!(code);
        let (status, body) = inner(&env.invoke("redemption", &event).await);
        assert_eq!(status, 200, "{file}: {body}");
    }
}

// ---------------------------------------------------------------------------
// Contract conformance: replays, timestamps, list ends, cursors
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_replayed_create_answers_the_first_body_exactly() {
    // The system clock: sub-microsecond digits must not reach a response that a
    // replay (read back from the store) answers differently.
    let env = TestEnv::new().await;
    let body = json!({"count": 2, "credits": 5, "max_uses": 1, "batch_name": "replay"});
    let send = || {
        env.post(CODES)
            .as_admin()
            .header("idempotency-key", "exact-replay")
            .json(&body)
            .send()
    };
    let first = send().await;
    first.assert_status(201);
    let again = send().await;
    again.assert_status(201);
    assert_eq!(again.headers[REPLAYED], "true");
    assert_eq!(again.text, first.text);
}

#[tokio::test]
async fn redeem_answers_the_timestamps_later_reads_show() {
    let env = TestEnv::new().await;
    let code = sub_code(&env, "pro", "month", 1).await;
    let res = redeem(&env, "alice", &code).await;
    res.assert_status(201);
    let mine = items(&env, "alice", REDEEM).await;
    assert_eq!(mine[0]["redeemed_at"], res.body["redeemed_at"]);
    let subs = items(&env, "alice", "/v1/me/subscriptions").await;
    assert_eq!(
        subs[0]["expires_at"],
        res.body["subscription"]["expires_at"]
    );
    let at = res.body["redeemed_at"].as_str().unwrap();
    assert!(
        DateTime::parse_from_rfc3339(at).is_ok() && at.ends_with('Z'),
        "{at}"
    );
}

/// Every page of `path` (`?limit=` appended) as `user` (`None`: admin).
async fn pages(env: &TestEnv, path: &str, user: Option<&str>, limit: usize) -> Vec<Vec<Value>> {
    let sep = if path.contains('?') { '&' } else { '?' };
    env.pages_as(&format!("{path}{sep}limit={limit}"), user)
        .await
}

#[tokio::test]
async fn an_exactly_full_last_page_says_next_cursor_null() {
    let env = TestEnv::new().await;
    let batch = create(&env, json!({"count": 4, "credits": 1, "max_uses": 2})).await;
    let batch_id = batch["batch_id"].as_str().unwrap();
    let codes: Vec<String> = batch["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    for user in ["alice", "bob"] {
        redeem(&env, user, &codes[0]).await.assert_status(201);
    }
    redeem(&env, "alice", &codes[1]).await.assert_status(201);
    let sub = sub_code(&env, "pro", "month", 1).await;
    redeem(&env, "alice", &sub).await.assert_status(201);
    // 5 codes in 2 batches, codes[0] exhausted; 2 redemptions of codes[0]; 3 of
    // alice; 1 subscription.
    let cases: [(String, Option<&str>, usize); 8] = [
        (CODES.to_string(), None, 5),
        (format!("{CODES}?batch_id={batch_id}"), None, 4),
        (format!("{CODES}?status=active"), None, 4),
        (
            format!("{CODES}?batch_id={batch_id}&status=active"),
            None,
            3,
        ),
        (format!("{CODES}/{}/redemptions", codes[0]), None, 2),
        (REDEEM.to_string(), Some("alice"), 3),
        ("/v1/me/subscriptions".to_string(), Some("alice"), 1),
        ("/v1/me/credits/transactions".to_string(), Some("alice"), 2),
    ];
    for (path, user, total) in cases {
        // One full page: no cursor.
        let all = pages(&env, &path, user, total).await;
        assert_eq!(all.len(), 1, "{path} limit {total}: {all:?}");
        assert_eq!(all[0].len(), total, "{path}");
        // Pages of 1: `total` non-empty pages, the last one without a cursor.
        let ones = pages(&env, &path, user, 1).await;
        assert_eq!(ones.len(), total, "{path} limit 1: {ones:?}");
        assert!(ones.iter().all(|p| p.len() == 1), "{path}: {ones:?}");
    }
}

#[tokio::test]
async fn forged_cursors_are_400_never_5xx() {
    use spendguard_core::api::Cursor;
    let env = TestEnv::new().await;
    let batch = create(&env, json!({"count": 2, "credits": 1, "max_uses": 1})).await;
    let batch_id = batch["batch_id"].as_str().unwrap().to_string();
    let code = batch["codes"][0].as_str().unwrap().to_string();
    redeem(&env, "alice", &code).await.assert_status(201);
    // Well-formed cursors (base64url JSON of strings) naming keys no list returns.
    let enc = |v: Value| {
        let map = v.as_object().unwrap();
        Cursor(
            map.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect(),
        )
        .encode()
    };
    let key = CodeKey::parse(&code).unwrap();
    let forged = [
        json!({}),
        json!({"x": "y"}),
        json!({"pk": "USER#alice", "sk": ""}),
        json!({"pk": "USER#alice", "sk": "LEDGER#1"}),
        json!({"pk": "CODE#X", "sk": "CODE", "gsi1pk": format!("BATCH_CODES#{batch_id}")}),
        json!({"pk": "CODE#X", "sk": "CODE", "gsi1pk": "USER_REDEMPTIONS#alice"}),
        json!({"pk": format!("CODE#{}", key.as_str()), "sk": "CODE"}),
        json!({"walk_batch": "x"}),
    ];
    let lists: [(String, Option<&str>); 5] = [
        (format!("{CODES}?batch_id={batch_id}"), None),
        (CODES.to_string(), None),
        (format!("{CODES}/{code}/redemptions"), None),
        (REDEEM.to_string(), Some("alice")),
        ("/v1/me/subscriptions".to_string(), Some("alice")),
    ];
    for (path, user) in &lists {
        for cursor in ["garbage!", "e30", "bm90IGpzb24"]
            .into_iter()
            .map(str::to_string)
            .chain(forged.iter().map(|f| enc(f.clone())))
        {
            let sep = if path.contains('?') { '&' } else { '?' };
            let req = env.get(&format!("{path}{sep}cursor={cursor}"));
            let res = match user {
                Some(u) => req.as_user(u),
                None => req.as_admin(),
            }
            .send()
            .await;
            assert_eq!(
                (res.status, res.error_code()),
                (400, Some("invalid_request")),
                "{path} cursor {cursor}: {}",
                res.text
            );
        }
    }
}

#[tokio::test]
async fn the_same_key_while_the_first_still_runs_is_idempotency_key_in_use() {
    use spendguard_core::store::{Claim, Fingerprint};
    let start = t(2026, 7, 1, 0);
    let env = manual_env(start).await;
    let code = one_code(&env, 3, 5).await;
    let key: String = code.chars().filter(|c| *c != '-').collect();
    // dave's first request with key "k-1" is running: it holds the lock and
    // the key, as a concurrent request would.
    env.store
        .try_lock(&format!("redeem:dave:{key}"), Duration::seconds(10), start)
        .await
        .unwrap()
        .expect("free");
    let body = json!({ "code": code });
    let fingerprint = Fingerprint::of("POST", REDEEM, body.to_string().as_bytes());
    let claim = env
        .store
        .claim_idempotency("redeem:dave", "k-1", &fingerprint, start)
        .await
        .unwrap();
    assert!(matches!(claim, Claim::Acquired(_)));
    let before = env.table_snapshot().await;
    let send = |key: Option<&'static str>, body: Value| {
        let env = &env;
        async move {
            let mut req = env.post(REDEEM).as_user("dave");
            if let Some(key) = key {
                req = req.header("idempotency-key", key);
            }
            req.json(&body).send().await
        }
    };
    send(Some("k-1"), body.clone())
        .await
        .assert_error(409, "idempotency_key_in_use");
    // The same key with another body: 422, as ever.
    send(Some("k-1"), json!({ "code": code.to_lowercase() }))
        .await
        .assert_error(422, "idempotency_key_mismatch");
    // Another key, or none: the redemption in progress answers.
    send(Some("k-2"), body.clone())
        .await
        .assert_error(409, "redemption_in_progress");
    send(None, body)
        .await
        .assert_error(409, "redemption_in_progress");
    assert!(changed_keys(&before, &env.table_snapshot().await).is_empty());
}

/// `GET /v1/admin/users/{user_id}/subscriptions` answers an admin exactly what
/// `GET /v1/me/subscriptions` answers the user, page by page.
#[tokio::test]
async fn an_admin_reads_a_users_subscriptions_as_the_user_does() {
    let env = manual_env(t(2026, 3, 1, 9)).await;
    for plan in ["basic", "pro", "team"] {
        let code = sub_code(&env, plan, "month", 1).await;
        redeem(&env, "ivan", &code).await.assert_status(201);
    }
    let pro = sub_code(&env, "pro", "month", 1).await;
    redeem(&env, "kate", &pro).await.assert_status(201);
    let mut cursor: Option<String> = None;
    let mut plans = Vec::new();
    loop {
        let query = match &cursor {
            Some(c) => format!("?limit=2&cursor={c}"),
            None => "?limit=2".to_string(),
        };
        let admin = env
            .get(&format!("/v1/admin/users/ivan/subscriptions{query}"))
            .as_admin()
            .send()
            .await;
        admin.assert_status(200);
        let own = env
            .get(&format!("/v1/me/subscriptions{query}"))
            .as_user("ivan")
            .send()
            .await;
        own.assert_status(200);
        assert_eq!(admin.body, own.body);
        for s in admin.body["items"].as_array().unwrap() {
            plans.push(s["plan_id"].as_str().unwrap().to_string());
            assert_eq!(s["expires_at"], "2026-04-01T09:00:00Z");
        }
        match admin.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(plans, ["basic", "pro", "team"]);

    // An unknown user has none: one empty page, the last.
    let nobody = env
        .admin_pages("/v1/admin/users/nobody/subscriptions?limit=5")
        .await;
    assert_eq!(nobody, [Vec::<Value>::new()]);
    for (query, code) in [
        ("users/a%20b/subscriptions", "invalid_id"),
        ("users/ivan/subscriptions?limit=0", "invalid_request"),
        ("users/ivan/subscriptions?cursor=zzz", "invalid_request"),
    ] {
        env.get(&format!("/v1/admin/{query}"))
            .as_admin()
            .send()
            .await
            .assert_error(400, code);
    }
    env.get("/v1/admin/users/ivan/subscriptions")
        .as_user("ivan")
        .send()
        .await
        .assert_error(403, "forbidden");
}
