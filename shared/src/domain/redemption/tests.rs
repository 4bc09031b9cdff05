//! Rules of codes, subscriptions and the failure window.

use super::codes::base32_lower;
use super::*;
use chrono::TimeZone;
use serde_json::json;

fn at(y: i32, m: u32, d: u32, h: u32, min: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, s).unwrap()
}

#[test]
fn month_ends_clamp() {
    let jan31 = at(2026, 1, 31, 12, 0, 0);
    assert_eq!(
        add_period(jan31, Unit::Month, 1),
        Some(at(2026, 2, 28, 12, 0, 0))
    );
    assert_eq!(
        add_period(at(2028, 1, 31, 0, 0, 0), Unit::Month, 1),
        Some(at(2028, 2, 29, 0, 0, 0)),
        "leap year"
    );
    assert_eq!(
        add_period(jan31, Unit::Month, 2),
        Some(at(2026, 3, 31, 12, 0, 0)),
        "two months at once do not clamp through February"
    );
    assert_eq!(
        add_period(at(2026, 3, 31, 0, 0, 0), Unit::Month, 1),
        Some(at(2026, 4, 30, 0, 0, 0))
    );
    assert_eq!(
        add_period(at(2025, 11, 30, 0, 0, 0), Unit::Quarter, 1),
        Some(at(2026, 2, 28, 0, 0, 0))
    );
    assert_eq!(
        add_period(at(2026, 8, 31, 0, 0, 0), Unit::HalfYear, 1),
        Some(at(2027, 2, 28, 0, 0, 0))
    );
    assert_eq!(
        add_period(at(2028, 2, 29, 0, 0, 0), Unit::Year, 1),
        Some(at(2029, 2, 28, 0, 0, 0))
    );
    assert_eq!(
        add_period(at(2026, 1, 15, 0, 0, 0), Unit::Year, 3),
        Some(at(2029, 1, 15, 0, 0, 0))
    );
}

#[test]
fn days_and_weeks_are_exact() {
    let t = at(2026, 2, 27, 23, 30, 0);
    assert_eq!(add_period(t, Unit::Day, 2), Some(at(2026, 3, 1, 23, 30, 0)));
    assert_eq!(
        add_period(t, Unit::Week, 1),
        Some(at(2026, 3, 6, 23, 30, 0))
    );
    assert_eq!(add_period(t, Unit::Day, 0), Some(t));
    assert!(add_period(t, Unit::Year, u32::MAX).is_none());
}

#[test]
fn extension_starts_at_the_later_of_now_and_expiry() {
    let now = at(2026, 1, 10, 0, 0, 0);
    // Unexpired: from the expiry.
    let current = at(2026, 1, 31, 0, 0, 0);
    assert_eq!(
        extend_subscription(Some(current), now, Unit::Month, 1).unwrap(),
        at(2026, 2, 28, 0, 0, 0)
    );
    // Expired: from now.
    let old = at(2025, 12, 1, 0, 0, 0);
    assert_eq!(
        extend_subscription(Some(old), now, Unit::Week, 2).unwrap(),
        at(2026, 1, 24, 0, 0, 0)
    );
    // None: from now.
    assert_eq!(
        extend_subscription(None, now, Unit::Day, 1).unwrap(),
        at(2026, 1, 11, 0, 0, 0)
    );
}

#[test]
fn generated_codes_are_well_formed_and_distinct() {
    let mut rng = rand::rngs::OsRng;
    let prefix = Prefix::parse("gold").unwrap();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..2000 {
        let c = generate_code(Some(&prefix), &mut rng);
        assert!(c.display.starts_with("GOLD-"), "{}", c.display);
        let random: String = c.display[5..].chars().filter(|c| *c != '-').collect();
        assert_eq!(random.len(), RANDOM_SYMBOLS);
        assert!(random.bytes().all(|b| CODE_ALPHABET.contains(&b)));
        assert_eq!(c.display.matches('-').count(), 4);
        assert!(validate_id("code", &c.display).is_ok());
        assert_eq!(CodeKey::parse(&c.display).unwrap(), c.key);
        assert!(seen.insert(c.key));
    }
    let plain = generate_code(None, &mut rng);
    assert_eq!(plain.display.len(), RANDOM_SYMBOLS + 3);
}

#[test]
fn symbols_are_uniform_enough() {
    // 32,000 symbols: each of 32 expected 1,000 times; a biased mapping (e.g.
    // `% 30`) would push some far outside this band.
    let mut counts = [0u32; 32];
    let mut rng = rand::rngs::OsRng;
    for _ in 0..2000 {
        let c = generate_code(None, &mut rng);
        for b in c.key.as_str().bytes() {
            let i = CODE_ALPHABET.iter().position(|a| *a == b).unwrap();
            counts[i] += 1;
        }
    }
    assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
}

#[test]
fn matching_is_case_insensitive_and_ignores_separators() {
    let a = CodeKey::parse("GOLD-ABCD-EFGH-JKMN-PQRS").unwrap();
    assert_eq!(CodeKey::parse("gold-abcd-efgh-jkmn-pqrs").unwrap(), a);
    assert_eq!(CodeKey::parse("GOLDABCDEFGHJKMNPQRS").unwrap(), a);
    assert_eq!(a.as_str(), "G01DABCDEFGHJKMNPQRS");
    // Look-alikes fold onto the digits.
    assert_eq!(
        CodeKey::parse("0000-1111").unwrap(),
        CodeKey::parse("oOoO-iIlL").unwrap()
    );
    for bad in ["", "a b", "ABCD/EFGH", "ABCD#1", &"A".repeat(129)] {
        assert_eq!(
            CodeKey::parse(bad).unwrap_err().code(),
            "invalid_id",
            "{bad:?}"
        );
    }
}

#[test]
fn batch_ids() {
    let a = BatchId::for_idempotency_key("admin-1", "k1");
    assert_eq!(a, BatchId::for_idempotency_key("admin-1", "k1"));
    assert_ne!(a, BatchId::for_idempotency_key("admin-2", "k1"));
    assert_ne!(a, BatchId::for_idempotency_key("admin-1", "k2"));
    assert_eq!(a.as_str().len(), 26);
    assert!(BatchId::parse(a.as_str()).is_ok());
    assert_ne!(BatchId::random(), BatchId::random());
    assert_eq!(base32_lower(&[0xff, 0x00]), "zw00");
}

#[test]
fn prefixes() {
    assert_eq!(Prefix::parse("vip2026").unwrap().as_str(), "VIP2026");
    for bad in ["", "a-b", "ü", "x y", &"A".repeat(17)] {
        assert_eq!(Prefix::parse(bad).unwrap_err().code(), "invalid_request");
    }
}

/// Through the one JSON reader, as the handler reads it.
fn body(v: Value) -> Result<BatchSpec, Error> {
    let parsed: CreateCodesBody = crate::json::from_str(&v.to_string())?;
    parsed.validate(at(2026, 1, 1, 0, 0, 0))
}

#[test]
fn validates_batch_requests() {
    let spec = body(json!({
        "count": 3, "prefix": "vip", "credits": 100, "max_uses": 2,
        "subscription": {"plan_id": "pro", "unit": "half_year", "quantity": 1},
        "expires_at": "2026-06-01T00:00:00+08:00", "batch_name": "launch"
    }))
    .unwrap();
    assert_eq!(spec.count, 3);
    assert_eq!(spec.grant.credits, 100);
    assert_eq!(
        spec.grant.subscription.as_ref().unwrap().unit,
        Unit::HalfYear
    );
    assert_eq!(spec.expires_at, Some(at(2026, 5, 31, 16, 0, 0)));
    assert!(body(json!({"count": 1000, "max_uses": 1, "credits": 1})).is_ok());
    let sub_only = body(json!({"count": 1, "max_uses": 1, "credits": 0,
        "subscription": {"plan_id": "p", "unit": "day", "quantity": 1}}));
    assert_eq!(sub_only.unwrap().grant.credits, 0);
}

#[test]
fn refuses_bad_batch_requests() {
    let sub = json!({"plan_id": "pro", "unit": "month", "quantity": 1});
    let cases = [
        (
            json!({"count": 0, "max_uses": 1, "credits": 1}),
            "invalid_request",
        ),
        (
            json!({"count": 1001, "max_uses": 1, "credits": 1}),
            "invalid_request",
        ),
        (
            json!({"count": 1.5, "max_uses": 1, "credits": 1}),
            "invalid_request",
        ),
        (json!({"max_uses": 1, "credits": 1}), "invalid_request"),
        (
            json!({"count": 1, "max_uses": 0, "credits": 1}),
            "invalid_request",
        ),
        (json!({"count": 1, "credits": 1}), "invalid_request"),
        (json!({"count": 1, "max_uses": 1}), "invalid_request"),
        (
            json!({"count": 1, "max_uses": 1, "credits": 0}),
            "invalid_request",
        ),
        (
            json!({"count": 1, "max_uses": 1, "credits": -1}),
            "invalid_amount",
        ),
        (
            json!({"count": 1, "max_uses": 1, "credits": 2.5}),
            "invalid_amount",
        ),
        (
            json!({"count": 1, "max_uses": 1, "credits": "5"}),
            "invalid_amount",
        ),
        (
            json!({"count": 1, "max_uses": 1, "credits": 1e13}),
            "invalid_amount",
        ),
        (
            json!({"count": 1, "max_uses": 1, "credits": 1, "prefix": "a-b"}),
            "invalid_request",
        ),
        (
            json!({"count": 1, "max_uses": 1, "credits": 1, "prefix": ""}),
            "invalid_request",
        ),
        (
            json!({"count": 1, "max_uses": 1, "credits": 1, "expires_at": "2025-01-01T00:00:00Z"}),
            "invalid_request",
        ),
        (
            json!({"count": 1, "max_uses": 1, "credits": 1, "expires_at": "tomorrow"}),
            "invalid_request",
        ),
        (
            json!({"count": 1, "max_uses": 1, "credits": 1, "batch_name": " "}),
            "invalid_request",
        ),
        (
            json!({"count": 1, "max_uses": 1, "credits": 1, "expire_at": "2027-01-01T00:00:00Z"}),
            "invalid_request",
        ),
        (
            json!({"count": 1, "max_uses": 1, "subscription": {"plan_id": "p", "unit": "fortnight", "quantity": 1}}),
            "invalid_request",
        ),
        (
            json!({"count": 1, "max_uses": 1, "subscription": {"plan_id": "p", "unit": "month", "quantity": 0}}),
            "invalid_request",
        ),
        (
            json!({"count": 1, "max_uses": 1, "subscription": {"plan_id": "p", "unit": "month", "quantity": -1}}),
            "invalid_request",
        ),
        (
            json!({"count": 1, "max_uses": 1, "subscription": {"plan_id": "p", "unit": "month", "quantity": 1001}}),
            "invalid_request",
        ),
        (
            json!({"count": 1, "max_uses": 1, "subscription": {"plan_id": "a b", "unit": "month", "quantity": 1}}),
            "invalid_id",
        ),
        (
            json!({"count": 1, "max_uses": 1, "subscription": {"plan_id": "p", "unit": "month"}}),
            "invalid_request",
        ),
        (
            json!({"count": 1, "max_uses": 1, "subscription": sub, "extra": 1}),
            "invalid_request",
        ),
    ];
    for (v, code) in cases {
        let err = body(v.clone()).unwrap_err();
        assert_eq!(err.code(), code, "{v}: {err}");
    }
}

fn code(enabled: bool, used: i64, max: i64, expires: Option<DateTime<Utc>>) -> RedemptionCode {
    let t = at(2026, 1, 1, 0, 0, 0);
    RedemptionCode {
        key: CodeKey::from_stored("K"),
        display: "K".into(),
        batch_id: BatchId::parse("b").unwrap(),
        batch_name: None,
        grant: Grant {
            credits: 1,
            subscription: None,
        },
        max_uses: max,
        used_count: used,
        enabled,
        expires_at: expires,
        created_at: t,
        updated_at: t,
    }
}

#[test]
fn status_precedence() {
    let now = at(2026, 2, 1, 0, 0, 0);
    let past = Some(at(2026, 1, 15, 0, 0, 0));
    let future = Some(at(2026, 3, 1, 0, 0, 0));
    assert_eq!(code(true, 0, 1, None).status(now), CodeStatus::Active);
    assert_eq!(code(true, 0, 1, future).status(now), CodeStatus::Active);
    assert_eq!(code(false, 1, 1, past).status(now), CodeStatus::Disabled);
    assert_eq!(code(true, 1, 1, past).status(now), CodeStatus::Expired);
    assert_eq!(code(true, 1, 1, future).status(now), CodeStatus::Exhausted);
    // Expiry is exclusive: a code expiring now is expired.
    assert_eq!(code(true, 0, 1, Some(now)).status(now), CodeStatus::Expired);
    assert_eq!(
        code(true, 2, 2, None)
            .check_redeemable(now)
            .unwrap_err()
            .code(),
        "code_exhausted"
    );
    assert_eq!(
        code(false, 0, 2, None)
            .check_redeemable(now)
            .unwrap_err()
            .code(),
        "code_disabled"
    );
    assert_eq!(
        code(true, 0, 2, past)
            .check_redeemable(now)
            .unwrap_err()
            .code(),
        "code_expired"
    );
    assert_eq!(
        CodeStatus::parse("exhausted").unwrap(),
        CodeStatus::Exhausted
    );
    assert_eq!(
        CodeStatus::parse("used").unwrap_err().code(),
        "invalid_request"
    );
}

#[test]
fn failed_attempts_slide_over_an_hour() {
    let now = at(2026, 1, 1, 11, 0, 30);
    let m = failure_minute(now);
    assert!(check_failed_attempts(&[], now).is_ok());
    assert!(check_failed_attempts(&[(m, 19)], now).is_ok());
    // The 21st attempt after 20 failures is refused.
    let err = check_failed_attempts(&[(m, 20)], now).unwrap_err();
    assert!(matches!(
        err,
        Error::TooManyFailedAttempts { retry_after_seconds } if retry_after_seconds == 3600 - 30
    ));
    // Split across the hour boundary, still counted together.
    let err = check_failed_attempts(&[(m - 1, 10), (m, 10)], now).unwrap_err();
    assert!(matches!(
        err,
        Error::TooManyFailedAttempts { retry_after_seconds } if retry_after_seconds == 3600 - 90
    ));
    // 60 minutes later the oldest bucket has left the window.
    assert!(check_failed_attempts(&[(m - 60, 20)], now).is_ok());
    assert!(check_failed_attempts(&[(m - 59, 20)], now).is_err());
    // Retry-after counts to the bucket whose expiry brings the total under the limit.
    let err = check_failed_attempts(&[(m - 30, 5), (m - 10, 15), (m, 5)], now).unwrap_err();
    assert!(matches!(
        err,
        Error::TooManyFailedAttempts { retry_after_seconds } if retry_after_seconds == 50 * 60 - 30
    ));
}

#[test]
fn redemption_view_has_the_contract_fields() {
    let r = Redemption {
        code: "ABCD".into(),
        code_key: CodeKey::from_stored("ABCD"),
        batch_id: BatchId::parse("b1").unwrap(),
        user_id: UserId::parse("alice").unwrap(),
        credits_granted: 5,
        balance_after: 7,
        transaction_id: Some("t".into()),
        subscription: Some(SubscriptionChange {
            plan_id: PlanId::parse("pro").unwrap(),
            unit: Unit::Month,
            quantity: 1,
            previous_expires_at: None,
            expires_at: at(2026, 2, 28, 0, 0, 0),
        }),
        is_new: true,
        redeemed_at: at(2026, 1, 31, 0, 0, 0),
    };
    let v = r.view();
    for field in [
        "code",
        "credits_granted",
        "balance_after",
        "subscription",
        "is_new",
        "redeemed_at",
    ] {
        assert!(v.get(field).is_some(), "{field}");
    }
    assert_eq!(v["subscription"]["expires_at"], "2026-02-28T00:00:00Z");
    assert_eq!(v["subscription"]["unit"], "month");
    assert_eq!(v["is_new"], true);
}
