//! Audit items: pk `AUDIT`, sk `{created_at}#{id}` (newest last), and on gsi1
//! `AUDIT_USER#{target_user}` / the same sort key for per-user listing.
//! Admin writes are rare, so one partition is far below its write limit.

use super::attr::{self, Item};
use super::list::{Filter, ListQuery};
use super::{keys, unavailable, DynamoStore};
use crate::domain::audit::AuditEntry;
use crate::domain::UserId;
use crate::error::Error;
use crate::paging::{Page, PageRequest};
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use chrono::{DateTime, SecondsFormat, Utc};
use std::future::Future;

pub const AUDIT_PK: &str = "AUDIT";

fn user_index_pk(user: &str) -> String {
    format!("AUDIT_USER#{user}")
}

#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub user_id: Option<UserId>,
    pub action: Option<String>,
}

pub trait AuditStore {
    /// Writes one entry on its own (for refusals that change nothing else).
    fn record_audit(&self, entry: &AuditEntry) -> impl Future<Output = Result<(), Error>> + Send;
    /// Entries newest first.
    fn list_audit(
        &self,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> impl Future<Output = Result<Page<AuditEntry>, Error>> + Send;
}

impl DynamoStore {
    /// The audit entry as one action of a `TransactWriteItems`, so it commits
    /// with the change it describes.
    pub fn audit_put(&self, entry: &AuditEntry) -> Result<TransactWriteItem, Error> {
        let put = Put::builder()
            .table_name(self.table())
            .set_item(Some(audit_item(entry)?))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", keys::PK)
            .build()
            .map_err(|e| Error::Internal(format!("audit put: {e}")))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

impl DynamoStore {
    /// Whether `entry` is stored: the transaction that carried it committed
    /// (each entry has a fresh id, so only that transaction could write it).
    pub(crate) async fn audit_written(&self, entry: &AuditEntry) -> Result<bool, Error> {
        let item = audit_item(entry)?;
        let key = keys::item_key(attr::get_s(&item, keys::PK)?, attr::get_s(&item, keys::SK)?);
        Ok(self.get_consistent(key).await?.is_some())
    }
}

impl AuditStore for DynamoStore {
    async fn record_audit(&self, entry: &AuditEntry) -> Result<(), Error> {
        self.client()
            .put_item()
            .table_name(self.table())
            .set_item(Some(audit_item(entry)?))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn list_audit(
        &self,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> Result<Page<AuditEntry>, Error> {
        let (index, partition) = match &filter.user_id {
            Some(user) => (
                Some(keys::GSI1),
                (keys::GSI1_PK, user_index_pk(user.as_str())),
            ),
            None => (None, (keys::PK, AUDIT_PK.to_string())),
        };
        let query = ListQuery {
            index,
            partition,
            sort_prefix: None,
            descending: true,
            filter: filter
                .action
                .as_deref()
                .map(|action| Filter::equals("action", action)),
            consistent: false,
        };
        self.list_page(query, page, audit_from_item).await
    }
}

fn sort_key(entry: &AuditEntry) -> String {
    format!(
        "{}#{}",
        entry
            .created_at
            .to_rfc3339_opts(SecondsFormat::Micros, true),
        entry.id
    )
}

fn audit_item(entry: &AuditEntry) -> Result<Item, Error> {
    let mut item = Item::new();
    let sk = sort_key(entry);
    item.insert(keys::PK.into(), attr::s(AUDIT_PK));
    item.insert(keys::SK.into(), attr::s(&sk));
    if let Some(user) = &entry.target_user {
        item.insert(keys::GSI1_PK.into(), attr::s(user_index_pk(user.as_str())));
        item.insert(keys::GSI1_SK.into(), attr::s(&sk));
        item.insert("target_user".into(), attr::s(user.as_str()));
    }
    item.insert("id".into(), attr::s(&entry.id));
    item.insert("actor".into(), attr::s(&entry.actor));
    item.insert("action".into(), attr::s(&entry.action));
    if let Some(ip) = &entry.source_ip {
        item.insert("source_ip".into(), attr::s(ip));
    }
    if let Some(ua) = &entry.user_agent {
        item.insert("user_agent".into(), attr::s(ua));
    }
    item.insert("success".into(), AttributeValue::Bool(entry.success));
    item.insert(
        "details".into(),
        attr::s(serde_json::to_string(&entry.details).map_err(|e| Error::Internal(e.to_string()))?),
    );
    item.insert(
        "created_at".into(),
        attr::s(
            entry
                .created_at
                .to_rfc3339_opts(SecondsFormat::Micros, true),
        ),
    );
    Ok(item)
}

fn audit_from_item(item: &Item) -> Result<AuditEntry, Error> {
    let created_at = DateTime::parse_from_rfc3339(attr::get_s(item, "created_at")?)
        .map_err(|e| Error::Internal(format!("audit created_at: {e}")))?
        .with_timezone(&Utc);
    Ok(AuditEntry {
        id: attr::get_s(item, "id")?.to_string(),
        actor: attr::get_s(item, "actor")?.to_string(),
        action: attr::get_s(item, "action")?.to_string(),
        target_user: attr::opt_s(item, "target_user").and_then(|u| UserId::parse(u).ok()),
        source_ip: attr::opt_s(item, "source_ip").map(str::to_string),
        user_agent: attr::opt_s(item, "user_agent").map(str::to_string),
        success: attr::get_bool(item, "success").unwrap_or(true),
        details: serde_json::from_str(attr::get_s(item, "details")?)
            .unwrap_or(serde_json::Value::Null),
        created_at,
    })
}
