use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    spendguard_core::telemetry::init();
    let app = Arc::new(reservation_expiry::App::new(
        spendguard_core::Deps::from_env().await?,
    ));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let app = app.clone();
        async move {
            app.invoke(event.payload)
                .await
                .map_err(lambda_runtime::Error::from)
        }
    }))
    .await
}
