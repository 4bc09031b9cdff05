//! One function per route: parse, call the core, answer. The rules (code
//! format, grants, calendar, failure window) live in
//! `spendguard_core::domain::redemption`; the writes in
//! `spendguard_core::store::redemption`.

use http::{HeaderValue, StatusCode};
use lambda_http::Request;
use serde::Deserialize;
use serde_json::{json, Value};
use spendguard_core::api::response::IDEMPOTENT_REPLAYED;
use spendguard_core::api::{
    idempotency_key, json_body, json_response, path_param, path_user, query_filter,
    replayed_response, request_fingerprint, Caller, HttpResult, Page, PageRequest,
};
use spendguard_core::domain::audit::Actor;
use spendguard_core::domain::redemption::{BatchId, CodeKey, CodeStatus, CreateCodesBody};
use spendguard_core::domain::UserId;
use spendguard_core::store::{CodeFilter, RedeemOutcome, RedeemRequest};
use spendguard_core::{Deps, Error};

fn page_json<T>(page: Page<T>, view: impl Fn(&T) -> Value) -> Value {
    json!({
        "items": page.items.iter().map(view).collect::<Vec<_>>(),
        "next_cursor": page.next_cursor,
    })
}

fn code_param(req: &Request) -> Result<CodeKey, Error> {
    CodeKey::parse(&path_param(req, "code")?)
}

/// `POST /v1/admin/redemption-codes`: 201 `{"batch_id", "codes", ...}`.
///
/// With an Idempotency-Key the batch id is derived from (admin, key): a retry
/// finds the batch, finishes any chunk a failed attempt left unwritten and
/// answers the same codes (`Idempotent-Replayed: true`); a different body → 422.
pub async fn create_codes(deps: &Deps, caller: &Caller, req: &Request) -> HttpResult {
    caller.require_admin()?;
    let body: CreateCodesBody = json_body(req)?;
    let spec = body.validate(deps.clock.now())?;
    let actor = Actor::from(caller);
    let batch_id = match idempotency_key(req)? {
        Some(key) => BatchId::for_idempotency_key(&actor.id, &key),
        None => BatchId::random(),
    };
    let created = deps
        .store
        .create_code_batch(
            batch_id,
            spec,
            request_fingerprint(req).as_str(),
            &actor,
            deps.clock.now(),
        )
        .await?;
    let mut response = json_response(StatusCode::CREATED, &created.batch.response());
    if created.replayed {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// `GET /v1/admin/redemption-codes?batch_id=&status=&limit=&cursor=`
pub async fn list_codes(deps: &Deps, caller: &Caller, req: &Request) -> HttpResult {
    caller.require_admin()?;
    let filter = CodeFilter {
        batch_id: query_filter(req, "batch_id", BatchId::parse)?,
        status: query_filter(req, "status", CodeStatus::parse)?,
    };
    let page = PageRequest::from_request(req)?;
    let now = deps.clock.now();
    let codes = deps.store.list_codes(&filter, &page, now).await?;
    Ok(json_response(
        StatusCode::OK,
        &page_json(codes, |c| c.view(now)),
    ))
}

/// `GET /v1/admin/redemption-codes/{code}`
pub async fn get_code(deps: &Deps, caller: &Caller, req: &Request) -> HttpResult {
    caller.require_admin()?;
    let key = code_param(req)?;
    let code = deps
        .store
        .redemption_code(&key)
        .await?
        .ok_or(Error::CodeNotFound)?;
    Ok(json_response(StatusCode::OK, &code.view(deps.clock.now())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchCodeBody {
    enabled: bool,
}

/// `PATCH /v1/admin/redemption-codes/{code}` with `{"enabled": bool}`.
pub async fn patch_code(deps: &Deps, caller: &Caller, req: &Request) -> HttpResult {
    caller.require_admin()?;
    let key = code_param(req)?;
    let body: PatchCodeBody = json_body(req)?;
    let code = deps
        .store
        .set_code_enabled(&key, body.enabled, &Actor::from(caller), &deps.clock)
        .await?;
    Ok(json_response(StatusCode::OK, &code.view(deps.clock.now())))
}

/// `GET /v1/admin/redemption-codes/{code}/redemptions`
pub async fn code_redemptions(deps: &Deps, caller: &Caller, req: &Request) -> HttpResult {
    caller.require_admin()?;
    let key = code_param(req)?;
    let page = PageRequest::from_request(req)?;
    if deps.store.redemption_code(&key).await?.is_none() {
        return Err(Error::CodeNotFound);
    }
    let records = deps.store.list_code_redemptions(&key, &page).await?;
    Ok(json_response(
        StatusCode::OK,
        &page_json(records, |r| r.view()),
    ))
}

/// The redeem body. Other fields are ignored: nothing else is meaningful here.
#[derive(Deserialize)]
struct RedeemBody {
    code: String,
}

/// `POST /v1/me/redemptions` with `{"code"}` and an optional Idempotency-Key.
pub async fn redeem(deps: &Deps, caller: &Caller, req: &Request) -> HttpResult {
    let user = caller.require_user()?;
    let body: RedeemBody = json_body(req)?;
    let code = CodeKey::parse(&body.code)?;
    let key = idempotency_key(req)?;
    let fingerprint = request_fingerprint(req);
    let outcome = deps
        .store
        .redeem(
            RedeemRequest {
                user,
                code: &code,
                idempotency: key.as_deref().map(|k| (k, &fingerprint)),
            },
            &deps.clock,
        )
        .await?;
    Ok(match outcome {
        RedeemOutcome::Redeemed(redemption) => {
            json_response(StatusCode::CREATED, &redemption.view())
        }
        RedeemOutcome::Replayed(stored) => replayed_response(&stored),
    })
}

/// `GET /v1/me/redemptions`: the caller's redemptions, newest first.
pub async fn my_redemptions(deps: &Deps, caller: &Caller, req: &Request) -> HttpResult {
    let user = caller.require_user()?;
    let page = PageRequest::from_request(req)?;
    let records = deps.store.list_user_redemptions(user, &page).await?;
    Ok(json_response(
        StatusCode::OK,
        &page_json(records, |r| r.view()),
    ))
}

/// `GET /v1/me/subscriptions`: the caller's subscriptions, expired ones included
/// (`active: false`).
pub async fn my_subscriptions(deps: &Deps, caller: &Caller, req: &Request) -> HttpResult {
    let user = caller.require_user()?;
    subscriptions(deps, user, req).await
}

/// `GET /v1/admin/users/{user_id}/subscriptions`: the same list, of any user.
pub async fn user_subscriptions(deps: &Deps, caller: &Caller, req: &Request) -> HttpResult {
    caller.require_admin()?;
    subscriptions(deps, &path_user(req)?, req).await
}

async fn subscriptions(deps: &Deps, user: &UserId, req: &Request) -> HttpResult {
    let page = PageRequest::from_request(req)?;
    let now = deps.clock.now();
    let subs = deps.store.list_subscriptions(user, &page).await?;
    Ok(json_response(
        StatusCode::OK,
        &page_json(subs, |s| s.view(now)),
    ))
}
