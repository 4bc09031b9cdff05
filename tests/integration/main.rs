//! The integration suite: one binary (one link), one module per capability.

mod foundation;
mod credits;
mod credits_cli;
mod quotas;
mod redemption;
mod usage;
