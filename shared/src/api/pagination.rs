//! `?limit=` / `?cursor=` query parameters into a [`PageRequest`] (the paging
//! types themselves live in [`crate::paging`]).

use crate::error::Error;
use crate::paging::{Cursor, PageRequest};
use lambda_http::Request;

pub const DEFAULT_LIMIT: i32 = 20;
pub const MAX_LIMIT: i32 = 100;

impl PageRequest {
    pub fn from_request(req: &Request) -> Result<Self, Error> {
        let limit = match super::query_param(req, "limit") {
            None => DEFAULT_LIMIT,
            Some(text) => text
                .parse::<i32>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| Error::InvalidRequest(format!("limit must be 1-{MAX_LIMIT}")))?,
        };
        // An empty cursor is not one this API returned (`next_cursor` is null
        // on the last page, never "").
        let cursor = super::query_filter(req, "cursor", Cursor::decode)?;
        Ok(Self { limit, cursor })
    }
}
