//! Redemption codes in DynamoDB.
//!
//! | item | pk | sk | notes |
//! |---|---|---|---|
//! | code | `CODE#{key}` | `CODE` | gsi1 `BATCH_CODES#{batch}` / `{index:04}` |
//! | redemption (once per code and user) | `CODE#{key}` | `REDEMPTION#{user}` | gsi1 `USER_REDEMPTIONS#{user}` / `{redeemed_at}#{key}` |
//! | batch | `CODE_BATCH#{batch}` | `BATCH` | gsi1 `CODE_BATCHES` / `{created_at}#{batch}`; progress `written` |
//! | batch plan | `CODE_BATCH#{batch}` | `PLAN` | every code of the batch, in order |
//! | subscription | `USER#{user}` | `SUB#{plan}` | `expires_at`, `version` |
//! | redemption counter | `USER#{user}` | `REDEMPTION_STATS` | `redemption_count` decides `is_new` |
//! | failed attempts | `USER#{user}` | `REDEEM_FAIL#HOUR` | `m{epoch_minute}` = count per minute; TTL |
//! | lease lock (honoured, never taken) | `LOCK#redeem:{user}:{key}` | `LOCK` | see [`super::lock`] |
//!
//! A redemption is one `TransactWriteItems` (see [`DynamoStore::redeem`]); a
//! batch of up to 1,000 codes is written in chunks that a retry with the same
//! Idempotency-Key resumes (see [`DynamoStore::create_code_batch`]).
//!
//! Files by concern: `items` (item mapping), `catalogue` (batches, codes and
//! lists), `redeem` (the redemption transaction), `limiter` (failed attempts).

mod catalogue;
mod items;
mod limiter;
mod redeem;

pub use catalogue::{CodeFilter, CreatedBatch};
pub use redeem::{RedeemOutcome, RedeemRequest};

use super::attr::{self, build_err, get_time, opt_time, timestamp, Item};
use super::credits::{CommitError, CreditTxn};
use super::idempotency::{Claim, Fingerprint, Lease, StoredResponse};
use super::list::{bad_cursor, item_key, start_key, Filter, ListQuery, MAX_LIST_QUERIES};
use super::txn::{Backoff, CancelReason, Settled, SETTLE_BACKOFF};
use super::{keys, unavailable, DynamoStore};
use crate::clock::Clock;
use crate::domain::audit::{
    Actor, AuditEntry, ADMIN_CREATE_REDEMPTION_CODES, ADMIN_UPDATE_REDEMPTION_CODE,
};
use crate::domain::credits::Change;
use crate::domain::redemption::{
    check_failed_attempts, extend_subscription, failure_minute, failure_window_start,
    generate_code, Batch, BatchId, BatchSpec, CodeKey, CodeStatus, GeneratedCode, Grant, PlanId,
    Prefix, Redemption, RedemptionCode, Subscription, SubscriptionChange, SubscriptionGrant, Unit,
};
use crate::domain::UserId;
use crate::error::Error;
use crate::paging::{Cursor, Page, PageRequest};
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration as StdDuration;

const CODE_SK: &str = "CODE";
const REDEMPTION_SK_PREFIX: &str = "REDEMPTION#";
const BATCH_SK: &str = "BATCH";
const PLAN_SK: &str = "PLAN";
const BATCHES_INDEX_PK: &str = "CODE_BATCHES";
const SUB_SK_PREFIX: &str = "SUB#";
const STATS_SK: &str = "REDEMPTION_STATS";
/// Attribute of a redemption record naming the request that wrote it.
const REQUEST_ID: &str = "request_id";

/// Codes per transaction after the first: 100 actions minus the batch progress
/// update and a spare slot for rewriting the plan after a collision.
const CHUNK: usize = 98;
/// The first transaction also puts the batch, the plan and the audit entry.
const FIRST_CHUNK: usize = 97;
/// Attempts of a redemption whose items (subscription, counter) another
/// redemption of the same user changed meanwhile.
const REDEEM_BACKOFF: Backoff = Backoff {
    max_attempts: 8,
    base: StdDuration::from_millis(10),
    cap: StdDuration::from_millis(250),
};
fn code_pk(key: &CodeKey) -> String {
    format!("CODE#{key}")
}

fn batch_pk(id: &BatchId) -> String {
    format!("CODE_BATCH#{id}")
}

fn batch_codes_index_pk(id: &BatchId) -> String {
    format!("BATCH_CODES#{id}")
}

fn user_redemptions_index_pk(user: &UserId) -> String {
    format!("USER_REDEMPTIONS#{user}")
}

fn sub_sk(plan: &PlanId) -> String {
    format!("{SUB_SK_PREFIX}{plan}")
}

fn code_key_item(key: &CodeKey) -> Item {
    keys::item_key(code_pk(key), CODE_SK)
}

fn corrupt(what: &str) -> Error {
    Error::Internal(format!("stored redemption data: {what}"))
}

fn put_action(put: Put) -> TransactWriteItem {
    TransactWriteItem::builder().put(put).build()
}

fn update_action(update: Update) -> TransactWriteItem {
    TransactWriteItem::builder().update(update).build()
}
