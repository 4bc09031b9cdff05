//! Redemption codes: generation and normalisation, the grant a code carries,
//! code status, the calendar arithmetic of subscription extension and the
//! failed-attempt window. Pure: no store, no AWS types.
//!
//! A code reads `PREFIX-XXXX-XXXX-XXXX-XXXX`: an optional admin prefix and 16
//! symbols of Crockford base32 (80 bits from the OS CSPRNG). It is matched by
//! its *key*: upper case, separators removed, and the look-alikes `I L` → `1`,
//! `O` → `0` folded, so `abcd-efgh...` and `ABCDEFGH...` find the same code.
//!
//! Files by concern: `codes`, `subscription`, `batch` (the creation body and
//! its plan), `status` (codes as stored), `record` (redemptions and their
//! view), `limiter` (the failure window).

use super::ids::id_newtype;
use super::{validate_id, UserId};
use crate::error::Error;
use chrono::{DateTime, Months, SecondsFormat, TimeDelta, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use std::fmt;

/// Crockford base32: digits and letters without `I L O U`, so a code read aloud
/// or typed from paper cannot be misread.
pub const CODE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Random symbols per code: 16 × 5 bits = 80 bits of entropy.
pub const RANDOM_SYMBOLS: usize = 16;
/// Symbols per group in the printed form.
const GROUP: usize = 4;
pub const MAX_PREFIX_LEN: usize = 16;
pub const MAX_BATCH_SIZE: i64 = 1000;
/// Per code; bounded so `max_uses × credits` stays far inside i64.
pub const MAX_CREDITS: i64 = 1_000_000_000_000;
pub const MAX_USES: i64 = 1_000_000_000;
/// Per code; bounded so extended expiries stay inside the calendar's range.
pub const MAX_QUANTITY: u32 = 1000;
pub const MAX_BATCH_NAME_CHARS: usize = 200;
/// Failed redemptions a user may make in [`FAILURE_WINDOW_MINUTES`]; the next
/// attempt is refused with 429 before it touches any code.
pub const MAX_FAILED_ATTEMPTS: i64 = 20;
pub const FAILURE_WINDOW_MINUTES: i64 = 60;

/// RFC 3339 as every response and stored timestamp of this module writes it.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

mod batch;
mod codes;
mod limiter;
mod record;
mod status;
mod subscription;
#[cfg(test)]
mod tests;

pub use batch::*;
pub use codes::*;
pub use limiter::*;
pub use record::*;
pub use status::*;
pub use subscription::*;
