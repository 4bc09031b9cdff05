//! What the API answers for a user's quotas.

use super::plans::record_of;
use super::*;

/// `W` of the contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WindowView {
    pub limit_usd: Option<Usd>,
    pub usage_usd: Usd,
    /// Held by pending reservations in this window.
    pub reserved_usd: Usd,
    pub window_start: DateTime<Utc>,
    pub resets_at: DateTime<Utc>,
}

impl WindowView {
    pub fn of(state: &WindowState, kind: WindowKind, now: DateTime<Utc>, tz: Tz) -> Self {
        let bounds = kind.bounds_at(now, tz);
        Self {
            limit_usd: state.limit,
            usage_usd: state.usage_at(kind, now, tz),
            reserved_usd: state.reserved_at(kind, now, tz),
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
            .map(|p| PlatformQuotaView::of(&record_of(records, p), now, tz))
            .collect();
        Self { user_id, quotas }
    }
}
