//! Subscriptions and the calendar arithmetic of their extension; the grant a code carries.

use super::*;

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
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SubscriptionGrant {
    pub plan_id: PlanId,
    pub unit: Unit,
    pub quantity: u32,
}

/// A grant as a request sends it, the plan id unparsed (`TryFrom` reads it:
/// 400 `invalid_id`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionWire {
    pub plan_id: String,
    pub unit: Unit,
    #[serde(deserialize_with = "crate::json::whole")]
    pub quantity: u32,
}

impl TryFrom<SubscriptionWire> for SubscriptionGrant {
    type Error = Error;
    fn try_from(wire: SubscriptionWire) -> Result<Self, Error> {
        Ok(Self {
            plan_id: PlanId::parse(&wire.plan_id)?,
            unit: wire.unit,
            quantity: wire.quantity,
        })
    }
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
