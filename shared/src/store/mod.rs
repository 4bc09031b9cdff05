//! The DynamoDB adapter. Every spendguard item lives in one table (name from
//! configuration); [`keys`] documents the key design. Narrow traits per capability
//! (e.g. [`QuotaStore`]) are what handlers depend on.

pub mod alerts;
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
mod stats;
pub mod txn;
pub mod usage;

pub use alerts::{AlertFilter, AlertStore};
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
use aws_config::environment::{
    EnvironmentVariableCredentialsProvider, EnvironmentVariableRegionProvider,
};
use aws_config::meta::region::ProvideRegion;
use aws_sdk_dynamodb::config::retry::{RetryConfig, RetryMode};
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region, SharedHttpClient};
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::Client;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use std::sync::Arc;

/// Region used when nothing in the environment names one (local engines ignore it).
const FALLBACK_REGION: &str = "us-east-1";

/// Endpoint overrides, most specific first (the SDK's standard variables).
const ENDPOINT_VARS: &[&str] = &["AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL"];
/// Set to `true`, the SDK ignores the endpoint overrides.
const IGNORE_ENDPOINT_VAR: &str = "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS";

/// The SDK's retry settings from `AWS_MAX_ATTEMPTS` and `AWS_RETRY_MODE`, as
/// its configuration loader reads them (without the profile files a Lambda
/// never has): standard mode, 3 attempts unless they say otherwise. A value
/// the loader would refuse is logged and ignored.
fn retry_config(var: impl Fn(&str) -> Option<String>) -> RetryConfig {
    let mut config = RetryConfig::standard();
    if let Some(mode) = var("AWS_RETRY_MODE") {
        match mode.parse::<RetryMode>() {
            Ok(mode) => config = config.with_retry_mode(mode),
            Err(e) => tracing::warn!(%e, "AWS_RETRY_MODE ignored"),
        }
    }
    if let Some(attempts) = var("AWS_MAX_ATTEMPTS") {
        match attempts.trim().parse::<u32>() {
            Ok(n) if n > 0 => config = config.with_max_attempts(n),
            _ => tracing::warn!(attempts, "AWS_MAX_ATTEMPTS ignored (a whole number >= 1)"),
        }
    }
    config
}

/// The one HTTP(S) client: rustls on ring with the system's root certificates
/// (the SDK's default client would bring aws-lc, a second crypto library).
/// The one HTTP client of every AWS SDK client: rustls on ring.
pub fn http_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// The endpoint `AWS_ENDPOINT_URL_DYNAMODB` or `AWS_ENDPOINT_URL` names, as the
/// SDK's own configuration loader reads them.
fn endpoint_url_from_env() -> Option<String> {
    endpoint_url(|var| std::env::var(var).ok())
}

fn endpoint_url(var: impl Fn(&str) -> Option<String>) -> Option<String> {
    if var(IGNORE_ENDPOINT_VAR).is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return None;
    }
    ENDPOINT_VARS
        .iter()
        .find_map(|name| var(name).filter(|url| !url.trim().is_empty()))
}

#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: Arc<str>,
    stats: Arc<RequestStats>,
    open_outcomes: Arc<txn::OpenOutcomes>,
    retries: Arc<txn::RetryStats>,
}

impl DynamoStore {
    /// A transaction `Put` of an item written once (`attribute_not_exists`):
    /// on a failed condition the existing item comes back (`ALL_OLD`), so the
    /// caller tells a duplicate from a conflict without another read.
    pub(crate) fn put_once_action(
        &self,
        item: attr::Item,
    ) -> Result<aws_sdk_dynamodb::types::TransactWriteItem, Error> {
        use aws_sdk_dynamodb::types::{
            Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
        };
        let put = Put::builder()
            .table_name(self.table())
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", keys::PK)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(attr::build_err)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// What a Lambda function needs and nothing more: region (`AWS_REGION`) and
    /// credentials (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN`) from the variables the Lambda service sets, and the
    /// standard endpoint overrides (`AWS_ENDPOINT_URL_DYNAMODB`,
    /// `AWS_ENDPOINT_URL`). No profile files, SSO, credential processes or
    /// instance metadata: Lambda has none, and their code stays out of the
    /// binaries. Retries are the SDK's standard mode with `AWS_MAX_ATTEMPTS`
    /// and `AWS_RETRY_MODE` honoured, as [`Self::from_env`]'s loader does;
    /// timeouts are the SDK's defaults.
    pub async fn from_lambda_env(config: &Config) -> Self {
        let region = EnvironmentVariableRegionProvider::new()
            .region()
            .await
            .unwrap_or_else(|| Region::new(FALLBACK_REGION));
        let mut builder = aws_sdk_dynamodb::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .http_client(http_client())
            .region(region)
            .retry_config(retry_config(|var| std::env::var(var).ok()))
            .credentials_provider(EnvironmentVariableCredentialsProvider::new());
        builder.set_endpoint_url(endpoint_url_from_env());
        Self::from_config(builder, &config.table_name)
    }

    /// Endpoint, region and credentials from the standard AWS configuration
    /// chain (environment, profile files, SSO where the binary enables it,
    /// container and instance metadata): the admin CLI, the local stack and
    /// the tests against AWS.
    pub async fn from_env(config: &Config) -> Self {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http_client())
            .load()
            .await;
        let mut builder = aws_sdk_dynamodb::config::Builder::from(&sdk);
        if sdk.region().is_none() {
            builder = builder.region(Region::new(FALLBACK_REGION));
        }
        Self::from_config(builder, &config.table_name)
    }

    /// A client for a DynamoDB-compatible engine at `endpoint` with placeholder
    /// credentials (local engines accept any).
    pub fn for_local_endpoint(endpoint: &str, table: &str) -> Self {
        Self::from_config(Self::local_endpoint_config(endpoint), table)
    }

    /// The SDK configuration of [`Self::for_local_endpoint`], for a caller that
    /// adds to it (the benchmarks add an interceptor) before [`Self::from_config`].
    pub fn local_endpoint_config(endpoint: &str) -> aws_sdk_dynamodb::config::Builder {
        aws_sdk_dynamodb::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .http_client(http_client())
            .endpoint_url(endpoint)
            .region(Region::new(FALLBACK_REGION))
            .credentials_provider(Credentials::new(
                "local",
                "local",
                None,
                None,
                "spendguard-local",
            ))
    }

    /// A store on `table` over a client built from `builder`, with the
    /// store's own interceptors (request counts, open outcomes) added.
    pub fn from_config(builder: aws_sdk_dynamodb::config::Builder, table: &str) -> Self {
        let stats = Arc::new(RequestStats::default());
        let open_outcomes = Arc::new(txn::OpenOutcomes::default());
        let client = Client::from_conf(
            builder
                .interceptor(stats::CountingInterceptor(stats.clone()))
                .interceptor(txn::OutcomeWatch(open_outcomes.clone()))
                .build(),
        );
        Self {
            client,
            table: table.into(),
            stats,
            open_outcomes,
            retries: Arc::default(),
        }
    }

    /// The same connection on another table (tests give each case its own).
    pub fn with_table(&self, table: &str) -> Self {
        Self {
            client: self.client.clone(),
            table: table.into(),
            stats: Arc::new(RequestStats::default()),
            open_outcomes: self.open_outcomes.clone(),
            retries: Arc::default(),
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

    /// The items at `wanted` (absent ones are left out), strongly consistent,
    /// in one `BatchGetItem` (≤ 100 keys). Keys the engine leaves unprocessed
    /// (throttling) are asked again with jittered backoff.
    pub async fn get_many_consistent(
        &self,
        wanted: Vec<attr::Item>,
    ) -> Result<Vec<attr::Item>, Error> {
        use aws_sdk_dynamodb::types::KeysAndAttributes;
        let mut pending = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(wanted))
                .consistent_read(true)
                .build()
                .map_err(attr::build_err)?,
        );
        let mut found = Vec::new();
        let backoff = txn::Backoff::default();
        let mut attempt = 0;
        while let Some(request) = pending.take() {
            attempt += 1;
            if attempt > backoff.max_attempts {
                return Err(Error::StoreUnavailable(
                    "a batch read kept being throttled".into(),
                ));
            }
            if attempt > 1 {
                tokio::time::sleep(backoff.delay(attempt - 1)).await;
            }
            let out = self
                .client()
                .batch_get_item()
                .request_items(self.table(), request)
                .send()
                .await
                .map_err(unavailable)?;
            if let Some(items) = out.responses().and_then(|r| r.get(self.table())) {
                found.extend(items.iter().cloned());
            }
            pending = out
                .unprocessed_keys()
                .and_then(|u| u.get(self.table()))
                .filter(|k| !k.keys().is_empty())
                .cloned();
        }
        Ok(found)
    }

    /// Every item of partition `pk` whose sort key begins with `prefix`, all
    /// pages, strongly consistent (small partitions: a user's quotas, the defaults).
    pub async fn query_prefix(&self, pk: &str, prefix: &str) -> Result<Vec<attr::Item>, Error> {
        self.query_all(|start_key| {
            self.client()
                .query()
                .table_name(self.table())
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                .expression_attribute_names("#pk", keys::PK)
                .expression_attribute_names("#sk", keys::SK)
                .expression_attribute_values(":pk", attr::s(pk))
                .expression_attribute_values(":prefix", attr::s(prefix))
                .consistent_read(true)
                .set_exclusive_start_key(start_key)
        })
        .await
    }

    /// Every item a query returns, all pages: `page` builds the request of
    /// the page that starts at a key (`None`: the first).
    pub(crate) async fn query_all(
        &self,
        page: impl Fn(Option<attr::Item>) -> QueryFluentBuilder,
    ) -> Result<Vec<attr::Item>, Error> {
        let mut items = Vec::new();
        let mut start_key = None;
        loop {
            let out = page(start_key).send().await.map_err(unavailable)?;
            start_key = out.last_evaluated_key().cloned();
            items.extend(out.items.unwrap_or_default());
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn endpoint_with(vars: &[(&str, &str)]) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        endpoint_url(|name| vars.get(name).cloned())
    }

    fn retry_with(vars: &[(&str, &str)]) -> RetryConfig {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        retry_config(|name| vars.get(name).cloned())
    }

    #[test]
    fn retry_settings_as_the_sdk_loader_reads_them() {
        let default = retry_with(&[]);
        assert_eq!(
            (default.max_attempts(), default.mode()),
            (3, RetryMode::Standard)
        );
        let set = retry_with(&[("AWS_MAX_ATTEMPTS", "5"), ("AWS_RETRY_MODE", "adaptive")]);
        assert_eq!((set.max_attempts(), set.mode()), (5, RetryMode::Adaptive));
        let one = retry_with(&[("AWS_MAX_ATTEMPTS", " 1 "), ("AWS_RETRY_MODE", "Standard")]);
        assert_eq!((one.max_attempts(), one.mode()), (1, RetryMode::Standard));
        for bad in [
            ("AWS_MAX_ATTEMPTS", "0"),
            ("AWS_MAX_ATTEMPTS", "x"),
            ("AWS_RETRY_MODE", "legacy"),
        ] {
            assert_eq!(retry_with(&[bad]), default, "{bad:?}");
        }
    }

    #[test]
    fn endpoint_overrides_as_the_sdk_reads_them() {
        assert_eq!(endpoint_with(&[]), None);
        let general = ("AWS_ENDPOINT_URL", "http://general");
        let dynamodb = ("AWS_ENDPOINT_URL_DYNAMODB", "http://dynamodb");
        assert_eq!(endpoint_with(&[general]).as_deref(), Some("http://general"));
        assert_eq!(
            endpoint_with(&[general, dynamodb]).as_deref(),
            Some("http://dynamodb")
        );
        assert_eq!(
            endpoint_with(&[general, ("AWS_ENDPOINT_URL_DYNAMODB", "")]).as_deref(),
            Some("http://general")
        );
        let ignore = ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true");
        assert_eq!(endpoint_with(&[general, dynamodb, ignore]), None);
    }
}
