//! Usage events in DynamoDB: each group of events of one user and platform is
//! applied by ONE `TransactWriteItems`:
//!
//! 1. per event, a Put of its record `EVENT#{event_id}` / `EVENT` conditioned
//!    on `attribute_not_exists(pk)`: the exactly-once fence. The record keeps
//!    the payload fingerprint, so a redelivery (same fingerprint) is told from
//!    a different event reusing the id;
//! 2. an Update of the quota item `USER#{user}` / `QUOTA#{platform}` touching
//!    only `{w}_usage` / `{w}_start`, conditioned per window on the stored
//!    start the [`UsagePlan`] assumed (add / restart after a rollover / keep
//!    for past windows). It creates the item if there is none (unlimited);
//! 3. for an event with `credits`, the credit account update conditioned on
//!    the `seq` read and its `consume` ledger entry.
//!
//! Every action asks for `ALL_OLD` on a failed condition, so a cancelled write
//! tells what is stored (the existing record, the quota item's window starts)
//! without another read; the write is re-planned and retried. The steady state
//! (windows current, no duplicates) is one request per group; an event with
//! credits adds the account read.
//!
//! Records expire through TTL 16 days after processing, but correctness never
//! depends on TTL: a record still present after its expiry (TTL deletes late)
//! fails the `attribute_not_exists` condition and so still counts as a
//! duplicate; that errs on the side of never applying an event twice.

use super::attr::{self, Item};
use super::credits::{CreditStore, CREDIT_BACKOFF};
use super::quota::window_attr;
use super::reservations::{hold_of_item, Expr, WindowNames};
use super::txn::{Backoff, CancelReason, TxnFailure};
use super::{keys, DynamoStore};
use crate::domain::credits::{Account, Applied, Change};
use crate::domain::reservation::{settle_releases, Hold, ReservationId, Status};
use crate::domain::usage::{
    write_groups, Recorded, StoredStarts, UsageEvent, UsagePlan, WindowWrite,
    CREDITS_CATEGORY_USAGE, RECORD_RETENTION,
};
use crate::domain::{Platform, UserId, WindowKind};
use crate::error::Error;
use aws_sdk_dynamodb::types::{
    ConditionCheck, ReturnConsumedCapacity, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// Record attribute holding the payload fingerprint.
const FINGERPRINT: &str = "fingerprint";
/// Users written at the same time within one batch (each user's writes are
/// sequential; different users touch different items).
const USER_CONCURRENCY: usize = 8;
/// Re-plans after a failed quota condition: each one means the stored window
/// starts moved on (a rollover by another writer), which happens rarely.
const MAX_REPLANS: u32 = 12;
/// Retries after a lost race on the credit account that use the account the
/// failed condition returned, before pausing and reading it fresh.
const IMMEDIATE_ACCOUNT_RETRIES: u32 = 2;
/// Namespace of the write tokens (a fixed random UUID).
const TOKEN_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6f1c_2b7e_93a4_4d0e_b5a2_5c0e_8f17_d3a9);

/// Settings of one ingest call.
#[derive(Clone, Copy, Debug)]
pub struct IngestContext {
    /// Zone the windows align in.
    pub tz: Tz,
    /// "Now" of the batch: record timestamps, TTL and ledger entries.
    pub processed_at: DateTime<Utc>,
    /// Bounded, jittered retry of transient failures (conflicts, throttling).
    pub backoff: Backoff,
    /// No write starts (and no retry waits) past this instant: events not
    /// written by then fail, and SQS delivers them again. The Lambda entry
    /// point sets it a margin before the invocation's deadline, since the
    /// retry bounds of one user's writes, run one after another, add up to far
    /// more than the function timeout on a hot account. `None`: no limit.
    pub deadline: Option<Instant>,
}

impl IngestContext {
    /// Whether waiting `pause` and then writing would run past the deadline.
    fn out_of_time(&self, pause: std::time::Duration) -> bool {
        self.deadline
            .is_some_and(|deadline| Instant::now() + pause >= deadline)
    }
}

fn out_of_time() -> Error {
    Error::StoreUnavailable(
        "the invocation ran out of time before this event was written; SQS delivers it again"
            .into(),
    )
}

/// What the writes of an ingest call cost, counted by the writer (the store's
/// [`super::RequestStats`] also counts SDK-level retries).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// DynamoDB requests sent (transactions and reads).
    pub requests: u64,
    /// `TransactWriteItems` among them.
    pub transactions: u64,
    /// Write capacity units consumed, in tenths (from `ConsumedCapacity`).
    pub write_units_tenths: u64,
}

impl WriteStats {
    fn add(&mut self, other: WriteStats) {
        self.requests += other.requests;
        self.transactions += other.transactions;
        self.write_units_tenths += other.write_units_tenths;
    }
}

/// Per event (input order): which record holds its id, or why that is unknown
/// (nothing was written for it then; SQS will deliver it again).
pub struct IngestOutcome {
    pub results: Vec<Result<Recorded, Arc<Error>>>,
    pub stats: WriteStats,
}

pub trait UsageStore {
    /// Applies `events` (distinct `event_id`s), each exactly once; see the
    /// module docs for the write. Returns when every write has settled.
    fn ingest_usage(
        &self,
        events: Arc<[UsageEvent]>,
        ctx: IngestContext,
    ) -> impl Future<Output = IngestOutcome> + Send;
}

impl UsageStore for DynamoStore {
    async fn ingest_usage(&self, events: Arc<[UsageEvent]>, ctx: IngestContext) -> IngestOutcome {
        let mut results: Vec<Option<Result<Recorded, Arc<Error>>>> =
            (0..events.len()).map(|_| None).collect();
        let mut stats = WriteStats::default();
        let limit = Arc::new(Semaphore::new(USER_CONCURRENCY));
        let mut tasks = tokio::task::JoinSet::new();
        for writes in write_groups(&events) {
            let (store, events, limit) = (self.clone(), events.clone(), limit.clone());
            tasks.spawn(async move {
                // The semaphore is never closed; without a permit, run anyway.
                let _permit = limit.acquire_owned().await.ok();
                store.record_user_writes(&events, &writes, &ctx).await
            });
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((done, s)) => {
                    stats.add(s);
                    for (i, r) in done {
                        results[i] = Some(r);
                    }
                }
                Err(e) => tracing::error!(error = %e, "a usage write task failed"),
            }
        }
        // A task that panicked leaves its events without a result: failed, so
        // SQS delivers them again.
        let results = results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(Arc::new(Error::Internal(
                        "the usage write did not finish".into(),
                    )))
                })
            })
            .collect();
        IngestOutcome { results, stats }
    }
}

/// Everything one write needs about the group it applies.
struct Group<'a> {
    user: &'a UserId,
    platform: &'a Platform,
    events: Vec<&'a UsageEvent>,
    fingerprints: Vec<String>,
    /// Credits of the group's one event, if it carries any.
    credits: Option<i64>,
    /// The reservation the group's one event settles, if it names one.
    reservation: Option<&'a ReservationId>,
}

/// What one user's writes know about the items they share: the window starts
/// of each quota item and the credit account, as last seen or written. Only a
/// guess for planning; the write's conditions decide.
#[derive(Default)]
struct Known<'a> {
    starts: Vec<(&'a Platform, StoredStarts)>,
    account: Option<Account>,
}

impl<'a> Known<'a> {
    fn starts(&self, platform: &Platform) -> Option<StoredStarts> {
        self.starts
            .iter()
            .find(|(p, _)| *p == platform)
            .map(|(_, s)| *s)
    }

    fn set_starts(&mut self, platform: &'a Platform, starts: StoredStarts) {
        match self.starts.iter_mut().find(|(p, _)| *p == platform) {
            Some(slot) => slot.1 = starts,
            None => self.starts.push((platform, starts)),
        }
    }
}

impl DynamoStore {
    /// One user's writes, one after another; what a write learns about the
    /// quota item and the credit account seeds the next write.
    async fn record_user_writes(
        &self,
        events: &[UsageEvent],
        writes: &[Vec<usize>],
        ctx: &IngestContext,
    ) -> (Vec<(usize, Result<Recorded, Arc<Error>>)>, WriteStats) {
        let mut out = Vec::new();
        let mut stats = WriteStats::default();
        let mut known = Known::default();
        for write in writes {
            let group_events: Vec<&UsageEvent> = write.iter().map(|&i| &events[i]).collect();
            let Some(first) = group_events.first() else {
                continue;
            };
            let group = Group {
                user: &first.user_id,
                platform: &first.platform,
                fingerprints: group_events.iter().map(|e| e.fingerprint()).collect(),
                credits: first.credits,
                reservation: first.reservation_id.as_ref(),
                events: group_events,
            };
            let mut resolved = vec![None; write.len()];
            let error = self
                .record_group(&group, ctx, &mut known, &mut resolved, &mut stats)
                .await
                .err()
                .map(Arc::new);
            for (k, &i) in write.iter().enumerate() {
                let result = match (&resolved[k], &error) {
                    (Some(r), _) => Ok(r.clone()),
                    (None, Some(e)) => Err(e.clone()),
                    (None, None) => Err(Arc::new(Error::Internal(
                        "usage write ended without an outcome".into(),
                    ))),
                };
                out.push((i, result));
            }
        }
        (out, stats)
    }

    /// Writes one group until every event is recorded (by this write or an
    /// earlier one): fills `resolved` with the record found or created per
    /// event; an error leaves the rest unresolved (nothing written for them).
    async fn record_group<'a>(
        &self,
        group: &Group<'a>,
        ctx: &IngestContext,
        known: &mut Known<'a>,
        resolved: &mut [Option<Recorded>],
        stats: &mut WriteStats,
    ) -> Result<(), Error> {
        let n = group.events.len();
        if (group.credits.is_some() || group.reservation.is_some()) && n != 1 {
            return Err(Error::Internal(
                "an event with credits is written on its own".into(),
            ));
        }
        let mut pending: Vec<usize> = (0..n).collect();
        // Each attempt resolves an event or counts against one of these bounds.
        let (mut rounds, mut transient, mut replans, mut contended) = (0u32, 0u32, 0u32, 0u32);
        // The account as this user's last write left it saves the read; the
        // seq condition catches any other writer in between.
        let mut account = match group.credits {
            Some(_) => known.account.take(),
            None => None,
        };
        // The reservation the event settles, as its id describes it: the write
        // is conditioned on the record agreeing, so no read is needed.
        let mut settle = match group.reservation.and_then(ReservationId::hint) {
            Some(hint) => Settle::Pending {
                hold: Hold::from_hint(&hint, ctx.tz),
                expired: false,
            },
            None => Settle::Plain,
        };
        loop {
            if pending.is_empty() {
                // Every event was recorded before: the account read still holds.
                if account.is_some() {
                    known.account = account;
                }
                return Ok(());
            }
            // Between attempts only: every attempt sent has a known outcome.
            if ctx.out_of_time(std::time::Duration::ZERO) {
                return Err(out_of_time());
            }
            rounds += 1;
            let events: Vec<&UsageEvent> = pending.iter().map(|&i| group.events[i]).collect();
            let starts = known.starts(group.platform);
            let plan = UsagePlan::new(&events, ctx.tz, ctx.processed_at, starts.as_ref())?;
            let mut actions = Vec::with_capacity(pending.len() + 3);
            for &i in &pending {
                actions.push(self.event_record_put(
                    group.events[i],
                    &group.fingerprints[i],
                    ctx,
                )?);
            }
            let release = match &settle {
                Settle::Pending { hold, .. } => {
                    Some((settle_releases(&plan, hold, starts.as_ref()), *hold))
                }
                Settle::Plain => None,
            };
            actions.push(self.quota_usage_action(
                group.user,
                group.platform,
                &plan,
                release.as_ref(),
            )?);
            let held_credits = match &settle {
                Settle::Pending { hold, .. } => hold.credits,
                Settle::Plain => 0,
            };
            let applied = match group.credits {
                None => None,
                Some(credits) => {
                    let read = match account.take() {
                        Some(a) => a,
                        None => {
                            stats.requests += 1;
                            self.credit_account(group.user).await?
                        }
                    };
                    let applied =
                        read.apply(&consume_change(events[0], credits), ctx.processed_at)?;
                    actions.extend(self.ledger_actions_releasing(&applied, held_credits)?);
                    account = Some(read);
                    Some(applied)
                }
            };
            // After the event's own actions: the reservation's way out of
            // pending, and (without credits of its own) the credit hold's release.
            let settle_at = actions.len();
            if let (Settle::Pending { hold, expired }, Some(id)) = (&settle, group.reservation) {
                actions.push(self.settle_update(
                    id,
                    hold,
                    events[0],
                    *expired,
                    ctx.processed_at,
                )?);
                if applied.is_none() && hold.credits > 0 {
                    actions.push(self.credit_release_update(group.user, hold.credits)?);
                }
            }
            let token = write_token(
                self.table(),
                group,
                &pending,
                &plan,
                applied.as_ref(),
                ctx,
                (rounds, transient),
                &settle,
            );
            stats.requests += 1;
            stats.transactions += 1;
            let sent = self
                .client()
                .transact_write_items()
                .set_transact_items(Some(actions))
                .client_request_token(token)
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await;
            let reasons = match sent {
                Ok(out) => {
                    let units: f64 = out
                        .consumed_capacity()
                        .iter()
                        .filter_map(|c| c.capacity_units())
                        .sum();
                    self.stats().add_write_units(units);
                    // Capacity is a metric: tenths are exact for DynamoDB's 0.5 steps.
                    stats.write_units_tenths += (units * 10.0).round() as u64;
                    for &i in &pending {
                        resolved[i] = Some(Recorded {
                            fingerprint: group.fingerprints[i].clone(),
                            applied_now: true,
                        });
                    }
                    known.set_starts(group.platform, plan.starts_after(starts.as_ref()));
                    if let Some(applied) = applied {
                        known.account = Some(applied.after);
                    }
                    return Ok(());
                }
                Err(e) => match TxnFailure::from_sdk(e) {
                    TxnFailure::Unavailable(e) => return Err(e),
                    TxnFailure::Transient(_) => Vec::new(),
                    TxnFailure::Cancelled(reasons) => reasons,
                },
            };
            let failed = |k: usize| {
                reasons
                    .get(k)
                    .is_some_and(CancelReason::is_condition_failed)
            };
            let mut progressed = false;
            // Records that exist: the event was applied before (or its id taken).
            let mut still = Vec::with_capacity(pending.len());
            for (k, &i) in pending.iter().enumerate() {
                if !failed(k) {
                    still.push(i);
                    continue;
                }
                let stored = match reasons[k]
                    .item
                    .as_ref()
                    .and_then(|it| attr::opt_s(it, FINGERPRINT))
                {
                    Some(fp) => Some(fp.to_string()),
                    // An engine that does not return ALL_OLD: read the record.
                    None => {
                        stats.requests += 1;
                        self.event_record_fingerprint(group.events[i]).await?
                    }
                };
                match stored {
                    Some(fingerprint) => {
                        resolved[i] = Some(Recorded {
                            fingerprint,
                            applied_now: false,
                        });
                        progressed = true;
                    }
                    None => still.push(i),
                }
            }
            let quota = pending.len();
            pending = still;
            if failed(quota) {
                progressed = true;
                replans += 1;
                if replans > MAX_REPLANS {
                    return Err(Error::Conflict(
                        "the quota item's windows kept moving; retry later".into(),
                    ));
                }
                let learned = match reasons[quota].item.as_ref() {
                    Some(item) => starts_from_item(item)?,
                    // No item came back: there is none, unless this plan already
                    // assumed that (an engine without ALL_OLD); then read it.
                    None if starts != Some([None; 3]) => [None; 3],
                    None => {
                        stats.requests += 1;
                        self.quota_starts(group.user, group.platform).await?
                    }
                };
                known.set_starts(group.platform, learned);
            }
            if group.credits.is_some() {
                // After the quota action: the account update, then the ledger put.
                if failed(quota + 1) {
                    // Another write moved the account on. The failed condition
                    // returned it: retry at once with it. A hot account loses
                    // repeatedly; then pause (jittered) and read it fresh, as
                    // the returned state is stale once others wrote meanwhile.
                    progressed = true;
                    contended += 1;
                    if contended >= CREDIT_BACKOFF.max_attempts {
                        return Err(Error::Conflict(format!(
                            "the credit account of {} is busy; retry later",
                            group.user
                        )));
                    }
                    account = None;
                    if contended <= IMMEDIATE_ACCOUNT_RETRIES {
                        account = reasons[quota + 1]
                            .item
                            .as_ref()
                            .and_then(|item| account_from_all_old(group.user, item));
                    } else {
                        pause(ctx, CREDIT_BACKOFF.delay(contended)).await?;
                    }
                } else if failed(quota + 2) {
                    return Err(Error::Internal(format!(
                        "a ledger entry of {} exists past the account's seq",
                        group.user
                    )));
                }
            }
            if matches!(settle, Settle::Pending { .. }) && failed(settle_at) {
                // The record is not as the id said: settle as it is, or apply
                // the event as a plain one (voided, expired, settled, unknown,
                // another user's).
                progressed = true;
                replans += 1;
                if replans > MAX_REPLANS {
                    return Err(Error::Conflict(
                        "the reservation kept changing; retry later".into(),
                    ));
                }
                settle = reasons[settle_at]
                    .item
                    .as_ref()
                    .map_or(Settle::Plain, |item| {
                        Settle::learned(item, group, ctx.processed_at)
                    });
            }
            if !progressed {
                // Conflict with another transaction or throttling: back off.
                transient += 1;
                if transient >= ctx.backoff.max_attempts {
                    return Err(Error::Conflict(
                        "the usage write stayed contended; retry later".into(),
                    ));
                }
                pause(ctx, ctx.backoff.delay(transient)).await?;
            }
        }
    }

    fn event_record_put(
        &self,
        event: &UsageEvent,
        fingerprint: &str,
        ctx: &IngestContext,
    ) -> Result<TransactWriteItem, Error> {
        let mut item = Item::new();
        item.insert(
            keys::PK.into(),
            attr::s(keys::event_pk(event.event_id.as_str())),
        );
        item.insert(keys::SK.into(), attr::s(keys::EVENT_SK));
        item.insert(FINGERPRINT.into(), attr::s(fingerprint));
        item.insert("user_id".into(), attr::s(event.user_id.as_str()));
        item.insert("platform".into(), attr::s(event.platform.as_str()));
        item.insert("cost_usd".into(), attr::usd(event.cost));
        item.insert(
            "occurred_at".into(),
            attr::s(
                event
                    .occurred_at
                    .to_rfc3339_opts(SecondsFormat::AutoSi, true),
            ),
        );
        if let Some(v) = &event.request_id {
            item.insert("request_id".into(), attr::s(v));
        }
        if let Some(v) = &event.model {
            item.insert("model".into(), attr::s(v));
        }
        if let Some(c) = event.credits {
            item.insert("credits".into(), attr::n(c));
        }
        if let Some(r) = &event.reservation_id {
            item.insert("reservation_id".into(), attr::s(r.as_str()));
        }
        item.insert(
            "processed_at".into(),
            attr::s(ctx.processed_at.to_rfc3339_opts(SecondsFormat::Secs, true)),
        );
        item.insert(
            keys::TTL.into(),
            attr::n((ctx.processed_at + RECORD_RETENTION).timestamp()),
        );
        self.put_once_action(item)
    }

    /// The quota item's part of the write: per window, the plan's change and
    /// the condition that makes it right. Only `{w}_usage` / `{w}_start` and
    /// what follows from them are touched: the headroom (limit, or 0 when
    /// unlimited, − usage − reserved; `domain::reservation`) moves with the
    /// usage, a rollover restarts the window with nothing reserved, and a
    /// settling event (`release`: per window whether the hold is released,
    /// and the hold) gives the hold back in the same update. Limits and
    /// whatever else the item holds stay as they are.
    fn quota_usage_action(
        &self,
        user: &UserId,
        platform: &Platform,
        plan: &UsagePlan,
        release: Option<&([bool; 3], Hold)>,
    ) -> Result<TransactWriteItem, Error> {
        let mut e = Expr::default();
        for (w, (kind, write)) in WindowKind::ALL.iter().zip(&plan.windows).enumerate() {
            let n = WindowNames::of(*kind, &mut e);
            let k = n.k;
            let (amount, start) = (format!(":{k}a"), format!(":{k}s"));
            let releases = release.is_some_and(|(r, _)| r[w]);
            let hold = release.map(|(_, h)| h);
            match write {
                WindowWrite::Add {
                    start: at,
                    amount: a,
                } => {
                    e.value(":zero", attr::n(0));
                    e.value(&amount, attr::usd(*a));
                    e.value(&start, attr::n(at));
                    e.set(format!(
                        "{u} = if_not_exists({u}, :zero) + {amount}",
                        u = n.u
                    ));
                    e.cond(format!("{} = {start}", n.s));
                    match hold.filter(|_| releases) {
                        Some(hold) => {
                            // usage += cost, reserved -= estimate: headroom -= cost - estimate.
                            let delta = e.value(&format!(":{k}d"), attr::usd(*a - hold.estimate));
                            e.value(":hold", attr::usd(hold.estimate));
                            e.set(format!("{r} = if_not_exists({r}, :zero) - :hold", r = n.r));
                            e.set(format!(
                                "{h} = if_not_exists({h}, :zero) - {delta}",
                                h = n.h
                            ));
                        }
                        None => {
                            e.set(format!(
                                "{h} = if_not_exists({h}, :zero) - {amount}",
                                h = n.h
                            ));
                        }
                    }
                }
                WindowWrite::Restart {
                    start: at,
                    amount: a,
                } => {
                    e.value(":zero", attr::n(0));
                    e.value(&amount, attr::usd(*a));
                    e.value(&start, attr::n(at));
                    e.set(format!("{} = {amount}", n.u));
                    e.set(format!("{} = {start}", n.s));
                    // Holds of the old window hold nothing in the new one.
                    e.set(format!("{} = :zero", n.r));
                    e.set(format!(
                        "{} = if_not_exists({}, :zero) - {amount}",
                        n.h, n.l
                    ));
                    e.cond(format!(
                        "(attribute_not_exists({s}) OR {s} < {start})",
                        s = n.s
                    ));
                }
                WindowWrite::Keep { after } => match hold {
                    Some(hold) if releases => {
                        // A past event settling a hold of the stored window.
                        e.value(":zero", attr::n(0));
                        e.value(":hold", attr::usd(hold.estimate));
                        let hs = e.value(&format!(":{k}hs"), attr::n(hold.starts[w]));
                        e.set(format!("{r} = if_not_exists({r}, :zero) - :hold", r = n.r));
                        e.set(format!("{h} = if_not_exists({h}, :zero) + :hold", h = n.h));
                        e.cond(format!("{} = {hs}", n.s));
                    }
                    _ => {
                        e.value(&start, attr::n(after));
                        e.cond(format!("{} > {start}", n.s));
                        if let Some(hold) = hold.filter(|h| h.starts[w] > *after) {
                            // Not the hold's window (else it would release).
                            let hs = e.value(&format!(":{k}hs"), attr::n(hold.starts[w]));
                            e.cond(format!("{} <> {hs}", n.s));
                        }
                    }
                },
            }
        }
        let key = Item::from([
            (keys::PK.to_string(), attr::s(keys::user_pk(user.as_str()))),
            (
                keys::SK.to_string(),
                attr::s(keys::quota_sk(platform.as_str())),
            ),
        ]);
        // Every counter stays: check the windows are still past, write nothing.
        if !e.has_sets() {
            let (condition, names, values) = e.condition_parts();
            let check = ConditionCheck::builder()
                .table_name(self.table())
                .set_key(Some(key))
                .condition_expression(condition)
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values(Some(values))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .build()
                .map_err(build_err)?;
            return Ok(TransactWriteItem::builder().condition_check(check).build());
        }
        let update = e.update(self.table(), key).build().map_err(build_err)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// The fingerprint of the record holding `event`'s id, if there is one
    /// (strongly consistent; only for engines that do not return `ALL_OLD`).
    async fn event_record_fingerprint(&self, event: &UsageEvent) -> Result<Option<String>, Error> {
        let key = keys::item_key(keys::event_pk(event.event_id.as_str()), keys::EVENT_SK);
        Ok(self
            .get_consistent(key)
            .await?
            .as_ref()
            .and_then(|item| attr::opt_s(item, FINGERPRINT))
            .map(str::to_string))
    }

    /// The quota item's window starts (strongly consistent).
    async fn quota_starts(
        &self,
        user: &UserId,
        platform: &Platform,
    ) -> Result<StoredStarts, Error> {
        let key = keys::item_key(
            keys::user_pk(user.as_str()),
            keys::quota_sk(platform.as_str()),
        );
        match self.get_consistent(key).await? {
            Some(item) => starts_from_item(&item),
            None => Ok([None; 3]),
        }
    }
}

/// What a settling event's write does with its reservation.
pub(crate) enum Settle {
    /// Release `hold` and mark the record settled, or (`expired`: it ran past
    /// its `expires_at`) expired while the event applies as a plain one.
    Pending { hold: Hold, expired: bool },
    /// Voided, expired, settled, unknown or not this user's: a plain event.
    Plain,
}

impl Settle {
    /// From the record a failed settle condition returned.
    fn learned(item: &Item, group: &Group<'_>, now: DateTime<Utc>) -> Self {
        match hold_of_item(item) {
            Some((Status::Pending, expires_ms, hold, user, platform))
                if user == group.user.as_str() && platform == group.platform.as_str() =>
            {
                Settle::Pending {
                    hold,
                    expired: expires_ms <= now.timestamp_millis(),
                }
            }
            _ => Settle::Plain,
        }
    }
}

/// Sleeps before a retry, unless the retry would start past the deadline.
async fn pause(ctx: &IngestContext, delay: std::time::Duration) -> Result<(), Error> {
    if ctx.out_of_time(delay) {
        return Err(out_of_time());
    }
    tokio::time::sleep(delay).await;
    Ok(())
}

fn starts_from_item(item: &Item) -> Result<StoredStarts, Error> {
    let mut starts = [None; 3];
    for (slot, kind) in starts.iter_mut().zip(WindowKind::ALL) {
        *slot = attr::opt_i64(item, &window_attr(kind, "start"))?;
    }
    Ok(starts)
}

/// The write's `ClientRequestToken`: a UUID v5 (36 chars) of everything the
/// transaction contains (table, each event id with its payload fingerprint,
/// the processing time in the records, the quota plan) and the attempt.
///
/// The SDK resends a request with the token it carries, so an attempt that
/// timed out after committing is answered from DynamoDB's token cache instead
/// of being applied again. The token changes whenever the content does (a
/// re-plan after a failed condition, a duplicate dropped, another batch), as
/// DynamoDB refuses a reused token with other parameters
/// (`IdempotentParameterMismatch`), and with the attempt number, so a retry
/// after a cancellation never meets a cached outcome. A redelivery that builds
/// the very same write within 10 minutes is answered from the cache and
/// changes nothing: the first one applied it. Exactly-once itself rests on the
/// record's `attribute_not_exists` condition, not on the token.
#[allow(clippy::too_many_arguments)]
fn write_token(
    table: &str,
    group: &Group<'_>,
    pending: &[usize],
    plan: &UsagePlan,
    applied: Option<&Applied>,
    ctx: &IngestContext,
    (rounds, transient): (u32, u32),
    settle: &Settle,
) -> String {
    let mut text = format!(
        "usage-write/v1\n{table}\n{}\n{}\n{}\n{rounds}.{transient}\n",
        group.user,
        group.platform,
        ctx.processed_at.timestamp_micros(),
    );
    for &i in pending {
        text.push_str(group.events[i].event_id.as_str());
        text.push('=');
        text.push_str(&group.fingerprints[i]);
        text.push('\n');
    }
    text.push_str(&plan.describe());
    if let Settle::Pending { hold, expired } = settle {
        text.push_str(&format!("\nsettle:{hold:?}:{expired}"));
    }
    if let Some(a) = applied {
        // The debit is computed from the account as read: its state is content.
        let b = &a.before;
        text.push_str(&format!(
            "\ncredits:{}:{}:{}:{}:{}",
            b.seq, b.available, b.total, b.used, a.entry.amount
        ));
    }
    uuid::Uuid::new_v5(&TOKEN_NAMESPACE, text.as_bytes()).to_string()
}

/// The account in a failed condition's `ALL_OLD` item; `None` when anything is
/// off, and the caller reads it afresh.
fn account_from_all_old(user: &UserId, item: &Item) -> Option<Account> {
    super::credits::account_from_item(user, item).ok()
}

/// The `consume` ledger change of a usage event: the entry's id and reference
/// are the event id, so the ledger names the event that spent the credits.
fn consume_change(event: &UsageEvent, credits: i64) -> Change {
    let description = match &event.model {
        Some(model) => format!("{} usage ({model})", event.platform),
        None => format!("{} usage", event.platform),
    };
    Change::consume(credits, CREDITS_CATEGORY_USAGE, &description)
        .with_id(event.event_id.as_str())
        .with_reference(event.event_id.as_str())
}

fn build_err(e: aws_sdk_dynamodb::error::BuildError) -> Error {
    Error::Internal(format!("usage write: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_comes_back_from_a_failed_condition() {
        let user = UserId::parse("alice").unwrap();
        let mut item = Item::from([
            ("available".to_string(), attr::n(-3)),
            ("total".to_string(), attr::n(10)),
            ("used".to_string(), attr::n(13)),
            ("seq".to_string(), attr::n(4)),
            (
                "updated_at".to_string(),
                attr::s("2026-11-21T10:00:00.000000Z"),
            ),
        ]);
        let a = account_from_all_old(&user, &item).unwrap();
        assert_eq!((a.available, a.total, a.used, a.seq), (-3, 10, 13, 4));
        item.remove("seq");
        assert!(account_from_all_old(&user, &item).is_none());
    }

    #[test]
    fn write_tokens_fit_and_follow_the_content() {
        use crate::domain::Platforms;
        let now = "2026-11-21T12:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let parse = |id: &str, cost: &str| {
            let body = format!(
                r#"{{"event_id":"{id}","user_id":"u","platform":"openai","cost_usd":"{cost}","occurred_at":"2026-11-21T11:00:00Z"}}"#
            );
            UsageEvent::parse(&body, &Platforms::defaults(), now).unwrap()
        };
        let (a, b) = (parse("a", "1"), parse("b", "2"));
        fn group<'a>(events: Vec<&'a UsageEvent>) -> Group<'a> {
            Group {
                user: &events[0].user_id,
                platform: &events[0].platform,
                fingerprints: events.iter().map(|e| e.fingerprint()).collect(),
                credits: None,
                reservation: None,
                events,
            }
        }
        let ctx = IngestContext {
            tz: Tz::UTC,
            processed_at: now,
            backoff: Backoff::default(),
            deadline: None,
        };
        let g = group(vec![&a, &b]);
        let plan = UsagePlan::new(&[&a, &b], Tz::UTC, now, None).unwrap();
        let token = |pending: &[usize], plan: &UsagePlan, attempt| {
            write_token("t", &g, pending, plan, None, &ctx, attempt, &Settle::Plain)
        };
        let first = token(&[0, 1], &plan, (1, 0));
        assert_eq!(first.len(), 36);
        // Deterministic: an SDK or redelivery resend of the same write matches.
        assert_eq!(first, token(&[0, 1], &plan, (1, 0)));
        // Anything else differs: another attempt, a dropped event, another plan.
        assert_ne!(first, token(&[0, 1], &plan, (2, 0)));
        assert_ne!(first, token(&[0, 1], &plan, (1, 1)));
        assert_ne!(first, token(&[0], &plan, (1, 0)));
        let restart = UsagePlan::new(&[&a, &b], Tz::UTC, now, Some(&[None; 3])).unwrap();
        assert_ne!(first, token(&[0, 1], &restart, (1, 0)));
        let b2 = parse("b", "2.5");
        let g2 = group(vec![&a, &b2]);
        assert_ne!(
            first,
            write_token("t", &g2, &[0, 1], &plan, None, &ctx, (1, 0), &Settle::Plain)
        );
        assert_ne!(
            first,
            write_token("t2", &g, &[0, 1], &plan, None, &ctx, (1, 0), &Settle::Plain)
        );
    }

    #[test]
    fn starts_read_from_an_item() {
        let item = Item::from([
            ("daily_start".to_string(), attr::n(100)),
            ("monthly_start".to_string(), attr::n(7)),
            ("daily_usage".to_string(), attr::n("1.5")),
        ]);
        assert_eq!(starts_from_item(&item).unwrap(), [Some(100), None, Some(7)]);
        let bad = Item::from([("weekly_start".to_string(), attr::n("x"))]);
        assert!(starts_from_item(&bad).is_err());
    }
}
