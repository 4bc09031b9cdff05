//! Platforms are configuration (`SPENDGUARD_PLATFORMS`), never code.

use crate::error::Error;
use serde::Serialize;
use std::fmt;

pub const DEFAULT_PLATFORMS: &[&str] = &["anthropic", "openai", "gemini", "antigravity"];

/// A platform name known to be in the configured list.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Platform(String);

impl Platform {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The configured platform list, in configuration order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platforms(Vec<Platform>);

impl Platforms {
    /// Parses a space- or comma-separated list of names (`[a-z0-9_-]`, 1-64 chars).
    pub fn parse_list(text: &str) -> Result<Self, String> {
        let mut list: Vec<Platform> = Vec::new();
        for name in text.split([' ', ',', '\n', '\t']).filter(|s| !s.is_empty()) {
            let name = name.to_ascii_lowercase();
            let valid = name.len() <= 64
                && name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                });
            if !valid {
                return Err(format!("invalid platform name {name:?}"));
            }
            if !list.iter().any(|p| p.0 == name) {
                list.push(Platform(name));
            }
        }
        if list.is_empty() {
            return Err("the platform list is empty".into());
        }
        Ok(Self(list))
    }

    pub fn defaults() -> Self {
        Self(
            DEFAULT_PLATFORMS
                .iter()
                .map(|p| Platform(p.to_string()))
                .collect(),
        )
    }

    /// The platform named `name`, or `unknown_platform`.
    pub fn parse(&self, name: &str) -> Result<Platform, Error> {
        self.0
            .iter()
            .find(|p| p.0 == name)
            .cloned()
            .ok_or_else(|| Error::UnknownPlatform(name.to_string()))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Platform> {
        self.0.iter()
    }
}
