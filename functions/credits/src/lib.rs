//! The credits function: balances, the ledger, admin adjustment and the audit log.

use lambda_http::Request;
use spendguard_core::api::{respond, route_key, Caller, HttpFunction, HttpResponse, HttpResult};
use spendguard_core::{Deps, Error};

pub struct App {
    #[allow(dead_code)]
    deps: Deps,
}

impl App {
    pub fn new(deps: Deps) -> Self {
        Self { deps }
    }

    async fn route(&self, req: &Request) -> HttpResult {
        let caller = Caller::from_request(req)?;
        match route_key(req) {
            key @ ("GET /v1/me/credits" | "GET /v1/me/credits/transactions") => {
                caller.require_user()?;
                Err(Error::NotImplemented(key.to_string()))
            }
            key @ ("GET /v1/admin/users/{user_id}/credits"
            | "GET /v1/admin/users/{user_id}/credits/transactions"
            | "POST /v1/admin/users/{user_id}/credits/adjust"
            | "GET /v1/admin/audit") => {
                caller.require_admin()?;
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
