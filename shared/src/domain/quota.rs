//! Per-user, per-platform USD quotas over calendar windows: pure rules.

use super::{Platforms, Usd, UserId, WindowKind};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

/// One window as stored: its limit and the usage counted since `start`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WindowState {
    /// `None` = unlimited, zero = disabled, positive = cap.
    pub limit: Option<Usd>,
    pub usage: Usd,
    /// Start of the window `usage` belongs to; `None` before any usage.
    pub start: Option<DateTime<Utc>>,
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
}

/// `W` of the contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WindowView {
    pub limit_usd: Option<Usd>,
    pub usage_usd: Usd,
    pub window_start: DateTime<Utc>,
    pub resets_at: DateTime<Utc>,
}

impl WindowView {
    pub fn of(state: &WindowState, kind: WindowKind, now: DateTime<Utc>, tz: Tz) -> Self {
        let bounds = kind.bounds_at(now, tz);
        Self {
            limit_usd: state.limit,
            usage_usd: state.usage_at(kind, now, tz),
            window_start: bounds.start,
            resets_at: bounds.end,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlatformQuotaView {
    pub platform: String,
    pub daily: WindowView,
    pub weekly: WindowView,
    pub monthly: WindowView,
}

impl PlatformQuotaView {
    pub fn of(record: &QuotaRecord, now: DateTime<Utc>, tz: Tz) -> Self {
        let view = |kind| WindowView::of(record.window(kind), kind, now, tz);
        Self {
            platform: record.platform.clone(),
            daily: view(WindowKind::Daily),
            weekly: view(WindowKind::Weekly),
            monthly: view(WindowKind::Monthly),
        }
    }
}

/// `UserQuotas` of the contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UserQuotasView {
    pub user_id: UserId,
    pub quotas: Vec<PlatformQuotaView>,
}

impl UserQuotasView {
    /// Every configured platform, in configuration order; a platform without a
    /// record is unlimited with zero usage. Records of platforms no longer
    /// configured are left out.
    pub fn build(
        user_id: UserId,
        platforms: &Platforms,
        records: &[QuotaRecord],
        now: DateTime<Utc>,
        tz: Tz,
    ) -> Self {
        let quotas = platforms
            .iter()
            .map(|p| {
                let record = records
                    .iter()
                    .find(|r| r.platform == p.as_str())
                    .cloned()
                    .unwrap_or_else(|| QuotaRecord::unlimited(p.as_str()));
                PlatformQuotaView::of(&record, now, tz)
            })
            .collect();
        Self { user_id, quotas }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolled_over_window_reads_zero() {
        let tz = Tz::UTC;
        let day1 = "2026-11-20T10:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let day2 = "2026-11-21T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let state = WindowState {
            limit: None,
            usage: Usd::from_whole(5),
            start: Some(WindowKind::Daily.bounds_at(day1, tz).start),
        };
        assert_eq!(
            state.usage_at(WindowKind::Daily, day1, tz),
            Usd::from_whole(5)
        );
        assert_eq!(state.usage_at(WindowKind::Daily, day2, tz), Usd::ZERO);
    }

    #[test]
    fn view_lists_every_platform() {
        let now = "2026-11-21T10:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let v = UserQuotasView::build(
            UserId::parse("alice").unwrap(),
            &Platforms::defaults(),
            &[],
            now,
            Tz::UTC,
        );
        assert_eq!(v.quotas.len(), 4);
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(
            json["quotas"][0]["daily"]["limit_usd"],
            serde_json::Value::Null
        );
        assert_eq!(json["quotas"][0]["daily"]["usage_usd"], "0");
        assert_eq!(
            json["quotas"][0]["daily"]["window_start"],
            "2026-11-21T00:00:00Z"
        );
    }
}
