//! A usage event body (an SQS message) on any text: no panic, every refusal a
//! 4xx, and an accepted event's canonical form reads back to the same event
//! (so its fingerprint, the duplicate check, is stable).
#![no_main]

use libfuzzer_sys::fuzz_target;
use spendguard_core::domain::usage::UsageEvent;
use spendguard_core::domain::Platforms;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    let platforms = Platforms::defaults();
    let now = chrono::DateTime::from_timestamp(1_795_000_000, 0).unwrap();
    match UsageEvent::parse(body, &platforms, now) {
        Ok(event) => {
            let again = UsageEvent::parse(&event.canonical_json(), &platforms, now)
                .expect("the canonical form of an accepted event parses");
            assert_eq!(again, event);
            assert_eq!(again.fingerprint(), event.fingerprint());
            for tz in [
                chrono_tz::UTC,
                chrono_tz::Pacific::Apia,
                chrono_tz::America::Santiago,
            ] {
                let _ = event.window_starts(tz, now);
            }
        }
        Err(e) => assert!(e.status().is_client_error(), "{e:?}"),
    }
});
