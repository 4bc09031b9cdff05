//! The shape every HTTP Lambda of spendguard has, so `main`, the local stack and
//! the tests drive them the same way.

use super::HttpResponse;
use lambda_http::Request;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

pub trait HttpFunction: Send + Sync + 'static {
    /// Answers one API Gateway (payload 2.0) request. Never fails: errors are
    /// already responses.
    fn handle(&self, req: Request) -> impl Future<Output = HttpResponse> + Send;
}

/// Runs `function` on the Lambda runtime (the whole of an HTTP function's `main`
/// after wiring).
pub async fn run_http<F: HttpFunction>(function: F) -> Result<(), lambda_http::Error> {
    let function = Arc::new(function);
    lambda_http::run(lambda_http::service_fn(move |req: Request| {
        let function = function.clone();
        async move { Ok::<_, Infallible>(function.handle(req).await) }
    }))
    .await
}
