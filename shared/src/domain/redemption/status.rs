//! Codes as stored: their status and whether they can be redeemed now.

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeStatus {
    Active,
    Disabled,
    Expired,
    Exhausted,
}

impl CodeStatus {
    pub fn parse(text: &str) -> Result<Self, Error> {
        match text {
            "active" => Ok(CodeStatus::Active),
            "disabled" => Ok(CodeStatus::Disabled),
            "expired" => Ok(CodeStatus::Expired),
            "exhausted" => Ok(CodeStatus::Exhausted),
            other => Err(Error::InvalidRequest(format!(
                "unknown status {other:?}; expected active, disabled, expired or exhausted"
            ))),
        }
    }
}

/// One redemption code with its counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedemptionCode {
    pub key: CodeKey,
    pub display: String,
    pub batch_id: BatchId,
    pub batch_name: Option<String>,
    pub grant: Grant,
    pub max_uses: i64,
    pub used_count: i64,
    pub enabled: bool,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl RedemptionCode {
    /// One status, by precedence: an admin's disable first, then expiry, then uses.
    pub fn status(&self, now: DateTime<Utc>) -> CodeStatus {
        if !self.enabled {
            CodeStatus::Disabled
        } else if self.expires_at.is_some_and(|at| at <= now) {
            CodeStatus::Expired
        } else if self.used_count >= self.max_uses {
            CodeStatus::Exhausted
        } else {
            CodeStatus::Active
        }
    }

    /// Why the code cannot be redeemed at `now`, as the contract's error.
    pub fn check_redeemable(&self, now: DateTime<Utc>) -> Result<(), Error> {
        match self.status(now) {
            CodeStatus::Active => Ok(()),
            CodeStatus::Disabled => Err(Error::CodeDisabled),
            CodeStatus::Expired => Err(Error::CodeExpired),
            CodeStatus::Exhausted => Err(Error::CodeExhausted),
        }
    }

    pub fn view(&self, now: DateTime<Utc>) -> Value {
        serde_json::json!({
            "code": self.display,
            "batch_id": self.batch_id,
            "batch_name": self.batch_name,
            "credits": self.grant.credits,
            "subscription": self.grant.subscription,
            "max_uses": self.max_uses,
            "used_count": self.used_count,
            "remaining_uses": (self.max_uses - self.used_count).max(0),
            "enabled": self.enabled,
            "expires_at": self.expires_at.map(timestamp),
            "status": self.status(now),
            "created_at": timestamp(self.created_at),
            "updated_at": timestamp(self.updated_at),
        })
    }
}
