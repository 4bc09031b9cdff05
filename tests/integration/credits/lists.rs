//! The ledger and the audit log as lists: filters, pages and cursors.

use super::*;

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
