//! Reservation headroom arithmetic: an admission holds an estimate exactly
//! when every limited window has `usage + reserved + estimate ≤ limit` (and
//! room left), a limit of 0 disables, a window that rolled over counts from
//! nothing; the headroom the store keeps is `limit − usage − reserved`; credit
//! holds never exceed the balance not already held.

use proptest::prelude::*;
use spendguard_core::domain::reservation::{
    plan_admission, plan_credit_hold, CreditHold, HoldWrite, Refusal, StoredAccount, StoredWindow,
};
use spendguard_core::domain::Usd;

const CURRENT: [i64; 3] = [1_000, 900, 800];

fn usd() -> impl Strategy<Value = Usd> {
    prop_oneof![
        (0_i128..50).prop_map(|d| Usd::from_atoms(d * 10_000_000_000)),
        (0_i128..10_i128.pow(14)).prop_map(Usd::from_atoms),
    ]
}

/// A stored window: current, older (rolled over), newer or absent; its
/// headroom kept exactly, stale (written before), or missing.
fn window() -> impl Strategy<Value = (StoredWindow, u8)> {
    (
        prop::option::of(usd()),
        usd(),
        usd(),
        0_u8..4,
        0_u8..3,
        usd(),
    )
        .prop_map(|(limit, usage, reserved, when, headroom, stale)| {
            let mut w = StoredWindow {
                limit,
                usage,
                reserved,
                headroom: None,
                start: None,
            };
            w.headroom = match headroom {
                0 => Some(w.exact_headroom()),
                1 => Some(stale),
                _ => None,
            };
            (w, when)
        })
}

fn place(w: &mut StoredWindow, when: u8, current: i64) {
    w.start = match when {
        0 => Some(current),
        1 => Some(current - 86_400),
        2 => Some(current + 60),
        _ => None,
    };
}

proptest! {
    #[test]
    fn admission_is_exactly_the_sum_rule(
        windows in [window(), window(), window()],
        estimate in usd(),
        item in any::<bool>(),
    ) {
        let mut stored = [StoredWindow::default(); 3];
        for w in 0..3 {
            stored[w] = windows[w].0;
            place(&mut stored[w], windows[w].1, CURRENT[w]);
        }
        let plan = plan_admission(Some(item.then_some(&stored)), CURRENT, estimate);
        let effective: Vec<StoredWindow> = if item { stored.to_vec() } else { vec![StoredWindow::default(); 3] };
        let disabled = effective.iter().any(|w| w.limit == Some(Usd::ZERO));
        let exhausted = effective.iter().enumerate().any(|(i, w)| {
            let Some(limit) = w.limit else { return false };
            // A window that rolled over (or was never written) starts empty.
            let current = w.start.is_some_and(|s| s >= CURRENT[i]);
            let (usage, reserved) = if current { (w.usage, w.reserved) } else { (Usd::ZERO, Usd::ZERO) };
            let room = limit - usage - reserved;
            room < estimate || room <= Usd::ZERO
        });
        match plan {
            Err(Refusal::Disabled) => prop_assert!(disabled),
            Err(Refusal::Exhausted) => prop_assert!(!disabled && exhausted),
            Err(Refusal::InsufficientCredits) => prop_assert!(false, "quota plans never refuse credits"),
            Ok(writes) => {
                prop_assert!(!disabled && !exhausted);
                for (i, write) in writes.iter().enumerate() {
                    let w = effective[i];
                    match *write {
                        // The steady-state add (condition `headroom ≥ estimate`)
                        // only where the stored headroom is exact or no limit binds.
                        HoldWrite::Add { start } => {
                            prop_assert!(w.limit.is_none() || w.headroom == Some(w.exact_headroom()));
                            prop_assert!(start >= CURRENT[i]);
                            if let (Some(limit), Some(h)) = (w.limit, w.headroom) {
                                let after = h - estimate;
                                prop_assert_eq!(after, limit - w.usage - (w.reserved + estimate));
                                prop_assert!(after >= Usd::ZERO);
                            }
                        }
                        HoldWrite::Exact { start, rollover, stored } => {
                            prop_assert_eq!(stored, w);
                            prop_assert_eq!(rollover, w.start.is_none_or(|s| s < CURRENT[i]));
                            if rollover {
                                prop_assert_eq!(start, CURRENT[i]);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Unread (the steady state): a plain add in the current windows.
    #[test]
    fn unread_admission_adds_in_the_current_windows(estimate in usd()) {
        let plan = plan_admission(None, CURRENT, estimate).unwrap();
        prop_assert_eq!(plan, CURRENT.map(|start| HoldWrite::Add { start }));
    }

    #[test]
    fn credit_holds_never_exceed_the_free_balance(
        available in any::<i64>(),
        held in 0_i64..=i64::MAX,
        spendable_exact in any::<bool>(),
        credits in 0_i64..=i64::MAX,
    ) {
        let free = i128::from(available) - i128::from(held);
        let account = StoredAccount {
            available,
            held,
            spendable: spendable_exact.then(|| available.saturating_sub(held)),
        };
        let plan = plan_credit_hold(Some(Some(&account)), credits);
        if free < i128::from(credits) {
            prop_assert_eq!(plan, Err(Refusal::InsufficientCredits));
        } else {
            let plan = plan.unwrap();
            prop_assert_eq!(plan == CreditHold::Add, spendable_exact);
        }
        // No account is a balance of 0: only a hold of nothing would fit, and
        // a reservation without credits takes no hold.
        prop_assert_eq!(plan_credit_hold(Some(None), credits.max(1)), Err(Refusal::InsufficientCredits));
    }
}
