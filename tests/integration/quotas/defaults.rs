//! Quota defaults: system and per-auth-source, whole-replaced, cleared, and refused when bad.

use super::*;

#[tokio::test]
async fn defaults_are_whole_replaced_and_cleared() {
    let env = TestEnv::new().await;
    let get = || env.get("/v1/admin/quota-defaults").as_admin().send();
    let res = get().await;
    res.assert_status(200);
    assert_eq!(res.body["system"], json!({}));
    let sources = res.body["sources"].as_object().unwrap();
    assert_eq!(sources.len(), 7);
    assert!(sources.values().all(Value::is_null));

    // Numbers are read exactly from their text, and answered as strings.
    let res = env
        .put("/v1/admin/quota-defaults/system")
        .as_admin()
        .raw_body(
            r#"{"openai": {"daily_limit_usd": 123456789.0123456789, "weekly_limit_usd": "10"}}"#,
        )
        .send()
        .await;
    res.assert_status(200);
    let expected = json!({"openai": {"daily_limit_usd": "123456789.0123456789", "weekly_limit_usd": "10", "monthly_limit_usd": null}});
    assert_eq!(res.body, expected);
    assert_eq!(get().await.body["system"], expected);

    // Whole replace: openai is gone.
    env.put("/v1/admin/quota-defaults/system")
        .as_admin()
        .json(&json!({"anthropic": {"monthly_limit_usd": "0"}}))
        .send()
        .await
        .assert_status(200);
    assert_eq!(
        get().await.body["system"],
        json!({"anthropic": {"daily_limit_usd": null, "weekly_limit_usd": null, "monthly_limit_usd": "0"}})
    );

    let put_source = |source: &str, body: Value| {
        env.put(&format!("/v1/admin/quota-defaults/sources/{source}"))
            .as_admin()
            .json(&body)
            .send()
    };
    put_source(
        "github",
        json!({"openai": {"daily_limit_usd": "0.0000000001"}}),
    )
    .await
    .assert_status(200);
    let body = get().await.body;
    assert_eq!(
        body["sources"]["github"]["openai"]["daily_limit_usd"],
        "0.0000000001"
    );
    assert_eq!(body["sources"]["email"], Value::Null);

    let res = put_source("github", json!({})).await;
    res.assert_status(200);
    assert_eq!(res.body, json!({}));
    assert_eq!(get().await.body["sources"]["github"], Value::Null);

    // The system default cleared reads as {}.
    env.put("/v1/admin/quota-defaults/system")
        .as_admin()
        .json(&json!({}))
        .send()
        .await
        .assert_status(200);
    assert_eq!(get().await.body["system"], json!({}));
}

#[tokio::test]
async fn bad_defaults_are_refused_and_write_nothing() {
    let env = TestEnv::new().await;
    env.put("/v1/admin/quota-defaults/system")
        .as_admin()
        .json(&json!({"openai": {"daily_limit_usd": "1"}}))
        .send()
        .await
        .assert_status(200);
    let huge = format!(
        r#"{{"openai": {{"daily_limit_usd": "1"}}, "pad": "{}"}}"#,
        "x".repeat(64 * 1024)
    );
    #[rustfmt::skip]
    let cases: Vec<(&str, String, &str)> = vec![
        ("system", r#"{"mistral": {}}"#.into(), "unknown_platform"),
        ("system", r#"{"openai": {"daily_limit_usd": "-1"}}"#.into(), "invalid_amount"),
        ("system", r#"{"openai": {"daily_limit_usd": -1}}"#.into(), "invalid_amount"),
        ("system", r#"{"openai": {"daily_limit_usd": "NaN"}}"#.into(), "invalid_amount"),
        ("system", r#"{"openai": {"daily_limit_usd": "Infinity"}}"#.into(), "invalid_amount"),
        ("system", r#"{"openai": {"daily_limit_usd": 0.00000000001}}"#.into(), "invalid_amount"),
        ("system", r#"{"openai": {"daily_limit_usd": 1e400}}"#.into(), "invalid_amount"),
        ("system", r#"{"openai": {"daily_limit_usd": true}}"#.into(), "invalid_amount"),
        // A JSON object with a key twice is malformed (the one JSON reader).
        ("system", r#"{"openai": {}, "openai": {}}"#.into(), "invalid_request"),
        ("system", r#"{"openai": {"daily_limit": "1"}}"#.into(), "invalid_request"),
        ("system", r#"{"openai": "#.into(), "invalid_request"),
        ("system", "[]".into(), "invalid_request"),
        ("system", "".into(), "invalid_request"),
        ("system", huge.clone(), "payload_too_large"),
        ("sources/github", r#"{"openai": {"weekly_limit_usd": "1.5e-11"}}"#.into(), "invalid_amount"),
        ("sources/myspace", "{}".into(), "unknown_auth_source"),
        ("sources/github", huge, "payload_too_large"),
    ];
    let cases = cases
        .into_iter()
        .map(|(path, body, code)| (format!("/v1/admin/quota-defaults/{path}"), body, code));
    assert_all_refused(&env, "PUT", cases).await;
}
