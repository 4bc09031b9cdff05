//! Spend alerts: threshold crossings of quota windows and low credit balances,
//! decided from the old and new image of one write (the table's change stream).
//! Pure: no AWS types, no clock (the change's own time is an input).
//!
//! Rules (the contract's "Alerts"):
//! - A quota window alerts at threshold `t` (percent of its limit) when one
//!   write takes its usage from below `t` to at or above it. One alert per
//!   (user, platform, window, window start, threshold): the `alert_id` is a
//!   UUID v5 of exactly that, so whatever evaluates the same crossing twice
//!   (stream redelivery, a limit lowered, raised and lowered again) names the
//!   same alert, and the store writes it once.
//! - A new window start re-arms: when the write rolled the window over, the
//!   old usage counts as zero. An admin reset keeps the window start, so it
//!   does not re-arm within the window (the contract keys alerts by start).
//! - Unlimited windows (`null`) never alert. Disabled windows (limit 0) never
//!   alert either: every request is denied, nothing is spent, and "percent of
//!   zero" means nothing.
//! - A limit change is a crossing when it moves usage's share of the limit
//!   across a threshold (lowering $100 → $10 with $9 spent crosses 50 % and
//!   80 %); an uncapped window before the change counts as 0 %. A limit change
//!   on a window that has already ended (its usage is stale, nobody spends in
//!   it any more) alerts nothing.
//! - Low balance: `available` drops from ≥ `SPENDGUARD_LOW_BALANCE_CREDITS` to
//!   below it; rising back to ≥ re-arms. The id is keyed by the account's
//!   `seq` after the write (each balance change has its own), so a redelivery
//!   names the same alert and the next drop a new one.

use super::{Usd, WindowKind};
use crate::domain::quota::{QuotaRecord, WindowState};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use chrono_tz::Tz;
use hmac::{Hmac, Mac};
use serde::{Serialize, Serializer};
use sha2::Sha256;

pub const ENV_ALERT_THRESHOLDS: &str = "SPENDGUARD_ALERT_THRESHOLDS";
pub const ENV_LOW_BALANCE_CREDITS: &str = "SPENDGUARD_LOW_BALANCE_CREDITS";
pub const DEFAULT_THRESHOLDS: [u32; 3] = [50, 80, 100];
/// Highest threshold accepted (percent): alerting at 10x a cap is still a choice.
pub const MAX_THRESHOLD_PERCENT: u32 = 1000;
/// Alerts are kept (TTL) this long; the contract asks for at least 30 days.
pub const RETENTION_DAYS: i64 = 35;
/// A limit change on a window that ended more than this before the change is
/// about stale usage and alerts nothing (slack for clocks around midnight).
const ENDED_WINDOW_GRACE: Duration = Duration::minutes(5);

/// Namespace of alert ids (UUID v5 of the crossing's key).
const ALERT_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x5b6e_1d7a_4c1f_4f0e_9a3c_2e8d_7f61_a0c4);

/// Thresholds from configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertSettings {
    /// Percent of a window's limit, ascending, distinct.
    pub thresholds: Vec<u32>,
    /// `None`: low-balance alerts are off.
    pub low_balance_credits: Option<i64>,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            thresholds: DEFAULT_THRESHOLDS.to_vec(),
            low_balance_credits: None,
        }
    }
}

impl AlertSettings {
    /// Parses the two variables (absent or blank: defaults). Thresholds are
    /// integers 1..=1000 separated by spaces or commas.
    pub fn parse(thresholds: Option<&str>, low_balance: Option<&str>) -> Result<Self, String> {
        let mut settings = Self::default();
        if let Some(text) = thresholds.filter(|t| !t.trim().is_empty()) {
            let mut list = Vec::new();
            for part in text.split([' ', ',', '\t']).filter(|p| !p.is_empty()) {
                let pct: u32 = part
                    .parse()
                    .ok()
                    .filter(|p| (1..=MAX_THRESHOLD_PERCENT).contains(p))
                    .ok_or_else(|| {
                        format!(
                            "{ENV_ALERT_THRESHOLDS}: {part:?} is not a percent in 1..={MAX_THRESHOLD_PERCENT}"
                        )
                    })?;
                list.push(pct);
            }
            list.sort_unstable();
            list.dedup();
            settings.thresholds = list;
        }
        if let Some(text) = low_balance.filter(|t| !t.trim().is_empty()) {
            let credits: i64 = text.trim().parse().map_err(|_| {
                format!("{ENV_LOW_BALANCE_CREDITS}: {text:?} is not an integer number of credits")
            })?;
            settings.low_balance_credits = Some(credits);
        }
        Ok(settings)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertType {
    QuotaThreshold,
    LowBalance,
}

impl AlertType {
    pub const ALL: [AlertType; 2] = [AlertType::QuotaThreshold, AlertType::LowBalance];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertType::QuotaThreshold => "quota_threshold",
            AlertType::LowBalance => "low_balance",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

/// The contract's Alert. Fields that do not apply to the type are omitted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Alert {
    pub alert_id: String,
    #[serde(rename = "type")]
    pub alert_type: AlertType,
    pub user_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowKind>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "rfc3339_opt"
    )]
    pub window_start: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold_percent: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_usd: Option<Usd>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_usd: Option<Usd>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balance: Option<i64>,
    /// The low-balance threshold that was crossed (credits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub low_balance_credits: Option<i64>,
    #[serde(serialize_with = "rfc3339")]
    pub occurred_at: DateTime<Utc>,
}

/// RFC 3339 UTC text as every spendguard timestamp is written.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn rfc3339<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&timestamp(*t))
}

fn rfc3339_opt<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339(t, s),
        None => s.serialize_none(),
    }
}

impl Alert {
    /// Retention expiry (epoch seconds) of the stored alert.
    pub fn expires_at_epoch(&self) -> i64 {
        (self.occurred_at + Duration::days(RETENTION_DAYS)).timestamp()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an alert serialises")
    }
}

fn alert_id(key: &str) -> String {
    uuid::Uuid::new_v5(&ALERT_NAMESPACE, key.as_bytes()).to_string()
}

/// Whether `usage` is at or above `percent` of `limit` (exact; `limit` > 0).
fn reached(usage: Usd, limit: Usd, percent: u32) -> bool {
    usage.atoms().saturating_mul(100) >= limit.atoms().saturating_mul(i128::from(percent))
}

/// The cap of a window that can alert: a positive limit.
fn cap(state: &WindowState) -> Option<Usd> {
    state.limit.filter(|l| l.atoms() > 0)
}

/// Quota threshold alerts of one write of a quota item. `old` is `None` for a
/// new item; `at` is when the write happened (the stream record's time).
pub fn quota_alerts(
    user_id: &str,
    old: Option<&QuotaRecord>,
    new: &QuotaRecord,
    at: DateTime<Utc>,
    tz: Tz,
    settings: &AlertSettings,
) -> Vec<Alert> {
    let mut alerts = Vec::new();
    for kind in WindowKind::ALL {
        let after = new.window(kind);
        let (Some(limit), Some(start)) = (cap(after), after.start) else {
            continue;
        };
        let before = old.map(|o| o.window(kind)).cloned().unwrap_or_default();
        // The usage the old image holds in the same window; a rollover re-arms.
        let before_usage = if before.start == Some(start) {
            before.usage
        } else {
            Usd::ZERO
        };
        let usage_written = before.start != after.start || before.usage != after.usage;
        if !usage_written && kind.bounds_at(start, tz).end + ENDED_WINDOW_GRACE <= at {
            continue; // a limit change on a window that is over
        }
        for &pct in &settings.thresholds {
            let was = cap(&before).is_some_and(|l| reached(before_usage, l, pct));
            if was || !reached(after.usage, limit, pct) {
                continue;
            }
            let key = format!(
                "quota_threshold|{user_id}|{}|{}|{}|{pct}",
                new.platform,
                kind.as_str(),
                start.timestamp()
            );
            alerts.push(Alert {
                alert_id: alert_id(&key),
                alert_type: AlertType::QuotaThreshold,
                user_id: user_id.to_string(),
                platform: Some(new.platform.clone()),
                window: Some(kind),
                window_start: Some(start),
                threshold_percent: Some(pct),
                limit_usd: Some(limit),
                usage_usd: Some(after.usage),
                balance: None,
                low_balance_credits: None,
                occurred_at: at,
            });
        }
    }
    alerts
}

/// A credit account's balance as the change stream shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BalanceImage {
    pub available: i64,
    /// The account's `seq` (its last ledger entry) after the write.
    pub seq: u64,
}

/// The low-balance alert of one write of a credit account, if it crossed.
/// `old` is `None` for a new account (which starts at zero).
pub fn low_balance_alert(
    user_id: &str,
    old: Option<BalanceImage>,
    new: BalanceImage,
    at: DateTime<Utc>,
    settings: &AlertSettings,
) -> Option<Alert> {
    let threshold = settings.low_balance_credits?;
    let before = old.map_or(0, |o| o.available);
    if !(before >= threshold && new.available < threshold) {
        return None;
    }
    let key = format!("low_balance|{user_id}|{threshold}|{}", new.seq);
    Some(Alert {
        alert_id: alert_id(&key),
        alert_type: AlertType::LowBalance,
        user_id: user_id.to_string(),
        platform: None,
        window: None,
        window_start: None,
        threshold_percent: None,
        limit_usd: None,
        usage_usd: None,
        balance: Some(new.available),
        low_balance_credits: Some(threshold),
        occurred_at: at,
    })
}

/// Header carrying the webhook signature.
pub const SIGNATURE_HEADER: &str = "Spendguard-Signature";
/// What receivers should accept between the signature's time and their clock.
pub const SIGNATURE_TOLERANCE_SECS: i64 = 300;

fn hmac_hex(secret: &str, t: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(format!("{t}.{body}").as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` (Stripe's scheme).
pub fn webhook_signature(secret: &str, t: i64, body: &str) -> String {
    format!("t={t},v1={}", hmac_hex(secret, t, body))
}

/// A receiver's check: some `v1` matches and `t` is within `tolerance_secs`
/// of `now` (refuses replays of old deliveries).
pub fn verify_webhook_signature(
    header: &str,
    secret: &str,
    body: &str,
    now: i64,
    tolerance_secs: i64,
) -> bool {
    let mut t = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.push(v),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    if (now - t).abs() > tolerance_secs {
        return false;
    }
    let expected = hmac_hex(secret, t, body);
    // Constant-time comparison.
    signatures.iter().any(|s| {
        s.len() == expected.len()
            && s.bytes()
                .zip(expected.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn usd(s: &str) -> Usd {
        Usd::parse_signed(s).unwrap()
    }

    const DAY: &str = "2026-11-22T00:00:00Z";
    const AT: &str = "2026-11-22T12:00:00Z";

    fn record(limit: Option<&str>, usage: &str, start: Option<&str>) -> QuotaRecord {
        let mut r = QuotaRecord::unlimited("openai");
        r.daily = WindowState {
            limit: limit.map(usd),
            limit_set: true,
            usage: usd(usage),
            start: start.map(utc),
            reserved: Usd::ZERO,
        };
        r
    }

    fn crossed(old: Option<&QuotaRecord>, new: &QuotaRecord) -> Vec<u32> {
        quota_alerts(
            "alice",
            old,
            new,
            utc(AT),
            Tz::UTC,
            &AlertSettings::default(),
        )
        .iter()
        .map(|a| a.threshold_percent.unwrap())
        .collect()
    }

    #[test]
    fn a_crossing_alerts_once_per_threshold_passed() {
        let old = record(Some("10"), "4.9999999999", Some(DAY));
        assert_eq!(
            crossed(Some(&old), &record(Some("10"), "5", Some(DAY))),
            [50]
        );
        // One write over several thresholds: each of them.
        assert_eq!(
            crossed(Some(&old), &record(Some("10"), "10", Some(DAY))),
            [50, 80, 100]
        );
        // A level, not a crossing: already above 50 and below 80.
        let mid = record(Some("10"), "6", Some(DAY));
        assert!(crossed(Some(&mid), &record(Some("10"), "7.9999999999", Some(DAY))).is_empty());
        assert_eq!(
            crossed(Some(&mid), &record(Some("10"), "8", Some(DAY))),
            [80]
        );
        // A new item is compared with zero.
        assert_eq!(crossed(None, &record(Some("10"), "5", Some(DAY))), [50]);
    }

    #[test]
    fn the_alert_carries_the_contract_fields_and_a_deterministic_id() {
        let old = record(Some("10"), "0", Some(DAY));
        let new = record(Some("10"), "5.5", Some(DAY));
        let settings = AlertSettings::default();
        let a = quota_alerts("alice", Some(&old), &new, utc(AT), Tz::UTC, &settings);
        let b = quota_alerts("alice", None, &new, utc(AT), Tz::UTC, &settings);
        assert_eq!(a[0].alert_id, b[0].alert_id, "same crossing, same id");
        let json: serde_json::Value = serde_json::from_str(&a[0].to_json()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "alert_id": a[0].alert_id,
                "type": "quota_threshold",
                "user_id": "alice",
                "platform": "openai",
                "window": "daily",
                "window_start": "2026-11-22T00:00:00.000000Z",
                "threshold_percent": 50,
                "limit_usd": "10",
                "usage_usd": "5.5",
                "occurred_at": "2026-11-22T12:00:00.000000Z",
            })
        );
        // Another window start is another crossing.
        let tomorrow = record(Some("10"), "5.5", Some("2026-11-23T00:00:00Z"));
        let c = quota_alerts("alice", Some(&new), &tomorrow, utc(AT), Tz::UTC, &settings);
        assert_ne!(c[0].alert_id, a[0].alert_id);
    }

    #[test]
    fn a_new_window_re_arms() {
        let yesterday = record(Some("10"), "9", Some("2026-11-21T00:00:00Z"));
        assert_eq!(
            crossed(Some(&yesterday), &record(Some("10"), "6", Some(DAY))),
            [50]
        );
    }

    #[test]
    fn unlimited_and_disabled_windows_never_alert() {
        assert!(crossed(None, &record(None, "1000", Some(DAY))).is_empty());
        assert!(crossed(None, &record(Some("0"), "1000", Some(DAY))).is_empty());
    }

    #[test]
    fn an_admin_reset_alerts_nothing_and_does_not_re_arm_within_the_window() {
        let spent = record(Some("10"), "9", Some(DAY));
        let reset = record(Some("10"), "0", Some(DAY));
        assert!(crossed(Some(&spent), &reset).is_empty());
        // Spending again crosses again; the id is the first crossing's, so the
        // store keeps the one alert of this window.
        let settings = AlertSettings::default();
        let first = quota_alerts("alice", None, &spent, utc(AT), Tz::UTC, &settings);
        let again = quota_alerts("alice", Some(&reset), &spent, utc(AT), Tz::UTC, &settings);
        assert_eq!(
            first.iter().map(|a| &a.alert_id).collect::<Vec<_>>(),
            again.iter().map(|a| &a.alert_id).collect::<Vec<_>>()
        );
    }

    #[test]
    fn limit_changes_cross_by_share_of_the_limit() {
        let spent = record(Some("100"), "9", Some(DAY));
        assert_eq!(
            crossed(Some(&spent), &record(Some("10"), "9", Some(DAY))),
            [50, 80]
        );
        // From unlimited (0 %) to a cap.
        let uncapped = record(None, "9", Some(DAY));
        assert_eq!(
            crossed(Some(&uncapped), &record(Some("10"), "9", Some(DAY))),
            [50, 80]
        );
        // Raising a limit alerts nothing.
        assert!(crossed(
            Some(&record(Some("10"), "9", Some(DAY))),
            &record(Some("100"), "9", Some(DAY))
        )
        .is_empty());
        // A window that is over is not alerted on by a limit change.
        let old_day = "2026-11-20T00:00:00Z";
        assert!(crossed(
            Some(&record(Some("100"), "9", Some(old_day))),
            &record(Some("10"), "9", Some(old_day))
        )
        .is_empty());
    }

    #[test]
    fn amounts_compare_exactly() {
        let settings = AlertSettings::parse(Some("33"), None).unwrap();
        let limit = "0.0000000003"; // 3 atoms: 33 % is 0.99 atoms
        let one = record(Some(limit), "0.0000000001", Some(DAY));
        let a = quota_alerts("u", None, &one, utc(AT), Tz::UTC, &settings);
        assert_eq!(a.len(), 1);
        let zero = record(Some(limit), "0", Some(DAY));
        assert!(quota_alerts("u", None, &zero, utc(AT), Tz::UTC, &settings).is_empty());
    }

    fn balance(available: i64, seq: u64) -> BalanceImage {
        BalanceImage { available, seq }
    }

    #[test]
    fn low_balance_alerts_on_the_drop_below_and_re_arms_above() {
        let on = AlertSettings::parse(None, Some("100")).unwrap();
        let at = utc(AT);
        let drop = low_balance_alert("bob", Some(balance(150, 3)), balance(99, 4), at, &on);
        let drop = drop.expect("dropped below 100");
        assert_eq!(drop.balance, Some(99));
        assert_eq!(drop.low_balance_credits, Some(100));
        // Still below: a level, no alert.
        assert!(low_balance_alert("bob", Some(balance(99, 4)), balance(50, 5), at, &on).is_none());
        // Up to exactly the threshold re-arms; the next drop is a new alert.
        assert!(low_balance_alert("bob", Some(balance(50, 5)), balance(100, 6), at, &on).is_none());
        let again = low_balance_alert("bob", Some(balance(100, 6)), balance(10, 7), at, &on)
            .expect("dropped again");
        assert_ne!(again.alert_id, drop.alert_id);
        // Redelivery of the same write: the same id.
        let replay = low_balance_alert("bob", Some(balance(150, 3)), balance(99, 4), at, &on);
        assert_eq!(replay.unwrap().alert_id, drop.alert_id);
        // Off unless configured; a new account starts at zero.
        let off = AlertSettings::default();
        assert!(
            low_balance_alert("bob", Some(balance(150, 3)), balance(99, 4), at, &off).is_none()
        );
        assert!(low_balance_alert("bob", None, balance(5, 1), at, &on).is_none());
        let zero = AlertSettings::parse(None, Some("0")).unwrap();
        assert!(low_balance_alert("bob", None, balance(-5, 1), at, &zero).is_some());
    }

    #[test]
    fn settings_parse_and_refuse() {
        let s = AlertSettings::parse(Some("100, 80 50 80"), Some(" 25 ")).unwrap();
        assert_eq!(s.thresholds, [50, 80, 100]);
        assert_eq!(s.low_balance_credits, Some(25));
        assert_eq!(
            AlertSettings::parse(None, Some("")).unwrap(),
            AlertSettings::default()
        );
        assert!(AlertSettings::parse(Some("0"), None).is_err());
        assert!(AlertSettings::parse(Some("50%"), None).is_err());
        assert!(AlertSettings::parse(None, Some("1.5")).is_err());
    }

    #[test]
    fn signatures_verify_with_a_replay_tolerance() {
        let body = r#"{"alert_id":"x"}"#;
        let header = webhook_signature("whsec", 1_700_000_000, body);
        assert!(header.starts_with("t=1700000000,v1="));
        assert!(verify_webhook_signature(
            &header,
            "whsec",
            body,
            1_700_000_100,
            300
        ));
        assert!(!verify_webhook_signature(
            &header,
            "other",
            body,
            1_700_000_100,
            300
        ));
        assert!(!verify_webhook_signature(
            &header,
            "whsec",
            "{}",
            1_700_000_100,
            300
        ));
        assert!(!verify_webhook_signature(
            &header,
            "whsec",
            body,
            1_700_000_301,
            300
        ));
        assert!(!verify_webhook_signature(
            "v1=abc",
            "whsec",
            body,
            1_700_000_000,
            300
        ));
    }
}
