//! Usage event bodies: a valid event parses to exactly its fields in any
//! spelling (field order, number or string amounts, any UTC offset); its
//! canonical form reads back to the same event, so the fingerprint (the
//! duplicate check) does not depend on the spelling; any change of one field
//! changes the fingerprint; each invalid field is refused with its own code.

use crate::gen::tricky_zone;
use chrono::{DateTime, Duration, FixedOffset, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use spendguard_core::domain::usage::UsageEvent;
use spendguard_core::domain::{Platforms, Usd, WindowKind};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, 25, 0, 30, 0).unwrap()
}

#[derive(Clone, Debug)]
struct Fields {
    event_id: String,
    user_id: String,
    platform: &'static str,
    cost_atoms: i128,
    /// Seconds before now (negative: ahead, within the allowed skew).
    ago: i64,
    offset_minutes: i32,
    request_id: Option<String>,
    model: Option<String>,
    credits: Option<i64>,
}

fn fields() -> impl Strategy<Value = Fields> {
    (
        "[A-Za-z0-9._:@-]{1,40}",
        "[A-Za-z0-9._:@-]{1,40}",
        prop::sample::select(vec!["anthropic", "openai", "gemini", "antigravity"]),
        0_i128..10_i128.pow(20),
        -300_i64..40 * 86_400,
        (-14 * 60_i32..=14 * 60).prop_map(|m| m - m % 15),
        prop::option::of("[ -~]{1,30}"),
        prop::option::of("[a-z0-9.-]{1,20}"),
        prop::option::of(0_i64..=i64::MAX),
    )
        .prop_map(
            |(
                event_id,
                user_id,
                platform,
                cost_atoms,
                ago,
                offset_minutes,
                request_id,
                model,
                credits,
            )| Fields {
                event_id,
                user_id,
                platform,
                cost_atoms,
                ago,
                offset_minutes,
                request_id,
                model,
                credits,
            },
        )
}

impl Fields {
    fn occurred_at(&self) -> DateTime<Utc> {
        now() - Duration::seconds(self.ago)
    }

    /// The body, spelt one way or another.
    fn body(&self, cost_as_number: bool, reversed: bool) -> String {
        let cost = Usd::from_atoms(self.cost_atoms).to_string();
        let offset = FixedOffset::east_opt(self.offset_minutes * 60).unwrap();
        // Raw JSON texts: a number must reach the parser as written (a
        // serde_json::Value would carry it as an f64).
        let text = |v: Value| v.to_string();
        let mut entries: Vec<(&str, String)> = vec![
            ("event_id", text(json!(self.event_id))),
            ("user_id", text(json!(self.user_id))),
            ("platform", text(json!(self.platform))),
            (
                "cost_usd",
                if cost_as_number {
                    cost.clone()
                } else {
                    text(json!(cost))
                },
            ),
            (
                "occurred_at",
                text(json!(self
                    .occurred_at()
                    .with_timezone(&offset)
                    .to_rfc3339())),
            ),
        ];
        if let Some(r) = &self.request_id {
            entries.push(("request_id", text(json!(r))));
        }
        if let Some(m) = &self.model {
            entries.push(("model", text(json!(m))));
        }
        if let Some(c) = self.credits {
            entries.push(("credits", c.to_string()));
        }
        if reversed {
            entries.reverse();
        }
        let parts: Vec<String> = entries
            .iter()
            .map(|(k, v)| format!("{}: {v}", json!(k)))
            .collect();
        format!("{{{}}}", parts.join(", "))
    }
}

fn parse(body: &str) -> Result<UsageEvent, spendguard_core::Error> {
    UsageEvent::parse(body, &Platforms::defaults(), now())
}

proptest! {
    #[test]
    fn a_valid_event_parses_to_its_fields_in_any_spelling(f in fields()) {
        let event = parse(&f.body(false, false)).unwrap();
        prop_assert_eq!(event.event_id.as_str(), f.event_id.as_str());
        prop_assert_eq!(event.user_id.as_str(), f.user_id.as_str());
        prop_assert_eq!(event.platform.as_str(), f.platform);
        prop_assert_eq!(event.cost.atoms(), f.cost_atoms);
        prop_assert_eq!(event.occurred_at, f.occurred_at());
        prop_assert_eq!(&event.request_id, &f.request_id);
        prop_assert_eq!(&event.model, &f.model);
        // `credits: 0` is "no credits".
        prop_assert_eq!(event.credits, f.credits.filter(|c| *c > 0));
        for (number, reversed) in [(true, false), (false, true), (true, true)] {
            let other = parse(&f.body(number, reversed)).unwrap();
            prop_assert_eq!(&other, &event);
            prop_assert_eq!(other.fingerprint(), event.fingerprint());
        }
        let canonical = parse(&event.canonical_json()).unwrap();
        prop_assert_eq!(&canonical, &event);
        prop_assert_eq!(canonical.canonical_json(), event.canonical_json());
    }

    #[test]
    fn a_different_payload_has_a_different_fingerprint(f in fields(), which in 0_usize..5) {
        let event = parse(&f.body(false, false)).unwrap();
        let mut g = f.clone();
        match which {
            0 => g.cost_atoms += 1,
            1 => g.ago += 1,
            2 => g.user_id.push('x'),
            3 => g.credits = Some(f.credits.unwrap_or(0).saturating_add(1).max(1)),
            _ => g.platform = if f.platform == "openai" { "gemini" } else { "openai" },
        }
        if which == 3 && f.credits == Some(i64::MAX) {
            g.credits = Some(1);
        }
        let other = parse(&g.body(false, false)).unwrap();
        prop_assert_ne!(other.fingerprint(), event.fingerprint());
    }

    #[test]
    fn each_bad_field_is_refused_with_its_code(f in fields(), which in 0_usize..9) {
        let mut body: Map<String, Value> = serde_json::from_str(&f.body(false, false)).unwrap();
        let (field, value, code) = match which {
            0 => ("event_id", json!("has space"), "invalid_id"),
            1 => ("user_id", json!("x".repeat(129)), "invalid_id"),
            2 => ("platform", json!("altavista"), "unknown_platform"),
            3 => ("cost_usd", json!("-1"), "invalid_amount"),
            4 => ("cost_usd", json!("0.00000000001"), "invalid_amount"),
            5 => ("occurred_at", json!("yesterday"), "invalid_timestamp"),
            6 => ("occurred_at", json!((now() + Duration::seconds(301)).to_rfc3339()), "invalid_timestamp"),
            7 => ("credits", json!(-1), "invalid_amount"),
            _ => ("credits", json!(1.5), "invalid_amount"),
        };
        body.insert(field.into(), value);
        let err = parse(&Value::Object(body).to_string()).unwrap_err();
        prop_assert_eq!(err.code(), code);
    }

    /// An event counts in the windows containing `occurred_at` (or now, for
    /// one a skewed clock dated ahead).
    #[test]
    fn an_event_counts_in_the_windows_of_when_it_occurred(f in fields(), tz in tricky_zone()) {
        let event = parse(&f.body(false, false)).unwrap();
        let at = f.occurred_at().min(now());
        let starts = event.window_starts(tz, now());
        for (i, kind) in WindowKind::ALL.into_iter().enumerate() {
            prop_assert_eq!(starts[i], kind.bounds_at(at, tz).start.timestamp());
        }
    }

    /// Any text at all: an event or a 4xx, never a panic or a 5xx.
    #[test]
    fn any_body_is_an_event_or_a_client_error(body in any::<String>()) {
        if let Err(e) = parse(&body) {
            prop_assert!(e.status().is_client_error());
        }
    }
}
