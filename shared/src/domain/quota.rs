//! Per-user, per-platform USD quotas over calendar windows: pure rules.
//!
//! Two layers, decoupled on purpose:
//! - configuration: [`QuotaDefaults`] for the system and per auth source;
//! - runtime: one [`QuotaRecord`] per user and platform (limits, usage, window starts).
//!
//! `init` copies configuration into runtime limits that are not yet set; after that
//! the two evolve independently. Everything here is a pure function of its inputs.

use super::{AuthSource, Platform, Platforms, Usd, UserId, WindowKind};
use crate::error::Error;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt;

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
/// As JSON: `{"daily_limit_usd", "weekly_limit_usd", "monthly_limit_usd"}`, an
/// omitted field meaning `null`. Unknown fields are refused: a misspelt limit
/// must not silently mean "unlimited".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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

/// `Defaults` of the contract: `{platform: Limits}` for configured platforms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuotaDefaults(BTreeMap<Platform, Limits>);

impl QuotaDefaults {
    /// Validates a request body: every platform configured, none twice.
    pub fn from_body(body: DefaultsBody, platforms: &Platforms) -> Result<Self, Error> {
        let mut map = BTreeMap::new();
        for (name, limits) in body.0 {
            let platform = platforms.parse(&name)?;
            if map.insert(platform, limits).is_some() {
                return Err(Error::DuplicatePlatform(name));
            }
        }
        Ok(Self(map))
    }

    /// The limits configured for `platform` (all unlimited if none).
    pub fn limits(&self, platform: &Platform) -> Limits {
        self.0.get(platform).copied().unwrap_or_default()
    }

    pub fn insert(&mut self, platform: Platform, limits: Limits) {
        self.0.insert(platform, limits);
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Platform, &Limits)> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for QuotaDefaults {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (platform, limits) in &self.0 {
            map.serialize_entry(platform, limits)?;
        }
        map.end()
    }
}

/// A `Defaults` request body before validation: entries in body order, duplicate
/// keys kept (a JSON object parsed into a map would silently keep the last one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DefaultsBody(pub Vec<(String, Limits)>);

impl<'de> Deserialize<'de> for DefaultsBody {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = DefaultsBody;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object of platform -> limits")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DefaultsBody, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    entries.push((key, map.next_value::<Limits>()?));
                }
                Ok(DefaultsBody(entries))
            }
        }
        d.deserialize_map(EntriesVisitor)
    }
}

/// Which defaults item: the system's or one auth source's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultsScope {
    System,
    Source(AuthSource),
}

impl DefaultsScope {
    /// The audit action of replacing this scope.
    pub fn audit_action(self) -> &'static str {
        match self {
            DefaultsScope::System => super::audit::ADMIN_SET_SYSTEM_QUOTA_DEFAULTS,
            DefaultsScope::Source(_) => super::audit::ADMIN_SET_SOURCE_QUOTA_DEFAULTS,
        }
    }

    /// How a stored value reads: an empty (cleared) source default is no default
    /// at all (`null`); the system default always exists (`{}` when empty).
    pub fn visible(self, defaults: &QuotaDefaults) -> Option<&QuotaDefaults> {
        match self {
            DefaultsScope::Source(_) if defaults.is_empty() => None,
            _ => Some(defaults),
        }
    }

    pub fn label(self) -> String {
        match self {
            DefaultsScope::System => "system".into(),
            DefaultsScope::Source(s) => format!("source:{s}"),
        }
    }
}

/// Every stored default: the configuration layer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DefaultsSet {
    pub system: QuotaDefaults,
    pub sources: BTreeMap<AuthSource, QuotaDefaults>,
}

impl DefaultsSet {
    /// What `init` from `source` aims for on `platform`: per field the source's
    /// value if set, else the system's.
    pub fn limits_for(&self, source: AuthSource, platform: &Platform) -> Limits {
        let system = self.system.limits(platform);
        match self.sources.get(&source) {
            Some(defaults) => defaults.limits(platform).merged_over(&system),
            None => system,
        }
    }

    /// `{"system": Defaults, "sources": {source: Defaults or null}}`, every source listed.
    pub fn view(&self) -> Value {
        let sources: serde_json::Map<String, Value> = AuthSource::ALL
            .iter()
            .map(|s| {
                let value = self
                    .sources
                    .get(s)
                    .map_or(Value::Null, |d| serde_json::to_value(d).unwrap_or_default());
                (s.as_str().to_string(), value)
            })
            .collect();
        json!({ "system": self.system, "sources": sources })
    }
}

/// One entry of a user replace body.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsEntry {
    pub platform: String,
    #[serde(default)]
    pub daily_limit_usd: Option<Usd>,
    #[serde(default)]
    pub weekly_limit_usd: Option<Usd>,
    #[serde(default)]
    pub monthly_limit_usd: Option<Usd>,
}

/// Validates a replace body: every platform configured, none twice.
pub fn replacement_limits(
    entries: Vec<LimitsEntry>,
    platforms: &Platforms,
) -> Result<BTreeMap<Platform, Limits>, Error> {
    let mut map = BTreeMap::new();
    for e in entries {
        let platform = platforms.parse(&e.platform)?;
        let limits = Limits {
            daily: e.daily_limit_usd,
            weekly: e.weekly_limit_usd,
            monthly: e.monthly_limit_usd,
        };
        if map.insert(platform, limits).is_some() {
            return Err(Error::DuplicatePlatform(e.platform));
        }
    }
    Ok(map)
}

/// A planned change of one record; the store writes `after` on condition that
/// the stored record still matches `before`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordChange {
    pub before: QuotaRecord,
    pub after: QuotaRecord,
}

fn record_of(records: &[QuotaRecord], platform: &Platform) -> QuotaRecord {
    records
        .iter()
        .find(|r| r.platform == platform.as_str())
        .cloned()
        .unwrap_or_else(|| QuotaRecord::unlimited(platform.as_str()))
}

/// A limit `init` filled in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FilledLimit {
    pub platform: String,
    pub window: WindowKind,
    pub limit_usd: Usd,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InitPlan {
    /// Only records with at least one filled limit.
    pub changes: Vec<RecordChange>,
    pub filled: Vec<FilledLimit>,
}

/// `init`: fills every limit no admin or earlier init decided, from the source
/// default merged over the system default. A default of `null` fills nothing, so
/// the limit stays open for a later default. Running it twice changes nothing.
pub fn plan_init(
    records: &[QuotaRecord],
    platforms: &Platforms,
    defaults: &DefaultsSet,
    source: AuthSource,
) -> InitPlan {
    let mut plan = InitPlan::default();
    for platform in platforms.iter() {
        let before = record_of(records, platform);
        let target = defaults.limits_for(source, platform);
        let mut after = before.clone();
        for kind in WindowKind::ALL {
            let window = after.window_mut(kind);
            if let (false, Some(value)) = (window.limit_set, target.get(kind)) {
                window.limit = Some(value);
                window.limit_set = true;
                plan.filled.push(FilledLimit {
                    platform: platform.to_string(),
                    window: kind,
                    limit_usd: value,
                });
            }
        }
        if after != before {
            plan.changes.push(RecordChange { before, after });
        }
    }
    plan
}

/// Replace-all: every configured platform gets exactly the given limits (absent
/// platforms: unlimited), all marked as decided; usage and windows are kept.
pub fn plan_replace(
    records: &[QuotaRecord],
    platforms: &Platforms,
    limits: &BTreeMap<Platform, Limits>,
) -> Vec<RecordChange> {
    platforms
        .iter()
        .map(|platform| {
            let before = record_of(records, platform);
            let wanted = limits.get(platform).copied().unwrap_or_default();
            let mut after = before.clone();
            for kind in WindowKind::ALL {
                let window = after.window_mut(kind);
                window.limit = wanted.get(kind);
                window.limit_set = true;
            }
            RecordChange { before, after }
        })
        .collect()
}

/// Manual reset: the window's usage becomes zero, counted from the current window.
pub fn plan_reset(
    records: &[QuotaRecord],
    platform: &Platform,
    kind: WindowKind,
    now: DateTime<Utc>,
    tz: Tz,
) -> RecordChange {
    let before = record_of(records, platform);
    let mut after = before.clone();
    let window = after.window_mut(kind);
    window.usage = Usd::ZERO;
    window.start = Some(kind.bounds_at(now, tz).start);
    RecordChange { before, after }
}

/// The records after `changes` are applied (for answering without a re-read).
pub fn apply_changes(records: &[QuotaRecord], changes: &[RecordChange]) -> Vec<QuotaRecord> {
    let mut out: Vec<QuotaRecord> = records.to_vec();
    for change in changes {
        match out.iter_mut().find(|r| r.platform == change.after.platform) {
            Some(r) => *r = change.after.clone(),
            None => out.push(change.after.clone()),
        }
    }
    out
}

/// Audit details of limit changes: `{"before": {platform: Limits}, "after": ...}`.
pub fn limit_change_details(changes: &[RecordChange]) -> Value {
    let side = |pick: fn(&RecordChange) -> &QuotaRecord| -> Value {
        changes
            .iter()
            .map(|c| {
                let r = pick(c);
                (
                    r.platform.clone(),
                    serde_json::to_value(r.limits()).unwrap_or_default(),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    json!({ "before": side(|c| &c.before), "after": side(|c| &c.after) })
}

/// Audit details of a window reset.
pub fn reset_details(change: &RecordChange, kind: WindowKind) -> Value {
    let side = |r: &QuotaRecord| {
        let w = r.window(kind);
        json!({ "usage_usd": w.usage, "window_start": w.start })
    };
    json!({
        "platform": change.after.platform,
        "window": kind,
        "before": side(&change.before),
        "after": side(&change.after),
    })
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn usd(s: &str) -> Usd {
        Usd::parse_non_negative(s).unwrap()
    }

    fn tz(name: &str) -> Tz {
        name.parse().unwrap()
    }

    /// A record with one window's limit and usage in the window containing `now`.
    fn record(
        kind: WindowKind,
        limit: Option<&str>,
        usage: &str,
        now: DateTime<Utc>,
        zone: Tz,
    ) -> QuotaRecord {
        let mut r = QuotaRecord::unlimited("openai");
        *r.window_mut(kind) = WindowState {
            limit: limit.map(usd),
            limit_set: true,
            usage: usd(usage),
            start: Some(kind.bounds_at(now, zone).start),
            reserved: Usd::ZERO,
        };
        r
    }

    #[test]
    fn rolled_over_window_reads_zero() {
        let tz = Tz::UTC;
        let day1 = utc("2026-11-20T10:00:00Z");
        let day2 = utc("2026-11-21T00:00:00Z");
        let state = WindowState {
            limit: None,
            limit_set: false,
            usage: Usd::from_whole(5),
            start: Some(WindowKind::Daily.bounds_at(day1, tz).start),
            reserved: Usd::ZERO,
        };
        assert_eq!(
            state.usage_at(WindowKind::Daily, day1, tz),
            Usd::from_whole(5)
        );
        assert_eq!(state.usage_at(WindowKind::Daily, day2, tz), Usd::ZERO);
    }

    #[test]
    fn view_lists_every_platform() {
        let now = utc("2026-11-21T10:00:00Z");
        let v = UserQuotasView::build(
            UserId::parse("alice").unwrap(),
            &Platforms::defaults(),
            &[],
            now,
            Tz::UTC,
        );
        assert_eq!(v.quotas.len(), 4);
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["quotas"][0]["daily"]["limit_usd"], Value::Null);
        assert_eq!(json["quotas"][0]["daily"]["usage_usd"], "0");
        assert_eq!(
            json["quotas"][0]["daily"]["window_start"],
            "2026-11-21T00:00:00Z"
        );
    }

    // --- the limit semantics table ---

    #[test]
    fn unset_limit_allows_any_usage() {
        let now = utc("2026-11-21T10:00:00Z");
        let r = record(WindowKind::Daily, None, "1000000", now, Tz::UTC);
        let c = QuotaCheck::evaluate(&r, now, Tz::UTC);
        assert!(c.allowed);
        assert_eq!(c.reason, None);
        assert_eq!(c.retry_after_seconds, None);
        assert_eq!(c.windows.daily.remaining_usd, None);
        assert_eq!(c.windows.daily.usage_usd, usd("1000000"));
    }

    #[test]
    fn zero_limit_disables_even_at_zero_usage() {
        let now = utc("2026-11-21T10:00:00Z");
        for kind in WindowKind::ALL {
            let r = record(kind, Some("0"), "0", now, Tz::UTC);
            let c = QuotaCheck::evaluate(&r, now, Tz::UTC);
            assert!(!c.allowed, "{kind:?}");
            assert_eq!(c.reason, Some(DenyReason::PlatformDisabled));
            assert_eq!(c.retry_after_seconds, None);
        }
        // Disabled wins over an exhausted window.
        let mut r = record(WindowKind::Daily, Some("1"), "5", now, Tz::UTC);
        r.monthly.limit = Some(Usd::ZERO);
        let c = QuotaCheck::evaluate(&r, now, Tz::UTC);
        assert_eq!(c.reason, Some(DenyReason::PlatformDisabled));
    }

    #[test]
    fn cap_denies_once_usage_reaches_it() {
        let now = utc("2026-11-21T10:00:00Z");
        let below = record(WindowKind::Daily, Some("10"), "9.9999999999", now, Tz::UTC);
        let c = QuotaCheck::evaluate(&below, now, Tz::UTC);
        assert!(c.allowed);
        assert_eq!(c.windows.daily.remaining_usd, Some(usd("0.0000000001")));

        let at = record(WindowKind::Daily, Some("10"), "10", now, Tz::UTC);
        let c = QuotaCheck::evaluate(&at, now, Tz::UTC);
        assert!(!c.allowed);
        assert_eq!(c.reason, Some(DenyReason::DailyQuotaExhausted));
        // 10:00 to the next midnight.
        assert_eq!(c.retry_after_seconds, Some(14 * 3600));
        assert_eq!(c.windows.daily.remaining_usd, Some(Usd::ZERO));

        let over = record(WindowKind::Weekly, Some("10"), "12.5", now, Tz::UTC);
        let c = QuotaCheck::evaluate(&over, now, Tz::UTC);
        assert_eq!(c.reason, Some(DenyReason::WeeklyQuotaExhausted));
        assert_eq!(c.windows.weekly.remaining_usd, Some(Usd::ZERO));
        // Saturday 10:00 to Monday 00:00.
        assert_eq!(c.retry_after_seconds, Some(38 * 3600));

        let month = record(WindowKind::Monthly, Some("3"), "3", now, Tz::UTC);
        let c = QuotaCheck::evaluate(&month, now, Tz::UTC);
        assert_eq!(c.reason, Some(DenyReason::MonthlyQuotaExhausted));
        assert_eq!(
            c.retry_after_seconds,
            Some((utc("2026-12-01T00:00:00Z") - now).num_seconds())
        );
    }

    #[test]
    fn retry_after_reaches_latest_exhausted_reset() {
        let now = utc("2026-11-21T10:00:00Z");
        let mut r = record(WindowKind::Daily, Some("1"), "1", now, Tz::UTC);
        *r.window_mut(WindowKind::Monthly) =
            record(WindowKind::Monthly, Some("5"), "5", now, Tz::UTC).monthly;
        let c = QuotaCheck::evaluate(&r, now, Tz::UTC);
        assert_eq!(c.reason, Some(DenyReason::MonthlyQuotaExhausted));
        assert_eq!(
            c.retry_after_seconds,
            Some((utc("2026-12-01T00:00:00Z") - now).num_seconds())
        );
        // A week that ends after the month does: the weekly reset is the latest.
        let now = utc("2026-11-30T12:00:00Z"); // Monday; week ends 2026-12-07
        let mut r = record(WindowKind::Weekly, Some("1"), "2", now, Tz::UTC);
        r.monthly = record(WindowKind::Monthly, Some("1"), "2", now, Tz::UTC).monthly;
        let c = QuotaCheck::evaluate(&r, now, Tz::UTC);
        assert_eq!(c.reason, Some(DenyReason::WeeklyQuotaExhausted));
        assert_eq!(
            c.retry_after_seconds,
            Some((utc("2026-12-07T00:00:00Z") - now).num_seconds())
        );
    }

    #[test]
    fn retry_after_rounds_up_partial_seconds() {
        let now = utc("2026-11-21T23:59:59.250Z");
        let r = record(WindowKind::Daily, Some("1"), "1", now, Tz::UTC);
        assert_eq!(
            QuotaCheck::evaluate(&r, now, Tz::UTC).retry_after_seconds,
            Some(1)
        );
    }

    #[test]
    fn check_serialises_as_contract() {
        let now = utc("2026-11-21T10:00:00Z");
        let r = record(WindowKind::Daily, Some("2.5"), "1.25", now, Tz::UTC);
        let v = serde_json::to_value(QuotaCheck::evaluate(&r, now, Tz::UTC)).unwrap();
        assert_eq!(
            v,
            json!({
                "allowed": true, "reason": null, "retry_after_seconds": null,
                "windows": {
                    "daily": {"limit_usd": "2.5", "usage_usd": "1.25", "reserved_usd": "0", "remaining_usd": "1.25",
                              "window_start": "2026-11-21T00:00:00Z", "resets_at": "2026-11-22T00:00:00Z"},
                    "weekly": {"limit_usd": null, "usage_usd": "0", "reserved_usd": "0", "remaining_usd": null,
                               "window_start": "2026-11-16T00:00:00Z", "resets_at": "2026-11-23T00:00:00Z"},
                    "monthly": {"limit_usd": null, "usage_usd": "0", "reserved_usd": "0", "remaining_usd": null,
                                "window_start": "2026-11-01T00:00:00Z", "resets_at": "2026-12-01T00:00:00Z"},
                }
            })
        );
        let denied = record(WindowKind::Daily, Some("0"), "0", now, Tz::UTC);
        let v = serde_json::to_value(QuotaCheck::evaluate(&denied, now, Tz::UTC)).unwrap();
        assert_eq!(v["reason"], "platform_disabled");
    }

    // --- window boundaries: last second of a window and first of the next ---

    /// (zone, window, last second, first second of the next window, start of the
    /// window holding the last second)
    #[rustfmt::skip]
    const BOUNDARIES: &[(&str, WindowKind, &str, &str, &str)] = &[
        // UTC; 2026-11-22 is a Sunday.
        ("UTC", WindowKind::Daily, "2026-11-21T23:59:59Z", "2026-11-22T00:00:00Z", "2026-11-21T00:00:00Z"),
        ("UTC", WindowKind::Weekly, "2026-11-22T23:59:59Z", "2026-11-23T00:00:00Z", "2026-11-16T00:00:00Z"),
        ("UTC", WindowKind::Monthly, "2026-11-30T23:59:59Z", "2026-12-01T00:00:00Z", "2026-11-01T00:00:00Z"),
        ("UTC", WindowKind::Monthly, "2026-12-31T23:59:59Z", "2027-01-01T00:00:00Z", "2026-12-01T00:00:00Z"),
        // Asia/Shanghai: UTC+8, no DST; local midnight is 16:00 UTC the day before.
        ("Asia/Shanghai", WindowKind::Daily, "2026-11-21T15:59:59Z", "2026-11-21T16:00:00Z", "2026-11-20T16:00:00Z"),
        ("Asia/Shanghai", WindowKind::Weekly, "2026-11-22T15:59:59Z", "2026-11-22T16:00:00Z", "2026-11-15T16:00:00Z"),
        ("Asia/Shanghai", WindowKind::Monthly, "2026-11-30T15:59:59Z", "2026-11-30T16:00:00Z", "2026-10-31T16:00:00Z"),
        // America/New_York, DST starts 2026-03-08 02:00 EST (that day has 23 hours).
        ("America/New_York", WindowKind::Daily, "2026-03-09T03:59:59Z", "2026-03-09T04:00:00Z", "2026-03-08T05:00:00Z"),
        ("America/New_York", WindowKind::Weekly, "2026-03-09T03:59:59Z", "2026-03-09T04:00:00Z", "2026-03-02T05:00:00Z"),
        ("America/New_York", WindowKind::Monthly, "2026-04-01T03:59:59Z", "2026-04-01T04:00:00Z", "2026-03-01T05:00:00Z"),
        // DST ends 2026-11-01 02:00 EDT (that day has 25 hours).
        ("America/New_York", WindowKind::Daily, "2026-11-02T04:59:59Z", "2026-11-02T05:00:00Z", "2026-11-01T04:00:00Z"),
        ("America/New_York", WindowKind::Weekly, "2026-11-02T04:59:59Z", "2026-11-02T05:00:00Z", "2026-10-26T04:00:00Z"),
        ("America/New_York", WindowKind::Monthly, "2026-11-01T03:59:59Z", "2026-11-01T04:00:00Z", "2026-10-01T04:00:00Z"),
        ("America/New_York", WindowKind::Monthly, "2026-12-01T04:59:59Z", "2026-12-01T05:00:00Z", "2026-11-01T04:00:00Z"),
    ];

    #[test]
    fn window_boundaries_through_the_check() {
        for &(zone, kind, last, first, start) in BOUNDARIES {
            let (zone, last, first, start) = (tz(zone), utc(last), utc(first), utc(start));
            let case = format!("{zone} {kind:?} {last}");
            // Usage recorded in the window that holds the last second exhausts it...
            let r = record(kind, Some("1"), "1", last, zone);
            let w = |c: &QuotaCheck| match kind {
                WindowKind::Daily => c.windows.daily.clone(),
                WindowKind::Weekly => c.windows.weekly.clone(),
                WindowKind::Monthly => c.windows.monthly.clone(),
            };
            let c = QuotaCheck::evaluate(&r, last, zone);
            assert!(!c.allowed, "{case}");
            assert_eq!(c.reason, Some(DenyReason::exhausted(kind)), "{case}");
            assert_eq!(c.retry_after_seconds, Some(1), "{case}");
            assert_eq!(w(&c).window_start, start, "{case}");
            assert_eq!(w(&c).resets_at, first, "{case}");
            // ...and reads as zero from the first second of the next window.
            let c = QuotaCheck::evaluate(&r, first, zone);
            assert!(c.allowed, "{case}");
            assert_eq!(w(&c).usage_usd, Usd::ZERO, "{case}");
            assert_eq!(w(&c).window_start, first, "{case}");
            assert!(w(&c).resets_at > first, "{case}");
        }
    }

    // --- configuration layer and init ---

    fn platforms() -> Platforms {
        Platforms::defaults()
    }

    fn p(name: &str) -> Platform {
        platforms().parse(name).unwrap()
    }

    fn defaults(json: &str) -> QuotaDefaults {
        QuotaDefaults::from_body(serde_json::from_str(json).unwrap(), &platforms()).unwrap()
    }

    #[test]
    fn defaults_body_validation() {
        let d = defaults(r#"{"openai": {"daily_limit_usd": "1.5", "monthly_limit_usd": 20}}"#);
        assert_eq!(
            d.limits(&p("openai")),
            Limits {
                daily: Some(usd("1.5")),
                weekly: None,
                monthly: Some(usd("20"))
            }
        );
        assert_eq!(
            serde_json::to_value(&d).unwrap(),
            json!({"openai": {"daily_limit_usd": "1.5", "weekly_limit_usd": null, "monthly_limit_usd": "20"}})
        );
        let parse = |text: &str| {
            serde_json::from_str::<DefaultsBody>(text)
                .map_err(Error::from_json)
                .and_then(|b| QuotaDefaults::from_body(b, &platforms()))
                .map_err(|e| e.code())
        };
        assert_eq!(parse("{}").unwrap(), QuotaDefaults::default());
        assert_eq!(parse(r#"{"mistral": {}}"#), Err("unknown_platform"));
        assert_eq!(
            parse(r#"{"openai": {}, "openai": {}}"#),
            Err("duplicate_platform")
        );
        assert_eq!(
            parse(r#"{"openai": {"daily_limit_usd": "-1"}}"#),
            Err("invalid_amount")
        );
        assert_eq!(
            parse(r#"{"openai": {"daily_limit_usd": "NaN"}}"#),
            Err("invalid_amount")
        );
        assert_eq!(
            parse(r#"{"openai": {"daily_limit_usd": 0.00000000001}}"#),
            Err("invalid_amount")
        );
        assert_eq!(
            parse(r#"{"openai": {"daily_limit": "1"}}"#),
            Err("invalid_request")
        );
        assert_eq!(parse("[]"), Err("invalid_request"));
    }

    #[test]
    fn replacement_validation() {
        // Usd reads its exact source text, so parse from text, not from a Value.
        let entries = |v: Value| serde_json::from_str::<Vec<LimitsEntry>>(&v.to_string());
        let ok = replacement_limits(
            entries(json!([{"platform": "openai", "daily_limit_usd": "5"}])).unwrap(),
            &platforms(),
        )
        .unwrap();
        assert_eq!(ok[&p("openai")].daily, Some(usd("5")));
        let dup = replacement_limits(
            entries(json!([{"platform": "openai"}, {"platform": "openai"}])).unwrap(),
            &platforms(),
        );
        assert_eq!(dup.unwrap_err().code(), "duplicate_platform");
        let unknown = replacement_limits(
            entries(json!([{"platform": "mistral"}])).unwrap(),
            &platforms(),
        );
        assert_eq!(unknown.unwrap_err().code(), "unknown_platform");
    }

    fn set_of(system: &str, sources: &[(AuthSource, &str)]) -> DefaultsSet {
        DefaultsSet {
            system: defaults(system),
            sources: sources.iter().map(|(s, d)| (*s, defaults(d))).collect(),
        }
    }

    #[test]
    fn source_default_merges_over_system_per_field() {
        let set = set_of(
            r#"{"openai": {"daily_limit_usd": "10", "weekly_limit_usd": "50"}, "gemini": {"monthly_limit_usd": "7"}}"#,
            &[(
                AuthSource::Github,
                r#"{"openai": {"daily_limit_usd": "20", "monthly_limit_usd": "0"}}"#,
            )],
        );
        assert_eq!(
            set.limits_for(AuthSource::Github, &p("openai")),
            Limits {
                daily: Some(usd("20")),
                weekly: Some(usd("50")),
                monthly: Some(Usd::ZERO)
            }
        );
        assert_eq!(
            set.limits_for(AuthSource::Github, &p("gemini")).monthly,
            Some(usd("7"))
        );
        assert_eq!(
            set.limits_for(AuthSource::Email, &p("openai")),
            Limits {
                daily: Some(usd("10")),
                weekly: Some(usd("50")),
                monthly: None
            }
        );
        let view = set.view();
        assert_eq!(view["sources"]["email"], Value::Null);
        assert_eq!(view["sources"]["github"]["openai"]["daily_limit_usd"], "20");
        assert_eq!(view["sources"].as_object().unwrap().len(), 7);
    }

    #[test]
    fn init_fills_only_undecided_limits_and_is_idempotent() {
        let set = set_of(
            r#"{"openai": {"daily_limit_usd": "10", "weekly_limit_usd": "50"}}"#,
            &[],
        );
        // An admin decided openai daily = 5 and anthropic (everything) = unlimited;
        // gemini has usage but no decided limits (created by metering).
        let mut openai = QuotaRecord::unlimited("openai");
        openai.daily.limit = Some(usd("5"));
        openai.daily.limit_set = true;
        let mut gemini = QuotaRecord::unlimited("gemini");
        gemini.daily.usage = usd("3");
        let set = DefaultsSet {
            system: {
                let mut s = set.system.clone();
                s.insert(
                    p("gemini"),
                    Limits {
                        daily: Some(usd("4")),
                        ..Limits::default()
                    },
                );
                s
            },
            ..set
        };
        let records = vec![openai.clone(), gemini.clone()];
        let plan = plan_init(&records, &platforms(), &set, AuthSource::Email);
        let after = apply_changes(&records, &plan.changes);
        let find = |name: &str| after.iter().find(|r| r.platform == name).unwrap().clone();
        assert_eq!(
            find("openai").daily.limit,
            Some(usd("5")),
            "admin value kept"
        );
        assert_eq!(find("openai").weekly.limit, Some(usd("50")), "filled");
        assert!(find("openai").weekly.limit_set);
        assert!(
            !find("openai").monthly.limit_set,
            "null default fills nothing"
        );
        assert_eq!(find("gemini").daily.limit, Some(usd("4")));
        assert_eq!(find("gemini").daily.usage, usd("3"), "usage kept");
        assert_eq!(plan.filled.len(), 2);
        assert!(
            after.iter().all(|r| r.platform != "anthropic"),
            "no-op not written"
        );

        let again = plan_init(&after, &platforms(), &set, AuthSource::Email);
        assert_eq!(again, InitPlan::default());
    }

    #[test]
    fn replace_sets_every_platform_and_keeps_usage() {
        let mut anthropic = QuotaRecord::unlimited("anthropic");
        anthropic.weekly.limit = Some(usd("9"));
        anthropic.weekly.usage = usd("2");
        anthropic.weekly.start = Some(utc("2026-11-16T00:00:00Z"));
        let limits = BTreeMap::from([(
            p("openai"),
            Limits {
                daily: Some(usd("1")),
                ..Limits::default()
            },
        )]);
        let changes = plan_replace(std::slice::from_ref(&anthropic), &platforms(), &limits);
        assert_eq!(changes.len(), 4);
        let a = &changes
            .iter()
            .find(|c| c.after.platform == "anthropic")
            .unwrap()
            .after;
        assert_eq!(a.weekly.limit, None);
        assert!(a.weekly.limit_set);
        assert_eq!(a.weekly.usage, usd("2"));
        assert_eq!(a.weekly.start, anthropic.weekly.start);
        let o = &changes
            .iter()
            .find(|c| c.after.platform == "openai")
            .unwrap()
            .after;
        assert_eq!(o.daily.limit, Some(usd("1")));
        let details = limit_change_details(&changes);
        assert_eq!(details["before"]["anthropic"]["weekly_limit_usd"], "9");
        assert_eq!(
            details["after"]["anthropic"]["weekly_limit_usd"],
            Value::Null
        );
    }

    #[test]
    fn reset_zeroes_one_window_from_the_current_start() {
        let now = utc("2026-11-21T10:00:00Z");
        let mut r = record(WindowKind::Daily, Some("5"), "4", now, Tz::UTC);
        r.weekly.usage = usd("7");
        r.weekly.start = Some(utc("2026-11-16T00:00:00Z"));
        let change = plan_reset(&[r], &p("openai"), WindowKind::Daily, now, Tz::UTC);
        assert_eq!(change.after.daily.usage, Usd::ZERO);
        assert_eq!(change.after.daily.start, Some(utc("2026-11-21T00:00:00Z")));
        assert_eq!(change.after.daily.limit, Some(usd("5")));
        assert_eq!(change.after.weekly.usage, usd("7"));
        let d = reset_details(&change, WindowKind::Daily);
        assert_eq!(d["before"]["usage_usd"], "4");
        assert_eq!(d["after"]["usage_usd"], "0");
    }
}
