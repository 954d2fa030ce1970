#[tokio::main]
async fn main() -> anyhow::Result<()> {
    saga_runtime::serve::<order_service::OrderService>().await
}
