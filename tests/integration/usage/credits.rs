//! Events with credits: debited once in the same write as the usage, even below zero, at the coalesced request cost.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn credits_are_debited_once_in_the_same_write_under_redelivery() {
    let env = Arc::new(env_at("2026-11-21T12:00:00Z", "UTC").await);
    grant(&env, "lee", 100).await;
    let mut rng = rand::thread_rng();
    let t = at("2026-11-21T11:00:00Z");
    let (mut spent, mut usage_openai, mut usage_gemini) = (0i64, Usd::ZERO, Usd::ZERO);
    let mut with_credits = HashSet::new();
    let mut bodies = Vec::new();
    for i in 0..80 {
        let cost = random_cost(&mut rng);
        let platform = if i % 3 == 0 { "gemini" } else { "openai" };
        if platform == "gemini" {
            usage_gemini = usage_gemini + cost;
        } else {
            usage_openai = usage_openai + cost;
        }
        let id = format!("cr-{i}");
        if i % 4 == 3 {
            bodies.push(body(&id, "lee", platform, &cost.to_string(), t));
        } else {
            let credits = rng.gen_range(1..=5);
            spent += credits;
            with_credits.insert(id.clone());
            bodies.push(body_with_credits(
                &id,
                "lee",
                platform,
                &cost.to_string(),
                credits,
                t,
            ));
        }
    }
    bodies.shuffle(&mut rng);
    let batches: Vec<Vec<String>> = bodies.chunks(10).map(<[String]>::to_vec).collect();
    assert!(ingest_concurrently(&env, batches, 8).await.is_empty());
    // Twice more, shuffled, concurrently.
    let mut again: Vec<String> = bodies.iter().flat_map(|b| [b.clone(), b.clone()]).collect();
    again.shuffle(&mut rng);
    let batches: Vec<Vec<String>> = again.chunks(10).map(<[String]>::to_vec).collect();
    assert!(ingest_concurrently(&env, batches, 8).await.is_empty());

    let acct = credit_account(&env, "lee").await;
    assert_eq!(acct["available"], 100 - spent, "{acct}");
    assert_eq!(acct["used"], spent, "{acct}");
    assert_eq!(acct["total"], 100, "{acct}");
    let entries = env.full_ledger("lee").await;
    assert_eq!(entries.len(), 1 + with_credits.len());
    let mut previous_after = 0;
    let mut consumed = HashSet::new();
    for (n, e) in entries.iter().enumerate() {
        assert_eq!(e["seq"], n as u64 + 1, "{e}");
        assert_eq!(e["balance_before"], previous_after, "{e}");
        previous_after = e["balance_after"].as_i64().unwrap();
        if n > 0 {
            assert_eq!(e["type"], "consume", "{e}");
            assert!(e["amount"].as_i64().unwrap() < 0, "{e}");
            assert!(
                consumed.insert(e["reference"].as_str().unwrap().to_string()),
                "{e}"
            );
        }
    }
    assert_eq!(previous_after, 100 - spent);
    assert_eq!(consumed, with_credits);
    assert_eq!(usage(&env, "lee", "openai").await, [usage_openai; 3]);
    assert_eq!(usage(&env, "lee", "gemini").await, [usage_gemini; 3]);
}

#[tokio::test]
async fn usage_credits_may_take_the_balance_below_zero() {
    let env = env_at("2026-11-21T12:00:00Z", "UTC").await;
    grant(&env, "max", 5).await;
    let t = at("2026-11-21T11:00:00Z");
    ingest_ok(
        &env,
        &[body_with_credits("neg-1", "max", "openai", "0.5", 7, t)],
    )
    .await;
    let acct = credit_account(&env, "max").await;
    assert_eq!(
        (acct["available"].as_i64(), acct["used"].as_i64()),
        (Some(-2), Some(7))
    );
    let entries = env.full_ledger("max").await;
    let last = entries.last().unwrap();
    assert_eq!(last["type"], "consume");
    assert_eq!(last["amount"], -7);
    assert_eq!(
        (
            last["balance_before"].as_i64(),
            last["balance_after"].as_i64()
        ),
        (Some(5), Some(-2))
    );
    assert_eq!(last["category"], "usage");
    // A user without any account: consumption creates it, below zero.
    ingest_ok(
        &env,
        &[body_with_credits("neg-2", "nia", "openai", "0.5", 3, t)],
    )
    .await;
    assert_eq!(credit_account(&env, "nia").await["available"], -3);
    // credits: 0 debits nothing and writes no ledger entry.
    ingest_ok(
        &env,
        &[body_with_credits("zero-1", "nia", "openai", "0.5", 0, t)],
    )
    .await;
    assert_eq!(env.full_ledger("nia").await.len(), 1);
    assert_eq!(usage(&env, "nia", "openai").await, [usd("1"); 3]);
}

#[tokio::test]
async fn credit_events_cost_at_most_two_requests_each() {
    let env = env_at("2026-11-21T12:00:00Z", "UTC").await;
    grant(&env, "olga", 1000).await;
    let t = at("2026-11-21T11:00:00Z");
    // Warm up: creates the quota item.
    ingest_ok(&env, &[body("warm-c", "olga", "openai", "1", t)]).await;
    let before = env.store.stats().requests();
    for i in 0..10 {
        let report = ingest_ok(
            &env,
            &[body_with_credits(
                &format!("c1-{i}"),
                "olga",
                "openai",
                "0.1",
                2,
                t,
            )],
        )
        .await;
        assert_eq!(report.writes.requests, 2, "{report:?}");
    }
    assert_eq!(env.store.stats().requests() - before, 20);
    // A batch of ten of one user: one account read, then one write with
    // every record, the quota item, the account and ten ledger entries.
    let before = env.store.stats().requests();
    let bodies: Vec<String> = (0..10)
        .map(|i| body_with_credits(&format!("c10-{i}"), "olga", "openai", "0.1", 1, t))
        .collect();
    let report = ingest_ok(&env, &bodies).await;
    let requests = env.store.stats().requests() - before;
    assert_eq!(requests, report.writes.requests);
    assert!(requests <= 20, "{requests}");
    assert_eq!(requests, 2, "{report:?}");
    assert_eq!(credit_account(&env, "olga").await["available"], 1000 - 30);
    assert_eq!(usage(&env, "olga", "openai").await, [usd("3"); 3]);
}
