//! The integration suite: one binary (one link), one module per capability.

mod alerts;
mod credits;
mod credits_cli;
mod dependencies;
mod faults;
mod foundation;
mod inputs;
mod local_stack;
mod quotas;
mod redemption;
mod reservations;
mod template;
mod usage;
