//! Integration-test harness. Every test gets the real functions behind the dev
//! gateway, on its own table, in a DynamoDB-compatible engine reached over HTTP
//! through aws-sdk-dynamodb. Nothing of our store is mocked.
//!
//! Engine selection:
//! - default: an in-process dynoxide server, one per test binary;
//! - `SPENDGUARD_TEST_ENDPOINT=http://host:port`: any compatible endpoint, with
//!   placeholder credentials (DynamoDB Local, moto, a dynoxide process, ...);
//! - `AWS_ENDPOINT_URL_DYNAMODB` (or `AWS_ENDPOINT_URL`): that endpoint with the
//!   standard AWS credentials and region chain, e.g. real DynamoDB.

use aws_sdk_dynamodb::types::AttributeValue;
use http::{HeaderMap, HeaderValue, Method};
use serde_json::Value;
use spendguard_core::api::PageRequest;
use spendguard_core::domain::audit::AuditEntry;
use spendguard_core::domain::UserId;
use spendguard_core::store::{AuditFilter, AuditStore};
use spendguard_core::{Clock, Config, Deps, DynamoStore};
use spendguard_local::{endpoint_from_env, engine, ensure_tables, jwt, Gateway, GatewayRequest};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

pub mod chaos;
pub mod costs;
pub mod fault;
pub mod invariants;
pub mod meter;
pub mod scenario;

pub use fault::{Fault, FaultProxy};
pub use meter::{Meter, Tally};
pub use spendguard_local::jwt::Role;

pub const ENV_TEST_ENDPOINT: &str = "SPENDGUARD_TEST_ENDPOINT";
const TEST_SECRET: &str = "spendguard-test-secret";

enum Engine {
    /// Placeholder credentials at this URL.
    Local(String),
    /// The standard AWS environment decides endpoint and credentials.
    FromEnv,
}

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        if let Some(url) = std::env::var(ENV_TEST_ENDPOINT)
            .ok()
            .filter(|s| !s.is_empty())
        {
            return Engine::Local(url);
        }
        if endpoint_from_env().is_some() {
            return Engine::FromEnv;
        }
        // The engine outlives every test's own runtime: give it a thread and runtime.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("engine runtime");
            runtime.block_on(async move {
                let endpoint = engine::start(([127, 0, 0, 1], 0).into(), None).await;
                tx.send(endpoint).expect("test waits for the engine");
                std::future::pending::<()>().await
            });
        });
        Engine::Local(
            rx.recv()
                .expect("engine thread")
                .expect("embedded engine starts"),
        )
    })
}

/// The local engine's URL; `None` (saying `what` is skipped) when the suite
/// runs against an endpoint with real AWS credentials.
fn local_engine(what: &str) -> Option<&'static str> {
    match engine() {
        Engine::Local(url) => Some(url),
        Engine::FromEnv => {
            eprintln!("{what} needs a local engine; skipped");
            None
        }
    }
}

/// The local engine's URL (embedded or [`ENV_TEST_ENDPOINT`]); `None`
/// against an endpoint with real AWS credentials.
pub fn local_engine_url() -> Option<&'static str> {
    match engine() {
        Engine::Local(url) => Some(url),
        Engine::FromEnv => None,
    }
}

/// A table name no other test uses.
pub fn fresh_table() -> String {
    format!("t{}", uuid::Uuid::new_v4().simple())
}

/// Describes which engine the suite runs against (printed by tests that care).
pub fn engine_description() -> String {
    match engine() {
        Engine::Local(url) => url.clone(),
        Engine::FromEnv => endpoint_from_env().unwrap_or_default(),
    }
}

/// One test's world: its own table, the real functions, a controllable clock.
pub struct TestEnv {
    pub gateway: Gateway,
    pub store: DynamoStore,
    pub config: Arc<Config>,
    pub clock: Clock,
}

impl TestEnv {
    /// Default configuration (four platforms, UTC), system clock.
    pub async fn new() -> Self {
        Self::build(|_| {}, Clock::system()).await
    }

    /// Adjusts the configuration and picks the clock before the functions are built.
    pub async fn build(configure: impl FnOnce(&mut Config), clock: Clock) -> Self {
        Self::build_at(configure, clock, None).await
    }

    /// Default configuration with the functions' store talking to the engine
    /// through a [`FaultProxy`] (nothing injected until the test says so).
    /// `None` when the suite runs against an endpoint with real AWS
    /// credentials: requests are signed for the endpoint's host, so a proxy
    /// in between would invalidate them.
    pub async fn with_faults(clock: Clock) -> Option<(Self, FaultProxy)> {
        let proxy = FaultProxy::start(local_engine("fault injection")?);
        let env = Self::behind(&proxy, clock).await;
        Some((env, proxy))
    }

    /// A proxy in front of the local engine (`None` as for [`Self::with_faults`]).
    pub fn fault_proxy() -> Option<FaultProxy> {
        local_engine("fault injection").map(FaultProxy::start)
    }

    /// Default configuration, a fresh table, the functions' store talking to
    /// the engine through `proxy` (so a long run can reuse one proxy).
    pub async fn behind(proxy: &FaultProxy, clock: Clock) -> Self {
        Self::build_at(|_| {}, clock, Some(proxy.url())).await
    }

    /// Default configuration with the functions' store talking to the engine
    /// through a [`Meter`] (capacity units counted on the wire). `None` when
    /// the suite runs against an endpoint with real AWS credentials (see
    /// [`TestEnv::with_faults`]).
    pub async fn metered(clock: Clock) -> Option<(Self, Meter)> {
        let meter = Meter::start(local_engine("metering")?);
        let env = Self::build_at(|_| {}, clock, Some(meter.url())).await;
        Some((env, meter))
    }

    async fn build_at(
        configure: impl FnOnce(&mut Config),
        clock: Clock,
        endpoint: Option<&str>,
    ) -> Self {
        let table = fresh_table();
        let mut config = Config::for_table(&table);
        configure(&mut config);
        let store = match (endpoint, engine()) {
            (Some(url), _) => DynamoStore::for_local_endpoint(url, &table),
            (None, Engine::Local(url)) => DynamoStore::for_local_endpoint(url, &table),
            (None, Engine::FromEnv) => DynamoStore::from_env(&config).await,
        };
        Self::with_config(store, config, clock).await
    }

    /// Default configuration over `store`, whose client the caller built for
    /// the local engine ([`local_engine_url`]) on a table of [`fresh_table`]'s.
    pub async fn over(store: DynamoStore, clock: Clock) -> Self {
        let config = Config::for_table(store.table());
        Self::with_config(store, config, clock).await
    }

    async fn with_config(store: DynamoStore, config: Config, clock: Clock) -> Self {
        ensure_tables(&store, &config)
            .await
            .expect("test tables are created");
        let config = Arc::new(config);
        let deps = Deps {
            config: config.clone(),
            store: store.clone(),
            clock: clock.clone(),
        };
        Self {
            gateway: Gateway::new(deps.clone(), TEST_SECRET),
            store,
            config,
            clock,
        }
    }

    /// The dependencies the functions were built with (for calling domain
    /// services directly, e.g. from a CLI test).
    pub fn deps(&self) -> Deps {
        Deps {
            config: self.config.clone(),
            store: self.store.clone(),
            clock: self.clock.clone(),
        }
    }

    pub fn token(&self, user: &str, role: Role) -> String {
        jwt::issue(TEST_SECRET, user, role, 3600)
    }

    /// A token carrying exactly `claims` (plus `exp` if absent), signed like
    /// [`TestEnv::token`]: for claim shapes other identity providers send.
    pub fn token_with_claims(&self, claims: &Value) -> String {
        let mut claims = claims.clone();
        if claims.get("exp").is_none() {
            claims["exp"] = Value::from(chrono::Utc::now().timestamp() + 3600);
        }
        jwt::sign(TEST_SECRET, &claims)
    }

    pub fn request(&self, method: &str, path: &str) -> TestRequest<'_> {
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (path.to_string(), None),
        };
        TestRequest {
            env: self,
            req: GatewayRequest {
                method: Method::from_bytes(method.as_bytes()).expect("valid method"),
                path,
                query,
                headers: HeaderMap::new(),
                body: Vec::new(),
                source_ip: "203.0.113.9".into(),
            },
        }
    }

    pub fn get(&self, path: &str) -> TestRequest<'_> {
        self.request("GET", path)
    }

    pub fn post(&self, path: &str) -> TestRequest<'_> {
        self.request("POST", path)
    }

    pub fn put(&self, path: &str) -> TestRequest<'_> {
        self.request("PUT", path)
    }

    pub fn patch(&self, path: &str) -> TestRequest<'_> {
        self.request("PATCH", path)
    }

    /// Every item of this test's table by `(pk, sk)`, each rendered canonically:
    /// two snapshots are equal exactly when the table is byte-for-byte unchanged.
    pub async fn table_snapshot(&self) -> BTreeMap<(String, String), String> {
        self.scan_items()
            .await
            .iter()
            .map(|item| {
                let key = |k: &str| item[k].as_s().expect("string key").clone();
                ((key("pk"), key("sk")), canonical_item(item))
            })
            .collect()
    }

    /// Every item of this test's table (strongly consistent Scan, every page).
    pub async fn scan_items(&self) -> Vec<HashMap<String, AttributeValue>> {
        let mut all = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .store
                .client()
                .scan()
                .table_name(self.store.table())
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .expect("scan");
            all.extend(out.items().iter().cloned());
            start = out.last_evaluated_key().cloned();
            if start.is_none() {
                return all;
            }
        }
    }

    /// The user's available credits, read from the store.
    pub async fn available(&self, user: &str) -> i64 {
        use spendguard_core::store::CreditStore;
        self.store
            .credit_account(&spendguard_core::domain::UserId::parse(user).expect("user id"))
            .await
            .expect("account read")
            .available
    }

    /// `GET /v1/me/quotas/{platform}/check` as `user`: the Check body (asserts 200).
    pub async fn check_mine(&self, user: &str, platform: &str) -> Value {
        let res = self
            .get(&format!("/v1/me/quotas/{platform}/check"))
            .as_user(user)
            .send()
            .await;
        res.assert_status(200);
        res.body
    }

    /// Every page of an admin list (`path` has its query and `limit`), following
    /// `next_cursor` until it is null; each page's items, in order.
    pub async fn admin_pages(&self, path: &str) -> Vec<Vec<Value>> {
        self.pages_as(path, None).await
    }

    /// Every page of a list as `user` (`None`: as an admin), asserting the
    /// contract's list shape: `items`, and `next_cursor` a string until the
    /// last page says null.
    pub async fn pages_as(&self, path: &str, user: Option<&str>) -> Vec<Vec<Value>> {
        let mut pages = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            assert!(pages.len() < 200, "{path}: the cursor never ends");
            let page_path = match &cursor {
                Some(c) => format!("{path}&cursor={c}"),
                None => path.to_string(),
            };
            let req = self.get(&page_path);
            let res = match user {
                Some(u) => req.as_user(u),
                None => req.as_admin(),
            }
            .send()
            .await;
            res.assert_status(200);
            pages.push(res.body["items"].as_array().expect("items").clone());
            match &res.body["next_cursor"] {
                Value::String(c) => cursor = Some(c.clone()),
                Value::Null => return pages,
                other => panic!("{path}: next_cursor {other}"),
            }
        }
    }

    /// The first 100 audit entries, filtered by user and action as the
    /// admin route filters them.
    pub async fn audit_entries(&self, user: Option<&str>, action: Option<&str>) -> Vec<AuditEntry> {
        let filter = AuditFilter {
            user_id: user.map(|u| UserId::parse(u).expect("valid user id")),
            action: action.map(str::to_string),
        };
        let page = PageRequest {
            limit: 100,
            cursor: None,
        };
        self.store
            .list_audit(&filter, &page)
            .await
            .expect("audit")
            .items
    }

    /// The user's whole ledger through the admin API, every page, oldest first.
    pub async fn full_ledger(&self, user: &str) -> Vec<Value> {
        let path = format!("/v1/admin/users/{user}/credits/transactions?limit=100");
        let mut entries: Vec<Value> = self.admin_pages(&path).await.concat();
        entries.reverse();
        entries
    }

    /// Delivers `events` to usage-ingest as one SQS batch; panics naming the
    /// failed messages if any.
    pub async fn ingest_all(&self, events: &[Value]) {
        let outcome = self
            .gateway
            .functions()
            .usage_ingest
            .process(crate::scenario::sqs_batch(events))
            .await;
        assert!(
            outcome.response.batch_item_failures.is_empty(),
            "failed: {:?}; {:?}",
            outcome.response.batch_item_failures,
            outcome.report
        );
    }

    /// Invokes a function through the Lambda Invoke API with a raw event.
    pub async fn invoke(&self, function: &str, event: &Value) -> TestResponse {
        TestResponse::from(
            self.gateway
                .invoke(function, event.to_string().as_bytes())
                .await,
        )
    }
}

pub struct TestRequest<'a> {
    env: &'a TestEnv,
    req: GatewayRequest,
}

impl TestRequest<'_> {
    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.req
            .headers
            .append(name, HeaderValue::from_str(value).expect("valid header"));
        self
    }

    /// A header with raw bytes (non-ASCII, tab): what HTTP carries but a
    /// `&str` header cannot show.
    pub fn header_bytes(mut self, name: &'static str, value: &[u8]) -> Self {
        self.req.headers.append(
            name,
            HeaderValue::from_bytes(value).expect("bytes HTTP allows in a header"),
        );
        self
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    pub fn as_role(self, user: &str, role: Role) -> Self {
        let token = self.env.token(user, role);
        self.bearer(&token)
    }

    pub fn as_user(self, user: &str) -> Self {
        self.as_role(user, Role::User)
    }

    pub fn as_admin(self) -> Self {
        self.as_role("admin-1", Role::Admin)
    }

    pub fn as_service(self) -> Self {
        self.as_role("gateway-1", Role::Service)
    }

    pub fn json(mut self, body: &Value) -> Self {
        self.req.body = body.to_string().into_bytes();
        self.header("content-type", "application/json")
    }

    pub fn raw_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.req.body = body.into();
        self
    }

    pub async fn send(self) -> TestResponse {
        TestResponse::from(self.env.gateway.handle(self.req).await)
    }
}

#[derive(Debug, Clone)]
pub struct TestResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    /// The body as JSON (`Null` if it is not JSON).
    pub body: Value,
}

impl TestResponse {
    /// The contract's error code, if this is an error body.
    pub fn error_code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }

    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Self {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        self
    }

    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) -> &Self {
        self.assert_status(status);
        assert_eq!(self.error_code(), Some(code), "body: {}", self.text);
        self
    }
}

impl From<lambda_http::Response<lambda_http::Body>> for TestResponse {
    fn from(response: lambda_http::Response<lambda_http::Body>) -> Self {
        let (parts, body) = response.into_parts();
        let text = match body {
            lambda_http::Body::Text(t) => t,
            lambda_http::Body::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
            _ => String::new(),
        };
        Self {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        }
    }
}

/// A file of `events/`, parsed.
pub fn sample_event(name: &str) -> Value {
    let path = format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// An item as text that depends only on its content: maps (the item's and
/// nested `M` values) in key order, sets sorted; a `HashMap`'s `{:?}` would
/// follow its random iteration order.
pub fn canonical_item(item: &HashMap<String, AttributeValue>) -> String {
    let fields: Vec<String> = item
        .iter()
        .map(|(k, v)| format!("{k:?}: {}", canonical_value(v)))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    format!("{{{}}}", fields.join(", "))
}

fn canonical_value(value: &AttributeValue) -> String {
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v.join(", ")
    };
    match value {
        AttributeValue::M(map) => format!("M{}", canonical_item(map)),
        AttributeValue::L(list) => format!(
            "L[{}]",
            list.iter()
                .map(canonical_value)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        AttributeValue::Ss(set) => format!("SS[{}]", sorted(set.clone())),
        AttributeValue::Ns(set) => format!("NS[{}]", sorted(set.clone())),
        AttributeValue::Bs(set) => format!(
            "BS[{}]",
            sorted(set.iter().map(|b| format!("{b:?}")).collect())
        ),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two maps with the same content, built in opposite orders (and with
    /// their own random hash seeds), render identically, nested maps included.
    #[test]
    fn canonical_items_do_not_depend_on_map_order() {
        let build = |order: &mut dyn Iterator<Item = usize>| {
            let mut nested = HashMap::new();
            let mut item = HashMap::new();
            for i in order {
                nested.insert(format!("k{i}"), AttributeValue::N(i.to_string()));
                item.insert(format!("a{i}"), AttributeValue::S(i.to_string()));
            }
            item.insert("limits".into(), AttributeValue::M(nested));
            item.insert(
                "tags".into(),
                AttributeValue::Ss(vec!["b".into(), "a".into()]),
            );
            item
        };
        let forward = build(&mut (0..40));
        let mut backward = build(&mut (0..40).rev());
        assert_eq!(canonical_item(&forward), canonical_item(&backward));
        backward.insert(
            "tags".into(),
            AttributeValue::Ss(vec!["a".into(), "b".into()]),
        );
        assert_eq!(canonical_item(&forward), canonical_item(&backward));
        backward.insert("a3".into(), AttributeValue::S("x".into()));
        assert_ne!(canonical_item(&forward), canonical_item(&backward));
    }
}
