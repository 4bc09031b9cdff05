//! A scripted DynamoDB endpoint for unit tests: answers each request from a
//! script and records what was sent. For failure modes no local engine
//! emulates (e.g. `TransactionInProgressException`), so the store's handling of
//! them can be shown against the real SDK over real HTTP.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// One request as received: the operation (`TransactWriteItems`, ...) and its body.
#[derive(Clone, Debug)]
pub struct Sent {
    pub operation: String,
    pub body: Value,
}

/// The script: given the operation and how many requests of that operation
/// came before, the status and JSON body to answer.
pub type Script = dyn Fn(&str, usize) -> (u16, String) + Send + Sync;

/// Serves `script` on a local port until the test process ends; returns the
/// endpoint URL and the log of requests.
pub fn serve(script: Box<Script>) -> (String, Arc<Mutex<Vec<Sent>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a local port");
    let url = format!("http://{}", listener.local_addr().expect("local address"));
    let log = Arc::new(Mutex::new(Vec::<Sent>::new()));
    let script: Arc<Script> = Arc::from(script);
    let shared = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let (log, script) = (shared.clone(), script.clone());
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().expect("clone stream");
                let mut reader = BufReader::new(stream);
                // Keep-alive: one request after another on the connection.
                loop {
                    let mut length = 0usize;
                    let mut operation = String::new();
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let header = line.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = header.split_once(':') {
                            let value = value.trim();
                            match name.to_ascii_lowercase().as_str() {
                                "content-length" => length = value.parse().unwrap_or(0),
                                "x-amz-target" => {
                                    operation =
                                        value.rsplit('.').next().unwrap_or(value).to_string()
                                }
                                _ => {}
                            }
                        }
                    }
                    let mut body = vec![0u8; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let nth = {
                        let mut log = log.lock().expect("log");
                        let nth = log.iter().filter(|s| s.operation == operation).count();
                        log.push(Sent {
                            operation: operation.clone(),
                            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                        });
                        nth
                    };
                    let (status, answer) = script(&operation, nth);
                    let response = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/x-amz-json-1.0\r\n\
                         content-length: {}\r\n\r\n{answer}",
                        answer.len()
                    );
                    if writer.write_all(response.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, log)
}

/// A DynamoDB JSON error body of type `name`.
pub fn error(name: &str) -> String {
    format!(r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{name}","message":"{name}"}}"#)
}
