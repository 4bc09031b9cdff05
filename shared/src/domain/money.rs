//! Exact USD amounts: fixed point with 10 fractional digits in an `i128`.
//!
//! No `f64` anywhere: JSON numbers are read from their source text, DynamoDB `N`
//! values are written and read as decimal text.

use crate::error::Error;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::fmt;
use std::str::FromStr;

/// Number of fractional digits every amount carries.
pub const SCALE: u32 = 10;
const ONE: i128 = 10_i128.pow(SCALE);
/// DynamoDB numbers hold 38 significant digits; stay well inside them.
const MAX_ATOMS: i128 = 10_i128.pow(36);
/// An amount given as input is below 10^18 USD (as a string: at most 18
/// integer digits), so sums of many stay far inside [`MAX_ATOMS`].
const MAX_INPUT_ATOMS: i128 = 10_i128.pow(28) - 1;
/// Significant digits of an amount given as input.
const MAX_INPUT_DIGITS: usize = 37;
/// Significant digits of a stored amount: DynamoDB keeps 38, and a counter
/// summed from valid inputs may use them all (every 38-digit count of atoms
/// fits an `i128`).
const MAX_STORED_DIGITS: usize = 38;

/// The text of an amount given as a JSON string in a request: the `UsdInput`
/// string pattern of `docs/openapi.yaml`, which a test keeps equal to this.
/// Plain digits, an optional point with 1-10 digits after it; no sign, space,
/// exponent or bare point; at most 18 integer digits (below 10^18 USD, the
/// input range of either form).
pub const USD_TEXT_PATTERN: &str = r"^[0-9]{1,18}(\.[0-9]{1,10})?$";
const MAX_TEXT_INT_DIGITS: usize = 18;

/// An exact amount of US dollars (may be negative internally, e.g. "remaining").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Usd(i128);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AmountError(pub String);

impl Usd {
    pub const ZERO: Usd = Usd(0);

    /// Amount from units of 10^-10 USD.
    pub const fn from_atoms(atoms: i128) -> Self {
        Usd(atoms)
    }

    pub const fn atoms(self) -> i128 {
        self.0
    }

    pub fn from_whole(dollars: i64) -> Self {
        Usd(dollars as i128 * ONE)
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    pub fn checked_add(self, other: Usd) -> Option<Usd> {
        self.0
            .checked_add(other.0)
            .filter(|v| v.abs() <= MAX_ATOMS)
            .map(Usd)
    }

    pub fn saturating_sub(self, other: Usd) -> Usd {
        Usd(self.0.saturating_sub(other.0))
    }

    /// Parses any decimal text (`"1.25"`, `"-3"`, `"1e-3"`), allowing negatives.
    /// Fails on more than 10 fractional digits, NaN/Infinity or out-of-range values.
    pub fn parse_signed(text: &str) -> Result<Self, AmountError> {
        Self::parse_in_range(text, MAX_INPUT_DIGITS, MAX_INPUT_ATOMS)
    }

    /// Parses an amount read back from the store, e.g. a usage counter: like
    /// [`Usd::parse_signed`], but up to DynamoDB's 38 significant digits. A sum
    /// of valid amounts can exceed the input range, and reading it must not
    /// fail: a quota item that cannot be read can be neither checked nor reset.
    pub fn parse_stored(text: &str) -> Result<Self, AmountError> {
        Self::parse_in_range(text, MAX_STORED_DIGITS, i128::MAX)
    }

    fn parse_in_range(text: &str, max_digits: usize, max_atoms: i128) -> Result<Self, AmountError> {
        let err = |why: &str| AmountError(format!("{text:?} is not a valid USD amount: {why}"));
        let t = text.trim();
        if t.is_empty() {
            return Err(err("empty"));
        }
        let (negative, t) = match t.as_bytes()[0] {
            b'-' => (true, &t[1..]),
            b'+' => (false, &t[1..]),
            _ => (false, t),
        };
        let (mantissa, exponent) = match t.find(['e', 'E']) {
            Some(i) => {
                let exp: i32 = t[i + 1..].parse().map_err(|_| err("bad exponent"))?;
                (&t[..i], exp)
            }
            None => (t, 0),
        };
        let (int_part, frac_part) = match mantissa.find('.') {
            Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
            None => (mantissa, ""),
        };
        if int_part.is_empty() && frac_part.is_empty()
            || !int_part.bytes().all(|b| b.is_ascii_digit())
            || !frac_part.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(err("not a decimal number"));
        }
        // digits * 10^(exponent - frac_len), as atoms = digits * 10^(SCALE + exponent - frac_len)
        let digits = format!("{int_part}{frac_part}");
        let digits = digits.trim_start_matches('0');
        let shift = SCALE as i64 + exponent as i64 - frac_part.len() as i64;
        let atoms: i128 = if digits.is_empty() {
            0
        } else if shift >= 0 {
            if digits.len() as i64 + shift > max_digits as i64 {
                return Err(err("too large"));
            }
            let base: i128 = digits.parse().map_err(|_| err("too large"))?;
            base.checked_mul(10_i128.pow(shift as u32))
                .ok_or_else(|| err("too large"))?
        } else {
            // Negative shift: only trailing zeros may be dropped.
            let drop = (-shift) as usize;
            if drop > digits.len() || !digits[digits.len() - drop..].bytes().all(|b| b == b'0') {
                return Err(err("more than 10 fractional digits"));
            }
            let kept = &digits[..digits.len() - drop];
            if kept.is_empty() {
                0
            } else {
                if kept.len() > max_digits {
                    return Err(err("too large"));
                }
                kept.parse().map_err(|_| err("too large"))?
            }
        };
        if atoms > max_atoms {
            return Err(err("too large"));
        }
        Ok(Usd(if negative { -atoms } else { atoms }))
    }

    /// Parses an amount sent as a JSON string: exactly [`USD_TEXT_PATTERN`],
    /// each refusal saying what is wrong. (A JSON number is read by its own
    /// grammar: [`Usd::parse_non_negative`].)
    pub fn parse_text(text: &str) -> Result<Self, AmountError> {
        let err = |why: &str| {
            AmountError(format!(
                "{text:?} is not a valid USD amount: {why} (write digits with at most 10 after a point, e.g. \"1.25\")"
            ))
        };
        if text.is_empty() {
            return Err(err("empty"));
        }
        if text.contains(|c: char| c.is_whitespace()) {
            return Err(err("it contains spaces"));
        }
        if text.starts_with(['+', '-']) {
            return Err(err(if text.starts_with('-') {
                "it is negative"
            } else {
                "it has a sign"
            }));
        }
        if text.contains(['e', 'E']) {
            return Err(err("it has an exponent"));
        }
        let (int_part, frac_part) = match text.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (text, None),
        };
        if !int_part.bytes().all(|b| b.is_ascii_digit())
            || !frac_part.is_none_or(|f| f.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(err("not a decimal number"));
        }
        if int_part.is_empty() {
            return Err(err("it needs a digit before the point"));
        }
        match frac_part {
            Some("") => return Err(err("it needs a digit after the point")),
            Some(f) if f.len() > SCALE as usize => {
                return Err(err("more than 10 fractional digits"))
            }
            _ => {}
        }
        if int_part.len() > MAX_TEXT_INT_DIGITS {
            return Err(err("more than 18 integer digits"));
        }
        Self::parse_non_negative(text)
    }

    /// Parses a non-negative amount in any decimal notation (a JSON number's
    /// source text, `1e-3` included).
    pub fn parse_non_negative(text: &str) -> Result<Self, AmountError> {
        let v = Self::parse_signed(text)?;
        if v.is_negative() {
            return Err(AmountError(format!("{text:?} is negative")));
        }
        Ok(v)
    }
}

impl fmt::Display for Usd {
    /// Canonical text: no exponent, trailing fractional zeros dropped (`"1.25"`, `"0"`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let int = abs / ONE as u128;
        let frac = abs % ONE as u128;
        if frac == 0 {
            write!(f, "{sign}{int}")
        } else {
            let frac = format!("{frac:010}");
            write!(f, "{sign}{int}.{}", frac.trim_end_matches('0'))
        }
    }
}

/// Text as a request would send it ([`Usd::parse_text`]).
impl FromStr for Usd {
    type Err = AmountError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_text(s)
    }
}

impl std::ops::Add for Usd {
    type Output = Usd;
    fn add(self, rhs: Usd) -> Usd {
        Usd(self.0 + rhs.0)
    }
}

impl std::ops::Sub for Usd {
    type Output = Usd;
    fn sub(self, rhs: Usd) -> Usd {
        Usd(self.0 - rhs.0)
    }
}

impl std::iter::Sum for Usd {
    fn sum<I: Iterator<Item = Usd>>(iter: I) -> Usd {
        iter.fold(Usd::ZERO, |a, b| a + b)
    }
}

impl Serialize for Usd {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Usd {
    /// Reads an amount from a request field's JSON value as sent: a JSON
    /// string ([`Usd::parse_text`]) or a JSON number, read from its exact
    /// source text (never through `f64`). Negative amounts are refused: every
    /// input amount is ≥ 0. A refusal is 400 `invalid_amount`.
    pub fn from_json(raw: &RawValue) -> Result<Self, Error> {
        let text = raw.get();
        let parsed = if text.starts_with('"') {
            match serde_json::from_str::<String>(text) {
                Ok(s) => Usd::parse_text(&s),
                Err(e) => Err(AmountError(format!("{text} is not a JSON string: {e}"))),
            }
        } else if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
            Usd::parse_non_negative(text)
        } else {
            Err(AmountError(format!("{text} is not a USD amount")))
        };
        parsed.map_err(|e| Error::InvalidAmount(e.0))
    }
}

/// [`Usd::from_json`] for readers outside request bodies (tools, tests); its
/// message names the error code. Request bodies keep the value raw in their
/// wire struct and call [`Usd::from_json`], which returns the code itself.
impl<'de> Deserialize<'de> for Usd {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw: Box<RawValue> = Deserialize::deserialize(d)?;
        Usd::from_json(&raw).map_err(|e| serde::de::Error::custom(format!("{}: {e}", e.code())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Usd, AmountError> {
        Usd::parse_signed(s)
    }

    #[test]
    fn parses_and_prints_canonically() {
        assert_eq!(p("1.25").unwrap().to_string(), "1.25");
        assert_eq!(p("0.0000012500").unwrap().to_string(), "0.00000125");
        assert_eq!(p("0").unwrap().to_string(), "0");
        assert_eq!(p("-3.5").unwrap().to_string(), "-3.5");
        assert_eq!(p("1e-3").unwrap().to_string(), "0.001");
        assert_eq!(p("1.5E2").unwrap().to_string(), "150");
        assert_eq!(p("0.0000000001").unwrap().atoms(), 1);
        assert_eq!(p(".5").unwrap().to_string(), "0.5");
        assert_eq!(p("12.").unwrap().to_string(), "12");
        assert_eq!(p("1.00000000000").unwrap().to_string(), "1");
    }

    #[test]
    fn refuses_bad_amounts() {
        for bad in [
            "",
            "NaN",
            "Infinity",
            "-",
            "1.2.3",
            "0.00000000001",
            "1e-11",
            "1e400",
            "1e38",
            "1e18",
            "1000000000000000000",
            "abc",
            "1,5",
            " ",
        ] {
            assert!(p(bad).is_err(), "{bad:?} should fail");
        }
        assert!(Usd::parse_non_negative("-1").is_err());
    }

    #[test]
    fn stored_amounts_read_up_to_dynamodb_precision() {
        // More than any input may carry, as a sum of inputs may be.
        let sum = "120000000000000000000000000";
        assert!(p(sum).is_err());
        assert_eq!(Usd::parse_stored(sum).unwrap().to_string(), sum);
        let widest = "9999999999999999999999999999.9999999999";
        assert_eq!(Usd::parse_stored(widest).unwrap().to_string(), widest);
        assert_eq!(
            Usd::parse_stored(&format!("-{widest}"))
                .unwrap()
                .to_string(),
            format!("-{widest}")
        );
        for bad in ["1e28", "0.00000000001", "NaN", ""] {
            assert!(Usd::parse_stored(bad).is_err(), "{bad:?}");
        }
    }

    /// The `UsdInput` string pattern of `docs/openapi.yaml`.
    fn openapi_usd_pattern() -> String {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.yaml");
        let doc: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let input = &doc["components"]["schemas"]["UsdInput"]["oneOf"];
        let strings: Vec<&str> = input
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|s| s["pattern"].as_str())
            .collect();
        assert_eq!(strings.len(), 1, "UsdInput has one string form: {input:?}");
        strings[0].to_string()
    }

    #[test]
    fn text_parser_accepts_exactly_the_openapi_pattern() {
        assert_eq!(openapi_usd_pattern(), USD_TEXT_PATTERN);
        let pattern = regex_lite::Regex::new(USD_TEXT_PATTERN).unwrap();
        let agree = |text: &str| {
            let parsed = Usd::parse_text(text);
            assert_eq!(
                parsed.is_ok(),
                pattern.is_match(text),
                "{text:?}: parser {parsed:?}, pattern {}",
                pattern.is_match(text)
            );
        };
        let table = [
            "0",
            "1",
            "1.25",
            "0.0000000001",
            "007",
            "1.0000000000",
            " 1",
            "1 ",
            "1\n",
            "\t1",
            "+1",
            "-1",
            "-0",
            ".5",
            "5.",
            ".",
            "1e2",
            "1E2",
            "1e-3",
            "NaN",
            "Infinity",
            "",
            "1.2.3",
            "1,5",
            "0x10",
            "1_000",
            "0.00000000001",
            "１",
            "٣",
            "999999999999999999.9999999999",
            "1000000000000000000",
            "000000000000000000",
            "0000000000000000001",
        ];
        for text in table {
            agree(text);
        }
        // Every string of up to 4 symbols over an alphabet that reaches each branch.
        let alphabet = ["0", "9", ".", "-", "+", "e", " ", "a"];
        let mut texts = vec![String::new()];
        for _ in 0..4 {
            texts = texts
                .iter()
                .flat_map(|t| alphabet.iter().map(move |c| format!("{t}{c}")))
                .collect();
            for t in &texts {
                agree(t);
            }
        }
    }

    #[test]
    fn text_refusals_say_what_is_wrong() {
        for (text, says) in [
            (" 1", "spaces"),
            ("+1", "sign"),
            ("-1", "negative"),
            (".5", "digit before the point"),
            ("5.", "digit after the point"),
            ("1e2", "exponent"),
            ("0.00000000001", "more than 10 fractional digits"),
        ] {
            let e = Usd::parse_text(text).unwrap_err().0;
            assert!(e.contains(says), "{text:?}: {e}");
        }
        // As a JSON string (a request field) the same, with the amount's code.
        let e = serde_json::from_str::<Usd>("\" 1\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("invalid_amount: ") && e.contains("spaces"),
            "{e}"
        );
        // As a JSON number, the JSON grammar decides: exponents are numbers.
        assert_eq!(
            serde_json::from_str::<Usd>("1e2").unwrap().to_string(),
            "100"
        );
    }

    #[test]
    fn json_number_and_string_are_exact() {
        let v: Usd = serde_json::from_str("0.1").unwrap();
        assert_eq!(v.atoms(), 1_000_000_000);
        let v: Usd = serde_json::from_str("\"123456789012.0000000001\"").unwrap();
        assert_eq!(v.to_string(), "123456789012.0000000001");
        let e = serde_json::from_str::<Usd>("-1").unwrap_err().to_string();
        assert!(e.starts_with("invalid_amount: "), "{e}");
        assert!(serde_json::from_str::<Usd>("true").is_err());
        assert!(serde_json::from_str::<Usd>("0.00000000001").is_err());
        assert_eq!(
            serde_json::to_string(&p("2.50").unwrap()).unwrap(),
            "\"2.5\""
        );
    }

    #[test]
    fn sums_tiny_amounts_exactly() {
        let tiny = p("0.0000000001").unwrap();
        let total: Usd = std::iter::repeat_n(tiny, 100_000).sum();
        assert_eq!(total.to_string(), "0.00001");
    }
}
