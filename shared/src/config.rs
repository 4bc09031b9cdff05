//! Configuration, read once from the environment in `main`.

use crate::domain::alert::{AlertSettings, ENV_ALERT_THRESHOLDS, ENV_LOW_BALANCE_CREDITS};
use crate::domain::Platforms;
use crate::error::Error;
use chrono_tz::Tz;

/// Environment variables the functions read (the template check test keeps the
/// SAM template in step with this list).
pub const ENV_TABLE: &str = "SPENDGUARD_TABLE";
pub const ENV_PLATFORMS: &str = "SPENDGUARD_PLATFORMS";
pub const ENV_TZ: &str = "SPENDGUARD_TZ";
pub const ENV_VARS: &[&str] = &[ENV_TABLE, ENV_PLATFORMS, ENV_TZ];
/// Read only where alerts are decided (the `alerts` function).
pub const ALERT_ENV_VARS: &[&str] = &[ENV_ALERT_THRESHOLDS, ENV_LOW_BALANCE_CREDITS];

pub const DEFAULT_TABLE: &str = "spendguard";

#[derive(Clone, Debug)]
pub struct Config {
    /// The single DynamoDB table holding every spendguard item.
    pub table_name: String,
    pub platforms: Platforms,
    /// Zone in which daily / weekly / monthly windows are calendar-aligned.
    pub timezone: Tz,
    /// Alert thresholds (`SPENDGUARD_ALERT_THRESHOLDS`, `SPENDGUARD_LOW_BALANCE_CREDITS`).
    pub alerts: AlertSettings,
}

impl Config {
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Builds from any key lookup (tests pass a map instead of the process env).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let bad = |what: String| Error::Internal(format!("configuration: {what}"));
        let table_name = get(ENV_TABLE)
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_TABLE.to_string());
        let platforms = match get(ENV_PLATFORMS).filter(|s| !s.trim().is_empty()) {
            Some(list) => {
                Platforms::parse_list(&list).map_err(|e| bad(format!("{ENV_PLATFORMS}: {e}")))?
            }
            None => Platforms::defaults(),
        };
        let timezone = match get(ENV_TZ).filter(|s| !s.trim().is_empty()) {
            Some(name) => name
                .trim()
                .parse::<Tz>()
                .map_err(|_| bad(format!("{ENV_TZ}: unknown IANA time zone {name:?}")))?,
            None => Tz::UTC,
        };
        let alerts = AlertSettings::parse(
            get(ENV_ALERT_THRESHOLDS).as_deref(),
            get(ENV_LOW_BALANCE_CREDITS).as_deref(),
        )
        .map_err(bad)?;
        Ok(Self {
            table_name,
            platforms,
            timezone,
            alerts,
        })
    }

    /// Defaults with another table name (tests use a unique one each).
    pub fn for_table(table_name: impl Into<String>) -> Self {
        Self {
            table_name: table_name.into(),
            platforms: Platforms::defaults(),
            timezone: Tz::UTC,
            alerts: AlertSettings::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn reads_values_and_defaults() {
        let env: HashMap<&str, &str> = [
            (ENV_PLATFORMS, "openai, mistral"),
            (ENV_TZ, "Asia/Shanghai"),
        ]
        .into_iter()
        .collect();
        let c = Config::from_lookup(|k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(c.table_name, DEFAULT_TABLE);
        assert_eq!(
            c.platforms.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
            ["openai", "mistral"]
        );
        assert_eq!(c.timezone, chrono_tz::Asia::Shanghai);
    }

    #[test]
    fn refuses_unknown_zone() {
        assert!(Config::from_lookup(|k| (k == ENV_TZ).then(|| "Mars/Base".into())).is_err());
    }
}
