//! One function per route: parse, call the core, answer. The adjust rules live
//! in the core crate (`domain::credits`, `DynamoStore::apply_adjustment`),
//! shared with the admin CLI.

use http::StatusCode;
use lambda_http::Request;
use spendguard_core::api::{
    idempotency_key, json_body, json_response, path_user, query_filter, query_param,
    replayed_response, request_fingerprint, Caller, HttpResult, PageRequest,
};
use spendguard_core::domain::audit::Actor;
use spendguard_core::domain::credits::{
    check_response, dry_run_response, AdjustMode, AdjustRequest,
};
use spendguard_core::domain::UserId;
use spendguard_core::store::credits::AdjustResult;
use spendguard_core::store::{AuditFilter, AuditStore, CreditStore, Lease};
use spendguard_core::{Deps, Error};

/// Idempotency keys of adjustments are scoped per admin: two admins may use the
/// same key without colliding.
fn adjust_scope(actor: &Actor) -> String {
    format!("credits-adjust:{}", actor.id)
}

/// `GET /v1/me/credits`
pub async fn my_account(deps: &Deps, caller: &Caller) -> HttpResult {
    let user = caller.require_user()?;
    let account = deps.store.credit_account(user).await?;
    Ok(json_response(StatusCode::OK, &account))
}

/// `GET /v1/me/credits/transactions`
pub async fn my_ledger(deps: &Deps, caller: &Caller, req: &Request) -> HttpResult {
    let user = caller.require_user()?;
    let page = PageRequest::from_request(req)?;
    let entries = deps.store.credit_ledger(user, &page).await?;
    Ok(json_response(StatusCode::OK, &entries))
}

/// `GET /v1/admin/users/{user_id}/credits`
pub async fn user_account(deps: &Deps, caller: &Caller, req: &Request) -> HttpResult {
    caller.require_admin()?;
    let user = path_user(req)?;
    let account = deps.store.credit_account(&user).await?;
    Ok(json_response(StatusCode::OK, &account))
}

/// `GET /v1/admin/users/{user_id}/credits/transactions`
pub async fn user_ledger(deps: &Deps, caller: &Caller, req: &Request) -> HttpResult {
    caller.require_admin()?;
    let user = path_user(req)?;
    let page = PageRequest::from_request(req)?;
    let entries = deps.store.credit_ledger(&user, &page).await?;
    Ok(json_response(StatusCode::OK, &entries))
}

/// `POST /v1/admin/users/{user_id}/credits/adjust`
///
/// Everything is validated before anything is written. `check` and `dry_run`
/// only read (an Idempotency-Key is validated but not recorded for them); an
/// `apply` with an Idempotency-Key reads the key with the account and records
/// it, completed, in the adjustment's own transaction (2 requests).
pub async fn adjust(deps: &Deps, caller: &Caller, req: &Request) -> HttpResult {
    caller.require_admin()?;
    let user = path_user(req)?;
    let request = AdjustRequest::from_body(json_body(req)?)?;
    let key = idempotency_key(req)?;
    let actor = Actor::from(caller);
    match (request.mode, request.by) {
        (AdjustMode::Check, _) => {
            let account = deps.store.credit_account(&user).await?;
            Ok(json_response(StatusCode::OK, &check_response(&account)))
        }
        (AdjustMode::DryRun, Some(by)) => {
            let (account, plan) = deps
                .store
                .preview_adjustment(&user, by, request.force)
                .await?;
            Ok(json_response(
                StatusCode::OK,
                &dry_run_response(&account, &plan, request.force),
            ))
        }
        (AdjustMode::Apply, Some(_)) => {
            // The key is taken by the adjustment's own transaction.
            let lease = key
                .map(|key| Lease::unclaimed(&adjust_scope(&actor), &key, &request_fingerprint(req)))
                .transpose()?;
            let result = deps
                .store
                .apply_adjustment(&user, &request, &actor, &deps.clock, lease.as_ref())
                .await?;
            Ok(match result {
                AdjustResult::Applied(outcome) => {
                    json_response(StatusCode::OK, &outcome.response())
                }
                AdjustResult::Replayed(stored) => replayed_response(&stored),
            })
        }
        // `AdjustRequest` guarantees a target or delta outside check mode.
        (_, None) => Err(Error::InvalidRequest(
            "exactly one of target and delta is required".into(),
        )),
    }
}

/// `GET /v1/admin/audit?user_id=&action=&limit=&cursor=`
pub async fn audit(deps: &Deps, caller: &Caller, req: &Request) -> HttpResult {
    caller.require_admin()?;
    let filter = AuditFilter {
        user_id: query_filter(req, "user_id", UserId::parse)?,
        action: query_param(req, "action").filter(|a| !a.is_empty()),
    };
    let page = PageRequest::from_request(req)?;
    let entries = deps.store.list_audit(&filter, &page).await?;
    Ok(json_response(StatusCode::OK, &entries))
}
