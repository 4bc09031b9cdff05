use http::StatusCode;
use spendguard_core::api::{json_response, Caller, HttpResult};
use spendguard_core::domain::quota::UserQuotasView;
use spendguard_core::store::QuotaStore;
use spendguard_core::Deps;

/// `GET /v1/me/quotas`: the caller's own quotas on every configured platform.
pub async fn my_quotas(deps: &Deps, caller: &Caller) -> HttpResult {
    let user = caller.require_user()?;
    let records = deps.store.user_quotas(user).await?;
    let view = UserQuotasView::build(
        user.clone(),
        &deps.config.platforms,
        &records,
        deps.clock.now(),
        deps.config.timezone,
    );
    Ok(json_response(StatusCode::OK, &view))
}
