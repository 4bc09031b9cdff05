//! The Lambda Invoke API of the local stack,
//! `POST /2015-03-31/functions/{function_name}/invocations`, answering as the
//! Lambda service does, so boto3, `aws lambda invoke --endpoint-url` and
//! `cargo lambda invoke` work against it as against AWS:
//!
//! - the function by name, full ARN (`arn:aws:lambda:region:account:function:name`),
//!   partial ARN (`account:function:name`), with a `:$LATEST` suffix or a
//!   `?Qualifier=$LATEST` (percent-encoded or not); anything else is 404
//!   `ResourceNotFoundException`;
//! - `X-Amz-Invocation-Type`: `RequestResponse` (default) runs the function and
//!   answers 200 with its result; `Event` answers 202 with an empty body and runs
//!   it in the background; `DryRun` answers 204;
//! - a function error (the handler's `Err`, an event the function cannot
//!   deserialize, a timeout) is 200 with `X-Amz-Function-Error: Unhandled` and
//!   the runtime's `{"errorType", "errorMessage"}`;
//! - a body that is not JSON (including invalid UTF-8) is 400
//!   `InvalidRequestContentException`;
//! - `X-Amz-Log-Type: Tail` adds `X-Amz-Log-Result`: base64 of the last 4 KB of
//!   the invocation's log (the tracing output produced while it ran);
//! - every answer carries `x-amzn-RequestId`, and an invocation
//!   `X-Amz-Executed-Version: $LATEST`.

use crate::gateway::Functions;
use crate::template::percent_decode;
use aws_lambda_events::event::sqs::SqsEvent;
use base64::Engine;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use lambda_http::Body;
use lambda_runtime::Diagnostic;
use serde_json::{json, Value};
use spendguard_core::api::HttpResponse;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The only version a local function has.
pub const LATEST: &str = "$LATEST";
/// The account id local ARNs carry when the caller names none.
pub const LOCAL_ACCOUNT: &str = "000000000000";
/// Largest payload of a synchronous invocation (Lambda's 6 MB).
pub const MAX_SYNC_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;
/// Largest payload of an asynchronous (`Event`) invocation (Lambda's 1 MB).
pub const MAX_ASYNC_PAYLOAD_BYTES: usize = 1024 * 1024;
/// Lambda returns the last 4 KB of the invocation's log.
pub const LOG_TAIL_BYTES: usize = 4 * 1024;
/// Lambda's default timeout, for a function whose template names none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
/// The `errorType` the Rust runtime reports for an event it cannot deserialize.
const DESERIALIZE_ERROR: &str = "lambda_runtime::deserializer::DeserializeError";
const DESERIALIZE_CONTEXT: &str =
    "failed to deserialize the incoming data into the function's payload type";

/// One request to the Invoke API.
#[derive(Clone, Copy, Debug)]
pub struct InvokeRequest<'a> {
    /// The `{function_name}` path segment as sent (percent-encoded or not).
    pub function: &'a str,
    /// The query string (`Qualifier=...`), if any.
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// The functions the Invoke API knows, with their timeouts.
#[derive(Clone, Debug)]
pub struct Registry {
    timeouts: HashMap<String, Duration>,
}

impl Registry {
    /// The functions of the bundled template (their binary names, as deployed).
    pub fn from_template(template: &crate::template::Template) -> Self {
        Self {
            timeouts: template
                .functions()
                .into_iter()
                .map(|f| {
                    let timeout = f
                        .timeout_seconds
                        .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
                    (f.binary, timeout)
                })
                .collect(),
        }
    }

    fn timeout(&self, name: &str) -> Option<Duration> {
        self.timeouts.get(name).copied()
    }
}

/// The function a request names, with where its ARN says it lives.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    name: String,
    qualifier: Option<String>,
    region: String,
    account: String,
}

impl Target {
    fn arn(&self) -> String {
        let mut arn = format!(
            "arn:aws:lambda:{}:{}:function:{}",
            self.region, self.account, self.name
        );
        if let Some(q) = &self.qualifier {
            arn.push(':');
            arn.push_str(q);
        }
        arn
    }
}

fn default_region() -> String {
    ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "us-east-1".to_string())
}

/// Parses the `{function_name}` segment and the `Qualifier` query parameter.
fn parse_target(raw: &str, query: Option<&str>) -> Result<Target, ServiceError> {
    let decoded = percent_decode(raw);
    let invalid = || {
        ServiceError(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            format!(
                "1 validation error detected: Value '{decoded}' at 'functionName' failed to \
                 satisfy constraint: Member must be a function name, a partial ARN or a full ARN"
            ),
        )
    };
    let parts: Vec<&str> = decoded.split(':').collect();
    let (region, account, name, qualifier) = match parts.as_slice() {
        ["arn", _partition, "lambda", region, account, "function", name, rest @ ..]
            if rest.len() <= 1 =>
        {
            (region.to_string(), account.to_string(), *name, rest.first())
        }
        [account, "function", name, rest @ ..] if rest.len() <= 1 => {
            (default_region(), account.to_string(), *name, rest.first())
        }
        [name, rest @ ..] if rest.len() <= 1 => (
            default_region(),
            LOCAL_ACCOUNT.to_string(),
            *name,
            rest.first(),
        ),
        _ => return Err(invalid()),
    };
    let valid_name = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !valid_name(name) || qualifier.is_some_and(|q| q.is_empty()) {
        return Err(invalid());
    }
    let from_query = query.and_then(|q| {
        q.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == "Qualifier").then(|| percent_decode(&v.replace('+', " ")))
        })
    });
    let qualifier = match (qualifier.map(|q| q.to_string()), from_query) {
        (Some(a), Some(b)) if a != b => {
            return Err(ServiceError(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValueException",
                "The derived qualifier from the function name does not match the specified \
                 qualifier."
                    .to_string(),
            ))
        }
        (a, b) => a.or(b),
    };
    Ok(Target {
        name: name.to_string(),
        qualifier,
        region,
        account,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InvocationType {
    RequestResponse,
    Event,
    DryRun,
}

/// A new request id, as Lambda's `x-amzn-RequestId` (a UUID-shaped string).
fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let hex = format!(
        "{:020x}{:012x}",
        nanos & ((1 << 80) - 1),
        n & 0xffff_ffff_ffff
    );
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// An error of the Lambda service itself, before it is a response.
#[derive(Debug)]
struct ServiceError(StatusCode, &'static str, String);

impl ServiceError {
    fn response(self) -> HttpResponse {
        service_error(self.0, self.1, self.2)
    }
}

/// An error of the Lambda service itself (not of the function): `status`,
/// `x-amzn-ErrorType` and `{"Type": "User", "message"}` (Lambda's spelling;
/// `ResourceNotFoundException` spells it `Message`).
fn service_error(status: StatusCode, error_type: &str, message: String) -> HttpResponse {
    let key = if error_type == "ResourceNotFoundException" {
        "Message"
    } else {
        "message"
    };
    let body = json!({ "Type": "User", key: message });
    let mut response = Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header("x-amzn-RequestId", request_id())
        .body(Body::Text(body.to_string()))
        .expect("static response parts are valid");
    if let Ok(v) = HeaderValue::from_str(error_type) {
        response.headers_mut().insert("x-amzn-ErrorType", v);
    }
    response
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// An enum header of the Invoke API: absent is `default`; a value outside
/// `values` gets the ValidationException Lambda answers (naming `member`).
fn enum_header<T: Copy>(
    headers: &HeaderMap,
    name: &str,
    member: &str,
    values: &[(&str, T)],
    default: T,
) -> Result<T, ServiceError> {
    let Some(value) = header(headers, name) else {
        return Ok(default);
    };
    if let Some((_, known)) = values.iter().find(|(text, _)| *text == value) {
        return Ok(*known);
    }
    let set: Vec<&str> = values.iter().map(|(text, _)| *text).collect();
    Err(ServiceError(
        StatusCode::BAD_REQUEST,
        "ValidationException",
        format!(
            "1 validation error detected: Value '{value}' at '{member}' failed to satisfy \
             constraint: Member must satisfy enum value set: [{}]",
            set.join(", ")
        ),
    ))
}

/// Answers one Invoke API request: checked as the Lambda service checks it,
/// then run in the background (`Event`), not at all (`DryRun`) or awaited.
pub async fn invoke(
    functions: &Arc<Functions>,
    registry: &Registry,
    echo_logs: bool,
    request: InvokeRequest<'_>,
) -> HttpResponse {
    let call = match Call::check(registry, &request) {
        Ok(call) => call,
        Err(err) => return err.response(),
    };
    let id = request_id();
    match call.kind {
        InvocationType::DryRun => bare(StatusCode::NO_CONTENT, &id),
        InvocationType::Event => {
            call.spawn(functions.clone(), id.clone());
            let mut response = bare(StatusCode::ACCEPTED, &id);
            response
                .headers_mut()
                .insert("X-Amz-Executed-Version", HeaderValue::from_static(LATEST));
            response
        }
        InvocationType::RequestResponse => call.run(functions, echo_logs, &id).await,
    }
}

/// An answer without a body.
fn bare(status: StatusCode, id: &str) -> HttpResponse {
    Response::builder()
        .status(status)
        .header("x-amzn-RequestId", id)
        .body(Body::Empty)
        .expect("static response parts are valid")
}

/// An invocation the service accepted.
struct Call {
    target: Target,
    timeout: Duration,
    kind: InvocationType,
    tail: bool,
    payload: Vec<u8>,
}

impl Call {
    /// The function (404 if unknown), the invocation and log types, the
    /// payload's size and JSON, in the order the service checks them.
    fn check(registry: &Registry, request: &InvokeRequest<'_>) -> Result<Self, ServiceError> {
        let target = parse_target(request.function, request.query)?;
        let timeout = match registry.timeout(&target.name) {
            Some(t) if target.qualifier.as_deref().is_none_or(|q| q == LATEST) => t,
            _ => {
                return Err(ServiceError(
                    StatusCode::NOT_FOUND,
                    "ResourceNotFoundException",
                    format!("Function not found: {}", target.arn()),
                ))
            }
        };
        let kind = enum_header(
            request.headers,
            "x-amz-invocation-type",
            "invocationType",
            &[
                ("Event", InvocationType::Event),
                ("RequestResponse", InvocationType::RequestResponse),
                ("DryRun", InvocationType::DryRun),
            ],
            InvocationType::RequestResponse,
        )?;
        let tail = enum_header(
            request.headers,
            "x-amz-log-type",
            "logType",
            &[("Tail", true), ("None", false)],
            false,
        )?;
        let payload = match kind {
            // A dry run checks the function and its parameters, not the payload.
            InvocationType::DryRun => Vec::new(),
            _ => json_payload(kind, request.body)?,
        };
        Ok(Self {
            target,
            timeout,
            kind,
            tail,
            payload,
        })
    }

    /// `Event`: runs in the background; a failure is logged, as Lambda does.
    fn spawn(self, functions: Arc<Functions>, id: String) {
        tokio::spawn(async move {
            let name = &self.target.name;
            if let Err(err) = execute(&functions, name, &self.payload, self.timeout, &id).await {
                tracing::error!(
                    function = %name,
                    request_id = %id,
                    error_type = %err.error_type,
                    error = %err.error_message,
                    "asynchronous invocation failed"
                );
            }
        });
    }

    /// `RequestResponse`: 200 with the function's result, or its error
    /// (`X-Amz-Function-Error`); with `Tail`, the log lines in `X-Amz-Log-Result`.
    async fn run(self, functions: &Functions, echo_logs: bool, id: &str) -> HttpResponse {
        let started = Instant::now();
        let run = execute(
            functions,
            &self.target.name,
            &self.payload,
            self.timeout,
            id,
        );
        let (result, log) = if self.tail {
            let log = LogBuffer::default();
            let result = {
                use tracing::instrument::WithSubscriber;
                run.with_subscriber(log.subscriber(echo_logs)).await
            };
            (result, Some(log.tail(id, started.elapsed())))
        } else {
            (run.await, None)
        };
        let (body, function_error) = match result {
            Ok(value) => (value, false),
            Err(err) => (
                json!({ "errorType": err.error_type, "errorMessage": err.error_message }),
                true,
            ),
        };
        let mut response = Response::builder()
            .status(StatusCode::OK)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("x-amzn-RequestId", id)
            .header("X-Amz-Executed-Version", LATEST)
            .body(Body::Text(body.to_string()))
            .expect("static response parts are valid");
        if function_error {
            response.headers_mut().insert(
                "X-Amz-Function-Error",
                HeaderValue::from_static("Unhandled"),
            );
        }
        if let Some(log) = log {
            let encoded = base64::engine::general_purpose::STANDARD.encode(log);
            if let Ok(v) = HeaderValue::from_str(&encoded) {
                response.headers_mut().insert("X-Amz-Log-Result", v);
            }
        }
        response
    }
}

/// The payload within the invocation type's size limit and JSON (so valid
/// UTF-8), as the Lambda service accepts it; an empty one is the empty object.
fn json_payload(kind: InvocationType, body: &[u8]) -> Result<Vec<u8>, ServiceError> {
    let limit = match kind {
        InvocationType::Event => MAX_ASYNC_PAYLOAD_BYTES,
        _ => MAX_SYNC_PAYLOAD_BYTES,
    };
    if body.len() > limit {
        return Err(ServiceError(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestTooLargeException",
            format!("Request must be smaller than {limit} bytes for the InvokeFunction operation"),
        ));
    }
    let payload = if body.is_empty() {
        b"{}".to_vec()
    } else {
        body.to_vec()
    };
    let parsed = match std::str::from_utf8(&payload) {
        Ok(text) => serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|e| e.to_string()),
        Err(e) => Err(format!("invalid UTF-8: {e}")),
    };
    match parsed {
        Ok(_) => Ok(payload),
        Err(e) => Err(ServiceError(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            format!("Could not parse request body into json: {e}"),
        )),
    }
}

/// Runs function `name` on a JSON `payload` as the Lambda runtime does: the
/// function's result, or the error the runtime reports (`errorType`,
/// `errorMessage`). `timeout` is the function's configured timeout.
async fn execute(
    functions: &Functions,
    name: &str,
    payload: &[u8],
    timeout: Duration,
    request_id: &str,
) -> Result<Value, Diagnostic> {
    let deserialize_error = |e: serde_json::Error| Diagnostic {
        error_type: DESERIALIZE_ERROR.to_string(),
        error_message: format!("{DESERIALIZE_CONTEXT}: {e}\n"),
    };
    // Boxed: the functions' futures are deep state machines; nesting them in
    // this one and the timeout would overflow the compiler's layout depth.
    let run: std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send + '_>> =
        Box::pin(async move {
            if name == "usage-ingest" {
                let event: SqsEvent = serde_json::from_slice(payload).map_err(deserialize_error)?;
                let deadline_ms = SystemTime::now()
                    .checked_add(timeout)
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                let response = functions
                    .usage_ingest
                    .invoke(event, deadline_ms)
                    .await
                    .map_err(Diagnostic::from)?;
                return Ok(serde_json::to_value(response).unwrap_or(Value::Null));
            }
            if name == "reservation-expiry" {
                let event: Value = serde_json::from_slice(payload).map_err(deserialize_error)?;
                return functions
                    .reservation_expiry
                    .invoke(event)
                    .await
                    .map_err(|e| Diagnostic {
                        error_type: "ReservationExpiryFailed".to_string(),
                        error_message: e.to_string(),
                    });
            }
            let text = std::str::from_utf8(payload).unwrap_or_default();
            // `lambda_http` panics on some events it cannot turn into a request
            // (a body marked base64 that is not, a query a URI cannot hold): in
            // Lambda the runtime fails that invocation; so does this one.
            let req = std::panic::catch_unwind(|| lambda_http::request::from_str(text))
                .map_err(|_| Diagnostic {
                    error_type: "Runtime.ExitError".to_string(),
                    error_message: "the event cannot be read as an HTTP request".to_string(),
                })?
                .map_err(deserialize_error)?;
            match functions.call_http(name, req).await {
                Some(response) => Ok(api_gateway_v2_result(response)),
                None => Err(Diagnostic {
                    error_type: "Runtime.InvalidEntrypoint".to_string(),
                    error_message: format!("function {name} has no handler in the local stack"),
                }),
            }
        });
    match tokio::time::timeout(timeout, run).await {
        Ok(result) => result,
        Err(_) => Err(Diagnostic {
            error_type: "Sandbox.Timedout".to_string(),
            error_message: format!(
                "RequestId: {request_id} Error: Task timed out after {:.2} seconds",
                timeout.as_secs_f64()
            ),
        }),
    }
}

/// What an HTTP function's handler returns through the Lambda runtime.
pub(crate) fn api_gateway_v2_result(response: HttpResponse) -> Value {
    let (parts, body) = response.into_parts();
    let headers: serde_json::Map<String, Value> = parts
        .headers
        .iter()
        .filter_map(|(k, v)| {
            Some((
                k.as_str().to_string(),
                Value::String(v.to_str().ok()?.to_string()),
            ))
        })
        .collect();
    let (body, base64) = match body {
        Body::Empty => (Value::Null, false),
        Body::Text(t) => (Value::String(t), false),
        Body::Binary(b) => (
            Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
            true,
        ),
        _ => (Value::Null, false),
    };
    json!({
        "statusCode": parts.status.as_u16(),
        "headers": headers,
        "body": body,
        "isBase64Encoded": base64,
        "cookies": [],
    })
}

/// The log lines of one invocation, captured from its tracing output.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut lines) = self.0.lock() {
            lines.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl LogBuffer {
    /// A subscriber writing into this buffer (and, with `echo`, to stdout as
    /// the local stack's own log does), at the level `RUST_LOG` names.
    fn subscriber(&self, echo: bool) -> impl tracing::Subscriber + Send + Sync {
        use tracing_subscriber::layer::SubscriberExt;
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let capture = tracing_subscriber::fmt::layer()
            .with_writer(self.clone())
            .with_ansi(false)
            .without_time()
            .with_target(false);
        let echo = echo.then(|| tracing_subscriber::fmt::layer().with_target(false));
        tracing_subscriber::registry()
            .with(filter)
            .with(capture)
            .with(echo)
    }

    /// The log as Lambda tails it: START, the lines, END and REPORT, last 4 KB.
    fn tail(&self, request_id: &str, elapsed: Duration) -> Vec<u8> {
        let lines = self.0.lock().map(|l| l.clone()).unwrap_or_default();
        let ms = elapsed.as_secs_f64() * 1000.0;
        let mut log = format!("START RequestId: {request_id} Version: {LATEST}\n").into_bytes();
        log.extend_from_slice(&lines);
        log.extend_from_slice(
            format!(
                "END RequestId: {request_id}\nREPORT RequestId: {request_id}\tDuration: {ms:.2} ms\t\
                 Billed Duration: {} ms\t\n",
                ms.ceil() as u64
            )
            .as_bytes(),
        );
        let start = log.len().saturating_sub(LOG_TAIL_BYTES);
        log.split_off(start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(raw: &str, query: Option<&str>) -> Option<(String, Option<String>, String)> {
        parse_target(raw, query)
            .ok()
            .map(|t| (t.name, t.qualifier, t.account))
    }

    #[test]
    fn every_form_of_function_name_resolves() {
        let plain = Some(("quota".to_string(), None, LOCAL_ACCOUNT.to_string()));
        assert_eq!(target("quota", None), plain);
        let latest = Some((
            "quota".to_string(),
            Some(LATEST.to_string()),
            LOCAL_ACCOUNT.to_string(),
        ));
        assert_eq!(target("quota:$LATEST", None), latest);
        assert_eq!(target("quota%3A%24LATEST", None), latest);
        assert_eq!(target("quota", Some("Qualifier=%24LATEST")), latest);
        let acct = |q: Option<&str>| {
            Some((
                "quota".to_string(),
                q.map(str::to_string),
                "123456789012".to_string(),
            ))
        };
        assert_eq!(
            target("arn:aws:lambda:eu-west-1:123456789012:function:quota", None),
            acct(None)
        );
        assert_eq!(
            target(
                "arn%3Aaws%3Alambda%3Aeu-west-1%3A123456789012%3Afunction%3Aquota%3A%24LATEST",
                None
            ),
            acct(Some(LATEST))
        );
        assert_eq!(target("123456789012:function:quota", None), acct(None));
        assert_eq!(target("", None), None);
        assert_eq!(target("a:b:c:d:e", None), None);
        assert_eq!(target("quota:1", Some("Qualifier=2")), None);
    }

    #[test]
    fn the_log_tail_keeps_the_last_4_kb() {
        let log = LogBuffer::default();
        log.0
            .lock()
            .unwrap()
            .extend(std::iter::repeat_n(b'x', 10_000));
        let tail = log.tail("id-1", Duration::from_millis(3));
        assert_eq!(tail.len(), LOG_TAIL_BYTES);
        assert!(String::from_utf8(tail)
            .unwrap()
            .contains("REPORT RequestId: id-1"));
    }
}
