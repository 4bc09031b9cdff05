//! Batch creation: the request body (wire) and the batch it plans.

use super::*;

/// The body of `POST /v1/admin/redemption-codes`, before validation. Unknown
/// fields are refused: a misspelt `expires_at` must not make a code eternal.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCodesBody {
    #[serde(deserialize_with = "crate::json::whole")]
    pub count: i64,
    #[serde(default, deserialize_with = "crate::json::non_null")]
    pub prefix: Option<String>,
    /// Unparsed: [`json_credits`](crate::domain::credits::json_credits)
    /// reads it, so `null`, `1.5`, `1e400` or a string is 400 `invalid_amount`.
    #[serde(default, deserialize_with = "crate::json::non_null")]
    pub credits: Option<Box<RawValue>>,
    #[serde(default, deserialize_with = "crate::json::non_null")]
    pub subscription: Option<SubscriptionWire>,
    #[serde(deserialize_with = "crate::json::whole")]
    pub max_uses: i64,
    /// Not nullable: a code without expiry omits the field (`null` must not
    /// pass for a date that failed to render).
    #[serde(default, deserialize_with = "crate::json::non_null")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "crate::json::non_null")]
    pub batch_name: Option<String>,
}

/// A validated batch request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchSpec {
    pub count: usize,
    pub prefix: Option<Prefix>,
    pub grant: Grant,
    pub max_uses: i64,
    pub expires_at: Option<DateTime<Utc>>,
    pub batch_name: Option<String>,
}

impl CreateCodesBody {
    pub fn validate(self, now: DateTime<Utc>) -> Result<BatchSpec, Error> {
        // The typed fields first, in body order, as a reader of the types would.
        let credits = self
            .credits
            .map(|raw| crate::domain::credits::json_credits("credits", &raw))
            .transpose()?
            .unwrap_or(0);
        let subscription = self
            .subscription
            .map(SubscriptionGrant::try_from)
            .transpose()?;
        if !(1..=MAX_BATCH_SIZE).contains(&self.count) {
            return Err(Error::InvalidRequest(format!(
                "count must be 1-{MAX_BATCH_SIZE}, got {}",
                self.count
            )));
        }
        if !(1..=MAX_USES).contains(&self.max_uses) {
            return Err(Error::InvalidRequest(format!(
                "max_uses must be 1-{MAX_USES}, got {}",
                self.max_uses
            )));
        }
        if !(0..=MAX_CREDITS).contains(&credits) {
            return Err(Error::InvalidAmount(format!(
                "credits must be an integer 0-{MAX_CREDITS}, got {credits}"
            )));
        }
        if let Some(sub) = &subscription {
            if !(1..=MAX_QUANTITY).contains(&sub.quantity) {
                return Err(Error::InvalidRequest(format!(
                    "subscription.quantity must be 1-{MAX_QUANTITY}, got {}",
                    sub.quantity
                )));
            }
        }
        if credits == 0 && subscription.is_none() {
            return Err(Error::InvalidRequest(
                "a code must grant credits (> 0), a subscription, or both".into(),
            ));
        }
        if let Some(at) = self.expires_at {
            if at <= now {
                return Err(Error::InvalidRequest(
                    "expires_at must be in the future".into(),
                ));
            }
        }
        let batch_name = match self.batch_name {
            None => None,
            Some(name) => {
                let chars = name.chars().count();
                if name.trim().is_empty() || chars > MAX_BATCH_NAME_CHARS {
                    return Err(Error::InvalidRequest(format!(
                        "batch_name must be 1-{MAX_BATCH_NAME_CHARS} characters, not only spaces"
                    )));
                }
                Some(name)
            }
        };
        Ok(BatchSpec {
            count: self.count as usize,
            prefix: self.prefix.as_deref().map(Prefix::parse).transpose()?,
            grant: Grant {
                credits,
                subscription,
            },
            max_uses: self.max_uses,
            expires_at: self.expires_at,
            batch_name,
        })
    }
}

impl BatchSpec {
    /// `details` of the `ADMIN_CREATE_REDEMPTION_CODES` audit entry. The codes
    /// themselves are secrets and stay out of the audit log.
    pub fn audit_details(&self, batch_id: &BatchId) -> Value {
        serde_json::json!({
            "batch_id": batch_id,
            "batch_name": self.batch_name,
            "count": self.count,
            "prefix": self.prefix.as_ref().map(Prefix::as_str),
            "credits": self.grant.credits,
            "subscription": self.grant.subscription,
            "max_uses": self.max_uses,
            "expires_at": self.expires_at.map(timestamp),
        })
    }
}

/// A batch as created: what `POST /v1/admin/redemption-codes` answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub batch_id: BatchId,
    pub spec: BatchSpec,
    /// Printed forms, in generation order.
    pub codes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

impl Batch {
    pub fn response(&self) -> Value {
        serde_json::json!({
            "batch_id": self.batch_id,
            "batch_name": self.spec.batch_name,
            "count": self.codes.len(),
            "codes": self.codes,
            "credits": self.spec.grant.credits,
            "subscription": self.spec.grant.subscription,
            "max_uses": self.spec.max_uses,
            "expires_at": self.spec.expires_at.map(timestamp),
            "created_at": timestamp(self.created_at),
        })
    }
}
