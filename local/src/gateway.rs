//! The dev gateway: what API Gateway and the Lambda service do in AWS, in process.
//! It verifies dev tokens, routes every template route to its function with a
//! payload 2.0 event, and serves the Lambda Invoke API.

use crate::invoke::{self, InvokeRequest, Registry};
use crate::jwt;
use crate::template::{percent_decode, RouteSpec, Template};
use base64::Engine;
use http::{HeaderMap, Method};
use serde_json::{json, Map, Value};
use spendguard_core::api::{error_response, HttpFunction, HttpResponse};
use spendguard_core::{Deps, Error};
use std::collections::HashMap;
use std::sync::Arc;

/// Every function of the product, built from one set of dependencies.
pub struct Functions {
    pub quota: quota::App,
    pub credits: credits::App,
    pub redemption: redemption::App,
    pub usage_ingest: usage_ingest::App,
    pub reservation_expiry: reservation_expiry::App,
}

impl Functions {
    pub fn new(deps: Deps) -> Self {
        Self {
            quota: quota::App::new(deps.clone()),
            credits: credits::App::new(deps.clone()),
            redemption: redemption::App::new(deps.clone()),
            usage_ingest: usage_ingest::App::new(deps.clone()),
            reservation_expiry: reservation_expiry::App::new(deps),
        }
    }

    /// Runs the HTTP function `name`; `None` if no HTTP function has that name.
    pub(crate) async fn call_http(
        &self,
        name: &str,
        req: lambda_http::Request,
    ) -> Option<HttpResponse> {
        Some(match name {
            "quota" => self.quota.handle(req).await,
            "credits" => self.credits.handle(req).await,
            "redemption" => self.redemption.handle(req).await,
            _ => return None,
        })
    }
}

/// A plain HTTP request as the dev gateway receives it.
#[derive(Clone, Debug)]
pub struct GatewayRequest {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub source_ip: String,
}

pub struct Gateway {
    functions: Arc<Functions>,
    registry: Registry,
    routes: Vec<RouteSpec>,
    template: Template,
    secret: String,
    echo_logs: bool,
}

const INVOKE_PREFIX: &str = "/2015-03-31/functions/";

impl Gateway {
    pub fn new(deps: Deps, secret: impl Into<String>) -> Self {
        let template = Template::bundled();
        Self {
            functions: Arc::new(Functions::new(deps)),
            registry: Registry::from_template(&template),
            routes: template.routes(),
            template,
            secret: secret.into(),
            echo_logs: false,
        }
    }

    /// Whether the log lines an invocation with `X-Amz-Log-Type: Tail` captures
    /// also go to stdout (the local stack's own log); off in tests.
    pub fn echo_logs(mut self, echo: bool) -> Self {
        self.echo_logs = echo;
        self
    }

    pub fn functions(&self) -> &Functions {
        &self.functions
    }

    pub async fn handle(&self, req: GatewayRequest) -> HttpResponse {
        if let Some(rest) = req.path.strip_prefix(INVOKE_PREFIX) {
            if let Some(name) = rest.strip_suffix("/invocations") {
                if req.method == Method::POST && !name.contains('/') {
                    return self
                        .invoke_request(InvokeRequest {
                            function: name,
                            query: req.query.as_deref(),
                            headers: &req.headers,
                            body: &req.body,
                        })
                        .await;
                }
            }
        }
        let Some((route, params)) =
            self.template
                .match_route(&self.routes, req.method.as_str(), &req.path)
        else {
            return error_response(&Error::RouteNotFound(format!(
                "{} {}",
                req.method, req.path
            )));
        };
        let Some(claims) = self.claims(&req.headers) else {
            return error_response(&Error::Unauthorized);
        };
        let event = payload_v2_event(&req, &route, &params, &claims);
        let lambda_req = match lambda_http::request::from_str(&event.to_string()) {
            Ok(r) => r,
            Err(e) => return error_response(&Error::Internal(format!("building event: {e}"))),
        };
        self.functions
            .call_http(&route.function, lambda_req)
            .await
            .unwrap_or_else(|| error_response(&Error::RouteNotFound(route.route_key())))
    }

    fn claims(&self, headers: &HeaderMap) -> Option<HashMap<String, String>> {
        let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
        // The scheme is case-insensitive (RFC 9110 §11.1).
        let (scheme, token) = value.trim_start().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        jwt::verify(&self.secret, token.trim(), chrono::Utc::now().timestamp())
    }

    /// `POST /2015-03-31/functions/{name}/invocations` with just a body: the raw
    /// event in, the function's raw result out, as the Lambda service answers.
    pub async fn invoke(&self, name: &str, body: &[u8]) -> HttpResponse {
        self.invoke_request(InvokeRequest {
            function: name,
            query: None,
            headers: &HeaderMap::new(),
            body,
        })
        .await
    }

    /// The Lambda Invoke API with every parameter (see [`crate::invoke`]).
    pub async fn invoke_request(&self, request: InvokeRequest<'_>) -> HttpResponse {
        invoke::invoke(&self.functions, &self.registry, self.echo_logs, request).await
    }
}

/// The HTTP API payload 2.0 event API Gateway would send for `req`.
fn payload_v2_event(
    req: &GatewayRequest,
    route: &RouteSpec,
    params: &[(String, String)],
    claims: &HashMap<String, String>,
) -> Value {
    let mut headers = Map::new();
    for name in req.headers.keys() {
        let joined = req
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(",");
        headers.insert(name.as_str().to_string(), Value::String(joined));
    }
    let mut query = Map::new();
    for pair in req
        .query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (
            percent_decode(&k.replace('+', " ")),
            percent_decode(&v.replace('+', " ")),
        );
        match query.get_mut(&k) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&v);
            }
            _ => {
                query.insert(k, Value::String(v));
            }
        }
    }
    let path_params: Map<String, Value> = params
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let now = chrono::Utc::now();
    let user_agent = req
        .headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // API Gateway passes a text body as is and anything else base64-encoded
    // (`isBase64Encoded`), never altered: bytes that are not UTF-8 reach the
    // function unchanged, which refuses them as it would in AWS.
    let (body, base64_encoded) = match std::str::from_utf8(&req.body) {
        Ok(text) => (text.to_string(), false),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(&req.body),
            true,
        ),
    };
    json!({
        "version": "2.0",
        "routeKey": route.route_key(),
        "rawPath": req.path,
        "rawQueryString": req.query.clone().unwrap_or_default(),
        "headers": headers,
        "queryStringParameters": if query.is_empty() { Value::Null } else { Value::Object(query) },
        "pathParameters": if path_params.is_empty() { Value::Null } else { Value::Object(path_params) },
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": "127.0.0.1",
            "domainPrefix": "local",
            "http": {
                "method": req.method.as_str(),
                "path": req.path,
                "protocol": "HTTP/1.1",
                "sourceIp": req.source_ip,
                "userAgent": user_agent,
            },
            "requestId": uuid_like(),
            "routeKey": route.route_key(),
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "timeEpoch": now.timestamp_millis(),
            "authorizer": { "jwt": { "claims": claims, "scopes": null } },
        },
        "body": if body.is_empty() { Value::Null } else { Value::String(body) },
        "isBase64Encoded": base64_encoded,
    })
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "local-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
