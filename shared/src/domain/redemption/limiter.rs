//! The failed-attempt window (429 after too many failures in an hour).

use super::*;

/// The minute bucket (minutes since the epoch) failures at `at` are counted in.
pub fn failure_minute(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(60)
}

/// The oldest minute bucket that still counts at `now`.
pub fn failure_window_start(now: DateTime<Utc>) -> i64 {
    failure_minute(now) - (FAILURE_WINDOW_MINUTES - 1)
}

/// Whether a user with these failure buckets `(minute, count)` may attempt a
/// redemption at `now`. A minute's failures count for the 60 minutes starting
/// with it (a sliding hour at one-minute resolution, so a burst at 10:59 and
/// one at 11:00 add up). After [`MAX_FAILED_ATTEMPTS`] failures the next
/// attempt is refused until enough old buckets have left the window.
pub fn check_failed_attempts(buckets: &[(i64, i64)], now: DateTime<Utc>) -> Result<(), Error> {
    let start = failure_window_start(now);
    let current = failure_minute(now);
    let mut live: Vec<(i64, i64)> = buckets
        .iter()
        .copied()
        .filter(|(m, c)| (start..=current).contains(m) && *c > 0)
        .collect();
    let total: i64 = live.iter().map(|(_, c)| c).sum();
    if total < MAX_FAILED_ATTEMPTS {
        return Ok(());
    }
    live.sort_unstable();
    let mut remaining = total;
    for (minute, count) in live {
        remaining -= count;
        if remaining < MAX_FAILED_ATTEMPTS {
            let free_at = (minute + FAILURE_WINDOW_MINUTES) * 60;
            return Err(Error::TooManyFailedAttempts {
                retry_after_seconds: (free_at - now.timestamp()).max(1),
            });
        }
    }
    // Unreachable: removing every bucket leaves 0 < MAX_FAILED_ATTEMPTS.
    Err(Error::TooManyFailedAttempts {
        retry_after_seconds: FAILURE_WINDOW_MINUTES * 60,
    })
}
