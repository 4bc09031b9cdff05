//! The runtime record of one user and platform: windows, limits and usage.

use super::*;

/// One window as stored: its limit and the usage counted since `start`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WindowState {
    /// `None` = unlimited, zero = disabled, positive = cap.
    pub limit: Option<Usd>,
    /// Whether an admin or `init` decided this limit (even as unlimited); `init`
    /// only fills limits that were never decided.
    pub limit_set: bool,
    pub usage: Usd,
    /// Start of the window `usage` belongs to; `None` before any usage.
    pub start: Option<DateTime<Utc>>,
    /// Estimates held by pending reservations taken in the window `start`
    /// (see `domain::reservation`).
    pub reserved: Usd,
}

impl WindowState {
    /// Usage in the window that contains `now`: a window that has rolled over
    /// reads as zero without any write.
    pub fn usage_at(&self, kind: WindowKind, now: DateTime<Utc>, tz: Tz) -> Usd {
        match self.start {
            Some(start) if start == kind.bounds_at(now, tz).start => self.usage,
            _ => Usd::ZERO,
        }
    }

    /// Holds of pending reservations in the window that contains `now`: holds
    /// taken in a window that has rolled over hold nothing in the new one.
    pub fn reserved_at(&self, kind: WindowKind, now: DateTime<Utc>, tz: Tz) -> Usd {
        match self.start {
            Some(start) if start == kind.bounds_at(now, tz).start => self.reserved,
            _ => Usd::ZERO,
        }
    }
}

/// The runtime quota record of one user on one platform.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuotaRecord {
    pub platform: String,
    pub daily: WindowState,
    pub weekly: WindowState,
    pub monthly: WindowState,
}

impl QuotaRecord {
    pub fn unlimited(platform: &str) -> Self {
        Self {
            platform: platform.to_string(),
            ..Self::default()
        }
    }

    pub fn window(&self, kind: WindowKind) -> &WindowState {
        match kind {
            WindowKind::Daily => &self.daily,
            WindowKind::Weekly => &self.weekly,
            WindowKind::Monthly => &self.monthly,
        }
    }

    pub fn window_mut(&mut self, kind: WindowKind) -> &mut WindowState {
        match kind {
            WindowKind::Daily => &mut self.daily,
            WindowKind::Weekly => &mut self.weekly,
            WindowKind::Monthly => &mut self.monthly,
        }
    }

    /// The three limits, without usage.
    pub fn limits(&self) -> Limits {
        let mut limits = Limits::default();
        for kind in WindowKind::ALL {
            limits.set(kind, self.window(kind).limit);
        }
        limits
    }
}

/// The three limits of one platform: `None` = unlimited, `0` = disabled, `> 0` = cap.
/// As JSON: `{"daily_limit_usd", "weekly_limit_usd", "monthly_limit_usd"}`
/// (read from a request through [`LimitsWire`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Limits {
    #[serde(default, rename = "daily_limit_usd")]
    pub daily: Option<Usd>,
    #[serde(default, rename = "weekly_limit_usd")]
    pub weekly: Option<Usd>,
    #[serde(default, rename = "monthly_limit_usd")]
    pub monthly: Option<Usd>,
}

impl Limits {
    pub fn get(&self, kind: WindowKind) -> Option<Usd> {
        match kind {
            WindowKind::Daily => self.daily,
            WindowKind::Weekly => self.weekly,
            WindowKind::Monthly => self.monthly,
        }
    }

    pub fn set(&mut self, kind: WindowKind, value: Option<Usd>) {
        match kind {
            WindowKind::Daily => self.daily = value,
            WindowKind::Weekly => self.weekly = value,
            WindowKind::Monthly => self.monthly = value,
        }
    }

    /// Per field: this value if set, else `fallback`'s.
    pub fn merged_over(&self, fallback: &Limits) -> Limits {
        let mut merged = *fallback;
        for kind in WindowKind::ALL {
            if let Some(v) = self.get(kind) {
                merged.set(kind, Some(v));
            }
        }
        merged
    }
}
