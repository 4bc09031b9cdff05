//! The invariant checker (tests/harness/invariants.rs) can fail: a scenario
//! touching every kind of item passes it, and each kind of corruption, written
//! into the engine on purpose, is reported as its own kind of violation.

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{TimeZone, Utc};
use serde_json::{json, Value};
use spendguard_core::Clock;
use spendguard_tests::invariants::{report, Item, Kind};
use spendguard_tests::scenario::usage_event;
use spendguard_tests::TestEnv;

const USER: &str = "alice";

/// Limits, an adjustment with a key, a redemption, reservations (with
/// credits) settled, voided and pending, usage events with and without
/// credits: every item kind the checker reads.
async fn scenario() -> TestEnv {
    let now = Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap();
    let env = TestEnv::build(|_| {}, Clock::manual(now)).await;
    env.put("/v1/admin/quota-defaults/system")
        .as_admin()
        .json(&json!({"gemini": {"daily_limit_usd": "5"}}))
        .send()
        .await
        .assert_status(200);
    env.put(&format!("/v1/admin/users/{USER}/quotas"))
        .as_admin()
        .json(&json!({"quotas": [{"platform": "openai", "daily_limit_usd": "100"}]}))
        .send()
        .await
        .assert_status(200);
    env.post(&format!("/v1/admin/users/{USER}/credits/adjust"))
        .as_admin()
        .header("idempotency-key", "grant-1")
        .json(&json!({"delta": 100, "reason": "grant"}))
        .send()
        .await
        .assert_status(200);
    let codes = env
        .post("/v1/admin/redemption-codes")
        .as_admin()
        .json(&json!({"count": 1, "credits": 5, "max_uses": 3}))
        .send()
        .await;
    codes.assert_status(201);
    env.post("/v1/me/redemptions")
        .as_user(USER)
        .header("idempotency-key", "redeem-1")
        .json(&json!({"code": codes.body["codes"][0]}))
        .send()
        .await
        .assert_status(201);
    let mut ids = Vec::new();
    for (estimate, credits) in [("1.5", 3), ("0.5", 0), ("2", 4)] {
        let r = env
            .post("/v1/quota/reservations")
            .as_service()
            .json(&json!({"user_id": USER, "platform": "openai",
                          "estimate_usd": estimate, "credits": credits}))
            .send()
            .await;
        r.assert_status(201);
        ids.push(r.body["reservation_id"].as_str().unwrap().to_string());
    }
    env.request("DELETE", &format!("/v1/quota/reservations/{}", ids[1]))
        .as_service()
        .send()
        .await
        .assert_status(200);
    let mut settle = usage_event("e-1", USER, "openai", "1.25", now);
    settle["reservation_id"] = json!(ids[0]);
    settle["credits"] = json!(2);
    let mut with_credits = usage_event("e-3", USER, "openai", "0.01", now);
    with_credits["credits"] = json!(7);
    let events = [
        settle,
        usage_event("e-2", USER, "openai", "0.25", now),
        with_credits,
    ];
    env.ingest_all(&events).await;
    env
}

async fn get(env: &TestEnv, pk: &str, sk: &str) -> Item {
    env.store
        .client()
        .get_item()
        .table_name(env.store.table())
        .key("pk", AttributeValue::S(pk.into()))
        .key("sk", AttributeValue::S(sk.into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap_or_else(|| panic!("no item {pk} | {sk}"))
}

async fn put(env: &TestEnv, item: Item) {
    env.store
        .client()
        .put_item()
        .table_name(env.store.table())
        .set_item(Some(item))
        .send()
        .await
        .unwrap();
}

async fn delete(env: &TestEnv, pk: &str, sk: &str) {
    env.store
        .client()
        .delete_item()
        .table_name(env.store.table())
        .key("pk", AttributeValue::S(pk.into()))
        .key("sk", AttributeValue::S(sk.into()))
        .send()
        .await
        .unwrap();
}

/// Rewrites one attribute of an item.
async fn set(env: &TestEnv, pk: &str, sk: &str, name: &str, value: AttributeValue) {
    let mut item = get(env, pk, sk).await;
    item.insert(name.into(), value);
    put(env, item).await;
}

fn num(n: impl ToString) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

/// The first item whose pk and sk start with these prefixes (and matching `pred`).
async fn find(env: &TestEnv, pk: &str, sk: &str, pred: impl Fn(&Item) -> bool) -> Item {
    env.scan_items()
        .await
        .into_iter()
        .find(|i| {
            i["pk"].as_s().unwrap().starts_with(pk)
                && i["sk"].as_s().unwrap().starts_with(sk)
                && pred(i)
        })
        .unwrap_or_else(|| panic!("no item {pk}* | {sk}*"))
}

fn text(item: &Item, name: &str) -> String {
    match &item[name] {
        AttributeValue::S(s) | AttributeValue::N(s) => s.clone(),
        other => panic!("{name}: {other:?}"),
    }
}

fn pk_sk(item: &Item) -> (String, String) {
    (text(item, "pk"), text(item, "sk"))
}

#[tokio::test]
async fn a_scenario_over_every_item_kind_holds_every_invariant() {
    let env = scenario().await;
    let violations = env.check_invariants().await;
    assert!(violations.is_empty(), "{}", report(&violations));
    // The scenario really has what the checker reads.
    let items = env.scan_items().await;
    for (pk, sk) in [
        ("USER#", "LEDGER#"),
        ("USER#", "CREDITS"),
        ("USER#", "QUOTA#openai"),
        ("USER#", "REDEMPTION_STATS"),
        ("EVENT#", "EVENT"),
        ("RESERVATION#", "RESERVATION"),
        ("CODE#", "REDEMPTION#"),
        ("AUDIT", ""),
        ("CONFIG", "QUOTA_DEFAULTS#system"),
        ("IDEMPOTENCY#", "IDEMPOTENCY"),
    ] {
        assert!(
            items
                .iter()
                .any(|i| text(i, "pk").starts_with(pk) && text(i, "sk").starts_with(sk)),
            "no {pk} {sk} item"
        );
    }
}

/// Each corruption, applied to a fresh copy of the scenario, is reported
/// with its kind (and the report names the item).
#[tokio::test]
async fn each_kind_of_corruption_is_reported() {
    let user_pk = format!("USER#{USER}");
    type Corrupt = for<'a> fn(
        &'a TestEnv,
        &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>>;
    let cases: Vec<(&str, Kind, Corrupt)> = vec![
        ("balance off by one", Kind::Balance, |env, pk| {
            Box::pin(async move {
                let a = get(env, pk, "CREDITS").await;
                let available: i64 = text(&a, "available").parse().unwrap();
                set(env, pk, "CREDITS", "available", num(available + 1)).await;
            })
        }),
        ("a ledger entry lost", Kind::LedgerSeq, |env, pk| {
            Box::pin(async move {
                delete(env, pk, "LEDGER#00000000000000000002").await;
            })
        }),
        ("a broken chain", Kind::LedgerChain, |env, pk| {
            Box::pin(async move {
                set(
                    env,
                    pk,
                    "LEDGER#00000000000000000002",
                    "balance_before",
                    num(1),
                )
                .await;
            })
        }),
        (
            "one ledger entry twice",
            Kind::LedgerDuplicate,
            |env, pk| {
                Box::pin(async move {
                    let mut e = get(env, pk, "LEDGER#00000000000000000002").await;
                    e.insert(
                        "sk".into(),
                        AttributeValue::S("LEDGER#00000000000000000009".into()),
                    );
                    put(env, e).await;
                })
            },
        ),
        ("negative held", Kind::Held, |env, pk| {
            Box::pin(async move {
                set(env, pk, "CREDITS", "held", num(-1)).await;
            })
        }),
        (
            "spendable not available - held",
            Kind::Spendable,
            |env, pk| {
                Box::pin(async move {
                    set(env, pk, "CREDITS", "spendable", num(0)).await;
                })
            },
        ),
        ("usage counted twice", Kind::Usage, |env, pk| {
            Box::pin(async move {
                set(env, pk, "QUOTA#openai", "weekly_usage", num("2.76")).await;
            })
        }),
        ("an event record lost", Kind::Usage, |env, _| {
            Box::pin(async move {
                delete(env, "EVENT#e-2", "EVENT").await;
            })
        }),
        ("a hold never released", Kind::Reserved, |env, _| {
            Box::pin(async move {
                let r = find(env, "RESERVATION#", "RESERVATION", |i| {
                    text(i, "status") == "pending"
                })
                .await;
                let (pk, sk) = pk_sk(&r);
                set(env, &pk, &sk, "status", AttributeValue::S("voided".into())).await;
            })
        }),
        ("headroom drifted", Kind::Headroom, |env, pk| {
            Box::pin(async move {
                set(env, pk, "QUOTA#openai", "daily_headroom", num(100)).await;
            })
        }),
        (
            "an event's credits not consumed",
            Kind::EventCredits,
            |env, _| {
                Box::pin(async move {
                    set(env, "EVENT#e-3", "EVENT", "credits", num(8)).await;
                })
            },
        ),
        ("used_count off", Kind::CodeUses, |env, _| {
            Box::pin(async move {
                let c = find(env, "CODE#", "CODE", |_| true).await;
                let (pk, sk) = pk_sk(&c);
                set(env, &pk, &sk, "used_count", num(2)).await;
            })
        }),
        ("used_count over max_uses", Kind::CodeUses, |env, _| {
            Box::pin(async move {
                let c = find(env, "CODE#", "CODE", |_| true).await;
                let (pk, sk) = pk_sk(&c);
                set(env, &pk, &sk, "max_uses", num(0)).await;
            })
        }),
        (
            "a code redeemed twice by one user",
            Kind::RedemptionPerUser,
            |env, pk| {
                Box::pin(async move {
                    let mut e = find(env, pk, "LEDGER#", |i| text(i, "type") == "redeem").await;
                    e.insert("id".into(), AttributeValue::S("another".into()));
                    e.insert(
                        "sk".into(),
                        AttributeValue::S("LEDGER#00000000000000000099".into()),
                    );
                    put(env, e).await;
                })
            },
        ),
        (
            "redemption counter off",
            Kind::RedemptionCounter,
            |env, pk| {
                Box::pin(async move {
                    set(env, pk, "REDEMPTION_STATS", "redemption_count", num(2)).await;
                })
            },
        ),
        ("an adjustment without audit", Kind::Audit, |env, _| {
            Box::pin(async move {
                let a = find(env, "AUDIT", "", |i| {
                    text(i, "action") == "ADMIN_ADJUST_CREDITS"
                })
                .await;
                let (pk, sk) = pk_sk(&a);
                delete(env, &pk, &sk).await;
            })
        }),
        ("a code batch without audit", Kind::Audit, |env, _| {
            Box::pin(async move {
                let a = find(env, "AUDIT", "", |i| {
                    text(i, "action") == "ADMIN_CREATE_REDEMPTION_CODES"
                })
                .await;
                let (pk, sk) = pk_sk(&a);
                delete(env, &pk, &sk).await;
            })
        }),
        ("limits without their audit", Kind::Audit, |env, _| {
            Box::pin(async move {
                let a = find(env, "AUDIT", "", |i| {
                    text(i, "action") == "ADMIN_REPLACE_USER_QUOTAS"
                })
                .await;
                let (pk, sk) = pk_sk(&a);
                delete(env, &pk, &sk).await;
            })
        }),
        ("defaults replaced without audit", Kind::Audit, |env, _| {
            Box::pin(async move {
                set(env, "CONFIG", "QUOTA_DEFAULTS#system", "version", num(2)).await;
            })
        }),
        ("a key's effect missing", Kind::Idempotency, |env, _| {
            Box::pin(async move {
                let r = find(env, "IDEMPOTENCY#credits-adjust", "", |_| true).await;
                let (pk, sk) = pk_sk(&r);
                let mut body: Value = serde_json::from_str(&text(&r, "response_body")).unwrap();
                body["transaction_id"] = json!("00000000-0000-0000-0000-000000000000");
                set(
                    env,
                    &pk,
                    &sk,
                    "response_body",
                    AttributeValue::S(body.to_string()),
                )
                .await;
            })
        }),
    ];
    for (what, kind, corrupt) in cases {
        let env = scenario().await;
        corrupt(&env, &user_pk).await;
        let violations = env.check_invariants().await;
        assert!(
            violations.iter().any(|v| v.kind == kind),
            "{what}: expected a {kind:?} violation, got:\n{}",
            report(&violations)
        );
    }
}
