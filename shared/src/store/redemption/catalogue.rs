//! Batches and codes: creation, the admin lists, enabling and disabling.

use super::items::*;
use super::*;

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

/// `spec.count` fresh codes, distinct within the batch (one transaction may
/// not touch an item twice).
fn draw_codes(spec: &BatchSpec, rng: &mut impl rand::RngCore) -> Vec<GeneratedCode> {
    let mut seen = HashSet::new();
    let mut codes: Vec<GeneratedCode> = Vec::with_capacity(spec.count);
    while codes.len() < spec.count {
        let code = generate_code(spec.prefix.as_ref(), rng);
        if seen.insert(code.key.clone()) {
            codes.push(code);
        }
    }
    codes
}

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
        let mut codes = draw_codes(&spec, &mut rng);
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
            let actions = self.first_chunk(&batch, &codes, first, fingerprint, &audit)?;
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

    /// The first transaction of a batch: the batch (`attribute_not_exists`,
    /// `ALL_OLD`: a retry meets the stored one), its plan, the audit entry and
    /// the first `first` codes.
    fn first_chunk(
        &self,
        batch: &Batch,
        codes: &[GeneratedCode],
        first: usize,
        fingerprint: &str,
        audit: &AuditEntry,
    ) -> Result<Vec<TransactWriteItem>, Error> {
        let mut actions = vec![
            self.put_once_action(batch_item(batch, fingerprint, first))?,
            put_action(
                Put::builder()
                    .table_name(self.table())
                    .set_item(Some(plan_item(&batch.batch_id, codes)))
                    .build()
                    .map_err(build_err)?,
            ),
            self.audit_put(audit)?,
        ];
        for (i, code) in codes.iter().enumerate().take(first) {
            actions.push(self.code_put(batch, i, code)?);
        }
        Ok(actions)
    }

    fn code_put(
        &self,
        batch: &Batch,
        index: usize,
        code: &GeneratedCode,
    ) -> Result<TransactWriteItem, Error> {
        self.put_once_action(code_item(batch, index, code))
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

    /// A chunk after the first: codes `written..end`, the batch's progress
    /// moved from `written` (its condition, `ALL_OLD`), and the plan rewritten
    /// if a collision changed it.
    fn next_chunk(
        &self,
        batch_id: &BatchId,
        batch: &Batch,
        codes: &[GeneratedCode],
        (written, end): (usize, usize),
        fingerprint: &str,
        plan_changed: bool,
    ) -> Result<Vec<TransactWriteItem>, Error> {
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
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
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
                    .expression_attribute_values(":codes", codes_attr(codes))
                    .build()
                    .map_err(build_err)?,
            ));
        }
        Ok(actions)
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
            let actions = self.next_chunk(
                batch_id,
                batch,
                &codes,
                (written, end),
                fingerprint,
                plan_changed,
            )?;
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
                        .expression_attribute_values(":now", attr::s(timestamp(now)))
                        .build()
                        .map_err(build_err)?;
                    let token = uuid::Uuid::new_v4().to_string();
                    let actions = vec![update_action(update), self.audit_put(&audit)?];
                    match self
                        .transact_settled(actions, &token, false, &SETTLE_BACKOFF)
                        .await?
                    {
                        Settled::Committed(_) => Ok(crate::store::txn::Attempt::Done(())),
                        // Cancelled after an open send: ours if its audit entry is there.
                        Settled::Cancelled {
                            after_unknown: true,
                            ..
                        } if self.audit_written(&audit).await? => {
                            Ok(crate::store::txn::Attempt::Done(()))
                        }
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
                            Ok(crate::store::txn::Attempt::Retry)
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
