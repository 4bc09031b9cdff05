//! USD and credit amount parsers on any text: no panic (overflow checks on),
//! and what is accepted prints back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spendguard_core::domain::credits::parse_credits;
use spendguard_core::domain::Usd;
use spendguard_core::json::integer;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(v) = Usd::parse_text(text) {
        // The canonical form reads back to the same amount, through both readers.
        let printed = v.to_string();
        assert_eq!(Usd::parse_text(&printed), Ok(v), "{text:?}");
        assert_eq!(Usd::parse_non_negative(text), Ok(v), "{text:?}");
    }
    for parsed in [
        Usd::parse_signed(text),
        Usd::parse_non_negative(text),
        Usd::parse_stored(text),
    ] {
        if let Ok(v) = parsed {
            assert_eq!(Usd::parse_stored(&v.to_string()), Ok(v), "{text:?}");
        }
    }
    // A JSON string or number, as a request body carries it.
    let _ = serde_json::from_str::<Usd>(text);
    if let Ok(n) = integer(text) {
        assert_eq!(integer(&n.to_string()), Ok(n), "{text:?}");
    }
    if let Ok(n) = parse_credits("credits", text) {
        assert_eq!(n.to_string().parse::<i64>(), Ok(n));
    }
});
