use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{service_fn, LambdaEvent};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    spendguard_core::telemetry::init();
    let app = Arc::new(usage_ingest::App::new(
        spendguard_core::Deps::from_env().await?,
    ));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let app = app.clone();
        async move { app.invoke(event.payload, event.context.deadline).await }
    }))
    .await
}
