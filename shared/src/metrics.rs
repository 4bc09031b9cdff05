//! CloudWatch Embedded Metric Format: one JSON line on stdout per metric
//! point, which Lambda's log pipeline turns into a metric. No API call, no
//! client, nothing on the request path but a `println!`.
//!
//! Namespace `spendguard`, dimension `Function` (the function's name), plus
//! optional extra dimensions (e.g. `Reason`). Metric names used by the
//! template's alarms and dashboard are constants here.

use serde_json::{json, Map, Value};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// Metrics are written where Lambda turns them into metrics (it sets
/// `AWS_LAMBDA_FUNCTION_NAME`), or anywhere with `SPENDGUARD_METRICS=1`; the
/// local stack and the tests stay quiet.
fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some()
            || std::env::var("SPENDGUARD_METRICS").is_ok_and(|v| v == "1")
    })
}

pub const NAMESPACE: &str = "spendguard";

pub const EVENTS_APPLIED: &str = "EventsApplied";
pub const EVENTS_DUPLICATE: &str = "EventsDuplicate";
pub const EVENTS_FAILED: &str = "EventsFailed";
pub const CHECKS_ALLOWED: &str = "ChecksAllowed";
pub const CHECKS_DENIED: &str = "ChecksDenied";
pub const ALERTS_EMITTED: &str = "AlertsEmitted";
pub const WEBHOOK_FAILURES: &str = "WebhookFailures";
pub const ALERT_RECORDS_FAILED: &str = "AlertRecordsFailed";

/// The EMF document of one metric point (exposed for tests).
pub fn document(
    function: &str,
    metric: &str,
    value: f64,
    unit: &str,
    dimensions: &[(&str, &str)],
    timestamp_ms: u128,
) -> Value {
    let mut names = vec![Value::from("Function")];
    let mut root = Map::new();
    root.insert("Function".into(), Value::from(function));
    for (name, value) in dimensions {
        names.push(Value::from(*name));
        root.insert((*name).into(), Value::from(*value));
    }
    root.insert(metric.into(), json!(value));
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms as u64,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [names],
                "Metrics": [{"Name": metric, "Unit": unit}],
            }],
        }),
    );
    Value::Object(root)
}

/// Emits `metric` = `value` (Count) for `function`, with extra dimensions.
/// Zero counts are skipped (a missing point reads as zero on the alarms).
pub fn count_with(function: &str, metric: &str, value: usize, dimensions: &[(&str, &str)]) {
    if value == 0 || !enabled() {
        return;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    println!(
        "{}",
        document(function, metric, value as f64, "Count", dimensions, now)
    );
}

/// [`count_with`] without extra dimensions.
pub fn count(function: &str, metric: &str, value: usize) {
    count_with(function, metric, value, &[]);
}

/// A quota check's decision: allowed, or denied with its reason.
pub fn check_decision(function: &str, denied_reason: Option<&str>) {
    match denied_reason {
        None => count(function, CHECKS_ALLOWED, 1),
        Some(reason) => count_with(function, CHECKS_DENIED, 1, &[("Reason", reason)]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_follow_the_embedded_metric_format() {
        let doc = document(
            "quota",
            CHECKS_DENIED,
            1.0,
            "Count",
            &[("Reason", "quota_exceeded")],
            7,
        );
        assert_eq!(
            doc,
            json!({
                "Function": "quota",
                "Reason": "quota_exceeded",
                "ChecksDenied": 1.0,
                "_aws": {
                    "Timestamp": 7,
                    "CloudWatchMetrics": [{
                        "Namespace": "spendguard",
                        "Dimensions": [["Function", "Reason"]],
                        "Metrics": [{"Name": "ChecksDenied", "Unit": "Count"}],
                    }],
                },
            })
        );
    }
}
