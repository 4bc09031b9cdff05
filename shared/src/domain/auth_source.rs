use crate::error::Error;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a user signed up; each source may carry its own default quotas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthSource {
    Email,
    Linuxdo,
    Oidc,
    Wechat,
    Github,
    Google,
    Dingtalk,
}

impl AuthSource {
    pub const ALL: [AuthSource; 7] = [
        AuthSource::Email,
        AuthSource::Linuxdo,
        AuthSource::Oidc,
        AuthSource::Wechat,
        AuthSource::Github,
        AuthSource::Google,
        AuthSource::Dingtalk,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuthSource::Email => "email",
            AuthSource::Linuxdo => "linuxdo",
            AuthSource::Oidc => "oidc",
            AuthSource::Wechat => "wechat",
            AuthSource::Github => "github",
            AuthSource::Google => "google",
            AuthSource::Dingtalk => "dingtalk",
        }
    }

    pub fn parse(text: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| Error::UnknownAuthSource(text.to_string()))
    }
}

impl fmt::Display for AuthSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
