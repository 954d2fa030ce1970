//! The exchange service: turns an order's currency into points (`OrderCreated` →
//! `ExchangeSucceed`) and undoes that when the order is rejected (`OrderRejected` →
//! `ExchangeCompensated`).

mod domain;
mod fault;
mod handlers;
mod http;

use std::sync::Arc;

use axum::Router;
use saga_runtime::{Service, ServiceContext};
use sqlx::{PgPool, migrate::Migrator};

static MIGRATIONS: Migrator = sqlx::migrate!();

pub struct ExchangeService {
    pool: PgPool,
    hooks: fault::FaultHooks,
}

impl Service for ExchangeService {
    const NAME: &'static str = "exchange-service";
    const PORT: u16 = 8082;
    const DATABASE: &'static str = "saga_exchange";

    fn migrations() -> &'static Migrator {
        &MIGRATIONS
    }

    fn build(context: &ServiceContext) -> anyhow::Result<Self> {
        Ok(ExchangeService {
            pool: context.pool.clone(),
            hooks: fault::FaultHooks::from_env()?,
        })
    }

    fn routes(self: Arc<Self>) -> Router {
        http::routes(self)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    saga_runtime::run::<ExchangeService>().await
}
