//! The timed sections (throughput, latency) run with `ClientRequestToken`
//! taken off every transaction on its way to the embedded engine, for the
//! product and the baselines alike.
//!
//! Why: dynoxide 3.2.0 evicts expired tokens by scanning its whole 10-minute
//! token cache (`HashMap::retain`, one clock read per entry) under a mutex on
//! every call that carries a token. A token-bearing transaction there costs
//! time in proportion to the transactions of the last ten minutes: 100,000
//! events of 1,000 users (one transaction each) made the last ones several
//! milliseconds each, and profiles showed the engine spending over a third
//! of the CPU in that scan. DynamoDB's token check does not grow with traffic.
//! The SDK adds a token to every `TransactWriteItems` it sends, the naive
//! baseline's included, so the artefact hit both sides, by how many
//! transactions each had sent and when. Counts are unaffected: the request
//! counts and the costs section (section 1) keep the tokens.
//!
//! Nothing here is retried on a lost answer (no faults are injected), which is
//! the only thing the token is for.

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use spendguard_core::{Clock, DynamoStore};
use spendguard_tests::costs::{now, world};
use spendguard_tests::{fresh_table, local_engine_url, TestEnv};

const TOKEN: &str = "ClientRequestToken";

#[derive(Debug)]
struct DropTokens;

impl Intercept for DropTokens {
    fn name(&self) -> &'static str {
        "bench-drop-client-request-tokens"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request_mut();
        let Some(body) = request.body().bytes().and_then(without_token) else {
            return Ok(());
        };
        request
            .headers_mut()
            .insert("content-length", body.len().to_string());
        *request.body_mut() = body.into();
        Ok(())
    }
}

/// `body` without its `"ClientRequestToken":"..."` member (and the comma
/// that joined it); `None` without one. Cut from the bytes: parsing and
/// re-serialising the whole body would add client time in proportion to the
/// transaction's size, to the product's large ones most.
/// A body cut wrong would be refused by the engine, which stops the run.
fn without_token(body: &[u8]) -> Option<Vec<u8>> {
    let member = format!("\"{TOKEN}\":\"");
    let start = body
        .windows(member.len())
        .position(|w| w == member.as_bytes())?;
    let value = start + member.len();
    // A token is a UUID or the like: no escaped quotes.
    let end = value + body[value..].iter().position(|&b| b == b'"')? + 1;
    let (start, end) = if start > 0 && body[start - 1] == b',' {
        (start - 1, end)
    } else if body.get(end) == Some(&b',') {
        (start, end + 1)
    } else {
        (start, end)
    };
    Some([&body[..start], &body[end..]].concat())
}

/// A fresh world (as [`world`]) whose store sends no `ClientRequestToken`;
/// against an endpoint other than the local engine, the plain world.
pub async fn world_untokened() -> TestEnv {
    let Some(url) = local_engine_url() else {
        return world(false).await.0;
    };
    let config = DynamoStore::local_endpoint_config(url).interceptor(DropTokens);
    let store = DynamoStore::from_config(config, &fresh_table());
    TestEnv::over(store, Clock::manual(now())).await
}
