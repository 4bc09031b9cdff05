//! The redemption function: batch-generated codes and transactional redemption.

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
            key @ ("POST /v1/me/redemptions"
            | "GET /v1/me/redemptions"
            | "GET /v1/me/subscriptions") => {
                caller.require_user()?;
                Err(Error::NotImplemented(key.to_string()))
            }
            key @ ("POST /v1/admin/redemption-codes"
            | "GET /v1/admin/redemption-codes"
            | "GET /v1/admin/redemption-codes/{code}"
            | "PATCH /v1/admin/redemption-codes/{code}"
            | "GET /v1/admin/redemption-codes/{code}/redemptions") => {
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
