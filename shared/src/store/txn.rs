//! Reading DynamoDB write failures and retrying transient ones.
//!
//! A `TransactWriteItems` failure comes back as `TransactionCanceledException`
//! with one reason per action, in request order (`ConditionalCheckFailed`,
//! `TransactionConflict`, `None`, ...). With
//! `ReturnValuesOnConditionCheckFailure=ALL_OLD` the reason carries the current
//! item, so no extra read is needed.

use super::attr::Item;
use crate::error::Error;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use rand::Rng;
use std::future::Future;
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
