//! The quota function: quota defaults, per-user limits, the user view and the
//! check API. Routing lives here; each route's handler is in [`handlers`].

mod handlers;

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
            key @ ("GET /v1/admin/quota-defaults"
            | "PUT /v1/admin/quota-defaults/system"
            | "PUT /v1/admin/quota-defaults/sources/{source}"
            | "POST /v1/admin/users/{user_id}/quotas/init"
            | "GET /v1/admin/users/{user_id}/quotas"
            | "PUT /v1/admin/users/{user_id}/quotas"
            | "POST /v1/admin/users/{user_id}/quotas/{platform}/reset") => {
                caller.require_admin()?;
                Err(Error::NotImplemented(key.to_string()))
            }
            key @ ("GET /v1/me/quotas/{platform}/check" | "POST /v1/quota/check") => {
                Err(Error::NotImplemented(key.to_string()))
            }
            other => Err(Error::RouteNotFound(other.to_string())),
        }
    }
}

impl HttpFunction for App {
    async fn handle(&self, req: Request) -> HttpResponse {
        respond(self.route(&req).await)
    }
}
