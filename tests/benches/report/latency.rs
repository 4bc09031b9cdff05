//! Section 4: latency of the quota check and of a reservation as a ratio to
//! the bare DynamoDB request each rests on — a strongly consistent `GetItem`
//! and a one-item conditional `UpdateItem` of the same quota item — all four
//! interleaved in one loop so they see the same machine load.

use crate::costs::bare_update;
use crate::table::Row;
use crate::untokened::world_untokened;
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
    let mut times: [Vec<Duration>; 4] = Default::default();
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
        // The first 50 warm connections and caches.
        if i >= 50 {
            for (v, x) in times.iter_mut().zip([a, b, c, d]) {
                v.push(x);
            }
        }
    }
    for v in times.iter_mut() {
        v.sort();
    }
    let [check, get, reserve, update] = &times;
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
    vec![
        row(
            "quota check (service token, full handler)",
            check,
            get,
            "bare strongly consistent GetItem",
        ),
        row(
            "reservation create",
            reserve,
            update,
            "bare one-item conditional UpdateItem",
        ),
    ]
}
