//! Crashes (issue 14, item 3): an invocation killed after some of its writes
//! committed, then retried as its caller would (SQS redelivers the whole
//! batch; a client resends with the same `Idempotency-Key`). Exactly once
//! still holds: the invariants and the exact totals.
//!
//! The kill: the proxy lets the first writes through (the last of them
//! committed but its answer lost), then swallows every later write (never
//! applied, never answered) while the test aborts the task, as a Lambda
//! runtime killed at its timeout would leave things.

use super::redemption::one_code;
use chrono::{TimeZone, Utc};
use serde_json::{json, Value};
use spendguard_core::domain::Usd;
use spendguard_core::Clock;
use spendguard_tests::scenario::{sqs_messages, usage_event};
use spendguard_tests::{Fault, FaultProxy, TestEnv, TestRequest, TestResponse};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const TWI: &str = "TransactWriteItems";

fn manual_clock() -> Clock {
    Clock::manual(Utc.with_ymd_and_hms(2026, 3, 4, 10, 0, 0).unwrap())
}

/// Transactions 1..`commits` go through, the last of them committing with its
/// answer lost (`lose_last`) or answered; every later one is swallowed.
fn crash_after(proxy: &FaultProxy, commits: usize, lose_last: bool) {
    let seen = AtomicUsize::new(0);
    proxy.set_script(Box::new(move |op, _| {
        if op != TWI {
            return Fault::Forward;
        }
        let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
        match n.cmp(&commits) {
            std::cmp::Ordering::Less => Fault::Forward,
            std::cmp::Ordering::Equal if lose_last => Fault::ApplyThenDrop,
            std::cmp::Ordering::Equal => Fault::Forward,
            std::cmp::Ordering::Greater => Fault::Swallow,
        }
    }));
}

/// Runs `work` until the proxy has swallowed a transaction (or `work` ends),
/// then kills it; the proxy heals and closes what it swallowed.
async fn kill_when_swallowed<T: Send + 'static>(
    proxy: &FaultProxy,
    work: impl std::future::Future<Output = T> + Send + 'static,
) {
    let task = tokio::spawn(work);
    let started = std::time::Instant::now();
    while !task.is_finished() && !proxy.seen(TWI).iter().any(|s| s.fault == Fault::Swallow) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no write was swallowed"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    task.abort();
    let _ = task.await;
    proxy.heal();
    proxy.release();
}

/// Resends until the answer is definitive, waiting out (on the manual
/// clock) the key lease or redeem lock the killed request left behind.
async fn retry<'a>(env: &'a TestEnv, send: impl Fn() -> TestRequest<'a>) -> TestResponse {
    for _ in 0..20 {
        let res = send().send().await;
        let wait = match res.error_code() {
            Some("idempotency_key_in_use") => 31,
            Some("redemption_in_progress") => 11,
            _ if res.status == 503 => 0,
            _ => return res,
        };
        env.clock
            .set(env.clock.now() + chrono::Duration::seconds(wait));
    }
    panic!("never settled");
}

async fn event_records(env: &TestEnv) -> usize {
    env.scan_items()
        .await
        .iter()
        .filter(|i| i["pk"].as_s().is_ok_and(|p| p.starts_with("EVENT#")))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_usage_batch_killed_mid_way_then_redelivered_applies_each_event_once() {
    for (commits, lose_last) in [(1, true), (2, false), (3, true), (5, true)] {
        let Some((env, proxy)) = TestEnv::with_faults(manual_clock()).await else {
            return;
        };
        let env = Arc::new(env);
        let now = env.clock.now();
        let users = ["ann", "bob", "cyd"];
        for user in users {
            env.post(&format!("/v1/admin/users/{user}/credits/adjust"))
                .as_admin()
                .json(&json!({"delta": 1000, "reason": "opening"}))
                .send()
                .await
                .assert_status(200);
        }
        let reservation = env
            .post("/v1/quota/reservations")
            .as_service()
            .json(
                &json!({"user_id": "bob", "platform": "openai", "estimate_usd": "3", "credits": 2}),
            )
            .send()
            .await;
        reservation.assert_status(201);
        let mut usage = std::collections::BTreeMap::<(String, String), Usd>::new();
        let mut spent = std::collections::BTreeMap::<String, i64>::new();
        // One event per user and platform first, so each quota item has its
        // windows and every write of the batch commits on its first plan:
        // the first `commits` transactions are the first `commits` writes.
        let mut warm_up = Vec::new();
        for user in users {
            for platform in ["openai", "gemini"] {
                warm_up.push(usage_event(
                    &format!("w-{user}-{platform}"),
                    user,
                    platform,
                    "0.01",
                    now,
                ));
                usage.insert((user.into(), platform.into()), Usd::from_atoms(100_000_000));
            }
        }
        env.ingest_all(&warm_up).await;
        // Several writes: per user and platform, and each event with credits
        // or settling a reservation alone.
        let mut messages: Vec<(String, Value)> = Vec::new();
        for i in 0..12 {
            let (user, platform) = (users[i % 3], ["openai", "gemini"][i % 2]);
            let cost = Usd::from_atoms((i as i128 + 1) * 1_234_567_891);
            let mut event = usage_event(&format!("e-{i}"), user, platform, &cost.to_string(), now);
            if i % 4 == 1 {
                event["credits"] = json!(i);
                *spent.entry(user.into()).or_default() += i as i64;
            }
            if i == 4 {
                assert_eq!((user, platform), ("bob", "openai"));
                event["reservation_id"] = reservation.body["reservation_id"].clone();
            }
            *usage.entry((user.into(), platform.into())).or_default() = usage
                .get(&(user.into(), platform.into()))
                .copied()
                .unwrap_or_default()
                + cost;
            messages.push((format!("m-{i}"), event));
        }
        crash_after(&proxy, commits, lose_last);
        let killed = {
            let (env, batch) = (env.clone(), sqs_messages(&messages));
            async move { env.gateway.functions().usage_ingest.process(batch).await }
        };
        kill_when_swallowed(&proxy, killed).await;
        let applied = event_records(&env).await - warm_up.len();
        assert!(
            applied > 0 && applied < messages.len(),
            "killed after {commits} commits: {applied} events applied, not a partial batch"
        );
        // SQS delivers every message again (the invocation never answered),
        // not necessarily in the same batches: here in another order and in
        // two batches, so no write repeats the killed one's content and only
        // the event records (not the engine's ClientRequestToken) can tell
        // what was applied.
        let mut again = messages.clone();
        again.reverse();
        let (first, second) = again.split_at(again.len() / 2);
        let (mut applied_now, mut duplicates) = (0, 0);
        for part in [first, second] {
            let outcome = env
                .gateway
                .functions()
                .usage_ingest
                .process(sqs_messages(part))
                .await;
            assert!(
                outcome.response.batch_item_failures.is_empty(),
                "{:?}",
                outcome.report
            );
            applied_now += outcome.report.applied;
            duplicates += outcome.report.duplicates;
        }
        // (A write alone, e.g. an event with credits, can still repeat its
        // content and token: the engine answers it with its earlier
        // success, which the report counts as applied.)
        assert!(
            duplicates <= applied,
            "{duplicates} duplicates of {applied}"
        );
        assert_eq!(applied_now + duplicates, messages.len());
        assert_eq!(event_records(&env).await, warm_up.len() + messages.len());
        env.assert_invariants().await;
        for ((user, platform), expected) in usage {
            let q = env.check_mine(&user, &platform).await;
            assert_eq!(
                q["windows"]["daily"]["usage_usd"],
                expected.to_string(),
                "{user} {platform}"
            );
        }
        for user in users {
            let spent = spent.get(user).copied().unwrap_or(0);
            assert_eq!(env.available(user).await, 1000 - spent, "{user}");
        }
        let r = env
            .get(&format!(
                "/v1/quota/reservations/{}",
                reservation.body["reservation_id"].as_str().unwrap()
            ))
            .as_service()
            .send()
            .await;
        assert_eq!(r.body["status"], "settled", "{}", r.text);
    }
}

/// Killed before its write was sent, and killed right after it committed:
/// the retry with the same key redeems once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redeem_killed_between_its_read_and_its_write_redeems_once_on_retry() {
    for lose_write in [false, true] {
        let Some((env, proxy)) = TestEnv::with_faults(manual_clock()).await else {
            return;
        };
        let env = Arc::new(env);
        let code = one_code(&env, 10, 5).await;
        // Commit the first transaction only when it is the one to lose.
        crash_after(&proxy, usize::from(lose_write), lose_write);
        let killed = {
            let (env, code) = (env.clone(), code.clone());
            async move {
                env.post("/v1/me/redemptions")
                    .as_user("alice")
                    .header("idempotency-key", "r-1")
                    .json(&json!({"code": code}))
                    .send()
                    .await
            }
        };
        kill_when_swallowed(&proxy, killed).await;
        // Killed where intended: before its write, or with it committed.
        let before = if lose_write { 10 } else { 0 };
        assert_eq!(env.available("alice").await, before);
        let body = json!({"code": code});
        let res = retry(&env, || {
            env.post("/v1/me/redemptions")
                .as_user("alice")
                .header("idempotency-key", "r-1")
                .json(&body)
        })
        .await;
        res.assert_status(201);
        assert_eq!(res.body["credits_granted"], 10, "{}", res.text);
        let again = retry(&env, || {
            env.post("/v1/me/redemptions")
                .as_user("alice")
                .header("idempotency-key", "r-1")
                .json(&body)
        })
        .await;
        again.assert_status(201);
        assert_eq!(again.body, res.body);
        assert_eq!(env.available("alice").await, 10);
        assert_eq!(env.full_ledger("alice").await.len(), 1);
        env.assert_invariants().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adjust_killed_between_its_read_and_its_write_applies_once_on_retry() {
    for lose_write in [false, true] {
        let Some((env, proxy)) = TestEnv::with_faults(manual_clock()).await else {
            return;
        };
        let env = Arc::new(env);
        crash_after(&proxy, usize::from(lose_write), lose_write);
        let body = json!({"delta": 25, "reason": "grant"});
        let killed = {
            let (env, body) = (env.clone(), body.clone());
            async move {
                env.post("/v1/admin/users/alice/credits/adjust")
                    .as_admin()
                    .header("idempotency-key", "a-1")
                    .json(&body)
                    .send()
                    .await
            }
        };
        kill_when_swallowed(&proxy, killed).await;
        let before = if lose_write { 25 } else { 0 };
        assert_eq!(env.available("alice").await, before);
        let send = || {
            env.post("/v1/admin/users/alice/credits/adjust")
                .as_admin()
                .header("idempotency-key", "a-1")
                .json(&body)
        };
        let res = retry(&env, send).await;
        res.assert_status(200);
        assert_eq!(res.body["current"], 25, "{}", res.text);
        let again = retry(&env, send).await;
        assert_eq!(again.body, res.body);
        assert_eq!(env.available("alice").await, 25);
        assert_eq!(env.full_ledger("alice").await.len(), 1);
        env.assert_invariants().await;
    }
}
