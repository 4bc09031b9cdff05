//! Accounts and admin adjustment: target and delta, zero, force, check and dry-run, the ledger and audit each apply writes, and the sample events.

use super::*;

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
