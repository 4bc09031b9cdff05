//! Section 5: scale on paper, from the capacity units measured in section 1.
//! Prices: AWS public list prices, us-east-1, as of 2025-01 (DynamoDB
//! on-demand since its price cut of 2024-11-01; Lambda arm64).

use crate::costs::{Baselines, Measured};
use crate::table::{dollars, thousands, Row};
use spendguard_tests::costs::{Cost, Operation};

/// $ per million write / read request units, DynamoDB on-demand, Standard table class.
const WRU: f64 = 0.625;
const RRU: f64 = 0.125;
/// Lambda arm64: $ per GB-second and per million requests.
const GB_SECOND: f64 = 0.000_013_333_4;
const LAMBDA_REQUESTS: f64 = 0.20;
/// The template's memory (infra/template.yaml, Globals) and the usage
/// queue's batch size (BatchSize of the usage-ingest event source).
const MEMORY_GB: f64 = 0.25;
const TEMPLATE_BATCH: f64 = 50.0;
/// Assumed Lambda time per DynamoDB request (in-region round trip; sequential,
/// so an upper bound): the engine here is local, its times are not Lambda's.
const MS_PER_REQUEST: f64 = 10.0;
/// DynamoDB's write limit per partition.
const PARTITION_WCU: f64 = 1_000.0;

pub fn notes() -> Vec<String> {
    vec![format!(
        "Prices (AWS public list prices, us-east-1, as of 2025-01): DynamoDB on-demand ${WRU} per million write request units, ${RRU} per million read request units (since the 2024-11-01 price cut); Lambda arm64 ${GB_SECOND} per GB-s and ${LAMBDA_REQUESTS} per million requests, {:.0} MB (the template's), {TEMPLATE_BATCH:.0} events per invocation (the template's BatchSize), {MS_PER_REQUEST:.0} ms of Lambda time assumed per DynamoDB request. SQS, storage, streams and free tiers are left out.",
        MEMORY_GB * 1024.0
    )]
}

/// Per event: (DynamoDB $, Lambda $) at `events_per_invocation`.
fn per_event(cost: &Cost, events_per_invocation: f64) -> (f64, f64) {
    let wire = cost.wire.unwrap_or_default();
    let dynamo = (cost.per_op(wire.write_units) * WRU + cost.per_op(wire.read_units) * RRU) / 1e6;
    let seconds = cost.requests_per_op() * events_per_invocation * MS_PER_REQUEST / 1e3;
    let lambda = (seconds * MEMORY_GB * GB_SECOND + LAMBDA_REQUESTS / 1e6) / events_per_invocation;
    (dynamo, lambda)
}

fn monthly(cost: &Cost, batch: f64, events: f64) -> String {
    let (d, l) = per_event(cost, batch);
    format!(
        "{} (DynamoDB {} + Lambda {})",
        dollars((d + l) * events),
        dollars(d * events),
        dollars(l * events)
    )
}

pub fn rows(measured: &[Measured], base: &Baselines) -> Vec<Row> {
    let cost = |op| {
        measured
            .iter()
            .find(|m| m.op == op)
            .map(|m| m.cost)
            .expect("measured")
    };
    let steady = cost(Operation::UsageEventSteady);
    let batch10 = cost(Operation::UsageBatch10);
    let batch1000 = cost(Operation::UsageBatch1000);
    let naive = &base.naive_event;
    let million_users = 1e6 * 100.0 * 30.0;
    let mut rows = vec![
        Row::new(
            "5 scale",
            "1,000,000 users × 100 events/day, per 30-day month (events of distinct users: steady cost each)",
        )
        .figure(monthly(&steady, TEMPLATE_BATCH, million_users))
        .baseline(format!("naive read-modify-write: {}", monthly(naive, TEMPLATE_BATCH, million_users))),
        Row::new("5 scale", "one hot user, per 1,000,000 events in SQS batches of 10 (coalesced)")
            .figure(monthly(&batch10, 10.0, 1e6))
            .baseline(format!("naive read-modify-write: {}", monthly(naive, 10.0, 1e6))),
        Row::new("5 scale", "one hot user, per 1,000,000 events in Lambda batches of 1,000 (coalesced)")
            .figure(monthly(&batch1000, 1_000.0, 1e6))
            .baseline(format!("naive read-modify-write: {}", monthly(naive, 1_000.0, 1e6))),
    ];
    for (name, c) in [
        ("SQS batches of 10", batch10),
        ("Lambda batches of 1,000", batch1000),
    ] {
        let Some(w) = c.wire.filter(|w| w.write_attempts > 0) else {
            continue;
        };
        let wcu_per_write = w.write_units / w.write_attempts as f64;
        let events_per_write = c.ops as f64 / w.write_attempts as f64;
        let ceiling = PARTITION_WCU / wcu_per_write * events_per_write;
        let naive_ceiling = naive.wire.filter(|w| w.write_attempts > 0).map(|w| {
            PARTITION_WCU / (w.write_units / w.write_attempts as f64)
                * (naive.ops as f64 / w.write_attempts as f64)
        });
        rows.push(
            Row::new(
                "5 scale",
                format!("hot-user ceiling, {name}: 1,000 WCU/s ÷ WCU per write × events per write"),
            )
            .figure(format!(
                "{} events/s (1,000 ÷ {wcu_per_write:.1} × {events_per_write:.1})",
                thousands(ceiling)
            ))
            .baseline(match naive_ceiling {
                Some(n) => format!("naive read-modify-write: {} events/s", thousands(n)),
                None => "—".into(),
            }),
        );
    }
    rows
}
