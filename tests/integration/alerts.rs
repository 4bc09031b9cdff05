//! Alerts (issue 12): threshold crossings from the table's change stream.
//! Usage events go through the real `usage-ingest` App, the stream is read
//! from the engine through the DynamoDB Streams API, and the records are
//! handed to the real `alerts` App as Lambda's event source mapping would
//! (`spendguard_local::streams`). The webhook is a real HTTP receiver that
//! checks every signature.

use alerts::delivery::{EventSink, Retry, Webhook};
use aws_lambda_events::event::sqs::SqsEvent;
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use spendguard_core::domain::alert::{verify_webhook_signature, SIGNATURE_HEADER};
use spendguard_core::Clock;
use spendguard_local::streams::{self, StreamReader};
use spendguard_local::template::{parse_yaml, Template, TEMPLATE_YAML};
use spendguard_tests::scenario::sqs_records;
use spendguard_tests::TestEnv;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

const SECRET: &str = "whsec-test";

/// What the receiver saw: per alert id, the attempts and the accepted deliveries.
#[derive(Default)]
struct Seen {
    attempts: HashMap<String, usize>,
    accepted: Vec<Value>,
    bad_signatures: usize,
}

struct Receiver {
    url: String,
    seen: Arc<Mutex<Seen>>,
}

impl Receiver {
    /// Answers 500 to the first `fail_first` attempts of each alert, then 200
    /// (a delivery with a bad signature is refused with 400 and counted).
    async fn start(fail_first: usize) -> Self {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let state = seen.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: http::HeaderMap, body: axum::body::Bytes| {
                let state = state.clone();
                async move {
                    let body = String::from_utf8_lossy(&body).into_owned();
                    let signature = headers
                        .get(SIGNATURE_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    let mut seen = state.lock().unwrap();
                    if !verify_webhook_signature(
                        &signature,
                        SECRET,
                        &body,
                        Utc::now().timestamp(),
                        300,
                    ) {
                        seen.bad_signatures += 1;
                        return http::StatusCode::BAD_REQUEST;
                    }
                    let alert: Value = serde_json::from_str(&body).expect("JSON alert");
                    let id = alert["alert_id"].as_str().expect("alert_id").to_string();
                    let n = seen.attempts.entry(id).or_default();
                    *n += 1;
                    if *n <= fail_first {
                        return http::StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    seen.accepted.push(alert);
                    http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url: format!("http://{addr}/hook"),
            seen,
        }
    }

    fn accepted_ids(&self) -> Vec<String> {
        let seen = self.seen.lock().unwrap();
        assert_eq!(seen.bad_signatures, 0, "every delivery is signed");
        seen.accepted
            .iter()
            .map(|a| a["alert_id"].as_str().unwrap().to_string())
            .collect()
    }
}

/// The table's stream on, as the template deploys it (before any write).
async fn with_stream(env: TestEnv) -> TestEnv {
    streams::ensure_stream(&env.store, env.store.table())
        .await
        .expect("the engine has streams");
    env
}

fn alerts_app(env: &TestEnv, receiver: &Receiver, attempts: u32) -> alerts::App {
    let mut webhook = Webhook::new(&receiver.url, SECRET).expect("webhook");
    webhook.retry = Retry {
        attempts,
        base: std::time::Duration::from_millis(2),
        cap: std::time::Duration::from_millis(20),
        timeout: std::time::Duration::from_secs(5),
    };
    alerts::App::new(env.deps(), EventSink::Log, Some(webhook))
}

/// The whole stream, as the mapping would deliver it; the total emitted.
async fn run_stream(env: &TestEnv, app: &alerts::App) -> (usize, usize) {
    let reader = StreamReader::for_store(&env.store).await.expect("stream");
    let records = reader.all_records().await.expect("records");
    let reports = streams::deliver(app, records).await;
    (
        reports.iter().map(|r| r.emitted).sum(),
        reports.iter().map(|r| r.failed).sum(),
    )
}

fn usage_batch(user: &str, from: usize, n: usize, cost: &str, at: DateTime<Utc>) -> SqsEvent {
    sqs_records((from..from + n).map(|i| {
        let body = json!({
            "event_id": format!("{user}-{}-{i}", at.timestamp()),
            "user_id": user,
            "platform": "openai",
            "cost_usd": cost,
            "occurred_at": at.to_rfc3339(),
        });
        (format!("m-{i}"), body.to_string())
    }))
}

/// `events` usage events of `cost`, sent as concurrent SQS batches of 10.
async fn spend_concurrently(env: &TestEnv, user: &str, events: usize, cost: &str) {
    let ingest = Arc::new(usage_ingest::App::new(env.deps()));
    let at = env.clock.now();
    let mut tasks = tokio::task::JoinSet::new();
    for batch in 0..events / 10 {
        let ingest = ingest.clone();
        let event = usage_batch(user, batch * 10, 10, cost, at);
        tasks.spawn(async move { ingest.process(event).await.report });
    }
    let mut applied = 0;
    while let Some(report) = tasks.join_next().await {
        let report = report.unwrap();
        assert_eq!(report.failed, 0);
        applied += report.applied;
    }
    assert_eq!(applied, events);
}

async fn list(env: &TestEnv, path: &str) -> Vec<Value> {
    env.admin_pages(path).await.concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_usage_crosses_each_threshold_once_replay_emits_nothing_next_day_re_arms() {
    let env = with_stream(TestEnv::build(|_| {}, Clock::manual(Utc::now())).await).await;
    env.put("/v1/admin/users/alice/quotas")
        .as_admin()
        .json(&json!({"quotas": [{"platform": "openai", "daily_limit_usd": "10"}]}))
        .send()
        .await
        .assert_status(200);
    let receiver = Receiver::start(0).await;
    let app = alerts_app(&env, &receiver, 4);

    // 1,000 events of $0.011: $11 against a $10 daily cap.
    spend_concurrently(&env, "alice", 1000, "0.011").await;
    let (emitted, failed) = run_stream(&env, &app).await;
    assert_eq!((emitted, failed), (3, 0));
    let alerts = list(
        &env,
        "/v1/admin/alerts?user_id=alice&type=quota_threshold&limit=2",
    )
    .await;
    let thresholds: BTreeSet<u64> = alerts
        .iter()
        .map(|a| a["threshold_percent"].as_u64().unwrap())
        .collect();
    assert_eq!(thresholds, BTreeSet::from([50, 80, 100]));
    for a in &alerts {
        assert_eq!(a["type"], "quota_threshold");
        assert_eq!(a["window"], "daily");
        assert_eq!(a["limit_usd"], "10");
        assert_eq!(a["platform"], "openai");
    }
    // Newest first.
    let times: Vec<&str> = alerts
        .iter()
        .map(|a| a["occurred_at"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    let mine = env.get("/v1/me/alerts").as_user("alice").send().await;
    mine.assert_status(200);
    assert_eq!(mine.body["items"].as_array().unwrap().len(), 3);
    assert_eq!(mine.body["next_cursor"], Value::Null);
    let bob = env.get("/v1/me/alerts").as_user("bob").send().await;
    assert_eq!(bob.body["items"], json!([]));
    // The webhook got each alert once, signed, with the listed payload.
    let mut ids = receiver.accepted_ids();
    ids.sort();
    let mut listed: Vec<String> = alerts
        .iter()
        .map(|a| a["alert_id"].as_str().unwrap().to_string())
        .collect();
    listed.sort();
    assert_eq!(ids, listed);

    // Replaying the whole stream emits and delivers nothing.
    assert_eq!(run_stream(&env, &app).await, (0, 0));
    assert_eq!(receiver.accepted_ids().len(), 3);

    // The next day's window re-arms: $5.5 crosses 50 % again.
    env.clock.set(env.clock.now() + Duration::days(1));
    spend_concurrently(&env, "alice", 500, "0.011").await;
    assert_eq!(run_stream(&env, &app).await, (1, 0));
    let alerts = list(&env, "/v1/admin/alerts?limit=100").await;
    assert_eq!(alerts.len(), 4);
    assert_eq!(alerts[0]["threshold_percent"], 50, "the newest");
    assert_ne!(alerts[0]["window_start"], alerts[1]["window_start"]);
    assert_eq!(receiver.accepted_ids().len(), 4);
}

async fn set_balance(env: &TestEnv, user: &str, target: i64) {
    env.post(&format!("/v1/admin/users/{user}/credits/adjust"))
        .as_admin()
        .json(&json!({"target": target, "reason": "test", "mode": "apply"}))
        .send()
        .await
        .assert_status(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_balance_alerts_once_per_drop_and_a_failing_receiver_still_gets_each_once() {
    let env = with_stream(
        TestEnv::build(
            |c| c.alerts.low_balance_credits = Some(100),
            Clock::system(),
        )
        .await,
    )
    .await;
    // The receiver fails the first two attempts of every alert.
    let receiver = Receiver::start(2).await;
    let app = alerts_app(&env, &receiver, 4);
    for target in [150, 50, 40, 200, 100, 20] {
        set_balance(&env, "bob", target).await;
    }
    // 150 → 50 drops below 100; 50 → 40 stays below; 200 → 100 is not below;
    // 100 → 20 drops again.
    assert_eq!(run_stream(&env, &app).await, (2, 0));
    let alerts = list(&env, "/v1/admin/alerts?type=low_balance").await;
    let balances: Vec<i64> = alerts
        .iter()
        .map(|a| a["balance"].as_i64().unwrap())
        .collect();
    assert_eq!(balances, [20, 50]);
    assert!(alerts.iter().all(|a| a["low_balance_credits"] == 100));
    assert!(alerts.iter().all(|a| a.get("platform").is_none()));
    let ids = receiver.accepted_ids();
    assert_eq!(ids.len(), 2, "each alert delivered once");
    let attempts = receiver.seen.lock().unwrap().attempts.clone();
    assert!(attempts.values().all(|n| *n == 3), "{attempts:?}");
    // Quota-threshold filter and a replay: nothing.
    assert!(list(&env, "/v1/admin/alerts?type=quota_threshold")
        .await
        .is_empty());
    assert_eq!(run_stream(&env, &app).await, (0, 0));
    assert_eq!(receiver.accepted_ids().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_down_past_every_retry_fails_the_record_and_a_redelivery_finishes_once() {
    let env = with_stream(
        TestEnv::build(|c| c.alerts.low_balance_credits = Some(10), Clock::system()).await,
    )
    .await;
    // Six failed attempts: the first invocation (2 tries) and the second
    // (2 tries) fail, the third invocation's second try succeeds.
    let receiver = Receiver::start(5).await;
    let app = alerts_app(&env, &receiver, 2);
    set_balance(&env, "carol", 50).await;
    set_balance(&env, "carol", 5).await;
    let reader = StreamReader::for_store(&env.store).await.unwrap();
    let records = reader.all_records().await.unwrap();
    let reports = streams::deliver(&app, records.clone()).await;
    // Invocation 1 and 2 report the record; invocation 3 (the last the
    // mapping allows) finishes it without writing the alert again.
    let emitted: usize = reports.iter().map(|r| r.emitted).sum();
    let failed: usize = reports.iter().map(|r| r.failed).sum();
    assert_eq!((emitted, failed), (1, 2), "{reports:?}");
    assert_eq!(receiver.accepted_ids().len(), 1);
    // The alert was listed from the first attempt on, once.
    assert_eq!(list(&env, "/v1/admin/alerts?user_id=carol").await.len(), 1);
    // Delivered: another redelivery sends nothing.
    streams::deliver(&app, records).await;
    assert_eq!(receiver.accepted_ids().len(), 1);
}

#[tokio::test]
async fn bad_alert_list_requests_are_4xx_with_a_code() {
    let env = TestEnv::new().await;
    env.get("/v1/admin/alerts?type=sometimes")
        .as_admin()
        .send()
        .await
        .assert_error(400, "invalid_request");
    env.get("/v1/admin/alerts?user_id=a%20b")
        .as_admin()
        .send()
        .await
        .assert_error(400, "invalid_id");
    env.get("/v1/admin/alerts")
        .as_user("alice")
        .send()
        .await
        .assert_error(403, "forbidden");
    env.get("/v1/admin/alerts?limit=0")
        .as_admin()
        .send()
        .await
        .assert_error(400, "invalid_request");
}

/// The template deploys what this suite exercises: the stream, the mapping
/// with partial batch responses, bisection and a DLQ, the bus, the alarms.
#[test]
fn template_has_the_stream_mapping_dlq_bus_and_alarms() {
    let doc = parse_yaml(TEMPLATE_YAML).unwrap();
    let r = &doc["Resources"];
    assert_eq!(
        r["SpendguardTable"]["Properties"]["StreamSpecification"]["StreamViewType"].as_str(),
        Some(streams::STREAM_VIEW_TYPE)
    );
    let mapping = &r["AlertsStreamMapping"]["Properties"];
    assert_eq!(
        r["AlertsStreamMapping"]["Type"].as_str(),
        Some("AWS::Lambda::EventSourceMapping")
    );
    let yaml = |v: &spendguard_local::template::Value| format!("{v:?}");
    assert!(yaml(&mapping["EventSourceArn"]).contains("SpendguardTable.StreamArn"));
    assert!(yaml(&mapping["FunctionName"]).contains("AlertsFunction"));
    assert_eq!(
        mapping["FunctionResponseTypes"][0].as_str(),
        Some("ReportBatchItemFailures")
    );
    assert_eq!(mapping["BisectBatchOnFunctionError"].as_bool(), Some(true));
    assert!(mapping["MaximumRetryAttempts"].as_u64().is_some());
    assert_eq!(
        mapping["BatchSize"].as_i64(),
        Some(i64::from(streams::BATCH_SIZE))
    );
    assert!(
        yaml(&mapping["DestinationConfig"]["OnFailure"]["Destination"])
            .contains("AlertsDeadLetterQueue.Arn")
    );
    assert_eq!(
        r["AlertsDeadLetterQueue"]["Type"].as_str(),
        Some("AWS::SQS::Queue")
    );
    assert_eq!(
        r["AlertsEventBus"]["Type"].as_str(),
        Some("AWS::Events::EventBus")
    );
    // Alarms on the failures: the DLQ depth and the webhook failures metric.
    let alarm = |id: &str| {
        let a = &r[id];
        assert_eq!(a["Type"].as_str(), Some("AWS::CloudWatch::Alarm"), "{id}");
        a["Properties"].clone()
    };
    let dlq = alarm("AlertsDeadLetterAlarm");
    assert!(yaml(&dlq["Dimensions"]).contains("AlertsDeadLetterQueue.QueueName"));
    let webhook = alarm("AlertsWebhookFailuresAlarm");
    assert_eq!(
        webhook["Namespace"].as_str(),
        Some(spendguard_core::metrics::NAMESPACE)
    );
    assert_eq!(
        webhook["MetricName"].as_str(),
        Some(spendguard_core::metrics::WEBHOOK_FAILURES)
    );
    assert_eq!(
        r["SpendguardDashboard"]["Type"].as_str(),
        Some("AWS::CloudWatch::Dashboard")
    );
    // The function: its environment, the stream reads, the bus and the DLQ.
    let f = Template::bundled()
        .functions()
        .into_iter()
        .find(|f| f.binary == "alerts")
        .expect("alerts function");
    for var in spendguard_core::config::ALERT_ENV_VARS
        .iter()
        .chain(alerts::delivery::ENV_VARS)
    {
        assert!(f.env_vars.iter().any(|v| v == var), "alerts: {var}");
    }
    let stream =
        spendguard_local::template::ResourceRef::Other("GetAtt SpendguardTable.StreamArn".into());
    for action in ["GetRecords", "GetShardIterator", "DescribeStream"] {
        assert!(f.allows(&format!("dynamodb:{action}"), &stream), "{action}");
    }
    let any = spendguard_local::template::ResourceRef::Other("*".into());
    assert!(f.allows("dynamodb:ListStreams", &any));
    let arn = |id: &str| spendguard_local::template::ResourceRef::arn(id, "");
    assert!(f.allows("events:PutEvents", &arn("AlertsEventBus")));
    assert!(f.allows("sqs:SendMessage", &arn("AlertsDeadLetterQueue")));
}
