//! The local stack: the product's functions behind a dev gateway, on an embedded
//! DynamoDB-compatible engine or any endpoint the AWS environment names.

pub mod console;
pub mod engine;
pub mod gateway;
pub mod invoke;
pub mod jwt;
pub mod schedule;
pub mod schema;
pub mod server;
pub mod streams;
pub mod template;

pub use gateway::{Functions, Gateway, GatewayRequest};
pub use server::ServeOptions;

use crate::template::Template;
use spendguard_core::config::ENV_TABLE;
use spendguard_core::{Config, DynamoStore, Error};
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

/// Serves `gateway` and the web console over HTTP on `listener` until
/// `shutdown` resolves, with the default read timeouts (30 s).
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let routes = server::Routes {
        gateway,
        console: Some(Arc::new(console::Console::from_env())),
    };
    server::serve_routes(listener, routes, ServeOptions::default(), shutdown).await
}
