//! Audit entries: who did what to whom, written in the same atomic write as the
//! change they describe. Append-only.

use super::UserId;
use chrono::{DateTime, Utc};
use serde::Serialize;

pub const ADMIN_ADJUST_CREDITS: &str = "ADMIN_ADJUST_CREDITS";
pub const ADMIN_SET_SYSTEM_QUOTA_DEFAULTS: &str = "ADMIN_SET_SYSTEM_QUOTA_DEFAULTS";
pub const ADMIN_SET_SOURCE_QUOTA_DEFAULTS: &str = "ADMIN_SET_SOURCE_QUOTA_DEFAULTS";
pub const ADMIN_INIT_USER_QUOTAS: &str = "ADMIN_INIT_USER_QUOTAS";
pub const ADMIN_REPLACE_USER_QUOTAS: &str = "ADMIN_REPLACE_USER_QUOTAS";
pub const ADMIN_RESET_QUOTA_WINDOW: &str = "ADMIN_RESET_QUOTA_WINDOW";
pub const ADMIN_CREATE_REDEMPTION_CODES: &str = "ADMIN_CREATE_REDEMPTION_CODES";
pub const ADMIN_UPDATE_REDEMPTION_CODE: &str = "ADMIN_UPDATE_REDEMPTION_CODE";

/// The acting party of an admin write, from the request's claims and context.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Actor {
    pub id: String,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuditEntry {
    pub id: String,
    pub actor: String,
    pub action: String,
    pub target_user: Option<UserId>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub success: bool,
    /// Free-form: before/after values, reason, flags such as `force`.
    pub details: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

impl AuditEntry {
    pub fn new(
        actor: &Actor,
        action: &str,
        target_user: Option<&UserId>,
        details: serde_json::Value,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            actor: actor.id.clone(),
            action: action.to_string(),
            target_user: target_user.cloned(),
            source_ip: actor.source_ip.clone(),
            user_agent: actor.user_agent.clone(),
            success: true,
            details,
            created_at: now,
        }
    }

    /// The same entry recording a refused or failed attempt.
    pub fn failed(mut self) -> Self {
        self.success = false;
        self
    }
}
