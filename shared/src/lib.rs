//! spendguard core: everything the Lambda functions share.
//!
//! - [`domain`]: pure rules and newtypes (money, ids, platforms, windows,
//!   idempotency fingerprints). No AWS types.
//! - [`paging`]: pages of lists and the cursors between them.
//! - [`store`]: the DynamoDB adapter behind narrow traits (knows no HTTP).
//! - [`api`]: the HTTP edge: auth from API Gateway claims, body parsing, responses.
//! - [`error`]: the one error enum and its HTTP mapping.
//! - [`json`]: the one JSON reader of request bodies and usage events.

pub mod api;
pub mod clock;
pub mod config;
pub mod domain;
pub mod error;
pub mod json;
pub mod metrics;
pub mod paging;
pub mod store;
pub mod telemetry;

pub use clock::Clock;
pub use config::Config;
pub use error::{Error, Result};
pub use store::DynamoStore;

use std::sync::Arc;

/// What every function handler depends on; built once in `main`.
#[derive(Clone)]
pub struct Deps {
    pub config: Arc<Config>,
    pub store: DynamoStore,
    pub clock: Clock,
}

impl Deps {
    /// Emits what the retry layer counted since the last call: one metrics
    /// line per invocation that wrote (nothing when it sent no transaction).
    pub fn emit_retries(&self, function: &str) {
        metrics::retries(function, self.store.retry_stats().take());
    }

    /// Configuration and DynamoDB client from a Lambda function's environment.
    pub async fn from_env() -> std::result::Result<Self, Error> {
        let config = Arc::new(Config::from_env()?);
        let store = DynamoStore::from_lambda_env(&config).await;
        Ok(Self {
            config,
            store,
            clock: Clock::system(),
        })
    }
}
