//! Paged lists over one partition of the table or an index: `?limit=` and
//! `?cursor=` with `next_cursor: null` exactly on the last page, filters that
//! still fill a page, and cursors checked before they reach DynamoDB.

use super::attr::{self, Item};
use super::{keys, unavailable, DynamoStore};
use crate::error::Error;
use crate::paging::{Page, PageRequest};
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::{BTreeMap, HashMap};

/// DynamoDB requests one list page may spend walking batches and filters.
pub(crate) const MAX_LIST_QUERIES: usize = 10;
/// Items a filtered list evaluates per request.
pub(crate) const FILTERED_READ: usize = 100;

/// One partition of a table or index, optionally narrowed and filtered.
pub(crate) struct ListQuery {
    pub(crate) index: Option<&'static str>,
    pub(crate) partition: (&'static str, String),
    pub(crate) sort_prefix: Option<(&'static str, String)>,
    /// Newest (highest sort key) first.
    pub(crate) descending: bool,
    pub(crate) filter: Option<Filter>,
    pub(crate) consistent: bool,
}

#[derive(Clone, Default)]
pub(crate) struct Filter {
    pub(crate) expression: String,
    pub(crate) names: HashMap<String, String>,
    pub(crate) values: HashMap<String, AttributeValue>,
}

impl Filter {
    /// `attribute = value` on a string attribute.
    pub(crate) fn equals(attribute: &str, value: &str) -> Self {
        Self {
            expression: "#f_attr = :f_value".into(),
            names: HashMap::from([("#f_attr".to_string(), attribute.to_string())]),
            values: HashMap::from([(":f_value".to_string(), attr::s(value))]),
        }
    }
}

/// The primary (and, on gsi1, index) key of an item: where a list continues.
pub(crate) fn item_key(item: &Item, on_index: bool) -> Item {
    let names: &[&str] = if on_index {
        &[keys::PK, keys::SK, keys::GSI1_PK, keys::GSI1_SK]
    } else {
        &[keys::PK, keys::SK]
    };
    names
        .iter()
        .filter_map(|n| Some((n.to_string(), item.get(*n)?.clone())))
        .collect()
}

pub(crate) fn bad_cursor() -> Error {
    Error::InvalidRequest("cursor is not one this list returned".into())
}

/// The start key of a cursor, refused unless it names this list's partition
/// (a forged key would otherwise reach DynamoDB as a 5xx-ish validation error).
pub(crate) fn start_key(
    cursor: &BTreeMap<String, String>,
    partition: &(&'static str, String),
    index: Option<&str>,
) -> Result<Item, Error> {
    let allowed: &[&str] = match index {
        Some(_) => &[keys::PK, keys::SK, keys::GSI1_PK, keys::GSI1_SK],
        None => &[keys::PK, keys::SK],
    };
    // Every key attribute of the list, non-empty, and nothing else: a partial
    // key is a DynamoDB validation error (a 5xx) too.
    let shape_ok = cursor.len() == allowed.len()
        && allowed
            .iter()
            .all(|k| cursor.get(*k).is_some_and(|v| !v.is_empty()))
        && cursor.get(partition.0) == Some(&partition.1);
    if !shape_ok {
        return Err(bad_cursor());
    }
    Ok(cursor
        .iter()
        .map(|(k, v)| (k.clone(), attr::s(v)))
        .collect())
}

impl DynamoStore {
    /// Up to `limit` matching items from `start` on, in as many queries as the
    /// filter needs (bounded); returns the key to continue from, if any.
    pub(crate) async fn query_items(
        &self,
        q: &ListQuery,
        limit: usize,
        mut start: Option<Item>,
        budget: &mut usize,
    ) -> Result<(Vec<Item>, Option<Item>), Error> {
        let mut items = Vec::new();
        loop {
            if *budget == 0 {
                return Ok((items, start));
            }
            *budget -= 1;
            // A filter drops items after `Limit` counted them: read a full page's
            // worth per request and cut the surplus below.
            let wanted = limit - items.len();
            let evaluate = if q.filter.is_some() {
                wanted.max(FILTERED_READ)
            } else {
                wanted
            };
            let mut names = HashMap::from([("#p".to_string(), q.partition.0.to_string())]);
            let mut values = HashMap::from([(":p".to_string(), attr::s(&q.partition.1))]);
            let mut condition = "#p = :p".to_string();
            if let Some((name, prefix)) = &q.sort_prefix {
                names.insert("#s".into(), name.to_string());
                values.insert(":s".into(), attr::s(prefix));
                condition.push_str(" AND begins_with(#s, :s)");
            }
            let mut query = self
                .client()
                .query()
                .table_name(self.table())
                .set_index_name(q.index.map(str::to_string))
                .key_condition_expression(condition)
                .scan_index_forward(!q.descending)
                .limit(i32::try_from(evaluate).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take());
            if q.consistent {
                query = query.consistent_read(true);
            }
            if let Some(filter) = &q.filter {
                names.extend(filter.names.clone());
                values.extend(filter.values.clone());
                query = query.filter_expression(&filter.expression);
            }
            let out = query
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values(Some(values))
                .send()
                .await
                .map_err(unavailable)?;
            items.extend(out.items().iter().cloned());
            start = out.last_evaluated_key().cloned();
            if items.len() > limit {
                // Continue right after the last item kept.
                items.truncate(limit);
                start = items.last().map(|last| item_key(last, q.index.is_some()));
                return Ok((items, start));
            }
            if start.is_none() || items.len() == limit {
                return Ok((items, start));
            }
        }
    }

    /// One page of a single-partition list.
    pub(crate) async fn list_page<T>(
        &self,
        q: ListQuery,
        page: &PageRequest,
        parse: impl Fn(&Item) -> Result<T, Error>,
    ) -> Result<Page<T>, Error> {
        let start = page
            .cursor
            .as_ref()
            .map(|c| start_key(&c.0, &q.partition, q.index))
            .transpose()?;
        // A start key outside the key condition is a DynamoDB validation error.
        if let (Some(start), Some((name, prefix))) = (&start, &q.sort_prefix) {
            if !attr::opt_s(start, name).is_some_and(|v| v.starts_with(prefix.as_str())) {
                return Err(bad_cursor());
            }
        }
        let limit = usize::try_from(page.limit).unwrap_or(1).max(1);
        let mut budget = MAX_LIST_QUERIES;
        // One item past the page tells whether another page exists, so the last
        // page says `next_cursor: null`.
        let (mut items, mut next) = self.query_items(&q, limit + 1, start, &mut budget).await?;
        if items.len() > limit {
            items.truncate(limit);
            next = items.last().map(|last| item_key(last, q.index.is_some()));
        }
        let items = items.iter().map(parse).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::new(items, next.as_ref().map(attr::cursor_of)))
    }
}
