//! Idempotency as the contract defines it, independent of where records live:
//! what makes two requests "the same" ([`Fingerprint`]) and the first answer
//! replayed to every repeat ([`StoredResponse`]). The HTTP edge computes both
//! from requests; the store keeps them.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// sha256 of method, path and the canonical JSON body (object keys sorted,
/// insignificant whitespace dropped), so a semantically equal retry matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint(String);

impl Fingerprint {
    pub fn of(method: &str, path: &str, body: &[u8]) -> Self {
        let mut hash = Sha256::new();
        hash.update(method.to_ascii_uppercase().as_bytes());
        hash.update(b"\n");
        hash.update(path.as_bytes());
        hash.update(b"\n");
        match serde_json::from_slice::<Value>(body) {
            Ok(value) => hash.update(canonical_json(&value).as_bytes()),
            // Not JSON: the bytes themselves (such a body is refused anyway).
            Err(_) => hash.update(body),
        }
        let digest = hash.finalize();
        Self(digest.iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// JSON text with object keys sorted at every level (independent of whether
/// serde_json keeps insertion order in this build).
pub fn canonical_json(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical_json(&map[k])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(canonical_json)
                .collect::<Vec<_>>()
                .join(",")
        ),
        other => other.to_string(),
    }
}

/// The first response to a key, replayed to every later request with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_ignores_key_order_and_whitespace() {
        let a = Fingerprint::of("POST", "/x", br#"{"a":1,"b":{"c":2,"d":[1,2]}}"#);
        let b = Fingerprint::of(
            "post",
            "/x",
            b"{ \"b\": {\"d\": [1, 2], \"c\": 2}, \"a\": 1 }",
        );
        assert_eq!(a, b);
        assert_ne!(
            a,
            Fingerprint::of("POST", "/y", br#"{"a":1,"b":{"c":2,"d":[1,2]}}"#)
        );
        assert_ne!(
            a,
            Fingerprint::of("POST", "/x", br#"{"a":2,"b":{"c":2,"d":[1,2]}}"#)
        );
        assert_ne!(
            a,
            Fingerprint::of("POST", "/x", br#"{"a":1,"b":{"c":2,"d":[2,1]}}"#)
        );
        assert_eq!(a.as_str().len(), 64);
    }

    #[test]
    fn canonical_json_escapes_keys() {
        let v: Value = serde_json::from_str(r#"{"z\"q":1,"a":"x"}"#).unwrap();
        assert_eq!(canonical_json(&v), r#"{"a":"x","z\"q":1}"#);
    }
}
