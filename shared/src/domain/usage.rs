//! Usage events (SQS → usage-ingest): parsing, the payload fingerprint that
//! tells a duplicate from a conflicting reuse of an `event_id`, and the
//! per-window plan of the one atomic write that applies a group of events.
//!
//! Pure: no AWS types. The store turns a [`UsagePlan`] into a conditional
//! update of the quota item; the conditions are what make it correct, the plan
//! is only the guess of what the item looks like.

use super::reservation::ReservationId;
use super::{EventId, Platform, Platforms, Usd, UserId, WindowKind};
use crate::error::Error;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};

/// How far in the future `occurred_at` may lie (clock skew of the producer).
pub const MAX_FUTURE_SKEW: Duration = Duration::minutes(5);
/// Longest `request_id` / `model` accepted (bytes).
pub const MAX_LABEL_LEN: usize = 256;
/// How long an event record is kept. The contract asks for at least 15 days
/// (SQS keeps a message at most 14); one more day covers TTL clock slack.
pub const RECORD_RETENTION: Duration = Duration::days(16);
/// Ledger category of usage consumption.
pub const CREDITS_CATEGORY_USAGE: &str = "usage";

/// One validated billing event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageEvent {
    pub event_id: EventId,
    pub user_id: UserId,
    pub platform: Platform,
    pub cost: Usd,
    pub occurred_at: DateTime<Utc>,
    pub request_id: Option<String>,
    pub model: Option<String>,
    /// Credits to debit; always > 0 when present (`0` means "none").
    pub credits: Option<i64>,
    /// The reservation this event settles (`domain::reservation`), if any.
    pub reservation_id: Option<ReservationId>,
}

/// The wire shape; every field is validated on its own so each mistake gets
/// its own error code. Unknown fields are ignored (producers may add some).
#[derive(Deserialize)]
struct Wire {
    event_id: String,
    user_id: String,
    platform: String,
    cost_usd: Box<RawValue>,
    occurred_at: String,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    /// Nullable: `null` is "no credits".
    #[serde(default)]
    credits: Option<Box<RawValue>>,
    #[serde(default)]
    reservation_id: Option<String>,
}

impl UsageEvent {
    /// Parses one SQS message body. `now` bounds `occurred_at` (at most
    /// [`MAX_FUTURE_SKEW`] ahead).
    pub fn parse(body: &str, platforms: &Platforms, now: DateTime<Utc>) -> Result<Self, Error> {
        // The one JSON reader of request bodies: a duplicate key is refused.
        let wire: Wire = crate::json::from_str(body)?;
        let event_id = EventId::parse(&wire.event_id)?;
        let user_id = UserId::parse(&wire.user_id)?;
        let platform = platforms.parse(&wire.platform)?;
        let cost = Usd::from_json(&wire.cost_usd)?;
        let occurred_at = DateTime::parse_from_rfc3339(wire.occurred_at.trim())
            .map_err(|e| {
                Error::InvalidTimestamp(format!(
                    "occurred_at {:?} is not an RFC 3339 timestamp: {e}",
                    wire.occurred_at
                ))
            })?
            .with_timezone(&Utc);
        if occurred_at > now + MAX_FUTURE_SKEW {
            return Err(Error::InvalidTimestamp(format!(
                "occurred_at {} is more than 5 minutes in the future",
                wire.occurred_at
            )));
        }
        let request_id = label("request_id", wire.request_id)?;
        let model = label("model", wire.model)?;
        let credits = match wire.credits {
            None => None,
            Some(raw) => match super::credits::json_credits("credits", &raw)? {
                c if c < 0 => {
                    return Err(Error::InvalidAmount(format!(
                        "credits must be an integer between 0 and {}, got {c}",
                        i64::MAX
                    )))
                }
                c => Some(c).filter(|c| *c > 0),
            },
        };
        let reservation_id = wire
            .reservation_id
            .as_deref()
            .map(ReservationId::parse)
            .transpose()?;
        Ok(Self {
            event_id,
            user_id,
            platform,
            cost,
            occurred_at,
            request_id,
            model,
            credits,
            reservation_id,
        })
    }

    /// The canonical text of the parsed event: equal for payloads that mean the
    /// same (`"0.50"` vs `0.5`, `+08:00` vs `Z`, `credits: 0` vs absent).
    pub fn canonical_json(&self) -> String {
        #[derive(Serialize)]
        struct Canonical<'a> {
            v: u8,
            event_id: &'a str,
            user_id: &'a str,
            platform: &'a str,
            cost_usd: String,
            occurred_at: String,
            request_id: Option<&'a str>,
            model: Option<&'a str>,
            credits: Option<i64>,
            // Absent from the text when there is none, so the fingerprints of
            // events without a reservation stay what they were.
            #[serde(skip_serializing_if = "Option::is_none")]
            reservation_id: Option<&'a str>,
        }
        let canonical = Canonical {
            v: 1,
            event_id: self.event_id.as_str(),
            user_id: self.user_id.as_str(),
            platform: self.platform.as_str(),
            cost_usd: self.cost.to_string(),
            occurred_at: self
                .occurred_at
                .to_rfc3339_opts(SecondsFormat::AutoSi, true),
            request_id: self.request_id.as_deref(),
            model: self.model.as_deref(),
            credits: self.credits,
            reservation_id: self.reservation_id.as_ref().map(|r| r.as_str()),
        };
        // Serialising plain strings and integers cannot fail.
        serde_json::to_string(&canonical).unwrap_or_default()
    }

    /// SHA-256 of [`Self::canonical_json`], hex: stored with the event record so a
    /// redelivery can be told apart from a different event reusing the id.
    pub fn fingerprint(&self) -> String {
        hex(&Sha256::digest(self.canonical_json().as_bytes()))
    }

    /// When the usage counts: `occurred_at`, or `now` if that is earlier. A
    /// producer's clock may run up to [`MAX_FUTURE_SKEW`] ahead; placing such an
    /// event in a window that has not begun would restart that counter early and
    /// make the window still current read as empty until its real end. Counted
    /// in the window current when it is applied, no current window ever reads
    /// lower than the usage applied to it.
    pub fn counted_at(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.occurred_at.min(now)
    }

    /// Epoch seconds of the start of the daily, weekly and monthly window the
    /// event counts in (see [`Self::counted_at`]), in zone `tz` (order of
    /// [`WindowKind::ALL`]).
    pub fn window_starts(&self, tz: Tz, now: DateTime<Utc>) -> [i64; 3] {
        let at = self.counted_at(now);
        WindowKind::ALL.map(|kind| kind.bounds_at(at, tz).start.timestamp())
    }
}

fn label(what: &str, value: Option<String>) -> Result<Option<String>, Error> {
    match value {
        None => Ok(None),
        Some(v) if v.is_empty() || v.len() > MAX_LABEL_LEN || v.chars().any(char::is_control) => {
            Err(Error::InvalidRequest(format!(
                "{what} must be 1-{MAX_LABEL_LEN} bytes without control characters"
            )))
        }
        Some(v) => Ok(Some(v)),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Which event record now holds an `event_id`, as found by a write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// Fingerprint of the event the record holds.
    pub fingerprint: String,
    /// Whether this very write created the record (and applied the event).
    pub applied_now: bool,
}

/// What became of one delivered message carrying a valid event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Applied by this delivery.
    Applied,
    /// Already applied with the same payload: acknowledge.
    Duplicate,
    /// The id was used for a different payload: never applied, report it.
    PayloadMismatch,
}

impl Recorded {
    /// The verdict for a delivery whose payload has `fingerprint`. Only the
    /// delivery that created the record counts as `Applied`; `first` says
    /// whether this is that delivery (the batch may carry the id twice).
    pub fn verdict(&self, fingerprint: &str, first: bool) -> Verdict {
        if self.fingerprint != fingerprint {
            Verdict::PayloadMismatch
        } else if self.applied_now && first {
            Verdict::Applied
        } else {
            Verdict::Duplicate
        }
    }
}

/// Actions one `TransactWriteItems` takes.
pub const MAX_ACTIONS_PER_WRITE: usize = 100;

/// Actions of a write of `events` events, `with_credits` of them with
/// credits: a record each, the quota item, and with credits the account and
/// a ledger entry each.
pub fn actions_of_write(events: usize, with_credits: usize) -> usize {
    let account = usize::from(with_credits > 0);
    events + 1 + account + with_credits
}

/// Splits a batch's distinct events into writes: per user (a user's writes run
/// one after another, as credits serialise on the user's account), then per
/// platform in first-seen order, chunks of events that fit one
/// `TransactWriteItems` (records, the quota item, and with credits one account
/// update and a ledger entry per event with consecutive `seq`s; 99 events
/// without credits, 49 with). An event settling a reservation is written
/// alone (its write also settles the record and releases the hold). Returns
/// indexes into `events`.
pub fn write_groups(events: &[UsageEvent]) -> Vec<Vec<Vec<usize>>> {
    /// One platform of one user: the chunks so far and the settling events.
    struct PlatformEvents<'a> {
        platform: &'a Platform,
        chunks: Vec<Vec<usize>>,
        credits_in_last: usize,
        settling: Vec<usize>,
    }
    let mut users: Vec<Vec<PlatformEvents>> = Vec::new();
    let mut user_pos: HashMap<&UserId, usize> = HashMap::new();
    for (i, e) in events.iter().enumerate() {
        let u = *user_pos.entry(&e.user_id).or_insert_with(|| {
            users.push(Vec::new());
            users.len() - 1
        });
        let platforms = &mut users[u];
        let p = match platforms.iter().position(|p| *p.platform == e.platform) {
            Some(p) => p,
            None => {
                platforms.push(PlatformEvents {
                    platform: &e.platform,
                    chunks: Vec::new(),
                    credits_in_last: 0,
                    settling: Vec::new(),
                });
                platforms.len() - 1
            }
        };
        let group = &mut platforms[p];
        if e.reservation_id.is_some() {
            group.settling.push(i);
            continue;
        }
        let credits = usize::from(e.credits.is_some());
        let fits = group.chunks.last().is_some_and(|last| {
            actions_of_write(last.len() + 1, group.credits_in_last + credits)
                <= MAX_ACTIONS_PER_WRITE
        });
        if fits {
            group.credits_in_last += credits;
            if let Some(last) = group.chunks.last_mut() {
                last.push(i);
            }
        } else {
            group.chunks.push(vec![i]);
            group.credits_in_last = credits;
        }
    }
    users
        .into_iter()
        .map(|platforms| {
            let mut writes = Vec::new();
            for p in platforms {
                writes.extend(p.chunks);
                writes.extend(p.settling.into_iter().map(|i| vec![i]));
            }
            writes
        })
        .collect()
}

/// Stored `{daily,weekly,monthly}_start` of a quota item (epoch seconds),
/// `None` where absent (no usage yet, or no item).
pub type StoredStarts = [Option<i64>; 3];

/// What the write does to one window of the quota item. Each variant comes
/// with the condition that makes it right, checked by DynamoDB in the write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowWrite {
    /// Stored start equals `start`: add `amount` to the stored usage.
    Add { start: i64, amount: Usd },
    /// Stored start is older than `start` or absent: the window rolled over,
    /// its usage restarts at `amount`.
    Restart { start: i64, amount: Usd },
    /// Stored start is newer than every event's window: the events belong to
    /// past windows and change no counter (condition: stored start > `after`).
    Keep { after: i64 },
}

/// The quota-item part of one write for a group of events of one user and
/// platform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsagePlan {
    /// In the order of [`WindowKind::ALL`].
    pub windows: [WindowWrite; 3],
}

impl UsagePlan {
    /// Plans the write of `events` against the quota item as last seen.
    /// `known = None` (not read yet) assumes the steady state: every window's
    /// stored start is the newest window among the events, so the write is a
    /// plain add; a wrong guess only costs a failed condition and a retry.
    ///
    /// Per window, the newest window start `m` among the events decides: only
    /// events in window `m` count (older ones are past once `m` is current),
    /// which is the state any one-by-one order of applying them would reach.
    pub fn new(
        events: &[&UsageEvent],
        tz: Tz,
        now: DateTime<Utc>,
        known: Option<&StoredStarts>,
    ) -> Result<Self, Error> {
        if events.is_empty() {
            return Err(Error::Internal(
                "a usage write needs at least one event".into(),
            ));
        }
        let starts: Vec<([i64; 3], Usd)> = events
            .iter()
            .map(|e| (e.window_starts(tz, now), e.cost))
            .collect();
        let mut windows = [WindowWrite::Keep { after: 0 }; 3];
        for (w, slot) in windows.iter_mut().enumerate() {
            let newest = starts.iter().map(|(s, _)| s[w]).max().unwrap_or_default();
            // Not `Usd::checked_add`, which bounds the sum to one input's range:
            // events valid one by one must apply together as they would one by
            // one. A write sums at most 99 amounts of at most 10^36 atoms, well
            // inside an i128 and DynamoDB's 38 digits.
            let mut amount: i128 = 0;
            for (s, cost) in &starts {
                if s[w] == newest {
                    amount = amount.checked_add(cost.atoms()).ok_or_else(|| {
                        Error::InvalidAmount("the usage sum is out of range".into())
                    })?;
                }
            }
            let amount = Usd::from_atoms(amount);
            let stored = match known {
                None => Some(newest),
                Some(k) => k[w],
            };
            *slot = match stored {
                Some(s) if s == newest => WindowWrite::Add {
                    start: newest,
                    amount,
                },
                Some(s) if s > newest => WindowWrite::Keep { after: newest },
                _ => WindowWrite::Restart {
                    start: newest,
                    amount,
                },
            };
        }
        Ok(Self { windows })
    }

    /// The stored starts once this write committed on an item that looked
    /// like `known` (a `Keep` window is only planned from a known start).
    pub fn starts_after(&self, known: Option<&StoredStarts>) -> StoredStarts {
        let mut out = [None; 3];
        for (w, write) in self.windows.iter().enumerate() {
            out[w] = match write {
                WindowWrite::Add { start, .. } | WindowWrite::Restart { start, .. } => Some(*start),
                WindowWrite::Keep { .. } => known.and_then(|k| k[w]),
            };
        }
        out
    }

    /// Whether the write leaves every counter as it is.
    pub fn changes_nothing(&self) -> bool {
        self.windows
            .iter()
            .all(|w| matches!(w, WindowWrite::Keep { .. }))
    }

    /// A stable description, part of the write's idempotency token.
    pub fn describe(&self) -> String {
        let mut parts = BTreeMap::new();
        for (kind, write) in WindowKind::ALL.iter().zip(&self.windows) {
            let text = match write {
                WindowWrite::Add { start, amount } => format!("add:{start}:{amount}"),
                WindowWrite::Restart { start, amount } => format!("restart:{start}:{amount}"),
                WindowWrite::Keep { after } => format!("keep:{after}"),
            };
            parts.insert(kind.as_str(), text);
        }
        parts
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn now() -> DateTime<Utc> {
        utc("2026-11-21T10:00:00Z")
    }

    fn body(fields: Value) -> String {
        let mut base = serde_json::json!({
            "event_id": "evt-1",
            "user_id": "alice",
            "platform": "anthropic",
            "cost_usd": "0.0125",
            "occurred_at": "2026-11-21T09:59:00Z",
        });
        for (k, v) in fields.as_object().unwrap() {
            if v.is_null() {
                base.as_object_mut().unwrap().remove(k);
            } else {
                base[k] = v.clone();
            }
        }
        base.to_string()
    }

    fn parse(fields: Value) -> Result<UsageEvent, Error> {
        UsageEvent::parse(&body(fields), &Platforms::defaults(), now())
    }

    fn event(id: &str, cost: &str, at: &str) -> UsageEvent {
        let fields = serde_json::json!({"event_id": id, "cost_usd": cost, "occurred_at": at});
        UsageEvent::parse(
            &body(fields),
            &Platforms::defaults(),
            utc("2027-01-01T00:00:00Z"),
        )
        .unwrap()
    }

    #[test]
    fn parses_a_full_event() {
        let e = parse(serde_json::json!({
            "request_id": "req-1", "model": "claude-sonnet", "credits": 50, "extra": true
        }))
        .unwrap();
        assert_eq!(e.event_id.as_str(), "evt-1");
        assert_eq!(e.platform.as_str(), "anthropic");
        assert_eq!(e.cost.to_string(), "0.0125");
        assert_eq!(e.occurred_at, utc("2026-11-21T09:59:00Z"));
        assert_eq!(e.request_id.as_deref(), Some("req-1"));
        assert_eq!(e.model.as_deref(), Some("claude-sonnet"));
        assert_eq!(e.credits, Some(50));
    }

    #[test]
    fn cost_is_exact_from_numbers_and_strings() {
        let e = parse(serde_json::json!({"cost_usd": 0.0000000001})).unwrap();
        assert_eq!(e.cost.atoms(), 1);
        let raw = r#"{"event_id":"e","user_id":"u","platform":"openai","cost_usd":123456789.1234567891,"occurred_at":"2026-11-21T10:00:00Z"}"#;
        let e = UsageEvent::parse(raw, &Platforms::defaults(), now()).unwrap();
        assert_eq!(e.cost.to_string(), "123456789.1234567891");
    }

    #[test]
    fn refuses_bad_events_with_their_codes() {
        let cases = [
            (serde_json::json!({"cost_usd": "-0.01"}), "invalid_amount"),
            (serde_json::json!({"cost_usd": -1}), "invalid_amount"),
            (
                serde_json::json!({"cost_usd": "0.00000000001"}),
                "invalid_amount",
            ),
            (serde_json::json!({"cost_usd": "NaN"}), "invalid_amount"),
            (serde_json::json!({"cost_usd": true}), "invalid_amount"),
            (
                serde_json::json!({"platform": "mistral"}),
                "unknown_platform",
            ),
            (serde_json::json!({"event_id": "a b"}), "invalid_id"),
            (serde_json::json!({"event_id": ""}), "invalid_id"),
            (
                serde_json::json!({"user_id": "x".repeat(129)}),
                "invalid_id",
            ),
            (
                serde_json::json!({"occurred_at": "yesterday"}),
                "invalid_timestamp",
            ),
            (
                serde_json::json!({"occurred_at": "2026-11-21T10:05:01Z"}),
                "invalid_timestamp",
            ),
            (serde_json::json!({"credits": -1}), "invalid_amount"),
            (serde_json::json!({"credits": 1.5}), "invalid_amount"),
            (serde_json::json!({"credits": "5"}), "invalid_amount"),
            (
                serde_json::json!({"credits": 9223372036854775808u64}),
                "invalid_amount",
            ),
            (serde_json::json!({"model": ""}), "invalid_request"),
            (
                serde_json::json!({"request_id": "x".repeat(257)}),
                "invalid_request",
            ),
            (serde_json::json!({"request_id": 5}), "invalid_request"),
            (serde_json::json!({"cost_usd": null}), "invalid_request"),
            (serde_json::json!({"user_id": null}), "invalid_request"),
        ];
        for (fields, code) in cases {
            let err = parse(fields.clone()).unwrap_err();
            assert_eq!(err.code(), code, "{fields}: {err}");
        }
        for raw in ["{not json", "[]", "\"x\"", "", "null"] {
            let err = UsageEvent::parse(raw, &Platforms::defaults(), now()).unwrap_err();
            assert_eq!(err.code(), "invalid_request", "{raw:?}");
        }
    }

    #[test]
    fn five_minutes_ahead_is_still_accepted() {
        assert!(parse(serde_json::json!({"occurred_at": "2026-11-21T10:05:00Z"})).is_ok());
        assert!(parse(serde_json::json!({"occurred_at": "2026-11-21T18:05:00+08:00"})).is_ok());
    }

    #[test]
    fn fingerprint_ignores_spelling_but_not_meaning() {
        let a = parse(serde_json::json!({"cost_usd": "0.50", "credits": 0})).unwrap();
        let b = parse(serde_json::json!({
            "cost_usd": 0.5, "occurred_at": "2026-11-21T17:59:00+08:00", "unknown": 1
        }))
        .unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint().len(), 64);
        for change in [
            serde_json::json!({"cost_usd": "0.51"}),
            serde_json::json!({"occurred_at": "2026-11-21T09:59:01Z"}),
            serde_json::json!({"user_id": "bob"}),
            serde_json::json!({"platform": "openai"}),
            serde_json::json!({"model": "m"}),
            serde_json::json!({"request_id": "r"}),
            serde_json::json!({"credits": 1}),
        ] {
            let mut fields = serde_json::json!({"cost_usd": "0.5"});
            for (k, v) in change.as_object().unwrap() {
                fields[k] = v.clone();
            }
            assert_ne!(
                parse(fields).unwrap().fingerprint(),
                a.fingerprint(),
                "{change}"
            );
        }
    }

    #[test]
    fn verdicts() {
        let r = Recorded {
            fingerprint: "f1".into(),
            applied_now: true,
        };
        assert_eq!(r.verdict("f1", true), Verdict::Applied);
        assert_eq!(r.verdict("f1", false), Verdict::Duplicate);
        assert_eq!(r.verdict("f2", true), Verdict::PayloadMismatch);
        let old = Recorded {
            applied_now: false,
            ..r
        };
        assert_eq!(old.verdict("f1", true), Verdict::Duplicate);
    }

    #[test]
    fn groups_per_user_platform_within_the_action_limit() {
        let mk = |id: &str, user: &str, platform: &str, credits: Option<i64>| {
            let mut f = serde_json::json!({"event_id": id, "user_id": user, "platform": platform});
            if let Some(c) = credits {
                f["credits"] = c.into();
            }
            parse(f).unwrap()
        };
        let mut events = vec![
            mk("a", "u1", "openai", None),
            mk("b", "u2", "openai", None),
            mk("c", "u1", "gemini", None),
            mk("d", "u1", "openai", Some(3)),
            mk("e", "u1", "openai", None),
            mk("f", "u1", "openai", Some(1)),
        ];
        // Events with credits join the user's write for the platform.
        let groups = write_groups(&events);
        assert_eq!(groups, vec![vec![vec![0, 3, 4, 5], vec![2]], vec![vec![1]]]);
        // A settling event is written alone.
        let mut settling = mk("g", "u1", "openai", Some(2));
        settling.reservation_id =
            Some(ReservationId::parse("rsv-1700000000000-5-2-abcdefabcdefabcd").unwrap());
        events.push(settling);
        let groups = write_groups(&events);
        assert_eq!(groups[0], vec![vec![0, 3, 4, 5], vec![6], vec![2]]);

        events.clear();
        for i in 0..250 {
            events.push(mk(&format!("e{i}"), "u", "openai", None));
        }
        let sizes: Vec<usize> = write_groups(&events)[0].iter().map(Vec::len).collect();
        assert_eq!(sizes, [99, 99, 52]);
        // With credits: 2 actions per event plus the quota item and the account.
        events.clear();
        for i in 0..120 {
            events.push(mk(&format!("c{i}"), "u", "openai", Some(1)));
        }
        let groups = write_groups(&events);
        let sizes: Vec<usize> = groups[0].iter().map(Vec::len).collect();
        assert_eq!(sizes, [49, 49, 22]);
        assert_eq!(actions_of_write(49, 49), MAX_ACTIONS_PER_WRITE);
        // Mixed: every chunk fits, and no event is left out or repeated.
        events.clear();
        for i in 0..300 {
            events.push(mk(
                &format!("m{i}"),
                "u",
                "openai",
                (i % 3 == 0).then_some(1),
            ));
        }
        let groups = write_groups(&events);
        let mut seen: Vec<usize> = groups[0].concat();
        seen.sort_unstable();
        assert_eq!(seen, (0..300).collect::<Vec<_>>());
        for chunk in &groups[0] {
            let credits = chunk
                .iter()
                .filter(|&&i| events[i].credits.is_some())
                .count();
            assert!(actions_of_write(chunk.len(), credits) <= MAX_ACTIONS_PER_WRITE);
        }
    }

    /// Processing time of the plans below: after every event they hold.
    const LATER: DateTime<Utc> = DateTime::from_timestamp_nanos(1_893_456_000_000_000_000);

    #[test]
    fn a_future_dated_event_counts_in_the_window_current_when_applied() {
        // The producer's clock runs 4 minutes ahead: at 23:58 it stamps 00:02.
        let now = utc("2026-11-22T23:58:00Z");
        let e = event("f", "1.5", "2026-11-23T00:02:00Z");
        let day = utc("2026-11-22T00:00:00Z").timestamp();
        let week = utc("2026-11-16T00:00:00Z").timestamp();
        let month = utc("2026-11-01T00:00:00Z").timestamp();
        assert_eq!(e.window_starts(Tz::UTC, now), [day, week, month]);
        let known = [Some(day), Some(week), Some(month)];
        let plan = UsagePlan::new(&[&e], Tz::UTC, now, Some(&known)).unwrap();
        let amount = Usd::parse_non_negative("1.5").unwrap();
        assert_eq!(
            plan.windows,
            [
                WindowWrite::Add { start: day, amount },
                WindowWrite::Add {
                    start: week,
                    amount
                },
                WindowWrite::Add {
                    start: month,
                    amount
                },
            ],
            "the ending day must not restart before it ends"
        );
        // Applied after its own time, it counts in the window of `occurred_at`.
        let next_day = utc("2026-11-23T00:00:00Z").timestamp();
        assert_eq!(
            e.window_starts(Tz::UTC, utc("2026-11-23T00:05:00Z"))[0],
            next_day
        );
    }

    #[test]
    fn steady_state_plan_is_an_add_of_the_exact_sum() {
        let a = event("a", "0.1", "2026-11-21T09:00:00Z");
        let b = event("b", "0.0000000002", "2026-11-21T09:30:00Z");
        let plan = UsagePlan::new(&[&a, &b], Tz::UTC, LATER, None).unwrap();
        let day = utc("2026-11-21T00:00:00Z").timestamp();
        let week = utc("2026-11-16T00:00:00Z").timestamp();
        let month = utc("2026-11-01T00:00:00Z").timestamp();
        let amount = Usd::parse_non_negative("0.1000000002").unwrap();
        assert_eq!(
            plan.windows,
            [
                WindowWrite::Add { start: day, amount },
                WindowWrite::Add {
                    start: week,
                    amount
                },
                WindowWrite::Add {
                    start: month,
                    amount
                },
            ]
        );
        assert_eq!(
            plan.starts_after(None),
            [Some(day), Some(week), Some(month)]
        );
        assert!(!plan.changes_nothing());
    }

    #[test]
    fn rollover_restarts_and_past_windows_keep() {
        // Sunday 23:59 and Monday 00:00 (2026-11-23 is a Monday) in Shanghai.
        let tz: Tz = "Asia/Shanghai".parse().unwrap();
        let sun = event("s", "1", "2026-11-22T15:59:59Z");
        let mon = event("m", "2", "2026-11-22T16:00:00Z");
        let sun_day = utc("2026-11-21T16:00:00Z").timestamp();
        let mon_day = utc("2026-11-22T16:00:00Z").timestamp();
        let old_week = utc("2026-11-15T16:00:00Z").timestamp();
        let new_week = mon_day;
        let month = utc("2026-10-31T16:00:00Z").timestamp();
        let two = Usd::from_whole(2);
        let three = Usd::from_whole(3);

        // An item on Sunday's windows: day and week restart with Monday's cost only.
        let known = [Some(sun_day), Some(old_week), Some(month)];
        let plan = UsagePlan::new(&[&sun, &mon], tz, LATER, Some(&known)).unwrap();
        assert_eq!(
            plan.windows,
            [
                WindowWrite::Restart {
                    start: mon_day,
                    amount: two
                },
                WindowWrite::Restart {
                    start: new_week,
                    amount: two
                },
                WindowWrite::Add {
                    start: month,
                    amount: three
                },
            ]
        );

        // An item already on Monday: Sunday's event alone changes day and week nothing.
        let known = [Some(mon_day), Some(new_week), Some(month)];
        let plan = UsagePlan::new(&[&sun], tz, LATER, Some(&known)).unwrap();
        assert_eq!(
            plan.windows,
            [
                WindowWrite::Keep { after: sun_day },
                WindowWrite::Keep { after: old_week },
                WindowWrite::Add {
                    start: month,
                    amount: Usd::from_whole(1)
                },
            ]
        );
        assert_eq!(plan.starts_after(Some(&known)), known);

        // No item at all: everything restarts.
        let plan = UsagePlan::new(&[&sun], tz, LATER, Some(&[None; 3])).unwrap();
        assert!(plan
            .windows
            .iter()
            .all(|w| matches!(w, WindowWrite::Restart { .. })));
    }

    #[test]
    fn a_past_event_alone_changes_nothing() {
        let e = event("a", "1", "2026-10-01T00:00:00Z");
        let future = utc("2026-12-01T00:00:00Z").timestamp();
        let plan = UsagePlan::new(&[&e], Tz::UTC, LATER, Some(&[Some(future); 3])).unwrap();
        assert!(plan.changes_nothing());
        assert!(plan.describe().contains("keep:"));
        assert!(UsagePlan::new(&[], Tz::UTC, LATER, None).is_err());
    }
}
