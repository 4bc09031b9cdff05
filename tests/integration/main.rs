//! The integration suite: one binary (one link), one module per capability.

mod credits;
mod credits_cli;
mod dependencies;
mod foundation;
mod quotas;
mod redemption;
mod template;
mod usage;
