//! The alerts function: the table's change stream (NEW_AND_OLD_IMAGES) in,
//! threshold crossings out, to EventBridge and the optional signed webhook.
//!
//! Thin: each stream record's images are read by the store
//! ([`spendguard_core::store::alerts::watched`]), the crossing is decided by
//! the pure rules ([`spendguard_core::domain::alert`]), the alert is written
//! once ([`AlertStore::record_alert`]) and then delivered where it has not
//! been yet. Nothing here runs on the request path.
//!
//! Failure: records are handled in stream order; the first one that cannot
//! be finished (store unavailable, EventBridge or the webhook failing after
//! their retries) is reported as the batch item failure, so Lambda retries
//! from it (bisecting) and, after the mapping's last retry, sends it to the
//! on-failure destination (the DLQ). Records after it come again with it;
//! what they already wrote is found by its deterministic id.

pub mod delivery;
pub mod stream;

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use delivery::{EventSink, Webhook};
use spendguard_core::domain::alert::{low_balance_alert, quota_alerts, Alert};
use spendguard_core::metrics;
use spendguard_core::store::alerts::{watched, AlertStore, Channel, Recorded, Watched};
use spendguard_core::{Deps, Error};

pub struct App {
    deps: Deps,
    sink: EventSink,
    webhook: Option<Webhook>,
}

/// What one batch came to (logs, tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchReport {
    pub records: usize,
    /// Alerts written for the first time.
    pub emitted: usize,
    /// Alerts already written by an earlier evaluation (redelivery).
    pub duplicates: usize,
    /// Records reported failed (at most one: the rest follow it).
    pub failed: usize,
}

impl App {
    pub fn new(deps: Deps, sink: EventSink, webhook: Option<Webhook>) -> Self {
        Self {
            deps,
            sink,
            webhook,
        }
    }

    pub async fn handle(&self, event: Event) -> DynamoDbEventResponse {
        self.process(event).await.0
    }

    /// [`App::handle`] with the batch's report.
    pub async fn process(&self, event: Event) -> (DynamoDbEventResponse, BatchReport) {
        let mut report = BatchReport {
            records: event.records.len(),
            ..BatchReport::default()
        };
        let mut response = DynamoDbEventResponse::default();
        for record in &event.records {
            if let Err(err) = self.record(record, &mut report).await {
                let sequence = record.change.sequence_number.clone().unwrap_or_default();
                tracing::error!(
                    sequence = %sequence,
                    event_id = %record.event_id,
                    code = err.code(),
                    error = %err,
                    "stream record failed; reported for retry (then the DLQ)"
                );
                report.failed += 1;
                let mut failure = DynamoDbBatchItemFailure::default();
                // An empty identifier fails the whole batch, which is what a
                // record without a sequence number needs.
                failure.item_identifier = Some(sequence);
                response.batch_item_failures.push(failure);
                break;
            }
        }
        tracing::info!(
            records = report.records,
            emitted = report.emitted,
            duplicates = report.duplicates,
            failed = report.failed,
            "stream batch processed"
        );
        metrics::count("alerts", metrics::ALERTS_EMITTED, report.emitted);
        metrics::count("alerts", metrics::ALERT_RECORDS_FAILED, report.failed);
        self.deps.emit_retries("alerts");
        (response, report)
    }

    /// The alerts of one stream record: written, then delivered.
    async fn record(&self, record: &EventRecord, report: &mut BatchReport) -> Result<(), Error> {
        let sequence = record.change.sequence_number.as_deref().unwrap_or_default();
        for (i, alert) in self.alerts_of(record)?.iter().enumerate() {
            // Stream order, then the order the rules list a write's alerts in.
            let order = format!("{sequence:0>40}.{i:03}");
            let recorded = self.deps.store.record_alert(alert, &order).await?;
            match recorded {
                Recorded::New => report.emitted += 1,
                Recorded::Existing { .. } => report.duplicates += 1,
            }
            self.deliver(alert, recorded).await?;
        }
        Ok(())
    }

    /// Sends the alert where it has not gone yet; each success is recorded, so
    /// a retry repeats only what failed.
    async fn deliver(&self, alert: &Alert, recorded: Recorded) -> Result<(), Error> {
        let mut failures = Vec::new();
        if !recorded.delivered(Channel::EventBridge) {
            match self.sink.publish(alert).await {
                Ok(()) => {
                    self.deps
                        .store
                        .mark_delivered(&alert.alert_id, Channel::EventBridge)
                        .await?
                }
                Err(e) => failures.push(format!("EventBridge: {e}")),
            }
        }
        if let Some(webhook) = &self.webhook {
            if !recorded.delivered(Channel::Webhook) {
                match webhook.deliver(&alert.to_json()).await {
                    Ok(()) => {
                        self.deps
                            .store
                            .mark_delivered(&alert.alert_id, Channel::Webhook)
                            .await?
                    }
                    Err(e) => {
                        metrics::count("alerts", metrics::WEBHOOK_FAILURES, 1);
                        failures.push(e);
                    }
                }
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Error::Internal(format!(
                "alert {} not delivered: {}",
                alert.alert_id,
                failures.join("; ")
            )))
        }
    }

    /// What the record's write crossed.
    pub fn alerts_of(&self, record: &EventRecord) -> Result<Vec<Alert>, Error> {
        let new = stream::item(&record.change.new_image);
        let old = stream::item(&record.change.old_image);
        let at = stream::created_at(record).unwrap_or_else(|| self.deps.clock.now());
        let settings = &self.deps.config.alerts;
        let old = watched(&old)?;
        Ok(match watched(&new)? {
            Some(Watched::Quota { user_id, record }) => {
                let before = match old {
                    Some(Watched::Quota { record, .. }) => Some(*record),
                    _ => None,
                };
                quota_alerts(
                    &user_id,
                    before.as_ref(),
                    &record,
                    at,
                    self.deps.config.timezone,
                    settings,
                )
            }
            Some(Watched::Credits { user_id, balance }) => {
                let before = match old {
                    Some(Watched::Credits { balance, .. }) => Some(balance),
                    _ => None,
                };
                low_balance_alert(&user_id, before, balance, at, settings)
                    .into_iter()
                    .collect()
            }
            None => Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spendguard_core::{Clock, Config, DynamoStore};
    use std::sync::Arc;

    fn app() -> App {
        let config = Config::for_table("t");
        let deps = Deps {
            store: DynamoStore::for_local_endpoint("http://127.0.0.1:1", "t"),
            config: Arc::new(config),
            clock: Clock::system(),
        };
        App::new(deps, EventSink::Log, None)
    }

    #[test]
    fn the_sample_stream_event_crosses_50_and_80_percent() {
        let text = include_str!("../../../events/dynamodb-stream-quota.json");
        let event: Event = serde_json::from_str(text).expect("a DynamoDB stream event");
        let alerts = app().alerts_of(&event.records[0]).unwrap();
        let got: Vec<(Option<u32>, String)> = alerts
            .iter()
            .map(|a| (a.threshold_percent, a.usage_usd.unwrap().to_string()))
            .collect();
        assert_eq!(
            got,
            [
                (Some(50), "8.0000000001".to_string()),
                (Some(80), "8.0000000001".to_string())
            ]
        );
        assert_eq!(
            alerts[0].occurred_at.to_rfc3339(),
            "2026-11-18T14:00:00+00:00"
        );
    }
}
