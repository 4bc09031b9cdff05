//! The quota function: quota defaults, per-user limits, the user view and the
//! check API. Routing lives here; each route's handler is in [`handlers`].

mod alerts;
mod handlers;
mod reservations;

use lambda_http::Request;
use spendguard_core::api::{respond, route_key, Caller, HttpFunction, HttpResponse, HttpResult};
use spendguard_core::{Deps, Error};

pub struct App {
    deps: Deps,
}

impl App {
    pub fn new(deps: Deps) -> Self {
        Self { deps }
    }

    async fn route(&self, req: &Request) -> HttpResult {
        let caller = Caller::from_request(req)?;
        let deps = &self.deps;
        match route_key(req) {
            "GET /v1/me/quotas" => handlers::my_quotas(deps, &caller).await,
            "GET /v1/me/quotas/{platform}/check" => handlers::check_mine(deps, &caller, req).await,
            "POST /v1/quota/check" => handlers::check_any(deps, &caller, req).await,
            "GET /v1/admin/quota-defaults" => handlers::get_defaults(deps, &caller).await,
            "PUT /v1/admin/quota-defaults/system" => {
                handlers::put_defaults(deps, &caller, req, true).await
            }
            "PUT /v1/admin/quota-defaults/sources/{source}" => {
                handlers::put_defaults(deps, &caller, req, false).await
            }
            "POST /v1/admin/users/{user_id}/quotas/init" => {
                handlers::init_user(deps, &caller, req).await
            }
            "GET /v1/admin/users/{user_id}/quotas" => handlers::get_user(deps, &caller, req).await,
            "PUT /v1/admin/users/{user_id}/quotas" => {
                handlers::replace_user(deps, &caller, req).await
            }
            "POST /v1/admin/users/{user_id}/quotas/{platform}/reset" => {
                handlers::reset_window(deps, &caller, req).await
            }
            "GET /v1/admin/alerts" => alerts::list_all(deps, &caller, req).await,
            "GET /v1/me/alerts" => alerts::list_mine(deps, &caller, req).await,
            "POST /v1/quota/reservations" => reservations::reserve(deps, &caller, req).await,
            "GET /v1/quota/reservations/{reservation_id}" => {
                reservations::get(deps, &caller, req).await
            }
            "DELETE /v1/quota/reservations/{reservation_id}" => {
                reservations::void(deps, &caller, req).await
            }
            "GET /v1/admin/users/{user_id}/reservations" => {
                reservations::list_for_user(deps, &caller, req).await
            }
            other => Err(Error::RouteNotFound(other.to_string())),
        }
    }
}

impl HttpFunction for App {
    async fn handle(&self, req: Request) -> HttpResponse {
        let response = respond(self.route(&req).await);
        self.deps.emit_retries("quota");
        response
    }
}
