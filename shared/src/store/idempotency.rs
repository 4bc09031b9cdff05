//! `Idempotency-Key` records, reusable by any effectful route.
//!
//! Item: pk `IDEMPOTENCY#{scope}#{key}`, sk `IDEMPOTENCY`, with the request's
//! fingerprint, `status` (`in_progress` | `completed`), an owner `token`, the
//! in-progress expiry `lease_until_ms`, the stored response, and the TTL
//! attribute `expires_at_epoch` (≥ 24 h after the last write). Readers treat an
//! item past `expires_at_epoch` as absent: TTL deletion lags by days.
//!
//! Flow:
//! 1. [`DynamoStore::claim_idempotency`]: a conditional put takes the key for
//!    this request (new, expired, or an in-progress record whose owner stopped
//!    renewing it); otherwise it answers a replay, 422 or 409 from the
//!    existing record, which the failed condition returns (no extra read).
//!    A record carrying this request's own token is its own claim (the put
//!    committed, its answer was lost, and the SDK's resend failed on it).
//! 2. The effect's `TransactWriteItems` includes
//!    [`DynamoStore::idempotency_complete_action`], conditioned on still owning
//!    the record, so the effect and the stored response commit together: an
//!    effect can never happen twice for one key, even after a lease expired.
//! 3. A request that ends without an effect (refused, failed) releases the key
//!    with [`DynamoStore::release_idempotency`], so a retry can run again.

use super::attr::{self, Item};
use super::txn::{Settled, SETTLE_BACKOFF};
use super::{keys, unavailable, DynamoStore};
pub use crate::domain::idempotency::{Fingerprint, StoredResponse};
use crate::error::Error;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{
    Delete, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use chrono::{DateTime, Duration, Utc};

/// How long an unfinished request holds its key before another may take it over
/// (well above the function timeout of a single attempt).
pub const IN_PROGRESS_EXPIRY: Duration = Duration::seconds(30);
/// How long a key is remembered: the contract promises at least 24 hours.
pub const RETENTION: Duration = Duration::hours(25);

const STATUS_IN_PROGRESS: &str = "in_progress";
/// The key is free to take: absent, expired (TTL deletion lags), or claimed
/// by a request that stopped renewing its lease.
const FREE_CONDITION: &str = "attribute_not_exists(#pk) OR #exp <= :now_s \
     OR (#status = :in_progress AND #lease <= :now_ms)";
const STATUS_COMPLETED: &str = "completed";

/// A request's use of a key: claimed ahead of its effect
/// ([`DynamoStore::claim_idempotency`]), or taken by the effect's own
/// transaction ([`Lease::unclaimed`]: nothing is written before it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub scope: String,
    pub key: String,
    pub fingerprint: Fingerprint,
    /// The owner token of a claimed key; `None` for an unclaimed one.
    token: Option<String>,
}

impl Lease {
    /// A key the effect's own `TransactWriteItems` takes: its completion puts
    /// the completed record, conditioned on the key being free (absent,
    /// expired, or an in-progress claim whose owner stopped renewing it), so
    /// of concurrent requests with one key exactly one commits; the others'
    /// failed condition returns the record they answer from (replay, 422).
    pub fn unclaimed(scope: &str, key: &str, fingerprint: &Fingerprint) -> Result<Self, Error> {
        check_scope(scope)?;
        Ok(Self {
            scope: scope.to_string(),
            key: key.to_string(),
            fingerprint: fingerprint.clone(),
            token: None,
        })
    }

    /// Whether the key was claimed ahead of the effect.
    pub fn is_claimed(&self) -> bool {
        self.token.is_some()
    }

    fn pk(&self) -> String {
        keys::idempotency_pk(&self.scope, &self.key)
    }

    /// The record's primary key (to read it along with the effect's items).
    pub fn record_key(&self) -> Item {
        key_of(self.pk())
    }

    /// Whether `item` is this key's record.
    pub fn is_record(&self, item: &Item) -> bool {
        attr::opt_s(item, keys::PK) == Some(self.pk().as_str())
    }

    /// What the key's record as read says for this request: `Ok(None)` free
    /// (go on), a replay once completed, 422 for a different request, 409
    /// while another claim is live.
    pub fn answer(
        &self,
        record: Option<&Item>,
        now: DateTime<Utc>,
    ) -> Result<Option<Claim>, Error> {
        record
            .and_then(|item| outcome_of(item, &self.fingerprint, now))
            .transpose()
    }

    fn is_claimed_by(&self, item: &Item, status: &str) -> bool {
        self.token
            .as_deref()
            .is_some_and(|token| attr::opt_s(item, "token") == Some(token))
            && attr::opt_s(item, "status") == Some(status)
    }
}

/// A record of `lease`'s key in `status`, kept for [`RETENTION`] from `now`.
fn record_item(lease: &Lease, status: &str, now: DateTime<Utc>) -> Item {
    let mut item = key_of(lease.pk());
    item.insert("scope".into(), attr::s(&lease.scope));
    item.insert("idempotency_key".into(), attr::s(&lease.key));
    item.insert("fingerprint".into(), attr::s(lease.fingerprint.as_str()));
    item.insert("status".into(), attr::s(status));
    item.insert("created_at".into(), attr::s(attr::timestamp(now)));
    item.insert(keys::TTL.into(), attr::n((now + RETENTION).timestamp()));
    item
}

/// The key is still this claim's to complete or give up: its token, in progress.
const OWNED_CONDITION: &str = "#token = :token AND #status = :in_progress";

/// Names of [`OWNED_CONDITION`].
fn owned_names() -> std::collections::HashMap<String, String> {
    [("#status", "status"), ("#token", "token")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Values of [`OWNED_CONDITION`] for the claim `token`.
fn owned_values(token: &str) -> Item {
    Item::from([
        (":token".to_string(), attr::s(token)),
        (":in_progress".to_string(), attr::s(STATUS_IN_PROGRESS)),
    ])
}

/// Names of [`FREE_CONDITION`].
fn free_names() -> std::collections::HashMap<String, String> {
    [
        ("#pk", keys::PK),
        ("#exp", keys::TTL),
        ("#status", "status"),
        ("#lease", "lease_until_ms"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Values of [`FREE_CONDITION`] at `now`.
fn free_values(now: DateTime<Utc>) -> Item {
    Item::from([
        (":now_s".to_string(), attr::n(now.timestamp())),
        (":now_ms".to_string(), attr::n(now.timestamp_millis())),
        (":in_progress".to_string(), attr::s(STATUS_IN_PROGRESS)),
    ])
}

fn check_scope(scope: &str) -> Result<(), Error> {
    if scope.contains('#') {
        return Err(Error::Internal(format!(
            "idempotency scope {scope:?} contains '#'"
        )));
    }
    Ok(())
}

/// What claiming a key came to (422 mismatch and 409 in-use are errors).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This request owns the key: perform the effect and complete it.
    Acquired(Lease),
    /// The key already finished with the same request: answer this.
    Replay(StoredResponse),
}

fn key_of(pk: String) -> Item {
    keys::item_key(pk, keys::IDEMPOTENCY_SK)
}

/// Reads a live record (`None` if absent, expired, or an in-progress claim
/// past its lease, which anyone may take over) into a claim outcome.
fn outcome_of(
    item: &Item,
    fingerprint: &Fingerprint,
    now: DateTime<Utc>,
) -> Option<Result<Claim, Error>> {
    let expires = attr::opt_i64(item, keys::TTL).ok().flatten().unwrap_or(0);
    if expires <= now.timestamp() {
        return None;
    }
    let lease_until = attr::opt_i64(item, "lease_until_ms").ok().flatten();
    if attr::opt_s(item, "status") == Some(STATUS_IN_PROGRESS)
        && lease_until.is_some_and(|until| until <= now.timestamp_millis())
    {
        return None;
    }
    if attr::opt_s(item, "fingerprint") != Some(fingerprint.as_str()) {
        return Some(Err(Error::IdempotencyKeyMismatch));
    }
    if attr::opt_s(item, "status") == Some(STATUS_COMPLETED) {
        let status = attr::opt_i64(item, "response_status")
            .ok()
            .flatten()
            .and_then(|s| u16::try_from(s).ok());
        let body = attr::opt_s(item, "response_body");
        return Some(match (status, body) {
            (Some(status), Some(body)) => Ok(Claim::Replay(StoredResponse {
                status,
                body: body.to_string(),
            })),
            _ => Err(Error::Internal(
                "completed idempotency record without a response".into(),
            )),
        });
    }
    Some(Err(Error::IdempotencyKeyInUse))
}

impl DynamoStore {
    /// Takes `key` in `scope` for a request with `fingerprint`, or answers from
    /// the record already there: [`Claim::Replay`] for the same request once
    /// completed, 422 `idempotency_key_mismatch` for a different one, 409
    /// `idempotency_key_in_use` while the first is still running. `scope` names
    /// the key space (e.g. route and caller) and must not contain `#`.
    pub async fn claim_idempotency(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &Fingerprint,
        now: DateTime<Utc>,
    ) -> Result<Claim, Error> {
        check_scope(scope)?;
        let token = uuid::Uuid::new_v4().to_string();
        let lease = Lease {
            scope: scope.to_string(),
            key: key.to_string(),
            fingerprint: fingerprint.clone(),
            token: Some(token.clone()),
        };
        for _ in 0..3 {
            let mut item = record_item(&lease, STATUS_IN_PROGRESS, now);
            item.insert("token".into(), attr::s(&token));
            item.insert(
                "lease_until_ms".into(),
                attr::n((now + IN_PROGRESS_EXPIRY).timestamp_millis()),
            );
            let put = self
                .client()
                .put_item()
                .table_name(self.table())
                .set_item(Some(item))
                .condition_expression(FREE_CONDITION)
                .set_expression_attribute_names(Some(free_names()))
                .set_expression_attribute_values(Some(free_values(now)))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await;
            let err = match put {
                Ok(_) => return Ok(Claim::Acquired(lease)),
                Err(err) => err,
            };
            if !super::txn::is_condition_failed(&err) {
                return Err(unavailable(err));
            }
            let existing = match err.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(e)) => e.item().cloned(),
                _ => None,
            };
            let existing = match existing {
                Some(item) => Some(item),
                None => self.read_idempotency(&lease.pk()).await?,
            };
            // Our own claim: an earlier attempt of this put committed but its
            // answer was lost, and the SDK's resend failed on the record it wrote.
            if existing
                .as_ref()
                .is_some_and(|item| lease.is_claimed_by(item, STATUS_IN_PROGRESS))
            {
                return Ok(Claim::Acquired(lease));
            }
            match existing.and_then(|item| outcome_of(&item, fingerprint, now)) {
                Some(outcome) => return outcome,
                // Expired or gone between the write and the read: try again.
                None => continue,
            }
        }
        Err(Error::IdempotencyKeyInUse)
    }

    async fn read_idempotency(&self, pk: &str) -> Result<Option<Item>, Error> {
        self.get_consistent(key_of(pk.to_string())).await
    }

    /// The action that completes `lease` with `response`, for the same
    /// `TransactWriteItems` as the effect. It fails its condition if the key is
    /// not this request's to complete (a claimed lease lost to a takeover, or
    /// an unclaimed key someone else took); then no part of the effect
    /// commits, and the failed condition returns the record (`ALL_OLD`).
    pub fn idempotency_complete_action(
        &self,
        lease: &Lease,
        response: &StoredResponse,
        now: DateTime<Utc>,
    ) -> Result<TransactWriteItem, Error> {
        let Some(token) = &lease.token else {
            return self.idempotency_put_completed(lease, response, now);
        };
        let update = Update::builder()
            .table_name(self.table())
            .set_key(Some(key_of(lease.pk())))
            .update_expression(
                "SET #status = :completed, response_status = :rs, response_body = :rb, \
                 completed_at = :now, #exp = :exp REMOVE #lease",
            )
            .condition_expression("#token = :token AND #status = :in_progress")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#exp", keys::TTL)
            .expression_attribute_names("#lease", "lease_until_ms")
            .expression_attribute_names("#token", "token")
            .expression_attribute_values(":completed", attr::s(STATUS_COMPLETED))
            .expression_attribute_values(":in_progress", attr::s(STATUS_IN_PROGRESS))
            .expression_attribute_values(":rs", attr::n(response.status))
            .expression_attribute_values(":rb", attr::s(&response.body))
            .expression_attribute_values(":now", attr::s(attr::timestamp(now)))
            .expression_attribute_values(":exp", attr::n((now + RETENTION).timestamp()))
            .expression_attribute_values(":token", attr::s(token))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(attr::build_err)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// The completed record of an unclaimed key, put only while the key is free.
    fn idempotency_put_completed(
        &self,
        lease: &Lease,
        response: &StoredResponse,
        now: DateTime<Utc>,
    ) -> Result<TransactWriteItem, Error> {
        let mut item = record_item(lease, STATUS_COMPLETED, now);
        item.insert("response_status".into(), attr::n(response.status));
        item.insert("response_body".into(), attr::s(&response.body));
        item.insert("completed_at".into(), attr::s(attr::timestamp(now)));
        let put = Put::builder()
            .table_name(self.table())
            .set_item(Some(item))
            .condition_expression(FREE_CONDITION)
            .set_expression_attribute_names(Some(free_names()))
            .set_expression_attribute_values(Some(free_values(now)))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(attr::build_err)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Completes `lease` on its own (for effects that are not one transaction).
    pub async fn complete_idempotency(
        &self,
        lease: &Lease,
        response: &StoredResponse,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let action = self.idempotency_complete_action(lease, response, now)?;
        let token = uuid::Uuid::new_v4().to_string();
        match self
            .transact_settled(vec![action], &token, false, &SETTLE_BACKOFF)
            .await?
        {
            Settled::Committed(_) => Ok(()),
            Settled::Cancelled {
                reasons,
                after_unknown,
            } => {
                // Completed already by this very lease (an earlier send whose
                // answer was lost): done. Otherwise the lease was lost.
                let record = match after_unknown {
                    true => self.read_idempotency(&lease.pk()).await?,
                    false => None,
                };
                if record.is_some_and(|item| lease.is_claimed_by(&item, STATUS_COMPLETED)) {
                    return Ok(());
                }
                Err(Error::Conflict(format!(
                    "the idempotency key is no longer held by this request: {reasons:?}"
                )))
            }
        }
    }

    /// The action that gives the key up again (the request had no effect).
    pub fn idempotency_release_action(&self, lease: &Lease) -> Result<TransactWriteItem, Error> {
        let token = lease.token.as_deref().unwrap_or_default();
        let delete = Delete::builder()
            .table_name(self.table())
            .set_key(Some(key_of(lease.pk())))
            .condition_expression(OWNED_CONDITION)
            .set_expression_attribute_names(Some(owned_names()))
            .set_expression_attribute_values(Some(owned_values(token)))
            .build()
            .map_err(attr::build_err)?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    /// Gives the key up so a retry runs again. Losing the lease meanwhile is
    /// fine (someone else owns it now); any other failure is reported, and the
    /// in-progress expiry frees the key anyway.
    pub async fn release_idempotency(&self, lease: &Lease) -> Result<(), Error> {
        // An unclaimed key was never written: nothing to give up.
        let Some(token) = &lease.token else {
            return Ok(());
        };
        let result = self
            .client()
            .delete_item()
            .table_name(self.table())
            .set_key(Some(key_of(lease.pk())))
            .condition_expression(OWNED_CONDITION)
            .set_expression_attribute_names(Some(owned_names()))
            .set_expression_attribute_values(Some(owned_values(token)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if super::txn::is_condition_failed(&e) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// What `key` says now, without taking it: `None` if absent or expired, a
    /// replay once completed, 409 / 422 while running / for a different request.
    pub async fn peek_idempotency(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &Fingerprint,
        now: DateTime<Utc>,
    ) -> Result<Option<Claim>, Error> {
        match self
            .read_idempotency(&keys::idempotency_pk(scope, key))
            .await?
        {
            Some(item) => outcome_of(&item, fingerprint, now).transpose(),
            None => Ok(None),
        }
    }

    /// After a completion failed its condition: what the key says now — a
    /// replay of whoever completed it, or 409 / 422. `record` is the item the
    /// failed condition returned (`ALL_OLD`); without it the key is read.
    pub async fn idempotency_after_lost_lease(
        &self,
        lease: &Lease,
        record: Option<&Item>,
        now: DateTime<Utc>,
    ) -> Result<Claim, Error> {
        let read;
        let record = match record {
            Some(item) => Some(item),
            None => {
                read = self.read_idempotency(&lease.pk()).await?;
                read.as_ref()
            }
        };
        lease.answer(record, now)?.ok_or(Error::IdempotencyKeyInUse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_outcomes() {
        let fp = Fingerprint::of("POST", "/x", b"{}");
        let now = Utc::now();
        let mut item = Item::new();
        item.insert("fingerprint".into(), attr::s(fp.as_str()));
        item.insert("status".into(), attr::s(STATUS_IN_PROGRESS));
        item.insert(keys::TTL.into(), attr::n(now.timestamp() + 100));
        assert!(matches!(
            outcome_of(&item, &fp, now),
            Some(Err(Error::IdempotencyKeyInUse))
        ));
        let other = Fingerprint::of("POST", "/x", b"{\"a\":1}");
        assert!(matches!(
            outcome_of(&item, &other, now),
            Some(Err(Error::IdempotencyKeyMismatch))
        ));
        item.insert("status".into(), attr::s(STATUS_COMPLETED));
        item.insert("response_status".into(), attr::n(200));
        item.insert("response_body".into(), attr::s("{}"));
        assert!(matches!(
            outcome_of(&item, &fp, now),
            Some(Ok(Claim::Replay(StoredResponse { status: 200, ref body }))) if body == "{}"
        ));
        item.insert(keys::TTL.into(), attr::n(now.timestamp()));
        assert!(
            outcome_of(&item, &fp, now).is_none(),
            "expired reads as absent"
        );
    }

    #[test]
    fn a_claim_past_its_lease_is_free_and_an_unclaimed_key_answers_from_its_record() {
        let fp = Fingerprint::of("POST", "/x", b"{}");
        let now = Utc::now();
        let lease = Lease::unclaimed("adjust:admin", "k", &fp).unwrap();
        assert!(!lease.is_claimed());
        assert_eq!(lease.answer(None, now).unwrap(), None, "absent: free");
        let mut item = lease.record_key();
        assert!(lease.is_record(&item));
        item.insert("fingerprint".into(), attr::s(fp.as_str()));
        item.insert("status".into(), attr::s(STATUS_IN_PROGRESS));
        item.insert(keys::TTL.into(), attr::n(now.timestamp() + 100));
        item.insert(
            "lease_until_ms".into(),
            attr::n(now.timestamp_millis() + 1_000),
        );
        assert!(matches!(
            lease.answer(Some(&item), now),
            Err(Error::IdempotencyKeyInUse)
        ));
        item.insert("lease_until_ms".into(), attr::n(now.timestamp_millis()));
        assert_eq!(
            lease.answer(Some(&item), now).unwrap(),
            None,
            "a claim whose owner stopped renewing it may be taken over"
        );
        assert!(Lease::unclaimed("a#b", "k", &fp).is_err());
    }
}
