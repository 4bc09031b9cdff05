//! Faults between the functions and the engine, injected by the harness's
//! proxy: writes that commit but whose answer is lost (a 500 after applying, a
//! dropped connection), then resends that are throttled until the SDK's own
//! retries run out. Whatever happens, an effect applies once and the request
//! answers what happened (or 503 when the outcome stays unknown), never a
//! refusal of its own write.

use chrono::{TimeZone, Utc};
use serde_json::{json, Value};
use spendguard_core::Clock;
use spendguard_tests::{Fault, FaultProxy, TestEnv, TestResponse};

const REPLAYED: &str = "idempotent-replayed";
const TWI: &str = "TransactWriteItems";

/// The first send commits but its answer is lost; the SDK's two resends (it
/// makes 3 attempts) are throttled.
const LOST_THEN_THROTTLED: [Fault; 3] = [
    Fault::ApplyThenServerError,
    Fault::Throttle,
    Fault::Throttle,
];

fn manual_clock() -> Clock {
    Clock::manual(Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap())
}

async fn adjust(env: &TestEnv, user: &str, key: Option<&str>, body: &Value) -> TestResponse {
    let mut req = env
        .post(&format!("/v1/admin/users/{user}/credits/adjust"))
        .as_admin();
    if let Some(key) = key {
        req = req.header("idempotency-key", key);
    }
    req.json(body).send().await
}

async fn redeem(env: &TestEnv, user: &str, key: Option<&str>, code: &str) -> TestResponse {
    let mut req = env.post("/v1/me/redemptions").as_user(user);
    if let Some(key) = key {
        req = req.header("idempotency-key", key);
    }
    req.json(&json!({ "code": code })).send().await
}

async fn one_code(env: &TestEnv, credits: i64, max_uses: i64) -> String {
    let res = env
        .post("/v1/admin/redemption-codes")
        .as_admin()
        .json(&json!({"count": 1, "credits": credits, "max_uses": max_uses}))
        .send()
        .await;
    res.assert_status(201);
    res.body["codes"][0].as_str().unwrap().to_string()
}

async fn used_count(env: &TestEnv, code: &str) -> i64 {
    let res = env
        .get(&format!("/v1/admin/redemption-codes/{code}"))
        .as_admin()
        .send()
        .await;
    res.assert_status(200);
    res.body["used_count"].as_i64().unwrap()
}

/// Every send of the faulted transaction was the very same request: one
/// `ClientRequestToken`, one body (resent, never re-planned).
#[track_caller]
fn assert_resent_identically(proxy: &FaultProxy, from: usize) {
    let sent = proxy.seen(TWI);
    let sent = &sent[from..];
    assert!(
        sent.len() > LOST_THEN_THROTTLED.len(),
        "the store resends after the SDK gave up: {} sends",
        sent.len()
    );
    let token = sent[0].body["ClientRequestToken"].as_str().unwrap_or("");
    assert!(!token.is_empty(), "a token makes the resend idempotent");
    for s in sent {
        assert_eq!(s.body, sent[0].body, "a resend differs from the first send");
    }
}

/// (a) Without an Idempotency-Key the transaction's token is the only fence:
/// re-planning after the lost answer would apply the adjustment again.
#[tokio::test]
async fn an_adjust_whose_answer_is_lost_applies_once() {
    let Some((env, proxy)) = TestEnv::with_faults(Clock::system()).await else {
        return;
    };
    proxy.inject(TWI, &LOST_THEN_THROTTLED);
    let stats = env.store.stats();
    let (requests, attempts) = (stats.requests(), stats.attempts());
    let res = adjust(
        &env,
        "alice",
        None,
        &json!({"delta": 100, "reason": "grant"}),
    )
    .await;
    res.assert_status(200);
    assert_eq!(res.body["current"], 100);
    assert_resent_identically(&proxy, 0);
    // GetItem, then two sends of the transaction; the SDK's two retries are
    // attempts, not requests.
    assert_eq!(stats.requests() - requests, 3);
    assert_eq!(stats.attempts() - attempts, 5);
    proxy.heal();
    assert_eq!(env.available("alice").await, 100);
    let ledger = env.full_ledger("alice").await;
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(ledger[0]["id"], res.body["transaction_id"]);
    env.assert_invariants().await;
}

/// (a') When the resends never get through, the outcome is unknown: 503, and
/// still no second application.
#[tokio::test]
async fn an_adjust_that_never_settles_is_503_and_applied_at_most_once() {
    let Some((env, proxy)) = TestEnv::with_faults(Clock::system()).await else {
        return;
    };
    proxy.inject(TWI, &[Fault::ApplyThenServerError]);
    proxy.set_script(Box::new(|op, _| match op {
        TWI => Fault::Throttle,
        _ => Fault::Forward,
    }));
    let res = adjust(
        &env,
        "alice",
        None,
        &json!({"delta": 100, "reason": "grant"}),
    )
    .await;
    res.assert_error(503, "store_unavailable");
    proxy.heal();
    assert_eq!(env.available("alice").await, 100);
    assert_eq!(env.full_ledger("alice").await.len(), 1);
    let sent = proxy.seen(TWI);
    assert!(
        sent.iter().all(|s| s.body == sent[0].body),
        "never re-planned"
    );
    env.assert_invariants().await;
}

/// (b) A redemption that committed answers 201 (not 409 already_redeemed),
/// its replay answers the same, and no failed attempt is counted.
#[tokio::test]
async fn a_redemption_whose_answer_is_lost_answers_201() {
    let Some((env, proxy)) = TestEnv::with_faults(manual_clock()).await else {
        return;
    };
    let code = one_code(&env, 100, 5).await;
    let from = proxy.seen(TWI).len();
    proxy.inject(TWI, &LOST_THEN_THROTTLED);
    let res = redeem(&env, "alice", Some("k-1"), &code).await;
    res.assert_status(201);
    assert!(res.headers.get(REPLAYED).is_none());
    assert_eq!(res.body["credits_granted"], 100);
    assert_eq!(res.body["balance_after"], 100);
    assert_resent_identically(&proxy, from);
    proxy.heal();
    let replay = redeem(&env, "alice", Some("k-1"), &code).await;
    replay.assert_status(201);
    assert_eq!(replay.headers.get(REPLAYED).unwrap(), "true");
    assert_eq!(replay.body, res.body);
    assert_eq!(used_count(&env, &code).await, 1);
    assert_eq!(env.available("alice").await, 100);
    assert_eq!(env.full_ledger("alice").await.len(), 1);
    let snapshot = env.table_snapshot().await;
    assert!(
        !snapshot
            .keys()
            .any(|(_, sk)| sk.starts_with("REDEEM_FAIL#")),
        "a success counted as a failed attempt"
    );
    env.assert_invariants().await;
}

/// (c) The Idempotency-Key is taken by the adjustment's own transaction (no
/// claim ahead of it): that transaction commits and the connection drops
/// before its answer; the resend under the same token answers its success.
/// The request answers 200, and its retry replays that answer.
#[tokio::test]
async fn an_idempotency_key_whose_write_answer_is_lost_is_still_ours() {
    let Some((env, proxy)) = TestEnv::with_faults(Clock::system()).await else {
        return;
    };
    proxy.inject(TWI, &[Fault::ApplyThenDrop]);
    let body = json!({"delta": 5, "reason": "grant"});
    let res = adjust(&env, "alice", Some("key-1"), &body).await;
    res.assert_status(200);
    assert_eq!(res.body["current"], 5);
    assert!(
        proxy.seen("PutItem").is_empty(),
        "no claim ahead of the effect"
    );
    let writes = proxy.seen(TWI);
    assert!(writes.len() >= 2, "the lost write was resent");
    assert_eq!(writes[1].body, writes[0].body, "resent identically");
    let takes_key = writes[0].body["TransactItems"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| {
            a["Put"]["Item"]["pk"]["S"]
                .as_str()
                .is_some_and(|pk| pk.starts_with("IDEMPOTENCY#"))
        });
    assert!(takes_key, "{:?}", writes[0].body);
    let replay = adjust(&env, "alice", Some("key-1"), &body).await;
    replay.assert_status(200);
    assert_eq!(replay.headers.get(REPLAYED).unwrap(), "true");
    assert_eq!(replay.body, res.body);
    assert_eq!(env.available("alice").await, 5);
    assert_eq!(env.full_ledger("alice").await.len(), 1);
    env.assert_invariants().await;
}

/// (d) No lock is taken ahead of a redemption: its one transaction commits
/// and the connection drops before the answer; the resend under the same
/// token answers that commit. 201, and nothing holds the user's next attempt
/// off.
#[tokio::test]
async fn a_redemption_whose_connection_drops_after_its_commit_is_still_ours() {
    let Some((env, proxy)) = TestEnv::with_faults(manual_clock()).await else {
        return;
    };
    let code = one_code(&env, 7, 5).await;
    let (from, updates) = (proxy.seen(TWI).len(), proxy.seen("UpdateItem").len());
    proxy.inject(TWI, &[Fault::ApplyThenDrop]);
    let res = redeem(&env, "alice", None, &code).await;
    res.assert_status(201);
    assert_eq!(res.body["balance_after"], 7);
    assert_eq!(proxy.seen("UpdateItem").len(), updates, "no lock taken");
    let sent = proxy.seen(TWI);
    let sent = &sent[from..];
    assert!(sent.len() >= 2, "the SDK resent the transaction");
    assert_eq!(sent[1].body, sent[0].body, "resent identically");
    assert_eq!(used_count(&env, &code).await, 1);
    assert_eq!(env.available("alice").await, 7);
    redeem(&env, "alice", None, &code)
        .await
        .assert_error(409, "already_redeemed");
    env.assert_invariants().await;
}

/// The lost commit, throttled resends, then a resend cancelled by a conflict:
/// an engine that does not honour the token (or a token past its 10 minutes)
/// refuses our own commit's twin this way. Only after such a definitive
/// cancellation may the store re-plan, and first it reads what it wrote.
const LOST_THEN_CANCELLED: [Fault; 4] = [
    Fault::ApplyThenServerError,
    Fault::Throttle,
    Fault::Throttle,
    Fault::Conflict,
];

/// (a'') The cancellation follows the lost commit: the ledger entry the plan
/// wrote is there, so the adjustment answers 200 and is not applied again.
#[tokio::test]
async fn an_adjust_cancelled_after_its_lost_commit_is_resolved_by_its_ledger_entry() {
    let Some((env, proxy)) = TestEnv::with_faults(Clock::system()).await else {
        return;
    };
    proxy.inject(TWI, &LOST_THEN_CANCELLED);
    let res = adjust(
        &env,
        "alice",
        None,
        &json!({"delta": 40, "reason": "grant"}),
    )
    .await;
    res.assert_status(200);
    assert_eq!(res.body["current"], 40);
    proxy.heal();
    assert_eq!(env.available("alice").await, 40);
    let ledger = env.full_ledger("alice").await;
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(ledger[0]["id"], res.body["transaction_id"]);
    env.assert_invariants().await;
}

/// (b') A subscription-only code (no ledger entry to recognise): the re-plan
/// meets the redemption record, which names this request, so it answers 201.
#[tokio::test]
async fn a_redemption_cancelled_after_its_lost_commit_is_resolved_by_its_record() {
    let Some((env, proxy)) = TestEnv::with_faults(manual_clock()).await else {
        return;
    };
    let res = env
        .post("/v1/admin/redemption-codes")
        .as_admin()
        .json(&json!({"count": 1, "max_uses": 5,
                      "subscription": {"plan_id": "pro", "unit": "month", "quantity": 1}}))
        .send()
        .await;
    res.assert_status(201);
    let code = res.body["codes"][0].as_str().unwrap().to_string();
    proxy.inject(TWI, &LOST_THEN_CANCELLED);
    let res = redeem(&env, "alice", None, &code).await;
    res.assert_status(201);
    assert_eq!(
        res.body["subscription"]["expires_at"],
        "2026-04-04T05:06:07Z"
    );
    proxy.heal();
    assert_eq!(used_count(&env, &code).await, 1);
    let subs = env
        .get("/v1/me/subscriptions")
        .as_user("alice")
        .send()
        .await;
    assert_eq!(subs.body["items"][0]["expires_at"], "2026-04-04T05:06:07Z");
    let snapshot = env.table_snapshot().await;
    assert!(!snapshot
        .keys()
        .any(|(_, sk)| sk.starts_with("REDEEM_FAIL#")));
    env.assert_invariants().await;
}

/// (e) Quota admin writes go through the same path: one change, one audit
/// entry, whatever the faults.
#[tokio::test]
async fn a_quota_update_cancelled_after_its_lost_commit_writes_one_audit_entry() {
    let Some((env, proxy)) = TestEnv::with_faults(Clock::system()).await else {
        return;
    };
    proxy.inject(TWI, &LOST_THEN_CANCELLED);
    let res = env
        .put("/v1/admin/users/alice/quotas")
        .as_admin()
        .json(&json!({"quotas": [{"platform": "openai", "daily_limit_usd": "5"}]}))
        .send()
        .await;
    res.assert_status(200);
    proxy.heal();
    let audit = env
        .get("/v1/admin/audit?user_id=alice")
        .as_admin()
        .send()
        .await;
    audit.assert_status(200);
    assert_eq!(
        audit.body["items"].as_array().unwrap().len(),
        1,
        "{}",
        audit.text
    );
    env.assert_invariants().await;
}

/// A redemption stalls past its key's 30 s lease; a retry with the same key
/// takes the key over and redeems. When the stalled one's transaction finally
/// arrives, its idempotency completion fails: whoever holds the key answers
/// (the retry's response, replayed), not 409 already_redeemed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redemption_stalled_past_its_lease_answers_the_takeovers_replay() {
    let Some((env, proxy)) = TestEnv::with_faults(manual_clock()).await else {
        return;
    };
    let env = std::sync::Arc::new(env);
    let code = one_code(&env, 10, 5).await;
    let from = proxy.seen(TWI).len();
    proxy.inject(TWI, &[Fault::Hold]);
    let stalled = {
        let (env, code) = (env.clone(), code.clone());
        tokio::spawn(async move { redeem(&env, "dave", Some("k-1"), &code).await })
    };
    while proxy.seen(TWI).len() == from {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    env.clock
        .set(env.clock.now() + chrono::Duration::seconds(31));
    let retry = redeem(&env, "dave", Some("k-1"), &code).await;
    retry.assert_status(201);
    assert!(retry.headers.get(REPLAYED).is_none());
    proxy.release();
    let late = stalled.await.unwrap();
    late.assert_status(201);
    assert_eq!(late.headers.get(REPLAYED).unwrap(), "true");
    assert_eq!(late.body, retry.body);
    assert_eq!(used_count(&env, &code).await, 1);
    assert_eq!(env.available("dave").await, 10);
    let snapshot = env.table_snapshot().await;
    assert!(!snapshot
        .keys()
        .any(|(_, sk)| sk.starts_with("REDEEM_FAIL#")));
    env.assert_invariants().await;
}

/// A redemption stalled between its read and its write (as a crashed one
/// would be) holds nothing: the same user's next redemption goes through at
/// once, and when the stalled one's transaction finally arrives, it fails on
/// the user's counter, re-reads and commits too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redemption_blocks_nothing() {
    let Some((env, proxy)) = TestEnv::with_faults(manual_clock()).await else {
        return;
    };
    let env = std::sync::Arc::new(env);
    let (first, second) = (one_code(&env, 10, 5).await, one_code(&env, 20, 5).await);
    let from = proxy.seen(TWI).len();
    proxy.inject(TWI, &[Fault::Hold]);
    let stalled = {
        let (env, code) = (env.clone(), first.clone());
        tokio::spawn(async move { redeem(&env, "erin", Some("k-1"), &code).await })
    };
    while proxy.seen(TWI).len() == from {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let next = redeem(&env, "erin", Some("k-2"), &second).await;
    next.assert_status(201);
    assert_eq!(next.body["is_new"], true);
    proxy.release();
    let late = stalled.await.unwrap();
    late.assert_status(201);
    assert_eq!(late.body["is_new"], false, "planned again after the other");
    assert_eq!(env.available("erin").await, 30);
    assert_eq!(env.full_ledger("erin").await.len(), 2);
}

/// An adjustment stalled between its read and its write holds nothing: the
/// next adjustment of the account goes through at once, and the stalled one,
/// when its transaction arrives, fails on the `seq` it read, re-plans against
/// the account as it is now and applies once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_adjust_blocks_nothing_and_applies_once() {
    let Some((env, proxy)) = TestEnv::with_faults(Clock::system()).await else {
        return;
    };
    let env = std::sync::Arc::new(env);
    proxy.inject(TWI, &[Fault::Hold]);
    let stalled = {
        let env = env.clone();
        tokio::spawn(async move {
            adjust(
                &env,
                "alice",
                Some("k-1"),
                &json!({"delta": 5, "reason": "a"}),
            )
            .await
        })
    };
    while proxy.seen(TWI).is_empty() {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let next = adjust(
        &env,
        "alice",
        Some("k-2"),
        &json!({"delta": 7, "reason": "b"}),
    )
    .await;
    next.assert_status(200);
    assert_eq!(next.body["current"], 7);
    proxy.release();
    let late = stalled.await.unwrap();
    late.assert_status(200);
    assert_eq!(
        late.body["current"], 12,
        "planned again on the moved account"
    );
    let replay = adjust(
        &env,
        "alice",
        Some("k-1"),
        &json!({"delta": 5, "reason": "a"}),
    )
    .await;
    assert_eq!(replay.headers.get(REPLAYED).unwrap(), "true");
    assert_eq!(replay.body, late.body);
    assert_eq!(env.available("alice").await, 12);
    assert_eq!(env.full_ledger("alice").await.len(), 2);
}

/// A daily limit of 10 on openai for `user`.
async fn limit_daily(env: &TestEnv, user: &str) {
    env.put(&format!("/v1/admin/users/{user}/quotas"))
        .as_admin()
        .json(&json!({"quotas": [{"platform": "openai", "daily_limit_usd": "10"}]}))
        .send()
        .await
        .assert_status(200);
}

async fn reserve(env: &TestEnv, user: &str, estimate: &str) -> TestResponse {
    env.post("/v1/quota/reservations")
        .as_service()
        .json(&json!({"user_id": user, "platform": "openai", "estimate_usd": estimate}))
        .send()
        .await
}

async fn reserved_today(env: &TestEnv, user: &str) -> Value {
    let check = env
        .post("/v1/quota/check")
        .as_service()
        .json(&json!({"user_id": user, "platform": "openai"}))
        .send()
        .await;
    check.assert_status(200);
    check.body["windows"]["daily"]["reserved_usd"].clone()
}

fn reservation_records(snapshot: &std::collections::BTreeMap<(String, String), String>) -> usize {
    snapshot
        .keys()
        .filter(|(pk, _)| pk.starts_with("RESERVATION#"))
        .count()
}

/// (f) Reservations go through the same path: a reserve whose answer is lost
/// is resent identically and holds once.
#[tokio::test]
async fn a_reservation_whose_answer_is_lost_holds_once() {
    let Some((env, proxy)) = TestEnv::with_faults(Clock::system()).await else {
        return;
    };
    limit_daily(&env, "alice").await;
    // A first reservation starts the windows, so the next one's first plan
    // (blind: no read) commits.
    reserve(&env, "alice", "1").await.assert_status(201);
    let from = proxy.seen(TWI).len();
    proxy.inject(TWI, &LOST_THEN_THROTTLED);
    let res = reserve(&env, "alice", "4").await;
    res.assert_status(201);
    assert_resent_identically(&proxy, from);
    proxy.heal();
    assert_eq!(reserved_today(&env, "alice").await, "5");
    assert_eq!(reservation_records(&env.table_snapshot().await), 2);
    env.assert_invariants().await;
}

/// (f') Cancelled after its lost commit: the next attempt meets its own
/// record (written once, under a fresh random id), so it answers 201 and
/// holds nothing twice.
#[tokio::test]
async fn a_reservation_cancelled_after_its_lost_commit_is_resolved_by_its_record() {
    let Some((env, proxy)) = TestEnv::with_faults(Clock::system()).await else {
        return;
    };
    limit_daily(&env, "alice").await;
    reserve(&env, "alice", "1").await.assert_status(201);
    proxy.inject(TWI, &LOST_THEN_CANCELLED);
    let res = reserve(&env, "alice", "4").await;
    res.assert_status(201);
    proxy.heal();
    let id = res.body["reservation_id"].as_str().unwrap();
    let stored = env
        .get(&format!("/v1/quota/reservations/{id}"))
        .as_service()
        .send()
        .await;
    assert_eq!(stored.body["status"], "pending", "{}", stored.text);
    assert_eq!(reserved_today(&env, "alice").await, "5");
    assert_eq!(reservation_records(&env.table_snapshot().await), 2);
    env.assert_invariants().await;
}

/// (f'') A void cancelled after its lost commit: the record says it was this
/// very release (its status and time), so the void answers 200, not 409
/// `reservation_not_pending`, and the hold is released once.
#[tokio::test]
async fn a_void_cancelled_after_its_lost_commit_answers_voided() {
    let Some((env, proxy)) = TestEnv::with_faults(Clock::system()).await else {
        return;
    };
    limit_daily(&env, "alice").await;
    let res = reserve(&env, "alice", "4").await;
    res.assert_status(201);
    let id = res.body["reservation_id"].as_str().unwrap().to_string();
    proxy.inject(TWI, &LOST_THEN_CANCELLED);
    let void = env
        .request("DELETE", &format!("/v1/quota/reservations/{id}"))
        .as_service()
        .send()
        .await;
    void.assert_status(200);
    assert_eq!(void.body["status"], "voided");
    proxy.heal();
    assert_eq!(reserved_today(&env, "alice").await, "0");
    env.request("DELETE", &format!("/v1/quota/reservations/{id}"))
        .as_service()
        .send()
        .await
        .assert_error(409, "reservation_not_pending");
    env.assert_invariants().await;
}
