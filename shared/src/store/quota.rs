//! Quota items: `USER#{user}` / `QUOTA#{platform}` with per-window attributes
//! `{window}_limit` (N; absent = unlimited), `{window}_usage` (N) and
//! `{window}_start` (N, epoch seconds of the window the usage belongs to).

use super::attr::{self, Item};
use super::{keys, unavailable, DynamoStore};
use crate::domain::quota::{QuotaRecord, WindowState};
use crate::domain::{UserId, WindowKind};
use crate::error::Error;
use chrono::{DateTime, Utc};
use std::future::Future;

pub trait QuotaStore {
    /// Every quota record of a user (one Query).
    fn user_quotas(
        &self,
        user: &UserId,
    ) -> impl Future<Output = Result<Vec<QuotaRecord>, Error>> + Send;
}

impl QuotaStore for DynamoStore {
    async fn user_quotas(&self, user: &UserId) -> Result<Vec<QuotaRecord>, Error> {
        let mut records = Vec::new();
        let mut start_key = None;
        loop {
            let page = self
                .client()
                .query()
                .table_name(self.table())
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                .expression_attribute_names("#pk", keys::PK)
                .expression_attribute_names("#sk", keys::SK)
                .expression_attribute_values(":pk", attr::s(keys::user_pk(user.as_str())))
                .expression_attribute_values(":prefix", attr::s(keys::QUOTA_SK_PREFIX))
                .consistent_read(true)
                .set_exclusive_start_key(start_key)
                .send()
                .await
                .map_err(unavailable)?;
            for item in page.items() {
                records.push(quota_from_item(item)?);
            }
            start_key = page.last_evaluated_key().cloned();
            if start_key.is_none() {
                return Ok(records);
            }
        }
    }
}

pub(crate) fn window_attr(kind: WindowKind, field: &str) -> String {
    format!("{}_{field}", kind.as_str())
}

pub(crate) fn quota_from_item(item: &Item) -> Result<QuotaRecord, Error> {
    let sk = attr::get_s(item, keys::SK)?;
    let platform = sk.strip_prefix(keys::QUOTA_SK_PREFIX).unwrap_or(sk);
    let mut record = QuotaRecord::unlimited(platform);
    for kind in WindowKind::ALL {
        let start = attr::opt_i64(item, &window_attr(kind, "start"))?
            .and_then(|secs| DateTime::<Utc>::from_timestamp(secs, 0));
        *record.window_mut(kind) = WindowState {
            limit: attr::opt_usd(item, &window_attr(kind, "limit"))?,
            usage: attr::opt_usd(item, &window_attr(kind, "usage"))?.unwrap_or_default(),
            start,
        };
    }
    Ok(record)
}
