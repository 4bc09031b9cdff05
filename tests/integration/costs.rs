//! Request budgets, counted (not timed): every operation of `make bench`'s
//! section 1 in its steady state against the budget of the contract and of
//! the "Lean core" issue, or where none is set, against what the design sends
//! (`spendguard_tests::costs`, which `make bench` reports from too). Requests
//! are what the code sends; the SDK's own retries (attempts) are counted
//! apart and not held against the budget, so a loaded machine cannot fail
//! these tests.

use spendguard_tests::costs::{measure, Operation};

async fn within_budget(op: Operation) {
    let (budget, source) = op.ceiling();
    let cost = measure(op, false).await;
    assert!(cost.attempts >= cost.requests);
    assert!(
        cost.requests_per_op() <= budget + 1e-9,
        "{}: {:.3} requests per operation over {} (ceiling {budget}: {})",
        op.name(),
        cost.requests_per_op(),
        cost.ops,
        source
    );
}

#[tokio::test]
async fn quota_check_costs_one_request() {
    within_budget(Operation::QuotaCheck).await;
}

#[tokio::test]
async fn a_steady_usage_event_costs_one_request() {
    within_budget(Operation::UsageEventSteady).await;
}

#[tokio::test]
async fn a_usage_event_with_credits_costs_at_most_two_requests() {
    within_budget(Operation::UsageEventCredits).await;
}

#[tokio::test]
async fn ten_events_of_one_user_in_a_batch_cost_a_tenth_of_a_request_each() {
    within_budget(Operation::UsageBatch10).await;
}

#[tokio::test]
async fn ten_events_with_credits_of_one_user_in_a_batch_cost_at_most_0_3_requests_each() {
    within_budget(Operation::UsageBatch10Credits).await;
}

#[tokio::test]
async fn a_reservation_costs_one_request() {
    within_budget(Operation::ReservationCreate).await;
}

#[tokio::test]
async fn settling_adds_no_request_to_the_events_write() {
    within_budget(Operation::ReservationSettle).await;
}

#[tokio::test]
async fn a_void_costs_at_most_two_requests() {
    within_budget(Operation::ReservationVoid).await;
}

#[tokio::test]
async fn a_credit_adjustment_with_a_key_costs_at_most_two_requests() {
    within_budget(Operation::CreditAdjust).await;
}

#[tokio::test]
async fn a_redemption_with_a_key_costs_at_most_three_requests() {
    within_budget(Operation::RedeemSuccess).await;
}

#[tokio::test]
async fn a_refused_redemption_costs_at_most_four_requests() {
    within_budget(Operation::RedeemRefusedUnknown).await;
    within_budget(Operation::RedeemRefusedExhausted).await;
}

// The rows of `make bench`'s section 1 that no document budgets: held at
// what the design sends (`Operation::ceiling`).

#[tokio::test]
async fn an_event_at_a_window_rollover_costs_at_most_two_requests() {
    within_budget(Operation::UsageEventRollover).await;
}

#[tokio::test]
async fn a_thousand_events_of_one_user_cost_one_write_per_99() {
    within_budget(Operation::UsageBatch1000).await;
}

#[tokio::test]
async fn an_admin_page_costs_one_query_or_two_requests_where_it_reads_its_parent() {
    for op in [
        Operation::ListLedger,
        Operation::ListAudit,
        Operation::ListAlerts,
        Operation::ListCodes,
        Operation::ListRedemptions,
    ] {
        within_budget(op).await;
    }
}

/// Every row of the report is held to a ceiling by a test of this file.
#[test]
fn every_operation_has_a_ceiling() {
    for op in Operation::ALL {
        let (ceiling, why) = op.ceiling();
        assert!(ceiling > 0.0 && !why.is_empty(), "{}", op.name());
    }
}

/// Every operation runs to completion through the metering proxy, and the
/// proxy sees what the store sent (each request at least once on the wire).
#[tokio::test]
async fn every_operation_is_measured_through_the_meter() {
    for op in Operation::ALL {
        let cost = measure(op, true).await;
        let Some(wire) = cost.wire else {
            eprintln!("metering needs a local engine; skipped");
            return;
        };
        assert!(cost.requests > 0, "{}: no request", op.name());
        assert_eq!(wire.attempts, cost.attempts, "{}", op.name());
        assert!(
            wire.read_units + wire.write_units > 0.0,
            "{}: no capacity reported",
            op.name()
        );
    }
}
