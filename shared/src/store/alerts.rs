//! Alert items, and reading the change stream's images of the items alerts
//! watch (quota items and credit accounts).
//!
//! | item | pk | sk | gsi1 |
//! |---|---|---|---|
//! | alert record | `ALERT#{alert_id}` | `ALERT` | `ALERTS` / `{occurred_at}#{sequence}#{alert_id}` |
//! | user's copy | `USER#{user}` | `ALERT#{occurred_at}#{sequence}#{alert_id}` | — |
//!
//! Both are written in one transaction, the record `attribute_not_exists`:
//! the deterministic id makes a second evaluation of the same crossing fail
//! the condition, which returns the record (`ALL_OLD`) with its delivery
//! flags (`delivered_eventbridge`, `delivered_webhook`), so a redelivered
//! stream record finishes a delivery that failed and never repeats one that
//! succeeded. Both carry `expires_at_epoch` (TTL, 35 days after the alert);
//! lists also filter on it, as TTL deletion lags.

use super::attr::{self, Item};
use super::list::{Filter, ListQuery};
use super::txn::{CancelReason, Settled, SETTLE_BACKOFF};
use super::{keys, unavailable, DynamoStore};
use crate::api::{Page, PageRequest};
use crate::domain::alert::{timestamp, Alert, AlertType, BalanceImage};
use crate::domain::quota::QuotaRecord;
use crate::domain::{UserId, WindowKind};
use crate::error::Error;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::future::Future;

pub const ALERT_SK: &str = "ALERT";
/// gsi1 partition of every alert (admin list, newest first).
pub const ALERTS_INDEX_PK: &str = "ALERTS";
pub const USER_ALERT_SK_PREFIX: &str = "ALERT#";
pub const DELIVERED_EVENTBRIDGE: &str = "delivered_eventbridge";
pub const DELIVERED_WEBHOOK: &str = "delivered_webhook";

pub fn alert_pk(alert_id: &str) -> String {
    format!("ALERT#{alert_id}")
}

/// Where an alert goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    EventBridge,
    Webhook,
}

impl Channel {
    fn attribute(self) -> &'static str {
        match self {
            Channel::EventBridge => DELIVERED_EVENTBRIDGE,
            Channel::Webhook => DELIVERED_WEBHOOK,
        }
    }
}

/// What writing an alert found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// Written now: deliver it everywhere.
    New,
    /// Already written by an earlier evaluation; deliver only where that one
    /// did not finish.
    Existing { eventbridge: bool, webhook: bool },
}

impl Recorded {
    pub fn delivered(self, channel: Channel) -> bool {
        match (self, channel) {
            (Recorded::New, _) => false,
            (Recorded::Existing { eventbridge, .. }, Channel::EventBridge) => eventbridge,
            (Recorded::Existing { webhook, .. }, Channel::Webhook) => webhook,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct AlertFilter {
    pub user_id: Option<UserId>,
    pub alert_type: Option<AlertType>,
}

pub trait AlertStore {
    /// Writes the alert once (see the module docs).
    /// `order` breaks ties between alerts of the same `occurred_at` (stream
    /// times have a coarse resolution): the stream record's sequence number.
    fn record_alert(
        &self,
        alert: &Alert,
        order: &str,
    ) -> impl Future<Output = Result<Recorded, Error>> + Send;
    /// Sets the alert's delivery flag of `channel`.
    fn mark_delivered(
        &self,
        alert_id: &str,
        channel: Channel,
    ) -> impl Future<Output = Result<(), Error>> + Send;
    /// Alerts newest first, not yet expired at `now`.
    fn list_alerts(
        &self,
        filter: &AlertFilter,
        page: &PageRequest,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Page<Alert>, Error>> + Send;
}

/// An item of the change stream that alerts watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Watched {
    Quota {
        user_id: String,
        record: Box<QuotaRecord>,
    },
    Credits {
        user_id: String,
        balance: BalanceImage,
    },
}

/// What a stream image is, if alerts watch it: a quota item
/// (`USER#{user}` / `QUOTA#{platform}`) or a credit account (`USER#{user}` / `CREDITS`).
pub fn watched(image: &Item) -> Result<Option<Watched>, Error> {
    let (Some(pk), Some(sk)) = (attr::opt_s(image, keys::PK), attr::opt_s(image, keys::SK)) else {
        return Ok(None);
    };
    let Some(user_id) = pk.strip_prefix("USER#") else {
        return Ok(None);
    };
    let user_id = user_id.to_string();
    if sk.starts_with(keys::QUOTA_SK_PREFIX) {
        let record = Box::new(super::quota::quota_from_item(image)?);
        return Ok(Some(Watched::Quota { user_id, record }));
    }
    if sk == keys::CREDITS_SK {
        let balance = BalanceImage {
            available: attr::opt_i64(image, "available")?.unwrap_or(0),
            seq: attr::opt_n(image, "seq")
                .and_then(|t| t.parse().ok())
                .unwrap_or(0),
        };
        return Ok(Some(Watched::Credits { user_id, balance }));
    }
    Ok(None)
}

/// `{occurred_at}#{order:0>40}#{alert_id}`: newest last, in stream order
/// within one timestamp (sequence numbers have up to 40 digits).
fn sort_key(alert: &Alert, order: &str) -> String {
    format!(
        "{}#{order:0>40}#{}",
        timestamp(alert.occurred_at),
        alert.alert_id
    )
}

fn alert_attributes(alert: &Alert) -> Item {
    let mut item = Item::new();
    item.insert("alert_id".into(), attr::s(&alert.alert_id));
    item.insert("type".into(), attr::s(alert.alert_type.as_str()));
    item.insert("user_id".into(), attr::s(&alert.user_id));
    if let Some(p) = &alert.platform {
        item.insert("platform".into(), attr::s(p));
    }
    if let Some(w) = alert.window {
        item.insert("window".into(), attr::s(w.as_str()));
    }
    if let Some(t) = alert.window_start {
        item.insert("window_start".into(), attr::s(timestamp(t)));
    }
    if let Some(p) = alert.threshold_percent {
        item.insert("threshold_percent".into(), attr::n(p));
    }
    if let Some(v) = alert.limit_usd {
        item.insert("limit_usd".into(), attr::usd(v));
    }
    if let Some(v) = alert.usage_usd {
        item.insert("usage_usd".into(), attr::usd(v));
    }
    if let Some(v) = alert.balance {
        item.insert("balance".into(), attr::n(v));
    }
    if let Some(v) = alert.low_balance_credits {
        item.insert("low_balance_credits".into(), attr::n(v));
    }
    item.insert("occurred_at".into(), attr::s(timestamp(alert.occurred_at)));
    item.insert(keys::TTL.into(), attr::n(alert.expires_at_epoch()));
    item
}

fn alert_from_item(item: &Item) -> Result<Alert, Error> {
    let corrupt = |name: &str| Error::Internal(format!("stored alert attribute {name}"));
    Ok(Alert {
        alert_id: attr::get_s(item, "alert_id")?.to_string(),
        alert_type: AlertType::parse(attr::get_s(item, "type")?).ok_or_else(|| corrupt("type"))?,
        user_id: attr::get_s(item, "user_id")?.to_string(),
        platform: attr::opt_s(item, "platform").map(str::to_string),
        window: attr::opt_s(item, "window")
            .map(|w| WindowKind::parse(w).map_err(|_| corrupt("window")))
            .transpose()?,
        window_start: item
            .contains_key("window_start")
            .then(|| attr::get_time(item, "window_start"))
            .transpose()?,
        threshold_percent: attr::opt_n(item, "threshold_percent")
            .map(|t| t.parse().map_err(|_| corrupt("threshold_percent")))
            .transpose()?,
        limit_usd: attr::opt_usd(item, "limit_usd")?,
        usage_usd: attr::opt_usd(item, "usage_usd")?,
        balance: attr::opt_i64(item, "balance")?,
        low_balance_credits: attr::opt_i64(item, "low_balance_credits")?,
        occurred_at: attr::get_time(item, "occurred_at")?,
    })
}

impl DynamoStore {
    fn alert_puts(&self, alert: &Alert, order: &str) -> Result<Vec<TransactWriteItem>, Error> {
        let sk = sort_key(alert, order);
        let mut record = alert_attributes(alert);
        record.insert(keys::PK.into(), attr::s(alert_pk(&alert.alert_id)));
        record.insert(keys::SK.into(), attr::s(ALERT_SK));
        record.insert(keys::GSI1_PK.into(), attr::s(ALERTS_INDEX_PK));
        record.insert(keys::GSI1_SK.into(), attr::s(&sk));
        let mut copy = alert_attributes(alert);
        copy.insert(keys::PK.into(), attr::s(keys::user_pk(&alert.user_id)));
        copy.insert(
            keys::SK.into(),
            attr::s(format!("{USER_ALERT_SK_PREFIX}{sk}")),
        );
        let copy = Put::builder()
            .table_name(self.table())
            .set_item(Some(copy))
            .build()
            .map_err(attr::build_err)?;
        Ok(vec![
            self.put_once_action(record)?,
            TransactWriteItem::builder().put(copy).build(),
        ])
    }
}

/// The existing record returned by a failed `attribute_not_exists`, if that is
/// why the transaction was cancelled.
fn existing_record(reasons: &[CancelReason]) -> Option<Recorded> {
    let first = reasons.first().filter(|r| r.is_condition_failed())?;
    let item = first.item.clone().unwrap_or_default();
    Some(Recorded::Existing {
        eventbridge: attr::get_bool(&item, DELIVERED_EVENTBRIDGE).unwrap_or(false),
        webhook: attr::get_bool(&item, DELIVERED_WEBHOOK).unwrap_or(false),
    })
}

impl AlertStore for DynamoStore {
    async fn record_alert(&self, alert: &Alert, order: &str) -> Result<Recorded, Error> {
        // A fresh token per evaluation: a resend of this write (its answer
        // lost) is answered with its own success, while a later evaluation of
        // the same crossing fails the record's condition (a token derived
        // from the alert would "succeed" as a replay instead). Where an
        // engine ignores tokens, our own lost commit reads as `Existing`
        // with nothing delivered: the deliveries still happen.
        let token = uuid::Uuid::new_v4().to_string();
        let actions = self.alert_puts(alert, order)?;
        // Boxed: the stream handler's future nests deep enough without it to
        // pass the compiler's layout depth limit.
        match Box::pin(self.transact_settled(actions, &token, false, &SETTLE_BACKOFF)).await? {
            Settled::Committed(_) => Ok(Recorded::New),
            Settled::Cancelled { reasons, .. } => existing_record(&reasons).ok_or_else(|| {
                Error::StoreUnavailable(format!("the alert write was cancelled: {reasons:?}"))
            }),
        }
    }

    async fn mark_delivered(&self, alert_id: &str, channel: Channel) -> Result<(), Error> {
        self.client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(keys::item_key(alert_pk(alert_id), ALERT_SK)))
            .update_expression("SET #d = :t")
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#d", channel.attribute())
            .expression_attribute_names("#pk", keys::PK)
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn list_alerts(
        &self,
        filter: &AlertFilter,
        page: &PageRequest,
        now: DateTime<Utc>,
    ) -> Result<Page<Alert>, Error> {
        let mut names = HashMap::from([("#f_exp".to_string(), keys::TTL.to_string())]);
        let mut values = HashMap::from([(":f_now".to_string(), attr::n(now.timestamp()))]);
        let mut expression = "#f_exp > :f_now".to_string();
        if let Some(t) = filter.alert_type {
            names.insert("#f_type".into(), "type".into());
            values.insert(":f_type".into(), attr::s(t.as_str()));
            expression.push_str(" AND #f_type = :f_type");
        }
        let filter_expr = Filter {
            expression,
            names,
            values,
        };
        let query = match &filter.user_id {
            Some(user) => ListQuery {
                index: None,
                partition: (keys::PK, keys::user_pk(user.as_str())),
                sort_prefix: Some((keys::SK, USER_ALERT_SK_PREFIX.to_string())),
                descending: true,
                filter: Some(filter_expr),
                consistent: true,
            },
            None => ListQuery {
                index: Some(keys::GSI1),
                partition: (keys::GSI1_PK, ALERTS_INDEX_PK.to_string()),
                sort_prefix: None,
                descending: true,
                filter: Some(filter_expr),
                consistent: false,
            },
        };
        self.list_page(query, page, alert_from_item).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::alert::{low_balance_alert, AlertSettings};

    #[test]
    fn alert_items_round_trip() {
        let settings = AlertSettings::parse(None, Some("10")).unwrap();
        let at = Utc::now();
        let alert = low_balance_alert(
            "bob",
            Some(BalanceImage {
                available: 20,
                seq: 1,
            }),
            BalanceImage {
                available: 5,
                seq: 2,
            },
            at,
            &settings,
        )
        .unwrap();
        let back = alert_from_item(&alert_attributes(&alert)).unwrap();
        assert_eq!(back.occurred_at, alert.occurred_at.trunc_subsecs_micros());
        assert_eq!(
            Alert {
                occurred_at: alert.occurred_at,
                ..back
            },
            alert
        );
    }

    trait Micros {
        fn trunc_subsecs_micros(self) -> Self;
    }
    impl Micros for DateTime<Utc> {
        fn trunc_subsecs_micros(self) -> Self {
            use chrono::SubsecRound;
            self.trunc_subsecs(6)
        }
    }

    #[test]
    fn watched_items_are_quota_items_and_accounts() {
        let quota = Item::from([
            (keys::PK.to_string(), attr::s("USER#alice")),
            (keys::SK.to_string(), attr::s("QUOTA#openai")),
            ("daily_limit".to_string(), attr::n("10")),
            ("daily_usage".to_string(), attr::n("2.5")),
            ("daily_start".to_string(), attr::n(1_700_000_000)),
        ]);
        let Some(Watched::Quota { user_id, record }) = watched(&quota).unwrap() else {
            panic!("a quota item");
        };
        assert_eq!(user_id, "alice");
        assert_eq!(record.platform, "openai");
        assert_eq!(record.daily.usage.to_string(), "2.5");
        let account = Item::from([
            (keys::PK.to_string(), attr::s("USER#bob")),
            (keys::SK.to_string(), attr::s("CREDITS")),
            ("available".to_string(), attr::n(7)),
            ("seq".to_string(), attr::n(3)),
        ]);
        assert_eq!(
            watched(&account).unwrap(),
            Some(Watched::Credits {
                user_id: "bob".into(),
                balance: BalanceImage {
                    available: 7,
                    seq: 3
                }
            })
        );
        let ledger = Item::from([
            (keys::PK.to_string(), attr::s("USER#bob")),
            (keys::SK.to_string(), attr::s("LEDGER#1")),
        ]);
        assert_eq!(watched(&ledger).unwrap(), None);
    }
}
