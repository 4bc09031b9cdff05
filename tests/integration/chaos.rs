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

/// `make soak`: fresh seeds for SOAK_MINUTES (default 30) in SOAK_LANES
/// parallel lanes (default 2, each with its own proxy), or exactly one seed
/// with SOAK_SEED. Prints operations, faults by kind, invariant checks and
/// violations; fails on the first failing run, naming its seed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: make soak"]
async fn soak() {
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let minutes = env("SOAK_MINUTES", 30);
    let lanes = env("SOAK_LANES", 2).max(1);
    let only = std::env::var("SOAK_SEED")
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(minutes * 60);
    match only {
        Some(seed) => eprintln!("soak: one run of seed {seed}"),
        None => eprintln!("soak: fresh seeds for {minutes} min, {lanes} lanes"),
    }
    eprintln!("{SOAK_OPERATIONS} operations per run, fault rate {SOAK_RATE}");
    let totals = std::sync::Arc::new(std::sync::Mutex::new(Totals::default()));
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..if only.is_some() { 1 } else { lanes } {
        let totals = totals.clone();
        tasks.spawn(async move {
            let Some(proxy) = TestEnv::fault_proxy() else {
                return Err("fault injection needs a local engine".to_string());
            };
            loop {
                let seed = only.unwrap_or_else(rand::random);
                let run = run_seed(&proxy, seed, SOAK_OPERATIONS, SOAK_RATE).await;
                let mut t = totals.lock().unwrap();
                t.runs += 1;
                t.operations += run.operations;
                t.retries += run.retries;
                t.redeliveries += run.redeliveries;
                t.violations += run.violations.len() as u64 + run.mismatches.len() as u64;
                for (kind, n) in &run.faults {
                    *t.faults.entry(kind).or_default() += n;
                }
                if !run.ok() {
                    return Err(run.failure());
                }
                if t.runs % 20 == 0 {
                    eprintln!("lane {lane}: {}", t.summary());
                }
                drop(t);
                if only.is_some() || std::time::Instant::now() >= deadline {
                    return Ok(());
                }
            }
        });
    }
    let mut failure = None;
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done.expect("lane") {
            failure.get_or_insert(e);
            tasks.abort_all();
        }
    }
    let t = totals.lock().unwrap();
    eprintln!("soak summary: {}", t.summary());
    if let Some(failure) = failure {
        panic!("{failure}");
    }
    if only.is_none() {
        for kind in KINDS {
            assert!(
                t.faults.get(kind).copied().unwrap_or(0) > 0,
                "no {kind} injected"
            );
        }
    }
}

const SOAK_OPERATIONS: u64 = 40;
const SOAK_RATE: f64 = 0.15;

#[derive(Default)]
struct Totals {
    runs: u64,
    operations: u64,
    retries: u64,
    redeliveries: u64,
    violations: u64,
    faults: BTreeMap<&'static str, u64>,
}

impl Totals {
    fn summary(&self) -> String {
        format!(
            "{} runs, {} operations, {} client retries, {} SQS redeliveries, faults {:?} \
             (total {}), {} invariant checks, {} violations",
            self.runs,
            self.operations,
            self.retries,
            self.redeliveries,
            self.faults,
            self.faults.values().sum::<u64>(),
            self.runs,
            self.violations
        )
    }
}
