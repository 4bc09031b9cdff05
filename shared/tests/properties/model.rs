//! Model-based test of the quota, reservation and credit rules: random
//! operation sequences (time passing, usage batches, limit changes, window
//! resets, reservations and voids, grants, deductions and consumption) run
//! through the domain's plans, applied to an in-memory record as the store's
//! writes apply them, and compared after every step with a plain model that
//! knows nothing of the plans: usage in a window = Σ of the events counted in
//! it since its last reset, reserved = Σ of the pending holds taken in it,
//! balance = Σ of the applied changes.

use crate::gen::{instant, tricky_zone};
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;
use spendguard_core::domain::credits::{Account, Change};
use spendguard_core::domain::quota::{plan_reset, DenyReason, QuotaCheck, QuotaRecord};
use spendguard_core::domain::reservation::{
    plan_admission, plan_credit_hold, plan_release, Hold, HoldWrite, StoredAccount, StoredWindow,
};
use spendguard_core::domain::usage::{StoredStarts, UsageEvent, UsagePlan, WindowWrite};
use spendguard_core::domain::{EventId, Platforms, Usd, UserId, WindowKind};

const CENT: i128 = 100_000_000;

#[derive(Clone, Debug)]
enum Op {
    Advance(i64),
    /// Events `(seconds before now, cost in cents, credits)`, applied as one write.
    Usage(Vec<(i64, i128, Option<i64>)>),
    SetLimit(usize, Option<i128>),
    Reset(usize),
    Reserve(i128, i64),
    Void(usize),
    Grant(i64),
    Deduct(i64, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => prop_oneof![0_i64..7_200, 0_i64..3 * 86_400, Just(86_400), 0_i64..40 * 86_400].prop_map(Op::Advance),
        4 => prop::collection::vec(
            (prop_oneof![Just(0_i64), 0_i64..3_600, 0_i64..10 * 86_400], 0_i128..500, prop::option::of(0_i64..50)),
            1..5,
        )
        .prop_map(Op::Usage),
        2 => (0_usize..3, prop::option::of(0_i128..20)).prop_map(|(w, l)| Op::SetLimit(w, l.map(|d| d * 100))),
        1 => (0_usize..3).prop_map(Op::Reset),
        3 => (0_i128..600, prop_oneof![Just(0_i64), 0_i64..60]).prop_map(|(e, c)| Op::Reserve(e, c)),
        2 => any::<usize>().prop_map(Op::Void),
        1 => prop_oneof![1_i64..100, Just(i64::MAX)].prop_map(Op::Grant),
        1 => (1_i64..100, any::<bool>()).prop_map(|(c, f)| Op::Deduct(c, f)),
    ]
}

/// The plain model.
#[derive(Default)]
struct Model {
    /// `(order applied, when it counts, cost)` of every applied event.
    events: Vec<(usize, DateTime<Utc>, Usd)>,
    /// Per window: events applied up to this order were reset away.
    reset_after: [usize; 3],
    limits: [Option<Usd>; 3],
    /// Pending holds: `(taken at, estimate, credits)`.
    holds: Vec<(DateTime<Utc>, Usd, i64)>,
    available: i128,
    total: i128,
    used: i128,
    seq: u64,
}

impl Model {
    fn usage(&self, w: usize, now: DateTime<Utc>, tz: Tz) -> Usd {
        let kind = WindowKind::ALL[w];
        let current = kind.bounds_at(now, tz);
        self.events
            .iter()
            .filter(|(order, at, _)| *order > self.reset_after[w] && current.contains(*at))
            .map(|(_, _, cost)| *cost)
            .sum()
    }

    fn reserved(&self, w: usize, now: DateTime<Utc>, tz: Tz) -> Usd {
        let current = WindowKind::ALL[w].bounds_at(now, tz);
        self.holds
            .iter()
            .filter(|(at, _, _)| current.contains(*at))
            .map(|(_, e, _)| *e)
            .sum()
    }

    fn held(&self) -> i128 {
        self.holds.iter().map(|(_, _, c)| i128::from(*c)).sum()
    }

    /// Whether a hold of `estimate` and `credits` fits now.
    fn admits(&self, estimate: Usd, credits: i64, now: DateTime<Utc>, tz: Tz) -> bool {
        if self.limits.contains(&Some(Usd::ZERO)) {
            return false;
        }
        let quota = (0..3).all(|w| match self.limits[w] {
            None => true,
            Some(limit) => {
                let room = limit - self.usage(w, now, tz) - self.reserved(w, now, tz);
                room >= estimate && room > Usd::ZERO
            }
        });
        quota && (credits == 0 || self.available - self.held() >= i128::from(credits))
    }

    /// A balance change: `Ok` with the new balance, or the refusal's code.
    fn change(&mut self, amount: i128, kind: &str, force: bool) -> Result<(), &'static str> {
        let available = self.available + amount;
        let (total, used) = match kind {
            "grant" => (self.total + amount, self.used),
            "consume" => (self.total, self.used - amount),
            _ => (self.total, self.used),
        };
        let fits = |v: i128| i64::try_from(v).is_ok();
        if !fits(available) || !fits(total) || !fits(used) {
            return Err("balance_overflow");
        }
        if amount < 0 && available < 0 && !force && kind != "consume" {
            return Err("insufficient_credits");
        }
        (self.available, self.total, self.used) = (available, total, used);
        self.seq += 1;
        Ok(())
    }
}

/// The system under test: the record and account as the store keeps them,
/// changed only as the domain's plans say.
struct Sut {
    record: QuotaRecord,
    account: Account,
    holds: Vec<Hold>,
    held: i64,
}

impl Sut {
    fn starts(&self) -> StoredStarts {
        WindowKind::ALL.map(|k| self.record.window(k).start.map(|s| s.timestamp()))
    }

    fn stored(&self) -> [StoredWindow; 3] {
        WindowKind::ALL.map(|k| {
            let w = self.record.window(k);
            StoredWindow {
                limit: w.limit,
                usage: w.usage,
                reserved: w.reserved,
                headroom: Some(w.limit.unwrap_or(Usd::ZERO) - w.usage - w.reserved),
                start: w.start.map(|s| s.timestamp()),
            }
        })
    }

    fn apply(&mut self, change: &Change, now: DateTime<Utc>) -> Result<(), &'static str> {
        let applied = self.account.apply(change, now).map_err(|e| e.code())?;
        assert_eq!(applied.entry.balance_before, self.account.available);
        assert_eq!(applied.entry.seq, self.account.seq + 1);
        assert_eq!(
            i128::from(applied.entry.balance_after),
            i128::from(applied.entry.balance_before) + i128::from(applied.entry.amount)
        );
        self.account = applied.after;
        Ok(())
    }
}

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap()
}

fn run(start: DateTime<Utc>, tz: Tz, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let platforms = Platforms::defaults();
    let platform = platforms.parse("openai").unwrap();
    let user = UserId::parse("model-user").unwrap();
    let mut now = start;
    let mut model = Model::default();
    let mut sut = Sut {
        record: QuotaRecord::unlimited("openai"),
        account: Account::empty(user.clone()),
        holds: Vec::new(),
        held: 0,
    };
    let mut applied = 0_usize;
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Advance(secs) => now += Duration::seconds(secs),
            Op::Usage(batch) => {
                let events: Vec<UsageEvent> = batch
                    .iter()
                    .enumerate()
                    .map(|(i, (ago, cents, credits))| UsageEvent {
                        event_id: EventId::parse(&format!("e{step}-{i}")).unwrap(),
                        user_id: user.clone(),
                        platform: platform.clone(),
                        cost: Usd::from_atoms(cents * CENT),
                        occurred_at: now - Duration::seconds(*ago),
                        request_id: None,
                        model: None,
                        credits: credits.filter(|c| *c > 0),
                        reservation_id: None,
                    })
                    .collect();
                let refs: Vec<&UsageEvent> = events.iter().collect();
                let known = sut.starts();
                let plan = UsagePlan::new(&refs, tz, now, Some(&known)).unwrap();
                for (w, write) in plan.windows.iter().enumerate() {
                    let window = sut.record.window_mut(WindowKind::ALL[w]);
                    match *write {
                        WindowWrite::Add { start, amount } => {
                            prop_assert_eq!(window.start, Some(at(start)));
                            window.usage = window.usage + amount;
                        }
                        WindowWrite::Restart { start, amount } => {
                            window.usage = amount;
                            window.start = Some(at(start));
                            window.reserved = Usd::ZERO;
                        }
                        WindowWrite::Keep { .. } => {}
                    }
                }
                prop_assert_eq!(plan.starts_after(Some(&known)), sut.starts());
                for e in &events {
                    applied += 1;
                    model.events.push((applied, e.counted_at(now), e.cost));
                    if let Some(c) = e.credits {
                        let change = Change::consume(c, "usage", "model");
                        let expected = model.change(-i128::from(c), "consume", false);
                        prop_assert_eq!(sut.apply(&change, now), expected, "step {}", step);
                    }
                }
            }
            Op::SetLimit(w, cents) => {
                let limit = cents.map(|c| Usd::from_atoms(c * CENT));
                model.limits[w] = limit;
                sut.record.window_mut(WindowKind::ALL[w]).limit = limit;
            }
            Op::Reset(w) => {
                let kind = WindowKind::ALL[w];
                let change =
                    plan_reset(std::slice::from_ref(&sut.record), &platform, kind, now, tz);
                prop_assert_eq!(&change.before, &sut.record);
                sut.record = change.after;
                model.reset_after[w] = applied;
            }
            Op::Reserve(cents, credits) => {
                let estimate = Usd::from_atoms(cents * CENT);
                let current = WindowKind::ALL.map(|k| k.bounds_at(now, tz).start.timestamp());
                let stored = sut.stored();
                let quota = plan_admission(Some(Some(&stored)), current, estimate);
                let account = StoredAccount {
                    available: sut.account.available,
                    held: sut.held,
                    spendable: Some(sut.account.available - sut.held),
                };
                let credit = if credits > 0 {
                    plan_credit_hold(Some(Some(&account)), credits).map(Some)
                } else {
                    Ok(None)
                };
                let admitted = quota.is_ok() && credit.is_ok();
                prop_assert_eq!(
                    admitted,
                    model.admits(estimate, credits, now, tz),
                    "step {}",
                    step
                );
                if let (true, Ok(writes)) = (admitted, quota) {
                    for (w, write) in writes.iter().enumerate() {
                        let window = sut.record.window_mut(WindowKind::ALL[w]);
                        match *write {
                            HoldWrite::Add { start } => {
                                prop_assert_eq!(window.start.map(|s| s.timestamp()), Some(start));
                                window.reserved = window.reserved + estimate;
                            }
                            HoldWrite::Exact {
                                start,
                                rollover: false,
                                ..
                            } => {
                                prop_assert_eq!(window.start.map(|s| s.timestamp()), Some(start));
                                window.reserved = window.reserved + estimate;
                            }
                            HoldWrite::Exact {
                                start,
                                rollover: true,
                                ..
                            } => {
                                window.start = Some(at(start));
                                window.usage = Usd::ZERO;
                                window.reserved = estimate;
                            }
                        }
                    }
                    sut.held += credits;
                    sut.holds.push(Hold::at(now, tz, estimate, credits));
                    model.holds.push((now, estimate, credits));
                }
            }
            Op::Void(i) => {
                if !sut.holds.is_empty() {
                    let i = i % sut.holds.len();
                    let hold = sut.holds.remove(i);
                    model.holds.remove(i);
                    for (w, release) in plan_release(&hold, Some(&sut.starts())).iter().enumerate()
                    {
                        if let Some(start) = release {
                            let window = sut.record.window_mut(WindowKind::ALL[w]);
                            prop_assert_eq!(window.start.map(|s| s.timestamp()), Some(*start));
                            window.reserved = window.reserved - hold.estimate;
                        }
                    }
                    sut.held -= hold.credits;
                }
            }
            Op::Grant(c) => {
                let expected = model.change(c.into(), "grant", false);
                prop_assert_eq!(
                    sut.apply(&Change::grant(c, "admin_adjust", "model"), now),
                    expected
                );
            }
            Op::Deduct(c, force) => {
                let expected = model.change(-i128::from(c), "deduct", force);
                let change = Change::deduct(c as u64, "admin_adjust", "model").forced(force);
                prop_assert_eq!(sut.apply(&change, now), expected);
            }
        }
        compare(&sut, &model, now, tz, step)?;
    }
    Ok(())
}

/// The record as the check reads it, against the model.
fn compare(
    sut: &Sut,
    model: &Model,
    now: DateTime<Utc>,
    tz: Tz,
    step: usize,
) -> Result<(), TestCaseError> {
    let check = QuotaCheck::evaluate(&sut.record, now, tz);
    let views = [
        &check.windows.daily,
        &check.windows.weekly,
        &check.windows.monthly,
    ];
    let mut exhausted = Vec::new();
    for (w, view) in views.iter().enumerate() {
        let (usage, reserved) = (model.usage(w, now, tz), model.reserved(w, now, tz));
        prop_assert_eq!(view.usage_usd, usage, "step {} window {}", step, w);
        prop_assert_eq!(view.reserved_usd, reserved, "step {} window {}", step, w);
        prop_assert_eq!(view.limit_usd, model.limits[w]);
        let remaining = model.limits[w].map(|l| (l - usage - reserved).max(Usd::ZERO));
        prop_assert_eq!(view.remaining_usd, remaining);
        prop_assert_eq!(view.resets_at, WindowKind::ALL[w].bounds_at(now, tz).end);
        if remaining == Some(Usd::ZERO) {
            exhausted.push((view.resets_at, WindowKind::ALL[w]));
        }
    }
    let expected_reason = if model.limits.contains(&Some(Usd::ZERO)) {
        Some(DenyReason::PlatformDisabled)
    } else {
        exhausted
            .iter()
            .max()
            .map(|(_, kind)| DenyReason::exhausted(*kind))
    };
    prop_assert_eq!(check.reason, expected_reason, "step {}", step);
    prop_assert_eq!(check.allowed, expected_reason.is_none());
    prop_assert_eq!(i128::from(sut.account.available), model.available);
    prop_assert_eq!(i128::from(sut.account.total), model.total);
    prop_assert_eq!(i128::from(sut.account.used), model.used);
    prop_assert_eq!(sut.account.seq, model.seq);
    prop_assert_eq!(i128::from(sut.held), model.held());
    Ok(())
}

proptest! {
    #[test]
    fn quota_reservation_and_credit_rules_match_the_model(
        start in instant(),
        tz in tricky_zone(),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        run(start, tz, ops)?;
    }
}
