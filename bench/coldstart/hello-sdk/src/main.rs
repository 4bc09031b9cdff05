//! Baseline: what any DynamoDB Lambda function pays, with the SDK's defaults:
//! the standard configuration chain and one DynamoDB client, built in `main`.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let client = &client;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        // One request, so the client's code is linked as in a real function.
        let table = event.payload["table"].as_str().unwrap_or("t").to_string();
        let tables = client.describe_table().table_name(table).send().await?;
        Ok::<Value, Error>(json!({ "found": tables.table().is_some() }))
    }))
    .await
}
