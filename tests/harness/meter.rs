//! A metering proxy between the store under test and the engine: what each
//! operation costs in DynamoDB terms, counted on the wire.
//!
//! Every request is forwarded with `ReturnConsumedCapacity: TOTAL` (the store
//! asks for it only where it uses the figure; asking changes no effect), and
//! the engine's `ConsumedCapacity` is summed as read or write units by
//! operation, as DynamoDB bills them: `GetItem`, `BatchGetItem`, `Query`,
//! `Scan` and `TransactGetItems` read, everything else writes. The embedded
//! engine (dynoxide) computes these units by DynamoDB's rules (item sizes,
//! strongly consistent reads, 2x for transactions, index writes). An error
//! answer carries no `ConsumedCapacity`: failed conditional writes, which
//! DynamoDB bills too, are counted apart in [`Tally::failed`].
//!
//! The proxy opens one engine connection per request, so time through it is
//! not the product's time: benchmarks time against the engine directly.

use crate::fault::{forward, read_request};
use serde_json::Value;
use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

const READ_OPERATIONS: &[&str] = &[
    "GetItem",
    "BatchGetItem",
    "Query",
    "Scan",
    "TransactGetItems",
];

/// Wire-level totals since the proxy started.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Tally {
    /// Transmissions (the SDK's retries included).
    pub attempts: u64,
    /// Transmissions of write operations (the rest read).
    pub write_attempts: u64,
    /// Read capacity units the engine reported.
    pub read_units: f64,
    /// Write capacity units the engine reported.
    pub write_units: f64,
    /// Answers that were errors (failed conditions, cancelled transactions).
    pub failed: u64,
}

impl std::ops::Sub for Tally {
    type Output = Tally;
    fn sub(self, earlier: Tally) -> Tally {
        Tally {
            attempts: self.attempts - earlier.attempts,
            write_attempts: self.write_attempts - earlier.write_attempts,
            read_units: self.read_units - earlier.read_units,
            write_units: self.write_units - earlier.write_units,
            failed: self.failed - earlier.failed,
        }
    }
}

impl std::ops::Add for Tally {
    type Output = Tally;
    fn add(self, other: Tally) -> Tally {
        Tally {
            attempts: self.attempts + other.attempts,
            write_attempts: self.write_attempts + other.write_attempts,
            read_units: self.read_units + other.read_units,
            write_units: self.write_units + other.write_units,
            failed: self.failed + other.failed,
        }
    }
}

/// The proxy; it serves until the process ends.
#[derive(Clone)]
pub struct Meter {
    url: String,
    tally: Arc<Mutex<Tally>>,
}

impl Meter {
    /// Starts a metering proxy in front of the engine at `upstream` (`http://host:port`).
    pub fn start(upstream: &str) -> Self {
        let upstream = upstream
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("the meter forwards plain HTTP, not {upstream}"))
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a local port");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let shared = tally.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (tally, upstream) = (shared.clone(), upstream.clone());
                std::thread::spawn(move || serve_connection(stream, &upstream, &tally));
            }
        });
        Self { url, tally }
    }

    /// The endpoint URL to build the store under test against.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The totals so far (subtract two to measure what happened in between).
    pub fn tally(&self) -> Tally {
        *self.tally.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn serve_connection(stream: TcpStream, upstream: &str, tally: &Mutex<Tally>) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    while let Some(mut request) = read_request(&mut reader) {
        let operation = request
            .header("x-amz-target")
            .map(|t| t.rsplit('.').next().unwrap_or(t).to_string())
            .unwrap_or_default();
        if let Ok(Value::Object(mut body)) = serde_json::from_slice::<Value>(&request.body) {
            body.insert("ReturnConsumedCapacity".into(), "TOTAL".into());
            request.body = serde_json::to_vec(&body).expect("JSON");
            let length = request.body.len().to_string();
            for (name, value) in request.headers.iter_mut() {
                if name.eq_ignore_ascii_case("content-length") {
                    *value = length.clone();
                }
            }
        }
        let Some(answer) = forward(upstream, &request) else {
            return;
        };
        let (ok, units) = consumed(&answer);
        {
            let mut t = tally.lock().unwrap_or_else(|e| e.into_inner());
            t.attempts += 1;
            if !ok {
                t.failed += 1;
            }
            if READ_OPERATIONS.contains(&operation.as_str()) {
                t.read_units += units;
            } else {
                t.write_attempts += 1;
                t.write_units += units;
            }
        }
        if writer.write_all(&answer).is_err() {
            return;
        }
    }
}

/// Whether the raw answer is a success, and the capacity units it reports
/// (one `ConsumedCapacity` object, or one per table in a list).
fn consumed(raw: &[u8]) -> (bool, f64) {
    let ok = raw.starts_with(b"HTTP/1.1 200") || raw.starts_with(b"HTTP/1.0 200");
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return (ok, 0.0);
    };
    let body: Value = serde_json::from_slice(&raw[split + 4..]).unwrap_or(Value::Null);
    let units = |c: &Value| c["CapacityUnits"].as_f64().unwrap_or(0.0);
    let total = match &body["ConsumedCapacity"] {
        Value::Array(list) => list.iter().map(units).sum(),
        c @ Value::Object(_) => units(c),
        _ => 0.0,
    };
    (ok, total)
}
