//! Where alerts go: Amazon EventBridge (or, in the local stack, a log line)
//! and the optional signed webhook.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rand::Rng;
use spendguard_core::domain::alert::{webhook_signature, Alert, SIGNATURE_HEADER};
use std::time::Duration;

pub const ENV_EVENT_BUS: &str = "SPENDGUARD_EVENT_BUS";
pub const ENV_WEBHOOK_URL: &str = "SPENDGUARD_WEBHOOK_URL";
pub const ENV_WEBHOOK_SECRET: &str = "SPENDGUARD_WEBHOOK_SECRET";
/// Every variable the alerts function reads beyond the shared ones.
pub const ENV_VARS: &[&str] = &[ENV_EVENT_BUS, ENV_WEBHOOK_URL, ENV_WEBHOOK_SECRET];

pub const EVENT_SOURCE: &str = "spendguard";
pub const EVENT_DETAIL_TYPE: &str = "spendguard.alert";

/// The event bus: EventBridge in AWS; a log line in the local stack (the
/// alerts list shows the rest).
#[derive(Clone, Debug)]
pub enum EventSink {
    EventBridge {
        client: aws_sdk_eventbridge::Client,
        bus: String,
    },
    Log,
}

impl EventSink {
    pub async fn publish(&self, alert: &Alert) -> Result<(), String> {
        match self {
            EventSink::Log => {
                tracing::info!(
                    source = EVENT_SOURCE,
                    detail_type = EVENT_DETAIL_TYPE,
                    detail = %alert.to_json(),
                    "alert event (EventBridge stand-in)"
                );
                Ok(())
            }
            EventSink::EventBridge { client, bus } => {
                let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .event_bus_name(bus)
                    .source(EVENT_SOURCE)
                    .detail_type(EVENT_DETAIL_TYPE)
                    .detail(alert.to_json())
                    .build();
                let out = client
                    .put_events()
                    .entries(entry)
                    .send()
                    .await
                    .map_err(|e| format!("PutEvents: {:?}", e.into_service_error()))?;
                match out.entries().first().and_then(|e| e.error_code()) {
                    None if out.failed_entry_count() == 0 => Ok(()),
                    code => Err(format!("PutEvents entry failed: {code:?}")),
                }
            }
        }
    }
}

/// Retries of one webhook delivery: jittered exponential backoff.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    pub attempts: u32,
    pub base: Duration,
    pub cap: Duration,
    /// Per attempt (connect, send, answer).
    pub timeout: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 4,
            base: Duration::from_millis(250),
            cap: Duration::from_secs(1),
            timeout: Duration::from_secs(3),
        }
    }
}

impl Retry {
    /// Full jitter: uniform in `[0, min(cap, base * 2^attempt)]`.
    fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.cap);
        Duration::from_millis(rand::thread_rng().gen_range(0..=ceiling.as_millis() as u64))
    }
}

/// `POST {url}` with the alert as body and `Spendguard-Signature`.
#[derive(Clone)]
pub struct Webhook {
    url: http::Uri,
    secret: String,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    pub retry: Retry,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook").field("url", &self.url).finish()
    }
}

impl Webhook {
    pub fn new(url: &str, secret: &str) -> Result<Self, String> {
        let url: http::Uri = url.parse().map_err(|e| format!("{ENV_WEBHOOK_URL}: {e}"))?;
        if !matches!(url.scheme_str(), Some("http" | "https")) {
            return Err(format!("{ENV_WEBHOOK_URL}: must be an http(s) URL"));
        }
        if secret.is_empty() {
            return Err(format!(
                "{ENV_WEBHOOK_SECRET} must be set with {ENV_WEBHOOK_URL}"
            ));
        }
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| format!("webhook TLS roots: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            url,
            secret: secret.to_string(),
            client: Client::builder(TokioExecutor::new()).build(connector),
            retry: Retry::default(),
        })
    }

    /// From `SPENDGUARD_WEBHOOK_URL` / `SPENDGUARD_WEBHOOK_SECRET` (none when
    /// the URL is unset).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        match get(ENV_WEBHOOK_URL).filter(|u| !u.trim().is_empty()) {
            None => Ok(None),
            Some(url) => {
                Self::new(url.trim(), &get(ENV_WEBHOOK_SECRET).unwrap_or_default()).map(Some)
            }
        }
    }

    async fn attempt(&self, body: &str) -> Result<(), String> {
        let t = chrono::Utc::now().timestamp();
        let request = http::Request::post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, "spendguard-alerts")
            .header(SIGNATURE_HEADER, webhook_signature(&self.secret, t, body))
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| e.to_string())?;
        let send = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            // Read (and drop) the answer so the connection can be reused.
            let _ = response.into_body().collect().await;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("answered {status}"))
            }
        };
        tokio::time::timeout(self.retry.timeout, send)
            .await
            .map_err(|_| format!("no answer within {:?}", self.retry.timeout))?
    }

    /// Delivers `body`, retrying with jittered backoff; the last error after
    /// the last attempt. Each attempt is signed with its own time.
    pub async fn deliver(&self, body: &str) -> Result<(), String> {
        let mut last = String::new();
        for attempt in 1..=self.retry.attempts.max(1) {
            match self.attempt(body).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::warn!(attempt, error = %e, url = %self.url, "webhook delivery failed");
                    last = e;
                }
            }
            if attempt < self.retry.attempts {
                tokio::time::sleep(self.retry.delay(attempt)).await;
            }
        }
        Err(format!(
            "webhook failed {} time(s); last: {last}",
            self.retry.attempts
        ))
    }
}
