//! Roles from the JWT claims that API Gateway (or the dev gateway) verified.
//! Functions never look at the token itself.

use crate::domain::UserId;
use crate::error::Error;
use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};
use std::collections::HashMap;

pub const ADMIN_GROUP: &str = "admin";
pub const SERVICE_SCOPE: &str = "spendguard/service";

/// The authenticated caller of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// `sub`; absent for a machine client that only carries a scope.
    pub subject: Option<UserId>,
    pub is_admin: bool,
    pub is_service: bool,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
}

impl Caller {
    /// Reads the caller from `requestContext.authorizer.jwt.claims`; no claims → 401.
    pub fn from_request(req: &Request) -> Result<Self, Error> {
        let Some(RequestContext::ApiGatewayV2(ctx)) = req.request_context_ref() else {
            return Err(Error::Unauthorized);
        };
        let claims = ctx
            .authorizer
            .as_ref()
            .and_then(|a| a.jwt.as_ref())
            .map(|jwt| &jwt.claims)
            .ok_or(Error::Unauthorized)?;
        let mut caller = Self::from_claims(claims)?;
        caller.source_ip = ctx.http.source_ip.clone();
        caller.user_agent = ctx.http.user_agent.clone().or_else(|| {
            req.headers()
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        });
        Ok(caller)
    }

    pub fn from_claims(claims: &HashMap<String, String>) -> Result<Self, Error> {
        let subject = match claims.get("sub").filter(|s| !s.is_empty()) {
            Some(sub) => Some(UserId::parse(sub).map_err(|_| Error::Unauthorized)?),
            None => None,
        };
        let is_admin = claims
            .get("cognito:groups")
            .is_some_and(|g| parse_groups(g).iter().any(|g| g == ADMIN_GROUP));
        // `scope` is space-separated (RFC 8693); API Gateway renders an array
        // claim (`scp`-style IdPs) as `[a b]`: accept every list form of groups.
        let is_service = claims
            .get("scope")
            .is_some_and(|s| parse_groups(s).iter().any(|s| s == SERVICE_SCOPE));
        if subject.is_none() && !is_service {
            return Err(Error::Unauthorized);
        }
        Ok(Self {
            subject,
            is_admin,
            is_service,
            source_ip: None,
            user_agent: None,
        })
    }

    /// A signed-in end user (any role with a `sub`): the user id to act on.
    pub fn require_user(&self) -> Result<&UserId, Error> {
        self.subject
            .as_ref()
            .ok_or_else(|| Error::Forbidden("this route needs a user token".into()))
    }

    pub fn require_admin(&self) -> Result<(), Error> {
        if self.is_admin {
            Ok(())
        } else {
            Err(Error::Forbidden("this route needs the admin role".into()))
        }
    }

    pub fn require_service_or_admin(&self) -> Result<(), Error> {
        if self.is_admin || self.is_service {
            Ok(())
        } else {
            Err(Error::Forbidden(
                "this route needs the service or admin role".into(),
            ))
        }
    }

    /// Who to name as actor in audit entries.
    pub fn actor(&self) -> String {
        match &self.subject {
            Some(u) => u.to_string(),
            None => "service".to_string(),
        }
    }
}

impl From<&Caller> for crate::domain::audit::Actor {
    fn from(caller: &Caller) -> Self {
        Self {
            id: caller.actor(),
            source_ip: caller.source_ip.clone(),
            user_agent: caller.user_agent.clone(),
        }
    }
}

/// `cognito:groups` (and an array `scope`) arrives as a string: `admin`,
/// `[admin other]`, `admin,other` or a JSON array string.
fn parse_groups(text: &str) -> Vec<String> {
    let t = text.trim();
    if let Ok(list) = serde_json::from_str::<Vec<String>>(t) {
        return list;
    }
    t.trim_start_matches('[')
        .trim_end_matches(']')
        .split([' ', ','])
        .map(|g| g.trim().trim_matches('"').to_string())
        .filter(|g| !g.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn group_formats() {
        for g in [
            "admin",
            "[admin other]",
            "admin,other",
            r#"["other","admin"]"#,
            "[admin]",
        ] {
            let c = Caller::from_claims(&claims(&[("sub", "u1"), ("cognito:groups", g)])).unwrap();
            assert!(c.is_admin, "{g}");
        }
        let c = Caller::from_claims(&claims(&[
            ("sub", "u1"),
            ("cognito:groups", "administrators"),
        ]))
        .unwrap();
        assert!(!c.is_admin);
    }

    #[test]
    fn service_scope_and_missing_subject() {
        let c = Caller::from_claims(&claims(&[("scope", "openid spendguard/service")])).unwrap();
        assert!(c.is_service && c.subject.is_none());
        assert!(c.require_user().is_err());
        assert!(matches!(
            Caller::from_claims(&claims(&[])),
            Err(Error::Unauthorized)
        ));
    }
}
