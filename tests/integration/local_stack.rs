//! The local stack as API Gateway and the Lambda service: the Invoke API's
//! parity with Lambda, the dev authorizer's token checks, bodies that are not
//! UTF-8, slow clients and requests hyper refuses before any handler runs. Over
//! real HTTP (raw TCP) against the local stack's server.

use base64::Engine;
use serde_json::{json, Value};
use spendguard_local::{jwt, Gateway, ServeOptions};
use spendguard_tests::{sample_event, Role, TestEnv};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "local-stack-test-secret";

/// The local stack's HTTP server on a free port, on `env`'s table.
struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(env: &TestEnv, options: ServeOptions) -> Self {
        let gateway = Arc::new(Gateway::new(env.deps(), SECRET));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(spendguard_local::server::serve(
            listener,
            gateway,
            options,
            async {
                let _ = stopped.await;
            },
        ));
        Self {
            addr,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the server stops")
            .unwrap()
            .unwrap();
    }

    fn token(&self, user: &str, role: Role) -> String {
        jwt::issue(SECRET, user, role, 3600)
    }

    /// Sends `request` as is and reads until the server closes the connection.
    async fn raw(&self, request: &[u8]) -> Raw {
        let mut stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        // The server may refuse before reading everything: a failed write is fine.
        let _ = stream.write_all(request).await;
        let mut bytes = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut bytes))
            .await
            .expect("the server answers and closes")
            .ok();
        Raw::parse(&bytes)
    }

    /// One request with `Connection: close`.
    async fn send(&self, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Raw {
        let mut request = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        self.raw(&bytes).await
    }

    async fn invoke(&self, function: &str, headers: &[(&str, &str)], event: &Value) -> Raw {
        self.send(
            "POST",
            &format!("/2015-03-31/functions/{function}/invocations"),
            headers,
            event.to_string().as_bytes(),
        )
        .await
    }
}

/// One HTTP/1.1 response as read off the wire.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Raw {
    fn parse(bytes: &[u8]) -> Self {
        let text = String::from_utf8_lossy(bytes);
        let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
            return Self {
                status: 0,
                head: text.into_owned(),
                body: Vec::new(),
            };
        };
        let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
        let status = head
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .unwrap_or_default();
        Self {
            status,
            head,
            body: bytes[end + 4..].to_vec(),
        }
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.split("\r\n").skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    #[track_caller]
    fn assert_json_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(
            self.header("content-type").as_deref(),
            Some("application/json"),
            "{self:?}"
        );
        assert_eq!(self.json()["error"]["code"], code, "{self:?}");
        assert!(self.json()["error"]["message"].is_string(), "{self:?}");
    }
}

fn sqs_record(message_id: Option<&str>, body: &str) -> Value {
    let mut record = json!({
        "receiptHandle": "AQEB-test",
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:spendguard-billing",
        "awsRegion": "us-east-1"
    });
    if let Some(id) = message_id {
        record["messageId"] = json!(id);
    }
    record
}

fn usage_event(event_id: &str, user: &str, cost: &str) -> String {
    json!({
        "event_id": event_id,
        "user_id": user,
        "platform": "openai",
        "cost_usd": cost,
        "occurred_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    })
    .to_string()
}

// --- item 8: one SQS entry path -------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_ingest_invocation_fails_when_a_failed_message_has_no_message_id() {
    let env = TestEnv::new().await;
    let server = Server::start(&env, ServeOptions::default()).await;
    for message_id in [None, Some("")] {
        let event = json!({"Records": [
            sqs_record(Some("m-ok"), &usage_event("e-ok", "ingest-a", "0.5")),
            sqs_record(message_id, "not json"),
        ]});
        let res = server.invoke("usage-ingest", &[], &event).await;
        assert_eq!(res.status, 200, "{res:?}");
        assert_eq!(
            res.header("x-amz-function-error").as_deref(),
            Some("Unhandled"),
            "{message_id:?}: {res:?}"
        );
        assert_eq!(
            res.header("x-amz-executed-version").as_deref(),
            Some("$LATEST")
        );
        let body = res.json();
        assert_eq!(body["errorType"], "UnreportableMessageFailure", "{body}");
        assert!(
            body["errorMessage"]
                .as_str()
                .unwrap()
                .contains("without a messageId"),
            "{body}"
        );
    }
    // A batch whose failures all carry their id answers the partial response.
    let event = json!({"Records": [
        sqs_record(Some("m-1"), &usage_event("e-1", "ingest-a", "0.5")),
        sqs_record(Some("m-2"), "not json"),
    ]});
    let res = server.invoke("usage-ingest", &[], &event).await;
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(res.header("x-amz-function-error"), None, "{res:?}");
    assert_eq!(
        res.json(),
        json!({"batchItemFailures": [{"itemIdentifier": "m-2"}]})
    );
    server.stop().await;
}

// --- item 9: bodies that are not UTF-8 --------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_utf8_is_refused_not_repaired() {
    let env = TestEnv::new().await;
    let server = Server::start(&env, ServeOptions::default()).await;
    let admin = server.token("root", Role::Admin);
    let auth = format!("Bearer {admin}");
    let bad = b"{\"delta\": 5, \"reason\": \"bad \xff(\"}";
    let res = server
        .send(
            "POST",
            "/v1/admin/users/utf8-victim/credits/adjust",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
                ("Idempotency-Key", "utf8-1"),
            ],
            bad,
        )
        .await;
    res.assert_json_error(400, "invalid_request");
    assert_eq!(env.available("utf8-victim").await, 0, "nothing applied");
    // The function sees the bytes unchanged, base64-encoded as API Gateway sends them.
    let mut event = sample_event("credits-adjust.json");
    event["body"] = json!(base64::engine::general_purpose::STANDARD.encode(bad));
    event["isBase64Encoded"] = json!(true);
    let res = env.invoke("credits", &event).await;
    res.assert_status(200);
    assert_eq!(res.body["statusCode"], 400, "{}", res.text);

    // The Invoke API refuses a payload that is not JSON text, as Lambda does.
    let res = server
        .send(
            "POST",
            "/2015-03-31/functions/usage-ingest/invocations",
            &[],
            b"{\"Records\": [], \"x\": \"\xff\"}",
        )
        .await;
    assert_eq!(res.status, 400, "{res:?}");
    assert_eq!(
        res.header("x-amzn-errortype").as_deref(),
        Some("InvalidRequestContentException")
    );
    assert_eq!(res.json()["Type"], "User", "{res:?}");
    assert!(res.json()["message"].is_string(), "{res:?}");
    server.stop().await;
}

// --- item 10: Invoke API parity with Lambda ---------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_api_resolves_every_name_form_lambda_accepts() {
    let env = TestEnv::new().await;
    let server = Server::start(&env, ServeOptions::default()).await;
    let event = sample_event("quota-get-my-quotas.json");
    for name in [
        "quota",
        "quota:$LATEST",
        "quota%3A%24LATEST",
        "quota?Qualifier=%24LATEST",
        "arn:aws:lambda:us-east-1:123456789012:function:quota",
        "arn%3Aaws%3Alambda%3Aeu-west-1%3A123456789012%3Afunction%3Aquota%3A%24LATEST",
        "123456789012:function:quota",
    ] {
        let (name, query) = name.split_once('?').unwrap_or((name, ""));
        let target = format!("/2015-03-31/functions/{name}/invocations?{query}");
        let res = server
            .send("POST", &target, &[], event.to_string().as_bytes())
            .await;
        assert_eq!(res.status, 200, "{name}: {res:?}");
        assert_eq!(res.json()["statusCode"], 200, "{name}: {res:?}");
        assert_eq!(
            res.header("x-amz-executed-version").as_deref(),
            Some("$LATEST"),
            "{name}"
        );
        assert!(res.header("x-amzn-requestid").is_some(), "{name}");
        assert_eq!(res.header("x-amz-function-error"), None, "{name}");
    }
    for (name, arn) in [
        (
            "no-such-function",
            "arn:aws:lambda:us-east-1:000000000000:function:no-such-function",
        ),
        (
            "quota:7",
            "arn:aws:lambda:us-east-1:000000000000:function:quota:7",
        ),
        (
            "arn:aws:lambda:eu-west-1:123456789012:function:nope",
            "arn:aws:lambda:eu-west-1:123456789012:function:nope",
        ),
    ] {
        let res = server.invoke(name, &[], &event).await;
        assert_eq!(res.status, 404, "{name}: {res:?}");
        assert_eq!(
            res.header("x-amzn-errortype").as_deref(),
            Some("ResourceNotFoundException")
        );
        let expected = if name.starts_with("arn:") {
            arn.to_string()
        } else {
            // The region of a bare name is the environment's.
            let region = std::env::var("AWS_REGION")
                .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
                .ok()
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| "us-east-1".into());
            arn.replace("us-east-1", &region)
        };
        assert_eq!(
            res.json(),
            json!({"Type": "User", "Message": format!("Function not found: {expected}")})
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_api_invocation_types_and_log_tail() {
    let env = TestEnv::new().await;
    let server = Server::start(&env, ServeOptions::default()).await;
    let batch = |id: &str, user: &str| json!({"Records": [sqs_record(Some(id), &usage_event(id, user, "1.5"))]});

    // DryRun: validated, not run.
    let res = server
        .invoke(
            "usage-ingest",
            &[("X-Amz-Invocation-Type", "DryRun")],
            &batch("dry-1", "dry-user"),
        )
        .await;
    assert_eq!(res.status, 204, "{res:?}");
    assert!(res.body.is_empty());

    // Event: 202 with an empty body at once, run in the background.
    let res = server
        .invoke(
            "usage-ingest",
            &[("X-Amz-Invocation-Type", "Event")],
            &batch("async-1", "async-user"),
        )
        .await;
    assert_eq!(res.status, 202, "{res:?}");
    assert!(res.body.is_empty(), "{res:?}");
    let started = Instant::now();
    loop {
        let check = env.check_mine("async-user", "openai").await;
        if check["windows"]["daily"]["usage_usd"] == "1.5" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the Event invocation never ran: {check}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // DryRun wrote nothing.
    let check = env.check_mine("dry-user", "openai").await;
    assert_eq!(check["windows"]["daily"]["usage_usd"], "0");

    // Tail: the invocation's own log lines, base64, Lambda's framing.
    let res = server
        .invoke(
            "usage-ingest",
            &[("X-Amz-Log-Type", "Tail")],
            &batch("tail-1", "tail-user"),
        )
        .await;
    assert_eq!(res.status, 200, "{res:?}");
    let log = res.header("x-amz-log-result").expect("X-Amz-Log-Result");
    let log = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(log)
            .unwrap(),
    )
    .unwrap();
    assert!(log.starts_with("START RequestId: "), "{log}");
    assert!(log.contains("usage batch processed"), "{log}");
    assert!(log.contains("applied=1"), "{log}");
    assert!(log.contains("\nREPORT RequestId: "), "{log}");
    assert!(log.len() <= 4096);
    // Without Tail there is no log header.
    let res = server
        .invoke("usage-ingest", &[], &batch("tail-2", "tail-user"))
        .await;
    assert_eq!(res.header("x-amz-log-result"), None);

    // An event the function cannot deserialize is a function error, not a 400.
    let res = server
        .invoke("usage-ingest", &[], &json!({"Records": 5}))
        .await;
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(
        res.header("x-amz-function-error").as_deref(),
        Some("Unhandled")
    );
    assert_eq!(
        res.json()["errorType"],
        "lambda_runtime::deserializer::DeserializeError"
    );
    server.stop().await;
}

// --- item 11: the dev authorizer ---------------------------------------------

#[tokio::test]
async fn tokens_not_yet_valid_and_null_claims_are_handled_like_api_gateway() {
    let env = TestEnv::new().await;
    let now = chrono::Utc::now().timestamp();
    for claim in ["nbf", "iat"] {
        let token = env.token_with_claims(&json!({"sub": "alice", claim: now + 600}));
        env.get("/v1/me/quotas")
            .bearer(&token)
            .send()
            .await
            .assert_error(401, "unauthorized");
        let token = env.token_with_claims(&json!({"sub": "alice", claim: now - 5}));
        env.get("/v1/me/quotas")
            .bearer(&token)
            .send()
            .await
            .assert_status(200);
    }
    // `"sub": null` is no user: a service token without one cannot act as a user.
    let token = env.token_with_claims(&json!({"sub": null, "scope": "spendguard/service"}));
    env.get("/v1/me/quotas")
        .bearer(&token)
        .send()
        .await
        .assert_error(403, "forbidden");
    let token = env.token_with_claims(&json!({"sub": null}));
    env.get("/v1/me/quotas")
        .bearer(&token)
        .send()
        .await
        .assert_error(401, "unauthorized");
}

// --- item 12: slow clients -----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_timed_out() {
    let env = TestEnv::new().await;
    let server = Server::start(
        &env,
        ServeOptions::with_read_timeout(Duration::from_millis(500)),
    )
    .await;
    // A head that never ends: the connection is closed.
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /v1/me/quotas HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
        .await
        .expect("the server closes a connection whose head never ends")
        .ok();
    assert!(started.elapsed() < Duration::from_secs(5));

    // A body that never ends: 408 in the contract's shape, then closed.
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(
            b"POST /v1/quota/check HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"user",
        )
        .await
        .unwrap();
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut bytes))
        .await
        .expect("the server answers a body that never ends")
        .ok();
    Raw::parse(&bytes).assert_json_error(408, "request_timeout");
    server.stop().await;
}

// --- item 13: protocol-level rejections ----------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_hyper_refuses_get_the_contracts_json_error() {
    let env = TestEnv::new().await;
    let server = Server::start(&env, ServeOptions::default()).await;
    // Invalid bytes in the path.
    server
        .raw(b"GET /v1/me/\x01quotas HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .assert_json_error(400, "invalid_request");
    server
        .raw(b"GET /v1/me/\xffquotas HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .assert_json_error(400, "invalid_request");
    // Conflicting Content-Length.
    server
        .raw(b"POST /v1/quota/check HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!")
        .await
        .assert_json_error(400, "invalid_request");
    // Too many headers, and one too large.
    let mut many = String::from("GET /v1/me/quotas HTTP/1.1\r\nHost: x\r\n");
    for i in 0..150 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    server
        .raw(many.as_bytes())
        .await
        .assert_json_error(431, "request_header_fields_too_large");
    let huge = format!(
        "GET /v1/me/quotas HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1024 * 1024)
    );
    server
        .raw(huge.as_bytes())
        .await
        .assert_json_error(431, "request_header_fields_too_large");
    // A body larger than the gateway reads.
    server
        .raw(b"POST /v1/quota/check HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n{}")
        .await
        .assert_json_error(400, "payload_too_large");

    // On a kept-alive connection, answered requests come first, unchanged.
    let token = server.token("carol", Role::User);
    let good =
        format!("GET /v1/me/quotas HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n");
    let mut request = good.repeat(2).into_bytes();
    request.extend_from_slice(b"GET /v1/\x01 HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(&request).await.unwrap();
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut bytes))
        .await
        .expect("answers and closes")
        .ok();
    let text = String::from_utf8_lossy(&bytes);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
    assert_eq!(text.matches("\"user_id\":\"carol\"").count(), 2, "{text}");
    let last = &bytes[text.rfind("HTTP/1.1 400").expect("a 400 last")..];
    Raw::parse(last).assert_json_error(400, "invalid_request");
    server.stop().await;
}
