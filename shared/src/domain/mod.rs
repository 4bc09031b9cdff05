//! Pure domain rules and the newtypes parsed at the edge. Nothing here touches AWS.

pub mod alert;
pub mod audit;
pub mod auth_source;
pub mod credits;
pub mod idempotency;
pub mod ids;
pub mod money;
pub mod platform;
pub mod quota;
pub mod redemption;
pub mod reservation;
pub mod usage;
pub mod window;

pub use auth_source::AuthSource;
pub use ids::{validate_id, EventId, UserId};
pub use money::Usd;
pub use platform::{Platform, Platforms};
pub use window::{WindowBounds, WindowKind};
