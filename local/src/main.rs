//! `spendguard-local`: `serve` runs the local stack; `token` prints a dev token.

use clap::{Parser, Subcommand};
use spendguard_core::{Clock, Config, Deps, DynamoStore};
use spendguard_local::server::{self, ServeOptions, ENV_READ_TIMEOUT};
use spendguard_local::{endpoint_from_env, engine, ensure_tables, jwt, Gateway};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "spendguard local stack")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the local stack (the default).
    Serve {
        #[arg(long, env = "SPENDGUARD_LOCAL_ADDR", default_value = "127.0.0.1:9000")]
        addr: SocketAddr,
        /// Where the embedded engine keeps its data.
        #[arg(long, env = "SPENDGUARD_LOCAL_DATA", default_value = ".local-data")]
        data_dir: PathBuf,
        /// Port of the embedded engine (0 = any free port).
        #[arg(long, env = "SPENDGUARD_ENGINE_PORT", default_value_t = 8000)]
        engine_port: u16,
        /// Seconds a client may take to send a request's head, and its body.
        #[arg(long, env = ENV_READ_TIMEOUT, default_value_t = 30)]
        read_timeout_secs: u64,
    },
    /// Print a dev token signed with SPENDGUARD_DEV_JWT_SECRET.
    Token {
        #[arg(long, default_value = "alice")]
        user: String,
        /// user, admin or service
        #[arg(long, default_value = "user")]
        role: String,
        #[arg(long, default_value_t = 86_400)]
        ttl_seconds: i64,
    },
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let cli = Cli::parse();
    // No subcommand means `serve`, with its flags read from the environment.
    let command = match cli.command {
        Some(command) => command,
        None => Cli::parse_from(["spendguard-local", "serve"])
            .command
            .ok_or("serve is a subcommand")?,
    };
    match command {
        Command::Token {
            user,
            role,
            ttl_seconds,
        } => {
            let role = jwt::Role::parse(&role).ok_or("ROLE must be user, admin or service")?;
            spendguard_core::domain::validate_id("user", &user)?;
            println!(
                "{}",
                jwt::issue(&jwt::secret_from_env(), &user, role, ttl_seconds)
            );
            Ok(())
        }
        Command::Serve {
            addr,
            data_dir,
            engine_port,
            read_timeout_secs,
        } => {
            let options = ServeOptions::with_read_timeout(Duration::from_secs(read_timeout_secs));
            serve(addr, data_dir, engine_port, options).await
        }
    }
}

async fn serve(
    addr: SocketAddr,
    data_dir: PathBuf,
    engine_port: u16,
    options: ServeOptions,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    spendguard_core::telemetry::init_pretty();
    let config = Config::from_env()?;
    let (store, engine_note) = match endpoint_from_env() {
        Some(endpoint) => (
            DynamoStore::from_env(&config).await,
            format!("DynamoDB endpoint from the environment: {endpoint}"),
        ),
        None => {
            let data_file = data_dir.join("dynamo.sqlite");
            let engine_addr: SocketAddr = ([127, 0, 0, 1], engine_port).into();
            let endpoint = match engine::start(engine_addr, Some(&data_file)).await {
                Ok(e) => e,
                // The fixed port is taken: any free port will do.
                Err(_) => engine::start(([127, 0, 0, 1], 0).into(), Some(&data_file)).await?,
            };
            (
                DynamoStore::for_local_endpoint(&endpoint, &config.table_name),
                format!(
                    "embedded engine at {endpoint} (data in {})",
                    data_file.display()
                ),
            )
        }
    };
    let created = ensure_tables(&store, &config).await?;
    let deps = Deps {
        config: Arc::new(config.clone()),
        store,
        clock: Clock::system(),
    };
    let _alerts = spendguard_local::streams::spawn_alerts(deps.clone()).await?;
    let gateway = Arc::new(Gateway::new(deps, jwt::secret_from_env()).echo_logs(true));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    print_banner(addr, &engine_note, &config, &created);
    spendguard_local::schedule::spawn(gateway.clone());
    let routes = server::Routes {
        gateway,
        console: Some(Arc::new(spendguard_local::console::Console::from_env())),
    };
    server::serve_routes(listener, routes, options, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}

fn print_banner(addr: SocketAddr, engine_note: &str, config: &Config, created: &[String]) {
    let base = format!("http://{addr}");
    let platforms: Vec<&str> = config.platforms.iter().map(|p| p.as_str()).collect();
    println!(
        r#"
spendguard local stack on {base}
  storage:   {engine_note}
  table:     {table}{created}
  platforms: {platforms}   time zone: {tz}
  {console}

Try:
  TOKEN=$(make -s token USER=alice ROLE=user)
  curl -H "Authorization: Bearer $TOKEN" {base}/v1/me/quotas
  ADMIN=$(make -s token USER=root ROLE=admin)
  curl -H "Authorization: Bearer $ADMIN" {base}/v1/admin/quota-defaults
  curl -X POST --data @events/sqs-usage-batch.json {base}/2015-03-31/functions/usage-ingest/invocations

Ctrl-C stops; `make reset` wipes the local data.
"#,
        table = config.table_name,
        created = if created.is_empty() {
            String::new()
        } else {
            " (created)".into()
        },
        platforms = platforms.join(" "),
        tz = config.timezone,
        console = spendguard_local::console::banner_line(&base),
    );
}
