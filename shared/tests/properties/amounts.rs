//! USD amounts and credit amounts: parse ∘ format is the identity, and the
//! text parser accepts exactly what the OpenAPI pattern accepts.

use proptest::prelude::*;
use spendguard_core::domain::credits::{json_credits, parse_credits};
use spendguard_core::domain::money::USD_TEXT_PATTERN;
use spendguard_core::domain::Usd;
use spendguard_core::json::{integer, NotAnInteger};

/// Atoms (10^-10 USD) of any amount a request may carry: below 10^18 USD.
fn input_atoms() -> impl Strategy<Value = i128> {
    prop_oneof![
        0_i128..1_000_000_000_000,
        0_i128..10_i128.pow(28),
        (0_u32..28).prop_map(|e| 10_i128.pow(e)),
        (1_u32..29).prop_map(|e| 10_i128.pow(e) - 1),
    ]
}

/// Text close to an amount: digits, points, signs, exponents, spaces, and
/// now and then any character at all.
fn amount_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        8 => "[0-9]{1,20}",
        2 => Just(".".to_string()),
        1 => Just("-".to_string()),
        1 => Just("+".to_string()),
        1 => Just("e".to_string()),
        1 => Just("E".to_string()),
        1 => Just(" ".to_string()),
        1 => Just("0".repeat(12)),
        1 => any::<char>().prop_map(|c| c.to_string()),
    ];
    prop::collection::vec(piece, 0..6).prop_map(|p| p.concat())
}

/// The exact value of a decimal text `int.frac` in atoms, if representable.
fn reference_atoms(int: &str, frac: &str) -> Option<i128> {
    if frac.len() > 10 {
        return None;
    }
    let digits = format!("{int}{frac:0<10}");
    digits.parse::<i128>().ok()
}

proptest! {
    #[test]
    fn usd_format_then_parse_is_the_identity(atoms in input_atoms()) {
        let v = Usd::from_atoms(atoms);
        let text = v.to_string();
        prop_assert!(regex_lite::Regex::new(USD_TEXT_PATTERN).unwrap().is_match(&text), "{}", text);
        prop_assert_eq!(Usd::parse_text(&text), Ok(v));
        prop_assert_eq!(Usd::parse_non_negative(&text), Ok(v));
        prop_assert_eq!(Usd::parse_stored(&text), Ok(v));
        // As a JSON string and as a JSON number.
        prop_assert_eq!(serde_json::from_str::<Usd>(&format!("\"{text}\"")).unwrap(), v);
        prop_assert_eq!(serde_json::from_str::<Usd>(&text).unwrap(), v);
        // Serialised: the same canonical text.
        prop_assert_eq!(serde_json::to_string(&v).unwrap(), format!("\"{text}\""));
    }

    #[test]
    fn signed_amounts_round_trip(atoms in input_atoms(), negative in any::<bool>()) {
        let v = Usd::from_atoms(if negative { -atoms } else { atoms });
        prop_assert_eq!(Usd::parse_signed(&v.to_string()), Ok(v));
    }

    #[test]
    fn usd_text_is_accepted_exactly_when_the_openapi_pattern_matches(text in amount_like()) {
        let pattern = regex_lite::Regex::new(USD_TEXT_PATTERN).unwrap();
        let parsed = Usd::parse_text(&text);
        prop_assert_eq!(parsed.is_ok(), pattern.is_match(&text), "{:?}: {:?}", text, parsed);
        if let Ok(v) = parsed {
            let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
            prop_assert_eq!(Some(v.atoms()), reference_atoms(int, frac));
            // The JSON string form is the same reader.
            let json = serde_json::to_string(&text).unwrap();
            prop_assert_eq!(serde_json::from_str::<Usd>(&json).unwrap(), v);
        } else {
            let json = serde_json::to_string(&text).unwrap();
            prop_assert!(serde_json::from_str::<Usd>(&json).is_err());
        }
    }

    /// A JSON number in any notation is its exact value, or refused when it has
    /// more than 10 fractional digits or is 10^18 or more; never rounded.
    #[test]
    fn usd_numbers_in_exponent_notation_are_exact(
        digits in "[1-9][0-9]{0,15}",
        frac in "[0-9]{0,12}",
        exp in -30_i32..30,
    ) {
        let text = if frac.is_empty() { format!("{digits}e{exp}") } else { format!("{digits}.{frac}e{exp}") };
        // value = digits.frac × 10^exp = all digits × 10^(exp − |frac|); in atoms × 10^10.
        let all: i128 = format!("{digits}{frac}").parse().unwrap();
        let shift = 10 + exp - frac.len() as i32;
        let expected = if shift >= 0 {
            10_i128.checked_pow(shift as u32).and_then(|p| all.checked_mul(p))
        } else {
            let p = 10_i128.pow((-shift) as u32);
            (all % p == 0).then_some(all / p)
        }
        .filter(|a| *a < 10_i128.pow(28));
        let parsed = serde_json::from_str::<Usd>(&text);
        prop_assert_eq!(parsed.ok().map(Usd::atoms), expected, "{}", text);
    }

    #[test]
    fn integers_round_trip_in_every_spelling(n in any::<i64>(), zeros in 0_usize..5) {
        prop_assert_eq!(integer(&n.to_string()), Ok(n));
        prop_assert_eq!(parse_credits("credits", &n.to_string()).ok(), Some(n));
        // 100 = 100.0 = 1e2 = 100.00e0 = 10000e-2.
        prop_assert_eq!(integer(&format!("{n}.{}", "0".repeat(zeros.max(1)))), Ok(n));
        prop_assert_eq!(integer(&format!("{n}e0")), Ok(n));
        prop_assert_eq!(integer(&format!("{n}{}e-{zeros}", "0".repeat(zeros))), Ok(n));
        let raw = serde_json::value::RawValue::from_string(n.to_string()).unwrap();
        prop_assert_eq!(json_credits("credits", &raw).ok(), Some(n));
    }

    #[test]
    fn integers_refuse_fractions_and_out_of_range(n in any::<i64>(), d in 1_u8..10) {
        prop_assert_eq!(integer(&format!("{n}.{d}")), Err(NotAnInteger::Fraction));
        let beyond = if n < 0 {
            i128::from(i64::MIN) - i128::from(d)
        } else {
            i128::from(i64::MAX) + i128::from(d)
        };
        prop_assert_eq!(integer(&beyond.to_string()), Err(NotAnInteger::OutOfRange));
        prop_assert!(parse_credits("credits", &beyond.to_string()).is_err());
    }

    /// Exponents at the ends of i64: out of range or a fraction, never an
    /// overflow (cargo fuzz found `1000.0e9223372036854775807` wrapping).
    #[test]
    fn integer_exponents_at_the_extremes(
        digits in "[1-9][0-9]{0,5}",
        frac in "[0-9]{0,3}",
        exp in prop_oneof![Just(i64::MAX), Just(i64::MIN), (i64::MAX - 100)..=i64::MAX, i64::MIN..(i64::MIN + 100)],
    ) {
        let text = if frac.is_empty() { format!("{digits}e{exp}") } else { format!("{digits}.{frac}e{exp}") };
        let expected = if exp > 0 { NotAnInteger::OutOfRange } else { NotAnInteger::Fraction };
        prop_assert_eq!(integer(&text), Err(expected), "{}", text);
        let body = format!("{{\"delta\": {text}, \"reason\": \"x\"}}");
        let parsed = spendguard_core::json::from_str::<spendguard_core::domain::credits::AdjustBody>(&body)
            .and_then(spendguard_core::domain::credits::AdjustRequest::from_body);
        prop_assert_eq!(parsed.unwrap_err().code(), "invalid_amount");
    }

    /// Any text that is no number is refused as such, never a panic (cargo
    /// fuzz found a multi-byte character after a digit panicking).
    #[test]
    fn integer_reads_only_numbers(digit in "[0-9-]", rest in any::<String>()) {
        let text = format!("{digit}{rest}");
        let number = regex_lite::Regex::new(r"^-?[0-9]+(\.[0-9]*)?([eE][+-]?[0-9]+)?$").unwrap();
        if !number.is_match(&text) {
            prop_assert_eq!(integer(&text), Err(NotAnInteger::NotANumber), "{:?}", text);
        }
    }

    #[test]
    fn credit_text_is_an_integer_exactly_when_it_reads_as_one(text in amount_like()) {
        let t = text.trim();
        let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
        let looks = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
        let parsed = parse_credits("credits", &text);
        prop_assert_eq!(parsed.is_ok(), looks && t.parse::<i64>().is_ok(), "{:?}", text);
        if let Err(e) = parsed {
            prop_assert_eq!(e.code(), "invalid_amount");
        }
    }
}
