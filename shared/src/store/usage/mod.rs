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
//! 3. for the events with `credits`, ONE credit account update (from the
//!    account read to the last event's, conditioned on the `seq` read) and a
//!    `consume` ledger entry per event, their `seq`s consecutive. A group is
//!    as large as one transaction allows (100 actions: 99 events without
//!    credits, 49 with); an event settling a reservation is written alone.
//!
//! Every action asks for `ALL_OLD` on a failed condition, so a cancelled write
//! tells what is stored (the existing record, the quota item's window starts)
//! without another read; the write is re-planned and retried. The steady state
//! (windows current, no duplicates) is one request per group; a user with
//! credits in the batch adds one account read (later writes of the user start
//! from the account the last one left). Sends go through the one settled-send
//! path ([`DynamoStore::transact_settled`]); this loop re-plans only after a
//! cancellation.
//!
//! Records expire through TTL 16 days after processing, but correctness never
//! depends on TTL: a record still present after its expiry (TTL deletes late)
//! fails the `attribute_not_exists` condition and so still counts as a
//! duplicate; that errs on the side of never applying an event twice.

mod items;
mod learn;

use super::attr::Item;
use super::credits::CreditStore;
use super::reservations::hold_of_item;
use super::txn::{Backoff, Settled, SETTLE_BACKOFF};
use super::DynamoStore;
use crate::domain::credits::{Account, Applied, Change};
use crate::domain::reservation::{settle_releases, Hold, ReservationId, Status};
use crate::domain::usage::{
    write_groups, Recorded, StoredStarts, UsageEvent, UsagePlan, CREDITS_CATEGORY_USAGE,
};
use crate::domain::{Platform, UserId};
use crate::error::Error;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsOutput;
use aws_sdk_dynamodb::types::TransactWriteItem;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::time::Instant;

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
    /// The reservation the group's one event settles, if it names one.
    reservation: Option<&'a ReservationId>,
}

/// Per event of a group: which record holds its id, or why that is unknown.
type Outcome = Option<Result<Recorded, Arc<Error>>>;

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

/// One group's write across its attempts: what is left to write and what
/// the failed attempts taught.
struct WriteState {
    /// Events (indexes into the group) not resolved yet.
    pending: Vec<usize>,
    /// The credit account the next attempt plans against (as read, returned by
    /// a failed condition, or left by the user's previous write).
    account: Option<Account>,
    settle: Settle,
    /// Random, per group write: in its tokens, so another delivery that
    /// builds the very same write (same batch time and content) never meets
    /// this one's cached outcome and reads as applied by it too.
    nonce: uuid::Uuid,
    /// Attempts, and the bounds each failed attempt counts against.
    rounds: u32,
    transient: u32,
    replans: u32,
    contended: u32,
}

/// One attempt, planned: its actions and where each part sits in them.
struct Planned {
    actions: Vec<TransactWriteItem>,
    token: String,
    plan: UsagePlan,
    /// The quota item's starts the plan assumed.
    starts: Option<StoredStarts>,
    /// The `consume` entries, consecutive, of the events with credits.
    chain: Vec<Applied>,
    /// Index of the quota action (the records come first, one per pending event).
    quota_at: usize,
    /// Index of the account update (its ledger puts follow), with credits.
    account_at: Option<usize>,
    /// Index of the reservation's update, when the event settles one.
    settle_at: Option<usize>,
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
                reservation: first.reservation_id.as_ref(),
                events: group_events,
            };
            let mut outcomes: Vec<Outcome> = vec![None; write.len()];
            let error = self
                .record_group(&group, ctx, &mut known, &mut outcomes, &mut stats)
                .await
                .err()
                .map(Arc::new);
            for (outcome, &i) in outcomes.into_iter().zip(write) {
                let result = match (outcome, &error) {
                    (Some(r), _) => r,
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

    /// Writes one group until every event is resolved: recorded (by this
    /// write or an earlier one), or refused on its own (a debit the account
    /// cannot hold). An error leaves the rest unresolved (nothing written for
    /// them). Each round plans, sends through the one settled-send path, and
    /// learns from a cancellation.
    async fn record_group<'a>(
        &self,
        group: &Group<'a>,
        ctx: &IngestContext,
        known: &mut Known<'a>,
        outcomes: &mut [Outcome],
        stats: &mut WriteStats,
    ) -> Result<(), Error> {
        if group.reservation.is_some() && group.events.len() != 1 {
            return Err(Error::Internal(
                "an event settling a reservation is written on its own".into(),
            ));
        }
        let mut w = GroupWrite {
            store: self,
            group,
            ctx,
            known,
            outcomes,
            stats,
            state: WriteState {
                pending: (0..group.events.len()).collect(),
                account: None,
                settle: Settle::from_id(group.reservation, ctx.tz),
                nonce: uuid::Uuid::new_v4(),
                rounds: 0,
                transient: 0,
                replans: 0,
                contended: 0,
            },
        };
        loop {
            // Between attempts only: every attempt sent has a known outcome.
            if !w.state.pending.is_empty() && ctx.out_of_time(std::time::Duration::ZERO) {
                return Err(out_of_time());
            }
            let Some(planned) = w.plan().await? else {
                // Nothing left to write; the account read still holds.
                if w.state.account.is_some() {
                    w.known.account = w.state.account.take();
                }
                return Ok(());
            };
            w.stats.transactions += 1;
            let (sent, sends) = self
                .transact_settled_counted(
                    planned.actions.clone(),
                    &planned.token,
                    true,
                    &SETTLE_BACKOFF,
                )
                .await;
            w.stats.requests += u64::from(sends);
            match sent? {
                Settled::Committed(out) => {
                    w.committed(&planned, &out);
                    return Ok(());
                }
                Settled::Cancelled { reasons, .. } => {
                    self.retry_stats().replanned();
                    w.learn(&planned, &reasons).await?;
                }
            }
        }
    }
}

/// One group's write in progress: what it applies, what the user's writes
/// know, where its outcomes and costs go, and its own state.
struct GroupWrite<'w, 'a> {
    store: &'w DynamoStore,
    group: &'w Group<'a>,
    ctx: &'w IngestContext,
    known: &'w mut Known<'a>,
    outcomes: &'w mut [Outcome],
    stats: &'w mut WriteStats,
    state: WriteState,
}

impl GroupWrite<'_, '_> {
    /// Plans the next attempt for the pending events: the account (read once
    /// if nothing is known) and the `consume` chain of the events with
    /// credits, the quota plan, the settlement, the actions and the token.
    /// `None` once nothing is left to write.
    async fn plan(&mut self) -> Result<Option<Planned>, Error> {
        let chain = self.consume_chain().await?;
        let (store, group, ctx) = (self.store, self.group, self.ctx);
        let state = &mut self.state;
        if state.pending.is_empty() {
            return Ok(None);
        }
        state.rounds += 1;
        let events: Vec<&UsageEvent> = state.pending.iter().map(|&i| group.events[i]).collect();
        let starts = self.known.starts(group.platform);
        let plan = UsagePlan::new(&events, ctx.tz, ctx.processed_at, starts.as_ref())?;
        let mut actions = Vec::with_capacity(state.pending.len() * 2 + 3);
        for &i in &state.pending {
            actions.push(store.event_record_put(group.events[i], &group.fingerprints[i], ctx)?);
        }
        let (release, held_credits) = match &state.settle {
            Settle::Pending { hold, .. } => (
                Some((settle_releases(&plan, hold, starts.as_ref()), *hold)),
                hold.credits,
            ),
            Settle::Plain => (None, 0),
        };
        let quota_at = actions.len();
        actions.push(store.quota_usage_action(
            group.user,
            group.platform,
            &plan,
            release.as_ref(),
        )?);
        let account_at = match chain.is_empty() {
            true => None,
            false => {
                let at = actions.len();
                actions.extend(store.ledger_chain_actions(&chain, held_credits)?);
                Some(at)
            }
        };
        // After the events' own actions: the reservation's way out of pending,
        // and (without credits of its own) the credit hold's release.
        let mut settle_at = None;
        if let (Settle::Pending { hold, expired }, Some(id)) = (&state.settle, group.reservation) {
            settle_at = Some(actions.len());
            actions.push(store.settle_update(id, hold, events[0], *expired, ctx.processed_at)?);
            if chain.is_empty() && hold.credits > 0 {
                actions.push(store.credit_release_update(group.user, hold.credits)?);
            }
        }
        let token = write_token(store.table(), group, state, &plan, &chain, ctx);
        Ok(Some(Planned {
            actions,
            token,
            plan,
            starts,
            chain,
            quota_at,
            account_at,
            settle_at,
        }))
    }

    /// The `consume` entries of the pending events with credits, one after
    /// another from the account as known (read if unknown): consecutive
    /// `seq`s, each `balance_before` the previous `balance_after`. Usage may
    /// take the balance below zero; an event whose debit the account cannot
    /// hold at all (64-bit overflow) is refused alone and left out.
    async fn consume_chain(&mut self) -> Result<Vec<Applied>, Error> {
        let group = self.group;
        let with_credits = |i: &usize| group.events[*i].credits.is_some();
        if !self.state.pending.iter().any(with_credits) {
            return Ok(Vec::new());
        }
        let read = match self
            .state
            .account
            .take()
            .or_else(|| self.known.account.take())
        {
            Some(account) => account,
            None => {
                self.stats.requests += 1;
                self.store.credit_account(group.user).await?
            }
        };
        let mut chain: Vec<Applied> = Vec::new();
        let mut refused = Vec::new();
        for &i in &self.state.pending {
            let (event, Some(credits)) = (group.events[i], group.events[i].credits) else {
                continue;
            };
            let from = chain.last().map_or(&read, |a| &a.after);
            match from.apply(&consume_change(event, credits), self.ctx.processed_at) {
                Ok(applied) => chain.push(applied),
                Err(e) => refused.push((i, e)),
            }
        }
        for (i, e) in refused {
            self.state.pending.retain(|&p| p != i);
            self.outcomes[i] = Some(Err(Arc::new(e)));
        }
        self.state.account = Some(read);
        Ok(chain)
    }

    /// A committed write: every event it carried is recorded by it, and what
    /// it left seeds the user's next write.
    fn committed(&mut self, planned: &Planned, out: &TransactWriteItemsOutput) {
        let units: f64 = out
            .consumed_capacity()
            .iter()
            .filter_map(|c| c.capacity_units())
            .sum();
        self.store.stats().add_write_units(units);
        // Capacity is a metric: tenths are exact for DynamoDB's 0.5 steps.
        self.stats.write_units_tenths += (units * 10.0).round() as u64;
        for &i in &self.state.pending {
            self.outcomes[i] = Some(Ok(Recorded {
                fingerprint: self.group.fingerprints[i].clone(),
                applied_now: true,
            }));
        }
        self.known.set_starts(
            self.group.platform,
            planned.plan.starts_after(planned.starts.as_ref()),
        );
        self.known.account = match planned.chain.last() {
            Some(last) => Some(last.after.clone()),
            None => self.state.account.clone(),
        };
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
    /// The reservation an event settles, as its id describes it: the write is
    /// conditioned on the record agreeing, so no read is needed.
    fn from_id(id: Option<&ReservationId>, tz: Tz) -> Self {
        match id.and_then(ReservationId::hint) {
            Some(hint) => Settle::Pending {
                hold: Hold::from_hint(&hint, tz),
                expired: false,
            },
            None => Settle::Plain,
        }
    }

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

/// The write's `ClientRequestToken`: a UUID v5 (36 chars) of everything the
/// transaction contains (table, each event id with its payload fingerprint,
/// the processing time in the records, the quota plan), the attempt and the
/// group write's random nonce.
///
/// The SDK resends a request with the token it carries, so an attempt that
/// timed out after committing is answered from DynamoDB's token cache instead
/// of being applied again. The token changes whenever the content does (a
/// re-plan after a failed condition, a duplicate dropped, another batch), as
/// DynamoDB refuses a reused token with other parameters
/// (`IdempotentParameterMismatch`), and with the attempt number, so a retry
/// after a cancellation never meets a cached outcome. With the nonce, a
/// redelivery that builds the very same write (same batch time, a clock that
/// has not moved) fails on the records as a duplicate instead of being
/// answered from the first write's cache as if it had applied the events
/// itself (which would count them twice in `EventsApplied`). Exactly-once
/// itself rests on the record's `attribute_not_exists` condition, not on the
/// token.
fn write_token(
    table: &str,
    group: &Group<'_>,
    state: &WriteState,
    plan: &UsagePlan,
    chain: &[Applied],
    ctx: &IngestContext,
) -> String {
    let mut text = format!(
        "usage-write/v2\n{table}\n{}\n{}\n{}\n{}\n{}.{}\n",
        group.user,
        group.platform,
        ctx.processed_at.timestamp_micros(),
        state.nonce,
        state.rounds,
        state.transient,
    );
    for &i in &state.pending {
        text.push_str(group.events[i].event_id.as_str());
        text.push('=');
        text.push_str(&group.fingerprints[i]);
        text.push('\n');
    }
    text.push_str(&plan.describe());
    if let Settle::Pending { hold, expired } = &state.settle {
        text.push_str(&format!("\nsettle:{hold:?}:{expired}"));
    }
    if let Some(first) = chain.first() {
        // The debits are computed from the account as read: its state is content.
        let b = &first.before;
        text.push_str(&format!(
            "\ncredits:{}:{}:{}:{}",
            b.seq, b.available, b.total, b.used
        ));
        for a in chain {
            text.push_str(&format!(":{}", a.entry.amount));
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::attr;

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
                reservation: None,
                events,
            }
        }
        fn state(pending: &[usize], (rounds, transient): (u32, u32)) -> WriteState {
            WriteState {
                pending: pending.to_vec(),
                account: None,
                settle: Settle::Plain,
                nonce: uuid::Uuid::nil(),
                rounds,
                transient,
                replans: 0,
                contended: 0,
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
            write_token("t", &g, &state(pending, attempt), plan, &[], &ctx)
        };
        let first = token(&[0, 1], &plan, (1, 0));
        assert_eq!(first.len(), 36);
        // Deterministic: an SDK or redelivery resend of the same write matches.
        assert_eq!(first, token(&[0, 1], &plan, (1, 0)));
        // Anything else differs: another attempt, a dropped event, another plan.
        assert_ne!(first, token(&[0, 1], &plan, (2, 0)));
        assert_ne!(first, token(&[0, 1], &plan, (1, 1)));
        assert_ne!(first, token(&[0], &plan, (1, 0)));
        // Another group write (another delivery) of the same content.
        let mut other = state(&[0, 1], (1, 0));
        other.nonce = uuid::Uuid::new_v4();
        assert_ne!(first, write_token("t", &g, &other, &plan, &[], &ctx));
        let restart = UsagePlan::new(&[&a, &b], Tz::UTC, now, Some(&[None; 3])).unwrap();
        assert_ne!(first, token(&[0, 1], &restart, (1, 0)));
        let b2 = parse("b", "2.5");
        let g2 = group(vec![&a, &b2]);
        let s = state(&[0, 1], (1, 0));
        assert_ne!(first, write_token("t", &g2, &s, &plan, &[], &ctx));
        assert_ne!(first, write_token("t2", &g, &s, &plan, &[], &ctx));
        // The debits and the account they start from are content too.
        let account = Account::empty(UserId::parse("u").unwrap());
        let one = account
            .apply(&Change::consume(1, "usage", "x"), now)
            .unwrap();
        let two = one
            .after
            .apply(&Change::consume(2, "usage", "x"), now)
            .unwrap();
        let with_one = write_token("t", &g, &s, &plan, std::slice::from_ref(&one), &ctx);
        assert_ne!(first, with_one);
        assert_ne!(
            with_one,
            write_token("t", &g, &s, &plan, &[one.clone(), two], &ctx)
        );
    }
}
