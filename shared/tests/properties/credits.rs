//! Adjust plans (target / delta; check, dry_run and apply; force) against
//! plain i128 arithmetic, and the adjust body's validation rules.

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use spendguard_core::domain::credits::{
    Account, AdjustBody, AdjustBy, AdjustMode, AdjustPlan, AdjustRequest,
};
use spendguard_core::domain::UserId;
use spendguard_core::json::from_str;

fn balance() -> impl Strategy<Value = i64> {
    prop_oneof![
        -1000_i64..1000,
        any::<i64>(),
        Just(i64::MIN),
        Just(i64::MAX),
        Just(0)
    ]
}

fn account(available: i64) -> Account {
    let mut a = Account::empty(UserId::parse("prop-user").unwrap());
    a.available = available;
    a.total = available.max(0);
    a.seq = 3;
    a
}

fn by() -> impl Strategy<Value = AdjustBy> {
    prop_oneof![
        (0_i64..2000).prop_map(AdjustBy::Target),
        (0_i64..=i64::MAX).prop_map(AdjustBy::Target),
        (-2000_i64..2000).prop_map(AdjustBy::Delta),
        any::<i64>().prop_map(AdjustBy::Delta),
    ]
}

proptest! {
    #[test]
    fn a_plan_is_the_arithmetic_or_a_refusal(available in balance(), by in by(), force in any::<bool>()) {
        let account = account(available);
        let (target, adjustment): (i128, i128) = match by {
            AdjustBy::Target(t) => (t.into(), i128::from(t) - i128::from(available)),
            AdjustBy::Delta(d) => (i128::from(available) + i128::from(d), d.into()),
        };
        let fits = i64::try_from(target).is_ok() && i64::try_from(adjustment).is_ok();
        let negative = adjustment < 0 && target < 0;
        match AdjustPlan::new(&account, by, force) {
            Ok(plan) => {
                prop_assert!(fits && (!negative || force));
                prop_assert_eq!(i128::from(plan.previous), i128::from(available));
                prop_assert_eq!(i128::from(plan.target), target);
                prop_assert_eq!(i128::from(plan.adjustment), adjustment);
                prop_assert_eq!(plan.goes_negative, negative);
                // Applying the plan's change lands exactly on its target.
                match plan.change("prop", force) {
                    None => prop_assert_eq!(adjustment, 0),
                    Some(change) => {
                        let now = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
                        let applied = account.apply(&change, now).unwrap();
                        prop_assert_eq!(applied.after.available, plan.target);
                        prop_assert_eq!(applied.entry.amount, plan.adjustment);
                        prop_assert_eq!(applied.entry.balance_before, available);
                        prop_assert_eq!(applied.after.seq, account.seq + 1);
                    }
                }
            }
            Err(e) if !fits => prop_assert_eq!(e.code(), "balance_overflow"),
            Err(e) => {
                prop_assert!(negative && !force, "{e:?}");
                prop_assert_eq!(e.code(), "insufficient_credits");
            }
        }
    }

    /// The body's rules: exactly one of target / delta (none only for check),
    /// target ≥ 0, a reason of 1–500 characters (optional for check), a known
    /// mode, force a boolean.
    #[test]
    fn adjust_bodies_follow_the_rules(
        target in prop::option::of(-5_i64..5),
        delta in prop::option::of(-5_i64..5),
        reason in prop::option::of(prop_oneof!["[a-z ]{0,3}", Just("x".repeat(501)), Just("é".repeat(500))]),
        mode in prop::option::of(prop::sample::select(vec!["apply", "dry_run", "check", "nope"])),
        force in prop::option::of(any::<bool>()),
    ) {
        let mut body = serde_json::Map::new();
        if let Some(t) = target { body.insert("target".into(), t.into()); }
        if let Some(d) = delta { body.insert("delta".into(), d.into()); }
        if let Some(r) = &reason { body.insert("reason".into(), r.clone().into()); }
        if let Some(m) = mode { body.insert("mode".into(), m.into()); }
        if let Some(f) = force { body.insert("force".into(), f.into()); }
        let text = serde_json::Value::Object(body).to_string();
        let parsed = from_str::<AdjustBody>(&text).and_then(AdjustRequest::from_body);

        let mode_ok = mode != Some("nope");
        let check = mode == Some("check");
        let one = target.is_some() != delta.is_some() || (check && target.is_none() && delta.is_none());
        let target_ok = target.is_none_or(|t| t >= 0);
        let reason_text = reason.clone().unwrap_or_default();
        let reason_ok = (!reason_text.trim().is_empty() && reason_text.chars().count() <= 500)
            || (check && reason_text.is_empty());
        let valid = mode_ok && one && target_ok && reason_ok;
        prop_assert_eq!(parsed.is_ok(), valid, "{}: {:?}", text, parsed);
        if let Ok(req) = parsed {
            prop_assert_eq!(req.force, force.unwrap_or(false));
            let expected_mode = match mode {
                Some("check") => AdjustMode::Check,
                Some("dry_run") => AdjustMode::DryRun,
                _ => AdjustMode::Apply,
            };
            prop_assert_eq!(req.mode, expected_mode);
            prop_assert_eq!(req.by, target.map(AdjustBy::Target).or(delta.map(AdjustBy::Delta)));
        } else if let Err(e) = parsed {
            prop_assert!(e.status().is_client_error());
        }
    }
}
