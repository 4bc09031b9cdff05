//! `POST /v1/quota/reservations`, `GET` and `DELETE /v1/quota/reservations/{id}`,
//! `GET /v1/admin/users/{user_id}/reservations`: thin; the rules are in
//! `domain::reservation`, the writes in `store::reservations`.

use http::StatusCode;
use lambda_http::Request;
use spendguard_core::api::{
    idempotency_key, json_body, json_response, path_param, path_user, query_filter,
    replayed_response, request_fingerprint, Caller, HttpResult, Page, PageRequest,
};
use spendguard_core::domain::audit::Actor;
use spendguard_core::domain::reservation::{
    listed_status, Reservation, ReservationId, ReserveRequest, ReserveWire,
};
use spendguard_core::store::reservations::ReserveOutcome;
use spendguard_core::store::Lease;
use spendguard_core::{metrics, Deps, Error};

/// Keys of reserves are scoped per caller, like adjustments.
fn reserve_scope(caller: &Caller) -> String {
    format!("reserve:{}", Actor::from(caller).id.replace('#', "_"))
}

fn path_id(req: &Request) -> Result<ReservationId, Error> {
    ReservationId::parse(&path_param(req, "reservation_id")?)
}

/// `POST /v1/quota/reservations`: 201 Reservation, or 200 Check when there is
/// no room (nothing held).
pub async fn reserve(deps: &Deps, caller: &Caller, req: &Request) -> HttpResult {
    caller.require_service_or_admin()?;
    let request =
        ReserveRequest::from_wire(json_body::<ReserveWire>(req)?, &deps.config.platforms)?;
    let key = idempotency_key(req)?
        .map(|key| Lease::unclaimed(&reserve_scope(caller), &key, &request_fingerprint(req)))
        .transpose()?;
    let outcome = deps
        .store
        .reserve(
            &request,
            deps.clock.now(),
            deps.config.timezone,
            key.as_ref(),
        )
        .await?;
    Ok(match outcome {
        ReserveOutcome::Created(r) => {
            metrics::reservation_decision("quota", None);
            json_response(StatusCode::CREATED, &r.view())
        }
        ReserveOutcome::Refused(check) => {
            let reason = metrics::reason_label(check.reason.as_ref(), "refused");
            metrics::reservation_decision("quota", Some(&reason));
            json_response(StatusCode::OK, &check)
        }
        ReserveOutcome::Replay(stored) => replayed_response(&stored),
    })
}

/// `GET /v1/quota/reservations/{reservation_id}`.
pub async fn get(deps: &Deps, caller: &Caller, req: &Request) -> HttpResult {
    caller.require_service_or_admin()?;
    let id = path_id(req)?;
    match deps.store.reservation(&id, &deps.config.platforms).await? {
        Some(r) => Ok(json_response(StatusCode::OK, &r.view())),
        None => Err(Error::ReservationNotFound),
    }
}

/// `DELETE /v1/quota/reservations/{reservation_id}`: void.
pub async fn void(deps: &Deps, caller: &Caller, req: &Request) -> HttpResult {
    caller.require_service_or_admin()?;
    let id = path_id(req)?;
    let r = deps
        .store
        .void_reservation(&id, &deps.config.platforms, deps.clock.now())
        .await?;
    Ok(json_response(StatusCode::OK, &r.view()))
}

/// `GET /v1/admin/users/{user_id}/reservations?status=pending&limit=&cursor=`:
/// the user's pending reservations, soonest expiry first. They are few (each
/// expires within the hour), so the store reads them whole and this pages them.
pub async fn list_for_user(deps: &Deps, caller: &Caller, req: &Request) -> HttpResult {
    caller.require_admin()?;
    let user = path_user(req)?;
    // Sent, even empty, the filter is parsed; pending is all there is to list.
    query_filter(req, "status", listed_status)?;
    let page = PageRequest::from_request(req)?;
    let pending = deps
        .store
        .pending_reservations(Some(&user), &deps.config.platforms)
        .await?;
    let page = Page::of_all(pending, &page, Reservation::expiry_order_key)?;
    Ok(json_response(
        StatusCode::OK,
        &Page {
            items: page.items.iter().map(Reservation::view).collect::<Vec<_>>(),
            next_cursor: page.next_cursor,
        },
    ))
}
