//! Reservations (issue 11): reserve → settle (usage event) / void / expire,
//! against the real engine through the harness.

use chrono::{DateTime, Utc};
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
        env.ingest_all(chunk).await;
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
    env.assert_invariants().await;
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
        env.ingest_all(chunk).await;
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

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

async fn manual_env(now: &str) -> TestEnv {
    TestEnv::build(|_| {}, Clock::manual(at(now))).await
}

async fn get_reservation(env: &TestEnv, id: &str) -> Value {
    let r = env
        .get(&format!("/v1/quota/reservations/{id}"))
        .as_service()
        .send()
        .await;
    r.assert_status(200);
    r.body
}

async fn reserve_ok(env: &TestEnv, body: Value) -> String {
    let (status, body) = reserve(env, body).await;
    assert_eq!(status, 201, "{body}");
    body["reservation_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn void_twice_is_200_then_409_and_a_settle_after_it_applies_as_a_plain_event() {
    let env = TestEnv::new().await;
    set_daily_limit(&env, USER, json!("10")).await;
    let id = reserve_ok(&env, reserve_body(USER, "4")).await;
    assert_eq!(daily(&env, USER).await["reserved_usd"], "4");

    let before = env.store.stats().requests();
    let first = env
        .request("DELETE", &format!("/v1/quota/reservations/{id}"))
        .as_service()
        .send()
        .await;
    first.assert_status(200);
    assert_eq!(first.body["status"], "voided");
    let void_requests = env.store.stats().requests() - before;
    assert!(void_requests <= 2, "void took {void_requests} requests");
    env.request("DELETE", &format!("/v1/quota/reservations/{id}"))
        .as_service()
        .send()
        .await
        .assert_error(409, "reservation_not_pending");
    let d = daily(&env, USER).await;
    assert_eq!(
        (d["usage_usd"].clone(), d["reserved_usd"].clone()),
        (json!("0"), json!("0"))
    );

    // The gateway's usage event still arrives: applied as a plain event.
    env.ingest_all(&[event("v-1", USER, "1.5", env.clock.now(), Some(&id))])
        .await;
    let d = daily(&env, USER).await;
    assert_eq!(
        (d["usage_usd"].clone(), d["reserved_usd"].clone()),
        (json!("1.5"), json!("0"))
    );
    assert_eq!(get_reservation(&env, &id).await["status"], "voided");
    // Unknown ids too.
    env.ingest_all(&[event(
        "v-2",
        USER,
        "1",
        env.clock.now(),
        Some("rsv-1-2-0-nope"),
    )])
    .await;
    env.ingest_all(&[event("v-3", USER, "1", env.clock.now(), Some("not-ours"))])
        .await;
    assert_eq!(daily(&env, USER).await["usage_usd"], "3.5");
    env.get("/v1/quota/reservations/not-ours")
        .as_service()
        .send()
        .await
        .assert_error(404, "reservation_not_found");
    env.get(&format!("/v1/quota/reservations/{id}"))
        .as_user(USER)
        .send()
        .await
        .assert_error(403, "forbidden");
    env.assert_invariants().await;
}

#[tokio::test]
async fn redelivered_and_concurrent_settle_events_apply_once_and_settling_adds_no_request() {
    let env = Arc::new(TestEnv::new().await);
    set_daily_limit(&env, USER, json!("10")).await;
    let id = reserve_ok(&env, reserve_body(USER, "1")).await;
    // Warm the window (the first usage write of the day).
    let other = reserve_ok(&env, reserve_body(USER, "1")).await;

    let e = event("s-1", USER, "1.25", env.clock.now(), Some(&id));
    let before = env.store.stats().requests();
    env.ingest_all(std::slice::from_ref(&e)).await;
    assert_eq!(
        env.store.stats().requests() - before,
        1,
        "settling is part of the event's one write"
    );
    // Redelivered, concurrently and in one batch.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let (env, e) = (env.clone(), e.clone());
        tasks.spawn(async move { env.ingest_all(&[e.clone(), e]).await });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let d = daily(&env, USER).await;
    assert_eq!(d["usage_usd"], "1.25");
    assert_eq!(d["reserved_usd"], "1", "only the other hold is left");
    let r = get_reservation(&env, &id).await;
    assert_eq!(r["status"], "settled");
    assert_eq!(r["settled_cost_usd"], "1.25");
    assert_eq!(r["overage_usd"], "0.25");
    assert_eq!(r["event_id"], "s-1");

    // Two different events naming one reservation, concurrently: one settles it,
    // the other applies as a plain event.
    let a = event("c-a", USER, "0.5", env.clock.now(), Some(&other));
    let b = event("c-b", USER, "0.5", env.clock.now(), Some(&other));
    let (ea, eb) = (env.clone(), env.clone());
    let (ra, rb) = tokio::join!(
        tokio::spawn(async move { ea.ingest_all(&[a]).await }),
        tokio::spawn(async move { eb.ingest_all(&[b]).await })
    );
    ra.unwrap();
    rb.unwrap();
    let d = daily(&env, USER).await;
    assert_eq!(
        (d["usage_usd"].clone(), d["reserved_usd"].clone()),
        (json!("2.25"), json!("0"))
    );
    assert_eq!(get_reservation(&env, &other).await["status"], "settled");
    env.assert_invariants().await;
}

#[tokio::test]
async fn the_expiry_function_releases_unsettled_holds_and_nothing_else() {
    let env = manual_env("2026-11-21T10:00:00Z").await;
    set_daily_limit(&env, USER, json!("10")).await;
    env.ingest_all(&[event("x-0", USER, "2", env.clock.now(), None)])
        .await;
    let id = reserve_ok(
        &env,
        json!({"user_id": USER, "platform": PLATFORM, "estimate_usd": "3", "ttl_seconds": 10}),
    )
    .await;
    let kept = reserve_ok(
        &env,
        json!({"user_id": USER, "platform": PLATFORM, "estimate_usd": "1", "ttl_seconds": 600}),
    )
    .await;
    let expiry = &env.gateway.functions().reservation_expiry;
    assert_eq!(expiry.run().await.unwrap(), 0, "nothing is due yet");
    assert_eq!(daily(&env, USER).await["reserved_usd"], "4");

    env.clock.set(at("2026-11-21T10:00:11Z"));
    assert_eq!(expiry.run().await.unwrap(), 1);
    assert_eq!(expiry.run().await.unwrap(), 0, "released once");
    let d = daily(&env, USER).await;
    assert_eq!(
        (d["usage_usd"].clone(), d["reserved_usd"].clone()),
        (json!("2"), json!("1"))
    );
    assert_eq!(get_reservation(&env, &id).await["status"], "expired");
    assert_eq!(get_reservation(&env, &kept).await["status"], "pending");
    env.request("DELETE", &format!("/v1/quota/reservations/{id}"))
        .as_service()
        .send()
        .await
        .assert_error(409, "reservation_not_pending");
    // Its late usage event: a plain event.
    env.ingest_all(&[event(
        "x-1",
        USER,
        "3",
        at("2026-11-21T10:00:05Z"),
        Some(&id),
    )])
    .await;
    let d = daily(&env, USER).await;
    assert_eq!(
        (d["usage_usd"].clone(), d["reserved_usd"].clone()),
        (json!("5"), json!("1"))
    );

    // Expiry also through the scheduled entry, and holds to 0.
    env.clock.set(at("2026-11-21T10:11:00Z"));
    let out = env
        .invoke("reservation-expiry", &json!({"source": "aws.events"}))
        .await;
    out.assert_status(200);
    assert_eq!(out.body["released"], 1, "{}", out.text);
    assert_eq!(daily(&env, USER).await["reserved_usd"], "0");
}

#[tokio::test]
async fn credit_holds_never_exceed_the_balance_and_only_settlement_writes_the_ledger() {
    let env = Arc::new(TestEnv::new().await);
    env.post(&format!("/v1/admin/users/{USER}/credits/adjust"))
        .as_admin()
        .json(&json!({"delta": 100, "reason": "test"}))
        .send()
        .await
        .assert_status(200);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..30 {
        let env = env.clone();
        tasks.spawn(async move {
            reserve(&env, json!({"user_id": USER, "platform": PLATFORM, "estimate_usd": "0.01", "credits": 10})).await
        });
    }
    let mut admitted = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (status, body) = done.unwrap();
        if status == 201 {
            admitted.push(body["reservation_id"].as_str().unwrap().to_string());
        } else {
            assert_eq!(
                (status, body["reason"].clone()),
                (200, json!("insufficient_credits")),
                "{body}"
            );
        }
    }
    assert_eq!(admitted.len(), 10, "100 credits hold exactly 10 x 10");
    assert_eq!(
        env.full_ledger(USER).await.len(),
        1,
        "holds write no ledger entry"
    );

    // Settle one consuming 7 credits: a consume entry; its hold of 10 is released.
    let mut e = event("cr-1", USER, "0.01", env.clock.now(), Some(&admitted[0]));
    e["credits"] = json!(7);
    env.ingest_all(&[e]).await;
    let ledger = env.full_ledger(USER).await;
    assert_eq!(ledger.len(), 2);
    let consume: Vec<&Value> = ledger.iter().filter(|e| e["type"] == "consume").collect();
    assert_eq!(consume.len(), 1, "{ledger:?}");
    assert_eq!(consume[0]["amount"], -7);
    assert_eq!(env.available(USER).await, 93);
    // 93 available, 90 still held: 3 free.
    let (status, body) = reserve(
        &env,
        json!({"user_id": USER, "platform": PLATFORM, "estimate_usd": "0", "credits": 4}),
    )
    .await;
    assert_eq!(
        (status, body["reason"].clone()),
        (200, json!("insufficient_credits"))
    );
    reserve_ok(
        &env,
        json!({"user_id": USER, "platform": PLATFORM, "estimate_usd": "0", "credits": 3}),
    )
    .await;
    // Voiding gives credits back to the free balance.
    env.request("DELETE", &format!("/v1/quota/reservations/{}", admitted[1]))
        .as_service()
        .send()
        .await
        .assert_status(200);
    reserve_ok(
        &env,
        json!({"user_id": USER, "platform": PLATFORM, "estimate_usd": "0", "credits": 10}),
    )
    .await;
    assert_eq!(env.full_ledger(USER).await.len(), 2);
    env.assert_invariants().await;
}

#[tokio::test]
async fn defined_outcomes_rollover_limits_reset_no_item_unlimited_disabled() {
    let env = manual_env("2026-11-21T23:59:50Z").await;
    // No quota item: unlimited, admitted; the hold shows.
    let id = reserve_ok(&env, reserve_body("nobody", "1000")).await;
    assert_eq!(daily(&env, "nobody").await["reserved_usd"], "1000");
    assert_eq!(daily(&env, "nobody").await["limit_usd"], Value::Null);
    env.request("DELETE", &format!("/v1/quota/reservations/{id}"))
        .as_service()
        .send()
        .await
        .assert_status(200);

    // Limit 0: platform_disabled, nothing held.
    set_daily_limit(&env, "zero", json!("0")).await;
    let (status, body) = reserve(&env, reserve_body("zero", "0.01")).await;
    assert_eq!(
        (status, body["reason"].clone()),
        (200, json!("platform_disabled"))
    );
    assert_eq!(daily(&env, "zero").await["reserved_usd"], "0");

    // Rollover while a hold is pending: the new day holds nothing of it.
    set_daily_limit(&env, USER, json!("10")).await;
    let old = reserve_ok(&env, reserve_body(USER, "8")).await;
    let (status, body) = reserve(&env, reserve_body(USER, "3")).await;
    assert_eq!(
        (status, body["reason"].clone()),
        (200, json!("daily_quota_exhausted"))
    );
    env.clock.set(at("2026-11-22T00:00:10Z"));
    assert_eq!(daily(&env, USER).await["reserved_usd"], "0");
    let new = reserve_ok(&env, reserve_body(USER, "9")).await;
    // The old hold settles with yesterday's event: the new day is untouched.
    env.ingest_all(&[event(
        "r-1",
        USER,
        "8",
        at("2026-11-21T23:59:55Z"),
        Some(&old),
    )])
    .await;
    let d = daily(&env, USER).await;
    assert_eq!(
        (d["usage_usd"].clone(), d["reserved_usd"].clone()),
        (json!("0"), json!("9"))
    );
    assert_eq!(get_reservation(&env, &old).await["status"], "settled");

    // Limit changes while holds exist: lowering below the holds refuses all.
    set_daily_limit(&env, USER, json!("5")).await;
    let d = daily(&env, USER).await;
    assert_eq!(
        (d["reserved_usd"].clone(), d["remaining_usd"].clone()),
        (json!("9"), json!("0"))
    );
    let (status, _) = reserve(&env, reserve_body(USER, "0.01")).await;
    assert_eq!(status, 200);
    set_daily_limit(&env, USER, json!("20")).await;
    reserve_ok(&env, reserve_body(USER, "11")).await;
    let (status, _) = reserve(&env, reserve_body(USER, "0.01")).await;
    assert_eq!(status, 200, "20 = 9 + 11 held");

    // Admin reset zeroes usage, keeps the holds.
    env.ingest_all(&[event("r-2", USER, "2", env.clock.now(), Some(&new))])
        .await;
    let d = daily(&env, USER).await;
    assert_eq!(
        (d["usage_usd"].clone(), d["reserved_usd"].clone()),
        (json!("2"), json!("11"))
    );
    env.post(&format!("/v1/admin/users/{USER}/quotas/{PLATFORM}/reset"))
        .as_admin()
        .json(&json!({"window": "daily"}))
        .send()
        .await
        .assert_status(200);
    let d = daily(&env, USER).await;
    assert_eq!(
        (
            d["usage_usd"].clone(),
            d["reserved_usd"].clone(),
            d["remaining_usd"].clone()
        ),
        (json!("0"), json!("11"), json!("9"))
    );
    reserve_ok(&env, reserve_body(USER, "9")).await;

    // Unlimited: admitted whatever the amount.
    set_daily_limit(&env, USER, Value::Null).await;
    reserve_ok(&env, reserve_body(USER, "1000000")).await;
}

#[tokio::test]
async fn reserve_replays_an_idempotency_key_and_refuses_bad_input() {
    let env = TestEnv::new().await;
    let send = |body: Value, key: &'static str| {
        env.post("/v1/quota/reservations")
            .as_service()
            .header("idempotency-key", key)
            .json(&body)
            .send()
    };
    let first = send(reserve_body(USER, "1"), "k-1").await;
    first.assert_status(201);
    let again = send(reserve_body(USER, "1"), "k-1").await;
    again.assert_status(201);
    assert_eq!(again.body["reservation_id"], first.body["reservation_id"]);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(daily(&env, USER).await["reserved_usd"], "1", "held once");
    send(reserve_body(USER, "2"), "k-1")
        .await
        .assert_error(422, "idempotency_key_mismatch");
    // Whole numbers however spelled, as JSON Schema's `integer` (the fuzzer's find).
    let spelled = send(
        json!({"user_id": USER, "platform": PLATFORM, "estimate_usd": "0.5",
               "credits": 0.0, "ttl_seconds": 6e1}),
        "k-spelled",
    )
    .await;
    spelled.assert_status(201);
    assert_eq!(spelled.body["credits"], 0, "{}", spelled.text);
    for (body, code) in [
        (
            json!({"user_id": USER, "platform": PLATFORM, "estimate_usd": "-1"}),
            "invalid_amount",
        ),
        (
            json!({"user_id": USER, "platform": "x", "estimate_usd": "1"}),
            "unknown_platform",
        ),
        (
            json!({"user_id": USER, "platform": PLATFORM}),
            "invalid_request",
        ),
        (
            json!({"user_id": USER, "platform": PLATFORM, "estimate_usd": "1", "ttl_seconds": 5}),
            "invalid_request",
        ),
    ] {
        env.post("/v1/quota/reservations")
            .as_service()
            .json(&body)
            .send()
            .await
            .assert_error(400, code);
    }
    env.post("/v1/quota/reservations")
        .as_user(USER)
        .json(&reserve_body(USER, "1"))
        .send()
        .await
        .assert_error(403, "forbidden");
}

/// A terminal for the CLI that is not interactive.
struct NoTerminal;

impl spendguard_admin::Terminal for NoTerminal {
    fn is_interactive(&self) -> bool {
        false
    }

    fn confirm(&mut self, _question: &str) -> std::io::Result<bool> {
        Ok(false)
    }
}

#[tokio::test]
async fn the_cli_lists_a_users_pending_reservations() {
    let env = TestEnv::new().await;
    let kept = reserve_ok(&env, reserve_body(USER, "0.25")).await;
    let voided = reserve_ok(&env, reserve_body(USER, "0.5")).await;
    reserve_ok(&env, reserve_body("bob", "1")).await;
    env.request("DELETE", &format!("/v1/quota/reservations/{voided}"))
        .as_service()
        .send()
        .await
        .assert_status(200);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let args = ["spendguard-admin", "reservations", "pending", USER];
    let code = spendguard_admin::run(args, &env.deps(), &mut NoTerminal, &mut out, &mut err).await;
    let out = String::from_utf8(out).unwrap();
    assert_eq!(code, spendguard_admin::EXIT_OK, "{out}");
    assert!(out.contains(&kept) && out.contains("0.25"), "{out}");
    assert!(!out.contains(&voided), "{out}");
    assert_eq!(out.lines().count(), 2, "{out}");
}

/// A usage event naming a forged reservation id whose instant lies beyond the
/// calendar used to crash ingest (window arithmetic overflowed): it applies as
/// a plain event, as an unknown reservation does.
#[tokio::test]
async fn an_event_naming_a_reservation_id_beyond_the_calendar_applies_as_a_plain_event() {
    let env = TestEnv::new().await;
    let forged = "rsv-8210266876799999-10000000000-0-forged";
    env.ingest_all(&[event("forged-1", USER, "0.25", Utc::now(), Some(forged))])
        .await;
    assert_eq!(daily(&env, USER).await["usage_usd"], "0.25");
}

/// `GET /v1/admin/users/{user_id}/reservations`: the user's pending
/// reservations (the CLI's read), soonest expiry first, in pages; finished
/// ones and other users' are not listed.
#[tokio::test]
async fn an_admin_lists_a_users_pending_reservations_in_pages() {
    let env = manual_env("2026-05-04T10:00:00Z").await;
    let mut ids = Vec::new();
    for (estimate, ttl) in [("0.3", 300), ("0.1", 60), ("0.2", 120), ("0.4", 600)] {
        let mut body = reserve_body(USER, estimate);
        body["ttl_seconds"] = json!(ttl);
        ids.push(reserve_ok(&env, body).await);
    }
    let bobs = reserve_ok(&env, reserve_body("bob", "1")).await;
    env.request("DELETE", &format!("/v1/quota/reservations/{}", ids[3]))
        .as_service()
        .send()
        .await
        .assert_status(200);
    let list = |query: String| {
        let env = &env;
        async move {
            let res = env
                .get(&format!("/v1/admin/users/{USER}/reservations{query}"))
                .as_admin()
                .send()
                .await;
            res.assert_status(200);
            res.body
        }
    };

    let first = list("?limit=2".into()).await;
    let items = first["items"].as_array().unwrap();
    // Soonest expiry first: the 60 s hold, then the 120 s one.
    assert_eq!(items.len(), 2, "{first}");
    assert_eq!(items[0]["reservation_id"].as_str(), Some(ids[1].as_str()));
    assert_eq!(items[1]["reservation_id"].as_str(), Some(ids[2].as_str()));
    assert_eq!(items[0]["estimate_usd"], "0.1");
    assert_eq!(items[0]["status"], "pending");
    assert_eq!(items[0]["user_id"], USER);
    assert_eq!(items[0]["expires_at"], "2026-05-04T10:01:00Z");
    assert_eq!(items[0], get_reservation(&env, &ids[1]).await);
    let cursor = first["next_cursor"].as_str().expect("a second page");
    let second = list(format!("?limit=2&status=pending&cursor={cursor}")).await;
    let rest: Vec<&str> = second["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reservation_id"].as_str().unwrap())
        .collect();
    // The voided one and bob's are not listed; the last page says so.
    assert_eq!(rest, [ids[0].as_str()]);
    assert_eq!(second["next_cursor"], Value::Null);
    let whole = list(String::new()).await;
    assert_eq!(whole["items"].as_array().unwrap().len(), 3);
    assert!(!whole.to_string().contains(&bobs));

    // A hold settled by its usage event leaves the list.
    env.ingest_all(&[event(
        "settles-1",
        USER,
        "0.05",
        env.clock.now(),
        Some(&ids[1]),
    )])
    .await;
    let after = list("?limit=100".into()).await;
    assert_eq!(after["items"].as_array().unwrap().len(), 2, "{after}");
    assert!(!after.to_string().contains(&ids[1]));

    // An unknown user has none: one empty page, the last.
    let nobody = env
        .admin_pages("/v1/admin/users/nobody/reservations?limit=5")
        .await;
    assert_eq!(nobody, [Vec::<Value>::new()]);

    for (query, code) in [
        ("status=voided", "invalid_request"),
        ("status=sometimes", "invalid_request"),
        ("status=", "invalid_request"),
        ("limit=0", "invalid_request"),
        ("cursor=zzz", "invalid_request"),
        // A cursor of another list is not one of this list.
        ("cursor=eyJwayI6IlVTRVIjYWxpY2UifQ", "invalid_request"),
    ] {
        env.get(&format!("/v1/admin/users/{USER}/reservations?{query}"))
            .as_admin()
            .send()
            .await
            .assert_error(400, code);
    }
    env.get("/v1/admin/users/a%20b/reservations")
        .as_admin()
        .send()
        .await
        .assert_error(400, "invalid_id");
    env.get(&format!("/v1/admin/users/{USER}/reservations"))
        .as_service()
        .send()
        .await
        .assert_error(403, "forbidden");
}
