//! `Idempotency-Key` semantics and concurrency: replays, keys in flight, and many writers on one account keeping a gap-free chain.

use super::*;

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
