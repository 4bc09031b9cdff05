//! The integration suite: one binary (one link), one module per capability.

mod alerts;
mod credits;
mod credits_cli;
mod foundation;
mod quotas;
mod redemption;
mod template;
mod usage;
