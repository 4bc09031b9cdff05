//! Property tests (issue 14, item 5): every parser and rule of the core crate
//! on random inputs, and a model-based test of the quota, reservation and
//! credit rules against a plain in-memory model. Pure: no engine, no clock.

mod amounts;
mod credits;
mod events;
mod gen;
mod headroom;
mod ids;
mod model;
mod subscriptions;
mod windows;
