//! One function per route: check the caller, parse, call the store (which applies
//! the domain rules), answer. Validation happens before any store call, so bad
//! input writes nothing.

use http::StatusCode;
use lambda_http::Request;
use serde::Deserialize;
use spendguard_core::api::{json_body, json_response, path_param, path_user, Caller, HttpResult};
use spendguard_core::domain::audit::Actor;
use spendguard_core::domain::quota::{
    replacement_limits, DefaultsBody, DefaultsScope, LimitsEntry, QuotaCheck, QuotaDefaults,
    QuotaRecord, UserQuotasView,
};
use spendguard_core::domain::{AuthSource, Platform, UserId, WindowKind};
use spendguard_core::store::QuotaStore;
use spendguard_core::{Deps, Error};

fn user_view(deps: &Deps, user: UserId, records: &[QuotaRecord]) -> HttpResult {
    let view = UserQuotasView::build(
        user,
        &deps.config.platforms,
        records,
        deps.clock.now(),
        deps.config.timezone,
    );
    Ok(json_response(StatusCode::OK, &view))
}

fn path_platform(deps: &Deps, req: &Request) -> Result<Platform, Error> {
    deps.config.platforms.parse(&path_param(req, "platform")?)
}

/// `GET /v1/me/quotas`: the caller's own quotas on every configured platform.
pub async fn my_quotas(deps: &Deps, caller: &Caller) -> HttpResult {
    let user = caller.require_user()?;
    let records = deps.store.user_quotas(user).await?;
    user_view(deps, user.clone(), &records)
}

/// `GET /v1/admin/quota-defaults`.
pub async fn get_defaults(deps: &Deps, caller: &Caller) -> HttpResult {
    caller.require_admin()?;
    let set = deps.store.quota_defaults(&deps.config.platforms).await?;
    Ok(json_response(StatusCode::OK, &set.view()))
}

/// `PUT /v1/admin/quota-defaults/system` and `.../sources/{source}`: whole replace.
pub async fn put_defaults(deps: &Deps, caller: &Caller, req: &Request, system: bool) -> HttpResult {
    caller.require_admin()?;
    let scope = if system {
        DefaultsScope::System
    } else {
        DefaultsScope::Source(AuthSource::parse(&path_param(req, "source")?)?)
    };
    let defaults =
        QuotaDefaults::from_body(json_body::<DefaultsBody>(req)?, &deps.config.platforms)?;
    deps.store
        .replace_quota_defaults(
            scope,
            &defaults,
            &deps.config.platforms,
            &Actor::from(caller),
            deps.clock.now(),
        )
        .await?;
    Ok(json_response(StatusCode::OK, &defaults))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InitBody {
    // A string, so an unknown source answers `unknown_auth_source`, not a serde error.
    auth_source: String,
}

/// `POST /v1/admin/users/{user_id}/quotas/init`.
pub async fn init_user(deps: &Deps, caller: &Caller, req: &Request) -> HttpResult {
    caller.require_admin()?;
    let user = path_user(req)?;
    let source = AuthSource::parse(&json_body::<InitBody>(req)?.auth_source)?;
    let records = deps
        .store
        .init_user_quotas(
            &user,
            source,
            &deps.config.platforms,
            &Actor::from(caller),
            deps.clock.now(),
        )
        .await?;
    user_view(deps, user, &records)
}

/// `GET /v1/admin/users/{user_id}/quotas`.
pub async fn get_user(deps: &Deps, caller: &Caller, req: &Request) -> HttpResult {
    caller.require_admin()?;
    let user = path_user(req)?;
    let records = deps.store.user_quotas(&user).await?;
    user_view(deps, user, &records)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplaceBody {
    quotas: Vec<LimitsEntry>,
}

/// `PUT /v1/admin/users/{user_id}/quotas`: replace-all.
pub async fn replace_user(deps: &Deps, caller: &Caller, req: &Request) -> HttpResult {
    caller.require_admin()?;
    let user = path_user(req)?;
    let limits = replacement_limits(
        json_body::<ReplaceBody>(req)?.quotas,
        &deps.config.platforms,
    )?;
    let records = deps
        .store
        .replace_user_quotas(
            &user,
            &limits,
            &deps.config.platforms,
            &Actor::from(caller),
            deps.clock.now(),
        )
        .await?;
    user_view(deps, user, &records)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetBody {
    // Optional so a missing window answers `invalid_window` like a wrong one.
    #[serde(default)]
    window: Option<String>,
}

/// `POST /v1/admin/users/{user_id}/quotas/{platform}/reset`.
pub async fn reset_window(deps: &Deps, caller: &Caller, req: &Request) -> HttpResult {
    caller.require_admin()?;
    let user = path_user(req)?;
    let platform = path_platform(deps, req)?;
    let kind = WindowKind::parse(
        json_body::<ResetBody>(req)?
            .window
            .as_deref()
            .unwrap_or_default(),
    )?;
    let records = deps
        .store
        .reset_quota_window(
            &user,
            &platform,
            kind,
            deps.config.timezone,
            &Actor::from(caller),
            deps.clock.now(),
        )
        .await?;
    user_view(deps, user, &records)
}

/// The gate: one GetItem, then the pure decision. A store error propagates as
/// 503 `store_unavailable`; nothing here can turn a failure into "allowed".
async fn check(deps: &Deps, user: &UserId, platform: &Platform) -> HttpResult {
    let record = deps.store.quota_record(user, platform).await?;
    let decision = QuotaCheck::evaluate(&record, deps.clock.now(), deps.config.timezone);
    let reason = decision
        .reason
        .as_ref()
        .map(|r| spendguard_core::metrics::reason_label(Some(r), "denied"));
    spendguard_core::metrics::check_decision("quota", reason.as_deref());
    Ok(json_response(StatusCode::OK, &decision))
}

/// `GET /v1/me/quotas/{platform}/check`: the caller's own check.
pub async fn check_mine(deps: &Deps, caller: &Caller, req: &Request) -> HttpResult {
    let user = caller.require_user()?;
    let platform = path_platform(deps, req)?;
    check(deps, user, &platform).await
}

/// Extra fields are ignored: a gateway may send context along; a read is harmless.
#[derive(Deserialize)]
struct CheckBody {
    user_id: String,
    platform: String,
}

/// `POST /v1/quota/check`: the AI gateway (or an admin) checks any user.
pub async fn check_any(deps: &Deps, caller: &Caller, req: &Request) -> HttpResult {
    caller.require_service_or_admin()?;
    let body = json_body::<CheckBody>(req)?;
    let user = UserId::parse(&body.user_id)?;
    let platform = deps.config.platforms.parse(&body.platform)?;
    check(deps, &user, &platform).await
}
