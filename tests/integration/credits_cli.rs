//! The admin CLI, every mode, against the test engine through `spendguard_admin::run`
//! (the spawned binary is tested in `cli/tests/binary.rs`).

use serde_json::Value;
use spendguard_admin::{
    run, Terminal, EXIT_INSUFFICIENT, EXIT_NOT_CONFIRMED, EXIT_OK, EXIT_STORE, EXIT_USAGE,
};
use spendguard_core::{Deps, DynamoStore};
use spendguard_tests::TestEnv;
use std::collections::VecDeque;

/// A terminal with scripted answers that records what it was asked.
struct Scripted {
    interactive: bool,
    answers: VecDeque<bool>,
    asked: Vec<String>,
}

impl Scripted {
    fn answering(answers: &[bool]) -> Self {
        Self {
            interactive: true,
            answers: answers.iter().copied().collect(),
            asked: Vec::new(),
        }
    }

    fn not_a_terminal() -> Self {
        Self {
            interactive: false,
            answers: VecDeque::new(),
            asked: Vec::new(),
        }
    }
}

impl Terminal for Scripted {
    fn is_interactive(&self) -> bool {
        self.interactive
    }

    fn confirm(&mut self, question: &str) -> std::io::Result<bool> {
        self.asked.push(question.to_string());
        Ok(self.answers.pop_front().expect("an unexpected question"))
    }
}

struct Run {
    code: i32,
    out: String,
    err: String,
    asked: Vec<String>,
}

async fn cli(deps: &Deps, term: &mut Scripted, args: &[&str]) -> Run {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let argv = std::iter::once("spendguard-admin").chain(args.iter().copied());
    let code = run(argv, deps, term, &mut out, &mut err).await;
    Run {
        code,
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
        asked: std::mem::take(&mut term.asked),
    }
}

async fn cli_yes(deps: &Deps, args: &[&str]) -> Run {
    cli(deps, &mut Scripted::not_a_terminal(), args).await
}

#[tokio::test]
async fn set_asks_then_applies_and_records_audit() {
    let env = TestEnv::new().await;
    let deps = env.deps();
    let mut term = Scripted::answering(&[true]);
    let r = cli(
        &deps,
        &mut term,
        &[
            "credits", "set", "alice", "5000", "--reason", "opening", "-v",
        ],
    )
    .await;
    assert_eq!(r.code, EXIT_OK, "{} {}", r.out, r.err);
    assert_eq!(r.asked, ["Apply this adjustment?"]);
    // The plan is printed before the question, the result after it.
    assert!(
        r.out.contains("adjust credits: +5000 (from 0 to 5000)"),
        "{}",
        r.out
    );
    assert!(
        r.out.contains("Done: available 0 -> 5000 (+5000)"),
        "{}",
        r.out
    );
    assert!(r.out.contains("Verified: available credits are now 5000"));
    assert_eq!(env.available("alice").await, 5000);

    let audit = env.audit_entries(Some("alice"), None).await;
    let entry = &audit[0];
    assert_eq!(entry.action, "ADMIN_ADJUST_CREDITS");
    assert!(entry.actor.starts_with("cli:"), "{}", entry.actor);
    assert!(entry
        .user_agent
        .as_deref()
        .unwrap()
        .starts_with("spendguard-admin/"));
    assert_eq!(entry.details["reason"], "opening");
    assert_eq!(entry.details["current"], 5000);
}

#[tokio::test]
async fn declining_or_no_terminal_writes_nothing() {
    let env = TestEnv::new().await;
    let deps = env.deps();
    let r = cli(
        &deps,
        &mut Scripted::answering(&[false]),
        &["credits", "set", "alice", "10"],
    )
    .await;
    assert_eq!(r.code, EXIT_NOT_CONFIRMED);
    assert!(r.out.contains("Aborted"));
    let r = cli_yes(&deps, &["credits", "add", "alice", "10"]).await;
    assert_eq!(r.code, EXIT_NOT_CONFIRMED, "{}", r.err);
    assert!(r.err.contains("--yes"), "{}", r.err);
    assert_eq!(env.full_ledger("alice").await.len(), 0);
    let r = cli_yes(&deps, &["credits", "add", "alice", "10", "--yes"]).await;
    assert_eq!(r.code, EXIT_OK, "{}", r.err);
    assert_eq!(env.available("alice").await, 10);
}

#[tokio::test]
async fn check_and_dry_run_write_nothing() {
    let env = TestEnv::new().await;
    let deps = env.deps();
    cli_yes(&deps, &["credits", "set", "alice", "700", "-y"]).await;
    let before = env.full_ledger("alice").await.len();
    let r = cli_yes(&deps, &["credits", "set", "alice", "100000", "-c"]).await;
    assert_eq!(r.code, EXIT_OK);
    assert!(r.out.contains("Current credits: 700"), "{}", r.out);
    assert!(!r.out.contains("Plan"));
    let r = cli_yes(&deps, &["credits", "set", "alice", "100000", "--check"]).await;
    assert_eq!(r.code, EXIT_OK);
    let r = cli_yes(&deps, &["credits", "set", "alice", "100000", "--dry-run"]).await;
    assert_eq!(r.code, EXIT_OK);
    assert!(r.out.contains("Dry run"), "{}", r.out);
    assert!(r.out.contains("+99300 (from 700 to 100000)"), "{}", r.out);
    let r = cli_yes(&deps, &["credits", "add", "alice", "-200", "--dry-run"]).await;
    assert!(r.out.contains("-200 (from 700 to 500)"), "{}", r.out);
    assert_eq!(env.available("alice").await, 700);
    assert_eq!(env.full_ledger("alice").await.len(), before);
    let r = cli_yes(&deps, &["credits", "set", "alice", "1", "-c", "--dry-run"]).await;
    assert_eq!(r.code, EXIT_USAGE, "check and dry-run exclude each other");
}

#[tokio::test]
async fn deduction_below_zero_is_refused_without_force() {
    let env = TestEnv::new().await;
    let deps = env.deps();
    cli_yes(&deps, &["credits", "set", "alice", "100", "-y"]).await;
    let r = cli_yes(&deps, &["credits", "add", "alice", "-150", "-y"]).await;
    assert_eq!(r.code, EXIT_INSUFFICIENT, "{} {}", r.out, r.err);
    assert!(r.err.contains("insufficient credits"), "{}", r.err);
    assert!(r.err.contains("--force"), "{}", r.err);
    let r = cli_yes(&deps, &["credits", "add", "alice", "-150", "--dry-run"]).await;
    assert_eq!(r.code, EXIT_INSUFFICIENT);
    assert_eq!(env.available("alice").await, 100);
    assert_eq!(env.full_ledger("alice").await.len(), 1);

    let r = cli_yes(&deps, &["credits", "add", "alice", "-150", "--force", "-y"]).await;
    assert_eq!(r.code, EXIT_OK, "{}", r.err);
    assert!(r.err.contains("warning: --force"), "{}", r.err);
    assert_eq!(env.available("alice").await, -50);
    // Setting a target is never a deduction below zero.
    let r = cli_yes(&deps, &["credits", "set", "alice", "0", "-y"]).await;
    assert_eq!(r.code, EXIT_OK);
    assert!(r.out.contains("+50"), "{}", r.out);
}

#[tokio::test]
async fn show_and_history() {
    let env = TestEnv::new().await;
    let deps = env.deps();
    let r = cli_yes(&deps, &["credits", "show", "alice"]).await;
    assert_eq!(r.code, EXIT_OK);
    assert!(r.out.contains("available 0, total 0, used 0"), "{}", r.out);
    let r = cli_yes(&deps, &["credits", "history", "alice"]).await;
    assert!(r.out.contains("No ledger entries"), "{}", r.out);
    for i in 1..=12 {
        let delta = i.to_string();
        let reason = format!("step {i}");
        let r = cli_yes(
            &deps,
            &["credits", "add", "alice", &delta, "--reason", &reason, "-y"],
        )
        .await;
        assert_eq!(r.code, EXIT_OK, "{}", r.err);
    }
    cli_yes(&deps, &["credits", "add", "alice", "-8", "-y"]).await;
    let r = cli_yes(&deps, &["credits", "show", "alice", "-v"]).await;
    assert!(
        r.out.contains("available 70, total 78, used 0"),
        "{}",
        r.out
    );
    assert!(r.out.contains("Ledger entries: 13"), "{}", r.out);
    let r = cli_yes(&deps, &["credits", "history", "alice"]).await;
    assert_eq!(r.code, EXIT_OK);
    let lines: Vec<&str> = r.out.lines().collect();
    assert_eq!(lines.len(), 11, "header + the last 10 entries:\n{}", r.out);
    assert!(lines[0].contains("SEQ") && lines[0].contains("DESCRIPTION"));
    assert!(lines[1].trim_start().starts_with("13 "), "{}", lines[1]);
    assert!(lines[1].contains("deduct") && lines[1].contains("-8"));
    assert!(lines[2].contains("step 12"));
    assert!(lines[10].trim_start().starts_with("4 "));
    let r = cli_yes(&deps, &["credits", "history", "alice", "--limit", "3"]).await;
    assert_eq!(r.out.lines().count(), 4);
}

#[tokio::test]
async fn invalid_arguments_exit_2_without_writing() {
    let env = TestEnv::new().await;
    let deps = env.deps();
    let cases: &[(&[&str], &str)] = &[
        (&["credits", "set", "a b", "5", "-y"], "user_id"),
        (&["credits", "set", "alice", "abc", "-y"], "integer"),
        (&["credits", "set", "alice", "1.5", "-y"], "integer"),
        (&["credits", "set", "alice", "-5", "-y"], ">= 0"),
        (
            &["credits", "add", "alice", "99999999999999999999", "-y"],
            "range",
        ),
        (
            &["credits", "set", "alice", "5", "--reason", "", "-y"],
            "reason",
        ),
        (&["credits", "show", "a/b"], "user_id"),
        (&["credits", "set", "alice"], "TARGET"),
        (&["credits", "frobnicate"], "frobnicate"),
    ];
    for (args, needle) in cases {
        let r = cli_yes(&deps, args).await;
        assert_eq!(r.code, EXIT_USAGE, "{args:?}: {} {}", r.out, r.err);
        assert!(r.err.contains(needle), "{args:?}: {}", r.err);
    }
    assert_eq!(env.full_ledger("alice").await.len(), 0);
    let r = cli_yes(&deps, &["--help"]).await;
    assert_eq!(r.code, EXIT_OK);
    assert!(r.out.contains("credits"));
}

#[tokio::test]
async fn unreachable_store_exits_4_with_a_clear_message() {
    let env = TestEnv::new().await;
    let mut deps = env.deps();
    // Nothing listens on port 9 locally (discard); connection is refused.
    deps.store = DynamoStore::for_local_endpoint("http://127.0.0.1:9", "spendguard");
    let r = cli_yes(&deps, &["credits", "show", "alice"]).await;
    assert_eq!(r.code, EXIT_STORE, "{} {}", r.out, r.err);
    assert!(r.err.contains("cannot reach the data store"), "{}", r.err);
    // A missing table is the same class of failure.
    let mut deps = env.deps();
    deps.store = env.store.with_table("no-such-table");
    let r = cli_yes(&deps, &["credits", "set", "alice", "5", "-y"]).await;
    assert_eq!(r.code, EXIT_STORE, "{} {}", r.out, r.err);
}

#[tokio::test]
async fn cli_and_api_share_the_ledger() {
    let env = TestEnv::new().await;
    let deps = env.deps();
    cli_yes(&deps, &["credits", "set", "alice", "40", "-y"]).await;
    let res = env
        .post("/v1/admin/users/alice/credits/adjust")
        .as_admin()
        .json(&serde_json::json!({"delta": 2, "reason": "api"}))
        .send()
        .await;
    res.assert_status(200);
    assert_eq!(res.body["previous"], 40);
    let r = cli_yes(&deps, &["credits", "history", "alice"]).await;
    assert!(r.out.contains("api"));
    let mine = env
        .get("/v1/me/credits/transactions")
        .as_user("alice")
        .send()
        .await;
    let items: &Vec<Value> = mine.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[1]["balance_after"], items[0]["balance_before"]);
}
