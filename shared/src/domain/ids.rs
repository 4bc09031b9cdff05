//! Identifiers: 1–128 chars of `[A-Za-z0-9._:@-]`.

use crate::error::Error;

pub const MAX_ID_LEN: usize = 128;

/// Checks an id against the contract's alphabet; `what` names it in the message.
pub fn validate_id(what: &str, text: &str) -> Result<(), Error> {
    let ok = !text.is_empty()
        && text.len() <= MAX_ID_LEN
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidId(format!(
            "{what} must be 1-{MAX_ID_LEN} characters of [A-Za-z0-9._:@-]"
        )))
    }
}

/// Declares a validated string id newtype (the contract's id alphabet), parsed
/// at the edge with `parse` (400 `invalid_id`). Request bodies carry ids as
/// strings and parse them; `Deserialize` serves other readers (tools, tests).
macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(text: &str) -> Result<Self, $crate::error::Error> {
                $crate::domain::validate_id($what, text)?;
                Ok(Self(text.to_string()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as serde::Deserialize>::deserialize(d)?;
                Self::parse(&s)
                    .map_err(|e| serde::de::Error::custom(format!("{}: {e}", e.code())))
            }
        }
    };
}
pub(crate) use id_newtype;

id_newtype!(
    /// The caller's or target's user id (the JWT `sub`).
    UserId,
    "user_id"
);
id_newtype!(
    /// A usage event's id: the idempotency key of metering.
    EventId,
    "event_id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_contract_alphabet() {
        assert!(UserId::parse("alice").is_ok());
        assert!(UserId::parse("a.b_c:d@e-f9").is_ok());
        assert!(UserId::parse(&"x".repeat(128)).is_ok());
    }

    #[test]
    fn refuses_everything_else() {
        for bad in ["", "a b", "a/b", "ü", "a#b"] {
            assert!(UserId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(UserId::parse(&"x".repeat(129)).is_err());
        let e = serde_json::from_str::<UserId>("\"a b\"")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("invalid_id: "));
    }
}
