//! The integration suite: one binary (one link), one module per capability.

mod credits;
mod credits_cli;
mod foundation;
mod local_stack;
mod quotas;
mod redemption;
mod reservations;
mod template;
mod usage;
