//! The usage-ingest function: SQS billing events applied to quota windows and
//! credits exactly once. Answers an SQS partial batch response.
//!
//! Thin: parses each message body on its own (a bad one fails only itself),
//! hands the distinct events to the store's one-write-per-group ingest, and
//! turns each delivery's verdict into the response. Returns only after every
//! write settled, so a quota check right after the batch sees the usage.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Utc};
use lambda_runtime::Diagnostic;
use spendguard_core::domain::usage::{UsageEvent, Verdict};
use spendguard_core::domain::EventId;
use spendguard_core::store::txn::Backoff;
use spendguard_core::store::{IngestContext, IngestOutcome, UsageStore, WriteStats};
use spendguard_core::{Deps, Error};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// Most of the time kept back from the Lambda deadline for the writes in
/// flight when the batch stops retrying, and for answering.
const DEADLINE_MARGIN: Duration = Duration::from_secs(5);

/// The instant a batch stops retrying, from the invocation's deadline
/// (`Context::deadline`, epoch milliseconds): a margin before it, at most
/// [`DEADLINE_MARGIN`] and at most a quarter of the time left, so a short
/// timeout still leaves most of its time for the writes.
pub fn batch_deadline(deadline_epoch_ms: u64) -> Instant {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let left = Duration::from_millis(deadline_epoch_ms.saturating_sub(now_ms));
    Instant::now() + left - DEADLINE_MARGIN.min(left / 4)
}

pub struct App {
    deps: Deps,
    backoff: Backoff,
}

/// What one batch came to: for logs, tests and the benchmark.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchReport {
    pub messages: usize,
    /// Deliveries that applied their event.
    pub applied: usize,
    /// Deliveries of an event already applied with the same payload (acknowledged).
    pub duplicates: usize,
    /// Deliveries reported in `batchItemFailures` (or, without a message id, failing the batch).
    pub failed: usize,
    /// DynamoDB requests, transactions and write units the batch cost.
    pub writes: WriteStats,
}

/// The response and what it took.
#[derive(Debug)]
pub struct BatchOutcome {
    pub response: SqsBatchResponse,
    pub report: BatchReport,
    /// Failed messages that carry no `messageId` and so cannot be named in a
    /// partial response (SQS always sends one). The Lambda entry point fails
    /// the whole invocation for them, so SQS delivers the batch again.
    pub unreportable: usize,
}

/// Why an invocation fails as a whole. The Lambda runtime reports it as a
/// function error (`{"errorType", "errorMessage"}`), and SQS then delivers the
/// whole batch again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationError {
    /// Failed messages without a `messageId`, which a partial batch response
    /// cannot name.
    pub unreportable: usize,
}

impl InvocationError {
    /// The `errorType` Lambda reports for this error.
    pub const ERROR_TYPE: &'static str = "UnreportableMessageFailure";
}

impl std::fmt::Display for InvocationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} failed usage message(s) without a messageId",
            self.unreportable
        )
    }
}

impl std::error::Error for InvocationError {}

impl From<InvocationError> for Diagnostic {
    fn from(err: InvocationError) -> Self {
        Diagnostic {
            error_type: InvocationError::ERROR_TYPE.to_string(),
            error_message: err.to_string(),
        }
    }
}

/// One delivered message that parsed.
struct Delivery {
    message_id: Option<String>,
    event: usize,
    fingerprint: String,
    /// Whether this is the first delivery of its `event_id` in the batch.
    first: bool,
}

impl App {
    pub fn new(deps: Deps) -> Self {
        Self {
            deps,
            backoff: Backoff::default(),
        }
    }

    /// The function's entry: what the Lambda runtime calls for one invocation
    /// (`main.rs`) and what the local stack's Invoke API calls, so both apply the
    /// same deadline and failure policy. `deadline_epoch_ms` is the invocation's
    /// deadline (`Context::deadline`); the batch stops retrying a margin before it
    /// ([`batch_deadline`]). A failed message without a `messageId` cannot be
    /// named in a partial response: the invocation fails instead, which returns
    /// the whole batch to the queue rather than dropping it (events already
    /// applied are then acknowledged as duplicates).
    pub async fn invoke(
        &self,
        event: SqsEvent,
        deadline_epoch_ms: u64,
    ) -> Result<SqsBatchResponse, InvocationError> {
        let deadline = batch_deadline(deadline_epoch_ms);
        let outcome = self.process_until(event, Some(deadline)).await;
        if outcome.unreportable > 0 {
            return Err(InvocationError {
                unreportable: outcome.unreportable,
            });
        }
        Ok(outcome.response)
    }

    /// Applies every message of a batch; the response lists exactly the failed
    /// ones. Without a deadline, and a failed message without a `messageId` is
    /// only counted (see [`App::invoke`] for the entry Lambda runs).
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        self.process(event).await.response
    }

    /// [`App::handle`] with the batch's report.
    pub async fn process(&self, batch: SqsEvent) -> BatchOutcome {
        self.process_until(batch, None).await
    }

    /// [`App::process`] that starts no write (and no retry) past `deadline`:
    /// events not written by then are reported failed, so SQS delivers them
    /// again, instead of the invocation timing out with the whole batch.
    pub async fn process_until(&self, batch: SqsEvent, deadline: Option<Instant>) -> BatchOutcome {
        let now = self.deps.clock.now();
        let mut report = BatchReport {
            messages: batch.records.len(),
            ..BatchReport::default()
        };
        let mut failures = Failures::default();
        let (events, deliveries) = self.parse_batch(batch, now, &mut failures);
        if !events.is_empty() {
            let ctx = IngestContext {
                tz: self.deps.config.timezone,
                processed_at: now,
                backoff: self.backoff,
                deadline,
            };
            let events: Arc<[UsageEvent]> = events.into();
            let outcome = self.deps.store.ingest_usage(events.clone(), ctx).await;
            tally(&events, &outcome, deliveries, &mut report, &mut failures);
        }
        report.failed = failures.count;
        self.emit(&report);
        BatchOutcome {
            response: failures.response(),
            report,
            unreportable: failures.unreportable,
        }
    }

    /// The batch's distinct events (first delivery of each `event_id` first)
    /// and every delivery that parsed; the others are failures.
    fn parse_batch(
        &self,
        batch: SqsEvent,
        now: DateTime<Utc>,
        failures: &mut Failures,
    ) -> (Vec<UsageEvent>, Vec<Delivery>) {
        let mut events: Vec<UsageEvent> = Vec::new();
        let mut first_of: HashMap<EventId, usize> = HashMap::new();
        let mut deliveries = Vec::new();
        for record in batch.records {
            let message_id = record.message_id.filter(|id| !id.is_empty());
            let body = record.body.as_deref().unwrap_or_default();
            match UsageEvent::parse(body, &self.deps.config.platforms, now) {
                Err(err) => failures.add(message_id, None, &err),
                Ok(event) => {
                    let fingerprint = event.fingerprint();
                    let (index, first) = match first_of.get(&event.event_id) {
                        Some(&i) => (i, false),
                        None => {
                            first_of.insert(event.event_id.clone(), events.len());
                            events.push(event);
                            (events.len() - 1, true)
                        }
                    };
                    deliveries.push(Delivery {
                        message_id,
                        event: index,
                        fingerprint,
                        first,
                    });
                }
            }
        }
        (events, deliveries)
    }

    /// The batch's log line and metrics.
    fn emit(&self, report: &BatchReport) {
        tracing::info!(
            messages = report.messages,
            applied = report.applied,
            duplicates = report.duplicates,
            failed = report.failed,
            requests = report.writes.requests,
            transactions = report.writes.transactions,
            write_units = report.writes.write_units_tenths as f64 / 10.0,
            "usage batch processed"
        );
        use spendguard_core::metrics;
        metrics::count("usage-ingest", metrics::EVENTS_APPLIED, report.applied);
        metrics::count("usage-ingest", metrics::EVENTS_DUPLICATE, report.duplicates);
        metrics::count("usage-ingest", metrics::EVENTS_FAILED, report.failed);
        self.deps.emit_retries("usage-ingest");
    }
}

/// Each delivery's verdict from what the writes found: applied (only the
/// delivery whose write created the record), duplicate, or failed.
fn tally(
    events: &[UsageEvent],
    outcome: &IngestOutcome,
    deliveries: Vec<Delivery>,
    report: &mut BatchReport,
    failures: &mut Failures,
) {
    report.writes = outcome.stats;
    for d in deliveries {
        let event = &events[d.event];
        match &outcome.results[d.event] {
            Ok(recorded) => match recorded.verdict(&d.fingerprint, d.first) {
                Verdict::Applied => report.applied += 1,
                Verdict::Duplicate => report.duplicates += 1,
                Verdict::PayloadMismatch => failures.add(
                    d.message_id,
                    Some(&event.event_id),
                    &Error::EventPayloadMismatch(format!(
                        "event_id {} was already used for a different payload; not applied",
                        event.event_id
                    )),
                ),
            },
            Err(err) => failures.add(d.message_id, Some(&event.event_id), err),
        }
    }
}

/// The failed deliveries: message ids in batch order, each once.
#[derive(Default)]
struct Failures {
    ids: Vec<String>,
    seen: HashSet<String>,
    count: usize,
    unreportable: usize,
}

impl Failures {
    /// The partial batch response naming every failed message.
    fn response(&self) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        response.batch_item_failures = self
            .ids
            .iter()
            .map(|id| {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id.clone();
                failure
            })
            .collect();
        response
    }

    fn add(&mut self, message_id: Option<String>, event_id: Option<&EventId>, err: &Error) {
        self.count += 1;
        let event_id = event_id.map(EventId::as_str);
        match message_id {
            Some(id) => {
                tracing::warn!(
                    message_id = %id,
                    event_id,
                    code = err.code(),
                    error = %err,
                    "usage event failed; reported for redelivery and the DLQ"
                );
                if self.seen.insert(id.clone()) {
                    self.ids.push(id);
                }
            }
            None => {
                self.unreportable += 1;
                tracing::error!(
                    event_id,
                    code = err.code(),
                    error = %err,
                    "usage message without a messageId failed; failing the whole batch"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch_ms_in(d: Duration) -> u64 {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + d;
        now.as_millis() as u64
    }

    #[test]
    fn the_batch_stops_a_margin_before_the_invocation_deadline() {
        let close = |deadline: Instant, expected: Duration| {
            let left = deadline.saturating_duration_since(Instant::now());
            let diff = left.abs_diff(expected);
            assert!(
                diff < Duration::from_millis(100),
                "{left:?} vs {expected:?}"
            );
        };
        // A 30 s timeout keeps 5 s back; a short one a quarter of its time.
        close(
            batch_deadline(epoch_ms_in(Duration::from_secs(30))),
            Duration::from_secs(25),
        );
        close(
            batch_deadline(epoch_ms_in(Duration::from_secs(2))),
            Duration::from_millis(1500),
        );
        // A deadline already past: stop at once.
        close(batch_deadline(0), Duration::ZERO);
    }
}
