//! Credit accounts and their ledger in DynamoDB.
//!
//! Items (see [`keys`]): the account `USER#{user}` / `CREDITS` with `available`,
//! `total`, `used`, `seq` (last ledger seq) and `updated_at`; one ledger entry
//! per change at `USER#{user}` / `LEDGER#{seq:020}`.
//!
//! Concurrency is optimistic: every write is conditioned on the `seq` it was
//! planned against (or on the account not existing), and writes the next entry
//! with `attribute_not_exists`. A writer that loses the race gets the current
//! account back from the failed condition (`ALL_OLD`), re-plans against it and
//! retries with bounded, jittered backoff. No lock exists that could leak, and
//! the seq condition makes the chain gap-free in commit order.
//!
//! [`DynamoStore::commit_credits`] is the one write path: callers (admin
//! adjust, usage metering, redemption) plan a [`crate::domain::credits::Change`]
//! against the fresh account and add their own actions (audit entry,
//! idempotency completion, quota counters, code counters) to the same
//! `TransactWriteItems`.

use super::attr::{self, Item};
use super::idempotency::{Claim, Lease, StoredResponse};
use super::list::ListQuery;
use super::txn::{Backoff, CancelReason, Settled, SETTLE_BACKOFF};
use super::{keys, AuditStore, DynamoStore};
use crate::clock::Clock;
use crate::domain::audit::{Actor, AuditEntry, ADMIN_ADJUST_CREDITS};
use crate::domain::credits::{
    audit_details, Account, AdjustBy, AdjustMode, AdjustOutcome, AdjustPlan, AdjustRequest,
    Applied, EntryType, LedgerEntry,
};
use crate::domain::UserId;
use crate::error::Error;
use crate::paging::{Page, PageRequest};
use aws_sdk_dynamodb::types::{
    ConditionCheck, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use chrono::{DateTime, SecondsFormat, Utc};
use std::future::Future;
use std::time::Duration;

/// Retries for a contended account. Hot accounts (many concurrent usage debits)
/// lose many races, so this allows more attempts than the default while staying
/// bounded: at most ~30 × 250 ms of sleeping, inside a Lambda timeout.
pub const CREDIT_BACKOFF: Backoff = Backoff {
    max_attempts: 30,
    base: Duration::from_millis(5),
    cap: Duration::from_millis(250),
};

/// Reads of credit accounts and ledgers.
pub trait CreditStore {
    /// The account as it is now (strongly consistent); zeros if none exists.
    fn credit_account(&self, user: &UserId) -> impl Future<Output = Result<Account, Error>> + Send;

    /// Ledger entries newest first (by `seq`).
    fn credit_ledger(
        &self,
        user: &UserId,
        page: &PageRequest,
    ) -> impl Future<Output = Result<Page<LedgerEntry>, Error>> + Send;
}

/// What one attempt of [`DynamoStore::commit_credits`] writes, planned against
/// the account as just read.
pub struct CreditTxn<T> {
    /// The balance change; `None` writes no ledger entry (the account is then
    /// only condition-checked, so `extra` still commits against the state planned on).
    pub applied: Option<Applied>,
    /// The caller's own actions, committed in the same `TransactWriteItems`.
    pub extra: Vec<TransactWriteItem>,
    /// Returned to the caller once committed.
    pub output: T,
}

/// Why [`DynamoStore::commit_credits`] wrote nothing.
#[derive(Debug)]
pub enum CommitError {
    /// The plan refused (insufficient credits, overflow, or the caller's own rule).
    Refused(Error),
    /// One of the caller's `extra` actions failed its condition: one reason per
    /// extra action, in the order given (the item when it asked for `ALL_OLD`).
    ExtraFailed(Vec<CancelReason>),
    /// The store is unavailable, or the account stayed contended past the backoff.
    Store(Error),
}

impl From<CommitError> for Error {
    fn from(err: CommitError) -> Self {
        match err {
            CommitError::Refused(e) | CommitError::Store(e) => e,
            CommitError::ExtraFailed(reasons) => {
                Error::Conflict(format!("a condition of this write failed: {reasons:?}"))
            }
        }
    }
}

/// Outcome of an admin adjustment in mode `apply`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdjustResult {
    Applied(AdjustOutcome),
    /// Another request with the same Idempotency-Key completed it: its answer.
    Replayed(StoredResponse),
}

fn build_err(e: aws_sdk_dynamodb::error::BuildError) -> Error {
    Error::Internal(format!("credits request: {e}"))
}

fn account_key(user: &UserId) -> Item {
    keys::item_key(keys::user_pk(user.as_str()), keys::CREDITS_SK)
}

fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_time(item: &Item, name: &str) -> Result<DateTime<Utc>, Error> {
    DateTime::parse_from_rfc3339(attr::get_s(item, name)?)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| Error::Internal(format!("stored attribute {name}: {e}")))
}

fn get_u64(item: &Item, name: &str) -> Result<u64, Error> {
    attr::opt_n(item, name)
        .and_then(|t| t.parse::<u64>().ok())
        .ok_or_else(|| Error::Internal(format!("stored attribute {name}: not a sequence number")))
}

/// The account stored in `item` (also an `ALL_OLD` item of a failed condition).
pub(crate) fn account_from_item(user: &UserId, item: &Item) -> Result<Account, Error> {
    Ok(Account {
        user_id: user.clone(),
        available: attr::get_i64(item, "available")?,
        total: attr::get_i64(item, "total")?,
        used: attr::get_i64(item, "used")?,
        seq: get_u64(item, "seq")?,
        updated_at: Some(parse_time(item, "updated_at")?),
    })
}

fn ledger_item(entry: &LedgerEntry) -> Item {
    let mut item = Item::new();
    item.insert(
        keys::PK.into(),
        attr::s(keys::user_pk(entry.user_id.as_str())),
    );
    item.insert(keys::SK.into(), attr::s(keys::ledger_sk(entry.seq)));
    item.insert("id".into(), attr::s(&entry.id));
    item.insert("user_id".into(), attr::s(entry.user_id.as_str()));
    item.insert("seq".into(), attr::n(entry.seq));
    item.insert("type".into(), attr::s(entry.kind.as_str()));
    item.insert("amount".into(), attr::n(entry.amount));
    item.insert("balance_before".into(), attr::n(entry.balance_before));
    item.insert("balance_after".into(), attr::n(entry.balance_after));
    item.insert("category".into(), attr::s(&entry.category));
    item.insert("description".into(), attr::s(&entry.description));
    if let Some(reference) = &entry.reference {
        item.insert("reference".into(), attr::s(reference));
    }
    item.insert("created_at".into(), attr::s(timestamp(entry.created_at)));
    item
}

fn ledger_from_item(item: &Item) -> Result<LedgerEntry, Error> {
    let kind = attr::get_s(item, "type")?;
    Ok(LedgerEntry {
        id: attr::get_s(item, "id")?.to_string(),
        user_id: UserId::parse(attr::get_s(item, "user_id")?)?,
        seq: get_u64(item, "seq")?,
        kind: EntryType::parse(kind)
            .ok_or_else(|| Error::Internal(format!("unknown ledger entry type {kind:?}")))?,
        amount: attr::get_i64(item, "amount")?,
        balance_before: attr::get_i64(item, "balance_before")?,
        balance_after: attr::get_i64(item, "balance_after")?,
        category: attr::get_s(item, "category")?.to_string(),
        description: attr::get_s(item, "description")?.to_string(),
        reference: attr::opt_s(item, "reference").map(str::to_string),
        created_at: parse_time(item, "created_at")?,
    })
}

/// The condition "the account is still as it was read".
fn unchanged_condition(account: &Account) -> (&'static str, Option<u64>) {
    if account.exists() {
        ("#seq = :read_seq", Some(account.seq))
    } else {
        ("attribute_not_exists(#pk)", None)
    }
}

impl CreditStore for DynamoStore {
    async fn credit_account(&self, user: &UserId) -> Result<Account, Error> {
        match self.get_consistent(account_key(user)).await? {
            Some(item) => account_from_item(user, &item),
            None => Ok(Account::empty(user.clone())),
        }
    }

    async fn credit_ledger(
        &self,
        user: &UserId,
        page: &PageRequest,
    ) -> Result<Page<LedgerEntry>, Error> {
        let query = ListQuery {
            index: None,
            partition: (keys::PK, keys::user_pk(user.as_str())),
            sort_prefix: Some((keys::SK, keys::LEDGER_SK_PREFIX.to_string())),
            descending: true,
            filter: None,
            consistent: true,
        };
        self.list_page(query, page, ledger_from_item).await
    }
}

impl DynamoStore {
    /// The two actions of a balance change: the account update, conditioned on
    /// the account being as `applied.before` was read (same `seq`, or absent for
    /// a new account), and the ledger entry put (`attribute_not_exists`).
    /// Returns the account's current item on a failed condition (`ALL_OLD`).
    /// Add further actions to the same `TransactWriteItems` as needed.
    pub fn ledger_actions(&self, applied: &Applied) -> Result<Vec<TransactWriteItem>, Error> {
        self.ledger_actions_releasing(applied, 0)
    }

    /// [`Self::ledger_actions`] that also releases `release` credits held by a
    /// reservation (`held -= release`). Every balance write keeps `spendable`
    /// = `available - held`, the one attribute a credit hold's condition
    /// compares (`store::reservations`).
    pub fn ledger_actions_releasing(
        &self,
        applied: &Applied,
        release: i64,
    ) -> Result<Vec<TransactWriteItem>, Error> {
        let after = &applied.after;
        let now = after
            .updated_at
            .ok_or_else(|| Error::Internal("applied account without updated_at".into()))?;
        let (condition, read_seq) = unchanged_condition(&applied.before);
        let mut update = Update::builder()
            .table_name(self.table())
            .set_key(Some(account_key(&after.user_id)))
            .update_expression(
                "SET user_id = :uid, available = :available, #total = :total, used = :used, \
                 #seq = :seq, updated_at = :now, spendable = :free - if_not_exists(held, :zero)",
            )
            .condition_expression(condition)
            .expression_attribute_names("#seq", "seq")
            .expression_attribute_names("#total", "total")
            .expression_attribute_values(":uid", attr::s(after.user_id.as_str()))
            .expression_attribute_values(":available", attr::n(after.available))
            .expression_attribute_values(":total", attr::n(after.total))
            .expression_attribute_values(":used", attr::n(after.used))
            .expression_attribute_values(":seq", attr::n(after.seq))
            .expression_attribute_values(":now", attr::s(timestamp(now)))
            .expression_attribute_values(":free", attr::n(after.available.saturating_add(release)))
            .expression_attribute_values(":zero", attr::n(0))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if release != 0 {
            update = update
                .update_expression(
                    "SET user_id = :uid, available = :available, #total = :total, used = :used, \
                     #seq = :seq, updated_at = :now, spendable = :free - if_not_exists(held, :zero), \
                     held = if_not_exists(held, :zero) - :release",
                )
                .expression_attribute_values(":release", attr::n(release));
        }
        update = match read_seq {
            Some(seq) => update.expression_attribute_values(":read_seq", attr::n(seq)),
            None => update.expression_attribute_names("#pk", keys::PK),
        };
        let put = Put::builder()
            .table_name(self.table())
            .set_item(Some(ledger_item(&applied.entry)))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", keys::PK)
            .build()
            .map_err(build_err)?;
        Ok(vec![
            TransactWriteItem::builder()
                .update(update.build().map_err(build_err)?)
                .build(),
            TransactWriteItem::builder().put(put).build(),
        ])
    }

    /// A condition check that `account` is still as read (for writes that plan
    /// against the balance without changing it, e.g. an adjustment of 0).
    pub fn account_unchanged_check(&self, account: &Account) -> Result<TransactWriteItem, Error> {
        let (condition, read_seq) = unchanged_condition(account);
        let mut check = ConditionCheck::builder()
            .table_name(self.table())
            .set_key(Some(account_key(&account.user_id)))
            .condition_expression(condition)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        check = match read_seq {
            Some(seq) => check
                .expression_attribute_names("#seq", "seq")
                .expression_attribute_values(":read_seq", attr::n(seq)),
            None => check.expression_attribute_names("#pk", keys::PK),
        };
        Ok(TransactWriteItem::builder()
            .condition_check(check.build().map_err(build_err)?)
            .build())
    }

    /// Reads `user`'s account, lets `plan` decide what to write against it, and
    /// commits that in one `TransactWriteItems` (ledger actions first, then the
    /// caller's `extra`). When another writer changed the account first, `plan`
    /// runs again against the fresh account (a `target` is thus recomputed),
    /// after a jittered pause, at most `backoff.max_attempts` times.
    ///
    /// Only a definitive cancellation re-plans. A send whose outcome is open
    /// (5xx, timeout, throttled resends) is resent identically until it settles
    /// ([`DynamoStore::transact_settled`]), else 503 with the outcome unknown:
    /// re-planning then could apply the change twice (an adjustment without
    /// Idempotency-Key has no other fence).
    ///
    /// `plan` returning `Err` aborts with [`CommitError::Refused`]; nothing is
    /// written. If neither a change nor extra actions are planned, nothing is sent.
    pub async fn commit_credits<T, F>(
        &self,
        user: &UserId,
        backoff: &Backoff,
        mut plan: F,
    ) -> Result<T, CommitError>
    where
        F: FnMut(&Account) -> Result<CreditTxn<T>, Error> + Send,
        T: Send,
    {
        let mut account = self
            .credit_account(user)
            .await
            .map_err(CommitError::Store)?;
        for attempt in 1..=backoff.max_attempts {
            let txn = plan(&account).map_err(CommitError::Refused)?;
            if let Some(applied) = &txn.applied {
                if applied.before != account || applied.after.user_id != *user {
                    return Err(CommitError::Store(Error::Internal(
                        "a credit change must be applied to the account it was planned on".into(),
                    )));
                }
            }
            let (mut actions, head) = match &txn.applied {
                Some(applied) => (self.ledger_actions(applied).map_err(CommitError::Store)?, 2),
                None if txn.extra.is_empty() => return Ok(txn.output),
                None => (
                    vec![self
                        .account_unchanged_check(&account)
                        .map_err(CommitError::Store)?],
                    1,
                ),
            };
            actions.extend(txn.extra);
            // One token per plan: resends of this plan are identical, a
            // re-plan (only after a definitive cancellation) gets a new one.
            let token = uuid::Uuid::new_v4().to_string();
            let settled = self
                .transact_settled(actions, &token, false, &SETTLE_BACKOFF)
                .await
                .map_err(CommitError::Store)?;
            let (reasons, after_unknown) = match settled {
                Settled::Committed(_) => return Ok(txn.output),
                Settled::Cancelled {
                    reasons,
                    after_unknown,
                } => (reasons, after_unknown),
            };
            if after_unknown {
                // An earlier send of this plan may have committed and its twin
                // been refused by what it wrote: our ledger entry says so.
                if let Some(applied) = &txn.applied {
                    if self
                        .wrote_ledger_entry(applied)
                        .await
                        .map_err(CommitError::Store)?
                    {
                        return Ok(txn.output);
                    }
                }
            }
            let account_reason = reasons.first();
            let fresh = if account_reason.is_some_and(CancelReason::is_condition_failed) {
                // Lost the race: the failed condition reports the account now.
                account_reason.and_then(|r| r.item.clone())
            } else if reasons
                .iter()
                .skip(1)
                .take(head - 1)
                .any(CancelReason::is_condition_failed)
            {
                return Err(CommitError::Store(Error::Internal(format!(
                    "ledger entry {} of {user} exists although the account's seq is {}",
                    account.seq + 1,
                    account.seq
                ))));
            } else if reasons
                .iter()
                .skip(head)
                .any(CancelReason::is_condition_failed)
            {
                return Err(CommitError::ExtraFailed(
                    reasons.into_iter().skip(head).collect(),
                ));
            } else if reasons.iter().all(CancelReason::is_transient_or_none) {
                // Conflict with another transaction on one of the items.
                None
            } else {
                // e.g. ValidationError: retrying cannot help.
                return Err(CommitError::Store(Error::StoreUnavailable(format!(
                    "credit write cancelled: {reasons:?}"
                ))));
            };
            if attempt >= backoff.max_attempts {
                break;
            }
            account = match fresh {
                // First loss: retry at once against the state the condition reported
                // (one racing writer is the common case; no extra read).
                Some(item) if attempt == 1 => {
                    account_from_item(user, &item).map_err(CommitError::Store)?
                }
                // Repeated losses mean a hot account: pause, then read just before
                // writing, since a state read before the pause would be stale again.
                _ => {
                    tokio::time::sleep(backoff.delay(attempt)).await;
                    self.credit_account(user)
                        .await
                        .map_err(CommitError::Store)?
                }
            };
        }
        Err(CommitError::Store(Error::Conflict(format!(
            "the credit account of {user} is busy; retry the request"
        ))))
    }

    /// Whether the ledger entry `applied` would write is stored, exactly: an
    /// earlier send of that very plan committed.
    async fn wrote_ledger_entry(&self, applied: &Applied) -> Result<bool, Error> {
        let entry = &applied.entry;
        let key = keys::item_key(
            keys::user_pk(entry.user_id.as_str()),
            keys::ledger_sk(entry.seq),
        );
        Ok(self.get_consistent(key).await? == Some(ledger_item(entry)))
    }

    /// Reads the account and plans an adjustment against it (modes `dry_run`
    /// and the preview the CLI prints). Writes nothing.
    pub async fn preview_adjustment(
        &self,
        user: &UserId,
        by: AdjustBy,
        force: bool,
    ) -> Result<(Account, AdjustPlan), Error> {
        let account = self.credit_account(user).await?;
        let plan = AdjustPlan::new(&account, by, force)?;
        Ok((account, plan))
    }

    /// Applies an admin adjustment (mode `apply`): the one implementation behind
    /// the API and the admin CLI. Commits the ledger change (none for an
    /// adjustment of 0), the `ADMIN_ADJUST_CREDITS` audit entry and, with an
    /// idempotency `lease`, the stored response, in one `TransactWriteItems`.
    ///
    /// A refused deduction (409 `insufficient_credits`) writes only an audit
    /// entry with `success: false`, so attempts stay visible; other refusals
    /// write nothing. A held lease is released on any refusal or failure.
    pub async fn apply_adjustment(
        &self,
        user: &UserId,
        request: &AdjustRequest,
        actor: &Actor,
        clock: &Clock,
        lease: Option<&Lease>,
    ) -> Result<AdjustResult, Error> {
        let by = match (request.mode, request.by) {
            (AdjustMode::Apply, Some(by)) => by,
            _ => {
                return Err(Error::Internal(
                    "apply_adjustment needs mode apply with a target or delta".into(),
                ))
            }
        };
        let mut previous = 0;
        let committed = self
            .commit_credits(user, &CREDIT_BACKOFF, |account| {
                let now = clock.now();
                previous = account.available;
                let plan = AdjustPlan::new(account, by, request.force)?;
                let applied = plan
                    .change(&request.reason, request.force)
                    .map(|change| account.apply(&change, now))
                    .transpose()?;
                let transaction_id = applied.as_ref().map(|a| a.entry.id.clone());
                let audit = AuditEntry::new(
                    actor,
                    ADMIN_ADJUST_CREDITS,
                    Some(user),
                    audit_details(
                        request,
                        plan.previous,
                        Some(&plan),
                        transaction_id.as_deref(),
                        None,
                    ),
                    now,
                );
                let outcome = AdjustOutcome {
                    account: applied
                        .as_ref()
                        .map_or_else(|| account.clone(), |a| a.after.clone()),
                    plan,
                    force: request.force,
                    transaction_id,
                    audit_id: audit.id.clone(),
                };
                let mut extra = vec![self.audit_put(&audit)?];
                if let Some(lease) = lease {
                    let response = StoredResponse {
                        status: 200,
                        body: outcome.response().to_string(),
                    };
                    extra.push(self.idempotency_complete_action(lease, &response, now)?);
                }
                Ok(CreditTxn {
                    applied,
                    extra,
                    output: outcome,
                })
            })
            .await;
        let err = match committed {
            Ok(outcome) => return Ok(AdjustResult::Applied(outcome)),
            Err(CommitError::ExtraFailed(_)) => {
                // The audit put cannot collide (fresh id): the lease was lost to
                // a takeover, and whoever holds the key now decides the answer.
                return match lease {
                    Some(lease) => match self
                        .idempotency_after_lost_lease(lease, clock.now())
                        .await?
                    {
                        Claim::Replay(stored) => Ok(AdjustResult::Replayed(stored)),
                        Claim::Acquired(_) => Err(Error::IdempotencyKeyInUse),
                    },
                    None => Err(Error::Internal("audit entry id collision".into())),
                };
            }
            Err(CommitError::Refused(err)) | Err(CommitError::Store(err)) => err,
        };
        if matches!(err, Error::InsufficientCredits(_)) {
            let entry = AuditEntry::new(
                actor,
                ADMIN_ADJUST_CREDITS,
                Some(user),
                audit_details(request, previous, None, None, Some(&err)),
                clock.now(),
            )
            .failed();
            if let Err(e) = self.record_audit(&entry).await {
                tracing::warn!(error = %e, "could not record the refused adjustment");
            }
        }
        if let Some(lease) = lease {
            if let Err(e) = self.release_idempotency(lease).await {
                tracing::warn!(error = %e, "could not release an idempotency key; it expires on its own");
            }
        }
        Err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake;
    use super::*;
    use crate::domain::credits::Change;

    /// `TransactionInProgressException` answers a resend (same token) of a
    /// transaction DynamoDB is still executing, e.g. after a timeout: the first
    /// send may yet commit. Re-planning on a fresh read then could apply the
    /// change twice (an adjustment without Idempotency-Key has no other fence);
    /// the same request with the same token must be resent until it settles.
    #[tokio::test]
    async fn a_transaction_in_progress_is_resent_unchanged_not_replanned() {
        let account_after_first = r#"{"Item":{"pk":{"S":"USER#alice"},"sk":{"S":"CREDITS"},
            "available":{"N":"5"},"total":{"N":"5"},"used":{"N":"0"},"seq":{"N":"1"},
            "updated_at":{"S":"2026-01-01T00:00:00.000000Z"}}}"#;
        let (url, log) = fake::serve(Box::new(move |op, nth| match (op, nth) {
            ("GetItem", 0) => (200, "{}".into()),
            // Had the first send committed meanwhile, a fresh read shows it.
            ("GetItem", _) => (200, account_after_first.into()),
            // The SDK resends on its own (as throttling) and gives up after its
            // attempts: the error reaches the store while the outcome is open.
            ("TransactWriteItems", n) if n < 3 => {
                (400, fake::error("TransactionInProgressException"))
            }
            ("TransactWriteItems", _) => (200, "{}".into()),
            _ => (400, fake::error("ValidationException")),
        }));
        let store = DynamoStore::for_local_endpoint(&url, "t");
        let user = UserId::parse("alice").unwrap();
        let backoff = Backoff {
            max_attempts: 5,
            base: Duration::from_millis(1),
            cap: Duration::from_millis(2),
        };
        let now = Utc::now();
        let granted = store
            .commit_credits(&user, &backoff, |account| {
                let applied = account.apply(&Change::grant(5, "c", "d"), now)?;
                Ok(CreditTxn {
                    output: applied.after.available,
                    applied: Some(applied),
                    extra: Vec::new(),
                })
            })
            .await
            .unwrap();
        assert_eq!(granted, 5);
        let log = log.lock().unwrap().clone();
        let ops: Vec<&str> = log.iter().map(|s| s.operation.as_str()).collect();
        assert_eq!(
            ops.iter().filter(|op| **op == "GetItem").count(),
            1,
            "no re-read and re-plan while the first send may still commit: {ops:?}"
        );
        assert_eq!(ops.len(), 5, "{ops:?}");
        let first = &log[1].body;
        for sent in &log[2..] {
            assert_eq!(&sent.body, first, "the very same request, token included");
        }
        let token = first["ClientRequestToken"].as_str().unwrap_or_default();
        assert!(!token.is_empty() && token.len() <= 36, "{token:?}");
    }

    #[tokio::test]
    async fn a_transaction_that_never_settles_is_reported_not_replanned() {
        let (url, log) = fake::serve(Box::new(|op, _| match op {
            "GetItem" => (200, "{}".into()),
            _ => (400, fake::error("TransactionInProgressException")),
        }));
        let store = DynamoStore::for_local_endpoint(&url, "t");
        let user = UserId::parse("alice").unwrap();
        let backoff = Backoff {
            max_attempts: 1,
            base: Duration::from_millis(1),
            cap: Duration::from_millis(2),
        };
        let now = Utc::now();
        let err = store
            .commit_credits(&user, &backoff, |account| {
                Ok(CreditTxn {
                    applied: Some(account.apply(&Change::grant(5, "c", "d"), now)?),
                    extra: Vec::new(),
                    output: (),
                })
            })
            .await
            .unwrap_err();
        assert_eq!(Error::from(err).code(), "store_unavailable");
        let log = log.lock().unwrap();
        assert_eq!(log.iter().filter(|s| s.operation == "GetItem").count(), 1);
    }
}
