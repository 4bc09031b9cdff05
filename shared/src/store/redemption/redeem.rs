//! Redeeming a code: one read, one `TransactWriteItems`.

use super::items::*;
use super::*;

/// The Idempotency-Key space of a user's redemptions.
fn redeem_key_scope(user: &UserId) -> String {
    format!("redeem:{user}")
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

/// What a redemption reads before planning its transaction.
pub(super) struct Snapshot {
    code: Option<RedemptionCode>,
    /// The (code, user) record, if the user redeemed the code already.
    redeemed: Option<Item>,
    /// The user's redemptions so far (0 → this one `is_new`).
    count: i64,
}

/// The redemption as stored, if `record` was written by the request `request_id`.
pub(super) fn own_redemption(record: &Item, request_id: &str) -> Result<Option<Redemption>, Error> {
    if attr::opt_s(record, REQUEST_ID) == Some(request_id) {
        redemption_from_item(record).map(Some)
    } else {
        Ok(None)
    }
}

/// Refusals that count as failed attempts (and write nothing else).
pub(super) fn is_rejection(err: &Error) -> bool {
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
pub(super) struct ActionIndex {
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
                return match self.idempotency_after_lost_lease(lease, None, now).await? {
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
}
