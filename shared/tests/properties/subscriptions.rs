//! Subscription extension: from the later of now and the current expiry,
//! calendar-correct (months keep the day of month, clamped to the month's
//! last day), monotone, and never before its base.

use crate::gen::instant;
use chrono::{DateTime, Datelike, Duration, Timelike, Utc};
use proptest::prelude::*;
use spendguard_core::domain::redemption::{add_period, extend_subscription, Unit};

fn unit() -> impl Strategy<Value = Unit> {
    prop::sample::select(Unit::ALL.to_vec())
}

fn months(unit: Unit) -> Option<u32> {
    match unit {
        Unit::Day | Unit::Week => None,
        Unit::Month => Some(1),
        Unit::Quarter => Some(3),
        Unit::HalfYear => Some(6),
        Unit::Year => Some(12),
    }
}

fn last_day(year: i32, month: u32) -> u32 {
    (28..=31)
        .rev()
        .find(|d| chrono::NaiveDate::from_ymd_opt(year, month, *d).is_some())
        .unwrap()
}

proptest! {
    #[test]
    fn extension_starts_at_the_later_of_now_and_the_expiry(
        now in instant(),
        expiry in prop::option::of(instant()),
        unit in unit(),
        quantity in 1_u32..40,
    ) {
        let base = expiry.map_or(now, |e| e.max(now));
        let new = extend_subscription(expiry, now, unit, quantity).unwrap();
        prop_assert_eq!(Some(new), add_period(base, unit, quantity));
        prop_assert!(new > base);
        // Time of day is kept.
        prop_assert_eq!(new.num_seconds_from_midnight(), base.num_seconds_from_midnight());
        match months(unit) {
            None => {
                let days = i64::from(quantity) * if unit == Unit::Week { 7 } else { 1 };
                prop_assert_eq!(new - base, Duration::days(days));
            }
            Some(per) => {
                let total = base.year() * 12 + base.month0() as i32 + (per * quantity) as i32;
                let (year, month) = (total.div_euclid(12), total.rem_euclid(12) as u32 + 1);
                prop_assert_eq!((new.year(), new.month()), (year, month));
                prop_assert_eq!(new.day(), base.day().min(last_day(year, month)));
            }
        }
    }

    #[test]
    fn extension_is_monotone(a in instant(), b in instant(), unit in unit(), q in 1_u32..40, more in 0_u32..5) {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        prop_assert!(add_period(lo, unit, q).unwrap() <= add_period(hi, unit, q).unwrap());
        prop_assert!(add_period(lo, unit, q).unwrap() <= add_period(lo, unit, q + more).unwrap());
    }

    /// Far beyond the calendar the extension is refused (a 400), never a panic.
    #[test]
    fn extension_beyond_the_calendar_is_a_clear_error(unit in unit(), quantity in any::<u32>()) {
        let now = DateTime::<Utc>::MAX_UTC - Duration::days(30);
        match extend_subscription(None, now, unit, quantity) {
            Ok(t) => prop_assert!(t > now),
            Err(e) => prop_assert_eq!(e.code(), "invalid_request"),
        }
    }
}
