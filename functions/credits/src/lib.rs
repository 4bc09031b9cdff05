//! The credits function: balances, the ledger, admin adjustment and the audit
//! log. Routing lives here; each route's handler is in [`handlers`].

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
            "GET /v1/me/credits" => handlers::my_account(deps, &caller).await,
            "GET /v1/me/credits/transactions" => handlers::my_ledger(deps, &caller, req).await,
            "GET /v1/admin/users/{user_id}/credits" => {
                handlers::user_account(deps, &caller, req).await
            }
            "GET /v1/admin/users/{user_id}/credits/transactions" => {
                handlers::user_ledger(deps, &caller, req).await
            }
            "POST /v1/admin/users/{user_id}/credits/adjust" => {
                handlers::adjust(deps, &caller, req).await
            }
            "GET /v1/admin/audit" => handlers::audit(deps, &caller, req).await,
            other => Err(Error::RouteNotFound(other.to_string())),
        }
    }
}

impl HttpFunction for App {
    async fn handle(&self, req: Request) -> HttpResponse {
        let response = respond(self.route(&req).await);
        self.deps.emit_retries("credits");
        response
    }
}
