//! Exact sums: concurrent and redelivered events, 100,000 tiny amounts, very large totals, and the steady-state request cost.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousand_concurrent_events_sum_exactly_and_redelivery_changes_nothing() {
    let env = Arc::new(env_at("2026-11-20T12:00:00Z", "UTC").await);
    set_limits(&env, "alice", "openai", [Some("100000"), None, Some("0")]).await;
    let mut rng = rand::thread_rng();
    let mut total = Usd::ZERO;
    let mut bodies = Vec::new();
    for i in 0..1000 {
        let cost = random_cost(&mut rng);
        total = total + cost;
        let when = at("2026-11-20T00:00:00Z") + Duration::seconds(i * 40);
        bodies.push(body(
            &format!("evt-{i}"),
            "alice",
            "openai",
            &cost.to_string(),
            when,
        ));
    }
    // SQS batches of 10 from 50 concurrent invocations.
    let batches: Vec<Vec<String>> = bodies.chunks(10).map(<[String]>::to_vec).collect();
    let failed = ingest_concurrently(&env, batches, 50).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(usage(&env, "alice", "openai").await, [total; 3]);

    // Every event three more times, shuffled across batches (so some batches
    // carry the same event twice), again concurrently.
    let mut again: Vec<String> = bodies
        .iter()
        .flat_map(|b| [b.clone(), b.clone(), b.clone()])
        .collect();
    again.shuffle(&mut rng);
    let batches: Vec<Vec<String>> = again.chunks(10).map(<[String]>::to_vec).collect();
    let failed = ingest_concurrently(&env, batches, 50).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(usage(&env, "alice", "openai").await, [total; 3]);
    let c = env.check_mine("alice", "openai").await;
    let remaining = Usd::from_whole(100_000) - total;
    assert_eq!(
        c["windows"]["daily"]["remaining_usd"],
        remaining.to_string(),
        "{c}"
    );
    assert_eq!(c["windows"]["weekly"]["remaining_usd"], Value::Null, "{c}");
    assert_eq!(c["reason"], "platform_disabled", "{c}");
    // Nothing leaked to other platforms or users.
    assert_eq!(usage(&env, "alice", "gemini").await, [Usd::ZERO; 3]);
    assert_eq!(usage(&env, "bob", "openai").await, [Usd::ZERO; 3]);
    env.assert_invariants().await;
}

/// Events per run of the 100,000-event test; `SPENDGUARD_TINY_EVENTS` scales
/// it down for slow external endpoints (the default run does all of them).
fn tiny_event_count() -> usize {
    std::env::var("SPENDGUARD_TINY_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_thousand_tiny_events_sum_exactly() {
    let env = Arc::new(env_at("2026-11-20T12:00:00Z", "UTC").await);
    let count = tiny_event_count();
    let started = std::time::Instant::now();
    let requests_before = env.store.stats().requests();
    let bodies: Vec<String> = (0..count)
        .map(|i| {
            let when = at("2026-11-20T11:00:00Z") + Duration::milliseconds(i as i64);
            body(
                &format!("tiny-{i}"),
                "carol",
                "anthropic",
                "0.0000000001",
                when,
            )
        })
        .collect();
    // Lambda batches of 1,000 (an SQS event source allows up to 10,000 with a
    // batching window), four invocations at a time.
    let batches: Vec<Vec<String>> = bodies.chunks(1000).map(<[String]>::to_vec).collect();
    let failed = ingest_concurrently(&env, batches, 4).await;
    assert!(failed.is_empty(), "{} failed", failed.len());
    let expected = Usd::from_atoms(count as i128);
    assert_eq!(usage(&env, "carol", "anthropic").await, [expected; 3]);
    if count == 100_000 {
        assert_eq!(expected.to_string(), "0.00001");
    }
    let requests = env.store.stats().requests() - requests_before;
    eprintln!(
        "{count} tiny events in {:?}: {requests} DynamoDB requests ({:.4}/event)",
        started.elapsed(),
        requests as f64 / count as f64
    );
    assert!(
        requests as usize <= count,
        "{requests} requests for {count} events"
    );
    // Coalescing: one transaction per 99 events of a user and platform.
    assert!(
        requests as usize <= count / 50,
        "{requests} requests for {count} events"
    );
}

#[tokio::test]
async fn steady_state_costs_at_most_one_request_per_event() {
    let env = env_at("2026-11-21T12:00:00Z", "UTC").await;
    let t = at("2026-11-21T11:00:00Z");
    // The first event creates the quota item (a rollover from nothing: two requests).
    let first = ingest_ok(&env, &[body("warm", "hal", "openai", "1", t)]).await;
    assert_eq!(first.writes.requests, 2, "{first:?}");

    // One event per batch: one request each.
    let before = env.store.stats().requests();
    let mut expected = usd("1");
    for i in 0..20 {
        let cost = Usd::from_atoms(i + 1);
        expected = expected + cost;
        let report = ingest_ok(
            &env,
            &[body(
                &format!("one-{i}"),
                "hal",
                "openai",
                &cost.to_string(),
                t,
            )],
        )
        .await;
        assert_eq!(report.writes.requests, 1, "{report:?}");
        assert_eq!(report.writes.transactions, 1);
        assert!(report.writes.write_units_tenths > 0, "{report:?}");
    }
    assert_eq!(env.store.stats().requests() - before, 20);

    // Batches of 10 (the SQS maximum), two users and two platforms: one request
    // per user and platform in the batch.
    let before = env.store.stats().requests();
    let mut events = 0;
    for b in 0..10 {
        let bodies: Vec<String> = (0..10)
            .map(|i| {
                let platform = if i % 2 == 0 { "openai" } else { "anthropic" };
                let user = if i < 5 { "hal" } else { "ivy" };
                body(&format!("b{b}-{i}"), user, platform, "0.5", t)
            })
            .collect();
        events += bodies.len();
        let report = ingest_ok(&env, &bodies).await;
        if b > 0 {
            // Every group's quota item exists after the first batch.
            assert_eq!(report.writes.requests, 4, "{report:?}");
        }
    }
    let requests = env.store.stats().requests() - before;
    assert!(
        requests as usize <= events,
        "{requests} requests for {events} events"
    );
    assert_eq!(
        requests,
        4 * 10 + 3,
        "three quota items created in the first batch"
    );
    assert_eq!(
        usage(&env, "hal", "openai").await,
        [expected + usd("15"); 3]
    );
}

#[tokio::test]
async fn usage_summed_past_the_largest_input_amount_still_reads_and_resets() {
    // Each cost is a valid amount (below 10^18 USD); their stored sum is not
    // one. The quota item must stay readable: checks deny instead of failing,
    // and an admin can still reset the window.
    let env = env_at("2026-11-21T12:00:00Z", "UTC").await;
    set_limits(&env, "max", "openai", [Some("100"), None, None]).await;
    let t = at("2026-11-21T11:00:00Z");
    let huge = "600000000000000000";
    ingest_ok(&env, &[body("huge-1", "max", "openai", huge, t)]).await;
    ingest_ok(&env, &[body("huge-2", "max", "openai", huge, t)]).await;
    // Merged into one write, such events apply as they do one by one.
    let report = ingest_ok(
        &env,
        &[
            body("huge-3", "max", "gemini", huge, t),
            body("huge-4", "max", "gemini", huge, t),
        ],
    )
    .await;
    assert_eq!(report.applied, 2);
    let c = env.check_mine("max", "gemini").await;
    for w in ["daily", "weekly", "monthly"] {
        assert_eq!(c["windows"][w]["usage_usd"], "1200000000000000000", "{c}");
    }
    let res = env.get("/v1/me/quotas").as_user("max").send().await;
    res.assert_status(200);
    let c = env.check_mine("max", "openai").await;
    assert_eq!(c["allowed"], false, "{c}");
    assert_eq!(c["reason"], "daily_quota_exhausted", "{c}");
    assert_eq!(
        c["windows"]["daily"]["usage_usd"], "1200000000000000000",
        "{c}"
    );
    env.post("/v1/admin/users/max/quotas/openai/reset")
        .as_admin()
        .json(&json!({"window": "daily"}))
        .send()
        .await
        .assert_status(200);
    assert_eq!(env.check_mine("max", "openai").await["allowed"], true);
}
