//! The one JSON body reader (`spendguard_core::json::from_slice`) and the
//! request types read through it, on any bytes: no panic, and every refusal
//! is a 4xx (bad input is never a 5xx).
#![no_main]

use libfuzzer_sys::fuzz_target;
use spendguard_core::domain::credits::{AdjustBody, AdjustRequest};
use spendguard_core::domain::quota::{DefaultsBody, LimitsEntry, QuotaDefaults};
use spendguard_core::domain::redemption::CreateCodesBody;
use spendguard_core::domain::reservation::{ReserveRequest, ReserveWire};
use spendguard_core::domain::Platforms;
use spendguard_core::json::from_slice;
use spendguard_core::Error;

fn client_error<T>(what: &str, result: Result<T, Error>) {
    if let Err(e) = result {
        assert!(
            e.status().is_client_error(),
            "{what}: {e:?} is a {}",
            e.status()
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let platforms = Platforms::defaults();
    let now = chrono::DateTime::from_timestamp(1_795_000_000, 0).unwrap();
    client_error("value", from_slice::<serde_json::Value>(data));
    client_error(
        "adjust",
        from_slice::<AdjustBody>(data).and_then(AdjustRequest::from_body),
    );
    client_error(
        "reserve",
        from_slice::<ReserveWire>(data).and_then(|w| ReserveRequest::from_wire(w, &platforms)),
    );
    client_error(
        "defaults",
        from_slice::<DefaultsBody>(data).and_then(|b| QuotaDefaults::from_body(b, &platforms)),
    );
    client_error(
        "replace",
        from_slice::<Vec<LimitsEntry>>(data)
            .and_then(|e| spendguard_core::domain::quota::replacement_limits(e, &platforms)),
    );
    client_error(
        "codes",
        from_slice::<CreateCodesBody>(data).and_then(|b| b.validate(now)),
    );
});
