#[tokio::main]
async fn main() -> anyhow::Result<()> {
    saga_runtime::serve::<point_service::PointService>().await
}
