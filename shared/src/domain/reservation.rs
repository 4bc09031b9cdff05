//! Reservations: two-phase spending (reserve → settle / void / expire), the
//! TigerBeetle pending-transfer model applied to the quota windows and credits.
//!
//! Pure: no AWS types. The store turns the plans below into conditional
//! updates; the conditions decide, the plans are only the best guess.
//!
//! Each window of a quota item keeps, beside `{w}_limit` / `{w}_usage` /
//! `{w}_start`, the estimates held by pending reservations (`{w}_reserved`)
//! and the headroom `{w}_headroom` = (limit, or 0 when unlimited) − usage −
//! reserved, maintained by every write of usage, holds or limits. DynamoDB
//! conditions compare but cannot add; the headroom is what makes
//! `usage + reserved + estimate ≤ limit` one comparison: `headroom ≥ estimate`.
//! (Unlimited windows count from 0, so their headroom is −(usage + reserved)
//! and a limit set later only shifts it by the new limit.)
//!
//! A hold belongs to the window it was taken in (the starts are in the
//! record): when that window rolls over, the new window starts with nothing
//! reserved and a later settle or release frees nothing from it.

use super::quota::{DenyReason, QuotaCheck, QuotaRecord};
use super::usage::{StoredStarts, UsagePlan, WindowWrite};
use super::{validate_id, Platform, Platforms, Usd, UserId, WindowKind};
use crate::error::Error;
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt;

pub const DEFAULT_TTL_SECONDS: i64 = 300;
pub const MIN_TTL_SECONDS: i64 = 10;
pub const MAX_TTL_SECONDS: i64 = 3600;
/// Pending reservations are indexed on gsi1 under this many partitions
/// (`RESERVATIONS_PENDING#{n}`), so a busy gateway's holds spread their index
/// writes; the expiry function queries each.
pub const PENDING_SHARDS: u32 = 8;
/// How long a reservation record is kept after it was created (TTL): longer
/// than SQS keeps the usage event that may settle it (14 days).
pub const RECORD_RETENTION: Duration = Duration::days(16);
/// The last millisecond of 9999-12-31 UTC: the latest instant an id may carry.
const MAX_ID_MILLIS: i64 = 253_402_300_799_999;
/// Longest `request_id` accepted (bytes).
pub const MAX_REQUEST_ID_LEN: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Settled,
    Voided,
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Settled => "settled",
            Status::Voided => "voided",
            Status::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Status::Pending,
            Status::Settled,
            Status::Voided,
            Status::Expired,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// `?status=` of a user's reservation list. Only pending reservations are
/// listed: they are the ones indexed (gsi1); a finished one leaves the index
/// and is read by its id.
pub fn listed_status(text: &str) -> Result<Status, Error> {
    match Status::parse(text) {
        Some(Status::Pending) => Ok(Status::Pending),
        Some(other) => Err(Error::InvalidRequest(format!(
            "status {other} is not listed: only pending reservations are (read a finished one by its id)"
        ))),
        None => Err(Error::InvalidRequest(format!(
            "status {text:?} is not one of pending, settled, voided, expired"
        ))),
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reservation id: `rsv-{created_ms}-{estimate atoms}-{credits}-{nonce}`.
///
/// The id carries what a settling usage event's write needs to release the
/// hold (when it was taken and how much), so settling adds no read to the
/// event's write. It is only a hint: the write is conditioned on the stored
/// record having exactly these values, so a forged or mangled id can never
/// release more than was held (the failed condition returns the record and
/// the write is re-planned from it).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ReservationId(String);

/// What an id says about its reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdHint {
    pub created_at: DateTime<Utc>,
    pub estimate: Usd,
    pub credits: i64,
}

impl ReservationId {
    pub fn parse(text: &str) -> Result<Self, Error> {
        validate_id("reservation_id", text)?;
        Ok(Self(text.to_string()))
    }

    /// A new id; `nonce` makes it unique (random, or derived from an
    /// Idempotency-Key).
    pub fn new(created_at: DateTime<Utc>, estimate: Usd, credits: i64, nonce: &str) -> Self {
        Self(format!(
            "rsv-{}-{}-{}-{}",
            created_at.timestamp_millis(),
            estimate.atoms(),
            credits,
            nonce
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The values the id was minted with, if it is one of ours.
    pub fn hint(&self) -> Option<IdHint> {
        let mut parts = self.0.strip_prefix("rsv-")?.splitn(4, '-');
        let ms: i64 = parts.next()?.parse().ok()?;
        let atoms: i128 = parts.next()?.parse().ok()?;
        let credits: i64 = parts.next()?.parse().ok()?;
        parts.next().filter(|n| !n.is_empty())?;
        // An id is client input (a usage event names one): an instant outside
        // RFC 3339's years (0000-9999) is no id of ours, and one near the ends
        // of chrono's range would overflow the window arithmetic.
        if atoms < 0 || credits < 0 || !(0..=MAX_ID_MILLIS).contains(&ms) {
            return None;
        }
        Some(IdHint {
            created_at: DateTime::from_timestamp_millis(ms)?,
            estimate: Usd::from_atoms(atoms),
            credits,
        })
    }

    /// The gsi1 partition of the pending index this reservation is listed in.
    pub fn shard(&self) -> u32 {
        let digest = Sha256::digest(self.0.as_bytes());
        u32::from(digest[0]) % PENDING_SHARDS
    }
}

impl fmt::Display for ReservationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a reservation holds: the estimate in each window (taken in the window
/// starting at `starts[w]`, order of [`WindowKind::ALL`]) and the credits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hold {
    pub estimate: Usd,
    pub credits: i64,
    pub starts: [i64; 3],
}

impl Hold {
    /// A hold taken at `at` in zone `tz`: the windows current then.
    pub fn at(at: DateTime<Utc>, tz: Tz, estimate: Usd, credits: i64) -> Self {
        Self {
            estimate,
            credits,
            starts: WindowKind::ALL.map(|k| k.bounds_at(at, tz).start.timestamp()),
        }
    }

    /// The hold an id describes (the record's values are checked by the write).
    pub fn from_hint(hint: &IdHint, tz: Tz) -> Self {
        Self::at(hint.created_at, tz, hint.estimate, hint.credits)
    }
}

/// A validated `POST /v1/quota/reservations` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReserveRequest {
    pub user_id: UserId,
    pub platform: Platform,
    pub estimate: Usd,
    pub credits: i64,
    pub ttl_seconds: i64,
    pub request_id: Option<String>,
}

/// The wire shape (unknown fields ignored, as for the check).
#[derive(Deserialize)]
pub struct ReserveWire {
    user_id: String,
    platform: String,
    estimate_usd: Box<RawValue>,
    #[serde(default)]
    credits: Option<Value>,
    #[serde(default)]
    ttl_seconds: Option<Value>,
    #[serde(default)]
    request_id: Option<String>,
}

impl ReserveRequest {
    pub fn from_wire(wire: ReserveWire, platforms: &Platforms) -> Result<Self, Error> {
        let user_id = UserId::parse(&wire.user_id)?;
        let platform = platforms.parse(&wire.platform)?;
        let estimate = Usd::from_json(&wire.estimate_usd)?;
        let credits = match wire.credits {
            None | Some(Value::Null) => 0,
            // Any spelling of a whole number, as JSON Schema's `integer` says.
            Some(Value::Number(n)) => match crate::json::integer(&n.to_string()).ok() {
                Some(c) if c >= 0 => c,
                _ => {
                    return Err(Error::InvalidAmount(format!(
                        "credits must be an integer between 0 and {}, got {n}",
                        i64::MAX
                    )))
                }
            },
            Some(other) => {
                return Err(Error::InvalidAmount(format!(
                    "credits must be an integer, got {other}"
                )))
            }
        };
        let ttl_seconds = match wire.ttl_seconds {
            None | Some(Value::Null) => DEFAULT_TTL_SECONDS,
            Some(Value::Number(n)) => match crate::json::integer(&n.to_string()).ok() {
                Some(t) if (MIN_TTL_SECONDS..=MAX_TTL_SECONDS).contains(&t) => t,
                _ => return Err(ttl_error(&n.to_string())),
            },
            Some(other) => return Err(ttl_error(&other.to_string())),
        };
        let request_id = match wire.request_id {
            None => None,
            Some(v)
                if v.is_empty()
                    || v.len() > MAX_REQUEST_ID_LEN
                    || v.chars().any(char::is_control) =>
            {
                return Err(Error::InvalidRequest(format!(
                    "request_id must be 1-{MAX_REQUEST_ID_LEN} bytes without control characters"
                )))
            }
            Some(v) => Some(v),
        };
        Ok(Self {
            user_id,
            platform,
            estimate,
            credits,
            ttl_seconds,
            request_id,
        })
    }
}

fn ttl_error(got: &str) -> Error {
    Error::InvalidRequest(format!(
        "ttl_seconds must be an integer from {MIN_TTL_SECONDS} to {MAX_TTL_SECONDS}, got {got}"
    ))
}

/// A reservation record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    pub id: ReservationId,
    pub user_id: UserId,
    pub platform: Platform,
    pub hold: Hold,
    pub status: Status,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub settled_cost: Option<Usd>,
    pub overage: Option<Usd>,
    pub event_id: Option<String>,
    pub request_id: Option<String>,
}

impl Reservation {
    /// A new pending reservation for `req`, taken at `now`.
    pub fn new(req: &ReserveRequest, now: DateTime<Utc>, tz: Tz, nonce: &str) -> Self {
        // Millisecond precision: the id carries `created_at` in milliseconds.
        let now = DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now);
        Self {
            id: ReservationId::new(now, req.estimate, req.credits, nonce),
            user_id: req.user_id.clone(),
            platform: req.platform.clone(),
            hold: Hold::at(now, tz, req.estimate, req.credits),
            status: Status::Pending,
            created_at: now,
            expires_at: now + Duration::seconds(req.ttl_seconds),
            settled_cost: None,
            overage: None,
            event_id: None,
            request_id: req.request_id.clone(),
        }
    }

    /// Whether a pending reservation has run past its expiry at `now`.
    pub fn expired_at(&self, now: DateTime<Utc>) -> bool {
        now >= self.expires_at
    }

    /// Where a reservation sorts in a list of pending ones: soonest expiry
    /// first, then by id (the order of the pending index).
    pub fn expiry_order_key(&self) -> String {
        format!("{:013}#{}", self.expires_at.timestamp_millis(), self.id)
    }

    pub fn view(&self) -> ReservationView {
        ReservationView {
            reservation_id: self.id.clone(),
            user_id: self.user_id.clone(),
            platform: self.platform.to_string(),
            estimate_usd: self.hold.estimate,
            credits: self.hold.credits,
            status: self.status,
            created_at: self.created_at,
            expires_at: self.expires_at,
            settled_cost_usd: self.settled_cost,
            overage_usd: self.overage,
            event_id: self.event_id.clone(),
            request_id: self.request_id.clone(),
        }
    }
}

/// What an actual cost above the estimate is recorded as.
pub fn overage(estimate: Usd, cost: Usd) -> Option<Usd> {
    (cost > estimate).then(|| cost - estimate)
}

/// `Reservation` of the contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReservationView {
    pub reservation_id: ReservationId,
    pub user_id: UserId,
    pub platform: String,
    pub estimate_usd: Usd,
    pub credits: i64,
    pub status: Status,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub settled_cost_usd: Option<Usd>,
    pub overage_usd: Option<Usd>,
    pub event_id: Option<String>,
    pub request_id: Option<String>,
}

/// One window of a quota item as stored (absent attributes: zero / `None`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoredWindow {
    pub limit: Option<Usd>,
    pub usage: Usd,
    pub reserved: Usd,
    pub headroom: Option<Usd>,
    pub start: Option<i64>,
}

impl StoredWindow {
    /// The headroom the stored values imply (limit counted as 0 when unlimited).
    pub fn exact_headroom(&self) -> Usd {
        self.limit.unwrap_or(Usd::ZERO) - self.usage - self.reserved
    }
}

/// How the admission writes one window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldWrite {
    /// The steady state: condition `start = :start AND (no limit OR
    /// (headroom ≥ estimate AND headroom > 0))`; `reserved += estimate`,
    /// `headroom -= estimate`. No read needed.
    Add { start: i64 },
    /// Planned from the stored item: conditioned on the limit, and either
    /// (`rollover`) on the stored start being older or absent, the window
    /// restarting with no usage and only this hold, or on start, usage and
    /// reserved being as read; writes the exact headroom.
    Exact {
        start: i64,
        rollover: bool,
        stored: StoredWindow,
    },
}

impl HoldWrite {
    pub fn start(&self) -> i64 {
        match self {
            HoldWrite::Add { start } | HoldWrite::Exact { start, .. } => *start,
        }
    }
}

/// Why an admission refuses, before the caller renders the Check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Disabled,
    Exhausted,
    InsufficientCredits,
}

/// Plans the quota part of an admission of `estimate` in the windows starting
/// at `current`. `stored = None` (nothing read) assumes the steady state.
/// `Some(None)`: there is no quota item (unlimited: admitted, the item is
/// created).
pub fn plan_admission(
    stored: Option<Option<&[StoredWindow; 3]>>,
    current: [i64; 3],
    estimate: Usd,
) -> Result<[HoldWrite; 3], Refusal> {
    let Some(stored) = stored else {
        return Ok(current.map(|start| HoldWrite::Add { start }));
    };
    let absent = [StoredWindow::default(); 3];
    let stored = stored.unwrap_or(&absent);
    let mut out = [HoldWrite::Add { start: 0 }; 3];
    let (mut disabled, mut exhausted) = (false, false);
    for w in 0..3 {
        let s = stored[w];
        if s.limit == Some(Usd::ZERO) {
            disabled = true;
        }
        out[w] = match s.start {
            // The stored window is current (or ahead of this clock: hold there).
            Some(start) if start >= current[w] => {
                let room = s.exact_headroom();
                if s.limit.is_some() && (room < estimate || room <= Usd::ZERO) {
                    exhausted = true;
                }
                if s.limit.is_none() || s.headroom == Some(room) {
                    HoldWrite::Add { start }
                } else {
                    HoldWrite::Exact {
                        start,
                        rollover: false,
                        stored: s,
                    }
                }
            }
            _ => {
                if let Some(limit) = s.limit {
                    if limit < estimate || limit <= Usd::ZERO {
                        exhausted = true;
                    }
                }
                HoldWrite::Exact {
                    start: current[w],
                    rollover: true,
                    stored: s,
                }
            }
        };
    }
    if disabled {
        Err(Refusal::Disabled)
    } else if exhausted {
        Err(Refusal::Exhausted)
    } else {
        Ok(out)
    }
}

/// The credit account as stored (for holds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoredAccount {
    pub available: i64,
    pub held: i64,
    /// `available - held`, maintained by every write of either.
    pub spendable: Option<i64>,
}

/// How the admission holds credits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreditHold {
    /// `held += c`, `spendable -= c`, condition `spendable ≥ c`.
    Add,
    /// Conditioned on `available` and `held` as read (an account written
    /// before `spendable` existed): writes both exactly.
    Exact { available: i64, held: i64 },
}

/// Plans the credit hold. `stored = None`: nothing read (steady state);
/// `Some(None)`: there is no account (balance 0).
pub fn plan_credit_hold(
    stored: Option<Option<&StoredAccount>>,
    credits: i64,
) -> Result<CreditHold, Refusal> {
    match stored {
        None => Ok(CreditHold::Add),
        Some(None) => Err(Refusal::InsufficientCredits),
        Some(Some(a)) => {
            let free = a.available.saturating_sub(a.held);
            if free < credits {
                Err(Refusal::InsufficientCredits)
            } else if a.spendable == Some(free) {
                Ok(CreditHold::Add)
            } else {
                Ok(CreditHold::Exact {
                    available: a.available,
                    held: a.held,
                })
            }
        }
    }
}

/// The Check answered when an admission refuses: the record as the failed
/// write found it, denied for the estimate. Exhausted: the window whose room
/// (limit − usage − reserved) is below the estimate and that resets last.
pub fn refusal_check(
    record: &QuotaRecord,
    refusal: Refusal,
    estimate: Usd,
    now: DateTime<Utc>,
    tz: Tz,
) -> QuotaCheck {
    let mut check = QuotaCheck::evaluate(record, now, tz);
    if refusal == Refusal::InsufficientCredits {
        check.allowed = false;
        check.reason = Some(DenyReason::InsufficientCredits);
        check.retry_after_seconds = None;
        return check;
    }
    if !check.allowed {
        return check;
    }
    let windows = [
        (WindowKind::Daily, &check.windows.daily),
        (WindowKind::Weekly, &check.windows.weekly),
        (WindowKind::Monthly, &check.windows.monthly),
    ];
    let latest = windows
        .iter()
        .filter(|(_, w)| w.remaining_usd.is_some_and(|r| r < estimate || r.is_zero()))
        .max_by_key(|(kind, w)| (w.resets_at, *kind))
        .map(|(kind, w)| (*kind, w.resets_at));
    check.allowed = false;
    if let Some((kind, resets_at)) = latest {
        check.reason = Some(DenyReason::exhausted(kind));
        let millis = (resets_at - now).num_milliseconds().max(0);
        check.retry_after_seconds = Some(((millis + 999) / 1000).max(1));
    }
    check
}

/// Per window: what releasing a hold does to the quota item, given the
/// stored window starts (`None`: not read, assume the hold's windows are
/// current). `Some(start)`: release, conditioned on the stored start being
/// `start`; `None`: the window rolled over since, nothing to release there
/// (starts only move forward, so no condition is needed).
pub fn plan_release(hold: &Hold, known: Option<&StoredStarts>) -> [Option<i64>; 3] {
    let mut out = [None; 3];
    for (w, slot) in out.iter_mut().enumerate() {
        *slot = match known {
            None => Some(hold.starts[w]),
            Some(k) if k[w] == Some(hold.starts[w]) => Some(hold.starts[w]),
            Some(_) => None,
        };
    }
    out
}

/// Per window: whether a settling usage write (the event's `plan`) releases
/// the hold. Releasing happens only where the write targets the hold's own
/// window: an `Add` in that window, or a `Keep` (the event's window is past)
/// while the stored window is the hold's. A `Restart` opens a window newer
/// than the hold's, which holds nothing of it.
pub fn settle_releases(plan: &UsagePlan, hold: &Hold, known: Option<&StoredStarts>) -> [bool; 3] {
    let mut out = [false; 3];
    for (w, slot) in out.iter_mut().enumerate() {
        *slot = match plan.windows[w] {
            WindowWrite::Add { start, .. } => start == hold.starts[w],
            WindowWrite::Restart { .. } => false,
            WindowWrite::Keep { after } => {
                hold.starts[w] > after && known.is_some_and(|k| k[w] == Some(hold.starts[w]))
            }
        };
    }
    out
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

    #[test]
    fn ids_carry_their_hold() {
        let at = utc("2026-11-21T10:00:00.123Z");
        let id = ReservationId::new(at, usd("0.1"), 7, "abc");
        assert!(ReservationId::parse(id.as_str()).is_ok());
        let hint = id.hint().unwrap();
        assert_eq!(hint.created_at, at);
        assert_eq!(hint.estimate, usd("0.1"));
        assert_eq!(hint.credits, 7);
        assert!(id.shard() < PENDING_SHARDS);
        // The last two: instants no id of ours carries, whose windows would
        // overflow chrono (a usage event naming one crashed ingest).
        for bad in [
            "x",
            "rsv-1-2",
            "rsv-a-1-1-n",
            "rsv-1--1-1-n",
            "rsv-1-1-1-",
            "rsv-253402300800000-1-1-n",
            "rsv-8210266876799999-1-1-n",
        ] {
            assert!(ReservationId(bad.into()).hint().is_none(), "{bad}");
        }
    }

    fn window(limit: Option<&str>, usage: &str, reserved: &str, start: i64) -> StoredWindow {
        let mut w = StoredWindow {
            limit: limit.map(usd),
            usage: usd(usage),
            reserved: usd(reserved),
            headroom: None,
            start: Some(start),
        };
        w.headroom = Some(w.exact_headroom());
        w
    }

    #[test]
    fn admission_adds_in_the_steady_state_and_refuses_what_does_not_fit() {
        let cur = [100, 50, 10];
        let e = usd("0.1");
        assert_eq!(
            plan_admission(None, cur, e).unwrap(),
            cur.map(|start| HoldWrite::Add { start })
        );
        let fits = [
            window(Some("10"), "9.8", "0.1", 100),
            window(None, "9", "0", 50),
            window(Some("100"), "0", "0", 10),
        ];
        let plan = plan_admission(Some(Some(&fits)), cur, e).unwrap();
        assert!(plan.iter().all(|w| matches!(w, HoldWrite::Add { .. })));
        let full = [window(Some("10"), "9.8", "0.15", 100), fits[1], fits[2]];
        assert_eq!(
            plan_admission(Some(Some(&full)), cur, e),
            Err(Refusal::Exhausted)
        );
        let disabled = [fits[0], window(Some("0"), "0", "0", 50), fits[2]];
        assert_eq!(
            plan_admission(Some(Some(&disabled)), cur, e),
            Err(Refusal::Disabled)
        );
        // Exactly at the limit: admitted; a zero estimate on a full window: refused.
        let exact = [window(Some("10"), "9.8", "0.1", 100), fits[1], fits[2]];
        assert!(plan_admission(Some(Some(&exact)), cur, e).is_ok());
        let at_limit = [window(Some("10"), "10", "0", 100), fits[1], fits[2]];
        assert_eq!(
            plan_admission(Some(Some(&at_limit)), cur, Usd::ZERO),
            Err(Refusal::Exhausted)
        );
    }

    #[test]
    fn admission_after_a_rollover_or_without_an_item_is_exact() {
        let cur = [200, 50, 10];
        let e = usd("1");
        let old = [
            window(Some("10"), "10", "5", 100),
            window(None, "1", "0", 50),
            window(None, "1", "0", 10),
        ];
        let plan = plan_admission(Some(Some(&old)), cur, e).unwrap();
        assert!(matches!(
            plan[0],
            HoldWrite::Exact {
                start: 200,
                rollover: true,
                ..
            }
        ));
        assert_eq!(plan[1], HoldWrite::Add { start: 50 });
        let plan = plan_admission(Some(None), cur, e).unwrap();
        assert!(plan
            .iter()
            .all(|w| matches!(w, HoldWrite::Exact { rollover: true, .. })));
        // A limit below the estimate refuses even in a fresh window.
        let small = [window(Some("0.5"), "0", "0", 100), old[1], old[2]];
        assert_eq!(
            plan_admission(Some(Some(&small)), cur, e),
            Err(Refusal::Exhausted)
        );
        // A headroom that disagrees with the stored values is rewritten exactly.
        let mut stale = window(Some("10"), "1", "0", 200);
        stale.headroom = None;
        let plan = plan_admission(Some(Some(&[stale, old[1], old[2]])), cur, e).unwrap();
        assert!(matches!(
            plan[0],
            HoldWrite::Exact {
                rollover: false,
                ..
            }
        ));
    }

    #[test]
    fn credit_holds_never_exceed_the_free_balance() {
        assert_eq!(plan_credit_hold(None, 5), Ok(CreditHold::Add));
        assert_eq!(
            plan_credit_hold(Some(None), 1),
            Err(Refusal::InsufficientCredits)
        );
        let a = StoredAccount {
            available: 10,
            held: 6,
            spendable: Some(4),
        };
        assert_eq!(plan_credit_hold(Some(Some(&a)), 4), Ok(CreditHold::Add));
        assert_eq!(
            plan_credit_hold(Some(Some(&a)), 5),
            Err(Refusal::InsufficientCredits)
        );
        let legacy = StoredAccount {
            spendable: None,
            ..a
        };
        assert_eq!(
            plan_credit_hold(Some(Some(&legacy)), 4),
            Ok(CreditHold::Exact {
                available: 10,
                held: 6
            })
        );
    }

    #[test]
    fn releases_only_the_holds_own_windows() {
        let hold = Hold {
            estimate: usd("1"),
            credits: 0,
            starts: [100, 50, 10],
        };
        assert_eq!(plan_release(&hold, None), [Some(100), Some(50), Some(10)]);
        let rolled = [Some(200), Some(50), Some(10)];
        assert_eq!(
            plan_release(&hold, Some(&rolled)),
            [None, Some(50), Some(10)]
        );
        let amount = usd("2");
        let plan = UsagePlan {
            windows: [
                WindowWrite::Restart { start: 200, amount },
                WindowWrite::Add { start: 50, amount },
                WindowWrite::Keep { after: 5 },
            ],
        };
        let known = [Some(100), Some(50), Some(10)];
        assert_eq!(
            settle_releases(&plan, &hold, Some(&known)),
            [false, true, true]
        );
        assert_eq!(settle_releases(&plan, &hold, None), [false, true, false]);
    }

    #[test]
    fn parses_requests() {
        let platforms = Platforms::defaults();
        let parse = |body: &str| {
            crate::json::from_str::<ReserveWire>(body)
                .and_then(|w| ReserveRequest::from_wire(w, &platforms))
        };
        let ok = parse(
            r#"{"user_id":"u","platform":"openai","estimate_usd":0.1,"credits":3,"ttl_seconds":10,"request_id":"r"}"#,
        )
        .unwrap();
        assert_eq!(
            (ok.estimate, ok.credits, ok.ttl_seconds),
            (usd("0.1"), 3, 10)
        );
        let d = parse(r#"{"user_id":"u","platform":"openai","estimate_usd":"1"}"#).unwrap();
        assert_eq!((d.credits, d.ttl_seconds), (0, DEFAULT_TTL_SECONDS));
        for (body, code) in [
            (
                r#"{"user_id":"u","platform":"openai","estimate_usd":"-1"}"#,
                "invalid_amount",
            ),
            (
                r#"{"user_id":"u","platform":"x","estimate_usd":"1"}"#,
                "unknown_platform",
            ),
            (
                r#"{"user_id":"u u","platform":"openai","estimate_usd":"1"}"#,
                "invalid_id",
            ),
            (
                r#"{"user_id":"u","platform":"openai","estimate_usd":"1","credits":-1}"#,
                "invalid_amount",
            ),
            (
                r#"{"user_id":"u","platform":"openai","estimate_usd":"1","ttl_seconds":9}"#,
                "invalid_request",
            ),
            (
                r#"{"user_id":"u","platform":"openai","estimate_usd":"1","ttl_seconds":3601}"#,
                "invalid_request",
            ),
        ] {
            assert_eq!(parse(body).unwrap_err().code(), code, "{body}");
        }
    }
}
