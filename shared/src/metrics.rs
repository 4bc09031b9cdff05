//! CloudWatch Embedded Metric Format: one JSON line on stdout per metric
//! point, which Lambda's log pipeline turns into a metric. No API call, no
//! client, nothing on the request path but a `println!`.
//!
//! Namespace `spendguard`, dimension `Function` (the function's name), plus
//! optional extra dimensions (e.g. `Reason`). Metric names used by the
//! template's alarms and dashboard are constants here.

use crate::store::txn::RetryCounts;
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
pub const TXN_SENDS: &str = "TxnSends";
pub const TXN_CONFLICTS: &str = "TxnConflicts";
pub const TXN_REPLANS: &str = "TxnReplans";
pub const RESERVATIONS_ADMITTED: &str = "ReservationsAdmitted";
pub const RESERVATIONS_REFUSED: &str = "ReservationsRefused";
pub const RESERVATIONS_EXPIRED: &str = "ReservationsExpired";

/// Every metric the functions emit (the template's dashboard shows each).
pub const ALL: &[&str] = &[
    EVENTS_APPLIED,
    EVENTS_DUPLICATE,
    EVENTS_FAILED,
    CHECKS_ALLOWED,
    CHECKS_DENIED,
    ALERTS_EMITTED,
    WEBHOOK_FAILURES,
    ALERT_RECORDS_FAILED,
    TXN_SENDS,
    TXN_CONFLICTS,
    TXN_REPLANS,
    RESERVATIONS_ADMITTED,
    RESERVATIONS_REFUSED,
    RESERVATIONS_EXPIRED,
];

/// The EMF document of one metric point (exposed for tests).
pub fn document(
    function: &str,
    metric: &str,
    value: f64,
    unit: &str,
    dimensions: &[(&str, &str)],
    timestamp_ms: u128,
) -> Value {
    document_of(function, &[(metric, value)], unit, dimensions, timestamp_ms)
}

/// The EMF document of several metrics sharing dimensions and a moment (one
/// log line instead of one per metric).
pub fn document_of(
    function: &str,
    metrics: &[(&str, f64)],
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
    let mut definitions = Vec::with_capacity(metrics.len());
    for (metric, value) in metrics {
        root.insert((*metric).into(), json!(value));
        definitions.push(json!({"Name": metric, "Unit": unit}));
    }
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms as u64,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [names],
                "Metrics": definitions,
            }],
        }),
    );
    Value::Object(root)
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// Emits `metric` = `value` (Count) for `function`, with extra dimensions.
/// Zero counts are skipped (a missing point reads as zero on the alarms).
pub fn count_with(function: &str, metric: &str, value: usize, dimensions: &[(&str, &str)]) {
    if value == 0 || !enabled() {
        return;
    }
    println!(
        "{}",
        document(
            function,
            metric,
            value as f64,
            "Count",
            dimensions,
            now_ms()
        )
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

/// The retry layer's counts of one invocation (`store::txn::RetryStats`):
/// transactions sent, cancellations by a conflicting transaction, re-plans.
/// One line; nothing when nothing was sent.
pub fn retries(function: &str, counts: RetryCounts) {
    if let Some(doc) = retries_document(function, counts, now_ms()) {
        if enabled() {
            println!("{doc}");
        }
    }
}

/// The document [`retries`] writes (exposed for tests).
pub fn retries_document(function: &str, counts: RetryCounts, timestamp_ms: u128) -> Option<Value> {
    if counts == RetryCounts::default() {
        return None;
    }
    let metrics = [
        (TXN_SENDS, counts.sends as f64),
        (TXN_CONFLICTS, counts.conflicts as f64),
        (TXN_REPLANS, counts.replans as f64),
    ];
    Some(document_of(function, &metrics, "Count", &[], timestamp_ms))
}

/// The `Reason` dimension of a decision: the reason's wire name (its serde
/// form, e.g. `quota_exceeded`), or `fallback` if it has none.
pub fn reason_label<T: serde::Serialize>(reason: Option<&T>, fallback: &str) -> String {
    reason
        .and_then(|r| serde_json::to_value(r).ok())
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| fallback.to_string())
}

/// A reservation's admission: admitted, or refused with the Check's reason.
pub fn reservation_decision(function: &str, refused_reason: Option<&str>) {
    match refused_reason {
        None => count(function, RESERVATIONS_ADMITTED, 1),
        Some(reason) => count_with(function, RESERVATIONS_REFUSED, 1, &[("Reason", reason)]),
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

    #[test]
    fn retry_counts_go_in_one_document() {
        let counts = RetryCounts {
            sends: 5,
            conflicts: 2,
            replans: 3,
        };
        let doc = retries_document("usage-ingest", counts, 9).unwrap();
        assert_eq!(
            doc,
            json!({
                "Function": "usage-ingest",
                "TxnSends": 5.0,
                "TxnConflicts": 2.0,
                "TxnReplans": 3.0,
                "_aws": {
                    "Timestamp": 9,
                    "CloudWatchMetrics": [{
                        "Namespace": "spendguard",
                        "Dimensions": [["Function"]],
                        "Metrics": [
                            {"Name": "TxnSends", "Unit": "Count"},
                            {"Name": "TxnConflicts", "Unit": "Count"},
                            {"Name": "TxnReplans", "Unit": "Count"},
                        ],
                    }],
                },
            })
        );
        // An invocation that sent nothing writes nothing.
        assert_eq!(retries_document("quota", RetryCounts::default(), 9), None);
    }

    #[test]
    fn reason_labels_are_wire_names() {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "snake_case")]
        enum Why {
            QuotaExceeded,
        }
        assert_eq!(
            reason_label(Some(&Why::QuotaExceeded), "x"),
            "quota_exceeded"
        );
        assert_eq!(reason_label::<Why>(None, "refused"), "refused");
    }

    #[test]
    fn reservation_metrics_carry_their_reason() {
        let doc = document(
            "quota",
            RESERVATIONS_REFUSED,
            1.0,
            "Count",
            &[("Reason", "insufficient_credits")],
            3,
        );
        assert_eq!(doc["ReservationsRefused"], 1.0);
        assert_eq!(doc["Reason"], "insufficient_credits");
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Function", "Reason"]])
        );
        let expired = document(
            "reservation-expiry",
            RESERVATIONS_EXPIRED,
            4.0,
            "Count",
            &[],
            3,
        );
        assert_eq!(expired["ReservationsExpired"], 4.0);
        assert_eq!(expired["Function"], "reservation-expiry");
    }
}
