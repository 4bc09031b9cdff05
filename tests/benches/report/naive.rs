//! The naive baseline: one read-modify-write per usage event, with the same
//! exactly-once guarantee as the product (the event's record is written once,
//! in the same transaction as the usage it adds). Per event: a strongly
//! consistent `GetItem` of the user's usage item, then one
//! `TransactWriteItems` of the event record (`attribute_not_exists`) and the
//! item with the new usage (conditioned on the version read); a lost race
//! reads again, a duplicate event stops. Its own items (`NAIVE#...`) in the
//! same table, so the product's items are not touched.

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use spendguard_core::store::keys::{PK, SK};
use spendguard_core::DynamoStore;
use std::collections::HashMap;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn put(
    store: &DynamoStore,
    item: HashMap<String, AttributeValue>,
    condition: &str,
    version: Option<i64>,
) -> Put {
    Put::builder()
        .table_name(store.table())
        .set_item(Some(item))
        .condition_expression(condition)
        .set_expression_attribute_values(version.map(|v| HashMap::from([(":v".to_string(), n(v))])))
        .build()
        .expect("put")
}

/// Applies one event of `micros` (millionths of a dollar) to `user`'s usage
/// exactly once; returns whether this call applied it.
pub async fn apply(store: &DynamoStore, user: &str, event_id: &str, micros: i64) -> bool {
    let key = HashMap::from([
        (PK.to_string(), s(format!("NAIVE#{user}"))),
        (SK.to_string(), s("USAGE")),
    ]);
    loop {
        let got = store
            .client()
            .get_item()
            .table_name(store.table())
            .set_key(Some(key.clone()))
            .consistent_read(true)
            .send()
            .await
            .expect("naive read");
        let number = |name: &str| {
            got.item()
                .and_then(|i| i.get(name))
                .and_then(|v| v.as_n().ok())
                .map_or(0, |v| v.parse::<i64>().expect("number"))
        };
        let (usage, version) = (number("usage_micros"), number("version"));
        let mut item = key.clone();
        item.insert("usage_micros".into(), n(usage + micros));
        item.insert("version".into(), n(version + 1));
        let usage_put = if version == 0 {
            put(store, item, "attribute_not_exists(pk)", None)
        } else {
            put(store, item, "version = :v", Some(version))
        };
        let record = HashMap::from([
            (PK.to_string(), s(format!("NAIVE-EVENT#{event_id}"))),
            (SK.to_string(), s("EVENT")),
            ("user_id".to_string(), s(user)),
            ("cost_micros".to_string(), n(micros)),
        ]);
        let result = store
            .client()
            .transact_write_items()
            .transact_items(
                TransactWriteItem::builder()
                    .put(put(store, record, "attribute_not_exists(pk)", None))
                    .build(),
            )
            .transact_items(TransactWriteItem::builder().put(usage_put).build())
            .send()
            .await;
        let canceled = match result {
            Ok(_) => return true,
            Err(SdkError::ServiceError(e)) => match e.into_err() {
                TransactWriteItemsError::TransactionCanceledException(c) => c,
                other => panic!("naive write: {other:?}"),
            },
            Err(e) => panic!("naive write: {e:?}"),
        };
        let duplicate = canceled
            .cancellation_reasons()
            .first()
            .and_then(|r| r.code())
            .is_some_and(|c| c == "ConditionalCheckFailed");
        if duplicate {
            return false;
        }
        // The usage item moved (or a conflict): read again.
    }
}
