//! Reading DynamoDB write failures, retrying transient ones, and sending a
//! transaction until its outcome is known.
//!
//! A `TransactWriteItems` failure comes back as `TransactionCanceledException`
//! with one reason per action, in request order (`ConditionalCheckFailed`,
//! `TransactionConflict`, `None`, ...). With
//! `ReturnValuesOnConditionCheckFailure=ALL_OLD` the reason carries the current
//! item, so no extra read is needed.
//!
//! A cancellation is definitive: that send wrote nothing. A 500, a timeout or
//! a dropped connection is not: the transaction may have committed with its
//! answer lost. Every transactional write goes through
//! [`DynamoStore::transact_settled`], which resends such a transaction
//! identically (same actions, same `ClientRequestToken`, which DynamoDB
//! answers with the first send's success for 10 minutes) until it settles, and
//! never lets a caller re-plan (fresh read, new token) while the outcome is
//! open: that would apply the change a second time.
//!
//! One retry layer, three roles that do not overlap:
//! - the SDK's standard retry (`AWS_MAX_ATTEMPTS` attempts, default 3; mode
//!   `AWS_RETRY_MODE`) retries throttling, `TransactionInProgressException`,
//!   5xx, timeouts and dropped connections, resending the identical request;
//! - [`DynamoStore::transact_settled`] resends only a transaction whose
//!   outcome is still open after the SDK gave up (at most
//!   [`SETTLE_BACKOFF`]`.max_attempts` requests); a throttled write with
//!   nothing open is 503 at once;
//! - the callers' loops re-plan only after a cancellation: a failed condition
//!   (learned from `ALL_OLD`) or a conflicting transaction (after a jittered
//!   pause), each within its own bound.
//!
//! [`RetryStats`] counts what this layer saw (sends, conflicts, re-plans).

use super::attr::Item;
use super::DynamoStore;
use crate::error::Error;
use aws_sdk_dynamodb::config::interceptors::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::{
    TransactWriteItemsError, TransactWriteItemsOutput,
};
use aws_sdk_dynamodb::types::{ReturnConsumedCapacity, TransactWriteItem};
use aws_smithy_types::config_bag::{Storable, StoreReplace};
use rand::Rng;
use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One action's outcome in a cancelled transaction.
#[derive(Clone, Debug, PartialEq)]
pub struct CancelReason {
    /// `None` for actions that did not cause the cancellation.
    pub code: Option<String>,
    /// The item as it is now, when the action asked for `ALL_OLD`.
    pub item: Option<Item>,
}

impl CancelReason {
    pub fn is_condition_failed(&self) -> bool {
        self.code.as_deref() == Some("ConditionalCheckFailed")
    }
}

/// How a transaction sent with [`DynamoStore::transact_settled`] came out.
#[derive(Debug)]
pub enum Settled {
    Committed(TransactWriteItemsOutput),
    /// The last send was cancelled and wrote nothing; re-planning is allowed.
    /// `after_unknown`: an earlier send under the same token may have
    /// committed. An engine honouring the token answers a resend of a commit
    /// with success, so the cancellation is real there; where it is not (an
    /// engine without token support, a token past its 10 minutes) the
    /// cancellation can be our own commit refusing its twin: callers check
    /// what the write would have left (their ledger entry, record, audit entry)
    /// before re-planning.
    Cancelled {
        reasons: Vec<CancelReason>,
        after_unknown: bool,
    },
}

impl CancelReason {
    /// Another transaction held one of the items.
    pub fn is_conflict(&self) -> bool {
        self.code.as_deref() == Some("TransactionConflict")
    }

    /// Reasons that only say "another transaction was in the way" (or the
    /// action was not the cause): nothing to decode, re-plan after a pause.
    pub fn is_transient_or_none(&self) -> bool {
        matches!(
            self.code.as_deref(),
            None | Some(
                "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded"
            )
        )
    }
}

/// Identical resends of one transaction whose outcome is open (each send is
/// itself up to `AWS_MAX_ATTEMPTS`, default 3, SDK attempts with the SDK's own
/// backoff), kept well inside the functions' 10 s timeout.
pub const SETTLE_BACKOFF: Backoff = Backoff {
    max_attempts: 3,
    base: Duration::from_millis(50),
    cap: Duration::from_millis(500),
};

/// The `ClientRequestToken`s of transactions one of whose attempts ended
/// without a definitive answer (no response at all, or a 5xx): the SDK retries
/// such attempts on its own, so only this record tells
/// [`DynamoStore::transact_settled`] that a later cancellation may follow an
/// earlier commit. Shared by every store on one client.
#[derive(Debug, Default)]
pub(super) struct OpenOutcomes(Mutex<HashSet<String>>);

/// Marks kept at most; past it they are dropped (sends outside
/// `transact_settled`, whose marks nobody takes, cannot grow it without bound).
const MAX_OPEN_OUTCOMES: usize = 10_000;

impl OpenOutcomes {
    fn mark(&self, token: String) {
        let mut open = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if open.len() >= MAX_OPEN_OUTCOMES {
            open.clear();
        }
        open.insert(token);
    }

    /// Whether an attempt under `token` ended open; forgets it.
    fn take(&self, token: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(token)
    }
}

/// The token of the request being sent, kept between its interceptor hooks.
#[derive(Clone, Debug)]
struct SentToken(String);

impl Storable for SentToken {
    type Storer = StoreReplace<Self>;
}

/// Client interceptor filling [`OpenOutcomes`]. It costs nothing on requests
/// without a token and on definitive answers.
#[derive(Debug)]
pub(super) struct OutcomeWatch(pub Arc<OpenOutcomes>);

impl Intercept for OutcomeWatch {
    fn name(&self) -> &'static str {
        "spendguard-outcome-watch"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let body = context.request().body().bytes().unwrap_or_default();
        // Only transactions carry a token; skip parsing everything else.
        if body.windows(18).any(|w| w == b"ClientRequestToken") {
            if let Some(token) = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v["ClientRequestToken"].as_str().map(str::to_string))
            {
                cfg.interceptor_state().store_put(SentToken(token));
            }
        }
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let definitive = context
            .response()
            .is_some_and(|r| r.status().as_u16() < 500);
        if !definitive {
            if let Some(SentToken(token)) = cfg.load::<SentToken>() {
                self.0.mark(token.clone());
            }
        }
        Ok(())
    }
}

/// What one send's failure means for the transaction.
enum SendFailure {
    Cancelled(Vec<CancelReason>),
    /// The outcome is open (an earlier request under this token is still in
    /// progress, a 5xx, a timeout, a dropped connection): resend identically.
    Open(String),
    /// Throttled: nothing was applied by this request; the SDK already retried.
    Throttled(String),
    /// Refused for good (validation, permissions, ...).
    Fatal(String),
}

fn classify(err: SdkError<TransactWriteItemsError>) -> SendFailure {
    match &err {
        SdkError::ServiceError(service) => match service.err() {
            TransactWriteItemsError::TransactionCanceledException(e) => SendFailure::Cancelled(
                e.cancellation_reasons()
                    .iter()
                    .map(|r| CancelReason {
                        code: r.code().filter(|c| *c != "None").map(str::to_string),
                        item: r.item().cloned(),
                    })
                    .collect(),
            ),
            TransactWriteItemsError::ProvisionedThroughputExceededException(_)
            | TransactWriteItemsError::RequestLimitExceeded(_)
            | TransactWriteItemsError::ThrottlingException(_) => {
                SendFailure::Throttled(format!("{:?}", service.err()))
            }
            TransactWriteItemsError::TransactionInProgressException(_)
            | TransactWriteItemsError::InternalServerError(_) => {
                SendFailure::Open(format!("{:?}", service.err()))
            }
            other if service.raw().status().as_u16() >= 500 => {
                SendFailure::Open(format!("{other:?}"))
            }
            other => SendFailure::Fatal(format!("{other:?}")),
        },
        // Nothing was sent.
        SdkError::ConstructionFailure(_) => SendFailure::Fatal(format!("{err:?}")),
        // Timeout, connection or unreadable answer: the engine may have applied it.
        _ => SendFailure::Open(format!("{err:?}")),
    }
}

impl DynamoStore {
    /// Sends `actions` as one `TransactWriteItems` under `token` until its
    /// outcome is known: committed, or cancelled (nothing written). The SDK
    /// retries throttling, `TransactionInProgressException`, 5xx, timeouts and
    /// dropped connections itself. When an attempt left the outcome open (no
    /// answer, or a 5xx) and the SDK gave up, the identical request is resent
    /// with the same token (at most `backoff.max_attempts` requests), which
    /// DynamoDB answers with the first send's outcome if that one committed.
    /// If it never settles: 503 `store_unavailable`, outcome unknown, never a
    /// re-plan. Throttled with nothing open: 503 at once.
    pub async fn transact_settled(
        &self,
        actions: Vec<TransactWriteItem>,
        token: &str,
        consumed_capacity: bool,
        backoff: &Backoff,
    ) -> Result<Settled, Error> {
        self.transact_settled_counted(actions, token, consumed_capacity, backoff)
            .await
            .0
    }

    /// [`Self::transact_settled`], also saying how many requests it sent
    /// (each one up to the SDK's attempts).
    pub async fn transact_settled_counted(
        &self,
        actions: Vec<TransactWriteItem>,
        token: &str,
        consumed_capacity: bool,
        backoff: &Backoff,
    ) -> (Result<Settled, Error>, u32) {
        let mut after_unknown = false;
        let mut send = 0;
        loop {
            send += 1;
            self.retries.sent();
            let mut request = self
                .client()
                .transact_write_items()
                .set_transact_items(Some(actions.clone()))
                .client_request_token(token);
            if consumed_capacity {
                request = request.return_consumed_capacity(ReturnConsumedCapacity::Total);
            }
            let sent = request.send().await;
            after_unknown |= self.open_outcomes.take(token);
            let failure = match sent {
                Ok(out) => return (Ok(Settled::Committed(out)), send),
                Err(err) => classify(err),
            };
            let outcome = match failure {
                SendFailure::Cancelled(reasons) => {
                    if reasons.iter().any(CancelReason::is_conflict) {
                        self.retries.conflict_seen();
                    }
                    Ok(Settled::Cancelled {
                        reasons,
                        after_unknown,
                    })
                }
                SendFailure::Fatal(text) if after_unknown => Err(Error::StoreUnavailable(format!(
                    "the write's outcome is unknown (an earlier send may have applied it): {text}"
                ))),
                SendFailure::Fatal(text) => Err(Error::StoreUnavailable(text)),
                // Throttled with nothing open: the SDK's attempts were the
                // retries; the caller's client (or SQS) tries again later.
                SendFailure::Throttled(text) if !after_unknown => Err(Error::StoreUnavailable(
                    format!("the write was throttled; retry the request: {text}"),
                )),
                SendFailure::Open(text) | SendFailure::Throttled(text)
                    if send >= backoff.max_attempts =>
                {
                    Err(Error::StoreUnavailable(format!(
                        "the write's outcome is unknown (it may have been applied); \
                         retry the request with the same Idempotency-Key: {text}"
                    )))
                }
                SendFailure::Open(_) | SendFailure::Throttled(_) => {
                    after_unknown = true;
                    tokio::time::sleep(backoff.delay(send)).await;
                    continue;
                }
            };
            return (outcome, send);
        }
    }

    /// What the retry layer counted on this store's sends.
    pub fn retry_stats(&self) -> &RetryStats {
        &self.retries
    }
}

/// What the retry layer saw, counted on one store (its clones share it):
/// transactions sent (each up to the SDK's attempts), cancellations by a
/// conflicting transaction, and re-plans after a cancellation. Functions
/// running in Lambda emit them per invocation ([`crate::metrics::retries`]).
#[derive(Debug, Default)]
pub struct RetryStats {
    sends: AtomicU64,
    conflicts: AtomicU64,
    replans: AtomicU64,
}

/// A reading of [`RetryStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetryCounts {
    pub sends: u64,
    pub conflicts: u64,
    pub replans: u64,
}

impl RetryStats {
    fn sent(&self) {
        self.sends.fetch_add(1, Ordering::Relaxed);
    }

    fn conflict_seen(&self) {
        self.conflicts.fetch_add(1, Ordering::Relaxed);
    }

    /// A cancelled write is planned again (after a failed condition or a
    /// conflicting transaction).
    pub fn replanned(&self) {
        self.replans.fetch_add(1, Ordering::Relaxed);
    }

    pub fn counts(&self) -> RetryCounts {
        RetryCounts {
            sends: self.sends.load(Ordering::Relaxed),
            conflicts: self.conflicts.load(Ordering::Relaxed),
            replans: self.replans.load(Ordering::Relaxed),
        }
    }

    /// The counts since the last call (what one invocation added), zeroing them.
    pub fn take(&self) -> RetryCounts {
        RetryCounts {
            sends: self.sends.swap(0, Ordering::Relaxed),
            conflicts: self.conflicts.swap(0, Ordering::Relaxed),
            replans: self.replans.swap(0, Ordering::Relaxed),
        }
    }
}

/// Whether a single-item write failed on its condition expression.
pub fn is_condition_failed<E, R>(err: &SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    matches!(err, SdkError::ServiceError(s) if s.err().code() == Some("ConditionalCheckFailedException"))
}

/// Bounded retry with full-jitter exponential backoff.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base: Duration::from_millis(10),
            cap: Duration::from_millis(500),
        }
    }
}

impl Backoff {
    /// Delay before retry number `attempt` (1-based): uniform in `[0, min(cap, base·2^attempt)]`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.cap);
        let millis = rand::thread_rng().gen_range(0..=ceiling.as_millis() as u64);
        Duration::from_millis(millis)
    }

    /// Runs `op` until it returns something other than `Retry`, at most
    /// `max_attempts` times; the last `Retry` becomes `exhausted()`.
    pub async fn run<T, F, Fut>(
        &self,
        mut op: F,
        exhausted: impl FnOnce() -> Error,
    ) -> Result<T, Error>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<Attempt<T>, Error>>,
    {
        for attempt in 1..=self.max_attempts {
            match op(attempt).await? {
                Attempt::Done(value) => return Ok(value),
                Attempt::Retry => {
                    if attempt < self.max_attempts {
                        tokio::time::sleep(self.delay(attempt)).await;
                    }
                }
            }
        }
        Err(exhausted())
    }
}

/// What one attempt of a retried operation came to.
pub enum Attempt<T> {
    Done(T),
    Retry,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_bounded() {
        let b = Backoff::default();
        for attempt in 1..20 {
            assert!(b.delay(attempt) <= b.cap);
        }
    }

    #[tokio::test]
    async fn retries_until_done_or_exhausted() {
        let b = Backoff {
            max_attempts: 3,
            base: Duration::from_millis(1),
            cap: Duration::from_millis(2),
        };
        let done = b
            .run(
                |n| async move {
                    Ok(if n < 3 {
                        Attempt::Retry
                    } else {
                        Attempt::Done(n)
                    })
                },
                || Error::Internal("x".into()),
            )
            .await
            .unwrap();
        assert_eq!(done, 3);
        let err = b
            .run(
                |_| async { Ok(Attempt::<()>::Retry) },
                || Error::Conflict("busy".into()),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), "conflict");
    }

    #[tokio::test]
    async fn throttling_is_the_sdks_to_retry_an_open_outcome_is_resent() {
        use super::super::fake;
        use aws_sdk_dynamodb::types::{ConditionCheck, TransactWriteItem};
        let check = || {
            let c = ConditionCheck::builder()
                .table_name("t")
                .key("pk", aws_sdk_dynamodb::types::AttributeValue::S("x".into()))
                .key("sk", aws_sdk_dynamodb::types::AttributeValue::S("y".into()))
                .condition_expression("attribute_exists(pk)")
                .build()
                .unwrap();
            vec![TransactWriteItem::builder().condition_check(c).build()]
        };
        let quick = Backoff {
            max_attempts: 3,
            base: Duration::from_millis(1),
            cap: Duration::from_millis(2),
        };
        // Throttled throughout, nothing open: the SDK's 3 attempts are the
        // retries; one request, then 503.
        let (url, log) = fake::serve(Box::new(|_, _| (400, fake::error("ThrottlingException"))));
        let store = DynamoStore::for_local_endpoint(&url, "t");
        let (out, sends) = store
            .transact_settled_counted(check(), "tok-1", false, &quick)
            .await;
        assert_eq!(out.unwrap_err().code(), "store_unavailable");
        assert_eq!(sends, 1);
        assert_eq!(log.lock().unwrap().len(), 3, "the SDK's attempts");
        assert_eq!(store.retry_stats().counts().sends, 1);
        // An earlier request under the token still in progress: the outcome
        // is open, so the same request goes again once the SDK gave up.
        let (url, log) = fake::serve(Box::new(|_, n| match n {
            n if n < 3 => (400, fake::error("TransactionInProgressException")),
            _ => (200, "{}".into()),
        }));
        let store = DynamoStore::for_local_endpoint(&url, "t");
        let (out, sends) = store
            .transact_settled_counted(check(), "tok-2", false, &quick)
            .await;
        assert!(matches!(out.unwrap(), Settled::Committed(_)));
        assert_eq!(sends, 2);
        assert_eq!(log.lock().unwrap().len(), 4);
        // A conflict is a cancellation, counted by the layer.
        let conflict = r#"{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","message":"x","CancellationReasons":[{"Code":"TransactionConflict"}]}"#;
        let (url, _) = fake::serve(Box::new(move |_, _| (400, conflict.into())));
        let store = DynamoStore::for_local_endpoint(&url, "t");
        let (out, _) = store
            .transact_settled_counted(check(), "tok-3", false, &quick)
            .await;
        assert!(matches!(out.unwrap(), Settled::Cancelled { .. }));
        let counts = store.retry_stats().take();
        assert_eq!((counts.sends, counts.conflicts), (1, 1));
        assert_eq!(store.retry_stats().counts(), RetryCounts::default());
    }
}
