//! An SQS event as the usage-ingest function receives it (the Lambda runtime
//! reads it into `SqsEvent`), then every record's body as the function reads
//! it, grouped and planned as one write per group: no panic on any input.
#![no_main]

use aws_lambda_events::event::sqs::SqsEvent;
use libfuzzer_sys::fuzz_target;
use spendguard_core::domain::usage::{write_groups, UsageEvent, UsagePlan};
use spendguard_core::domain::Platforms;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = serde_json::from_slice::<SqsEvent>(data) else {
        return;
    };
    let platforms = Platforms::defaults();
    let now = chrono::DateTime::from_timestamp(1_795_000_000, 0).unwrap();
    let events: Vec<UsageEvent> = event
        .records
        .iter()
        .filter_map(|r| r.body.as_deref())
        .filter_map(|body| match UsageEvent::parse(body, &platforms, now) {
            Ok(e) => Some(e),
            Err(e) => {
                assert!(e.status().is_client_error(), "{e:?}");
                None
            }
        })
        .collect();
    for group in write_groups(&events).iter().flatten() {
        let members: Vec<&UsageEvent> = group.iter().map(|&i| &events[i]).collect();
        if !members.is_empty() {
            let _ = UsagePlan::new(&members, chrono_tz::Europe::London, now, None);
        }
    }
});
