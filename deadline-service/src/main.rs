//! The deadline service: keeps every saga's deadline durably and emits `DeadlineReached` when
//! one passes before the saga has ended (SPEC §4 rule 7).

mod handlers;
mod http;
mod timer;

use std::sync::Arc;

use axum::Router;
use saga_runtime::{Service, ServiceContext};
use sqlx::{PgPool, migrate::Migrator};
use tokio_util::sync::CancellationToken;

static MIGRATIONS: Migrator = sqlx::migrate!();

pub struct DeadlineService {
    pool: PgPool,
}

impl Service for DeadlineService {
    const NAME: &'static str = "deadline-service";
    const PORT: u16 = 8084;
    const DATABASE: &'static str = "saga_deadline";

    fn migrations() -> &'static Migrator {
        &MIGRATIONS
    }

    fn build(context: &ServiceContext) -> anyhow::Result<Self> {
        Ok(DeadlineService {
            pool: context.pool.clone(),
        })
    }

    fn routes(self: Arc<Self>) -> Router {
        http::routes(self)
    }

    fn background(
        self: Arc<Self>,
        shutdown: CancellationToken,
    ) -> Option<impl Future<Output = anyhow::Result<()>> + Send + 'static> {
        Some(timer::run(self.pool.clone(), shutdown))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    saga_runtime::run::<DeadlineService>().await
}
