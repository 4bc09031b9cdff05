//! Who reads and writes which quotas, the audit of every admin write, and the sample events.

use super::*;

#[tokio::test]
async fn users_see_only_their_own_quotas() {
    let env = TestEnv::new().await;
    replace(
        &env,
        "alice",
        json!([{"platform": "openai", "daily_limit_usd": "1"}]),
    )
    .await;
    replace(
        &env,
        "bob",
        json!([{"platform": "openai", "daily_limit_usd": "0"}]),
    )
    .await;

    let alice = env.get("/v1/me/quotas").as_user("alice").send().await;
    assert_eq!(alice.body["user_id"], "alice");
    assert_eq!(platform(&alice.body, "openai")["daily"]["limit_usd"], "1");
    let bob = env.get("/v1/me/quotas").as_user("bob").send().await;
    assert_eq!(bob.body["user_id"], "bob");
    assert_eq!(platform(&bob.body, "openai")["daily"]["limit_usd"], "0");

    assert_eq!(env.check_mine("alice", "openai").await["allowed"], true);
    assert_eq!(env.check_mine("bob", "openai").await["allowed"], false);

    // No way for a user to name another user.
    env.get("/v1/admin/users/bob/quotas")
        .as_user("alice")
        .send()
        .await
        .assert_error(403, "forbidden");
    env.post("/v1/quota/check")
        .as_user("alice")
        .json(&json!({"user_id": "bob", "platform": "openai"}))
        .send()
        .await
        .assert_error(403, "forbidden");
}

#[tokio::test]
async fn every_admin_route_refuses_a_user_token() {
    let env = TestEnv::new().await;
    let before = env.table_snapshot().await;
    let routes: [(&str, &str, Value); 7] = [
        ("GET", "/v1/admin/quota-defaults", Value::Null),
        ("PUT", "/v1/admin/quota-defaults/system", json!({})),
        ("PUT", "/v1/admin/quota-defaults/sources/github", json!({})),
        (
            "POST",
            "/v1/admin/users/alice/quotas/init",
            json!({"auth_source": "email"}),
        ),
        ("GET", "/v1/admin/users/alice/quotas", Value::Null),
        ("PUT", "/v1/admin/users/alice/quotas", json!({"quotas": []})),
        (
            "POST",
            "/v1/admin/users/alice/quotas/openai/reset",
            json!({"window": "daily"}),
        ),
    ];
    for (method, path, body) in routes {
        for role in [
            spendguard_tests::Role::User,
            spendguard_tests::Role::Service,
        ] {
            let mut req = env.request(method, path).as_role("alice", role);
            if !body.is_null() {
                req = req.json(&body);
            }
            let res = req.send().await;
            assert_eq!(
                (res.status, res.error_code()),
                (403, Some("forbidden")),
                "{method} {path} as {role:?}: {}",
                res.text
            );
        }
        // Without a token at all: 401.
        env.request(method, path)
            .send()
            .await
            .assert_error(401, "unauthorized");
    }
    assert_eq!(env.table_snapshot().await, before);
}

#[tokio::test]
async fn admin_reads_of_a_user_validate_the_id() {
    let env = TestEnv::new().await;
    env.get("/v1/admin/users/a%20b/quotas")
        .as_admin()
        .send()
        .await
        .assert_error(400, "invalid_id");
    let long = "x".repeat(129);
    env.get(&format!("/v1/admin/users/{long}/quotas"))
        .as_admin()
        .send()
        .await
        .assert_error(400, "invalid_id");
    let res = env
        .get("/v1/admin/users/nobody/quotas")
        .as_admin()
        .send()
        .await;
    res.assert_status(200);
    assert_eq!(res.body["quotas"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn every_admin_write_is_audited_with_before_and_after() {
    let env = env_at("UTC", "2026-11-21T10:00:00Z").await;
    let admin = |method: &str, path: &str, body: Value| {
        env.request(method, path)
            .as_admin()
            .header("user-agent", "quota-tests/1.0")
            .json(&body)
            .send()
    };
    let expect_entry = |entries: &[AuditEntry], target: Option<&str>| -> AuditEntry {
        assert_eq!(entries.len(), 1, "{entries:?}");
        let e = entries[0].clone();
        assert_eq!(e.actor, "admin-1");
        assert_eq!(e.target_user.as_ref().map(|u| u.as_str()), target);
        assert_eq!(e.source_ip.as_deref(), Some(SOURCE_IP));
        assert_eq!(e.user_agent.as_deref(), Some("quota-tests/1.0"));
        assert!(e.success);
        assert_eq!(e.created_at, at("2026-11-21T10:00:00Z"));
        e
    };

    admin(
        "PUT",
        "/v1/admin/quota-defaults/system",
        json!({"openai": {"daily_limit_usd": "2"}}),
    )
    .await
    .assert_status(200);
    let e = expect_entry(
        &env.audit_entries(None, Some("ADMIN_SET_SYSTEM_QUOTA_DEFAULTS"))
            .await,
        None,
    );
    assert_eq!(e.details["before"], Value::Null);
    assert_eq!(e.details["after"]["openai"]["daily_limit_usd"], "2");

    admin(
        "PUT",
        "/v1/admin/quota-defaults/sources/wechat",
        json!({"gemini": {"weekly_limit_usd": "4"}}),
    )
    .await
    .assert_status(200);
    admin("PUT", "/v1/admin/quota-defaults/sources/wechat", json!({}))
        .await
        .assert_status(200);
    let entries = env
        .audit_entries(None, Some("ADMIN_SET_SOURCE_QUOTA_DEFAULTS"))
        .await;
    assert_eq!(entries.len(), 2);
    // Same instant on the manual clock: find the clearing by its content.
    let cleared = entries
        .iter()
        .find(|e| e.details["after"].is_null())
        .unwrap_or_else(|| panic!("no clearing entry: {entries:?}"));
    assert_eq!(cleared.details["scope"], "source:wechat");
    assert_eq!(cleared.details["before"]["gemini"]["weekly_limit_usd"], "4");

    admin(
        "POST",
        "/v1/admin/users/alice/quotas/init",
        json!({"auth_source": "wechat"}),
    )
    .await
    .assert_status(200);
    let e = expect_entry(
        &env.audit_entries(None, Some("ADMIN_INIT_USER_QUOTAS"))
            .await,
        Some("alice"),
    );
    assert_eq!(e.details["auth_source"], "wechat");
    assert_eq!(
        e.details["before"]["openai"]["daily_limit_usd"],
        Value::Null
    );
    assert_eq!(e.details["after"]["openai"]["daily_limit_usd"], "2");
    assert_eq!(
        e.details["filled"],
        json!([{"platform": "openai", "window": "daily", "limit_usd": "2"}])
    );

    admin(
        "PUT",
        "/v1/admin/users/alice/quotas",
        json!({"quotas": [{"platform": "openai", "daily_limit_usd": "7"}]}),
    )
    .await
    .assert_status(200);
    let e = expect_entry(
        &env.audit_entries(None, Some("ADMIN_REPLACE_USER_QUOTAS"))
            .await,
        Some("alice"),
    );
    assert_eq!(e.details["before"]["openai"]["daily_limit_usd"], "2");
    assert_eq!(e.details["after"]["openai"]["daily_limit_usd"], "7");

    seed_usage(
        &env,
        "alice",
        "openai",
        "daily",
        "1.5",
        "2026-11-21T00:00:00Z",
    )
    .await;
    admin(
        "POST",
        "/v1/admin/users/alice/quotas/openai/reset",
        json!({"window": "daily"}),
    )
    .await
    .assert_status(200);
    let e = expect_entry(
        &env.audit_entries(None, Some("ADMIN_RESET_QUOTA_WINDOW"))
            .await,
        Some("alice"),
    );
    assert_eq!(e.details["platform"], "openai");
    assert_eq!(e.details["window"], "daily");
    assert_eq!(e.details["before"]["usage_usd"], "1.5");
    assert_eq!(e.details["after"]["usage_usd"], "0");

    // The per-user index finds the three user writes.
    let by_user = env.audit_entries(Some("alice"), None).await;
    assert_eq!(by_user.len(), 3);
}

#[tokio::test]
async fn every_quota_sample_event_runs_through_the_invoke_api() {
    let env = TestEnv::new().await;
    let dir = format!("{}/../events", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("quota-") && n.ends_with(".json"))
        .collect();
    names.sort();
    // One per route of the quota function (but the reservations' own).
    assert_eq!(names.len(), 13, "{names:?}");
    for name in names {
        let res = env.invoke("quota", &sample_event(&name)).await;
        res.assert_status(200);
        assert_eq!(res.body["statusCode"], 200, "{name}: {}", res.text);
    }
}
