//! Seeded fault schedules (tests/harness/chaos.rs) over usage ingest,
//! adjusts, redemptions, reservations and voids: after every run the
//! invariants hold and the totals are exactly what the operations imply.
//! `make soak` runs the same with fresh seeds for SOAK_MINUTES.

use spendguard_tests::chaos::{run_seed, KINDS};
use spendguard_tests::TestEnv;
use std::collections::BTreeMap;

/// Fixed seeds: the same schedules on every `make test`.
const SEEDS: [u64; 6] = [1, 2, 3, 5, 8, 13];
const OPERATIONS: u64 = 20;
const FAULT_RATE: f64 = 0.12;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_seeds_lose_nothing_and_apply_nothing_twice() {
    let Some(proxy) = TestEnv::fault_proxy() else {
        eprintln!("fault injection needs a local engine; skipped");
        return;
    };
    let mut faults: BTreeMap<&str, u64> = BTreeMap::new();
    let (mut operations, mut retries, mut redeliveries) = (0, 0, 0);
    for seed in SEEDS {
        let started = std::time::Instant::now();
        let run = run_seed(&proxy, seed, OPERATIONS, FAULT_RATE).await;
        assert!(run.ok(), "{}", run.failure());
        eprintln!(
            "seed {seed}: {} operations, {} retries, {} redeliveries, faults {:?} ({:.1} s)",
            run.operations,
            run.retries,
            run.redeliveries,
            run.faults,
            started.elapsed().as_secs_f64()
        );
        operations += run.operations;
        retries += run.retries;
        redeliveries += run.redeliveries;
        for (kind, n) in run.faults {
            *faults.entry(kind).or_default() += n;
        }
    }
    eprintln!("{operations} operations, {retries} retries, {redeliveries} redeliveries, faults {faults:?}");
    for kind in KINDS {
        assert!(
            faults.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} injected: {faults:?}"
        );
    }
}
