#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    spendguard_core::telemetry::init();
    let deps = spendguard_core::Deps::from_env().await?;
    spendguard_core::api::run_http(redemption::App::new(deps)).await
}
