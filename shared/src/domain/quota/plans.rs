//! Admin changes to a user's records (init, replace, reset) as pure plans, and their audit details.

use super::*;

/// A planned change of one record; the store writes `after` on condition that
/// the stored record still matches `before`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordChange {
    pub before: QuotaRecord,
    pub after: QuotaRecord,
}

pub(super) fn record_of(records: &[QuotaRecord], platform: &Platform) -> QuotaRecord {
    records
        .iter()
        .find(|r| r.platform == platform.as_str())
        .cloned()
        .unwrap_or_else(|| QuotaRecord::unlimited(platform.as_str()))
}

/// A limit `init` filled in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FilledLimit {
    pub platform: String,
    pub window: WindowKind,
    pub limit_usd: Usd,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InitPlan {
    /// Only records with at least one filled limit.
    pub changes: Vec<RecordChange>,
    pub filled: Vec<FilledLimit>,
}

/// `init`: fills every limit no admin or earlier init decided, from the source
/// default merged over the system default. A default of `null` fills nothing, so
/// the limit stays open for a later default. Running it twice changes nothing.
pub fn plan_init(
    records: &[QuotaRecord],
    platforms: &Platforms,
    defaults: &DefaultsSet,
    source: AuthSource,
) -> InitPlan {
    let mut plan = InitPlan::default();
    for platform in platforms.iter() {
        let before = record_of(records, platform);
        let target = defaults.limits_for(source, platform);
        let mut after = before.clone();
        for kind in WindowKind::ALL {
            let window = after.window_mut(kind);
            if let (false, Some(value)) = (window.limit_set, target.get(kind)) {
                window.limit = Some(value);
                window.limit_set = true;
                plan.filled.push(FilledLimit {
                    platform: platform.to_string(),
                    window: kind,
                    limit_usd: value,
                });
            }
        }
        if after != before {
            plan.changes.push(RecordChange { before, after });
        }
    }
    plan
}

/// Replace-all: every configured platform gets exactly the given limits (absent
/// platforms: unlimited), all marked as decided; usage and windows are kept.
pub fn plan_replace(
    records: &[QuotaRecord],
    platforms: &Platforms,
    limits: &BTreeMap<Platform, Limits>,
) -> Vec<RecordChange> {
    platforms
        .iter()
        .map(|platform| {
            let before = record_of(records, platform);
            let wanted = limits.get(platform).copied().unwrap_or_default();
            let mut after = before.clone();
            for kind in WindowKind::ALL {
                let window = after.window_mut(kind);
                window.limit = wanted.get(kind);
                window.limit_set = true;
            }
            RecordChange { before, after }
        })
        .collect()
}

/// Manual reset: the window's usage becomes zero, counted from the current window.
pub fn plan_reset(
    records: &[QuotaRecord],
    platform: &Platform,
    kind: WindowKind,
    now: DateTime<Utc>,
    tz: Tz,
) -> RecordChange {
    let before = record_of(records, platform);
    let mut after = before.clone();
    let window = after.window_mut(kind);
    let start = kind.bounds_at(now, tz).start;
    window.usage = Usd::ZERO;
    // Holds belong to the window they were taken in: a reset that also rolls
    // the window over starts it with nothing reserved (as the store writes it).
    if window.start != Some(start) {
        window.reserved = Usd::ZERO;
    }
    window.start = Some(start);
    RecordChange { before, after }
}

/// The records after `changes` are applied (for answering without a re-read).
pub fn apply_changes(records: &[QuotaRecord], changes: &[RecordChange]) -> Vec<QuotaRecord> {
    let mut out: Vec<QuotaRecord> = records.to_vec();
    for change in changes {
        match out.iter_mut().find(|r| r.platform == change.after.platform) {
            Some(r) => *r = change.after.clone(),
            None => out.push(change.after.clone()),
        }
    }
    out
}

/// Audit details of limit changes: `{"before": {platform: Limits}, "after": ...}`.
pub fn limit_change_details(changes: &[RecordChange]) -> Value {
    let side = |pick: fn(&RecordChange) -> &QuotaRecord| -> Value {
        changes
            .iter()
            .map(|c| {
                let r = pick(c);
                (
                    r.platform.clone(),
                    serde_json::to_value(r.limits()).unwrap_or_default(),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    json!({ "before": side(|c| &c.before), "after": side(|c| &c.after) })
}

/// Audit details of a window reset.
pub fn reset_details(change: &RecordChange, kind: WindowKind) -> Value {
    let side = |r: &QuotaRecord| {
        let w = r.window(kind);
        json!({ "usage_usd": w.usage, "window_start": w.start })
    };
    json!({
        "platform": change.after.platform,
        "window": kind,
        "before": side(&change.before),
        "after": side(&change.after),
    })
}
