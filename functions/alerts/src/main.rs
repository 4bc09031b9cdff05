use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{service_fn, LambdaEvent};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    spendguard_core::telemetry::init();
    let deps = spendguard_core::Deps::from_env().await?;
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(spendguard_core::store::http_client())
        .load()
        .await;
    let bus = std::env::var(alerts::delivery::ENV_EVENT_BUS).unwrap_or_else(|_| "default".into());
    let sink = alerts::delivery::EventSink::EventBridge {
        client: aws_sdk_eventbridge::Client::new(&sdk),
        bus,
    };
    let webhook = alerts::delivery::Webhook::from_lookup(|k| std::env::var(k).ok())?;
    let app = Arc::new(alerts::App::new(deps, sink, webhook));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| {
        let app = app.clone();
        async move { Ok::<_, lambda_runtime::Error>(app.handle(event.payload).await) }
    }))
    .await
}
