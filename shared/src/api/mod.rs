//! The HTTP edge shared by every HTTP function: who is calling (claims from the
//! API Gateway payload 2.0 context), request parsing, and responses.

pub mod auth;
pub mod function;
pub mod pagination;
pub mod request;
pub mod response;

pub use crate::paging::{Cursor, Page, PageRequest};
pub use auth::Caller;
pub use function::{run_http, HttpFunction};
pub use request::{
    idempotency_key, is_valid_idempotency_key, json_body, path_param, path_user, query_filter,
    query_param, request_fingerprint, route_key, MAX_BODY_BYTES,
};
pub use response::{
    error_response, json_response, replayed_response, respond, HttpResponse, HttpResult,
    IDEMPOTENT_REPLAYED,
};
