//! SQS batches: a bad message fails alone, partial batch responses, and batches that run out of time.

use super::*;

#[tokio::test]
async fn bad_messages_fail_alone_and_good_ones_apply_once() {
    let env = env_at("2026-11-21T12:00:00Z", "UTC").await;
    let now = at("2026-11-21T12:00:00Z");
    let t = now - Duration::minutes(30);
    // An event applied in an earlier batch.
    ingest_ok(&env, &[body("old-1", "gus", "openai", "1", t)]).await;

    let good = [
        ("g1", body("good-1", "gus", "openai", "0.1", t)),
        ("g2", body("good-2", "gus", "openai", "0.02", t)),
        (
            "g3",
            body(
                "good-3",
                "gus",
                "openai",
                "0.003",
                now + Duration::minutes(5),
            ),
        ),
        ("g4", body("good-4", "gus", "anthropic", "4", t)),
        // The same payload as an applied event, spelled differently: acknowledged.
        (
            "dup-same",
            json!({"event_id": "old-1", "user_id": "gus", "platform": "openai",
                   "cost_usd": 1.0, "occurred_at": t.to_rfc3339(), "model": "m-1"})
            .to_string(),
        ),
        // A second delivery of good-1 in the same batch: acknowledged.
        ("g1-again", body("good-1", "gus", "openai", "0.1", t)),
    ];
    let bad = [
        ("malformed", "{\"event_id\": \"bad-1\", ".to_string()),
        ("negative", body("bad-2", "gus", "openai", "-0.5", t)),
        ("platform", body("bad-3", "gus", "mistral", "0.5", t)),
        (
            "future",
            body(
                "bad-4",
                "gus",
                "openai",
                "0.5",
                now + Duration::seconds(301),
            ),
        ),
        ("mismatch-old", body("old-1", "gus", "openai", "1.5", t)),
        (
            "mismatch-batch",
            body("good-2", "gus", "openai", "0.021", t),
        ),
        ("bad-id", body("bad 5", "gus", "openai", "0.5", t)),
        ("not-an-object", "[1, 2]".to_string()),
        ("empty", String::new()),
    ];
    let mut messages: Vec<(String, String)> = good
        .iter()
        .chain(bad.iter())
        .map(|(id, b)| (id.to_string(), b.clone()))
        .collect();
    messages.shuffle(&mut rand::thread_rng());
    // The batch-internal mismatch must come after the event it conflicts with.
    let pos = |m: &[(String, String)], id: &str| m.iter().position(|(i, _)| i == id).unwrap();
    if pos(&messages, "mismatch-batch") < pos(&messages, "g2") {
        let (a, b) = (pos(&messages, "mismatch-batch"), pos(&messages, "g2"));
        messages.swap(a, b);
    }
    let expected: HashSet<String> = bad.iter().map(|(id, _)| id.to_string()).collect();
    for round in 0..2 {
        let (failed, report) = ingest(&env, sqs_records(messages.clone())).await;
        let got: HashSet<String> = failed.iter().cloned().collect();
        assert_eq!(got, expected, "round {round}");
        assert_eq!(failed.len(), got.len(), "each failed id once: {failed:?}");
        assert_eq!(report.failed, bad.len());
        assert_eq!(report.applied + report.duplicates, good.len());
        assert_eq!(
            usage(&env, "gus", "openai").await,
            [usd("1.123"); 3],
            "round {round}"
        );
        assert_eq!(usage(&env, "gus", "anthropic").await, [usd("4"); 3]);
    }
}

#[tokio::test]
async fn sample_batch_fails_only_the_malformed_message() {
    // The sample: four events (one with credits, one delivered twice with the
    // payload spelled differently) and a malformed body.
    let env = env_at("2026-11-21T12:00:00Z", "UTC").await;
    let res = env
        .invoke("usage-ingest", &sample_event("sqs-usage-batch.json"))
        .await;
    res.assert_status(200);
    assert_eq!(
        res.body,
        json!({"batchItemFailures": [{"itemIdentifier": "0e3b8f2c-0000-4000-8000-000000000003"}]})
    );
    assert_eq!(usage(&env, "alice", "anthropic").await, [usd("0.0125"); 3]);
    assert_eq!(usage(&env, "alice", "openai").await, [usd("0.5"); 3]);
    assert_eq!(usage(&env, "bob", "gemini").await, [usd("0.0000000001"); 3]);
    assert_eq!(credit_account(&env, "alice").await["used"], 50);
}

#[tokio::test]
async fn a_failed_message_without_id_is_never_dropped_silently() {
    let env = env_at("2026-11-21T12:00:00Z", "UTC").await;
    let t = at("2026-11-21T11:00:00Z");
    let event: SqsEvent = serde_json::from_value(json!({"Records": [
        {"body": "{not json"},
        {"messageId": "", "body": body("noid-1", "pat", "openai", "1", t)},
        {"messageId": "m-ok", "body": body("noid-2", "pat", "openai", "2", t)},
        {"messageId": "m-bad", "body": "{}"},
    ]}))
    .unwrap();
    let outcome = env.gateway.functions().usage_ingest.process(event).await;
    // Only real ids are named; the id-less failure makes the Lambda entry
    // point fail the invocation, so SQS delivers the whole batch again.
    let ids: Vec<&str> = outcome
        .response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(ids, ["m-bad"]);
    assert_eq!(outcome.unreportable, 1);
    assert_eq!((outcome.report.applied, outcome.report.failed), (2, 2));
    assert_eq!(usage(&env, "pat", "openai").await, [usd("3"); 3]);
}

#[tokio::test]
async fn a_batch_out_of_time_fails_its_unwritten_messages_and_redelivery_applies_them_once() {
    // The Lambda deadline bounds every retry: rather than being killed mid-batch
    // (the whole batch back on the queue, receive counts up for every message),
    // the function stops before the deadline and names what it did not write.
    let env = env_at("2026-11-21T12:00:00Z", "UTC").await;
    grant(&env, "lou", 10).await;
    let t = at("2026-11-21T11:00:00Z");
    let messages: Vec<(String, String)> = [
        ("m1", body("late-1", "lou", "openai", "0.5", t)),
        ("m2", body("late-2", "lou", "openai", "0.25", t)),
        (
            "m3",
            body_with_credits("late-3", "lou", "openai", "1", 4, t),
        ),
        ("m4", body("late-4", "kim", "gemini", "2", t)),
        ("m5", "{not json".to_string()),
    ]
    .iter()
    .map(|(id, b)| (id.to_string(), b.clone()))
    .collect();
    let app = &env.gateway.functions().usage_ingest;
    let outcome = app
        .process_until(
            sqs_records(messages.clone()),
            Some(tokio::time::Instant::now()),
        )
        .await;
    let failed: HashSet<&str> = outcome
        .response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, HashSet::from(["m1", "m2", "m3", "m4", "m5"]));
    assert_eq!((outcome.report.applied, outcome.report.failed), (0, 5));
    assert_eq!(usage(&env, "lou", "openai").await, [Usd::ZERO; 3]);
    assert_eq!(credit_account(&env, "lou").await["available"], 10);

    let (failed, report) = ingest(&env, sqs_records(messages)).await;
    assert_eq!(failed, ["m5"]);
    assert_eq!((report.applied, report.duplicates), (4, 0));
    assert_eq!(usage(&env, "lou", "openai").await, [usd("1.75"); 3]);
    assert_eq!(usage(&env, "kim", "gemini").await, [usd("2"); 3]);
    assert_eq!(credit_account(&env, "lou").await["available"], 6);
}

/// A redelivery that builds the very write the first delivery sent (same
/// batch time, same content: a quick redelivery racing the first, or any with
/// a clock that has not moved) is a duplicate, not a second application: the
/// engine must not answer it from the first write's token cache, which would
/// report (and count in `EventsApplied`) the event as applied twice.
#[tokio::test]
async fn a_redelivery_building_the_same_write_counts_as_a_duplicate() {
    let env = env_at("2026-11-21T12:00:00Z", "UTC").await;
    // An earlier event starts the windows: the next write commits on its
    // first plan, which a redelivery builds again exactly.
    let earlier = body("same-0", "lee", "openai", "1", at("2026-11-21T11:58:00Z"));
    ingest_ok(&env, &[earlier]).await;
    let event = body("same-1", "lee", "openai", "1.5", at("2026-11-21T11:59:00Z"));
    let first = ingest_ok(&env, std::slice::from_ref(&event)).await;
    assert_eq!((first.applied, first.duplicates), (1, 0));
    let again = ingest_ok(&env, &[event]).await;
    assert_eq!((again.applied, again.duplicates), (0, 1));
    assert_eq!(usage(&env, "lee", "openai").await, [usd("2.5"); 3]);
}
