//! The table's change stream in the local stack: what Lambda's DynamoDB event
//! source mapping does in AWS. The embedded engine (dynoxide) serves the
//! DynamoDB Streams API over HTTP, so the tailer uses aws-sdk-dynamodbstreams
//! against the same endpoint as the table (and works unchanged against any
//! engine or account that has streams).
//!
//! The tailer reads each shard from the latest record on, hands batches to the
//! `alerts` function as Lambda events, and honours its partial batch response:
//! a failed record is retried with the records after it (like
//! `ReportBatchItemFailures`), and after the last retry it is logged as
//! dead-lettered (the stand-in for the mapping's SQS on-failure destination)
//! and the tailer moves past it.

use crate::schema::describe;
use aws_lambda_events::event::dynamodb::{Event, EventRecord, StreamRecord, StreamViewType};
use aws_sdk_dynamodb::types::{StreamSpecification, StreamViewType as TableViewType};
use aws_sdk_dynamodbstreams::types::{AttributeValue as Av, Record, ShardIteratorType};
use serde_dynamo::AttributeValue as Sv;
use spendguard_core::{DynamoStore, Error};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// What the template's `StreamSpecification` says (the template test holds
/// both to it).
pub const STREAM_VIEW_TYPE: &str = "NEW_AND_OLD_IMAGES";
/// Records per invocation, as the template's event source mapping.
pub const BATCH_SIZE: i32 = 100;
/// Invocations of one batch before its failed record is dead-lettered.
pub const MAX_ATTEMPTS: u32 = 3;
const IDLE: Duration = Duration::from_millis(250);

fn failed<E: std::fmt::Debug>(what: &str) -> impl FnOnce(E) -> Error + '_ {
    move |e| Error::StoreUnavailable(format!("{what}: {e:?}"))
}

/// Turns on the table's stream (NEW_AND_OLD_IMAGES) unless it is on already.
pub async fn ensure_stream(store: &DynamoStore, table: &str) -> Result<(), Error> {
    let enabled = describe(store, table)
        .await?
        .stream_specification()
        .is_some_and(|s| s.stream_enabled());
    if enabled {
        return Ok(());
    }
    let spec = StreamSpecification::builder()
        .stream_enabled(true)
        .stream_view_type(TableViewType::from(STREAM_VIEW_TYPE))
        .build()
        .map_err(failed("StreamSpecification"))?;
    store
        .client()
        .update_table()
        .table_name(table)
        .stream_specification(spec)
        .send()
        .await
        .map_err(failed("UpdateTable"))?;
    Ok(())
}

/// Reads a table's stream through the Streams API of the store's endpoint.
#[derive(Clone, Debug)]
pub struct StreamReader {
    client: aws_sdk_dynamodbstreams::Client,
    store: DynamoStore,
}

impl StreamReader {
    /// The Streams API where `store`'s table is: an engine endpoint (the
    /// embedded one, `AWS_ENDPOINT_URL_DYNAMODB`, a test endpoint) with
    /// placeholder credentials, or, on AWS, the standard environment.
    pub async fn for_store(store: &DynamoStore) -> Result<Self, Error> {
        let store = store.with_table(store.table());
        let url = endpoint_of(&store).await?;
        let client = if url.host().is_some_and(|h| h.ends_with(".amazonaws.com")) {
            let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .http_client(spendguard_core::store::http_client())
                .load()
                .await;
            aws_sdk_dynamodbstreams::Client::new(&sdk)
        } else {
            let endpoint = format!(
                "{}://{}",
                url.scheme_str().unwrap_or("http"),
                url.authority().map(|a| a.as_str()).unwrap_or_default()
            );
            let config = aws_sdk_dynamodbstreams::config::Builder::new()
                .behavior_version(aws_sdk_dynamodbstreams::config::BehaviorVersion::latest())
                .region(
                    store
                        .client()
                        .config()
                        .region()
                        .cloned()
                        .unwrap_or_else(|| {
                            aws_sdk_dynamodbstreams::config::Region::new("us-east-1")
                        }),
                )
                .endpoint_url(endpoint)
                .http_client(spendguard_core::store::http_client())
                .credentials_provider(aws_sdk_dynamodbstreams::config::Credentials::new(
                    "local",
                    "local",
                    None,
                    None,
                    "spendguard-local",
                ))
                .build();
            aws_sdk_dynamodbstreams::Client::from_conf(config)
        };
        Ok(Self { client, store })
    }

    pub async fn stream_arn(&self) -> Result<String, Error> {
        describe(&self.store, self.store.table())
            .await?
            .latest_stream_arn()
            .map(str::to_string)
            .ok_or_else(|| Error::Internal(format!("table {} has no stream", self.store.table())))
    }

    async fn shards(&self, arn: &str) -> Result<Vec<String>, Error> {
        let out = self
            .client
            .describe_stream()
            .stream_arn(arn)
            .send()
            .await
            .map_err(failed("DescribeStream"))?;
        Ok(out
            .stream_description()
            .map(|d| {
                d.shards()
                    .iter()
                    .filter_map(|s| s.shard_id().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn iterator(
        &self,
        arn: &str,
        shard: &str,
        kind: ShardIteratorType,
    ) -> Result<Option<String>, Error> {
        Ok(self
            .client
            .get_shard_iterator()
            .stream_arn(arn)
            .shard_id(shard)
            .shard_iterator_type(kind)
            .send()
            .await
            .map_err(failed("GetShardIterator"))?
            .shard_iterator)
    }

    /// One `GetRecords` page: the records as Lambda delivers them and the next iterator.
    async fn page(
        &self,
        iterator: &str,
        arn: &str,
    ) -> Result<(Vec<EventRecord>, Option<String>), Error> {
        let out = self
            .client
            .get_records()
            .shard_iterator(iterator)
            .limit(BATCH_SIZE)
            .send()
            .await
            .map_err(failed("GetRecords"))?;
        let records = out.records().iter().map(|r| event_record(r, arn)).collect();
        Ok((records, out.next_shard_iterator))
    }

    /// Every record the stream holds (from the trim horizon), in order.
    pub async fn all_records(&self) -> Result<Vec<EventRecord>, Error> {
        let arn = self.stream_arn().await?;
        let mut all = Vec::new();
        for shard in self.shards(&arn).await? {
            let mut iterator = self
                .iterator(&arn, &shard, ShardIteratorType::TrimHorizon)
                .await?;
            while let Some(it) = iterator {
                let (records, next) = self.page(&it, &arn).await?;
                if records.is_empty() {
                    break;
                }
                all.extend(records);
                iterator = next;
            }
        }
        Ok(all)
    }
}

/// Hands `records` to the function in batches as the event source mapping
/// does: a failed record is retried with the ones after it, up to
/// [`MAX_ATTEMPTS`] invocations, then dead-lettered (logged) and skipped.
/// Returns the reports of every invocation.
pub async fn deliver(app: &alerts::App, records: Vec<EventRecord>) -> Vec<alerts::BatchReport> {
    let mut reports = Vec::new();
    for chunk in records.chunks(BATCH_SIZE as usize) {
        let mut pending: Vec<EventRecord> = chunk.to_vec();
        let mut attempts = 0;
        while !pending.is_empty() {
            attempts += 1;
            let mut event = Event::default();
            event.records = pending.clone();
            let (response, report) = app.process(event).await;
            reports.push(report);
            let Some(failed_seq) = response
                .batch_item_failures
                .first()
                .and_then(|f| f.item_identifier.clone())
            else {
                break;
            };
            let at = pending
                .iter()
                .position(|r| r.change.sequence_number.as_deref() == Some(failed_seq.as_str()))
                .unwrap_or(0);
            pending.drain(..at);
            if attempts >= MAX_ATTEMPTS {
                tracing::error!(
                    sequence = %failed_seq,
                    attempts,
                    "stream record dead-lettered (local stand-in for the mapping's DLQ)"
                );
                pending.remove(0);
                attempts = 0;
            } else {
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempts))).await;
            }
        }
    }
    reports
}

/// A position in every shard of the table's stream.
pub struct Tail {
    reader: StreamReader,
    arn: String,
    iterators: HashMap<String, Option<String>>,
}

impl Tail {
    /// From the stream's latest record on (what is written after this returns).
    pub async fn latest(reader: StreamReader) -> Result<Self, Error> {
        let arn = reader.stream_arn().await?;
        let mut iterators = HashMap::new();
        for shard in reader.shards(&arn).await? {
            let it = reader
                .iterator(&arn, &shard, ShardIteratorType::Latest)
                .await?;
            iterators.insert(shard, it);
        }
        Ok(Self {
            reader,
            arn,
            iterators,
        })
    }

    /// Feeds every new record to `app`, until the task is dropped.
    pub async fn run(mut self, app: Arc<alerts::App>) {
        loop {
            let mut idle = true;
            for iterator in self.iterators.values_mut() {
                let Some(it) = iterator.clone() else { continue };
                match self.reader.page(&it, &self.arn).await {
                    Ok((records, next)) => {
                        if !records.is_empty() {
                            idle = false;
                            deliver(&app, records).await;
                        }
                        *iterator = next;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "reading the table stream failed; retrying")
                    }
                }
            }
            if idle {
                tokio::time::sleep(IDLE).await;
            }
        }
    }
}

/// The URL `store`'s client sends requests to (one `DescribeTable`, watched).
async fn endpoint_of(store: &DynamoStore) -> Result<http::Uri, Error> {
    let seen = Arc::new(std::sync::Mutex::new(None));
    store
        .client()
        .describe_table()
        .table_name(store.table())
        .customize()
        .interceptor(SeeUri(seen.clone()))
        .send()
        .await
        .map_err(failed("DescribeTable"))?;
    let uri = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    uri.and_then(|u: String| u.parse().ok())
        .ok_or_else(|| Error::Internal("no DynamoDB endpoint seen".into()))
}

#[derive(Debug)]
struct SeeUri(Arc<std::sync::Mutex<Option<String>>>);

impl aws_sdk_dynamodb::config::Intercept for SeeUri {
    fn name(&self) -> &'static str {
        "spendguard-endpoint-of"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _: &aws_sdk_dynamodb::config::RuntimeComponents,
        _: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(context.request().uri().to_string());
        Ok(())
    }
}

fn value(v: &Av) -> Sv {
    match v {
        Av::N(n) => Sv::N(n.clone()),
        Av::S(s) => Sv::S(s.clone()),
        Av::Bool(b) => Sv::Bool(*b),
        Av::B(b) => Sv::B(b.as_ref().to_vec()),
        Av::Null(b) => Sv::Null(*b),
        Av::M(m) => Sv::M(m.iter().map(|(k, v)| (k.clone(), value(v))).collect()),
        Av::L(l) => Sv::L(l.iter().map(value).collect()),
        Av::Ss(s) => Sv::Ss(s.clone()),
        Av::Ns(n) => Sv::Ns(n.clone()),
        Av::Bs(b) => Sv::Bs(b.iter().map(|b| b.as_ref().to_vec()).collect()),
        _ => Sv::Null(true),
    }
}

fn image(item: Option<&HashMap<String, Av>>) -> serde_dynamo::Item {
    item.map(|m| {
        m.iter()
            .map(|(k, v)| (k.clone(), value(v)))
            .collect::<HashMap<String, Sv>>()
    })
    .unwrap_or_default()
    .into()
}

/// A Streams API record as Lambda's DynamoDB event carries it.
pub fn event_record(r: &Record, stream_arn: &str) -> EventRecord {
    let mut change = StreamRecord::default();
    if let Some(d) = r.dynamodb() {
        change.keys = image(d.keys.as_ref());
        change.new_image = image(d.new_image.as_ref());
        change.old_image = image(d.old_image.as_ref());
        change.sequence_number = d.sequence_number().map(str::to_string);
        change.size_bytes = d.size_bytes().unwrap_or_default();
        change.stream_view_type = Some(StreamViewType::NewAndOldImages);
        if let Some(t) = d.approximate_creation_date_time() {
            if let Some(at) = chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos()) {
                change.approximate_creation_date_time = at;
            }
        }
    }
    let mut record = EventRecord::default();
    record.aws_region = r.aws_region().unwrap_or_default().to_string();
    record.change = change;
    record.event_id = r.event_id().unwrap_or_default().to_string();
    record.event_name = r
        .event_name()
        .map(|n| n.as_str().to_string())
        .unwrap_or_default();
    record.event_source = r.event_source().map(str::to_string);
    record.event_version = r.event_version().map(str::to_string);
    record.event_source_arn = Some(stream_arn.to_string());
    record
}

/// The local stack's `alerts` function on the table stream: EventBridge is a
/// log line, `SPENDGUARD_WEBHOOK_URL` / `SPENDGUARD_WEBHOOK_SECRET` as in AWS.
/// Turns the table's stream on first (the template's StreamSpecification; only
/// the local stack does, so test tables without alerts keep their writes free
/// of stream records). An engine without streams still runs everything else:
/// `None`, with a warning.
pub async fn spawn_alerts(
    deps: spendguard_core::Deps,
) -> Result<Option<tokio::task::JoinHandle<()>>, Box<dyn std::error::Error + Send + Sync>> {
    let webhook = alerts::delivery::Webhook::from_lookup(|k| std::env::var(k).ok())?;
    let started = async {
        ensure_stream(&deps.store, deps.store.table()).await?;
        Tail::latest(StreamReader::for_store(&deps.store).await?).await
    };
    let tail = match started.await {
        Ok(tail) => tail,
        Err(e) => {
            tracing::warn!(error = %e, "no change stream: alerts will not run");
            return Ok(None);
        }
    };
    let app = Arc::new(alerts::App::new(
        deps,
        alerts::delivery::EventSink::Log,
        webhook,
    ));
    Ok(Some(tokio::spawn(tail.run(app))))
}
