//! Mapping between domain values and DynamoDB attributes, by hand: money is
//! written and read as `N` decimal text, never through a float.

use crate::domain::Usd;
use crate::error::Error;
use crate::paging::Cursor;
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;

pub type Item = HashMap<String, AttributeValue>;

pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub fn usd(value: Usd) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn corrupt(name: &str, why: &str) -> Error {
    Error::Internal(format!("stored attribute {name}: {why}"))
}

pub fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, Error> {
    opt_s(item, name).ok_or_else(|| corrupt(name, "missing or not a string"))
}

pub fn opt_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

pub fn opt_n<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .map(String::as_str)
}

pub fn get_i64(item: &Item, name: &str) -> Result<i64, Error> {
    opt_i64(item, name)?.ok_or_else(|| corrupt(name, "missing"))
}

pub fn opt_i64(item: &Item, name: &str) -> Result<Option<i64>, Error> {
    opt_n(item, name)
        .map(|t| {
            t.parse::<i64>()
                .map_err(|_| corrupt(name, "not an integer"))
        })
        .transpose()
}

/// A money attribute; absent or `NULL` reads as `None`. Read with the store's
/// full precision: a counter may hold more than any one input amount.
pub fn opt_usd(item: &Item, name: &str) -> Result<Option<Usd>, Error> {
    opt_n(item, name)
        .map(|t| Usd::parse_stored(t).map_err(|e| corrupt(name, &e.0)))
        .transpose()
}

pub fn get_bool(item: &Item, name: &str) -> Option<bool> {
    item.get(name).and_then(|v| v.as_bool().ok()).copied()
}

/// A list cursor from a query's `LastEvaluatedKey` (every key attribute is a string).
pub fn cursor_of(key: &Item) -> Cursor {
    Cursor(
        key.iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_s().ok()?.clone())))
            .collect(),
    )
}

/// The `ExclusiveStartKey` a cursor stands for.
pub fn start_key(cursor: &Cursor) -> Item {
    cursor.0.iter().map(|(k, v)| (k.clone(), s(v))).collect()
}
