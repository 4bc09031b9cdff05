//! Reading requests: route key, path and query parameters, JSON bodies.

use crate::domain::idempotency::Fingerprint;
use crate::domain::UserId;
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

/// The `{user_id}` of an admin route about one user.
pub fn path_user(req: &Request) -> Result<UserId, Error> {
    UserId::parse(&path_param(req, "user_id")?)
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

/// Parses a JSON body of at most [`MAX_BODY_BYTES`] with the one reader
/// ([`crate::json::from_slice`]: a duplicate key is 400 `invalid_request`).
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
    crate::json::from_slice(bytes)
}

/// Whether `key` is an `Idempotency-Key` the contract accepts: 1-255
/// printable ASCII characters, space included (0x20-0x7E); no control
/// character, no non-ASCII byte.
pub fn is_valid_idempotency_key(key: &[u8]) -> bool {
    (1..=MAX_IDEMPOTENCY_KEY_LEN).contains(&key.len())
        && key.iter().all(|b| (0x20..=0x7E).contains(b))
}

/// The `Idempotency-Key` header, if sent (see [`is_valid_idempotency_key`]).
pub fn idempotency_key(req: &Request) -> Result<Option<String>, Error> {
    let Some(value) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    if !is_valid_idempotency_key(value.as_bytes()) {
        return Err(Error::InvalidIdempotencyKey(
            "Idempotency-Key must be 1-255 printable ASCII characters (space to ~), without control characters".into(),
        ));
    }
    // Printable ASCII is valid UTF-8.
    Ok(Some(String::from_utf8_lossy(value.as_bytes()).into_owned()))
}

/// An optional filter of a list (`?user_id=`, `?batch_id=`, `?status=`):
/// absent is no filter; sent, even empty, it is parsed (an empty id is 400
/// `invalid_id`, not "no filter").
pub fn query_filter<T>(
    req: &Request,
    name: &str,
    parse: impl FnOnce(&str) -> Result<T, Error>,
) -> Result<Option<T>, Error> {
    query_param(req, name).map(|v| parse(&v)).transpose()
}
