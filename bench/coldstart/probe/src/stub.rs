//! The two stubs a cold start talks to: the Lambda Runtime API (hands out one
//! event, takes its answer) and a DynamoDB endpoint that answers every call
//! at once with an empty result, so the first invocation times the function
//! (credentials, signing, the HTTP client's first connection, its own work)
//! and not a database. HTTP/1.1 with keep-alive, as the clients expect.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Instant;

const NEXT_INVOCATION: &str = "/2018-06-01/runtime/invocation/next";
pub const REQUEST_ID: &str = "probe-request-1";

/// What the runtime stub saw, in order.
pub enum Arrival {
    /// The first `GET .../invocation/next` of a process: initialised. The
    /// stream answers it.
    Next(Instant, TcpStream),
    /// The invocation's answer (`.../response`, or `.../error` when `ok` is
    /// false) with its body.
    Answer(Instant, bool, String),
}

struct Request {
    method: String,
    path: String,
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

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (name, value) = h.split_once(':')?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let mut request = Request {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    let length = request
        .header("content-length")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(0);
    request.body = vec![0; length];
    reader.read_exact(&mut request.body).ok()?;
    Some(request)
}

fn respond(stream: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &str) -> bool {
    let mut text = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n", body.len());
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    text.push_str(body);
    stream.write_all(text.as_bytes()).is_ok()
}

/// Serves each connection of `listener` on a thread of its own with `serve`.
fn serve(listener: TcpListener, serve: impl Fn(TcpStream) + Send + Sync + Copy + 'static) {
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream));
        }
    });
}

/// Starts the Runtime API stub; returns its `host:port` and what it sees.
pub fn runtime_api() -> (String, mpsc::Receiver<Arrival>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("stub listens");
    let api = listener.local_addr().expect("address").to_string();
    let (tx, arrivals) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || runtime_connection(stream, &tx));
        }
    });
    (api, arrivals)
}

fn runtime_connection(stream: TcpStream, tx: &mpsc::Sender<Arrival>) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    while let Some(request) = read_request(&mut reader) {
        let at = Instant::now();
        if request.method == "GET" && request.path == NEXT_INVOCATION {
            // Answered by the probe (the event, or never: the process is killed).
            let Ok(answer) = writer.try_clone() else {
                return;
            };
            if tx.send(Arrival::Next(at, answer)).is_err() {
                return;
            }
            continue;
        }
        let ok = request.path.ends_with("/response");
        if request.method == "POST" && (ok || request.path.ends_with("/error")) {
            let body = String::from_utf8_lossy(&request.body).into_owned();
            let _ = tx.send(Arrival::Answer(at, ok, body));
        }
        if !respond(&mut writer, "202 Accepted", &[], "{}") {
            return;
        }
    }
}

/// Hands `event` out on the stream of a `next` request.
pub fn hand_out(mut stream: TcpStream, name: &str, event: &str) -> bool {
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() + 30_000);
    respond(
        &mut stream,
        "200 OK",
        &[
            ("content-type", "application/json".into()),
            ("lambda-runtime-aws-request-id", REQUEST_ID.into()),
            ("lambda-runtime-deadline-ms", deadline.to_string()),
            (
                "lambda-runtime-invoked-function-arn",
                format!("arn:aws:lambda:us-east-1:000000000000:function:{name}"),
            ),
            (
                "lambda-runtime-trace-id",
                "Root=1-00000000-000000000000000000000000".into(),
            ),
        ],
        event,
    )
}

/// Starts the DynamoDB stub; returns its URL.
pub fn dynamodb() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("stub listens");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    serve(listener, dynamodb_connection);
    url
}

/// Empty answers: no item, no page, every write accepted.
fn dynamodb_connection(stream: TcpStream) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    while let Some(request) = read_request(&mut reader) {
        let target = request.header("x-amz-target").unwrap_or_default();
        let body = match target.rsplit('.').next().unwrap_or_default() {
            "Query" | "Scan" => r#"{"Count":0,"ScannedCount":0,"Items":[]}"#,
            "BatchGetItem" => r#"{"Responses":{},"UnprocessedKeys":{}}"#,
            "TransactGetItems" => r#"{"Responses":[]}"#,
            _ => "{}",
        };
        let headers = [
            ("content-type", "application/x-amz-json-1.0".to_string()),
            ("x-amzn-requestid", "probe".to_string()),
        ];
        if !respond(&mut writer, "200 OK", &headers, body) {
            return;
        }
    }
}
