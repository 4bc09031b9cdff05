//! Redemptions: the record of one and its view.

use super::*;

/// The subscription part of a redemption.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionChange {
    pub plan_id: PlanId,
    pub unit: Unit,
    pub quantity: u32,
    /// The expiry before this redemption (`None`: the user had no subscription).
    pub previous_expires_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
}

/// One (code, user) redemption: stored once, and the body of the 201 answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redemption {
    pub code: String,
    pub code_key: CodeKey,
    pub batch_id: BatchId,
    pub user_id: UserId,
    pub credits_granted: i64,
    /// `available` credits right after the redemption.
    pub balance_after: i64,
    /// The ledger entry of the grant (`None` for a subscription-only code).
    pub transaction_id: Option<String>,
    pub subscription: Option<SubscriptionChange>,
    /// The user's first redemption of any code.
    pub is_new: bool,
    pub redeemed_at: DateTime<Utc>,
}

impl Redemption {
    pub fn view(&self) -> Value {
        let subscription = self.subscription.as_ref().map(|s| {
            serde_json::json!({
                "plan_id": s.plan_id,
                "unit": s.unit,
                "quantity": s.quantity,
                "previous_expires_at": s.previous_expires_at.map(timestamp),
                "expires_at": timestamp(s.expires_at),
            })
        });
        serde_json::json!({
            "code": self.code,
            "user_id": self.user_id,
            "batch_id": self.batch_id,
            "credits_granted": self.credits_granted,
            "balance_after": self.balance_after,
            "transaction_id": self.transaction_id,
            "subscription": subscription,
            "is_new": self.is_new,
            "redeemed_at": timestamp(self.redeemed_at),
        })
    }
}
