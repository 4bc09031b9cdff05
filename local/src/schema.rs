//! Creates the tables `infra/template.yaml` defines (local stack and tests).

use crate::template::{KeySpec, TableSpec};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TableDescription, TimeToLiveSpecification,
};
use spendguard_core::store::{unavailable, DynamoStore};
use spendguard_core::Error;

fn key_schema(keys: &[KeySpec]) -> Result<Vec<KeySchemaElement>, Error> {
    keys.iter()
        .map(|k| {
            KeySchemaElement::builder()
                .attribute_name(&k.attribute)
                .key_type(KeyType::from(k.key_type.as_str()))
                .build()
                .map_err(|e| Error::Internal(format!("template key schema: {e}")))
        })
        .collect()
}

/// Creates `spec` under the name `table` unless a table of that name exists.
/// Returns whether it created it.
pub async fn ensure_table(
    store: &DynamoStore,
    spec: &TableSpec,
    table: &str,
) -> Result<bool, Error> {
    let client = store.client();
    let existing = client.list_tables().send().await.map_err(unavailable)?;
    if existing.table_names().iter().any(|t| t == table) {
        return Ok(false);
    }
    let bad =
        |e: aws_sdk_dynamodb::error::BuildError| Error::Internal(format!("template table: {e}"));
    let mut create = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(key_schema(&spec.keys)?));
    for (name, ty) in &spec.attributes {
        create = create.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::from(ty.as_str()))
                .build()
                .map_err(bad)?,
        );
    }
    for index in &spec.indexes {
        create = create.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(&index.name)
                .set_key_schema(Some(key_schema(&index.keys)?))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .map_err(bad)?,
        );
    }
    create.send().await.map_err(unavailable)?;
    wait_until_active(store, table).await?;
    if let Some(ttl) = &spec.ttl_attribute {
        client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(ttl)
                    .enabled(true)
                    .build()
                    .map_err(bad)?,
            )
            .send()
            .await
            .map_err(unavailable)?;
    }
    Ok(true)
}

/// `DescribeTable` of `table`.
pub async fn describe(store: &DynamoStore, table: &str) -> Result<TableDescription, Error> {
    store
        .client()
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map_err(unavailable)?
        .table
        .ok_or_else(|| Error::StoreUnavailable(format!("DescribeTable {table}: no table")))
}

/// Real DynamoDB creates tables asynchronously; local engines answer ACTIVE at once.
async fn wait_until_active(store: &DynamoStore, table: &str) -> Result<(), Error> {
    use aws_sdk_dynamodb::types::TableStatus;
    for _ in 0..120 {
        if describe(store, table).await?.table_status() == Some(&TableStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    Err(Error::StoreUnavailable(format!(
        "table {table} did not become ACTIVE"
    )))
}
