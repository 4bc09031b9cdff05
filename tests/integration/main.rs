//! The integration suite: one binary (one link), one module per capability.

mod alerts;
mod authorization;
mod chaos;
mod costs;
mod crash;
mod credits;
mod credits_budget;
mod credits_cli;
mod dependencies;
mod faults;
mod foundation;
mod hotspots;
mod ingest_costs;
mod inputs;
mod invariants;
mod local_stack;
mod quotas;
mod redemption;
mod redemption_budget;
mod reservations;
mod template;
mod usage;
