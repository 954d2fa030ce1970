//! The order service: takes orders over HTTP, fixes each saga's deadline, and settles the order
//! from what the other services report (SPEC §3, §4).

mod domain;
mod handlers;
mod http;

use std::{sync::Arc, time::Duration};

use axum::Router;
use saga_runtime::{Service, ServiceContext, config::env_millis};
use sqlx::{PgPool, migrate::Migrator};

static MIGRATIONS: Migrator = sqlx::migrate!();

pub struct OrderService {
    pool: PgPool,
    /// How long a saga may take, from the order's creation (`DEADLINE_MS`, default 5 s).
    deadline: Duration,
}

impl Service for OrderService {
    const NAME: &'static str = "order-service";
    const PORT: u16 = 8081;
    const DATABASE: &'static str = "saga_order";

    fn migrations() -> &'static Migrator {
        &MIGRATIONS
    }

    fn build(context: &ServiceContext) -> anyhow::Result<Self> {
        Ok(OrderService {
            pool: context.pool.clone(),
            deadline: env_millis("DEADLINE_MS", Duration::from_secs(5))?,
        })
    }

    fn routes(self: Arc<Self>) -> Router {
        http::routes(self)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    saga_runtime::run::<OrderService>().await
}
