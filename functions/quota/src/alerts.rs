//! `GET /v1/admin/alerts` and `GET /v1/me/alerts`: the alerts the `alerts`
//! function recorded from the change stream, newest first, paged like every
//! list. They live here, beside the quota views they explain; the `alerts`
//! function itself only consumes the stream.

use http::StatusCode;
use lambda_http::Request;
use spendguard_core::api::{json_response, query_filter, Caller, HttpResult, PageRequest};
use spendguard_core::domain::alert::AlertType;
use spendguard_core::domain::UserId;
use spendguard_core::store::{AlertFilter, AlertStore};
use spendguard_core::{Deps, Error};

fn alert_type(req: &Request) -> Result<Option<AlertType>, Error> {
    // Sent, even empty, the filter is parsed (as every list's filters are).
    query_filter(req, "type", |t| {
        AlertType::parse(t).ok_or_else(|| {
            Error::InvalidRequest(format!(
                "type {t:?} is not one of quota_threshold, low_balance"
            ))
        })
    })
}

/// `GET /v1/admin/alerts?user_id=&type=`
pub async fn list_all(deps: &Deps, caller: &Caller, req: &Request) -> HttpResult {
    caller.require_admin()?;
    let user = query_filter(req, "user_id", UserId::parse)?;
    list(deps, req, user).await
}

/// `GET /v1/me/alerts?type=`
pub async fn list_mine(deps: &Deps, caller: &Caller, req: &Request) -> HttpResult {
    let user = caller.require_user()?;
    list(deps, req, Some(user.clone())).await
}

/// One page of the alerts of `user` (everyone's for `None`), by `?type=`.
async fn list(deps: &Deps, req: &Request, user: Option<UserId>) -> HttpResult {
    let filter = AlertFilter {
        user_id: user,
        alert_type: alert_type(req)?,
    };
    let page = PageRequest::from_request(req)?;
    let alerts = deps
        .store
        .list_alerts(&filter, &page, deps.clock.now())
        .await?;
    Ok(json_response(StatusCode::OK, &alerts))
}
