#[tokio::main]
async fn main() -> anyhow::Result<()> {
    saga_runtime::serve::<exchange_service::ExchangeService>().await
}
