//! Calendar windows in any IANA zone, around DST changes and month ends:
//! `start ≤ t < end`, the next window starts where this one ends, daily
//! windows start on t's local day, weekly ones on a Monday (the contract's
//! week), monthly ones on the 1st, each at the first local instant of its day.

use crate::gen::{any_instant, tricky_zone, zone};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc, Weekday};
use chrono_tz::Tz;
use proptest::prelude::*;
use spendguard_core::domain::WindowKind;

/// The first instant of local day `date` (the instant just before it is on
/// an earlier local day).
fn starts_local_day(at: DateTime<Utc>, tz: Tz, date: NaiveDate) -> bool {
    at.with_timezone(&tz).date_naive() == date
        && (at - Duration::seconds(1)).with_timezone(&tz).date_naive() < date
}

fn check(t: DateTime<Utc>, tz: Tz) -> Result<(), TestCaseError> {
    let local = t.with_timezone(&tz).date_naive();
    for kind in WindowKind::ALL {
        let b = kind.bounds_at(t, tz);
        prop_assert!(b.start <= t && t < b.end, "{kind:?} {t} {tz}: {b:?}");
        prop_assert!(b.contains(t));
        // Contiguous: the window at `end` starts there, the one before `start` ends there.
        let next = kind.bounds_at(b.end, tz);
        prop_assert_eq!(next.start, b.end, "{:?} {} {}", kind, t, tz);
        let previous = kind.bounds_at(b.start - Duration::seconds(1), tz);
        prop_assert_eq!(previous.end, b.start, "{:?} {} {}", kind, t, tz);
        // Every instant of the window maps to the same window.
        prop_assert_eq!(kind.bounds_at(b.start, tz), b);
        prop_assert_eq!(kind.bounds_at(b.end - Duration::seconds(1), tz), b);
        let start_day = b.start.with_timezone(&tz).date_naive();
        prop_assert!(
            starts_local_day(b.start, tz, start_day),
            "{kind:?} {t} {tz}: {b:?}"
        );
        match kind {
            WindowKind::Daily => {
                prop_assert_eq!(start_day, local);
                // A local day is 23 to 25 hours, but where a zone moved across
                // the date line (a day of 0 or 48 hours: Apia 2011).
                let hours = (b.end - b.start).num_hours();
                prop_assert!((1..=49).contains(&hours), "{} {} {}h", t, tz, hours);
            }
            WindowKind::Weekly => {
                prop_assert_eq!(start_day.weekday(), Weekday::Mon, "{} {}", t, tz);
                prop_assert!(local - start_day < chrono::TimeDelta::days(7));
                prop_assert!(start_day <= local);
            }
            WindowKind::Monthly => {
                prop_assert_eq!(start_day.day(), 1);
                prop_assert_eq!(
                    (start_day.year(), start_day.month()),
                    (local.year(), local.month())
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn windows_contain_t_and_tile_time_in_any_zone(t in any_instant(), tz in zone()) {
        check(t, tz)?;
    }

    #[test]
    fn windows_hold_around_dst_and_month_ends_in_tricky_zones(t in any_instant(), tz in tricky_zone()) {
        check(t, tz)?;
    }
}
