//! Generators shared by the property tests.

use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;

/// Any IANA zone chrono-tz knows.
pub fn zone() -> impl Strategy<Value = Tz> {
    (0..chrono_tz::TZ_VARIANTS.len()).prop_map(|i| chrono_tz::TZ_VARIANTS[i])
}

/// Zones with DST, half-hour offsets, the date line and midnight transitions.
pub fn tricky_zone() -> impl Strategy<Value = Tz> {
    prop::sample::select(vec![
        chrono_tz::America::New_York,
        chrono_tz::America::Sao_Paulo,
        chrono_tz::America::Santiago,
        chrono_tz::America::Havana,
        chrono_tz::Asia::Beirut,
        chrono_tz::Asia::Tehran,
        chrono_tz::Australia::Lord_Howe,
        chrono_tz::Europe::London,
        chrono_tz::Europe::Berlin,
        chrono_tz::Pacific::Apia,
        chrono_tz::Pacific::Chatham,
        chrono_tz::Asia::Kolkata,
        chrono_tz::UTC,
    ])
}

/// An instant between 1971 and 2099.
pub fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    (31_536_000_i64..4_102_444_800).prop_map(|s| Utc.timestamp_opt(s, 0).unwrap())
}

/// An instant within two days of a month's end, in the months DST changes in
/// (and every other): where windows are most likely to go wrong.
pub fn instant_near_month_end() -> impl Strategy<Value = DateTime<Utc>> {
    (1971_i32..2099, 1_u32..=12, -172_800_i64..172_800).prop_map(|(y, m, offset)| {
        let first = Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).unwrap();
        first + Duration::seconds(offset)
    })
}

/// An instant within a week of the usual DST dates (March/April, September to
/// November; the southern hemisphere's too), to the second.
pub fn instant_near_dst() -> impl Strategy<Value = DateTime<Utc>> {
    (
        1990_i32..2060,
        prop::sample::select(vec![3_u32, 4, 9, 10, 11]),
        1_u32..=28,
        0_i64..86_400,
    )
        .prop_map(|(y, m, d, s)| {
            Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap() + Duration::seconds(s)
        })
}

pub fn any_instant() -> impl Strategy<Value = DateTime<Utc>> {
    prop_oneof![instant(), instant_near_month_end(), instant_near_dst()]
}
