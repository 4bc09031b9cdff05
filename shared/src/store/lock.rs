//! Short lease locks: `LOCK#{name}` / `LOCK` with `owner`, `lease_until_ms`,
//! `version` and the TTL attribute (for clean-up only).
//!
//! A lock never decides correctness: the conditional writes of the work it
//! guards do. It exists to turn a concurrent second attempt at the same
//! multi-step work into a clean "in progress" answer instead of a race that the
//! conditions then settle. A holder that dies leaves a lease that anyone may
//! take over once it has expired.
//!
//! Redemption no longer takes one (its one transaction's conditions are its
//! lease); it still reads `LOCK#redeem:{user}:{code}` with its other items
//! and answers 409 `redemption_in_progress` while another holder's lease runs.

use super::attr::{self, Item};
use super::{keys, txn, unavailable, DynamoStore};
use crate::error::Error;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{ReturnValue, ReturnValuesOnConditionCheckFailure};
use chrono::{DateTime, Duration, Utc};

/// How long after its lease a stale lock item may be deleted by TTL.
const CLEANUP_AFTER: Duration = Duration::hours(1);

/// A held lock; give it back with [`DynamoStore::release_lock`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockLease {
    pub name: String,
    owner: String,
    /// Increases with every acquisition: a fencing token, should a caller need one.
    pub version: i64,
    pub until: DateTime<Utc>,
}

/// Whether the lock item `item` is held by someone at `now`.
pub(crate) fn is_held(item: &Item, now: DateTime<Utc>) -> bool {
    attr::opt_i64(item, "lease_until_ms")
        .ok()
        .flatten()
        .is_some_and(|until| until > now.timestamp_millis())
}

pub(crate) fn lock_key(name: &str) -> Item {
    Item::from([
        (keys::PK.to_string(), attr::s(format!("LOCK#{name}"))),
        (keys::SK.to_string(), attr::s("LOCK")),
    ])
}

impl DynamoStore {
    /// Takes the lock `name` for `lease` from `now`, unless someone else holds
    /// an unexpired lease on it (`Ok(None)`). One conditional write; a failed
    /// condition returns the lock (`ALL_OLD`), so a lock held by this very
    /// call (the SDK resent an update that had committed) is recognised.
    pub async fn try_lock(
        &self,
        name: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<LockLease>, Error> {
        let owner = uuid::Uuid::new_v4().to_string();
        let until = now + lease;
        let result = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(lock_key(name)))
            .update_expression(
                "SET #owner = :owner, lease_until_ms = :until, acquired_at = :now, \
                 #version = if_not_exists(#version, :zero) + :one, #ttl = :ttl",
            )
            .condition_expression("attribute_not_exists(#pk) OR lease_until_ms <= :now_ms")
            .expression_attribute_names("#pk", keys::PK)
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#version", "version")
            .expression_attribute_names("#ttl", keys::TTL)
            .expression_attribute_values(":owner", attr::s(&owner))
            .expression_attribute_values(":until", attr::n(until.timestamp_millis()))
            .expression_attribute_values(":now", attr::s(attr::timestamp(now)))
            .expression_attribute_values(":now_ms", attr::n(now.timestamp_millis()))
            .expression_attribute_values(":zero", attr::n(0))
            .expression_attribute_values(":one", attr::n(1))
            .expression_attribute_values(":ttl", attr::n((until + CLEANUP_AFTER).timestamp()))
            .return_values(ReturnValue::UpdatedNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let held_by = |item: &Item| attr::opt_s(item, "owner") == Some(owner.as_str());
        // The lease as `item` (the lock after our write) shows it.
        let lease = |item: Option<&Item>| -> Result<Option<LockLease>, Error> {
            let version = item
                .map(|item| attr::get_i64(item, "version"))
                .transpose()?
                .unwrap_or(1);
            Ok(Some(LockLease {
                name: name.to_string(),
                owner: owner.clone(),
                version,
                until,
            }))
        };
        match result {
            Ok(out) => lease(out.attributes()),
            Err(e) if txn::is_condition_failed(&e) => match e.as_service_error() {
                // Our own acquisition: it committed, its answer was lost, and
                // the SDK's resend found the lock held, by this owner.
                Some(UpdateItemError::ConditionalCheckFailedException(failed))
                    if failed.item().is_some_and(held_by) =>
                {
                    lease(failed.item())
                }
                _ => Ok(None),
            },
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Gives the lock back if this lease still owns it (a lease taken over after
    /// expiry is left to its new owner).
    pub async fn release_lock(&self, lease: &LockLease) -> Result<(), Error> {
        let result = self
            .client()
            .delete_item()
            .table_name(self.table())
            .set_key(Some(lock_key(&lease.name)))
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", attr::s(&lease.owner))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if txn::is_condition_failed(&e) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }
}
