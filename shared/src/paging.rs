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

/// The one entry of a cursor of a list paged in memory ([`Page::of_all`]).
const AFTER: &str = "after";

impl<T> Page<T> {
    pub fn new(items: Vec<T>, next: Option<Cursor>) -> Self {
        Self {
            items,
            next_cursor: next.map(|c| c.encode()),
        }
    }

    /// One page of a list read whole (a short one: e.g. a user's pending
    /// reservations), ordered by `key` (unique per item). The cursor names the
    /// last key served, so the next page stays right when items come and go
    /// between the requests.
    pub fn of_all(
        items: Vec<T>,
        req: &PageRequest,
        key: impl Fn(&T) -> String,
    ) -> Result<Self, Error> {
        let after = match &req.cursor {
            None => None,
            Some(Cursor(c)) => match c.get(AFTER) {
                Some(k) if c.len() == 1 && !k.is_empty() => Some(k.clone()),
                _ => {
                    return Err(Error::InvalidRequest(
                        "cursor is not one this list returned".into(),
                    ))
                }
            },
        };
        // Each key computed once: it orders, filters and ends the page.
        let mut keyed: Vec<(String, T)> = items.into_iter().map(|i| (key(&i), i)).collect();
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        let limit = usize::try_from(req.limit).unwrap_or(1).max(1);
        let mut rest = keyed
            .into_iter()
            .filter(|(k, _)| after.as_ref().is_none_or(|a| k > a))
            .peekable();
        let page: Vec<(String, T)> = rest.by_ref().take(limit).collect();
        let next = match (rest.peek(), page.last()) {
            (Some(_), Some((last, _))) => {
                Some(Cursor(BTreeMap::from([(AFTER.to_string(), last.clone())])))
            }
            _ => None,
        };
        Ok(Self::new(page.into_iter().map(|(_, i)| i).collect(), next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(limit: i32, cursor: Option<&str>) -> PageRequest {
        PageRequest {
            limit,
            cursor: cursor.map(|c| Cursor::decode(c).expect("a cursor")),
        }
    }

    #[test]
    fn a_list_in_memory_pages_in_key_order_to_a_null_cursor() {
        let items = vec![5, 1, 4, 2, 3];
        let key = |n: &i32| format!("{n:03}");
        let first = Page::of_all(items.clone(), &request(2, None), key).unwrap();
        assert_eq!(first.items, [1, 2]);
        let cursor = first.next_cursor.expect("more");
        let second = Page::of_all(items.clone(), &request(2, Some(&cursor)), key).unwrap();
        assert_eq!(second.items, [3, 4]);
        let cursor = second.next_cursor.expect("more");
        // An item served already is gone: the page after it is unchanged.
        let third = Page::of_all(vec![5, 2, 3, 4], &request(2, Some(&cursor)), key).unwrap();
        assert_eq!(third.items, [5]);
        assert_eq!(third.next_cursor, None);
        let exact = Page::of_all(vec![1, 2], &request(2, None), key).unwrap();
        assert_eq!(exact.next_cursor, None);
    }

    #[test]
    fn a_cursor_of_another_list_is_refused() {
        let other = Cursor(BTreeMap::from([("pk".to_string(), "USER#a".to_string())]));
        let req = PageRequest {
            limit: 2,
            cursor: Some(other),
        };
        let err = Page::of_all(vec![1], &req, |n: &i32| n.to_string()).unwrap_err();
        assert_eq!(err.code(), "invalid_request");
    }
}
