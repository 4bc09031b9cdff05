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

#[derive(Debug)]
pub enum TxnFailure {
    /// A condition failed: a business outcome, with per-action reasons.
    Cancelled(Vec<CancelReason>),
    /// Another transaction touched the same items, or throttling: retry.
    Transient(String),
    /// Anything else: the store is unavailable.
    Unavailable(Error),
}

impl TxnFailure {
    pub fn from_sdk(err: SdkError<TransactWriteItemsError>) -> Self {
        if let SdkError::ServiceError(service) = &err {
            match service.err() {
                TransactWriteItemsError::TransactionCanceledException(e) => {
                    let reasons: Vec<CancelReason> = e
                        .cancellation_reasons()
                        .iter()
                        .map(|r| CancelReason {
                            code: r.code().filter(|c| *c != "None").map(str::to_string),
                            item: r.item().cloned(),
                        })
                        .collect();
                    let transient = reasons.iter().any(|r| {
                        matches!(
                            r.code.as_deref(),
                            Some(
                                "TransactionConflict"
                                    | "ThrottlingError"
                                    | "ProvisionedThroughputExceeded"
                            )
                        )
                    });
                    return if transient && !reasons.iter().any(CancelReason::is_condition_failed) {
                        TxnFailure::Transient(format!("{reasons:?}"))
                    } else {
                        TxnFailure::Cancelled(reasons)
                    };
                }
                TransactWriteItemsError::TransactionInProgressException(_)
                | TransactWriteItemsError::ProvisionedThroughputExceededException(_)
                | TransactWriteItemsError::RequestLimitExceeded(_)
                | TransactWriteItemsError::ThrottlingException(_) => {
                    return TxnFailure::Transient(format!("{:?}", service.err()))
                }
                _ => {}
            }
        }
        TxnFailure::Unavailable(super::unavailable(err))
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
/// itself up to 3 SDK attempts with the SDK's own backoff), kept well inside
/// the functions' 10 s timeout.
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
    /// Throttled, in progress, 5xx, timeout, connection: resend identically.
    Resend(String),
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
            TransactWriteItemsError::TransactionInProgressException(_)
            | TransactWriteItemsError::ProvisionedThroughputExceededException(_)
            | TransactWriteItemsError::RequestLimitExceeded(_)
            | TransactWriteItemsError::ThrottlingException(_)
            | TransactWriteItemsError::InternalServerError(_) => {
                SendFailure::Resend(format!("{:?}", service.err()))
            }
            other if service.raw().status().as_u16() >= 500 => {
                SendFailure::Resend(format!("{other:?}"))
            }
            other => SendFailure::Fatal(format!("{other:?}")),
        },
        // Nothing was sent.
        SdkError::ConstructionFailure(_) => SendFailure::Fatal(format!("{err:?}")),
        // Timeout, connection or unreadable answer: the engine may have applied it.
        _ => SendFailure::Resend(format!("{err:?}")),
    }
}

impl DynamoStore {
    /// Sends `actions` as one `TransactWriteItems` under `token` until its
    /// outcome is known: committed, or cancelled (nothing written). Throttling,
    /// `TransactionInProgressException`, 5xx, timeouts and dropped connections
    /// leave it open; the identical request is then resent with the same
    /// token (at most `backoff.max_attempts` sends), which DynamoDB answers
    /// with the first send's outcome if that one committed. If it never
    /// settles: 503 `store_unavailable`, outcome unknown, never a re-plan.
    pub async fn transact_settled(
        &self,
        actions: Vec<TransactWriteItem>,
        token: &str,
        consumed_capacity: bool,
        backoff: &Backoff,
    ) -> Result<Settled, Error> {
        let mut after_unknown = false;
        let mut send = 0;
        loop {
            send += 1;
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
                Ok(out) => return Ok(Settled::Committed(out)),
                Err(err) => classify(err),
            };
            match failure {
                SendFailure::Cancelled(reasons) => {
                    return Ok(Settled::Cancelled {
                        reasons,
                        after_unknown,
                    })
                }
                SendFailure::Fatal(text) if after_unknown => {
                    return Err(Error::StoreUnavailable(format!(
                        "the write's outcome is unknown (an earlier send may have applied it): {text}"
                    )))
                }
                SendFailure::Fatal(text) => return Err(Error::StoreUnavailable(text)),
                SendFailure::Resend(text) if send >= backoff.max_attempts => {
                    return Err(Error::StoreUnavailable(if after_unknown {
                        format!(
                            "the write's outcome is unknown (it may have been applied); \
                             retry the request with the same Idempotency-Key: {text}"
                        )
                    } else {
                        format!("the write was throttled; retry the request: {text}")
                    }))
                }
                SendFailure::Resend(_) => tokio::time::sleep(backoff.delay(send)).await,
            }
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
}
