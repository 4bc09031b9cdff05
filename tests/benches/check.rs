//! The quota check, the gateway's hot path: DynamoDB requests per check (from
//! the store's counter, machine-independent) and its cost relative to a bare
//! strongly consistent `GetItem` of the same item through the same SDK client,
//! measured in one run so the ratio holds on a noisy machine.
//!
//! Run: `cargo bench -p spendguard-tests --bench check`
//! (`SPENDGUARD_BENCH_SCALE=0.1` for a tenth of the iterations).

use serde_json::json;
use spendguard_core::store::keys;
use spendguard_tests::TestEnv;
use std::time::{Duration, Instant};

fn scaled(n: usize) -> usize {
    let scale: f64 = std::env::var("SPENDGUARD_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    ((n as f64 * scale) as usize).max(10)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let env = TestEnv::new().await;
        env.put("/v1/admin/users/bench-user/quotas")
            .as_admin()
            .json(&json!({"quotas": [{"platform": "openai", "daily_limit_usd": "10", "weekly_limit_usd": "50", "monthly_limit_usd": "100"}]}))
            .send()
            .await
            .assert_status(200);
        let token = env.token("gateway-1", spendguard_tests::Role::Service);
        let body = json!({"user_id": "bench-user", "platform": "openai"});
        let key = keys::item_key(keys::user_pk("bench-user"), keys::quota_sk("openai"));
        let n = scaled(2_000);

        // Warm both paths (connection pool, caches).
        for _ in 0..50 {
            env.post("/v1/quota/check").bearer(&token).json(&body).send().await;
            env.store.get_consistent(key.clone()).await.unwrap();
        }

        let mut check = Vec::with_capacity(n);
        let mut bare = Vec::with_capacity(n);
        let before = env.store.stats().requests();
        // Interleaved, so both see the same machine load.
        for _ in 0..n {
            let t = Instant::now();
            let res = env.post("/v1/quota/check").bearer(&token).json(&body).send().await;
            check.push(t.elapsed());
            assert_eq!(res.status, 200, "{}", res.text);
            let t = Instant::now();
            env.store.get_consistent(key.clone()).await.unwrap();
            bare.push(t.elapsed());
        }
        let requests = env.store.stats().requests() - before;
        check.sort();
        bare.sort();
        let total = |v: &[Duration]| v.iter().sum::<Duration>().as_secs_f64();
        println!("quota check against {}", spendguard_tests::engine_description());
        println!("{:<40} {:>10} {:>10} {:>10}", "path", "p50 µs", "p99 µs", "checks/s");
        for (name, v) in [("POST /v1/quota/check (gateway + function)", &check), ("bare GetItem", &bare)] {
            println!(
                "{:<40} {:>10} {:>10} {:>10.0}",
                name,
                percentile(v, 0.5).as_micros(),
                percentile(v, 0.99).as_micros(),
                v.len() as f64 / total(v)
            );
        }
        println!(
            "DynamoDB requests per check: {:.3} (bare GetItem = 1); check time / GetItem time: {:.2}x",
            (requests as f64 - n as f64) / n as f64,
            total(&check) / total(&bare)
        );
    });
}
