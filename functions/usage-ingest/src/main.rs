use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
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
        async move {
            let deadline = usage_ingest::batch_deadline(event.context.deadline);
            let outcome = app.process_until(event.payload, Some(deadline)).await;
            // A failed message without a messageId cannot be named in a partial
            // response; failing the invocation returns the whole batch to the
            // queue instead of dropping it (applied events are then duplicates).
            if outcome.unreportable > 0 {
                return Err::<SqsBatchResponse, lambda_runtime::Error>(
                    format!(
                        "{} failed usage message(s) without a messageId",
                        outcome.unreportable
                    )
                    .into(),
                );
            }
            Ok(outcome.response)
        }
    }))
    .await
}
