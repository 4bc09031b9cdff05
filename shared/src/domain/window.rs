//! Calendar-aligned quota windows in the configured time zone.
//!
//! Daily windows start at local 00:00, weekly on Monday 00:00, monthly on the 1st
//! 00:00. Everything here is a pure function of an instant and a zone.

use crate::error::Error;
use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowKind {
    Daily,
    Weekly,
    Monthly,
}

/// The half-open interval `[start, end)` of one window; `end` is the next reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowBounds {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl WindowBounds {
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.start <= at && at < self.end
    }
}

impl WindowKind {
    pub const ALL: [WindowKind; 3] = [WindowKind::Daily, WindowKind::Weekly, WindowKind::Monthly];

    pub fn as_str(self) -> &'static str {
        match self {
            WindowKind::Daily => "daily",
            WindowKind::Weekly => "weekly",
            WindowKind::Monthly => "monthly",
        }
    }

    pub fn parse(text: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|w| w.as_str() == text)
            .ok_or_else(|| Error::InvalidWindow(text.to_string()))
    }

    /// The window of this kind that contains `at`, in zone `tz`.
    pub fn bounds_at(self, at: DateTime<Utc>, tz: Tz) -> WindowBounds {
        let today = at.with_timezone(&tz).date_naive();
        let (first, next) = match self {
            WindowKind::Daily => (today, today + Duration::days(1)),
            WindowKind::Weekly => {
                let monday = today - Duration::days(today.weekday().num_days_from_monday() as i64);
                (monday, monday + Duration::days(7))
            }
            WindowKind::Monthly => {
                let first = today.with_day(1).expect("day 1 exists");
                let next = if first.month() == 12 {
                    NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
                } else {
                    NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
                }
                .expect("first of next month exists");
                (first, next)
            }
        };
        WindowBounds {
            start: local_midnight(tz, first),
            end: local_midnight(tz, next),
        }
    }
}

/// The instant a local calendar day begins. Where a DST change skips midnight,
/// the day begins at the first local time that exists.
fn local_midnight(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    let midnight = date.and_hms_opt(0, 0, 0).expect("midnight is valid");
    for minutes in 0..=24 * 60 {
        if let Some(t) = tz
            .from_local_datetime(&(midnight + Duration::minutes(minutes)))
            .earliest()
        {
            return t.with_timezone(&Utc);
        }
    }
    // No zone skips a whole day after 1900; fall back to UTC midnight.
    Utc.from_utc_datetime(&midnight)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn utc_boundaries() {
        let tz: Tz = "UTC".parse().unwrap();
        // 2026-11-22 is a Sunday.
        let b = WindowKind::Daily.bounds_at(utc("2026-11-22T23:59:59Z"), tz);
        assert_eq!(b.start, utc("2026-11-22T00:00:00Z"));
        assert_eq!(b.end, utc("2026-11-23T00:00:00Z"));
        let w = WindowKind::Weekly.bounds_at(utc("2026-11-22T23:59:59Z"), tz);
        assert_eq!(w.start, utc("2026-11-16T00:00:00Z"));
        let w2 = WindowKind::Weekly.bounds_at(utc("2026-11-23T00:00:00Z"), tz);
        assert_eq!(w2.start, utc("2026-11-23T00:00:00Z"));
        let m = WindowKind::Monthly.bounds_at(utc("2026-12-31T23:59:59Z"), tz);
        assert_eq!(m.start, utc("2026-12-01T00:00:00Z"));
        assert_eq!(m.end, utc("2027-01-01T00:00:00Z"));
    }

    #[test]
    fn shanghai_day_starts_at_16_utc() {
        let tz: Tz = "Asia/Shanghai".parse().unwrap();
        let b = WindowKind::Daily.bounds_at(utc("2026-11-21T15:59:59Z"), tz);
        assert_eq!(b.end, utc("2026-11-21T16:00:00Z"));
        let b = WindowKind::Daily.bounds_at(utc("2026-11-21T16:00:00Z"), tz);
        assert_eq!(b.start, utc("2026-11-21T16:00:00Z"));
    }

    #[test]
    fn new_york_across_dst_end() {
        let tz: Tz = "America/New_York".parse().unwrap();
        // DST ends 2026-11-01 02:00 EDT; that local day is 25 hours long.
        let b = WindowKind::Daily.bounds_at(utc("2026-11-01T12:00:00Z"), tz);
        assert_eq!(b.start, utc("2026-11-01T04:00:00Z"));
        assert_eq!(b.end, utc("2026-11-02T05:00:00Z"));
    }

    #[test]
    fn parse_window_names() {
        assert_eq!(WindowKind::parse("weekly").unwrap(), WindowKind::Weekly);
        assert_eq!(
            WindowKind::parse("yearly").unwrap_err().code(),
            "invalid_window"
        );
    }
}
