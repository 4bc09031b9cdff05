//! Per-user, per-platform USD quotas over calendar windows: pure rules.
//!
//! Two layers, decoupled on purpose:
//! - configuration: [`QuotaDefaults`] for the system and per auth source;
//! - runtime: one [`QuotaRecord`] per user and platform (limits, usage, window starts).
//!
//! `init` copies configuration into runtime limits that are not yet set; after that
//! the two evolve independently. Everything here is a pure function of its inputs.
//!
//! Files by concern: `record` (runtime records), `defaults` (configuration and
//! the limit bodies), `plans` (admin changes), `views` (answers), `check`.

use super::{AuthSource, Platform, Platforms, Usd, UserId, WindowKind};
use crate::error::Error;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt;

mod check;
mod defaults;
mod plans;
mod record;
#[cfg(test)]
mod tests;
mod views;

pub use check::*;
pub use defaults::*;
pub use plans::*;
pub use record::*;
pub use views::*;
