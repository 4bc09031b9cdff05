//! The redemption function: batch-generated codes and transactional redemption.
//! Routing lives here; each route's handler is in [`handlers`].

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
            "POST /v1/me/redemptions" => handlers::redeem(deps, &caller, req).await,
            "GET /v1/me/redemptions" => handlers::my_redemptions(deps, &caller, req).await,
            "GET /v1/me/subscriptions" => handlers::my_subscriptions(deps, &caller, req).await,
            "GET /v1/admin/users/{user_id}/subscriptions" => {
                handlers::user_subscriptions(deps, &caller, req).await
            }
            "POST /v1/admin/redemption-codes" => handlers::create_codes(deps, &caller, req).await,
            "GET /v1/admin/redemption-codes" => handlers::list_codes(deps, &caller, req).await,
            "GET /v1/admin/redemption-codes/{code}" => handlers::get_code(deps, &caller, req).await,
            "PATCH /v1/admin/redemption-codes/{code}" => {
                handlers::patch_code(deps, &caller, req).await
            }
            "GET /v1/admin/redemption-codes/{code}/redemptions" => {
                handlers::code_redemptions(deps, &caller, req).await
            }
            other => Err(Error::RouteNotFound(other.to_string())),
        }
    }
}

impl HttpFunction for App {
    async fn handle(&self, req: Request) -> HttpResponse {
        let response = respond(self.route(&req).await);
        self.deps.emit_retries("redemption");
        response
    }
}
