//! The DynamoDB adapter. Every spendguard item lives in one table (name from
//! configuration); [`keys`] documents the key design. Narrow traits per capability
//! (e.g. [`QuotaStore`]) are what handlers depend on.

pub mod attr;
pub mod audit;
pub mod credits;
#[cfg(test)]
mod fake;
pub mod idempotency;
pub mod keys;
pub(crate) mod list;
pub mod lock;
mod quota;
pub mod redemption;
pub mod reservations;
pub mod schema;
mod stats;
pub mod txn;
pub mod usage;

pub use audit::{AuditFilter, AuditStore};
pub use credits::{CommitError, CreditStore, CreditTxn};
pub use idempotency::{Claim, Fingerprint, Lease, StoredResponse};
pub use lock::LockLease;
pub use quota::QuotaStore;
pub use redemption::{CodeFilter, CreatedBatch, RedeemOutcome, RedeemRequest};
pub use stats::RequestStats;
pub use usage::{IngestContext, IngestOutcome, UsageStore, WriteStats};

use crate::config::Config;
use crate::error::Error;
use aws_sdk_dynamodb::config::{Credentials, Region};
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::Client;
use std::sync::Arc;

/// Region used when nothing in the environment names one (local engines ignore it).
const FALLBACK_REGION: &str = "us-east-1";

#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: Arc<str>,
    stats: Arc<RequestStats>,
}

impl DynamoStore {
    /// Endpoint, region and credentials from the standard AWS environment
    /// (`AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL`, `AWS_REGION`, ...).
    pub async fn from_env(config: &Config) -> Self {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        let mut builder = aws_sdk_dynamodb::config::Builder::from(&sdk);
        if sdk.region().is_none() {
            builder = builder.region(Region::new(FALLBACK_REGION));
        }
        Self::with_builder(builder, &config.table_name)
    }

    /// A client for a DynamoDB-compatible engine at `endpoint` with placeholder
    /// credentials (local engines accept any).
    pub fn for_local_endpoint(endpoint: &str, table: &str) -> Self {
        let builder = aws_sdk_dynamodb::config::Builder::new()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(Region::new(FALLBACK_REGION))
            .credentials_provider(Credentials::new(
                "local",
                "local",
                None,
                None,
                "spendguard-local",
            ));
        Self::with_builder(builder, table)
    }

    fn with_builder(builder: aws_sdk_dynamodb::config::Builder, table: &str) -> Self {
        let stats = Arc::new(RequestStats::default());
        let client = Client::from_conf(
            builder
                .interceptor(stats::CountingInterceptor(stats.clone()))
                .build(),
        );
        Self {
            client,
            table: table.into(),
            stats,
        }
    }

    /// The same connection on another table (tests give each case its own).
    pub fn with_table(&self, table: &str) -> Self {
        Self {
            client: self.client.clone(),
            table: table.into(),
            stats: Arc::new(RequestStats::default()),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// One item by primary key, strongly consistent.
    pub async fn get_consistent(&self, key: attr::Item) -> Result<Option<attr::Item>, Error> {
        let out = self
            .client()
            .get_item()
            .table_name(self.table())
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out.item)
    }

    /// Every item of partition `pk` whose sort key begins with `prefix`, all
    /// pages, strongly consistent (small partitions: a user's quotas, the defaults).
    pub async fn query_prefix(&self, pk: &str, prefix: &str) -> Result<Vec<attr::Item>, Error> {
        let mut items = Vec::new();
        let mut start_key = None;
        loop {
            let page = self
                .client()
                .query()
                .table_name(self.table())
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                .expression_attribute_names("#pk", keys::PK)
                .expression_attribute_names("#sk", keys::SK)
                .expression_attribute_values(":pk", attr::s(pk))
                .expression_attribute_values(":prefix", attr::s(prefix))
                .consistent_read(true)
                .set_exclusive_start_key(start_key)
                .send()
                .await
                .map_err(unavailable)?;
            start_key = page.last_evaluated_key().cloned();
            items.extend(page.items.unwrap_or_default());
            if start_key.is_none() {
                return Ok(items);
            }
        }
    }

    /// Requests sent to DynamoDB through this store (every attempt counts).
    pub fn stats(&self) -> &RequestStats {
        &self.stats
    }
}

/// Any SDK failure that is not a business outcome: the store is unavailable.
pub fn unavailable<E: std::fmt::Debug>(err: SdkError<E>) -> Error {
    let text = match &err {
        SdkError::ServiceError(e) => format!("{:?}", e.err()),
        other => format!("{other:?}"),
    };
    Error::StoreUnavailable(text)
}
