//! Key design of the single spendguard table.
//!
//! | item                   | pk                         | sk                         |
//! |------------------------|----------------------------|----------------------------|
//! | user quota (1/platform)| `USER#{user_id}`           | `QUOTA#{platform}`         |
//! | credit account         | `USER#{user_id}`           | `CREDITS`                  |
//! | ledger entry           | `USER#{user_id}`           | `LEDGER#{seq:020}`         |
//! | subscription           | `USER#{user_id}`           | `SUB#{plan_id}`            |
//! | quota defaults         | `CONFIG`                   | `QUOTA_DEFAULTS#system`, `QUOTA_DEFAULTS#source#{source}` |
//! | usage event record     | `EVENT#{event_id}`         | `EVENT`                    |
//! | idempotency record     | `IDEMPOTENCY#{scope}#{key}`| `IDEMPOTENCY`              |
//! | audit entry            | `AUDIT`                    | `{created_at}#{id}`        |
//! | redemption code        | `CODE#{CODE}`              | `CODE`                     |
//! | code redemption        | `CODE#{CODE}`              | `REDEMPTION#{user_id}`     |
//! | lease lock             | `LOCK#{name}`              | `LOCK`                     |
//! | code batch             | `CODE_BATCH#{batch_id}`    | `BATCH`, `PLAN`            |
//! | redemption counter     | `USER#{user_id}`           | `REDEMPTION_STATS`         |
//! | failed redemptions     | `USER#{user_id}`           | `REDEEM_FAIL#HOUR`         |
//!
//! Redemption items and their gsi1 keys: `store::redemption`.
//!
//! Attribute names `pk`, `sk`, `gsi1pk`, `gsi1sk` and the TTL attribute
//! `expires_at_epoch` are defined in `infra/template.yaml`.

pub const PK: &str = "pk";
pub const SK: &str = "sk";
pub const GSI1: &str = "gsi1";
pub const GSI1_PK: &str = "gsi1pk";
pub const GSI1_SK: &str = "gsi1sk";
/// Epoch seconds after which DynamoDB TTL may delete the item. Deletion lags, so
/// readers must still check it.
pub const TTL: &str = "expires_at_epoch";

/// Quota items also carry `{window}_limit_set` (BOOL) beside
/// `{window}_{limit,usage,start}`; defaults items carry `limits` (M of N) and
/// `version` (N). `store/quota.rs` documents both layouts.
pub const CONFIG_PK: &str = "CONFIG";
pub const QUOTA_DEFAULTS_SK_PREFIX: &str = "QUOTA_DEFAULTS#";

/// `QUOTA_DEFAULTS#system` or `QUOTA_DEFAULTS#source#{source}`.
pub fn quota_defaults_sk(scope: crate::domain::quota::DefaultsScope) -> String {
    use crate::domain::quota::DefaultsScope;
    match scope {
        DefaultsScope::System => format!("{QUOTA_DEFAULTS_SK_PREFIX}system"),
        DefaultsScope::Source(source) => format!("{QUOTA_DEFAULTS_SK_PREFIX}source#{source}"),
    }
}

pub fn user_pk(user_id: &str) -> String {
    format!("USER#{user_id}")
}

pub const QUOTA_SK_PREFIX: &str = "QUOTA#";

pub fn quota_sk(platform: &str) -> String {
    format!("{QUOTA_SK_PREFIX}{platform}")
}

/// Sort key of a user's credit account (pk [`user_pk`]).
pub const CREDITS_SK: &str = "CREDITS";
pub const LEDGER_SK_PREFIX: &str = "LEDGER#";

/// Zero-padded so the sort key orders entries by `seq`.
pub fn ledger_sk(seq: u64) -> String {
    format!("{LEDGER_SK_PREFIX}{seq:020}")
}

pub const IDEMPOTENCY_SK: &str = "IDEMPOTENCY";

/// `scope` must not contain `#` (it separates scope from key); the key may.
pub fn idempotency_pk(scope: &str, key: &str) -> String {
    format!("IDEMPOTENCY#{scope}#{key}")
}

/// Sort key of a usage event record (pk [`event_pk`]): written once per
/// `event_id` in the same transaction that applies the event.
pub const EVENT_SK: &str = "EVENT";

pub fn event_pk(event_id: &str) -> String {
    format!("EVENT#{event_id}")
}

/// The primary key `{pk, sk}` of an item.
pub fn item_key(pk: impl Into<String>, sk: impl Into<String>) -> super::attr::Item {
    super::attr::Item::from([
        (PK.to_string(), super::attr::s(pk)),
        (SK.to_string(), super::attr::s(sk)),
    ])
}
