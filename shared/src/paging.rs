//! Lists in pages: a request for one page ([`PageRequest`]), the page answered
//! ([`Page`]: `{"items": [...], "next_cursor": ...}`) and the opaque position
//! between them ([`Cursor`]). The store produces pages; every edge (the HTTP
//! API, the CLI) asks for them. Reading a page request from an HTTP query is the
//! HTTP edge's part (`api::pagination`).

use crate::error::Error;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;
use std::collections::BTreeMap;

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
