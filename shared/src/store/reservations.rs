//! Reservations in DynamoDB (see `domain::reservation` for the rules).
//!
//! Record: pk `RESERVATION#{id}`, sk `RESERVATION`: `user_id`, `platform`,
//! `estimate_usd` (N), `credits` (N), `status`, `created_at` / `created_ms`,
//! `expires_at` / `expires_ms`, `{w}_hold_start` (N, the window each hold was
//! taken in), `request_id`?, and once finished `finished_at`,
//! `settled_cost_usd`?, `overage_usd`?, `event_id`?. While pending it is
//! listed on gsi1 under `RESERVATIONS_PENDING#{shard}` / `{expires_ms:013}#{id}`
//! (the expiry function's query); every way out of pending removes that entry.
//! TTL 16 days after creation.
//!
//! - reserve: ONE `TransactWriteItems`, no read: the record put
//!   (`attribute_not_exists`), the quota item's holds (per window `reserved +=
//!   e`, `headroom -= e`, conditioned on the window being current and
//!   `headroom ≥ e`), with credits the account's `held += c`, `spendable -= c`
//!   (conditioned on `spendable ≥ c`), and with an `Idempotency-Key` its
//!   completed record. A failed condition returns the item (`ALL_OLD`): the
//!   write is re-planned from it (rollover, no quota item) or refused.
//! - void / expire: the record `pending → voided|expired` (conditioned) and the
//!   releases in one `TransactWriteItems`; void reads the record first.
//! - settle: inside the usage event's own write (`store::usage`).

use super::attr::{self, Item};
use super::quota::{quota_from_item, window_attr, QuotaStore};
use super::txn::{Backoff, CancelReason, Settled, SETTLE_BACKOFF};
use super::{keys, Claim, DynamoStore, Lease, StoredResponse};
use crate::domain::quota::{QuotaCheck, QuotaRecord};
use crate::domain::reservation::overage;
use crate::domain::reservation::{
    plan_admission, plan_credit_hold, plan_release, refusal_check, CreditHold, Hold, HoldWrite,
    Refusal, Reservation, ReservationId, ReserveRequest, Status, StoredAccount, StoredWindow,
    PENDING_SHARDS, RECORD_RETENTION,
};
use crate::domain::usage::{StoredStarts, UsageEvent};
use crate::domain::{Platform, Platforms, Usd, UserId, WindowKind};
use crate::error::Error;
use aws_sdk_dynamodb::types::{
    AttributeValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use std::collections::HashMap;

pub const RESERVATION_SK: &str = "RESERVATION";
pub const PENDING_GSI_PREFIX: &str = "RESERVATIONS_PENDING#";
/// Attempts of one reserve / release before giving up (each failed condition
/// teaches the next attempt the stored state; conflicts back off).
const MAX_ATTEMPTS: u32 = 10;
/// Namespace of reservation write tokens (a fixed random UUID).
const TOKEN_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x2c4f_9a61_0b7d_4e38_a1c5_77e2_5d90_6b13);

pub fn reservation_pk(id: &str) -> String {
    format!("RESERVATION#{id}")
}

pub fn pending_gsi_pk(shard: u32) -> String {
    format!("{PENDING_GSI_PREFIX}{shard}")
}

fn pending_gsi_sk(expires_ms: i64, id: &ReservationId) -> String {
    format!("{expires_ms:013}#{id}")
}

/// What a reserve came to.
#[derive(Clone, Debug)]
pub enum ReserveOutcome {
    /// Held; 201.
    Created(Reservation),
    /// No room: nothing held; 200 with this Check.
    Refused(QuotaCheck),
    /// Same Idempotency-Key and body as an earlier reserve: its answer.
    Replay(StoredResponse),
}

/// The quota item and credit account as a failed condition returned them.
#[derive(Default)]
struct Learned {
    /// `Some(None)`: there is no quota item.
    quota: Option<Option<Item>>,
    /// `Some(None)`: there is no account.
    account: Option<Option<Item>>,
}

/// One reserve in progress: the request, the record it writes and what its
/// cancelled attempts learned.
struct ReserveAttempt<'a> {
    req: &'a ReserveRequest,
    now: DateTime<Utc>,
    tz: Tz,
    idem: Option<&'a Lease>,
    reservation: Reservation,
    learned: Learned,
}

/// Where the optional actions of a reserve's write stand (the record is
/// first, the quota item second).
#[derive(Default)]
struct ReserveSlots {
    account: Option<usize>,
    key: Option<usize>,
}

enum ReservePlan {
    Write(Vec<TransactWriteItem>, ReserveSlots),
    Refused(Box<QuotaCheck>),
}

/// What a cancelled reserve attempt taught.
enum Learnt {
    /// The answer is known (our own record, or the key's replay or refusal).
    Decided(Box<ReserveOutcome>),
    /// A failed condition returned the item as it is: plan again from it.
    Progressed,
    /// Only other transactions were in the way: pause, then plan again.
    Blocked,
}

impl ReserveAttempt<'_> {
    fn refusal(&self, record: &QuotaRecord, refusal: Refusal) -> QuotaCheck {
        refusal_check(record, refusal, self.req.estimate, self.now, self.tz)
    }

    /// Reads a cancelled attempt's reasons, in the order of its actions.
    fn learn(&mut self, reasons: &[CancelReason], slots: &ReserveSlots) -> Result<Learnt, Error> {
        let failed = |k: usize| {
            reasons
                .get(k)
                .is_some_and(CancelReason::is_condition_failed)
        };
        if failed(0) {
            // The id is fresh and random: only our own earlier send (whose
            // answer was lost) can hold it; resends under one token are
            // safe because the record is written once.
            let mine = reasons[0].item.as_ref().is_some_and(|item| {
                attr::opt_s(item, "user_id") == Some(self.req.user_id.as_str())
            });
            if mine {
                let created = ReserveOutcome::Created(self.reservation.clone());
                return Ok(Learnt::Decided(Box::new(created)));
            }
            return Err(Error::Internal("reservation id collision".into()));
        }
        let mut progressed = false;
        if failed(1) {
            self.learned.quota = Some(reasons[1].item.clone());
            progressed = true;
        }
        if let Some(k) = slots.account.filter(|&k| failed(k)) {
            self.learned.account = Some(reasons[k].item.clone());
            progressed = true;
        }
        if let (Some(k), Some(lease)) = (slots.key.filter(|&k| failed(k)), self.idem) {
            // The key is taken: its record answers (replay, 422, or 409).
            return match lease.answer(reasons[k].item.as_ref(), self.now)? {
                Some(Claim::Replay(stored)) => {
                    Ok(Learnt::Decided(Box::new(ReserveOutcome::Replay(stored))))
                }
                _ => Err(Error::IdempotencyKeyInUse),
            };
        }
        Ok(if progressed {
            Learnt::Progressed
        } else {
            Learnt::Blocked
        })
    }
}

impl DynamoStore {
    /// Holds `req` against every window of the platform and the credits, in one
    /// atomic write, or refuses and holds nothing. Each cancelled attempt
    /// learns the stored state from its failed conditions and plans again.
    pub async fn reserve(
        &self,
        req: &ReserveRequest,
        now: DateTime<Utc>,
        tz: Tz,
        idem: Option<&Lease>,
    ) -> Result<ReserveOutcome, Error> {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let mut attempt = ReserveAttempt {
            req,
            now,
            tz,
            idem,
            reservation: Reservation::new(req, now, tz, &nonce),
            learned: Learned::default(),
        };
        let current = attempt.reservation.hold.starts;
        let backoff = Backoff::default();
        let mut conflicts = 0u32;
        for n in 0..MAX_ATTEMPTS {
            let (actions, slots) = match self.plan_reserve(&mut attempt, current).await? {
                ReservePlan::Write(actions, slots) => (actions, slots),
                ReservePlan::Refused(check) => return Ok(ReserveOutcome::Refused(*check)),
            };
            let token = self.write_token(&format!("reserve\n{}\n{n}", attempt.reservation.id));
            let reasons = match self
                .transact_settled(actions, &token, false, &SETTLE_BACKOFF)
                .await?
            {
                Settled::Committed(_) => return Ok(ReserveOutcome::Created(attempt.reservation)),
                Settled::Cancelled { reasons, .. } => reasons,
            };
            self.retry_stats().replanned();
            match attempt.learn(&reasons, &slots)? {
                Learnt::Decided(outcome) => return Ok(*outcome),
                Learnt::Progressed => {}
                Learnt::Blocked => {
                    conflicts += 1;
                    tokio::time::sleep(backoff.delay(conflicts)).await;
                }
            }
        }
        Err(Error::Conflict(
            "the reservation could not be written: the quota item kept changing; retry".into(),
        ))
    }

    /// The next attempt's write from what is known: the holds of the quota
    /// item (or a refusal), the credit hold (or a refusal), the record and,
    /// with an `Idempotency-Key`, its completed record.
    async fn plan_reserve(
        &self,
        attempt: &mut ReserveAttempt<'_>,
        current: [i64; 3],
    ) -> Result<ReservePlan, Error> {
        let (req, learned) = (attempt.req, &attempt.learned);
        let stored_quota = match &learned.quota {
            None => None,
            Some(None) => Some(None),
            Some(Some(item)) => Some(Some(stored_windows(item)?)),
        };
        let plan = match plan_admission(
            stored_quota.as_ref().map(Option::as_ref),
            current,
            req.estimate,
        ) {
            Ok(plan) => plan,
            Err(refusal) => {
                let record = learned_record(learned, &req.platform)?;
                return Ok(ReservePlan::Refused(Box::new(
                    attempt.refusal(&record, refusal),
                )));
            }
        };
        let credit_plan = match req.credits {
            0 => None,
            credits => {
                let stored = match &learned.account {
                    None => None,
                    Some(None) => Some(None),
                    Some(Some(item)) => Some(Some(stored_account(item)?)),
                };
                match plan_credit_hold(stored.as_ref().map(Option::as_ref), credits) {
                    Ok(p) => Some(p),
                    Err(refusal) => {
                        let record = match &learned.quota {
                            Some(_) => learned_record(learned, &req.platform)?,
                            None => self.quota_record(&req.user_id, &req.platform).await?,
                        };
                        return Ok(ReservePlan::Refused(Box::new(
                            attempt.refusal(&record, refusal),
                        )));
                    }
                }
            }
        };
        let reservation = &mut attempt.reservation;
        reservation.hold.starts = plan.map(|w| w.start());
        let mut actions = vec![
            self.reservation_put(reservation)?,
            self.hold_update(&req.user_id, &req.platform, &plan, req.estimate)?,
        ];
        let mut slots = ReserveSlots::default();
        if let Some(p) = credit_plan {
            slots.account = Some(actions.len());
            actions.push(self.credit_hold_update(&req.user_id, p, req.credits)?);
        }
        if let Some(idem) = attempt.idem {
            let response = StoredResponse {
                status: 201,
                body: serde_json::to_string(&reservation.view()).unwrap_or_default(),
            };
            slots.key = Some(actions.len());
            actions.push(self.idempotency_complete_action(idem, &response, attempt.now)?);
        }
        Ok(ReservePlan::Write(actions, slots))
    }

    /// A deterministic `ClientRequestToken` for one write of this table.
    fn write_token(&self, what: &str) -> String {
        uuid::Uuid::new_v5(
            &TOKEN_NAMESPACE,
            format!("{}\n{what}", self.table()).as_bytes(),
        )
        .to_string()
    }

    /// One reservation (strongly consistent), `None` if unknown.
    pub async fn reservation(
        &self,
        id: &ReservationId,
        platforms: &Platforms,
    ) -> Result<Option<Reservation>, Error> {
        let key = keys::item_key(reservation_pk(id.as_str()), RESERVATION_SK);
        self.get_consistent(key)
            .await?
            .map(|item| reservation_from_item(&item, platforms))
            .transpose()
    }

    /// `DELETE`: releases a pending reservation's holds (read + one write). A
    /// reservation past its expiry is released as `expired` and answered as
    /// not pending, like one the expiry function already released.
    pub async fn void_reservation(
        &self,
        id: &ReservationId,
        platforms: &Platforms,
        now: DateTime<Utc>,
    ) -> Result<Reservation, Error> {
        let Some(reservation) = self.reservation(id, platforms).await? else {
            return Err(Error::ReservationNotFound);
        };
        if reservation.status != Status::Pending {
            return Err(Error::ReservationNotPending(reservation.status.to_string()));
        }
        let status = if reservation.expired_at(now) {
            Status::Expired
        } else {
            Status::Voided
        };
        match self.release(&reservation, status, now).await? {
            Some(done) if done.status == Status::Voided => Ok(done),
            Some(done) => Err(Error::ReservationNotPending(done.status.to_string())),
            None => match self.reservation(id, platforms).await? {
                Some(r) => Err(Error::ReservationNotPending(r.status.to_string())),
                None => Err(Error::ReservationNotFound),
            },
        }
    }

    /// The expiry sweep: releases every pending reservation whose `expires_at`
    /// has passed (gsi1, one query per shard). Returns how many this call
    /// released.
    pub async fn expire_reservations(
        &self,
        platforms: &Platforms,
        now: DateTime<Utc>,
    ) -> Result<usize, Error> {
        let mut released = 0;
        for shard in 0..PENDING_SHARDS {
            for item in self.pending_items(shard, Some(now), None).await? {
                let reservation = match reservation_from_item(&item, platforms) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(error = %e, "unreadable pending reservation");
                        continue;
                    }
                };
                // The index lags the table: the conditioned write decides.
                if reservation.status == Status::Pending && reservation.expired_at(now) {
                    match self.release(&reservation, Status::Expired, now).await {
                        Ok(Some(_)) => released += 1,
                        Ok(None) => {}
                        Err(e) => tracing::error!(
                            reservation = %reservation.id, error = %e,
                            "releasing an expired reservation failed; the next run retries"
                        ),
                    }
                }
            }
        }
        Ok(released)
    }

    /// Pending reservations (of `user`, or everyone's), soonest expiry first:
    /// one query per index shard, filtered (an operator's view, not a hot path).
    pub async fn pending_reservations(
        &self,
        user: Option<&UserId>,
        platforms: &Platforms,
    ) -> Result<Vec<Reservation>, Error> {
        let mut out = Vec::new();
        for shard in 0..PENDING_SHARDS {
            for item in self.pending_items(shard, None, user).await? {
                out.push(reservation_from_item(&item, platforms)?);
            }
        }
        out.retain(|r| r.status == Status::Pending);
        out.sort_by(|a, b| (a.expires_at, &a.id).cmp(&(b.expires_at, &b.id)));
        Ok(out)
    }

    /// The pending index's entries of `shard` (all pages): those expiring
    /// before `expired_by` if given, of `user` if given.
    async fn pending_items(
        &self,
        shard: u32,
        expired_by: Option<DateTime<Utc>>,
        user: Option<&UserId>,
    ) -> Result<Vec<Item>, Error> {
        self.query_all(|start_key| {
            let mut q = self
                .client()
                .query()
                .table_name(self.table())
                .index_name(keys::GSI1)
                .expression_attribute_names("#gpk", keys::GSI1_PK)
                .expression_attribute_values(":p", attr::s(pending_gsi_pk(shard)))
                .set_exclusive_start_key(start_key);
            q = match expired_by {
                Some(now) => q
                    .key_condition_expression("#gpk = :p AND #gsk < :now")
                    .expression_attribute_names("#gsk", keys::GSI1_SK)
                    .expression_attribute_values(
                        ":now",
                        attr::s(format!("{:013}", now.timestamp_millis())),
                    ),
                None => q.key_condition_expression("#gpk = :p"),
            };
            if let Some(user) = user {
                q = q
                    .filter_expression("#uid = :uid")
                    .expression_attribute_names("#uid", "user_id")
                    .expression_attribute_values(":uid", attr::s(user.as_str()));
            }
            q
        })
        .await
    }

    /// Moves a pending reservation to `status` (voided / expired) and releases
    /// its holds in one write. `None`: it was no longer pending.
    async fn release(
        &self,
        reservation: &Reservation,
        status: Status,
        now: DateTime<Utc>,
    ) -> Result<Option<Reservation>, Error> {
        let mut known: Option<StoredStarts> = None;
        let backoff = Backoff::default();
        let mut conflicts = 0u32;
        // Whether an earlier send may have committed with its answer lost.
        let mut maybe_done = false;
        let finished = || {
            let mut done = reservation.clone();
            done.status = status;
            Some(done)
        };
        for attempt in 0..MAX_ATTEMPTS {
            let windows = plan_release(&reservation.hold, known.as_ref());
            let (actions, quota_at) = self.release_actions(reservation, status, &windows, now)?;
            let token = self.write_token(&format!(
                "release\n{}\n{status}\n{attempt}\n{windows:?}",
                reservation.id
            ));
            let (reasons, after_unknown) = match self
                .transact_settled(actions, &token, false, &SETTLE_BACKOFF)
                .await?
            {
                Settled::Committed(_) => return Ok(finished()),
                Settled::Cancelled {
                    reasons,
                    after_unknown,
                } => (reasons, after_unknown),
            };
            self.retry_stats().replanned();
            maybe_done |= after_unknown;
            let failed = |k: usize| {
                reasons
                    .get(k)
                    .is_some_and(CancelReason::is_condition_failed)
            };
            if failed(0) {
                // No longer pending; after a send whose answer was lost, the
                // record may say it was this very write (its status and time).
                let ours = maybe_done
                    && reasons[0].item.as_ref().is_some_and(|item| {
                        attr::opt_s(item, "status") == Some(status.as_str())
                            && attr::opt_s(item, "finished_at")
                                == Some(attr::timestamp(now).as_str())
                    });
                return Ok(if ours { finished() } else { None });
            }
            match quota_at {
                Some(q) if failed(q) => {
                    known = Some(match reasons[q].item.as_ref() {
                        Some(item) => stored_windows(item)?.map(|w| w.start),
                        None => [None; 3],
                    });
                }
                _ => {
                    conflicts += 1;
                    tokio::time::sleep(backoff.delay(conflicts)).await;
                }
            }
        }
        Err(Error::Conflict(
            "the reservation could not be released; retry".into(),
        ))
    }

    /// A release's actions: the record's way out of pending, the quota item's
    /// releases of `windows` (and where that action stands), the credits.
    fn release_actions(
        &self,
        reservation: &Reservation,
        status: Status,
        windows: &[Option<i64>; 3],
        now: DateTime<Utc>,
    ) -> Result<(Vec<TransactWriteItem>, Option<usize>), Error> {
        let mut actions = vec![self.finish_update(reservation, status, now)?];
        let quota_at = match self.release_update(
            &reservation.user_id,
            &reservation.platform,
            windows,
            reservation.hold.estimate,
        )? {
            Some(action) => {
                actions.push(action);
                Some(actions.len() - 1)
            }
            None => None,
        };
        if reservation.hold.credits > 0 {
            actions
                .push(self.credit_release_update(&reservation.user_id, reservation.hold.credits)?);
        }
        Ok((actions, quota_at))
    }

    fn reservation_put(&self, r: &Reservation) -> Result<TransactWriteItem, Error> {
        let mut item = keys::item_key(reservation_pk(r.id.as_str()), RESERVATION_SK);
        item.insert("reservation_id".into(), attr::s(r.id.as_str()));
        item.insert("user_id".into(), attr::s(r.user_id.as_str()));
        item.insert("platform".into(), attr::s(r.platform.as_str()));
        item.insert("estimate_usd".into(), attr::usd(r.hold.estimate));
        item.insert("credits".into(), attr::n(r.hold.credits));
        item.insert("status".into(), attr::s(Status::Pending.as_str()));
        item.insert("created_at".into(), attr::s(attr::timestamp(r.created_at)));
        item.insert(
            "created_ms".into(),
            attr::n(r.created_at.timestamp_millis()),
        );
        item.insert("expires_at".into(), attr::s(attr::timestamp(r.expires_at)));
        let expires_ms = r.expires_at.timestamp_millis();
        item.insert("expires_ms".into(), attr::n(expires_ms));
        for (kind, start) in WindowKind::ALL.iter().zip(r.hold.starts) {
            item.insert(window_attr(*kind, "hold_start"), attr::n(start));
        }
        if let Some(v) = &r.request_id {
            item.insert("request_id".into(), attr::s(v));
        }
        item.insert(keys::GSI1_PK.into(), attr::s(pending_gsi_pk(r.id.shard())));
        item.insert(
            keys::GSI1_SK.into(),
            attr::s(pending_gsi_sk(expires_ms, &r.id)),
        );
        item.insert(
            keys::TTL.into(),
            attr::n((r.created_at + RECORD_RETENTION).timestamp()),
        );
        self.put_once_action(item)
    }

    /// The quota item's part of an admission (see [`HoldWrite`]).
    fn hold_update(
        &self,
        user: &UserId,
        platform: &Platform,
        plan: &[HoldWrite; 3],
        estimate: Usd,
    ) -> Result<TransactWriteItem, Error> {
        let mut e = Expr::default();
        e.value(":e", attr::usd(estimate));
        e.value(":zero", attr::n(0));
        for (kind, write) in WindowKind::ALL.iter().zip(plan) {
            let n = WindowNames::of(*kind, &mut e);
            match write {
                HoldWrite::Add { start } => {
                    let ks = e.value(&format!(":{}s", n.k), attr::n(start));
                    e.set(format!("{r} = if_not_exists({r}, :zero) + :e", r = n.r));
                    e.set(format!("{h} = if_not_exists({h}, :zero) - :e", h = n.h));
                    e.cond(format!(
                        "{s} = {ks} AND (attribute_not_exists({l}) OR ({h} >= :e AND {h} > :zero))",
                        s = n.s,
                        l = n.l,
                        h = n.h
                    ));
                }
                HoldWrite::Exact {
                    start,
                    rollover,
                    stored,
                } => {
                    let ks = e.value(&format!(":{}s", n.k), attr::n(start));
                    let limit0 = stored.limit.unwrap_or(Usd::ZERO);
                    match stored.limit {
                        Some(l) => {
                            let kl = e.value(&format!(":{}l", n.k), attr::usd(l));
                            e.cond(format!("{} = {kl}", n.l));
                        }
                        None => e.cond(format!("attribute_not_exists({})", n.l)),
                    }
                    if *rollover {
                        let kh = e.value(&format!(":{}h", n.k), attr::usd(limit0 - estimate));
                        e.set(format!("{} = :zero", n.u));
                        e.set(format!("{} = {ks}", n.s));
                        e.set(format!("{} = :e", n.r));
                        e.set(format!("{} = {kh}", n.h));
                        e.cond(format!(
                            "(attribute_not_exists({s}) OR {s} < {ks})",
                            s = n.s
                        ));
                    } else {
                        let after = stored.exact_headroom() - estimate;
                        let kh = e.value(&format!(":{}h", n.k), attr::usd(after));
                        let kr =
                            e.value(&format!(":{}r", n.k), attr::usd(stored.reserved + estimate));
                        e.set(format!("{} = {kr}", n.r));
                        e.set(format!("{} = {kh}", n.h));
                        e.cond(format!("{} = {ks}", n.s));
                        e.cond_amount(&n.u, &format!(":{}u", n.k), stored.usage);
                        e.cond_amount(&n.r, &format!(":{}ro", n.k), stored.reserved);
                    }
                }
            }
        }
        let update = e
            .update(self.table(), quota_key(user, platform))
            .build()
            .map_err(attr::build_err)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Releases `estimate` from each window planned (`Some(start)`: conditioned
    /// on that start). `None` if no window has anything to release.
    fn release_update(
        &self,
        user: &UserId,
        platform: &Platform,
        windows: &[Option<i64>; 3],
        estimate: Usd,
    ) -> Result<Option<TransactWriteItem>, Error> {
        if windows.iter().all(Option::is_none) {
            return Ok(None);
        }
        let mut e = Expr::default();
        e.value(":e", attr::usd(estimate));
        e.value(":zero", attr::n(0));
        for (kind, start) in WindowKind::ALL.iter().zip(windows) {
            let Some(start) = start else { continue };
            let n = WindowNames::of(*kind, &mut e);
            let ks = e.value(&format!(":{}s", n.k), attr::n(start));
            e.set(format!("{r} = if_not_exists({r}, :zero) - :e", r = n.r));
            e.set(format!("{h} = if_not_exists({h}, :zero) + :e", h = n.h));
            e.cond(format!("{} = {ks}", n.s));
        }
        let update = e
            .update(self.table(), quota_key(user, platform))
            .build()
            .map_err(attr::build_err)?;
        Ok(Some(TransactWriteItem::builder().update(update).build()))
    }

    fn credit_hold_update(
        &self,
        user: &UserId,
        plan: CreditHold,
        credits: i64,
    ) -> Result<TransactWriteItem, Error> {
        let mut e = Expr::default();
        e.value(":c", attr::n(credits));
        e.name("#held", "held");
        e.name("#sp", "spendable");
        match plan {
            CreditHold::Add => {
                e.value(":zero", attr::n(0));
                e.set("#held = if_not_exists(#held, :zero) + :c".into());
                e.set("#sp = #sp - :c".into());
                e.cond("#sp >= :c".into());
            }
            CreditHold::Exact { available, held } => {
                e.name("#av", "available");
                e.value(":av", attr::n(available));
                e.value(":ha", attr::n(held.saturating_add(credits)));
                e.value(
                    ":spa",
                    attr::n(available.saturating_sub(held).saturating_sub(credits)),
                );
                e.set("#held = :ha".into());
                e.set("#sp = :spa".into());
                e.cond("#av = :av".into());
                e.cond_amount_i64("#held", ":hb", held);
            }
        }
        let key = keys::item_key(keys::user_pk(user.as_str()), keys::CREDITS_SK);
        let update = e
            .update(self.table(), key)
            .build()
            .map_err(attr::build_err)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Gives `credits` held by a reservation back to the spendable balance.
    pub(crate) fn credit_release_update(
        &self,
        user: &UserId,
        credits: i64,
    ) -> Result<TransactWriteItem, Error> {
        let key = keys::item_key(keys::user_pk(user.as_str()), keys::CREDITS_SK);
        let update = Update::builder()
            .table_name(self.table())
            .set_key(Some(key))
            .update_expression(
                "SET #held = if_not_exists(#held, :zero) - :c, #sp = if_not_exists(#sp, :zero) + :c",
            )
            .expression_attribute_names("#held", "held")
            .expression_attribute_names("#sp", "spendable")
            .expression_attribute_values(":c", attr::n(credits))
            .expression_attribute_values(":zero", attr::n(0))
            .build()
            .map_err(attr::build_err)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// The record's way out of pending (voided / expired), conditioned on it
    /// still being pending (an expiry also on its time having passed).
    fn finish_update(
        &self,
        r: &Reservation,
        status: Status,
        now: DateTime<Utc>,
    ) -> Result<TransactWriteItem, Error> {
        let mut update = Update::builder()
            .table_name(self.table())
            .set_key(Some(keys::item_key(
                reservation_pk(r.id.as_str()),
                RESERVATION_SK,
            )))
            .update_expression("SET #st = :st, finished_at = :now REMOVE #gpk, #gsk")
            .expression_attribute_names("#st", "status")
            .expression_attribute_names("#gpk", keys::GSI1_PK)
            .expression_attribute_names("#gsk", keys::GSI1_SK)
            .expression_attribute_values(":st", attr::s(status.as_str()))
            .expression_attribute_values(":pending", attr::s(Status::Pending.as_str()))
            .expression_attribute_values(":now", attr::s(attr::timestamp(now)))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        update = if status == Status::Expired {
            update
                .condition_expression("#st = :pending AND expires_ms <= :now_ms")
                .expression_attribute_values(":now_ms", attr::n(now.timestamp_millis()))
        } else {
            update.condition_expression("#st = :pending")
        };
        Ok(TransactWriteItem::builder()
            .update(update.build().map_err(attr::build_err)?)
            .build())
    }

    /// The settling event's action on the reservation record: `pending →
    /// settled` with the actual cost (or, past its expiry, `→ expired` while
    /// the event applies as a plain one), conditioned on the record holding
    /// exactly `hold` for this user and platform.
    pub(crate) fn settle_update(
        &self,
        id: &ReservationId,
        hold: &Hold,
        event: &UsageEvent,
        expired: bool,
        now: DateTime<Utc>,
    ) -> Result<TransactWriteItem, Error> {
        let mut e = Expr::default();
        for (n, a) in [
            ("#st", "status"),
            ("#uid", "user_id"),
            ("#pf", "platform"),
            ("#est", "estimate_usd"),
            ("#cr", "credits"),
            ("#exp", "expires_ms"),
            ("#fin", "finished_at"),
            ("#gpk", keys::GSI1_PK),
            ("#gsk", keys::GSI1_SK),
        ] {
            e.name(n, a);
        }
        e.value(":pending", attr::s(Status::Pending.as_str()));
        e.value(":uid", attr::s(event.user_id.as_str()));
        e.value(":pf", attr::s(event.platform.as_str()));
        e.value(":est", attr::usd(hold.estimate));
        e.value(":cr", attr::n(hold.credits));
        e.value(":now_ms", attr::n(now.timestamp_millis()));
        e.value(":now", attr::s(attr::timestamp(now)));
        e.cond("#st = :pending AND #uid = :uid AND #pf = :pf AND #est = :est AND #cr = :cr".into());
        for (kind, start) in WindowKind::ALL.iter().zip(hold.starts) {
            let n = format!("#{}hst", &kind.as_str()[..1]);
            let v = format!(":{}hst", &kind.as_str()[..1]);
            e.name(&n, &window_attr(*kind, "hold_start"));
            e.value(&v, attr::n(start));
            e.cond(format!("{n} = {v}"));
        }
        e.set("#fin = :now".into());
        if expired {
            e.value(":st", attr::s(Status::Expired.as_str()));
            e.set("#st = :st".into());
            e.cond("#exp <= :now_ms".into());
        } else {
            e.value(":st", attr::s(Status::Settled.as_str()));
            e.name("#cost", "settled_cost_usd");
            e.name("#eid", "event_id");
            e.value(":cost", attr::usd(event.cost));
            e.value(":eid", attr::s(event.event_id.as_str()));
            e.set("#st = :st, #cost = :cost, #eid = :eid".into());
            if let Some(over) = overage(hold.estimate, event.cost) {
                e.name("#ov", "overage_usd");
                e.value(":ov", attr::usd(over));
                e.set("#ov = :ov".into());
            }
            e.cond("#exp > :now_ms".into());
        }
        e.remove("#gpk, #gsk".into());
        let key = keys::item_key(reservation_pk(id.as_str()), RESERVATION_SK);
        let update = e
            .update(self.table(), key)
            .build()
            .map_err(attr::build_err)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}

fn quota_key(user: &UserId, platform: &Platform) -> Item {
    keys::item_key(
        keys::user_pk(user.as_str()),
        keys::quota_sk(platform.as_str()),
    )
}

/// The quota record a failed admission learned (unlimited if there is none).
fn learned_record(learned: &Learned, platform: &Platform) -> Result<QuotaRecord, Error> {
    match &learned.quota {
        Some(Some(item)) => quota_from_item(item),
        _ => Ok(QuotaRecord::unlimited(platform.as_str())),
    }
}

/// The windows of a stored quota item.
pub(crate) fn stored_windows(item: &Item) -> Result<[StoredWindow; 3], Error> {
    let mut out = [StoredWindow::default(); 3];
    for (slot, kind) in out.iter_mut().zip(WindowKind::ALL) {
        *slot = StoredWindow {
            limit: attr::opt_usd(item, &window_attr(kind, "limit"))?,
            usage: attr::opt_usd(item, &window_attr(kind, "usage"))?.unwrap_or_default(),
            reserved: attr::opt_usd(item, &window_attr(kind, "reserved"))?.unwrap_or_default(),
            headroom: attr::opt_usd(item, &window_attr(kind, "headroom"))?,
            start: attr::opt_i64(item, &window_attr(kind, "start"))?,
        };
    }
    Ok(out)
}

fn stored_account(item: &Item) -> Result<StoredAccount, Error> {
    Ok(StoredAccount {
        available: attr::opt_i64(item, "available")?.unwrap_or(0),
        held: attr::opt_i64(item, "held")?.unwrap_or(0),
        spendable: attr::opt_i64(item, "spendable")?,
    })
}

pub(crate) fn reservation_from_item(
    item: &Item,
    platforms: &Platforms,
) -> Result<Reservation, Error> {
    let time = |name: &str| attr::get_time(item, name);
    let mut starts = [0; 3];
    for (slot, kind) in starts.iter_mut().zip(WindowKind::ALL) {
        *slot = attr::get_i64(item, &window_attr(kind, "hold_start"))?;
    }
    let status = attr::get_s(item, "status")?;
    Ok(Reservation {
        id: ReservationId::parse(attr::get_s(item, "reservation_id")?)?,
        user_id: UserId::parse(attr::get_s(item, "user_id")?)?,
        platform: platforms.parse(attr::get_s(item, "platform")?)?,
        hold: Hold {
            estimate: attr::opt_usd(item, "estimate_usd")?.unwrap_or_default(),
            credits: attr::get_i64(item, "credits")?,
            starts,
        },
        status: Status::parse(status)
            .ok_or_else(|| Error::Internal(format!("stored reservation status {status:?}")))?,
        created_at: time("created_at")?,
        expires_at: time("expires_at")?,
        settled_cost: attr::opt_usd(item, "settled_cost_usd")?,
        overage: attr::opt_usd(item, "overage_usd")?,
        event_id: attr::opt_s(item, "event_id").map(str::to_string),
        request_id: attr::opt_s(item, "request_id").map(str::to_string),
    })
}

/// A pending reservation as read from a failed settle condition (`ALL_OLD`).
pub(crate) fn hold_of_item(item: &Item) -> Option<(Status, i64, Hold, String, String)> {
    let mut starts = [0; 3];
    for (slot, kind) in starts.iter_mut().zip(WindowKind::ALL) {
        *slot = attr::opt_i64(item, &window_attr(kind, "hold_start"))
            .ok()
            .flatten()?;
    }
    Some((
        Status::parse(attr::opt_s(item, "status")?)?,
        attr::opt_i64(item, "expires_ms").ok().flatten()?,
        Hold {
            estimate: attr::opt_usd(item, "estimate_usd").ok().flatten()?,
            credits: attr::opt_i64(item, "credits").ok().flatten()?,
            starts,
        },
        attr::opt_s(item, "user_id")?.to_string(),
        attr::opt_s(item, "platform")?.to_string(),
    ))
}

/// Names of one window's attributes in an expression (`#du`, `#ds`, ...).
pub(crate) struct WindowNames {
    pub k: &'static str,
    pub u: String,
    pub s: String,
    pub r: String,
    pub h: String,
    pub l: String,
}

impl WindowNames {
    pub(crate) fn of(kind: WindowKind, e: &mut Expr) -> Self {
        let k = &kind.as_str()[..1];
        let mut name = |suffix: &str, field: &str| {
            let n = format!("#{k}{suffix}");
            e.pending_names.push((n.clone(), window_attr(kind, field)));
            n
        };
        Self {
            k,
            u: name("u", "usage"),
            s: name("s", "start"),
            r: name("r", "reserved"),
            h: name("h", "headroom"),
            l: name("l", "limit"),
        }
    }
}

/// A small builder of update expressions: only names and values that the
/// expressions use are sent (DynamoDB refuses unused ones).
#[derive(Default)]
pub(crate) struct Expr {
    sets: Vec<String>,
    removes: Vec<String>,
    conds: Vec<String>,
    names: HashMap<String, String>,
    pending_names: Vec<(String, String)>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    pub(crate) fn name(&mut self, n: &str, attr: &str) {
        self.names.insert(n.to_string(), attr.to_string());
    }

    pub(crate) fn value(&mut self, name: &str, v: AttributeValue) -> String {
        self.values.insert(name.to_string(), v);
        name.to_string()
    }

    pub(crate) fn set(&mut self, s: String) {
        self.sets.push(s);
    }

    pub(crate) fn remove(&mut self, r: String) {
        self.removes.push(r);
    }

    pub(crate) fn cond(&mut self, c: String) {
        self.conds.push(c);
    }

    /// `attr = :v`, or absent when `v` is zero.
    fn cond_amount(&mut self, attr: &str, placeholder: &str, v: Usd) {
        if v.is_zero() {
            self.value(":zero", attr::n(0));
            self.cond(format!("(attribute_not_exists({attr}) OR {attr} = :zero)"));
        } else {
            self.value(placeholder, attr::usd(v));
            self.cond(format!("{attr} = {placeholder}"));
        }
    }

    fn cond_amount_i64(&mut self, attr: &str, placeholder: &str, v: i64) {
        if v == 0 {
            self.value(":zero", attr::n(0));
            self.cond(format!("(attribute_not_exists({attr}) OR {attr} = :zero)"));
        } else {
            self.value(placeholder, attr::n(v));
            self.cond(format!("{attr} = {placeholder}"));
        }
    }

    pub(crate) fn has_sets(&self) -> bool {
        !self.sets.is_empty()
    }

    /// The condition alone (for a `ConditionCheck`), with its names and values.
    pub(crate) fn condition_parts(
        mut self,
    ) -> (
        String,
        HashMap<String, String>,
        HashMap<String, AttributeValue>,
    ) {
        self.sets.clear();
        let cond_text = self.conds.join(" AND ");
        let (names, values) = self.used(&cond_text);
        (cond_text, names, values)
    }

    fn used(&mut self, all: &str) -> (HashMap<String, String>, HashMap<String, AttributeValue>) {
        for (n, a) in std::mem::take(&mut self.pending_names) {
            self.names.insert(n, a);
        }
        let mentions = |token: &str| {
            all.match_indices(token).any(|(i, _)| {
                !all[i + token.len()..]
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            })
        };
        let names = std::mem::take(&mut self.names)
            .into_iter()
            .filter(|(n, _)| mentions(n))
            .collect();
        let values = std::mem::take(&mut self.values)
            .into_iter()
            .filter(|(n, _)| mentions(n))
            .collect();
        (names, values)
    }

    /// The update, with only the names and values its expressions mention.
    pub(crate) fn update(
        mut self,
        table: &str,
        key: Item,
    ) -> aws_sdk_dynamodb::types::builders::UpdateBuilder {
        let mut update_text = format!("SET {}", self.sets.join(", "));
        if !self.removes.is_empty() {
            update_text.push_str(&format!(" REMOVE {}", self.removes.join(", ")));
        }
        let cond_text = self.conds.join(" AND ");
        let all = format!("{update_text} {cond_text}");
        let (names, values) = self.used(&all);
        let mut b = Update::builder()
            .table_name(table)
            .set_key(Some(key))
            .update_expression(update_text)
            .set_expression_attribute_names((!names.is_empty()).then_some(names))
            .set_expression_attribute_values((!values.is_empty()).then_some(values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if !cond_text.is_empty() {
            b = b.condition_expression(cond_text);
        }
        b
    }
}
