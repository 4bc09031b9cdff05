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
//! | failed attempts | `USER#{user}` | `REDEEM_FAIL#{epoch_minute:012}` | `count`; TTL |
//! | lease lock | `LOCK#redeem:{user}:{key}` | `LOCK` | see [`super::lock`] |
//!
//! A redemption is one `TransactWriteItems` (see [`DynamoStore::redeem`]); a
//! batch of up to 1,000 codes is written in chunks that a retry with the same
//! Idempotency-Key resumes (see [`DynamoStore::create_code_batch`]).

use super::attr::{self, Item};
use super::credits::{CommitError, CreditTxn, CREDIT_BACKOFF};
use super::idempotency::{Claim, Fingerprint, Lease, StoredResponse};
use super::list::{bad_cursor, item_key, start_key, Filter, ListQuery, MAX_LIST_QUERIES};
use super::lock::LockLease;
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
    AttributeValue, KeysAndAttributes, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    Update,
};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration as StdDuration;

const CODE_SK: &str = "CODE";
const REDEMPTION_SK_PREFIX: &str = "REDEMPTION#";
const BATCH_SK: &str = "BATCH";
const PLAN_SK: &str = "PLAN";
const BATCHES_INDEX_PK: &str = "CODE_BATCHES";
const SUB_SK_PREFIX: &str = "SUB#";
const STATS_SK: &str = "REDEMPTION_STATS";
const FAIL_SK_PREFIX: &str = "REDEEM_FAIL#";
/// Attribute of a redemption record naming the request that wrote it.
const REQUEST_ID: &str = "request_id";

/// Codes per transaction after the first: 100 actions minus the batch progress
/// update and a spare slot for rewriting the plan after a collision.
const CHUNK: usize = 98;
/// The first transaction also puts the batch, the plan and the audit entry.
const FIRST_CHUNK: usize = 97;
/// A redemption takes well under a second; the lease only has to outlive it.
const REDEEM_LOCK_LEASE: Duration = Duration::seconds(10);
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

fn fail_sk(minute: i64) -> String {
    format!("{FAIL_SK_PREFIX}{minute:012}")
}

fn code_key_item(key: &CodeKey) -> Item {
    keys::item_key(code_pk(key), CODE_SK)
}

/// Sortable, fixed-width text for keys.
fn sortable(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_time(item: &Item, name: &str) -> Result<DateTime<Utc>, Error> {
    DateTime::parse_from_rfc3339(attr::get_s(item, name)?)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| Error::Internal(format!("stored attribute {name}: {e}")))
}

fn opt_time(item: &Item, name: &str) -> Result<Option<DateTime<Utc>>, Error> {
    attr::opt_s(item, name)
        .map(|_| parse_time(item, name))
        .transpose()
}

fn build_err(e: aws_sdk_dynamodb::error::BuildError) -> Error {
    Error::Internal(format!("redemption request: {e}"))
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

// ---------------------------------------------------------------------------
// Item mapping
// ---------------------------------------------------------------------------

fn insert_grant(item: &mut Item, grant: &Grant) {
    item.insert("credits".into(), attr::n(grant.credits));
    if let Some(sub) = &grant.subscription {
        item.insert("plan_id".into(), attr::s(sub.plan_id.as_str()));
        item.insert("unit".into(), attr::s(sub.unit.as_str()));
        item.insert("quantity".into(), attr::n(sub.quantity));
    }
}

fn grant_from_item(item: &Item) -> Result<Grant, Error> {
    let subscription = match attr::opt_s(item, "plan_id") {
        None => None,
        Some(plan) => Some(SubscriptionGrant {
            plan_id: PlanId::parse(plan)?,
            unit: Unit::parse(attr::get_s(item, "unit")?).ok_or_else(|| corrupt("unit"))?,
            quantity: u32::try_from(attr::get_i64(item, "quantity")?)
                .map_err(|_| corrupt("quantity"))?,
        }),
    };
    Ok(Grant {
        credits: attr::get_i64(item, "credits")?,
        subscription,
    })
}

fn code_item(batch: &Batch, index: usize, code: &GeneratedCode) -> Item {
    let spec = &batch.spec;
    let mut item = code_key_item(&code.key);
    item.insert(
        keys::GSI1_PK.into(),
        attr::s(batch_codes_index_pk(&batch.batch_id)),
    );
    item.insert(keys::GSI1_SK.into(), attr::s(format!("{index:04}")));
    item.insert("code".into(), attr::s(&code.display));
    item.insert("code_key".into(), attr::s(code.key.as_str()));
    item.insert("batch_id".into(), attr::s(batch.batch_id.as_str()));
    if let Some(name) = &spec.batch_name {
        item.insert("batch_name".into(), attr::s(name));
    }
    insert_grant(&mut item, &spec.grant);
    item.insert("max_uses".into(), attr::n(spec.max_uses));
    item.insert("used_count".into(), attr::n(0));
    item.insert("enabled".into(), AttributeValue::Bool(true));
    if let Some(at) = spec.expires_at {
        item.insert("expires_at".into(), attr::s(sortable(at)));
        // Conditions have no now(): the redeem condition compares this with :now_ms.
        item.insert("expires_ms".into(), attr::n(at.timestamp_millis()));
    }
    item.insert("created_at".into(), attr::s(sortable(batch.created_at)));
    item.insert("updated_at".into(), attr::s(sortable(batch.created_at)));
    item
}

fn code_from_item(item: &Item) -> Result<RedemptionCode, Error> {
    Ok(RedemptionCode {
        key: CodeKey::from_stored(attr::get_s(item, "code_key")?),
        display: attr::get_s(item, "code")?.to_string(),
        batch_id: BatchId::parse(attr::get_s(item, "batch_id")?)?,
        batch_name: attr::opt_s(item, "batch_name").map(str::to_string),
        grant: grant_from_item(item)?,
        max_uses: attr::get_i64(item, "max_uses")?,
        used_count: attr::get_i64(item, "used_count")?,
        enabled: attr::get_bool(item, "enabled").ok_or_else(|| corrupt("enabled"))?,
        expires_at: opt_time(item, "expires_at")?,
        created_at: parse_time(item, "created_at")?,
        updated_at: parse_time(item, "updated_at")?,
    })
}

fn batch_sort(batch: &Batch) -> String {
    format!("{}#{}", sortable(batch.created_at), batch.batch_id)
}

fn batch_item(batch: &Batch, fingerprint: &str, written: usize) -> Item {
    let spec = &batch.spec;
    let mut item = keys::item_key(batch_pk(&batch.batch_id), BATCH_SK);
    item.insert(keys::GSI1_PK.into(), attr::s(BATCHES_INDEX_PK));
    item.insert(keys::GSI1_SK.into(), attr::s(batch_sort(batch)));
    item.insert("batch_id".into(), attr::s(batch.batch_id.as_str()));
    if let Some(name) = &spec.batch_name {
        item.insert("batch_name".into(), attr::s(name));
    }
    if let Some(prefix) = &spec.prefix {
        item.insert("prefix".into(), attr::s(prefix.as_str()));
    }
    item.insert("count".into(), attr::n(spec.count));
    item.insert("written".into(), attr::n(written));
    item.insert(
        "complete".into(),
        AttributeValue::Bool(written == batch.codes.len()),
    );
    item.insert("fingerprint".into(), attr::s(fingerprint));
    insert_grant(&mut item, &spec.grant);
    item.insert("max_uses".into(), attr::n(spec.max_uses));
    if let Some(at) = spec.expires_at {
        item.insert("expires_at".into(), attr::s(sortable(at)));
    }
    item.insert("created_at".into(), attr::s(sortable(batch.created_at)));
    item.insert("created_by".into(), attr::s(&batch.created_by));
    item
}

fn plan_item(batch_id: &BatchId, codes: &[GeneratedCode]) -> Item {
    let mut item = keys::item_key(batch_pk(batch_id), PLAN_SK);
    item.insert("codes".into(), codes_attr(codes));
    item
}

fn codes_attr(codes: &[GeneratedCode]) -> AttributeValue {
    AttributeValue::L(codes.iter().map(|c| attr::s(&c.display)).collect())
}

fn codes_from_plan(item: &Item) -> Result<Vec<GeneratedCode>, Error> {
    let list = item
        .get("codes")
        .and_then(|v| v.as_l().ok())
        .ok_or_else(|| corrupt("batch plan without codes"))?;
    list.iter()
        .map(|v| {
            let display = v.as_s().map_err(|_| corrupt("batch plan code"))?;
            Ok(GeneratedCode {
                key: CodeKey::parse(display)?,
                display: display.clone(),
            })
        })
        .collect()
}

/// The batch as stored, with the codes of its plan.
fn batch_from_items(batch: &Item, codes: &[GeneratedCode]) -> Result<Batch, Error> {
    let count = usize::try_from(attr::get_i64(batch, "count")?).map_err(|_| corrupt("count"))?;
    Ok(Batch {
        batch_id: BatchId::parse(attr::get_s(batch, "batch_id")?)?,
        spec: BatchSpec {
            count,
            prefix: attr::opt_s(batch, "prefix")
                .map(Prefix::parse)
                .transpose()?,
            grant: grant_from_item(batch)?,
            max_uses: attr::get_i64(batch, "max_uses")?,
            expires_at: opt_time(batch, "expires_at")?,
            batch_name: attr::opt_s(batch, "batch_name").map(str::to_string),
        },
        codes: codes.iter().map(|c| c.display.clone()).collect(),
        created_at: parse_time(batch, "created_at")?,
        created_by: attr::get_s(batch, "created_by")?.to_string(),
    })
}

fn redemption_item(r: &Redemption) -> Item {
    let mut item = keys::item_key(
        code_pk(&r.code_key),
        format!("{REDEMPTION_SK_PREFIX}{}", r.user_id),
    );
    item.insert(
        keys::GSI1_PK.into(),
        attr::s(user_redemptions_index_pk(&r.user_id)),
    );
    item.insert(
        keys::GSI1_SK.into(),
        attr::s(format!("{}#{}", sortable(r.redeemed_at), r.code_key)),
    );
    item.insert("code".into(), attr::s(&r.code));
    item.insert("code_key".into(), attr::s(r.code_key.as_str()));
    item.insert("batch_id".into(), attr::s(r.batch_id.as_str()));
    item.insert("user_id".into(), attr::s(r.user_id.as_str()));
    item.insert("credits_granted".into(), attr::n(r.credits_granted));
    item.insert("balance_after".into(), attr::n(r.balance_after));
    if let Some(id) = &r.transaction_id {
        item.insert("transaction_id".into(), attr::s(id));
    }
    if let Some(s) = &r.subscription {
        item.insert("plan_id".into(), attr::s(s.plan_id.as_str()));
        item.insert("unit".into(), attr::s(s.unit.as_str()));
        item.insert("quantity".into(), attr::n(s.quantity));
        if let Some(prev) = s.previous_expires_at {
            item.insert("previous_expires_at".into(), attr::s(sortable(prev)));
        }
        item.insert("sub_expires_at".into(), attr::s(sortable(s.expires_at)));
    }
    item.insert("is_new".into(), AttributeValue::Bool(r.is_new));
    item.insert("redeemed_at".into(), attr::s(sortable(r.redeemed_at)));
    item
}

fn redemption_from_item(item: &Item) -> Result<Redemption, Error> {
    let subscription = match attr::opt_s(item, "plan_id") {
        None => None,
        Some(plan) => Some(SubscriptionChange {
            plan_id: PlanId::parse(plan)?,
            unit: Unit::parse(attr::get_s(item, "unit")?).ok_or_else(|| corrupt("unit"))?,
            quantity: u32::try_from(attr::get_i64(item, "quantity")?)
                .map_err(|_| corrupt("quantity"))?,
            previous_expires_at: opt_time(item, "previous_expires_at")?,
            expires_at: parse_time(item, "sub_expires_at")?,
        }),
    };
    Ok(Redemption {
        code: attr::get_s(item, "code")?.to_string(),
        code_key: CodeKey::from_stored(attr::get_s(item, "code_key")?),
        batch_id: BatchId::parse(attr::get_s(item, "batch_id")?)?,
        user_id: UserId::parse(attr::get_s(item, "user_id")?)?,
        credits_granted: attr::get_i64(item, "credits_granted")?,
        balance_after: attr::get_i64(item, "balance_after")?,
        transaction_id: attr::opt_s(item, "transaction_id").map(str::to_string),
        subscription,
        is_new: attr::get_bool(item, "is_new").unwrap_or(false),
        redeemed_at: parse_time(item, "redeemed_at")?,
    })
}

fn subscription_from_item(item: &Item) -> Result<Subscription, Error> {
    Ok(Subscription {
        plan_id: PlanId::parse(attr::get_s(item, "plan_id")?)?,
        expires_at: parse_time(item, "expires_at")?,
        version: attr::get_i64(item, "version")?,
        created_at: parse_time(item, "created_at")?,
        updated_at: parse_time(item, "updated_at")?,
    })
}

// ---------------------------------------------------------------------------
// Lists
// ---------------------------------------------------------------------------

/// The filter expression of a code status (the status rules of
/// [`RedemptionCode::status`], in the store's terms).
fn status_filter(status: CodeStatus, now: DateTime<Utc>) -> Filter {
    let unexpired = "(attribute_not_exists(#exp) OR #exp > :now_ms)";
    let expression = match status {
        CodeStatus::Disabled => "#enabled = :false".to_string(),
        CodeStatus::Expired => "#enabled = :true AND #exp <= :now_ms".to_string(),
        CodeStatus::Exhausted => format!("#enabled = :true AND #used >= #max AND {unexpired}"),
        CodeStatus::Active => format!("#enabled = :true AND #used < #max AND {unexpired}"),
    };
    let names = [
        ("#enabled", "enabled"),
        ("#exp", "expires_ms"),
        ("#used", "used_count"),
        ("#max", "max_uses"),
    ]
    .into_iter()
    .filter(|(n, _)| expression.contains(n))
    .map(|(n, a)| (n.to_string(), a.to_string()))
    .collect();
    let values = [
        (":true", AttributeValue::Bool(true)),
        (":false", AttributeValue::Bool(false)),
        (":now_ms", attr::n(now.timestamp_millis())),
    ]
    .into_iter()
    .filter(|(n, _)| expression.contains(n))
    .map(|(n, v)| (n.to_string(), v))
    .collect();
    Filter {
        expression,
        names,
        values,
    }
}

/// The Idempotency-Key space of a user's redemptions.
fn redeem_key_scope(user: &UserId) -> String {
    format!("redeem:{user}")
}

/// Filters of the admin code list.
#[derive(Clone, Debug, Default)]
pub struct CodeFilter {
    pub batch_id: Option<BatchId>,
    pub status: Option<CodeStatus>,
}

/// Where a walk over every batch stands (the cursor of an unfiltered list).
enum Walk {
    /// Before the newest batch.
    Start,
    /// Inside the batch at `sort` (its gsi1 sort key), from `code_key` on.
    Within {
        sort: String,
        batch: BatchId,
        from: Option<Item>,
    },
    /// After the batch at `sort`.
    After(String),
}

const WALK_BATCH: &str = "walk_batch";
const WALK_BATCH_ID: &str = "walk_batch_id";
const WALK_AFTER: &str = "walk_after";

impl Walk {
    fn from_cursor(cursor: Option<&Cursor>) -> Result<Self, Error> {
        let Some(Cursor(map)) = cursor else {
            return Ok(Walk::Start);
        };
        if let Some(after) = map.get(WALK_AFTER) {
            return if map.len() == 1 {
                Ok(Walk::After(after.clone()))
            } else {
                Err(bad_cursor())
            };
        }
        let (Some(sort), Some(id)) = (map.get(WALK_BATCH), map.get(WALK_BATCH_ID)) else {
            return Err(bad_cursor());
        };
        let batch = BatchId::parse(id).map_err(|_| bad_cursor())?;
        let rest: BTreeMap<String, String> = map
            .iter()
            .filter(|(k, _)| *k != WALK_BATCH && *k != WALK_BATCH_ID)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let from = if rest.is_empty() {
            None
        } else {
            let partition = (keys::GSI1_PK, batch_codes_index_pk(&batch));
            Some(start_key(&rest, &partition, Some(keys::GSI1))?)
        };
        Ok(Walk::Within {
            sort: sort.clone(),
            batch,
            from,
        })
    }

    fn cursor(&self) -> Option<Cursor> {
        match self {
            Walk::Start => None,
            Walk::After(sort) => Some(Cursor([(WALK_AFTER.to_string(), sort.clone())].into())),
            Walk::Within { sort, batch, from } => {
                let mut map = from
                    .as_ref()
                    .map(|f| attr::cursor_of(f).0)
                    .unwrap_or_default();
                map.insert(WALK_BATCH.into(), sort.clone());
                map.insert(WALK_BATCH_ID.into(), batch.to_string());
                Some(Cursor(map))
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Admin: codes and batches
// ---------------------------------------------------------------------------

/// The result of a batch creation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedBatch {
    pub batch: Batch,
    /// The batch existed already (same Idempotency-Key and request): its codes
    /// are answered again, and any chunk a crashed attempt left unwritten is
    /// written now.
    pub replayed: bool,
}

impl DynamoStore {
    /// Creates a batch of `spec.count` codes under `batch_id`, resumably: the
    /// first transaction puts the batch (with the request `fingerprint`), its
    /// plan (every code), the audit entry and the first codes; each further
    /// transaction puts the next codes and advances the batch's `written`
    /// counter, conditioned on its previous value. If `batch_id` exists already
    /// (a retry with the same Idempotency-Key, which derives the id), the stored
    /// batch is completed and answered instead; with a different request → 422.
    pub async fn create_code_batch(
        &self,
        batch_id: BatchId,
        spec: BatchSpec,
        fingerprint: &str,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<CreatedBatch, Error> {
        let mut rng = rand::rngs::OsRng;
        // Distinct within the batch: one transaction may not touch an item twice.
        let mut seen = HashSet::new();
        let mut codes: Vec<GeneratedCode> = Vec::with_capacity(spec.count);
        while codes.len() < spec.count {
            let code = generate_code(spec.prefix.as_ref(), &mut rng);
            if seen.insert(code.key.clone()) {
                codes.push(code);
            }
        }
        let audit = AuditEntry::new(
            actor,
            ADMIN_CREATE_REDEMPTION_CODES,
            None,
            spec.audit_details(&batch_id),
            now,
        );
        let mut batch = Batch {
            batch_id,
            spec,
            codes: Vec::new(),
            created_at: now,
            created_by: actor.id.clone(),
        };
        let backoff = Backoff::default();
        for attempt in 1..=backoff.max_attempts {
            batch.codes = codes.iter().map(|c| c.display.clone()).collect();
            let first = codes.len().min(FIRST_CHUNK);
            let mut actions = vec![
                put_action(
                    Put::builder()
                        .table_name(self.table())
                        .set_item(Some(batch_item(&batch, fingerprint, first)))
                        .condition_expression("attribute_not_exists(#pk)")
                        .expression_attribute_names("#pk", keys::PK)
                        .return_values_on_condition_check_failure(
                            ReturnValuesOnConditionCheckFailure::AllOld,
                        )
                        .build()
                        .map_err(build_err)?,
                ),
                put_action(
                    Put::builder()
                        .table_name(self.table())
                        .set_item(Some(plan_item(&batch.batch_id, &codes)))
                        .build()
                        .map_err(build_err)?,
                ),
                self.audit_put(&audit)?,
            ];
            for (i, code) in codes.iter().enumerate().take(first) {
                actions.push(self.code_put(&batch, i, code)?);
            }
            let token = uuid::Uuid::new_v4().to_string();
            match self
                .transact_settled(actions, &token, false, &SETTLE_BACKOFF)
                .await?
            {
                Settled::Committed(_) => {
                    let codes = self
                        .write_chunks(&batch.batch_id, &batch, codes, first, fingerprint)
                        .await?;
                    batch.codes = codes.iter().map(|c| c.display.clone()).collect();
                    return Ok(CreatedBatch {
                        batch,
                        replayed: false,
                    });
                }
                Settled::Cancelled {
                    reasons,
                    after_unknown,
                } => {
                    if let Some(existing) = reasons
                        .first()
                        .filter(|r| r.is_condition_failed())
                        .and_then(|r| r.item.clone())
                    {
                        let mut resumed = self.resume_batch(&existing, fingerprint).await?;
                        // Our own first chunk (committed, answer lost) is no
                        // replay: its audit entry is ours.
                        if after_unknown && self.audit_written(&audit).await? {
                            resumed.replayed = false;
                        }
                        return Ok(resumed);
                    }
                    if reasons.iter().all(CancelReason::is_transient_or_none) {
                        // A conflict with another transaction: nothing written.
                        if attempt < backoff.max_attempts {
                            tokio::time::sleep(backoff.delay(attempt)).await;
                        }
                        continue;
                    }
                    // A code collided with an existing one (80 random bits make
                    // this all but impossible): draw those again. Nothing was written.
                    let mut collided = false;
                    for (i, reason) in reasons.iter().skip(3).enumerate() {
                        if reason.is_condition_failed() {
                            codes[i] = generate_code(batch.spec.prefix.as_ref(), &mut rng);
                            collided = true;
                        }
                    }
                    if !collided {
                        return Err(Error::Internal(format!(
                            "batch creation cancelled: {reasons:?}"
                        )));
                    }
                    continue;
                }
            }
        }
        Err(Error::StoreUnavailable(
            "the batch could not be written; retry with the same Idempotency-Key".into(),
        ))
    }

    fn code_put(
        &self,
        batch: &Batch,
        index: usize,
        code: &GeneratedCode,
    ) -> Result<TransactWriteItem, Error> {
        Ok(put_action(
            Put::builder()
                .table_name(self.table())
                .set_item(Some(code_item(batch, index, code)))
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", keys::PK)
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .build()
                .map_err(build_err)?,
        ))
    }

    /// Finishes a batch found already stored: same request → its codes (writing
    /// whatever chunks are missing); another request under the same id → 422.
    async fn resume_batch(&self, stored: &Item, fingerprint: &str) -> Result<CreatedBatch, Error> {
        if attr::opt_s(stored, "fingerprint") != Some(fingerprint) {
            return Err(Error::IdempotencyKeyMismatch);
        }
        let batch_id = BatchId::parse(attr::get_s(stored, "batch_id")?)?;
        let codes = self.batch_plan(&batch_id).await?;
        let mut batch = batch_from_items(stored, &codes)?;
        let written =
            usize::try_from(attr::get_i64(stored, "written")?).map_err(|_| corrupt("written"))?;
        let codes = self
            .write_chunks(&batch_id, &batch, codes, written, fingerprint)
            .await?;
        batch.codes = codes.iter().map(|c| c.display.clone()).collect();
        Ok(CreatedBatch {
            batch,
            replayed: true,
        })
    }

    async fn batch_plan(&self, batch_id: &BatchId) -> Result<Vec<GeneratedCode>, Error> {
        let plan = self
            .get_consistent(keys::item_key(batch_pk(batch_id), PLAN_SK))
            .await?;
        codes_from_plan(&plan.ok_or_else(|| corrupt("batch without plan"))?)
    }

    /// Writes the codes from `written` on, chunk by chunk; each chunk commits
    /// with the batch's progress counter, so concurrent resumers never write a
    /// chunk twice and a crash loses no more than the chunk in flight.
    /// Returns the final plan (a collision replaces a code in it).
    async fn write_chunks(
        &self,
        batch_id: &BatchId,
        batch: &Batch,
        mut codes: Vec<GeneratedCode>,
        mut written: usize,
        fingerprint: &str,
    ) -> Result<Vec<GeneratedCode>, Error> {
        let backoff = Backoff::default();
        let mut plan_changed = false;
        let mut failures = 0;
        let mut rng = rand::rngs::OsRng;
        while written < codes.len() {
            let end = (written + CHUNK).min(codes.len());
            let progress = Update::builder()
                .table_name(self.table())
                .set_key(Some(keys::item_key(batch_pk(batch_id), BATCH_SK)))
                .update_expression("SET #written = :new, #complete = :complete")
                .condition_expression("#written = :old AND #fp = :fp")
                .expression_attribute_names("#written", "written")
                .expression_attribute_names("#complete", "complete")
                .expression_attribute_names("#fp", "fingerprint")
                .expression_attribute_values(":new", attr::n(end))
                .expression_attribute_values(":old", attr::n(written))
                .expression_attribute_values(":fp", attr::s(fingerprint))
                .expression_attribute_values(":complete", AttributeValue::Bool(end == codes.len()))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                );
            let mut actions = vec![update_action(progress.build().map_err(build_err)?)];
            for (i, code) in codes.iter().enumerate().take(end).skip(written) {
                actions.push(self.code_put(batch, i, code)?);
            }
            if plan_changed {
                actions.push(update_action(
                    Update::builder()
                        .table_name(self.table())
                        .set_key(Some(keys::item_key(batch_pk(batch_id), PLAN_SK)))
                        .update_expression("SET #codes = :codes")
                        .expression_attribute_names("#codes", "codes")
                        .expression_attribute_values(":codes", codes_attr(&codes))
                        .build()
                        .map_err(build_err)?,
                ));
            }
            // A chunk whose send stayed open is 503: a retry with the same
            // Idempotency-Key resumes from the batch's progress counter.
            let token = uuid::Uuid::new_v4().to_string();
            let settled = self
                .transact_settled(actions, &token, false, &SETTLE_BACKOFF)
                .await?;
            let reasons = match settled {
                Settled::Committed(_) => {
                    written = end;
                    plan_changed = false;
                    failures = 0;
                    continue;
                }
                // After an open send too: the progress counter (ALL_OLD) says
                // how far the batch got, whoever wrote it.
                Settled::Cancelled { reasons, .. } => reasons,
            };
            failures += 1;
            if failures > backoff.max_attempts {
                return Err(Error::StoreUnavailable(
                    "the batch could not be completed; retry with the same Idempotency-Key".into(),
                ));
            }
            match reasons {
                reasons if reasons.iter().all(CancelReason::is_transient_or_none) => {}
                reasons => {
                    let progress = reasons.first();
                    if progress.is_some_and(CancelReason::is_condition_failed) {
                        // A concurrent resumer advanced the batch: continue from
                        // where it stands, with the plan as it wrote it.
                        let stored = progress.and_then(|r| r.item.as_ref()).ok_or_else(|| {
                            corrupt("batch progress vanished while writing codes")
                        })?;
                        if attr::opt_s(stored, "fingerprint") != Some(fingerprint) {
                            return Err(Error::IdempotencyKeyMismatch);
                        }
                        written = usize::try_from(attr::get_i64(stored, "written")?)
                            .map_err(|_| corrupt("written"))?;
                        codes = self.batch_plan(batch_id).await?;
                        plan_changed = false;
                        continue;
                    }
                    let mut collided = false;
                    for (offset, reason) in reasons.iter().skip(1).take(end - written).enumerate() {
                        if reason.is_condition_failed() {
                            codes[written + offset] =
                                generate_code(batch.spec.prefix.as_ref(), &mut rng);
                            collided = true;
                        }
                    }
                    if !collided {
                        return Err(Error::Internal(format!(
                            "writing codes cancelled: {reasons:?}"
                        )));
                    }
                    plan_changed = true;
                    continue;
                }
            }
            tokio::time::sleep(backoff.delay(failures)).await;
        }
        Ok(codes)
    }

    /// The code stored under `key`, read strongly consistent.
    pub async fn redemption_code(&self, key: &CodeKey) -> Result<Option<RedemptionCode>, Error> {
        self.get_consistent(code_key_item(key))
            .await?
            .as_ref()
            .map(code_from_item)
            .transpose()
    }

    /// Enables or disables a code, with its audit entry in the same write.
    /// Returns the code as it is afterwards.
    pub async fn set_code_enabled(
        &self,
        key: &CodeKey,
        enabled: bool,
        actor: &Actor,
        clock: &Clock,
    ) -> Result<RedemptionCode, Error> {
        let before = self
            .redemption_code(key)
            .await?
            .ok_or(Error::CodeNotFound)?;
        let before = &before;
        Backoff::default()
            .run(
                move |_| async move {
                    let now = clock.now();
                    let audit = AuditEntry::new(
                        actor,
                        ADMIN_UPDATE_REDEMPTION_CODE,
                        None,
                        serde_json::json!({
                            "code": before.display,
                            "batch_id": before.batch_id,
                            "enabled_before": before.enabled,
                            "enabled": enabled,
                        }),
                        now,
                    );
                    let update = Update::builder()
                        .table_name(self.table())
                        .set_key(Some(code_key_item(key)))
                        .update_expression("SET #enabled = :enabled, updated_at = :now")
                        .condition_expression("attribute_exists(#pk)")
                        .expression_attribute_names("#pk", keys::PK)
                        .expression_attribute_names("#enabled", "enabled")
                        .expression_attribute_values(":enabled", AttributeValue::Bool(enabled))
                        .expression_attribute_values(":now", attr::s(sortable(now)))
                        .build()
                        .map_err(build_err)?;
                    let token = uuid::Uuid::new_v4().to_string();
                    let actions = vec![update_action(update), self.audit_put(&audit)?];
                    match self
                        .transact_settled(actions, &token, false, &SETTLE_BACKOFF)
                        .await?
                    {
                        Settled::Committed(_) => Ok(super::txn::Attempt::Done(())),
                        // Cancelled after an open send: ours if its audit entry is there.
                        Settled::Cancelled {
                            after_unknown: true,
                            ..
                        } if self.audit_written(&audit).await? => Ok(super::txn::Attempt::Done(())),
                        Settled::Cancelled { reasons, .. }
                            if reasons
                                .first()
                                .is_some_and(CancelReason::is_condition_failed) =>
                        {
                            Err(Error::CodeNotFound)
                        }
                        Settled::Cancelled { reasons, .. }
                            if reasons.iter().all(CancelReason::is_transient_or_none) =>
                        {
                            Ok(super::txn::Attempt::Retry)
                        }
                        Settled::Cancelled { reasons, .. } => Err(Error::Internal(format!(
                            "code update cancelled: {reasons:?}"
                        ))),
                    }
                },
                || Error::Conflict("the code is busy; retry the request".into()),
            )
            .await?;
        self.redemption_code(key)
            .await?
            .ok_or_else(|| Error::Internal("code vanished after its update".into()))
    }

    /// Codes newest batch first (generation order within a batch), optionally
    /// of one batch and/or one status.
    pub async fn list_codes(
        &self,
        filter: &CodeFilter,
        page: &PageRequest,
        now: DateTime<Utc>,
    ) -> Result<Page<RedemptionCode>, Error> {
        let status = filter.status.map(|s| status_filter(s, now));
        let codes_query = |batch: &BatchId| ListQuery {
            index: Some(keys::GSI1),
            partition: (keys::GSI1_PK, batch_codes_index_pk(batch)),
            sort_prefix: None,
            descending: false,
            filter: status.clone(),
            consistent: false,
        };
        if let Some(batch) = &filter.batch_id {
            return self
                .list_page(codes_query(batch), page, code_from_item)
                .await;
        }
        let limit = usize::try_from(page.limit).unwrap_or(1).max(1);
        let mut walk = Walk::from_cursor(page.cursor.as_ref())?;
        let mut items = Vec::new();
        // The batch (sort key, id) each item came from.
        let mut origins: Vec<(String, BatchId)> = Vec::new();
        let mut budget = MAX_LIST_QUERIES;
        // One item past the page, as in `list_page`.
        while items.len() <= limit && budget > 0 {
            walk = match walk {
                Walk::Within { sort, batch, from } => {
                    let (found, next) = self
                        .query_items(
                            &codes_query(&batch),
                            limit + 1 - items.len(),
                            from,
                            &mut budget,
                        )
                        .await?;
                    origins.extend(std::iter::repeat_n(
                        (sort.clone(), batch.clone()),
                        found.len(),
                    ));
                    items.extend(found);
                    match next {
                        Some(from) => Walk::Within {
                            sort,
                            batch,
                            from: Some(from),
                        },
                        None => Walk::After(sort),
                    }
                }
                passed => {
                    let before = match &passed {
                        Walk::After(sort) => Some(sort.as_str()),
                        _ => None,
                    };
                    budget -= 1;
                    match self.next_batch(before).await? {
                        Some((sort, batch)) => Walk::Within {
                            sort,
                            batch,
                            from: None,
                        },
                        None => return Ok(Page::new(parse_all(&items)?, None)),
                    }
                }
            };
        }
        if items.len() > limit {
            // Go on at the first item not answered: after the last one answered
            // in its batch, or at the start of the next batch.
            let (sort, batch) = origins[limit].clone();
            let from =
                (origins[limit - 1] == origins[limit]).then(|| item_key(&items[limit - 1], true));
            items.truncate(limit);
            walk = Walk::Within { sort, batch, from };
        }
        Ok(Page::new(parse_all(&items)?, walk.cursor()))
    }

    /// The batch after (older than) `before` in the batch index, newest first.
    async fn next_batch(&self, before: Option<&str>) -> Result<Option<(String, BatchId)>, Error> {
        let mut query = self
            .client()
            .query()
            .table_name(self.table())
            .index_name(keys::GSI1)
            .scan_index_forward(false)
            .limit(1)
            .expression_attribute_names("#p", keys::GSI1_PK)
            .expression_attribute_values(":p", attr::s(BATCHES_INDEX_PK));
        query = match before {
            Some(sort) => query
                .key_condition_expression("#p = :p AND #s < :before")
                .expression_attribute_names("#s", keys::GSI1_SK)
                .expression_attribute_values(":before", attr::s(sort)),
            None => query.key_condition_expression("#p = :p"),
        };
        let out = query.send().await.map_err(unavailable)?;
        out.items()
            .first()
            .map(|item| {
                Ok((
                    attr::get_s(item, keys::GSI1_SK)?.to_string(),
                    BatchId::parse(attr::get_s(item, "batch_id")?)?,
                ))
            })
            .transpose()
    }

    /// The redemptions of one code, by user id.
    pub async fn list_code_redemptions(
        &self,
        key: &CodeKey,
        page: &PageRequest,
    ) -> Result<Page<Redemption>, Error> {
        let q = ListQuery {
            index: None,
            partition: (keys::PK, code_pk(key)),
            sort_prefix: Some((keys::SK, REDEMPTION_SK_PREFIX.to_string())),
            descending: false,
            filter: None,
            consistent: true,
        };
        self.list_page(q, page, redemption_from_item).await
    }

    /// A user's redemptions, newest first (gsi1: eventually consistent).
    pub async fn list_user_redemptions(
        &self,
        user: &UserId,
        page: &PageRequest,
    ) -> Result<Page<Redemption>, Error> {
        let q = ListQuery {
            index: Some(keys::GSI1),
            partition: (keys::GSI1_PK, user_redemptions_index_pk(user)),
            sort_prefix: None,
            descending: true,
            filter: None,
            consistent: false,
        };
        self.list_page(q, page, redemption_from_item).await
    }

    /// A user's subscriptions, by plan id.
    pub async fn list_subscriptions(
        &self,
        user: &UserId,
        page: &PageRequest,
    ) -> Result<Page<Subscription>, Error> {
        let q = ListQuery {
            index: None,
            partition: (keys::PK, keys::user_pk(user.as_str())),
            sort_prefix: Some((keys::SK, SUB_SK_PREFIX.to_string())),
            descending: false,
            filter: None,
            consistent: true,
        };
        self.list_page(q, page, subscription_from_item).await
    }
}

fn parse_all(items: &[Item]) -> Result<Vec<RedemptionCode>, Error> {
    items.iter().map(code_from_item).collect()
}

// ---------------------------------------------------------------------------
// Redeeming
// ---------------------------------------------------------------------------

/// A redemption request of a signed-in user.
pub struct RedeemRequest<'a> {
    pub user: &'a UserId,
    pub code: &'a CodeKey,
    /// The Idempotency-Key and the request's fingerprint, if a key was sent.
    pub idempotency: Option<(&'a str, &'a Fingerprint)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedeemOutcome {
    Redeemed(Redemption),
    /// The key's first request already answered: its stored response.
    Replayed(StoredResponse),
}

/// What a redemption reads before planning its transaction.
struct Snapshot {
    code: Option<RedemptionCode>,
    /// The (code, user) record, if the user redeemed the code already.
    redeemed: Option<Item>,
    /// The user's redemptions so far (0 → this one `is_new`).
    count: i64,
}

/// The redemption as stored, if `record` was written by the request `request_id`.
fn own_redemption(record: &Item, request_id: &str) -> Result<Option<Redemption>, Error> {
    if attr::opt_s(record, REQUEST_ID) == Some(request_id) {
        redemption_from_item(record).map(Some)
    } else {
        Ok(None)
    }
}

/// Refusals that count as failed attempts (and write nothing else).
fn is_rejection(err: &Error) -> bool {
    matches!(
        err,
        Error::CodeNotFound
            | Error::CodeDisabled
            | Error::CodeExpired
            | Error::CodeExhausted
            | Error::AlreadyRedeemed
    )
}

/// Indexes of the redemption's own actions after the ledger actions.
struct ActionIndex {
    code: usize,
    record: usize,
    idempotency: Option<usize>,
}

impl DynamoStore {
    /// Redeems `code` for `user`:
    ///
    /// 1. a lease lock on (user, code), so a concurrent second attempt gets 409
    ///    `redemption_in_progress` (correctness does not depend on it);
    /// 2. the Idempotency-Key (replay, 422, 409 as the contract says);
    /// 3. the failed-attempt window (429 after 20 failures in an hour);
    /// 4. one `TransactWriteItems`: code `used_count + 1` while enabled,
    ///    unexpired and below `max_uses`; the (code, user) record if absent; the
    ///    ledger `redeem` entry with its account update; the subscription
    ///    extension; the user's redemption counter (`is_new`); the idempotency
    ///    completion.
    ///
    /// A rejection (404/403/410/409) writes only a failed-attempt count and
    /// gives the Idempotency-Key up again.
    pub async fn redeem(
        &self,
        request: RedeemRequest<'_>,
        clock: &Clock,
    ) -> Result<RedeemOutcome, Error> {
        let lock_name = format!("redeem:{}:{}", request.user, request.code);
        let Some(lock) = self
            .try_lock(&lock_name, REDEEM_LOCK_LEASE, clock.now())
            .await?
        else {
            // If the request holding the lock is this one again (same
            // Idempotency-Key), the key answers: 409 idempotency_key_in_use
            // while it runs, its replay once done, 422 for another body.
            if let Some((key, fingerprint)) = request.idempotency {
                let scope = redeem_key_scope(request.user);
                if let Some(Claim::Replay(stored)) = self
                    .peek_idempotency(&scope, key, fingerprint, clock.now())
                    .await?
                {
                    return Ok(RedeemOutcome::Replayed(stored));
                }
            }
            return Err(Error::RedemptionInProgress);
        };
        let result = self.redeem_unlocked(request, clock).await;
        self.unlock_quietly(&lock).await;
        result
    }

    async fn unlock_quietly(&self, lock: &LockLease) {
        if let Err(e) = self.release_lock(lock).await {
            tracing::warn!(error = %e, lock = %lock.name, "could not release a lock; it expires on its own");
        }
    }

    /// [`DynamoStore::redeem`] without the lease lock. The transaction's
    /// conditions alone keep every invariant (at most `max_uses`, once per user,
    /// one ledger entry); the lock only turns a concurrent second attempt of the
    /// same user into a clean 409 instead of a race those conditions settle.
    pub async fn redeem_unlocked(
        &self,
        request: RedeemRequest<'_>,
        clock: &Clock,
    ) -> Result<RedeemOutcome, Error> {
        let lease = match request.idempotency {
            None => None,
            Some((key, fingerprint)) => {
                let scope = redeem_key_scope(request.user);
                match self
                    .claim_idempotency(&scope, key, fingerprint, clock.now())
                    .await?
                {
                    Claim::Acquired(lease) => Some(lease),
                    Claim::Replay(stored) => return Ok(RedeemOutcome::Replayed(stored)),
                }
            }
        };
        let result = self.redeem_once(&request, lease.as_ref(), clock).await;
        if let Err(err) = &result {
            if is_rejection(err) {
                if let Err(e) = self.record_failed_attempt(request.user, clock.now()).await {
                    tracing::warn!(error = %e, "could not count a failed redemption attempt");
                }
            }
            if let Some(lease) = &lease {
                if let Err(e) = self.release_idempotency(lease).await {
                    tracing::warn!(error = %e, "could not release an idempotency key; it expires on its own");
                }
            }
        }
        result
    }

    async fn redeem_once(
        &self,
        request: &RedeemRequest<'_>,
        lease: Option<&Lease>,
        clock: &Clock,
    ) -> Result<RedeemOutcome, Error> {
        // Check, then act: a burst of concurrent failures can pass the check
        // together and overshoot by the burst size. The window brakes guessing;
        // it is not an invariant the store has to hold.
        let buckets = self.failed_attempts(request.user, clock.now()).await?;
        check_failed_attempts(&buckets, clock.now())?;
        // Stored in the record: a record carrying it is this request's own
        // commit (its answer lost), not an earlier redemption.
        let request_id = uuid::Uuid::new_v4().to_string();
        for attempt in 1..=REDEEM_BACKOFF.max_attempts {
            match self
                .redeem_attempt(request, &request_id, lease, clock)
                .await?
            {
                Some(outcome) => return Ok(outcome),
                None if attempt < REDEEM_BACKOFF.max_attempts => {
                    tokio::time::sleep(REDEEM_BACKOFF.delay(attempt)).await;
                }
                None => {}
            }
        }
        Err(Error::Conflict(
            "other redemptions of this user kept changing the same items; retry the request".into(),
        ))
    }

    /// One read-plan-commit round; `Ok(None)`: lost a race on the user's own
    /// items (counter, subscription), try again with fresh reads.
    async fn redeem_attempt(
        &self,
        request: &RedeemRequest<'_>,
        request_id: &str,
        lease: Option<&Lease>,
        clock: &Clock,
    ) -> Result<Option<RedeemOutcome>, Error> {
        let user = request.user;
        let snapshot = self.redeem_snapshot(user, request.code).await?;
        if let Some(record) = &snapshot.redeemed {
            if let Some(own) = own_redemption(record, request_id)? {
                return Ok(Some(RedeemOutcome::Redeemed(own)));
            }
        }
        // Refuse early from the reads: no transaction, nothing written. The
        // transaction's conditions below still decide every race.
        let code = snapshot.code.ok_or(Error::CodeNotFound)?;
        if snapshot.redeemed.is_some() {
            return Err(Error::AlreadyRedeemed);
        }
        code.check_redeemable(clock.now())?;
        let current_sub = match &code.grant.subscription {
            Some(grant) => self.subscription(user, &grant.plan_id).await?,
            None => None,
        };
        let mut index = None;
        let committed = self
            .commit_credits(user, &CREDIT_BACKOFF, |account| {
                let now = clock.now();
                let credits = code.grant.credits;
                let applied = if credits > 0 {
                    let change = Change::redeem(credits, "redemption", &code.display)
                        .with_reference(code.key.as_str())
                        .with_id(
                            uuid::Uuid::new_v5(
                                &uuid::Uuid::NAMESPACE_OID,
                                format!("spendguard:redeem:{}:{}", code.key, user).as_bytes(),
                            )
                            .to_string(),
                        );
                    Some(account.apply(&change, now)?)
                } else {
                    None
                };
                let subscription = match &code.grant.subscription {
                    None => None,
                    Some(grant) => {
                        let previous = current_sub.as_ref().map(|s| s.expires_at);
                        Some(SubscriptionChange {
                            plan_id: grant.plan_id.clone(),
                            unit: grant.unit,
                            quantity: grant.quantity,
                            previous_expires_at: previous,
                            expires_at: extend_subscription(
                                previous,
                                now,
                                grant.unit,
                                grant.quantity,
                            )?,
                        })
                    }
                };
                let redemption = Redemption {
                    code: code.display.clone(),
                    code_key: code.key.clone(),
                    batch_id: code.batch_id.clone(),
                    user_id: user.clone(),
                    credits_granted: credits,
                    balance_after: applied
                        .as_ref()
                        .map_or(account.available, |a| a.after.available),
                    transaction_id: applied.as_ref().map(|a| a.entry.id.clone()),
                    subscription,
                    is_new: snapshot.count == 0,
                    redeemed_at: now,
                };
                let mut extra = vec![
                    self.code_use_action(&code.key, now)?,
                    self.redemption_put(&redemption, request_id)?,
                    self.counter_action(user, snapshot.count, now)?,
                ];
                if let Some(change) = &redemption.subscription {
                    extra.push(self.subscription_action(
                        user,
                        change,
                        current_sub.as_ref(),
                        now,
                    )?);
                }
                let idempotency = match lease {
                    Some(lease) => {
                        let response = StoredResponse {
                            status: 201,
                            body: redemption.view().to_string(),
                        };
                        extra.push(self.idempotency_complete_action(lease, &response, now)?);
                        Some(extra.len() - 1)
                    }
                    None => None,
                };
                index = Some(ActionIndex {
                    code: 0,
                    record: 1,
                    idempotency,
                });
                Ok(CreditTxn {
                    applied,
                    extra,
                    output: redemption,
                })
            })
            .await;
        let reasons = match committed {
            Ok(redemption) => return Ok(Some(RedeemOutcome::Redeemed(redemption))),
            Err(CommitError::Refused(e)) | Err(CommitError::Store(e)) => return Err(e),
            Err(CommitError::ExtraFailed(reasons)) => reasons,
        };
        let index = index.ok_or_else(|| Error::Internal("redemption was never planned".into()))?;
        self.decode_cancellation(&reasons, &index, request_id, lease, clock.now())
            .await
    }

    /// Turns the failed conditions of the redemption's own actions into the
    /// contract's answer: this request's own record (an earlier send of it
    /// committed, its answer lost) is its success; then a lost idempotency
    /// lease (whoever holds the key answers); then the code's state from its
    /// `ALL_OLD` item and the record's existence; anything else was a race on
    /// the user's own items and is retried.
    async fn decode_cancellation(
        &self,
        reasons: &[CancelReason],
        index: &ActionIndex,
        request_id: &str,
        lease: Option<&Lease>,
        now: DateTime<Utc>,
    ) -> Result<Option<RedeemOutcome>, Error> {
        let failed = |i: usize| {
            reasons
                .get(i)
                .is_some_and(CancelReason::is_condition_failed)
        };
        if failed(index.record) {
            if let Some(record) = reasons[index.record].item.as_ref() {
                if let Some(own) = own_redemption(record, request_id)? {
                    return Ok(Some(RedeemOutcome::Redeemed(own)));
                }
            }
        }
        if let (Some(i), Some(lease)) = (index.idempotency, lease) {
            if failed(i) {
                // The key's in-progress lease expired and another request took it.
                return match self.idempotency_after_lost_lease(lease, now).await? {
                    Claim::Replay(stored) => Ok(Some(RedeemOutcome::Replayed(stored))),
                    Claim::Acquired(_) => Err(Error::IdempotencyKeyInUse),
                };
            }
        }
        if failed(index.code) {
            match reasons[index.code].item.as_ref() {
                None => return Err(Error::CodeNotFound),
                Some(item) => {
                    if failed(index.record) {
                        return Err(Error::AlreadyRedeemed);
                    }
                    code_from_item(item)?.check_redeemable(now)?;
                }
            }
        }
        if failed(index.record) {
            return Err(Error::AlreadyRedeemed);
        }
        Ok(None)
    }

    /// Code, (code, user) record and the user's counter in one strongly
    /// consistent `BatchGetItem`.
    async fn redeem_snapshot(&self, user: &UserId, code: &CodeKey) -> Result<Snapshot, Error> {
        let wanted = vec![
            code_key_item(code),
            keys::item_key(code_pk(code), format!("{REDEMPTION_SK_PREFIX}{user}")),
            keys::item_key(keys::user_pk(user.as_str()), STATS_SK),
        ];
        let mut pending = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(wanted))
                .consistent_read(true)
                .build()
                .map_err(build_err)?,
        );
        let mut found: Vec<Item> = Vec::new();
        let backoff = Backoff::default();
        let mut attempt = 0;
        while let Some(request) = pending.take() {
            attempt += 1;
            if attempt > backoff.max_attempts {
                return Err(Error::StoreUnavailable(
                    "reads of the redemption kept being throttled".into(),
                ));
            }
            if attempt > 1 {
                tokio::time::sleep(backoff.delay(attempt - 1)).await;
            }
            let out = self
                .client()
                .batch_get_item()
                .request_items(self.table(), request)
                .send()
                .await
                .map_err(unavailable)?;
            if let Some(items) = out.responses().and_then(|r| r.get(self.table())) {
                found.extend(items.iter().cloned());
            }
            pending = out
                .unprocessed_keys()
                .and_then(|u| u.get(self.table()))
                .filter(|k| !k.keys().is_empty())
                .cloned();
        }
        let mut snapshot = Snapshot {
            code: None,
            redeemed: None,
            count: 0,
        };
        for item in &found {
            match attr::get_s(item, keys::SK)? {
                CODE_SK => snapshot.code = Some(code_from_item(item)?),
                STATS_SK => snapshot.count = attr::get_i64(item, "redemption_count")?,
                sk if sk.starts_with(REDEMPTION_SK_PREFIX) => {
                    snapshot.redeemed = Some(item.clone())
                }
                _ => {}
            }
        }
        Ok(snapshot)
    }

    async fn subscription(
        &self,
        user: &UserId,
        plan: &PlanId,
    ) -> Result<Option<Subscription>, Error> {
        self.get_consistent(keys::item_key(keys::user_pk(user.as_str()), sub_sk(plan)))
            .await?
            .as_ref()
            .map(subscription_from_item)
            .transpose()
    }

    /// `used_count + 1`, only while the code is redeemable at `now`.
    fn code_use_action(
        &self,
        key: &CodeKey,
        now: DateTime<Utc>,
    ) -> Result<TransactWriteItem, Error> {
        Ok(update_action(
            Update::builder()
                .table_name(self.table())
                .set_key(Some(code_key_item(key)))
                .update_expression("SET #used = #used + :one, updated_at = :now")
                .condition_expression(
                    "attribute_exists(#pk) AND #enabled = :true AND #used < #max \
                     AND (attribute_not_exists(#exp) OR #exp > :now_ms)",
                )
                .expression_attribute_names("#pk", keys::PK)
                .expression_attribute_names("#used", "used_count")
                .expression_attribute_names("#max", "max_uses")
                .expression_attribute_names("#enabled", "enabled")
                .expression_attribute_names("#exp", "expires_ms")
                .expression_attribute_values(":one", attr::n(1))
                .expression_attribute_values(":true", AttributeValue::Bool(true))
                .expression_attribute_values(":now_ms", attr::n(now.timestamp_millis()))
                .expression_attribute_values(":now", attr::s(sortable(now)))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .build()
                .map_err(build_err)?,
        ))
    }

    /// The (code, user) record: at most one per code and user, ever. It names
    /// the request that wrote it, and a failed condition returns it (`ALL_OLD`),
    /// so a request recognises its own commit.
    fn redemption_put(
        &self,
        redemption: &Redemption,
        request_id: &str,
    ) -> Result<TransactWriteItem, Error> {
        let mut item = redemption_item(redemption);
        item.insert(REQUEST_ID.into(), attr::s(request_id));
        Ok(put_action(
            Put::builder()
                .table_name(self.table())
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", keys::PK)
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .build()
                .map_err(build_err)?,
        ))
    }

    /// The user's redemption counter moves from `read` to `read + 1`, so
    /// `is_new` (`read == 0`) holds exactly for the first committed redemption.
    fn counter_action(
        &self,
        user: &UserId,
        read: i64,
        now: DateTime<Utc>,
    ) -> Result<TransactWriteItem, Error> {
        let key = keys::item_key(keys::user_pk(user.as_str()), STATS_SK);
        let update = Update::builder()
            .table_name(self.table())
            .set_key(Some(key))
            .update_expression(
                "SET #count = :next, last_redeemed_at = :now, \
                 first_redeemed_at = if_not_exists(first_redeemed_at, :now)",
            )
            .expression_attribute_names("#count", "redemption_count")
            .expression_attribute_values(":next", attr::n(read + 1))
            .expression_attribute_values(":now", attr::s(sortable(now)));
        let update = if read == 0 {
            update
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", keys::PK)
        } else {
            update
                .condition_expression("#count = :read")
                .expression_attribute_values(":read", attr::n(read))
        };
        Ok(update_action(update.build().map_err(build_err)?))
    }

    /// Creates the subscription or moves its expiry, conditioned on the version read.
    fn subscription_action(
        &self,
        user: &UserId,
        change: &SubscriptionChange,
        current: Option<&Subscription>,
        now: DateTime<Utc>,
    ) -> Result<TransactWriteItem, Error> {
        let key = keys::item_key(keys::user_pk(user.as_str()), sub_sk(&change.plan_id));
        Ok(match current {
            None => {
                let mut item = key;
                item.insert("plan_id".into(), attr::s(change.plan_id.as_str()));
                item.insert("user_id".into(), attr::s(user.as_str()));
                item.insert("expires_at".into(), attr::s(sortable(change.expires_at)));
                item.insert(
                    "expires_ms".into(),
                    attr::n(change.expires_at.timestamp_millis()),
                );
                item.insert("version".into(), attr::n(1));
                item.insert("created_at".into(), attr::s(sortable(now)));
                item.insert("updated_at".into(), attr::s(sortable(now)));
                put_action(
                    Put::builder()
                        .table_name(self.table())
                        .set_item(Some(item))
                        .condition_expression("attribute_not_exists(#pk)")
                        .expression_attribute_names("#pk", keys::PK)
                        .build()
                        .map_err(build_err)?,
                )
            }
            Some(sub) => update_action(
                Update::builder()
                    .table_name(self.table())
                    .set_key(Some(key))
                    .update_expression(
                        "SET expires_at = :exp, expires_ms = :exp_ms, #version = :next, \
                         updated_at = :now",
                    )
                    .condition_expression("#version = :read")
                    .expression_attribute_names("#version", "version")
                    .expression_attribute_values(":exp", attr::s(sortable(change.expires_at)))
                    .expression_attribute_values(
                        ":exp_ms",
                        attr::n(change.expires_at.timestamp_millis()),
                    )
                    .expression_attribute_values(":next", attr::n(sub.version + 1))
                    .expression_attribute_values(":read", attr::n(sub.version))
                    .expression_attribute_values(":now", attr::s(sortable(now)))
                    .build()
                    .map_err(build_err)?,
            ),
        })
    }

    /// The user's failure buckets of the last hour, `(minute, count)`.
    pub async fn failed_attempts(
        &self,
        user: &UserId,
        now: DateTime<Utc>,
    ) -> Result<Vec<(i64, i64)>, Error> {
        let out = self
            .client()
            .query()
            .table_name(self.table())
            .consistent_read(true)
            .key_condition_expression("#pk = :pk AND #sk BETWEEN :from AND :to")
            .expression_attribute_names("#pk", keys::PK)
            .expression_attribute_names("#sk", keys::SK)
            .expression_attribute_values(":pk", attr::s(keys::user_pk(user.as_str())))
            .expression_attribute_values(":from", attr::s(fail_sk(failure_window_start(now))))
            .expression_attribute_values(":to", attr::s(fail_sk(failure_minute(now))))
            .send()
            .await
            .map_err(unavailable)?;
        out.items()
            .iter()
            .map(|item| {
                Ok((
                    attr::get_i64(item, "minute")?,
                    attr::get_i64(item, "count")?,
                ))
            })
            .collect()
    }

    /// Counts one failed redemption in the current minute's bucket. A plain
    /// `ADD`: a retry after an ambiguous failure may count twice, which only
    /// makes the limit stricter.
    pub async fn record_failed_attempt(
        &self,
        user: &UserId,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let minute = failure_minute(now);
        let ttl = (minute + 2 * crate::domain::redemption::FAILURE_WINDOW_MINUTES) * 60;
        self.client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(keys::item_key(
                keys::user_pk(user.as_str()),
                fail_sk(minute),
            )))
            .update_expression("ADD #count :one SET #minute = :minute, #ttl = :ttl")
            .expression_attribute_names("#count", "count")
            .expression_attribute_names("#minute", "minute")
            .expression_attribute_names("#ttl", keys::TTL)
            .expression_attribute_values(":one", attr::n(1))
            .expression_attribute_values(":minute", attr::n(minute))
            .expression_attribute_values(":ttl", attr::n(ttl))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_filters_name_only_what_they_use() {
        let now = Utc::now();
        let f = status_filter(CodeStatus::Disabled, now);
        assert_eq!(f.names.len(), 1);
        assert_eq!(f.values.len(), 1);
        let f = status_filter(CodeStatus::Active, now);
        assert_eq!(f.names.len(), 4);
        assert!(f.values.contains_key(":now_ms") && f.values.contains_key(":true"));
    }

    #[test]
    fn cursors_must_name_the_listed_partition() {
        let partition = (keys::PK, "CODE#ABC".to_string());
        let ok: BTreeMap<String, String> = [
            (keys::PK.to_string(), "CODE#ABC".to_string()),
            (keys::SK.to_string(), "REDEMPTION#bob".to_string()),
        ]
        .into();
        assert!(start_key(&ok, &partition, None).is_ok());
        let mut other = ok.clone();
        other.insert(keys::PK.into(), "USER#alice".into());
        assert!(start_key(&other, &partition, None).is_err());
        let mut extra = ok.clone();
        extra.insert("x".into(), "y".into());
        assert!(start_key(&extra, &partition, None).is_err());
    }

    #[test]
    fn walk_cursors_round_trip() {
        let within = Walk::Within {
            sort: "2026#b".into(),
            batch: BatchId::parse("b").unwrap(),
            from: Some(Item::from([
                (keys::PK.to_string(), attr::s("CODE#X")),
                (keys::SK.to_string(), attr::s(CODE_SK)),
                (keys::GSI1_PK.to_string(), attr::s("BATCH_CODES#b")),
                (keys::GSI1_SK.to_string(), attr::s("0001")),
            ])),
        };
        let cursor = within.cursor().unwrap();
        let back = Walk::from_cursor(Some(&Cursor::decode(&cursor.encode()).unwrap())).unwrap();
        assert!(matches!(back, Walk::Within { ref sort, from: Some(_), .. } if sort == "2026#b"));
        let after = Walk::After("s".into()).cursor().unwrap();
        assert!(matches!(Walk::from_cursor(Some(&after)).unwrap(), Walk::After(s) if s == "s"));
        let forged = Cursor(
            [
                (WALK_BATCH.to_string(), "s".to_string()),
                (WALK_BATCH_ID.to_string(), "b".to_string()),
                (keys::PK.to_string(), "CODE#X".to_string()),
                (keys::SK.to_string(), "CODE".to_string()),
                (keys::GSI1_PK.to_string(), "BATCH_CODES#other".to_string()),
            ]
            .into(),
        );
        assert!(Walk::from_cursor(Some(&forged)).is_err());
    }
}
