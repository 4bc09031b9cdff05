//! The quota check: whether a request may go ahead, and why not.

use super::*;

/// Why a check denies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DenyReason {
    PlatformDisabled,
    /// A reservation's credits exceed the balance not already held.
    InsufficientCredits,
    DailyQuotaExhausted,
    WeeklyQuotaExhausted,
    MonthlyQuotaExhausted,
}

impl DenyReason {
    pub fn exhausted(kind: WindowKind) -> Self {
        match kind {
            WindowKind::Daily => DenyReason::DailyQuotaExhausted,
            WindowKind::Weekly => DenyReason::WeeklyQuotaExhausted,
            WindowKind::Monthly => DenyReason::MonthlyQuotaExhausted,
        }
    }
}

/// `W2` of the contract: `W` plus what is left.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckWindow {
    pub limit_usd: Option<Usd>,
    pub usage_usd: Usd,
    pub reserved_usd: Usd,
    pub window_start: DateTime<Utc>,
    pub resets_at: DateTime<Utc>,
    /// `None` when unlimited; never negative.
    pub remaining_usd: Option<Usd>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckWindows {
    pub daily: CheckWindow,
    pub weekly: CheckWindow,
    pub monthly: CheckWindow,
}

/// `Check` of the contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QuotaCheck {
    pub allowed: bool,
    pub reason: Option<DenyReason>,
    pub retry_after_seconds: Option<i64>,
    pub windows: CheckWindows,
}

impl QuotaCheck {
    /// The gate decision at `now`:
    /// - a limit of 0 on any window denies with `platform_disabled`, whatever the
    ///   usage, and waiting does not help (`retry_after_seconds` null);
    /// - else every window with usage ≥ limit is exhausted; the reason names the
    ///   exhausted window that resets last, and `retry_after_seconds` counts to
    ///   that reset, since only then would every exhausted window allow again;
    /// - else allowed.
    pub fn evaluate(record: &QuotaRecord, now: DateTime<Utc>, tz: Tz) -> Self {
        let window = |kind: WindowKind| {
            let view = WindowView::of(record.window(kind), kind, now, tz);
            CheckWindow {
                // Holds count: remaining = limit - usage - reserved, never negative.
                remaining_usd: view.limit_usd.map(|limit| {
                    let committed = view.usage_usd + view.reserved_usd;
                    if committed >= limit {
                        Usd::ZERO
                    } else {
                        limit - committed
                    }
                }),
                limit_usd: view.limit_usd,
                usage_usd: view.usage_usd,
                reserved_usd: view.reserved_usd,
                window_start: view.window_start,
                resets_at: view.resets_at,
            }
        };
        let windows = CheckWindows {
            daily: window(WindowKind::Daily),
            weekly: window(WindowKind::Weekly),
            monthly: window(WindowKind::Monthly),
        };
        let all = [
            (WindowKind::Daily, &windows.daily),
            (WindowKind::Weekly, &windows.weekly),
            (WindowKind::Monthly, &windows.monthly),
        ];
        let disabled = all.iter().any(|(_, w)| w.limit_usd == Some(Usd::ZERO));
        let (allowed, reason, retry_after_seconds) = if disabled {
            (false, Some(DenyReason::PlatformDisabled), None)
        } else {
            // Ties on the reset instant go to the longer window.
            let latest = all
                .iter()
                .filter(|(_, w)| w.remaining_usd.is_some_and(|r| r.is_zero()))
                .max_by_key(|(kind, w)| (w.resets_at, *kind));
            match latest {
                Some((kind, w)) => (
                    false,
                    Some(DenyReason::exhausted(*kind)),
                    Some(seconds_until(now, w.resets_at)),
                ),
                None => (true, None, None),
            }
        };
        Self {
            allowed,
            reason,
            retry_after_seconds,
            windows,
        }
    }
}

/// Whole seconds from `now` until `at`, rounded up so a retry never comes early.
fn seconds_until(now: DateTime<Utc>, at: DateTime<Utc>) -> i64 {
    let millis = (at - now).num_milliseconds().max(0);
    ((millis + 999) / 1000).max(1)
}
