//! Redemption codes: generation and normalisation, the grant a code carries,
//! code status, the calendar arithmetic of subscription extension and the
//! failed-attempt window. Pure: no store, no AWS types.
//!
//! A code reads `PREFIX-XXXX-XXXX-XXXX-XXXX`: an optional admin prefix and 16
//! symbols of Crockford base32 (80 bits from the OS CSPRNG). It is matched by
//! its *key*: upper case, separators removed, and the look-alikes `I L` → `1`,
//! `O` → `0` folded, so `abcd-efgh...` and `ABCDEFGH...` find the same code.

use super::ids::id_newtype;
use super::{validate_id, UserId};
use crate::error::Error;
use chrono::{DateTime, Months, SecondsFormat, TimeDelta, Utc};
use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::fmt;

/// Crockford base32: digits and letters without `I L O U`, so a code read aloud
/// or typed from paper cannot be misread.
pub const CODE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Random symbols per code: 16 × 5 bits = 80 bits of entropy.
pub const RANDOM_SYMBOLS: usize = 16;
/// Symbols per group in the printed form.
const GROUP: usize = 4;
pub const MAX_PREFIX_LEN: usize = 16;
pub const MAX_BATCH_SIZE: i64 = 1000;
/// Per code; bounded so `max_uses × credits` stays far inside i64.
pub const MAX_CREDITS: i64 = 1_000_000_000_000;
pub const MAX_USES: i64 = 1_000_000_000;
/// Per code; bounded so extended expiries stay inside the calendar's range.
pub const MAX_QUANTITY: u32 = 1000;
pub const MAX_BATCH_NAME_CHARS: usize = 200;
/// Failed redemptions a user may make in [`FAILURE_WINDOW_MINUTES`]; the next
/// attempt is refused with 429 before it touches any code.
pub const MAX_FAILED_ATTEMPTS: i64 = 20;
pub const FAILURE_WINDOW_MINUTES: i64 = 60;

/// RFC 3339 as every response and stored timestamp of this module writes it.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

// ---------------------------------------------------------------------------
// Codes
// ---------------------------------------------------------------------------

/// The normalised form a code is stored and matched under.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CodeKey(String);

impl CodeKey {
    /// Any input a user or admin typed. Outside the contract's id alphabet → 400
    /// `invalid_id`; anything inside it is a lookup (which may find nothing).
    pub fn parse(input: &str) -> Result<Self, Error> {
        validate_id("code", input)?;
        Ok(Self(normalise(input)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A key read back from the store (already normalised).
    pub fn from_stored(key: &str) -> Self {
        Self(key.to_string())
    }
}

impl fmt::Display for CodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn normalise(input: &str) -> String {
    input
        .chars()
        .filter(|c| *c != '-')
        .map(|c| match c.to_ascii_uppercase() {
            'I' | 'L' => '1',
            'O' => '0',
            other => other,
        })
        .collect()
}

/// A freshly generated code: what the admin hands out and what it is stored under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratedCode {
    pub display: String,
    pub key: CodeKey,
}

/// Draws one code from `rng` (the caller passes the OS CSPRNG). 256 is a
/// multiple of 32, so masking a byte keeps every symbol equally likely.
pub fn generate_code(prefix: Option<&Prefix>, rng: &mut impl RngCore) -> GeneratedCode {
    let mut bytes = [0u8; RANDOM_SYMBOLS];
    rng.fill_bytes(&mut bytes);
    let mut display = String::with_capacity(MAX_PREFIX_LEN + 1 + RANDOM_SYMBOLS * 5 / 4);
    if let Some(p) = prefix {
        display.push_str(p.as_str());
        display.push('-');
    }
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 && i % GROUP == 0 {
            display.push('-');
        }
        display.push(CODE_ALPHABET[(b & 31) as usize] as char);
    }
    let key = CodeKey(normalise(&display));
    GeneratedCode { display, key }
}

/// An admin-chosen code prefix: 1–16 ASCII letters or digits, kept upper case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prefix(String);

impl Prefix {
    pub fn parse(text: &str) -> Result<Self, Error> {
        if text.is_empty()
            || text.len() > MAX_PREFIX_LEN
            || !text.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(Error::InvalidRequest(format!(
                "prefix must be 1-{MAX_PREFIX_LEN} letters or digits"
            )));
        }
        Ok(Self(text.to_ascii_uppercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

id_newtype!(
    /// The plan a subscription grant extends.
    PlanId,
    "plan_id"
);
id_newtype!(
    /// One batch of generated codes.
    BatchId,
    "batch_id"
);

impl BatchId {
    /// A fresh random id: 128 bits from the OS CSPRNG, lower-case base32.
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(base32_lower(&bytes))
    }

    /// The id of the batch `actor` creates with Idempotency-Key `key`: a retry
    /// with the same key finds the batch the first attempt (partly) wrote.
    pub fn for_idempotency_key(actor: &str, key: &str) -> Self {
        use sha2::{Digest, Sha256};
        let digest = Sha256::new()
            .chain_update(b"spendguard redemption batch\n")
            .chain_update(actor.as_bytes())
            .chain_update(b"\n")
            .chain_update(key.as_bytes())
            .finalize();
        Self(base32_lower(&digest[..16]))
    }
}

/// Crockford base32 of `bytes`, lower case (26 symbols for 16 bytes).
fn base32_lower(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in bytes {
        acc = (acc << 8) | u32::from(*b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(CODE_ALPHABET[((acc >> bits) & 31) as usize].to_ascii_lowercase() as char);
        }
    }
    if bits > 0 {
        out.push(CODE_ALPHABET[((acc << (5 - bits)) & 31) as usize].to_ascii_lowercase() as char);
    }
    out
}

// ---------------------------------------------------------------------------
// Subscriptions and calendar arithmetic
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Day,
    Week,
    Month,
    Quarter,
    HalfYear,
    Year,
}

impl Unit {
    pub const ALL: [Unit; 6] = [
        Unit::Day,
        Unit::Week,
        Unit::Month,
        Unit::Quarter,
        Unit::HalfYear,
        Unit::Year,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Day => "day",
            Unit::Week => "week",
            Unit::Month => "month",
            Unit::Quarter => "quarter",
            Unit::HalfYear => "half_year",
            Unit::Year => "year",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Unit::ALL.into_iter().find(|u| u.as_str() == text)
    }

    /// Calendar months per unit; `None` for the fixed-length units.
    fn months(self) -> Option<u32> {
        match self {
            Unit::Day | Unit::Week => None,
            Unit::Month => Some(1),
            Unit::Quarter => Some(3),
            Unit::HalfYear => Some(6),
            Unit::Year => Some(12),
        }
    }
}

/// `from` plus `quantity` units, calendar-correct in UTC: months keep the day of
/// month and clamp it to the month's last day (Jan 31 + 1 month = Feb 28/29).
/// `None` beyond the calendar's range.
pub fn add_period(from: DateTime<Utc>, unit: Unit, quantity: u32) -> Option<DateTime<Utc>> {
    match unit.months() {
        Some(per_unit) => from.checked_add_months(Months::new(per_unit.checked_mul(quantity)?)),
        None => {
            let days = i64::from(quantity) * if unit == Unit::Week { 7 } else { 1 };
            from.checked_add_signed(TimeDelta::try_days(days)?)
        }
    }
}

/// The new expiry of a subscription extended at `now`: from the later of now
/// and its current expiry (an expired or absent subscription starts now).
pub fn extend_subscription(
    current_expiry: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    unit: Unit,
    quantity: u32,
) -> Result<DateTime<Utc>, Error> {
    let base = current_expiry.map_or(now, |e| e.max(now));
    add_period(base, unit, quantity).ok_or_else(|| {
        Error::InvalidRequest("the subscription would extend beyond the supported calendar".into())
    })
}

/// What a code grants as subscription time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionGrant {
    pub plan_id: PlanId,
    pub unit: Unit,
    #[serde(deserialize_with = "crate::json::whole")]
    pub quantity: u32,
}

/// Everything a code grants. At least one of credits and subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// 0 = no credits.
    pub credits: i64,
    pub subscription: Option<SubscriptionGrant>,
}

/// A user's subscription to one plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub plan_id: PlanId,
    pub expires_at: DateTime<Utc>,
    /// Optimistic-concurrency version of the stored item.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Subscription {
    pub fn view(&self, now: DateTime<Utc>) -> Value {
        serde_json::json!({
            "plan_id": self.plan_id,
            "expires_at": timestamp(self.expires_at),
            "active": self.expires_at > now,
            "created_at": timestamp(self.created_at),
            "updated_at": timestamp(self.updated_at),
        })
    }
}

// ---------------------------------------------------------------------------
// Batch creation requests
// ---------------------------------------------------------------------------

/// The body of `POST /v1/admin/redemption-codes`, before validation. Unknown
/// fields are refused: a misspelt `expires_at` must not make a code eternal.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCodesBody {
    #[serde(deserialize_with = "crate::json::whole")]
    pub count: i64,
    #[serde(default, deserialize_with = "crate::json::non_null")]
    pub prefix: Option<String>,
    #[serde(default, deserialize_with = "credits_field")]
    pub credits: Option<i64>,
    #[serde(default, deserialize_with = "crate::json::non_null")]
    pub subscription: Option<SubscriptionGrant>,
    #[serde(deserialize_with = "crate::json::whole")]
    pub max_uses: i64,
    /// Not nullable: a code without expiry omits the field (`null` must not
    /// pass for a date that failed to render).
    #[serde(default, deserialize_with = "crate::json::non_null")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "crate::json::non_null")]
    pub batch_name: Option<String>,
}

/// Credits are an integer, read from the number's text like adjust's; anything
/// else (`null`, `1.5`, `1e400`, a string) is 400 `invalid_amount`.
fn credits_field<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let raw = Box::<serde_json::value::RawValue>::deserialize(d)?;
    super::credits::json_credits("credits", &raw)
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("invalid_amount: {e}")))
}

/// A validated batch request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchSpec {
    pub count: usize,
    pub prefix: Option<Prefix>,
    pub grant: Grant,
    pub max_uses: i64,
    pub expires_at: Option<DateTime<Utc>>,
    pub batch_name: Option<String>,
}

impl CreateCodesBody {
    pub fn validate(self, now: DateTime<Utc>) -> Result<BatchSpec, Error> {
        if !(1..=MAX_BATCH_SIZE).contains(&self.count) {
            return Err(Error::InvalidRequest(format!(
                "count must be 1-{MAX_BATCH_SIZE}, got {}",
                self.count
            )));
        }
        if !(1..=MAX_USES).contains(&self.max_uses) {
            return Err(Error::InvalidRequest(format!(
                "max_uses must be 1-{MAX_USES}, got {}",
                self.max_uses
            )));
        }
        let credits = self.credits.unwrap_or(0);
        if !(0..=MAX_CREDITS).contains(&credits) {
            return Err(Error::InvalidAmount(format!(
                "credits must be an integer 0-{MAX_CREDITS}, got {credits}"
            )));
        }
        if let Some(sub) = &self.subscription {
            if !(1..=MAX_QUANTITY).contains(&sub.quantity) {
                return Err(Error::InvalidRequest(format!(
                    "subscription.quantity must be 1-{MAX_QUANTITY}, got {}",
                    sub.quantity
                )));
            }
        }
        if credits == 0 && self.subscription.is_none() {
            return Err(Error::InvalidRequest(
                "a code must grant credits (> 0), a subscription, or both".into(),
            ));
        }
        if let Some(at) = self.expires_at {
            if at <= now {
                return Err(Error::InvalidRequest(
                    "expires_at must be in the future".into(),
                ));
            }
        }
        let batch_name = match self.batch_name {
            None => None,
            Some(name) => {
                let chars = name.chars().count();
                if name.trim().is_empty() || chars > MAX_BATCH_NAME_CHARS {
                    return Err(Error::InvalidRequest(format!(
                        "batch_name must be 1-{MAX_BATCH_NAME_CHARS} characters, not only spaces"
                    )));
                }
                Some(name)
            }
        };
        Ok(BatchSpec {
            count: self.count as usize,
            prefix: self.prefix.as_deref().map(Prefix::parse).transpose()?,
            grant: Grant {
                credits,
                subscription: self.subscription,
            },
            max_uses: self.max_uses,
            expires_at: self.expires_at,
            batch_name,
        })
    }
}

impl BatchSpec {
    /// `details` of the `ADMIN_CREATE_REDEMPTION_CODES` audit entry. The codes
    /// themselves are secrets and stay out of the audit log.
    pub fn audit_details(&self, batch_id: &BatchId) -> Value {
        serde_json::json!({
            "batch_id": batch_id,
            "batch_name": self.batch_name,
            "count": self.count,
            "prefix": self.prefix.as_ref().map(Prefix::as_str),
            "credits": self.grant.credits,
            "subscription": self.grant.subscription,
            "max_uses": self.max_uses,
            "expires_at": self.expires_at.map(timestamp),
        })
    }
}

/// A batch as created: what `POST /v1/admin/redemption-codes` answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub batch_id: BatchId,
    pub spec: BatchSpec,
    /// Printed forms, in generation order.
    pub codes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

impl Batch {
    pub fn response(&self) -> Value {
        serde_json::json!({
            "batch_id": self.batch_id,
            "batch_name": self.spec.batch_name,
            "count": self.codes.len(),
            "codes": self.codes,
            "credits": self.spec.grant.credits,
            "subscription": self.spec.grant.subscription,
            "max_uses": self.spec.max_uses,
            "expires_at": self.spec.expires_at.map(timestamp),
            "created_at": timestamp(self.created_at),
        })
    }
}

// ---------------------------------------------------------------------------
// Codes as stored
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeStatus {
    Active,
    Disabled,
    Expired,
    Exhausted,
}

impl CodeStatus {
    pub fn parse(text: &str) -> Result<Self, Error> {
        match text {
            "active" => Ok(CodeStatus::Active),
            "disabled" => Ok(CodeStatus::Disabled),
            "expired" => Ok(CodeStatus::Expired),
            "exhausted" => Ok(CodeStatus::Exhausted),
            other => Err(Error::InvalidRequest(format!(
                "unknown status {other:?}; expected active, disabled, expired or exhausted"
            ))),
        }
    }
}

/// One redemption code with its counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedemptionCode {
    pub key: CodeKey,
    pub display: String,
    pub batch_id: BatchId,
    pub batch_name: Option<String>,
    pub grant: Grant,
    pub max_uses: i64,
    pub used_count: i64,
    pub enabled: bool,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl RedemptionCode {
    /// One status, by precedence: an admin's disable first, then expiry, then uses.
    pub fn status(&self, now: DateTime<Utc>) -> CodeStatus {
        if !self.enabled {
            CodeStatus::Disabled
        } else if self.expires_at.is_some_and(|at| at <= now) {
            CodeStatus::Expired
        } else if self.used_count >= self.max_uses {
            CodeStatus::Exhausted
        } else {
            CodeStatus::Active
        }
    }

    /// Why the code cannot be redeemed at `now`, as the contract's error.
    pub fn check_redeemable(&self, now: DateTime<Utc>) -> Result<(), Error> {
        match self.status(now) {
            CodeStatus::Active => Ok(()),
            CodeStatus::Disabled => Err(Error::CodeDisabled),
            CodeStatus::Expired => Err(Error::CodeExpired),
            CodeStatus::Exhausted => Err(Error::CodeExhausted),
        }
    }

    pub fn view(&self, now: DateTime<Utc>) -> Value {
        serde_json::json!({
            "code": self.display,
            "batch_id": self.batch_id,
            "batch_name": self.batch_name,
            "credits": self.grant.credits,
            "subscription": self.grant.subscription,
            "max_uses": self.max_uses,
            "used_count": self.used_count,
            "remaining_uses": (self.max_uses - self.used_count).max(0),
            "enabled": self.enabled,
            "expires_at": self.expires_at.map(timestamp),
            "status": self.status(now),
            "created_at": timestamp(self.created_at),
            "updated_at": timestamp(self.updated_at),
        })
    }
}

// ---------------------------------------------------------------------------
// Redemptions
// ---------------------------------------------------------------------------

/// The subscription part of a redemption.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionChange {
    pub plan_id: PlanId,
    pub unit: Unit,
    pub quantity: u32,
    /// The expiry before this redemption (`None`: the user had no subscription).
    pub previous_expires_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
}

/// One (code, user) redemption: stored once, and the body of the 201 answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redemption {
    pub code: String,
    pub code_key: CodeKey,
    pub batch_id: BatchId,
    pub user_id: UserId,
    pub credits_granted: i64,
    /// `available` credits right after the redemption.
    pub balance_after: i64,
    /// The ledger entry of the grant (`None` for a subscription-only code).
    pub transaction_id: Option<String>,
    pub subscription: Option<SubscriptionChange>,
    /// The user's first redemption of any code.
    pub is_new: bool,
    pub redeemed_at: DateTime<Utc>,
}

impl Redemption {
    pub fn view(&self) -> Value {
        let subscription = self.subscription.as_ref().map(|s| {
            serde_json::json!({
                "plan_id": s.plan_id,
                "unit": s.unit,
                "quantity": s.quantity,
                "previous_expires_at": s.previous_expires_at.map(timestamp),
                "expires_at": timestamp(s.expires_at),
            })
        });
        serde_json::json!({
            "code": self.code,
            "user_id": self.user_id,
            "batch_id": self.batch_id,
            "credits_granted": self.credits_granted,
            "balance_after": self.balance_after,
            "transaction_id": self.transaction_id,
            "subscription": subscription,
            "is_new": self.is_new,
            "redeemed_at": timestamp(self.redeemed_at),
        })
    }
}

// ---------------------------------------------------------------------------
// Failed attempts
// ---------------------------------------------------------------------------

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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn at(y: i32, m: u32, d: u32, h: u32, min: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, s).unwrap()
    }

    #[test]
    fn month_ends_clamp() {
        let jan31 = at(2026, 1, 31, 12, 0, 0);
        assert_eq!(
            add_period(jan31, Unit::Month, 1),
            Some(at(2026, 2, 28, 12, 0, 0))
        );
        assert_eq!(
            add_period(at(2028, 1, 31, 0, 0, 0), Unit::Month, 1),
            Some(at(2028, 2, 29, 0, 0, 0)),
            "leap year"
        );
        assert_eq!(
            add_period(jan31, Unit::Month, 2),
            Some(at(2026, 3, 31, 12, 0, 0)),
            "two months at once do not clamp through February"
        );
        assert_eq!(
            add_period(at(2026, 3, 31, 0, 0, 0), Unit::Month, 1),
            Some(at(2026, 4, 30, 0, 0, 0))
        );
        assert_eq!(
            add_period(at(2025, 11, 30, 0, 0, 0), Unit::Quarter, 1),
            Some(at(2026, 2, 28, 0, 0, 0))
        );
        assert_eq!(
            add_period(at(2026, 8, 31, 0, 0, 0), Unit::HalfYear, 1),
            Some(at(2027, 2, 28, 0, 0, 0))
        );
        assert_eq!(
            add_period(at(2028, 2, 29, 0, 0, 0), Unit::Year, 1),
            Some(at(2029, 2, 28, 0, 0, 0))
        );
        assert_eq!(
            add_period(at(2026, 1, 15, 0, 0, 0), Unit::Year, 3),
            Some(at(2029, 1, 15, 0, 0, 0))
        );
    }

    #[test]
    fn days_and_weeks_are_exact() {
        let t = at(2026, 2, 27, 23, 30, 0);
        assert_eq!(add_period(t, Unit::Day, 2), Some(at(2026, 3, 1, 23, 30, 0)));
        assert_eq!(
            add_period(t, Unit::Week, 1),
            Some(at(2026, 3, 6, 23, 30, 0))
        );
        assert_eq!(add_period(t, Unit::Day, 0), Some(t));
        assert!(add_period(t, Unit::Year, u32::MAX).is_none());
    }

    #[test]
    fn extension_starts_at_the_later_of_now_and_expiry() {
        let now = at(2026, 1, 10, 0, 0, 0);
        // Unexpired: from the expiry.
        let current = at(2026, 1, 31, 0, 0, 0);
        assert_eq!(
            extend_subscription(Some(current), now, Unit::Month, 1).unwrap(),
            at(2026, 2, 28, 0, 0, 0)
        );
        // Expired: from now.
        let old = at(2025, 12, 1, 0, 0, 0);
        assert_eq!(
            extend_subscription(Some(old), now, Unit::Week, 2).unwrap(),
            at(2026, 1, 24, 0, 0, 0)
        );
        // None: from now.
        assert_eq!(
            extend_subscription(None, now, Unit::Day, 1).unwrap(),
            at(2026, 1, 11, 0, 0, 0)
        );
    }

    #[test]
    fn generated_codes_are_well_formed_and_distinct() {
        let mut rng = rand::rngs::OsRng;
        let prefix = Prefix::parse("gold").unwrap();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2000 {
            let c = generate_code(Some(&prefix), &mut rng);
            assert!(c.display.starts_with("GOLD-"), "{}", c.display);
            let random: String = c.display[5..].chars().filter(|c| *c != '-').collect();
            assert_eq!(random.len(), RANDOM_SYMBOLS);
            assert!(random.bytes().all(|b| CODE_ALPHABET.contains(&b)));
            assert_eq!(c.display.matches('-').count(), 4);
            assert!(validate_id("code", &c.display).is_ok());
            assert_eq!(CodeKey::parse(&c.display).unwrap(), c.key);
            assert!(seen.insert(c.key));
        }
        let plain = generate_code(None, &mut rng);
        assert_eq!(plain.display.len(), RANDOM_SYMBOLS + 3);
    }

    #[test]
    fn symbols_are_uniform_enough() {
        // 32,000 symbols: each of 32 expected 1,000 times; a biased mapping (e.g.
        // `% 30`) would push some far outside this band.
        let mut counts = [0u32; 32];
        let mut rng = rand::rngs::OsRng;
        for _ in 0..2000 {
            let c = generate_code(None, &mut rng);
            for b in c.key.as_str().bytes() {
                let i = CODE_ALPHABET.iter().position(|a| *a == b).unwrap();
                counts[i] += 1;
            }
        }
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
    }

    #[test]
    fn matching_is_case_insensitive_and_ignores_separators() {
        let a = CodeKey::parse("GOLD-ABCD-EFGH-JKMN-PQRS").unwrap();
        assert_eq!(CodeKey::parse("gold-abcd-efgh-jkmn-pqrs").unwrap(), a);
        assert_eq!(CodeKey::parse("GOLDABCDEFGHJKMNPQRS").unwrap(), a);
        assert_eq!(a.as_str(), "G01DABCDEFGHJKMNPQRS");
        // Look-alikes fold onto the digits.
        assert_eq!(
            CodeKey::parse("0000-1111").unwrap(),
            CodeKey::parse("oOoO-iIlL").unwrap()
        );
        for bad in ["", "a b", "ABCD/EFGH", "ABCD#1", &"A".repeat(129)] {
            assert_eq!(
                CodeKey::parse(bad).unwrap_err().code(),
                "invalid_id",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn batch_ids() {
        let a = BatchId::for_idempotency_key("admin-1", "k1");
        assert_eq!(a, BatchId::for_idempotency_key("admin-1", "k1"));
        assert_ne!(a, BatchId::for_idempotency_key("admin-2", "k1"));
        assert_ne!(a, BatchId::for_idempotency_key("admin-1", "k2"));
        assert_eq!(a.as_str().len(), 26);
        assert!(BatchId::parse(a.as_str()).is_ok());
        assert_ne!(BatchId::random(), BatchId::random());
        assert_eq!(base32_lower(&[0xff, 0x00]), "zw00");
    }

    #[test]
    fn prefixes() {
        assert_eq!(Prefix::parse("vip2026").unwrap().as_str(), "VIP2026");
        for bad in ["", "a-b", "ü", "x y", &"A".repeat(17)] {
            assert_eq!(Prefix::parse(bad).unwrap_err().code(), "invalid_request");
        }
    }

    /// Through the one JSON reader, as the handler reads it.
    fn body(v: Value) -> Result<BatchSpec, Error> {
        let parsed: CreateCodesBody = crate::json::from_str(&v.to_string())?;
        parsed.validate(at(2026, 1, 1, 0, 0, 0))
    }

    #[test]
    fn validates_batch_requests() {
        let spec = body(json!({
            "count": 3, "prefix": "vip", "credits": 100, "max_uses": 2,
            "subscription": {"plan_id": "pro", "unit": "half_year", "quantity": 1},
            "expires_at": "2026-06-01T00:00:00+08:00", "batch_name": "launch"
        }))
        .unwrap();
        assert_eq!(spec.count, 3);
        assert_eq!(spec.grant.credits, 100);
        assert_eq!(
            spec.grant.subscription.as_ref().unwrap().unit,
            Unit::HalfYear
        );
        assert_eq!(spec.expires_at, Some(at(2026, 5, 31, 16, 0, 0)));
        assert!(body(json!({"count": 1000, "max_uses": 1, "credits": 1})).is_ok());
        let sub_only = body(json!({"count": 1, "max_uses": 1, "credits": 0,
            "subscription": {"plan_id": "p", "unit": "day", "quantity": 1}}));
        assert_eq!(sub_only.unwrap().grant.credits, 0);
    }

    #[test]
    fn refuses_bad_batch_requests() {
        let sub = json!({"plan_id": "pro", "unit": "month", "quantity": 1});
        let cases = [
            (
                json!({"count": 0, "max_uses": 1, "credits": 1}),
                "invalid_request",
            ),
            (
                json!({"count": 1001, "max_uses": 1, "credits": 1}),
                "invalid_request",
            ),
            (
                json!({"count": 1.5, "max_uses": 1, "credits": 1}),
                "invalid_request",
            ),
            (json!({"max_uses": 1, "credits": 1}), "invalid_request"),
            (
                json!({"count": 1, "max_uses": 0, "credits": 1}),
                "invalid_request",
            ),
            (json!({"count": 1, "credits": 1}), "invalid_request"),
            (json!({"count": 1, "max_uses": 1}), "invalid_request"),
            (
                json!({"count": 1, "max_uses": 1, "credits": 0}),
                "invalid_request",
            ),
            (
                json!({"count": 1, "max_uses": 1, "credits": -1}),
                "invalid_amount",
            ),
            (
                json!({"count": 1, "max_uses": 1, "credits": 2.5}),
                "invalid_amount",
            ),
            (
                json!({"count": 1, "max_uses": 1, "credits": "5"}),
                "invalid_amount",
            ),
            (
                json!({"count": 1, "max_uses": 1, "credits": 1e13}),
                "invalid_amount",
            ),
            (
                json!({"count": 1, "max_uses": 1, "credits": 1, "prefix": "a-b"}),
                "invalid_request",
            ),
            (
                json!({"count": 1, "max_uses": 1, "credits": 1, "prefix": ""}),
                "invalid_request",
            ),
            (
                json!({"count": 1, "max_uses": 1, "credits": 1, "expires_at": "2025-01-01T00:00:00Z"}),
                "invalid_request",
            ),
            (
                json!({"count": 1, "max_uses": 1, "credits": 1, "expires_at": "tomorrow"}),
                "invalid_request",
            ),
            (
                json!({"count": 1, "max_uses": 1, "credits": 1, "batch_name": " "}),
                "invalid_request",
            ),
            (
                json!({"count": 1, "max_uses": 1, "credits": 1, "expire_at": "2027-01-01T00:00:00Z"}),
                "invalid_request",
            ),
            (
                json!({"count": 1, "max_uses": 1, "subscription": {"plan_id": "p", "unit": "fortnight", "quantity": 1}}),
                "invalid_request",
            ),
            (
                json!({"count": 1, "max_uses": 1, "subscription": {"plan_id": "p", "unit": "month", "quantity": 0}}),
                "invalid_request",
            ),
            (
                json!({"count": 1, "max_uses": 1, "subscription": {"plan_id": "p", "unit": "month", "quantity": -1}}),
                "invalid_request",
            ),
            (
                json!({"count": 1, "max_uses": 1, "subscription": {"plan_id": "p", "unit": "month", "quantity": 1001}}),
                "invalid_request",
            ),
            (
                json!({"count": 1, "max_uses": 1, "subscription": {"plan_id": "a b", "unit": "month", "quantity": 1}}),
                "invalid_id",
            ),
            (
                json!({"count": 1, "max_uses": 1, "subscription": {"plan_id": "p", "unit": "month"}}),
                "invalid_request",
            ),
            (
                json!({"count": 1, "max_uses": 1, "subscription": sub, "extra": 1}),
                "invalid_request",
            ),
        ];
        for (v, code) in cases {
            let err = body(v.clone()).unwrap_err();
            assert_eq!(err.code(), code, "{v}: {err}");
        }
    }

    fn code(enabled: bool, used: i64, max: i64, expires: Option<DateTime<Utc>>) -> RedemptionCode {
        let t = at(2026, 1, 1, 0, 0, 0);
        RedemptionCode {
            key: CodeKey::from_stored("K"),
            display: "K".into(),
            batch_id: BatchId::parse("b").unwrap(),
            batch_name: None,
            grant: Grant {
                credits: 1,
                subscription: None,
            },
            max_uses: max,
            used_count: used,
            enabled,
            expires_at: expires,
            created_at: t,
            updated_at: t,
        }
    }

    #[test]
    fn status_precedence() {
        let now = at(2026, 2, 1, 0, 0, 0);
        let past = Some(at(2026, 1, 15, 0, 0, 0));
        let future = Some(at(2026, 3, 1, 0, 0, 0));
        assert_eq!(code(true, 0, 1, None).status(now), CodeStatus::Active);
        assert_eq!(code(true, 0, 1, future).status(now), CodeStatus::Active);
        assert_eq!(code(false, 1, 1, past).status(now), CodeStatus::Disabled);
        assert_eq!(code(true, 1, 1, past).status(now), CodeStatus::Expired);
        assert_eq!(code(true, 1, 1, future).status(now), CodeStatus::Exhausted);
        // Expiry is exclusive: a code expiring now is expired.
        assert_eq!(code(true, 0, 1, Some(now)).status(now), CodeStatus::Expired);
        assert_eq!(
            code(true, 2, 2, None)
                .check_redeemable(now)
                .unwrap_err()
                .code(),
            "code_exhausted"
        );
        assert_eq!(
            code(false, 0, 2, None)
                .check_redeemable(now)
                .unwrap_err()
                .code(),
            "code_disabled"
        );
        assert_eq!(
            code(true, 0, 2, past)
                .check_redeemable(now)
                .unwrap_err()
                .code(),
            "code_expired"
        );
        assert_eq!(
            CodeStatus::parse("exhausted").unwrap(),
            CodeStatus::Exhausted
        );
        assert_eq!(
            CodeStatus::parse("used").unwrap_err().code(),
            "invalid_request"
        );
    }

    #[test]
    fn failed_attempts_slide_over_an_hour() {
        let now = at(2026, 1, 1, 11, 0, 30);
        let m = failure_minute(now);
        assert!(check_failed_attempts(&[], now).is_ok());
        assert!(check_failed_attempts(&[(m, 19)], now).is_ok());
        // The 21st attempt after 20 failures is refused.
        let err = check_failed_attempts(&[(m, 20)], now).unwrap_err();
        assert!(matches!(
            err,
            Error::TooManyFailedAttempts { retry_after_seconds } if retry_after_seconds == 3600 - 30
        ));
        // Split across the hour boundary, still counted together.
        let err = check_failed_attempts(&[(m - 1, 10), (m, 10)], now).unwrap_err();
        assert!(matches!(
            err,
            Error::TooManyFailedAttempts { retry_after_seconds } if retry_after_seconds == 3600 - 90
        ));
        // 60 minutes later the oldest bucket has left the window.
        assert!(check_failed_attempts(&[(m - 60, 20)], now).is_ok());
        assert!(check_failed_attempts(&[(m - 59, 20)], now).is_err());
        // Retry-after counts to the bucket whose expiry brings the total under the limit.
        let err = check_failed_attempts(&[(m - 30, 5), (m - 10, 15), (m, 5)], now).unwrap_err();
        assert!(matches!(
            err,
            Error::TooManyFailedAttempts { retry_after_seconds } if retry_after_seconds == 50 * 60 - 30
        ));
    }

    #[test]
    fn redemption_view_has_the_contract_fields() {
        let r = Redemption {
            code: "ABCD".into(),
            code_key: CodeKey::from_stored("ABCD"),
            batch_id: BatchId::parse("b1").unwrap(),
            user_id: UserId::parse("alice").unwrap(),
            credits_granted: 5,
            balance_after: 7,
            transaction_id: Some("t".into()),
            subscription: Some(SubscriptionChange {
                plan_id: PlanId::parse("pro").unwrap(),
                unit: Unit::Month,
                quantity: 1,
                previous_expires_at: None,
                expires_at: at(2026, 2, 28, 0, 0, 0),
            }),
            is_new: true,
            redeemed_at: at(2026, 1, 31, 0, 0, 0),
        };
        let v = r.view();
        for field in [
            "code",
            "credits_granted",
            "balance_after",
            "subscription",
            "is_new",
            "redeemed_at",
        ] {
            assert!(v.get(field).is_some(), "{field}");
        }
        assert_eq!(v["subscription"]["expires_at"], "2026-02-28T00:00:00Z");
        assert_eq!(v["subscription"]["unit"], "month");
        assert_eq!(v["is_new"], true);
    }
}
