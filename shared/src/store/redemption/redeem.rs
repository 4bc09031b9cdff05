//! Redeeming a code: one read, one `TransactWriteItems` (a subscription code
//! also reads its subscription). No lock and no claim ahead of the write: the
//! transaction's own conditions are the lease.

use super::items::*;
use super::limiter::{failure_buckets, failures_key, FAILURES_SK};
use super::*;
use crate::domain::credits::Account;
use crate::store::credits::{account_from_item, account_key, CONTENDED_BACKOFF, REPLAN_BUDGET};
use crate::store::lock;

/// The Idempotency-Key space of a user's redemptions.
fn redeem_key_scope(user: &UserId) -> String {
    format!("redeem:{user}")
}

/// The lease lock's name for (user, code).
fn lock_name(user: &UserId, code: &CodeKey) -> String {
    format!("redeem:{user}:{code}")
}

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

/// Everything a redemption plans against, read in one `BatchGetItem`.
struct Snapshot {
    code: Option<RedemptionCode>,
    /// The (code, user) record, if the user redeemed the code already.
    redeemed: Option<Item>,
    /// The user's redemptions so far (0 → this one `is_new`).
    count: i64,
    account: Account,
    /// The user's failed attempts, `(minute, count)`.
    failures: Vec<(i64, i64)>,
    /// The Idempotency-Key's record.
    key_record: Option<Item>,
    /// A lease lock on (user, code), if one was read.
    lock: Option<Item>,
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

/// What the reads alone answer, before the code's own refusals: this
/// request's own earlier commit; the Idempotency-Key's record (replay, 422,
/// 409); a live lease lock (409 `redemption_in_progress`); the failure
/// window (429).
fn answer_from_reads(
    snapshot: &Snapshot,
    request_id: &str,
    lease: Option<&Lease>,
    now: DateTime<Utc>,
) -> Result<Option<RedeemOutcome>, Error> {
    if let Some(record) = &snapshot.redeemed {
        if let Some(own) = own_redemption(record, request_id)? {
            return Ok(Some(RedeemOutcome::Redeemed(own)));
        }
    }
    if let Some(lease) = lease {
        match lease.answer(snapshot.key_record.as_ref(), now)? {
            Some(Claim::Replay(stored)) => return Ok(Some(RedeemOutcome::Replayed(stored))),
            Some(Claim::Acquired(_)) => return Err(Error::IdempotencyKeyInUse),
            None => {}
        }
    }
    if snapshot
        .lock
        .as_ref()
        .is_some_and(|item| lock::is_held(item, now))
    {
        return Err(Error::RedemptionInProgress);
    }
    check_failed_attempts(&snapshot.failures, now)?;
    Ok(None)
}

/// Indexes of the redemption's own actions after the ledger actions.
struct ActionIndex {
    code: usize,
    record: usize,
    idempotency: Option<usize>,
}

/// One redemption's plan against one account state.
struct RedeemPlan<'a> {
    user: &'a UserId,
    code: &'a RedemptionCode,
    count: i64,
    current_sub: Option<&'a Subscription>,
    lease: Option<&'a Lease>,
    request_id: &'a str,
}

impl DynamoStore {
    /// Redeems `code` for `user`, in one read and one write:
    ///
    /// 1. one strongly consistent `BatchGetItem`: the code, the (code, user)
    ///    record, the user's counter, account and failure window, the
    ///    Idempotency-Key's record and the (user, code) lease lock. A completed
    ///    key answers its replay (422 for another body, 409 while an older
    ///    claim is live); a live lease lock 409 `redemption_in_progress`; 20
    ///    failures in the last hour 429; a code's state that refuses answers
    ///    here, nothing written but the failure count;
    /// 2. for a subscription code, the subscription's `GetItem`;
    /// 3. one `TransactWriteItems`: code `used_count + 1` while enabled,
    ///    unexpired and below `max_uses`; the (code, user) record if absent;
    ///    the ledger `redeem` entry with its account update; the subscription
    ///    extension; the user's redemption counter (`is_new`); the completed
    ///    idempotency record, conditioned on the key being free.
    ///
    /// Two concurrent redemptions of one user cannot both commit against the
    /// same read (the counter's condition), and of one code at most once (the
    /// record's). A lost race re-plans from a fresh read, bounded; a rejection
    /// (404/403/410/409) adds one write, the failure count. This version takes
    /// no lease lock (nothing blocks a user after a crash); it still honours
    /// one another holder took (an older version mid-rollout).
    pub async fn redeem(
        &self,
        request: RedeemRequest<'_>,
        clock: &Clock,
    ) -> Result<RedeemOutcome, Error> {
        self.redeem_with(request, clock, true).await
    }

    /// [`DynamoStore::redeem`] ignoring lease locks: the transaction's
    /// conditions alone keep every invariant (at most `max_uses`, once per
    /// user, one ledger entry).
    pub async fn redeem_unlocked(
        &self,
        request: RedeemRequest<'_>,
        clock: &Clock,
    ) -> Result<RedeemOutcome, Error> {
        self.redeem_with(request, clock, false).await
    }

    async fn redeem_with(
        &self,
        request: RedeemRequest<'_>,
        clock: &Clock,
        honour_lock: bool,
    ) -> Result<RedeemOutcome, Error> {
        let lease = request
            .idempotency
            .map(|(key, fingerprint)| {
                Lease::unclaimed(&redeem_key_scope(request.user), key, fingerprint)
            })
            .transpose()?;
        // Stored in the record: a record carrying it is this request's own
        // commit (its answer lost), not an earlier redemption.
        let request_id = uuid::Uuid::new_v4().to_string();
        let started = std::time::Instant::now();
        let mut replans = 0;
        let result = loop {
            let snapshot = self
                .redeem_snapshot(&request, lease.as_ref(), honour_lock)
                .await?;
            let attempt = self
                .redeem_attempt(
                    &request,
                    &snapshot,
                    &request_id,
                    lease.as_ref(),
                    clock,
                    started,
                )
                .await;
            match attempt {
                Ok(Some(outcome)) => break Ok(outcome),
                Ok(None)
                    if replans + 1 < REDEEM_BACKOFF.max_attempts
                        && started.elapsed() < REPLAN_BUDGET =>
                {
                    replans += 1;
                    tokio::time::sleep(REDEEM_BACKOFF.delay(replans)).await;
                }
                Ok(None) => {
                    break Err(Error::Conflict(
                        "other redemptions of this user kept changing the same items; \
                         retry the request"
                            .into(),
                    ))
                }
                Err(err) => {
                    if is_rejection(&err) {
                        let counted = self
                            .record_failed_attempt(request.user, &snapshot.failures, clock.now())
                            .await;
                        if let Err(e) = counted {
                            tracing::warn!(error = %e, "could not count a failed redemption attempt");
                        }
                    }
                    break Err(err);
                }
            }
        };
        self.stats().record_replans(u64::from(replans));
        result
    }

    /// One plan-commit round against `snapshot`; `Ok(None)`: lost a race on
    /// the user's own items (counter, subscription), read again and re-plan.
    async fn redeem_attempt(
        &self,
        request: &RedeemRequest<'_>,
        snapshot: &Snapshot,
        request_id: &str,
        lease: Option<&Lease>,
        clock: &Clock,
        began: std::time::Instant,
    ) -> Result<Option<RedeemOutcome>, Error> {
        if let Some(answer) = answer_from_reads(snapshot, request_id, lease, clock.now())? {
            return Ok(Some(answer));
        }
        // Refuse early from the reads: no transaction. The transaction's
        // conditions below still decide every race.
        let code = snapshot.code.as_ref().ok_or(Error::CodeNotFound)?;
        if snapshot.redeemed.is_some() {
            return Err(Error::AlreadyRedeemed);
        }
        code.check_redeemable(clock.now())?;
        let current_sub = match &code.grant.subscription {
            Some(grant) => self.subscription(request.user, &grant.plan_id).await?,
            None => None,
        };
        let plan = RedeemPlan {
            user: request.user,
            code,
            count: snapshot.count,
            current_sub: current_sub.as_ref(),
            lease,
            request_id,
        };
        let mut index = None;
        let committed = self
            .commit_credits_from(
                request.user,
                Some(snapshot.account.clone()),
                began,
                &CONTENDED_BACKOFF,
                |account| {
                    let (txn, planned) = self.plan_redemption(&plan, account, clock.now())?;
                    index = Some(planned);
                    Ok(txn)
                },
            )
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

    /// The redemption's transaction against `account`: its ledger change and
    /// its own actions, with where they sit.
    fn plan_redemption(
        &self,
        plan: &RedeemPlan<'_>,
        account: &Account,
        now: DateTime<Utc>,
    ) -> Result<(CreditTxn<Redemption>, ActionIndex), Error> {
        let (code, user) = (plan.code, plan.user);
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
                let previous = plan.current_sub.map(|s| s.expires_at);
                Some(SubscriptionChange {
                    plan_id: grant.plan_id.clone(),
                    unit: grant.unit,
                    quantity: grant.quantity,
                    previous_expires_at: previous,
                    expires_at: extend_subscription(previous, now, grant.unit, grant.quantity)?,
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
            is_new: plan.count == 0,
            redeemed_at: now,
        };
        let mut extra = vec![
            self.code_use_action(&code.key, now)?,
            self.redemption_put(&redemption, plan.request_id)?,
            self.counter_action(user, plan.count, now)?,
        ];
        if let Some(change) = &redemption.subscription {
            extra.push(self.subscription_action(user, change, plan.current_sub, now)?);
        }
        let idempotency = match plan.lease {
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
        let index = ActionIndex {
            code: 0,
            record: 1,
            idempotency,
        };
        Ok((
            CreditTxn {
                applied,
                extra,
                output: redemption,
            },
            index,
        ))
    }

    /// Turns the failed conditions of the redemption's own actions into the
    /// contract's answer: this request's own record (an earlier send of it
    /// committed, its answer lost) is its success; then the key taken by
    /// another request (its record, returned by the failed condition,
    /// answers); then the code's state from its `ALL_OLD` item and the
    /// record's existence; anything else was a race on the user's own items
    /// and is retried.
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
                let record = reasons[i].item.as_ref();
                return match self
                    .idempotency_after_lost_lease(lease, record, now)
                    .await?
                {
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

    /// Everything the redemption plans against, in one strongly consistent
    /// `BatchGetItem`.
    async fn redeem_snapshot(
        &self,
        request: &RedeemRequest<'_>,
        lease: Option<&Lease>,
        honour_lock: bool,
    ) -> Result<Snapshot, Error> {
        let (user, code) = (request.user, request.code);
        let mut wanted = vec![
            code_key_item(code),
            keys::item_key(code_pk(code), format!("{REDEMPTION_SK_PREFIX}{user}")),
            keys::item_key(keys::user_pk(user.as_str()), STATS_SK),
            account_key(user),
            failures_key(user),
        ];
        wanted.extend(lease.map(Lease::record_key));
        if honour_lock {
            wanted.push(lock::lock_key(&lock_name(user, code)));
        }
        let mut snapshot = Snapshot {
            code: None,
            redeemed: None,
            count: 0,
            account: Account::empty(user.clone()),
            failures: Vec::new(),
            key_record: None,
            lock: None,
        };
        for item in self.get_many_consistent(wanted).await? {
            if lease.is_some_and(|lease| lease.is_record(&item)) {
                snapshot.key_record = Some(item);
                continue;
            }
            match attr::get_s(&item, keys::SK)? {
                CODE_SK => snapshot.code = Some(code_from_item(&item)?),
                STATS_SK => snapshot.count = attr::get_i64(&item, "redemption_count")?,
                keys::CREDITS_SK => snapshot.account = account_from_item(user, &item)?,
                FAILURES_SK => snapshot.failures = failure_buckets(Some(&item)),
                "LOCK" => snapshot.lock = Some(item),
                sk if sk.starts_with(REDEMPTION_SK_PREFIX) => snapshot.redeemed = Some(item),
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
                .expression_attribute_values(":now", attr::s(timestamp(now)))
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
        self.put_once_action(item)
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
            .expression_attribute_values(":now", attr::s(timestamp(now)));
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
                item.insert("expires_at".into(), attr::s(timestamp(change.expires_at)));
                item.insert(
                    "expires_ms".into(),
                    attr::n(change.expires_at.timestamp_millis()),
                );
                item.insert("version".into(), attr::n(1));
                item.insert("created_at".into(), attr::s(timestamp(now)));
                item.insert("updated_at".into(), attr::s(timestamp(now)));
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
                    .expression_attribute_values(":exp", attr::s(timestamp(change.expires_at)))
                    .expression_attribute_values(
                        ":exp_ms",
                        attr::n(change.expires_at.timestamp_millis()),
                    )
                    .expression_attribute_values(":next", attr::n(sub.version + 1))
                    .expression_attribute_values(":read", attr::n(sub.version))
                    .expression_attribute_values(":now", attr::s(timestamp(now)))
                    .build()
                    .map_err(build_err)?,
            ),
        })
    }
}
