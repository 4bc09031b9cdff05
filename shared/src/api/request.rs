//! Reading requests: route key, path and query parameters, JSON bodies.

use crate::domain::idempotency::Fingerprint;
use crate::error::Error;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt};
use serde::de::DeserializeOwned;

/// Largest JSON body any route accepts.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// API Gateway's route key, e.g. `GET /v1/me/quotas/{platform}/check`.
pub fn route_key(req: &Request) -> &str {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.route_key.as_deref().unwrap_or(""),
        _ => "",
    }
}

pub fn path_param(req: &Request, name: &str) -> Result<String, Error> {
    req.path_parameters_ref()
        .and_then(|p| p.first(name))
        .map(str::to_string)
        .ok_or_else(|| Error::InvalidRequest(format!("missing path parameter {name}")))
}

pub fn query_param(req: &Request, name: &str) -> Option<String> {
    req.query_string_parameters_ref()
        .and_then(|q| q.first(name))
        .map(str::to_string)
}

fn body_bytes(req: &Request) -> &[u8] {
    match req.body() {
        Body::Empty => b"",
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => b"",
    }
}

/// The request's identity for `Idempotency-Key` matching: method, path and the
/// canonical JSON body.
pub fn request_fingerprint(req: &Request) -> Fingerprint {
    Fingerprint::of(req.method().as_str(), req.uri().path(), body_bytes(req))
}

/// Parses a JSON body of at most [`MAX_BODY_BYTES`].
pub fn json_body<T: DeserializeOwned>(req: &Request) -> Result<T, Error> {
    let bytes = body_bytes(req);
    if bytes.len() > MAX_BODY_BYTES {
        return Err(Error::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
        });
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::InvalidRequest("a JSON body is required".into()));
    }
    serde_json::from_slice(bytes).map_err(Error::from_json)
}

/// The `Idempotency-Key` header, if sent (1–255 printable ASCII characters).
pub fn idempotency_key(req: &Request) -> Result<Option<String>, Error> {
    let Some(value) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| {
            !k.is_empty()
                && k.len() <= MAX_IDEMPOTENCY_KEY_LEN
                && k.bytes().all(|b| b.is_ascii_graphic())
        })
        .ok_or_else(|| {
            Error::InvalidIdempotencyKey(
                "Idempotency-Key must be 1-255 printable ASCII characters".into(),
            )
        })?;
    Ok(Some(key.to_string()))
}
