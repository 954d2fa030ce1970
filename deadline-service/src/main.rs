#[tokio::main]
async fn main() -> anyhow::Result<()> {
    saga_runtime::serve::<deadline_service::DeadlineService>().await
}
