//! The local stack's HTTP/1.1 server: hyper, one task per connection, with
//!
//! - read timeouts: a client that does not finish a request's head within
//!   [`ServeOptions::header_read_timeout`] has its connection closed (hyper's
//!   header timer, which also closes idle keep-alive connections); one that does
//!   not finish its body within [`ServeOptions::body_read_timeout`] gets 408
//!   `request_timeout` and the connection is closed;
//! - the contract's JSON error shape on protocol-level rejections: hyper answers
//!   a request it cannot parse (invalid bytes in the request line or path,
//!   conflicting `Content-Length`, too many or too large headers) itself, with an
//!   empty body, before any handler runs. [`GuardedIo`] recognises that answer on
//!   its way out and writes the same status with
//!   `{"error": {"code", "message"}}` instead.

use crate::console::Console;
use crate::{Gateway, GatewayRequest};
use http::{HeaderValue, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use spendguard_core::api::error_response;
use spendguard_core::Error;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Largest request body the dev gateway reads (API Gateway's limit is 10 MB).
pub const MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;

/// `SPENDGUARD_LOCAL_READ_TIMEOUT_SECS`: both read timeouts of `make run`.
pub const ENV_READ_TIMEOUT: &str = "SPENDGUARD_LOCAL_READ_TIMEOUT_SECS";

/// How long the server waits for slow clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServeOptions {
    /// Time to receive a request's head (request line and headers), counted
    /// from when the server starts waiting for it; also how long an idle
    /// keep-alive connection stays open.
    pub header_read_timeout: Duration,
    /// Time to receive a request's whole body, counted from its head.
    pub body_read_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self::with_read_timeout(Duration::from_secs(30))
    }
}

impl ServeOptions {
    /// Both timeouts `timeout`.
    pub fn with_read_timeout(timeout: Duration) -> Self {
        Self {
            header_read_timeout: timeout,
            body_read_timeout: timeout,
        }
    }
}

/// What the server answers: the web console's routes when it has them (the
/// bundle at `/`, `config.json`, the dev sign-in), everything else the gateway.
#[derive(Clone)]
pub struct Routes {
    pub gateway: Arc<Gateway>,
    pub console: Option<Arc<Console>>,
}

/// Serves `gateway` on `listener` until `shutdown` resolves, then lets the
/// connections in flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    gateway: Arc<Gateway>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let routes = Routes {
        gateway,
        console: None,
    };
    serve_routes(listener, routes, options, shutdown).await
}

/// [`serve`] with the console's routes too.
pub async fn serve_routes(
    listener: tokio::net::TcpListener,
    routes: Routes,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let routes = routes.clone();
        let stop = stop_rx.clone();
        tokio::spawn(serve_connection(stream, peer, routes, options, stop));
    }
    drop(stop_rx);
    let _ = stop_tx.send(true);
    // Every connection task holds a receiver: this resolves when all are done.
    stop_tx.closed().await;
    Ok(())
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    routes: Routes,
    options: ServeOptions,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let dispatched = Arc::new(AtomicU64::new(0));
    let io = GuardedIo {
        inner: stream,
        dispatched: dispatched.clone(),
        answered: 0,
        replacing: None,
    };
    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        dispatched.fetch_add(1, Ordering::SeqCst);
        let routes = routes.clone();
        async move { Ok::<_, Infallible>(forward(&routes, peer, req, options.body_read_timeout).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    let mut conn = pin!(builder.serve_connection(TokioIo::new(io), service));
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.as_mut().await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection closed");
    }
}

/// An error in the contract's shape for a request no handler saw.
fn protocol_error(status: StatusCode, code: &str, message: &str) -> axum::response::Response {
    let body = json!({"error": {"code": code, "message": message}}).to_string();
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::CONNECTION, "close")
        .body(axum::body::Body::from(body))
        .expect("static response parts are valid")
}

async fn forward(
    routes: &Routes,
    peer: SocketAddr,
    req: http::Request<hyper::body::Incoming>,
    body_timeout: Duration,
) -> axum::response::Response {
    let (parts, body) = req.into_parts();
    let too_large = || {
        let mut response = to_axum(error_response(&Error::PayloadTooLarge {
            limit: MAX_REQUEST_BYTES,
        }));
        response
            .headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        response
    };
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_REQUEST_BYTES as u64) {
        return too_large();
    }
    let read = axum::body::to_bytes(axum::body::Body::new(body), MAX_REQUEST_BYTES);
    let body = match tokio::time::timeout(body_timeout, read).await {
        Ok(Ok(bytes)) => bytes.to_vec(),
        Ok(Err(e)) if e.to_string().contains("length limit") => return too_large(),
        Ok(Err(e)) => {
            return protocol_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("the request body could not be read: {e}"),
            )
        }
        Err(_) => {
            return protocol_error(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                &format!(
                    "the request body was not received within {} s",
                    body_timeout.as_secs_f64()
                ),
            )
        }
    };
    if let Some(console) = &routes.console {
        if let Some(response) = console.handle(&parts.method, parts.uri.path(), &body).await {
            return response;
        }
    }
    let response = routes
        .gateway
        .handle(GatewayRequest {
            method: parts.method,
            path: parts.uri.path().to_string(),
            query: parts.uri.query().map(str::to_string),
            headers: parts.headers,
            body,
            source_ip: peer.ip().to_string(),
        })
        .await;
    to_axum(response)
}

fn to_axum(response: spendguard_core::api::HttpResponse) -> axum::response::Response {
    let (parts, body) = response.into_parts();
    let bytes: Vec<u8> = match body {
        lambda_http::Body::Text(t) => t.into_bytes(),
        lambda_http::Body::Binary(b) => b,
        _ => Vec::new(),
    };
    axum::response::Response::from_parts(parts, axum::body::Body::from(bytes))
}

/// The connection's socket as hyper sees it, rewriting hyper's own answer to
/// a request it could not parse into the contract's JSON error.
///
/// hyper answers HTTP/1.1 requests in order, and only after it handed the
/// request to the service; the one answer it writes without doing so is its
/// automatic response to a parse error (400, 414 or 431 with an empty body,
/// after which it closes the connection). So a response head written while
/// every dispatched request is already answered is that automatic response.
struct GuardedIo {
    inner: TcpStream,
    /// Requests hyper handed to the service on this connection.
    dispatched: Arc<AtomicU64>,
    /// Response heads written for them.
    answered: u64,
    replacing: Option<Replacement>,
}

/// The JSON answer being written in place of hyper's.
struct Replacement {
    bytes: Vec<u8>,
    written: usize,
    /// How much of hyper's buffer it stands for.
    consumed: usize,
}

/// Whether `buf` starts a final (not 1xx) response head.
fn starts_final_head(buf: &[u8]) -> bool {
    buf.len() >= 12 && buf.starts_with(b"HTTP/1.") && buf[8] == b' ' && buf[9] != b'1'
}

/// The JSON error that replaces hyper's automatic answer in `buf`, if that is
/// what `buf` holds: a whole head with an empty body and no content type.
fn replacement_for(buf: &[u8]) -> Option<Vec<u8>> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.get(9..12)?.parse().ok()?;
    let mut kept = Vec::new();
    let mut empty = false;
    for line in lines {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("content-type:") {
            return None;
        }
        if let Some(length) = lower.strip_prefix("content-length:") {
            empty = length.trim() == "0";
            continue;
        }
        if lower.starts_with("connection:") {
            continue;
        }
        kept.push(line);
    }
    if !empty {
        return None;
    }
    let (code, message) = match status {
        431 => (
            "request_header_fields_too_large",
            "the request's headers are too many or too large",
        ),
        414 => ("uri_too_long", "the request's URI is too long"),
        _ => (
            "invalid_request",
            "the request is not valid HTTP/1.1 (its request line, path or headers)",
        ),
    };
    let body = json!({"error": {"code": code, "message": message}}).to_string();
    let mut out = format!("{status_line}\r\n");
    for line in kept {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(&format!(
        "content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ));
    Some(out.into_bytes())
}

impl GuardedIo {
    /// Writes the pending replacement; `Ready(Ok(n))` with the length of
    /// hyper's buffer it stands for once all of it is written.
    fn drive_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let Some(r) = self.replacing.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        while r.written < r.bytes.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &r.bytes[r.written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => r.written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        let consumed = r.consumed;
        self.replacing = None;
        Poll::Ready(Ok(consumed))
    }
}

impl AsyncRead for GuardedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.replacing.is_some() {
            return this.drive_replacement(cx);
        }
        if starts_final_head(buf) {
            if this.answered < this.dispatched.load(Ordering::SeqCst) {
                this.answered += 1;
            } else if let Some(bytes) = replacement_for(buf) {
                this.replacing = Some(Replacement {
                    bytes,
                    written: 0,
                    consumed: buf.len(),
                });
                return this.drive_replacement(cx);
            }
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_empty_automatic_answer_is_replaced() {
        let hyper_400 = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\r\n";
        assert!(starts_final_head(hyper_400));
        let out = String::from_utf8(replacement_for(hyper_400).unwrap()).unwrap();
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
        assert!(out.contains("date: Thu"), "{out}");
        assert_eq!(out.matches("connection: close").count(), 1, "{out}");
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"]["code"], "invalid_request");

        let ours = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        assert!(replacement_for(ours).is_none());
        assert!(!starts_final_head(b"HTTP/1.1 100 Continue\r\n\r\n"));
        assert!(!starts_final_head(b"{\"error\":1}"));
    }
}
