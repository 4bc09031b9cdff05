//! The authorization matrix (issue 14, item 6): every HTTP route of
//! `infra/template.yaml` × every kind of caller, the exact status each gets.
//! The rows are matched against the template's routes, so a route added to
//! the template without a row here (or a row left for a removed route) fails
//! the test. Requests go through the dev gateway (its real HS256 verification
//! and routing) into the real functions (their real role checks).
//!
//! Beyond the status:
//! - a refused request (401 / 403) writes nothing: the table is unchanged;
//! - `other` (user B) targets user A's resources (A's user id in admin paths,
//!   A's reservation, A's codes): A's items stay unchanged;
//! - every `GET /v1/me/*` answers A's own data to A (one of A's markers is in
//!   the body) and none of it to anyone else.

use serde_json::{json, Value};
use spendguard_local::streams::{self, StreamReader};
use spendguard_local::template::Template;
use spendguard_tests::{Role, TestEnv};
use std::collections::{BTreeMap, BTreeSet};

const A: &str = "authz-alice";
const B: &str = "authz-bob";
const ADMIN: &str = "authz-admin";
const GATEWAY: &str = "authz-gateway";
const PLATFORM: &str = "openai";
/// A's usage: a figure no other caller's view can show by chance.
const A_USAGE: &str = "7.1234567";
const A_GRANT_REASON: &str = "authz-alice-grant";
const A_PLAN: &str = "plan-authz-alice";

/// The callers, in the order of every row's statuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    /// No `Authorization` (and its look-alikes: a forged signature, another
    /// scheme, an empty bearer): every variant must get the same status.
    None,
    /// An admin + service token whose `exp` has passed.
    Expired,
    /// User A, the owner of the resources the paths name.
    User,
    /// User B, acting on A's resources.
    Other,
    /// A service token as `make token ROLE=service` issues it (with a `sub`).
    Service,
    /// A machine client's token: the service scope and no `sub` (client
    /// credentials), so it is no user.
    Machine,
    Admin,
}

const CALLERS: [Caller; 7] = [
    Caller::None,
    Caller::Expired,
    Caller::User,
    Caller::Other,
    Caller::Service,
    Caller::Machine,
    Caller::Admin,
];

/// What each route expects, in [`CALLERS`] order: admin-only routes,
/// service-or-admin routes, and routes any signed-in user calls for itself
/// (`/v1/me/*`; an admin's or a service's token with a `sub` is that user).
const fn admin(ok: u16) -> [u16; 7] {
    [401, 401, 403, 403, 403, 403, ok]
}
const fn service(ok: u16) -> [u16; 7] {
    [401, 401, 403, 403, ok, ok, ok]
}
const fn me(ok: u16) -> [u16; 7] {
    [401, 401, ok, ok, ok, 403, ok]
}

/// A row: the route key, the statuses, and the body sent (every cell of a
/// write row gets a valid body, so what refuses it is authorization alone).
struct Row {
    route: &'static str,
    expect: [u16; 7],
    body: fn(&Fixture) -> Option<Value>,
}

fn none(_: &Fixture) -> Option<Value> {
    None
}

fn rows() -> Vec<Row> {
    let row = |route, expect, body| Row {
        route,
        expect,
        body,
    };
    vec![
        // quota
        row("GET /v1/admin/quota-defaults", admin(200), none),
        row("PUT /v1/admin/quota-defaults/system", admin(200), |_| {
            Some(json!({"anthropic": {"daily_limit_usd": "5"}}))
        }),
        row(
            "PUT /v1/admin/quota-defaults/sources/{source}",
            admin(200),
            |_| Some(json!({})),
        ),
        row(
            "POST /v1/admin/users/{user_id}/quotas/init",
            admin(200),
            |_| Some(json!({"auth_source": "email"})),
        ),
        row("GET /v1/admin/users/{user_id}/quotas", admin(200), none),
        row("PUT /v1/admin/users/{user_id}/quotas", admin(200), |_| {
            Some(json!({"quotas": [{"platform": PLATFORM, "daily_limit_usd": "10"}]}))
        }),
        row(
            "POST /v1/admin/users/{user_id}/quotas/{platform}/reset",
            admin(200),
            |_| Some(json!({"window": "weekly"})),
        ),
        row("GET /v1/me/quotas", me(200), none),
        row("GET /v1/me/quotas/{platform}/check", me(200), none),
        row("POST /v1/quota/check", service(200), |_| {
            Some(json!({"user_id": A, "platform": PLATFORM}))
        }),
        row("GET /v1/admin/alerts", admin(200), none),
        row("GET /v1/me/alerts", me(200), none),
        row("POST /v1/quota/reservations", service(201), |_| {
            Some(json!({"user_id": A, "platform": PLATFORM, "estimate_usd": "0.01"}))
        }),
        row(
            "GET /v1/quota/reservations/{reservation_id}",
            service(200),
            none,
        ),
        row(
            "DELETE /v1/quota/reservations/{reservation_id}",
            service(200),
            none,
        ),
        row(
            "GET /v1/admin/users/{user_id}/reservations",
            admin(200),
            none,
        ),
        // credits
        row("GET /v1/me/credits", me(200), none),
        row("GET /v1/me/credits/transactions", me(200), none),
        row("GET /v1/admin/users/{user_id}/credits", admin(200), none),
        row(
            "GET /v1/admin/users/{user_id}/credits/transactions",
            admin(200),
            none,
        ),
        row(
            "POST /v1/admin/users/{user_id}/credits/adjust",
            admin(200),
            |_| Some(json!({"delta": 1, "reason": "authorization matrix"})),
        ),
        row("GET /v1/admin/audit", admin(200), none),
        // redemption
        row("POST /v1/admin/redemption-codes", admin(201), |_| {
            Some(json!({"count": 1, "credits": 1, "max_uses": 1}))
        }),
        row("GET /v1/admin/redemption-codes", admin(200), none),
        row("GET /v1/admin/redemption-codes/{code}", admin(200), none),
        row(
            "PATCH /v1/admin/redemption-codes/{code}",
            admin(200),
            |_| Some(json!({"enabled": true})),
        ),
        row(
            "GET /v1/admin/redemption-codes/{code}/redemptions",
            admin(200),
            none,
        ),
        row("POST /v1/me/redemptions", me(201), |f| {
            Some(json!({"code": f.shared_code}))
        }),
        row("GET /v1/me/redemptions", me(200), none),
        row("GET /v1/me/subscriptions", me(200), none),
        row(
            "GET /v1/admin/users/{user_id}/subscriptions",
            admin(200),
            none,
        ),
    ]
}

/// A's world, built through the product's own entry points.
struct Fixture {
    /// A's subscription code (redeemed by A): what `{code}` names.
    code_a: String,
    /// A multi-use credit code each caller of `POST /v1/me/redemptions` redeems.
    shared_code: String,
    /// One pending reservation of A per caller: `{reservation_id}` (a void
    /// by one caller leaves the others' pending).
    reservations: Vec<String>,
}

impl Fixture {
    async fn build(env: &TestEnv) -> Self {
        streams::ensure_stream(&env.store, env.store.table())
            .await
            .expect("stream");
        env.put(&format!("/v1/admin/users/{A}/quotas"))
            .as_admin()
            .json(&json!({"quotas": [{"platform": PLATFORM, "daily_limit_usd": "10"}]}))
            .send()
            .await
            .assert_status(200);
        // A's usage, through usage-ingest; it crosses 50 % of the daily limit.
        let event = json!({
            "event_id": "authz-usage-1", "user_id": A, "platform": PLATFORM,
            "cost_usd": A_USAGE, "occurred_at": chrono::Utc::now().to_rfc3339(),
        });
        env.ingest_all(&[event]).await;
        // The alert of that crossing, from the change stream.
        let app = alerts::App::new(env.deps(), alerts::delivery::EventSink::Log, None);
        let reader = StreamReader::for_store(&env.store).await.expect("stream");
        let reports = streams::deliver(&app, reader.all_records().await.expect("records")).await;
        assert!(reports.iter().map(|r| r.emitted).sum::<usize>() >= 1);

        env.post(&format!("/v1/admin/users/{A}/credits/adjust"))
            .as_admin()
            .header("idempotency-key", "authz-grant-a")
            .json(&json!({"delta": 77, "reason": A_GRANT_REASON}))
            .send()
            .await
            .assert_status(200);
        let code_a = create_code(
            env,
            json!({"count": 1, "max_uses": 1,
                   "subscription": {"plan_id": A_PLAN, "unit": "month", "quantity": 1}}),
        )
        .await;
        env.post("/v1/me/redemptions")
            .as_user(A)
            .json(&json!({"code": code_a}))
            .send()
            .await
            .assert_status(201);
        let shared_code =
            create_code(env, json!({"count": 1, "credits": 3, "max_uses": 100})).await;
        let mut reservations = Vec::new();
        for _ in CALLERS {
            let res = env
                .post("/v1/quota/reservations")
                .as_service()
                .json(&json!({"user_id": A, "platform": PLATFORM, "estimate_usd": "0.01"}))
                .send()
                .await;
            res.assert_status(201);
            reservations.push(res.body["reservation_id"].as_str().unwrap().to_string());
        }
        Self {
            code_a,
            shared_code,
            reservations,
        }
    }

    /// The route's path with A's resources (and the caller's own reservation).
    fn path(&self, template: &str, caller: usize) -> String {
        template
            .replace("{user_id}", A)
            .replace("{platform}", PLATFORM)
            .replace("{source}", "email")
            .replace("{code}", &self.code_a)
            .replace("{reservation_id}", &self.reservations[caller])
    }

    /// Text only A's own data carries.
    fn markers(&self) -> [&str; 5] {
        [A, A_USAGE, A_GRANT_REASON, A_PLAN, &self.code_a]
    }
}

async fn create_code(env: &TestEnv, body: Value) -> String {
    let res = env
        .post("/v1/admin/redemption-codes")
        .as_admin()
        .json(&body)
        .send()
        .await;
    res.assert_status(201);
    res.body["codes"][0].as_str().unwrap().to_string()
}

/// The `Authorization` values a caller sends (several for `None`).
fn credentials(env: &TestEnv, caller: Caller) -> Vec<Option<String>> {
    let bearer = |t: String| Some(format!("Bearer {t}"));
    let now = chrono::Utc::now().timestamp();
    match caller {
        Caller::None => vec![
            None,
            // Admin claims signed with another secret.
            bearer(spendguard_local::jwt::issue(
                "not-the-secret",
                ADMIN,
                Role::Admin,
                3600,
            )),
            Some(format!("Basic {}", env.token(ADMIN, Role::Admin))),
            Some("Bearer ".into()),
            bearer("not.a.jwt".into()),
        ],
        Caller::Expired => vec![bearer(env.token_with_claims(&json!({
            "sub": ADMIN, "cognito:groups": ["admin"], "scope": "spendguard/service",
            "iat": now - 7200, "exp": now - 1,
        })))],
        Caller::User => vec![bearer(env.token(A, Role::User))],
        Caller::Other => vec![bearer(env.token(B, Role::User))],
        Caller::Service => vec![bearer(env.token(GATEWAY, Role::Service))],
        Caller::Machine => vec![bearer(
            env.token_with_claims(&json!({"scope": "spendguard/service"})),
        )],
        Caller::Admin => vec![bearer(env.token(ADMIN, Role::Admin))],
    }
}

fn owned_by_a(snapshot: &BTreeMap<(String, String), String>) -> Vec<(&(String, String), &String)> {
    snapshot
        .iter()
        .filter(|((pk, _), item)| pk.contains(A) || item.contains(A))
        .collect()
}

#[tokio::test]
async fn every_route_answers_every_caller_exactly_as_the_contract_says() {
    let env = TestEnv::new().await;
    let fixture = Fixture::build(&env).await;
    let rows = rows();

    // The table covers exactly the template's routes.
    let routes: BTreeSet<String> = Template::bundled()
        .routes()
        .iter()
        .map(|r| r.route_key())
        .collect();
    let covered: BTreeSet<String> = rows.iter().map(|r| r.route.to_string()).collect();
    assert_eq!(
        covered.len(),
        rows.len(),
        "a route has two rows in the matrix"
    );
    let missing: Vec<_> = routes.difference(&covered).collect();
    let stale: Vec<_> = covered.difference(&routes).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "routes without a row in the authorization matrix: {missing:?}; rows for routes \
         the template no longer has: {stale:?}"
    );

    let mut failures = Vec::new();
    let mut cells = 0;
    for (r, row) in rows.iter().enumerate() {
        let (method, template) = row.route.split_once(' ').unwrap();
        for (i, caller) in CALLERS.into_iter().enumerate() {
            let expected = row.expect[i];
            let path = fixture.path(template, i);
            for (n, authorization) in credentials(&env, caller).into_iter().enumerate() {
                cells += 1;
                let refused = expected == 401 || expected == 403;
                let before = if refused || caller == Caller::Other {
                    Some(env.table_snapshot().await)
                } else {
                    None
                };
                let mut req = env
                    .request(method, &path)
                    .header("user-agent", "authz-matrix")
                    .header("idempotency-key", &format!("authz-{r}-{i}-{n}"));
                if let Some(a) = &authorization {
                    req = req.header("authorization", a);
                }
                if let Some(body) = (row.body)(&fixture) {
                    req = req.json(&body);
                }
                let res = req.send().await;
                let cell = format!("{} as {caller:?} (credential {n})", row.route);
                if res.status != expected {
                    failures.push(format!(
                        "{cell}: {} (expected {expected}): {}",
                        res.status, res.text
                    ));
                    continue;
                }
                let code = match expected {
                    401 => Some("unauthorized"),
                    403 => Some("forbidden"),
                    _ => None,
                };
                if code.is_some() && res.error_code() != code {
                    failures.push(format!("{cell}: error {:?}, expected {code:?}", res.text));
                }
                if let Some(before) = before {
                    let after = env.table_snapshot().await;
                    if refused && before != after {
                        failures.push(format!("{cell}: refused, yet the table changed"));
                    }
                    if owned_by_a(&before) != owned_by_a(&after) {
                        failures.push(format!("{cell}: A's items changed"));
                    }
                }
                if method == "GET" && template.starts_with("/v1/me/") && !refused {
                    let shows_a = fixture.markers().iter().any(|m| res.text.contains(m));
                    match (caller == Caller::User, shows_a) {
                        (true, false) => failures
                            .push(format!("{cell}: A does not see its own data: {}", res.text)),
                        (false, true) => {
                            failures.push(format!("{cell}: shows A's data: {}", res.text))
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cells} cells failed:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}
