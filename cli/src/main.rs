//! `spendguard-admin`: wiring only; see the library for the commands.

#[tokio::main]
async fn main() {
    let code = spendguard_admin::main_with(
        std::env::args_os(),
        &mut spendguard_admin::StdTerminal,
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    )
    .await;
    std::process::exit(code);
}
