//! Ids: the contract's alphabet, 1–128 characters; codes match
//! case-insensitively under one normal form; reservation ids carry their hold.

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use spendguard_core::domain::redemption::CodeKey;
use spendguard_core::domain::reservation::{Hold, ReservationId, PENDING_SHARDS};
use spendguard_core::domain::{validate_id, EventId, Usd, UserId};

const ID_PATTERN: &str = r"^[A-Za-z0-9._:@-]{1,128}$";

fn id_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9._:@-]{0,130}",
        "[A-Za-z0-9._:@ /#%\\-]{0,10}",
        any::<String>(),
        "[A-Za-z0-9]{120,140}",
    ]
}

proptest! {
    #[test]
    fn an_id_is_valid_exactly_when_the_pattern_matches(text in id_like()) {
        let valid = regex_lite::Regex::new(ID_PATTERN).unwrap().is_match(&text);
        let result = validate_id("user_id", &text);
        prop_assert_eq!(result.is_ok(), valid, "{:?}", text);
        if let Err(e) = result {
            prop_assert_eq!(e.code(), "invalid_id");
        }
        prop_assert_eq!(UserId::parse(&text).is_ok(), valid);
        prop_assert_eq!(EventId::parse(&text).is_ok(), valid);
        // As JSON (the body readers), the same rule and the same code.
        let json = serde_json::to_string(&text).unwrap();
        match serde_json::from_str::<UserId>(&json) {
            Ok(id) => {
                prop_assert!(valid);
                prop_assert_eq!(id.as_str(), text.as_str());
                prop_assert_eq!(serde_json::to_string(&id).unwrap(), json);
            }
            Err(e) => {
                prop_assert!(!valid);
                prop_assert!(e.to_string().starts_with("invalid_id"), "{}", e);
            }
        }
    }

    #[test]
    fn codes_match_case_insensitively_and_normalise_once(code in "[A-Za-z0-9-]{1,40}") {
        let key = CodeKey::parse(&code).unwrap();
        prop_assert_eq!(&CodeKey::parse(&code.to_ascii_lowercase()).unwrap(), &key);
        prop_assert_eq!(&CodeKey::parse(&code.to_ascii_uppercase()).unwrap(), &key);
        // The normal form is a fixed point, and has no look-alikes left.
        if !key.as_str().is_empty() {
            prop_assert_eq!(&CodeKey::parse(key.as_str()).unwrap(), &key);
        }
        prop_assert!(!key.as_str().contains(['-', 'I', 'L', 'O', 'i', 'l', 'o']), "{}", key);
    }

    #[test]
    fn reservation_ids_carry_their_hold(
        ms in 0_i64..4_102_444_800_000,
        atoms in 0_i128..10_i128.pow(28),
        credits in 0_i64..i64::MAX,
        nonce in "[A-Za-z0-9]{1,32}",
    ) {
        let at = Utc.timestamp_millis_opt(ms).unwrap();
        let id = ReservationId::new(at, Usd::from_atoms(atoms), credits, &nonce);
        prop_assert!(ReservationId::parse(id.as_str()).is_ok(), "{}", id.as_str());
        let hint = id.hint().expect("our own id");
        prop_assert_eq!(hint.created_at, at);
        prop_assert_eq!(hint.estimate, Usd::from_atoms(atoms));
        prop_assert_eq!(hint.credits, credits);
    }

    /// A usage event names its reservation by id (client input): whatever
    /// the id says, reading the hold it describes never panics.
    #[test]
    fn any_reservation_id_is_safe_to_read(
        ms in prop_oneof![
            any::<i64>(),
            // Every instant chrono can represent, its ends included.
            DateTime::<Utc>::MIN_UTC.timestamp_millis()..=DateTime::<Utc>::MAX_UTC.timestamp_millis(),
            Just(DateTime::<Utc>::MAX_UTC.timestamp_millis()),
            Just(DateTime::<Utc>::MIN_UTC.timestamp_millis()),
        ],
        atoms in any::<i128>(),
        credits in any::<i64>(),
        tz in crate::gen::tricky_zone(),
    ) {
        let id = ReservationId::parse(&format!("rsv-{ms}-{atoms}-{credits}-n")).unwrap();
        if let Some(hint) = id.hint() {
            let hold = Hold::from_hint(&hint, tz);
            prop_assert_eq!(hold.estimate.atoms(), atoms);
        }
        prop_assert!(id.shard() < PENDING_SHARDS);
    }
}
