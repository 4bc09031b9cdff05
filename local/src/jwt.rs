//! HS256 dev tokens: the local stand-in for API Gateway's JWT authorizer.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;
use std::collections::HashMap;

pub const DEFAULT_SECRET: &str = "spendguard-local-dev-secret";
pub const ENV_SECRET: &str = "SPENDGUARD_DEV_JWT_SECRET";

/// The secret from `SPENDGUARD_DEV_JWT_SECRET`, or the documented default.
pub fn secret_from_env() -> String {
    std::env::var(ENV_SECRET)
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_SECRET.to_string())
}

/// Roles a dev token can carry, mapped to the claims a real IdP would issue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    User,
    Admin,
    Service,
}

impl Role {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "user" => Some(Role::User),
            "admin" => Some(Role::Admin),
            "service" => Some(Role::Service),
            _ => None,
        }
    }
}

fn mac(secret: &str, signing_input: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(signing_input.as_bytes());
    mac
}

/// Signs claims `{sub, iat, exp}` plus the role's group or scope.
pub fn issue(secret: &str, user: &str, role: Role, ttl_seconds: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({
        "sub": user,
        "iss": "spendguard-local",
        "iat": now,
        "exp": now + ttl_seconds,
    });
    match role {
        Role::User => {}
        Role::Admin => claims["cognito:groups"] = json!(["admin"]),
        Role::Service => claims["scope"] = json!("spendguard/service"),
    }
    sign(secret, &claims)
}

pub fn sign(secret: &str, claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let input = format!("{header}.{payload}");
    let signature = URL_SAFE_NO_PAD.encode(mac(secret, &input).finalize().into_bytes());
    format!("{input}.{signature}")
}

/// Verifies an HS256 token and returns its claims as API Gateway passes them to a
/// function: every value a string (arrays as `[a b]`).
pub fn verify(secret: &str, token: &str, now_epoch: i64) -> Option<HashMap<String, String>> {
    let mut parts = token.split('.');
    let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
    if header.get("alg")?.as_str()? != "HS256" {
        return None;
    }
    let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
    mac(secret, &token[..token.rfind('.')?])
        .verify_slice(&signature)
        .ok()?;
    let mut claims: Map<String, Value> =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    // A JSON `null` claim is an absent claim: `"sub": null` is a token without
    // a user, not the user "null".
    claims.retain(|_, v| !v.is_null());
    // As API Gateway's JWT authorizer: `exp` must be after now, `nbf` and `iat`
    // not after it. A time claim that is not an integer is an invalid token.
    if let Some(exp) = claims.get("exp") {
        if exp.as_i64()? <= now_epoch {
            return None;
        }
    }
    for claim in ["nbf", "iat"] {
        if let Some(value) = claims.get(claim) {
            if value.as_i64()? > now_epoch {
                return None;
            }
        }
    }
    Some(
        claims
            .into_iter()
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s,
                    Value::Array(items) => format!(
                        "[{}]",
                        items
                            .iter()
                            .map(|i| i
                                .as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| i.to_string()))
                            .collect::<Vec<_>>()
                            .join(" ")
                    ),
                    other => other.to_string(),
                };
                (k, text)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let t = issue("s3cret", "alice", Role::Admin, 60);
        let now = chrono::Utc::now().timestamp();
        let claims = verify("s3cret", &t, now).unwrap();
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["cognito:groups"], "[admin]");
        assert!(verify("other", &t, now).is_none());
        assert!(verify("s3cret", &t, now + 120).is_none(), "expired");
        let mut forged = t.clone();
        forged.push('x');
        assert!(verify("s3cret", &forged, now).is_none());
        assert!(verify("s3cret", "a.b", now).is_none());
    }

    #[test]
    fn tokens_not_yet_valid_are_refused() {
        let now = chrono::Utc::now().timestamp();
        let token = |claims: Value| sign("k", &claims);
        for claim in ["nbf", "iat"] {
            let future = token(json!({"sub": "alice", "exp": now + 60, claim: now + 30}));
            assert!(verify("k", &future, now).is_none(), "{claim} in the future");
            let past = token(json!({"sub": "alice", "exp": now + 60, claim: now}));
            assert!(verify("k", &past, now).is_some(), "{claim} now");
            let text = token(json!({"sub": "alice", "exp": now + 60, claim: "soon"}));
            assert!(verify("k", &text, now).is_none(), "{claim} not a number");
        }
    }

    #[test]
    fn a_null_claim_is_absent() {
        let now = chrono::Utc::now().timestamp();
        let t = sign(
            "k",
            &json!({"sub": null, "scope": null, "exp": now + 60, "nbf": null}),
        );
        let claims = verify("k", &t, now).expect("valid token");
        assert!(!claims.contains_key("sub"), "{claims:?}");
        assert!(!claims.contains_key("scope"), "{claims:?}");
    }
}
