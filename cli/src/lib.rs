//! `spendguard-admin`: the operator CLI. It talks to DynamoDB directly through
//! the core crate and uses the same adjustment implementation as the API
//! (`AdjustRequest`, `AdjustPlan`, `DynamoStore::apply_adjustment`), so a CLI
//! adjustment writes the same ledger entry and `ADMIN_ADJUST_CREDITS` audit
//! entry in one atomic write.
//!
//! ```text
//! spendguard-admin credits set <user_id> <target> [-c|--check] [--dry-run] [--force] [-v] [--reason R] [-y]
//! spendguard-admin credits add <user_id> <delta>  [same options]
//! spendguard-admin credits show <user_id>
//! spendguard-admin credits history <user_id> [--limit 10]
//! ```
//!
//! The store comes from the standard AWS environment (`AWS_ENDPOINT_URL_DYNAMODB`,
//! credentials, region; table `SPENDGUARD_TABLE`), or `--endpoint-url` for a
//! local engine with placeholder credentials.
//!
//! [`run`] takes the dependencies and the terminal as arguments, so tests drive
//! every mode without a process; `main` only wires.

use clap::{Args, Parser, Subcommand};
use spendguard_core::domain::audit::{Actor, ADMIN_ADJUST_CREDITS};
use spendguard_core::domain::credits::{
    parse_credits, Account, AdjustBy, AdjustMode, AdjustPlan, AdjustRequest, EntryType,
    CATEGORY_ADMIN_ADJUST,
};
use spendguard_core::domain::UserId;
use spendguard_core::paging::PageRequest;
use spendguard_core::store::credits::AdjustResult;
use spendguard_core::store::CreditStore;
use spendguard_core::{Config, Deps, DynamoStore, Error};
use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;

/// Exit status of a successful run.
pub const EXIT_OK: i32 = 0;
/// Something else went wrong (an internal error).
pub const EXIT_FAILED: i32 = 1;
/// Invalid arguments: unknown option, invalid user id, non-integer amount, ...
pub const EXIT_USAGE: i32 = 2;
/// Refused: a deduction below zero without `--force`.
pub const EXIT_INSUFFICIENT: i32 = 3;
/// The store is unreachable or refused the request (endpoint, credentials, table).
pub const EXIT_STORE: i32 = 4;
/// Not confirmed: declined at the prompt, or no terminal to ask and no `--yes`.
pub const EXIT_NOT_CONFIRMED: i32 = 5;

const USER_AGENT: &str = concat!("spendguard-admin/", env!("CARGO_PKG_VERSION"));

#[derive(Parser, Debug)]
#[command(
    name = "spendguard-admin",
    version,
    about = "spendguard operator tool: credit balances, adjustments and ledger history",
    after_help = "Exit status: 0 ok, 1 failure, 2 invalid arguments, 3 insufficient credits, \
                  4 store unreachable, 5 not confirmed."
)]
pub struct Cli {
    /// A DynamoDB-compatible endpoint reached with placeholder credentials (the
    /// local stack's engine: http://127.0.0.1:8000). Without it, the standard
    /// AWS environment decides endpoint, region and credentials.
    #[arg(long, global = true, env = "SPENDGUARD_ADMIN_ENDPOINT")]
    pub endpoint_url: Option<String>,
    /// The spendguard table (default: SPENDGUARD_TABLE, else "spendguard").
    #[arg(long, global = true)]
    pub table: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Credit balances, adjustments and ledger history.
    #[command(subcommand)]
    Credits(CreditsCommand),
    /// Reservations (holds taken by the AI gateway before forwarding).
    #[command(subcommand)]
    Reservations(ReservationsCommand),
}

#[derive(Subcommand, Debug)]
pub enum ReservationsCommand {
    /// List a user's pending reservations, soonest expiry first.
    Pending { user_id: String },
}

#[derive(Subcommand, Debug)]
pub enum CreditsCommand {
    /// Set a user's available credits to TARGET (the adjustment is TARGET minus
    /// the balance at the moment of writing).
    #[command(allow_negative_numbers = true)]
    Set {
        user_id: String,
        /// Integer >= 0.
        target: String,
        #[command(flatten)]
        options: AdjustOptions,
    },
    /// Change a user's available credits by DELTA (negative deducts).
    #[command(allow_negative_numbers = true)]
    Add {
        user_id: String,
        /// Integer; negative deducts.
        delta: String,
        #[command(flatten)]
        options: AdjustOptions,
    },
    /// Show a user's account.
    Show {
        user_id: String,
        #[arg(short, long)]
        verbose: bool,
    },
    /// Show a user's latest ledger entries, newest first.
    History {
        user_id: String,
        /// How many entries (1-100).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(i32).range(1..=100))]
        limit: i32,
        #[arg(short, long)]
        verbose: bool,
    },
}

#[derive(Args, Debug, Clone)]
pub struct AdjustOptions {
    /// Only show the current balance; change nothing.
    #[arg(short, long, conflicts_with = "dry_run")]
    pub check: bool,
    /// Show what would be done; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Allow the balance to go below zero (recorded in the audit entry).
    #[arg(long)]
    pub force: bool,
    /// Print more detail.
    #[arg(short, long)]
    pub verbose: bool,
    /// Why (ledger description and audit entry; 1-500 characters).
    #[arg(long)]
    pub reason: Option<String>,
    /// Apply without asking for confirmation.
    #[arg(short, long)]
    pub yes: bool,
    /// Who to name as actor in the audit entry (default: cli:$USER).
    #[arg(long, env = "SPENDGUARD_ADMIN_ACTOR")]
    pub actor: Option<String>,
}

/// Where confirmations come from.
pub trait Terminal {
    /// Whether a person can be asked (stdin is a terminal).
    fn is_interactive(&self) -> bool;
    /// Asks `question`; true only for an explicit yes.
    fn confirm(&mut self, question: &str) -> std::io::Result<bool>;
}

/// The process's stdin / stderr.
pub struct StdTerminal;

impl Terminal for StdTerminal {
    fn is_interactive(&self) -> bool {
        std::io::stdin().is_terminal()
    }

    fn confirm(&mut self, question: &str) -> std::io::Result<bool> {
        let mut stderr = std::io::stderr();
        write!(stderr, "{question} [y/N] ")?;
        stderr.flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
    }
}

/// A failure with its exit status and message.
struct Failure {
    code: i32,
    message: String,
}

impl From<Error> for Failure {
    fn from(err: Error) -> Self {
        let code = match &err {
            Error::InsufficientCredits(_) => EXIT_INSUFFICIENT,
            Error::StoreUnavailable(_) => EXIT_STORE,
            e if e.status().is_client_error() => EXIT_USAGE,
            _ => EXIT_FAILED,
        };
        let message = match &err {
            Error::InsufficientCredits(m) => {
                format!("insufficient credits: {m}")
            }
            Error::StoreUnavailable(detail) => format!(
                "cannot reach the data store or it refused the request (check the endpoint, \
                 credentials, region and table): {}",
                shorten(detail, 400)
            ),
            other => other.to_string(),
        };
        Failure { code, message }
    }
}

impl From<std::io::Error> for Failure {
    fn from(err: std::io::Error) -> Self {
        Failure {
            code: EXIT_FAILED,
            message: format!("i/o error: {err}"),
        }
    }
}

fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

/// Parses `args` (with the program name first), builds the store from the
/// environment and flags, and runs. Returns the exit status.
pub async fn main_with<I, T>(
    args: I,
    term: &mut dyn Terminal,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match parse(args, out, err) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let deps = match deps_for(&cli).await {
        Ok(deps) => deps,
        Err(e) => return report(Failure::from(e), err),
    };
    execute(&cli, &deps, term, out, err).await
}

/// Parses `args` and runs them against `deps` (tests pass the test engine's).
pub async fn run<I, T>(
    args: I,
    deps: &Deps,
    term: &mut dyn Terminal,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    match parse(args, out, err) {
        Ok(cli) => execute(&cli, deps, term, out, err).await,
        Err(code) => code,
    }
}

fn parse<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> Result<Cli, i32>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    Cli::try_parse_from(args).map_err(|e| {
        let text = e.render().to_string();
        if e.use_stderr() {
            let _ = write!(err, "{text}");
            EXIT_USAGE
        } else {
            // --help, --version
            let _ = write!(out, "{text}");
            EXIT_OK
        }
    })
}

async fn deps_for(cli: &Cli) -> Result<Deps, Error> {
    let mut config = Config::from_env()?;
    if let Some(table) = &cli.table {
        config.table_name = table.clone();
    }
    let store = match &cli.endpoint_url {
        Some(url) => DynamoStore::for_local_endpoint(url, &config.table_name),
        None => DynamoStore::from_env(&config).await,
    };
    Ok(Deps {
        config: Arc::new(config),
        store,
        clock: spendguard_core::Clock::system(),
    })
}

fn report(failure: Failure, err: &mut dyn Write) -> i32 {
    let _ = writeln!(err, "error: {}", failure.message);
    failure.code
}

async fn execute(
    cli: &Cli,
    deps: &Deps,
    term: &mut dyn Terminal,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let command = match &cli.command {
        Command::Credits(command) => command,
        Command::Reservations(ReservationsCommand::Pending { user_id }) => {
            return match pending_reservations(deps, user_id, out).await {
                Ok(code) => code,
                Err(failure) => report(failure, err),
            };
        }
    };
    let result = match command {
        CreditsCommand::Set {
            user_id,
            target,
            options,
        } => {
            let by = parse_credits("target", target).and_then(|t| {
                if t < 0 {
                    Err(Error::InvalidAmount(format!(
                        "target must be an integer >= 0, got {t}"
                    )))
                } else {
                    Ok(AdjustBy::Target(t))
                }
            });
            adjust(deps, user_id, by, options, term, out, err).await
        }
        CreditsCommand::Add {
            user_id,
            delta,
            options,
        } => {
            let by = parse_credits("delta", delta).map(AdjustBy::Delta);
            adjust(deps, user_id, by, options, term, out, err).await
        }
        CreditsCommand::Show { user_id, verbose } => show(deps, user_id, *verbose, out).await,
        CreditsCommand::History {
            user_id,
            limit,
            verbose,
        } => history(deps, user_id, *limit, *verbose, out).await,
    };
    match result {
        Ok(code) => code,
        Err(failure) => report(failure, err),
    }
}

fn default_actor() -> String {
    let who = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("cli:{who}")
}

fn signed(n: i64) -> String {
    if n > 0 {
        format!("+{n}")
    } else {
        n.to_string()
    }
}

fn print_account(out: &mut dyn Write, account: &Account, verbose: bool) -> std::io::Result<()> {
    writeln!(out, "User: {}", account.user_id)?;
    writeln!(
        out,
        "Credits: available {}, total {}, used {}",
        account.available, account.total, account.used
    )?;
    if verbose {
        match account.updated_at {
            Some(at) => writeln!(
                out,
                "Ledger entries: {}; last change {}",
                account.seq,
                at.to_rfc3339()
            )?,
            None => writeln!(out, "No credit account yet (reads as zeros)")?,
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn adjust(
    deps: &Deps,
    user_id: &str,
    by: Result<AdjustBy, Error>,
    options: &AdjustOptions,
    term: &mut dyn Terminal,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32, Failure> {
    // Everything the operator typed is checked before the store is touched.
    let user = UserId::parse(user_id)?;
    let by = by?;
    let mode = if options.check {
        AdjustMode::Check
    } else if options.dry_run {
        AdjustMode::DryRun
    } else {
        AdjustMode::Apply
    };
    let reason = options.reason.clone().unwrap_or_else(|| match by {
        AdjustBy::Target(t) => format!("spendguard-admin: set to {t}"),
        AdjustBy::Delta(d) => format!("spendguard-admin: add {d}"),
    });
    let request = AdjustRequest::new(Some(by), &reason, mode, options.force)?;
    let verbose = options.verbose;
    if verbose {
        writeln!(out, "Table: {}", deps.store.table())?;
    }

    let account = deps.store.credit_account(&user).await?;
    print_account(out, &account, verbose)?;
    if mode == AdjustMode::Check {
        writeln!(out, "Current credits: {}", account.available)?;
        return Ok(EXIT_OK);
    }

    let plan = AdjustPlan::new(&account, by, options.force).map_err(|e| match e {
        Error::InsufficientCredits(m) => Failure {
            code: EXIT_INSUFFICIENT,
            message: format!("insufficient credits: {m} (pass --force to allow it)"),
        },
        other => Failure::from(other),
    })?;
    if mode == AdjustMode::DryRun {
        writeln!(out, "\n=== Dry run: nothing will be written ===")?;
    }
    print_plan(out, &plan, &request, verbose)?;
    if mode == AdjustMode::DryRun {
        return Ok(EXIT_OK);
    }
    if plan.goes_negative {
        writeln!(
            err,
            "warning: --force skips the balance check; available credits will be {}",
            plan.target
        )?;
    }
    if !options.yes {
        if !term.is_interactive() {
            return Err(Failure {
                code: EXIT_NOT_CONFIRMED,
                message: "not applied: stdin is not a terminal to confirm on; pass --yes to apply"
                    .into(),
            });
        }
        if !term.confirm("Apply this adjustment?")? {
            writeln!(out, "Aborted; nothing was written.")?;
            return Ok(EXIT_NOT_CONFIRMED);
        }
    }

    let actor = Actor {
        id: options.actor.clone().unwrap_or_else(default_actor),
        source_ip: None,
        user_agent: Some(USER_AGENT.to_string()),
    };
    let outcome = match deps
        .store
        .apply_adjustment(&user, &request, &actor, &deps.clock, None)
        .await
    {
        Ok(AdjustResult::Applied(outcome)) => outcome,
        // Only a request with an idempotency lease can be replayed; the CLI holds none.
        Ok(AdjustResult::Replayed(_)) => {
            return Err(Failure::from(Error::Internal(
                "unexpected idempotent replay".into(),
            )))
        }
        Err(e) => return Err(Failure::from(e)),
    };
    if outcome.plan.previous != plan.previous {
        writeln!(
            out,
            "Note: the balance changed to {} before the write; the adjustment was recomputed to {}.",
            outcome.plan.previous,
            signed(outcome.plan.adjustment)
        )?;
    }
    match &outcome.transaction_id {
        Some(id) => writeln!(
            out,
            "Done: available {} -> {} ({}), ledger entry {} (seq {}).",
            outcome.plan.previous,
            outcome.account.available,
            signed(outcome.plan.adjustment),
            id,
            outcome.account.seq
        )?,
        None => writeln!(
            out,
            "Done: available stays {}; no ledger entry (adjustment 0).",
            outcome.account.available
        )?,
    }
    if verbose {
        writeln!(
            out,
            "Audit entry {} ({ADMIN_ADJUST_CREDITS}, actor {}).",
            outcome.audit_id, actor.id
        )?;
        // Read back, as the original tool verified its update.
        let now = deps.store.credit_account(&user).await?;
        writeln!(
            out,
            "Verified: available credits are now {}.",
            now.available
        )?;
    }
    Ok(EXIT_OK)
}

fn print_plan(
    out: &mut dyn Write,
    plan: &AdjustPlan,
    request: &AdjustRequest,
    verbose: bool,
) -> std::io::Result<()> {
    writeln!(out, "Plan:")?;
    if plan.adjustment == 0 {
        writeln!(
            out,
            "  - no change: available is already {} (no ledger entry)",
            plan.previous
        )?;
    } else {
        writeln!(
            out,
            "  - adjust credits: {} (from {} to {})",
            signed(plan.adjustment),
            plan.previous,
            plan.target
        )?;
        let kind = if plan.adjustment > 0 {
            EntryType::Grant
        } else {
            EntryType::Deduct
        };
        writeln!(
            out,
            "  - write a ledger entry ({kind}, category {CATEGORY_ADMIN_ADJUST})"
        )?;
    }
    writeln!(out, "  - write an audit entry ({ADMIN_ADJUST_CREDITS})")?;
    if verbose {
        writeln!(out, "  reason: {}", request.reason)?;
        writeln!(out, "  force: {}", request.force)?;
    }
    Ok(())
}

/// `reservations pending USER`: what the user's pending reservations hold.
async fn pending_reservations(
    deps: &Deps,
    user_id: &str,
    out: &mut dyn Write,
) -> Result<i32, Failure> {
    let user = UserId::parse(user_id)?;
    let pending = deps
        .store
        .pending_reservations(Some(&user), &deps.config.platforms)
        .await?;
    if pending.is_empty() {
        writeln!(out, "No pending reservations for {user}.")?;
        return Ok(EXIT_OK);
    }
    writeln!(
        out,
        "{:<12}  {:>14}  {:>8}  {:<20}  {:<20}  RESERVATION_ID",
        "PLATFORM", "ESTIMATE_USD", "CREDITS", "CREATED_AT", "EXPIRES_AT"
    )?;
    for r in &pending {
        writeln!(
            out,
            "{:<12}  {:>14}  {:>8}  {:<20}  {:<20}  {}",
            r.platform,
            r.hold.estimate.to_string(),
            r.hold.credits,
            r.created_at.format("%Y-%m-%d %H:%M:%S"),
            r.expires_at.format("%Y-%m-%d %H:%M:%S"),
            r.id
        )?;
    }
    Ok(EXIT_OK)
}

async fn show(
    deps: &Deps,
    user_id: &str,
    verbose: bool,
    out: &mut dyn Write,
) -> Result<i32, Failure> {
    let user = UserId::parse(user_id)?;
    let account = deps.store.credit_account(&user).await?;
    print_account(out, &account, verbose)?;
    Ok(EXIT_OK)
}

async fn history(
    deps: &Deps,
    user_id: &str,
    limit: i32,
    verbose: bool,
    out: &mut dyn Write,
) -> Result<i32, Failure> {
    let user = UserId::parse(user_id)?;
    let page = deps
        .store
        .credit_ledger(
            &user,
            &PageRequest {
                limit,
                cursor: None,
            },
        )
        .await?;
    if page.items.is_empty() {
        writeln!(out, "No ledger entries for {user}.")?;
        return Ok(EXIT_OK);
    }
    writeln!(
        out,
        "{:>6}  {:<20}  {:<7}  {:>10}  {:>10}  {:>10}  {:<14}  DESCRIPTION",
        "SEQ", "CREATED_AT", "TYPE", "AMOUNT", "BEFORE", "AFTER", "CATEGORY"
    )?;
    for e in &page.items {
        writeln!(
            out,
            "{:>6}  {:<20}  {:<7}  {:>10}  {:>10}  {:>10}  {:<14}  {}",
            e.seq,
            e.created_at.format("%Y-%m-%d %H:%M:%S"),
            e.kind.as_str(),
            signed(e.amount),
            e.balance_before,
            e.balance_after,
            e.category,
            e.description
        )?;
        if verbose {
            writeln!(
                out,
                "        id {}{}",
                e.id,
                e.reference
                    .as_deref()
                    .map(|r| format!(", reference {r}"))
                    .unwrap_or_default()
            )?;
        }
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn negative_deltas_are_amounts_not_flags() {
        let cli = Cli::try_parse_from(["x", "credits", "add", "alice", "-5", "--force"]).unwrap();
        let Command::Credits(CreditsCommand::Add { delta, options, .. }) = cli.command else {
            panic!("parsed as add");
        };
        assert_eq!(delta, "-5");
        assert!(options.force);
    }

    #[test]
    fn store_errors_map_to_their_exit_status() {
        assert_eq!(
            Failure::from(Error::StoreUnavailable("x".into())).code,
            EXIT_STORE
        );
        assert_eq!(
            Failure::from(Error::InsufficientCredits("x".into())).code,
            EXIT_INSUFFICIENT
        );
        assert_eq!(Failure::from(Error::InvalidId("x".into())).code, EXIT_USAGE);
        assert_eq!(Failure::from(Error::Internal("x".into())).code, EXIT_FAILED);
        assert_eq!(shorten("abcdef", 3), "abc...");
    }
}
