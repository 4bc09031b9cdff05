//! The one JSON reader of every request body and usage event.
//!
//! serde_json keeps the last of two equal keys when it reads a map (and a
//! struct refuses them, but only at its own level, and only for known fields),
//! so `{"delta": 5, "delta": -1000000}` would mean whatever the last key says
//! while a log or a proxy shows the first. [`from_slice`] refuses a duplicate
//! key in any object at any depth before it parses the body into its type.
//!
//! Non-nullable optional fields use [`non_null`]: absent means "not given",
//! `null` is refused (serde's `Option` would read both as `None`).

use crate::error::Error;
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use std::collections::HashSet;
use std::fmt;

/// Parses a JSON body into `T`: a duplicate key anywhere → 400
/// `invalid_request`; any other error as [`Error::from_json`] maps it.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let raw: &RawValue = serde_json::from_slice(bytes).map_err(Error::from_json)?;
    check_unique_keys(raw, &mut Vec::new())?;
    serde_json::from_str(raw.get()).map_err(Error::from_json)
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
    let malformed = |e: serde_json::Error| Error::from_json(e);
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
