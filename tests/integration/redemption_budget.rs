//! What a redemption costs: DynamoDB requests per outcome (counted by the
//! store's interceptor, the SDK's own retries counted apart as attempts), and
//! a hot code absorbing a burst of users without surfacing `conflict`.

use super::credits_budget::cost;
use super::redemption::{one_code, sub_code, used_count};
use serde_json::json;
use spendguard_tests::{TestEnv, TestResponse};
use std::sync::Arc;

async fn redeem_with_key(env: &TestEnv, user: &str, key: &str, code: &str) -> TestResponse {
    env.post("/v1/me/redemptions")
        .as_user(user)
        .header("idempotency-key", key)
        .json(&json!({ "code": code }))
        .send()
        .await
}

#[tokio::test]
async fn a_redemption_costs_at_most_three_requests_and_a_refusal_four() {
    let env = TestEnv::new().await;
    let credits = one_code(&env, 10, 1).await;
    let subscription = sub_code(&env, "pro", "month", 1).await;
    // Success, credits: one read and one transaction.
    let (requests, attempts, res) =
        cost(&env, redeem_with_key(&env, "alice", "k-1", &credits)).await;
    res.assert_status(201);
    assert!(requests <= 3, "credits code: {requests} requests");
    assert_eq!(requests, attempts, "no SDK retries without faults");
    // Success, subscription: the subscription is read too.
    let (requests, _, res) = cost(&env, redeem_with_key(&env, "alice", "k-2", &subscription)).await;
    res.assert_status(201);
    assert!(requests <= 3, "subscription code: {requests} requests");
    // A replay is the read alone.
    let (requests, _, res) = cost(&env, redeem_with_key(&env, "alice", "k-1", &credits)).await;
    res.assert_status(201);
    assert_eq!(res.headers["idempotent-replayed"], "true");
    assert_eq!(requests, 1);
    // Refusals: the read, and the failed-attempt count.
    let refusals = [
        ("bob", "NOPE-NOPE-NOPE", "code_not_found"),
        ("bob", credits.as_str(), "code_exhausted"),
        ("alice", subscription.as_str(), "already_redeemed"),
    ];
    for (i, (user, code, error)) in refusals.into_iter().enumerate() {
        let key = format!("r-{i}");
        let (requests, _, res) = cost(&env, redeem_with_key(&env, user, &key, code)).await;
        res.assert_error(if error == "code_not_found" { 404 } else { 409 }, error);
        assert!(requests <= 4, "{error}: {requests} requests");
    }
    assert_eq!(used_count(&env, &credits).await, 1);
}

/// 200 users redeem one code of 150 uses at once, each with its own key:
/// exactly 150 redeem, the other 50 get the contract's `code_exhausted`,
/// nobody a `conflict`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_users_redeem_one_code_of_150_uses() {
    let env = Arc::new(TestEnv::new().await);
    let code = one_code(&env, 5, 150).await;
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let (env, code) = (env.clone(), code.clone());
            tokio::spawn(async move {
                let user = format!("user-{i:03}");
                let res = redeem_with_key(&env, &user, &format!("key-{i}"), &code).await;
                (user, res)
            })
        })
        .collect();
    let (mut redeemed, mut exhausted) = (Vec::new(), 0);
    for task in tasks {
        let (user, res) = task.await.unwrap();
        match res.status {
            201 => redeemed.push(user),
            409 if res.error_code() == Some("code_exhausted") => exhausted += 1,
            other => panic!("{user}: unexpected {other}: {}", res.text),
        }
    }
    let stats = env.store.stats();
    eprintln!(
        "200 concurrent redemptions of one code: {} re-plans in all, the worst redemption re-planned {} times",
        stats.replans(),
        stats.most_replans()
    );
    assert_eq!(redeemed.len(), 150);
    assert_eq!(exhausted, 50);
    assert_eq!(used_count(&env, &code).await, 150);
    for user in &redeemed {
        assert_eq!(env.available(user).await, 5, "{user}");
    }
}
