//! Stream record images (serde_dynamo's attribute type, as the Lambda event
//! carries them) to the store's attribute type. Numbers stay decimal text.

use aws_lambda_events::event::dynamodb::EventRecord;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue as Av;
use chrono::{DateTime, Utc};
use serde_dynamo::AttributeValue as Sv;
use spendguard_core::store::attr::Item;

pub fn value(v: &Sv) -> Av {
    match v {
        Sv::N(n) => Av::N(n.clone()),
        Sv::S(s) => Av::S(s.clone()),
        Sv::Bool(b) => Av::Bool(*b),
        Sv::B(b) => Av::B(Blob::new(b.clone())),
        Sv::Null(b) => Av::Null(*b),
        Sv::M(m) => Av::M(m.iter().map(|(k, v)| (k.clone(), value(v))).collect()),
        Sv::L(l) => Av::L(l.iter().map(value).collect()),
        Sv::Ss(s) => Av::Ss(s.clone()),
        Sv::Ns(n) => Av::Ns(n.clone()),
        Sv::Bs(b) => Av::Bs(b.iter().map(|b| Blob::new(b.clone())).collect()),
    }
}

/// An image of a stream record (empty when the record has none).
pub fn item(image: &serde_dynamo::Item) -> Item {
    image.iter().map(|(k, v)| (k.clone(), value(v))).collect()
}

/// When the write happened (`ApproximateCreationDateTime`), if the record says.
pub fn created_at(record: &EventRecord) -> Option<DateTime<Utc>> {
    let t = record.change.approximate_creation_date_time;
    (t.timestamp() > 0).then_some(t)
}
