//! Credits: an account `{available, total, used}`, its append-only ledger and
//! the admin adjustment rules. Pure: the store decides nothing about balances.
//!
//! Every balance change goes through [`Account::apply`], which returns the next
//! account state and the ledger entry describing it, so the two are always
//! written together (see `DynamoStore::ledger_actions`).

use super::UserId;
use crate::error::Error;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use std::fmt;

/// Longest adjustment reason accepted (characters).
pub const MAX_REASON_CHARS: usize = 500;
/// Ledger category of admin adjustments (API and CLI).
pub const CATEGORY_ADMIN_ADJUST: &str = "admin_adjust";

/// A user's credit account. `seq` is the number of the last ledger entry; an
/// account that was never written reads as zeros with `seq` 0.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Account {
    pub user_id: UserId,
    pub available: i64,
    pub total: i64,
    pub used: i64,
    pub seq: u64,
    pub updated_at: Option<DateTime<Utc>>,
}

/// What a ledger entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryType {
    /// Adds to available and total (admin grant).
    Grant,
    /// Lowers available only (admin deduction).
    Deduct,
    /// Usage: lowers available, raises used; may go below zero.
    Consume,
    /// A grant through a redemption code.
    Redeem,
}

impl EntryType {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryType::Grant => "grant",
            EntryType::Deduct => "deduct",
            EntryType::Consume => "consume",
            EntryType::Redeem => "redeem",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "grant" => EntryType::Grant,
            "deduct" => EntryType::Deduct,
            "consume" => EntryType::Consume,
            "redeem" => EntryType::Redeem,
            _ => return None,
        })
    }
}

impl fmt::Display for EntryType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One immutable ledger entry. `amount` is the signed change to `available`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LedgerEntry {
    pub id: String,
    pub user_id: UserId,
    pub seq: u64,
    #[serde(rename = "type")]
    pub kind: EntryType,
    pub amount: i64,
    pub balance_before: i64,
    pub balance_after: i64,
    pub category: String,
    pub description: String,
    /// What caused the entry (event id, code, idempotency key), if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A requested balance change, before it is applied to an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub kind: EntryType,
    /// Magnitude, always > 0; the sign follows from `kind`. Unsigned, so a
    /// deduction of 2^63 (to `i64::MIN` from zero) is representable.
    pub credits: u64,
    pub category: String,
    pub description: String,
    pub reference: Option<String>,
    /// Whether `available` may end below zero. Usage may (it is real spend);
    /// an admin deduction only when forced.
    pub allow_negative: bool,
    /// Ledger entry id; `None` draws a random one. Callers with a natural id
    /// (an event id) pass it so a retried write cannot create a second entry.
    pub id: Option<String>,
}

impl Change {
    fn new(kind: EntryType, credits: u64, category: &str, description: &str) -> Self {
        Self {
            kind,
            credits,
            category: category.to_string(),
            description: description.to_string(),
            reference: None,
            allow_negative: kind == EntryType::Consume,
            id: None,
        }
    }

    /// A non-positive `credits` makes a change that [`Account::apply`] refuses.
    pub fn grant(credits: i64, category: &str, description: &str) -> Self {
        Self::new(EntryType::Grant, magnitude(credits), category, description)
    }

    /// An admin deduction of `credits` (up to 2^63); refused below zero unless
    /// [`Change::forced`].
    pub fn deduct(credits: u64, category: &str, description: &str) -> Self {
        Self::new(EntryType::Deduct, credits, category, description)
    }

    /// Usage consumption; allowed to take the balance below zero.
    pub fn consume(credits: i64, category: &str, description: &str) -> Self {
        Self::new(
            EntryType::Consume,
            magnitude(credits),
            category,
            description,
        )
    }

    pub fn redeem(credits: i64, category: &str, description: &str) -> Self {
        Self::new(EntryType::Redeem, magnitude(credits), category, description)
    }

    pub fn with_reference(mut self, reference: impl Into<String>) -> Self {
        self.reference = Some(reference.into());
        self
    }

    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Allows the balance to end below zero (`force`).
    pub fn forced(mut self, force: bool) -> Self {
        self.allow_negative = self.allow_negative || force;
        self
    }

    /// The signed change to `available`; `None` outside the 64-bit range
    /// (a grant above `i64::MAX`, a deduction above 2^63).
    pub fn signed_amount(&self) -> Option<i64> {
        match self.kind {
            EntryType::Grant | EntryType::Redeem => i64::try_from(self.credits).ok(),
            EntryType::Deduct | EntryType::Consume => 0_i64.checked_sub_unsigned(self.credits),
        }
    }
}

/// A signed amount as a [`Change`] magnitude; a non-positive one becomes 0,
/// which [`Account::apply`] refuses.
fn magnitude(credits: i64) -> u64 {
    u64::try_from(credits).unwrap_or(0)
}

/// The result of applying a [`Change`]: the account as read, the account to
/// write, and the ledger entry between them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub before: Account,
    pub after: Account,
    pub entry: LedgerEntry,
}

/// 409 `balance_overflow`: the account cannot hold the result.
fn overflow() -> Error {
    Error::BalanceOverflow(
        "the change would take the credit balance outside a 64-bit integer".into(),
    )
}

impl Account {
    /// The account of a user who has none yet: zeros.
    pub fn empty(user_id: UserId) -> Self {
        Self {
            user_id,
            available: 0,
            total: 0,
            used: 0,
            seq: 0,
            updated_at: None,
        }
    }

    /// Whether the account item exists (every write adds a ledger entry).
    pub fn exists(&self) -> bool {
        self.seq > 0
    }

    /// Computes the next state and its ledger entry. Errors: a non-positive
    /// amount (internal misuse), overflow (400 `invalid_amount`), or a deduction
    /// ending below zero where the change does not allow it (409
    /// `insufficient_credits`).
    pub fn apply(&self, change: &Change, now: DateTime<Utc>) -> Result<Applied, Error> {
        if change.credits == 0 {
            return Err(Error::Internal(format!(
                "a {} ledger change needs a positive amount, got {}",
                change.kind, change.credits
            )));
        }
        let amount = change.signed_amount().ok_or_else(overflow)?;
        let available = self.available.checked_add(amount).ok_or_else(overflow)?;
        // Only a change that lowers the balance below zero needs the allowance:
        // a grant onto a negative balance (a user in debt topping up) applies.
        if amount < 0 && available < 0 && !change.allow_negative {
            return Err(Error::InsufficientCredits(format!(
                "available credits {} cannot cover a deduction of {}",
                self.available, change.credits
            )));
        }
        let (total, used) = match change.kind {
            EntryType::Grant | EntryType::Redeem => (
                self.total.checked_add(amount).ok_or_else(overflow)?,
                self.used,
            ),
            EntryType::Deduct => (self.total, self.used),
            EntryType::Consume => (
                self.total,
                self.used
                    .checked_add_unsigned(change.credits)
                    .ok_or_else(overflow)?,
            ),
        };
        let seq = self
            .seq
            .checked_add(1)
            .ok_or_else(|| Error::Internal("ledger sequence exhausted".into()))?;
        let after = Account {
            user_id: self.user_id.clone(),
            available,
            total,
            used,
            seq,
            updated_at: Some(now),
        };
        let entry = LedgerEntry {
            id: change
                .id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            user_id: self.user_id.clone(),
            seq,
            kind: change.kind,
            amount,
            balance_before: self.available,
            balance_after: available,
            category: change.category.clone(),
            description: change.description.clone(),
            reference: change.reference.clone(),
            created_at: now,
        };
        Ok(Applied {
            before: self.clone(),
            after,
            entry,
        })
    }
}

// ---------------------------------------------------------------------------
// Admin adjustment: shared by the API and the admin CLI.
// ---------------------------------------------------------------------------

/// What an adjustment request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdjustMode {
    /// Read only: the account.
    Check,
    /// The plan, nothing written.
    DryRun,
    /// Write it.
    Apply,
}

impl AdjustMode {
    pub fn parse(text: &str) -> Result<Self, Error> {
        match text {
            "apply" => Ok(AdjustMode::Apply),
            "dry_run" => Ok(AdjustMode::DryRun),
            "check" => Ok(AdjustMode::Check),
            other => Err(Error::InvalidRequest(format!(
                "unknown mode {other:?}; expected apply, dry_run or check"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AdjustMode::Check => "check",
            AdjustMode::DryRun => "dry_run",
            AdjustMode::Apply => "apply",
        }
    }
}

/// How the new balance is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdjustBy {
    /// Set `available` to this value (≥ 0); the adjustment is target − available,
    /// recomputed against the balance at commit time.
    Target(i64),
    /// Change `available` by this much.
    Delta(i64),
}

/// A validated adjustment request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdjustRequest {
    /// `None` only in check mode.
    pub by: Option<AdjustBy>,
    pub reason: String,
    pub mode: AdjustMode,
    pub force: bool,
}

/// Parses an integer credit amount typed by an operator (`"100"`, `"-5"`).
pub fn parse_credits(what: &str, text: &str) -> Result<i64, Error> {
    let t = text.trim();
    let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::InvalidAmount(format!(
            "{what} must be an integer, got {text:?}"
        )));
    }
    t.parse::<i64>().map_err(|_| {
        Error::InvalidAmount(format!(
            "{what} {text} is out of range (64-bit signed integer)"
        ))
    })
}

/// The source text of a JSON value for an error message, cut to a readable length.
fn shown(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}

/// Reads an integer credit amount from a JSON value's source text, exactly
/// (never through `f64`). An integer is a JSON number without a fractional
/// part, as JSON Schema's `integer` says, however it is spelled: `100`,
/// `100.0`, `1e2` and `1.00e2` are 100 and `-0` is 0. Every refusal is 400
/// `invalid_amount` with its reason: not a number, a fractional part (`1.5`,
/// `1e-3`), or outside the 64-bit range (`1e400`).
pub fn json_credits(what: &str, raw: &RawValue) -> Result<i64, Error> {
    use crate::json::NotAnInteger;
    let text = raw.get();
    crate::json::integer(text).map_err(|why| {
        Error::InvalidAmount(match why {
            NotAnInteger::NotANumber => format!("{what} must be an integer, got {}", shown(text)),
            NotAnInteger::Fraction => {
                format!("{what} must be a whole number, got {}", shown(text))
            }
            NotAnInteger::OutOfRange => format!(
                "{what} {} is out of range (64-bit signed integer: {} to {})",
                shown(text),
                i64::MIN,
                i64::MAX
            ),
        })
    })
}

/// Checks a reason: 1–500 characters, not only whitespace.
pub fn validate_reason(reason: &str) -> Result<(), Error> {
    if reason.trim().is_empty() {
        return Err(Error::InvalidRequest("reason must not be empty".into()));
    }
    let chars = reason.chars().count();
    if chars > MAX_REASON_CHARS {
        return Err(Error::InvalidRequest(format!(
            "reason must be at most {MAX_REASON_CHARS} characters, got {chars}"
        )));
    }
    Ok(())
}

impl AdjustRequest {
    /// Validates the parts (what the CLI builds from its arguments).
    pub fn new(
        by: Option<AdjustBy>,
        reason: &str,
        mode: AdjustMode,
        force: bool,
    ) -> Result<Self, Error> {
        match by {
            None if mode != AdjustMode::Check => {
                return Err(Error::InvalidRequest(
                    "exactly one of target and delta is required".into(),
                ))
            }
            Some(AdjustBy::Target(t)) if t < 0 => {
                return Err(Error::InvalidAmount(format!(
                    "target must be an integer >= 0, got {t}"
                )))
            }
            _ => {}
        }
        // A check only reads: its reason is optional.
        if mode != AdjustMode::Check || !reason.is_empty() {
            validate_reason(reason)?;
        }
        Ok(Self {
            by,
            reason: reason.to_string(),
            mode,
            force,
        })
    }

    /// Validates the API body. Each field is read on its own, so each mistake
    /// gets its own message; unknown fields are ignored.
    pub fn from_body(body: AdjustBody) -> Result<Self, Error> {
        fn field<T: serde::de::DeserializeOwned>(
            name: &str,
            expected: &str,
            raw: Option<Box<RawValue>>,
        ) -> Result<Option<T>, Error> {
            raw.map(|raw| {
                serde_json::from_str(raw.get()).map_err(|_| {
                    Error::InvalidRequest(format!(
                        "{name} must be {expected}, got {}",
                        shown(raw.get())
                    ))
                })
            })
            .transpose()
        }
        let mode = match field::<String>("mode", "a string (apply, dry_run or check)", body.mode)? {
            None => AdjustMode::Apply,
            Some(s) => AdjustMode::parse(&s)?,
        };
        let force = field::<bool>("force", "a boolean", body.force)?.unwrap_or(false);
        let target = body
            .target
            .map(|v| json_credits("target", &v))
            .transpose()?;
        let delta = body.delta.map(|v| json_credits("delta", &v)).transpose()?;
        let by = match (target, delta) {
            (Some(_), Some(_)) => {
                return Err(Error::InvalidRequest(
                    "give exactly one of target and delta, not both".into(),
                ))
            }
            (Some(t), None) => Some(AdjustBy::Target(t)),
            (None, Some(d)) => Some(AdjustBy::Delta(d)),
            (None, None) => None,
        };
        let reason = field::<String>("reason", "a string", body.reason)?.unwrap_or_default();
        Self::new(by, &reason, mode, force)
    }
}

/// The adjust body `{"target"?, "delta"?, "reason", "mode"?, "force"?}` as
/// sent, each value unparsed: [`AdjustRequest::from_body`] reads them. No field
/// is nullable: `null` is refused like any other value of the wrong type.
#[derive(Debug, Default, Deserialize)]
pub struct AdjustBody {
    #[serde(default, deserialize_with = "crate::json::non_null")]
    pub target: Option<Box<RawValue>>,
    #[serde(default, deserialize_with = "crate::json::non_null")]
    pub delta: Option<Box<RawValue>>,
    #[serde(default, deserialize_with = "crate::json::non_null")]
    pub reason: Option<Box<RawValue>>,
    #[serde(default, deserialize_with = "crate::json::non_null")]
    pub mode: Option<Box<RawValue>>,
    #[serde(default, deserialize_with = "crate::json::non_null")]
    pub force: Option<Box<RawValue>>,
}

/// An adjustment computed against one reading of the account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AdjustPlan {
    /// `available` as read.
    pub previous: i64,
    /// `available` after the adjustment.
    pub target: i64,
    /// target − previous.
    pub adjustment: i64,
    /// Whether the plan takes the balance below zero (allowed only with force).
    pub goes_negative: bool,
}

impl AdjustPlan {
    /// Plans `by` against `account`. A deduction ending below zero is refused
    /// (409 `insufficient_credits`) unless `force`; overflow is a 400.
    pub fn new(account: &Account, by: AdjustBy, force: bool) -> Result<Self, Error> {
        let previous = account.available;
        let (target, adjustment) = match by {
            AdjustBy::Target(t) => (t, t.checked_sub(previous).ok_or_else(overflow)?),
            AdjustBy::Delta(d) => (previous.checked_add(d).ok_or_else(overflow)?, d),
        };
        let goes_negative = adjustment < 0 && target < 0;
        if goes_negative && !force {
            return Err(Error::InsufficientCredits(format!(
                "available credits {previous} cannot cover a deduction of {}; use force to allow a negative balance",
                adjustment.unsigned_abs()
            )));
        }
        Ok(Self {
            previous,
            target,
            adjustment,
            goes_negative,
        })
    }

    /// The ledger change this plan writes; `None` for an adjustment of 0.
    pub fn change(&self, reason: &str, force: bool) -> Option<Change> {
        match self.adjustment {
            0 => None,
            a if a > 0 => Some(Change::grant(a, CATEGORY_ADMIN_ADJUST, reason)),
            // Exact for every i64, i64::MIN (2^63) included.
            a => {
                Some(Change::deduct(a.unsigned_abs(), CATEGORY_ADMIN_ADJUST, reason).forced(force))
            }
        }
    }
}

/// A committed adjustment (mode `apply`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdjustOutcome {
    /// The plan against the balance at commit time.
    pub plan: AdjustPlan,
    pub force: bool,
    /// The account after the adjustment.
    pub account: Account,
    /// The ledger entry's id; `None` for an adjustment of 0.
    pub transaction_id: Option<String>,
    pub audit_id: String,
}

impl AdjustOutcome {
    /// The API's `apply` answer (also stored for idempotent replays).
    pub fn response(&self) -> Value {
        serde_json::json!({
            "mode": AdjustMode::Apply.as_str(),
            "user_id": self.account.user_id,
            "previous": self.plan.previous,
            "current": self.account.available,
            "target": self.plan.target,
            "adjustment": self.plan.adjustment,
            "transaction_id": self.transaction_id,
            "force": self.force,
            "account": self.account,
        })
    }
}

/// The API's `check` answer.
pub fn check_response(account: &Account) -> Value {
    serde_json::json!({ "mode": AdjustMode::Check.as_str(), "account": account })
}

/// The API's `dry_run` answer.
pub fn dry_run_response(account: &Account, plan: &AdjustPlan, force: bool) -> Value {
    serde_json::json!({
        "mode": AdjustMode::DryRun.as_str(),
        "user_id": account.user_id,
        "previous": plan.previous,
        "target": plan.target,
        "adjustment": plan.adjustment,
        "force": force,
    })
}

/// `details` of an `ADMIN_ADJUST_CREDITS` audit entry.
pub fn audit_details(
    request: &AdjustRequest,
    previous: i64,
    plan: Option<&AdjustPlan>,
    transaction_id: Option<&str>,
    refusal: Option<&Error>,
) -> Value {
    let (by, requested) = match request.by {
        Some(AdjustBy::Target(t)) => ("target", Some(t)),
        Some(AdjustBy::Delta(d)) => ("delta", Some(d)),
        None => ("none", None),
    };
    let mut details = serde_json::json!({
        "reason": request.reason,
        "force": request.force,
        "mode": request.mode.as_str(),
        "by": by,
        "requested": requested,
        "previous": previous,
    });
    let fields = details.as_object_mut().expect("object literal");
    if let Some(plan) = plan {
        fields.insert("current".into(), plan.target.into());
        fields.insert("adjustment".into(), plan.adjustment.into());
        fields.insert("negative_balance".into(), plan.goes_negative.into());
    }
    if let Some(id) = transaction_id {
        fields.insert("transaction_id".into(), id.into());
    }
    if let Some(err) = refusal {
        fields.insert("error".into(), err.code().into());
        fields.insert("message".into(), err.to_string().into());
    }
    details
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()
    }

    fn account(available: i64, total: i64, used: i64, seq: u64) -> Account {
        Account {
            available,
            total,
            used,
            seq,
            ..Account::empty(UserId::parse("alice").unwrap())
        }
    }

    #[test]
    fn grant_raises_available_and_total() {
        let a = account(5, 10, 5, 3);
        let r = a.apply(&Change::grant(7, "c", "d"), now()).unwrap();
        assert_eq!(
            (r.after.available, r.after.total, r.after.used, r.after.seq),
            (12, 17, 5, 4)
        );
        assert_eq!(
            (
                r.entry.amount,
                r.entry.balance_before,
                r.entry.balance_after
            ),
            (7, 5, 12)
        );
        assert_eq!(r.entry.seq, 4);
        assert_eq!(r.entry.kind, EntryType::Grant);
        assert_eq!(r.after.updated_at, Some(now()));
    }

    #[test]
    fn deduct_lowers_available_only_and_refuses_below_zero() {
        let a = account(5, 10, 5, 1);
        let r = a.apply(&Change::deduct(5, "c", "d"), now()).unwrap();
        assert_eq!((r.after.available, r.after.total, r.after.used), (0, 10, 5));
        assert_eq!(r.entry.amount, -5);
        let e = a.apply(&Change::deduct(6, "c", "d"), now()).unwrap_err();
        assert_eq!(e.code(), "insufficient_credits");
        let r = a
            .apply(&Change::deduct(6, "c", "d").forced(true), now())
            .unwrap();
        assert_eq!(r.after.available, -1);
    }

    /// Only a change that lowers the balance below zero needs force: a grant or
    /// a redemption onto a negative balance always applies.
    #[test]
    fn a_grant_onto_a_negative_balance_applies() {
        let a = account(-1000, 0, 0, 1);
        let r = a.apply(&Change::grant(10, "c", "d"), now()).unwrap();
        assert_eq!((r.after.available, r.entry.amount), (-990, 10));
        let r = a.apply(&Change::redeem(100, "c", "d"), now()).unwrap();
        assert_eq!(r.after.available, -900);
        let e = a.apply(&Change::deduct(1, "c", "d"), now()).unwrap_err();
        assert_eq!(e.code(), "insufficient_credits");
        let plan = AdjustPlan::new(&a, AdjustBy::Delta(10), false).unwrap();
        let change = plan.change("r", false).unwrap();
        assert_eq!(a.apply(&change, now()).unwrap().after.available, -990);
        let plan = AdjustPlan::new(&a, AdjustBy::Target(0), false).unwrap();
        let change = plan.change("r", false).unwrap();
        assert_eq!(a.apply(&change, now()).unwrap().after.available, 0);
    }

    #[test]
    fn consume_raises_used_and_may_go_negative() {
        let a = account(1, 1, 0, 1);
        let r = a.apply(&Change::consume(3, "usage", "e1"), now()).unwrap();
        assert_eq!((r.after.available, r.after.total, r.after.used), (-2, 1, 3));
        assert_eq!(r.entry.kind, EntryType::Consume);
    }

    #[test]
    fn redeem_is_a_grant() {
        let r = Account::empty(UserId::parse("bob").unwrap())
            .apply(&Change::redeem(100, "redemption", "CODE"), now())
            .unwrap();
        assert_eq!(
            (r.after.available, r.after.total, r.after.seq),
            (100, 100, 1)
        );
        assert_eq!(r.entry.balance_before, 0);
    }

    #[test]
    fn overflow_and_bad_amounts_are_errors() {
        let a = account(i64::MAX, i64::MAX, 0, 1);
        assert_eq!(
            a.apply(&Change::grant(1, "c", "d"), now())
                .unwrap_err()
                .code(),
            "balance_overflow"
        );
        let a = account(i64::MIN + 1, 0, i64::MAX, 1);
        assert_eq!(
            a.apply(&Change::consume(2, "c", "d"), now())
                .unwrap_err()
                .code(),
            "balance_overflow"
        );
        assert_eq!(
            a.apply(&Change::grant(0, "c", "d"), now())
                .unwrap_err()
                .code(),
            "internal"
        );
    }

    #[test]
    fn plans_target_and_delta() {
        let a = account(5000, 15000, 10000, 2);
        let p = AdjustPlan::new(&a, AdjustBy::Target(100_000), false).unwrap();
        assert_eq!(
            (p.previous, p.target, p.adjustment),
            (5000, 100_000, 95_000)
        );
        let p = AdjustPlan::new(&a, AdjustBy::Target(0), false).unwrap();
        assert_eq!(p.adjustment, -5000);
        assert_eq!(p.change("r", false).unwrap().kind, EntryType::Deduct);
        let p = AdjustPlan::new(&a, AdjustBy::Delta(-5001), true).unwrap();
        assert!(p.goes_negative);
        assert!(p.change("r", true).unwrap().allow_negative);
        assert_eq!(
            AdjustPlan::new(&a, AdjustBy::Delta(-5001), false)
                .unwrap_err()
                .code(),
            "insufficient_credits"
        );
        let p = AdjustPlan::new(&a, AdjustBy::Delta(0), false).unwrap();
        assert!(p.change("r", false).is_none());
        // The whole 64-bit range is a balance: i64::MIN from zero is a valid result.
        let p = AdjustPlan::new(&account(0, 0, 0, 0), AdjustBy::Delta(i64::MIN), true).unwrap();
        assert_eq!((p.target, p.adjustment), (i64::MIN, i64::MIN));
        assert_eq!(
            AdjustPlan::new(&account(-1, 0, 0, 1), AdjustBy::Delta(i64::MIN), true)
                .unwrap_err()
                .code(),
            "balance_overflow"
        );
        assert_eq!(
            AdjustPlan::new(&a, AdjustBy::Delta(i64::MAX), false)
                .unwrap_err()
                .code(),
            "balance_overflow"
        );
        // A negative balance (from usage) plus a grant that stays negative is fine.
        let neg = account(-10, 0, 10, 3);
        assert!(AdjustPlan::new(&neg, AdjustBy::Delta(5), false).is_ok());
        assert_eq!(
            AdjustPlan::new(&neg, AdjustBy::Target(i64::MAX), false)
                .unwrap_err()
                .code(),
            "balance_overflow"
        );
    }

    #[test]
    fn a_forced_deduction_reaches_i64_min_exactly() {
        let a = account(0, 7, 3, 2);
        let plan = AdjustPlan::new(&a, AdjustBy::Delta(i64::MIN), true).unwrap();
        let change = plan.change("r", true).unwrap();
        assert_eq!((change.kind, change.credits), (EntryType::Deduct, 1 << 63));
        let r = a.apply(&change, now()).unwrap();
        assert_eq!(
            (r.after.available, r.after.total, r.after.used),
            (i64::MIN, 7, 3)
        );
        assert_eq!(
            (
                r.entry.amount,
                r.entry.balance_before,
                r.entry.balance_after
            ),
            (i64::MIN, 0, i64::MIN)
        );
        // Not forced: refused as any deduction below zero.
        assert_eq!(
            AdjustPlan::new(&a, AdjustBy::Delta(i64::MIN), false)
                .unwrap_err()
                .code(),
            "insufficient_credits"
        );
        // One more credit down does not fit.
        let e = r
            .after
            .apply(&Change::deduct(1, "c", "d").forced(true), now())
            .unwrap_err();
        assert_eq!(e.code(), "balance_overflow");
    }

    #[test]
    fn plan_and_apply_agree() {
        let a = account(40, 40, 0, 1);
        let plan = AdjustPlan::new(&a, AdjustBy::Target(25), false).unwrap();
        let r = a.apply(&plan.change("r", false).unwrap(), now()).unwrap();
        assert_eq!(r.after.available, plan.target);
        assert_eq!(r.entry.amount, plan.adjustment);
    }

    /// The adjust body through the one JSON reader, as the handler reads it.
    fn parse(body: &str) -> Result<AdjustRequest, Error> {
        AdjustRequest::from_body(crate::json::from_str(body)?)
    }

    #[test]
    fn parses_api_bodies() {
        let r = parse(r#"{"target": 5, "reason": "x"}"#).unwrap();
        assert_eq!(r.by, Some(AdjustBy::Target(5)));
        assert_eq!(r.mode, AdjustMode::Apply);
        assert!(!r.force);
        let r = parse(r#"{"delta": -5, "reason": "x", "mode": "dry_run", "force": true}"#).unwrap();
        assert_eq!(
            (r.by, r.mode, r.force),
            (Some(AdjustBy::Delta(-5)), AdjustMode::DryRun, true)
        );
        let r = parse(r#"{"mode": "check"}"#).unwrap();
        assert_eq!((r.by, r.mode), (None, AdjustMode::Check));
        let r = parse(&json!({"delta": 1, "reason": "é".repeat(500), "extra": null}).to_string())
            .unwrap();
        assert_eq!(r.by, Some(AdjustBy::Delta(1)));
        // The 64-bit edges are integers like any other.
        let r = parse(r#"{"delta": -9223372036854775808, "reason": "x"}"#).unwrap();
        assert_eq!(r.by, Some(AdjustBy::Delta(i64::MIN)));
        let r = parse(r#"{"target": 9223372036854775807, "reason": "x"}"#).unwrap();
        assert_eq!(r.by, Some(AdjustBy::Target(i64::MAX)));
    }

    #[test]
    fn refuses_bad_api_bodies() {
        let cases = [
            (r#"{"reason": "x"}"#, "invalid_request"),
            (
                r#"{"target": 1, "delta": 1, "reason": "x"}"#,
                "invalid_request",
            ),
            (r#"{"target": 1.5, "reason": "x"}"#, "invalid_amount"),
            (r#"{"target": "10", "reason": "x"}"#, "invalid_amount"),
            (r#"{"target": -1, "reason": "x"}"#, "invalid_amount"),
            (r#"{"delta": 1e30, "reason": "x"}"#, "invalid_amount"),
            (
                r#"{"target": 9223372036854775808, "reason": "x"}"#,
                "invalid_amount",
            ),
            (r#"{"target": 1}"#, "invalid_request"),
            (r#"{"target": 1, "reason": ""}"#, "invalid_request"),
            (r#"{"target": 1, "reason": "   "}"#, "invalid_request"),
            (
                &json!({"target": 1, "reason": "x".repeat(501)}).to_string(),
                "invalid_request",
            ),
            (r#"{"target": 1, "reason": 5}"#, "invalid_request"),
            (
                r#"{"target": 1, "reason": "x", "mode": "yolo"}"#,
                "invalid_request",
            ),
            (
                r#"{"target": 1, "reason": "x", "mode": 1}"#,
                "invalid_request",
            ),
            (
                r#"{"target": 1, "reason": "x", "force": "yes"}"#,
                "invalid_request",
            ),
            ("[1]", "invalid_request"),
            (
                r#"{"mode": "check", "target": 1, "delta": 2}"#,
                "invalid_request",
            ),
        ];
        for (body, code) in cases {
            let err = parse(body).unwrap_err();
            assert_eq!(err.code(), code, "{body}: {err}");
        }
    }

    #[test]
    fn refuses_duplicate_keys() {
        // serde_json alone keeps the last `delta`: a grant reads as a deduction.
        let err = parse(r#"{"delta": 5, "delta": -1000000, "reason": "x"}"#).unwrap_err();
        assert_eq!(err.code(), "invalid_request", "{err}");
        assert!(err.to_string().contains("duplicate key \"delta\""), "{err}");
    }

    #[test]
    fn refuses_null_fields() {
        // No field is nullable; `null` used to read as "absent".
        for (body, code) in [
            (r#"{"target": null, "reason": "x"}"#, "invalid_amount"),
            (r#"{"delta": null, "reason": "x"}"#, "invalid_amount"),
            (
                r#"{"target": null, "delta": 1, "reason": "x"}"#,
                "invalid_amount",
            ),
            (r#"{"delta": 1, "reason": null}"#, "invalid_request"),
            (
                r#"{"delta": 1, "reason": "x", "mode": null}"#,
                "invalid_request",
            ),
            (
                r#"{"delta": 1, "reason": "x", "force": null}"#,
                "invalid_request",
            ),
        ] {
            let err = parse(body).unwrap_err();
            assert_eq!(err.code(), code, "{body}: {err}");
            assert!(err.to_string().contains("got null"), "{body}: {err}");
        }
    }

    #[test]
    fn integers_are_read_by_value_and_refusals_say_why() {
        // JSON Schema's integer: any spelling of a whole number.
        for (value, expected) in [
            ("1.0", 1),
            ("1e2", 100),
            ("1.50E2", 150),
            ("100e-2", 1),
            ("-0", 0),
            ("-0.0e5", 0),
            ("0e99999999999999999999", 0),
            ("9223372036854775807.0", i64::MAX),
            ("-9223372036854775808", i64::MIN),
            ("-92233720368547758.08e2", i64::MIN),
        ] {
            for field in ["delta", "target"] {
                let body = format!(r#"{{"{field}": {value}, "reason": "x", "force": true}}"#);
                match parse(&body) {
                    Ok(r) => assert!(
                        matches!(r.by, Some(AdjustBy::Delta(v)) | Some(AdjustBy::Target(v)) if v == expected),
                        "{body}: {:?}",
                        r.by
                    ),
                    // A negative target is refused as such.
                    Err(e) => assert!(field == "target" && expected < 0, "{body}: {e}"),
                }
            }
        }
        for (value, says) in [
            ("1e400", "out of range"),
            ("-1e400", "out of range"),
            ("1e99999999999999999999", "out of range"),
            ("9223372036854775808", "out of range"),
            ("-9223372036854775809", "out of range"),
            ("1.5", "must be a whole number, got 1.5"),
            ("-1E-2", "must be a whole number"),
            ("1e-99999999999999999999", "must be a whole number"),
            ("true", "must be an integer, got true"),
            ("\"5\"", "must be an integer, got \"5\""),
        ] {
            for field in ["delta", "target"] {
                let body = format!(r#"{{"{field}": {value}, "reason": "x"}}"#);
                let err = parse(&body).unwrap_err();
                assert_eq!(err.code(), "invalid_amount", "{body}: {err}");
                assert!(err.to_string().contains(says), "{body}: {err}");
                assert!(err.to_string().starts_with(field), "{body}: {err}");
            }
        }
    }

    #[test]
    fn parses_operator_integers() {
        assert_eq!(parse_credits("t", "100").unwrap(), 100);
        assert_eq!(parse_credits("t", "-5").unwrap(), -5);
        assert_eq!(parse_credits("t", "+5").unwrap(), 5);
        for bad in ["", "1.5", "abc", "1e3", "-", "99999999999999999999"] {
            assert_eq!(
                parse_credits("t", bad).unwrap_err().code(),
                "invalid_amount",
                "{bad}"
            );
        }
    }
}
