//! Section 4: latency of the quota check and of a reservation as a ratio to
//! the bare DynamoDB request each rests on — a strongly consistent `GetItem`
//! and a one-item conditional `UpdateItem` of the same quota item — all four
//! interleaved in one loop so they see the same machine load.

use crate::costs::bare_update;
use crate::table::Row;
use crate::untokened::world_untokened;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use serde_json::json;
use spendguard_core::store::keys;
use spendguard_tests::costs::{set_quota, PLATFORM};
use spendguard_tests::TestResponse;
use std::time::{Duration, Instant};

const TARGET: f64 = 1.5;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6
}

/// How long `work` took; an HTTP answer must have `status` (0: not HTTP).
async fn timed<T: Answer>(work: impl std::future::Future<Output = T>, status: u16) -> Duration {
    let t = Instant::now();
    let answer = work.await;
    let took = t.elapsed();
    answer.expect_status(status);
    took
}

trait Answer {
    fn expect_status(&self, status: u16);
}

impl Answer for () {
    fn expect_status(&self, _: u16) {}
}

impl Answer for TestResponse {
    fn expect_status(&self, status: u16) {
        self.assert_status(status);
    }
}

pub async fn run(n: usize) -> Vec<Row> {
    let env = world_untokened().await;
    let user = "bench-user";
    set_quota(&env, user).await;
    let key = keys::item_key(keys::user_pk(user), keys::quota_sk(PLATFORM));
    let check = json!({"user_id": user, "platform": PLATFORM});
    let reserve = json!({"user_id": user, "platform": PLATFORM, "estimate_usd": "0.0001"});
    let mut times: [Vec<Duration>; 5] = Default::default();
    for i in 0..n + 50 {
        let a = timed(
            env.post("/v1/quota/check").as_service().json(&check).send(),
            200,
        )
        .await;
        let b = timed(
            async {
                env.store
                    .get_consistent(key.clone())
                    .await
                    .expect("GetItem");
            },
            0,
        )
        .await;
        let c = timed(
            env.post("/v1/quota/reservations")
                .as_service()
                .json(&reserve)
                .send(),
            201,
        )
        .await;
        let d = timed(bare_update(&env.store, &key), 0).await;
        let e = timed(bare_transaction(&env.store, &key, i), 0).await;
        // The first 50 warm connections and caches.
        if i >= 50 {
            for (v, x) in times.iter_mut().zip([a, b, c, d, e]) {
                v.push(x);
            }
        }
    }
    for v in times.iter_mut() {
        v.sort();
    }
    let [check, get, reserve, update, transaction] = &times;
    let row = |what: &str, op: &[Duration], bare: &[Duration], bare_name: &str| {
        let (p50, p99) = (percentile(op, 0.5), percentile(op, 0.99));
        let (b50, b99) = (percentile(bare, 0.5), percentile(bare, 0.99));
        Row::new("4 latency", format!("{what} p50 / p99 ({n} interleaved)"))
            .figure(format!(
                "{:.2}× / {:.2}× ({p50:.0} / {p99:.0} µs)",
                p50 / b50,
                p99 / b99
            ))
            .baseline(format!("{bare_name}: {b50:.0} / {b99:.0} µs"))
            .at_most(p50 / b50, TARGET, format!("p50 ≤ {TARGET}×"))
    };
    // What the reservation's one request is at least: a transaction of two
    // items. Shown beside the target's baseline, not instead of it.
    let reserve_row = {
        let (t50, t99) = (percentile(transaction, 0.5), percentile(transaction, 0.99));
        let r50 = percentile(reserve, 0.5);
        let mut r = row(
            "reservation create",
            reserve,
            update,
            "bare one-item conditional UpdateItem",
        );
        r.baseline.push_str(&format!(
            "; also interleaved, a bare two-item TransactWriteItems (a Put of a new item and that UpdateItem: what a reservation writes at least): {t50:.0} / {t99:.0} µs, reservation p50 {:.2}× it",
            r50 / t50
        ));
        r
    };
    vec![
        row(
            "quota check (service token, full handler)",
            check,
            get,
            "bare strongly consistent GetItem",
        ),
        reserve_row,
    ]
}

/// A `TransactWriteItems` of a Put of a new item (`attribute_not_exists`) and
/// the one-item conditional update of [`bare_update`].
async fn bare_transaction(
    store: &spendguard_core::DynamoStore,
    key: &std::collections::HashMap<String, AttributeValue>,
    i: usize,
) {
    let item = keys::item_key(format!("BENCH#{i}"), "RESERVATION".to_string());
    let put = Put::builder()
        .table_name(store.table())
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk)")
        .build()
        .expect("Put");
    let update = Update::builder()
        .table_name(store.table())
        .set_key(Some(key.clone()))
        .update_expression("ADD bench_touch :one")
        .condition_expression("attribute_exists(pk)")
        .expression_attribute_values(":one", AttributeValue::N("1".into()))
        .build()
        .expect("Update");
    store
        .client()
        .transact_write_items()
        .transact_items(TransactWriteItem::builder().put(put).build())
        .transact_items(TransactWriteItem::builder().update(update).build())
        .send()
        .await
        .expect("TransactWriteItems");
}
