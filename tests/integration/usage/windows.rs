//! Windows: boundaries in the configured zone, rollover under concurrency, future-dated events, record expiry, and users without a quota item.

use super::*;

#[tokio::test]
async fn events_straddling_midnight_monday_and_the_first_land_in_their_windows() {
    // 2027-03-01 is a Monday: in Shanghai (UTC+8) day, week and month all begin
    // at 2027-02-28T16:00:00Z.
    let env = env_at("2027-02-28T15:59:59Z", "Asia/Shanghai").await;
    set_limits(&env, "dora", "gemini", [Some("3"), Some("10"), Some("2")]).await;
    let sunday_late = at("2027-02-28T15:59:59Z");
    ingest_ok(&env, &[body("s-1", "dora", "gemini", "1", sunday_late)]).await;
    assert_eq!(usage(&env, "dora", "gemini").await, [usd("1"); 3]);

    env.clock.set(at("2027-02-28T17:00:00Z"));
    // Before the first write of the new windows, they read as zero.
    assert_eq!(usage(&env, "dora", "gemini").await, [Usd::ZERO; 3]);
    // One batch: two events of Monday 1 March and a late one of Sunday.
    ingest_ok(
        &env,
        &[
            body("m-1", "dora", "gemini", "2", at("2027-02-28T16:00:00Z")),
            body("s-2", "dora", "gemini", "5", at("2027-02-28T10:00:00Z")),
            body("m-2", "dora", "gemini", "0.25", at("2027-02-28T16:30:00Z")),
        ],
    )
    .await;
    assert_eq!(usage(&env, "dora", "gemini").await, [usd("2.25"); 3]);
    // A late Sunday event on its own (after the rollover): recorded, counts nowhere.
    ingest_ok(
        &env,
        &[body(
            "s-3",
            "dora",
            "gemini",
            "7",
            at("2027-02-28T15:00:00Z"),
        )],
    )
    .await;
    assert_eq!(usage(&env, "dora", "gemini").await, [usd("2.25"); 3]);

    let c = env.check_mine("dora", "gemini").await;
    assert_eq!(c["allowed"], false, "{c}");
    assert_eq!(c["reason"], "monthly_quota_exhausted", "{c}");
    assert_eq!(c["windows"]["daily"]["remaining_usd"], "0.75", "{c}");
    assert_eq!(c["windows"]["weekly"]["remaining_usd"], "7.75", "{c}");
    assert_eq!(c["windows"]["monthly"]["remaining_usd"], "0", "{c}");
    assert_eq!(c["windows"]["daily"]["usage_usd"], "2.25", "{c}");
    assert_eq!(
        c["windows"]["daily"]["window_start"], "2027-02-28T16:00:00Z",
        "{c}"
    );

    // Tuesday 2 March local midnight: only the day rolls over.
    env.clock.set(at("2027-03-01T16:30:00Z"));
    ingest_ok(
        &env,
        &[
            body(
                "t-1",
                "dora",
                "gemini",
                "0.5",
                at("2027-03-01T15:59:59.999Z"),
            ),
            body("t-2", "dora", "gemini", "0.125", at("2027-03-01T16:00:00Z")),
        ],
    )
    .await;
    assert_eq!(
        usage(&env, "dora", "gemini").await,
        [usd("0.125"), usd("2.875"), usd("2.875")]
    );
    let c = env.check_mine("dora", "gemini").await;
    assert_eq!(c["windows"]["daily"]["remaining_usd"], "2.875", "{c}");
    assert_eq!(c["windows"]["weekly"]["remaining_usd"], "7.125", "{c}");
}

/// Issue 10, item 4: a producer clock running ahead stamps an event with the
/// next day; applied before midnight, it must not restart the day early.
#[tokio::test]
async fn a_future_dated_event_before_midnight_never_empties_the_ending_day() {
    let env = env_at("2026-11-22T23:58:00Z", "UTC").await;
    set_limits(&env, "fred", "openai", [Some("10"), None, None]).await;
    ingest_ok(
        &env,
        &[body(
            "d-1",
            "fred",
            "openai",
            "4",
            at("2026-11-22T12:00:00Z"),
        )],
    )
    .await;
    // Four minutes ahead: the next day, week (Monday 23 Nov) and the same month.
    ingest_ok(
        &env,
        &[body(
            "d-2",
            "fred",
            "openai",
            "5",
            at("2026-11-23T00:02:00Z"),
        )],
    )
    .await;
    assert_eq!(usage(&env, "fred", "openai").await, [usd("9"); 3]);
    let c = env.check_mine("fred", "openai").await;
    assert_eq!(c["windows"]["daily"]["usage_usd"], "9", "{c}");
    assert_eq!(c["windows"]["daily"]["remaining_usd"], "1", "{c}");
    assert_eq!(
        c["windows"]["daily"]["window_start"], "2026-11-22T00:00:00Z",
        "{c}"
    );
    // After midnight the new day starts empty; a redelivery changes nothing.
    env.clock.set(at("2026-11-23T00:03:00Z"));
    ingest_ok(
        &env,
        &[body(
            "d-2",
            "fred",
            "openai",
            "5",
            at("2026-11-23T00:02:00Z"),
        )],
    )
    .await;
    assert_eq!(
        usage(&env, "fred", "openai").await,
        [Usd::ZERO, Usd::ZERO, usd("9")]
    );
}

#[tokio::test]
async fn windows_follow_the_configured_zone_not_utc() {
    // UTC midnight of Wednesday 2026-11-25 is 08:00 in Shanghai: no boundary there,
    // while Shanghai's midnight (16:00 UTC) is one.
    // The same instants in UTC: the boundary is UTC midnight instead.
    for (zone, daily) in [("Asia/Shanghai", "8"), ("UTC", "14")] {
        let env = env_at("2026-11-25T17:00:00Z", zone).await;
        ingest_ok(
            &env,
            &[
                body("z-1", "erin", "openai", "1", at("2026-11-24T23:59:59Z")),
                body("z-2", "erin", "openai", "2", at("2026-11-25T00:00:00Z")),
                body("z-3", "erin", "openai", "4", at("2026-11-25T15:59:59Z")),
                body("z-4", "erin", "openai", "8", at("2026-11-25T16:00:00Z")),
            ],
        )
        .await;
        assert_eq!(
            usage(&env, "erin", "openai").await,
            [usd(daily), usd("15"), usd("15")],
            "{zone}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_events_across_midnight_roll_the_day_over_once() {
    // Tuesday 2026-11-24 → Wednesday in UTC: day rolls, week and month do not.
    let env = Arc::new(env_at("2026-11-25T00:10:00Z", "UTC").await);
    let mut rng = rand::thread_rng();
    let (mut before, mut after) = (Usd::ZERO, Usd::ZERO);
    let mut bodies = Vec::new();
    for i in 0..400 {
        let cost = random_cost(&mut rng);
        let when = if i % 2 == 0 {
            before = before + cost;
            at("2026-11-24T23:55:00Z") + Duration::seconds(i / 2)
        } else {
            after = after + cost;
            at("2026-11-25T00:00:00Z") + Duration::seconds(i / 2)
        };
        bodies.push(body(
            &format!("mid-{i}"),
            "fay",
            "openai",
            &cost.to_string(),
            when,
        ));
    }
    bodies.shuffle(&mut rng);
    let batches: Vec<Vec<String>> = bodies.chunks(3).map(<[String]>::to_vec).collect();
    let failed = ingest_concurrently(&env, batches, 20).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(
        usage(&env, "fay", "openai").await,
        [after, before + after, before + after]
    );
    env.assert_invariants().await;
}

#[tokio::test]
async fn a_user_without_quota_record_gets_an_unlimited_one() {
    let env = env_at("2026-11-21T12:00:00Z", "UTC").await;
    ingest_ok(
        &env,
        &[body(
            "n-1",
            "jan",
            "antigravity",
            "3.5",
            at("2026-11-21T11:00:00Z"),
        )],
    )
    .await;
    let res = env
        .get("/v1/admin/users/jan/quotas")
        .as_admin()
        .send()
        .await;
    res.assert_status(200);
    let q = res.body["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["platform"] == "antigravity")
        .unwrap()
        .clone();
    for w in ["daily", "weekly", "monthly"] {
        assert_eq!(q[w]["limit_usd"], Value::Null, "{q}");
        assert_eq!(q[w]["usage_usd"], "3.5", "{q}");
    }
    assert_eq!(env.check_mine("jan", "antigravity").await["allowed"], true);
}

#[tokio::test]
async fn event_records_expire_after_fifteen_days_but_expiry_never_reapplies() {
    let env = env_at("2026-11-21T12:00:00Z", "UTC").await;
    let t = at("2026-11-21T11:00:00Z");
    let event = body("ttl-1", "kim", "openai", "2", t);
    ingest_ok(&env, std::slice::from_ref(&event)).await;
    let key = |id: &str| {
        [
            (
                keys::PK.to_string(),
                aws_sdk_dynamodb::types::AttributeValue::S(keys::event_pk(id)),
            ),
            (
                keys::SK.to_string(),
                aws_sdk_dynamodb::types::AttributeValue::S(keys::EVENT_SK.into()),
            ),
        ]
        .into_iter()
        .collect::<std::collections::HashMap<_, _>>()
    };
    let item = env
        .store
        .client()
        .get_item()
        .table_name(env.store.table())
        .set_key(Some(key("ttl-1")))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("event record");
    let expires: i64 = item[keys::TTL].as_n().unwrap().parse().unwrap();
    assert!(expires >= (at("2026-11-21T12:00:00Z") + Duration::days(15)).timestamp());
    assert_eq!(item["cost_usd"].as_n().unwrap(), "2");

    // TTL deletes late: a record past its expiry still fences the event.
    env.store
        .client()
        .update_item()
        .table_name(env.store.table())
        .set_key(Some(key("ttl-1")))
        .update_expression("SET #ttl = :past")
        .expression_attribute_names("#ttl", keys::TTL)
        .expression_attribute_values(
            ":past",
            aws_sdk_dynamodb::types::AttributeValue::N("1".into()),
        )
        .send()
        .await
        .unwrap();
    env.clock.set(at("2026-12-10T12:00:00Z"));
    let report = ingest_ok(&env, &[event]).await;
    assert_eq!((report.applied, report.duplicates), (0, 1));
    env.clock.set(at("2026-11-21T12:00:00Z"));
    assert_eq!(usage(&env, "kim", "openai").await, [usd("2"); 3]);
}
