//! Section 1: DynamoDB cost per operation, counted through the metering
//! proxy (requests and SDK retries apart, read and write units from the
//! engine's `ConsumedCapacity`), beside bare DynamoDB primitives measured the
//! same way.

use crate::naive;
use crate::table::Row;
use spendguard_core::store::keys;
use spendguard_tests::costs::{measure, set_quota, world, Cost, Mark, Operation, PLATFORM};

pub struct Measured {
    pub op: Operation,
    pub cost: Cost,
}

pub struct Baselines {
    pub bare_get: Cost,
    pub bare_update: Cost,
    pub naive_event: Cost,
}

pub async fn run() -> (Vec<Measured>, Baselines) {
    let mut measured = Vec::new();
    for op in Operation::ALL {
        measured.push(Measured {
            op,
            cost: measure(op, true).await,
        });
    }
    (measured, baselines().await)
}

/// The bare primitives on the same quota item, and the naive event.
async fn baselines() -> Baselines {
    let (env, meter) = world(true).await;
    let meter = meter.as_ref();
    let user = "bench-user";
    set_quota(&env, user).await;
    let key = keys::item_key(keys::user_pk(user), keys::quota_sk(PLATFORM));
    let mark = Mark::new(&env, meter);
    for _ in 0..10 {
        env.store
            .get_consistent(key.clone())
            .await
            .expect("GetItem");
    }
    let bare_get = mark.cost(10);
    let mark = Mark::new(&env, meter);
    for _ in 0..10 {
        bare_update(&env.store, &key).await;
    }
    let bare_update = mark.cost(10);
    naive::apply(&env.store, user, "warm", 12_500).await;
    let mark = Mark::new(&env, meter);
    for i in 0..10 {
        naive::apply(&env.store, user, &format!("e-{i}"), 12_500).await;
    }
    Baselines {
        bare_get,
        bare_update,
        naive_event: mark.cost(10),
    }
}

/// A one-item conditional `UpdateItem` of the quota item (a counter of its
/// own, so the product's attributes stay as they are).
pub async fn bare_update(
    store: &spendguard_core::DynamoStore,
    key: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
) {
    store
        .client()
        .update_item()
        .table_name(store.table())
        .set_key(Some(key.clone()))
        .update_expression("ADD bench_touch :one")
        .condition_expression("attribute_exists(pk)")
        .expression_attribute_values(
            ":one",
            aws_sdk_dynamodb::types::AttributeValue::N("1".into()),
        )
        .send()
        .await
        .expect("UpdateItem");
}

/// "1.00 req (0 retries) · 1.0 RCU · 2.0 WCU" per operation.
pub fn describe(cost: &Cost) -> String {
    let mut text = format!(
        "{:.2} req ({:.2} retries)",
        cost.requests_per_op(),
        cost.retries_per_op()
    );
    if let Some(w) = cost.wire {
        text.push_str(&format!(
            " · {:.2} RCU · {:.2} WCU",
            cost.per_op(w.read_units),
            cost.per_op(w.write_units)
        ));
        if w.failed > 0 {
            text.push_str(&format!(
                " · {:.2} failed conditional req (billed by DynamoDB, units not reported)",
                cost.per_op(w.failed as f64)
            ));
        }
    }
    text
}

pub fn rows(measured: &[Measured], base: &Baselines) -> Vec<Row> {
    let steady = measured
        .iter()
        .find(|m| m.op == Operation::UsageEventSteady)
        .map(|m| describe(&m.cost))
        .unwrap_or_default();
    measured
        .iter()
        .map(|m| {
            let per = if m.cost.ops > 1 && is_usage(m.op) {
                " per event"
            } else {
                ""
            };
            let baseline = match m.op {
                Operation::QuotaCheck => format!("bare GetItem: {}", describe(&base.bare_get)),
                Operation::ReservationCreate | Operation::ReservationVoid => format!(
                    "bare conditional UpdateItem: {}",
                    describe(&base.bare_update)
                ),
                Operation::ReservationSettle => format!("plain event: {steady}"),
                Operation::CreditAdjust => "before Lean core: 3 req".into(),
                Operation::RedeemSuccess => "before Lean core: 7 req".into(),
                op if is_usage(op) => {
                    format!("naive read-modify-write: {}", describe(&base.naive_event))
                }
                _ => "—".into(),
            };
            let row = Row::new("1 cost", m.op.name())
                .figure(format!("{}{per}", describe(&m.cost)))
                .baseline(baseline);
            match m.op.budget() {
                Some((budget, source)) => row.at_most(
                    m.cost.requests_per_op(),
                    budget,
                    format!("≤ {budget} req ({source})"),
                ),
                None => row,
            }
        })
        .collect()
}

fn is_usage(op: Operation) -> bool {
    matches!(
        op,
        Operation::UsageEventSteady
            | Operation::UsageEventRollover
            | Operation::UsageEventCredits
            | Operation::UsageBatch10
            | Operation::UsageBatch1000
            | Operation::UsageBatch10Credits
    )
}
