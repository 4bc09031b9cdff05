//! A fault-injecting proxy between the store under test and the real engine.
//!
//! It serves HTTP on 127.0.0.1, reads each DynamoDB JSON request (the
//! `X-Amz-Target` header names the operation) and, as its [`Script`] decides,
//! forwards it to the engine unchanged or injects a fault: an answer without
//! forwarding (throttling, a 500, a transaction conflict), or the ambiguous
//! case the engine cannot produce on its own: forward, let the engine apply
//! the request, then lose the response (answer 500 instead, or drop the
//! connection). Every request is logged with what was done to it, so tests can
//! count attempts and check that resends were identical.
//!
//! Blocking threads, one per client connection, like the unit tests' scripted
//! endpoint (`shared/src/store/fake.rs`): the proxy stays independent of the
//! runtime of the test using it. A reliability suite can drive it from a seed
//! with [`FaultProxy::set_script`].

use serde_json::Value;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// What the proxy does with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forward it and pass the engine's answer back.
    Forward,
    /// Answer 400 `ThrottlingException` without forwarding (nothing applied).
    Throttle,
    /// Answer 500 `InternalServerError` without forwarding (nothing applied).
    ServerError,
    /// Answer `TransactionCanceledException` with a `TransactionConflict`
    /// reason per action, without forwarding (nothing applied).
    Conflict,
    /// Forward it (the engine applies it), then answer 500 instead of the
    /// engine's answer: committed, but the response is lost.
    ApplyThenServerError,
    /// Forward it (the engine applies it), then close the connection without
    /// answering: committed, but the connection dropped.
    ApplyThenDrop,
    /// Hold it (a stalled request) until [`FaultProxy::release`], then forward.
    Hold,
}

/// A gate held requests wait at; opened once by [`FaultProxy::release`].
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

/// One request as the proxy saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// `TransactWriteItems`, `PutItem`, ...
    pub operation: String,
    pub body: Value,
    pub fault: Fault,
}

/// Decides a request's fault from its operation and body (and whatever state
/// the closure keeps, e.g. a seeded generator).
pub type Script = dyn FnMut(&str, &Value) -> Fault + Send;

struct State {
    /// Faults for the next requests of an operation, in order; then `script`.
    queued: Vec<(String, VecDeque<Fault>)>,
    script: Option<Box<Script>>,
    log: Vec<Seen>,
}

impl State {
    fn decide(&mut self, operation: &str, body: &Value) -> Fault {
        if let Some((_, faults)) = self.queued.iter_mut().find(|(op, _)| op == operation) {
            if let Some(fault) = faults.pop_front() {
                return fault;
            }
        }
        match &mut self.script {
            Some(script) => script(operation, body),
            None => Fault::Forward,
        }
    }
}

/// The proxy; it serves until the test process ends.
#[derive(Clone)]
pub struct FaultProxy {
    url: String,
    state: Arc<Mutex<State>>,
    gate: Arc<Gate>,
}

impl FaultProxy {
    /// Starts a proxy in front of the engine at `upstream` (`http://host:port`).
    pub fn start(upstream: &str) -> Self {
        let upstream = upstream
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("the fault proxy forwards plain HTTP, not {upstream}"))
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a local port");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let state = Arc::new(Mutex::new(State {
            queued: Vec::new(),
            script: None,
            log: Vec::new(),
        }));
        let gate = Arc::new(Gate::default());
        let (shared, shared_gate) = (state.clone(), gate.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (state, gate, upstream) =
                    (shared.clone(), shared_gate.clone(), upstream.clone());
                std::thread::spawn(move || serve_connection(stream, &upstream, &state, &gate));
            }
        });
        Self { url, state, gate }
    }

    /// The endpoint URL to build the store under test against.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Queues `faults` for the next requests of `operation`, one each, after
    /// any already queued; later requests of it are forwarded (or scripted).
    pub fn inject(&self, operation: &str, faults: &[Fault]) {
        let mut state = self.lock();
        match state.queued.iter_mut().find(|(op, _)| op == operation) {
            Some((_, queue)) => queue.extend(faults.iter().copied()),
            None => state
                .queued
                .push((operation.to_string(), faults.iter().copied().collect())),
        }
    }

    /// Decides every request that no queued fault covers.
    pub fn set_script(&self, script: Box<Script>) {
        self.lock().script = Some(script);
    }

    /// Forwards everything from now on (drops queued faults and the script).
    pub fn heal(&self) {
        let mut state = self.lock();
        state.queued.clear();
        state.script = None;
    }

    /// Lets every held request (and any later one) through to the engine.
    pub fn release(&self) {
        *self.gate.open.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.gate.opened.notify_all();
    }

    /// Every request seen so far, in arrival order.
    pub fn log(&self) -> Vec<Seen> {
        self.lock().log.clone()
    }

    /// The requests of `operation` seen so far.
    pub fn seen(&self, operation: &str) -> Vec<Seen> {
        self.log()
            .into_iter()
            .filter(|s| s.operation == operation)
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One HTTP request: request line, headers (name, value) and body.
struct Request {
    line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads a request line or status line and its headers; `None` at end of stream.
fn read_head(reader: &mut impl BufRead) -> Option<(String, Vec<(String, String)>)> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let first = line.trim_end().to_string();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let header = line.trim_end();
        if header.is_empty() {
            return Some((first, headers));
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
}

fn content_length(headers: &[(String, String)]) -> Option<usize> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
}

fn read_request(reader: &mut impl BufRead) -> Option<Request> {
    let (line, headers) = read_head(reader)?;
    let mut body = vec![0u8; content_length(&headers).unwrap_or(0)];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        line,
        headers,
        body,
    })
}

fn serve_connection(stream: TcpStream, upstream: &str, state: &Mutex<State>, gate: &Gate) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    // Keep-alive: one request after another on the connection.
    while let Some(request) = read_request(&mut reader) {
        let operation = request
            .header("x-amz-target")
            .map(|t| t.rsplit('.').next().unwrap_or(t).to_string())
            .unwrap_or_default();
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let fault = {
            let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
            let fault = state.decide(&operation, &body);
            state.log.push(Seen {
                operation: operation.clone(),
                body: body.clone(),
                fault,
            });
            fault
        };
        let answer = match fault {
            Fault::Forward => match forward(upstream, &request) {
                Some(raw) => raw,
                None => error_response(502, "InternalServerError", "upstream unreachable"),
            },
            Fault::Throttle => error_response(400, "ThrottlingException", "Rate exceeded"),
            Fault::ServerError => error_response(500, "InternalServerError", "injected"),
            Fault::Conflict => conflict_response(&body),
            Fault::ApplyThenServerError => {
                let _ = forward(upstream, &request);
                error_response(500, "InternalServerError", "injected after applying")
            }
            Fault::Hold => {
                // Bounded, so a test that forgets to release cannot hang.
                let open = gate.open.lock().unwrap_or_else(|e| e.into_inner());
                drop(
                    gate.opened
                        .wait_timeout_while(open, Duration::from_secs(30), |open| !*open),
                );
                match forward(upstream, &request) {
                    Some(raw) => raw,
                    None => error_response(502, "InternalServerError", "upstream unreachable"),
                }
            }
            Fault::ApplyThenDrop => {
                let _ = forward(upstream, &request);
                let _ = writer.shutdown(Shutdown::Both);
                return;
            }
        };
        if writer.write_all(&answer).is_err() {
            return;
        }
    }
}

/// Sends `request` to the engine on a fresh connection and returns its raw
/// answer (status line, headers, body) to pass back unchanged.
fn forward(upstream: &str, request: &Request) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect(upstream).ok()?;
    let mut head = format!("{}\r\n", request.line);
    for (name, value) in &request.headers {
        if !name.eq_ignore_ascii_case("connection") {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str("connection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(&request.body).ok()?;
    let mut reader = BufReader::new(stream);
    let (status, headers) = read_head(&mut reader)?;
    let mut body = Vec::new();
    match content_length(&headers) {
        Some(n) => {
            body.resize(n, 0);
            reader.read_exact(&mut body).ok()?;
        }
        None => {
            reader.read_to_end(&mut body).ok()?;
        }
    }
    // Re-framed with a length, so the client's connection stays usable.
    let mut raw = format!("{status}\r\n");
    for (name, value) in &headers {
        let lower = name.to_ascii_lowercase();
        if !matches!(
            lower.as_str(),
            "content-length" | "transfer-encoding" | "connection"
        ) {
            raw.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    raw.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    let mut raw = raw.into_bytes();
    raw.extend_from_slice(&body);
    Some(raw)
}

fn response(status: u16, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/x-amz-json-1.0\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn error_response(status: u16, name: &str, message: &str) -> Vec<u8> {
    response(
        status,
        &format!(r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{name}","message":"{message}"}}"#),
    )
}

/// A cancelled transaction with a `TransactionConflict` reason for every action.
fn conflict_response(body: &Value) -> Vec<u8> {
    let actions = body["TransactItems"].as_array().map_or(1, Vec::len);
    let reasons: Vec<Value> = (0..actions)
        .map(|_| serde_json::json!({"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}))
        .collect();
    let body = serde_json::json!({
        "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
        "Message": "Transaction cancelled, please refer cancellation reasons for specific reasons",
        "CancellationReasons": reasons,
    });
    response(400, &body.to_string())
}
