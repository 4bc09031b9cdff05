//! Quota items (runtime layer) and quota defaults items (configuration layer).
//!
//! Quota item: pk `USER#{user}`, sk `QUOTA#{platform}`; per window `w` in
//! `daily`, `weekly`, `monthly`:
//! - `{w}_limit` N: the cap in USD; absent = unlimited, `0` = disabled;
//! - `{w}_limit_set` BOOL: present (true) once an admin replace or an init
//!   decided the limit, even as unlimited; init fills only windows without it,
//!   so an admin's value survives a later init;
//! - `{w}_usage` N: USD used in the window that starts at `{w}_start`;
//! - `{w}_start` N: epoch seconds of that window's start.
//!
//! Usage metering writes `{w}_usage` / `{w}_start` only. Limit writes touch
//! `{w}_limit` / `{w}_limit_set` only and are conditioned on them being as read,
//! so concurrent admin writes never lose an update and the audit's "before" is
//! exact. A reset is conditioned on the usage it zeroes.
//!
//! Defaults item: pk `CONFIG`, sk `QUOTA_DEFAULTS#system` or
//! `QUOTA_DEFAULTS#source#{source}`:
//! - `limits` M: `{platform: M {daily_limit: N, weekly_limit: N, monthly_limit: N}}`,
//!   an absent window key meaning `null` (N keeps money exact); a cleared
//!   source default is stored as an empty map and reads as `null`;
//! - `version` N: bumped by every replace, which is conditioned on it;
//! - `updated_at` S, `updated_by` S.
//!
//! Every admin write commits in one `TransactWriteItems` with its audit entry.

use super::attr::{self, Item};
use super::txn::{Attempt, Backoff, Settled, SETTLE_BACKOFF};
use super::{keys, DynamoStore};
use crate::domain::audit::{self, Actor, AuditEntry};
use crate::domain::quota::{
    apply_changes, limit_change_details, plan_init, plan_replace, plan_reset, reset_details,
    DefaultsScope, DefaultsSet, Limits, QuotaDefaults, QuotaRecord, RecordChange, WindowState,
};
use crate::domain::{AuthSource, Platform, Platforms, Usd, UserId, WindowKind};
use crate::error::Error;
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Put, TransactWriteItem, Update};
use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;

/// DynamoDB's limit of actions in one `TransactWriteItems`.
const MAX_TRANSACT_ITEMS: usize = 100;

pub trait QuotaStore {
    /// Every quota record of a user (one Query).
    fn user_quotas(
        &self,
        user: &UserId,
    ) -> impl Future<Output = Result<Vec<QuotaRecord>, Error>> + Send;

    /// One user's record on one platform with exactly one GetItem (the check's
    /// request budget); unlimited with zero usage if there is none.
    fn quota_record(
        &self,
        user: &UserId,
        platform: &Platform,
    ) -> impl Future<Output = Result<QuotaRecord, Error>> + Send;

    /// The system default and every source default (one Query).
    fn quota_defaults(
        &self,
        platforms: &Platforms,
    ) -> impl Future<Output = Result<DefaultsSet, Error>> + Send;

    /// Whole-replaces one defaults item; an empty source default reads as none.
    fn replace_quota_defaults(
        &self,
        scope: DefaultsScope,
        defaults: &QuotaDefaults,
        platforms: &Platforms,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Fills undecided limits from the defaults of `source`; returns the records after.
    fn init_user_quotas(
        &self,
        user: &UserId,
        source: AuthSource,
        platforms: &Platforms,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<QuotaRecord>, Error>> + Send;

    /// Replaces every limit of the user; returns the records after.
    fn replace_user_quotas(
        &self,
        user: &UserId,
        limits: &BTreeMap<Platform, Limits>,
        platforms: &Platforms,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<QuotaRecord>, Error>> + Send;

    /// Zeroes one window's usage; returns the records after.
    fn reset_quota_window(
        &self,
        user: &UserId,
        platform: &Platform,
        kind: WindowKind,
        tz: Tz,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<QuotaRecord>, Error>> + Send;
}

impl QuotaStore for DynamoStore {
    async fn user_quotas(&self, user: &UserId) -> Result<Vec<QuotaRecord>, Error> {
        self.query_prefix(&keys::user_pk(user.as_str()), keys::QUOTA_SK_PREFIX)
            .await?
            .iter()
            .map(quota_from_item)
            .collect()
    }

    async fn quota_record(&self, user: &UserId, platform: &Platform) -> Result<QuotaRecord, Error> {
        // Strongly consistent: a limit an admin just set (e.g. 0 = disabled)
        // applies to the very next check.
        let key = keys::item_key(
            keys::user_pk(user.as_str()),
            keys::quota_sk(platform.as_str()),
        );
        match self.get_consistent(key).await? {
            Some(item) => quota_from_item(&item),
            None => Ok(QuotaRecord::unlimited(platform.as_str())),
        }
    }

    async fn quota_defaults(&self, platforms: &Platforms) -> Result<DefaultsSet, Error> {
        let mut set = DefaultsSet::default();
        let items = self
            .query_prefix(keys::CONFIG_PK, keys::QUOTA_DEFAULTS_SK_PREFIX)
            .await?;
        for item in &items {
            let sk = attr::get_s(item, keys::SK)?;
            let scope = sk
                .strip_prefix(keys::QUOTA_DEFAULTS_SK_PREFIX)
                .unwrap_or("");
            let defaults = defaults_from_item(item, platforms)?;
            if scope == "system" {
                set.system = defaults;
            } else if let Some(source) = scope
                .strip_prefix("source#")
                .and_then(|s| AuthSource::parse(s).ok())
            {
                if DefaultsScope::Source(source).visible(&defaults).is_some() {
                    set.sources.insert(source, defaults);
                }
            }
        }
        Ok(set)
    }

    async fn replace_quota_defaults(
        &self,
        scope: DefaultsScope,
        defaults: &QuotaDefaults,
        platforms: &Platforms,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        retry(|| self.try_replace_defaults(scope, defaults, platforms, actor, now)).await
    }

    async fn init_user_quotas(
        &self,
        user: &UserId,
        source: AuthSource,
        platforms: &Platforms,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Vec<QuotaRecord>, Error> {
        let defaults = &self.quota_defaults(platforms).await?;
        retry(|| async move {
            let records = self.user_quotas(user).await?;
            let plan = plan_init(&records, platforms, defaults, source);
            let mut details = limit_change_details(&plan.changes);
            details["auth_source"] = json!(source);
            details["filled"] = json!(plan.filled);
            let entry = AuditEntry::new(
                actor,
                audit::ADMIN_INIT_USER_QUOTAS,
                Some(user),
                details,
                now,
            );
            self.commit_changes(user, &records, &plan.changes, limit_write, &entry)
                .await
        })
        .await
    }

    async fn replace_user_quotas(
        &self,
        user: &UserId,
        limits: &BTreeMap<Platform, Limits>,
        platforms: &Platforms,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Vec<QuotaRecord>, Error> {
        retry(|| async move {
            let records = self.user_quotas(user).await?;
            let changes = plan_replace(&records, platforms, limits);
            let entry = AuditEntry::new(
                actor,
                audit::ADMIN_REPLACE_USER_QUOTAS,
                Some(user),
                limit_change_details(&changes),
                now,
            );
            self.commit_changes(user, &records, &changes, limit_write, &entry)
                .await
        })
        .await
    }

    async fn reset_quota_window(
        &self,
        user: &UserId,
        platform: &Platform,
        kind: WindowKind,
        tz: Tz,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Vec<QuotaRecord>, Error> {
        retry(|| async move {
            let records = self.user_quotas(user).await?;
            let change = plan_reset(&records, platform, kind, now, tz);
            let entry = AuditEntry::new(
                actor,
                audit::ADMIN_RESET_QUOTA_WINDOW,
                Some(user),
                reset_details(&change, kind),
                now,
            );
            let write = move |change: &RecordChange| reset_write(change, kind);
            self.commit_changes(user, &records, std::slice::from_ref(&change), write, &entry)
                .await
        })
        .await
    }
}

/// Runs one optimistic attempt after another until it commits or the backoff
/// gives up (the records kept changing under us).
async fn retry<T, F, Fut>(mut attempt: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Attempt<T>, Error>>,
{
    Backoff::default()
        .run(
            |_| attempt(),
            || Error::Conflict("the quota record changed concurrently; retry".into()),
        )
        .await
}

/// One item's part of a conditional write: the update (or `None` if nothing
/// changes) and the condition asserting the stored item is still as read.
struct ItemWrite {
    update: Option<String>,
    condition: String,
    values: HashMap<String, AttributeValue>,
}

impl DynamoStore {
    /// Writes `changes` (each conditioned on its `before`) and the audit entry in
    /// one transaction; a failed condition means "re-read and try again".
    async fn commit_changes(
        &self,
        user: &UserId,
        records: &[QuotaRecord],
        changes: &[RecordChange],
        write: impl Fn(&RecordChange) -> ItemWrite,
        entry: &AuditEntry,
    ) -> Result<Attempt<Vec<QuotaRecord>>, Error> {
        let mut items = Vec::with_capacity(changes.len() + 1);
        for change in changes {
            let key = [
                (keys::PK.to_string(), attr::s(keys::user_pk(user.as_str()))),
                (
                    keys::SK.to_string(),
                    attr::s(keys::quota_sk(&change.after.platform)),
                ),
            ];
            items.push(self.conditional_item(HashMap::from(key), write(change))?);
        }
        items.push(self.audit_put(entry)?);
        Ok(match self.transact(items, entry).await? {
            Attempt::Done(()) => Attempt::Done(apply_changes(records, changes)),
            Attempt::Retry => Attempt::Retry,
        })
    }

    fn conditional_item(
        &self,
        key: HashMap<String, AttributeValue>,
        write: ItemWrite,
    ) -> Result<TransactWriteItem, Error> {
        let bad =
            |e: aws_sdk_dynamodb::error::BuildError| Error::Internal(format!("quota write: {e}"));
        let values = (!write.values.is_empty()).then_some(write.values);
        Ok(match write.update {
            Some(update) => TransactWriteItem::builder()
                .update(
                    Update::builder()
                        .table_name(self.table())
                        .set_key(Some(key))
                        .update_expression(update)
                        .condition_expression(write.condition)
                        .set_expression_attribute_values(values)
                        .build()
                        .map_err(bad)?,
                )
                .build(),
            None => TransactWriteItem::builder()
                .condition_check(
                    ConditionCheck::builder()
                        .table_name(self.table())
                        .set_key(Some(key))
                        .condition_expression(write.condition)
                        .set_expression_attribute_values(values)
                        .build()
                        .map_err(bad)?,
                )
                .build(),
        })
    }

    /// Sends one transaction (carrying `audit`) until it settles: `Retry` if
    /// a condition failed or it conflicted. A send whose outcome stays open is
    /// 503, never retried with a fresh read (that would write a second audit
    /// entry, or reset a window twice); a cancellation after an open send is
    /// checked against the audit entry, which only this transaction writes.
    async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
        audit: &AuditEntry,
    ) -> Result<Attempt<()>, Error> {
        if items.len() > MAX_TRANSACT_ITEMS {
            return Err(Error::Internal(format!(
                "{} writes exceed one transaction; configure fewer platforms",
                items.len()
            )));
        }
        let token = uuid::Uuid::new_v4().to_string();
        match self
            .transact_settled(items, &token, false, &SETTLE_BACKOFF)
            .await?
        {
            Settled::Committed(_) => Ok(Attempt::Done(())),
            Settled::Cancelled {
                after_unknown: true,
                ..
            } if self.audit_written(audit).await? => Ok(Attempt::Done(())),
            Settled::Cancelled { reasons, .. }
                if reasons.iter().any(|r| r.is_condition_failed())
                    || reasons.iter().all(|r| r.is_transient_or_none()) =>
            {
                Ok(Attempt::Retry)
            }
            Settled::Cancelled { reasons, .. } => Err(Error::Internal(format!(
                "quota transaction cancelled: {reasons:?}"
            ))),
        }
    }

    /// The defaults item of `scope` and its version, if it exists.
    async fn defaults_item(
        &self,
        scope: DefaultsScope,
        platforms: &Platforms,
    ) -> Result<Option<(QuotaDefaults, i64)>, Error> {
        self.get_consistent(defaults_key(scope))
            .await?
            .as_ref()
            .map(|item| {
                Ok((
                    defaults_from_item(item, platforms)?,
                    attr::opt_i64(item, "version")?.unwrap_or(0),
                ))
            })
            .transpose()
    }

    async fn try_replace_defaults(
        &self,
        scope: DefaultsScope,
        defaults: &QuotaDefaults,
        platforms: &Platforms,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Attempt<()>, Error> {
        let current = self.defaults_item(scope, platforms).await?;
        // Clearing is a Put of `{}` too: the item keeps its version (no
        // delete-then-recreate race) and the function needs no DeleteItem.
        let (condition, names, values) = match &current {
            Some((_, version)) => (
                "#version = :version",
                HashMap::from([("#version".to_string(), "version".to_string())]),
                Some(HashMap::from([(":version".to_string(), attr::n(version))])),
            ),
            None => (
                "attribute_not_exists(#pk)",
                HashMap::from([("#pk".to_string(), keys::PK.to_string())]),
                None,
            ),
        };
        let mut item: Item = defaults_key(scope);
        item.insert("limits".into(), defaults_to_attr(defaults));
        item.insert(
            "version".into(),
            attr::n(current.as_ref().map_or(0, |(_, v)| *v) + 1),
        );
        item.insert(
            "updated_at".into(),
            attr::s(now.to_rfc3339_opts(SecondsFormat::Secs, true)),
        );
        item.insert("updated_by".into(), attr::s(&actor.id));
        let put = Put::builder()
            .table_name(self.table())
            .set_item(Some(item))
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(values)
            .build()
            .map_err(|e| Error::Internal(format!("quota defaults write: {e}")))?;
        let before = current.as_ref().and_then(|(d, _)| scope.visible(d));
        let entry = AuditEntry::new(
            actor,
            scope.audit_action(),
            None,
            json!({ "scope": scope.label(), "before": before, "after": scope.visible(defaults) }),
            now,
        );
        let write = TransactWriteItem::builder().put(put).build();
        self.transact(vec![write, self.audit_put(&entry)?], &entry)
            .await
    }
}

fn defaults_key(scope: DefaultsScope) -> Item {
    keys::item_key(keys::CONFIG_PK, keys::quota_defaults_sk(scope))
}

pub(crate) fn window_attr(kind: WindowKind, field: &str) -> String {
    format!("{}_{field}", kind.as_str())
}

fn defaults_to_attr(defaults: &QuotaDefaults) -> AttributeValue {
    AttributeValue::M(
        defaults
            .iter()
            .map(|(platform, limits)| {
                let windows: Item = WindowKind::ALL
                    .into_iter()
                    .filter_map(|k| {
                        limits
                            .get(k)
                            .map(|v| (window_attr(k, "limit"), attr::usd(v)))
                    })
                    .collect();
                (platform.to_string(), AttributeValue::M(windows))
            })
            .collect(),
    )
}

/// Platforms no longer configured are left out, so removing one from the
/// configuration never breaks reading or saving defaults.
fn defaults_from_item(item: &Item, platforms: &Platforms) -> Result<QuotaDefaults, Error> {
    let mut defaults = QuotaDefaults::default();
    let Some(map) = item.get("limits").and_then(|v| v.as_m().ok()) else {
        return Ok(defaults);
    };
    for (name, value) in map {
        let Ok(platform) = platforms.parse(name) else {
            continue;
        };
        let windows = value
            .as_m()
            .map_err(|_| Error::Internal(format!("stored defaults for {name}: not a map")))?;
        let mut limits = Limits::default();
        for kind in WindowKind::ALL {
            limits.set(kind, attr::opt_usd(windows, &window_attr(kind, "limit"))?);
        }
        defaults.insert(platform, limits);
    }
    Ok(defaults)
}

/// Limit write: `{w}_limit` and `{w}_limit_set` as in `after`, if they are still
/// as in `before`.
fn limit_write(change: &RecordChange) -> ItemWrite {
    let mut values = HashMap::new();
    let (mut set, mut remove, mut condition) = (Vec::new(), Vec::new(), Vec::new());
    let mut uses_true = false;
    for kind in WindowKind::ALL {
        let (limit, marker) = (window_attr(kind, "limit"), window_attr(kind, "limit_set"));
        let (before, after) = (change.before.window(kind), change.after.window(kind));
        match before.limit {
            Some(v) => {
                condition.push(format!("{limit} = :b_{limit}"));
                values.insert(format!(":b_{limit}"), attr::usd(v));
            }
            None => condition.push(format!("attribute_not_exists({limit})")),
        }
        if before.limit_set {
            condition.push(format!("{marker} = :t"));
            uses_true = true;
        } else {
            condition.push(format!("attribute_not_exists({marker})"));
        }
        if after.limit != before.limit {
            match after.limit {
                Some(v) => {
                    set.push(format!("{limit} = :a_{limit}"));
                    values.insert(format!(":a_{limit}"), attr::usd(v));
                }
                None => remove.push(limit.clone()),
            }
        }
        if after.limit != before.limit {
            // The headroom (limit, or 0 when unlimited, − usage − reserved)
            // moves by the change of the limit; usage may move concurrently.
            let headroom = window_attr(kind, "headroom");
            let delta = after.limit.unwrap_or(Usd::ZERO) - before.limit.unwrap_or(Usd::ZERO);
            set.push(format!(
                "{headroom} = if_not_exists({headroom}, :zero) + :d_{headroom}"
            ));
            values.insert(format!(":d_{headroom}"), attr::usd(delta));
            values.insert(":zero".into(), attr::n(0));
        }
        if after.limit_set != before.limit_set {
            if after.limit_set {
                set.push(format!("{marker} = :t"));
                uses_true = true;
            } else {
                remove.push(marker);
            }
        }
    }
    if uses_true {
        values.insert(":t".into(), AttributeValue::Bool(true));
    }
    ItemWrite {
        update: update_expression(&set, &remove),
        condition: condition.join(" AND "),
        values,
    }
}

/// Reset write: the window's usage to zero from the current window start, if
/// usage and start are still as read (metering may have added usage meanwhile).
fn reset_write(change: &RecordChange, kind: WindowKind) -> ItemWrite {
    let (usage, start) = (window_attr(kind, "usage"), window_attr(kind, "start"));
    let (before, after) = (change.before.window(kind), change.after.window(kind));
    let mut values = HashMap::from([
        (":b_usage".to_string(), attr::usd(before.usage)),
        (":a_usage".to_string(), attr::usd(after.usage)),
        (
            ":a_start".to_string(),
            attr::n(after.start.map_or(0, |s| s.timestamp())),
        ),
    ]);
    let usage_cond = if before.usage.is_zero() {
        format!("(attribute_not_exists({usage}) OR {usage} = :b_usage)")
    } else {
        format!("{usage} = :b_usage")
    };
    let start_cond = match before.start {
        Some(s) => {
            values.insert(":b_start".into(), attr::n(s.timestamp()));
            format!("{start} = :b_start")
        }
        None => format!("attribute_not_exists({start})"),
    };
    // The headroom follows: in the same window the usage given back is room
    // again (holds stay); a reset that also rolls the window over starts it
    // with no usage and nothing reserved.
    let (headroom, reserved, limit) = (
        window_attr(kind, "headroom"),
        window_attr(kind, "reserved"),
        window_attr(kind, "limit"),
    );
    values.insert(":zero".into(), attr::n(0));
    let headroom_set = if before.start.is_some() && before.start == after.start {
        format!("{headroom} = if_not_exists({headroom}, :zero) + :b_usage")
    } else {
        format!("{reserved} = :zero, {headroom} = if_not_exists({limit}, :zero)")
    };
    ItemWrite {
        update: Some(format!(
            "SET {usage} = :a_usage, {start} = :a_start, {headroom_set}"
        )),
        condition: format!("{usage_cond} AND {start_cond}"),
        values,
    }
}

fn update_expression(set: &[String], remove: &[String]) -> Option<String> {
    let mut parts = Vec::new();
    if !set.is_empty() {
        parts.push(format!("SET {}", set.join(", ")));
    }
    if !remove.is_empty() {
        parts.push(format!("REMOVE {}", remove.join(", ")));
    }
    (!parts.is_empty()).then(|| parts.join(" "))
}

pub(crate) fn quota_from_item(item: &Item) -> Result<QuotaRecord, Error> {
    let sk = attr::get_s(item, keys::SK)?;
    let platform = sk.strip_prefix(keys::QUOTA_SK_PREFIX).unwrap_or(sk);
    let mut record = QuotaRecord::unlimited(platform);
    for kind in WindowKind::ALL {
        let start = attr::opt_i64(item, &window_attr(kind, "start"))?
            .and_then(|secs| DateTime::<Utc>::from_timestamp(secs, 0));
        *record.window_mut(kind) = WindowState {
            limit: attr::opt_usd(item, &window_attr(kind, "limit"))?,
            limit_set: attr::get_bool(item, &window_attr(kind, "limit_set")).unwrap_or(false),
            usage: attr::opt_usd(item, &window_attr(kind, "usage"))?.unwrap_or_default(),
            start,
            reserved: attr::opt_usd(item, &window_attr(kind, "reserved"))?.unwrap_or_default(),
        };
    }
    Ok(record)
}
