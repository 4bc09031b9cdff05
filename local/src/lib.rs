//! The local stack: the product's functions behind a dev gateway, on an embedded
//! DynamoDB-compatible engine or any endpoint the AWS environment names.

pub mod console;
pub mod engine;
pub mod gateway;
pub mod jwt;

pub use gateway::{Functions, Gateway, GatewayRequest};

use spendguard_core::config::ENV_TABLE;
use spendguard_core::store::schema;
use spendguard_core::template::Template;
use spendguard_core::{Config, DynamoStore, Error};
use std::net::SocketAddr;
use std::sync::Arc;

/// The standard variables that point aws-sdk-dynamodb at another endpoint.
pub const ENDPOINT_VARS: &[&str] = &["AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL"];

/// The endpoint the environment names, if any.
pub fn endpoint_from_env() -> Option<String> {
    ENDPOINT_VARS
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
}

/// Creates every table of the template that is missing. Tables bound to
/// `SPENDGUARD_TABLE` take `config.table_name`.
pub async fn ensure_tables(store: &DynamoStore, config: &Config) -> Result<Vec<String>, Error> {
    let mut created = Vec::new();
    for spec in Template::bundled().tables() {
        let name = match spec.env_var.as_deref() {
            Some(ENV_TABLE) => config.table_name.clone(),
            _ => spec.logical_id.clone(),
        };
        if schema::ensure_table(store, &spec, &name).await? {
            created.push(name);
        }
    }
    Ok(created)
}

/// Serves `gateway` over HTTP on `listener` until `shutdown` resolves.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The web console's routes first; everything else goes to the gateway.
    let app = console::routes().fallback(
        move |axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
              req: axum::extract::Request| {
            let gateway = gateway.clone();
            async move { forward(&gateway, peer, req).await }
        },
    );
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Largest request the dev gateway reads (API Gateway's limit is 10 MB).
const MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;

async fn forward(
    gateway: &Gateway,
    peer: SocketAddr,
    req: axum::extract::Request,
) -> axum::response::Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_REQUEST_BYTES)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    let response = gateway
        .handle(GatewayRequest {
            method: parts.method,
            path: parts.uri.path().to_string(),
            query: parts.uri.query().map(str::to_string),
            headers: parts.headers,
            body,
            source_ip: peer.ip().to_string(),
        })
        .await;
    let (parts, body) = response.into_parts();
    let bytes: Vec<u8> = match body {
        lambda_http::Body::Text(t) => t.into_bytes(),
        lambda_http::Body::Binary(b) => b,
        _ => Vec::new(),
    };
    axum::response::Response::from_parts(parts, axum::body::Body::from(bytes))
}
