use serde_json::{json, Value};
use spendguard_tests::{sample_event, Role, TestEnv};

#[tokio::test]
async fn my_quotas_lists_every_platform_unlimited_with_zero_usage() {
    let env = TestEnv::new().await;
    let res = env.get("/v1/me/quotas").as_user("alice").send().await;
    res.assert_status(200);
    assert_eq!(res.body["user_id"], "alice");
    let quotas = res.body["quotas"].as_array().unwrap();
    let names: Vec<&str> = quotas
        .iter()
        .map(|q| q["platform"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["anthropic", "openai", "gemini", "antigravity"]);
    for q in quotas {
        for window in ["daily", "weekly", "monthly"] {
            assert_eq!(q[window]["limit_usd"], Value::Null);
            assert_eq!(q[window]["usage_usd"], "0");
            assert!(q[window]["window_start"].as_str().unwrap().ends_with('Z'));
            assert!(
                q[window]["resets_at"].as_str().unwrap()
                    > q[window]["window_start"].as_str().unwrap()
            );
        }
    }
}

#[tokio::test]
async fn configured_platform_list_is_what_users_see() {
    let env = TestEnv::build(
        |c| c.platforms = spendguard_core::domain::Platforms::parse_list("openai mistral").unwrap(),
        spendguard_core::Clock::system(),
    )
    .await;
    let res = env.get("/v1/me/quotas").as_user("alice").send().await;
    let names: Vec<&str> = res.body["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["platform"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["openai", "mistral"]);
}

#[tokio::test]
async fn auth_failures_are_json_errors() {
    let env = TestEnv::new().await;
    env.get("/v1/me/quotas")
        .send()
        .await
        .assert_error(401, "unauthorized");
    env.get("/v1/me/quotas")
        .bearer("not.a.token")
        .send()
        .await
        .assert_error(401, "unauthorized");
    let forged = spendguard_local::jwt::issue("wrong-secret", "alice", Role::Admin, 60);
    env.get("/v1/me/quotas")
        .bearer(&forged)
        .send()
        .await
        .assert_error(401, "unauthorized");
    env.get("/v1/admin/quota-defaults")
        .as_user("alice")
        .send()
        .await
        .assert_error(403, "forbidden");
    env.get("/v1/nothing-here")
        .as_user("alice")
        .send()
        .await
        .assert_error(404, "route_not_found");
}

#[tokio::test]
async fn function_without_request_context_answers_401_not_panic() {
    let env = TestEnv::new().await;
    let mut event = sample_event("quota-get-my-quotas.json");
    event["requestContext"]["authorizer"] = Value::Null;
    let res = env.invoke("quota", &event).await;
    res.assert_status(200);
    assert_eq!(res.body["statusCode"], 401);
}

#[tokio::test]
async fn invoke_api_runs_sample_events() {
    let env = TestEnv::new().await;
    let res = env
        .invoke("quota", &sample_event("quota-get-my-quotas.json"))
        .await;
    res.assert_status(200);
    assert_eq!(res.body["statusCode"], 200);
    let inner: Value = serde_json::from_str(res.body["body"].as_str().unwrap()).unwrap();
    assert_eq!(inner["user_id"], "alice");

    // The sample SQS batch through the same API is asserted exactly, under a
    // manual clock, by usage::sample_batch_fails_only_the_malformed_message.

    let res = env.invoke("no-such-function", &json!({})).await;
    res.assert_status(404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_stack_serves_real_http() {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = TestEnv::new().await;
    let gateway = Arc::new(spendguard_local::Gateway::new(
        env.deps(),
        "http-test-secret",
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(spendguard_local::serve_http(listener, gateway, async {
        let _ = stopped.await;
    }));
    let token = spendguard_local::jwt::issue("http-test-secret", "carol", Role::User, 60);
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /v1/me/quotas HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.contains("\"user_id\":\"carol\""), "{raw}");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn service_scope_is_recognised_in_every_list_form() {
    let env = TestEnv::new().await;
    let check = |token: String| {
        let env = &env;
        async move {
            env.post("/v1/quota/check")
                .bearer(&token)
                .json(&json!({"user_id": "alice", "platform": "openai"}))
                .send()
                .await
        }
    };
    // API Gateway renders an array claim as `[a b]`; IdPs send the scope as a
    // space-separated string, some as an array.
    for scope in [
        json!("spendguard/service"),
        json!("openid spendguard/service"),
        json!(["spendguard/service"]),
        json!(["openid", "spendguard/service"]),
        json!("[\"openid\",\"spendguard/service\"]"),
    ] {
        let token = env.token_with_claims(&json!({"sub": "gw-1", "scope": scope}));
        let res = check(token).await;
        assert_eq!(res.status, 200, "scope {scope}: {}", res.text);
    }
    for scope in [
        json!("spendguard/service2"),
        json!(["spendguard"]),
        json!(""),
    ] {
        let token = env.token_with_claims(&json!({"sub": "gw-1", "scope": scope}));
        check(token).await.assert_error(403, "forbidden");
    }
}

#[tokio::test]
async fn cognito_groups_in_every_documented_form() {
    let env = TestEnv::new().await;
    for groups in [
        json!("admin"),
        json!("[admin other]"),
        json!("admin,other"),
        json!("[\"other\",\"admin\"]"),
        json!(["other", "admin"]),
    ] {
        let token = env.token_with_claims(&json!({"sub": "root", "cognito:groups": groups}));
        let res = env
            .get("/v1/admin/quota-defaults")
            .bearer(&token)
            .send()
            .await;
        assert_eq!(res.status, 200, "groups {groups}: {}", res.text);
    }
    for groups in [json!("administrators"), json!(["Admin"]), json!("")] {
        let token = env.token_with_claims(&json!({"sub": "root", "cognito:groups": groups}));
        env.get("/v1/admin/quota-defaults")
            .bearer(&token)
            .send()
            .await
            .assert_error(403, "forbidden");
    }
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let env = TestEnv::new().await;
    let token = env.token("alice", Role::User);
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let res = env
            .get("/v1/me/quotas")
            .header("authorization", &format!("{scheme} {token}"))
            .send()
            .await;
        assert_eq!(res.status, 200, "{scheme}: {}", res.text);
    }
    env.get("/v1/me/quotas")
        .header("authorization", &format!("Basic {token}"))
        .send()
        .await
        .assert_error(401, "unauthorized");
}
