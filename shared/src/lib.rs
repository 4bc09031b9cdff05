//! spendguard core: everything the Lambda functions share.
//!
//! - [`domain`]: pure rules and newtypes (money, ids, platforms, windows). No AWS types.
//! - [`store`]: the DynamoDB adapter behind narrow traits.
//! - [`api`]: the HTTP edge: auth from API Gateway claims, body parsing, responses.
//! - [`error`]: the one error enum and its HTTP mapping.

pub mod api;
pub mod clock;
pub mod config;
pub mod domain;
pub mod error;
pub mod metrics;
pub mod store;
pub mod telemetry;
pub mod template;

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
    /// Configuration and DynamoDB client from the standard environment.
    pub async fn from_env() -> std::result::Result<Self, Error> {
        let config = Arc::new(Config::from_env()?);
        let store = DynamoStore::from_env(&config).await;
        Ok(Self {
            config,
            store,
            clock: Clock::system(),
        })
    }
}
