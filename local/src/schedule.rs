//! The EventBridge schedules of `infra/template.yaml`, played locally: the
//! reservation-expiry function runs every minute, as deployed.

use crate::gateway::Gateway;
use std::sync::Arc;
use std::time::Duration;

/// `rate(1 minute)` of `ReservationExpiryFunction`.
pub const RESERVATION_EXPIRY_PERIOD: Duration = Duration::from_secs(60);

/// Runs the reservation-expiry function every [`RESERVATION_EXPIRY_PERIOD`]
/// until the process ends.
pub fn spawn(gateway: Arc<Gateway>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RESERVATION_EXPIRY_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = gateway.functions().reservation_expiry.run().await {
                tracing::warn!(error = %e, "reservation-expiry run failed; the next minute retries");
            }
        }
    })
}
