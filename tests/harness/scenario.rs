//! Building blocks the reliability scenarios share: usage events as the AI
//! gateway sends them, SQS batches as Lambda delivers them.

use aws_lambda_events::event::sqs::SqsEvent;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

/// One usage event body (no credits, no reservation).
pub fn usage_event(id: &str, user: &str, platform: &str, cost: &str, at: DateTime<Utc>) -> Value {
    json!({
        "event_id": id, "user_id": user, "platform": platform,
        "cost_usd": cost, "occurred_at": at.to_rfc3339(),
    })
}

/// An SQS event carrying `bodies`, each under a fresh message id (as SQS
/// gives every delivery).
pub fn sqs_batch(bodies: &[Value]) -> SqsEvent {
    sqs_messages(
        &bodies
            .iter()
            .map(|b| (uuid::Uuid::new_v4().to_string(), b.clone()))
            .collect::<Vec<_>>(),
    )
}

/// An SQS event of `(message id, body)` pairs.
pub fn sqs_messages(messages: &[(String, Value)]) -> SqsEvent {
    sqs_records(
        messages
            .iter()
            .map(|(id, body)| (id.clone(), body.to_string())),
    )
}

/// An SQS event of `(message id, raw body)` pairs, each a first delivery
/// from the billing queue.
pub fn sqs_records(messages: impl IntoIterator<Item = (String, String)>) -> SqsEvent {
    let records: Vec<Value> = messages
        .into_iter()
        .map(|(id, body)| {
            json!({
                "messageId": id,
                "receiptHandle": format!("rh-{id}"),
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:spendguard-billing",
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).expect("valid SQS event")
}
