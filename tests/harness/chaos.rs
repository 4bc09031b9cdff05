//! Seeded fault schedules and the scenario they run against.
//!
//! A [`schedule`] decides, for every request the functions send to the
//! engine, whether the [`FaultProxy`] forwards it or injects a fault
//! (throttling, a 500, a `TransactionConflict` cancellation, latency, a
//! commit whose answer is lost by a 500 or a dropped connection, or by a 500
//! with the SDK's resends throttled), drawn from a
//! generator seeded with a `u64`, and counts what it injected by kind.
//!
//! [`run_seed`] drives usage ingest (with and without credits, settling
//! reservations), adjusts, redemptions, reservations and voids through the
//! public entry points under such a schedule, mostly one operation after
//! another, sometimes in bursts (adjusts of one account beside usage
//! batches, at once), as clients and SQS would: an HTTP request whose outcome
//! is unknown (503, `conflict`, a key still in progress) is retried with the
//! same `Idempotency-Key`, and failed SQS messages (`batchItemFailures`) are
//! redelivered, same message id and body, until they succeed; some
//! successful batches are delivered twice. Then, with the faults healed, it
//! checks the invariants and the exact totals the operations imply: every
//! event's cost once, every answered adjustment and redemption once, every
//! reservation settled or voided. A seed fixes the operations and the fault
//! draws; the draws meet requests in arrival order, which concurrent writes
//! (bursts, a batch's parallel writes) may vary, so a replay is close to the
//! original run rather than identical.

use crate::fault::{Fault, FaultProxy, Script};
use crate::invariants::{report, Violation};
use crate::scenario::{sqs_messages, usage_event};
use crate::{TestEnv, TestResponse};
use chrono::{Duration, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use spendguard_core::domain::Usd;
use spendguard_core::Clock;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The fault kinds a schedule injects (names in reports).
pub const KINDS: [&str; 7] = [
    "throttle",
    "server_error",
    "transaction_conflict",
    "latency",
    "commit_then_500",
    "commit_then_drop",
    "commit_then_500_resends_throttled",
];

/// Faults injected so far, by kind.
#[derive(Clone, Default)]
pub struct FaultCounts(Arc<Mutex<BTreeMap<&'static str, u64>>>);

impl FaultCounts {
    fn add(&self, kind: &'static str) {
        *self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(kind)
            .or_default() += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn is_write(operation: &str) -> bool {
    matches!(
        operation,
        "TransactWriteItems" | "PutItem" | "UpdateItem" | "DeleteItem" | "BatchWriteItem"
    )
}

/// A script injecting a fault into a share `rate` of the requests, the kind
/// drawn uniformly among those that fit the operation (a conflict only
/// cancels a transaction; a lost commit needs a write), plus storms of
/// conflicts, and lost commits whose SDK resends are throttled too (the
/// product's own resend must settle them), from a generator seeded with
/// `seed`.
pub fn schedule(seed: u64, rate: f64, counts: FaultCounts) -> Box<Script> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut storm = 0u32;
    // A transaction whose commit was lost, and how many of its resends (same
    // ClientRequestToken) are still to be throttled.
    let mut lost: Option<(String, u32)> = None;
    Box::new(move |operation: &str, body: &Value| {
        let token = body["ClientRequestToken"].as_str().unwrap_or("");
        // The SDK's own resends of a lost commit throttled until it gives up,
        // so the open outcome reaches the product's own resend logic.
        if let Some((lost_token, left)) = &mut lost {
            if lost_token == token && *left > 0 {
                *left -= 1;
                return Fault::Throttle;
            }
        }
        // Now and then a storm of conflicts on transactions (a hot item):
        // enough in a row to exhaust the product's own retries, so clients
        // see `conflict` and SQS messages fail and are redelivered.
        if operation == "TransactWriteItems" {
            if storm == 0 && rng.gen_bool(rate / 8.0) {
                storm = rng.gen_range(4..16);
            }
            if storm > 0 {
                storm -= 1;
                counts.add(KINDS[2]);
                return Fault::Conflict;
            }
        }
        if !rng.gen_bool(rate) {
            return Fault::Forward;
        }
        let fits: Vec<usize> = (0..KINDS.len())
            .filter(|&k| match k {
                2 | 6 => operation == "TransactWriteItems" && !token.is_empty(),
                4 | 5 => is_write(operation),
                _ => true,
            })
            .collect();
        let kind = fits[rng.gen_range(0..fits.len())];
        counts.add(KINDS[kind]);
        match kind {
            0 => Fault::Throttle,
            1 => Fault::ServerError,
            2 => Fault::Conflict,
            3 => Fault::Delay(rng.gen_range(1..40)),
            4 => Fault::ApplyThenServerError,
            5 => Fault::ApplyThenDrop,
            _ => {
                lost = Some((token.to_string(), 2));
                Fault::ApplyThenServerError
            }
        }
    })
}

/// What one seeded run did and found.
#[derive(Debug, Default)]
pub struct RunReport {
    pub seed: u64,
    pub operations: u64,
    /// Client retries (same key) and SQS redeliveries the faults caused.
    pub retries: u64,
    pub redeliveries: u64,
    pub faults: BTreeMap<&'static str, u64>,
    pub violations: Vec<Violation>,
    /// Totals that differ from what the operations imply.
    pub mismatches: Vec<String>,
}

impl RunReport {
    pub fn ok(&self) -> bool {
        self.violations.is_empty() && self.mismatches.is_empty()
    }

    /// The failure, with the seed to reproduce it.
    pub fn failure(&self) -> String {
        format!(
            "seed {} failed (reproduce: SOAK_SEED={} make soak, or run_seed({}))\n\
             invariant violations:\n{}totals:\n{}",
            self.seed,
            self.seed,
            self.seed,
            report(&self.violations),
            self.mismatches
                .iter()
                .map(|m| format!("  {m}\n"))
                .collect::<String>()
        )
    }
}

const USERS: [&str; 3] = ["u0", "u1", "u2"];
const PLATFORMS: [&str; 2] = ["openai", "anthropic"];
const OPENING: i64 = 1_000_000;
const CODE_CREDITS: i64 = 10;

/// The totals the operations imply.
#[derive(Default)]
struct Expected {
    usage: BTreeMap<(String, String), Usd>,
    available: BTreeMap<String, i64>,
    ledger: BTreeMap<String, usize>,
    /// Code → users answered 201.
    winners: BTreeMap<String, Vec<String>>,
    /// Reservation → (status, settled cost).
    reservations: BTreeMap<String, (&'static str, Option<Usd>)>,
    /// Adjustments sent without a key: (user, delta, reason, answered 200).
    /// One answered 200 applied exactly once; one answered 503 (outcome
    /// unknown) at most once.
    unkeyed: Vec<(String, i64, String, bool)>,
}

struct Run<'a> {
    env: &'a TestEnv,
    rng: StdRng,
    expected: Expected,
    report: RunReport,
    /// Pending reservations: (id, user, platform).
    pending: Vec<(String, String, String)>,
    codes: Vec<String>,
    next_id: u64,
}

impl<'a> Run<'a> {
    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}-{}-{}", self.report.seed, self.next_id)
    }

    async fn until_definitive(
        &mut self,
        send: impl Fn() -> crate::TestRequest<'a>,
    ) -> TestResponse {
        let done = until_definitive(self.env, send).await;
        self.absorb(&done.tally);
        done.value
    }

    fn absorb(&mut self, tally: &Tally) {
        self.report.retries += tally.retries;
        self.report.redeliveries += tally.redeliveries;
        self.report
            .mismatches
            .extend(tally.problems.iter().cloned());
    }

    fn pick<'b>(&mut self, of: &[&'b str]) -> &'b str {
        of[self.rng.gen_range(0..of.len())]
    }

    async fn adjust(&mut self) {
        let user = self.pick(&USERS).to_string();
        let delta: i64 = self.rng.gen_range(-100..=100);
        let delta = if delta == 0 { 1 } else { delta };
        let key = self.id("adj");
        let env = self.env;
        let path = format!("/v1/admin/users/{user}/credits/adjust");
        if self.rng.gen_bool(0.3) {
            // Without a key: only the product's own handling of a lost
            // answer stands between a fault and a second application. A
            // client cannot safely resend after an unknown outcome (503);
            // `conflict` (busy, nothing written) it may.
            let body = json!({"delta": delta, "reason": key});
            let done = until_definitive(env, || env.post(&path).as_admin().json(&body)).await;
            let answered = done.value.status == 200;
            if !answered && done.value.error_code() != Some("store_unavailable") {
                self.report
                    .mismatches
                    .push(format!("adjust {key}: {}", done.value.text));
            }
            self.expected.unkeyed.push((user, delta, key, answered));
            return;
        }
        let body = json!({"delta": delta, "reason": "chaos"});
        let res = self
            .until_definitive(|| {
                env.post(&path)
                    .as_admin()
                    .header("idempotency-key", &key)
                    .json(&body)
            })
            .await;
        if res.status == 200 {
            *self.expected.available.entry(user.clone()).or_default() += delta;
            *self.expected.ledger.entry(user).or_default() += 1;
        } else {
            self.report
                .mismatches
                .push(format!("adjust {key}: {} {}", res.status, res.text));
        }
    }

    async fn redeem(&mut self) {
        let user = self.pick(&USERS).to_string();
        let code = self.codes[self.rng.gen_range(0..self.codes.len())].clone();
        if self
            .expected
            .winners
            .get(&code)
            .is_some_and(|w| w.contains(&user))
        {
            return;
        }
        let key = self.id("red");
        let env = self.env;
        let body = json!({"code": code});
        let res = self
            .until_definitive(|| {
                env.post("/v1/me/redemptions")
                    .as_user(&user)
                    .header("idempotency-key", &key)
                    .json(&body)
            })
            .await;
        match (res.status, res.error_code()) {
            (201, _) => {
                self.expected
                    .winners
                    .entry(code)
                    .or_default()
                    .push(user.clone());
                *self.expected.available.entry(user.clone()).or_default() += CODE_CREDITS;
                *self.expected.ledger.entry(user).or_default() += 1;
            }
            (409, Some("code_exhausted")) => {}
            _ => self.report.mismatches.push(format!(
                "redeem {key} by {user}: {} {}",
                res.status, res.text
            )),
        }
    }

    async fn reserve(&mut self) {
        let user = self.pick(&USERS).to_string();
        let platform = self.pick(&PLATFORMS).to_string();
        let estimate = Usd::from_atoms(self.rng.gen_range(1..50_000) * 1_000_000);
        let credits: i64 = self.rng.gen_range(0..=3);
        let key = self.id("rsv");
        let env = self.env;
        let body = json!({"user_id": user, "platform": platform, "estimate_usd": estimate.to_string(),
                          "credits": credits, "ttl_seconds": 3600});
        let res = self
            .until_definitive(|| {
                env.post("/v1/quota/reservations")
                    .as_service()
                    .header("idempotency-key", &key)
                    .json(&body)
            })
            .await;
        match res.body["reservation_id"].as_str() {
            Some(id) if res.status == 201 => {
                self.expected
                    .reservations
                    .insert(id.to_string(), ("pending", None));
                self.pending.push((id.to_string(), user, platform));
            }
            _ => self
                .report
                .mismatches
                .push(format!("reserve {key}: {} {}", res.status, res.text)),
        }
    }

    async fn void(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let (id, _, _) = self
            .pending
            .swap_remove(self.rng.gen_range(0..self.pending.len()));
        let env = self.env;
        let path = format!("/v1/quota/reservations/{id}");
        let first = self
            .until_definitive(|| env.request("DELETE", &path).as_service())
            .await;
        // A void whose answer was lost meets its own effect on the retry.
        let done = first.status == 200 || self.status_of(&id).await.as_deref() == Some("voided");
        if done {
            self.expected.reservations.insert(id, ("voided", None));
        } else {
            self.report
                .mismatches
                .push(format!("void {id}: {} {}", first.status, first.text));
        }
    }

    async fn status_of(&mut self, id: &str) -> Option<String> {
        let env = self.env;
        let path = format!("/v1/quota/reservations/{id}");
        let res = self.until_definitive(|| env.get(&path).as_service()).await;
        res.body["status"].as_str().map(str::to_string)
    }

    /// One SQS batch of new events (some with credits, some settling a
    /// pending reservation), redelivered until every message succeeded, and
    /// now and then delivered once more whole.
    async fn usage_batch(&mut self) {
        let messages = self.plan_batch();
        self.deliver(messages.clone()).await;
        if self.rng.gen_bool(0.15) {
            self.deliver(redelivered(messages)).await;
        }
    }

    /// New events, their effects added to the expected totals.
    fn plan_batch(&mut self) -> Vec<(String, Value)> {
        let now = self.env.clock.now();
        let mut messages = Vec::new();
        for _ in 0..self.rng.gen_range(1..=8) {
            let id = self.id("evt");
            let cost = Usd::from_atoms(self.rng.gen_range(0..50_000) * 1_000_000);
            let settle = !self.pending.is_empty() && self.rng.gen_bool(0.3);
            let (user, platform, reservation) = if settle {
                let (rid, user, platform) = self
                    .pending
                    .swap_remove(self.rng.gen_range(0..self.pending.len()));
                (user, platform, Some(rid))
            } else {
                (
                    self.pick(&USERS).to_string(),
                    self.pick(&PLATFORMS).to_string(),
                    None,
                )
            };
            let mut event = usage_event(&id, &user, &platform, &cost.to_string(), now);
            if let Some(rid) = &reservation {
                event["reservation_id"] = json!(rid);
                self.expected
                    .reservations
                    .insert(rid.clone(), ("settled", Some(cost)));
            }
            if self.rng.gen_bool(0.3) {
                let credits: i64 = self.rng.gen_range(1..=5);
                event["credits"] = json!(credits);
                *self.expected.available.entry(user.clone()).or_default() -= credits;
                *self.expected.ledger.entry(user.clone()).or_default() += 1;
            }
            let total = self.expected.usage.entry((user, platform)).or_default();
            *total = *total + cost;
            messages.push((format!("msg-{id}"), event));
        }
        messages
    }

    async fn deliver(&mut self, messages: Vec<(String, Value)>) {
        let tally = deliver(self.env, messages).await;
        self.absorb(&tally);
    }

    /// Operations at once: adjusts of one account (a hot spot under faults)
    /// beside usage batches, each retried or redelivered on its own.
    async fn burst(&mut self, shared: &Arc<TestEnv>) {
        let user = self.pick(&USERS).to_string();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..self.rng.gen_range(2..=5) {
            let (env, user) = (shared.clone(), user.clone());
            let delta = self.rng.gen_range(1..=100) * if self.rng.gen_bool(0.5) { 1 } else { -1 };
            let key = self.id("adj");
            tasks.spawn(async move {
                let body = json!({"delta": delta, "reason": "chaos burst"});
                let path = format!("/v1/admin/users/{user}/credits/adjust");
                let done = until_definitive(&env, || {
                    env.post(&path)
                        .as_admin()
                        .header("idempotency-key", &key)
                        .json(&body)
                })
                .await;
                let mut tally = done.tally;
                if done.value.status != 200 {
                    tally
                        .problems
                        .push(format!("adjust {key}: {}", done.value.text));
                    return (tally, None);
                }
                (tally, Some((user, delta)))
            });
        }
        for _ in 0..self.rng.gen_range(1..=3) {
            let messages = self.plan_batch();
            let twice = self.rng.gen_bool(0.15);
            let env = shared.clone();
            tasks.spawn(async move {
                let mut tally = deliver(&env, messages.clone()).await;
                if twice {
                    let again = deliver(&env, redelivered(messages)).await;
                    tally.add(again);
                }
                (tally, None)
            });
        }
        while let Some(done) = tasks.join_next().await {
            let (tally, adjusted) = done.expect("burst task");
            self.absorb(&tally);
            if let Some((user, delta)) = adjusted {
                *self.expected.available.entry(user.clone()).or_default() += delta;
                *self.expected.ledger.entry(user).or_default() += 1;
            }
        }
    }
}

/// Retries, redeliveries and problems one client or queue consumer met.
#[derive(Default)]
struct Tally {
    retries: u64,
    redeliveries: u64,
    problems: Vec<String>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.retries += other.retries;
        self.redeliveries += other.redeliveries;
        self.problems.extend(other.problems);
    }
}

struct Done<T> {
    value: T,
    tally: Tally,
}

/// Sends a request until its answer is definitive, as a client retrying
/// with the same key would; a key still in progress (its holder crashed or
/// stalled) is waited out on the manual clock.
async fn until_definitive<'e>(
    env: &'e TestEnv,
    send: impl Fn() -> crate::TestRequest<'e>,
) -> Done<TestResponse> {
    let mut tally = Tally::default();
    loop {
        let res = send().send().await;
        let wait = match (res.status, res.error_code()) {
            (503, _) | (409, Some("conflict")) => 0,
            (409, Some("idempotency_key_in_use")) => 31,
            (409, Some("redemption_in_progress")) => 11,
            _ => return Done { value: res, tally },
        };
        if tally.retries >= 60 {
            tally
                .problems
                .push(format!("never settled after 60 attempts: {}", res.text));
            return Done { value: res, tally };
        }
        tally.retries += 1;
        env.clock.set(env.clock.now() + Duration::seconds(wait));
    }
}

/// A batch delivered again as SQS may: the same messages in another order
/// (so its writes group differently, and only the event records, not the
/// engine's ClientRequestToken, recognise what was applied).
fn redelivered(mut messages: Vec<(String, Value)>) -> Vec<(String, Value)> {
    messages.reverse();
    messages
}

/// Delivers `messages` to usage ingest, then redelivers the failed ones
/// (`batchItemFailures`: same message id and body) until none fails.
async fn deliver(env: &TestEnv, mut messages: Vec<(String, Value)>) -> Tally {
    let mut tally = Tally::default();
    let ingest = &env.gateway.functions().usage_ingest;
    loop {
        let outcome = ingest.process(sqs_messages(&messages)).await;
        let failed: Vec<String> = outcome
            .response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        if failed.is_empty() {
            return tally;
        }
        if tally.redeliveries >= 60 {
            tally
                .problems
                .push(format!("messages never succeeded: {failed:?}"));
            return tally;
        }
        tally.redeliveries += 1;
        messages.retain(|(id, _)| failed.contains(id));
    }
}

/// One seeded run: setup without faults, `operations` operations under the
/// schedule (fault `rate`), then every pending reservation settled or voided,
/// and the checks. `proxy` must be the one `TestEnv::behind` built on.
pub async fn run_seed(proxy: &FaultProxy, seed: u64, operations: u64, rate: f64) -> RunReport {
    proxy.heal();
    proxy.clear_log();
    let start = Utc.with_ymd_and_hms(2026, 3, 4, 0, 30, 0).unwrap();
    let env = Arc::new(TestEnv::behind(proxy, Clock::manual(start)).await);
    let mut run = Run {
        env: &env,
        rng: StdRng::seed_from_u64(seed ^ 0x5eed_f0a5),
        expected: Expected::default(),
        report: RunReport {
            seed,
            ..RunReport::default()
        },
        pending: Vec::new(),
        codes: Vec::new(),
        next_id: 0,
    };
    setup(&mut run).await;
    let counts = FaultCounts::default();
    proxy.set_script(schedule(seed, rate, counts.clone()));
    for _ in 0..operations {
        run.report.operations += 1;
        match run.rng.gen_range(0..100) {
            0..=29 => run.usage_batch().await,
            30..=44 => run.adjust().await,
            45..=54 => run.burst(&env).await,
            55..=66 => run.redeem().await,
            67..=86 => run.reserve().await,
            _ => run.void().await,
        }
    }
    while !run.pending.is_empty() {
        run.report.operations += 1;
        if run.rng.gen_bool(0.5) {
            run.void().await;
        } else {
            run.usage_batch().await;
        }
    }
    proxy.heal();
    run.report.faults = counts.snapshot();
    let mismatches = totals(&run).await;
    run.report.mismatches.extend(mismatches);
    run.report.violations = env.check_invariants().await;
    run.report
}

async fn setup(run: &mut Run<'_>) {
    let env = run.env;
    for user in USERS {
        env.put(&format!("/v1/admin/users/{user}/quotas"))
            .as_admin()
            .json(&json!({"quotas": [{"platform": "openai", "daily_limit_usd": "1000000"}]}))
            .send()
            .await
            .assert_status(200);
        env.post(&format!("/v1/admin/users/{user}/credits/adjust"))
            .as_admin()
            .json(&json!({"delta": OPENING, "reason": "opening"}))
            .send()
            .await
            .assert_status(200);
        run.expected.available.insert(user.into(), OPENING);
        run.expected.ledger.insert(user.into(), 1);
    }
    let res = env
        .post("/v1/admin/redemption-codes")
        .as_admin()
        .json(&json!({"count": 2, "credits": CODE_CREDITS, "max_uses": 2}))
        .send()
        .await;
    res.assert_status(201);
    run.codes = res.body["codes"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|c| c.as_str().expect("code").to_string())
        .collect();
}

/// What the table holds against what the operations imply.
async fn totals(run: &Run<'_>) -> Vec<String> {
    let mut out = Vec::new();
    let items = run.env.scan_items().await;
    let get = |pk: &str, sk: &str| {
        items.iter().find(|i| {
            i.get("pk")
                .and_then(|v| v.as_s().ok())
                .is_some_and(|v| v == pk)
                && i.get("sk")
                    .and_then(|v| v.as_s().ok())
                    .is_some_and(|v| v == sk)
        })
    };
    let attr = |item: Option<&crate::invariants::Item>, name: &str| {
        item.and_then(|i| i.get(name))
            .and_then(|v| v.as_n().or_else(|_| v.as_s()).ok())
            .cloned()
    };
    let ledger_of = |user: &str| {
        items
            .iter()
            .filter(|i| {
                i["pk"].as_s().is_ok_and(|p| p == &format!("USER#{user}"))
                    && i["sk"].as_s().is_ok_and(|s| s.starts_with("LEDGER#"))
            })
            .collect::<Vec<_>>()
    };
    let mut balances = run.expected.available.clone();
    let mut ledger = run.expected.ledger.clone();
    for (user, delta, reason, answered) in &run.expected.unkeyed {
        let applied = ledger_of(user)
            .iter()
            .filter(|e| e.get("description").and_then(|d| d.as_s().ok()) == Some(reason))
            .count();
        if applied > 1 || (*answered && applied != 1) {
            out.push(format!(
                "adjust {reason} without a key (answered {}): applied {applied} times",
                if *answered { "200" } else { "503" }
            ));
        }
        *balances.entry(user.clone()).or_default() += delta * applied as i64;
        *ledger.entry(user.clone()).or_default() += applied;
    }
    for user in USERS {
        for platform in PLATFORMS {
            let expected = run
                .expected
                .usage
                .get(&(user.into(), platform.into()))
                .copied()
                .unwrap_or_default();
            let stored = attr(
                get(&format!("USER#{user}"), &format!("QUOTA#{platform}")),
                "daily_usage",
            )
            .map(|n| Usd::parse_stored(&n).expect("usage"))
            .unwrap_or_default();
            if stored != expected {
                out.push(format!(
                    "{user} {platform}: daily usage {stored}, expected {expected}"
                ));
            }
        }
        let account = get(&format!("USER#{user}"), "CREDITS");
        let available: i64 = attr(account, "available")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let expected = balances.get(user).copied().unwrap_or(0);
        if available != expected {
            out.push(format!(
                "{user}: available {available}, expected {expected}"
            ));
        }
        let entries = ledger_of(user).len();
        let expected = ledger.get(user).copied().unwrap_or(0);
        if entries != expected {
            out.push(format!(
                "{user}: {entries} ledger entries, expected {expected}"
            ));
        }
    }
    for code in &run.codes {
        let key = code.replace('-', "");
        let winners = run.expected.winners.get(code).map_or(0, Vec::len);
        let used: usize = attr(get(&format!("CODE#{key}"), "CODE"), "used_count")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if used != winners {
            out.push(format!(
                "code {code}: used_count {used}, {winners} redemptions answered 201"
            ));
        }
    }
    for (id, (status, cost)) in &run.expected.reservations {
        let item = get(&format!("RESERVATION#{id}"), "RESERVATION");
        let stored = attr(item, "status").unwrap_or_default();
        let settled = attr(item, "settled_cost_usd").map(|n| Usd::parse_stored(&n).expect("cost"));
        if stored != *status || settled != *cost {
            out.push(format!(
                "reservation {id}: {stored} {settled:?}, expected {status} {cost:?}"
            ));
        }
    }
    out
}
