//! The items of a usage write: the event record (put once), the quota item's
//! update per window, and reading what a failed condition did not return.

use super::super::attr::{self, Item};
use super::super::quota::window_attr;
use super::super::reservations::{Expr, WindowNames};
use super::super::{keys, DynamoStore};
use super::IngestContext;
use crate::domain::reservation::Hold;
use crate::domain::usage::{StoredStarts, UsageEvent, UsagePlan, WindowWrite, RECORD_RETENTION};
use crate::domain::{Platform, UserId, WindowKind};
use crate::error::Error;
use aws_sdk_dynamodb::types::{
    ConditionCheck, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};

/// Record attribute holding the payload fingerprint.
pub(super) const FINGERPRINT: &str = "fingerprint";

impl DynamoStore {
    pub(super) fn event_record_put(
        &self,
        event: &UsageEvent,
        fingerprint: &str,
        ctx: &IngestContext,
    ) -> Result<TransactWriteItem, Error> {
        let mut item = Item::new();
        item.insert(
            keys::PK.into(),
            attr::s(keys::event_pk(event.event_id.as_str())),
        );
        item.insert(keys::SK.into(), attr::s(keys::EVENT_SK));
        item.insert(FINGERPRINT.into(), attr::s(fingerprint));
        item.insert("user_id".into(), attr::s(event.user_id.as_str()));
        item.insert("platform".into(), attr::s(event.platform.as_str()));
        item.insert("cost_usd".into(), attr::usd(event.cost));
        item.insert(
            "occurred_at".into(),
            attr::s(attr::timestamp(event.occurred_at)),
        );
        if let Some(v) = &event.request_id {
            item.insert("request_id".into(), attr::s(v));
        }
        if let Some(v) = &event.model {
            item.insert("model".into(), attr::s(v));
        }
        if let Some(c) = event.credits {
            item.insert("credits".into(), attr::n(c));
        }
        if let Some(r) = &event.reservation_id {
            item.insert("reservation_id".into(), attr::s(r.as_str()));
        }
        item.insert(
            "processed_at".into(),
            attr::s(attr::timestamp(ctx.processed_at)),
        );
        item.insert(
            keys::TTL.into(),
            attr::n((ctx.processed_at + RECORD_RETENTION).timestamp()),
        );
        self.put_once_action(item)
    }

    /// The quota item's part of the write: per window, the plan's change and
    /// the condition that makes it right. Only `{w}_usage` / `{w}_start` and
    /// what follows from them are touched: the headroom (limit, or 0 when
    /// unlimited, − usage − reserved; `domain::reservation`) moves with the
    /// usage, a rollover restarts the window with nothing reserved, and a
    /// settling event (`release`: per window whether the hold is released,
    /// and the hold) gives the hold back in the same update. Limits and
    /// whatever else the item holds stay as they are.
    pub(super) fn quota_usage_action(
        &self,
        user: &UserId,
        platform: &Platform,
        plan: &UsagePlan,
        release: Option<&([bool; 3], Hold)>,
    ) -> Result<TransactWriteItem, Error> {
        let mut e = Expr::default();
        for (w, (kind, write)) in WindowKind::ALL.iter().zip(&plan.windows).enumerate() {
            let n = WindowNames::of(*kind, &mut e);
            let releases = release.is_some_and(|(r, _)| r[w]);
            window_expr(&mut e, &n, w, write, release.map(|(_, h)| h), releases);
        }
        let key = Item::from([
            (keys::PK.to_string(), attr::s(keys::user_pk(user.as_str()))),
            (
                keys::SK.to_string(),
                attr::s(keys::quota_sk(platform.as_str())),
            ),
        ]);
        // Every counter stays: check the windows are still past, write nothing.
        if !e.has_sets() {
            let (condition, names, values) = e.condition_parts();
            let check = ConditionCheck::builder()
                .table_name(self.table())
                .set_key(Some(key))
                .condition_expression(condition)
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values(Some(values))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .build()
                .map_err(attr::build_err)?;
            return Ok(TransactWriteItem::builder().condition_check(check).build());
        }
        let update = e
            .update(self.table(), key)
            .build()
            .map_err(attr::build_err)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// The fingerprint of the record holding `event`'s id, if there is one
    /// (strongly consistent; only for engines that do not return `ALL_OLD`).
    pub(super) async fn event_record_fingerprint(
        &self,
        event: &UsageEvent,
    ) -> Result<Option<String>, Error> {
        let key = keys::item_key(keys::event_pk(event.event_id.as_str()), keys::EVENT_SK);
        Ok(self
            .get_consistent(key)
            .await?
            .as_ref()
            .and_then(|item| attr::opt_s(item, FINGERPRINT))
            .map(str::to_string))
    }

    /// The quota item's window starts (strongly consistent).
    pub(super) async fn quota_starts(
        &self,
        user: &UserId,
        platform: &Platform,
    ) -> Result<StoredStarts, Error> {
        let key = keys::item_key(
            keys::user_pk(user.as_str()),
            keys::quota_sk(platform.as_str()),
        );
        match self.get_consistent(key).await? {
            Some(item) => starts_from_item(&item),
            None => Ok([None; 3]),
        }
    }
}

/// One window's part of the quota update: the plan's change and the condition
/// that makes it right. `hold` is the settled reservation's hold; `releases`:
/// this window gives it back.
fn window_expr(
    e: &mut Expr,
    n: &WindowNames,
    w: usize,
    write: &WindowWrite,
    hold: Option<&Hold>,
    releases: bool,
) {
    let k = n.k;
    let (amount, start) = (format!(":{k}a"), format!(":{k}s"));
    match write {
        WindowWrite::Add {
            start: at,
            amount: a,
        } => {
            e.value(":zero", attr::n(0));
            e.value(&amount, attr::usd(*a));
            e.value(&start, attr::n(at));
            e.set(format!(
                "{u} = if_not_exists({u}, :zero) + {amount}",
                u = n.u
            ));
            e.cond(format!("{} = {start}", n.s));
            match hold.filter(|_| releases) {
                Some(hold) => {
                    // usage += cost, reserved -= estimate: headroom -= cost - estimate.
                    let delta = e.value(&format!(":{k}d"), attr::usd(*a - hold.estimate));
                    e.value(":hold", attr::usd(hold.estimate));
                    e.set(format!("{r} = if_not_exists({r}, :zero) - :hold", r = n.r));
                    e.set(format!(
                        "{h} = if_not_exists({h}, :zero) - {delta}",
                        h = n.h
                    ));
                }
                None => {
                    e.set(format!(
                        "{h} = if_not_exists({h}, :zero) - {amount}",
                        h = n.h
                    ));
                }
            }
        }
        WindowWrite::Restart {
            start: at,
            amount: a,
        } => {
            e.value(":zero", attr::n(0));
            e.value(&amount, attr::usd(*a));
            e.value(&start, attr::n(at));
            e.set(format!("{} = {amount}", n.u));
            e.set(format!("{} = {start}", n.s));
            // Holds of the old window hold nothing in the new one.
            e.set(format!("{} = :zero", n.r));
            e.set(format!(
                "{} = if_not_exists({}, :zero) - {amount}",
                n.h, n.l
            ));
            e.cond(format!(
                "(attribute_not_exists({s}) OR {s} < {start})",
                s = n.s
            ));
        }
        WindowWrite::Keep { after } => match hold {
            Some(hold) if releases => {
                // A past event settling a hold of the stored window.
                e.value(":zero", attr::n(0));
                e.value(":hold", attr::usd(hold.estimate));
                let hs = e.value(&format!(":{k}hs"), attr::n(hold.starts[w]));
                e.set(format!("{r} = if_not_exists({r}, :zero) - :hold", r = n.r));
                e.set(format!("{h} = if_not_exists({h}, :zero) + :hold", h = n.h));
                e.cond(format!("{} = {hs}", n.s));
            }
            _ => {
                e.value(&start, attr::n(after));
                e.cond(format!("{} > {start}", n.s));
                if let Some(hold) = hold.filter(|h| h.starts[w] > *after) {
                    // Not the hold's window (else it would release).
                    let hs = e.value(&format!(":{k}hs"), attr::n(hold.starts[w]));
                    e.cond(format!("{} <> {hs}", n.s));
                }
            }
        },
    }
}

pub(super) fn starts_from_item(item: &Item) -> Result<StoredStarts, Error> {
    let mut starts = [None; 3];
    for (slot, kind) in starts.iter_mut().zip(WindowKind::ALL) {
        *slot = attr::opt_i64(item, &window_attr(kind, "start"))?;
    }
    Ok(starts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_read_from_an_item() {
        let item = Item::from([
            ("daily_start".to_string(), attr::n(100)),
            ("monthly_start".to_string(), attr::n(7)),
            ("daily_usage".to_string(), attr::n("1.5")),
        ]);
        assert_eq!(starts_from_item(&item).unwrap(), [Some(100), None, Some(7)]);
        let bad = Item::from([("weekly_start".to_string(), attr::n("x"))]);
        assert!(starts_from_item(&bad).is_err());
    }
}
