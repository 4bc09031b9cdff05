//! What each operation costs in DynamoDB requests, in its steady state: one
//! place that sets each operation up, runs it a few times and counts, shared
//! by the request-budget tests (`tests/integration/costs.rs`) and `make bench`
//! (which also meters capacity units on the wire, [`crate::Meter`]).
//!
//! The budgets are the contract's (the API's request budget) and the "Lean
//! core" issue's targets, copied here as numbers.

use crate::{Meter, Tally, TestEnv};
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use spendguard_core::Clock;

/// The clock every measurement starts at (mid-day, mid-week, mid-month).
pub const NOW: &str = "2026-11-18T12:00:00Z";
pub const PLATFORM: &str = "openai";
/// Items a list page is measured with (the API's default page size is 20).
const LIST_ITEMS: usize = 25;

pub fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(NOW)
        .expect("NOW")
        .with_timezone(&Utc)
}

/// An operation whose cost is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    QuotaCheck,
    UsageEventSteady,
    UsageEventRollover,
    UsageEventCredits,
    UsageBatch10,
    UsageBatch1000,
    UsageBatch10Credits,
    ReservationCreate,
    ReservationSettle,
    ReservationVoid,
    CreditAdjust,
    RedeemSuccess,
    RedeemRefusedUnknown,
    RedeemRefusedExhausted,
    ListLedger,
    ListAudit,
    ListCodes,
    ListRedemptions,
    ListAlerts,
}

impl Operation {
    pub const ALL: [Operation; 19] = [
        Operation::QuotaCheck,
        Operation::UsageEventSteady,
        Operation::UsageEventRollover,
        Operation::UsageEventCredits,
        Operation::UsageBatch10,
        Operation::UsageBatch1000,
        Operation::UsageBatch10Credits,
        Operation::ReservationCreate,
        Operation::ReservationSettle,
        Operation::ReservationVoid,
        Operation::CreditAdjust,
        Operation::RedeemSuccess,
        Operation::RedeemRefusedUnknown,
        Operation::RedeemRefusedExhausted,
        Operation::ListLedger,
        Operation::ListAudit,
        Operation::ListCodes,
        Operation::ListRedemptions,
        Operation::ListAlerts,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Operation::QuotaCheck => "quota check",
            Operation::UsageEventSteady => "usage event, steady",
            Operation::UsageEventRollover => "usage event at a daily window rollover",
            Operation::UsageEventCredits => "usage event with credits",
            Operation::UsageBatch10 => "10 events of one user per batch (per event)",
            Operation::UsageBatch1000 => "1,000 events of one user per batch (per event)",
            Operation::UsageBatch10Credits => {
                "10 events with credits of one user per batch (per event)"
            }
            Operation::ReservationCreate => "reservation create",
            Operation::ReservationSettle => "reservation settle (the usage event naming it)",
            Operation::ReservationVoid => "reservation void",
            Operation::CreditAdjust => "credit adjust apply with Idempotency-Key",
            Operation::RedeemSuccess => "redeem with Idempotency-Key, success",
            Operation::RedeemRefusedUnknown => "redeem refused: unknown code",
            Operation::RedeemRefusedExhausted => "redeem refused: exhausted code",
            Operation::ListLedger => "admin page: credit transactions",
            Operation::ListAudit => "admin page: audit log",
            Operation::ListCodes => "admin page: redemption codes",
            Operation::ListRedemptions => "admin page: redemptions of a code",
            Operation::ListAlerts => "admin page: alerts (empty: no change stream here)",
        }
    }

    /// The request budget per operation (per event for the batches), and
    /// where it comes from; `None` where no document sets one.
    pub fn budget(self) -> Option<(f64, &'static str)> {
        const LEAN: &str = "Lean core";
        const API: &str = "API";
        Some(match self {
            Operation::QuotaCheck => (1.0, LEAN),
            Operation::UsageEventSteady => (1.0, API),
            Operation::UsageEventCredits => (2.0, API),
            Operation::UsageBatch10 => (0.1, LEAN),
            Operation::UsageBatch10Credits => (0.3, LEAN),
            Operation::ReservationCreate => (1.0, API),
            // Settling adds nothing to the event's own (steady: one) write.
            Operation::ReservationSettle => (1.0, API),
            Operation::ReservationVoid => (2.0, API),
            Operation::CreditAdjust => (2.0, LEAN),
            Operation::RedeemSuccess => (3.0, LEAN),
            Operation::RedeemRefusedUnknown | Operation::RedeemRefusedExhausted => (4.0, LEAN),
            _ => return None,
        })
    }
}

impl Operation {
    /// The most requests `self` may cost per operation (per event for the
    /// batches), and why: its budget where a document sets one, otherwise
    /// what the design sends. `tests/integration/costs.rs` asserts it for every
    /// row of `make bench`'s section 1, so a regression fails CI; the report's
    /// target column shows only the documents' budgets.
    pub fn ceiling(self) -> (f64, &'static str) {
        if let Some(budget) = self.budget() {
            return budget;
        }
        match self {
            Operation::UsageEventRollover => (
                2.0,
                "design: the write meeting a new window fails its condition once, learns the stored starts from ALL_OLD and writes again",
            ),
            // 1,000 events in writes of at most 99 (100 actions per transaction).
            Operation::UsageBatch1000 => (
                11.0 / 1000.0,
                "design: one write per 99 events of a user",
            ),
            Operation::ListLedger | Operation::ListAudit | Operation::ListAlerts => {
                (1.0, "design: one Query per page")
            }
            Operation::ListCodes => (2.0, "design: the newest batch, then its codes"),
            Operation::ListRedemptions => (
                2.0,
                "design: the code (404 when unknown), then its redemptions",
            ),
            _ => unreachable!("every other operation has a budget"),
        }
    }
}

/// Counts over `ops` operations (events, for the usage rows).
#[derive(Clone, Copy, Debug)]
pub struct Cost {
    pub ops: usize,
    /// Operations the store sent (one per call, however many attempts).
    pub requests: u64,
    /// Transmissions, the SDK's retries included.
    pub attempts: u64,
    /// On the wire, when metered.
    pub wire: Option<Tally>,
}

impl Cost {
    pub fn requests_per_op(&self) -> f64 {
        self.requests as f64 / self.ops as f64
    }

    pub fn retries_per_op(&self) -> f64 {
        (self.attempts - self.requests) as f64 / self.ops as f64
    }

    pub fn per_op(&self, value: f64) -> f64 {
        value / self.ops as f64
    }
}

/// A fresh world for one measurement, metered or not.
pub async fn world(metered: bool) -> (TestEnv, Option<Meter>) {
    let clock = Clock::manual(now());
    if metered {
        if let Some((env, meter)) = TestEnv::metered(clock.clone()).await {
            return (env, Some(meter));
        }
    }
    (TestEnv::build(|_| {}, clock).await, None)
}

/// Counters before an operation; [`Mark::cost`] after it.
pub struct Mark<'a> {
    env: &'a TestEnv,
    meter: Option<&'a Meter>,
    requests: u64,
    attempts: u64,
    wire: Option<Tally>,
}

impl<'a> Mark<'a> {
    pub fn new(env: &'a TestEnv, meter: Option<&'a Meter>) -> Self {
        Self {
            env,
            meter,
            requests: env.store.stats().requests(),
            attempts: env.store.stats().attempts(),
            wire: meter.map(Meter::tally),
        }
    }

    pub fn cost(&self, ops: usize) -> Cost {
        Cost {
            ops,
            requests: self.env.store.stats().requests() - self.requests,
            attempts: self.env.store.stats().attempts() - self.attempts,
            wire: self.meter.zip(self.wire).map(|(m, w)| m.tally() - w),
        }
    }
}

/// A usage event body.
pub fn event(id: &str, user: &str, at: DateTime<Utc>) -> Value {
    json!({
        "event_id": id, "user_id": user, "platform": PLATFORM,
        "cost_usd": "0.0125", "occurred_at": at.to_rfc3339(), "model": "bench-model",
    })
}

/// Daily, weekly and monthly limits far above what a measurement spends.
pub async fn set_quota(env: &TestEnv, user: &str) {
    env.put(&format!("/v1/admin/users/{user}/quotas"))
        .as_admin()
        .json(
            &json!({"quotas": [{"platform": PLATFORM, "daily_limit_usd": "100000",
            "weekly_limit_usd": "500000", "monthly_limit_usd": "2000000"}]}),
        )
        .send()
        .await
        .assert_status(200);
}

async fn adjust(env: &TestEnv, user: &str, delta: i64, key: &str) {
    env.post(&format!("/v1/admin/users/{user}/credits/adjust"))
        .as_admin()
        .header("idempotency-key", key)
        .json(&json!({"delta": delta, "reason": "bench"}))
        .send()
        .await
        .assert_status(200);
}

async fn reserve(env: &TestEnv, user: &str) -> String {
    let res = env
        .post("/v1/quota/reservations")
        .as_service()
        .json(&json!({"user_id": user, "platform": PLATFORM, "estimate_usd": "0.02"}))
        .send()
        .await;
    res.assert_status(201);
    res.body["reservation_id"]
        .as_str()
        .expect("reservation id")
        .to_string()
}

async fn codes(env: &TestEnv, count: usize, max_uses: usize) -> Vec<String> {
    let res = env
        .post("/v1/admin/redemption-codes")
        .as_admin()
        .json(&json!({"count": count, "credits": 10, "max_uses": max_uses}))
        .send()
        .await;
    res.assert_status(201);
    res.body["codes"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|c| c.as_str().expect("code").to_string())
        .collect()
}

async fn redeem(env: &TestEnv, user: &str, code: &str, key: &str, status: u16) {
    let res = env
        .post("/v1/me/redemptions")
        .as_user(user)
        .header("idempotency-key", key)
        .json(&json!({ "code": code }))
        .send()
        .await;
    assert_eq!(res.status, status, "redeem: {}", res.text);
}

async fn page(env: &TestEnv, path: &str) {
    env.get(path).as_admin().send().await.assert_status(200);
}

/// Measures `op` in its steady state (each is warmed once first), `metered`
/// through a [`Meter`] for capacity units as well.
pub async fn measure(op: Operation, metered: bool) -> Cost {
    let (env, meter) = world(metered).await;
    let (env, meter) = (&env, meter.as_ref());
    let user = "bench-user";
    let t = now();
    match op {
        Operation::QuotaCheck => {
            set_quota(env, user).await;
            let body = json!({"user_id": user, "platform": PLATFORM});
            let check = || async {
                let res = env
                    .post("/v1/quota/check")
                    .as_service()
                    .json(&body)
                    .send()
                    .await;
                res.assert_status(200);
            };
            check().await;
            let mark = Mark::new(env, meter);
            for _ in 0..10 {
                check().await;
            }
            mark.cost(10)
        }
        Operation::UsageEventSteady | Operation::UsageEventCredits => {
            set_quota(env, user).await;
            let credits = op == Operation::UsageEventCredits;
            if credits {
                adjust(env, user, 1_000_000, "grant").await;
            }
            let ev = |i: usize| {
                let mut e = event(&format!("e-{i}"), user, t);
                if credits {
                    e["credits"] = 1.into();
                }
                e
            };
            env.ingest_all(&[ev(0)]).await;
            let mark = Mark::new(env, meter);
            for i in 1..=10 {
                env.ingest_all(&[ev(i)]).await;
            }
            mark.cost(10)
        }
        Operation::UsageEventRollover => {
            set_quota(env, user).await;
            env.ingest_all(&[event("e-0", user, t)]).await;
            let mut cost: Option<Cost> = None;
            for day in 1..=3 {
                let at = t + Duration::days(day);
                env.clock.set(at);
                let mark = Mark::new(env, meter);
                env.ingest_all(&[event(&format!("e-{day}"), user, at)])
                    .await;
                cost = Some(add(cost, mark.cost(1)));
            }
            cost.expect("measured")
        }
        Operation::UsageBatch10 | Operation::UsageBatch1000 | Operation::UsageBatch10Credits => {
            set_quota(env, user).await;
            let credits = op == Operation::UsageBatch10Credits;
            if credits {
                adjust(env, user, 1_000_000, "grant").await;
            }
            let (size, batches) = match op {
                Operation::UsageBatch1000 => (1_000, 1),
                _ => (10, 3),
            };
            let batch = |b: usize| -> Vec<Value> {
                (0..size)
                    .map(|i| {
                        let mut e = event(&format!("b{b}-{i}"), user, t);
                        if credits {
                            e["credits"] = 1.into();
                        }
                        e
                    })
                    .collect()
            };
            env.ingest_all(&batch(0)).await;
            let mark = Mark::new(env, meter);
            for b in 1..=batches {
                env.ingest_all(&batch(b)).await;
            }
            mark.cost(size * batches)
        }
        Operation::ReservationCreate => {
            set_quota(env, user).await;
            reserve(env, user).await;
            let mark = Mark::new(env, meter);
            for _ in 0..10 {
                reserve(env, user).await;
            }
            mark.cost(10)
        }
        Operation::ReservationSettle | Operation::ReservationVoid => {
            set_quota(env, user).await;
            env.ingest_all(&[event("warm", user, t)]).await;
            let mut cost: Option<Cost> = None;
            for i in 0..5 {
                let id = reserve(env, user).await;
                let mark = Mark::new(env, meter);
                if op == Operation::ReservationSettle {
                    let mut e = event(&format!("s-{i}"), user, t);
                    e["reservation_id"] = id.into();
                    env.ingest_all(&[e]).await;
                } else {
                    env.request("DELETE", &format!("/v1/quota/reservations/{id}"))
                        .as_service()
                        .send()
                        .await
                        .assert_status(200);
                }
                cost = Some(add(cost, mark.cost(1)));
            }
            cost.expect("measured")
        }
        Operation::CreditAdjust => {
            adjust(env, user, 100, "warm").await;
            let mark = Mark::new(env, meter);
            for i in 0..5 {
                adjust(env, user, 100, &format!("k-{i}")).await;
            }
            mark.cost(5)
        }
        Operation::RedeemSuccess => {
            let codes = codes(env, 6, 1).await;
            redeem(env, user, &codes[0], "warm", 201).await;
            let mark = Mark::new(env, meter);
            for (i, code) in codes[1..].iter().enumerate() {
                redeem(env, user, code, &format!("k-{i}"), 201).await;
            }
            mark.cost(5)
        }
        Operation::RedeemRefusedUnknown | Operation::RedeemRefusedExhausted => {
            let exhausted = codes(env, 1, 1).await.remove(0);
            redeem(env, "first-user", &exhausted, "k", 201).await;
            let code = |i: usize| match op {
                Operation::RedeemRefusedExhausted => exhausted.clone(),
                _ => format!("NOPE-0000-0000-0000-{i:04}"),
            };
            let status = match op {
                Operation::RedeemRefusedExhausted => 409,
                _ => 404,
            };
            redeem(env, user, &code(0), "warm", status).await;
            let mark = Mark::new(env, meter);
            for i in 1..=5 {
                redeem(env, user, &code(i), &format!("k-{i}"), status).await;
            }
            mark.cost(5)
        }
        Operation::ListLedger | Operation::ListAudit => {
            for i in 0..LIST_ITEMS {
                adjust(env, user, 10, &format!("k-{i}")).await;
            }
            let path = match op {
                Operation::ListLedger => {
                    format!("/v1/admin/users/{user}/credits/transactions?limit=20")
                }
                _ => "/v1/admin/audit?limit=20".to_string(),
            };
            measure_pages(env, meter, &path).await
        }
        Operation::ListCodes => {
            codes(env, LIST_ITEMS, 1).await;
            measure_pages(env, meter, "/v1/admin/redemption-codes?limit=20").await
        }
        Operation::ListRedemptions => {
            let code = codes(env, 1, LIST_ITEMS).await.remove(0);
            for i in 0..LIST_ITEMS {
                redeem(env, &format!("user-{i}"), &code, "k", 201).await;
            }
            let path = format!("/v1/admin/redemption-codes/{code}/redemptions?limit=20");
            measure_pages(env, meter, &path).await
        }
        Operation::ListAlerts => measure_pages(env, meter, "/v1/admin/alerts?limit=20").await,
    }
}

/// The first page of `path`, three times.
async fn measure_pages(env: &TestEnv, meter: Option<&Meter>, path: &str) -> Cost {
    page(env, path).await;
    let mark = Mark::new(env, meter);
    for _ in 0..3 {
        page(env, path).await;
    }
    mark.cost(3)
}

fn add(a: Option<Cost>, b: Cost) -> Cost {
    let Some(a) = a else { return b };
    Cost {
        ops: a.ops + b.ops,
        requests: a.requests + b.requests,
        attempts: a.attempts + b.attempts,
        wire: a.wire.zip(b.wire).map(|(x, y)| x + y),
    }
}
