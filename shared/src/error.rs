//! The one error type of spendguard and its HTTP mapping.
//!
//! Every failure a handler can meet is a variant here; [`Error::status`] and
//! [`Error::code`] are the only place that decides what a client sees.

use http::StatusCode;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // --- authentication and routing ---
    #[error("missing or invalid credentials")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("no route for {0}")]
    RouteNotFound(String),
    #[error("{0}")]
    NotFound(String),

    // --- bad input (4xx, nothing written) ---
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidAmount(String),
    #[error("{0}")]
    InvalidId(String),
    #[error("unknown platform {0:?}")]
    UnknownPlatform(String),
    #[error("unknown auth source {0:?}")]
    UnknownAuthSource(String),
    #[error("platform {0:?} is listed more than once")]
    DuplicatePlatform(String),
    #[error("unknown window {0:?}; expected daily, weekly or monthly")]
    InvalidWindow(String),
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    InvalidIdempotencyKey(String),
    #[error("{0}")]
    InvalidTimestamp(String),
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyKeyMismatch,
    #[error("a request with this Idempotency-Key is still in progress")]
    IdempotencyKeyInUse,

    // --- business refusals ---
    #[error("{0}")]
    InsufficientCredits(String),
    /// A change the balance (a 64-bit integer) cannot hold: the upper twin
    /// of `InsufficientCredits`, a refusal of the state, not of the input.
    #[error("{0}")]
    BalanceOverflow(String),
    #[error("redemption code not found")]
    CodeNotFound,
    #[error("redemption code is disabled")]
    CodeDisabled,
    #[error("redemption code has expired")]
    CodeExpired,
    #[error("redemption code has no uses left")]
    CodeExhausted,
    #[error("this code was already redeemed by this user")]
    AlreadyRedeemed,
    #[error("a redemption of this code by this user is in progress")]
    RedemptionInProgress,
    #[error("too many failed redemption attempts; try again later")]
    TooManyFailedAttempts { retry_after_seconds: i64 },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    EventPayloadMismatch(String),
    #[error("reservation not found")]
    ReservationNotFound,
    #[error("the reservation is {0}, not pending")]
    ReservationNotPending(String),

    // --- our fault ---
    #[error("{0} is not implemented yet")]
    NotImplemented(String),
    #[error("the data store is unavailable: {0}")]
    StoreUnavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn status(&self) -> StatusCode {
        use Error::*;
        match self {
            Unauthorized => StatusCode::UNAUTHORIZED,
            Forbidden(_) => StatusCode::FORBIDDEN,
            RouteNotFound(_) | NotFound(_) => StatusCode::NOT_FOUND,
            InvalidRequest(_)
            | InvalidAmount(_)
            | InvalidId(_)
            | UnknownPlatform(_)
            | UnknownAuthSource(_)
            | DuplicatePlatform(_)
            | InvalidWindow(_)
            | InvalidIdempotencyKey(_)
            | InvalidTimestamp(_) => StatusCode::BAD_REQUEST,
            // The contract treats an oversized body as bad input: 400, not 413.
            PayloadTooLarge { .. } => StatusCode::BAD_REQUEST,
            IdempotencyKeyMismatch => StatusCode::UNPROCESSABLE_ENTITY,
            IdempotencyKeyInUse => StatusCode::CONFLICT,
            InsufficientCredits(_) | BalanceOverflow(_) => StatusCode::CONFLICT,
            CodeNotFound => StatusCode::NOT_FOUND,
            CodeDisabled => StatusCode::FORBIDDEN,
            CodeExpired => StatusCode::GONE,
            CodeExhausted | AlreadyRedeemed | RedemptionInProgress | Conflict(_) => {
                StatusCode::CONFLICT
            }
            TooManyFailedAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            EventPayloadMismatch(_) => StatusCode::CONFLICT,
            ReservationNotFound => StatusCode::NOT_FOUND,
            ReservationNotPending(_) => StatusCode::CONFLICT,
            NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable, snake_case error code of the contract.
    pub fn code(&self) -> &'static str {
        use Error::*;
        match self {
            Unauthorized => "unauthorized",
            Forbidden(_) => "forbidden",
            RouteNotFound(_) => "route_not_found",
            NotFound(_) => "not_found",
            InvalidRequest(_) => "invalid_request",
            InvalidAmount(_) => "invalid_amount",
            InvalidId(_) => "invalid_id",
            UnknownPlatform(_) => "unknown_platform",
            UnknownAuthSource(_) => "unknown_auth_source",
            DuplicatePlatform(_) => "duplicate_platform",
            InvalidWindow(_) => "invalid_window",
            PayloadTooLarge { .. } => "payload_too_large",
            InvalidIdempotencyKey(_) => "invalid_idempotency_key",
            InvalidTimestamp(_) => "invalid_timestamp",
            IdempotencyKeyMismatch => "idempotency_key_mismatch",
            IdempotencyKeyInUse => "idempotency_key_in_use",
            InsufficientCredits(_) => "insufficient_credits",
            BalanceOverflow(_) => "balance_overflow",
            CodeNotFound => "code_not_found",
            CodeDisabled => "code_disabled",
            CodeExpired => "code_expired",
            CodeExhausted => "code_exhausted",
            AlreadyRedeemed => "already_redeemed",
            RedemptionInProgress => "redemption_in_progress",
            TooManyFailedAttempts { .. } => "too_many_failed_attempts",
            Conflict(_) => "conflict",
            EventPayloadMismatch(_) => "event_payload_mismatch",
            ReservationNotFound => "reservation_not_found",
            ReservationNotPending(_) => "reservation_not_pending",
            NotImplemented(_) => "not_implemented",
            StoreUnavailable(_) => "store_unavailable",
            Internal(_) => "internal",
        }
    }

    /// Message safe to show a client: our-fault errors do not leak internals.
    pub fn public_message(&self) -> String {
        match self {
            Error::StoreUnavailable(_) => "the data store is unavailable; retry later".into(),
            Error::Internal(_) => "internal error".into(),
            other => other.to_string(),
        }
    }

    /// Extra fields for the error body, beside `code` and `message`.
    pub fn details(&self) -> Option<serde_json::Value> {
        match self {
            Error::TooManyFailedAttempts {
                retry_after_seconds,
            } => Some(serde_json::json!({ "retry_after_seconds": retry_after_seconds })),
            _ => None,
        }
    }
}
