//! Building responses; the single place an [`Error`] becomes HTTP.

use crate::domain::idempotency::StoredResponse;
use crate::error::Error;
use http::StatusCode;
use lambda_http::{Body, Response};
use serde::Serialize;

pub type HttpResponse = Response<Body>;
pub type HttpResult = Result<HttpResponse, Error>;

pub fn json_response(status: StatusCode, value: &impl Serialize) -> HttpResponse {
    match serde_json::to_string(value) {
        Ok(body) => Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::Text(body))
            .expect("static response parts are valid"),
        Err(e) => error_response(&Error::Internal(format!("serialising response: {e}"))),
    }
}

/// `{"error": {"code", "message", ...details}}` with the error's status.
pub fn error_response(err: &Error) -> HttpResponse {
    let status = err.status();
    if status.is_server_error() {
        tracing::error!(code = err.code(), error = %err, "request failed");
    } else {
        tracing::info!(code = err.code(), error = %err, "request refused");
    }
    let mut body = serde_json::json!({ "code": err.code(), "message": err.public_message() });
    if let Some(serde_json::Value::Object(extra)) = err.details() {
        body.as_object_mut().expect("object").extend(extra);
    }
    let mut response = json_response(status, &serde_json::json!({ "error": body }));
    if let Error::TooManyFailedAttempts {
        retry_after_seconds,
    } = err
    {
        if let Ok(v) = retry_after_seconds.to_string().parse() {
            response.headers_mut().insert(http::header::RETRY_AFTER, v);
        }
    }
    response
}

/// Turns a handler's result into a response: a handler never returns `Err` to the
/// runtime (that would be a bare 500).
pub fn respond(result: HttpResult) -> HttpResponse {
    result.unwrap_or_else(|e| error_response(&e))
}

/// Header marking a response replayed for a repeated `Idempotency-Key`.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// The stored first response to an `Idempotency-Key`, with `Idempotent-Replayed: true`.
pub fn replayed_response(stored: &StoredResponse) -> HttpResponse {
    Response::builder()
        .status(StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK))
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(IDEMPOTENT_REPLAYED, "true")
        .body(Body::Text(stored.body.clone()))
        .expect("static response parts are valid")
}
