use aws_sdk_dynamodb::config::interceptors::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Counts DynamoDB requests so tests and benchmarks can assert a request
/// budget instead of timing it. Requests (operations the store sends) and
/// attempts (each transmission, the SDK's own retries included) are counted
/// apart: a budget says what the code asks for, and a throttled or retried
/// attempt under load must not make it flaky.
#[derive(Debug, Default)]
pub struct RequestStats {
    requests: AtomicU64,
    attempts: AtomicU64,
    write_units: AtomicU64,
}

impl RequestStats {
    /// Operations sent (one per call, however many attempts it took).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Transmissions, the SDK's retries included (≥ [`RequestStats::requests`]).
    pub fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }

    /// Write capacity units reported by DynamoDB, in tenths (for exact sums).
    pub fn write_units_tenths(&self) -> u64 {
        self.write_units.load(Ordering::Relaxed)
    }

    pub fn add_write_units(&self, units: f64) {
        // Capacity is a metric, not money: rounding to tenths is exact for DynamoDB's
        // 0.5-unit steps.
        self.write_units
            .fetch_add((units * 10.0).round() as u64, Ordering::Relaxed);
    }
}

#[derive(Debug)]
pub(super) struct CountingInterceptor(pub Arc<RequestStats>);

impl Intercept for CountingInterceptor {
    fn name(&self) -> &'static str {
        "spendguard-request-counter"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.0.requests.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.0.attempts.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
