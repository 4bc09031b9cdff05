//! The real `spendguard-admin` binary as an operator runs it: configured only
//! through the standard AWS environment, against the local stack's embedded
//! engine (or `SPENDGUARD_TEST_ENDPOINT`, like the integration suite).

use spendguard_core::{Config, DynamoStore};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_spendguard-admin");

struct Stack {
    endpoint: String,
    table: String,
}

async fn stack() -> Stack {
    let endpoint = match std::env::var("SPENDGUARD_TEST_ENDPOINT") {
        Ok(url) if !url.is_empty() => url,
        _ => spendguard_local::engine::start(([127, 0, 0, 1], 0).into(), None)
            .await
            .expect("embedded engine starts"),
    };
    let table = format!("t{}", uuid::Uuid::new_v4().simple());
    let store = DynamoStore::for_local_endpoint(&endpoint, &table);
    spendguard_local::ensure_tables(&store, &Config::for_table(&table))
        .await
        .expect("tables");
    Stack { endpoint, table }
}

/// Runs the binary with a clean environment: endpoint, placeholder credentials,
/// region and table, stdin not a terminal.
async fn admin(endpoint: &str, table: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("AWS_ENDPOINT_URL_DYNAMODB", endpoint)
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("SPENDGUARD_TABLE", table)
        .env("USER", "operator")
        .stdin(Stdio::null());
    tokio::task::spawn_blocking(move || cmd.output().expect("binary runs"))
        .await
        .expect("join")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_adjusts_shows_and_refuses() {
    let s = stack().await;
    let run = |args: &'static [&'static str]| admin(&s.endpoint, &s.table, args);

    let out = run(&[
        "credits",
        "set",
        "alice",
        "500",
        "--reason",
        "binary test",
        "--yes",
    ])
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Done: available 0 -> 500"));

    let out = run(&["credits", "show", "alice"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("available 500, total 500, used 0"));

    // Without --yes and without a terminal, nothing is applied.
    let out = run(&["credits", "add", "alice", "10"]).await;
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("+10 (from 500 to 510)"),
        "plan printed first"
    );

    let out = run(&["credits", "add", "alice", "-600", "--yes"]).await;
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("insufficient credits"));

    let out = run(&["credits", "set", "alice", "12abc"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("integer"));

    let out = run(&["credits", "show", "not valid"]).await;
    assert_eq!(out.status.code(), Some(2));

    let out = run(&["credits", "history", "alice"]).await;
    assert_eq!(out.status.code(), Some(0));
    let history = text(&out.stdout);
    assert!(history.contains("binary test"), "{history}");
    assert_eq!(history.lines().count(), 2, "{history}");

    // --endpoint-url uses placeholder credentials: no AWS environment needed.
    let mut cmd = Command::new(BIN);
    cmd.args(["--endpoint-url", &s.endpoint, "--table", &s.table])
        .args(["credits", "set", "alice", "50", "--force", "-y", "-v"])
        .env_clear()
        .stdin(Stdio::null());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Verified: available credits are now 50"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_reports_an_unreachable_store() {
    // Port 9 (discard) has no listener locally: connection refused.
    let out = admin(
        "http://127.0.0.1:9",
        "spendguard",
        &["credits", "show", "alice"],
    )
    .await;
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("cannot reach the data store"));
}
