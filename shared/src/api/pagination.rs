//! `?limit=` / `?cursor=` lists answering `{"items": [...], "next_cursor": ...}`.

use crate::error::Error;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use lambda_http::Request;
use serde::Serialize;
use std::collections::BTreeMap;

pub const DEFAULT_LIMIT: i32 = 20;
pub const MAX_LIMIT: i32 = 100;

/// An opaque position in a list: the store's last key, as base64url JSON.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Cursor(pub BTreeMap<String, String>);

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&self.0).expect("string map serialises"))
    }

    pub fn decode(text: &str) -> Result<Self, Error> {
        let bad = || Error::InvalidRequest("cursor is not one this API returned".into());
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
        serde_json::from_slice(&bytes)
            .map(Cursor)
            .map_err(|_| bad())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: i32,
    pub cursor: Option<Cursor>,
}

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

#[derive(Clone, Debug, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    pub fn new(items: Vec<T>, next: Option<Cursor>) -> Self {
        Self {
            items,
            next_cursor: next.map(|c| c.encode()),
        }
    }
}
