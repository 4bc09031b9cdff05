//! The invariant checker: what must hold in a table whatever happened to it
//! (faults, crashes, redeliveries, concurrency). It reads every item by Scan,
//! independently of the store's own read paths, and lists each violation.
//!
//! - Credit accounts: `available` = Σ ledger amounts, `seq` 1..n without gaps
//!   and equal to the account's, each `balance_before` = the previous
//!   `balance_after`, `held` ≥ 0 and = Σ credits of pending reservations,
//!   `spendable` = `available` − `held`; ledger ids unique.
//! - Quota items, per window: usage = Σ cost of the distinct applied events
//!   (event records) in the item's current window, reserved = Σ estimates of
//!   pending reservations held in that window, headroom = limit − usage −
//!   reserved. A window an admin reset is exempt from the usage sum (a reset
//!   zeroes usage on purpose; its audit entry names the window).
//! - Usage events with credits: exactly one `consume` ledger entry each, for
//!   the event's credits; no `consume` entry without its event.
//! - Codes: `used_count` = its redemption records ≤ `max_uses`; per user at
//!   most one `redeem` ledger entry per code, and the one the record names;
//!   each user's redemption counter = their redemption records.
//! - Audit: every admin adjustment's ledger entry has exactly one
//!   `ADMIN_ADJUST_CREDITS` entry naming it (and each names one), every
//!   code batch its `ADMIN_CREATE_REDEMPTION_CODES` entry, a defaults item
//!   as many entries of its scope as its `version` (one per replace), a
//!   quota item with a limit an entry that set the user's limits.
//! - Idempotency: each completed key's effect (ledger entry, reservation) is
//!   there exactly once. (A key applied twice under two different effects is
//!   caught by the scenarios' exact totals, which know what was sent.)

use crate::TestEnv;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::Value;
use spendguard_core::domain::window::WindowKind;
use spendguard_core::domain::Usd;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

pub type Item = HashMap<String, AttributeValue>;

/// What an invariant is about (so a test can assert the checker saw it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Balance,
    LedgerSeq,
    LedgerChain,
    LedgerDuplicate,
    Held,
    Spendable,
    Usage,
    Reserved,
    Headroom,
    EventCredits,
    CodeUses,
    RedemptionPerUser,
    RedemptionCounter,
    Audit,
    Idempotency,
    Unreadable,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub kind: Kind,
    /// The item (`pk | sk`) or group the violation is about.
    pub subject: String,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:?}] {}: {}", self.kind, self.subject, self.detail)
    }
}

/// A readable report of `violations` (empty string when there are none).
pub fn report(violations: &[Violation]) -> String {
    let mut out = String::new();
    for v in violations {
        out.push_str(&format!("  {v}\n"));
    }
    out
}

impl TestEnv {
    /// Scans the test's table and checks every invariant.
    pub async fn check_invariants(&self) -> Vec<Violation> {
        check_items(&self.scan_items().await, self.config.timezone)
    }

    /// Panics with a report unless every invariant holds.
    #[track_caller]
    pub fn assert_invariants(&self) -> impl std::future::Future<Output = ()> + '_ {
        let caller = std::panic::Location::caller();
        async move {
            let violations = self.check_invariants().await;
            assert!(
                violations.is_empty(),
                "{} invariant violation(s) (checked at {caller}):\n{}",
                violations.len(),
                report(&violations)
            );
        }
    }
}

fn s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn n<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .map(String::as_str)
}

fn key(item: &Item) -> String {
    format!(
        "{} | {}",
        s(item, "pk").unwrap_or("?"),
        s(item, "sk").unwrap_or("?")
    )
}

/// Collects violations; numbers that do not parse are violations too.
struct Checker {
    found: Vec<Violation>,
}

impl Checker {
    fn add(&mut self, kind: Kind, subject: impl Into<String>, detail: impl Into<String>) {
        self.found.push(Violation {
            kind,
            subject: subject.into(),
            detail: detail.into(),
        });
    }

    fn int(&mut self, item: &Item, name: &str) -> Option<i64> {
        let text = n(item, name)?;
        match text.parse() {
            Ok(v) => Some(v),
            Err(_) => {
                self.add(Kind::Unreadable, key(item), format!("{name} = {text:?}"));
                None
            }
        }
    }

    fn usd(&mut self, item: &Item, name: &str) -> Option<i128> {
        let text = n(item, name)?;
        match Usd::parse_stored(text) {
            Ok(v) => Some(v.atoms()),
            Err(e) => {
                self.add(Kind::Unreadable, key(item), format!("{name}: {e}"));
                None
            }
        }
    }

    fn expect_eq<T: PartialEq + fmt::Debug>(
        &mut self,
        kind: Kind,
        subject: &str,
        what: &str,
        actual: T,
        expected: T,
    ) {
        if actual != expected {
            self.add(
                kind,
                subject,
                format!("{what} is {actual:?}, expected {expected:?}"),
            );
        }
    }
}

fn usd_text(atoms: i128) -> String {
    Usd::from_atoms(atoms).to_string()
}

/// Checks every invariant over a table's items (`tz`: the windows' zone).
pub fn check_items(items: &[Item], tz: Tz) -> Vec<Violation> {
    let mut c = Checker { found: Vec::new() };
    let by_sk = |pk_prefix: &str, sk: &str| -> Vec<&Item> {
        items
            .iter()
            .filter(|i| {
                s(i, "pk").is_some_and(|p| p.starts_with(pk_prefix))
                    && s(i, "sk").is_some_and(|x| x.starts_with(sk))
            })
            .collect()
    };
    let audits: Vec<(String, Option<String>, Value)> = by_sk("AUDIT", "")
        .into_iter()
        .map(|a| {
            let details = s(a, "details")
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or(Value::Null);
            (
                s(a, "action").unwrap_or("").to_string(),
                s(a, "target_user").map(str::to_string),
                details,
            )
        })
        .collect();
    let events = by_sk("EVENT#", "EVENT");
    let reservations = by_sk("RESERVATION#", "RESERVATION");
    let pending: Vec<&Item> = reservations
        .iter()
        .copied()
        .filter(|r| s(r, "status") == Some("pending"))
        .collect();

    // Ledger entries by user, in sort-key (= seq) order.
    let mut ledgers: BTreeMap<String, Vec<&Item>> = BTreeMap::new();
    for entry in by_sk("USER#", "LEDGER#") {
        let user = s(entry, "pk").unwrap_or("").trim_start_matches("USER#");
        ledgers.entry(user.to_string()).or_default().push(entry);
    }
    for entries in ledgers.values_mut() {
        entries.sort_by_key(|e| s(e, "sk").unwrap_or("").to_string());
    }
    let accounts: BTreeMap<String, &Item> = by_sk("USER#", "CREDITS")
        .into_iter()
        .map(|a| (s(a, "pk").unwrap_or("")[5..].to_string(), a))
        .collect();

    check_accounts(&mut c, &accounts, &ledgers, &pending);
    check_quotas(
        &mut c,
        &by_sk("USER#", "QUOTA#"),
        &events,
        &pending,
        &audits,
        tz,
    );
    check_event_credits(&mut c, &events, &ledgers);
    check_codes(&mut c, items, &ledgers);
    check_audit(
        &mut c,
        &ledgers,
        &by_sk("CODE_BATCH#", "BATCH"),
        &by_sk("CONFIG", "QUOTA_DEFAULTS#"),
        &audits,
    );
    check_idempotency(
        &mut c,
        &by_sk("IDEMPOTENCY#", "IDEMPOTENCY"),
        &ledgers,
        &reservations,
    );
    c.found
}

fn check_accounts(
    c: &mut Checker,
    accounts: &BTreeMap<String, &Item>,
    ledgers: &BTreeMap<String, Vec<&Item>>,
    pending: &[&Item],
) {
    let users: BTreeSet<&String> = accounts.keys().chain(ledgers.keys()).collect();
    let mut ids: HashMap<String, String> = HashMap::new();
    for user in users {
        let subject = format!("USER#{user} | CREDITS");
        let entries = ledgers.get(user).map(Vec::as_slice).unwrap_or(&[]);
        let (mut sum, mut previous_after) = (0i64, 0i64);
        for (i, e) in entries.iter().enumerate() {
            let at = key(e);
            let seq = c.int(e, "seq");
            c.expect_eq(Kind::LedgerSeq, &at, "seq", seq, Some(i as i64 + 1));
            let (amount, before, after) = (
                c.int(e, "amount").unwrap_or(0),
                c.int(e, "balance_before"),
                c.int(e, "balance_after"),
            );
            c.expect_eq(
                Kind::LedgerChain,
                &at,
                "balance_before",
                before,
                Some(previous_after),
            );
            c.expect_eq(
                Kind::LedgerChain,
                &at,
                "balance_after",
                after,
                Some(previous_after + amount),
            );
            previous_after = after.unwrap_or(previous_after + amount);
            sum += amount;
            if let Some(id) = s(e, "id") {
                if let Some(first) = ids.insert(id.to_string(), at.clone()) {
                    c.add(
                        Kind::LedgerDuplicate,
                        &at,
                        format!("ledger id {id} also at {first}"),
                    );
                }
            }
        }
        let account = accounts.get(user);
        let field = |c: &mut Checker, name: &str| account.and_then(|a| c.int(a, name)).unwrap_or(0);
        let (available, seq, held, spendable) = (
            field(c, "available"),
            field(c, "seq"),
            field(c, "held"),
            account.map(|a| c.int(a, "spendable")),
        );
        c.expect_eq(Kind::Balance, &subject, "available", available, sum);
        c.expect_eq(Kind::LedgerSeq, &subject, "seq", seq, entries.len() as i64);
        if held < 0 {
            c.add(Kind::Held, &subject, format!("held is {held} < 0"));
        }
        let holds: i64 = pending
            .iter()
            .filter(|r| s(r, "user_id") == Some(user))
            .map(|r| c.int(r, "credits").unwrap_or(0))
            .sum();
        c.expect_eq(
            Kind::Held,
            &subject,
            "held (Σ pending credit holds)",
            held,
            holds,
        );
        if let Some(Some(spendable)) = spendable {
            c.expect_eq(
                Kind::Spendable,
                &subject,
                "spendable",
                spendable,
                available - held,
            );
        }
    }
}

fn event_time(e: &Item) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s(e, "occurred_at")?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn check_quotas(
    c: &mut Checker,
    quotas: &[&Item],
    events: &[&Item],
    pending: &[&Item],
    audits: &[(String, Option<String>, Value)],
    tz: Tz,
) {
    for q in quotas {
        let subject = key(q);
        let user = s(q, "pk").unwrap_or("")[5..].to_string();
        let platform = s(q, "sk").unwrap_or("")[6..].to_string();
        let was_reset = |window: &str| {
            audits.iter().any(|(action, target, details)| {
                action == "ADMIN_RESET_QUOTA_WINDOW"
                    && target.as_deref() == Some(&user)
                    && details["platform"].as_str().is_none_or(|p| p == platform)
                    && details["window"].as_str().is_none_or(|w| w == window)
            })
        };
        let has_limit = WindowKind::ALL
            .iter()
            .any(|w| q.contains_key(&format!("{}_limit", w.as_str())));
        let limits_audited = audits.iter().any(|(action, target, _)| {
            (action == "ADMIN_REPLACE_USER_QUOTAS" || action == "ADMIN_INIT_USER_QUOTAS")
                && target.as_deref() == Some(&user)
        });
        if has_limit && !limits_audited {
            c.add(
                Kind::Audit,
                &subject,
                "limits set without an audit entry that sets them",
            );
        }
        let mine =
            |r: &&&Item| s(r, "user_id") == Some(&user) && s(r, "platform") == Some(&platform);
        for w in WindowKind::ALL {
            let name = w.as_str();
            let Some(start) = c.int(q, &format!("{name}_start")) else {
                continue;
            };
            let usage = c.usd(q, &format!("{name}_usage")).unwrap_or(0);
            let applied: i128 = events
                .iter()
                .filter(mine)
                .filter(|e| {
                    event_time(e).is_some_and(|t| w.bounds_at(t, tz).start.timestamp() == start)
                })
                .map(|e| c.usd(e, "cost_usd").unwrap_or(0))
                .sum();
            if !was_reset(name) && usage != applied {
                c.add(
                    Kind::Usage,
                    &subject,
                    format!(
                        "{name}_usage is {} but its window's events sum to {}",
                        usd_text(usage),
                        usd_text(applied)
                    ),
                );
            }
            let reserved = c.usd(q, &format!("{name}_reserved")).unwrap_or(0);
            let mut holds = 0i128;
            for r in pending.iter().filter(mine) {
                if c.int(r, &format!("{name}_hold_start")) == Some(start) {
                    holds += c.usd(r, "estimate_usd").unwrap_or(0);
                }
            }
            if reserved != holds {
                c.add(
                    Kind::Reserved,
                    &subject,
                    format!(
                        "{name}_reserved is {} but pending holds sum to {}",
                        usd_text(reserved),
                        usd_text(holds)
                    ),
                );
            }
            if let Some(headroom) = c.usd(q, &format!("{name}_headroom")) {
                let limit = c.usd(q, &format!("{name}_limit")).unwrap_or(0);
                let expected = limit - usage - reserved;
                if headroom != expected {
                    c.add(
                        Kind::Headroom,
                        &subject,
                        format!(
                            "{name}_headroom is {}, expected {}",
                            usd_text(headroom),
                            usd_text(expected)
                        ),
                    );
                }
            }
        }
    }
}

fn check_event_credits(c: &mut Checker, events: &[&Item], ledgers: &BTreeMap<String, Vec<&Item>>) {
    let mut consumed: HashMap<(String, String), Vec<i64>> = HashMap::new();
    for (user, entries) in ledgers {
        for e in entries.iter().filter(|e| s(e, "type") == Some("consume")) {
            let reference = s(e, "reference").unwrap_or("").to_string();
            let amount = c.int(e, "amount").unwrap_or(0);
            consumed
                .entry((user.clone(), reference))
                .or_default()
                .push(amount);
        }
    }
    for e in events {
        let user = s(e, "user_id").unwrap_or("").to_string();
        let id = s(e, "pk")
            .unwrap_or("")
            .trim_start_matches("EVENT#")
            .to_string();
        let credits = c.int(e, "credits").unwrap_or(0);
        let entries = consumed.remove(&(user, id)).unwrap_or_default();
        let expected: Vec<i64> = if credits > 0 { vec![-credits] } else { vec![] };
        c.expect_eq(
            Kind::EventCredits,
            &key(e),
            "its consume entries",
            entries,
            expected,
        );
    }
    for ((user, reference), amounts) in consumed {
        c.add(
            Kind::EventCredits,
            format!("USER#{user} | consume {reference}"),
            format!("consume entries {amounts:?} without an event record"),
        );
    }
}

fn check_codes(c: &mut Checker, items: &[Item], ledgers: &BTreeMap<String, Vec<&Item>>) {
    let mut records: BTreeMap<String, Vec<&Item>> = BTreeMap::new();
    let mut codes: BTreeMap<String, &Item> = BTreeMap::new();
    for i in items
        .iter()
        .filter(|i| s(i, "pk").is_some_and(|p| p.starts_with("CODE#")))
    {
        let pk = s(i, "pk").unwrap_or("").to_string();
        match s(i, "sk") {
            Some("CODE") => {
                codes.insert(pk, i);
            }
            Some(sk) if sk.starts_with("REDEMPTION#") => records.entry(pk).or_default().push(i),
            _ => {}
        }
    }
    for (pk, code) in &codes {
        let subject = key(code);
        let mine = records.get(pk).map(Vec::as_slice).unwrap_or(&[]);
        let used = c.int(code, "used_count").unwrap_or(0);
        c.expect_eq(
            Kind::CodeUses,
            &subject,
            "used_count (= its redemption records)",
            used,
            mine.len() as i64,
        );
        if let Some(max) = c.int(code, "max_uses") {
            if used > max {
                c.add(
                    Kind::CodeUses,
                    &subject,
                    format!("used_count {used} > max_uses {max}"),
                );
            }
        }
    }
    // Per user: one redeem entry per code at most, and the one its record names.
    let mut per_user: BTreeMap<String, usize> = BTreeMap::new();
    for record in records.values().flatten() {
        let user = s(record, "user_id").unwrap_or("").to_string();
        *per_user.entry(user.clone()).or_default() += 1;
        let code_key = s(record, "pk").unwrap_or("").trim_start_matches("CODE#");
        let redeems: Vec<&&Item> = ledgers
            .get(&user)
            .map(|l| {
                l.iter()
                    .filter(|e| {
                        s(e, "type") == Some("redeem") && s(e, "reference") == Some(code_key)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let granted = c.int(record, "credits_granted").unwrap_or(0);
        let expected = usize::from(granted > 0);
        if redeems.len() != expected {
            c.add(
                Kind::RedemptionPerUser,
                key(record),
                format!(
                    "{} redeem ledger entries for this code and user, expected {expected}",
                    redeems.len()
                ),
            );
        } else if let (Some(entry), Some(txn)) = (redeems.first(), s(record, "transaction_id")) {
            c.expect_eq(
                Kind::RedemptionPerUser,
                &key(record),
                "its ledger entry's id",
                s(entry, "id"),
                Some(txn),
            );
        }
    }
    for (user, entries) in ledgers {
        let orphans = entries
            .iter()
            .filter(|e| s(e, "type") == Some("redeem"))
            .filter(|e| {
                let code = format!("CODE#{}", s(e, "reference").unwrap_or(""));
                !records
                    .get(&code)
                    .is_some_and(|r| r.iter().any(|r| s(r, "user_id") == Some(user)))
            })
            .count();
        if orphans > 0 {
            c.add(
                Kind::RedemptionPerUser,
                format!("USER#{user}"),
                format!("{orphans} redeem entries without a redemption record"),
            );
        }
    }
    let stats: Vec<&Item> = items
        .iter()
        .filter(|i| s(i, "sk") == Some("REDEMPTION_STATS"))
        .collect();
    let users: BTreeSet<String> = per_user
        .keys()
        .cloned()
        .chain(
            stats
                .iter()
                .map(|i| s(i, "pk").unwrap_or("")[5..].to_string()),
        )
        .collect();
    for user in users {
        let count = stats
            .iter()
            .find(|i| s(i, "pk") == Some(&format!("USER#{user}")))
            .and_then(|i| c.int(i, "redemption_count"))
            .unwrap_or(0);
        let records = per_user.get(&user).copied().unwrap_or(0) as i64;
        c.expect_eq(
            Kind::RedemptionCounter,
            &format!("USER#{user} | REDEMPTION_STATS"),
            "redemption_count",
            count,
            records,
        );
    }
}

fn check_audit(
    c: &mut Checker,
    ledgers: &BTreeMap<String, Vec<&Item>>,
    batches: &[&Item],
    defaults: &[&Item],
    audits: &[(String, Option<String>, Value)],
) {
    let adjust_audits: Vec<(&str, &str)> = audits
        .iter()
        .filter(|(action, _, _)| action == "ADMIN_ADJUST_CREDITS")
        .filter_map(|(_, user, d)| Some((user.as_deref()?, d["transaction_id"].as_str()?)))
        .collect();
    let mut adjusted = BTreeSet::new();
    for (user, entries) in ledgers {
        for e in entries
            .iter()
            .filter(|e| s(e, "category") == Some("admin_adjust"))
        {
            let id = s(e, "id").unwrap_or("");
            adjusted.insert((user.as_str(), id));
            let n = adjust_audits
                .iter()
                .filter(|(u, t)| u == user && *t == id)
                .count();
            c.expect_eq(
                Kind::Audit,
                &key(e),
                "ADMIN_ADJUST_CREDITS entries naming it",
                n,
                1,
            );
        }
    }
    for (user, txn) in &adjust_audits {
        if !adjusted.contains(&(*user, *txn)) {
            c.add(
                Kind::Audit,
                format!("audit of USER#{user}"),
                format!("ADMIN_ADJUST_CREDITS names {txn}, not in the ledger"),
            );
        }
    }
    for d in defaults {
        let scope = s(d, "sk")
            .unwrap_or("")
            .trim_start_matches("QUOTA_DEFAULTS#")
            .replacen("source#", "source:", 1);
        let version = c.int(d, "version").unwrap_or(0);
        let n = audits
            .iter()
            .filter(|(action, _, details)| {
                action.ends_with("_QUOTA_DEFAULTS") && details["scope"] == scope.as_str()
            })
            .count();
        c.expect_eq(
            Kind::Audit,
            &key(d),
            "audit entries (= its version)",
            n as i64,
            version,
        );
    }
    for b in batches {
        let batch = s(b, "batch_id").unwrap_or("");
        let n = audits
            .iter()
            .filter(|(action, _, d)| {
                action == "ADMIN_CREATE_REDEMPTION_CODES" && d["batch_id"] == batch
            })
            .count();
        c.expect_eq(
            Kind::Audit,
            &key(b),
            "ADMIN_CREATE_REDEMPTION_CODES entries",
            n,
            1,
        );
    }
}

fn check_idempotency(
    c: &mut Checker,
    records: &[&Item],
    ledgers: &BTreeMap<String, Vec<&Item>>,
    reservations: &[&Item],
) {
    for r in records
        .iter()
        .filter(|r| s(r, "status") == Some("completed"))
    {
        let Some(body) = s(r, "response_body").and_then(|b| serde_json::from_str::<Value>(b).ok())
        else {
            continue;
        };
        let status = c.int(r, "response_status").unwrap_or(0);
        if !(200..300).contains(&status) {
            continue;
        }
        if let Some(txn) = body["transaction_id"].as_str() {
            let n = ledgers
                .values()
                .flatten()
                .filter(|e| s(e, "id") == Some(txn))
                .count();
            c.expect_eq(
                Kind::Idempotency,
                &key(r),
                &format!("ledger entries {txn}"),
                n,
                1,
            );
        }
        if let Some(id) = body["reservation_id"].as_str() {
            let n = reservations
                .iter()
                .filter(|x| s(x, "reservation_id") == Some(id))
                .count();
            c.expect_eq(
                Kind::Idempotency,
                &key(r),
                &format!("reservations {id}"),
                n,
                1,
            );
        }
    }
}
