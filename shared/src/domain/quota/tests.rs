//! Quota rules: records, defaults, plans, views and checks.

use super::*;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn usd(s: &str) -> Usd {
    Usd::parse_non_negative(s).unwrap()
}

fn tz(name: &str) -> Tz {
    name.parse().unwrap()
}

/// A record with one window's limit and usage in the window containing `now`.
fn record(
    kind: WindowKind,
    limit: Option<&str>,
    usage: &str,
    now: DateTime<Utc>,
    zone: Tz,
) -> QuotaRecord {
    let mut r = QuotaRecord::unlimited("openai");
    *r.window_mut(kind) = WindowState {
        limit: limit.map(usd),
        limit_set: true,
        usage: usd(usage),
        start: Some(kind.bounds_at(now, zone).start),
        reserved: Usd::ZERO,
    };
    r
}

#[test]
fn rolled_over_window_reads_zero() {
    let tz = Tz::UTC;
    let day1 = utc("2026-11-20T10:00:00Z");
    let day2 = utc("2026-11-21T00:00:00Z");
    let state = WindowState {
        limit: None,
        limit_set: false,
        usage: Usd::from_whole(5),
        start: Some(WindowKind::Daily.bounds_at(day1, tz).start),
        reserved: Usd::ZERO,
    };
    assert_eq!(
        state.usage_at(WindowKind::Daily, day1, tz),
        Usd::from_whole(5)
    );
    assert_eq!(state.usage_at(WindowKind::Daily, day2, tz), Usd::ZERO);
}

#[test]
fn view_lists_every_platform() {
    let now = utc("2026-11-21T10:00:00Z");
    let v = UserQuotasView::build(
        UserId::parse("alice").unwrap(),
        &Platforms::defaults(),
        &[],
        now,
        Tz::UTC,
    );
    assert_eq!(v.quotas.len(), 4);
    let json = serde_json::to_value(&v).unwrap();
    assert_eq!(json["quotas"][0]["daily"]["limit_usd"], Value::Null);
    assert_eq!(json["quotas"][0]["daily"]["usage_usd"], "0");
    assert_eq!(
        json["quotas"][0]["daily"]["window_start"],
        "2026-11-21T00:00:00Z"
    );
}

// --- the limit semantics table ---

#[test]
fn unset_limit_allows_any_usage() {
    let now = utc("2026-11-21T10:00:00Z");
    let r = record(WindowKind::Daily, None, "1000000", now, Tz::UTC);
    let c = QuotaCheck::evaluate(&r, now, Tz::UTC);
    assert!(c.allowed);
    assert_eq!(c.reason, None);
    assert_eq!(c.retry_after_seconds, None);
    assert_eq!(c.windows.daily.remaining_usd, None);
    assert_eq!(c.windows.daily.usage_usd, usd("1000000"));
}

#[test]
fn zero_limit_disables_even_at_zero_usage() {
    let now = utc("2026-11-21T10:00:00Z");
    for kind in WindowKind::ALL {
        let r = record(kind, Some("0"), "0", now, Tz::UTC);
        let c = QuotaCheck::evaluate(&r, now, Tz::UTC);
        assert!(!c.allowed, "{kind:?}");
        assert_eq!(c.reason, Some(DenyReason::PlatformDisabled));
        assert_eq!(c.retry_after_seconds, None);
    }
    // Disabled wins over an exhausted window.
    let mut r = record(WindowKind::Daily, Some("1"), "5", now, Tz::UTC);
    r.monthly.limit = Some(Usd::ZERO);
    let c = QuotaCheck::evaluate(&r, now, Tz::UTC);
    assert_eq!(c.reason, Some(DenyReason::PlatformDisabled));
}

#[test]
fn cap_denies_once_usage_reaches_it() {
    let now = utc("2026-11-21T10:00:00Z");
    let below = record(WindowKind::Daily, Some("10"), "9.9999999999", now, Tz::UTC);
    let c = QuotaCheck::evaluate(&below, now, Tz::UTC);
    assert!(c.allowed);
    assert_eq!(c.windows.daily.remaining_usd, Some(usd("0.0000000001")));

    let at = record(WindowKind::Daily, Some("10"), "10", now, Tz::UTC);
    let c = QuotaCheck::evaluate(&at, now, Tz::UTC);
    assert!(!c.allowed);
    assert_eq!(c.reason, Some(DenyReason::DailyQuotaExhausted));
    // 10:00 to the next midnight.
    assert_eq!(c.retry_after_seconds, Some(14 * 3600));
    assert_eq!(c.windows.daily.remaining_usd, Some(Usd::ZERO));

    let over = record(WindowKind::Weekly, Some("10"), "12.5", now, Tz::UTC);
    let c = QuotaCheck::evaluate(&over, now, Tz::UTC);
    assert_eq!(c.reason, Some(DenyReason::WeeklyQuotaExhausted));
    assert_eq!(c.windows.weekly.remaining_usd, Some(Usd::ZERO));
    // Saturday 10:00 to Monday 00:00.
    assert_eq!(c.retry_after_seconds, Some(38 * 3600));

    let month = record(WindowKind::Monthly, Some("3"), "3", now, Tz::UTC);
    let c = QuotaCheck::evaluate(&month, now, Tz::UTC);
    assert_eq!(c.reason, Some(DenyReason::MonthlyQuotaExhausted));
    assert_eq!(
        c.retry_after_seconds,
        Some((utc("2026-12-01T00:00:00Z") - now).num_seconds())
    );
}

#[test]
fn retry_after_reaches_latest_exhausted_reset() {
    let now = utc("2026-11-21T10:00:00Z");
    let mut r = record(WindowKind::Daily, Some("1"), "1", now, Tz::UTC);
    *r.window_mut(WindowKind::Monthly) =
        record(WindowKind::Monthly, Some("5"), "5", now, Tz::UTC).monthly;
    let c = QuotaCheck::evaluate(&r, now, Tz::UTC);
    assert_eq!(c.reason, Some(DenyReason::MonthlyQuotaExhausted));
    assert_eq!(
        c.retry_after_seconds,
        Some((utc("2026-12-01T00:00:00Z") - now).num_seconds())
    );
    // A week that ends after the month does: the weekly reset is the latest.
    let now = utc("2026-11-30T12:00:00Z"); // Monday; week ends 2026-12-07
    let mut r = record(WindowKind::Weekly, Some("1"), "2", now, Tz::UTC);
    r.monthly = record(WindowKind::Monthly, Some("1"), "2", now, Tz::UTC).monthly;
    let c = QuotaCheck::evaluate(&r, now, Tz::UTC);
    assert_eq!(c.reason, Some(DenyReason::WeeklyQuotaExhausted));
    assert_eq!(
        c.retry_after_seconds,
        Some((utc("2026-12-07T00:00:00Z") - now).num_seconds())
    );
}

#[test]
fn retry_after_rounds_up_partial_seconds() {
    let now = utc("2026-11-21T23:59:59.250Z");
    let r = record(WindowKind::Daily, Some("1"), "1", now, Tz::UTC);
    assert_eq!(
        QuotaCheck::evaluate(&r, now, Tz::UTC).retry_after_seconds,
        Some(1)
    );
}

#[test]
fn check_serialises_as_contract() {
    let now = utc("2026-11-21T10:00:00Z");
    let r = record(WindowKind::Daily, Some("2.5"), "1.25", now, Tz::UTC);
    let v = serde_json::to_value(QuotaCheck::evaluate(&r, now, Tz::UTC)).unwrap();
    assert_eq!(
        v,
        json!({
            "allowed": true, "reason": null, "retry_after_seconds": null,
            "windows": {
                "daily": {"limit_usd": "2.5", "usage_usd": "1.25", "reserved_usd": "0", "remaining_usd": "1.25",
                          "window_start": "2026-11-21T00:00:00Z", "resets_at": "2026-11-22T00:00:00Z"},
                "weekly": {"limit_usd": null, "usage_usd": "0", "reserved_usd": "0", "remaining_usd": null,
                           "window_start": "2026-11-16T00:00:00Z", "resets_at": "2026-11-23T00:00:00Z"},
                "monthly": {"limit_usd": null, "usage_usd": "0", "reserved_usd": "0", "remaining_usd": null,
                            "window_start": "2026-11-01T00:00:00Z", "resets_at": "2026-12-01T00:00:00Z"},
            }
        })
    );
    let denied = record(WindowKind::Daily, Some("0"), "0", now, Tz::UTC);
    let v = serde_json::to_value(QuotaCheck::evaluate(&denied, now, Tz::UTC)).unwrap();
    assert_eq!(v["reason"], "platform_disabled");
}

// --- window boundaries: last second of a window and first of the next ---

/// (zone, window, last second, first second of the next window, start of the
/// window holding the last second)
#[rustfmt::skip]
const BOUNDARIES: &[(&str, WindowKind, &str, &str, &str)] = &[
    // UTC; 2026-11-22 is a Sunday.
    ("UTC", WindowKind::Daily, "2026-11-21T23:59:59Z", "2026-11-22T00:00:00Z", "2026-11-21T00:00:00Z"),
    ("UTC", WindowKind::Weekly, "2026-11-22T23:59:59Z", "2026-11-23T00:00:00Z", "2026-11-16T00:00:00Z"),
    ("UTC", WindowKind::Monthly, "2026-11-30T23:59:59Z", "2026-12-01T00:00:00Z", "2026-11-01T00:00:00Z"),
    ("UTC", WindowKind::Monthly, "2026-12-31T23:59:59Z", "2027-01-01T00:00:00Z", "2026-12-01T00:00:00Z"),
    // Asia/Shanghai: UTC+8, no DST; local midnight is 16:00 UTC the day before.
    ("Asia/Shanghai", WindowKind::Daily, "2026-11-21T15:59:59Z", "2026-11-21T16:00:00Z", "2026-11-20T16:00:00Z"),
    ("Asia/Shanghai", WindowKind::Weekly, "2026-11-22T15:59:59Z", "2026-11-22T16:00:00Z", "2026-11-15T16:00:00Z"),
    ("Asia/Shanghai", WindowKind::Monthly, "2026-11-30T15:59:59Z", "2026-11-30T16:00:00Z", "2026-10-31T16:00:00Z"),
    // America/New_York, DST starts 2026-03-08 02:00 EST (that day has 23 hours).
    ("America/New_York", WindowKind::Daily, "2026-03-09T03:59:59Z", "2026-03-09T04:00:00Z", "2026-03-08T05:00:00Z"),
    ("America/New_York", WindowKind::Weekly, "2026-03-09T03:59:59Z", "2026-03-09T04:00:00Z", "2026-03-02T05:00:00Z"),
    ("America/New_York", WindowKind::Monthly, "2026-04-01T03:59:59Z", "2026-04-01T04:00:00Z", "2026-03-01T05:00:00Z"),
    // DST ends 2026-11-01 02:00 EDT (that day has 25 hours).
    ("America/New_York", WindowKind::Daily, "2026-11-02T04:59:59Z", "2026-11-02T05:00:00Z", "2026-11-01T04:00:00Z"),
    ("America/New_York", WindowKind::Weekly, "2026-11-02T04:59:59Z", "2026-11-02T05:00:00Z", "2026-10-26T04:00:00Z"),
    ("America/New_York", WindowKind::Monthly, "2026-11-01T03:59:59Z", "2026-11-01T04:00:00Z", "2026-10-01T04:00:00Z"),
    ("America/New_York", WindowKind::Monthly, "2026-12-01T04:59:59Z", "2026-12-01T05:00:00Z", "2026-11-01T04:00:00Z"),
];

#[test]
fn window_boundaries_through_the_check() {
    for &(zone, kind, last, first, start) in BOUNDARIES {
        let (zone, last, first, start) = (tz(zone), utc(last), utc(first), utc(start));
        let case = format!("{zone} {kind:?} {last}");
        // Usage recorded in the window that holds the last second exhausts it...
        let r = record(kind, Some("1"), "1", last, zone);
        let w = |c: &QuotaCheck| match kind {
            WindowKind::Daily => c.windows.daily.clone(),
            WindowKind::Weekly => c.windows.weekly.clone(),
            WindowKind::Monthly => c.windows.monthly.clone(),
        };
        let c = QuotaCheck::evaluate(&r, last, zone);
        assert!(!c.allowed, "{case}");
        assert_eq!(c.reason, Some(DenyReason::exhausted(kind)), "{case}");
        assert_eq!(c.retry_after_seconds, Some(1), "{case}");
        assert_eq!(w(&c).window_start, start, "{case}");
        assert_eq!(w(&c).resets_at, first, "{case}");
        // ...and reads as zero from the first second of the next window.
        let c = QuotaCheck::evaluate(&r, first, zone);
        assert!(c.allowed, "{case}");
        assert_eq!(w(&c).usage_usd, Usd::ZERO, "{case}");
        assert_eq!(w(&c).window_start, first, "{case}");
        assert!(w(&c).resets_at > first, "{case}");
    }
}

// --- configuration layer and init ---

fn platforms() -> Platforms {
    Platforms::defaults()
}

fn p(name: &str) -> Platform {
    platforms().parse(name).unwrap()
}

fn defaults(json: &str) -> QuotaDefaults {
    QuotaDefaults::from_body(serde_json::from_str(json).unwrap(), &platforms()).unwrap()
}

#[test]
fn defaults_body_validation() {
    let d = defaults(r#"{"openai": {"daily_limit_usd": "1.5", "monthly_limit_usd": 20}}"#);
    assert_eq!(
        d.limits(&p("openai")),
        Limits {
            daily: Some(usd("1.5")),
            weekly: None,
            monthly: Some(usd("20"))
        }
    );
    assert_eq!(
        serde_json::to_value(&d).unwrap(),
        json!({"openai": {"daily_limit_usd": "1.5", "weekly_limit_usd": null, "monthly_limit_usd": "20"}})
    );
    let parse = |text: &str| {
        // serde_json directly: the one reader would refuse the duplicate key
        // before the body's own check sees it.
        serde_json::from_str::<DefaultsBody>(text)
            .map_err(|e| Error::InvalidRequest(e.to_string()))
            .and_then(|b| QuotaDefaults::from_body(b, &platforms()))
            .map_err(|e| e.code())
    };
    assert_eq!(parse("{}").unwrap(), QuotaDefaults::default());
    assert_eq!(parse(r#"{"mistral": {}}"#), Err("unknown_platform"));
    assert_eq!(
        parse(r#"{"openai": {}, "openai": {}}"#),
        Err("duplicate_platform")
    );
    assert_eq!(
        parse(r#"{"openai": {"daily_limit_usd": "-1"}}"#),
        Err("invalid_amount")
    );
    assert_eq!(
        parse(r#"{"openai": {"daily_limit_usd": "NaN"}}"#),
        Err("invalid_amount")
    );
    assert_eq!(
        parse(r#"{"openai": {"daily_limit_usd": 0.00000000001}}"#),
        Err("invalid_amount")
    );
    assert_eq!(
        parse(r#"{"openai": {"daily_limit": "1"}}"#),
        Err("invalid_request")
    );
    assert_eq!(parse("[]"), Err("invalid_request"));
}

#[test]
fn replacement_validation() {
    // Usd reads its exact source text, so parse from text, not from a Value.
    let entries = |v: Value| serde_json::from_str::<Vec<LimitsEntry>>(&v.to_string());
    let ok = replacement_limits(
        entries(json!([{"platform": "openai", "daily_limit_usd": "5"}])).unwrap(),
        &platforms(),
    )
    .unwrap();
    assert_eq!(ok[&p("openai")].daily, Some(usd("5")));
    let dup = replacement_limits(
        entries(json!([{"platform": "openai"}, {"platform": "openai"}])).unwrap(),
        &platforms(),
    );
    assert_eq!(dup.unwrap_err().code(), "duplicate_platform");
    let unknown = replacement_limits(
        entries(json!([{"platform": "mistral"}])).unwrap(),
        &platforms(),
    );
    assert_eq!(unknown.unwrap_err().code(), "unknown_platform");
}

fn set_of(system: &str, sources: &[(AuthSource, &str)]) -> DefaultsSet {
    DefaultsSet {
        system: defaults(system),
        sources: sources.iter().map(|(s, d)| (*s, defaults(d))).collect(),
    }
}

#[test]
fn source_default_merges_over_system_per_field() {
    let set = set_of(
        r#"{"openai": {"daily_limit_usd": "10", "weekly_limit_usd": "50"}, "gemini": {"monthly_limit_usd": "7"}}"#,
        &[(
            AuthSource::Github,
            r#"{"openai": {"daily_limit_usd": "20", "monthly_limit_usd": "0"}}"#,
        )],
    );
    assert_eq!(
        set.limits_for(AuthSource::Github, &p("openai")),
        Limits {
            daily: Some(usd("20")),
            weekly: Some(usd("50")),
            monthly: Some(Usd::ZERO)
        }
    );
    assert_eq!(
        set.limits_for(AuthSource::Github, &p("gemini")).monthly,
        Some(usd("7"))
    );
    assert_eq!(
        set.limits_for(AuthSource::Email, &p("openai")),
        Limits {
            daily: Some(usd("10")),
            weekly: Some(usd("50")),
            monthly: None
        }
    );
    let view = set.view();
    assert_eq!(view["sources"]["email"], Value::Null);
    assert_eq!(view["sources"]["github"]["openai"]["daily_limit_usd"], "20");
    assert_eq!(view["sources"].as_object().unwrap().len(), 7);
}

#[test]
fn init_fills_only_undecided_limits_and_is_idempotent() {
    let set = set_of(
        r#"{"openai": {"daily_limit_usd": "10", "weekly_limit_usd": "50"}}"#,
        &[],
    );
    // An admin decided openai daily = 5 and anthropic (everything) = unlimited;
    // gemini has usage but no decided limits (created by metering).
    let mut openai = QuotaRecord::unlimited("openai");
    openai.daily.limit = Some(usd("5"));
    openai.daily.limit_set = true;
    let mut gemini = QuotaRecord::unlimited("gemini");
    gemini.daily.usage = usd("3");
    let set = DefaultsSet {
        system: {
            let mut s = set.system.clone();
            s.insert(
                p("gemini"),
                Limits {
                    daily: Some(usd("4")),
                    ..Limits::default()
                },
            );
            s
        },
        ..set
    };
    let records = vec![openai.clone(), gemini.clone()];
    let plan = plan_init(&records, &platforms(), &set, AuthSource::Email);
    let after = apply_changes(&records, &plan.changes);
    let find = |name: &str| after.iter().find(|r| r.platform == name).unwrap().clone();
    assert_eq!(
        find("openai").daily.limit,
        Some(usd("5")),
        "admin value kept"
    );
    assert_eq!(find("openai").weekly.limit, Some(usd("50")), "filled");
    assert!(find("openai").weekly.limit_set);
    assert!(
        !find("openai").monthly.limit_set,
        "null default fills nothing"
    );
    assert_eq!(find("gemini").daily.limit, Some(usd("4")));
    assert_eq!(find("gemini").daily.usage, usd("3"), "usage kept");
    assert_eq!(plan.filled.len(), 2);
    assert!(
        after.iter().all(|r| r.platform != "anthropic"),
        "no-op not written"
    );

    let again = plan_init(&after, &platforms(), &set, AuthSource::Email);
    assert_eq!(again, InitPlan::default());
}

#[test]
fn replace_sets_every_platform_and_keeps_usage() {
    let mut anthropic = QuotaRecord::unlimited("anthropic");
    anthropic.weekly.limit = Some(usd("9"));
    anthropic.weekly.usage = usd("2");
    anthropic.weekly.start = Some(utc("2026-11-16T00:00:00Z"));
    let limits = BTreeMap::from([(
        p("openai"),
        Limits {
            daily: Some(usd("1")),
            ..Limits::default()
        },
    )]);
    let changes = plan_replace(std::slice::from_ref(&anthropic), &platforms(), &limits);
    assert_eq!(changes.len(), 4);
    let a = &changes
        .iter()
        .find(|c| c.after.platform == "anthropic")
        .unwrap()
        .after;
    assert_eq!(a.weekly.limit, None);
    assert!(a.weekly.limit_set);
    assert_eq!(a.weekly.usage, usd("2"));
    assert_eq!(a.weekly.start, anthropic.weekly.start);
    let o = &changes
        .iter()
        .find(|c| c.after.platform == "openai")
        .unwrap()
        .after;
    assert_eq!(o.daily.limit, Some(usd("1")));
    let details = limit_change_details(&changes);
    assert_eq!(details["before"]["anthropic"]["weekly_limit_usd"], "9");
    assert_eq!(
        details["after"]["anthropic"]["weekly_limit_usd"],
        Value::Null
    );
}

#[test]
fn reset_zeroes_one_window_from_the_current_start() {
    let now = utc("2026-11-21T10:00:00Z");
    let mut r = record(WindowKind::Daily, Some("5"), "4", now, Tz::UTC);
    r.weekly.usage = usd("7");
    r.weekly.start = Some(utc("2026-11-16T00:00:00Z"));
    let change = plan_reset(&[r], &p("openai"), WindowKind::Daily, now, Tz::UTC);
    assert_eq!(change.after.daily.usage, Usd::ZERO);
    assert_eq!(change.after.daily.start, Some(utc("2026-11-21T00:00:00Z")));
    assert_eq!(change.after.daily.limit, Some(usd("5")));
    assert_eq!(change.after.weekly.usage, usd("7"));
    let d = reset_details(&change, WindowKind::Daily);
    assert_eq!(d["before"]["usage_usd"], "4");
    assert_eq!(d["after"]["usage_usd"], "0");
}
