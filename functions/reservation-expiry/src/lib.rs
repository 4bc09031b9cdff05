//! The reservation-expiry function: run every minute (EventBridge schedule;
//! the local stack runs it on the same schedule), it releases the holds of
//! pending reservations past their `expires_at`. A gateway that crashed
//! between reserve and settle thus blocks nothing for longer than the
//! reservation's TTL plus one minute. Thin: the sweep is
//! `DynamoStore::expire_reservations`.

use serde_json::{json, Value};
use spendguard_core::{Deps, Error};

/// The `Function` dimension of this function's metrics.
const FUNCTION: &str = "reservation-expiry";

pub struct App {
    deps: Deps,
}

impl App {
    pub fn new(deps: Deps) -> Self {
        Self { deps }
    }

    /// One sweep; the scheduled event's content is not needed.
    pub async fn run(&self) -> Result<usize, Error> {
        let released = self
            .deps
            .store
            .expire_reservations(&self.deps.config.platforms, self.deps.clock.now())
            .await?;
        if released > 0 {
            tracing::info!(released, "expired reservations released");
        }
        use spendguard_core::metrics;
        metrics::count(FUNCTION, metrics::RESERVATIONS_EXPIRED, released);
        self.deps.emit_retries(FUNCTION);
        Ok(released)
    }

    /// The Lambda entry: `{"released": n}`; a store failure fails the
    /// invocation (the next minute's run retries).
    pub async fn invoke(&self, _event: Value) -> Result<Value, Error> {
        Ok(json!({ "released": self.run().await? }))
    }
}
