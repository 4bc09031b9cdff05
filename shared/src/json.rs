//! The one JSON reader of every request body and usage event.
//!
//! serde_json keeps the last of two equal keys when it reads a map (and a
//! struct refuses them, but only at its own level, and only for known fields),
//! so `{"delta": 5, "delta": -1000000}` would mean whatever the last key says
//! while a log or a proxy shows the first. [`from_slice`] refuses a duplicate
//! key in any object at any depth before it parses the body into its type.
//!
//! A struct is read only from a JSON object: serde_json alone also fills a
//! struct from an array of its fields in order (`{"openai": [null, "5"]}`
//! would set a weekly limit), which no document describes.
//!
//! Non-nullable optional fields use [`non_null`]: absent means "not given",
//! `null` is refused (serde's `Option` would read both as `None`).

use crate::error::Error;
use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use std::collections::HashSet;
use std::fmt;

/// Parses a JSON body into `T`, a wire struct: a duplicate key anywhere, or
/// anything else serde refuses (syntax, a missing field, a wrong type) → 400
/// `invalid_request`. Values with codes of their own (amounts, ids) stay raw
/// in `T` and are read by the domain type's `TryFrom` or parser, which
/// returns its own error.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let raw: &RawValue = serde_json::from_slice(bytes).map_err(malformed)?;
    check_unique_keys(raw, &mut Vec::new())?;
    let mut de = serde_json::Deserializer::from_str(raw.get());
    let value = T::deserialize(ObjectsOnly(&mut de)).map_err(malformed)?;
    de.end().map_err(malformed)?;
    Ok(value)
}

fn malformed(err: serde_json::Error) -> Error {
    Error::InvalidRequest(format!("malformed JSON body: {err}"))
}

/// [`from_slice`] of a text body.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, Error> {
    from_slice(text.as_bytes())
}

/// An object's entries in body order, values unparsed (so a number such as
/// `1e400` is not read here: its field's own parser reports it).
struct Entries<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Entries<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = Entries<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries<'de>, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    entries.push((key, map.next_value::<&'de RawValue>()?));
                }
                Ok(Entries(entries))
            }
        }
        d.deserialize_map(EntriesVisitor)
    }
}

fn check_unique_keys(raw: &RawValue, path: &mut Vec<String>) -> Result<(), Error> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'{') => {
            let Entries(entries) = serde_json::from_str(text).map_err(malformed)?;
            let mut seen = HashSet::with_capacity(entries.len());
            for (key, value) in entries {
                if !seen.insert(key.clone()) {
                    let at = if path.is_empty() {
                        String::new()
                    } else {
                        format!(" in {}", path.join("."))
                    };
                    return Err(Error::InvalidRequest(format!(
                        "malformed JSON body: duplicate key {key:?}{at}"
                    )));
                }
                path.push(key);
                check_unique_keys(value, path)?;
                path.pop();
            }
            Ok(())
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text).map_err(malformed)?;
            for (i, item) in items.into_iter().enumerate() {
                path.push(i.to_string());
                check_unique_keys(item, path)?;
                path.pop();
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A deserializer that reads every struct, at any depth, with
/// `deserialize_map` (a JSON object) and forwards everything else.
struct ObjectsOnly<D>(D);
struct Visit<V>(V);
struct Seed<S>(S);
struct Access<A>(A);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<S> {
    type Value = S::Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(ObjectsOnly(d))
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Access<A> {
    type Error = A::Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        k: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(Seed(k))
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, v: V) -> Result<V::Value, A::Error> {
        self.0.next_value_seed(Seed(v))
    }
    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Access<A> {
    type Error = A::Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        t: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(Seed(t))
    }
    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

macro_rules! forward_visits {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.0.$method(v)
        })*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Visit<V> {
    type Value = V::Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.0.expecting(f)
    }
    forward_visits!(
        visit_bool(bool),
        visit_i64(i64),
        visit_i128(i128),
        visit_u64(u64),
        visit_u128(u128),
        visit_f64(f64),
        visit_str(&str),
        visit_borrowed_str(&'de str),
        visit_string(String),
        visit_bytes(&[u8]),
        visit_borrowed_bytes(&'de [u8]),
        visit_byte_buf(Vec<u8>),
    );
    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_none()
    }
    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_unit()
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.0.visit_some(ObjectsOnly(d))
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.0.visit_newtype_struct(ObjectsOnly(d))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.0.visit_seq(Access(seq))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.0.visit_map(Access(map))
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        // Only unit variants (from strings) occur in bodies: nothing nested.
        self.0.visit_enum(data)
    }
}

macro_rules! forward_deserialize {
    ($($method:ident),* $(,)?) => {
        $(fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, D::Error> {
            self.0.$method(Visit(v))
        })*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for ObjectsOnly<D> {
    type Error = D::Error;
    forward_deserialize!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_option,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any,
    );
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_unit_struct(name, Visit(v))
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_newtype_struct(name, Visit(v))
    }
    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(len, Visit(v))
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple_struct(name, len, Visit(v))
    }
    /// The point of the wrapper: a struct is a JSON object, never an array.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(Visit(v))
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_enum(name, variants, Visit(v))
    }
    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// Why a JSON value is not a 64-bit integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotAnInteger {
    /// Not a JSON number at all.
    NotANumber,
    /// A number with a fractional part (`1.5`, `1e-3`).
    Fraction,
    /// A whole number outside `i64` (`1e400`).
    OutOfRange,
}

/// Reads a JSON value's source text as an `i64`, exactly (never through
/// `f64`). A whole number is an integer however it is spelled, as JSON
/// Schema's `integer` says: `100`, `100.0`, `1e2` and `1.00e2` are 100, and
/// `-0` is 0.
pub fn integer(text: &str) -> Result<i64, NotAnInteger> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if !unsigned.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(NotAnInteger::NotANumber);
    }
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (unsigned, None),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    // The callers pass a JSON number's text, but this is a public reader: any
    // other text is no number (cargo fuzz found the byte slicing below
    // panicking inside a multi-byte character).
    let exponent_digits = exponent.map(|e| e.strip_prefix(['+', '-']).unwrap_or(e));
    if !int_part
        .bytes()
        .chain(frac_part.bytes())
        .all(|b| b.is_ascii_digit())
        || exponent_digits.is_some_and(|e| e.is_empty() || !e.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(NotAnInteger::NotANumber);
    }
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Ok(0);
    }
    // value = digits × 10^(exponent − fractional digits). An exponent too long
    // for an i64 is a fraction (negative) or far out of range (positive).
    let exponent = match exponent.map_or(Ok(0), |e| e.parse::<i64>()) {
        Ok(e) => e,
        Err(_) if exponent.is_some_and(|e| e.starts_with('-')) => {
            return Err(NotAnInteger::Fraction)
        }
        Err(_) => return Err(NotAnInteger::OutOfRange),
    };
    let shift = exponent.saturating_sub(frac_part.len() as i64);
    let whole = if shift < 0 {
        let drop = usize::try_from(shift.unsigned_abs()).unwrap_or(usize::MAX);
        if drop >= digits.len() || digits[digits.len() - drop..].bytes().any(|b| b != b'0') {
            return Err(NotAnInteger::Fraction);
        }
        digits[..digits.len() - drop].to_string()
    } else {
        // More than 19 digits is out of range (so the zeros are never built).
        // Checked: an exponent near i64::MAX (`1e9223372036854775807`) would
        // wrap and build that many zeros (found by cargo fuzz).
        if (digits.len() as i64)
            .checked_add(shift)
            .is_none_or(|n| n > 19)
        {
            return Err(NotAnInteger::OutOfRange);
        }
        format!("{digits}{}", "0".repeat(shift as usize))
    };
    let magnitude: i128 = whole.parse().map_err(|_| NotAnInteger::OutOfRange)?;
    i64::try_from(if negative { -magnitude } else { magnitude })
        .map_err(|_| NotAnInteger::OutOfRange)
}

/// `#[serde(deserialize_with = "crate::json::whole")]` on an integer field
/// (`i64`, `u32`, ...): any spelling of a whole number ([`integer`]); a
/// fraction or a value outside the field's type is refused.
pub fn whole<'de, D: Deserializer<'de>, T: TryFrom<i64>>(d: D) -> Result<T, D::Error> {
    let raw = <&RawValue>::deserialize(d)?;
    let text = raw.get();
    let value = integer(text).map_err(|why| {
        de::Error::custom(match why {
            NotAnInteger::NotANumber => format!("invalid type: {text}, expected an integer"),
            NotAnInteger::Fraction => format!("expected a whole number, got {text}"),
            NotAnInteger::OutOfRange => format!("{text} is out of range"),
        })
    })?;
    T::try_from(value).map_err(|_| de::Error::custom(format!("{text} is out of range")))
}

/// `#[serde(default, deserialize_with = "crate::json::non_null")]` on an
/// `Option<T>` field that may be omitted but is not nullable: `null` is refused
/// with `T`'s own "expected ..." error, absent stays `None`.
pub fn non_null<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn code(text: &str) -> Result<Value, String> {
        from_str::<Value>(text).map_err(|e| format!("{}: {e}", e.code()))
    }

    #[test]
    fn refuses_duplicate_keys_at_any_depth() {
        for (body, key) in [
            (r#"{"delta":5,"delta":-1000000,"reason":"x"}"#, "\"delta\""),
            (r#"{"a":{"b":1,"b":2}}"#, "\"b\" in a"),
            (r#"{"q":[{"p":1},{"p":1,"p":2}]}"#, "\"p\" in q.1"),
            // Escapes do not hide a duplicate: "\u0061" is "a".
            (r#"{"a":1,"\u0061":2}"#, "\"a\""),
        ] {
            let err = code(body).unwrap_err();
            assert!(
                err.starts_with("invalid_request: ")
                    && err.contains(&format!("duplicate key {key}")),
                "{body}: {err}"
            );
        }
    }

    #[test]
    fn reads_everything_else_as_serde_json_does() {
        assert_eq!(
            code(r#" {"a":{"b":1},"b":[{"a":1},{"a":2}],"c":"\"a\":1,\"a\":2"} "#).unwrap(),
            serde_json::json!({"a":{"b":1},"b":[{"a":1},{"a":2}],"c":"\"a\":1,\"a\":2"})
        );
        // A number serde_json cannot hold is left to the field's parser.
        let raw: std::collections::BTreeMap<String, Box<RawValue>> =
            from_str(r#"{"delta":1e400,"x":{"y":-0}}"#).unwrap();
        assert_eq!(raw["delta"].get(), "1e400");
        for bad in ["", "{", "{\"a\":1,}", "[1 2]", "nul"] {
            assert!(
                code(bad).unwrap_err().starts_with("invalid_request: "),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_struct_is_an_object_not_an_array() {
        #[derive(Debug, Deserialize)]
        struct Limits {
            #[serde(default)]
            daily: Option<String>,
            #[serde(default)]
            weekly: Option<String>,
        }
        #[derive(Debug, Deserialize)]
        struct Body {
            limits: Vec<Limits>,
            raw: Option<Box<RawValue>>,
        }
        let b: Body = from_str(r#"{"limits":[{"weekly":"5"}],"raw":{"a":[1e400]}}"#).unwrap();
        assert_eq!(b.limits[0].weekly.as_deref(), Some("5"));
        assert_eq!(b.limits[0].daily, None);
        assert_eq!(b.raw.unwrap().get(), r#"{"a":[1e400]}"#);
        // serde_json alone reads these as the fields in order.
        assert!(serde_json::from_str::<Body>(r#"{"limits":[[null,"5"]],"raw":null}"#).is_ok());
        for body in [
            r#"{"limits":[[null,"5"]],"raw":null}"#,
            r#"[[{"weekly":"5"}],null]"#,
        ] {
            let err = from_str::<Body>(body).unwrap_err();
            assert_eq!(err.code(), "invalid_request", "{body}: {err}");
        }
    }

    #[test]
    fn integers_are_whole_numbers_however_spelled() {
        for (text, value) in [
            ("0", 0),
            ("-0", 0),
            ("-0.0e5", 0),
            ("0e99999999999999999999", 0),
            ("1.0", 1),
            ("1e2", 100),
            ("1.50E2", 150),
            ("100e-2", 1),
            ("9223372036854775807.0", i64::MAX),
            ("-9223372036854775808", i64::MIN),
            ("-92233720368547758.08e2", i64::MIN),
        ] {
            assert_eq!(integer(text), Ok(value), "{text}");
        }
        for (text, why) in [
            ("1.5", NotAnInteger::Fraction),
            ("1e-2", NotAnInteger::Fraction),
            ("1e-99999999999999999999", NotAnInteger::Fraction),
            ("9007199254740993.1", NotAnInteger::Fraction),
            ("1e400", NotAnInteger::OutOfRange),
            ("1e99999999999999999999", NotAnInteger::OutOfRange),
            ("9223372036854775808", NotAnInteger::OutOfRange),
            ("-9223372036854775809", NotAnInteger::OutOfRange),
            ("\"1\"", NotAnInteger::NotANumber),
            ("true", NotAnInteger::NotANumber),
            ("null", NotAnInteger::NotANumber),
        ] {
            assert_eq!(integer(text), Err(why), "{text}");
        }
        #[derive(Deserialize)]
        struct Body {
            #[serde(deserialize_with = "whole")]
            count: u32,
        }
        assert_eq!(from_str::<Body>(r#"{"count": 857.0}"#).unwrap().count, 857);
        for bad in [
            r#"{"count": 1.5}"#,
            r#"{"count": -1}"#,
            r#"{"count": "1"}"#,
            r#"{"count": 1e10}"#,
        ] {
            assert_eq!(
                from_str::<Body>(bad).err().unwrap().code(),
                "invalid_request",
                "{bad}"
            );
        }
    }

    #[test]
    fn non_null_refuses_null_but_not_absence() {
        #[derive(Deserialize)]
        struct Body {
            #[serde(default, deserialize_with = "non_null")]
            at: Option<String>,
        }
        assert_eq!(from_str::<Body>("{}").unwrap().at, None);
        assert_eq!(
            from_str::<Body>(r#"{"at":"x"}"#).unwrap().at.as_deref(),
            Some("x")
        );
        let err = from_str::<Body>(r#"{"at":null}"#).err().unwrap();
        assert_eq!(err.code(), "invalid_request");
        assert!(err.to_string().contains("null"), "{err}");
    }
}
