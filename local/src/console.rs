//! The web console in the local stack: the built bundle (`web/dist`) at `/`,
//! its `config.json`, and the dev sign-in, a route that exists only here.
//!
//! | route | what |
//! |---|---|
//! | `GET /`, `/assets/*`, console pages (`/me/*`, `/admin/*`, `/sign-in`, `/callback`) | the bundle; console pages answer `index.html` (single-page app) |
//! | `GET /config.json` | `{"mode": "local", "quota_time_zone", "platforms", "auth_sources"}` |
//! | `POST /local/sign-in` | `{"user_id", "role": "user"\|"admin"}` → `{"token", "user_id", "role", "expires_at"}`: a dev token signed with `SPENDGUARD_DEV_JWT_SECRET` |
//!
//! The local stack's server (`server.rs`) asks [`Console::handle`] first;
//! everything else goes to the dev gateway (the API keeps its paths).
//! Without a built bundle, `/` says how to build it; the API serves regardless.

use crate::jwt;
use axum::body::Body;
use http::{header, HeaderValue, Method, StatusCode};
use serde_json::{json, Value};
use spendguard_core::domain::auth_source::AuthSource;
use spendguard_core::Config;
use std::path::{Component, Path, PathBuf};

/// The server's response type (the body type the local stack's server uses).
type Response = http::Response<Body>;

/// Where the built bundle is read from (relative to the working directory).
pub const ENV_CONSOLE_DIR: &str = "SPENDGUARD_CONSOLE_DIR";
pub const DEFAULT_CONSOLE_DIR: &str = "web/dist";
/// Lifetime of a dev sign-in token.
const SIGN_IN_TTL_SECONDS: i64 = 12 * 3600;

/// The console's routes, answered before the dev gateway sees a request.
pub struct Console {
    dir: PathBuf,
    secret: String,
    config: Value,
}

/// The bundle directory `SPENDGUARD_CONSOLE_DIR` names, or `web/dist`.
pub fn dir_from_env() -> PathBuf {
    std::env::var(ENV_CONSOLE_DIR)
        .ok()
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONSOLE_DIR))
}

/// Whether a built bundle is there to serve.
pub fn bundle_present(dir: &Path) -> bool {
    dir.join("index.html").is_file()
}

/// The banner's line about the console at `base`.
pub fn banner_line(base: &str) -> String {
    let dir = dir_from_env();
    if bundle_present(&dir) {
        format!("console:   {base}/  (dev sign-in: any user id, role user or admin)")
    } else {
        format!(
            "console:   not built ({} missing): install Node.js >= 20.19, then `make web`",
            dir.join("index.html").display()
        )
    }
}

/// Client-side routes of the single-page app: each answers `index.html`.
const PAGE_PREFIXES: [&str; 2] = ["/me", "/admin"];
const PAGES: [&str; 4] = ["/", "/index.html", "/sign-in", "/callback"];

impl Console {
    /// Configured from the same environment as the stack
    /// (`SPENDGUARD_CONSOLE_DIR`, `SPENDGUARD_DEV_JWT_SECRET`, `SPENDGUARD_TZ`,
    /// `SPENDGUARD_PLATFORMS`).
    pub fn from_env() -> Self {
        let config = Config::from_env().unwrap_or_else(|_| Config::for_table("spendguard"));
        Self::new(dir_from_env(), jwt::secret_from_env(), &config)
    }

    pub fn new(dir: PathBuf, secret: String, config: &Config) -> Self {
        Self {
            dir,
            secret,
            config: json!({
                "mode": "local",
                "api_base_url": "",
                "quota_time_zone": config.timezone.name(),
                "platforms": config.platforms.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
                "auth_sources": AuthSource::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            }),
        }
    }

    /// The answer to a console route, or `None` for the dev gateway (the API
    /// keeps its paths: none of them is a console route).
    pub async fn handle(&self, method: &Method, path: &str, body: &[u8]) -> Option<Response> {
        let read = method == Method::GET || method == Method::HEAD;
        if path == "/local/sign-in" && method == Method::POST {
            return Some(self.sign_in(body));
        }
        if !read {
            return None;
        }
        if path == "/config.json" {
            return Some(json_response(StatusCode::OK, &self.config));
        }
        let page = PAGES.contains(&path)
            || PAGE_PREFIXES.iter().any(|prefix| {
                path.strip_prefix(prefix)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            });
        if page || path == "/favicon.svg" || path.starts_with("/assets/") {
            return Some(self.file(path).await);
        }
        None
    }

    async fn file(&self, path: &str) -> Response {
        let relative = path.trim_start_matches('/');
        let asset = relative.starts_with("assets/") || relative == "favicon.svg";
        // Console pages (client-side routes) are all `index.html`.
        let relative = if asset { relative } else { "index.html" };
        let safe = Path::new(relative)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
        if !safe {
            return error(StatusCode::NOT_FOUND, "route_not_found", path);
        }
        let file = self.dir.join(relative);
        match tokio::fs::read(&file).await {
            Ok(bytes) => {
                let mut response = Response::new(Body::from(bytes));
                let headers = response.headers_mut();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(content_type(&file)),
                );
                // Hashed asset names change with their content; the page does not.
                headers.insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static(if relative.starts_with("assets/") {
                        "public, max-age=31536000, immutable"
                    } else {
                        "no-cache"
                    }),
                );
                headers.insert(
                    "x-content-type-options",
                    HeaderValue::from_static("nosniff"),
                );
                response
            }
            Err(_) if !asset => {
                let mut response = Response::new(Body::from(NOT_BUILT));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                );
                response
            }
            Err(_) => error(StatusCode::NOT_FOUND, "route_not_found", path),
        }
    }

    fn sign_in(&self, body: &[u8]) -> Response {
        let Ok(body) = serde_json::from_slice::<Value>(body) else {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "body must be JSON {\"user_id\", \"role\"}",
            );
        };
        let user = body["user_id"].as_str().unwrap_or("");
        if let Err(e) = spendguard_core::domain::validate_id("user_id", user) {
            return error(StatusCode::BAD_REQUEST, "invalid_id", &e.to_string());
        }
        let role_text = body["role"].as_str().unwrap_or("user");
        let role = match role_text {
            "user" => jwt::Role::User,
            "admin" => jwt::Role::Admin,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "role must be user or admin",
                )
            }
        };
        let token = jwt::issue(&self.secret, user, role, SIGN_IN_TTL_SECONDS);
        let expires_at = chrono::Utc::now() + chrono::Duration::seconds(SIGN_IN_TTL_SECONDS);
        json_response(
            StatusCode::OK,
            &json!({
                "token": token,
                "user_id": user,
                "role": role_text,
                "expires_at": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            }),
        )
    }
}

fn json_response(status: StatusCode, value: &Value) -> Response {
    let mut response = Response::new(Body::from(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    json_response(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" | "map" => "application/json",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

const NOT_BUILT: &str = r#"<!doctype html><html lang="en"><meta charset="utf-8"><title>spendguard</title>
<body style="font-family:sans-serif;max-width:40rem;margin:3rem auto;line-height:1.5">
<h1>spendguard local stack</h1>
<p>The API is up, but the web console is not built. Install Node.js 20.19 or newer, then run
<code>make web</code> (or <code>make run</code> again, which builds it).</p>
<p>控制台尚未构建：安装 Node.js 20.19 或更高版本后运行 <code>make web</code>。</p>
</body></html>"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_mints_a_token_the_gateway_accepts() {
        let console = Console {
            dir: PathBuf::from("/nonexistent"),
            secret: "s".into(),
            config: Value::Null,
        };
        let response = console.sign_in(br#"{"user_id":"alice","role":"admin"}"#);
        assert_eq!(response.status(), StatusCode::OK);
        let bad = console.sign_in(br#"{"user_id":"a b","role":"admin"}"#);
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        let bad = console.sign_in(br#"{"user_id":"alice","role":"service"}"#);
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn console_routes_leave_the_api_to_the_gateway() {
        let console = Console::new(
            PathBuf::from("/nonexistent"),
            "s".into(),
            &Config::for_table("t"),
        );
        let get = Method::GET;
        for path in ["/", "/me", "/me/credits", "/admin/users/alice", "/sign-in"] {
            let response = console.handle(&get, path, b"").await.expect(path);
            // No bundle here: the page says how to build it.
            assert_eq!(response.status(), StatusCode::OK, "{path}");
        }
        let config = console.handle(&get, "/config.json", b"").await.unwrap();
        assert_eq!(config.status(), StatusCode::OK);
        let asset = console.handle(&get, "/assets/x.js", b"").await.unwrap();
        assert_eq!(asset.status(), StatusCode::NOT_FOUND);
        for (method, path) in [
            (Method::GET, "/v1/me/quotas"),
            (Method::GET, "/menu"),
            (Method::GET, "/local/sign-in"),
            (Method::POST, "/me"),
            (Method::POST, "/2015-03-31/functions/quota/invocations"),
        ] {
            assert!(
                console.handle(&method, path, b"").await.is_none(),
                "{method} {path}"
            );
        }
        let signed_in = console
            .handle(&Method::POST, "/local/sign-in", br#"{"user_id":"bob"}"#)
            .await
            .unwrap();
        assert_eq!(signed_in.status(), StatusCode::OK);
    }

    #[test]
    fn content_types() {
        assert_eq!(
            content_type(Path::new("a/b.js")),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            content_type(Path::new("index.html")),
            "text/html; charset=utf-8"
        );
    }
}
